//! The [`BlobStore`] conformance suite.

use std::sync::Arc;

use stratos_domain::cid;
use stratos_domain::syntax::Did;
use stratos_ports::blob_store::{BlobStore, BlobStoreError};

/// Runs every case against `store` (which must start empty).
pub async fn run(store: Arc<dyn BlobStore>) {
    let s = store.as_ref();
    let rei = Did::parse("did:plc:rei").expect("did");
    let asuka = Did::parse("did:plc:asuka").expect("did");
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
    // Making the same blob permanent again from a new upload is fine.
    let key2 = s.put_temp(&rei, bytes.clone()).await.expect("temp");
    s.make_permanent(&rei, &key2, &c).await.expect("idempotent");
    assert!(matches!(
        s.make_permanent(&rei, "no-such-key", &cid::raw(b"other"))
            .await,
        Err(BlobStoreError::NotFound(_))
    ));

    // A deleted upload can no longer be made permanent; deleting it again is fine.
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
    // Another account's upload is out of reach.
    let theirs = s.put_temp(&asuka, b"asuka's".to_vec()).await.expect("temp");
    s.delete_temp(&rei, &theirs).await.expect("delete temp");
    s.make_permanent(&asuka, &theirs, &cid::raw(b"asuka's"))
        .await
        .expect("asuka's upload survived rei's delete");
    s.delete_actor(&asuka).await.expect("delete actor");

    let mut cids = vec![c];
    for i in 0..4u8 {
        let b = vec![i; 10];
        let k = s.put_temp(&rei, b.clone()).await.expect("temp");
        let ci = cid::raw(&b);
        s.make_permanent(&rei, &k, &ci).await.expect("permanent");
        cids.push(ci);
    }
    cids.sort_by_key(|c| c.to_string());
    let first = s.list(&rei, None, 3).await.expect("list");
    assert_eq!(first, cids[..3]);
    let rest = s
        .list(&rei, Some(&first[2].to_string()), 10)
        .await
        .expect("list");
    assert_eq!(rest, cids[3..]);

    s.delete(&rei, &c).await.expect("delete");
    s.delete(&rei, &c).await.expect("delete is idempotent");
    assert!(!s.has(&rei, &c).await.expect("has"));
    s.delete_actor(&rei).await.expect("delete actor");
    assert!(s.list(&rei, None, 10).await.expect("list").is_empty());
}
