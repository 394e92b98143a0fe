//! Service-auth JWTs, JWKs, DPoP proofs and access tokens, with real tokens signed here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use stratos_domain::Error;
use stratos_domain::auth::{
    AccessTokenExpectation, DpopExpectation, DpopReplayCache, Jwk, JwkSet, MemoryReplayCache,
    ServiceJwtExpectation, TokenError, dpop_nonce, dpop_nonce_window, jwk_from_public_key,
    jwk_thumbprint, normalize_htu, parse_jwk, unverified_issuer, unverified_subject_and_issuer,
    verify_access_token, verify_dpop_proof, verify_service_jwt,
};
use stratos_domain::crypto::{KeyAlgorithm, Keypair, PublicKey};

const NOW: i64 = 1_700_000_000;
const SERVICE_DID: &str = "did:web:stratos.example";
const ISSUER_DID: &str = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";
const LXM: &str = "zone.stratos.sync.subscribeRecords";
const URL: &str = "https://stratos.example/xrpc/com.atproto.repo.createRecord";
const AS_ISSUER: &str = "https://pds.example";

// ---- helpers ------------------------------------------------------------------------------------

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn b64_json(value: &Value) -> String {
    b64(&serde_json::to_vec(value).unwrap())
}

/// Signs `b64(header).b64(payload)` with `key` (low-S, compact) and returns the compact JWS.
fn sign_jws(key: &Keypair, header: &Value, payload: &Value) -> String {
    let signing_input = format!("{}.{}", b64_json(header), b64_json(payload));
    let sig = key.sign(signing_input.as_bytes()).unwrap();
    format!("{signing_input}.{}", b64(&sig))
}

/// Replaces the signature part of a compact JWS.
fn with_signature(token: &str, sig: &[u8]) -> String {
    let (signing_input, _) = token.rsplit_once('.').unwrap();
    format!("{signing_input}.{}", b64(sig))
}

fn signature_of(token: &str) -> [u8; 64] {
    let (_, sig) = token.rsplit_once('.').unwrap();
    URL_SAFE_NO_PAD.decode(sig).unwrap().try_into().unwrap()
}

/// The same signature with s replaced by n − s (the high-S twin of a low-S signature).
fn high_s(alg: KeyAlgorithm, sig: &[u8; 64]) -> [u8; 64] {
    match alg {
        KeyAlgorithm::P256 => {
            let parsed = p256::ecdsa::Signature::from_slice(sig).unwrap();
            let (r, s) = parsed.split_scalars();
            let flipped = p256::ecdsa::Signature::from_scalars(r, -s).unwrap();
            assert!(flipped.normalize_s().is_some(), "n − s must be high-S");
            flipped.to_bytes().into()
        }
        KeyAlgorithm::K256 => {
            let parsed = k256::ecdsa::Signature::from_slice(sig).unwrap();
            let (r, s) = parsed.split_scalars();
            let flipped = k256::ecdsa::Signature::from_scalars(r, -s).unwrap();
            assert!(flipped.normalize_s().is_some(), "n − s must be high-S");
            flipped.to_bytes().into()
        }
    }
}

/// The ASN.1 DER form of a compact signature.
fn der(alg: KeyAlgorithm, sig: &[u8; 64]) -> Vec<u8> {
    match alg {
        KeyAlgorithm::P256 => p256::ecdsa::Signature::from_slice(sig)
            .unwrap()
            .to_der()
            .as_bytes()
            .to_vec(),
        KeyAlgorithm::K256 => k256::ecdsa::Signature::from_slice(sig)
            .unwrap()
            .to_der()
            .as_bytes()
            .to_vec(),
    }
}

fn token_error<T: std::fmt::Debug>(result: stratos_domain::Result<T>) -> TokenError {
    match result {
        Err(Error::Token(e)) => e,
        other => panic!("expected a token error, got {other:?}"),
    }
}

// ---- service-auth JWT ---------------------------------------------------------------------------

fn service_claims() -> Value {
    json!({
        "iss": ISSUER_DID,
        "aud": SERVICE_DID,
        "exp": NOW + 60,
        "iat": NOW,
        "lxm": LXM,
        "jti": "b1b2c3",
    })
}

fn service_jwt(key: &Keypair, claims: &Value) -> String {
    let header = json!({ "typ": "JWT", "alg": key.public_key().algorithm().jwt_alg() });
    sign_jws(key, &header, claims)
}

fn expect_lxm() -> ServiceJwtExpectation<'static> {
    ServiceJwtExpectation::new(SERVICE_DID, Some(LXM), NOW)
}

fn service_key(alg: KeyAlgorithm) -> (Keypair, Vec<PublicKey>) {
    let key = Keypair::generate(alg);
    let keys = vec![key.public_key().clone()];
    (key, keys)
}

#[test]
fn service_jwt_es256k_valid_is_accepted() {
    let (key, keys) = service_key(KeyAlgorithm::K256);
    let token = service_jwt(&key, &service_claims());
    let claims = verify_service_jwt(&token, &expect_lxm(), &keys).unwrap();
    assert_eq!(claims.iss.as_str(), ISSUER_DID);
    assert_eq!(claims.iss_service, None);
    assert_eq!(claims.aud, SERVICE_DID);
    assert_eq!(claims.exp, NOW + 60);
    assert_eq!(claims.iat, Some(NOW));
    assert_eq!(claims.lxm.as_deref(), Some(LXM));
    assert_eq!(claims.jti.as_deref(), Some("b1b2c3"));
}

