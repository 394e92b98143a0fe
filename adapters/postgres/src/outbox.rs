//! The outbox in the service schema: items enqueued on their own and, inserted by the
//! repository store in each commit's transaction, the items of commits — one table, so the
//! order per account covers every item of an account (see `stratos_ports::outbox`).
//!
//! Every statement that changes existing rows runs in a transaction behind the shared statements'
//! advisory lock ([`ServiceSql::outbox_lock`]): exclusive for a claim, shared for the rest, so a
//! claim never sees an account's older item half-way through a change by another worker.

use async_trait::async_trait;
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, TransactionTrait};
use stratos_domain::syntax::Did;
use stratos_ports::outbox::{
    ClaimedItem, DeadLetter, Disposition, FailedAttempt, Lease, Outbox, OutboxError, OutboxItem,
    short_error,
};
use stratos_ports::storage_codec::{decode_item, encode_item};
use stratos_ports::storage_sql::ServiceSql;

use crate::service::q;
use crate::{PostgresError, Row};

/// [`Outbox`] over the service schema; commits insert their items in the same transaction.
#[derive(Debug, Clone)]
pub struct PostgresOutbox {
    pub(crate) db: DatabaseConnection,
    pub(crate) sql: ServiceSql,
}

fn outbox_err(e: impl Into<PostgresError>) -> OutboxError {
    OutboxError::Backend(stratos_ports::Cause::new(e.into()))
}

