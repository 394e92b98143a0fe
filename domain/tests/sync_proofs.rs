//! Verifiable sync: covering proofs and self-verifying commits (atproto sync v1.1).
//!
//! For random trees and random batches of creates, updates and deletes, a consumer holding only
//! a commit's CAR slice verifies the signature and inverts the commit to exactly the previous
//! data root; without any single block of the slice, or with any block altered, it fails. The
//! same consumer given what a commit stores (`new_blocks`) fails on some batches, which is why
//! the slice exists.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::collections::{BTreeMap, BTreeSet};

use ipld_core::ipld::Ipld;
use proptest::prelude::*;
use stratos_domain::blocks::BlockMap;
use stratos_domain::car::{self, CarLimits, CarWriter};
use stratos_domain::crypto::{KeyAlgorithm, Keypair};
use stratos_domain::mst::{self, Mst, covering_proof};
use stratos_domain::repo::{self, CommitOutput, RecordWrite, RepoHead};
use stratos_domain::sync::{self, CommitEvent};
use stratos_domain::syntax::{Did, Nsid, RecordKey};
use stratos_domain::tid::TidGenerator;
use stratos_domain::{Cid, cid, data};

struct Repo {
    store: BlockMap,
    head: Option<RepoHead>,
    did: Did,
    key: Keypair,
    tids: TidGenerator,
}

impl Repo {
    fn new() -> Self {
        Self {
            store: BlockMap::new(),
            head: None,
            did: Did::parse("did:plc:ewvi7nxzyoun6zhxrhs64oiz").unwrap(),
            key: Keypair::generate(KeyAlgorithm::P256),
            tids: TidGenerator::with_clock_id(7),
        }
    }

    fn commit(&mut self, writes: &[RecordWrite]) -> CommitOutput {
        let rev = self.tids.next_now();
        let out = repo::apply_writes(
            &self.store,
            &self.did,
            self.head.as_ref(),
            writes,
            rev,
            &self.key,
        )
        .unwrap();
        for cid in &out.removed_nodes {
            self.store.remove(cid);
        }
        self.store.extend(out.new_blocks.clone());
        self.head = Some(out.head.clone());
        out
    }

    fn event<'a>(&'a self, out: &'a CommitOutput, blocks: &'a [u8]) -> CommitEvent<'a> {
        CommitEvent {
            did: &self.did,
            commit: out.head.commit,
            rev: &out.head.rev,
            prev_data: out.prev_head.as_ref().map(|h| h.data),
            ops: &out.ops,
            blocks,
        }
    }

    fn verify(&self, out: &CommitOutput, blocks: &[u8]) -> Result<Cid, stratos_domain::Error> {
        sync::verify_commit(self.key.public_key(), &self.event(out, blocks)).map(|v| v.prev_data)
    }
}

fn record(n: u64) -> Vec<u8> {
    data::encode(&Ipld::Map(BTreeMap::from([
        ("$type".to_owned(), Ipld::String("a.b.c".into())),
        ("n".to_owned(), Ipld::Integer(n.into())),
    ])))
    .unwrap()
}

fn split(path: &str) -> (Nsid, RecordKey) {
    let (c, r) = path.split_once('/').unwrap();
    (Nsid::parse(c).unwrap(), RecordKey::parse(r).unwrap())
}

fn create(path: &str, n: u64) -> RecordWrite {
    let (collection, rkey) = split(path);
    RecordWrite::Create {
        collection,
        rkey,
        record: record(n),
    }
}

fn update(path: &str, n: u64) -> RecordWrite {
    let (collection, rkey) = split(path);
    RecordWrite::Update {
        collection,
        rkey,
        record: record(n),
    }
}

fn delete(path: &str) -> RecordWrite {
    let (collection, rkey) = split(path);
    RecordWrite::Delete { collection, rkey }
}

/// Re-encodes a CAR slice with `change` applied to its blocks (root kept).
fn rewrite(slice: &[u8], change: impl FnOnce(&mut Vec<(Cid, Vec<u8>)>)) -> Vec<u8> {
    let car = car::read(slice, CarLimits::default()).unwrap();
    let mut blocks: Vec<(Cid, Vec<u8>)> = car
        .order
        .iter()
        .map(|c| (*c, car.blocks.get(c).unwrap().to_vec()))
        .collect();
    change(&mut blocks);
    let mut w = CarWriter::new(Vec::new(), &car.roots).unwrap();
    for (cid, bytes) in &blocks {
        w.write_block(cid, bytes).unwrap();
    }
    w.finish()
}

