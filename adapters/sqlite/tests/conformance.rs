#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! The SQLite adapter passes the same conformance suites as the in-memory fakes, on real files.

use std::sync::Arc;

use stratos_domain::rate_limit::RateLimit;
use stratos_domain::syntax::Did;
use stratos_ports::outbox::{Outbox, OutboxAction};
use stratos_ports::repo_store::RepoStore;
use stratos_ports::usecases::records::Records;
use stratos_sqlite::{Durability, SqliteStorage};
use stratos_testkit::builders::{build_records_with, did, enroll_into, nsid, post};
use stratos_testkit::conformance::Fixture;
use stratos_testkit::conformance::outbox::OutboxUnderTest;
use stratos_testkit::memory::ManualClock;

/// The record use cases over `s`, for the given service boundaries.
fn records_over(s: &SqliteStorage, boundaries: &[&str], rate_limit: RateLimit) -> Records {
    build_records_with(
        Arc::new(s.repos.clone()),
        Arc::new(s.enrollments.clone()),
        Arc::new(s.keys.clone()),
        Arc::new(ManualClock::at(1_795_000_000_000)),
        boundaries,
        rate_limit,
    )
}

/// Enrolls `account` in `s` with `boundaries`.
async fn enroll(records: &Records, s: &SqliteStorage, account: &str, boundaries: &[&str]) -> Did {
    enroll_into(records, &s.enrollments, &s.keys, account, boundaries).await
}

async fn storage(durability: Durability) -> (tempfile::TempDir, SqliteStorage) {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStorage::open(dir.path(), durability).await.unwrap();
    (dir, s)
}

/// A fresh storage in a temporary directory per case; `port` picks the store under test.
async fn fixture<P: ?Sized>(
    durability: Durability,
    port: impl FnOnce(&SqliteStorage) -> Arc<P>,
) -> Fixture<Arc<P>> {
    let (dir, s) = storage(durability).await;
    Fixture::new(port(&s)).keep((s, dir))
}

// One test per case and port (`cargo test -p stratos-sqlite --test conformance
// repo_store::lifecycle`), each on its own files.
stratos_testkit::repo_store_conformance!(fixture(Durability::Durable, |s| Arc::new(
    s.repos.clone()
)));
stratos_testkit::enrollment_store_conformance!(fixture(Durability::Durable, |s| Arc::new(
    s.enrollments.clone()
)));
stratos_testkit::outbox_conformance!(async {
    let (dir, s) = storage(Durability::Durable).await;
    let service = dir.path().join("service.sqlite");
    Fixture::new(OutboxUnderTest::new(
        Arc::new(s.outbox.clone()),
        Arc::new(s.repos.clone()),
        move |did| {
            // A second connection to the service database, as another process would open it.
            let conn = rusqlite::Connection::open(&service).unwrap();
            conn.busy_timeout(std::time::Duration::from_secs(10))
                .unwrap();
            conn.execute(
                "INSERT INTO outbox (did, item, due_ms) VALUES (?1, x'ff00', ?2)",
                rusqlite::params![did.as_str(), i64::MIN],
            )
            .unwrap();
            async {}
        },
    ))
    .keep((s, dir))
});
stratos_testkit::oauth_store_conformance!(fixture(Durability::Durable, |s| Arc::new(
    s.oauth.clone()
)));
stratos_testkit::key_store_conformance!(fixture(Durability::Durable, |s| Arc::new(s.keys.clone())));

/// The repository suite again with `Durability::Relaxed` (`relaxed::repo_store::…`).
mod relaxed {
    use super::*;
    stratos_testkit::repo_store_conformance!(fixture(Durability::Relaxed, |s| Arc::new(
        s.repos.clone()
    )));
}

