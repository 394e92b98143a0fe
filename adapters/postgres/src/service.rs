//! The service schema: enrollments, signing keys, OAuth states and sessions, the outbox.

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
use stratos_ports::outbox::{ClaimedItem, Outbox, OutboxError, OutboxItem};
use stratos_ports::storage_codec::{decode_item, decode_key, encode_item, encode_key};

use crate::{PostgresError, Row, stmt};

pub(crate) fn schema_ddl(s: &str) -> Vec<String> {
    vec![
        format!("CREATE SCHEMA IF NOT EXISTS {s}"),
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.enrollment (did TEXT PRIMARY KEY, enrolled_at TEXT NOT NULL, \
             pds_endpoint TEXT, signing_key TEXT NOT NULL, enrollment_rkey TEXT)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.enrollment_boundary (did TEXT NOT NULL REFERENCES \
             {s}.enrollment (did) ON DELETE CASCADE, boundary TEXT NOT NULL, PRIMARY KEY (did, boundary))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.enrollment_event (seq BIGINT PRIMARY KEY, did TEXT NOT NULL, \
             action TEXT NOT NULL, time TEXT NOT NULL, boundaries TEXT NOT NULL)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.signing_key (did TEXT PRIMARY KEY, alg TEXT NOT NULL, \
             key BYTEA NOT NULL)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.oauth_state (key TEXT PRIMARY KEY, value TEXT NOT NULL, \
             expires_at_ms BIGINT NOT NULL)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.oauth_session (did TEXT PRIMARY KEY, value TEXT NOT NULL)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.outbox (id BIGSERIAL PRIMARY KEY, did TEXT NOT NULL, \
             item BYTEA NOT NULL, attempts INT NOT NULL DEFAULT 0, due_ms BIGINT NOT NULL, \
             leased_until BIGINT)"
        ),
    ]
}

fn enr_err(e: impl Into<PostgresError>) -> EnrollmentStoreError {
    EnrollmentStoreError::Backend(e.into().to_string())
}

/// [`EnrollmentStore`] over the service schema.
#[derive(Debug, Clone)]
pub struct PostgresEnrollmentStore {
    pub(crate) db: DatabaseConnection,
    pub(crate) schema: String,
}

impl PostgresEnrollmentStore {
    fn select(&self) -> String {
        let s = &self.schema;
        format!(
            "SELECT e.did, e.enrolled_at, e.pds_endpoint, e.signing_key, e.enrollment_rkey, \
             COALESCE((SELECT string_agg(boundary, E'\\n' ORDER BY boundary) FROM \
             {s}.enrollment_boundary b WHERE b.did = e.did), '') FROM {s}.enrollment e"
        )
    }

    async fn boundaries_in<C: ConnectionTrait>(
        &self,
        conn: &C,
        did: &str,
    ) -> Result<Vec<String>, PostgresError> {
        let rows = conn
            .query_all_raw(stmt(
                &format!(
                    "SELECT boundary FROM {}.enrollment_boundary WHERE did = $1 ORDER BY boundary",
                    self.schema
                ),
                vec![did.into()],
            ))
            .await?;
        rows.iter().map(|r| r.text(0).map_err(Into::into)).collect()
    }

    async fn change(
        &self,
        did: &Did,
        sql: Option<String>,
        values: Vec<sea_orm::Value>,
        clear: bool,
    ) -> EnrollmentResult<Vec<String>> {
        let s = &self.schema;
        let txn = self.db.begin().await.map_err(enr_err)?;
        let exists = txn
            .query_one_raw(stmt(
                &format!("SELECT 1 FROM {s}.enrollment WHERE did = $1 FOR UPDATE"),
                vec![did.as_str().into()],
            ))
            .await
            .map_err(enr_err)?
            .is_some();
        if !exists {
            txn.rollback().await.map_err(enr_err)?;
            return Err(EnrollmentStoreError::NotEnrolled(did.to_string()));
        }
        if clear {
            txn.execute_raw(stmt(
                &format!("DELETE FROM {s}.enrollment_boundary WHERE did = $1"),
                vec![did.as_str().into()],
            ))
            .await
            .map_err(enr_err)?;
        }
        if let Some(sql) = sql {
            txn.execute_raw(stmt(&sql, values)).await.map_err(enr_err)?;
        }
        let out = self
            .boundaries_in(&txn, did.as_str())
            .await
            .map_err(enr_err)?;
        self.append_event(&txn, did.as_str(), EnrollmentAction::Update, &out)
            .await
            .map_err(enr_err)?;
        txn.commit().await.map_err(enr_err)?;
        Ok(out)
    }

