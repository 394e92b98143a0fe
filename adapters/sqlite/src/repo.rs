//! [`RepoStore`] over per-actor SQLite files ([`crate::actor_db`]).
//!
//! Blocks live in a rowid table with a unique index on the CID: new rows append to the table's
//! B-tree and only the small index takes random inserts (random CID primary keys cost several
//! times more per insert; see docs/performance.md). Every operation runs as one closure on the
//! actor's connection; statements are prepared once per connection and re-bound per row.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params, params_from_iter};
use stratos_domain::Cid;
use stratos_domain::blocks::BlockMap;
use stratos_domain::boundary::ReadFilter;
use stratos_domain::repo::RepoHead;
use stratos_domain::syntax::{Did, Nsid, RecordKey, Tid};
use stratos_ports::repo_store::{
    BlobListQuery, BlobReference, CommitUnit, IndexChange, ListQuery, ReleasedBlob, RepoResult,
    RepoStore, RepoStoreError, SeqEvent, StoredBlob, StoredRecord,
};
use stratos_ports::storage_codec::{
    cid_from_bytes, decode_event_body, encode_event_body, encode_item, join_boundaries, parse,
    split_boundaries,
};

use crate::actor_db::ActorDbs;
use crate::db::placeholders;
use crate::outbox::OutboxHints;
use crate::{SqliteError, repo_err};

/// [`RepoStore`] over per-actor SQLite files.
#[derive(Debug, Clone)]
pub struct SqliteRepoStore {
    pub(crate) dbs: Arc<ActorDbs>,
    pub(crate) hints: Arc<OutboxHints>,
}

fn head_of(conn: &Connection) -> Result<Option<RepoHead>, SqliteError> {
    let row = conn
        .prepare_cached("SELECT commit_cid, rev, data_cid FROM repo_root WHERE id = 1")?
        .query_row([], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Vec<u8>>(2)?,
            ))
        })
        .optional()?;
    let Some((commit, rev, data)) = row else {
        return Ok(None);
    };
    let rev = Tid::parse(&rev).map_err(|_| SqliteError::Corrupt("stored rev".into()))?;
    Ok(Some(RepoHead {
        commit: cid_from_bytes(&commit)?,
        rev,
        data: cid_from_bytes(&data)?,
    }))
}

/// Columns `rkey, cid, boundaries, content`, as read by [`RECORD_SELECT`].
type RecordRow = (String, Vec<u8>, String, Vec<u8>);

const RECORD_SELECT: &str = "SELECT r.rkey, r.cid, r.boundaries, b.content FROM record r \
                             JOIN block b ON b.cid = r.cid";

