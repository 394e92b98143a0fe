//! Who the client is at the authorization server: a public client (the atproto loopback client
//! for development, `token_endpoint_auth_method: none`), or a confidential client proving itself
//! with a `private_key_jwt` client assertion (RFC 7523) signed by the key its metadata
//! publishes.

use std::sync::Arc;

use serde_json::json;

use super::{OAuthError, OAuthResult, form, jwt, non_negative, random_token};
use crate::crypto::{KeyAlgorithm, Keypair};

/// The `client_assertion_type` of a JWT client assertion.
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How long a client assertion is valid, seconds.
pub const CLIENT_ASSERTION_LIFETIME_SECS: i64 = 60;

/// The client's identity and how it authenticates.
#[derive(Clone)]
pub enum ClientCredentials {
    /// A public client: `client_id` only (`token_endpoint_auth_method: none`).
    Public {
        /// The client id (a loopback client id, [`loopback_client_id`], in development).
        client_id: String,
    },
    /// A confidential client: each request to the authorization server carries a fresh ES256
    /// client assertion.
    PrivateKeyJwt {
        /// The client id: the https URL of the client metadata document.
        client_id: String,
        /// The P-256 key whose public half the metadata's `jwks` (or `jwks_uri`) publishes.
        key: Arc<Keypair>,
        /// That key's `kid` in the published key set.
        kid: String,
    },
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Public { client_id } => f
                .debug_struct("Public")
                .field("client_id", client_id)
                .finish(),
            Self::PrivateKeyJwt { client_id, kid, .. } => f
                .debug_struct("PrivateKeyJwt")
                .field("client_id", client_id)
                .field("kid", kid)
                .finish_non_exhaustive(),
        }
    }
}

impl ClientCredentials {
    /// A confidential client; the key must be P-256 (ES256).
    pub fn private_key_jwt(
        client_id: impl Into<String>,
        key: Arc<Keypair>,
        kid: impl Into<String>,
    ) -> OAuthResult<Self> {
        if key.public_key().algorithm() != KeyAlgorithm::P256 {
            return Err(OAuthError::Key(Box::new(crate::Error::Key(
                "a private_key_jwt client key must be P-256 (ES256)".into(),
            ))));
        }
        Ok(Self::PrivateKeyJwt {
            client_id: client_id.into(),
            key,
            kid: kid.into(),
        })
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        match self {
            Self::Public { client_id } | Self::PrivateKeyJwt { client_id, .. } => client_id,
        }
    }

    /// The `token_endpoint_auth_method` this client uses.
    pub fn auth_method(&self) -> &'static str {
        match self {
            Self::Public { .. } => "none",
            Self::PrivateKeyJwt { .. } => "private_key_jwt",
        }
    }

    /// The form parameters that authenticate the client to `issuer` (PAR, token, revocation):
    /// `client_id`, plus for a confidential client `client_assertion_type` and a fresh
    /// `client_assertion`.
    pub fn form_params(&self, issuer: &str, now: i64) -> OAuthResult<Vec<(&'static str, String)>> {
        let mut params = vec![("client_id", self.client_id().to_owned())];
        if let Self::PrivateKeyJwt {
            client_id,
            key,
            kid,
        } = self
        {
            params.push(("client_assertion_type", CLIENT_ASSERTION_TYPE.to_owned()));
            params.push((
                "client_assertion",
                client_assertion(client_id, issuer, key, kid, now)?,
            ));
        }
        Ok(params)
    }
}

/// A `private_key_jwt` client assertion: header `{"alg":"ES256","kid":…}`, claims `iss` = `sub`
/// = the client id, `aud` = the authorization server's issuer, a random `jti`, `iat` = `now` and
/// `exp` = `now` + [`CLIENT_ASSERTION_LIFETIME_SECS`].
pub fn client_assertion(
    client_id: &str,
    issuer: &str,
    key: &Keypair,
    kid: &str,
    now: i64,
) -> OAuthResult<String> {
    let now = non_negative(now);
    let header = json!({ "alg": "ES256", "kid": kid });
    let claims = json!({
        "iss": client_id,
        "sub": client_id,
        "aud": issuer,
        "jti": random_token(16),
        "iat": now,
        "exp": now.saturating_add(CLIENT_ASSERTION_LIFETIME_SECS),
    });
    jwt::sign(&header, &claims, key)
}

/// The atproto loopback client id for development: `http://localhost` with the redirect URI
/// (`http://127.0.0.1:<port>/…` or `http://[::1]:<port>/…`) and scope as query parameters. Such a
/// client has no metadata document; the authorization server derives it from the id.
pub fn loopback_client_id(redirect_uri: &str, scope: &str) -> String {
    form::with_query(
        "http://localhost",
        [("redirect_uri", redirect_uri), ("scope", scope)],
    )
}
