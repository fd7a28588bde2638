//! Parsing of the `#[crimson(..)]` attributes on the deriving type.
//!
//! This module reads syntax and single values; [`crate::valid`] checks how values combine.
//! Errors are collected rather than returned at the first one, so a user sees them all.

use std::fmt;

use proc_macro2::Span;
use syn::meta::ParseNestedMeta;
use syn::{Attribute, Expr, ExprLit, Lit, LitStr, Path};

/// The keys `#[crimson(..)]` accepts, in the order error messages list them.
const KEYS: &str = "`codec`, `codecs`, `frame`, `crate`";

/// The codecs `codec = ".."` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Codec {
    Json,
    Protobuf,
    Cbor,
    MsgPack,
}

impl Codec {
    /// Every codec, in the order error messages list them.
    const ALL: [Codec; 4] = [Codec::Json, Codec::Protobuf, Codec::Cbor, Codec::MsgPack];

    /// The string `codec = ".."` spells it with.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Codec::Json => "json",
            Codec::Protobuf => "protobuf",
            Codec::Cbor => "cbor",
            Codec::MsgPack => "msgpack",
        }
    }

    /// Whether the codec's payloads are bytes rather than UTF-8 text.
    pub(crate) fn is_binary(self) -> bool {
        !matches!(self, Codec::Json)
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The frame kinds `frame = ".."` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Frame {
    Text,
    Binary,
}

/// A value together with the string literal it was written as, for spans.
pub(crate) struct Spanned<T> {
    pub(crate) value: T,
    pub(crate) lit: LitStr,
}

impl<T> Spanned<T> {
    /// The span of the string literal, where errors about the value point.
    pub(crate) fn span(&self) -> Span {
        self.lit.span()
    }
}

/// The codecs of `codecs("..", ..)`, and where the key was written.
pub(crate) struct CodecList {
    pub(crate) codecs: Vec<Spanned<Codec>>,
    pub(crate) key: Path,
}

/// Everything the `#[crimson(..)]` attributes of one type say.
#[derive(Default)]
pub(crate) struct Attrs {
    /// `codec = ".."`.
    pub(crate) codec: Option<Spanned<Codec>>,
    /// `codecs("..", ..)`: every codec, the default first.
    pub(crate) codecs: Option<CodecList>,
    /// `frame = ".."`.
    pub(crate) frame: Option<Spanned<Frame>>,
    /// `crate = ".."`.
    pub(crate) krate: Option<Spanned<Path>>,
}

/// Reads every `#[crimson(..)]` in `attrs`, pushing each error it finds onto `errors`.
pub(crate) fn parse(attrs: &[Attribute], errors: &mut Vec<syn::Error>) -> Attrs {
    let mut out = Attrs::default();
    for attr in attrs.iter().filter(|attr| attr.path().is_ident("crimson")) {
        let parsed = attr.parse_nested_meta(|meta| parse_key(&mut out, &meta, errors));
        if let Err(err) = parsed {
            errors.push(err);
        }
    }
    out
}

/// Reads one `key = "value"` of a `#[crimson(..)]`.
///
/// Errors about a value are pushed onto `errors` and parsing goes on; an error that leaves the
/// rest of the attribute unreadable is returned.
fn parse_key(
    out: &mut Attrs,
    meta: &ParseNestedMeta<'_>,
    errors: &mut Vec<syn::Error>,
) -> syn::Result<()> {
    let key = meta
        .path
        .get_ident()
        .map(ToString::to_string)
        .unwrap_or_default();
    match key.as_str() {
        "codec" => {
            let lit = string_value(meta, "codec", "json")?;
            if let Some(value) = codec(&lit, errors) {
                set(&mut out.codec, Spanned { value, lit }, meta, errors);
            }
        }
        "codecs" => {
            let content;
            if !meta.input.peek(syn::token::Paren) {
                return Err(syn::Error::new_spanned(
                    &meta.path,
                    "expected `codecs(\"json\", \"cbor\")`: the codecs, the default first",
                ));
            }
            syn::parenthesized!(content in meta.input);
            let lits = content.parse_terminated(|input| input.parse::<LitStr>(), syn::Token![,])?;
            let mut codecs: Vec<Spanned<Codec>> = Vec::new();
            for lit in lits {
                let Some(value) = codec(&lit, errors) else {
                    continue;
                };
                if codecs.iter().any(|seen| seen.value == value) {
                    errors.push(syn::Error::new_spanned(
                        &lit,
                        format!("codec {:?} is listed twice", value.as_str()),
                    ));
                    continue;
                }
                codecs.push(Spanned { value, lit });
            }
            if codecs.is_empty() && errors.is_empty() {
                errors.push(syn::Error::new_spanned(
                    &meta.path,
                    "`codecs(..)` needs at least one codec, e.g. `codecs(\"json\", \"cbor\")`",
                ));
            }
            if out.codecs.is_some() {
                errors.push(syn::Error::new_spanned(
                    &meta.path,
                    "duplicate crimson attribute `codecs`",
                ));
            } else if !codecs.is_empty() {
                out.codecs = Some(CodecList {
                    codecs,
                    key: meta.path.clone(),
                });
            }
        }
        "frame" => {
            let lit = string_value(meta, "frame", "binary")?;
            let value = match lit.value().as_str() {
                "text" => Frame::Text,
                "binary" => Frame::Binary,
                other => {
                    let msg = format!("unknown frame {other:?}: expected \"text\" or \"binary\"");
                    errors.push(syn::Error::new_spanned(&lit, msg));
                    return Ok(());
                }
            };
            set(&mut out.frame, Spanned { value, lit }, meta, errors);
        }
        "crate" => {
            let lit = string_value(meta, "crate", "crimson_axum")?;
            match lit.parse::<Path>() {
                Ok(value) => set(&mut out.krate, Spanned { value, lit }, meta, errors),
                Err(_) => errors.push(syn::Error::new_spanned(
                    &lit,
                    format!(
                        "{:?} is not a path: expected e.g. `crate = \"crimson_axum\"`",
                        lit.value()
                    ),
                )),
            }
        }
        _ => {
            let shown = quote::ToTokens::to_token_stream(&meta.path)
                .to_string()
                .replace(' ', "");
            errors.push(meta.error(format_args!(
                "unknown crimson attribute `{shown}`: expected one of {KEYS}"
            )));
            // Skip the value, if any, to read the keys after it.
            if meta.input.peek(syn::Token![=]) {
                meta.value()?.parse::<Expr>()?;
            } else if meta.input.peek(syn::token::Paren) {
                let _skipped;
                syn::parenthesized!(_skipped in meta.input);
            }
        }
    }
    Ok(())
}

/// The codec `lit` names, or an error (pushed onto `errors`) that lists the codecs there are.
fn codec(lit: &LitStr, errors: &mut Vec<syn::Error>) -> Option<Codec> {
    let found = Codec::ALL
        .into_iter()
        .find(|codec| lit.value() == codec.as_str());
    if found.is_none() {
        errors.push(syn::Error::new_spanned(
            lit,
            format!(
                "unknown codec {:?}: expected one of {}",
                lit.value(),
                Codec::ALL
                    .map(|codec| format!("{:?}", codec.as_str()))
                    .join(", "),
            ),
        ));
    }
    found
}

/// Reads the `= "value"` after `key`, or explains what was expected.
fn string_value(meta: &ParseNestedMeta<'_>, key: &str, example: &str) -> syn::Result<LitStr> {
    let expected = format!("expected `{key} = \"{example}\"`");
    if !meta.input.peek(syn::Token![=]) {
        return Err(syn::Error::new_spanned(&meta.path, expected));
    }
    let mut expr: Expr = meta.value()?.parse()?;
    // A literal passed through a `macro_rules!` fragment arrives in an invisible group.
    while let Expr::Group(group) = expr {
        expr = *group.expr;
    }
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => Ok(lit),
        other => Err(syn::Error::new_spanned(
            other,
            format!("{expected}: the value must be a string literal"),
        )),
    }
}

/// Stores `value` in `slot`, or reports a duplicate at the second occurrence's key.
fn set<T>(
    slot: &mut Option<Spanned<T>>,
    value: Spanned<T>,
    meta: &ParseNestedMeta<'_>,
    errors: &mut Vec<syn::Error>,
) {
    if slot.is_some() {
        let key = meta
            .path
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_default();
        errors.push(syn::Error::new_spanned(
            &meta.path,
            format!("duplicate crimson attribute `{key}`"),
        ));
    } else {
        *slot = Some(value);
    }
}
