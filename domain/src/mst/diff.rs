//! Difference between two trees: record changes plus the node blocks that appeared and vanished.
//!
//! Both trees are streamed in key order as a mix of leaves and unexpanded subtrees. Subtrees with
//! equal CIDs at the same position are skipped without being read; otherwise the higher one is
//! expanded. So the cost is proportional to the changed region, not to the tree size.

use std::collections::HashSet;

use ipld_core::cid::Cid;

use super::Mst;
use crate::Result;
use crate::blocks::BlockRead;

/// One record-level change between two trees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordChange {
    /// The `collection/rkey` path.
    pub key: String,
    /// Value in the old tree (`None` for a create).
    pub old: Option<Cid>,
    /// Value in the new tree (`None` for a delete).
    pub new: Option<Cid>,
}

/// The result of [`diff`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    /// Record changes in key order.
    pub changes: Vec<RecordChange>,
    /// Nodes reachable from the new root but not from the old one.
    pub new_nodes: Vec<Cid>,
    /// Nodes reachable from the old root but not from the new one.
    pub removed_nodes: Vec<Cid>,
}

enum Item {
    Leaf(String, Cid),
    Tree(Cid, u32),
}

/// A key-ordered stream over one tree; subtrees stay folded until expanded.
struct Stream {
    stack: Vec<Item>,
    visited: Vec<Cid>,
}

impl Stream {
    fn new<S: BlockRead>(mst: &mut Mst<S>, root: Option<Cid>) -> Result<Self> {
        let mut stack = Vec::new();
        if let Some(root) = root {
            let root_layer = mst.layer_of(&root)?;
            stack.push(Item::Tree(root, root_layer));
        }
        Ok(Self {
            stack,
            visited: Vec::new(),
        })
    }

    fn expand<S: BlockRead>(&mut self, mst: &mut Mst<S>) -> Result<()> {
        let Some(Item::Tree(cid, node_layer)) = self.stack.pop() else {
            return Ok(());
        };
        self.visited.push(cid);
        let node = mst.node(&cid)?;
        let child_layer = node_layer.saturating_sub(1);
        for entry in node.entries.iter().rev() {
            if let Some(right) = entry.right {
                self.stack.push(Item::Tree(right, child_layer));
            }
            self.stack.push(Item::Leaf(entry.key.clone(), entry.value));
        }
        if let Some(left) = node.left {
            self.stack.push(Item::Tree(left, child_layer));
        }
        Ok(())
    }
}

/// Compares the trees rooted at `old` (`None` for "no tree at all") and `new`, reading nodes
/// from `store`.
pub fn diff<S: BlockRead>(store: S, old: Option<Cid>, new: Cid) -> Result<Diff> {
    diff_in(&mut Mst::load(store, new), old, new)
}

impl<S: BlockRead> Mst<S> {
    /// Compares the tree at `old` with this session's current root, reusing the nodes this
    /// session has already decoded (the touched paths of both trees).
    pub fn diff_since(&mut self, old: Option<Cid>) -> Result<Diff> {
        let new = self.root();
        diff_in(self, old, new)
    }
}

fn diff_in<S: BlockRead>(mst: &mut Mst<S>, old: Option<Cid>, new: Cid) -> Result<Diff> {
    let mut a = Stream::new(mst, old)?;
    let mut b = Stream::new(mst, Some(new))?;
    let mut changes = Vec::new();
    loop {
        match (a.stack.last(), b.stack.last()) {
            (None, None) => break,
            (Some(Item::Tree(..)), None) => a.expand(mst)?,
            (None, Some(Item::Tree(..))) => b.expand(mst)?,
            (Some(Item::Leaf(..)), None) => {
                if let Some(Item::Leaf(key, cid)) = a.stack.pop() {
                    changes.push(RecordChange {
                        key,
                        old: Some(cid),
                        new: None,
                    });
                }
            }
            (None, Some(Item::Leaf(..))) => {
                if let Some(Item::Leaf(key, cid)) = b.stack.pop() {
                    changes.push(RecordChange {
                        key,
                        old: None,
                        new: Some(cid),
                    });
                }
            }
            (Some(Item::Leaf(ka, va)), Some(Item::Leaf(kb, vb))) => match ka.cmp(kb) {
                std::cmp::Ordering::Equal => {
                    if va != vb {
                        changes.push(RecordChange {
                            key: ka.clone(),
                            old: Some(*va),
                            new: Some(*vb),
                        });
                    }
                    a.stack.pop();
                    b.stack.pop();
                }
                std::cmp::Ordering::Less => {
                    changes.push(RecordChange {
                        key: ka.clone(),
                        old: Some(*va),
                        new: None,
                    });
                    a.stack.pop();
                }
                std::cmp::Ordering::Greater => {
                    changes.push(RecordChange {
                        key: kb.clone(),
                        old: None,
                        new: Some(*vb),
                    });
                    b.stack.pop();
                }
            },
            (Some(Item::Tree(ca, la)), Some(Item::Tree(cb, lb))) => {
                if ca == cb {
                    a.stack.pop();
                    b.stack.pop();
                } else if la > lb {
                    a.expand(mst)?;
                } else if lb > la {
                    b.expand(mst)?;
                } else {
                    a.expand(mst)?;
                    b.expand(mst)?;
                }
            }
            (Some(Item::Tree(..)), Some(Item::Leaf(..))) => a.expand(mst)?,
            (Some(Item::Leaf(..)), Some(Item::Tree(..))) => b.expand(mst)?,
        }
    }
    // A node can be expanded on both sides when the streams were briefly misaligned; it belongs
    // to neither set then.
    let old_seen: HashSet<Cid> = a.visited.iter().copied().collect();
    let new_seen: HashSet<Cid> = b.visited.iter().copied().collect();
    let mut new_nodes: Vec<Cid> = Vec::new();
    for cid in b.visited {
        if !old_seen.contains(&cid) && !new_nodes.contains(&cid) {
            new_nodes.push(cid);
        }
    }
    let mut removed_nodes: Vec<Cid> = Vec::new();
    for cid in a.visited {
        if !new_seen.contains(&cid) && !removed_nodes.contains(&cid) {
            removed_nodes.push(cid);
        }
    }
    debug_assert!(changes.windows(2).all(|w| w[0].key < w[1].key));
    Ok(Diff {
        changes,
        new_nodes,
        removed_nodes,
    })
}
