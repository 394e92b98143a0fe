//! PostgreSQL adapter: one pool, shared service tables in one schema, and one schema per actor
//! named `actor_` + the first 12 hex digits of sha256(did) (reference §11.4).
//!
//! Schema names are built only from a validated prefix and hex digits, and always quoted. A
//! commit is one transaction on one connection, scoped to the actor's schema with `SET LOCAL
//! search_path` (sent with `BEGIN` in one round trip; it reverts at commit): its statements name
//! tables unqualified, so their text is the same for every actor and each connection's
//! prepared-statement cache holds a handful of entries however many actors there are. In it: the
//! compare-and-swap on the root row (row lock), the blocks and index rows as array parameters
//! (`unnest`), the event, the outbox rows (in the service schema, same transaction) — for a unit
//! of creates all in one statement. Single statements outside a transaction name the actor's
//! schema and run unnamed (never cached). See docs/performance.md.
#![deny(missing_docs)] // a library crate: every public item is documented (checked in CI)

mod appview;
mod legacy;
mod migrate;
mod outbox;
mod repo;
mod service;

use std::sync::Arc;
use std::time::Duration;

use sea_orm::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sea_orm::sqlx::{self, ConnectOptions as _, Connection as _};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, QueryResult, RuntimeErr,
    SqlxPostgresConnector, Statement, Value,
};
use sha2::{Digest, Sha256};
use stratos_domain::syntax::Did;
use stratos_ports::repo_store::RepoStoreError;
use stratos_ports::storage_sql::{ServiceSql, SqlError};
use stratos_ports::{Cause, Storage, StorageParts};

pub use appview::{APPVIEW_SCHEMA_VERSION, AppViewConfig, PostgresAppViewIndex};
pub use legacy::TsPostgresSource;
pub use outbox::PostgresOutbox;
pub use repo::PostgresRepoStore;
pub use service::{PostgresEnrollmentStore, PostgresKeyStore, PostgresOAuthStore};

/// Failures of this adapter (mapped into each port's error at the trait boundary).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PostgresError {
    /// PostgreSQL or the driver failed.
    #[error("postgres: {0}")]
    Db(#[source] Cause),
    /// A schema prefix is not `[a-z_][a-z0-9_]*`.
    #[error("invalid schema prefix {0:?}")]
    BadPrefix(String),
    /// The actor has no schema.
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
    Sql(#[from] SqlError),
}

/// A driver error as sea-orm reports it (the adapter runs some statements on sqlx directly).
pub(crate) fn sqlx_err(e: sqlx::Error) -> DbErr {
    DbErr::Query(RuntimeErr::SqlxError(std::sync::Arc::new(e)))
}

impl From<sqlx::Error> for PostgresError {
    fn from(e: sqlx::Error) -> Self {
        PostgresError::Db(Cause::new(e))
    }
}

impl From<DbErr> for PostgresError {
    fn from(e: DbErr) -> Self {
        PostgresError::Db(Cause::new(e))
    }
}

impl From<stratos_ports::storage_codec::CodecError> for PostgresError {
    fn from(e: stratos_ports::storage_codec::CodecError) -> Self {
        PostgresError::Corrupt(e.to_string())
    }
}

pub(crate) fn repo_err(e: PostgresError) -> RepoStoreError {
    match e {
        PostgresError::ActorNotFound(did) => RepoStoreError::ActorNotFound(did),
        PostgresError::Conflict => RepoStoreError::Conflict(String::new()),
        PostgresError::IndexMismatch(m) => RepoStoreError::IndexMismatch(m),
        PostgresError::Corrupt(m) => RepoStoreError::Corrupt(m),
        PostgresError::BlobMissing(cid) => RepoStoreError::BlobMissing(cid),
        other => RepoStoreError::Backend(stratos_ports::Cause::new(other)),
    }
}

/// The current time as RFC 3339, for the migration history.
fn now_rfc3339() -> String {
    use stratos_ports::env::{Clock as _, SystemClock};
    stratos_domain::syntax::Datetime::from_unix_millis(SystemClock.now_ms()).to_string()
}

/// Connection settings.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    /// `postgres://user:pass@host:port/db`.
    pub url: String,
    /// Pool size (`STRATOS_PG_ACTOR_POOL_SIZE`).
    pub pool_size: u32,
    /// Prefix of every schema this deployment creates (`""` in production; tests use a unique
    /// prefix so runs never collide). Service tables live in `{prefix}stratos`.
    pub schema_prefix: String,
}

impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password.
        f.debug_struct("PostgresConfig")
            .field("pool_size", &self.pool_size)
            .field("schema_prefix", &self.schema_prefix)
            .finish_non_exhaustive()
    }
}

/// Schema names, all derived from validated parts.
#[derive(Debug, Clone)]
pub(crate) struct Schemas {
    prefix: String,
}

impl Schemas {
    pub(crate) fn service(&self) -> String {
        format!("\"{}\"", self.service_bare())
    }

    /// The service schema's bare (unquoted) name.
    pub(crate) fn service_bare(&self) -> String {
        format!("{}stratos", self.prefix)
    }

    /// `"{prefix}actor_{12 hex}"`.
    pub(crate) fn actor(&self, did: &str) -> String {
        let hash = Sha256::digest(did.as_bytes());
        let hex: String = hash[..6].iter().map(|b| format!("{b:02x}")).collect();
        format!("\"{}actor_{hex}\"", self.prefix)
    }

    /// A `LIKE` pattern matching every actor schema of this prefix.
    pub(crate) fn actor_pattern(&self) -> String {
        format!("{}actor\\_%", self.prefix)
    }

    /// The bare (unquoted) name, for catalog lookups.
    pub(crate) fn actor_bare(&self, did: &str) -> String {
        self.actor(did).trim_matches('"').to_owned()
    }
}

