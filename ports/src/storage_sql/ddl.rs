//! The service tables' DDL. Plain text with the column types chosen per dialect: sea-query's
//! table builder writes SQLite integer keys in a way that need not be the exact `INTEGER
//! PRIMARY KEY` SQLite requires for a rowid alias, and cannot say `WITHOUT ROWID`.

use super::{Dialect, ServiceSql};

impl ServiceSql {
    /// Creates the schema (PostgreSQL) and every service table, if missing; one statement per
    /// element, in order. Adapter-specific tables (SQLite's `outbox_actor`) are the adapter's.
    /// Tables created by an older build are brought up to date by the statements of
    /// [`ServiceSql::outbox_added_columns`], run after these (the index here only needs columns
    /// every version had).
    pub fn create_tables(&self) -> Vec<String> {
        // (event number key, row-id key, binary, 64-bit integer, attempts, boundary table suffix)
        let (seq_key, id_key, blob, bigint, attempts, no_rowid) = match self.dialect {
            Dialect::Sqlite => (
                "INTEGER PRIMARY KEY",
                "INTEGER PRIMARY KEY AUTOINCREMENT",
                "BLOB",
                "INTEGER",
                "INTEGER",
                " WITHOUT ROWID",
            ),
            Dialect::Postgres => (
                "BIGINT PRIMARY KEY",
                "BIGSERIAL PRIMARY KEY",
                "BYTEA",
                "BIGINT",
                "INT",
                "",
            ),
        };
        let enrollment = self.table_text("enrollment");
        let boundary = self.table_text("enrollment_boundary");
        let event = self.table_text("enrollment_event");
        let signing_key = self.table_text("signing_key");
        let state = self.table_text("oauth_state");
        let session = self.table_text("oauth_session");
        let outbox = self.table_text("outbox");
        let mut out = Vec::with_capacity(9);
        if let Some(schema) = &self.schema {
            out.push(format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""));
        }
        out.extend([
            format!(
                "CREATE TABLE IF NOT EXISTS {enrollment} (did TEXT PRIMARY KEY, enrolled_at TEXT \
                 NOT NULL, pds_endpoint TEXT, signing_key TEXT NOT NULL, enrollment_rkey TEXT)"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {boundary} (did TEXT NOT NULL REFERENCES {enrollment} \
                 (did) ON DELETE CASCADE, boundary TEXT NOT NULL, PRIMARY KEY (did, boundary))\
                 {no_rowid}"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {event} (seq {seq_key}, did TEXT NOT NULL, action TEXT \
                 NOT NULL, time TEXT NOT NULL, boundaries TEXT NOT NULL)"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {signing_key} (did TEXT PRIMARY KEY, alg TEXT NOT NULL, \
                 key {blob} NOT NULL)"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {state} (key TEXT PRIMARY KEY, value TEXT NOT NULL, \
                 expires_at_ms {bigint} NOT NULL)"
            ),
            format!("CREATE TABLE IF NOT EXISTS {session} (did TEXT PRIMARY KEY, value TEXT NOT NULL)"),
            format!(
                "CREATE TABLE IF NOT EXISTS {outbox} (id {id_key}, did TEXT NOT NULL, item {blob} \
                 NOT NULL, attempts {attempts} NOT NULL DEFAULT 0, due_ms {bigint} NOT NULL, \
                 leased_until {bigint}, last_error TEXT, dead_ms {bigint})"
            ),
            // A claim looks for older live rows of each candidate's account.
            format!("CREATE INDEX IF NOT EXISTS outbox_did_id ON {outbox} (did, id)"),
        ]);
        out
    }
}
