//! Enrollment use cases: enroll (eligibility, key, repository, boundaries, attested PDS record),
//! unenroll (hard delete of private data), status.

use std::sync::Arc;

use stratos_domain::attestation;
use stratos_domain::boundary::Boundary;
use stratos_domain::crypto::{KeyAlgorithm, Keypair};
use stratos_domain::enrollment::{
    Admission, ENROLLMENT_COLLECTION, EnrollmentPolicy, EnrollmentRecord, Precheck, enrollment_rkey,
};
use stratos_domain::syntax::{Datetime, Did, Nsid, RecordKey};
use stratos_domain::{Error as DomainError, data};

use super::UseCaseError;
use super::records::Records;
use super::stream::{self, EventSink};
use crate::blob_store::BlobStore;
use crate::enrollment_store::{Enrollment, EnrollmentStore};
use crate::env::{AllowList, Clock, IdentityResolver};
use crate::keys::SigningKeyStore;
use crate::outbox::{Outbox, OutboxAction, OutboxItem};
use crate::repo_store::RepoStore;

/// Everything the enrollment use cases need.
#[derive(Clone)]
pub struct EnrollmentDeps {
    /// Per-actor repositories.
    pub repos: Arc<dyn RepoStore>,
    /// Enrollments.
    pub enrollments: Arc<dyn EnrollmentStore>,
    /// Account signing keys.
    pub keys: Arc<dyn SigningKeyStore>,
    /// PDS writes.
    pub outbox: Arc<dyn Outbox>,
    /// Blobs.
    pub blobs: Arc<dyn BlobStore>,
    /// DID resolution.
    pub identity: Arc<dyn IdentityResolver>,
    /// The external allow-list, when configured.
    pub allow_list: Option<Arc<dyn AllowList>>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Who may enroll and with which boundaries.
    pub policy: EnrollmentPolicy,
    /// This service's DID.
    pub service_did: Did,
    /// This service's public URL (the `service` of enrollment records).
    pub service_endpoint: String,
    /// The service's secp256k1 attestation key.
    pub service_key: Arc<Keypair>,
    /// The record use cases (for the repository's first commit).
    pub records: Arc<Records>,
}

impl std::fmt::Debug for EnrollmentDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrollmentDeps")
            .field("service_did", &self.service_did)
            .field("service_endpoint", &self.service_endpoint)
            .finish_non_exhaustive()
    }
}

/// The result of an enrollment request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollOutcome {
    /// True for a new enrollment, false when the account was already enrolled.
    pub new: bool,
    /// The stored enrollment.
    pub enrollment: Enrollment,
}

/// An account's status as shown to itself.
#[derive(Debug, Clone, PartialEq)]
pub struct EnrollmentStatus {
    /// The stored enrollment.
    pub enrollment: Enrollment,
    /// A fresh attestation over the current boundaries.
    pub attestation: attestation::Attestation,
}

