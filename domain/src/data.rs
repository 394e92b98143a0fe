//! The atproto data model: values as [`Ipld`], their atproto-JSON form (`{"$link": …}`,
//! `{"$bytes": …}`, blobs) and their DAG-CBOR form.
//!
//! Rules enforced in both directions: no floats (integer-valued JSON numbers such as `123.0` become
//! integers), integers within i64, at most [`MAX_DEPTH`] levels of nesting, `$link` / `$bytes`
//! objects with exactly one key and a valid payload, `$type` a non-empty string wherever it
//! appears, and objects typed `blob` well formed. This is not DAG-JSON (`{"/": …}`).

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use ipld_core::cid::Cid;
pub use ipld_core::ipld::Ipld;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Number, Value};

use crate::{Error, Result};

/// Deepest nesting accepted in any value.
pub const MAX_DEPTH: usize = 128;

/// Standard alphabet; written without padding, read with or without. Non-zero trailing bits are
/// accepted on read (the reference implementations' decoders ignore them, and the interop
/// lexicon vectors use `"123"`).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// JavaScript's safe-integer bound: the largest magnitude a float holds exactly.
const MAX_SAFE_FLOAT_INT: f64 = 9_007_199_254_740_991.0;

fn data_err(msg: impl Into<String>) -> Error {
    Error::Data(msg.into())
}

/// Converts atproto JSON to a data value, checking every rule of the data model.
pub fn json_to_ipld(value: &Value) -> Result<Ipld> {
    let ipld = from_json(value, 0)?;
    validate(&ipld, 0)?;
    Ok(ipld)
}

/// Converts atproto JSON that must be a data *object* (as record values and XRPC bodies are).
pub fn json_to_object(value: &Value) -> Result<Ipld> {
    if !value.is_object() {
        return Err(data_err("top-level value must be an object"));
    }
    json_to_ipld(value)
}

fn from_json(value: &Value, depth: usize) -> Result<Ipld> {
    if depth > MAX_DEPTH {
        return Err(data_err(format!("nested deeper than {MAX_DEPTH} levels")));
    }
    Ok(match value {
        Value::Null => Ipld::Null,
        Value::Bool(b) => Ipld::Bool(*b),
        Value::String(s) => Ipld::String(s.clone()),
        Value::Number(n) => Ipld::Integer(number(n)?),
        Value::Array(items) => Ipld::List(
            items
                .iter()
                .map(|v| from_json(v, depth + 1))
                .collect::<Result<_>>()?,
        ),
        Value::Object(map) => {
            if let Some(link) = map.get("$link") {
                if map.len() != 1 {
                    return Err(data_err("$link object must have no other keys"));
                }
                let Value::String(s) = link else {
                    return Err(data_err("$link must be a string"));
                };
                return Ok(Ipld::Link(parse_link(s)?));
            }
            if let Some(bytes) = map.get("$bytes") {
                if map.len() != 1 {
                    return Err(data_err("$bytes object must have no other keys"));
                }
                let Value::String(s) = bytes else {
                    return Err(data_err("$bytes must be a string"));
                };
                let decoded = BASE64
                    .decode(s)
                    .map_err(|e| data_err(format!("bad $bytes base64: {e}")))?;
                return Ok(Ipld::Bytes(decoded));
            }
            let mut out = BTreeMap::new();
            for (k, v) in map {
                out.insert(k.clone(), from_json(v, depth + 1)?);
            }
            Ipld::Map(out)
        }
    })
}

fn number(n: &Number) -> Result<i128> {
    if let Some(i) = n.as_i64() {
        return Ok(i128::from(i));
    }
    if n.is_u64() {
        return Err(data_err("integer larger than a signed 64-bit integer"));
    }
    match n.as_f64() {
        Some(f) if f.is_finite() && f.fract() == 0.0 && f.abs() <= MAX_SAFE_FLOAT_INT => {
            Ok(f as i128)
        }
        _ => Err(data_err(format!("floats are not allowed ({n})"))),
    }
}

