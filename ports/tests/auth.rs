#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! The library's authentication over a neutral request view, on a manual clock: token times
//! are tested by moving the clock, not by minting tokens in the past or the future, and every
//! answer is checked through the one XRPC mapping (status, name, challenge, nonce).

use std::sync::Arc;

use serde_json::{Value, json};
use stratos_domain::auth::{jwk_from_public_key, jwk_thumbprint};
use stratos_domain::crypto::{KeyAlgorithm, Keypair};
use stratos_domain::syntax::Did;
use stratos_ports::Stratos;
use stratos_ports::auth::{AuthError, AuthSettings, DpopError, RequestView, Secret};
use stratos_ports::xrpc::XrpcError;
use stratos_testkit::memory::{self, ManualClock, MemoryAuthorizationServers, MemoryIdentity};
use stratos_testkit::tokens::{dpop_proof_at, sign_jwt};

const SERVICE: &str = "did:web:stratos.example";
const PUBLIC: &str = "https://stratos.example";
const USER: &str = "did:plc:kaworunagisa2345672345ab";
const PDS: &str = "https://pds.example";
const ISSUER: &str = "https://auth.pds.example";
const METHOD: &str = "com.atproto.repo.createRecord";
/// 2026-01-01T00:00:00Z, the manual clock's start.
const T0: i64 = 1_767_225_600;

struct World {
    stratos: Stratos,
    clock: Arc<ManualClock>,
    user_key: Keypair,
    as_key: Keypair,
    client_key: Keypair,
    jti: std::sync::atomic::AtomicU32,
}

async fn world() -> World {
    world_with(AuthSettings::default(), true).await
}

async fn world_with(settings: AuthSettings, with_servers: bool) -> World {
    let clock = Arc::new(ManualClock::at(T0 * 1000));
    let user_key = Keypair::generate(KeyAlgorithm::K256);
    let as_key = Keypair::generate(KeyAlgorithm::P256);
    let identity = Arc::new(MemoryIdentity::new());
    identity.insert_doc(
        &Did::parse(USER).unwrap(),
        json!({
            "id": USER,
            "verificationMethod": [{
                "id": format!("{USER}#atproto"),
                "type": "Multikey",
                "controller": USER,
                "publicKeyMultibase": user_key.public_key().to_multikey(),
            }],
            "service": [{
                "id": "#atproto_pds",
                "type": "AtprotoPersonalDataServer",
                "serviceEndpoint": PDS,
            }],
        }),
    );
    let servers = Arc::new(MemoryAuthorizationServers::new());
    let mut jwk = jwk_from_public_key(as_key.public_key());
    jwk["kid"] = json!("as-1");
    servers.insert(
        PDS,
        ISSUER,
        vec![stratos_domain::auth::Jwk::from_json(&jwk).unwrap()],
    );
    let mut builder = memory::stratos(Did::parse(SERVICE).unwrap())
        .boundaries(["general"])
        .clock(clock.clone())
        .identity(identity)
        .auth_settings(settings);
    if with_servers {
        builder = builder.authorization_servers(servers);
    }
    World {
        stratos: builder.build().await.unwrap(),
        clock,
        user_key,
        as_key,
        client_key: Keypair::generate(KeyAlgorithm::P256),
        jti: std::sync::atomic::AtomicU32::new(0),
    }
}

fn now(w: &World) -> i64 {
    use stratos_ports::env::Clock as _;
    w.clock.now_ms() / 1000
}

fn post(path: &str) -> RequestView {
    RequestView::new("POST", path)
}

fn bearer(path: &str, token: &str) -> RequestView {
    post(path).with_header("Authorization", format!("Bearer {token}"))
}

fn xrpc(e: AuthError) -> XrpcError {
    XrpcError::from(e)
}

impl World {
    fn service_jwt(&self, claims: &Value) -> String {
        sign_jwt(&self.user_key, &json!({ "typ": "JWT" }), claims)
    }

    /// A service-auth JWT for `METHOD`, issued now and living a minute.
    fn good_jwt(&self) -> String {
        let now = now(self);
        self.service_jwt(&json!({
            "iss": USER, "aud": SERVICE, "iat": now, "exp": now + 60, "lxm": METHOD,
        }))
    }

