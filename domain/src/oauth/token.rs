//! The authorization server's answers: token responses (RFC 6749 §5.1 with atproto's `sub`)
//! and OAuth error responses (§5.2).

use serde::Deserialize;

use super::{OAuthError, OAuthResult};
use crate::syntax::Did;

/// A successful token response, checked: a DPoP token for a DID with the `atproto` scope.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenResponse {
    /// The access token (opaque to the client).
    pub access_token: String,
    /// The refresh token, when the server issued one.
    pub refresh_token: Option<String>,
    /// Lifetime of the access token, seconds.
    pub expires_in: Option<i64>,
    /// The granted scopes, space-separated (includes `atproto`).
    pub scope: String,
    /// The account the tokens act for.
    pub sub: Did,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("sub", &self.sub)
            .field("scope", &self.scope)
            .field("expires_in", &self.expires_in)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

impl TokenResponse {
    /// Reads and checks a 2xx body of the token endpoint: `token_type` `DPoP` (any case),
    /// non-empty `access_token`, `sub` a DID, `scope` containing `atproto`, `expires_in` not
    /// negative.
    pub fn from_json(body: &[u8]) -> OAuthResult<Self> {
        #[derive(Deserialize)]
        struct Wire {
            access_token: String,
            token_type: String,
            #[serde(default)]
            refresh_token: Option<String>,
            #[serde(default)]
            expires_in: Option<f64>,
            #[serde(default)]
            scope: Option<String>,
            #[serde(default)]
            sub: Option<String>,
        }
        let bad = |reason: String| OAuthError::InvalidTokenResponse(reason);
        let wire: Wire = serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
        if !wire.token_type.eq_ignore_ascii_case("DPoP") {
            return Err(bad(format!(
                "token_type is {:?}, not DPoP",
                wire.token_type
            )));
        }
        if wire.access_token.is_empty() {
            return Err(bad("empty access_token".into()));
        }
        let sub = wire.sub.ok_or_else(|| bad("no sub".into()))?;
        let sub = Did::parse(&sub).map_err(|_| bad(format!("sub {sub:?} is not a DID")))?;
        let scope = wire.scope.unwrap_or_default();
        if !scope.split(' ').any(|s| s == "atproto") {
            return Err(bad(format!("scope {scope:?} lacks atproto")));
        }
        let expires_in = match wire.expires_in {
            None => None,
            Some(secs) if secs.is_finite() && (0.0..1e12).contains(&secs) => Some(secs as i64),
            Some(_) => return Err(bad("expires_in out of range".into())),
        };
        Ok(Self {
            access_token: wire.access_token,
            refresh_token: wire.refresh_token.filter(|t| !t.is_empty()),
            expires_in,
            scope,
            sub,
        })
    }
}

/// An OAuth error response (`{"error":…,"error_description":…}`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ErrorResponse {
    /// The error code (`invalid_grant`, `use_dpop_nonce`, …).
    pub error: String,
    /// The server's description, if any.
    #[serde(default)]
    pub error_description: Option<String>,
}

impl ErrorResponse {
    /// Reads an error body; `None` when it is not one. The server's texts are clipped
    /// ([`crate::auth::clip`]): they end up in errors and logs.
    pub fn from_json(body: &[u8]) -> Option<Self> {
        let e: Self = serde_json::from_slice(body).ok()?;
        Some(Self {
            error: crate::auth::clip(&e.error),
            error_description: e.error_description.as_deref().map(crate::auth::clip),
        })
    }
}
