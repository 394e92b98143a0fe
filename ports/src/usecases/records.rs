//! Record use cases: writes (one signed commit per call, all or nothing) and boundary-filtered
//! reads.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use ipld_core::ipld::Ipld;
use serde_json::Value;

use stratos_domain::boundary::{ReadFilter, Viewer, can_read, read_filter};
use stratos_domain::crypto::Keypair;
use stratos_domain::lexicon::Catalog;
use stratos_domain::rate_limit::{RateLimit, RateLimiter};
use stratos_domain::repo::{self, Action, CommitOutput, RecordWrite, RepoHead};
use stratos_domain::syntax::{AtUri, Datetime, Did, Nsid, RecordKey, Tid};
use stratos_domain::write::{WriteContext, WritePolicy, reply_parent};
use stratos_domain::{Cid, Error as DomainError, car, data, import, mst, stub, tid};

use super::UseCaseError;
use super::node_cache::{self, DEFAULT_NODE_CACHE_BYTES, NodeCache};
use super::stream::{self, EventSink};
use crate::blob_store::BlobStore;
use crate::enrollment_store::{Enrollment, EnrollmentStore};
use crate::env::Clock;
use crate::keys::SigningKeyStore;
use crate::outbox::{OutboxAction, OutboxItem};
use crate::repo_store::{CommitUnit, EventOp, IndexChange, ListQuery, RepoStore, SeqEvent};

/// How often a write is rebuilt after losing a compare-and-swap race before giving up.
const MAX_ATTEMPTS: usize = 5;

/// One write of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOp {
    /// Create a record; a TID key is generated when `rkey` is `None`.
    Create {
        /// Collection NSID.
        collection: String,
        /// Record key.
        rkey: Option<String>,
        /// The record as atproto JSON.
        value: Value,
    },
    /// Replace a record.
    Update {
        /// Collection NSID.
        collection: String,
        /// Record key.
        rkey: String,
        /// The record as atproto JSON.
        value: Value,
    },
    /// Delete a record.
    Delete {
        /// Collection NSID.
        collection: String,
        /// Record key.
        rkey: String,
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
    pub records: Vec<(String, String, Option<Cid>)>,
}

/// The outcome of one write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteResult {
    /// `create`, `update` or `delete`.
    pub action: Action,
    /// The record URI.
    pub uri: String,
    /// The new record CID (none for deletes).
    pub cid: Option<Cid>,
}

/// The outcome of a committed batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitResult {
    /// The commit CID.
    pub commit: Cid,
    /// The commit revision.
    pub rev: String,
    /// The sequence number of the commit's event.
    pub seq: u64,
    /// One result per write, in order.
    pub results: Vec<WriteResult>,
}

/// A record a viewer may read.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordView {
    /// The record URI.
    pub uri: String,
    /// The record CID.
    pub cid: Cid,
    /// The record as atproto JSON.
    pub value: Value,
}

/// A page of records.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordPage {
    /// The records.
    pub records: Vec<RecordView>,
    /// The cursor for the next page, when the page was full.
    pub cursor: Option<String>,
}

/// Most URIs one hydration request may name.
pub const MAX_HYDRATE: usize = 100;

/// The result of a hydration request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Hydrated {
    /// Records the viewer may read, in request order.
    pub records: Vec<RecordView>,
    /// URIs that are missing or that the viewer may not read.
    pub not_found: Vec<String>,
}

/// Everything the record use cases need.
#[derive(Clone)]
pub struct RecordDeps {
    /// Per-actor repositories.
    pub repos: Arc<dyn RepoStore>,
    /// Enrollments and held boundaries.
    pub enrollments: Arc<dyn EnrollmentStore>,
    /// Account signing keys.
    pub keys: Arc<dyn SigningKeyStore>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Lexicons records are validated against.
    pub catalog: Arc<Catalog>,
    /// The service's write rules.
    pub policy: WritePolicy,
    /// `{serviceDid}#{fragment}` for PDS stubs.
    pub service_ref: String,
    /// Writes allowed per account.
    pub rate_limit: RateLimit,
    /// Blob bytes (uploads, and the blobs records reference).
    pub blobs: Arc<dyn BlobStore>,
}

