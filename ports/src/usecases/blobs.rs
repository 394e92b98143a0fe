//! Blob use cases ([`Blobs`]): uploads (`com.atproto.repo.uploadBlob`), downloads behind the
//! boundary decision (`com.atproto.sync.getBlob`), listing (`com.atproto.sync.listBlobs`), and
//! the steps record writes run for the blobs their records reference ([`super::writes`] and
//! [`super::transfer`] call them; this module imports neither).
//!
//! Life of a blob:
//! 1. an upload stores the bytes in the blob store's temporary area and tracks them in the
//!    actor's repository store ([`RepoStore::track_blob`](crate::repo_store::RepoStore::track_blob):
//!    CID, MIME type, size, temporary key, time);
//! 2. a record write referencing the blob moves the bytes to the permanent area, then commits
//!    the record with its blob associations, which also marks the blob permanent — the commit
//!    refuses blobs the actor has not uploaded, so an association never points at nothing;
//! 3. once no record references it any more (its records were deleted or updated), the commit
//!    releases it and the writer deletes its bytes; uploads no record referenced within
//!    [`UPLOAD_TTL_MS`] are released and deleted the same way.
//!
//! Byte moves and deletions run under the per-actor writer lock, so within one process a
//! deletion never races a write making the same blob permanent again.

use std::collections::BTreeSet;
use std::sync::Arc;

use ipld_core::ipld::Ipld;
use stratos_domain::boundary::{ReadFilter, can_read, read_filter};
use stratos_domain::data::Blob;
use stratos_domain::syntax::{Did, Tid};
use stratos_domain::{Cid, Error as DomainError, cid, mime};

use super::UseCaseError;
use super::account::{AccountContext, as_viewer};
use crate::blob_store::{BlobStore, BlobStoreError};
use crate::repo_store::{BlobListQuery, StoredBlob};

/// How long an upload that no record references is kept before it is deleted.
pub const UPLOAD_TTL_MS: i64 = 24 * 60 * 60 * 1000;
/// Most CIDs one `listBlobs` page may ask for.
pub const MAX_LIST_BLOBS: usize = 1000;
/// The `listBlobs` page size when the client names none.
pub const DEFAULT_LIST_BLOBS: usize = 500;
/// The MIME type of an upload sent without `Content-Type`.
pub const DEFAULT_MIME_TYPE: &str = "application/octet-stream";
/// Bytes read from the blob store per chunk of a download.
const CHUNK_BYTES: usize = 256 * 1024;

/// A blob a viewer may read: its type and size, and its bytes in chunks.
#[derive(Debug)]
pub struct BlobDownload {
    /// The MIME type the blob was stored as (see [`Blobs::upload_blob`]).
    pub mime_type: String,
    /// Size in bytes.
    pub size: u64,
    /// The bytes.
    pub chunks: BlobChunks,
}

/// The bytes of a blob, read from the blob store one chunk at a time, so a large blob is never
/// held whole.
pub struct BlobChunks {
    store: Arc<dyn BlobStore>,
    did: Did,
    cid: Cid,
    offset: u64,
    size: u64,
}

impl std::fmt::Debug for BlobChunks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobChunks")
            .field("did", &self.did)
            .field("cid", &self.cid)
            .field("offset", &self.offset)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl BlobChunks {
    /// The next chunk, `None` after the last.
    pub async fn next(&mut self) -> Result<Option<Vec<u8>>, UseCaseError> {
        if self.offset >= self.size {
            return Ok(None);
        }
        let left = usize::try_from(self.size - self.offset).unwrap_or(usize::MAX);
        let bytes = self
            .store
            .read_range(&self.did, &self.cid, self.offset, left.min(CHUNK_BYTES))
            .await?;
        if bytes.is_empty() {
            // The answer already promised `size` bytes; ending early would look complete.
            return Err(UseCaseError::Internal(format!(
                "blob {} of {} ended before its size",
                self.cid, self.did
            )));
        }
        self.offset += bytes.len() as u64;
        Ok(Some(bytes))
    }
}

/// A page of blob CIDs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobPage {
    /// CIDs, ascending.
    pub cids: Vec<Cid>,
    /// The cursor for the next page, when the page was full.
    pub cursor: Option<String>,
}

