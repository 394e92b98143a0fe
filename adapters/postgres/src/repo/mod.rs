//! Per-actor repositories, one schema per actor: the [`RepoStore`] implementation and its reads
//! here, the commit transaction in `commit`, the schema's DDL in `schema`.

mod commit;
mod schema;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use sea_orm::sqlx::postgres::PgArguments;
use sea_orm::sqlx::{self, AssertSqlSafe, Postgres};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbErr, ExecResult, QueryResult, Statement,
    TransactionTrait, Value,
};
use stratos_domain::Cid;
use stratos_domain::blocks::BlockMap;
use stratos_domain::boundary::ReadFilter;
use stratos_domain::repo::RepoHead;
use stratos_domain::syntax::{Did, Nsid, RecordKey, Tid};
use stratos_ports::repo_store::{
    BlobListQuery, BlobReference, CommitUnit, ListQuery, ReleasedBlob, RepoResult, RepoStore,
    RepoStoreError, SeqEvent, StoredBlob, StoredRecord,
};
use stratos_ports::storage_codec::{cid_from_bytes, decode_event_body, parse, split_boundaries};

use crate::{PostgresError, Row, Schemas, params, repo_err, sqlx_err, stmt};

pub(crate) use commit::CommitSql;
use commit::{Tx, apply};
use schema::actor_ddl;
pub(crate) use schema::upgrade_actor_schemas;

/// Rows per multi-row INSERT (PostgreSQL allows 65,535 parameters per statement).
const INSERT_BATCH: usize = 500;

/// Statements naming an actor's schema outside a transaction (reads and single-statement
/// writes): their text differs per actor, so they run as unnamed statements, which never enter
/// the connection's statement cache and so never evict the commit's constant statements (with a
/// few hundred actors the cache would otherwise turn over on every operation: a `Parse`, and a
/// `Close` for the evicted entry, each one more round trip).
struct OneOff<'a>(&'a sqlx::PgPool);

impl OneOff<'_> {
    fn query(statement: &Statement) -> Result<OneOffQuery, DbErr> {
        let mut query = sqlx::query(AssertSqlSafe(statement.sql.clone())).persistent(false);
        for value in statement.values.iter().flat_map(|v| v.0.iter()) {
            query = match value {
                Value::Bytes(b) => query.bind(b.clone()),
                Value::String(s) => query.bind(s.clone()),
                Value::BigInt(i) => query.bind(*i),
                Value::Int(i) => query.bind(*i),
                Value::Bool(b) => query.bind(*b),
                other => {
                    return Err(DbErr::Custom(format!(
                        "unsupported parameter type {other:?}"
                    )));
                }
            };
        }
        Ok(query)
    }

    async fn query_one_raw(&self, statement: Statement) -> Result<Option<QueryResult>, DbErr> {
        Ok(Self::query(&statement)?
            .fetch_optional(self.0)
            .await
            .map_err(sqlx_err)?
            .map(QueryResult::from))
    }

    async fn query_all_raw(&self, statement: Statement) -> Result<Vec<QueryResult>, DbErr> {
        Ok(Self::query(&statement)?
            .fetch_all(self.0)
            .await
            .map_err(sqlx_err)?
            .into_iter()
            .map(QueryResult::from)
            .collect())
    }

    async fn execute_raw(&self, statement: Statement) -> Result<ExecResult, DbErr> {
        Ok(Self::query(&statement)?
            .execute(self.0)
            .await
            .map_err(sqlx_err)?
            .into())
    }
}

type OneOffQuery = sqlx::query::Query<'static, Postgres, PgArguments>;

/// [`RepoStore`] over PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresRepoStore {
    pub(crate) db: DatabaseConnection,
    /// The same pool as `db`, for the commit transaction (sqlx directly: a custom `BEGIN` and
    /// array parameters).
    pub(crate) pool: sqlx::PgPool,
    pub(crate) schemas: Schemas,
    /// Actors known to have a schema (positive answers only; cleared on destroy by this
    /// process). Spares one catalog query per operation.
    pub(crate) known: Arc<Mutex<HashSet<String>>>,
    /// The commit statements that name the service schema.
    pub(crate) commit_sql: CommitSql,
}

fn blob(cid: &Cid) -> Value {
    Value::from(cid.to_bytes())
}

fn db_err(e: sea_orm::DbErr) -> RepoStoreError {
    repo_err(e.into())
}

