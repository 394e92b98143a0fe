//! Acting on a user's PDS with the user's consent: the atproto OAuth client
//! ([`AtprotoOAuthClient`]) and authenticated record writes ([`PdsWriter`]).
//!
//! The values are the domain's ([`stratos_domain::oauth`]): an [`AuthorizationState`] per pending
//! flow and a [`Session`] per account. The port keeps nothing: the caller stores them, sealed
//! with [`stratos_domain::oauth::SealKey`] (derived from the service key), in the
//! [`crate::oauth_store::OAuthStore`]. A use case goes:
//!
//! 1. `start_authorization(target, options)` → an [`AuthorizationRequest`] (send the user to
//!    `url`) and the flow's [`AuthorizationState`]; store
//!    `seal_key.seal_state(&state)` with `put_state(&state.state, …, state.expires_at() * 1000)`.
//! 2. At the callback: `take_state(params.state)` (single use), `seal_key.open_state(…)`, then
//!    `finish_authorization(state, &params)` → a [`Session`]; store
//!    `seal_key.seal_session(&session)` with `put_session(&session.did, …)`.
//! 3. To write: open the session; if `session.needs_refresh(now, margin)`, `refresh` it and store
//!    the result **before** anything else (the old refresh token no longer works); then
//!    `put_record` / `delete_record`. On [`PdsClientError::TokenRejected`], refresh once and retry
//!    once. Store [`PdsWrite::session`] when it is `Some` (the PDS rotated its DPoP nonce).
//! 4. [`PdsClientError::ReauthorizationRequired`] (refresh refused: revoked, expired, replayed)
//!    means the account must go through the flow again: mark it, keep everything else.
//!    [`PdsClientError::is_transient`] errors are retried later; other errors are permanent for
//!    that request.

use async_trait::async_trait;
use serde_json::Value;
use stratos_domain::oauth::{
    AuthorizationState, AuthorizationTarget, CallbackParams, OAuthError, Session,
};
use stratos_domain::syntax::{Nsid, RecordKey};

/// What a new authorization flow asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartOptions {
    /// The scope to request; `None` = the client's configured scope.
    pub scope: Option<String>,
    /// Where the application sends the user once the flow is done (kept in the state, never
    /// sent to the authorization server). The caller checks it against its allow-list.
    pub app_redirect: Option<String>,
}

/// Where to send the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationRequest {
    /// The authorization server's page (`authorization_endpoint?client_id=…&request_uri=…`).
    pub url: String,
    /// The flow's `state` (the key its [`AuthorizationState`] is stored under).
    pub state: String,
}

/// A record written to, or deleted from, the PDS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PdsWrite {
    /// The record's URI (`putRecord`; `None` for deletes).
    pub uri: Option<String>,
    /// The record's CID (`putRecord`; `None` for deletes).
    pub cid: Option<String>,
    /// The session to store instead of the one passed in, when the call changed it (a new PDS
    /// DPoP nonce); `None` when it is unchanged.
    pub session: Option<Session>,
}

/// A record read back from a PDS (`com.atproto.repo.getRecord`).
#[derive(Debug, Clone, PartialEq)]
pub struct PdsRecord {
    /// The record's URI.
    pub uri: String,
    /// The record's CID, when the PDS sent one.
    pub cid: Option<String>,
    /// The record.
    pub value: Value,
}

