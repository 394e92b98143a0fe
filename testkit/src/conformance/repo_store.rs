//! The [`RepoStore`] conformance suite.

use std::sync::Arc;

use serde_json::json;
use stratos_domain::blocks::BlockMap;
use stratos_domain::boundary::ReadFilter;
use stratos_domain::crypto::{KeyAlgorithm, Keypair};
use stratos_domain::repo::{self, CommitOutput, RecordWrite, RepoHead};
use stratos_domain::syntax::{Did, Nsid, RecordKey};
use stratos_domain::{data, tid};
use stratos_ports::repo_store::{
    CommitUnit, EventOp, IndexChange, ListQuery, RepoStore, RepoStoreError, SeqEvent,
};

const POSTS: &str = "zone.stratos.feed.post";

/// Runs every case against `store`. Each case uses its own DIDs, so one store instance serves
/// the whole suite.
pub async fn run(store: Arc<dyn RepoStore>) {
    lifecycle(store.as_ref()).await;
    first_commit_and_blocks(store.as_ref()).await;
    stale_head_is_a_conflict_and_changes_nothing(store.as_ref()).await;
    racing_writers_exactly_one_wins(store.clone()).await;
    index_mismatch_leaves_nothing_behind(store.as_ref()).await;
    listing_pages_cursor_reverse_and_filter(store.as_ref()).await;
    events_are_sequenced_per_actor(store.as_ref()).await;
    destroy_removes_everything(store.as_ref()).await;
    hostile_values_are_data(store.as_ref()).await;
    removed_blocks_are_gone(store.as_ref()).await;
}

/// Blocks a commit names as removed are deleted (unless a later commit brings them back), so
/// the store does not grow with garbage.
async fn removed_blocks_are_gone(store: &dyn RepoStore) {
    let mut b = Builder::new("did:plc:conformancegarbage");
    store.create_actor(&b.did).await.expect("create");
    let keys = rkeys(12);
    let mut removed = std::collections::HashSet::new();
    for k in &keys {
        let (out, unit) = b.commit(&[(k.clone(), Some(vec!["did:web:s/a".to_owned()]))]);
        removed.extend(unit.removed_blocks.iter().copied());
        for (cid, _) in unit.new_blocks.iter() {
            removed.remove(cid);
        }
        store.apply_commit(&b.did, unit).await.expect("apply");
        b.accept(out);
    }
    for k in keys.iter().take(6) {
        let (out, unit) = b.commit(&[(k.clone(), None)]);
        removed.extend(unit.removed_blocks.iter().copied());
        for (cid, _) in unit.new_blocks.iter() {
            removed.remove(cid);
        }
        store.apply_commit(&b.did, unit).await.expect("apply");
        b.accept(out);
    }
    assert!(!removed.is_empty(), "the case removes MST nodes");
    let all = store.all_blocks(&b.did).await.expect("all blocks");
    for cid in &removed {
        assert!(
            all.get(cid).is_none(),
            "removed block {cid} is still stored"
        );
    }
    let head = store.head(&b.did).await.expect("head").expect("a head");
    assert!(all.get(&head.commit).is_some());
    assert!(all.get(&head.data).is_some());
}

/// Values are stored as data whatever they contain (quotes, SQL, newlines-free unicode).
async fn hostile_values_are_data(store: &dyn RepoStore) {
    let mut b = Builder::new("did:plc:conformancehostile");
    store.create_actor(&b.did).await.expect("create");
    let keys = rkeys(2);
    let hostile = "did:web:s/'); DROP TABLE record; --\u{1F600}\"x\"".to_owned();
    b.create(store, &[(keys[0].clone(), Some(vec![hostile.clone()]))])
        .await;
    b.create(
        store,
        &[(keys[1].clone(), Some(vec!["did:web:s/plain".into()]))],
    )
    .await;
    let rec = store
        .get_record(&b.did, POSTS, &keys[0])
        .await
        .expect("get")
        .expect("present");
    assert_eq!(rec.boundaries, std::slice::from_ref(&hostile));
    let page = store
        .list_records(
            &b.did,
            &ListQuery {
                collection: POSTS.into(),
                limit: 10,
                cursor: None,
                reverse: true,
                filter: ReadFilter::AnyOf(vec![hostile]),
            },
        )
        .await
        .expect("list");
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].rkey, keys[0]);
}

