//! The DDL of an actor's schema, and its upgrade at connect.

use sea_orm::ConnectionTrait;

use crate::{PostgresError, Row, Schemas, stmt};

pub(super) fn actor_ddl(s: &str) -> Vec<String> {
    vec![
        format!("CREATE SCHEMA IF NOT EXISTS {s}"),
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.repo_root (id INT PRIMARY KEY CHECK (id = 1), \
             commit_cid BYTEA NOT NULL, rev TEXT NOT NULL, data_cid BYTEA NOT NULL)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.block (id BIGSERIAL PRIMARY KEY, \
             cid BYTEA NOT NULL UNIQUE, content BYTEA NOT NULL)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.record (collection TEXT NOT NULL, rkey TEXT NOT NULL, \
             cid BYTEA NOT NULL, boundaries TEXT[] NOT NULL, PRIMARY KEY (collection, rkey))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.event (seq BIGSERIAL PRIMARY KEY, rev TEXT NOT NULL, \
             commit_cid BYTEA NOT NULL, time TEXT NOT NULL, ops BYTEA NOT NULL)"
        ),
    ]
    .into_iter()
    .chain(blob_ddl(s))
    .collect()
}

/// Blob tracking: `blob` holds uploads (`temp_key` set) and permanent blobs; `released` marks a
/// permanent blob whose last referencing record went away, until `release_blobs` hands it out.
/// `record_blob` links records to the blobs they reference, with the revision of the commit that
/// wrote the link. CIDs are their canonical strings, the order `listBlobs` pages in (`COLLATE
/// "C"`: byte order, whatever the database's collation).
fn blob_ddl(s: &str) -> Vec<String> {
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.blob (cid TEXT COLLATE \"C\" PRIMARY KEY, \
             mime_type TEXT NOT NULL, size BIGINT NOT NULL, temp_key TEXT, \
             created_ms BIGINT NOT NULL, released BOOLEAN NOT NULL DEFAULT FALSE)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.record_blob (cid TEXT COLLATE \"C\" NOT NULL, \
             collection TEXT NOT NULL, rkey TEXT NOT NULL, rev TEXT COLLATE \"C\" NOT NULL, \
             PRIMARY KEY (cid, collection, rkey))"
        ),
        format!(
            "CREATE INDEX IF NOT EXISTS record_blob_path ON {s}.record_blob (collection, rkey)"
        ),
    ]
}

/// Adds the blob tables to actor schemas created before blob tracking (migration 1, inside
/// the migration's transaction).
pub(crate) async fn upgrade_actor_schemas<C: ConnectionTrait>(
    db: &C,
    schemas: &Schemas,
) -> Result<(), PostgresError> {
    let rows = db
        .query_all_raw(stmt(
            "SELECT n.nspname FROM pg_namespace n WHERE n.nspname LIKE $1 AND NOT EXISTS \
             (SELECT 1 FROM pg_tables t WHERE t.schemaname = n.nspname \
             AND t.tablename = 'record_blob')",
            vec![schemas.actor_pattern().into()],
        ))
        .await?;
    for row in rows {
        let name = row.text(0)?;
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        for sql in blob_ddl(&format!("\"{name}\"")) {
            db.execute_unprepared(&sql).await?;
        }
    }
    Ok(())
}
