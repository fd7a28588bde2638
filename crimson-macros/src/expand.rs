//! Writes the `CrimsonMessage` impl.
//!
//! Every path goes through `#krate::__private`, the hidden re-exports of crimson-core, and
//! the whole expansion sits in `const _: () = { .. };` so it adds no names to the user's module.

use proc_macro2::{Group, Span, TokenStream, TokenTree};
use proc_macro_crate::{crate_name, FoundCrate};
use quote::{format_ident, quote, quote_spanned};
use syn::{parse_quote, DeriveInput, Path, WhereClause};

use crate::ast::Input;
use crate::attr::{Codec, Frame};
use crate::valid;

/// Expands `#[derive(CrimsonMessage)]` on `input`: the impl, or every error found plus a
/// fallback impl that compiles whatever the attributes said.
pub(crate) fn derive(input: &DeriveInput) -> TokenStream {
    let mut errors = Vec::new();
    let input = Input::from_syn(input, &mut errors);
    valid::check(&input, &mut errors);
    let krate = match &input.attrs.krate {
        Some(krate) => krate.value.clone(),
        None => default_crate(),
    };
    let combined = errors.into_iter().reduce(|mut all, err| {
        all.combine(err);
        all
    });
    match combined {
        None => impl_message(&input, &krate),
        Some(errors) => {
            let errors = errors.to_compile_error();
            let fallback = fallback(&input, &krate);
            quote!(#errors #fallback)
        }
    }
}

/// Where the Crimson crate is: the first of crimson-core, crimson-axum and crimson-client the
/// user's crate depends on (all three re-export `__private`), else `::crimson_core`.
fn default_crate() -> Path {
    for name in ["crimson-core", "crimson-axum", "crimson-client"] {
        match crate_name(name) {
            // crimson-core names itself with `extern crate self as crimson_core;`, so its doc
            // tests and its own code expand alike.
            Ok(FoundCrate::Itself) if name == "crimson-core" => {
                return parse_quote!(::crimson_core)
            }
            Ok(FoundCrate::Itself) => return parse_quote!(crate),
            Ok(FoundCrate::Name(found)) => {
                let ident = format_ident!("{}", found);
                return parse_quote!(::#ident);
            }
            Err(_) => {}
        }
    }
    parse_quote!(::crimson_core)
}

/// The impl for a type whose attributes are all valid.
fn impl_message(input: &Input<'_>, krate: &Path) -> TokenStream {
    // Every codec, the default first, each with the span of the string that named it.
    let codecs: Vec<(Codec, Span)> = match (&input.attrs.codecs, &input.attrs.codec) {
        (Some(list), _) => list
            .codecs
            .iter()
            .map(|codec| (codec.value, codec.span()))
            .collect(),
        (None, Some(codec)) => vec![(codec.value, codec.span())],
        (None, None) => vec![(Codec::Json, Span::call_site())],
    };
    let ident = input.ident;
    let (impl_generics, ty_generics, _) = input.generics.split_for_impl();
    let mut where_clause = where_clause(input);
    let mut setup = TokenStream::new();
    let mut tys = Vec::new();
    for &(codec, span) in &codecs {
        let codec_ty = codec_parts(input, krate, codec, span, &mut where_clause, &mut setup);
        tys.push(codec_ty);
    }
    let first = &tys[0];
    let frame = match &input.attrs.frame {
        Some(frame) => frame_kind(krate, frame.value),
        None => quote!(<#first as #krate::__private::Codec<Self>>::FRAME),
    };
    let infos = codecs
        .iter()
        .zip(&tys)
        .enumerate()
        .map(|(i, ((codec, _), ty))| {
            let token = codec.as_str();
            let frame = if i == 0 {
                quote!(<Self as #krate::__private::CrimsonMessage>::FRAME)
            } else {
                quote!(<#ty as #krate::__private::Codec<Self>>::FRAME)
            };
            quote! {
                #krate::__private::CodecInfo::new(
                    #token,
                    <#ty as #krate::__private::Codec<Self>>::NAME,
                    #frame,
                )
            }
        });
    // With several codecs, `encode_in` and `decode_in` pick one by index.
    let others = if tys.len() > 1 {
        let indexes: Vec<usize> = (1..tys.len()).collect();
        let rest = &tys[1..];
        quote! {
            #[inline]
            fn encode_in(
                &self,
                codec: usize,
            ) -> ::core::result::Result<#krate::__private::Payload, #krate::__private::EncodeError> {
                match codec {
                    #(#indexes => #krate::__private::encode_as::<#rest, Self>(
                        self,
                        <#rest as #krate::__private::Codec<Self>>::FRAME,
                    ),)*
                    _ => <Self as #krate::__private::CrimsonMessage>::encode(self),
                }
            }

            #[inline]
            fn decode_in(
                payload: #krate::__private::PayloadRef<'_>,
                codec: usize,
            ) -> ::core::result::Result<Self, #krate::__private::DecodeError> {
                match codec {
                    #(#indexes => #krate::__private::decode_with::<#rest, Self>(payload),)*
                    _ => <Self as #krate::__private::CrimsonMessage>::decode(payload),
                }
            }
        }
    } else {
        TokenStream::new()
    };
    quote! {
        const _: () = {
            #setup

            #[automatically_derived]
            impl #impl_generics #krate::__private::CrimsonMessage for #ident #ty_generics #where_clause {
                const FRAME: #krate::__private::FrameKind = #frame;
                const CODEC: &'static str = <#first as #krate::__private::Codec<Self>>::NAME;
                const CODECS: &'static [#krate::__private::CodecInfo] = &[#(#infos),*];

                #[inline]
                fn encode(
                    &self,
                ) -> ::core::result::Result<#krate::__private::Payload, #krate::__private::EncodeError> {
                    #krate::__private::encode_as::<#first, Self>(
                        self,
                        <Self as #krate::__private::CrimsonMessage>::FRAME,
                    )
                }

                #[inline]
                fn decode(
                    payload: #krate::__private::PayloadRef<'_>,
                ) -> ::core::result::Result<Self, #krate::__private::DecodeError> {
                    #krate::__private::decode_with::<#first, Self>(payload)
                }

                #others
            }
        };
    }
}

