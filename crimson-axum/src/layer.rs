//! [`CrimsonLayer`]: the named configs of an app (Ktor's `install(Crimson) { .. }`), and the
//! graceful shutdown of every session they serve.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use crimson_core::CrimsonMessage;
use http::{Request, StatusCode};
use tokio::sync::{watch, Notify};
use tower::{Layer, Service};

use crate::config::CrimsonConfig;

struct Entry {
    config: Arc<dyn Any + Send + Sync>,
    up: &'static str,
    down: &'static str,
}

/// What the layer shares with every request: the configs and the shutdown signal.
pub(crate) struct Registry {
    configs: HashMap<String, Entry>,
    pub(crate) shutdown: watch::Sender<bool>,
    live: AtomicUsize,
    all_ended: Notify,
}

/// Counts a live session; dropping it uncounts.
pub(crate) struct LiveGuard(Arc<Registry>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        if self.0.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.all_ended.notify_waiters();
        }
    }
}

impl Registry {
    pub(crate) fn enter(self: &Arc<Self>) -> LiveGuard {
        self.live.fetch_add(1, Ordering::AcqRel);
        LiveGuard(self.clone())
    }

    /// The config named `name`, if it was registered for `Up` and `Down`.
    pub(crate) fn get<Up: CrimsonMessage, Down: CrimsonMessage>(
        &self,
        name: &str,
    ) -> Result<CrimsonConfig<Up, Down>, String> {
        let Some(entry) = self.configs.get(name) else {
            let mut known: Vec<_> = self.configs.keys().map(|k| format!("\"{k}\"")).collect();
            known.sort();
            return Err(format!(
                "Crimson config \"{name}\" is not registered: add \
                 `CrimsonLayer::new().config(\"{name}\", CrimsonConfig::<{}, {}>::new())` \
                 to this router's layers (registered: {})",
                std::any::type_name::<Up>(),
                std::any::type_name::<Down>(),
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ));
        };
        entry
            .config
            .downcast_ref::<CrimsonConfig<Up, Down>>()
            .cloned()
            .ok_or_else(|| {
                format!(
                    "Crimson config \"{name}\" is registered for CrimsonConfig<{}, {}>, \
                     but this route was mounted with .crimson::<{}, {}>()",
                    entry.up,
                    entry.down,
                    std::any::type_name::<Up>(),
                    std::any::type_name::<Down>()
                )
            })
    }
}

/// A 500 that says what setup is missing.
pub(crate) fn setup_error(message: String) -> Response {
    tracing::error!("{message}");
    (StatusCode::INTERNAL_SERVER_ERROR, message).into_response()
}

/// Registers named [`CrimsonConfig`]s for the Crimson routes of a router.
///
/// ```no_run
/// use axum::Router;
/// use crimson_axum::{CrimsonConfig, CrimsonLayer, CrimsonSession, RouterExt};
///
/// async fn echo(mut session: CrimsonSession<String, String>) {
///     while let Some(text) = session.recv().await {
///         if session.send(text).await.is_err() {
///             break;
///         }
///     }
/// }
///
/// # async fn run() -> std::io::Result<()> {
/// let crimson = CrimsonLayer::new().config("echo", CrimsonConfig::<String, String>::new());
/// let shutdown = crimson.shutdown_handle();
/// let app = Router::new()
///     .crimson::<String, String, _, _>("/echo", "echo", echo)
///     .layer(crimson);
/// let listener = crimson_axum::bind("127.0.0.1:0").await?;
/// axum::serve(listener, app)
///     .with_graceful_shutdown(shutdown.on(async { let _ = tokio::signal::ctrl_c().await; }))
///     .await
/// # }
/// ```
#[derive(Clone)]
pub struct CrimsonLayer {
    registry: Arc<Registry>,
}

impl fmt::Debug for CrimsonLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<_> = self.registry.configs.keys().collect();
        names.sort();
        f.debug_struct("CrimsonLayer")
            .field("configs", &names)
            .field("live_sessions", &self.registry.live.load(Ordering::Relaxed))
            .finish()
    }
}

