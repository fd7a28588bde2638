use axum::extract::State;
use axum::Router;
use crimson_axum::{ConfigName, CrimsonConfig, CrimsonLayer, CrimsonSession, RouterExt};

const CHAT: ConfigName<String, String> = ConfigName::new("chat");

async fn chat(State(_n): State<u32>, _session: CrimsonSession<String, String>) {}

fn main() {
    let _app: Router = Router::new()
        .crimson("/chat", CHAT, chat)
        // A string name: the types come from the handler.
        .crimson("/chat2", "chat", chat)
        .layer(CrimsonLayer::new().config(CHAT, CrimsonConfig::new()))
        .with_state(1u32);
}
