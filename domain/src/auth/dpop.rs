//! DPoP proofs (RFC 9449): verification, replay cache, server nonces.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use sha2::{Digest, Sha256};

use super::jwk::{jwk_thumbprint, parse_jwk};
use super::jws::{self, b64url, opt_str, req_str, req_time};
use super::{TokenError, clip, fail};
use crate::Result;
use crate::crypto::PublicKey;

/// Default maximum age of a proof (`now - iat`), seconds.
pub const DEFAULT_DPOP_MAX_AGE_SECS: i64 = 10;
/// Default clock tolerance applied on both sides of the `iat` window, seconds.
pub const DEFAULT_DPOP_CLOCK_TOLERANCE_SECS: i64 = 5;
/// Longest accepted `jti`, in characters.
pub const MAX_JTI_CHARS: usize = 256;
/// Nonce rotation period of [`dpop_nonce_window`], milliseconds.
pub const DPOP_NONCE_ROTATION_MS: u64 = 60_000;

/// What the verifier of a DPoP proof expects of it.
#[derive(Debug, Clone, Copy)]
pub struct DpopExpectation<'a> {
    /// The HTTP method of the request (`htm` must equal it, case-sensitively).
    pub method: &'a str,
    /// The full, real URL of the request (as the client addressed it: public scheme and host).
    pub url: &'a str,
    /// The access token presented with the proof, if any (then `ath` is required).
    pub access_token: Option<&'a str>,
    /// Verification time, unix seconds.
    pub now: i64,
    /// Maximum age of the proof, seconds.
    pub max_age_secs: i64,
    /// Clock tolerance on both ends of the `iat` window, seconds.
    pub clock_tolerance_secs: i64,
    /// Accepted server nonces; empty = no nonce required.
    pub nonces: &'a [&'a str],
}

impl<'a> DpopExpectation<'a> {
    /// An expectation with default age and tolerance, no access token and no nonce.
    pub fn new(method: &'a str, url: &'a str, now: i64) -> Self {
        Self {
            method,
            url,
            access_token: None,
            now,
            max_age_secs: DEFAULT_DPOP_MAX_AGE_SECS,
            clock_tolerance_secs: DEFAULT_DPOP_CLOCK_TOLERANCE_SECS,
            nonces: &[],
        }
    }

    /// Requires `ath` to match this access token.
    pub fn with_access_token(mut self, access_token: &'a str) -> Self {
        self.access_token = Some(access_token);
        self
    }

    /// Requires a nonce, one of `nonces`.
    pub fn with_nonces(mut self, nonces: &'a [&'a str]) -> Self {
        self.nonces = nonces;
        self
    }
}

/// A verified DPoP proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpopProof {
    /// RFC 7638 thumbprint of the proof key (compare with the access token's `cnf.jkt`).
    pub jkt: String,
    /// The proof id.
    pub jti: String,
    /// Issue time, unix seconds.
    pub iat: i64,
    /// The server nonce the proof carries, if any.
    pub nonce: Option<String>,
    /// The proof key.
    pub key: PublicKey,
}

/// Remembers the `jti`s of accepted proofs until they expire.
pub trait DpopReplayCache {
    /// Records `jti` as used until `expires_at` (unix seconds). Returns `false` when it was
    /// already recorded, i.e. the proof is a replay.
    fn check_and_insert(&mut self, jti: &str, expires_at: i64) -> bool;

    /// Forgets entries whose `expires_at` is before `now`. [`verify_dpop_proof`] calls it before
    /// each check; stores that expire entries by themselves keep this default no-op.
    fn evict_expired(&mut self, _now: i64) {}
}

/// An in-memory [`DpopReplayCache`] (one process; for tests and embedding).
#[derive(Debug, Default, Clone)]
pub struct MemoryReplayCache {
    entries: HashMap<String, i64>,
    by_expiry: BinaryHeap<Reverse<(i64, String)>>,
}