#[test]
fn service_jwt_es256_valid_is_accepted_and_keeps_the_service_fragment() {
    let (key, keys) = service_key(KeyAlgorithm::P256);
    let mut claims = service_claims();
    claims["iss"] = json!(format!("{ISSUER_DID}#atproto_labeler"));
    let token = service_jwt(&key, &claims);
    // Keys of the other curve are skipped, not an error.
    let mut all = vec![Keypair::generate(KeyAlgorithm::K256).public_key().clone()];
    all.extend(keys);
    let claims = verify_service_jwt(&token, &expect_lxm(), &all).unwrap();
    assert_eq!(claims.iss.as_str(), ISSUER_DID);
    assert_eq!(claims.iss_service.as_deref(), Some("atproto_labeler"));
    assert_eq!(unverified_issuer(&token).unwrap().as_str(), ISSUER_DID);
}

#[test]
fn service_jwt_expired_beyond_skew_is_rejected() {
    let (key, keys) = service_key(KeyAlgorithm::K256);
    let mut claims = service_claims();
    let expect = expect_lxm();
    claims["exp"] = json!(NOW - expect.max_skew_secs);
    verify_service_jwt(&service_jwt(&key, &claims), &expect, &keys).unwrap();
    claims["exp"] = json!(NOW - expect.max_skew_secs - 1);
    let err = token_error(verify_service_jwt(
        &service_jwt(&key, &claims),
        &expect,
        &keys,
    ));
    assert_eq!(
        err,
        TokenError::Expired {
            exp: NOW - expect.max_skew_secs - 1,
            now: NOW
        }
    );
    assert_eq!(err.code(), "expired");
}

#[test]
fn service_jwt_missing_exp_is_rejected() {
    let (key, keys) = service_key(KeyAlgorithm::K256);
    let mut claims = service_claims();
    claims.as_object_mut().unwrap().remove("exp");
    let err = token_error(verify_service_jwt(
        &service_jwt(&key, &claims),
        &expect_lxm(),
        &keys,
    ));
    assert_eq!(err, TokenError::MissingClaim("exp"));
}

#[test]
fn service_jwt_iat_in_the_future_is_rejected() {
    let (key, keys) = service_key(KeyAlgorithm::K256);
    let mut claims = service_claims();
    claims["iat"] = json!(NOW + 31);
    let err = token_error(verify_service_jwt(
        &service_jwt(&key, &claims),
        &expect_lxm(),
        &keys,
    ));
    assert_eq!(
        err,
        TokenError::NotYetValid {
            at: NOW + 31,
            now: NOW
        }
    );
}

#[test]
fn service_jwt_wrong_aud_is_rejected() {
    let (key, keys) = service_key(KeyAlgorithm::K256);
    let mut claims = service_claims();
    claims["aud"] = json!("did:web:other.example");
    let err = token_error(verify_service_jwt(
        &service_jwt(&key, &claims),
        &expect_lxm(),
        &keys,
    ));
    assert_eq!(err.code(), "invalid_audience");
    assert!(matches!(err, TokenError::InvalidAudience { .. }));
}

#[test]
fn service_jwt_wrong_lxm_is_rejected() {
    let (key, keys) = service_key(KeyAlgorithm::K256);
    let mut claims = service_claims();
    claims["lxm"] = json!("com.atproto.repo.createRecord");
    let err = token_error(verify_service_jwt(
        &service_jwt(&key, &claims),
        &expect_lxm(),
        &keys,
    ));
    assert_eq!(
        err,
        TokenError::InvalidLxm {
            expected: LXM.into(),
            found: Some("com.atproto.repo.createRecord".into())
        }
    );
}

#[test]
fn service_jwt_missing_lxm_where_required_is_rejected() {
    let (key, keys) = service_key(KeyAlgorithm::K256);
    let mut claims = service_claims();
    claims.as_object_mut().unwrap().remove("lxm");
    let err = token_error(verify_service_jwt(
        &service_jwt(&key, &claims),
        &expect_lxm(),
        &keys,
    ));
    assert_eq!(
        err,
        TokenError::InvalidLxm {
            expected: LXM.into(),
            found: None
        }
    );
}

#[test]
fn service_jwt_without_lxm_is_accepted_when_not_required() {
    let (key, keys) = service_key(KeyAlgorithm::K256);
    let mut claims = service_claims();
    claims.as_object_mut().unwrap().remove("lxm");
    let expect = ServiceJwtExpectation::new(SERVICE_DID, None, NOW);
    let claims = verify_service_jwt(&service_jwt(&key, &claims), &expect, &keys).unwrap();
    assert_eq!(claims.lxm, None);
}

#[test]
fn service_jwt_tampered_payload_is_rejected() {
    let (key, keys) = service_key(KeyAlgorithm::K256);
    let token = service_jwt(&key, &service_claims());
    let mut claims = service_claims();
    claims["exp"] = json!(NOW + 3600);
    let (header, _) = token.split_once('.').unwrap();
    let tampered = format!(
        "{header}.{}.{}",
        b64_json(&claims),
        b64(&signature_of(&token))
    );
    let err = token_error(verify_service_jwt(&tampered, &expect_lxm(), &keys));
    assert_eq!(err, TokenError::InvalidSignature);
}

#[test]
fn service_jwt_signed_by_another_key_is_rejected() {
    let (_, keys) = service_key(KeyAlgorithm::K256);
    let impostor = Keypair::generate(KeyAlgorithm::K256);
    let token = service_jwt(&impostor, &service_claims());
    let err = token_error(verify_service_jwt(&token, &expect_lxm(), &keys));
    assert_eq!(err, TokenError::InvalidSignature);
    // No issuer key at all is the same failure.
    let err = token_error(verify_service_jwt(&token, &expect_lxm(), &[]));
    assert_eq!(err.code(), "invalid_signature");
}

#[test]
fn service_jwt_alg_must_match_the_key_curve() {
    let (key, keys) = service_key(KeyAlgorithm::K256);
    // A secp256k1 signature labelled ES256: verified against no key.
    let header = json!({ "typ": "JWT", "alg": "ES256" });
    let token = sign_jws(&key, &header, &service_claims());
    let err = token_error(verify_service_jwt(&token, &expect_lxm(), &keys));
    assert_eq!(err, TokenError::InvalidSignature);
}

