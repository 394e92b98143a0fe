//! Event-stream frames of `zone.stratos.sync.subscribeRecords`: a DAG-CBOR header
//! (`{op: 1, t}` for a message, `{op: -1}` for an error) followed by the DAG-CBOR body.

use ipld_core::ipld::Ipld;
use serde::Deserialize;
use serde_bytes::ByteBuf;
use stratos_domain::crypto::PublicKey;
use stratos_domain::repo::{Action, RecordOp};
use stratos_domain::sync::{self, VerifiedCommit};
use stratos_domain::syntax::{Did, Tid};
use stratos_domain::{Cid, data, mst};

use crate::{ChainBreak, ClientError};

/// Largest frame decoded: a commit's CAR slice is bounded by
/// [`stratos_domain::sync::MAX_SLICE_BYTES`]; the rest of a frame is small.
pub const MAX_FRAME_BYTES: usize = 2 * sync::MAX_SLICE_BYTES as usize;

/// One message of the stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// `#commit`: record changes of one commit.
    Commit(Box<CommitFrame>),
    /// `#enrollment`: an account enrolled, changed boundaries or left (service-level stream).
    Enrollment(EnrollmentFrame),
    /// `#info`, e.g. `OutdatedCursor`.
    Info {
        /// The info name.
        name: String,
        /// Its message.
        message: Option<String>,
    },
    /// An error frame; the service closes the stream after it.
    Error {
        /// The error name (`AuthRequired`, `ConsumerTooSlow`, …).
        error: String,
        /// Its message.
        message: String,
    },
    /// A message of a type this client does not know (skipped by consumers).
    Unknown {
        /// Its `t`.
        t: String,
    },
}

/// A `#commit` frame.
#[derive(Debug, Clone, PartialEq)]
pub struct CommitFrame {
    /// Per-account sequence number.
    pub seq: u64,
    /// The account.
    pub did: Did,
    /// When the event was sequenced.
    pub time: String,
    /// The commit's revision.
    pub rev: Tid,
    /// The commit's CID.
    pub commit: Cid,
    /// Revision of the commit before (unfiltered frames).
    pub since: Option<Tid>,
    /// Data root before the commit (unfiltered frames; `None` also for the first commit).
    pub prev_data: Option<Cid>,
    /// The CAR slice that makes the frame verifiable (unfiltered frames).
    pub blocks: Option<Vec<u8>>,
    /// The record changes.
    pub ops: Vec<FrameOp>,
}

/// One record change of a `#commit` frame.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameOp {
    /// What happened.
    pub action: Action,
    /// `collection/rkey`.
    pub path: String,
    /// The new record's CID (`None` for deletes).
    pub cid: Option<Cid>,
    /// The record's CID before (`None` for creates; absent in filtered frames).
    pub prev: Option<Cid>,
    /// The new record (creates and updates).
    pub record: Option<Ipld>,
}

/// An `#enrollment` frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentFrame {
    /// Service-wide sequence number.
    pub seq: u64,
    /// The account.
    pub did: Did,
    /// `enroll`, `update` or `unenroll`.
    pub action: String,
    /// When.
    pub time: String,
    /// Qualified boundaries held after the change.
    pub boundaries: Vec<String>,
}

/// The header of every event-stream frame (shared with [`crate::firehose`]).
#[derive(Deserialize)]
pub(crate) struct Header {
    pub(crate) op: i64,
    #[serde(default)]
    pub(crate) t: Option<String>,
}

#[derive(Deserialize)]
struct CommitBody {
    seq: u64,
    did: String,
    time: String,
    rev: String,
    commit: Cid,
    #[serde(default)]
    since: Option<String>,
    #[serde(default, rename = "prevData")]
    prev_data: Option<Cid>,
    #[serde(default)]
    blocks: Option<ByteBuf>,
    ops: Vec<OpBody>,
}

/// One op of a commit body: this service's `#commit` and a PDS's firehose `#commit` (which has
/// no `prev`/`record`; [`crate::firehose`] reads the record from the blocks).
#[derive(Deserialize)]
pub(crate) struct OpBody {
    pub(crate) action: String,
    pub(crate) path: String,
    #[serde(default)]
    pub(crate) cid: Option<Cid>,
    #[serde(default)]
    pub(crate) prev: Option<Cid>,
    #[serde(default)]
    pub(crate) record: Option<Ipld>,
}

#[derive(Deserialize)]
struct EnrollmentBody {
    seq: u64,
    did: String,
    action: String,
    time: String,
    #[serde(default)]
    boundaries: Vec<String>,
}

#[derive(Deserialize)]
struct InfoBody {
    name: String,
    #[serde(default)]
    message: Option<String>,
}

/// The body of an error frame.
#[derive(Deserialize)]
pub(crate) struct ErrorBody {
    pub(crate) error: String,
    #[serde(default)]
    pub(crate) message: Option<String>,
}

