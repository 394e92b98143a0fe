//! Builders and fixtures: a service wired over the in-memory fakes, enrolled actors with keys,
//! and records.
#![allow(clippy::expect_used)] // test support: a broken fixture should stop the test at once

use std::sync::Arc;

use serde_json::{Value, json};
use stratos_domain::boundary::Boundary;
use stratos_domain::crypto::{KeyAlgorithm, Keypair};
use stratos_domain::lexicon::Catalog;
use stratos_domain::syntax::Did;
use stratos_domain::write::WritePolicy;
use stratos_ports::blob_store::BlobStore;
use stratos_ports::enrollment_store::{Enrollment, EnrollmentStore};
use stratos_ports::keys::SigningKeyStore;
use stratos_ports::repo_store::RepoStore;
use stratos_ports::usecases::records::{RecordDeps, Records};

use crate::memory::{
    ManualClock, MemoryBlobStore, MemoryEnrollmentStore, MemoryKeyStore, MemoryOutbox,
    MemoryRepoStore,
};

/// The service DID used by fixtures.
pub const SERVICE_DID: &str = "did:web:nerv.tokyo.jp";

/// A qualified fixture boundary, `did:web:nerv.tokyo.jp/{name}`.
pub fn boundary(name: &str) -> String {
    format!("{SERVICE_DID}/{name}")
}

/// Parses a DID, panicking on a typo in a fixture.
pub fn did(s: &str) -> Did {
    Did::parse(s).expect("fixture DID")
}

/// A `zone.stratos.feed.post` in the given boundaries.
pub fn post(text: &str, boundaries: &[&str]) -> Value {
    json!({
        "$type": "zone.stratos.feed.post",
        "text": text,
        "boundary": {
            "$type": "zone.stratos.boundary.defs#Domains",
            "values": boundaries.iter().map(|b| json!({"value": boundary(b)})).collect::<Vec<_>>()
        },
        "createdAt": "2026-11-25T09:00:00.000Z"
    })
}

/// A real 1×1 transparent PNG (67 bytes: signature, IHDR, IDAT, IEND, valid CRCs).
pub const TINY_PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4,
    0x89, 0x00, 0x00, 0x00, 0x0A, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0D, 0x0A, 0x2D, 0xB4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE,
    0x42, 0x60, 0x82,
];

/// Distinct bytes per `tag` that an upload stores as `image/png`: the PNG signature, then the tag.
/// Uploads are typed by their content, so a fixture image needs the signature of its format.
pub fn png(tag: &[u8]) -> Vec<u8> {
    let mut out = TINY_PNG[..8].to_vec();
    out.extend_from_slice(tag);
    out
}

/// Distinct bytes per `tag` that an upload stores as `image/jpeg` (the JPEG SOI marker, then the
/// tag).
pub fn jpeg(tag: &[u8]) -> Vec<u8> {
    let mut out = vec![0xFF, 0xD8, 0xFF, 0xE0];
    out.extend_from_slice(tag);
    out
}

/// A service over in-memory fakes, offering the named boundaries.
#[derive(Debug)]
pub struct TestService {
    /// Repositories.
    pub repos: Arc<MemoryRepoStore>,
    /// Enrollments.
    pub enrollments: Arc<MemoryEnrollmentStore>,
    /// Signing keys.
    pub keys: Arc<MemoryKeyStore>,
    /// PDS write outbox.
    pub outbox: Arc<MemoryOutbox>,
    /// Time.
    pub clock: Arc<ManualClock>,
    /// Blob bytes.
    pub blobs: Arc<MemoryBlobStore>,
    /// The record use cases.
    pub records: Arc<Records>,
}

