//! Configuration from the environment (`WEBAPP_*`; docs/webapp.md lists every variable, and a
//! test holds that table to the names read here).

use std::collections::HashMap;
use std::net::SocketAddr;

/// A variable with a value the web app cannot use.
#[derive(Debug, thiserror::Error)]
#[error("{name}: {message}")]
pub struct ConfigError {
    /// The variable.
    pub name: &'static str,
    /// What is wrong with it.
    pub message: String,
}

/// Every variable the web app reads, in the order docs/webapp.md lists them.
pub const VARIABLES: &[&str] = &[
    "WEBAPP_BIND",
    "WEBAPP_PUBLIC_URL",
    "WEBAPP_STRATOS_URL",
    "WEBAPP_STRATOS_DID",
    "WEBAPP_INDEX_DATABASE_URL",
    "WEBAPP_INDEX_SCHEMA",
    "WEBAPP_PLC_URL",
    "WEBAPP_ALLOW_PRIVATE",
    "WEBAPP_VIEWER_TTL_MS",
];

/// The web app's settings.
#[derive(Clone)]
pub struct WebAppConfig {
    /// Where to listen (`WEBAPP_BIND`, `127.0.0.1:3200`; port 0 picks a free one).
    pub bind: SocketAddr,
    /// The URL browsers reach the app at (`WEBAPP_PUBLIC_URL`; default `http://{bind}`). The
    /// app runs atproto's loopback OAuth client, whose redirect URI is
    /// `{public}/oauth/callback`, so this must be `http://127.0.0.1[:port]` or
    /// `http://[::1][:port]`. `None` with port 0: the bound address, known once listening.
    pub public_url: Option<String>,
    /// The Stratos service (`WEBAPP_STRATOS_URL`, `http://127.0.0.1:3100`).
    pub stratos_url: String,
    /// The service's DID (`WEBAPP_STRATOS_DID`; default: the `id` of the service's
    /// `/.well-known/did.json`).
    pub stratos_did: Option<String>,
    /// The indexer's PostgreSQL (`WEBAPP_INDEX_DATABASE_URL`, required): the AppView index the
    /// private feed is read from.
    pub index_url: String,
    /// Its schema (`WEBAPP_INDEX_SCHEMA`, `bsky`: the indexer's `BSKY_DB_POSTGRES_SCHEMA`).
    pub index_schema: String,
    /// The PLC directory (`WEBAPP_PLC_URL`, `https://plc.directory`).
    pub plc_url: String,
    /// Reach PDSes and authorization servers on private and loopback addresses, over `http://`
    /// on loopback (`WEBAPP_ALLOW_PRIVATE`, `false`): local development and tests only.
    pub allow_private: bool,
    /// How long the AppView SDK caches a viewer's boundaries (`WEBAPP_VIEWER_TTL_MS`, 5000).
    pub viewer_ttl_ms: i64,
}

impl std::fmt::Debug for WebAppConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The database URL may carry a password.
        f.debug_struct("WebAppConfig")
            .field("bind", &self.bind)
            .field("public_url", &self.public_url)
            .field("stratos_url", &self.stratos_url)
            .field("stratos_did", &self.stratos_did)
            .field("index_schema", &self.index_schema)
            .field("plc_url", &self.plc_url)
            .field("allow_private", &self.allow_private)
            .finish_non_exhaustive()
    }
}

fn bool_var(name: &'static str, value: Option<&str>) -> Result<bool, ConfigError> {
    match value.map(str::trim) {
        None | Some("") => Ok(false),
        Some("1" | "true" | "yes" | "on") => Ok(true),
        Some("0" | "false" | "no" | "off") => Ok(false),
        Some(other) => Err(ConfigError {
            name,
            message: format!("{other:?} is not a boolean"),
        }),
    }
}

fn url_var(name: &'static str, value: &str) -> Result<String, ConfigError> {
    let value = value.trim().trim_end_matches('/');
    if value.starts_with("http://") || value.starts_with("https://") {
        Ok(value.to_owned())
    } else {
        Err(ConfigError {
            name,
            message: format!("{value:?} is not an http(s) URL"),
        })
    }
}

