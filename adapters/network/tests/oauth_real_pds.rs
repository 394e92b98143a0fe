#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! The OAuth client against a REAL PDS: `@atproto/pds` (with its authorization server,
//! `@atproto/oauth-provider`) and `@did-plc/server` from `e2e/harness.mjs`, started through
//! `stratos_testkit::e2e` (installed by `scripts/e2e-env`; `STRATOS_E2E_DIR` to reuse another
//! install). Without the install every test prints `SKIPPED:` and passes, except under
//! `CI=true`, where it fails.
//!
//! Nothing here is a stub. PAR, the token requests, refresh, revocation and the record writes
//! go through `HttpOAuthClient`, with DPoP and the servers' nonces. The user's part — sign-in
//! and consent — is driven through the authorization server's own HTTP API, the one its web page
//! calls (see [`Browser`]): `GET /oauth/authorize` (device cookies `dev-id`/`ses-id` and the
//! CSRF cookie `csrf-token`), `POST /@atproto/oauth-provider/~api/sign-in`, `POST …/consent` (or
//! `…/reject`), then `GET /oauth/authorize/redirect`, whose `303` carries `code`, `state` and
//! `iss` to the redirect URI.
//!
//! One deviation from production: the harness's handles end in `.test`, which neither DNS nor
//! `https://{handle}/.well-known/atproto-did` can resolve, so the tests resolve handles with the
//! PDS's own `com.atproto.identity.resolveHandle` ([`PdsHandles`]); DIDs resolve for real
//! through the harness's PLC directory with `HttpIdentityResolver`.

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use serde_json::{Value, json};
use stratos_domain::crypto::{KeyAlgorithm, Keypair};
use stratos_domain::oauth::{
    AuthorizationTarget, CallbackParams, OAuthError, SealKey, Session, form,
};
use stratos_domain::syntax::{Did, Nsid, RecordKey};
use stratos_network::identity::IdentityConfig;
use stratos_network::{HttpIdentityResolver, HttpOAuthClient, OAuthClientConfig};
use stratos_ports::env::{EnvError, IdentityResolver};
use stratos_ports::oauth_store::OAuthStore;
use stratos_ports::pds_client::{AtprotoOAuthClient, PdsClientError, PdsWriter, StartOptions};
use stratos_testkit::e2e::{Account, Browser, Harness, installed_node};
use stratos_testkit::memory::MemoryOAuthStore;

/// The scope Stratos asks for (apps/service `OAUTH_SCOPE`).
const SCOPE: &str = "atproto repo:zone.stratos.actor.enrollment repo:zone.stratos.feed.post";
/// A loopback redirect URI: nothing listens there; the tests read the redirect's `Location`.
const REDIRECT_URI: &str = "http://127.0.0.1:9/oauth/callback";
const ENROLLMENT: &str = "zone.stratos.actor.enrollment";

