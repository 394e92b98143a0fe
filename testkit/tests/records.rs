#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! Record use cases over the in-memory fakes: the reference's boundary scenario (Rei, Sakura,
//! Kaoruko), atomic batches, outbox stubs, full filtered pages and concurrent writers.

use std::sync::Arc;

use serde_json::json;
use stratos_domain::Error as DomainError;
use stratos_domain::data;
use stratos_ports::outbox::OutboxAction;
use stratos_ports::repo_store::RepoStore;
use stratos_ports::usecases::UseCaseError;
use stratos_ports::usecases::records::WriteOp;
use stratos_testkit::builders::{TestService, did, post};

const POSTS: &str = "zone.stratos.feed.post";

fn posts() -> stratos_domain::syntax::Nsid {
    stratos_testkit::builders::nsid(POSTS)
}

async fn service() -> TestService {
    let svc = TestService::new(&["swordsmith", "aekea", "ops"]);
    svc.enroll("did:plc:rei", &["swordsmith"]).await;
    svc.enroll("did:plc:sakura", &["swordsmith"]).await;
    svc.enroll("did:plc:kaoruko", &["aekea"]).await;
    svc
}

fn rkey_of(uri: &stratos_domain::syntax::AtUri) -> stratos_domain::syntax::RecordKey {
    uri.rkey().unwrap().clone()
}

#[tokio::test]
async fn boundary_scenario_owner_member_outsider_anonymous() {
    let svc = service().await;
    let (rei, sakura, kaoruko) = (
        did("did:plc:rei"),
        did("did:plc:sakura"),
        did("did:plc:kaoruko"),
    );
    let out = svc
        .records
        .create_record(
            &rei,
            &rei,
            &posts(),
            None,
            post("forge day", &["swordsmith"]),
        )
        .await
        .unwrap();
    let created = &out.results[0];
    let rkey = rkey_of(&created.uri);
    // D1: the CID is the CID of the record's own DAG-CBOR bytes.
    let stored = svc
        .repos
        .get_record(&rei, &posts(), &rkey)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        created.cid,
        Some(stratos_domain::cid::dag_cbor(&stored.bytes))
    );

    let read = |viewer: Option<&stratos_domain::syntax::Did>| {
        let records = &svc.records;
        let rei = rei.clone();
        let rkey = rkey.clone();
        let viewer = viewer.cloned();
        async move {
            records
                .get_record(viewer.as_ref(), &rei, &posts(), &rkey, None)
                .await
                .unwrap()
        }
    };
    let own = read(Some(&rei)).await.expect("owner reads");
    assert_eq!(own.value["text"], "forge day");
    assert_eq!(
        own.value["boundary"]["values"][0]["value"],
        "did:web:nerv.tokyo.jp/swordsmith"
    );
    assert!(read(Some(&sakura)).await.is_some(), "member reads");
    assert!(
        read(Some(&kaoruko)).await.is_none(),
        "outsider sees nothing"
    );
    assert!(read(None).await.is_none(), "anonymous sees nothing");

    for (viewer, expected) in [
        (Some(&sakura), 1),
        (Some(&kaoruko), 0),
        (None, 0),
        (Some(&rei), 1),
    ] {
        let page = svc
            .records
            .list_records(viewer, &rei, &posts(), 50, None, false)
            .await
            .unwrap();
        assert_eq!(page.records.len(), expected, "viewer {viewer:?}");
    }

    // A CID mismatch reads as not found.
    let wrong = stratos_domain::cid::dag_cbor(b"other");
    assert!(
        svc.records
            .get_record(Some(&rei), &rei, &posts(), &rkey, Some(&wrong))
            .await
            .unwrap()
            .is_none()
    );

    // Delete, then it is gone for everyone; deleting again is a no-op.
    assert!(
        svc.records
            .delete_record(&rei, &rei, &posts(), &rkey)
            .await
            .unwrap()
            .is_some()
    );
    assert!(read(Some(&rei)).await.is_none());
    assert!(
        svc.records
            .delete_record(&rei, &rei, &posts(), &rkey)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn writes_are_checked_before_anything_is_stored() {
    let svc = service().await;
    let (rei, kaoruko) = (did("did:plc:rei"), did("did:plc:kaoruko"));
    let err = svc
        .records
        .create_record(&rei, &kaoruko, &posts(), None, post("x", &["aekea"]))
        .await
        .unwrap_err();
    assert!(matches!(err, UseCaseError::Forbidden(_)));
    let err = svc
        .records
        .create_record(&rei, &rei, &posts(), None, post("x", &["aekea"]))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        UseCaseError::Rule(DomainError::BoundaryNotHeld { .. })
    ));
    let stranger = did("did:plc:stranger");
    let err = svc
        .records
        .create_record(&stranger, &stranger, &posts(), None, post("x", &["ops"]))
        .await
        .unwrap_err();
    assert!(matches!(err, UseCaseError::NotEnrolled(_)));
    let err = svc
        .records
        .create_record(
            &rei,
            &rei,
            &stratos_testkit::builders::nsid("app.bsky.feed.post"),
            None,
            json!({"text": "x", "createdAt": "2026-11-25T09:00:00Z"}),
        )
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        UseCaseError::Rule(DomainError::CollectionNotWritable { .. })
    ));
    let err = svc
        .records
        .create_record(
            &rei,
            &rei,
            &posts(),
            None,
            json!({"text": 1.5, "createdAt": "2026-11-25T09:00:00Z"}),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, UseCaseError::Rule(_)));
    let err = svc
        .records
        .create_record(
            &rei,
            &rei,
            &posts(),
            Some(&stratos_testkit::builders::rkey("self")),
            post("x", &["swordsmith"]),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, UseCaseError::Rule(DomainError::Validation { .. })),
        "post keys are TIDs: {err:?}"
    );
    assert_eq!(
        svc.repos.latest_seq(&rei).await.unwrap(),
        0,
        "nothing was committed"
    );
    assert!(svc.outbox.items().is_empty());
}

