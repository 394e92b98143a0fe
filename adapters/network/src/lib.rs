//! Adapters that reach the atproto network over HTTP.
//!
//! - [`allow_list::HttpAllowList`]: the external enrollment allow-list, fetched from a URI and
//!   refreshed in the background.
//! - [`identity::HttpIdentityResolver`]: DID documents (`did:plc`, `did:web`) and handles over
//!   HTTPS, cached in memory; [`identity::signing_key`] picks the `#atproto` key of a document
//!   and [`identity::pds_endpoint`] its `#atproto_pds` service.
//! - [`oauth::HttpAuthorizationServers`]: the keys of the OAuth authorization server of an
//!   account's PDS, discovered through the PDS's metadata and cached.
//! - [`oauth_client::HttpOAuthClient`]: the atproto OAuth client (PAR, PKCE, DPoP with nonce
//!   retry, loopback and `private_key_jwt` clients, refresh, revocation) and DPoP-authenticated
//!   record writes on users' PDSes (the ports `AtprotoOAuthClient` and `PdsWriter`).
#![deny(missing_docs)] // a library crate: every public item is documented (checked in CI)

pub mod allow_list;
mod http;
pub mod identity;
pub mod oauth;
pub mod oauth_client;

pub use allow_list::{AllowListConfig, AllowListStatus, FetchReport, HttpAllowList, Mirror};
pub use identity::{
    HttpIdentityResolver, IdentityConfig, pds_endpoint, signing_key, signing_public_key,
};
pub use oauth::{AuthServerConfig, HttpAuthorizationServers};
pub use oauth_client::{HttpOAuthClient, OAuthClientConfig};

/// The `User-Agent` of outbound requests unless a configuration names another (the service sends
/// `Stratos/<version> (+<repository>; <operator contact>)`).
pub const DEFAULT_USER_AGENT: &str = concat!("Stratos/", env!("CARGO_PKG_VERSION"));

/// Failures of this crate's adapters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NetworkError {
    /// The URI does not parse or is not `http`/`https`.
    #[error("invalid URI: {0}")]
    InvalidUri(String),
    /// A setting is out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// Background refreshes need a tokio runtime and none is running.
    #[error("no tokio runtime to run background refreshes on")]
    NoRuntime,
    /// The HTTP client could not be built (TLS set-up).
    #[error("HTTP client: {0}")]
    Client(String),
    /// The request failed before a response arrived, or the body broke off.
    #[error("HTTP request failed: {0}")]
    Http(String),
    /// The server answered with a status outside 2xx.
    #[error("HTTP status {0}")]
    Status(u16),
    /// The body exceeded the configured limit (bytes).
    #[error("response larger than {0} bytes")]
    TooLarge(usize),
    /// The body is not what the request asks for (a DID document that is not JSON, …).
    #[error("invalid response body: {0}")]
    InvalidBody(String),
    /// The URL, its host's addresses or a redirect lead to a private, loopback, link-local or
    /// otherwise non-public address, and the fetch is held to public ones.
    #[error("{0}")]
    Refused(String),
}
