//! Choosing a connection's codec with `Sec-WebSocket-Protocol` (`docs/protocol.md`, section 2).
//!
//! A route whose `Up` and `Down` types both list several codecs (`#[crimson(codecs(..))]`)
//! lets each connection ask for one by its token, `crimson.json`, `crimson.cbor`, ...; the
//! first the client lists that the route speaks wins. A client that asks for nothing, or only
//! for subprotocols that are not Crimson's, gets each type's default; one that asks only for
//! Crimson subprotocols the route does not speak is refused with 400.

use http::{header, HeaderMap};

use crate::upgrade::UpgradeRejection;
use crimson_core::CrimsonMessage;

/// The prefix of every codec's subprotocol token.
pub(crate) const PREFIX: &str = "crimson.";

/// The codecs a route's clients may choose among.
#[derive(Debug, Clone, Default)]
pub(crate) struct Spoken {
    /// The codecs both `Up` and `Down` list, in `Down`'s order.
    choices: Vec<Choice>,
    /// Whether `crimson.v1.<codec>` may be asked for too.
    protocol: bool,
}

/// A codec both types of a route speak, and where each lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Choice {
    pub(crate) token: &'static str,
    pub(crate) up: usize,
    pub(crate) down: usize,
}

/// What a connection speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Chosen {
    /// The index in `Up::CODECS` (0: the default).
    pub(crate) up: usize,
    /// The index in `Down::CODECS` (0: the default).
    pub(crate) down: usize,
    /// 0 for each type's default (nothing asked), `1 + i` for the route's `i`th choice: where
    /// the session's traffic is counted.
    pub(crate) index: usize,
    /// The codec's token, when one was chosen.
    pub(crate) token: Option<&'static str>,
    /// The connection speaks the Crimson protocol, `crimson.v1.<token>`.
    pub(crate) framed: bool,
}

impl Chosen {
    /// What the server answers in `Sec-WebSocket-Protocol`.
    pub(crate) fn answer(&self) -> Option<String> {
        let token = self.token?;
        Some(if self.framed {
            format!("{}{token}", crimson_core::protocol::V1)
        } else {
            format!("{PREFIX}{token}")
        })
    }
}

impl Spoken {
    /// The codecs a route of `Up` and `Down` lets its clients choose among.
    pub(crate) fn of<Up: CrimsonMessage, Down: CrimsonMessage>(protocol: bool) -> Self {
        let choices = Down::CODECS
            .iter()
            .enumerate()
            .filter_map(|(down, codec)| {
                let up = Up::CODECS.iter().position(|up| up.token == codec.token)?;
                Some(Choice {
                    token: codec.token,
                    up,
                    down,
                })
            })
            .collect::<Vec<_>>();
        let protocol = protocol && !choices.is_empty();
        Self { choices, protocol }
    }

    /// Whether clients choose at all: two codecs or more, or the Crimson protocol.
    #[cfg(test)]
    pub(crate) fn negotiates(&self) -> bool {
        self.choices.len() >= 2 || self.protocol
    }

    /// The codecs to choose among.
    pub(crate) fn choices(&self) -> &[Choice] {
        &self.choices
    }

