//! [`bind`]: a TCP listener set up for many WebSocket connections.

use std::io;

use axum::serve::{ListenerExt, TapIo};
use tokio::net::{lookup_host, TcpListener, TcpSocket, TcpStream, ToSocketAddrs};

/// The accept backlog [`bind`] asks for (tokio's default, 128, drops bursts of connects).
pub const BACKLOG: u32 = 4096;

/// A TCP listener for `axum::serve` that sets `TCP_NODELAY` on every connection (so small
/// messages are not held back by Nagle's algorithm) and has a deep accept backlog. It works
/// with `into_make_service_with_connect_info::<SocketAddr>()`.
pub type CrimsonListener = TapIo<TcpListener, fn(&mut TcpStream)>;

fn nodelay(stream: &mut TcpStream) {
    if let Err(err) = stream.set_nodelay(true) {
        tracing::debug!(error = %err, "could not set TCP_NODELAY");
    }
}

/// Binds `addr` with `SO_REUSEADDR` and a [`BACKLOG`]-deep accept queue.
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// let listener = crimson_axum::bind("127.0.0.1:0").await?;
/// use axum::serve::Listener;
/// println!("listening on {}", listener.local_addr()?);
/// axum::serve(listener, axum::Router::new()).await
/// # }
/// ```
pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<CrimsonListener> {
    let mut last = None;
    for addr in lookup_host(addr).await? {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        if let Err(err) = socket.bind(addr) {
            last = Some(err);
            continue;
        }
        let tap: fn(&mut TcpStream) = nodelay;
        return Ok(socket.listen(BACKLOG)?.tap_io(tap));
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to bind")))
}