#[test]
fn high_s_is_rejected_for_service_jwts_and_accepted_for_dpop() {
    for alg in [KeyAlgorithm::P256, KeyAlgorithm::K256] {
        // Service JWT: strict low-S like @atproto/crypto.
        let (key, keys) = service_key(alg);
        let token = service_jwt(&key, &service_claims());
        verify_service_jwt(&token, &expect_lxm(), &keys).unwrap();
        let flipped = with_signature(&token, &high_s(alg, &signature_of(&token)));
        let err = token_error(verify_service_jwt(&flipped, &expect_lxm(), &keys));
        assert_eq!(err, TokenError::InvalidSignature, "{alg:?}");

        // DPoP: JOSE accepts either form.
        let proof = dpop_proof(&key, &dpop_claims());
        let flipped = with_signature(&proof, &high_s(alg, &signature_of(&proof)));
        let verified = verify_dpop_proof(
            &flipped,
            &DpopExpectation::new("POST", URL, NOW),
            &mut MemoryReplayCache::new(),
        )
        .unwrap();
        assert_eq!(verified.jkt, jwk_thumbprint(key.public_key()), "{alg:?}");
    }
}

#[test]
fn der_signature_is_rejected() {
    let (key, keys) = service_key(KeyAlgorithm::P256);
    let token = service_jwt(&key, &service_claims());
    let der_sig = der(KeyAlgorithm::P256, &signature_of(&token));
    assert_ne!(der_sig.len(), 64);
    let err = token_error(verify_service_jwt(
        &with_signature(&token, &der_sig),
        &expect_lxm(),
        &keys,
    ));
    assert_eq!(err, TokenError::InvalidSignature);
}

#[test]
fn alg_none_with_empty_signature_is_rejected() {
    let (_, keys) = service_key(KeyAlgorithm::K256);
    let token = format!(
        "{}.{}.",
        b64_json(&json!({ "alg": "none", "typ": "JWT" })),
        b64_json(&service_claims())
    );
    let err = token_error(verify_service_jwt(&token, &expect_lxm(), &keys));
    assert_eq!(err, TokenError::UnsupportedAlgorithm("none".into()));
    assert_eq!(err.code(), "unsupported_algorithm");
}

#[test]
fn hs256_rs256_and_missing_alg_are_rejected() {
    let (key, keys) = service_key(KeyAlgorithm::K256);
    for (header, alg) in [
        (json!({ "alg": "HS256", "typ": "JWT" }), "HS256"),
        (json!({ "alg": "RS256", "typ": "JWT" }), "RS256"),
        (json!({ "typ": "JWT" }), "(missing)"),
    ] {
        // Whatever the signature bytes are, the algorithm is refused first.
        let token = sign_jws(&key, &header, &service_claims());
        let err = token_error(verify_service_jwt(&token, &expect_lxm(), &keys));
        assert_eq!(err, TokenError::UnsupportedAlgorithm(alg.into()));
    }
}

#[test]
fn oauth_and_dpop_tokens_are_not_service_tokens() {
    let (key, keys) = service_key(KeyAlgorithm::K256);
    for typ in ["at+jwt", "dpop+jwt", "refresh+jwt"] {
        let header = json!({ "alg": "ES256K", "typ": typ });
        let token = sign_jws(&key, &header, &service_claims());
        let err = token_error(verify_service_jwt(&token, &expect_lxm(), &keys));
        assert_eq!(err, TokenError::InvalidTyp(Some(typ.into())));
    }
}

#[test]
fn service_jwt_issuer_must_be_a_did() {
    let (key, keys) = service_key(KeyAlgorithm::K256);
    let mut claims = service_claims();
    claims["iss"] = json!("https://evil.example");
    let token = service_jwt(&key, &claims);
    let err = token_error(verify_service_jwt(&token, &expect_lxm(), &keys));
    assert!(matches!(err, TokenError::InvalidClaim { claim: "iss", .. }));
    assert!(matches!(
        token_error(unverified_issuer(&token)),
        TokenError::InvalidClaim { claim: "iss", .. }
    ));
}

#[test]
fn malformed_compact_serialisations_are_rejected() {
    let (key, keys) = service_key(KeyAlgorithm::K256);
    let token = service_jwt(&key, &service_claims());
    let mut parts = token.split('.');
    let (h, p, s) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let oversized = format!("{h}.{}.{s}", "A".repeat(9000));
    let not_object = format!("{h}.{}.{s}", b64(b"[1,2]"));
    for bad in [
        format!("{h}.{p}"),
        format!("{h}.{p}.{s}.{s}"),
        format!("{h}=.{p}.{s}"),
        format!("{h}.{p}.{s}=="),
        format!("+{h}.{p}.{s}"),
        oversized,
        not_object,
    ] {
        let err = token_error(verify_service_jwt(&bad, &expect_lxm(), &keys));
        assert!(
            matches!(err, TokenError::Malformed(_)),
            "{bad:.60}: {err:?}"
        );
    }
    let crit = sign_jws(
        &key,
        &json!({ "alg": "ES256K", "crit": ["exp"], "exp": 1 }),
        &service_claims(),
    );
    assert!(matches!(
        token_error(verify_service_jwt(&crit, &expect_lxm(), &keys)),
        TokenError::Malformed(_)
    ));
}

// ---- JWK ----------------------------------------------------------------------------------------