impl WebAppConfig {
    /// From the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        let vars = VARIABLES
            .iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| ((*k).to_owned(), v)))
            .collect();
        Self::from_vars(&vars)
    }

    /// From name → value pairs (unset variables absent).
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let get = |k: &str| vars.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let bind: SocketAddr = get("WEBAPP_BIND")
            .unwrap_or("127.0.0.1:3200")
            .parse()
            .map_err(|e| ConfigError {
                name: "WEBAPP_BIND",
                message: format!("not host:port: {e}"),
            })?;
        let public_url = match get("WEBAPP_PUBLIC_URL") {
            Some(u) => Some(url_var("WEBAPP_PUBLIC_URL", u)?),
            None if bind.port() == 0 => None,
            None => Some(format!("http://{bind}")),
        };
        let index_url = get("WEBAPP_INDEX_DATABASE_URL")
            .ok_or(ConfigError {
                name: "WEBAPP_INDEX_DATABASE_URL",
                message: "required: the indexer's PostgreSQL (postgres://…)".into(),
            })?
            .to_owned();
        let viewer_ttl_ms = match get("WEBAPP_VIEWER_TTL_MS") {
            None => 5_000,
            Some(v) => v.parse().map_err(|e| ConfigError {
                name: "WEBAPP_VIEWER_TTL_MS",
                message: format!("{v:?}: {e}"),
            })?,
        };
        Ok(Self {
            bind,
            public_url,
            stratos_url: url_var(
                "WEBAPP_STRATOS_URL",
                get("WEBAPP_STRATOS_URL").unwrap_or("http://127.0.0.1:3100"),
            )?,
            stratos_did: get("WEBAPP_STRATOS_DID").map(str::to_owned),
            index_url,
            index_schema: get("WEBAPP_INDEX_SCHEMA").unwrap_or("bsky").to_owned(),
            plc_url: url_var(
                "WEBAPP_PLC_URL",
                get("WEBAPP_PLC_URL").unwrap_or("https://plc.directory"),
            )?,
            allow_private: bool_var("WEBAPP_ALLOW_PRIVATE", get("WEBAPP_ALLOW_PRIVATE"))?,
            viewer_ttl_ms,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_and_required() {
        let err = WebAppConfig::from_vars(&vars(&[])).unwrap_err();
        assert_eq!(err.name, "WEBAPP_INDEX_DATABASE_URL");
        let c = WebAppConfig::from_vars(&vars(&[("WEBAPP_INDEX_DATABASE_URL", "postgres://x/y")]))
            .unwrap();
        assert_eq!(c.public_url.as_deref(), Some("http://127.0.0.1:3200"));
        assert_eq!(c.stratos_url, "http://127.0.0.1:3100");
        assert_eq!(c.index_schema, "bsky");
        assert!(!c.allow_private);
        assert!(!format!("{c:?}").contains("postgres://"));
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (k, v) in [
            ("WEBAPP_BIND", "nowhere"),
            ("WEBAPP_STRATOS_URL", "ftp://x"),
            ("WEBAPP_ALLOW_PRIVATE", "maybe"),
            ("WEBAPP_VIEWER_TTL_MS", "soon"),
        ] {
            let err = WebAppConfig::from_vars(&vars(&[
                ("WEBAPP_INDEX_DATABASE_URL", "postgres://x/y"),
                (k, v),
            ]))
            .unwrap_err();
            assert_eq!(err.name, k);
        }
    }

    /// docs/webapp.md's variable table names exactly the variables read here.
    #[test]
    fn the_docs_table_is_the_code() {
        let doc = include_str!("../../../docs/webapp.md");
        let documented: Vec<&str> = doc
            .lines()
            .filter_map(|l| l.strip_prefix("| `WEBAPP_"))
            .filter_map(|l| l.split('`').next())
            .collect();
        let read: Vec<String> = VARIABLES
            .iter()
            .map(|v| v.trim_start_matches("WEBAPP_").to_owned())
            .collect();
        assert_eq!(documented, read);
    }
}
