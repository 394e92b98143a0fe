//! Per-actor repository storage: blocks, the head, the record index and the actor's sequence
//! log, changed only by whole commits.
//!
//! The port is shaped around the unit of work, not around keys and values: one
//! [`RepoStore::apply_commit`] call persists everything a commit changes — new blocks, removed
//! blocks, record index rows, the sequence event, outbox items and the new head — atomically,
//! guarded by a compare-and-swap on the previous head. That is one database round trip per write.

use async_trait::async_trait;
use stratos_domain::Cid;
use stratos_domain::blocks::BlockMap;
use stratos_domain::boundary::{Boundary, ReadFilter};
use stratos_domain::repo::{Action, RepoHead};
use stratos_domain::syntax::{Datetime, Did, Nsid, RecordKey, Tid};

use crate::outbox::OutboxItem;

/// Failures of a [`RepoStore`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RepoStoreError {
    /// The actor has no store (never created, or destroyed).
    #[error("no repository for {0}")]
    ActorNotFound(Did),
    /// The head moved since the commit was built; rebuild on the new head and retry.
    #[error("concurrent write to {0}: the repository head moved")]
    Conflict(String),
    /// A record index row for a create already exists, or one for an update/delete is missing:
    /// the commit disagrees with the stored index.
    #[error("record index out of step: {0}")]
    IndexMismatch(String),
    /// A commit references a blob the actor has no upload or permanent blob for (or one that
    /// was released meanwhile): nothing of the commit was applied.
    #[error("blob not found: {0}")]
    BlobMissing(String),
    /// Stored data could not be decoded.
    #[error("corrupt store data: {0}")]
    Corrupt(String),
    /// The backend failed (I/O, connection, …); retrying later may help.
    #[error("storage backend failed: {0}")]
    Backend(#[source] crate::Cause),
}

impl RepoStoreError {
    /// True when rebuilding and retrying the operation can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Conflict(_))
    }
}

/// Result alias of this port.
pub type RepoResult<T> = Result<T, RepoStoreError>;

/// One change to the record index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexChange {
    /// Insert or replace the row for `collection/rkey`.
    Put {
        /// Collection NSID.
        collection: Nsid,
        /// Record key.
        rkey: RecordKey,
        /// The record's CID (its block is among the commit's new blocks or already stored).
        cid: Cid,
        /// The record's boundaries, for filtered listing.
        boundaries: Vec<Boundary>,
        /// CIDs of the blobs the record references (without duplicates). Each must be tracked
        /// for the actor ([`RepoStore::track_blob`]); the commit makes them permanent and replaces
        /// the path's previous blob associations with these.
        blobs: Vec<Cid>,
    },
    /// Remove the row for `collection/rkey` (and its blob associations).
    Delete {
        /// Collection NSID.
        collection: Nsid,
        /// Record key.
        rkey: RecordKey,
    },
}

/// One operation of a sequence event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventOp {
    /// What happened to the record.
    pub action: Action,
    /// Collection NSID.
    pub collection: Nsid,
    /// Record key.
    pub rkey: RecordKey,
    /// The new record CID (absent for deletes).
    pub cid: Option<Cid>,
    /// The record's CID before the commit (absent for creates, and in events stored before
    /// events carried it).
    pub prev: Option<Cid>,
    /// The record's boundaries (for stream filtering).
    pub boundaries: Vec<Boundary>,
}

/// What makes a stored event self-verifying (atproto sync v1.1): with the ops' `cid`/`prev` a
/// consumer checks the commit's signature and inverts it to the previous data root
/// ([`stratos_domain::sync::verify_commit`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventProof {
    /// Revision of the commit before this one (`None` for the first commit).
    pub since: Option<Tid>,
    /// Data root before this commit (`None` for the first commit: the empty tree).
    pub prev_data: Option<Cid>,
    /// The CAR slice: the commit, covering proofs, new records
    /// ([`stratos_domain::repo::CommitOutput::relevant_car`]).
    pub blocks: Vec<u8>,
}

/// A sequenced commit event, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeqEvent {
    /// Per-actor sequence number, starting at 1, strictly increasing.
    pub seq: u64,
    /// Commit revision.
    pub rev: Tid,
    /// Commit CID.
    pub commit: Cid,
    /// Time the event was sequenced.
    pub time: Datetime,
    /// The operations.
    pub ops: Vec<EventOp>,
    /// The proof of the commit (`None` in events stored before events carried it).
    pub proof: Option<EventProof>,
}

/// Everything one commit changes, applied atomically.
#[derive(Debug, Clone)]
pub struct CommitUnit {
    /// The head the commit was built on; the store refuses the unit if its head differs
    /// ([`RepoStoreError::Conflict`]). `None` for the first commit.
    pub prev: Option<Cid>,
    /// The new head.
    pub head: RepoHead,
    /// New blocks (records, MST nodes, the commit).
    pub new_blocks: BlockMap,
    /// Blocks no longer referenced.
    pub removed_blocks: Vec<Cid>,
    /// Record index changes.
    pub index: Vec<IndexChange>,
    /// The event to sequence (its `seq` is assigned by the store; the value given is ignored).
    pub event: Option<SeqEvent>,
    /// Outbox items to enqueue with the commit (PDS stub writes and the like).
    pub outbox: Vec<OutboxItem>,
}

