//! What the client keeps: an [`AuthorizationState`] per pending flow (from PAR to callback) and
//! a [`Session`] per authorized account. Both hold secrets (PKCE verifier, DPoP private key,
//! tokens): their `Debug` redacts them, and at rest they are sealed ([`super::SealKey`]).

use serde::{Deserialize, Serialize};

use super::{DpopKey, OAuthError, OAuthResult, PkceVerifier, TokenResponse, random_token};
use crate::syntax::{Did, Handle};

/// How long a pending flow may take, from PAR to callback, seconds.
pub const STATE_MAX_AGE_SECS: i64 = 30 * 60;

/// Whom a flow is for, as the user typed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizationTarget {
    /// A handle (resolved to a DID, then the DID's PDS).
    Handle(Handle),
    /// A DID (its document names the PDS).
    Did(Did),
    /// A PDS or authorization server URL: the account is learnt from the token's `sub`.
    Server(String),
}

impl AuthorizationTarget {
    /// `did:…` is a DID, `http(s)://…` a server URL, anything else a handle (a leading `@` is
    /// dropped).
    pub fn parse(input: &str) -> OAuthResult<Self> {
        let input = input.trim();
        let bad = || OAuthError::InvalidTarget(crate::auth::clip(input));
        if input.starts_with("did:") {
            return Did::parse(input).map(Self::Did).map_err(|_| bad());
        }
        if input.starts_with("https://") || input.starts_with("http://") {
            return if crate::auth::normalize_htu(input).is_some() && !input.contains(['?', '#']) {
                Ok(Self::Server(input.trim_end_matches('/').to_owned()))
            } else {
                Err(bad())
            };
        }
        let handle = input.strip_prefix('@').unwrap_or(input);
        Handle::parse(handle)
            .map(|h| Self::Handle(h.normalized()))
            .map_err(|_| bad())
    }
}

/// A pending authorization (PAR sent, user not yet back). Stored sealed under its `state`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationState {
    /// The random `state` parameter: the key the callback is matched by.
    pub state: String,
    /// The PKCE verifier (its challenge went into PAR).
    pub pkce_verifier: PkceVerifier,
    /// The DPoP key the tokens will be bound to.
    pub dpop_key: DpopKey,
    /// The authorization server the request went to.
    pub issuer: String,
    /// The account the flow was started for, when it started from a handle or DID.
    pub expected_did: Option<Did>,
    /// That account's PDS, when known.
    pub pds_url: Option<String>,
    /// The client id used for PAR (the token request repeats it).
    pub client_id: String,
    /// The OAuth `redirect_uri` sent in PAR (the token request repeats it).
    pub redirect_uri: String,
    /// Where the application sends the user once the flow is done (its own, checked page).
    pub app_redirect: Option<String>,
    /// The authorization server's last `DPoP-Nonce`.
    pub auth_server_nonce: Option<String>,
    /// When the flow started, unix seconds.
    pub created_at: i64,
}

impl std::fmt::Debug for AuthorizationState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorizationState")
            .field("issuer", &self.issuer)
            .field("expected_did", &self.expected_did)
            .field("client_id", &self.client_id)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

impl AuthorizationState {
    /// A new flow with a fresh `state`, PKCE verifier and DPoP key.
    pub fn new(
        issuer: impl Into<String>,
        client_id: impl Into<String>,
        redirect_uri: impl Into<String>,
        now: i64,
    ) -> Self {
        Self {
            state: random_token(32),
            pkce_verifier: PkceVerifier::generate(),
            dpop_key: DpopKey::generate(),
            issuer: issuer.into(),
            expected_did: None,
            pds_url: None,
            client_id: client_id.into(),
            redirect_uri: redirect_uri.into(),
            app_redirect: None,
            auth_server_nonce: None,
            created_at: now,
        }
    }

    /// When the flow may no longer complete, unix seconds (for the store's expiry).
    pub fn expires_at(&self) -> i64 {
        self.created_at.saturating_add(STATE_MAX_AGE_SECS)
    }

    /// JSON for sealing.
    pub fn to_json(&self) -> OAuthResult<Vec<u8>> {
        serde_json::to_vec(self).map_err(|e| OAuthError::Encoding(e.to_string()))
    }

