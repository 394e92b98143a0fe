//! `zone.stratos.admin.*`: operator actions, each on exactly one account (reference D7, D8).

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;
use stratos_domain::boundary::qualify_offered;
use stratos_ports::outbox::OutboxAction;
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

#[derive(Deserialize)]
struct DeadLetterParams {
    limit: Option<String>,
    cursor: Option<String>,
}

/// An id of the outbox as the lexicon carries it (a string: ids outgrow JSON's safe integers).
fn parse_id(s: &str, field: &str) -> Result<u64, ApiError> {
    s.parse::<u64>().map_err(|_| {
        ApiError::from(stratos_ports::xrpc::XrpcError::invalid(format!(
            "`{field}` must be an outbox id"
        )))
    })
}

/// `zone.stratos.admin.listDeadLetters?limit&cursor`: writes to users' PDSes that failed for
/// good, in id order, with the total.
pub(super) async fn list_dead_letters(
    req: HttpRequest,
    state: State,
) -> Result<HttpResponse, ApiError> {
    require_admin(&req, &state)?;
    let p: DeadLetterParams = super::query(&req)?;
    let limit = stratos_ports::xrpc::parse_limit(p.limit.as_deref(), 50, 100)?;
    let cursor = p
        .cursor
        .as_deref()
        .map(|c| parse_id(c, "cursor"))
        .transpose()?;
    let page = state.stratos.dead_letters().list(limit, cursor).await?;
    let letters: Vec<serde_json::Value> = page
        .letters
        .iter()
        .map(|l| {
            let mut out = json!({
                "id": l.id.to_string(),
                "did": l.did,
                "attempts": l.attempts,
                "lastError": l.last_error,
                "deadAt": stratos_domain::syntax::Datetime::from_unix_millis(l.dead_at_ms),
            });
            match l.item.as_ref().map(|i| &i.action) {
                Some(OutboxAction::PutRecord {
                    collection, rkey, ..
                }) => {
                    out["action"] = json!("put");
                    out["collection"] = json!(collection);
                    out["rkey"] = json!(rkey);
                }
                Some(OutboxAction::DeleteRecord { collection, rkey }) => {
                    out["action"] = json!("delete");
                    out["collection"] = json!(collection);
                    out["rkey"] = json!(rkey);
                }
                Some(OutboxAction::EndSession { .. }) => out["action"] = json!("endSession"),
                None => {}
            }
            out
        })
        .collect();
    let mut body = json!({ "total": page.total, "deadLetters": letters });
    if let Some(c) = page.cursor {
        body["cursor"] = json!(c.to_string());
    }
    Ok(HttpResponse::Ok().json(body))
}

#[derive(Deserialize)]
struct RetryInput {
    id: String,
}

/// `zone.stratos.admin.retryDeadLetter` `{"id"}`: queues the dead letter again (behind the
/// account's newer writes, no attempts).
pub(super) async fn retry_dead_letter(
    req: HttpRequest,
    body: web::Payload,
    state: State,
) -> Result<HttpResponse, ApiError> {
    require_admin(&req, &state)?;
    let input: RetryInput = read_json(&req, body, state.config.limits.max_body_bytes).await?;
    let id = parse_id(&input.id, "id")?;
    let queued = state.stratos.dead_letters().retry(id).await?;
    Ok(HttpResponse::Ok().json(json!({ "id": queued.to_string() })))
}
