//! The [`Outbox`] conformance suite: order per account (items enqueued on their own and items
//! written by commits), leases and concurrent claimers, retries, dead letters and their
//! operator functions, damaged rows, purge.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use stratos_domain::blocks::BlockMap;
use stratos_domain::repo::RepoHead;
use stratos_domain::syntax::Did;
use stratos_domain::{data, tid};
use stratos_ports::outbox::{
    ClaimedItem, DeadLetter, Disposition, FailedAttempt, Lease, Outbox, OutboxAction, OutboxError,
    OutboxItem,
};
use stratos_ports::repo_store::{CommitUnit, RepoStore};

/// Plants a row whose item does not decode, for an account, where [`Outbox::enqueue`] writes.
pub type PlantCorrupt = Box<dyn Fn(Did) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// What the cases run against (each starts empty): the outbox, the repository store whose
/// commits write items into it (in the commit's transaction), and a way to plant a damaged row.
pub struct OutboxUnderTest {
    /// The outbox under test.
    pub outbox: Arc<dyn Outbox>,
    /// The repository store of the same storage: its commits' items land in `outbox`.
    pub repos: Arc<dyn RepoStore>,
    /// Plants a row that does not decode (SQL: an `item` that is not an encoded item).
    pub plant_corrupt: PlantCorrupt,
}

impl OutboxUnderTest {
    /// The subject from its parts; `plant_corrupt` writes a damaged row for the given account.
    pub fn new<F, Fut>(outbox: Arc<dyn Outbox>, repos: Arc<dyn RepoStore>, plant_corrupt: F) -> Self
    where
        F: Fn(Did) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Self {
            outbox,
            repos,
            plant_corrupt: Box::new(move |did| Box::pin(plant_corrupt(did))),
        }
    }
}

impl std::fmt::Debug for OutboxUnderTest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxUnderTest").finish_non_exhaustive()
    }
}

/// What the cases run against.
pub type Subject = OutboxUnderTest;

/// One test per [`Outbox`] case, in a module `outbox`. The argument gives a future of an
/// [`OutboxUnderTest`] over empty storage (a [`crate::conformance::Fixture`] of it, or an
/// `Option` of that), afresh for every case (see [`crate::conformance`]).
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
                an_accounts_items_wait_behind_its_older_items,
                commit_items_keep_their_order_per_account,
                an_outdated_lease_changes_nothing,
                released_items_keep_their_attempts,
                concurrent_claimers_never_share_an_item_or_break_the_order,
                dead_letter_after_max_attempts_blocks_nothing,
                a_permanent_failure_is_a_dead_letter_at_once,
                retry_dead_requeues_behind_newer_items,
                dead_letters_page_by_cursor_and_count_per_account,
                a_corrupt_row_becomes_a_dead_letter,
                every_action_comes_back_as_written,
                rescheduled_commit_items_are_claimable_at_their_new_time,
            ],
        }
    };
}

const POSTS: &str = "zone.stratos.feed.post";

fn did(s: &str) -> Did {
    crate::builders::did(s)
}

fn item(d: &str, rkey: &str) -> OutboxItem {
    OutboxItem {
        did: did(d),
        action: OutboxAction::DeleteRecord {
            collection: crate::builders::nsid(POSTS),
            rkey: crate::builders::rkey(rkey),
        },
    }
}

fn put(d: &str, rkey: &str) -> OutboxItem {
    OutboxItem {
        did: did(d),
        action: OutboxAction::PutRecord {
            collection: crate::builders::nsid(POSTS),
            rkey: crate::builders::rkey(rkey),
            record_json: format!("{{\"rkey\":\"{rkey}\"}}"),
        },
    }
}

fn ids(claimed: &[ClaimedItem]) -> Vec<u64> {
    claimed.iter().map(|c| c.id).collect()
}

/// A failed attempt at `now` (due again at `retry`), dying after `max` attempts.
fn failure(now: i64, retry: i64, max: u32, error: &str) -> FailedAttempt {
    FailedAttempt {
        now_ms: now,
        retry_at_ms: retry,
        max_attempts: max,
        permanent: false,
        error: error.to_owned(),
    }
}

