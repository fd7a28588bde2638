use axum::Router;
use crimson_axum::{ConfigName, CrimsonSession, RouterExt};

const CHAT: ConfigName<String, String> = ConfigName::new("chat");

fn chat(_session: CrimsonSession<String, String>) {}

fn main() {
    let _app: Router = Router::new().crimson("/chat", CHAT, chat);
}
