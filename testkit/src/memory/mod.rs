//! In-memory implementations of every port, for unit tests and embedders' tests. Each passes the
//! same conformance suite as the real adapters.

mod blobs;
mod enrollment;
mod env;
mod keys;
mod oauth;
mod outbox;
mod repo;

pub use blobs::MemoryBlobStore;
pub use enrollment::MemoryEnrollmentStore;
pub use env::{
    ManualClock, MemoryAllowList, MemoryAuthorizationServers, MemoryCache, MemoryIdentity,
    MemoryNotifier,
};
pub use keys::MemoryKeyStore;
pub use oauth::MemoryOAuthStore;
pub use outbox::MemoryOutbox;
pub use repo::MemoryRepoStore;

use std::sync::Arc;

use stratos_ports::{Storage, StorageParts};

/// A fresh in-memory [`Storage`] bundle: every store empty, the repository store writing each
/// commit's outbox items into the bundle's outbox (as a real adapter does in the commit's
/// transaction).
pub fn storage() -> Storage {
    let outbox = Arc::new(MemoryOutbox::new());
    Storage::from_parts(StorageParts {
        repos: Arc::new(MemoryRepoStore::with_outbox(outbox.clone())),
        enrollments: Arc::new(MemoryEnrollmentStore::new()),
        keys: Arc::new(MemoryKeyStore::new()),
        outbox,
        oauth: Arc::new(MemoryOAuthStore::new()),
    })
}
