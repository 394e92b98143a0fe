//! A whole repository read from an untrusted CAR (`importRepo`).
//!
//! The CAR is indexed without copying ([`CarIndex`]), the commit and the tree are checked with
//! every structural rule ([`mst::walk_untrusted`]), and only the blocks the tree reaches are
//! hashed; blocks nothing references are never copied or hashed. Memory is the input plus 44
//! bytes per section, and time is linear in the input: each node is decoded once, each distinct
//! record block hashed once, and the records handed on may not add up to more than
//! [`ImportLimits::max_expanded_bytes`] (a tree that points thousands of keys at one large block
//! would otherwise make the caller decode that block thousands of times).
//!
//! Every way the content can be wrong is an [`Error::InvalidRepo`] (or a CAR framing error), a
//! client mistake: a missing root block, a root that is not a commit, a commit whose tree is not
//! in the CAR, a node that breaks a rule, a key that is not a valid path, a record block that is
//! missing or not DAG-CBOR.

use std::collections::HashSet;

use ipld_core::cid::Cid;

use crate::blocks::BlockRead;
use crate::car::{CarIndex, CarLimits};
use crate::commit::SignedCommit;
use crate::syntax::{Did, Tid};
use crate::{Error, Result, mst};

/// Bounds on what one import may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportLimits {
    /// Framing limits of the CAR.
    pub car: CarLimits,
    /// Most records one import may hold.
    pub max_records: usize,
    /// Most record bytes handed on, counting a block once per key that points at it; `None`
    /// means twice the CAR's size.
    pub max_expanded_bytes: Option<u64>,
}

impl Default for ImportLimits {
    fn default() -> Self {
        Self {
            car: CarLimits::default(),
            max_records: 1_000_000,
            max_expanded_bytes: None,
        }
    }
}

/// One record of an imported repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedRecord<'a> {
    /// `collection/rkey`.
    pub path: String,
    /// The record's CID (its bytes were checked against it).
    pub cid: Cid,
    /// The record's DAG-CBOR bytes, borrowed from the CAR.
    pub bytes: &'a [u8],
}

/// A repository read from a CAR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedRepo<'a> {
    /// The repository's DID, from its commit (the signature is not checked: the importer
    /// re-signs with its own key).
    pub did: Did,
    /// The commit's revision.
    pub rev: Tid,
    /// The commit's tree root.
    pub data: Cid,
    /// Records in key order.
    pub records: Vec<ImportedRecord<'a>>,
}

/// Reads and checks the repository in `bytes` (a CAR v1 with exactly one root, the commit).
pub fn read_repo_car(bytes: &[u8], limits: ImportLimits) -> Result<ImportedRepo<'_>> {
    let index = CarIndex::new(bytes, limits.car)?;
    let [root] = index.roots() else {
        return Err(invalid(format!(
            "a repository CAR has exactly one root (the commit), this one has {}",
            index.roots().len()
        )));
    };
    let commit_bytes = index
        .read(root)?
        .ok_or_else(|| invalid(format!("the root block {root} is not in the CAR")))?;
    let commit = SignedCommit::decode(commit_bytes).map_err(|e| {
        invalid(format!(
            "the root block {root} is not a repository commit: {e}"
        ))
    })?;
    let budget = limits
        .max_expanded_bytes
        .unwrap_or_else(|| (bytes.len() as u64).saturating_mul(2));
    let mut expanded = 0u64;
    let mut verified: HashSet<Cid> = HashSet::new();
    let mut records = Vec::new();
    let walked = mst::walk_untrusted(&index, &commit.data, &mut |path, cid| {
        if records.len() >= limits.max_records {
            return Err(Error::TooManyRecords {
                limit: limits.max_records,
            });
        }
        let Some(record) = index.get_unverified(&cid) else {
            return Err(invalid(format!(
                "the record block {cid} of {path} is not in the CAR"
            )));
        };
        expanded = expanded.saturating_add(record.len() as u64);
        if expanded > budget {
            return Err(invalid(format!(
                "the tree points at more record bytes than {budget} (blocks reused across keys)"
            )));
        }
        if !verified.contains(&cid) {
            crate::cid::verify(&cid, record)?;
            if cid.codec() != crate::cid::DAG_CBOR {
                return Err(invalid(format!(
                    "the record block {cid} of {path} is not DAG-CBOR"
                )));
            }
            verified.insert(cid);
        }
        records.push(ImportedRecord {
            path: path.to_owned(),
            cid,
            bytes: record,
        });
        Ok(())
    });
    walked.map_err(|e| match e {
        Error::MissingBlock(cid) if cid == commit.data => {
            invalid(format!("the commit's tree root {cid} is not in the CAR"))
        }
        Error::MissingBlock(cid) => invalid(format!("the tree node {cid} is not in the CAR")),
        Error::MstNode { cid, reason } => {
            invalid(format!("the tree node {cid} is malformed: {reason}"))
        }
        other => other,
    })?;
    Ok(ImportedRepo {
        did: commit.did,
        rev: commit.rev,
        data: commit.data,
        records,
    })
}

fn invalid(message: String) -> Error {
    Error::InvalidRepo(message)
}
