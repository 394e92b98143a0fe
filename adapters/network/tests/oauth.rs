#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! `HttpAuthorizationServers` against a stub PDS and authorization server: discovery through
//! the protected-resource and authorization-server metadata, refusal of issuers the PDS does not
//! name or that misstate themselves, caching, rate-limited refreshes and the https rule.

use std::time::Duration;

use serde_json::{Value, json};
use stratos_domain::auth::jwk_from_public_key;
use stratos_domain::crypto::{KeyAlgorithm, Keypair};
use stratos_network::{AuthServerConfig, HttpAuthorizationServers};
use stratos_ports::env::AuthorizationServers;
use stratos_testkit::http_stub::StubServer;

const RESOURCE: &str = "/.well-known/oauth-protected-resource";
const METADATA: &str = "/.well-known/oauth-authorization-server";
const JWKS: &str = "/oauth/jwks";

fn jwks(keys: &[(&Keypair, &str)]) -> Value {
    let keys: Vec<Value> = keys
        .iter()
        .map(|(k, kid)| {
            let mut jwk = jwk_from_public_key(k.public_key());
            jwk["kid"] = json!(kid);
            jwk
        })
        .collect();
    json!({ "keys": keys })
}

/// One server playing both the PDS and its authorization server (as an entryway-less PDS does).
async fn pds(key: &Keypair) -> StubServer {
    let server = StubServer::start().await.unwrap();
    let origin = server.url();
    server.json(
        RESOURCE,
        &json!({ "resource": origin, "authorization_servers": [origin] }),
    );
    server.json(
        METADATA,
        &json!({ "issuer": origin, "jwks_uri": format!("{origin}{JWKS}") }),
    );
    server.json(JWKS, &jwks(&[(key, "k1")]));
    server
}

fn client(min_refresh: Duration) -> HttpAuthorizationServers {
    HttpAuthorizationServers::new(AuthServerConfig {
        allow_http_for_localhost: true,
        allow_private_targets: true,
        min_refresh_interval: min_refresh,
        ..AuthServerConfig::default()
    })
    .unwrap()
}

#[tokio::test]
async fn keys_of_the_pds_authorization_server_are_discovered_and_cached() {
    let key = Keypair::generate(KeyAlgorithm::P256);
    let server = pds(&key).await;
    let servers = client(Duration::from_secs(60));
    let origin = server.url();
    let keys = servers
        .issuer_keys(&origin, &origin, false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].kid.as_deref(), Some("k1"));
    assert_eq!(&keys[0].key, key.public_key());
    // The PDS URL may carry a path; only its origin matters.
    servers
        .issuer_keys(&format!("{origin}/"), &origin, false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(server.hits(RESOURCE), 1);
    assert_eq!(server.hits(METADATA), 1);
    assert_eq!(server.hits(JWKS), 1);
    // A forced refresh (unknown kid) refetches once; more within the cooldown are served from
    // the cache, so made-up kids cost nothing.
    servers.issuer_keys(&origin, &origin, true).await.unwrap();
    assert_eq!(server.hits(JWKS), 2);
    for _ in 0..3 {
        servers.issuer_keys(&origin, &origin, true).await.unwrap();
    }
    assert_eq!(server.hits(JWKS), 2);
}

#[tokio::test]
async fn refresh_picks_up_rotated_keys() {
    let key = Keypair::generate(KeyAlgorithm::P256);
    let server = pds(&key).await;
    let servers = client(Duration::from_secs(60));
    let origin = server.url();
    servers.issuer_keys(&origin, &origin, false).await.unwrap();
    let rotated = Keypair::generate(KeyAlgorithm::P256);
    server.json(JWKS, &jwks(&[(&rotated, "k2")]));
    let cached = servers
        .issuer_keys(&origin, &origin, false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cached[0].kid.as_deref(), Some("k1"));
    let fresh = servers
        .issuer_keys(&origin, &origin, true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fresh[0].kid.as_deref(), Some("k2"));
    assert_eq!(&fresh[0].key, rotated.public_key());
}

