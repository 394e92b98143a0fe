//! Verifying a commit event as a consumer of the sync stream (atproto sync v1.1, "inductive"
//! firehose): from the event alone — its ops, the previous data root and the CAR slice of
//! [`crate::repo::CommitOutput::relevant_car`] — check the commit's signature with the account's
//! key and that undoing the ops on the new tree gives exactly the previous root. A consumer that
//! also checks each event's `prevData` against the data root of the event before it holds an
//! unbroken, signed chain without trusting the transport.

use ipld_core::cid::Cid;

use crate::blocks::{BlockMap, BlockRead};
use crate::car::{self, CarLimits};
use crate::commit::SignedCommit;
use crate::crypto::PublicKey;
use crate::mst::{self, Mst};
use crate::repo::{Action, RecordOp};
use crate::syntax::{Did, Tid};
use crate::{Error, Result};

/// Largest CAR slice accepted from a stream: a commit of the largest batch (a few hundred ops,
/// each proof a handful of nodes, records up to their size limit) stays far below it.
pub const MAX_SLICE_BYTES: u64 = 8 * 1024 * 1024;

/// The most ops a commit may have to be proven event by event (atproto's firehose limit): a
/// larger commit (an import, a big batch) carries no slice, and consumers re-read the
/// repository. Also the most ops accepted for verification.
pub const MAX_PROVEN_OPS: usize = 200;

/// One commit event as a consumer receives it.
#[derive(Debug, Clone, Copy)]
pub struct CommitEvent<'a> {
    /// The account.
    pub did: &'a Did,
    /// CID of the commit.
    pub commit: Cid,
    /// Its revision.
    pub rev: &'a Tid,
    /// The data root before the commit (`None`: the account's first commit, on the empty tree).
    pub prev_data: Option<Cid>,
    /// The record operations, each with its new (`cid`) and previous (`prev`) record CID.
    pub ops: &'a [RecordOp],
    /// The CAR slice: root = the commit; the commit block, covering proofs and new records.
    pub blocks: &'a [u8],
}

/// What a verified event establishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCommit {
    /// The data root after the commit (the next event's `prevData`).
    pub data: Cid,
    /// The previous data root the inversion arrived at.
    pub prev_data: Cid,
    /// The verified blocks (commit, proof nodes, records): record bytes are read from here.
    pub blocks: BlockMap,
}

fn invalid(reason: impl Into<String>) -> Error {
    Error::InvalidRepo(reason.into())
}

/// Verifies one commit event: every block hashes to its CID, the commit is the account's,
/// carries the event's revision and is signed by `key`; every created or updated record's block
/// is present; and undoing the ops on the commit's tree, using only the slice's blocks, yields
/// `prev_data`. Fails with the first problem found.
pub fn verify_commit(key: &PublicKey, event: &CommitEvent<'_>) -> Result<VerifiedCommit> {
    if event.ops.len() > MAX_PROVEN_OPS {
        return Err(invalid(format!(
            "more than {MAX_PROVEN_OPS} ops in one event"
        )));
    }
    let limits = CarLimits {
        max_total: MAX_SLICE_BYTES,
        ..CarLimits::default()
    };
    let slice = car::read(event.blocks, limits)?;
    if slice.roots != [event.commit] {
        return Err(invalid("the slice's root is not the event's commit"));
    }
    let blocks = slice.blocks;
    let commit = SignedCommit::decode(
        blocks
            .get(&event.commit)
            .ok_or(Error::MissingBlock(event.commit))?,
    )?;
    if &commit.did != event.did {
        return Err(invalid("the commit belongs to another account"));
    }
    if &commit.rev != event.rev {
        return Err(invalid("the commit's revision differs from the event's"));
    }
    commit.verify(key)?;
    let prev_data = invert(&blocks, commit.data, event.ops)?;
    let expected = event.prev_data.unwrap_or_else(mst::empty_root);
    if prev_data != expected {
        return Err(invalid(format!(
            "undoing the ops gives {prev_data}, not the previous root {expected}"
        )));
    }
    Ok(VerifiedCommit {
        data: commit.data,
        prev_data,
        blocks,
    })
}

