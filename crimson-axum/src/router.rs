//! `Router::crimson`: mounting a typed WebSocket route.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use axum::Router;
use crimson_core::session::{Outbox, SessionId, SessionInfo};
use crimson_core::CrimsonMessage;
use tracing::Instrument;

use crate::handler::CrimsonHandler;
use crate::layer::{setup_error, Registry};
use crate::session::{Headers, Shared};
use crate::{driver, upgrade};

mod sealed {
    pub trait Sealed {}
    impl<S> Sealed for axum::Router<S> {}
}

/// Adds `.crimson::<Up, Down>(path, config, handler)` to axum's [`Router`].
///
/// This trait is sealed.
pub trait RouterExt<S>: sealed::Sealed {
    /// Mounts a Crimson route at `path`: clients send `Up`, the server sends `Down`, with the
    /// config registered as `config` on a [`CrimsonLayer`](crate::CrimsonLayer) applied to
    /// this router.
    ///
    /// A missing config, or one registered for other message types, answers 500 with a body
    /// that names the config (and logs it at error) from the first request on. axum gives a
    /// route no way to see the layers applied after it, so to fail at startup instead, check
    /// the layer before serving:
    ///
    /// ```
    /// use crimson_axum::{CrimsonConfig, CrimsonLayer};
    ///
    /// let layer = CrimsonLayer::new().config("chat", CrimsonConfig::<String, String>::new());
    /// // What `.crimson::<String, String, _, _>(.., "chat", ..)` will look up:
    /// assert!(layer.get::<String, String>("chat").is_ok());
    /// let err = layer.get::<String, String>("chta").unwrap_err();
    /// assert!(err.starts_with("Crimson config \"chta\" is not registered"));
    /// ```
    #[must_use]
    fn crimson<Up, Down, H, T>(self, path: &str, config: &str, handler: H) -> Self
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
    fn crimson<Up, Down, H, T>(self, path: &str, config: &str, handler: H) -> Self
    where
        Up: CrimsonMessage,
        Down: CrimsonMessage,
        H: CrimsonHandler<T, S, Up, Down>,
        T: 'static,
    {
        let name: Arc<str> = config.into();
        self.route(
            path,
            axum::routing::any(move |State(state): State<S>, request: Request| {
                endpoint::<Up, Down, H, T, S>(state, request, name.clone(), handler.clone())
            }),
        )
    }
}

async fn endpoint<Up, Down, H, T, S>(
    state: S,
    request: Request,
    name: Arc<str>,
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
    let config = match registry.get::<Up, Down>(&name) {
        Ok(config) => config,
        Err(message) => return setup_error(message),
    };
    let handshake = match upgrade::check(&mut parts) {
        Ok(handshake) => handshake,
        Err(rejection) => return axum::response::IntoResponse::into_response(rejection),
    };
    if let Err(rejection) = upgrade::check_origin(&parts.headers, config.allowed_origins.as_deref())
    {
        return axum::response::IntoResponse::into_response(rejection);
    }
    let prepared = match handler.prepare(&mut parts, &state).await {
        Ok(prepared) => prepared,
        Err(response) => return response,
    };

    let (response, on_upgrade) = handshake.accept();
    let info = SessionInfo {
        id: SessionId::on_node(config.cluster.node_id()),
        connected_at: SystemTime::now(),
        remote_addr: parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| *addr),
        path: parts.uri.path().to_owned(),
        config: name.to_string(),
    };
    let span = tracing::debug_span!("crimson_session", config = %name, path = %info.path, session_id = %info.id);
    // Everything the session needs that does not need the connection is made now, so that the
    // session's task holds one copy of each (its size is most of an idle connection's cost).
    let shared = Arc::new(Shared {
        info,
        headers: Headers::new(&parts.headers),
        outbox: Outbox::new(config.outgoing_queue, config.overflow),
        closed: Default::default(),
        skipped: Default::default(),
        pending: Default::default(),
    });
    tokio::spawn(driver::session(on_upgrade, config, shared, prepared, registry).instrument(span));
    response
}
