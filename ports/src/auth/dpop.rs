//! DPoP-bound OAuth access tokens (RFC 9449), as atproto clients present them: the access token
//! the account's PDS authorization server issued, with a proof signed by the client's key.
//!
//! Everything is verified (the reference only decoded the token, D11):
//! 1. exactly one `DPoP` proof header; the proof (`verify_dpop_proof`): its signature, `htm`,
//!    `htu` against the public URL and the request path (D16), `iat`, the server nonce,
//!    `ath` = hash of the token, and `jti` against a replay cache;
//! 2. the token's subject is resolved to its DID document, whose `#atproto_pds` service names
//!    the PDS; the token's issuer must be the authorization server that PDS declares (the
//!    [`AuthorizationServers`] port), and the token must verify against that server's
//!    published keys (refetched once when its `kid` is unknown, for key rotation);
//! 3. the token's `cnf.jkt` must be the proof key's thumbprint.
//!
//! Nonces are HMAC-derived from the counter ⌊now / 60 s⌋ with a secret derived from the service
//! key, so every worker and every instance that shares the key hands out and accepts the same
//! nonces without talking to each other. The replay cache is per process.

use std::sync::{Arc, Mutex, PoisonError};

use stratos_domain::Error as DomainError;
use stratos_domain::auth::{
    AccessTokenExpectation, DPOP_NONCE_ROTATION_MS, DpopExpectation, MemoryReplayCache, TokenError,
    dpop_nonce_window, unverified_subject_and_issuer, verify_access_token, verify_dpop_proof,
};
use stratos_domain::crypto::Keypair;
use stratos_domain::syntax::Did;

use super::request::{RequestView, as_text};
use crate::env::{AuthorizationServers, Clock, EnvError, IdentityResolver};

/// The DPoP proof header.
pub const DPOP_HEADER: &str = "dpop";
/// The response header carrying the nonce clients must put in their next proof.
pub const DPOP_NONCE_HEADER: &str = "dpop-nonce";

