use crimson_core::CrimsonMessage;

#[derive(Clone, PartialEq, prost::Message, CrimsonMessage)]
#[crimson(codec = "protobuf", frame = "text")]
struct Position {
    #[prost(int32, tag = "1")]
    x: i32,
}

fn main() {}
