//! The WebSocket handshake (RFC 6455 §4.2) and the HTTP errors a route answers instead.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use crimson_core::transport::accept_key;
use http::{header, request::Parts, HeaderMap, HeaderValue, Method, StatusCode, Version};
use hyper::upgrade::OnUpgrade;

/// Why a request to a Crimson route was answered without upgrading.
///
/// Each answers its own status with a body that says what was wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpgradeRejection {
    /// Not a WebSocket upgrade request: a plain HTTP request reached a WebSocket route.
    /// 426 Upgrade Required.
    #[error(
        "this is a WebSocket endpoint: connect with a WebSocket client \
         (the request needs `Connection: upgrade` and `Upgrade: websocket`)"
    )]
    NotWebSocket,
    /// An upgrade request with the wrong method (WebSocket upgrades are GET). 405.
    #[error("a WebSocket upgrade must use GET")]
    MethodNotGet,
    /// `Sec-WebSocket-Version` is missing or not 13. 426, with `Sec-WebSocket-Version: 13`.
    #[error("unsupported WebSocket version: `Sec-WebSocket-Version` must be 13")]
    UnsupportedVersion,
    /// `Sec-WebSocket-Key` is missing. 400.
    #[error("the WebSocket upgrade request has no `Sec-WebSocket-Key` header")]
    MissingKey,
    /// The connection cannot be upgraded (HTTP/2, or a server without upgrade support). 426.
    #[error(
        "this connection cannot be upgraded to a WebSocket: use HTTP/1.1 \
         (and serve with crimson_axum::serve, axum::serve or hyper's upgrade support)"
    )]
    ConnectionNotUpgradable,
    /// The `Origin` is not in the config's allowed origins. 403.
    #[error("{}", match .0 {
        Some(origin) => format!("origin `{origin}` is not allowed to open this WebSocket"),
        None => "this WebSocket requires an allowed `Origin` header".to_owned(),
    })]
    OriginNotAllowed(Option<String>),
    /// This address has as many sessions of the config as it may have. 429.
    #[error("too many WebSocket connections from this address (at most {0}): try again later")]
    TooManyFromAddress(usize),
    /// The client asked only for subprotocols (codecs) the route does not speak
    /// (`docs/protocol.md`). 400.
    #[error(
        "none of the subprotocols asked for ({asked}) is spoken here; this route speaks: {spoken}"
    )]
    UnsupportedSubprotocol {
        /// What the client asked for.
        asked: String,
        /// What the route speaks.
        spoken: String,
    },
}

impl IntoResponse for UpgradeRejection {
    fn into_response(self) -> Response {
        let status = match self {
            Self::NotWebSocket | Self::UnsupportedVersion | Self::ConnectionNotUpgradable => {
                StatusCode::UPGRADE_REQUIRED
            }
            Self::MethodNotGet => StatusCode::METHOD_NOT_ALLOWED,
            Self::MissingKey | Self::UnsupportedSubprotocol { .. } => StatusCode::BAD_REQUEST,
            Self::OriginNotAllowed(_) => StatusCode::FORBIDDEN,
            Self::TooManyFromAddress(_) => StatusCode::TOO_MANY_REQUESTS,
        };
        let mut response = (status, self.to_string()).into_response();
        let headers = response.headers_mut();
        match self {
            Self::NotWebSocket | Self::ConnectionNotUpgradable => {
                headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
                headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            }
            Self::UnsupportedVersion => {
                headers.insert(
                    header::SEC_WEBSOCKET_VERSION,
                    HeaderValue::from_static("13"),
                );
            }
            Self::MethodNotGet => {
                headers.insert(header::ALLOW, HeaderValue::from_static("GET"));
            }
            Self::TooManyFromAddress(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            _ => {}
        }
        response
    }
}

/// A request that passed the handshake checks.
pub(crate) struct Handshake {
    accept: HeaderValue,
    on_upgrade: OnUpgrade,
}

fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Checks the request line and headers of an upgrade request.
pub(crate) fn check(parts: &mut Parts) -> Result<Handshake, UpgradeRejection> {
    let upgrading = has_token(&parts.headers, header::CONNECTION, "upgrade")
        && has_token(&parts.headers, header::UPGRADE, "websocket");
    if !upgrading {
        return Err(UpgradeRejection::NotWebSocket);
    }
    if parts.version > Version::HTTP_11 {
        return Err(UpgradeRejection::ConnectionNotUpgradable);
    }
    if parts.method != Method::GET {
        return Err(UpgradeRejection::MethodNotGet);
    }
    if parts
        .headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err(UpgradeRejection::UnsupportedVersion);
    }
    let key = parts
        .headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or(UpgradeRejection::MissingKey)?;
    let accept = HeaderValue::from_str(&accept_key(key.as_bytes()))
        .map_err(|_| UpgradeRejection::MissingKey)?;
    let on_upgrade = parts
        .extensions
        .remove::<OnUpgrade>()
        .ok_or(UpgradeRejection::ConnectionNotUpgradable)?;
    Ok(Handshake { accept, on_upgrade })
}

