//! A codec whose cargo feature is off is one clear compile error at the `codec = ".."` string.
//!
//! Every other test turns all of crimson-core's codecs on (through the dev-dependency), so this
//! one builds `tests/feature-off`, a crate whose crimson-core has only `json`, as a separate
//! cargo project: a copy of it under `CARGO_TARGET_TMPDIR`, with the workspace's lockfile so
//! that it resolves offline to the crates already in use.

use std::path::{Path, PathBuf};
use std::process::Command;

/// What crimson-core's disabled `require_cbor!` says.
const MESSAGE: &str = "error: the `cbor` codec is not enabled: turn on the `cbor` cargo feature";

#[test]
fn disabled_codec_is_the_only_error_and_points_at_the_attribute() {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let source = manifest_dir.join("tests/feature-off");
    let workspace = manifest_dir.parent().unwrap();
    let scratch = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let project = scratch.join("feature-off");
    std::fs::create_dir_all(project.join("src")).unwrap();

    let manifest = std::fs::read_to_string(source.join("Cargo.toml")).unwrap();
    let core = workspace.join("crimson-core");
    let relative = r#"path = "../../../crimson-core""#;
    assert!(
        manifest.contains(relative),
        "tests/feature-off/Cargo.toml changed its path"
    );
    let absolute = format!("path = {:?}", core.display().to_string());
    std::fs::write(
        project.join("Cargo.toml"),
        manifest.replace(relative, &absolute),
    )
    .unwrap();
    let lib = std::fs::read_to_string(source.join("src/lib.rs")).unwrap();
    std::fs::write(project.join("src/lib.rs"), &lib).unwrap();
    std::fs::copy(workspace.join("Cargo.lock"), project.join("Cargo.lock")).unwrap();

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .arg("check")
        .arg("--offline")
        .arg("--manifest-path")
        .arg(project.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(scratch.join("feature-off-target"))
        .env("CARGO_TERM_COLOR", "never")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .output()
        .expect("cannot run cargo");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "a disabled codec compiled:\n{stderr}"
    );

    // Built, and failed for the right reason, once, at the right token.
    assert!(stderr.contains(MESSAGE), "no feature error:\n{stderr}");
    let (line, column) = position_of(&lib, r#"#[crimson(codec = "cbor")]"#);
    let column = column + r#"#[crimson(codec = "#.len();
    let location = format!("src/lib.rs:{line}:{column}");
    assert!(
        stderr.contains(&location),
        "error not at {location}:\n{stderr}"
    );
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(
        errors.len(),
        2,
        "expected one error plus cargo's summary:\n{stderr}"
    );
    assert!(errors[0].starts_with(MESSAGE), "{stderr}");
    assert!(
        errors[1].contains("could not compile `crimson-feature-off`")
            && errors[1].contains("1 previous error"),
        "{stderr}"
    );
}

/// The 1-based line and column of the first line of `text` that starts with `needle`.
fn position_of(text: &str, needle: &str) -> (usize, usize) {
    text.lines()
        .enumerate()
        .find(|(_, line)| line.starts_with(needle))
        .map(|(i, _)| (i + 1, 1))
        .unwrap_or_else(|| panic!("{needle} not in tests/feature-off/src/lib.rs"))
}
