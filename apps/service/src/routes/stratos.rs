//! `zone.stratos.*` queries and procedures for accounts and AppViews.

use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;
use stratos_ports::xrpc::reads;

use super::{parse_did, port, query};
use crate::auth::{optional_caller, require_caller, view};
use crate::body::read_json;
use crate::error::ApiError;
use crate::state::AppState;

type State = web::Data<AppState>;

#[derive(Deserialize)]
struct DidParam {
    did: String,
}

/// Anyone learns whether an account is enrolled; only the account itself sees its boundaries
/// and a fresh attestation (the reference showed them to any authenticated caller).
pub(super) async fn enrollment_status(
    req: HttpRequest,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let p: DidParam = query(&req)?;
    let did = parse_did(&p.did, "did")?;
    let caller = optional_caller(&req, &state).await?;
    if caller.as_ref() == Some(&did) {
        let Some(status) = state.stratos.enrollments().status(&did).await? else {
            return Ok(HttpResponse::Ok().json(json!({ "did": did.as_str(), "enrolled": false })));
        };
        let e = &status.enrollment;
        let mut body = json!({
            "did": e.did,
            "enrolled": true,
            "enrolledAt": e.enrolled_at,
            "active": true,
            "signingKey": e.signing_key,
            "enrollmentRkey": e.enrollment_rkey,
            "boundaries": e.boundaries.iter().map(|b| json!({ "value": b })).collect::<Vec<_>>(),
            "attestation": {
                "sig": { "$bytes": base64::engine::general_purpose::STANDARD_NO_PAD.encode(&status.attestation.sig) },
                "signingKey": status.attestation.signing_key,
            },
        });
        write_back_status(&state, &did, &mut body).await?;
        return Ok(HttpResponse::Ok().json(body));
    }
    match state
        .stratos
        .storage()
        .enrollments()
        .get(&did)
        .await
        .map_err(port)?
    {
        None => Ok(HttpResponse::Ok().json(json!({ "did": did.as_str(), "enrolled": false }))),
        Some(e) => Ok(HttpResponse::Ok().json(json!({
            "did": e.did,
            "enrolled": true,
            "enrolledAt": e.enrolled_at,
            "active": true,
            "signingKey": e.signing_key,
            "enrollmentRkey": e.enrollment_rkey,
        }))),
    }
}

/// For the account itself: whether what Stratos writes to its PDS can get there
/// (`needsAuthorization`: no live OAuth session — never authorised through OAuth, or the grant
/// was revoked; only with OAuth configured) and how many PDS writes failed for good
/// (`pdsDeadLetters`, kept for an operator to retry).
pub(super) async fn write_back_status(
    state: &AppState,
    did: &stratos_domain::syntax::Did,
    body: &mut serde_json::Value,
) -> Result<(), ApiError> {
    if let Some(oauth) = state.stratos.oauth() {
        let authorized = oauth.has_session(did).await?;
        body["needsAuthorization"] = json!(!authorized);
    }
    let dead = state.stratos.dead_letters().count(did).await?;
    body["pdsDeadLetters"] = json!(dead);
    Ok(())
}

pub(super) async fn unenroll(
    req: HttpRequest,
    body: web::Payload,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let caller = require_caller(&req, &state).await?;
    // The body is optional (`{}` or nothing) but still size-limited.
    crate::body::read_limited(&req, body, state.config.limits.max_body_bytes).await?;
    state.stratos.enrollments().unenroll(&caller).await?;
    Ok(HttpResponse::Ok().json(json!({ "success": true })))
}

pub(super) async fn resolve_enrollments(
    req: HttpRequest,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let p: DidParam = query(&req)?;
    let did = parse_did(&p.did, "did")?;
    let out = match state
        .stratos
        .storage()
        .enrollments()
        .get(&did)
        .await
        .map_err(port)?
    {
        Some(e) => json!({ "did": did.as_str(), "enrolled": true, "boundaries": e.boundaries }),
        None => json!({ "did": did.as_str(), "enrolled": false, "boundaries": [] }),
    };
    Ok(HttpResponse::Ok().json(out))
}

pub(super) async fn list_domains(state: State) -> HttpResponse {
    let domains: Vec<&str> = state
        .config
        .allowed_boundaries
        .iter()
        .map(|b| b.as_str())
        .collect();
    HttpResponse::Ok().json(json!({ "domains": domains }))
}

/// The library's handler (`stratos_ports::xrpc::reads`), which embedders mount too.
pub(super) async fn hydrate_record(
    req: HttpRequest,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let body = reads::hydrate_record(&state.stratos, &view(&req)).await?;
    Ok(HttpResponse::Ok().json(body))
}

/// The library's hydration (`reads::hydrate_for`), with the body read under the service's
/// limits and deadline (`crate::body`).
pub(super) async fn hydrate_records(
    req: HttpRequest,
    body: web::Payload,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let viewer = optional_caller(&req, &state).await?;
    let input: reads::HydrateInput =
        read_json(&req, body, state.config.limits.max_body_bytes).await?;
    let out = reads::hydrate_for(&state.stratos, viewer.as_ref(), &input.uris).await?;
    Ok(HttpResponse::Ok().json(out))
}
