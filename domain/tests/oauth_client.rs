//! The OAuth client's sans-I/O half (`stratos_domain::oauth`): PKCE against RFC 7636's vector,
//! DPoP proofs checked by the domain's own verifier, client assertions, metadata and token
//! checks, callback validation, and sessions sealed at rest.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use stratos_domain::auth::{
    DpopExpectation, MemoryReplayCache, TokenError, jwk_thumbprint, verify_dpop_proof,
};
use stratos_domain::crypto::{KeyAlgorithm, Keypair};
use stratos_domain::oauth::requests::{
    authorization_url, code_grant_body, par_body, refresh_grant_body, revocation_body,
};
use stratos_domain::oauth::seal::SEAL_PREFIX;
use stratos_domain::oauth::{
    AuthorizationServerMetadata, AuthorizationState, AuthorizationTarget, CLIENT_ASSERTION_TYPE,
    CallbackParams, ClientCredentials, DpopKey, DpopProofParams, OAuthError, PkceVerifier,
    ProtectedResourceMetadata, STATE_MAX_AGE_SECS, SealKey, Session, TokenResponse, check_subject,
    form, loopback_client_id, validate_callback,
};
use stratos_domain::syntax::Did;

const NOW: i64 = 1_765_000_000;
const ISSUER: &str = "https://pds.example";
const PDS: &str = "https://pds.example";
const CLIENT_ID: &str = "https://stratos.example/client-metadata.json";
const REDIRECT: &str = "https://stratos.example/oauth/callback";

fn did(s: &str) -> Did {
    Did::parse(s).unwrap()
}

fn alice() -> Did {
    did("did:plc:ewvi7nxzyoun6zhxrhs64oiz")
}

fn flow() -> AuthorizationState {
    let mut state = AuthorizationState::new(ISSUER, CLIENT_ID, REDIRECT, NOW);
    state.expected_did = Some(alice());
    state.pds_url = Some(PDS.into());
    state
}

fn tokens(sub: &Did, refresh: Option<&str>) -> TokenResponse {
    let mut body = json!({
        "access_token": "at-1", "token_type": "DPoP", "expires_in": 3600,
        "scope": "atproto repo:zone.stratos.actor.enrollment", "sub": sub.as_str(),
    });
    if let Some(r) = refresh {
        body["refresh_token"] = json!(r);
    }
    TokenResponse::from_json(body.to_string().as_bytes()).unwrap()
}

fn session() -> Session {
    Session::from_token_response(&flow(), tokens(&alice(), Some("rt-1")), PDS, NOW)
}

