//! Enrollments, their boundaries and the enrollment event log.

use sea_query::{Expr, ExprTrait, Func, LockType, OnConflict, Order, Query, SelectStatement};

use super::{Dialect, ServiceSql, Sql, SqlError, int, limit};
use crate::enrollment_store::{Enrollment, EnrollmentAction};
use stratos_domain::boundary::Boundary;

const ENROLLMENT: &str = "enrollment";
const BOUNDARY: &str = "enrollment_boundary";
const EVENT: &str = "enrollment_event";

impl ServiceSql {
    /// `SELECT 1` if the account is enrolled, locking its row to the end of the transaction
    /// where the dialect has row locks (PostgreSQL: two concurrent enrolls of one account log
    /// one `enroll`). SQLite has no row locks and needs none: its service database has one
    /// connection, which serialises writers.
    pub fn enrollment_exists(&self, did: &str) -> Sql {
        self.build(
            Query::select()
                .expr(Expr::cust("1"))
                .from(self.table(ENROLLMENT))
                .and_where(Expr::col("did").eq(did))
                .lock(LockType::Update),
        )
    }

    /// Inserts the enrollment or replaces every column of an existing one (its boundaries are
    /// separate rows).
    pub fn enrollment_upsert(&self, e: &Enrollment) -> Result<Sql, SqlError> {
        let columns = [
            "did",
            "enrolled_at",
            "pds_endpoint",
            "signing_key",
            "enrollment_rkey",
        ];
        let mut q = Query::insert();
        q.into_table(self.table(ENROLLMENT))
            .columns(columns)
            .values([
                Expr::val(e.did.as_str()),
                Expr::val(e.enrolled_at.as_str()),
                Expr::val(e.pds_endpoint.clone()),
                Expr::val(e.signing_key.as_str()),
                Expr::val(e.enrollment_rkey.as_ref().map(ToString::to_string)),
            ])?
            .on_conflict(
                OnConflict::column("did")
                    .update_columns(columns.into_iter().skip(1))
                    .to_owned(),
            );
        Ok(self.build(&q))
    }

    /// Sets the enrollment record's key; touches no row if the account is not enrolled.
    pub fn enrollment_set_rkey(&self, did: &str, rkey: &str) -> Sql {
        self.build(
            Query::update()
                .table(self.table(ENROLLMENT))
                .value("enrollment_rkey", rkey)
                .and_where(Expr::col("did").eq(did)),
        )
    }

    /// Deletes the enrollment; its boundaries go with it (`ON DELETE CASCADE`).
    pub fn enrollment_delete(&self, did: &str) -> Sql {
        self.build(
            Query::delete()
                .from_table(self.table(ENROLLMENT))
                .and_where(Expr::col("did").eq(did)),
        )
    }

    /// The enrollment with its boundaries in one round trip (on every write's path): columns
    /// `did, enrolled_at, pds_endpoint, signing_key, enrollment_rkey, boundaries`, the last
    /// one the sorted boundaries joined by `\n` (`''` for none).
    pub fn enrollment_get(&self, did: &str) -> Sql {
        let mut q = self.enrollments();
        q.and_where(Expr::col(("e", "did")).eq(did));
        self.build(&q)
    }

    /// Up to `limit` enrollments after `cursor` (`""` for the first page) in DID order, with
    /// the columns of [`ServiceSql::enrollment_get`].
    pub fn enrollment_list(&self, cursor: &str, n: usize) -> Sql {
        let mut q = self.enrollments();
        q.and_where(Expr::col(("e", "did")).gt(cursor))
            .order_by(("e", "did"), Order::Asc)
            .limit(limit(n));
        self.build(&q)
    }

    fn enrollments(&self) -> SelectStatement {
        // Both dialects aggregate with `string_agg(… ORDER BY …)` (SQLite since 3.44; the
        // bundled one is newer); only the name of the character function differs.
        let joined = match self.dialect {
            Dialect::Sqlite => r#"string_agg("boundary", char(10) ORDER BY "boundary")"#,
            Dialect::Postgres => r#"string_agg("boundary", chr(10) ORDER BY "boundary")"#,
        };
        let mut boundaries = Query::select();
        boundaries
            .expr(Expr::cust(joined))
            .from_as(self.table(BOUNDARY), "b")
            .and_where(Expr::col(("b", "did")).equals(("e", "did")));
        let mut q = Query::select();
        q.columns([
            ("e", "did"),
            ("e", "enrolled_at"),
            ("e", "pds_endpoint"),
            ("e", "signing_key"),
            ("e", "enrollment_rkey"),
        ])
        .expr(Func::coalesce([
            Expr::SubQuery(None, Box::new(boundaries.into())),
            Expr::cust("''"),
        ]))
        .from_as(self.table(ENROLLMENT), "e");
        q
    }

