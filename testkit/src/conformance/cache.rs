//! The [`Cache`] conformance suite.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use stratos_ports::env::Cache;

/// Lets the suite move time past a TTL: the in-memory cache advances its clock, a real server
/// sleeps.
pub type Wait = Box<dyn Fn(u64) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Runs every case against `cache` (keys under a fresh prefix per run are the caller's job).
pub async fn run(cache: Arc<dyn Cache>, wait: Wait) {
    let c = cache.as_ref();
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
    c.delete("k").await.expect("delete");
    assert_eq!(c.get("k").await.expect("get"), None);
    c.delete("k").await.expect("delete is idempotent");

    // Expiry.
    c.set("short", b"x", 100).await.expect("set");
    wait(300).await;
    assert_eq!(c.get("short").await.expect("get"), None, "expired");

    // Sets: replace, membership, large replacements.
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
