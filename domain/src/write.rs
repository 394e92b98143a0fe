//! Write validation: what a Stratos record must satisfy before it is committed.
//!
//! One function, [`WritePolicy::check_record`], runs every rule in a fixed order, so the
//! service, batch writes and imports cannot diverge (the TypeScript original skipped rules in
//! batch writes, defect D14).

use ipld_core::ipld::Ipld;

use crate::boundary::{Boundary, BoundarySet, MAX_RECORD_BOUNDARIES, record_boundary_values};
use crate::enrollment::ENROLLMENT_COLLECTION;
use crate::lexicon::Catalog;
use crate::syntax::{AtUri, Did, Nsid};
use crate::{Error, Result, data};

/// The Stratos record namespace.
pub const STRATOS_NAMESPACE: &str = "zone.stratos.";
/// The private post collection.
pub const POST_COLLECTION: &str = "zone.stratos.feed.post";

/// True for `zone.stratos.*` collections.
pub fn is_stratos_collection(collection: &str) -> bool {
    collection.starts_with(STRATOS_NAMESPACE)
}

/// The service-wide write rules.
#[derive(Debug, Clone)]
pub struct WritePolicy {
    /// This service's DID.
    pub service_did: Did,
    /// Every boundary the service offers.
    pub allowed: Vec<Boundary>,
}

/// What the caller knows about the author and the thread when writing.
#[derive(Debug, Clone, Copy)]
pub struct WriteContext<'a> {
    /// Boundaries the author holds.
    pub author_boundaries: &'a BoundarySet,
    /// Boundaries of the reply parent, when the record is a reply whose parent is stored here
    /// (see [`reply_parent`]); `None` when there is no parent or it is not local.
    pub parent_boundaries: Option<&'a [Boundary]>,
}

impl WritePolicy {
    /// Checks a record for `collection` and returns its boundaries.
    ///
    /// Order: namespace → enrollment collection → service has boundaries → data model and
    /// lexicon → no `source` (stubs live on the PDS) → boundaries (format, this service, offered,
    /// held by the author) → reply rules → embed rules.
    pub fn check_record(
        &self,
        catalog: &Catalog,
        collection: &Nsid,
        record: &Ipld,
        ctx: WriteContext<'_>,
    ) -> Result<Vec<Boundary>> {
        let collection_str = collection.as_str();
        if !is_stratos_collection(collection_str) {
            return Err(Error::CollectionNotWritable {
                collection: collection_str.to_owned(),
                reason: "only zone.stratos.* records are stored in Stratos",
            });
        }
        if collection_str == ENROLLMENT_COLLECTION {
            return Err(Error::CollectionNotWritable {
                collection: collection_str.to_owned(),
                reason: "the enrollment record lives on the user's PDS",
            });
        }
        if self.allowed.is_empty() {
            return Err(Error::NamespaceDisabled);
        }
        data::validate_record(record)?;
        if catalog.doc(collection_str).is_some() {
            catalog.validate_record(collection_str, record)?;
        } else if !has_type(record, collection_str) {
            return Err(Error::Validation {
                path: "$type".into(),
                message: format!("must be {collection_str:?}"),
            });
        }
        if let Ipld::Map(map) = record
            && map.contains_key("source")
        {
            return Err(Error::Validation {
                path: "source".into(),
                message: "records stored in Stratos must not carry `source` (it marks a PDS stub)"
                    .into(),
            });
        }
        let boundaries = self.check_boundaries(collection_str, record, ctx.author_boundaries)?;
        check_reply(record, &boundaries, ctx.parent_boundaries)?;
        check_embed(record, true)?;
        Ok(boundaries)
    }

    fn check_boundaries(
        &self,
        collection: &str,
        record: &Ipld,
        held: &BoundarySet,
    ) -> Result<Vec<Boundary>> {
        let values = record_boundary_values(record);
        if values.is_empty() && collection == POST_COLLECTION {
            return Err(Error::MissingBoundary);
        }
        if values.len() > MAX_RECORD_BOUNDARIES {
            return Err(Error::Validation {
                path: "boundary.values".into(),
                message: format!("at most {MAX_RECORD_BOUNDARIES} boundaries"),
            });
        }
        let mut out = Vec::with_capacity(values.len());
        for value in values {
            let boundary = Boundary::parse_for(&self.service_did, value)?;
            if !boundary.belongs_to(&self.service_did) {
                return Err(Error::BoundaryServiceMismatch {
                    boundary: value.to_owned(),
                    expected: self.service_did.to_string(),
                });
            }
            if !self.allowed.contains(&boundary) {
                return Err(Error::BoundaryNotAllowed {
                    boundary: value.to_owned(),
                });
            }
            if !held.contains(value) {
                return Err(Error::BoundaryNotHeld {
                    boundary: value.to_owned(),
                });
            }
            out.push(boundary);
        }
        Ok(out)
    }
}