fn did(s: &str) -> Did {
    Did::parse(s).expect("suite DID")
}

/// A small helper that builds real commits with the repository core.
struct Builder {
    did: Did,
    key: Keypair,
    head: Option<RepoHead>,
    blocks: BlockMap,
}

impl Builder {
    fn new(d: &str) -> Self {
        Self {
            did: did(d),
            key: Keypair::generate(KeyAlgorithm::P256),
            head: None,
            blocks: BlockMap::new(),
        }
    }

    /// Builds (without persisting) a commit creating `rkeys` with `boundaries`.
    fn commit(&self, writes: &[(String, Option<Vec<String>>)]) -> (CommitOutput, CommitUnit) {
        let mut record_writes = Vec::new();
        let mut index = Vec::new();
        let mut ops = Vec::new();
        for (rkey, boundaries) in writes {
            let collection = Nsid::parse(POSTS).expect("nsid");
            let key = RecordKey::parse(rkey).expect("rkey");
            match boundaries {
                Some(b) => {
                    let value = data::json_to_ipld(&json!({
                        "$type": POSTS,
                        "text": format!("record {rkey}"),
                        "boundary": {"values": b.iter().map(|v| json!({"value": v})).collect::<Vec<_>>()},
                        "createdAt": "2026-11-25T09:00:00.000Z"
                    }))
                    .expect("record");
                    let (cid, bytes) = data::record_cid(&value).expect("cid");
                    record_writes.push(RecordWrite::Create {
                        collection,
                        rkey: key,
                        record: bytes,
                    });
                    index.push(IndexChange::Put {
                        collection: POSTS.into(),
                        rkey: rkey.clone(),
                        cid,
                        boundaries: b.clone(),
                    });
                    ops.push(EventOp {
                        action: "create".into(),
                        path: format!("{POSTS}/{rkey}"),
                        cid: Some(cid),
                        boundaries: b.clone(),
                    });
                }
                None => {
                    record_writes.push(RecordWrite::Delete {
                        collection,
                        rkey: key,
                    });
                    index.push(IndexChange::Delete {
                        collection: POSTS.into(),
                        rkey: rkey.clone(),
                    });
                    ops.push(EventOp {
                        action: "delete".into(),
                        path: format!("{POSTS}/{rkey}"),
                        cid: None,
                        boundaries: Vec::new(),
                    });
                }
            }
        }
        let rev = match &self.head {
            Some(h) => tid::next_after(&h.rev),
            None => tid::next(),
        };
        let out = repo::apply_writes(
            &self.blocks,
            &self.did,
            self.head.as_ref(),
            &record_writes,
            rev,
            &self.key,
        )
        .expect("commit builds");
        let unit = CommitUnit {
            prev: self.head.as_ref().map(|h| h.commit),
            head: out.head.clone(),
            new_blocks: out.new_blocks.clone(),
            removed_blocks: out.removed_nodes.clone(),
            index,
            event: Some(SeqEvent {
                seq: 0,
                rev: out.head.rev.to_string(),
                commit: out.head.commit,
                time: "2026-11-25T09:00:00.000Z".into(),
                ops,
            }),
            outbox: Vec::new(),
        };
        (out, unit)
    }

    /// Records a persisted commit so the next one builds on it.
    fn accept(&mut self, out: CommitOutput) {
        self.blocks.extend(out.new_blocks);
        self.head = Some(out.head);
    }

    async fn create(
        &mut self,
        store: &dyn RepoStore,
        writes: &[(String, Option<Vec<String>>)],
    ) -> u64 {
        let (out, unit) = self.commit(writes);
        let seq = store
            .apply_commit(&self.did, unit)
            .await
            .expect("commit applies");
        self.accept(out);
        seq
    }
}

