//! In-memory implementations of every port, for unit tests and embedders' tests. Each passes the
//! same conformance suite as the real adapters.

mod appview;
mod blobs;
mod enrollment;
mod env;
mod keys;
mod oauth;
mod outbox;
mod pds;
mod repo;

pub use appview::MemoryAppViewIndex;
pub use blobs::MemoryBlobStore;
pub use enrollment::MemoryEnrollmentStore;
pub use env::{
    ManualClock, MemoryAllowList, MemoryAuthorizationServers, MemoryCache, MemoryIdentity,
    MemoryNotifier, MemoryPublicRecords,
};
pub use keys::MemoryKeyStore;
pub use oauth::MemoryOAuthStore;
pub use outbox::MemoryOutbox;
pub use pds::{MemoryPds, Script};
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

/// A [`Stratos`](stratos_ports::Stratos) builder for the service `service_did` on in-memory
/// fakes: a fresh [`storage`], blob store, empty identity tables and a new service key. Add
/// boundaries (and any other part) and build.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use stratos_domain::syntax::Did;
///
/// let stratos = stratos_testkit::memory::stratos(Did::parse("did:web:stratos.example")?)
///     .boundaries(["friends"])
///     .build()
///     .await?;
/// assert_eq!(stratos.boundaries()[0].as_str(), "did:web:stratos.example/friends");
/// # Ok(())
/// # }
/// ```
pub fn stratos(service_did: stratos_domain::syntax::Did) -> stratos_ports::StratosBuilder {
    use stratos_domain::crypto::{KeyAlgorithm, Keypair};
    stratos_ports::Stratos::builder(service_did, Keypair::generate(KeyAlgorithm::K256))
        .storage(storage())
        .blob_store(Arc::new(MemoryBlobStore::new()))
        .identity(Arc::new(MemoryIdentity::new()))
}
