//! Per-actor repositories: one SQLite file per actor at
//! `{data}/actors/{first two hex digits of sha256(did)}/{did}/stratos.sqlite`.
//!
//! Blocks live in a rowid table with a unique index on the CID: new rows append to the table's
//! B-tree and only the small index takes random inserts (random CID primary keys cost several
//! times more per insert; see docs/performance.md).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait, Value};
use sha2::{Digest, Sha256};
use stratos_domain::Cid;
use stratos_domain::blocks::BlockMap;
use stratos_domain::boundary::ReadFilter;
use stratos_domain::repo::RepoHead;
use stratos_domain::syntax::{Did, Tid};
use stratos_ports::repo_store::{
    BlobListQuery, BlobReference, CommitUnit, IndexChange, ListQuery, ReleasedBlob, RepoResult,
    RepoStore, RepoStoreError, SeqEvent, StoredBlob, StoredRecord,
};
use tokio::sync::Mutex;

use crate::db::{self, Durability, Row, placeholders, stmt};
use crate::outbox::OutboxHints;
use crate::{SqliteError, repo_err};
use stratos_ports::storage_codec::{cid_from_bytes, decode_ops, encode_item, encode_ops};

const ACTOR_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS repo_root (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    commit_cid BLOB NOT NULL,
    rev TEXT NOT NULL,
    data_cid BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS block (
    id INTEGER PRIMARY KEY,
    cid BLOB NOT NULL,
    content BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS block_cid ON block (cid);
CREATE TABLE IF NOT EXISTS record (
    collection TEXT NOT NULL,
    rkey TEXT NOT NULL,
    cid BLOB NOT NULL,
    boundaries TEXT NOT NULL,
    PRIMARY KEY (collection, rkey)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS record_boundary (
    collection TEXT NOT NULL,
    boundary TEXT NOT NULL,
    rkey TEXT NOT NULL,
    PRIMARY KEY (collection, boundary, rkey)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS record_boundary_path ON record_boundary (collection, rkey);
CREATE TABLE IF NOT EXISTS event (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    rev TEXT NOT NULL,
    commit_cid BLOB NOT NULL,
    time TEXT NOT NULL,
    ops BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    item BLOB NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    due_ms INTEGER NOT NULL,
    leased_until INTEGER
)";

/// Blob tracking (schema version 1). `blob` holds uploads (`temp_key` set) and permanent blobs;
/// `released` marks a permanent blob whose last referencing record went away, until
/// `release_blobs` hands it out. `record_blob` links records to the blobs they reference, with
/// the revision of the commit that wrote the link (for `listBlobs?since=`). CIDs are stored as
/// their canonical strings, the order `listBlobs` pages in.
const BLOB_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS blob (
    cid TEXT PRIMARY KEY,
    mime_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    temp_key TEXT,
    created_ms INTEGER NOT NULL,
    released INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS record_blob (
    cid TEXT NOT NULL,
    collection TEXT NOT NULL,
    rkey TEXT NOT NULL,
    rev TEXT NOT NULL,
    PRIMARY KEY (cid, collection, rkey)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS record_blob_path ON record_blob (collection, rkey)";

/// The actor schema version (`PRAGMA user_version`) this build writes.
const ACTOR_SCHEMA_VERSION: i64 = 1;

/// Brings an actor database to [`ACTOR_SCHEMA_VERSION`]: databases created before blob
/// tracking get its tables when first opened.
async fn upgrade(conn: &DatabaseConnection) -> Result<(), SqliteError> {
    let version = conn
        .query_one_raw(stmt("PRAGMA user_version", vec![]))
        .await?
        .map(|r| r.int(0))
        .transpose()?
        .unwrap_or(0);
    if version < ACTOR_SCHEMA_VERSION {
        db::migrate(conn, BLOB_SCHEMA).await?;
        conn.execute_unprepared(&format!("PRAGMA user_version = {ACTOR_SCHEMA_VERSION}"))
            .await?;
    }
    Ok(())
}

/// Rows per multi-row INSERT (well under SQLite's parameter limit).
const INSERT_BATCH: usize = 200;
/// Open actor databases kept before one is closed.
const MAX_OPEN: usize = 512;

/// The file of an actor's database.
pub fn actor_dir(root: &Path, did: &str) -> PathBuf {
    let hash = Sha256::digest(did.as_bytes());
    root.join("actors")
        .join(format!("{:02x}", hash[0]))
        .join(did)
}

/// Opens actor databases on demand and keeps them open.
#[derive(Debug)]
pub(crate) struct ActorDbs {
    root: PathBuf,
    durability: Durability,
    open: Mutex<HashMap<String, DatabaseConnection>>,
}

impl ActorDbs {
    pub(crate) fn new(root: PathBuf, durability: Durability) -> Self {
        Self {
            root,
            durability,
            open: Mutex::new(HashMap::new()),
        }
    }

    fn file(&self, did: &str) -> PathBuf {
        actor_dir(&self.root, did).join("stratos.sqlite")
    }

    /// The actor's database, `None` when the actor has no store.
    pub(crate) async fn get(&self, did: &str) -> Result<Option<DatabaseConnection>, SqliteError> {
        let mut open = self.open.lock().await;
        if let Some(conn) = open.get(did) {
            return Ok(Some(conn.clone()));
        }
        let file = self.file(did);
        if !tokio::fs::try_exists(&file).await.unwrap_or(false) {
            return Ok(None);
        }
        let conn = db::open(&file, self.durability).await?;
        upgrade(&conn).await?;
        if open.len() >= MAX_OPEN
            && let Some(victim) = open.keys().next().cloned()
        {
            open.remove(&victim);
        }
        open.insert(did.to_owned(), conn.clone());
        Ok(Some(conn))
    }

    pub(crate) async fn require(&self, did: &str) -> Result<DatabaseConnection, SqliteError> {
        self.get(did)
            .await?
            .ok_or_else(|| SqliteError::ActorNotFound(did.to_owned()))
    }

    async fn create(&self, did: &str) -> Result<(), SqliteError> {
        let file = self.file(did);
        if let Some(dir) = file.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        let conn = db::open(&file, self.durability).await?;
        db::migrate(&conn, ACTOR_SCHEMA).await?;
        upgrade(&conn).await?;
        self.open.lock().await.insert(did.to_owned(), conn);
        Ok(())
    }

    async fn destroy(&self, did: &str) -> Result<(), SqliteError> {
        if let Some(conn) = self.open.lock().await.remove(did) {
            conn.close().await?;
        }
        let dir = actor_dir(&self.root, did);
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// [`RepoStore`] over per-actor SQLite files.
#[derive(Debug, Clone)]
pub struct SqliteRepoStore {
    pub(crate) dbs: Arc<ActorDbs>,
    pub(crate) hints: Arc<OutboxHints>,
}

fn blob(cid: &Cid) -> Value {
    Value::from(cid.to_bytes())
}

async fn head_of<C: ConnectionTrait>(conn: &C) -> Result<Option<RepoHead>, SqliteError> {
    let row = conn
        .query_one_raw(stmt(
            "SELECT commit_cid, rev, data_cid FROM repo_root WHERE id = 1",
            vec![],
        ))
        .await?;
    let Some(row) = row else { return Ok(None) };
    let rev = Tid::parse(&row.text(1)?).map_err(|_| SqliteError::Corrupt("stored rev".into()))?;
    Ok(Some(RepoHead {
        commit: cid_from_bytes(&row.bytes(0)?)?,
        rev,
        data: cid_from_bytes(&row.bytes(2)?)?,
    }))
}

fn split_boundaries(s: &str) -> Vec<String> {
    s.split('\n')
        .filter(|b| !b.is_empty())
        .map(str::to_owned)
        .collect()
}

fn record_row(row: &sea_orm::QueryResult, collection: &str) -> Result<StoredRecord, SqliteError> {
    Ok(StoredRecord {
        collection: collection.to_owned(),
        rkey: row.text(0)?,
        cid: cid_from_bytes(&row.bytes(1)?)?,
        boundaries: split_boundaries(&row.text(2)?),
        bytes: row.bytes(3)?,
    })
}

/// Multi-row `INSERT` of `rows` (each `width` values) in chunks.
async fn insert_rows<C: ConnectionTrait>(
    txn: &C,
    head: &str,
    width: usize,
    rows: Vec<Vec<Value>>,
) -> Result<(), SqliteError> {
    let tuple = format!("({})", placeholders(width));
    let mut iter = rows.into_iter().peekable();
    while iter.peek().is_some() {
        let chunk: Vec<Vec<Value>> = iter.by_ref().take(INSERT_BATCH).collect();
        let sql = format!(
            "{head} VALUES {}",
            vec![tuple.as_str(); chunk.len()].join(", ")
        );
        txn.execute_raw(stmt(&sql, chunk.into_iter().flatten().collect()))
            .await?;
    }
    Ok(())
}

/// `(collection = ? AND rkey = ?) OR …` for `n` paths. SQLite answers each term from an index;
/// a row-value `IN (VALUES …)` scans the table, which made commits cost O(records).
fn path_filter(n: usize) -> String {
    vec!["(collection = ? AND rkey = ?)"; n].join(" OR ")
}

/// Paths per `path_filter` statement (keeps the OR chain well under SQLite's depth limit).
const PATH_BATCH: usize = 100;

fn path_values<'a, I>(paths: I) -> Vec<Value>
where
    I: Iterator<Item = &'a (&'a String, &'a String, bool)>,
{
    paths
        .flat_map(|(c, r, _)| [Value::from((*c).clone()), Value::from((*r).clone())])
        .collect()
}

/// Applies a commit unit inside `txn` with as few statements as possible: with sqlx-sqlite
/// every statement is a round trip to the connection's thread, which dominates the cost.
async fn apply<C: ConnectionTrait>(txn: &C, unit: &CommitUnit) -> Result<u64, SqliteError> {
    // Compare-and-swap first, so a lost race costs one statement.
    let head_values = vec![
        blob(&unit.head.commit),
        unit.head.rev.to_string().into(),
        blob(&unit.head.data),
    ];
    let swapped = match &unit.prev {
        Some(prev) => {
            let mut values = head_values;
            values.push(blob(prev));
            txn.execute_raw(stmt(
                "UPDATE repo_root SET commit_cid = ?, rev = ?, data_cid = ? \
                 WHERE id = 1 AND commit_cid = ?",
                values,
            ))
            .await?
            .rows_affected()
        }
        None => {
            txn.execute_raw(stmt(
                "INSERT OR IGNORE INTO repo_root (id, commit_cid, rev, data_cid) VALUES (1, ?, ?, ?)",
                head_values,
            ))
            .await?
            .rows_affected()
        }
    };
    if swapped != 1 {
        return Err(SqliteError::Conflict);
    }

    // Record blocks must be new in this unit or already stored.
    let mut unknown = Vec::new();
    for change in &unit.index {
        if let IndexChange::Put { cid, .. } = change
            && !unit.new_blocks.contains(cid)
        {
            unknown.push(*cid);
        }
    }
    if !unknown.is_empty() {
        let sql = format!(
            "SELECT COUNT(*) FROM block WHERE cid IN ({})",
            placeholders(unknown.len())
        );
        let row = txn
            .query_one_raw(stmt(&sql, unknown.iter().map(blob).collect()))
            .await?;
        let found = row.map(|r| r.int(0)).transpose()?.unwrap_or(0);
        if usize::try_from(found).unwrap_or(0) != unknown.len() {
            return Err(SqliteError::IndexMismatch(
                "a record block is neither new nor stored".into(),
            ));
        }
    }

    insert_rows(
        txn,
        "INSERT OR IGNORE INTO block (cid, content)",
        2,
        unit.new_blocks
            .iter()
            .map(|(cid, bytes)| vec![blob(cid), Value::from(bytes.to_vec())])
            .collect(),
    )
    .await?;
    for chunk in unit.removed_blocks.chunks(INSERT_BATCH) {
        let sql = format!(
            "DELETE FROM block WHERE cid IN ({})",
            placeholders(chunk.len())
        );
        txn.execute_raw(stmt(&sql, chunk.iter().map(blob).collect()))
            .await?;
    }

    // Index: paths whose old rows go away (updates and deletes), new rows, boundary rows.
    let mut deletes = Vec::new();
    let mut puts = Vec::new();
    let mut boundary_rows = Vec::new();
    for change in &unit.index {
        match change {
            IndexChange::Put {
                collection,
                rkey,
                cid,
                boundaries,
                ..
            } => {
                puts.push(vec![
                    collection.clone().into(),
                    rkey.clone().into(),
                    blob(cid),
                    boundaries.join("\n").into(),
                ]);
                for b in boundaries {
                    boundary_rows.push(vec![
                        collection.clone().into(),
                        b.clone().into(),
                        rkey.clone().into(),
                    ]);
                }
                deletes.push((collection, rkey, false));
            }
            IndexChange::Delete { collection, rkey } => deletes.push((collection, rkey, true)),
        }
    }
    let must_exist: Vec<_> = deletes.iter().filter(|d| d.2).collect();
    let mut deleted = 0u64;
    for chunk in must_exist.chunks(PATH_BATCH) {
        let sql = format!("DELETE FROM record WHERE {}", path_filter(chunk.len()));
        deleted += txn
            .execute_raw(stmt(&sql, path_values(chunk.iter().copied())))
            .await?
            .rows_affected();
    }
    if usize::try_from(deleted).unwrap_or(0) != must_exist.len() {
        return Err(SqliteError::IndexMismatch(
            "delete of a record that is not indexed".into(),
        ));
    }
    // Boundary rows of replaced and deleted paths go; created paths have none (the event says
    // which puts are creates; without an event every touched path is cleared).
    let created: std::collections::HashSet<&str> = unit
        .event
        .iter()
        .flat_map(|e| e.ops.iter())
        .filter(|op| op.action == "create")
        .map(|op| op.path.as_str())
        .collect();
    let stale: Vec<_> = deletes
        .iter()
        .filter(|(c, r, _)| !created.contains(format!("{c}/{r}").as_str()))
        .copied()
        .collect();
    for chunk in stale.chunks(PATH_BATCH) {
        let sql = format!(
            "DELETE FROM record_boundary WHERE {}",
            path_filter(chunk.len())
        );
        txn.execute_raw(stmt(&sql, path_values(chunk.iter())))
            .await?;
    }
    insert_rows(
        txn,
        "INSERT OR REPLACE INTO record (collection, rkey, cid, boundaries)",
        4,
        puts,
    )
    .await?;
    insert_rows(
        txn,
        "INSERT OR IGNORE INTO record_boundary (collection, boundary, rkey)",
        3,
        boundary_rows,
    )
    .await?;
    apply_blob_links(txn, unit, &stale).await?;

    let mut seq = 0;
    if let Some(event) = &unit.event {
        let row = txn
            .query_one_raw(stmt(
                "INSERT INTO event (rev, commit_cid, time, ops) VALUES (?, ?, ?, ?) RETURNING seq",
                vec![
                    event.rev.clone().into(),
                    blob(&event.commit),
                    event.time.clone().into(),
                    encode_ops(&event.ops).into(),
                ],
            ))
            .await?
            .ok_or_else(|| SqliteError::Corrupt("no sequence number returned".into()))?;
        seq = u64::try_from(row.int(0)?).unwrap_or(0);
    }
    insert_rows(
        txn,
        "INSERT INTO outbox (item, due_ms)",
        2,
        unit.outbox
            .iter()
            .map(|item| vec![encode_item(item).into(), i64::MIN.into()])
            .collect(),
    )
    .await?;
    Ok(seq)
}

/// The blob side of a unit: the links of replaced and deleted paths (`stale`) go, the puts'
/// links come, the puts' blobs become permanent (each must be tracked and live, or nothing of
/// the unit applies), and a blob whose last link went is released. Creates-only units with no
/// blobs run no statement here.
async fn apply_blob_links<C: ConnectionTrait>(
    txn: &C,
    unit: &CommitUnit,
    stale: &[(&String, &String, bool)],
) -> Result<(), SqliteError> {
    let mut lost = BTreeSet::new();
    for chunk in stale.chunks(PATH_BATCH) {
        let sql = format!(
            "DELETE FROM record_blob WHERE {} RETURNING cid",
            path_filter(chunk.len())
        );
        for row in txn
            .query_all_raw(stmt(&sql, path_values(chunk.iter())))
            .await?
        {
            lost.insert(row.text(0)?);
        }
    }
    let rev = unit.head.rev.to_string();
    let mut wanted = BTreeSet::new();
    let mut links = Vec::new();
    for change in &unit.index {
        if let IndexChange::Put {
            collection,
            rkey,
            blobs,
            ..
        } = change
        {
            for cid in blobs {
                let c = cid.to_string();
                wanted.insert(c.clone());
                links.push(vec![
                    c.into(),
                    collection.clone().into(),
                    rkey.clone().into(),
                    rev.clone().into(),
                ]);
            }
        }
    }
    let wanted: Vec<String> = wanted.into_iter().collect();
    for chunk in wanted.chunks(INSERT_BATCH) {
        let values: Vec<Value> = chunk.iter().map(|c| Value::from(c.clone())).collect();
        let sql = format!(
            "UPDATE blob SET temp_key = NULL WHERE released = 0 AND cid IN ({})",
            placeholders(chunk.len())
        );
        let updated = txn
            .execute_raw(stmt(&sql, values.clone()))
            .await?
            .rows_affected();
        if usize::try_from(updated).unwrap_or(0) != chunk.len() {
            let sql = format!(
                "SELECT cid FROM blob WHERE released = 0 AND cid IN ({})",
                placeholders(chunk.len())
            );
            let found: HashSet<String> = txn
                .query_all_raw(stmt(&sql, values))
                .await?
                .iter()
                .map(|r| r.text(0))
                .collect::<Result<_, _>>()?;
            let missing = chunk
                .iter()
                .find(|c| !found.contains(*c))
                .cloned()
                .unwrap_or_default();
            return Err(SqliteError::BlobMissing(missing));
        }
    }
    insert_rows(
        txn,
        "INSERT OR REPLACE INTO record_blob (cid, collection, rkey, rev)",
        4,
        links,
    )
    .await?;
    let lost: Vec<String> = lost.into_iter().collect();
    for chunk in lost.chunks(INSERT_BATCH) {
        let sql = format!(
            "UPDATE blob SET released = 1 WHERE cid IN ({}) \
             AND NOT EXISTS (SELECT 1 FROM record_blob rb WHERE rb.cid = blob.cid)",
            placeholders(chunk.len())
        );
        txn.execute_raw(stmt(
            &sql,
            chunk.iter().map(|c| Value::from(c.clone())).collect(),
        ))
        .await?;
    }
    Ok(())
}

fn blob_row(row: &sea_orm::QueryResult) -> Result<StoredBlob, SqliteError> {
    Ok(StoredBlob {
        cid: stratos_domain::cid::parse(&row.text(0)?)
            .map_err(|e| SqliteError::Corrupt(e.to_string()))?,
        mime_type: row.text(1)?,
        size: u64::try_from(row.int(2)?).map_err(|_| SqliteError::Corrupt("blob size".into()))?,
        temp_key: row.opt_text(3)?,
        created_ms: row.int(4)?,
    })
}

const BLOB_COLUMNS: &str = "cid, mime_type, size, temp_key, created_ms";

async fn live_blob<C: ConnectionTrait>(
    conn: &C,
    cid: &str,
) -> Result<Option<StoredBlob>, SqliteError> {
    let row = conn
        .query_one_raw(stmt(
            &format!("SELECT {BLOB_COLUMNS} FROM blob WHERE cid = ? AND released = 0"),
            vec![cid.into()],
        ))
        .await?;
    row.map(|r| blob_row(&r)).transpose()
}

#[async_trait]
impl RepoStore for SqliteRepoStore {
    async fn create_actor(&self, did: &Did) -> RepoResult<()> {
        self.dbs.create(did.as_str()).await.map_err(repo_err)
    }

    async fn destroy_actor(&self, did: &Did) -> RepoResult<()> {
        self.dbs.destroy(did.as_str()).await.map_err(repo_err)?;
        self.hints.forget(did.as_str()).await.map_err(repo_err)
    }

    async fn actor_exists(&self, did: &Did) -> RepoResult<bool> {
        Ok(self
            .dbs
            .get(did.as_str())
            .await
            .map_err(repo_err)?
            .is_some())
    }

    async fn head(&self, did: &Did) -> RepoResult<Option<RepoHead>> {
        let conn = self.dbs.require(did.as_str()).await.map_err(repo_err)?;
        head_of(&conn).await.map_err(repo_err)
    }

    async fn get_blocks(&self, did: &Did, cids: &[Cid]) -> RepoResult<BlockMap> {
        let conn = self.dbs.require(did.as_str()).await.map_err(repo_err)?;
        let mut out = BlockMap::new();
        for chunk in cids.chunks(INSERT_BATCH * 2) {
            let sql = format!(
                "SELECT cid, content FROM block WHERE cid IN ({})",
                placeholders(chunk.len())
            );
            let rows = conn
                .query_all_raw(stmt(&sql, chunk.iter().map(blob).collect()))
                .await
                .map_err(|e| repo_err(e.into()))?;
            for row in rows {
                let cid = cid_from_bytes(&row.bytes(0).map_err(|e| repo_err(e.into()))?)
                    .map_err(|e| repo_err(e.into()))?;
                out.insert(cid, row.bytes(1).map_err(|e| repo_err(e.into()))?);
            }
        }
        Ok(out)
    }

    async fn apply_commit(&self, did: &Did, unit: CommitUnit) -> RepoResult<u64> {
        let conn = self.dbs.require(did.as_str()).await.map_err(repo_err)?;
        let txn = conn.begin().await.map_err(|e| repo_err(e.into()))?;
        match apply(&txn, &unit).await {
            Ok(seq) => {
                txn.commit().await.map_err(|e| repo_err(e.into()))?;
                if !unit.outbox.is_empty() {
                    // The items are durable in the actor's database; the hint only tells the
                    // outbox worker where to look (and is rebuilt at open if lost).
                    self.hints.remember(did.as_str()).await.map_err(repo_err)?;
                }
                Ok(seq)
            }
            Err(e) => {
                txn.rollback().await.map_err(|e| repo_err(e.into()))?;
                Err(match e {
                    SqliteError::Conflict => RepoStoreError::Conflict(did.to_string()),
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
        let conn = self.dbs.require(did.as_str()).await.map_err(repo_err)?;
        let row = conn
            .query_one_raw(stmt(
                "SELECT r.rkey, r.cid, r.boundaries, b.content FROM record r \
                 JOIN block b ON b.cid = r.cid WHERE r.collection = ? AND r.rkey = ?",
                vec![collection.into(), rkey.into()],
            ))
            .await
            .map_err(|e| repo_err(e.into()))?;
        row.map(|r| record_row(&r, collection))
            .transpose()
            .map_err(repo_err)
    }

    async fn list_records(&self, did: &Did, query: &ListQuery) -> RepoResult<Vec<StoredRecord>> {
        let conn = self.dbs.require(did.as_str()).await.map_err(repo_err)?;
        let mut sql = String::from(
            "SELECT r.rkey, r.cid, r.boundaries, b.content FROM record r \
             JOIN block b ON b.cid = r.cid WHERE r.collection = ?",
        );
        let mut values: Vec<Value> = vec![query.collection.clone().into()];
        if let Some(cursor) = &query.cursor {
            sql.push_str(if query.reverse {
                " AND r.rkey > ?"
            } else {
                " AND r.rkey < ?"
            });
            values.push(cursor.clone().into());
        }
        match &query.filter {
            ReadFilter::All => {}
            ReadFilter::Nothing => return Ok(Vec::new()),
            ReadFilter::AnyOf(set) => {
                if set.is_empty() {
                    return Ok(Vec::new());
                }
                sql.push_str(&format!(
                    " AND EXISTS (SELECT 1 FROM record_boundary rb WHERE rb.collection = r.collection \
                     AND rb.rkey = r.rkey AND rb.boundary IN ({}))",
                    placeholders(set.len())
                ));
                values.extend(set.iter().map(|b| Value::from(b.clone())));
            }
        }
        sql.push_str(if query.reverse {
            " ORDER BY r.rkey ASC LIMIT ?"
        } else {
            " ORDER BY r.rkey DESC LIMIT ?"
        });
        values.push(i64::try_from(query.limit).unwrap_or(i64::MAX).into());
        let rows = conn
            .query_all_raw(stmt(&sql, values))
            .await
            .map_err(|e| repo_err(e.into()))?;
        rows.iter()
            .map(|r| record_row(r, &query.collection))
            .collect::<Result<_, _>>()
            .map_err(repo_err)
    }

    async fn events_after(
        &self,
        did: &Did,
        cursor: u64,
        limit: usize,
    ) -> RepoResult<Vec<SeqEvent>> {
        let conn = self.dbs.require(did.as_str()).await.map_err(repo_err)?;
        let rows = conn
            .query_all_raw(stmt(
                "SELECT seq, rev, commit_cid, time, ops FROM event WHERE seq > ? ORDER BY seq LIMIT ?",
                vec![
                    i64::try_from(cursor).unwrap_or(i64::MAX).into(),
                    i64::try_from(limit).unwrap_or(i64::MAX).into(),
                ],
            ))
            .await
            .map_err(|e| repo_err(e.into()))?;
        let parse = |row: &sea_orm::QueryResult| -> Result<SeqEvent, SqliteError> {
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
        let conn = self.dbs.require(did.as_str()).await.map_err(repo_err)?;
        let row = conn
            .query_one_raw(stmt("SELECT COALESCE(MAX(seq), 0) FROM event", vec![]))
            .await
            .map_err(|e| repo_err(e.into()))?;
        let seq = match row {
            Some(r) => r.int(0).map_err(|e| repo_err(e.into()))?,
            None => 0,
        };
        Ok(u64::try_from(seq).unwrap_or(0))
    }

    async fn all_blocks(&self, did: &Did) -> RepoResult<BlockMap> {
        let conn = self.dbs.require(did.as_str()).await.map_err(repo_err)?;
        let rows = conn
            .query_all_raw(stmt("SELECT cid, content FROM block ORDER BY id", vec![]))
            .await
            .map_err(|e| repo_err(e.into()))?;
        let mut out = BlockMap::new();
        for row in rows {
            let cid = cid_from_bytes(&row.bytes(0).map_err(|e| repo_err(e.into()))?)
                .map_err(|e| repo_err(e.into()))?;
            out.insert(cid, row.bytes(1).map_err(|e| repo_err(e.into()))?);
        }
        Ok(out)
    }

    async fn track_blob(&self, did: &Did, upload: StoredBlob) -> RepoResult<Option<StoredBlob>> {
        let conn = self.dbs.require(did.as_str()).await.map_err(repo_err)?;
        let txn = conn.begin().await.map_err(|e| repo_err(e.into()))?;
        let cid = upload.cid.to_string();
        if let Some(existing) = live_blob(&txn, &cid).await.map_err(repo_err)? {
            txn.rollback().await.map_err(|e| repo_err(e.into()))?;
            return Ok(Some(existing));
        }
        // Replaces a released row, if any: the new upload brings the same bytes back.
        txn.execute_raw(stmt(
            &format!(
                "INSERT OR REPLACE INTO blob ({BLOB_COLUMNS}, released) VALUES (?, ?, ?, ?, ?, 0)"
            ),
            vec![
                cid.into(),
                upload.mime_type.clone().into(),
                i64::try_from(upload.size).unwrap_or(i64::MAX).into(),
                upload.temp_key.clone().into(),
                upload.created_ms.into(),
            ],
        ))
        .await
        .map_err(|e| repo_err(e.into()))?;
        txn.commit().await.map_err(|e| repo_err(e.into()))?;
        Ok(None)
    }

    async fn blob(&self, did: &Did, cid: &Cid) -> RepoResult<Option<StoredBlob>> {
        let conn = self.dbs.require(did.as_str()).await.map_err(repo_err)?;
        live_blob(&conn, &cid.to_string()).await.map_err(repo_err)
    }

    async fn records_referencing_blob(
        &self,
        did: &Did,
        cid: &Cid,
    ) -> RepoResult<Vec<BlobReference>> {
        let conn = self.dbs.require(did.as_str()).await.map_err(repo_err)?;
        let rows = conn
            .query_all_raw(stmt(
                "SELECT rb.collection, rb.rkey, r.boundaries FROM record_blob rb \
                 JOIN record r ON r.collection = rb.collection AND r.rkey = rb.rkey \
                 WHERE rb.cid = ? ORDER BY rb.collection, rb.rkey",
                vec![cid.to_string().into()],
            ))
            .await
            .map_err(|e| repo_err(e.into()))?;
        let parse = |row: &sea_orm::QueryResult| -> Result<BlobReference, SqliteError> {
            Ok(BlobReference {
                collection: row.text(0)?,
                rkey: row.text(1)?,
                boundaries: split_boundaries(&row.text(2)?),
            })
        };
        rows.iter()
            .map(parse)
            .collect::<Result<_, _>>()
            .map_err(repo_err)
    }

    async fn list_blobs(&self, did: &Did, query: &BlobListQuery) -> RepoResult<Vec<Cid>> {
        let conn = self.dbs.require(did.as_str()).await.map_err(repo_err)?;
        let mut sql = String::from("SELECT DISTINCT rb.cid FROM record_blob rb WHERE 1 = 1");
        let mut values: Vec<Value> = Vec::new();
        if let Some(cursor) = &query.cursor {
            sql.push_str(" AND rb.cid > ?");
            values.push(cursor.clone().into());
        }
        if let Some(since) = &query.since {
            sql.push_str(" AND rb.rev > ?");
            values.push(since.clone().into());
        }
        match &query.filter {
            ReadFilter::All => {}
            ReadFilter::Nothing => return Ok(Vec::new()),
            ReadFilter::AnyOf(set) => {
                if set.is_empty() {
                    return Ok(Vec::new());
                }
                sql.push_str(&format!(
                    " AND EXISTS (SELECT 1 FROM record_boundary x WHERE x.collection = rb.collection \
                     AND x.rkey = rb.rkey AND x.boundary IN ({}))",
                    placeholders(set.len())
                ));
                values.extend(set.iter().map(|b| Value::from(b.clone())));
            }
        }
        sql.push_str(" ORDER BY rb.cid ASC LIMIT ?");
        values.push(i64::try_from(query.limit).unwrap_or(i64::MAX).into());
        let rows = conn
            .query_all_raw(stmt(&sql, values))
            .await
            .map_err(|e| repo_err(e.into()))?;
        rows.iter()
            .map(|r| {
                let text = r.text(0).map_err(|e| repo_err(e.into()))?;
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
        let conn = self.dbs.require(did.as_str()).await.map_err(repo_err)?;
        // One statement, so a blob is handed out once even with concurrent callers.
        let rows = conn
            .query_all_raw(stmt(
                "DELETE FROM blob WHERE released = 1 \
                 OR (temp_key IS NOT NULL AND created_ms < ?) RETURNING cid, temp_key",
                vec![uploads_before_ms.into()],
            ))
            .await
            .map_err(|e| repo_err(e.into()))?;
        let parse = |row: &sea_orm::QueryResult| -> Result<ReleasedBlob, SqliteError> {
            Ok(ReleasedBlob {
                cid: stratos_domain::cid::parse(&row.text(0)?)
                    .map_err(|e| SqliteError::Corrupt(e.to_string()))?,
                temp_key: row.opt_text(1)?,
            })
        };
        rows.iter()
            .map(parse)
            .collect::<Result<_, _>>()
            .map_err(repo_err)
    }
}
