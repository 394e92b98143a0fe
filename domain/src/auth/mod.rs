//! Token verification: atproto service-auth JWTs, DPoP proofs (RFC 9449) and DPoP-bound OAuth
//! access tokens, plus the JWK and DPoP-nonce helpers they need.
//!
//! Everything here is a pure function over the token text, caller-supplied keys and an injected
//! clock (`now`, unix seconds). Resolving an issuer's DID document, fetching a JWKS and storing
//! seen DPoP `jti`s are the caller's job ([`DpopReplayCache`] abstracts the last one).
//!
//! All tokens are compact JWS signed with `ES256` (P-256) or `ES256K` (secp256k1); every other
//! `alg` (including `none` and HMAC/RSA) is rejected, and signatures must be the 64-byte `r‖s`
//! form. Failures are [`crate::Error::Token`] carrying a [`TokenError`], whose
//! [`TokenError::code`] is a stable machine name. See `docs/auth.md` for the order of the checks.

mod access_token;
mod dpop;
mod jwk;
pub(crate) mod jws;
mod service_jwt;

pub use access_token::{
    AccessTokenClaims, AccessTokenExpectation, unverified_subject_and_issuer, verify_access_token,
};
pub use dpop::{
    DEFAULT_DPOP_CLOCK_TOLERANCE_SECS, DEFAULT_DPOP_MAX_AGE_SECS, DPOP_NONCE_ROTATION_MS,
    DpopExpectation, DpopProof, DpopReplayCache, MAX_JTI_CHARS, MemoryReplayCache, dpop_nonce,
    dpop_nonce_window, normalize_htu, verify_dpop_proof,
};
pub use jwk::{Jwk, JwkSet, jwk_from_public_key, jwk_thumbprint, parse_jwk};
pub use jws::MAX_TOKEN_BYTES;
pub use service_jwt::{
    DEFAULT_MAX_LIFETIME_SECS, ServiceJwtClaims, ServiceJwtExpectation, mint_service_jwt,
    unverified_issuer, verify_service_jwt,
};

/// Default clock skew tolerated on `exp`/`iat`/`nbf` of service-auth JWTs and access tokens.
pub const DEFAULT_CLOCK_SKEW_SECS: i64 = 30;

