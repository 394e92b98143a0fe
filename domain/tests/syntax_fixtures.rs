//! Every line of every atproto syntax vector file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use stratos_domain::syntax::{
    AtIdentifier, AtUri, Datetime, Did, Handle, Language, Nsid, RecordKey, Tid,
    is_valid_cid_syntax, is_valid_uri,
};

type Check = fn(&str) -> bool;

fn checks() -> Vec<(&'static str, Check)> {
    vec![
        ("did", |s| Did::parse(s).is_ok()),
        ("handle", |s| Handle::parse(s).is_ok()),
        ("nsid", |s| Nsid::parse(s).is_ok()),
        ("tid", |s| Tid::parse(s).is_ok()),
        ("recordkey", |s| RecordKey::parse(s).is_ok()),
        ("aturi", |s| AtUri::parse(s).is_ok()),
        ("atidentifier", |s| AtIdentifier::parse(s).is_ok()),
        ("datetime", |s| Datetime::parse(s).is_ok()),
        ("language", |s| Language::parse(s).is_ok()),
        ("cid", is_valid_cid_syntax),
        ("uri", is_valid_uri),
    ]
}

#[test]
fn every_syntax_vector() {
    let dir = common::fixtures_dir().join("atproto-interop/syntax");
    let mut failures = Vec::new();
    let mut counted = 0;
    let mut files_seen = 0;
    for (kind, check) in checks() {
        for (suffix, expect_valid) in [
            ("syntax_valid", true),
            ("syntax_invalid", false),
            ("parse_invalid", false),
        ] {
            let rel = format!("atproto-interop/syntax/{kind}_{suffix}.txt");
            if !dir.join(format!("{kind}_{suffix}.txt")).exists() {
                assert_ne!(suffix, "syntax_valid", "missing {rel}");
                continue;
            }
            files_seen += 1;
            for line in common::lines(&rel) {
                counted += 1;
                if check(&line) != expect_valid {
                    failures.push(format!(
                        "{rel}: {line:?} should be {}",
                        if expect_valid { "valid" } else { "invalid" }
                    ));
                }
            }
        }
    }
    // Every fixture file in the folder is covered by some check.
    let on_disk = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "txt")
        })
        .count();
    assert_eq!(
        files_seen, on_disk,
        "a syntax fixture file is not wired into this test"
    );
    assert!(counted > 500, "only {counted} vectors read");
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn datetime_parse_invalid_lines_have_valid_shape() {
    // They are rejected for their values, not their form.
    for line in common::lines("atproto-interop/syntax/datetime_parse_invalid.txt") {
        assert!(Datetime::is_valid_syntax(&line), "{line:?}");
    }
}

#[test]
fn accessors_and_constructors() {
    let uri = AtUri::parse("at://did:plc:asdf123/zone.stratos.feed.post/3kabc").unwrap();
    assert_eq!(uri.authority().as_str(), "did:plc:asdf123");
    assert_eq!(uri.collection().unwrap().as_str(), "zone.stratos.feed.post");
    assert_eq!(uri.rkey().unwrap().as_str(), "3kabc");
    let did = Did::parse("did:plc:asdf123").unwrap();
    assert_eq!(did.method(), "plc");
    let nsid = Nsid::parse("zone.stratos.feed.post").unwrap();
    assert_eq!(
        (nsid.authority(), nsid.name()),
        ("zone.stratos.feed", "post")
    );
    let built = AtUri::for_record(&did, &nsid, &RecordKey::parse("3kabc").unwrap());
    assert_eq!(built, uri);
    assert!(
        AtUri::parse("at://user.bsky.social")
            .unwrap()
            .collection()
            .is_none()
    );
    assert_eq!(
        Handle::parse("John.Test").unwrap().normalized().as_str(),
        "john.test"
    );
}

#[test]
fn serde_validates_on_deserialize() {
    let did: Did = serde_json::from_str("\"did:web:example.com\"").unwrap();
    assert_eq!(
        serde_json::to_string(&did).unwrap(),
        "\"did:web:example.com\""
    );
    assert!(serde_json::from_str::<Did>("\"did:Web:example.com\"").is_err());
    assert!(serde_json::from_str::<Tid>("\"zzzzzzzzzzzzz\"").is_err());
    assert!(serde_json::from_str::<AtUri>("\"at://did:plc:x/app.bsky.feed.post/.\"").is_err());
    let uri: AtUri = serde_json::from_str("\"at://did:plc:x/app.bsky.feed.post/abc\"").unwrap();
    assert_eq!(uri.rkey().unwrap().as_str(), "abc");
}

proptest::proptest! {
    #[test]
    fn parsers_never_panic(s in "\\PC{0,300}") {
        for (_, check) in checks() {
            let _ = check(&s);
        }
        let _ = Datetime::is_valid_syntax(&s);
    }

    #[test]
    fn parsers_never_panic_on_near_misses(s in "[a-z0-9:/._~#%@+-]{0,80}") {
        for (_, check) in checks() {
            let _ = check(&s);
        }
        let _ = AtUri::parse(&format!("at://{s}"));
    }
}
