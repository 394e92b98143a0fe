//! Unit tests of the configuration: the parser's rules, the table's consistency, the start-up
//! summary's redaction, `.env` loading, and docs/configuration.md against the table.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use stratos_domain::enrollment::EnrollmentMode as PolicyMode;

use super::build::read_config;
use super::parsed::Values;
use super::setting::{Default, Parser, Secrecy};
use super::table::{RETIRED, SECTIONS, settings};
use super::values::{REDACTED, redact_url};
use super::*;

fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_pairs(pairs.iter().copied())
}

fn ok(pairs: &[(&str, &str)]) -> Config {
    match load(pairs) {
        Ok(config) => config,
        Err(e) => panic!("expected a valid configuration, got {e}"),
    }
}

fn problems(pairs: &[(&str, &str)]) -> Vec<Problem> {
    match load(pairs) {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(e) => e.problems().to_vec(),
    }
}

fn has_problem(problems: &[Problem], variable: &str, needle: &str) -> bool {
    problems
        .iter()
        .any(|p| p.variable == variable && p.message.contains(needle))
}

#[test]
fn defaults_with_empty_map() {
    let config = Config::from_map(&HashMap::new()).unwrap();
    assert_eq!(config.service_did.as_str(), "did:web:localhost%3A3100");
    assert_eq!(config.service_fragment, "atproto_pns");
    assert_eq!(config.bind, IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(config.port, 3100);
    assert_eq!(config.socket_addr().to_string(), "127.0.0.1:3100");
    assert_eq!(config.public_url.as_str(), "http://localhost:3100");
    assert!(config.allowed_boundaries.is_empty());
    assert!(config.auto_enroll_boundaries.is_empty());
    assert_eq!(config.enrollment.mode, EnrollmentMode::Allowlist);
    assert!(config.enrollment.allowed_dids.is_empty());
    assert!(config.enrollment.allowed_pds_endpoints.is_empty());
    assert!(config.enrollment.allow_list_uri.is_none());
    assert!(config.enrollment.allow_list_bootstrap_name.is_none());
    assert!(config.valkey_url.is_none());
    assert_eq!(config.data_dir, PathBuf::from("./data"));
    assert!(matches!(
        &config.storage,
        StorageBackend::Sqlite { data_dir, durability: SqliteDurability::Durable }
            if data_dir == &PathBuf::from("./data")
    ));
    assert_eq!(config.block_cache_size, 50_000);
    assert!(matches!(
        &config.blobs,
        BlobStorage::Local { dir } if dir == &PathBuf::from("./data").join("blobs")
    ));
    assert_eq!(
        config.limits,
        Limits {
            max_body_bytes: 1_048_576,
            blob_max_bytes: 5_242_880,
            import_max_bytes: 268_435_456,
            body_timeout_secs: 30,
            max_bodies_per_ip: 32,
            max_bodies: 1_024,
            import_concurrency: 1,
        }
    );
    assert_eq!(
        config.write_rate,
        WriteRateLimit {
            max_writes: 300,
            window_ms: 60_000,
            cooldown_ms: 10_000,
            cooldown_jitter_ms: 1_000,
        }
    );
    assert_eq!(
        config.write_rate.rate_limit(),
        stratos_domain::rate_limit::DEFAULT_RATE_LIMIT
    );
    assert!(!config.auth.dev_mode);
    assert!(config.auth.dpop_require_nonce);
    assert!(config.auth.admin_password.is_none());
    assert!(config.auth.sync_token.is_none());
    assert!(config.oauth.client_id.is_none());
    assert!(config.oauth.client_secret.is_none());
    assert_eq!(config.oauth.client_name, "Stratos Service");
    assert_eq!(config.plc_url.as_str(), "https://plc.directory");
    assert_eq!(config.repo_url.as_str(), "http://localhost:3100");
    assert!(config.operator_contact.is_none());
    assert_eq!(config.log_level, LogLevel::Info);
    // The defaults are safe but inert: the operator is told why.
    assert!(
        config
            .warnings
            .iter()
            .any(|w| w.contains("nobody can enroll"))
    );
    assert!(
        config
            .warnings
            .iter()
            .any(|w| w.contains("STRATOS_ALLOWED_DOMAINS is empty"))
    );
}

#[test]
fn an_empty_allowlist_with_an_admin_password_still_lets_the_operator_enroll() {
    // The README's own example: the old warning said "nobody can enroll" although
    // zone.stratos.admin.enrollActor works.
    let config = ok(&[
        ("STRATOS_DEV_MODE", "true"),
        ("STRATOS_ADMIN_PASSWORD", "secret"),
        ("STRATOS_ALLOWED_DOMAINS", "general"),
    ]);
    assert!(
        !config
            .warnings
            .iter()
            .any(|w| w.contains("nobody can enroll")),
        "{:?}",
        config.warnings
    );
    let enrollment: Vec<_> = config
        .warnings
        .iter()
        .filter(|w| w.contains("STRATOS_ENROLLMENT_MODE=allowlist"))
        .collect();
    assert_eq!(enrollment.len(), 1, "{:?}", config.warnings);
    assert!(enrollment[0].contains("cannot enroll themselves"));
    assert!(enrollment[0].contains("zone.stratos.admin.enrollActor"));
    // Once an allow-list admits someone, there is nothing to warn about.
    let config = ok(&[
        ("STRATOS_ADMIN_PASSWORD", "secret"),
        ("STRATOS_ALLOWED_DIDS", "did:plc:rei"),
    ]);
    assert!(
        !config
            .warnings
            .iter()
            .any(|w| w.contains("STRATOS_ENROLLMENT_MODE=allowlist")),
        "{:?}",
        config.warnings
    );
}

#[test]
fn every_boolean_spelling_is_accepted() {
    for (spelling, expected) in [
        ("true", true),
        ("TRUE", true),
        ("True", true),
        ("1", true),
        ("false", false),
        ("FALSE", false),
        ("False", false),
        ("0", false),
        (" false ", false),
    ] {
        for name in ["STRATOS_DEV_MODE", "STRATOS_DPOP_REQUIRE_NONCE"] {
            let config = ok(&[(name, spelling)]);
            let value = match name {
                "STRATOS_DEV_MODE" => config.auth.dev_mode,
                _ => config.auth.dpop_require_nonce,
            };
            assert_eq!(value, expected, "{name}={spelling:?}");
        }
    }
    // Empty means unset, so the default applies.
    assert!(
        ok(&[("STRATOS_DPOP_REQUIRE_NONCE", "")])
            .auth
            .dpop_require_nonce
    );
    assert!(!ok(&[("STRATOS_DEV_MODE", "")]).auth.dev_mode);
}

#[test]
fn other_boolean_spellings_are_rejected() {
    for spelling in ["yes", "no", "on", "off", "2", "t", "f", "-1", "truee"] {
        for name in ["STRATOS_DEV_MODE", "STRATOS_DPOP_REQUIRE_NONCE"] {
            let found = problems(&[(name, spelling)]);
            assert!(
                has_problem(&found, name, "expected true, false, 1 or 0"),
                "{name}={spelling:?}: {found:?}"
            );
        }
    }
}

#[test]
fn outbound_private_targets_follow_dev_mode_unless_set() {
    let dev = [("STRATOS_DEV_MODE", "true"), ("STRATOS_BIND", "127.0.0.1")];
    assert!(!ok(&[]).outbound_allow_private);
    assert!(ok(&dev).outbound_allow_private);
    let guarded = ok(&[dev[0], dev[1], ("STRATOS_OUTBOUND_ALLOW_PRIVATE", "false")]);
    assert!(!guarded.outbound_allow_private);
    let open = ok(&[("STRATOS_OUTBOUND_ALLOW_PRIVATE", "1")]);
    assert!(open.outbound_allow_private);
    assert!(
        open.warnings
            .iter()
            .any(|w| w.contains("STRATOS_OUTBOUND_ALLOW_PRIVATE is on"))
    );
    assert!(has_problem(
        &problems(&[("STRATOS_OUTBOUND_ALLOW_PRIVATE", "yes")]),
        "STRATOS_OUTBOUND_ALLOW_PRIVATE",
        "expected true, false, 1 or 0"
    ));
}

#[test]
fn d10_dev_mode_false_is_false() {
    // The reference's `.env.example` and docker-compose value, which it read as `true`.
    let config = ok(&[("STRATOS_DEV_MODE", "false")]);
    assert!(!config.auth.dev_mode);
    let config = ok(&[("STRATOS_DEV_MODE", "0")]);
    assert!(!config.auth.dev_mode);
}

#[test]
fn dev_mode_refuses_non_loopback_binds() {
    for bind in ["0.0.0.0", "::", "192.168.1.10"] {
        let found = problems(&[("STRATOS_DEV_MODE", "true"), ("STRATOS_BIND", bind)]);
        assert!(
            has_problem(
                &found,
                "STRATOS_DEV_MODE",
                "dev mode only binds to loopback"
            ),
            "{bind}: {found:?}"
        );
    }
    for bind in ["127.0.0.1", "::1"] {
        let config = ok(&[("STRATOS_DEV_MODE", "true"), ("STRATOS_BIND", bind)]);
        assert!(config.auth.dev_mode);
        assert!(config.warnings.iter().any(|w| w.contains("DEV_MODE is on")));
    }
    // Without dev mode any address is fine.
    let config = ok(&[("STRATOS_BIND", "0.0.0.0")]);
    assert_eq!(config.socket_addr().to_string(), "0.0.0.0:3100");
}

#[test]
fn bad_bind_address() {
    let found = problems(&[("STRATOS_BIND", "localhost")]);
    assert!(has_problem(
        &found,
        "STRATOS_BIND",
        "expected an IP address"
    ));
}

#[test]
fn postgres_without_url_is_an_error() {
    let found = problems(&[("STORAGE_BACKEND", "postgres")]);
    assert!(has_problem(
        &found,
        "STRATOS_POSTGRES_URL",
        "STRATOS_POSTGRES_URL is required when STORAGE_BACKEND=postgres"
    ));
    // Parts without a host are not enough either.
    let found = problems(&[
        ("STORAGE_BACKEND", "postgres"),
        ("STRATOS_PG_USERNAME", "app"),
    ]);
    assert!(has_problem(&found, "STRATOS_POSTGRES_URL", "is required"));
}

#[test]
fn postgres_url_is_used_as_given() {
    let config = ok(&[
        ("STORAGE_BACKEND", "postgres"),
        ("STRATOS_POSTGRES_URL", "postgres://app:pw@db:5432/stratos"),
        ("STRATOS_PG_ACTOR_POOL_SIZE", "50"),
        ("STRATOS_PG_ADMIN_POOL_SIZE", "2"),
        ("STRATOS_PG_HOST", "ignored"),
    ]);
    let StorageBackend::Postgres {
        url,
        actor_pool,
        admin_pool,
    } = &config.storage
    else {
        panic!("expected postgres, got {:?}", config.storage);
    };
    assert_eq!(url.expose(), "postgres://app:pw@db:5432/stratos");
    assert_eq!((*actor_pool, *admin_pool), (50, 2));
    assert!(
        config
            .warnings
            .iter()
            .any(|w| w.contains("STRATOS_PG_HOST is ignored"))
    );
    let found = problems(&[
        ("STORAGE_BACKEND", "postgres"),
        ("STRATOS_POSTGRES_URL", "mysql://db/x"),
    ]);
    assert!(has_problem(&found, "STRATOS_POSTGRES_URL", "postgres://"));
    assert_eq!(found.len(), 1, "{found:?}");
}

#[test]
fn postgres_dsn_built_from_parts() {
    let config = ok(&[
        ("STORAGE_BACKEND", "postgres"),
        ("STRATOS_PG_HOST", "db.internal"),
    ]);
    let StorageBackend::Postgres { url, .. } = &config.storage else {
        panic!("expected postgres");
    };
    assert_eq!(
        url.expose(),
        "postgres://stratos@db.internal:5432/stratos?sslmode=require"
    );

    let config = ok(&[
        ("STORAGE_BACKEND", "postgres"),
        ("STRATOS_PG_HOST", "::1"),
        ("STRATOS_PG_PORT", "6543"),
        ("STRATOS_PG_USERNAME", "app user"),
        ("STRATOS_PG_PASSWORD", "p@ss:w/rd"),
        ("STRATOS_PG_DBNAME", "stratos_prod"),
        ("STRATOS_PG_SSLMODE", "verify-full"),
    ]);
    let StorageBackend::Postgres { url, .. } = &config.storage else {
        panic!("expected postgres");
    };
    assert_eq!(
        url.expose(),
        "postgres://app%20user:p%40ss%3Aw%2Frd@[::1]:6543/stratos_prod?sslmode=verify-full"
    );
    assert_eq!(
        url.redacted(),
        "postgres://app%20user:<redacted>@[::1]:6543/stratos_prod?sslmode=verify-full"
    );

    let found = problems(&[
        ("STORAGE_BACKEND", "postgres"),
        ("STRATOS_PG_HOST", "db"),
        ("STRATOS_PG_SSLMODE", "strict"),
        ("STRATOS_PG_PORT", "0"),
    ]);
    assert!(has_problem(&found, "STRATOS_PG_SSLMODE", "verify-full"));
    assert!(has_problem(&found, "STRATOS_PG_PORT", "from 1 to 65535"));
}

#[test]
fn pool_sizes_must_be_positive() {
    let found = problems(&[
        ("STORAGE_BACKEND", "postgres"),
        ("STRATOS_POSTGRES_URL", "postgres://db/x"),
        ("STRATOS_PG_ACTOR_POOL_SIZE", "0"),
        ("STRATOS_PG_ADMIN_POOL_SIZE", "-3"),
    ]);
    assert!(has_problem(&found, "STRATOS_PG_ACTOR_POOL_SIZE", "from 1"));
    assert!(has_problem(&found, "STRATOS_PG_ADMIN_POOL_SIZE", "from 1"));
}

#[test]
fn sqlite_durability_and_ignored_postgres_settings() {
    let config = ok(&[
        ("STRATOS_SQLITE_DURABILITY", "relaxed"),
        ("STRATOS_DATA_DIR", "/var/lib/stratos"),
        ("STRATOS_POSTGRES_URL", "postgres://db/x"),
    ]);
    assert!(matches!(
        &config.storage,
        StorageBackend::Sqlite { data_dir, durability: SqliteDurability::Relaxed }
            if data_dir == &PathBuf::from("/var/lib/stratos")
    ));
    assert!(matches!(
        &config.blobs,
        BlobStorage::Local { dir } if dir == &PathBuf::from("/var/lib/stratos/blobs")
    ));
    assert!(
        config
            .warnings
            .iter()
            .any(|w| w == "STRATOS_POSTGRES_URL is ignored because STORAGE_BACKEND=sqlite")
    );
    let found = problems(&[("STRATOS_SQLITE_DURABILITY", "fast")]);
    assert!(has_problem(
        &found,
        "STRATOS_SQLITE_DURABILITY",
        "durable, relaxed"
    ));
}

#[test]
fn s3_without_bucket_is_an_error() {
    let found = problems(&[("STRATOS_BLOB_STORAGE", "s3")]);
    assert!(has_problem(
        &found,
        "STRATOS_S3_BUCKET",
        "STRATOS_S3_BUCKET is required when STRATOS_BLOB_STORAGE=s3"
    ));
}

#[test]
fn half_s3_credentials_are_an_error() {
    let found = problems(&[
        ("STRATOS_BLOB_STORAGE", "s3"),
        ("STRATOS_S3_BUCKET", "blobs"),
        ("STRATOS_S3_ACCESS_KEY", "AKIA"),
    ]);
    assert!(has_problem(
        &found,
        "STRATOS_S3_SECRET_KEY",
        "both or neither"
    ));
    let found = problems(&[
        ("STRATOS_BLOB_STORAGE", "s3"),
        ("STRATOS_S3_BUCKET", "blobs"),
        ("STRATOS_S3_SECRET_KEY", "shh"),
    ]);
    assert!(has_problem(
        &found,
        "STRATOS_S3_ACCESS_KEY",
        "both or neither"
    ));
}

#[test]
fn s3_with_everything() {
    let config = ok(&[
        ("STRATOS_BLOB_STORAGE", "S3"),
        ("STRATOS_S3_BUCKET", "blobs"),
        ("STRATOS_S3_REGION", "eu-west-1"),
        ("STRATOS_S3_ENDPOINT", "http://127.0.0.1:9000/"),
        ("STRATOS_S3_ACCESS_KEY", "AKIA"),
        ("STRATOS_S3_SECRET_KEY", "shh"),
    ]);
    let BlobStorage::S3 {
        bucket,
        region,
        endpoint,
        credentials,
    } = &config.blobs
    else {
        panic!("expected s3");
    };
    assert_eq!(bucket, "blobs");
    assert_eq!(region.as_deref(), Some("eu-west-1"));
    assert_eq!(
        endpoint.as_ref().map(HttpUrl::as_str),
        Some("http://127.0.0.1:9000")
    );
    let credentials = credentials.as_ref().unwrap();
    assert_eq!(credentials.access_key.expose(), "AKIA");
    assert_eq!(credentials.secret_key.expose(), "shh");
    // Without keys the AWS chain is used.
    let config = ok(&[("STRATOS_BLOB_STORAGE", "s3"), ("STRATOS_S3_BUCKET", "b")]);
    assert!(matches!(
        &config.blobs,
        BlobStorage::S3 {
            credentials: None,
            ..
        }
    ));
    // S3 settings under local storage are flagged, not fatal.
    let config = ok(&[("STRATOS_S3_BUCKET", "b")]);
    assert!(
        config
            .warnings
            .iter()
            .any(|w| w == "STRATOS_S3_BUCKET is ignored because STRATOS_BLOB_STORAGE=local")
    );
}

#[test]
fn lists_are_trimmed_and_empties_dropped() {
    let config = ok(&[
        (
            "STRATOS_ALLOWED_DOMAINS",
            " engineering, ,design,,engineering ",
        ),
        ("STRATOS_AUTO_ENROLL_DOMAINS", ",design ,"),
        (
            "STRATOS_ALLOWED_DIDS",
            " did:plc:abc ,, did:web:example.com,",
        ),
        (
            "STRATOS_ALLOWED_PDS_ENDPOINTS",
            "https://pds.example/ , ,https://other.example",
        ),
    ]);
    let names: Vec<&str> = config
        .allowed_boundaries
        .iter()
        .map(Boundary::as_str)
        .collect();
    assert_eq!(
        names,
        [
            "did:web:localhost%3A3100/engineering",
            "did:web:localhost%3A3100/design"
        ]
    );
    let auto: Vec<&str> = config
        .auto_enroll_boundaries
        .iter()
        .map(Boundary::as_str)
        .collect();
    assert_eq!(auto, ["did:web:localhost%3A3100/design"]);
    let dids: Vec<&str> = config
        .enrollment
        .allowed_dids
        .iter()
        .map(|d| d.as_str())
        .collect();
    assert_eq!(dids, ["did:plc:abc", "did:web:example.com"]);
    let pds: Vec<&str> = config
        .enrollment
        .allowed_pds_endpoints
        .iter()
        .map(HttpUrl::as_str)
        .collect();
    assert_eq!(pds, ["https://pds.example", "https://other.example"]);
    // And the domain accepts the result.
    let policy = config.enrollment_policy().unwrap();
    assert_eq!(policy.enroll_boundaries(), config.auto_enroll_boundaries);
}

#[test]
fn boundary_rules() {
    let found = problems(&[
        ("STRATOS_ALLOWED_DOMAINS", "a"),
        ("STRATOS_AUTO_ENROLL_DOMAINS", "b"),
    ]);
    assert!(has_problem(
        &found,
        "STRATOS_AUTO_ENROLL_DOMAINS",
        "is not in STRATOS_ALLOWED_DOMAINS"
    ));
    // A boundary qualified for another service is refused rather than double-qualified.
    let found = problems(&[("STRATOS_ALLOWED_DOMAINS", "did:web:other.example/a")]);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].variable, "STRATOS_ALLOWED_DOMAINS");
    let config = ok(&[("STRATOS_ALLOWED_DOMAINS", "did:web:localhost%3A3100/a,a,b")]);
    assert_eq!(config.allowed_boundaries.len(), 2);
}

