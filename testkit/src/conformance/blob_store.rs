//! The [`BlobStore`] conformance suite.

use std::sync::Arc;

use stratos_domain::cid;
use stratos_domain::syntax::Did;
use stratos_ports::blob_store::{BlobStore, BlobStoreError};

/// What the cases run against (each starts empty).
pub type Subject = Arc<dyn BlobStore>;

/// One test per [`BlobStore`] case, in a module `blob_store`. The argument gives a future of an
/// empty store, afresh for every case (see [`crate::conformance`]).
#[macro_export]
macro_rules! blob_store_conformance {
    ($fixture:expr $(,)?) => {
        $crate::__conformance_suite! {
            module: blob_store,
            port: blob_store,
            fixture: $fixture,
            cases: [
                uploads_become_visible_when_made_permanent,
                deleted_uploads_cannot_become_permanent,
                another_accounts_upload_is_out_of_reach,
                sizes_and_ranged_reads,
                listing_pages_in_cid_order,
                deletes_are_idempotent_and_per_account,
            ],
        }
    };
}

fn did(s: &str) -> Did {
    Did::parse(s).expect("suite DID")
}

/// Stores `bytes` for `who` as a permanent blob and returns its CID.
async fn permanent(s: &dyn BlobStore, who: &Did, bytes: &[u8]) -> stratos_domain::Cid {
    let key = s.put_temp(who, bytes.to_vec()).await.expect("temp");
    let c = cid::raw(bytes);
    s.make_permanent(who, &key, &c).await.expect("permanent");
    c
}

/// A temporary upload is invisible until made permanent, then readable by its account only;
/// making the same blob permanent again from a new upload is fine, an unknown key is not.
pub async fn uploads_become_visible_when_made_permanent(store: Subject) {
    let s = store.as_ref();
    let rei = did("did:plc:rei");
    let asuka = did("did:plc:asuka");
    let bytes = b"an image".to_vec();
    let c = cid::raw(&bytes);

    assert!(matches!(
        s.get(&rei, &c).await,
        Err(BlobStoreError::NotFound(_))
    ));
    let key = s.put_temp(&rei, bytes.clone()).await.expect("temp");
    assert!(
        !s.has(&rei, &c).await.expect("has"),
        "temporary blobs are not visible"
    );
    s.make_permanent(&rei, &key, &c).await.expect("permanent");
    assert!(s.has(&rei, &c).await.expect("has"));
    assert_eq!(s.get(&rei, &c).await.expect("get"), bytes);
    assert!(
        !s.has(&asuka, &c).await.expect("has"),
        "blobs are per account"
    );
    assert!(matches!(
        s.get(&asuka, &c).await,
        Err(BlobStoreError::NotFound(_))
    ));
    // Making the same blob permanent again from a new upload is fine.
    let key2 = s.put_temp(&rei, bytes.clone()).await.expect("temp");
    s.make_permanent(&rei, &key2, &c).await.expect("idempotent");
    assert_eq!(s.get(&rei, &c).await.expect("get"), bytes);
    assert!(matches!(
        s.make_permanent(&rei, "no-such-key", &cid::raw(b"other"))
            .await,
        Err(BlobStoreError::NotFound(_))
    ));
}

/// A deleted upload can no longer be made permanent; deleting it again, or an unknown key, is
/// fine.
pub async fn deleted_uploads_cannot_become_permanent(store: Subject) {
    let s = store.as_ref();
    let rei = did("did:plc:rei");
    let dropped = b"never referenced".to_vec();
    let dropped_key = s.put_temp(&rei, dropped.clone()).await.expect("temp");
    s.delete_temp(&rei, &dropped_key)
        .await
        .expect("delete temp");
    s.delete_temp(&rei, &dropped_key)
        .await
        .expect("delete temp is idempotent");
    s.delete_temp(&rei, "no-such-key")
        .await
        .expect("an unknown key is not an error");
    assert!(matches!(
        s.make_permanent(&rei, &dropped_key, &cid::raw(&dropped))
            .await,
        Err(BlobStoreError::NotFound(_))
    ));
    assert!(!s.has(&rei, &cid::raw(&dropped)).await.expect("has"));
}

/// One account cannot delete or claim another account's upload.
pub async fn another_accounts_upload_is_out_of_reach(store: Subject) {
    let s = store.as_ref();
    let rei = did("did:plc:rei");
    let asuka = did("did:plc:asuka");
    let theirs = s.put_temp(&asuka, b"asuka's".to_vec()).await.expect("temp");
    s.delete_temp(&rei, &theirs).await.expect("delete temp");
    assert!(matches!(
        s.make_permanent(&rei, &theirs, &cid::raw(b"asuka's")).await,
        Err(BlobStoreError::NotFound(_))
    ));
    s.make_permanent(&asuka, &theirs, &cid::raw(b"asuka's"))
        .await
        .expect("asuka's upload survived rei's delete");
    assert!(!s.has(&rei, &cid::raw(b"asuka's")).await.expect("has"));
}

