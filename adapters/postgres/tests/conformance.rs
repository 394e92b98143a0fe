#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! The PostgreSQL adapter passes every conformance suite against a real server.
//!
//! The server comes from `STRATOS_TEST_POSTGRES_URL` (`scripts/test` sets it to the machine's
//! PostgreSQL). Without it the run prints one `SKIPPED:` line and the tests pass empty; under
//! `CI=true` a missing server fails. Every test works under its own schema prefix and drops its
//! schemas at the end (a conformance case also when it fails).

use std::io::Write as _;
use std::sync::Arc;

use rand_core::{OsRng, RngCore};
use stratos_postgres::{PostgresConfig, PostgresStorage};
use stratos_testkit::builders::{build_records, enroll_into, nsid, post};
use stratos_testkit::conformance::Fixture;
use stratos_testkit::conformance::outbox::OutboxUnderTest;
use stratos_testkit::memory::ManualClock;

/// The server's URL, or `None` (with one `SKIPPED:` line per run) when none is configured.
fn server() -> Option<String> {
    match std::env::var("STRATOS_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "STRATOS_TEST_POSTGRES_URL is not set in CI: the PostgreSQL suites must run"
            );
            static NOTICE: std::sync::Once = std::sync::Once::new();
            NOTICE.call_once(|| {
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED: PostgreSQL conformance suites (set STRATOS_TEST_POSTGRES_URL to run them)"
                );
            });
            None
        }
    }
}

/// A connection under a fresh schema prefix, or `None` without a server.
async fn storage() -> Option<PostgresStorage> {
    Some(storage_with_prefix().await?.0)
}

/// [`storage`] and its schema prefix.
async fn storage_with_prefix() -> Option<(PostgresStorage, String)> {
    let url = server()?;
    let prefix = format!("t{:012x}_", OsRng.next_u64() & 0xffff_ffff_ffff);
    let s = PostgresStorage::connect(&PostgresConfig {
        url,
        pool_size: 8,
        schema_prefix: prefix.clone(),
    })
    .await
    .unwrap();
    Some((s, prefix))
}

/// Runs `sql` on a connection of its own (as another program would).
async fn run_sql(sql: String, values: Vec<sea_orm::Value>) {
    use sea_orm::ConnectionTrait as _;
    let db = sea_orm::Database::connect(server().unwrap()).await.unwrap();
    db.execute_raw(sea_orm::Statement::from_sql_and_values(
        sea_orm::DbBackend::Postgres,
        sql,
        values,
    ))
    .await
    .unwrap();
    db.close().await.unwrap();
}

/// A fresh schema prefix per case, dropped after it; `port` picks the store under test.
async fn fixture<P: ?Sized>(
    port: impl FnOnce(&PostgresStorage) -> Arc<P>,
) -> Option<Fixture<Arc<P>>> {
    let s = storage().await?;
    let subject = port(&s);
    Some(Fixture::new(subject).cleanup(async move { s.drop_everything().await.unwrap() }))
}

// One test per case and port (`cargo test -p stratos-postgres --test conformance
// repo_store::lifecycle`), each under its own schemas.
stratos_testkit::repo_store_conformance!(fixture(|s| Arc::new(s.repos.clone())));
stratos_testkit::enrollment_store_conformance!(fixture(|s| Arc::new(s.enrollments.clone())));
stratos_testkit::outbox_conformance!(async {
    let (s, prefix) = storage_with_prefix().await?;
    let subject = OutboxUnderTest::new(
        Arc::new(s.outbox.clone()),
        Arc::new(s.repos.clone()),
        move |did| {
            run_sql(
                format!(
                    "INSERT INTO \"{prefix}stratos\".outbox (did, item, due_ms) \
                     VALUES ($1, '\\xff00'::bytea, $2)"
                ),
                vec![did.to_string().into(), i64::MIN.into()],
            )
        },
    );
    Some(Fixture::new(subject).cleanup(async move { s.drop_everything().await.unwrap() }))
});
stratos_testkit::key_store_conformance!(fixture(|s| Arc::new(s.keys.clone())));
stratos_testkit::oauth_store_conformance!(fixture(|s| Arc::new(s.oauth.clone())));

/// The record use cases over PostgreSQL: boundary filtering and the commit's stub in the outbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_over_postgres() {
    use stratos_ports::outbox::Outbox;
    let Some(s) = storage().await else { return };
    let records = build_records(
        Arc::new(s.repos.clone()),
        Arc::new(s.enrollments.clone()),
        Arc::new(s.keys.clone()),
        Arc::new(ManualClock::at(1_795_000_000_000)),
        &["swordsmith", "aekea"],
    );
    let rei = enroll_into(
        &records,
        &s.enrollments,
        &s.keys,
        "did:plc:pgrei",
        &["swordsmith"],
    )
    .await;
    let kaoruko = enroll_into(
        &records,
        &s.enrollments,
        &s.keys,
        "did:plc:pgkaoruko",
        &["aekea"],
    )
    .await;
    let out = records
        .create_record(
            &rei,
            &rei,
            &nsid("zone.stratos.feed.post"),
            None,
            post("pg", &["swordsmith"]),
        )
        .await
        .unwrap();
    let rkey = out.results[0].uri.rkey().unwrap().clone();
    assert!(
        records
            .get_record(
                Some(&rei),
                &rei,
                &nsid("zone.stratos.feed.post"),
                &rkey,
                None
            )
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        records
            .get_record(
                Some(&kaoruko),
                &rei,
                &nsid("zone.stratos.feed.post"),
                &rkey,
                None
            )
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        s.outbox.pending().await.unwrap(),
        1,
        "the stub write is queued with the commit"
    );
    s.drop_everything().await.unwrap();
}

