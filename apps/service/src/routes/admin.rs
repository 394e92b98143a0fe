//! `zone.stratos.admin.*`: operator actions, each on exactly one account (reference D7, D8).

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;
use stratos_domain::boundary::qualify_offered;
use stratos_ports::usecases::enrollment::BoundaryChange;

use super::parse_did;
use crate::auth::require_admin;
use crate::body::read_json;
use crate::error::ApiError;
use crate::state::AppState;

type State = web::Data<AppState>;

#[derive(Deserialize)]
struct EnrollInput {
    did: String,
    #[serde(default)]
    boundaries: Vec<String>,
}

fn offered(
    state: &AppState,
    entries: &[String],
) -> Result<Vec<stratos_domain::boundary::Boundary>, ApiError> {
    Ok(qualify_offered(
        &state.config.service_did,
        &state.config.allowed_boundaries,
        entries,
    )?)
}

pub(super) async fn enroll_actor(
    req: HttpRequest,
    body: web::Payload,
    state: State,
) -> Result<HttpResponse, ApiError> {
    require_admin(&req, &state)?;
    let input: EnrollInput = read_json(&req, body, state.config.limits.max_body_bytes).await?;
    let did = parse_did(&input.did, "did")?;
    let boundaries = offered(&state, &input.boundaries)?;
    let out = state
        .stratos
        .enrollments()
        .enroll_direct(&did, &boundaries)
        .await?;
    Ok(HttpResponse::Ok().json(json!({
        "did": out.enrollment.did,
        "enrolled": true,
        "new": out.new,
        "enrolledAt": out.enrollment.enrolled_at,
        "signingKey": out.enrollment.signing_key,
        "boundaries": out.enrollment.boundaries,
    })))
}

#[derive(Deserialize)]
struct OneInput {
    did: String,
    boundary: String,
}

async fn change_one(
    req: HttpRequest,
    body: web::Payload,
    state: State,
    add: bool,
) -> Result<HttpResponse, ApiError> {
    require_admin(&req, &state)?;
    let input: OneInput = read_json(&req, body, state.config.limits.max_body_bytes).await?;
    let did = parse_did(&input.did, "did")?;
    let boundary = offered(&state, std::slice::from_ref(&input.boundary))?
        .pop()
        .ok_or_else(|| ApiError::invalid("`boundary` is empty"))?;
    let change = if add {
        BoundaryChange::Add(&boundary)
    } else {
        BoundaryChange::Remove(&boundary)
    };
    let now = state
        .stratos
        .enrollments()
        .change_boundaries(&did, change)
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "did": did.as_str(), "boundaries": now })))
}

pub(super) async fn add_boundary(
    req: HttpRequest,
    body: web::Payload,
    state: State,
) -> Result<HttpResponse, ApiError> {
    change_one(req, body, state, true).await
}

pub(super) async fn remove_boundary(
    req: HttpRequest,
    body: web::Payload,
    state: State,
) -> Result<HttpResponse, ApiError> {
    change_one(req, body, state, false).await
}

#[derive(Deserialize)]
struct SetInput {
    did: String,
    boundaries: Vec<String>,
}

pub(super) async fn set_boundaries(
    req: HttpRequest,
    body: web::Payload,
    state: State,
) -> Result<HttpResponse, ApiError> {
    require_admin(&req, &state)?;
    let input: SetInput = read_json(&req, body, state.config.limits.max_body_bytes).await?;
    let did = parse_did(&input.did, "did")?;
    let all = offered(&state, &input.boundaries)?;
    let now = state
        .stratos
        .enrollments()
        .change_boundaries(&did, BoundaryChange::Set(&all))
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "did": did.as_str(), "boundaries": now })))
}
