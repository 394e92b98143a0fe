//! Property tests of the MST: canonical shape, reversibility, diff correctness, proofs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::collections::{BTreeMap, BTreeSet, HashSet};

use proptest::prelude::*;
use stratos_domain::blocks::{BlockMap, BlockRead, Overlay};
use stratos_domain::mst::{self, Mst};
use stratos_domain::{Cid, cid};

fn key_strategy() -> impl Strategy<Value = String> {
    "(app\\.bsky\\.feed\\.post|zone\\.stratos\\.feed\\.post|a\\.b)/[a-z2-7]{1,13}"
}

fn value(i: u64) -> Cid {
    cid::dag_cbor(&i.to_be_bytes())
}

/// Builds a tree from scratch and returns (root, all reachable blocks).
fn build(entries: &BTreeMap<String, Cid>, order: &[usize]) -> (Cid, BlockMap) {
    let keys: Vec<_> = entries.iter().collect();
    let mut tree = Mst::empty(BlockMap::new());
    for &i in order {
        let (k, v) = keys[i];
        tree.put(k, *v).unwrap();
    }
    let root = tree.root();
    let reachable = reachable(&mut tree);
    (root, reachable)
}

fn reachable<S: BlockRead>(tree: &mut Mst<S>) -> BlockMap {
    let cids = tree.node_cids().unwrap();
    let blocks = tree.blocks();
    cids.iter()
        .map(|c| (*c, blocks.require(c).unwrap().to_vec()))
        .collect()
}

