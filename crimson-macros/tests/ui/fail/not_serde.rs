use crimson_core::CrimsonMessage;

#[derive(CrimsonMessage)]
#[crimson(codec = "cbor")]
struct NoSerde {
    x: i32,
}

fn main() {}
