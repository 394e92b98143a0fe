//! From what the user typed to the authorization server: handle → DID → DID document → PDS →
//! protected-resource metadata → authorization-server metadata.

use reqwest::{Method, Url};
use stratos_domain::did_doc::DidDocument;
use stratos_domain::oauth::metadata::origin_of;
use stratos_domain::oauth::{
    AuthorizationServerMetadata, AuthorizationTarget, ProtectedResourceMetadata,
};
use stratos_domain::syntax::Did;
use stratos_ports::Cause;
use stratos_ports::pds_client::PdsClientError;

use super::HttpOAuthClient;
use super::transport::{network_error, parse_url};

/// Where a flow goes.
pub(super) struct Resolved {
    /// The account, when the flow started from a handle or DID.
    pub(super) did: Option<Did>,
    /// Its PDS, when known.
    pub(super) pds_url: Option<String>,
    /// The authorization server's checked metadata.
    pub(super) metadata: AuthorizationServerMetadata,
}

fn resolution(target: &str, cause: impl Into<String>) -> PdsClientError {
    PdsClientError::Resolution {
        target: target.to_owned(),
        cause: Cause::message(cause),
    }
}

impl HttpOAuthClient {
    pub(super) async fn resolve_target(
        &self,
        target: &AuthorizationTarget,
    ) -> Result<Resolved, PdsClientError> {
        let did = match target {
            AuthorizationTarget::Server(url) => {
                // A PDS names its authorization server; an authorization server (an entryway)
                // has no protected-resource metadata and is used as it is.
                let issuer = match self.issuer_of_pds(url).await {
                    Ok(issuer) => issuer,
                    Err(PdsClientError::Resolution { .. }) => url.clone(),
                    Err(e) => return Err(e),
                };
                return Ok(Resolved {
                    did: None,
                    pds_url: None,
                    metadata: self.server_metadata(&issuer).await?,
                });
            }
            AuthorizationTarget::Did(did) => did.clone(),
            AuthorizationTarget::Handle(handle) => self
                .identity
                .resolve_handle(handle.as_str())
                .await
                .map_err(|e| PdsClientError::Resolution {
                    target: handle.to_string(),
                    cause: Cause::new(e),
                })?
                .ok_or_else(|| resolution(handle.as_str(), "the handle points at no DID"))?,
        };
        let pds = self.pds_of(&did).await?;
        let issuer = self.issuer_of_pds(&pds).await?;
        Ok(Resolved {
            did: Some(did),
            pds_url: Some(pds),
            metadata: self.server_metadata(&issuer).await?,
        })
    }

    /// The PDS of `did`, from its DID document's `#atproto_pds` service.
    pub(super) async fn pds_of(&self, did: &Did) -> Result<String, PdsClientError> {
        let doc = self
            .identity
            .resolve_did(did)
            .await
            .map_err(|e| PdsClientError::Resolution {
                target: did.to_string(),
                cause: Cause::new(e),
            })?
            .ok_or_else(|| resolution(did.as_str(), "the DID does not resolve"))?;
        let doc = DidDocument::from_json(&doc).map_err(|e| PdsClientError::Resolution {
            target: did.to_string(),
            cause: Cause::new(e),
        })?;
        let pds = doc
            .pds_endpoint()
            .ok_or_else(|| resolution(did.as_str(), "the DID document names no #atproto_pds"))?;
        if origin_of(pds).is_none() {
            return Err(resolution(
                did.as_str(),
                format!("the PDS {pds:?} is no URL"),
            ));
        }
        Ok(pds.trim_end_matches('/').to_owned())
    }

    /// The authorization server `pds` names in its protected-resource metadata (cached).
    pub(super) async fn issuer_of_pds(&self, pds: &str) -> Result<String, PdsClientError> {
        let origin = origin_of(pds).ok_or_else(|| resolution(pds, "not an http(s) URL"))?;
        if let Some(issuer) = self.issuers.get(&origin) {
            return Ok(issuer);
        }
        let url = parse_url(&format!("{origin}/.well-known/oauth-protected-resource"))?;
        let body = self.get_json(url, pds).await?;
        let meta = ProtectedResourceMetadata::from_json(&body, pds)?;
        let issuer = meta.issuer().to_owned();
        self.issuers
            .insert(origin, issuer.clone(), self.config.metadata_ttl);
        Ok(issuer)
    }

    /// The checked metadata of `issuer` (cached).
    pub(super) async fn server_metadata(
        &self,
        issuer: &str,
    ) -> Result<AuthorizationServerMetadata, PdsClientError> {
        if let Some(meta) = self.servers.get(issuer) {
            return Ok(meta);
        }
        let base = parse_url(issuer)?;
        // RFC 8414 §3.1: the well-known segment goes between the host and any issuer path.
        let path = base.path().trim_end_matches('/');
        let url = parse_url(&format!(
            "{}/.well-known/oauth-authorization-server{path}",
            base.origin().ascii_serialization()
        ))?;
        let body = self.get_json(url, issuer).await?;
        let meta = AuthorizationServerMetadata::from_json(&body, issuer)?;
        self.servers
            .insert(issuer.to_owned(), meta.clone(), self.config.metadata_ttl);
        Ok(meta)
    }

    /// The body of a 2xx JSON answer; 404/410 is a resolution failure, 429/5xx transient.
    async fn get_json(&self, url: Url, target: &str) -> Result<Vec<u8>, PdsClientError> {
        let response = self
            .fetcher
            .request(
                Method::GET,
                url.clone(),
                &[("accept", "application/json")],
                None,
            )
            .await
            .map_err(network_error)?;
        match response.status {
            200..=299 => Ok(response.body),
            404 | 410 => Err(resolution(target, format!("{url} does not exist"))),
            429 | 500.. => Err(PdsClientError::Transient {
                retry_after_secs: None,
                cause: Cause::message(format!("{url} answered {}", response.status)),
            }),
            status => Err(resolution(target, format!("{url} answered {status}"))),
        }
    }
}