fn has_type(record: &Ipld, collection: &str) -> bool {
    matches!(record, Ipld::Map(m) if matches!(m.get("$type"), Some(Ipld::String(t)) if t == collection))
}

fn get<'a>(value: &'a Ipld, path: &[&str]) -> Option<&'a Ipld> {
    path.iter().try_fold(value, |v, key| match v {
        Ipld::Map(m) => m.get(*key),
        _ => None,
    })
}

fn string_at<'a>(value: &'a Ipld, path: &[&str]) -> Option<&'a str> {
    match get(value, path) {
        Some(Ipld::String(s)) => Some(s),
        _ => None,
    }
}

/// The reply parent of a record (`reply.parent.uri`), so the caller can fetch its boundaries.
pub fn reply_parent(record: &Ipld) -> Option<AtUri> {
    string_at(record, &["reply", "parent", "uri"]).and_then(|u| AtUri::parse(u).ok())
}

fn uri_collection(uri: &str) -> Option<String> {
    AtUri::parse(uri)
        .ok()
        .and_then(|u| u.collection().map(ToString::to_string))
}

fn check_reply(
    record: &Ipld,
    boundaries: &[Boundary],
    parent_boundaries: Option<&[Boundary]>,
) -> Result<()> {
    if get(record, &["reply"]).is_none() {
        return Ok(());
    }
    for field in ["parent", "root"] {
        if let Some(uri) = string_at(record, &["reply", field, "uri"]) {
            let in_namespace = uri_collection(uri).is_some_and(|c| is_stratos_collection(&c));
            if !in_namespace {
                return Err(Error::CrossNamespaceReply {
                    field: if field == "parent" {
                        "reply.parent"
                    } else {
                        "reply.root"
                    },
                    uri: uri.to_owned(),
                });
            }
        }
    }
    if let Some(parent) = parent_boundaries
        && let Some(extra) = boundaries.iter().find(|b| !parent.contains(b))
    {
        return Err(Error::ReplyBoundaryEscalation {
            boundary: extra.to_string(),
        });
    }
    Ok(())
}

/// URIs of records embedded by `embed` (`app.bsky.embed.record` puts a strongRef at
/// `embed.record`; `recordWithMedia` nests it one level deeper at `embed.record.record`), and
/// the nested `media` embed if any.
fn embedded_uris(record: &Ipld) -> Vec<&str> {
    let mut out = Vec::new();
    let mut embed = get(record, &["embed"]);
    // media can itself be an embed; two levels cover every atproto embed shape.
    for _ in 0..2 {
        let Some(e) = embed else { break };
        if let Some(uri) = string_at(e, &["record", "uri"]) {
            out.push(uri);
        }
        if let Some(uri) = string_at(e, &["record", "record", "uri"]) {
            out.push(uri);
        }
        embed = get(e, &["media"]);
    }
    out
}

/// `private == true`: a Stratos record may not embed public Bluesky (`app.bsky.*`) records.
/// `private == false`: a public record may not embed a Stratos record.
fn check_embed(record: &Ipld, private: bool) -> Result<()> {
    for uri in embedded_uris(record) {
        let collection = uri_collection(uri).unwrap_or_default();
        let crosses = if private {
            collection.starts_with("app.bsky.")
        } else {
            is_stratos_collection(&collection)
        };
        if crosses {
            return Err(Error::CrossNamespaceEmbed {
                uri: uri.to_owned(),
            });
        }
    }
    Ok(())
}

/// For public posts (e.g. `app.bsky.feed.post` written through a PDS proxy): rejects an embed of
/// a Stratos record, which would point public readers at private content.
pub fn check_public_embed(record: &Ipld) -> Result<()> {
    check_embed(record, false)
}
