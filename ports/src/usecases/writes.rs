//! Record writes ([`Writes`]): one signed commit per call, all or nothing — validation by the
//! write rules, the per-DID writer lock, the rate limit, the blobs the records reference, the
//! compare-and-swap on the head (rebuilt on a lost race), the stream event after the commit.
//! Also the repository's first commit at enrollment ([`Writes::init_repo`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ipld_core::ipld::Ipld;
use serde_json::Value;

use stratos_domain::boundary::{Boundary, Viewer, can_read};
use stratos_domain::crypto::Keypair;
use stratos_domain::repo::{Action, CommitOutput, RecordWrite, RepoHead};
use stratos_domain::syntax::{AtUri, Datetime, Did, Nsid, RecordKey, Tid};
use stratos_domain::write::{WriteContext, reply_parent};
use stratos_domain::{Cid, data, stub, tid};

use super::UseCaseError;
use super::account::AccountContext;
use super::blobs;
use super::node_cache;
use crate::outbox::{OutboxAction, OutboxItem};
use crate::repo_store::{CommitUnit, EventOp, EventProof, IndexChange, SeqEvent};

/// How often a write is rebuilt after losing a compare-and-swap race before giving up. Losing
/// one takes another process writing the same account (this one serialises its own writers),
/// and the winner, whose head is fresh, tends to win again: with two instances writing the same
/// accounts at full rate, 5 attempts without a pause gave up on a few writes in a hundred and
/// 10 with pauses on about one in a thousand (the two-instance test in
/// apps/service/tests/stream.rs). Each loss has about even odds, so 32 make giving up
/// vanishingly rare while bounding the work; the pauses add at most about 0.9 s.
const MAX_ATTEMPTS: u32 = 32;

/// The pause before attempt `attempt` (0-based): none before the second, whose fresh head
/// usually wins, then a random wait up to 2^(attempt-1) ms, at most 32 ms, so the writers of
/// two instances stop colliding in step (full jitter).
async fn pause_before(attempt: u32) {
    use rand_core::RngCore as _;
    if attempt < 2 {
        return;
    }
    let bound = 1u64 << (attempt - 1).min(5);
    let micros = rand_core::OsRng.next_u64() % (bound * 1_000 + 1);
    tokio::time::sleep(std::time::Duration::from_micros(micros)).await;
}

/// One write of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOp {
    /// Create a record; a TID key is generated when `rkey` is `None`.
    Create {
        /// Collection NSID.
        collection: Nsid,
        /// Record key.
        rkey: Option<RecordKey>,
        /// The record as atproto JSON.
        value: Value,
    },
    /// Replace a record.
    Update {
        /// Collection NSID.
        collection: Nsid,
        /// Record key.
        rkey: RecordKey,
        /// The record as atproto JSON.
        value: Value,
    },
    /// Delete a record.
    Delete {
        /// Collection NSID.
        collection: Nsid,
        /// Record key.
        rkey: RecordKey,
    },
}

/// Compare-and-swap preconditions of a write (atproto `swapCommit` / `swapRecord`), checked
/// against the head the commit is built on, so they hold atomically with the commit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Swaps {
    /// The repository's current commit must be this one.
    pub commit: Option<Cid>,
    /// `(collection, rkey, expected)`: the record's current CID must be `expected`
    /// (`None`: the record must not exist).
    pub records: Vec<(Nsid, RecordKey, Option<Cid>)>,
}

/// The outcome of one write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteResult {
    /// `create`, `update` or `delete`.
    pub action: Action,
    /// The record URI.
    pub uri: AtUri,
    /// The new record CID (none for deletes).
    pub cid: Option<Cid>,
}

/// The outcome of a committed batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitResult {
    /// The commit CID.
    pub commit: Cid,
    /// The commit revision.
    pub rev: Tid,
    /// The sequence number of the commit's event.
    pub seq: u64,
    /// One result per write, in order.
    pub results: Vec<WriteResult>,
}

/// A validated write, ready for the repository core.
pub(super) struct Prepared {
    pub(super) write: RecordWrite,
    pub(super) boundaries: Vec<Boundary>,
    /// Blobs the record references (creates/updates).
    pub(super) blobs: Vec<data::Blob>,
    /// Stub to publish (creates/updates).
    pub(super) stub_json: Option<String>,
}

