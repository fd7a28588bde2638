//! A raw WebSocket client (and a raw server handshake) written byte by byte, so the hostile
//! scenarios can send what no well-behaved library would.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The request head of a WebSocket upgrade to `path`.
pub(crate) fn upgrade_request(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
}

/// Connects and upgrades; returns the socket once the 101 has been read.
pub(crate) async fn connect(addr: &str, path: &str) -> std::io::Result<TcpStream> {
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    tcp.write_all(upgrade_request(path).as_bytes()).await?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 8192 || tcp.read(&mut byte).await? == 0 {
            return Err(std::io::Error::other("no 101 answer"));
        }
        head.push(byte[0]);
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        return Err(std::io::Error::other(format!(
            "upgrade refused: {}",
            String::from_utf8_lossy(&head[..head.len().min(80)])
        )));
    }
    Ok(tcp)
}

/// One frame: `fin`, `opcode`, masked with a fixed key when `masked` (a client's frames).
pub(crate) fn frame(fin: bool, opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | opcode];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= 0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        let key = [0x12, 0x34, 0x56, 0x78];
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// A text message as a client sends it.
pub(crate) fn text(payload: &str) -> Vec<u8> {
    frame(true, 0x1, payload.as_bytes(), true)
}

/// What a reader took from a server's stream.
#[derive(Debug)]
pub(crate) enum Read {
    /// A text message.
    Text(String),
    /// A close frame's code and reason.
    Close(u16, String),
    /// The connection ended.
    Gone,
}

/// Reads frames (unmasked, as a server sends them), buffering partial ones.
pub(crate) struct FrameReader {
    buf: Vec<u8>,
}

impl FrameReader {
    pub(crate) fn new() -> Self {
        Self { buf: Vec::new() }
    }

    /// The next text message or close, skipping pings and pongs; `Gone` at EOF, an error or
    /// after `within`.
    pub(crate) async fn next(&mut self, tcp: &mut TcpStream, within: Duration) -> Read {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some((op, payload, used)) = parse(&self.buf) {
                self.buf.drain(..used);
                match op {
                    0x1 => return Read::Text(String::from_utf8_lossy(&payload).into_owned()),
                    0x8 => {
                        let code = payload
                            .get(..2)
                            .map_or(1005, |c| u16::from_be_bytes([c[0], c[1]]));
                        let reason = String::from_utf8_lossy(payload.get(2..).unwrap_or(&[]));
                        return Read::Close(code, reason.into_owned());
                    }
                    _ => continue,
                }
            }
            let mut chunk = [0u8; 16 << 10];
            match tokio::time::timeout_at(deadline, tcp.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => self.buf.extend_from_slice(&chunk[..n]),
                _ => return Read::Gone,
            }
        }
    }
}

/// One whole unmasked, unfragmented frame at the start of `buf`: opcode, payload, bytes used.
fn parse(buf: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    let [b0, b1, ..] = *buf else { return None };
    let (len, at) = match b1 & 0x7F {
        126 => (u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]) as usize, 4),
        127 => {
            let mut be = [0u8; 8];
            be.copy_from_slice(buf.get(2..10)?);
            (u64::from_be_bytes(be) as usize, 10)
        }
        n => (n as usize, 2),
    };
    let payload = buf.get(at..at + len)?;
    Some((b0 & 0x0F, payload.to_vec(), at + len))
}

/// Answers a client's upgrade request on `tcp` (any key: the answer's accept value is
/// computed), so a fake server can then misbehave.
pub(crate) async fn accept(tcp: &mut TcpStream) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 << 10 || tcp.read(&mut byte).await? == 0 {
            return Err(std::io::Error::other("no upgrade request"));
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head);
    let key = text
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-key")
                .then(|| value.trim().to_owned())
        })
        .ok_or_else(|| std::io::Error::other("no Sec-WebSocket-Key"))?;
    let accept = crimson_axum::transport::accept_key(key.as_bytes());
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    tcp.write_all(response.as_bytes()).await
}
