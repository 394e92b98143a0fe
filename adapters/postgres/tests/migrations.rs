#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! Versioned migrations of the service schema and the actor schemas: a database made by the
//! last build before versioning (`tests/fixtures/schema-v0.sql`, a pg_dump of one made by
//! commit 8d4309e's binary) is upgraded and keeps all its data; instances connecting together
//! migrate once (advisory lock); a database of a newer build is refused. Each case restores
//! into a database of its own (the dump's schemas have no test prefix), dropped at the end.
//! Skipped without `STRATOS_TEST_POSTGRES_URL` — except under `CI=true`.

mod common;

use common::Scratch;
use sea_orm::sqlx::{self, Connection as _, PgConnection};
use stratos_domain::boundary::ReadFilter;
use stratos_domain::syntax::{Did, Nsid};
use stratos_ports::enrollment_store::EnrollmentStore;
use stratos_ports::keys::SigningKeyStore;
use stratos_ports::outbox::Outbox;
use stratos_ports::repo_store::{ListQuery, RepoStore};
use stratos_ports::storage_sql::migrations::SERVICE_SCHEMA_VERSION;
use stratos_postgres::{PostgresConfig, PostgresError, PostgresStorage};

const FIXTURE: &str = include_str!("fixtures/schema-v0.sql");

fn server() -> Option<String> {
    common::server("PostgreSQL migrations")
}

async fn restore_v0(db: &Scratch) {
    common::run(&db.url, FIXTURE).await;
}

fn config(db: &Scratch) -> PostgresConfig {
    PostgresConfig {
        url: db.url.clone(),
        pool_size: 4,
        schema_prefix: String::new(),
    }
}

async fn history(db: &Scratch) -> Vec<(i64, String)> {
    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    sqlx::query_as("SELECT version, name FROM stratos.schema_migration ORDER BY version")
        .fetch_all(&mut conn)
        .await
        .unwrap()
}

fn did(s: &str) -> Did {
    Did::parse(s).unwrap()
}

#[tokio::test]
async fn a_database_from_before_versioning_is_upgraded_with_all_its_data() {
    let Some(server) = server() else { return };
    let db = Scratch::new(&server, "mig_upgrade").await;
    restore_v0(&db).await;
    let s = PostgresStorage::connect(&config(&db)).await.unwrap();
    assert_eq!(
        history(&db).await,
        vec![(SERVICE_SCHEMA_VERSION, "baseline".to_owned())]
    );
    let alice = s
        .enrollments
        .get(&did("did:plc:alice"))
        .await
        .unwrap()
        .unwrap();
    let names: Vec<&str> = alice.boundaries.iter().map(|b| b.name()).collect();
    assert_eq!(names, ["general", "team"]);
    assert!(
        s.enrollments
            .get(&did("did:plc:bob"))
            .await
            .unwrap()
            .is_some()
    );
    let key = s.keys.get(&did("did:plc:alice")).await.unwrap().unwrap();
    assert_eq!(key.did_key(), alice.signing_key);
    assert_eq!(s.enrollments.events_after(0, 10).await.unwrap().len(), 3);
    // Three enrollment records and three stubs wait for delivery.
    assert_eq!(s.outbox.pending().await.unwrap(), 6);
    let query = ListQuery {
        collection: Nsid::parse("zone.stratos.feed.post").unwrap(),
        limit: 10,
        cursor: None,
        reverse: false,
        filter: ReadFilter::All,
    };
    let posts = s
        .repos
        .list_records(&did("did:plc:alice"), &query)
        .await
        .unwrap();
    assert_eq!(posts.len(), 3);
    drop(s);
    // Again: nothing to do.
    PostgresStorage::connect(&config(&db)).await.unwrap();
    assert_eq!(history(&db).await.len(), 1);
    db.drop_db().await;
}

#[tokio::test]
async fn instances_connecting_together_migrate_once() {
    let Some(server) = server() else { return };
    let db = Scratch::new(&server, "mig_race").await;
    restore_v0(&db).await;
    let config = config(&db);
    let connects: Vec<_> = (0..4)
        .map(|_| {
            let config = config.clone();
            tokio::spawn(async move { PostgresStorage::connect(&config).await })
        })
        .collect();
    for c in connects {
        c.await.unwrap().unwrap();
    }
    assert_eq!(history(&db).await.len(), 1);
    db.drop_db().await;
}

#[tokio::test]
async fn a_database_of_a_newer_build_is_refused() {
    let Some(server) = server() else { return };
    let db = Scratch::new(&server, "mig_newer").await;
    drop(PostgresStorage::connect(&config(&db)).await.unwrap());
    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("INSERT INTO stratos.schema_migration VALUES ($1, 'from the future', 'x')")
        .bind(SERVICE_SCHEMA_VERSION + 1)
        .execute(&mut conn)
        .await
        .unwrap();
    match PostgresStorage::connect(&config(&db)).await {
        Err(PostgresError::SchemaTooNew(e)) => assert_eq!(e.found, SERVICE_SCHEMA_VERSION + 1),
        other => panic!("expected SchemaTooNew, got {:?}", other.map(|_| ())),
    }
    db.drop_db().await;
}