#[tokio::test]
async fn a_batch_is_all_or_nothing() {
    let svc = service().await;
    let rei = did("did:plc:rei");
    let head = svc.repos.head(&rei).await.unwrap();
    let ops = vec![
        WriteOp::Create {
            collection: posts(),
            rkey: None,
            value: post("fine", &["swordsmith"]),
        },
        WriteOp::Create {
            collection: posts(),
            rkey: None,
            value: post("not mine", &["aekea"]),
        },
    ];
    assert!(svc.records.apply_writes(&rei, &rei, ops).await.is_err());
    assert_eq!(svc.repos.head(&rei).await.unwrap(), head);
    let page = svc
        .records
        .list_records(Some(&rei), &rei, &posts(), 50, None, false)
        .await
        .unwrap();
    assert!(page.records.is_empty());

    // Deleting a missing record inside a batch fails the batch too.
    let ops = vec![
        WriteOp::Create {
            collection: posts(),
            rkey: None,
            value: post("fine", &["swordsmith"]),
        },
        WriteOp::Delete {
            collection: posts(),
            rkey: stratos_testkit::builders::rkey("3kznmn7xqxl22"),
        },
    ];
    assert!(matches!(
        svc.records.apply_writes(&rei, &rei, ops).await,
        Err(UseCaseError::Rule(DomainError::RecordNotFound(_)))
    ));
    assert_eq!(svc.repos.head(&rei).await.unwrap(), head);
    assert_eq!(svc.repos.latest_seq(&rei).await.unwrap(), 0);
}

