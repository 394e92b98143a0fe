#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! The runtime-free parts of the sync stream over the in-memory fakes: the commit path hands
//! committed events (with record bytes) to the sink in order and nothing for failed writes,
//! enrollment changes reach the sink once each, replays carry records, the cursor rules and the
//! `domain` filter.

use std::sync::{Arc, Mutex};

use stratos_domain::boundary::Boundary;
use stratos_domain::crypto::{KeyAlgorithm, Keypair};
use stratos_domain::enrollment::{EnrollmentMode, EnrollmentPolicy};
use stratos_domain::lexicon::Catalog;
use stratos_domain::repo::Action;
use stratos_domain::write::WritePolicy;
use stratos_domain::{Cid, data};
use stratos_ports::enrollment_store::{EnrollmentAction, EnrollmentEvent, EnrollmentStore};
use stratos_ports::repo_store::RepoStore;
use stratos_ports::usecases::enrollment::{BoundaryChange, EnrollmentDeps, Enrollments};
use stratos_ports::usecases::records::{RecordDeps, Records, WriteOp};
use stratos_ports::usecases::stream::{
    self, CommitEvent, CommitOp, CursorError, EventSink, FilteredOp, Start,
};
use stratos_testkit::builders::{SERVICE_DID, TestService, boundary, did, post};
use stratos_testkit::memory::{MemoryBlobStore, MemoryIdentity};

const POSTS: &str = "zone.stratos.feed.post";

fn posts() -> stratos_domain::syntax::Nsid {
    stratos_testkit::builders::nsid(POSTS)
}

#[derive(Debug, Default)]
struct Recorder {
    commits: Mutex<Vec<CommitEvent>>,
    enrollments: Mutex<Vec<EnrollmentEvent>>,
}

impl EventSink for Recorder {
    fn commit(&self, event: CommitEvent) {
        self.commits.lock().unwrap().push(event);
    }
    fn enrollment(&self, event: EnrollmentEvent) {
        let mut all = self.enrollments.lock().unwrap();
        if all.last().is_none_or(|l| event.seq > l.seq) {
            all.push(event);
        }
    }
    fn enrollment_cursor(&self) -> u64 {
        self.enrollments.lock().unwrap().last().map_or(0, |e| e.seq)
    }
}

fn records_with_sink(svc: &TestService, sink: Arc<Recorder>) -> Arc<Records> {
    let service = did(SERVICE_DID);
    Arc::new(
        Records::new(RecordDeps {
            repos: svc.repos.clone(),
            enrollments: svc.enrollments.clone(),
            keys: svc.keys.clone(),
            clock: svc.clock.clone(),
            catalog: Arc::new(Catalog::stratos().unwrap()),
            policy: WritePolicy {
                service_did: service.clone(),
                allowed: vec![
                    Boundary::qualify(&service, "general").unwrap(),
                    Boundary::qualify(&service, "secret").unwrap(),
                ],
            },
            service_ref: format!("{SERVICE_DID}#atproto_pns"),
            rate_limit: stratos_domain::rate_limit::DEFAULT_RATE_LIMIT,
            blobs: svc.blobs.clone(),
        })
        .with_event_sink(sink),
    )
}

