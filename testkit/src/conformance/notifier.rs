//! The [`Notifier`] conformance suite.

use std::future::Future;
use std::sync::Arc;
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

use stratos_ports::env::{Notifier, Subscription};

/// How long one case may take: a lost message would otherwise hang the test forever.
const CASE_LIMIT: Duration = Duration::from_secs(30);

/// What the cases run against (channel names under a fresh prefix per case are the fixture's
/// job).
pub type Subject = Arc<dyn Notifier>;

/// One test per [`Notifier`] case, in a module `notifier`. The argument gives a future of the
/// notifier, afresh for every case (see [`crate::conformance`]). A case fails rather than hangs
/// when a message never arrives.
#[macro_export]
macro_rules! notifier_conformance {
    ($fixture:expr $(,)?) => {
        $crate::__conformance_suite! {
            module: notifier,
            port: notifier,
            fixture: $fixture,
            cases: [
                publishing_without_subscribers_succeeds,
                every_subscriber_gets_every_message_in_order,
                late_subscribers_get_only_later_messages,
                a_subscriber_leaving_disturbs_no_other,
                empty_and_large_payloads_arrive_intact,
            ],
        }
    };
}

/// A message nobody listens to is simply lost.
pub async fn publishing_without_subscribers_succeeds(notifier: Subject) {
    within(CASE_LIMIT, async {
        notifier
            .publish("nobody", b"lost")
            .await
            .expect("publishing without subscribers succeeds");
        let mut sub = notifier.subscribe("nobody").await.expect("subscribe");
        notifier.publish("nobody", b"heard").await.expect("publish");
        assert_eq!(
            next(sub.as_mut()).await,
            b"heard",
            "the lost one never arrives"
        );
    })
    .await;
}

/// Every subscriber of a channel gets every message in order; a channel sees only its own.
pub async fn every_subscriber_gets_every_message_in_order(notifier: Subject) {
    within(CASE_LIMIT, async {
        let n = notifier.as_ref();
        let mut a = n.subscribe("seq").await.expect("subscribe a");
        let mut b = n.subscribe("seq").await.expect("subscribe b");
        let mut other = n.subscribe("other").await.expect("subscribe other");

        let messages: [&[u8]; 4] = [b"first", b"second", &[0, 255, 10, 13], b"fourth"];
        for m in messages {
            n.publish("seq", m).await.expect("publish");
        }
        n.publish("other", b"elsewhere").await.expect("publish");

        for (name, sub) in [("a", &mut a), ("b", &mut b)] {
            for m in messages {
                assert_eq!(
                    next(sub.as_mut()).await,
                    m,
                    "subscriber {name} gets every message in order"
                );
            }
        }
        // Published after the `seq` messages: had any leaked into `other`, it would come first.
        assert_eq!(
            next(other.as_mut()).await,
            b"elsewhere",
            "a channel sees only its own messages"
        );
    })
    .await;
}

/// A late subscriber gets only what is published after it subscribed.
pub async fn late_subscribers_get_only_later_messages(notifier: Subject) {
    within(CASE_LIMIT, async {
        let n = notifier.as_ref();
        let mut early = n.subscribe("seq").await.expect("subscribe early");
        n.publish("seq", b"before late").await.expect("publish");
        let mut late = n.subscribe("seq").await.expect("subscribe late");
        n.publish("seq", b"after late").await.expect("publish");
        assert_eq!(next(late.as_mut()).await, b"after late", "no old messages");
        assert_eq!(next(early.as_mut()).await, b"before late");
        assert_eq!(next(early.as_mut()).await, b"after late");
    })
    .await;
}

/// One subscriber leaving does not disturb the others.
pub async fn a_subscriber_leaving_disturbs_no_other(notifier: Subject) {
    within(CASE_LIMIT, async {
        let n = notifier.as_ref();
        let a = n.subscribe("seq").await.expect("subscribe a");
        let mut b = n.subscribe("seq").await.expect("subscribe b");
        n.publish("seq", b"before drop").await.expect("publish");
        drop(a);
        n.publish("seq", b"after drop").await.expect("publish");
        assert_eq!(next(b.as_mut()).await, b"before drop");
        assert_eq!(next(b.as_mut()).await, b"after drop");
        let mut c = n.subscribe("seq").await.expect("subscribe c");
        n.publish("seq", b"to b and c").await.expect("publish");
        assert_eq!(next(b.as_mut()).await, b"to b and c");
        assert_eq!(next(c.as_mut()).await, b"to b and c");
    })
    .await;
}

/// Payloads are bytes: empty and large ones arrive intact.
pub async fn empty_and_large_payloads_arrive_intact(notifier: Subject) {
    within(CASE_LIMIT, async {
        let n = notifier.as_ref();
        let mut sub = n.subscribe("other").await.expect("subscribe");
        let large: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        n.publish("other", b"").await.expect("publish empty");
        n.publish("other", &large).await.expect("publish large");
        assert_eq!(next(sub.as_mut()).await, b"");
        assert_eq!(next(sub.as_mut()).await, large);
    })
    .await;
}

async fn next(sub: &mut dyn Subscription) -> Vec<u8> {
    sub.next().await.expect("the subscription stays open")
}

/// Fails the test when `fut` takes longer than `limit`. The testkit's tokio has no timers, so
/// a plain thread keeps the time and is told to stop when the future finishes.
async fn within<F: Future>(limit: Duration, fut: F) -> F::Output {
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let (expired_tx, expired_rx) = tokio::sync::oneshot::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if done_rx.recv_timeout(limit) == Err(RecvTimeoutError::Timeout) {
            let _ = expired_tx.send(());
        }
    });
    let out = tokio::select! {
        out = fut => out,
        _ = expired_rx => panic!("the case did not finish within {limit:?}: a message was lost"),
    };
    let _ = done_tx.send(());
    let _ = watchdog.join();
    out
}
