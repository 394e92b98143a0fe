//! The [`RepoStore`] conformance suite.

use std::sync::Arc;

use serde_json::json;
use stratos_domain::Cid;
use stratos_domain::blocks::BlockMap;
use stratos_domain::boundary::{Boundary, ReadFilter};
use stratos_domain::crypto::{KeyAlgorithm, Keypair};
use stratos_domain::repo::{self, Action, CommitOutput, RecordOp, RecordWrite, RepoHead};
use stratos_domain::syntax::{Datetime, Did, Nsid, RecordKey, Tid};
use stratos_domain::{data, sync, tid};
use stratos_ports::repo_store::{
    BlobListQuery, BlobReference, CommitUnit, EventOp, EventProof, IndexChange, ListQuery,
    ReleasedBlob, RepoStore, RepoStoreError, SeqEvent, StoredBlob,
};

const POSTS: &str = "zone.stratos.feed.post";

fn posts() -> Nsid {
    Nsid::parse(POSTS).expect("suite NSID")
}

fn rk(s: &str) -> RecordKey {
    RecordKey::parse(s).expect("suite record key")
}

fn time() -> Datetime {
    Datetime::parse("2026-11-25T09:00:00.000Z").expect("suite time")
}

fn bounds(values: &[String]) -> Vec<Boundary> {
    values
        .iter()
        .map(|b| Boundary::parse(b).expect("suite boundary"))
        .collect()
}

/// What the cases run against.
pub type Subject = Arc<dyn RepoStore>;

/// One test per [`RepoStore`] case, in a module `repo_store`: `repo_store::lifecycle`, ….
///
/// The argument is an expression giving a future of the store (an `Arc`, a
/// [`Fixture`](crate::conformance::Fixture), or an `Option` of either to skip); it is evaluated
/// once per case, so every case gets a fresh store. See [`crate::conformance`].
///
/// ```ignore
/// stratos_testkit::repo_store_conformance!(async { std::sync::Arc::new(MyRepoStore::new()) });
/// ```
#[macro_export]
macro_rules! repo_store_conformance {
    ($fixture:expr $(,)?) => {
        $crate::__conformance_suite! {
            module: repo_store,
            port: repo_store,
            fixture: $fixture,
            cases: [
                lifecycle,
                first_commit_and_blocks,
                stale_head_is_a_conflict_and_changes_nothing,
                creates_on_a_stale_head_write_nothing,
                racing_writers_exactly_one_wins,
                index_mismatch_leaves_nothing_behind,
                listing_pages_cursor_reverse_and_filter,
                events_are_sequenced_per_actor,
                destroy_removes_everything,
                hostile_values_are_data,
                removed_blocks_are_gone,
                uploads_are_tracked_per_actor,
                blob_associations_follow_commits,
                a_commit_with_an_unknown_blob_changes_nothing,
                blob_listing_pages_filters_and_since,
                expired_uploads_are_released,
                destroy_forgets_blobs,
            ],
        }
    };
}

