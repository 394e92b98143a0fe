//! Walking a tree that came from outside (an imported CAR, a peer): every structural rule is
//! checked before anything is trusted, and the work is bounded by the input's size.
//!
//! [`Mst`](super::Mst)'s own walkers recurse and trust the layer structure, which holds for the
//! trees this crate builds. A hostile tree can break both assumptions: a chain of thousands of
//! entry-less nodes overflows a recursive walk, and a node reused as the left and right subtree
//! of its parent, level after level, makes a naive walk visit 2^depth nodes from a few kilobytes.
//! Here the walk is iterative, and the rules below bound the depth by the root's layer (at most
//! 128 for a SHA-256 key hash), and the work by the number of distinct nodes:
//! - every entry of a node sits on the node's layer, and a child sits exactly one layer below
//!   its parent, so no node can be reached on two different paths at different layers, and
//!   nothing lies below layer 0;
//! - a node without entries is allowed only as the empty tree's root (no subtree either) or as
//!   an inner node that carries a subtree; a root without entries but with a subtree is the
//!   untrimmed form, not canonical;
//! - keys are valid and strictly ascending over the whole in-order walk, so every subtree stays
//!   within the key range its position gives it;
//! - no node is reached twice (a valid tree is a tree, not a DAG).

use std::collections::HashSet;

use ipld_core::cid::Cid;

use super::key::layer;
use super::node::Node;
use crate::blocks::BlockRead;
use crate::{Error, Result};

enum Step {
    Node { cid: Cid, layer: u32 },
    Entry { key: String, value: Cid },
}

/// Visits every `(key, value)` of the untrusted tree rooted at `root` in key order, after
/// checking the structural rules of the module docs. Nodes are read from `store`, which must
/// verify blocks against their CIDs (e.g. [`CarIndex`](crate::car::CarIndex)). Fails with
/// [`Error::MstNode`] on a broken rule, [`Error::MissingBlock`] for a node the store lacks,
/// or whatever `visit` returns.
pub fn walk_untrusted<S: BlockRead>(
    store: &S,
    root: &Cid,
    visit: &mut dyn FnMut(&str, Cid) -> Result<()>,
) -> Result<()> {
    let mut seen: HashSet<Cid> = HashSet::new();
    let root_node = load(store, root, &mut seen)?;
    let Some(first) = root_node.entries.first() else {
        if root_node.left.is_some() {
            return Err(broken(
                root,
                "root without entries but with a subtree (not trimmed)",
            ));
        }
        return Ok(());
    };
    let root_layer = layer(first.key.as_bytes());
    let mut stack: Vec<Step> = Vec::new();
    push_children(root, root_node, root_layer, &mut stack)?;
    let mut last: Option<String> = None;
    while let Some(step) = stack.pop() {
        match step {
            Step::Entry { key, value } => {
                if last.as_deref().is_some_and(|l| key.as_str() <= l) {
                    return Err(Error::MstNode {
                        cid: *root,
                        reason: format!("key {key:?} is out of order in the tree"),
                    });
                }
                visit(&key, value)?;
                last = Some(key);
            }
            Step::Node {
                cid,
                layer: expected,
            } => {
                let node = load(store, &cid, &mut seen)?;
                if node.entries.is_empty() && node.left.is_none() {
                    return Err(broken(&cid, "empty inner node"));
                }
                push_children(&cid, node, expected, &mut stack)?;
            }
        }
    }
    Ok(())
}

fn load<S: BlockRead>(store: &S, cid: &Cid, seen: &mut HashSet<Cid>) -> Result<Node> {
    if !seen.insert(*cid) {
        return Err(broken(cid, "node reached twice (the tree is not a tree)"));
    }
    Node::decode(cid, store.require(cid)?)
}

/// Checks that every entry of `node` sits on `node_layer` and pushes, in reverse, what an
/// in-order walk visits next: left subtree, entry, its right subtree, next entry, ….
fn push_children(cid: &Cid, node: Node, node_layer: u32, stack: &mut Vec<Step>) -> Result<()> {
    if let Some(bad) = node
        .entries
        .iter()
        .find(|e| layer(e.key.as_bytes()) != node_layer)
    {
        return Err(Error::MstNode {
            cid: *cid,
            reason: format!("key {:?} does not belong on layer {node_layer}", bad.key),
        });
    }
    let has_children = node.left.is_some() || node.entries.iter().any(|e| e.right.is_some());
    let child_layer = match node_layer.checked_sub(1) {
        Some(l) => l,
        None if has_children => return Err(broken(cid, "a layer-0 node has a subtree")),
        None => 0,
    };
    for entry in node.entries.into_iter().rev() {
        if let Some(right) = entry.right {
            stack.push(Step::Node {
                cid: right,
                layer: child_layer,
            });
        }
        stack.push(Step::Entry {
            key: entry.key,
            value: entry.value,
        });
    }
    if let Some(left) = node.left {
        stack.push(Step::Node {
            cid: left,
            layer: child_layer,
        });
    }
    Ok(())
}

fn broken(cid: &Cid, reason: &str) -> Error {
    Error::MstNode {
        cid: *cid,
        reason: reason.to_owned(),
    }
}
