//! The sync stream `zone.stratos.sync.subscribeRecords`, runtime-free parts: committed events as
//! subscribers need them, the hook the use cases call after a commit ([`EventSink`]), reading
//! the sequence logs (backfill, catch-up), the cursor rules and the atproto event-stream frames.
//!
//! The live fan-out ([`hub::StreamHub`]) is here too, so any app can serve or consume the stream;
//! only the transport (a WebSocket session) belongs to the app.

pub mod hub;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ipld_core::ipld::Ipld;
use stratos_domain::boundary::Boundary;
use stratos_domain::repo::Action;
use stratos_domain::syntax::{Datetime, Did, Nsid, RecordKey, Tid};
use stratos_domain::{Cid, data};

use super::UseCaseError;
use crate::enrollment_store::{EnrollmentAction, EnrollmentEvent, EnrollmentStore};
use crate::repo_store::{EventProof, RepoStore, SeqEvent};

/// The stream's NSID (also the `lxm` of service-auth JWTs for it).
pub const NSID: &str = "zone.stratos.sync.subscribeRecords";

/// Events read from a log per query (backfill and catch-up page through the whole log; the
/// reference stopped after one page).
pub const PAGE: usize = 100;

/// One record operation of a committed event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitOp {
    /// What happened to the record.
    pub action: Action,
    /// Collection NSID.
    pub collection: Nsid,
    /// Record key.
    pub rkey: RecordKey,
    /// The new record CID; `None` for deletes.
    pub cid: Option<Cid>,
    /// The record's CID before the commit; `None` for creates (and in events stored before
    /// events carried it).
    pub prev: Option<Cid>,
    /// The record's boundaries (for the `domain` filter).
    pub boundaries: Vec<Boundary>,
    /// The record's DAG-CBOR bytes; `None` for deletes (or, on replay, when the block is gone).
    pub record: Option<Vec<u8>>,
}

/// A committed event of one actor, with everything a subscriber is sent: live delivery needs no
/// storage read at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitEvent {
    /// The actor.
    pub did: Did,
    /// Its per-actor sequence number.
    pub seq: u64,
    /// The commit revision.
    pub rev: Tid,
    /// The commit CID.
    pub commit: Cid,
    /// Time the event was sequenced.
    pub time: Datetime,
    /// The operations, in commit order.
    pub ops: Vec<CommitOp>,
    /// What makes the event self-verifying (`None` for events stored before events carried it).
    pub proof: Option<EventProof>,
}

/// Where committed events go: the live stream. The use cases call it only after the storage
/// transaction committed, so nothing a subscriber is sent can still be rolled back.
/// Implementations must not block (they are called on the write path).
pub trait EventSink: Send + Sync + std::fmt::Debug {
    /// A commit was applied. Calls for one actor come in commit order.
    fn commit(&self, event: CommitEvent);
    /// An enrollment event was logged. Calls come in sequence order; a sink drops numbers it
    /// has already seen.
    fn enrollment(&self, event: EnrollmentEvent);
    /// The highest enrollment sequence number the sink has been given.
    fn enrollment_cursor(&self) -> u64;
}

/// Builds the live event of a commit about to be applied, from the sequence event and the
/// commit's new blocks (record bodies are among them). `seq` is set once the store assigned it.
pub fn live_event(
    did: &Did,
    event: &SeqEvent,
    blocks: &stratos_domain::blocks::BlockMap,
) -> CommitEvent {
    CommitEvent {
        did: did.clone(),
        seq: event.seq,
        rev: event.rev.clone(),
        commit: event.commit,
        time: event.time.clone(),
        ops: event
            .ops
            .iter()
            .map(|op| CommitOp {
                action: op.action,
                collection: op.collection.clone(),
                rkey: op.rkey.clone(),
                cid: op.cid,
                prev: op.prev,
                boundaries: op.boundaries.clone(),
                record: op.cid.and_then(|c| blocks.get(&c)).map(<[u8]>::to_vec),
            })
            .collect(),
        proof: event.proof.clone(),
    }
}

/// Events of `did` after `cursor` (at most `limit`), with record bodies: two queries per page
/// (the log, then every record block of the page at once). Record blocks stay in the
/// repository after an update or delete, so replayed events carry the record as it was.
pub async fn actor_events_after(
    repos: &dyn RepoStore,
    did: &Did,
    cursor: u64,
    limit: usize,
) -> Result<Vec<CommitEvent>, UseCaseError> {
    let events = repos.events_after(did, cursor, limit).await?;
    let cids: Vec<Cid> = events
        .iter()
        .flat_map(|e| e.ops.iter().filter_map(|op| op.cid))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let blocks = if cids.is_empty() {
        stratos_domain::blocks::BlockMap::new()
    } else {
        repos.get_blocks(did, &cids).await?
    };
    Ok(events.iter().map(|e| live_event(did, e, &blocks)).collect())
}

