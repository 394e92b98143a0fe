//! Builders and fixtures: a service wired over the in-memory fakes (records and enrollments),
//! record use cases over any ports, enrolled actors with keys, and records, for any service DID.
//!
//! [`SERVICE_DID`] is the default; [`ServiceFixtures::new`], [`RecordsBuilder::service_did`] and
//! [`TestServiceBuilder::service_did`] take another. The free functions ([`boundary`], [`post`],
//! [`enroll_into`], [`build_records`], …) are the default service's fixtures.
#![allow(clippy::expect_used)] // test support: a broken fixture should stop the test at once

use std::fmt;
use std::sync::Arc;

use serde_json::{Value, json};
use stratos_domain::boundary::Boundary;
use stratos_domain::crypto::{KeyAlgorithm, Keypair};
use stratos_domain::enrollment::{EnrollmentMode, EnrollmentPolicy};
use stratos_domain::lexicon::Catalog;
use stratos_domain::rate_limit::{DEFAULT_RATE_LIMIT, RateLimit};
use stratos_domain::syntax::{AtUri, Datetime, Did, Nsid, RecordKey};
use stratos_domain::write::WritePolicy;
use stratos_ports::blob_store::BlobStore;
use stratos_ports::enrollment_store::{Enrollment, EnrollmentStore};
use stratos_ports::env::Clock;
use stratos_ports::keys::SigningKeyStore;
use stratos_ports::repo_store::RepoStore;
use stratos_ports::usecases::enrollment::{EnrollmentDeps, Enrollments};
use stratos_ports::usecases::records::{RecordDeps, Records};

use crate::memory::{
    ManualClock, MemoryAllowList, MemoryBlobStore, MemoryEnrollmentStore, MemoryIdentity,
    MemoryKeyStore, MemoryOutbox, MemoryRepoStore,
};

/// The service DID fixtures use unless given another.
pub const SERVICE_DID: &str = "did:web:nerv.tokyo.jp";

/// The public URL of the test service unless given another (the `service` of its enrollment
/// records).
pub const SERVICE_ENDPOINT: &str = "https://stratos.nerv.tokyo.jp";

/// The PDS that fixture accounts are enrolled from.
pub const PDS_ENDPOINT: &str = "https://pds.nerv.tokyo.jp";

/// When the fixtures' [`ManualClock`] starts (2026-11-18).
pub const START_MS: i64 = 1_795_000_000_000;

/// Fixtures for one service DID: boundary names are qualified with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceFixtures {
    service_did: Did,
}

impl Default for ServiceFixtures {
    /// The fixtures of [`SERVICE_DID`].
    fn default() -> Self {
        Self::new(SERVICE_DID)
    }
}

impl ServiceFixtures {
    /// The fixtures of `service_did` (panics on a DID that does not parse).
    pub fn new(service_did: &str) -> Self {
        Self {
            service_did: did(service_did),
        }
    }

    /// The service DID.
    pub fn service_did(&self) -> &Did {
        &self.service_did
    }

    /// A qualified boundary, `{service DID}/{name}`.
    pub fn boundary(&self, name: &str) -> String {
        format!("{}/{name}", self.service_did)
    }

    /// The qualified boundaries of `names` (what an [`EnrollmentPolicy`] offers).
    pub fn offered(&self, names: &[&str]) -> Vec<Boundary> {
        names
            .iter()
            .map(|b| Boundary::qualify(&self.service_did, b).expect("fixture boundary"))
            .collect()
    }

    /// A `zone.stratos.feed.post` in the given boundaries (bare names).
    pub fn post(&self, text: &str, boundaries: &[&str]) -> Value {
        json!({
            "$type": "zone.stratos.feed.post",
            "text": text,
            "boundary": {
                "$type": "zone.stratos.boundary.defs#Domains",
                "values": boundaries.iter().map(|b| json!({"value": self.boundary(b)})).collect::<Vec<_>>()
            },
            "createdAt": "2026-11-25T09:00:00.000Z"
        })
    }

    /// Record use cases for this service over the given ports.
    pub fn records(
        &self,
        repos: Arc<dyn RepoStore>,
        enrollments: Arc<dyn EnrollmentStore>,
        keys: Arc<dyn SigningKeyStore>,
    ) -> RecordsBuilder {
        RecordsBuilder::new(repos, enrollments, keys).service(self.clone())
    }

