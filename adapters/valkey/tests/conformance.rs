#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! The Valkey cache and notifier pass their conformance suites against a real server, one test
//! per case (`cache::…`, `notifier::…`).
//!
//! The server comes from `STRATOS_TEST_VALKEY_URL` (`.ci/run` sets it to the machine's Redis,
//! then runs the suites again over TLS: `rediss://…` with the CA in `STRATOS_TEST_VALKEY_CA`).
//! Without it the suite is skipped with one line on stderr — except under `CI=true`, where a
//! missing server is a failure.

use std::io::Write as _;
use std::sync::Arc;

use rand_core::{OsRng, RngCore};
use stratos_testkit::conformance::cache::TimedCache;
use stratos_valkey::{ValkeyCache, ValkeyNotifier};

fn server() -> Option<String> {
    match std::env::var("STRATOS_TEST_VALKEY_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "STRATOS_TEST_VALKEY_URL is not set in CI: the Valkey suite must run"
            );
            // Written to the real stderr (not `eprintln!`, which the test harness captures), so
            // the skip is visible in every run; once, however many tests skip.
            static NOTICE: std::sync::Once = std::sync::Once::new();
            NOTICE.call_once(|| {
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED: Valkey conformance suites (set STRATOS_TEST_VALKEY_URL to run them)"
                );
            });
            None
        }
    }
}

/// The CA of a `rediss://` test server (`STRATOS_TEST_VALKEY_CA`, a PEM file), if any.
fn ca() -> Option<Vec<u8>> {
    let path = std::env::var("STRATOS_TEST_VALKEY_CA").ok()?;
    Some(std::fs::read(path).unwrap())
}

/// A fresh key and channel prefix per case: parallel cases and runs never collide, and nothing
/// is left behind.
fn prefix() -> String {
    format!("stratos-test-{:016x}:", OsRng.next_u64())
}

// One test per case (`cargo test -p stratos-valkey --test conformance cache::…`); time passes
// for the cache by sleeping.
stratos_testkit::cache_conformance!(async {
    let url = server()?;
    let cache = ValkeyCache::connect_with_ca(&url, &prefix(), ca().as_deref())
        .await
        .unwrap();
    Some(TimedCache::new(Arc::new(cache), |ms| {
        tokio::time::sleep(std::time::Duration::from_millis(ms))
    }))
});
stratos_testkit::notifier_conformance!(async {
    let url = server()?;
    Some(Arc::new(
        ValkeyNotifier::connect_with_ca(&url, &prefix(), ca().as_deref())
            .await
            .unwrap(),
    ))
});

#[tokio::test]
async fn valkey_notifier_prefixes_keep_deployments_apart() {
    use stratos_ports::env::Notifier;
    let Some(url) = server() else { return };
    let base = format!("stratos-test-{:016x}", OsRng.next_u64());
    let one = ValkeyNotifier::connect_with_ca(&url, &format!("{base}-one:"), ca().as_deref())
        .await
        .unwrap();
    let two = ValkeyNotifier::connect_with_ca(&url, &format!("{base}-two:"), ca().as_deref())
        .await
        .unwrap();
    let mut heard_by_two = two.subscribe("seq").await.unwrap();
    one.publish("seq", b"for one only").await.unwrap();
    two.publish("seq", b"for two").await.unwrap();
    // Both were published in this order on the same server: a leak would arrive first.
    let heard = tokio::time::timeout(std::time::Duration::from_secs(10), heard_by_two.next())
        .await
        .expect("a message within 10 s");
    assert_eq!(heard.as_deref(), Some(&b"for two"[..]));
}
