//! Dialing: asking the endpoint provider, building the upgrade request, connecting (TLS for
//! `wss`, TCP_NODELAY on), and sorting failures into "retry" and "give up" (an invalid endpoint,
//! or an upgrade refused with a 4xx status other than 408 and 429).

use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue, Uri};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::builder::Config;
use crate::endpoint::Endpoint;
use crate::error::ClientError;

/// An open connection.
pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Why an attempt failed, and whether another attempt could do better.
pub(crate) enum AttemptError {
    /// Worth retrying, per the retry policy.
    Retry(ClientError),
    /// Retrying would fail the same way: the client closes.
    Fatal(ClientError),
}

/// Asks the provider for the endpoint and connects to it (TCP_NODELAY on, TLS for `wss`).
/// Returns the connection and its URL without the query.
pub(crate) async fn dial(config: &Config) -> Result<(Ws, String), AttemptError> {
    let endpoint = (config.endpoint)()
        .await
        .map_err(|err| AttemptError::Retry(ClientError::Endpoint(err)))?;
    let url = endpoint.redacted_url().to_owned();
    let request = request(&endpoint, &url)?;
    tracing::debug!(%url, "connecting");
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(config.max_message_size))
        .max_frame_size(Some(config.max_message_size));
    #[cfg(feature = "rustls")]
    let connected = tokio_tungstenite::connect_async_tls_with_config(
        request,
        Some(ws_config),
        true,
        Some(crate::tls::connector(&config.tls)),
    )
    .await;
    #[cfg(not(feature = "rustls"))]
    let connected =
        tokio_tungstenite::connect_async_with_config(request, Some(ws_config), true).await;
    match connected {
        Ok((ws, _response)) => Ok((ws, url)),
        Err(err) => Err(attempt_failed(url, err)),
    }
}

/// The upgrade request for `endpoint`, or why there can be none.
fn request(endpoint: &Endpoint, url: &str) -> Result<Request, AttemptError> {
    let invalid = |reason: String| {
        AttemptError::Fatal(ClientError::InvalidEndpoint {
            url: url.to_owned(),
            reason,
        })
    };
    if !endpoint.url().contains("://") {
        return Err(invalid(
            "the URL has no scheme: start it with ws:// or wss://".into(),
        ));
    }
    let uri: Uri = endpoint
        .url()
        .parse()
        .map_err(|err| invalid(format!("not a URL: {err}")))?;
    match uri.scheme_str() {
        Some("ws") => {}
        Some("wss") if cfg!(feature = "rustls") => {}
        Some("wss") => {
            return Err(invalid(
                "wss:// needs crimson-client's `rustls` feature".into(),
            ))
        }
        Some(other) => {
            return Err(invalid(format!(
                "the scheme must be ws or wss, not {other}"
            )))
        }
        None => return Err(invalid("the URL has no scheme".into())),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("the URL has no host".into()));
    }
    let mut request = uri
        .into_client_request()
        .map_err(|err| invalid(err.to_string()))?;
    for (name, value) in endpoint.headers() {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid(format!("`{name}` is not a valid header name")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| invalid(format!("the value of header `{name}` is not valid")))?;
        request.headers_mut().append(header, value);
    }
    Ok(request)
}

/// Whether a server that refused the upgrade with `status` would refuse the next attempt the
/// same way: a client error (4xx: 400 Bad Request, 401 Unauthorized, 403 Forbidden, 404 Not
/// Found, ...) except 408 Request Timeout and 429 Too Many Requests, which mean "not now".
/// Anything else (5xx, 408, 429, and 3xx, which is not followed) is worth retrying.
pub(crate) fn is_permanent_rejection(status: u16) -> bool {
    (400..500).contains(&status) && status != 408 && status != 429
}

fn attempt_failed(url: String, err: WsError) -> AttemptError {
    match err {
        WsError::Http(response) => {
            let status = response.status().as_u16();
            let error = ClientError::Rejected { url, status };
            if is_permanent_rejection(status) {
                AttemptError::Fatal(error)
            } else {
                AttemptError::Retry(error)
            }
        }
        WsError::Url(err) => AttemptError::Fatal(ClientError::InvalidEndpoint {
            url,
            reason: err.to_string(),
        }),
        WsError::HttpFormat(err) => AttemptError::Fatal(ClientError::InvalidEndpoint {
            url,
            reason: err.to_string(),
        }),
        WsError::Io(err) => AttemptError::Retry(ClientError::Connect {
            url,
            reason: err.to_string(),
        }),
        other => AttemptError::Retry(ClientError::Connect {
            url,
            reason: other.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request for `url` with `headers`, or the reason it is refused.
    fn build(url: &str, headers: &[(&str, &str)]) -> Result<Request, String> {
        let endpoint = headers
            .iter()
            .fold(Endpoint::new(url), |endpoint, (name, value)| {
                endpoint.header(*name, *value)
            });
        request(&endpoint, endpoint.redacted_url()).map_err(|err| match err {
            AttemptError::Fatal(err) => err.to_string(),
            AttemptError::Retry(err) => panic!("not fatal: {err}"),
        })
    }

    #[test]
    fn requests_carry_the_endpoint_headers() {
        let request = build(
            "ws://h:1/chat?room=7",
            &[("authorization", "Bearer t"), ("x-a", "1")],
        )
        .unwrap();
        assert_eq!(request.uri(), "ws://h:1/chat?room=7");
        assert_eq!(request.headers()["authorization"], "Bearer t");
        assert_eq!(request.headers()["x-a"], "1");
        assert!(request.headers().contains_key("sec-websocket-key"));
    }

    #[test]
    fn client_errors_but_408_and_429_are_permanent() {
        for status in [400, 401, 403, 404, 405, 410, 426, 451, 499] {
            assert!(is_permanent_rejection(status), "{status}");
        }
        for status in [301, 302, 408, 429, 500, 502, 503, 504] {
            assert!(!is_permanent_rejection(status), "{status}");
        }
    }

    #[test]
    fn bad_endpoints_are_refused_with_reasons() {
        assert_eq!(
            build("ws://h/x?token=secret", &[("bad name", "v")]).unwrap_err(),
            "invalid endpoint `ws://h/x`: `bad name` is not a valid header name"
        );
        assert_eq!(
            build("ws://h/x", &[("x-a", "line\nbreak")]).unwrap_err(),
            "invalid endpoint `ws://h/x`: the value of header `x-a` is not valid"
        );
        assert_eq!(
            build("ftp://h/x", &[]).unwrap_err(),
            "invalid endpoint `ftp://h/x`: the scheme must be ws or wss, not ftp"
        );
        assert_eq!(
            build("ws:///x", &[]).unwrap_err(),
            "invalid endpoint `ws:///x`: not a URL: invalid format"
        );
        let wss = build("wss://h/x", &[]);
        if cfg!(feature = "rustls") {
            assert!(wss.is_ok());
        } else {
            assert_eq!(
                wss.unwrap_err(),
                "invalid endpoint `wss://h/x`: wss:// needs crimson-client's `rustls` feature"
            );
        }
    }
}
