//! Blob bytes: uploaded to a temporary area, made permanent when a record references them.

use async_trait::async_trait;
use stratos_domain::Cid;
use stratos_domain::syntax::Did;

/// Failures of a [`BlobStore`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BlobStoreError {
    /// No such blob (or temporary upload).
    #[error("blob not found: {0}")]
    NotFound(String),
    /// The backend failed.
    #[error("blob store failed: {0}")]
    Backend(#[source] crate::Cause),
}

/// Result alias of this port.
pub type BlobResult<T> = Result<T, BlobStoreError>;

/// Blob storage.
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Stores an upload under a fresh temporary key and returns the key.
    async fn put_temp(&self, did: &Did, bytes: Vec<u8>) -> BlobResult<String>;
    /// Moves a temporary upload to its permanent place `{did}/{cid}` (idempotent when the
    /// permanent blob already exists).
    async fn make_permanent(&self, did: &Did, temp_key: &str, cid: &Cid) -> BlobResult<()>;
    /// Deletes a temporary upload; idempotent (an unknown key is not an error).
    async fn delete_temp(&self, did: &Did, temp_key: &str) -> BlobResult<()>;
    /// The bytes of a permanent blob.
    async fn get(&self, did: &Did, cid: &Cid) -> BlobResult<Vec<u8>>;
    /// Size in bytes of a permanent blob.
    async fn size(&self, did: &Did, cid: &Cid) -> BlobResult<u64>;
    /// Up to `len` bytes of a permanent blob from `offset` (empty past the end): lets callers
    /// stream large blobs in chunks instead of holding them whole.
    async fn read_range(
        &self,
        did: &Did,
        cid: &Cid,
        offset: u64,
        len: usize,
    ) -> BlobResult<Vec<u8>>;
    /// True when the permanent blob exists.
    async fn has(&self, did: &Did, cid: &Cid) -> BlobResult<bool>;
    /// Deletes a permanent blob; idempotent.
    async fn delete(&self, did: &Did, cid: &Cid) -> BlobResult<()>;
    /// CIDs of the account's permanent blobs, ascending by CID string, after `cursor`.
    async fn list(&self, did: &Did, cursor: Option<&str>, limit: usize) -> BlobResult<Vec<Cid>>;
    /// Deletes everything of an account (permanent and temporary).
    async fn delete_actor(&self, did: &Did) -> BlobResult<()>;
}
