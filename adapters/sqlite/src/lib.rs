//! SQLite adapter: the embedded default storage of Stratos.
//!
//! Layout under the data directory:
//! - `service.sqlite`: enrollments, boundaries, signing keys, OAuth states and sessions, outbox
//!   bookkeeping;
//! - `actors/{first two hex digits of sha256(did)}/{did}/stratos.sqlite`: one database per
//!   actor with its blocks, head, record index, sequence log and outbox items.
//!
//! Every database runs in WAL mode; [`Durability`] chooses what a power loss may cost. The
//! service database goes through sea-orm (sqlx-sqlite); the actor databases, which take every
//! commit, through `rusqlite` on the blocking pool (see `src/actor_db.rs` for why).
#![deny(missing_docs)] // a library crate: every public item is documented (checked in CI)

mod actor_db;
mod db;
mod legacy;
mod outbox;
mod repo;
mod service;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sea_orm::DbErr;
use stratos_domain::syntax::Did;
use stratos_ports::repo_store::RepoStoreError;
use stratos_ports::{Cause, Storage, StorageParts};

pub use actor_db::actor_dir;
pub use db::Durability;
pub use legacy::TsSqliteSource;
pub use outbox::SqliteOutbox;
pub use repo::SqliteRepoStore;
pub use service::{SqliteEnrollmentStore, SqliteKeyStore, SqliteOAuthStore};

use crate::actor_db::ActorDbs;
use crate::outbox::OutboxHints;