#[test]
fn enrollment_modes() {
    for (spelling, mode) in [
        ("open", EnrollmentMode::Open),
        ("allowlist", EnrollmentMode::Allowlist),
        ("closed", EnrollmentMode::Closed),
        ("Open", EnrollmentMode::Open),
    ] {
        let config = ok(&[("STRATOS_ENROLLMENT_MODE", spelling)]);
        assert_eq!(config.enrollment.mode, mode);
        assert_eq!(config.enrollment.mode.as_str(), spelling.to_lowercase());
        assert_eq!(
            config.enrollment_policy().unwrap().mode,
            PolicyMode::from(mode)
        );
    }
    let found = problems(&[("STRATOS_ENROLLMENT_MODE", "allow-list")]);
    assert!(has_problem(
        &found,
        "STRATOS_ENROLLMENT_MODE",
        "open, allowlist, closed"
    ));
    let found = problems(&[("STRATOS_ALLOWED_DIDS", "did:plc:ok,not-a-did")]);
    assert!(has_problem(&found, "STRATOS_ALLOWED_DIDS", "not-a-did"));
    let config = ok(&[
        ("STRATOS_ENROLLMENT_MODE", "open"),
        ("STRATOS_ALLOWED_DIDS", "did:plc:abc"),
    ]);
    assert!(
        config
            .warnings
            .iter()
            .any(|w| w == "STRATOS_ALLOWED_DIDS is ignored because STRATOS_ENROLLMENT_MODE=open")
    );
}

