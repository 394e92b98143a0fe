//! `stratos-indexer`: configuration from the environment (docs/indexer.md); SIGTERM/SIGINT
//! stop it after the last batch is committed.

use std::net::TcpListener;
use std::sync::Arc;

use anyhow::Context as _;
use stratos_indexer::config::IndexerConfig;
use stratos_indexer::engine::Indexer;
use stratos_indexer::metrics::Metrics;
use stratos_postgres::{AppViewConfig, PostgresAppViewIndex};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // LOG_LEVEL (reference §1.2): error, warn, info (default), debug, trace; silent.
    let level = match std::env::var("LOG_LEVEL").as_deref().map(str::trim) {
        Ok("error" | "fatal") => Some(tracing::Level::ERROR),
        Ok("warn") => Some(tracing::Level::WARN),
        Ok("debug") => Some(tracing::Level::DEBUG),
        Ok("trace") => Some(tracing::Level::TRACE),
        Ok("silent") => None,
        _ => Some(tracing::Level::INFO),
    };
    if let Some(level) = level {
        tracing_subscriber::fmt().with_max_level(level).init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fatal: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run()) {
        eprintln!("fatal: {e:#}");
        std::process::exit(1);
    }
}

async fn run() -> anyhow::Result<()> {
    let config = IndexerConfig::from_env().context("configuration")?;
    tracing::info!(?config, "starting");
    let store = Arc::new(
        PostgresAppViewIndex::connect(&AppViewConfig {
            url: config.postgres_url.clone(),
            schema: config.schema.clone(),
            pool_size: config.pool_size,
        })
        .await
        .context("connecting to the AppView's PostgreSQL")?,
    );
    let metrics = Arc::new(Metrics::default());
    let listener = TcpListener::bind((config.health_bind.as_str(), config.health_port))
        .with_context(|| format!("binding {}:{}", config.health_bind, config.health_port))?;
    tracing::info!(addr = %listener.local_addr()?, "health, readiness and metrics");
    let server = stratos_indexer::http::serve(listener, metrics.clone(), store.clone())?;
    let server_handle = server.handle();
    let http = tokio::spawn(server);
    let indexer = Indexer::start(config, store, metrics).await?;
    shutdown_signal().await;
    tracing::info!("stopping: committing the last batch");
    indexer.stop().await;
    server_handle.stop(true).await;
    let _ = http.await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
