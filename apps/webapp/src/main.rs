//! `stratos-webapp`: the reference web app (docs/webapp.md). Configuration from `WEBAPP_*`
//! variables .

use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .init();
    let config = stratos_webapp::WebAppConfig::from_env()?;
    let running = stratos_webapp::start(config).await?;
    println!("stratos-webapp on {}", running.public_url);
    tokio::select! {
        r = tokio::signal::ctrl_c() => { r?; }
        r = wait_term() => { r?; }
    }
    running.stop().await;
    Ok(())
}

#[cfg(unix)]
async fn wait_term() -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    term.recv().await;
    Ok(())
}

#[cfg(not(unix))]
async fn wait_term() -> std::io::Result<()> {
    std::future::pending().await
}