/// An outbox table from before dead letters gets `last_error` and `dead_ms` at the next
/// connect, keeps its items, and they can then fail into dead letters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbox_table_from_before_dead_letters_is_upgraded() {
    use stratos_ports::outbox::{FailedAttempt, Outbox as _, OutboxAction, OutboxItem};
    let Some((s, prefix)) = storage_with_prefix().await else {
        return;
    };
    let rei = stratos_testkit::builders::did("did:plc:rei");
    let item = OutboxItem {
        did: rei.clone(),
        action: OutboxAction::DeleteRecord {
            collection: nsid("zone.stratos.feed.post"),
            rkey: stratos_testkit::builders::rkey("old1"),
        },
    };
    let table = format!("\"{prefix}stratos\".outbox");
    // The table as the previous build created it, with one item, and no migration history.
    run_sql(format!("DROP TABLE {table}"), vec![]).await;
    run_sql(
        format!("DROP TABLE \"{prefix}stratos\".schema_migration"),
        vec![],
    )
    .await;
    run_sql(
        format!(
            "CREATE TABLE {table} (id BIGSERIAL PRIMARY KEY, did TEXT NOT NULL, item BYTEA NOT \
             NULL, attempts INT NOT NULL DEFAULT 0, due_ms BIGINT NOT NULL, leased_until BIGINT)"
        ),
        vec![],
    )
    .await;
    run_sql(
        format!("INSERT INTO {table} (did, item, due_ms) VALUES ($1, $2, 0)"),
        vec![
            rei.to_string().into(),
            stratos_ports::storage_codec::encode_item(&item).into(),
        ],
    )
    .await;
    let again = PostgresStorage::connect(&PostgresConfig {
        url: server().unwrap(),
        pool_size: 2,
        schema_prefix: prefix.clone(),
    })
    .await
    .unwrap();
    let claimed = again.outbox.claim(1_000, 500, 10).await.unwrap();
    assert_eq!(claimed.len(), 1, "the old item survives");
    assert_eq!(claimed[0].item, item);
    again
        .outbox
        .fail(
            claimed[0].lease(),
            FailedAttempt {
                now_ms: 1_000,
                retry_at_ms: 2_000,
                max_attempts: 1,
                permanent: false,
                error: "gone".into(),
            },
        )
        .await
        .unwrap();
    let dead = again.outbox.dead_letters(10, None).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].last_error, "gone");
    s.drop_everything().await.unwrap();
}

/// Actor schemas created before blob tracking get its tables at the next connect.
#[tokio::test]
async fn actor_schemas_from_before_blob_tracking_are_upgraded() {
    use sea_orm::ConnectionTrait as _;
    use stratos_ports::repo_store::{RepoStore as _, StoredBlob};
    // `storage()` decides whether the suite runs; this test needs to know its prefix.
    let Some(probe) = storage().await else { return };
    probe.drop_everything().await.unwrap();
    let url = std::env::var("STRATOS_TEST_POSTGRES_URL").unwrap();
    let prefix = format!("t{:012x}_", OsRng.next_u64() & 0xffff_ffff_ffff);
    let config = PostgresConfig {
        url: url.clone(),
        pool_size: 2,
        schema_prefix: prefix.clone(),
    };
    let s = PostgresStorage::connect(&config).await.unwrap();
    let rei = stratos_testkit::builders::did("did:plc:rei");
    s.repos.create_actor(&rei).await.unwrap();
    let db = sea_orm::Database::connect(&url).await.unwrap();
    let row = db
        .query_one_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE $1",
            vec![format!("{prefix}actor\\_%").into()],
        ))
        .await
        .unwrap()
        .unwrap();
    let schema: String = row.try_get_by_index(0).unwrap();
    // Dropping them also proves a new schema had them.
    for sql in [
        format!("DROP TABLE \"{schema}\".record_blob"),
        format!("DROP TABLE \"{schema}\".blob"),
        // The previous build kept no migration history either.
        format!("DROP TABLE \"{prefix}stratos\".schema_migration"),
    ] {
        db.execute_unprepared(&sql).await.unwrap();
    }
    db.close().await.unwrap();
    let again = PostgresStorage::connect(&config).await.unwrap();
    let bytes = b"after the upgrade";
    let upload = StoredBlob {
        cid: stratos_domain::cid::raw(bytes),
        mime_type: "image/png".into(),
        size: bytes.len() as u64,
        temp_key: Some("0".repeat(32)),
        created_ms: 1,
    };
    assert_eq!(
        again.repos.track_blob(&rei, upload.clone()).await.unwrap(),
        None
    );
    assert_eq!(
        again.repos.blob(&rei, &upload.cid).await.unwrap(),
        Some(upload)
    );
    again.drop_everything().await.unwrap();
}

stratos_testkit::appview_index_conformance!(async {
    let url = server()?;
    let schema = format!("av{:012x}", OsRng.next_u64() & 0xffff_ffff_ffff);
    let index = stratos_postgres::PostgresAppViewIndex::connect(&stratos_postgres::AppViewConfig {
        url,
        schema,
        pool_size: 4,
    })
    .await
    .unwrap();
    let cleanup = index.clone();
    Some(Fixture::new(Arc::new(index)).cleanup(async move { cleanup.drop_schema().await.unwrap() }))
});