#[tokio::test]
async fn committed_events_reach_the_sink_in_order_with_their_records() {
    let svc = TestService::new(&["general", "secret"]);
    let sink = Arc::new(Recorder::default());
    let records = records_with_sink(&svc, sink.clone());
    let rei = svc.enroll("did:plc:rei", &["general", "secret"]).await;
    assert!(
        sink.commits.lock().unwrap().is_empty(),
        "the empty first commit is not an event"
    );

    let a = records
        .create_record(
            &rei,
            &rei,
            &posts(),
            Some(&stratos_testkit::builders::rkey("3kaaaaaaaaaa2")),
            post("a", &["general"]),
        )
        .await
        .unwrap();
    let b = records
        .apply_writes(
            &rei,
            &rei,
            vec![
                WriteOp::Create {
                    collection: posts(),
                    rkey: Some(stratos_testkit::builders::rkey("3kaaaaaaaaab2")),
                    value: post("b", &["secret"]),
                },
                WriteOp::Update {
                    collection: posts(),
                    rkey: stratos_testkit::builders::rkey("3kaaaaaaaaaa2"),
                    value: post("a2", &["secret"]),
                },
            ],
        )
        .await
        .unwrap();
    // A refused write publishes nothing.
    let refused = records
        .create_record(&rei, &rei, &posts(), None, post("x", &["nope"]))
        .await;
    assert!(refused.is_err());
    let c = records
        .delete_record(
            &rei,
            &rei,
            &posts(),
            &stratos_testkit::builders::rkey("3kaaaaaaaaab2"),
        )
        .await
        .unwrap()
        .unwrap();

    let got = sink.commits.lock().unwrap().clone();
    assert_eq!(
        got.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [a.seq, b.seq, c.seq]
    );
    assert!(a.seq < b.seq && b.seq < c.seq);
    assert_eq!(got[1].ops.len(), 2, "one event per commit, not per op");
    assert_eq!(got[1].commit, b.commit);
    assert_eq!(got[1].rev, b.rev);
    let created = &got[0].ops[0];
    assert_eq!(
        format!("{}/{}", created.collection, created.rkey),
        format!("{POSTS}/3kaaaaaaaaaa2"),
        "no leading slash"
    );
    assert_eq!(created.boundaries, [boundary("general")]);
    let bytes = created
        .record
        .as_ref()
        .expect("record bytes travel with the event");
    let value = data::ipld_to_json(&data::decode(bytes).unwrap()).unwrap();
    assert_eq!(value["text"], "a");
    assert_eq!(
        Some(data::record_cid(&data::decode(bytes).unwrap()).unwrap().0),
        created.cid
    );
    let deleted = &got[2].ops[0];
    assert_eq!(
        (deleted.action.as_str(), deleted.cid, &deleted.record),
        ("delete", None, &None)
    );

    // The same events replayed from the log carry the records too, even the replaced one.
    let replay = stream::actor_events_after(svc.repos.as_ref() as &dyn RepoStore, &rei, 0, 100)
        .await
        .unwrap();
    assert_eq!(replay, got, "replay equals what was published live");
    let tail = stream::actor_events_after(svc.repos.as_ref(), &rei, a.seq, 1)
        .await
        .unwrap();
    assert_eq!(tail.iter().map(|e| e.seq).collect::<Vec<_>>(), [b.seq]);
}

#[tokio::test]
async fn enrollment_changes_reach_the_sink_once_each() {
    let svc = TestService::new(&["general", "secret"]);
    let sink = Arc::new(Recorder::default());
    let offered: Vec<Boundary> = ["general", "secret"]
        .iter()
        .map(|b| Boundary::qualify(&did(SERVICE_DID), b).unwrap())
        .collect();
    let enrollments = Enrollments::new(EnrollmentDeps {
        repos: svc.repos.clone(),
        enrollments: svc.enrollments.clone(),
        keys: svc.keys.clone(),
        outbox: svc.outbox.clone(),
        blobs: Arc::new(MemoryBlobStore::new()),
        identity: Arc::new(MemoryIdentity::new()),
        allow_list: None,
        clock: svc.clock.clone(),
        policy: EnrollmentPolicy::new(EnrollmentMode::Open, offered.clone()),
        service_did: did(SERVICE_DID),
        service_endpoint: "https://nerv.tokyo.jp".into(),
        service_key: Arc::new(Keypair::generate(KeyAlgorithm::K256)),
        records: svc.records.clone(),
    })
    .with_event_sink(sink.clone());
    let rei = did("did:plc:rei");
    enrollments
        .enroll_direct(&rei, &offered[..1])
        .await
        .unwrap();
    enrollments.enroll(&rei).await.unwrap(); // already enrolled: no change, no event
    enrollments
        .change_boundaries(&rei, BoundaryChange::Add(&offered[1]))
        .await
        .unwrap();
    enrollments
        .enroll_direct(&rei, &offered[1..])
        .await
        .unwrap();
    enrollments.unenroll(&rei).await.unwrap();
    let got: Vec<(u64, EnrollmentAction, Vec<String>)> = sink
        .enrollments
        .lock()
        .unwrap()
        .iter()
        .map(|e| {
            let boundaries = e.boundaries.iter().map(ToString::to_string).collect();
            (e.seq, e.action, boundaries)
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (1, EnrollmentAction::Enroll, vec![boundary("general")]),
            (
                2,
                EnrollmentAction::Update,
                vec![boundary("general"), boundary("secret")]
            ),
            (3, EnrollmentAction::Update, vec![boundary("secret")]),
            (4, EnrollmentAction::Unenroll, vec![]),
        ]
    );
    assert!(stream::ends_actor_stream(
        &sink.enrollments.lock().unwrap()[3]
    ));
    // Pumping again finds nothing new.
    assert_eq!(
        stream::pump_enrollments(
            svc.enrollments.as_ref() as &dyn EnrollmentStore,
            sink.as_ref()
        )
        .await
        .unwrap(),
        0
    );
}

