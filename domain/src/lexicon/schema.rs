//! Lexicon v1 documents: parsing and checking of the schema language itself.
//!
//! Parsing is strict where a mistake would silently weaken validation (unknown `type`, a primary
//! type outside `main`, a record whose body is not an object, malformed refs) and lenient where
//! the language allows free-form metadata (descriptions, permission sets).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::syntax::Nsid;
use crate::{Error, Result};

/// One lexicon document: an NSID and its named definitions.
#[derive(Debug, Clone, PartialEq)]
pub struct LexiconDoc {
    /// The document's NSID.
    pub id: Nsid,
    /// Definitions by name (`main` is the primary one).
    pub defs: BTreeMap<String, Def>,
}

/// A top-level definition.
#[derive(Debug, Clone, PartialEq)]
pub enum Def {
    /// A record type; only as `main`.
    Record {
        /// The record-key type: `tid`, `any`, `nsid` or `literal:<value>`.
        key: String,
        /// The record body.
        record: ObjectDef,
    },
    /// An XRPC query; only as `main`.
    Query {
        /// Query-string parameters.
        parameters: Option<ObjectDef>,
        /// Response body.
        output: Option<Body>,
        /// Named errors.
        errors: Vec<String>,
    },
    /// An XRPC procedure; only as `main`.
    Procedure {
        /// Query-string parameters.
        parameters: Option<ObjectDef>,
        /// Request body.
        input: Option<Body>,
        /// Response body.
        output: Option<Body>,
        /// Named errors.
        errors: Vec<String>,
    },
    /// An event-stream subscription; only as `main`.
    Subscription {
        /// Query-string parameters.
        parameters: Option<ObjectDef>,
        /// The message schema (normally a union).
        message: Option<Field>,
        /// Named errors.
        errors: Vec<String>,
    },
    /// An OAuth permission set; only as `main`. Kept as raw JSON: it carries no data schema.
    PermissionSet(Value),
    /// A reusable field schema (object, string, token, …).
    Field(Field),
}

/// The body of a query/procedure/subscription.
#[derive(Debug, Clone, PartialEq)]
pub struct Body {
    /// MIME type (`application/json`, `application/vnd.ipld.car`, `*/*`, …).
    pub encoding: String,
    /// The schema of a JSON body, when given.
    pub schema: Option<Field>,
}

/// An object schema.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObjectDef {
    /// Properties by name.
    pub properties: BTreeMap<String, Field>,
    /// Names that must be present.
    pub required: Vec<String>,
    /// Names whose value may be `null`.
    pub nullable: Vec<String>,
}

/// A field schema.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    /// `null`.
    Null,
    /// `boolean`.
    Boolean {
        /// Required value.
        konst: Option<bool>,
    },
    /// `integer`.
    Integer {
        /// Inclusive minimum.
        minimum: Option<i64>,
        /// Inclusive maximum.
        maximum: Option<i64>,
        /// Closed set of allowed values.
        enumeration: Option<Vec<i64>>,
        /// Required value.
        konst: Option<i64>,
    },
    /// `string`.
    String(StringDef),
    /// `bytes`.
    Bytes {
        /// Minimum length in bytes.
        min_length: Option<usize>,
        /// Maximum length in bytes.
        max_length: Option<usize>,
    },
    /// `cid-link`.
    CidLink,
    /// `blob`.
    Blob {
        /// Accepted MIME patterns (`image/*`, `*/*`, exact types).
        accept: Option<Vec<String>>,
        /// Maximum size in bytes.
        max_size: Option<u64>,
    },
    /// `array`.
    Array {
        /// Element schema.
        items: Box<Field>,
        /// Minimum element count.
        min_length: Option<usize>,
        /// Maximum element count.
        max_length: Option<usize>,
    },
    /// `object`.
    Object(ObjectDef),
    /// `ref` to another definition, as an absolute `nsid#name` (or `nsid` for `main`).
    Ref(String),
    /// `union` of refs (absolute).
    Union {
        /// Member definitions.
        refs: Vec<String>,
        /// Whether types outside `refs` are rejected.
        closed: bool,
    },
    /// `unknown`: any data object.
    Unknown,
    /// `token`: a named constant with no data.
    Token,
}

/// A string schema.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StringDef {
    /// Syntax the value must follow.
    pub format: Option<StringFormat>,
    /// Minimum length in UTF-8 bytes.
    pub min_length: Option<usize>,
    /// Maximum length in UTF-8 bytes.
    pub max_length: Option<usize>,
    /// Minimum length in grapheme clusters.
    pub min_graphemes: Option<usize>,
    /// Maximum length in grapheme clusters.
    pub max_graphemes: Option<usize>,
    /// Closed set of allowed values.
    pub enumeration: Option<Vec<String>>,
    /// Required value.
    pub konst: Option<String>,
}

