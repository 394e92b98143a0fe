//! importRepo's whole domain path: CAR → index → commit → checked MST walk → records.
//!
//! Two inputs per run. The raw bytes go to `read_repo_car` as they are (framing, varints, CIDs,
//! hashes). Then the same bytes, read as a structured description, build a CAR whose blocks all
//! hash to their CIDs, so the fuzzer reaches the structural rules instead of stopping at the
//! first hash mismatch: nodes link to earlier nodes by index (reuse, DAGs and chains are all
//! expressible), keys come from a dictionary spread over several layers, values point at
//! records, missing blocks or nodes. Whatever `read_repo_car` accepts must be a real tree:
//! records strictly ascending, each record's bytes hashing to its CID, and the same records as
//! the ordinary MST reader finds.
#![no_main]

use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use stratos_domain::Cid;
use stratos_domain::car::{self, CarLimits};
use stratos_domain::commit::UnsignedCommit;
use stratos_domain::crypto::{KeyAlgorithm, Keypair};
use stratos_domain::import::{ImportLimits, read_repo_car};
use stratos_domain::mst::{Mst, encode_node_unchecked};
use stratos_domain::syntax::{Did, Tid};
use stratos_domain::cid;

#[derive(Debug, Arbitrary)]
struct Plan {
    nodes: Vec<PlanNode>,
    root: u8,
    root_is_commit: bool,
}

#[derive(Debug, Arbitrary)]
struct PlanNode {
    left: Option<u8>,
    entries: Vec<(u16, Value, Option<u8>)>,
}

#[derive(Debug, Arbitrary)]
enum Value {
    Record(u8),
    Missing,
    Node(u8),
}

fn key(n: u16) -> String {
    // TID-shaped and plain keys, both valid MST paths; 3 collections so ranges interleave.
    let coll = ["zone.stratos.feed.post", "zone.stratos.feed.like", "app.x.y"][usize::from(n % 3)];
    format!("{coll}/k{}", n / 3)
}

fn limits() -> ImportLimits {
    ImportLimits {
        car: CarLimits { max_total: 1 << 20, max_block: 64 << 10, max_header: 4096 },
        max_records: 10_000,
        max_expanded_bytes: None,
    }
}

fn check(bytes: &[u8]) {
    let Ok(repo) = read_repo_car(bytes, limits()) else {
        return;
    };
    for pair in repo.records.windows(2) {
        assert!(pair[0].path < pair[1].path, "records out of order");
    }
    for r in &repo.records {
        assert_eq!(cid::dag_cbor(r.bytes), r.cid, "record bytes do not match their CID");
    }
    // The ordinary reader over a fully verified CAR must find the same records.
    if let Ok(parsed) = car::read(bytes, limits().car) {
        let entries = Mst::load(&parsed.blocks, repo.data).entries().expect("a checked tree reads");
        let got: Vec<_> = repo.records.iter().map(|r| (r.path.clone(), r.cid)).collect();
        assert_eq!(got, entries);
    }
}

fn build(plan: &Plan) -> Vec<u8> {
    static KEY: OnceLock<Keypair> = OnceLock::new();
    let signer = KEY.get_or_init(|| Keypair::generate(KeyAlgorithm::P256));
    let mut blocks: Vec<(Cid, Vec<u8>)> = Vec::new();
    let records: Vec<Cid> = (0u8..4)
        .map(|i| {
            let bytes = stratos_domain::data::encode(&ipld_core::ipld::Ipld::Integer(i.into()))
                .unwrap_or_default();
            let c = cid::dag_cbor(&bytes);
            blocks.push((c, bytes));
            c
        })
        .collect();
    let missing = cid::dag_cbor(b"not in the car");
    let mut nodes: Vec<Cid> = Vec::new();
    for n in plan.nodes.iter().take(64) {
        let link = |i: Option<u8>| i.and_then(|i| nodes.get(usize::from(i)).copied());
        let entries: Vec<(String, Cid, Option<Cid>)> = n
            .entries
            .iter()
            .take(16)
            .map(|(k, v, right)| {
                let value = match v {
                    Value::Record(i) => records[usize::from(*i) % records.len()],
                    Value::Missing => missing,
                    Value::Node(i) => nodes.get(usize::from(*i)).copied().unwrap_or(missing),
                };
                (key(*k), value, link(*right))
            })
            .collect();
        let bytes = encode_node_unchecked(link(n.left), &entries);
        let c = cid::dag_cbor(&bytes);
        blocks.push((c, bytes));
        nodes.push(c);
    }
    let data = nodes.get(usize::from(plan.root)).copied().unwrap_or(missing);
    let root = if plan.root_is_commit {
        let did = Did::parse("did:plc:fuzz").expect("valid DID");
        let commit = UnsignedCommit { did, data, rev: Tid::parse("3kaaaaaaaaaa2").expect("TID"), prev: None }
            .sign(signer)
            .and_then(|c| c.encode())
            .unwrap_or_default();
        let c = cid::dag_cbor(&commit);
        blocks.push((c, commit));
        c
    } else {
        data
    };
    let mut out = car::encode_header(&[root]).unwrap_or_default();
    for (c, b) in &blocks {
        car::encode_block(&mut out, c, b);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if let Ok(plan) = Plan::arbitrary(&mut Unstructured::new(data)) {
        check(&build(&plan));
    }
});
