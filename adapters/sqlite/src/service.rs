//! The service database `{data}/service.sqlite`: enrollments, boundaries, signing keys, outbox
//! hints and service-level outbox items.

use async_trait::async_trait;
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};
use stratos_domain::boundary::Boundary;
use stratos_domain::crypto::Keypair;
use stratos_domain::syntax::{Datetime, Did, RecordKey};
use stratos_ports::enrollment_store::{
    Enrollment, EnrollmentAction, EnrollmentEvent, EnrollmentResult, EnrollmentStore,
    EnrollmentStoreError,
};
use stratos_ports::keys::{KeyStoreError, SigningKeyStore};
use stratos_ports::oauth_store::{OAuthStore, OAuthStoreError};
use stratos_ports::storage_codec::{
    decode_key, encode_key, enrollment_from_columns, event_from_columns, parse,
};

use stratos_ports::storage_sql::{ServiceSql, Sql};

use crate::SqliteError;
use crate::db::{Row, returning_one, stmt};

/// The table only SQLite has: which actors' databases hold outbox items (`outbox.rs`).
pub(crate) const OUTBOX_ACTOR_DDL: &str = "CREATE TABLE IF NOT EXISTS outbox_actor (\
     id INTEGER PRIMARY KEY AUTOINCREMENT, did TEXT NOT NULL UNIQUE)";

/// The shared statements of the service tables, for SQLite.
pub(crate) fn sql() -> ServiceSql {
    ServiceSql::sqlite()
}

/// A shared statement as sea-orm runs it.
pub(crate) fn q(sql: Sql) -> sea_orm::Statement {
    stmt(&sql.text, sql.values)
}

fn enr_err(e: impl Into<SqliteError>) -> EnrollmentStoreError {
    EnrollmentStoreError::Backend(stratos_ports::Cause::new(e.into()))
}

/// [`EnrollmentStore`] over the service database.
#[derive(Debug, Clone)]
pub struct SqliteEnrollmentStore {
    pub(crate) db: DatabaseConnection,
}

async fn boundaries_of<C: ConnectionTrait>(
    conn: &C,
    did: &str,
) -> Result<Vec<Boundary>, SqliteError> {
    let rows = conn.query_all_raw(q(sql().boundaries_of(did))).await?;
    rows.iter()
        .map(|r| Ok(parse(&r.text(0)?, "boundary")?))
        .collect()
}

async fn exists<C: ConnectionTrait>(conn: &C, did: &str) -> Result<bool, SqliteError> {
    Ok(conn
        .query_one_raw(q(sql().enrollment_exists(did)))
        .await?
        .is_some())
}

/// An enrollment row of [`ServiceSql::enrollment_get`] or [`ServiceSql::enrollment_list`].
fn row_to_enrollment(r: &sea_orm::QueryResult) -> Result<Enrollment, SqliteError> {
    Ok(enrollment_from_columns(
        &r.text(0)?,
        &r.text(1)?,
        r.opt_text(2)?,
        r.text(3)?,
        r.opt_text(4)?.as_deref(),
        &r.text(5)?,
    )?)
}

/// Appends one enrollment event inside the caller's transaction. The number is `MAX + 1`:
/// the service database has one connection, so appends are serialised and numbers are
/// consecutive in commit order ([`ServiceSql::event_lock`] asks for nothing here).
async fn append_event<C: ConnectionTrait>(
    conn: &C,
    did: &str,
    action: EnrollmentAction,
    boundaries: &[Boundary],
) -> Result<(), SqliteError> {
    let sql = sql();
    if let Some(lock) = sql.event_lock() {
        conn.execute_unprepared(&lock).await?;
    }
    conn.execute_raw(q(sql.event_append(did, action, &now(), boundaries)?))
        .await?;
    Ok(())
}

fn now() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    Datetime::from_unix_millis(ms).to_string()
}

fn row_to_event(r: &sea_orm::QueryResult) -> Result<EnrollmentEvent, SqliteError> {
    Ok(event_from_columns(
        r.int(0)?,
        &r.text(1)?,
        &r.text(2)?,
        &r.text(3)?,
        &r.text(4)?,
    )?)
}

impl SqliteEnrollmentStore {
    /// Runs `change` on the account's boundary set inside a transaction; fails if not enrolled.
    async fn change(
        &self,
        did: &Did,
        change: Option<Sql>,
        clear: bool,
    ) -> EnrollmentResult<Vec<Boundary>> {
        let txn = self.db.begin().await.map_err(enr_err)?;
        if !exists(&txn, did.as_str()).await.map_err(enr_err)? {
            txn.rollback().await.map_err(enr_err)?;
            return Err(EnrollmentStoreError::NotEnrolled(did.clone()));
        }
        if clear {
            txn.execute_raw(q(sql().boundaries_clear(did.as_str())))
                .await
                .map_err(enr_err)?;
        }
        if let Some(change) = change {
            txn.execute_raw(q(change)).await.map_err(enr_err)?;
        }
        let out = boundaries_of(&txn, did.as_str()).await.map_err(enr_err)?;
        append_event(&txn, did.as_str(), EnrollmentAction::Update, &out)
            .await
            .map_err(enr_err)?;
        txn.commit().await.map_err(enr_err)?;
        Ok(out)
    }
}

