//! Use cases: written once against the ports; apps call these and never touch adapters beyond
//! constructing them.
//!
//! The record use cases are split by concern around one shared per-account context; modules
//! depend downward only (`ports/tests/layout.rs` fails on a circle):
//!
//! | layer | modules | role |
//! |---|---|---|
//! | entry points | [`enrollment`], [`legacy`] | enroll, unenroll, status; creates repositories through [`records`]; the import of the TypeScript original's data |
//! | facade | [`records`] | [`records::Records`]: owns the context, hands out the services, keeps the one-call API |
//! | services | [`transfer`] → [`writes`] → [`blobs`]; [`proofs`] → [`reads`] | export/import; the commit path; uploads, downloads, listings and the blob steps of a commit; record proofs; boundary-filtered reads |
//! | context | `account` | `AccountContext`: the dependencies ([`records::RecordDeps`]), the enrollment and signing-key caches, writer locks, rate limiter, node cache, event sink |
//! | background | [`delivery`], [`write_back`] | [`delivery::Delivery`]: drains the outbox into users' PDSes (claims, retries, dead letters); [`write_back::SessionWriteBack`]: performs each item with the account's OAuth session |
//! | AppView | [`appview`] | [`appview::AppView`]: boundary-filtered feeds over the index an indexer writes (`appview_store`) |
//! | support | `node_cache`, [`stream`] | the MST node cache; the sync stream (its [`stream::EventSink`] is the one trait here: a seam between use cases, not a port) |
//!
//! Port traits live outside this module, one module per port at the crate root; a use case only
//! ever holds them as `Arc<dyn …>`.

mod account;
pub mod appview;
pub mod blobs;
pub mod delivery;
pub mod enrollment;
pub mod legacy;
mod node_cache;
pub mod oauth;
pub mod proofs;
pub mod reads;
pub mod records;
pub mod stream;
pub mod transfer;
pub mod write_back;
pub mod writes;

use stratos_domain::Error as DomainError;
use stratos_domain::syntax::Did;

use crate::blob_store::BlobStoreError;
use crate::enrollment_store::EnrollmentStoreError;
use crate::env::EnvError;
use crate::keys::KeyStoreError;
use crate::oauth_store::OAuthStoreError;
use crate::outbox::OutboxError;
use crate::repo_store::RepoStoreError;

/// Why a use case failed. [`crate::xrpc::XrpcError`] maps this to XRPC errors, in exactly one
/// place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UseCaseError {
    /// A domain rule rejected the input (bad syntax, invalid record, forbidden boundary, …).
    #[error(transparent)]
    Rule(#[from] DomainError),
    /// The request is malformed in a way no domain rule covers.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The caller is not enrolled (or has no repository).
    #[error("{0} is not enrolled in this Stratos service")]
    NotEnrolled(Did),
    /// The caller may not do this (e.g. write another account's repository).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The repository already holds records (imports need an empty one).
    #[error("the repository of {0} already holds records")]
    RepoAlreadyExists(String),
    /// A record references a blob the author has not uploaded (or whose upload expired).
    #[error("blob not found: {0}")]
    BlobNotFound(String),
    /// What the request names does not exist (an operator's dead-letter id, …).
    #[error("not found: {0}")]
    NotFound(String),
    /// A `swapCommit`/`swapRecord` precondition did not hold; nothing was written.
    #[error("swap precondition failed: {0}")]
    InvalidSwap(String),
    /// Concurrent writers kept winning; the client may retry.
    #[error("too many concurrent writes to {0}; retry")]
    Conflict(String),
    /// A storage or environment port failed.
    #[error("storage failed: {0}")]
    Unavailable(#[source] crate::Cause),
    /// An invariant broke (corrupt data, a bug).
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<RepoStoreError> for UseCaseError {
    fn from(e: RepoStoreError) -> Self {
        match e {
            RepoStoreError::ActorNotFound(did) => UseCaseError::NotEnrolled(did),
            RepoStoreError::Conflict(did) => UseCaseError::Conflict(did),
            RepoStoreError::BlobMissing(m) => UseCaseError::BlobNotFound(m),
            RepoStoreError::Corrupt(m) | RepoStoreError::IndexMismatch(m) => {
                UseCaseError::Internal(m)
            }
            other => UseCaseError::Unavailable(crate::Cause::new(other)),
        }
    }
}

impl From<EnrollmentStoreError> for UseCaseError {
    fn from(e: EnrollmentStoreError) -> Self {
        match e {
            EnrollmentStoreError::NotEnrolled(did) => UseCaseError::NotEnrolled(did),
            other => UseCaseError::Unavailable(crate::Cause::new(other)),
        }
    }
}

impl From<KeyStoreError> for UseCaseError {
    fn from(e: KeyStoreError) -> Self {
        match e {
            KeyStoreError::Corrupt(m) => UseCaseError::Internal(m),
            other => UseCaseError::Unavailable(crate::Cause::new(other)),
        }
    }
}

impl From<BlobStoreError> for UseCaseError {
    fn from(e: BlobStoreError) -> Self {
        UseCaseError::Unavailable(crate::Cause::new(e))
    }
}

impl From<OutboxError> for UseCaseError {
    fn from(e: OutboxError) -> Self {
        match e {
            OutboxError::NotDead(id) => UseCaseError::NotFound(format!("no dead letter {id}")),
            other => UseCaseError::Unavailable(crate::Cause::new(other)),
        }
    }
}

impl From<EnvError> for UseCaseError {
    fn from(e: EnvError) -> Self {
        UseCaseError::Unavailable(crate::Cause::new(e))
    }
}

impl From<OAuthStoreError> for UseCaseError {
    fn from(e: OAuthStoreError) -> Self {
        UseCaseError::Unavailable(crate::Cause::new(e))
    }
}
