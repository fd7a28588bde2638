//! [`bind`]: a TCP listener set up for many WebSocket connections.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{lookup_host, TcpListener, TcpSocket, TcpStream, ToSocketAddrs};

/// The accept backlog [`bind`] asks for (tokio's default, 128, drops bursts of connects).
pub const BACKLOG: u32 = 4096;

/// A TCP listener for [`serve`](crate::serve) (or `axum::serve`) that sets `TCP_NODELAY` on
/// every connection, so small messages are not held back by Nagle's algorithm, and has a deep
/// accept backlog. Make one with [`bind`].
#[derive(Debug)]
pub struct CrimsonListener {
    inner: TcpListener,
}

impl CrimsonListener {
    /// The address it listens on (the port chosen, when bound to port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// Waits for the next connection, with `TCP_NODELAY` set. An error accepting (out of file
    /// descriptors, say) is logged and waited out, as axum's own listener does, so one bad
    /// moment does not stop the server.
    pub async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    if let Err(err) = stream.set_nodelay(true) {
                        tracing::debug!(error = %err, "could not set TCP_NODELAY");
                    }
                    return (stream, addr);
                }
                Err(err) if is_connection_error(&err) => {}
                Err(err) => {
                    tracing::error!(error = %err, "accepting a connection failed: waiting 50 ms");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

impl axum::serve::Listener for CrimsonListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        CrimsonListener::accept(self).await
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// Binds `addr` with `SO_REUSEADDR` and a [`BACKLOG`]-deep accept queue.
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// let listener = crimson_axum::bind("127.0.0.1:0").await?;
/// println!("listening on {}", listener.local_addr()?);
/// crimson_axum::serve(listener, axum::Router::new()).await
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
        return Ok(CrimsonListener {
            inner: socket.listen(BACKLOG)?,
        });
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to bind")))
}
