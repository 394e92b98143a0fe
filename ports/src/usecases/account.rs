//! The shared per-account context of the record use cases ([`super::writes`], [`super::reads`],
//! [`super::proofs`], [`super::blobs`], [`super::transfer`]): their dependencies and everything
//! they keep about accounts between calls — the enrollment cache, the signing-key cache, the
//! per-DID writer locks, the write rate limiter, the MST node cache and the live event sink.
//!
//! It sits at the bottom of the use-case modules: it imports none of them (only the node cache
//! and the stream's [`EventSink`]), and every service above borrows one [`AccountContext`], so
//! the caches and locks are shared however the services are reached
//! (`ports/tests/usecase_layering.rs` keeps the direction).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use stratos_domain::Error as DomainError;
use stratos_domain::boundary::Viewer;
use stratos_domain::crypto::Keypair;
use stratos_domain::lexicon::Catalog;
use stratos_domain::rate_limit::{RateLimit, RateLimiter};
use stratos_domain::repo::{self, CommitOutput, RecordWrite, RepoHead};
use stratos_domain::syntax::{Did, Tid};
use stratos_domain::write::WritePolicy;

use super::UseCaseError;
use super::node_cache::{self, ActorNodes, DEFAULT_NODE_CACHE_BYTES, NodeCache};
use super::stream::{self, EventSink};
use crate::blob_store::BlobStore;
use crate::enrollment_store::{Enrollment, EnrollmentStore};
use crate::env::Clock;
use crate::keys::SigningKeyStore;
use crate::repo_store::{CommitUnit, RepoStore};

/// How long another instance's enrollment change may go unseen by this one.
pub const ENROLLMENT_TTL_MS: i64 = 2_000;
const ENROLLMENT_CACHE_LIMIT: usize = 100_000;

/// Signing keys kept before the cache is cleared.
const SIGNER_CACHE_LIMIT: usize = 10_000;

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

/// The dependencies and per-account state every record service shares.
#[derive(Debug)]
pub(crate) struct AccountContext {
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
    /// this process drop the entry at once ([`AccountContext::forget_enrollment`]); changes made
    /// by another instance are seen within [`ENROLLMENT_TTL_MS`].
    enrollments: Mutex<HashMap<String, (Option<Enrollment>, i64)>>,
    /// The live stream, if any: given each committed event after its transaction committed.
    events: Option<Arc<dyn EventSink>>,
}

impl AccountContext {
    pub(super) fn new(deps: RecordDeps) -> Self {
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

    pub(super) fn set_event_sink(&mut self, sink: Arc<dyn EventSink>) {
        self.events = Some(sink);
    }

    // --- enrollments -------------------------------------------------------------------------

    /// The enrollment of `did`; `NotEnrolled` when there is none.
    pub(super) async fn enrollment(&self, did: &Did) -> Result<Enrollment, UseCaseError> {
        self.cached_enrollment(did)
            .await?
            .ok_or_else(|| UseCaseError::NotEnrolled(did.clone()))
    }

    /// The boundaries `viewer` holds (none for anonymous viewers and outsiders).
    pub(super) async fn viewer_boundaries(
        &self,
        viewer: Option<&Did>,
    ) -> Result<BTreeSet<String>, UseCaseError> {
        match viewer {
            None => Ok(BTreeSet::new()),
            Some(v) => Ok(self
                .cached_enrollment(v)
                .await?
                .map(|e| e.boundaries.into_iter().map(String::from).collect())
                .unwrap_or_default()),
        }
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

    /// Drops the cached enrollment of `did`.
    pub(super) fn forget_enrollment(&self, did: &Did) {
        node_cache::lock(&self.enrollments).remove(did.as_str());
    }

    /// Drops everything cached about an actor.
    pub(super) fn forget_actor(&self, did: &Did) {
        self.cache.forget(did.as_str());
        node_cache::lock(&self.signers).remove(did.as_str());
        self.forget_enrollment(did);
    }

    // --- signing keys, rate limit, writer locks ----------------------------------------------

    /// The signing key of `did`, which must be the enrollment's current one (`expected`, its
    /// did:key) to be taken from the cache.
    pub(super) async fn signer(
        &self,
        did: &Did,
        expected: &str,
    ) -> Result<Arc<Keypair>, UseCaseError> {
        {
            let signers = node_cache::lock(&self.signers);
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
                .ok_or_else(|| UseCaseError::NotEnrolled(did.clone()))?,
        );
        let mut signers = node_cache::lock(&self.signers);
        if signers.len() >= SIGNER_CACHE_LIMIT {
            signers.clear();
        }
        signers.insert(did.to_string(), (key.did_key(), key.clone()));
        Ok(key)
    }

    /// Charges `cost` writes to `did`'s rate limit.
    pub(super) fn check_rate(&self, did: &Did, cost: u32, now_ms: i64) -> Result<(), UseCaseError> {
        node_cache::lock(&self.limiter).check(did.as_str(), cost, now_ms)?;
        Ok(())
    }

    /// The in-process writer lock of `did`.
    pub(super) fn writer_lock(&self, did: &Did) -> Arc<async_lock::Mutex<()>> {
        let mut writers = node_cache::lock(&self.writers);
        if writers.len() > 4096 {
            // Drop locks nobody holds or waits for.
            writers.retain(|_, l| Arc::strong_count(l) > 1);
        }
        writers
            .entry(did.to_string())
            .or_insert_with(|| Arc::new(async_lock::Mutex::new(())))
            .clone()
    }

    // --- repository heads and the node cache -------------------------------------------------

    /// The stored head of `did`; `NotEnrolled` when it has no repository.
    pub(super) async fn require_head(&self, did: &Did) -> Result<RepoHead, UseCaseError> {
        self.deps
            .repos
            .head(did)
            .await?
            .ok_or_else(|| UseCaseError::NotEnrolled(did.clone()))
    }

    /// The actor's cached nodes (and the head after this process's last commit).
    pub(super) fn nodes(&self, did: &Did) -> Arc<Mutex<ActorNodes>> {
        self.cache.actor(did.as_str())
    }

    /// Runs the repository core over the actor's node cache, fetching missing nodes from the
    /// store (one batch per missing node; a warm cache needs none).
    pub(super) async fn build(
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
    pub(super) fn remember(&self, did: &Did, out: &CommitOutput) {
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

    // --- the live stream ---------------------------------------------------------------------

    /// Builds the live event before the unit is consumed (only when a sink listens).
    pub(super) fn live_event(&self, repo: &Did, unit: &CommitUnit) -> Option<stream::CommitEvent> {
        let sink_present = self.events.is_some();
        match (&unit.event, sink_present) {
            (Some(event), true) => Some(stream::live_event(repo, event, &unit.new_blocks)),
            _ => None,
        }
    }

    /// Hands a committed event to the sink. Called while the actor's writer lock is held, so
    /// events of one actor reach the sink in commit order.
    pub(super) fn publish(&self, live: Option<stream::CommitEvent>, seq: u64) {
        if let (Some(sink), Some(mut event)) = (&self.events, live) {
            event.seq = seq;
            sink.commit(event);
        }
    }
}

/// The access-decision form of a viewer: anonymous, or an account with the boundaries it holds.
pub(super) fn as_viewer<'a>(viewer: Option<&'a Did>, held: &'a BTreeSet<String>) -> Viewer<'a> {
    match viewer {
        None => Viewer::Anonymous,
        Some(did) => Viewer::Account {
            did: did.as_str(),
            boundaries: held,
        },
    }
}