fn rkeys(n: usize) -> Vec<String> {
    let mut tids = tid::TidGenerator::with_clock_id(7);
    (0..n)
        .map(|i| {
            tids.next_at(1_700_000_000_000_000 + i as u64 * 1000)
                .to_string()
        })
        .collect()
}

async fn lifecycle(store: &dyn RepoStore) {
    let d = did("did:plc:conformancelife");
    assert!(!store.actor_exists(&d).await.expect("exists"));
    assert!(matches!(
        store.head(&d).await,
        Err(RepoStoreError::ActorNotFound(_))
    ));
    store.create_actor(&d).await.expect("create");
    store.create_actor(&d).await.expect("create is idempotent");
    assert!(store.actor_exists(&d).await.expect("exists"));
    assert_eq!(store.head(&d).await.expect("head"), None);
    assert_eq!(store.latest_seq(&d).await.expect("seq"), 0);
    store.destroy_actor(&d).await.expect("destroy");
    store
        .destroy_actor(&d)
        .await
        .expect("destroy is idempotent");
    assert!(!store.actor_exists(&d).await.expect("exists"));
}

async fn first_commit_and_blocks(store: &dyn RepoStore) {
    let mut b = Builder::new("did:plc:conformancefirst");
    store.create_actor(&b.did).await.expect("create");
    let keys = rkeys(3);
    let writes: Vec<_> = keys
        .iter()
        .map(|k| (k.clone(), Some(vec!["did:web:s/a".to_owned()])))
        .collect();
    let (out, unit) = b.commit(&writes);
    let cids: Vec<_> = out.new_blocks.iter().map(|(c, _)| *c).collect();
    store.apply_commit(&b.did, unit).await.expect("apply");
    assert_eq!(
        store.head(&b.did).await.expect("head"),
        Some(out.head.clone())
    );
    let got = store.get_blocks(&b.did, &cids).await.expect("blocks");
    assert_eq!(got.len(), cids.len(), "every new block is readable");
    for (cid, bytes) in out.new_blocks.iter() {
        assert_eq!(got.get(cid), Some(bytes));
    }
    let absent = stratos_domain::cid::dag_cbor(b"not stored");
    assert!(
        store
            .get_blocks(&b.did, &[absent])
            .await
            .expect("blocks")
            .is_empty()
    );
    let rec = store
        .get_record(&b.did, POSTS, &keys[0])
        .await
        .expect("get")
        .expect("present");
    assert_eq!(rec.boundaries, ["did:web:s/a"]);
    assert_eq!(stratos_domain::cid::dag_cbor(&rec.bytes), rec.cid);
    assert_eq!(
        store
            .get_record(&b.did, POSTS, "3zzzzzzzzzzzz")
            .await
            .expect("get"),
        None
    );
    let all = store.all_blocks(&b.did).await.expect("all blocks");
    assert_eq!(all.len(), out.new_blocks.len());
    b.accept(out);
}

async fn stale_head_is_a_conflict_and_changes_nothing(store: &dyn RepoStore) {
    let mut b = Builder::new("did:plc:conformancecas");
    store.create_actor(&b.did).await.expect("create");
    let keys = rkeys(2);
    b.create(store, &[(keys[0].clone(), Some(vec![]))]).await;
    let head = store.head(&b.did).await.expect("head");
    // A unit built on "no head" while a head exists.
    let stale = Builder::new("did:plc:conformancecas");
    let (_, mut unit) = stale.commit(&[(keys[1].clone(), Some(vec![]))]);
    unit.prev = None;
    let err = store
        .apply_commit(&b.did, unit)
        .await
        .expect_err("stale prev");
    assert!(err.is_retryable(), "a stale head is retryable: {err:?}");
    assert_eq!(store.head(&b.did).await.expect("head"), head);
    assert_eq!(
        store
            .get_record(&b.did, POSTS, &keys[1])
            .await
            .expect("get"),
        None
    );
    assert_eq!(store.latest_seq(&b.did).await.expect("seq"), 1);
}

