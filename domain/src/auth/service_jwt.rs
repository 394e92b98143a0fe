//! atproto inter-service authentication JWTs.

use super::jws::{self, opt_str, opt_time, req_str, req_time};
use super::{DEFAULT_CLOCK_SKEW_SECS, TokenError, clip, fail};
use crate::Result;
use crate::crypto::PublicKey;
use crate::syntax::Did;

/// What the verifier of a service-auth JWT expects.
#[derive(Debug, Clone, Copy)]
pub struct ServiceJwtExpectation<'a> {
    /// This service's DID (`aud` must equal it exactly, fragment included if any).
    pub audience: &'a str,
    /// The NSID of the method being called, when the method requires `lxm`.
    pub lxm: Option<&'a str>,
    /// Verification time, unix seconds.
    pub now: i64,
    /// Tolerated clock skew on `exp` and `iat`, seconds.
    pub max_skew_secs: i64,
    /// The longest lifetime accepted: `exp` may lie at most this far past `iat` (past `now`
    /// when the token has no `iat`), plus the skew. A token minted for years is a bearer
    /// credential that outlives any key rotation.
    pub max_lifetime_secs: i64,
}

/// Default [`ServiceJwtExpectation::max_lifetime_secs`]: one hour, the longest a PDS's
/// `com.atproto.server.getServiceAuth` mints for a method-bound token.
pub const DEFAULT_MAX_LIFETIME_SECS: i64 = 3_600;

impl<'a> ServiceJwtExpectation<'a> {
    /// An expectation with the default skew ([`DEFAULT_CLOCK_SKEW_SECS`]).
    pub fn new(audience: &'a str, lxm: Option<&'a str>, now: i64) -> Self {
        Self {
            audience,
            lxm,
            now,
            max_skew_secs: DEFAULT_CLOCK_SKEW_SECS,
            max_lifetime_secs: DEFAULT_MAX_LIFETIME_SECS,
        }
    }
}

/// The claims of a verified service-auth JWT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceJwtClaims {
    /// The issuer's DID (without any `#fragment`).
    pub iss: Did,
    /// The service id of `iss` (`atproto_labeler` for `did:…#atproto_labeler`), if any.
    pub iss_service: Option<String>,
    /// The audience (equal to the expected one).
    pub aud: String,
    /// Expiry, unix seconds.
    pub exp: i64,
    /// Issue time, if present.
    pub iat: Option<i64>,
    /// The lexicon method the token is limited to, if any.
    pub lxm: Option<String>,
    /// The token id (nonce), if any.
    pub jti: Option<String>,
}

/// The issuer DID of a service-auth JWT, without verifying anything but the token's shape: the
/// caller resolves this DID's document to get the keys for [`verify_service_jwt`].
pub fn unverified_issuer(token: &str) -> Result<Did> {
    let jws = jws::parse(token)?;
    Ok(issuer(&jws.claims)?.0)
}

fn issuer(claims: &serde_json::Map<String, serde_json::Value>) -> Result<(Did, Option<String>)> {
    let iss = req_str(claims, "iss")?;
    let (did, service) = match iss.split_once('#') {
        Some((_, "")) => {
            return fail(TokenError::InvalidClaim {
                claim: "iss",
                reason: "empty service fragment".into(),
            });
        }
        Some((did, service)) => (did, Some(service.to_owned())),
        None => (iss, None),
    };
    let did = Did::parse(did).or_else(|_| {
        fail(TokenError::InvalidClaim {
            claim: "iss",
            reason: format!("{} is not a DID", clip(iss)),
        })
    })?;
    Ok((did, service))
}

