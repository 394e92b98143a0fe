#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! Every in-memory fake passes its port's conformance suite.

use std::sync::Arc;

use stratos_testkit::conformance;
use stratos_testkit::memory::{
    MemoryBlobStore, MemoryEnrollmentStore, MemoryKeyStore, MemoryOAuthStore, MemoryOutbox,
    MemoryRepoStore,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_repo_store() {
    conformance::repo_store::run(Arc::new(MemoryRepoStore::new())).await;
}

#[tokio::test]
async fn memory_enrollment_store() {
    conformance::enrollment_store::run(Arc::new(MemoryEnrollmentStore::new())).await;
}

#[tokio::test]
async fn memory_outbox() {
    conformance::outbox::run(Arc::new(MemoryOutbox::new())).await;
}

#[tokio::test]
async fn memory_blob_store() {
    conformance::blob_store::run(Arc::new(MemoryBlobStore::new())).await;
}

#[tokio::test]
async fn memory_key_store() {
    conformance::keys::run(Arc::new(MemoryKeyStore::new())).await;
}

#[tokio::test]
async fn memory_oauth_store() {
    conformance::oauth_store::run(Arc::new(MemoryOAuthStore::new())).await;
}

#[tokio::test]
async fn memory_cache() {
    use stratos_testkit::memory::{ManualClock, MemoryCache};
    let clock = Arc::new(ManualClock::at(0));
    let tick = clock.clone();
    let cache = MemoryCache::new(ClockRef(clock));
    conformance::cache::run(
        Arc::new(cache),
        Box::new(move |ms| {
            tick.advance(ms as i64);
            Box::pin(async {})
        }),
    )
    .await;
}

/// A shared handle to the manual clock (the cache owns its clock).
struct ClockRef(Arc<stratos_testkit::memory::ManualClock>);

impl stratos_ports::env::Clock for ClockRef {
    fn now_ms(&self) -> i64 {
        self.0.now_ms()
    }
}