#[test]
fn jwk_thumbprint_matches_a_pinned_value() {
    // The P-256 key of RFC 7515 §A.3. Computed independently (Python hashlib):
    //   canonical = {"crv":"P-256","kty":"EC","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}
    //   base64url(sha256(canonical)) = oKIywvGUpTVTyxMQ3bwIIeQUudfr_CkLMjCE19ECD-U
    const X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
    const Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
    const PINNED: &str = "oKIywvGUpTVTyxMQ3bwIIeQUudfr_CkLMjCE19ECD-U";
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{X}","y":"{Y}"}}"#);
    assert_eq!(b64(&Sha256::digest(canonical.as_bytes())), PINNED);

    // Member order, extra members and whitespace of the input do not matter.
    let jwk: Value = serde_json::from_str(&format!(
        r#"{{ "y": "{Y}", "x": "{X}", "kid": "k1", "kty": "EC", "crv": "P-256", "use": "sig" }}"#
    ))
    .unwrap();
    let key = parse_jwk(&jwk).unwrap();
    assert_eq!(jwk_thumbprint(&key), PINNED);
    assert_eq!(
        jwk_from_public_key(&key),
        json!({ "kty": "EC", "crv": "P-256", "x": X, "y": Y })
    );
}

#[test]
fn jwk_round_trips_for_both_curves() {
    for (alg, crv) in [
        (KeyAlgorithm::P256, "P-256"),
        (KeyAlgorithm::K256, "secp256k1"),
    ] {
        let key = Keypair::generate(alg);
        let jwk = jwk_from_public_key(key.public_key());
        assert_eq!(jwk["crv"], crv);
        assert_eq!(&parse_jwk(&jwk).unwrap(), key.public_key());
        let canonical = format!(
            r#"{{"crv":"{crv}","kty":"EC","x":"{}","y":"{}"}}"#,
            jwk["x"].as_str().unwrap(),
            jwk["y"].as_str().unwrap()
        );
        assert_eq!(
            jwk_thumbprint(key.public_key()),
            b64(&Sha256::digest(canonical.as_bytes()))
        );
    }
}

#[test]
fn unsupported_or_private_jwks_are_rejected() {
    let key = Keypair::generate(KeyAlgorithm::P256);
    let good = jwk_from_public_key(key.public_key());
    let with = |name: &str, value: Value| {
        let mut jwk = good.clone();
        jwk[name] = value;
        jwk
    };
    let mut off_curve = good.clone();
    off_curve["y"] = good["x"].clone();
    for (jwk, why) in [
        (with("d", json!(b64(&key.private_bytes()))), "private"),
        (with("kty", json!("RSA")), "kty"),
        (with("crv", json!("P-384")), "crv"),
        (with("x", json!(b64(&[1u8; 31]))), "x"),
        (with("alg", json!("ES256K")), "alg"),
        (with("use", json!("enc")), "use"),
        (off_curve, "point"),
        (json!("not an object"), "object"),
    ] {
        let err = token_error(parse_jwk(&jwk));
        assert!(
            matches!(&err, TokenError::InvalidJwk(m) if m.contains(why)),
            "{why}: {err:?}"
        );
    }
}

