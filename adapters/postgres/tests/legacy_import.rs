#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! `stratos migrate-from-ts --from-postgres`: the fixture of `stratos_testkit::legacy` written as
//! the original's PostgreSQL database (its DDL from the reference: service tables with quoted
//! camelCase columns in `public`, a schema per account), read by [`TsPostgresSource`] and
//! imported into PostgreSQL storage (under a prefix, in the same scratch database, dropped at
//! the end). Skipped without `STRATOS_TEST_POSTGRES_URL` — except under `CI=true`.

mod common;

use sha2::{Digest, Sha256};
use stratos_domain::syntax::Did;
use stratos_postgres::{PostgresConfig, TsPostgresSource, connect_storage};
use stratos_testkit::legacy::{check_import, importer, ts_fixture, ts_postgres_script};

#[tokio::test]
async fn the_originals_postgres_database_imports() {
    let Some(server) = common::server("PostgreSQL legacy import") else {
        return;
    };
    let db = common::Scratch::new(&server, "tsimport").await;
    let service = Did::parse("did:web:stratos.example").unwrap();
    let script = ts_postgres_script(&ts_fixture(&service), "public", |did| {
        let hash = Sha256::digest(did.as_bytes());
        let hex: String = hash[..6].iter().map(|b| format!("{b:02x}")).collect();
        format!("\"actor_{hex}\"")
    });
    common::run(&db.url, &script).await;

    let source = TsPostgresSource::connect(&db.url, "public").await.unwrap();
    let storage = connect_storage(&PostgresConfig {
        url: db.url.clone(),
        pool_size: 4,
        schema_prefix: "dst_".to_owned(),
    })
    .await
    .unwrap();
    let stratos = importer(&service, storage).await;
    let report = stratos.import_legacy(&source).await.unwrap();
    check_import(&stratos, &report).await;
    drop(stratos);
    drop(source);
    db.drop_db().await;
}
