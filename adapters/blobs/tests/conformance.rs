#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! The opendal blob store passes the blob conformance suite on the local file system, one test
//! per case (`blob_store::…`), each in its own temporary directory.

use std::sync::Arc;

use stratos_blobs::OpendalBlobStore;
use stratos_domain::cid;
use stratos_domain::syntax::Did;
use stratos_ports::blob_store::{BlobStore, BlobStoreError};
use stratos_testkit::conformance::Fixture;

stratos_testkit::blob_store_conformance!(async {
    let dir = tempfile::tempdir().unwrap();
    Fixture::new(Arc::new(OpendalBlobStore::fs(dir.path()).unwrap())).keep(dir)
});

#[tokio::test]
async fn fs_layout_and_quarantine() {
    let dir = tempfile::tempdir().unwrap();
    let store = OpendalBlobStore::fs(dir.path()).unwrap();
    let rei = Did::parse("did:plc:rei").unwrap();
    let bytes = b"png bytes".to_vec();
    let c = cid::raw(&bytes);
    let key = store.put_temp(&rei, bytes.clone()).await.unwrap();
    assert!(dir.path().join("tmp/did:plc:rei").join(&key).is_file());
    store.make_permanent(&rei, &key, &c).await.unwrap();
    assert!(dir.path().join("did:plc:rei").join(c.to_string()).is_file());
    assert!(!dir.path().join("tmp/did:plc:rei").join(&key).exists());
    store.quarantine(&rei, &c).await.unwrap();
    assert!(matches!(
        store.get(&rei, &c).await,
        Err(BlobStoreError::NotFound(_))
    ));
    assert!(
        dir.path()
            .join("quarantine/did:plc:rei")
            .join(c.to_string())
            .is_file()
    );
    store.unquarantine(&rei, &c).await.unwrap();
    assert_eq!(store.get(&rei, &c).await.unwrap(), bytes);
    // Temporary keys are opaque tokens; path tricks are refused.
    assert!(
        store
            .make_permanent(&rei, "../../etc/passwd", &c)
            .await
            .is_err()
    );
}
