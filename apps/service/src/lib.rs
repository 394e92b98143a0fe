//! The Stratos service: the XRPC API over actix-web, composed from the configuration.
//!
//! `main.rs` is a thin wrapper over [`start`]; integration tests call [`start`] on a loopback
//! port and talk HTTP to it.

mod auth;
mod body;
pub mod config;
pub mod error;
pub mod identity;
pub mod metrics;
mod middleware;
pub mod oauth_client;
mod routes;
pub mod state;
pub mod storage_metrics;

use std::net::SocketAddr;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer, web};
use anyhow::Context as _;

use crate::config::Config;
use crate::state::AppState;

pub use crate::routes::StatsSnapshot;

/// A running service.
#[derive(Debug)]
pub struct RunningServer {
    /// The address it listens on.
    pub addr: SocketAddr,
    handle: ServerHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    streams: std::sync::Arc<routes::StreamHub>,
    /// The outbox's delivery to the users' PDSes (with OAuth configured): its stop signal and
    /// task.
    delivery: Option<(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    )>,
    /// The metrics port's server, when `/metrics` has one of its own.
    metrics: Option<(ServerHandle, tokio::task::JoinHandle<std::io::Result<()>>)>,
}

impl RunningServer {
    /// `http://{addr}`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting connections, finishes in-flight requests and waits.
    pub async fn stop(self) -> anyhow::Result<()> {
        // Stream subscriptions never finish on their own: close them first.
        self.streams.shut_down();
        self.handle.stop(true).await;
        if let Some((stop, task)) = self.delivery {
            // The batch in progress finishes (each attempt is bounded by its timeout).
            let _ = stop.send(());
            task.await.context("delivery task")?;
        }
        if let Some((handle, task)) = self.metrics {
            handle.stop(true).await;
            task.await.context("metrics server task")??;
        }
        self.task.await.context("server task")??;
        Ok(())
    }

    /// Counters of the sync stream (subscribers, frames, storage reads).
    pub fn stream_stats(&self) -> StatsSnapshot {
        self.streams.snapshot()
    }

    /// Waits until the server stops (on SIGINT/SIGTERM, which actix handles).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await.context("server task")??;
        if let Some((handle, task)) = self.metrics {
            handle.stop(true).await;
            task.await.context("metrics server task")??;
        }
        Ok(())
    }
}

/// Builds the adapters and use cases, binds `config.bind:config.port` (0 picks a free port)
/// and serves in the background.
pub async fn start(config: Config, workers: usize) -> anyhow::Result<RunningServer> {
    let addr = config.socket_addr();
    let state = web::Data::new(AppState::build(config).await?);
    let bodies = web::Data::from(state.bodies.clone());
    let streams = state.stratos.streams().clone();
    tokio::spawn(routes::close_streams_on_signal(streams.clone()));
    // Enrollment records and stubs reach the PDSes only with the accounts' OAuth sessions.
    let delivery = state
        .stratos
        .delivery(stratos_ports::usecases::delivery::DeliverySettings::default())
        .map(|delivery| {
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let metrics = state.metrics.clone();
            let task = tokio::spawn(async move {
                delivery
                    .run_with(
                        async {
                            let _ = stopped.await;
                        },
                        |report| {
                            metrics.delivery.record(report);
                            // Failed claims are logged by `run_with` itself.
                            if let Ok(r) = report {
                                r.log();
                            }
                        },
                    )
                    .await;
            });
            (stop, task)
        });
    let metrics_addr = state.config.metrics_addr;
    // `/metrics` on a port of its own when configured: one worker, nothing else served there.
    let metrics = match metrics_addr {
        Some(addr) => {
            let state = state.clone();
            let server = HttpServer::new(move || {
                App::new()
                    .app_data(state.clone())
                    .configure(routes::configure_metrics)
            })
            .workers(1)
            .bind(addr)
            .with_context(|| format!("binding the metrics port {addr}"))?
            .run();
            let handle = server.handle();
            Some((handle, tokio::spawn(server)))
        }
        None => None,
    };
    let server = HttpServer::new(move || {
        App::new()
            .wrap(actix_web::middleware::from_fn(middleware::response_headers))
            .app_data(state.clone())
            .app_data(bodies.clone())
            .configure(|cfg| routes::configure(cfg, metrics_addr.is_none()))
            .default_service(web::to(routes::fallback))
    })
    .workers(workers.max(1))
    .bind(addr)
    .with_context(|| format!("binding {addr}"))?;
    let bound = server
        .addrs()
        .first()
        .copied()
        .context("the server bound no address")?;
    let server = server.run();
    let handle = server.handle();
    let task = tokio::spawn(server);
    Ok(RunningServer {
        addr: bound,
        handle,
        task,
        streams,
        delivery,
        metrics,
    })
}