/// The write use cases over the shared per-account context (reached through
/// [`Records::writes`](super::records::Records::writes)).
#[derive(Debug, Clone, Copy)]
pub struct Writes<'a> {
    ctx: &'a AccountContext,
}

impl<'a> Writes<'a> {
    pub(super) fn new(ctx: &'a AccountContext) -> Self {
        Self { ctx }
    }

    /// Creates one record.
    pub async fn create_record(
        &self,
        author: &Did,
        repo: &Did,
        collection: &Nsid,
        rkey: Option<&RecordKey>,
        value: Value,
    ) -> Result<CommitResult, UseCaseError> {
        let op = WriteOp::Create {
            collection: collection.clone(),
            rkey: rkey.cloned(),
            value,
        };
        self.apply_writes(author, repo, vec![op]).await
    }

    /// Creates or replaces one record.
    pub async fn put_record(
        &self,
        author: &Did,
        repo: &Did,
        collection: &Nsid,
        rkey: &RecordKey,
        value: Value,
    ) -> Result<CommitResult, UseCaseError> {
        self.put_record_with(author, repo, collection, rkey, value, &Swaps::default())
            .await
    }

    /// [`Writes::put_record`] with compare-and-swap preconditions.
    pub async fn put_record_with(
        &self,
        author: &Did,
        repo: &Did,
        collection: &Nsid,
        rkey: &RecordKey,
        value: Value,
        swaps: &Swaps,
    ) -> Result<CommitResult, UseCaseError> {
        let exists = self
            .ctx
            .deps
            .repos
            .get_record(repo, collection, rkey)
            .await?
            .is_some();
        let op = if exists {
            WriteOp::Update {
                collection: collection.clone(),
                rkey: rkey.clone(),
                value,
            }
        } else {
            WriteOp::Create {
                collection: collection.clone(),
                rkey: Some(rkey.clone()),
                value,
            }
        };
        self.apply_writes_with(author, repo, vec![op], swaps).await
    }

    /// Deletes one record; `Ok(None)` when there was nothing to delete (idempotent, like a PDS).
    pub async fn delete_record(
        &self,
        author: &Did,
        repo: &Did,
        collection: &Nsid,
        rkey: &RecordKey,
    ) -> Result<Option<CommitResult>, UseCaseError> {
        check_owner(author, repo)?;
        if self
            .ctx
            .deps
            .repos
            .get_record(repo, collection, rkey)
            .await?
            .is_none()
        {
            // Still require enrollment, so the answer does not leak anything to outsiders.
            self.ctx.enrollment(author).await?;
            return Ok(None);
        }
        let op = WriteOp::Delete {
            collection: collection.clone(),
            rkey: rkey.clone(),
        };
        self.apply_writes(author, repo, vec![op]).await.map(Some)
    }

    /// Applies a batch of writes as one commit: every write is validated first, and either all
    /// of them are committed or none.
    pub async fn apply_writes(
        &self,
        author: &Did,
        repo: &Did,
        ops: Vec<WriteOp>,
    ) -> Result<CommitResult, UseCaseError> {
        self.apply_writes_with(author, repo, ops, &Swaps::default())
            .await
    }

    /// [`Writes::apply_writes`] with compare-and-swap preconditions.
    pub async fn apply_writes_with(
        &self,
        author: &Did,
        repo: &Did,
        ops: Vec<WriteOp>,
        swaps: &Swaps,
    ) -> Result<CommitResult, UseCaseError> {
        check_owner(author, repo)?;
        if ops.is_empty() {
            return Err(UseCaseError::InvalidRequest("no writes given".into()));
        }
        if ops.len() > 200 {
            return Err(UseCaseError::InvalidRequest(
                "at most 200 writes per batch".into(),
            ));
        }
        let enrollment = self.ctx.enrollment(author).await?;
        let key = self.ctx.signer(author, &enrollment.signing_key).await?;
        let held: BTreeSet<String> = enrollment
            .boundaries
            .into_iter()
            .map(String::from)
            .collect();
        let now = Datetime::from_unix_millis(self.ctx.deps.clock.now_ms());
        let mut prepared = Vec::with_capacity(ops.len());
        for op in ops {
            prepared.push(self.prepare(repo, op, &held, &now).await?);
        }
        self.commit_prepared(author, repo, key, prepared, &now, swaps)
            .await
    }