    async fn caller(&self, req: &RequestView) -> Result<Option<Did>, AuthError> {
        self.stratos.auth().caller(req).await
    }

    fn access_token(&self, claims: Value) -> String {
        sign_jwt(
            &self.as_key,
            &json!({ "typ": "at+jwt", "kid": "as-1" }),
            &claims,
        )
    }

    /// An access token of the PDS's authorization server bound to the client's key, issued now
    /// and living five minutes.
    fn token(&self) -> String {
        let now = now(self);
        self.access_token(json!({
            "iss": ISSUER, "sub": USER, "aud": PDS, "iat": now, "exp": now + 300,
            "scope": "atproto transition:generic",
            "cnf": { "jkt": jwk_thumbprint(self.client_key.public_key()) },
        }))
    }

    /// A DPoP request to `METHOD` with a fresh proof issued now.
    fn dpop(&self, token: &str, nonce: Option<&str>) -> RequestView {
        let jti = self
            .jti
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            .to_string();
        let htu = format!("{PUBLIC}/xrpc/{METHOD}");
        let proof = dpop_proof_at(
            &self.client_key,
            "POST",
            &htu,
            token,
            nonce,
            &jti,
            now(self),
        );
        post(&format!("/xrpc/{METHOD}"))
            .with_header("Authorization", format!("DPoP {token}"))
            .with_header("DPoP", proof)
    }
}

#[tokio::test]
async fn anonymous_requests_have_no_caller_and_required_auth_is_challenged() {
    let w = world().await;
    let req = post(&format!("/xrpc/{METHOD}"));
    assert_eq!(w.caller(&req).await.unwrap(), None);
    let e = xrpc(w.stratos.auth().require_caller(&req).await.unwrap_err());
    assert_eq!((e.status, e.error), (401, "AuthenticationRequired"));
    assert_eq!(
        e.www_authenticate.as_deref(),
        Some("DPoP realm=\"stratos\"")
    );
}

#[tokio::test]
async fn malformed_headers_and_unknown_schemes_are_invalid_tokens() {
    let w = world().await;
    let path = format!("/xrpc/{METHOD}");
    for req in [
        post(&path).with_header("authorization", "Bearer"),
        post(&path).with_header("authorization", b"Bearer \xff"),
        post(&path).with_header("authorization", "Negotiate abc"),
    ] {
        let e = xrpc(w.caller(&req).await.unwrap_err());
        assert_eq!((e.status, e.error), (401, "InvalidToken"), "{e}");
        assert_eq!(e.www_authenticate, None);
    }
}

#[tokio::test]
async fn service_jwts_are_checked_on_the_injected_clock() {
    let w = world().await;
    let path = format!("/xrpc/{METHOD}");
    let token = w.good_jwt();
    let me = Did::parse(USER).unwrap();
    assert_eq!(
        w.caller(&bearer(&path, &token)).await.unwrap(),
        Some(me.clone())
    );

    // 60 s of life plus 30 s of skew: still good at +90 s, expired at +91 s.
    w.clock.advance(90_000);
    assert_eq!(
        w.caller(&bearer(&path, &token)).await.unwrap(),
        Some(me.clone())
    );
    w.clock.advance(1_000);
    let e = xrpc(w.caller(&bearer(&path, &token)).await.unwrap_err());
    assert_eq!((e.status, e.error), (401, "JwtExpired"), "{e}");

    // Issued in the future (beyond the skew) is refused until the clock gets there.
    let later = now(&w) + 100;
    let early = w.service_jwt(&json!({
        "iss": USER, "aud": SERVICE, "iat": later, "exp": later + 60, "lxm": METHOD,
    }));
    let e = xrpc(w.caller(&bearer(&path, &early)).await.unwrap_err());
    assert_eq!(e.error, "BadJwt", "{e}");
    w.clock.advance(100_000);
    assert_eq!(w.caller(&bearer(&path, &early)).await.unwrap(), Some(me));
}