async fn racing_writers_exactly_one_wins(store: Arc<dyn RepoStore>) {
    let mut b = Builder::new("did:plc:conformancerace");
    store.create_actor(&b.did).await.expect("create");
    let keys = rkeys(3);
    b.create(store.as_ref(), &[(keys[0].clone(), Some(vec![]))])
        .await;
    let (_, u1) = b.commit(&[(keys[1].clone(), Some(vec![]))]);
    let (_, u2) = b.commit(&[(keys[2].clone(), Some(vec![]))]);
    let (s1, s2, d1, d2) = (store.clone(), store.clone(), b.did.clone(), b.did.clone());
    let t1 = tokio::spawn(async move { s1.apply_commit(&d1, u1).await });
    let t2 = tokio::spawn(async move { s2.apply_commit(&d2, u2).await });
    let r1 = t1.await.expect("task");
    let r2 = t2.await.expect("task");
    let wins = [&r1, &r2].iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "exactly one writer wins: {r1:?} {r2:?}");
    let loser = if r1.is_err() { r1 } else { r2 };
    assert!(loser.expect_err("loser").is_retryable());
    assert_eq!(store.latest_seq(&b.did).await.expect("seq"), 2);
}

async fn index_mismatch_leaves_nothing_behind(store: &dyn RepoStore) {
    let mut b = Builder::new("did:plc:conformanceatomic");
    store.create_actor(&b.did).await.expect("create");
    let keys = rkeys(3);
    b.create(store, &[(keys[0].clone(), Some(vec![]))]).await;
    let head = store.head(&b.did).await.expect("head");
    let (out, mut unit) = b.commit(&[(keys[1].clone(), Some(vec![]))]);
    // The unit also claims to delete a record that is not indexed.
    unit.index.push(IndexChange::Delete {
        collection: POSTS.into(),
        rkey: keys[2].clone(),
    });
    assert!(store.apply_commit(&b.did, unit).await.is_err());
    assert_eq!(
        store.head(&b.did).await.expect("head"),
        head,
        "head unchanged"
    );
    assert_eq!(
        store
            .get_record(&b.did, POSTS, &keys[1])
            .await
            .expect("get"),
        None
    );
    assert_eq!(store.latest_seq(&b.did).await.expect("seq"), 1, "no event");
    let new_only: Vec<_> = out
        .new_blocks
        .iter()
        .map(|(c, _)| *c)
        .filter(|c| !b.blocks.contains(c))
        .collect();
    assert!(
        store
            .get_blocks(&b.did, &new_only)
            .await
            .expect("blocks")
            .is_empty(),
        "no block of the failed unit was kept"
    );
}