impl Default for CrimsonLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl CrimsonLayer {
    /// A layer with no configs.
    pub fn new() -> Self {
        Self {
            registry: Arc::new(Registry {
                configs: HashMap::new(),
                shutdown: watch::Sender::new(false),
                live: AtomicUsize::new(0),
                all_ended: Notify::new(),
            }),
        }
    }

    /// Registers `config` under `name`.
    ///
    /// # Panics
    ///
    /// If `name` is already registered, or the layer was already cloned (register every
    /// config before applying the layer).
    #[must_use]
    #[track_caller]
    pub fn config<Up: CrimsonMessage, Down: CrimsonMessage>(
        mut self,
        name: impl Into<String>,
        config: CrimsonConfig<Up, Down>,
    ) -> Self {
        let name = name.into();
        let registry = Arc::get_mut(&mut self.registry)
            .expect("register every Crimson config before the layer is cloned or applied");
        let entry = Entry {
            config: Arc::new(config),
            up: std::any::type_name::<Up>(),
            down: std::any::type_name::<Down>(),
        };
        if registry.configs.insert(name.clone(), entry).is_some() {
            panic!("Crimson config \"{name}\" is registered twice");
        }
        self
    }

    /// The config registered as `name` for `Up` and `Down` (to reach its cluster).
    pub fn get<Up: CrimsonMessage, Down: CrimsonMessage>(
        &self,
        name: &str,
    ) -> Result<CrimsonConfig<Up, Down>, String> {
        self.registry.get(name)
    }

    /// A handle that shuts every session of this layer down gracefully.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            registry: self.registry.clone(),
        }
    }

    /// How many sessions are live across every config.
    pub fn live_sessions(&self) -> usize {
        self.registry.live.load(Ordering::Acquire)
    }
}

/// Shuts every session of a [`CrimsonLayer`] down: each sends what it has queued, then closes
/// with 1001 "server shutting down"; handlers see their sessions end.
#[derive(Clone)]
pub struct ShutdownHandle {
    registry: Arc<Registry>,
}

impl fmt::Debug for ShutdownHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShutdownHandle")
            .field("live_sessions", &self.registry.live.load(Ordering::Relaxed))
            .finish()
    }
}

impl ShutdownHandle {
    /// Closes every session with 1001 and waits until all have ended, or `grace` has passed.
    /// Returns how many sessions were still live when it gave up (0 on a clean shutdown).
    pub async fn shutdown(&self, grace: Duration) -> usize {
        self.registry.shutdown.send_replace(true);
        let wait = async {
            loop {
                let ended = self.registry.all_ended.notified();
                tokio::pin!(ended);
                ended.as_mut().enable();
                if self.registry.live.load(Ordering::Acquire) == 0 {
                    return;
                }
                ended.await;
            }
        };
        let _ = tokio::time::timeout(grace, wait).await;
        self.registry.live.load(Ordering::Acquire)
    }

    /// A future for axum's `with_graceful_shutdown`: waits for `signal`, then shuts the
    /// sessions down (10 s grace) so the server can stop.
    pub async fn on(self, signal: impl Future<Output = ()> + Send + 'static) {
        signal.await;
        let left = self.shutdown(Duration::from_secs(10)).await;
        if left > 0 {
            tracing::warn!(left, "sessions still live after the shutdown grace period");
        }
    }
}

impl<S> Layer<S> for CrimsonLayer {
    type Service = CrimsonService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CrimsonService {
            inner,
            registry: self.registry.clone(),
        }
    }
}

/// The service [`CrimsonLayer`] wraps routes in: it hands them the configs.
#[derive(Clone)]
pub struct CrimsonService<S> {
    inner: S,
    registry: Arc<Registry>,
}

impl<S> fmt::Debug for CrimsonService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CrimsonService").finish_non_exhaustive()
    }
}

impl<S, B> Service<Request<B>> for CrimsonService<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        request.extensions_mut().insert(self.registry.clone());
        self.inner.call(request)
    }
}
