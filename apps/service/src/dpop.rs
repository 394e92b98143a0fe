//! DPoP-bound OAuth access tokens (RFC 9449), as atproto clients present them: the access token
//! the account's PDS authorization server issued, with a proof signed by the client's key.
//!
//! Everything is verified (the reference only decoded the token, D11):
//! 1. exactly one `DPoP` proof header; the proof (`verify_dpop_proof`): its signature, `htm`,
//!    `htu` against this service's public URL and the request path (D16), `iat`, the server
//!    nonce, `ath` = hash of the token, and `jti` against a replay cache;
//! 2. the token's subject is resolved to its DID document, whose `#atproto_pds` service names
//!    the PDS; the token's issuer must be the authorization server that PDS declares, and the
//!    token must verify against that server's published keys (refetched once when its `kid` is
//!    unknown, for key rotation);
//! 3. the token's `cnf.jkt` must be the proof key's thumbprint.
//!
//! Nonces are HMAC-derived from the counter ⌊now / 60 s⌋ with a secret derived from the service
//! key, so every worker and every instance that shares the key hands out and accepts the same
//! nonces without talking to each other. The replay cache is per process (all workers).

use std::sync::{Arc, Mutex, PoisonError};

use actix_web::HttpRequest;
use stratos_domain::Error as DomainError;
use stratos_domain::auth::{
    AccessTokenExpectation, DPOP_NONCE_ROTATION_MS, DpopExpectation, MemoryReplayCache, TokenError,
    dpop_nonce_window, unverified_subject_and_issuer, verify_access_token, verify_dpop_proof,
};
use stratos_domain::crypto::Keypair;
use stratos_domain::syntax::Did;
use stratos_ports::env::Clock;

use crate::error::ApiError;
use crate::state::AppState;

/// The DPoP proof header.
pub const DPOP_HEADER: &str = "dpop";
/// The response header carrying the nonce clients must put in their next proof.
pub const DPOP_NONCE_HEADER: &str = "dpop-nonce";

/// Nonces and the replay cache, shared by all workers.
pub struct DpopVerifier {
    nonce_secret: [u8; 32],
    require_nonce: bool,
    /// The public URL without a trailing `/`: proofs name the URL the client called.
    public_url: String,
    replay: Mutex<MemoryReplayCache>,
    /// The library's clock, so token-time tests can use a manual one.
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for DpopVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopVerifier")
            .field("require_nonce", &self.require_nonce)
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

impl DpopVerifier {
    /// A verifier whose nonces derive from `service_key`.
    pub fn new(
        service_key: &Keypair,
        require_nonce: bool,
        public_url: &str,
        clock: Arc<dyn Clock>,
    ) -> Self {
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
    pub fn current_nonce(&self) -> String {
        let [_, _, next] = dpop_nonce_window(
            &self.nonce_secret,
            self.clock.now_ms(),
            DPOP_NONCE_ROTATION_MS,
        );
        next
    }

    /// Verifies `Authorization: DPoP <token>` with its proof; the account on success.
    pub async fn verify(
        &self,
        req: &HttpRequest,
        token: &str,
        state: &AppState,
    ) -> Result<Did, ApiError> {
        if token.is_empty() {
            return Err(invalid_token("empty access token"));
        }
        let mut proofs = req.headers().get_all(DPOP_HEADER);
        let proof = match (proofs.next(), proofs.next()) {
            (Some(proof), None) => proof
                .to_str()
                .map_err(|_| invalid_proof("the DPoP header is not text"))?,
            (None, _) => return Err(invalid_proof("a DPoP proof header is required")),
            (Some(_), Some(_)) => return Err(invalid_proof("more than one DPoP header")),
        };
        let now_ms = self.clock.now_ms();
        let url = format!("{}{}", self.public_url, req.uri().path());
        let window = dpop_nonce_window(&self.nonce_secret, now_ms, DPOP_NONCE_ROTATION_MS);
        let nonces: Vec<&str> = if self.require_nonce {
            window.iter().map(String::as_str).collect()
        } else {
            Vec::new()
        };
        let expect = DpopExpectation::new(req.method().as_str(), &url, now_ms / 1000)
            .with_access_token(token)
            .with_nonces(&nonces);
        let proof = {
            let mut replay = self.replay.lock().unwrap_or_else(PoisonError::into_inner);
            verify_dpop_proof(proof, &expect, &mut *replay)
        }
        .map_err(|e| proof_error(&e))?;

        let (sub, issuer) = unverified_subject_and_issuer(token).map_err(|e| token_error(&e))?;
        let doc = state
            .stratos
            .identity()
            .resolve_did(&sub)
            .await
            .map_err(|_| invalid_token("the token's account could not be resolved"))?
            .ok_or_else(|| invalid_token("the token's account does not exist"))?;
        let pds = stratos_network::pds_endpoint(&doc)
            .ok_or_else(|| invalid_token("the token's account has no PDS"))?;
        let expect = AccessTokenExpectation::new(&issuer, now_ms / 1000);
        let mut refreshed = false;
        loop {
            let keys = state
                .auth_servers
                .issuer_keys(&pds, &issuer, refreshed)
                .await
                .map_err(|e| {
                    tracing::warn!(error = %e, "authorization server keys unavailable");
                    invalid_token("the authorization server's keys could not be fetched")
                })?
                .ok_or_else(|| {
                    invalid_token(
                        "the token's issuer is not the authorization server of the account's PDS",
                    )
                })?;
            match verify_access_token(token, &expect, &keys, &proof.jkt) {
                Ok(claims) => return Ok(claims.sub),
                Err(DomainError::Token(
                    TokenError::UnknownKey(_) | TokenError::InvalidSignature,
                )) if !refreshed => {
                    refreshed = true;
                }
                Err(e) => return Err(token_error(&e)),
            }
        }
    }
}

/// A header value in quotes, with what cannot appear in a quoted-string removed.
fn quoted(text: &str) -> String {
    text.chars()
        .filter(|c| *c != '"' && *c != '\\' && (' '..='~').contains(c))
        .collect()
}

fn invalid_token(message: &str) -> ApiError {
    ApiError::invalid_token(message)
        .with_www_authenticate("DPoP realm=\"stratos\", error=\"invalid_token\"".to_owned())
}

fn invalid_proof(message: &str) -> ApiError {
    ApiError::auth_required(message).with_www_authenticate(format!(
        "DPoP realm=\"stratos\", error=\"invalid_dpop_proof\", error_description=\"{}\"",
        quoted(message)
    ))
}

fn proof_error(e: &DomainError) -> ApiError {
    match e {
        DomainError::Token(TokenError::UseDpopNonce) => {
            ApiError::auth_required("DPoP nonce required").with_www_authenticate(
                "DPoP error=\"use_dpop_nonce\", error_description=\"DPoP nonce required\""
                    .to_owned(),
            )
        }
        other => invalid_proof(&other.to_string()),
    }
}

fn token_error(e: &DomainError) -> ApiError {
    match e {
        DomainError::Token(TokenError::KeyBindingMismatch) => invalid_proof(&e.to_string()),
        DomainError::Token(TokenError::Expired { .. }) => invalid_token("token expired"),
        DomainError::Token(TokenError::InsufficientScope { .. }) => ApiError::new(
            actix_web::http::StatusCode::FORBIDDEN,
            "InsufficientScope",
            e.to_string(),
        )
        .with_www_authenticate("DPoP realm=\"stratos\", error=\"insufficient_scope\"".to_owned()),
        other => invalid_token(&other.to_string()),
    }
}