#[test]
fn cursor_rules() {
    // No cursor or 0: from the start, never outdated (the reference flagged cursor 0).
    assert_eq!(
        stream::start(None, Some(1), 9),
        Ok(Start {
            after: 0,
            outdated: false
        })
    );
    assert_eq!(
        stream::start(Some(0), Some(5), 9),
        Ok(Start {
            after: 0,
            outdated: false
        })
    );
    assert_eq!(
        stream::start(None, None, 0),
        Ok(Start {
            after: 0,
            outdated: false
        })
    );
    // Inside the retained log.
    assert_eq!(
        stream::start(Some(4), Some(5), 9),
        Ok(Start {
            after: 4,
            outdated: false
        })
    );
    assert_eq!(
        stream::start(Some(9), Some(1), 9),
        Ok(Start {
            after: 9,
            outdated: false
        })
    );
    // Beyond retention: the events right after the cursor are gone.
    assert_eq!(
        stream::start(Some(3), Some(5), 9),
        Ok(Start {
            after: 3,
            outdated: true
        })
    );
    // In the future.
    assert_eq!(
        stream::start(Some(10), Some(1), 9),
        Err(CursorError::FutureCursor {
            cursor: 10,
            latest: 9
        })
    );
    assert!(stream::start(Some(1), None, 0).is_err());
}

fn some_cid() -> Cid {
    data::record_cid(&data::json_to_ipld(&post("x", &["general"])).unwrap())
        .unwrap()
        .0
}

fn op(action: &str, boundaries: &[&str]) -> CommitOp {
    CommitOp {
        action: Action::parse(action).unwrap(),
        collection: posts(),
        rkey: stratos_testkit::builders::rkey("3kaaaaaaaaaa2"),
        cid: (action != "delete").then(some_cid),
        prev: (action != "create").then(some_cid),
        boundaries: boundaries
            .iter()
            .map(|b| stratos_testkit::builders::qualified(&boundary(b)))
            .collect(),
        record: None,
    }
}

#[test]
fn domain_filter_keeps_the_boundary_and_every_delete() {
    let ops = vec![
        op("create", &["general"]),
        op("create", &["secret"]),
        op("update", &["general", "secret"]),
        op("update", &["secret"]),
        op("delete", &[]),
    ];
    let general = boundary("general");
    let kept = stream::filter_ops(&ops, Some(&general));
    assert_eq!(
        kept,
        vec![
            FilteredOp::Whole(&ops[0]),
            FilteredOp::Whole(&ops[2]),
            FilteredOp::AsDelete(&ops[3]),
            FilteredOp::Whole(&ops[4]),
        ]
    );
    assert_eq!(stream::filter_ops(&ops, None).len(), 5);
    // An event with nothing in the boundary is not sent at all.
    let event = CommitEvent {
        did: did("did:plc:rei"),
        seq: 7,
        rev: "3kaaaaaaaaaa2".parse().unwrap(),
        commit: some_cid(),
        time: "2026-11-25T09:00:00.000Z".parse().unwrap(),
        ops: vec![op("create", &["secret"])],
        proof: None,
    };
    assert_eq!(stream::commit_frame(&event, Some(&general)).unwrap(), None);
    assert!(stream::commit_frame(&event, None).unwrap().is_some());
}

