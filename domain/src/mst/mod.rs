//! The atproto Merkle Search Tree: a deterministic, content-addressed ordered map from
//! `collection/rkey` to record CIDs.
//!
//! [`Mst`] is a session over a [`BlockRead`] source: it decodes nodes on demand (caching them),
//! and every node it creates is encoded, hashed and kept in [`Mst::fresh_blocks`]. Nodes created
//! and then superseded during the same session are garbage; [`diff`] against the starting root
//! tells which fresh nodes are really new, which is what a commit persists.
//!
//! Structure rules (fanout 4): a key's layer is [`layer`]`(key)`; a node holds the keys of one
//! layer for its key range, and each gap between them points at a node one layer down covering
//! that gap (or null when the gap holds no key). The root sits at the highest layer present; a
//! root without entries is trimmed away. So the shape depends only on the key set.

mod check;
mod diff;
mod key;
mod node;
mod proof;

use std::collections::HashMap;
use std::sync::Arc;

use ipld_core::cid::Cid;

pub use check::walk_untrusted;
pub use diff::{Diff, RecordChange, diff};
pub use key::{MAX_KEY_LEN, common_prefix_len, layer, validate_key};
pub use proof::{covering_proof, prove, verify_proof};

use crate::blocks::{BlockMap, BlockRead, Overlay};
use crate::{Error, Result};
use node::{Entry, Node};

/// A tree session. See the module docs.
#[derive(Debug)]
pub struct Mst<S> {
    store: S,
    root: Cid,
    fresh: BlockMap,
    cache: HashMap<Cid, Arc<Node>>,
    /// When set, every node read that this session did not create (see [`Mst::traced`]).
    trace: Option<Vec<Cid>>,
}

impl<S: BlockRead> Mst<S> {
    /// A new, empty tree. Its root node is placed in [`Mst::fresh_blocks`].
    pub fn empty(store: S) -> Self {
        let mut mst = Self::load(store, Cid::default());
        mst.root = mst.store_node(Node::default());
        mst
    }

    /// A session over an existing tree rooted at `root` (read lazily from `store`).
    pub fn load(store: S, root: Cid) -> Self {
        Self {
            store,
            root,
            fresh: BlockMap::new(),
            cache: HashMap::new(),
            trace: None,
        }
    }

    /// A session like [`Mst::load`] that notes every node it reads and did not create itself:
    /// after some operations, [`Mst::take_trace`] names exactly the blocks of `store` a consumer
    /// needs to repeat them.
    pub(crate) fn traced(store: S, root: Cid) -> Self {
        let mut mst = Self::load(store, root);
        mst.trace = Some(Vec::new());
        mst
    }

    /// The nodes read so far by a [`Mst::traced`] session (possibly with repeats).
    pub(crate) fn take_trace(&mut self) -> Vec<Cid> {
        self.trace.take().unwrap_or_default()
    }

    /// CID of the current root node.
    pub fn root(&self) -> Cid {
        self.root
    }

    /// Every node encoded during this session, including ones superseded later.
    pub fn fresh_blocks(&self) -> &BlockMap {
        &self.fresh
    }

    /// Gives back the fresh blocks, consuming the session.
    pub fn into_fresh_blocks(self) -> BlockMap {
        self.fresh
    }