fn parse_link(s: &str) -> Result<Cid> {
    let cid = crate::cid::parse(s)?;
    check_link(&cid)?;
    Ok(cid)
}

/// atproto links are CIDv1, dag-cbor or raw, sha2-256. Anything else (CIDv0, identity hashes,
/// other codecs) is refused: such CIDs do not round-trip canonically and no atproto data uses them.
fn check_link(cid: &Cid) -> Result<()> {
    if crate::cid::is_supported(cid) {
        Ok(())
    } else {
        Err(Error::Cid(format!(
            "{cid}: links must be CIDv1 dag-cbor or raw with sha2-256"
        )))
    }
}

/// Converts a data value to atproto JSON.
pub fn ipld_to_json(value: &Ipld) -> Result<Value> {
    validate(value, 0)?;
    to_json(value)
}

fn to_json(value: &Ipld) -> Result<Value> {
    Ok(match value {
        Ipld::Null => Value::Null,
        Ipld::Bool(b) => Value::Bool(*b),
        Ipld::Integer(i) => {
            let i = i64::try_from(*i)
                .map_err(|_| data_err("integer outside the signed 64-bit range"))?;
            Value::Number(i.into())
        }
        Ipld::Float(_) => return Err(data_err("floats are not allowed")),
        Ipld::String(s) => Value::String(s.clone()),
        Ipld::Bytes(b) => single("$bytes", Value::String(BASE64.encode(b))),
        Ipld::Link(cid) => single("$link", Value::String(cid.to_string())),
        Ipld::List(items) => Value::Array(items.iter().map(to_json).collect::<Result<_>>()?),
        Ipld::Map(map) => {
            let mut out = Map::with_capacity(map.len());
            for (k, v) in map {
                out.insert(k.clone(), to_json(v)?);
            }
            Value::Object(out)
        }
    })
}

fn single(key: &str, value: Value) -> Value {
    let mut map = Map::with_capacity(1);
    map.insert(key.to_owned(), value);
    Value::Object(map)
}

/// Checks the data-model rules on a value (no floats, ranges, depth, `$type`, blobs, and no map
/// that would read back from JSON as a link or bytes).
pub fn validate(value: &Ipld, depth: usize) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(data_err(format!("nested deeper than {MAX_DEPTH} levels")));
    }
    match value {
        Ipld::Float(_) => Err(data_err("floats are not allowed")),
        Ipld::Integer(i) if i64::try_from(*i).is_err() => {
            Err(data_err("integer outside the signed 64-bit range"))
        }
        Ipld::Link(cid) => check_link(cid),
        Ipld::List(items) => items.iter().try_for_each(|v| validate(v, depth + 1)),
        Ipld::Map(map) => {
            if map.len() == 1 && (map.contains_key("$link") || map.contains_key("$bytes")) {
                return Err(data_err(
                    "an object with only a $link or $bytes key is reserved",
                ));
            }
            match map.get("$type") {
                None => {}
                Some(Ipld::String(t)) if t == "blob" => {
                    Blob::from_ipld(value)?;
                }
                Some(Ipld::String(t)) if !t.is_empty() => {}
                Some(_) => return Err(data_err("$type must be a non-empty string")),
            }
            map.values().try_for_each(|v| validate(v, depth + 1))
        }
        _ => Ok(()),
    }
}

/// Checks a record value: a data object whose `$type` is a non-empty string.
pub fn validate_record(value: &Ipld) -> Result<()> {
    let Ipld::Map(map) = value else {
        return Err(data_err("a record must be an object"));
    };
    match map.get("$type") {
        Some(Ipld::String(t)) if !t.is_empty() => validate(value, 0),
        _ => Err(data_err("a record needs a non-empty string $type")),
    }
}

/// Strict DAG-CBOR bytes of a value.
pub fn encode(value: &Ipld) -> Result<Vec<u8>> {
    validate(value, 0)?;
    to_dag_cbor(value)
}