    /// Appends one enrollment event inside the caller's transaction. The exclusive table lock
    /// (held to the commit) serialises appenders, so `MAX + 1` numbers are consecutive and in
    /// commit order: a reader paging by cursor can never see seq n+1 before seq n. A sequence
    /// (`BIGSERIAL`) would allow both gaps and out-of-order commits. Enrollment changes are
    /// rare, so the lock costs nothing that matters.
    async fn append_event<C: ConnectionTrait>(
        &self,
        conn: &C,
        did: &str,
        action: EnrollmentAction,
        boundaries: &[String],
    ) -> Result<(), PostgresError> {
        let s = &self.schema;
        conn.execute_unprepared(&format!(
            "LOCK TABLE {s}.enrollment_event IN EXCLUSIVE MODE"
        ))
        .await?;
        conn.execute_raw(stmt(
            &format!(
                "INSERT INTO {s}.enrollment_event (seq, did, action, time, boundaries) \
                 SELECT COALESCE(MAX(seq), 0) + 1, $1, $2, $3, $4 FROM {s}.enrollment_event"
            ),
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

    fn insert_boundaries_sql(&self, n: usize) -> String {
        let tuples: Vec<String> = (0..n).map(|i| format!("($1, ${})", i + 2)).collect();
        format!(
            "INSERT INTO {}.enrollment_boundary (did, boundary) VALUES {} ON CONFLICT DO NOTHING",
            self.schema,
            tuples.join(", ")
        )
    }
}

fn now() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    Datetime::from_unix_millis(ms).to_string()
}

fn to_event(r: &sea_orm::QueryResult) -> Result<EnrollmentEvent, PostgresError> {
    let action = r.text(2)?;
    let boundaries = r.text(4)?;
    Ok(EnrollmentEvent {
        seq: u64::try_from(r.int(0)?).unwrap_or(0),
        did: r.text(1)?,
        action: EnrollmentAction::parse(&action)
            .ok_or_else(|| PostgresError::Corrupt(format!("enrollment event action {action:?}")))?,
        time: r.text(3)?,
        boundaries: boundaries
            .split('\n')
            .filter(|b| !b.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

fn to_enrollment(r: &sea_orm::QueryResult) -> Result<Enrollment, PostgresError> {
    Ok(Enrollment {
        did: r.text(0)?,
        enrolled_at: r.text(1)?,
        pds_endpoint: r.opt_text(2)?,
        signing_key: r.text(3)?,
        enrollment_rkey: r.opt_text(4)?,
        boundaries: r
            .text(5)?
            .split('\n')
            .filter(|b| !b.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

#[async_trait]
impl EnrollmentStore for PostgresEnrollmentStore {
    async fn enroll(&self, e: &Enrollment) -> EnrollmentResult<()> {
        let s = &self.schema;
        let txn = self.db.begin().await.map_err(enr_err)?;
        // Row-locks an existing enrollment, so two concurrent enrolls of one account log
        // exactly one `enroll`.
        let existed = txn
            .query_one_raw(stmt(
                &format!("SELECT 1 FROM {s}.enrollment WHERE did = $1 FOR UPDATE"),
                vec![e.did.clone().into()],
            ))
            .await
            .map_err(enr_err)?
            .is_some();
        txn.execute_raw(stmt(
            &format!(
                "INSERT INTO {s}.enrollment (did, enrolled_at, pds_endpoint, signing_key, enrollment_rkey) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (did) DO UPDATE SET \
                 enrolled_at = excluded.enrolled_at, pds_endpoint = excluded.pds_endpoint, \
                 signing_key = excluded.signing_key, enrollment_rkey = excluded.enrollment_rkey"
            ),
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
            &format!("DELETE FROM {s}.enrollment_boundary WHERE did = $1"),
            vec![e.did.clone().into()],
        ))
        .await
        .map_err(enr_err)?;
        if !e.boundaries.is_empty() {
            let mut values = vec![sea_orm::Value::from(e.did.clone())];
            values.extend(e.boundaries.iter().map(|b| sea_orm::Value::from(b.clone())));
            txn.execute_raw(stmt(
                &self.insert_boundaries_sql(e.boundaries.len()),
                values,
            ))
            .await
            .map_err(enr_err)?;
        }
        let held = self.boundaries_in(&txn, &e.did).await.map_err(enr_err)?;
        let action = if existed {
            EnrollmentAction::Update
        } else {
            EnrollmentAction::Enroll
        };
        self.append_event(&txn, &e.did, action, &held)
            .await
            .map_err(enr_err)?;
        txn.commit().await.map_err(enr_err)
    }

    async fn get(&self, did: &Did) -> EnrollmentResult<Option<Enrollment>> {
        let row = self
            .db
            .query_one_raw(stmt(
                &format!("{} WHERE e.did = $1", self.select()),
                vec![did.as_str().into()],
            ))
            .await
            .map_err(enr_err)?;
        row.map(|r| to_enrollment(&r)).transpose().map_err(enr_err)
    }

    async fn boundaries(&self, did: &Did) -> EnrollmentResult<Vec<String>> {
        self.boundaries_in(&self.db, did.as_str())
            .await
            .map_err(enr_err)
    }

    async fn add_boundary(&self, did: &Did, boundary: &str) -> EnrollmentResult<Vec<String>> {
        self.change(
            did,
            Some(self.insert_boundaries_sql(1)),
            vec![did.as_str().into(), boundary.into()],
            false,
        )
        .await
    }

    async fn remove_boundary(&self, did: &Did, boundary: &str) -> EnrollmentResult<Vec<String>> {
        self.change(
            did,
            Some(format!(
                "DELETE FROM {}.enrollment_boundary WHERE did = $1 AND boundary = $2",
                self.schema
            )),
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
        if boundaries.is_empty() {
            return self.change(did, None, Vec::new(), true).await;
        }
        let mut values = vec![sea_orm::Value::from(did.to_string())];
        values.extend(boundaries.iter().map(|b| sea_orm::Value::from(b.clone())));
        self.change(
            did,
            Some(self.insert_boundaries_sql(boundaries.len())),
            values,
            true,
        )
        .await
    }

    async fn set_enrollment_rkey(&self, did: &Did, rkey: &str) -> EnrollmentResult<()> {
        let n = self
            .db
            .execute_raw(stmt(
                &format!(
                    "UPDATE {}.enrollment SET enrollment_rkey = $1 WHERE did = $2",
                    self.schema
                ),
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
        let txn = self.db.begin().await.map_err(enr_err)?;
        let n = txn
            .execute_raw(stmt(
                &format!("DELETE FROM {}.enrollment WHERE did = $1", self.schema),
                vec![did.as_str().into()],
            ))
            .await
            .map_err(enr_err)?
            .rows_affected();
        if n > 0 {
            self.append_event(&txn, did.as_str(), EnrollmentAction::Unenroll, &[])
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
                &format!("{} WHERE e.did > $1 ORDER BY e.did LIMIT $2", self.select()),
                vec![
                    cursor.unwrap_or("").into(),
                    i64::try_from(limit).unwrap_or(i64::MAX).into(),
                ],
            ))
            .await
            .map_err(enr_err)?;
        rows.iter()
            .map(to_enrollment)
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
            .query_all_raw(stmt(
                &format!(
                    "SELECT seq, did, action, time, boundaries FROM {}.enrollment_event \
                     WHERE seq > $1 ORDER BY seq LIMIT $2",
                    self.schema
                ),
                vec![
                    i64::try_from(cursor).unwrap_or(i64::MAX).into(),
                    i64::try_from(limit).unwrap_or(i64::MAX).into(),
                ],
            ))
            .await
            .map_err(enr_err)?;
        rows.iter()
            .map(to_event)
            .collect::<Result<_, _>>()
            .map_err(enr_err)
    }

    async fn latest_event_seq(&self) -> EnrollmentResult<u64> {
        let row = self
            .db
            .query_one_raw(stmt(
                &format!(
                    "SELECT COALESCE(MAX(seq), 0)::BIGINT FROM {}.enrollment_event",
                    self.schema
                ),
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
        let s = &self.schema;
        let n = self
            .db
            .execute_raw(stmt(
                &format!(
                    "DELETE FROM {s}.enrollment_event WHERE seq < $1 \
                     AND seq < (SELECT MAX(seq) FROM {s}.enrollment_event)"
                ),
                vec![i64::try_from(before).unwrap_or(i64::MAX).into()],
            ))
            .await
            .map_err(enr_err)?
            .rows_affected();
        Ok(n)
    }
}

/// [`SigningKeyStore`] over the service schema. Key bytes never appear in errors.
#[derive(Clone)]
pub struct PostgresKeyStore {
    pub(crate) db: DatabaseConnection,
    pub(crate) schema: String,
}

impl std::fmt::Debug for PostgresKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresKeyStore").finish_non_exhaustive()
    }
}

fn key_err(e: impl Into<PostgresError>) -> KeyStoreError {
    KeyStoreError::Backend(e.into().to_string())
}

#[async_trait]
impl SigningKeyStore for PostgresKeyStore {
    async fn put(&self, did: &Did, key: &Keypair) -> Result<(), KeyStoreError> {
        let (alg, private) = encode_key(key);
        self.db
            .execute_raw(stmt(
                &format!(
                    "INSERT INTO {}.signing_key (did, alg, key) VALUES ($1, $2, $3) \
                     ON CONFLICT (did) DO UPDATE SET alg = excluded.alg, key = excluded.key",
                    self.schema
                ),
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
                &format!(
                    "SELECT alg, key FROM {}.signing_key WHERE did = $1",
                    self.schema
                ),
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
                &format!("DELETE FROM {}.signing_key WHERE did = $1", self.schema),
                vec![did.as_str().into()],
            ))
            .await
            .map_err(key_err)?;
        Ok(())
    }
}

/// [`OAuthStore`] over the service schema. Values hold tokens: never logged.
#[derive(Clone)]
pub struct PostgresOAuthStore {
    pub(crate) db: DatabaseConnection,
    pub(crate) schema: String,
}

impl std::fmt::Debug for PostgresOAuthStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresOAuthStore").finish_non_exhaustive()
    }
}

fn oauth_err(e: impl Into<PostgresError>) -> OAuthStoreError {
    OAuthStoreError::Backend(e.into().to_string())
}

#[async_trait]
impl OAuthStore for PostgresOAuthStore {
    async fn put_state(
        &self,
        key: &str,
        value: &str,
        expires_at_ms: i64,
    ) -> Result<(), OAuthStoreError> {
        self.db
            .execute_raw(stmt(
                &format!(
                    "INSERT INTO {}.oauth_state (key, value, expires_at_ms) VALUES ($1, $2, $3) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value, \
                     expires_at_ms = excluded.expires_at_ms",
                    self.schema
                ),
                vec![key.into(), value.into(), expires_at_ms.into()],
            ))
            .await
            .map_err(oauth_err)?;
        Ok(())
    }

    async fn take_state(&self, key: &str, now_ms: i64) -> Result<Option<String>, OAuthStoreError> {
        let row = self
            .db
            .query_one_raw(stmt(
                &format!(
                    "DELETE FROM {}.oauth_state WHERE key = $1 RETURNING value, expires_at_ms",
                    self.schema
                ),
                vec![key.into()],
            ))
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
                &format!(
                    "INSERT INTO {}.oauth_session (did, value) VALUES ($1, $2) \
                     ON CONFLICT (did) DO UPDATE SET value = excluded.value",
                    self.schema
                ),
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
                &format!(
                    "SELECT value FROM {}.oauth_session WHERE did = $1",
                    self.schema
                ),
                vec![did.as_str().into()],
            ))
            .await
            .map_err(oauth_err)?;
        row.map(|r| r.text(0)).transpose().map_err(oauth_err)
    }

    async fn delete_session(&self, did: &Did) -> Result<(), OAuthStoreError> {
        self.db
            .execute_raw(stmt(
                &format!("DELETE FROM {}.oauth_session WHERE did = $1", self.schema),
                vec![did.as_str().into()],
            ))
            .await
            .map_err(oauth_err)?;
        Ok(())
    }
}

/// [`Outbox`] over the service schema; commits insert their items in the same transaction.
#[derive(Debug, Clone)]
pub struct PostgresOutbox {
    pub(crate) db: DatabaseConnection,
    pub(crate) schema: String,
}

fn outbox_err(e: impl Into<PostgresError>) -> OutboxError {
    OutboxError::Backend(e.into().to_string())
}

#[async_trait]
impl Outbox for PostgresOutbox {
    async fn enqueue(&self, item: OutboxItem) -> Result<u64, OutboxError> {
        let row = self
            .db
            .query_one_raw(stmt(
                &format!(
                    "INSERT INTO {}.outbox (did, item, due_ms) VALUES ($1, $2, 0) RETURNING id",
                    self.schema
                ),
                vec![item.did.clone().into(), encode_item(&item).into()],
            ))
            .await
            .map_err(outbox_err)?
            .ok_or_else(|| OutboxError::Backend("no id returned".into()))?;
        Ok(u64::try_from(row.int(0).map_err(outbox_err)?).unwrap_or(0))
    }

    async fn claim(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<ClaimedItem>, OutboxError> {
        let s = &self.schema;
        // SKIP LOCKED: concurrent workers (several service instances) never claim the same row.
        let rows = self
            .db
            .query_all_raw(stmt(
                &format!(
                    "UPDATE {s}.outbox SET leased_until = $1 WHERE id IN (SELECT id FROM {s}.outbox \
                     WHERE due_ms <= $2 AND (leased_until IS NULL OR leased_until <= $2) \
                     ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED) RETURNING id, item, attempts::BIGINT"
                ),
                vec![
                    now_ms.saturating_add(lease_ms).into(),
                    now_ms.into(),
                    i64::try_from(limit).unwrap_or(i64::MAX).into(),
                ],
            ))
            .await
            .map_err(outbox_err)?;
        let mut out = rows
            .iter()
            .map(|r| {
                Ok(ClaimedItem {
                    id: u64::try_from(r.int(0)?).unwrap_or(0),
                    item: decode_item(&r.bytes(1)?)?,
                    attempts: u32::try_from(r.int(2)?).unwrap_or(u32::MAX),
                })
            })
            .collect::<Result<Vec<_>, PostgresError>>()
            .map_err(outbox_err)?;
        out.sort_by_key(|c| c.id);
        Ok(out)
    }

    async fn complete(&self, id: u64) -> Result<(), OutboxError> {
        let n = self
            .db
            .execute_raw(stmt(
                &format!("DELETE FROM {}.outbox WHERE id = $1", self.schema),
                vec![i64::try_from(id).unwrap_or(-1).into()],
            ))
            .await
            .map_err(outbox_err)?
            .rows_affected();
        if n == 0 {
            return Err(OutboxError::NotClaimed(id));
        }
        Ok(())
    }

    async fn fail(&self, id: u64, retry_at_ms: i64) -> Result<(), OutboxError> {
        let n = self
            .db
            .execute_raw(stmt(
                &format!(
                    "UPDATE {}.outbox SET attempts = attempts + 1, due_ms = $1, leased_until = NULL \
                     WHERE id = $2",
                    self.schema
                ),
                vec![retry_at_ms.into(), i64::try_from(id).unwrap_or(-1).into()],
            ))
            .await
            .map_err(outbox_err)?
            .rows_affected();
        if n == 0 {
            return Err(OutboxError::NotClaimed(id));
        }
        Ok(())
    }

    async fn pending(&self) -> Result<usize, OutboxError> {
        let row = self
            .db
            .query_one_raw(stmt(
                &format!("SELECT COUNT(*)::BIGINT FROM {}.outbox", self.schema),
                vec![],
            ))
            .await
            .map_err(outbox_err)?;
        let n = match row {
            Some(r) => r.int(0).map_err(outbox_err)?,
            None => 0,
        };
        Ok(usize::try_from(n).unwrap_or(0))
    }

    async fn purge(&self, did: &Did) -> Result<(), OutboxError> {
        self.db
            .execute_raw(stmt(
                &format!("DELETE FROM {}.outbox WHERE did = $1", self.schema),
                vec![did.as_str().into()],
            ))
            .await
            .map_err(outbox_err)?;
        Ok(())
    }
}
