#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // bench code
//! Block table layout, measured: random CID primary keys (`WITHOUT ROWID`) against an
//! append-ordered rowid table with a unique CID index (the adapter's choice). Each transaction
//! inserts 9 blocks of 300 bytes, like one record write. `synchronous=OFF` isolates the B-tree
//! cost from the disk.
//!
//! `cargo bench -p stratos-sqlite --bench layout`

use std::time::Instant;

use sea_orm::{ConnectionTrait, Database, DbBackend, Statement, TransactionTrait, Value};

const TXNS: usize = 5_000;
const BLOCKS: usize = 9;

async fn run(name: &str, schema: &[&str], insert: &str) {
    let dir = tempfile::tempdir_in(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target")).unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("layout.sqlite").display()
    );
    let db = Database::connect(url).await.unwrap();
    for sql in ["PRAGMA journal_mode=WAL", "PRAGMA synchronous=OFF"]
        .iter()
        .chain(schema)
    {
        db.execute_unprepared(sql).await.unwrap();
    }
    let mut n: u64 = 0;
    let start = Instant::now();
    for _ in 0..TXNS {
        let txn = db.begin().await.unwrap();
        let mut values = Vec::with_capacity(BLOCKS * 2);
        for _ in 0..BLOCKS {
            n += 1;
            let content = vec![(n % 251) as u8; 300];
            let mut body = content.clone();
            body.extend_from_slice(&n.to_be_bytes());
            let cid = stratos_domain::cid::dag_cbor(&body);
            values.push(Value::from(cid.to_bytes()));
            values.push(Value::from(content));
        }
        let sql = format!("{insert} VALUES {}", ["(?, ?)"; BLOCKS].join(", "));
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            sql,
            values,
        ))
        .await
        .unwrap();
        txn.commit().await.unwrap();
    }
    let elapsed = start.elapsed();
    println!(
        "{name:<36} {:>8.0} txns/s   {:>6.2} µs per block",
        TXNS as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e6 / (TXNS * BLOCKS) as f64
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        println!("{TXNS} transactions × {BLOCKS} blocks of 300 bytes\n");
        run(
            "WITHOUT ROWID, CID primary key",
            &["CREATE TABLE block (cid BLOB PRIMARY KEY, content BLOB NOT NULL) WITHOUT ROWID"],
            "INSERT OR IGNORE INTO block (cid, content)",
        )
        .await;
        run(
            "rowid table + unique CID index",
            &[
                "CREATE TABLE block (id INTEGER PRIMARY KEY, cid BLOB NOT NULL, content BLOB NOT NULL)",
                "CREATE UNIQUE INDEX block_cid ON block (cid)",
            ],
            "INSERT OR IGNORE INTO block (cid, content)",
        )
        .await;
    });
}
