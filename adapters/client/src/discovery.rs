//! Finding where an account's private records live: its `zone.stratos.actor.enrollment`
//! records (one per Stratos service), each checked against the service's DID document.
//!
//! For every record: its key names the service (`enrollment_rkey` of the service DID), the
//! service DID's document is resolved, the attestation must be signed by a key that document
//! lists, the record's `service` URL must be the document's `StratosService` endpoint, and the
//! attestation must cover the user's DID, boundaries and signing key. Only then is the user's
//! signing key trusted to verify the account's commits. A record that fails is reported with
//! its reason and does not hide the others.
//!
//! The account's records come through [`PublicRecords`] and DID documents through
//! [`IdentityResolver`]; `stratos_network::HttpIdentityResolver` implements both, holding the
//! PDS and `did:web` hosts (which accounts choose) to public addresses.

use std::sync::Arc;

use stratos_domain::crypto::PublicKey;
use stratos_domain::did_doc::DidDocument;
use stratos_domain::enrollment::{
    ENROLLMENT_COLLECTION, EnrollmentRecord, enrollment_rkey, normalize_endpoint,
};
use stratos_domain::syntax::{Did, Nsid, RecordKey};
use stratos_ports::env::{IdentityResolver, PublicRecords};

use crate::{ClientError, verify};

/// Enrollment records read per account (one per service; a hundred is far more than anyone
/// holds).
pub const MAX_ENROLLMENTS: usize = 100;

/// A checked enrollment: where the account's private records are and how to verify them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrollment {
    /// The Stratos service's DID.
    pub service_did: Did,
    /// Its endpoint (the record's `service`, equal to the DID document's).
    pub service_url: String,
    /// The record's key.
    pub rkey: RecordKey,
    /// The boundaries the service attested.
    pub boundaries: Vec<String>,
    /// The account's signing key at that service (verifies its commits).
    pub signing_key: PublicKey,
    /// The service's key that signed the attestation.
    pub service_key: PublicKey,
    /// The record as read.
    pub record: EnrollmentRecord,
}

/// What [`Discovery::enrollments`] found.
#[derive(Debug, Default)]
pub struct Discovered {
    /// Records that passed every check, in the PDS's order.
    pub enrollments: Vec<Enrollment>,
    /// Records that did not, with the reason.
    pub rejected: Vec<(RecordKey, ClientError)>,
}

/// Discovers and checks enrollments; see the module documentation.
#[derive(Clone)]
pub struct Discovery {
    identity: Arc<dyn IdentityResolver>,
    records: Arc<dyn PublicRecords>,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery").finish_non_exhaustive()
    }
}

fn backend(e: stratos_ports::env::EnvError) -> ClientError {
    ClientError::Discovery(e.to_string())
}

impl Discovery {
    /// Discovery over these ports.
    pub fn new(identity: Arc<dyn IdentityResolver>, records: Arc<dyn PublicRecords>) -> Self {
        Self { identity, records }
    }

    /// Every enrollment record of `did`, checked.
    pub async fn enrollments(&self, did: &Did) -> Result<Discovered, ClientError> {
        let collection = Nsid::parse(ENROLLMENT_COLLECTION)
            .map_err(|e| ClientError::Discovery(e.to_string()))?;
        let records = self
            .records
            .list_records(did, &collection, MAX_ENROLLMENTS)
            .await
            .map_err(backend)?;
        let mut found = Discovered::default();
        for (rkey, value) in records {
            match self.check(did, &rkey, &value).await {
                Ok(e) => found.enrollments.push(e),
                Err(e) => found.rejected.push((rkey, e)),
            }
        }
        Ok(found)
    }

