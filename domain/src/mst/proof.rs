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
