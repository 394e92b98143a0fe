#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! `HttpIdentityResolver` against a tiny HTTP server run by the test: did:plc through a
//! directory, did:web with a port, handles, the cache (hits, TTL expiry, invalidation), the body
//! size limit and the plain-HTTP rules; and `signing_key` on both verification method id forms.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use stratos_domain::crypto::PublicKey;
use stratos_domain::syntax::Did;
use stratos_network::identity::DEFAULT_MAX_BYTES;
use stratos_network::{
    HttpIdentityResolver, IdentityConfig, NetworkError, signing_key, signing_public_key,
};
use stratos_ports::env::{EnvError, IdentityResolver};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const ALICE: &str = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";
const BOB: &str = "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb";
const CAROL: &str = "did:plc:cccccccccccccccccccccccc";
const DAVE: &str = "did:plc:dddddddddddddddddddddddd";
const ERIN: &str = "did:plc:eeeeeeeeeeeeeeeeeeeeeeee";

#[derive(Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    /// Sends `Content-Length`; without it the body ends when the connection closes.
    with_length: bool,
}

fn reply(status: u16, body: impl Into<String>) -> Reply {
    Reply {
        status,
        headers: Vec::new(),
        body: body.into(),
        with_length: true,
    }
}

fn json_reply(doc: &Value) -> Reply {
    Reply {
        headers: vec![("Content-Type", "application/json".into())],
        ..reply(200, doc.to_string())
    }
}