#[tokio::test]
async fn commits_enqueue_stubs_built_from_the_record() {
    let svc = service().await;
    let rei = did("did:plc:rei");
    let out = svc
        .records
        .create_record(&rei, &rei, &posts(), None, post("secret", &["swordsmith"]))
        .await
        .unwrap();
    let rkey = rkey_of(&out.results[0].uri);
    svc.records
        .put_record(&rei, &rei, &posts(), &rkey, post("edited", &["swordsmith"]))
        .await
        .unwrap();
    svc.records
        .delete_record(&rei, &rei, &posts(), &rkey)
        .await
        .unwrap();
    let items = svc.outbox.items();
    assert_eq!(items.len(), 3, "one outbox item per op: {items:?}");
    for item in &items[..2] {
        let OutboxAction::PutRecord {
            collection,
            rkey: k,
            record_json,
        } = &item.action
        else {
            panic!("creates and updates put the stub: {item:?}")
        };
        assert_eq!((collection, k), (&posts(), &rkey));
        let stub: serde_json::Value = serde_json::from_str(record_json).unwrap();
        assert_eq!(stub["$type"], POSTS);
        assert_eq!(
            stub["createdAt"], "2026-11-25T09:00:00.000Z",
            "the record's createdAt, not the rev"
        );
        assert_eq!(stub["source"]["vary"], "authenticated");
        assert_eq!(
            stub["source"]["service"],
            "did:web:nerv.tokyo.jp#atproto_pns"
        );
        assert!(
            stub.get("text").is_none() && stub.get("boundary").is_none(),
            "content-free"
        );
    }
    assert!(matches!(items[2].action, OutboxAction::DeleteRecord { .. }));
    let events = svc.repos.events_after(&rei, 0, 10).await.unwrap();
    let actions: Vec<_> = events.iter().map(|e| e.ops[0].action.as_str()).collect();
    assert_eq!(actions, ["create", "update", "delete"]);
}

#[tokio::test]
async fn filtered_listing_returns_full_pages_and_a_working_cursor() {
    let svc = service().await;
    svc.enroll("did:plc:shinji", &["swordsmith", "aekea"]).await;
    let shinji = did("did:plc:shinji");
    let sakura = did("did:plc:sakura");
    let ops: Vec<_> = (0..60)
        .map(|i| WriteOp::Create {
            collection: posts(),
            rkey: None,
            value: post(
                &format!("post {i}"),
                &[if i % 2 == 0 { "swordsmith" } else { "aekea" }],
            ),
        })
        .collect();
    svc.records
        .apply_writes(&shinji, &shinji, ops)
        .await
        .unwrap();
    let mut seen = 0;
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = svc
            .records
            .list_records(Some(&sakura), &shinji, &posts(), 10, cursor, false)
            .await
            .unwrap();
        pages += 1;
        seen += page.records.len();
        assert!(page.records.iter().all(
            |r| r.value["boundary"]["values"][0]["value"] == "did:web:nerv.tokyo.jp/swordsmith"
        ));
        if page.cursor.is_none() {
            break;
        }
        assert_eq!(page.records.len(), 10, "a page with a cursor is full");
        cursor = page.cursor;
    }
    assert_eq!(seen, 30);
    assert!(pages >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_on_one_actor_all_land_in_distinct_commits() {
    let svc = Arc::new(service().await);
    let rei = did("did:plc:rei");
    let mut tasks = Vec::new();
    for i in 0..12 {
        let svc = svc.clone();
        let rei = rei.clone();
        tasks.push(tokio::spawn(async move {
            svc.records
                .create_record(
                    &rei,
                    &rei,
                    &posts(),
                    None,
                    post(&format!("n{i}"), &["swordsmith"]),
                )
                .await
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap().unwrap().seq);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=12).collect::<Vec<_>>());
    let page = svc
        .records
        .list_records(Some(&rei), &rei, &posts(), 100, None, false)
        .await
        .unwrap();
    assert_eq!(page.records.len(), 12);
}

#[tokio::test]
async fn replies_may_not_widen_their_parent_boundaries() {
    let svc = service().await;
    svc.enroll("did:plc:misato", &["swordsmith", "ops"]).await;
    let (rei, misato) = (did("did:plc:rei"), did("did:plc:misato"));
    let parent = svc
        .records
        .create_record(&rei, &rei, &posts(), None, post("parent", &["swordsmith"]))
        .await
        .unwrap();
    let strong =
        json!({"uri": parent.results[0].uri, "cid": parent.results[0].cid.unwrap().to_string()});
    let mut reply = post("reply", &["swordsmith", "ops"]);
    reply["reply"] = json!({"root": strong, "parent": strong});
    let err = svc
        .records
        .create_record(&misato, &misato, &posts(), None, reply.clone())
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        UseCaseError::Rule(DomainError::ReplyBoundaryEscalation { .. })
    ));
    reply["boundary"]["values"] = json!([{"value": "did:web:nerv.tokyo.jp/swordsmith"}]);
    svc.records
        .create_record(&misato, &misato, &posts(), None, reply)
        .await
        .unwrap();
}