    /// The account's boundaries, sorted (one column).
    pub fn boundaries_of(&self, did: &str) -> Sql {
        self.build(
            Query::select()
                .column("boundary")
                .from(self.table(BOUNDARY))
                .and_where(Expr::col("did").eq(did))
                .order_by("boundary", Order::Asc),
        )
    }

    /// Adds boundaries to the account, ignoring those it holds; `None` when there are none.
    pub fn boundaries_insert(
        &self,
        did: &str,
        boundaries: &[Boundary],
    ) -> Result<Option<Sql>, SqlError> {
        if boundaries.is_empty() {
            return Ok(None);
        }
        let mut q = Query::insert();
        q.into_table(self.table(BOUNDARY))
            .columns(["did", "boundary"])
            .on_conflict(OnConflict::new().do_nothing().to_owned());
        for b in boundaries {
            q.values([Expr::val(did), Expr::val(b.as_str())])?;
        }
        Ok(Some(self.build(&q)))
    }

    /// Removes one boundary from the account.
    pub fn boundary_delete(&self, did: &str, boundary: &Boundary) -> Sql {
        self.build(
            Query::delete()
                .from_table(self.table(BOUNDARY))
                .and_where(Expr::col("did").eq(did))
                .and_where(Expr::col("boundary").eq(boundary.as_str())),
        )
    }

    /// Removes every boundary of the account.
    pub fn boundaries_clear(&self, did: &str) -> Sql {
        self.build(
            Query::delete()
                .from_table(self.table(BOUNDARY))
                .and_where(Expr::col("did").eq(did)),
        )
    }

    /// What must run, in the appender's transaction, before [`ServiceSql::event_append`]:
    /// PostgreSQL takes an exclusive table lock (held to the commit) so `MAX + 1` numbers are
    /// consecutive and in commit order — a reader paging by cursor can never see seq n+1 before
    /// seq n, which a sequence would allow. SQLite needs nothing: its one service connection
    /// already serialises appenders. sea-query has no `LOCK TABLE`, hence plain text.
    pub fn event_lock(&self) -> Option<String> {
        match self.dialect {
            Dialect::Sqlite => None,
            Dialect::Postgres => Some(format!(
                "LOCK TABLE {} IN EXCLUSIVE MODE",
                self.table_text(EVENT)
            )),
        }
    }

    /// Appends one enrollment event numbered `MAX(seq) + 1` (pruning always keeps the newest
    /// row, so no number is reused).
    pub fn event_append(
        &self,
        did: &str,
        action: EnrollmentAction,
        time: &str,
        boundaries: &[Boundary],
    ) -> Result<Sql, SqlError> {
        let mut next = Query::select();
        next.expr(
            Expr::from(Func::coalesce([
                Expr::from(Func::max(Expr::col("seq"))),
                Expr::cust("0"),
            ]))
            .add(Expr::cust("1")),
        )
        .expr(Expr::val(did))
        .expr(Expr::val(action.as_str()))
        .expr(Expr::val(time))
        .expr(Expr::val(crate::storage_codec::join_boundaries(boundaries)))
        .from(self.table(EVENT));
        let mut q = Query::insert();
        q.into_table(self.table(EVENT))
            .columns(["seq", "did", "action", "time", "boundaries"])
            .select_from(next)?;
        Ok(self.build(&q))
    }

    /// Up to `n` events after `cursor`, oldest first: `seq, did, action, time, boundaries`.
    pub fn events_after(&self, cursor: u64, n: usize) -> Sql {
        self.build(
            Query::select()
                .columns(["seq", "did", "action", "time", "boundaries"])
                .from(self.table(EVENT))
                .and_where(Expr::col("seq").gt(int(cursor)))
                .order_by("seq", Order::Asc)
                .limit(limit(n)),
        )
    }

    /// The newest event's number, 0 if none (one 64-bit integer column).
    pub fn event_latest_seq(&self) -> Sql {
        self.build(
            Query::select()
                .expr(Func::coalesce([
                    Expr::from(Func::max(Expr::col("seq"))),
                    Expr::cust("0"),
                ]))
                .from(self.table(EVENT)),
        )
    }

    /// Deletes events numbered below `before`, always keeping the newest.
    pub fn events_prune(&self, before: u64) -> Sql {
        let mut newest = Query::select();
        newest
            .expr(Func::max(Expr::col("seq")))
            .from(self.table(EVENT));
        self.build(
            Query::delete()
                .from_table(self.table(EVENT))
                .and_where(Expr::col("seq").lt(int(before)))
                .and_where(Expr::col("seq").lt(Expr::SubQuery(None, Box::new(newest.into())))),
        )
    }
}
