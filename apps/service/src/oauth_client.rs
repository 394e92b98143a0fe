//! The OAuth client metadata document (atproto OAuth profile), served at
//! `/client-metadata.json` and `/.well-known/oauth-client-metadata.json`.
//!
//! Built once at start-up, so a bad client key stops the service instead of failing the first
//! enrollment. The fields are the reference's (§5.2) with two corrections:
//! - an `http://` public URL (local development) gets an atproto loopback client id
//!   (`http://localhost?redirect_uri=…&scope=…`), because authorization servers refuse `http:`
//!   client ids that are not loopback ones;
//! - with `STRATOS_OAUTH_CLIENT_SECRET` set, the public half of the key is published in `jwks`
//!   with `kid` `key-1` and `token_endpoint_auth_signing_alg` `ES256`, as `private_key_jwt`
//!   requires.

use serde_json::{Value, json};
use stratos_domain::auth::jwk_from_public_key;
use stratos_domain::crypto::{KeyAlgorithm, Keypair};

use crate::config::Config;

/// The scope Stratos asks for: the atproto base scope and the two collections it writes on the
/// account's PDS (the enrollment record and post stubs).
pub const OAUTH_SCOPE: &str =
    "atproto repo:zone.stratos.actor.enrollment repo:zone.stratos.feed.post";

/// The `kid` of the client key.
const CLIENT_KEY_ID: &str = "key-1";

/// The metadata document for `config`.
pub fn client_metadata(config: &Config) -> anyhow::Result<Value> {
    let public = config.public_url.as_str().trim_end_matches('/');
    let redirect_uri = format!("{public}/oauth/callback");
    let oauth = &config.oauth;
    let client_id = match (&oauth.client_id, config.public_url.is_https()) {
        (Some(id), _) => id.as_str().to_owned(),
        (None, true) => format!("{public}/client-metadata.json"),
        (None, false) => stratos_domain::oauth::loopback_client_id(
            &loopback_redirect(public).unwrap_or_else(|| redirect_uri.clone()),
            OAUTH_SCOPE,
        ),
    };
    let mut doc = json!({
        "client_id": client_id,
        "client_name": oauth.client_name,
        "client_uri": public,
        "redirect_uris": [redirect_uri],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "scope": OAUTH_SCOPE,
        "token_endpoint_auth_method": "none",
        "dpop_bound_access_tokens": true,
        "application_type": "web",
    });
    for (field, value) in [
        ("logo_uri", &oauth.logo_uri),
        ("tos_uri", &oauth.tos_uri),
        ("policy_uri", &oauth.policy_uri),
    ] {
        if let Some(url) = value {
            doc[field] = json!(url.as_str());
        }
    }
    if let Some(secret) = &oauth.client_secret {
        let key = client_key(secret.expose())?;
        let mut jwk = jwk_from_public_key(key.public_key());
        jwk["kid"] = json!(CLIENT_KEY_ID);
        jwk["alg"] = json!("ES256");
        jwk["use"] = json!("sig");
        doc["token_endpoint_auth_method"] = json!("private_key_jwt");
        doc["token_endpoint_auth_signing_alg"] = json!("ES256");
        doc["jwks"] = json!({ "keys": [jwk] });
    }
    Ok(doc)
}

/// Why the service cannot run OAuth flows with this configuration, if it cannot.
pub fn unavailable_reason(config: &Config) -> Option<&'static str> {
    let public = config.public_url.as_str();
    match (&config.oauth.client_secret, config.public_url.is_https()) {
        (Some(_), true) => None,
        (Some(_), false) => Some(
            "a confidential OAuth client (STRATOS_OAUTH_CLIENT_SECRET) needs an https \
             STRATOS_PUBLIC_URL",
        ),
        (None, false) if loopback_redirect(public).is_some() => None,
        (None, false) => Some(
            "an http STRATOS_PUBLIC_URL runs the atproto loopback client, which needs a \
             loopback host (127.0.0.1, [::1] or localhost)",
        ),
        (None, true) => Some(
            "OAuth enrollment on an https STRATOS_PUBLIC_URL needs STRATOS_OAUTH_CLIENT_SECRET \
             (a confidential client)",
        ),
    }
}

/// The loopback client's `redirect_uri` for an http public URL on a loopback host: atproto
/// wants an IP literal, so `localhost` becomes `127.0.0.1` (the same server).
fn loopback_redirect(public: &str) -> Option<String> {
    let url = url::Url::parse(public).ok()?;
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    let host = match url.host()? {
        url::Host::Domain("localhost") => "127.0.0.1".to_owned(),
        url::Host::Ipv4(ip) if ip.is_loopback() => ip.to_string(),
        url::Host::Ipv6(ip) if ip.is_loopback() => format!("[{ip}]"),
        _ => return None,
    };
    Some(format!("http://{host}{port}/oauth/callback"))
}

