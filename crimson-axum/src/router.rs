//! `Router::crimson`: mounting a typed WebSocket route, and what happens on each request to it.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use axum::Router;
use crimson_core::cluster::SessionCluster;
use crimson_core::metrics::Held;
use crimson_core::session::{SessionHandle, SessionId, SessionInfo};
use crimson_core::transport::deflate;
use crimson_core::CrimsonMessage;
use tracing::Instrument;

use crate::engine::start::{Pending, SessionTask};
use crate::engine::{incoming, outbox};
use crate::handler::CrimsonHandler;
use crate::layer::{setup_error, IntoConfigName, Refusal, Registry, Route};
use crate::metrics::Rejected;
use crate::serve::ServedBy;
use crate::session::{CrimsonSession, Headers, SessionState};
use crate::upgrade::{self, UpgradeRejection};

mod sealed {
    pub trait Sealed {}
    impl<S> Sealed for axum::Router<S> {}
}

/// Adds `.crimson(path, config, handler)` to axum's [`Router`].
///
/// This trait is sealed.
pub trait RouterExt<S>: sealed::Sealed {
    /// Mounts a Crimson route at `path`: clients send `Up`, the server sends `Down`, with the
    /// config registered under `config` on a [`CrimsonLayer`](crate::CrimsonLayer) applied to
    /// this router. `Up` and `Down` come from the handler's
    /// [`CrimsonSession<Up, Down>`](crate::CrimsonSession), and must agree with a typed
    /// [`ConfigName`](crate::ConfigName) at compile time:
    ///
    /// ```
    /// use axum::Router;
    /// use crimson_axum::{ConfigName, CrimsonConfig, CrimsonLayer, CrimsonSession, RouterExt};
    ///
    /// const CHAT: ConfigName<String, String> = ConfigName::new("chat");
    ///
    /// async fn chat(mut session: CrimsonSession<String, String>) {
    ///     while let Some(text) = session.recv().await {
    ///         let _ = session.cluster().broadcast(&text).await;
    ///     }
    /// }
    ///
    /// let app: Router = Router::new()
    ///     .crimson("/chat", CHAT, chat)
    ///     .layer(CrimsonLayer::new().config(CHAT, CrimsonConfig::new()));
    /// ```
    ///
    /// A string name works too (Kotlin Crimson's `config = "chat"`): a missing config, or one
    /// registered for other message types, then answers 500 with a body that names it (and
    /// logs it at error) from the first request on; [`CrimsonLayer::cluster`] checks it at
    /// startup.
    ///
    /// [`CrimsonLayer::cluster`]: crate::CrimsonLayer::cluster
    #[must_use]
    fn crimson<Up, Down, H, T>(
        self,
        path: &str,
        config: impl IntoConfigName<Up, Down>,
        handler: H,
    ) -> Self
    where
        Up: CrimsonMessage,
        Down: CrimsonMessage,
        H: CrimsonHandler<T, S, Up, Down>,
        T: 'static;
}

impl<S> RouterExt<S> for Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    #[track_caller]
    fn crimson<Up, Down, H, T>(
        self,
        path: &str,
        config: impl IntoConfigName<Up, Down>,
        handler: H,
    ) -> Self
    where
        Up: CrimsonMessage,
        Down: CrimsonMessage,
        H: CrimsonHandler<T, S, Up, Down>,
        T: 'static,
    {
        let name: Arc<str> = config.into_name().into();
        // The config, found on the first request and kept.
        let route: Arc<OnceLock<Arc<Route<Up, Down>>>> = Arc::default();
        self.route(
            path,
            axum::routing::any(move |State(state): State<S>, request: Request| {
                endpoint::<Up, Down, H, T, S>(
                    state,
                    request,
                    name.clone(),
                    route.clone(),
                    handler.clone(),
                )
            }),
        )
    }
}

/// A session's place in its cluster, given up on drop.
struct InCluster {
    cluster: Arc<dyn SessionCluster>,
    id: SessionId,
}

impl Drop for InCluster {
    fn drop(&mut self) {
        self.cluster.remove(self.id);
    }
}

