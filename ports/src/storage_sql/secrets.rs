//! Signing keys, OAuth states and OAuth sessions. Values hold secrets: statements carry them
//! as parameters only, and [`super::Sql`] is never logged by the adapters.

use sea_query::{Expr, ExprTrait, OnConflict, Query};

use super::{ServiceSql, Sql, SqlError};

const SIGNING_KEY: &str = "signing_key";
const OAUTH_STATE: &str = "oauth_state";
const OAUTH_SESSION: &str = "oauth_session";

impl ServiceSql {
    /// Stores the account's signing key (algorithm name and private bytes), replacing any.
    pub fn key_upsert(&self, did: &str, alg: &str, key: Vec<u8>) -> Result<Sql, SqlError> {
        let mut q = Query::insert();
        q.into_table(self.table(SIGNING_KEY))
            .columns(["did", "alg", "key"])
            .values([Expr::val(did), Expr::val(alg), Expr::val(key)])?
            .on_conflict(
                OnConflict::column("did")
                    .update_columns(["alg", "key"])
                    .to_owned(),
            );
        Ok(self.build(&q))
    }

    /// The account's signing key: `alg, key`.
    pub fn key_get(&self, did: &str) -> Sql {
        self.build(
            Query::select()
                .columns(["alg", "key"])
                .from(self.table(SIGNING_KEY))
                .and_where(Expr::col("did").eq(did)),
        )
    }

    /// Deletes the account's signing key.
    pub fn key_delete(&self, did: &str) -> Sql {
        self.build(
            Query::delete()
                .from_table(self.table(SIGNING_KEY))
                .and_where(Expr::col("did").eq(did)),
        )
    }

    /// Stores an OAuth state, replacing one with the same key.
    pub fn oauth_state_upsert(
        &self,
        key: &str,
        value: &str,
        expires_at_ms: i64,
    ) -> Result<Sql, SqlError> {
        let mut q = Query::insert();
        q.into_table(self.table(OAUTH_STATE))
            .columns(["key", "value", "expires_at_ms"])
            .values([Expr::val(key), Expr::val(value), Expr::val(expires_at_ms)])?
            .on_conflict(
                OnConflict::column("key")
                    .update_columns(["value", "expires_at_ms"])
                    .to_owned(),
            );
        Ok(self.build(&q))
    }

    /// Deletes an OAuth state and returns it (`value, expires_at_ms`): taking is one
    /// statement, so two callbacks with the same state cannot both win.
    pub fn oauth_state_take(&self, key: &str) -> Sql {
        self.build(
            Query::delete()
                .from_table(self.table(OAUTH_STATE))
                .and_where(Expr::col("key").eq(key))
                .returning(Query::returning().columns(["value", "expires_at_ms"])),
        )
    }

    /// Stores the account's OAuth session, replacing any.
    pub fn oauth_session_upsert(&self, did: &str, value: &str) -> Result<Sql, SqlError> {
        let mut q = Query::insert();
        q.into_table(self.table(OAUTH_SESSION))
            .columns(["did", "value"])
            .values([Expr::val(did), Expr::val(value)])?
            .on_conflict(OnConflict::column("did").update_column("value").to_owned());
        Ok(self.build(&q))
    }

    /// The account's OAuth session (`value`).
    pub fn oauth_session_get(&self, did: &str) -> Sql {
        self.build(
            Query::select()
                .column("value")
                .from(self.table(OAUTH_SESSION))
                .and_where(Expr::col("did").eq(did)),
        )
    }

    /// Deletes the account's OAuth session.
    pub fn oauth_session_delete(&self, did: &str) -> Sql {
        self.build(
            Query::delete()
                .from_table(self.table(OAUTH_SESSION))
                .and_where(Expr::col("did").eq(did)),
        )
    }
}