fn entries_strategy() -> impl Strategy<Value = BTreeMap<String, Cid>> {
    prop::collection::btree_map(key_strategy(), 0u64..4, 0..120)
        .prop_map(|m| m.into_iter().map(|(k, v)| (k, value(v))).collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn root_is_independent_of_insertion_order(
        entries in entries_strategy(),
        seed in any::<u64>(),
    ) {
        let n = entries.len();
        let forward: Vec<usize> = (0..n).collect();
        let mut shuffled = forward.clone();
        // Deterministic Fisher-Yates driven by the seed.
        let mut state = seed | 1;
        for i in (1..n).rev() {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            shuffled.swap(i, (state % (i as u64 + 1)) as usize);
        }
        let (a, blocks_a) = build(&entries, &forward);
        let (b, blocks_b) = build(&entries, &shuffled);
        prop_assert_eq!(a, b);
        prop_assert_eq!(&blocks_a, &blocks_b);
        let mut tree = Mst::load(blocks_a, a);
        let listed: BTreeMap<String, Cid> = tree.entries().unwrap().into_iter().collect();
        prop_assert_eq!(listed, entries);
    }

    #[test]
    fn insert_then_delete_restores_the_root(
        entries in entries_strategy(),
        extra in key_strategy(),
    ) {
        prop_assume!(!entries.contains_key(&extra));
        let order: Vec<usize> = (0..entries.len()).collect();
        let (root, blocks) = build(&entries, &order);
        let mut tree = Mst::load(blocks, root);
        prop_assert_eq!(tree.put(&extra, value(9)).unwrap(), None);
        prop_assert_ne!(tree.root(), root);
        prop_assert_eq!(tree.get(&extra).unwrap(), Some(value(9)));
        prop_assert_eq!(tree.remove(&extra).unwrap(), Some(value(9)));
        prop_assert_eq!(tree.root(), root);
        // Removing an absent key is a no-op.
        prop_assert_eq!(tree.remove(&extra).unwrap(), None);
        prop_assert_eq!(tree.root(), root);
    }

    #[test]
    fn diff_applied_to_old_yields_new(
        before in entries_strategy(),
        ops in prop::collection::vec((key_strategy(), prop::option::of(0u64..4)), 0..40),
    ) {
        let order: Vec<usize> = (0..before.len()).collect();
        let (old_root, old_blocks) = build(&before, &order);
        let mut after = before.clone();
        let mut tree = Mst::load(&old_blocks, old_root);
        for (key, val) in &ops {
            match val {
                Some(v) => { tree.put(key, value(*v)).unwrap(); after.insert(key.clone(), value(*v)); }
                None => { tree.remove(key).unwrap(); after.remove(key); }
            }
        }
        let new_root = tree.root();
        let fresh = tree.into_fresh_blocks();
        let store = Overlay { upper: &fresh, lower: &old_blocks };
        let d = mst::diff(&store, Some(old_root), new_root).unwrap();

        // Record changes turn `before` into `after`.
        let mut applied = before.clone();
        for change in &d.changes {
            prop_assert_eq!(applied.get(&change.key).copied(), change.old);
            match change.new {
                Some(v) => { applied.insert(change.key.clone(), v); }
                None => { applied.remove(&change.key); }
            }
        }
        prop_assert_eq!(&applied, &after);
        let keys: Vec<_> = d.changes.iter().map(|c| c.key.clone()).collect();
        let unique: BTreeSet<_> = keys.iter().cloned().collect();
        prop_assert_eq!(keys.len(), unique.len());

        // Node sets: old − removed + new == reachable(new), exactly.
        let old_set: HashSet<Cid> = old_blocks.iter().map(|(c, _)| *c).collect();
        let mut new_tree = Mst::load(&store, new_root);
        let new_set: HashSet<Cid> = new_tree.node_cids().unwrap().into_iter().collect();
        let removed: HashSet<Cid> = d.removed_nodes.iter().copied().collect();
        let added: HashSet<Cid> = d.new_nodes.iter().copied().collect();
        let computed: HashSet<Cid> = old_set.difference(&removed).copied().chain(added.iter().copied()).collect();
        prop_assert_eq!(&computed, &new_set);
        prop_assert!(removed.is_subset(&old_set));
        prop_assert!(added.is_disjoint(&old_set));

        // And a fresh build of `after` has the same root (canonical shape).
        let order: Vec<usize> = (0..after.len()).collect();
        let (rebuilt, _) = build(&after, &order);
        prop_assert_eq!(rebuilt, new_root);
    }

    #[test]
    fn proofs_verify_for_present_and_absent_keys(
        entries in entries_strategy(),
        probe in key_strategy(),
    ) {
        let order: Vec<usize> = (0..entries.len()).collect();
        let (root, blocks) = build(&entries, &order);
        for key in entries.keys().take(10).chain(std::iter::once(&probe)) {
            let proof = mst::prove(&blocks, root, key).unwrap();
            let got = mst::verify_proof(&root, key, &proof).unwrap();
            prop_assert_eq!(got, entries.get(key).copied());
            // Altering any block of the proof breaks it.
            for (cid, bytes) in proof.iter() {
                let mut tampered = proof.clone();
                let mut bad = bytes.to_vec();
                let last = bad.len() - 1;
                bad[last] ^= 1;
                tampered.insert(*cid, bad);
                prop_assert!(mst::verify_proof(&root, key, &tampered).is_err());
            }
            // Dropping the root block breaks it too.
            let mut partial = proof.clone();
            partial.remove(&root);
            prop_assert!(mst::verify_proof(&root, key, &partial).is_err());
        }
    }

    #[test]
    fn range_listing_matches_a_btreemap(
        entries in entries_strategy(),
        cursor in prop::option::of("[a-z2-7]{1,4}"),
        limit in 1usize..20,
    ) {
        let order: Vec<usize> = (0..entries.len()).collect();
        let (root, blocks) = build(&entries, &order);
        let mut tree = Mst::load(&blocks, root);
        for collection in ["a.b", "app.bsky.feed.post", "zone.stratos.feed.post"] {
            let got = tree.list_collection(collection, cursor.as_deref(), limit).unwrap();
            let expected: Vec<(String, Cid)> = entries
                .iter()
                .filter(|(k, _)| {
                    let (c, r) = k.split_once('/').unwrap();
                    c == collection && cursor.as_deref().is_none_or(|cur| r > cur)
                })
                .take(limit)
                .map(|(k, v)| (k.clone(), *v))
                .collect();
            prop_assert_eq!(got, expected);
        }
    }
}

#[test]
fn diff_from_nothing_lists_every_node_and_record() {
    let mut tree = Mst::empty(BlockMap::new());
    for i in 0..200u64 {
        tree.put(&format!("a.b/k{i:04}"), value(i)).unwrap();
    }
    let root = tree.root();
    let all = reachable(&mut tree);
    let d = mst::diff(&all, None, root).unwrap();
    assert_eq!(d.changes.len(), 200);
    assert!(d.changes.iter().all(|c| c.old.is_none()));
    assert_eq!(d.new_nodes.len(), all.len());
    assert!(d.removed_nodes.is_empty());
}

#[test]
fn empty_tree_root() {
    assert_eq!(
        mst::empty_root().to_string(),
        "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"
    );
}
