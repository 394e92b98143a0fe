//! Valkey (or Redis) adapter: the shared [`Cache`] port, used for cached values with a TTL and
//! for the enrollment allow-list set that several service instances share.
//!
//! Every key is namespaced by a prefix, so several deployments (or parallel tests) can share one
//! server without seeing each other's keys.

use async_trait::async_trait;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use stratos_ports::env::{Cache, EnvError};

/// Members added per `SADD` when a set is replaced.
const SADD_CHUNK: usize = 1000;

/// Failures while connecting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ValkeyError {
    /// The URL is malformed or the server is unreachable.
    #[error("valkey: {0}")]
    Redis(#[from] redis::RedisError),
}

/// [`Cache`] over a Valkey/Redis server, through a reconnecting connection manager.
#[derive(Clone)]
pub struct ValkeyCache {
    conn: ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for ValkeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password; only the prefix is shown.
        f.debug_struct("ValkeyCache")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn backend(e: redis::RedisError) -> EnvError {
    EnvError::Backend(format!("valkey: {e}"))
}

impl ValkeyCache {
    /// Connects to `url` (`redis://host:port/db`); every key gets `prefix` in front.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, ValkeyError> {
        let client = redis::Client::open(url)?;
        let conn = ConnectionManager::new(client).await?;
        Ok(Self {
            conn,
            prefix: prefix.to_owned(),
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

#[async_trait]
impl Cache for ValkeyCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, EnvError> {
        let mut conn = self.conn.clone();
        conn.get(self.key(key)).await.map_err(backend)
    }

    async fn set(&self, key: &str, value: &[u8], ttl_ms: u64) -> Result<(), EnvError> {
        let mut conn = self.conn.clone();
        // A TTL of 0 would be rejected by the server; it means "already expired".
        if ttl_ms == 0 {
            return self.delete(key).await;
        }
        redis::cmd("SET")
            .arg(self.key(key))
            .arg(value)
            .arg("PX")
            .arg(ttl_ms)
            .query_async::<()>(&mut conn)
            .await
            .map_err(backend)
    }

    async fn delete(&self, key: &str) -> Result<(), EnvError> {
        let mut conn = self.conn.clone();
        conn.del::<_, ()>(self.key(key)).await.map_err(backend)
    }

    async fn replace_set(&self, key: &str, members: &[String]) -> Result<(), EnvError> {
        let mut conn = self.conn.clone();
        let key = self.key(key);
        // One MULTI/EXEC: readers see the old set or the new one, never a half-filled set.
        let mut pipe = redis::pipe();
        pipe.atomic().del(&key).ignore();
        for chunk in members.chunks(SADD_CHUNK) {
            pipe.sadd(&key, chunk).ignore();
        }
        pipe.query_async::<()>(&mut conn).await.map_err(backend)
    }

    async fn set_contains(&self, key: &str, member: &str) -> Result<bool, EnvError> {
        let mut conn = self.conn.clone();
        conn.sismember(self.key(key), member).await.map_err(backend)
    }
}
