use crimson_core::{CrimsonMessage, FrameKind};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// User generics stay as written; the impl's where clause carries the codec's bounds.
#[derive(Debug, PartialEq, Serialize, Deserialize, CrimsonMessage)]
#[crimson(codec = "cbor")]
struct Wrapper<T> {
    inner: T,
}

/// Bounds and a where clause of the user's own are kept.
#[derive(Debug, PartialEq, Serialize, Deserialize, CrimsonMessage)]
#[crimson(codec = "json", frame = "binary")]
enum Either<L: Clone, R>
where
    R: Default,
{
    Left(L),
    Right(R),
}

fn round_trip<T: Serialize + DeserializeOwned + Send + 'static + PartialEq + std::fmt::Debug>(
    value: T,
) {
    let wrapped = Wrapper { inner: value };
    let payload = wrapped.encode().unwrap();
    assert_eq!(Wrapper::<T>::decode(payload.as_ref()).unwrap(), wrapped);
}

fn main() {
    round_trip(5u8);
    round_trip(String::from("s"));
    assert_eq!(Wrapper::<u8>::FRAME, FrameKind::Binary);

    let value: Either<u8, String> = Either::Right("r".into());
    let payload = value.encode().unwrap();
    assert_eq!(payload.kind(), FrameKind::Binary);
    assert_eq!(
        Either::<u8, String>::decode(payload.as_ref()).unwrap(),
        value
    );
}
