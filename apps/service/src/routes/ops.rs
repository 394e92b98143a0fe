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

/// Liveness: the process answers HTTP. Touches nothing (a slow database must not get a live
/// process restarted).
pub(super) async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok", "version": VERSION }))
}

/// A ping of the configured Valkey (a read of one key), bounded to 2 s.
async fn valkey_ok(state: &AppState) -> Option<bool> {
    let cache = state.valkey.as_ref()?;
    Some(matches!(
        tokio::time::timeout(std::time::Duration::from_secs(2), cache.get("health-probe")).await,
        Ok(Ok(_))
    ))
}

/// Readiness (`/health`, `/ready`, `/xrpc/_health`): storage for real (one enrollment read),
/// one blob-store probe, and Valkey when configured.
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
    let valkey = valkey_ok(&state).await;
    let ok = db && blobs && valkey.unwrap_or(true);
    let word = |b: bool| if b { "ok" } else { "error" };
    let mut components = json!({ "db": word(db), "blobstore": word(blobs) });
    if let Some(v) = valkey {
        components["valkey"] = json!(word(v));
    }
    HttpResponse::build(if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    })
    .json(json!({
        "status": word(ok),
        "components": components,
        "version": VERSION,
    }))
}

/// `/metrics`: Prometheus text format (docs/operators.md lists the families).
pub(super) async fn metrics(state: State) -> HttpResponse {
    use crate::metrics::{family, sample};
    let mut out = String::with_capacity(8 * 1024);
    family(
        &mut out,
        "stratos_build_info",
        "gauge",
        "The running build (always 1).",
    );
    out.push_str(&format!("stratos_build_info{{version=\"{VERSION}\"}} 1\n"));
    sample(
        &mut out,
        "stratos_uptime_seconds",
        "gauge",
        "Seconds since the service started.",
        state.metrics.uptime_secs(),
    );
    state.metrics.render(&mut out);
    let s = state.stratos.streams().snapshot();
    let counters = [
        (
            "stratos_stream_frames_sent_total",
            "Frames sent to sync-stream subscribers.",
            s.frames_sent,
        ),
        (
            "stratos_stream_commits_published_total",
            "Commits published to the sync stream.",
            s.commits_published,
        ),
        (
            "stratos_stream_catch_ups_total",
            "Subscriptions that caught up from storage.",
            s.catch_ups,
        ),
        (
            "stratos_stream_slow_disconnects_total",
            "Subscribers dropped for falling behind.",
            s.slow_disconnects,
        ),
        (
            "stratos_stream_store_queries_total",
            "Storage reads made by the sync stream.",
            s.store_queries,
        ),
        (
            "stratos_stream_live_queries_total",
            "Storage reads made for live subscribers.",
            s.live_queries,
        ),
    ];
    for (name, help, value) in counters {
        sample(&mut out, name, "counter", help, value as f64);
    }
    sample(
        &mut out,
        "stratos_stream_subscribers",
        "gauge",
        "Open sync-stream subscriptions.",
        s.subscribers as f64,
    );
    for (name, value) in [
        ("stratos_stream_delivery_p50_ms", s.delivery_p50_ms),
        ("stratos_stream_delivery_p99_ms", s.delivery_p99_ms),
    ] {
        if let Some(v) = value {
            sample(
                &mut out,
                name,
                "gauge",
                "Commit to socket delay of recent deliveries, milliseconds.",
                v as f64,
            );
        }
    }
    if let Some(list) = &state.allow_list {
        let status = list.status();
        sample(
            &mut out,
            "stratos_allow_list_dids",
            "gauge",
            "DIDs on the external allow-list in memory.",
            status.dids as f64,
        );
        sample(
            &mut out,
            "stratos_allow_list_refresh_failures_total",
            "counter",
            "Fetches of the external allow-list that failed (the previous list was kept).",
            status.failures as f64,
        );
        sample(
            &mut out,
            "stratos_allow_list_refreshes_total",
            "counter",
            "Fetches of the external allow-list that replaced it.",
            status.successes as f64,
        );
    }
    state.storage_figures.render(&mut out);
    pools(&mut out, &state.stratos.storage().pool_figures());
    if let Some(cache) = state.stratos.block_cache_figures() {
        sample(
            &mut out,
            "stratos_block_cache_blocks",
            "gauge",
            "Repository blocks in the in-process block cache (STRATOS_BLOCK_CACHE_SIZE).",
            cache.blocks as f64,
        );
        sample(
            &mut out,
            "stratos_block_cache_capacity_blocks",
            "gauge",
            "The most blocks the block cache holds.",
            cache.capacity as f64,
        );
        sample(
            &mut out,
            "stratos_block_cache_hits_total",
            "counter",
            "Block reads answered from the block cache.",
            cache.hits as f64,
        );
        sample(
            &mut out,
            "stratos_block_cache_misses_total",
            "counter",
            "Block reads the block cache passed to storage.",
            cache.misses as f64,
        );
    }
    match state.stratos.storage().outbox().dead_total().await {
        Ok(n) => sample(
            &mut out,
            "stratos_outbox_dead_letters",
            "gauge",
            "PDS writes that failed for good and wait for an operator (docs/operators.md).",
            n as f64,
        ),
        Err(e) => tracing::warn!(error = %e, "metrics: the dead letters could not be counted"),
    }
    match state.stratos.storage().outbox().pending().await {
        Ok(n) => sample(
            &mut out,
            "stratos_outbox_pending",
            "gauge",
            "PDS writes (enrollment records, stubs) waiting for delivery.",
            n as f64,
        ),
        Err(e) => tracing::warn!(error = %e, "metrics: the outbox depth could not be read"),
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(out)
}

/// The storage adapter's pools: connections by state, and each pool's maximum.
fn pools(out: &mut String, figures: &[stratos_ports::storage::PoolFigures]) {
    use crate::metrics::family;
    use std::fmt::Write as _;
    if figures.is_empty() {
        return;
    }
    family(
        out,
        "stratos_storage_pool_connections",
        "gauge",
        "Connections a storage pool holds, by state (SQLite's `actors`: open account databases).",
    );
    for p in figures {
        let busy = p.open.saturating_sub(p.idle);
        let _ = writeln!(
            out,
            "stratos_storage_pool_connections{{pool=\"{}\",state=\"idle\"}} {}",
            p.name, p.idle
        );
        let _ = writeln!(
            out,
            "stratos_storage_pool_connections{{pool=\"{}\",state=\"busy\"}} {busy}",
            p.name
        );
    }
    family(
        out,
        "stratos_storage_pool_max_connections",
        "gauge",
        "The most connections a storage pool holds.",
    );
    for p in figures {
        let _ = writeln!(
            out,
            "stratos_storage_pool_max_connections{{pool=\"{}\"}} {}",
            p.name, p.max
        );
    }
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
