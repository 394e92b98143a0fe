//! The AppView index on PostgreSQL: the tables of reference §1.9 (`stratos_post`,
//! `stratos_post_boundary`, `stratos_enrollment`, `stratos_sync_cursor`, camel-case columns as
//! the AppView fork reads them) in a schema of the AppView's database (`bsky` by default), plus
//! `stratos_service_cursor` and `stratos_appview_schema` (the schema version).
//!
//! Differences from the reference, each for a reason: `sortAt` is a plain column computed by
//! the indexer (UTC, milliseconds) rather than a generated `LEAST` of two strings in whatever
//! format the records used, and it is copied into `stratos_post_boundary` so that a timeline is
//! one index range per viewer boundary (`(boundary, sortAt DESC, uri DESC)`) instead of a scan of
//! every post checking boundaries; `seq` is a `bigint`; the cursor row keeps the revision the
//! index reflects (`rev`), which a backfill needs to skip frames it already contains.
//!
//! Every batch is one transaction; rows travel as array parameters (`unnest`), never as a
//! variable number of placeholders.

use async_trait::async_trait;
use sea_orm::sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sea_orm::sqlx::{self, AssertSqlSafe, ConnectOptions as _, Postgres, Row as _};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use stratos_domain::Cid;
use stratos_domain::appview::PostRow;
use stratos_domain::syntax::{AtUri, Datetime, Did, RecordKey, Tid};
use stratos_ports::Cause;
use stratos_ports::appview_store::{
    ActorCursor, EnrollmentChange, FeedPage, FeedQuery, FeedStore, IndexBatch, IndexResult,
    IndexStoreError, IndexWriter, IndexedEnrollment, PostChange,
};

use crate::PostgresError;

/// The schema version this build writes (`stratos_appview_schema`).
pub const APPVIEW_SCHEMA_VERSION: i64 = 1;

/// Where the AppView index lives.
#[derive(Clone, PartialEq, Eq)]
pub struct AppViewConfig {
    /// `postgres://…` of the AppView's database.
    pub url: String,
    /// The schema holding the tables (`[a-z_][a-z0-9_]*`, created if missing).
    pub schema: String,
    /// Pool size.
    pub pool_size: u32,
}

impl std::fmt::Debug for AppViewConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password.
        f.debug_struct("AppViewConfig")
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .finish_non_exhaustive()
    }
}

/// Statements, built once for the schema.
#[derive(Debug)]
struct Sql {
    upsert_posts: String,
    delete_posts: String,
    delete_boundaries: String,
    insert_boundaries: String,
    delete_actor_boundaries: String,
    delete_actor_posts: String,
    upsert_cursors: String,
    cursors: String,
    feed: String,
    feed_after: String,
    author: String,
    author_after: String,
    author_all: String,
    author_all_after: String,
    post: String,
    replies: String,
    enrollment: String,
    enrollments: String,
    upsert_enrollment: String,
    delete_enrollment: String,
    delete_cursor: String,
    upsert_service_cursor: String,
    service_cursor: String,
}

const POST_COLUMNS: &str = "p.uri, p.cid, p.creator, p.rkey, p.text, p.\"replyRoot\", \
     p.\"replyRootCid\", p.\"replyParent\", p.\"replyParentCid\", p.embed, p.facets, p.langs, \
     p.labels, p.tags, p.\"createdAt\", p.\"indexedAt\", p.\"sortAt\"";

