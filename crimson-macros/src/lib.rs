//! `#[derive(CrimsonMessage)]`: binds a type to one of Crimson's codecs.
//!
//! Use it through `crimson-core`, `crimson-axum` or `crimson-client`, which re-export it next
//! to the trait; this crate alone is only the macro.
//!
//! The macro is laid out like dtolnay's derives: `ast` reads the input type, `attr` reads
//! the `#[crimson(..)]` attributes, `valid` checks what they mean together, and `expand`
//! writes the impl. Every error is spanned at the token it is about, all of them are shown
//! together, and a fallback impl keeps the rest of the user's crate free of follow-on errors.

use proc_macro::TokenStream;
use syn::{parse_macro_input, DeriveInput};

mod ast;
mod attr;
mod expand;
mod valid;

/// Derives `CrimsonMessage`, binding the type to a codec.
///
/// Attributes, in one or more `#[crimson(...)]`:
///
/// | attribute | meaning |
/// |---|---|
/// | `codec = "json"` | `"json"`, `"protobuf"`, `"cbor"` or `"msgpack"`; JSON when absent |
/// | `codecs("json", "cbor")` | several of those, the default first (instead of `codec`; not with `frame`) |
/// | `frame = "binary"` | the frame kind, when it is not the codec's own |
/// | `crate = "path"` | where the Crimson crate is, when it is re-exported under another name |
///
/// See `crimson_core::CrimsonMessage` for examples.
#[proc_macro_derive(CrimsonMessage, attributes(crimson))]
pub fn derive_crimson_message(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::derive(&input).into()
}
