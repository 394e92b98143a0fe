//! The [`Cache`] conformance suite.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use stratos_ports::env::Cache;

use super::{Fixture, IntoFixture};

/// Lets the suite move time past a TTL: the in-memory cache advances its clock, a real server
/// sleeps.
pub type Wait = Box<dyn Fn(u64) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// A cache and the way to let time pass for it.
pub struct TimedCache {
    /// The cache (keys under a fresh prefix per case are the fixture's job).
    pub cache: Arc<dyn Cache>,
    /// Waits the given milliseconds of the cache's time.
    pub wait: Wait,
}

impl TimedCache {
    /// `cache`, whose time passes with `wait`.
    pub fn new<F>(cache: Arc<dyn Cache>, wait: impl Fn(u64) -> F + Send + Sync + 'static) -> Self
    where
        F: Future<Output = ()> + Send + 'static,
    {
        Self {
            cache,
            wait: Box::new(move |ms| Box::pin(wait(ms))),
        }
    }
}

impl fmt::Debug for TimedCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimedCache").finish_non_exhaustive()
    }
}

impl IntoFixture for TimedCache {
    type Subject = TimedCache;
    fn into_fixture(self) -> Option<Fixture<TimedCache>> {
        Some(Fixture::new(self))
    }
}

impl IntoFixture for Option<TimedCache> {
    type Subject = TimedCache;
    fn into_fixture(self) -> Option<Fixture<TimedCache>> {
        self.map(Fixture::new)
    }
}

/// What the cases run against.
pub type Subject = TimedCache;

/// One test per [`Cache`] case, in a module `cache`. The argument gives a future of a
/// [`TimedCache`] (or a [`Fixture`] or `Option` of one), afresh for every case (see
/// [`crate::conformance`]).
#[macro_export]
macro_rules! cache_conformance {
    ($fixture:expr $(,)?) => {
        $crate::__conformance_suite! {
            module: cache,
            port: cache,
            fixture: $fixture,
            cases: [
                values_are_set_overwritten_and_deleted,
                values_expire_after_their_ttl,
                sets_are_replaced_whole,
            ],
        }
    };
}

/// Values read back, are overwritten and deleted (twice, fine).
pub async fn values_are_set_overwritten_and_deleted(subject: Subject) {
    let c = subject.cache.as_ref();
    assert_eq!(c.get("k").await.expect("get"), None);
    c.set("k", b"value", 60_000).await.expect("set");
    assert_eq!(
        c.get("k").await.expect("get").as_deref(),
        Some(&b"value"[..])
    );
    c.set("k", b"other", 60_000).await.expect("overwrite");
    assert_eq!(
        c.get("k").await.expect("get").as_deref(),
        Some(&b"other"[..])
    );
    c.set("empty", b"", 60_000).await.expect("set empty");
    assert_eq!(
        c.get("empty").await.expect("get").as_deref(),
        Some(&b""[..])
    );
    c.delete("k").await.expect("delete");
    assert_eq!(c.get("k").await.expect("get"), None);
    c.delete("k").await.expect("delete is idempotent");
    assert_eq!(
        c.get("empty").await.expect("get").as_deref(),
        Some(&b""[..]),
        "deleting one key leaves the others"
    );
}

/// A value is gone once its TTL has passed; a longer one is still there.
pub async fn values_expire_after_their_ttl(subject: Subject) {
    let c = subject.cache.as_ref();
    c.set("short", b"x", 100).await.expect("set");
    c.set("long", b"y", 60_000).await.expect("set");
    (subject.wait)(300).await;
    assert_eq!(c.get("short").await.expect("get"), None, "expired");
    assert_eq!(
        c.get("long").await.expect("get").as_deref(),
        Some(&b"y"[..]),
        "not yet expired"
    );
}

/// Sets are replaced whole (old members gone, large replacements, the empty set), and
/// membership answers per member.
pub async fn sets_are_replaced_whole(subject: Subject) {
    let c = subject.cache.as_ref();
    assert!(!c.set_contains("dids", "did:plc:a").await.expect("contains"));
    c.replace_set("dids", &["did:plc:a".into(), "did:plc:b".into()])
        .await
        .expect("replace");
    assert!(c.set_contains("dids", "did:plc:a").await.expect("contains"));
    assert!(!c.set_contains("dids", "did:plc:c").await.expect("contains"));
    let many: Vec<String> = (0..2_500).map(|i| format!("did:plc:m{i}")).collect();
    c.replace_set("dids", &many)
        .await
        .expect("replace with many");
    assert!(
        !c.set_contains("dids", "did:plc:a").await.expect("contains"),
        "old members gone"
    );
    assert!(
        c.set_contains("dids", "did:plc:m2499")
            .await
            .expect("contains")
    );
    c.replace_set("dids", &[]).await.expect("replace with none");
    assert!(
        !c.set_contains("dids", "did:plc:m0")
            .await
            .expect("contains")
    );
    c.delete("dids").await.expect("delete set");
}