async fn claim(o: &dyn Outbox, now: i64, limit: usize) -> Vec<ClaimedItem> {
    o.claim(now, 500, limit).await.expect("claim")
}

/// The lease of the claimed item `id`.
fn lease_of(claimed: &[ClaimedItem], id: u64) -> Lease {
    claimed
        .iter()
        .find(|c| c.id == id)
        .map(ClaimedItem::lease)
        .expect("the item was claimed")
}

/// Commits a unit that writes only `items` to the account's outbox (the account's store is
/// created on first use; the head is a stand-in, as no block is written).
async fn commit_items(repos: &dyn RepoStore, account: &Did, items: Vec<OutboxItem>) {
    if !repos.actor_exists(account).await.expect("exists") {
        repos.create_actor(account).await.expect("create actor");
    }
    let prev = repos.head(account).await.expect("head").map(|h| h.commit);
    let value =
        data::json_to_ipld(&serde_json::json!({"n": tid::next().to_string()})).expect("value");
    let (cid, _) = data::record_cid(&value).expect("cid");
    let unit = CommitUnit {
        prev,
        head: RepoHead {
            commit: cid,
            rev: tid::next(),
            data: cid,
        },
        new_blocks: BlockMap::new(),
        removed_blocks: Vec::new(),
        index: Vec::new(),
        event: None,
        outbox: items,
    };
    repos
        .apply_commit(account, unit)
        .await
        .expect("commit applies");
}

/// Claims come in enqueue order, at most `limit`, and leased items are skipped until completed.
pub async fn claims_come_in_enqueue_order_and_are_leased(s: Subject) {
    let o = s.outbox.as_ref();
    assert_eq!(o.pending().await.expect("pending"), 0);
    assert!(claim(o, 0, 10).await.is_empty());
    let a = o.enqueue(item("did:plc:a", "1")).await.expect("enqueue");
    let b = o.enqueue(item("did:plc:a", "2")).await.expect("enqueue");
    let c = o.enqueue(item("did:plc:b", "3")).await.expect("enqueue");
    assert_eq!(o.pending().await.expect("pending"), 3);

    let claimed = claim(o, 1_000, 2).await;
    assert_eq!(ids(&claimed), [a, b]);
    assert_eq!(claimed[0].item, item("did:plc:a", "1"));
    assert_eq!(claimed[1].item, item("did:plc:a", "2"));
    assert_eq!(claimed[0].attempts, 0);
    assert_eq!(claimed[0].leased_until_ms, 1_500);
    let next = claim(o, 1_100, 10).await;
    assert_eq!(ids(&next), [c], "leased items are skipped");
    assert!(claim(o, 1_200, 10).await.is_empty(), "everything is leased");
    o.complete(claimed[0].lease()).await.expect("complete");
    assert_eq!(o.pending().await.expect("pending"), 2, "leased items count");
}

/// Each kind of item (put, delete, the end of a session) comes back from a claim exactly as it
/// was enqueued, in order.
pub async fn every_action_comes_back_as_written(s: Subject) {
    let o = s.outbox.as_ref();
    let end = OutboxItem {
        did: did("did:plc:a"),
        action: OutboxAction::EndSession {
            authorized_by: 1_765_000_000,
        },
    };
    let written = [put("did:plc:a", "1"), item("did:plc:a", "1"), end];
    for w in &written {
        o.enqueue(w.clone()).await.expect("enqueue");
    }
    let claimed = claim(o, 1_000, 10).await;
    let got: Vec<OutboxItem> = claimed.into_iter().map(|c| c.item).collect();
    assert_eq!(got, written);
}