#[tokio::test]
async fn service_jwts_name_their_failures_as_atproto_does() {
    let w = world().await;
    let path = format!("/xrpc/{METHOD}");
    let n = now(&w);
    let claims = |aud: &str, lxm: Option<&str>, exp: i64| {
        let mut c = json!({ "iss": USER, "aud": aud, "iat": n, "exp": exp });
        if let Some(lxm) = lxm {
            c["lxm"] = json!(lxm);
        }
        c
    };
    let other = Keypair::generate(KeyAlgorithm::K256);
    for (token, name) in [
        (
            w.service_jwt(&claims("did:web:else.example", Some(METHOD), n + 60)),
            "BadJwtAudience",
        ),
        (
            w.service_jwt(&claims(
                SERVICE,
                Some("com.atproto.repo.deleteRecord"),
                n + 60,
            )),
            "BadJwtLexiconMethod",
        ),
        // An XRPC path requires `lxm`.
        (
            w.service_jwt(&claims(SERVICE, None, n + 60)),
            "BadJwtLexiconMethod",
        ),
        (
            sign_jwt(&other, &json!({}), &claims(SERVICE, Some(METHOD), n + 60)),
            "BadJwtSignature",
        ),
        // Two hours is past the default one-hour cap.
        (
            w.service_jwt(&claims(SERVICE, Some(METHOD), n + 7_200)),
            "BadJwt",
        ),
    ] {
        let e = xrpc(w.caller(&bearer(&path, &token)).await.unwrap_err());
        assert_eq!((e.status, e.error), (401, name), "{e}");
    }
    // Outside /xrpc/ the method is unknown, so `lxm` is not required.
    let token = w.service_jwt(&claims(SERVICE, None, n + 60));
    assert!(w.caller(&bearer("/other", &token)).await.unwrap().is_some());
}

#[tokio::test]
async fn the_service_jwt_lifetime_cap_is_a_setting() {
    let mut settings = AuthSettings::default();
    settings.service_auth_max_lifetime_secs = 7_200;
    let w = world_with(settings, true).await;
    let n = now(&w);
    let token = w.service_jwt(&json!({
        "iss": USER, "aud": SERVICE, "iat": n, "exp": n + 7_000, "lxm": METHOD,
    }));
    let req = bearer(&format!("/xrpc/{METHOD}"), &token);
    assert!(w.caller(&req).await.unwrap().is_some());
}

#[tokio::test]
async fn unknown_issuers_are_invalid_tokens() {
    let w = world().await;
    let n = now(&w);
    let token = w.service_jwt(&json!({
        "iss": "did:plc:abcdefghijklmnopqrstuvwx", "aud": SERVICE, "iat": n, "exp": n + 60,
        "lxm": METHOD,
    }));
    let err = w
        .caller(&bearer(&format!("/xrpc/{METHOD}"), &token))
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::IssuerNotFound), "{err:?}");
    let e = xrpc(err);
    assert_eq!((e.status, e.error), (401, "InvalidToken"));
    assert_eq!(e.message, "the token's issuer does not exist");
}

#[tokio::test]
async fn the_dev_bearer_works_only_in_dev_mode() {
    let path = format!("/xrpc/{METHOD}");
    let off = world().await;
    let e = xrpc(off.caller(&bearer(&path, USER)).await.unwrap_err());
    assert_eq!(
        (e.error, e.message.as_str()),
        ("InvalidToken", "the bearer token is not a JWT")
    );

    let on = world_with(AuthSettings::default().dev_mode(true), true).await;
    assert_eq!(
        on.caller(&bearer(&path, USER)).await.unwrap(),
        Some(Did::parse(USER).unwrap())
    );
    let e = xrpc(on.caller(&bearer(&path, "did:nope")).await.unwrap_err());
    assert_eq!(e.error, "InvalidToken");
    let e = xrpc(on.caller(&bearer(&path, "notadid")).await.unwrap_err());
    assert!(
        e.message
            .contains("dev mode expects `Authorization: Bearer <did>`"),
        "{e}"
    );
}

