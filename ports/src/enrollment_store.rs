//! Service-level enrollment records and the boundaries each account holds.

use async_trait::async_trait;
use stratos_domain::boundary::Boundary;
use stratos_domain::syntax::{Datetime, Did, RecordKey};

/// One enrollment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrollment {
    /// The account.
    pub did: Did,
    /// Enrollment time.
    pub enrolled_at: Datetime,
    /// The account's PDS, when known.
    pub pds_endpoint: Option<String>,
    /// The account's repository signing key (`did:key`).
    pub signing_key: String,
    /// Record key of the enrollment record on the PDS.
    pub enrollment_rkey: Option<RecordKey>,
    /// Boundaries held (qualified), sorted.
    pub boundaries: Vec<Boundary>,
}

/// What happened to an enrollment, as recorded in the service-level event log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EnrollmentAction {
    /// The account enrolled (it had no enrollment before).
    Enroll,
    /// An existing enrollment changed (boundaries, or a re-enrollment replacing the row).
    Update,
    /// The account left; its private data is gone.
    Unenroll,
}

impl EnrollmentAction {
    /// The wire name (`enroll`, `update`, `unenroll`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enroll => "enroll",
            Self::Update => "update",
            Self::Unenroll => "unenroll",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "enroll" => Some(Self::Enroll),
            "update" => Some(Self::Update),
            "unenroll" => Some(Self::Unenroll),
            _ => None,
        }
    }
}

/// One entry of the service-level enrollment log. Every store appends one in the same
/// transaction as the change it records, so the log never disagrees with the enrollments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentEvent {
    /// Service-wide sequence number, starting at 1; consecutive (no gaps) and in commit order.
    pub seq: u64,
    /// The account.
    pub did: Did,
    /// What happened.
    pub action: EnrollmentAction,
    /// Time the change was recorded.
    pub time: Datetime,
    /// The boundaries held after the change (sorted; empty for `unenroll`).
    pub boundaries: Vec<Boundary>,
}

/// Failures of an [`EnrollmentStore`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnrollmentStoreError {
    /// The account is not enrolled.
    #[error("{0} is not enrolled")]
    NotEnrolled(Did),
    /// The backend failed.
    #[error("enrollment store failed: {0}")]
    Backend(#[source] crate::Cause),
}

/// Result alias of this port.
pub type EnrollmentResult<T> = Result<T, EnrollmentStoreError>;

/// Enrollment storage.
///
/// Every change (`enroll`, the boundary changes, a successful `unenroll`) also appends an
/// [`EnrollmentEvent`] atomically with it; `set_enrollment_rkey` does not (nothing a stream
/// consumer sees changes).
#[async_trait]
pub trait EnrollmentStore: Send + Sync {
    /// Inserts or replaces an enrollment with its boundary set.
    async fn enroll(&self, enrollment: &Enrollment) -> EnrollmentResult<()>;
    /// One enrollment.
    async fn get(&self, did: &Did) -> EnrollmentResult<Option<Enrollment>>;
    /// The boundaries an account holds (empty when not enrolled).
    async fn boundaries(&self, did: &Did) -> EnrollmentResult<Vec<Boundary>>;
    /// Adds one boundary (no-op when held). Fails with `NotEnrolled`.
    async fn add_boundary(&self, did: &Did, boundary: &Boundary)
    -> EnrollmentResult<Vec<Boundary>>;
    /// Removes one boundary of this account only (the original removed it for everyone, D8).
    async fn remove_boundary(
        &self,
        did: &Did,
        boundary: &Boundary,
    ) -> EnrollmentResult<Vec<Boundary>>;
    /// Replaces the boundary set.
    async fn set_boundaries(
        &self,
        did: &Did,
        boundaries: &[Boundary],
    ) -> EnrollmentResult<Vec<Boundary>>;
    /// Sets the PDS enrollment record key.
    async fn set_enrollment_rkey(&self, did: &Did, rkey: &RecordKey) -> EnrollmentResult<()>;
    /// Deletes the enrollment and its boundaries; returns whether one existed.
    async fn unenroll(&self, did: &Did) -> EnrollmentResult<bool>;
    /// Enrollments with `did > cursor`, ascending by DID, at most `limit` (a working cursor:
    /// the original's SQLite store ignored it, D9).
    async fn list(&self, cursor: Option<&Did>, limit: usize) -> EnrollmentResult<Vec<Enrollment>>;
    /// Enrollment events with `seq > cursor`, ascending, at most `limit`.
    async fn events_after(
        &self,
        cursor: u64,
        limit: usize,
    ) -> EnrollmentResult<Vec<EnrollmentEvent>>;
    /// The highest enrollment event sequence number (0 when the log is empty).
    async fn latest_event_seq(&self) -> EnrollmentResult<u64>;
    /// Retention: deletes events with `seq < before`, but always keeps the newest event so
    /// sequence numbers are never reused. Returns how many were deleted.
    async fn prune_events(&self, before: u64) -> EnrollmentResult<u64>;
}