fn record_columns(r: &Row<'_>) -> rusqlite::Result<RecordRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

fn stored_record(collection: &Nsid, row: RecordRow) -> Result<StoredRecord, SqliteError> {
    let rkey = parse(&row.0, "record key")?;
    known_record(collection, rkey, row)
}

/// [`stored_record`] of a row looked up by its key: the key asked for is the row's, so it is not
/// parsed again (a get is hot enough for that to show).
fn known_record(
    collection: &Nsid,
    rkey: RecordKey,
    row: RecordRow,
) -> Result<StoredRecord, SqliteError> {
    let (_, cid, boundaries, bytes) = row;
    Ok(StoredRecord {
        collection: collection.clone(),
        rkey,
        cid: cid_from_bytes(&cid)?,
        boundaries: split_boundaries(&boundaries)?,
        bytes,
    })
}

/// Applies a commit unit inside its transaction. Each statement is prepared once per
/// connection and run per row: without a thread hand-off per statement, re-binding a cached
/// statement is cheaper than building multi-row text.
fn apply(tx: &Connection, unit: &CommitUnit) -> Result<u64, SqliteError> {
    // Compare-and-swap first, so a lost race costs one statement.
    let commit = unit.head.commit.to_bytes();
    let rev = unit.head.rev.to_string();
    let data = unit.head.data.to_bytes();
    let swapped = match &unit.prev {
        Some(prev) => tx
            .prepare_cached(
                "UPDATE repo_root SET commit_cid = ?1, rev = ?2, data_cid = ?3 \
                 WHERE id = 1 AND commit_cid = ?4",
            )?
            .execute(params![commit, rev, data, prev.to_bytes()])?,
        None => tx
            .prepare_cached(
                "INSERT OR IGNORE INTO repo_root (id, commit_cid, rev, data_cid) \
                 VALUES (1, ?1, ?2, ?3)",
            )?
            .execute(params![commit, rev, data])?,
    };
    if swapped != 1 {
        return Err(SqliteError::Conflict);
    }

    // Record blocks must be new in this unit or already stored.
    {
        let mut stored = tx.prepare_cached("SELECT 1 FROM block WHERE cid = ?1")?;
        for change in &unit.index {
            if let IndexChange::Put { cid, .. } = change
                && !unit.new_blocks.contains(cid)
                && !stored.exists(params![cid.to_bytes()])?
            {
                return Err(SqliteError::IndexMismatch(
                    "a record block is neither new nor stored".into(),
                ));
            }
        }
    }

    {
        let mut insert =
            tx.prepare_cached("INSERT OR IGNORE INTO block (cid, content) VALUES (?1, ?2)")?;
        for (cid, bytes) in unit.new_blocks.iter() {
            insert.execute(params![cid.to_bytes(), bytes])?;
        }
        let mut remove = tx.prepare_cached("DELETE FROM block WHERE cid = ?1")?;
        for cid in &unit.removed_blocks {
            remove.execute(params![cid.to_bytes()])?;
        }
    }

    // Index: paths whose old rows go away (updates and deletes), new rows, boundary rows.
    // Boundary rows of replaced and deleted paths go; created paths have none (the event says
    // which puts are creates; without an event every touched path is cleared).
    let created = unit.created_paths();
    let mut stale: Vec<(&str, &str)> = Vec::new();
    {
        let mut delete_record =
            tx.prepare_cached("DELETE FROM record WHERE collection = ?1 AND rkey = ?2")?;
        for change in &unit.index {
            let (collection, rkey) = match change {
                IndexChange::Put {
                    collection, rkey, ..
                } => (collection, rkey),
                IndexChange::Delete { collection, rkey } => {
                    if delete_record.execute(params![collection.as_str(), rkey.as_str()])? != 1 {
                        return Err(SqliteError::IndexMismatch(
                            "delete of a record that is not indexed".into(),
                        ));
                    }
                    (collection, rkey)
                }
            };
            if !created.contains(&(collection, rkey)) {
                stale.push((collection.as_str(), rkey.as_str()));
            }
        }
    }
    {
        let mut clear =
            tx.prepare_cached("DELETE FROM record_boundary WHERE collection = ?1 AND rkey = ?2")?;
        for (collection, rkey) in &stale {
            clear.execute(params![collection, rkey])?;
        }
        let mut put = tx.prepare_cached(
            "INSERT OR REPLACE INTO record (collection, rkey, cid, boundaries) \
             VALUES (?1, ?2, ?3, ?4)",
        )?;
        let mut tag = tx.prepare_cached(
            "INSERT OR IGNORE INTO record_boundary (collection, boundary, rkey) \
             VALUES (?1, ?2, ?3)",
        )?;
        for change in &unit.index {
            if let IndexChange::Put {
                collection,
                rkey,
                cid,
                boundaries,
                ..
            } = change
            {
                put.execute(params![
                    collection.as_str(),
                    rkey.as_str(),
                    cid.to_bytes(),
                    join_boundaries(boundaries)
                ])?;
                for b in boundaries {
                    tag.execute(params![collection.as_str(), b.as_str(), rkey.as_str()])?;
                }
            }
        }
    }
    apply_blob_links(tx, unit, &stale)?;

    let mut seq = 0;
    if let Some(event) = &unit.event {
        tx.prepare_cached(
            "INSERT INTO event (rev, commit_cid, time, ops) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![
            event.rev.as_str(),
            event.commit.to_bytes(),
            event.time.as_str(),
            encode_event_body(&event.ops, event.proof.as_ref())
        ])?;
        // `seq` is the table's INTEGER PRIMARY KEY, so it is the row id just written.
        seq = u64::try_from(tx.last_insert_rowid()).unwrap_or(0);
    }
    if !unit.outbox.is_empty() {
        let mut enqueue = tx.prepare_cached("INSERT INTO outbox (item, due_ms) VALUES (?1, ?2)")?;
        for item in &unit.outbox {
            enqueue.execute(params![encode_item(item), i64::MIN])?;
        }
    }
    Ok(seq)
}

