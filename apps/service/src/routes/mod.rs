//! The HTTP surface: every XRPC method with its HTTP method, the operational endpoints, and the
//! fallbacks (unknown method → 501, wrong HTTP method → 400).

mod admin;
mod blob;
mod oauth;
mod ops;
mod repo;
mod stratos;
mod subscribe;
mod sync;

pub use stratos_ports::usecases::stream::hub::{StatsSnapshot, StreamHub};
pub use subscribe::close_streams_on_signal;

use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse, Route, web};
use serde::de::DeserializeOwned;
use stratos_domain::syntax::Did;
use stratos_ports::usecases::UseCaseError;
use stratos_ports::xrpc::{self, XrpcError};

use crate::error::ApiError;

/// Record collections a Stratos repository can hold (for `describeRepo`).
const RECORD_COLLECTIONS: &[&str] = &["zone.stratos.feed.post"];

/// A port failure, through the one use-case → XRPC mapping.
fn port<E: Into<UseCaseError>>(e: E) -> ApiError {
    ApiError::from(e.into())
}

/// Query parameters into `T`, with XRPC errors (the library's parser, as its reads use).
fn query<T: DeserializeOwned>(req: &HttpRequest) -> Result<T, ApiError> {
    Ok(xrpc::parse_query(req.query_string())?)
}

fn parse_did(s: &str, field: &str) -> Result<Did, ApiError> {
    Ok(xrpc::parse_did(s, field)?)
}

/// One XRPC method: its NSID, its HTTP method and its handler.
fn xrpc(cfg: &mut web::ServiceConfig, nsid: &str, method: Method, route: Route) {
    let expected = method.clone();
    cfg.service(
        web::resource(format!("/xrpc/{nsid}"))
            .route(route.method(method))
            .default_service(web::to(move |req: HttpRequest| {
                let expected = expected.clone();
                async move {
                    Err::<HttpResponse, _>(ApiError::from(XrpcError::wrong_method(
                        req.method().as_str(),
                        expected.as_str(),
                    )))
                }
            })),
    );
}

/// Registers `/metrics` alone.
pub fn configure_metrics(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(ops::metrics));
}