/// Boundaries travel as one `\n`-joined text (boundaries contain no whitespace) and become a
/// `TEXT[]` in SQL.
fn joined(boundaries: &[String]) -> Value {
    Value::from(boundaries.join("\n"))
}

const BOUNDARIES_IN: &str = "string_to_array";

impl PostgresRepoStore {
    fn known(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn exists(&self, did: &Did) -> Result<bool, PostgresError> {
        if self.known().contains(did.as_str()) {
            return Ok(true);
        }
        let found = self
            .db
            .query_one_raw(stmt(
                "SELECT 1 FROM pg_namespace WHERE nspname = $1",
                vec![self.schemas.actor_bare(did.as_str()).into()],
            ))
            .await?
            .is_some();
        if found {
            self.known().insert(did.to_string());
        }
        Ok(found)
    }

    fn one_off(&self) -> OneOff<'_> {
        OneOff(&self.pool)
    }

    /// Opens a transaction scoped to the actor's schema: `BEGIN` and `SET LOCAL search_path` go
    /// in one round trip (one simple query), and the path reverts at commit or rollback, so the
    /// pooled connection carries nothing over. `schema` is one of [`Schemas::actor`]'s quoted
    /// names (validated prefix and hex digits only). PostgreSQL re-plans a cached statement
    /// when `search_path` differs from its last use, so a plan never resolves to another
    /// actor's tables.
    async fn begin(&self, schema: &str) -> Result<Tx, PostgresError> {
        Ok(self
            .pool
            .begin_with(AssertSqlSafe(format!(
                "BEGIN; SET LOCAL search_path TO {schema}"
            )))
            .await?)
    }

    async fn require(&self, did: &Did) -> Result<String, PostgresError> {
        if self.exists(did).await? {
            Ok(self.schemas.actor(did.as_str()))
        } else {
            Err(PostgresError::ActorNotFound(did.clone()))
        }
    }

    fn record_row(
        &self,
        row: &sea_orm::QueryResult,
        collection: &Nsid,
    ) -> Result<StoredRecord, PostgresError> {
        Ok(StoredRecord {
            collection: collection.clone(),
            rkey: parse(&row.text(0)?, "record key")?,
            cid: cid_from_bytes(&row.bytes(1)?)?,
            boundaries: split_boundaries(&row.text(2)?)?,
            bytes: row.bytes(3)?,
        })
    }
}

const BLOB_COLUMNS: &str = "cid, mime_type, size, temp_key, created_ms";

fn blob_row(row: &sea_orm::QueryResult) -> Result<StoredBlob, PostgresError> {
    Ok(StoredBlob {
        cid: stratos_domain::cid::parse(&row.text(0)?)
            .map_err(|e| PostgresError::Corrupt(e.to_string()))?,
        mime_type: row.text(1)?,
        size: u64::try_from(row.int(2)?).map_err(|_| PostgresError::Corrupt("blob size".into()))?,
        temp_key: row.opt_text(3)?,
        created_ms: row.int(4)?,
    })
}

#[async_trait]
impl RepoStore for PostgresRepoStore {
    async fn create_actor(&self, did: &Did) -> RepoResult<()> {
        let s = self.schemas.actor(did.as_str());
        let txn = self.db.begin().await.map_err(db_err)?;
        for sql in actor_ddl(&s) {
            txn.execute_unprepared(&sql).await.map_err(db_err)?;
        }
        txn.commit().await.map_err(db_err)
    }

    async fn destroy_actor(&self, did: &Did) -> RepoResult<()> {
        let s = self.schemas.actor(did.as_str());
        let service = self.schemas.service();
        let txn = self.db.begin().await.map_err(db_err)?;
        txn.execute_unprepared(&format!("DROP SCHEMA IF EXISTS {s} CASCADE"))
            .await
            .map_err(db_err)?;
        txn.execute_raw(stmt(
            &format!("DELETE FROM {service}.outbox WHERE did = $1"),
            vec![did.as_str().into()],
        ))
        .await
        .map_err(db_err)?;
        txn.commit().await.map_err(db_err)?;
        self.known().remove(did.as_str());
        Ok(())
    }

    async fn actor_exists(&self, did: &Did) -> RepoResult<bool> {
        self.exists(did).await.map_err(repo_err)
    }

