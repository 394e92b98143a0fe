#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! Outbox delivery (`stratos_ports::usecases::delivery`) over the in-memory outbox, a manual
//! clock and the in-memory PDS: backoff then success, dead letters, re-authorisation holds,
//! order per account under concurrency, a PDS outage, attempt timeouts, shutdown, and a
//! property test of the order per account under random failures.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use stratos_ports::outbox::{Outbox, OutboxAction, OutboxItem};
use stratos_ports::usecases::delivery::{
    Delivery, DeliveryFailure, DeliveryReport, DeliverySettings, backoff_bound_ms, backoff_ms,
};
use stratos_testkit::builders::{did, nsid, rkey};
use stratos_testkit::memory::{ManualClock, MemoryOutbox, MemoryPds};

const POSTS: &str = "zone.stratos.feed.post";
const START: i64 = 1_800_000_000_000;

fn put(d: &str, key: &str, text: &str) -> OutboxItem {
    OutboxItem {
        did: did(d),
        action: OutboxAction::PutRecord {
            collection: nsid(POSTS),
            rkey: rkey(key),
            record_json: format!("{{\"text\":\"{text}\"}}"),
        },
    }
}

fn delete(d: &str, key: &str) -> OutboxItem {
    OutboxItem {
        did: did(d),
        action: OutboxAction::DeleteRecord {
            collection: nsid(POSTS),
            rkey: rkey(key),
        },
    }
}

struct World {
    outbox: Arc<MemoryOutbox>,
    pds: Arc<MemoryPds>,
    clock: Arc<ManualClock>,
    delivery: Delivery,
}

fn world(settings: DeliverySettings) -> World {
    let outbox = Arc::new(MemoryOutbox::new());
    let pds = Arc::new(MemoryPds::new());
    let clock = Arc::new(ManualClock::at(START));
    let delivery = Delivery::new(outbox.clone(), pds.clone(), clock.clone(), settings);
    World {
        outbox,
        pds,
        clock,
        delivery,
    }
}

impl World {
    async fn run(&self) -> DeliveryReport {
        self.delivery.run_once().await.unwrap()
    }

    async fn enqueue(&self, items: &[OutboxItem]) {
        for item in items {
            self.outbox.enqueue(item.clone()).await.unwrap();
        }
    }

    /// Runs batches, moving the clock past every backoff between them, until nothing is live.
    async fn drain(&self, rounds: usize) {
        for _ in 0..rounds {
            if self.outbox.pending().await.unwrap() == 0 {
                return;
            }
            self.run().await;
            self.clock
                .advance(self.delivery.settings().backoff_cap_ms + 1);
        }
        panic!("not drained after {rounds} rounds");
    }

    /// The performed writes of one account, in order.
    fn log_of(&self, d: &str) -> Vec<OutboxItem> {
        self.pds.log().into_iter().filter(|i| i.did == d).collect()
    }
}

fn small_backoff() -> DeliverySettings {
    DeliverySettings {
        backoff_base_ms: 1_000,
        backoff_cap_ms: 8_000,
        ..DeliverySettings::default()
    }
}

#[test]
fn backoff_doubles_up_to_the_cap_with_full_jitter() {
    let s = small_backoff();
    let bounds: Vec<i64> = (1..=6).map(|n| backoff_bound_ms(&s, n)).collect();
    assert_eq!(bounds, [1_000, 2_000, 4_000, 8_000, 8_000, 8_000]);
    assert_eq!(backoff_bound_ms(&s, u32::MAX), 8_000, "no overflow");
    for attempts in 1..=6 {
        let bound = backoff_bound_ms(&s, attempts);
        for draw in [0, 1, 999, 12_345, u64::MAX] {
            let wait = backoff_ms(&s, attempts, draw);
            assert!((1..=bound).contains(&wait), "{attempts}: {wait}");
        }
    }
    assert_eq!(backoff_ms(&s, 1, 0), 1);
    assert_eq!(backoff_ms(&s, 1, 999), 1_000);
}