fn harness() -> Option<&'static Harness> {
    static SHARED: OnceLock<Result<Harness, String>> = OnceLock::new();
    let node = installed_node()?;
    match SHARED
        .get_or_init(|| Harness::start(&node, &["alice", "bob", "carol", "dave", "erin", "frank"]))
    {
        Ok(h) => Some(h),
        Err(e) => panic!("{e}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Identity: DIDs through the real PLC directory, `.test` handles through the PDS.

struct PdsHandles {
    pds_url: String,
    dids: HttpIdentityResolver,
}

#[async_trait]
impl IdentityResolver for PdsHandles {
    async fn resolve_did(&self, did: &Did) -> Result<Option<Value>, EnvError> {
        self.dids.resolve_did(did).await
    }

    async fn resolve_handle(&self, handle: &str) -> Result<Option<Did>, EnvError> {
        let url = format!(
            "{}/xrpc/com.atproto.identity.resolveHandle?{}",
            self.pds_url,
            form::encode([("handle", handle)])
        );
        let res = stratos_testkit::http_client()
            .get(url)
            .send()
            .await
            .unwrap();
        if !res.status().is_success() {
            return Ok(None);
        }
        let body: Value = serde_json::from_slice(&res.bytes().await.unwrap()).unwrap();
        Ok(body["did"].as_str().and_then(|d| Did::parse(d).ok()))
    }
}

fn identity(h: &Harness) -> Arc<dyn IdentityResolver> {
    let dids = HttpIdentityResolver::new(IdentityConfig {
        plc_url: h.plc_url.clone(),
        allow_http_for_localhost: true,
        allow_private_targets: true,
        ..IdentityConfig::default()
    })
    .unwrap();
    Arc::new(PdsHandles {
        pds_url: h.pds_url.clone(),
        dids,
    })
}

/// The loopback client, allowed to reach the PDS on loopback over http.
fn client(h: &Harness) -> HttpOAuthClient {
    let mut config = OAuthClientConfig::loopback(REDIRECT_URI, SCOPE);
    config.allow_http_for_localhost = true;
    config.allow_private_targets = true;
    HttpOAuthClient::new(config, identity(h)).unwrap()
}

fn callback_of(location: &str) -> CallbackParams {
    let (base, query) = location.split_once('?').unwrap();
    assert_eq!(base, REDIRECT_URI, "sent to the client's redirect URI");
    CallbackParams::from_query(query)
}

/// Runs a whole authorization for `account` (started from `target`) up to the callback.
async fn authorize(
    h: &Harness,
    client: &HttpOAuthClient,
    target: &AuthorizationTarget,
    account: &Account,
) -> (stratos_domain::oauth::AuthorizationState, CallbackParams) {
    let (request, state) = client
        .start_authorization(target, &StartOptions::default())
        .await
        .unwrap();
    assert!(
        request
            .url
            .starts_with(&format!("{}/oauth/authorize?client_id=", h.pds_url)),
        "{}",
        request.url
    );
    assert_eq!(request.state, state.state);
    let location = Browser::new(&h.pds_url, &request.url)
        .unwrap()
        .authorize(account, true)
        .await
        .unwrap();
    (state, callback_of(&location))
}

fn enrollment_record(service: &str) -> Value {
    json!({
        "$type": ENROLLMENT,
        "service": service,
        "boundaries": [{ "value": "did:web:stratos.test/general" }],
        "signingKey": "did:key:zDnaeTiq1PdzvZXUaMdezchcMJQpBdH2VN4pgrrEhMCCbmwSb",
        "attestation": {
            "sig": { "$bytes": "c2lnbmF0dXJlIGJ5dGVz" },
            "signingKey": "did:key:zDnaeTiq1PdzvZXUaMdezchcMJQpBdH2VN4pgrrEhMCCbmwSb",
        },
        "createdAt": "2026-12-08T09:00:00.000Z",
    })
}

fn nsid() -> Nsid {
    Nsid::parse(ENROLLMENT).unwrap()
}

fn rkey() -> RecordKey {
    RecordKey::parse("self").unwrap()
}

// ---------------------------------------------------------------------------------------------
// Tests

/// The whole life of a session on the real PDS: PAR (loopback client, PKCE, DPoP with the
/// server's nonce) → sign-in and consent → callback checks (a wrong `state` and a wrong `iss`
/// are refused before the code is spent) → token exchange → the state and session sealed into
/// the `OAuthStore` and read back → putRecord of the enrollment record (the PDS's nonce retry)
/// → read back without credentials → deleteRecord → refresh (new tokens; the new access token
/// writes) → revoke (the access token is refused, and refreshing says re-authorize).
#[tokio::test]
async fn a_session_authorized_on_the_real_pds_writes_refreshes_and_is_revoked() {
    let Some(h) = harness() else { return };
    let alice = h.account("alice.test");
    let client = client(h);
    let store = MemoryOAuthStore::new();
    let seal = SealKey::derive(&Keypair::generate(KeyAlgorithm::K256)).unwrap();
    let target = AuthorizationTarget::parse("alice.test").unwrap();

    // Start: PAR, and the flow stored sealed under its state.
    let (request, state) = client
        .start_authorization(&target, &StartOptions::default())
        .await
        .unwrap();
    assert_eq!(
        state.issuer, h.pds_url,
        "the PDS is its own authorization server"
    );
    assert_eq!(
        state.expected_did.as_ref().map(Did::as_str),
        Some(alice.did.as_str())
    );
    assert!(
        state.auth_server_nonce.is_some(),
        "the server's DPoP nonce is kept for the token request"
    );
    let sealed = seal.seal_state(&state).unwrap();
    store
        .put_state(&state.state, &sealed, state.expires_at() * 1000)
        .await
        .unwrap();

    // The user signs in and consents on the authorization server.
    let location = Browser::new(&h.pds_url, &request.url)
        .unwrap()
        .authorize(&alice, true)
        .await
        .unwrap();
    let params = callback_of(&location);
    assert_eq!(params.iss.as_deref(), Some(h.pds_url.as_str()));
    let key = params.state.clone().unwrap();
    let stored = store.take_state(&key, 0).await.unwrap().unwrap();
    let state = seal.open_state(&stored, &key).unwrap();
    assert!(
        store.take_state(&key, 0).await.unwrap().is_none(),
        "single use"
    );

    // Callback checks come before the exchange, so these do not spend the code.
    let mut wrong_state = params.clone();
    wrong_state.state = Some("not-the-state".into());
    let err = client
        .finish_authorization(state.clone(), &wrong_state)
        .await;
    assert!(
        matches!(err, Err(PdsClientError::OAuth(OAuthError::StateMismatch))),
        "{err:?}"
    );
    let mut wrong_iss = params.clone();
    wrong_iss.iss = Some("http://localhost:1".into());
    let err = client.finish_authorization(state.clone(), &wrong_iss).await;
    assert!(
        matches!(
            err,
            Err(PdsClientError::OAuth(OAuthError::IssuerMismatch { .. }))
        ),
        "{err:?}"
    );

    let session = client.finish_authorization(state, &params).await.unwrap();
    assert_eq!(session.did.as_str(), alice.did);
    assert_eq!(session.pds_url, h.pds_url);
    assert!(session.refresh_token.is_some());
    assert!(session.expires_at.is_some());
    assert!(
        session
            .scope
            .split(' ')
            .any(|s| s == "repo:zone.stratos.actor.enrollment"),
        "{}",
        session.scope
    );
    store
        .put_session(&session.did, &seal.seal_session(&session).unwrap())
        .await
        .unwrap();
    let stored = store.get_session(&session.did).await.unwrap().unwrap();
    let mut session: Session = seal.open_session(&stored, &session.did).unwrap();

    // putRecord with the DPoP-bound token; the PDS wants its own nonce first.
    let record = enrollment_record("https://stratos.test");
    let written = client
        .put_record(&session, &nsid(), &rkey(), &record)
        .await
        .unwrap();
    assert_eq!(
        written.uri.as_deref(),
        Some(format!("at://{}/{ENROLLMENT}/self", alice.did).as_str())
    );
    assert!(written.cid.is_some());
    session = written
        .session
        .expect("the PDS's nonce is new to the session");
    assert!(session.pds_nonce.is_some());

    // Anyone reads it back from the PDS; a second put replaces it (no duplicate).
    let read = client
        .get_record_public(&h.pds_url, &session.did, &nsid(), &rkey())
        .await
        .unwrap()
        .expect("the record is on the PDS");
    assert_eq!(read.value, record);
    assert_eq!(read.cid, written.cid);
    let replaced = enrollment_record("https://stratos-2.test");
    let again = client
        .put_record(&session, &nsid(), &rkey(), &replaced)
        .await
        .unwrap();
    assert!(again.session.is_none(), "nonce unchanged: nothing to store");
    let read = client
        .get_record_public(&h.pds_url, &session.did, &nsid(), &rkey())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.value["service"], "https://stratos-2.test");

    // deleteRecord.
    client
        .delete_record(&session, &nsid(), &rkey())
        .await
        .unwrap();
    let gone = client
        .get_record_public(&h.pds_url, &session.did, &nsid(), &rkey())
        .await
        .unwrap();
    assert_eq!(gone, None);

    // Refresh: new tokens, and the new access token writes.
    let refreshed = client.refresh(&session).await.unwrap();
    assert_ne!(refreshed.access_token, session.access_token);
    assert_ne!(refreshed.refresh_token, session.refresh_token, "rotated");
    assert_eq!(refreshed.dpop_key, session.dpop_key);
    let session = refreshed;
    client
        .put_record(&session, &nsid(), &rkey(), &record)
        .await
        .unwrap();

    // Revoke: the access token stops working at once, and the grant is gone.
    client.revoke(&session).await.unwrap();
    let err = client.put_record(&session, &nsid(), &rkey(), &record).await;
    assert!(
        matches!(err, Err(PdsClientError::TokenRejected(_))),
        "{err:?}"
    );
    let err = client.refresh(&session).await;
    assert!(
        matches!(err, Err(PdsClientError::ReauthorizationRequired(_))),
        "{err:?}"
    );
}

/// Refresh-token rotation: after a refresh the previous refresh token is refused
/// (`invalid_grant` → re-authorize). The provider treats that reuse as theft and ends the
/// grant, so the rotated session is refused too.
#[tokio::test]
async fn a_used_refresh_token_is_refused() {
    let Some(h) = harness() else { return };
    let bob = h.account("bob.test");
    let client = client(h);
    let target = AuthorizationTarget::parse(&bob.did).unwrap();
    let (state, params) = authorize(h, &client, &target, &bob).await;
    let first = client.finish_authorization(state, &params).await.unwrap();
    let second = client.refresh(&first).await.unwrap();
    assert_ne!(first.refresh_token, second.refresh_token);

    let err = client.refresh(&first).await;
    assert!(
        matches!(err, Err(PdsClientError::ReauthorizationRequired(_))),
        "{err:?}"
    );
    let err = client.refresh(&second).await;
    assert!(
        matches!(err, Err(PdsClientError::ReauthorizationRequired(_))),
        "{err:?}"
    );
}

/// A code is exchanged once: the second exchange is refused (`invalid_grant`), and the provider
/// also ends the session the first exchange opened.
#[tokio::test]
async fn a_replayed_code_is_refused() {
    let Some(h) = harness() else { return };
    let carol = h.account("carol.test");
    let client = client(h);
    let target = AuthorizationTarget::parse("carol.test").unwrap();
    let (state, params) = authorize(h, &client, &target, &carol).await;
    let session = client
        .finish_authorization(state.clone(), &params)
        .await
        .unwrap();

    let err = client.finish_authorization(state, &params).await;
    assert!(
        matches!(&err, Err(PdsClientError::AuthorizationServer { error, .. }) if error == "invalid_grant"),
        "{err:?}"
    );
    let err = client
        .put_record(
            &session,
            &nsid(),
            &rkey(),
            &enrollment_record("https://s.test"),
        )
        .await;
    assert!(
        matches!(err, Err(PdsClientError::TokenRejected(_))),
        "{err:?}"
    );
}

/// The flow was started for dave, but erin signed in and consented: the tokens' `sub` is not
/// the expected account, and no session comes out.
#[tokio::test]
async fn tokens_for_another_account_than_the_flow_started_for_are_refused() {
    let Some(h) = harness() else { return };
    let dave = h.account("dave.test");
    let erin = h.account("erin.test");
    let client = client(h);
    let target = AuthorizationTarget::parse(&dave.did).unwrap();
    let (request, state) = client
        .start_authorization(&target, &StartOptions::default())
        .await
        .unwrap();
    assert_eq!(
        state.expected_did.as_ref().map(Did::as_str),
        Some(dave.did.as_str())
    );
    let location = Browser::new(&h.pds_url, &request.url)
        .unwrap()
        .authorize(&erin, true)
        .await
        .unwrap();
    let err = client
        .finish_authorization(state, &callback_of(&location))
        .await;
    match err {
        Err(PdsClientError::OAuth(OAuthError::SubjectMismatch { expected, found })) => {
            assert_eq!(expected.as_str(), dave.did);
            assert_eq!(found.as_str(), erin.did);
        }
        other => panic!("{other:?}"),
    }
}

/// The user refuses: the authorization server's error answer comes back with the right `state`
/// and `iss` and is reported as such.
#[tokio::test]
async fn a_refusal_at_the_authorization_server_is_a_typed_error() {
    let Some(h) = harness() else { return };
    let frank = h.account("frank.test");
    let client = client(h);
    let target = AuthorizationTarget::parse("frank.test").unwrap();
    let (request, state) = client
        .start_authorization(&target, &StartOptions::default())
        .await
        .unwrap();
    let location = Browser::new(&h.pds_url, &request.url)
        .unwrap()
        .authorize(&frank, false)
        .await
        .unwrap();
    let params = callback_of(&location);
    assert_eq!(params.code, None);
    let err = client.finish_authorization(state, &params).await;
    assert!(
        matches!(&err, Err(PdsClientError::OAuth(OAuthError::AuthorizationFailed { error, .. })) if error == "access_denied"),
        "{err:?}"
    );
}

/// Started from the PDS's URL, the flow does not know the account: it learns it from `sub`, and
/// the account's PDS (through its DID document) must name the issuer.
#[tokio::test]
async fn a_flow_started_from_the_pds_url_learns_the_account_from_the_token() {
    let Some(h) = harness() else { return };
    let alice = h.account("alice.test");
    let client = client(h);
    let target = AuthorizationTarget::parse(&h.pds_url).unwrap();
    let (state, params) = authorize(h, &client, &target, &alice).await;
    assert_eq!(state.expected_did, None);
    let session = client.finish_authorization(state, &params).await.unwrap();
    assert_eq!(session.did.as_str(), alice.did);
    assert_eq!(session.pds_url, h.pds_url);
    client.revoke(&session).await.unwrap();
}

/// With the address rule on (production), a PDS on loopback is never contacted: the DID resolves
/// through the operator's PLC directory, but the PDS named in its document is refused.
#[tokio::test]
async fn with_the_address_guard_on_a_pds_on_loopback_is_refused() {
    let Some(h) = harness() else { return };
    let alice = h.account("alice.test");
    let mut config = OAuthClientConfig::loopback(REDIRECT_URI, SCOPE);
    config.allow_http_for_localhost = true;
    let guarded = HttpOAuthClient::new(config, identity(h)).unwrap();
    let target = AuthorizationTarget::parse(&alice.did).unwrap();
    let err = guarded
        .start_authorization(&target, &StartOptions::default())
        .await;
    assert!(matches!(err, Err(PdsClientError::Refused(_))), "{err:?}");
}
