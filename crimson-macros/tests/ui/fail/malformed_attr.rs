use crimson_core::CrimsonMessage;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, CrimsonMessage)]
#[crimson(codec)]
struct NoValue(u8);

#[derive(Serialize, Deserialize, CrimsonMessage)]
#[crimson(codec = 5)]
struct NotAString(u8);

#[derive(Serialize, Deserialize, CrimsonMessage)]
#[crimson(codex = "json", frame = "bytes")]
struct UnknownKey(u8);

#[derive(Serialize, Deserialize, CrimsonMessage)]
#[crimson]
struct NoList(u8);

#[derive(Serialize, Deserialize, CrimsonMessage)]
#[crimson(crate = "not a path")]
struct BadCrate(u8);

fn main() {}

#[derive(Serialize, Deserialize, CrimsonMessage)]
#[crimson(rename(all = "x"), codec = "json", frame = 1)]
struct ListKey(u8);
