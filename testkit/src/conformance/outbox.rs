//! The [`Outbox`] conformance suite.

use std::sync::Arc;

use stratos_domain::syntax::Did;
use stratos_ports::outbox::{Outbox, OutboxAction, OutboxItem};

fn item(did: &str, rkey: &str) -> OutboxItem {
    OutboxItem {
        did: did.to_owned(),
        action: OutboxAction::DeleteRecord {
            collection: "zone.stratos.feed.post".into(),
            rkey: rkey.to_owned(),
        },
    }
}

/// Runs every case against `outbox` (which must start empty).
pub async fn run(outbox: Arc<dyn Outbox>) {
    let o = outbox.as_ref();
    assert_eq!(o.pending().await.expect("pending"), 0);
    let a = o.enqueue(item("did:plc:a", "1")).await.expect("enqueue");
    let b = o.enqueue(item("did:plc:a", "2")).await.expect("enqueue");
    let c = o.enqueue(item("did:plc:b", "3")).await.expect("enqueue");
    assert_eq!(o.pending().await.expect("pending"), 3);

    // Claims come in enqueue order and are leased.
    let claimed = o.claim(1_000, 500, 2).await.expect("claim");
    assert_eq!(claimed.iter().map(|c| c.id).collect::<Vec<_>>(), [a, b]);
    assert_eq!(claimed[0].item, item("did:plc:a", "1"));
    assert_eq!(claimed[0].attempts, 0);
    let next = o.claim(1_100, 500, 10).await.expect("claim");
    assert_eq!(
        next.iter().map(|c| c.id).collect::<Vec<_>>(),
        [c],
        "leased items are skipped"
    );

    o.complete(a).await.expect("complete");
    o.fail(b, 5_000).await.expect("fail");
    assert_eq!(o.pending().await.expect("pending"), 2);
    // The failed item is not due before its retry time; the expired lease of `c` frees it.
    let later = o.claim(2_000, 500, 10).await.expect("claim");
    assert_eq!(later.iter().map(|c| c.id).collect::<Vec<_>>(), [c]);
    o.complete(c).await.expect("complete");
    let retry = o.claim(5_000, 500, 10).await.expect("claim");
    assert_eq!(retry.iter().map(|c| c.id).collect::<Vec<_>>(), [b]);
    assert_eq!(retry[0].attempts, 1);

    o.enqueue(item("did:plc:b", "4")).await.expect("enqueue");
    o.enqueue(item("did:plc:b", "5")).await.expect("enqueue");
    o.purge(&Did::parse("did:plc:b").expect("did"))
        .await
        .expect("purge");
    assert_eq!(
        o.pending().await.expect("pending"),
        1,
        "only did:plc:a's item is left"
    );
    o.complete(b).await.expect("complete");
    assert_eq!(o.pending().await.expect("pending"), 0);
    assert!(o.complete(b).await.is_err(), "completing twice is an error");
}
