//! [`serve`]: axum's `serve`, with the limits a public WebSocket server needs: a deadline for
//! the handshake, a bound on connections per client address, and a graceful shutdown that
//! ends within its grace period whatever the peers do.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::Service;

use crate::listener::CrimsonListener;
use crate::live::SessionSet;

/// The server a request came through, so that the sessions it starts are shut down with it.
#[derive(Clone)]
pub(crate) struct ServedBy(pub(crate) Arc<SessionSet>);

/// Serves `app` on `listener` (with `ConnectInfo<SocketAddr>`), like `axum::serve`, with:
///
/// | limit | default | past it |
/// |---|---|---|
/// | [`handshake_timeout`](Serve::handshake_timeout) | 10 s to send a request's headers | the connection is closed |
/// | [`max_connections_per_ip`](Serve::max_connections_per_ip) | 1000 open connections per client address | a new one is closed at once |
/// | [`grace`](Serve::grace) | 10 s for a graceful shutdown | every connection still open is dropped |
///
/// Without a handshake deadline a client could hold a connection (and a file descriptor)
/// forever by never finishing its request: axum's own `serve` sets none.
///
/// On shutdown ([`with_graceful_shutdown`](Serve::with_graceful_shutdown)) it stops accepting,
/// closes every Crimson session it served with 1001 (after what each has queued), lets HTTP
/// requests in progress finish, and returns once all are done or the grace period is over,
/// dropping whatever is left: half-sent handshakes, silent connections and clients that do not
/// read cannot hold it up.
///
/// ```no_run
/// use axum::Router;
/// # async fn run(app: Router) -> std::io::Result<()> {
/// let listener = crimson_axum::bind("127.0.0.1:54321").await?;
/// crimson_axum::serve(listener, app)
///     .with_graceful_shutdown(async { let _ = tokio::signal::ctrl_c().await; })
///     .await
/// # }
/// ```
pub fn serve(listener: CrimsonListener, app: Router) -> Serve {
    Serve {
        listener,
        app,
        handshake_timeout: Duration::from_secs(10),
        max_connections_per_ip: Some(1000),
        grace: Duration::from_secs(10),
        signal: None,
    }
}

/// A server being set up: see [`serve`]. Await it to run it.
#[must_use = "a server does nothing until it is awaited"]
pub struct Serve {
    listener: CrimsonListener,
    app: Router,
    handshake_timeout: Duration,
    max_connections_per_ip: Option<usize>,
    grace: Duration,
    signal: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl fmt::Debug for Serve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Serve")
            .field("handshake_timeout", &self.handshake_timeout)
            .field("max_connections_per_ip", &self.max_connections_per_ip)
            .field("grace", &self.grace)
            .finish_non_exhaustive()
    }
}

impl Serve {
    /// How long a client has to send each request's headers (the WebSocket handshake
    /// included) before the connection is closed; also how long a kept-alive connection may
    /// wait idle for its next request.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// At most this many open connections from one client address (HTTP and WebSocket
    /// alike); `None` for no limit.
    pub fn max_connections_per_ip(mut self, limit: Option<usize>) -> Self {
        self.max_connections_per_ip = limit;
        self
    }

