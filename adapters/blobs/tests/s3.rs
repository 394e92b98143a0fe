#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! The blob store over S3 passes the blob conformance suite against a real S3-protocol server.
//!
//! The server comes from `STRATOS_TEST_S3_ENDPOINT` and `STRATOS_TEST_S3_BUCKET` (`scripts/test`
//! starts a moto server under `CI=true`). Without them the suite prints one `SKIPPED:` line;
//! under `CI=true` a missing server fails.

use std::io::Write as _;
use std::sync::Arc;

use rand_core::{OsRng, RngCore};
use stratos_blobs::{OpendalBlobStore, S3Config};
use stratos_testkit::conformance;

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
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: S3 blob conformance suite (set STRATOS_TEST_S3_ENDPOINT and STRATOS_TEST_S3_BUCKET)"
            );
            None
        }
    }
}

#[tokio::test]
async fn s3_blob_store() {
    let Some((endpoint, bucket)) = server() else {
        return;
    };
    // A fresh prefix per run: parallel runs never collide.
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
    conformance::blob_store::run(Arc::new(store)).await;
}