/// Checks `Origin` against an allow-list (`None`: any origin, or none, is allowed).
pub(crate) fn check_origin(
    headers: &HeaderMap,
    allowed: Option<&[String]>,
) -> Result<(), UpgradeRejection> {
    let Some(allowed) = allowed else {
        return Ok(());
    };
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    match origin {
        Some(origin) if allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)) => Ok(()),
        other => Err(UpgradeRejection::OriginNotAllowed(other.map(str::to_owned))),
    }
}

impl Handshake {
    /// The 101 response (with the agreed extensions, if any), and the future that yields the
    /// upgraded connection.
    pub(crate) fn accept(
        self,
        extensions: Option<&str>,
        protocol: Option<&str>,
    ) -> (Response, OnUpgrade) {
        let mut response = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, HeaderValue::from_static("upgrade"))
            .header(header::UPGRADE, HeaderValue::from_static("websocket"))
            .header(header::SEC_WEBSOCKET_ACCEPT, self.accept);
        if let Some(value) = extensions.and_then(|v| HeaderValue::from_str(v).ok()) {
            response = response.header(header::SEC_WEBSOCKET_EXTENSIONS, value);
        }
        if let Some(value) = protocol.and_then(|v| HeaderValue::from_str(v).ok()) {
            response = response.header(header::SEC_WEBSOCKET_PROTOCOL, value);
        }
        let response = response.body(Body::empty()).unwrap_or_default();
        (response, self.on_upgrade)
    }
}

/// The `Sec-WebSocket-Extensions` values of a request.
pub(crate) fn extension_offers(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|value| value.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut req = http::Request::get("/ws");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(()).unwrap().into_parts().0
    }

    const GOOD: &[(&str, &str)] = &[
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    #[test]
    fn plain_http_is_not_websocket() {
        let err = check(&mut parts(&[])).err().unwrap();
        assert!(matches!(err, UpgradeRejection::NotWebSocket));
        let response = err.into_response();
        assert_eq!(response.status(), StatusCode::UPGRADE_REQUIRED);
    }

    #[test]
    fn version_and_key_are_required() {
        let mut no_version = parts(&GOOD[..2]);
        assert!(matches!(
            check(&mut no_version),
            Err(UpgradeRejection::UnsupportedVersion)
        ));
        let mut no_key = parts(&GOOD[..3]);
        assert!(matches!(
            check(&mut no_key),
            Err(UpgradeRejection::MissingKey)
        ));
        // Without hyper's upgrade extension (not served by a real connection).
        let mut good = parts(GOOD);
        assert!(matches!(
            check(&mut good),
            Err(UpgradeRejection::ConnectionNotUpgradable)
        ));
    }

    #[test]
    fn origins() {
        let headers = parts(&[("origin", "https://a.example")]).headers;
        let allowed = vec!["https://a.example".to_string()];
        assert!(check_origin(&headers, Some(&allowed)).is_ok());
        assert!(check_origin(&headers, None).is_ok());
        let other = vec!["https://b.example".to_string()];
        let err = check_origin(&headers, Some(&other)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "origin `https://a.example` is not allowed to open this WebSocket"
        );
        assert!(check_origin(&HeaderMap::new(), Some(&other)).is_err());
    }
}
