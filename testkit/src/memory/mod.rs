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