#[test]
fn allow_list_and_valkey() {
    let config = ok(&[
        (
            "STRATOS_ALLOW_LIST_URI",
            "https://lists.example/allow.txt?v=2",
        ),
        ("STRATOS_VALKEY_URL", "redis://:hunter2@valkey:6379/0"),
        ("STRATOS_ALLOW_LIST_BOOTSTRAP_NAME", "stratos:allow"),
    ]);
    assert_eq!(
        config
            .enrollment
            .allow_list_uri
            .as_ref()
            .map(HttpUrl::as_str),
        Some("https://lists.example/allow.txt?v=2")
    );
    assert_eq!(
        config.valkey_url.as_ref().map(ConnectionUrl::redacted),
        Some("redis://:<redacted>@valkey:6379/0".to_owned())
    );
    let config = ok(&[("STRATOS_ALLOW_LIST_BOOTSTRAP_NAME", "stratos:allow")]);
    assert!(config.warnings.iter().any(|w| w.contains(
        "STRATOS_ALLOW_LIST_BOOTSTRAP_NAME is ignored because STRATOS_VALKEY_URL is not set"
    )));
    let found = problems(&[("STRATOS_VALKEY_URL", "http://valkey")]);
    assert!(has_problem(&found, "STRATOS_VALKEY_URL", "redis://"));
}

