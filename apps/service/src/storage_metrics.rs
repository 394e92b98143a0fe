//! Figures of the repository storage for `/metrics`: how long commits take in the storage
//! (the transaction and its flush to disk, without the signing and tree work before it), how
//! many fail, and how many block reads reach the storage — the block cache sits above this
//! wrapper, so those are its misses.
//!
//! [`TimedRepos`] wraps the configured store; every call is forwarded unchanged.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use stratos_domain::Cid;
use stratos_domain::blocks::BlockMap;
use stratos_domain::repo::RepoHead;
use stratos_domain::syntax::{Did, Nsid, RecordKey};
use stratos_ports::repo_store::{
    BlobListQuery, BlobReference, CommitUnit, ListQuery, ReleasedBlob, RepoResult, RepoStore,
    SeqEvent, StoredBlob, StoredRecord,
};

use crate::metrics::{BUCKETS, family, sample};

/// The figures, shared with the `/metrics` handler.
#[derive(Debug, Default)]
pub struct StorageFigures {
    /// Commit durations: observations at or below each bound (not cumulative), sum, count.
    commits: Mutex<([u64; BUCKETS.len()], f64, u64)>,
    commit_failures: AtomicU64,
    block_reads: AtomicU64,
    blocks_read: AtomicU64,
}

impl StorageFigures {
    fn observe_commit(&self, seconds: f64, ok: bool) {
        if !ok {
            self.commit_failures.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut c = self
            .commits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            c.0[i] += 1;
        }
        c.1 += seconds;
        c.2 += 1;
    }

    /// The storage families, in the text format.
    pub fn render(&self, out: &mut String) {
        let (buckets, sum, count) = *self
            .commits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let name = "stratos_storage_commit_duration_seconds";
        family(
            out,
            name,
            "histogram",
            "Time the storage takes to persist a commit (transaction and flush), successful ones.",
        );
        let mut cumulative = 0;
        for (bound, n) in BUCKETS.iter().zip(buckets) {
            cumulative += n;
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {count}");
        for (name, help, value) in [
            (
                "stratos_storage_commit_failures_total",
                "Commits the storage refused or failed (a lost compare-and-swap included).",
                &self.commit_failures,
            ),
            (
                "stratos_storage_block_reads_total",
                "Block reads that reached the storage (block-cache misses).",
                &self.block_reads,
            ),
            (
                "stratos_storage_blocks_read_total",
                "Blocks those reads asked for.",
                &self.blocks_read,
            ),
        ] {
            sample(
                out,
                name,
                "counter",
                help,
                value.load(Ordering::Relaxed) as f64,
            );
        }
    }
}

/// A [`RepoStore`] that forwards every call to `inner` and records [`StorageFigures`].
pub struct TimedRepos {
    inner: Arc<dyn RepoStore>,
    figures: Arc<StorageFigures>,
}

impl std::fmt::Debug for TimedRepos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimedRepos").finish_non_exhaustive()
    }
}

impl TimedRepos {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn RepoStore>, figures: Arc<StorageFigures>) -> Self {
        Self { inner, figures }
    }
}

#[async_trait]
impl RepoStore for TimedRepos {
    async fn create_actor(&self, did: &Did) -> RepoResult<()> {
        self.inner.create_actor(did).await
    }
    async fn destroy_actor(&self, did: &Did) -> RepoResult<()> {
        self.inner.destroy_actor(did).await
    }
    async fn actor_exists(&self, did: &Did) -> RepoResult<bool> {
        self.inner.actor_exists(did).await
    }
    async fn head(&self, did: &Did) -> RepoResult<Option<RepoHead>> {
        self.inner.head(did).await
    }
    async fn get_blocks(&self, did: &Did, cids: &[Cid]) -> RepoResult<BlockMap> {
        self.figures.block_reads.fetch_add(1, Ordering::Relaxed);
        self.figures
            .blocks_read
            .fetch_add(cids.len() as u64, Ordering::Relaxed);
        self.inner.get_blocks(did, cids).await
    }
    async fn apply_commit(&self, did: &Did, unit: CommitUnit) -> RepoResult<u64> {
        let started = Instant::now();
        let result = self.inner.apply_commit(did, unit).await;
        self.figures
            .observe_commit(started.elapsed().as_secs_f64(), result.is_ok());
        result
    }
    async fn get_record(
        &self,
        did: &Did,
        collection: &Nsid,
        rkey: &RecordKey,
    ) -> RepoResult<Option<StoredRecord>> {
        self.inner.get_record(did, collection, rkey).await
    }
    async fn list_records(&self, did: &Did, query: &ListQuery) -> RepoResult<Vec<StoredRecord>> {
        self.inner.list_records(did, query).await
    }
    async fn events_after(
        &self,
        did: &Did,
        cursor: u64,
        limit: usize,
    ) -> RepoResult<Vec<SeqEvent>> {
        self.inner.events_after(did, cursor, limit).await
    }
    async fn latest_seq(&self, did: &Did) -> RepoResult<u64> {
        self.inner.latest_seq(did).await
    }
    async fn all_blocks(&self, did: &Did) -> RepoResult<BlockMap> {
        self.inner.all_blocks(did).await
    }
    async fn track_blob(&self, did: &Did, upload: StoredBlob) -> RepoResult<Option<StoredBlob>> {
        self.inner.track_blob(did, upload).await
    }
    async fn blob(&self, did: &Did, cid: &Cid) -> RepoResult<Option<StoredBlob>> {
        self.inner.blob(did, cid).await
    }
    async fn records_referencing_blob(
        &self,
        did: &Did,
        cid: &Cid,
    ) -> RepoResult<Vec<BlobReference>> {
        self.inner.records_referencing_blob(did, cid).await
    }
    async fn list_blobs(&self, did: &Did, query: &BlobListQuery) -> RepoResult<Vec<Cid>> {
        self.inner.list_blobs(did, query).await
    }
    async fn release_blobs(
        &self,
        did: &Did,
        uploads_before_ms: i64,
    ) -> RepoResult<Vec<ReleasedBlob>> {
        self.inner.release_blobs(did, uploads_before_ms).await
    }
}
