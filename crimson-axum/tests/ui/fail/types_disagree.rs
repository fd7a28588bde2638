use axum::Router;
use crimson_axum::{Bytes, ConfigName, CrimsonSession, RouterExt};

const CHAT: ConfigName<String, String> = ConfigName::new("chat");

/// The config says `String` comes down; the handler's session says `Bytes`.
async fn chat(_session: CrimsonSession<String, Bytes>) {}

fn main() {
    let _app: Router = Router::new().crimson("/chat", CHAT, chat);
}