#[async_trait]
impl EnrollmentStore for SqliteEnrollmentStore {
    async fn enroll(&self, e: &Enrollment) -> EnrollmentResult<()> {
        let sql = sql();
        let txn = self.db.begin().await.map_err(enr_err)?;
        let did = e.did.as_str();
        let action = if exists(&txn, did).await.map_err(enr_err)? {
            EnrollmentAction::Update
        } else {
            EnrollmentAction::Enroll
        };
        txn.execute_raw(q(sql.enrollment_upsert(e).map_err(enr_err)?))
            .await
            .map_err(enr_err)?;
        txn.execute_raw(q(sql.boundaries_clear(did)))
            .await
            .map_err(enr_err)?;
        if let Some(insert) = sql.boundaries_insert(did, &e.boundaries).map_err(enr_err)? {
            txn.execute_raw(q(insert)).await.map_err(enr_err)?;
        }
        let held = boundaries_of(&txn, did).await.map_err(enr_err)?;
        append_event(&txn, did, action, &held)
            .await
            .map_err(enr_err)?;
        txn.commit().await.map_err(enr_err)
    }

    async fn get(&self, did: &Did) -> EnrollmentResult<Option<Enrollment>> {
        let row = self
            .db
            .query_one_raw(q(sql().enrollment_get(did.as_str())))
            .await
            .map_err(enr_err)?;
        row.map(|r| row_to_enrollment(&r))
            .transpose()
            .map_err(enr_err)
    }

    async fn boundaries(&self, did: &Did) -> EnrollmentResult<Vec<Boundary>> {
        boundaries_of(&self.db, did.as_str()).await.map_err(enr_err)
    }

    async fn add_boundary(
        &self,
        did: &Did,
        boundary: &Boundary,
    ) -> EnrollmentResult<Vec<Boundary>> {
        let insert = sql()
            .boundaries_insert(did.as_str(), std::slice::from_ref(boundary))
            .map_err(enr_err)?;
        self.change(did, insert, false).await
    }

    async fn remove_boundary(
        &self,
        did: &Did,
        boundary: &Boundary,
    ) -> EnrollmentResult<Vec<Boundary>> {
        let delete = sql().boundary_delete(did.as_str(), boundary);
        self.change(did, Some(delete), false).await
    }

    async fn set_boundaries(
        &self,
        did: &Did,
        boundaries: &[Boundary],
    ) -> EnrollmentResult<Vec<Boundary>> {
        let insert = sql()
            .boundaries_insert(did.as_str(), boundaries)
            .map_err(enr_err)?;
        self.change(did, insert, true).await
    }

    async fn set_enrollment_rkey(&self, did: &Did, rkey: &RecordKey) -> EnrollmentResult<()> {
        let n = self
            .db
            .execute_raw(q(sql().enrollment_set_rkey(did.as_str(), rkey.as_str())))
            .await
            .map_err(enr_err)?
            .rows_affected();
        if n == 0 {
            return Err(EnrollmentStoreError::NotEnrolled(did.clone()));
        }
        Ok(())
    }

    async fn unenroll(&self, did: &Did) -> EnrollmentResult<bool> {
        // Boundaries go with the row (ON DELETE CASCADE); only this account's rows (TS D8).
        let txn = self.db.begin().await.map_err(enr_err)?;
        let n = txn
            .execute_raw(q(sql().enrollment_delete(did.as_str())))
            .await
            .map_err(enr_err)?
            .rows_affected();
        if n > 0 {
            append_event(&txn, did.as_str(), EnrollmentAction::Unenroll, &[])
                .await
                .map_err(enr_err)?;
        }
        txn.commit().await.map_err(enr_err)?;
        Ok(n > 0)
    }

    async fn list(&self, cursor: Option<&Did>, limit: usize) -> EnrollmentResult<Vec<Enrollment>> {
        let rows = self
            .db
            .query_all_raw(q(
                sql().enrollment_list(cursor.map_or("", Did::as_str), limit)
            ))
            .await
            .map_err(enr_err)?;
        rows.iter()
            .map(row_to_enrollment)
            .collect::<Result<_, _>>()
            .map_err(enr_err)
    }

    async fn events_after(
        &self,
        cursor: u64,
        limit: usize,
    ) -> EnrollmentResult<Vec<EnrollmentEvent>> {
        let rows = self
            .db
            .query_all_raw(q(sql().events_after(cursor, limit)))
            .await
            .map_err(enr_err)?;
        rows.iter()
            .map(row_to_event)
            .collect::<Result<_, _>>()
            .map_err(enr_err)
    }

