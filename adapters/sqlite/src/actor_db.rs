//! Per-actor databases: one SQLite file per actor at
//! `{data}/actors/{first two hex digits of sha256(did)}/{did}/stratos.sqlite`, reached through
//! `rusqlite` on tokio's blocking pool.
//!
//! Why not sqlx like `service.sqlite`: sqlx-sqlite runs each connection on its own thread and
//! crosses threads twice per statement; a commit is about ten statements, and with 50 writers
//! those hand-offs were a quarter of all CPU samples. Here a whole operation (a commit with all
//! its statements, or one read) is a single closure run on a blocking thread: two hand-offs per
//! operation, prepared statements cached per connection (docs/decisions.md, docs/performance.md).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use stratos_domain::syntax::Did;

use stratos_ports::storage_sql::ServiceSql;

use crate::SqliteError;
use crate::db::Durability;

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
);";

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
CREATE INDEX IF NOT EXISTS record_blob_path ON record_blob (collection, rkey);";

/// The actor schema version (`PRAGMA user_version`) this build writes: 1 added blob tracking,
/// 2 the outbox's dead-letter columns (`last_error`, `dead_ms`).
const ACTOR_SCHEMA_VERSION: i64 = 2;

/// Open actor databases kept before one is closed.
const MAX_OPEN: usize = 512;

/// Prepared statements kept per connection: every statement of the commit path and the reads,
/// with room for the few whose text depends on the number of boundaries in a filter.
const STATEMENT_CACHE: usize = 64;

/// Commits between two background checkpoints of an actor's WAL. A commit writes about 35
/// pages on a 10k-record repository, so a background checkpoint runs about twice between two of
/// the writer's own checkpoints ([`WRITER_AUTOCHECKPOINT`]).
const CHECKPOINT_EVERY: u32 = 12;

/// The writer connection's own checkpoint threshold, in WAL pages (SQLite's default). Only the
/// writer can restart the log (a checkpoint that runs while commits keep appending never
/// catches up with them, and the WAL would grow without bound); by the time it runs, the
/// background checkpoints have copied most frames, so it copies only the last few.
const WRITER_AUTOCHECKPOINT: u32 = 1_000;

/// The directory of an actor's database.
pub fn actor_dir(root: &Path, did: &str) -> PathBuf {
    let hash = Sha256::digest(did.as_bytes());
    root.join("actors")
        .join(format!("{:02x}", hash[0]))
        .join(did)
}

/// One actor's database: a single connection, used by one operation at a time, and a
/// background checkpointer.
#[derive(Debug, Clone)]
pub(crate) struct ActorDb {
    conn: Arc<Mutex<Connection>>,
    checkpoints: Arc<Checkpointer>,
    gate: Arc<Semaphore>,
}

/// Copies WAL frames back into the database file from a second connection, off the commit
/// path. SQLite's automatic checkpoint runs inside the commit that crosses the threshold and
/// copies every frame since the last one: megabytes of writes and two flushes inside that
/// commit (the tail of the commit bench). Passive checkpoints from another connection do not
/// block the writer and leave its own checkpoint little to copy.
#[derive(Debug)]
struct Checkpointer {
    file: PathBuf,
    durability: Durability,
    commits: AtomicU32,
    running: AtomicBool,
    conn: Mutex<Option<Connection>>,
}

impl Checkpointer {
    fn run(&self) -> Result<(), SqliteError> {
        let mut conn = lock(&self.conn);
        if conn.is_none() {
            *conn = Some(connect(&self.file, self.durability, false)?);
        }
        if let Some(conn) = conn.as_ref() {
            conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
        }
        Ok(())
    }
}

impl ActorDb {
    fn new(conn: Connection, file: PathBuf, durability: Durability, gate: Arc<Semaphore>) -> Self {
        Self {
            gate,
            conn: Arc::new(Mutex::new(conn)),
            checkpoints: Arc::new(Checkpointer {
                file,
                durability,
                commits: AtomicU32::new(0),
                running: AtomicBool::new(false),
                conn: Mutex::new(None),
            }),
        }
    }

    /// Counts a commit; every [`CHECKPOINT_EVERY`] commits a passive checkpoint starts in the
    /// background (one at a time per actor). A failed or skipped one only leaves more for the
    /// writer's own checkpoint.
    pub(crate) fn committed(&self) {
        let c = &self.checkpoints;
        if c.commits.fetch_add(1, Ordering::Relaxed) + 1 < CHECKPOINT_EVERY {
            return;
        }
        if c.running.swap(true, Ordering::AcqRel) {
            return;
        }
        c.commits.store(0, Ordering::Relaxed);
        let c = c.clone();
        tokio::task::spawn_blocking(move || {
            let _ = c.run();
            c.running.store(false, Ordering::Release);
        });
    }

    /// Runs `f` with the connection on tokio's blocking pool. `f` is the whole operation (a
    /// transaction or a read), so the thread hand-off is paid once per operation. At most
    /// [`ActorDbs`]' gate of operations run at once, across all actors.
    pub(crate) async fn call<R, F>(&self, f: F) -> Result<R, SqliteError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, SqliteError> + Send + 'static,
    {
        let _permit = self
            .gate
            .acquire()
            .await
            .map_err(|e| SqliteError::Worker(e.to_string()))?;
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || f(&mut lock(&conn)))
            .await
            .map_err(|e| SqliteError::Worker(e.to_string()))?
    }
}

