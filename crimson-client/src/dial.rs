//! Dialing: asking the endpoint provider, building the upgrade request, connecting (TLS for
//! `wss`, TCP_NODELAY on), the WebSocket handshake, and sorting failures into "retry" and
//! "give up" (an invalid endpoint, or an upgrade refused with a 4xx status other than 408 and
//! 429).

use std::fmt::Write as _;

use crimson_core::transport::{self, deflate, Connection, Role};
use http::{HeaderName, HeaderValue, Uri};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::Config;
use crate::endpoint::Endpoint;
use crate::error::{is_permanent_rejection, ClientError};
use crate::stream::Stream;

/// An open connection.
pub(crate) type Conn = Connection<Stream>;

/// The longest upgrade response head the client reads.
const MAX_RESPONSE_HEAD: usize = 16 << 10;

/// Why an attempt failed, and whether another attempt could do better.
pub(crate) enum AttemptError {
    /// Worth retrying, per the retry policy.
    Retry(ClientError),
    /// Retrying would fail the same way: the client closes.
    Fatal(ClientError),
}

/// An upgrade request, checked.
pub(crate) struct Request {
    tls: bool,
    host: String,
    port: u16,
    head: String,
    key: String,
}

/// Asks the provider for the endpoint and connects to it (TCP_NODELAY on, TLS for `wss`).
/// Returns the connection, its URL without the query, and whether it speaks the Crimson
/// protocol.
pub(crate) async fn dial(config: &Config) -> Result<(Conn, String, bool), AttemptError> {
    let endpoint = (config.endpoint)()
        .await
        .map_err(|err| AttemptError::Retry(ClientError::Endpoint(err)))?;
    let url = endpoint.redacted_url().to_owned();
    let codec = &config.codec;
    let protocol = codec.token.and_then(|token| {
        if codec.protocol {
            Some(format!(
                "{}{token}, crimson.{token}",
                crimson_core::protocol::V1
            ))
        } else {
            codec.chosen.then(|| format!("crimson.{token}"))
        }
    });
    let request = request(
        &endpoint,
        &url,
        deflate::offer(&config.compression).as_deref(),
        protocol.as_deref(),
    )?;
    tracing::debug!(%url, "connecting");
    let failed = |reason: String| {
        AttemptError::Retry(ClientError::Connect {
            url: url.clone(),
            reason,
        })
    };
    let tcp = TcpStream::connect((request.host.as_str(), request.port))
        .await
        .map_err(|err| failed(err.to_string()))?;
    if let Err(err) = tcp.set_nodelay(true) {
        tracing::debug!(error = %err, "could not set TCP_NODELAY");
    }
    let mut stream = if request.tls {
        #[cfg(feature = "rustls")]
        {
            Stream::Tls(Box::new(
                crate::tls::connect(&config.tls, &request.host, tcp)
                    .await
                    .map_err(failed)?,
            ))
        }
        #[cfg(not(feature = "rustls"))]
        unreachable!("wss:// is refused without the rustls feature")
    } else {
        Stream::Plain(tcp)
    };
    stream
        .write_all(request.head.as_bytes())
        .await
        .map_err(|err| failed(err.to_string()))?;
    let (negotiated, leftover, framed) = read_response(&mut stream, &request, config, &url).await?;
    let conn = Connection::new(
        stream,
        Role::Client,
        config.max_message_size,
        negotiated,
        None,
        &leftover,
    );
    Ok((conn, url, framed))
}

/// Reads the server's answer to the upgrade request: the agreed compression and the bytes
/// read past the head (frames the server sent right away).
async fn read_response(
    stream: &mut Stream,
    request: &Request,
    config: &Config,
    url: &str,
) -> Result<(Option<deflate::Negotiated>, Vec<u8>, bool), AttemptError> {
    let retry = |reason: String| {
        AttemptError::Retry(ClientError::Connect {
            url: url.to_owned(),
            reason,
        })
    };
    let mut buf = Vec::with_capacity(1024);
    let head_len = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if buf.len() >= MAX_RESPONSE_HEAD {
            return Err(retry(format!(
                "the server's answer to the upgrade has no end of headers within {MAX_RESPONSE_HEAD} bytes"
            )));
        }
        let mut chunk = [0u8; 1024];
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|err| retry(err.to_string()))?;
        if n == 0 {
            return Err(retry(
                "the server closed the connection during the handshake".into(),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(&buf[..head_len]) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) | Err(_) => {
            return Err(retry(
                "the server's answer to the upgrade is not HTTP".into(),
            ))
        }
    }
    let status = response.code.unwrap_or(0);
    if status != 101 {
        let length = response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .and_then(|h| {
                std::str::from_utf8(h.value)
                    .ok()?
                    .trim()
                    .parse::<usize>()
                    .ok()
            })
            .unwrap_or(0);
        let body = refusal_body(stream, buf.split_off(head_len), length).await;
        let error = ClientError::Rejected {
            url: url.to_owned(),
            status,
            body,
        };
        return Err(if is_permanent_rejection(status) {
            AttemptError::Fatal(error)
        } else {
            AttemptError::Retry(error)
        });
    }
    let all: Vec<(&str, &str)> = response
        .headers
        .iter()
        .filter_map(|h| Some((h.name, std::str::from_utf8(h.value).ok()?)))
        .collect();
    let header = |name: &'static str| {
        all.iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    };
    let has_token = |name: &'static str, token: &str| {
        header(name)
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if !has_token("upgrade", "websocket") || !has_token("connection", "upgrade") {
        return Err(retry(
            "the server answered 101 without `Upgrade: websocket` and `Connection: upgrade`".into(),
        ));
    }
    let expected = transport::accept_key(request.key.as_bytes());
    if header("sec-websocket-accept").next() != Some(expected.as_str()) {
        return Err(retry(
            "the server's Sec-WebSocket-Accept does not match the key sent".into(),
        ));
    }
    let framed = check_codec(config, url, header("sec-websocket-protocol").next())?;
    let negotiated = deflate::accept(&config.compression, header("sec-websocket-extensions"))
        .map_err(|reason| retry(format!("the server's extensions cannot be used: {reason}")))?;
    Ok((negotiated, buf[head_len..].to_vec(), framed))
}