impl std::fmt::Debug for RecordDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordDeps")
            .field("service_ref", &self.service_ref)
            .finish_non_exhaustive()
    }
}

/// The record use cases.
#[derive(Debug)]
pub struct Records {
    pub(super) deps: RecordDeps,
    /// MST nodes per actor, so steady-state writes need no block reads at all.
    cache: NodeCache,
    /// Imported signing keys by DID with their did:key: importing a P-256 key derives its public
    /// point (~0.1 ms), too slow to repeat on every write. An entry is used only while it matches
    /// the enrollment's current key, so re-enrollment with a new key is picked up at once.
    signers: Mutex<HashMap<String, (String, Arc<Keypair>)>>,
    /// One writer per DID at a time in this process: losers of the head compare-and-swap would
    /// only redo their work. The compare-and-swap still decides across processes.
    writers: Mutex<HashMap<String, Arc<async_lock::Mutex<()>>>>,
    limiter: Mutex<RateLimiter>,
    /// Enrollments read recently: `(enrollment or none, expiry ms)`. Every read and write needs
    /// the caller's enrollment; this saves a storage round trip per request. Changes made through
    /// this process drop the entry at once ([`Records::forget_enrollment`]); changes made by
    /// another instance are seen within [`ENROLLMENT_TTL_MS`].
    enrollments: Mutex<HashMap<String, (Option<Enrollment>, i64)>>,
    /// The live stream, if any: given each committed event after its transaction committed.
    events: Option<Arc<dyn EventSink>>,
}

/// How long another instance's enrollment change may go unseen by this one.
pub const ENROLLMENT_TTL_MS: i64 = 2_000;
const ENROLLMENT_CACHE_LIMIT: usize = 100_000;

/// Signing keys kept before the cache is cleared.
const SIGNER_CACHE_LIMIT: usize = 10_000;

/// A validated write, ready for the repository core.
struct Prepared {
    write: RecordWrite,
    boundaries: Vec<String>,
    /// Blobs the record references (creates/updates).
    blobs: Vec<data::Blob>,
    /// Stub to publish (creates/updates).
    stub_json: Option<String>,
}

impl Records {
    /// Builds the use cases over `deps`.
    pub fn new(deps: RecordDeps) -> Self {
        let limit = deps.rate_limit;
        Self {
            deps,
            cache: NodeCache::new(DEFAULT_NODE_CACHE_BYTES),
            signers: Mutex::new(HashMap::new()),
            writers: Mutex::new(HashMap::new()),
            limiter: Mutex::new(RateLimiter::new(limit)),
            enrollments: Mutex::new(HashMap::new()),
            events: None,
        }
    }

    /// Publishes every committed event to `sink` (the sync stream). Without one, commits cost
    /// nothing extra.
    pub fn with_event_sink(mut self, sink: Arc<dyn EventSink>) -> Self {
        self.events = Some(sink);
        self
    }

    /// Builds the live event before the unit is consumed (only when a sink listens).
    fn live_event(&self, repo: &Did, unit: &CommitUnit) -> Option<stream::CommitEvent> {
        let sink_present = self.events.is_some();
        match (&unit.event, sink_present) {
            (Some(event), true) => Some(stream::live_event(repo, event, &unit.new_blocks)),
            _ => None,
        }
    }

    /// Hands a committed event to the sink. Called while the actor's writer lock is held, so
    /// events of one actor reach the sink in commit order.
    fn publish(&self, live: Option<stream::CommitEvent>, seq: u64) {
        if let (Some(sink), Some(mut event)) = (&self.events, live) {
            event.seq = seq;
            sink.commit(event);
        }
    }

    /// Creates one record.
    pub async fn create_record(
        &self,
        author: &Did,
        repo: &Did,
        collection: &str,
        rkey: Option<&str>,
        value: Value,
    ) -> Result<CommitResult, UseCaseError> {
        let op = WriteOp::Create {
            collection: collection.to_owned(),
            rkey: rkey.map(str::to_owned),
            value,
        };
        self.apply_writes(author, repo, vec![op]).await
    }

