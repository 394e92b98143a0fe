//! The atproto data model against the interop vectors, plus strictness and round-trip properties.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::collections::BTreeMap;

use base64::Engine;
use proptest::prelude::*;
use serde_json::json;
use stratos_domain::data::{self, Blob, Ipld};
use stratos_domain::{Error, cid};

fn b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(s.trim_end_matches('='))
        .unwrap()
}

#[test]
fn data_model_fixtures_json_cbor_cid() {
    let cases = common::json("atproto-interop/data-model/data-model-fixtures.json");
    let cases = cases.as_array().unwrap();
    assert!(cases.len() >= 3);
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let expected_cbor = b64(case["cbor_base64"].as_str().unwrap());
        let expected_cid = case["cid"].as_str().unwrap();
        let value = data::json_to_object(&case["json"]).unwrap();
        let (cid, bytes) = data::record_cid(&value).unwrap();
        if bytes != expected_cbor {
            failures.push(format!("case {i}: CBOR differs"));
        }
        if cid.to_string() != expected_cid {
            failures.push(format!("case {i}: CID {cid} != {expected_cid}"));
        }
        let decoded = data::decode(&expected_cbor).unwrap();
        if data::ipld_to_json(&decoded).unwrap() != case["json"] {
            failures.push(format!("case {i}: CBOR → JSON differs"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn data_model_valid_and_invalid() {
    let mut failures = Vec::new();
    for case in common::json("atproto-interop/data-model/data-model-valid.json")
        .as_array()
        .unwrap()
    {
        let note = case["note"].as_str().unwrap();
        match data::json_to_object(&case["json"]).and_then(|v| data::encode(&v)) {
            Ok(_) => {}
            Err(e) => failures.push(format!("valid case {note:?} rejected: {e}")),
        }
    }
    let invalid = common::json("atproto-interop/data-model/data-model-invalid.json");
    assert!(invalid.as_array().unwrap().len() >= 12);
    for case in invalid.as_array().unwrap() {
        let note = case["note"].as_str().unwrap();
        if data::json_to_object(&case["json"]).is_ok() {
            failures.push(format!("invalid case {note:?} accepted"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn integer_like_float_becomes_an_integer() {
    let v = data::json_to_ipld(&json!({"a": 123.0})).unwrap();
    assert_eq!(
        v,
        Ipld::Map(BTreeMap::from([("a".to_owned(), Ipld::Integer(123))]))
    );
    assert!(data::json_to_ipld(&json!({"a": 1.5})).is_err());
    assert!(data::json_to_ipld(&json!({"a": 1e300})).is_err());
    assert!(data::json_to_ipld(&json!({"a": u64::MAX})).is_err());
    assert!(data::json_to_ipld(&json!({"a": i64::MIN})).is_ok());
}

#[test]
fn floats_are_rejected_in_every_direction() {
    let float = Ipld::Map(BTreeMap::from([("a".to_owned(), Ipld::Float(1.5))]));
    assert!(data::encode(&float).is_err());
    assert!(data::ipld_to_json(&float).is_err());
    // A CBOR float (0xf9 half, 0xfb double) inside a map.
    let cbor = serde_ipld_dagcbor::to_vec(&float).unwrap();
    assert!(matches!(data::decode(&cbor), Err(Error::CborDecode(_))));
}

#[test]
fn decode_is_strict() {
    // {"b": 1, "a": 2}: keys not in canonical order.
    assert!(data::decode(&[0xa2, 0x61, b'b', 0x01, 0x61, b'a', 0x02]).is_err());
    // Non-minimal integer (1 encoded in two bytes).
    assert!(data::decode(&[0xa1, 0x61, b'a', 0x18, 0x01]).is_err());
    // Trailing bytes.
    assert!(data::decode(&[0xa1, 0x61, b'a', 0x01, 0x00]).is_err());
    // Duplicate keys.
    assert!(data::decode(&[0xa2, 0x61, b'a', 0x01, 0x61, b'a', 0x02]).is_err());
    // Indefinite-length map.
    assert!(data::decode(&[0xbf, 0x61, b'a', 0x01, 0xff]).is_err());
    // Found by fuzzing: a link whose CID uses the identity multihash re-encoded differently.
    // Only CIDv1 dag-cbor/raw sha2-256 links are accepted.
    assert!(data::decode(&[0xd8, 0x2a, 0x46, 0x00, 0x01, 0x00, 0x00, 0x01, 0x63]).is_err());
    let fuzz_case = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/regressions/dag_cbor_identity_cid.bin"
    ))
    .unwrap();
    assert!(data::decode(&fuzz_case).is_err());
    // Found by fuzzing: an indefinite-length text string as a map key.
    let fuzz_case = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/regressions/dag_cbor_indefinite_key.bin"
    ))
    .unwrap();
    assert!(data::decode(&fuzz_case).is_err());
    assert!(data::decode(&[0xa1, 0x7f, 0x61, b'a', 0xff, 0x01]).is_err());
    // Indefinite-length byte string.
    assert!(data::decode(&[0x5f, 0x41, 0x01, 0xff]).is_err());
    // Canonical form is accepted.
    assert!(data::decode(&[0xa2, 0x61, b'a', 0x02, 0x61, b'b', 0x01]).is_ok());
}

#[test]
fn links_and_bytes_objects_are_exact() {
    let cid = "bafyreidfayvfuwqa7qlnopdjiqrxzs6blmoeu4rujcjtnci5beludirz2a";
    assert!(matches!(
        data::json_to_ipld(&json!({"$link": cid})),
        Ok(Ipld::Link(_))
    ));
    assert!(data::json_to_ipld(&json!({"$link": cid, "x": 1})).is_err());
    assert!(data::json_to_ipld(&json!({"$link": "."})).is_err());
    assert!(data::json_to_ipld(&json!({"$bytes": "not base64!"})).is_err());
    assert_eq!(
        data::json_to_ipld(&json!({"$bytes": "AQID"})).unwrap(),
        Ipld::Bytes(vec![1, 2, 3])
    );
    assert_eq!(
        data::json_to_ipld(&json!({"$bytes": "AQI="})).unwrap(),
        Ipld::Bytes(vec![1, 2])
    );
    // A CBOR map that would read back from JSON as a link is reserved.
    let reserved = Ipld::Map(BTreeMap::from([(
        "$link".to_owned(),
        Ipld::String(cid.into()),
    )]));
    assert!(data::ipld_to_json(&reserved).is_err());
}

#[test]
fn depth_is_limited() {
    let mut deep = json!(1);
    for _ in 0..200 {
        deep = json!([deep]);
    }
    assert!(data::json_to_ipld(&deep).is_err());
    let mut ok = json!(1);
    for _ in 0..100 {
        ok = json!([ok]);
    }
    assert!(data::json_to_ipld(&ok).is_ok());
    // And in CBOR: 200 nested one-element arrays.
    let mut cbor = vec![0x81; 200];
    cbor.push(0x01);
    assert!(data::decode(&cbor).is_err());
}

#[test]
fn records_need_a_type_and_blobs_are_found() {
    assert!(data::validate_record(&data::json_to_ipld(&json!({"a": 1})).unwrap()).is_err());
    let blob_cid = cid::raw(b"image");
    let record = json!({
        "$type": "zone.stratos.feed.post",
        "embed": {"images": [
            {"image": {"$type": "blob", "ref": {"$link": blob_cid.to_string()}, "mimeType": "image/png", "size": 5}},
            {"image": {"$type": "blob", "ref": {"$link": blob_cid.to_string()}, "mimeType": "image/png", "size": 5}}
        ]}
    });
    let value = data::json_to_object(&record).unwrap();
    data::validate_record(&value).unwrap();
    assert_eq!(data::blob_refs(&value), vec![blob_cid]);
    let blob = Blob {
        cid: blob_cid,
        mime_type: "image/png".into(),
        size: 5,
    };
    assert_eq!(Blob::from_ipld(&blob.to_ipld()).unwrap(), blob);
    let negative = json!({"$type": "blob", "ref": {"$link": blob_cid.to_string()}, "mimeType": "a/b", "size": -1});
    assert!(data::json_to_ipld(&negative).is_err());
}

fn ipld_strategy() -> impl Strategy<Value = Ipld> {
    let leaf = prop_oneof![
        Just(Ipld::Null),
        any::<bool>().prop_map(Ipld::Bool),
        any::<i64>().prop_map(|i| Ipld::Integer(i128::from(i))),
        "\\PC{0,20}".prop_map(Ipld::String),
        prop::collection::vec(any::<u8>(), 0..20).prop_map(Ipld::Bytes),
        prop::collection::vec(any::<u8>(), 0..20).prop_map(|b| Ipld::Link(cid::dag_cbor(&b))),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Ipld::List),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..6).prop_map(Ipld::Map),
        ]
    })
}

proptest! {
    #[test]
    fn cbor_round_trip_is_the_identity(value in ipld_strategy()) {
        let bytes = data::encode(&value).unwrap();
        prop_assert_eq!(data::decode(&bytes).unwrap(), value);
    }

    #[test]
    fn json_round_trip_is_the_identity(value in ipld_strategy()) {
        let json = data::ipld_to_json(&value).unwrap();
        let text = serde_json::to_string(&json).unwrap();
        let reparsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(data::json_to_ipld(&reparsed).unwrap(), value);
    }

    #[test]
    fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = data::decode(&bytes);
    }
}
