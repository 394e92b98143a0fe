//! CAR v1 against the atproto fixture, plus property tests and malformed-input cases.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use base64::Engine;
use proptest::prelude::*;
use stratos_domain::car::{self, CarLimits};
use stratos_domain::{Cid, Error, cid};

fn b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(s.trim_end_matches('='))
        .unwrap_or_else(|e| panic!("fixture base64: {e}"))
}

#[test]
fn car_file_fixtures_round_trip_byte_for_byte() {
    let cases = common::json("atproto-repo/car-file-fixtures.json");
    let cases = cases.as_array().unwrap();
    assert!(!cases.is_empty());
    for (i, case) in cases.iter().enumerate() {
        let root = cid::parse(case["root"].as_str().unwrap()).unwrap();
        let expected = b64(case["car"].as_str().unwrap());
        let mut written = car::encode_header(&[root]).unwrap();
        let mut blocks = Vec::new();
        for block in case["blocks"].as_array().unwrap() {
            let cid = cid::parse(block["cid"].as_str().unwrap()).unwrap();
            let bytes = b64(block["bytes"].as_str().unwrap());
            car::encode_block(&mut written, &cid, &bytes);
            blocks.push((cid, bytes));
        }
        assert_eq!(
            written, expected,
            "case {i}: written CAR differs from the fixture"
        );

        let parsed = car::read(&expected, CarLimits::default()).unwrap();
        assert_eq!(parsed.roots, vec![root], "case {i}: roots");
        assert_eq!(
            parsed.order,
            blocks.iter().map(|(c, _)| *c).collect::<Vec<_>>()
        );
        for (cid, bytes) in &blocks {
            assert_eq!(
                parsed.blocks.get(cid),
                Some(bytes.as_slice()),
                "case {i}: block {cid}"
            );
        }
        // Streaming writer gives the same bytes.
        let mut w = car::CarWriter::new(Vec::new(), &[root]).unwrap();
        for (cid, bytes) in &blocks {
            w.write_block(cid, bytes).unwrap();
        }
        assert_eq!(w.finish(), expected, "case {i}: streaming writer");
    }
}

fn sample_car() -> (Vec<u8>, Cid) {
    let a = b"\xa1\x61a\x01".to_vec();
    let b = b"\xa1\x61b\x02".to_vec();
    let (ca, cb) = (cid::dag_cbor(&a), cid::dag_cbor(&b));
    let mut out = car::encode_header(&[ca]).unwrap();
    car::encode_block(&mut out, &ca, &a);
    car::encode_block(&mut out, &cb, &b);
    (out, cb)
}

#[test]
fn every_truncation_is_a_typed_error() {
    let (car_bytes, _) = sample_car();
    for cut in 0..car_bytes.len() {
        let prefix = &car_bytes[..cut];
        match car::read(prefix, CarLimits::default()) {
            Err(_) => {}
            Ok(parsed) => {
                // Only cuts exactly at a section boundary parse, with fewer blocks.
                assert!(
                    parsed.blocks.len() < 2,
                    "cut {cut} parsed as a complete CAR"
                );
            }
        }
    }
}

#[test]
fn tampered_block_is_a_hash_mismatch() {
    let (mut car_bytes, cb) = sample_car();
    let last = car_bytes.len() - 1;
    car_bytes[last] ^= 0x01;
    assert_eq!(
        car::read(&car_bytes, CarLimits::default()).unwrap_err(),
        Error::CarHashMismatch(cb)
    );
}

#[test]
fn limits_are_enforced() {
    let (car_bytes, _) = sample_car();
    let small_total = CarLimits {
        max_total: 10,
        ..CarLimits::default()
    };
    assert!(matches!(
        car::read(&car_bytes, small_total),
        Err(Error::CarTooLarge { limit: 10 })
    ));
    let small_block = CarLimits {
        max_block: 3,
        ..CarLimits::default()
    };
    assert!(matches!(
        car::read(&car_bytes, small_block),
        Err(Error::CarBlockTooLarge { .. })
    ));
    let small_header = CarLimits {
        max_header: 4,
        ..CarLimits::default()
    };
    assert!(matches!(
        car::read(&car_bytes, small_header),
        Err(Error::CarHeader(_))
    ));
}

#[test]
fn malformed_headers_and_cids_are_rejected() {
    // Header claiming version 2.
    let header = serde_ipld_dagcbor::to_vec(&ipld_core::ipld::Ipld::Map(
        [
            ("roots".to_owned(), ipld_core::ipld::Ipld::List(vec![])),
            ("version".to_owned(), ipld_core::ipld::Ipld::Integer(2)),
        ]
        .into(),
    ))
    .unwrap();
    let mut bytes = vec![header.len() as u8];
    bytes.extend_from_slice(&header);
    assert!(matches!(
        car::read(&bytes, CarLimits::default()),
        Err(Error::CarHeader(_))
    ));
    // Not CBOR at all.
    assert!(matches!(
        car::read(b"\x03abc", CarLimits::default()),
        Err(Error::CarHeader(_))
    ));
    // Empty input.
    assert!(car::read(b"", CarLimits::default()).is_err());
    // A CIDv0 section.
    let (mut good, _) = sample_car();
    let header_len = good[0] as usize + 1;
    good.truncate(header_len);
    good.extend_from_slice(&[34, 0x12, 0x20]);
    good.extend_from_slice(&[0u8; 32]);
    assert!(matches!(
        car::read(&good, CarLimits::default()),
        Err(Error::CarSection(_))
    ));
}

proptest! {
    #[test]
    fn write_then_read_is_the_identity(
        blocks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..20),
        raw in any::<bool>(),
    ) {
        let blocks: Vec<(Cid, Vec<u8>)> = blocks
            .into_iter()
            .map(|b| (if raw { cid::raw(&b) } else { cid::dag_cbor(&b) }, b))
            .collect();
        let roots: Vec<Cid> = blocks.iter().take(2).map(|(c, _)| *c).collect();
        let mut w = car::CarWriter::new(Vec::new(), &roots).unwrap();
        for (c, b) in &blocks {
            w.write_block(c, b).unwrap();
        }
        let bytes = w.finish();
        let parsed = car::read(&bytes, CarLimits::default()).unwrap();
        prop_assert_eq!(parsed.roots, roots);
        for (c, b) in &blocks {
            prop_assert_eq!(parsed.blocks.get(c), Some(b.as_slice()));
        }
        prop_assert_eq!(parsed.blocks.len(), blocks.iter().map(|(c, _)| *c).collect::<std::collections::HashSet<_>>().len());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = car::read(&bytes, CarLimits::default());
    }
}
