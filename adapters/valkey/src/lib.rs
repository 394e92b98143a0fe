//! Valkey (or Redis) adapter: the shared [`Cache`] port, used for cached values with a TTL and
//! for the enrollment allow-list set that several service instances share, and the
//! [`Notifier`] port over `PUBLISH`/`SUBSCRIBE`, which tells every instance that an actor
//! sequenced a new event.
//!
//! Every key and channel is namespaced by a prefix, so several deployments (or parallel tests)
//! can share one server without seeing each other's keys or messages.
#![deny(missing_docs)] // a library crate: every public item is documented (checked in CI)

use async_trait::async_trait;
use futures_util::StreamExt;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, PubSubStream};
use stratos_ports::env::{Cache, EnvError, Notifier, Subscription};

/// Members added per `SADD` when a set is replaced.
const SADD_CHUNK: usize = 1000;

/// Failures while connecting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ValkeyError {
    /// The URL is malformed or the server is unreachable.
    #[error("valkey: {0}")]
    Redis(#[source] stratos_ports::Cause),
}

impl From<redis::RedisError> for ValkeyError {
    fn from(e: redis::RedisError) -> Self {
        ValkeyError::Redis(stratos_ports::Cause::new(e))
    }
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
    EnvError::Backend(stratos_ports::Cause::message(format!("valkey: {e}")))
}

/// A client for `url`: `redis://` in the clear; `rediss://` over TLS (rustls), the server's
/// certificate checked against `root_ca` (PEM) when given, else the system's roots.
/// (`rediss://…/#insecure` would skip the check; it is refused, as no production setup wants it.)
pub fn client(url: &str, root_ca: Option<&[u8]>) -> Result<redis::Client, ValkeyError> {
    if url.contains("#insecure") {
        return Err(ValkeyError::Redis(stratos_ports::Cause::message(
            "rediss://…#insecure turns certificate checks off; give the server's CA instead",
        )));
    }
    match root_ca {
        Some(pem) if url.starts_with("rediss://") || url.starts_with("valkeys://") => {
            Ok(redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.to_vec()),
                },
            )?)
        }
        _ => Ok(redis::Client::open(url)?),
    }
}

impl ValkeyCache {
    /// Connects to `url` (`redis://host:port/db`, or `rediss://` for TLS with the system's
    /// roots); every key gets `prefix` in front.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, ValkeyError> {
        Self::connect_with_ca(url, prefix, None).await
    }

    /// [`ValkeyCache::connect`], a `rediss://` server checked against `root_ca` (PEM).
    pub async fn connect_with_ca(
        url: &str,
        prefix: &str,
        root_ca: Option<&[u8]>,
    ) -> Result<Self, ValkeyError> {
        let client = client(url, root_ca)?;
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

/// [`Notifier`] over Valkey/Redis `PUBLISH`/`SUBSCRIBE`.
///
/// Publishing shares one reconnecting connection; each subscription holds its own connection,
/// because a connection in subscriber mode can run no other command. A subscription whose
/// connection drops ends (`next` returns `None`); the caller subscribes again and catches up
/// from the store, which the port requires of every subscriber anyway.
#[derive(Clone)]
pub struct ValkeyNotifier {
    client: redis::Client,
    conn: ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for ValkeyNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The client's connection info may carry a password; only the prefix is shown.
        f.debug_struct("ValkeyNotifier")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl ValkeyNotifier {
    /// Connects to `url` (`redis://host:port/db`, or `rediss://` for TLS with the system's
    /// roots); every channel gets `prefix` in front.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, ValkeyError> {
        Self::connect_with_ca(url, prefix, None).await
    }

    /// [`ValkeyNotifier::connect`], a `rediss://` server checked against `root_ca` (PEM).
    pub async fn connect_with_ca(
        url: &str,
        prefix: &str,
        root_ca: Option<&[u8]>,
    ) -> Result<Self, ValkeyError> {
        let client = client(url, root_ca)?;
        let conn = ConnectionManager::new(client.clone()).await?;
        Ok(Self {
            client,
            conn,
            prefix: prefix.to_owned(),
        })
    }

    fn channel(&self, channel: &str) -> String {
        format!("{}{channel}", self.prefix)
    }
}

#[async_trait]
impl Notifier for ValkeyNotifier {
    async fn publish(&self, channel: &str, payload: &[u8]) -> Result<(), EnvError> {
        let mut conn = self.conn.clone();
        conn.publish::<_, _, ()>(self.channel(channel), payload)
            .await
            .map_err(backend)
    }

    async fn subscribe(&self, channel: &str) -> Result<Box<dyn Subscription>, EnvError> {
        let mut pubsub = self.client.get_async_pubsub().await.map_err(backend)?;
        // Returns once the server confirmed the subscription, so no later publish is missed.
        pubsub
            .subscribe(self.channel(channel))
            .await
            .map_err(backend)?;
        Ok(Box::new(ValkeySubscription {
            messages: pubsub.into_on_message(),
        }))
    }
}

/// One subscriber connection; dropping it closes the connection.
struct ValkeySubscription {
    messages: PubSubStream,
}

#[async_trait]
impl Subscription for ValkeySubscription {
    async fn next(&mut self) -> Option<Vec<u8>> {
        self.messages
            .next()
            .await
            .map(|msg| msg.get_payload_bytes().to_vec())
    }
}
