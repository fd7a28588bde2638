//! The peer framework under test: [ezsockets](https://crates.io/crates/ezsockets) 0.7, served
//! through its axum 0.8 runner (`ezsockets::axum::Upgrade`) with its defaults
//! (`SocketConfig::default()`: a ping every 5 s, 10 s timeout; tungstenite's default buffers).
//!
//! ezsockets is an actor framework. One server actor (`ServerExt`) takes every new connection
//! and creates a session actor (`SessionExt`) for it. Each text message reaches the session's
//! `on_text`; `Session::text` queues a message for the session's socket. Messages are plain
//! text: the application decodes and encodes them itself. The framework has no broadcast call;
//! its documented way (the chat server in its repository) is a server actor that keeps the
//! session handles and, on a `Server::call` from a session, queues the text on each of them.
//! This module does the same work as the other servers with those parts:
//!
//! - `/echo`: `on_text` decodes the JSON into [`Echo`], encodes it again and `text`s it back.
//! - `/sub`: the server actor keeps the session's handle until it disconnects.
//! - `/pub`: `on_text` decodes the JSON into [`Tick`] once and encodes it once, then calls the
//!   server actor, whose `on_call` queues the encoded text on every subscriber (each clone is
//!   a reference-count bump).

use std::collections::HashMap;
use std::net::SocketAddr;

use async_trait::async_trait;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use ezsockets::axum::Upgrade;
use ezsockets::{
    Bytes, CloseFrame, Error, Request, Server, ServerExt, SessionExt, Socket, Utf8Bytes,
};

use crate::{Echo, Tick};

/// A session handle, keyed by a number the server actor hands out.
type Session = ezsockets::Session<u64, ()>;

/// What a connection does, from the path it connected to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Echo,
    Subscriber,
    Publisher,
}

/// Calls to the server actor.
#[derive(Debug)]
enum Call {
    /// Queue this encoded `Tick` on every subscriber.
    Broadcast(Utf8Bytes),
}

/// The server actor: hands out session ids and holds the subscribers.
struct BenchServer {
    handle: Server<Self>,
    next_id: u64,
    subscribers: HashMap<u64, Session>,
}

#[async_trait]
impl ServerExt for BenchServer {
    type Session = BenchSession;
    type Call = Call;

    async fn on_connect(
        &mut self,
        socket: Socket,
        request: Request,
        _address: SocketAddr,
    ) -> Result<Session, Option<CloseFrame>> {
        let role = match request.uri().path() {
            "/sub" => Role::Subscriber,
            "/pub" => Role::Publisher,
            _ => Role::Echo,
        };
        let id = self.next_id;
        self.next_id += 1;
        let server = self.handle.clone();
        let session = Session::create(
            |handle| BenchSession {
                id,
                role,
                handle,
                server,
            },
            id,
            socket,
        );
        if role == Role::Subscriber {
            self.subscribers.insert(id, session.clone());
        }
        Ok(session)
    }

    async fn on_disconnect(
        &mut self,
        id: u64,
        _reason: Result<Option<CloseFrame>, Error>,
    ) -> Result<(), Error> {
        self.subscribers.remove(&id);
        Ok(())
    }

    async fn on_call(&mut self, call: Call) -> Result<(), Error> {
        let Call::Broadcast(text) = call;
        for subscriber in self.subscribers.values() {
            // Fails only for a session that has ended; `on_disconnect` removes it. The bench
            // client counts every delivery, so a lost one would show.
            let _ = subscriber.text(text.clone());
        }
        Ok(())
    }
}

/// One connection's session actor.
struct BenchSession {
    id: u64,
    role: Role,
    handle: Session,
    server: Server<BenchServer>,
}

#[async_trait]
impl SessionExt for BenchSession {
    type ID = u64;
    type Call = ();

    fn id(&self) -> &u64 {
        &self.id
    }

    async fn on_text(&mut self, text: Utf8Bytes) -> Result<(), Error> {
        match self.role {
            Role::Echo => {
                let echo: Echo = serde_json::from_str(&text)?;
                self.handle.text(serde_json::to_string(&echo)?)?;
            }
            Role::Publisher => {
                let tick: Tick = serde_json::from_str(&text)?;
                let encoded = Utf8Bytes::from(serde_json::to_string(&tick)?);
                self.server.call(Call::Broadcast(encoded))?;
            }
            Role::Subscriber => {}
        }
        Ok(())
    }

    async fn on_binary(&mut self, _bytes: Bytes) -> Result<(), Error> {
        Ok(())
    }

    async fn on_call(&mut self, (): ()) -> Result<(), Error> {
        Ok(())
    }
}

async fn upgrade(State(server): State<Server<BenchServer>>, upgrade: Upgrade) -> Response {
    upgrade.on_upgrade(server)
}

/// The routes of `scenario`, served by one ezsockets server actor.
pub(crate) fn app(scenario: &str) -> Router {
    let (server, _) = Server::create(|handle| BenchServer {
        handle,
        next_id: 0,
        subscribers: HashMap::new(),
    });
    let router = match scenario {
        "broadcast" => Router::new()
            .route("/sub", get(upgrade))
            .route("/pub", get(upgrade)),
        _ => Router::new().route("/echo", get(upgrade)),
    };
    router.with_state(server)
}
