//! PKCE (RFC 7636) with the `S256` method, the only one atproto allows.

use sha2::{Digest, Sha256};

use super::{OAuthError, OAuthResult, random_token};
use crate::auth::jws::b64url;

/// A PKCE `code_verifier`: 43 to 128 characters of `[A-Za-z0-9-._~]`.
#[derive(Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct PkceVerifier(String);

impl std::fmt::Debug for PkceVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PkceVerifier(<redacted>)")
    }
}

impl PkceVerifier {
    /// A fresh verifier: 32 random bytes, base64url (43 characters), as RFC 7636 §4.1 advises.
    pub fn generate() -> Self {
        Self(random_token(32))
    }

    /// A verifier from its text; anything outside RFC 7636 §4.1's grammar is refused.
    pub fn parse(text: &str) -> OAuthResult<Self> {
        let unreserved =
            |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
        if (43..=128).contains(&text.len()) && text.bytes().all(unreserved) {
            Ok(Self(text.to_owned()))
        } else {
            Err(OAuthError::Encoding(
                "a PKCE verifier is 43 to 128 characters of [A-Za-z0-9-._~]".into(),
            ))
        }
    }

    /// The verifier (sent to the token endpoint, never to the authorization endpoint).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `S256` challenge: base64url(SHA-256(verifier)).
    pub fn challenge(&self) -> String {
        b64url(&Sha256::digest(self.0.as_bytes()))
    }
}

impl<'de> serde::Deserialize<'de> for PkceVerifier {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The challenge method name sent with the challenge.
pub const CHALLENGE_METHOD: &str = "S256";
