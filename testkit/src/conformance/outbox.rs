//! The [`Outbox`] conformance suite.

use std::sync::Arc;

use stratos_domain::syntax::Did;
use stratos_ports::outbox::{ClaimedItem, Outbox, OutboxAction, OutboxItem};

/// What the cases run against (each starts empty).
pub type Subject = Arc<dyn Outbox>;

/// One test per [`Outbox`] case, in a module `outbox`. The argument gives a future of an empty
/// outbox, afresh for every case (see [`crate::conformance`]).
#[macro_export]
macro_rules! outbox_conformance {
    ($fixture:expr $(,)?) => {
        $crate::__conformance_suite! {
            module: outbox,
            port: outbox,
            fixture: $fixture,
            cases: [
                claims_come_in_enqueue_order_and_are_leased,
                an_expired_lease_frees_the_item,
                failed_items_wait_for_their_retry_time,
                purge_drops_one_accounts_items,
                completing_twice_is_an_error,
            ],
        }
    };
}

fn item(did: &str, rkey: &str) -> OutboxItem {
    OutboxItem {
        did: crate::builders::did(did),
        action: OutboxAction::DeleteRecord {
            collection: crate::builders::nsid("zone.stratos.feed.post"),
            rkey: crate::builders::rkey(rkey),
        },
    }
}

fn ids(claimed: &[ClaimedItem]) -> Vec<u64> {
    claimed.iter().map(|c| c.id).collect()
}

/// Claims come in enqueue order, at most `limit`, and leased items are skipped until completed.
pub async fn claims_come_in_enqueue_order_and_are_leased(outbox: Subject) {
    let o = outbox.as_ref();
    assert_eq!(o.pending().await.expect("pending"), 0);
    assert!(o.claim(0, 500, 10).await.expect("claim").is_empty());
    let a = o.enqueue(item("did:plc:a", "1")).await.expect("enqueue");
    let b = o.enqueue(item("did:plc:a", "2")).await.expect("enqueue");
    let c = o.enqueue(item("did:plc:b", "3")).await.expect("enqueue");
    assert_eq!(o.pending().await.expect("pending"), 3);

    let claimed = o.claim(1_000, 500, 2).await.expect("claim");
    assert_eq!(ids(&claimed), [a, b]);
    assert_eq!(claimed[0].item, item("did:plc:a", "1"));
    assert_eq!(claimed[1].item, item("did:plc:a", "2"));
    assert_eq!(claimed[0].attempts, 0);
    let next = o.claim(1_100, 500, 10).await.expect("claim");
    assert_eq!(ids(&next), [c], "leased items are skipped");
    assert!(
        o.claim(1_200, 500, 10).await.expect("claim").is_empty(),
        "everything is leased"
    );
    o.complete(a).await.expect("complete");
    assert_eq!(o.pending().await.expect("pending"), 2, "leased items count");
}

/// An item whose lease ran out without a completion is claimed again.
pub async fn an_expired_lease_frees_the_item(outbox: Subject) {
    let o = outbox.as_ref();
    let a = o.enqueue(item("did:plc:a", "1")).await.expect("enqueue");
    assert_eq!(ids(&o.claim(1_000, 500, 10).await.expect("claim")), [a]);
    assert!(o.claim(1_400, 500, 10).await.expect("claim").is_empty());
    assert_eq!(
        ids(&o.claim(2_000, 500, 10).await.expect("claim")),
        [a],
        "the lease expired at 1,500"
    );
    o.complete(a).await.expect("complete");
    assert_eq!(o.pending().await.expect("pending"), 0);
}

/// A failed item is not due before its retry time, then comes back with one more attempt.
pub async fn failed_items_wait_for_their_retry_time(outbox: Subject) {
    let o = outbox.as_ref();
    let a = o.enqueue(item("did:plc:a", "1")).await.expect("enqueue");
    let b = o.enqueue(item("did:plc:a", "2")).await.expect("enqueue");
    assert_eq!(ids(&o.claim(1_000, 500, 10).await.expect("claim")), [a, b]);
    o.fail(a, 5_000).await.expect("fail");
    o.complete(b).await.expect("complete");
    assert_eq!(
        o.pending().await.expect("pending"),
        1,
        "a failed item waits"
    );
    assert!(
        o.claim(2_000, 500, 10).await.expect("claim").is_empty(),
        "not due before its retry time"
    );
    let retry = o.claim(5_000, 500, 10).await.expect("claim");
    assert_eq!(ids(&retry), [a]);
    assert_eq!(retry[0].attempts, 1);
    assert_eq!(retry[0].item, item("did:plc:a", "1"));
    o.fail(a, 6_000).await.expect("fail again");
    let again = o.claim(6_000, 500, 10).await.expect("claim");
    assert_eq!(again[0].attempts, 2);
    o.complete(a).await.expect("complete");
    assert_eq!(o.pending().await.expect("pending"), 0);
}

/// Purging an account drops its items, claimed or not, and nobody else's.
pub async fn purge_drops_one_accounts_items(outbox: Subject) {
    let o = outbox.as_ref();
    let claimed = o.enqueue(item("did:plc:b", "2")).await.expect("enqueue");
    let a = o.enqueue(item("did:plc:a", "1")).await.expect("enqueue");
    assert_eq!(
        ids(&o.claim(1_000, 500, 1).await.expect("claim")),
        [claimed]
    );
    o.enqueue(item("did:plc:b", "3")).await.expect("enqueue");
    o.enqueue(item("did:plc:b", "4")).await.expect("enqueue");
    o.purge(&Did::parse("did:plc:b").expect("did"))
        .await
        .expect("purge");
    assert_eq!(
        o.pending().await.expect("pending"),
        1,
        "only did:plc:a's item is left"
    );
    o.purge(&Did::parse("did:plc:nobody").expect("did"))
        .await
        .expect("purging an account without items");
    let left = o.claim(2_000, 500, 10).await.expect("claim");
    assert_eq!(ids(&left), [a]);
    assert_eq!(left[0].item.did, "did:plc:a");
}

/// Completing removes the item; completing it again, or an id never handed out, is an error.
pub async fn completing_twice_is_an_error(outbox: Subject) {
    let o = outbox.as_ref();
    let a = o.enqueue(item("did:plc:a", "1")).await.expect("enqueue");
    assert_eq!(ids(&o.claim(1_000, 500, 10).await.expect("claim")), [a]);
    o.complete(a).await.expect("complete");
    assert_eq!(o.pending().await.expect("pending"), 0);
    assert!(o.complete(a).await.is_err(), "completing twice is an error");
    assert!(
        o.complete(a + 1_000).await.is_err(),
        "an unknown id is an error"
    );
    assert!(o.claim(2_000, 500, 10).await.expect("claim").is_empty());
}
