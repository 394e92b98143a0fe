//! The atproto OAuth client over HTTP: [`HttpOAuthClient`] implements the ports
//! [`AtprotoOAuthClient`] and [`PdsWriter`](stratos_ports::pds_client::PdsWriter) on the domain's sans-I/O pieces
//! ([`stratos_domain::oauth`]).
//!
//! - Resolution: handle → DID (the [`IdentityResolver`] port) → DID document
//!   ([`DidDocument`](stratos_domain::did_doc::DidDocument), `#atproto_pds`) → `{pds}/.well-known/oauth-protected-resource` →
//!   `{issuer}/.well-known/oauth-authorization-server`, each document checked to speak for the URL
//!   it was fetched from. Metadata is cached ([`OAuthClientConfig::metadata_ttl`]).
//! - Authorization: PAR (form POST with PKCE S256, `state`, the client's authentication and a
//!   DPoP proof) → the authorization URL; at the callback `state`, `iss` and error answers are
//!   checked before the code is exchanged (PKCE verifier, DPoP); the tokens' `sub` must be the
//!   account the flow started for, and that account's PDS must name the same issuer.
//! - DPoP: one P-256 key per flow and session; every request carries a fresh proof. When a
//!   server wants a nonce (authorization server: 400 `{"error":"use_dpop_nonce"}`; PDS: 401 with
//!   `WWW-Authenticate: DPoP error="use_dpop_nonce"`), the request is repeated once with the
//!   nonce from its `DPoP-Nonce` header; the last nonce of each server is kept in the session.
//! - Client kinds: the loopback public client (development; `token_endpoint_auth_method` `none`)
//!   and a confidential client with `private_key_jwt` (a fresh ES256 assertion per request).
//! - Every URL but the operator's comes from data a user controls (the DID document names the
//!   PDS, the PDS names the issuer, the issuer names its endpoints), so fetches are held to
//!   public addresses, after DNS resolution and on every redirect hop, unless
//!   [`OAuthClientConfig::allow_private_targets`] is set (tests, local development).

mod discovery;
mod records;
mod transport;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use stratos_domain::oauth::requests::{
    authorization_url, code_grant_body, par_body, refresh_grant_body, revocation_body,
};
use stratos_domain::oauth::{
    AuthorizationServerMetadata, AuthorizationState, AuthorizationTarget, CallbackParams,
    ClientCredentials, OAuthError, Session, check_subject, loopback_client_id, validate_callback,
};
use stratos_ports::env::{Clock, IdentityResolver, SystemClock};
use stratos_ports::pds_client::{
    AtprotoOAuthClient, AuthorizationRequest, PdsClientError, StartOptions,
};

use crate::NetworkError;
use crate::http::{Fetcher, Targets, TtlCache};

/// How long discovered metadata is reused unless configured otherwise.
pub const DEFAULT_METADATA_TTL: Duration = Duration::from_secs(600);

/// The longest one request may take unless configured otherwise.
pub const DEFAULT_OAUTH_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest answer accepted (metadata, token responses, XRPC answers).
const MAX_BYTES: usize = 1024 * 1024;

/// How the client is set up.
#[derive(Debug, Clone)]
pub struct OAuthClientConfig {
    /// Who the client is ([`OAuthClientConfig::loopback`] or [`OAuthClientConfig::confidential`]).
    pub client: ClientCredentials,
    /// The OAuth `redirect_uri` (one of the client's registered ones).
    pub redirect_uri: String,
    /// The scope requested unless a flow asks for another.
    pub scope: String,
    /// Limit for one request (> 0).
    pub timeout: Duration,
    /// How long protected-resource and authorization-server metadata is cached.
    pub metadata_ttl: Duration,
    /// Entries kept per metadata cache.
    pub cache_capacity: usize,
    /// Use `http://` for loopback hosts. Tests and local development only.
    pub allow_http_for_localhost: bool,
    /// Let PDS and authorization-server URLs lead to private, loopback and other non-public
    /// addresses. Tests and local development only: those URLs come from users' documents.
    pub allow_private_targets: bool,
    /// Host names pinned to socket addresses (tests), held to the address rule like DNS answers.
    pub host_overrides: Vec<(String, SocketAddr)>,
    /// The `User-Agent` sent ([`crate::DEFAULT_USER_AGENT`] by default).
    pub user_agent: String,
}

impl OAuthClientConfig {
    /// The atproto loopback client (development): `client_id`
    /// `http://localhost?redirect_uri=…&scope=…`, no client authentication. `redirect_uri` must
    /// be `http://127.0.0.1[:port]/…` or `http://[::1][:port]/…`.
    pub fn loopback(redirect_uri: impl Into<String>, scope: impl Into<String>) -> Self {
        let redirect_uri = redirect_uri.into();
        let scope = scope.into();
        Self::with_client(
            ClientCredentials::Public {
                client_id: loopback_client_id(&redirect_uri, &scope),
            },
            redirect_uri,
            scope,
        )
    }