/// Items a commit wrote, failed or given back with a due time before their lease would have
/// ended, are claimable from that time on; a commit after a claim that found nothing due is
/// claimable at once. (A store that remembers when an account next has work must follow every
/// change.)
pub async fn rescheduled_commit_items_are_claimable_at_their_new_time(s: Subject) {
    let o = s.outbox.as_ref();
    let rei = did("did:plc:rei");
    commit_items(
        s.repos.as_ref(),
        &rei,
        vec![put("did:plc:rei", "1"), put("did:plc:rei", "2")],
    )
    .await;
    let first = o.claim(1_000, 60_000, 10).await.expect("claim");
    assert_eq!(first.len(), 2);
    let empty = |now: i64| async move { o.claim(now, 60_000, 10).await.expect("claim") };
    assert!(empty(2_000).await.is_empty());
    // A failure due again at 3 s, long before the lease's 61 s.
    let disposition = o
        .fail(
            first[0].lease(),
            failure(2_000, 3_000, 5, "PDS answered 503"),
        )
        .await
        .expect("fail");
    assert_eq!(disposition, Disposition::Retry);
    assert!(empty(2_500).await.is_empty());
    let retried = o.claim(3_000, 60_000, 10).await.expect("claim");
    assert_eq!(
        ids(&retried),
        [first[0].id],
        "the failed item at its retry time"
    );
    o.complete(retried[0].lease()).await.expect("complete");
    assert!(empty(3_100).await.is_empty());
    // Given back, due at 4 s.
    o.release(first[1].lease(), 4_000).await.expect("release");
    let released = o.claim(4_000, 60_000, 10).await.expect("claim");
    assert_eq!(
        ids(&released),
        [first[1].id],
        "the released item at its due time"
    );
    o.complete(released[0].lease()).await.expect("complete");
    assert!(empty(5_000).await.is_empty());
    // A new commit after a claim that found nothing.
    commit_items(s.repos.as_ref(), &rei, vec![put("did:plc:rei", "3")]).await;
    assert_eq!(o.claim(5_001, 60_000, 10).await.expect("claim").len(), 1);
}

/// An item whose lease ran out without a completion is claimed again, under a new lease.
pub async fn an_expired_lease_frees_the_item(s: Subject) {
    let o = s.outbox.as_ref();
    let a = o.enqueue(item("did:plc:a", "1")).await.expect("enqueue");
    assert_eq!(ids(&claim(o, 1_000, 10).await), [a]);
    assert!(claim(o, 1_400, 10).await.is_empty());
    let again = claim(o, 2_000, 10).await;
    assert_eq!(ids(&again), [a], "the lease expired at 1,500");
    assert_eq!(again[0].leased_until_ms, 2_500);
    o.complete(again[0].lease()).await.expect("complete");
    assert_eq!(o.pending().await.expect("pending"), 0);
}

/// A failed item is not due before its retry time, then comes back with one more attempt.
pub async fn failed_items_wait_for_their_retry_time(s: Subject) {
    let o = s.outbox.as_ref();
    let a = o.enqueue(item("did:plc:a", "1")).await.expect("enqueue");
    let b = o.enqueue(item("did:plc:b", "2")).await.expect("enqueue");
    let first = claim(o, 1_000, 10).await;
    assert_eq!(ids(&first), [a, b]);
    let retry = o
        .fail(
            lease_of(&first, a),
            failure(1_000, 5_000, 10, "PDS answered 503"),
        )
        .await
        .expect("fail");
    assert_eq!(retry, Disposition::Retry);
    o.complete(lease_of(&first, b)).await.expect("complete");
    assert_eq!(
        o.pending().await.expect("pending"),
        1,
        "a failed item waits"
    );
    assert!(
        claim(o, 2_000, 10).await.is_empty(),
        "not due before its retry time"
    );
    let retry = claim(o, 5_000, 10).await;
    assert_eq!(ids(&retry), [a]);
    assert_eq!(retry[0].attempts, 1);
    assert_eq!(retry[0].item, item("did:plc:a", "1"));
    o.fail(retry[0].lease(), failure(5_000, 6_000, 10, "timeout"))
        .await
        .expect("fail again");
    let again = claim(o, 6_000, 10).await;
    assert_eq!(again[0].attempts, 2);
    o.complete(again[0].lease()).await.expect("complete");
    assert_eq!(o.pending().await.expect("pending"), 0);
    assert_eq!(o.dead_total().await.expect("dead"), 0);
}