impl MemoryReplayCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of remembered `jti`s.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl DpopReplayCache for MemoryReplayCache {
    fn check_and_insert(&mut self, jti: &str, expires_at: i64) -> bool {
        if self.entries.contains_key(jti) {
            return false;
        }
        self.entries.insert(jti.to_owned(), expires_at);
        self.by_expiry.push(Reverse((expires_at, jti.to_owned())));
        true
    }

    fn evict_expired(&mut self, now: i64) {
        while let Some(Reverse((expires_at, _))) = self.by_expiry.peek() {
            if *expires_at >= now {
                break;
            }
            if let Some(Reverse((expires_at, jti))) = self.by_expiry.pop()
                && self.entries.get(&jti) == Some(&expires_at)
            {
                self.entries.remove(&jti);
            }
        }
    }
}

/// Verifies a DPoP proof JWT for one request.
///
/// Order: JWS shape and `alg` → `typ` is `dpop+jwt` → `jwk` is a public EC key of the `alg`'s
/// curve → signature (high S accepted, as JOSE allows) → `jti` → `htm` → `htu` → `iat` window →
/// nonce → `ath` → replay cache (last, so a rejected proof does not consume its `jti`).
pub fn verify_dpop_proof(
    proof_jwt: &str,
    expect: &DpopExpectation<'_>,
    replay: &mut impl DpopReplayCache,
) -> Result<DpopProof> {
    let jws = jws::parse(proof_jwt)?;
    match jws.typ()? {
        Some("dpop+jwt") => {}
        other => return fail(TokenError::InvalidTyp(other.map(clip))),
    }
    let Some(jwk) = jws.header.get("jwk") else {
        return fail(TokenError::InvalidJwk("missing jwk header".into()));
    };
    let key = parse_jwk(jwk)?;
    if key.algorithm() != jws.alg {
        return fail(TokenError::InvalidJwk(format!(
            "jwk curve does not match alg {}",
            jws.alg.jwt_alg()
        )));
    }
    jws.verify_with([&key], false)?;

    let claims = &jws.claims;
    let jti = req_str(claims, "jti")?;
    if jti.is_empty() || jti.chars().count() > MAX_JTI_CHARS {
        return fail(TokenError::InvalidClaim {
            claim: "jti",
            reason: format!("must be 1 to {MAX_JTI_CHARS} characters"),
        });
    }

    let htm = req_str(claims, "htm")?;
    if htm != expect.method {
        return fail(TokenError::HtmMismatch {
            expected: expect.method.to_owned(),
            found: clip(htm),
        });
    }

    let htu = req_str(claims, "htu")?;
    let Some(expected_url) = normalize_htu(expect.url) else {
        return fail(TokenError::Malformed(format!(
            "request URL {} is not an absolute http(s) URL",
            clip(expect.url)
        )));
    };
    let Some(claimed_url) = normalize_htu(htu) else {
        return fail(TokenError::InvalidClaim {
            claim: "htu",
            reason: format!("{} is not an absolute http(s) URL", clip(htu)),
        });
    };
    if claimed_url != expected_url {
        return fail(TokenError::HtuMismatch {
            expected: expected_url,
            found: clip(htu),
        });
    }

    let iat = req_time(claims, "iat")?;
    let tolerance = expect.clock_tolerance_secs;
    if iat > expect.now.saturating_add(tolerance) {
        return fail(TokenError::NotYetValid {
            at: iat,
            now: expect.now,
        });
    }
    // Past this instant the proof is rejected as too old, so its jti need not be kept longer.
    let expires_at = iat
        .saturating_add(expect.max_age_secs)
        .saturating_add(tolerance);
    if expect.now > expires_at {
        return fail(TokenError::Expired {
            exp: iat.saturating_add(expect.max_age_secs),
            now: expect.now,
        });
    }

    let nonce = opt_str(claims, "nonce")?;
    if !expect.nonces.is_empty() && !nonce.is_some_and(|n| expect.nonces.contains(&n)) {
        return fail(TokenError::UseDpopNonce);
    }

    if let Some(access_token) = expect.access_token {
        let ath = req_str(claims, "ath")?;
        if ath != b64url(&Sha256::digest(access_token.as_bytes())) {
            return fail(TokenError::AthMismatch);
        }
    }

    replay.evict_expired(expect.now);
    if !replay.check_and_insert(jti, expires_at) {
        return fail(TokenError::Replayed);
    }

    Ok(DpopProof {
        jkt: jwk_thumbprint(&key),
        jti: jti.to_owned(),
        iat,
        nonce: nonce.map(str::to_owned),
        key,
    })
}