    /// Creates or replaces one record.
    pub async fn put_record(
        &self,
        author: &Did,
        repo: &Did,
        collection: &str,
        rkey: &str,
        value: Value,
    ) -> Result<CommitResult, UseCaseError> {
        self.put_record_with(author, repo, collection, rkey, value, &Swaps::default())
            .await
    }

    /// [`Records::put_record`] with compare-and-swap preconditions.
    pub async fn put_record_with(
        &self,
        author: &Did,
        repo: &Did,
        collection: &str,
        rkey: &str,
        value: Value,
        swaps: &Swaps,
    ) -> Result<CommitResult, UseCaseError> {
        let exists = self
            .deps
            .repos
            .get_record(repo, collection, rkey)
            .await?
            .is_some();
        let op = if exists {
            WriteOp::Update {
                collection: collection.to_owned(),
                rkey: rkey.to_owned(),
                value,
            }
        } else {
            WriteOp::Create {
                collection: collection.to_owned(),
                rkey: Some(rkey.to_owned()),
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
        collection: &str,
        rkey: &str,
    ) -> Result<Option<CommitResult>, UseCaseError> {
        check_owner(author, repo)?;
        if self
            .deps
            .repos
            .get_record(repo, collection, rkey)
            .await?
            .is_none()
        {
            // Still require enrollment, so the answer does not leak anything to outsiders.
            self.enrollment(author).await?;
            return Ok(None);
        }
        let op = WriteOp::Delete {
            collection: collection.to_owned(),
            rkey: rkey.to_owned(),
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

    /// [`Records::apply_writes`] with compare-and-swap preconditions.
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
        let enrollment = self.enrollment(author).await?;
        let key = self.signer(author, &enrollment.signing_key).await?;
        let held: BTreeSet<String> = enrollment.boundaries.into_iter().collect();
        let now = Datetime::from_unix_millis(self.deps.clock.now_ms());
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
        self.limiter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .check(author.as_str(), cost, self.deps.clock.now_ms())?;
        let lock = self.writer_lock(repo);
        let _serial = lock.lock().await;
        let refs: Vec<&data::Blob> = prepared.iter().flat_map(|p| &p.blobs).collect();
        self.make_blobs_permanent(repo, &refs).await?;
        // Only an update or a delete can drop a blob's last reference.
        let may_release = prepared
            .iter()
            .any(|p| !matches!(p.write, RecordWrite::Create { .. }));
        let writes: Vec<RecordWrite> = prepared.iter().map(|p| p.write.clone()).collect();
        let nodes = self.cache.actor(repo.as_str());
        for _ in 0..MAX_ATTEMPTS {
            let cached = node_cache::lock(&nodes).head.clone();
            let from_cache = cached.is_some();
            let head = match cached {
                Some(head) => head,
                None => self.require_head(repo).await?,
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
            let out = match self.build(repo, Some(&head), &writes, rev, &key).await {
                Ok(out) => out,
                // A cached head may be stale (another process wrote): re-read it before
                // believing an error such as "record not found".
                Err(_) if from_cache => {
                    node_cache::lock(&nodes).head = None;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let unit = commit_unit(repo, &out, &prepared, now);
            let live = self.live_event(repo, &unit);
            match self.deps.repos.apply_commit(repo, unit).await {
                Ok(seq) => {
                    self.remember(repo, &out);
                    self.publish(live, seq);
                    if may_release {
                        let now = self.deps.clock.now_ms();
                        self.reclaim_blobs(repo, now.saturating_sub(super::blobs::UPLOAD_TTL_MS))
                            .await;
                    }
                    return Ok(results(repo, &out, seq));
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
        self.deps.repos.create_actor(did).await?;
        if let Some(head) = self.deps.repos.head(did).await? {
            return Ok(head);
        }
        let out = self.build(did, None, &[], tid::next(), key).await?;
        let unit = CommitUnit {
            prev: None,
            head: out.head.clone(),
            new_blocks: out.new_blocks.clone(),
            removed_blocks: Vec::new(),
            index: Vec::new(),
            event: None,
            outbox: Vec::new(),
        };
        self.deps.repos.apply_commit(did, unit).await?;
        Ok(out.head)
    }

    /// One record, if the viewer may read it. A denial is reported exactly like a missing
    /// record.
    pub async fn get_record(
        &self,
        viewer: Option<&Did>,
        owner: &Did,
        collection: &str,
        rkey: &str,
        expected_cid: Option<&Cid>,
    ) -> Result<Option<RecordView>, UseCaseError> {
        let held = self.viewer_boundaries(viewer).await?;
        self.read_one(
            as_viewer(viewer, &held),
            owner,
            collection,
            rkey,
            expected_cid,
        )
        .await
    }

    async fn read_one(
        &self,
        viewer: Viewer<'_>,
        owner: &Did,
        collection: &str,
        rkey: &str,
        expected_cid: Option<&Cid>,
    ) -> Result<Option<RecordView>, UseCaseError> {
        if !self.deps.repos.actor_exists(owner).await? {
            return Ok(None);
        }
        let Some(record) = self.deps.repos.get_record(owner, collection, rkey).await? else {
            return Ok(None);
        };
        if expected_cid.is_some_and(|c| *c != record.cid) {
            return Ok(None);
        }
        if !can_read(viewer, owner.as_str(), &record.boundaries) {
            return Ok(None);
        }
        Ok(Some(view(
            owner,
            &record.collection,
            &record.rkey,
            record.cid,
            &record.bytes,
        )?))
    }

    /// `com.atproto.sync.getRecord`: a CAR proving the record under the current commit (the
    /// commit block, the MST path, the record), after the same access decision as a read.
    /// `None` when the record is missing or not readable by `viewer`.
    pub async fn record_proof(
        &self,
        viewer: Option<&Did>,
        owner: &Did,
        collection: &str,
        rkey: &str,
    ) -> Result<Option<Vec<u8>>, UseCaseError> {
        let Some(view) = self
            .get_record(viewer, owner, collection, rkey, None)
            .await?
        else {
            return Ok(None);
        };
        let head = self.require_head(owner).await?;
        let key = format!("{collection}/{rkey}");
        let mut blocks = self
            .deps
            .repos
            .get_blocks(owner, &[head.commit, view.cid])
            .await?;
        for _ in 0..64 {
            match mst::prove(&blocks, head.data, &key) {
                Ok(proof) => {
                    // The index and the tree are read at different moments: a record changed
                    // in between is a retryable conflict, never a proof of other content.
                    if mst::verify_proof(&head.data, &key, &proof)? != Some(view.cid) {
                        return Err(UseCaseError::Conflict(owner.to_string()));
                    }
                    let mut car = car::CarWriter::new(Vec::new(), &[head.commit])?;
                    for cid in std::iter::once(&head.commit)
                        .chain(proof.iter().map(|(c, _)| c))
                        .chain(std::iter::once(&view.cid))
                    {
                        let bytes =
                            blocks.get(cid).or_else(|| proof.get(cid)).ok_or_else(|| {
                                UseCaseError::Internal(format!("block {cid} vanished"))
                            })?;
                        car.write_block(cid, bytes)?;
                    }
                    return Ok(Some(car.finish()));
                }
                Err(DomainError::MissingBlock(cid)) => {
                    let fetched = self.deps.repos.get_blocks(owner, &[cid]).await?;
                    if !fetched.contains(&cid) {
                        return Err(UseCaseError::Internal(format!(
                            "repository of {owner} is missing block {cid}"
                        )));
                    }
                    blocks.extend(fetched);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(UseCaseError::Internal(format!(
            "repository of {owner} needed too many block fetches"
        )))
    }

    /// A page of one collection, filtered by the viewer's boundaries inside the store so pages
    /// come back full.
    pub async fn list_records(
        &self,
        viewer: Option<&Did>,
        owner: &Did,
        collection: &str,
        limit: usize,
        cursor: Option<String>,
        reverse: bool,
    ) -> Result<RecordPage, UseCaseError> {
        let limit = limit.clamp(1, 100);
        // Cursors are the last record key of a page; anything else is a client error, checked
        // before the repository is looked at so every DID answers alike.
        if let Some(c) = &cursor
            && RecordKey::parse(c).is_err()
        {
            return Err(UseCaseError::InvalidRequest(
                "`cursor` is not a record key".to_owned(),
            ));
        }
        let empty = RecordPage {
            records: Vec::new(),
            cursor: None,
        };
        if !self.deps.repos.actor_exists(owner).await? {
            return Ok(empty);
        }
        let held = self.viewer_boundaries(viewer).await?;
        let v = as_viewer(viewer, &held);
        let filter = read_filter(v, owner.as_str());
        if filter == ReadFilter::Nothing {
            return Ok(empty);
        }
        let query = ListQuery {
            collection: collection.to_owned(),
            limit,
            cursor,
            reverse,
            filter,
        };
        let rows = self.deps.repos.list_records(owner, &query).await?;
        let full = rows.len() == limit;
        let cursor = if full {
            rows.last().map(|r| r.rkey.clone())
        } else {
            None
        };
        let mut records = Vec::with_capacity(rows.len());
        for row in rows {
            // The store applied the filter; the decision itself is still `can_read`'s.
            if can_read(v, owner.as_str(), &row.boundaries) {
                records.push(view(
                    owner,
                    &row.collection,
                    &row.rkey,
                    row.cid,
                    &row.bytes,
                )?);
            }
        }
        Ok(RecordPage { records, cursor })
    }

    /// Hydrates up to 100 record URIs for a viewer. Records the viewer may not read are listed
    /// with the missing ones in `not_found`: a denial never differs from absence.
    pub async fn hydrate(
        &self,
        viewer: Option<&Did>,
        uris: &[String],
    ) -> Result<Hydrated, UseCaseError> {
        if uris.len() > MAX_HYDRATE {
            return Err(UseCaseError::InvalidRequest(format!(
                "at most {MAX_HYDRATE} URIs per request"
            )));
        }
        let held = self.viewer_boundaries(viewer).await?;
        let v = as_viewer(viewer, &held);
        let mut out = Hydrated::default();
        for uri in uris {
            let parsed = AtUri::parse(uri)?;
            let (Ok(owner), Some(collection), Some(rkey)) = (
                Did::parse(parsed.authority().as_str()),
                parsed.collection(),
                parsed.rkey(),
            ) else {
                return Err(UseCaseError::InvalidRequest(format!(
                    "{uri} is not a record URI with a DID authority"
                )));
            };
            match self
                .read_one(v, &owner, collection.as_str(), rkey.as_str(), None)
                .await?
            {
                Some(view) => out.records.push(view),
                None => out.not_found.push(uri.clone()),
            }
        }
        Ok(out)
    }

    /// Drops everything cached about an actor (after its repository is destroyed).
    pub fn forget_actor(&self, did: &Did) {
        self.cache.forget(did.as_str());
        node_cache::lock(&self.signers).remove(did.as_str());
        self.forget_enrollment(did);
    }

    /// Drops the cached enrollment of `did` (after enrollment, boundary changes, unenrollment).
    pub fn forget_enrollment(&self, did: &Did) {
        node_cache::lock(&self.enrollments).remove(did.as_str());
    }

    /// The enrollment of `did`, from the short-lived cache or the store.
    async fn cached_enrollment(&self, did: &Did) -> Result<Option<Enrollment>, UseCaseError> {
        let now = self.deps.clock.now_ms();
        if let Some((e, expires)) = node_cache::lock(&self.enrollments).get(did.as_str())
            && *expires > now
        {
            return Ok(e.clone());
        }
        let e = self.deps.enrollments.get(did).await?;
        let mut cache = node_cache::lock(&self.enrollments);
        if cache.len() >= ENROLLMENT_CACHE_LIMIT {
            cache.retain(|_, (_, expires)| *expires > now);
            if cache.len() >= ENROLLMENT_CACHE_LIMIT {
                cache.clear();
            }
        }
        cache.insert(
            did.to_string(),
            (e.clone(), now.saturating_add(ENROLLMENT_TTL_MS)),
        );
        Ok(e)
    }

    /// Charges `cost` writes to `did`'s rate limit.
    pub(super) fn check_rate(&self, did: &Did, cost: u32, now_ms: i64) -> Result<(), UseCaseError> {
        self.limiter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .check(did.as_str(), cost, now_ms)?;
        Ok(())
    }

    pub(super) fn writer_lock(&self, did: &Did) -> Arc<async_lock::Mutex<()>> {
        let mut writers = self.writers.lock().unwrap_or_else(|p| p.into_inner());
        if writers.len() > 4096 {
            // Drop locks nobody holds or waits for.
            writers.retain(|_, l| Arc::strong_count(l) > 1);
        }
        writers
            .entry(did.to_string())
            .or_insert_with(|| Arc::new(async_lock::Mutex::new(())))
            .clone()
    }

    /// The whole repository as a CAR v1 (commit first). Only the owner may export: the CAR holds
    /// every private record in clear.
    pub async fn export_repo(&self, requester: &Did, did: &Did) -> Result<Vec<u8>, UseCaseError> {
        if requester != did {
            return Err(UseCaseError::Forbidden(format!(
                "only the repository's owner may export it: {requester} is not {did}"
            )));
        }
        let head = self.require_head(did).await?;
        let blocks = self.deps.repos.all_blocks(did).await?;
        Ok(car::write_repo(&blocks, &head.commit, Vec::new())?)
    }

    /// Imports the records of a repository CAR into the caller's repository, which must hold no
    /// records yet. Every record goes through the same write rules as a normal write and lands
    /// in one commit signed with the caller's key. Returns the number of records imported.
    ///
    /// The CAR is untrusted: it is read with [`import::read_repo_car`] (every structural rule
    /// checked, work and memory linear in its size). An import is charged to the caller's
    /// write rate limit as a tenth of the window's allowance, whatever its outcome, so one
    /// account cannot make the service parse large CARs back to back. The work is CPU-bound
    /// and proportional to the CAR: callers serving requests run it off their request workers.
    pub async fn import_repo(&self, author: &Did, car_bytes: &[u8]) -> Result<usize, UseCaseError> {
        let enrollment = self.enrollment(author).await?;
        let cost = (self.deps.rate_limit.max / 10).max(1);
        self.check_rate(author, cost, self.deps.clock.now_ms())?;
        let head = self.require_head(author).await?;
        if head.data != mst::empty_root() {
            return Err(UseCaseError::RepoAlreadyExists(author.to_string()));
        }
        let parsed = import::read_repo_car(car_bytes, import::ImportLimits::default())?;
        if parsed.did != *author {
            return Err(UseCaseError::InvalidRequest(format!(
                "the CAR holds the repository of {}, not {author}",
                parsed.did
            )));
        }
        let entries = parsed.records;
        if entries.is_empty() {
            return Ok(0);
        }
        let held: BTreeSet<String> = enrollment.boundaries.into_iter().collect();
        let now = Datetime::from_unix_millis(self.deps.clock.now_ms());
        let mut prepared = Vec::with_capacity(entries.len());
        for record in &entries {
            let (collection, rkey) = split_path(&record.path);
            let value = data::ipld_to_json(&data::decode(record.bytes)?)?;
            let op = WriteOp::Create {
                collection,
                rkey: Some(rkey),
                value,
            };
            prepared.push(self.prepare(author, op, &held, &now).await?);
        }
        let key = self.signer(author, &enrollment.signing_key).await?;
        let count = prepared.len();
        let lock = self.writer_lock(author);
        let _serial = lock.lock().await;
        // Blobs the imported records reference must have been uploaded first.
        let refs: Vec<&data::Blob> = prepared.iter().flat_map(|p| &p.blobs).collect();
        self.make_blobs_permanent(author, &refs).await?;
        let writes: Vec<RecordWrite> = prepared.iter().map(|p| p.write.clone()).collect();
        let rev = tid::next_after(&head.rev);
        let out = self.build(author, Some(&head), &writes, rev, &key).await?;
        let unit = commit_unit(author, &out, &prepared, &now);
        let live = self.live_event(author, &unit);
        let seq = self.deps.repos.apply_commit(author, unit).await?;
        self.publish(live, seq);
        self.remember(author, &out);
        Ok(count)
    }

    async fn signer(&self, did: &Did, expected: &str) -> Result<Arc<Keypair>, UseCaseError> {
        {
            let signers = self.signers.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((did_key, key)) = signers.get(did.as_str())
                && did_key == expected
            {
                return Ok(key.clone());
            }
        }
        let key = Arc::new(
            self.deps
                .keys
                .get(did)
                .await?
                .ok_or_else(|| UseCaseError::NotEnrolled(did.to_string()))?,
        );
        let mut signers = self.signers.lock().unwrap_or_else(|p| p.into_inner());
        if signers.len() >= SIGNER_CACHE_LIMIT {
            signers.clear();
        }
        signers.insert(did.to_string(), (key.did_key(), key.clone()));
        Ok(key)
    }

    pub(super) async fn enrollment(&self, did: &Did) -> Result<Enrollment, UseCaseError> {
        self.cached_enrollment(did)
            .await?
            .ok_or_else(|| UseCaseError::NotEnrolled(did.to_string()))
    }

    async fn require_head(&self, did: &Did) -> Result<RepoHead, UseCaseError> {
        self.deps
            .repos
            .head(did)
            .await?
            .ok_or_else(|| UseCaseError::NotEnrolled(did.to_string()))
    }

    pub(super) async fn viewer_boundaries(
        &self,
        viewer: Option<&Did>,
    ) -> Result<BTreeSet<String>, UseCaseError> {
        match viewer {
            None => Ok(BTreeSet::new()),
            Some(v) => Ok(self
                .cached_enrollment(v)
                .await?
                .map(|e| e.boundaries.into_iter().collect())
                .unwrap_or_default()),
        }
    }

    async fn prepare(
        &self,
        repo: &Did,
        op: WriteOp,
        held: &BTreeSet<String>,
        now: &Datetime,
    ) -> Result<Prepared, UseCaseError> {
        let (collection, rkey, value, create) = match op {
            WriteOp::Delete { collection, rkey } => {
                let collection = Nsid::parse(&collection)?;
                let rkey = RecordKey::parse(&rkey)?;
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
        let collection = Nsid::parse(&collection)?;
        let rkey = match rkey {
            Some(r) => RecordKey::parse(&r)?,
            None => RecordKey::parse(tid::next().as_str())?,
        };
        let mut record = data::json_to_object(&value)?;
        if let Ipld::Map(map) = &mut record {
            // Records without `$type` made every later read fail in the original; fill it in.
            map.entry("$type".to_owned())
                .or_insert_with(|| Ipld::String(collection.to_string()));
        }
        if self.deps.catalog.doc(collection.as_str()).is_some() {
            self.deps
                .catalog
                .check_record_key(collection.as_str(), rkey.as_str())?;
        }
        let parent = self.parent_boundaries(&record, repo, held).await?;
        let boundaries = self.deps.policy.check_record(
            &self.deps.catalog,
            &collection,
            &record,
            WriteContext {
                author_boundaries: held,
                parent_boundaries: parent.as_deref(),
            },
        )?;
        let (cid, bytes) = data::record_cid(&record)?;
        let uri = AtUri::for_record(repo, &collection, &rkey);
        let stub = stub::stub_for(&record, &uri, &cid, &self.deps.service_ref, now)?;
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
            boundaries: boundaries.iter().map(ToString::to_string).collect(),
            blobs: super::blobs::blob_refs(&record),
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
    ) -> Result<Option<Vec<String>>, UseCaseError> {
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
        if !self.deps.repos.actor_exists(&did).await? {
            return Ok(None);
        }
        let viewer = Viewer::Account {
            did: author.as_str(),
            boundaries: held,
        };
        Ok(self
            .deps
            .repos
            .get_record(&did, collection.as_str(), rkey.as_str())
            .await?
            .filter(|r| can_read(viewer, did.as_str(), &r.boundaries))
            .map(|r| r.boundaries))
    }

    /// Runs the repository core over the actor's node cache, fetching missing nodes from the
    /// store (one batch per missing node; a warm cache needs none).
    async fn build(
        &self,
        did: &Did,
        head: Option<&RepoHead>,
        writes: &[RecordWrite],
        rev: Tid,
        key: &Keypair,
    ) -> Result<CommitOutput, UseCaseError> {
        let nodes = self.cache.actor(did.as_str());
        // Each retry fetches at least one missing block; a tree deeper than this is corrupt.
        for _ in 0..64 {
            let attempt = {
                let cached = node_cache::lock(&nodes);
                repo::apply_writes(&cached.blocks, did, head, writes, rev.clone(), key)
            };
            match attempt {
                Ok(out) => return Ok(out),
                Err(DomainError::MissingBlock(cid)) => {
                    let fetched = self.deps.repos.get_blocks(did, &[cid]).await?;
                    if !fetched.contains(&cid) {
                        return Err(UseCaseError::Internal(format!(
                            "repository of {did} is missing block {cid}"
                        )));
                    }
                    self.cache.update(did.as_str(), fetched, &[], None);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(UseCaseError::Internal(format!(
            "repository of {did} needed too many block fetches"
        )))
    }

    /// Keeps the new tree nodes (not record bodies or the commit: the repository core never
    /// reads them) and drops the nodes the commit removed.
    fn remember(&self, did: &Did, out: &CommitOutput) {
        let mut nodes = out.new_blocks.clone();
        nodes.remove(&out.head.commit);
        for op in &out.ops {
            if let Some(cid) = op.cid {
                nodes.remove(&cid);
            }
        }
        self.cache.update(
            did.as_str(),
            nodes,
            &out.removed_nodes,
            Some(out.head.clone()),
        );
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

pub(super) fn as_viewer<'a>(viewer: Option<&'a Did>, held: &'a BTreeSet<String>) -> Viewer<'a> {
    match viewer {
        None => Viewer::Anonymous,
        Some(did) => Viewer::Account {
            did: did.as_str(),
            boundaries: held,
        },
    }
}

fn view(
    owner: &Did,
    collection: &str,
    rkey: &str,
    cid: Cid,
    bytes: &[u8],
) -> Result<RecordView, UseCaseError> {
    let value = data::ipld_to_json(&data::decode(bytes)?)?;
    Ok(RecordView {
        uri: format!("at://{owner}/{collection}/{rkey}"),
        cid,
        value,
    })
}

fn split_path(path: &str) -> (String, String) {
    match path.split_once('/') {
        Some((c, r)) => (c.to_owned(), r.to_owned()),
        None => (path.to_owned(), String::new()),
    }
}

fn commit_unit(
    repo: &Did,
    out: &CommitOutput,
    prepared: &[Prepared],
    now: &Datetime,
) -> CommitUnit {
    let mut index = Vec::with_capacity(out.ops.len());
    let mut ops = Vec::with_capacity(out.ops.len());
    let mut outbox = Vec::with_capacity(out.ops.len());
    let by_path: BTreeMap<String, &Prepared> =
        prepared.iter().map(|p| (p.write.path(), p)).collect();
    for op in &out.ops {
        let (collection, rkey) = split_path(&op.path);
        let prep = by_path.get(&op.path);
        let boundaries = prep.map(|p| p.boundaries.clone()).unwrap_or_default();
        match (op.action, op.cid) {
            (Action::Delete, _) | (_, None) => {
                index.push(IndexChange::Delete {
                    collection: collection.clone(),
                    rkey: rkey.clone(),
                });
                outbox.push(OutboxItem {
                    did: repo.to_string(),
                    action: OutboxAction::DeleteRecord { collection, rkey },
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
                        did: repo.to_string(),
                        action: OutboxAction::PutRecord {
                            collection,
                            rkey,
                            record_json: stub_json,
                        },
                    });
                }
            }
        }
        ops.push(EventOp {
            action: op.action.as_str().to_owned(),
            path: op.path.clone(),
            cid: op.cid,
            boundaries,
        });
    }
    CommitUnit {
        prev: out.prev_head.as_ref().map(|h| h.commit),
        head: out.head.clone(),
        new_blocks: out.new_blocks.clone(),
        removed_blocks: out.removed_nodes.clone(),
        index,
        event: Some(SeqEvent {
            seq: 0,
            rev: out.head.rev.to_string(),
            commit: out.head.commit,
            time: now.to_string(),
            ops,
        }),
        outbox,
    }
}

fn results(repo: &Did, out: &CommitOutput, seq: u64) -> CommitResult {
    CommitResult {
        commit: out.head.commit,
        rev: out.head.rev.to_string(),
        seq,
        results: out
            .ops
            .iter()
            .map(|op| WriteResult {
                action: op.action,
                uri: format!("at://{repo}/{}", op.path),
                cid: op.cid,
            })
            .collect(),
    }
}