/// Purging an account drops its items, claimed, waiting or dead, and nobody else's.
pub async fn purge_drops_one_accounts_items(s: Subject) {
    let o = s.outbox.as_ref();
    let claimed = o.enqueue(item("did:plc:b", "2")).await.expect("enqueue");
    let a = o.enqueue(item("did:plc:a", "1")).await.expect("enqueue");
    assert_eq!(ids(&claim(o, 1_000, 1).await), [claimed]);
    o.enqueue(item("did:plc:b", "3")).await.expect("enqueue");
    let dead = o.enqueue(item("did:plc:c", "4")).await.expect("enqueue");
    let c = claim(o, 1_000, 10).await;
    assert_eq!(
        ids(&c),
        [a, dead],
        "b's later items wait behind its leased one"
    );
    let mut permanent = failure(1_000, 1_000, 10, "refused");
    permanent.permanent = true;
    o.fail(lease_of(&c, dead), permanent).await.expect("fail");
    o.release(lease_of(&c, a), 0).await.expect("release");
    commit_items(
        s.repos.as_ref(),
        &did("did:plc:b"),
        vec![item("did:plc:b", "5")],
    )
    .await;
    o.purge(&did("did:plc:b")).await.expect("purge");
    o.purge(&did("did:plc:c"))
        .await
        .expect("purge dead letters");
    assert_eq!(
        o.pending().await.expect("pending"),
        1,
        "only a's item is left"
    );
    assert_eq!(o.dead_total().await.expect("dead"), 0);
    o.purge(&did("did:plc:nobody"))
        .await
        .expect("purging an account without items");
    let left = claim(o, 2_000, 10).await;
    assert_eq!(ids(&left), [a]);
    assert_eq!(left[0].item.did, "did:plc:a");
}

/// Completing removes the item; completing it again, or an id never handed out, is an error.
pub async fn completing_twice_is_an_error(s: Subject) {
    let o = s.outbox.as_ref();
    let a = o.enqueue(item("did:plc:a", "1")).await.expect("enqueue");
    let claimed = claim(o, 1_000, 10).await;
    assert_eq!(ids(&claimed), [a]);
    o.complete(claimed[0].lease()).await.expect("complete");
    assert_eq!(o.pending().await.expect("pending"), 0);
    assert!(
        matches!(
            o.complete(claimed[0].lease()).await,
            Err(OutboxError::NotClaimed(id)) if id == a
        ),
        "completing twice is an error"
    );
    let unknown = Lease {
        id: a + 1_000,
        until_ms: 1_500,
    };
    assert!(
        o.complete(unknown).await.is_err(),
        "an unknown id is an error"
    );
    assert!(
        o.fail(unknown, failure(1_000, 1_000, 3, "x"))
            .await
            .is_err(),
        "failing an unknown id is an error"
    );
    assert!(claim(o, 2_000, 10).await.is_empty());
}

