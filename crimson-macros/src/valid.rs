//! Checks that the attributes, each well-formed on its own, make sense together.

use crate::ast::Input;
use crate::attr::{Codec, Frame};

/// Pushes an error onto `errors` for each meaningless combination in `input`.
pub(crate) fn check(input: &Input<'_>, errors: &mut Vec<syn::Error>) {
    check_frame(input, errors);
    check_codecs(input, errors);
    for attr in &input.misplaced {
        errors.push(syn::Error::new_spanned(
            attr,
            "#[crimson(..)] goes on the type itself, not on a field or variant",
        ));
    }
}

/// `codecs(..)` replaces `codec = ".."`, and each of its codecs uses its own frame kind.
fn check_codecs(input: &Input<'_>, errors: &mut Vec<syn::Error>) {
    let Some(list) = &input.attrs.codecs else {
        return;
    };
    if input.attrs.codec.is_some() {
        errors.push(syn::Error::new_spanned(
            &list.key,
            "`codecs(..)` and `codec = \"..\"` cannot be used together: list the default codec \
             first in `codecs(..)`",
        ));
    }
    if let Some(frame) = &input.attrs.frame {
        errors.push(syn::Error::new_spanned(
            &frame.lit,
            "`frame` cannot be used with `codecs(..)`: each codec sends its own frame kind",
        ));
    }
}

/// A binary codec's payloads are not UTF-8, so they cannot be sent in Text frames.
fn check_frame(input: &Input<'_>, errors: &mut Vec<syn::Error>) {
    let Some(frame) = &input.attrs.frame else {
        return;
    };
    let codec = input
        .attrs
        .codec
        .as_ref()
        .map_or(Codec::Json, |codec| codec.value);
    if frame.value == Frame::Text && codec.is_binary() {
        errors.push(syn::Error::new_spanned(
            &frame.lit,
            format!(
                "codec `{codec}` produces binary payloads, which a Text frame cannot carry; \
                 remove `frame = \"text\"`"
            ),
        ));
    }
}