/// A transient failure is retried after its backoff (never before its bound runs out twice),
/// and succeeds: delivered once, nothing dead.
#[tokio::test]
async fn transient_failures_back_off_then_succeed() {
    let w = world(small_backoff());
    w.enqueue(&[put("did:plc:rei", "a", "hello")]).await;
    let failures = Arc::new(AtomicU64::new(2));
    let left = failures.clone();
    w.pds.set_script(Box::new(move |_| {
        (left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok())
        .then(|| DeliveryFailure::Retry("PDS answered 502".into()))
    }));

    let first = w.run().await;
    assert_eq!((first.claimed, first.retried, first.delivered), (1, 1, 0));
    assert_eq!(w.run().await.claimed, 0, "waits for its retry time");
    w.clock.advance(1_000); // the first retry's bound
    let second = w.run().await;
    assert_eq!((second.claimed, second.retried), (1, 1));
    w.clock.advance(2_000); // the second retry's bound
    let third = w.run().await;
    assert_eq!((third.claimed, third.delivered), (1, 1));
    assert_eq!(w.pds.log(), [put("did:plc:rei", "a", "hello")]);
    assert_eq!(w.pds.calls(), 3);
    assert_eq!(w.outbox.pending().await.unwrap(), 0);
    assert_eq!(w.outbox.dead_total().await.unwrap(), 0);
    assert!(
        w.pds.record("did:plc:rei", POSTS, "a").is_some(),
        "the stub is on the PDS"
    );
}

/// A permanent refusal is a dead letter at once, with its reason; the account's later items
/// are delivered in the same run.
#[tokio::test]
async fn a_permanent_refusal_is_a_dead_letter_and_blocks_nothing() {
    let w = world(small_backoff());
    w.pds.refuse_rkey("bad");
    w.enqueue(&[
        put("did:plc:rei", "bad", "x"),
        put("did:plc:rei", "good", "y"),
    ])
    .await;
    let report = w.run().await;
    assert_eq!((report.dead, report.delivered), (1, 1));
    assert_eq!(w.outbox.dead_count(&did("did:plc:rei")).await.unwrap(), 1);
    let dead = w.outbox.dead_letters(10, None).await.unwrap();
    assert_eq!(dead[0].item, Some(put("did:plc:rei", "bad", "x")));
    assert_eq!(dead[0].attempts, 1);
    assert!(dead[0].last_error.contains("400"), "{}", dead[0].last_error);
    assert_eq!(w.log_of("did:plc:rei"), [put("did:plc:rei", "good", "y")]);
}

/// After `max_attempts` transient failures the item is a dead letter; retrying it (the
/// operator's call) delivers it once the PDS is back.
#[tokio::test]
async fn max_attempts_then_dead_letter_then_an_operator_retry() {
    let w = world(DeliverySettings {
        max_attempts: 3,
        ..small_backoff()
    });
    w.pds.set_down(true);
    w.enqueue(&[put("did:plc:rei", "a", "x")]).await;
    let mut dead = 0;
    for _ in 0..3 {
        dead += w.run().await.dead;
        w.clock.advance(8_001);
    }
    assert_eq!(dead, 1);
    assert_eq!(w.run().await.claimed, 0, "a dead letter is not claimed");
    let letters = w.outbox.dead_letters(10, None).await.unwrap();
    assert_eq!(letters[0].attempts, 3);
    assert_eq!(letters[0].last_error, "PDS answered 503");
    w.pds.set_down(false);
    w.outbox.retry_dead(letters[0].id).await.unwrap();
    assert_eq!(w.run().await.delivered, 1);
    assert_eq!(w.outbox.dead_total().await.unwrap(), 0);
}

/// A revoked session holds the account's items without counting attempts (with one attempt
/// allowed, any counted attempt would kill them) and reports the account; other accounts go
/// on; once the user authorises again, everything is delivered in order.
#[tokio::test]
async fn needs_reauthorization_holds_items_without_counting_attempts() {
    let w = world(DeliverySettings {
        max_attempts: 1,
        reauthorization_wait_ms: 60_000,
        ..small_backoff()
    });
    let rei = did("did:plc:rei");
    w.pds.set_revoked(&rei, true);
    let items = [
        put("did:plc:rei", "a", "1"),
        put("did:plc:rei", "b", "2"),
        delete("did:plc:rei", "a"),
    ];
    w.enqueue(&items).await;
    w.enqueue(&[put("did:plc:asuka", "z", "3")]).await;
    for round in 0..3 {
        let report = w.run().await;
        assert_eq!(
            report.needs_reauthorization,
            std::slice::from_ref(&rei),
            "round {round}"
        );
        assert_eq!(report.held, 3);
        assert_eq!(report.dead + report.retried, 0);
        assert_eq!(w.run().await.claimed, 0, "held for the wait");
        w.clock.advance(60_000);
    }
    assert_eq!(w.log_of("did:plc:asuka").len(), 1);
    assert_eq!(
        w.pds.calls(),
        1 + 3,
        "one call per round for the revoked account"
    );
    w.pds.set_revoked(&rei, false);
    let report = w.run().await;
    assert_eq!(report.delivered, 3);
    assert!(report.needs_reauthorization.is_empty());
    assert_eq!(w.log_of("did:plc:rei"), items);
    assert_eq!(w.outbox.dead_total().await.unwrap(), 0);
}

