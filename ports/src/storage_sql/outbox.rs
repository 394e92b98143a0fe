//! The outbox table: items enqueued outside a commit (and, on PostgreSQL, the items of commits
//! too, which the repository store inserts in the commit's transaction). The same statements
//! serve SQLite's per-account outbox tables in the actor databases
//! ([`ServiceSql::account_outbox`]: no `did` column, every row is the file's account).
//!
//! A row is live while `dead_ms` is `NULL`; a dead letter has the time it died there and is
//! never claimed. `last_error` keeps the last failure's short text.

use std::sync::Arc;

use sea_query::{
    Alias, Asterisk, Expr, ExprTrait, Func, LockType, Order, Query, SelectStatement, Value,
};

use super::{Dialect, ServiceSql, Sql, SqlError, limit};

const OUTBOX: &str = "outbox";

/// A row id as bound: ids above `i64::MAX` cannot exist, so they become `-1`, which matches no
/// row.
fn row_id(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(-1)
}

/// A column of the claim's candidate row (`r`) or of an older row of its account (`o`).
fn col(table: &'static str, column: &'static str) -> Expr {
    Expr::col((Alias::new(table), Alias::new(column)))
}

impl ServiceSql {
    /// Columns added to the outbox table after it first shipped, each with the statement that
    /// adds it: PostgreSQL's say `IF NOT EXISTS`; SQLite has no such clause, so its adapter runs
    /// a statement only when `pragma_table_info` lacks the column.
    pub fn outbox_added_columns(&self) -> Vec<(&'static str, String)> {
        let table = self.table_text(OUTBOX);
        let (bigint, if_missing) = match self.dialect {
            Dialect::Sqlite => ("INTEGER", ""),
            Dialect::Postgres => ("BIGINT", "IF NOT EXISTS "),
        };
        vec![
            (
                "last_error",
                format!("ALTER TABLE {table} ADD COLUMN {if_missing}last_error TEXT"),
            ),
            (
                "dead_ms",
                format!("ALTER TABLE {table} ADD COLUMN {if_missing}dead_ms {bigint}"),
            ),
        ]
    }

    /// Enqueues an encoded item, due at once whatever the clock says (`due_ms = i64::MIN`);
    /// returns its `id`. Not for an account's own table (its rows are the commits').
    pub fn outbox_enqueue(&self, did: &str, item: Vec<u8>) -> Result<Sql, SqlError> {
        let mut q = Query::insert();
        q.into_table(self.table(OUTBOX))
            .columns(["did", "item", "due_ms"])
            .values([Expr::val(did), Expr::val(item), Expr::val(i64::MIN)])?
            .returning_col("id");
        Ok(self.build(&q))
    }

    /// The statement that orders claims against everything else that changes existing rows, run
    /// first in the statement's transaction: PostgreSQL takes a transaction-scoped advisory
    /// lock keyed by the table's name — exclusive for a claim, shared for completing, failing,
    /// releasing, re-queueing and purging — so a claim's snapshot sees every such change
    /// committed and none in flight, and changes wait only for claims, never for each other or
    /// for commits inserting items. `None` for SQLite, whose writers are serialised by the
    /// database. Without it, a claim could see an account's older item as free while another
    /// worker was failing it, skip it, and hand out the account's next item.
    pub fn outbox_lock(&self, exclusive: bool) -> Option<String> {
        let function = if exclusive {
            "pg_advisory_xact_lock"
        } else {
            "pg_advisory_xact_lock_shared"
        };
        match self.dialect {
            Dialect::Sqlite => None,
            Dialect::Postgres => Some(format!(
                "SELECT {function}(hashtext('{}'))",
                self.table_text(OUTBOX).replace('\'', "")
            )),
        }
    }

