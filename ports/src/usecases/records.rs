//! [`Records`]: the record use cases behind one facade — writes (one signed commit per call, all
//! or nothing), boundary-filtered reads, record proofs, blobs, repository export and import.
//!
//! `Records` owns the shared per-account context (dependencies, enrollment and signing-key
//! caches, writer locks, rate limiter, node cache, event sink) and hands out the services that
//! do the work, each a borrowed view of that context: [`Records::writes`], [`Records::reads`],
//! [`Records::proofs`], [`Records::blobs`], [`Records::transfer`]. Its own methods delegate to
//! them, so a caller may use either. This module is the top of the record use cases: it imports
//! the services, none of them imports it (`ports/tests/usecase_layering.rs`).

use std::sync::Arc;

use serde_json::Value;

use stratos_domain::Cid;
use stratos_domain::crypto::Keypair;
use stratos_domain::data::Blob;
use stratos_domain::repo::RepoHead;
use stratos_domain::syntax::{AtUri, Did, Nsid, RecordKey};

use super::UseCaseError;
use super::account::AccountContext;
use super::blobs::{BlobDownload, BlobPage, Blobs};
use super::proofs::Proofs;
use super::reads::Reads;
use super::stream::EventSink;
use super::transfer::Transfer;
use super::writes::Writes;

// The types of the record use cases keep their paths under `records` (the services' modules
// are their homes).
pub use super::account::{ENROLLMENT_TTL_MS, RecordDeps};
pub use super::reads::{Hydrated, MAX_HYDRATE, RecordPage, RecordView};
pub use super::writes::{CommitResult, Swaps, WriteOp, WriteResult};

/// The record use cases.
#[derive(Debug)]
pub struct Records {
    ctx: AccountContext,
}

impl Records {
    /// Builds the use cases over `deps`.
    pub fn new(deps: RecordDeps) -> Self {
        Self {
            ctx: AccountContext::new(deps),
        }
    }

    /// Publishes every committed event to `sink` (the sync stream). Without one, commits cost
    /// nothing extra.
    pub fn with_event_sink(mut self, sink: Arc<dyn EventSink>) -> Self {
        self.ctx.set_event_sink(sink);
        self
    }