/// Registers every route; `/metrics` only when `metrics` (it is served on a port of its own
/// otherwise: [`configure_metrics`]).
pub fn configure(cfg: &mut web::ServiceConfig, metrics: bool) {
    if metrics {
        configure_metrics(cfg);
    }
    use Method as M;
    let repo = "com.atproto.repo";
    xrpc(
        cfg,
        &format!("{repo}.createRecord"),
        M::POST,
        web::to(repo::create_record),
    );
    xrpc(
        cfg,
        &format!("{repo}.putRecord"),
        M::POST,
        web::to(repo::put_record),
    );
    xrpc(
        cfg,
        &format!("{repo}.deleteRecord"),
        M::POST,
        web::to(repo::delete_record),
    );
    xrpc(
        cfg,
        &format!("{repo}.applyWrites"),
        M::POST,
        web::to(repo::apply_writes),
    );
    xrpc(
        cfg,
        &format!("{repo}.getRecord"),
        M::GET,
        web::to(repo::get_record),
    );
    xrpc(
        cfg,
        &format!("{repo}.listRecords"),
        M::GET,
        web::to(repo::list_records),
    );
    xrpc(
        cfg,
        &format!("{repo}.describeRepo"),
        M::GET,
        web::to(repo::describe_repo),
    );
    xrpc(
        cfg,
        &format!("{repo}.uploadBlob"),
        M::POST,
        web::to(blob::upload_blob),
    );
    xrpc(
        cfg,
        "com.atproto.sync.getBlob",
        M::GET,
        web::to(blob::get_blob),
    );
    xrpc(
        cfg,
        "com.atproto.sync.listBlobs",
        M::GET,
        web::to(blob::list_blobs),
    );
    xrpc(
        cfg,
        "com.atproto.sync.getLatestCommit",
        M::GET,
        web::to(sync::get_latest_commit),
    );
    xrpc(
        cfg,
        "zone.stratos.sync.getRepo",
        M::GET,
        web::to(sync::get_repo),
    );
    // The atproto name of the same export, for standard tools; same owner-only rule.
    xrpc(
        cfg,
        "com.atproto.sync.getRepo",
        M::GET,
        web::to(sync::get_repo),
    );
    xrpc(
        cfg,
        "zone.stratos.sync.subscribeRecords",
        M::GET,
        web::to(subscribe::subscribe_records),
    );
    xrpc(
        cfg,
        "com.atproto.sync.getRecord",
        M::GET,
        web::to(sync::get_record),
    );
    xrpc(
        cfg,
        "zone.stratos.repo.importRepo",
        M::POST,
        web::to(sync::import_repo),
    );
    xrpc(
        cfg,
        "zone.stratos.enrollment.status",
        M::GET,
        web::to(stratos::enrollment_status),
    );
    xrpc(
        cfg,
        "zone.stratos.enrollment.unenroll",
        M::POST,
        web::to(stratos::unenroll),
    );
    xrpc(
        cfg,
        "zone.stratos.identity.resolveEnrollments",
        M::GET,
        web::to(stratos::resolve_enrollments),
    );
    xrpc(
        cfg,
        "zone.stratos.server.listDomains",
        M::GET,
        web::to(stratos::list_domains),
    );
    xrpc(
        cfg,
        "zone.stratos.repo.hydrateRecord",
        M::GET,
        web::to(stratos::hydrate_record),
    );
    xrpc(
        cfg,
        "zone.stratos.repo.hydrateRecords",
        M::POST,
        web::to(stratos::hydrate_records),
    );
    xrpc(
        cfg,
        "zone.stratos.admin.enrollActor",
        M::POST,
        web::to(admin::enroll_actor),
    );
    xrpc(
        cfg,
        "zone.stratos.admin.addBoundary",
        M::POST,
        web::to(admin::add_boundary),
    );
    xrpc(
        cfg,
        "zone.stratos.admin.removeBoundary",
        M::POST,
        web::to(admin::remove_boundary),
    );
    xrpc(
        cfg,
        "zone.stratos.admin.setBoundaries",
        M::POST,
        web::to(admin::set_boundaries),
    );
    xrpc(
        cfg,
        "zone.stratos.admin.listDeadLetters",
        M::GET,
        web::to(admin::list_dead_letters),
    );
    xrpc(
        cfg,
        "zone.stratos.admin.retryDeadLetter",
        M::POST,
        web::to(admin::retry_dead_letter),
    );
    cfg.route("/", web::get().to(ops::banner))
        .route("/health", web::get().to(ops::health))
        .route("/xrpc/_health", web::get().to(ops::health))
        .route("/ready", web::get().to(ops::health))
        .route("/live", web::get().to(ops::live))
        .route("/robots.txt", web::get().to(ops::robots))
        .route("/.well-known/did.json", web::get().to(ops::did_document))
        .route("/client-metadata.json", web::get().to(ops::client_metadata))
        .route("/oauth/authorize", web::get().to(oauth::authorize))
        .route("/oauth/callback", web::get().to(oauth::callback))
        .route("/oauth/status", web::get().to(oauth::status))
        .route("/oauth/revoke", web::post().to(oauth::revoke))
        .route(
            "/.well-known/oauth-client-metadata.json",
            web::get().to(ops::client_metadata),
        );
}

/// Anything else: unknown XRPC methods are 501 `MethodNotImplemented`, other paths 404.
pub async fn fallback(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    match req.path().strip_prefix("/xrpc/") {
        Some(nsid) => Err(ApiError::not_implemented(nsid)),
        None => Err(ApiError::new(
            actix_web::http::StatusCode::NOT_FOUND,
            "NotFound",
            "not found",
        )),
    }
}
