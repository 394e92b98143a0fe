//! Sync reads: the latest commit (public) and the full repository CAR (owner only).

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;
use stratos_ports::xrpc;

use super::{parse_did, port, query};
use crate::auth::{optional_caller, require_caller};
use crate::error::ApiError;
use crate::state::AppState;

type State = web::Data<AppState>;

#[derive(Deserialize)]
struct DidParam {
    did: String,
}

pub(super) async fn get_latest_commit(
    req: HttpRequest,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let p: DidParam = query(&req)?;
    let did = parse_did(&p.did, "did")?;
    if !state
        .stratos
        .storage()
        .repos()
        .actor_exists(&did)
        .await
        .map_err(port)?
    {
        return Err(ApiError::repo_not_found(did.as_str()));
    }
    let head = state
        .stratos
        .storage()
        .repos()
        .head(&did)
        .await
        .map_err(port)?
        .ok_or_else(|| ApiError::repo_not_found(did.as_str()))?;
    Ok(HttpResponse::Ok()
        .json(json!({ "cid": head.commit.to_string(), "rev": head.rev.to_string() })))
}

/// The whole repository as a CAR, for its owner only (the reference served it to anyone);
/// `zone.stratos.sync.getRepo` and `com.atproto.sync.getRepo`. The atproto method's `since`
/// is not honoured: the whole repository is always sent, which a client asking for a diff can
/// still use.
///
/// A trusted sync consumer (the sync token as `syncToken` or `Authorization: Bearer`, or a
/// service-auth JWT of an allowed AppView for this method, as `syncToken` only) may export any
/// account: it already reads every
/// account's unfiltered stream, and backfills from the export. Its answer carries
/// `Stratos-Seq`, the account's last stream sequence number read *before* the snapshot: a
/// consumer resuming the stream after it sees every later change (and the few it already has,
/// which it skips by revision).
pub(super) async fn get_repo(req: HttpRequest, state: State) -> Result<HttpResponse, ApiError> {
    let p: RepoParams = query(&req)?;
    let did = parse_did(&p.did, "did")?;
    if sync_consumer(&req, &state, p.sync_token.as_deref()).await? {
        let seq = state
            .stratos
            .storage()
            .repos()
            .latest_seq(&did)
            .await
            .map_err(port)?;
        let car = state
            .stratos
            .records()
            .transfer()
            .export_repo_for_sync(&did)
            .await?;
        return Ok(HttpResponse::Ok()
            .insert_header((SEQ_HEADER, seq.to_string()))
            .content_type("application/vnd.ipld.car")
            .body(car));
    }
    let caller = require_caller(&req, &state).await?;
    let car = state.stratos.records().export_repo(&caller, &did).await?;
    Ok(HttpResponse::Ok()
        .content_type("application/vnd.ipld.car")
        .body(car))
}

/// The header of a sync consumer's export naming the stream position it covers.
pub const SEQ_HEADER: &str = "stratos-seq";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RepoParams {
    did: String,
    #[serde(default)]
    sync_token: Option<String>,
}

/// Whether the request comes from a trusted sync consumer. A `syncToken` or bearer value that
/// is neither the token nor a valid JWT of an allowed AppView is refused (401) rather than
/// read as an account's credentials.
async fn sync_consumer(
    req: &HttpRequest,
    state: &State,
    sync_token: Option<&str>,
) -> Result<bool, ApiError> {
    let auth = state.stratos.auth();
    let bearer = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if let Some(token) = sync_token {
        if auth.is_sync_token(token) {
            return Ok(true);
        }
        let iss = auth
            .verify_service_token(token, Some("zone.stratos.sync.getRepo"))
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "AuthRequired",
                    "invalid syncToken",
                )
            })?;
        if state.config.stream.allowed_appviews.contains(&iss) {
            return Ok(true);
        }
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "AuthRequired",
            "the issuer is not an allowed AppView",
        ));
    }
    Ok(bearer.is_some_and(|t| auth.is_sync_token(t)))
}

#[derive(Deserialize)]
struct RecordParams {
    did: String,
    collection: String,
    rkey: String,
}

/// A record with its inclusion proof, after the same access decision as `getRecord` (the
/// reference served any private record to anyone here).
pub(super) async fn get_record(req: HttpRequest, state: State) -> Result<HttpResponse, ApiError> {
    let p: RecordParams = query(&req)?;
    let did = parse_did(&p.did, "did")?;
    let collection = xrpc::parse_nsid(&p.collection, "collection")?;
    let rkey = xrpc::parse_rkey(&p.rkey, "rkey")?;
    let viewer = optional_caller(&req, &state).await?;
    match state
        .stratos
        .records()
        .record_proof(viewer.as_ref(), &did, &collection, &rkey)
        .await?
    {
        Some(car) => Ok(HttpResponse::Ok()
            .content_type("application/vnd.ipld.car")
            .body(car)),
        None => Err(ApiError::record_not_found()),
    }
}

/// Imports a repository CAR (raw body) into the caller's empty repository, re-signed with the
/// caller's key.
pub(super) async fn import_repo(
    req: HttpRequest,
    body: web::Payload,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let caller = require_caller(&req, &state).await?;
    // Taken before the body is read: a CAR in memory is the expensive part, so the cap bounds
    // what concurrent imports can hold, not only what they compute.
    let Ok(place) = Arc::clone(&state.imports).try_acquire_owned() else {
        return Err(ApiError::rate_limited(
            "another repository import is running; retry later",
            5,
        ));
    };
    let bytes = crate::body::read_limited(&req, body, state.config.limits.import_max_bytes).await?;
    if bytes.is_empty() {
        return Err(ApiError::invalid(
            "A request body is expected but none was provided",
        ));
    }
    // Parsing, checking and re-building a repository is CPU work proportional to the CAR: it
    // runs on a blocking thread driven by the background runtime, so the HTTP workers keep
    // answering (a hostile CAR once stalled `/health` for 16 s).
    let records = Arc::clone(state.stratos.records());
    let background = state.background.clone();
    let imported = actix_web::rt::task::spawn_blocking(move || {
        let _place = place;
        background.block_on(records.import_repo(&caller, &bytes))
    })
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "import task failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "Internal server error",
        )
    })??;
    Ok(HttpResponse::Ok().json(json!({ "imported": imported })))
}
