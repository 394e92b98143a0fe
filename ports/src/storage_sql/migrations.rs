//! Versioned, forward-only migrations of the service tables, written once for every SQL
//! adapter.
//!
//! Each adapter runs [`ServiceSql::migrations`] the same way: in one transaction that first
//! takes the database's migration lock (PostgreSQL: a transaction-scoped advisory lock keyed by
//! the service schema; SQLite: `BEGIN IMMEDIATE`, the file's write lock), creates the history
//! table if missing, reads the highest applied version, refuses a database newer than this
//! build ([`SERVICE_SCHEMA_VERSION`]), applies every later migration in order and records each
//! in the history table. A second instance starting at the same time waits for the lock and then
//! finds nothing to do; a failed step rolls the whole run back.
//!
//! Version 1 is everything the service tables were before versioning existed. Databases made by
//! those builds carry no history, so their version reads as 0 and version 1 runs on them: its
//! steps are written to be harmless on any earlier state (`IF NOT EXISTS`, columns added only
//! when missing). Later migrations are plain steps that run exactly once.

use super::{Dialect, ServiceSql, Sql};

/// The service schema version this build migrates to.
pub const SERVICE_SCHEMA_VERSION: i64 = 1;

/// The history table's bare name.
const HISTORY: &str = "schema_migration";

/// One step of a migration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MigrationStep {
    /// Run the statement.
    Sql(String),
    /// Add a column unless the table has it. PostgreSQL's `statement` says `IF NOT EXISTS`, so
    /// it always runs; SQLite has no such clause, so its adapter first asks `pragma_table_info`
    /// whether `table` (bare name) has `column`.
    AddColumn {
        /// The table's bare name.
        table: &'static str,
        /// The column.
        column: &'static str,
        /// The `ALTER TABLE … ADD COLUMN` statement.
        statement: String,
    },
}

/// A numbered migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// Its version: migrations run in increasing order, each exactly once.
    pub version: i64,
    /// A short name, recorded in the history table.
    pub name: &'static str,
    /// Its steps, in order.
    pub steps: Vec<MigrationStep>,
}

impl ServiceSql {
    /// Every migration of the service tables, in version order; the last has
    /// [`SERVICE_SCHEMA_VERSION`]. Adapter-specific tables (SQLite's `outbox_actor`, the
    /// PostgreSQL actor schemas) are migrated by their adapter in the same transaction.
    pub fn migrations(&self) -> Vec<Migration> {
        let mut baseline: Vec<MigrationStep> = self
            .create_tables()
            .into_iter()
            .map(MigrationStep::Sql)
            .collect();
        baseline.extend(
            self.outbox_added_columns()
                .into_iter()
                .map(|(column, statement)| MigrationStep::AddColumn {
                    table: "outbox",
                    column,
                    statement,
                }),
        );
        vec![Migration {
            version: 1,
            name: "baseline",
            steps: baseline,
        }]
    }

    /// Creates the migration history table if missing.
    pub fn migration_history_ddl(&self) -> String {
        let history = self.table_text(HISTORY);
        let bigint = match self.dialect {
            Dialect::Sqlite => "INTEGER",
            Dialect::Postgres => "BIGINT",
        };
        format!(
            "CREATE TABLE IF NOT EXISTS {history} (version {bigint} PRIMARY KEY, name TEXT NOT \
             NULL, applied_at TEXT NOT NULL)"
        )
    }

    /// The highest applied version (one row, one column; `NULL`, read as 0, when none is).
    pub fn migration_version(&self) -> Sql {
        Sql {
            text: format!("SELECT MAX(version) FROM {}", self.table_text(HISTORY)),
            values: Vec::new(),
        }
    }

    /// Records that `migration` was applied at `applied_at` (an RFC 3339 time).
    pub fn migration_record(&self, migration: &Migration, applied_at: &str) -> Sql {
        let placeholders = match self.dialect {
            Dialect::Sqlite => "?, ?, ?",
            Dialect::Postgres => "$1, $2, $3",
        };
        Sql {
            text: format!(
                "INSERT INTO {} (version, name, applied_at) VALUES ({placeholders})",
                self.table_text(HISTORY)
            ),
            values: vec![
                migration.version.into(),
                migration.name.into(),
                applied_at.into(),
            ],
        }
    }

    /// The advisory-lock statement PostgreSQL runs first in the migration transaction (keyed
    /// by the service schema, so deployments with different schemas never wait for each other);
    /// `None` for SQLite, whose adapter opens the transaction with `BEGIN IMMEDIATE` instead.
    pub fn migration_lock(&self) -> Option<Sql> {
        match (self.dialect, &self.schema) {
            (Dialect::Postgres, Some(schema)) => Some(Sql {
                text: "SELECT pg_advisory_xact_lock(hashtext($1))".to_owned(),
                values: vec![format!("stratos-migrate:{schema}").into()],
            }),
            _ => None,
        }
    }
}

/// What a migration run must do, given the version the database is at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrationPlan {
    /// Nothing: the database is at this build's version.
    UpToDate,
    /// Apply these, in order.
    Apply(Vec<Migration>),
}

/// The database is at a version this build does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the database schema is at version {found}, newer than this build's {supported}: run a \
     build at least as new as the one that migrated it"
)]
pub struct SchemaTooNew {
    /// The database's version.
    pub found: i64,
    /// This build's.
    pub supported: i64,
}

/// Decides what to apply to a database at version `current` (0 for one without history).
pub fn plan(migrations: Vec<Migration>, current: i64) -> Result<MigrationPlan, SchemaTooNew> {
    let supported = migrations.last().map_or(0, |m| m.version);
    if current > supported {
        return Err(SchemaTooNew {
            found: current,
            supported,
        });
    }
    let pending: Vec<Migration> = migrations
        .into_iter()
        .filter(|m| m.version > current)
        .collect();
    Ok(if pending.is_empty() {
        MigrationPlan::UpToDate
    } else {
        MigrationPlan::Apply(pending)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_increase_and_the_last_is_the_build_version() {
        for sql in [ServiceSql::sqlite(), ServiceSql::postgres("stratos")] {
            let all = sql.migrations();
            assert!(all.windows(2).all(|w| w[0].version < w[1].version));
            assert_eq!(all.first().map(|m| m.version), Some(1));
            assert_eq!(all.last().map(|m| m.version), Some(SERVICE_SCHEMA_VERSION));
        }
    }

    #[test]
    fn plans_only_what_is_missing_and_refuses_newer() {
        let sql = ServiceSql::sqlite();
        let Ok(MigrationPlan::Apply(all)) = plan(sql.migrations(), 0) else {
            panic!("a database without history gets every migration");
        };
        assert_eq!(all.len(), sql.migrations().len());
        assert_eq!(
            plan(sql.migrations(), SERVICE_SCHEMA_VERSION),
            Ok(MigrationPlan::UpToDate)
        );
        assert_eq!(
            plan(sql.migrations(), SERVICE_SCHEMA_VERSION + 1),
            Err(SchemaTooNew {
                found: SERVICE_SCHEMA_VERSION + 1,
                supported: SERVICE_SCHEMA_VERSION
            })
        );
    }

    #[test]
    fn the_lock_is_keyed_by_schema_and_only_postgres_takes_one() {
        assert!(ServiceSql::sqlite().migration_lock().is_none());
        let a = ServiceSql::postgres("a_stratos").migration_lock();
        let b = ServiceSql::postgres("b_stratos").migration_lock();
        assert!(a.is_some() && a != b);
    }
}
