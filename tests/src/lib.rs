//! Test support shared by the integration tests in `tests/`.

pub mod redis_server;

/// The README's examples compile (and those that can run, run).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