/// Decodes strict DAG-CBOR (canonical form only; no floats; nothing after the value).
///
/// Canonical form is checked by re-encoding: the decoder alone lets some non-canonical inputs
/// through (e.g. indefinite-length strings, found by fuzzing), and a value whose bytes are not
/// the canonical ones would not keep its CID across a round trip.
pub fn decode(bytes: &[u8]) -> Result<Ipld> {
    let value: Ipld = from_dag_cbor(bytes)?;
    validate(&value, 0).map_err(|e| match e {
        Error::Data(m) | Error::Cid(m) => Error::CborDecode(m),
        other => other,
    })?;
    if to_dag_cbor(&value)? != bytes {
        return Err(Error::CborDecode("not in canonical DAG-CBOR form".into()));
    }
    Ok(value)
}

/// The DAG-CBOR bytes of a record and their CID (the record's CID).
pub fn record_cid(value: &Ipld) -> Result<(Cid, Vec<u8>)> {
    let bytes = encode(value)?;
    Ok((crate::cid::dag_cbor(&bytes), bytes))
}

/// Serialises any serde value as DAG-CBOR.
pub fn to_dag_cbor<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    serde_ipld_dagcbor::to_vec(value).map_err(|e| Error::CborEncode(e.to_string()))
}

/// Deserialises strict DAG-CBOR into any serde type.
pub fn from_dag_cbor<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_ipld_dagcbor::from_slice(bytes).map_err(|e| Error::CborDecode(e.to_string()))
}

/// A blob reference: `{"$type": "blob", "ref": <link>, "mimeType": …, "size": …}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// CID of the blob bytes (raw codec).
    pub cid: Cid,
    /// Declared MIME type.
    pub mime_type: String,
    /// Declared size in bytes.
    pub size: u64,
}

impl Blob {
    /// Reads a blob object (the current form; legacy `{cid, mimeType}` objects are not blobs).
    pub fn from_ipld(value: &Ipld) -> Result<Self> {
        let Ipld::Map(map) = value else {
            return Err(data_err("blob must be an object"));
        };
        if !matches!(map.get("$type"), Some(Ipld::String(t)) if t == "blob") {
            return Err(data_err("blob needs $type \"blob\""));
        }
        let Some(Ipld::Link(cid)) = map.get("ref") else {
            return Err(data_err("blob needs a ref link"));
        };
        let Some(Ipld::String(mime_type)) = map.get("mimeType") else {
            return Err(data_err("blob needs a string mimeType"));
        };
        let Some(Ipld::Integer(size)) = map.get("size") else {
            return Err(data_err("blob needs an integer size"));
        };
        let size = u64::try_from(*size).map_err(|_| data_err("blob size must not be negative"))?;
        Ok(Self {
            cid: *cid,
            mime_type: mime_type.clone(),
            size,
        })
    }

    /// The blob object.
    pub fn to_ipld(&self) -> Ipld {
        Ipld::Map(BTreeMap::from([
            ("$type".to_owned(), Ipld::String("blob".into())),
            ("ref".to_owned(), Ipld::Link(self.cid)),
            ("mimeType".to_owned(), Ipld::String(self.mime_type.clone())),
            ("size".to_owned(), Ipld::Integer(i128::from(self.size))),
        ]))
    }
}

/// CIDs of every blob referenced anywhere in `value`, in document order, without duplicates.
pub fn blob_refs(value: &Ipld) -> Vec<Cid> {
    let mut out = Vec::new();
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Ipld::Map(map) => {
                if let Ok(blob) = Blob::from_ipld(v) {
                    if !out.contains(&blob.cid) {
                        out.push(blob.cid);
                    }
                    continue;
                }
                stack.extend(map.values().rev());
            }
            Ipld::List(items) => stack.extend(items.iter().rev()),
            _ => {}
        }
    }
    out
}