    /// Serialises, rate-limits and commits validated writes.
    async fn commit_prepared(
        &self,
        author: &Did,
        repo: &Did,
        key: Arc<Keypair>,
        prepared: Vec<Prepared>,
        now: &Datetime,
        swaps: &Swaps,
    ) -> Result<CommitResult, UseCaseError> {
        let cost = u32::try_from(prepared.len()).unwrap_or(u32::MAX);
        self.ctx
            .check_rate(author, cost, self.ctx.deps.clock.now_ms())?;
        let lock = self.ctx.writer_lock(repo);
        let _serial = lock.lock().await;
        let refs: Vec<&data::Blob> = prepared.iter().flat_map(|p| &p.blobs).collect();
        blobs::make_permanent(self.ctx, repo, &refs).await?;
        // Only an update or a delete can drop a blob's last reference.
        let may_release = prepared
            .iter()
            .any(|p| !matches!(p.write, RecordWrite::Create { .. }));
        let writes: Vec<RecordWrite> = prepared.iter().map(|p| p.write.clone()).collect();
        let nodes = self.ctx.nodes(repo);
        for attempt in 0..MAX_ATTEMPTS {
            pause_before(attempt).await;
            let cached = node_cache::lock(&nodes).head.clone();
            let from_cache = cached.is_some();
            let head = match cached {
                Some(head) => head,
                None => self.ctx.require_head(repo).await?,
            };
            if let Err(e) = self.check_swaps(repo, &head, swaps).await {
                if from_cache {
                    // The cached head may be stale: decide on the stored one.
                    node_cache::lock(&nodes).head = None;
                    continue;
                }
                return Err(e);
            }
            let rev = tid::next_after(&head.rev);
            let out = match self.ctx.build(repo, Some(&head), &writes, rev, &key).await {
                Ok(out) => out,
                // A cached head may be stale (another process wrote), and a stored one can go
                // stale while its tree is read: another instance's commit deletes the blocks
                // its new tree no longer uses ("missing block" here). Either way, build again
                // on the head as stored now; an error on a head that has not moved stands.
                Err(e) => {
                    let moved = from_cache
                        || self.ctx.deps.repos.head(repo).await?.map(|h| h.commit)
                            != Some(head.commit);
                    if !moved {
                        return Err(e);
                    }
                    node_cache::lock(&nodes).head = None;
                    continue;
                }
            };
            let unit = commit_unit(repo, &out, &prepared, now)?;
            let live = self.ctx.live_event(repo, &unit);
            match self.ctx.deps.repos.apply_commit(repo, unit).await {
                Ok(seq) => {
                    self.ctx.remember(repo, &out);
                    self.ctx.publish(live, seq);
                    if may_release {
                        let now = self.ctx.deps.clock.now_ms();
                        blobs::reclaim(self.ctx, repo, now.saturating_sub(blobs::UPLOAD_TTL_MS))
                            .await;
                    }
                    return results(repo, &out, seq);
                }
                Err(e) => {
                    // Whatever happened, the cached head can no longer be trusted.
                    node_cache::lock(&nodes).head = None;
                    if !e.is_retryable() {
                        return Err(e.into());
                    }
                }
            }
        }
        Err(UseCaseError::Conflict(repo.to_string()))
    }

    /// Checks `swaps` against `head`. Record CIDs come from the index, which a committed head
    /// always matches; a concurrent commit moves the head, which the commit's own
    /// compare-and-swap then refuses, and the retry checks again.
    async fn check_swaps(
        &self,
        repo: &Did,
        head: &RepoHead,
        swaps: &Swaps,
    ) -> Result<(), UseCaseError> {
        if let Some(expected) = &swaps.commit
            && *expected != head.commit
        {
            return Err(UseCaseError::InvalidSwap(format!(
                "the current commit is {}, not {expected}",
                head.commit
            )));
        }
        for (collection, rkey, expected) in &swaps.records {
            let current = self
                .ctx
                .deps
                .repos
                .get_record(repo, collection, rkey)
                .await?
                .map(|r| r.cid);
            if current != *expected {
                return Err(UseCaseError::InvalidSwap(format!(
                    "{collection}/{rkey} is {}, not {}",
                    current.map_or_else(|| "absent".to_owned(), |c| c.to_string()),
                    expected
                        .as_ref()
                        .map_or_else(|| "absent".to_owned(), ToString::to_string),
                )));
            }
        }
        Ok(())
    }