/// The string formats of Lexicon v1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringFormat {
    /// `at-identifier` (DID or handle).
    AtIdentifier,
    /// `at-uri`.
    AtUri,
    /// `cid` (string form).
    Cid,
    /// `datetime`.
    Datetime,
    /// `did`.
    Did,
    /// `handle`.
    Handle,
    /// `nsid`.
    Nsid,
    /// `tid`.
    Tid,
    /// `record-key`.
    RecordKey,
    /// `uri`.
    Uri,
    /// `language` (BCP 47).
    Language,
}

impl StringFormat {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "at-identifier" => Self::AtIdentifier,
            "at-uri" => Self::AtUri,
            "cid" => Self::Cid,
            "datetime" => Self::Datetime,
            "did" => Self::Did,
            "handle" => Self::Handle,
            "nsid" => Self::Nsid,
            "tid" => Self::Tid,
            "record-key" => Self::RecordKey,
            "uri" => Self::Uri,
            "language" => Self::Language,
            _ => return None,
        })
    }
}

fn lex_err(id: &str, msg: impl std::fmt::Display) -> Error {
    Error::Lexicon(format!("{id}: {msg}"))
}

impl LexiconDoc {
    /// Parses and checks a lexicon document.
    pub fn from_json(doc: &Value) -> Result<Self> {
        let obj = doc
            .as_object()
            .ok_or_else(|| lex_err("?", "document is not a JSON object"))?;
        let id_str = obj
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| lex_err("?", "`id` must be a string"))?;
        let id = Nsid::parse(id_str).map_err(|e| lex_err(id_str, e))?;
        match obj.get("lexicon") {
            Some(Value::Number(n)) if n.as_u64() == Some(1) => {}
            _ => return Err(lex_err(id_str, "`lexicon` must be the integer 1")),
        }
        let defs_json = obj
            .get("defs")
            .and_then(Value::as_object)
            .ok_or_else(|| lex_err(id_str, "`defs` must be an object"))?;
        let ctx = Ctx { id: id_str };
        let mut defs = BTreeMap::new();
        for (name, def) in defs_json {
            if name.is_empty() || name.contains('#') {
                return Err(lex_err(id_str, format!("invalid def name {name:?}")));
            }
            let path = format!("defs.{name}");
            defs.insert(name.clone(), ctx.top_level(&path, name == "main", def)?);
        }
        Ok(Self { id, defs })
    }

    /// Parses a document from its JSON text.
    pub fn parse(text: &str) -> Result<Self> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| lex_err("?", format!("not JSON: {e}")))?;
        Self::from_json(&value)
    }
}

struct Ctx<'a> {
    id: &'a str,
}