/// Why a DPoP-bound access token was not accepted. [`crate::xrpc::XrpcError`] turns each into
/// the answer RFC 9449 prescribes (docs/auth.md, "Answers").
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DpopError {
    /// `Authorization: DPoP` with nothing after it.
    #[error("empty access token")]
    EmptyToken,
    /// No `DPoP` header.
    #[error("a DPoP proof header is required")]
    ProofMissing,
    /// More than one `DPoP` header.
    #[error("more than one DPoP header")]
    SeveralProofs,
    /// The `DPoP` header is not visible ASCII.
    #[error("the DPoP header is not text")]
    ProofNotText,
    /// The proof has no nonce or a stale one; the client retries with `nonce`.
    #[error("DPoP nonce required")]
    UseNonce {
        /// The nonce to send in `DPoP-Nonce`.
        nonce: String,
    },
    /// The proof failed another check (signature, `htm`, `htu`, `iat`, `ath`, replay, …).
    #[error("invalid DPoP proof")]
    Proof(#[source] Box<DomainError>),
    /// The access token failed a check (signature, issuer, expiry, scope, key binding, …).
    #[error("invalid access token")]
    Token(#[source] Box<DomainError>),
    /// The token's account could not be resolved (the identity port failed).
    #[error("the token's account could not be resolved")]
    AccountUnresolved(#[source] EnvError),
    /// The token's account has no DID document.
    #[error("the token's account does not exist")]
    AccountNotFound,
    /// The account's DID document names no PDS.
    #[error("the token's account has no PDS")]
    NoPds,
    /// The authorization server's keys could not be fetched.
    #[error("the authorization server's keys could not be fetched")]
    KeysUnavailable(#[source] EnvError),
    /// The token's issuer is not an authorization server of the account's PDS.
    #[error("the token's issuer is not the authorization server of the account's PDS")]
    NotAuthorizationServer,
    /// The app configured no [`AuthorizationServers`], so no access token can be checked.
    #[error("this service accepts no OAuth access tokens (no authorization servers configured)")]
    NoAuthorizationServers,
}

/// Nonces and the replay cache (one per [`super::Authenticator`]).
pub(crate) struct DpopVerifier {
    nonce_secret: [u8; 32],
    require_nonce: bool,
    /// The public URL without a trailing `/`: proofs name the URL the client called.
    public_url: String,
    replay: Mutex<MemoryReplayCache>,
    clock: Arc<dyn Clock>,
}

impl DpopVerifier {
    /// A verifier whose nonces derive from `service_key`.
    pub(crate) fn new(
        service_key: &Keypair,
        require_nonce: bool,
        public_url: &str,
        clock: Arc<dyn Clock>,
    ) -> Self {
        // A labelled hash, so the nonce secret is not the signing key and cannot be confused
        // with any other secret derived from it.
        let mut material = b"stratos/dpop-nonce/v1:".to_vec();
        material.extend_from_slice(&service_key.private_bytes());
        Self {
            nonce_secret: stratos_domain::cid::sha256(&material),
            require_nonce,
            public_url: public_url.trim_end_matches('/').to_owned(),
            replay: Mutex::new(MemoryReplayCache::new()),
            clock,
        }
    }

    /// The nonce to hand out now (the newest of the accepted window).
    pub(crate) fn current_nonce(&self) -> String {
        let [_, _, next] = dpop_nonce_window(
            &self.nonce_secret,
            self.clock.now_ms(),
            DPOP_NONCE_ROTATION_MS,
        );
        next
    }

    /// Verifies `Authorization: DPoP <token>` with its proof; the account on success.
    pub(crate) async fn verify(
        &self,
        req: &RequestView,
        token: &str,
        identity: &dyn IdentityResolver,
        servers: Option<&dyn AuthorizationServers>,
    ) -> Result<Did, DpopError> {
        if token.is_empty() {
            return Err(DpopError::EmptyToken);
        }
        let mut proofs = req.header_values(DPOP_HEADER);
        let proof = match (proofs.next(), proofs.next()) {
            (Some(proof), None) => as_text(proof).map_err(|_| DpopError::ProofNotText)?,
            (None, _) => return Err(DpopError::ProofMissing),
            (Some(_), Some(_)) => return Err(DpopError::SeveralProofs),
        };
        let now_ms = self.clock.now_ms();
        let url = format!("{}{}", self.public_url, req.path());
        let window = dpop_nonce_window(&self.nonce_secret, now_ms, DPOP_NONCE_ROTATION_MS);
        let nonces: Vec<&str> = if self.require_nonce {
            window.iter().map(String::as_str).collect()
        } else {
            Vec::new()
        };
        let expect = DpopExpectation::new(req.method(), &url, now_ms / 1000)
            .with_access_token(token)
            .with_nonces(&nonces);
        let proof = {
            let mut replay = self.replay.lock().unwrap_or_else(PoisonError::into_inner);
            verify_dpop_proof(proof, &expect, &mut *replay)
        }
        .map_err(|e| match e {
            DomainError::Token(TokenError::UseDpopNonce) => {
                let [_, _, next] = window.clone();
                DpopError::UseNonce { nonce: next }
            }
            other => DpopError::Proof(Box::new(other)),
        })?;

        // Unverified: only to find whose PDS and which server's keys to check the token with.
        let (sub, issuer) =
            unverified_subject_and_issuer(token).map_err(|e| DpopError::Token(Box::new(e)))?;
        let doc = identity
            .resolve_did(&sub)
            .await
            .map_err(DpopError::AccountUnresolved)?
            .ok_or(DpopError::AccountNotFound)?;
        let pds = stratos_domain::did_doc::pds_endpoint(&doc).ok_or(DpopError::NoPds)?;
        let servers = servers.ok_or(DpopError::NoAuthorizationServers)?;
        let expect = AccessTokenExpectation::new(&issuer, now_ms / 1000);
        let mut refreshed = false;
        loop {
            let keys = servers
                .issuer_keys(&pds, &issuer, refreshed)
                .await
                .map_err(|e| {
                    tracing::warn!(error = %e, "authorization server keys unavailable");
                    DpopError::KeysUnavailable(e)
                })?
                .ok_or(DpopError::NotAuthorizationServer)?;
            match verify_access_token(token, &expect, &keys, &proof.jkt) {
                Ok(claims) => return Ok(claims.sub),
                // The server may have rotated its keys since they were cached: one refetch.
                Err(DomainError::Token(
                    TokenError::UnknownKey(_) | TokenError::InvalidSignature,
                )) if !refreshed => {
                    refreshed = true;
                }
                Err(e) => return Err(DpopError::Token(Box::new(e))),
            }
        }
    }
}
