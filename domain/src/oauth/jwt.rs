//! Compact JWS signing with ES256 (the client's own JWTs: DPoP proofs, client assertions).

use serde_json::Value;

use super::{OAuthError, OAuthResult};
use crate::auth::jws::b64url;
use crate::crypto::{KeyAlgorithm, Keypair};

/// `b64(header).b64(claims).b64(signature)` signed by `key` (P-256: the header's `alg` must be
/// `ES256`). The signature is the 64-byte `r‖s` form, low S.
pub(crate) fn sign(header: &Value, claims: &Value, key: &Keypair) -> OAuthResult<String> {
    if key.public_key().algorithm() != KeyAlgorithm::P256 {
        return Err(OAuthError::Key(Box::new(crate::Error::Key(
            "OAuth JWTs are signed with ES256 (a P-256 key)".into(),
        ))));
    }
    let encode = |v: &Value| {
        serde_json::to_vec(v)
            .map(|bytes| b64url(&bytes))
            .map_err(|e| OAuthError::Encoding(e.to_string()))
    };
    let signing_input = format!("{}.{}", encode(header)?, encode(claims)?);
    let signature = key
        .sign(signing_input.as_bytes())
        .map_err(|e| OAuthError::Signing(Box::new(e)))?;
    Ok(format!("{signing_input}.{}", b64url(&signature)))
}