/// Failures of the OAuth client and of PDS calls. The variants say what the caller should do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PdsClientError {
    /// The handle, DID or server could not be resolved to an account, PDS or authorization
    /// server (does not exist, or its documents are unusable).
    #[error("cannot resolve {target}: {cause}")]
    Resolution {
        /// What was being resolved.
        target: String,
        /// Why not.
        #[source]
        cause: crate::Cause,
    },
    /// A protocol rule failed on our side: metadata issuer checks, the callback's `state` /
    /// `iss` / `sub`, an error answer of the authorization server at the callback, a token
    /// response that is not a DPoP token, a session that cannot be used.
    #[error("OAuth: {0}")]
    OAuth(#[source] OAuthError),
    /// The authorization server refused a request (PAR, code exchange, revocation) with an
    /// OAuth error other than a dead grant.
    #[error("the authorization server refused: {error}{}", .description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    AuthorizationServer {
        /// The HTTP status.
        status: u16,
        /// The OAuth error code.
        error: String,
        /// Its description.
        description: Option<String>,
    },
    /// The PDS refused the access token (`invalid_token`: expired or revoked): refresh and retry
    /// once.
    #[error("the PDS refused the access token: {0}")]
    TokenRejected(String),
    /// The grant is dead (`invalid_grant` on refresh: revoked, expired, or a replayed refresh
    /// token), or there is no refresh token: the account must authorize again.
    #[error("the account must authorize again: {0}")]
    ReauthorizationRequired(String),
    /// The server could not be reached, timed out, or answered 5xx / 429: retry later.
    #[error("temporarily unavailable{}: {cause}", .retry_after_secs.map(|s| format!(" (retry after {s} s)")).unwrap_or_default())]
    Transient {
        /// The server's `Retry-After`, seconds, when it sent one.
        retry_after_secs: Option<u64>,
        /// What happened.
        #[source]
        cause: crate::Cause,
    },
    /// The PDS refused the request itself (a 4xx other than the token): retrying the same call
    /// will not help.
    #[error("the PDS refused the request ({status}{}){}", .error.as_deref().map(|e| format!(" {e}")).unwrap_or_default(), .message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The XRPC error name.
        error: Option<String>,
        /// The XRPC message.
        message: Option<String>,
    },
    /// A URL leads to an address the client may not reach (private, loopback, … unless the
    /// configuration allows them), or is not an allowed `https://` URL.
    #[error("refused: {0}")]
    Refused(#[source] crate::Cause),
    /// A server answered something unusable (not JSON, missing fields).
    #[error("unusable answer: {0}")]
    InvalidResponse(#[source] crate::Cause),
}

impl PdsClientError {
    /// Whether the same call may succeed later unchanged.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient { .. })
    }
}

impl From<OAuthError> for PdsClientError {
    fn from(e: OAuthError) -> Self {
        Self::OAuth(e)
    }
}

/// The atproto OAuth client: PAR, PKCE, DPoP, callback checks, token exchange, refresh with
/// rotation, revocation.
#[async_trait]
pub trait AtprotoOAuthClient: Send + Sync {
    /// Resolves `target` to its authorization server (handle/DID → DID document → PDS →
    /// protected-resource metadata → authorization-server metadata), pushes the authorization
    /// request (PAR) and returns where to send the user, with the flow to store.
    async fn start_authorization(
        &self,
        target: &AuthorizationTarget,
        options: &StartOptions,
    ) -> Result<(AuthorizationRequest, AuthorizationState), PdsClientError>;

    /// Checks the callback against the flow (`state`, `iss`, errors), exchanges the code (PKCE
    /// verifier, DPoP) and checks the tokens' `sub` (the flow's account; for a flow started
    /// from a server URL, an account whose PDS names this issuer).
    async fn finish_authorization(
        &self,
        state: AuthorizationState,
        callback: &CallbackParams,
    ) -> Result<Session, PdsClientError>;

    /// New tokens for `session` (the refresh token rotates: store the result at once).
    async fn refresh(&self, session: &Session) -> Result<Session, PdsClientError>;

    /// Ends the session at the authorization server (its tokens stop working).
    async fn revoke(&self, session: &Session) -> Result<(), PdsClientError>;
}

/// Record writes on the account's PDS with the session's DPoP-bound access token.
#[async_trait]
pub trait PdsWriter: Send + Sync {
    /// `com.atproto.repo.putRecord` (create or replace at `collection`/`rkey`: a retry never
    /// duplicates).
    async fn put_record(
        &self,
        session: &Session,
        collection: &Nsid,
        rkey: &RecordKey,
        record: &Value,
    ) -> Result<PdsWrite, PdsClientError>;

    /// `com.atproto.repo.deleteRecord` (deleting a missing record succeeds).
    async fn delete_record(
        &self,
        session: &Session,
        collection: &Nsid,
        rkey: &RecordKey,
    ) -> Result<PdsWrite, PdsClientError>;
}
