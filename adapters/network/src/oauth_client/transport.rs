//! Requests with DPoP proofs, the nonce retry, and what each answer means for the caller.

use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use stratos_domain::auth::clip;
use stratos_domain::oauth::{DpopKey, DpopProofParams, ErrorResponse, OAuthError, TokenResponse};
use stratos_ports::Cause;
use stratos_ports::pds_client::PdsClientError;

use super::HttpOAuthClient;
use crate::NetworkError;
use crate::http::RawResponse;

const FORM: &str = "application/x-www-form-urlencoded";

/// A transport failure, as the caller should treat it.
pub(super) fn network_error(e: NetworkError) -> PdsClientError {
    match e {
        NetworkError::Http(_) => PdsClientError::Transient {
            retry_after_secs: None,
            cause: Cause::new(e),
        },
        NetworkError::Status(status) if status == 429 || status >= 500 => {
            PdsClientError::Transient {
                retry_after_secs: None,
                cause: Cause::new(e),
            }
        }
        NetworkError::Refused(_) | NetworkError::InvalidUri(_) => {
            PdsClientError::Refused(Cause::new(e))
        }
        _ => PdsClientError::InvalidResponse(Cause::new(e)),
    }
}

/// `text` as a URL this client may use.
pub(super) fn parse_url(text: &str) -> Result<Url, PdsClientError> {
    Url::parse(text)
        .map_err(|e| PdsClientError::Refused(Cause::message(format!("{text:?} is no URL: {e}"))))
}

/// `Retry-After` in seconds (the delta form; a date is ignored).
fn retry_after(response: &RawResponse) -> Option<u64> {
    response.header("retry-after")?.trim().parse().ok()
}

fn is_transient_status(status: u16) -> bool {
    status == 429 || status >= 500
}

fn transient(response: &RawResponse, what: &str) -> PdsClientError {
    PdsClientError::Transient {
        retry_after_secs: retry_after(response),
        cause: Cause::message(format!("{what} answered {}", response.status)),
    }
}

/// An authorization server's refusal. On a refresh, `invalid_grant` means the grant is dead
/// (revoked, expired, or the refresh token was already used).
fn auth_server_error(response: &RawResponse, refresh: bool) -> PdsClientError {
    if is_transient_status(response.status) {
        return transient(response, "the authorization server");
    }
    match ErrorResponse::from_json(&response.body) {
        Some(e) if refresh && e.error == "invalid_grant" => {
            PdsClientError::ReauthorizationRequired(e.error_description.unwrap_or(e.error))
        }
        Some(e) => PdsClientError::AuthorizationServer {
            status: response.status,
            error: e.error,
            description: e.error_description,
        },
        None => PdsClientError::AuthorizationServer {
            status: response.status,
            error: "unknown_error".into(),
            description: None,
        },
    }
}

/// The JSON of a 2xx answer of the authorization server, or its error.
pub(super) fn expect_success<T: DeserializeOwned>(
    response: RawResponse,
    refresh: bool,
) -> Result<T, PdsClientError> {
    if !(200..300).contains(&response.status) {
        return Err(auth_server_error(&response, refresh));
    }
    serde_json::from_slice(&response.body).map_err(|e| {
        PdsClientError::InvalidResponse(Cause::message(format!("authorization server answer: {e}")))
    })
}

/// Ok for a 2xx answer of the authorization server.
pub(super) fn expect_status_ok(
    response: &RawResponse,
    refresh: bool,
) -> Result<(), PdsClientError> {
    if (200..300).contains(&response.status) {
        Ok(())
    } else {
        Err(auth_server_error(response, refresh))
    }
}

/// The checked token response of a 2xx answer, or the error.
pub(super) fn token_response(
    response: RawResponse,
    refresh: bool,
) -> Result<TokenResponse, PdsClientError> {
    if !(200..300).contains(&response.status) {
        return Err(auth_server_error(&response, refresh));
    }
    Ok(TokenResponse::from_json(&response.body)?)
}

/// An XRPC error body (`{"error":…,"message":…}`).
#[derive(serde::Deserialize, Default)]
pub(super) struct XrpcErrorBody {
    #[serde(default)]
    pub(super) error: Option<String>,
    #[serde(default)]
    pub(super) message: Option<String>,
}