/// The blob use cases over the shared per-account context (reached through
/// [`Records::blobs`](super::records::Records::blobs)).
#[derive(Debug, Clone, Copy)]
pub struct Blobs<'a> {
    ctx: &'a AccountContext,
}

impl<'a> Blobs<'a> {
    pub(super) fn new(ctx: &'a AccountContext) -> Self {
        Self { ctx }
    }

    /// Stores an upload of `author` (who must be enrolled) and returns the blob reference a
    /// record can embed. The stored MIME type is [`mime::stored_type`] of the declared type and
    /// the bytes: what the bytes are where they can tell, never a media type they do not bear
    /// out. Uploads count against the write rate limit. Uploading bytes the author already has
    /// returns the existing blob (with the MIME type it was first stored as).
    pub async fn upload_blob(
        &self,
        author: &Did,
        mime_type: Option<&str>,
        bytes: Vec<u8>,
    ) -> Result<Blob, UseCaseError> {
        if bytes.is_empty() {
            return Err(UseCaseError::InvalidRequest(
                "Blob content is empty".to_owned(),
            ));
        }
        let mime_type = mime::stored_type(&normalize_mime_type(mime_type)?, &bytes);
        self.ctx.enrollment(author).await?;
        let now = self.ctx.deps.clock.now_ms();
        self.ctx.check_rate(author, 1, now)?;
        let cid = cid::raw(&bytes);
        let size = bytes.len() as u64;
        let key = self.ctx.deps.blobs.put_temp(author, bytes).await?;
        {
            let lock = self.ctx.writer_lock(author);
            let _serial = lock.lock().await;
            reclaim(self.ctx, author, now.saturating_sub(UPLOAD_TTL_MS)).await;
        }
        let upload = StoredBlob {
            cid,
            mime_type,
            size,
            temp_key: Some(key.clone()),
            created_ms: now,
        };
        match self.ctx.deps.repos.track_blob(author, upload.clone()).await {
            Ok(None) => Ok(Blob {
                cid,
                mime_type: upload.mime_type,
                size,
            }),
            Ok(Some(existing)) => {
                // The bytes are already here; the new copy is not needed. A failure only
                // leaves an untracked temporary file behind.
                let _ = self.ctx.deps.blobs.delete_temp(author, &key).await;
                Ok(Blob {
                    cid,
                    mime_type: existing.mime_type,
                    size: existing.size,
                })
            }
            Err(e) => {
                let _ = self.ctx.deps.blobs.delete_temp(author, &key).await;
                Err(e.into())
            }
        }
    }

