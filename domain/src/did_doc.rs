//! [`DidDocument`]: the parts of a DID document atproto uses, read once, with one set of rules.
//!
//! Two readers used to disagree: the enrollment check took any service whose id *ended* in
//! `#atproto_pds` (another DID's service included), the network adapter only `#atproto_pds` or
//! `{id}#atproto_pds`. Both now read this type, which follows the atproto identity specification:
//! an entry belongs to the document when its id is the relative `#fragment` or the document's own
//! `{id}#fragment`; the first such entry counts.

use serde_json::Value;

use crate::crypto::{KeyAlgorithm, PublicKey};
use crate::syntax::Did;
use crate::{Error, Result};

/// A verification method as published.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Method {
    id: String,
    kind: Option<String>,
    public_key_multibase: Option<String>,
}

/// A service entry as published (`serviceEndpoint` kept only when it is a string).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Service {
    id: String,
    endpoint: Option<String>,
}

/// A DID document, reduced to what atproto reads from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DidDocument {
    id: Did,
    also_known_as: Vec<String>,
    methods: Vec<Method>,
    services: Vec<Service>,
}

fn strings(doc: &Value, field: &str) -> Vec<String> {
    doc.get(field)
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn objects<'a>(doc: &'a Value, field: &str) -> impl Iterator<Item = &'a Value> {
    doc.get(field)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|v| v.is_object())
}

fn text(v: &Value, field: &str) -> Option<String> {
    v.get(field).and_then(Value::as_str).map(str::to_owned)
}

impl DidDocument {
    /// Reads a DID document. Its `id` must be a valid DID; entries without a string `id` are
    /// skipped, as are fields of other shapes (documents in the wild carry extra members).
    pub fn from_json(doc: &Value) -> Result<Self> {
        let id = doc
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Data("a DID document needs a string `id`".into()))?;
        let id = Did::parse(id)?;
        let methods = objects(doc, "verificationMethod")
            .filter_map(|m| {
                Some(Method {
                    id: text(m, "id")?,
                    kind: text(m, "type"),
                    public_key_multibase: text(m, "publicKeyMultibase"),
                })
            })
            .collect();
        let services = objects(doc, "service")
            .filter_map(|s| {
                Some(Service {
                    id: text(s, "id")?,
                    endpoint: text(s, "serviceEndpoint"),
                })
            })
            .collect();
        Ok(Self {
            id,
            also_known_as: strings(doc, "alsoKnownAs"),
            methods,
            services,
        })
    }

    /// The document's DID.
    pub fn id(&self) -> &Did {
        &self.id
    }

    /// The `alsoKnownAs` entries, as published (`at://{handle}` for atproto handles).
    pub fn also_known_as(&self) -> &[String] {
        &self.also_known_as
    }

    /// True when `entry_id` names this document's `fragment`: `#fragment` or `{id}#fragment`.
    fn is_own(&self, entry_id: &str, fragment: &str) -> bool {
        match entry_id.split_once('#') {
            Some((did, frag)) => frag == fragment && (did.is_empty() || did == self.id.as_str()),
            None => false,
        }
    }

    /// The `serviceEndpoint` of the document's `#atproto_pds` service: the account's PDS.
    /// `None` when there is no such service or its endpoint is not a string.
    pub fn pds_endpoint(&self) -> Option<&str> {
        self.services
            .iter()
            .find(|s| self.is_own(&s.id, "atproto_pds"))?
            .endpoint
            .as_deref()
    }

    /// The `publicKeyMultibase` of the document's `#atproto` verification method, as published
    /// (see [`DidDocument::atproto_key`] for the key itself).
    pub fn atproto_key_multibase(&self) -> Option<&str> {
        self.atproto_method()?.public_key_multibase.as_deref()
    }

    fn atproto_method(&self) -> Option<&Method> {
        self.methods.iter().find(|m| self.is_own(&m.id, "atproto"))
    }

    /// The account's signing key (repository commits, service-auth JWTs): the `#atproto`
    /// verification method read according to its `type` — `Multikey` (also assumed when `type`
    /// is absent) or the legacy `EcdsaSecp256k1VerificationKey2019` /
    /// `EcdsaSecp256r1VerificationKey2019` (a bare point whose curve the suite names; the PLC
    /// directory published on npm still renders keys that way).
    ///
    /// `None` without an `#atproto` method; an error when it cannot be used.
    pub fn atproto_key(&self) -> Option<Result<PublicKey>> {
        let method = self.atproto_method()?;
        let Some(multibase) = method.public_key_multibase.as_deref() else {
            return Some(Err(Error::Key(
                "the #atproto method has no publicKeyMultibase".into(),
            )));
        };
        Some(match method.kind.as_deref() {
            None | Some("Multikey") => PublicKey::from_multikey(multibase),
            Some("EcdsaSecp256k1VerificationKey2019") => {
                PublicKey::from_multibase(KeyAlgorithm::K256, multibase)
            }
            Some("EcdsaSecp256r1VerificationKey2019") => {
                PublicKey::from_multibase(KeyAlgorithm::P256, multibase)
            }
            Some(other) => Err(Error::Key(format!(
                "unsupported verification method type {other:?}"
            ))),
        })
    }
}

