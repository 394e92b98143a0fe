//! Inclusion and exclusion proofs: the nodes on the search path of one key.
//!
//! Walking from the root towards a key visits exactly the nodes whose contents decide whether the
//! key is present; given those blocks (hash-checked) and the root CID, anyone can recompute the
//! answer. A proof for an absent key is the same path, ending at the gap where the key would be.

use ipld_core::cid::Cid;

use super::{Mst, layer, node::Node};
use crate::blocks::{BlockMap, BlockRead};
use crate::{Error, Result};

/// The blocks proving the value (or absence) of `key` in the tree rooted at `root`.
pub fn prove<S: BlockRead>(store: S, root: Cid, key: &str) -> Result<BlockMap> {
    let mut proof = BlockMap::new();
    let mut cursor = Some(root);
    while let Some(cid) = cursor {
        let bytes = store.require(&cid)?;
        let node = Node::decode(&cid, bytes)?;
        proof.insert(cid, bytes.to_vec());
        let (idx, found) = node.search(key);
        cursor = if found { None } else { node.gap(idx) };
    }
    Ok(proof)
}

/// Checks a proof: returns the value of `key` under `root` (`None` when the proof shows it is
/// absent). Fails when a needed block is missing or does not match its CID, or when the path
/// breaks the MST layer rules.
pub fn verify_proof(root: &Cid, key: &str, proof: &BlockMap) -> Result<Option<Cid>> {
    for (cid, bytes) in proof.iter() {
        crate::cid::verify(cid, bytes)?;
    }
    let key_layer = layer(key.as_bytes());
    let mut mst = Mst::load(proof, *root);
    let mut node_layer = mst.layer_of(root)?;
    let mut cursor = Some(*root);
    while let Some(cid) = cursor {
        let node = mst.node(&cid)?;
        if let Some(first) = node.entries.first()
            && layer(first.key.as_bytes()) != node_layer
        {
            return Err(Error::MstNode {
                cid,
                reason: "node on the wrong layer".into(),
            });
        }
        let (idx, found) = node.search(key);
        if found {
            return Ok(Some(node.entries[idx].value));
        }
        // A key lives on its own layer: below that layer it cannot appear.
        if node_layer <= key_layer {
            return Ok(None);
        }
        cursor = node.gap(idx);
        node_layer -= 1;
    }
    Ok(None)
}

/// The covering proof of `key` in the tree rooted at `root`: the blocks that prove the key's
/// presence or absence **and** let a consumer holding nothing else remove it (when present) or
/// insert it (when absent) and compute the resulting root. That is atproto sync v1.1's
/// "inductive" proof: the search path, plus, for a present key, the nodes on both sides of the
/// seam its removal closes (and the chain a root that loses its last entry is trimmed to).
///
/// ```
/// use stratos_domain::blocks::BlockMap;
/// use stratos_domain::mst::{Mst, covering_proof};
/// use stratos_domain::cid;
///
/// let mut tree = Mst::empty(BlockMap::new());
/// for i in 0..50u32 {
///     tree.put(&format!("app.bsky.feed.post/3k{i:011}"), cid::dag_cbor(&i.to_be_bytes()))?;
/// }
/// let (root, all) = (tree.root(), tree.into_fresh_blocks());
/// let key = "app.bsky.feed.post/3k00000000007";
/// let proof = covering_proof(&all, root, key)?;
/// // The proof alone is enough to take the key out again.
/// let mut partial = Mst::load(&proof, root);
/// assert!(partial.remove(key)?.is_some());
/// # Ok::<(), stratos_domain::Error>(())
/// ```
pub fn covering_proof<S: BlockRead>(store: S, root: Cid, key: &str) -> Result<BlockMap> {
    let mut mst = Mst::load(store, root);
    let mut cids = std::collections::BTreeSet::new();
    mst.cover(key, &mut cids)?;
    let mut proof = BlockMap::new();
    for cid in cids {
        proof.insert(cid, mst.store.require(&cid)?.to_vec());
    }
    Ok(proof)
}

impl<S: BlockRead> Mst<S> {
    /// Adds to `out` the CIDs of the nodes [`Mst::remove`] (key present) or [`Mst::put`] (key
    /// absent) reads on the current tree: exactly those, so that a consumer holding only them
    /// can run the operation, and no node it would not read. It mirrors those two walks without
    /// building nodes (building means hashing, and this runs for every op of every commit); the
    /// property tests hold it equal to them in both directions.
    pub(crate) fn cover(&mut self, key: &str, out: &mut impl Extend<Cid>) -> Result<()> {
        let root = self.root;
        // `put` first learns the root's layer, which for a root without entries means its
        // left chain (only a degenerate tree has such a root).
        self.cover_left_chain(Some(root), out)?;
        let mut cursor = Some(root);
        let mut at_root = true;
        let mut depth = Depth::default();
        while let Some(cid) = cursor {
            depth.step(&cid)?;
            let node = self.node(&cid)?;
            out.extend([cid]);
            let (idx, found) = node.search(key);
            if !found {
                // Absent: `put` splits (or descends) along the search path to the bottom.
                cursor = node.gap(idx);
                at_root = false;
                continue;
            }
            // Present: `remove` merges the subtrees on both sides of the entry, level by level
            // down the seam, reading both nodes of every level where both exist. A root that
            // loses its only entry is then trimmed to the first merged node with entries; a
            // subtree passed through unmerged is read by that trim.
            let mut trimming = at_root && node.entries.len() == 1;
            let (mut left, mut right) = (node.gap(idx), node.entries[idx].right);
            loop {
                match (left, right) {
                    (Some(a), Some(b)) => {
                        depth.step(&a)?;
                        let (na, nb) = (self.node(&a)?, self.node(&b)?);
                        out.extend([a, b]);
                        if !na.entries.is_empty() || !nb.entries.is_empty() {
                            trimming = false;
                        }
                        left = na.gap(na.entries.len());
                        right = nb.left;
                    }
                    (Some(only), None) | (None, Some(only)) => {
                        if trimming {
                            self.cover_left_chain(Some(only), out)?;
                        }
                        return Ok(());
                    }
                    (None, None) => return Ok(()),
                }
            }
        }
        Ok(())
    }

    /// Reads `cid` and, while the node read has no entries, its left child.
    fn cover_left_chain(
        &mut self,
        mut cursor: Option<Cid>,
        out: &mut impl Extend<Cid>,
    ) -> Result<()> {
        let mut depth = Depth::default();
        while let Some(cid) = cursor {
            depth.step(&cid)?;
            let node = self.node(&cid)?;
            out.extend([cid]);
            if !node.entries.is_empty() {
                break;
            }
            cursor = node.left;
        }
        Ok(())
    }
}

/// Levels any valid tree can have: a key's layer counts leading zero bit pairs of its SHA-256
/// (at most 128), and each level of a walk goes one layer down.
const MAX_DEPTH: usize = 130;

/// Counts the levels one walk descends, so that a tree from outside (a commit event's slice)
/// built as a long chain cannot make the walk, or the recursive operations after it, go
/// arbitrarily deep.
#[derive(Default)]
struct Depth(usize);

impl Depth {
    fn step(&mut self, cid: &Cid) -> Result<()> {
        self.0 += 1;
        if self.0 > MAX_DEPTH {
            return Err(Error::MstNode {
                cid: *cid,
                reason: format!("deeper than the {MAX_DEPTH} levels any valid tree has"),
            });
        }
        Ok(())
    }
}
