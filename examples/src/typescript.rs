//! TypeScript definitions of the chat's JSON messages, made by [ts-rs](https://docs.rs/ts-rs)
//! from [`ChatMessage`] (what the page sends) and [`ChatResponse`] (what it receives), with
//! serde's renames, enums and options as serde writes them (ts-rs's `serde-compat`).
//!
//! `cargo run -p crimson-examples --features ts --bin export-ts` writes them to
//! [`DIR`]; the chat page (`browser/ts/chat.ts`) imports them, and the tests check that the
//! committed files are what the Rust types make today.
//!
//! What ts-rs (12, `serde-compat`) makes of serde's attributes, each checked against serde's
//! own JSON by `tests/typescript.rs`:
//!
//! | Rust | TypeScript |
//! |---|---|
//! | `#[serde(rename = "…")]`, `rename_all` | the renamed field |
//! | `Option<T>` | `T \| null` (serde writes `null`) |
//! | `Option<T>` with `skip_serializing_if = "Option::is_none"` **and** `default` | `field?: T \| null` |
//! | `#[serde(tag = "type")]` enum | a union of objects with a `"type"` literal |
//! | unit-variant enum | a union of string literals |
//! | `#[serde(skip)]` | no field |
//! | `u64`, `i64` | `bigint`: mark the field `#[ts(type = "number")]` when its values stay below 2^53, as `JSON.parse` makes a `number` |
//!
//! `skip_serializing_if` without `default` leaves the field required in TypeScript though
//! serde omits it: add `#[serde(default)]` (or `#[ts(optional)]`).

use std::path::{Path, PathBuf};

use ts_rs::{Config, TS};

use crate::{ChatMessage, ChatResponse};

/// Where the definitions go, relative to the `examples` crate.
pub const DIR: &str = "browser/ts/generated";

/// The command that writes them, named in each file's header.
pub const COMMAND: &str = "cargo run -p crimson-examples --features ts --bin export-ts";

/// [`DIR`] as an absolute path in this checkout.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(DIR)
}

/// Every definition file: its name in [`DIR`] and its contents.
pub fn files() -> Vec<(String, String)> {
    vec![file::<ChatMessage>(), file::<ChatResponse>()]
}

/// The definition file of `T`, named after it: `export type T = { … };` with the Rust docs as
/// JSDoc, under a header that says how to regenerate it.
pub fn file<T: TS + 'static>() -> (String, String) {
    // Imports of other definitions end in `.js`, as a browser (and tsc's ES module
    // resolution) needs them to.
    let config = Config::new().with_import_extension(Some("js"));
    let name = format!("{}.ts", T::ident(&config));
    let generated = T::export_to_string(&config)
        .unwrap_or_else(|err| panic!("ts-rs cannot export {name}: {err}"));
    // ts-rs's first line says the file is generated; the second says how to make it again.
    let (note, rest) = generated.split_once('\n').unwrap_or((&generated, ""));
    (name, format!("{note}\n// Regenerate: {COMMAND}\n{rest}"))
}

/// Writes [`files`] to `dir` (made if missing) and removes any other `.ts` file there, so that
/// a type no longer exported does not linger. Returns the paths written.
pub fn write(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let files = files();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.ends_with(".ts") && !files.iter().any(|(file, _)| file == name) {
            std::fs::remove_file(&path)?;
        }
    }
    let mut written = Vec::new();
    for (name, contents) in files {
        let path = dir.join(name);
        std::fs::write(&path, contents)?;
        written.push(path);
    }
    Ok(written)
}

/// What differs between `dir` and [`files`]: one line per file that is missing, stale or
/// extra; empty when `dir` is current.
pub fn stale(dir: &Path) -> std::io::Result<Vec<String>> {
    let files = files();
    let mut problems = Vec::new();
    for (name, contents) in &files {
        match std::fs::read_to_string(dir.join(name)) {
            Ok(found) if &found == contents => {}
            Ok(_) => problems.push(format!("{name} differs from what the Rust type makes")),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                problems.push(format!("{name} is missing"));
            }
            Err(err) => return Err(err),
        }
    }
    if dir.is_dir() {
        for entry in std::fs::read_dir(dir)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if name.ends_with(".ts") && !files.iter().any(|(file, _)| *file == name) {
                problems.push(format!("{name} is not made by any exported type"));
            }
        }
    }
    Ok(problems)
}