#[test]
fn jwks_skips_unsupported_keys() {
    let a = Keypair::generate(KeyAlgorithm::P256);
    let b = Keypair::generate(KeyAlgorithm::K256);
    let mut ja = jwk_from_public_key(a.public_key());
    ja["kid"] = json!("a");
    let jb = jwk_from_public_key(b.public_key());
    let doc = json!({ "keys": [
        { "kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "rsa" },
        ja,
        { "kty": "oct", "k": "c2VjcmV0" },
        jb,
    ]});
    let set = JwkSet::from_json(&doc.to_string()).unwrap();
    assert_eq!(set.skipped, 2);
    assert_eq!(
        set.keys,
        vec![
            Jwk {
                kid: Some("a".into()),
                key: a.public_key().clone()
            },
            Jwk {
                kid: None,
                key: b.public_key().clone()
            },
        ]
    );
    assert!(matches!(
        token_error(JwkSet::from_json(r#"{"keys":{}}"#)),
        TokenError::Malformed(_)
    ));
}

// ---- DPoP ---------------------------------------------------------------------------------------

fn dpop_claims() -> Value {
    json!({
        "jti": "proof-1",
        "htm": "POST",
        "htu": URL,
        "iat": NOW,
    })
}

fn dpop_header(key: &Keypair) -> Value {
    json!({
        "typ": "dpop+jwt",
        "alg": key.public_key().algorithm().jwt_alg(),
        "jwk": jwk_from_public_key(key.public_key()),
    })
}

fn dpop_proof(key: &Keypair, claims: &Value) -> String {
    sign_jws(key, &dpop_header(key), claims)
}

fn verify_dpop(proof: &str, expect: &DpopExpectation<'_>) -> stratos_domain::Result<String> {
    verify_dpop_proof(proof, expect, &mut MemoryReplayCache::new()).map(|p| p.jkt)
}

fn dpop_err_with(key: &Keypair, claims: &Value, expect: &DpopExpectation<'_>) -> TokenError {
    token_error(verify_dpop(&dpop_proof(key, claims), expect))
}

fn post() -> DpopExpectation<'static> {
    DpopExpectation::new("POST", URL, NOW)
}

#[test]
fn dpop_valid_proof_is_accepted() {
    for alg in [KeyAlgorithm::P256, KeyAlgorithm::K256] {
        let key = Keypair::generate(alg);
        let mut cache = MemoryReplayCache::new();
        let proof =
            verify_dpop_proof(&dpop_proof(&key, &dpop_claims()), &post(), &mut cache).unwrap();
        assert_eq!(proof.jkt, jwk_thumbprint(key.public_key()));
        assert_eq!(&proof.key, key.public_key());
        assert_eq!(proof.jti, "proof-1");
        assert_eq!(proof.iat, NOW);
        assert_eq!(proof.nonce, None);
        assert_eq!(cache.len(), 1);
    }
}

#[test]
fn dpop_wrong_or_missing_typ_is_rejected() {
    let key = Keypair::generate(KeyAlgorithm::P256);
    let mut header = dpop_header(&key);
    header["typ"] = json!("JWT");
    let err = token_error(verify_dpop(
        &sign_jws(&key, &header, &dpop_claims()),
        &post(),
    ));
    assert_eq!(err, TokenError::InvalidTyp(Some("JWT".into())));
    header.as_object_mut().unwrap().remove("typ");
    let err = token_error(verify_dpop(
        &sign_jws(&key, &header, &dpop_claims()),
        &post(),
    ));
    assert_eq!(err, TokenError::InvalidTyp(None));
}

#[test]
fn dpop_missing_jwk_is_rejected() {
    let key = Keypair::generate(KeyAlgorithm::P256);
    let mut header = dpop_header(&key);
    header.as_object_mut().unwrap().remove("jwk");
    let err = token_error(verify_dpop(
        &sign_jws(&key, &header, &dpop_claims()),
        &post(),
    ));
    assert_eq!(err, TokenError::InvalidJwk("missing jwk header".into()));
}

#[test]
fn dpop_private_jwk_is_rejected() {
    let key = Keypair::generate(KeyAlgorithm::P256);
    let mut header = dpop_header(&key);
    header["jwk"]["d"] = json!(b64(&key.private_bytes()));
    let err = token_error(verify_dpop(
        &sign_jws(&key, &header, &dpop_claims()),
        &post(),
    ));
    assert!(
        matches!(&err, TokenError::InvalidJwk(m) if m.contains("private")),
        "{err:?}"
    );
}

#[test]
fn dpop_jwk_curve_must_match_alg() {
    let key = Keypair::generate(KeyAlgorithm::K256);
    let mut header = dpop_header(&key);
    header["alg"] = json!("ES256");
    let err = token_error(verify_dpop(
        &sign_jws(&key, &header, &dpop_claims()),
        &post(),
    ));
    assert!(
        matches!(&err, TokenError::InvalidJwk(m) if m.contains("alg")),
        "{err:?}"
    );
}

#[test]
fn dpop_signed_by_another_key_than_its_jwk_is_rejected() {
    let key = Keypair::generate(KeyAlgorithm::P256);
    let other = Keypair::generate(KeyAlgorithm::P256);
    let proof = sign_jws(&other, &dpop_header(&key), &dpop_claims());
    assert_eq!(
        token_error(verify_dpop(&proof, &post())),
        TokenError::InvalidSignature
    );
}

#[test]
fn dpop_wrong_htm_is_rejected() {
    let key = Keypair::generate(KeyAlgorithm::P256);
    for method in ["GET", "post"] {
        let mut claims = dpop_claims();
        claims["htm"] = json!(method);
        let err = dpop_err_with(&key, &claims, &post());
        assert_eq!(
            err,
            TokenError::HtmMismatch {
                expected: "POST".into(),
                found: method.into()
            }
        );
    }
}

#[test]
fn dpop_wrong_htu_is_rejected() {
    let key = Keypair::generate(KeyAlgorithm::P256);
    for htu in [
        "https://stratos.example/xrpc/com.atproto.repo.deleteRecord",
        "https://evil.example/xrpc/com.atproto.repo.createRecord",
        "http://stratos.example/xrpc/com.atproto.repo.createRecord",
        "https://stratos.example:8443/xrpc/com.atproto.repo.createRecord",
        "https://stratos.example/xrpc/com.atproto.repo.createrecord",
    ] {
        let mut claims = dpop_claims();
        claims["htu"] = json!(htu);
        let err = dpop_err_with(&key, &claims, &post());
        assert!(
            matches!(&err, TokenError::HtuMismatch { found, .. } if found == htu),
            "{htu}: {err:?}"
        );
        assert_eq!(err.code(), "htu_mismatch");
    }
}

#[test]
fn dpop_htu_ignores_query_fragment_and_normalises() {
    let key = Keypair::generate(KeyAlgorithm::P256);
    for htu in [
        "https://stratos.example/xrpc/com.atproto.repo.createRecord?x=1#frag",
        "HTTPS://Stratos.Example:443/xrpc/com.atproto.repo.createRecord",
        "https://stratos.example/xrpc/./%63om.atproto.repo.createRecord",
    ] {
        let mut claims = dpop_claims();
        claims["htu"] = json!(htu);
        let expect = DpopExpectation::new(
            "POST",
            "https://stratos.example/xrpc/com.atproto.repo.createRecord?validate=true",
            NOW,
        );
        verify_dpop(&dpop_proof(&key, &claims), &expect).unwrap_or_else(|e| panic!("{htu}: {e}"));
    }
    assert_eq!(
        normalize_htu("http://Host:80").as_deref(),
        Some("http://host/")
    );
    assert_eq!(
        normalize_htu("https://[::1]:8443/a/b/../c%2f?q").as_deref(),
        Some("https://[::1]:8443/a/c%2F")
    );
    assert_eq!(normalize_htu("https://user@host/"), None);
    assert_eq!(normalize_htu("ftp://host/"), None);
    assert_eq!(normalize_htu("/relative"), None);
}

#[test]
fn dpop_iat_too_old_is_rejected() {
    let key = Keypair::generate(KeyAlgorithm::P256);
    let expect = post();
    let oldest = NOW - expect.max_age_secs - expect.clock_tolerance_secs;
    let mut claims = dpop_claims();
    claims["iat"] = json!(oldest);
    verify_dpop(&dpop_proof(&key, &claims), &expect).unwrap();
    claims["iat"] = json!(oldest - 1);
    let err = dpop_err_with(&key, &claims, &expect);
    assert_eq!(
        err,
        TokenError::Expired {
            exp: oldest - 1 + expect.max_age_secs,
            now: NOW
        }
    );
}

#[test]
fn dpop_iat_in_the_future_is_rejected() {
    let key = Keypair::generate(KeyAlgorithm::P256);
    let expect = post();
    let mut claims = dpop_claims();
    claims["iat"] = json!(NOW + expect.clock_tolerance_secs);
    verify_dpop(&dpop_proof(&key, &claims), &expect).unwrap();
    claims["iat"] = json!(NOW + expect.clock_tolerance_secs + 1);
    let err = dpop_err_with(&key, &claims, &expect);
    assert_eq!(
        err,
        TokenError::NotYetValid {
            at: NOW + expect.clock_tolerance_secs + 1,
            now: NOW
        }
    );
}

#[test]
fn dpop_missing_iat_is_rejected() {
    let key = Keypair::generate(KeyAlgorithm::P256);
    let mut claims = dpop_claims();
    claims.as_object_mut().unwrap().remove("iat");
    assert_eq!(
        dpop_err_with(&key, &claims, &post()),
        TokenError::MissingClaim("iat")
    );
}

#[test]
fn dpop_missing_or_bad_jti_is_rejected() {
    let key = Keypair::generate(KeyAlgorithm::P256);
    let mut claims = dpop_claims();
    claims.as_object_mut().unwrap().remove("jti");
    assert_eq!(
        dpop_err_with(&key, &claims, &post()),
        TokenError::MissingClaim("jti")
    );
    for jti in [String::new(), "j".repeat(257)] {
        claims["jti"] = json!(jti);
        assert!(matches!(
            dpop_err_with(&key, &claims, &post()),
            TokenError::InvalidClaim { claim: "jti", .. }
        ));
    }
}

#[test]
fn dpop_replayed_jti_is_rejected() {
    let key = Keypair::generate(KeyAlgorithm::P256);
    let proof = dpop_proof(&key, &dpop_claims());
    let mut cache = MemoryReplayCache::new();
    verify_dpop_proof(&proof, &post(), &mut cache).unwrap();
    let err = token_error(verify_dpop_proof(&proof, &post(), &mut cache));
    assert_eq!(err, TokenError::Replayed);
    // A fresh jti from the same key is fine.
    let mut claims = dpop_claims();
    claims["jti"] = json!("proof-2");
    verify_dpop_proof(&dpop_proof(&key, &claims), &post(), &mut cache).unwrap();
}

#[test]
fn memory_replay_cache_forgets_expired_entries_only() {
    let mut cache = MemoryReplayCache::new();
    assert!(cache.check_and_insert("a", NOW));
    assert!(cache.check_and_insert("b", NOW + 10));
    assert!(!cache.check_and_insert("a", NOW));
    cache.evict_expired(NOW);
    assert_eq!(cache.len(), 2);
    cache.evict_expired(NOW + 1);
    assert_eq!(cache.len(), 1);
    assert!(cache.check_and_insert("a", NOW + 20));
    assert!(!cache.check_and_insert("b", NOW + 20));
}

const SECRET: [u8; 32] = [7u8; 32];

#[test]
fn dpop_nonce_required_and_missing_is_use_dpop_nonce() {
    let key = Keypair::generate(KeyAlgorithm::P256);
    let window = dpop_nonce_window(&SECRET, NOW * 1000, 60_000);
    let nonces: Vec<&str> = window.iter().map(String::as_str).collect();
    let expect = post().with_nonces(&nonces);
    let err = dpop_err_with(&key, &dpop_claims(), &expect);
    assert_eq!(err, TokenError::UseDpopNonce);
    assert_eq!(err.code(), "use_dpop_nonce");

    let mut claims = dpop_claims();
    claims["nonce"] = json!(window[2]);
    let mut cache = MemoryReplayCache::new();
    let proof = verify_dpop_proof(&dpop_proof(&key, &claims), &expect, &mut cache).unwrap();
    assert_eq!(proof.nonce.as_deref(), Some(window[2].as_str()));
}

#[test]
fn dpop_stale_nonce_is_use_dpop_nonce() {
    let key = Keypair::generate(KeyAlgorithm::P256);
    let window = dpop_nonce_window(&SECRET, NOW * 1000, 60_000);
    let nonces: Vec<&str> = window.iter().map(String::as_str).collect();
    let counter = u64::try_from(NOW * 1000 / 60_000).unwrap();
    let mut claims = dpop_claims();
    claims["nonce"] = json!(dpop_nonce(&SECRET, counter - 2));
    let err = dpop_err_with(&key, &claims, &post().with_nonces(&nonces));
    assert_eq!(err, TokenError::UseDpopNonce);
    // Another server's secret gives nonces this one does not know.
    claims["nonce"] = json!(dpop_nonce(&[8u8; 32], counter));
    let err = dpop_err_with(&key, &claims, &post().with_nonces(&nonces));
    assert_eq!(err, TokenError::UseDpopNonce);
}

#[test]
fn dpop_missing_ath_with_access_token_is_rejected() {
    let key = Keypair::generate(KeyAlgorithm::P256);
    let err = dpop_err_with(&key, &dpop_claims(), &post().with_access_token("token-abc"));
    assert_eq!(err, TokenError::MissingClaim("ath"));
}

#[test]
fn dpop_wrong_ath_is_rejected_and_right_ath_accepted() {
    let key = Keypair::generate(KeyAlgorithm::P256);
    let expect = post().with_access_token("token-abc");
    let mut claims = dpop_claims();
    claims["ath"] = json!(b64(&Sha256::digest(b"token-xyz")));
    assert_eq!(
        dpop_err_with(&key, &claims, &expect),
        TokenError::AthMismatch
    );
    claims["ath"] = json!(b64(&Sha256::digest(b"token-abc")));
    verify_dpop(&dpop_proof(&key, &claims), &expect).unwrap();
}

#[test]
fn nonce_window_keeps_a_nonce_for_about_two_rotations() {
    let period_start = 28_333_334_i64 * 60_000;
    let t = period_start + 30_000; // 30 s into a rotation period
    let current = dpop_nonce(&SECRET, u64::try_from(t / 60_000).unwrap());
    assert_eq!(dpop_nonce_window(&SECRET, t, 60_000)[1], current);
    for dt in [-59_000, -30_000, 0, 30_000, 59_000, 89_999] {
        assert!(
            dpop_nonce_window(&SECRET, t + dt, 60_000).contains(&current),
            "{dt}"
        );
    }
    for dt in [-90_001, 90_000, 120_000, 2 * 60_000 + 59_000] {
        assert!(
            !dpop_nonce_window(&SECRET, t + dt, 60_000).contains(&current),
            "{dt}"
        );
    }
    // HMAC-SHA256 → 32 bytes → 43 base64url characters; distinct per counter.
    assert_eq!(current.len(), 43);
    assert_ne!(dpop_nonce(&SECRET, 1), dpop_nonce(&SECRET, 2));
}

// ---- access tokens ------------------------------------------------------------------------------

struct AuthServer {
    key: Keypair,
    jwks: Vec<Jwk>,
}

fn auth_server() -> AuthServer {
    let key = Keypair::generate(KeyAlgorithm::P256);
    let jwks = vec![
        Jwk {
            kid: Some("other".into()),
            key: Keypair::generate(KeyAlgorithm::P256).public_key().clone(),
        },
        Jwk {
            kid: Some("k1".into()),
            key: key.public_key().clone(),
        },
    ];
    AuthServer { key, jwks }
}

const USER_DID: &str = "did:plc:user5sr3lsnxvt7v5d4xhyzc";
const JKT: &str = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";

fn at_claims() -> Value {
    json!({
        "iss": AS_ISSUER,
        "sub": USER_DID,
        "aud": "did:web:pds.example",
        "exp": NOW + 300,
        "iat": NOW,
        "scope": "atproto transition:generic",
        "client_id": "https://app.example/client-metadata.json",
        "cnf": { "jkt": JKT },
    })
}

fn access_token(key: &Keypair, kid: Option<&str>, claims: &Value) -> String {
    let mut header = json!({ "typ": "at+jwt", "alg": "ES256" });
    if let Some(kid) = kid {
        header["kid"] = json!(kid);
    }
    sign_jws(key, &header, claims)
}

fn at_expect() -> AccessTokenExpectation<'static> {
    AccessTokenExpectation::new(AS_ISSUER, NOW)
}

fn at_err(server: &AuthServer, claims: &Value, expect: &AccessTokenExpectation<'_>) -> TokenError {
    let token = access_token(&server.key, Some("k1"), claims);
    token_error(verify_access_token(&token, expect, &server.jwks, JKT))
}

#[test]
fn access_token_valid_is_accepted() {
    let server = auth_server();
    let expect = AccessTokenExpectation {
        audience: Some("did:web:pds.example"),
        required_scope: Some("transition:generic"),
        ..at_expect()
    };
    for kid in [Some("k1"), None] {
        let token = access_token(&server.key, kid, &at_claims());
        let claims = verify_access_token(&token, &expect, &server.jwks, JKT).unwrap();
        assert_eq!(claims.sub.as_str(), USER_DID);
        assert_eq!(claims.iss, AS_ISSUER);
        assert_eq!(claims.aud, vec!["did:web:pds.example".to_owned()]);
        assert_eq!(claims.scope, "atproto transition:generic");
        assert_eq!(claims.exp, NOW + 300);
        assert_eq!(claims.jkt, JKT);
        assert_eq!(
            claims.client_id.as_deref(),
            Some("https://app.example/client-metadata.json")
        );
    }
}

#[test]
fn access_token_subject_and_issuer_can_be_read_before_the_keys_are_known() {
    let server = auth_server();
    let token = access_token(&server.key, Some("k1"), &at_claims());
    let (sub, iss) = unverified_subject_and_issuer(&token).unwrap();
    assert_eq!(sub.as_str(), USER_DID);
    assert_eq!(iss, AS_ISSUER);
    let mut no_did = at_claims();
    no_did["sub"] = json!("alice");
    let token = access_token(&server.key, None, &no_did);
    assert_eq!(
        token_error(unverified_subject_and_issuer(&token)).code(),
        "invalid_claim"
    );
    let mut no_iss = at_claims();
    no_iss.as_object_mut().unwrap().remove("iss");
    let token = access_token(&server.key, None, &no_iss);
    assert_eq!(
        token_error(unverified_subject_and_issuer(&token)).code(),
        "missing_claim"
    );
}

#[test]
fn access_token_bound_to_a_real_dpop_proof() {
    // End to end: the proof's thumbprint is what cnf.jkt must carry.
    let server = auth_server();
    let client = Keypair::generate(KeyAlgorithm::P256);
    let mut claims = at_claims();
    claims["cnf"]["jkt"] = json!(jwk_thumbprint(client.public_key()));
    let token = access_token(&server.key, Some("k1"), &claims);
    let mut proof_claims = dpop_claims();
    proof_claims["ath"] = json!(b64(&Sha256::digest(token.as_bytes())));
    let proof = verify_dpop_proof(
        &dpop_proof(&client, &proof_claims),
        &post().with_access_token(&token),
        &mut MemoryReplayCache::new(),
    )
    .unwrap();
    let claims = verify_access_token(&token, &at_expect(), &server.jwks, &proof.jkt).unwrap();
    assert_eq!(claims.sub.as_str(), USER_DID);
}

#[test]
fn access_token_signed_by_an_unknown_key_is_rejected_d11() {
    let server = auth_server();
    let forger = Keypair::generate(KeyAlgorithm::P256);
    // No kid: every key is tried, none verifies.
    let token = access_token(&forger, None, &at_claims());
    assert_eq!(
        token_error(verify_access_token(&token, &at_expect(), &server.jwks, JKT)),
        TokenError::InvalidSignature
    );
    // A kid of the set, but signed by another key.
    let token = access_token(&forger, Some("k1"), &at_claims());
    assert_eq!(
        token_error(verify_access_token(&token, &at_expect(), &server.jwks, JKT)),
        TokenError::InvalidSignature
    );
    // A kid not in the set.
    let token = access_token(&forger, Some("forged"), &at_claims());
    assert_eq!(
        token_error(verify_access_token(&token, &at_expect(), &server.jwks, JKT)),
        TokenError::UnknownKey("forged".into())
    );
    // An unsigned token.
    let unsigned = format!(
        "{}.{}.",
        b64_json(&json!({ "alg": "none" })),
        b64_json(&at_claims())
    );
    assert_eq!(
        token_error(verify_access_token(
            &unsigned,
            &at_expect(),
            &server.jwks,
            JKT
        )),
        TokenError::UnsupportedAlgorithm("none".into())
    );
}

#[test]
fn access_token_wrong_issuer_is_rejected() {
    let server = auth_server();
    let mut claims = at_claims();
    claims["iss"] = json!("https://evil.example");
    assert_eq!(
        at_err(&server, &claims, &at_expect()),
        TokenError::InvalidIssuer {
            expected: AS_ISSUER.into(),
            found: "https://evil.example".into()
        }
    );
}

#[test]
fn access_token_expired_is_rejected() {
    let server = auth_server();
    let mut claims = at_claims();
    claims["exp"] = json!(NOW - 31);
    assert_eq!(
        at_err(&server, &claims, &at_expect()),
        TokenError::Expired {
            exp: NOW - 31,
            now: NOW
        }
    );
}

#[test]
fn access_token_missing_cnf_jkt_is_rejected() {
    let server = auth_server();
    let mut claims = at_claims();
    claims["cnf"] = json!({});
    assert_eq!(
        at_err(&server, &claims, &at_expect()),
        TokenError::MissingClaim("cnf.jkt")
    );
    claims.as_object_mut().unwrap().remove("cnf");
    assert_eq!(
        at_err(&server, &claims, &at_expect()),
        TokenError::MissingClaim("cnf.jkt")
    );
}

#[test]
fn access_token_bound_to_another_key_is_key_binding_mismatch() {
    let server = auth_server();
    let token = access_token(&server.key, Some("k1"), &at_claims());
    let other_jkt = jwk_thumbprint(Keypair::generate(KeyAlgorithm::P256).public_key());
    let err = token_error(verify_access_token(
        &token,
        &at_expect(),
        &server.jwks,
        &other_jkt,
    ));
    assert_eq!(err, TokenError::KeyBindingMismatch);
    assert_eq!(err.code(), "key_binding_mismatch");
}

#[test]
fn access_token_missing_required_scope_is_rejected() {
    let server = auth_server();
    let expect = AccessTokenExpectation {
        required_scope: Some("repo:zone.stratos.feed.post"),
        ..at_expect()
    };
    assert_eq!(
        at_err(&server, &at_claims(), &expect),
        TokenError::InsufficientScope {
            required: "repo:zone.stratos.feed.post".into()
        }
    );
    // `atproto` is always required.
    let mut claims = at_claims();
    claims["scope"] = json!("transition:generic");
    assert_eq!(
        at_err(&server, &claims, &at_expect()),
        TokenError::InsufficientScope {
            required: "atproto".into()
        }
    );
}

#[test]
fn access_token_audience_mismatch_is_rejected() {
    let server = auth_server();
    let expect = AccessTokenExpectation {
        audience: Some("did:web:stratos.example"),
        ..at_expect()
    };
    let err = at_err(&server, &at_claims(), &expect);
    assert_eq!(
        err,
        TokenError::InvalidAudience {
            expected: "did:web:stratos.example".into()
        }
    );
    // An array containing the audience is accepted.
    let mut claims = at_claims();
    claims["aud"] = json!(["did:web:pds.example", "did:web:stratos.example"]);
    let token = access_token(&server.key, Some("k1"), &claims);
    verify_access_token(&token, &expect, &server.jwks, JKT).unwrap();
}

#[test]
fn access_token_sub_must_be_a_did_and_typ_an_access_token_type() {
    let server = auth_server();
    let mut claims = at_claims();
    claims["sub"] = json!("alice.example");
    assert!(matches!(
        at_err(&server, &claims, &at_expect()),
        TokenError::InvalidClaim { claim: "sub", .. }
    ));
    let header = json!({ "typ": "dpop+jwt", "alg": "ES256", "kid": "k1" });
    let token = sign_jws(&server.key, &header, &at_claims());
    assert_eq!(
        token_error(verify_access_token(&token, &at_expect(), &server.jwks, JKT)),
        TokenError::InvalidTyp(Some("dpop+jwt".into()))
    );
    let header = json!({ "typ": "JWT", "alg": "ES256", "kid": "k1" });
    let token = sign_jws(&server.key, &header, &at_claims());
    verify_access_token(&token, &at_expect(), &server.jwks, JKT).unwrap();
}

#[test]
fn access_token_with_high_s_signature_is_accepted() {
    // Authorization servers sign through JOSE libraries, which do not normalise S.
    let server = auth_server();
    let token = access_token(&server.key, Some("k1"), &at_claims());
    let flipped = with_signature(&token, &high_s(KeyAlgorithm::P256, &signature_of(&token)));
    verify_access_token(&flipped, &at_expect(), &server.jwks, JKT).unwrap();
}