/// Normalises an absolute `http`/`https` URL for `htu` comparison (RFC 9449 §4.3, RFC 3986
/// §6.2.2–6.2.3): query and fragment dropped; scheme and host lowercased; default port removed;
/// empty path → `/`; percent-encodings of unreserved characters decoded and the others
/// uppercased; `.`/`..` segments removed. `None` for anything else (other schemes, userinfo,
/// relative URLs, non-ASCII or whitespace, bad percent-encoding or port).
pub fn normalize_htu(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => 443,
        "http" => 80,
        _ => return None,
    };
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    if !rest.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if authority.contains('@') {
        return None;
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(bracketed) => {
            let (ip, after) = bracketed.split_once(']')?;
            if ip.is_empty()
                || !ip
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
            {
                return None;
            }
            let port = if after.is_empty() {
                None
            } else {
                Some(after.strip_prefix(':')?)
            };
            (format!("[{}]", ip.to_ascii_lowercase()), port)
        }
        None => {
            let (host, port) = match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            };
            let reg_name = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(&b);
            if host.is_empty() || !host.bytes().all(reg_name) {
                return None;
            }
            (host.to_ascii_lowercase(), port)
        }
    };
    let port = match port {
        None | Some("") => None,
        Some(p) if p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().ok()?).filter(|&p| p != default_port)
        }
        Some(_) => return None,
    };
    let path = remove_dot_segments(&normalize_percent(if path.is_empty() {
        "/"
    } else {
        path
    })?);
    Some(match port {
        Some(port) => format!("{scheme}://{host}:{port}{path}"),
        None => format!("{scheme}://{host}{path}"),
    })
}

/// Decodes percent-encoded unreserved characters and uppercases the hex of the others.
fn normalize_percent(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'%' {
            out.push(char::from(b));
            i += 1;
            continue;
        }
        let hex = path.get(i + 1..i + 3)?;
        if !hex.bytes().all(|h| h.is_ascii_hexdigit()) {
            return None;
        }
        let decoded = u8::from_str_radix(hex, 16).ok()?;
        if decoded.is_ascii_alphanumeric() || b"-._~".contains(&decoded) {
            out.push(char::from(decoded));
        } else {
            out.push('%');
            out.push_str(&hex.to_ascii_uppercase());
        }
        i += 3;
    }
    Some(out)
}

/// RFC 3986 §5.2.4 on an absolute path.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    for (i, segment) in segments.iter().enumerate() {
        match *segment {
            "." | ".." => {
                if *segment == ".." {
                    out.pop();
                }
                if i == last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

/// The server nonce for `counter`: base64url(HMAC-SHA256(`secret`, counter as 8 bytes
/// big-endian)).
pub fn dpop_nonce(secret: &[u8; 32], counter: u64) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    b64url(ring::hmac::sign(&key, &counter.to_be_bytes()).as_ref())
}

/// The previous, current and next nonces at `now_ms` (unix milliseconds), with
/// counter = ⌊now_ms / rotation_ms⌋. A server accepts all three and hands out the last one
/// (`DPoP-Nonce`), so a nonce stays valid for two to three rotation periods.
pub fn dpop_nonce_window(secret: &[u8; 32], now_ms: i64, rotation_ms: u64) -> [String; 3] {
    let now_ms = u64::try_from(now_ms).unwrap_or(0);
    let counter = now_ms / rotation_ms.max(1);
    [
        dpop_nonce(secret, counter.saturating_sub(1)),
        dpop_nonce(secret, counter),
        dpop_nonce(secret, counter.saturating_add(1)),
    ]
}