/// Answers by `{host}{path}` (the `Host` header without its port), 404 for anything unknown,
/// and records every request it reads.
struct Server {
    addr: SocketAddr,
    routes: Arc<Mutex<HashMap<String, Reply>>>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Server {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let routes: Arc<Mutex<HashMap<String, Reply>>> = Arc::default();
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let (table, log) = (routes.clone(), seen.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let (table, log) = (table.clone(), log.clone());
                tokio::spawn(async move {
                    // Read the request head; the client sends no body with a GET.
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
                    let host = head
                        .lines()
                        .find_map(|l| l.strip_prefix("host: ").or(l.strip_prefix("Host: ")))
                        .unwrap_or_default();
                    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
                    let key = format!("{host}{path}");
                    log.lock().unwrap().push(key.clone());
                    let r = table
                        .lock()
                        .unwrap()
                        .get(&key)
                        .cloned()
                        .unwrap_or_else(|| reply(404, "not found"));
                    let mut out = format!("HTTP/1.1 {} Status\r\nConnection: close\r\n", r.status);
                    for (name, value) in &r.headers {
                        out.push_str(&format!("{name}: {value}\r\n"));
                    }
                    if r.with_length {
                        out.push_str(&format!("Content-Length: {}\r\n", r.body.len()));
                    }
                    out.push_str("\r\n");
                    out.push_str(&r.body);
                    let _ = socket.write_all(out.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Self { addr, routes, seen }
    }

    fn route(&self, key: impl Into<String>, reply: Reply) {
        self.routes.lock().unwrap().insert(key.into(), reply);
    }

    /// A route on the directory (`http://127.0.0.1:{port}`).
    fn plc(&self, did: &str, reply: Reply) {
        self.route(format!("127.0.0.1/{did}"), reply);
    }

    fn plc_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn requests(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn requests_for(&self, key: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|k| *k == key)
            .count()
    }
}

fn did(s: &str) -> Did {
    Did::parse(s).unwrap()
}

fn doc(id: &str) -> Value {
    json!({
        "@context": ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/multikey/v1"],
        "id": id,
        "alsoKnownAs": ["at://alice.test"],
        "verificationMethod": [{
            "id": format!("{id}#atproto"),
            "type": "Multikey",
            "controller": id,
            "publicKeyMultibase": "zQ3shXjHeiBuRCKmM36cuYnm7YEMzhGnCmCyW92sRJ9pribSF",
        }],
        "service": [{
            "id": "#atproto_pds",
            "type": "AtprotoPersonalDataServer",
            "serviceEndpoint": "https://pds.example",
        }],
    })
}

/// Resolves against `server` as its PLC directory, over plain HTTP on loopback, and lets
/// `did:web` and handles reach it there too.
fn config(server: &Server) -> IdentityConfig {
    IdentityConfig {
        plc_url: server.plc_url(),
        allow_http_for_localhost: true,
        allow_private_targets: true,
        ..IdentityConfig::default()
    }
}

fn resolver(config: IdentityConfig) -> HttpIdentityResolver {
    HttpIdentityResolver::new(config).unwrap()
}

async fn resolve(r: &HttpIdentityResolver, d: &str) -> Result<Option<Value>, EnvError> {
    r.resolve_did(&did(d)).await
}

#[tokio::test]
async fn did_plc_found_gone_missing_and_mismatched() {
    let server = Server::start().await;
    server.plc(ALICE, json_reply(&doc(ALICE)));
    server.plc(BOB, reply(410, "tombstoned"));
    // A directory (or anyone in between) answering with another DID's document.
    server.plc(CAROL, json_reply(&doc(ALICE)));
    server.plc(DAVE, reply(200, "<html>not json</html>"));
    let r = resolver(config(&server));

    assert_eq!(resolve(&r, ALICE).await.unwrap(), Some(doc(ALICE)));
    assert_eq!(resolve(&r, BOB).await.unwrap(), None, "410 is gone");
    assert_eq!(resolve(&r, ERIN).await.unwrap(), None, "404 is missing");
    assert_eq!(resolve(&r, CAROL).await.unwrap(), None, "the id must match");
    let err = resolve(&r, DAVE).await.unwrap_err();
    assert!(
        matches!(&err, EnvError::Backend(m) if m.to_string().contains("invalid response body")),
        "{err}"
    );
    assert_eq!(server.requests(), 5);

    // Malformed did:plc identifiers and unsupported methods never reach the network.
    assert_eq!(resolve(&r, "did:plc:short").await.unwrap(), None);
    assert_eq!(resolve(&r, "did:example:123").await.unwrap(), None);
    assert_eq!(server.requests(), 5);
}

#[tokio::test]
async fn server_errors_are_errors_and_are_not_cached() {
    let server = Server::start().await;
    server.plc(ALICE, reply(503, "overloaded"));
    let r = resolver(config(&server));
    let err = resolve(&r, ALICE).await.unwrap_err();
    assert!(
        matches!(&err, EnvError::Backend(m) if m.to_string().contains("HTTP status 503")),
        "{err}"
    );

    server.plc(ALICE, json_reply(&doc(ALICE)));
    assert_eq!(resolve(&r, ALICE).await.unwrap(), Some(doc(ALICE)));
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn did_web_with_a_port_on_localhost() {
    let server = Server::start().await;
    let port = server.addr.port();
    let web = format!("did:web:localhost%3A{port}");
    server.route("localhost/.well-known/did.json", json_reply(&doc(&web)));
    let r = resolver(config(&server));

    assert_eq!(resolve(&r, &web).await.unwrap(), Some(doc(&web)));
    assert_eq!(server.requests_for("localhost/.well-known/did.json"), 1);

    // Path-based did:web is not atproto's: no request is made.
    let path_based = format!("did:web:localhost%3A{port}:user:alice");
    assert_eq!(resolve(&r, &path_based).await.unwrap(), None);
    assert_eq!(server.requests(), 1);

    // The document must be about this DID, not merely served from its host.
    let other = format!("did:web:localhost%3a{port}");
    assert_eq!(resolve(&r, &other).await.unwrap(), None);
}

#[tokio::test]
async fn without_the_flag_localhost_is_only_reached_over_https() {
    let server = Server::start().await;
    let web = format!("did:web:localhost%3A{}", server.addr.port());
    server.route("localhost/.well-known/did.json", json_reply(&doc(&web)));
    let r = resolver(IdentityConfig {
        timeout: Duration::from_millis(500),
        // Only the scheme rule is under test here.
        allow_private_targets: true,
        ..IdentityConfig::default()
    });
    // The plain-HTTP server cannot complete a TLS handshake, so this fails; what matters is
    // that no plain HTTP request was sent.
    assert!(resolve(&r, &web).await.is_err());
    assert_eq!(server.requests(), 0);

    // And the directory URL is held to the same rule.
    for (url, allow) in [
        (server.plc_url(), false),
        ("http://plc.example".to_owned(), true),
        ("ftp://plc.example".to_owned(), true),
    ] {
        let refused = HttpIdentityResolver::new(IdentityConfig {
            plc_url: url.clone(),
            allow_http_for_localhost: allow,
            ..IdentityConfig::default()
        });
        assert!(
            matches!(refused, Err(NetworkError::InvalidUri(_))),
            "{url}: {refused:?}"
        );
    }
}

#[tokio::test]
async fn redirects_to_plain_http_are_refused() {
    let server = Server::start().await;
    server.plc(
        ALICE,
        Reply {
            headers: vec![("Location", "http://plc.example/elsewhere".into())],
            ..reply(302, "")
        },
    );
    // A redirect that stays on loopback is followed when plain HTTP is allowed there.
    server.plc(
        BOB,
        Reply {
            headers: vec![("Location", format!("http://{}/moved", server.addr))],
            ..reply(301, "")
        },
    );
    server.route("127.0.0.1/moved", json_reply(&doc(BOB)));
    let r = resolver(config(&server));

    let err = resolve(&r, ALICE).await.unwrap_err();
    assert!(
        matches!(&err, EnvError::Backend(m) if m.to_string().contains("redirect")),
        "{err}"
    );
    assert_eq!(resolve(&r, BOB).await.unwrap(), Some(doc(BOB)));
}

#[tokio::test]
async fn handles_resolve_through_the_well_known_file() {
    let server = Server::start().await;
    server.route(
        "alice.localhost/.well-known/atproto-did",
        reply(200, format!("  {ALICE}\r\n")),
    );
    server.route(
        "bob.localhost/.well-known/atproto-did",
        reply(200, format!("{ALICE}\n{BOB}\n")),
    );
    server.route(
        "carol.localhost/.well-known/atproto-did",
        reply(500, "oops"),
    );
    // Handles carry no port: pin their names to the test server.
    let host_overrides = ["alice", "bob", "carol", "dave"]
        .map(|name| (format!("{name}.localhost"), server.addr))
        .to_vec();
    let r = resolver(IdentityConfig {
        host_overrides,
        ..config(&server)
    });

    assert_eq!(
        r.resolve_handle("alice.localhost").await.unwrap(),
        Some(did(ALICE))
    );
    assert_eq!(
        r.resolve_handle("Alice.LOCALHOST").await.unwrap(),
        Some(did(ALICE)),
        "handles are case-insensitive, and this one is cached"
    );
    assert_eq!(
        server.requests_for("alice.localhost/.well-known/atproto-did"),
        1
    );
    assert_eq!(
        r.resolve_handle("bob.localhost").await.unwrap(),
        None,
        "two DIDs are no DID"
    );
    assert_eq!(
        r.resolve_handle("dave.localhost").await.unwrap(),
        None,
        "404"
    );
    assert!(r.resolve_handle("carol.localhost").await.is_err());
    let before = server.requests();
    assert_eq!(r.resolve_handle("not a handle").await.unwrap(), None);
    assert_eq!(r.resolve_handle("localhost").await.unwrap(), None);
    assert_eq!(server.requests(), before, "invalid handles are not fetched");

    r.invalidate_handle("ALICE.localhost");
    r.resolve_handle("alice.localhost").await.unwrap();
    assert_eq!(
        server.requests_for("alice.localhost/.well-known/atproto-did"),
        2
    );
}

#[tokio::test]
async fn cache_hits_do_not_reach_the_server_until_invalidated() {
    let server = Server::start().await;
    server.plc(ALICE, json_reply(&doc(ALICE)));
    let r = resolver(config(&server));
    for _ in 0..5 {
        assert_eq!(resolve(&r, ALICE).await.unwrap(), Some(doc(ALICE)));
    }
    assert_eq!(server.requests(), 1);

    // A rotated key shows up after invalidation, not before.
    let mut rotated = doc(ALICE);
    rotated["verificationMethod"][0]["publicKeyMultibase"] = json!("zRotated");
    server.plc(ALICE, json_reply(&rotated));
    assert_eq!(resolve(&r, ALICE).await.unwrap(), Some(doc(ALICE)));
    r.invalidate(&did(ALICE));
    assert_eq!(resolve(&r, ALICE).await.unwrap(), Some(rotated.clone()));
    assert_eq!(resolve(&r, ALICE).await.unwrap(), Some(rotated));
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn negative_answers_expire_after_their_ttl() {
    let server = Server::start().await;
    let r = resolver(IdentityConfig {
        negative_ttl: Duration::from_millis(500),
        ..config(&server)
    });
    assert_eq!(resolve(&r, ALICE).await.unwrap(), None);
    assert_eq!(resolve(&r, ALICE).await.unwrap(), None);
    assert_eq!(server.requests(), 1, "the miss is cached");

    // The account is created; the cached "missing" lasts only the negative TTL.
    server.plc(ALICE, json_reply(&doc(ALICE)));
    assert_eq!(resolve(&r, ALICE).await.unwrap(), None);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(resolve(&r, ALICE).await.unwrap(), Some(doc(ALICE)));
    assert_eq!(server.requests(), 2);
    // Found answers keep the (default, long) positive TTL.
    assert_eq!(resolve(&r, ALICE).await.unwrap(), Some(doc(ALICE)));
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn positive_answers_expire_after_their_ttl() {
    let server = Server::start().await;
    server.plc(ALICE, json_reply(&doc(ALICE)));
    let r = resolver(IdentityConfig {
        positive_ttl: Duration::from_millis(500),
        ..config(&server)
    });
    resolve(&r, ALICE).await.unwrap();
    resolve(&r, ALICE).await.unwrap();
    assert_eq!(server.requests(), 1);
    tokio::time::sleep(Duration::from_millis(800)).await;
    resolve(&r, ALICE).await.unwrap();
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_or_without_a_length() {
    let server = Server::start().await;
    let mut big = doc(ALICE);
    big["padding"] = json!("x".repeat(4096));
    server.plc(ALICE, json_reply(&big));
    server.plc(
        BOB,
        Reply {
            with_length: false,
            ..json_reply(&big)
        },
    );
    let r = resolver(IdentityConfig {
        max_bytes: 1024,
        ..config(&server)
    });
    for d in [ALICE, BOB] {
        let err = resolve(&r, d).await.unwrap_err();
        assert!(
            matches!(&err, EnvError::Backend(m) if m.to_string().contains("larger than 1024 bytes")),
            "{d}: {err}"
        );
    }
    // Refusals are not cached as answers.
    resolve(&r, ALICE).await.unwrap_err();
    assert_eq!(server.requests(), 3);

    // The default limit takes the same document.
    assert!(big.to_string().len() < DEFAULT_MAX_BYTES);
    assert_eq!(
        resolve(&resolver(config(&server)), ALICE).await.unwrap(),
        Some(big)
    );
}

#[test]
fn invalid_configurations_are_refused() {
    let bad = [
        IdentityConfig {
            timeout: Duration::ZERO,
            ..IdentityConfig::default()
        },
        IdentityConfig {
            max_bytes: 0,
            ..IdentityConfig::default()
        },
        IdentityConfig {
            positive_ttl: Duration::from_secs(2 * 24 * 3600),
            ..IdentityConfig::default()
        },
    ];
    for config in bad {
        assert!(
            matches!(
                HttpIdentityResolver::new(config.clone()),
                Err(NetworkError::InvalidConfig(_))
            ),
            "{config:?}"
        );
    }
    assert!(matches!(
        HttpIdentityResolver::new(IdentityConfig {
            plc_url: "https://plc.example/?q=1".into(),
            ..IdentityConfig::default()
        }),
        Err(NetworkError::InvalidUri(_))
    ));
    HttpIdentityResolver::new(IdentityConfig::default()).unwrap();
}

#[test]
fn signing_key_reads_either_id_form() {
    let key = "zQ3shXjHeiBuRCKmM36cuYnm7YEMzhGnCmCyW92sRJ9pribSF";
    let full = doc(ALICE);
    assert_eq!(signing_key(&full).as_deref(), Some(key));

    let mut relative = doc(ALICE);
    relative["verificationMethod"][0]["id"] = json!("#atproto");
    assert_eq!(signing_key(&relative).as_deref(), Some(key));

    // Other methods come first in some documents.
    let mut second = doc(ALICE);
    second["verificationMethod"] = json!([
        {"id": format!("{ALICE}#other"), "type": "Multikey", "publicKeyMultibase": "zOther"},
        {"id": "#atproto", "type": "Multikey", "publicKeyMultibase": key},
    ]);
    assert_eq!(signing_key(&second).as_deref(), Some(key));

    // Another DID's #atproto key is not this document's.
    let mut foreign = doc(ALICE);
    foreign["verificationMethod"][0]["id"] = json!(format!("{BOB}#atproto"));
    assert_eq!(signing_key(&foreign), None);

    let mut no_methods = doc(ALICE);
    no_methods
        .as_object_mut()
        .unwrap()
        .remove("verificationMethod");
    assert_eq!(signing_key(&no_methods), None);
    assert_eq!(signing_key(&json!("not a document")), None);
}

/// Service-auth JWTs are checked against this key. Before, only the `Multikey` form was read,
/// so every account of a PLC directory rendering the legacy suites — such as `@did-plc/server`
/// 0.0.1 from npm, the PLC of the e2e harness — had an "unusable" key and every token it minted
/// was refused (`apps/service/tests/e2e_pds.rs`).
#[test]
fn signing_public_key_reads_multikey_and_the_legacy_suites() {
    let with = |kind: Option<&str>, multibase: Option<&str>| {
        let mut d = doc(ALICE);
        let method = &mut d["verificationMethod"][0];
        match kind {
            Some(k) => method["type"] = json!(k),
            None => {
                method.as_object_mut().unwrap().remove("type");
            }
        }
        match multibase {
            Some(m) => method["publicKeyMultibase"] = json!(m),
            None => {
                method.as_object_mut().unwrap().remove("publicKeyMultibase");
            }
        }
        d
    };
    let key = |did_key: &str| PublicKey::from_did_key(did_key).unwrap();
    // The interop signature fixtures' keys (compressed points under the legacy suites) and a key
    // as @did-plc/server 0.0.1 publishes it (uncompressed point).
    let k256 = "did:key:zQ3shqwJEJyMBsBXCWyCBpUBMqxcon9oHB7mCvx4sSpMdLJwc";
    let p256 = "did:key:zDnaembgSGUhZULN2Caob4HLJPaxBh92N7rtH21TErzqf8HQo";
    let plc = "did:key:zQ3shTLXmJKDMhnvusdvdHSuxDXPbpwFp2xMXhBpMpKxgMEwe";
    let cases = [
        (Some("Multikey"), &k256[8..], k256),
        (None, &p256[8..], p256),
        (
            Some("EcdsaSecp256k1VerificationKey2019"),
            "z25z9DTpsiYYJKGsWmSPJK2NFN8PcJtZig12K59UgW7q5t",
            k256,
        ),
        (
            Some("EcdsaSecp256r1VerificationKey2019"),
            "zxdM8dSstjrpZaRUwBmDvjGXweKuEMVN95A9oJBFjkWMh",
            p256,
        ),
        (
            Some("EcdsaSecp256k1VerificationKey2019"),
            "zPEYqPy9dhe2uoHcYNBeqK7ExQQSnTi626kFRAUwRVK88uK2rhwDLZgvP7p8PHHurkwti6PhSGvBTYW9AQwjLbtUM",
            plc,
        ),
    ];
    for (kind, multibase, expected) in cases {
        let got = signing_public_key(&with(kind, Some(multibase)));
        assert_eq!(got.unwrap().unwrap(), key(expected), "{kind:?} {multibase}");
    }
    // A method that is there but unusable is an error, not a missing key.
    for bad in [
        with(Some("JsonWebKey2020"), Some(&k256[8..])),
        with(Some("EcdsaSecp256k1VerificationKey2019"), Some(&k256[8..])),
        with(
            Some("Multikey"),
            Some("z25z9DTpsiYYJKGsWmSPJK2NFN8PcJtZig12K59UgW7q5t"),
        ),
        with(Some("Multikey"), None),
    ] {
        assert!(matches!(signing_public_key(&bad), Some(Err(_))), "{bad}");
    }
    let mut foreign = doc(ALICE);
    foreign["verificationMethod"][0]["id"] = json!(format!("{BOB}#atproto"));
    assert!(signing_public_key(&foreign).is_none());
    assert!(signing_public_key(&json!("not a document")).is_none());
}

#[tokio::test]
async fn did_web_and_handles_on_private_addresses_are_refused_unless_allowed() {
    let server = Server::start().await;
    let web = format!("did:web:localhost%3A{}", server.addr.port());
    server.route("localhost/.well-known/did.json", json_reply(&doc(&web)));
    server.route("alice.localhost/.well-known/atproto-did", reply(200, ALICE));
    server.plc(ALICE, json_reply(&doc(ALICE)));
    let pinned = vec![("alice.localhost".to_owned(), server.addr)];
    let guarded = resolver(IdentityConfig {
        allow_private_targets: false,
        host_overrides: pinned.clone(),
        ..config(&server)
    });
    // `localhost` is resolved by the system and `alice.localhost` pinned, both to loopback:
    // refused after resolution, before any request.
    let err = resolve(&guarded, &web).await.unwrap_err();
    assert!(
        matches!(&err, EnvError::Backend(m) if m.to_string().contains("not a public address")),
        "{err}"
    );
    let err = guarded.resolve_handle("alice.localhost").await.unwrap_err();
    assert!(err.to_string().contains("not a public address"), "{err}");
    assert_eq!(server.requests(), 0);
    // The operator's PLC directory is trusted wherever it is.
    assert_eq!(resolve(&guarded, ALICE).await.unwrap(), Some(doc(ALICE)));
    assert_eq!(server.requests(), 1);

    let allowed = resolver(IdentityConfig {
        host_overrides: pinned,
        ..config(&server)
    });
    assert_eq!(resolve(&allowed, &web).await.unwrap(), Some(doc(&web)));
    assert_eq!(
        allowed.resolve_handle("alice.localhost").await.unwrap(),
        Some(did(ALICE))
    );
    assert_eq!(server.requests(), 3);
}

#[tokio::test]
async fn failed_did_web_and_handle_lookups_are_cached_briefly() {
    let server = Server::start().await;
    let port = server.addr.port();
    let web = format!("did:web:localhost%3A{port}");
    let mut big = doc(&web);
    big["padding"] = json!("x".repeat(4096));
    server.route("localhost/.well-known/did.json", json_reply(&big));
    server.route(
        "carol.localhost/.well-known/atproto-did",
        reply(500, "oops"),
    );
    let r = resolver(IdentityConfig {
        max_bytes: 1024,
        failure_ttl: Duration::from_millis(300),
        host_overrides: vec![("carol.localhost".to_owned(), server.addr)],
        ..config(&server)
    });
    for _ in 0..3 {
        let err = resolve(&r, &web).await.unwrap_err();
        assert!(err.to_string().contains("larger than 1024 bytes"), "{err}");
        assert!(r.resolve_handle("carol.localhost").await.is_err());
    }
    assert_eq!(server.requests_for("localhost/.well-known/did.json"), 1);
    assert_eq!(
        server.requests_for("carol.localhost/.well-known/atproto-did"),
        1
    );

    // The host is fixed; the failure is remembered only for its TTL.
    server.route("localhost/.well-known/did.json", json_reply(&doc(&web)));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(resolve(&r, &web).await.unwrap(), Some(doc(&web)));
    assert_eq!(server.requests_for("localhost/.well-known/did.json"), 2);
}

/// `PublicRecords`: an account's records from the PDS its document names, paged by cursor and
/// cut at the limit; a PDS on a private address is refused unless allowed; no PDS, none.
#[tokio::test]
async fn public_records_page_through_the_accounts_pds_under_the_address_rule() {
    use stratos_domain::syntax::Nsid;
    use stratos_ports::env::PublicRecords;

    let server = Server::start().await;
    let mut alice = doc(ALICE);
    alice["service"][0]["serviceEndpoint"] =
        json!(format!("http://localhost:{}", server.addr.port()));
    server.plc(ALICE, json_reply(&alice));
    let mut bob = doc(BOB);
    bob["service"] = json!([]);
    server.plc(BOB, json_reply(&bob));
    let collection = "zone.stratos.actor.enrollment";
    let list = |query: &str| {
        format!(
            "localhost/xrpc/com.atproto.repo.listRecords?repo={}&collection={collection}&{query}",
            ALICE.replace(':', "%3A")
        )
    };
    let record = |rkey: &str| json!({ "uri": format!("at://{ALICE}/{collection}/{rkey}"), "cid": "x", "value": { "n": rkey } });
    server.route(
        list("limit=100"),
        json_reply(&json!({ "records": [record("a"), record("b")], "cursor": "c1" })),
    );
    server.route(
        list("limit=98&cursor=c1"),
        json_reply(&json!({ "records": [record("c")] })),
    );
    server.route(
        list("limit=2"),
        json_reply(&json!({ "records": [record("a"), record("b")], "cursor": "c1" })),
    );
    let collection = Nsid::parse(collection).unwrap();

    let r = resolver(config(&server));
    let got = r.list_records(&did(ALICE), &collection, 100).await.unwrap();
    let keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["a", "b", "c"]);
    assert_eq!(got[2].1, json!({ "n": "c" }));
    assert_eq!(
        r.list_records(&did(ALICE), &collection, 2)
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(
        r.list_records(&did(BOB), &collection, 10)
            .await
            .unwrap()
            .is_empty(),
        "no PDS"
    );
    assert!(
        r.list_records(&did(ERIN), &collection, 10)
            .await
            .unwrap()
            .is_empty(),
        "no account"
    );

    let guarded = resolver(IdentityConfig {
        allow_private_targets: false,
        ..config(&server)
    });
    let before = server.requests_for(&list("limit=100"));
    let err = guarded
        .list_records(&did(ALICE), &collection, 100)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not a public address"), "{err}");
    assert_eq!(
        server.requests_for(&list("limit=100")),
        before,
        "refused before any request"
    );
}