/// An account's item is never handed out while an older item of that account is leased or
/// waiting for a retry; a claim takes an account's free items as a prefix, oldest first, and
/// other accounts go on meanwhile.
pub async fn an_accounts_items_wait_behind_its_older_items(s: Subject) {
    let o = s.outbox.as_ref();
    let a1 = o.enqueue(put("did:plc:a", "1")).await.expect("enqueue");
    let a2 = o.enqueue(item("did:plc:a", "1")).await.expect("enqueue");
    let b1 = o.enqueue(put("did:plc:b", "1")).await.expect("enqueue");
    let a3 = o.enqueue(put("did:plc:a", "3")).await.expect("enqueue");

    let first = claim(o, 1_000, 1).await;
    assert_eq!(ids(&first), [a1]);
    let second = claim(o, 1_000, 10).await;
    assert_eq!(ids(&second), [b1], "a2 and a3 wait behind the leased a1");
    o.complete(second[0].lease()).await.expect("complete");
    o.fail(lease_of(&first, a1), failure(1_000, 5_000, 10, "PDS down"))
        .await
        .expect("fail");
    assert!(
        claim(o, 2_000, 10).await.is_empty(),
        "a2 and a3 wait while a1 waits for its retry"
    );
    let all = claim(o, 5_000, 10).await;
    assert_eq!(ids(&all), [a1, a2, a3], "the account's items, oldest first");
    assert_eq!(
        all[1].item,
        item("did:plc:a", "1"),
        "the delete after the put"
    );
    o.complete(lease_of(&all, a1)).await.expect("complete");
    o.release(lease_of(&all, a2), 0).await.expect("release");
    o.release(lease_of(&all, a3), 0).await.expect("release");
    let rest = claim(o, 5_000, 1).await;
    assert_eq!(ids(&rest), [a2], "a limit takes the oldest first");
    assert!(claim(o, 5_000, 10).await.is_empty(), "a3 waits behind a2");
}

/// Items written by commits (in the commit's transaction) keep the account's order too: a put
/// and a later delete of one record are never handed out the other way round, and a failing
/// put holds the delete back.
pub async fn commit_items_keep_their_order_per_account(s: Subject) {
    let o = s.outbox.as_ref();
    let rei = did("did:plc:rei");
    let asuka = did("did:plc:asuka");
    commit_items(
        s.repos.as_ref(),
        &rei,
        vec![put("did:plc:rei", "p1"), put("did:plc:rei", "p2")],
    )
    .await;
    commit_items(s.repos.as_ref(), &asuka, vec![put("did:plc:asuka", "x")]).await;
    commit_items(s.repos.as_ref(), &rei, vec![item("did:plc:rei", "p1")]).await;
    assert_eq!(o.pending().await.expect("pending"), 4);

    let first = claim(o, 1_000, 10).await;
    let of = |d: &Did| -> Vec<OutboxItem> {
        first
            .iter()
            .filter(|c| &c.item.did == d)
            .map(|c| c.item.clone())
            .collect()
    };
    assert_eq!(
        of(&rei),
        [
            put("did:plc:rei", "p1"),
            put("did:plc:rei", "p2"),
            item("did:plc:rei", "p1")
        ],
        "commit order"
    );
    assert_eq!(of(&asuka), [put("did:plc:asuka", "x")]);
    // The put of p1 fails: the rest of rei's batch goes back untouched.
    for c in &first {
        if c.item == put("did:plc:rei", "p1") {
            o.fail(c.lease(), failure(1_000, 3_000, 10, "503"))
                .await
                .expect("fail");
        } else if c.item.did == rei {
            o.release(c.lease(), 0).await.expect("release");
        } else {
            o.complete(c.lease()).await.expect("complete");
        }
    }
    assert!(
        claim(o, 2_000, 10).await.is_empty(),
        "the delete never overtakes the failed put"
    );
    let retry = claim(o, 3_000, 10).await;
    let items: Vec<OutboxItem> = retry.iter().map(|c| c.item.clone()).collect();
    assert_eq!(
        items,
        [
            put("did:plc:rei", "p1"),
            put("did:plc:rei", "p2"),
            item("did:plc:rei", "p1")
        ]
    );
    assert_eq!(retry[0].attempts, 1);
    assert_eq!(retry[1].attempts, 0, "released items lost no attempt");
    for c in &retry {
        o.complete(c.lease()).await.expect("complete");
    }
    assert_eq!(o.pending().await.expect("pending"), 0);
}

