//! Per-actor repositories, one schema per actor.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait, Value};
use stratos_domain::Cid;
use stratos_domain::blocks::BlockMap;
use stratos_domain::boundary::ReadFilter;
use stratos_domain::repo::RepoHead;
use stratos_domain::syntax::{Did, Tid};
use stratos_ports::repo_store::{
    CommitUnit, IndexChange, ListQuery, RepoResult, RepoStore, RepoStoreError, SeqEvent,
    StoredRecord,
};
use stratos_ports::storage_codec::{cid_from_bytes, decode_ops, encode_item, encode_ops};

use crate::{PostgresError, Row, Schemas, params, repo_err, stmt};

/// Rows per multi-row INSERT (PostgreSQL allows 65,535 parameters per statement).
const INSERT_BATCH: usize = 500;

fn actor_ddl(s: &str) -> Vec<String> {
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
}

/// [`RepoStore`] over PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresRepoStore {
    pub(crate) db: DatabaseConnection,
    pub(crate) schemas: Schemas,
    /// Actors known to have a schema (positive answers only; cleared on destroy by this
    /// process). Spares one catalog query per operation.
    pub(crate) known: Arc<Mutex<HashSet<String>>>,
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

fn split(s: &str) -> Vec<String> {
    s.split('\n')
        .filter(|b| !b.is_empty())
        .map(str::to_owned)
        .collect()
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

    async fn require(&self, did: &Did) -> Result<String, PostgresError> {
        if self.exists(did).await? {
            Ok(self.schemas.actor(did.as_str()))
        } else {
            Err(PostgresError::ActorNotFound(did.to_string()))
        }
    }

    fn record_row(
        &self,
        row: &sea_orm::QueryResult,
        collection: &str,
    ) -> Result<StoredRecord, PostgresError> {
        Ok(StoredRecord {
            collection: collection.to_owned(),
            rkey: row.text(0)?,
            cid: cid_from_bytes(&row.bytes(1)?)?,
            boundaries: split(&row.text(2)?),
            bytes: row.bytes(3)?,
        })
    }
}