impl TestService {
    /// A service offering `boundaries` (bare names).
    pub fn new(boundaries: &[&str]) -> Self {
        let outbox = Arc::new(MemoryOutbox::new());
        let repos = Arc::new(MemoryRepoStore::with_outbox(outbox.clone()));
        let enrollments = Arc::new(MemoryEnrollmentStore::new());
        let keys = Arc::new(MemoryKeyStore::new());
        let clock = Arc::new(ManualClock::at(1_795_000_000_000));
        let blobs = Arc::new(MemoryBlobStore::new());
        let records = Arc::new(build_records_over(
            repos.clone(),
            enrollments.clone(),
            keys.clone(),
            clock.clone(),
            blobs.clone(),
            boundaries,
            stratos_domain::rate_limit::DEFAULT_RATE_LIMIT,
        ));
        Self {
            repos,
            enrollments,
            keys,
            outbox,
            clock,
            blobs,
            records,
        }
    }

    /// Enrolls `did` holding `boundaries` (bare names): key, enrollment row, empty repository.
    pub async fn enroll(&self, did_str: &str, boundaries: &[&str]) -> Did {
        enroll_into(
            &self.records,
            self.enrollments.as_ref(),
            self.keys.as_ref(),
            did_str,
            boundaries,
        )
        .await
    }
}

/// Record use cases over the given ports, offering `boundaries` (bare names), with the default
/// rate limit.
pub fn build_records(
    repos: Arc<dyn RepoStore>,
    enrollments: Arc<dyn EnrollmentStore>,
    keys: Arc<dyn SigningKeyStore>,
    clock: Arc<ManualClock>,
    boundaries: &[&str],
) -> Records {
    build_records_with(
        repos,
        enrollments,
        keys,
        clock,
        boundaries,
        stratos_domain::rate_limit::DEFAULT_RATE_LIMIT,
    )
}

/// [`build_records`] with an explicit rate limit (benchmarks lift it).
pub fn build_records_with(
    repos: Arc<dyn RepoStore>,
    enrollments: Arc<dyn EnrollmentStore>,
    keys: Arc<dyn SigningKeyStore>,
    clock: Arc<ManualClock>,
    boundaries: &[&str],
    rate_limit: stratos_domain::rate_limit::RateLimit,
) -> Records {
    build_records_over(
        repos,
        enrollments,
        keys,
        clock,
        Arc::new(MemoryBlobStore::new()),
        boundaries,
        rate_limit,
    )
}

/// [`build_records_with`] over a given blob store.
pub fn build_records_over(
    repos: Arc<dyn RepoStore>,
    enrollments: Arc<dyn EnrollmentStore>,
    keys: Arc<dyn SigningKeyStore>,
    clock: Arc<ManualClock>,
    blobs: Arc<dyn BlobStore>,
    boundaries: &[&str],
    rate_limit: stratos_domain::rate_limit::RateLimit,
) -> Records {
    let service = did(SERVICE_DID);
    let allowed = boundaries
        .iter()
        .map(|b| Boundary::qualify(&service, b).expect("fixture boundary"))
        .collect();
    Records::new(RecordDeps {
        repos,
        enrollments,
        keys,
        clock,
        catalog: Arc::new(Catalog::stratos().expect("Stratos lexicons load")),
        policy: WritePolicy {
            service_did: service,
            allowed,
        },
        service_ref: format!("{SERVICE_DID}#atproto_pns"),
        rate_limit,
        blobs,
    })
}

/// Enrolls `did_str` through the given ports.
pub async fn enroll_into(
    records: &Records,
    enrollments: &dyn EnrollmentStore,
    keys: &dyn SigningKeyStore,
    did_str: &str,
    boundaries: &[&str],
) -> Did {
    let d = did(did_str);
    let key = Keypair::generate(KeyAlgorithm::P256);
    keys.put(&d, &key).await.expect("store key");
    enrollments
        .enroll(&Enrollment {
            did: d.to_string(),
            enrolled_at: "2026-11-25T09:00:00.000Z".into(),
            pds_endpoint: Some("https://pds.nerv.tokyo.jp".into()),
            signing_key: key.did_key(),
            enrollment_rkey: None,
            boundaries: boundaries.iter().map(|b| boundary(b)).collect(),
        })
        .await
        .expect("enroll");
    records.init_repo(&d, &key).await.expect("init repo");
    d
}