    /// A blob of `owner`, if `viewer` may read it: the blob must be permanent and at least one
    /// record of `owner` referencing it must pass [`can_read`] for the viewer (the owner
    /// always). A denial is reported exactly like a missing blob (`None`).
    pub async fn get_blob(
        &self,
        viewer: Option<&Did>,
        owner: &Did,
        cid: &Cid,
    ) -> Result<Option<BlobDownload>, UseCaseError> {
        if !self.ctx.deps.repos.actor_exists(owner).await? {
            return Ok(None);
        }
        let Some(blob) = self.ctx.deps.repos.blob(owner, cid).await? else {
            return Ok(None);
        };
        if blob.temp_key.is_some() {
            // No committed record references an upload, so no access decision can admit it.
            return Ok(None);
        }
        let refs = self
            .ctx
            .deps
            .repos
            .records_referencing_blob(owner, cid)
            .await?;
        let held = self.ctx.viewer_boundaries(viewer).await?;
        let v = as_viewer(viewer, &held);
        if !refs
            .iter()
            .any(|r| can_read(v, owner.as_str(), &r.boundaries))
        {
            return Ok(None);
        }
        let size = match self.ctx.deps.blobs.size(owner, cid).await {
            Ok(size) => size,
            // Released and deleted between the lookups: gone, like any missing blob.
            Err(BlobStoreError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(Some(BlobDownload {
            mime_type: blob.mime_type,
            size,
            chunks: BlobChunks {
                store: self.ctx.deps.blobs.clone(),
                did: owner.clone(),
                cid: *cid,
                offset: 0,
                size,
            },
        }))
    }

    /// A page of the CIDs of `owner`'s blobs that `viewer` may read (those referenced by at
    /// least one record the viewer may read; every referenced blob for the owner), ascending.
    /// A CID alone tells whether some content exists, so it is filtered like the content.
    /// `cursor` is the last CID of the previous page; `since` a revision (only blobs of records
    /// written after it). `None` when `owner` has no repository (parameters are checked first,
    /// so a bad one is reported alike for every DID).
    pub async fn list_blobs(
        &self,
        viewer: Option<&Did>,
        owner: &Did,
        limit: usize,
        cursor: Option<&str>,
        since: Option<&str>,
    ) -> Result<Option<BlobPage>, UseCaseError> {
        if !(1..=MAX_LIST_BLOBS).contains(&limit) {
            return Err(UseCaseError::InvalidRequest(format!(
                "`limit` must be between 1 and {MAX_LIST_BLOBS}"
            )));
        }
        // Pages are ordered by the canonical CID string: a cursor in another base would
        // compare wrongly, so it is re-encoded.
        let cursor = cursor
            .map(|c| {
                cid::parse(c)
                    .map(|c| c.to_string())
                    .map_err(|_| UseCaseError::InvalidRequest("`cursor` is not a CID".to_owned()))
            })
            .transpose()?;
        let since = since
            .map(|s| {
                Tid::parse(s).map_err(|_| {
                    UseCaseError::InvalidRequest("`since` is not a revision (TID)".to_owned())
                })
            })
            .transpose()?;
        let empty = BlobPage {
            cids: Vec::new(),
            cursor: None,
        };
        if !self.ctx.deps.repos.actor_exists(owner).await? {
            return Ok(None);
        }
        let held = self.ctx.viewer_boundaries(viewer).await?;
        let filter = read_filter(as_viewer(viewer, &held), owner.as_str());
        if filter == ReadFilter::Nothing {
            return Ok(Some(empty));
        }
        let query = BlobListQuery {
            limit,
            cursor,
            since,
            filter,
        };
        let cids = self.ctx.deps.repos.list_blobs(owner, &query).await?;
        let cursor = if cids.len() == limit {
            cids.last().map(ToString::to_string)
        } else {
            None
        };
        Ok(Some(BlobPage { cids, cursor }))
    }
}

/// Moves the blobs `refs` name to the permanent area, after checking that `did` uploaded
/// each of them with the MIME type and size the record declares: the record's lexicon
/// fields were checked against the declared type, so it must be the stored one
/// (`BlobTypeNotAccepted` otherwise). Runs under the writer lock, before the commit that
/// makes them permanent in the index.
pub(super) async fn make_permanent(
    ctx: &AccountContext,
    did: &Did,
    refs: &[&Blob],
) -> Result<(), UseCaseError> {
    let mut moved = BTreeSet::new();
    for r in refs {
        let Some(stored) = ctx.deps.repos.blob(did, &r.cid).await? else {
            return Err(UseCaseError::BlobNotFound(format!(
                "blob {} was not uploaded to the repository of {did}; upload it with \
                 com.atproto.repo.uploadBlob first",
                r.cid
            )));
        };
        if stored.mime_type != r.mime_type {
            // The lexicon check saw the declared type; the bytes are of the stored one.
            return Err(DomainError::BlobTypeNotAccepted(format!(
                "blob {} is stored as {} (the type of its bytes), but the record declares {}",
                r.cid, stored.mime_type, r.mime_type
            ))
            .into());
        }
        if stored.size != r.size {
            return Err(UseCaseError::InvalidRequest(format!(
                "blob {} was uploaded with {} bytes, but the record declares {}",
                r.cid, stored.size, r.size
            )));
        }
        let Some(key) = stored.temp_key else {
            continue;
        };
        if !moved.insert(r.cid) {
            continue;
        }
        match ctx.deps.blobs.make_permanent(did, &key, &r.cid).await {
            Ok(()) => {}
            Err(BlobStoreError::NotFound(_)) => {
                return Err(UseCaseError::BlobNotFound(format!(
                    "the upload of blob {} is gone; upload it again",
                    r.cid
                )));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Deletes the bytes of every blob the store releases: permanent blobs no record
/// references any more, and uploads older than `uploads_before_ms`. Runs under the writer
/// lock. Best effort: the writes that led here are already committed, and a failure only
/// leaves unreachable bytes behind (the account's blobs all go on unenrollment).
pub(super) async fn reclaim(ctx: &AccountContext, did: &Did, uploads_before_ms: i64) {
    let Ok(released) = ctx.deps.repos.release_blobs(did, uploads_before_ms).await else {
        return;
    };
    for blob in released {
        let _ = ctx.deps.blobs.delete(did, &blob.cid).await;
        if let Some(key) = &blob.temp_key {
            let _ = ctx.deps.blobs.delete_temp(did, key).await;
        }
    }
}

/// Every blob referenced anywhere in a record, in document order, each CID once.
pub(super) fn blob_refs(record: &Ipld) -> Vec<Blob> {
    let mut out: Vec<Blob> = Vec::new();
    let mut stack = vec![record];
    while let Some(value) = stack.pop() {
        match value {
            Ipld::Map(map) => {
                if let Ok(blob) = Blob::from_ipld(value) {
                    if !out.iter().any(|b| b.cid == blob.cid) {
                        out.push(blob);
                    }
                    continue;
                }
                stack.extend(map.values().rev());
            }
            Ipld::List(items) => stack.extend(items.iter().rev()),
            _ => {}
        }
    }
    out
}

/// The MIME type of an upload from its `Content-Type`: the `type/subtype` essence in lower
/// case, parameters dropped. It is served back as the download's `Content-Type`, so anything
/// that is not two RFC 9110 tokens is refused.
pub fn normalize_mime_type(given: Option<&str>) -> Result<String, UseCaseError> {
    let essence = given
        .and_then(|g| g.split(';').next())
        .map(str::trim)
        .unwrap_or_default()
        .to_ascii_lowercase();
    if essence.is_empty() {
        return Ok(DEFAULT_MIME_TYPE.to_owned());
    }
    let valid = essence
        .split_once('/')
        .is_some_and(|(t, s)| is_token(t) && is_token(s));
    if valid {
        Ok(essence)
    } else {
        Err(UseCaseError::InvalidRequest(format!(
            "invalid Content-Type {:?}",
            given.unwrap_or_default()
        )))
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 127
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mime_types_are_normalized_or_refused() {
        assert_eq!(
            normalize_mime_type(None).ok().as_deref(),
            Some(DEFAULT_MIME_TYPE)
        );
        assert_eq!(
            normalize_mime_type(Some("  ")).ok().as_deref(),
            Some(DEFAULT_MIME_TYPE)
        );
        assert_eq!(
            normalize_mime_type(Some("Image/PNG; charset=x"))
                .ok()
                .as_deref(),
            Some("image/png")
        );
        assert_eq!(
            normalize_mime_type(Some("application/vnd.api+json"))
                .ok()
                .as_deref(),
            Some("application/vnd.api+json")
        );
        for bad in [
            "image",
            "image/",
            "/png",
            "text/html\r\nx: y",
            "a/b/c",
            "té/xt",
        ] {
            assert!(normalize_mime_type(Some(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn blob_refs_finds_nested_blobs_once() {
        let blob = |bytes: &[u8]| Blob {
            cid: cid::raw(bytes),
            mime_type: "image/png".into(),
            size: bytes.len() as u64,
        };
        let (a, b) = (blob(b"a"), blob(b"b"));
        let record = Ipld::Map(
            [
                (
                    "embed".to_owned(),
                    Ipld::Map(
                        [(
                            "images".to_owned(),
                            Ipld::List(vec![
                                Ipld::Map([("image".to_owned(), a.to_ipld())].into()),
                                Ipld::Map([("image".to_owned(), b.to_ipld())].into()),
                                Ipld::Map([("image".to_owned(), a.to_ipld())].into()),
                            ]),
                        )]
                        .into(),
                    ),
                ),
                ("text".to_owned(), Ipld::String("hi".into())),
            ]
            .into(),
        );
        assert_eq!(blob_refs(&record), [a, b]);
        assert!(blob_refs(&Ipld::Map(Default::default())).is_empty());
    }
}
