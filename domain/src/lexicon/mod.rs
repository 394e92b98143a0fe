//! Lexicon-driven validation of record values.
//!
//! A [`Catalog`] holds parsed [`LexiconDoc`]s and validates data (as IPLD, i.e. after atproto
//! JSON conversion) against a record type or any named definition. The Stratos lexicons live in
//! `lexicons/zone/stratos/**` at the workspace root and are embedded by [`Catalog::stratos`],
//! together with the atproto embed lexicons a post may carry (`lexicons/app/bsky/embed/**`).

mod schema;
mod stratos;
mod validate;

pub use schema::{Body, Def, Field, LexiconDoc, ObjectDef, StringDef, StringFormat};
pub use stratos::{ATPROTO_LEXICONS, STRATOS_LEXICONS};

use std::collections::{HashMap, HashSet};

use ipld_core::ipld::Ipld;

use crate::{Error, Result};

/// How to treat a `ref`/`union` member whose lexicon is not in the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExternalRefs {
    /// Fail validation: every referenced schema must be loaded.
    #[default]
    Reject,
    /// Accept any data object for a reference into a namespace that is not loaded (e.g. the
    /// `app.bsky.*` embeds and facets a post may carry). References into a loaded namespace must
    /// still resolve.
    AcceptObjects,
}

/// A set of lexicon documents that data can be validated against.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    docs: HashMap<String, LexiconDoc>,
    /// Namespace roots (first two segments, e.g. `zone.stratos`) of the loaded documents.
    roots: HashSet<String>,
    external: ExternalRefs,
}

impl Catalog {
    /// An empty catalog that rejects unresolved references.
    pub fn new() -> Self {
        Self::default()
    }

    /// The Stratos lexicons (`zone.stratos.*`, embedded at build time) and the bundled atproto
    /// embed lexicons ([`ATPROTO_LEXICONS`]), with references to anything else outside
    /// `zone.stratos` (facets, strong refs, labels) accepted as open objects.
    pub fn stratos() -> Result<Self> {
        let mut catalog = Self::new().with_external_refs(ExternalRefs::AcceptObjects);
        for (_, text) in STRATOS_LEXICONS {
            catalog.add(LexiconDoc::parse(text)?)?;
        }
        for (_, text) in ATPROTO_LEXICONS {
            catalog.add_bundled(LexiconDoc::parse(text)?)?;
        }
        catalog.check_refs()?;
        Ok(catalog)
    }

    /// Sets the policy for references to lexicons that are not loaded.
    pub fn with_external_refs(mut self, policy: ExternalRefs) -> Self {
        self.external = policy;
        self
    }

    /// Adds a document; a second document with the same id is an error. Its namespace becomes
    /// loaded: every reference into it must resolve.
    pub fn add(&mut self, doc: LexiconDoc) -> Result<()> {
        if let Some(root) = namespace_root(doc.id.as_str()) {
            self.roots.insert(root.to_owned());
        }
        self.add_bundled(doc)
    }

    /// Adds a document taken from another namespace without loading that namespace: references
    /// to this document resolve and are validated, while references to the namespace's other
    /// documents stay governed by [`ExternalRefs`] (a few `app.bsky.*` lexicons are bundled,
    /// not all of them).
    pub fn add_bundled(&mut self, doc: LexiconDoc) -> Result<()> {
        let id = doc.id.as_str().to_owned();
        if self.docs.contains_key(&id) {
            return Err(Error::Lexicon(format!("{id}: defined twice")));
        }
        self.docs.insert(id, doc);
        Ok(())
    }

    /// Parses a document from JSON text and adds it.
    pub fn add_json(&mut self, text: &str) -> Result<()> {
        self.add(LexiconDoc::parse(text)?)
    }

    /// The document with this NSID.
    pub fn doc(&self, nsid: &str) -> Option<&LexiconDoc> {
        self.docs.get(nsid)
    }

