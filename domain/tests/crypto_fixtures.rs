//! Crypto against the atproto vectors, plus signing properties.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use base64::Engine;
use stratos_domain::crypto::{KeyAlgorithm, Keypair, PublicKey, Signer};

fn b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(s.trim_end_matches('='))
        .unwrap_or_else(|e| panic!("fixture base64 {s:?}: {e}"))
}

fn alg(name: &str) -> KeyAlgorithm {
    match name {
        "ES256" => KeyAlgorithm::P256,
        "ES256K" => KeyAlgorithm::K256,
        other => panic!("unknown algorithm {other}"),
    }
}

#[test]
fn signature_fixtures_give_the_expected_verdict() {
    let cases = common::json("atproto-interop/crypto/signature-fixtures.json");
    let cases = cases.as_array().unwrap();
    assert!(cases.len() >= 6);
    let mut failures = Vec::new();
    for case in cases {
        let comment = case["comment"].as_str().unwrap();
        let msg = b64(case["messageBase64"].as_str().unwrap());
        let sig = b64(case["signatureBase64"].as_str().unwrap());
        let expected = case["validSignature"].as_bool().unwrap();
        let alg = alg(case["algorithm"].as_str().unwrap());
        let from_did = PublicKey::from_did_key(case["publicKeyDid"].as_str().unwrap()).unwrap();
        let from_mb =
            PublicKey::from_multibase(alg, case["publicKeyMultibase"].as_str().unwrap()).unwrap();
        assert_eq!(from_did.algorithm(), alg, "{comment}: curve from did:key");
        assert_eq!(
            from_did, from_mb,
            "{comment}: did:key and multibase name the same key"
        );
        for (form, key) in [("did:key", &from_did), ("multibase", &from_mb)] {
            let verdict = key.verify(&msg, &sig).is_ok();
            if verdict != expected {
                failures.push(format!(
                    "{comment} ({form}): expected {expected}, got {verdict}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "signature fixture mismatches:\n{}",
        failures.join("\n")
    );
}

fn did_key_fixture(file: &str, alg: KeyAlgorithm) -> usize {
    let cases = common::json(file);
    let cases = cases.as_array().unwrap();
    for case in cases {
        let private = if let Some(hex) = case.get("privateKeyBytesHex") {
            hex_decode(hex.as_str().unwrap())
        } else {
            let b58 = case["privateKeyBytesBase58"].as_str().unwrap();
            multibase::decode(format!("z{b58}")).unwrap().1
        };
        let expected = case["publicDidKey"].as_str().unwrap();
        let key = Keypair::from_private_bytes(alg, &private).unwrap();
        assert_eq!(key.did_key(), expected);
        assert_eq!(key.private_bytes().as_slice(), private.as_slice());
        let parsed = PublicKey::from_did_key(expected).unwrap();
        assert_eq!(parsed.algorithm(), alg);
        assert_eq!(&parsed, key.public_key());
        assert_eq!(parsed.to_did_key(), expected);
    }
    cases.len()
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn w3c_did_key_fixtures() {
    assert!(
        did_key_fixture(
            "atproto-interop/crypto/w3c_didkey_P256.json",
            KeyAlgorithm::P256
        ) >= 1
    );
    assert!(
        did_key_fixture(
            "atproto-interop/crypto/w3c_didkey_K256.json",
            KeyAlgorithm::K256
        ) >= 1
    );
}

/// The curve order n of each curve, big-endian, to build the high-S twin (r, n − s).
fn order(alg: KeyAlgorithm) -> [u8; 32] {
    let hex = match alg {
        KeyAlgorithm::P256 => "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551",
        KeyAlgorithm::K256 => "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141",
    };
    hex_decode(hex).try_into().unwrap()
}

fn high_s_twin(alg: KeyAlgorithm, sig: &[u8; 64]) -> [u8; 64] {
    let n = order(alg);
    let mut out = *sig;
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = i16::from(n[i]) - i16::from(sig[32 + i]) - borrow;
        borrow = i16::from(d < 0);
        out[32 + i] = (d + 256 * borrow) as u8;
    }
    out
}

#[test]
fn sign_verify_round_trip_is_low_s_for_both_curves() {
    for alg in [KeyAlgorithm::P256, KeyAlgorithm::K256] {
        let key = Keypair::generate(alg);
        assert_eq!(Signer::algorithm(&key), alg);
        let other = Keypair::generate(alg);
        for i in 0..200u32 {
            let msg = format!("message {i}");
            let sig = key.sign(msg.as_bytes()).unwrap();
            key.public_key().verify(msg.as_bytes(), &sig).unwrap();
            // Its high-S twin is the same signature mathematically, and must be rejected.
            let twin = high_s_twin(alg, &sig);
            assert!(
                key.public_key().verify(msg.as_bytes(), &twin).is_err(),
                "{alg:?}: high-S accepted"
            );
            assert!(key.public_key().verify(b"other message", &sig).is_err());
            assert!(other.public_key().verify(msg.as_bytes(), &sig).is_err());
        }
        // Wrong lengths (including a DER-sized blob) are rejected.
        let sig = key.sign(b"x").unwrap();
        assert!(key.public_key().verify(b"x", &sig[..63]).is_err());
        let mut der = vec![0x30, 0x44, 0x02, 0x20];
        der.extend_from_slice(&sig[..32]);
        der.extend_from_slice(&[0x02, 0x20]);
        der.extend_from_slice(&sig[32..]);
        assert!(key.public_key().verify(b"x", &der).is_err());
    }
}

#[test]
fn debug_never_shows_the_private_key() {
    for alg in [KeyAlgorithm::P256, KeyAlgorithm::K256] {
        let key = Keypair::generate(alg);
        let shown = format!("{key:?} {key:#?}");
        let private = key.private_bytes();
        let hex: String = private.iter().map(|b| format!("{b:02x}")).collect();
        let b58 = multibase::encode(multibase::Base::Base58Btc, private);
        let b64 = base64::engine::general_purpose::STANDARD.encode(private);
        assert!(!shown.contains(&hex) && !shown.contains(&b58[1..]) && !shown.contains(&b64));
        assert!(!shown.contains(&format!("{:?}", private)));
        assert!(shown.contains(&key.did_key()));
    }
}

#[test]
fn malformed_keys_are_typed_errors() {
    for bad in [
        "",
        "did:key:",
        "did:key:zzzz",
        "did:web:example.com",
        "did:key:mABCD",
        "did:key:z6Mkf5rGMoatrSj1f4CyvuHBeXJELe9RPdzo2PKGNCKVtZxP",
    ] {
        assert!(PublicKey::from_did_key(bad).is_err(), "{bad:?} accepted");
    }
    assert!(Keypair::from_private_bytes(KeyAlgorithm::P256, &[0u8; 32]).is_err());
    assert!(Keypair::from_private_bytes(KeyAlgorithm::K256, &[0xffu8; 32]).is_err());
    assert!(Keypair::from_private_bytes(KeyAlgorithm::K256, &[1u8; 31]).is_err());
}
