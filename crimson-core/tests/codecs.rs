//! Property tests for every codec: round trips are exact, and no input panics a decoder.

use std::collections::BTreeMap;

use crimson_core::codec::{Cbor, Json, MsgPack, Protobuf};
use crimson_core::{Codec, FrameKind};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Kind {
    Join,
    Say { text: String },
    Move(i32, i32),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Message {
    id: u64,
    delta: i64,
    room: Option<String>,
    text: String,
    tags: Vec<String>,
    scores: BTreeMap<String, u32>,
    blob: Vec<u8>,
    flag: bool,
    kind: Kind,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ProtoMessage {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(sint64, tag = "2")]
    delta: i64,
    #[prost(string, optional, tag = "3")]
    room: Option<String>,
    #[prost(string, tag = "4")]
    text: String,
    #[prost(string, repeated, tag = "5")]
    tags: Vec<String>,
    #[prost(bytes = "vec", tag = "6")]
    blob: Vec<u8>,
    #[prost(message, optional, tag = "7")]
    inner: Option<Box<ProtoMessage>>,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Join),
        any::<String>().prop_map(|text| Kind::Say { text }),
        (any::<i32>(), any::<i32>()).prop_map(|(x, y)| Kind::Move(x, y)),
    ]
}

prop_compose! {
    fn message()(
        id in any::<u64>(),
        delta in any::<i64>(),
        room in any::<Option<String>>(),
        text in any::<String>(),
        tags in prop::collection::vec(any::<String>(), 0..4),
        scores in prop::collection::btree_map(any::<String>(), any::<u32>(), 0..4),
        blob in prop::collection::vec(any::<u8>(), 0..64),
        flag in any::<bool>(),
        kind in kind(),
    ) -> Message {
        Message { id, delta, room, text, tags, scores, blob, flag, kind }
    }
}

prop_compose! {
    fn proto_message()(
        id in any::<u64>(),
        delta in any::<i64>(),
        room in any::<Option<String>>(),
        text in any::<String>(),
        tags in prop::collection::vec(any::<String>(), 0..4),
        blob in prop::collection::vec(any::<u8>(), 0..64),
        nested in any::<bool>(),
    ) -> ProtoMessage {
        let inner = nested.then(|| Box::new(ProtoMessage { id, text: text.clone(), ..Default::default() }));
        ProtoMessage { id, delta, room, text, tags, blob, inner }
    }
}

fn round_trip<C: Codec<T>, T: PartialEq + std::fmt::Debug>(value: &T) {
    let payload = C::encode(value).unwrap();
    assert_eq!(payload.kind(), C::FRAME);
    let back: T = C::decode(payload.as_bytes()).unwrap();
    assert_eq!(&back, value);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn json_round_trips(value in message()) {
        round_trip::<Json, _>(&value);
    }

    #[test]
    fn cbor_round_trips(value in message()) {
        round_trip::<Cbor, _>(&value);
    }

    #[test]
    fn msgpack_round_trips(value in message()) {
        round_trip::<MsgPack, _>(&value);
    }

    #[test]
    fn protobuf_round_trips(value in proto_message()) {
        round_trip::<Protobuf, _>(&value);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = <Json as Codec<Message>>::decode(&bytes);
        let _ = <Cbor as Codec<Message>>::decode(&bytes);
        let _ = <MsgPack as Codec<Message>>::decode(&bytes);
        let _ = <Protobuf as Codec<ProtoMessage>>::decode(&bytes);
        let _ = <Json as Codec<serde_json::Value>>::decode(&bytes);
        let _ = <Cbor as Codec<serde_json::Value>>::decode(&bytes);
        let _ = <MsgPack as Codec<serde_json::Value>>::decode(&bytes);
    }

    /// Valid encodings with bytes flipped or cut: the nastier neighbours of real input.
    #[test]
    fn mangled_messages_never_panic(
        value in message(),
        proto in proto_message(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let encoded = [
            <Json as Codec<Message>>::encode(&value).unwrap(),
            <Cbor as Codec<Message>>::encode(&value).unwrap(),
            <MsgPack as Codec<Message>>::encode(&value).unwrap(),
            <Protobuf as Codec<ProtoMessage>>::encode(&proto).unwrap(),
        ];
        for payload in encoded {
            let mut bytes = payload.as_bytes().to_vec();
            for (at, byte) in &flips {
                let i = at.index(bytes.len());
                bytes[i] ^= byte;
            }
            let cut_at = cut.index(bytes.len() + 1);
            for input in [&bytes[..], &bytes[..cut_at]] {
                let _ = <Json as Codec<Message>>::decode(input);
                let _ = <Cbor as Codec<Message>>::decode(input);
                let _ = <MsgPack as Codec<Message>>::decode(input);
                let _ = <Protobuf as Codec<ProtoMessage>>::decode(input);
            }
        }
    }
}

#[test]
fn frames_follow_the_codec() {
    assert_eq!(<Json as Codec<Message>>::FRAME, FrameKind::Text);
    assert_eq!(<Cbor as Codec<Message>>::FRAME, FrameKind::Binary);
    assert_eq!(<MsgPack as Codec<Message>>::FRAME, FrameKind::Binary);
    assert_eq!(<Protobuf as Codec<ProtoMessage>>::FRAME, FrameKind::Binary);
}

#[test]
fn decode_errors_name_type_codec_and_cause() {
    let err = <Json as Codec<Message>>::decode(br#"{"id": 1}"#).unwrap_err();
    assert_eq!(err.codec(), "JSON");
    assert_eq!(err.short_type_name(), "Message");
    assert!(err.to_string().contains("missing field"), "{err}");

    let err =
        <MsgPack as Codec<Message>>::decode(&[0xdd, 0xff, 0xff, 0xff, 0xff, 0x01]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot decode `codecs::Message` from MessagePack: a length is declared past the end of the input"
    );
    let err = <Cbor as Codec<Message>>::decode(&[0x1c]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot decode `codecs::Message` from CBOR: malformed CBOR at byte 0"
    );
    let err = <Cbor as Codec<Message>>::decode(&[0x9a, 0xff, 0xff, 0xff, 0xff, 0x01]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot decode `codecs::Message` from CBOR: a length is declared past the end of the input"
    );
    let err = <Cbor as Codec<Message>>::decode(&[0xa1, 0x62, b'i', b'd']).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot decode `codecs::Message` from CBOR: the input ends inside an item"
    );
    let err = <Protobuf as Codec<ProtoMessage>>::decode(&[0x0a, 0x05]).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot decode `codecs::ProtoMessage` from Protobuf: "),
        "{err}"
    );
}

/// Deep nesting is refused with an error long before it could exhaust a task's stack: every
/// decode runs on a thread with tokio's default worker stack (2 MiB).
#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let depth = 100_000;
    let json = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let mut cbor = vec![0x81; depth];
    cbor.push(0x00);
    let mut msgpack = vec![0x91; depth];
    msgpack.push(0x00);
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            assert!(<Json as Codec<serde_json::Value>>::decode(json.as_bytes()).is_err());
            assert!(<Cbor as Codec<serde_json::Value>>::decode(&cbor).is_err());
            assert!(<MsgPack as Codec<serde_json::Value>>::decode(&msgpack).is_err());
            assert!(<Cbor as Codec<Message>>::decode(&cbor).is_err());
            assert!(<MsgPack as Codec<Message>>::decode(&msgpack).is_err());
        })
        .unwrap()
        .join()
        .unwrap();
}