/// The CAR a consumer would have from what a commit stores: its new blocks.
fn new_blocks_car(out: &CommitOutput) -> Vec<u8> {
    let mut w = CarWriter::new(Vec::new(), &[out.head.commit]).unwrap();
    for (cid, bytes) in out.new_blocks.iter() {
        w.write_block(cid, bytes).unwrap();
    }
    w.finish()
}

/// Keys over several collections; their layers vary (about one in four is above layer 0), so
/// batches merge and split nodes across layers.
fn key(i: u32) -> String {
    let collection = ["app.bsky.feed.post", "zone.stratos.feed.post", "a.b.c"][(i % 3) as usize];
    format!("{collection}/k{i:05}")
}

#[derive(Debug, Clone)]
enum Op {
    Create(u32),
    Update(usize),
    Delete(usize),
}

fn case() -> impl Strategy<Value = (BTreeSet<u32>, Vec<Op>)> {
    (
        prop::collection::btree_set(0u32..5_000, 0..160),
        prop::collection::vec(
            prop_oneof![
                (5_000u32..10_000).prop_map(Op::Create),
                any::<usize>().prop_map(Op::Update),
                any::<usize>().prop_map(Op::Delete),
            ],
            1..14,
        ),
    )
}

/// The repository of `initial` keys, and the batch `ops` becomes on it (each path once).
fn setup(initial: &BTreeSet<u32>, ops: &[Op]) -> Option<(Repo, Vec<RecordWrite>)> {
    let mut repo = Repo::new();
    let keys: Vec<String> = initial.iter().map(|&i| key(i)).collect();
    let writes: Vec<_> = keys.iter().map(|k| create(k, 0)).collect();
    repo.commit(&writes);
    let mut touched = BTreeSet::new();
    let mut batch = Vec::new();
    for op in ops {
        let (path, write) = match op {
            Op::Create(i) => (key(*i), None),
            Op::Update(i) if !keys.is_empty() => (keys[i % keys.len()].clone(), Some(true)),
            Op::Delete(i) if !keys.is_empty() => (keys[i % keys.len()].clone(), Some(false)),
            _ => continue,
        };
        if !touched.insert(path.clone()) {
            continue;
        }
        batch.push(match write {
            None => create(&path, 1),
            Some(true) => update(&path, 2),
            Some(false) => delete(&path),
        });
    }
    (!batch.is_empty()).then_some((repo, batch))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]

    /// The slice inverts the commit to exactly the previous root, and every block of it is
    /// needed: without any one, or with any one altered, verification fails.
    #[test]
    fn the_slice_inverts_the_commit_and_every_block_is_needed((initial, ops) in case()) {
        let Some((mut repo, batch)) = setup(&initial, &ops) else { return Ok(()) };
        let before = repo.head.clone().unwrap();
        let out = repo.commit(&batch);
        prop_assert_eq!(repo.verify(&out, out.relevant_car.as_deref().unwrap()).unwrap(), before.data);

        let slice = car::read(out.relevant_car.as_deref().unwrap(), CarLimits::default()).unwrap();
        for (i, cid) in slice.order.iter().enumerate() {
            let without = rewrite(out.relevant_car.as_deref().unwrap(), |b| { b.remove(i); });
            prop_assert!(repo.verify(&out, &without).is_err(), "verified without block {}", cid);
            let altered = rewrite(out.relevant_car.as_deref().unwrap(), |b| b[i].1.push(0));
            prop_assert!(repo.verify(&out, &altered).is_err(), "verified with block {} altered", cid);
        }
    }

    /// A covering proof lets a consumer take a present key out, or put an absent one in, and
    /// get the same root as with the whole tree.
    #[test]
    fn a_covering_proof_suffices_for_removal_and_insertion(
        initial in prop::collection::btree_set(0u32..5_000, 1..200),
        absent in 5_000u32..10_000,
        pick in any::<usize>(),
    ) {
        let mut tree = Mst::empty(BlockMap::new());
        for &i in &initial {
            tree.put(&key(i), cid::dag_cbor(&i.to_be_bytes())).unwrap();
        }
        let root = tree.root();
        let all = tree.into_fresh_blocks();
        let present = key(*initial.iter().nth(pick % initial.len()).unwrap());
        for (path, insert) in [(present, false), (key(absent), true)] {
            let proof = covering_proof(&all, root, &path).unwrap();
            let mut full = Mst::load(&all, root);
            let mut partial = Mst::load(&proof, root);
            if insert {
                let value = cid::dag_cbor(b"new");
                prop_assert_eq!(partial.put(&path, value).unwrap(), full.put(&path, value).unwrap());
            } else {
                prop_assert_eq!(partial.remove(&path).unwrap(), full.remove(&path).unwrap());
            }
            prop_assert_eq!(partial.root(), full.root());
            // Exact: without any one block of the proof the operation cannot be done.
            for (cid, _) in proof.iter() {
                let mut less = proof.clone();
                less.remove(cid);
                let mut partial = Mst::load(&less, root);
                let done = if insert {
                    partial.put(&path, cid::dag_cbor(b"new")).map(|_| ())
                } else {
                    partial.remove(&path).map(|_| ())
                };
                prop_assert!(done.is_err(), "{} is not needed for {}", cid, path);
            }
            // And it still proves the key's value, as a search-path proof does.
            prop_assert_eq!(
                mst::verify_proof(&root, &path, &proof).unwrap(),
                Mst::load(&all, root).get(&path).unwrap()
            );
        }
    }
}

