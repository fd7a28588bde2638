//! [`CrimsonLayer`]: the named configs of an app (Ktor's `install(Crimson) { .. }`), and the
//! graceful shutdown of every session they serve.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use crimson_core::cluster::Cluster;
use crimson_core::transport::Budget;
use crimson_core::CrimsonMessage;
use http::{Request, StatusCode};
use tower::{Layer, Service};

use crate::config::{CrimsonConfig, Settings};
use crate::error::ConfigError;
use crate::live::SessionSet;
use crate::metrics::RouteMetrics;

/// The typed name of a config: a route mounted with it and the config registered under it
/// must agree on `Up` and `Down`, or the program does not compile.
///
/// ```
/// use crimson_axum::ConfigName;
///
/// /// Clients send `String`, the server sends `String`.
/// const ECHO: ConfigName<String, String> = ConfigName::new("echo");
/// assert_eq!(ECHO.as_str(), "echo");
/// ```
pub struct ConfigName<Up, Down> {
    name: &'static str,
    _types: PhantomData<fn(Up) -> Down>,
}

impl<Up, Down> ConfigName<Up, Down> {
    /// A config name for clients that send `Up` and receive `Down`.
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            _types: PhantomData,
        }
    }

    /// The name, as logs and error messages show it.
    pub const fn as_str(&self) -> &'static str {
        self.name
    }
}

impl<Up, Down> Clone for ConfigName<Up, Down> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<Up, Down> Copy for ConfigName<Up, Down> {}

impl<Up, Down> fmt::Debug for ConfigName<Up, Down> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ConfigName<{}, {}>({:?})",
            std::any::type_name::<Up>(),
            std::any::type_name::<Down>(),
            self.name
        )
    }
}

/// What names a config when a route is mounted or a config registered: a typed
/// [`ConfigName`] (checked at compile time) or a string (checked when the first request
/// arrives, for Kotlin Crimson's `config = "chat"`).
pub trait IntoConfigName<Up, Down>: sealed::Sealed {
    /// The name.
    fn into_name(self) -> String;
}

mod sealed {
    pub trait Sealed {}
    impl<Up, Down> Sealed for super::ConfigName<Up, Down> {}
    impl Sealed for &str {}
    impl Sealed for String {}
}

impl<Up, Down> IntoConfigName<Up, Down> for ConfigName<Up, Down> {
    fn into_name(self) -> String {
        self.name.to_owned()
    }
}

impl<Up, Down> IntoConfigName<Up, Down> for &str {
    fn into_name(self) -> String {
        self.to_owned()
    }
}

impl<Up, Down> IntoConfigName<Up, Down> for String {
    fn into_name(self) -> String {
        self
    }
}

/// A config as its routes use it: settings shared by its sessions, its cluster, and the
/// counts its limits need.
pub(crate) struct Route<Up, Down> {
    pub(crate) settings: Arc<Settings>,
    pub(crate) cluster: Cluster<Down>,
    pub(crate) budget: Budget,
    pub(crate) live: AtomicUsize,
    pub(crate) per_address: Mutex<HashMap<IpAddr, usize>>,
    /// Resolved on the first request (after the application installed its recorder).
    metrics: OnceLock<Arc<RouteMetrics>>,
    /// The codecs its clients may choose among.
    pub(crate) spoken: crate::codecs::Spoken,
    _up: PhantomData<fn() -> Up>,
}

impl<Up: CrimsonMessage, Down: CrimsonMessage> Route<Up, Down> {
    /// The config's metrics; `name` is the config's name.
    pub(crate) fn metrics(&self, name: &str) -> &Arc<RouteMetrics> {
        self.metrics
            .get_or_init(|| Arc::new(RouteMetrics::new::<Up, Down>(name, &self.spoken)))
    }
}

