#![cfg(feature = "s3")] // the S3 service is a feature of this crate (on by default)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! The blob store over S3 passes the blob conformance suite against a real S3-protocol server,
//! one test per case (`blob_store::…`), each under its own key prefix.
//!
//! The server comes from `STRATOS_TEST_S3_ENDPOINT` and `STRATOS_TEST_S3_BUCKET` (`scripts/test`
//! starts a moto server under `CI=true`). Without them the suite prints one `SKIPPED:` line;
//! under `CI=true` a missing server fails.

use std::io::Write as _;
use std::sync::Arc;

use rand_core::{OsRng, RngCore};
use stratos_blobs::{OpendalBlobStore, S3Config};

fn server() -> Option<(String, String)> {
    match (
        std::env::var("STRATOS_TEST_S3_ENDPOINT"),
        std::env::var("STRATOS_TEST_S3_BUCKET"),
    ) {
        (Ok(endpoint), Ok(bucket)) if !endpoint.is_empty() && !bucket.is_empty() => {
            Some((endpoint, bucket))
        }
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "STRATOS_TEST_S3_ENDPOINT/BUCKET are not set in CI: the S3 suite must run"
            );
            static NOTICE: std::sync::Once = std::sync::Once::new();
            NOTICE.call_once(|| {
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED: S3 blob conformance suite (set STRATOS_TEST_S3_ENDPOINT and STRATOS_TEST_S3_BUCKET)"
                );
            });
            None
        }
    }
}

/// A store under a fresh key prefix, or `None` without a server.
fn store() -> Option<Arc<OpendalBlobStore>> {
    let (endpoint, bucket) = server()?;
    // A fresh prefix per case: parallel cases and runs never collide.
    let root = format!("/stratos-test-{:016x}/", OsRng.next_u64());
    let store = OpendalBlobStore::s3(&S3Config {
        bucket,
        region: "us-east-1".into(),
        endpoint: Some(endpoint),
        root,
        access_key_id: Some("test".into()),
        secret_access_key: Some("test".into()),
    })
    .unwrap();
    Some(Arc::new(store))
}

// One test per case (`cargo test -p stratos-blobs --test s3 blob_store::listing_pages_in_cid_order`).
stratos_testkit::blob_store_conformance!(async { store() });
