//! `/oauth/*`: enrollment through atproto OAuth at the user's own PDS (the library's
//! `OAuthEnrollment`), and the signed-in account's status and exit.

use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, LOCATION};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;
use stratos_ports::usecases::UseCaseError;
use stratos_ports::usecases::oauth::OAuthEnrollment;

use super::query;

use crate::auth::require_caller;
use crate::error::ApiError;
use crate::state::AppState;

type State = web::Data<AppState>;

fn flow(state: &AppState) -> Result<&OAuthEnrollment, ApiError> {
    state.stratos.oauth().map(AsRef::as_ref).ok_or_else(|| {
        let why = crate::oauth_client::unavailable_reason(&state.config)
            .unwrap_or("OAuth enrollment is not configured");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "OAuthNotConfigured", why)
    })
}

#[derive(Deserialize)]
struct AuthorizeParams {
    handle: Option<String>,
    redirect_uri: Option<String>,
}

/// `GET /oauth/authorize?handle=<handle|did|PDS URL>[&redirect_uri=<app URL>]`: 302 to the
/// account's authorization server.
pub(super) async fn authorize(req: HttpRequest, state: State) -> Result<HttpResponse, ApiError> {
    let p: AuthorizeParams = query(&req)?;
    let handle = p.handle.unwrap_or_default();
    let request = flow(&state)?
        .authorize(&handle, p.redirect_uri.as_deref())
        .await?;
    Ok(HttpResponse::Found()
        .insert_header((LOCATION, request.url))
        .insert_header((CACHE_CONTROL, "no-store"))
        .finish())
}

/// `GET /oauth/callback?code&state&iss`: enrolls the account that signed in. With a checked
/// `redirect_uri` from `/oauth/authorize`: 302 there with `stratos_enrolled=true`; otherwise
/// `{"success": true, "did", "enrolled", "message"}`.
pub(super) async fn callback(req: HttpRequest, state: State) -> Result<HttpResponse, ApiError> {
    let outcome = flow(&state)?.callback(req.query_string()).await?;
    if let Some(target) = outcome.app_redirect {
        let location = stratos_domain::oauth::form::with_query(
            &target,
            [("stratos_enrolled", "true"), ("did", outcome.did.as_str())],
        );
        return Ok(HttpResponse::Found()
            .insert_header((LOCATION, location))
            .insert_header((CACHE_CONTROL, "no-store"))
            .finish());
    }
    let message = if outcome.new {
        "Successfully enrolled in Stratos"
    } else {
        "Already enrolled in Stratos"
    };
    Ok(HttpResponse::Ok()
        .insert_header((CACHE_CONTROL, "no-store"))
        .json(json!({
            "success": true,
            "did": outcome.did.as_str(),
            "enrolled": outcome.new,
            "message": message,
        })))
}

/// `GET /oauth/status` (authenticated): the caller's enrollment.
pub(super) async fn status(req: HttpRequest, state: State) -> Result<HttpResponse, ApiError> {
    let did = require_caller(&req, &state).await?;
    let mut body = match state.stratos.enrollments().status(&did).await? {
        None => json!({ "did": did.as_str(), "enrolled": false }),
        Some(status) => json!({
            "did": did.as_str(),
            "enrolled": true,
            "enrolledAt": status.enrollment.enrolled_at.as_str(),
            "boundaries": status
                .enrollment
                .boundaries
                .iter()
                .map(|b| json!({ "value": b.as_str() }))
                .collect::<Vec<_>>(),
        }),
    };
    if body["enrolled"] == true {
        super::stratos::write_back_status(&state, &did, &mut body).await?;
    }
    Ok(HttpResponse::Ok().json(body))
}

/// `POST /oauth/revoke` (authenticated): leaves the service, like
/// `zone.stratos.enrollment.unenroll`: the private data is deleted and the enrollment record's
/// deletion on the PDS is queued.
pub(super) async fn revoke(req: HttpRequest, state: State) -> Result<HttpResponse, ApiError> {
    let did = require_caller(&req, &state).await?;
    match state.stratos.enrollments().unenroll(&did).await {
        Ok(()) => {}
        // This route's own answer for it (the XRPC procedure answers 400 `NotEnrolled`).
        Err(UseCaseError::NotEnrolled(_)) => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "NotFound",
                "User is not enrolled",
            ));
        }
        Err(e) => return Err(e.into()),
    }
    Ok(HttpResponse::Ok().json(json!({
        "did": did.as_str(),
        "revoked": true,
        "message": "Successfully unenrolled from Stratos",
    })))
}