/// The record use cases over SQLite, then a reopen: commits, the index, the sequence log and
/// outbox items survive, and commit-caused outbox items are found after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_over_sqlite_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let rei = did("did:plc:rei");
    let rkey;
    {
        let s = SqliteStorage::open(dir.path(), Durability::Durable)
            .await
            .unwrap();
        let records = records_over(
            &s,
            &["swordsmith", "aekea"],
            stratos_domain::rate_limit::DEFAULT_RATE_LIMIT,
        );
        enroll(&records, &s, "did:plc:rei", &["swordsmith"]).await;
        enroll(&records, &s, "did:plc:kaoruko", &["aekea"]).await;
        let out = records
            .create_record(
                &rei,
                &rei,
                &nsid("zone.stratos.feed.post"),
                None,
                post("kept", &["swordsmith"]),
            )
            .await
            .unwrap();
        rkey = out.results[0].uri.rkey().unwrap().clone();
        let kaoruko = did("did:plc:kaoruko");
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
    }
    let s = SqliteStorage::open(dir.path(), Durability::Durable)
        .await
        .unwrap();
    let stored = s
        .repos
        .get_record(&rei, &nsid("zone.stratos.feed.post"), &rkey)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.boundaries, ["did:web:nerv.tokyo.jp/swordsmith"]);
    assert_eq!(s.repos.latest_seq(&rei).await.unwrap(), 1);
    let claimed = s.outbox.claim(0, 60_000, 10).await.unwrap();
    assert_eq!(claimed.len(), 1, "the stub write survived the restart");
    assert!(matches!(
        claimed[0].item.action,
        OutboxAction::PutRecord { .. }
    ));
    s.outbox.complete(claimed[0].lease()).await.unwrap();
    assert_eq!(s.outbox.pending().await.unwrap(), 0);
    // The actor's file sits where the layout says.
    assert!(
        stratos_sqlite::actor_dir(dir.path(), rei.as_str())
            .join("stratos.sqlite")
            .exists()
    );
}

/// Single writing statements with `RETURNING` must let SQLite's WAL auto-checkpoint run: a
/// `query_one` commits inside the statement reset, which skips it, and the WAL then grows
/// without bound (one frame per page written, never reused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn returning_writes_keep_the_wal_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStorage::open(dir.path(), Durability::Relaxed)
        .await
        .unwrap();
    for i in 0..3_000 {
        s.outbox
            .enqueue(stratos_ports::outbox::OutboxItem {
                did: did(&format!("did:plc:wal{i}")),
                action: OutboxAction::DeleteRecord {
                    collection: nsid("zone.stratos.feed.post"),
                    rkey: stratos_testkit::builders::rkey(&format!("3k{i:011}")),
                },
            })
            .await
            .unwrap();
    }
    let wal = std::fs::metadata(dir.path().join("service.sqlite-wal"))
        .map(|m| m.len())
        .unwrap_or(0);
    // 3,000 commits write at least 3,000 frames (12 MB) when the WAL is never reset; with
    // checkpoints it stays near the 1,000-page auto-checkpoint mark (about 4 MB).
    assert!(wal < 8 * 1024 * 1024, "the WAL grew to {wal} bytes");
}

/// Actor databases created before blob tracking get its tables when next opened.
#[tokio::test]
async fn actor_databases_from_before_blob_tracking_are_upgraded() {
    use sea_orm::ConnectionTrait as _;
    use stratos_ports::repo_store::StoredBlob;
    let dir = tempfile::tempdir().unwrap();
    let rei = did("did:plc:rei");
    {
        let s = SqliteStorage::open(dir.path(), Durability::Durable)
            .await
            .unwrap();
        s.repos.create_actor(&rei).await.unwrap();
    }
    let file = stratos_sqlite::actor_dir(dir.path(), rei.as_str()).join("stratos.sqlite");
    {
        let db = sea_orm::Database::connect(format!("sqlite://{}?mode=rw", file.display()))
            .await
            .unwrap();
        // Dropping them also proves a new database had them.
        for sql in [
            "DROP TABLE record_blob",
            "DROP TABLE blob",
            "PRAGMA user_version = 0",
        ] {
            db.execute_unprepared(sql).await.unwrap();
        }
        db.close().await.unwrap();
    }
    let s = SqliteStorage::open(dir.path(), Durability::Durable)
        .await
        .unwrap();
    let bytes = b"after the upgrade";
    let upload = StoredBlob {
        cid: stratos_domain::cid::raw(bytes),
        mime_type: "image/png".into(),
        size: bytes.len() as u64,
        temp_key: Some("0".repeat(32)),
        created_ms: 1,
    };
    assert_eq!(
        s.repos.track_blob(&rei, upload.clone()).await.unwrap(),
        None
    );
    assert_eq!(s.repos.blob(&rei, &upload.cid).await.unwrap(), Some(upload));
}

