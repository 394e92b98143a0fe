//! Compact JWS parsing shared by every token kind, and claim accessors.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use super::{TokenError, clip, fail};
use crate::Result;
use crate::crypto::{KeyAlgorithm, PublicKey};

/// Largest token accepted, in bytes (bounds the JSON and base64 work done on untrusted input).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// A parsed, not yet verified, compact JWS.
pub(crate) struct Jws<'a> {
    pub header: Map<String, Value>,
    pub claims: Map<String, Value>,
    pub alg: KeyAlgorithm,
    /// `b64(header).b64(payload)`, the signed bytes.
    pub signing_input: &'a str,
    /// `r‖s`, 64 bytes.
    pub signature: Vec<u8>,
}

/// Parses `b64(header).b64(payload).b64(signature)`: exactly three unpadded base64url parts,
/// JSON-object header and payload, `alg` `ES256` or `ES256K`, no `crit`, 64-byte signature.
pub(crate) fn parse(token: &str) -> Result<Jws<'_>> {
    if token.len() > MAX_TOKEN_BYTES {
        return fail(TokenError::Malformed(format!(
            "token exceeds {MAX_TOKEN_BYTES} bytes"
        )));
    }
    let three_parts = || TokenError::Malformed("expected three dot-separated parts".into());
    let (signing_input, sig_b64) = token
        .rsplit_once('.')
        .ok_or_else(|| crate::Error::Token(three_parts()))?;
    let (header_b64, payload_b64) = signing_input
        .split_once('.')
        .ok_or_else(|| crate::Error::Token(three_parts()))?;
    if payload_b64.contains('.') {
        return fail(three_parts());
    }

    let header = json_object(header_b64, "header")?;
    let alg = match header.get("alg") {
        Some(Value::String(alg)) => match alg.as_str() {
            "ES256" => KeyAlgorithm::P256,
            "ES256K" => KeyAlgorithm::K256,
            other => return fail(TokenError::UnsupportedAlgorithm(clip(other))),
        },
        Some(other) => return fail(TokenError::UnsupportedAlgorithm(clip(&other.to_string()))),
        None => return fail(TokenError::UnsupportedAlgorithm("(missing)".into())),
    };
    // RFC 7515 §4.1.11: extensions listed in `crit` must be understood; we understand none.
    if header.contains_key("crit") {
        return fail(TokenError::Malformed(
            "critical header parameters are not supported".into(),
        ));
    }
    let claims = json_object(payload_b64, "payload")?;
    let signature = b64url_decode(sig_b64).map_err(|_| {
        crate::Error::Token(TokenError::Malformed("signature is not base64url".into()))
    })?;
    if signature.len() != 64 {
        return fail(TokenError::InvalidSignature);
    }
    Ok(Jws {
        header,
        claims,
        alg,
        signing_input,
        signature,
    })
}

impl Jws<'_> {
    /// Verifies the signature with the first of `keys` (of the `alg`'s curve) that accepts it;
    /// `strict` requires low S. No key verifies → [`TokenError::InvalidSignature`].
    pub fn verify_with<'k>(
        &self,
        keys: impl IntoIterator<Item = &'k PublicKey>,
        strict: bool,
    ) -> Result<&'k PublicKey> {
        let msg = self.signing_input.as_bytes();
        for key in keys {
            if key.algorithm() != self.alg {
                continue;
            }
            let verified = if strict {
                key.verify(msg, &self.signature)
            } else {
                key.verify_allow_high_s(msg, &self.signature)
            };
            if verified.is_ok() {
                return Ok(key);
            }
        }
        fail(TokenError::InvalidSignature)
    }

    /// The header `typ`, if present (a non-string `typ` is reported as invalid).
    pub fn typ(&self) -> Result<Option<&str>> {
        match self.header.get("typ") {
            None => Ok(None),
            Some(Value::String(t)) => Ok(Some(t)),
            Some(other) => fail(TokenError::InvalidTyp(Some(clip(&other.to_string())))),
        }
    }
}

fn json_object(part: &str, what: &str) -> Result<Map<String, Value>> {
    let bytes = b64url_decode(part).map_err(|_| {
        crate::Error::Token(TokenError::Malformed(format!("{what} is not base64url")))
    })?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => fail(TokenError::Malformed(format!(
            "{what} is not a JSON object"
        ))),
        Err(_) => fail(TokenError::Malformed(format!("{what} is not JSON"))),
    }
}

/// Strict unpadded base64url decoding (no padding, no non-zero trailing bits).
pub(crate) fn b64url_decode(s: &str) -> std::result::Result<Vec<u8>, base64::DecodeError> {
    URL_SAFE_NO_PAD.decode(s)
}

/// Unpadded base64url encoding.
pub(crate) fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// An optional string claim; present with another type → [`TokenError::InvalidClaim`].
pub(crate) fn opt_str<'m>(
    claims: &'m Map<String, Value>,
    name: &'static str,
) -> Result<Option<&'m str>> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => fail(TokenError::InvalidClaim {
            claim: name,
            reason: "not a string".into(),
        }),
    }
}

/// A required string claim.
pub(crate) fn req_str<'m>(claims: &'m Map<String, Value>, name: &'static str) -> Result<&'m str> {
    opt_str(claims, name)?.ok_or(crate::Error::Token(TokenError::MissingClaim(name)))
}

/// An optional NumericDate claim (seconds; a fractional value is truncated).
pub(crate) fn opt_time(claims: &Map<String, Value>, name: &'static str) -> Result<Option<i64>> {
    // Beyond 2^53 a JSON number is not an exact integer in most JWT libraries.
    const LIMIT: f64 = 9_007_199_254_740_992.0;
    let invalid = |reason: &str| {
        fail(TokenError::InvalidClaim {
            claim: name,
            reason: reason.into(),
        })
    };
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                // An i64 is not enough: 2^60 passed as a 54-year token.
                return if i.unsigned_abs() < LIMIT as u64 {
                    Ok(Some(i))
                } else {
                    invalid("out of range")
                };
            }
            match n.as_f64() {
                // In range (checked), so the cast is exact after truncation.
                Some(f) if f.is_finite() && f.abs() < LIMIT => Ok(Some(f.trunc() as i64)),
                _ => invalid("out of range"),
            }
        }
        Some(_) => invalid("not a number"),
    }
}

/// A required NumericDate claim.
pub(crate) fn req_time(claims: &Map<String, Value>, name: &'static str) -> Result<i64> {
    opt_time(claims, name)?.ok_or(crate::Error::Token(TokenError::MissingClaim(name)))
}