async fn endpoint<Up, Down, H, T, S>(
    state: S,
    request: Request,
    name: Arc<str>,
    found: Arc<OnceLock<Arc<Route<Up, Down>>>>,
    handler: H,
) -> Response
where
    Up: CrimsonMessage,
    Down: CrimsonMessage,
    H: CrimsonHandler<T, S, Up, Down>,
{
    let (mut parts, _body) = request.into_parts();
    let Some(registry) = parts.extensions.get::<Arc<Registry>>().cloned() else {
        return setup_error(format!(
            "Crimson route {} needs config \"{name}\", but no CrimsonLayer is applied to this \
             router: add `.layer(CrimsonLayer::new().config(\"{name}\", ..))` after the routes",
            parts.uri.path()
        ));
    };
    let route = match found.get() {
        Some(route) => route.clone(),
        None => match registry.route::<Up, Down>(&name) {
            Ok(route) => found.get_or_init(|| route).clone(),
            Err(err) => return setup_error(err.to_string()),
        },
    };
    let metrics = route.metrics(&name).clone();
    let handshake = match upgrade::check(&mut parts) {
        Ok(handshake) => handshake,
        Err(rejection) => {
            metrics.rejected(Rejected::Handshake);
            return rejection.into_response();
        }
    };
    let settings = route.settings.clone();
    if let Err(rejection) =
        upgrade::check_origin(&parts.headers, settings.allowed_origins.as_deref())
    {
        metrics.rejected(Rejected::Origin);
        return rejection.into_response();
    }
    let codec = match route.spoken.choose(&parts.headers) {
        Ok(codec) => codec,
        Err(rejection) => {
            metrics.rejected(Rejected::Subprotocol);
            return rejection.into_response();
        }
    };
    let remote_addr = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr);
    let (admitted, refusal) = match route.admit(remote_addr.map(|a| a.ip())) {
        Ok(guard) => (guard, None),
        Err(Refusal::PerAddress(limit)) => {
            tracing::debug!(?remote_addr, limit, "too many sessions from one address");
            metrics.rejected(Rejected::PerAddress);
            return UpgradeRejection::TooManyFromAddress(limit).into_response();
        }
        Err(Refusal::ConfigFull(limit, guard)) => (guard, Some(limit)),
    };
    let prepared = match handler.prepare(&mut parts, &state).await {
        Ok(prepared) => prepared,
        Err(response) => {
            metrics.rejected(Rejected::Extractor);
            return response;
        }
    };
    let compression = deflate::negotiate(
        &settings.compression,
        upgrade::extension_offers(&parts.headers),
    );
    let protocol = codec.answer();
    let (response, on_upgrade) = handshake.accept(
        compression.as_ref().map(|(_, v)| v.as_str()),
        protocol.as_deref(),
    );
    let negotiated = compression.map(|(agreed, _)| agreed);

    let cluster = route.cluster.clone();
    let info = SessionInfo {
        id: SessionId::on_node(cluster.node_id()),
        connected_at: SystemTime::now(),
        remote_addr,
        path: parts.uri.path().to_owned(),
        config: name.to_string(),
    };
    let span = tracing::debug_span!(
        "crimson_session",
        config = %name,
        path = %info.path,
        session_id = %info.id,
        remote = ?remote_addr,
    );
    let (outbox_tx, outbox_rx) = outbox::outbox_counted(
        settings.outgoing_queue,
        settings.overflow,
        outbox::Counted {
            dropped: metrics.dropped.clone(),
            overflowed: metrics.slow_consumers.clone(),
            queued: metrics.queued.clone(),
        },
    );
    let shared = Arc::new(SessionState {
        info,
        headers: Headers::new(&parts.headers),
        outbox: outbox_tx,
        record: OnceLock::new(),
        skipped: AtomicU64::new(0),
        codec,
        frame: if codec.token.is_some() {
            Down::CODECS[codec.down].frame
        } else {
            Down::FRAME
        },
        pending: crate::request::Pending::new(settings.max_open_requests),
    });
    let (input_tx, input_rx) = incoming::channel(settings.incoming_queue);

    // Into the cluster before the client sees the upgrade complete: a broadcast made after the
    // client learns it is connected reaches it.
    let mut refused = refusal.map(|limit| format!("connection limit reached ({limit} sessions)"));
    let backend = cluster.backend().clone();
    let member = if refused.is_none() {
        let sink = crate::request::SessionSink {
            queue: shared.outbox.deliverer(),
            shared: shared.clone(),
        };
        let handle = SessionHandle::new(shared.info.clone(), Arc::new(sink))
            .speaking::<Down>(codec.down)
            .framing(codec.framed);
        match backend.add(handle) {
            Ok(()) => Some(InCluster {
                cluster: backend.clone(),
                id: shared.info.id,
            }),
            Err(full) => {
                refused = Some(full.to_string());
                None
            }
        }
    } else {
        None
    };
    let handler = match &refused {
        None => {
            let _entered = span.enter();
            tracing::debug!("session connected");
            metrics.accepted.add(1);
            if let Some(hook) = &settings.on_connect {
                hook(&shared.info);
            }
            let session = CrimsonSession::new(shared.clone(), input_rx, cluster);
            Some(prepared(session))
        }
        Some(reason) => {
            let _entered = span.enter();
            tracing::debug!(%reason, "session refused");
            metrics.rejected(Rejected::ConnectionLimit);
            None
        }
    };
    let live = registry.sessions.enter(&shared.outbox);
    // Served by `crimson_axum::serve`: that server's shutdown reaches this session too.
    let served = parts
        .extensions
        .get::<ServedBy>()
        .map(|ServedBy(server)| server.enter(&shared.outbox));
    let open = handler.is_some().then(|| Held::new(&metrics.open));
    let guards: crate::engine::Guards = Box::new((member, admitted, live, served, open));

    let pending = Pending {
        shared,
        settings,
        outbox: outbox_rx,
        input: input_tx,
        handler,
        guards,
        refused,
        budget: route.budget.clone(),
        negotiated,
        metrics,
        cluster: codec.framed.then_some(backend),
    };
    tokio::spawn(SessionTask::new(on_upgrade, pending).instrument(span));
    response
}