#[tokio::test]
async fn records_without_type_get_the_collection_type() {
    let svc = service().await;
    let rei = did("did:plc:rei");
    let mut value = post("untyped", &["swordsmith"]);
    value.as_object_mut().unwrap().remove("$type");
    let out = svc
        .records
        .create_record(&rei, &rei, &posts(), None, value)
        .await
        .unwrap();
    let stored = svc
        .repos
        .get_record(&rei, &posts(), &rkey_of(&out.results[0].uri))
        .await
        .unwrap()
        .unwrap();
    let value = data::ipld_to_json(&data::decode(&stored.bytes).unwrap()).unwrap();
    assert_eq!(value["$type"], POSTS);
}

#[tokio::test]
async fn export_then_import_into_a_fresh_repository() {
    let svc = service().await;
    let rei = did("did:plc:rei");
    for i in 0..5 {
        svc.records
            .create_record(
                &rei,
                &rei,
                &posts(),
                None,
                post(&format!("p{i}"), &["swordsmith"]),
            )
            .await
            .unwrap();
    }
    // Only the owner may export.
    let sakura = did("did:plc:sakura");
    assert!(matches!(
        svc.records.export_repo(&sakura, &rei).await,
        Err(UseCaseError::Forbidden(_))
    ));
    let car_bytes = svc.records.export_repo(&rei, &rei).await.unwrap();
    let parsed = stratos_domain::car::read(&car_bytes, Default::default()).unwrap();
    assert_eq!(parsed.roots.len(), 1);

    // Import into the same DID on a second service (fresh, empty repository).
    let other = TestService::new(&["swordsmith", "aekea", "ops"]);
    other.enroll("did:plc:rei", &["swordsmith"]).await;
    assert_eq!(
        other.records.import_repo(&rei, &car_bytes).await.unwrap(),
        5
    );
    let page = other
        .records
        .list_records(Some(&rei), &rei, &posts(), 50, None, false)
        .await
        .unwrap();
    assert_eq!(page.records.len(), 5);
    // Boundaries were indexed: a member reads, an outsider does not.
    other.enroll("did:plc:kaoruko", &["aekea"]).await;
    let kaoruko = did("did:plc:kaoruko");
    let seen = other
        .records
        .list_records(Some(&kaoruko), &rei, &posts(), 50, None, false)
        .await
        .unwrap();
    assert!(seen.records.is_empty());
    // A second import is refused; another account's CAR is refused.
    assert!(matches!(
        other.records.import_repo(&rei, &car_bytes).await,
        Err(UseCaseError::RepoAlreadyExists(_))
    ));
    other.enroll("did:plc:misato", &["swordsmith"]).await;
    assert!(matches!(
        other
            .records
            .import_repo(&did("did:plc:misato"), &car_bytes)
            .await,
        Err(UseCaseError::InvalidRequest(_))
    ));
    // Garbage is a typed error.
    assert!(matches!(
        other
            .records
            .import_repo(&did("did:plc:misato"), b"not a car")
            .await,
        Err(UseCaseError::Rule(_))
    ));
}

#[tokio::test]
async fn import_applies_the_write_rules() {
    let svc = service().await;
    let rei = did("did:plc:rei");
    svc.records
        .create_record(&rei, &rei, &posts(), None, post("secret", &["swordsmith"]))
        .await
        .unwrap();
    let car_bytes = svc.records.export_repo(&rei, &rei).await.unwrap();
    // On a service where Rei does not hold `swordsmith`, the import is refused whole.
    let other = TestService::new(&["swordsmith", "aekea"]);
    other.enroll("did:plc:rei", &["aekea"]).await;
    assert!(matches!(
        other.records.import_repo(&rei, &car_bytes).await,
        Err(UseCaseError::Rule(DomainError::BoundaryNotHeld { .. }))
    ));
    assert_eq!(other.repos.latest_seq(&rei).await.unwrap(), 0);
}

