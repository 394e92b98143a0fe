//! The client side of DPoP (RFC 9449): one ES256 key per session, and a fresh proof JWT for
//! every request to the authorization server or the PDS.
//!
//! The proofs are the ones [`crate::auth::verify_dpop_proof`] accepts (tested against it):
//! header `{"typ":"dpop+jwt","alg":"ES256","jwk":{…public key…}}`, claims `jti` (16 random
//! bytes), `htm`, `htu` (the URL without query and fragment), `iat`, and when given `nonce`
//! (the server's last `DPoP-Nonce`) and `ath` (base64url(SHA-256(access token))).

use std::sync::Arc;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::{OAuthError, OAuthResult, jwt, non_negative, random_token};
use crate::auth::jws::{b64url, b64url_decode};
use crate::auth::{jwk_from_public_key, jwk_thumbprint};
use crate::crypto::{KeyAlgorithm, Keypair, PublicKey};

/// A DPoP private key (P-256). Cloning shares the key. `Debug` shows only the thumbprint;
/// serialized (for a sealed session) it is the base64url private scalar.
#[derive(Clone)]
pub struct DpopKey(Arc<Keypair>);

impl std::fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("DpopKey").field(&self.thumbprint()).finish()
    }
}

impl PartialEq for DpopKey {
    fn eq(&self, other: &Self) -> bool {
        // A private scalar determines its public point, and the point its scalar.
        self.public_key() == other.public_key()
    }
}

impl Eq for DpopKey {}

/// What one proof is for.
#[derive(Debug, Clone, Copy)]
pub struct DpopProofParams<'a> {
    /// The request method (`POST`, `GET`).
    pub method: &'a str,
    /// The request URL; query and fragment are left out of `htu`.
    pub url: &'a str,
    /// The server's nonce, once it sent one.
    pub nonce: Option<&'a str>,
    /// The access token sent with the request (resource requests): adds `ath`.
    pub access_token: Option<&'a str>,
    /// Unix seconds (`iat`).
    pub now: i64,
}

impl DpopKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        Self(Arc::new(Keypair::generate(KeyAlgorithm::P256)))
    }

    /// A key from its 32-byte private scalar.
    pub fn from_private_bytes(bytes: &[u8]) -> OAuthResult<Self> {
        Keypair::from_private_bytes(KeyAlgorithm::P256, bytes)
            .map(|k| Self(Arc::new(k)))
            .map_err(|e| OAuthError::Key(Box::new(e)))
    }

    /// The private scalar (for sealed storage only).
    pub fn private_bytes(&self) -> [u8; 32] {
        self.0.private_bytes()
    }

    /// The public key.
    pub fn public_key(&self) -> &PublicKey {
        self.0.public_key()
    }

    /// The public JWK (the proof header's `jwk`).
    pub fn public_jwk(&self) -> Value {
        jwk_from_public_key(self.public_key())
    }

    /// The RFC 7638 thumbprint: what the authorization server binds tokens to (`cnf.jkt`).
    pub fn thumbprint(&self) -> String {
        jwk_thumbprint(self.public_key())
    }

    /// A signed proof for one request.
    pub fn proof(&self, params: &DpopProofParams<'_>) -> OAuthResult<String> {
        let htu = params.url.split(['?', '#']).next().unwrap_or(params.url);
        let header = json!({ "typ": "dpop+jwt", "alg": "ES256", "jwk": self.public_jwk() });
        let mut claims = Map::new();
        claims.insert("jti".into(), json!(random_token(16)));
        claims.insert("htm".into(), json!(params.method));
        claims.insert("htu".into(), json!(htu));
        claims.insert("iat".into(), json!(non_negative(params.now)));
        if let Some(nonce) = params.nonce {
            claims.insert("nonce".into(), json!(nonce));
        }
        if let Some(token) = params.access_token {
            claims.insert(
                "ath".into(),
                json!(b64url(&Sha256::digest(token.as_bytes()))),
            );
        }
        jwt::sign(&header, &Value::Object(claims), &self.0)
    }
}

impl serde::Serialize for DpopKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&b64url(&self.private_bytes()))
    }
}

impl<'de> serde::Deserialize<'de> for DpopKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(d)?;
        let bytes = b64url_decode(&text)
            .map_err(|_| serde::de::Error::custom("a DPoP key is base64url"))?;
        Self::from_private_bytes(&bytes).map_err(serde::de::Error::custom)
    }
}