impl CommitUnit {
    /// The records (`collection`, `rkey`) the unit's event reports as created: they have no
    /// index, boundary or blob rows yet. Empty without an event, so every touched path counts as
    /// possibly existing.
    pub fn created_paths(&self) -> std::collections::HashSet<(&Nsid, &RecordKey)> {
        self.event
            .iter()
            .flat_map(|e| e.ops.iter())
            .filter(|op| op.action == Action::Create)
            .map(|op| (&op.collection, &op.rkey))
            .collect()
    }

    /// Whether the unit only creates records (without blobs) whose blocks are new in it, on top
    /// of an existing head, and removes no block it also adds: the common shape, which adapters
    /// may write with fewer statements than the general case.
    pub fn only_creates_new_records(&self) -> bool {
        if self.event.is_none() || self.prev.is_none() {
            return false;
        }
        let created = self.created_paths();
        self.index.iter().all(|change| match change {
            IndexChange::Put {
                collection,
                rkey,
                cid,
                blobs,
                ..
            } => {
                blobs.is_empty()
                    && self.new_blocks.contains(cid)
                    && created.contains(&(collection, rkey))
            }
            IndexChange::Delete { .. } => false,
        }) && !self
            .removed_blocks
            .iter()
            .any(|c| self.new_blocks.contains(c))
    }
}

/// A record as read from the index, with its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// Collection NSID.
    pub collection: Nsid,
    /// Record key.
    pub rkey: RecordKey,
    /// Record CID.
    pub cid: Cid,
    /// The record's boundaries.
    pub boundaries: Vec<Boundary>,
    /// DAG-CBOR bytes of the record.
    pub bytes: Vec<u8>,
}

/// A page request over one collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// Collection NSID.
    pub collection: Nsid,
    /// Maximum records to return (≥ 1).
    pub limit: usize,
    /// Return records strictly after this rkey (before it when `reverse`).
    pub cursor: Option<RecordKey>,
    /// Ascending rkey order when true; descending (newest TIDs first) otherwise.
    pub reverse: bool,
    /// Which records are visible (from [`stratos_domain::boundary::read_filter`]); applied
    /// inside the query so pages come back full.
    pub filter: ReadFilter,
}

/// A blob of an actor as the store tracks it: an upload until a committed record references it,
/// permanent afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlob {
    /// CID of the bytes (raw codec).
    pub cid: Cid,
    /// The MIME type given at upload.
    pub mime_type: String,
    /// Size in bytes.
    pub size: u64,
    /// The upload's key in the blob store's temporary area while no committed record has
    /// referenced the blob; `None` once it is permanent.
    pub temp_key: Option<String>,
    /// Unix milliseconds of the upload.
    pub created_ms: i64,
}

/// A record that references a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobReference {
    /// Collection NSID.
    pub collection: Nsid,
    /// Record key.
    pub rkey: RecordKey,
    /// The record's boundaries (for the access decision).
    pub boundaries: Vec<Boundary>,
}

/// A page request over the blobs referenced by an actor's records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobListQuery {
    /// Maximum CIDs to return (≥ 1).
    pub limit: usize,
    /// Return CIDs strictly after this CID string (ascending string order).
    pub cursor: Option<String>,
    /// Only blobs referenced by a record written in a commit with a revision after this one.
    pub since: Option<Tid>,
    /// Only blobs referenced by at least one record this filter admits (from
    /// [`stratos_domain::boundary::read_filter`]), applied inside the query so pages come back
    /// full.
    pub filter: ReadFilter,
}

/// A blob the store stopped tracking ([`RepoStore::release_blobs`]): its bytes are to be
/// deleted, from the permanent area and, when `temp_key` is set, from the temporary one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleasedBlob {
    /// The blob's CID.
    pub cid: Cid,
    /// The upload's temporary key, for an upload that was never committed.
    pub temp_key: Option<String>,
}

/// Per-actor repository storage.
#[async_trait]
pub trait RepoStore: Send + Sync {
    /// Creates the actor's (empty) store; idempotent.
    async fn create_actor(&self, did: &Did) -> RepoResult<()>;
    /// Deletes the actor's store and everything in it; idempotent.
    async fn destroy_actor(&self, did: &Did) -> RepoResult<()>;
    /// True when the actor has a store.
    async fn actor_exists(&self, did: &Did) -> RepoResult<bool>;
    /// The current head, `None` for a store without commits.
    async fn head(&self, did: &Did) -> RepoResult<Option<RepoHead>>;
    /// Reads many blocks in one round trip; absent CIDs are simply missing from the result.
    async fn get_blocks(&self, did: &Did, cids: &[Cid]) -> RepoResult<BlockMap>;
    /// Persists a commit atomically (see [`CommitUnit`]); returns the event's sequence number
    /// (0 when the unit carried no event).
    async fn apply_commit(&self, did: &Did, unit: CommitUnit) -> RepoResult<u64>;
    /// One record by collection and rkey.
    async fn get_record(
        &self,
        did: &Did,
        collection: &Nsid,
        rkey: &RecordKey,
    ) -> RepoResult<Option<StoredRecord>>;
    /// A filtered page of one collection.
    async fn list_records(&self, did: &Did, query: &ListQuery) -> RepoResult<Vec<StoredRecord>>;
    /// Events with `seq > cursor`, ascending, at most `limit`.
    async fn events_after(&self, did: &Did, cursor: u64, limit: usize)
    -> RepoResult<Vec<SeqEvent>>;
    /// The highest sequence number (0 when none).
    async fn latest_seq(&self, did: &Did) -> RepoResult<u64>;
    /// Every block of the repository, for export (order unspecified).
    async fn all_blocks(&self, did: &Did) -> RepoResult<BlockMap>;