/// After a lease ran out and someone else claimed the item, the first claim can neither
/// complete, fail nor release it.
pub async fn an_outdated_lease_changes_nothing(s: Subject) {
    let o = s.outbox.as_ref();
    let a = o.enqueue(item("did:plc:a", "1")).await.expect("enqueue");
    let old = claim(o, 1_000, 10).await;
    let new = claim(o, 2_000, 10).await;
    assert_eq!(ids(&new), [a]);
    assert_ne!(old[0].lease(), new[0].lease());
    assert!(matches!(
        o.complete(old[0].lease()).await,
        Err(OutboxError::NotClaimed(_))
    ));
    assert!(matches!(
        o.fail(old[0].lease(), failure(2_000, 9_000, 1, "late"))
            .await,
        Err(OutboxError::NotClaimed(_))
    ));
    assert!(matches!(
        o.release(old[0].lease(), 9_000).await,
        Err(OutboxError::NotClaimed(_))
    ));
    assert_eq!(o.dead_total().await.expect("dead"), 0);
    o.complete(new[0].lease())
        .await
        .expect("the current lease completes");
    assert_eq!(o.pending().await.expect("pending"), 0);
}

/// Releasing gives an item back without counting an attempt; its due time only moves later.
pub async fn released_items_keep_their_attempts(s: Subject) {
    let o = s.outbox.as_ref();
    let a = o.enqueue(item("did:plc:a", "1")).await.expect("enqueue");
    let c = claim(o, 1_000, 10).await;
    o.fail(c[0].lease(), failure(1_000, 1_000, 10, "once"))
        .await
        .expect("fail");
    let c = claim(o, 1_000, 10).await;
    assert_eq!(c[0].attempts, 1);
    o.release(c[0].lease(), 60_000).await.expect("release");
    assert!(claim(o, 59_999, 10).await.is_empty(), "held until 60,000");
    let c = claim(o, 60_000, 10).await;
    assert_eq!(ids(&c), [a]);
    assert_eq!(c[0].attempts, 1, "a release is not an attempt");
    o.release(c[0].lease(), 0).await.expect("release");
    assert_eq!(
        ids(&claim(o, 60_000, 10).await),
        [a],
        "an earlier due time does not move it back"
    );
}

/// Several workers drain one outbox at once: no item is handed to two of them, and each
/// account's items are performed in order.
pub async fn concurrent_claimers_never_share_an_item_or_break_the_order(s: Subject) {
    const ACCOUNTS: usize = 4;
    const PER_ACCOUNT: usize = 12;
    let mut expected: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for i in 0..PER_ACCOUNT {
        for a in 0..ACCOUNTS {
            let d = format!("did:plc:w{a}");
            let id = s
                .outbox
                .enqueue(item(&d, &format!("r{i}")))
                .await
                .expect("enqueue");
            expected.entry(d).or_default().push(id);
        }
    }
    let done: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let seen: Arc<Mutex<HashSet<u64>>> = Arc::default();
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (o, done, seen) = (s.outbox.clone(), done.clone(), seen.clone());
        workers.push(tokio::spawn(async move {
            for _ in 0..100_000 {
                let batch = o.claim(1_000, 60_000, 3).await.expect("claim");
                if batch.is_empty() {
                    if o.pending().await.expect("pending") == 0 {
                        return;
                    }
                    tokio::task::yield_now().await;
                    continue;
                }
                for c in batch {
                    assert!(
                        seen.lock().expect("seen").insert(c.id),
                        "item {} handed out twice",
                        c.id
                    );
                    done.lock()
                        .expect("done")
                        .push((c.item.did.to_string(), c.id));
                    o.complete(c.lease()).await.expect("complete");
                }
            }
        }));
    }
    for w in workers {
        w.await.expect("worker");
    }
    assert_eq!(s.outbox.pending().await.expect("pending"), 0, "drained");
    let mut performed: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (d, id) in done.lock().expect("done").iter() {
        performed.entry(d.clone()).or_default().push(*id);
    }
    assert_eq!(performed, expected, "every item once, in order per account");
}

