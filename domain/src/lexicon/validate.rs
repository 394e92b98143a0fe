//! Validation of IPLD data against lexicon field schemas.

use ipld_core::ipld::Ipld;
use unicode_segmentation::UnicodeSegmentation;

use super::schema::{Def, Field, ObjectDef, StringDef, StringFormat};
use super::{Catalog, invalid};
use crate::data::Blob;
use crate::mime;
use crate::syntax::{self, AtIdentifier, AtUri, Datetime, Did, Handle, Language, Nsid, RecordKey};
use crate::{Error, Result};

/// Refs can be cyclic in principle; data depth is already capped by the data model, this caps
/// schema indirection.
const MAX_REF_DEPTH: usize = 32;

pub(super) struct Validator<'a> {
    pub(super) catalog: &'a Catalog,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

impl Validator<'_> {
    pub(super) fn object(&self, def: &ObjectDef, value: &Ipld, path: &str) -> Result<()> {
        self.object_at(def, value, path, 0)
    }

    pub(super) fn reference(&self, reference: &str, value: &Ipld, path: &str) -> Result<()> {
        self.reference_at(reference, value, path, 0)
    }

    fn object_at(&self, def: &ObjectDef, value: &Ipld, path: &str, depth: usize) -> Result<()> {
        let Ipld::Map(map) = value else {
            return Err(invalid(path, "must be an object"));
        };
        for name in &def.required {
            if !map.contains_key(name) {
                return Err(invalid(&join(path, name), "required"));
            }
        }
        for (name, field) in &def.properties {
            let Some(v) = map.get(name) else { continue };
            let fpath = join(path, name);
            if matches!(v, Ipld::Null) {
                if def.nullable.contains(name) || matches!(field, Field::Null) {
                    continue;
                }
                return Err(invalid(&fpath, "may not be null"));
            }
            self.field_at(field, v, &fpath, depth)?;
        }
        Ok(())
    }

    fn field_at(&self, field: &Field, value: &Ipld, path: &str, depth: usize) -> Result<()> {
        match field {
            Field::Null => match value {
                Ipld::Null => Ok(()),
                _ => Err(invalid(path, "must be null")),
            },
            Field::Boolean { konst } => match value {
                Ipld::Bool(b) => match konst {
                    Some(k) if k != b => Err(invalid(path, format!("must be {k}"))),
                    _ => Ok(()),
                },
                _ => Err(invalid(path, "must be a boolean")),
            },
            Field::Integer {
                minimum,
                maximum,
                enumeration,
                konst,
            } => {
                let Ipld::Integer(n) = value else {
                    return Err(invalid(path, "must be an integer"));
                };
                let n = *n;
                if let Some(k) = konst
                    && n != i128::from(*k)
                {
                    return Err(invalid(path, format!("must be {k}")));
                }
                if let Some(values) = enumeration
                    && !values.iter().any(|v| i128::from(*v) == n)
                {
                    return Err(invalid(path, format!("must be one of {values:?}")));
                }
                if let Some(min) = minimum
                    && n < i128::from(*min)
                {
                    return Err(invalid(path, format!("must be at least {min}")));
                }
                if let Some(max) = maximum
                    && n > i128::from(*max)
                {
                    return Err(invalid(path, format!("must be at most {max}")));
                }
                Ok(())
            }
            Field::String(def) => match value {
                Ipld::String(s) => string(def, s, path),
                _ => Err(invalid(path, "must be a string")),
            },
            Field::Bytes {
                min_length,
                max_length,
            } => {
                let Ipld::Bytes(b) = value else {
                    return Err(invalid(path, "must be bytes"));
                };
                length(b.len(), *min_length, *max_length, "bytes", path)
            }
            Field::CidLink => match value {
                Ipld::Link(_) => Ok(()),
                _ => Err(invalid(path, "must be a CID link")),
            },
            Field::Blob { accept, max_size } => {
                let blob = Blob::from_ipld(value).map_err(|e| invalid(path, e.to_string()))?;
                let at = if path.is_empty() { "$" } else { path };
                if let Some(patterns) = accept
                    && !mime::accepts(patterns, &blob.mime_type)
                {
                    let why = if mime::is_active_content(&blob.mime_type) {
                        "; markup and script types are never admitted by a wildcard"
                    } else {
                        ""
                    };
                    return Err(Error::BlobTypeNotAccepted(format!(
                        "{at}: a blob of type {:?} is not accepted here (accepts {}{why})",
                        blob.mime_type,
                        patterns.join(", ")
                    )));
                }
                if let Some(max) = max_size
                    && blob.size > *max
                {
                    return Err(Error::BlobTooLarge(format!(
                        "{at}: a blob of {} bytes exceeds the maximum of {max} bytes",
                        blob.size
                    )));
                }
                Ok(())
            }
            Field::Array {
                items,
                min_length,
                max_length,
            } => {
                let Ipld::List(list) = value else {
                    return Err(invalid(path, "must be an array"));
                };
                length(list.len(), *min_length, *max_length, "elements", path)?;
                for (i, item) in list.iter().enumerate() {
                    self.field_at(items, item, &format!("{path}[{i}]"), depth)?;
                }
                Ok(())
            }
            Field::Object(def) => self.object_at(def, value, path, depth),
            Field::Ref(r) => self.reference_at(r, value, path, depth + 1),
            Field::Union { refs, closed } => self.union(refs, *closed, value, path, depth + 1),
            Field::Unknown => unknown(value, path),
            // A token names a value; as a field it is satisfied by its own name (checked by the
            // `ref` that points at it).
            Field::Token => Ok(()),
        }
    }

    fn reference_at(&self, reference: &str, value: &Ipld, path: &str, depth: usize) -> Result<()> {
        if depth > MAX_REF_DEPTH {
            return Err(invalid(path, "schema references nest too deeply"));
        }
        match self.catalog.resolve(reference) {
            Some(Def::Field(Field::Token)) => match value {
                Ipld::String(s) if s == reference => Ok(()),
                _ => Err(invalid(path, format!("must be the token {reference:?}"))),
            },
            Some(Def::Field(field)) => self.field_at(field, value, path, depth),
            Some(Def::Record { record, .. }) => self.object_at(record, value, path, depth),
            Some(_) => Err(Error::Lexicon(format!(
                "{reference} is not a data definition"
            ))),
            None if self.catalog.is_external(reference) => unknown(value, path),
            None => Err(Error::Lexicon(format!(
                "unresolved reference {reference:?}"
            ))),
        }
    }

    fn union(
        &self,
        refs: &[String],
        closed: bool,
        value: &Ipld,
        path: &str,
        depth: usize,
    ) -> Result<()> {
        let Ipld::Map(map) = value else {
            return Err(invalid(path, "must be an object"));
        };
        let Some(Ipld::String(ty)) = map.get("$type") else {
            return Err(invalid(&join(path, "$type"), "required in a union member"));
        };
        // `nsid#main` and `nsid` name the same definition.
        let ty = ty.strip_suffix("#main").unwrap_or(ty);
        if refs.iter().any(|r| r == ty) {
            return self.reference_at(ty, value, path, depth);
        }
        if closed {
            return Err(invalid(
                &join(path, "$type"),
                format!("{ty:?} is not one of {refs:?}"),
            ));
        }
        Ok(())
    }
}