/// Frame size of a one-record create on a 10k-record repository (docs/performance.md): the
/// self-verifying `#commit` frames of 200 consecutive creates (record keys are TIDs, as
/// `createRecord` makes them, from a fixed clock so every run builds the same trees), on
/// average and at most, against the same frames without their proofs.
#[test]
fn one_record_create_frames_on_a_10k_repo_stay_small() {
    use stratos_domain::blocks::BlockMap;
    use stratos_domain::repo::{self, RecordWrite};
    use stratos_domain::syntax::{RecordKey, Tid};
    use stratos_domain::tid::TidGenerator;
    use stratos_ports::repo_store::EventProof;

    let did = did("did:plc:rei");
    let key = Keypair::generate(KeyAlgorithm::P256);
    let mut tids = TidGenerator::with_clock_id(2);
    let tid = |tids: &mut TidGenerator| -> Tid { tids.next_at(1_765_000_000_000_000) };
    let record = |i: u64| {
        data::encode(&data::json_to_ipld(&post(&format!("post {i}"), &["general"])).unwrap())
            .unwrap()
    };
    let write = |tids: &mut TidGenerator, i: u64| RecordWrite::Create {
        collection: posts(),
        rkey: RecordKey::parse(tid(tids).as_str()).unwrap(),
        record: record(i),
    };
    let mut store = BlockMap::new();
    let mut head = None;
    let commit = |store: &mut BlockMap, head: &mut Option<_>, writes: &[RecordWrite], rev| {
        let out = repo::apply_writes(store, &did, head.as_ref(), writes, rev, &key).unwrap();
        for cid in &out.removed_nodes {
            store.remove(cid);
        }
        store.extend(out.new_blocks.clone());
        let prev = head.replace(out.head.clone());
        (out, prev)
    };
    for chunk in 0..100u64 {
        let batch: Vec<_> = (0..100)
            .map(|i| write(&mut tids, chunk * 100 + i))
            .collect();
        let rev = tid(&mut tids);
        commit(&mut store, &mut head, &batch, rev);
    }
    let (mut total, mut largest, mut bare) = (0usize, 0usize, 0usize);
    let n = 200u64;
    for i in 0..n {
        let w = write(&mut tids, 10_000 + i);
        let rev = tid(&mut tids);
        let (out, prev) = commit(&mut store, &mut head, &[w], rev);
        let op = &out.ops[0];
        let mut event = CommitEvent {
            did: did.clone(),
            seq: 10_001 + i,
            rev: out.head.rev.clone(),
            commit: out.head.commit,
            time: "2026-12-07T09:00:00.000Z".parse().unwrap(),
            ops: vec![CommitOp {
                action: Action::Create,
                collection: posts(),
                rkey: RecordKey::parse(op.path.rsplit('/').next().unwrap()).unwrap(),
                cid: op.cid,
                prev: None,
                boundaries: Vec::new(),
                record: op
                    .cid
                    .and_then(|c| out.new_blocks.get(&c))
                    .map(<[u8]>::to_vec),
            }],
            proof: Some(EventProof {
                since: prev.as_ref().map(|h| h.rev.clone()),
                prev_data: prev.as_ref().map(|h| h.data),
                blocks: out.relevant_car.clone().unwrap(),
            }),
        };
        let with = stream::commit_frame(&event, None).unwrap().unwrap().len();
        event.proof = None;
        let without = stream::commit_frame(&event, None).unwrap().unwrap().len();
        assert!(with > without);
        total += with;
        bare += without;
        largest = largest.max(with);
    }
    let average = total / n as usize;
    println!(
        "#commit frames, one create on 10k records: average {average} bytes, largest {largest} \
         ({} on average without the proof)",
        bare / n as usize
    );
    assert!(
        average < 8192 && largest < 16384,
        "{average} / {largest} bytes"
    );
}