/// Accounts are worked on concurrently, each account's writes one after the other and in
/// order, across batches that cut accounts in pieces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_per_account_holds_under_concurrency() {
    let w = world(DeliverySettings {
        batch_size: 16,
        accounts_at_once: 4,
        ..small_backoff()
    });
    let accounts: Vec<String> = (0..8).map(|i| format!("did:plc:acc{i}")).collect();
    let mut expected: BTreeMap<String, Vec<OutboxItem>> = BTreeMap::new();
    for round in 0..5 {
        for a in &accounts {
            let key = format!("r{}", round % 2);
            let items = [put(a, &key, &format!("v{round}")), delete(a, &key)];
            w.enqueue(&items).await;
            expected.entry(a.clone()).or_default().extend(items);
        }
    }
    w.drain(20).await;
    for a in &accounts {
        assert_eq!(&w.log_of(a), &expected[a], "{a}");
    }
    assert_eq!(w.pds.overlaps(), 0, "an account's writes never overlap");
    assert!(
        w.pds.most_accounts_at_once() > 1,
        "accounts were delivered concurrently"
    );
    assert!(
        w.pds.records().is_empty(),
        "every stub put was then deleted"
    );
}

/// A PDS that is down for a while loses nothing: items wait (attempts counted, none dead with
/// the default cap), and drain in order once it is back.
#[tokio::test]
async fn a_pds_down_for_a_while_loses_nothing() {
    let w = world(small_backoff());
    let mut expected: BTreeMap<String, Vec<OutboxItem>> = BTreeMap::new();
    for a in 0..5 {
        let d = format!("did:plc:down{a}");
        let items: Vec<OutboxItem> = (0..4)
            .map(|i| put(&d, &format!("k{i}"), &format!("{i}")))
            .collect();
        w.enqueue(&items).await;
        expected.insert(d, items);
    }
    w.pds.set_down(true);
    for _ in 0..6 {
        let report = w.run().await;
        assert_eq!(report.delivered, 0);
        assert_eq!(report.dead, 0);
        w.clock.advance(3_000);
    }
    assert_eq!(w.outbox.pending().await.unwrap(), 20, "nothing lost");
    assert!(w.pds.log().is_empty());
    w.pds.set_down(false);
    w.drain(10).await;
    for (d, items) in &expected {
        assert_eq!(&w.log_of(d), items, "{d}");
    }
    assert_eq!(w.pds.log().len(), 20, "each item once");
    assert_eq!(w.outbox.dead_total().await.unwrap(), 0);
}

/// An attempt that does not answer is cut off after the attempt timeout and retried later.
#[tokio::test]
async fn a_stalled_attempt_times_out_and_is_retried() {
    let w = world(DeliverySettings {
        attempt_timeout_ms: 50,
        ..small_backoff()
    });
    w.enqueue(&[put("did:plc:rei", "a", "x"), put("did:plc:rei", "b", "y")])
        .await;
    w.pds.set_stalled(true);
    let report = tokio::time::timeout(Duration::from_secs(10), w.run())
        .await
        .expect("the attempt is cut off");
    assert_eq!((report.retried, report.held), (1, 1));
    let waiting = w.outbox.claim(START, 1, 10).await.unwrap();
    assert!(waiting.is_empty(), "both wait for the retry");
    w.pds.set_stalled(false);
    w.drain(5).await;
    assert_eq!(
        w.log_of("did:plc:rei"),
        [put("did:plc:rei", "a", "x"), put("did:plc:rei", "b", "y")]
    );
}