/// Undoes `ops` on the tree rooted at `data`, reading only `blocks`, and returns the root before
/// them. `blocks` must hold the covering proof of every changed key on that tree (what atproto
/// sync v1.1 requires of a commit) and the nodes undoing them last-first reads, and each
/// op must match the tree: a created or updated record is there with the op's CID (and its block
/// is in `blocks`), a deleted one is absent.
pub fn invert(blocks: &BlockMap, data: Cid, ops: &[RecordOp]) -> Result<Cid> {
    let mut tree = Mst::load(blocks, data);
    let mut proven = Vec::new();
    for op in ops {
        tree.cover(&op.path, &mut proven)?;
    }
    undo(&mut tree, ops, |cid| require_record(blocks, cid))?;
    Ok(tree.root())
}

/// Undoes `ops`, last first, on `tree`, checking each against it; `record` checks that the block
/// of a created or updated record is at hand.
pub(crate) fn undo<S: BlockRead>(
    tree: &mut Mst<S>,
    ops: &[RecordOp],
    record: impl Fn(&Cid) -> Result<()>,
) -> Result<()> {
    for op in ops.iter().rev() {
        let mismatch = || invalid(format!("op on {} does not match the tree", op.path));
        match (op.action, op.cid, op.prev) {
            (Action::Create, Some(cid), None) => {
                record(&cid)?;
                if tree.remove(&op.path)? != Some(cid) {
                    return Err(mismatch());
                }
            }
            (Action::Update, Some(cid), Some(prev)) => {
                record(&cid)?;
                if tree.put(&op.path, prev)? != Some(cid) {
                    return Err(mismatch());
                }
            }
            (Action::Delete, None, Some(prev)) => {
                if tree.put(&op.path, prev)?.is_some() {
                    return Err(mismatch());
                }
            }
            _ => {
                return Err(invalid(format!(
                    "{} op on {} has the wrong CIDs for its action",
                    op.action.as_str(),
                    op.path
                )));
            }
        }
    }
    Ok(())
}

fn require_record(blocks: &BlockMap, cid: &Cid) -> Result<()> {
    if blocks.contains(cid) {
        Ok(())
    } else {
        Err(Error::MissingBlock(*cid))
    }
}

/// What a verified record proof (`com.atproto.sync.getRecord`) establishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvenRecord {
    /// The signed commit's revision.
    pub rev: Tid,
    /// The commit's data root.
    pub data: Cid,
    /// The record's CID, `None` when the proof shows the record is absent.
    pub cid: Option<Cid>,
    /// The record's DAG-CBOR bytes (hash-checked), `None` when absent.
    pub record: Option<Vec<u8>>,
}

/// Verifies a record proof CAR (`com.atproto.sync.getRecord`: the signed commit, the MST nodes
/// on the key's path, the record block): every block hashes to its CID, the commit is `did`'s and
/// signed by `key`, and the path from the commit's root proves the record's presence (with its
/// block) or its absence.
pub fn verify_record_proof(
    key: &PublicKey,
    did: &Did,
    path: &str,
    car_bytes: &[u8],
) -> Result<ProvenRecord> {
    let limits = CarLimits {
        max_total: MAX_SLICE_BYTES,
        ..CarLimits::default()
    };
    let car = car::read(car_bytes, limits)?;
    let [root] = car.roots[..] else {
        return Err(invalid("a record proof has exactly one root, the commit"));
    };
    let commit = SignedCommit::decode(car.blocks.get(&root).ok_or(Error::MissingBlock(root))?)?;
    if &commit.did != did {
        return Err(invalid("the commit belongs to another account"));
    }
    commit.verify(key)?;
    let cid = mst::verify_proof(&commit.data, path, &car.blocks)?;
    let record = match cid {
        Some(cid) => Some(
            car.blocks
                .get(&cid)
                .ok_or(Error::MissingBlock(cid))?
                .to_vec(),
        ),
        None => None,
    };
    Ok(ProvenRecord {
        rev: commit.rev,
        data: commit.data,
        cid,
        record,
    })
}