    /// Creates an actor's repository with a signed commit of the empty tree (enrollment).
    pub async fn init_repo(&self, did: &Did, key: &Keypair) -> Result<RepoHead, UseCaseError> {
        self.ctx.deps.repos.create_actor(did).await?;
        if let Some(head) = self.ctx.deps.repos.head(did).await? {
            return Ok(head);
        }
        let out = self.ctx.build(did, None, &[], tid::next(), key).await?;
        let unit = CommitUnit {
            prev: None,
            head: out.head.clone(),
            new_blocks: out.new_blocks.clone(),
            removed_blocks: Vec::new(),
            index: Vec::new(),
            event: None,
            outbox: Vec::new(),
        };
        self.ctx.deps.repos.apply_commit(did, unit).await?;
        Ok(out.head)
    }

    pub(super) async fn prepare(
        &self,
        repo: &Did,
        op: WriteOp,
        held: &BTreeSet<String>,
        now: &Datetime,
    ) -> Result<Prepared, UseCaseError> {
        let (collection, rkey, value, create) = match op {
            WriteOp::Delete { collection, rkey } => {
                return Ok(Prepared {
                    write: RecordWrite::Delete { collection, rkey },
                    boundaries: Vec::new(),
                    blobs: Vec::new(),
                    stub_json: None,
                });
            }
            WriteOp::Create {
                collection,
                rkey,
                value,
            } => (collection, rkey, value, true),
            WriteOp::Update {
                collection,
                rkey,
                value,
            } => (collection, Some(rkey), value, false),
        };
        let rkey = match rkey {
            Some(r) => r,
            None => RecordKey::from(tid::next()),
        };
        let mut record = data::json_to_object(&value)?;
        if let Ipld::Map(map) = &mut record {
            // Records without `$type` made every later read fail in the original; fill it in.
            map.entry("$type".to_owned())
                .or_insert_with(|| Ipld::String(collection.to_string()));
        }
        if self.ctx.deps.catalog.doc(collection.as_str()).is_some() {
            self.ctx
                .deps
                .catalog
                .check_record_key(collection.as_str(), rkey.as_str())?;
        }
        let parent = self.parent_boundaries(&record, repo, held).await?;
        let boundaries = self.ctx.deps.policy.check_record(
            &self.ctx.deps.catalog,
            &collection,
            &record,
            WriteContext {
                author_boundaries: held,
                parent_boundaries: parent.as_deref(),
            },
        )?;
        let (cid, bytes) = data::record_cid(&record)?;
        let uri = AtUri::for_record(repo, &collection, &rkey);
        let stub = stub::stub_for(&record, &uri, &cid, &self.ctx.deps.service_ref, now)?;
        let stub_json = serde_json::to_string(&data::ipld_to_json(&stub)?)
            .map_err(|e| UseCaseError::Internal(e.to_string()))?;
        let write = if create {
            RecordWrite::Create {
                collection,
                rkey,
                record: bytes,
            }
        } else {
            RecordWrite::Update {
                collection,
                rkey,
                record: bytes,
            }
        };
        Ok(Prepared {
            write,
            boundaries,
            blobs: blobs::blob_refs(&record),
            stub_json: Some(stub_json),
        })
    }

    /// The boundaries of the record's reply parent, when the parent is on this service AND the
    /// author may read it. A parent the author may not read is treated exactly like one that does
    /// not exist: answering `ReplyBoundaryEscalation` for it (and accepting the same reply to a
    /// missing parent) would tell the author that a private record exists at that URI.
    async fn parent_boundaries(
        &self,
        record: &Ipld,
        author: &Did,
        held: &BTreeSet<String>,
    ) -> Result<Option<Vec<Boundary>>, UseCaseError> {
        let Some(parent) = reply_parent(record) else {
            return Ok(None);
        };
        let (Ok(did), Some(collection), Some(rkey)) = (
            Did::parse(parent.authority().as_str()),
            parent.collection(),
            parent.rkey(),
        ) else {
            return Ok(None);
        };
        if !self.ctx.deps.repos.actor_exists(&did).await? {
            return Ok(None);
        }
        let viewer = Viewer::Account {
            did: author.as_str(),
            boundaries: held,
        };
        Ok(self
            .ctx
            .deps
            .repos
            .get_record(&did, collection, rkey)
            .await?
            .filter(|r| can_read(viewer, did.as_str(), &r.boundaries))
            .map(|r| r.boundaries))
    }
}