/// What a commit stores is not enough to undo it. The smallest case: a tree whose root holds one
/// key above layer 0 and a leaf below it; deleting that key makes the (unchanged) leaf the root,
/// so the commit stores no tree node at all, and putting the key back must read the leaf.
#[test]
fn new_blocks_alone_cannot_invert_some_commits() {
    let top = (5_000..)
        .map(key)
        .find(|k| mst::layer(k.as_bytes()) == 1)
        .unwrap();
    let below: Vec<String> = (0..)
        .map(key)
        .filter(|k| mst::layer(k.as_bytes()) == 0 && k.as_str() < top.as_str())
        .take(3)
        .collect();
    let mut repo = Repo::new();
    let mut writes: Vec<_> = below.iter().map(|k| create(k, 0)).collect();
    writes.push(create(&top, 0));
    repo.commit(&writes);
    let out = repo.commit(&[delete(&top)]);
    assert!(out.new_blocks.iter().all(|(c, _)| *c == out.head.commit));
    assert!(
        repo.verify(&out, out.relevant_car.as_deref().unwrap())
            .is_ok()
    );
    assert!(matches!(
        repo.verify(&out, &new_blocks_car(&out)),
        Err(stratos_domain::Error::MissingBlock(_))
    ));
}

/// A wrong key, another account's DID, another revision, a wrong previous root or a changed op
/// are each refused.
#[test]
fn verification_refuses_what_does_not_match() {
    let mut repo = Repo::new();
    repo.commit(&(0..40).map(|i| create(&key(i), 0)).collect::<Vec<_>>());
    let out = repo.commit(&[create(&key(9_001), 1), delete(&key(3)), update(&key(5), 2)]);
    let slice = out.relevant_car.as_deref().unwrap();
    let good = repo.event(&out, slice);
    assert!(sync::verify_commit(repo.key.public_key(), &good).is_ok());

    let other = Keypair::generate(KeyAlgorithm::P256);
    assert!(sync::verify_commit(other.public_key(), &good).is_err());

    let did = Did::parse("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa").unwrap();
    let e = CommitEvent { did: &did, ..good };
    assert!(sync::verify_commit(repo.key.public_key(), &e).is_err());

    let rev = TidGenerator::with_clock_id(1).next_now();
    let e = CommitEvent { rev: &rev, ..good };
    assert!(sync::verify_commit(repo.key.public_key(), &e).is_err());

    let e = CommitEvent {
        prev_data: Some(out.head.data),
        ..good
    };
    assert!(sync::verify_commit(repo.key.public_key(), &e).is_err());

    for i in 0..out.ops.len() {
        let mut ops = out.ops.clone();
        ops[i].prev = Some(cid::dag_cbor(b"forged"));
        if ops[i].action == stratos_domain::repo::Action::Create {
            ops[i].prev = None;
            ops[i].cid = Some(cid::dag_cbor(b"forged"));
        }
        let e = CommitEvent { ops: &ops, ..good };
        assert!(
            sync::verify_commit(repo.key.public_key(), &e).is_err(),
            "op {i} changed"
        );
        let dropped: Vec<_> = out
            .ops
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, o)| o.clone())
            .collect();
        let e = CommitEvent {
            ops: &dropped,
            ..good
        };
        assert!(
            sync::verify_commit(repo.key.public_key(), &e).is_err(),
            "op {i} dropped"
        );
    }
}

/// The first commit of a repository inverts to the empty tree.
#[test]
fn the_first_commit_inverts_to_the_empty_tree() {
    let mut repo = Repo::new();
    let out = repo.commit(&(0..30).map(|i| create(&key(i), 0)).collect::<Vec<_>>());
    assert_eq!(
        repo.verify(&out, out.relevant_car.as_deref().unwrap())
            .unwrap(),
        mst::empty_root()
    );
}