#[test]
fn several_errors_are_reported_together() {
    let err = load(&[
        ("STRATOS_PORT", "eighty"),
        ("STRATOS_DEV_MODE", "yes"),
        ("STORAGE_BACKEND", "mysql"),
        ("STRATOS_BLOB_STORAGE", "s3"),
        ("LOG_LEVEL", "verbose"),
        ("STRATOS_WRITE_RATE_WINDOW_MS", "0"),
        ("STRATOS_PUBLIC_URL", "ftp://example.com"),
    ])
    .unwrap_err();
    let variables: Vec<&str> = err.problems().iter().map(|p| p.variable.as_str()).collect();
    for expected in [
        "STRATOS_PORT",
        "STRATOS_DEV_MODE",
        "STORAGE_BACKEND",
        "STRATOS_S3_BUCKET",
        "LOG_LEVEL",
        "STRATOS_WRITE_RATE_WINDOW_MS",
        "STRATOS_PUBLIC_URL",
    ] {
        assert!(variables.contains(&expected), "{expected} in {variables:?}");
    }
    let rendered = err.to_string();
    assert!(rendered.starts_with("invalid configuration:\n  "));
    assert_eq!(rendered.lines().count(), err.problems().len() + 1);
}

#[test]
fn integers_are_range_checked() {
    for (name, bad) in [
        ("STRATOS_PORT", "0"),
        ("STRATOS_PORT", "65536"),
        ("STRATOS_PORT", "+80"),
        ("STRATOS_PORT", "80.0"),
        ("STRATOS_BLOCK_CACHE_SIZE", "0"),
        ("STRATOS_IMPORT_MAX_BYTES", "0"),
        ("STRATOS_MAX_BODY_BYTES", "-1"),
        ("STRATOS_BLOB_MAX_BYTES", "1e6"),
        ("STRATOS_WRITE_RATE_MAX_WRITES", "0"),
        ("STRATOS_WRITE_RATE_COOLDOWN_MS", "86400001"),
    ] {
        let found = problems(&[(name, bad)]);
        assert!(
            has_problem(&found, name, "expected an integer"),
            "{name}={bad}"
        );
    }
    let config = ok(&[
        ("STRATOS_WRITE_RATE_COOLDOWN_MS", "0"),
        ("STRATOS_WRITE_RATE_COOLDOWN_JITTER_MS", "0"),
        ("STRATOS_MAX_BODY_BYTES", "2048"),
    ]);
    assert_eq!(config.write_rate.cooldown_ms, 0);
    assert_eq!(config.write_rate.cooldown_jitter_ms, 0);
    assert_eq!(config.limits.max_body_bytes, 2048);
}

#[test]
fn did_web_for_a_custom_port() {
    let config = ok(&[("STRATOS_PORT", "8080")]);
    assert_eq!(config.public_url.as_str(), "http://localhost:8080");
    assert_eq!(config.service_did.as_str(), "did:web:localhost%3A8080");
    let config = ok(&[("STRATOS_PUBLIC_URL", "https://Stratos.Example.com:8443/")]);
    assert_eq!(
        config.public_url.as_str(),
        "https://stratos.example.com:8443"
    );
    assert_eq!(
        config.service_did.as_str(),
        "did:web:stratos.example.com%3A8443"
    );
}

#[test]
fn did_web_for_a_public_url_without_port() {
    let config = ok(&[("STRATOS_PUBLIC_URL", "https://stratos.example.com")]);
    assert_eq!(config.service_did.as_str(), "did:web:stratos.example.com");
    // An explicit default port is not part of the DID.
    let config = ok(&[("STRATOS_PUBLIC_URL", "https://stratos.example.com:443")]);
    assert_eq!(config.public_url.as_str(), "https://stratos.example.com");
    assert_eq!(config.service_did.as_str(), "did:web:stratos.example.com");
}

#[test]
fn explicit_service_did() {
    let config = ok(&[
        ("STRATOS_SERVICE_DID", "did:plc:abc123"),
        ("STRATOS_PUBLIC_URL", "https://stratos.example.com/base"),
    ]);
    assert_eq!(config.service_did.as_str(), "did:plc:abc123");
    assert_eq!(
        config.public_url.as_str(),
        "https://stratos.example.com/base"
    );
    // With a path the did:web cannot be derived.
    let found = problems(&[("STRATOS_PUBLIC_URL", "https://stratos.example.com/base")]);
    assert!(has_problem(&found, "STRATOS_SERVICE_DID", "has a path"));
    let found = problems(&[("STRATOS_SERVICE_DID", "stratos")]);
    assert!(has_problem(&found, "STRATOS_SERVICE_DID", "invalid DID"));
    let config = ok(&[("STRATOS_SERVICE_DID", "did:web:elsewhere.example")]);
    assert!(config.warnings.iter().any(|w| w.contains("implies")));
}