/// Failures of this adapter (mapped into each port's error at the trait boundary).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SqliteError {
    /// SQLite or the driver failed (service database).
    #[error("sqlite: {0}")]
    Db(#[source] Cause),
    /// SQLite failed (actor database).
    #[error("sqlite: {0}")]
    Sqlite(#[source] Cause),
    /// A blocking database task did not finish (it panicked, or the runtime shut down).
    #[error("database task: {0}")]
    Worker(String),
    /// The file system failed.
    #[error("file system: {0}")]
    Io(#[from] std::io::Error),
    /// The actor has no database.
    #[error("no repository for {0}")]
    ActorNotFound(Did),
    /// The head moved (compare-and-swap lost).
    #[error("the repository head moved")]
    Conflict,
    /// A commit disagrees with the stored record index.
    #[error("record index out of step: {0}")]
    IndexMismatch(String),
    /// A commit references a blob the actor has not uploaded (or one released meanwhile).
    #[error("blob not found: {0}")]
    BlobMissing(String),
    /// The database was migrated by a newer build.
    #[error(transparent)]
    SchemaTooNew(#[from] stratos_ports::storage_sql::migrations::SchemaTooNew),
    /// Stored data could not be decoded.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// A shared statement could not be built.
    #[error("{0}")]
    Sql(#[from] stratos_ports::storage_sql::SqlError),
}

impl From<DbErr> for SqliteError {
    fn from(e: DbErr) -> Self {
        SqliteError::Db(Cause::new(e))
    }
}

impl From<rusqlite::Error> for SqliteError {
    fn from(e: rusqlite::Error) -> Self {
        SqliteError::Sqlite(Cause::new(e))
    }
}

impl From<stratos_ports::storage_codec::CodecError> for SqliteError {
    fn from(e: stratos_ports::storage_codec::CodecError) -> Self {
        SqliteError::Corrupt(e.to_string())
    }
}

pub(crate) fn repo_err(e: SqliteError) -> RepoStoreError {
    match e {
        SqliteError::ActorNotFound(did) => RepoStoreError::ActorNotFound(did),
        SqliteError::Conflict => RepoStoreError::Conflict(String::new()),
        SqliteError::IndexMismatch(m) => RepoStoreError::IndexMismatch(m),
        SqliteError::Corrupt(m) => RepoStoreError::Corrupt(m),
        SqliteError::BlobMissing(cid) => RepoStoreError::BlobMissing(cid),
        other => RepoStoreError::Backend(stratos_ports::Cause::new(other)),
    }
}

/// The current time as RFC 3339, for the migration history.
fn now_rfc3339() -> String {
    use stratos_ports::env::{Clock as _, SystemClock};
    stratos_domain::syntax::Datetime::from_unix_millis(SystemClock.now_ms()).to_string()
}

/// Every port this adapter implements, over one data directory.
#[derive(Debug, Clone)]
pub struct SqliteStorage {
    /// Per-actor repositories.
    pub repos: SqliteRepoStore,
    /// Enrollments.
    pub enrollments: SqliteEnrollmentStore,
    /// Signing keys.
    pub keys: SqliteKeyStore,
    /// The PDS-write outbox.
    pub outbox: SqliteOutbox,
    /// OAuth states and sessions.
    pub oauth: SqliteOAuthStore,
    root: PathBuf,
}

/// The pool figures: the service database's pool (one connection) and the open actor databases.
struct SqlitePools {
    service: sea_orm::DatabaseConnection,
    actors: Arc<ActorDbs>,
}

impl stratos_ports::storage::PoolStats for SqlitePools {
    fn pools(&self) -> Vec<stratos_ports::storage::PoolFigures> {
        use stratos_ports::storage::PoolFigures;
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let mut out = Vec::with_capacity(2);
        let pool = self.service.get_sqlite_connection_pool();
        out.push(PoolFigures::new(
            "service",
            pool.size(),
            count(pool.num_idle()),
            pool.options().get_max_connections(),
        ));
        let (open, idle, max) = self.actors.figures();
        out.push(PoolFigures::new(
            "actors",
            count(open),
            count(idle),
            count(max),
        ));
        out
    }
}

/// Opens (creating and migrating as needed) the SQLite storage under `data_dir` as the bundle
/// `stratos_ports::Stratos::builder` takes: one service database and one database per account.
pub async fn open_storage(data_dir: &Path, durability: Durability) -> Result<Storage, SqliteError> {
    Ok(SqliteStorage::open(data_dir, durability)
        .await?
        .into_storage())
}

impl SqliteStorage {
    /// The stores as one [`Storage`] bundle (the repository store fills this outbox in each
    /// commit's transaction).
    pub fn into_storage(self) -> Storage {
        let pools = Arc::new(SqlitePools {
            service: self.enrollments.db.clone(),
            actors: self.repos.dbs.clone(),
        });
        Storage::from_parts(StorageParts {
            repos: Arc::new(self.repos),
            enrollments: Arc::new(self.enrollments),
            keys: Arc::new(self.keys),
            outbox: Arc::new(self.outbox),
            oauth: Arc::new(self.oauth),
        })
        .with_pool_stats(pools)
    }

    /// Opens (creating and migrating as needed) the storage under `data_dir`, with each store's
    /// concrete type (tests and tools); apps use [`open_storage`].
    pub async fn open(data_dir: &Path, durability: Durability) -> Result<Self, SqliteError> {
        tokio::fs::create_dir_all(data_dir.join("actors")).await?;
        let service = db::open(&data_dir.join("service.sqlite"), durability).await?;
        db::migrate_service(
            &service,
            &service::sql(),
            &[service::OUTBOX_ACTOR_DDL],
            &now_rfc3339(),
        )
        .await?;
        let dbs = Arc::new(ActorDbs::new(data_dir.to_path_buf(), durability));
        let hints = Arc::new(OutboxHints::new(service.clone()));
        let storage = Self {
            repos: SqliteRepoStore {
                dbs: dbs.clone(),
                hints: hints.clone(),
            },
            enrollments: SqliteEnrollmentStore {
                db: service.clone(),
            },
            keys: SqliteKeyStore {
                db: service.clone(),
            },
            oauth: SqliteOAuthStore {
                db: service.clone(),
            },
            outbox: SqliteOutbox {
                service,
                dbs,
                hints,
            },
            root: data_dir.to_path_buf(),
        };
        storage.rebuild_outbox_hints().await?;
        Ok(storage)
    }

    /// The data directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Re-registers every actor whose database holds outbox items: a crash between an actor's
    /// commit and the hint write would otherwise leave those items unseen. Cost: one small
    /// query per actor with a database, once at open.
    async fn rebuild_outbox_hints(&self) -> Result<(), SqliteError> {
        let actors = self.root.join("actors");
        let mut shards = tokio::fs::read_dir(&actors).await?;
        while let Some(shard) = shards.next_entry().await? {
            if !shard.file_type().await?.is_dir() {
                continue;
            }
            let mut dirs = tokio::fs::read_dir(shard.path()).await?;
            while let Some(dir) = dirs.next_entry().await? {
                let Some(did) = dir.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                let Some(actor) = self.repos.dbs.get(&did).await? else {
                    continue;
                };
                if outbox::actor_rows(&actor).await? > 0 {
                    self.repos.hints.remember(&did).await?;
                }
            }
        }
        Ok(())
    }
}
