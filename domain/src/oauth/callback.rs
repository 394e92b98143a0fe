//! The redirect back from the authorization server (`redirect_uri?code=…&state=…&iss=…`, or
//! `?error=…`), checked against the pending flow before any code is exchanged, and the token's
//! subject checked against the account the flow was started for.

use super::{AuthorizationState, OAuthError, OAuthResult, STATE_MAX_AGE_SECS, TokenResponse, form};

/// The callback's query parameters (unknown ones ignored).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct CallbackParams {
    /// The authorization code.
    pub code: Option<String>,
    /// The flow's `state`.
    pub state: Option<String>,
    /// The issuer that answered (RFC 9207).
    pub iss: Option<String>,
    /// An OAuth error code instead of a code.
    pub error: Option<String>,
    /// The error's description.
    pub error_description: Option<String>,
}

impl std::fmt::Debug for CallbackParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackParams")
            .field("code", &self.code.as_ref().map(|_| "<redacted>"))
            .field("state", &self.state)
            .field("iss", &self.iss)
            .field("error", &self.error)
            .field("error_description", &self.error_description)
            .finish()
    }
}

impl CallbackParams {
    /// From name/value pairs; the first of a repeated name counts.
    pub fn from_pairs<K: AsRef<str>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let mut params = Self::default();
        for (name, value) in pairs {
            let slot = match name.as_ref() {
                "code" => &mut params.code,
                "state" => &mut params.state,
                "iss" => &mut params.iss,
                "error" => &mut params.error,
                "error_description" => &mut params.error_description,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(value.into());
            }
        }
        params
    }

    /// From a query string (without the `?`).
    pub fn from_query(query: &str) -> Self {
        Self::from_pairs(form::decode(query))
    }
}

/// Checks a callback against its pending flow and returns the authorization code.
///
/// Order: `state` present and the flow's (else [`OAuthError::StateMismatch`]); the flow not
/// older than [`STATE_MAX_AGE_SECS`] ([`OAuthError::StateExpired`]); `iss` present and the
/// flow's issuer ([`OAuthError::MissingParameter`] / [`OAuthError::IssuerMismatch`]; RFC 9207,
/// checked on error answers too, so an error cannot be injected by another server); an
/// `error` answer ([`OAuthError::AuthorizationFailed`]); `code` present.
pub fn validate_callback(
    params: &CallbackParams,
    state: &AuthorizationState,
    now: i64,
) -> OAuthResult<String> {
    match &params.state {
        Some(s) if constant_time_eq(s.as_bytes(), state.state.as_bytes()) => {}
        _ => return Err(OAuthError::StateMismatch),
    }
    if now > state.created_at.saturating_add(STATE_MAX_AGE_SECS) {
        return Err(OAuthError::StateExpired {
            created_at: state.created_at,
            now,
        });
    }
    let iss = params
        .iss
        .as_deref()
        .ok_or(OAuthError::MissingParameter("iss"))?;
    if iss != state.issuer {
        return Err(OAuthError::IssuerMismatch {
            expected: state.issuer.clone(),
            found: crate::auth::clip(iss),
        });
    }
    if let Some(error) = &params.error {
        return Err(OAuthError::AuthorizationFailed {
            error: crate::auth::clip(error),
            description: params.error_description.as_deref().map(crate::auth::clip),
        });
    }
    params
        .code
        .clone()
        .filter(|c| !c.is_empty())
        .ok_or(OAuthError::MissingParameter("code"))
}

/// Checks that the tokens are for the account the flow was started for (when it was started
/// for one): `sub` must equal `expected_did`. A flow started from a server URL has no expected
/// account; its caller must then check that `sub`'s PDS names this issuer.
pub fn check_subject(tokens: &TokenResponse, state: &AuthorizationState) -> OAuthResult<()> {
    match &state.expected_did {
        Some(expected) if *expected != tokens.sub => Err(OAuthError::SubjectMismatch {
            expected: expected.clone(),
            found: tokens.sub.clone(),
        }),
        _ => Ok(()),
    }
}

/// Byte comparison whose time does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
