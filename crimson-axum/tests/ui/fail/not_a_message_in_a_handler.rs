use axum::Router;
use crimson_axum::{CrimsonSession, RouterExt};

struct Position {
    x: f32,
}

async fn game(_session: CrimsonSession<Position, String>) {}

fn main() {
    let _app: Router = Router::new().crimson("/game", "game", game);
}
