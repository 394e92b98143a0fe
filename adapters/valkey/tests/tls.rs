#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! Valkey over TLS is checked, not just encrypted: against the TLS-only server of
//! `scripts/tls-servers` (`STRATOS_TEST_VALKEY_TLS_URL`, CA in `STRATOS_TEST_VALKEY_TLS_CA`, another
//! CA beside it), the right CA connects, and another CA, the system's roots, or `#insecure` do
//! not. Skipped without that server — except under `CI=true`.

use stratos_ports::env::Cache as _;
use stratos_valkey::ValkeyCache;

fn server() -> Option<(String, Vec<u8>, Vec<u8>)> {
    let (Ok(url), Ok(ca)) = (
        std::env::var("STRATOS_TEST_VALKEY_TLS_URL"),
        std::env::var("STRATOS_TEST_VALKEY_TLS_CA"),
    ) else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "no TLS Valkey in CI (scripts/tls-servers)"
        );
        eprintln!("SKIPPED: Valkey over TLS (scripts/tls-servers)");
        return None;
    };
    let other = std::path::Path::new(&ca).with_file_name("other-ca.pem");
    Some((
        url,
        std::fs::read(&ca).unwrap(),
        std::fs::read(other).unwrap(),
    ))
}

/// True when `connect` fails or does not succeed within 5 s (a client that keeps retrying a
/// refused handshake has not connected either).
async fn refused<T, E>(connect: impl std::future::Future<Output = Result<T, E>>) -> bool {
    !matches!(
        tokio::time::timeout(std::time::Duration::from_secs(5), connect).await,
        Ok(Ok(_))
    )
}

#[tokio::test]
async fn the_servers_certificate_is_checked() {
    let Some((url, ca, other)) = server() else {
        return;
    };
    let cache = ValkeyCache::connect_with_ca(&url, "stratos-tls-test:", Some(&ca))
        .await
        .unwrap();
    cache.set("k", b"v", 60_000).await.unwrap();
    assert_eq!(cache.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
    cache.delete("k").await.unwrap();

    assert!(
        refused(ValkeyCache::connect_with_ca(&url, "x:", Some(&other))).await,
        "a certificate from another CA was accepted"
    );
    assert!(
        refused(ValkeyCache::connect(&url, "x:")).await,
        "the system's roots accepted the test CA's certificate"
    );
    assert!(
        ValkeyCache::connect_with_ca(&format!("{url}/#insecure"), "x:", None)
            .await
            .is_err()
    );
    // The TLS port speaks no plain text.
    let plain = url.replacen("rediss://", "redis://", 1);
    assert!(refused(ValkeyCache::connect(&plain, "x:")).await);
}
