//! Stub records: the content-free placeholders written to the user's PDS at the same collection
//! and rkey as a Stratos record, so public indexers can discover that a private record exists
//! and where to hydrate it from.

use std::collections::BTreeMap;

use ipld_core::ipld::Ipld;

use crate::Cid;
use crate::syntax::{AtUri, Datetime};
use crate::{Error, Result};

/// The only `vary` value Stratos writes: content depends on who is asking.
pub const VARY_AUTHENTICATED: &str = "authenticated";
/// The default service fragment of the Stratos endpoint in the service DID document.
pub const DEFAULT_SERVICE_FRAGMENT: &str = "atproto_pns";

/// The `source` of a stub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StubSource {
    /// `authenticated` or `unauthenticated`.
    pub vary: String,
    /// The Stratos record's URI.
    pub uri: String,
    /// The Stratos record's CID (string form).
    pub cid: String,
    /// `{serviceDid}#{fragment}`.
    pub service: String,
}

/// Builds the stub for a Stratos record. `$type` and `createdAt` come from the record itself
/// (the TypeScript original used the collection and the commit rev in batch writes, defect D14);
/// `fallback_created_at` is used only when the record has no valid `createdAt`.
pub fn stub_for(
    record: &Ipld,
    uri: &AtUri,
    cid: &Cid,
    service_ref: &str,
    fallback_created_at: &Datetime,
) -> Result<Ipld> {
    let Ipld::Map(map) = record else {
        return Err(Error::Data("a record must be an object".into()));
    };
    let record_type = match map.get("$type") {
        Some(Ipld::String(t)) => t.clone(),
        _ => uri
            .collection()
            .map(ToString::to_string)
            .ok_or_else(|| Error::Data("record URI has no collection".into()))?,
    };
    let created_at = match map.get("createdAt") {
        Some(Ipld::String(s)) if Datetime::parse(s).is_ok() => s.clone(),
        _ => fallback_created_at.to_string(),
    };
    let subject = Ipld::Map(BTreeMap::from([
        ("uri".to_owned(), Ipld::String(uri.to_string())),
        ("cid".to_owned(), Ipld::String(cid.to_string())),
    ]));
    let source = Ipld::Map(BTreeMap::from([
        (
            "vary".to_owned(),
            Ipld::String(VARY_AUTHENTICATED.to_owned()),
        ),
        ("subject".to_owned(), subject),
        ("service".to_owned(), Ipld::String(service_ref.to_owned())),
    ]));
    Ok(Ipld::Map(BTreeMap::from([
        ("$type".to_owned(), Ipld::String(record_type)),
        ("source".to_owned(), source),
        ("createdAt".to_owned(), Ipld::String(created_at)),
    ])))
}

/// `{serviceDid}#{fragment}`, the `service` value of a stub.
pub fn service_ref(service_did: &str, fragment: &str) -> String {
    format!("{service_did}#{fragment}")
}

/// Splits `did#fragment` at the first `#` (fragment `None` when absent).
pub fn parse_service_ref(value: &str) -> (&str, Option<&str>) {
    match value.split_once('#') {
        Some((did, fragment)) => (did, Some(fragment)),
        None => (value, None),
    }
}

/// The `source` of a stub, or `None` when the value is not one (a stub has a `source` object
/// with string `vary`, object `subject` holding string `uri` and `cid`, and string `service`).
pub fn stub_source(value: &Ipld) -> Option<StubSource> {
    let Ipld::Map(map) = value else { return None };
    let Some(Ipld::Map(source)) = map.get("source") else {
        return None;
    };
    let string = |m: &BTreeMap<String, Ipld>, k: &str| match m.get(k) {
        Some(Ipld::String(s)) => Some(s.clone()),
        _ => None,
    };
    let Some(Ipld::Map(subject)) = source.get("subject") else {
        return None;
    };
    Some(StubSource {
        vary: string(source, "vary")?,
        uri: string(subject, "uri")?,
        cid: string(subject, "cid")?,
        service: string(source, "service")?,
    })
}

/// True when the value is a stub record.
pub fn is_stub(value: &Ipld) -> bool {
    stub_source(value).is_some()
}
