#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! Stratos rules without lexicons: boundaries, the access decision, enrollment eligibility and
//! records, attestations, stubs. Test names mirror the reference scenarios they replace (see
//! docs/domain-rules.md).

use ipld_core::ipld::Ipld;
use proptest::prelude::*;
use serde_json::json;
use stratos_domain::attestation::{self, Attestation};
use stratos_domain::boundary::{
    Boundary, BoundarySet, Viewer, can_read, qualify_configured, qualify_offered,
    record_boundary_values, split_qualified,
};
use stratos_domain::crypto::{KeyAlgorithm, Keypair};
use stratos_domain::enrollment::{
    Admission, DenialReason, EnrollmentMode, EnrollmentPolicy, EnrollmentRecord, Precheck,
    enrollment_rkey,
};
use stratos_domain::stub::{self, StubSource};
use stratos_domain::syntax::{AtUri, Datetime, Did};
use stratos_domain::{Cid, Error, cid, data};

fn did(s: &str) -> Did {
    Did::parse(s).unwrap()
}

fn b(s: &str) -> Boundary {
    Boundary::parse(s).unwrap()
}

const SVC: &str = "did:web:nerv.tokyo.jp";

// ---- boundary qualification (reference: boundary-qualification.test.ts) --------------------

#[test]
fn qualify_did_web_and_did_plc() {
    assert_eq!(
        Boundary::qualify(&did(SVC), "engineering")
            .unwrap()
            .as_str(),
        "did:web:nerv.tokyo.jp/engineering"
    );
    let plc = Boundary::qualify(&did("did:plc:abc123"), "eva-pilots").unwrap();
    assert_eq!(plc.service_did(), "did:plc:abc123");
    assert_eq!(plc.name(), "eva-pilots");
}

#[test]
fn qualify_configured_bare_passthrough_mixed_dedupe_and_empty() {
    let svc = did(SVC);
    assert!(qualify_configured::<&str>(&svc, &[]).unwrap().is_empty());
    let got = qualify_configured(
        &svc,
        &[
            " engineering ",
            "did:web:nerv.tokyo.jp/ops",
            "",
            "engineering",
        ],
    )
    .unwrap();
    let got: Vec<_> = got.iter().map(Boundary::as_str).collect();
    assert_eq!(
        got,
        [
            "did:web:nerv.tokyo.jp/engineering",
            "did:web:nerv.tokyo.jp/ops"
        ]
    );
}

#[test]
fn qualify_configured_rejects_foreign_boundaries() {
    let err = qualify_configured(&did(SVC), &["did:web:seele.org/ops"]).unwrap_err();
    assert_eq!(
        err,
        Error::BoundaryServiceMismatch {
            boundary: "did:web:seele.org/ops".into(),
            expected: SVC.into()
        }
    );
}

#[test]
fn split_qualified_follows_the_reference_rule() {
    assert_eq!(split_qualified("did:plc:abc/x"), Some(("did:plc:abc", "x")));
    assert_eq!(
        split_qualified("did:web:nerv.tokyo.jp/a/b"),
        Some(("did:web:nerv.tokyo.jp", "a/b"))
    );
    assert_eq!(split_qualified("engineering"), None);
    assert_eq!(split_qualified("did:plc:abc"), None);
    assert_eq!(split_qualified("did:plc:/x"), None);
    assert_eq!(split_qualified("did:plc:abc/"), None);
}

#[test]
fn boundary_parse_rejects_malformed_values() {
    for bad in [
        "engineering",
        "did:plc:abc",
        "did:plc:abc/",
        "did:/x",
        "did:plc:abc/with space",
        "did:plc:abc/tab\there",
    ] {
        assert!(
            matches!(Boundary::parse(bad), Err(Error::BoundaryFormat { .. })),
            "{bad:?} accepted"
        );
    }
    let long = format!("{SVC}/{}", "a".repeat(253));
    assert!(matches!(
        Boundary::parse(&long),
        Err(Error::BoundaryFormat { .. })
    ));
    let max = format!("{SVC}/{}", "a".repeat(253 - SVC.len() - 1));
    assert_eq!(Boundary::parse(&max).unwrap().as_str().len(), 253);
}

#[test]
fn boundary_belongs_to_its_service_only() {
    let x = b("did:web:nerv.tokyo.jp/ops");
    assert!(x.belongs_to(&did(SVC)));
    assert!(!x.belongs_to(&did("did:web:nerv.tokyo")));
}

