use axum::extract::State;
use axum::Router;
use crimson_axum::{ConfigName, CrimsonSession, RouterExt};

const CHAT: ConfigName<String, String> = ConfigName::new("chat");

async fn chat(_session: CrimsonSession<String, String>, State(_n): State<u32>) {}

fn main() {
    let _app: Router<u32> = Router::new().crimson("/chat", CHAT, chat);
}
