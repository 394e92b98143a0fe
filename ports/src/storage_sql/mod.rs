//! The SQL of the service tables — enrollments and their boundaries, enrollment events, signing
//! keys, OAuth states and sessions, the outbox — written once for every SQL storage adapter.
//!
//! Like [`crate::storage_codec`], this is a format all storage adapters share, so it lives here
//! rather than in each adapter (adapters never depend on each other). It only builds text:
//! [`sea_query`] is a query builder and opens nothing; each adapter runs the [`Sql`] it gets on
//! its own connections, in its own transactions, and decodes the rows itself. What differs by
//! dialect is decided here — by sea-query's backend builders (placeholders, quoting, row locks,
//! which SQLite has no use for) or, where sea-query has no word for it, by one `match` on
//! [`Dialect`] in this module — never by a second copy of a statement in an adapter.
//!
//! Columns of every `SELECT` and `RETURNING` are listed in the order the adapters read them.

mod ddl;
mod enrollment;
pub mod migrations;
mod outbox;
mod secrets;

use sea_query::{
    Alias, IntoTableRef, PostgresQueryBuilder, QueryStatementWriter, SqliteQueryBuilder, TableRef,
};

/// A bound parameter (sea-query's value type, which sea-orm re-exports as `sea_orm::Value`).
pub use sea_query::Value;

/// The SQL dialect an adapter speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite (`?` placeholders, tables unqualified).
    Sqlite,
    /// PostgreSQL (`$n` placeholders, tables in the service schema).
    Postgres,
}

/// One statement: its text and its parameters, in placeholder order.
#[derive(Debug, Clone, PartialEq)]
pub struct Sql {
    /// The statement text.
    pub text: String,
    /// The parameters.
    pub values: Vec<Value>,
}

/// A statement could not be built (a defect in this module, never caused by data).
#[derive(Debug, Clone, thiserror::Error)]
#[error("building SQL: {0}")]
pub struct SqlError(String);

impl From<sea_query::error::Error> for SqlError {
    fn from(e: sea_query::error::Error) -> Self {
        SqlError(e.to_string())
    }
}

/// Builds the service tables' statements for one dialect and table naming.
#[derive(Debug, Clone)]
pub struct ServiceSql {
    dialect: Dialect,
    schema: Option<String>,
    /// The outbox table is one account's own (no `did` column): see
    /// [`ServiceSql::account_outbox`].
    account_outbox: bool,
}

impl ServiceSql {
    /// SQLite: the service tables are unqualified (they have a database file of their own).
    pub fn sqlite() -> Self {
        Self {
            dialect: Dialect::Sqlite,
            schema: None,
            account_outbox: false,
        }
    }

    /// The outbox statements for an outbox table that belongs to one account — SQLite's actor
    /// databases, whose `outbox` has no `did` column (every row is the file's account). Only the
    /// `outbox_*` statements that do not take a DID apply; they return no `did` column.
    pub fn account_outbox() -> Self {
        Self {
            dialect: Dialect::Sqlite,
            schema: None,
            account_outbox: true,
        }
    }

    /// PostgreSQL with the service tables in `schema` (its bare name, e.g. `stratos`; it is
    /// quoted here).
    pub fn postgres(schema: &str) -> Self {
        Self {
            dialect: Dialect::Postgres,
            schema: Some(schema.to_owned()),
            account_outbox: false,
        }
    }

    /// The dialect.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    fn table(&self, name: &'static str) -> TableRef {
        match &self.schema {
            Some(schema) => (Alias::new(schema.as_str()), name).into_table_ref(),
            None => name.into_table_ref(),
        }
    }

    /// The table's name as it appears in statement text (for the few statements sea-query
    /// cannot express).
    fn table_text(&self, name: &str) -> String {
        match &self.schema {
            Some(schema) => format!("\"{schema}\".\"{name}\""),
            None => format!("\"{name}\""),
        }
    }

    fn build(&self, statement: &impl QueryStatementWriter) -> Sql {
        let (text, values) = match self.dialect {
            Dialect::Sqlite => statement.build(SqliteQueryBuilder),
            Dialect::Postgres => statement.build(PostgresQueryBuilder),
        };
        Sql {
            text,
            values: values.0,
        }
    }
}

/// A row count or cursor as a bound integer: the drivers bind `i64`, so larger values saturate.
fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A `LIMIT`: sea-query binds it as `u64`, which the drivers convert to `i64` and would refuse
/// above `i64::MAX`.
fn limit(n: usize) -> u64 {
    u64::try_from(n)
        .unwrap_or(u64::MAX)
        .min(i64::MAX.unsigned_abs())
}

#[cfg(test)]
mod tests;