#[test]
fn record_boundary_values_reads_values_and_ignores_junk() {
    let record = data::json_to_ipld(&json!({
        "boundary": {"values": [{"value": "did:web:a/x"}, {"value": 3}, "bare", {"value": "did:web:a/y"}]}
    }))
    .unwrap();
    assert_eq!(
        record_boundary_values(&record),
        ["did:web:a/x", "did:web:a/y"]
    );
    assert!(
        record_boundary_values(&data::json_to_ipld(&json!({"text": "hi"})).unwrap()).is_empty()
    );
}

// ---- the access decision (reference: hydration.test.ts canAccessRecord) -------------------

fn set(items: &[&str]) -> BoundarySet {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn owner_always_reads_even_without_boundaries() {
    let none = set(&[]);
    let viewer = Viewer::Account {
        did: "did:plc:shinji",
        boundaries: &none,
    };
    assert!(can_read(viewer, "did:plc:shinji", &["did:web:a/x"]));
    assert!(can_read::<&str>(viewer, "did:plc:shinji", &[]));
}

#[test]
fn anonymous_never_reads() {
    assert!(!can_read(
        Viewer::Anonymous,
        "did:plc:shinji",
        &["did:web:a/x"]
    ));
    // The TypeScript getRecord showed unbounded records to anonymous viewers; never here.
    assert!(!can_read::<&str>(Viewer::Anonymous, "did:plc:shinji", &[]));
}

#[test]
fn shared_boundary_reads_disjoint_does_not() {
    let mine = set(&["did:web:a/x", "did:web:a/y"]);
    let viewer = Viewer::Account {
        did: "did:plc:asuka",
        boundaries: &mine,
    };
    assert!(can_read(
        viewer,
        "did:plc:shinji",
        &["did:web:a/z", "did:web:a/y"]
    ));
    assert!(!can_read(viewer, "did:plc:shinji", &["did:web:a/z"]));
    // Same name on another service is another boundary.
    assert!(!can_read(viewer, "did:plc:shinji", &["did:web:b/x"]));
}

#[test]
fn unbounded_records_are_owner_only() {
    let mine = set(&["did:web:a/x"]);
    let viewer = Viewer::Account {
        did: "did:plc:asuka",
        boundaries: &mine,
    };
    assert!(!can_read::<&str>(viewer, "did:plc:shinji", &[]));
}

proptest! {
    #[test]
    fn access_is_exactly_owner_or_intersection(
        viewer_b in proptest::collection::btree_set(0u8..6, 0..4),
        record_b in proptest::collection::vec(0u8..6, 0..4),
        is_owner: bool,
        anonymous: bool,
    ) {
        let name = |i: &u8| format!("did:web:a/b{i}");
        let held: BoundarySet = viewer_b.iter().map(name).collect();
        let record: Vec<String> = record_b.iter().map(name).collect();
        let viewer_did = if is_owner { "did:plc:owner" } else { "did:plc:other" };
        let viewer = if anonymous {
            Viewer::Anonymous
        } else {
            Viewer::Account { did: viewer_did, boundaries: &held }
        };
        let expected = !anonymous && (is_owner || record.iter().any(|r| held.contains(r)));
        prop_assert_eq!(can_read(viewer, "did:plc:owner", &record), expected);
    }
}

// ---- enrollment eligibility (reference: enrollment.test.ts) ---------------------------------

fn doc(pds: &str) -> serde_json::Value {
    json!({
        "id": "did:plc:rei",
        "service": [
            {"id": "#atproto_labeler", "type": "AtprotoLabeler", "serviceEndpoint": "https://labels.example"},
            {"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": pds}
        ]
    })
}

/// The PDS endpoint as the enrollment decision reads it (through `DidDocument`).
fn pds_endpoint(doc: &serde_json::Value) -> Option<String> {
    stratos_domain::did_doc::DidDocument::from_json(doc)
        .ok()?
        .pds_endpoint()
        .map(str::to_owned)
}

#[test]
fn pds_endpoint_relative_and_absolute_ids() {
    assert_eq!(
        pds_endpoint(&doc("https://pds.nerv.jp")).as_deref(),
        Some("https://pds.nerv.jp")
    );
    let absolute = json!({"id": "did:plc:rei",
        "service": [{"id": "did:plc:rei#atproto_pds", "serviceEndpoint": "https://x"}]});
    assert_eq!(pds_endpoint(&absolute).as_deref(), Some("https://x"));
    // Another DID's service is not this account's PDS (the enrollment check used to take it).
    let foreign = json!({"id": "did:plc:rei",
        "service": [{"id": "did:plc:asuka#atproto_pds", "serviceEndpoint": "https://x"}]});
    assert_eq!(pds_endpoint(&foreign), None);
}

#[test]
fn pds_endpoint_none_cases() {
    let with = |service: serde_json::Value| json!({"id": "did:plc:rei", "service": service});
    assert_eq!(pds_endpoint(&json!({})), None);
    assert_eq!(pds_endpoint(&with(json!("nope"))), None);
    assert_eq!(
        pds_endpoint(&with(
            json!([{"id": "#other", "serviceEndpoint": "https://x"}])
        )),
        None
    );
    assert_eq!(
        pds_endpoint(&with(
            json!([{"id": "#atproto_pds", "serviceEndpoint": {"uri": "x"}}])
        )),
        None
    );
}

fn policy(mode: EnrollmentMode) -> EnrollmentPolicy {
    EnrollmentPolicy::new(
        mode,
        vec![
            b("did:web:nerv.tokyo.jp/ops"),
            b("did:web:nerv.tokyo.jp/pilots"),
        ],
    )
}

#[test]
fn open_mode_admits_everyone_without_resolution() {
    let p = policy(EnrollmentMode::Open);
    assert_eq!(p.precheck(&did("did:plc:anyone"), false), Precheck::Allowed);
    assert_eq!(p.admission().boundaries.len(), 2);
}

#[test]
fn allowlisted_did_is_admitted_without_resolution() {
    let p = policy(EnrollmentMode::Allowlist).with_allowed_dids(["did:plc:rei"]);
    assert_eq!(p.precheck(&did("did:plc:rei"), false), Precheck::Allowed);
    assert_eq!(
        p.precheck(&did("did:plc:gendo"), false),
        Precheck::Denied(DenialReason::NotInAllowlist)
    );
}

#[test]
fn external_allow_list_admits() {
    let p = policy(EnrollmentMode::Allowlist);
    assert_eq!(p.precheck(&did("did:plc:rei"), true), Precheck::Allowed);
}

#[test]
fn pds_allow_list_with_trailing_slash_normalisation() {
    let p = policy(EnrollmentMode::Allowlist).with_allowed_pds(["https://pds.nerv.jp/"]);
    assert_eq!(
        p.precheck(&did("did:plc:rei"), false),
        Precheck::NeedsDidDocument
    );
    for endpoint in ["https://pds.nerv.jp", "https://pds.nerv.jp/"] {
        let admitted = p.decide_with_document(Some(&doc(endpoint))).unwrap();
        assert_eq!(admitted.pds_endpoint.as_deref(), Some(endpoint));
    }
    assert_eq!(
        p.decide_with_document(Some(&doc("https://pds.seele.org"))),
        Err(Error::EnrollmentDenied(DenialReason::NotInAllowlist))
    );
}

#[test]
fn unresolvable_did_and_missing_pds_are_typed_denials() {
    let p = policy(EnrollmentMode::Allowlist).with_allowed_pds(["https://pds.nerv.jp"]);
    assert_eq!(
        p.decide_with_document(None),
        Err(Error::EnrollmentDenied(DenialReason::DidNotResolved))
    );
    assert_eq!(
        p.decide_with_document(Some(&json!({"service": []}))),
        Err(Error::EnrollmentDenied(DenialReason::PdsEndpointNotFound))
    );
}

#[test]
fn closed_service_denies_everyone() {
    let p = policy(EnrollmentMode::Closed).with_allowed_dids(["did:plc:rei"]);
    assert_eq!(
        p.precheck(&did("did:plc:rei"), true),
        Precheck::Denied(DenialReason::ServiceClosed)
    );
    assert_eq!(
        Error::EnrollmentDenied(DenialReason::ServiceClosed).to_string(),
        "This Stratos service is not accepting new enrollments"
    );
}

#[test]
fn enrollment_mode_parsing_is_exact() {
    assert_eq!(EnrollmentMode::parse("open").unwrap(), EnrollmentMode::Open);
    assert_eq!(
        EnrollmentMode::parse("allowlist").unwrap(),
        EnrollmentMode::Allowlist
    );
    assert_eq!(
        EnrollmentMode::parse("closed").unwrap(),
        EnrollmentMode::Closed
    );
    for bad in ["Open", "", "true", "allow-list"] {
        assert!(EnrollmentMode::parse(bad).is_err());
    }
}

#[test]
fn auto_enroll_boundaries_replace_the_default_and_must_be_offered() {
    let p = policy(EnrollmentMode::Open);
    let p = p
        .with_auto_enroll(vec![b("did:web:nerv.tokyo.jp/ops")])
        .unwrap();
    let Admission { boundaries, .. } = p.admission();
    assert_eq!(boundaries, [b("did:web:nerv.tokyo.jp/ops")]);
    let err = policy(EnrollmentMode::Open)
        .with_auto_enroll(vec![b("did:web:nerv.tokyo.jp/other")])
        .unwrap_err();
    assert!(matches!(err, Error::BoundaryNotAllowed { .. }));
}

#[test]
fn enrollment_rkey_decodes_percent_3a_case_insensitively() {
    let rkey = |did: &str| {
        Did::parse(did)
            .and_then(|did| enrollment_rkey(&did))
            .map(String::from)
    };
    assert_eq!(
        rkey("did:web:localhost%3A3100").unwrap(),
        "did:web:localhost:3100"
    );
    assert_eq!(
        rkey("did:web:localhost%3a3100").unwrap(),
        "did:web:localhost:3100"
    );
    assert_eq!(rkey("did:plc:abc").unwrap(), "did:plc:abc");
    // Other escapes stay, and no record key may hold a `%`.
    assert!(rkey("did:web:a%2Fb").is_err());
    assert!(rkey("did:web:x%3").is_err());
}

// ---- attestation (reference: attestation.test.ts, signing-properties.test.ts) -------------

const USER_KEY: &str = "did:key:zDnaembgSGUhZULN2Caob4HLJPaxBh92N7rtH21TErzqf8HQo";

#[test]
fn payload_is_independent_of_boundary_order_and_keeps_duplicates() {
    let d = did("did:plc:shinji");
    let a = attestation::payload(&d, &["did:web:a/y", "did:web:a/x"], USER_KEY).unwrap();
    let b2 = attestation::payload(&d, &["did:web:a/x", "did:web:a/y"], USER_KEY).unwrap();
    assert_eq!(a, b2);
    let dup = attestation::payload(&d, &["did:web:a/x", "did:web:a/x"], USER_KEY).unwrap();
    let decoded = data::decode(&dup).unwrap();
    let Ipld::Map(m) = decoded else { panic!() };
    assert_eq!(
        m["boundaries"],
        Ipld::List(vec![
            Ipld::String("did:web:a/x".into()),
            Ipld::String("did:web:a/x".into())
        ])
    );
}

#[test]
fn payload_decodes_to_exactly_three_fields_in_canonical_order() {
    let d = did("did:plc:shinji");
    let bytes = attestation::payload(&d, &["did:web:a/x"], USER_KEY).unwrap();
    let decoded = data::decode(&bytes).unwrap();
    let Ipld::Map(m) = &decoded else { panic!() };
    assert_eq!(m.len(), 3);
    assert_eq!(m["did"], Ipld::String("did:plc:shinji".into()));
    assert_eq!(m["signingKey"], Ipld::String(USER_KEY.into()));
    // Canonical DAG-CBOR orders keys by length, then bytes: did, boundaries, signingKey.
    let pos = |needle: &str| {
        bytes
            .windows(needle.len())
            .position(|w| w == needle.as_bytes())
            .unwrap()
    };
    assert!(pos("did") < pos("boundaries"));
    assert!(pos("boundaries") < pos("signingKey"));
    assert_eq!(bytes[0], 0xa3, "a map of three entries");
}

#[test]
fn payload_with_empty_boundaries_and_different_dids() {
    let empty: [&str; 0] = [];
    let a = attestation::payload(&did("did:plc:shinji"), &empty, USER_KEY).unwrap();
    let b2 = attestation::payload(&did("did:plc:asuka"), &empty, USER_KEY).unwrap();
    assert_ne!(a, b2);
}

#[test]
fn payload_sorts_like_javascript_utf16_order() {
    // U+FF5E (BMP, above the surrogate range) sorts after U+1F600 in UTF-16 code units
    // (0xD83D…), before it in UTF-8/code points.
    let d = did("did:plc:shinji");
    let bytes =
        attestation::payload(&d, &["did:web:a/\u{ff5e}", "did:web:a/\u{1f600}"], USER_KEY).unwrap();
    let Ipld::Map(m) = data::decode(&bytes).unwrap() else {
        panic!()
    };
    assert_eq!(
        m["boundaries"],
        Ipld::List(vec![
            Ipld::String("did:web:a/\u{1f600}".into()),
            Ipld::String("did:web:a/\u{ff5e}".into())
        ])
    );
}

fn attested() -> (Keypair, Did, Vec<String>, Attestation) {
    let service = Keypair::generate(KeyAlgorithm::K256);
    let d = did("did:plc:shinji");
    let boundaries = vec!["did:web:a/x".to_owned(), "did:web:a/y".to_owned()];
    let att = attestation::attest(&service, &d, &boundaries, USER_KEY).unwrap();
    (service, d, boundaries, att)
}

#[test]
fn attestation_round_trips_and_order_is_irrelevant() {
    let (service, d, boundaries, att) = attested();
    assert_eq!(att.sig.len(), 64);
    assert!(att.signing_key.starts_with("did:key:zQ3s"));
    let reversed: Vec<String> = boundaries.iter().rev().cloned().collect();
    attestation::verify(&att, &d, &reversed, USER_KEY, Some(&service.did_key())).unwrap();
}

#[test]
fn attestation_tampering_breaks_verification() {
    let (_, d, boundaries, att) = attested();
    let other_key = Keypair::generate(KeyAlgorithm::P256).did_key();
    let cases: Vec<(Did, Vec<String>, String)> = vec![
        (did("did:plc:asuka"), boundaries.clone(), USER_KEY.into()),
        (
            d.clone(),
            vec!["did:web:a/x".into(), "did:web:a/z".into()],
            USER_KEY.into(),
        ),
        (d.clone(), vec!["did:web:a/x".into()], USER_KEY.into()),
        (
            d.clone(),
            [boundaries.clone(), vec!["did:web:a/z".into()]].concat(),
            USER_KEY.into(),
        ),
        (d.clone(), boundaries.clone(), other_key),
    ];
    for (d2, b2, k2) in cases {
        assert!(
            matches!(
                attestation::verify(&att, &d2, &b2, &k2, None),
                Err(Error::Attestation(_))
            ),
            "tampered attestation verified: {d2} {b2:?} {k2}"
        );
    }
    let mut flipped = att.clone();
    flipped.sig[10] ^= 1;
    assert!(attestation::verify(&flipped, &d, &boundaries, USER_KEY, None).is_err());
}

#[test]
fn attestation_from_an_unexpected_service_key_is_rejected() {
    let (_, d, boundaries, att) = attested();
    let impostor = Keypair::generate(KeyAlgorithm::K256).did_key();
    assert!(matches!(
        attestation::verify(&att, &d, &boundaries, USER_KEY, Some(&impostor)),
        Err(Error::Attestation(_))
    ));
}

proptest! {
    #[test]
    fn payload_is_a_function_of_the_boundary_multiset(
        mut names in proptest::collection::vec("[a-z]{1,8}", 0..6),
        seed in any::<u64>(),
    ) {
        let d = did("did:plc:shinji");
        let boundaries: Vec<String> = names.iter().map(|n| format!("did:web:a/{n}")).collect();
        let original = attestation::payload(&d, &boundaries, USER_KEY).unwrap();
        // A deterministic shuffle.
        let len = names.len();
        if len > 1 {
            names.rotate_left((seed as usize) % len);
        }
        let shuffled: Vec<String> = names.iter().map(|n| format!("did:web:a/{n}")).collect();
        prop_assert_eq!(&original, &attestation::payload(&d, &shuffled, USER_KEY).unwrap());
        let Ipld::Map(m) = data::decode(&original).unwrap() else { panic!() };
        let Ipld::List(list) = &m["boundaries"] else { panic!() };
        let strings: Vec<&str> = list.iter().map(|v| match v { Ipld::String(s) => s.as_str(), _ => panic!() }).collect();
        let mut sorted = strings.clone();
        sorted.sort();
        prop_assert_eq!(strings, sorted);
    }
}

// ---- enrollment record (reference: discovery.ts parseEnrollmentRecord) ---------------------

#[test]
fn enrollment_record_round_trips_through_atproto_json() {
    let (_, _, boundaries, att) = attested();
    let record = EnrollmentRecord {
        service: "https://stratos.nerv.tokyo.jp".into(),
        boundaries,
        signing_key: USER_KEY.into(),
        attestation: att,
        created_at: Datetime::parse("2026-11-25T10:00:00.000Z").unwrap(),
    };
    let ipld = record.to_ipld();
    let json = data::ipld_to_json(&ipld).unwrap();
    assert_eq!(json["$type"], "zone.stratos.actor.enrollment");
    assert!(json["attestation"]["sig"]["$bytes"].is_string());
    assert_eq!(json["boundaries"][0]["value"], "did:web:a/x");
    let back = EnrollmentRecord::from_ipld(&data::json_to_ipld(&json).unwrap()).unwrap();
    assert_eq!(back, record);
}

#[test]
fn enrollment_record_parse_defaults_and_rejections() {
    let base = json!({
        "service": "https://s.example",
        "signingKey": USER_KEY,
        "createdAt": "2026-11-25T10:00:00Z",
        "attestation": {"sig": {"$bytes": "AAEC"}, "signingKey": "did:key:zQ3sh"}
    });
    let parsed = EnrollmentRecord::from_ipld(&data::json_to_ipld(&base).unwrap()).unwrap();
    assert!(parsed.boundaries.is_empty());
    for missing in ["service", "signingKey", "createdAt", "attestation"] {
        let mut v = base.clone();
        v.as_object_mut().unwrap().remove(missing);
        assert!(
            matches!(
                EnrollmentRecord::from_ipld(&data::json_to_ipld(&v).unwrap()),
                Err(Error::EnrollmentRecord(_))
            ),
            "accepted without {missing}"
        );
    }
    let mut v = base.clone();
    v["attestation"]["sig"] = json!("not-bytes");
    assert!(EnrollmentRecord::from_ipld(&data::json_to_ipld(&v).unwrap()).is_err());
}

// ---- stubs (reference: stub.test.ts) --------------------------------------------------------

fn post() -> Ipld {
    data::json_to_ipld(&json!({
        "$type": "zone.stratos.feed.post",
        "text": "secret",
        "boundary": {"$type": "zone.stratos.boundary.defs#Domains", "values": [{"value": "did:web:a/x"}]},
        "createdAt": "2026-11-20T08:00:00.000Z"
    }))
    .unwrap()
}

fn uri() -> AtUri {
    AtUri::parse("at://did:plc:shinji/zone.stratos.feed.post/3kznmn7xqxl22").unwrap()
}

#[test]
fn stub_has_only_type_source_and_created_at_from_the_record() {
    let record = post();
    let (record_cid, _) = data::record_cid(&record).unwrap();
    let now = Datetime::parse("2030-01-01T00:00:00Z").unwrap();
    let service = stub::service_ref("did:web:nerv.tokyo.jp", stub::DEFAULT_SERVICE_FRAGMENT);
    let s = stub::stub_for(&record, &uri(), &record_cid, &service, &now).unwrap();
    let json = data::ipld_to_json(&s).unwrap();
    assert_eq!(
        json,
        json!({
            "$type": "zone.stratos.feed.post",
            "source": {
                "vary": "authenticated",
                "subject": {"uri": uri().to_string(), "cid": record_cid.to_string()},
                "service": "did:web:nerv.tokyo.jp#atproto_pns"
            },
            "createdAt": "2026-11-20T08:00:00.000Z"
        })
    );
}

#[test]
fn stub_falls_back_to_collection_and_now() {
    let record = data::json_to_ipld(&json!({"text": "x"})).unwrap();
    let c: Cid = cid::dag_cbor(b"x");
    let now = Datetime::parse("2030-01-01T00:00:00Z").unwrap();
    let s = stub::stub_for(&record, &uri(), &c, "did:web:x#atproto_pns", &now).unwrap();
    let Ipld::Map(m) = s else { panic!() };
    assert_eq!(m["$type"], Ipld::String("zone.stratos.feed.post".into()));
    assert_eq!(m["createdAt"], Ipld::String("2030-01-01T00:00:00Z".into()));
}

#[test]
fn is_stub_true_and_false_cases() {
    let record = post();
    let (c, _) = data::record_cid(&record).unwrap();
    let now = Datetime::parse("2030-01-01T00:00:00Z").unwrap();
    let s = stub::stub_for(&record, &uri(), &c, "did:web:x#atproto_pns", &now).unwrap();
    assert!(stub::is_stub(&s));
    assert_eq!(
        stub::stub_source(&s),
        Some(StubSource {
            vary: "authenticated".into(),
            uri: uri().to_string(),
            cid: c.to_string(),
            service: "did:web:x#atproto_pns".into()
        })
    );
    let not_stubs = [
        Ipld::Null,
        Ipld::Integer(1),
        Ipld::String("source".into()),
        post(),
        data::json_to_ipld(&json!({"source": {}})).unwrap(),
        data::json_to_ipld(&json!({"source": {"vary": "authenticated", "service": "x"}})).unwrap(),
        data::json_to_ipld(
            &json!({"source": {"vary": 1, "subject": {"uri": "a", "cid": "b"}, "service": "x"}}),
        )
        .unwrap(),
        data::json_to_ipld(
            &json!({"source": {"vary": "authenticated", "subject": "x", "service": "x"}}),
        )
        .unwrap(),
    ];
    for v in not_stubs {
        assert!(!stub::is_stub(&v), "{v:?} taken for a stub");
    }
}

#[test]
fn parse_service_ref_splits_at_the_first_hash() {
    assert_eq!(
        stub::parse_service_ref("did:plc:abc#atproto_pns"),
        ("did:plc:abc", Some("atproto_pns"))
    );
    assert_eq!(
        stub::parse_service_ref("did:web:x.y"),
        ("did:web:x.y", None)
    );
    assert_eq!(
        stub::parse_service_ref("did:web:x#a#b"),
        ("did:web:x", Some("a#b"))
    );
}

#[test]
fn stub_of_a_non_object_is_an_error() {
    let now = Datetime::parse("2030-01-01T00:00:00Z").unwrap();
    let c: Cid = cid::dag_cbor(b"x");
    assert!(stub::stub_for(&Ipld::List(vec![]), &uri(), &c, "did:web:x#f", &now).is_err());
}

proptest! {
    /// The storage filter never admits a record `can_read` denies, nor hides one it admits.
    #[test]
    fn read_filter_agrees_with_can_read(
        viewer_b in proptest::collection::btree_set(0u8..6, 0..4),
        record_b in proptest::collection::vec(0u8..6, 0..4),
        is_owner: bool,
        anonymous: bool,
    ) {
        use stratos_domain::boundary::{ReadFilter, read_filter};
        let name = |i: &u8| format!("did:web:a/b{i}");
        let held: BoundarySet = viewer_b.iter().map(name).collect();
        let record: Vec<String> = record_b.iter().map(name).collect();
        let viewer = if anonymous {
            Viewer::Anonymous
        } else {
            Viewer::Account { did: if is_owner { "did:plc:owner" } else { "did:plc:other" }, boundaries: &held }
        };
        let admitted = match read_filter(viewer, "did:plc:owner") {
            ReadFilter::All => true,
            ReadFilter::Nothing => false,
            ReadFilter::AnyOf(set) => record.iter().any(|r| set.contains(r)),
        };
        prop_assert_eq!(admitted, can_read(viewer, "did:plc:owner", &record));
    }
}

#[test]
fn qualify_offered_accepts_offered_names_and_rejects_others() {
    let svc = did("did:web:nerv.tokyo.jp");
    let offered = qualify_configured(&svc, &["swordsmith", "aekea"]).unwrap();
    let got = qualify_offered(
        &svc,
        &offered,
        &["aekea", "did:web:nerv.tokyo.jp/swordsmith", "aekea"],
    )
    .unwrap();
    assert_eq!(
        got.iter().map(Boundary::as_str).collect::<Vec<_>>(),
        [
            "did:web:nerv.tokyo.jp/aekea",
            "did:web:nerv.tokyo.jp/swordsmith"
        ]
    );
    assert!(matches!(
        qualify_offered(&svc, &offered, &["lilin"]),
        Err(Error::BoundaryNotAllowed { boundary }) if boundary == "did:web:nerv.tokyo.jp/lilin"
    ));
    assert!(matches!(
        qualify_offered(&svc, &offered, &["did:web:seele.example/aekea"]),
        Err(Error::BoundaryServiceMismatch { .. })
    ));
}
