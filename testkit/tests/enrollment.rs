#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! Enrollment and hydration use cases over the in-memory fakes.

use serde_json::json;
use stratos_domain::enrollment::{DenialReason, EnrollmentMode, EnrollmentRecord};
use stratos_domain::{Error as DomainError, attestation, data};
use stratos_ports::enrollment_store::EnrollmentStore;
use stratos_ports::env::Clock;
use stratos_ports::keys::SigningKeyStore;
use stratos_ports::outbox::{Outbox, OutboxAction};
use stratos_ports::repo_store::RepoStore;
use stratos_ports::usecases::UseCaseError;
use stratos_testkit::builders::{SERVICE_DID, TestService, at_uri, did, post, qualified};

const POSTS: &str = "zone.stratos.feed.post";

fn posts() -> stratos_domain::syntax::Nsid {
    stratos_testkit::builders::nsid(POSTS)
}

/// The test service of these tests: two boundaries, open enrollment.
fn world() -> TestService {
    TestService::new(&["swordsmith", "aekea"])
}

#[tokio::test]
async fn open_enrollment_creates_key_repo_boundaries_and_an_attested_pds_record() {
    let w = world();
    let rei = did("did:plc:rei");
    let out = w.enrollment.enroll(&rei).await.unwrap();
    assert!(out.new);
    assert_eq!(
        out.enrollment.boundaries,
        [
            "did:web:nerv.tokyo.jp/aekea",
            "did:web:nerv.tokyo.jp/swordsmith"
        ]
    );
    let key = w.keys.get(&rei).await.unwrap().expect("key stored");
    assert_eq!(key.did_key(), out.enrollment.signing_key);
    let head = w
        .repos
        .head(&rei)
        .await
        .unwrap()
        .expect("repository initialised");
    let commit_bytes = w.repos.get_blocks(&rei, &[head.commit]).await.unwrap();
    let commit =
        stratos_domain::commit::SignedCommit::decode(commit_bytes.get(&head.commit).unwrap())
            .unwrap();
    commit
        .verify(key.public_key())
        .expect("first commit signed with the account key");

    let items = w.outbox.items();
    assert_eq!(items.len(), 1);
    let OutboxAction::PutRecord {
        collection,
        rkey,
        record_json,
    } = &items[0].action
    else {
        panic!("enrollment record put expected")
    };
    assert_eq!(collection, "zone.stratos.actor.enrollment");
    assert_eq!(rkey, SERVICE_DID);
    let value: serde_json::Value = serde_json::from_str(record_json).unwrap();
    let record = EnrollmentRecord::from_ipld(&data::json_to_ipld(&value).unwrap()).unwrap();
    assert_eq!(record.service, "https://stratos.nerv.tokyo.jp");
    attestation::verify(
        &record.attestation,
        &rei,
        &record.boundaries,
        &record.signing_key,
        Some(&w.service_key.did_key()),
    )
    .expect("attestation verifies against the service key");

    // The new account can write at once.
    w.records
        .create_record(&rei, &rei, &posts(), None, post("first", &["swordsmith"]))
        .await
        .unwrap();

    // Enrolling again keeps everything and re-publishes the record.
    let again = w.enrollment.enroll(&rei).await.unwrap();
    assert!(!again.new);
    assert_eq!(
        w.keys.get(&rei).await.unwrap().unwrap().did_key(),
        key.did_key()
    );
    assert_eq!(
        w.outbox.items().len(),
        3,
        "record put, stub put, record put again"
    );
}

