//! Service attestations: the service's signature over a user's enrollment facts, published in the
//! PDS enrollment record so third parties can check which boundaries the service granted.
//!
//! Payload = DAG-CBOR of `{boundaries (sorted), did, signingKey}`; signature = secp256k1 ECDSA
//! over SHA-256(payload), 64-byte compact low-S.

use std::collections::BTreeMap;

use ipld_core::ipld::Ipld;

use crate::crypto::{PublicKey, Signer};
use crate::syntax::Did;
use crate::{Error, Result, data};

/// A signature by the service and the key that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attestation {
    /// 64-byte compact signature.
    pub sig: Vec<u8>,
    /// The service's `did:key`.
    pub signing_key: String,
}

/// Sorts like JavaScript's default `Array.prototype.sort` (UTF-16 code units), so payloads match
/// the TypeScript original byte for byte even for non-BMP characters.
fn sorted<S: AsRef<str>>(boundaries: &[S]) -> Vec<&str> {
    let mut out: Vec<&str> = boundaries.iter().map(AsRef::as_ref).collect();
    out.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
    out
}

/// The signed bytes: DAG-CBOR `{did, boundaries, signingKey}` (canonical key order), boundaries
/// sorted, duplicates kept.
pub fn payload<S: AsRef<str>>(
    did: &Did,
    boundaries: &[S],
    user_signing_key: &str,
) -> Result<Vec<u8>> {
    let list = sorted(boundaries)
        .into_iter()
        .map(|b| Ipld::String(b.to_owned()))
        .collect();
    data::encode(&Ipld::Map(BTreeMap::from([
        ("boundaries".to_owned(), Ipld::List(list)),
        ("did".to_owned(), Ipld::String(did.to_string())),
        (
            "signingKey".to_owned(),
            Ipld::String(user_signing_key.to_owned()),
        ),
    ])))
}

/// Signs an attestation with the service key.
pub fn attest<S: AsRef<str>>(
    service_key: &dyn Signer,
    did: &Did,
    boundaries: &[S],
    user_signing_key: &str,
) -> Result<Attestation> {
    let bytes = payload(did, boundaries, user_signing_key)?;
    Ok(Attestation {
        sig: service_key.sign(&bytes)?.to_vec(),
        signing_key: service_key.public_key().to_did_key(),
    })
}

/// Verifies an attestation for `did`. `expected_service_key` (the service's key from its DID
/// document) should be given whenever the verifier knows which service it trusts: without it the
/// check only proves that *someone* holding `attestation.signing_key` signed these facts.
pub fn verify<S: AsRef<str>>(
    attestation: &Attestation,
    did: &Did,
    boundaries: &[S],
    user_signing_key: &str,
    expected_service_key: Option<&str>,
) -> Result<()> {
    if let Some(expected) = expected_service_key
        && expected != attestation.signing_key
    {
        return Err(Error::Attestation(format!(
            "signed by {}, expected {expected}",
            attestation.signing_key
        )));
    }
    let key = PublicKey::from_did_key(&attestation.signing_key)?;
    let bytes = payload(did, boundaries, user_signing_key)?;
    key.verify(&bytes, &attestation.sig)
        .map_err(|e| Error::Attestation(e.to_string()))
}

impl Attestation {
    /// The `#serviceAttestation` object.
    pub fn to_ipld(&self) -> Ipld {
        Ipld::Map(BTreeMap::from([
            ("sig".to_owned(), Ipld::Bytes(self.sig.clone())),
            (
                "signingKey".to_owned(),
                Ipld::String(self.signing_key.clone()),
            ),
        ]))
    }

    /// Reads a `#serviceAttestation` object.
    pub fn from_ipld(value: &Ipld) -> Result<Self> {
        let Ipld::Map(map) = value else {
            return Err(Error::EnrollmentRecord(
                "attestation is not an object".into(),
            ));
        };
        let Some(Ipld::Bytes(sig)) = map.get("sig") else {
            return Err(Error::EnrollmentRecord(
                "attestation `sig` must be bytes".into(),
            ));
        };
        let Some(Ipld::String(signing_key)) = map.get("signingKey") else {
            return Err(Error::EnrollmentRecord(
                "attestation `signingKey` must be a string".into(),
            ));
        };
        Ok(Self {
            sig: sig.clone(),
            signing_key: signing_key.clone(),
        })
    }
}