impl<Up, Down> Route<Up, Down> {
    /// Counts one more session of this config from `address`, unless a limit says no.
    pub(crate) fn admit(self: &Arc<Self>, address: Option<IpAddr>) -> Result<RouteGuard, Refusal>
    where
        Up: 'static,
        Down: 'static,
    {
        if let (Some(limit), Some(address)) = (self.settings.max_connections_per_address, address) {
            let mut counts = self.per_address.lock().unwrap_or_else(|e| e.into_inner());
            let count = counts.entry(address).or_insert(0);
            if *count >= limit {
                return Err(Refusal::PerAddress(limit));
            }
            *count += 1;
        }
        let over = self
            .settings
            .max_connections
            .is_some_and(|limit| self.live.load(Ordering::Acquire) >= limit);
        self.live.fetch_add(1, Ordering::AcqRel);
        let guard = RouteGuard {
            route: self.clone(),
            address: address.filter(|_| self.settings.max_connections_per_address.is_some()),
        };
        if over {
            return Err(Refusal::ConfigFull(
                self.settings.max_connections.unwrap_or_default(),
                guard,
            ));
        }
        Ok(guard)
    }

    fn release(&self, address: Option<IpAddr>) {
        self.live.fetch_sub(1, Ordering::AcqRel);
        if let Some(address) = address {
            let mut counts = self.per_address.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(count) = counts.get_mut(&address) {
                *count -= 1;
                if *count == 0 {
                    counts.remove(&address);
                }
            }
        }
    }
}

/// Why a session is refused.
pub(crate) enum Refusal {
    /// Too many sessions from one address: 429 before the upgrade.
    PerAddress(usize),
    /// The config's limit: upgrade, then 1013 (the guard counts the session meanwhile).
    ConfigFull(usize, RouteGuard),
}

/// Counts a session of a config until dropped.
pub(crate) struct RouteGuard {
    route: Arc<dyn Releases>,
    address: Option<IpAddr>,
}

trait Releases: Send + Sync {
    fn release(&self, address: Option<IpAddr>);
}

impl<Up, Down> Releases for Route<Up, Down> {
    fn release(&self, address: Option<IpAddr>) {
        Route::release(self, address);
    }
}

impl Drop for RouteGuard {
    fn drop(&mut self) {
        self.route.release(self.address);
    }
}

struct Entry {
    route: Arc<dyn Any + Send + Sync>,
    up: &'static str,
    down: &'static str,
}

/// What the layer shares with every request: the configs, and every live session (to shut
/// them down).
pub(crate) struct Registry {
    configs: HashMap<String, Entry>,
    pub(crate) sessions: Arc<SessionSet>,
}