    /// Tracks an upload (`upload.temp_key` set) so a later commit can reference it. When the
    /// actor already has a live blob with that CID nothing changes and that blob is returned
    /// (the caller drops its new temporary bytes); a blob released-but-not-yet-reclaimed is
    /// replaced by the upload.
    async fn track_blob(&self, did: &Did, upload: StoredBlob) -> RepoResult<Option<StoredBlob>>;
    /// A live blob (upload or permanent) of the actor.
    async fn blob(&self, did: &Did, cid: &Cid) -> RepoResult<Option<StoredBlob>>;
    /// Every record of the actor referencing `cid`, ordered by collection and rkey.
    async fn records_referencing_blob(
        &self,
        did: &Did,
        cid: &Cid,
    ) -> RepoResult<Vec<BlobReference>>;
    /// A filtered page of the distinct CIDs referenced by the actor's records, ascending.
    async fn list_blobs(&self, did: &Did, query: &BlobListQuery) -> RepoResult<Vec<Cid>>;
    /// Stops tracking, and returns, every permanent blob whose last referencing record went away
    /// in a commit, and every upload created before `uploads_before_ms` that no commit
    /// referenced. The caller deletes their bytes.
    async fn release_blobs(
        &self,
        did: &Did,
        uploads_before_ms: i64,
    ) -> RepoResult<Vec<ReleasedBlob>>;
}

/// A shared store is a store: lets wrappers such as
/// [`CachedBlocks`](crate::block_cache::CachedBlocks) take an `Arc<dyn RepoStore>`.
#[async_trait]
impl<T: RepoStore + ?Sized> RepoStore for std::sync::Arc<T> {
    async fn create_actor(&self, did: &Did) -> RepoResult<()> {
        (**self).create_actor(did).await
    }
    async fn destroy_actor(&self, did: &Did) -> RepoResult<()> {
        (**self).destroy_actor(did).await
    }
    async fn actor_exists(&self, did: &Did) -> RepoResult<bool> {
        (**self).actor_exists(did).await
    }
    async fn head(&self, did: &Did) -> RepoResult<Option<RepoHead>> {
        (**self).head(did).await
    }
    async fn get_blocks(&self, did: &Did, cids: &[Cid]) -> RepoResult<BlockMap> {
        (**self).get_blocks(did, cids).await
    }
    async fn apply_commit(&self, did: &Did, unit: CommitUnit) -> RepoResult<u64> {
        (**self).apply_commit(did, unit).await
    }
    async fn get_record(
        &self,
        did: &Did,
        collection: &Nsid,
        rkey: &RecordKey,
    ) -> RepoResult<Option<StoredRecord>> {
        (**self).get_record(did, collection, rkey).await
    }
    async fn list_records(&self, did: &Did, query: &ListQuery) -> RepoResult<Vec<StoredRecord>> {
        (**self).list_records(did, query).await
    }
    async fn events_after(
        &self,
        did: &Did,
        cursor: u64,
        limit: usize,
    ) -> RepoResult<Vec<SeqEvent>> {
        (**self).events_after(did, cursor, limit).await
    }
    async fn latest_seq(&self, did: &Did) -> RepoResult<u64> {
        (**self).latest_seq(did).await
    }
    async fn all_blocks(&self, did: &Did) -> RepoResult<BlockMap> {
        (**self).all_blocks(did).await
    }
    async fn track_blob(&self, did: &Did, upload: StoredBlob) -> RepoResult<Option<StoredBlob>> {
        (**self).track_blob(did, upload).await
    }
    async fn blob(&self, did: &Did, cid: &Cid) -> RepoResult<Option<StoredBlob>> {
        (**self).blob(did, cid).await
    }
    async fn records_referencing_blob(
        &self,
        did: &Did,
        cid: &Cid,
    ) -> RepoResult<Vec<BlobReference>> {
        (**self).records_referencing_blob(did, cid).await
    }
    async fn list_blobs(&self, did: &Did, query: &BlobListQuery) -> RepoResult<Vec<Cid>> {
        (**self).list_blobs(did, query).await
    }
    async fn release_blobs(
        &self,
        did: &Did,
        uploads_before_ms: i64,
    ) -> RepoResult<Vec<ReleasedBlob>> {
        (**self).release_blobs(did, uploads_before_ms).await
    }
}