/// A poisoned lock only means an earlier operation panicked; its transaction was rolled back
/// when it unwound, so the connection (or map) is still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A connection to an actor's file with the chosen durability.
fn connect(file: &Path, durability: Durability, create: bool) -> Result<Connection, SqliteError> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(file, flags)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))?;
    conn.pragma_update(
        None,
        "synchronous",
        match durability {
            Durability::Durable => "FULL",
            Durability::Relaxed => "NORMAL",
        },
    )?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

/// Opens the writer connection of an actor's file (creating the file and its tables when
/// `create`) and brings its schema to [`ACTOR_SCHEMA_VERSION`].
fn open_file(file: &Path, durability: Durability, create: bool) -> Result<Connection, SqliteError> {
    let conn = connect(file, durability, create)?;
    conn.pragma_update(None, "wal_autocheckpoint", WRITER_AUTOCHECKPOINT)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    if create {
        conn.execute_batch(ACTOR_SCHEMA)?;
    }
    upgrade(&conn)?;
    Ok(conn)
}

/// Databases of an older schema version are brought up to date when first opened (a new file
/// starts at version 0 and takes the same steps): blob tracking's tables (1), the outbox's
/// dead-letter columns (2, from the shared statements; a column already there is left alone).
fn upgrade(conn: &Connection) -> Result<(), SqliteError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version < 1 {
        conn.execute_batch(BLOB_SCHEMA)?;
        conn.pragma_update(None, "user_version", 1)?;
    }
    if version < 2 {
        for (column, ddl) in ServiceSql::account_outbox().outbox_added_columns() {
            let present: bool = conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM pragma_table_info('outbox') WHERE name = ?1)",
                [column],
                |r| r.get(0),
            )?;
            if !present {
                conn.execute_batch(&ddl)?;
            }
        }
        conn.pragma_update(None, "user_version", ACTOR_SCHEMA_VERSION)?;
    }
    Ok(())
}

/// Database operations on actor files that may run at once, per core. Each runs on its own
/// blocking thread; with one per waiting request (50 writers → 50 runnable threads on 2 cores)
/// the scheduler's time slices left the async workers waiting tens of milliseconds for their
/// turn, and with them every response and stream frame (fan-out p99: 109 ms commit→socket,
/// 6 ms with the gate). Four per core still overlaps the flushes of durable commits.
const OPS_PER_CORE: usize = 4;

/// Opens actor databases on demand and keeps them open.
#[derive(Debug)]
pub(crate) struct ActorDbs {
    root: PathBuf,
    durability: Durability,
    open: Mutex<HashMap<String, ActorDb>>,
    gate: Arc<Semaphore>,
}

impl ActorDbs {
    pub(crate) fn new(root: PathBuf, durability: Durability) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            root,
            durability,
            open: Mutex::new(HashMap::new()),
            gate: Arc::new(Semaphore::new(cores * OPS_PER_CORE)),
        }
    }

    fn file(&self, did: &str) -> PathBuf {
        actor_dir(&self.root, did).join("stratos.sqlite")
    }

    /// Open actor databases now, those of them not in use, and the most kept open.
    pub(crate) fn figures(&self) -> (usize, usize, usize) {
        let open = lock(&self.open);
        // A connection whose lock is free is idle; `try_lock` never waits.
        let idle = open
            .values()
            .filter(|db| db.conn.try_lock().is_ok())
            .count();
        (open.len(), idle, MAX_OPEN)
    }

    fn cached(&self, did: &str) -> Option<ActorDb> {
        lock(&self.open).get(did).cloned()
    }

    /// Keeps `db` as the actor's open database, unless another task opened one first (then
    /// that one is used, so there is one connection per file in this process).
    fn keep(&self, did: &str, db: ActorDb) -> ActorDb {
        let mut open = lock(&self.open);
        if let Some(existing) = open.get(did) {
            return existing.clone();
        }
        if open.len() >= MAX_OPEN
            && let Some(victim) = open.keys().next().cloned()
        {
            open.remove(&victim);
        }
        open.insert(did.to_owned(), db.clone());
        db
    }

    async fn open_blocking(&self, file: PathBuf, create: bool) -> Result<ActorDb, SqliteError> {
        let durability = self.durability;
        let path = file.clone();
        let conn = tokio::task::spawn_blocking(move || {
            if create && let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            open_file(&path, durability, create)
        })
        .await
        .map_err(|e| SqliteError::Worker(e.to_string()))??;
        Ok(ActorDb::new(conn, file, durability, self.gate.clone()))
    }

    /// The actor's database, `None` when the actor has no store.
    pub(crate) async fn get(&self, did: &str) -> Result<Option<ActorDb>, SqliteError> {
        if let Some(db) = self.cached(did) {
            return Ok(Some(db));
        }
        let file = self.file(did);
        if !tokio::fs::try_exists(&file).await.unwrap_or(false) {
            return Ok(None);
        }
        let db = self.open_blocking(file, false).await?;
        Ok(Some(self.keep(did, db)))
    }

    pub(crate) async fn require(&self, did: &Did) -> Result<ActorDb, SqliteError> {
        self.get(did.as_str())
            .await?
            .ok_or_else(|| SqliteError::ActorNotFound(did.clone()))
    }

    pub(crate) async fn create(&self, did: &str) -> Result<(), SqliteError> {
        let db = self.open_blocking(self.file(did), true).await?;
        self.keep(did, db);
        Ok(())
    }

    pub(crate) async fn destroy(&self, did: &str) -> Result<(), SqliteError> {
        // The connection closes when the last operation holding it ends.
        lock(&self.open).remove(did);
        let dir = actor_dir(&self.root, did);
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
