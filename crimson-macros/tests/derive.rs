//! Round trips through every codec the derive binds, and the `frame` and `crate` overrides.

use crimson_core::{CrimsonMessage, FrameKind, Payload, PayloadRef};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Encodes `value`, checks the frame kind and codec name, and decodes it back.
fn round_trip<T>(value: &T, frame: FrameKind, codec: &str) -> Payload
where
    T: CrimsonMessage + PartialEq + std::fmt::Debug,
{
    assert_eq!(T::FRAME, frame);
    assert_eq!(T::CODEC, codec);
    let payload = value.encode().unwrap();
    assert_eq!(payload.kind(), frame);
    assert_eq!(&T::decode(payload.as_ref()).unwrap(), value);
    payload
}

#[derive(Debug, PartialEq, Serialize, Deserialize, CrimsonMessage)]
#[crimson(codec = "json")]
struct Chat {
    room: String,
    text: String,
}

#[derive(Debug, PartialEq, Serialize, Deserialize, CrimsonMessage)]
#[crimson(codec = "json")]
#[serde(tag = "type", rename_all = "snake_case")]
enum Event {
    Joined { user: String },
    Left { user: String },
    Ping,
}

#[derive(Debug, PartialEq, Serialize, Deserialize, CrimsonMessage)]
#[crimson(codec = "json")]
struct Seq(u64, bool);

#[derive(Debug, PartialEq, Serialize, Deserialize, CrimsonMessage)]
#[crimson(codec = "json")]
struct Heartbeat;

/// No attribute: JSON.
#[derive(Debug, PartialEq, Serialize, Deserialize, CrimsonMessage)]
struct Plain {
    n: i32,
}

#[derive(Debug, PartialEq, Serialize, Deserialize, CrimsonMessage)]
#[crimson(codec = "json")]
struct Envelope<T> {
    id: u32,
    body: T,
}

