//! Discovery documents: a PDS's protected-resource metadata (RFC 9728) names its authorization
//! server; the authorization server's metadata (RFC 8414) names its endpoints. Both are read
//! with the atproto OAuth profile's requirements and the issuer checks: a document may only
//! speak for the resource or issuer it was fetched for.

use serde::Deserialize;
use serde_json::Value;

use super::{OAuthError, OAuthResult};
use crate::auth::normalize_htu;

const AS_DOC: &str = "authorization-server metadata";
const PR_DOC: &str = "protected-resource metadata";

fn invalid(document: &'static str, reason: impl Into<String>) -> OAuthError {
    OAuthError::InvalidMetadata {
        document,
        reason: reason.into(),
    }
}

/// True for an absolute `http(s)` URL without userinfo (the endpoint rule).
fn is_http_url(text: &str) -> bool {
    normalize_htu(text).is_some()
}

/// An issuer or resource identifier: an absolute `http(s)` URL with no query or fragment.
fn is_identifier(text: &str) -> bool {
    is_http_url(text) && !text.contains(['?', '#'])
}

/// `https://host[:port]` of an absolute URL, lowercased; `None` when it is not one.
pub fn origin_of(url: &str) -> Option<String> {
    let normalized = normalize_htu(url)?;
    let (scheme, rest) = normalized.split_once("://")?;
    let authority = rest.split('/').next().unwrap_or(rest);
    Some(format!("{scheme}://{authority}"))
}

/// A PDS's `/.well-known/oauth-protected-resource`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectedResourceMetadata {
    /// The resource the document describes (the PDS's origin).
    pub resource: String,
    /// The authorization servers, in document order (atproto: exactly the one that issues tokens
    /// for this PDS).
    pub authorization_servers: Vec<String>,
}

impl ProtectedResourceMetadata {
    /// Reads the document fetched from `pds_url`'s origin. `resource` must be that origin (a
    /// trailing `/` aside) and `authorization_servers` must name at least one issuer URL.
    pub fn from_json(body: &[u8], pds_url: &str) -> OAuthResult<Self> {
        #[derive(Deserialize)]
        struct Wire {
            resource: String,
            #[serde(default)]
            authorization_servers: Vec<String>,
        }
        let wire: Wire =
            serde_json::from_slice(body).map_err(|e| invalid(PR_DOC, e.to_string()))?;
        let expected =
            origin_of(pds_url).ok_or_else(|| invalid(PR_DOC, format!("{pds_url:?} is no URL")))?;
        // The resource is the PDS's origin itself (a trailing `/` aside), nothing below it.
        if !is_identifier(&wire.resource)
            || normalize_htu(&wire.resource) != Some(format!("{expected}/"))
        {
            return Err(invalid(
                PR_DOC,
                format!("it describes {:?}, not {expected:?}", wire.resource),
            ));
        }
        if wire.authorization_servers.is_empty() {
            return Err(invalid(PR_DOC, "no authorization_servers"));
        }
        if let Some(bad) = wire
            .authorization_servers
            .iter()
            .find(|s| !is_identifier(s))
        {
            return Err(invalid(PR_DOC, format!("{bad:?} is not an issuer URL")));
        }
        Ok(Self {
            resource: wire.resource,
            authorization_servers: wire.authorization_servers,
        })
    }

    /// The issuer to use: the first authorization server.
    pub fn issuer(&self) -> &str {
        // `from_json` refuses an empty list.
        self.authorization_servers
            .first()
            .map(String::as_str)
            .unwrap_or_default()
    }
}