/// Hands every enrollment event after the sink's cursor to the sink, in order. Called after an
/// enrollment change (and when another instance announces one): one read per change, not per
/// subscriber. Concurrent callers are harmless: each reads a contiguous run from the sink's
/// cursor, and the sink drops numbers it has seen.
pub async fn pump_enrollments(
    store: &dyn EnrollmentStore,
    sink: &dyn EventSink,
) -> Result<usize, UseCaseError> {
    let mut sent = 0;
    loop {
        let page = store.events_after(sink.enrollment_cursor(), PAGE).await?;
        let full = page.len() == PAGE;
        sent += page.len();
        for e in page {
            sink.enrollment(e);
        }
        if !full {
            return Ok(sent);
        }
    }
}

/// Why a subscription cannot start (sent as an error frame).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    /// The cursor is ahead of the log.
    #[error("cursor {cursor} is in the future (latest is {latest})")]
    FutureCursor {
        /// The requested cursor.
        cursor: u64,
        /// The latest sequence number.
        latest: u64,
    },
}

/// Where a subscription starts reading its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Start {
    /// Read events with `seq > after`.
    pub after: u64,
    /// The events right after the cursor are no longer retained: send `#info OutdatedCursor`
    /// first, then replay what exists.
    pub outdated: bool,
}

/// The cursor rules. No cursor (or 0): replay from the start of the retained log, never
/// outdated. A cursor beyond `latest`: `FutureCursor`. A cursor whose next event is no longer
/// retained (`first_retained > cursor + 1`): outdated, then replay what exists.
pub fn start(
    cursor: Option<u64>,
    first_retained: Option<u64>,
    latest: u64,
) -> Result<Start, CursorError> {
    let c = cursor.unwrap_or(0);
    if c > latest {
        return Err(CursorError::FutureCursor { cursor: c, latest });
    }
    let outdated = c > 0 && first_retained.is_some_and(|f| f > c.saturating_add(1));
    Ok(Start { after: c, outdated })
}

/// Frame type names (`t` of the header).
pub mod kind {
    /// A record commit.
    pub const COMMIT: &str = "#commit";
    /// An enrollment change.
    pub const ENROLLMENT: &str = "#enrollment";
    /// Information (`OutdatedCursor`).
    pub const INFO: &str = "#info";
}

fn text(s: &str) -> Ipld {
    Ipld::String(s.to_owned())
}

fn int(n: u64) -> Ipld {
    Ipld::Integer(i128::from(n))
}

/// A message frame: DAG-CBOR header `{op: 1, t}` immediately followed by the DAG-CBOR body.
pub fn message_frame(t: &str, body: &Ipld) -> Result<Vec<u8>, UseCaseError> {
    let header = Ipld::Map(BTreeMap::from([
        ("op".to_owned(), Ipld::Integer(1)),
        ("t".to_owned(), text(t)),
    ]));
    let mut out = data::encode(&header)?;
    out.extend(data::encode(body)?);
    Ok(out)
}

/// An error frame: header `{op: -1}`, body `{error, message}`. The sender closes afterwards.
pub fn error_frame(error: &str, message: &str) -> Vec<u8> {
    let header = Ipld::Map(BTreeMap::from([("op".to_owned(), Ipld::Integer(-1))]));
    let body = Ipld::Map(BTreeMap::from([
        ("error".to_owned(), text(error)),
        ("message".to_owned(), text(message)),
    ]));
    // Strings and small integers always encode; an empty frame would still close the stream.
    let mut out = data::encode(&header).unwrap_or_default();
    out.extend(data::encode(&body).unwrap_or_default());
    out
}

/// `#info {name, message}`.
pub fn info_frame(name: &str, message: &str) -> Result<Vec<u8>, UseCaseError> {
    let body = Ipld::Map(BTreeMap::from([
        ("name".to_owned(), text(name)),
        ("message".to_owned(), text(message)),
    ]));
    message_frame(kind::INFO, &body)
}

/// `#enrollment {seq, did, time, action, boundaries}`.
pub fn enrollment_frame(e: &EnrollmentEvent) -> Result<Vec<u8>, UseCaseError> {
    let body = Ipld::Map(BTreeMap::from([
        ("seq".to_owned(), int(e.seq)),
        ("did".to_owned(), text(e.did.as_str())),
        ("time".to_owned(), text(e.time.as_str())),
        ("action".to_owned(), text(e.action.as_str())),
        (
            "boundaries".to_owned(),
            Ipld::List(e.boundaries.iter().map(|b| text(b.as_str())).collect()),
        ),
    ]));
    message_frame(kind::ENROLLMENT, &body)
}