async fn listing_pages_cursor_reverse_and_filter(store: &dyn RepoStore) {
    let mut b = Builder::new("did:plc:conformancelist");
    store.create_actor(&b.did).await.expect("create");
    let keys = rkeys(40);
    // Even records in boundary x, odd ones in y: a viewer of x is denied half of them.
    let writes: Vec<_> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let bnd = if i % 2 == 0 {
                "did:web:s/x"
            } else {
                "did:web:s/y"
            };
            (k.clone(), Some(vec![bnd.to_owned()]))
        })
        .collect();
    b.create(store, &writes).await;
    let query = |cursor: Option<String>, reverse: bool, filter: ReadFilter| ListQuery {
        collection: POSTS.into(),
        limit: 7,
        cursor,
        reverse,
        filter,
    };
    // Descending (newest first) is the default order.
    let page = store
        .list_records(&b.did, &query(None, false, ReadFilter::All))
        .await
        .expect("list");
    let expected: Vec<_> = keys.iter().rev().take(7).cloned().collect();
    assert_eq!(
        page.iter().map(|r| r.rkey.clone()).collect::<Vec<_>>(),
        expected
    );
    // Walking every page ascending visits every record once.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_records(&b.did, &query(cursor.clone(), true, ReadFilter::All))
            .await
            .expect("list");
        seen.extend(page.iter().map(|r| r.rkey.clone()));
        if page.len() < 7 {
            break;
        }
        cursor = page.last().map(|r| r.rkey.clone());
    }
    assert_eq!(seen, keys);
    // Filtered pages come back full even though half the records are denied.
    let only_x = ReadFilter::AnyOf(vec!["did:web:s/x".into()]);
    let page = store
        .list_records(&b.did, &query(None, true, only_x.clone()))
        .await
        .expect("list");
    assert_eq!(page.len(), 7, "a filtered page is full");
    assert!(page.iter().all(|r| r.boundaries == ["did:web:s/x"]));
    let expected: Vec<_> = keys.iter().step_by(2).take(7).cloned().collect();
    assert_eq!(
        page.iter().map(|r| r.rkey.clone()).collect::<Vec<_>>(),
        expected
    );
    let none = store
        .list_records(&b.did, &query(None, true, ReadFilter::Nothing))
        .await
        .expect("list");
    assert!(none.is_empty());
    let other = ListQuery {
        collection: "zone.stratos.feed.other".into(),
        ..query(None, true, ReadFilter::All)
    };
    assert!(
        store
            .list_records(&b.did, &other)
            .await
            .expect("list")
            .is_empty()
    );
}

async fn events_are_sequenced_per_actor(store: &dyn RepoStore) {
    let mut a = Builder::new("did:plc:conformanceseqa");
    let mut c = Builder::new("did:plc:conformanceseqb");
    store.create_actor(&a.did).await.expect("create");
    store.create_actor(&c.did).await.expect("create");
    let keys = rkeys(4);
    assert_eq!(a.create(store, &[(keys[0].clone(), Some(vec![]))]).await, 1);
    assert_eq!(c.create(store, &[(keys[1].clone(), Some(vec![]))]).await, 1);
    assert_eq!(a.create(store, &[(keys[2].clone(), Some(vec![]))]).await, 2);
    assert_eq!(a.create(store, &[(keys[0].clone(), None)]).await, 3);
    let events = store.events_after(&a.did, 0, 100).await.expect("events");
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(events[2].ops[0].action, "delete");
    assert_eq!(events[2].ops[0].cid, None);
    assert_eq!(events[0].ops[0].path, format!("{POSTS}/{}", keys[0]));
    let after = store.events_after(&a.did, 1, 1).await.expect("events");
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].seq, 2);
    assert_eq!(store.latest_seq(&a.did).await.expect("seq"), 3);
    assert_eq!(store.latest_seq(&c.did).await.expect("seq"), 1);
    assert_eq!(
        store
            .get_record(&a.did, POSTS, &keys[0])
            .await
            .expect("get"),
        None
    );
}

async fn destroy_removes_everything(store: &dyn RepoStore) {
    let mut b = Builder::new("did:plc:conformancedestroy");
    store.create_actor(&b.did).await.expect("create");
    let keys = rkeys(2);
    b.create(store, &[(keys[0].clone(), Some(vec![]))]).await;
    store.destroy_actor(&b.did).await.expect("destroy");
    assert!(!store.actor_exists(&b.did).await.expect("exists"));
    store.create_actor(&b.did).await.expect("re-create");
    assert_eq!(store.head(&b.did).await.expect("head"), None);
    assert_eq!(
        store
            .get_record(&b.did, POSTS, &keys[0])
            .await
            .expect("get"),
        None
    );
    assert_eq!(store.latest_seq(&b.did).await.expect("seq"), 0);
    let (_, unit) =
        Builder::new("did:plc:conformancegone").commit(&[(keys[1].clone(), Some(vec![]))]);
    assert!(matches!(
        store
            .apply_commit(&did("did:plc:conformancegone"), unit)
            .await,
        Err(RepoStoreError::ActorNotFound(_))
    ));
}