/// The PDS's texts are clipped: they end up in errors, the outbox and logs.
fn xrpc_error(response: &RawResponse) -> XrpcErrorBody {
    let body: XrpcErrorBody = serde_json::from_slice(&response.body).unwrap_or_default();
    XrpcErrorBody {
        error: body.error.as_deref().map(clip),
        message: body.message.as_deref().map(clip),
    }
}

/// Whether a PDS answer asks for the DPoP nonce it sent.
fn pds_wants_nonce(response: &RawResponse) -> bool {
    response.status == 401
        && (response
            .header("www-authenticate")
            .is_some_and(|h| h.contains("use_dpop_nonce"))
            || xrpc_error(response).error.as_deref() == Some("use_dpop_nonce"))
}

/// A PDS answer other than 2xx, as the caller should treat it: 401 (and the legacy
/// `ExpiredToken`/`InvalidToken` names) → refresh and retry; 429/5xx → later; any other 4xx →
/// permanent.
pub(super) fn pds_error(response: &RawResponse) -> PdsClientError {
    if is_transient_status(response.status) {
        return transient(response, "the PDS");
    }
    let body = xrpc_error(response);
    let token_error = matches!(
        body.error.as_deref(),
        Some("InvalidToken" | "ExpiredToken" | "invalid_token")
    );
    if response.status == 401 || token_error {
        let challenge = response.header("www-authenticate").unwrap_or_default();
        return PdsClientError::TokenRejected(
            body.message
                .or(body.error)
                .unwrap_or_else(|| format!("401 {challenge}")),
        );
    }
    PdsClientError::Rejected {
        status: response.status,
        error: body.error,
        message: body.message,
    }
}

impl HttpOAuthClient {
    /// POSTs a form (`body(now)`, rebuilt per attempt so client assertions are fresh) to an
    /// authorization-server endpoint with a DPoP proof, repeating it once with the server's
    /// nonce when it answers `use_dpop_nonce`. Returns the answer and the last nonce the server
    /// sent (or `nonce` when it sent none).
    pub(super) async fn auth_server_post(
        &self,
        endpoint: &str,
        key: &DpopKey,
        nonce: Option<&str>,
        body: impl Fn(i64) -> Result<String, OAuthError>,
    ) -> Result<(RawResponse, Option<String>), PdsClientError> {
        let url = parse_url(endpoint)?;
        let mut nonce = nonce.map(str::to_owned);
        let mut retried = false;
        loop {
            let now = self.now();
            let proof = key.proof(&DpopProofParams {
                method: "POST",
                url: endpoint,
                nonce: nonce.as_deref(),
                access_token: None,
                now,
            })?;
            let form = body(now)?;
            let response = self
                .fetcher
                .request(
                    Method::POST,
                    url.clone(),
                    &[("dpop", &proof), ("accept", "application/json")],
                    Some((FORM, form.into_bytes())),
                )
                .await
                .map_err(network_error)?;
            let fresh = response.header("dpop-nonce").map(str::to_owned);
            let wants_nonce = matches!(response.status, 400 | 401)
                && ErrorResponse::from_json(&response.body)
                    .is_some_and(|e| e.error == "use_dpop_nonce");
            let new_nonce = fresh.is_some() && fresh != nonce;
            if fresh.is_some() {
                nonce = fresh;
            }
            if wants_nonce && new_nonce && !retried {
                retried = true;
                continue;
            }
            return Ok((response, nonce));
        }
    }

