//! Compile-time behaviour of `#[derive(CrimsonMessage)]`: every error message, as the user
//! sees it, and the cases that must compile.
//!
//! Regenerate the snapshots with `TRYBUILD=overwrite cargo test -p crimson-macros --test ui`,
//! then read each `.stderr`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/fail/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