#[tokio::test]
async fn allowlist_denials_are_typed() {
    let w = TestService::builder()
        .boundaries(&["swordsmith", "aekea"])
        .enrollment_mode(EnrollmentMode::Allowlist)
        .allowed_pds(&["https://pds.nerv.tokyo.jp/"])
        .allow_list(&["did:plc:listed"])
        .build();
    let denied = |e: UseCaseError| match e {
        UseCaseError::Rule(DomainError::EnrollmentDenied(r)) => r,
        other => panic!("expected a denial, got {other:?}"),
    };
    // Unresolvable DID.
    let r = w
        .enrollment
        .enroll(&did("did:plc:ghost"))
        .await
        .unwrap_err();
    assert_eq!(denied(r), DenialReason::DidNotResolved);
    // No PDS service in the document.
    w.identity.insert_doc(
        &did("did:plc:nopds"),
        json!({"id": "did:plc:nopds", "service": []}),
    );
    let r = w
        .enrollment
        .enroll(&did("did:plc:nopds"))
        .await
        .unwrap_err();
    assert_eq!(denied(r), DenialReason::PdsEndpointNotFound);
    // A PDS that is not allowed.
    w.identity.insert_doc(
        &did("did:plc:elsewhere"),
        json!({"id": "did:plc:elsewhere",
            "service": [{"id": "#atproto_pds", "serviceEndpoint": "https://pds.seele.org"}]}),
    );
    let r = w
        .enrollment
        .enroll(&did("did:plc:elsewhere"))
        .await
        .unwrap_err();
    assert_eq!(denied(r), DenialReason::NotInAllowlist);
    // An allowed PDS (trailing slash normalised) and the external list both admit.
    w.identity.insert_doc(
        &did("did:plc:nerv"),
        json!({"id": "did:plc:nerv",
            "service": [{"id": "#atproto_pds", "serviceEndpoint": "https://pds.nerv.tokyo.jp"}]}),
    );
    let ok = w.enrollment.enroll(&did("did:plc:nerv")).await.unwrap();
    assert_eq!(
        ok.enrollment.pds_endpoint.as_deref(),
        Some("https://pds.nerv.tokyo.jp")
    );
    w.enrollment.enroll(&did("did:plc:listed")).await.unwrap();
    // Nothing was stored for the denied accounts.
    assert!(
        w.enrollments
            .get(&did("did:plc:elsewhere"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        !w.repos
            .actor_exists(&did("did:plc:elsewhere"))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn unenroll_deletes_private_data_and_queues_the_record_deletion() {
    let w = world();
    let rei = did("did:plc:rei");
    w.enrollment.enroll(&rei).await.unwrap();
    let created = w
        .records
        .create_record(&rei, &rei, &posts(), None, post("bye", &["swordsmith"]))
        .await
        .unwrap();
    let now_s = w.clock.now_ms().div_euclid(1000);
    w.enrollment.unenroll(&rei).await.unwrap();
    assert!(w.enrollments.get(&rei).await.unwrap().is_none());
    assert!(!w.repos.actor_exists(&rei).await.unwrap());
    assert!(w.keys.get(&rei).await.unwrap().is_none());
    // Pending writes are dropped; the stub's and the enrollment record's deletions are queued,
    // then the end of the session, in that order.
    let items = w.outbox.items();
    let actions: Vec<&OutboxAction> = items.iter().map(|i| &i.action).collect();
    let stub_rkey = created.results[0].uri.rkey().unwrap().clone();
    assert!(
        matches!(
            actions.as_slice(),
            [
                OutboxAction::DeleteRecord { collection: c1, rkey: r1 },
                OutboxAction::DeleteRecord { collection: c2, rkey: r2 },
                OutboxAction::EndSession { authorized_by },
            ] if *c1 == POSTS && *r1 == stub_rkey
                && *c2 == "zone.stratos.actor.enrollment" && *r2 == SERVICE_DID
                && *authorized_by == now_s
        ),
        "{items:?}"
    );
    assert!(items.iter().all(|i| i.did == rei));
    assert_eq!(w.outbox.pending().await.unwrap(), 3);
    // Writes are now rejected; unenrolling twice says so.
    assert!(matches!(
        w.records
            .create_record(&rei, &rei, &posts(), None, post("x", &["swordsmith"]))
            .await,
        Err(UseCaseError::NotEnrolled(_))
    ));
    assert!(matches!(
        w.enrollment.unenroll(&rei).await,
        Err(UseCaseError::NotEnrolled(_))
    ));
}

#[tokio::test]
async fn status_carries_a_fresh_verifiable_attestation() {
    let w = world();
    let rei = did("did:plc:rei");
    assert!(w.enrollment.status(&rei).await.unwrap().is_none());
    w.enrollment.enroll(&rei).await.unwrap();
    w.enrollments
        .set_boundaries(&rei, &[qualified("did:web:nerv.tokyo.jp/aekea")])
        .await
        .unwrap();
    let status = w.enrollment.status(&rei).await.unwrap().unwrap();
    attestation::verify(
        &status.attestation,
        &rei,
        &["did:web:nerv.tokyo.jp/aekea"],
        &status.enrollment.signing_key,
        Some(&w.service_key.did_key()),
    )
    .unwrap();
}

#[tokio::test]
async fn hydration_reports_denials_exactly_like_missing_records() {
    let w = world();
    let rei = w.enroll("did:plc:rei", &["swordsmith"]).await;
    let sakura = w.enroll("did:plc:sakura", &["swordsmith"]).await;
    let kaoruko = w.enroll("did:plc:kaoruko", &["aekea"]).await;
    let out = w
        .records
        .create_record(&rei, &rei, &posts(), None, post("secret", &["swordsmith"]))
        .await
        .unwrap();
    let uri = out.results[0].uri.clone();
    let missing = at_uri(&format!("at://{rei}/{POSTS}/3kznmn7xqxl22"));
    let uris = vec![uri.clone(), missing.clone()];
    let as_sakura = w.records.hydrate(Some(&sakura), &uris).await.unwrap();
    assert_eq!(as_sakura.records.len(), 1);
    assert_eq!(as_sakura.records[0].uri, uri);
    assert_eq!(as_sakura.records[0].cid, out.results[0].cid.unwrap());
    assert_eq!(as_sakura.not_found, std::slice::from_ref(&missing));
    let as_kaoruko = w.records.hydrate(Some(&kaoruko), &uris).await.unwrap();
    assert!(as_kaoruko.records.is_empty());
    assert_eq!(as_kaoruko.not_found, [uri.clone(), missing.clone()]);
    let anonymous = w.records.hydrate(None, &uris).await.unwrap();
    assert_eq!(anonymous.not_found.len(), 2);
    let too_many = vec![uri.clone(); 101];
    assert!(matches!(
        w.records.hydrate(Some(&sakura), &too_many).await,
        Err(UseCaseError::InvalidRequest(_))
    ));
}

/// The test service works for any service DID: enrollment records, boundaries, posts and
/// direct enrollments all use it, and the default service's boundaries are foreign to it.
#[tokio::test]
async fn the_test_service_takes_any_service_did() {
    let w = TestService::builder()
        .service_did("did:web:stratos.example.com")
        .service_endpoint("https://stratos.example.com")
        .boundaries(&["general"])
        .build();
    assert_eq!(w.service_did().as_str(), "did:web:stratos.example.com");
    assert_eq!(w.boundary("general"), "did:web:stratos.example.com/general");
    let rei = did("did:plc:rei");
    let out = w.enrollment.enroll(&rei).await.unwrap();
    assert_eq!(
        out.enrollment.boundaries,
        ["did:web:stratos.example.com/general"]
    );
    let items = w.outbox.items();
    let OutboxAction::PutRecord {
        rkey, record_json, ..
    } = &items[0].action
    else {
        panic!("enrollment record put expected")
    };
    assert_eq!(rkey, "did:web:stratos.example.com");
    let value: serde_json::Value = serde_json::from_str(record_json).unwrap();
    let record = EnrollmentRecord::from_ipld(&data::json_to_ipld(&value).unwrap()).unwrap();
    assert_eq!(record.service, "https://stratos.example.com");

    w.records
        .create_record(&rei, &rei, &posts(), None, w.post("hello", &["general"]))
        .await
        .unwrap();
    assert!(
        w.records
            .create_record(&rei, &rei, &posts(), None, post("elsewhere", &["general"]))
            .await
            .is_err(),
        "a boundary of did:web:nerv.tokyo.jp is not this service's"
    );
    let asuka = w.enroll("did:plc:asuka", &["general"]).await;
    assert_eq!(
        w.enrollments.get(&asuka).await.unwrap().unwrap().boundaries,
        ["did:web:stratos.example.com/general"]
    );
}
