//! Enrollment through atproto OAuth ([`OAuthEnrollment`]): the user signs in at their own PDS's
//! authorization server, and the callback enrolls them (the same eligibility decision as every
//! other enrollment, external allow-list included) and keeps the OAuth session, sealed, so the
//! service can later write the enrollment record and stub records to that PDS.
//!
//! The flow: [`OAuthEnrollment::authorize`] resolves what the user typed (handle, DID or PDS
//! URL), pushes the authorization request (PAR, PKCE, DPoP) and stores the pending flow sealed
//! under its `state`; the user comes back to [`OAuthEnrollment::callback`], which takes the flow
//! (single use), checks `state`, `iss` and the token's `sub`, enrolls the account and stores the
//! session sealed under the DID. [`OAuthEnrollment::session`] opens a stored session for a PDS
//! write, refreshing it first when it is about to expire.

use std::sync::Arc;

use stratos_domain::enrollment::DenialReason;
use stratos_domain::oauth::{
    AuthorizationTarget, CallbackParams, OAuthError, STATE_MAX_AGE_SECS, SealKey, Session,
};
use stratos_domain::syntax::Did;
use stratos_domain::{Error as DomainError, oauth};

use super::UseCaseError;
use super::enrollment::Enrollments;
use crate::env::Clock;
use crate::oauth_store::{OAuthStore, OAuthStoreError};
use crate::pds_client::{AtprotoOAuthClient, AuthorizationRequest, PdsClientError, StartOptions};

/// Refresh a session this long before its access token expires, seconds.
pub const REFRESH_MARGIN_SECS: i64 = 60;

/// Where the callback may send the user afterwards (`redirect_uri` of `/oauth/authorize`): an
/// exact-origin allow-list, so the service is never an open redirect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedirectPolicy {
    /// Allowed origins (`https://app.example`), compared exactly after normalisation.
    origins: Vec<String>,
    /// Whether `http://` targets are allowed (a development service on `http://`).
    allow_http: bool,
}

impl RedirectPolicy {
    /// Redirects to these origins only. An entry that is not an `http(s)` origin is ignored.
    pub fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(origins: I, allow_http: bool) -> Self {
        Self {
            origins: origins
                .into_iter()
                .filter_map(|o| oauth::metadata::origin_of(o.as_ref()))
                .collect(),
            allow_http,
        }
    }

    /// `url` when it may be redirected to, else why not.
    pub fn check(&self, url: &str) -> Result<String, OAuthFlowError> {
        let bad = |why: &str| OAuthFlowError::InvalidRequest(format!("redirect_uri {why}"));
        let Some(origin) = oauth::metadata::origin_of(url) else {
            return Err(bad("is not an absolute http(s) URL"));
        };
        if origin.starts_with("http://") && !self.allow_http {
            return Err(bad("must use https"));
        }
        if !self.origins.contains(&origin) {
            return Err(bad("is not on this service's list of applications"));
        }
        Ok(url.to_owned())
    }
}

/// What went wrong in the flow; each variant is one kind of answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OAuthFlowError {
    /// The request is malformed (no handle, a bad redirect target): 400.
    #[error("{0}")]
    InvalidRequest(String),
    /// The handle, DID or server could not be resolved to an authorization server: 400.
    #[error("cannot start the authorization: {0}")]
    Resolution(#[source] PdsClientError),
    /// The callback does not belong to a pending flow, or fails its checks (`state` unknown,
    /// replayed or expired, `iss` or `sub` mismatch, an error answer of the server): 400.
    #[error("the authorization did not complete: {0}")]
    Callback(String),
    /// The account may not enroll here: 403. No session is kept.
    #[error("enrollment denied: {}", .0.message())]
    Denied(DenialReason),
    /// The authorization server or the PDS failed or refused: 502.
    #[error("the authorization server failed: {0}")]
    Upstream(#[source] PdsClientError),
    /// The account must authorize again (the grant was revoked or expired).
    #[error("{0} must authorize again")]
    ReauthorizationRequired(Did),
    /// Storage failed: 503.
    #[error("storage failed: {0}")]
    Unavailable(#[source] crate::Cause),
    /// The enrollment the callback completes failed as a use case does (a concurrent write to
    /// the repository, a rate limit, …): answered as that error is everywhere else.
    #[error(transparent)]
    Enrollment(Box<UseCaseError>),
}

impl From<OAuthStoreError> for OAuthFlowError {
    fn from(e: OAuthStoreError) -> Self {
        match e {
            OAuthStoreError::Backend(cause) => Self::Unavailable(cause),
        }
    }
}

impl From<UseCaseError> for OAuthFlowError {
    fn from(e: UseCaseError) -> Self {
        match e {
            UseCaseError::Rule(DomainError::EnrollmentDenied(reason)) => Self::Denied(reason),
            UseCaseError::InvalidRequest(m) => Self::InvalidRequest(m),
            other => Self::Enrollment(Box::new(other)),
        }
    }
}

/// The result of a completed callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackOutcome {
    /// The account that signed in.
    pub did: Did,
    /// True for a new enrollment, false when the account was enrolled already.
    pub new: bool,
    /// Where the application asked to send the user (already checked against the policy).
    pub app_redirect: Option<String>,
}

/// Everything the OAuth enrollment flow needs.
#[derive(Clone)]
pub struct OAuthDeps {
    /// The atproto OAuth client.
    pub client: Arc<dyn AtprotoOAuthClient>,
    /// Pending flows and sessions (stored sealed).
    pub store: Arc<dyn OAuthStore>,
    /// The key that seals flows and sessions at rest (derived from the service key).
    pub seal: Arc<SealKey>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Where the callback may send the user.
    pub redirects: RedirectPolicy,
}

impl std::fmt::Debug for OAuthDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthDeps")
            .field("redirects", &self.redirects)
            .finish_non_exhaustive()
    }
}

