//! Who is calling: users (development bearer today), anonymous readers, the operator (admin).
//!
//! Verification primitives live in the domain (`stratos_domain::auth`); this module only reads
//! headers and decides which check applies. DPoP-bound OAuth tokens and service-auth JWTs need
//! the network adapter's issuer and DID lookups, which are not wired into the service yet: such
//! requests are refused with `InvalidToken`, never accepted unverified.

use actix_web::HttpRequest;
use actix_web::http::header::AUTHORIZATION;
use base64::Engine as _;
use stratos_domain::syntax::Did;

use crate::error::ApiError;
use crate::state::AppState;

/// The authenticated account, if any. Errors are authentication failures (401).
pub fn caller(req: &HttpRequest, state: &AppState) -> Result<Option<Did>, ApiError> {
    let Some(header) = req.headers().get(AUTHORIZATION) else {
        return Ok(None);
    };
    let header = header
        .to_str()
        .map_err(|_| ApiError::invalid_token("malformed Authorization header"))?;
    let (scheme, value) = header
        .split_once(' ')
        .ok_or_else(|| ApiError::invalid_token("malformed Authorization header"))?;
    let value = value.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        if state.config.auth.dev_mode && value.starts_with("did:") {
            // Development auth: the bearer token is the DID itself. Only reachable when the
            // configuration accepted dev mode, which requires a loopback bind address.
            return Did::parse(value)
                .map(Some)
                .map_err(|_| ApiError::invalid_token("the bearer DID is not a valid DID"));
        }
        return Err(ApiError::invalid_token(
            "service-auth bearer tokens are not verified by this build; refused",
        ));
    }
    if scheme.eq_ignore_ascii_case("dpop") {
        return Err(ApiError::invalid_token(
            "DPoP-bound OAuth tokens are not verified by this build; refused",
        ));
    }
    Err(ApiError::invalid_token(format!(
        "unsupported authorization scheme {scheme}"
    )))
}

/// The caller, required.
pub fn require_caller(req: &HttpRequest, state: &AppState) -> Result<Did, ApiError> {
    caller(req, state)?.ok_or_else(|| ApiError::auth_required("authentication required"))
}

/// The caller for endpoints whose authentication is optional: a failed check degrades to
/// anonymous, as the reference does for reads.
pub fn optional_caller(req: &HttpRequest, state: &AppState) -> Option<Did> {
    caller(req, state).ok().flatten()
}

/// Checks the operator's password: `Authorization: Basic base64(user:password)` (any user
/// name) or `Authorization: Bearer <password>`, compared in constant time.
pub fn require_admin(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    let Some(expected) = &state.config.auth.admin_password else {
        return Err(ApiError::forbidden(
            "admin endpoints are disabled (STRATOS_ADMIN_PASSWORD is not set)",
        ));
    };
    let given = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.split_once(' '))
        .and_then(|(scheme, value)| {
            let value = value.trim();
            if scheme.eq_ignore_ascii_case("basic") {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(value)
                    .ok()?;
                let text = String::from_utf8(decoded).ok()?;
                text.split_once(':').map(|(_, pw)| pw.to_owned())
            } else if scheme.eq_ignore_ascii_case("bearer") {
                Some(value.to_owned())
            } else {
                None
            }
        })
        .ok_or_else(|| ApiError::auth_required("admin authentication required"))?;
    if constant_time_eq(given.as_bytes(), expected.expose().as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::auth_required("wrong admin password"))
    }
}

/// Equality whose time depends only on the lengths, not on where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for (i, x) in a.iter().enumerate() {
        diff |= x ^ b.get(i % b.len().max(1)).copied().unwrap_or(0);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret!"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }
}