/// Blocks a commit names as removed are deleted (unless a later commit brings them back), so
/// the store does not grow with garbage.
pub async fn removed_blocks_are_gone(store: Subject) {
    let store = store.as_ref();
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

/// Values are stored as data whatever they contain (quotes, SQL, comments, unicode; a boundary
/// holds no whitespace).
pub async fn hostile_values_are_data(store: Subject) {
    let store = store.as_ref();
    let mut b = Builder::new("did:plc:conformancehostile");
    store.create_actor(&b.did).await.expect("create");
    let keys = rkeys(2);
    let hostile = "did:web:s/');DROP/**/TABLE/**/record;--\u{1F600}\"x\"".to_owned();
    b.create(store, &[(keys[0].clone(), Some(vec![hostile.clone()]))])
        .await;
    b.create(
        store,
        &[(keys[1].clone(), Some(vec!["did:web:s/plain".into()]))],
    )
    .await;
    let rec = store
        .get_record(&b.did, &posts(), &rk(&keys[0]))
        .await
        .expect("get")
        .expect("present");
    assert_eq!(rec.boundaries, std::slice::from_ref(&hostile));
    let page = store
        .list_records(
            &b.did,
            &ListQuery {
                collection: posts(),
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
    /// Keys of the records the built commits hold (so rewrites become updates).
    existing: std::collections::HashSet<String>,
}

/// One write for [`Builder::commit_blobs`]: rkey, boundaries (`None` deletes), blob CIDs.
type BlobWrite = (String, Option<Vec<String>>, Vec<Cid>);

impl Builder {
    fn new(d: &str) -> Self {
        Self {
            did: did(d),
            key: Keypair::generate(KeyAlgorithm::P256),
            head: None,
            blocks: BlockMap::new(),
            existing: Default::default(),
        }
    }

    /// Builds (without persisting) a commit writing `rkeys` with `boundaries` (creates, or
    /// updates of records an accepted commit wrote), deleting those without.
    fn commit(&self, writes: &[(String, Option<Vec<String>>)]) -> (CommitOutput, CommitUnit) {
        let writes: Vec<BlobWrite> = writes
            .iter()
            .map(|(k, b)| (k.clone(), b.clone(), Vec::new()))
            .collect();
        self.commit_blobs(&writes)
    }

    /// [`Builder::commit`] with the blobs each record references.
    fn commit_blobs(&self, writes: &[BlobWrite]) -> (CommitOutput, CommitUnit) {
        let mut record_writes = Vec::new();
        let mut index = Vec::new();
        let mut ops = Vec::new();
        for (rkey, boundaries, blobs) in writes {
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
                    let update = self.existing.contains(rkey);
                    record_writes.push(if update {
                        RecordWrite::Update {
                            collection,
                            rkey: key,
                            record: bytes,
                        }
                    } else {
                        RecordWrite::Create {
                            collection,
                            rkey: key,
                            record: bytes,
                        }
                    });
                    index.push(IndexChange::Put {
                        collection: posts(),
                        rkey: rk(rkey),
                        cid,
                        boundaries: bounds(b),
                        blobs: blobs.clone(),
                    });
                    ops.push(EventOp {
                        action: if update {
                            Action::Update
                        } else {
                            Action::Create
                        },
                        collection: posts(),
                        rkey: rk(rkey),
                        cid: Some(cid),
                        prev: None, // set from the commit below
                        boundaries: bounds(b),
                    });
                }
                None => {
                    record_writes.push(RecordWrite::Delete {
                        collection,
                        rkey: key,
                    });
                    index.push(IndexChange::Delete {
                        collection: posts(),
                        rkey: rk(rkey),
                    });
                    ops.push(EventOp {
                        action: Action::Delete,
                        collection: posts(),
                        rkey: rk(rkey),
                        cid: None,
                        prev: None, // set from the commit below
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
        for (op, done) in ops.iter_mut().zip(&out.ops) {
            op.prev = done.prev;
        }
        let unit = CommitUnit {
            prev: self.head.as_ref().map(|h| h.commit),
            head: out.head.clone(),
            new_blocks: out.new_blocks.clone(),
            removed_blocks: out.removed_nodes.clone(),
            index,
            event: Some(SeqEvent {
                seq: 0,
                rev: out.head.rev.clone(),
                commit: out.head.commit,
                time: time(),
                ops,
                proof: out.relevant_car.as_ref().map(|blocks| EventProof {
                    since: out.prev_head.as_ref().map(|h| h.rev.clone()),
                    prev_data: out.prev_head.as_ref().map(|h| h.data),
                    blocks: blocks.clone(),
                }),
            }),
            outbox: Vec::new(),
        };
        (out, unit)
    }

    /// Records a persisted commit so the next one builds on it.
    fn accept(&mut self, out: CommitOutput) {
        for op in &out.ops {
            let rkey = op.path.rsplit('/').next().unwrap_or_default().to_owned();
            if op.action == Action::Delete {
                self.existing.remove(&rkey);
            } else {
                self.existing.insert(rkey);
            }
        }
        self.blocks.extend(out.new_blocks);
        self.head = Some(out.head);
    }

    async fn create(
        &mut self,
        store: &dyn RepoStore,
        writes: &[(String, Option<Vec<String>>)],
    ) -> u64 {
        let writes: Vec<BlobWrite> = writes
            .iter()
            .map(|(k, b)| (k.clone(), b.clone(), Vec::new()))
            .collect();
        self.write_blobs(store, &writes).await
    }

    /// Builds and persists a commit of `writes` (see [`Builder::commit_blobs`]).
    async fn write_blobs(&mut self, store: &dyn RepoStore, writes: &[BlobWrite]) -> u64 {
        let (out, unit) = self.commit_blobs(writes);
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

/// Actors are created and destroyed idempotently; a new actor has no head and no events.
pub async fn lifecycle(store: Subject) {
    let store = store.as_ref();
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

/// The first commit sets the head; its blocks and records read back, absent ones do not.
pub async fn first_commit_and_blocks(store: Subject) {
    let store = store.as_ref();
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
        .get_record(&b.did, &posts(), &rk(&keys[0]))
        .await
        .expect("get")
        .expect("present");
    assert_eq!(rec.boundaries, ["did:web:s/a"]);
    assert_eq!(stratos_domain::cid::dag_cbor(&rec.bytes), rec.cid);
    assert_eq!(
        store
            .get_record(&b.did, &posts(), &rk("3zzzzzzzzzzzz"))
            .await
            .expect("get"),
        None
    );
    let all = store.all_blocks(&b.did).await.expect("all blocks");
    assert_eq!(all.len(), out.new_blocks.len());
    b.accept(out);
}

/// A unit built on a head that is no longer current is a retryable conflict and writes nothing.
pub async fn stale_head_is_a_conflict_and_changes_nothing(store: Subject) {
    let store = store.as_ref();
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
            .get_record(&b.did, &posts(), &rk(&keys[1]))
            .await
            .expect("get"),
        None
    );
    assert_eq!(store.latest_seq(&b.did).await.expect("seq"), 1);
}

/// Two writers racing on one head: exactly one wins, the other gets a retryable conflict.
pub async fn racing_writers_exactly_one_wins(store: Subject) {
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

/// A unit that fails half-way (an index change that cannot apply) leaves no head move, no
/// block and no event.
pub async fn index_mismatch_leaves_nothing_behind(store: Subject) {
    let store = store.as_ref();
    let mut b = Builder::new("did:plc:conformanceatomic");
    store.create_actor(&b.did).await.expect("create");
    let keys = rkeys(3);
    b.create(store, &[(keys[0].clone(), Some(vec![]))]).await;
    let head = store.head(&b.did).await.expect("head");
    let (out, mut unit) = b.commit(&[(keys[1].clone(), Some(vec![]))]);
    // The unit also claims to delete a record that is not indexed.
    unit.index.push(IndexChange::Delete {
        collection: posts(),
        rkey: rk(&keys[2]),
    });
    assert!(store.apply_commit(&b.did, unit).await.is_err());
    assert_eq!(
        store.head(&b.did).await.expect("head"),
        head,
        "head unchanged"
    );
    assert_eq!(
        store
            .get_record(&b.did, &posts(), &rk(&keys[1]))
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

/// Listing: newest first by default, cursor and `reverse` visit every record once, filtered
/// pages come back full.
pub async fn listing_pages_cursor_reverse_and_filter(store: Subject) {
    let store = store.as_ref();
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
    let query = |cursor: Option<RecordKey>, reverse: bool, filter: ReadFilter| ListQuery {
        collection: posts(),
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
        page.iter().map(|r| r.rkey.to_string()).collect::<Vec<_>>(),
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
        seen.extend(page.iter().map(|r| r.rkey.to_string()));
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
        page.iter().map(|r| r.rkey.to_string()).collect::<Vec<_>>(),
        expected
    );
    let none = store
        .list_records(&b.did, &query(None, true, ReadFilter::Nothing))
        .await
        .expect("list");
    assert!(none.is_empty());
    let other = ListQuery {
        collection: Nsid::parse("zone.stratos.feed.other").expect("suite NSID"),
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

/// Sequence numbers count per actor, from 1, and events page by cursor.
pub async fn events_are_sequenced_per_actor(store: Subject) {
    let store = store.as_ref();
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
    assert_eq!(events[2].ops[0].action, Action::Delete);
    assert_eq!(events[2].ops[0].cid, None);
    assert_eq!(events[0].ops[0].collection, POSTS);
    assert_eq!(events[0].ops[0].rkey, keys[0]);
    // Every event comes back self-verifying: its proof checks against the account's key, and
    // each one's previous data root is the root the one before it produced.
    let mut data = None;
    for e in &events {
        let proof = e.proof.as_ref().expect("the event's proof is stored");
        assert_eq!(proof.prev_data, data);
        let ops: Vec<RecordOp> = e
            .ops
            .iter()
            .map(|op| RecordOp {
                action: op.action,
                path: format!("{}/{}", op.collection, op.rkey),
                cid: op.cid,
                prev: op.prev,
            })
            .collect();
        let event = sync::CommitEvent {
            did: &a.did,
            commit: e.commit,
            rev: &e.rev,
            prev_data: proof.prev_data,
            ops: &ops,
            blocks: &proof.blocks,
        };
        let verified = sync::verify_commit(a.key.public_key(), &event).expect("verifies");
        data = Some(verified.data);
    }
    let after = store.events_after(&a.did, 1, 1).await.expect("events");
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].seq, 2);
    assert_eq!(store.latest_seq(&a.did).await.expect("seq"), 3);
    assert_eq!(store.latest_seq(&c.did).await.expect("seq"), 1);
    assert_eq!(
        store
            .get_record(&a.did, &posts(), &rk(&keys[0]))
            .await
            .expect("get"),
        None
    );
}

/// Destroying an actor removes its head, records and events; commits to it are refused.
pub async fn destroy_removes_everything(store: Subject) {
    let store = store.as_ref();
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
            .get_record(&b.did, &posts(), &rk(&keys[0]))
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

fn upload(bytes: &[u8], created_ms: i64) -> StoredBlob {
    StoredBlob {
        cid: stratos_domain::cid::raw(bytes),
        mime_type: "image/png".into(),
        size: bytes.len() as u64,
        temp_key: Some(format!("{:032x}", created_ms)),
        created_ms,
    }
}

fn reference(rkey: &str, boundary: &str) -> BlobReference {
    BlobReference {
        collection: posts(),
        rkey: rk(rkey),
        boundaries: bounds(&[boundary.to_owned()]),
    }
}

/// Uploads are tracked once per actor and CID: a second upload of the same bytes changes
/// nothing and hands back the first.
pub async fn uploads_are_tracked_per_actor(store: Subject) {
    let store = store.as_ref();
    let rei = did("did:plc:conformanceupload");
    let asuka = did("did:plc:conformanceupload2");
    store.create_actor(&rei).await.expect("create");
    store.create_actor(&asuka).await.expect("create");
    let first = upload(b"an image", 1_000);
    assert_eq!(store.blob(&rei, &first.cid).await.expect("blob"), None);
    assert_eq!(
        store.track_blob(&rei, first.clone()).await.expect("track"),
        None
    );
    assert_eq!(
        store.blob(&rei, &first.cid).await.expect("blob"),
        Some(first.clone())
    );
    let again = StoredBlob {
        mime_type: "text/plain".into(),
        ..upload(b"an image", 2_000)
    };
    assert_eq!(
        store.track_blob(&rei, again).await.expect("track"),
        Some(first.clone()),
        "the first upload stays"
    );
    assert_eq!(
        store.blob(&rei, &first.cid).await.expect("blob"),
        Some(first.clone())
    );
    assert_eq!(
        store.blob(&asuka, &first.cid).await.expect("blob"),
        None,
        "uploads are per actor"
    );
    assert!(
        store
            .records_referencing_blob(&rei, &first.cid)
            .await
            .expect("refs")
            .is_empty()
    );
    let all = BlobListQuery {
        limit: 10,
        cursor: None,
        since: None,
        filter: ReadFilter::All,
    };
    assert!(
        store.list_blobs(&rei, &all).await.expect("list").is_empty(),
        "uploads no record references are not listed"
    );
    assert!(matches!(
        store
            .track_blob(&did("did:plc:conformancenobody"), first)
            .await,
        Err(RepoStoreError::ActorNotFound(_))
    ));
}

/// Associations are written by the commit that writes the record, replaced by updates,
/// removed by deletes; a blob whose last reference went away is released.
pub async fn blob_associations_follow_commits(store: Subject) {
    let store = store.as_ref();
    let mut b = Builder::new("did:plc:conformanceblobs");
    store.create_actor(&b.did).await.expect("create");
    let (x, y) = (upload(b"blob x", 1), upload(b"blob y", 2));
    store.track_blob(&b.did, x.clone()).await.expect("track");
    store.track_blob(&b.did, y.clone()).await.expect("track");
    let keys = rkeys(3);
    let a = "did:web:s/a".to_owned();
    b.write_blobs(
        store,
        &[
            (keys[0].clone(), Some(vec![a.clone()]), vec![x.cid]),
            (keys[1].clone(), Some(vec![a.clone()]), vec![x.cid]),
        ],
    )
    .await;
    let permanent_x = StoredBlob {
        temp_key: None,
        ..x.clone()
    };
    assert_eq!(
        store.blob(&b.did, &x.cid).await.expect("blob"),
        Some(permanent_x.clone()),
        "the commit made x permanent"
    );
    assert_eq!(
        store.blob(&b.did, &y.cid).await.expect("blob"),
        Some(y.clone()),
        "y is still an upload"
    );
    assert_eq!(
        store
            .records_referencing_blob(&b.did, &x.cid)
            .await
            .expect("refs"),
        [reference(&keys[0], &a), reference(&keys[1], &a)]
    );
    // A new upload of a permanent blob leaves it permanent.
    assert_eq!(
        store
            .track_blob(&b.did, upload(b"blob x", 5))
            .await
            .expect("track"),
        Some(permanent_x.clone())
    );

    // Update: keys[0] now references y only, with a new boundary.
    let c = "did:web:s/c".to_owned();
    b.write_blobs(
        store,
        &[(keys[0].clone(), Some(vec![c.clone()]), vec![y.cid])],
    )
    .await;
    assert_eq!(
        store
            .records_referencing_blob(&b.did, &x.cid)
            .await
            .expect("refs"),
        [reference(&keys[1], &a)]
    );
    assert_eq!(
        store
            .records_referencing_blob(&b.did, &y.cid)
            .await
            .expect("refs"),
        [reference(&keys[0], &c)]
    );
    assert!(
        store
            .release_blobs(&b.did, 0)
            .await
            .expect("release")
            .is_empty(),
        "every permanent blob is still referenced"
    );

    // Delete the last record referencing x: x is released, y is not.
    b.create(store, &[(keys[1].clone(), None)]).await;
    assert!(
        store
            .records_referencing_blob(&b.did, &x.cid)
            .await
            .expect("refs")
            .is_empty()
    );
    assert_eq!(store.blob(&b.did, &x.cid).await.expect("blob"), None);
    assert_eq!(
        store.release_blobs(&b.did, 0).await.expect("release"),
        [ReleasedBlob {
            cid: x.cid,
            temp_key: None
        }]
    );
    assert!(
        store
            .release_blobs(&b.did, 0)
            .await
            .expect("release")
            .is_empty(),
        "released once"
    );

    // An update that drops every blob, and a commit referencing a released blob (re-uploaded)
    // brings it back.
    b.write_blobs(store, &[(keys[0].clone(), Some(vec![c.clone()]), vec![])])
        .await;
    assert!(
        store
            .records_referencing_blob(&b.did, &y.cid)
            .await
            .expect("refs")
            .is_empty()
    );
    assert_eq!(store.blob(&b.did, &y.cid).await.expect("blob"), None);
    let y2 = upload(b"blob y", 9);
    assert_eq!(
        store.track_blob(&b.did, y2.clone()).await.expect("track"),
        None,
        "a released blob is replaced by a new upload"
    );
    assert_eq!(
        store.blob(&b.did, &y.cid).await.expect("blob"),
        Some(y2.clone())
    );
    assert!(
        store
            .release_blobs(&b.did, 0)
            .await
            .expect("release")
            .is_empty(),
        "the new upload is live"
    );
    b.write_blobs(
        store,
        &[(keys[2].clone(), Some(vec![a.clone()]), vec![y.cid])],
    )
    .await;
    assert_eq!(
        store
            .records_referencing_blob(&b.did, &y.cid)
            .await
            .expect("refs"),
        [reference(&keys[2], &a)]
    );
}

/// A commit referencing a blob the actor never uploaded (or a released one) is refused whole;
/// a failing commit leaves uploads untouched.
pub async fn a_commit_with_an_unknown_blob_changes_nothing(store: Subject) {
    let store = store.as_ref();
    let mut b = Builder::new("did:plc:conformanceblobatomic");
    store.create_actor(&b.did).await.expect("create");
    let keys = rkeys(4);
    let a = "did:web:s/a".to_owned();
    b.create(store, &[(keys[0].clone(), Some(vec![a.clone()]))])
        .await;
    let head = store.head(&b.did).await.expect("head");
    let known = upload(b"known", 1);
    store
        .track_blob(&b.did, known.clone())
        .await
        .expect("track");
    let unknown = stratos_domain::cid::raw(b"never uploaded");
    let (_, unit) = b.commit_blobs(&[
        (keys[1].clone(), Some(vec![a.clone()]), vec![known.cid]),
        (keys[2].clone(), Some(vec![a.clone()]), vec![unknown]),
    ]);
    let err = store
        .apply_commit(&b.did, unit)
        .await
        .expect_err("unknown blob");
    assert!(
        matches!(&err, RepoStoreError::BlobMissing(m) if m.contains(&unknown.to_string())),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert_eq!(store.head(&b.did).await.expect("head"), head);
    assert_eq!(store.latest_seq(&b.did).await.expect("seq"), 1, "no event");
    for k in &keys[1..3] {
        assert_eq!(
            store
                .get_record(&b.did, &posts(), &rk(k))
                .await
                .expect("get"),
            None
        );
    }
    assert_eq!(
        store.blob(&b.did, &known.cid).await.expect("blob"),
        Some(known.clone()),
        "the known blob is still an upload"
    );
    assert!(
        store
            .records_referencing_blob(&b.did, &known.cid)
            .await
            .expect("refs")
            .is_empty()
    );
    // A unit failing for another reason also leaves the upload alone.
    let (_, mut unit) =
        b.commit_blobs(&[(keys[1].clone(), Some(vec![a.clone()]), vec![known.cid])]);
    unit.index.push(IndexChange::Delete {
        collection: posts(),
        rkey: rk(&keys[3]),
    });
    assert!(store.apply_commit(&b.did, unit).await.is_err());
    assert_eq!(
        store.blob(&b.did, &known.cid).await.expect("blob"),
        Some(known.clone())
    );
    // A released blob cannot be referenced until it is uploaded again.
    b.write_blobs(
        store,
        &[(keys[1].clone(), Some(vec![a.clone()]), vec![known.cid])],
    )
    .await;
    b.create(store, &[(keys[1].clone(), None)]).await;
    let (_, unit) = b.commit_blobs(&[(keys[2].clone(), Some(vec![a.clone()]), vec![known.cid])]);
    assert!(matches!(
        store.apply_commit(&b.did, unit).await,
        Err(RepoStoreError::BlobMissing(_))
    ));
}

/// Listing: distinct CIDs in ascending string order, full pages through the filter, the cursor
/// and `since`.
pub async fn blob_listing_pages_filters_and_since(store: Subject) {
    let store = store.as_ref();
    let mut b = Builder::new("did:plc:conformancebloblist");
    store.create_actor(&b.did).await.expect("create");
    let keys = rkeys(12);
    let (x, y) = ("did:web:s/x".to_owned(), "did:web:s/y".to_owned());
    let blobs: Vec<StoredBlob> = (0..12u8).map(|i| upload(&[i; 3], 1)).collect();
    for blob in &blobs {
        store.track_blob(&b.did, blob.clone()).await.expect("track");
    }
    // First commit: records 0..6, record i references blob i, even ones in x, odd in y, and
    // record 0 also references blob 1 (so blob 1 is visible to x viewers too).
    let writes: Vec<BlobWrite> = (0..6)
        .map(|i| {
            let bnd = if i % 2 == 0 { x.clone() } else { y.clone() };
            let mut cids = vec![blobs[i].cid];
            if i == 0 {
                cids.push(blobs[1].cid);
            }
            (keys[i].clone(), Some(vec![bnd]), cids)
        })
        .collect();
    b.write_blobs(store, &writes).await;
    let since = store.head(&b.did).await.expect("head").expect("a head").rev;
    // Second commit: records 6..10 reference blobs 6..10, all in y.
    let writes: Vec<BlobWrite> = (6..10)
        .map(|i| (keys[i].clone(), Some(vec![y.clone()]), vec![blobs[i].cid]))
        .collect();
    b.write_blobs(store, &writes).await;
    let sorted = |idx: &[usize]| {
        let mut v: Vec<Cid> = idx.iter().map(|i| blobs[*i].cid).collect();
        v.sort_by_key(ToString::to_string);
        v
    };
    let query = |cursor: Option<String>, since: Option<Tid>, filter: ReadFilter| BlobListQuery {
        limit: 3,
        cursor,
        since,
        filter,
    };
    let d = b.did.clone();
    let d = &d;
    let walk = |since: Option<Tid>, filter: ReadFilter| async move {
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = store
                .list_blobs(d, &query(cursor, since.clone(), filter.clone()))
                .await
                .expect("list");
            assert!(page.len() <= 3);
            seen.extend(page.iter().copied());
            if page.len() < 3 {
                return seen;
            }
            cursor = page.last().map(ToString::to_string);
        }
    };
    assert_eq!(
        walk(None, ReadFilter::All).await,
        sorted(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
        "every referenced blob once, never the uploads 10 and 11"
    );
    let only_x = ReadFilter::AnyOf(vec![x.clone()]);
    assert_eq!(walk(None, only_x.clone()).await, sorted(&[0, 1, 2, 4]));
    let first = store
        .list_blobs(&b.did, &query(None, None, only_x))
        .await
        .expect("list");
    assert_eq!(first.len(), 3, "a filtered page is full");
    assert_eq!(
        walk(Some(since.clone()), ReadFilter::All).await,
        sorted(&[6, 7, 8, 9])
    );
    assert!(
        walk(Some(since), ReadFilter::AnyOf(vec![x.clone()]))
            .await
            .is_empty()
    );
    assert!(walk(None, ReadFilter::Nothing).await.is_empty());
    assert!(
        walk(None, ReadFilter::AnyOf(vec!["did:web:s/z".into()]))
            .await
            .is_empty()
    );
    // Deleting a record hides its blobs from the listing.
    b.create(store, &[(keys[2].clone(), None)]).await;
    assert_eq!(
        walk(None, ReadFilter::AnyOf(vec![x])).await,
        sorted(&[0, 1, 4])
    );
}

/// Uploads no commit referenced are released once older than the cut-off; permanent blobs
/// are not.
pub async fn expired_uploads_are_released(store: Subject) {
    let store = store.as_ref();
    let mut b = Builder::new("did:plc:conformanceblobexpiry");
    store.create_actor(&b.did).await.expect("create");
    let (old, young, used) = (
        upload(b"old", 100),
        upload(b"young", 300),
        upload(b"used", 50),
    );
    for u in [&old, &young, &used] {
        store.track_blob(&b.did, u.clone()).await.expect("track");
    }
    let keys = rkeys(1);
    b.write_blobs(
        store,
        &[(
            keys[0].clone(),
            Some(vec!["did:web:s/a".into()]),
            vec![used.cid],
        )],
    )
    .await;
    assert!(
        store
            .release_blobs(&b.did, 100)
            .await
            .expect("release")
            .is_empty(),
        "nothing is older than the cut-off"
    );
    assert_eq!(
        store.release_blobs(&b.did, 200).await.expect("release"),
        [ReleasedBlob {
            cid: old.cid,
            temp_key: old.temp_key.clone()
        }]
    );
    assert_eq!(store.blob(&b.did, &old.cid).await.expect("blob"), None);
    assert_eq!(
        store.blob(&b.did, &young.cid).await.expect("blob"),
        Some(young)
    );
    assert!(
        store
            .blob(&b.did, &used.cid)
            .await
            .expect("blob")
            .is_some_and(|u| u.temp_key.is_none())
    );
    assert!(
        store
            .release_blobs(&b.did, i64::MAX)
            .await
            .expect("release")
            .iter()
            .all(|r| r.cid != used.cid),
        "a permanent, referenced blob is never released"
    );
}

/// Destroying an actor forgets its uploads, blobs and links.
pub async fn destroy_forgets_blobs(store: Subject) {
    let store = store.as_ref();
    let mut b = Builder::new("did:plc:conformanceblobdestroy");
    store.create_actor(&b.did).await.expect("create");
    let blob = upload(b"gone with the actor", 1);
    store.track_blob(&b.did, blob.clone()).await.expect("track");
    let keys = rkeys(1);
    b.write_blobs(
        store,
        &[(
            keys[0].clone(),
            Some(vec!["did:web:s/a".into()]),
            vec![blob.cid],
        )],
    )
    .await;
    store.destroy_actor(&b.did).await.expect("destroy");
    store.create_actor(&b.did).await.expect("re-create");
    assert_eq!(store.blob(&b.did, &blob.cid).await.expect("blob"), None);
    assert!(
        store
            .records_referencing_blob(&b.did, &blob.cid)
            .await
            .expect("refs")
            .is_empty()
    );
    let all = BlobListQuery {
        limit: 10,
        cursor: None,
        since: None,
        filter: ReadFilter::All,
    };
    assert!(
        store
            .list_blobs(&b.did, &all)
            .await
            .expect("list")
            .is_empty()
    );
    assert!(
        store
            .release_blobs(&b.did, i64::MAX)
            .await
            .expect("release")
            .is_empty()
    );
}

/// A unit of creates (the shape adapters may write in one statement) on a stale head: a
/// retryable conflict, and nothing of it is written, the removal of a stored block included.
/// The record use cases write the first commit (enrollments and keys in memory).
pub async fn creates_on_a_stale_head_write_nothing(repos: Subject) {
    use stratos_domain::cid::dag_cbor;

    use crate::builders::{RecordsBuilder, ServiceFixtures, post};
    use crate::memory::{MemoryEnrollmentStore, MemoryKeyStore};
    let enrollments = Arc::new(MemoryEnrollmentStore::new());
    let keys = Arc::new(MemoryKeyStore::new());
    let records = RecordsBuilder::new(repos.clone(), enrollments.clone(), keys.clone())
        .boundaries(&["swordsmith"])
        .build();
    let rei = ServiceFixtures::default()
        .enroll_into(
            &records,
            enrollments.as_ref(),
            keys.as_ref(),
            "did:plc:conformancestale",
            &["swordsmith"],
        )
        .await;
    records
        .create_record(&rei, &rei, &posts(), None, post("first", &["swordsmith"]))
        .await
        .unwrap();
    let head = repos.head(&rei).await.unwrap().unwrap();
    let blocks = repos.all_blocks(&rei).await.unwrap();
    let seq = repos.latest_seq(&rei).await.unwrap();

    let record = b"stale record".to_vec();
    let commit = b"stale commit".to_vec();
    let (record_cid, commit_cid) = (dag_cbor(&record), dag_cbor(&commit));
    let mut new_blocks = BlockMap::new();
    new_blocks.insert(record_cid, record);
    new_blocks.insert(commit_cid, commit);
    let rev = stratos_domain::tid::next_after(&head.rev);
    let boundaries = bounds(&["did:web:nerv.tokyo.jp/swordsmith".to_owned()]);
    let unit = CommitUnit {
        prev: Some(dag_cbor(b"not the head")),
        head: RepoHead {
            commit: commit_cid,
            rev: rev.clone(),
            data: record_cid,
        },
        new_blocks,
        removed_blocks: vec![head.data],
        index: vec![IndexChange::Put {
            collection: posts(),
            rkey: rk("3stale"),
            cid: record_cid,
            boundaries: boundaries.clone(),
            blobs: Vec::new(),
        }],
        event: Some(SeqEvent {
            seq: 0,
            rev: rev.clone(),
            commit: commit_cid,
            time: time(),
            ops: vec![EventOp {
                action: Action::Create,
                collection: posts(),
                rkey: rk("3stale"),
                cid: Some(record_cid),
                prev: None,
                boundaries,
            }],
            proof: None,
        }),
        outbox: Vec::new(),
    };
    let err = repos.apply_commit(&rei, unit).await.unwrap_err();
    assert!(err.is_retryable(), "a stale head is retryable: {err:?}");
    assert_eq!(repos.head(&rei).await.unwrap(), Some(head));
    assert_eq!(repos.all_blocks(&rei).await.unwrap(), blocks);
    assert_eq!(repos.latest_seq(&rei).await.unwrap(), seq);
    assert_eq!(
        repos
            .get_record(&rei, &posts(), &rk("3stale"))
            .await
            .unwrap(),
        None
    );
}