/// The OAuth enrollment flow and the sessions it keeps.
#[derive(Debug, Clone)]
pub struct OAuthEnrollment {
    deps: OAuthDeps,
    enrollments: Arc<Enrollments>,
}

fn sealing(e: OAuthError) -> OAuthFlowError {
    OAuthFlowError::Unavailable(crate::Cause::new(e))
}

impl OAuthEnrollment {
    /// The flow over `deps`, enrolling through `enrollments`.
    pub fn new(deps: OAuthDeps, enrollments: Arc<Enrollments>) -> Self {
        Self { deps, enrollments }
    }

    fn now_secs(&self) -> i64 {
        self.deps.clock.now_ms().div_euclid(1000)
    }

    /// Starts a flow for what the user typed (a handle, a DID or a PDS URL): returns where to
    /// send the user. `app_redirect` is checked against the [`RedirectPolicy`] first.
    pub async fn authorize(
        &self,
        input: &str,
        app_redirect: Option<&str>,
    ) -> Result<AuthorizationRequest, OAuthFlowError> {
        if input.trim().is_empty() {
            return Err(OAuthFlowError::InvalidRequest(
                "Handle parameter required".into(),
            ));
        }
        let app_redirect = app_redirect
            .map(|url| self.deps.redirects.check(url))
            .transpose()?;
        let target = AuthorizationTarget::parse(input)
            .map_err(|e| OAuthFlowError::InvalidRequest(e.to_string()))?;
        let options = StartOptions {
            scope: None,
            app_redirect,
        };
        let (request, state) =
            self.deps
                .client
                .start_authorization(&target, &options)
                .await
                .map_err(|e| match e {
                    PdsClientError::Transient { .. }
                    | PdsClientError::AuthorizationServer { .. } => OAuthFlowError::Upstream(e),
                    other => OAuthFlowError::Resolution(other),
                })?;
        let sealed = self.deps.seal.seal_state(&state).map_err(sealing)?;
        let expires_ms = self
            .deps
            .clock
            .now_ms()
            .saturating_add(STATE_MAX_AGE_SECS * 1000);
        self.deps
            .store
            .put_state(&request.state, &sealed, expires_ms)
            .await?;
        Ok(request)
    }

    /// Completes a flow from the callback's query string: enrolls the account (or refreshes an
    /// existing enrollment's PDS record) and keeps its session. A denied account's tokens are
    /// revoked and nothing is kept.
    pub async fn callback(&self, query: &str) -> Result<CallbackOutcome, OAuthFlowError> {
        let params = CallbackParams::from_query(query);
        let key = params
            .state
            .clone()
            .ok_or_else(|| OAuthFlowError::Callback("the callback has no `state`".into()))?;
        // Single use: a replayed or expired `state` finds nothing.
        let Some(sealed) = self
            .deps
            .store
            .take_state(&key, self.deps.clock.now_ms())
            .await?
        else {
            return Err(OAuthFlowError::Callback(
                "unknown, used or expired `state`".into(),
            ));
        };
        let state = self
            .deps
            .seal
            .open_state(&sealed, &key)
            .map_err(|e| OAuthFlowError::Callback(e.to_string()))?;
        let app_redirect = state.app_redirect.clone();
        let session = self
            .deps
            .client
            .finish_authorization(state, &params)
            .await
            .map_err(|e| match e {
                PdsClientError::OAuth(e) => OAuthFlowError::Callback(e.to_string()),
                PdsClientError::AuthorizationServer { .. } => {
                    OAuthFlowError::Callback(e.to_string())
                }
                other => OAuthFlowError::Upstream(other),
            })?;
        let did = session.did.clone();
        let outcome = match self.enrollments.enroll(&did).await {
            Ok(outcome) => outcome,
            Err(e) => {
                // Nothing is kept for an account that may not enroll: its tokens end here.
                let _ = self.deps.client.revoke(&session).await;
                return Err(e.into());
            }
        };
        self.store_session(&session).await?;
        Ok(CallbackOutcome {
            did,
            new: outcome.new,
            app_redirect,
        })
    }