    /// A confidential client (`private_key_jwt`): `client_id` is the https URL of its metadata
    /// document, which publishes the public half of `key` under `kid`.
    pub fn confidential(
        client: ClientCredentials,
        redirect_uri: impl Into<String>,
        scope: impl Into<String>,
    ) -> Self {
        Self::with_client(client, redirect_uri.into(), scope.into())
    }

    fn with_client(client: ClientCredentials, redirect_uri: String, scope: String) -> Self {
        Self {
            client,
            redirect_uri,
            scope,
            timeout: DEFAULT_OAUTH_TIMEOUT,
            metadata_ttl: DEFAULT_METADATA_TTL,
            cache_capacity: crate::identity::DEFAULT_CACHE_CAPACITY,
            allow_http_for_localhost: false,
            allow_private_targets: false,
            host_overrides: Vec::new(),
            user_agent: crate::DEFAULT_USER_AGENT.to_owned(),
        }
    }

    fn check(&self) -> Result<(), NetworkError> {
        let bad = |m: String| Err(NetworkError::InvalidConfig(m));
        if !self.scope.split(' ').any(|s| s == "atproto") {
            return bad(format!("the scope {:?} must include atproto", self.scope));
        }
        let redirect = reqwest::Url::parse(&self.redirect_uri)
            .map_err(|e| NetworkError::InvalidConfig(format!("redirect_uri: {e}")))?;
        match &self.client {
            ClientCredentials::Public { client_id } => {
                // atproto: a loopback IP literal, not the name `localhost`.
                let loopback_ip = redirect
                    .host_str()
                    .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
                    .and_then(|h| h.parse::<std::net::IpAddr>().ok())
                    .is_some_and(|ip| ip.is_loopback());
                if !client_id.starts_with("http://localhost") {
                    return bad("a public client must be the atproto loopback client".into());
                }
                if redirect.scheme() != "http" || !loopback_ip {
                    return bad(
                        "the loopback client's redirect_uri must be http://127.0.0.1 or http://[::1]"
                            .into(),
                    );
                }
            }
            ClientCredentials::PrivateKeyJwt { client_id, .. } => {
                if !client_id.starts_with("https://") || redirect.scheme() != "https" {
                    return bad(
                        "a confidential client's client_id and redirect_uri must be https://"
                            .into(),
                    );
                }
            }
        }
        Ok(())
    }
}

/// The atproto OAuth client and PDS writer over HTTP; see the module documentation.
pub struct HttpOAuthClient {
    config: OAuthClientConfig,
    fetcher: Fetcher,
    identity: Arc<dyn IdentityResolver>,
    clock: Arc<dyn Clock>,
    /// PDS origin → the issuer its protected-resource metadata names.
    issuers: TtlCache<String>,
    /// Issuer → its checked metadata.
    servers: TtlCache<AuthorizationServerMetadata>,
}

impl std::fmt::Debug for HttpOAuthClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpOAuthClient")
            .field("client", &self.config.client)
            .field("redirect_uri", &self.config.redirect_uri)
            .finish_non_exhaustive()
    }
}

impl HttpOAuthClient {
    /// Checks `config` and builds the HTTP client; accounts are resolved through `identity`.
    pub fn new(
        config: OAuthClientConfig,
        identity: Arc<dyn IdentityResolver>,
    ) -> Result<Self, NetworkError> {
        config.check()?;
        if config.metadata_ttl > crate::identity::MAX_TTL {
            return Err(NetworkError::InvalidConfig(format!(
                "the metadata TTL must be at most {} s",
                crate::identity::MAX_TTL.as_secs()
            )));
        }
        let fetcher = Fetcher::new(
            config.timeout,
            MAX_BYTES,
            config.allow_http_for_localhost,
            &config.host_overrides,
            Targets::caller_controlled(config.allow_private_targets),
            &config.user_agent,
        )?;
        Ok(Self {
            issuers: TtlCache::new(config.cache_capacity),
            servers: TtlCache::new(config.cache_capacity),
            config,
            fetcher,
            identity,
            clock: Arc::new(SystemClock),
        })
    }

    /// Uses `clock` for DPoP `iat`, assertion times, flow ages and expiries (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        self.config.client.client_id()
    }

    fn now(&self) -> i64 {
        self.clock.now_ms().div_euclid(1000)
    }
}

