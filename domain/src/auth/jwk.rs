//! EC public JWKs (RFC 7517/7518), RFC 7638 thumbprints and JWK sets.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::jws::{b64url, b64url_decode};
use super::{TokenError, clip, fail};
use crate::Result;
use crate::crypto::{KeyAlgorithm, PublicKey};

/// The JWK `crv` name of a curve.
fn crv_name(alg: KeyAlgorithm) -> &'static str {
    match alg {
        KeyAlgorithm::P256 => "P-256",
        KeyAlgorithm::K256 => "secp256k1",
    }
}

fn invalid<T>(reason: impl Into<String>) -> Result<T> {
    fail(TokenError::InvalidJwk(reason.into()))
}

/// Parses an EC public JWK: `kty` `"EC"`, `crv` `"P-256"` or `"secp256k1"`, `x`/`y` unpadded
/// base64url of 32 bytes each, forming a point of the curve. Private keys (a `d` member) are
/// rejected, as are a `use` other than `"sig"` and an `alg` that does not belong to the curve.
/// Other members (`kid`, `key_ops`, `ext`, …) are ignored.
pub fn parse_jwk(jwk: &Value) -> Result<PublicKey> {
    let Value::Object(jwk) = jwk else {
        return invalid("not a JSON object");
    };
    if jwk.contains_key("d") {
        return invalid("private key (has a \"d\" member)");
    }
    match jwk.get("kty") {
        Some(Value::String(kty)) if kty == "EC" => {}
        Some(other) => return invalid(format!("unsupported kty {}", clip(&other.to_string()))),
        None => return invalid("missing kty"),
    }
    let alg = match jwk.get("crv") {
        Some(Value::String(crv)) if crv == "P-256" => KeyAlgorithm::P256,
        Some(Value::String(crv)) if crv == "secp256k1" => KeyAlgorithm::K256,
        Some(other) => return invalid(format!("unsupported crv {}", clip(&other.to_string()))),
        None => return invalid("missing crv"),
    };
    match jwk.get("use") {
        None => {}
        Some(Value::String(u)) if u == "sig" => {}
        Some(_) => return invalid("use is not \"sig\""),
    }
    match jwk.get("alg") {
        None => {}
        Some(Value::String(a)) if a == alg.jwt_alg() => {}
        Some(_) => return invalid(format!("alg does not match curve {}", crv_name(alg))),
    }
    let x = coordinate(jwk, "x")?;
    let y = coordinate(jwk, "y")?;
    let mut sec1 = [0u8; 65];
    sec1[0] = 0x04;
    sec1[1..33].copy_from_slice(&x);
    sec1[33..].copy_from_slice(&y);
    PublicKey::from_sec1(alg, &sec1)
        .or_else(|_| invalid(format!("not a point of {}", crv_name(alg))))
}

fn coordinate(jwk: &Map<String, Value>, name: &str) -> Result<[u8; 32]> {
    let Some(Value::String(encoded)) = jwk.get(name) else {
        return invalid(format!("missing or non-string {name}"));
    };
    let bytes = b64url_decode(encoded).or_else(|_| invalid(format!("{name} is not base64url")))?;
    bytes
        .try_into()
        .or_else(|_| invalid(format!("{name} is not 32 bytes")))
}

/// The RFC 7638 members of `key`, base64url-encoded: `(crv, x, y)`.
fn members(key: &PublicKey) -> (&'static str, String, String) {
    let (x, y) = key.uncompressed_xy();
    (crv_name(key.algorithm()), b64url(&x), b64url(&y))
}

/// The public JWK of `key`: `{"kty":"EC","crv":…,"x":…,"y":…}`.
pub fn jwk_from_public_key(key: &PublicKey) -> Value {
    let (crv, x, y) = members(key);
    json!({ "kty": "EC", "crv": crv, "x": x, "y": y })
}

/// The RFC 7638 JWK thumbprint of `key`: base64url(SHA-256(`{"crv":…,"kty":"EC","x":…,"y":…}`)),
/// the required members in lexicographic order with no whitespace. This is the DPoP `jkt`.
pub fn jwk_thumbprint(key: &PublicKey) -> String {
    let (crv, x, y) = members(key);
    // All values are base64url or fixed curve names: nothing needs JSON escaping.
    let canonical = format!(r#"{{"crv":"{crv}","kty":"EC","x":"{x}","y":"{y}"}}"#);
    b64url(&Sha256::digest(canonical.as_bytes()))
}

/// A public key of a JWK set, with its `kid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jwk {
    /// The key id, if the JWK has one.
    pub kid: Option<String>,
    /// The key.
    pub key: PublicKey,
}

impl Jwk {
    /// Parses one JWK as [`parse_jwk`] does, keeping its `kid` (which must be a string).
    pub fn from_json(jwk: &Value) -> Result<Self> {
        let kid = match jwk.get("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid.clone()),
            Some(_) => return invalid("kid is not a string"),
        };
        Ok(Self {
            kid,
            key: parse_jwk(jwk)?,
        })
    }

    /// The RFC 7638 thumbprint of the key.
    pub fn thumbprint(&self) -> String {
        jwk_thumbprint(&self.key)
    }
}

/// The usable keys of a JWKS document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JwkSet {
    /// Supported signing keys, in document order.
    pub keys: Vec<Jwk>,
    /// How many entries were skipped as unsupported or invalid (RSA keys, `use: "enc"`, …).
    pub skipped: usize,
}

impl JwkSet {
    /// Parses a JWKS document (`{"keys":[…]}`). Entries that are not supported EC public
    /// signing keys are skipped (and counted), not fatal; a document without a `keys` array is.
    pub fn from_json(document: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(document)
            .or_else(|_| fail(TokenError::Malformed("JWKS is not JSON".into())))?;
        Self::from_value(&value)
    }

    /// As [`JwkSet::from_json`], from parsed JSON.
    pub fn from_value(document: &Value) -> Result<Self> {
        let Some(Value::Array(entries)) = document.get("keys") else {
            return fail(TokenError::Malformed("JWKS has no \"keys\" array".into()));
        };
        let mut set = JwkSet::default();
        for entry in entries {
            match Jwk::from_json(entry) {
                Ok(jwk) => set.keys.push(jwk),
                Err(_) => set.skipped += 1,
            }
        }
        Ok(set)
    }
}