fn malformed(e: impl std::fmt::Display) -> ClientError {
    ClientError::Frame(e.to_string())
}

/// Decodes one frame (the bytes of one WebSocket binary message).
pub fn decode(bytes: &[u8]) -> Result<Frame, ClientError> {
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(ClientError::FrameTooLarge(bytes.len()));
    }
    let mut de = serde_ipld_dagcbor::de::Deserializer::from_slice(bytes);
    let header = Header::deserialize(&mut de).map_err(malformed)?;
    let frame = match (header.op, header.t.as_deref()) {
        (-1, _) => {
            let b = ErrorBody::deserialize(&mut de).map_err(malformed)?;
            Frame::Error {
                error: b.error,
                message: b.message.unwrap_or_default(),
            }
        }
        (1, Some("#commit")) => Frame::Commit(Box::new(commit(
            CommitBody::deserialize(&mut de).map_err(malformed)?,
        )?)),
        (1, Some("#enrollment")) => {
            let b = EnrollmentBody::deserialize(&mut de).map_err(malformed)?;
            Frame::Enrollment(EnrollmentFrame {
                seq: b.seq,
                did: Did::parse(&b.did).map_err(malformed)?,
                action: b.action,
                time: b.time,
                boundaries: b.boundaries,
            })
        }
        (1, Some("#info")) => {
            let b = InfoBody::deserialize(&mut de).map_err(malformed)?;
            Frame::Info {
                name: b.name,
                message: b.message,
            }
        }
        (1, Some(t)) => {
            Ipld::deserialize(&mut de).map_err(malformed)?;
            Frame::Unknown { t: t.to_owned() }
        }
        (op, _) => return Err(malformed(format!("unknown frame op {op}"))),
    };
    de.end().map_err(malformed)?;
    Ok(frame)
}

fn commit(b: CommitBody) -> Result<CommitFrame, ClientError> {
    let ops = b
        .ops
        .into_iter()
        .map(|op| {
            Ok(FrameOp {
                action: Action::parse(&op.action)
                    .ok_or_else(|| malformed(format!("unknown action {}", op.action)))?,
                path: op.path,
                cid: op.cid,
                prev: op.prev,
                record: op.record,
            })
        })
        .collect::<Result<_, ClientError>>()?;
    Ok(CommitFrame {
        seq: b.seq,
        did: Did::parse(&b.did).map_err(malformed)?,
        time: b.time,
        rev: Tid::parse(&b.rev).map_err(malformed)?,
        commit: b.commit,
        since: b
            .since
            .as_deref()
            .map(Tid::parse)
            .transpose()
            .map_err(malformed)?,
        prev_data: b.prev_data,
        blocks: b.blocks.map(ByteBuf::into_vec),
        ops,
    })
}

impl CommitFrame {
    /// Verifies the frame with the account's signing key: every block of its slice hashes to
    /// its CID, the commit is the account's, has the frame's revision and is signed by `key`,
    /// undoing the ops on the commit's tree arrives at `prevData`, and each op's `record` is the
    /// block its `cid` names. With `previous`, the data root the account's frame before reached,
    /// `prevData` must be that root: nothing was dropped, reordered or inserted between them.
    pub fn verify(
        &self,
        key: &PublicKey,
        previous: Option<Cid>,
    ) -> Result<VerifiedCommit, ClientError> {
        let seq = self.seq;
        let blocks = self.blocks.as_deref().ok_or(ClientError::NoProof(seq))?;
        if let Some(expected) = previous {
            let got = self.prev_data.unwrap_or_else(mst::empty_root);
            if got != expected {
                return Err(ClientError::BrokenChain(Box::new(ChainBreak {
                    seq,
                    expected,
                    got,
                })));
            }
        }
        let ops: Vec<RecordOp> = self
            .ops
            .iter()
            .map(|op| RecordOp {
                action: op.action,
                path: op.path.clone(),
                cid: op.cid,
                prev: op.prev,
            })
            .collect();
        let event = sync::CommitEvent {
            did: &self.did,
            commit: self.commit,
            rev: &self.rev,
            prev_data: self.prev_data,
            ops: &ops,
            blocks,
        };
        let unverified = |source| ClientError::Unverified {
            seq,
            source: Box::new(source),
        };
        let verified = sync::verify_commit(key, &event).map_err(unverified)?;
        for op in &self.ops {
            if let (Some(record), Some(cid)) = (&op.record, op.cid) {
                let bytes = data::encode(record).map_err(unverified)?;
                if verified.blocks.get(&cid) != Some(bytes.as_slice()) {
                    return Err(unverified(stratos_domain::Error::InvalidRepo(format!(
                        "the record sent for {} is not the block {cid}",
                        op.path
                    ))));
                }
            }
        }
        Ok(verified)
    }
}
