//! Crimson's codec layer against calling each library directly, in the same run.
//!
//! `cargo bench -p crimson-core --all-features --bench codecs`, then
//! `python3 scripts/codec-ratios.py` prints crimson/direct for every codec and direction.

// `criterion_group!` writes an undocumented function.
#![allow(missing_docs)]

use std::hint::black_box;

use bytes::Bytes;
use crimson_core::{CrimsonMessage, Payload};
use criterion::{criterion_group, criterion_main, Criterion};
use serde::{Deserialize, Serialize};

/// About 100 bytes as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CrimsonMessage)]
#[crimson(codec = "json")]
struct JsonChat {
    id: u64,
    room: String,
    user: String,
    text: String,
    sent_at: u64,
}

macro_rules! serde_twin {
    ($name:ident, $codec:literal) => {
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CrimsonMessage)]
        #[crimson(codec = $codec)]
        struct $name {
            id: u64,
            room: String,
            user: String,
            text: String,
            sent_at: u64,
        }
    };
}

serde_twin!(CborChat, "cbor");
serde_twin!(MsgPackChat, "msgpack");

#[derive(Clone, PartialEq, prost::Message, CrimsonMessage)]
#[crimson(codec = "protobuf")]
struct ProtoChat {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(string, tag = "2")]
    room: String,
    #[prost(string, tag = "3")]
    user: String,
    #[prost(string, tag = "4")]
    text: String,
    #[prost(uint64, tag = "5")]
    sent_at: u64,
}

macro_rules! fields {
    ($ty:ident) => {
        $ty {
            id: 1_234_567,
            room: "lobby".into(),
            user: "ada".into(),
            text: "hello everyone, the build is green again".into(),
            sent_at: 1_795_000_000_000,
        }
    };
}

/// Encode and decode through Crimson and through the library itself, in one group so the
/// two are measured back to back.
fn pair<T: CrimsonMessage + Clone>(
    c: &mut Criterion,
    name: &str,
    value: T,
    direct_encode: impl Fn(&T) -> Payload,
    direct_decode: impl Fn(&[u8]) -> T,
) {
    let encoded = value.encode().unwrap();
    assert_eq!(
        direct_encode(&value),
        encoded,
        "{name}: both encodings agree"
    );
    let bytes = encoded.as_bytes().to_vec();
    eprintln!("{name}: {} bytes", bytes.len());

    let mut group = c.benchmark_group(format!("{name}-encode"));
    group.bench_function("direct", |b| b.iter(|| direct_encode(black_box(&value))));
    group.bench_function("crimson", |b| {
        b.iter(|| black_box(&value).encode().unwrap());
    });
    group.finish();

    let payload = encoded.as_ref();
    let mut group = c.benchmark_group(format!("{name}-decode"));
    group.bench_function("direct", |b| b.iter(|| direct_decode(black_box(&bytes))));
    group.bench_function("crimson", |b| {
        b.iter(|| T::decode(black_box(payload)).unwrap());
    });
    group.finish();
}

fn codecs(c: &mut Criterion) {
    pair(
        c,
        "json",
        fields!(JsonChat),
        |v| Payload::Text(serde_json::to_string(v).unwrap().into()),
        |b| serde_json::from_slice(b).unwrap(),
    );
    pair(
        c,
        "protobuf",
        fields!(ProtoChat),
        |v| Payload::Binary(Bytes::from(prost::Message::encode_to_vec(v))),
        |b| prost::Message::decode(b).unwrap(),
    );
    pair(
        c,
        "cbor",
        fields!(CborChat),
        |v| {
            let mut out = Vec::with_capacity(128);
            ciborium::into_writer(v, &mut out).unwrap();
            Payload::Binary(Bytes::from(out))
        },
        |b| ciborium::from_reader(b).unwrap(),
    );
    pair(
        c,
        "msgpack",
        fields!(MsgPackChat),
        |v| Payload::Binary(Bytes::from(rmp_serde::to_vec_named(v).unwrap())),
        |b| rmp_serde::from_slice(b).unwrap(),
    );
}

criterion_group!(benches, codecs);
criterion_main!(benches);