/// Outbox tables from before dead letters (service and actor databases, the actor's at schema
/// version 1) get `last_error` and `dead_ms` when next opened, keep their items, and those
/// items can then fail into dead letters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_tables_from_before_dead_letters_are_upgraded() {
    use stratos_ports::outbox::{FailedAttempt, OutboxItem};
    let dir = tempfile::tempdir().unwrap();
    let rei = did("did:plc:rei");
    let item = |rkey: &str| OutboxItem {
        did: rei.clone(),
        action: OutboxAction::DeleteRecord {
            collection: nsid("zone.stratos.feed.post"),
            rkey: stratos_testkit::builders::rkey(rkey),
        },
    };
    {
        let s = SqliteStorage::open(dir.path(), Durability::Durable)
            .await
            .unwrap();
        s.repos.create_actor(&rei).await.unwrap();
    }
    let old_outbox = |did_column: &str| {
        format!(
            "CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, {did_column}item BLOB NOT \
             NULL, attempts INTEGER NOT NULL DEFAULT 0, due_ms INTEGER NOT NULL, leased_until \
             INTEGER)"
        )
    };
    let encoded = stratos_ports::storage_codec::encode_item(&item("old1"));
    let actor = stratos_sqlite::actor_dir(dir.path(), rei.as_str()).join("stratos.sqlite");
    {
        // The tables as the previous build created them, with one item each.
        let conn = rusqlite::Connection::open(&actor).unwrap();
        conn.execute_batch(&format!(
            "DROP TABLE outbox; {}; PRAGMA user_version = 1;",
            old_outbox("")
        ))
        .unwrap();
        conn.execute(
            "INSERT INTO outbox (item, due_ms) VALUES (?1, 0)",
            rusqlite::params![encoded],
        )
        .unwrap();
        let conn = rusqlite::Connection::open(dir.path().join("service.sqlite")).unwrap();
        // The previous build kept no migration history either.
        conn.execute_batch(&format!(
            "DROP TABLE outbox; DROP TABLE schema_migration; {};",
            old_outbox("did TEXT NOT NULL, ")
        ))
        .unwrap();
        conn.execute(
            "INSERT INTO outbox (did, item, due_ms) VALUES (?1, ?2, 0)",
            rusqlite::params![rei.as_str(), encoded],
        )
        .unwrap();
    }
    let s = SqliteStorage::open(dir.path(), Durability::Durable)
        .await
        .unwrap();
    for file in [actor.clone(), dir.path().join("service.sqlite")] {
        let conn = rusqlite::Connection::open(&file).unwrap();
        let columns: Vec<String> = conn
            .prepare("SELECT name FROM pragma_table_info('outbox')")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(
            columns.contains(&"last_error".to_owned()),
            "{file:?}: {columns:?}"
        );
        assert!(
            columns.contains(&"dead_ms".to_owned()),
            "{file:?}: {columns:?}"
        );
    }
    let user_version: i64 = rusqlite::Connection::open(&actor)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(user_version, 2);
    let claimed = s.outbox.claim(1_000, 500, 10).await.unwrap();
    assert_eq!(claimed.len(), 2, "both old items survive");
    for c in &claimed {
        assert_eq!(c.item, item("old1"));
        s.outbox
            .fail(
                c.lease(),
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
    }
    assert_eq!(s.outbox.dead_count(&rei).await.unwrap(), 2);
    drop(s);
    // Opening again changes nothing.
    let s = SqliteStorage::open(dir.path(), Durability::Durable)
        .await
        .unwrap();
    assert_eq!(s.outbox.dead_total().await.unwrap(), 2);
}

/// An actor's WAL stays bounded while it is written without pause. Background checkpoints alone
/// never catch up with continuous commits (only the writer can restart the log): a version
/// that relied on them let this WAL grow to 27 MB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actor_wals_are_checkpointed_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStorage::open(dir.path(), Durability::Relaxed)
        .await
        .unwrap();
    let unlimited = RateLimit {
        max: u32::MAX,
        window_ms: 1,
    };
    let records = records_over(&s, &["swordsmith"], unlimited);
    let rei = enroll(&records, &s, "did:plc:rei", &["swordsmith"]).await;
    let wal = stratos_sqlite::actor_dir(dir.path(), rei.as_str()).join("stratos.sqlite-wal");
    let mut largest = 0;
    for i in 0..600 {
        records
            .create_record(
                &rei,
                &rei,
                &nsid("zone.stratos.feed.post"),
                None,
                post(&format!("post {i}"), &["swordsmith"]),
            )
            .await
            .unwrap();
        largest = largest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
    }
    // 600 commits of about 10 pages each are ~24 MB of frames; the writer's checkpoint restarts
    // the log every 1,000 pages (about 4 MB), with room for one that finds a reader in the way.
    assert!(largest > 0, "the actor database is in WAL mode");
    assert!(largest < 8 * 1024 * 1024, "the WAL grew to {largest} bytes");
}
