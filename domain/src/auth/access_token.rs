//! DPoP-bound OAuth access tokens (JWT, RFC 9068 style) issued by an atproto authorization server.

use serde_json::Value;

use super::jwk::Jwk;
use super::jws::{self, opt_str, opt_time, req_str, req_time};
use super::{DEFAULT_CLOCK_SKEW_SECS, TokenError, clip, fail};
use crate::Result;
use crate::syntax::Did;

/// What the verifier of an access token expects.
#[derive(Debug, Clone, Copy)]
pub struct AccessTokenExpectation<'a> {
    /// The authorization server expected for the subject (`iss` must equal it exactly).
    pub issuer: &'a str,
    /// An audience the token's `aud` must contain, if any.
    pub audience: Option<&'a str>,
    /// A scope the token must grant, besides `atproto` (always required).
    pub required_scope: Option<&'a str>,
    /// Verification time, unix seconds.
    pub now: i64,
    /// Tolerated clock skew on `exp`, `iat` and `nbf`, seconds.
    pub skew_secs: i64,
}

impl<'a> AccessTokenExpectation<'a> {
    /// An expectation with no audience or extra scope and the default skew
    /// ([`DEFAULT_CLOCK_SKEW_SECS`]).
    pub fn new(issuer: &'a str, now: i64) -> Self {
        Self {
            issuer,
            audience: None,
            required_scope: None,
            now,
            skew_secs: DEFAULT_CLOCK_SKEW_SECS,
        }
    }
}

/// The claims of a verified access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessTokenClaims {
    /// The account the token acts for.
    pub sub: Did,
    /// The authorization server.
    pub iss: String,
    /// The audiences (`aud` as a list; empty when absent).
    pub aud: Vec<String>,
    /// The granted scopes, space-separated.
    pub scope: String,
    /// Expiry, unix seconds.
    pub exp: i64,
    /// Issue time, if present.
    pub iat: Option<i64>,
    /// The OAuth client, if named.
    pub client_id: Option<String>,
    /// Thumbprint of the DPoP key the token is bound to (`cnf.jkt`).
    pub jkt: String,
}

/// The `sub` and `iss` of an access token, read WITHOUT verifying anything but its shape: only
/// to find which account's PDS, and so which authorization server, holds the keys that
/// [`verify_access_token`] then checks it against. Never authenticate on this alone.
pub fn unverified_subject_and_issuer(token: &str) -> Result<(Did, String)> {
    let jws = jws::parse(token)?;
    let sub = req_str(&jws.claims, "sub")?;
    let sub = Did::parse(sub).or_else(|_| {
        fail(TokenError::InvalidClaim {
            claim: "sub",
            reason: format!("{} is not a DID", clip(sub)),
        })
    })?;
    let iss = req_str(&jws.claims, "iss")?;
    Ok((sub, iss.to_owned()))
}

/// Verifies a DPoP-bound access token against the authorization server's keys and binds it to
/// the thumbprint of the key of the already verified DPoP proof (`dpop_jkt`).
///
/// Order: JWS shape and `alg` → `typ` (absent, `at+jwt` or `JWT`) → key (the one with the header
/// `kid`, else every key) and signature (high S accepted) → `iss` → `sub` → `aud` → `exp` → `iat`
/// and `nbf` → `scope` → `cnf.jkt`. A token is never accepted unverified.
pub fn verify_access_token(
    token: &str,
    expect: &AccessTokenExpectation<'_>,
    jwks: &[Jwk],
    dpop_jkt: &str,
) -> Result<AccessTokenClaims> {
    let jws = jws::parse(token)?;
    if let Some(typ) = jws.typ()? {
        let typ = typ.to_ascii_lowercase();
        let media = typ.strip_prefix("application/").unwrap_or(&typ);
        if media != "at+jwt" && media != "jwt" {
            return fail(TokenError::InvalidTyp(Some(clip(&typ))));
        }
    }
    match jws.header.get("kid") {
        None => jws.verify_with(jwks.iter().map(|k| &k.key), false)?,
        Some(Value::String(kid)) => {
            let mut matching = jwks
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid))
                .map(|k| &k.key)
                .peekable();
            if matching.peek().is_none() {
                return fail(TokenError::UnknownKey(clip(kid)));
            }
            jws.verify_with(matching, false)?
        }
        Some(_) => return fail(TokenError::Malformed("kid is not a string".into())),
    };

    let claims = &jws.claims;
    let iss = req_str(claims, "iss")?;
    if iss != expect.issuer {
        return fail(TokenError::InvalidIssuer {
            expected: expect.issuer.to_owned(),
            found: clip(iss),
        });
    }
    let sub = req_str(claims, "sub")?;
    let sub = Did::parse(sub).or_else(|_| {
        fail(TokenError::InvalidClaim {
            claim: "sub",
            reason: format!("{} is not a DID", clip(sub)),
        })
    })?;

    let aud = audiences(claims.get("aud"))?;
    if let Some(expected) = expect.audience
        && !aud.iter().any(|a| a == expected)
    {
        return fail(TokenError::InvalidAudience {
            expected: expected.to_owned(),
        });
    }

    let exp = req_time(claims, "exp")?;
    if expect.now > exp.saturating_add(expect.skew_secs) {
        return fail(TokenError::Expired {
            exp,
            now: expect.now,
        });
    }
    let iat = opt_time(claims, "iat")?;
    for at in [iat, opt_time(claims, "nbf")?].into_iter().flatten() {
        if at > expect.now.saturating_add(expect.skew_secs) {
            return fail(TokenError::NotYetValid {
                at,
                now: expect.now,
            });
        }
    }

    let scope = opt_str(claims, "scope")?.unwrap_or_default();
    for required in std::iter::once("atproto").chain(expect.required_scope) {
        if !scope.split(' ').any(|s| s == required) {
            return fail(TokenError::InsufficientScope {
                required: required.to_owned(),
            });
        }
    }

    let jkt = match claims.get("cnf") {
        None => return fail(TokenError::MissingClaim("cnf.jkt")),
        Some(Value::Object(cnf)) => match opt_str(cnf, "jkt")? {
            Some(jkt) => jkt,
            None => return fail(TokenError::MissingClaim("cnf.jkt")),
        },
        Some(_) => {
            return fail(TokenError::InvalidClaim {
                claim: "cnf",
                reason: "not an object".into(),
            });
        }
    };
    if jkt != dpop_jkt {
        return fail(TokenError::KeyBindingMismatch);
    }

    Ok(AccessTokenClaims {
        sub,
        iss: iss.to_owned(),
        aud,
        scope: scope.to_owned(),
        exp,
        iat,
        client_id: opt_str(claims, "client_id")?.map(str::to_owned),
        jkt: jkt.to_owned(),
    })
}

/// `aud` as a list: a string, an array of strings, or absent (empty).
fn audiences(aud: Option<&Value>) -> Result<Vec<String>> {
    let invalid = || {
        crate::Error::Token(TokenError::InvalidClaim {
            claim: "aud",
            reason: "not a string or an array of strings".into(),
        })
    };
    match aud {
        None => Ok(Vec::new()),
        Some(Value::String(a)) => Ok(vec![a.clone()]),
        Some(Value::Array(list)) => list
            .iter()
            .map(|a| a.as_str().map(str::to_owned).ok_or_else(invalid))
            .collect(),
        Some(_) => Err(invalid()),
    }
}
