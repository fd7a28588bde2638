//! The deriving type, as far as `#[derive(CrimsonMessage)]` cares about it.
//!
//! The codec sees the whole value, so fields matter only for one thing: `#[crimson(..)]`
//! written on a field or a variant, which this derive does not read and so must refuse.

use syn::{Attribute, Data, DeriveInput, Fields, Generics, Ident};

use crate::attr::{self, Attrs};

/// The deriving type.
pub(crate) struct Input<'a> {
    /// The type's name.
    pub(crate) ident: &'a Ident,
    /// The type's generics, kept as the user wrote them.
    pub(crate) generics: &'a Generics,
    /// What the type-level `#[crimson(..)]` attributes say.
    pub(crate) attrs: Attrs,
    /// `#[crimson(..)]` attributes found on fields or variants, where they mean nothing.
    pub(crate) misplaced: Vec<&'a Attribute>,
}

impl<'a> Input<'a> {
    /// Reads `input`, pushing each error onto `errors`.
    pub(crate) fn from_syn(input: &'a DeriveInput, errors: &mut Vec<syn::Error>) -> Self {
        let mut misplaced = Vec::new();
        match &input.data {
            Data::Struct(data) => collect_fields(&data.fields, &mut misplaced),
            Data::Enum(data) => {
                for variant in &data.variants {
                    misplaced.extend(crimson_attrs(&variant.attrs));
                    collect_fields(&variant.fields, &mut misplaced);
                }
            }
            Data::Union(data) => {
                let (union_token, ident) = (&data.union_token, &input.ident);
                errors.push(syn::Error::new_spanned(
                    quote::quote!(#union_token #ident),
                    "#[derive(CrimsonMessage)] does not support unions: use a struct or an enum",
                ));
            }
        }
        Input {
            ident: &input.ident,
            generics: &input.generics,
            attrs: attr::parse(&input.attrs, errors),
            misplaced,
        }
    }

    /// Whether the type has generic parameters (lifetimes, types or consts).
    pub(crate) fn is_generic(&self) -> bool {
        !self.generics.params.is_empty()
    }
}

/// Adds the `#[crimson(..)]` attributes of `fields` to `out`.
fn collect_fields<'a>(fields: &'a Fields, out: &mut Vec<&'a Attribute>) {
    for field in fields {
        out.extend(crimson_attrs(&field.attrs));
    }
}

/// The `#[crimson(..)]` attributes among `attrs`.
fn crimson_attrs(attrs: &[Attribute]) -> impl Iterator<Item = &Attribute> {
    attrs.iter().filter(|attr| attr.path().is_ident("crimson"))
}