/// Verifies an atproto service-auth JWT against the issuer's atproto signing keys.
///
/// Order: JWS shape and `alg` (ES256/ES256K, 64-byte signature) → `typ` is not an OAuth/DPoP
/// type → signature (strict low-S, by any of `issuer_keys` of the `alg`'s curve) → `iss` (a DID,
/// optional `#service`) → `aud` equals the expected audience → `exp` (`now > exp + skew`
/// rejects) → `iat` (not beyond `now + skew`) → lifetime (`exp` at most `max_lifetime_secs`
/// past `iat`, or past `now` without `iat`) → `lxm` when expected.
pub fn verify_service_jwt(
    token: &str,
    expect: &ServiceJwtExpectation<'_>,
    issuer_keys: &[PublicKey],
) -> Result<ServiceJwtClaims> {
    let jws = jws::parse(token)?;
    // Keep OAuth access/refresh tokens and DPoP proofs from being replayed as service tokens.
    if let Some(typ) = jws.typ()?
        && matches!(
            typ.to_ascii_lowercase().as_str(),
            "at+jwt" | "application/at+jwt" | "refresh+jwt" | "dpop+jwt"
        )
    {
        return fail(TokenError::InvalidTyp(Some(clip(typ))));
    }
    jws.verify_with(issuer_keys, true)?;

    let claims = &jws.claims;
    let (iss, iss_service) = issuer(claims)?;
    let aud = req_str(claims, "aud")?;
    if aud != expect.audience {
        return fail(TokenError::InvalidAudience {
            expected: expect.audience.to_owned(),
        });
    }
    let exp = req_time(claims, "exp")?;
    if expect.now > exp.saturating_add(expect.max_skew_secs) {
        return fail(TokenError::Expired {
            exp,
            now: expect.now,
        });
    }
    let iat = opt_time(claims, "iat")?;
    if let Some(iat) = iat
        && iat > expect.now.saturating_add(expect.max_skew_secs)
    {
        return fail(TokenError::NotYetValid {
            at: iat,
            now: expect.now,
        });
    }
    let issued = iat.unwrap_or(expect.now);
    let longest = issued
        .saturating_add(expect.max_lifetime_secs)
        .saturating_add(expect.max_skew_secs);
    if exp > longest {
        return fail(TokenError::InvalidClaim {
            claim: "exp",
            reason: format!("the token lives longer than {} s", expect.max_lifetime_secs),
        });
    }
    let lxm = opt_str(claims, "lxm")?;
    if let Some(expected) = expect.lxm
        && lxm != Some(expected)
    {
        return fail(TokenError::InvalidLxm {
            expected: expected.to_owned(),
            found: lxm.map(clip),
        });
    }
    Ok(ServiceJwtClaims {
        iss,
        iss_service,
        aud: aud.to_owned(),
        exp,
        iat,
        lxm: lxm.map(str::to_owned),
        jti: opt_str(claims, "jti")?.map(str::to_owned),
    })
}

/// Mints a service-auth JWT: `iss` asks the service `aud` to run `lxm` (when given), signed by
/// `signer` (the issuer's `#atproto` key: ES256 for P-256, ES256K for secp256k1), valid from
/// `now` for `ttl_secs` seconds (at most [`DEFAULT_MAX_LIFETIME_SECS`], which verifiers
/// enforce), with a random `jti` so a verifier may refuse replays.
///
/// ```
/// use stratos_domain::auth::{ServiceJwtExpectation, mint_service_jwt, verify_service_jwt};
/// use stratos_domain::crypto::{KeyAlgorithm, Keypair};
/// use stratos_domain::syntax::Did;
///
/// let key = Keypair::generate(KeyAlgorithm::K256);
/// let iss = Did::parse("did:plc:ewvi7nxzyoun6zhxrhs64oiz")?;
/// let token = mint_service_jwt(&key, &iss, "did:web:stratos.example", Some("zone.stratos.enrollment.status"), 1_800_000_000, 60)?;
/// let expect = ServiceJwtExpectation::new("did:web:stratos.example", Some("zone.stratos.enrollment.status"), 1_800_000_010);
/// let keys = [key.public_key().clone()];
/// assert_eq!(verify_service_jwt(&token, &expect, &keys)?.iss, iss);
/// # Ok::<(), stratos_domain::Error>(())
/// ```
pub fn mint_service_jwt(
    signer: &dyn crate::crypto::Signer,
    iss: &Did,
    aud: &str,
    lxm: Option<&str>,
    now: i64,
    ttl_secs: i64,
) -> Result<String> {
    use rand_core::RngCore as _;
    let ttl = ttl_secs.clamp(1, DEFAULT_MAX_LIFETIME_SECS);
    let mut nonce = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut nonce);
    let header = serde_json::json!({ "typ": "JWT", "alg": signer.algorithm().jwt_alg() });
    let mut claims = serde_json::json!({
        "iss": iss.as_str(),
        "aud": aud,
        "iat": now,
        "exp": now.saturating_add(ttl),
        "jti": jws::b64url(&nonce),
    });
    if let Some(lxm) = lxm {
        claims["lxm"] = serde_json::Value::String(lxm.to_owned());
    }
    let encode = |v: &serde_json::Value| jws::b64url(v.to_string().as_bytes());
    let input = format!("{}.{}", encode(&header), encode(&claims));
    let sig = signer.sign(input.as_bytes())?;
    Ok(format!("{input}.{}", jws::b64url(&sig)))
}
