//! Operational endpoints: banner, health, robots, the service DID document.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::state::AppState;

type State = web::Data<AppState>;

const VERSION: &str = env!("CARGO_PKG_VERSION");

pub(super) async fn banner() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(format!(
            "Stratos {VERSION}: a private, boundary-aware data layer for AT Protocol.\n"
        ))
}

/// Checks storage for real: one enrollment read and one blob-store probe.
pub(super) async fn health(state: State) -> HttpResponse {
    let db = state
        .stratos
        .storage()
        .enrollments()
        .list(None, 1)
        .await
        .is_ok();
    let probe = stratos_domain::syntax::Did::parse("did:plc:healthprobe")
        .ok()
        .map(|d| (d, stratos_domain::cid::raw(b"health")));
    let blobs = match probe {
        Some((did, cid)) => state.stratos.blob_store().has(&did, &cid).await.is_ok(),
        None => false,
    };
    let ok = db && blobs;
    let word = |b: bool| if b { "ok" } else { "error" };
    HttpResponse::build(if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    })
    .json(json!({
        "status": word(ok),
        "components": { "db": word(db), "blobstore": word(blobs) },
        "version": VERSION,
    }))
}

pub(super) async fn robots() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body("# Hello! Crawling these APIs is not allowed\n\nUser-agent: *\nDisallow: /\n")
}

pub(super) async fn did_document(state: State) -> HttpResponse {
    let did = state.config.service_did.as_str();
    let key = state.stratos.service_key().did_key();
    let multibase = key.strip_prefix("did:key:").unwrap_or(&key);
    let fragment = &state.config.service_fragment;
    HttpResponse::Ok().json(json!({
        "@context": ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/multikey/v1"],
        "id": did,
        "verificationMethod": [{
            "id": format!("{did}#{fragment}"),
            "type": "Multikey",
            "controller": did,
            "publicKeyMultibase": multibase,
        }],
        "service": [{
            "id": format!("#{fragment}"),
            "type": "StratosService",
            "serviceEndpoint": state.config.public_url.as_str(),
        }],
    }))
}

/// The OAuth client metadata document (built at start-up, see `crate::oauth_client`).
pub(super) async fn client_metadata(state: State) -> HttpResponse {
    HttpResponse::Ok().json(&state.client_metadata)
}
