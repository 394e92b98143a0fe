//! [`Storage`]: the storage ports of one Stratos instance, as one value.
//!
//! A commit is written by the [`RepoStore`] together with the PDS writes it causes
//! ([`CommitUnit::outbox`](crate::repo_store::CommitUnit::outbox)), in one transaction, into the
//! [`Outbox`] that the delivery worker drains. The two must therefore be two views of the same
//! database: a bundle built by one adapter. Each storage adapter exposes one constructor returning
//! this type (`stratos_sqlite::open_storage`, `stratos_postgres::connect_storage`,
//! `stratos_testkit::memory::storage`), so an app cannot pair a repository store with an outbox
//! of another backend by accident.

use std::sync::Arc;

use crate::enrollment_store::EnrollmentStore;
use crate::keys::SigningKeyStore;
use crate::oauth_store::OAuthStore;
use crate::outbox::Outbox;
use crate::repo_store::RepoStore;

/// One connection pool (or cache of open database handles) of a storage adapter, as monitoring
/// reports it (`stratos_storage_pool_*` in the service's `/metrics`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolFigures {
    /// What the pool serves, as a metrics label: `service` (the service tables), `actors` (the
    /// SQLite adapter's open per-account databases), `main` (the PostgreSQL adapter's one pool).
    pub name: &'static str,
    /// Connections (or open handles) held now.
    pub open: u32,
    /// Of `open`, those not in use now.
    pub idle: u32,
    /// The most the pool holds.
    pub max: u32,
}

impl PoolFigures {
    /// Figures of the pool `name`.
    pub fn new(name: &'static str, open: u32, idle: u32, max: u32) -> Self {
        Self {
            name,
            open,
            idle,
            max,
        }
    }
}

/// An adapter's pool figures: a cheap read of counters the pools keep, no I/O.
pub trait PoolStats: Send + Sync {
    /// One entry per pool.
    fn pools(&self) -> Vec<PoolFigures>;
}

/// The parts of a [`Storage`], as an adapter builds them.
///
/// `repos` must write each commit's outbox items into `outbox` in the commit's transaction.
pub struct StorageParts {
    /// Per-account repositories (blocks, records, the sequence log).
    pub repos: Arc<dyn RepoStore>,
    /// Enrollments and the enrollment log.
    pub enrollments: Arc<dyn EnrollmentStore>,
    /// Accounts' signing keys.
    pub keys: Arc<dyn SigningKeyStore>,
    /// The PDS-write outbox, filled by `repos` in each commit's transaction.
    pub outbox: Arc<dyn Outbox>,
    /// OAuth authorization states and sessions.
    pub oauth: Arc<dyn OAuthStore>,
}

impl std::fmt::Debug for StorageParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageParts").finish_non_exhaustive()
    }
}

/// The storage ports of one instance, built together by one adapter (see the module docs).
#[derive(Clone)]
pub struct Storage {
    repos: Arc<dyn RepoStore>,
    enrollments: Arc<dyn EnrollmentStore>,
    keys: Arc<dyn SigningKeyStore>,
    outbox: Arc<dyn Outbox>,
    oauth: Arc<dyn OAuthStore>,
    pools: Option<Arc<dyn PoolStats>>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage").finish_non_exhaustive()
    }
}

impl Storage {
    /// Bundles an adapter's stores. Meant for storage adapters: `parts.repos` must write each
    /// commit's outbox items into `parts.outbox` in the commit's own transaction.
    pub fn from_parts(parts: StorageParts) -> Self {
        Self {
            repos: parts.repos,
            enrollments: parts.enrollments,
            keys: parts.keys,
            outbox: parts.outbox,
            oauth: parts.oauth,
            pools: None,
        }
    }

    /// The same bundle reporting `stats` as its pool figures ([`Storage::pool_figures`]).
    pub fn with_pool_stats(self, stats: Arc<dyn PoolStats>) -> Self {
        Self {
            pools: Some(stats),
            ..self
        }
    }

    /// The adapter's connection pools, as [`PoolStats`] reports them; empty for an adapter that
    /// reports none (the in-memory fakes).
    pub fn pool_figures(&self) -> Vec<PoolFigures> {
        self.pools.as_ref().map(|p| p.pools()).unwrap_or_default()
    }

    /// The same bundle with the repository store wrapped (e.g. by a
    /// [`CachedBlocks`](crate::block_cache::CachedBlocks) block cache). The wrapper must forward
    /// commits unchanged, outbox items included.
    pub fn map_repos(self, wrap: impl FnOnce(Arc<dyn RepoStore>) -> Arc<dyn RepoStore>) -> Self {
        Self {
            repos: wrap(self.repos),
            ..self
        }
    }

    /// Per-account repositories.
    pub fn repos(&self) -> &Arc<dyn RepoStore> {
        &self.repos
    }

    /// Enrollments and the enrollment log.
    pub fn enrollments(&self) -> &Arc<dyn EnrollmentStore> {
        &self.enrollments
    }

    /// Accounts' signing keys.
    pub fn keys(&self) -> &Arc<dyn SigningKeyStore> {
        &self.keys
    }

    /// The PDS-write outbox.
    pub fn outbox(&self) -> &Arc<dyn Outbox> {
        &self.outbox
    }

    /// OAuth authorization states and sessions.
    pub fn oauth(&self) -> &Arc<dyn OAuthStore> {
        &self.oauth
    }
}