    async fn latest_event_seq(&self) -> EnrollmentResult<u64> {
        let row = self
            .db
            .query_one_raw(q(sql().event_latest_seq()))
            .await
            .map_err(enr_err)?;
        let seq = match row {
            Some(r) => r.int(0).map_err(enr_err)?,
            None => 0,
        };
        Ok(u64::try_from(seq).unwrap_or(0))
    }

    async fn prune_events(&self, before: u64) -> EnrollmentResult<u64> {
        let n = self
            .db
            .execute_raw(q(sql().events_prune(before)))
            .await
            .map_err(enr_err)?
            .rows_affected();
        Ok(n)
    }
}

/// [`SigningKeyStore`] over the service database. Key bytes are stored raw (protect the data
/// directory like any secret store) and never appear in errors.
#[derive(Clone)]
pub struct SqliteKeyStore {
    pub(crate) db: DatabaseConnection,
}

impl std::fmt::Debug for SqliteKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteKeyStore").finish_non_exhaustive()
    }
}

fn key_err(e: impl Into<SqliteError>) -> KeyStoreError {
    KeyStoreError::Backend(stratos_ports::Cause::new(e.into()))
}

#[async_trait]
impl SigningKeyStore for SqliteKeyStore {
    async fn put(&self, did: &Did, key: &Keypair) -> Result<(), KeyStoreError> {
        let (alg, private) = encode_key(key);
        let upsert = sql()
            .key_upsert(did.as_str(), alg, private.to_vec())
            .map_err(key_err)?;
        self.db.execute_raw(q(upsert)).await.map_err(key_err)?;
        Ok(())
    }

    async fn get(&self, did: &Did) -> Result<Option<Keypair>, KeyStoreError> {
        let row = self
            .db
            .query_one_raw(q(sql().key_get(did.as_str())))
            .await
            .map_err(key_err)?;
        let Some(row) = row else { return Ok(None) };
        let alg = row.text(0).map_err(key_err)?;
        let bytes = row.bytes(1).map_err(key_err)?;
        decode_key(&alg, &bytes)
            .map(Some)
            .map_err(|_| KeyStoreError::Corrupt(did.to_string()))
    }

    async fn delete(&self, did: &Did) -> Result<(), KeyStoreError> {
        self.db
            .execute_raw(q(sql().key_delete(did.as_str())))
            .await
            .map_err(key_err)?;
        Ok(())
    }
}

/// [`OAuthStore`] over the service database. Values hold tokens: never logged, never in errors.
#[derive(Clone)]
pub struct SqliteOAuthStore {
    pub(crate) db: DatabaseConnection,
}

impl std::fmt::Debug for SqliteOAuthStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteOAuthStore").finish_non_exhaustive()
    }
}

fn oauth_err(e: impl Into<SqliteError>) -> OAuthStoreError {
    OAuthStoreError::Backend(stratos_ports::Cause::new(e.into()))
}

#[async_trait]
impl OAuthStore for SqliteOAuthStore {
    async fn put_state(
        &self,
        key: &str,
        value: &str,
        expires_at_ms: i64,
    ) -> Result<(), OAuthStoreError> {
        let upsert = sql()
            .oauth_state_upsert(key, value, expires_at_ms)
            .map_err(oauth_err)?;
        self.db.execute_raw(q(upsert)).await.map_err(oauth_err)?;
        Ok(())
    }

    async fn take_state(&self, key: &str, now_ms: i64) -> Result<Option<String>, OAuthStoreError> {
        // Taking is one statement, so two callbacks with the same state cannot both win.
        let row = returning_one(&self.db, q(sql().oauth_state_take(key)))
            .await
            .map_err(oauth_err)?;
        let Some(row) = row else { return Ok(None) };
        if row.int(1).map_err(oauth_err)? <= now_ms {
            return Ok(None);
        }
        row.text(0).map(Some).map_err(oauth_err)
    }

    async fn put_session(&self, did: &Did, value: &str) -> Result<(), OAuthStoreError> {
        let upsert = sql()
            .oauth_session_upsert(did.as_str(), value)
            .map_err(oauth_err)?;
        self.db.execute_raw(q(upsert)).await.map_err(oauth_err)?;
        Ok(())
    }

    async fn get_session(&self, did: &Did) -> Result<Option<String>, OAuthStoreError> {
        let row = self
            .db
            .query_one_raw(q(sql().oauth_session_get(did.as_str())))
            .await
            .map_err(oauth_err)?;
        row.map(|r| r.text(0)).transpose().map_err(oauth_err)
    }

    async fn delete_session(&self, did: &Did) -> Result<(), OAuthStoreError> {
        self.db
            .execute_raw(q(sql().oauth_session_delete(did.as_str())))
            .await
            .map_err(oauth_err)?;
        Ok(())
    }
}
