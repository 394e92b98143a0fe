//! Headers every response gets: CORS as the reference (any origin; preflights answered with 204
//! reflecting the requested headers; `DPoP-Nonce`, `WWW-Authenticate` and `x-trace-id` exposed
//! to browser clients), the current DPoP nonce for requests that carry a proof, and a trace id.
//!
//! Every request runs inside a `request` span carrying its trace id, so every log line it causes
//! (internal errors with their cause included) names it, and ends with one access-log line
//! (target `stratos::access`): method, path (never the query, which can carry a sync token),
//! XRPC method, status, duration, trace id and the caller (a DID or `admin`, never a
//! credential). The same request is counted in `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::HttpMessage as _;
use actix_web::HttpResponse;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS,
    ACCESS_CONTROL_REQUEST_METHOD, HeaderMap, HeaderName, HeaderValue, ORIGIN, VARY,
};
use actix_web::middleware::Next;
use actix_web::web;
use tracing::Instrument as _;

use stratos_ports::auth::{DPOP_HEADER, DPOP_NONCE_HEADER};

use crate::state::AppState;

const ALLOWED_METHODS: &str = "GET,HEAD,PUT,PATCH,POST,DELETE";
const EXPOSED_HEADERS: &str = "DPoP-Nonce, WWW-Authenticate, x-trace-id";
const TRACE_ID: &str = "x-trace-id";
/// How long browsers may reuse a preflight answer, seconds.
const PREFLIGHT_MAX_AGE: &str = "600";

/// The middleware (`actix_web::middleware::from_fn`).
pub async fn response_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let trace_id = trace_id(req.headers());
    let started = std::time::Instant::now();
    // At ERROR level so that any filter that lets errors through keeps the span, and with it
    // the trace id on every line the request logs (an INFO span would vanish under `warn`).
    let span = tracing::error_span!(target: "stratos::request", "request", trace_id = %trace_id);
    let nonce = req
        .headers()
        .contains_key(DPOP_HEADER)
        .then(|| {
            req.app_data::<web::Data<AppState>>()
                .map(|state| state.stratos.auth().current_nonce())
        })
        .flatten();
    let preflight = req.method() == Method::OPTIONS
        && req.headers().contains_key(ORIGIN)
        && req.headers().contains_key(ACCESS_CONTROL_REQUEST_METHOD);
    let mut res = if preflight {
        let mut answer = HttpResponse::NoContent();
        answer.insert_header((ACCESS_CONTROL_ALLOW_METHODS, ALLOWED_METHODS));
        answer.insert_header((ACCESS_CONTROL_MAX_AGE, PREFLIGHT_MAX_AGE));
        if let Some(requested) = req.headers().get(ACCESS_CONTROL_REQUEST_HEADERS) {
            answer.insert_header((ACCESS_CONTROL_ALLOW_HEADERS, requested.clone()));
            answer.insert_header((VARY, "Access-Control-Request-Headers"));
        }
        let (http_req, _) = req.into_parts();
        ServiceResponse::new(http_req, answer.finish())
    } else {
        next.call(req)
            .instrument(span.clone())
            .await?
            .map_into_boxed_body()
    };
    access(&res, &span, started.elapsed());
    let headers = res.headers_mut();
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    headers.insert(
        ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSED_HEADERS),
    );
    if let Ok(v) = HeaderValue::from_str(&trace_id) {
        headers.insert(HeaderName::from_static(TRACE_ID), v);
    }
    if let Some(nonce) = nonce
        && !headers.contains_key(DPOP_NONCE_HEADER)
        && let Ok(v) = HeaderValue::from_str(&nonce)
    {
        headers.insert(HeaderName::from_static(DPOP_NONCE_HEADER), v);
    }
    Ok(res)
}

/// The access-log line and the request's metrics.
fn access(res: &ServiceResponse<BoxBody>, span: &tracing::Span, elapsed: std::time::Duration) {
    let req = res.request();
    let status = res.status().as_u16();
    let label = crate::metrics::label_of(req.path(), status, || req.match_pattern());
    let label = label.as_ref();
    if let Some(state) = req.app_data::<web::Data<AppState>>() {
        state.metrics.observe(label, status, elapsed.as_secs_f64());
    }
    let caller = req
        .extensions()
        .get::<crate::auth::Caller>()
        .map(|c| c.0.clone())
        .unwrap_or_default();
    let ms = elapsed.as_secs_f64() * 1000.0;
    span.in_scope(|| {
        if status >= 500 {
            tracing::error!(target: "stratos::access", method = %req.method(), path = req.path(), xrpc = label, status, ms, caller, "request");
        } else {
            tracing::info!(target: "stratos::access", method = %req.method(), path = req.path(), xrpc = label, status, ms, caller, "request");
        }
    });
}

/// The caller's `x-trace-id` when it is a short token, else a fresh one.
fn trace_id(headers: &HeaderMap) -> String {
    if let Some(given) = headers.get(TRACE_ID).and_then(|v| v.to_str().ok())
        && (1..=64).contains(&given.len())
        && given
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return given.to_owned();
    }
    fresh_trace_id()
}

/// 16 hex characters, unique per process run: a counter mixed with the start time. Trace ids
/// correlate log lines; they are not secrets.
fn fresh_trace_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let seed = *SEED.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // splitmix64: spreads consecutive counters over the whole range.
    let mut z = seed.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    format!("{:016x}", z ^ (z >> 31))
}
