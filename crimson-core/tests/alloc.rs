//! Decoding allocates in proportion to its input, however large the lengths a hostile
//! header declares. A counting allocator measures the peak of live heap bytes per decode.

use std::sync::Mutex;

use proptest::test_runner::{Config, TestRunner};

use crimson_core::codec::{Cbor, Json, MsgPack, Protobuf};
use crimson_core::Codec;
use peak_alloc::PeakAlloc;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

/// The counter is process-wide, so the tests in this file take turns: no other test thread
/// may allocate while one measures.
static TURN: Mutex<()> = Mutex::new(());

fn take_turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

/// Peak heap bytes allocated while `f` runs, above what was live before.
fn peak_during(f: impl FnOnce()) -> usize {
    let before = ALLOC.current_usage();
    ALLOC.reset_peak_usage();
    f();
    ALLOC.peak_usage() - before
}

#[derive(Debug, Serialize, Deserialize)]
struct Batch {
    ids: Vec<u64>,
    names: Vec<String>,
    blob: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ProtoBatch {
    #[prost(uint64, repeated, tag = "1")]
    ids: Vec<u64>,
    #[prost(string, repeated, tag = "2")]
    names: Vec<String>,
    #[prost(bytes = "vec", tag = "3")]
    blob: Vec<u8>,
}

/// The bound every decode must keep: 32 bytes per input byte (a `String` header is 24 bytes
/// and one input byte can be one element) plus a little fixed overhead.
fn bound(input: &[u8]) -> usize {
    32 * input.len() + 4096
}

/// The peak of decoding `input` with every codec: the least of three runs. A decode
/// allocates the same each time; the test harness's own threads (which take no turn) may
/// allocate during one run, and once put a few KiB on a CI run's measurement.
fn decode_all(input: &[u8]) -> usize {
    (0..3)
        .map(|_| {
            peak_during(|| {
                let _ = <Json as Codec<Batch>>::decode(input);
                let _ = <Cbor as Codec<Batch>>::decode(input);
                let _ = <MsgPack as Codec<Batch>>::decode(input);
                let _ = <Protobuf as Codec<ProtoBatch>>::decode(input);
            })
        })
        .min()
        .expect("three runs")
}

#[test]
fn huge_declared_lengths_allocate_nothing_big() {
    let _turn = take_turn();
    let cases: Vec<Vec<u8>> = vec![
        // MessagePack: map {"ids": array32 of 2^32-1}
        [
            &[0x81, 0xa3][..],
            b"ids",
            &[0xdd, 0xff, 0xff, 0xff, 0xff, 0x01],
        ]
        .concat(),
        // MessagePack: array32 at top level (struct as sequence)
        vec![0xdd, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02],
        // MessagePack: bin32 of 4 GiB
        [&[0x81, 0xa4][..], b"blob", &[0xc6, 0xff, 0xff, 0xff, 0xff]].concat(),
        // CBOR: {"ids": array of 2^64-1}
        [
            &[0xa1, 0x63][..],
            b"ids",
            &[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
        ]
        .concat(),
        // CBOR: {"names": array of 2^32-1}
        [
            &[0xa1, 0x65][..],
            b"names",
            &[0x9a, 0xff, 0xff, 0xff, 0xff, 0x60],
        ]
        .concat(),
        // Protobuf: field 3 (bytes) claiming 2^35 bytes
        vec![0x1a, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
        // Protobuf: packed repeated uint64 claiming 2^28 bytes
        vec![0x0a, 0x80, 0x80, 0x80, 0x80, 0x01, 0x01],
    ];
    for input in cases {
        let peak = decode_all(&input);
        assert!(
            peak <= bound(&input),
            "{input:02x?}: peak {peak} bytes > bound {}",
            bound(&input)
        );
    }
}

/// The measurement itself works: a real decode of a large message is seen.
#[test]
fn the_counter_sees_real_allocations() {
    let _turn = take_turn();
    let batch = Batch {
        ids: (0..10_000).collect(),
        names: vec![],
        blob: vec![],
    };
    let bytes = <MsgPack as Codec<Batch>>::encode(&batch).unwrap();
    let peak = peak_during(|| {
        let back: Batch = <MsgPack as Codec<Batch>>::decode(bytes.as_bytes()).unwrap();
        assert_eq!(back.ids.len(), 10_000);
    });
    // 10,000 u64s need 80,000 bytes; allow for what was freed meanwhile.
    assert!(peak >= 70_000, "peak {peak}");
}

#[test]
fn random_input_allocates_in_proportion() {
    let _turn = take_turn();
    let mut runner = TestRunner::new(Config::with_cases(256));
    runner
        .run(&prop::collection::vec(any::<u8>(), 1..256), |bytes| {
            let peak = decode_all(&bytes);
            prop_assert!(
                peak <= bound(&bytes),
                "peak {} > bound {}",
                peak,
                bound(&bytes)
            );
            Ok(())
        })
        .unwrap();
}