/// After `max_attempts` failed attempts an item is a dead letter: never claimed again, its
/// last error and attempts kept, counted, and the account's later items go on.
pub async fn dead_letter_after_max_attempts_blocks_nothing(s: Subject) {
    let o = s.outbox.as_ref();
    let a1 = o.enqueue(put("did:plc:a", "1")).await.expect("enqueue");
    let a2 = o.enqueue(put("did:plc:a", "2")).await.expect("enqueue");
    let mut now = 1_000;
    for attempt in 1..=3 {
        let c = claim(o, now, 1).await;
        assert_eq!(ids(&c), [a1], "attempt {attempt}");
        let disposition = o
            .fail(
                c[0].lease(),
                failure(now, now + 10, 3, &format!("PDS answered 50{attempt}")),
            )
            .await
            .expect("fail");
        let expected = if attempt < 3 {
            Disposition::Retry
        } else {
            Disposition::Dead
        };
        assert_eq!(disposition, expected, "attempt {attempt}");
        now += 10;
    }
    assert_eq!(o.pending().await.expect("pending"), 1, "a2 only");
    assert_eq!(o.dead_count(&did("did:plc:a")).await.expect("dead"), 1);
    assert_eq!(o.dead_count(&did("did:plc:b")).await.expect("dead"), 0);
    assert_eq!(o.dead_total().await.expect("dead"), 1);
    let next = claim(o, now + 1_000_000, 10).await;
    assert_eq!(
        ids(&next),
        [a2],
        "the dead letter blocks nothing and is not claimed"
    );
    let dead = o.dead_letters(10, None).await.expect("dead letters");
    assert_eq!(
        dead,
        [DeadLetter {
            id: a1,
            did: did("did:plc:a"),
            item: Some(put("did:plc:a", "1")),
            attempts: 3,
            last_error: "PDS answered 503".into(),
            dead_at_ms: 1_020,
        }]
    );
}

/// A permanent refusal makes the item a dead letter at its first failure.
pub async fn a_permanent_failure_is_a_dead_letter_at_once(s: Subject) {
    let o = s.outbox.as_ref();
    let a = o.enqueue(put("did:plc:a", "1")).await.expect("enqueue");
    let c = claim(o, 1_000, 10).await;
    let mut refused = failure(1_000, 2_000, 10, "400 InvalidRecord");
    refused.permanent = true;
    assert_eq!(
        o.fail(c[0].lease(), refused).await.expect("fail"),
        Disposition::Dead
    );
    assert!(claim(o, 5_000, 10).await.is_empty());
    let dead = o.dead_letters(10, None).await.expect("dead letters");
    assert_eq!(ids_of(&dead), [a]);
    assert_eq!(dead[0].attempts, 1);
    assert_eq!(dead[0].last_error, "400 InvalidRecord");
    assert_eq!(o.pending().await.expect("pending"), 0);
}

fn ids_of(dead: &[DeadLetter]) -> Vec<u64> {
    dead.iter().map(|d| d.id).collect()
}

/// Retrying a dead letter re-queues it as a new item behind the account's newer items, with no
/// attempts; retrying anything else is an error.
pub async fn retry_dead_requeues_behind_newer_items(s: Subject) {
    let o = s.outbox.as_ref();
    let a1 = o.enqueue(put("did:plc:a", "1")).await.expect("enqueue");
    let c = claim(o, 1_000, 10).await;
    o.fail(c[0].lease(), failure(1_000, 1_000, 1, "gone"))
        .await
        .expect("fail");
    let a2 = o.enqueue(put("did:plc:a", "2")).await.expect("enqueue");
    commit_items(
        s.repos.as_ref(),
        &did("did:plc:a"),
        vec![put("did:plc:a", "3")],
    )
    .await;
    assert!(matches!(
        o.retry_dead(a2).await,
        Err(OutboxError::NotDead(id)) if id == a2
    ));
    assert!(o.retry_dead(a2 + 1_000_000).await.is_err(), "unknown id");
    let again = o.retry_dead(a1).await.expect("retry");
    assert_ne!(again, a1);
    assert!(matches!(
        o.retry_dead(a1).await,
        Err(OutboxError::NotDead(_))
    ));
    assert_eq!(o.dead_total().await.expect("dead"), 0);
    assert_eq!(o.pending().await.expect("pending"), 3);
    let order: Vec<OutboxItem> = claim(o, 2_000, 10)
        .await
        .iter()
        .filter(|c| c.item != put("did:plc:a", "3"))
        .map(|c| {
            assert_eq!(c.attempts, 0);
            c.item.clone()
        })
        .collect();
    assert_eq!(
        order,
        [put("did:plc:a", "2"), put("did:plc:a", "1")],
        "the retried item comes after the newer one"
    );
}