impl Registry {
    /// The config named `name`, if it was registered for `Up` and `Down`.
    pub(crate) fn route<Up: CrimsonMessage, Down: CrimsonMessage>(
        &self,
        name: &str,
    ) -> Result<Arc<Route<Up, Down>>, ConfigError> {
        let Some(entry) = self.configs.get(name) else {
            let mut known: Vec<_> = self.configs.keys().map(|k| format!("\"{k}\"")).collect();
            known.sort();
            return Err(ConfigError::new(format!(
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
            )));
        };
        entry
            .route
            .clone()
            .downcast::<Route<Up, Down>>()
            .map_err(|_| {
                ConfigError::new(format!(
                    "Crimson config \"{name}\" is registered for CrimsonConfig<{}, {}>, \
                     but this route was mounted for CrimsonSession<{}, {}>",
                    entry.up,
                    entry.down,
                    std::any::type_name::<Up>(),
                    std::any::type_name::<Down>()
                ))
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
/// use crimson_axum::{ConfigName, CrimsonConfig, CrimsonLayer, CrimsonSession, RouterExt};
///
/// const ECHO: ConfigName<String, String> = ConfigName::new("echo");
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
/// let crimson = CrimsonLayer::new().config(ECHO, CrimsonConfig::new());
/// let app = Router::new().crimson("/echo", ECHO, echo).layer(crimson);
/// let listener = crimson_axum::bind("127.0.0.1:0").await?;
/// crimson_axum::serve(listener, app)
///     .with_graceful_shutdown(async { let _ = tokio::signal::ctrl_c().await; })
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
            .field("live_sessions", &self.live_sessions())
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
                sessions: Arc::default(),
            }),
        }
    }

    /// Registers `config` under `name`: a [`ConfigName`] (the types are then checked at
    /// compile time against every route that uses it) or a string.
    ///
    /// # Panics
    ///
    /// If `name` is already registered, if the config's settings cannot work together (see
    /// [`CrimsonConfig::validate`]), or if the layer was already cloned (register every config
    /// before applying the layer). These are mistakes in the program, found at startup.
    #[must_use]
    #[track_caller]
    pub fn config<Up: CrimsonMessage, Down: CrimsonMessage>(
        mut self,
        name: impl IntoConfigName<Up, Down>,
        config: CrimsonConfig<Up, Down>,
    ) -> Self {
        let name = name.into_name();
        if let Err(err) = config.validate() {
            panic!("Crimson config \"{name}\" is invalid: {err}");
        }
        let registry = Arc::get_mut(&mut self.registry)
            .expect("register every Crimson config before the layer is cloned or applied");
        let spoken = crate::codecs::Spoken::of::<Up, Down>(config.settings.protocol);
        let route = Route::<Up, Down> {
            budget: Budget::new(config.settings.max_unfinished_bytes),
            settings: Arc::new(config.settings),
            cluster: config.cluster,
            live: AtomicUsize::new(0),
            per_address: Mutex::new(HashMap::new()),
            metrics: OnceLock::new(),
            spoken,
            _up: PhantomData,
        };
        let entry = Entry {
            route: Arc::new(route),
            up: std::any::type_name::<Up>(),
            down: std::any::type_name::<Down>(),
        };
        if registry.configs.insert(name.clone(), entry).is_some() {
            panic!("Crimson config \"{name}\" is registered twice");
        }
        self
    }

    /// Checks that a config is registered under `name` for `Up` and `Down`, as a route that
    /// names it will look it up, and returns its cluster: call it at startup to fail early.
    pub fn cluster<Up: CrimsonMessage, Down: CrimsonMessage>(
        &self,
        name: impl IntoConfigName<Up, Down>,
    ) -> Result<Cluster<Down>, ConfigError> {
        let name = name.into_name();
        self.registry
            .route::<Up, Down>(&name)
            .map(|route| route.cluster.clone())
    }

    /// A handle that shuts every session of this layer down gracefully.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            registry: self.registry.clone(),
        }
    }

    /// How many sessions are live across every config.
    pub fn live_sessions(&self) -> usize {
        self.registry.sessions.len()
    }
}

/// Shuts every session of a [`CrimsonLayer`] down: each sends what it has queued, then closes
/// with 1001 "server shutting down"; handlers see their sessions end. Sessions still live
/// after the grace period are dropped.
#[derive(Clone)]
pub struct ShutdownHandle {
    registry: Arc<Registry>,
}

impl fmt::Debug for ShutdownHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShutdownHandle")
            .field("live_sessions", &self.registry.sessions.len())
            .finish()
    }
}

impl ShutdownHandle {
    /// Closes every session with 1001 and waits until all have ended or `grace` has passed;
    /// then drops the connections of those still live (their handlers get the close timeout
    /// to return). Returns how many sessions were still live when the grace period ended (0
    /// on a clean shutdown).
    pub async fn shutdown(&self, grace: Duration) -> usize {
        self.registry.sessions.shutdown(grace).await
    }

    /// Whether a shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.registry.sessions.is_shutting_down()
    }

    /// How many sessions are live.
    pub fn live_sessions(&self) -> usize {
        self.registry.sessions.len()
    }

    /// A future for axum's `with_graceful_shutdown`: waits for `signal`, then shuts the
    /// sessions down (10 s grace) so the server can stop. ([`serve`](crate::serve) does this
    /// for every session it served, with a deadline for the whole server.)
    pub async fn on(self, signal: impl Future<Output = ()> + Send + 'static) {
        signal.await;
        let left = self.shutdown(Duration::from_secs(10)).await;
        if left > 0 {
            tracing::warn!(
                left,
                "sessions still live after the shutdown grace period: dropped"
            );
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