/// An authorization server's `/.well-known/oauth-authorization-server`, reduced to what the
/// client uses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AuthorizationServerMetadata {
    /// The issuer (equal to the URL the document was fetched for).
    pub issuer: String,
    /// Where the user is sent (with `client_id` and `request_uri`).
    pub authorization_endpoint: String,
    /// The token endpoint (code exchange, refresh).
    pub token_endpoint: String,
    /// The PAR endpoint (RFC 9126); atproto requires it.
    pub pushed_authorization_request_endpoint: String,
    /// Whether every request must go through PAR (atproto: yes).
    #[serde(default)]
    pub require_pushed_authorization_requests: bool,
    /// The revocation endpoint (RFC 7009), if any.
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
    /// Client authentication methods at the token endpoint.
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Vec<String>,
    /// Algorithms for client assertions.
    #[serde(default)]
    pub token_endpoint_auth_signing_alg_values_supported: Vec<String>,
    /// DPoP proof algorithms.
    #[serde(default)]
    pub dpop_signing_alg_values_supported: Vec<String>,
    /// PKCE methods.
    #[serde(default)]
    pub code_challenge_methods_supported: Vec<String>,
    /// Scopes the server knows.
    #[serde(default)]
    pub scopes_supported: Vec<String>,
    /// RFC 9207: the callback carries `iss`.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
    /// Whether https client ids are metadata documents (atproto: yes).
    #[serde(default)]
    pub client_id_metadata_document_supported: bool,
    /// The resource servers this issuer serves, when it says.
    #[serde(default)]
    pub protected_resources: Vec<String>,
}

impl AuthorizationServerMetadata {
    /// Reads the document fetched for `expected_issuer` and checks it: `issuer` equal to it
    /// exactly (RFC 8414 §3.3), http(s) endpoints, PAR, PKCE `S256`, DPoP `ES256` and the `iss`
    /// callback parameter (the atproto profile's requirements).
    pub fn from_json(body: &[u8], expected_issuer: &str) -> OAuthResult<Self> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| invalid(AS_DOC, e.to_string()))?;
        let meta: Self =
            serde_json::from_value(value).map_err(|e| invalid(AS_DOC, e.to_string()))?;
        if meta.issuer != expected_issuer {
            return Err(OAuthError::IssuerMismatch {
                expected: expected_issuer.to_owned(),
                found: meta.issuer,
            });
        }
        if !is_identifier(&meta.issuer) {
            return Err(invalid(
                AS_DOC,
                "the issuer is not an http(s) URL without query",
            ));
        }
        let endpoints = [
            ("authorization_endpoint", Some(&meta.authorization_endpoint)),
            ("token_endpoint", Some(&meta.token_endpoint)),
            (
                "pushed_authorization_request_endpoint",
                Some(&meta.pushed_authorization_request_endpoint),
            ),
            ("revocation_endpoint", meta.revocation_endpoint.as_ref()),
        ];
        for (name, url) in endpoints {
            if let Some(url) = url
                && !is_http_url(url)
            {
                return Err(invalid(
                    AS_DOC,
                    format!("{name} {url:?} is not an http(s) URL"),
                ));
            }
        }
        let lacks = |list: &[String], item: &str| !list.iter().any(|x| x == item);
        if lacks(&meta.code_challenge_methods_supported, "S256") {
            return Err(invalid(AS_DOC, "PKCE S256 is not supported"));
        }
        if lacks(&meta.dpop_signing_alg_values_supported, "ES256") {
            return Err(invalid(AS_DOC, "DPoP with ES256 is not supported"));
        }
        if !meta.authorization_response_iss_parameter_supported {
            return Err(invalid(
                AS_DOC,
                "the authorization response does not carry iss (RFC 9207)",
            ));
        }
        Ok(meta)
    }

    /// Whether the server accepts this client authentication method at its token endpoint
    /// (`none`, `private_key_jwt`); for `private_key_jwt` also ES256 assertions.
    pub fn supports_auth_method(&self, method: &str) -> bool {
        let listed = self
            .token_endpoint_auth_methods_supported
            .iter()
            .any(|m| m == method);
        let alg_ok = method != "private_key_jwt"
            || self
                .token_endpoint_auth_signing_alg_values_supported
                .iter()
                .any(|a| a == "ES256");
        listed && alg_ok
    }
}