#[tokio::test]
async fn the_admin_password_is_checked_and_never_guessable_when_unset() {
    let path = "/xrpc/zone.stratos.admin.enrollActor";
    let off = world().await;
    let e = xrpc(
        off.stratos
            .auth()
            .require_admin(&bearer(path, "anything"))
            .unwrap_err(),
    );
    assert_eq!((e.status, e.error), (401, "AuthenticationRequired"));
    assert_eq!(
        e.message,
        "admin endpoints are disabled (no admin password is configured)"
    );

    let w = world_with(
        AuthSettings::default().admin_password(Secret::new("s3cret")),
        true,
    )
    .await;
    let auth = w.stratos.auth();
    assert!(auth.require_admin(&bearer(path, "s3cret")).is_ok());
    // Basic with any user name: base64("op:s3cret").
    let basic = post(path).with_header("Authorization", "Basic b3A6czNjcmV0");
    assert!(auth.require_admin(&basic).is_ok());
    for (req, message) in [
        (bearer(path, "s3creT"), "wrong admin password"),
        (post(path), "admin authentication required"),
        (
            post(path).with_header("Authorization", "Digest x"),
            "admin authentication required",
        ),
    ] {
        let e = xrpc(auth.require_admin(&req).unwrap_err());
        assert_eq!(
            (e.status, e.error, e.message.as_str()),
            (401, "AuthenticationRequired", message)
        );
    }
}

#[tokio::test]
async fn the_sync_token_compares_as_a_secret() {
    let mut settings = AuthSettings::default();
    settings.sync_token = Some(Secret::new("tok"));
    let w = world_with(settings, true).await;
    assert!(w.stratos.auth().is_sync_token("tok"));
    assert!(!w.stratos.auth().is_sync_token("tok2"));
    assert!(!world().await.stratos.auth().is_sync_token(""));
}