/// The start of a refusal's body as text: what of `length` bytes arrives within a second, at
/// most 512 (`read` holds what came with the head).
async fn refusal_body(stream: &mut Stream, mut read: Vec<u8>, length: usize) -> String {
    const MAX: usize = 512;
    let want = length.min(MAX);
    let more = async {
        while read.len() < want {
            let mut chunk = [0u8; MAX];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), more).await;
    read.truncate(want);
    String::from_utf8_lossy(&read).trim().to_owned()
}

/// Whether the server agreed to the codec asked for (`docs/protocol.md`, section 2).
fn check_codec(config: &Config, url: &str, answered: Option<&str>) -> Result<bool, AttemptError> {
    let codec = &config.codec;
    let token = codec.token.filter(|_| codec.protocol || codec.chosen);
    let Some(token) = token else {
        return match answered {
            // Asked for nothing: a server that names a subprotocol breaks the handshake.
            Some(answered) => Err(AttemptError::Fatal(ClientError::Codec {
                url: url.to_owned(),
                asked: "no subprotocol".to_owned(),
                reason: format!("it chose `{answered}`, which was not asked for"),
            })),
            None => Ok(false),
        };
    };
    let plain = format!("crimson.{token}");
    let framed = format!("{}{token}", crimson_core::protocol::V1);
    let refused = |reason: String| {
        AttemptError::Fatal(ClientError::Codec {
            url: url.to_owned(),
            asked: if codec.protocol {
                format!("{framed} or {plain}")
            } else {
                plain.clone()
            },
            reason,
        })
    };
    match answered {
        Some(answered) if codec.protocol && answered == framed => Ok(true),
        Some(answered) if answered == plain => Ok(false),
        Some(answered) => Err(refused(format!("it chose `{answered}` instead"))),
        // A route that does not negotiate speaks each type's default.
        None if codec.up == 0 && codec.down == 0 => Ok(false),
        None => Err(refused(
            "the server chose no subprotocol: the route does not negotiate codecs, and speaks \
             its types' defaults"
                .to_owned(),
        )),
    }
}

/// The upgrade request for `endpoint`, or why there can be none.
pub(crate) fn request(
    endpoint: &Endpoint,
    url: &str,
    extensions: Option<&str>,
    protocol: Option<&str>,
) -> Result<Request, AttemptError> {
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
    let tls = match uri.scheme_str() {
        Some("ws") => false,
        Some("wss") if cfg!(feature = "rustls") => true,
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
    };
    let host = match uri.host() {
        Some(host) if !host.is_empty() => host.to_owned(),
        _ => return Err(invalid("the URL has no host".into())),
    };
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let authority = uri.authority().map_or(host.as_str(), |a| a.as_str());
    let key = transport::new_key();
    let mut head = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n"
    );
    if let Some(extensions) = extensions {
        let _ = write!(head, "Sec-WebSocket-Extensions: {extensions}\r\n");
    }
    if let Some(protocol) = protocol {
        let _ = write!(head, "Sec-WebSocket-Protocol: {protocol}\r\n");
    }
    for (name, value) in endpoint.headers() {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid(format!("`{name}` is not a valid header name")))?;
        HeaderValue::from_str(value)
            .map_err(|_| invalid(format!("the value of header `{name}` is not valid")))?;
        let _ = write!(head, "{header}: {value}\r\n");
    }
    head.push_str("\r\n");
    Ok(Request {
        tls,
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        port,
        head,
        key,
    })
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
        request(&endpoint, endpoint.redacted_url(), None, None).map_err(|err| match err {
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
        assert!(request
            .head
            .starts_with("GET /chat?room=7 HTTP/1.1\r\nHost: h:1\r\n"));
        assert!(request.head.contains("authorization: Bearer t\r\n"));
        assert!(request.head.contains("x-a: 1\r\n"));
        assert!(request
            .head
            .contains(&format!("Sec-WebSocket-Key: {}\r\n", request.key)));
        assert!(request.head.ends_with("\r\n\r\n"));
        assert_eq!((request.host.as_str(), request.port), ("h", 1));
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
        let err = |url: &str, headers: &[(&str, &str)]| build(url, headers).err().unwrap();
        assert_eq!(
            err("ws://h/x?token=secret", &[("bad name", "v")]),
            "invalid endpoint `ws://h/x`: `bad name` is not a valid header name"
        );
        assert_eq!(
            err("ws://h/x", &[("x-a", "line\nbreak")]),
            "invalid endpoint `ws://h/x`: the value of header `x-a` is not valid"
        );
        assert_eq!(
            err("ftp://h/x", &[]),
            "invalid endpoint `ftp://h/x`: the scheme must be ws or wss, not ftp"
        );
        assert_eq!(
            err("ws:///x", &[]),
            "invalid endpoint `ws:///x`: not a URL: invalid format"
        );
        let wss = build("wss://h/x", &[]);
        if cfg!(feature = "rustls") {
            assert_eq!(wss.map(|r| r.port).unwrap(), 443);
        } else {
            assert_eq!(
                wss.err().unwrap(),
                "invalid endpoint `wss://h/x`: wss:// needs crimson-client's `rustls` feature"
            );
        }
    }
}