#[test]
fn json_struct_enum_tuple_unit_and_default() {
    let chat = Chat {
        room: "lobby".into(),
        text: "hi".into(),
    };
    let payload = round_trip(&chat, FrameKind::Text, "JSON");
    assert_eq!(payload.as_bytes(), br#"{"room":"lobby","text":"hi"}"#);

    let payload = round_trip(
        &Event::Joined { user: "ana".into() },
        FrameKind::Text,
        "JSON",
    );
    assert_eq!(payload.as_bytes(), br#"{"type":"joined","user":"ana"}"#);
    round_trip(&Event::Left { user: "bo".into() }, FrameKind::Text, "JSON");
    round_trip(&Event::Ping, FrameKind::Text, "JSON");

    assert_eq!(
        round_trip(&Seq(7, true), FrameKind::Text, "JSON").as_bytes(),
        b"[7,true]"
    );
    assert_eq!(
        round_trip(&Heartbeat, FrameKind::Text, "JSON").as_bytes(),
        b"null"
    );
    assert_eq!(
        round_trip(&Plain { n: -1 }, FrameKind::Text, "JSON").as_bytes(),
        br#"{"n":-1}"#
    );
}

#[test]
fn json_generic_struct() {
    let value = Envelope {
        id: 1,
        body: vec!["a".to_string()],
    };
    let payload = round_trip(&value, FrameKind::Text, "JSON");
    assert_eq!(payload.as_bytes(), br#"{"id":1,"body":["a"]}"#);
    round_trip(
        &Envelope {
            id: 2,
            body: Chat {
                room: "r".into(),
                text: "t".into(),
            },
        },
        FrameKind::Text,
        "JSON",
    );
    fn takes<M: CrimsonMessage>() {}
    fn generic<T: Serialize + DeserializeOwned + Send + 'static>() {
        takes::<Envelope<T>>();
    }
    generic::<u8>();
}

#[test]
fn json_decode_errors_name_the_type_and_codec() {
    let err = Chat::decode(PayloadRef::Text("{}")).unwrap_err();
    assert_eq!(err.codec(), "JSON");
    assert!(err.to_string().contains("Chat"), "{err}");
}

#[derive(Clone, PartialEq, prost::Message, CrimsonMessage)]
#[crimson(codec = "protobuf")]
struct Position {
    #[prost(sint32, tag = "1")]
    x: i32,
    #[prost(sint32, tag = "2")]
    y: i32,
    #[prost(string, tag = "3")]
    label: String,
}

#[test]
fn protobuf_round_trip() {
    let value = Position {
        x: -3,
        y: 4,
        label: "p".into(),
    };
    let payload = round_trip(&value, FrameKind::Binary, "Protobuf");
    assert_eq!(
        payload.as_bytes(),
        &[0x08, 0x05, 0x10, 0x08, 0x1a, 0x01, b'p']
    );
    assert!(Position::decode(PayloadRef::Binary(&[0xff])).is_err());
}

#[derive(Debug, PartialEq, Serialize, Deserialize, CrimsonMessage)]
#[crimson(codec = "cbor")]
enum Shape {
    Circle { r: f64 },
    Square(u32),
}

#[test]
fn cbor_round_trip() {
    round_trip(&Shape::Circle { r: 1.5 }, FrameKind::Binary, "CBOR");
    round_trip(&Shape::Square(9), FrameKind::Binary, "CBOR");
    assert!(Shape::decode(PayloadRef::Binary(&[0xff, 0x00])).is_err());
}

#[derive(Debug, PartialEq, Serialize, Deserialize, CrimsonMessage)]
#[crimson(codec = "msgpack")]
struct Score {
    player: String,
    points: u64,
}

#[test]
fn msgpack_round_trip() {
    let payload = round_trip(
        &Score {
            player: "x".into(),
            points: 300,
        },
        FrameKind::Binary,
        "MessagePack",
    );
    // Structs travel as maps: 0x82 is a two-entry map.
    assert_eq!(payload.as_bytes()[0], 0x82);
}

/// JSON in Binary frames; both attributes in one `#[crimson(..)]`.
#[derive(Debug, PartialEq, Serialize, Deserialize, CrimsonMessage)]
#[crimson(codec = "json", frame = "binary")]
struct BinaryJson {
    k: String,
}

/// The same, split over two attributes, in the other order.
#[derive(Debug, PartialEq, Serialize, Deserialize, CrimsonMessage)]
#[crimson(frame = "binary")]
#[crimson(codec = "json")]
struct SplitAttrs(u8);

/// A redundant override of the codec's own frame kind is allowed.
#[derive(Debug, PartialEq, Serialize, Deserialize, CrimsonMessage)]
#[crimson(codec = "cbor", frame = "binary")]
struct RedundantFrame(u8);

#[test]
fn frame_override_sends_binary_and_decodes_either_kind() {
    let value = BinaryJson { k: "v".into() };
    let payload = round_trip(&value, FrameKind::Binary, "JSON");
    assert_eq!(payload, Payload::Binary(br#"{"k":"v"}"#.as_slice().into()));
    assert_eq!(
        BinaryJson::decode(PayloadRef::Text(r#"{"k":"v"}"#)).unwrap(),
        value
    );

    assert_eq!(
        round_trip(&SplitAttrs(3), FrameKind::Binary, "JSON").as_bytes(),
        b"3"
    );
    round_trip(&RedundantFrame(1), FrameKind::Binary, "CBOR");
}

/// The Crimson crate under another name, as a facade crate would re-export it.
mod reexport {
    pub(crate) use crimson_core::*;

    pub(crate) use crimson_core::__private;
}

mod uses_reexport {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize, super::reexport::CrimsonMessage)]
    #[crimson(crate = "super::reexport", codec = "msgpack")]
    pub(crate) struct Hidden {
        pub(crate) n: u8,
    }
}

#[derive(Debug, PartialEq, Serialize, Deserialize, CrimsonMessage)]
#[crimson(crate = "reexport")]
struct ViaReexport {
    n: u8,
}

#[test]
fn crate_override() {
    round_trip(&ViaReexport { n: 5 }, FrameKind::Text, "JSON");
    round_trip(
        &uses_reexport::Hidden { n: 6 },
        FrameKind::Binary,
        "MessagePack",
    );
}

macro_rules! with_codec {
    ($name:ident, $codec:literal) => {
        #[derive(
            Debug, PartialEq, serde::Serialize, serde::Deserialize, crimson_core::CrimsonMessage,
        )]
        #[crimson(codec = $codec)]
        struct $name {
            n: u32,
        }
    };
}

with_codec!(ViaMacro, "cbor");

#[test]
fn codec_literal_through_macro_rules() {
    use crimson_core::{CrimsonMessage, FrameKind};
    assert_eq!(ViaMacro::FRAME, FrameKind::Binary);
    let payload = ViaMacro { n: 7 }.encode().unwrap();
    assert_eq!(
        ViaMacro::decode(payload.as_ref()).unwrap(),
        ViaMacro { n: 7 }
    );
}

/// One type, four codecs: serde for JSON, CBOR and MessagePack, prost for Protobuf.
#[derive(Clone, PartialEq, Serialize, Deserialize, prost::Message, CrimsonMessage)]
#[crimson(codecs("json", "cbor", "msgpack", "protobuf"))]
struct Said {
    #[prost(string, tag = "1")]
    text: String,
    #[prost(uint64, tag = "2")]
    at: u64,
}

#[test]
fn several_codecs_the_first_is_the_default_and_each_round_trips() {
    let said = Said {
        text: "hi".into(),
        at: 7,
    };
    // The default: JSON, as if `codec = "json"`.
    let payload = round_trip(&said, FrameKind::Text, "JSON");
    assert_eq!(payload.as_bytes(), br#"{"text":"hi","at":7}"#);
    let listed: Vec<(&str, &str, FrameKind)> = Said::CODECS
        .iter()
        .map(|codec| (codec.token, codec.name, codec.frame))
        .collect();
    assert_eq!(
        listed,
        [
            ("json", "JSON", FrameKind::Text),
            ("cbor", "CBOR", FrameKind::Binary),
            ("msgpack", "MessagePack", FrameKind::Binary),
            ("protobuf", "Protobuf", FrameKind::Binary),
        ]
    );
    let mut seen = Vec::new();
    for (index, codec) in Said::CODECS.iter().enumerate() {
        let payload = said.encode_in(index).unwrap();
        assert_eq!(payload.kind(), codec.frame, "{}", codec.token);
        assert_eq!(
            Said::decode_in(payload.as_ref(), index).unwrap(),
            said,
            "{}",
            codec.token
        );
        seen.push(payload);
    }
    assert_eq!(seen[0], said.encode().unwrap(), "index 0 is the default");
    assert_eq!(seen[3].as_bytes(), &[0x0a, 0x02, b'h', b'i', 0x10, 0x07]);
    // Each index decodes its own codec only: CBOR bytes are not JSON.
    let err = Said::decode_in(seen[1].as_ref(), 0).unwrap_err();
    assert_eq!(err.codec(), "JSON");
    // A payload of the default codec, re-encoded in another (what a cluster does per codec).
    assert_eq!(
        crimson_core::transcode::<Said>(&seen[0], 2).unwrap(),
        seen[2]
    );
    assert_eq!(
        crimson_core::transcode::<Said>(&seen[0], 0).unwrap(),
        seen[0]
    );
}