#[tokio::test]
async fn a_dpop_token_authenticates_after_the_nonce_handshake() {
    let w = world().await;
    let token = w.token();
    let err = w.caller(&w.dpop(&token, None)).await.unwrap_err();
    assert!(err.is_nonce_challenge());
    let e = xrpc(err);
    assert_eq!((e.status, e.error), (401, "AuthenticationRequired"));
    assert_eq!(
        e.www_authenticate.as_deref(),
        Some("DPoP error=\"use_dpop_nonce\", error_description=\"DPoP nonce required\"")
    );
    let nonce = e.dpop_nonce.expect("the answer carries the nonce");
    assert_eq!(nonce, w.stratos.auth().current_nonce());
    assert_eq!(
        w.caller(&w.dpop(&token, Some(&nonce))).await.unwrap(),
        Some(Did::parse(USER).unwrap())
    );
    // Reads answer the handshake instead of reading as anonymous.
    assert!(
        w.stratos
            .auth()
            .optional_caller(&w.dpop(&token, None))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn dpop_nonces_rotate_with_the_clock() {
    let w = world().await;
    let token = w.token();
    let first = w.stratos.auth().current_nonce();
    // The window is the previous, current and next minute: a nonce handed out now is good for
    // at least two more minutes, and stale after that.
    w.clock.advance(60_000);
    let second = w.stratos.auth().current_nonce();
    assert_ne!(first, second);
    assert!(w.caller(&w.dpop(&token, Some(&first))).await.is_ok());
    w.clock.advance(60_000);
    assert!(w.caller(&w.dpop(&token, Some(&first))).await.is_ok());
    w.clock.advance(60_000);
    let err = w.caller(&w.dpop(&token, Some(&first))).await.unwrap_err();
    match err {
        AuthError::Dpop(DpopError::UseNonce { nonce }) => {
            assert_eq!(nonce, w.stratos.auth().current_nonce());
            assert!(w.caller(&w.dpop(&token, Some(&nonce))).await.is_ok());
        }
        other => panic!("expected a nonce challenge, got {other:?}"),
    }
}

#[tokio::test]
async fn dpop_proofs_expire_and_are_single_use() {
    let w = world().await;
    let token = w.token();
    let nonce = w.stratos.auth().current_nonce();
    let req = w.dpop(&token, Some(&nonce));
    assert!(w.caller(&req).await.is_ok());
    // The same proof again: replayed.
    let e = xrpc(w.caller(&req).await.unwrap_err());
    assert_eq!(e.error, "AuthenticationRequired");
    let challenge = e.www_authenticate.unwrap();
    assert!(challenge.contains("invalid_dpop_proof"), "{challenge}");
    assert!(challenge.contains("replayed"), "{challenge}");

    // A proof issued now is too old 16 s later (10 s max age, 5 s tolerance).
    let req = w.dpop(&token, Some(&nonce));
    w.clock.advance(16_000);
    let e = xrpc(w.caller(&req).await.unwrap_err());
    assert!(
        e.www_authenticate.unwrap().contains("invalid_dpop_proof"),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn an_access_token_expires_on_the_clock() {
    let w = world().await;
    let token = w.token();
    // 300 s of life plus 30 s of skew.
    w.clock.advance(331_000);
    let nonce = w.stratos.auth().current_nonce();
    let e = xrpc(w.caller(&w.dpop(&token, Some(&nonce))).await.unwrap_err());
    assert_eq!(
        (e.status, e.error, e.message.as_str()),
        (401, "InvalidToken", "token expired")
    );
    assert_eq!(
        e.www_authenticate.as_deref(),
        Some("DPoP realm=\"stratos\", error=\"invalid_token\"")
    );
    // Optional auth reads it as anonymous.
    let req = w.dpop(&token, Some(&nonce));
    assert_eq!(w.stratos.auth().optional_caller(&req).await.unwrap(), None);
}

#[tokio::test]
async fn dpop_answers_follow_rfc_9449() {
    let w = world().await;
    let nonce = w.stratos.auth().current_nonce();
    let n = now(&w);
    let jkt = jwk_thumbprint(w.client_key.public_key());
    let claims = |scope: &str, jkt: &str| {
        json!({
            "iss": ISSUER, "sub": USER, "iat": n, "exp": n + 300, "scope": scope,
            "cnf": { "jkt": jkt },
        })
    };
    // No atproto scope: 403.
    let narrow = w.access_token(claims("transition:generic", &jkt));
    let e = xrpc(w.caller(&w.dpop(&narrow, Some(&nonce))).await.unwrap_err());
    assert_eq!((e.status, e.error), (403, "InsufficientScope"));
    assert_eq!(
        e.www_authenticate.as_deref(),
        Some("DPoP realm=\"stratos\", error=\"insufficient_scope\"")
    );
    // Bound to another key: the proof's fault.
    let other = w.access_token(claims("atproto", "not-this-key"));
    let e = xrpc(w.caller(&w.dpop(&other, Some(&nonce))).await.unwrap_err());
    assert_eq!(e.error, "AuthenticationRequired");
    assert!(e.www_authenticate.unwrap().contains("invalid_dpop_proof"));
    // No proof, two proofs.
    let token = w.token();
    let bare =
        post(&format!("/xrpc/{METHOD}")).with_header("Authorization", format!("DPoP {token}"));
    let e = xrpc(w.caller(&bare).await.unwrap_err());
    assert_eq!(e.message, "a DPoP proof header is required");
    let twice = w.dpop(&token, Some(&nonce)).with_header("dpop", "x.y.z");
    let e = xrpc(w.caller(&twice).await.unwrap_err());
    assert_eq!(e.message, "more than one DPoP header");
    // A proof for another URL than the public one.
    let req = w.dpop(&token, Some(&nonce));
    let moved = RequestView::new("POST", "/xrpc/com.atproto.repo.putRecord")
        .with_header("authorization", req.header("authorization").unwrap())
        .with_header("dpop", req.header("dpop").unwrap());
    let e = xrpc(w.caller(&moved).await.unwrap_err());
    assert!(e.www_authenticate.unwrap().contains("invalid_dpop_proof"));
}

#[tokio::test]
async fn without_authorization_servers_no_access_token_is_accepted() {
    let w = world_with(AuthSettings::default(), false).await;
    let nonce = w.stratos.auth().current_nonce();
    let err = w
        .caller(&w.dpop(&w.token(), Some(&nonce)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, AuthError::Dpop(DpopError::NoAuthorizationServers)),
        "{err:?}"
    );
    assert_eq!(xrpc(err).error, "InvalidToken");
}

#[tokio::test]
async fn responses_to_dpop_requests_carry_the_current_nonce() {
    let w = world().await;
    let auth = w.stratos.auth();
    let plain = post("/xrpc/x");
    assert_eq!(auth.response_nonce(&plain), None);
    let with_proof = plain.with_header("DPoP", "anything");
    assert_eq!(auth.response_nonce(&with_proof), Some(auth.current_nonce()));
}