impl Sql {
    fn new(s: &str) -> Self {
        let cols = POST_COLUMNS;
        let boundaries = format!(
            "ARRAY(SELECT pb.boundary FROM {s}.stratos_post_boundary pb WHERE pb.uri = p.uri ORDER BY pb.boundary)"
        );
        let select = format!("SELECT {cols}, {boundaries} FROM {s}.stratos_post p");
        // One index range per boundary, merged: the page is the newest `limit` of their union.
        let feed = |after: bool| {
            let cond = if after {
                "AND (b.\"sortAt\", b.uri) < ($3, $4)"
            } else {
                ""
            };
            format!(
                "{select} JOIN (SELECT DISTINCT x.uri, x.\"sortAt\" FROM unnest($1::text[]) AS v(boundary) \
                 CROSS JOIN LATERAL (SELECT b.uri, b.\"sortAt\" FROM {s}.stratos_post_boundary b \
                 WHERE b.boundary = v.boundary {cond} ORDER BY b.\"sortAt\" DESC, b.uri DESC LIMIT $2) x \
                 ORDER BY x.\"sortAt\" DESC, x.uri DESC LIMIT $2) page ON page.uri = p.uri \
                 ORDER BY p.\"sortAt\" DESC, p.uri DESC"
            )
        };
        // Author feeds: `$1` boundaries, `$2` limit, `$3` author, `$4`/`$5` cursor; without a
        // boundary filter (the author's own feed) `$1` limit, `$2` author, `$3`/`$4` cursor.
        let author = |all: bool, after: bool| {
            let (filter, limit, who, c1, c2) = if all {
                (String::new(), "$1", "$2", "$3", "$4")
            } else {
                (
                    format!(
                        "AND EXISTS (SELECT 1 FROM {s}.stratos_post_boundary b WHERE b.uri = p.uri AND b.boundary = ANY($1::text[]))"
                    ),
                    "$2",
                    "$3",
                    "$4",
                    "$5",
                )
            };
            let cond = if after {
                format!("AND (p.\"sortAt\", p.uri) < ({c1}, {c2})")
            } else {
                String::new()
            };
            format!(
                "{select} WHERE p.creator = {who} {filter} {cond} ORDER BY p.\"sortAt\" DESC, p.uri DESC LIMIT {limit}"
            )
        };
        Self {
            upsert_posts: format!(
                "INSERT INTO {s}.stratos_post (uri, cid, creator, rkey, text, \"replyRoot\", \"replyRootCid\", \
                 \"replyParent\", \"replyParentCid\", embed, facets, langs, labels, tags, \"createdAt\", \"indexedAt\", \"sortAt\") \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
                 $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[], $17::text[]) \
                 ON CONFLICT (uri) DO UPDATE SET cid = EXCLUDED.cid, text = EXCLUDED.text, \
                 \"replyRoot\" = EXCLUDED.\"replyRoot\", \"replyRootCid\" = EXCLUDED.\"replyRootCid\", \
                 \"replyParent\" = EXCLUDED.\"replyParent\", \"replyParentCid\" = EXCLUDED.\"replyParentCid\", \
                 embed = EXCLUDED.embed, facets = EXCLUDED.facets, langs = EXCLUDED.langs, labels = EXCLUDED.labels, \
                 tags = EXCLUDED.tags, \"indexedAt\" = EXCLUDED.\"indexedAt\""
            ),
            delete_posts: format!("DELETE FROM {s}.stratos_post WHERE uri = ANY($1::text[])"),
            delete_boundaries: format!(
                "DELETE FROM {s}.stratos_post_boundary WHERE uri = ANY($1::text[])"
            ),
            insert_boundaries: format!(
                "INSERT INTO {s}.stratos_post_boundary (uri, boundary, \"sortAt\") \
                 SELECT b.uri, b.boundary, p.\"sortAt\" FROM unnest($1::text[], $2::text[]) AS b(uri, boundary) \
                 JOIN {s}.stratos_post p ON p.uri = b.uri ON CONFLICT DO NOTHING"
            ),
            delete_actor_boundaries: format!(
                "DELETE FROM {s}.stratos_post_boundary WHERE uri IN (SELECT uri FROM {s}.stratos_post WHERE creator = $1)"
            ),
            delete_actor_posts: format!("DELETE FROM {s}.stratos_post WHERE creator = $1"),
            upsert_cursors: format!(
                "INSERT INTO {s}.stratos_sync_cursor (did, seq, rev, \"updatedAt\") \
                 SELECT d, q, r, $4 FROM unnest($1::text[], $2::bigint[], $3::text[]) AS c(d, q, r) \
                 ON CONFLICT (did) DO UPDATE SET seq = EXCLUDED.seq, rev = EXCLUDED.rev, \"updatedAt\" = EXCLUDED.\"updatedAt\""
            ),
            cursors: format!("SELECT did, seq, rev FROM {s}.stratos_sync_cursor"),
            feed: feed(false),
            feed_after: feed(true),
            author: author(false, false),
            author_after: author(false, true),
            author_all: author(true, false),
            author_all_after: author(true, true),
            post: format!("{select} WHERE p.uri = $1"),
            replies: format!(
                "{select} WHERE p.\"replyParent\" = $1 ORDER BY p.\"sortAt\", p.uri LIMIT $2"
            ),
            enrollment: format!(
                "SELECT did, \"serviceUrl\", \"enrolledAt\", boundaries FROM {s}.stratos_enrollment WHERE did = $1"
            ),
            enrollments: format!(
                "SELECT did, \"serviceUrl\", \"enrolledAt\", boundaries FROM {s}.stratos_enrollment ORDER BY did"
            ),
            upsert_enrollment: format!(
                "INSERT INTO {s}.stratos_enrollment (did, \"serviceUrl\", \"enrolledAt\", \"lastChecked\", boundaries) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (did) DO UPDATE SET \"serviceUrl\" = EXCLUDED.\"serviceUrl\", \
                 \"enrolledAt\" = EXCLUDED.\"enrolledAt\", \"lastChecked\" = EXCLUDED.\"lastChecked\", boundaries = EXCLUDED.boundaries"
            ),
            delete_enrollment: format!("DELETE FROM {s}.stratos_enrollment WHERE did = $1"),
            delete_cursor: format!("DELETE FROM {s}.stratos_sync_cursor WHERE did = $1"),
            upsert_service_cursor: format!(
                "INSERT INTO {s}.stratos_service_cursor (service, seq, \"updatedAt\") VALUES ($1, $2, $3) \
                 ON CONFLICT (service) DO UPDATE SET seq = EXCLUDED.seq, \"updatedAt\" = EXCLUDED.\"updatedAt\""
            ),
            service_cursor: format!(
                "SELECT seq FROM {s}.stratos_service_cursor WHERE service = $1"
            ),
        }
    }
}