#[test]
fn public_url_rules() {
    for (bad, why) in [
        ("ftp://example.com", "http:// or https://"),
        ("example.com", "http:// or https://"),
        ("https://example.com/?x=1", "query or fragment"),
        ("https://example.com#top", "query or fragment"),
        ("https://user:pw@example.com", "credentials"),
        ("https://exa mple.com", "ASCII without spaces"),
        ("https://example.com:99999", "port"),
        ("https://-bad-.example", "host name"),
        ("https://[::1", "unclosed"),
    ] {
        let found = problems(&[("STRATOS_PUBLIC_URL", bad)]);
        assert!(
            has_problem(&found, "STRATOS_PUBLIC_URL", why),
            "{bad}: {found:?}"
        );
    }
    let config = ok(&[
        ("STRATOS_PUBLIC_URL", "https://stratos.example.com///"),
        ("STRATOS_PLC_URL", "https://plc.example/"),
    ]);
    assert_eq!(config.public_url.as_str(), "https://stratos.example.com");
    assert!(config.public_url.is_https());
    assert_eq!(config.plc_url.as_str(), "https://plc.example");
}

#[test]
fn secrets_are_redacted() {
    let secrets = [
        ("STRATOS_ADMIN_PASSWORD", "admin-secret-1"),
        ("STRATOS_SYNC_TOKEN", "sync-secret-2"),
        ("STRATOS_OAUTH_CLIENT_SECRET", "oauth-secret-3"),
        ("STRATOS_S3_ACCESS_KEY", "s3-access-secret-4"),
        ("STRATOS_S3_SECRET_KEY", "s3-secret-secret-5"),
    ];
    let mut pairs = vec![
        ("STORAGE_BACKEND", "postgres"),
        (
            "STRATOS_POSTGRES_URL",
            "postgres://app:pg-url-secret-6@db/x?sslpassword=pg-url-secret-7",
        ),
        ("STRATOS_PG_PASSWORD", "pg-part-secret-8"),
        ("STRATOS_PG_HOST", "db"),
        ("STRATOS_VALKEY_URL", "redis://:valkey-secret-9@valkey:6379"),
        ("STRATOS_BLOB_STORAGE", "s3"),
        ("STRATOS_S3_BUCKET", "b"),
    ];
    pairs.extend(secrets);
    let config = ok(&pairs);
    assert_eq!(
        config.auth.admin_password.as_ref().map(Secret::expose),
        Some("admin-secret-1")
    );
    let debug = format!("{config:?}");
    let pretty = format!("{config:#?}");
    let rendered = config.redacted();
    assert_eq!(rendered, config.to_string());
    for text in [&debug, &pretty, &rendered] {
        assert!(!text.contains("secret-"), "secret leaked in:\n{text}");
        assert!(text.contains(REDACTED));
    }
    assert!(rendered.contains("STRATOS_ADMIN_PASSWORD=<redacted>"));
    assert!(rendered.contains("STRATOS_POSTGRES_URL=postgres://app:<redacted>@db/x"));
    assert!(rendered.contains("STRATOS_VALKEY_URL=redis://:<redacted>@valkey:6379"));

    // Invalid secret-bearing values are not echoed in errors either.
    let err = load(&[
        ("STORAGE_BACKEND", "postgres"),
        ("STRATOS_POSTGRES_URL", "pg://u:bad-secret-10@db/x"),
        ("STRATOS_VALKEY_URL", "http://:bad-secret-11@valkey"),
        ("STRATOS_ADMIN_PASSWORD", " bad-secret-12"),
        ("STRATOS_SYNC_TOKEN", "bad-secret-13\r"),
    ])
    .unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains("secret-"), "secret leaked in: {text}");
    assert_eq!(err.problems().len(), 4, "{err}");
}

#[test]
fn secret_handling() {
    // Empty disables.
    let config = ok(&[("STRATOS_ADMIN_PASSWORD", ""), ("STRATOS_SYNC_TOKEN", "  ")]);
    assert!(config.auth.admin_password.is_none());
    assert!(config.auth.sync_token.is_none());
    assert!(config.to_string().contains("admin endpoints disabled"));
    // Key material loses its trailing newline.
    let config = ok(&[("STRATOS_OAUTH_CLIENT_SECRET", "-----BEGIN-----\nkey\n")]);
    assert_eq!(
        config.oauth.client_secret.as_ref().map(Secret::expose),
        Some("-----BEGIN-----\nkey")
    );
    assert_eq!(format!("{:?}", Secret::new("x")), "<redacted>");
}

#[test]
fn redact_url_hides_awkward_passwords() {
    for (url, expected) in [
        ("postgres://u:p@h/db", "postgres://u:<redacted>@h/db"),
        (
            "postgres://u:p/?#@x@h:1/db",
            "postgres://u:<redacted>@h:1/db",
        ),
        ("postgres://u@h/db", "postgres://u@h/db"),
        ("postgres://h/db", "postgres://h/db"),
        (
            "postgres://h/db?user=u&password=p&sslmode=require",
            "postgres://h/db?user=u&password=<redacted>&sslmode=require",
        ),
        ("not a url with p", "<redacted>"),
    ] {
        assert_eq!(redact_url(url), expected, "{url}");
    }
}

#[test]
fn oauth_client() {
    let config = ok(&[
        (
            "STRATOS_OAUTH_CLIENT_ID",
            "https://stratos.example.com/client-metadata.json",
        ),
        ("STRATOS_OAUTH_CLIENT_NAME", "My Stratos"),
        (
            "STRATOS_OAUTH_LOGO_URI",
            "https://cdn.example/logo.png?s=64",
        ),
        ("STRATOS_OAUTH_TOS_URI", "https://example.com/tos"),
        ("STRATOS_OAUTH_POLICY_URI", "https://example.com/privacy"),
    ]);
    assert_eq!(config.oauth.client_name, "My Stratos");
    assert_eq!(
        config.oauth.logo_uri.as_ref().map(HttpUrl::as_str),
        Some("https://cdn.example/logo.png?s=64")
    );
    assert!(config.oauth.client_id.is_some());
    let found = problems(&[("STRATOS_OAUTH_TOS_URI", "tos.html")]);
    assert!(has_problem(&found, "STRATOS_OAUTH_TOS_URI", "http://"));
}

#[test]
fn log_levels() {
    for level in [
        LogLevel::Fatal,
        LogLevel::Error,
        LogLevel::Warn,
        LogLevel::Info,
        LogLevel::Debug,
        LogLevel::Trace,
        LogLevel::Silent,
    ] {
        assert_eq!(ok(&[("LOG_LEVEL", level.as_str())]).log_level, level);
    }
    assert_eq!(LogLevel::Silent.filter_directive(), "off");
    assert_eq!(LogLevel::Fatal.filter_directive(), "error");
}

