//! Writing to a repository: record writes in, one signed commit and its storage delta out.
//!
//! [`apply_writes`] is the whole pure part of a write. It reads the current tree through a
//! [`BlockRead`] source, applies every write (all or nothing), signs one commit, and returns what a
//! storage adapter must persist atomically: the new blocks (records, new MST nodes, the commit),
//! the MST nodes that are no longer reachable, the record operations for the index and the
//! sync stream, and the new head for a compare-and-swap on the old one.

use std::collections::HashSet;

use ipld_core::cid::Cid;

use crate::blocks::{BlockMap, BlockRead};
use crate::commit::UnsignedCommit;
use crate::crypto::Signer;
use crate::mst::Mst;
use crate::syntax::{Did, Nsid, RecordKey, Tid};
use crate::{Error, Result};

/// The current state of a repository: what a commit compares-and-swaps against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoHead {
    /// CID of the latest commit.
    pub commit: Cid,
    /// Its revision.
    pub rev: Tid,
    /// Its MST root.
    pub data: Cid,
}

/// One record write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordWrite {
    /// Add a record; fails if the path exists.
    Create {
        /// Collection NSID.
        collection: Nsid,
        /// Record key.
        rkey: RecordKey,
        /// DAG-CBOR bytes of the record.
        record: Vec<u8>,
    },
    /// Replace a record; fails if the path does not exist.
    Update {
        /// Collection NSID.
        collection: Nsid,
        /// Record key.
        rkey: RecordKey,
        /// DAG-CBOR bytes of the new record.
        record: Vec<u8>,
    },
    /// Remove a record; fails if the path does not exist.
    Delete {
        /// Collection NSID.
        collection: Nsid,
        /// Record key.
        rkey: RecordKey,
    },
}

impl RecordWrite {
    /// The collection and record key written.
    pub fn key(&self) -> (&Nsid, &RecordKey) {
        match self {
            RecordWrite::Create {
                collection, rkey, ..
            }
            | RecordWrite::Update {
                collection, rkey, ..
            }
            | RecordWrite::Delete { collection, rkey } => (collection, rkey),
        }
    }

    /// The `collection/rkey` path.
    pub fn path(&self) -> String {
        let (c, r) = self.key();
        format!("{}/{}", c.as_str(), r.as_str())
    }
}

/// What happened to one record in a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Added.
    Create,
    /// Replaced.
    Update,
    /// Removed.
    Delete,
}

impl Action {
    /// The atproto name of the action.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
        }
    }

    /// Parses an atproto action name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "create" => Some(Action::Create),
            "update" => Some(Action::Update),
            "delete" => Some(Action::Delete),
            _ => None,
        }
    }
}

/// One record operation of a commit (for the record index and the sync stream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordOp {
    /// What happened.
    pub action: Action,
    /// `collection/rkey`, no leading slash.
    pub path: String,
    /// CID of the new record (`None` for deletes).
    pub cid: Option<Cid>,
    /// CID the record had before (`None` for creates).
    pub prev: Option<Cid>,
}

/// Everything a storage adapter persists for one commit, atomically.
#[derive(Debug, Clone)]
pub struct CommitOutput {
    /// The head after this commit.
    pub head: RepoHead,
    /// The head this commit was built on (`None` for a new repository).
    pub prev_head: Option<RepoHead>,
    /// The commit block bytes (also contained in `new_blocks`).
    pub commit_bytes: Vec<u8>,
    /// Record operations in write order.
    pub ops: Vec<RecordOp>,
    /// Blocks to store: new records, new MST nodes and the commit.
    pub new_blocks: BlockMap,
    /// MST nodes no longer reachable from the new root.
    pub removed_nodes: Vec<Cid>,
    /// The commit's self-verifying CAR slice (atproto sync v1.1): root = the commit; blocks =
    /// the commit, the covering proof of every changed key on the new tree, the nodes undoing
    /// the ops last-first reads, and the new record blocks. With the ops (and their `prev` CIDs)
    /// it lets a consumer check the signature and invert the commit back to the previous data
    /// root; see [`crate::sync::verify_commit`].
    /// `None` for a commit of more than [`crate::sync::MAX_PROVEN_OPS`] ops (an import, a
    /// large batch): like atproto's firehose, such a commit is not proven event by event, and a
    /// consumer re-reads the repository instead.
    pub relevant_car: Option<Vec<u8>>,
}