fn id_of(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl PostgresOutbox {
    /// A transaction holding the outbox lock (exclusive for claims).
    async fn locked(&self, exclusive: bool) -> Result<DatabaseTransaction, PostgresError> {
        let tx = self.db.begin().await?;
        if let Some(lock) = self.sql.outbox_lock(exclusive) {
            tx.execute_unprepared(&lock).await?;
        }
        Ok(tx)
    }

    async fn count(&self, sql: stratos_ports::storage_sql::Sql) -> Result<u64, OutboxError> {
        let row = self.db.query_one_raw(q(sql)).await.map_err(outbox_err)?;
        Ok(match row {
            Some(r) => id_of(r.int(0).map_err(outbox_err)?),
            None => 0,
        })
    }

    /// Runs one changing statement under the shared lock; an error when it changed no row.
    async fn change_leased(
        &self,
        lease: Lease,
        sql: stratos_ports::storage_sql::Sql,
    ) -> Result<(), OutboxError> {
        let tx = self.locked(false).await.map_err(outbox_err)?;
        let n = tx
            .execute_raw(q(sql))
            .await
            .map_err(outbox_err)?
            .rows_affected();
        tx.commit().await.map_err(outbox_err)?;
        if n == 0 {
            return Err(OutboxError::NotClaimed(lease.id));
        }
        Ok(())
    }
}

#[async_trait]
impl Outbox for PostgresOutbox {
    async fn enqueue(&self, item: OutboxItem) -> Result<u64, OutboxError> {
        let insert = self
            .sql
            .outbox_enqueue(item.did.as_str(), encode_item(&item))
            .map_err(outbox_err)?;
        let row = self
            .db
            .query_one_raw(q(insert))
            .await
            .map_err(outbox_err)?
            .ok_or_else(|| OutboxError::Backend(stratos_ports::Cause::message("no id returned")))?;
        Ok(id_of(row.int(0).map_err(outbox_err)?))
    }

    async fn claim(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<ClaimedItem>, OutboxError> {
        let tx = self.locked(true).await.map_err(outbox_err)?;
        let rows = tx
            .query_all_raw(q(self.sql.outbox_claim(now_ms, lease_ms, limit)))
            .await
            .map_err(outbox_err)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let id = id_of(r.int(0).map_err(outbox_err)?);
            match decode_item(&r.bytes(1).map_err(outbox_err)?) {
                Ok(item) => out.push(ClaimedItem {
                    id,
                    item,
                    attempts: u32::try_from(r.int(2).map_err(outbox_err)?).unwrap_or(u32::MAX),
                    leased_until_ms: r.int(3).map_err(outbox_err)?,
                }),
                Err(e) => {
                    let error = short_error(&format!("corrupt item: {e}"));
                    tx.execute_raw(q(self.sql.outbox_bury(id, now_ms, &error)))
                        .await
                        .map_err(outbox_err)?;
                }
            }
        }
        tx.commit().await.map_err(outbox_err)?;
        out.sort_by_key(|c| c.id);
        Ok(out)
    }

    async fn complete(&self, lease: Lease) -> Result<(), OutboxError> {
        self.change_leased(lease, self.sql.outbox_complete(lease.id, lease.until_ms))
            .await
    }

    async fn fail(&self, lease: Lease, attempt: FailedAttempt) -> Result<Disposition, OutboxError> {
        let dead_after = if attempt.permanent {
            0
        } else {
            attempt.max_attempts
        };
        let sql = self.sql.outbox_fail(
            lease.id,
            lease.until_ms,
            attempt.retry_at_ms,
            dead_after,
            attempt.now_ms,
            &short_error(&attempt.error),
        );
        let tx = self.locked(false).await.map_err(outbox_err)?;
        let rows = tx.query_all_raw(q(sql)).await.map_err(outbox_err)?;
        tx.commit().await.map_err(outbox_err)?;
        let Some(row) = rows.first() else {
            return Err(OutboxError::NotClaimed(lease.id));
        };
        let dead: Option<i64> = row.try_get_by_index(0).map_err(outbox_err)?;
        Ok(match dead {
            Some(_) => Disposition::Dead,
            None => Disposition::Retry,
        })
    }

    async fn release(&self, lease: Lease, due_ms: i64) -> Result<(), OutboxError> {
        self.change_leased(
            lease,
            self.sql.outbox_release(lease.id, lease.until_ms, due_ms),
        )
        .await
    }

    async fn pending(&self) -> Result<usize, OutboxError> {
        let n = self.count(self.sql.outbox_count()).await?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    async fn dead_letters(
        &self,
        limit: usize,
        cursor: Option<u64>,
    ) -> Result<Vec<DeadLetter>, OutboxError> {
        let after = i64::try_from(cursor.unwrap_or(0)).unwrap_or(i64::MAX);
        let rows = self
            .db
            .query_all_raw(q(self.sql.outbox_dead_letters(after, limit)))
            .await
            .map_err(outbox_err)?;
        rows.iter()
            .map(|r| {
                let id = id_of(r.int(0).map_err(outbox_err)?);
                let did = r.text(5).map_err(outbox_err)?;
                Ok(DeadLetter {
                    id,
                    did: Did::parse(&did).map_err(|e| OutboxError::Corrupt {
                        id,
                        reason: e.to_string(),
                    })?,
                    item: decode_item(&r.bytes(1).map_err(outbox_err)?).ok(),
                    attempts: u32::try_from(r.int(2).map_err(outbox_err)?).unwrap_or(u32::MAX),
                    last_error: r.text(3).map_err(outbox_err)?,
                    dead_at_ms: r.int(4).map_err(outbox_err)?,
                })
            })
            .collect()
    }

    async fn retry_dead(&self, id: u64) -> Result<u64, OutboxError> {
        let requeue = self.sql.outbox_requeue(id).map_err(outbox_err)?;
        let tx = self.locked(false).await.map_err(outbox_err)?;
        let rows = tx.query_all_raw(q(requeue)).await.map_err(outbox_err)?;
        let Some(row) = rows.first() else {
            return Err(OutboxError::NotDead(id));
        };
        let new = id_of(row.int(0).map_err(outbox_err)?);
        tx.execute_raw(q(self.sql.outbox_delete_dead(id)))
            .await
            .map_err(outbox_err)?;
        tx.commit().await.map_err(outbox_err)?;
        Ok(new)
    }

    async fn dead_count(&self, did: &Did) -> Result<u64, OutboxError> {
        self.count(self.sql.outbox_dead_count(Some(did.as_str())))
            .await
    }

    async fn dead_total(&self) -> Result<u64, OutboxError> {
        self.count(self.sql.outbox_dead_count(None)).await
    }

    async fn purge(&self, did: &Did) -> Result<(), OutboxError> {
        let tx = self.locked(false).await.map_err(outbox_err)?;
        tx.execute_raw(q(self.sql.outbox_purge(did.as_str())))
            .await
            .map_err(outbox_err)?;
        tx.commit().await.map_err(outbox_err)?;
        Ok(())
    }
}
