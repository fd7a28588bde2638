use crimson_axum::{CrimsonConfig, CrimsonLayer};

struct Position {
    x: f32,
}

fn main() {
    let _layer = CrimsonLayer::new().config("game", CrimsonConfig::<Position, String>::new());
}
