//! Per-actor repositories, one schema per actor.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use sea_orm::sqlx::postgres::PgArguments;
use sea_orm::sqlx::{self, AssertSqlSafe, Postgres, Row as _};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbErr, ExecResult, QueryResult, Statement,
    TransactionTrait, Value,
};
use stratos_domain::Cid;
use stratos_domain::blocks::BlockMap;
use stratos_domain::boundary::ReadFilter;
use stratos_domain::repo::RepoHead;
use stratos_domain::syntax::{Did, Tid};
use stratos_ports::repo_store::{
    BlobListQuery, BlobReference, CommitUnit, IndexChange, ListQuery, ReleasedBlob, RepoResult,
    RepoStore, RepoStoreError, SeqEvent, StoredBlob, StoredRecord,
};
use stratos_ports::storage_codec::{cid_from_bytes, decode_ops, encode_item, encode_ops};

use crate::{PostgresError, Row, Schemas, params, repo_err, sqlx_err, stmt};

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

/// Adds the blob tables to actor schemas created before blob tracking (run at connect).
pub(crate) async fn upgrade_actor_schemas(
    db: &DatabaseConnection,
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
        let txn = db.begin().await?;
        for sql in blob_ddl(&format!("\"{name}\"")) {
            txn.execute_unprepared(&sql).await?;
        }
        txn.commit().await?;
    }
    Ok(())
}

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

/// The commit statements that name the service schema (fixed per deployment, so their text is
/// constant too).
#[derive(Debug, Clone)]
pub(crate) struct CommitSql {
    /// The outbox insert: one row per item, in order.
    outbox: Arc<str>,
    /// A plain unit in one statement ([`apply_plain`]).
    plain: Arc<str>,
}

