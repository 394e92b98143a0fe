//! The AppView index: where an indexer writes private posts, enrollments and stream cursors,
//! and where an AppView's feeds read them ([`crate::usecases::appview`]).
//!
//! Two traits, split like a block store's read and write sides: the indexer holds an
//! [`IndexWriter`], the AppView a [`FeedStore`]; one adapter (PostgreSQL, or the testkit's
//! in-memory fake) implements both, and both pass the same conformance suite.

use async_trait::async_trait;
use stratos_domain::appview::{FeedCursor, PostRow};
use stratos_domain::syntax::{AtUri, Did, Tid};

use crate::Cause;

/// Where an account's stream was consumed up to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActorCursor {
    /// The last sequence number applied.
    pub seq: u64,
    /// The revision the index reflects: after a backfill, the export's; frames of this
    /// revision or older are already contained and are skipped.
    pub rev: Option<Tid>,
}

/// One change to an account's indexed posts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostChange {
    /// Insert or replace a post (its boundaries are replaced with it).
    Upsert(Box<PostRow>),
    /// Remove a post and its boundaries (no error if absent).
    Delete(AtUri),
}

/// What one account's commit (or backfill) does to the index, applied atomically with the
/// account's new cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexBatch {
    /// The account.
    pub did: Did,
    /// A backfill: the account's posts are exactly `changes`' upserts afterwards (everything
    /// else of the account is removed).
    pub replace: bool,
    /// The changes, in order.
    pub changes: Vec<PostChange>,
    /// The cursor stored with them.
    pub cursor: ActorCursor,
}

/// An account's enrollment as the AppView knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedEnrollment {
    /// The account.
    pub did: Did,
    /// The Stratos service it is enrolled in.
    pub service_url: String,
    /// When it enrolled (or the change was seen).
    pub enrolled_at: String,
    /// Its qualified boundaries.
    pub boundaries: Vec<String>,
}

/// A change to an enrollment, from the service-level stream (`seq`) or a lookup (no `seq`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrollmentChange {
    /// Enrolled, or boundaries changed.
    Upsert(IndexedEnrollment),
    /// Left the service: the enrollment, the account's posts and its cursor are removed.
    Remove(Did),
}

/// A feed query over the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedQuery {
    /// Posts carrying at least one of these boundaries (an empty list: an empty page); `None`
    /// only with `author` set: all of the author's posts (the author reading their own feed).
    pub boundaries: Option<Vec<String>>,
    /// Only this author's posts.
    pub author: Option<Did>,
    /// Page size.
    pub limit: usize,
    /// Continue after this position.
    pub after: Option<FeedCursor>,
}

/// A page of posts, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedPage {
    /// The posts.
    pub posts: Vec<PostRow>,
    /// Where the next page starts, when there may be one.
    pub cursor: Option<FeedCursor>,
}

/// Failures of the index.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum IndexStoreError {
    /// The backend failed (the batch was not applied).
    #[error("index store failed: {0}")]
    Backend(#[source] Cause),
    /// Stored data did not parse.
    #[error("index store holds invalid data: {0}")]
    Corrupt(String),
}

/// Result alias of this port.
pub type IndexResult<T> = Result<T, IndexStoreError>;

/// The indexer's side.
#[async_trait]
pub trait IndexWriter: Send + Sync {
    /// Applies the batches in one transaction: rows and cursors together, or nothing.
    async fn apply(&self, batches: &[IndexBatch]) -> IndexResult<()>;

    /// Every account's cursor.
    async fn cursors(&self) -> IndexResult<Vec<(Did, ActorCursor)>>;

    /// Applies an enrollment change; with `service_seq`, stores the service-level stream's
    /// cursor `(service_url, seq)` in the same transaction.
    async fn apply_enrollment(
        &self,
        change: &EnrollmentChange,
        service_seq: Option<(&str, u64)>,
    ) -> IndexResult<()>;

    /// The service-level stream's cursor for `service_url` (also any other named stream's,
    /// e.g. a firehose's).
    async fn service_cursor(&self, service_url: &str) -> IndexResult<Option<u64>>;

    /// Stores a named stream's cursor on its own (a stream whose events change nothing here).
    async fn set_service_cursor(&self, service_url: &str, seq: u64) -> IndexResult<()>;

    /// Every indexed enrollment.
    async fn enrollments(&self) -> IndexResult<Vec<IndexedEnrollment>>;

    /// A cheap liveness probe of the backend.
    async fn ping(&self) -> IndexResult<()>;
}

/// The AppView's side.
#[async_trait]
pub trait FeedStore: Send + Sync {
    /// The posts `query` selects, newest first, `query.limit` at most; the
    /// returned cursor is set when the page is full.
    async fn feed(&self, query: &FeedQuery) -> IndexResult<FeedPage>;

    /// One post.
    async fn post(&self, uri: &AtUri) -> IndexResult<Option<PostRow>>;

    /// Direct replies to `uri`, oldest first, `limit` at most.
    async fn replies(&self, uri: &AtUri, limit: usize) -> IndexResult<Vec<PostRow>>;

    /// An account's indexed enrollment.
    async fn enrollment(&self, did: &Did) -> IndexResult<Option<IndexedEnrollment>>;
}

/// Looks up the boundaries an account holds on the Stratos service (e.g.
/// `zone.stratos.identity.resolveEnrollments`); `None` when not enrolled.
#[async_trait]
pub trait BoundaryResolver: Send + Sync {
    /// The account's enrollment.
    async fn resolve(&self, did: &Did) -> Result<Option<IndexedEnrollment>, Cause>;
}

/// Both sides in one object: what an adapter implements (and what the conformance suite
/// tests).
pub trait AppViewIndex: IndexWriter + FeedStore {}

impl<T: IndexWriter + FeedStore + ?Sized> AppViewIndex for T {}