#[async_trait]
impl AtprotoOAuthClient for HttpOAuthClient {
    async fn start_authorization(
        &self,
        target: &AuthorizationTarget,
        options: &StartOptions,
    ) -> Result<(AuthorizationRequest, AuthorizationState), PdsClientError> {
        let found = self.resolve_target(target).await?;
        let meta = found.metadata;
        if !meta.supports_auth_method(self.config.client.auth_method()) {
            return Err(OAuthError::InvalidMetadata {
                document: "authorization-server metadata",
                reason: format!(
                    "{} does not accept {} clients",
                    meta.issuer,
                    self.config.client.auth_method()
                ),
            }
            .into());
        }
        let now = self.now();
        let mut state = AuthorizationState::new(
            meta.issuer.clone(),
            self.client_id(),
            self.config.redirect_uri.clone(),
            now,
        );
        state.expected_did = found.did.clone();
        state.pds_url = found.pds_url.clone();
        state.app_redirect = options.app_redirect.clone();
        let scope = options.scope.as_deref().unwrap_or(&self.config.scope);
        let login_hint = match target {
            AuthorizationTarget::Handle(handle) => Some(handle.as_str().to_owned()),
            AuthorizationTarget::Did(did) => Some(did.as_str().to_owned()),
            AuthorizationTarget::Server(_) => None,
        };
        let client = &self.config.client;
        let (response, nonce) = self
            .auth_server_post(
                &meta.pushed_authorization_request_endpoint,
                &state.dpop_key,
                None,
                |now| par_body(client, &state, scope, login_hint.as_deref(), now),
            )
            .await?;
        state.auth_server_nonce = nonce;
        let par: ParResponse = transport::expect_success(response, false)?;
        let url = authorization_url(
            &meta.authorization_endpoint,
            self.client_id(),
            &par.request_uri,
        );
        Ok((
            AuthorizationRequest {
                url,
                state: state.state.clone(),
            },
            state,
        ))
    }

    async fn finish_authorization(
        &self,
        mut state: AuthorizationState,
        callback: &CallbackParams,
    ) -> Result<Session, PdsClientError> {
        let code = validate_callback(callback, &state, self.now())?;
        let meta = self.server_metadata(&state.issuer).await?;
        let client = &self.config.client;
        let (response, nonce) = self
            .auth_server_post(
                &meta.token_endpoint,
                &state.dpop_key,
                state.auth_server_nonce.as_deref(),
                |now| code_grant_body(client, &state, &code, now),
            )
            .await?;
        state.auth_server_nonce = nonce.or(state.auth_server_nonce);
        let tokens = transport::token_response(response, false)?;
        check_subject(&tokens, &state)?;
        // The account's PDS must name this issuer: otherwise a server could mint tokens for
        // accounts it does not host (atproto OAuth profile, "identity authentication").
        let pds = self.pds_of(&tokens.sub).await?;
        let issuer = self.issuer_of_pds(&pds).await?;
        let mut session = Session::from_token_response(&state, tokens, pds, self.now());
        if issuer != state.issuer {
            // Best effort: these tokens must not outlive the refusal.
            let _ = self.revoke(&session).await;
            return Err(OAuthError::IssuerMismatch {
                expected: state.issuer,
                found: issuer,
            }
            .into());
        }
        session.auth_server_nonce = state.auth_server_nonce;
        Ok(session)
    }

    async fn refresh(&self, session: &Session) -> Result<Session, PdsClientError> {
        let Some(refresh_token) = session.refresh_token.as_deref() else {
            return Err(PdsClientError::ReauthorizationRequired(
                "the session has no refresh token".into(),
            ));
        };
        let meta = self.server_metadata(&session.issuer).await?;
        let client = &self.config.client;
        let (response, nonce) = self
            .auth_server_post(
                &meta.token_endpoint,
                &session.dpop_key,
                session.auth_server_nonce.as_deref(),
                |now| refresh_grant_body(client, session, refresh_token, now),
            )
            .await?;
        let tokens = transport::token_response(response, true)?;
        let mut refreshed = session.refreshed(tokens, self.now())?;
        refreshed.auth_server_nonce = nonce.or_else(|| session.auth_server_nonce.clone());
        Ok(refreshed)
    }

    async fn revoke(&self, session: &Session) -> Result<(), PdsClientError> {
        let meta = self.server_metadata(&session.issuer).await?;
        let Some(endpoint) = meta.revocation_endpoint.as_deref() else {
            return Ok(());
        };
        // Revoking the refresh token ends the whole grant; the access token alone otherwise.
        let token = session
            .refresh_token
            .as_deref()
            .unwrap_or(&session.access_token);
        let client = &self.config.client;
        let (response, _) = self
            .auth_server_post(
                endpoint,
                &session.dpop_key,
                session.auth_server_nonce.as_deref(),
                |now| revocation_body(client, session, token, now),
            )
            .await?;
        transport::expect_status_ok(&response, false)
    }
}

/// The answer of a pushed authorization request.
#[derive(serde::Deserialize)]
struct ParResponse {
    request_uri: String,
}
