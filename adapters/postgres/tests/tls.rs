#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! PostgreSQL over TLS with `sslmode` honoured, against the TLS-only cluster of
//! `scripts/tls-servers` (`STRATOS_TEST_POSTGRES_TLS_URL`: `sslmode=verify-full` and the test CA
//! as `sslrootcert`; it refuses every connection without TLS). The conformance suites run over
//! the same URL in `scripts/test`. Skipped without that server — except under `CI=true`.

use stratos_postgres::{PostgresConfig, PostgresStorage};

fn server() -> Option<String> {
    match std::env::var("STRATOS_TEST_POSTGRES_TLS_URL") {
        Ok(url) => Some(url),
        Err(_) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "no TLS PostgreSQL in CI (scripts/tls-servers)"
            );
            eprintln!("SKIPPED: PostgreSQL over TLS (scripts/tls-servers)");
            None
        }
    }
}

async fn connects(url: &str) -> bool {
    let config = PostgresConfig {
        url: url.to_owned(),
        pool_size: 2,
        schema_prefix: format!("tls{}_", std::process::id()),
    };
    match tokio::time::timeout(
        std::time::Duration::from_secs(10),
        PostgresStorage::connect(&config),
    )
    .await
    {
        Ok(Ok(_)) => true,
        Ok(Err(_)) | Err(_) => false,
    }
}

#[tokio::test]
async fn sslmode_and_the_root_certificate_are_honoured() {
    let Some(url) = server() else { return };
    assert!(connects(&url).await, "verify-full with the right CA");
    // verify-ca with the IP address the certificate also names.
    let by_ip =
        url.replacen("@localhost:", "@127.0.0.1:", 1)
            .replacen("verify-full", "verify-ca", 1);
    assert!(connects(&by_ip).await, "verify-ca by IP");
    let other = url.replace("/ca.pem", "/other-ca.pem");
    assert!(
        !connects(&other).await,
        "a certificate of another CA was accepted"
    );
    // `require` encrypts without checking the certificate (libpq's meaning).
    let require = url.replacen("sslmode=verify-full", "sslmode=require", 1);
    let require = require.split("&sslrootcert").next().unwrap().to_owned();
    assert!(connects(&require).await, "require");
    // The server refuses plain connections, so `disable` cannot connect: TLS really was used.
    let disable = require.replacen("sslmode=require", "sslmode=disable", 1);
    assert!(!connects(&disable).await, "a plain connection was accepted");
}
