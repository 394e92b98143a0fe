//! `stratos`: runs the service with the configuration from the environment.

use stratos_service::config::Config;

// Measured with stratos-loadgen (docs/performance.md): glibc malloc's arena locking across the
// storage driver's many threads cost 10-25 % of throughput; mimalloc's per-thread heaps do not.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("configuration error:\n{e}");
            std::process::exit(2);
        }
    };
    let level = match config.log_level.filter_directive() {
        "error" => Some(tracing::Level::ERROR),
        "warn" => Some(tracing::Level::WARN),
        "info" => Some(tracing::Level::INFO),
        "debug" => Some(tracing::Level::DEBUG),
        "trace" => Some(tracing::Level::TRACE),
        _ => None,
    };
    if let Some(level) = level {
        tracing_subscriber::fmt().with_max_level(level).init();
    }
    tracing::info!(
        "effective configuration (secrets redacted):\n{}",
        config.redacted()
    );
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    if config.auth.dev_mode {
        tracing::warn!(
            "STRATOS_DEV_MODE is on: `Authorization: Bearer <did>` is accepted without any \
             verification (loopback only)"
        );
    }
    let workers = std::thread::available_parallelism().map_or(2, usize::from);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let server = stratos_service::start(config, workers).await?;
        tracing::info!("listening on {}", server.url());
        server.wait().await
    })
}
