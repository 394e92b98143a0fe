//! Shared helpers for the domain's fixture-driven tests.
//!
//! Fixtures are read in place from `shared/fixtures`, which sits beside the project checkout
//! (`<checkout>/../shared/fixtures`). Set `STRATOS_FIXTURES_DIR` to point elsewhere.
#![allow(dead_code, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

/// The fixtures root. Panics with a clear message when it cannot be found: a missing fixture
/// folder must fail the test run, never silently skip it.
pub fn fixtures_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("STRATOS_FIXTURES_DIR") {
        let dir = PathBuf::from(dir);
        assert!(
            dir.is_dir(),
            "STRATOS_FIXTURES_DIR={} is not a directory",
            dir.display()
        );
        return dir;
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("domain crate sits inside the workspace");
    let dir = workspace.join("..").join("shared").join("fixtures");
    assert!(
        dir.is_dir(),
        "atproto fixtures not found at {} (expected shared/ beside the checkout); \
         set STRATOS_FIXTURES_DIR to the fixtures folder",
        dir.display()
    );
    dir
}

/// Reads a fixture file as text, e.g. `read("atproto-interop/syntax/did_syntax_valid.txt")`.
pub fn read(rel: &str) -> String {
    let path = fixtures_dir().join(rel);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()))
}

/// Reads and parses a JSON fixture.
pub fn json(rel: &str) -> serde_json::Value {
    serde_json::from_str(&read(rel)).unwrap_or_else(|e| panic!("fixture {rel} is not JSON: {e}"))
}

/// The non-empty, non-comment lines of a line-oriented fixture (`#` starts a comment line).
/// Lines are not trimmed: leading/trailing whitespace is part of some test vectors.
pub fn lines(rel: &str) -> Vec<String> {
    read(rel)
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}