    /// The underlying block source.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// A block source that sees this session's fresh nodes over the underlying store.
    pub fn blocks(&self) -> Overlay<'_, BlockMap, S> {
        Overlay {
            upper: &self.fresh,
            lower: &self.store,
        }
    }

    pub(crate) fn node(&mut self, cid: &Cid) -> Result<Arc<Node>> {
        if let Some(trace) = &mut self.trace
            && !self.fresh.contains(cid)
        {
            trace.push(*cid);
        }
        if let Some(node) = self.cache.get(cid) {
            return Ok(Arc::clone(node));
        }
        let node = match self.fresh.get(cid) {
            Some(bytes) => Node::decode(cid, bytes)?,
            None => Node::decode(cid, self.store.require(cid)?)?,
        };
        let node = Arc::new(node);
        self.cache.insert(*cid, Arc::clone(&node));
        Ok(node)
    }

    fn store_node(&mut self, node: Node) -> Cid {
        let cid = self.fresh.insert_dag_cbor(node.encode());
        self.cache.insert(cid, Arc::new(node));
        cid
    }

    /// `Some(cid)` of a stored node, or `None` when the node has neither entries nor children.
    fn store_subtree(&mut self, node: Node) -> Option<Cid> {
        if node.is_empty() {
            None
        } else {
            Some(self.store_node(node))
        }
    }

    /// The layer of the root node (0 for the empty tree).
    pub fn layer(&mut self) -> Result<u32> {
        let root = self.root;
        self.layer_of(&root)
    }

    /// Layer of the node at `cid`: that of its keys, or, for a node with only a left subtree,
    /// one more than its child's.
    fn layer_of(&mut self, cid: &Cid) -> Result<u32> {
        let mut depth = 0u32;
        let mut cursor = *cid;
        loop {
            let node = self.node(&cursor)?;
            if let Some(first) = node.entries.first() {
                return Ok(layer(first.key.as_bytes()) + depth);
            }
            match node.left {
                Some(left) => {
                    cursor = left;
                    depth += 1;
                }
                None => return Ok(depth),
            }
        }
    }

    /// The value stored under `key`.
    pub fn get(&mut self, key: &str) -> Result<Option<Cid>> {
        let mut cursor = Some(self.root);
        while let Some(cid) = cursor {
            let node = self.node(&cid)?;
            let (idx, found) = node.search(key);
            if found {
                return Ok(Some(node.entries[idx].value));
            }
            cursor = node.gap(idx);
        }
        Ok(None)
    }

    /// Sets `key` to `value`, returning the previous value.
    pub fn put(&mut self, key: &str, value: Cid) -> Result<Option<Cid>> {
        validate_key(key)?;
        let key_layer = layer(key.as_bytes());
        let root = self.root;
        let root_node = self.node(&root)?;
        if root_node.is_empty() {
            let node = Node {
                left: None,
                entries: vec![Entry {
                    key: key.to_owned(),
                    value,
                    right: None,
                }],
            };
            self.root = self.store_node(node);
            return Ok(None);
        }
        let root_layer = self.layer_of(&root)?;
        if key_layer > root_layer {
            // The key becomes the only entry of a new, higher root.
            let (left, right) = self.split(Some(root), root_layer, key)?;
            let left = self.wrap(left, root_layer, key_layer - 1);
            let right = self.wrap(right, root_layer, key_layer - 1);
            let node = Node {
                left,
                entries: vec![Entry {
                    key: key.to_owned(),
                    value,
                    right,
                }],
            };
            self.root = self.store_node(node);
            return Ok(None);
        }
        let (new_root, previous) = self.insert_into(root, root_layer, key, key_layer, value)?;
        self.root = new_root;
        Ok(previous)
    }

    /// Puts `subtree` (a node at `from` layer) under empty single-child nodes up to layer `to`.
    fn wrap(&mut self, mut subtree: Option<Cid>, from: u32, to: u32) -> Option<Cid> {
        subtree?;
        for _ in from..to {
            subtree = Some(self.store_node(Node {
                left: subtree,
                entries: Vec::new(),
            }));
        }
        subtree
    }

    fn insert_into(
        &mut self,
        cid: Cid,
        node_layer: u32,
        key: &str,
        key_layer: u32,
        value: Cid,
    ) -> Result<(Cid, Option<Cid>)> {
        let node = self.node(&cid)?;
        let (idx, found) = node.search(key);
        if found {
            let previous = node.entries[idx].value;
            if previous == value {
                return Ok((cid, Some(previous)));
            }
            let mut node = Node::clone(&node);
            node.entries[idx].value = value;
            return Ok((self.store_node(node), Some(previous)));
        }
        let gap = node.gap(idx);
        let mut node = Node::clone(&node);
        let previous = if key_layer == node_layer {
            let (left, right) = self.split(gap, node_layer.saturating_sub(1), key)?;
            node.set_gap(idx, left);
            node.entries.insert(
                idx,
                Entry {
                    key: key.to_owned(),
                    value,
                    right,
                },
            );
            None
        } else {
            let child_layer = node_layer - 1;
            let (child, previous) = match gap {
                Some(child) => {
                    let (child, previous) =
                        self.insert_into(child, child_layer, key, key_layer, value)?;
                    (Some(child), previous)
                }
                None => {
                    let leaf = Node {
                        left: None,
                        entries: vec![Entry {
                            key: key.to_owned(),
                            value,
                            right: None,
                        }],
                    };
                    let leaf = self.store_node(leaf);
                    (self.wrap(Some(leaf), key_layer, child_layer), None)
                }
            };
            node.set_gap(idx, child);
            previous
        };
        Ok((self.store_node(node), previous))
    }

    /// Splits the subtree at `node_layer` into the parts below and above `key` (which it does not
    /// contain). Each part is `None` when it holds no key.
    fn split(
        &mut self,
        subtree: Option<Cid>,
        node_layer: u32,
        key: &str,
    ) -> Result<(Option<Cid>, Option<Cid>)> {
        let Some(cid) = subtree else {
            return Ok((None, None));
        };
        let node = self.node(&cid)?;
        let (idx, found) = node.search(key);
        if found {
            return Err(Error::MstNode {
                cid,
                reason: format!("key {key:?} found on a layer below its own"),
            });
        }
        let (gap_left, gap_right) = self.split(node.gap(idx), node_layer.saturating_sub(1), key)?;
        let mut left = Node {
            left: node.left,
            entries: node.entries[..idx].to_vec(),
        };
        let mut right = Node {
            left: None,
            entries: node.entries[idx..].to_vec(),
        };
        left.set_gap(idx, gap_left);
        right.left = gap_right;
        Ok((self.store_subtree(left), self.store_subtree(right)))
    }

    /// Removes `key`, returning its value if it was present.
    pub fn remove(&mut self, key: &str) -> Result<Option<Cid>> {
        let root = self.root;
        let (new_root, previous) = self.remove_from(root, key)?;
        if previous.is_none() {
            return Ok(None);
        }
        // Trim: a root without entries is replaced by its only child.
        let mut root = new_root;
        while let Some(cid) = root {
            let node = self.node(&cid)?;
            if !node.entries.is_empty() {
                break;
            }
            root = node.left;
        }
        self.root = match root {
            Some(cid) => cid,
            None => self.store_node(Node::default()),
        };
        Ok(previous)
    }

    fn remove_from(&mut self, cid: Cid, key: &str) -> Result<(Option<Cid>, Option<Cid>)> {
        let node = self.node(&cid)?;
        let (idx, found) = node.search(key);
        if found {
            let mut node = Node::clone(&node);
            let removed = node.entries.remove(idx);
            let merged = self.merge(node.gap(idx), removed.right)?;
            node.set_gap(idx, merged);
            return Ok((self.store_subtree(node), Some(removed.value)));
        }
        let Some(child) = node.gap(idx) else {
            return Ok((Some(cid), None));
        };
        let (new_child, previous) = self.remove_from(child, key)?;
        if previous.is_none() {
            return Ok((Some(cid), None));
        }
        let mut node = Node::clone(&node);
        node.set_gap(idx, new_child);
        Ok((self.store_subtree(node), previous))
    }

    /// Joins two adjacent subtrees of the same layer (all keys of `a` < all keys of `b`).
    fn merge(&mut self, a: Option<Cid>, b: Option<Cid>) -> Result<Option<Cid>> {
        let (a, b) = match (a, b) {
            (None, other) | (other, None) => return Ok(other),
            (Some(a), Some(b)) => (a, b),
        };
        let a = self.node(&a)?;
        let b = self.node(&b)?;
        let mut joined = Node::clone(&a);
        let seam = joined.gap(joined.entries.len());
        let middle = self.merge(seam, b.left)?;
        let last = joined.entries.len();
        joined.set_gap(last, middle);
        joined.entries.extend(b.entries.iter().cloned());
        Ok(self.store_subtree(joined))
    }

    /// Visits every `(key, value)` with `from <= key < to` (either bound optional) in order;
    /// the visitor returns `false` to stop early.
    pub fn walk_range(
        &mut self,
        from: Option<&str>,
        to: Option<&str>,
        visit: &mut dyn FnMut(&str, Cid) -> bool,
    ) -> Result<()> {
        let root = self.root;
        self.walk_node(root, from, to, visit).map(|_| ())
    }

    /// Returns `Ok(false)` when the visitor asked to stop.
    fn walk_node(
        &mut self,
        cid: Cid,
        from: Option<&str>,
        to: Option<&str>,
        visit: &mut dyn FnMut(&str, Cid) -> bool,
    ) -> Result<bool> {
        let node = self.node(&cid)?;
        // Entries before `start` and their left gaps hold only keys < from, except the gap right
        // before `start`, which may straddle `from`.
        let start = from.map_or(0, |f| node.search(f).0);
        if let Some(gap) = node.gap(start)
            && !self.walk_node(gap, from, to, visit)?
        {
            return Ok(false);
        }
        for entry in &node.entries[start..] {
            if to.is_some_and(|t| entry.key.as_str() >= t) {
                return Ok(false);
            }
            if !visit(&entry.key, entry.value) {
                return Ok(false);
            }
            if let Some(right) = entry.right
                && !self.walk_node(right, from, to, visit)?
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// All `(key, value)` pairs in key order.
    pub fn entries(&mut self) -> Result<Vec<(String, Cid)>> {
        let mut out = Vec::new();
        self.walk_range(None, None, &mut |k, v| {
            out.push((k.to_owned(), v));
            true
        })?;
        Ok(out)
    }

    /// Records of one collection in rkey order, starting strictly after `after_rkey` (a cursor),
    /// at most `limit` of them.
    pub fn list_collection(
        &mut self,
        collection: &str,
        after_rkey: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Cid)>> {
        let from = match after_rkey {
            // '/' + rkey + "\0" is not a valid key, so it sorts right after the cursor's key.
            Some(rkey) => format!("{collection}/{rkey}\u{0}"),
            None => format!("{collection}/"),
        };
        // '0' is the byte after '/', so this bounds the collection's keys from above.
        let to = format!("{collection}0");
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        self.walk_range(Some(&from), Some(&to), &mut |k, v| {
            out.push((k.to_owned(), v));
            out.len() < limit
        })?;
        Ok(out)
    }

    /// Number of leaves (records) in the tree.
    pub fn leaf_count(&mut self) -> Result<usize> {
        let mut n = 0;
        self.walk_range(None, None, &mut |_, _| {
            n += 1;
            true
        })?;
        Ok(n)
    }

    /// CIDs of every node reachable from the root, in depth-first pre-order.
    pub fn node_cids(&mut self) -> Result<Vec<Cid>> {
        let mut out = Vec::new();
        let mut stack = vec![self.root];
        while let Some(cid) = stack.pop() {
            out.push(cid);
            let node = self.node(&cid)?;
            for entry in node.entries.iter().rev() {
                if let Some(right) = entry.right {
                    stack.push(right);
                }
            }
            if let Some(left) = node.left {
                stack.push(left);
            }
        }
        Ok(out)
    }
}

/// CID of the empty tree's root node (`{"e": [], "l": null}`).
pub fn empty_root() -> Cid {
    crate::cid::dag_cbor(&Node::default().encode())
}

/// The links of one node, for walkers outside this module (CAR export, garbage collection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLinks {
    /// Subtree before the first entry.
    pub left: Option<Cid>,
    /// Per entry: the record CID and the subtree after it.
    pub entries: Vec<(Cid, Option<Cid>)>,
}

/// Decodes the node at `cid` and returns its links.
pub fn node_links(cid: &Cid, bytes: &[u8]) -> Result<NodeLinks> {
    let node = Node::decode(cid, bytes)?;
    Ok(NodeLinks {
        left: node.left,
        entries: node
            .entries
            .into_iter()
            .map(|e| (e.value, e.right))
            .collect(),
    })
}

/// Encodes a node from raw parts, WITHOUT checking any rule: `entries` are `(key, value,
/// right subtree)`. For tools and tests that must build malformed trees (the structural checks
/// of [`walk_untrusted`] are tested with it); trees built this way are not valid in general.
pub fn encode_node_unchecked(left: Option<Cid>, entries: &[(String, Cid, Option<Cid>)]) -> Vec<u8> {
    Node {
        left,
        entries: entries
            .iter()
            .map(|(key, value, right)| Entry {
                key: key.clone(),
                value: *value,
                right: *right,
            })
            .collect(),
    }
    .encode()
}
