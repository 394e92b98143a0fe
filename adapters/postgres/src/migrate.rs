//! Runs the versioned migrations of the service schema
//! ([`migrations`](stratos_ports::storage_sql::migrations)) and of the actor schemas, in one
//! transaction under an advisory lock keyed by the service schema: two instances starting
//! together run them once (the second waits, then finds nothing to do), and a failed step
//! leaves the database as it was (PostgreSQL's DDL is transactional).

use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};
use stratos_ports::storage_sql::ServiceSql;
use stratos_ports::storage_sql::migrations::{self, MigrationPlan, MigrationStep};

use crate::repo::upgrade_actor_schemas;
use crate::{PostgresError, Schemas, stmt};

/// Brings the service schema and every actor schema to this build's version; returns the
/// versions applied.
pub(crate) async fn migrate(
    db: &DatabaseConnection,
    sql: &ServiceSql,
    schemas: &Schemas,
    now: &str,
) -> Result<Vec<i64>, PostgresError> {
    let txn = db.begin().await?;
    if let Some(lock) = sql.migration_lock() {
        txn.execute_raw(stmt(&lock.text, lock.values)).await?;
    }
    txn.execute_unprepared(&format!(
        "CREATE SCHEMA IF NOT EXISTS {}",
        schemas.service()
    ))
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
                    // PostgreSQL's added columns say `IF NOT EXISTS`: both run as they are.
                    MigrationStep::Sql(ddl) | MigrationStep::AddColumn { statement: ddl, .. } => {
                        txn.execute_unprepared(ddl).await?;
                    }
                    _ => {
                        return Err(PostgresError::Corrupt(format!(
                            "migration {} has a step this adapter cannot run",
                            migration.version
                        )));
                    }
                }
            }
            if migration.version == 1 {
                // Actor schemas made before blob tracking get its tables.
                upgrade_actor_schemas(&txn, schemas).await?;
            }
            let record = sql.migration_record(&migration, now);
            txn.execute_raw(stmt(&record.text, record.values)).await?;
            applied.push(migration.version);
        }
    }
    txn.commit().await?;
    Ok(applied)
}