impl CommitSql {
    pub(crate) fn new(service: &str) -> Self {
        let outbox = format!(
            "INSERT INTO {service}.outbox (did, item, due_ms) \
             SELECT $1, i.item, 0 FROM unnest($2::bytea[]) WITH ORDINALITY AS i(item, n) \
             ORDER BY i.n"
        );
        let plain = format!(
            "WITH root AS (UPDATE repo_root SET commit_cid = $1, rev = $2, data_cid = $3 \
             WHERE id = 1 AND commit_cid = $4 RETURNING 1), \
             blocks AS (INSERT INTO block (cid, content) SELECT n.cid, n.content \
             FROM unnest($5::bytea[], $6::bytea[]) AS n(cid, content) \
             WHERE EXISTS (SELECT 1 FROM root) ON CONFLICT (cid) DO NOTHING), \
             removed AS (DELETE FROM block WHERE cid = ANY($7::bytea[]) \
             AND EXISTS (SELECT 1 FROM root)), \
             records AS (INSERT INTO record (collection, rkey, cid, boundaries) \
             SELECT p.collection, p.rkey, p.cid, string_to_array(p.boundaries, E'\\n') \
             FROM unnest($8::text[], $9::text[], $10::bytea[], $11::text[]) \
             AS p(collection, rkey, cid, boundaries) WHERE EXISTS (SELECT 1 FROM root) \
             ON CONFLICT (collection, rkey) DO UPDATE SET cid = excluded.cid, \
             boundaries = excluded.boundaries), \
             event AS (INSERT INTO event (rev, commit_cid, time, ops) \
             SELECT $12::text, $13::bytea, $14::text, $15::bytea \
             WHERE EXISTS (SELECT 1 FROM root) RETURNING seq), \
             outbox AS (INSERT INTO {service}.outbox (did, item, due_ms) \
             SELECT $16::text, i.item, 0 FROM unnest($17::bytea[]) WITH ORDINALITY AS i(item, n) \
             WHERE EXISTS (SELECT 1 FROM root) ORDER BY i.n) \
             SELECT (SELECT count(*) FROM root), COALESCE((SELECT seq FROM event), 0)"
        );
        Self {
            outbox: outbox.into(),
            plain: plain.into(),
        }
    }
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

/// The actor transaction's connection: every statement in it names tables unqualified, resolved
/// through the transaction's `search_path` (see [`PostgresRepoStore::begin`]).
type Tx = sqlx::Transaction<'static, Postgres>;

/// A statement of constant text (no schema name in it), so the connection's prepared-statement
/// cache holds one entry per statement kind whatever the number of actors. Variable-length
/// inputs travel as arrays (`unnest`, `= ANY`), never as a variable number of placeholders.
fn q(sql: &'static str) -> sqlx::query::Query<'static, Postgres, PgArguments> {
    sqlx::query(sql)
}

fn cid_bytes<'a>(cids: impl IntoIterator<Item = &'a Cid>) -> Vec<Vec<u8>> {
    cids.into_iter().map(Cid::to_bytes).collect()
}

async fn apply(
    tx: &mut Tx,
    sql: &CommitSql,
    did: &Did,
    unit: &CommitUnit,
) -> Result<u64, PostgresError> {
    let rev = unit.head.rev.to_string();
    if let Some(prev) = &unit.prev
        && let Some(event) = &unit.event
        && unit.only_creates_new_records()
    {
        return apply_plain(tx, sql, did, unit, prev, event, &rev).await;
    }
    // Compare-and-swap first: the row lock orders concurrent writers, and the loser re-checks
    // the condition after the winner commits.
    let swapped = match &unit.prev {
        Some(prev) => q(
            "UPDATE repo_root SET commit_cid = $1, rev = $2, data_cid = $3 \
                         WHERE id = 1 AND commit_cid = $4",
        )
        .bind(unit.head.commit.to_bytes())
        .bind(&rev)
        .bind(unit.head.data.to_bytes())
        .bind(prev.to_bytes()),
        None => q(
            "INSERT INTO repo_root (id, commit_cid, rev, data_cid) VALUES (1, $1, $2, $3) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(unit.head.commit.to_bytes())
        .bind(&rev)
        .bind(unit.head.data.to_bytes()),
    }
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if swapped != 1 {
        return Err(PostgresError::Conflict);
    }

    if !unit.new_blocks.is_empty() {
        let (cids, contents): (Vec<Vec<u8>>, Vec<&[u8]>) = unit
            .new_blocks
            .iter()
            .map(|(c, b)| (c.to_bytes(), b))
            .unzip();
        q(
            "INSERT INTO block (cid, content) SELECT * FROM unnest($1::bytea[], $2::bytea[]) \
           ON CONFLICT (cid) DO NOTHING",
        )
        .bind(cids)
        .bind(contents)
        .execute(&mut **tx)
        .await?;
    }
    if !unit.removed_blocks.is_empty() {
        q("DELETE FROM block WHERE cid = ANY($1::bytea[])")
            .bind(cid_bytes(&unit.removed_blocks))
            .execute(&mut **tx)
            .await?;
    }

    let mut puts = Puts::default();
    let mut deletes: Vec<(&str, &str)> = Vec::new();
    for change in &unit.index {
        match change {
            IndexChange::Put {
                collection,
                rkey,
                cid,
                boundaries,
                ..
            } => {
                if !unit.new_blocks.contains(cid) {
                    let known = q("SELECT 1 FROM block WHERE cid = $1")
                        .bind(cid.to_bytes())
                        .fetch_optional(&mut **tx)
                        .await?
                        .is_some();
                    if !known {
                        return Err(PostgresError::IndexMismatch(format!(
                            "record block {cid} is neither new nor stored"
                        )));
                    }
                }
                puts.collections.push(collection);
                puts.rkeys.push(rkey);
                puts.cids.push(cid.to_bytes());
                puts.boundaries.push(boundaries.join("\n"));
            }
            IndexChange::Delete { collection, rkey } => deletes.push((collection, rkey)),
        }
    }
    if !deletes.is_empty() {
        let (collections, rkeys): (Vec<&str>, Vec<&str>) = deletes.iter().copied().unzip();
        let gone: HashSet<(String, String)> = q("DELETE FROM record r \
             USING unnest($1::text[], $2::text[]) AS d(collection, rkey) \
             WHERE r.collection = d.collection AND r.rkey = d.rkey \
             RETURNING r.collection, r.rkey")
        .bind(collections)
        .bind(rkeys)
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect::<Result<_, sqlx::Error>>()?;
        if let Some((collection, rkey)) = deletes
            .iter()
            .find(|(c, r)| !gone.contains(&((*c).to_owned(), (*r).to_owned())))
        {
            return Err(PostgresError::IndexMismatch(format!(
                "delete of missing record {collection}/{rkey}"
            )));
        }
    }
    if !puts.cids.is_empty() {
        q("INSERT INTO record (collection, rkey, cid, boundaries) \
           SELECT p.collection, p.rkey, p.cid, string_to_array(p.boundaries, E'\\n') \
           FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[]) \
           AS p(collection, rkey, cid, boundaries) \
           ON CONFLICT (collection, rkey) DO UPDATE SET cid = excluded.cid, \
           boundaries = excluded.boundaries")
        .bind(puts.collections)
        .bind(puts.rkeys)
        .bind(puts.cids)
        .bind(puts.boundaries)
        .execute(&mut **tx)
        .await?;
    }
    apply_blob_links(tx, unit, &rev).await?;

    let mut seq = 0;
    if let Some(event) = &unit.event {
        let row = q(
            "INSERT INTO event (rev, commit_cid, time, ops) VALUES ($1, $2, $3, $4) \
                     RETURNING seq",
        )
        .bind(&event.rev)
        .bind(event.commit.to_bytes())
        .bind(&event.time)
        .bind(encode_ops(&event.ops))
        .fetch_one(&mut **tx)
        .await?;
        seq = u64::try_from(row.try_get::<i64, _>(0)?).unwrap_or(0);
    }
    if !unit.outbox.is_empty() {
        let items: Vec<Vec<u8>> = unit.outbox.iter().map(encode_item).collect();
        sqlx::query(AssertSqlSafe(sql.outbox.clone()))
            .bind(did.as_str())
            .bind(items)
            .execute(&mut **tx)
            .await?;
    }
    Ok(seq)
}

/// A plain unit ([`CommitUnit::only_creates_new_records`]) in one statement: the compare-and-swap on the root, the blocks,
/// the record rows, the event and the outbox rows, each part gated on the swap (`EXISTS (SELECT
/// 1 FROM root)`), so a lost swap writes nothing and reports zero swapped rows. The same work
/// as the general path, in one round trip instead of one per part.
async fn apply_plain(
    tx: &mut Tx,
    sql: &CommitSql,
    did: &Did,
    unit: &CommitUnit,
    prev: &Cid,
    event: &SeqEvent,
    rev: &str,
) -> Result<u64, PostgresError> {
    let (cids, contents): (Vec<Vec<u8>>, Vec<&[u8]>) = unit
        .new_blocks
        .iter()
        .map(|(c, b)| (c.to_bytes(), b))
        .unzip();
    let mut puts = Puts::default();
    for change in &unit.index {
        if let IndexChange::Put {
            collection,
            rkey,
            cid,
            boundaries,
            ..
        } = change
        {
            puts.collections.push(collection);
            puts.rkeys.push(rkey);
            puts.cids.push(cid.to_bytes());
            puts.boundaries.push(boundaries.join("\n"));
        }
    }
    let items: Vec<Vec<u8>> = unit.outbox.iter().map(encode_item).collect();
    let row = sqlx::query(AssertSqlSafe(sql.plain.clone()))
        .bind(unit.head.commit.to_bytes())
        .bind(rev)
        .bind(unit.head.data.to_bytes())
        .bind(prev.to_bytes())
        .bind(cids)
        .bind(contents)
        .bind(cid_bytes(&unit.removed_blocks))
        .bind(puts.collections)
        .bind(puts.rkeys)
        .bind(puts.cids)
        .bind(puts.boundaries)
        .bind(&event.rev)
        .bind(event.commit.to_bytes())
        .bind(&event.time)
        .bind(encode_ops(&event.ops))
        .bind(did.as_str())
        .bind(items)
        .fetch_one(&mut **tx)
        .await?;
    if row.try_get::<i64, _>(0)? != 1 {
        return Err(PostgresError::Conflict);
    }
    let seq: i64 = row.try_get(1)?;
    Ok(u64::try_from(seq).unwrap_or(0))
}

/// The record rows a unit puts, column by column (one array parameter each).
#[derive(Default)]
struct Puts<'a> {
    collections: Vec<&'a str>,
    rkeys: Vec<&'a str>,
    cids: Vec<Vec<u8>>,
    boundaries: Vec<String>,
}

/// The blob side of a unit: the links of updated and deleted paths go, the puts' links come, the
/// puts' blobs become permanent (each must be tracked and live, or nothing of the unit applies),
/// and a blob whose last link went is released. A unit of creates without blobs runs no
/// statement here.
async fn apply_blob_links(tx: &mut Tx, unit: &CommitUnit, rev: &str) -> Result<(), PostgresError> {
    // Created paths have no links yet (without an event every touched path is cleared).
    let created = unit.created_paths();
    let mut stale: (Vec<&str>, Vec<&str>) = (Vec::new(), Vec::new());
    let mut wanted = BTreeSet::new();
    let mut links: (Vec<String>, Vec<&str>, Vec<&str>) = (Vec::new(), Vec::new(), Vec::new());
    for change in &unit.index {
        let (collection, rkey) = match change {
            IndexChange::Put {
                collection,
                rkey,
                blobs,
                ..
            } => {
                for cid in blobs {
                    let c = cid.to_string();
                    wanted.insert(c.clone());
                    links.0.push(c);
                    links.1.push(collection);
                    links.2.push(rkey);
                }
                (collection, rkey)
            }
            IndexChange::Delete { collection, rkey } => (collection, rkey),
        };
        if !created.contains(format!("{collection}/{rkey}").as_str()) {
            stale.0.push(collection);
            stale.1.push(rkey);
        }
    }
    let mut lost = BTreeSet::new();
    if !stale.0.is_empty() {
        let rows = q("DELETE FROM record_blob rb \
                      USING unnest($1::text[], $2::text[]) AS d(collection, rkey) \
                      WHERE rb.collection = d.collection AND rb.rkey = d.rkey RETURNING rb.cid")
        .bind(stale.0)
        .bind(stale.1)
        .fetch_all(&mut **tx)
        .await?;
        for row in rows {
            lost.insert(row.try_get::<String, _>(0)?);
        }
    }
    if !wanted.is_empty() {
        let wanted: Vec<String> = wanted.into_iter().collect();
        let updated =
            q("UPDATE blob SET temp_key = NULL WHERE NOT released AND cid = ANY($1::text[])")
                .bind(&wanted)
                .execute(&mut **tx)
                .await?
                .rows_affected();
        if usize::try_from(updated).unwrap_or(0) != wanted.len() {
            let found: HashSet<String> =
                q("SELECT cid FROM blob WHERE NOT released AND cid = ANY($1::text[])")
                    .bind(&wanted)
                    .fetch_all(&mut **tx)
                    .await?
                    .iter()
                    .map(|r| r.try_get(0))
                    .collect::<Result<_, _>>()?;
            let missing = wanted
                .iter()
                .find(|c| !found.contains(*c))
                .cloned()
                .unwrap_or_default();
            return Err(PostgresError::BlobMissing(missing));
        }
    }
    if !links.0.is_empty() {
        q("INSERT INTO record_blob (cid, collection, rkey, rev) \
           SELECT l.cid, l.collection, l.rkey, $4 \
           FROM unnest($1::text[], $2::text[], $3::text[]) AS l(cid, collection, rkey) \
           ON CONFLICT (cid, collection, rkey) DO UPDATE SET rev = excluded.rev")
        .bind(links.0)
        .bind(links.1)
        .bind(links.2)
        .bind(rev)
        .execute(&mut **tx)
        .await?;
    }
    if !lost.is_empty() {
        let lost: Vec<String> = lost.into_iter().collect();
        q(
            "UPDATE blob b SET released = TRUE WHERE b.cid = ANY($1::text[]) AND NOT EXISTS \
           (SELECT 1 FROM record_blob rb WHERE rb.cid = b.cid)",
        )
        .bind(lost)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
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
        collection: &str,
        rkey: &str,
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
                collection: row.text(0)?,
                rkey: row.text(1)?,
                boundaries: split(&row.text(2)?),
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
            values.push(since.clone().into());
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
