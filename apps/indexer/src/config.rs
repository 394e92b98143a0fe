//! Configuration from the environment (names of reference §1.2 where they fit).

use std::collections::HashMap;
use std::time::Duration;

/// A configuration problem, named by variable.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {reason}")]
pub struct ConfigError {
    /// The variable.
    pub var: &'static str,
    /// What is wrong.
    pub reason: String,
}

/// Everything the indexer reads from its environment.
#[derive(Clone)]
pub struct IndexerConfig {
    /// `STRATOS_SERVICE_URL`: the Stratos service's `http(s)://` base URL (required).
    pub service_url: String,
    /// `STRATOS_SYNC_TOKEN`: the service's sync token (required; never logged).
    pub sync_token: String,
    /// `BSKY_DB_POSTGRES_URL`: the AppView's PostgreSQL (required).
    pub postgres_url: String,
    /// `BSKY_DB_POSTGRES_SCHEMA` (`bsky`).
    pub schema: String,
    /// `BSKY_DB_POOL_SIZE` (8).
    pub pool_size: u32,
    /// `HEALTH_PORT` (3002): health, readiness and `/metrics`.
    pub health_port: u16,
    /// `HEALTH_BIND` (`127.0.0.1`).
    pub health_bind: String,
    /// `ACTOR_SYNC_MAX_CONNECTIONS` (100): account streams open at once; the others wait their
    /// turn in order.
    pub max_connections: usize,
    /// `ACTOR_SYNC_IDLE_EVICTION_MS` (60000): an account stream idle this long gives its
    /// connection up when others are waiting.
    pub idle_eviction: Duration,
    /// `ACTOR_SYNC_RECONNECT_MAX_DELAY_MS` (30000): the longest wait between reconnections.
    pub max_backoff: Duration,
    /// `INDEXER_BATCH_MAX` (1000): the most commits written in one transaction.
    pub batch_max: usize,
    /// `BSKY_REPO_PROVIDER` (optional): a PDS or relay whose `com.atproto.sync.subscribeRepos`
    /// is watched for enrollment records in this service (created: the account is followed;
    /// deleted: dropped if the service confirms it left).
    pub repo_provider: Option<String>,
}

impl std::fmt::Debug for IndexerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token and the database URL (which may carry a password) are not printed.
        f.debug_struct("IndexerConfig")
            .field("service_url", &self.service_url)
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .field("health_port", &self.health_port)
            .field("max_connections", &self.max_connections)
            .field("idle_eviction", &self.idle_eviction)
            .field("max_backoff", &self.max_backoff)
            .field("batch_max", &self.batch_max)
            .field("repo_provider", &self.repo_provider)
            .finish_non_exhaustive()
    }
}

