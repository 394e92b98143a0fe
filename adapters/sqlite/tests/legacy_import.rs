#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! `stratos migrate-from-ts` from the original's SQLite layout: the fixture of
//! `stratos_testkit::legacy` written as the original's files (its DDL from the reference),
//! read by [`TsSqliteSource`] and imported into SQLite storage; the original's files are left
//! as they were.

use std::path::Path;

use sha2::{Digest, Sha256};
use stratos_domain::syntax::Did;
use stratos_ports::legacy_source::LegacySource;
use stratos_sqlite::{Durability, TsSqliteSource, open_storage};
use stratos_testkit::legacy::{check_import, importer, ts_fixture, ts_sqlite_scripts};

/// Writes the fixture as the original's data directory at `root`.
fn write_ts_dir(root: &Path, service: &Did) {
    let (service_sql, actors) = ts_sqlite_scripts(&ts_fixture(service));
    rusqlite::Connection::open(root.join("service.sqlite"))
        .unwrap()
        .execute_batch(&service_sql)
        .unwrap();
    for (did, sql, key) in actors {
        let hash = Sha256::digest(did.as_bytes());
        let dir = root
            .join("actors")
            .join(format!("{:02x}", hash[0]))
            .join(&did);
        std::fs::create_dir_all(&dir).unwrap();
        rusqlite::Connection::open(dir.join("stratos.sqlite"))
            .unwrap()
            .execute_batch(&sql)
            .unwrap();
        if let Some(key) = key {
            std::fs::write(dir.join("signing_key"), key).unwrap();
        }
    }
}

fn digest_tree(root: &Path) -> Vec<(String, [u8; 32])> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                out.push((path.display().to_string(), Sha256::digest(&bytes).into()));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn the_originals_sqlite_directory_imports() {
    let service = Did::parse("did:web:stratos.example").unwrap();
    let ts = tempfile::tempdir().unwrap();
    write_ts_dir(ts.path(), &service);
    let before = digest_tree(ts.path());

    let source = TsSqliteSource::open(ts.path()).unwrap();
    assert_eq!(source.accounts().await.unwrap().len(), 4);
    let ours = tempfile::tempdir().unwrap();
    let storage = open_storage(ours.path(), Durability::Durable)
        .await
        .unwrap();
    let stratos = importer(&service, storage).await;
    let report = stratos.import_legacy(&source).await.unwrap();
    check_import(&stratos, &report).await;
    assert_eq!(
        digest_tree(ts.path()),
        before,
        "the original's files changed"
    );
}

#[test]
fn a_directory_without_the_originals_database_is_refused() {
    let empty = tempfile::tempdir().unwrap();
    let err = TsSqliteSource::open(empty.path()).unwrap_err();
    assert!(err.to_string().contains("service.sqlite"), "{err}");
}