fn check_owner(author: &Did, repo: &Did) -> Result<(), UseCaseError> {
    if author == repo {
        Ok(())
    } else {
        Err(UseCaseError::Forbidden(format!(
            "{author} cannot write to the repository of {repo}"
        )))
    }
}

/// Splits a `collection/rkey` path of a repository (an MST key) into its typed parts.
pub(super) fn parse_path(path: &str) -> Result<(Nsid, RecordKey), UseCaseError> {
    let (collection, rkey) = path.split_once('/').ok_or_else(|| {
        UseCaseError::InvalidRequest(format!("{path:?} is not a collection/rkey path"))
    })?;
    Ok((Nsid::parse(collection)?, RecordKey::parse(rkey)?))
}

pub(super) fn commit_unit(
    repo: &Did,
    out: &CommitOutput,
    prepared: &[Prepared],
    now: &Datetime,
) -> Result<CommitUnit, UseCaseError> {
    let mut index = Vec::with_capacity(out.ops.len());
    let mut ops = Vec::with_capacity(out.ops.len());
    let mut outbox = Vec::with_capacity(out.ops.len());
    let by_path: BTreeMap<String, &Prepared> =
        prepared.iter().map(|p| (p.write.path(), p)).collect();
    for op in &out.ops {
        let prep = by_path.get(&op.path);
        let (collection, rkey) = match prep {
            Some(p) => {
                let (c, r) = p.write.key();
                (c.clone(), r.clone())
            }
            None => parse_path(&op.path)?,
        };
        let boundaries = prep.map(|p| p.boundaries.clone()).unwrap_or_default();
        match (op.action, op.cid) {
            (Action::Delete, _) | (_, None) => {
                index.push(IndexChange::Delete {
                    collection: collection.clone(),
                    rkey: rkey.clone(),
                });
                outbox.push(OutboxItem {
                    did: repo.clone(),
                    action: OutboxAction::DeleteRecord {
                        collection: collection.clone(),
                        rkey: rkey.clone(),
                    },
                });
            }
            (_, Some(cid)) => {
                index.push(IndexChange::Put {
                    collection: collection.clone(),
                    rkey: rkey.clone(),
                    cid,
                    boundaries: boundaries.clone(),
                    blobs: prep
                        .map(|p| p.blobs.iter().map(|b| b.cid).collect())
                        .unwrap_or_default(),
                });
                if let Some(stub_json) = prep.and_then(|p| p.stub_json.clone()) {
                    outbox.push(OutboxItem {
                        did: repo.clone(),
                        action: OutboxAction::PutRecord {
                            collection: collection.clone(),
                            rkey: rkey.clone(),
                            record_json: stub_json,
                        },
                    });
                }
            }
        }
        ops.push(EventOp {
            action: op.action,
            collection,
            rkey,
            cid: op.cid,
            prev: op.prev,
            boundaries,
        });
    }
    Ok(CommitUnit {
        prev: out.prev_head.as_ref().map(|h| h.commit),
        head: out.head.clone(),
        new_blocks: out.new_blocks.clone(),
        removed_blocks: out.removed_nodes.clone(),
        index,
        event: Some(SeqEvent {
            seq: 0,
            rev: out.head.rev.clone(),
            commit: out.head.commit,
            time: now.clone(),
            ops,
            proof: out.relevant_car.as_ref().map(|blocks| EventProof {
                since: out.prev_head.as_ref().map(|h| h.rev.clone()),
                prev_data: out.prev_head.as_ref().map(|h| h.data),
                blocks: blocks.clone(),
            }),
        }),
        outbox,
    })
}

fn results(repo: &Did, out: &CommitOutput, seq: u64) -> Result<CommitResult, UseCaseError> {
    let results = out
        .ops
        .iter()
        .map(|op| {
            let (collection, rkey) = parse_path(&op.path)?;
            Ok(WriteResult {
                action: op.action,
                uri: AtUri::for_record(repo, &collection, &rkey),
                cid: op.cid,
            })
        })
        .collect::<Result<_, UseCaseError>>()?;
    Ok(CommitResult {
        commit: out.head.commit,
        rev: out.head.rev.clone(),
        seq,
        results,
    })
}