    /// The codec of a connection that sent `headers`; an error when it asked only for
    /// subprotocols the route does not speak.
    pub(crate) fn choose(&self, headers: &HeaderMap) -> Result<Chosen, UpgradeRejection> {
        if self.choices.is_empty() {
            // Types without codec tokens (hand-written): nothing to choose, as ever.
            return Ok(Chosen::default());
        }
        let asked: Vec<&str> = headers
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .collect();
        if asked.is_empty() {
            return Ok(Chosen::default());
        }
        for token in &asked {
            let (codec, framed) = match token.strip_prefix(crimson_core::protocol::V1) {
                Some(codec) if self.protocol => (codec, true),
                Some(_) => continue,
                None => match token.strip_prefix(PREFIX) {
                    Some(codec) => (codec, false),
                    None => continue,
                },
            };
            if let Some(index) = self.choices.iter().position(|c| c.token == codec) {
                let choice = self.choices[index];
                return Ok(Chosen {
                    up: choice.up,
                    down: choice.down,
                    index: index + 1,
                    token: Some(choice.token),
                    framed,
                });
            }
        }
        // Asked only for subprotocols that are not Crimson's (another protocol's, or an
        // access token in a browser's subprotocol list): none of them is a codec. Each type's
        // default, as if nothing was asked; never echoed back.
        let crimson: Vec<&str> = asked
            .iter()
            .copied()
            .filter(|token| token.starts_with(PREFIX))
            .collect();
        if crimson.is_empty() {
            return Ok(Chosen::default());
        }
        // Bounded: a header of thousands of tokens is not echoed back whole.
        let whole = crimson.join(", ");
        let mut shown: String = whole.chars().take(200).collect();
        if shown.len() < whole.len() {
            shown.push('…');
        }
        Err(UpgradeRejection::UnsupportedSubprotocol {
            asked: shown,
            spoken: self
                .choices
                .iter()
                .flat_map(|choice| {
                    let v1 = self
                        .protocol
                        .then(|| format!("{}{}", crimson_core::protocol::V1, choice.token));
                    v1.into_iter()
                        .chain(std::iter::once(format!("{PREFIX}{}", choice.token)))
                })
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crimson_core::{CodecInfo, DecodeError, EncodeError, FrameKind, Payload, PayloadRef};

    /// A message type that lists `CODECS` and encodes nothing (only the lists matter here).
    macro_rules! listing {
        ($name:ident, [$($token:literal),*]) => {
            struct $name;
            impl CrimsonMessage for $name {
                const FRAME: FrameKind = FrameKind::Text;
                const CODEC: &'static str = "test";
                const CODECS: &'static [CodecInfo] =
                    &[$(CodecInfo::new($token, $token, FrameKind::Binary)),*];
                fn encode(&self) -> Result<Payload, EncodeError> {
                    Ok(Payload::Text("".into()))
                }
                fn decode(_: PayloadRef<'_>) -> Result<Self, DecodeError> {
                    Ok(Self)
                }
            }
        };
    }

    listing!(Up3, ["json", "cbor", "msgpack"]);
    listing!(Down3, ["json", "protobuf", "cbor", "msgpack"]);
    listing!(One, ["json"]);

    fn asking(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, value.parse().unwrap());
        headers
    }

    #[test]
    fn the_first_token_asked_that_both_types_speak_wins() {
        let spoken = Spoken::of::<Up3, Down3>(false);
        let tokens: Vec<_> = spoken.choices().iter().map(|c| c.token).collect();
        assert_eq!(tokens, ["json", "cbor", "msgpack"], "protobuf: Down only");
        assert_eq!(spoken.choose(&HeaderMap::new()).unwrap(), Chosen::default());
        let chosen = spoken
            .choose(&asking(
                "crimson.protobuf, mqtt, crimson.msgpack, crimson.cbor",
            ))
            .unwrap();
        assert_eq!(
            chosen,
            Chosen {
                up: 2,
                down: 3,
                index: 3,
                token: Some("msgpack"),
                framed: false,
            }
        );
    }

    #[test]
    fn only_unspoken_tokens_are_refused_with_both_lists() {
        let spoken = Spoken::of::<Up3, Down3>(false);
        let err = spoken
            .choose(&asking("crimson.protobuf, crimson.v1.json"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "none of the subprotocols asked for (crimson.protobuf, crimson.v1.json) is spoken \
             here; this route speaks: crimson.json, crimson.cbor, crimson.msgpack"
        );
        let long = vec!["crimson.x"; 1000].join(", ");
        let err = spoken.choose(&asking(&long)).unwrap_err().to_string();
        assert!(err.len() < 400 && err.contains('…'), "{err}");
    }

    #[test]
    fn the_crimson_protocol_is_chosen_only_where_it_is_on() {
        let on = Spoken::of::<One, Down3>(true);
        assert!(on.negotiates(), "one codec, but the protocol to choose");
        let chosen = on
            .choose(&asking("crimson.v1.cbor, crimson.v1.json"))
            .unwrap();
        assert_eq!((chosen.token, chosen.framed), (Some("json"), true));
        assert_eq!(chosen.answer().as_deref(), Some("crimson.v1.json"));
        let plain = on.choose(&asking("crimson.json")).unwrap();
        assert_eq!(plain.answer().as_deref(), Some("crimson.json"));
        assert_eq!(on.choose(&HeaderMap::new()).unwrap().answer(), None);
        let err = on.choose(&asking("crimson.v2.json")).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("this route speaks: crimson.v1.json, crimson.json"),
            "{err}"
        );
        // Off: `crimson.v1.*` is not spoken.
        let off = Spoken::of::<Up3, Down3>(false);
        assert!(off.choose(&asking("crimson.v1.json")).is_err());
    }

    #[test]
    fn a_route_of_one_codec_takes_its_own_and_ignores_others_subprotocols() {
        let spoken = Spoken::of::<One, Down3>(false);
        assert!(!spoken.negotiates());
        assert_eq!(
            spoken.choose(&asking("graphql-ws")).unwrap(),
            Chosen::default(),
            "not a Crimson subprotocol: ignored, as before"
        );
        let own = spoken.choose(&asking("crimson.json")).unwrap();
        assert_eq!(own.answer().as_deref(), Some("crimson.json"));
        let err = spoken.choose(&asking("crimson.cbor, x")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "none of the subprotocols asked for (crimson.cbor) is spoken here; this route \
             speaks: crimson.json"
        );
        // Not Crimson's (an access token, say): not a codec, not refused, not echoed.
        let negotiating = Spoken::of::<Up3, Down3>(false);
        assert_eq!(
            negotiating
                .choose(&asking("access_token, eyJhbGci"))
                .unwrap(),
            Chosen::default()
        );
    }
}