    async fn store_session(&self, session: &Session) -> Result<(), OAuthFlowError> {
        let sealed = self.deps.seal.seal_session(session).map_err(sealing)?;
        self.deps.store.put_session(&session.did, &sealed).await?;
        Ok(())
    }

    /// Replaces the stored session (after a call that rotated its nonce or tokens).
    pub async fn save_session(&self, session: &Session) -> Result<(), OAuthFlowError> {
        self.store_session(session).await
    }

    /// The account's session, refreshed (and stored) first when its access token expires within
    /// [`REFRESH_MARGIN_SECS`]; `None` when the account has none.
    pub async fn session(&self, did: &Did) -> Result<Option<Session>, OAuthFlowError> {
        let Some(sealed) = self.deps.store.get_session(did).await? else {
            return Ok(None);
        };
        let session = self.deps.seal.open_session(&sealed, did).map_err(sealing)?;
        if session.needs_refresh(self.now_secs(), REFRESH_MARGIN_SECS) {
            return self.refresh(&session).await.map(Some);
        }
        Ok(Some(session))
    }

    /// New tokens for `session`, stored at once (the old refresh token no longer works).
    pub async fn refresh(&self, session: &Session) -> Result<Session, OAuthFlowError> {
        match self.deps.client.refresh(session).await {
            Ok(fresh) => {
                self.store_session(&fresh).await?;
                Ok(fresh)
            }
            Err(PdsClientError::ReauthorizationRequired(_)) => {
                Err(OAuthFlowError::ReauthorizationRequired(session.did.clone()))
            }
            Err(e) => Err(OAuthFlowError::Upstream(e)),
        }
    }

    /// Forgets the account's session without calling anyone: its grant is dead (revoked or
    /// expired at the authorization server), and the account must authorise again
    /// ([`Self::has_session`] is false until it does).
    pub async fn forget_session(&self, did: &Did) -> Result<(), OAuthFlowError> {
        self.deps.store.delete_session(did).await?;
        Ok(())
    }

    /// Whether the account is enrolled here.
    pub async fn is_enrolled(&self, did: &Did) -> Result<bool, OAuthFlowError> {
        Ok(self.enrollments.is_enrolled(did).await?)
    }

    /// Whether the account has a stored session (it authorised Stratos and the grant was not
    /// found dead since): without one nothing reaches its PDS.
    pub async fn has_session(&self, did: &Did) -> Result<bool, OAuthFlowError> {
        Ok(self.deps.store.get_session(did).await?.is_some())
    }

    /// [`Self::end_session`] for a session authorised at or before `authorized_by` (unix
    /// seconds); a newer one (the account enrolled again since) is kept. No session: done.
    pub async fn end_session_authorized_by(
        &self,
        did: &Did,
        authorized_by: i64,
    ) -> Result<(), OAuthFlowError> {
        let Some(sealed) = self.deps.store.get_session(did).await? else {
            return Ok(());
        };
        match self.deps.seal.open_session(&sealed, did) {
            Ok(session) if session.created_at > authorized_by => Ok(()),
            Ok(session) => {
                let _ = self.deps.client.revoke(&session).await;
                self.deps.store.delete_session(did).await?;
                Ok(())
            }
            // A session that no longer opens (the service key changed) cannot be used or
            // revoked: forget it.
            Err(_) => {
                self.deps.store.delete_session(did).await?;
                Ok(())
            }
        }
    }

    /// Ends the account's session: revoked at the authorization server (best effort: a server
    /// that is down does not keep the account from leaving) and deleted here.
    pub async fn end_session(&self, did: &Did) -> Result<(), OAuthFlowError> {
        if let Some(sealed) = self.deps.store.get_session(did).await?
            && let Ok(session) = self.deps.seal.open_session(&sealed, did)
        {
            let _ = self.deps.client.revoke(&session).await;
        }
        self.deps.store.delete_session(did).await?;
        Ok(())
    }
}