/// The blob side of a unit: the links of replaced and deleted paths (`stale`) go, the puts'
/// links come, the puts' blobs become permanent (each must be tracked and live, or nothing of
/// the unit applies), and a blob whose last link went is released. Creates-only units with no
/// blobs run no statement here.
fn apply_blob_links(
    tx: &Connection,
    unit: &CommitUnit,
    stale: &[(&str, &str)],
) -> Result<(), SqliteError> {
    let mut lost = BTreeSet::new();
    if !stale.is_empty() {
        let mut unlink = tx.prepare_cached(
            "DELETE FROM record_blob WHERE collection = ?1 AND rkey = ?2 RETURNING cid",
        )?;
        for (collection, rkey) in stale {
            let cids = unlink.query_map(params![collection, rkey], |r| r.get::<_, String>(0))?;
            for cid in cids {
                lost.insert(cid?);
            }
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
                links.push((c, collection.as_str(), rkey.as_str()));
            }
        }
    }
    if !wanted.is_empty() {
        let mut keep =
            tx.prepare_cached("UPDATE blob SET temp_key = NULL WHERE released = 0 AND cid = ?1")?;
        for cid in &wanted {
            if keep.execute(params![cid])? != 1 {
                return Err(SqliteError::BlobMissing(cid.clone()));
            }
        }
        let mut link = tx.prepare_cached(
            "INSERT OR REPLACE INTO record_blob (cid, collection, rkey, rev) \
             VALUES (?1, ?2, ?3, ?4)",
        )?;
        for (cid, collection, rkey) in &links {
            link.execute(params![cid, collection, rkey, rev])?;
        }
    }
    if !lost.is_empty() {
        let mut release = tx.prepare_cached(
            "UPDATE blob SET released = 1 WHERE cid = ?1 \
             AND NOT EXISTS (SELECT 1 FROM record_blob rb WHERE rb.cid = blob.cid)",
        )?;
        for cid in &lost {
            release.execute(params![cid])?;
        }
    }
    Ok(())
}

const BLOB_COLUMNS: &str = "cid, mime_type, size, temp_key, created_ms";

fn stored_blob(r: &Row<'_>) -> rusqlite::Result<(String, String, i64, Option<String>, i64)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn blob_of(row: (String, String, i64, Option<String>, i64)) -> Result<StoredBlob, SqliteError> {
    let (cid, mime_type, size, temp_key, created_ms) = row;
    Ok(StoredBlob {
        cid: parse_cid(&cid)?,
        mime_type,
        size: u64::try_from(size).map_err(|_| SqliteError::Corrupt("blob size".into()))?,
        temp_key,
        created_ms,
    })
}

fn parse_cid(text: &str) -> Result<Cid, SqliteError> {
    stratos_domain::cid::parse(text).map_err(|e| SqliteError::Corrupt(e.to_string()))
}

fn live_blob(conn: &Connection, cid: &str) -> Result<Option<StoredBlob>, SqliteError> {
    conn.prepare_cached(&format!(
        "SELECT {BLOB_COLUMNS} FROM blob WHERE cid = ?1 AND released = 0"
    ))?
    .query_row(params![cid], stored_blob)
    .optional()?
    .map(blob_of)
    .transpose()
}

/// ` AND EXISTS (… boundary IN (…))` for a boundary filter over rows aliased `alias`, with its
/// values; `None` when the filter admits nothing.
fn filter_clause(filter: &ReadFilter, alias: &str) -> Option<(String, Vec<Value>)> {
    match filter {
        ReadFilter::All => Some((String::new(), Vec::new())),
        ReadFilter::Nothing => None,
        ReadFilter::AnyOf(set) if set.is_empty() => None,
        ReadFilter::AnyOf(set) => Some((
            format!(
                " AND EXISTS (SELECT 1 FROM record_boundary x WHERE x.collection = {alias}.collection \
                 AND x.rkey = {alias}.rkey AND x.boundary IN ({}))",
                placeholders(set.len())
            ),
            set.iter().map(|b| Value::Text(b.clone())).collect(),
        )),
    }
}

fn limit_value(n: usize) -> Value {
    Value::Integer(i64::try_from(n).unwrap_or(i64::MAX))
}