fn length(n: usize, min: Option<usize>, max: Option<usize>, unit: &str, path: &str) -> Result<()> {
    if let Some(min) = min
        && n < min
    {
        return Err(invalid(path, format!("must have at least {min} {unit}")));
    }
    if let Some(max) = max
        && n > max
    {
        return Err(invalid(path, format!("must have at most {max} {unit}")));
    }
    Ok(())
}

/// `unknown` holds any data *object*: not a primitive, not bytes or a link, and not a blob.
fn unknown(value: &Ipld, path: &str) -> Result<()> {
    match value {
        Ipld::Map(map) => match map.get("$type") {
            Some(Ipld::String(t)) if t == "blob" => {
                Err(invalid(path, "must be a data object, not a blob"))
            }
            _ => Ok(()),
        },
        _ => Err(invalid(path, "must be an object")),
    }
}

fn string(def: &StringDef, s: &str, path: &str) -> Result<()> {
    if let Some(k) = &def.konst
        && s != k
    {
        return Err(invalid(path, format!("must be {k:?}")));
    }
    if let Some(values) = &def.enumeration
        && !values.iter().any(|v| v == s)
    {
        return Err(invalid(path, format!("must be one of {values:?}")));
    }
    length(s.len(), def.min_length, def.max_length, "bytes", path)?;
    // Graphemes never outnumber bytes: a string within the byte budget of `maxGraphemes` needs no
    // segmentation.
    let count_needed =
        def.min_graphemes.is_some() || def.max_graphemes.is_some_and(|max| s.len() > max);
    if count_needed {
        let count = s.graphemes(true).count();
        length(
            count,
            def.min_graphemes,
            def.max_graphemes,
            "graphemes",
            path,
        )?;
    }
    if let Some(format) = def.format {
        check_format(format, s).map_err(|reason| {
            invalid(
                path,
                format!("must be a valid {}: {reason}", format_name(format)),
            )
        })?;
    }
    Ok(())
}

fn check_format(format: StringFormat, s: &str) -> std::result::Result<(), String> {
    let ok = |r: Result<()>| r.map_err(|e| e.to_string());
    match format {
        StringFormat::AtIdentifier => ok(AtIdentifier::parse(s).map(drop)),
        StringFormat::AtUri => ok(AtUri::parse(s).map(drop)),
        StringFormat::Cid => {
            if syntax::is_valid_cid_syntax(s) {
                Ok(())
            } else {
                Err("not a CID".to_owned())
            }
        }
        StringFormat::Datetime => ok(Datetime::parse(s).map(drop)),
        StringFormat::Did => ok(Did::parse(s).map(drop)),
        StringFormat::Handle => ok(Handle::parse(s).map(drop)),
        StringFormat::Nsid => ok(Nsid::parse(s).map(drop)),
        StringFormat::Tid => ok(syntax::Tid::parse(s).map(drop)),
        StringFormat::RecordKey => ok(RecordKey::parse(s).map(drop)),
        StringFormat::Uri => {
            if syntax::is_valid_uri(s) {
                Ok(())
            } else {
                Err("not a URI".to_owned())
            }
        }
        StringFormat::Language => ok(Language::parse(s).map(drop)),
    }
}

fn format_name(format: StringFormat) -> &'static str {
    match format {
        StringFormat::AtIdentifier => "at-identifier",
        StringFormat::AtUri => "at-uri",
        StringFormat::Cid => "cid",
        StringFormat::Datetime => "datetime",
        StringFormat::Did => "did",
        StringFormat::Handle => "handle",
        StringFormat::Nsid => "nsid",
        StringFormat::Tid => "tid",
        StringFormat::RecordKey => "record-key",
        StringFormat::Uri => "uri",
        StringFormat::Language => "language",
    }
}