    /// Record writes: create, put, delete, batches, the repository's first commit.
    pub fn writes(&self) -> Writes<'_> {
        Writes::new(&self.ctx)
    }

    /// Boundary-filtered record reads: one record, a page, hydration.
    pub fn reads(&self) -> Reads<'_> {
        Reads::new(&self.ctx)
    }

    /// Record proofs (`com.atproto.sync.getRecord`).
    pub fn proofs(&self) -> Proofs<'_> {
        Proofs::new(&self.ctx)
    }

    /// Blob uploads, downloads and listings.
    pub fn blobs(&self) -> Blobs<'_> {
        Blobs::new(&self.ctx)
    }

    /// Repository export and import.
    pub fn transfer(&self) -> Transfer<'_> {
        Transfer::new(&self.ctx)
    }

    /// Drops everything cached about an actor (after its repository is destroyed).
    pub fn forget_actor(&self, did: &Did) {
        self.ctx.forget_actor(did);
    }

    /// Drops the cached enrollment of `did` (after enrollment, boundary changes, unenrollment).
    pub fn forget_enrollment(&self, did: &Did) {
        self.ctx.forget_enrollment(did);
    }

    // --- writes ([`Writes`]) ------------------------------------------------------------------

    /// Creates one record ([`Writes::create_record`]).
    pub async fn create_record(
        &self,
        author: &Did,
        repo: &Did,
        collection: &Nsid,
        rkey: Option<&RecordKey>,
        value: Value,
    ) -> Result<CommitResult, UseCaseError> {
        self.writes()
            .create_record(author, repo, collection, rkey, value)
            .await
    }

    /// Creates or replaces one record ([`Writes::put_record`]).
    pub async fn put_record(
        &self,
        author: &Did,
        repo: &Did,
        collection: &Nsid,
        rkey: &RecordKey,
        value: Value,
    ) -> Result<CommitResult, UseCaseError> {
        self.writes()
            .put_record(author, repo, collection, rkey, value)
            .await
    }

    /// [`Records::put_record`] with compare-and-swap preconditions ([`Writes::put_record_with`]).
    pub async fn put_record_with(
        &self,
        author: &Did,
        repo: &Did,
        collection: &Nsid,
        rkey: &RecordKey,
        value: Value,
        swaps: &Swaps,
    ) -> Result<CommitResult, UseCaseError> {
        self.writes()
            .put_record_with(author, repo, collection, rkey, value, swaps)
            .await
    }

    /// Deletes one record; `Ok(None)` when there was nothing to delete (idempotent, like a PDS)
    /// ([`Writes::delete_record`]).
    pub async fn delete_record(
        &self,
        author: &Did,
        repo: &Did,
        collection: &Nsid,
        rkey: &RecordKey,
    ) -> Result<Option<CommitResult>, UseCaseError> {
        self.writes()
            .delete_record(author, repo, collection, rkey)
            .await
    }

    /// Applies a batch of writes as one commit: every write is validated first, and either all
    /// of them are committed or none ([`Writes::apply_writes`]).
    pub async fn apply_writes(
        &self,
        author: &Did,
        repo: &Did,
        ops: Vec<WriteOp>,
    ) -> Result<CommitResult, UseCaseError> {
        self.writes().apply_writes(author, repo, ops).await
    }

    /// [`Records::apply_writes`] with compare-and-swap preconditions
    /// ([`Writes::apply_writes_with`]).
    pub async fn apply_writes_with(
        &self,
        author: &Did,
        repo: &Did,
        ops: Vec<WriteOp>,
        swaps: &Swaps,
    ) -> Result<CommitResult, UseCaseError> {
        self.writes()
            .apply_writes_with(author, repo, ops, swaps)
            .await
    }

    /// Creates an actor's repository with a signed commit of the empty tree (enrollment)
    /// ([`Writes::init_repo`]).
    pub async fn init_repo(&self, did: &Did, key: &Keypair) -> Result<RepoHead, UseCaseError> {
        self.writes().init_repo(did, key).await
    }

    // --- reads ([`Reads`], [`Proofs`]) --------------------------------------------------------

    /// One record, if the viewer may read it. A denial is reported exactly like a missing
    /// record ([`Reads::get_record`]).
    pub async fn get_record(
        &self,
        viewer: Option<&Did>,
        owner: &Did,
        collection: &Nsid,
        rkey: &RecordKey,
        expected_cid: Option<&Cid>,
    ) -> Result<Option<RecordView>, UseCaseError> {
        self.reads()
            .get_record(viewer, owner, collection, rkey, expected_cid)
            .await
    }

    /// A page of one collection, filtered by the viewer's boundaries inside the store so pages
    /// come back full ([`Reads::list_records`]).
    pub async fn list_records(
        &self,
        viewer: Option<&Did>,
        owner: &Did,
        collection: &Nsid,
        limit: usize,
        cursor: Option<RecordKey>,
        reverse: bool,
    ) -> Result<RecordPage, UseCaseError> {
        self.reads()
            .list_records(viewer, owner, collection, limit, cursor, reverse)
            .await
    }

    /// Hydrates up to [`MAX_HYDRATE`] record URIs for a viewer; records the viewer may not read
    /// are listed with the missing ones in `not_found` ([`Reads::hydrate`]).
    pub async fn hydrate(
        &self,
        viewer: Option<&Did>,
        uris: &[AtUri],
    ) -> Result<Hydrated, UseCaseError> {
        self.reads().hydrate(viewer, uris).await
    }

    /// `com.atproto.sync.getRecord`: a CAR proving the record under the current commit, after
    /// the same access decision as a read ([`Proofs::record_proof`]).
    pub async fn record_proof(
        &self,
        viewer: Option<&Did>,
        owner: &Did,
        collection: &Nsid,
        rkey: &RecordKey,
    ) -> Result<Option<Vec<u8>>, UseCaseError> {
        self.proofs()
            .record_proof(viewer, owner, collection, rkey)
            .await
    }

    // --- blobs ([`Blobs`]) ----------------------------------------------------------------------

    /// Stores an upload of `author` and returns the blob reference a record can embed
    /// ([`Blobs::upload_blob`]).
    pub async fn upload_blob(
        &self,
        author: &Did,
        mime_type: Option<&str>,
        bytes: Vec<u8>,
    ) -> Result<Blob, UseCaseError> {
        self.blobs().upload_blob(author, mime_type, bytes).await
    }

    /// A blob of `owner`, if `viewer` may read it; a denial is reported exactly like a missing
    /// blob ([`Blobs::get_blob`]).
    pub async fn get_blob(
        &self,
        viewer: Option<&Did>,
        owner: &Did,
        cid: &Cid,
    ) -> Result<Option<BlobDownload>, UseCaseError> {
        self.blobs().get_blob(viewer, owner, cid).await
    }

    /// A page of the CIDs of `owner`'s blobs that `viewer` may read ([`Blobs::list_blobs`]).
    pub async fn list_blobs(
        &self,
        viewer: Option<&Did>,
        owner: &Did,
        limit: usize,
        cursor: Option<&str>,
        since: Option<&str>,
    ) -> Result<Option<BlobPage>, UseCaseError> {
        self.blobs()
            .list_blobs(viewer, owner, limit, cursor, since)
            .await
    }

    // --- transfer ([`Transfer`]) --------------------------------------------------------------

    /// The whole repository as a CAR v1; only the owner may export ([`Transfer::export_repo`]).
    pub async fn export_repo(&self, requester: &Did, did: &Did) -> Result<Vec<u8>, UseCaseError> {
        self.transfer().export_repo(requester, did).await
    }

    /// Imports the records of a repository CAR into the caller's empty repository through the
    /// write rules, in one commit; returns the number of records imported
    /// ([`Transfer::import_repo`]).
    pub async fn import_repo(&self, author: &Did, car_bytes: &[u8]) -> Result<usize, UseCaseError> {
        self.transfer().import_repo(author, car_bytes).await
    }
}
