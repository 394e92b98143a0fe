#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! `HttpOAuthClient` against a scripted PDS/authorization server on loopback, for what the real
//! PDS of `oauth_real_pds.rs` cannot show: the confidential client (`private_key_jwt`; the real
//! provider only accepts it for an https client id it can fetch), the exact requests (a fresh
//! client assertion per attempt, the DPoP nonce on the retry), and the PDS's answers that must
//! become "refresh", "retry later" or "re-authorize".

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use stratos_domain::auth::{DpopExpectation, MemoryReplayCache, verify_dpop_proof};
use stratos_domain::crypto::{KeyAlgorithm, Keypair};
use stratos_domain::oauth::{
    AuthorizationTarget, CLIENT_ASSERTION_TYPE, CallbackParams, ClientCredentials, form,
};
use stratos_domain::syntax::{Did, Nsid, RecordKey};
use stratos_network::{HttpOAuthClient, OAuthClientConfig};
use stratos_ports::pds_client::{AtprotoOAuthClient, PdsClientError, PdsWriter, StartOptions};
use stratos_testkit::memory::MemoryIdentity;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const CLIENT_ID: &str = "https://stratos.example/client-metadata.json";
const REDIRECT: &str = "https://stratos.example/oauth/callback";
const DID: &str = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";

/// One scripted answer: status, extra headers, JSON body.
#[derive(Clone)]
struct Reply(u16, Vec<(&'static str, String)>, Value);

/// A request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: String,
}

#[derive(Default)]
struct Script {
    /// Path (without query) → answers, in order; the last one repeats.
    replies: HashMap<String, VecDeque<Reply>>,
    seen: Vec<Seen>,
}

#[derive(Clone)]
struct Stub {
    url: String,
    script: Arc<Mutex<Script>>,
}

impl Stub {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let script = Arc::new(Mutex::new(Script::default()));
        let shared = script.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let script = shared.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let head_end = loop {
                        let n = socket.read(&mut chunk).await.unwrap();
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                    let mut lines = head.split("\r\n");
                    let request_line: Vec<&str> = lines.next().unwrap().split(' ').collect();
                    let headers: HashMap<String, String> = lines
                        .filter_map(|l| l.split_once(": "))
                        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
                        .collect();
                    let length: usize = headers
                        .get("content-length")
                        .map_or(0, |l| l.parse().unwrap());
                    while buf.len() < head_end + length {
                        let n = socket.read(&mut chunk).await.unwrap();
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let body =
                        String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned();
                    let path = request_line[1].split('?').next().unwrap().to_owned();
                    let reply = {
                        let mut script = script.lock().unwrap();
                        script.seen.push(Seen {
                            method: request_line[0].to_owned(),
                            path: path.clone(),
                            headers,
                            body,
                        });
                        match script.replies.get_mut(&path) {
                            Some(queue) if queue.len() > 1 => queue.pop_front().unwrap(),
                            Some(queue) => queue.front().unwrap().clone(),
                            None => Reply(404, vec![], json!({"error": "NotFound"})),
                        }
                    };
                    let Reply(status, extra, value) = reply;
                    let body = value.to_string();
                    let mut out = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
                        body.len()
                    );
                    for (k, v) in extra {
                        out.push_str(&format!("{k}: {v}\r\n"));
                    }
                    out.push_str("\r\n");
                    out.push_str(&body);
                    let _ = socket.write_all(out.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Self { url, script }
    }

    fn on(&self, path: &str, replies: Vec<Reply>) {
        self.script
            .lock()
            .unwrap()
            .replies
            .insert(path.to_owned(), replies.into());
    }

    fn seen(&self, path: &str) -> Vec<Seen> {
        self.script
            .lock()
            .unwrap()
            .seen
            .iter()
            .filter(|s| s.path == path)
            .cloned()
            .collect()
    }

    /// The PDS and its authorization server in one (as an entryway-less PDS is).
    fn serve_metadata(&self) {
        let u = &self.url;
        self.on(
            "/.well-known/oauth-protected-resource",
            vec![Reply(
                200,
                vec![],
                json!({"resource": u, "authorization_servers": [u]}),
            )],
        );
        self.on(
            "/.well-known/oauth-authorization-server",
            vec![Reply(
                200,
                vec![],
                json!({
                    "issuer": u,
                    "authorization_endpoint": format!("{u}/oauth/authorize"),
                    "token_endpoint": format!("{u}/oauth/token"),
                    "pushed_authorization_request_endpoint": format!("{u}/oauth/par"),
                    "revocation_endpoint": format!("{u}/oauth/revoke"),
                    "require_pushed_authorization_requests": true,
                    "token_endpoint_auth_methods_supported": ["none", "private_key_jwt"],
                    "token_endpoint_auth_signing_alg_values_supported": ["ES256"],
                    "dpop_signing_alg_values_supported": ["ES256"],
                    "code_challenge_methods_supported": ["S256"],
                    "authorization_response_iss_parameter_supported": true,
                    "client_id_metadata_document_supported": true,
                }),
            )],
        );
    }
}

fn nonce_please(nonce: &str) -> Reply {
    Reply(
        400,
        vec![("dpop-nonce", nonce.into())],
        json!({"error": "use_dpop_nonce", "error_description": "Authorization server requires nonce in DPoP proof"}),
    )
}

fn identity(pds: &str) -> Arc<MemoryIdentity> {
    let identity = MemoryIdentity::new();
    identity.insert_doc(
        &Did::parse(DID).unwrap(),
        json!({"id": DID, "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": pds}]}),
    );
    Arc::new(identity)
}

