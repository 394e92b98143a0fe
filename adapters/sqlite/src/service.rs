//! The service database `{data}/service.sqlite`: enrollments, boundaries, signing keys, outbox
//! hints and service-level outbox items.

use async_trait::async_trait;
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};
use stratos_domain::crypto::Keypair;
use stratos_domain::syntax::{Datetime, Did};
use stratos_ports::enrollment_store::{
    Enrollment, EnrollmentAction, EnrollmentEvent, EnrollmentResult, EnrollmentStore,
    EnrollmentStoreError,
};
use stratos_ports::keys::{KeyStoreError, SigningKeyStore};
use stratos_ports::oauth_store::{OAuthStore, OAuthStoreError};
use stratos_ports::storage_codec::{decode_key, encode_key};

use crate::SqliteError;
use crate::db::{Row, returning_one, stmt};

pub(crate) const SERVICE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS enrollment (
    did TEXT PRIMARY KEY,
    enrolled_at TEXT NOT NULL,
    pds_endpoint TEXT,
    signing_key TEXT NOT NULL,
    enrollment_rkey TEXT
);
CREATE TABLE IF NOT EXISTS enrollment_boundary (
    did TEXT NOT NULL REFERENCES enrollment (did) ON DELETE CASCADE,
    boundary TEXT NOT NULL,
    PRIMARY KEY (did, boundary)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS enrollment_event (
    seq INTEGER PRIMARY KEY,
    did TEXT NOT NULL,
    action TEXT NOT NULL,
    time TEXT NOT NULL,
    boundaries TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS signing_key (
    did TEXT PRIMARY KEY,
    alg TEXT NOT NULL,
    key BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS oauth_state (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    expires_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS oauth_session (
    did TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox_actor (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    did TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    did TEXT NOT NULL,
    item BLOB NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    due_ms INTEGER NOT NULL,
    leased_until INTEGER
)";

fn enr_err(e: impl Into<SqliteError>) -> EnrollmentStoreError {
    EnrollmentStoreError::Backend(e.into().to_string())
}

/// [`EnrollmentStore`] over the service database.
#[derive(Debug, Clone)]
pub struct SqliteEnrollmentStore {
    pub(crate) db: DatabaseConnection,
}

async fn boundaries_of<C: ConnectionTrait>(
    conn: &C,
    did: &str,
) -> Result<Vec<String>, SqliteError> {
    let rows = conn
        .query_all_raw(stmt(
            "SELECT boundary FROM enrollment_boundary WHERE did = ? ORDER BY boundary",
            vec![did.into()],
        ))
        .await?;
    rows.iter().map(|r| r.text(0).map_err(Into::into)).collect()
}

async fn exists<C: ConnectionTrait>(conn: &C, did: &str) -> Result<bool, SqliteError> {
    Ok(conn
        .query_one_raw(stmt(
            "SELECT 1 FROM enrollment WHERE did = ?",
            vec![did.into()],
        ))
        .await?
        .is_some())
}

fn row_to_enrollment(
    r: &sea_orm::QueryResult,
    boundaries: Vec<String>,
) -> Result<Enrollment, SqliteError> {
    Ok(Enrollment {
        did: r.text(0)?,
        enrolled_at: r.text(1)?,
        pds_endpoint: r.opt_text(2)?,
        signing_key: r.text(3)?,
        enrollment_rkey: r.opt_text(4)?,
        boundaries,
    })
}

/// Appends one enrollment event inside the caller's transaction. The number is `MAX + 1`:
/// the service database has one connection, so appends are serialised and numbers are
/// consecutive in commit order (pruning always keeps the newest row, so none is reused).
async fn append_event<C: ConnectionTrait>(
    conn: &C,
    did: &str,
    action: EnrollmentAction,
    boundaries: &[String],
) -> Result<(), SqliteError> {
    conn.execute_raw(stmt(
        "INSERT INTO enrollment_event (seq, did, action, time, boundaries) VALUES \
         ((SELECT COALESCE(MAX(seq), 0) + 1 FROM enrollment_event), ?, ?, ?, ?)",
        vec![
            did.into(),
            action.as_str().into(),
            now().into(),
            boundaries.join("\n").into(),
        ],
    ))
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
    let action = r.text(2)?;
    let boundaries = r.text(4)?;
    Ok(EnrollmentEvent {
        seq: u64::try_from(r.int(0)?).unwrap_or(0),
        did: r.text(1)?,
        action: EnrollmentAction::parse(&action)
            .ok_or_else(|| SqliteError::Corrupt(format!("enrollment event action {action:?}")))?,
        time: r.text(3)?,
        boundaries: boundaries
            .split('\n')
            .filter(|b| !b.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

const SELECT: &str =
    "SELECT did, enrolled_at, pds_endpoint, signing_key, enrollment_rkey FROM enrollment";

/// One round trip for the enrollment and its boundaries (on every write's path).
const SELECT_WITH_BOUNDARIES: &str = "SELECT e.did, e.enrolled_at, e.pds_endpoint, e.signing_key, \
     e.enrollment_rkey, (SELECT group_concat(boundary, char(10)) FROM \
     (SELECT boundary FROM enrollment_boundary b WHERE b.did = e.did ORDER BY boundary)) \
     FROM enrollment e WHERE e.did = ?";

impl SqliteEnrollmentStore {
    /// Runs `change` on the account's boundary set inside a transaction; fails if not enrolled.
    async fn change(
        &self,
        did: &Did,
        sql: &str,
        values: Vec<sea_orm::Value>,
        clear: bool,
    ) -> EnrollmentResult<Vec<String>> {
        let txn = self.db.begin().await.map_err(enr_err)?;
        if !exists(&txn, did.as_str()).await.map_err(enr_err)? {
            txn.rollback().await.map_err(enr_err)?;
            return Err(EnrollmentStoreError::NotEnrolled(did.to_string()));
        }
        if clear {
            txn.execute_raw(stmt(
                "DELETE FROM enrollment_boundary WHERE did = ?",
                vec![did.as_str().into()],
            ))
            .await
            .map_err(enr_err)?;
        }
        if !sql.is_empty() {
            txn.execute_raw(stmt(sql, values)).await.map_err(enr_err)?;
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
        let txn = self.db.begin().await.map_err(enr_err)?;
        let action = if exists(&txn, &e.did).await.map_err(enr_err)? {
            EnrollmentAction::Update
        } else {
            EnrollmentAction::Enroll
        };
        txn.execute_raw(stmt(
            "INSERT INTO enrollment (did, enrolled_at, pds_endpoint, signing_key, enrollment_rkey) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (did) DO UPDATE SET enrolled_at = excluded.enrolled_at, \
             pds_endpoint = excluded.pds_endpoint, signing_key = excluded.signing_key, \
             enrollment_rkey = excluded.enrollment_rkey",
            vec![
                e.did.clone().into(),
                e.enrolled_at.clone().into(),
                e.pds_endpoint.clone().into(),
                e.signing_key.clone().into(),
                e.enrollment_rkey.clone().into(),
            ],
        ))
        .await
        .map_err(enr_err)?;
        txn.execute_raw(stmt(
            "DELETE FROM enrollment_boundary WHERE did = ?",
            vec![e.did.clone().into()],
        ))
        .await
        .map_err(enr_err)?;
        for b in &e.boundaries {
            txn.execute_raw(stmt(
                "INSERT OR IGNORE INTO enrollment_boundary (did, boundary) VALUES (?, ?)",
                vec![e.did.clone().into(), b.clone().into()],
            ))
            .await
            .map_err(enr_err)?;
        }
        let held = boundaries_of(&txn, &e.did).await.map_err(enr_err)?;
        append_event(&txn, &e.did, action, &held)
            .await
            .map_err(enr_err)?;
        txn.commit().await.map_err(enr_err)
    }

    async fn get(&self, did: &Did) -> EnrollmentResult<Option<Enrollment>> {
        let row = self
            .db
            .query_one_raw(stmt(SELECT_WITH_BOUNDARIES, vec![did.as_str().into()]))
            .await
            .map_err(enr_err)?;
        let Some(row) = row else { return Ok(None) };
        let boundaries = row
            .opt_text(5)
            .map_err(enr_err)?
            .map(|joined| joined.split('\n').map(str::to_owned).collect())
            .unwrap_or_default();
        row_to_enrollment(&row, boundaries)
            .map(Some)
            .map_err(enr_err)
    }

    async fn boundaries(&self, did: &Did) -> EnrollmentResult<Vec<String>> {
        boundaries_of(&self.db, did.as_str()).await.map_err(enr_err)
    }

    async fn add_boundary(&self, did: &Did, boundary: &str) -> EnrollmentResult<Vec<String>> {
        self.change(
            did,
            "INSERT OR IGNORE INTO enrollment_boundary (did, boundary) VALUES (?, ?)",
            vec![did.as_str().into(), boundary.into()],
            false,
        )
        .await
    }

    async fn remove_boundary(&self, did: &Did, boundary: &str) -> EnrollmentResult<Vec<String>> {
        self.change(
            did,
            "DELETE FROM enrollment_boundary WHERE did = ? AND boundary = ?",
            vec![did.as_str().into(), boundary.into()],
            false,
        )
        .await
    }

    async fn set_boundaries(
        &self,
        did: &Did,
        boundaries: &[String],
    ) -> EnrollmentResult<Vec<String>> {
        let txn = self.db.begin().await.map_err(enr_err)?;
        if !exists(&txn, did.as_str()).await.map_err(enr_err)? {
            txn.rollback().await.map_err(enr_err)?;
            return Err(EnrollmentStoreError::NotEnrolled(did.to_string()));
        }
        txn.execute_raw(stmt(
            "DELETE FROM enrollment_boundary WHERE did = ?",
            vec![did.as_str().into()],
        ))
        .await
        .map_err(enr_err)?;
        for b in boundaries {
            txn.execute_raw(stmt(
                "INSERT OR IGNORE INTO enrollment_boundary (did, boundary) VALUES (?, ?)",
                vec![did.as_str().into(), b.clone().into()],
            ))
            .await
            .map_err(enr_err)?;
        }
        let out = boundaries_of(&txn, did.as_str()).await.map_err(enr_err)?;
        append_event(&txn, did.as_str(), EnrollmentAction::Update, &out)
            .await
            .map_err(enr_err)?;
        txn.commit().await.map_err(enr_err)?;
        Ok(out)
    }

    async fn set_enrollment_rkey(&self, did: &Did, rkey: &str) -> EnrollmentResult<()> {
        let n = self
            .db
            .execute_raw(stmt(
                "UPDATE enrollment SET enrollment_rkey = ? WHERE did = ?",
                vec![rkey.into(), did.as_str().into()],
            ))
            .await
            .map_err(enr_err)?
            .rows_affected();
        if n == 0 {
            return Err(EnrollmentStoreError::NotEnrolled(did.to_string()));
        }
        Ok(())
    }

    async fn unenroll(&self, did: &Did) -> EnrollmentResult<bool> {
        // Boundaries go with the row (ON DELETE CASCADE); only this account's rows (TS D8).
        let txn = self.db.begin().await.map_err(enr_err)?;
        let n = txn
            .execute_raw(stmt(
                "DELETE FROM enrollment WHERE did = ?",
                vec![did.as_str().into()],
            ))
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

    async fn list(&self, cursor: Option<&str>, limit: usize) -> EnrollmentResult<Vec<Enrollment>> {
        let rows = self
            .db
            .query_all_raw(stmt(
                &format!("{SELECT} WHERE did > ? ORDER BY did LIMIT ?"),
                vec![
                    cursor.unwrap_or("").into(),
                    i64::try_from(limit).unwrap_or(i64::MAX).into(),
                ],
            ))
            .await
            .map_err(enr_err)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let did = row.text(0).map_err(enr_err)?;
            let boundaries = boundaries_of(&self.db, &did).await.map_err(enr_err)?;
            out.push(row_to_enrollment(&row, boundaries).map_err(enr_err)?);
        }
        Ok(out)
    }

    async fn events_after(
        &self,
        cursor: u64,
        limit: usize,
    ) -> EnrollmentResult<Vec<EnrollmentEvent>> {
        let rows = self
            .db
            .query_all_raw(stmt(
                "SELECT seq, did, action, time, boundaries FROM enrollment_event \
                 WHERE seq > ? ORDER BY seq LIMIT ?",
                vec![
                    i64::try_from(cursor).unwrap_or(i64::MAX).into(),
                    i64::try_from(limit).unwrap_or(i64::MAX).into(),
                ],
            ))
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
            .query_one_raw(stmt(
                "SELECT COALESCE(MAX(seq), 0) FROM enrollment_event",
                vec![],
            ))
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
            .execute_raw(stmt(
                "DELETE FROM enrollment_event WHERE seq < ? \
                 AND seq < (SELECT MAX(seq) FROM enrollment_event)",
                vec![i64::try_from(before).unwrap_or(i64::MAX).into()],
            ))
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
    KeyStoreError::Backend(e.into().to_string())
}

#[async_trait]
impl SigningKeyStore for SqliteKeyStore {
    async fn put(&self, did: &Did, key: &Keypair) -> Result<(), KeyStoreError> {
        let (alg, private) = encode_key(key);
        self.db
            .execute_raw(stmt(
                "INSERT OR REPLACE INTO signing_key (did, alg, key) VALUES (?, ?, ?)",
                vec![did.as_str().into(), alg.into(), private.to_vec().into()],
            ))
            .await
            .map_err(key_err)?;
        Ok(())
    }

    async fn get(&self, did: &Did) -> Result<Option<Keypair>, KeyStoreError> {
        let row = self
            .db
            .query_one_raw(stmt(
                "SELECT alg, key FROM signing_key WHERE did = ?",
                vec![did.as_str().into()],
            ))
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
            .execute_raw(stmt(
                "DELETE FROM signing_key WHERE did = ?",
                vec![did.as_str().into()],
            ))
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
    OAuthStoreError::Backend(e.into().to_string())
}

#[async_trait]
impl OAuthStore for SqliteOAuthStore {
    async fn put_state(
        &self,
        key: &str,
        value: &str,
        expires_at_ms: i64,
    ) -> Result<(), OAuthStoreError> {
        self.db
            .execute_raw(stmt(
                "INSERT OR REPLACE INTO oauth_state (key, value, expires_at_ms) VALUES (?, ?, ?)",
                vec![key.into(), value.into(), expires_at_ms.into()],
            ))
            .await
            .map_err(oauth_err)?;
        Ok(())
    }

    async fn take_state(&self, key: &str, now_ms: i64) -> Result<Option<String>, OAuthStoreError> {
        // Taking is one statement, so two callbacks with the same state cannot both win.
        let row = returning_one(
            &self.db,
            stmt(
                "DELETE FROM oauth_state WHERE key = ? RETURNING value, expires_at_ms",
                vec![key.into()],
            ),
        )
        .await
        .map_err(oauth_err)?;
        let Some(row) = row else { return Ok(None) };
        if row.int(1).map_err(oauth_err)? <= now_ms {
            return Ok(None);
        }
        row.text(0).map(Some).map_err(oauth_err)
    }

    async fn put_session(&self, did: &Did, value: &str) -> Result<(), OAuthStoreError> {
        self.db
            .execute_raw(stmt(
                "INSERT OR REPLACE INTO oauth_session (did, value) VALUES (?, ?)",
                vec![did.as_str().into(), value.into()],
            ))
            .await
            .map_err(oauth_err)?;
        Ok(())
    }

    async fn get_session(&self, did: &Did) -> Result<Option<String>, OAuthStoreError> {
        let row = self
            .db
            .query_one_raw(stmt(
                "SELECT value FROM oauth_session WHERE did = ?",
                vec![did.as_str().into()],
            ))
            .await
            .map_err(oauth_err)?;
        row.map(|r| r.text(0)).transpose().map_err(oauth_err)
    }

    async fn delete_session(&self, did: &Did) -> Result<(), OAuthStoreError> {
        self.db
            .execute_raw(stmt(
                "DELETE FROM oauth_session WHERE did = ?",
                vec![did.as_str().into()],
            ))
            .await
            .map_err(oauth_err)?;
        Ok(())
    }
}
