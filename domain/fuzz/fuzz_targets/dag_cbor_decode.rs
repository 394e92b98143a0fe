//! Strict DAG-CBOR decoding of arbitrary bytes: records, MST nodes and commits must decode or fail
//! with a typed error, never panic; accepted records must round-trip byte for byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stratos_domain::{cid, commit::SignedCommit, data, mst};

fuzz_target!(|bytes: &[u8]| {
    if let Ok(value) = data::decode(bytes) {
        // Strict decoding accepts only canonical bytes, so re-encoding is the identity.
        let encoded = data::encode(&value).expect("decoded value re-encodes");
        assert_eq!(encoded, bytes);
        if let Ok(json) = data::ipld_to_json(&value) {
            let back = data::json_to_ipld(&json).expect("JSON form converts back");
            assert_eq!(back, value);
        }
    }
    let c = cid::dag_cbor(bytes);
    let _ = mst::node_links(&c, bytes);
    if let Ok(commit) = SignedCommit::decode(bytes) {
        let _ = commit.encode();
    }
});
