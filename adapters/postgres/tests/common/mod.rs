//! What the PostgreSQL integration tests share: the server they run against, and databases of
//! their own for cases that need a schema without a test prefix.
#![allow(dead_code)] // each test binary uses a part

use sea_orm::sqlx::{self, Connection as _, PgConnection};

/// The server's URL (`STRATOS_TEST_POSTGRES_URL`), or `None` with a `SKIPPED:` line — never
/// under `CI=true`, where the suites must run.
pub fn server(what: &str) -> Option<String> {
    match std::env::var("STRATOS_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "STRATOS_TEST_POSTGRES_URL is not set in CI: the PostgreSQL suites must run"
            );
            eprintln!("SKIPPED: {what} (set STRATOS_TEST_POSTGRES_URL to run it)");
            None
        }
    }
}

/// Runs `sql` (one or more statements) on a new connection to `url`.
pub async fn run(url: &str, sql: &str) {
    let mut conn = PgConnection::connect(url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut conn)
        .await
        .unwrap();
}

/// A database of its own on the server, for one case; dropped by [`Scratch::drop_db`].
pub struct Scratch {
    server: String,
    name: String,
    /// Its URL (the server's, with the database replaced).
    pub url: String,
}

impl Scratch {
    /// Creates `stratos_{case}_{pid}` (dropping a leftover of that name first).
    pub async fn new(server: &str, case: &str) -> Self {
        let name = format!("stratos_{case}_{}", std::process::id());
        run(
            server,
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        )
        .await;
        run(server, &format!("CREATE DATABASE {name}")).await;
        let (base, query) = server.split_once('?').unwrap_or((server, ""));
        let (host, _db) = base.rsplit_once('/').unwrap();
        let url = if query.is_empty() {
            format!("{host}/{name}")
        } else {
            format!("{host}/{name}?{query}")
        };
        Self {
            server: server.to_owned(),
            name,
            url,
        }
    }

    /// Drops the database.
    pub async fn drop_db(self) {
        run(
            &self.server,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        )
        .await;
    }
}