    /// Calls `nsid` on the session's PDS with its access token (`Authorization: DPoP …`) and a
    /// proof with `ath`, repeating the call once with the PDS's nonce when it asks for one.
    /// Returns the answer (any status) and the PDS's last nonce.
    pub(super) async fn pds_request(
        &self,
        session: &stratos_domain::oauth::Session,
        method: Method,
        nsid: &str,
        query: Option<&str>,
        json_body: Option<Vec<u8>>,
    ) -> Result<(RawResponse, Option<String>), PdsClientError> {
        let base = format!("{}/xrpc/{nsid}", session.pds_url.trim_end_matches('/'));
        let url = parse_url(&match query {
            Some(q) => format!("{base}?{q}"),
            None => base.clone(),
        })?;
        let authorization = format!("DPoP {}", session.access_token);
        let mut nonce = session.pds_nonce.clone();
        let mut retried = false;
        loop {
            let proof = session.dpop_key.proof(&DpopProofParams {
                method: method.as_str(),
                url: &base,
                nonce: nonce.as_deref(),
                access_token: Some(&session.access_token),
                now: self.now(),
            })?;
            let response = self
                .fetcher
                .request(
                    method.clone(),
                    url.clone(),
                    &[
                        ("authorization", &authorization),
                        ("dpop", &proof),
                        ("accept", "application/json"),
                    ],
                    json_body.clone().map(|b| ("application/json", b)),
                )
                .await
                .map_err(network_error)?;
            let fresh = response.header("dpop-nonce").map(str::to_owned);
            let new_nonce = fresh.is_some() && fresh != nonce;
            if fresh.is_some() {
                nonce = fresh;
            }
            if pds_wants_nonce(&response) && new_nonce && !retried {
                retried = true;
                continue;
            }
            return Ok((response, nonce));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
mod tests {
    use super::*;

    fn answer(status: u16, headers: &[(&'static str, &str)], body: &str) -> RawResponse {
        let mut map = reqwest::header::HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, value.parse().unwrap());
        }
        RawResponse {
            status,
            headers: map,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn pds_answers_say_refresh_retry_later_or_give_up() {
        let expired = answer(
            401,
            &[(
                "www-authenticate",
                r#"DPoP error="invalid_token", error_description="Token expired""#,
            )],
            r#"{"error":"InvalidToken","message":"Token expired"}"#,
        );
        assert!(
            matches!(pds_error(&expired), PdsClientError::TokenRejected(m) if m == "Token expired")
        );
        let legacy = answer(400, &[], r#"{"error":"ExpiredToken","message":"expired"}"#);
        assert!(matches!(
            pds_error(&legacy),
            PdsClientError::TokenRejected(_)
        ));
        let down = answer(503, &[("retry-after", "7")], "");
        assert!(matches!(
            pds_error(&down),
            PdsClientError::Transient {
                retry_after_secs: Some(7),
                ..
            }
        ));
        assert!(pds_error(&answer(429, &[], "")).is_transient());
        let bad = answer(400, &[], r#"{"error":"InvalidRecord","message":"no"}"#);
        assert!(matches!(
            pds_error(&bad),
            PdsClientError::Rejected { status: 400, error: Some(e), .. } if e == "InvalidRecord"
        ));
        let scope = answer(403, &[], r#"{"error":"ScopeMissingError"}"#);
        assert!(matches!(
            pds_error(&scope),
            PdsClientError::Rejected { status: 403, .. }
        ));
        // The nonce challenge is recognised from the header or the body.
        let nonce = answer(
            401,
            &[("www-authenticate", r#"DPoP error="use_dpop_nonce""#)],
            "",
        );
        assert!(pds_wants_nonce(&nonce));
        assert!(pds_wants_nonce(&answer(
            401,
            &[],
            r#"{"error":"use_dpop_nonce"}"#
        )));
        assert!(!pds_wants_nonce(&expired));
    }

    #[test]
    fn authorization_server_answers_tell_a_dead_grant_from_other_refusals() {
        let dead = answer(
            400,
            &[],
            r#"{"error":"invalid_grant","error_description":"Refresh token replayed"}"#,
        );
        assert!(matches!(
            auth_server_error(&dead, true),
            PdsClientError::ReauthorizationRequired(m) if m == "Refresh token replayed"
        ));
        // A bad code is not a dead session.
        assert!(matches!(
            auth_server_error(&dead, false),
            PdsClientError::AuthorizationServer { status: 400, error, .. } if error == "invalid_grant"
        ));
        assert!(auth_server_error(&answer(502, &[], ""), true).is_transient());
        assert!(matches!(
            auth_server_error(&answer(400, &[], "<html>"), false),
            PdsClientError::AuthorizationServer { error, .. } if error == "unknown_error"
        ));
        assert!(token_response(answer(200, &[], r#"{"access_token":"a","token_type":"Bearer","sub":"did:plc:x","scope":"atproto"}"#), false).is_err());
    }

    #[test]
    fn transport_failures_are_transient_refused_or_unusable() {
        assert!(network_error(NetworkError::Http("reset".into())).is_transient());
        assert!(matches!(
            network_error(NetworkError::Refused("10.0.0.1".into())),
            PdsClientError::Refused(_)
        ));
        assert!(matches!(
            network_error(NetworkError::TooLarge(1)),
            PdsClientError::InvalidResponse(_)
        ));
    }
}