/// Why a token or proof was rejected. [`TokenError::code`] gives a stable machine name.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    /// Not a compact JWS of JSON objects (parts, base64url, JSON, size cap, `crit`).
    Malformed(String),
    /// The header `alg` is missing or not `ES256`/`ES256K`.
    UnsupportedAlgorithm(String),
    /// The header `typ` is missing or not the one this kind of token requires (`None`: absent).
    InvalidTyp(Option<String>),
    /// A JWK is missing, private, of an unsupported type or curve, or does not match `alg`.
    InvalidJwk(String),
    /// The signature is not 64 bytes, is high-S where low-S is required, or verifies with no key.
    InvalidSignature,
    /// The header `kid` names no key of the key set.
    UnknownKey(String),
    /// A required claim is absent.
    MissingClaim(&'static str),
    /// A claim has the wrong type or an unusable value.
    InvalidClaim {
        /// The claim name.
        claim: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The token (or proof, `exp` = `iat` + max age) has expired, beyond the tolerated skew.
    Expired {
        /// The expiry.
        exp: i64,
        /// The verification time.
        now: i64,
    },
    /// `iat` or `nbf` lies in the future, beyond the tolerated skew.
    NotYetValid {
        /// The `iat`/`nbf` value.
        at: i64,
        /// The verification time.
        now: i64,
    },
    /// `iss` is not the expected issuer.
    InvalidIssuer {
        /// The expected issuer.
        expected: String,
        /// The token's issuer.
        found: String,
    },
    /// `aud` is not (or does not contain) the expected audience.
    InvalidAudience {
        /// The expected audience.
        expected: String,
    },
    /// The service-auth `lxm` is missing (`found: None`) or names another method.
    InvalidLxm {
        /// The method being called.
        expected: String,
        /// The token's `lxm`.
        found: Option<String>,
    },
    /// The DPoP `htm` is not the request method.
    HtmMismatch {
        /// The request method.
        expected: String,
        /// The proof's `htm`.
        found: String,
    },
    /// The DPoP `htu` is not the request URL (after normalisation).
    HtuMismatch {
        /// The normalised request URL.
        expected: String,
        /// The proof's `htu`.
        found: String,
    },
    /// The DPoP proof's `jti` was seen before.
    Replayed,
    /// The DPoP proof lacks a nonce or carries a stale one; the client must retry with the
    /// nonce the server sends in `DPoP-Nonce`.
    UseDpopNonce,
    /// The DPoP `ath` is not base64url(SHA-256(access token)).
    AthMismatch,
    /// The access token's `cnf.jkt` is not the thumbprint of the DPoP proof's key.
    KeyBindingMismatch,
    /// The access token's `scope` lacks a required scope.
    InsufficientScope {
        /// The missing scope.
        required: String,
    },
}

impl TokenError {
    /// A stable machine name for the error, for logs and for mapping to HTTP errors.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::Malformed(_) => "malformed",
            TokenError::UnsupportedAlgorithm(_) => "unsupported_algorithm",
            TokenError::InvalidTyp(_) => "invalid_typ",
            TokenError::InvalidJwk(_) => "invalid_jwk",
            TokenError::InvalidSignature => "invalid_signature",
            TokenError::UnknownKey(_) => "unknown_key",
            TokenError::MissingClaim(_) => "missing_claim",
            TokenError::InvalidClaim { .. } => "invalid_claim",
            TokenError::Expired { .. } => "expired",
            TokenError::NotYetValid { .. } => "not_yet_valid",
            TokenError::InvalidIssuer { .. } => "invalid_issuer",
            TokenError::InvalidAudience { .. } => "invalid_audience",
            TokenError::InvalidLxm { .. } => "invalid_lxm",
            TokenError::HtmMismatch { .. } => "htm_mismatch",
            TokenError::HtuMismatch { .. } => "htu_mismatch",
            TokenError::Replayed => "replayed",
            TokenError::UseDpopNonce => "use_dpop_nonce",
            TokenError::AthMismatch => "invalid_ath",
            TokenError::KeyBindingMismatch => "key_binding_mismatch",
            TokenError::InsufficientScope { .. } => "insufficient_scope",
        }
    }
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenError::Malformed(m) => write!(f, "malformed token: {m}"),
            TokenError::UnsupportedAlgorithm(alg) => {
                write!(
                    f,
                    "unsupported JWS algorithm {alg:?} (expected ES256 or ES256K)"
                )
            }
            TokenError::InvalidTyp(Some(typ)) => write!(f, "unexpected token type {typ:?}"),
            TokenError::InvalidTyp(None) => write!(f, "missing token type"),
            TokenError::InvalidJwk(m) => write!(f, "invalid JWK: {m}"),
            TokenError::InvalidSignature => write!(f, "invalid signature"),
            TokenError::UnknownKey(kid) => write!(f, "no key with kid {kid:?}"),
            TokenError::MissingClaim(claim) => write!(f, "missing {claim} claim"),
            TokenError::InvalidClaim { claim, reason } => {
                write!(f, "invalid {claim} claim: {reason}")
            }
            TokenError::Expired { exp, now } => write!(f, "token expired at {exp} (now {now})"),
            TokenError::NotYetValid { at, now } => {
                write!(f, "token not valid before {at} (now {now})")
            }
            TokenError::InvalidIssuer { expected, found } => {
                write!(f, "invalid issuer {found:?} (expected {expected:?})")
            }
            TokenError::InvalidAudience { expected } => {
                write!(f, "invalid audience (expected {expected:?})")
            }
            TokenError::InvalidLxm {
                expected,
                found: Some(found),
            } => write!(f, "token is for method {found:?}, not {expected:?}"),
            TokenError::InvalidLxm {
                expected,
                found: None,
            } => write!(f, "missing lxm claim (method {expected:?} requires one)"),
            TokenError::HtmMismatch { expected, found } => {
                write!(f, "DPoP htm {found:?} does not match method {expected:?}")
            }
            TokenError::HtuMismatch { expected, found } => {
                write!(f, "DPoP htu {found:?} does not match {expected:?}")
            }
            TokenError::Replayed => write!(f, "DPoP proof replayed"),
            TokenError::UseDpopNonce => write!(f, "DPoP nonce required"),
            TokenError::AthMismatch => write!(f, "DPoP ath does not match the access token"),
            TokenError::KeyBindingMismatch => {
                write!(f, "access token is bound to another DPoP key")
            }
            TokenError::InsufficientScope { required } => {
                write!(f, "scope {required:?} required")
            }
        }
    }
}

impl std::error::Error for TokenError {}

/// `Err(Error::Token(e))`.
pub(crate) fn fail<T>(e: TokenError) -> crate::Result<T> {
    Err(crate::Error::Token(e))
}

/// Shortens attacker-controlled text before it goes into an error (128 bytes and `…`).
pub fn clip(s: &str) -> String {
    const MAX: usize = 128;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
