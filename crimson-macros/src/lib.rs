//! `#[derive(CrimsonMessage)]` (placeholder until the derive lands).
use proc_macro::TokenStream;

/// Derives `CrimsonMessage`.
#[proc_macro_derive(CrimsonMessage, attributes(crimson))]
pub fn derive_crimson_message(input: TokenStream) -> TokenStream {
    let _ = input;
    TokenStream::new()
}