#[tokio::test]
async fn issuers_the_pds_does_not_name_get_no_keys() {
    let key = Keypair::generate(KeyAlgorithm::P256);
    let server = pds(&key).await;
    let rogue = pds(&Keypair::generate(KeyAlgorithm::P256)).await;
    let servers = client(Duration::from_secs(60));
    // A real authorization server, but not this PDS's: no keys, and it is never contacted.
    let found = servers
        .issuer_keys(&server.url(), &rogue.url(), false)
        .await
        .unwrap();
    assert!(found.is_none());
    assert_eq!(rogue.hits(METADATA), 0);
    // A PDS without protected-resource metadata names no server.
    let bare = StubServer::start().await.unwrap();
    assert!(
        servers
            .issuer_keys(&bare.url(), &bare.url(), false)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_server_claiming_another_issuer_gets_no_keys() {
    let key = Keypair::generate(KeyAlgorithm::P256);
    let server = pds(&key).await;
    let origin = server.url();
    server.json(
        METADATA,
        &json!({ "issuer": "https://bsky.social", "jwks_uri": format!("{origin}{JWKS}") }),
    );
    let servers = client(Duration::from_secs(60));
    assert!(
        servers
            .issuer_keys(&origin, &origin, false)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn metadata_about_another_resource_is_an_error() {
    let key = Keypair::generate(KeyAlgorithm::P256);
    let server = pds(&key).await;
    let origin = server.url();
    server.json(
        RESOURCE,
        &json!({ "resource": "https://other.example", "authorization_servers": [origin] }),
    );
    let servers = client(Duration::from_secs(60));
    assert!(servers.issuer_keys(&origin, &origin, false).await.is_err());
}

#[tokio::test]
async fn plain_http_is_refused_unless_allowed_for_loopback() {
    let key = Keypair::generate(KeyAlgorithm::P256);
    let server = pds(&key).await;
    let servers = HttpAuthorizationServers::new(AuthServerConfig {
        // Only the scheme rule is under test here.
        allow_private_targets: true,
        ..AuthServerConfig::default()
    })
    .unwrap();
    let origin = server.url();
    assert!(servers.issuer_keys(&origin, &origin, false).await.is_err());
    assert_eq!(server.hits(RESOURCE), 0);
}

/// The guard on (the default), plain HTTP allowed so that only the address rule decides.
fn guarded(host_overrides: Vec<(String, std::net::SocketAddr)>) -> HttpAuthorizationServers {
    HttpAuthorizationServers::new(AuthServerConfig {
        allow_http_for_localhost: true,
        host_overrides,
        ..AuthServerConfig::default()
    })
    .unwrap()
}

#[tokio::test]
async fn private_targets_are_refused_before_any_request_unless_allowed() {
    let key = Keypair::generate(KeyAlgorithm::P256);
    let server = pds(&key).await;
    let origin = server.url();
    let port = server.addr().port();
    let servers = guarded(vec![("pds.localhost".into(), server.addr())]);
    // An IP literal (never seen by a resolver), a name the system resolves to loopback, and a
    // name pinned to loopback: all refused, and the server never hears of it.
    for pds in [
        origin.clone(),
        format!("http://localhost:{port}"),
        format!("http://pds.localhost:{port}"),
        format!("https://[::ffff:127.0.0.1]:{port}"),
    ] {
        let err = servers.issuer_keys(&pds, &origin, false).await.unwrap_err();
        assert!(
            err.to_string().contains("not a public address"),
            "{pds}: {err}"
        );
    }
    assert_eq!(server.hits(RESOURCE), 0);

    // With the switch set, the same server is used.
    let allowed = HttpAuthorizationServers::new(AuthServerConfig {
        allow_http_for_localhost: true,
        allow_private_targets: true,
        ..AuthServerConfig::default()
    })
    .unwrap();
    let keys = allowed.issuer_keys(&origin, &origin, false).await.unwrap();
    assert_eq!(keys.unwrap()[0].kid.as_deref(), Some("k1"));
    assert_eq!(server.hits(RESOURCE), 1);
}

#[tokio::test]
async fn failed_discoveries_are_cached_so_a_repeated_token_fetches_nothing() {
    use stratos_testkit::http_stub::StubReply;
    // Four PDSes whose discovery fails at each step in turn.
    let key = Keypair::generate(KeyAlgorithm::P256);
    let broken = pds(&key).await;
    broken.route(RESOURCE, StubReply::status(500, "oops"));
    let not_an_as = pds(&key).await;
    not_an_as.route(METADATA, StubReply::status(404, "no"));
    let huge_keys = pds(&key).await;
    huge_keys.route(JWKS, StubReply::status(200, &"x".repeat(300 * 1024)));
    let gone_keys = pds(&key).await;
    gone_keys.route(JWKS, StubReply::status(404, "no"));
    let servers = client(Duration::from_secs(60));

    for round in 0..3 {
        let refresh = round == 2; // a forced refresh does not bypass a cached failure either
        let origin = broken.url();
        assert!(
            servers
                .issuer_keys(&origin, &origin, refresh)
                .await
                .is_err()
        );
        let origin = not_an_as.url();
        let found = servers
            .issuer_keys(&origin, &origin, refresh)
            .await
            .unwrap();
        assert!(found.is_none());
        let origin = huge_keys.url();
        let err = servers
            .issuer_keys(&origin, &origin, refresh)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("larger than"), "{err}");
        let origin = gone_keys.url();
        assert!(
            servers
                .issuer_keys(&origin, &origin, refresh)
                .await
                .is_err()
        );
    }
    assert_eq!(broken.hits(RESOURCE), 1);
    assert_eq!(not_an_as.hits(METADATA), 1);
    assert_eq!(huge_keys.hits(JWKS), 1);
    assert_eq!(gone_keys.hits(JWKS), 1);
}

#[tokio::test]
async fn a_cached_failure_expires_after_its_ttl() {
    use stratos_testkit::http_stub::StubReply;
    let key = Keypair::generate(KeyAlgorithm::P256);
    let server = pds(&key).await;
    server.route(RESOURCE, StubReply::status(503, "later"));
    let servers = HttpAuthorizationServers::new(AuthServerConfig {
        allow_http_for_localhost: true,
        allow_private_targets: true,
        failure_ttl: Duration::from_millis(300),
        ..AuthServerConfig::default()
    })
    .unwrap();
    let origin = server.url();
    assert!(servers.issuer_keys(&origin, &origin, false).await.is_err());
    // The PDS recovers; the failure is remembered only for its TTL.
    let origin_doc = json!({ "resource": origin, "authorization_servers": [origin] });
    server.json(RESOURCE, &origin_doc);
    assert!(servers.issuer_keys(&origin, &origin, false).await.is_err());
    assert_eq!(server.hits(RESOURCE), 1);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        servers
            .issuer_keys(&origin, &origin, false)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(server.hits(RESOURCE), 2);
}
