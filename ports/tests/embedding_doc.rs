//! docs/embedding.md shows examples verbatim; this fails when a copy drifts from its file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

#[test]
fn embedded_examples_match_their_files() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let doc = std::fs::read_to_string(format!("{root}/docs/embedding.md")).expect("read the doc");
    let marker = "<!-- example: ";
    let mut checked = 0;
    for (at, _) in doc.match_indices(marker) {
        let rest = &doc[at + marker.len()..];
        let path = &rest[..rest.find(" -->").expect("marker closes")];
        let fence = rest
            .find("```rust\n")
            .expect("a rust block follows the marker")
            + 8;
        let block = &rest[fence..fence + rest[fence..].find("```\n").expect("block closes")];
        let file = std::fs::read_to_string(format!("{root}/{path}")).expect("read the example");
        assert_eq!(
            block, file,
            "docs/embedding.md's copy of {path} differs from the file: paste the file again"
        );
        checked += 1;
    }
    assert!(checked > 0, "docs/embedding.md shows no example");
}

/// The in-memory example stays short: at most 30 lines from its first `use` to the
/// boundary-filtered read (docs/embedding.md says so).
#[test]
fn the_in_memory_example_is_short() {
    let file = include_str!("../examples/in_memory.rs");
    let lines: Vec<&str> = file.lines().collect();
    let first_use = lines.iter().position(|l| l.starts_with("use ")).unwrap();
    let read = lines
        .iter()
        .position(|l| l.contains("hydrate(Some(&carol)"))
        .unwrap();
    assert!(
        read - first_use < 30,
        "{} lines from `use` to the read",
        read - first_use + 1
    );
}