    /// `did`'s checked enrollment at the service `service_did`, if it has one.
    pub async fn enrollment_at(
        &self,
        did: &Did,
        service_did: &Did,
    ) -> Result<Option<Enrollment>, ClientError> {
        let rkey =
            enrollment_rkey(service_did).map_err(|e| ClientError::Discovery(e.to_string()))?;
        let found = self.enrollments(did).await?;
        if let Some((_, e)) = found.rejected.into_iter().find(|(k, _)| *k == rkey) {
            return Err(e);
        }
        Ok(found.enrollments.into_iter().find(|e| e.rkey == rkey))
    }

    /// Checks one enrollment record of `did` (from the PDS, or from a firehose event) stored
    /// under `rkey`.
    pub async fn check(
        &self,
        did: &Did,
        rkey: &RecordKey,
        value: &serde_json::Value,
    ) -> Result<Enrollment, ClientError> {
        let refused = |m: String| ClientError::Discovery(m);
        let service_did = service_did_of(rkey)?;
        let doc = self
            .identity
            .resolve_did(&service_did)
            .await
            .map_err(backend)?
            .ok_or_else(|| refused(format!("the service {service_did} does not resolve")))?;
        let parsed =
            DidDocument::from_json(&doc).map_err(|e| refused(format!("{service_did}: {e}")))?;
        if parsed.id() != &service_did {
            return Err(refused(format!(
                "the document of {service_did} names another DID"
            )));
        }
        let record_value =
            stratos_domain::data::json_to_ipld(value).map_err(|e| refused(e.to_string()))?;
        let record =
            EnrollmentRecord::from_ipld(&record_value).map_err(|e| refused(e.to_string()))?;
        // The attestation's key must be one the service's document lists.
        let service_key = document_keys(&doc)
            .into_iter()
            .find(|k| k.to_did_key() == record.attestation.signing_key)
            .ok_or_else(|| {
                refused(format!(
                    "the attestation is signed by {}, not a key of {service_did}",
                    record.attestation.signing_key
                ))
            })?;
        let endpoints = stratos_endpoints(&doc);
        if !endpoints
            .iter()
            .any(|e| normalize_endpoint(e) == normalize_endpoint(&record.service))
        {
            return Err(refused(format!(
                "{} is not the endpoint of {service_did}",
                record.service
            )));
        }
        let (record, signing_key) = verify::enrollment_record(did, value, &service_key)?;
        Ok(Enrollment {
            service_did,
            service_url: normalize_endpoint(&record.service).to_owned(),
            rkey: rkey.clone(),
            boundaries: record.boundaries.clone(),
            signing_key,
            service_key,
            record,
        })
    }
}

/// The service DID an enrollment record key names: the key itself, except that a `did:web`
/// with a port (atproto allows ports on `localhost` only) has its `:` escaped again.
pub fn service_did_of(rkey: &RecordKey) -> Result<Did, ClientError> {
    let key = rkey.as_str();
    let did = match key.strip_prefix("did:web:localhost:") {
        Some(port) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            format!("did:web:localhost%3A{port}")
        }
        _ => key.to_owned(),
    };
    let did = Did::parse(&did).map_err(|_| {
        ClientError::Discovery(format!("the record key {key} does not name a service DID"))
    })?;
    if enrollment_rkey(&did).ok().as_ref() != Some(rkey) {
        return Err(ClientError::Discovery(format!(
            "the record key {key} does not name a service DID"
        )));
    }
    Ok(did)
}

/// Every Multikey a service's DID document lists (a Stratos service publishes its key under
/// its own fragment, not `#atproto`): the keys its attestations may be signed with.
pub fn document_keys(doc: &serde_json::Value) -> Vec<PublicKey> {
    doc["verificationMethod"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["publicKeyMultibase"].as_str())
        .filter_map(|mb| PublicKey::from_did_key(&format!("did:key:{mb}")).ok())
        .collect()
}

/// The endpoints of the document's `StratosService` entries.
fn stratos_endpoints(doc: &serde_json::Value) -> Vec<String> {
    doc["service"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["type"].as_str() == Some("StratosService"))
        .filter_map(|s| s["serviceEndpoint"].as_str().map(str::to_owned))
        .collect()
}