    /// Leases up to `n` items until `now_ms + lease_ms`: live, due, not leased, and with no
    /// older live row of their account that is leased or not yet due (older free rows of the
    /// account are candidates themselves and come first, by id, so a `LIMIT` never takes a later
    /// row without its predecessors). Returns `id, item, attempts, leased_until` (64-bit
    /// integers), then `did` except for an account's own table. On PostgreSQL it runs after the
    /// exclusive [`ServiceSql::outbox_lock`], and the candidates are locked `FOR UPDATE` (never
    /// `SKIP LOCKED`: skipping an account's locked older row would hand out its next one).
    pub fn outbox_claim(&self, now_ms: i64, lease_ms: i64, n: usize) -> Sql {
        // Built once per table with sentinel values, then filled: building it through
        // sea-query cost about 70k instructions, as much as a fifth of a commit, and an idle
        // worker claims after every commit.
        const NOW: i64 = 7_000_000_000_001;
        const LEASE_END: i64 = 7_000_000_000_002;
        const LIMIT: u64 = 7_000_000_003;
        /// Where each parameter of the statement comes from.
        #[derive(Clone, Copy)]
        enum Slot {
            Now,
            LeaseEnd,
            Limit,
        }
        type Templates =
            std::collections::HashMap<(bool, bool, Option<String>), Arc<(String, Vec<Slot>)>>;
        static TEMPLATES: std::sync::OnceLock<std::sync::Mutex<Templates>> =
            std::sync::OnceLock::new();
        let key = (
            matches!(self.dialect, Dialect::Postgres),
            self.account_outbox,
            self.schema.clone(),
        );
        let templates = TEMPLATES.get_or_init(Default::default);
        let cached = templates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned();
        let template = match cached {
            Some(t) => t,
            None => {
                let built = self.build_outbox_claim(NOW, LEASE_END - NOW, LIMIT as usize);
                let slots: Option<Vec<Slot>> = built
                    .values
                    .iter()
                    .map(|v| match v {
                        Value::BigInt(Some(NOW)) => Some(Slot::Now),
                        Value::BigInt(Some(LEASE_END)) => Some(Slot::LeaseEnd),
                        Value::BigUnsigned(Some(LIMIT)) => Some(Slot::Limit),
                        _ => None,
                    })
                    .collect();
                let Some(slots) = slots else {
                    // A parameter the template does not know: build every time.
                    return self.build_outbox_claim(now_ms, lease_ms, n);
                };
                let template = Arc::new((built.text, slots));
                templates
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key, template.clone());
                template
            }
        };
        let lease_end = now_ms.saturating_add(Ord::max(lease_ms, 1));
        let values = template
            .1
            .iter()
            .map(|slot| match slot {
                Slot::Now => Value::BigInt(Some(now_ms)),
                Slot::LeaseEnd => Value::BigInt(Some(lease_end)),
                Slot::Limit => Value::BigUnsigned(Some(limit(n))),
            })
            .collect();
        Sql {
            text: template.0.clone(),
            values,
        }
    }

    /// [`ServiceSql::outbox_claim`] through sea-query.
    pub(super) fn build_outbox_claim(&self, now_ms: i64, lease_ms: i64, n: usize) -> Sql {
        let mut older = Query::select();
        older
            .expr(Expr::cust("1"))
            .from_as(self.table(OUTBOX), Alias::new("o"))
            .and_where(col("o", "id").lt(col("r", "id")))
            .and_where(col("o", "dead_ms").is_null())
            .and_where(
                col("o", "due_ms")
                    .gt(now_ms)
                    .or(col("o", "leased_until").gt(now_ms)),
            );
        if !self.account_outbox {
            older.and_where(col("o", "did").eq(col("r", "did")));
        }
        let mut due = Query::select();
        due.expr(col("r", "id"))
            .from_as(self.table(OUTBOX), Alias::new("r"))
            .and_where(col("r", "dead_ms").is_null())
            .and_where(col("r", "due_ms").lte(now_ms))
            .and_where(
                col("r", "leased_until")
                    .is_null()
                    .or(col("r", "leased_until").lte(now_ms)),
            )
            .and_where(Expr::exists(older).not())
            .order_by(("r", "id"), Order::Asc)
            .limit(limit(n))
            .lock(LockType::Update);
        let mut returning = vec![
            Expr::col("id"),
            Expr::col("item"),
            // PostgreSQL's column is INT; every adapter reads a 64-bit integer.
            Expr::col("attempts").cast_as("BIGINT"),
            Expr::col("leased_until"),
        ];
        if !self.account_outbox {
            returning.push(Expr::col("did"));
        }
        self.build(
            Query::update()
                .table(self.table(OUTBOX))
                .value("leased_until", now_ms.saturating_add(Ord::max(lease_ms, 1)))
                .and_where(Expr::col("id").in_subquery(due))
                .returning(Query::returning().exprs(returning)),
        )
    }

    /// Makes a row a dead letter at once, whatever its lease (a claimed row whose item does not
    /// decode).
    pub fn outbox_bury(&self, id: u64, now_ms: i64, error: &str) -> Sql {
        self.build(
            Query::update()
                .table(self.table(OUTBOX))
                .value("dead_ms", now_ms)
                .value("last_error", error)
                .value("leased_until", Expr::cust("NULL"))
                .and_where(Expr::col("id").eq(row_id(id))),
        )
    }

    /// Deletes a delivered item if it is still leased until `until_ms`; touches no row
    /// otherwise.
    pub fn outbox_complete(&self, id: u64, until_ms: i64) -> Sql {
        self.build(
            Query::delete()
                .from_table(self.table(OUTBOX))
                .and_where(Expr::col("id").eq(row_id(id)))
                .and_where(Expr::col("leased_until").eq(until_ms))
                .and_where(Expr::col("dead_ms").is_null()),
        )
    }

    /// Counts a failed attempt of an item leased until `until_ms` and drops the lease: due again
    /// at `retry_at_ms`, or dead at `now_ms` once `attempts + 1 >= dead_after`. Returns
    /// `dead_ms` (a 64-bit integer, `NULL` while the item lives on); no row when the lease does
    /// not match.
    pub fn outbox_fail(
        &self,
        id: u64,
        until_ms: i64,
        retry_at_ms: i64,
        dead_after: u32,
        now_ms: i64,
        error: &str,
    ) -> Sql {
        let dies = Expr::col("attempts")
            .add(Expr::cust("1"))
            .gte(i64::from(dead_after));
        self.build(
            Query::update()
                .table(self.table(OUTBOX))
                .value("attempts", Expr::col("attempts").add(Expr::cust("1")))
                .value("due_ms", retry_at_ms)
                .value("leased_until", Expr::cust("NULL"))
                .value("last_error", error)
                .value(
                    "dead_ms",
                    Expr::case(dies, Expr::val(now_ms)).finally(Expr::cust("NULL")),
                )
                .and_where(Expr::col("id").eq(row_id(id)))
                .and_where(Expr::col("leased_until").eq(until_ms))
                .and_where(Expr::col("dead_ms").is_null())
                .returning(Query::returning().exprs([Expr::col("dead_ms")])),
        )
    }

    /// Drops the lease of an item leased until `until_ms` without counting an attempt; its due
    /// time becomes `due_ms` if that is later (it never moves earlier).
    pub fn outbox_release(&self, id: u64, until_ms: i64, due_ms: i64) -> Sql {
        self.build(
            Query::update()
                .table(self.table(OUTBOX))
                .value("leased_until", Expr::cust("NULL"))
                .value(
                    "due_ms",
                    Expr::case(Expr::col("due_ms").lt(due_ms), Expr::val(due_ms))
                        .finally(Expr::col("due_ms")),
                )
                .and_where(Expr::col("id").eq(row_id(id)))
                .and_where(Expr::col("leased_until").eq(until_ms))
                .and_where(Expr::col("dead_ms").is_null()),
        )
    }

    /// The number of live items (one 64-bit integer column).
    pub fn outbox_count(&self) -> Sql {
        self.build(
            Query::select()
                .expr(Func::count(Expr::col(Asterisk)))
                .from(self.table(OUTBOX))
                .and_where(Expr::col("dead_ms").is_null()),
        )
    }

    /// The number of rows, live or dead (one 64-bit integer column): whether a table holds
    /// anything at all.
    pub fn outbox_rows(&self) -> Sql {
        self.build(
            Query::select()
                .expr(Func::count(Expr::col(Asterisk)))
                .from(self.table(OUTBOX)),
        )
    }

    /// For an account's own table: when any of its items may next be claimed — the oldest live
    /// item's due time or, while it is leased, its lease end (no row: nothing live). Nothing
    /// behind the oldest live item is handed out before it (the order rule), so a worker can
    /// skip the table until then.
    pub fn outbox_next_due(&self) -> Sql {
        let mut q = Query::select();
        q.expr(Expr::cust(
            "CASE WHEN leased_until IS NOT NULL AND leased_until > due_ms \
             THEN leased_until ELSE due_ms END",
        ))
        .from(self.table(OUTBOX))
        .and_where(Expr::col("dead_ms").is_null())
        .order_by("id", Order::Asc)
        .limit(1);
        self.build(&q)
    }

    /// For the shared table: when any of its items may next be claimed — the earliest, over the
    /// accounts, of each account's oldest live item's due time (or lease end while leased);
    /// nothing behind an account's oldest live item is handed out before it, so held accounts
    /// with several items do not pull the bound down. `NULL` when nothing is live.
    pub fn outbox_min_due(&self) -> Sql {
        let table = self.table_text(OUTBOX);
        Sql {
            text: format!(
                "SELECT MIN(CASE WHEN o.leased_until IS NOT NULL AND o.leased_until > o.due_ms \
                 THEN o.leased_until ELSE o.due_ms END) FROM {table} AS o \
                 WHERE o.dead_ms IS NULL AND NOT EXISTS (SELECT 1 FROM {table} AS p \
                 WHERE p.did = o.did AND p.id < o.id AND p.dead_ms IS NULL)"
            ),
            values: Vec::new(),
        }
    }

    /// The number of dead letters, of one account (not for an account's own table) or of all
    /// (one 64-bit integer column).
    pub fn outbox_dead_count(&self, did: Option<&str>) -> Sql {
        let mut q = Query::select();
        q.expr(Func::count(Expr::col(Asterisk)))
            .from(self.table(OUTBOX))
            .and_where(Expr::col("dead_ms").is_not_null());
        if let Some(did) = did {
            q.and_where(Expr::col("did").eq(did));
        }
        self.build(&q)
    }

    /// Up to `n` dead letters with ids above `after`, in id order: `id, item, attempts,
    /// last_error ('' when none), dead_ms`, then `did` except for an account's own table.
    pub fn outbox_dead_letters(&self, after: i64, n: usize) -> Sql {
        let mut q = Query::select();
        q.column("id")
            .column("item")
            .expr(Expr::col("attempts").cast_as("BIGINT"))
            .expr(Func::coalesce([Expr::col("last_error"), Expr::val("")]))
            .column("dead_ms")
            .from(self.table(OUTBOX))
            .and_where(Expr::col("dead_ms").is_not_null())
            .and_where(Expr::col("id").gt(after))
            .order_by("id", Order::Asc)
            .limit(limit(n));
        if !self.account_outbox {
            q.column("did");
        }
        self.build(&q)
    }

    /// Copies a dead letter into a new live row (a new, larger id: behind every item of its
    /// account; no attempts, due at once); returns the new `id`, no row if `id` is not a dead
    /// letter. Run [`ServiceSql::outbox_delete_dead`] in the same transaction.
    pub fn outbox_requeue(&self, id: u64) -> Result<Sql, SqlError> {
        let mut copy: SelectStatement = Query::select();
        if !self.account_outbox {
            copy.column("did");
        }
        copy.column("item")
            .expr(Expr::val(i64::MIN))
            .from(self.table(OUTBOX))
            .and_where(Expr::col("id").eq(row_id(id)))
            .and_where(Expr::col("dead_ms").is_not_null());
        let columns: &[&str] = if self.account_outbox {
            &["item", "due_ms"]
        } else {
            &["did", "item", "due_ms"]
        };
        let mut q = Query::insert();
        q.into_table(self.table(OUTBOX))
            .columns(columns.iter().copied())
            .select_from(copy)?
            .returning_col("id");
        Ok(self.build(&q))
    }

    /// Deletes a dead letter (after [`ServiceSql::outbox_requeue`] copied it).
    pub fn outbox_delete_dead(&self, id: u64) -> Sql {
        self.build(
            Query::delete()
                .from_table(self.table(OUTBOX))
                .and_where(Expr::col("id").eq(row_id(id)))
                .and_where(Expr::col("dead_ms").is_not_null()),
        )
    }

    /// Deletes every item of the account, dead letters included (every row of an account's own
    /// table).
    pub fn outbox_purge(&self, did: &str) -> Sql {
        let mut q = Query::delete();
        q.from_table(self.table(OUTBOX));
        if !self.account_outbox {
            q.and_where(Expr::col("did").eq(did));
        }
        self.build(&q)
    }
}
