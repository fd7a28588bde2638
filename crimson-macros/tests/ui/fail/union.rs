use crimson_core::CrimsonMessage;

#[derive(CrimsonMessage)]
#[crimson(codec = "json")]
union Bits {
    int: u32,
    float: f32,
}

fn main() {}
