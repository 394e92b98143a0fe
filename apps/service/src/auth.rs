//! Who is calling, for actix-web: the request as the library's neutral [`RequestView`], checked
//! by the library's [`Authenticator`](stratos_ports::auth::Authenticator)
//! (`state.stratos.auth()`: DPoP-bound tokens, service-auth JWTs, the dev bearer, the admin
//! password; docs/auth.md). Failures become answers through the library's one XRPC mapping.

use actix_web::{HttpMessage as _, HttpRequest};
use stratos_domain::syntax::Did;
use stratos_ports::auth::{READ_HEADERS, RequestView};

use crate::error::ApiError;
use crate::state::AppState;

/// The library's view of an actix request: method, path and query, and the headers the library
/// reads ([`READ_HEADERS`]; copying every header cost more than the rest of a read).
pub fn view(req: &HttpRequest) -> RequestView {
    let target = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.path(), |pq| pq.as_str());
    let mut view = RequestView::new(req.method().as_str(), target);
    // Filtering the few headers a request has is cheaper than looking names up (which parses
    // each name into a `HeaderName`).
    for (name, value) in req.headers() {
        if READ_HEADERS.contains(&name.as_str()) {
            view.push_header(name.as_str(), value.as_bytes());
        }
    }
    view
}

/// Who a request was authenticated as, kept in the request's extensions for the access log
/// (written by the response middleware): an account's DID, or `admin`. Never a credential.
#[derive(Debug, Clone)]
pub struct Caller(pub String);

fn remember(req: &HttpRequest, did: Option<&Did>) {
    if let Some(did) = did {
        req.extensions_mut().insert(Caller(did.to_string()));
    }
}

/// The authenticated account, if any. Errors are authentication failures (401).
pub async fn caller(req: &HttpRequest, state: &AppState) -> Result<Option<Did>, ApiError> {
    let did = state.stratos.auth().caller(&view(req)).await?;
    remember(req, did.as_ref());
    Ok(did)
}

/// The caller, required.
pub async fn require_caller(req: &HttpRequest, state: &AppState) -> Result<Did, ApiError> {
    let did = state.stratos.auth().require_caller(&view(req)).await?;
    remember(req, Some(&did));
    Ok(did)
}

/// The caller for endpoints whose authentication is optional: a failed check reads as
/// anonymous, except the DPoP nonce handshake.
pub async fn optional_caller(req: &HttpRequest, state: &AppState) -> Result<Option<Did>, ApiError> {
    let did = state.stratos.auth().optional_caller(&view(req)).await?;
    remember(req, did.as_ref());
    Ok(did)
}

/// Checks the operator's password (`Basic` or `Bearer`, constant time).
pub fn require_admin(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    state.stratos.auth().require_admin(&view(req))?;
    req.extensions_mut().insert(Caller("admin".to_owned()));
    Ok(())
}
