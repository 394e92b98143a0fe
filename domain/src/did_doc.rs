//! Reading an atproto DID document: the account's `#atproto` signing key and its
//! `#atproto_pds` service.
//!
//! Pure functions over the document JSON. They live here, not in the network adapter that
//! fetches documents, because authentication (`stratos_ports::auth`) reads the same entries
//! from documents any identity resolver returns.

use serde_json::Value;

use crate::Error as DomainError;
use crate::crypto::{KeyAlgorithm, PublicKey};

/// The document's `#atproto` verification method, whose `id` is either `#atproto` or
/// `{doc id}#atproto`.
fn atproto_method(doc: &Value) -> Option<&Value> {
    let full = doc
        .get("id")
        .and_then(Value::as_str)
        .map(|did| format!("{did}#atproto"));
    doc.get("verificationMethod")?
        .as_array()?
        .iter()
        .find(|method| {
            method
                .get("id")
                .and_then(Value::as_str)
                .is_some_and(|id| id == "#atproto" || Some(id) == full.as_deref())
        })
}

/// The `publicKeyMultibase` of the document's `#atproto` verification method (id `#atproto`
/// or `{doc id}#atproto`): the key that signs the account's repository and its service-auth
/// JWTs.
///
/// The value is returned as published. For the current `Multikey` type it is the multibase
/// Multikey form (`PublicKey::from_multikey`); legacy `EcdsaSecp256…VerificationKey2019`
/// methods hold a bare point whose curve is given by the `type`, which this does not check —
/// [`signing_public_key`] does.
pub fn signing_key(doc: &Value) -> Option<String> {
    atproto_method(doc)?
        .get("publicKeyMultibase")?
        .as_str()
        .map(str::to_owned)
}

/// The document's `#atproto` key, read according to its verification-method `type`:
/// `Multikey` (multicodec-prefixed compressed point; also assumed when `type` is absent) or
/// one of the legacy suites `EcdsaSecp256k1VerificationKey2019` /
/// `EcdsaSecp256r1VerificationKey2019` (a bare SEC1 point, compressed or uncompressed, its curve
/// named by the suite). The atproto cryptography specification still lets DID documents use the
/// legacy form, and the PLC directory published on npm (`@did-plc/server` 0.0.1, the one the
/// reference's development network runs) renders every key that way.
///
/// `None` when the document has no `#atproto` method; an error when it has one that cannot be
/// used (another `type`, no `publicKeyMultibase`, not a point of the curve).
pub fn signing_public_key(doc: &Value) -> Option<Result<PublicKey, DomainError>> {
    let method = atproto_method(doc)?;
    let Some(multibase) = method.get("publicKeyMultibase").and_then(Value::as_str) else {
        return Some(Err(DomainError::Key(
            "the #atproto method has no publicKeyMultibase".into(),
        )));
    };
    Some(match method.get("type").and_then(Value::as_str) {
        None | Some("Multikey") => PublicKey::from_multikey(multibase),
        Some("EcdsaSecp256k1VerificationKey2019") => {
            PublicKey::from_multibase(KeyAlgorithm::K256, multibase)
        }
        Some("EcdsaSecp256r1VerificationKey2019") => {
            PublicKey::from_multibase(KeyAlgorithm::P256, multibase)
        }
        Some(other) => Err(DomainError::Key(format!(
            "unsupported verification method type {other:?}"
        ))),
    })
}

/// The `serviceEndpoint` of the document's `#atproto_pds` service (id `#atproto_pds` or
/// `{doc id}#atproto_pds`): the account's PDS, whose authorization server issues its OAuth
/// access tokens.
pub fn pds_endpoint(doc: &Value) -> Option<String> {
    let full = doc
        .get("id")
        .and_then(Value::as_str)
        .map(|did| format!("{did}#atproto_pds"));
    doc.get("service")?
        .as_array()?
        .iter()
        .find(|service| {
            service
                .get("id")
                .and_then(Value::as_str)
                .is_some_and(|id| id == "#atproto_pds" || Some(id) == full.as_deref())
        })?
        .get("serviceEndpoint")?
        .as_str()
        .map(str::to_owned)
}
