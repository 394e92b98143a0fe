#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! Interaction tests with `mockall`: enrollment publishes its PDS record exactly once, and
//! unenrollment drops pending writes before queueing the record's deletion.

use std::sync::Arc;

use async_trait::async_trait;
use mockall::Sequence;
use mockall::predicate::always;
use stratos_domain::boundary::Boundary;
use stratos_domain::crypto::{KeyAlgorithm, Keypair};
use stratos_domain::enrollment::{EnrollmentMode, EnrollmentPolicy};
use stratos_domain::syntax::Did;
use stratos_ports::outbox::{
    ClaimedItem, DeadLetter, Disposition, FailedAttempt, Lease, Outbox, OutboxAction, OutboxError,
    OutboxItem,
};
use stratos_ports::usecases::enrollment::{EnrollmentDeps, Enrollments};
use stratos_testkit::builders::{SERVICE_DID, TestService, did};
use stratos_testkit::memory::{MemoryBlobStore, MemoryIdentity};

mockall::mock! {
    pub Outbox {}
    #[async_trait]
    impl Outbox for Outbox {
        async fn enqueue(&self, item: OutboxItem) -> Result<u64, OutboxError>;
        async fn claim(&self, now_ms: i64, lease_ms: i64, limit: usize) -> Result<Vec<ClaimedItem>, OutboxError>;
        async fn complete(&self, lease: Lease) -> Result<(), OutboxError>;
        async fn fail(&self, lease: Lease, attempt: FailedAttempt) -> Result<Disposition, OutboxError>;
        async fn release(&self, lease: Lease, due_ms: i64) -> Result<(), OutboxError>;
        async fn pending(&self) -> Result<usize, OutboxError>;
        async fn dead_letters(&self, limit: usize, cursor: Option<u64>) -> Result<Vec<DeadLetter>, OutboxError>;
        async fn retry_dead(&self, id: u64) -> Result<u64, OutboxError>;
        async fn dead_count(&self, did: &Did) -> Result<u64, OutboxError>;
        async fn dead_total(&self) -> Result<u64, OutboxError>;
        async fn purge(&self, did: &Did) -> Result<(), OutboxError>;
    }
}

fn enrollments(svc: &TestService, outbox: MockOutbox) -> Enrollments {
    let offered = vec![Boundary::qualify(&did(SERVICE_DID), "swordsmith").unwrap()];
    Enrollments::new(EnrollmentDeps {
        repos: svc.repos.clone(),
        enrollments: svc.enrollments.clone(),
        keys: svc.keys.clone(),
        outbox: Arc::new(outbox),
        blobs: Arc::new(MemoryBlobStore::new()),
        identity: Arc::new(MemoryIdentity::new()),
        allow_list: None,
        clock: svc.clock.clone(),
        policy: EnrollmentPolicy::new(EnrollmentMode::Open, offered),
        service_did: did(SERVICE_DID),
        service_endpoint: "https://stratos.nerv.tokyo.jp".into(),
        service_key: Arc::new(Keypair::generate(KeyAlgorithm::K256)),
        records: svc.records.clone(),
    })
}

#[tokio::test]
async fn enrollment_publishes_its_record_exactly_once() {
    let svc = TestService::new(&["swordsmith"]);
    let mut outbox = MockOutbox::new();
    outbox
        .expect_enqueue()
        .withf(|item| {
            item.did == "did:plc:rei"
                && matches!(&item.action, OutboxAction::PutRecord { collection, .. }
                    if collection == "zone.stratos.actor.enrollment")
        })
        .times(1)
        .returning(|_| Ok(1));
    let e = enrollments(&svc, outbox);
    e.enroll(&did("did:plc:rei")).await.unwrap();
}

#[tokio::test]
async fn unenrollment_purges_before_queueing_the_deletions_then_the_end_of_the_session() {
    let svc = TestService::new(&["swordsmith"]);
    let mut outbox = MockOutbox::new();
    let mut seq = Sequence::new();
    outbox
        .expect_enqueue()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| Ok(1));
    outbox
        .expect_purge()
        .with(always())
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| Ok(()));
    outbox
        .expect_enqueue()
        .withf(|item| matches!(item.action, OutboxAction::DeleteRecord { .. }))
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| Ok(2));
    // The session ends last, after the deletes it is needed for.
    outbox
        .expect_enqueue()
        .withf(|item| matches!(item.action, OutboxAction::EndSession { .. }))
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| Ok(3));
    let e = enrollments(&svc, outbox);
    let rei = did("did:plc:rei");
    e.enroll(&rei).await.unwrap();
    e.unenroll(&rei).await.unwrap();
}

#[tokio::test]
async fn a_failing_outbox_fails_the_enrollment_request_visibly() {
    let svc = TestService::new(&["swordsmith"]);
    let mut outbox = MockOutbox::new();
    outbox.expect_enqueue().times(1).returning(|_| {
        Err(OutboxError::Backend(stratos_ports::Cause::message(
            "disk full",
        )))
    });
    let e = enrollments(&svc, outbox);
    assert!(e.enroll(&did("did:plc:rei")).await.is_err());
}