    /// Checks that every reference into a loaded namespace resolves (references into other
    /// namespaces are governed by [`ExternalRefs`] at validation time).
    pub fn check_refs(&self) -> Result<()> {
        for doc in self.docs.values() {
            for (name, def) in &doc.defs {
                let mut refs = Vec::new();
                collect_def_refs(def, &mut refs);
                for r in refs {
                    if self.resolve(r).is_none() && !self.is_external(r) {
                        return Err(Error::Lexicon(format!(
                            "{}#{name}: unresolved reference {r:?}",
                            doc.id
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// Validates a record value against the record lexicon of `collection`: the value must be an
    /// object whose `$type` is the collection, and must satisfy every constraint of the schema.
    pub fn validate_record(&self, collection: &str, value: &Ipld) -> Result<()> {
        let record = match self.docs.get(collection).and_then(|d| d.defs.get("main")) {
            Some(Def::Record { record, .. }) => record,
            _ => {
                return Err(Error::Lexicon(format!(
                    "no record lexicon for collection {collection:?}"
                )));
            }
        };
        let Ipld::Map(map) = value else {
            return Err(invalid("", "record must be an object"));
        };
        match map.get("$type") {
            Some(Ipld::String(t)) if t == collection => {}
            Some(Ipld::String(t)) => {
                return Err(invalid(
                    "$type",
                    format!("must be {collection:?}, found {t:?}"),
                ));
            }
            _ => return Err(invalid("$type", "required")),
        }
        validate::Validator { catalog: self }.object(record, value, "")
    }

    /// Checks a record key against the record lexicon's key type (`tid`, `nsid`, `any`,
    /// `literal:<value>`).
    pub fn check_record_key(&self, collection: &str, rkey: &str) -> Result<()> {
        let key = match self.docs.get(collection).and_then(|d| d.defs.get("main")) {
            Some(Def::Record { key, .. }) => key,
            _ => {
                return Err(Error::Lexicon(format!(
                    "no record lexicon for collection {collection:?}"
                )));
            }
        };
        crate::syntax::RecordKey::parse(rkey)?;
        let ok = match key.as_str() {
            "any" => true,
            "tid" => crate::syntax::Tid::parse(rkey).is_ok(),
            "nsid" => crate::syntax::Nsid::parse(rkey).is_ok(),
            other => other.strip_prefix("literal:") == Some(rkey),
        };
        if ok {
            Ok(())
        } else {
            Err(invalid(
                "rkey",
                format!("{rkey:?} is not a valid key of type {key:?}"),
            ))
        }
    }

    /// Validates a value against a named field definition (`nsid#name`, or `nsid` for `main`),
    /// e.g. a procedure's input object.
    pub fn validate_def(&self, reference: &str, value: &Ipld) -> Result<()> {
        validate::Validator { catalog: self }.reference(reference, value, "")
    }

    /// Looks up `nsid` (→ `main`) or `nsid#name`.
    pub(crate) fn resolve(&self, reference: &str) -> Option<&Def> {
        let (nsid, name) = reference.split_once('#').unwrap_or((reference, "main"));
        self.docs.get(nsid)?.defs.get(name)
    }

    /// True when `reference` points outside every loaded namespace and the policy accepts that.
    pub(crate) fn is_external(&self, reference: &str) -> bool {
        if self.external == ExternalRefs::Reject {
            return false;
        }
        let nsid = reference.split('#').next().unwrap_or(reference);
        namespace_root(nsid).is_some_and(|root| !self.roots.contains(root))
    }
}

/// The first two segments of an NSID's namespace (`zone.stratos.feed.post` → `zone.stratos`):
/// the unit of ownership for resolving references.
fn namespace_root(nsid: &str) -> Option<&str> {
    let (namespace, _) = nsid.rsplit_once('.')?;
    Some(match namespace.match_indices('.').nth(1) {
        Some((i, _)) => &namespace[..i],
        None => namespace,
    })
}

fn invalid(path: &str, message: impl Into<String>) -> Error {
    Error::Validation {
        path: if path.is_empty() {
            "$".to_owned()
        } else {
            path.to_owned()
        },
        message: message.into(),
    }
}

fn collect_def_refs<'a>(def: &'a Def, out: &mut Vec<&'a str>) {
    match def {
        Def::Record { record, .. } => collect_object_refs(record, out),
        Def::Query {
            parameters, output, ..
        } => {
            if let Some(p) = parameters {
                collect_object_refs(p, out);
            }
            if let Some(schema) = output.as_ref().and_then(|b| b.schema.as_ref()) {
                collect_field_refs(schema, out);
            }
        }
        Def::Procedure {
            parameters,
            input,
            output,
            ..
        } => {
            if let Some(p) = parameters {
                collect_object_refs(p, out);
            }
            for body in [input, output].into_iter().flatten() {
                if let Some(schema) = &body.schema {
                    collect_field_refs(schema, out);
                }
            }
        }
        Def::Subscription {
            parameters,
            message,
            ..
        } => {
            if let Some(p) = parameters {
                collect_object_refs(p, out);
            }
            if let Some(m) = message {
                collect_field_refs(m, out);
            }
        }
        Def::PermissionSet(_) => {}
        Def::Field(f) => collect_field_refs(f, out),
    }
}

fn collect_object_refs<'a>(obj: &'a ObjectDef, out: &mut Vec<&'a str>) {
    for field in obj.properties.values() {
        collect_field_refs(field, out);
    }
}

fn collect_field_refs<'a>(field: &'a Field, out: &mut Vec<&'a str>) {
    match field {
        Field::Ref(r) => out.push(r),
        Field::Union { refs, .. } => out.extend(refs.iter().map(String::as_str)),
        Field::Array { items, .. } => collect_field_refs(items, out),
        Field::Object(obj) => collect_object_refs(obj, out),
        _ => {}
    }
}
