//! Health, readiness and metrics over HTTP (reference §1.10).

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use actix_web::{App, HttpResponse, HttpServer, web};
use serde_json::json;
use stratos_ports::appview_store::IndexWriter;

use crate::metrics::Metrics;

#[derive(Clone)]
struct State {
    metrics: Arc<Metrics>,
    store: Arc<dyn IndexWriter>,
}

async fn body(state: &State) -> (bool, serde_json::Value) {
    let db = state.store.ping().await.is_ok();
    let service = state.metrics.service_connected.load(Ordering::Relaxed);
    let m = &state.metrics;
    let ready = db && service;
    (
        ready,
        json!({
            "status": if ready { "healthy" } else { "degraded" },
            "db": if db { "connected" } else { "disconnected" },
            "stratosService": if service { "connected" } else { "disconnected" },
            "enrolledActors": m.actors.load(Ordering::Relaxed),
            "actorSync": {
                "activeConnections": m.actors_connected.load(Ordering::Relaxed),
                "waitingActors": m.actors_waiting.load(Ordering::Relaxed),
            },
        }),
    )
}

/// Liveness: always 200 while the process serves (with the same figures as `/ready`).
async fn health(state: web::Data<State>) -> HttpResponse {
    HttpResponse::Ok().json(body(&state).await.1)
}

/// Readiness: 200 when the index answers and the service-level stream is connected, else 503.
async fn ready(state: web::Data<State>) -> HttpResponse {
    let (ready, body) = body(&state).await;
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn metrics_text(state: web::Data<State>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}

/// Serves `/health`, `/ready` and `/metrics` on `listener` until the returned server stops.
pub fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    store: Arc<dyn IndexWriter>,
) -> std::io::Result<actix_web::dev::Server> {
    let state = State { metrics, store };
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(state.clone()))
            .route("/health", web::get().to(health))
            .route("/ready", web::get().to(ready))
            .route("/metrics", web::get().to(metrics_text))
            .default_service(web::to(|| async {
                HttpResponse::NotFound().json(json!({ "error": "NotFound" }))
            }))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run())
}
