//! Signed test tokens: compact JWS over JSON (service-auth JWTs, OAuth access tokens) and DPoP
//! proofs, made with the domain's keys so tests exercise the real verifiers.

use base64::Engine as _;
use serde_json::{Value, json};
use stratos_domain::auth::jwk_from_public_key;
use stratos_domain::crypto::Keypair;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// `header.claims.signature`, signed by `key` (its `alg` is put in the header).
pub fn sign_jwt(key: &Keypair, header: &Value, claims: &Value) -> String {
    let mut header = header.clone();
    header["alg"] = json!(key.public_key().algorithm().jwt_alg());
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    // Signing only fails for keys the domain could not have built.
    let sig = key.sign(input.as_bytes()).unwrap_or([0; 64]);
    format!("{input}.{}", b64(&sig))
}

/// The current time, unix seconds.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A DPoP proof by `key` for `htm` `htu`, bound to `access_token` (`ath`), with an optional
/// server nonce and the given `jti`, issued now (the system clock).
pub fn dpop_proof(
    key: &Keypair,
    htm: &str,
    htu: &str,
    access_token: &str,
    nonce: Option<&str>,
    jti: &str,
) -> String {
    dpop_proof_at(key, htm, htu, access_token, nonce, jti, now_secs())
}

/// [`dpop_proof`] issued at `iat` (unix seconds), for tests on a manual clock.
pub fn dpop_proof_at(
    key: &Keypair,
    htm: &str,
    htu: &str,
    access_token: &str,
    nonce: Option<&str>,
    jti: &str,
    iat: i64,
) -> String {
    let header = json!({ "typ": "dpop+jwt", "jwk": jwk_from_public_key(key.public_key()) });
    let mut claims = json!({
        "jti": jti,
        "htm": htm,
        "htu": htu,
        "iat": iat,
        "ath": b64(&stratos_domain::cid::sha256(access_token.as_bytes())),
    });
    if let Some(nonce) = nonce {
        claims["nonce"] = json!(nonce);
    }
    sign_jwt(key, &header, &claims)
}
