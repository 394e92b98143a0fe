//! Who is calling: accounts (DPoP-bound OAuth access tokens, service-auth JWTs, or the
//! development bearer on loopback), anonymous readers, the operator (admin).
//!
//! Verification primitives live in the domain (`stratos_domain::auth`); this module only reads
//! headers, fetches the issuer's key through the identity port, and decides which check applies.
//! DPoP is in [`crate::dpop`].

use actix_web::HttpRequest;
use actix_web::http::StatusCode;
use actix_web::http::header::AUTHORIZATION;
use base64::Engine as _;
use stratos_domain::Error as DomainError;
use stratos_domain::auth::{
    ServiceJwtExpectation, TokenError, unverified_issuer, verify_service_jwt,
};
use stratos_domain::syntax::Did;

use crate::error::ApiError;
use crate::state::AppState;

/// The authenticated account, if any. Errors are authentication failures (401).
pub async fn caller(req: &HttpRequest, state: &AppState) -> Result<Option<Did>, ApiError> {
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
        if value.split('.').count() == 3 {
            return service_jwt(req, state, value).await.map(Some);
        }
        if state.config.auth.dev_mode {
            return Err(ApiError::invalid_token(
                "the bearer token is neither a DID nor a JWT: dev mode expects \
                 `Authorization: Bearer <did>` (e.g. did:plc:…), otherwise a service-auth JWT",
            ));
        }
        return Err(ApiError::invalid_token("the bearer token is not a JWT"));
    }
    if scheme.eq_ignore_ascii_case("dpop") {
        return state.dpop.verify(req, value, state).await.map(Some);
    }
    Err(ApiError::invalid_token(format!(
        "unsupported authorization scheme {scheme}"
    )))
}

/// A service-auth JWT (`iss` = the account, signed with its `#atproto` key, `aud` = this
/// service, `lxm` = the called method): the account is the issuer.
async fn service_jwt(req: &HttpRequest, state: &AppState, token: &str) -> Result<Did, ApiError> {
    verify_service_token(state, token, req.path().strip_prefix("/xrpc/")).await
}

/// Verifies a service-auth JWT for method `lxm` against its issuer's `#atproto` key (resolved
/// through the identity port); the issuer on success.
pub async fn verify_service_token(
    state: &AppState,
    token: &str,
    lxm: Option<&str>,
) -> Result<Did, ApiError> {
    let iss = unverified_issuer(token).map_err(service_jwt_error)?;
    let doc = state
        .stratos
        .identity()
        .resolve_did(&iss)
        .await
        .map_err(|_| ApiError::invalid_token("the token's issuer could not be resolved"))?
        .ok_or_else(|| ApiError::invalid_token("the token's issuer does not exist"))?;
    let key = stratos_network::identity::signing_public_key(&doc)
        .ok_or_else(|| ApiError::invalid_token("the token's issuer has no #atproto key"))?
        .map_err(|_| ApiError::invalid_token("the issuer's #atproto key is unusable"))?;
    let now = state.stratos.clock().now_ms() / 1000;
    let mut expect = ServiceJwtExpectation::new(state.config.service_did.as_str(), lxm, now);
    expect.max_lifetime_secs = i64::from(state.config.auth.service_auth_max_lifetime_secs);
    Ok(verify_service_jwt(token, &expect, &[key])
        .map_err(service_jwt_error)?
        .iss)
}

/// A failed service-auth JWT as atproto names it (`@atproto/xrpc-server`), so clients written
/// against a PDS recognise the failure: 401 with `JwtExpired`, `BadJwtAudience`,
/// `BadJwtLexiconMethod`, `BadJwtSignature`, or `BadJwt` for everything else.
fn service_jwt_error(e: DomainError) -> ApiError {
    let name = match &e {
        DomainError::Token(t) => match t {
            TokenError::Expired { .. } => "JwtExpired",
            TokenError::InvalidAudience { .. } => "BadJwtAudience",
            TokenError::InvalidLxm { .. } => "BadJwtLexiconMethod",
            TokenError::InvalidSignature | TokenError::UnknownKey(_) => "BadJwtSignature",
            _ => "BadJwt",
        },
        _ => "BadJwt",
    };
    ApiError::new(StatusCode::UNAUTHORIZED, name, e.to_string())
}

/// The caller, required.
pub async fn require_caller(req: &HttpRequest, state: &AppState) -> Result<Did, ApiError> {
    caller(req, state).await?.ok_or_else(|| {
        ApiError::auth_required("authentication required")
            .with_www_authenticate("DPoP realm=\"stratos\"".to_owned())
    })
}

/// The caller for endpoints whose authentication is optional: a failed check degrades to
/// anonymous, as the reference does for reads. The one exception is a DPoP proof without a
/// current nonce: that answer is the nonce handshake (the client retries with the nonce it was
/// just given), and swallowing it would silently turn the account into an anonymous reader.
pub async fn optional_caller(req: &HttpRequest, state: &AppState) -> Result<Option<Did>, ApiError> {
    match caller(req, state).await {
        Ok(caller) => Ok(caller),
        Err(e)
            if e.www_authenticate
                .as_deref()
                .is_some_and(|c| c.contains("use_dpop_nonce")) =>
        {
            Err(e)
        }
        Err(_) => Ok(None),
    }
}

/// Checks the operator's password: `Authorization: Basic base64(user:password)` (any user
/// name) or `Authorization: Bearer <password>`, compared in constant time.
pub fn require_admin(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    let Some(expected) = &state.config.auth.admin_password else {
        // 401, as for a wrong password: no credential can succeed until one is configured.
        return Err(ApiError::auth_required(
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

/// Equality whose time depends only on the lengths, not on where the inputs differ (`subtle`,
/// whose comparison the optimiser cannot turn into an early exit).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    a.ct_eq(b).into()
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
