#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! Versioned migrations of the service database: a data directory made by the last build
//! before versioning (`tests/fixtures/schema-v0`, dumped from one made by commit 8d4309e's
//! binary) opens, is recorded at this build's version, and keeps all its data; a database of
//! a newer build is refused; two processes' worth of concurrent opens migrate once.

use std::path::Path;

use stratos_domain::boundary::ReadFilter;
use stratos_domain::syntax::{Did, Nsid};
use stratos_ports::enrollment_store::EnrollmentStore;
use stratos_ports::keys::SigningKeyStore;
use stratos_ports::outbox::Outbox;
use stratos_ports::repo_store::{ListQuery, RepoStore};
use stratos_ports::storage_sql::migrations::SERVICE_SCHEMA_VERSION;
use stratos_sqlite::{Durability, SqliteError, SqliteStorage, actor_dir};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/schema-v0");

/// Restores the fixture's dumps into a data directory at `root`.
fn restore_v0(root: &Path) {
    let load = |file: &Path, dump: &str| {
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        let sql = std::fs::read_to_string(Path::new(FIXTURE).join(dump)).unwrap();
        let conn = rusqlite::Connection::open(file).unwrap();
        conn.execute_batch(&sql).unwrap();
        // As the service left them: in WAL mode (a dump does not carry it).
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    };
    load(&root.join("service.sqlite"), "service.sql");
    for did in ["did:plc:alice", "did:plc:bob"] {
        let dump = format!("actor.{}.sql", did.replace(':', "_"));
        load(&actor_dir(root, did).join("stratos.sqlite"), &dump);
    }
}

fn history(root: &Path) -> Vec<(i64, String)> {
    let conn = rusqlite::Connection::open(root.join("service.sqlite")).unwrap();
    let mut stmt = conn
        .prepare("SELECT version, name FROM schema_migration ORDER BY version")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn did(s: &str) -> Did {
    Did::parse(s).unwrap()
}

#[tokio::test]
async fn a_database_from_before_versioning_is_upgraded_with_all_its_data() {
    let dir = tempfile::tempdir().unwrap();
    restore_v0(dir.path());
    let s = SqliteStorage::open(dir.path(), Durability::Durable)
        .await
        .unwrap();
    assert_eq!(
        history(dir.path()),
        vec![(SERVICE_SCHEMA_VERSION, "baseline".to_owned())]
    );

    // Enrollments, boundaries, keys.
    let alice = s
        .enrollments
        .get(&did("did:plc:alice"))
        .await
        .unwrap()
        .unwrap();
    let names: Vec<&str> = alice.boundaries.iter().map(|b| b.name()).collect();
    assert_eq!(names, ["general", "team"]);
    let bob = s
        .enrollments
        .get(&did("did:plc:bob"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bob.boundaries.len(), 1);
    let key = s.keys.get(&did("did:plc:alice")).await.unwrap().unwrap();
    assert_eq!(key.did_key(), alice.signing_key);
    // Enrollment events survive (the service-level stream replays them).
    assert_eq!(s.enrollments.events_after(0, 10).await.unwrap().len(), 3);
    // The outbox: three enrollment records at service level, three stubs in alice's database.
    assert_eq!(s.outbox.pending().await.unwrap(), 6);
    // The repository: three posts, readable; the head is where it was.
    let collection = Nsid::parse("zone.stratos.feed.post").unwrap();
    let query = ListQuery {
        collection,
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
    assert!(s.repos.head(&did("did:plc:alice")).await.unwrap().is_some());
    drop(s);

    // A second open finds nothing to do.
    SqliteStorage::open(dir.path(), Durability::Durable)
        .await
        .unwrap();
    assert_eq!(history(dir.path()).len(), 1);
}

#[tokio::test]
async fn a_database_of_a_newer_build_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(
        SqliteStorage::open(dir.path(), Durability::Durable)
            .await
            .unwrap(),
    );
    rusqlite::Connection::open(dir.path().join("service.sqlite"))
        .unwrap()
        .execute(
            "INSERT INTO schema_migration VALUES (?1, 'from the future', '2030-01-01T00:00:00Z')",
            [SERVICE_SCHEMA_VERSION + 1],
        )
        .unwrap();
    match SqliteStorage::open(dir.path(), Durability::Durable).await {
        Err(SqliteError::SchemaTooNew(e)) => {
            assert_eq!(e.found, SERVICE_SCHEMA_VERSION + 1);
            assert!(e.to_string().contains("newer than this build"), "{e}");
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_opens_migrate_once() {
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        restore_v0(dir.path());
        let opens: Vec<_> = (0..4)
            .map(|_| {
                let root = dir.path().to_path_buf();
                tokio::spawn(async move { SqliteStorage::open(&root, Durability::Durable).await })
            })
            .collect();
        for open in opens {
            open.await.unwrap().unwrap();
        }
        assert_eq!(history(dir.path()).len(), 1);
    }
}