/// The `publicKeyMultibase` of the document's `#atproto` method, as published: shorthand for
/// [`DidDocument::atproto_key_multibase`] over JSON (`None` for a document that cannot be read).
pub fn signing_key(doc: &Value) -> Option<String> {
    DidDocument::from_json(doc)
        .ok()?
        .atproto_key_multibase()
        .map(str::to_owned)
}

/// The account's signing key: shorthand for [`DidDocument::atproto_key`] over JSON (`None` for a
/// document that cannot be read or has no `#atproto` method).
pub fn signing_public_key(doc: &Value) -> Option<Result<PublicKey>> {
    DidDocument::from_json(doc).ok()?.atproto_key()
}

/// The account's PDS: shorthand for [`DidDocument::pds_endpoint`] over JSON (`None` for a
/// document that cannot be read).
pub fn pds_endpoint(doc: &Value) -> Option<String> {
    DidDocument::from_json(doc)
        .ok()?
        .pds_endpoint()
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code

    use serde_json::json;

    use super::*;

    fn doc(services: Value) -> DidDocument {
        DidDocument::from_json(&json!({"id": "did:plc:rei", "service": services})).unwrap()
    }

    #[test]
    fn own_entries_only() {
        let relative = doc(json!([{"id": "#atproto_pds", "serviceEndpoint": "https://a"}]));
        assert_eq!(relative.pds_endpoint(), Some("https://a"));
        let absolute =
            doc(json!([{"id": "did:plc:rei#atproto_pds", "serviceEndpoint": "https://b"}]));
        assert_eq!(absolute.pds_endpoint(), Some("https://b"));
        // Another DID's service, or an id that merely ends like ours, is not this account's PDS.
        let foreign =
            doc(json!([{"id": "did:plc:asuka#atproto_pds", "serviceEndpoint": "https://c"}]));
        assert_eq!(foreign.pds_endpoint(), None);
        let suffix = doc(json!([{"id": "#not_atproto_pds", "serviceEndpoint": "https://d"}]));
        assert_eq!(suffix.pds_endpoint(), None);
        let object = doc(json!([{"id": "#atproto_pds", "serviceEndpoint": {"uri": "https://e"}}]));
        assert_eq!(object.pds_endpoint(), None);
    }

    #[test]
    fn the_id_is_required_and_checked() {
        assert!(DidDocument::from_json(&json!({})).is_err());
        assert!(DidDocument::from_json(&json!({"id": "not a did"})).is_err());
        assert!(DidDocument::from_json(&json!("not a document")).is_err());
    }
}
