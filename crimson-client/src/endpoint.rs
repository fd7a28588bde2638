//! [`Endpoint`] and [`EndpointProvider`]: where to connect, asked again on every attempt.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use futures_util::future::BoxFuture;

/// Any error, as an endpoint provider may return it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Where to connect: a `ws://` or `wss://` URL and the HTTP headers of the upgrade request.
///
/// ```
/// use crimson_client::Endpoint;
///
/// let endpoint = Endpoint::new("wss://chat.example/ws?room=7")
///     .bearer("eyJhbGciOi...")
///     .header("x-client-version", "1.4.2");
/// assert_eq!(endpoint.url(), "wss://chat.example/ws?room=7");
/// assert_eq!(endpoint.headers().count(), 2);
/// // Debug output names the headers but hides their values.
/// assert!(!format!("{endpoint:?}").contains("eyJ"));
/// ```
///
/// Header names and values are checked when the client connects: an invalid one, like a URL
/// that does not parse or a scheme other than `ws`/`wss`, is reported as
/// [`ClientError::InvalidEndpoint`](crate::ClientError::InvalidEndpoint) and closes the client
/// (retrying would fail the same way).
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    url: String,
    headers: Vec<(String, String)>,
}

impl Endpoint {
    /// An endpoint at `url`, with no extra headers.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            headers: Vec::new(),
        }
    }

    /// Adds a header to the upgrade request. A name given twice is sent twice.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Adds `Authorization: Bearer <token>`.
    #[must_use]
    pub fn bearer(self, token: impl fmt::Display) -> Self {
        self.header("authorization", format!("Bearer {token}"))
    }

    /// The URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The extra headers, in the order they were added.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
    }

    /// The URL without its query and fragment, which may hold secrets: what logs show.
    pub(crate) fn redacted_url(&self) -> &str {
        redact(&self.url)
    }
}

pub(crate) fn redact(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("Endpoint")
            .field("url", &self.redacted_url())
            .field("headers", &names)
            .finish()
    }
}

impl From<&str> for Endpoint {
    fn from(url: &str) -> Self {
        Self::new(url)
    }
}

impl From<String> for Endpoint {
    fn from(url: String) -> Self {
        Self::new(url)
    }
}

/// Says where to connect; the client asks again before every connection attempt, so the URL
/// and headers can change between attempts (a refreshed auth token, another node).
///
/// Closures implement it: any `Fn() -> impl Future<Output = Result<Endpoint, E>>` where `E`
/// converts into [`BoxError`]. So does [`Endpoint`] itself, for a fixed endpoint.
///
/// ```
/// use std::sync::Arc;
/// use crimson_client::{BoxError, CrimsonClient, Endpoint};
///
/// /// Fetches a short-lived token; any error type that converts into `BoxError` works.
/// async fn fresh_token(auth: &str) -> Result<String, std::io::Error> {
///     Ok(format!("token-from-{auth}"))
/// }
///
/// let auth = Arc::new(String::from("https://auth.example"));
/// let client = CrimsonClient::<String, String>::builder()
///     .endpoint(move || {
///         let auth = auth.clone();
///         async move {
///             let token = fresh_token(&auth).await?;
///             Ok::<_, BoxError>(Endpoint::new("wss://chat.example/ws").bearer(token))
///         }
///     })
///     .build()
///     .unwrap();
/// ```
///
/// A type of your own can implement it too:
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use crimson_client::{Endpoint, EndpointProvider};
///
/// /// Tries each node in turn.
/// struct RoundRobin {
///     nodes: Vec<String>,
///     next: AtomicUsize,
/// }
///
/// impl EndpointProvider for RoundRobin {
///     type Error = std::convert::Infallible;
///
///     async fn endpoint(&self) -> Result<Endpoint, Self::Error> {
///         let at = self.next.fetch_add(1, Ordering::Relaxed) % self.nodes.len();
///         Ok(Endpoint::new(self.nodes[at].clone()))
///     }
/// }
/// ```
///
/// An error from the provider counts as a failed attempt: it is reported as
/// [`ClientError::Endpoint`](crate::ClientError::Endpoint) and the retry policy decides what
/// comes next. The client's connect timeout covers the provider's call too.
pub trait EndpointProvider: Send + Sync + 'static {
    /// What a failed look-up returns.
    type Error: Into<BoxError>;

    /// The endpoint for the next connection attempt.
    fn endpoint(&self) -> impl Future<Output = Result<Endpoint, Self::Error>> + Send;
}

impl<F, Fut, E> EndpointProvider for F
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Endpoint, E>> + Send,
    E: Into<BoxError>,
{
    type Error = E;

    fn endpoint(&self) -> impl Future<Output = Result<Endpoint, E>> + Send {
        self()
    }
}

impl EndpointProvider for Endpoint {
    type Error = std::convert::Infallible;

    async fn endpoint(&self) -> Result<Endpoint, Self::Error> {
        Ok(self.clone())
    }
}

/// A provider with its type erased.
pub(crate) type DynProvider =
    Arc<dyn Fn() -> BoxFuture<'static, Result<Endpoint, BoxError>> + Send + Sync>;

pub(crate) fn erase<P: EndpointProvider>(provider: P) -> DynProvider {
    let provider = Arc::new(provider);
    Arc::new(move || {
        let provider = provider.clone();
        Box::pin(async move { provider.endpoint().await.map_err(Into::into) })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_drops_query_and_fragment() {
        assert_eq!(redact("ws://h/p?token=secret#x"), "ws://h/p");
        assert_eq!(redact("ws://h/p#frag"), "ws://h/p");
        assert_eq!(redact("ws://h/p"), "ws://h/p");
    }

    #[tokio::test]
    async fn closures_and_endpoints_are_providers() {
        let fixed = erase(Endpoint::new("ws://a/x").header("k", "v"));
        let got = fixed().await.unwrap();
        assert_eq!(got.url(), "ws://a/x");
        assert_eq!(got.headers().collect::<Vec<_>>(), [("k", "v")]);

        let failing = erase(|| async { Err::<Endpoint, _>(std::io::Error::other("auth down")) });
        assert_eq!(failing().await.unwrap_err().to_string(), "auth down");
    }
}