    /// Enrolls `did_str` holding `boundaries` (bare names) straight through the ports: a new
    /// P-256 key, the enrollment row, an empty repository (its first commit).
    pub async fn enroll_into(
        &self,
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
                did: d.clone(),
                enrolled_at: Datetime::parse("2026-11-25T09:00:00.000Z").expect("fixture time"),
                pds_endpoint: Some(PDS_ENDPOINT.into()),
                signing_key: key.did_key(),
                enrollment_rkey: None,
                boundaries: boundaries
                    .iter()
                    .map(|b| qualified(&self.boundary(b)))
                    .collect(),
            })
            .await
            .expect("enroll");
        records.init_repo(&d, &key).await.expect("init repo");
        d
    }
}

/// A qualified fixture boundary of the default service, `did:web:nerv.tokyo.jp/{name}`.
pub fn boundary(name: &str) -> String {
    ServiceFixtures::default().boundary(name)
}

/// Parses a DID, panicking on a typo in a fixture.
pub fn did(s: &str) -> Did {
    Did::parse(s).expect("fixture DID")
}

/// Parses an NSID, panicking on a typo in a fixture.
pub fn nsid(s: &str) -> Nsid {
    Nsid::parse(s).expect("fixture NSID")
}

/// Parses a record key, panicking on a typo in a fixture.
pub fn rkey(s: &str) -> RecordKey {
    RecordKey::parse(s).expect("fixture record key")
}

/// Parses a qualified boundary (`{serviceDid}/{name}`), panicking on a typo in a fixture.
pub fn qualified(s: &str) -> Boundary {
    Boundary::parse(s).expect("fixture boundary")
}

/// Parses an AT-URI, panicking on a typo in a fixture.
pub fn at_uri(s: &str) -> AtUri {
    AtUri::parse(s).expect("fixture AT-URI")
}

