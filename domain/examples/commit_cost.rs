//! Instruction cost of one create + commit + sign on a 10k-record repository, for callgrind
//! (wall-clock benches are too noisy on a shared host to see a 10 % change):
//!
//! ```text
//! cargo build --release -p stratos-domain --example commit_cost
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='commit_cost::one_create' \
//!   target/release/examples/commit_cost
//! ```
//! Instructions per create = the total reported / `CREATES` (default 200).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a measuring tool

use std::hint::black_box;

use ipld_core::ipld::Ipld;
use stratos_domain::blocks::BlockMap;
use stratos_domain::crypto::{KeyAlgorithm, Keypair};
use stratos_domain::repo::{self, CommitOutput, RecordWrite, RepoHead};
use stratos_domain::syntax::{Did, Nsid, RecordKey, Tid};
use stratos_domain::tid::TidGenerator;

const COLLECTION: &str = "zone.stratos.feed.post";

fn post(i: u64) -> Vec<u8> {
    let map = std::collections::BTreeMap::from([
        ("$type".to_owned(), Ipld::String(COLLECTION.into())),
        (
            "text".to_owned(),
            Ipld::String(format!("post number {i}: a short private note")),
        ),
        (
            "createdAt".to_owned(),
            Ipld::String("2026-11-25T04:00:00.000Z".into()),
        ),
    ]);
    serde_ipld_dagcbor::to_vec(&Ipld::Map(map)).unwrap()
}

fn create(tids: &mut TidGenerator, i: u64) -> RecordWrite {
    RecordWrite::Create {
        collection: Nsid::parse(COLLECTION).unwrap(),
        rkey: RecordKey::parse(tid(tids).as_str()).unwrap(),
        record: post(i),
    }
}

/// TIDs from a fixed clock, so that every run builds the same trees.
fn tid(tids: &mut TidGenerator) -> Tid {
    tids.next_at(1_764_000_000_000_000)
}

#[inline(never)]
fn one_create(
    store: &BlockMap,
    did: &Did,
    head: &RepoHead,
    write: RecordWrite,
    rev: Tid,
    key: &Keypair,
) -> CommitOutput {
    repo::apply_writes(store, did, Some(head), &[write], rev, key).unwrap()
}

fn main() {
    let creates: u64 = std::env::var("CREATES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let mut tids = TidGenerator::with_clock_id(1);
    let did = Did::parse("did:plc:benchbenchbenchbenchbenc").unwrap();
    let key = Keypair::from_private_bytes(KeyAlgorithm::P256, &[7; 32]).unwrap();
    let mut store = BlockMap::new();
    let out = repo::apply_writes(&store, &did, None, &[], tid(&mut tids), &key).unwrap();
    store.extend(out.new_blocks);
    let mut head = out.head;
    for chunk in 0..100u64 {
        let batch: Vec<_> = (0..100)
            .map(|j| create(&mut tids, chunk * 100 + j))
            .collect();
        let out =
            repo::apply_writes(&store, &did, Some(&head), &batch, tid(&mut tids), &key).unwrap();
        for cid in &out.removed_nodes {
            store.remove(cid);
        }
        store.extend(out.new_blocks);
        head = out.head;
    }
    for i in 0..creates {
        let write = create(&mut tids, 10_000 + i);
        let rev = tid(&mut tids);
        let out = one_create(&store, &did, &head, write, rev, &key);
        for cid in &out.removed_nodes {
            store.remove(cid);
        }
        store.extend(out.new_blocks);
        head = black_box(out.head);
    }
}
