//! The atproto OAuth *client*, sans I/O: everything Stratos needs to act on a user's PDS with
//! the user's consent, except sending the requests.
//!
//! | module | what |
//! |---|---|
//! | [`pkce`] | PKCE S256 verifier and challenge (RFC 7636) |
//! | [`dpop`] | the client's DPoP key and proof JWTs (RFC 9449): `htm`, `htu`, `iat`, `jti`, `nonce`, `ath`, `jwk` header |
//! | [`client_auth`] | client credentials: a public (loopback) client, or `private_key_jwt` client assertions (RFC 7523) |
//! | [`metadata`] | authorization-server (RFC 8414) and protected-resource (RFC 9728) metadata, with the issuer checks |
//! | [`token`] | token and error responses of the authorization server |
//! | [`session`] | [`Session`] (what is kept per account) and [`AuthorizationState`] (what is kept per pending flow) |
//! | [`callback`] | the redirect back from the authorization server: `state`, `iss`, errors, then `sub` |
//! | [`requests`] | the PAR, token and revocation bodies and the authorization URL |
//! | [`form`] | `application/x-www-form-urlencoded` bodies and query strings (PAR, token, revocation, callback) |
//! | [`seal`] | sessions and states encrypted at rest (AES-256-GCM, key derived from the service key by HKDF) |
//!
//! Time is always a parameter (`now`, unix seconds). The only entropy drawn here is for keys,
//! `state`, PKCE verifiers, `jti`s and AEAD nonces, from the operating system. Failures are
//! [`OAuthError`], which keeps the domain error that caused it as its `source`.
//! docs/auth.md, "OAuth client", describes the flow these pieces make up.

pub mod callback;
pub mod client_auth;
pub mod dpop;
pub mod form;
mod jwt;
pub mod metadata;
pub mod pkce;
pub mod requests;
pub mod seal;
pub mod session;
pub mod token;

pub use callback::{CallbackParams, check_subject, validate_callback};
pub use client_auth::{
    CLIENT_ASSERTION_TYPE, ClientCredentials, client_assertion, loopback_client_id,
};
pub use dpop::{DpopKey, DpopProofParams};
pub use metadata::{AuthorizationServerMetadata, ProtectedResourceMetadata};
pub use pkce::{CHALLENGE_METHOD, PkceVerifier};
pub use seal::SealKey;
pub use session::{AuthorizationState, AuthorizationTarget, STATE_MAX_AGE_SECS, Session};
pub use token::{ErrorResponse, TokenResponse};

use crate::syntax::Did;

/// Why an OAuth client step failed. Causes from the rest of the domain (a key that does not
/// parse, a signature that cannot be made) are kept as the `source`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OAuthError {
    /// A key (DPoP key, client key) could not be read or used.
    #[error("OAuth key: {0}")]
    Key(#[source] Box<crate::Error>),
    /// A JWT (DPoP proof, client assertion) could not be signed.
    #[error("signing an OAuth JWT failed")]
    Signing(#[source] Box<crate::Error>),
    /// A value could not be turned into JSON, or stored JSON could not be read back.
    #[error("OAuth data encoding: {0}")]
    Encoding(String),
    /// Input that should name an account (handle, DID or PDS URL) names none.
    #[error("not a handle, DID or https URL: {0:?}")]
    InvalidTarget(String),
    /// Authorization-server or protected-resource metadata is unusable.
    #[error("invalid {document}: {reason}")]
    InvalidMetadata {
        /// Which document.
        document: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A server speaks for an issuer other than the one expected (metadata `issuer`, callback
    /// `iss`, or the authorization server of the account's PDS).
    #[error("issuer mismatch: expected {expected:?}, found {found:?}")]
    IssuerMismatch {
        /// The issuer the flow is bound to.
        expected: String,
        /// The issuer found.
        found: String,
    },
    /// The token endpoint's answer is unusable (not JSON, not a DPoP token, no `sub`, …).
    #[error("invalid token response: {0}")]
    InvalidTokenResponse(String),
    /// The callback's `state` is missing or is not the flow's.
    #[error("the callback's state does not match the authorization request")]
    StateMismatch,
    /// The pending flow is older than allowed.
    #[error("the authorization request started at {created_at} expired (now {now})")]
    StateExpired {
        /// When the flow started, unix seconds.
        created_at: i64,
        /// The check's time, unix seconds.
        now: i64,
    },
    /// A parameter the callback must carry is absent.
    #[error("the callback has no {0} parameter")]
    MissingParameter(&'static str),
    /// The authorization server answered the request with an error (the user refused, the
    /// request was invalid, …).
    #[error("authorization failed: {error}{}", .description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    AuthorizationFailed {
        /// The OAuth error code (`access_denied`, …).
        error: String,
        /// The server's description, if any.
        description: Option<String>,
    },
    /// The account that authorized is not the one the flow was started for.
    #[error("the authorization is for {found}, not {expected}")]
    SubjectMismatch {
        /// The DID the flow started for.
        expected: Did,
        /// The token's `sub`.
        found: Did,
    },
    /// A sealed value is not in the expected format (prefix, base64url, length).
    #[error("sealed value: {0}")]
    SealFormat(&'static str),
    /// A sealed value does not decrypt: altered, sealed under another key, or stored under
    /// another account or state (the associated data differs). The three are not told apart.
    #[error("sealed value does not decrypt (altered, another key, or another storage key)")]
    Unseal,
    /// The AEAD or key derivation failed (out of randomness, …).
    #[error("encryption at rest failed: {0}")]
    Crypto(&'static str),
}

/// `Err(OAuthError)` shorthand for the submodules.
pub(crate) type OAuthResult<T> = Result<T, OAuthError>;

/// `n` random bytes from the operating system, base64url without padding.
pub(crate) fn random_token(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
    crate::auth::jws::b64url(&bytes)
}

/// The current time is the caller's; this is only a guard against a negative clock.
pub(crate) fn non_negative(now: i64) -> i64 {
    now.max(0)
}
