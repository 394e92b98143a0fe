//! Service-level enrollment records and the boundaries each account holds.

use async_trait::async_trait;
use stratos_domain::syntax::Did;

/// One enrollment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrollment {
    /// The account.
    pub did: String,
    /// RFC 3339 enrollment time.
    pub enrolled_at: String,
    /// The account's PDS, when known.
    pub pds_endpoint: Option<String>,
    /// The account's repository signing key (`did:key`).
    pub signing_key: String,
    /// Record key of the enrollment record on the PDS.
    pub enrollment_rkey: Option<String>,
    /// Boundaries held (qualified), sorted.
    pub boundaries: Vec<String>,
}

/// Failures of an [`EnrollmentStore`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnrollmentStoreError {
    /// The account is not enrolled.
    #[error("{0} is not enrolled")]
    NotEnrolled(String),
    /// The backend failed.
    #[error("enrollment store failed: {0}")]
    Backend(String),
}

/// Result alias of this port.
pub type EnrollmentResult<T> = Result<T, EnrollmentStoreError>;

/// Enrollment storage.
#[async_trait]
pub trait EnrollmentStore: Send + Sync {
    /// Inserts or replaces an enrollment with its boundary set.
    async fn enroll(&self, enrollment: &Enrollment) -> EnrollmentResult<()>;
    /// One enrollment.
    async fn get(&self, did: &Did) -> EnrollmentResult<Option<Enrollment>>;
    /// The boundaries an account holds (empty when not enrolled).
    async fn boundaries(&self, did: &Did) -> EnrollmentResult<Vec<String>>;
    /// Adds one boundary (no-op when held). Fails with `NotEnrolled`.
    async fn add_boundary(&self, did: &Did, boundary: &str) -> EnrollmentResult<Vec<String>>;
    /// Removes one boundary of this account only (the original removed it for everyone, D8).
    async fn remove_boundary(&self, did: &Did, boundary: &str) -> EnrollmentResult<Vec<String>>;
    /// Replaces the boundary set.
    async fn set_boundaries(
        &self,
        did: &Did,
        boundaries: &[String],
    ) -> EnrollmentResult<Vec<String>>;
    /// Sets the PDS enrollment record key.
    async fn set_enrollment_rkey(&self, did: &Did, rkey: &str) -> EnrollmentResult<()>;
    /// Deletes the enrollment and its boundaries; returns whether one existed.
    async fn unenroll(&self, did: &Did) -> EnrollmentResult<bool>;
    /// Enrollments with `did > cursor`, ascending by DID, at most `limit` (a working cursor:
    /// the original's SQLite store ignored it, D9).
    async fn list(&self, cursor: Option<&str>, limit: usize) -> EnrollmentResult<Vec<Enrollment>>;
}
