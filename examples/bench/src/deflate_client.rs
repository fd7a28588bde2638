//! A load client that speaks permessage-deflate (tokio-tungstenite cannot), on Crimson's own
//! transport in the client role, counting the bytes that cross the socket each way.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use crimson_axum::transport::{self, deflate, Connection, Deflate, Incoming, Role};
use crimson_axum::{Payload, PayloadRef};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// Bytes read and written on some sockets.
#[derive(Debug, Default)]
pub struct Wire {
    /// Bytes read (from the server).
    pub read: AtomicU64,
    /// Bytes written (to the server).
    pub written: AtomicU64,
}

/// A socket that adds what crosses it to a [`Wire`].
#[derive(Debug)]
pub struct Counted {
    io: TcpStream,
    wire: Arc<Wire>,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        self.wire.read.fetch_add(read as u64, Ordering::Relaxed);
        polled
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = &polled {
            self.wire.written.fetch_add(*n as u64, Ordering::Relaxed);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &polled {
            self.wire.written.fetch_add(*n as u64, Ordering::Relaxed);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// An open client connection.
pub type Client = Connection<Counted>;

/// Connects to `ws://server{path}`, offering `offer` (or nothing when it is disabled).
/// Returns the connection and whether the server agreed to compress.
pub async fn connect(
    server: SocketAddr,
    path: &str,
    offer: &Deflate,
    wire: Arc<Wire>,
) -> io::Result<(Client, bool)> {
    assert!(server.ip().is_loopback(), "load goes to loopback only");
    let mut tcp = TcpStream::connect(server).await?;
    tcp.set_nodelay(true)?;
    let key = transport::new_key();
    let mut head = format!(
        "GET {path} HTTP/1.1\r\nHost: {server}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n"
    );
    if let Some(extensions) = deflate::offer(offer) {
        head.push_str(&format!("Sec-WebSocket-Extensions: {extensions}\r\n"));
    }
    head.push_str("\r\n");
    tcp.write_all(head.as_bytes()).await?;
    let mut response = Vec::new();
    let mut byte = [0u8; 1];
    while !response.ends_with(b"\r\n\r\n") {
        if response.len() > 8192 || tcp.read(&mut byte).await? == 0 {
            return Err(io::Error::other("no answer to the upgrade"));
        }
        response.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&response);
    if !text.starts_with("HTTP/1.1 101") {
        return Err(io::Error::other(format!("upgrade refused: {text}")));
    }
    let extensions = text.lines().filter_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("sec-websocket-extensions")
            .then_some(value.trim())
    });
    let negotiated = deflate::accept(offer, extensions).map_err(io::Error::other)?;
    let compressed = negotiated.is_some();
    let io = Counted { io: tcp, wire };
    let conn = Connection::new(io, Role::Client, 64 << 20, negotiated, None, &[]);
    Ok((conn, compressed))
}

/// Sends one text message and flushes.
pub async fn send(conn: &mut Client, text: &str) -> io::Result<()> {
    conn.send(&Payload::Text(text.into()), None)
        .map_err(io::Error::other)?;
    std::future::poll_fn(|cx| conn.poll_flush(cx)).await
}

/// The next text message (control frames are answered and skipped).
pub async fn next_text(conn: &mut Client) -> io::Result<String> {
    loop {
        let mut got: Option<io::Result<String>> = None;
        std::future::poll_fn(|cx| {
            let polled = conn.poll_read(cx, 1, &mut |incoming| match incoming {
                Incoming::Message(PayloadRef::Text(text)) => got = Some(Ok(text.to_owned())),
                Incoming::Message(PayloadRef::Binary(_)) => {
                    got = Some(Err(io::Error::other("a binary message")));
                }
                Incoming::Close(frame) => {
                    got = Some(Err(io::Error::other(format!("closed: {frame:?}"))));
                }
                Incoming::Ping(_) | Incoming::Pong(_) => {}
            });
            match polled {
                Poll::Ready(Ok(_)) => Poll::Ready(Ok(())),
                Poll::Ready(Err(err)) => Poll::Ready(Err(io::Error::other(err.to_string()))),
                Poll::Pending => Poll::Pending,
            }
        })
        .await?;
        // A pong answered while reading goes out now.
        std::future::poll_fn(|cx| conn.poll_flush(cx)).await?;
        if let Some(got) = got {
            return got;
        }
    }
}
