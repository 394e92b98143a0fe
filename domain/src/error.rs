//! The one error type of the domain crate.
//!
//! Variants are grouped by area; each carries enough context to produce a clear client-facing
//! message (the service maps them to XRPC errors in one place).

use ipld_core::cid::Cid;

/// Result alias used throughout the domain crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure the domain can report. Never constructed by panicking paths: malformed input
/// always surfaces as one of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ---- syntax -------------------------------------------------------------------------------
    /// An identifier did not match its atproto syntax.
    #[error("invalid {kind} {value:?}: {reason}")]
    Syntax {
        /// Which identifier kind (e.g. "DID", "handle", "NSID").
        kind: &'static str,
        /// The rejected input (truncated to a sane length by the constructor).
        value: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    // ---- data model / encoding ----------------------------------------------------------------
    /// A value is not valid atproto data (e.g. a float, a bad `$link`, a malformed blob).
    #[error("invalid atproto data: {0}")]
    Data(String),
    /// Bytes are not strict DAG-CBOR, or do not decode to the expected shape.
    #[error("invalid DAG-CBOR: {0}")]
    CborDecode(String),
    /// A value could not be encoded as DAG-CBOR.
    #[error("DAG-CBOR encoding failed: {0}")]
    CborEncode(String),
    /// A CID string or binary CID is malformed or of an unsupported kind.
    #[error("invalid CID: {0}")]
    Cid(String),

    // ---- crypto -------------------------------------------------------------------------------
    /// A key (did:key, multibase, raw bytes) is malformed or of an unsupported type.
    #[error("invalid key: {0}")]
    Key(String),
    /// A signature is malformed (wrong length, DER, high-S) or does not verify.
    #[error("invalid signature: {0}")]
    Signature(String),

    // ---- repository (MST, commit) -------------------------------------------------------------
    /// A key is not a valid MST key (`collection/rkey`).
    #[error("invalid MST key {key:?}: {reason}")]
    MstKey {
        /// The rejected key.
        key: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A block needed to complete the operation is not available from the block source.
    #[error("block not found: {0}")]
    MissingBlock(Cid),
    /// A tree node violates MST structure (ordering, layers, prefix compression).
    #[error("malformed MST node {cid}: {reason}")]
    MstNode {
        /// The offending node.
        cid: Cid,
        /// What is wrong with it.
        reason: String,
    },
    /// A create targets a path that already holds a record.
    #[error("record already exists: {0}")]
    RecordExists(String),
    /// An update or delete targets a path that holds no record.
    #[error("record not found: {0}")]
    RecordNotFound(String),
    /// A commit is malformed, unsigned, for another DID, or otherwise unusable.
    #[error("invalid commit: {0}")]
    Commit(String),
    /// One batch of writes names the same record more than once.
    #[error("more than one write to {0} in one request")]
    DuplicateWrite(String),
    /// A repository handed in from outside (an imported CAR) is incomplete or breaks a rule.
    #[error("invalid repository: {0}")]
    InvalidRepo(String),
    /// A repository handed in from outside holds more records than allowed.
    #[error("the repository holds more than {limit} records")]
    TooManyRecords {
        /// The configured limit.
        limit: usize,
    },

    // ---- CAR ----------------------------------------------------------------------------------
    /// The CAR header is missing or malformed.
    #[error("invalid CAR header: {0}")]
    CarHeader(String),
    /// The CAR input ends in the middle of a section.
    #[error("truncated CAR: {0}")]
    CarTruncated(&'static str),
    /// The CAR input is larger than the configured limit.
    #[error("CAR exceeds the size limit of {limit} bytes")]
    CarTooLarge {
        /// The configured total limit in bytes.
        limit: u64,
    },
    /// One CAR block is larger than the configured per-block limit.
    #[error("CAR block of {size} bytes exceeds the limit of {limit} bytes")]
    CarBlockTooLarge {
        /// Declared size of the block section.
        size: u64,
        /// The configured per-block limit.
        limit: u64,
    },
    /// A block's bytes do not hash to its CID.
    #[error("CAR block does not match its CID {0}")]
    CarHashMismatch(Cid),
    /// A CAR section is malformed (bad varint, bad CID, unsupported hash).
    #[error("malformed CAR section: {0}")]
    CarSection(String),

    // ---- lexicons ------------------------------------------------------------------------------
    /// A lexicon document is malformed, or a schema needed for validation is missing.
    #[error("lexicon error: {0}")]
    Lexicon(String),
    /// A value does not satisfy its lexicon schema; `path` locates the offending field.
    #[error("{path}: {message}")]
    Validation {
        /// Dotted path of the field (`$` for the value itself).
        path: String,
        /// What is wrong.
        message: String,
    },

    /// A blob in a record is of a type its lexicon field does not accept, or the record declares
    /// a type other than the one the blob was stored as (the type its bytes show).
    #[error("{0}")]
    BlobTypeNotAccepted(String),
    /// A blob in a record is larger than its lexicon field's `maxSize`.
    #[error("{0}")]
    BlobTooLarge(String),

    // ---- boundaries and writes ----------------------------------------------------------------
    /// A boundary string is not of the form `{serviceDid}/{name}`.
    #[error("invalid boundary {boundary:?}: {reason}")]
    BoundaryFormat {
        /// The rejected value.
        boundary: String,
        /// Why.
        reason: &'static str,
    },
    /// A boundary given by its bare name where the qualified value is required.
    #[error(
        "invalid boundary {boundary:?}: records name boundaries in full, \
         {{serviceDid}}/{{name}}; on this service {service} use {qualified:?}"
    )]
    BoundaryUnqualified {
        /// The rejected value.
        boundary: String,
        /// This service's DID.
        service: String,
        /// The value to use instead.
        qualified: String,
    },
    /// A boundary belongs to another Stratos service.
    #[error("boundary {boundary:?} belongs to another service, not {expected}")]
    BoundaryServiceMismatch {
        /// The rejected boundary.
        boundary: String,
        /// This service's DID.
        expected: String,
    },
    /// A boundary is not one this service offers.
    #[error("boundary {boundary:?} is not offered by this service")]
    BoundaryNotAllowed {
        /// The rejected boundary.
        boundary: String,
    },
    /// The author does not hold a boundary the record names.
    #[error("you do not hold boundary {boundary:?}")]
    BoundaryNotHeld {
        /// The first boundary the author lacks.
        boundary: String,
    },
    /// A record that must carry a boundary carries none.
    #[error("record must have at least one boundary")]
    MissingBoundary,
    /// The service offers no boundaries, so nothing can be written.
    #[error("the Stratos namespace is not enabled on this service (no boundaries configured)")]
    NamespaceDisabled,
    /// The collection cannot be stored in Stratos.
    #[error("collection {collection:?} cannot be written to Stratos: {reason}")]
    CollectionNotWritable {
        /// The collection.
        collection: String,
        /// Why.
        reason: &'static str,
    },
    /// A reply points at a record outside the Stratos namespace.
    #[error("replies must reference Stratos records; {field} is {uri}")]
    CrossNamespaceReply {
        /// `reply.parent` or `reply.root`.
        field: &'static str,
        /// The offending URI.
        uri: String,
    },
    /// A reply names a boundary its parent does not have.
    #[error("reply boundaries must be a subset of the parent's; {boundary:?} is not on the parent")]
    ReplyBoundaryEscalation {
        /// The first boundary not on the parent.
        boundary: String,
    },
    /// A record embeds content across the public/private namespace line.
    #[error("cross-namespace embed of {uri}")]
    CrossNamespaceEmbed {
        /// The embedded record's URI.
        uri: String,
    },

    // ---- enrollment and attestation -------------------------------------------------------------
    /// The account may not enroll; the reason says why.
    #[error("{}", .0.message())]
    EnrollmentDenied(crate::enrollment::DenialReason),
    /// An enrollment record is malformed.
    #[error("invalid enrollment record: {0}")]
    EnrollmentRecord(String),
    /// An attestation does not verify.
    #[error("attestation does not verify: {0}")]
    Attestation(String),

    // ---- policy -------------------------------------------------------------------------------
    /// The account wrote too much recently.
    #[error("rate limit exceeded; retry in {retry_after_ms} ms")]
    RateLimited {
        /// When the next write would be accepted.
        retry_after_ms: i64,
    },

    // ---- authentication -----------------------------------------------------------------------
    /// A service-auth JWT, DPoP proof or access token was rejected; the reason says why.
    #[error("{0}")]
    Token(crate::auth::TokenError),

    // ---- block source -------------------------------------------------------------------------
    /// The block source (an adapter) failed; the message comes from it.
    #[error("block source failed: {0}")]
    Store(String),
}

impl Error {
    /// Builds a [`Error::Syntax`], truncating very long inputs so errors stay small.
    pub(crate) fn syntax(kind: &'static str, value: &str, reason: &'static str) -> Self {
        const MAX: usize = 256;
        let value = if value.len() > MAX {
            let mut end = MAX;
            while !value.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}…", &value[..end])
        } else {
            value.to_owned()
        };
        Error::Syntax {
            kind,
            value,
            reason,
        }
    }
}