/// An item whose lease is too short for one more attempt is given back unattempted.
#[tokio::test]
async fn no_attempt_starts_without_enough_lease_left() {
    let w = world(DeliverySettings {
        lease_ms: 10_000,
        attempt_timeout_ms: 20_000,
        ..small_backoff()
    });
    w.enqueue(&[put("did:plc:rei", "a", "x")]).await;
    let report = w.run().await;
    assert_eq!((report.claimed, report.held, report.delivered), (1, 1, 0));
    assert_eq!(w.pds.calls(), 0);
}

/// `run_with` works batches until shut down, and stops promptly when asked while idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_drains_then_stops_on_shutdown() {
    let w = world(DeliverySettings {
        idle_wait_ms: 10,
        batch_size: 3,
        ..small_backoff()
    });
    let items: Vec<OutboxItem> = (0..10)
        .map(|i| put("did:plc:rei", &format!("k{i}"), "x"))
        .collect();
    w.enqueue(&items).await;
    let stop = Arc::new(tokio::sync::Notify::new());
    let signal = stop.clone();
    let delivery = w.delivery.clone();
    let reports = Arc::new(AtomicU64::new(0));
    let counted = reports.clone();
    let worker = tokio::spawn(async move {
        delivery
            .run_with(async move { signal.notified().await }, move |r| {
                assert!(r.is_ok());
                counted.fetch_add(1, Ordering::SeqCst);
            })
            .await;
    });
    tokio::time::timeout(Duration::from_secs(10), async {
        while w.outbox.pending().await.unwrap() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("drained");
    stop.notify_one();
    tokio::time::timeout(Duration::from_secs(5), worker)
        .await
        .expect("stopped")
        .unwrap();
    assert_eq!(w.log_of("did:plc:rei"), items);
    assert!(
        reports.load(Ordering::SeqCst) >= 4,
        "batches of 3, then idle runs"
    );
}

/// One operation of the property test: account, record, put (`true`) or delete.
fn ops() -> impl Strategy<Value = Vec<(u8, u8, bool)>> {
    proptest::collection::vec((0u8..3, 0u8..3, any::<bool>()), 1..40)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if std::env::var("CI").as_deref() == Ok("true") { 64 } else { 24 },
        ..ProptestConfig::default()
    })]

    /// Whatever transient failures the PDS answers (random per call, no more than the attempt
    /// cap allows), every item is delivered exactly once, each account's writes arrive in the
    /// order they were queued, and the PDS ends with the last write of every record.
    #[test]
    fn order_per_account_survives_random_failures(ops in ops(), seed in any::<u64>(), fail_pct in 0u64..70) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let w = world(DeliverySettings {
                batch_size: 5,
                accounts_at_once: 2,
                max_attempts: 1_000,
                ..small_backoff()
            });
            let rng = Arc::new(AtomicU64::new(seed | 1));
            w.pds.set_script(Box::new(move |_| {
                // xorshift: a deterministic stream of draws per case.
                let mut x = rng.load(Ordering::SeqCst);
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                rng.store(x, Ordering::SeqCst);
                (x % 100 < fail_pct).then(|| DeliveryFailure::Retry("flaky".into()))
            }));
            let mut expected: BTreeMap<String, Vec<OutboxItem>> = BTreeMap::new();
            let mut last: BTreeMap<(String, String), Option<String>> = BTreeMap::new();
            for (n, (account, record, is_put)) in ops.iter().enumerate() {
                let d = format!("did:plc:p{account}");
                let key = format!("k{record}");
                let item = if *is_put {
                    put(&d, &key, &format!("v{n}"))
                } else {
                    delete(&d, &key)
                };
                w.enqueue(std::slice::from_ref(&item)).await;
                expected.entry(d.clone()).or_default().push(item);
                last.insert((d, key), is_put.then(|| format!("{{\"text\":\"v{n}\"}}")));
            }
            w.drain(2_000).await;
            for (d, items) in &expected {
                prop_assert_eq!(&w.log_of(d), items);
            }
            prop_assert_eq!(w.pds.overlaps(), 0);
            let on_pds = w.pds.records();
            for ((d, key), value) in &last {
                let got = on_pds.get(&(d.clone(), POSTS.to_owned(), key.clone()));
                prop_assert_eq!(got, value.as_ref());
            }
            prop_assert_eq!(w.outbox.dead_total().await.unwrap(), 0);
            Ok(())
        })?;
    }
}