    /// Reads [`AuthorizationState::to_json`]'s output.
    pub fn from_json(bytes: &[u8]) -> OAuthResult<Self> {
        serde_json::from_slice(bytes).map_err(|e| OAuthError::Encoding(e.to_string()))
    }
}

/// An authorized account: DPoP-bound tokens for its PDS. Stored sealed under the DID.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The account (the token's `sub`).
    pub did: Did,
    /// The authorization server that issued the tokens.
    pub issuer: String,
    /// The account's PDS (where records are written).
    pub pds_url: String,
    /// The client id the tokens were issued to.
    pub client_id: String,
    /// The access token.
    pub access_token: String,
    /// The refresh token (rotated on every refresh).
    pub refresh_token: Option<String>,
    /// The key the tokens are bound to.
    pub dpop_key: DpopKey,
    /// When the access token expires, unix seconds (when the server said).
    pub expires_at: Option<i64>,
    /// The granted scopes.
    pub scope: String,
    /// The authorization server's last `DPoP-Nonce`.
    pub auth_server_nonce: Option<String>,
    /// The PDS's last `DPoP-Nonce`.
    pub pds_nonce: Option<String>,
    /// When the account authorized, unix seconds.
    pub created_at: i64,
    /// When the tokens were last issued (authorization or refresh), unix seconds.
    pub updated_at: i64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("did", &self.did)
            .field("issuer", &self.issuer)
            .field("pds_url", &self.pds_url)
            .field("scope", &self.scope)
            .field("expires_at", &self.expires_at)
            .field("dpop_key", &self.dpop_key)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// The session a token response opens for the flow `state`, whose account is on `pds_url`.
    /// The caller has checked the subject ([`super::check_subject`]).
    pub fn from_token_response(
        state: &AuthorizationState,
        tokens: TokenResponse,
        pds_url: impl Into<String>,
        now: i64,
    ) -> Self {
        Self {
            did: tokens.sub,
            issuer: state.issuer.clone(),
            pds_url: pds_url.into(),
            client_id: state.client_id.clone(),
            access_token: tokens.access_token,
            refresh_token: tokens.refresh_token,
            dpop_key: state.dpop_key.clone(),
            expires_at: tokens.expires_in.map(|secs| now.saturating_add(secs)),
            scope: tokens.scope,
            auth_server_nonce: state.auth_server_nonce.clone(),
            pds_nonce: None,
            created_at: now,
            updated_at: now,
        }
    }

    /// The session after a refresh: new access token, the rotated refresh token (the old one is
    /// kept only when the server issued none), new expiry and scope. A response for another
    /// account is refused.
    pub fn refreshed(&self, tokens: TokenResponse, now: i64) -> OAuthResult<Self> {
        if tokens.sub != self.did {
            return Err(OAuthError::SubjectMismatch {
                expected: self.did.clone(),
                found: tokens.sub,
            });
        }
        Ok(Self {
            access_token: tokens.access_token,
            refresh_token: tokens.refresh_token.or_else(|| self.refresh_token.clone()),
            expires_at: tokens.expires_in.map(|secs| now.saturating_add(secs)),
            scope: tokens.scope,
            updated_at: now,
            ..self.clone()
        })
    }

    /// Whether the access token expires within `margin_secs` of `now` (refresh first). A
    /// session without a known expiry is refreshed only when the PDS refuses its token.
    pub fn needs_refresh(&self, now: i64, margin_secs: i64) -> bool {
        self.expires_at
            .is_some_and(|exp| now.saturating_add(margin_secs) >= exp)
    }

    /// JSON for sealing.
    pub fn to_json(&self) -> OAuthResult<Vec<u8>> {
        serde_json::to_vec(self).map_err(|e| OAuthError::Encoding(e.to_string()))
    }

    /// Reads [`Session::to_json`]'s output.
    pub fn from_json(bytes: &[u8]) -> OAuthResult<Self> {
        serde_json::from_slice(bytes).map_err(|e| OAuthError::Encoding(e.to_string()))
    }
}