/// One codec's share of the impl: its type (spanned at the string that named it, so that
/// errors about the codec point there), the check that it is on and fits the type (pushed
/// onto `setup`), and, for a generic type, the bounds on the impl.
fn codec_parts(
    input: &Input<'_>,
    krate: &Path,
    codec: Codec,
    span: Span,
    where_clause: &mut WhereClause,
    setup: &mut TokenStream,
) -> TokenStream {
    let codec_name = match codec {
        Codec::Json => "Json",
        Codec::Protobuf => "Protobuf",
        Codec::Cbor => "Cbor",
        Codec::MsgPack => "MsgPack",
    };
    let at_codec = respan(quote!(#krate), span);
    let codec_ident = format_ident!("{}", codec_name, span = span);
    let codec_ty = quote_spanned!(span=> #at_codec::__private::#codec_ident);
    let require_ident = format_ident!("require_{}", codec.as_str(), span = span);
    setup.extend(quote_spanned!(span=> #at_codec::__private::#require_ident! {}));

    let ident = input.ident;
    let (_, ty_generics, _) = input.generics.split_for_impl();
    let predicates = &mut where_clause.predicates;
    if input.is_generic() {
        // The bounds go on the impl: `Wrapper<T>` is a message for the `T`s that satisfy them.
        predicates.push(parse_quote!(#codec_ty: #krate::__private::Codec<#ident #ty_generics>));
        if codec == Codec::Protobuf {
            predicates.push(parse_quote!(#ident #ty_generics: #krate::__private::ProtobufMessage));
        }
    } else {
        // A concrete type either can use the codec or cannot: one check says which, once, at
        // the codec's string (or, for protobuf, with `ProtobufMessage`'s own message at the
        // type's name). The impl then assumes the bound instead of repeating the error for
        // every use of the codec in its body. The `for<'__crimson>` keeps rustc from rejecting
        // the bound as trivially false (rust-lang/rust#48214) before the check reports it.
        predicates.push(parse_quote!(for<'__crimson> #codec_ty: #krate::__private::Codec<#ident>));
        if codec == Codec::Protobuf {
            let at_ty = respan(quote!(#krate), ident.span());
            setup.extend(quote_spanned! {ident.span()=>
                const _: () = #at_ty::__private::assert_protobuf::<#ident>();
            });
        } else {
            setup.extend(quote_spanned! {span=>
                const _: &str = <#codec_ty as #at_codec::__private::Codec<#ident>>::NAME;
            });
        }
    }
    codec_ty
}

/// An impl that type-checks for any struct or enum, emitted next to the errors so that code
/// using the type as a `CrimsonMessage` adds no errors of its own. It is never run: the crate
/// does not compile.
fn fallback(input: &Input<'_>, krate: &Path) -> TokenStream {
    let ident = input.ident;
    let (impl_generics, ty_generics, _) = input.generics.split_for_impl();
    let where_clause = where_clause(input);
    let frame = frame_kind(krate, Frame::Text);
    quote! {
        const _: () = {
            #[automatically_derived]
            impl #impl_generics #krate::__private::CrimsonMessage for #ident #ty_generics #where_clause {
                const FRAME: #krate::__private::FrameKind = #frame;
                const CODEC: &'static str = "invalid #[crimson] attributes";

                fn encode(
                    &self,
                ) -> ::core::result::Result<#krate::__private::Payload, #krate::__private::EncodeError> {
                    ::core::unreachable!("#[derive(CrimsonMessage)] failed")
                }

                fn decode(
                    _: #krate::__private::PayloadRef<'_>,
                ) -> ::core::result::Result<Self, #krate::__private::DecodeError> {
                    ::core::unreachable!("#[derive(CrimsonMessage)] failed")
                }
            }
        };
    }
}

/// The user's where clause, plus `Self: Send + 'static` (the trait's supertraits) for a generic
/// type, whose impl must carry them itself.
fn where_clause(input: &Input<'_>) -> WhereClause {
    let mut clause = input
        .generics
        .where_clause
        .clone()
        .unwrap_or_else(|| parse_quote!(where));
    if input.is_generic() {
        let ident = input.ident;
        let (_, ty_generics, _) = input.generics.split_for_impl();
        clause
            .predicates
            .push(parse_quote!(#ident #ty_generics: ::core::marker::Send + 'static));
    }
    clause
}

/// `FrameKind::Text` or `FrameKind::Binary`.
fn frame_kind(krate: &Path, frame: Frame) -> TokenStream {
    match frame {
        Frame::Text => quote!(#krate::__private::FrameKind::Text),
        Frame::Binary => quote!(#krate::__private::FrameKind::Binary),
    }
}

/// `tokens` with every span set to `span`, so that a diagnostic about them points there.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut token| {
            if let TokenTree::Group(group) = &token {
                let mut inner = Group::new(group.delimiter(), respan(group.stream(), span));
                inner.set_span(span);
                token = TokenTree::Group(inner);
            } else {
                token.set_span(span);
            }
            token
        })
        .collect()
}
