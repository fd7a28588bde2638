use axum::Router;
use crimson_axum::{ConfigName, CrimsonSession, RouterExt};

const CHAT: ConfigName<String, String> = ConfigName::new("chat");

/// `String` reads the request body: a WebSocket upgrade has none.
async fn chat(_body: String, _session: CrimsonSession<String, String>) {}

fn main() {
    let _app: Router = Router::new().crimson("/chat", CHAT, chat);
}