/// A `zone.stratos.feed.post` in the given boundaries of the default service.
pub fn post(text: &str, boundaries: &[&str]) -> Value {
    ServiceFixtures::default().post(text, boundaries)
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

/// A service over in-memory fakes: the record and the enrollment use cases over the same
/// stores, for one service DID, offering the named boundaries.
#[derive(Debug)]
pub struct TestService {
    /// The service's fixtures (its DID qualifies boundary names).
    pub fixtures: ServiceFixtures,
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
    /// DID documents the enrollment use cases resolve (empty: add what a case needs).
    pub identity: Arc<MemoryIdentity>,
    /// The service's attestation key.
    pub service_key: Arc<Keypair>,
    /// The record use cases.
    pub records: Arc<Records>,
    /// The enrollment use cases (open enrollment unless the builder said otherwise).
    pub enrollment: Arc<Enrollments>,
}

impl TestService {
    /// A service of [`SERVICE_DID`] offering `boundaries` (bare names), with open enrollment.
    pub fn new(boundaries: &[&str]) -> Self {
        Self::builder().boundaries(boundaries).build()
    }

    /// A builder for any other service: its DID, boundaries, enrollment policy, rate limit.
    pub fn builder() -> TestServiceBuilder {
        TestServiceBuilder::default()
    }

    /// The service DID.
    pub fn service_did(&self) -> &Did {
        self.fixtures.service_did()
    }

    /// A qualified boundary of this service, `{service DID}/{name}`.
    pub fn boundary(&self, name: &str) -> String {
        self.fixtures.boundary(name)
    }

    /// A `zone.stratos.feed.post` in the given boundaries (bare names) of this service.
    pub fn post(&self, text: &str, boundaries: &[&str]) -> Value {
        self.fixtures.post(text, boundaries)
    }

    /// Enrolls `did` holding `boundaries` (bare names) straight through the ports, bypassing the
    /// enrollment rules: key, enrollment row, empty repository. [`TestService::enrollment`] goes
    /// through the rules instead.
    pub async fn enroll(&self, did_str: &str, boundaries: &[&str]) -> Did {
        self.fixtures
            .enroll_into(
                &self.records,
                self.enrollments.as_ref(),
                self.keys.as_ref(),
                did_str,
                boundaries,
            )
            .await
    }
}

/// Builds a [`TestService`].
#[derive(Debug, Clone)]
pub struct TestServiceBuilder {
    fixtures: ServiceFixtures,
    boundaries: Vec<String>,
    service_endpoint: String,
    rate_limit: RateLimit,
    mode: EnrollmentMode,
    allowed_pds: Vec<String>,
    allow_list: Option<Vec<String>>,
}

impl Default for TestServiceBuilder {
    fn default() -> Self {
        Self {
            fixtures: ServiceFixtures::default(),
            boundaries: Vec::new(),
            service_endpoint: SERVICE_ENDPOINT.into(),
            rate_limit: DEFAULT_RATE_LIMIT,
            mode: EnrollmentMode::Open,
            allowed_pds: Vec::new(),
            allow_list: None,
        }
    }
}

impl TestServiceBuilder {
    /// The service's DID (default [`SERVICE_DID`]; panics on one that does not parse).
    pub fn service_did(mut self, service_did: &str) -> Self {
        self.fixtures = ServiceFixtures::new(service_did);
        self
    }

    /// The boundaries the service offers (bare names; default none).
    pub fn boundaries(mut self, names: &[&str]) -> Self {
        self.boundaries = names.iter().map(|b| (*b).to_owned()).collect();
        self
    }

    /// The service's public URL (default [`SERVICE_ENDPOINT`]).
    pub fn service_endpoint(mut self, url: &str) -> Self {
        self.service_endpoint = url.to_owned();
        self
    }

    /// Writes allowed per account (default [`DEFAULT_RATE_LIMIT`]).
    pub fn rate_limit(mut self, rate_limit: RateLimit) -> Self {
        self.rate_limit = rate_limit;
        self
    }

    /// Who may enroll (default [`EnrollmentMode::Open`]).
    pub fn enrollment_mode(mut self, mode: EnrollmentMode) -> Self {
        self.mode = mode;
        self
    }

    /// Admits accounts hosted on these PDS endpoints (allow-list mode).
    pub fn allowed_pds(mut self, urls: &[&str]) -> Self {
        self.allowed_pds = urls.iter().map(|u| (*u).to_owned()).collect();
        self
    }

    /// An external allow-list holding these DIDs (default none).
    pub fn allow_list(mut self, dids: &[&str]) -> Self {
        self.allow_list = Some(dids.iter().map(|d| (*d).to_owned()).collect());
        self
    }

    /// The service over fresh in-memory fakes.
    pub fn build(self) -> TestService {
        let outbox = Arc::new(MemoryOutbox::new());
        let repos = Arc::new(MemoryRepoStore::with_outbox(outbox.clone()));
        let enrollments = Arc::new(MemoryEnrollmentStore::new());
        let keys = Arc::new(MemoryKeyStore::new());
        let clock = Arc::new(ManualClock::at(START_MS));
        let blobs = Arc::new(MemoryBlobStore::new());
        let identity = Arc::new(MemoryIdentity::new());
        let service_key = Arc::new(Keypair::generate(KeyAlgorithm::K256));
        let names: Vec<&str> = self.boundaries.iter().map(String::as_str).collect();
        let records = Arc::new(
            self.fixtures
                .records(repos.clone(), enrollments.clone(), keys.clone())
                .clock(clock.clone())
                .blobs(blobs.clone())
                .boundaries(&names)
                .rate_limit(self.rate_limit)
                .build(),
        );
        let policy = EnrollmentPolicy::new(self.mode, self.fixtures.offered(&names))
            .with_allowed_pds(&self.allowed_pds);
        let enrollment = Arc::new(Enrollments::new(EnrollmentDeps {
            repos: repos.clone(),
            enrollments: enrollments.clone(),
            keys: keys.clone(),
            outbox: outbox.clone(),
            blobs: blobs.clone(),
            identity: identity.clone(),
            allow_list: self
                .allow_list
                .map(|l| Arc::new(MemoryAllowList::of(l)) as _),
            clock: clock.clone(),
            policy,
            service_did: self.fixtures.service_did().clone(),
            service_endpoint: self.service_endpoint,
            service_key: service_key.clone(),
            records: records.clone(),
        }));
        TestService {
            fixtures: self.fixtures,
            repos,
            enrollments,
            keys,
            outbox,
            clock,
            blobs,
            identity,
            service_key,
            records,
            enrollment,
        }
    }
}

/// Builds record use cases over any ports: the service DID, the offered boundaries, the clock,
/// the blob store and the rate limit default to [`SERVICE_DID`], none, a [`ManualClock`] at
/// [`START_MS`], an empty [`MemoryBlobStore`] and [`DEFAULT_RATE_LIMIT`].
pub struct RecordsBuilder {
    repos: Arc<dyn RepoStore>,
    enrollments: Arc<dyn EnrollmentStore>,
    keys: Arc<dyn SigningKeyStore>,
    clock: Arc<dyn Clock>,
    blobs: Arc<dyn BlobStore>,
    fixtures: ServiceFixtures,
    boundaries: Vec<String>,
    rate_limit: RateLimit,
}

impl fmt::Debug for RecordsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordsBuilder")
            .field("service_did", self.fixtures.service_did())
            .field("boundaries", &self.boundaries)
            .field("rate_limit", &self.rate_limit)
            .finish_non_exhaustive()
    }
}