/// Dead letters page by id with a cursor, across accounts, and are counted per account.
pub async fn dead_letters_page_by_cursor_and_count_per_account(s: Subject) {
    let o = s.outbox.as_ref();
    let mut enqueued = Vec::new();
    for (d, r) in [("a", "1"), ("b", "1"), ("a", "2"), ("c", "1"), ("b", "2")] {
        let id = o
            .enqueue(put(&format!("did:plc:{d}"), r))
            .await
            .expect("enqueue");
        enqueued.push(id);
    }
    commit_items(
        s.repos.as_ref(),
        &did("did:plc:a"),
        vec![put("did:plc:a", "9")],
    )
    .await;
    let claimed = claim(o, 1_000, 10).await;
    assert_eq!(claimed.len(), 6);
    for c in &claimed {
        o.fail(c.lease(), failure(1_000, 1_000, 1, "no"))
            .await
            .expect("fail");
    }
    assert_eq!(o.pending().await.expect("pending"), 0);
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let page = o.dead_letters(2, cursor).await.expect("page");
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        cursor = Some(last.id);
        all.extend(page);
    }
    let listed = ids_of(&all);
    let mut sorted = listed.clone();
    sorted.sort_unstable();
    assert_eq!(listed, sorted, "id order");
    let mut expected: Vec<u64> = claimed.iter().map(|c| c.id).collect();
    expected.sort_unstable();
    assert_eq!(listed, expected, "every dead letter once");
    assert!(enqueued.iter().all(|id| listed.contains(id)));
    let counts = [("a", 3), ("b", 2), ("c", 1), ("d", 0)];
    for (d, n) in counts {
        assert_eq!(
            o.dead_count(&did(&format!("did:plc:{d}")))
                .await
                .expect("count"),
            n,
            "did:plc:{d}"
        );
    }
    assert_eq!(o.dead_total().await.expect("count"), 6);
    assert!(
        o.dead_letters(0, None)
            .await
            .expect("empty page")
            .is_empty()
    );
}

/// A row whose item does not decode is not handed out and does not stop the claim: it becomes
/// a dead letter that says why, listed without an item, and blocks nothing behind it.
pub async fn a_corrupt_row_becomes_a_dead_letter(s: Subject) {
    let o = s.outbox.as_ref();
    (s.plant_corrupt)(did("did:plc:a")).await;
    let a2 = o.enqueue(put("did:plc:a", "2")).await.expect("enqueue");
    let b = o.enqueue(put("did:plc:b", "1")).await.expect("enqueue");
    let claimed = claim(o, 1_000, 10).await;
    assert_eq!(ids(&claimed), [a2, b]);
    assert_eq!(o.dead_count(&did("did:plc:a")).await.expect("count"), 1);
    let dead = o.dead_letters(10, None).await.expect("dead letters");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].did, "did:plc:a");
    assert_eq!(dead[0].item, None);
    assert_eq!(dead[0].attempts, 0);
    assert!(
        dead[0].last_error.contains("corrupt"),
        "{}",
        dead[0].last_error
    );
    assert_eq!(dead[0].dead_at_ms, 1_000);
    // Retried, it comes back dead at the next claim.
    o.retry_dead(dead[0].id).await.expect("retry");
    for c in &claimed {
        o.complete(c.lease()).await.expect("complete");
    }
    assert!(claim(o, 2_000, 10).await.is_empty());
    assert_eq!(o.dead_total().await.expect("count"), 1);
    assert_eq!(o.pending().await.expect("pending"), 0);
}
