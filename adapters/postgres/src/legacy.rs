//! The TypeScript original's PostgreSQL database, read for `stratos migrate-from-ts`
//! ([`TsPostgresSource`]). Layout (reference `ts-stratos-service.md` §11.2, §11.4–§11.5): the
//! service tables `enrollment("did", "enrolledAt", "pdsEndpoint", "signingKeyDid", "active",
//! "enrollmentRkey")` and `enrollment_boundary("did", "boundary")` in one schema (the
//! connection's default, usually `public`); per account a schema `actor_` + the first 12 hex
//! digits of sha256(did) with `stratos_record`, `stratos_repo_block`, `stratos_blob` and
//! `stratos_signing_key("did", "key")`.
//!
//! Only `SELECT`s run: the original's data is never changed.

use std::time::Duration;

use async_trait::async_trait;
use sea_orm::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sea_orm::sqlx::{self, ConnectOptions as _, PgPool, Row as _};
use stratos_ports::Cause;
use stratos_ports::legacy_source::{LegacyAccount, LegacyRecord, LegacySource, LegacySourceError};

/// A TypeScript original's PostgreSQL database.
#[derive(Debug, Clone)]
pub struct TsPostgresSource {
    pool: PgPool,
    schema: String,
}

fn backend(e: sqlx::Error) -> LegacySourceError {
    LegacySourceError::Backend(Cause::new(e))
}

fn layout(what: &str, e: sqlx::Error) -> LegacySourceError {
    match e {
        sqlx::Error::Database(db) => LegacySourceError::Layout(format!("{what}: {}", db.message())),
        other => backend(other),
    }
}

fn valid_schema(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl TsPostgresSource {
    /// Connects to `url`, reading the service tables from `schema` (the original used the
    /// connection's default schema: `public` unless its URL or role says otherwise).
    pub async fn connect(url: &str, schema: &str) -> Result<Self, LegacySourceError> {
        if !valid_schema(schema) {
            return Err(LegacySourceError::Layout(format!(
                "{schema:?} is not a plain schema name"
            )));
        }
        let options: PgConnectOptions = url.parse().map_err(backend)?;
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.disable_statement_logging())
            .await
            .map_err(backend)?;
        Ok(Self {
            pool,
            schema: schema.to_owned(),
        })
    }

    /// The original's actor schema of `did`: named as this adapter names its own without a
    /// prefix (`actor_` + 12 hex digits of sha256(did), reference §11.4).
    fn actor_schema(did: &str) -> String {
        crate::Schemas {
            prefix: String::new(),
        }
        .actor(did)
    }

    async fn schema_exists(&self, did: &str) -> Result<bool, LegacySourceError> {
        let bare = Self::actor_schema(did).trim_matches('"').to_owned();
        let found: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM pg_namespace WHERE nspname = $1")
                .bind(bare)
                .fetch_optional(&self.pool)
                .await
                .map_err(backend)?;
        Ok(found.is_some())
    }
}

#[async_trait]
impl LegacySource for TsPostgresSource {
    async fn accounts(&self) -> Result<Vec<LegacyAccount>, LegacySourceError> {
        let s = format!("\"{}\"", self.schema);
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT \"did\", \"enrolledAt\", \"pdsEndpoint\", \"signingKeyDid\", \
             \"active\"::text, \"enrollmentRkey\" FROM {s}.\"enrollment\" ORDER BY \"did\""
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| layout("enrollment", e))?;
        let mut accounts = Vec::with_capacity(rows.len());
        for row in rows {
            let get = |i: usize| row.try_get::<Option<String>, _>(i);
            let did: String = row.try_get(0).map_err(|e| layout("enrollment", e))?;
            let active = get(4).map_err(|e| layout("enrollment", e))?;
            accounts.push(LegacyAccount {
                enrolled_at: row.try_get(1).map_err(|e| layout("enrollment", e))?,
                pds_endpoint: get(2).map_err(|e| layout("enrollment", e))?,
                signing_key_did: get(3).map_err(|e| layout("enrollment", e))?,
                active: active.as_deref() != Some("false"),
                enrollment_rkey: get(5).map_err(|e| layout("enrollment", e))?,
                boundaries: Vec::new(),
                signing_key: None,
                did,
            });
        }
        for account in &mut accounts {
            account.boundaries = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT \"boundary\" FROM {s}.\"enrollment_boundary\" WHERE \"did\" = $1 \
                 ORDER BY \"boundary\""
            )))
            .bind(&account.did)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| layout("enrollment_boundary", e))?;
            if self.schema_exists(&account.did).await? {
                account.signing_key = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT \"key\" FROM {}.\"stratos_signing_key\" WHERE \"did\" = $1",
                    Self::actor_schema(&account.did)
                )))
                .bind(&account.did)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| layout("stratos_signing_key", e))?;
            }
        }
        Ok(accounts)
    }

    async fn records(&self, did: &str) -> Result<Vec<LegacyRecord>, LegacySourceError> {
        if !self.schema_exists(did).await? {
            return Ok(Vec::new());
        }
        let a = Self::actor_schema(did);
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT r.\"collection\", r.\"rkey\", r.\"cid\", b.\"content\" FROM \
             {a}.\"stratos_record\" r LEFT JOIN {a}.\"stratos_repo_block\" b ON b.\"cid\" = r.\"cid\" \
             ORDER BY r.\"collection\", r.\"rkey\""
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| layout("stratos_record", e))?;
        rows.iter()
            .map(|row| {
                Ok(LegacyRecord {
                    collection: row.try_get(0)?,
                    rkey: row.try_get(1)?,
                    stored_cid: row.try_get(2)?,
                    content: row.try_get(3)?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(|e| layout("stratos_record", e))
    }

    async fn blob_count(&self, did: &str) -> Result<u64, LegacySourceError> {
        if !self.schema_exists(did).await? {
            return Ok(0);
        }
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM {}.\"stratos_blob\"",
            Self::actor_schema(did)
        )))
        .fetch_one(&self.pool)
        .await
        .map_err(|e| layout("stratos_blob", e))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