/// The DDL of schema version 1.
fn create_tables(s: &str) -> Vec<String> {
    vec![
        format!("CREATE SCHEMA IF NOT EXISTS {s}"),
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.stratos_post (uri varchar PRIMARY KEY, cid varchar NOT NULL, \
             rkey varchar NOT NULL, creator varchar NOT NULL, text text NOT NULL DEFAULT '', \
             \"replyRoot\" varchar, \"replyRootCid\" varchar, \"replyParent\" varchar, \"replyParentCid\" varchar, \
             embed text, facets text, langs varchar, labels text, tags varchar, \
             \"createdAt\" varchar NOT NULL, \"indexedAt\" varchar NOT NULL, \"sortAt\" varchar NOT NULL)"
        ),
        format!(
            "CREATE INDEX IF NOT EXISTS stratos_post_creator_sort_at_idx ON {s}.stratos_post (creator, \"sortAt\" DESC, uri DESC)"
        ),
        format!(
            "CREATE INDEX IF NOT EXISTS stratos_post_reply_parent_idx ON {s}.stratos_post (\"replyParent\")"
        ),
        format!(
            "CREATE INDEX IF NOT EXISTS stratos_post_reply_root_idx ON {s}.stratos_post (\"replyRoot\")"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.stratos_post_boundary (uri varchar NOT NULL, boundary varchar NOT NULL, \
             \"sortAt\" varchar NOT NULL, PRIMARY KEY (uri, boundary))"
        ),
        format!(
            "CREATE INDEX IF NOT EXISTS stratos_post_boundary_feed_idx ON {s}.stratos_post_boundary (boundary, \"sortAt\" DESC, uri DESC)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.stratos_enrollment (did varchar PRIMARY KEY, \"serviceUrl\" varchar NOT NULL, \
             \"enrolledAt\" varchar NOT NULL, \"lastChecked\" varchar NOT NULL, boundaries text)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.stratos_sync_cursor (did varchar PRIMARY KEY, seq bigint NOT NULL DEFAULT 0, \
             rev varchar, \"updatedAt\" varchar NOT NULL)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.stratos_service_cursor (service varchar PRIMARY KEY, seq bigint NOT NULL, \
             \"updatedAt\" varchar NOT NULL)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.stratos_appview_schema (id int PRIMARY KEY CHECK (id = 1), version bigint NOT NULL)"
        ),
    ]
}

/// The index, on a pool of its own.
#[derive(Debug, Clone)]
pub struct PostgresAppViewIndex {
    pool: sqlx::PgPool,
    schema: String,
    sql: std::sync::Arc<Sql>,
}

fn backend(e: impl Into<PostgresError>) -> IndexStoreError {
    IndexStoreError::Backend(Cause::new(e.into()))
}

fn valid_schema(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn now() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    Datetime::from_unix_millis(ms).to_string()
}

impl PostgresAppViewIndex {
    /// Connects and brings the schema to [`APPVIEW_SCHEMA_VERSION`] (under an advisory lock, so
    /// that two indexers starting together do not both create it).
    pub async fn connect(config: &AppViewConfig) -> Result<Self, PostgresError> {
        if !valid_schema(&config.schema) {
            return Err(PostgresError::BadPrefix(config.schema.clone()));
        }
        let options: PgConnectOptions = config.url.parse()?;
        let pool = PgPoolOptions::new()
            .max_connections(config.pool_size.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.disable_statement_logging())
            .await?;
        let schema = format!("\"{}\"", config.schema);
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(format!("stratos-appview-schema:{}", config.schema))
            .execute(&mut *tx)
            .await?;
        for ddl in create_tables(&schema) {
            sqlx::query(safe(&ddl)).execute(&mut *tx).await?;
        }
        let version: Option<i64> = sqlx::query_scalar(safe(&format!(
            "SELECT version FROM {schema}.stratos_appview_schema WHERE id = 1"
        )))
        .fetch_optional(&mut *tx)
        .await?;
        match version {
            None => {
                sqlx::query(safe(&format!(
                    "INSERT INTO {schema}.stratos_appview_schema (id, version) VALUES (1, $1)"
                )))
                .bind(APPVIEW_SCHEMA_VERSION)
                .execute(&mut *tx)
                .await?;
            }
            Some(v) if v > APPVIEW_SCHEMA_VERSION => {
                return Err(PostgresError::Corrupt(format!(
                    "the AppView schema is at version {v}, newer than this build's {APPVIEW_SCHEMA_VERSION}"
                )));
            }
            Some(_) => {}
        }
        tx.commit().await?;
        Ok(Self {
            pool,
            sql: std::sync::Arc::new(Sql::new(&schema)),
            schema,
        })
    }

    /// Drops the schema and everything in it (tests).
    pub async fn drop_schema(&self) -> Result<(), PostgresError> {
        sqlx::query(safe(&format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            self.schema
        )))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The pool (benchmarks and tools).
    pub fn pool(&self) -> &sqlx::PgPool {
        &self.pool
    }
}

/// Changes of one stretch of batches, reduced to their net effect: URIs to delete first, then
/// the rows to upsert.
#[derive(Default)]
struct Net<'a> {
    deleted: BTreeSet<String>,
    upserts: BTreeMap<String, &'a PostRow>,
    /// Accounts whose rows a backfill removed in this stretch: their new rows have no boundary
    /// rows to remove first (a backfill of 100k posts spent seconds on that delete).
    fresh: BTreeSet<&'a Did>,
}

