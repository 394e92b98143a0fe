//! `zone.stratos.*` queries and procedures for accounts and AppViews.

use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};
use stratos_ports::usecases::records::MAX_HYDRATE;

use super::{parse_did, port, query};
use crate::auth::{optional_caller, require_caller};
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
        return Ok(HttpResponse::Ok().json(json!({
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
        })));
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

#[derive(Deserialize)]
struct UriParam {
    uri: String,
}

fn record_json(v: &stratos_ports::usecases::records::RecordView) -> Value {
    json!({ "uri": v.uri, "cid": v.cid.to_string(), "value": v.value })
}

pub(super) async fn hydrate_record(
    req: HttpRequest,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let p: UriParam = query(&req)?;
    let viewer = optional_caller(&req, &state).await?;
    let out = state
        .stratos
        .records()
        .hydrate(viewer.as_ref(), std::slice::from_ref(&p.uri))
        .await?;
    match out.records.first() {
        Some(v) => Ok(HttpResponse::Ok().json(record_json(v))),
        None => Err(ApiError::record_not_found()),
    }
}

#[derive(Deserialize)]
struct UrisInput {
    uris: Vec<String>,
}

pub(super) async fn hydrate_records(
    req: HttpRequest,
    body: web::Payload,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let viewer = optional_caller(&req, &state).await?;
    let input: UrisInput = read_json(&req, body, state.config.limits.max_body_bytes).await?;
    if input.uris.len() > MAX_HYDRATE {
        return Err(ApiError::invalid(format!(
            "at most {MAX_HYDRATE} URIs per request"
        )));
    }
    let out = state
        .stratos
        .records()
        .hydrate(viewer.as_ref(), &input.uris)
        .await?;
    // Denied and missing records are both `notFound`, so existence never leaks; `blocked` is
    // kept for the lexicon's shape.
    Ok(HttpResponse::Ok().json(json!({
        "records": out.records.iter().map(record_json).collect::<Vec<_>>(),
        "notFound": out.not_found,
        "blocked": [],
    })))
}