    async fn head(&self, did: &Did) -> RepoResult<Option<RepoHead>> {
        let s = self.require(did).await.map_err(repo_err)?;
        let row = self
            .one_off()
            .query_one_raw(stmt(
                &format!("SELECT commit_cid, rev, data_cid FROM {s}.repo_root WHERE id = 1"),
                vec![],
            ))
            .await
            .map_err(db_err)?;
        let Some(row) = row else { return Ok(None) };
        let parse = || -> Result<RepoHead, PostgresError> {
            Ok(RepoHead {
                commit: cid_from_bytes(&row.bytes(0)?)?,
                rev: Tid::parse(&row.text(1)?)
                    .map_err(|_| PostgresError::Corrupt("stored rev".into()))?,
                data: cid_from_bytes(&row.bytes(2)?)?,
            })
        };
        parse().map(Some).map_err(repo_err)
    }

    async fn get_blocks(&self, did: &Did, cids: &[Cid]) -> RepoResult<BlockMap> {
        let s = self.require(did).await.map_err(repo_err)?;
        let mut out = BlockMap::new();
        for chunk in cids.chunks(INSERT_BATCH) {
            let rows = self
                .one_off()
                .query_all_raw(stmt(
                    &format!(
                        "SELECT cid, content FROM {s}.block WHERE cid IN ({})",
                        params(1, chunk.len())
                    ),
                    chunk.iter().map(blob).collect(),
                ))
                .await
                .map_err(db_err)?;
            for row in rows {
                let cid = cid_from_bytes(&row.bytes(0).map_err(db_err)?)
                    .map_err(|e| repo_err(e.into()))?;
                out.insert(cid, row.bytes(1).map_err(db_err)?);
            }
        }
        Ok(out)
    }

    async fn apply_commit(&self, did: &Did, unit: CommitUnit) -> RepoResult<u64> {
        let s = self.require(did).await.map_err(repo_err)?;
        let mut tx = self.begin(&s).await.map_err(repo_err)?;
        match apply(&mut tx, &self.commit_sql, did, &unit).await {
            Ok(seq) => {
                tx.commit()
                    .await
                    .map_err(|e| repo_err(PostgresError::from(e)))?;
                Ok(seq)
            }
            Err(e) => {
                tx.rollback()
                    .await
                    .map_err(|e| repo_err(PostgresError::from(e)))?;
                Err(match e {
                    PostgresError::Conflict => RepoStoreError::Conflict(did.to_string()),
                    other => repo_err(other),
                })
            }
        }
    }

    async fn get_record(
        &self,
        did: &Did,
        collection: &Nsid,
        rkey: &RecordKey,
    ) -> RepoResult<Option<StoredRecord>> {
        let s = self.require(did).await.map_err(repo_err)?;
        let row = self
            .one_off()
            .query_one_raw(stmt(
                &format!(
                    "SELECT r.rkey, r.cid, array_to_string(r.boundaries, E'\\n'), b.content \
                     FROM {s}.record r JOIN {s}.block b ON b.cid = r.cid \
                     WHERE r.collection = $1 AND r.rkey = $2"
                ),
                vec![collection.as_str().into(), rkey.as_str().into()],
            ))
            .await
            .map_err(db_err)?;
        row.map(|r| self.record_row(&r, collection))
            .transpose()
            .map_err(repo_err)
    }