/// The atproto known MST layouts: in each case's final tree, the covering proof of every key
/// (and of the keys its steps deleted) takes that key out or puts it back exactly as the whole
/// tree does.
#[test]
fn covering_proofs_on_the_known_layouts() {
    let maps = common::json("atproto-repo/mst-known-maps.json");
    let leaf: Cid = cid::parse(maps["leaf_cid"].as_str().unwrap()).unwrap();
    let mut checked = 0;
    for case in maps["cases"].as_array().unwrap() {
        let mut tree = Mst::empty(BlockMap::new());
        let mut keys = BTreeSet::new();
        for step in case["steps"].as_array().unwrap() {
            let step = step.as_array().unwrap();
            match step[0].as_str().unwrap() {
                "add" => {
                    let k = step[1].as_str().unwrap();
                    tree.put(k, leaf).unwrap();
                    keys.insert(k.to_owned());
                }
                "delete" => {
                    tree.remove(step[1].as_str().unwrap()).unwrap();
                }
                _ => {}
            }
        }
        let root = tree.root();
        let all = tree.into_fresh_blocks();
        for k in &keys {
            let proof = covering_proof(&all, root, k).unwrap();
            let mut full = Mst::load(&all, root);
            let mut partial = Mst::load(&proof, root);
            if full.get(k).unwrap().is_some() {
                assert_eq!(partial.remove(k).unwrap(), full.remove(k).unwrap());
            } else {
                assert_eq!(partial.put(k, leaf).unwrap(), full.put(k, leaf).unwrap());
            }
            assert_eq!(partial.root(), full.root(), "{}: {k}", case["name"]);
            checked += 1;
        }
    }
    assert!(checked > 20);
}

/// A commit of more ops than a firehose event may prove carries no slice (consumers re-read the
/// repository); one at the limit does, and it verifies.
#[test]
fn commits_beyond_the_op_limit_carry_no_slice() {
    let limit = sync::MAX_PROVEN_OPS as u32;
    let mut repo = Repo::new();
    let out = repo.commit(&(0..limit).map(|i| create(&key(i), 0)).collect::<Vec<_>>());
    let slice = out.relevant_car.as_deref().expect("a slice at the limit");
    assert_eq!(repo.verify(&out, slice).unwrap(), mst::empty_root());
    let out = repo.commit(
        &(limit..2 * limit + 1)
            .map(|i| create(&key(i), 0))
            .collect::<Vec<_>>(),
    );
    assert!(out.relevant_car.is_none());
}

/// A slice whose tree is a chain far deeper than any valid tree (signed by the account's key,
/// as a faulty or hostile service could) is refused, not walked or recursed into.
#[test]
fn a_slice_with_an_impossibly_deep_tree_is_refused() {
    use stratos_domain::commit::UnsignedCommit;
    let repo = Repo::new();
    let path = key(1);
    let record = record(1);
    let record_cid = cid::dag_cbor(&record);
    let mut blocks = vec![(record_cid, record)];
    let leaf = mst::encode_node_unchecked(None, &[(path.clone(), record_cid, None)]);
    let mut below = cid::dag_cbor(&leaf);
    blocks.push((below, leaf));
    for _ in 0..5_000 {
        let wrapper = mst::encode_node_unchecked(Some(below), &[]);
        below = cid::dag_cbor(&wrapper);
        blocks.push((below, wrapper));
    }
    let rev = TidGenerator::with_clock_id(3).next_now();
    let commit = UnsignedCommit {
        did: repo.did.clone(),
        data: below,
        rev: rev.clone(),
        prev: None,
    }
    .sign(&repo.key)
    .unwrap()
    .encode()
    .unwrap();
    let commit_cid = cid::dag_cbor(&commit);
    let mut w = CarWriter::new(Vec::new(), &[commit_cid]).unwrap();
    w.write_block(&commit_cid, &commit).unwrap();
    for (c, b) in &blocks {
        w.write_block(c, b).unwrap();
    }
    let car = w.finish();
    let ops = [stratos_domain::repo::RecordOp {
        action: stratos_domain::repo::Action::Create,
        path,
        cid: Some(record_cid),
        prev: None,
    }];
    let event = CommitEvent {
        did: &repo.did,
        commit: commit_cid,
        rev: &rev,
        prev_data: None,
        ops: &ops,
        blocks: &car,
    };
    let err = sync::verify_commit(repo.key.public_key(), &event).unwrap_err();
    assert!(err.to_string().contains("deeper"), "{err}");
}