/// The OAuth client's settings: a confidential client (`private_key_jwt`) on an https public
/// URL with `STRATOS_OAUTH_CLIENT_SECRET`, the atproto loopback client on an http loopback one;
/// `None` otherwise ([`unavailable_reason`]).
pub fn http_client_config(
    config: &Config,
) -> anyhow::Result<Option<stratos_network::OAuthClientConfig>> {
    if unavailable_reason(config).is_some() {
        return Ok(None);
    }
    let public = config.public_url.as_str().trim_end_matches('/');
    let mut out = match &config.oauth.client_secret {
        Some(secret) => {
            let client_id = match &config.oauth.client_id {
                Some(id) => id.as_str().to_owned(),
                None => format!("{public}/client-metadata.json"),
            };
            let key = std::sync::Arc::new(client_key(secret.expose())?);
            let credentials = stratos_domain::oauth::ClientCredentials::private_key_jwt(
                client_id,
                key,
                CLIENT_KEY_ID,
            )
            .map_err(|e| anyhow::anyhow!("STRATOS_OAUTH_CLIENT_SECRET: {e}"))?;
            stratos_network::OAuthClientConfig::confidential(
                credentials,
                format!("{public}/oauth/callback"),
                OAUTH_SCOPE,
            )
        }
        None => {
            let redirect = loopback_redirect(public)
                .ok_or_else(|| anyhow::anyhow!("no loopback redirect for {public}"))?;
            stratos_network::OAuthClientConfig::loopback(redirect, OAUTH_SCOPE)
        }
    };
    // As for identity lookups: plain http only to loopback, only in development.
    out.allow_http_for_localhost = config.auth.dev_mode;
    out.allow_private_targets = config.outbound_allow_private;
    out.user_agent = config.user_agent();
    Ok(Some(out))
}

/// The client's P-256 key from a private JWK (`kty` EC, `crv` P-256, `d`).
fn client_key(secret: &str) -> anyhow::Result<Keypair> {
    use base64::Engine as _;
    let invalid = || {
        anyhow::anyhow!(
            "STRATOS_OAUTH_CLIENT_SECRET must be an EC P-256 private key as a JWK \
             ({{\"kty\":\"EC\",\"crv\":\"P-256\",\"d\":…}}); PEM is not supported"
        )
    };
    let jwk: Value = serde_json::from_str(secret.trim()).map_err(|_| invalid())?;
    if jwk.get("kty").and_then(Value::as_str) != Some("EC")
        || jwk.get("crv").and_then(Value::as_str) != Some("P-256")
    {
        return Err(invalid());
    }
    let d = jwk
        .get("d")
        .and_then(Value::as_str)
        .and_then(|d| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(d)
                .ok()
        })
        .ok_or_else(invalid)?;
    Keypair::from_private_bytes(KeyAlgorithm::P256, &d).map_err(|_| invalid())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
mod tests {
    use super::*;

    fn config(extra: &[(&str, &str)]) -> Config {
        let mut vars: Vec<(String, String)> = vec![
            ("STRATOS_SERVICE_DID".into(), "did:web:nerv.tokyo.jp".into()),
            ("STRATOS_PUBLIC_URL".into(), "https://nerv.tokyo.jp".into()),
            ("STRATOS_ALLOWED_DOMAINS".into(), "general".into()),
        ];
        vars.extend(extra.iter().map(|(k, v)| ((*k).into(), (*v).into())));
        Config::from_pairs(vars).unwrap()
    }

    #[test]
    fn public_https_service_is_its_own_client_id() {
        let doc = client_metadata(&config(&[])).unwrap();
        assert_eq!(
            doc["client_id"],
            "https://nerv.tokyo.jp/client-metadata.json"
        );
        assert_eq!(
            doc["redirect_uris"],
            json!(["https://nerv.tokyo.jp/oauth/callback"])
        );
        assert_eq!(doc["token_endpoint_auth_method"], "none");
        assert_eq!(doc["dpop_bound_access_tokens"], true);
        assert!(
            doc["scope"]
                .as_str()
                .unwrap()
                .split(' ')
                .any(|s| s == "atproto")
        );
        assert!(doc.get("jwks").is_none());
    }

    #[test]
    fn http_development_url_gets_a_loopback_client_id() {
        let doc = client_metadata(&config(&[
            ("STRATOS_PUBLIC_URL", "http://127.0.0.1:3100"),
            ("STRATOS_SERVICE_DID", "did:web:localhost%3A3100"),
        ]))
        .unwrap();
        let id = doc["client_id"].as_str().unwrap();
        assert!(id.starts_with("http://localhost?redirect_uri=http%3A%2F%2F127.0.0.1%3A3100%2Foauth%2Fcallback&scope=atproto+repo%3A"), "{id}");
    }

    #[test]
    fn a_client_key_publishes_its_public_half_and_a_bad_one_stops_start_up() {
        use base64::Engine as _;
        let key = Keypair::generate(KeyAlgorithm::P256);
        let d = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.private_bytes());
        let mut jwk = jwk_from_public_key(key.public_key());
        jwk["d"] = json!(d);
        let doc = client_metadata(&config(&[(
            "STRATOS_OAUTH_CLIENT_SECRET",
            jwk.to_string().as_str(),
        )]))
        .unwrap();
        assert_eq!(doc["token_endpoint_auth_method"], "private_key_jwt");
        let published = &doc["jwks"]["keys"][0];
        assert_eq!(published["kid"], "key-1");
        assert!(
            published.get("d").is_none(),
            "the private part must never be published"
        );
        assert_eq!(published["x"], jwk["x"]);
        let err = client_metadata(&config(&[(
            "STRATOS_OAUTH_CLIENT_SECRET",
            "-----BEGIN EC PRIVATE KEY-----",
        )]))
        .unwrap_err();
        assert!(err.to_string().contains("JWK"), "{err}");
    }
}
