//! Opening SQLite databases with the chosen durability, and small statement helpers.

use std::path::Path;
use std::time::Duration;

use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, QueryResult,
    SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait, Value,
};
use stratos_ports::storage_sql::ServiceSql;
use stratos_ports::storage_sql::migrations::{self, MigrationPlan, MigrationStep};

use crate::SqliteError;

/// How hard a commit is pushed to disk before it is acknowledged.
///
/// | Setting | SQLite pragmas | What a power loss can lose |
/// |---|---|---|
/// | `Durable` (default) | `journal_mode=WAL`, `synchronous=FULL` | nothing that was acknowledged |
/// | `Relaxed` | `journal_mode=WAL`, `synchronous=NORMAL` | the last acknowledged commits (since the last WAL sync); the database stays consistent |
///
/// A process crash without a power loss loses nothing in either mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Every acknowledged commit survives a power loss.
    #[default]
    Durable,
    /// Faster; a power loss may drop the most recent commits.
    Relaxed,
}

impl Durability {
    /// Parses `durable` or `relaxed`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "durable" => Some(Self::Durable),
            "relaxed" => Some(Self::Relaxed),
            _ => None,
        }
    }
}

/// Opens (creating if needed) the database file at `path` with one connection: SQLite
/// serialises writers anyway, and one connection per file makes each compare-and-swap exact.
pub(crate) async fn open(path: &Path, durability: Durability) -> Result<DatabaseConnection, DbErr> {
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let mut opts = ConnectOptions::new(url);
    opts.max_connections(1)
        .min_connections(1)
        .sqlx_logging(false)
        .idle_timeout(None::<Duration>)
        .max_lifetime(None::<Duration>)
        .map_sqlx_sqlite_opts(move |o| {
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(match durability {
                    Durability::Durable => SqliteSynchronous::Full,
                    Durability::Relaxed => SqliteSynchronous::Normal,
                })
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
        });
    Database::connect(opts).await
}

/// A statement with positional `?` parameters.
pub(crate) fn stmt(sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Sqlite, sql, values)
}

/// Runs a writing statement with a `RETURNING` clause and gives its first row.
///
/// Never `query_one` for these outside an explicit transaction: sqlx-sqlite stops after the
/// first row and resets the statement, so the implicit COMMIT runs inside the reset, whose
/// error sqlx discards (a failed commit would look successful), and SQLite's WAL auto-checkpoint,
/// which only runs when a step reaches the end, never fires (the WAL grows without bound; seen
/// at 326 MB after 3,000 commits). Stepping to the end commits inside the step.
pub(crate) async fn returning_one<C: ConnectionTrait>(
    conn: &C,
    statement: Statement,
) -> Result<Option<QueryResult>, DbErr> {
    Ok(conn.query_all_raw(statement).await?.into_iter().next())
}

/// Brings the service database to this build's schema version
/// ([`migrations`](stratos_ports::storage_sql::migrations)), then runs `extra` (the adapter's
/// own tables' idempotent DDL), all in one `BEGIN IMMEDIATE` transaction: it holds the file's
/// write lock from the start, so a second process opening the same data directory waits for it
/// (up to the busy timeout) and then finds the work done. Returns the versions applied.
pub(crate) async fn migrate_service(
    db: &DatabaseConnection,
    sql: &ServiceSql,
    extra: &[&str],
    now: &str,
) -> Result<Vec<i64>, SqliteError> {
    let txn = db
        .begin_with_options(TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..Default::default()
        })
        .await?;
    txn.execute_unprepared(&sql.migration_history_ddl()).await?;
    let version = sql.migration_version();
    let current: Option<i64> = txn
        .query_one_raw(stmt(&version.text, version.values))
        .await?
        .map(|row| row.try_get_by_index::<Option<i64>>(0))
        .transpose()?
        .flatten();
    let mut applied = Vec::new();
    if let MigrationPlan::Apply(pending) = migrations::plan(sql.migrations(), current.unwrap_or(0))?
    {
        for migration in pending {
            for step in &migration.steps {
                match step {
                    MigrationStep::Sql(ddl) => {
                        txn.execute_unprepared(ddl).await?;
                    }
                    MigrationStep::AddColumn {
                        table,
                        column,
                        statement,
                    } => {
                        let present = txn
                            .query_one_raw(stmt(
                                "SELECT 1 FROM pragma_table_info(?) WHERE name = ?",
                                vec![(*table).into(), (*column).into()],
                            ))
                            .await?
                            .is_some();
                        if !present {
                            txn.execute_unprepared(statement).await?;
                        }
                    }
                    _ => {
                        return Err(SqliteError::Corrupt(format!(
                            "migration {} has a step this adapter cannot run",
                            migration.version
                        )));
                    }
                }
            }
            let record = sql.migration_record(&migration, now);
            txn.execute_raw(stmt(&record.text, record.values)).await?;
            applied.push(migration.version);
        }
    }
    for ddl in extra {
        txn.execute_unprepared(ddl).await?;
    }
    txn.commit().await?;
    Ok(applied)
}

/// Column helpers with the adapter's error messages.
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

/// `?, ?, …` with `n` placeholders.
pub(crate) fn placeholders(n: usize) -> String {
    let mut s = String::with_capacity(n * 3);
    for i in 0..n {
        if i > 0 {
            s.push_str(", ");
        }
        s.push('?');
    }
    s
}