#[tokio::test]
async fn writes_beyond_the_rate_limit_are_refused_with_retry_after() {
    let svc = service().await;
    let rei = did("did:plc:rei");
    let batch = |n: usize| {
        (0..n)
            .map(|i| WriteOp::Create {
                collection: posts(),
                rkey: None,
                value: post(&format!("r{i}"), &["swordsmith"]),
            })
            .collect::<Vec<_>>()
    };
    svc.records
        .apply_writes(&rei, &rei, batch(200))
        .await
        .unwrap();
    svc.records
        .apply_writes(&rei, &rei, batch(100))
        .await
        .unwrap();
    let err = svc
        .records
        .apply_writes(&rei, &rei, batch(1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, UseCaseError::Rule(DomainError::RateLimited { retry_after_ms }) if retry_after_ms > 0)
    );
    // Another account is unaffected; a minute later Rei may write again.
    let sakura = did("did:plc:sakura");
    svc.records
        .apply_writes(&sakura, &sakura, batch(1))
        .await
        .unwrap();
    svc.clock.advance(60_001);
    svc.records
        .apply_writes(&rei, &rei, batch(1))
        .await
        .unwrap();
}

/// Two service instances over one store (two processes in production): each caches the head
/// of its last commit, and a stale cache costs only a retry.
#[tokio::test]
async fn two_instances_over_one_store_stay_consistent() {
    use stratos_testkit::builders::build_records;
    let svc = service().await;
    let rei = did("did:plc:rei");
    let other = build_records(
        svc.repos.clone(),
        svc.enrollments.clone(),
        svc.keys.clone(),
        svc.clock.clone(),
        &["swordsmith", "aekea", "ops"],
    );
    let a = svc
        .records
        .create_record(&rei, &rei, &posts(), None, post("from a", &["swordsmith"]))
        .await
        .unwrap();
    other
        .create_record(&rei, &rei, &posts(), None, post("from b", &["swordsmith"]))
        .await
        .unwrap();
    // Instance A's cached head is now stale; its next write must still land, on top of B's.
    let a_rkey = rkey_of(&a.results[0].uri);
    svc.records
        .delete_record(&rei, &rei, &posts(), &a_rkey)
        .await
        .unwrap();
    svc.records
        .create_record(
            &rei,
            &rei,
            &posts(),
            None,
            post("from a again", &["swordsmith"]),
        )
        .await
        .unwrap();
    let page = svc
        .records
        .list_records(Some(&rei), &rei, &posts(), 50, None, false)
        .await
        .unwrap();
    let texts: Vec<_> = page
        .records
        .iter()
        .map(|r| r.value["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(texts.contains(&"from b".to_owned()) && texts.contains(&"from a again".to_owned()));
    assert_eq!(svc.repos.latest_seq(&rei).await.unwrap(), 4);
}

/// The enrollment cache: a boundary removed by another instance (straight in the store) stops
/// granting reads within `ENROLLMENT_TTL_MS`; `forget_enrollment` (what this process's
/// enrollment use cases call) makes it take effect at once.
#[tokio::test]
async fn revoked_boundaries_stop_granting_reads_within_the_enrollment_ttl() {
    use stratos_ports::enrollment_store::EnrollmentStore as _;
    use stratos_ports::usecases::records::ENROLLMENT_TTL_MS;
    let svc = service().await;
    let (rei, sakura) = (did("did:plc:rei"), did("did:plc:sakura"));
    let out = svc
        .records
        .create_record(
            &rei,
            &rei,
            &posts(),
            None,
            post("forge day", &["swordsmith"]),
        )
        .await
        .unwrap();
    let rkey = rkey_of(&out.results[0].uri);
    let visible = || async {
        svc.records
            .get_record(Some(&sakura), &rei, &posts(), &rkey, None)
            .await
            .unwrap()
            .is_some()
    };
    assert!(visible().await);
    let swordsmith =
        stratos_testkit::builders::qualified(&stratos_testkit::builders::boundary("swordsmith"));
    svc.enrollments
        .remove_boundary(&sakura, &swordsmith)
        .await
        .unwrap();
    svc.clock.advance(ENROLLMENT_TTL_MS + 1);
    assert!(!visible().await, "seen after the TTL");
    svc.enrollments
        .add_boundary(&sakura, &swordsmith)
        .await
        .unwrap();
    svc.records.forget_enrollment(&sakura);
    assert!(visible().await, "seen at once after forget_enrollment");
}