    /// How long a graceful shutdown may take before every connection still open is dropped.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Shuts down gracefully once `signal` completes (see [`serve`]).
    pub fn with_graceful_shutdown(
        mut self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> Self {
        self.signal = Some(Box::pin(signal));
        self
    }

    async fn run(self) -> io::Result<()> {
        let Self {
            listener,
            app,
            handshake_timeout,
            max_connections_per_ip,
            grace,
            signal,
        } = self;
        let mut signal = signal.unwrap_or_else(|| Box::pin(std::future::pending()));
        let sessions: Arc<SessionSet> = Arc::default();
        let per_ip: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut connections = JoinSet::new();
        let mut listener = listener;
        loop {
            let (stream, remote) = tokio::select! {
                accepted = listener.accept() => accepted,
                () = &mut signal => break,
                // Reap finished connections as we go.
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            };
            let Some(slot) = PerIp::take(&per_ip, remote.ip(), max_connections_per_ip) else {
                tracing::debug!(%remote, "too many connections from one address: closed");
                drop(stream);
                continue;
            };
            connections.spawn(connection(
                stream,
                remote,
                app.clone(),
                handshake_timeout,
                ServedBy(sessions.clone()),
                stop_rx.clone(),
                slot,
            ));
        }

        // Shutting down: no more connections; the open ones finish what they are doing.
        drop(listener);
        let deadline = tokio::time::Instant::now() + grace;
        let _ = stop_tx.send(true);
        let sessions_done = sessions.shutdown(grace);
        let connections_done = async { while connections.join_next().await.is_some() {} };
        let left = tokio::time::timeout_at(deadline, async {
            tokio::join!(sessions_done, connections_done).0
        })
        .await;
        match left {
            Ok(0) => {}
            Ok(left) => tracing::warn!(left, "sessions still live after the grace period: dropped"),
            Err(_) => {
                tracing::warn!(
                    connections = connections.len(),
                    sessions = sessions.len(),
                    ?grace,
                    "connections still open after the grace period: dropped"
                );
            }
        }
        connections.abort_all();
        Ok(())
    }
}

impl IntoFuture for Serve {
    type Output = io::Result<()>;
    type IntoFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

/// A connection counted against its address's limit until dropped.
struct PerIp {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: Option<IpAddr>,
}

impl PerIp {
    fn take(
        counts: &Arc<Mutex<HashMap<IpAddr, usize>>>,
        ip: IpAddr,
        limit: Option<usize>,
    ) -> Option<Self> {
        let Some(limit) = limit else {
            return Some(Self {
                counts: counts.clone(),
                ip: None,
            });
        };
        let mut map = counts.lock().unwrap_or_else(|e| e.into_inner());
        let count = map.entry(ip).or_insert(0);
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(Self {
            counts: counts.clone(),
            ip: Some(ip),
        })
    }
}

impl Drop for PerIp {
    fn drop(&mut self) {
        if let Some(ip) = self.ip {
            let mut map = self.counts.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(count) = map.get_mut(&ip) {
                *count -= 1;
                if *count == 0 {
                    map.remove(&ip);
                }
            }
        }
    }
}

/// A socket with its place in the per-address count, given back when the socket is dropped.
struct Counted {
    stream: TcpStream,
    _slot: PerIp,
}

impl tokio::io::AsyncRead for Counted {
    #[inline]
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Counted {
    #[inline]
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    #[inline]
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> std::task::Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    #[inline]
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    #[inline]
    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    #[inline]
    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Serves one connection until it ends, is upgraded, or the server stops.
async fn connection(
    stream: TcpStream,
    remote: SocketAddr,
    app: Router,
    handshake_timeout: Duration,
    served_by: ServedBy,
    mut stop: watch::Receiver<bool>,
    slot: PerIp,
) {
    // The slot goes with the socket, into the WebSocket session once upgraded: a connection
    // counts against its address's limit as long as it is open, not only until its upgrade.
    let stream = Counted {
        stream,
        _slot: slot,
    };
    let service = hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(remote));
        request.extensions_mut().insert(served_by.clone());
        let mut app = app.clone();
        async move {
            let response = app.call(request.map(axum::body::Body::new)).await;
            Ok::<_, Infallible>(response.unwrap_or_else(|never| match never {}))
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(handshake_timeout)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        served = conn.as_mut() => {
            if let Err(err) = served {
                tracing::trace!(error = %err, %remote, "connection ended");
            }
            return;
        }
        _ = stop.wait_for(|stop| *stop) => {}
    }
    // Finish the request in progress, then close (a half-sent one is cut by the handshake
    // timeout, and the server's grace period bounds everything).
    conn.as_mut().graceful_shutdown();
    if let Err(err) = conn.await {
        tracing::trace!(error = %err, %remote, "connection ended during shutdown");
    }
}
