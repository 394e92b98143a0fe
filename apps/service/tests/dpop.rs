#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! DPoP-bound OAuth access tokens against the real server, with a stub PLC directory, PDS and
//! authorization server on loopback: the nonce handshake, full verification of the token
//! against the keys the account's PDS declares (D11), `htu` on the full public URL (D16), and
//! every forgery the reference accepted or mishandled.

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use stratos_domain::auth::jwk_from_public_key;
use stratos_domain::crypto::{KeyAlgorithm, Keypair};
use stratos_service::RunningServer;
use stratos_testkit::http_stub::StubServer;
use stratos_testkit::tokens::{dpop_proof, now_secs, sign_jwt};

use crate::common;

use common::ADMIN;
const USER: &str = "did:plc:kaworunagisa2345672345ab";
const PUBLIC: &str = "https://nerv.tokyo.jp";
const CREATE: &str = "com.atproto.repo.createRecord";

struct World {
    server: Option<RunningServer>,
    http: reqwest::Client,
    base: String,
    /// Plays the PLC directory, the account's PDS and its authorization server.
    net: StubServer,
    as_key: Keypair,
    client_key: Keypair,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    world_with(&[]).await
}

/// [`world`] with more configuration variables.
async fn world_with(extra: &[(&str, &str)]) -> World {
    let net = StubServer::start().await.unwrap();
    let origin = net.url();
    let as_key = Keypair::generate(KeyAlgorithm::P256);
    net.json(
        &format!("/{USER}"),
        &json!({
            "id": USER,
            "service": [{
                "id": "#atproto_pds",
                "type": "AtprotoPersonalDataServer",
                "serviceEndpoint": origin,
            }],
        }),
    );
    common::stub_authorization_server(&net, &as_key);
    let dir = tempfile::tempdir().unwrap();
    // Development mode (the common default) lets the stub servers be plain http on loopback.
    let mut vars = vec![("STRATOS_PLC_URL", origin.as_str())];
    vars.extend_from_slice(extra);
    let config = common::config(dir.path(), &vars);
    let server = stratos_service::start(config, 1).await.unwrap();
    let w = World {
        base: server.url(),
        server: Some(server),
        http: stratos_testkit::http_client(),
        net,
        as_key,
        client_key: Keypair::generate(KeyAlgorithm::P256),
        _dir: dir,
    };
    let res = w
        .http
        .post(format!("{}/xrpc/zone.stratos.admin.enrollActor", w.base))
        .bearer_auth(ADMIN)
        .json(&json!({ "did": USER, "boundaries": ["general"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    w
}

fn claims(issuer: &str, jkt: &str) -> Value {
    let now = now_secs();
    json!({
        "iss": issuer,
        "sub": USER,
        "aud": "did:web:pds.example",
        "iat": now,
        "exp": now + 300,
        "scope": "atproto transition:generic",
        "cnf": { "jkt": jkt },
    })
}

impl World {
    fn token_with(&self, key: &Keypair, claims: &Value) -> String {
        sign_jwt(key, &json!({ "typ": "at+jwt", "kid": "as-1" }), claims)
    }

    /// A good token: issued by the PDS's authorization server, bound to the client's key.
    fn token(&self) -> String {
        let jkt = stratos_domain::auth::jwk_thumbprint(self.client_key.public_key());
        self.token_with(&self.as_key, &claims(&self.net.url(), &jkt))
    }

    fn body(&self) -> Value {
        json!({
            "repo": USER,
            "collection": "zone.stratos.feed.post",
            "record": {
                "$type": "zone.stratos.feed.post",
                "text": "dpop",
                "boundary": {
                    "$type": "zone.stratos.boundary.defs#Domains",
                    "values": [{ "value": "did:web:nerv.tokyo.jp/general" }],
                },
                "createdAt": "2026-11-25T00:00:00.000Z",
            },
        })
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        token: &str,
        proof: Option<&str>,
    ) -> (StatusCode, HeaderMap, Value) {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path_and_query}", self.base))
            .header("authorization", format!("DPoP {token}"));
        if let Some(proof) = proof {
            req = req.header("dpop", proof);
        }
        if method == reqwest::Method::POST {
            req = req.json(&self.body());
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let body = res.json().await.unwrap_or(Value::Null);
        (status, headers, body)
    }

    /// createRecord with a fresh proof by `key` carrying `nonce`.
    async fn create(
        &self,
        token: &str,
        key: &Keypair,
        nonce: Option<&str>,
    ) -> (StatusCode, HeaderMap, Value) {
        let htu = format!("{PUBLIC}/xrpc/{CREATE}");
        let proof = dpop_proof(key, "POST", &htu, token, nonce, &jti());
        self.send(
            reqwest::Method::POST,
            &format!("/xrpc/{CREATE}"),
            token,
            Some(&proof),
        )
        .await
    }

    /// The nonce the server hands out (from a first, nonce-less attempt).
    async fn nonce(&self) -> String {
        let (status, headers, _) = self.create(&self.token(), &self.client_key, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        header(&headers, "dpop-nonce")
    }

    async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await.unwrap();
        }
    }
}

fn jti() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("jti-{}-{}", now_secs(), N.fetch_add(1, Ordering::Relaxed))
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header in {headers:?}"))
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_verified_token_and_proof_authenticate_after_the_nonce_handshake() {
    let w = world().await;
    let token = w.token();
    // First attempt without a nonce: 401 use_dpop_nonce, with the nonce to use.
    let (status, headers, body) = w.create(&token, &w.client_key, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(header(&headers, "www-authenticate").contains("use_dpop_nonce"));
    let nonce = header(&headers, "dpop-nonce");
    // Retry with it: the write goes through as the token's account.
    let (status, headers, body) = w.create(&token, &w.client_key, Some(&nonce)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["uri"]
            .as_str()
            .unwrap()
            .starts_with(&format!("at://{USER}/"))
    );
    assert!(!header(&headers, "dpop-nonce").is_empty());
    // An optional-auth read with DPoP sees the account's own record.
    let rkey = body["uri"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let path = format!(
        "/xrpc/com.atproto.repo.getRecord?repo={USER}&collection=zone.stratos.feed.post&rkey={rkey}"
    );
    let htu = format!("{PUBLIC}/xrpc/com.atproto.repo.getRecord");
    let proof = dpop_proof(&w.client_key, "GET", &htu, &token, Some(&nonce), &jti());
    let (status, _, body) = w
        .send(reqwest::Method::GET, &path, &token, Some(&proof))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["value"]["text"], "dpop");
    // The same read with a forged token is anonymous: the private record looks missing.
    let forged = w.token_with(
        &Keypair::generate(KeyAlgorithm::P256),
        &claims(
            &w.net.url(),
            &stratos_domain::auth::jwk_thumbprint(w.client_key.public_key()),
        ),
    );
    let proof = dpop_proof(&w.client_key, "GET", &htu, &forged, Some(&nonce), &jti());
    let (status, _, body) = w
        .send(reqwest::Method::GET, &path, &forged, Some(&proof))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "RecordNotFound");
    w.stop().await;
}

#[tokio::test]
async fn forged_or_misbound_tokens_and_proofs_are_refused() {
    let w = world().await;
    let nonce = w.nonce().await;
    let jkt = stratos_domain::auth::jwk_thumbprint(w.client_key.public_key());
    let attacker = Keypair::generate(KeyAlgorithm::P256);
    let attacker_jkt = stratos_domain::auth::jwk_thumbprint(attacker.public_key());

    // D11: a self-minted token naming the victim, bound to the attacker's own key.
    let minted = w.token_with(&attacker, &claims(&w.net.url(), &attacker_jkt));
    let (status, headers, body) = w.create(&minted, &attacker, Some(&nonce)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(header(&headers, "www-authenticate").contains("invalid_token"));

    // A validly signed token whose issuer is not the account's PDS's authorization server.
    let other_issuer = w.token_with(&w.as_key, &claims("https://evil.example", &jkt));
    let (status, _, body) = w.create(&other_issuer, &w.client_key, Some(&nonce)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    // A good token used with a proof by another key (cnf.jkt mismatch).
    let (status, headers, body) = w.create(&w.token(), &attacker, Some(&nonce)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(header(&headers, "www-authenticate").contains("invalid_dpop_proof"));

    // An expired token.
    let mut old = claims(&w.net.url(), &jkt);
    old["exp"] = json!(now_secs() - 3600);
    let expired = w.token_with(&w.as_key, &old);
    let (status, _, body) = w.create(&expired, &w.client_key, Some(&nonce)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    let token = w.token();
    let path = format!("/xrpc/{CREATE}");
    let send = |proof: String| {
        let token = token.clone();
        let path = path.clone();
        let w = &w;
        async move {
            w.send(reqwest::Method::POST, &path, &token, Some(&proof))
                .await
        }
    };
    // D16: htu must be the full public URL of this method, not a relative or other one.
    for htu in [
        format!("/xrpc/{CREATE}"),
        format!("{PUBLIC}/xrpc/com.atproto.repo.deleteRecord"),
        format!("https://other.example/xrpc/{CREATE}"),
    ] {
        let proof = dpop_proof(&w.client_key, "POST", &htu, &token, Some(&nonce), &jti());
        let (status, _, body) = send(proof).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{htu}: {body}");
    }
    // Wrong method.
    let htu = format!("{PUBLIC}/xrpc/{CREATE}");
    let proof = dpop_proof(&w.client_key, "GET", &htu, &token, Some(&nonce), &jti());
    assert_eq!(send(proof).await.0, StatusCode::UNAUTHORIZED);
    // A proof bound to another access token (ath).
    let proof = dpop_proof(
        &w.client_key,
        "POST",
        &htu,
        "another-token",
        Some(&nonce),
        &jti(),
    );
    assert_eq!(send(proof).await.0, StatusCode::UNAUTHORIZED);
    // A made-up nonce.
    let proof = dpop_proof(&w.client_key, "POST", &htu, &token, Some("made-up"), &jti());
    let (status, headers, _) = send(proof).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(header(&headers, "www-authenticate").contains("use_dpop_nonce"));
    // No proof at all.
    let (status, _, _) = w.send(reqwest::Method::POST, &path, &token, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Replay: the same proof twice; the first succeeds, the second is refused.
    let proof = dpop_proof(&w.client_key, "POST", &htu, &token, Some(&nonce), &jti());
    assert_eq!(send(proof.clone()).await.0, StatusCode::OK);
    let (status, _, body) = send(proof).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    // The keys were fetched once, plus one forced refetch when the forged signature failed
    // (it might have been a key rotation); every later request used the cache.
    assert_eq!(w.net.hits("/oauth/jwks"), 2);
    w.stop().await;
}

#[tokio::test]
async fn rotated_authorization_server_keys_are_picked_up() {
    let mut w = world().await;
    let nonce = w.nonce().await;
    let (status, _, body) = w.create(&w.token(), &w.client_key, Some(&nonce)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The server rotates to a new key under a new kid; tokens signed with it still verify
    // (the unknown kid triggers one refetch).
    let rotated = Keypair::generate(KeyAlgorithm::P256);
    let mut jwk = jwk_from_public_key(rotated.public_key());
    jwk["kid"] = json!("as-2");
    w.net.json("/oauth/jwks", &json!({ "keys": [jwk] }));
    w.as_key = rotated;
    let jkt = stratos_domain::auth::jwk_thumbprint(w.client_key.public_key());
    let token = sign_jwt(
        &w.as_key,
        &json!({ "typ": "at+jwt", "kid": "as-2" }),
        &claims(&w.net.url(), &jkt),
    );
    let (status, _, body) = w.create(&token, &w.client_key, Some(&nonce)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(w.net.hits("/oauth/jwks"), 2);
    w.stop().await;
}

#[tokio::test]
async fn an_account_reads_its_own_stream_with_dpop() {
    use futures_util::StreamExt as _;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

    let w = world().await;
    let nonce = w.nonce().await;
    let token = w.token();
    let (status, _, body) = w.create(&token, &w.client_key, Some(&nonce)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let nsid = "zone.stratos.sync.subscribeRecords";
    let connect = |proof: String| {
        let url = format!(
            "{}/xrpc/{nsid}?did={USER}",
            w.base.replacen("http", "ws", 1)
        );
        let mut req = url.into_client_request().unwrap();
        req.headers_mut()
            .insert("authorization", format!("DPoP {token}").parse().unwrap());
        req.headers_mut().insert("dpop", proof.parse().unwrap());
        async move { tokio_tungstenite::connect_async(req).await.unwrap().0 }
    };
    // The proof names the stream's public URL with GET; the first frame is the backfilled
    // commit (a binary event-stream frame, header op 1).
    let htu = format!("{PUBLIC}/xrpc/{nsid}");
    let mut ws = connect(dpop_proof(
        &w.client_key,
        "GET",
        &htu,
        &token,
        Some(&nonce),
        &jti(),
    ))
    .await;
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let Message::Binary(frame) = first else {
        panic!("expected a binary frame, got {first:?}");
    };
    // The header `{t: "#commit", op: 1}` in canonical DAG-CBOR key order (shorter keys first).
    assert!(
        frame.starts_with(b"\xa2at\x67#commit\x62op\x01"),
        "{frame:?}"
    );
    // A proof for another URL gets an error frame (op -1), never the account's records.
    let mut ws = connect(dpop_proof(
        &w.client_key,
        "GET",
        &format!("{PUBLIC}/xrpc/other"),
        &token,
        Some(&nonce),
        &jti(),
    ))
    .await;
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let Message::Binary(frame) = first else {
        panic!("expected an error frame, got {first:?}");
    };
    assert_eq!(&frame[..5], b"\xa1bop\x20");
    w.stop().await;
}

#[tokio::test]
async fn with_the_address_guard_on_a_pds_on_loopback_is_never_contacted() {
    // Dev mode alone would let fetches reach loopback; the switch turns the guard back on. The
    // PLC directory is the operator's and stays reachable there; the PDS, authorization server
    // and key set the DID document leads to are a caller's choice and are not.
    let w = world_with(&[("STRATOS_OUTBOUND_ALLOW_PRIVATE", "false")]).await;
    let nonce = w.nonce().await;
    for _ in 0..3 {
        let (status, headers, body) = w.create(&w.token(), &w.client_key, Some(&nonce)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(body["error"], "InvalidToken", "{body}");
        assert!(header(&headers, "www-authenticate").contains("invalid_token"));
    }
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-authorization-server",
        "/oauth/jwks",
    ] {
        assert_eq!(w.net.hits(path), 0, "{path}");
    }
    assert_eq!(
        w.net.hits(&format!("/{USER}")),
        1,
        "the DID document is cached"
    );
    w.stop().await;
}