#[test]
fn unknown_variables_become_warnings() {
    let config = ok(&[
        ("STRATOS_DEV_MOD", "true"),
        ("STRATOS_RETENTION_DAYS", "30"),
        ("STRATOS_SIGNING_KEY_HEX", "00"),
        ("STRATOS_COMPLETELY_DIFFERENT_THING", "x"),
        ("REDIS_HOST", "localhost"),
        ("HOME", "/root"),
    ]);
    let warnings = &config.warnings;
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("STRATOS_DEV_MOD is ignored; did you mean STRATOS_DEV_MODE?")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("STRATOS_RETENTION_DAYS "))
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("STRATOS_SIGNING_KEY_HEX "))
    );
    assert!(
        warnings
            .iter()
            .any(|w| w == "unknown variable STRATOS_COMPLETELY_DIFFERENT_THING is ignored")
    );
    assert!(!warnings.iter().any(|w| w.contains("REDIS_HOST")));
    assert!(!warnings.iter().any(|w| w.contains("HOME")));
    // The typo did not switch anything on.
    assert!(!config.auth.dev_mode);
}

#[test]
fn urls_are_parsed_and_normalised_by_the_url_standard() {
    for (input, base, expected) in [
        (
            "HTTPS://Stratos.Example.com:443/",
            true,
            "https://stratos.example.com",
        ),
        ("http://[0:0::1]:3100/", true, "http://[::1]:3100"),
        ("http://127.0.0.1:80", true, "http://127.0.0.1"),
        ("https://x.example/a/b//", true, "https://x.example/a/b"),
        (
            "https://cdn.example/logo.png?s=64",
            false,
            "https://cdn.example/logo.png?s=64",
        ),
        ("https://example.com", false, "https://example.com/"),
        (
            "http://svc_1.internal:8080/x",
            false,
            "http://svc_1.internal:8080/x",
        ),
    ] {
        let parsed = if base {
            HttpUrl::parse_base(input)
        } else {
            HttpUrl::parse(input)
        };
        assert_eq!(parsed.unwrap().as_str(), expected, "{input}");
    }
    let url = HttpUrl::parse_base("https://[::1]:8443").unwrap();
    assert_eq!((url.host(), url.port()), ("[::1]", Some(8443)));
    assert!(url.is_https() && url.is_origin());
    assert!(
        !HttpUrl::parse_base("https://x.example/p")
            .unwrap()
            .is_origin()
    );
    for (bad, why) in [
        ("http:example.com", "http:// or https://"),
        ("https://example.com:0", "port"),
        ("https://x.example\\y", "`\\`"),
        ("https://exa\tmple.com", "ASCII without spaces"),
        ("https://u@example.com", "credentials"),
        ("https://a..b", "host name"),
        ("https://", "host"),
    ] {
        match HttpUrl::parse(bad) {
            Ok(url) => panic!("{bad:?} was accepted as {url}"),
            Err(e) => assert!(e.contains(why), "{bad:?}: {e}"),
        }
    }
}

// ---- the settings table --------------------------------------------------------------------------

#[test]
fn the_assembly_reads_exactly_the_table() {
    let mut v = Values::parse(&HashMap::new(), Vec::new());
    let config = read_config(&mut v);
    assert!(config.is_some());
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    let table: BTreeSet<&str> = VARIABLES.iter().copied().collect();
    assert_eq!(v.used, table);
    assert_eq!(table.len(), VARIABLES.len(), "a name is in the table twice");
    assert_eq!(settings().count(), VARIABLES.len());
    for (retired, _) in RETIRED {
        assert!(
            !table.contains(retired),
            "{retired} is retired and in the table"
        );
    }
}

/// A table row that contradicts itself, or that the assembly reads as another type, would only
/// show as "(a bug)" problems: none may appear for any accepted value.
fn no_table_bug(pairs: &[(&str, &str)]) {
    if let Err(e) = load(pairs) {
        assert!(
            !e.problems().iter().any(|p| p.message.contains("(a bug)")),
            "{pairs:?}: {e}"
        );
    }
}

#[test]
fn the_table_is_consistent() {
    for s in settings() {
        // The secrecy flag and the parser agree, so no secret is parsed as plain text.
        let expected = match s.parser {
            Parser::Secret | Parser::Key => Secrecy::Secret,
            Parser::Connection(_) => Secrecy::PasswordInUrl,
            _ => Secrecy::Public,
        };
        assert_eq!(s.secret, expected, "{}", s.name);
        assert!(is_relevant(s.name), "{}", s.name);
        // One Markdown table row each.
        assert!(!s.doc.contains('|') && !s.doc.contains('\n'), "{}", s.name);
        assert!(s.doc.ends_with('.'), "{}: a sentence", s.name);
        if let Default::Value(value) = s.default {
            assert!(
                matches!(s.parser.parse(value), super::setting::Parsed::Ok(_)),
                "{}: default {value:?}",
                s.name
            );
        }
        // Every spelling of an enumeration maps to a value of the configuration.
        if let Parser::Choice(options) = s.parser {
            for option in options {
                no_table_bug(&[(s.name, option)]);
                no_table_bug(&[(s.name, &option.to_uppercase())]);
            }
        }
        // Both ends of every range fit the field they end up in.
        let range = match s.parser {
            Parser::Int { min, max } => Some((min, max)),
            Parser::ByteSize { max } => Some((1, max)),
            _ => None,
        };
        if let Some((min, max)) = range {
            for n in [min, max] {
                no_table_bug(&[(s.name, &n.to_string())]);
            }
            let found = problems(&[(s.name, &(max + 1).to_string())]);
            assert!(has_problem(&found, s.name, "expected an integer"));
        }
    }
    for section in SECTIONS {
        assert!(!section.settings.is_empty(), "{}", section.title);
    }
}

#[test]
fn the_summary_redacts_every_secret_of_the_table() {
    // Two configurations, so every secret row is shown once: Postgres from its URL with S3
    // credentials, and Postgres built from its parts.
    let mut secrets: Vec<(&str, String)> = Vec::new();
    let mut with_url = vec![
        ("STORAGE_BACKEND", "postgres".to_owned()),
        ("STRATOS_BLOB_STORAGE", "s3".to_owned()),
        ("STRATOS_S3_BUCKET", "b".to_owned()),
    ];
    for (i, s) in settings().enumerate() {
        let secret = format!("tbl-secret-{i}");
        let value = match s.parser {
            Parser::Secret | Parser::Key => secret.clone(),
            Parser::Connection(schemes) => format!("{}://user:{secret}@host:1/x", schemes[0]),
            _ => continue,
        };
        secrets.push((s.name, secret));
        with_url.push((s.name, value));
    }
    assert!(secrets.len() >= 8, "{secrets:?}");
    let from_parts = vec![
        ("STORAGE_BACKEND", "postgres".to_owned()),
        ("STRATOS_PG_HOST", "db".to_owned()),
        ("STRATOS_PG_PASSWORD", "parts-secret".to_owned()),
    ];
    let mut shown = BTreeSet::new();
    for pairs in [with_url, from_parts] {
        let config = ok(&pairs
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect::<Vec<_>>());
        let summary = config.redacted();
        let debug = format!("{config:?} {config:#?}");
        for text in [&summary, &debug] {
            assert!(!text.contains("secret-"), "a secret leaked in:\n{text}");
        }
        for line in summary.lines() {
            let (name, value) = line.split_once('=').unwrap();
            if let Some(s) = settings().find(|s| s.name == name)
                && s.secret != Secrecy::Public
                && !value.starts_with("(unset")
            {
                assert!(value.contains(REDACTED), "{line}");
                shown.insert(name.to_owned());
            }
        }
    }
    // Every secret of the table is in one of the summaries, except the Postgres password, which
    // is shown as part of the URL built with it.
    for (name, _) in &secrets {
        assert!(
            shown.contains(*name) || *name == "STRATOS_PG_PASSWORD",
            "{name} is never shown"
        );
    }
    assert!(shown.contains("STRATOS_POSTGRES_URL"));
}