/// Applies `writes` on top of `head` (or creates the repository when `head` is `None`), signs one
/// commit with revision `rev`, and returns the storage delta. An existing repository needs at
/// least one write; a new one with no writes gets a commit of the empty tree.
pub fn apply_writes<S: BlockRead>(
    store: &S,
    did: &Did,
    head: Option<&RepoHead>,
    writes: &[RecordWrite],
    rev: Tid,
    signer: &dyn Signer,
) -> Result<CommitOutput> {
    if let Some(head) = head {
        if writes.is_empty() {
            return Err(Error::Commit(
                "a commit on an existing repository needs a write".into(),
            ));
        }
        if rev <= head.rev {
            return Err(Error::Commit(format!(
                "rev {rev} is not after {}",
                head.rev
            )));
        }
    }
    let mut records = BlockMap::new();
    let mut tree = match head {
        Some(head) => Mst::load(store, head.data),
        None => Mst::empty(store),
    };
    let start_root = head.map(|h| h.data);
    let mut ops = Vec::with_capacity(writes.len());
    let mut seen = HashSet::with_capacity(writes.len());
    for write in writes {
        let path = write.path();
        if !seen.insert(path.clone()) {
            return Err(Error::DuplicateWrite(path));
        }
        let op = match write {
            RecordWrite::Create { record, .. } => {
                let cid = records.insert_dag_cbor(record.clone());
                if tree.get(&path)?.is_some() {
                    return Err(Error::RecordExists(path));
                }
                tree.put(&path, cid)?;
                RecordOp {
                    action: Action::Create,
                    path,
                    cid: Some(cid),
                    prev: None,
                }
            }
            RecordWrite::Update { record, .. } => {
                let cid = records.insert_dag_cbor(record.clone());
                let prev = tree.put(&path, cid)?;
                if prev.is_none() {
                    return Err(Error::RecordNotFound(path));
                }
                RecordOp {
                    action: Action::Update,
                    path,
                    cid: Some(cid),
                    prev,
                }
            }
            RecordWrite::Delete { .. } => {
                let prev = tree.remove(&path)?;
                if prev.is_none() {
                    return Err(Error::RecordNotFound(path));
                }
                RecordOp {
                    action: Action::Delete,
                    path,
                    cid: None,
                    prev,
                }
            }
        };
        ops.push(op);
    }
    let data = tree.root();
    // Covering proofs are read on the new tree while its session (and node cache) is open.
    let proven = ops.len() <= crate::sync::MAX_PROVEN_OPS;
    let mut relevant = Vec::new();
    if proven {
        for op in &ops {
            tree.cover(&op.path, &mut relevant)?;
        }
    }
    let (mut new_blocks, removed_nodes) = if start_root == Some(data) {
        (BlockMap::new(), Vec::new())
    } else {
        let delta = tree.diff_since(start_root)?;
        let mut fresh = tree.into_fresh_blocks();
        let mut new_blocks = BlockMap::new();
        for cid in &delta.new_nodes {
            // New nodes were all created by this session (the empty root of a new repo too).
            let bytes = fresh.remove(cid).ok_or(Error::MissingBlock(*cid))?;
            new_blocks.insert(*cid, bytes);
        }
        (new_blocks, delta.removed_nodes)
    };
    // One write per path, so every record block written here is referenced by the new tree.
    new_blocks.extend(records);
    let commit = UnsignedCommit {
        did: did.clone(),
        data,
        rev: rev.clone(),
        prev: None,
    }
    .sign(signer)?;
    let commit_bytes = commit.encode()?;
    let commit_cid = new_blocks.insert_dag_cbor(commit_bytes.clone());
    let relevant_car = if proven {
        if ops.len() > 1 {
            // Undoing several ops one after the other reaches nodes no single op's proof holds
            // (an earlier undo reshapes the tree the next one walks); the blocks a consumer
            // reads doing exactly that are added. For one op its proof is that walk already.
            relevant.extend(undo_reads(store, &new_blocks, data, &ops)?);
        }
        Some(relevant_car(
            store,
            &new_blocks,
            commit_cid,
            relevant,
            &ops,
        )?)
    } else {
        None
    };
    Ok(CommitOutput {
        head: RepoHead {
            commit: commit_cid,
            rev,
            data,
        },
        prev_head: head.cloned(),
        commit_bytes,
        ops,
        new_blocks,
        removed_nodes,
        relevant_car,
    })
}

/// The tree nodes (new or unchanged) read while undoing `ops`, last first, on the tree rooted at
/// `data`: what [`crate::sync::invert`] reads beyond the ops' covering proofs.
fn undo_reads<S: BlockRead>(
    store: &S,
    new_blocks: &BlockMap,
    data: Cid,
    ops: &[RecordOp],
) -> Result<Vec<Cid>> {
    let blocks = crate::blocks::Overlay {
        upper: new_blocks,
        lower: store,
    };
    let mut tree = Mst::traced(&blocks, data);
    crate::sync::undo(&mut tree, ops, |_| Ok(()))?;
    Ok(tree.take_trace())
}

/// Writes the CAR slice of a commit: the commit block, the proof nodes (new ones from
/// `new_blocks`, unchanged ones from the store), then the new records.
fn relevant_car<S: BlockRead>(
    store: &S,
    new_blocks: &BlockMap,
    commit: Cid,
    mut nodes: Vec<Cid>,
    ops: &[RecordOp],
) -> Result<Vec<u8>> {
    nodes.sort_unstable();
    nodes.dedup();
    let commit_bytes = new_blocks.require(&commit)?;
    let mut car = crate::car::CarWriter::new(Vec::with_capacity(4096), &[commit])?;
    car.write_block(&commit, commit_bytes)?;
    for cid in &nodes {
        let bytes = match new_blocks.get(cid) {
            Some(bytes) => bytes,
            None => store.require(cid)?,
        };
        car.write_block(cid, bytes)?;
    }
    // Two ops may write identical records (one block).
    let records: std::collections::BTreeSet<Cid> = ops.iter().filter_map(|op| op.cid).collect();
    for cid in &records {
        car.write_block(cid, new_blocks.require(cid)?)?;
    }
    Ok(car.finish())
}