/// The ops a subscriber filtering on `domain` (a qualified boundary) is sent. Creates and
/// updates of records in the boundary pass. Deletes always pass (they reveal only a path, and a
/// consumer must be able to drop what it indexed). An update that takes a record out of the
/// boundary is sent as a delete: from the filtered view the record is gone.
pub fn filter_ops<'a>(ops: &'a [CommitOp], domain: Option<&str>) -> Vec<FilteredOp<'a>> {
    ops.iter()
        .filter_map(|op| {
            let Some(domain) = domain else {
                return Some(FilteredOp::Whole(op));
            };
            let inside = op.boundaries.iter().any(|b| b.as_str() == domain);
            match op.action {
                Action::Delete => Some(FilteredOp::Whole(op)),
                _ if inside => Some(FilteredOp::Whole(op)),
                Action::Update => Some(FilteredOp::AsDelete(op)),
                Action::Create => None,
            }
        })
        .collect()
}

/// One op as a filtered subscriber sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilteredOp<'a> {
    /// Sent as it is.
    Whole(&'a CommitOp),
    /// Sent as a delete of its path.
    AsDelete(&'a CommitOp),
}

/// The `#commit` frame of `event` for a subscriber filtering on `domain`; `None` when no op
/// passes the filter (the subscriber's position still moves past the event).
///
/// An unfiltered frame is self-verifying (atproto sync v1.1): it carries `since`, `prevData`,
/// each op's `prev` and `blocks`, the CAR slice with the commit, the covering proofs and the new
/// records ([`stratos_domain::sync::verify_commit`]). A filtered frame carries none of them: the
/// proof's tree nodes name records outside the filter, and a subset of the ops cannot be inverted.
pub fn commit_frame(
    event: &CommitEvent,
    domain: Option<&str>,
) -> Result<Option<Vec<u8>>, UseCaseError> {
    let ops = filter_ops(&event.ops, domain);
    if ops.is_empty() {
        return Ok(None);
    }
    let proof = event.proof.as_ref().filter(|_| domain.is_none());
    let mut list = Vec::with_capacity(ops.len());
    for op in ops {
        let (action, op, whole) = match op {
            FilteredOp::Whole(op) => (op.action.as_str(), op, true),
            FilteredOp::AsDelete(op) => ("delete", op, false),
        };
        let mut m = BTreeMap::from([
            ("action".to_owned(), text(action)),
            // No leading slash (reference defect D12).
            (
                "path".to_owned(),
                Ipld::String(format!("{}/{}", op.collection, op.rkey)),
            ),
            (
                "cid".to_owned(),
                match op.cid {
                    Some(c) if whole => Ipld::Link(c),
                    _ => Ipld::Null,
                },
            ),
        ]);
        if proof.is_some() {
            m.insert("prev".to_owned(), op.prev.map_or(Ipld::Null, Ipld::Link));
        }
        if whole && let Some(bytes) = &op.record {
            m.insert("record".to_owned(), data::decode(bytes)?);
        }
        list.push(Ipld::Map(m));
    }
    let mut body = BTreeMap::from([
        ("seq".to_owned(), int(event.seq)),
        ("did".to_owned(), text(event.did.as_str())),
        ("time".to_owned(), text(event.time.as_str())),
        ("rev".to_owned(), text(event.rev.as_str())),
        ("commit".to_owned(), Ipld::Link(event.commit)),
        ("ops".to_owned(), Ipld::List(list)),
    ]);
    if let Some(proof) = proof {
        body.insert(
            "since".to_owned(),
            proof
                .since
                .as_ref()
                .map_or(Ipld::Null, |t| text(t.as_str())),
        );
        body.insert(
            "prevData".to_owned(),
            proof.prev_data.map_or(Ipld::Null, Ipld::Link),
        );
        body.insert("blocks".to_owned(), Ipld::Bytes(proof.blocks.clone()));
    }
    message_frame(kind::COMMIT, &Ipld::Map(body)).map(Some)
}

/// True for the enrollment actions that end an account's per-actor stream.
pub fn ends_actor_stream(e: &EnrollmentEvent) -> bool {
    e.action == EnrollmentAction::Unenroll
}

/// Shared handle type for sinks.
pub type SharedSink = Arc<dyn EventSink>;
