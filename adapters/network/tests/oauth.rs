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
    let servers = HttpAuthorizationServers::new(AuthServerConfig::default()).unwrap();
    let origin = server.url();
    assert!(servers.issuer_keys(&origin, &origin, false).await.is_err());
    assert_eq!(server.hits(RESOURCE), 0);
}
