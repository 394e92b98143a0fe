#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! The Valkey cache passes the cache conformance suite against a real server.
//!
//! The server comes from `STRATOS_TEST_VALKEY_URL` (`.ci/run` sets it to the machine's Redis).
//! Without it the suite is skipped with one line on stderr — except under `CI=true`, where a
//! missing server is a failure.

use std::io::Write as _;
use std::sync::Arc;

use rand_core::{OsRng, RngCore};
use stratos_testkit::conformance;
use stratos_valkey::ValkeyCache;

fn server() -> Option<String> {
    match std::env::var("STRATOS_TEST_VALKEY_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "STRATOS_TEST_VALKEY_URL is not set in CI: the Valkey suite must run"
            );
            // Written to the real stderr (not `eprintln!`, which the test harness captures), so
            // the skip is visible in every run.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: Valkey conformance suite (set STRATOS_TEST_VALKEY_URL to run it)"
            );
            None
        }
    }
}

#[tokio::test]
async fn valkey_cache() {
    let Some(url) = server() else { return };
    // A fresh prefix per run: parallel runs never collide and nothing is left behind.
    let prefix = format!("stratos-test-{:016x}:", OsRng.next_u64());
    let cache = ValkeyCache::connect(&url, &prefix).await.unwrap();
    conformance::cache::run(
        Arc::new(cache),
        Box::new(|ms| Box::pin(tokio::time::sleep(std::time::Duration::from_millis(ms)))),
    )
    .await;
}