async fn apply<C: ConnectionTrait>(
    txn: &C,
    s: &str,
    service: &str,
    did: &Did,
    unit: &CommitUnit,
) -> Result<u64, PostgresError> {
    // Compare-and-swap first: the row lock orders concurrent writers, and the loser re-checks
    // the condition after the winner commits.
    let head = vec![
        blob(&unit.head.commit),
        unit.head.rev.to_string().into(),
        blob(&unit.head.data),
    ];
    let swapped = match &unit.prev {
        Some(prev) => {
            let mut values = head;
            values.push(blob(prev));
            txn.execute_raw(stmt(
                &format!(
                    "UPDATE {s}.repo_root SET commit_cid = $1, rev = $2, data_cid = $3 \
                     WHERE id = 1 AND commit_cid = $4"
                ),
                values,
            ))
            .await?
            .rows_affected()
        }
        None => txn
            .execute_raw(stmt(
                &format!(
                    "INSERT INTO {s}.repo_root (id, commit_cid, rev, data_cid) VALUES (1, $1, $2, $3) \
                     ON CONFLICT (id) DO NOTHING"
                ),
                head,
            ))
            .await?
            .rows_affected(),
    };
    if swapped != 1 {
        return Err(PostgresError::Conflict);
    }

    let blocks: Vec<(&Cid, &[u8])> = unit.new_blocks.iter().collect();
    for chunk in blocks.chunks(INSERT_BATCH) {
        let tuples: Vec<String> = (0..chunk.len())
            .map(|i| format!("(${}, ${})", 2 * i + 1, 2 * i + 2))
            .collect();
        let sql = format!(
            "INSERT INTO {s}.block (cid, content) VALUES {} ON CONFLICT (cid) DO NOTHING",
            tuples.join(", ")
        );
        let values = chunk
            .iter()
            .flat_map(|(c, b)| [blob(c), Value::from(b.to_vec())])
            .collect();
        txn.execute_raw(stmt(&sql, values)).await?;
    }
    for chunk in unit.removed_blocks.chunks(INSERT_BATCH) {
        let sql = format!(
            "DELETE FROM {s}.block WHERE cid IN ({})",
            params(1, chunk.len())
        );
        txn.execute_raw(stmt(&sql, chunk.iter().map(blob).collect()))
            .await?;
    }

    let mut puts = Vec::new();
    for change in &unit.index {
        match change {
            IndexChange::Put {
                collection,
                rkey,
                cid,
                boundaries,
            } => {
                if !unit.new_blocks.contains(cid) {
                    let known = txn
                        .query_one_raw(stmt(
                            &format!("SELECT 1 FROM {s}.block WHERE cid = $1"),
                            vec![blob(cid)],
                        ))
                        .await?
                        .is_some();
                    if !known {
                        return Err(PostgresError::IndexMismatch(format!(
                            "record block {cid} is neither new nor stored"
                        )));
                    }
                }
                puts.push(vec![
                    Value::from(collection.clone()),
                    rkey.clone().into(),
                    blob(cid),
                    joined(boundaries),
                ]);
            }
            IndexChange::Delete { collection, rkey } => {
                let n = txn
                    .execute_raw(stmt(
                        &format!("DELETE FROM {s}.record WHERE collection = $1 AND rkey = $2"),
                        vec![collection.clone().into(), rkey.clone().into()],
                    ))
                    .await?
                    .rows_affected();
                if n != 1 {
                    return Err(PostgresError::IndexMismatch(format!(
                        "delete of missing record {collection}/{rkey}"
                    )));
                }
            }
        }
    }
    for chunk in puts.chunks(INSERT_BATCH) {
        let tuples: Vec<String> = (0..chunk.len())
            .map(|i| {
                let b = 4 * i;
                format!(
                    "(${}, ${}, ${}, {BOUNDARIES_IN}(${}, E'\\n'))",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO {s}.record (collection, rkey, cid, boundaries) VALUES {} \
             ON CONFLICT (collection, rkey) DO UPDATE SET cid = excluded.cid, \
             boundaries = excluded.boundaries",
            tuples.join(", ")
        );
        txn.execute_raw(stmt(&sql, chunk.iter().flatten().cloned().collect()))
            .await?;
    }

    let mut seq = 0;
    if let Some(event) = &unit.event {
        let row = txn
            .query_one_raw(stmt(
                &format!(
                    "INSERT INTO {s}.event (rev, commit_cid, time, ops) VALUES ($1, $2, $3, $4) \
                     RETURNING seq"
                ),
                vec![
                    event.rev.clone().into(),
                    blob(&event.commit),
                    event.time.clone().into(),
                    encode_ops(&event.ops).into(),
                ],
            ))
            .await?
            .ok_or_else(|| PostgresError::Corrupt("no sequence number returned".into()))?;
        seq = u64::try_from(row.int(0)?).unwrap_or(0);
    }
    for item in &unit.outbox {
        txn.execute_raw(stmt(
            &format!("INSERT INTO {service}.outbox (did, item, due_ms) VALUES ($1, $2, 0)"),
            vec![did.as_str().into(), encode_item(item).into()],
        ))
        .await?;
    }
    Ok(seq)
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
            .db
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
                .db
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
        let service = self.schemas.service();
        let txn = self.db.begin().await.map_err(db_err)?;
        match apply(&txn, &s, &service, did, &unit).await {
            Ok(seq) => {
                txn.commit().await.map_err(db_err)?;
                Ok(seq)
            }
            Err(e) => {
                txn.rollback().await.map_err(db_err)?;
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
        collection: &str,
        rkey: &str,
    ) -> RepoResult<Option<StoredRecord>> {
        let s = self.require(did).await.map_err(repo_err)?;
        let row = self
            .db
            .query_one_raw(stmt(
                &format!(
                    "SELECT r.rkey, r.cid, array_to_string(r.boundaries, E'\\n'), b.content \
                     FROM {s}.record r JOIN {s}.block b ON b.cid = r.cid \
                     WHERE r.collection = $1 AND r.rkey = $2"
                ),
                vec![collection.into(), rkey.into()],
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
        let mut values: Vec<Value> = vec![query.collection.clone().into()];
        if let Some(cursor) = &query.cursor {
            values.push(cursor.clone().into());
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
            .db
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
            .db
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
            Ok(SeqEvent {
                seq: u64::try_from(row.int(0)?).unwrap_or(0),
                rev: row.text(1)?,
                commit: cid_from_bytes(&row.bytes(2)?)?,
                time: row.text(3)?,
                ops: decode_ops(&row.bytes(4)?)?,
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
            .db
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
            .db
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
}
