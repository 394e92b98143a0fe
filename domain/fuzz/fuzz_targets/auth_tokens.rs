//! Service-auth JWTs, DPoP proofs, DPoP-bound access tokens, JWKS documents and `htu` URLs.
//! Every one of them arrives from the network, so nothing here may panic.
//!
//! Raw mode (byte 0 even) hands the rest, as text, to every parser and verifier. Signed mode
//! (byte 0 odd) reaches the claim checks behind the signature: the rest is split at the first
//! NUL into header and payload bytes, which are signed with a fixed key (for DPoP the key's JWK
//! goes into the header when bit 1 is set), then verified; whatever verifies must meet the
//! expectation it was verified against.
#![no_main]

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use stratos_domain::auth::{
    AccessTokenExpectation, DpopExpectation, Jwk, JwkSet, MemoryReplayCache, ServiceJwtExpectation,
    jwk_from_public_key, jwk_thumbprint, normalize_htu, parse_jwk, unverified_issuer,
    unverified_subject_and_issuer, verify_access_token, verify_dpop_proof, verify_service_jwt,
};
use stratos_domain::crypto::{KeyAlgorithm, Keypair, PublicKey};

const NOW: i64 = 1_700_000_000;
const AUD: &str = "did:web:nerv.tokyo.jp";
const LXM: &str = "zone.stratos.sync.subscribeRecords";
const URL: &str = "https://nerv.tokyo.jp/xrpc/com.atproto.repo.createRecord";
const ISSUER: &str = "https://auth.example.com";
const ACCESS_TOKEN: &str = "an.access.token";
const NONCES: &[&str] = &["nonce-a", "nonce-b"];

struct Keys {
    pairs: [Keypair; 2],
    public: Vec<PublicKey>,
    jwks: Vec<Jwk>,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let pairs = [
            Keypair::from_private_bytes(KeyAlgorithm::P256, &[7; 32]).expect("P-256 key"),
            Keypair::from_private_bytes(KeyAlgorithm::K256, &[9; 32]).expect("K-256 key"),
        ];
        let public: Vec<PublicKey> = pairs.iter().map(|k| k.public_key().clone()).collect();
        let jwks = public
            .iter()
            .map(|k| Jwk {
                kid: Some(format!("{:?}", k.algorithm())),
                key: k.clone(),
            })
            .collect();
        Keys {
            pairs,
            public,
            jwks,
        }
    })
}

fuzz_target!(|input: &[u8]| {
    let [flags, rest @ ..] = input else {
        return;
    };
    if flags & 1 == 0 {
        raw(&String::from_utf8_lossy(rest));
    } else {
        signed(*flags, rest);
    }
});

fn raw(text: &str) {
    let k = keys();
    let _ = unverified_issuer(text);
    let _ = unverified_subject_and_issuer(text);
    let _ = verify_service_jwt(
        text,
        &ServiceJwtExpectation::new(AUD, Some(LXM), NOW),
        &k.public,
    );
    let dpop = DpopExpectation::new("POST", URL, NOW)
        .with_access_token(ACCESS_TOKEN)
        .with_nonces(NONCES);
    let _ = verify_dpop_proof(text, &dpop, &mut MemoryReplayCache::new());
    let _ = verify_access_token(
        text,
        &AccessTokenExpectation::new(ISSUER, NOW),
        &k.jwks,
        "jkt",
    );
    if let Some(url) = normalize_htu(text) {
        // Normalisation is idempotent, or two spellings of one URL could compare unequal.
        assert_eq!(
            normalize_htu(&url).as_deref(),
            Some(url.as_str()),
            "{text:?}"
        );
    }
    if let Ok(set) = JwkSet::from_json(text) {
        for jwk in &set.keys {
            let _ = jwk.thumbprint();
        }
    }
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text)
        && let Ok(key) = parse_jwk(&value)
    {
        // A parsed key written back as a JWK parses to the same key.
        assert_eq!(
            parse_jwk(&jwk_from_public_key(&key)).expect("JWK round trip"),
            key
        );
    }
}

fn signed(flags: u8, rest: &[u8]) {
    let k = keys();
    let (header, payload) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let key = &k.pairs[usize::from(flags >> 2 & 1)];
    let alg = key.public_key().algorithm().jwt_alg();
    let mut header = header.to_vec();
    // Bit 1: make the header usable (alg of the key, DPoP typ and jwk) so the fuzzer spends its
    // time on the payload; the header's own members are kept when it is a JSON object.
    if flags & 2 != 0 {
        let mut object = match serde_json::from_slice::<serde_json::Value>(&header) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
        object.insert("alg".into(), alg.into());
        if flags >> 3 & 3 == 1 {
            object.insert("typ".into(), "dpop+jwt".into());
            object.insert("jwk".into(), jwk_from_public_key(key.public_key()));
        }
        header = serde_json::to_vec(&object).expect("header serialises");
    }
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(&header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let sig = key.sign(signing_input.as_bytes()).expect("signs");
    let token = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig));

    match flags >> 3 & 3 {
        0 => {
            let expect = ServiceJwtExpectation::new(AUD, Some(LXM), NOW);
            if let Ok(claims) = verify_service_jwt(&token, &expect, &k.public) {
                assert_eq!(claims.aud, AUD);
                assert_eq!(claims.lxm.as_deref(), Some(LXM));
                assert!(claims.exp.saturating_add(expect.max_skew_secs) >= NOW);
                assert!(
                    claims
                        .iat
                        .is_none_or(|iat| iat <= NOW + expect.max_skew_secs)
                );
                assert_eq!(
                    unverified_issuer(&token).expect("verified token has an issuer"),
                    claims.iss
                );
            }
        }
        1 => {
            let expect = DpopExpectation::new("POST", URL, NOW)
                .with_access_token(ACCESS_TOKEN)
                .with_nonces(NONCES);
            let mut cache = MemoryReplayCache::new();
            if let Ok(proof) = verify_dpop_proof(&token, &expect, &mut cache) {
                assert_eq!(proof.jkt, jwk_thumbprint(key.public_key()));
                assert!(proof.nonce.as_deref().is_some_and(|n| NONCES.contains(&n)));
                assert!(proof.iat <= NOW + expect.clock_tolerance_secs);
                // The same proof twice is a replay.
                assert!(verify_dpop_proof(&token, &expect, &mut cache).is_err());
            }
        }
        _ => {
            let mut expect = AccessTokenExpectation::new(ISSUER, NOW);
            expect.audience = Some(AUD);
            let jkt = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
            if let Ok(claims) = verify_access_token(&token, &expect, &k.jwks, jkt) {
                assert_eq!(claims.iss, ISSUER);
                assert_eq!(claims.jkt, jkt);
                assert!(claims.aud.iter().any(|a| a == AUD));
                assert!(claims.scope.split(' ').any(|s| s == "atproto"));
                assert!(claims.exp.saturating_add(expect.skew_secs) >= NOW);
            }
        }
    }
}
