//! A data directory or database of the TypeScript original, read for
//! `stratos migrate-from-ts` ([`crate::usecases::legacy`]): its enrollments, boundaries,
//! account signing keys and records, exactly as stored there. Nothing here is trusted: the
//! import parses and validates every value as it would a client's.

use async_trait::async_trait;

/// Failures of a [`LegacySource`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LegacySourceError {
    /// The source is not laid out as the TypeScript original lays out its data (a table or
    /// file is missing, a column has another type).
    #[error("not a data set of the TypeScript original: {0}")]
    Layout(String),
    /// Reading failed.
    #[error("reading the TypeScript data failed: {0}")]
    Backend(#[source] crate::Cause),
}

/// One enrollment of the original, with what the original kept about it.
#[derive(Clone, PartialEq, Eq)]
pub struct LegacyAccount {
    /// The DID, as stored.
    pub did: String,
    /// `enrolledAt`, as stored (an ISO 8601 time).
    pub enrolled_at: String,
    /// `pdsEndpoint`.
    pub pds_endpoint: Option<String>,
    /// `signingKeyDid`: the `did:key` the original published for the account.
    pub signing_key_did: Option<String>,
    /// `enrollmentRkey`: the key of the enrollment record on the PDS.
    pub enrollment_rkey: Option<String>,
    /// `active` (`'true'` / `'false'` as text in the original; absent rows never get here).
    pub active: bool,
    /// The boundaries (`enrollment_boundary`), as stored: qualified `{serviceDid}/{name}`.
    pub boundaries: Vec<String>,
    /// The account's P-256 private key as the original stored it (32 raw bytes), if found.
    pub signing_key: Option<Vec<u8>>,
}

impl std::fmt::Debug for LegacyAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The private key never appears in output.
        f.debug_struct("LegacyAccount")
            .field("did", &self.did)
            .field("enrolled_at", &self.enrolled_at)
            .field("pds_endpoint", &self.pds_endpoint)
            .field("signing_key_did", &self.signing_key_did)
            .field("enrollment_rkey", &self.enrollment_rkey)
            .field("active", &self.active)
            .field("boundaries", &self.boundaries)
            .field("signing_key", &self.signing_key.as_ref().map(|_| "…"))
            .finish()
    }
}

/// One record of an account's repository in the original (`stratos_record` joined with its
/// block).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyRecord {
    /// The collection.
    pub collection: String,
    /// The record key.
    pub rkey: String,
    /// The CID the original stored (often wrong: reference defect D1).
    pub stored_cid: String,
    /// The record's block (DAG-CBOR), or `None` when the original lost it.
    pub content: Option<Vec<u8>>,
}

/// Read access to one data set of the original.
#[async_trait]
pub trait LegacySource: Send + Sync {
    /// Every enrollment, in DID order.
    async fn accounts(&self) -> Result<Vec<LegacyAccount>, LegacySourceError>;
    /// The records of one account (as stored in [`LegacyAccount::did`]), in path order. An
    /// account whose repository is missing has none.
    async fn records(&self, did: &str) -> Result<Vec<LegacyRecord>, LegacySourceError>;
    /// How many blobs the account had uploaded (they are not imported; the report says so).
    async fn blob_count(&self, did: &str) -> Result<u64, LegacySourceError>;
}
