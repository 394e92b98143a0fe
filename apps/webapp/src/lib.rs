//! The reference web app of the Stratos SDK (`stratos-webapp`): a person signs in with their
//! atproto account (OAuth against their PDS), enrolls in a Stratos service through the
//! service's own `/oauth/authorize`, writes posts into a boundary, and reads one feed in which
//! public posts from PDSes and private posts from Stratos appear together — private posts read
//! through the AppView SDK ([`stratos_ports::usecases::appview::AppView`]) over the indexer's
//! PostgreSQL, so a viewer sees the content of exactly the posts their boundaries allow, and a
//! stub ("private") for the others.
//!
//! Pages are rendered on the server (no script, no front-end build). docs/webapp.md explains
//! how to run it and shows the screens.

pub mod app;
pub mod config;
pub mod feed;
pub mod render;

use std::sync::Arc;

use actix_web::dev::ServerHandle;
use stratos_network::{HttpIdentityResolver, HttpOAuthClient, IdentityConfig, OAuthClientConfig};
use stratos_ports::usecases::appview::AppView;
use stratos_postgres::{AppViewConfig, PostgresAppViewIndex};

pub use config::WebAppConfig;

/// Why the web app could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listening socket.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A setting the clients refuse.
    #[error("configuration: {0}")]
    Config(String),
    /// The indexer's database.
    #[error("the AppView index: {0}")]
    Index(#[source] stratos_postgres::PostgresError),
}

/// A running web app.
#[derive(Debug)]
pub struct RunningWebApp {
    /// The address it listens on.
    pub addr: std::net::SocketAddr,
    /// The URL browsers use.
    pub public_url: String,
    handle: ServerHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningWebApp {
    /// Stops accepting connections and finishes the requests in flight.
    pub async fn stop(self) {
        self.handle.stop(true).await;
        let _ = self.task.await;
    }

    /// Runs until the server stops.
    pub async fn wait(self) -> std::io::Result<()> {
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}

/// Starts the web app: binds, connects to the indexer's database, and serves.
pub async fn start(config: WebAppConfig) -> Result<RunningWebApp, StartError> {
    let listener = std::net::TcpListener::bind(config.bind).map_err(|source| StartError::Bind {
        addr: config.bind,
        source,
    })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.bind,
        source,
    })?;
    let public_url = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let identity = Arc::new(
        HttpIdentityResolver::new(IdentityConfig {
            plc_url: config.plc_url.clone(),
            allow_http_for_localhost: config.allow_private,
            allow_private_targets: config.allow_private,
            ..IdentityConfig::default()
        })
        .map_err(|e| StartError::Config(e.to_string()))?,
    );
    let mut oauth_config =
        OAuthClientConfig::loopback(format!("{public_url}/oauth/callback"), app::SCOPE);
    oauth_config.allow_http_for_localhost = config.allow_private;
    oauth_config.allow_private_targets = config.allow_private;
    let oauth = Arc::new(
        HttpOAuthClient::new(oauth_config, identity.clone())
            .map_err(|e| StartError::Config(e.to_string()))?,
    );
    let index = Arc::new(
        PostgresAppViewIndex::connect(&AppViewConfig {
            url: config.index_url.clone(),
            schema: config.index_schema.clone(),
            pool_size: 4,
        })
        .await
        .map_err(StartError::Index)?,
    );
    let appview = AppView::builder(index.clone())
        .viewer_ttl_ms(config.viewer_ttl_ms)
        .build();
    let state = actix_web::web::Data::new(app::State::new(app::Parts {
        public_url: public_url.clone(),
        stratos_url: config.stratos_url.clone(),
        stratos_did: config.stratos_did.clone(),
        oauth,
        identity,
        index,
        appview,
    }));
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(state.clone())
            .app_data(actix_web::web::FormConfig::default().limit(16 * 1024))
            .wrap(app::security_headers())
            .configure(app::routes)
    })
    .workers(2)
    .listen(listener)
    .map_err(|source| StartError::Bind { addr, source })?
    .run();
    let handle = server.handle();
    let task = tokio::spawn(server);
    tracing::info!(%addr, %public_url, "stratos-webapp listening");
    Ok(RunningWebApp {
        addr,
        public_url,
        handle,
        task,
    })
}