#[test]
fn the_summary_has_a_line_per_applicable_setting_in_table_order() {
    let summary = ok(&[]).redacted();
    let names: Vec<&str> = summary
        .lines()
        .map(|l| l.split_once('=').unwrap().0)
        .collect();
    let mut expected: Vec<&str> = VARIABLES.to_vec();
    // Not used on SQLite with local blobs.
    expected.retain(|n| {
        !n.starts_with("STRATOS_PG_")
            && !n.starts_with("STRATOS_S3_")
            && *n != "STRATOS_POSTGRES_URL"
    });
    assert_eq!(names, expected);
    assert!(summary.contains("\nSTRATOS_ADMIN_PASSWORD=(unset: admin endpoints disabled)\n"));
    assert!(summary.contains("\nSTRATOS_ALLOW_LIST_URI=(unset)\n"));
    assert!(summary.contains("\nLOG_LEVEL=info\n"));
    assert!(summary.contains("\nSTRATOS_LOG_FORMAT=text\n"));
    assert!(
        summary.ends_with("STRATOS_METRICS_BIND=(unset)"),
        "{summary}"
    );
}

/// Regenerate with `cargo run -p stratos-service -- config-doc --write docs/configuration.md`.
#[test]
fn docs_configuration_md_matches_the_settings_table() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md");
    let committed = std::fs::read_to_string(path).unwrap();
    let Some(generated) = update_reference(&committed) else {
        panic!("docs/configuration.md lost its `stratos config-doc` marker comments");
    };
    if generated != committed {
        let first = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .map_or(String::new(), |i| {
                format!(
                    "first difference at line {}:\n  committed: {}\n  generated: {}",
                    i + 1,
                    committed.lines().nth(i).unwrap_or_default(),
                    generated.lines().nth(i).unwrap_or_default()
                )
            });
        panic!(
            "docs/configuration.md differs from the settings table \
             (apps/service/src/config/table.rs). Regenerate its tables with\n  \
             cargo run -p stratos-service -- config-doc --write docs/configuration.md\n{first}"
        );
    }
    for name in VARIABLES {
        assert!(committed.contains(&format!("| `{name}` |")), "{name}");
    }
}

#[test]
fn the_generated_reference_keeps_its_conventions() {
    let md = reference_markdown();
    assert!(md.contains(
        "| `STRATOS_IMPORT_MAX_BYTES` | int 1..2^40 | `268435456` (256 MiB) | Largest repository CAR"
    ));
    assert!(md.contains("| `STRATOS_ALLOWED_DIDS` | list of DIDs | empty |"));
    assert!(md.contains("| `STRATOS_ALLOW_LIST_URI` | URL | unset |"));
    assert!(md.contains(
        "| `STRATOS_ENROLLMENT_MODE` | enum `open`, `allowlist`, `closed` | `allowlist` |"
    ));
    assert!(md.contains("| `STRATOS_POSTGRES_URL` | `postgres://`, `postgresql://` URL | unset |"));
    assert!(md.contains("Any password in it is redacted. |"));
    assert_eq!(md.matches("### ").count(), SECTIONS.len());
    // Splicing is idempotent and keeps the prose around the markers.
    let doc = format!(
        "intro\n\n{}\nold\n{}\n\noutro\n",
        "<!-- BEGIN generated by `stratos config-doc` from the settings table \
         (apps/service/src/config/table.rs); do not edit by hand -->",
        "<!-- END generated by `stratos config-doc` -->"
    );
    let once = update_reference(&doc).unwrap();
    assert!(once.starts_with("intro\n\n<!-- BEGIN"));
    assert!(once.ends_with("<!-- END generated by `stratos config-doc` -->\n\noutro\n"));
    assert!(!once.contains("\nold\n"));
    assert_eq!(update_reference(&once).unwrap(), once);
    assert!(update_reference("no markers").is_none());
}

#[test]
fn env_example_covers_every_variable_with_the_table_default() {
    let example = include_str!("../../../../.env.example");
    for name in VARIABLES {
        assert!(
            example
                .lines()
                .any(|l| l.starts_with(&format!("{name}=")) || l.starts_with(&format!("# {name}="))),
            "{name} missing from .env.example"
        );
    }
    // Uncommenting every line of the example must change nothing: its defaults are the
    // parser's.
    let pairs = example.lines().filter_map(|line| {
        let line = line.strip_prefix("# ").unwrap_or(line);
        let (name, value) = line.split_once('=')?;
        VARIABLES.contains(&name).then_some((name, value))
    });
    let uncommented = Config::from_pairs(pairs).unwrap();
    let defaults = Config::from_pairs(std::iter::empty::<(String, String)>()).unwrap();
    assert_eq!(uncommented.redacted(), defaults.redacted());
    for s in settings() {
        if let Default::Value(value) = s.default {
            assert!(
                example.contains(&format!("# {}={value}\n", s.name)),
                "{}: .env.example shows another default than {value:?}",
                s.name
            );
        }
    }
}

// ---- the environment and .env --------------------------------------------------------------------

fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
    pairs
        .iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        .collect()
}

#[test]
fn from_env_reads_the_process_environment() {
    // The test process has no STRATOS_* variables of its own unless a developer exported
    // some, and no .env in the crate directory unless one was made; either way this must not
    // panic, and on a clean environment it yields defaults.
    let clean = std::env::vars().all(|(k, _)| !is_relevant(&k));
    if clean && !std::path::Path::new(DOTENV_FILE).exists() {
        let config = Config::from_env().unwrap();
        assert_eq!(config.port, 3100);
    }
}

