//! MST against the atproto vectors: key heights, common prefixes, key validity, known maps.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use stratos_domain::blocks::BlockMap;
use stratos_domain::mst::{self, Mst};
use stratos_domain::{Cid, cid};

#[test]
fn key_heights() {
    let cases = common::json("atproto-interop/mst/key_heights.json");
    let cases = cases.as_array().unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let key = case["key"].as_str().unwrap();
        let height = case["height"].as_u64().unwrap() as u32;
        assert_eq!(mst::layer(key.as_bytes()), height, "height of {key:?}");
    }
}

#[test]
fn common_prefixes() {
    let cases = common::json("atproto-interop/mst/common_prefix.json");
    for case in cases.as_array().unwrap() {
        let (l, r) = (
            case["left"].as_str().unwrap(),
            case["right"].as_str().unwrap(),
        );
        let len = case["len"].as_u64().unwrap() as usize;
        assert_eq!(
            mst::common_prefix_len(l, r),
            len,
            "prefix of {l:?} and {r:?}"
        );
    }
}

#[test]
fn key_validity() {
    let maps = common::json("atproto-repo/mst-known-maps.json");
    for key in maps["valid_keys"].as_array().unwrap() {
        let key = key.as_str().unwrap();
        assert!(
            mst::validate_key(key).is_ok(),
            "valid key rejected: {key:?}"
        );
    }
    for key in maps["invalid_keys"].as_array().unwrap() {
        let key = key.as_str().unwrap();
        assert!(
            mst::validate_key(key).is_err(),
            "invalid key accepted: {key:?}"
        );
        // And the tree refuses to store it.
        let mut tree = Mst::empty(BlockMap::new());
        assert!(tree.put(key, cid::dag_cbor(b"v")).is_err());
    }
}

#[test]
fn example_keys_have_expected_shape() {
    // Every example key is a valid MST key.
    let keys = common::lines("atproto-interop/mst/example_keys.txt");
    assert!(keys.len() > 100);
    for key in &keys {
        mst::validate_key(key).unwrap();
    }
}

fn check(tree: &mut Mst<BlockMap>, expect: &serde_json::Value, context: &str) {
    let root: Cid = cid::parse(expect["root"].as_str().unwrap()).unwrap();
    assert_eq!(tree.root(), root, "{context}: root");
    let leaves = expect["leaves"].as_u64().unwrap() as usize;
    assert_eq!(tree.leaf_count().unwrap(), leaves, "{context}: leaves");
    if let Some(layer) = expect.get("layer") {
        assert_eq!(
            tree.layer().unwrap(),
            layer.as_u64().unwrap() as u32,
            "{context}: layer"
        );
    }
}

#[test]
fn known_maps() {
    let maps = common::json("atproto-repo/mst-known-maps.json");
    let leaf: Cid = cid::parse(maps["leaf_cid"].as_str().unwrap()).unwrap();
    let cases = maps["cases"].as_array().unwrap();
    assert!(cases.len() >= 7);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let mut tree = Mst::empty(BlockMap::new());
        for (i, step) in case["steps"].as_array().unwrap().iter().enumerate() {
            let step = step.as_array().unwrap();
            let context = format!("{name} step {i}");
            match step[0].as_str().unwrap() {
                "add" => {
                    tree.put(step[1].as_str().unwrap(), leaf).unwrap();
                }
                "delete" => {
                    let removed = tree.remove(step[1].as_str().unwrap()).unwrap();
                    assert_eq!(removed, Some(leaf), "{context}: delete of a present key");
                }
                "check" => check(&mut tree, &step[1], &context),
                other => panic!("{context}: unknown step {other}"),
            }
        }
        check(&mut tree, &case["expect"], name);
    }
}