/// A change to one account's boundaries.
#[derive(Debug, Clone, Copy)]
pub enum BoundaryChange<'a> {
    /// Add one boundary.
    Add(&'a Boundary),
    /// Remove one boundary.
    Remove(&'a Boundary),
    /// Replace all boundaries.
    Set(&'a [Boundary]),
}

/// The enrollment use cases.
#[derive(Debug)]
pub struct Enrollments {
    deps: EnrollmentDeps,
    /// The live stream, if any.
    events: Option<Arc<dyn EventSink>>,
}

impl Enrollments {
    /// Builds the use cases over `deps`.
    pub fn new(deps: EnrollmentDeps) -> Self {
        Self { deps, events: None }
    }

    /// Announces every enrollment change to `sink` (the service-level sync stream). Without
    /// one, changes cost nothing extra.
    pub fn with_event_sink(mut self, sink: Arc<dyn EventSink>) -> Self {
        self.events = Some(sink);
        self
    }

    /// Hands the logged events of a change that just committed to the stream: one log read per
    /// change. The events are durable already; if this read fails, live subscribers get them
    /// with the next change or from the log when they reconnect, so the change still succeeds.
    async fn announce(&self) {
        if let Some(sink) = &self.events {
            let _ = stream::pump_enrollments(self.deps.enrollments.as_ref(), sink.as_ref()).await;
        }
    }

    /// Enrolls `did` (or refreshes the PDS record of an existing enrollment).
    pub async fn enroll(&self, did: &Did) -> Result<EnrollOutcome, UseCaseError> {
        if let Some(existing) = self.deps.enrollments.get(did).await? {
            self.publish_record(&existing).await?;
            return Ok(EnrollOutcome {
                new: false,
                enrollment: existing,
            });
        }
        let admission = self.admit(did).await?;
        let key = Keypair::generate(KeyAlgorithm::P256);
        self.deps.keys.put(did, &key).await?;
        // The first commit is signed with the account's own key: one verification story.
        self.deps.records.init_repo(did, &key).await?;
        let now = Datetime::from_unix_millis(self.deps.clock.now_ms());
        let enrollment = Enrollment {
            did: did.clone(),
            enrolled_at: now,
            pds_endpoint: admission.pds_endpoint.clone(),
            signing_key: key.did_key(),
            enrollment_rkey: Some(self.record_key()?),
            boundaries: admission.boundaries.clone(),
        };
        self.deps.enrollments.enroll(&enrollment).await?;
        self.deps.records.forget_enrollment(did);
        self.announce().await;
        self.publish_record(&enrollment).await?;
        let stored = self
            .deps
            .enrollments
            .get(did)
            .await?
            .ok_or_else(|| UseCaseError::Internal("enrollment vanished".into()))?;
        Ok(EnrollOutcome {
            new: true,
            enrollment: stored,
        })
    }

    /// Enrolls `did` by operator decision (the admin endpoint): no eligibility check, the given
    /// boundaries (already qualified and checked against the service's offer by the caller).
    /// An existing enrollment gets its boundaries replaced instead.
    pub async fn enroll_direct(
        &self,
        did: &Did,
        boundaries: &[Boundary],
    ) -> Result<EnrollOutcome, UseCaseError> {
        if self.deps.enrollments.get(did).await?.is_some() {
            self.deps
                .enrollments
                .set_boundaries(did, boundaries)
                .await?;
            self.deps.records.forget_enrollment(did);
            self.announce().await;
            let enrollment = self.require(did).await?;
            self.publish_record(&enrollment).await?;
            return Ok(EnrollOutcome {
                new: false,
                enrollment,
            });
        }
        let key = Keypair::generate(KeyAlgorithm::P256);
        self.deps.keys.put(did, &key).await?;
        self.deps.records.init_repo(did, &key).await?;
        let enrollment = Enrollment {
            did: did.clone(),
            enrolled_at: Datetime::from_unix_millis(self.deps.clock.now_ms()),
            pds_endpoint: None,
            signing_key: key.did_key(),
            enrollment_rkey: Some(self.record_key()?),
            boundaries: boundaries.to_vec(),
        };
        self.deps.enrollments.enroll(&enrollment).await?;
        self.deps.records.forget_enrollment(did);
        self.announce().await;
        let stored = self.require(did).await?;
        self.publish_record(&stored).await?;
        Ok(EnrollOutcome {
            new: true,
            enrollment: stored,
        })
    }

    /// Enrolls an account carried over from elsewhere (`stratos migrate-from-ts`) as it was
    /// there: its enrollment time, PDS, record key and boundaries (already checked against the
    /// service's offer by the caller) and its own signing `key`, with an empty repository signed
    /// by that key, and queues its attested enrollment record for the PDS. No eligibility check
    /// (the operator decides). Fails if `enrollment.did` is enrolled already, or if
    /// `enrollment.signing_key` is not `key`'s `did:key`.
    pub async fn adopt(&self, enrollment: &Enrollment, key: &Keypair) -> Result<(), UseCaseError> {
        let did = &enrollment.did;
        if enrollment.signing_key != key.did_key() {
            return Err(UseCaseError::InvalidRequest(format!(
                "the enrollment of {did} names signing key {}, not the key given",
                enrollment.signing_key
            )));
        }
        if self.deps.enrollments.get(did).await?.is_some() {
            return Err(UseCaseError::InvalidRequest(format!(
                "{did} is enrolled already"
            )));
        }
        self.deps.keys.put(did, key).await?;
        self.deps.records.init_repo(did, key).await?;
        let mut adopted = enrollment.clone();
        if adopted.enrollment_rkey.is_none() {
            adopted.enrollment_rkey = Some(self.record_key()?);
        }
        self.deps.enrollments.enroll(&adopted).await?;
        self.deps.records.forget_enrollment(did);
        self.announce().await;
        let stored = self.require(did).await?;
        self.publish_record(&stored).await
    }

    /// Changes one account's boundaries (never anyone else's: reference defect D8) and
    /// republishes its attested enrollment record. Returns the new boundaries.
    pub async fn change_boundaries(
        &self,
        did: &Did,
        change: BoundaryChange<'_>,
    ) -> Result<Vec<Boundary>, UseCaseError> {
        self.require(did).await?;
        let store = &self.deps.enrollments;
        let now = match change {
            BoundaryChange::Add(b) => store.add_boundary(did, b).await?,
            BoundaryChange::Remove(b) => store.remove_boundary(did, b).await?,
            BoundaryChange::Set(all) => {
                store.set_boundaries(did, all).await?;
                store.boundaries(did).await?
            }
        };
        self.deps.records.forget_enrollment(did);
        self.announce().await;
        let enrollment = self.require(did).await?;
        self.publish_record(&enrollment).await?;
        Ok(now)
    }

    /// The record key of this service's enrollment record on a PDS.
    fn record_key(&self) -> Result<RecordKey, UseCaseError> {
        Ok(enrollment_rkey(&self.deps.service_did)?)
    }

    async fn require(&self, did: &Did) -> Result<Enrollment, UseCaseError> {
        self.deps
            .enrollments
            .get(did)
            .await?
            .ok_or_else(|| UseCaseError::NotEnrolled(did.clone()))
    }

    /// Decides eligibility: configuration, the external list, then the DID document.
    async fn admit(&self, did: &Did) -> Result<Admission, UseCaseError> {
        let on_list = match &self.deps.allow_list {
            Some(list) => list.contains(did).await?,
            None => false,
        };
        match self.deps.policy.precheck(did, on_list) {
            Precheck::Allowed => Ok(self.deps.policy.admission()),
            Precheck::Denied(reason) => Err(DomainError::EnrollmentDenied(reason).into()),
            Precheck::NeedsDidDocument => {
                // A resolution failure is a denial (`DidNotResolved`), not a server error.
                let doc = self.deps.identity.resolve_did(did).await.ok().flatten();
                Ok(self.deps.policy.decide_with_document(doc.as_ref())?)
            }
        }
    }

    /// Queues the attested enrollment record for the account's PDS.
    async fn publish_record(&self, enrollment: &Enrollment) -> Result<(), UseCaseError> {
        let attestation = attestation::attest(
            self.deps.service_key.as_ref(),
            &enrollment.did,
            &enrollment.boundaries,
            &enrollment.signing_key,
        )?;
        let record = EnrollmentRecord {
            service: self.deps.service_endpoint.clone(),
            boundaries: enrollment
                .boundaries
                .iter()
                .map(ToString::to_string)
                .collect(),
            signing_key: enrollment.signing_key.clone(),
            attestation,
            created_at: Datetime::from_unix_millis(self.deps.clock.now_ms()),
        };
        let json = data::ipld_to_json(&record.to_ipld())?;
        let rkey = match &enrollment.enrollment_rkey {
            Some(rkey) => rkey.clone(),
            None => self.record_key()?,
        };
        self.deps
            .outbox
            .enqueue(OutboxItem {
                did: enrollment.did.clone(),
                action: OutboxAction::PutRecord {
                    collection: enrollment_collection()?,
                    rkey,
                    record_json: json.to_string(),
                },
            })
            .await?;
        Ok(())
    }

    /// Whether the account is enrolled (no attestation signed).
    pub async fn is_enrolled(&self, did: &Did) -> Result<bool, UseCaseError> {
        Ok(self.deps.enrollments.get(did).await?.is_some())
    }

    /// The account's enrollment with a fresh attestation, `None` when not enrolled.
    pub async fn status(&self, did: &Did) -> Result<Option<EnrollmentStatus>, UseCaseError> {
        let Some(enrollment) = self.deps.enrollments.get(did).await? else {
            return Ok(None);
        };
        let attestation = attestation::attest(
            self.deps.service_key.as_ref(),
            did,
            &enrollment.boundaries,
            &enrollment.signing_key,
        )?;
        Ok(Some(EnrollmentStatus {
            enrollment,
            attestation,
        }))
    }

    /// Hard-deletes the account's private data: enrollment, repository, key and blobs. What
    /// Stratos wrote to the account's PDS goes too: pending writes are dropped, and the
    /// deletions of every record's stub and of the enrollment record are queued, followed by the
    /// end of the account's OAuth session (so the deletes are delivered with it first).
    pub async fn unenroll(&self, did: &Did) -> Result<(), UseCaseError> {
        let enrollment = self
            .deps
            .enrollments
            .get(did)
            .await?
            .ok_or_else(|| UseCaseError::NotEnrolled(did.clone()))?;
        // Read before the repository is destroyed: every record has its stub on the PDS.
        let stubs = self.record_paths(did).await?;
        self.deps.outbox.purge(did).await?;
        self.deps.enrollments.unenroll(did).await?;
        self.deps.repos.destroy_actor(did).await?;
        self.deps.records.forget_actor(did);
        // After the repository is gone, so a per-actor subscriber ended by this event cannot
        // reconnect and still read it.
        self.announce().await;
        self.deps.keys.delete(did).await?;
        self.deps.blobs.delete_actor(did).await?;
        let rkey = match enrollment.enrollment_rkey {
            Some(rkey) => rkey,
            None => self.record_key()?,
        };
        let deletes = stubs
            .into_iter()
            .chain(std::iter::once((enrollment_collection()?, rkey)));
        for (collection, rkey) in deletes {
            self.deps
                .outbox
                .enqueue(OutboxItem {
                    did: did.clone(),
                    action: OutboxAction::DeleteRecord { collection, rkey },
                })
                .await?;
        }
        self.deps
            .outbox
            .enqueue(OutboxItem {
                did: did.clone(),
                action: OutboxAction::EndSession {
                    authorized_by: self.deps.clock.now_ms().div_euclid(1000),
                },
            })
            .await?;
        Ok(())
    }

    /// Collection and key of every record in the account's repository (its MST's keys).
    async fn record_paths(&self, did: &Did) -> Result<Vec<(Nsid, RecordKey)>, UseCaseError> {
        let Some(head) = self.deps.repos.head(did).await? else {
            return Ok(Vec::new());
        };
        // The whole repository in memory once; an account leaves rarely, and the export
        // (getRepo) needs the same.
        let blocks = self.deps.repos.all_blocks(did).await?;
        let keys = stratos_domain::mst::Mst::load(&blocks, head.data).entries()?;
        keys.iter()
            .map(|(path, _)| super::writes::parse_path(path))
            .collect()
    }
}

/// The enrollment record's collection.
fn enrollment_collection() -> Result<Nsid, UseCaseError> {
    Ok(Nsid::parse(ENROLLMENT_COLLECTION)?)
}