impl SqliteRepoStore {
    /// Runs `f` on the actor's connection (the actor must have a store).
    async fn with<R, F>(&self, did: &Did, f: F) -> RepoResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, SqliteError> + Send + 'static,
    {
        let db = self.dbs.require(did).await.map_err(repo_err)?;
        db.call(f).await.map_err(repo_err)
    }
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
        self.with(did, |conn| head_of(conn)).await
    }

    async fn get_blocks(&self, did: &Did, cids: &[Cid]) -> RepoResult<BlockMap> {
        let cids = cids.to_vec();
        self.with(did, move |conn| {
            let mut read = conn.prepare_cached("SELECT content FROM block WHERE cid = ?1")?;
            let mut out = BlockMap::new();
            for cid in cids {
                if let Some(content) = read
                    .query_row(params![cid.to_bytes()], |r| r.get::<_, Vec<u8>>(0))
                    .optional()?
                {
                    out.insert(cid, content);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn apply_commit(&self, did: &Did, unit: CommitUnit) -> RepoResult<u64> {
        let has_outbox = !unit.outbox.is_empty();
        let db = self.dbs.require(did).await.map_err(repo_err)?;
        let seq = db
            .call(move |conn| {
                // Dropping the transaction on an error rolls it back.
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let seq = apply(&tx, &unit)?;
                tx.commit()?;
                Ok(seq)
            })
            .await
            .map_err(|e| match e {
                SqliteError::Conflict => RepoStoreError::Conflict(did.to_string()),
                other => repo_err(other),
            })?;
        db.committed();
        if has_outbox {
            // The items are durable in the actor's database; the hint only tells the outbox
            // worker where to look (and is rebuilt at open if lost).
            self.hints.remember(did.as_str()).await.map_err(repo_err)?;
        }
        Ok(seq)
    }

    async fn get_record(
        &self,
        did: &Did,
        collection: &Nsid,
        rkey: &RecordKey,
    ) -> RepoResult<Option<StoredRecord>> {
        let (collection, rkey) = (collection.clone(), rkey.clone());
        self.with(did, move |conn| {
            conn.prepare_cached(&format!(
                "{RECORD_SELECT} WHERE r.collection = ?1 AND r.rkey = ?2"
            ))?
            .query_row(params![collection.as_str(), rkey.as_str()], record_columns)
            .optional()?
            .map(|row| known_record(&collection, rkey, row))
            .transpose()
        })
        .await
    }

    async fn list_records(&self, did: &Did, query: &ListQuery) -> RepoResult<Vec<StoredRecord>> {
        let query = query.clone();
        self.with(did, move |conn| {
            let Some((filter, filter_values)) = filter_clause(&query.filter, "r") else {
                return Ok(Vec::new());
            };
            let mut sql = format!("{RECORD_SELECT} WHERE r.collection = ?");
            let mut values = vec![Value::Text(query.collection.to_string())];
            if let Some(cursor) = &query.cursor {
                sql.push_str(if query.reverse {
                    " AND r.rkey > ?"
                } else {
                    " AND r.rkey < ?"
                });
                values.push(Value::Text(cursor.to_string()));
            }
            sql.push_str(&filter);
            values.extend(filter_values);
            sql.push_str(if query.reverse {
                " ORDER BY r.rkey ASC LIMIT ?"
            } else {
                " ORDER BY r.rkey DESC LIMIT ?"
            });
            values.push(limit_value(query.limit));
            let mut statement = conn.prepare_cached(&sql)?;
            let rows = statement.query_map(params_from_iter(values), record_columns)?;
            rows.map(|row| stored_record(&query.collection, row?))
                .collect()
        })
        .await
    }

    async fn events_after(
        &self,
        did: &Did,
        cursor: u64,
        limit: usize,
    ) -> RepoResult<Vec<SeqEvent>> {
        self.with(did, move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT seq, rev, commit_cid, time, ops FROM event WHERE seq > ?1 \
                 ORDER BY seq LIMIT ?2",
            )?;
            let rows = statement.query_map(
                params![
                    i64::try_from(cursor).unwrap_or(i64::MAX),
                    limit_value(limit)
                ],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Vec<u8>>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, Vec<u8>>(4)?,
                    ))
                },
            )?;
            rows.map(|row| {
                let (seq, rev, commit, time, ops) = row?;
                let (ops, proof) = decode_event_body(&ops)?;
                Ok(SeqEvent {
                    seq: u64::try_from(seq).unwrap_or(0),
                    rev: parse(&rev, "event rev")?,
                    commit: cid_from_bytes(&commit)?,
                    time: parse(&time, "event time")?,
                    ops,
                    proof,
                })
            })
            .collect()
        })
        .await
    }

    async fn latest_seq(&self, did: &Did) -> RepoResult<u64> {
        self.with(did, |conn| {
            let seq: i64 = conn
                .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM event")?
                .query_row([], |r| r.get(0))?;
            Ok(u64::try_from(seq).unwrap_or(0))
        })
        .await
    }

    async fn all_blocks(&self, did: &Did) -> RepoResult<BlockMap> {
        self.with(did, |conn| {
            let mut statement =
                conn.prepare_cached("SELECT cid, content FROM block ORDER BY id")?;
            let rows = statement.query_map([], |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?))
            })?;
            let mut out = BlockMap::new();
            for row in rows {
                let (cid, content) = row?;
                out.insert(cid_from_bytes(&cid)?, content);
            }
            Ok(out)
        })
        .await
    }

    async fn track_blob(&self, did: &Did, upload: StoredBlob) -> RepoResult<Option<StoredBlob>> {
        self.with(did, move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let cid = upload.cid.to_string();
            if let Some(existing) = live_blob(&tx, &cid)? {
                return Ok(Some(existing));
            }
            // Replaces a released row, if any: the new upload brings the same bytes back.
            tx.prepare_cached(&format!(
                "INSERT OR REPLACE INTO blob ({BLOB_COLUMNS}, released) VALUES (?1, ?2, ?3, ?4, ?5, 0)"
            ))?
            .execute(params![
                cid,
                upload.mime_type,
                i64::try_from(upload.size).unwrap_or(i64::MAX),
                upload.temp_key,
                upload.created_ms
            ])?;
            tx.commit()?;
            Ok(None)
        })
        .await
    }

    async fn blob(&self, did: &Did, cid: &Cid) -> RepoResult<Option<StoredBlob>> {
        let cid = cid.to_string();
        self.with(did, move |conn| live_blob(conn, &cid)).await
    }

    async fn records_referencing_blob(
        &self,
        did: &Did,
        cid: &Cid,
    ) -> RepoResult<Vec<BlobReference>> {
        let cid = cid.to_string();
        self.with(did, move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT rb.collection, rb.rkey, r.boundaries FROM record_blob rb \
                 JOIN record r ON r.collection = rb.collection AND r.rkey = rb.rkey \
                 WHERE rb.cid = ?1 ORDER BY rb.collection, rb.rkey",
            )?;
            let rows = statement.query_map(params![cid], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })?;
            rows.map(|row| {
                let (collection, rkey, boundaries) = row?;
                Ok(BlobReference {
                    collection: parse(&collection, "collection")?,
                    rkey: parse(&rkey, "record key")?,
                    boundaries: split_boundaries(&boundaries)?,
                })
            })
            .collect()
        })
        .await
    }

    async fn list_blobs(&self, did: &Did, query: &BlobListQuery) -> RepoResult<Vec<Cid>> {
        let query = query.clone();
        self.with(did, move |conn| {
            let Some((filter, filter_values)) = filter_clause(&query.filter, "rb") else {
                return Ok(Vec::new());
            };
            let mut sql = String::from("SELECT DISTINCT rb.cid FROM record_blob rb WHERE 1 = 1");
            let mut values = Vec::new();
            if let Some(cursor) = &query.cursor {
                sql.push_str(" AND rb.cid > ?");
                values.push(Value::Text(cursor.clone()));
            }
            if let Some(since) = &query.since {
                sql.push_str(" AND rb.rev > ?");
                values.push(Value::Text(since.to_string()));
            }
            sql.push_str(&filter);
            values.extend(filter_values);
            sql.push_str(" ORDER BY rb.cid ASC LIMIT ?");
            values.push(limit_value(query.limit));
            let mut statement = conn.prepare_cached(&sql)?;
            let rows = statement.query_map(params_from_iter(values), |r| r.get::<_, String>(0))?;
            rows.map(|cid| parse_cid(&cid?)).collect()
        })
        .await
    }

    async fn release_blobs(
        &self,
        did: &Did,
        uploads_before_ms: i64,
    ) -> RepoResult<Vec<ReleasedBlob>> {
        self.with(did, move |conn| {
            // One statement, so a blob is handed out once even with concurrent callers.
            let mut statement = conn.prepare_cached(
                "DELETE FROM blob WHERE released = 1 \
                 OR (temp_key IS NOT NULL AND created_ms < ?1) RETURNING cid, temp_key",
            )?;
            let rows = statement.query_map(params![uploads_before_ms], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
            })?;
            rows.map(|row| {
                let (cid, temp_key) = row?;
                Ok(ReleasedBlob {
                    cid: parse_cid(&cid)?,
                    temp_key,
                })
            })
            .collect()
        })
        .await
    }
}