fn confidential(stub: &Stub, key: Arc<Keypair>) -> HttpOAuthClient {
    let credentials = ClientCredentials::private_key_jwt(CLIENT_ID, key, "key-1").unwrap();
    let mut config = OAuthClientConfig::confidential(credentials, REDIRECT, "atproto");
    config.allow_http_for_localhost = true;
    config.allow_private_targets = true;
    HttpOAuthClient::new(config, identity(&stub.url)).unwrap()
}

/// Unpadded base64url (enough for JWT parts; no new dependency for one test).
fn b64url_decode(text: &str) -> Result<Vec<u8>, String> {
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return Err(format!("not base64url: {c}")),
        };
        bits = (bits << 6) | u32::from(v);
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    Ok(out)
}

fn param(body: &str, name: &str) -> Option<String> {
    form::decode(body)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

fn claims(jwt: &str) -> Value {
    serde_json::from_slice(&b64url_decode(jwt.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Checks a DPoP proof the stub received with the domain's verifier; returns its claims.
fn check_proof(seen: &Seen, url: &str, nonce: Option<&str>, token: Option<&str>) -> Value {
    let proof = &seen.headers["dpop"];
    let nonces: Vec<&str> = nonce.into_iter().collect();
    let mut expect = DpopExpectation::new(&seen.method, url, now()).with_nonces(&nonces);
    if let Some(t) = token {
        expect = expect.with_access_token(t);
    }
    verify_dpop_proof(proof, &expect, &mut MemoryReplayCache::new()).unwrap();
    claims(proof)
}

#[tokio::test]
async fn a_confidential_client_sends_a_fresh_assertion_per_attempt_and_retries_with_the_nonce() {
    let stub = Stub::start().await;
    stub.serve_metadata();
    let key = Arc::new(Keypair::generate(KeyAlgorithm::P256));
    let client = confidential(&stub, key.clone());
    let issuer = stub.url.clone();

    // PAR: the server wants a nonce first.
    stub.on(
        "/oauth/par",
        vec![
            nonce_please("n-1"),
            Reply(201, vec![("dpop-nonce", "n-1".into())], json!({"request_uri": "urn:ietf:params:oauth:request_uri:req-1", "expires_in": 299})),
        ],
    );
    let target = AuthorizationTarget::parse(DID).unwrap();
    let (request, state) = client
        .start_authorization(&target, &StartOptions::default())
        .await
        .unwrap();
    assert_eq!(
        request.url,
        format!(
            "{issuer}/oauth/authorize?{}",
            form::encode([
                ("client_id", CLIENT_ID),
                ("request_uri", "urn:ietf:params:oauth:request_uri:req-1")
            ])
        )
    );
    assert_eq!(state.auth_server_nonce.as_deref(), Some("n-1"));
    let par = stub.seen("/oauth/par");
    assert_eq!(par.len(), 2, "one retry");
    let par_url = format!("{issuer}/oauth/par");
    assert!(
        check_proof(&par[0], &par_url, None, None)
            .get("nonce")
            .is_none()
    );
    assert_eq!(
        check_proof(&par[1], &par_url, Some("n-1"), None)["nonce"],
        "n-1"
    );
    let mut jtis = Vec::new();
    for attempt in &par {
        assert_eq!(
            attempt.headers["content-type"],
            "application/x-www-form-urlencoded"
        );
        assert_eq!(
            param(&attempt.body, "client_id").as_deref(),
            Some(CLIENT_ID)
        );
        assert_eq!(
            param(&attempt.body, "client_assertion_type").as_deref(),
            Some(CLIENT_ASSERTION_TYPE)
        );
        assert_eq!(param(&attempt.body, "login_hint").as_deref(), Some(DID));
        assert_eq!(
            param(&attempt.body, "code_challenge").unwrap(),
            state.pkce_verifier.challenge()
        );
        let assertion = param(&attempt.body, "client_assertion").unwrap();
        let parts: Vec<&str> = assertion.split('.').collect();
        let signature = b64url_decode(parts[2]).unwrap();
        key.public_key()
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
            .unwrap();
        let c = claims(&assertion);
        assert_eq!(
            (c["iss"].as_str(), c["sub"].as_str(), c["aud"].as_str()),
            (Some(CLIENT_ID), Some(CLIENT_ID), Some(issuer.as_str()))
        );
        jtis.push(c["jti"].clone());
    }
    assert_ne!(
        jtis[0], jtis[1],
        "a retried request carries a new assertion"
    );

    // Token exchange with the nonce learnt at PAR; the server rotates it.
    stub.on(
        "/oauth/token",
        vec![Reply(
            200,
            vec![("dpop-nonce", "n-2".into())],
            json!({"access_token": "at-1", "token_type": "DPoP", "refresh_token": "rt-1", "expires_in": 3600, "scope": "atproto", "sub": DID}),
        )],
    );
    let callback = CallbackParams::from_pairs([
        ("code", "cod-1"),
        ("state", state.state.as_str()),
        ("iss", issuer.as_str()),
    ]);
    let session = client
        .finish_authorization(state.clone(), &callback)
        .await
        .unwrap();
    assert_eq!(session.did.as_str(), DID);
    assert_eq!(session.pds_url, stub.url);
    assert_eq!(session.auth_server_nonce.as_deref(), Some("n-2"));
    let token = &stub.seen("/oauth/token")[0];
    check_proof(token, &format!("{issuer}/oauth/token"), Some("n-1"), None);
    assert_eq!(
        param(&token.body, "grant_type").as_deref(),
        Some("authorization_code")
    );
    assert_eq!(param(&token.body, "code").as_deref(), Some("cod-1"));
    assert_eq!(
        param(&token.body, "redirect_uri").as_deref(),
        Some(REDIRECT)
    );
    assert_eq!(
        param(&token.body, "code_verifier").as_deref(),
        Some(state.pkce_verifier.as_str())
    );
    assert!(param(&token.body, "client_assertion").is_some());

    // A dead grant on refresh means: authorize again.
    stub.on(
        "/oauth/token",
        vec![Reply(
            400,
            vec![],
            json!({"error": "invalid_grant", "error_description": "Invalid refresh token"}),
        )],
    );
    let err = client.refresh(&session).await;
    assert!(
        matches!(err, Err(PdsClientError::ReauthorizationRequired(_))),
        "{err:?}"
    );
    let refresh = stub.seen("/oauth/token").pop().unwrap();
    assert_eq!(
        param(&refresh.body, "refresh_token").as_deref(),
        Some("rt-1")
    );
    check_proof(
        &refresh,
        &format!("{issuer}/oauth/token"),
        Some("n-2"),
        None,
    );
}

#[tokio::test]
async fn pds_answers_become_retry_with_nonce_refresh_later_or_give_up() {
    let stub = Stub::start().await;
    stub.serve_metadata();
    let client = confidential(&stub, Arc::new(Keypair::generate(KeyAlgorithm::P256)));
    stub.on(
        "/oauth/par",
        vec![Reply(201, vec![], json!({"request_uri": "urn:x:1"}))],
    );
    stub.on(
        "/oauth/token",
        vec![Reply(
            200,
            vec![],
            json!({"access_token": "at-1", "token_type": "DPoP", "scope": "atproto", "sub": DID}),
        )],
    );
    let (_, state) = client
        .start_authorization(
            &AuthorizationTarget::parse(DID).unwrap(),
            &StartOptions::default(),
        )
        .await
        .unwrap();
    let callback = CallbackParams::from_pairs([
        ("code", "c"),
        ("state", state.state.as_str()),
        ("iss", stub.url.as_str()),
    ]);
    let session = client.finish_authorization(state, &callback).await.unwrap();
    let collection = Nsid::parse("zone.stratos.actor.enrollment").unwrap();
    let rkey = RecordKey::parse("self").unwrap();
    let put = "/xrpc/com.atproto.repo.putRecord";

    // 401 use_dpop_nonce → the same write again with the nonce; the new nonce comes back.
    stub.on(
        put,
        vec![
            Reply(401, vec![("www-authenticate", r#"DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof""#.into()), ("dpop-nonce", "p-1".into())], json!({"error": "use_dpop_nonce"})),
            Reply(200, vec![], json!({"uri": format!("at://{DID}/zone.stratos.actor.enrollment/self"), "cid": "bafyreib2rxk3rh6kzwq"})),
        ],
    );
    let write = client
        .put_record(&session, &collection, &rkey, &json!({"a": 1}))
        .await
        .unwrap();
    let updated = write.session.expect("a new PDS nonce to store");
    assert_eq!(updated.pds_nonce.as_deref(), Some("p-1"));
    let calls = stub.seen(put);
    assert_eq!(calls.len(), 2);
    let url = format!("{}{put}", stub.url);
    assert_eq!(calls[1].headers["authorization"], "DPoP at-1");
    let proof = check_proof(&calls[1], &url, Some("p-1"), Some("at-1"));
    assert!(proof.get("ath").is_some());
    let body: Value = serde_json::from_str(&calls[1].body).unwrap();
    assert_eq!(
        body,
        json!({"repo": DID, "collection": "zone.stratos.actor.enrollment", "rkey": "self", "record": {"a": 1}})
    );

    // Expired token → refresh; PDS down → later (with Retry-After); bad record → give up.
    type Check = fn(&PdsClientError) -> bool;
    let cases: Vec<(Reply, Check)> = vec![
        (
            Reply(
                401,
                vec![(
                    "www-authenticate",
                    r#"DPoP error="invalid_token", error_description="Token expired""#.into(),
                )],
                json!({"error": "InvalidToken", "message": "Token expired"}),
            ),
            |e| matches!(e, PdsClientError::TokenRejected(_)),
        ),
        (
            Reply(503, vec![("retry-after", "30".into())], json!({})),
            |e| {
                matches!(
                    e,
                    PdsClientError::Transient {
                        retry_after_secs: Some(30),
                        ..
                    }
                )
            },
        ),
        (
            Reply(
                400,
                vec![],
                json!({"error": "InvalidRequest", "message": "Invalid record"}),
            ),
            |e| matches!(e, PdsClientError::Rejected { status: 400, .. }),
        ),
    ];
    for (reply, expected) in cases {
        stub.on(put, vec![reply]);
        let err = client
            .put_record(&updated, &collection, &rkey, &json!({}))
            .await
            .unwrap_err();
        assert!(expected(&err), "{err:?}");
    }

    // A PDS that is not there at all: retry later.
    let mut gone = updated.clone();
    gone.pds_url = "http://127.0.0.1:9".into();
    let err = client
        .delete_record(&gone, &collection, &rkey)
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
}