impl<'a> Net<'a> {
    fn add(&mut self, change: &'a PostChange) {
        match change {
            PostChange::Upsert(row) => {
                self.upserts.insert(row.uri.to_string(), row);
            }
            PostChange::Delete(uri) => {
                self.upserts.remove(uri.as_str());
                self.deleted.insert(uri.to_string());
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.deleted.is_empty() && self.upserts.is_empty()
    }

    async fn flush(
        &mut self,
        tx: &mut sqlx::Transaction<'_, Postgres>,
        sql: &Sql,
    ) -> Result<(), sqlx::Error> {
        if self.is_empty() {
            return Ok(());
        }
        // A URI deleted and then written again in this stretch is deleted first, so the new
        // post starts afresh (as applying the changes one by one would).
        let deleted = std::mem::take(&mut self.deleted);
        let rows: Vec<&PostRow> = std::mem::take(&mut self.upserts).into_values().collect();
        let mut gone: Vec<String> = deleted.iter().cloned().collect();
        let deletes = gone.len();
        gone.extend(
            rows.iter()
                .filter(|r| !self.fresh.contains(&r.creator) || deleted.contains(r.uri.as_str()))
                .map(|r| r.uri.to_string()),
        );
        if !gone.is_empty() {
            sqlx::query(safe(&sql.delete_boundaries))
                .bind(&gone)
                .execute(&mut **tx)
                .await?;
        }
        gone.truncate(deletes);
        if !gone.is_empty() {
            sqlx::query(safe(&sql.delete_posts))
                .bind(&gone)
                .execute(&mut **tx)
                .await?;
        }
        if rows.is_empty() {
            return Ok(());
        }
        let col = |f: fn(&PostRow) -> Option<String>| rows.iter().map(|r| f(r)).collect::<Vec<_>>();
        sqlx::query(safe(&sql.upsert_posts))
            .bind(col(|r| Some(r.uri.to_string())))
            .bind(col(|r| Some(r.cid.to_string())))
            .bind(col(|r| Some(r.creator.to_string())))
            .bind(col(|r| Some(r.rkey.to_string())))
            .bind(col(|r| Some(r.text.clone())))
            .bind(col(|r| r.reply_root.clone()))
            .bind(col(|r| r.reply_root_cid.clone()))
            .bind(col(|r| r.reply_parent.clone()))
            .bind(col(|r| r.reply_parent_cid.clone()))
            .bind(col(|r| r.embed.clone()))
            .bind(col(|r| r.facets.clone()))
            .bind(col(|r| r.langs.clone()))
            .bind(col(|r| r.labels.clone()))
            .bind(col(|r| r.tags.clone()))
            .bind(col(|r| Some(r.created_at.clone())))
            .bind(col(|r| Some(r.indexed_at.clone())))
            .bind(col(|r| Some(r.sort_at.clone())))
            .execute(&mut **tx)
            .await?;
        let (uris, boundaries): (Vec<String>, Vec<String>) = rows
            .iter()
            .flat_map(|r| r.boundaries.iter().map(|b| (r.uri.to_string(), b.clone())))
            .unzip();
        if !uris.is_empty() {
            sqlx::query(safe(&sql.insert_boundaries))
                .bind(uris)
                .bind(boundaries)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }
}

/// Statements are built here from a validated schema name and constant text only.
fn safe(sql: &str) -> AssertSqlSafe<&str> {
    AssertSqlSafe(sql)
}

fn corrupt(what: &str) -> IndexStoreError {
    IndexStoreError::Corrupt(format!("stored {what} does not parse"))
}

fn decode_post(row: &PgRow) -> IndexResult<PostRow> {
    let text = |i: usize| -> IndexResult<String> { row.try_get(i).map_err(backend) };
    let opt = |i: usize| -> IndexResult<Option<String>> { row.try_get(i).map_err(backend) };
    let boundaries: Vec<String> = row.try_get(17).map_err(backend)?;
    Ok(PostRow {
        uri: AtUri::parse(&text(0)?).map_err(|_| corrupt("URI"))?,
        cid: Cid::try_from(text(1)?.as_str()).map_err(|_| corrupt("CID"))?,
        creator: Did::parse(&text(2)?).map_err(|_| corrupt("DID"))?,
        rkey: RecordKey::parse(&text(3)?).map_err(|_| corrupt("record key"))?,
        text: text(4)?,
        reply_root: opt(5)?,
        reply_root_cid: opt(6)?,
        reply_parent: opt(7)?,
        reply_parent_cid: opt(8)?,
        embed: opt(9)?,
        facets: opt(10)?,
        langs: opt(11)?,
        labels: opt(12)?,
        tags: opt(13)?,
        created_at: text(14)?,
        indexed_at: text(15)?,
        sort_at: text(16)?,
        boundaries,
    })
}

fn decode_enrollment(row: &PgRow) -> IndexResult<IndexedEnrollment> {
    let did: String = row.try_get(0).map_err(backend)?;
    let boundaries: Option<String> = row.try_get(3).map_err(backend)?;
    let boundaries = match boundaries {
        Some(json) => serde_json::from_str(&json).map_err(|_| corrupt("boundaries"))?,
        None => Vec::new(),
    };
    Ok(IndexedEnrollment {
        did: Did::parse(&did).map_err(|_| corrupt("DID"))?,
        service_url: row.try_get(1).map_err(backend)?,
        enrolled_at: row.try_get(2).map_err(backend)?,
        boundaries,
    })
}

#[async_trait]
impl IndexWriter for PostgresAppViewIndex {
    async fn apply(&self, batches: &[IndexBatch]) -> IndexResult<()> {
        let run = async {
            let mut tx = self.pool.begin().await?;
            let mut net = Net::default();
            let mut cursors: BTreeMap<&Did, &ActorCursor> = BTreeMap::new();
            for batch in batches {
                if batch.replace {
                    net.flush(&mut tx, &self.sql).await?;
                    net.fresh.clear();
                    net.fresh.insert(&batch.did);
                    for stmt in [
                        &self.sql.delete_actor_boundaries,
                        &self.sql.delete_actor_posts,
                    ] {
                        sqlx::query(safe(stmt))
                            .bind(batch.did.as_str())
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                for change in &batch.changes {
                    net.add(change);
                }
                cursors.insert(&batch.did, &batch.cursor);
            }
            net.flush(&mut tx, &self.sql).await?;
            if !cursors.is_empty() {
                let dids: Vec<&str> = cursors.keys().map(|d| d.as_str()).collect();
                let seqs: Vec<i64> = cursors
                    .values()
                    .map(|c| i64::try_from(c.seq).unwrap_or(i64::MAX))
                    .collect();
                let revs: Vec<Option<String>> = cursors
                    .values()
                    .map(|c| c.rev.as_ref().map(ToString::to_string))
                    .collect();
                sqlx::query(safe(&self.sql.upsert_cursors))
                    .bind(dids)
                    .bind(seqs)
                    .bind(revs)
                    .bind(now())
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await
        };
        run.await.map_err(backend)
    }

    async fn cursors(&self) -> IndexResult<Vec<(Did, ActorCursor)>> {
        let rows = sqlx::query(safe(&self.sql.cursors))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter()
            .map(|row| {
                let did: String = row.try_get(0).map_err(backend)?;
                let seq: i64 = row.try_get(1).map_err(backend)?;
                let rev: Option<String> = row.try_get(2).map_err(backend)?;
                Ok((
                    Did::parse(&did).map_err(|_| corrupt("DID"))?,
                    ActorCursor {
                        seq: u64::try_from(seq).map_err(|_| corrupt("seq"))?,
                        rev: rev
                            .map(|r| Tid::parse(&r).map_err(|_| corrupt("rev")))
                            .transpose()?,
                    },
                ))
            })
            .collect()
    }

    async fn apply_enrollment(
        &self,
        change: &EnrollmentChange,
        service_seq: Option<(&str, u64)>,
    ) -> IndexResult<()> {
        let run = async {
            let mut tx = self.pool.begin().await?;
            match change {
                EnrollmentChange::Upsert(e) => {
                    let boundaries =
                        serde_json::to_string(&e.boundaries).unwrap_or_else(|_| "[]".into());
                    sqlx::query(safe(&self.sql.upsert_enrollment))
                        .bind(e.did.as_str())
                        .bind(&e.service_url)
                        .bind(&e.enrolled_at)
                        .bind(now())
                        .bind(boundaries)
                        .execute(&mut *tx)
                        .await?;
                }
                EnrollmentChange::Remove(did) => {
                    for stmt in [
                        &self.sql.delete_enrollment,
                        &self.sql.delete_cursor,
                        &self.sql.delete_actor_boundaries,
                        &self.sql.delete_actor_posts,
                    ] {
                        sqlx::query(safe(stmt))
                            .bind(did.as_str())
                            .execute(&mut *tx)
                            .await?;
                    }
                }
            }
            if let Some((service, seq)) = service_seq {
                sqlx::query(safe(&self.sql.upsert_service_cursor))
                    .bind(service)
                    .bind(i64::try_from(seq).unwrap_or(i64::MAX))
                    .bind(now())
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await
        };
        run.await.map_err(backend)
    }

    async fn service_cursor(&self, service_url: &str) -> IndexResult<Option<u64>> {
        let seq: Option<i64> = sqlx::query_scalar(safe(&self.sql.service_cursor))
            .bind(service_url)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        seq.map(|s| u64::try_from(s).map_err(|_| corrupt("seq")))
            .transpose()
    }

    async fn set_service_cursor(&self, service_url: &str, seq: u64) -> IndexResult<()> {
        sqlx::query(safe(&self.sql.upsert_service_cursor))
            .bind(service_url)
            .bind(i64::try_from(seq).unwrap_or(i64::MAX))
            .bind(now())
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(backend)
    }

    async fn enrollments(&self) -> IndexResult<Vec<IndexedEnrollment>> {
        let rows = sqlx::query(safe(&self.sql.enrollments))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter().map(decode_enrollment).collect()
    }

    async fn ping(&self) -> IndexResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(backend)
    }
}

#[async_trait]
impl FeedStore for PostgresAppViewIndex {
    async fn feed(&self, query: &FeedQuery) -> IndexResult<FeedPage> {
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        if limit == 0 || query.boundaries.as_ref().is_some_and(Vec::is_empty) {
            return Ok(FeedPage {
                posts: Vec::new(),
                cursor: None,
            });
        }
        let after = query.after.as_ref();
        let sql = match (&query.author, &query.boundaries, after.is_some()) {
            (None, None, _) => {
                return Ok(FeedPage {
                    posts: Vec::new(),
                    cursor: None,
                });
            }
            (None, Some(_), false) => &self.sql.feed,
            (None, Some(_), true) => &self.sql.feed_after,
            (Some(_), Some(_), false) => &self.sql.author,
            (Some(_), Some(_), true) => &self.sql.author_after,
            (Some(_), None, false) => &self.sql.author_all,
            (Some(_), None, true) => &self.sql.author_all_after,
        };
        let mut q = sqlx::query(safe(sql));
        if let Some(boundaries) = &query.boundaries {
            q = q.bind(boundaries);
        }
        q = q.bind(limit);
        if let Some(author) = &query.author {
            q = q.bind(author.as_str());
        }
        if let Some(c) = after {
            q = q.bind(&c.sort_at).bind(&c.uri);
        }
        let rows = q.fetch_all(&self.pool).await.map_err(backend)?;
        let posts = rows
            .iter()
            .map(decode_post)
            .collect::<IndexResult<Vec<_>>>()?;
        let cursor = (posts.len() == query.limit)
            .then(|| posts.last().map(PostRow::position))
            .flatten();
        Ok(FeedPage { posts, cursor })
    }

    async fn post(&self, uri: &AtUri) -> IndexResult<Option<PostRow>> {
        let row = sqlx::query(safe(&self.sql.post))
            .bind(uri.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(decode_post).transpose()
    }

    async fn replies(&self, uri: &AtUri, limit: usize) -> IndexResult<Vec<PostRow>> {
        let rows = sqlx::query(safe(&self.sql.replies))
            .bind(uri.as_str())
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter().map(decode_post).collect()
    }

    async fn enrollment(&self, did: &Did) -> IndexResult<Option<IndexedEnrollment>> {
        let row = sqlx::query(safe(&self.sql.enrollment))
            .bind(did.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(decode_enrollment).transpose()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn schema_names_are_checked() {
        assert!(super::valid_schema("bsky"));
        assert!(super::valid_schema("t_1"));
        for bad in ["", "Bsky", "1a", "a-b", "a\"b"] {
            assert!(!super::valid_schema(bad), "{bad}");
        }
    }
}