    async fn list_records(&self, did: &Did, query: &ListQuery) -> RepoResult<Vec<StoredRecord>> {
        let s = self.require(did).await.map_err(repo_err)?;
        let mut sql = format!(
            "SELECT r.rkey, r.cid, array_to_string(r.boundaries, E'\\n'), b.content \
             FROM {s}.record r JOIN {s}.block b ON b.cid = r.cid WHERE r.collection = $1"
        );
        let mut values: Vec<Value> = vec![query.collection.as_str().into()];
        if let Some(cursor) = &query.cursor {
            values.push(cursor.as_str().into());
            sql.push_str(&format!(
                " AND r.rkey {} ${}",
                if query.reverse { ">" } else { "<" },
                values.len()
            ));
        }
        match &query.filter {
            ReadFilter::All => {}
            ReadFilter::Nothing => return Ok(Vec::new()),
            ReadFilter::AnyOf(set) => {
                if set.is_empty() {
                    return Ok(Vec::new());
                }
                values.push(joined(set));
                sql.push_str(&format!(
                    " AND r.boundaries && {BOUNDARIES_IN}(${}, E'\\n')",
                    values.len()
                ));
            }
        }
        values.push(i64::try_from(query.limit).unwrap_or(i64::MAX).into());
        sql.push_str(&format!(
            " ORDER BY r.rkey {} LIMIT ${}",
            if query.reverse { "ASC" } else { "DESC" },
            values.len()
        ));
        let rows = self
            .one_off()
            .query_all_raw(stmt(&sql, values))
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|r| self.record_row(r, &query.collection))
            .collect::<Result<_, _>>()
            .map_err(repo_err)
    }

    async fn events_after(
        &self,
        did: &Did,
        cursor: u64,
        limit: usize,
    ) -> RepoResult<Vec<SeqEvent>> {
        let s = self.require(did).await.map_err(repo_err)?;
        let rows = self
            .one_off()
            .query_all_raw(stmt(
                &format!(
                    "SELECT seq, rev, commit_cid, time, ops FROM {s}.event WHERE seq > $1 \
                     ORDER BY seq LIMIT $2"
                ),
                vec![
                    i64::try_from(cursor).unwrap_or(i64::MAX).into(),
                    i64::try_from(limit).unwrap_or(i64::MAX).into(),
                ],
            ))
            .await
            .map_err(db_err)?;
        let parse = |row: &sea_orm::QueryResult| -> Result<SeqEvent, PostgresError> {
            let (ops, proof) = decode_event_body(&row.bytes(4)?)?;
            Ok(SeqEvent {
                seq: u64::try_from(row.int(0)?).unwrap_or(0),
                rev: parse(&row.text(1)?, "event rev")?,
                commit: cid_from_bytes(&row.bytes(2)?)?,
                time: parse(&row.text(3)?, "event time")?,
                ops,
                proof,
            })
        };
        rows.iter()
            .map(parse)
            .collect::<Result<_, _>>()
            .map_err(repo_err)
    }

    async fn latest_seq(&self, did: &Did) -> RepoResult<u64> {
        let s = self.require(did).await.map_err(repo_err)?;
        let row = self
            .one_off()
            .query_one_raw(stmt(
                &format!("SELECT COALESCE(MAX(seq), 0)::BIGINT FROM {s}.event"),
                vec![],
            ))
            .await
            .map_err(db_err)?;
        let seq = match row {
            Some(r) => r.int(0).map_err(db_err)?,
            None => 0,
        };
        Ok(u64::try_from(seq).unwrap_or(0))
    }

    async fn all_blocks(&self, did: &Did) -> RepoResult<BlockMap> {
        let s = self.require(did).await.map_err(repo_err)?;
        let rows = self
            .one_off()
            .query_all_raw(stmt(
                &format!("SELECT cid, content FROM {s}.block ORDER BY id"),
                vec![],
            ))
            .await
            .map_err(db_err)?;
        let mut out = BlockMap::new();
        for row in rows {
            let cid =
                cid_from_bytes(&row.bytes(0).map_err(db_err)?).map_err(|e| repo_err(e.into()))?;
            out.insert(cid, row.bytes(1).map_err(db_err)?);
        }
        Ok(out)
    }

    async fn track_blob(&self, did: &Did, upload: StoredBlob) -> RepoResult<Option<StoredBlob>> {
        let s = self.require(did).await.map_err(repo_err)?;
        // One statement: insert, or revive a released row; a live row stays as it is.
        let inserted = self
            .one_off()
            .execute_raw(stmt(
                &format!(
                    "INSERT INTO {s}.blob AS b ({BLOB_COLUMNS}, released) \
                     VALUES ($1, $2, $3, $4, $5, FALSE) \
                     ON CONFLICT (cid) DO UPDATE SET mime_type = excluded.mime_type, \
                     size = excluded.size, temp_key = excluded.temp_key, \
                     created_ms = excluded.created_ms, released = FALSE WHERE b.released"
                ),
                vec![
                    upload.cid.to_string().into(),
                    upload.mime_type.clone().into(),
                    i64::try_from(upload.size).unwrap_or(i64::MAX).into(),
                    upload.temp_key.clone().into(),
                    upload.created_ms.into(),
                ],
            ))
            .await
            .map_err(db_err)?
            .rows_affected();
        if inserted == 1 {
            return Ok(None);
        }
        self.blob(did, &upload.cid).await
    }

    async fn blob(&self, did: &Did, cid: &Cid) -> RepoResult<Option<StoredBlob>> {
        let s = self.require(did).await.map_err(repo_err)?;
        let row = self
            .one_off()
            .query_one_raw(stmt(
                &format!("SELECT {BLOB_COLUMNS} FROM {s}.blob WHERE cid = $1 AND NOT released"),
                vec![cid.to_string().into()],
            ))
            .await
            .map_err(db_err)?;
        row.map(|r| blob_row(&r)).transpose().map_err(repo_err)
    }

    async fn records_referencing_blob(
        &self,
        did: &Did,
        cid: &Cid,
    ) -> RepoResult<Vec<BlobReference>> {
        let s = self.require(did).await.map_err(repo_err)?;
        let rows = self
            .one_off()
            .query_all_raw(stmt(
                &format!(
                    "SELECT rb.collection, rb.rkey, array_to_string(r.boundaries, E'\\n') \
                     FROM {s}.record_blob rb JOIN {s}.record r \
                     ON r.collection = rb.collection AND r.rkey = rb.rkey \
                     WHERE rb.cid = $1 ORDER BY rb.collection, rb.rkey"
                ),
                vec![cid.to_string().into()],
            ))
            .await
            .map_err(db_err)?;
        let parse = |row: &sea_orm::QueryResult| -> Result<BlobReference, PostgresError> {
            Ok(BlobReference {
                collection: parse(&row.text(0)?, "collection")?,
                rkey: parse(&row.text(1)?, "record key")?,
                boundaries: split_boundaries(&row.text(2)?)?,
            })
        };
        rows.iter()
            .map(parse)
            .collect::<Result<_, _>>()
            .map_err(repo_err)
    }

    async fn list_blobs(&self, did: &Did, query: &BlobListQuery) -> RepoResult<Vec<Cid>> {
        let s = self.require(did).await.map_err(repo_err)?;
        let mut sql = format!("SELECT DISTINCT rb.cid FROM {s}.record_blob rb WHERE TRUE");
        let mut values: Vec<Value> = Vec::new();
        if let Some(cursor) = &query.cursor {
            values.push(cursor.clone().into());
            sql.push_str(&format!(" AND rb.cid > ${}", values.len()));
        }
        if let Some(since) = &query.since {
            values.push(since.as_str().into());
            sql.push_str(&format!(" AND rb.rev > ${}", values.len()));
        }
        match &query.filter {
            ReadFilter::All => {}
            ReadFilter::Nothing => return Ok(Vec::new()),
            ReadFilter::AnyOf(set) => {
                if set.is_empty() {
                    return Ok(Vec::new());
                }
                values.push(joined(set));
                sql.push_str(&format!(
                    " AND EXISTS (SELECT 1 FROM {s}.record r WHERE r.collection = rb.collection \
                     AND r.rkey = rb.rkey AND r.boundaries && {BOUNDARIES_IN}(${}, E'\\n'))",
                    values.len()
                ));
            }
        }
        values.push(i64::try_from(query.limit).unwrap_or(i64::MAX).into());
        sql.push_str(&format!(" ORDER BY rb.cid ASC LIMIT ${}", values.len()));
        let rows = self
            .one_off()
            .query_all_raw(stmt(&sql, values))
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                let text = r.text(0).map_err(db_err)?;
                stratos_domain::cid::parse(&text)
                    .map_err(|e| RepoStoreError::Corrupt(e.to_string()))
            })
            .collect()
    }

    async fn release_blobs(
        &self,
        did: &Did,
        uploads_before_ms: i64,
    ) -> RepoResult<Vec<ReleasedBlob>> {
        let s = self.require(did).await.map_err(repo_err)?;
        // One statement, so a blob is handed out once even with concurrent callers.
        let rows = self
            .one_off()
            .query_all_raw(stmt(
                &format!(
                    "DELETE FROM {s}.blob WHERE released \
                     OR (temp_key IS NOT NULL AND created_ms < $1) RETURNING cid, temp_key"
                ),
                vec![uploads_before_ms.into()],
            ))
            .await
            .map_err(db_err)?;
        let parse = |row: &sea_orm::QueryResult| -> Result<ReleasedBlob, PostgresError> {
            Ok(ReleasedBlob {
                cid: stratos_domain::cid::parse(&row.text(0)?)
                    .map_err(|e| PostgresError::Corrupt(e.to_string()))?,
                temp_key: row.opt_text(1)?,
            })
        };
        rows.iter()
            .map(parse)
            .collect::<Result<_, _>>()
            .map_err(repo_err)
    }
}