impl IndexerConfig {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&std::env::vars().collect())
    }

    /// Reads `vars` (tests).
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let get = |var: &'static str| vars.get(var).map(|v| v.trim()).filter(|v| !v.is_empty());
        let required = |var: &'static str| {
            get(var).map(str::to_owned).ok_or(ConfigError {
                var,
                reason: "required".into(),
            })
        };
        fn number<T>(
            var: &'static str,
            value: Option<&str>,
            default: T,
            min: T,
        ) -> Result<T, ConfigError>
        where
            T: std::str::FromStr + PartialOrd + std::fmt::Display,
        {
            let Some(v) = value else {
                return Ok(default);
            };
            match v.parse::<T>() {
                Ok(n) if n >= min => Ok(n),
                _ => Err(ConfigError {
                    var,
                    reason: format!("{v:?} is not a number ≥ {min}"),
                }),
            }
        }
        let service_url = required("STRATOS_SERVICE_URL")?;
        if !(service_url.starts_with("http://") || service_url.starts_with("https://")) {
            return Err(ConfigError {
                var: "STRATOS_SERVICE_URL",
                reason: "must be an http(s):// URL".into(),
            });
        }
        let ms = |var, default| number::<u64>(var, get(var), default, 0).map(Duration::from_millis);
        Ok(Self {
            service_url: service_url.trim_end_matches('/').to_owned(),
            sync_token: match (get("STRATOS_SYNC_TOKEN"), get("STRATOS_SYNC_TOKEN_FILE")) {
                (Some(_), Some(_)) => {
                    return Err(ConfigError {
                        var: "STRATOS_SYNC_TOKEN_FILE",
                        reason: "set STRATOS_SYNC_TOKEN or STRATOS_SYNC_TOKEN_FILE, not both"
                            .into(),
                    });
                }
                // A container secret: the file's content without its trailing line break.
                (None, Some(path)) => std::fs::read_to_string(path)
                    .map(|t| t.trim_end_matches(['\r', '\n']).to_owned())
                    .map_err(|e| ConfigError {
                        var: "STRATOS_SYNC_TOKEN_FILE",
                        reason: format!("cannot read {path}: {}", e.kind()),
                    })?,
                _ => required("STRATOS_SYNC_TOKEN")?,
            },
            postgres_url: required("BSKY_DB_POSTGRES_URL")?,
            schema: get("BSKY_DB_POSTGRES_SCHEMA").unwrap_or("bsky").to_owned(),
            pool_size: number("BSKY_DB_POOL_SIZE", get("BSKY_DB_POOL_SIZE"), 8, 1)?,
            health_port: number("HEALTH_PORT", get("HEALTH_PORT"), 3002, 0)?,
            health_bind: get("HEALTH_BIND").unwrap_or("127.0.0.1").to_owned(),
            max_connections: number(
                "ACTOR_SYNC_MAX_CONNECTIONS",
                get("ACTOR_SYNC_MAX_CONNECTIONS"),
                100,
                1,
            )?,
            idle_eviction: ms("ACTOR_SYNC_IDLE_EVICTION_MS", 60_000)?,
            max_backoff: ms("ACTOR_SYNC_RECONNECT_MAX_DELAY_MS", 30_000)?,
            batch_max: number("INDEXER_BATCH_MAX", get("INDEXER_BATCH_MAX"), 1000, 1)?,
            repo_provider: get("BSKY_REPO_PROVIDER").map(str::to_owned),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    const REQUIRED: &[(&str, &str)] = &[
        ("STRATOS_SERVICE_URL", "http://127.0.0.1:3100/"),
        ("STRATOS_SYNC_TOKEN", "secret"),
        ("BSKY_DB_POSTGRES_URL", "postgres://u:pw@localhost/appview"),
    ];

    #[test]
    fn the_sync_token_can_come_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "from-file\n").unwrap();
        let mut v = vars(REQUIRED);
        v.remove("STRATOS_SYNC_TOKEN");
        v.insert(
            "STRATOS_SYNC_TOKEN_FILE".into(),
            file.to_string_lossy().into_owned(),
        );
        assert_eq!(
            IndexerConfig::from_vars(&v).unwrap().sync_token,
            "from-file"
        );
        v.insert("STRATOS_SYNC_TOKEN".into(), "x".into());
        assert_eq!(
            IndexerConfig::from_vars(&v).unwrap_err().var,
            "STRATOS_SYNC_TOKEN_FILE"
        );
    }

    #[test]
    fn defaults_and_overrides() {
        let c = IndexerConfig::from_vars(&vars(REQUIRED)).unwrap();
        assert_eq!(c.service_url, "http://127.0.0.1:3100");
        assert_eq!(c.schema, "bsky");
        assert_eq!(c.health_port, 3002);
        assert_eq!(c.max_connections, 100);
        let mut v = vars(REQUIRED);
        v.insert("ACTOR_SYNC_MAX_CONNECTIONS".into(), "3".into());
        v.insert("ACTOR_SYNC_IDLE_EVICTION_MS".into(), "250".into());
        let c = IndexerConfig::from_vars(&v).unwrap();
        assert_eq!(c.max_connections, 3);
        assert_eq!(c.idle_eviction, Duration::from_millis(250));
        // Secrets stay out of logs.
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("secret") && !shown.contains("pw"),
            "{shown}"
        );
    }

    #[test]
    fn missing_and_malformed_values_are_named() {
        for missing in [
            "STRATOS_SERVICE_URL",
            "STRATOS_SYNC_TOKEN",
            "BSKY_DB_POSTGRES_URL",
        ] {
            let mut v = vars(REQUIRED);
            v.remove(missing);
            assert_eq!(IndexerConfig::from_vars(&v).unwrap_err().var, missing);
        }
        let mut v = vars(REQUIRED);
        v.insert("HEALTH_PORT".into(), "http".into());
        assert_eq!(IndexerConfig::from_vars(&v).unwrap_err().var, "HEALTH_PORT");
        let mut v = vars(REQUIRED);
        v.insert("ACTOR_SYNC_MAX_CONNECTIONS".into(), "0".into());
        assert!(IndexerConfig::from_vars(&v).is_err());
        let mut v = vars(REQUIRED);
        v.insert("STRATOS_SERVICE_URL".into(), "ftp://x".into());
        assert!(IndexerConfig::from_vars(&v).is_err());
    }

    /// docs/indexer.md's table names exactly the variables this module reads.
    #[test]
    fn the_documented_variables_are_the_read_ones() {
        let doc = include_str!("../../../docs/indexer.md");
        let source = include_str!("config.rs");
        let code_part = source.split("#[cfg(test)]").next().unwrap();
        let mut read: Vec<&str> = code_part
            .split('"')
            .skip(1)
            .step_by(2)
            .filter(|s| s.len() > 3 && s.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
            .collect();
        read.sort_unstable();
        read.dedup();
        let mut documented: Vec<&str> = doc
            .lines()
            .filter(|l| l.starts_with("| `"))
            .flat_map(|l| l.split('|').nth(1).unwrap_or("").split('`'))
            .filter(|s| s.len() > 3 && s.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
            .collect();
        documented.sort_unstable();
        documented.dedup();
        // LOG_LEVEL is read by the binary (main.rs), not here.
        documented.retain(|v| *v != "LOG_LEVEL");
        assert_eq!(read, documented);
    }
}