impl Ctx<'_> {
    fn err(&self, path: &str, msg: impl std::fmt::Display) -> Error {
        lex_err(self.id, format!("{path}: {msg}"))
    }

    fn object<'v>(&self, path: &str, v: &'v Value) -> Result<&'v Map<String, Value>> {
        v.as_object()
            .ok_or_else(|| self.err(path, "must be an object"))
    }

    fn top_level(&self, path: &str, is_main: bool, v: &Value) -> Result<Def> {
        let obj = self.object(path, v)?;
        let ty = type_of(obj).ok_or_else(|| self.err(path, "missing `type`"))?;
        let primary = matches!(
            ty,
            "record" | "query" | "procedure" | "subscription" | "permission-set"
        );
        if primary && !is_main {
            return Err(self.err(path, format!("`{ty}` may only be defined as `main`")));
        }
        Ok(match ty {
            "record" => {
                let key = match obj.get("key") {
                    None => "any".to_owned(),
                    Some(Value::String(k)) if valid_record_key_type(k) => k.clone(),
                    Some(other) => return Err(self.err(path, format!("invalid key {other}"))),
                };
                let body = obj
                    .get("record")
                    .ok_or_else(|| self.err(path, "record needs `record`"))?;
                let body_obj = self.object(path, body)?;
                if type_of(body_obj) != Some("object") {
                    return Err(self.err(path, "`record` must be of type object"));
                }
                Def::Record {
                    key,
                    record: self.object_def(&format!("{path}.record"), body_obj)?,
                }
            }
            "query" => Def::Query {
                parameters: self.params(path, obj)?,
                output: self.body(path, obj, "output")?,
                errors: self.errors(path, obj)?,
            },
            "procedure" => Def::Procedure {
                parameters: self.params(path, obj)?,
                input: self.body(path, obj, "input")?,
                output: self.body(path, obj, "output")?,
                errors: self.errors(path, obj)?,
            },
            "subscription" => Def::Subscription {
                parameters: self.params(path, obj)?,
                message: match obj.get("message") {
                    None => None,
                    Some(m) => {
                        let m = self.object(path, m)?;
                        match m.get("schema") {
                            None => None,
                            Some(s) => Some(self.field(&format!("{path}.message.schema"), s)?),
                        }
                    }
                },
                errors: self.errors(path, obj)?,
            },
            "permission-set" => Def::PermissionSet(v.clone()),
            // `ref`, `union` and `unknown` only make sense as field types, and `params` only
            // inside a query/procedure/subscription.
            "ref" | "union" | "unknown" | "params" => {
                return Err(self.err(path, format!("`{ty}` cannot be a top-level definition")));
            }
            _ => Def::Field(self.field(path, v)?),
        })
    }

    fn params(&self, path: &str, obj: &Map<String, Value>) -> Result<Option<ObjectDef>> {
        let Some(p) = obj.get("parameters") else {
            return Ok(None);
        };
        let path = format!("{path}.parameters");
        let p = self.object(&path, p)?;
        if type_of(p) != Some("params") {
            return Err(self.err(&path, "must be of type params"));
        }
        let def = self.object_def(&path, p)?;
        for (name, field) in &def.properties {
            let ok = match field {
                Field::Boolean { .. } | Field::Integer { .. } | Field::String(_) => true,
                Field::Unknown => true,
                Field::Array { items, .. } => matches!(
                    **items,
                    Field::Boolean { .. } | Field::Integer { .. } | Field::String(_)
                ),
                _ => false,
            };
            if !ok {
                return Err(self.err(&path, format!("parameter {name:?} has an unsupported type")));
            }
        }
        Ok(Some(def))
    }

    fn body(&self, path: &str, obj: &Map<String, Value>, key: &str) -> Result<Option<Body>> {
        let Some(b) = obj.get(key) else {
            return Ok(None);
        };
        let path = format!("{path}.{key}");
        let b = self.object(&path, b)?;
        let encoding = b
            .get("encoding")
            .and_then(Value::as_str)
            .ok_or_else(|| self.err(&path, "`encoding` must be a string"))?
            .to_owned();
        let schema = match b.get("schema") {
            None => None,
            Some(s) => {
                let field = self.field(&format!("{path}.schema"), s)?;
                if !matches!(
                    field,
                    Field::Object(_) | Field::Ref(_) | Field::Union { .. }
                ) {
                    return Err(self.err(&path, "schema must be an object, ref or union"));
                }
                Some(field)
            }
        };
        Ok(Some(Body { encoding, schema }))
    }

    fn errors(&self, path: &str, obj: &Map<String, Value>) -> Result<Vec<String>> {
        let Some(errors) = obj.get("errors") else {
            return Ok(Vec::new());
        };
        let list = errors
            .as_array()
            .ok_or_else(|| self.err(path, "`errors` must be an array"))?;
        list.iter()
            .map(|e| {
                e.get("name")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| self.err(path, "every error needs a string `name`"))
            })
            .collect()
    }

    fn object_def(&self, path: &str, obj: &Map<String, Value>) -> Result<ObjectDef> {
        let mut def = ObjectDef::default();
        if let Some(props) = obj.get("properties") {
            for (name, field) in self.object(path, props)? {
                let fpath = format!("{path}.{name}");
                def.properties
                    .insert(name.clone(), self.field(&fpath, field)?);
            }
        }
        def.required = self.string_list(path, obj, "required")?.unwrap_or_default();
        def.nullable = self.string_list(path, obj, "nullable")?.unwrap_or_default();
        for name in def.required.iter().chain(&def.nullable) {
            if !def.properties.contains_key(name) {
                return Err(self.err(path, format!("{name:?} is listed but not a property")));
            }
        }
        Ok(def)
    }

    fn field(&self, path: &str, v: &Value) -> Result<Field> {
        let obj = self.object(path, v)?;
        let ty = type_of(obj).ok_or_else(|| self.err(path, "missing `type`"))?;
        Ok(match ty {
            "null" => Field::Null,
            "boolean" => Field::Boolean {
                konst: match obj.get("const") {
                    None => None,
                    Some(Value::Bool(b)) => Some(*b),
                    Some(_) => return Err(self.err(path, "`const` must be a boolean")),
                },
            },
            "integer" => Field::Integer {
                minimum: self.int(path, obj, "minimum")?,
                maximum: self.int(path, obj, "maximum")?,
                enumeration: match obj.get("enum") {
                    None => None,
                    Some(Value::Array(items)) => Some(
                        items
                            .iter()
                            .map(|i| i.as_i64().ok_or_else(|| self.err(path, "bad enum")))
                            .collect::<Result<_>>()?,
                    ),
                    Some(_) => return Err(self.err(path, "`enum` must be an array")),
                },
                konst: self.int(path, obj, "const")?,
            },
            "string" => Field::String(StringDef {
                format: match obj.get("format") {
                    None => None,
                    Some(Value::String(f)) => Some(
                        StringFormat::parse(f)
                            .ok_or_else(|| self.err(path, format!("unknown format {f:?}")))?,
                    ),
                    Some(_) => return Err(self.err(path, "`format` must be a string")),
                },
                min_length: self.size(path, obj, "minLength")?,
                max_length: self.size(path, obj, "maxLength")?,
                min_graphemes: self.size(path, obj, "minGraphemes")?,
                max_graphemes: self.size(path, obj, "maxGraphemes")?,
                enumeration: self.string_list(path, obj, "enum")?,
                konst: match obj.get("const") {
                    None => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(_) => return Err(self.err(path, "`const` must be a string")),
                },
            }),
            "bytes" => Field::Bytes {
                min_length: self.size(path, obj, "minLength")?,
                max_length: self.size(path, obj, "maxLength")?,
            },
            "cid-link" => Field::CidLink,
            "blob" => Field::Blob {
                accept: self.string_list(path, obj, "accept")?,
                max_size: self.size(path, obj, "maxSize")?.map(|n| n as u64),
            },
            "array" => Field::Array {
                items: Box::new(
                    self.field(
                        &format!("{path}.items"),
                        obj.get("items")
                            .ok_or_else(|| self.err(path, "array needs `items`"))?,
                    )?,
                ),
                min_length: self.size(path, obj, "minLength")?,
                max_length: self.size(path, obj, "maxLength")?,
            },
            "object" => Field::Object(self.object_def(path, obj)?),
            "ref" => Field::Ref(
                self.absolute_ref(
                    path,
                    obj.get("ref")
                        .and_then(Value::as_str)
                        .ok_or_else(|| self.err(path, "`ref` must be a string"))?,
                )?,
            ),
            "union" => Field::Union {
                refs: self
                    .string_list(path, obj, "refs")?
                    .ok_or_else(|| self.err(path, "union needs `refs`"))?
                    .iter()
                    .map(|r| self.absolute_ref(path, r))
                    .collect::<Result<_>>()?,
                closed: match obj.get("closed") {
                    None => false,
                    Some(Value::Bool(b)) => *b,
                    Some(_) => return Err(self.err(path, "`closed` must be a boolean")),
                },
            },
            "unknown" => Field::Unknown,
            "token" => Field::Token,
            other => return Err(self.err(path, format!("unknown or misplaced type {other:?}"))),
        })
    }

    /// Turns `#name` into `<doc id>#name` and `nsid#main` into `nsid`; checks the syntax.
    fn absolute_ref(&self, path: &str, r: &str) -> Result<String> {
        let (nsid, name) = match r.split_once('#') {
            Some(("", name)) => (self.id, Some(name)),
            Some((nsid, name)) => (nsid, Some(name)),
            None => (r, None),
        };
        Nsid::parse(nsid).map_err(|e| self.err(path, format!("bad ref {r:?}: {e}")))?;
        Ok(match name {
            Some("") => return Err(self.err(path, format!("bad ref {r:?}"))),
            Some("main") | None => nsid.to_owned(),
            Some(name) => format!("{nsid}#{name}"),
        })
    }

    fn string_list(
        &self,
        path: &str,
        obj: &Map<String, Value>,
        key: &str,
    ) -> Result<Option<Vec<String>>> {
        match obj.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| self.err(path, format!("`{key}` must hold strings")))
                })
                .collect::<Result<_>>()
                .map(Some),
            Some(_) => Err(self.err(path, format!("`{key}` must be an array"))),
        }
    }

    fn int(&self, path: &str, obj: &Map<String, Value>, key: &str) -> Result<Option<i64>> {
        match obj.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| self.err(path, format!("`{key}` must be an integer"))),
        }
    }

    fn size(&self, path: &str, obj: &Map<String, Value>, key: &str) -> Result<Option<usize>> {
        match obj.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| self.err(path, format!("`{key}` must be a non-negative integer"))),
        }
    }
}

fn type_of(obj: &Map<String, Value>) -> Option<&str> {
    obj.get("type").and_then(Value::as_str)
}

fn valid_record_key_type(k: &str) -> bool {
    matches!(k, "tid" | "any" | "nsid")
        || k.strip_prefix("literal:")
            .is_some_and(|lit| crate::syntax::RecordKey::parse(lit).is_ok())
}
