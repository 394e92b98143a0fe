//! The [`Notifier`] conformance suite.

use std::future::Future;
use std::sync::Arc;
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

use stratos_ports::env::{Notifier, Subscription};

/// How long the whole suite may take: a lost message would otherwise hang the test forever.
const SUITE_LIMIT: Duration = Duration::from_secs(30);

/// Runs every case against `notifier` (channel names under a fresh prefix per run are the
/// caller's job). The suite fails rather than hangs when a message never arrives.
pub async fn run(notifier: Arc<dyn Notifier>) {
    within(SUITE_LIMIT, cases(notifier.as_ref())).await;
}

async fn cases(n: &dyn Notifier) {
    n.publish("nobody", b"lost")
        .await
        .expect("publishing without subscribers succeeds");

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

    // A late subscriber sees only what is published after it subscribed.
    n.publish("seq", b"before late").await.expect("publish");
    let mut late = n.subscribe("seq").await.expect("subscribe late");
    n.publish("seq", b"after late").await.expect("publish");
    assert_eq!(next(late.as_mut()).await, b"after late", "no old messages");
    assert_eq!(next(a.as_mut()).await, b"before late");
    assert_eq!(next(a.as_mut()).await, b"after late");

    // One subscriber leaving does not disturb the others.
    drop(a);
    n.publish("seq", b"after drop").await.expect("publish");
    assert_eq!(next(b.as_mut()).await, b"before late");
    assert_eq!(next(b.as_mut()).await, b"after late");
    assert_eq!(next(b.as_mut()).await, b"after drop");
    assert_eq!(next(late.as_mut()).await, b"after drop");

    // Payloads are bytes: empty and large ones arrive intact.
    let large: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    n.publish("other", b"").await.expect("publish empty");
    n.publish("other", &large).await.expect("publish large");
    assert_eq!(next(other.as_mut()).await, b"");
    assert_eq!(next(other.as_mut()).await, large);
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
        _ = expired_rx => panic!("the notifier suite did not finish within {limit:?}: a message was lost"),
    };
    let _ = done_tx.send(());
    let _ = watchdog.join();
    out
}