#[test]
fn a_dotenv_file_is_read_and_the_environment_wins() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".env");
    std::fs::write(
        &path,
        "\u{feff}# comment\n\
         STRATOS_PORT=4000\n\
         export STRATOS_ALLOWED_DOMAINS=general,eng\n\
         STRATOS_ADMIN_PASSWORD='p a$s \"w\"'\n\
         STRATOS_SYNC_TOKEN=\"tok#en\" # a comment\n\
         STRATOS_DEV_MODE=true\n\
         STRATOS_DEV_MODE=false\n\
         AWS_REGION=ignored\n\
         STRATOS_DATA_DIR=\n",
    )
    .unwrap();
    let config =
        Config::from_env_and_file(env(&[("STRATOS_PORT", "5000"), ("HOME", "/root")]), &path)
            .unwrap();
    // The environment wins over the file.
    assert_eq!(config.port, 5000);
    assert_eq!(config.allowed_boundaries.len(), 2);
    assert_eq!(
        config.auth.admin_password.as_ref().map(Secret::expose),
        Some("p a$s \"w\"")
    );
    assert_eq!(
        config.auth.sync_token.as_ref().map(Secret::expose),
        Some("tok#en")
    );
    // The first of two lines counts, as with dotenvy's own loader, and the operator is told.
    assert!(config.auth.dev_mode);
    assert!(
        config
            .warnings
            .iter()
            .any(|w| w.contains("STRATOS_DEV_MODE is set twice")),
        "{:?}",
        config.warnings
    );
    // Empty means unset there too.
    assert_eq!(config.data_dir, PathBuf::from("./data"));
    // A missing file is no problem.
    let config = Config::from_env_and_file(env(&[]), &dir.path().join("absent")).unwrap();
    assert_eq!(config.port, 3100);
}

#[test]
fn env_example_copied_to_dotenv_starts_on_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".env");
    std::fs::write(&path, include_str!("../../../../.env.example")).unwrap();
    let config = Config::from_env_and_file(env(&[]), &path).unwrap();
    assert_eq!(config.redacted(), ok(&[]).redacted());
}

#[test]
fn a_broken_dotenv_file_is_a_problem_without_its_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".env");
    std::fs::write(
        &path,
        "STRATOS_PORT=70000\nSTRATOS_ADMIN_PASSWORD=\"dotenv-secret-1\n",
    )
    .unwrap();
    let err = Config::from_env_and_file(env(&[]), &path).unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains("dotenv-secret"), "{text}");
    let file = path.display().to_string();
    assert!(
        err.problems()
            .iter()
            .any(|p| p.variable == file && p.message.contains("STRATOS_ADMIN_PASSWORD")),
        "{err}"
    );
    // Values of the file are checked like any other.
    assert!(has_problem(
        err.problems(),
        "STRATOS_PORT",
        "from 1 to 65535"
    ));

    // A file that is not UTF-8.
    std::fs::write(&path, b"STRATOS_PORT=\xff\n").unwrap();
    let err = Config::from_env_and_file(env(&[]), &path).unwrap_err();
    assert!(err.problems().iter().any(|p| p.variable == file), "{err}");
}

#[test]
fn non_utf8_environment_values_are_named() {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStringExt as _;
        let err = Config::from_env_and_file(
            [(
                OsString::from("STRATOS_PORT"),
                OsString::from_vec(vec![0xff]),
            )],
            std::path::Path::new("/nonexistent/.env"),
        )
        .unwrap_err();
        assert!(has_problem(
            err.problems(),
            "STRATOS_PORT",
            "not valid UTF-8"
        ));
    }
}

// ---- secrets from files (`{NAME}_FILE`) ----------------------------------------------------------

#[test]
fn secrets_can_come_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let admin = dir.path().join("admin");
    let sync = dir.path().join("sync");
    // A file's one trailing line break is not part of the secret; inner spaces are.
    std::fs::write(&admin, "pass word\n").unwrap();
    std::fs::write(&sync, "token\r\n").unwrap();
    let (admin, sync) = (admin.to_str().unwrap(), sync.to_str().unwrap());
    let c = ok(&[
        ("STRATOS_ADMIN_PASSWORD_FILE", admin),
        ("STRATOS_SYNC_TOKEN_FILE", sync),
    ]);
    assert_eq!(
        c.auth.admin_password.as_ref().unwrap().expose(),
        "pass word"
    );
    assert_eq!(c.auth.sync_token.as_ref().unwrap().expose(), "token");
    // No warning about unknown variables for the _FILE names.
    assert!(
        c.warnings.iter().all(|w| !w.contains("_FILE")),
        "{:?}",
        c.warnings
    );

    let p = problems(&[
        ("STRATOS_ADMIN_PASSWORD_FILE", admin),
        ("STRATOS_ADMIN_PASSWORD", "other"),
    ]);
    assert!(
        has_problem(&p, "STRATOS_ADMIN_PASSWORD_FILE", "not both"),
        "{p:?}"
    );
    let p = problems(&[("STRATOS_SYNC_TOKEN_FILE", "/no/such/file")]);
    assert!(
        has_problem(&p, "STRATOS_SYNC_TOKEN_FILE", "cannot read"),
        "{p:?}"
    );
    // The file's content is checked like the variable's (surrounding whitespace refused), and
    // the problem never shows it.
    std::fs::write(dir.path().join("bad"), " padded\n").unwrap();
    let bad = dir.path().join("bad");
    let p = problems(&[("STRATOS_ADMIN_PASSWORD_FILE", bad.to_str().unwrap())]);
    assert!(
        p.iter().any(|x| x.variable == "STRATOS_ADMIN_PASSWORD"),
        "{p:?}"
    );
    assert!(p.iter().all(|x| !x.message.contains("padded")));
}

#[test]
fn the_service_key_file_is_a_path() {
    assert_eq!(ok(&[]).service_key_file, None);
    assert_eq!(
        ok(&[("STRATOS_SERVICE_KEY_FILE", "/run/secrets/stratos_key")]).service_key_file,
        Some(PathBuf::from("/run/secrets/stratos_key"))
    );
}

#[test]
fn the_user_agent_names_the_repository_and_the_operator() {
    let c = ok(&[
        ("STRATOS_REPO_URL", "https://code.example/stratos"),
        ("STRATOS_OPERATOR_CONTACT", "ops@example.com"),
    ]);
    assert_eq!(
        c.user_agent(),
        format!(
            "Stratos/{} (+https://code.example/stratos; ops@example.com)",
            env!("CARGO_PKG_VERSION")
        )
    );
    assert!(
        ok(&[])
            .user_agent()
            .ends_with("(+http://localhost:3100; unknown)")
    );
}

#[test]
fn tls_settings_reach_the_connections() {
    let c = ok(&[
        ("STORAGE_BACKEND", "postgres"),
        ("STRATOS_PG_HOST", "db.internal"),
        ("STRATOS_PG_SSLMODE", "verify-full"),
        ("STRATOS_PG_SSLROOTCERT", "/etc/stratos/pg ca.pem"),
        ("STRATOS_VALKEY_URL", "rediss://cache.internal:6380"),
        ("STRATOS_VALKEY_CA_FILE", "/etc/stratos/valkey-ca.pem"),
    ]);
    let StorageBackend::Postgres { url, .. } = &c.storage else {
        panic!("postgres")
    };
    assert!(
        url.expose()
            .ends_with("?sslmode=verify-full&sslrootcert=%2Fetc%2Fstratos%2Fpg%20ca.pem"),
        "{}",
        url.expose()
    );
    assert_eq!(
        c.valkey_ca_file,
        Some(PathBuf::from("/etc/stratos/valkey-ca.pem"))
    );
}