impl RecordsBuilder {
    /// Record use cases over these stores, with the defaults above.
    pub fn new(
        repos: Arc<dyn RepoStore>,
        enrollments: Arc<dyn EnrollmentStore>,
        keys: Arc<dyn SigningKeyStore>,
    ) -> Self {
        Self {
            repos,
            enrollments,
            keys,
            clock: Arc::new(ManualClock::at(START_MS)),
            blobs: Arc::new(MemoryBlobStore::new()),
            fixtures: ServiceFixtures::default(),
            boundaries: Vec::new(),
            rate_limit: DEFAULT_RATE_LIMIT,
        }
    }

    /// The service's DID (panics on one that does not parse).
    pub fn service_did(self, service_did: &str) -> Self {
        self.service(ServiceFixtures::new(service_did))
    }

    /// The service these fixtures belong to.
    pub fn service(mut self, fixtures: ServiceFixtures) -> Self {
        self.fixtures = fixtures;
        self
    }

    /// The boundaries the service offers (bare names).
    pub fn boundaries(mut self, names: &[&str]) -> Self {
        self.boundaries = names.iter().map(|b| (*b).to_owned()).collect();
        self
    }

    /// The clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The blob store.
    pub fn blobs(mut self, blobs: Arc<dyn BlobStore>) -> Self {
        self.blobs = blobs;
        self
    }

    /// Writes allowed per account (benchmarks lift it).
    pub fn rate_limit(mut self, rate_limit: RateLimit) -> Self {
        self.rate_limit = rate_limit;
        self
    }

    /// The use cases.
    pub fn build(self) -> Records {
        let service = self.fixtures.service_did().clone();
        let names: Vec<&str> = self.boundaries.iter().map(String::as_str).collect();
        Records::new(RecordDeps {
            repos: self.repos,
            enrollments: self.enrollments,
            keys: self.keys,
            clock: self.clock,
            catalog: Arc::new(Catalog::stratos().expect("Stratos lexicons load")),
            policy: WritePolicy {
                allowed: self.fixtures.offered(&names),
                service_did: service.clone(),
            },
            service_ref: format!("{service}#atproto_pns"),
            rate_limit: self.rate_limit,
            blobs: self.blobs,
        })
    }
}

/// Record use cases of the default service over the given ports, offering `boundaries` (bare
/// names), with the default rate limit.
pub fn build_records(
    repos: Arc<dyn RepoStore>,
    enrollments: Arc<dyn EnrollmentStore>,
    keys: Arc<dyn SigningKeyStore>,
    clock: Arc<ManualClock>,
    boundaries: &[&str],
) -> Records {
    RecordsBuilder::new(repos, enrollments, keys)
        .clock(clock)
        .boundaries(boundaries)
        .build()
}

/// [`build_records`] with an explicit rate limit (benchmarks lift it).
pub fn build_records_with(
    repos: Arc<dyn RepoStore>,
    enrollments: Arc<dyn EnrollmentStore>,
    keys: Arc<dyn SigningKeyStore>,
    clock: Arc<ManualClock>,
    boundaries: &[&str],
    rate_limit: RateLimit,
) -> Records {
    RecordsBuilder::new(repos, enrollments, keys)
        .clock(clock)
        .boundaries(boundaries)
        .rate_limit(rate_limit)
        .build()
}

/// [`build_records_with`] over a given blob store.
pub fn build_records_over(
    repos: Arc<dyn RepoStore>,
    enrollments: Arc<dyn EnrollmentStore>,
    keys: Arc<dyn SigningKeyStore>,
    clock: Arc<ManualClock>,
    blobs: Arc<dyn BlobStore>,
    boundaries: &[&str],
    rate_limit: RateLimit,
) -> Records {
    RecordsBuilder::new(repos, enrollments, keys)
        .clock(clock)
        .blobs(blobs)
        .boundaries(boundaries)
        .rate_limit(rate_limit)
        .build()
}

/// Enrolls `did_str` in the default service through the given ports (see
/// [`ServiceFixtures::enroll_into`]).
pub async fn enroll_into(
    records: &Records,
    enrollments: &dyn EnrollmentStore,
    keys: &dyn SigningKeyStore,
    did_str: &str,
    boundaries: &[&str],
) -> Did {
    ServiceFixtures::default()
        .enroll_into(records, enrollments, keys, did_str, boundaries)
        .await
}