fn decode_part(part: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

// ---- PKCE ---------------------------------------------------------------------------------------

#[test]
fn pkce_matches_rfc7636_appendix_b() {
    // The RFC's 32 octets, base64url: the verifier; its S256 challenge.
    let octets: [u8; 32] = [
        116, 24, 223, 180, 151, 153, 224, 37, 79, 250, 96, 125, 216, 173, 187, 186, 22, 212, 37,
        77, 105, 214, 191, 240, 91, 88, 5, 88, 83, 132, 141, 121,
    ];
    let verifier = URL_SAFE_NO_PAD.encode(octets);
    assert_eq!(verifier, "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
    let verifier = PkceVerifier::parse(&verifier).unwrap();
    assert_eq!(
        verifier.challenge(),
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    );
}

#[test]
fn pkce_verifiers_are_fresh_and_well_formed() {
    let a = PkceVerifier::generate();
    let b = PkceVerifier::generate();
    assert_ne!(a, b);
    assert_eq!(a.as_str().len(), 43);
    assert_eq!(PkceVerifier::parse(a.as_str()).unwrap(), a);
    for bad in ["short", &"a".repeat(129), &format!("{}!", "a".repeat(43))] {
        assert!(PkceVerifier::parse(bad).is_err(), "{bad}");
    }
    assert!(!format!("{a:?}").contains(a.as_str()), "Debug must redact");
}

// ---- DPoP ---------------------------------------------------------------------------------------

#[test]
fn dpop_proofs_pass_the_domains_own_verifier() {
    let key = DpopKey::generate();
    let url = "https://pds.example/xrpc/com.atproto.repo.putRecord";
    let proof = key
        .proof(&DpopProofParams {
            method: "POST",
            url: &format!("{url}?x=1#frag"),
            nonce: Some("n-1"),
            access_token: Some("the-token"),
            now: NOW,
        })
        .unwrap();
    let mut replay = MemoryReplayCache::new();
    let verified = verify_dpop_proof(
        &proof,
        &DpopExpectation::new("POST", url, NOW)
            .with_access_token("the-token")
            .with_nonces(&["n-1"]),
        &mut replay,
    )
    .unwrap();
    assert_eq!(verified.jkt, key.thumbprint());
    assert_eq!(verified.jkt, jwk_thumbprint(key.public_key()));
    assert_eq!(verified.nonce.as_deref(), Some("n-1"));

    let parts: Vec<&str> = proof.split('.').collect();
    let header = decode_part(parts[0]);
    assert_eq!(header["typ"], "dpop+jwt");
    assert_eq!(header["alg"], "ES256");
    assert!(header["jwk"].get("d").is_none(), "the public key only");
    let claims = decode_part(parts[1]);
    assert_eq!(claims["htu"], url, "query and fragment are not part of htu");
    assert_eq!(
        claims["ath"],
        URL_SAFE_NO_PAD.encode(Sha256::digest(b"the-token"))
    );

    // The same proof for another method, URL, nonce or token is refused.
    let mut fresh = MemoryReplayCache::new();
    let wrong_nonce = verify_dpop_proof(
        &proof,
        &DpopExpectation::new("POST", url, NOW)
            .with_access_token("the-token")
            .with_nonces(&["n-2"]),
        &mut fresh,
    );
    assert!(matches!(
        wrong_nonce,
        Err(stratos_domain::Error::Token(TokenError::UseDpopNonce))
    ));
    let other_token = verify_dpop_proof(
        &proof,
        &DpopExpectation::new("POST", url, NOW).with_access_token("other"),
        &mut fresh,
    );
    assert!(matches!(
        other_token,
        Err(stratos_domain::Error::Token(TokenError::AthMismatch))
    ));
}

#[test]
fn dpop_proofs_without_nonce_or_token_and_each_jti_fresh() {
    let key = DpopKey::generate();
    let params = DpopProofParams {
        method: "POST",
        url: "https://pds.example/oauth/par",
        nonce: None,
        access_token: None,
        now: NOW,
    };
    let a = key.proof(&params).unwrap();
    let b = key.proof(&params).unwrap();
    let claims = decode_part(a.split('.').nth(1).unwrap());
    assert!(claims.get("nonce").is_none() && claims.get("ath").is_none());
    assert_ne!(
        claims["jti"],
        decode_part(b.split('.').nth(1).unwrap())["jti"]
    );
    let mut replay = MemoryReplayCache::new();
    let expect = DpopExpectation::new("POST", "https://pds.example/oauth/par", NOW);
    verify_dpop_proof(&a, &expect, &mut replay).unwrap();
    verify_dpop_proof(&b, &expect, &mut replay).unwrap();
    assert!(
        verify_dpop_proof(&a, &expect, &mut replay).is_err(),
        "replay"
    );
}

#[test]
fn a_dpop_key_survives_serialization_and_debug_hides_it() {
    let key = DpopKey::generate();
    let text = serde_json::to_string(&key).unwrap();
    let back: DpopKey = serde_json::from_str(&text).unwrap();
    assert_eq!(back, key);
    assert_eq!(back.private_bytes(), key.private_bytes());
    assert!(!format!("{key:?}").contains(text.trim_matches('"')));
    assert!(serde_json::from_str::<DpopKey>("\"AAAA\"").is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Any method, path, nonce and token: the proof verifies for exactly that request.
    #[test]
    fn dpop_proofs_verify_for_their_request(
        method in "(GET|POST|PUT|DELETE)",
        path in "(/[a-zA-Z0-9._~-]{1,12}){0,4}",
        nonce in proptest::option::of("[A-Za-z0-9_-]{1,40}"),
        token in proptest::option::of("[A-Za-z0-9._-]{1,60}"),
    ) {
        let key = DpopKey::generate();
        let url = format!("https://pds.example{path}");
        let proof = key.proof(&DpopProofParams {
            method: &method, url: &url, nonce: nonce.as_deref(), access_token: token.as_deref(), now: NOW,
        }).unwrap();
        let nonces: Vec<&str> = nonce.iter().map(String::as_str).collect();
        let mut expect = DpopExpectation::new(&method, &url, NOW).with_nonces(&nonces);
        if let Some(t) = &token {
            expect = expect.with_access_token(t);
        }
        let verified = verify_dpop_proof(&proof, &expect, &mut MemoryReplayCache::new()).unwrap();
        prop_assert_eq!(verified.jkt, key.thumbprint());
    }
}

// ---- client authentication ---------------------------------------------------------------------

#[test]
fn client_assertions_are_es256_jwts_for_the_issuer() {
    let key = Arc::new(Keypair::generate(KeyAlgorithm::P256));
    let client = ClientCredentials::private_key_jwt(CLIENT_ID, key.clone(), "key-1").unwrap();
    assert_eq!(client.auth_method(), "private_key_jwt");
    let params = client.form_params(ISSUER, NOW).unwrap();
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(get("client_id"), CLIENT_ID);
    assert_eq!(get("client_assertion_type"), CLIENT_ASSERTION_TYPE);
    let jwt = get("client_assertion");
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header = decode_part(parts[0]);
    assert_eq!(header, json!({"alg": "ES256", "kid": "key-1"}));
    let claims = decode_part(parts[1]);
    assert_eq!(claims["iss"], CLIENT_ID);
    assert_eq!(claims["sub"], CLIENT_ID);
    assert_eq!(claims["aud"], ISSUER);
    assert_eq!(claims["iat"], NOW);
    assert_eq!(claims["exp"], NOW + 60);
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 16));
    // Signed by the client key (low S, so the strict verifier accepts it too).
    let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    let signing_input = format!("{}.{}", parts[0], parts[1]);
    key.public_key()
        .verify(signing_input.as_bytes(), &signature)
        .unwrap();
    let other = Keypair::generate(KeyAlgorithm::P256);
    assert!(
        other
            .public_key()
            .verify(signing_input.as_bytes(), &signature)
            .is_err()
    );
    // A second assertion is a new JWT (new jti).
    let again = client.form_params(ISSUER, NOW).unwrap();
    assert_ne!(again[2].1, jwt);

    let k256 = Arc::new(Keypair::generate(KeyAlgorithm::K256));
    assert!(ClientCredentials::private_key_jwt(CLIENT_ID, k256, "k").is_err());
}

#[test]
fn public_clients_send_only_their_id_and_loopback_ids_are_form_encoded() {
    let scope = "atproto repo:zone.stratos.actor.enrollment repo:zone.stratos.feed.post";
    let id = loopback_client_id("http://127.0.0.1:3100/oauth/callback", scope);
    // The same text the service's client metadata document publishes.
    assert_eq!(
        id,
        "http://localhost?redirect_uri=http%3A%2F%2F127.0.0.1%3A3100%2Foauth%2Fcallback\
         &scope=atproto+repo%3Azone.stratos.actor.enrollment+repo%3Azone.stratos.feed.post"
    );
    let client = ClientCredentials::Public {
        client_id: id.clone(),
    };
    assert_eq!(client.auth_method(), "none");
    assert_eq!(
        client.form_params(ISSUER, NOW).unwrap(),
        vec![("client_id", id)]
    );
}

#[test]
fn request_bodies_carry_pkce_state_and_client_authentication() {
    let state = flow();
    let client = ClientCredentials::Public {
        client_id: CLIENT_ID.into(),
    };
    let par = form::decode(&par_body(&client, &state, "atproto", Some("alice.test"), NOW).unwrap());
    let get = |pairs: &[(String, String)], name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(get(&par, "response_type").as_deref(), Some("code"));
    assert_eq!(get(&par, "state"), Some(state.state.clone()));
    assert_eq!(get(&par, "redirect_uri").as_deref(), Some(REDIRECT));
    assert_eq!(
        get(&par, "code_challenge"),
        Some(state.pkce_verifier.challenge())
    );
    assert_eq!(get(&par, "code_challenge_method").as_deref(), Some("S256"));
    assert_eq!(get(&par, "login_hint").as_deref(), Some("alice.test"));
    assert_eq!(get(&par, "client_id").as_deref(), Some(CLIENT_ID));
    assert_eq!(get(&par, "code_verifier"), None, "never in PAR");

    let code = form::decode(&code_grant_body(&client, &state, "c-1", NOW).unwrap());
    assert_eq!(
        get(&code, "grant_type").as_deref(),
        Some("authorization_code")
    );
    assert_eq!(
        get(&code, "code_verifier").as_deref(),
        Some(state.pkce_verifier.as_str())
    );
    assert_eq!(get(&code, "redirect_uri").as_deref(), Some(REDIRECT));

    let s = session();
    let refresh = form::decode(&refresh_grant_body(&client, &s, "rt-1", NOW).unwrap());
    assert_eq!(
        get(&refresh, "grant_type").as_deref(),
        Some("refresh_token")
    );
    assert_eq!(get(&refresh, "refresh_token").as_deref(), Some("rt-1"));
    let revoke = form::decode(&revocation_body(&client, &s, "rt-1", NOW).unwrap());
    assert_eq!(get(&revoke, "token").as_deref(), Some("rt-1"));

    assert_eq!(
        authorization_url("https://pds.example/oauth/authorize", CLIENT_ID, "urn:x:1"),
        "https://pds.example/oauth/authorize?client_id=https%3A%2F%2Fstratos.example%2Fclient-metadata.json&request_uri=urn%3Ax%3A1"
    );
}

proptest! {
    #[test]
    fn form_encoding_round_trips(pairs in proptest::collection::vec(("\\PC{0,12}", "\\PC{0,24}"), 0..6)) {
        let pairs: Vec<(String, String)> = pairs.into_iter().filter(|(k, v)| !(k.is_empty() && v.is_empty())).collect();
        let text = form::encode(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        prop_assert!(text.bytes().all(|b| b.is_ascii_graphic()));
        prop_assert_eq!(form::decode(&text), pairs);
    }
}

// ---- metadata -----------------------------------------------------------------------------------

fn as_metadata() -> Value {
    json!({
        "issuer": ISSUER,
        "authorization_endpoint": "https://pds.example/oauth/authorize",
        "token_endpoint": "https://pds.example/oauth/token",
        "pushed_authorization_request_endpoint": "https://pds.example/oauth/par",
        "require_pushed_authorization_requests": true,
        "revocation_endpoint": "https://pds.example/oauth/revoke",
        "token_endpoint_auth_methods_supported": ["none", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["ES256", "ES384"],
        "dpop_signing_alg_values_supported": ["ES256", "ES256K"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
        "client_id_metadata_document_supported": true,
        "scopes_supported": ["atproto"],
        "some_extension": {"ignored": true},
    })
}

#[test]
fn authorization_server_metadata_is_checked_against_the_issuer_and_the_profile() {
    let parse =
        |v: &Value| AuthorizationServerMetadata::from_json(v.to_string().as_bytes(), ISSUER);
    let meta = parse(&as_metadata()).unwrap();
    assert_eq!(
        meta.pushed_authorization_request_endpoint,
        "https://pds.example/oauth/par"
    );
    assert!(meta.supports_auth_method("none"));
    assert!(meta.supports_auth_method("private_key_jwt"));

    // Another issuer (even a trailing slash) may not speak for this one.
    for issuer in ["https://evil.example", "https://pds.example/"] {
        let mut doc = as_metadata();
        doc["issuer"] = json!(issuer);
        assert!(
            matches!(parse(&doc), Err(OAuthError::IssuerMismatch { .. })),
            "{issuer}"
        );
    }
    for (field, value) in [
        ("code_challenge_methods_supported", json!(["plain"])),
        ("dpop_signing_alg_values_supported", json!(["RS256"])),
        (
            "authorization_response_iss_parameter_supported",
            json!(false),
        ),
        ("token_endpoint", json!("ftp://pds.example/token")),
        ("pushed_authorization_request_endpoint", Value::Null),
    ] {
        let mut doc = as_metadata();
        doc[field] = value;
        assert!(
            matches!(parse(&doc), Err(OAuthError::InvalidMetadata { .. })),
            "{field}"
        );
    }
    let mut no_jwt = as_metadata();
    no_jwt["token_endpoint_auth_signing_alg_values_supported"] = json!(["RS256"]);
    assert!(
        !parse(&no_jwt)
            .unwrap()
            .supports_auth_method("private_key_jwt")
    );
    assert!(AuthorizationServerMetadata::from_json(b"not json", ISSUER).is_err());
}

#[test]
fn protected_resource_metadata_must_describe_the_pds_it_came_from() {
    let doc = |resource: &str, servers: Value| {
        json!({"resource": resource, "authorization_servers": servers}).to_string()
    };
    let ok = ProtectedResourceMetadata::from_json(
        doc("https://pds.example", json!(["https://entryway.example"])).as_bytes(),
        "https://PDS.example/",
    )
    .unwrap();
    assert_eq!(ok.issuer(), "https://entryway.example");
    for (resource, servers) in [
        ("https://other.example", json!(["https://entryway.example"])),
        (
            "https://pds.example/sub",
            json!(["https://entryway.example"]),
        ),
        ("https://pds.example", json!([])),
        ("https://pds.example", json!(["not a url"])),
    ] {
        assert!(
            ProtectedResourceMetadata::from_json(doc(resource, servers.clone()).as_bytes(), PDS)
                .is_err(),
            "{resource} {servers}"
        );
    }
}

#[test]
fn token_responses_must_be_dpop_tokens_for_a_did_with_atproto() {
    let good = json!({"access_token": "a", "token_type": "dpop", "scope": "atproto x", "sub": "did:plc:ewvi7nxzyoun6zhxrhs64oiz", "expires_in": 60});
    let parsed = TokenResponse::from_json(good.to_string().as_bytes()).unwrap();
    assert_eq!(parsed.sub, alice());
    assert_eq!(parsed.refresh_token, None);
    assert!(!format!("{parsed:?}").contains("\"a\""));
    for (field, value) in [
        ("token_type", json!("Bearer")),
        ("sub", Value::Null),
        ("sub", json!("alice.test")),
        ("scope", json!("transition:generic")),
        ("access_token", json!("")),
        ("expires_in", json!(-5)),
    ] {
        let mut doc = good.clone();
        if value.is_null() {
            doc.as_object_mut().unwrap().remove(field);
        } else {
            doc[field] = value;
        }
        assert!(
            matches!(
                TokenResponse::from_json(doc.to_string().as_bytes()),
                Err(OAuthError::InvalidTokenResponse(_))
            ),
            "{field}"
        );
    }
}

// ---- callback -----------------------------------------------------------------------------------

#[test]
fn the_callback_is_checked_for_state_issuer_errors_age_and_code() {
    let state = flow();
    let query =
        |pairs: &[(&str, &str)]| CallbackParams::from_query(&form::encode(pairs.iter().copied()));
    let s = state.state.as_str();
    let good = query(&[("code", "c-1"), ("state", s), ("iss", ISSUER)]);
    assert_eq!(validate_callback(&good, &state, NOW).unwrap(), "c-1");

    type Check = fn(&OAuthError) -> bool;
    let cases: Vec<(CallbackParams, Check)> = vec![
        (
            query(&[("code", "c"), ("state", "other"), ("iss", ISSUER)]),
            |e| matches!(e, OAuthError::StateMismatch),
        ),
        (query(&[("code", "c"), ("iss", ISSUER)]), |e| {
            matches!(e, OAuthError::StateMismatch)
        }),
        (query(&[("code", "c"), ("state", s)]), |e| {
            matches!(e, OAuthError::MissingParameter("iss"))
        }),
        (
            query(&[("code", "c"), ("state", s), ("iss", "https://evil.example")]),
            |e| matches!(e, OAuthError::IssuerMismatch { .. }),
        ),
        (query(&[("state", s), ("iss", ISSUER)]), |e| {
            matches!(e, OAuthError::MissingParameter("code"))
        }),
        (
            query(&[
                ("error", "access_denied"),
                ("error_description", "The user rejected the request"),
                ("state", s),
                ("iss", ISSUER),
            ]),
            |e| matches!(e, OAuthError::AuthorizationFailed { error, description } if error == "access_denied" && description.as_deref() == Some("The user rejected the request")),
        ),
        // An error "from" another issuer is refused as such, not reported as the user's choice.
        (
            query(&[
                ("error", "access_denied"),
                ("state", s),
                ("iss", "https://evil.example"),
            ]),
            |e| matches!(e, OAuthError::IssuerMismatch { .. }),
        ),
    ];
    for (params, expected) in cases {
        let err = validate_callback(&params, &state, NOW).unwrap_err();
        assert!(expected(&err), "{params:?} gave {err:?}");
    }
    let late = validate_callback(&good, &state, NOW + STATE_MAX_AGE_SECS + 1);
    assert!(matches!(late, Err(OAuthError::StateExpired { .. })));
    // Repeated parameters: the first counts.
    let twice = CallbackParams::from_query(&format!(
        "state={s}&state=x&iss=https%3A%2F%2Fpds.example&code=c"
    ));
    assert_eq!(validate_callback(&twice, &state, NOW).unwrap(), "c");
}

#[test]
fn the_token_subject_must_be_the_account_the_flow_started_for() {
    let state = flow();
    check_subject(&tokens(&alice(), None), &state).unwrap();
    let mallory = did("did:plc:mallorymallorymallory234");
    assert!(matches!(
        check_subject(&tokens(&mallory, None), &state),
        Err(OAuthError::SubjectMismatch { .. })
    ));
    let mut from_server = flow();
    from_server.expected_did = None;
    check_subject(&tokens(&mallory, None), &from_server).unwrap();
}

#[test]
fn authorization_targets_are_handles_dids_or_server_urls() {
    assert_eq!(
        AuthorizationTarget::parse(" @Alice.Test ").unwrap(),
        AuthorizationTarget::Handle(stratos_domain::syntax::Handle::parse("alice.test").unwrap())
    );
    assert_eq!(
        AuthorizationTarget::parse("did:plc:ewvi7nxzyoun6zhxrhs64oiz").unwrap(),
        AuthorizationTarget::Did(alice())
    );
    assert_eq!(
        AuthorizationTarget::parse("https://pds.example/").unwrap(),
        AuthorizationTarget::Server("https://pds.example".into())
    );
    for bad in [
        "",
        "did:nope",
        "https://x.example/?q",
        "ftp://x",
        "not a handle",
    ] {
        assert!(AuthorizationTarget::parse(bad).is_err(), "{bad:?}");
    }
}

// ---- sessions -----------------------------------------------------------------------------------

#[test]
fn refresh_rotates_the_refresh_token_and_keeps_the_account() {
    let s = session();
    assert_eq!(s.expires_at, Some(NOW + 3600));
    assert!(!s.needs_refresh(NOW, 60));
    assert!(s.needs_refresh(NOW + 3550, 60));
    let rotated = s
        .refreshed(tokens(&alice(), Some("rt-2")), NOW + 100)
        .unwrap();
    assert_eq!(rotated.refresh_token.as_deref(), Some("rt-2"));
    assert_eq!(rotated.expires_at, Some(NOW + 3700));
    assert_eq!(rotated.dpop_key, s.dpop_key);
    assert_eq!(rotated.created_at, s.created_at);
    let kept = s.refreshed(tokens(&alice(), None), NOW).unwrap();
    assert_eq!(kept.refresh_token.as_deref(), Some("rt-1"));
    let other = did("did:plc:mallorymallorymallory234");
    assert!(matches!(
        s.refreshed(tokens(&other, Some("x")), NOW),
        Err(OAuthError::SubjectMismatch { .. })
    ));
    let debug = format!("{s:?}");
    assert!(
        !debug.contains("at-1") && !debug.contains("rt-1"),
        "{debug}"
    );
}

fn seal_key() -> SealKey {
    SealKey::derive(&Keypair::generate(KeyAlgorithm::K256)).unwrap()
}

#[test]
fn sessions_and_states_round_trip_sealed() {
    let key = seal_key();
    let s = session();
    let sealed = key.seal_session(&s).unwrap();
    assert!(sealed.starts_with(SEAL_PREFIX));
    assert!(!sealed.contains("at-1"));
    assert_eq!(key.open_session(&sealed, &s.did).unwrap(), s);
    // Fresh nonce per value: sealing twice never gives the same text.
    assert_ne!(key.seal_session(&s).unwrap(), sealed);

    let state = flow();
    let sealed_state = key.seal_state(&state).unwrap();
    assert_eq!(key.open_state(&sealed_state, &state.state).unwrap(), state);
}

#[test]
fn a_sealed_session_opens_only_in_its_own_row_and_under_its_own_key() {
    let key = seal_key();
    let s = session();
    let sealed = key.seal_session(&s).unwrap();
    let bob = did("did:plc:bobbobbobbobbobbobbobbob");
    assert_eq!(key.open_session(&sealed, &bob), Err(OAuthError::Unseal));
    assert_eq!(
        key.open_state(&sealed, s.did.as_str()),
        Err(OAuthError::Unseal),
        "a session is not a state"
    );
    assert_eq!(
        seal_key().open_session(&sealed, &s.did),
        Err(OAuthError::Unseal)
    );
    // The same service key derives the same sealing key (every instance can open).
    let service = Keypair::generate(KeyAlgorithm::K256);
    let a = SealKey::derive(&service).unwrap();
    let b = SealKey::derive(
        &Keypair::from_private_bytes(KeyAlgorithm::K256, &service.private_bytes()).unwrap(),
    )
    .unwrap();
    assert_eq!(
        b.open_session(&a.seal_session(&s).unwrap(), &s.did)
            .unwrap(),
        s
    );

    assert!(matches!(
        key.open_session(&sealed.replacen("sv1.", "sv2.", 1), &s.did),
        Err(OAuthError::SealFormat(_))
    ));
    assert!(matches!(
        key.open_session("sv1.AAAA", &s.did),
        Err(OAuthError::SealFormat(_))
    ));
    assert!(matches!(
        key.open_session("sv1.!!", &s.did),
        Err(OAuthError::SealFormat(_))
    ));
    assert!(SealKey::from_secret(&[0u8; 16]).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any changed bit of a sealed value makes it fail to open.
    #[test]
    fn tampering_with_any_byte_fails(index in any::<prop::sample::Index>(), bit in 0u8..8) {
        let key = SealKey::from_secret(&[7u8; 32]).unwrap();
        let sealed = key.seal(b"{\"secret\":\"value\"}", "session", "did:plc:x").unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(&sealed[SEAL_PREFIX.len()..]).unwrap();
        let i = index.index(bytes.len());
        bytes[i] ^= 1 << bit;
        let altered = format!("{SEAL_PREFIX}{}", URL_SAFE_NO_PAD.encode(&bytes));
        prop_assert_eq!(key.open(&altered, "session", "did:plc:x"), Err(OAuthError::Unseal));
        prop_assert_eq!(key.open(&sealed, "session", "did:plc:x").unwrap(), b"{\"secret\":\"value\"}".to_vec());
    }

    /// Any other storage key (associated data) makes it fail to open.
    #[test]
    fn another_storage_key_fails(other in "[a-z:0-9]{1,40}") {
        prop_assume!(other != "did:plc:x");
        let key = SealKey::from_secret(&[9u8; 32]).unwrap();
        let sealed = key.seal(b"payload", "session", "did:plc:x").unwrap();
        prop_assert_eq!(key.open(&sealed, "session", &other), Err(OAuthError::Unseal));
        prop_assert_eq!(key.open(&sealed, "state", "did:plc:x"), Err(OAuthError::Unseal));
    }
}
