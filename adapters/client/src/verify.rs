//! Verifying what a Stratos service returns, with the account's signing key:
//! record proofs (`com.atproto.sync.getRecord`), whole repository exports
//! (`zone.stratos.sync.getRepo`), and the enrollment record a user publishes on their PDS
//! (its service attestation). Live `#commit` frames are verified by
//! [`crate::frame::CommitFrame::verify`].

use ipld_core::ipld::Ipld;
use stratos_domain::blocks::BlockRead as _;
use stratos_domain::car::CarIndex;
use stratos_domain::commit::SignedCommit;
use stratos_domain::crypto::PublicKey;
use stratos_domain::enrollment::EnrollmentRecord;
use stratos_domain::import::{self, ImportLimits};
use stratos_domain::syntax::{Did, Nsid, RecordKey, Tid};
use stratos_domain::{Cid, attestation, data, sync};

use crate::ClientError;

/// A record read through a verified proof.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedRecord {
    /// The record's CID.
    pub cid: Cid,
    /// The record.
    pub record: Ipld,
    /// Revision of the signed commit that holds it.
    pub rev: Tid,
}

fn failed(e: stratos_domain::Error) -> ClientError {
    ClientError::Verification(Box::new(e))
}

/// Verifies a `com.atproto.sync.getRecord` CAR for `did`'s `collection/rkey` with the account's
/// key. `Ok(None)` when the proof shows the record does not exist (at that commit).
pub fn record_proof(
    key: &PublicKey,
    did: &Did,
    collection: &Nsid,
    rkey: &RecordKey,
    car: &[u8],
) -> Result<Option<VerifiedRecord>, ClientError> {
    let path = format!("{collection}/{rkey}");
    let proven = sync::verify_record_proof(key, did, &path, car).map_err(failed)?;
    let (Some(cid), Some(bytes)) = (proven.cid, proven.record) else {
        return Ok(None);
    };
    Ok(Some(VerifiedRecord {
        cid,
        record: data::decode(&bytes).map_err(failed)?,
        rev: proven.rev,
    }))
}

/// What a verified repository export holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRepo {
    /// The commit's revision.
    pub rev: Tid,
    /// Its data root.
    pub data: Cid,
    /// `(collection/rkey, record CID)` of every record, in key order.
    pub records: Vec<(String, Cid)>,
}

/// Verifies a repository export (`zone.stratos.sync.getRepo`, a CAR with the commit as its
/// root): the commit is `did`'s and signed by `key`, and the tree obeys every MST rule with
/// every record block present and hash-checked.
pub fn repo_export(key: &PublicKey, did: &Did, car: &[u8]) -> Result<VerifiedRepo, ClientError> {
    let export = repo_export_records(key, did, car)?;
    Ok(VerifiedRepo {
        rev: export.rev,
        data: export.data,
        records: export
            .records
            .into_iter()
            .map(|r| (r.path, r.cid))
            .collect(),
    })
}

/// One record of a verified export.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportedRecord {
    /// `collection/rkey`.
    pub path: String,
    /// The record's CID (checked against its bytes).
    pub cid: Cid,
    /// The record.
    pub value: Ipld,
}

/// A verified export with its records' content ([`repo_export_records`]).
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedExport {
    /// The commit's revision.
    pub rev: Tid,
    /// Its data root.
    pub data: Cid,
    /// Every record, in key order.
    pub records: Vec<ExportedRecord>,
}

/// [`repo_export`], keeping each record's content (decoded): what a backfill indexes.
pub fn repo_export_records(
    key: &PublicKey,
    did: &Did,
    car: &[u8],
) -> Result<VerifiedExport, ClientError> {
    let limits = ImportLimits::default();
    let index = CarIndex::new(car, limits.car).map_err(failed)?;
    let [root] = index.roots() else {
        return Err(ClientError::Frame("an export has exactly one root".into()));
    };
    let commit_bytes = index
        .read(root)
        .map_err(failed)?
        .ok_or_else(|| failed(stratos_domain::Error::MissingBlock(*root)))?;
    let commit = SignedCommit::decode(commit_bytes).map_err(failed)?;
    if &commit.did != did {
        return Err(failed(stratos_domain::Error::InvalidRepo(
            "the export belongs to another account".into(),
        )));
    }
    commit.verify(key).map_err(failed)?;
    let repo = import::read_repo_car(car, limits).map_err(failed)?;
    let records = repo
        .records
        .into_iter()
        .map(|r| {
            Ok(ExportedRecord {
                value: data::decode(r.bytes).map_err(failed)?,
                path: r.path,
                cid: r.cid,
            })
        })
        .collect::<Result<Vec<_>, ClientError>>()?;
    Ok(VerifiedExport {
        rev: repo.rev,
        data: repo.data,
        records,
    })
}

/// Checks an enrollment record of `did` (`zone.stratos.actor.enrollment`, as JSON from the PDS)
/// against the key of the service it names, taken from the service's DID document (`#atproto`):
/// the attestation must be that key's signature over the user's DID, boundaries and signing
/// key. Returns the record and the user's signing key, the key to verify the account's commits
/// with. Trusting the key the attestation names, without the DID document, would prove nothing
/// about which service signed.
pub fn enrollment_record(
    did: &Did,
    record_json: &serde_json::Value,
    service_key: &PublicKey,
) -> Result<(EnrollmentRecord, PublicKey), ClientError> {
    let value = data::json_to_ipld(record_json).map_err(failed)?;
    let record = EnrollmentRecord::from_ipld(&value).map_err(failed)?;
    let expected = service_key.to_did_key();
    attestation::verify(
        &record.attestation,
        did,
        &record.boundaries,
        &record.signing_key,
        Some(&expected),
    )
    .map_err(failed)?;
    let user_key = PublicKey::from_did_key(&record.signing_key).map_err(failed)?;
    Ok((record, user_key))
}
