#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! The atproto interop lexicon vectors: schema documents (valid/invalid) and record data
//! validated against `lexicon/catalog/*.json`.

mod common;

use serde_json::Value;
use stratos_domain::data;
use stratos_domain::lexicon::{Catalog, LexiconDoc};

fn cases(rel: &str) -> Vec<Value> {
    let text = common::read(&format!("atproto-interop/lexicon/{rel}"));
    let Value::Array(cases) = serde_json::from_str(&text).unwrap() else {
        panic!("{rel} is not a JSON array")
    };
    assert!(!cases.is_empty(), "{rel} has no cases");
    cases
}

fn fixture_catalog() -> Catalog {
    let mut catalog = Catalog::new();
    let dir = common::fixtures_dir().join("atproto-interop/lexicon/catalog");
    let mut loaded = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).unwrap();
            catalog
                .add_json(&text)
                .unwrap_or_else(|e| panic!("catalog {} rejected: {e}", path.display()));
            loaded += 1;
        }
    }
    assert!(loaded >= 5, "expected the five catalog documents");
    catalog
}

#[test]
fn valid_lexicon_documents_parse() {
    for case in cases("lexicon-valid.json") {
        LexiconDoc::from_json(&case["lexicon"])
            .unwrap_or_else(|e| panic!("{}: rejected: {e}", case["name"]));
    }
}

#[test]
fn invalid_lexicon_documents_are_rejected() {
    for case in cases("lexicon-invalid.json") {
        assert!(
            LexiconDoc::from_json(&case["lexicon"]).is_err(),
            "{}: accepted",
            case["name"]
        );
    }
}

#[test]
fn valid_record_data_validates() {
    let catalog = fixture_catalog();
    for case in cases("record-data-valid.json") {
        let name = &case["name"];
        let value = data::json_to_ipld(&case["data"])
            .unwrap_or_else(|e| panic!("{name}: not atproto data: {e}"));
        let collection = case["data"]["$type"].as_str().unwrap();
        catalog
            .validate_record(collection, &value)
            .unwrap_or_else(|e| panic!("{name}: rejected: {e}"));
        catalog
            .check_record_key(collection, case["rkey"].as_str().unwrap())
            .unwrap_or_else(|e| panic!("{name}: rkey rejected: {e}"));
    }
}

#[test]
fn invalid_record_data_is_rejected() {
    let catalog = fixture_catalog();
    let mut by_validator = 0;
    for case in cases("record-data-invalid.json") {
        let name = &case["name"];
        // Some cases (e.g. malformed `$bytes`) already fail the data model; that is a rejection
        // too, but most must reach the lexicon validator.
        let Ok(value) = data::json_to_ipld(&case["data"]) else {
            continue;
        };
        let collection = case["data"]["$type"].as_str().unwrap();
        assert!(
            catalog.validate_record(collection, &value).is_err(),
            "{name}: accepted"
        );
        by_validator += 1;
    }
    assert!(
        by_validator >= 40,
        "only {by_validator} cases reached the validator"
    );
}

#[test]
fn record_type_must_match_the_collection() {
    let catalog = fixture_catalog();
    let value =
        data::json_to_ipld(&serde_json::json!({"$type": "example.lexicon.other", "integer": 1}))
            .unwrap();
    assert!(
        catalog
            .validate_record("example.lexicon.record", &value)
            .is_err()
    );
    let untyped = data::json_to_ipld(&serde_json::json!({"integer": 1})).unwrap();
    assert!(
        catalog
            .validate_record("example.lexicon.record", &untyped)
            .is_err()
    );
}

#[test]
fn record_keys_follow_the_key_type() {
    let catalog = fixture_catalog();
    catalog
        .check_record_key("example.lexicon.record", "demo")
        .unwrap();
    assert!(
        catalog
            .check_record_key("example.lexicon.record", "other")
            .is_err()
    );
}

#[test]
fn unresolved_refs_fail_in_a_strict_catalog() {
    let catalog = fixture_catalog();
    // The procedure fixture references app.bsky.actor.defs, which is not loaded.
    assert!(catalog.check_refs().is_err());
}