fn valid_prefix(p: &str) -> bool {
    p.is_empty()
        || (p.len() <= 20
            && p.chars()
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
}

/// A statement with `$n` parameters.
pub(crate) fn stmt(sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

/// `$from, $from+1, …` (`n` placeholders).
pub(crate) fn params(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Column helpers.
pub(crate) trait Row {
    fn bytes(&self, i: usize) -> Result<Vec<u8>, DbErr>;
    fn text(&self, i: usize) -> Result<String, DbErr>;
    fn opt_text(&self, i: usize) -> Result<Option<String>, DbErr>;
    fn int(&self, i: usize) -> Result<i64, DbErr>;
}

impl Row for QueryResult {
    fn bytes(&self, i: usize) -> Result<Vec<u8>, DbErr> {
        self.try_get_by_index(i)
    }
    fn text(&self, i: usize) -> Result<String, DbErr> {
        self.try_get_by_index(i)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>, DbErr> {
        self.try_get_by_index(i)
    }
    fn int(&self, i: usize) -> Result<i64, DbErr> {
        self.try_get_by_index(i)
    }
}

/// A connection idle for longer than this is pinged before it is handed out (a connection in
/// steady use is not: the ping would be one more round trip per transaction).
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(5);

/// The pool: sqlx's, built here so the adapter can run its hot transactions on it directly
/// (see [`repo`]), and shared with sea-orm for everything else.
async fn connect_pool(config: &PostgresConfig) -> Result<sqlx::PgPool, PostgresError> {
    let options: PgConnectOptions = config.url.parse()?;
    let pool = PgPoolOptions::new()
        .max_connections(config.pool_size.max(1))
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .idle_timeout(Duration::from_secs(20))
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_IF_IDLE_FOR {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_with(options.disable_statement_logging())
        .await?;
    Ok(pool)
}

/// The pool figures: the adapter's one pool, `main`.
struct PostgresPools(sqlx::PgPool);

impl stratos_ports::storage::PoolStats for PostgresPools {
    fn pools(&self) -> Vec<stratos_ports::storage::PoolFigures> {
        vec![stratos_ports::storage::PoolFigures::new(
            "main",
            self.0.size(),
            u32::try_from(self.0.num_idle()).unwrap_or(u32::MAX),
            self.0.options().get_max_connections(),
        )]
    }
}

/// Every port this adapter implements, over one pool.
#[derive(Debug, Clone)]
pub struct PostgresStorage {
    /// Per-actor repositories.
    pub repos: PostgresRepoStore,
    /// Enrollments.
    pub enrollments: PostgresEnrollmentStore,
    /// Signing keys.
    pub keys: PostgresKeyStore,
    /// The PDS-write outbox.
    pub outbox: PostgresOutbox,
    /// OAuth states and sessions.
    pub oauth: PostgresOAuthStore,
    db: DatabaseConnection,
    schemas: Schemas,
}

/// Connects to PostgreSQL (creating the service schema and tables if needed) and returns the
/// bundle `stratos_ports::Stratos::builder` takes: one schema for the service, one per account.
pub async fn connect_storage(config: &PostgresConfig) -> Result<Storage, PostgresError> {
    Ok(PostgresStorage::connect(config).await?.into_storage())
}

impl PostgresStorage {
    /// The stores as one [`Storage`] bundle (the repository store fills this outbox in each
    /// commit's transaction).
    pub fn into_storage(self) -> Storage {
        let pools = Arc::new(PostgresPools(self.repos.pool.clone()));
        Storage::from_parts(StorageParts {
            repos: Arc::new(self.repos),
            enrollments: Arc::new(self.enrollments),
            keys: Arc::new(self.keys),
            outbox: Arc::new(self.outbox),
            oauth: Arc::new(self.oauth),
        })
        .with_pool_stats(pools)
    }

    /// Connects and creates the service schema and tables if needed, with each store's concrete
    /// type (tests and tools); apps use [`connect_storage`].
    pub async fn connect(config: &PostgresConfig) -> Result<Self, PostgresError> {
        if !valid_prefix(&config.schema_prefix) {
            return Err(PostgresError::BadPrefix(config.schema_prefix.clone()));
        }
        let pool = connect_pool(config).await?;
        let db = SqlxPostgresConnector::from_sqlx_postgres_pool(pool.clone());
        let schemas = Schemas {
            prefix: config.schema_prefix.clone(),
        };
        let sql = ServiceSql::postgres(&schemas.service_bare());
        migrate::migrate(&db, &sql, &schemas, &now_rfc3339()).await?;
        Ok(Self {
            repos: PostgresRepoStore {
                db: db.clone(),
                pool,
                schemas: schemas.clone(),
                known: Default::default(),
                commit_sql: repo::CommitSql::new(&schemas.service()),
            },
            enrollments: PostgresEnrollmentStore {
                db: db.clone(),
                sql: sql.clone(),
            },
            keys: PostgresKeyStore {
                db: db.clone(),
                sql: sql.clone(),
            },
            outbox: PostgresOutbox {
                db: db.clone(),
                sql: sql.clone(),
            },
            oauth: PostgresOAuthStore {
                db: db.clone(),
                sql: sql.clone(),
            },
            db,
            schemas,
        })
    }

    /// Drops the service schema and every actor schema of this deployment's prefix (tests).
    pub async fn drop_everything(&self) -> Result<(), PostgresError> {
        let rows = self
            .db
            .query_all_raw(stmt(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE $1",
                vec![format!("{}actor\\_%", self.schemas.prefix).into()],
            ))
            .await?;
        for row in rows {
            let name = row.text(0)?;
            if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                self.db
                    .execute_unprepared(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                    .await?;
            }
        }
        self.db
            .execute_unprepared(&format!(
                "DROP SCHEMA IF EXISTS {} CASCADE",
                self.schemas.service()
            ))
            .await?;
        Ok(())
    }
}
