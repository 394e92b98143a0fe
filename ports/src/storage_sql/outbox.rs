//! The service-level outbox table: items enqueued outside a commit (and, on PostgreSQL, the
//! items of commits too, which the repository store inserts in the commit's transaction).

use sea_query::{Asterisk, Expr, ExprTrait, Func, LockBehavior, LockType, Order, Query};

use super::{ServiceSql, Sql, SqlError, limit};

const OUTBOX: &str = "outbox";

/// A row id as bound: ids above `i64::MAX` cannot exist, so they become `-1`, which matches no
/// row.
fn row_id(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(-1)
}

impl ServiceSql {
    /// Enqueues an encoded item, due at once whatever the clock says (`due_ms = i64::MIN`);
    /// returns its `id`.
    pub fn outbox_enqueue(&self, did: &str, item: Vec<u8>) -> Result<Sql, SqlError> {
        let mut q = Query::insert();
        q.into_table(self.table(OUTBOX))
            .columns(["did", "item", "due_ms"])
            .values([Expr::val(did), Expr::val(item), Expr::val(i64::MIN)])?
            .returning_col("id");
        Ok(self.build(&q))
    }

    /// Leases up to `n` due items until `now_ms + lease_ms`, in id order; returns
    /// `id, item, attempts` (attempts as a 64-bit integer). On PostgreSQL the candidates are
    /// picked `FOR UPDATE SKIP LOCKED`, so concurrent workers (several service instances) never
    /// claim the same row; SQLite's one connection serialises claims and has no row locks.
    pub fn outbox_claim(&self, now_ms: i64, lease_ms: i64, n: usize) -> Sql {
        let mut due = Query::select();
        due.column("id")
            .from(self.table(OUTBOX))
            .and_where(Expr::col("due_ms").lte(now_ms))
            .and_where(
                Expr::col("leased_until")
                    .is_null()
                    .or(Expr::col("leased_until").lte(now_ms)),
            )
            .order_by("id", Order::Asc)
            .limit(limit(n))
            .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
        self.build(
            Query::update()
                .table(self.table(OUTBOX))
                .value("leased_until", now_ms.saturating_add(lease_ms))
                .and_where(Expr::col("id").in_subquery(due))
                .returning(Query::returning().exprs([
                    Expr::col("id"),
                    Expr::col("item"),
                    // PostgreSQL's column is INT; every adapter reads a 64-bit integer.
                    Expr::col("attempts").cast_as("BIGINT"),
                ])),
        )
    }

    /// Deletes a delivered item; touches no row if there is none.
    pub fn outbox_complete(&self, id: u64) -> Sql {
        self.build(
            Query::delete()
                .from_table(self.table(OUTBOX))
                .and_where(Expr::col("id").eq(row_id(id))),
        )
    }

    /// Releases a failed item for a retry at `retry_at_ms`, counting the attempt.
    pub fn outbox_fail(&self, id: u64, retry_at_ms: i64) -> Sql {
        self.build(
            Query::update()
                .table(self.table(OUTBOX))
                .value("attempts", Expr::col("attempts").add(Expr::cust("1")))
                .value("due_ms", retry_at_ms)
                .value("leased_until", Expr::cust("NULL"))
                .and_where(Expr::col("id").eq(row_id(id))),
        )
    }

    /// The number of items (one 64-bit integer column).
    pub fn outbox_count(&self) -> Sql {
        self.build(
            Query::select()
                .expr(Func::count(Expr::col(Asterisk)))
                .from(self.table(OUTBOX)),
        )
    }

    /// Deletes every item of the account.
    pub fn outbox_purge(&self, did: &str) -> Sql {
        self.build(
            Query::delete()
                .from_table(self.table(OUTBOX))
                .and_where(Expr::col("did").eq(did)),
        )
    }
}