/// A permanent blob's size and any range of its bytes (empty past the end) read back; a missing
/// blob is `NotFound`.
pub async fn sizes_and_ranged_reads(store: Subject) {
    let s = store.as_ref();
    let rei = did("did:plc:rei");
    let bytes: Vec<u8> = (0..1_000u32).map(|i| (i % 251) as u8).collect();
    let c = permanent(s, &rei, &bytes).await;
    assert_eq!(s.size(&rei, &c).await.expect("size"), 1_000);
    let read = |offset: u64, len: usize| s.read_range(&rei, &c, offset, len);
    assert_eq!(read(0, 10).await.expect("range"), bytes[..10]);
    assert_eq!(read(500, 256).await.expect("range"), bytes[500..756]);
    assert_eq!(
        read(990, 256).await.expect("range"),
        bytes[990..],
        "cut at the end"
    );
    assert!(
        read(1_000, 10).await.expect("range").is_empty(),
        "past the end"
    );
    assert!(
        read(5_000, 10).await.expect("range").is_empty(),
        "far past the end"
    );
    assert!(read(10, 0).await.expect("range").is_empty());
    let mut whole = Vec::new();
    let mut offset = 0;
    loop {
        let chunk = read(offset, 300).await.expect("chunk");
        if chunk.is_empty() {
            break;
        }
        offset += chunk.len() as u64;
        whole.extend(chunk);
    }
    assert_eq!(whole, bytes, "chunked reads add up to the blob");
    let missing = cid::raw(b"never stored");
    assert!(matches!(
        s.size(&rei, &missing).await,
        Err(BlobStoreError::NotFound(_))
    ));
    assert!(matches!(
        s.read_range(&rei, &missing, 0, 10).await,
        Err(BlobStoreError::NotFound(_))
    ));
}

/// Permanent blobs list in ascending CID string order, from a cursor, at most `limit`;
/// temporary uploads and other accounts' blobs are not listed.
pub async fn listing_pages_in_cid_order(store: Subject) {
    let s = store.as_ref();
    let rei = did("did:plc:rei");
    let asuka = did("did:plc:asuka");
    assert!(s.list(&rei, None, 10).await.expect("list").is_empty());
    let mut cids = Vec::new();
    for i in 0..5u8 {
        cids.push(permanent(s, &rei, &[i; 10]).await);
    }
    s.put_temp(&rei, b"only an upload".to_vec())
        .await
        .expect("temp");
    permanent(s, &asuka, b"asuka's").await;
    cids.sort_by_key(|c| c.to_string());
    let first = s.list(&rei, None, 3).await.expect("list");
    assert_eq!(first, cids[..3]);
    let rest = s
        .list(&rei, Some(&first[2].to_string()), 10)
        .await
        .expect("list");
    assert_eq!(rest, cids[3..]);
    assert!(
        s.list(&rei, Some(&cids[4].to_string()), 10)
            .await
            .expect("list")
            .is_empty()
    );
}

/// Deleting a blob (twice) removes it; deleting an account removes its blobs and no one
/// else's.
pub async fn deletes_are_idempotent_and_per_account(store: Subject) {
    let s = store.as_ref();
    let rei = did("did:plc:rei");
    let asuka = did("did:plc:asuka");
    let c = permanent(s, &rei, b"an image").await;
    let kept = permanent(s, &rei, b"another image").await;
    let theirs = permanent(s, &asuka, b"an image").await;
    s.delete(&rei, &c).await.expect("delete");
    s.delete(&rei, &c).await.expect("delete is idempotent");
    assert!(!s.has(&rei, &c).await.expect("has"));
    assert!(s.has(&rei, &kept).await.expect("has"));
    assert!(
        s.has(&asuka, &theirs).await.expect("has"),
        "the same bytes of another account stay"
    );
    s.put_temp(&asuka, b"pending".to_vec()).await.expect("temp");
    s.delete_actor(&asuka).await.expect("delete actor");
    s.delete_actor(&asuka)
        .await
        .expect("delete actor is idempotent");
    assert!(s.list(&asuka, None, 10).await.expect("list").is_empty());
    assert!(!s.has(&asuka, &theirs).await.expect("has"));
    assert_eq!(
        s.list(&rei, None, 10).await.expect("list"),
        [kept],
        "another account's blobs stay"
    );
    s.delete_actor(&rei).await.expect("delete actor");
    assert!(s.list(&rei, None, 10).await.expect("list").is_empty());
}
