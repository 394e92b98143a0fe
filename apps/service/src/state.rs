//! The composition root: configuration in, adapters and use cases out.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use stratos_domain::crypto::{KeyAlgorithm, Keypair};
use stratos_ports::Storage;
use stratos_ports::Stratos;
use stratos_ports::auth::AuthSettings;
use stratos_ports::blob_store::BlobStore;
use stratos_ports::env::{AuthorizationServers, IdentityResolver};
use stratos_ports::usecases::oauth::RedirectPolicy;
use stratos_ports::usecases::stream::hub::HubSettings;

use crate::config::{BlobStorage, Config, SqliteDurability, StorageBackend};

/// Everything a request handler needs.
pub struct AppState {
    /// The effective configuration.
    pub config: Config,
    /// The library's services (records, enrollments, blobs, the sync stream, authentication)
    /// over the configured adapters.
    pub stratos: Stratos,
    /// The OAuth client metadata document.
    pub client_metadata: serde_json::Value,
    /// Admission of requests that carry a body (per-address and global caps).
    pub bodies: Arc<crate::body::BodyGate>,
    /// Places for repository imports running at once.
    pub imports: Arc<tokio::sync::Semaphore>,
    /// The runtime the state was built on (the multi-threaded one in `main`): CPU-heavy work
    /// such as an import runs there, on a blocking thread, never on an HTTP worker.
    pub background: tokio::runtime::Handle,
    /// Request counts and durations for `/metrics`.
    pub metrics: Arc<crate::metrics::HttpMetrics>,
    /// Commit durations and storage block reads for `/metrics`.
    pub storage_figures: Arc<crate::storage_metrics::StorageFigures>,
    /// The external allow-list (`STRATOS_ALLOW_LIST_URI`), for its figures in `/metrics`.
    pub allow_list: Option<Arc<stratos_network::allow_list::HttpAllowList>>,
    /// A Valkey connection for readiness (`STRATOS_VALKEY_URL`), when configured.
    pub valkey: Option<Arc<dyn stratos_ports::env::Cache>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

async fn open_storage(config: &Config) -> anyhow::Result<Storage> {
    Ok(match &config.storage {
        StorageBackend::Sqlite {
            data_dir,
            durability,
        } => {
            let durability = match durability {
                SqliteDurability::Durable => stratos_sqlite::Durability::Durable,
                SqliteDurability::Relaxed => stratos_sqlite::Durability::Relaxed,
            };
            stratos_sqlite::open_storage(data_dir, durability)
                .await
                .with_context(|| format!("opening SQLite storage in {}", data_dir.display()))?
        }
        #[cfg(feature = "postgres")]
        StorageBackend::Postgres {
            url, actor_pool, ..
        } => stratos_postgres::connect_storage(&stratos_postgres::PostgresConfig {
            url: url.expose().to_owned(),
            pool_size: *actor_pool,
            schema_prefix: String::new(),
        })
        .await
        .context("connecting to PostgreSQL")?,
        #[cfg(not(feature = "postgres"))]
        StorageBackend::Postgres { .. } => {
            return Err(missing_feature("STORAGE_BACKEND=postgres", "postgres"));
        }
    })
}

/// The error for a setting that needs a backend this build was compiled without (the service's
/// Cargo features `postgres`, `s3`, `valkey`; all on by default, `scripts/run` picks them).
#[cfg_attr(
    all(feature = "postgres", feature = "s3", feature = "valkey"),
    allow(dead_code)
)] // used by builds without some feature
fn missing_feature(setting: &str, feature: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{setting} needs the `{feature}` feature, which this build of stratos was compiled \
         without: build with `cargo build --release -p stratos-service --features {feature}`, \
         or start it with `scripts/run`, which turns on the features the configuration names"
    )
}

/// The refusals of [`missing_feature`] for the whole configuration, before anything is opened.
fn check_features(config: &Config) -> anyhow::Result<()> {
    #[cfg(not(feature = "postgres"))]
    if matches!(config.storage, StorageBackend::Postgres { .. }) {
        return Err(missing_feature("STORAGE_BACKEND=postgres", "postgres"));
    }
    #[cfg(not(feature = "s3"))]
    if matches!(config.blobs, BlobStorage::S3 { .. }) {
        return Err(missing_feature("STRATOS_BLOB_STORAGE=s3", "s3"));
    }
    #[cfg(not(feature = "valkey"))]
    if config.valkey_url.is_some() {
        return Err(missing_feature("STRATOS_VALKEY_URL", "valkey"));
    }
    let _ = config;
    Ok(())
}

/// A Valkey cache under the service's key prefix (`STRATOS_VALKEY_URL`).
#[cfg(feature = "valkey")]
async fn valkey_cache(
    config: &Config,
) -> anyhow::Result<Option<Arc<dyn stratos_ports::env::Cache>>> {
    let Some(url) = &config.valkey_url else {
        return Ok(None);
    };
    let ca = valkey_ca(config)?;
    let cache =
        stratos_valkey::ValkeyCache::connect_with_ca(url.expose(), "stratos:", ca.as_deref())
            .await
            .context("connecting to Valkey")?;
    Ok(Some(Arc::new(cache)))
}

#[cfg(not(feature = "valkey"))]
async fn valkey_cache(
    config: &Config,
) -> anyhow::Result<Option<Arc<dyn stratos_ports::env::Cache>>> {
    match config.valkey_url {
        Some(_) => Err(missing_feature("STRATOS_VALKEY_URL", "valkey")),
        None => Ok(None),
    }
}

/// Stream notifications across instances through Valkey (`STRATOS_VALKEY_URL`).
#[cfg(feature = "valkey")]
async fn valkey_notifier(
    config: &Config,
) -> anyhow::Result<Option<Arc<dyn stratos_ports::env::Notifier>>> {
    let Some(url) = &config.valkey_url else {
        return Ok(None);
    };
    let ca = valkey_ca(config)?;
    let notifier =
        stratos_valkey::ValkeyNotifier::connect_with_ca(url.expose(), "stratos:", ca.as_deref())
            .await
            .context("connecting to Valkey for stream notifications")?;
    Ok(Some(Arc::new(notifier)))
}

#[cfg(not(feature = "valkey"))]
async fn valkey_notifier(
    config: &Config,
) -> anyhow::Result<Option<Arc<dyn stratos_ports::env::Notifier>>> {
    match config.valkey_url {
        Some(_) => Err(missing_feature("STRATOS_VALKEY_URL", "valkey")),
        None => Ok(None),
    }
}

fn open_blobs(config: &Config) -> anyhow::Result<Arc<dyn BlobStore>> {
    Ok(match &config.blobs {
        BlobStorage::Local { dir } => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating blob directory {}", dir.display()))?;
            Arc::new(stratos_blobs::OpendalBlobStore::fs(dir).context("opening blob directory")?)
        }
        #[cfg(not(feature = "s3"))]
        BlobStorage::S3 { .. } => return Err(missing_feature("STRATOS_BLOB_STORAGE=s3", "s3")),
        #[cfg(feature = "s3")]
        BlobStorage::S3 {
            bucket,
            region,
            endpoint,
            credentials,
        } => Arc::new(
            stratos_blobs::OpendalBlobStore::s3(&stratos_blobs::S3Config {
                bucket: bucket.clone(),
                region: region.clone().unwrap_or_else(|| "us-east-1".into()),
                endpoint: endpoint.as_ref().map(|e| e.as_str().to_owned()),
                root: "/".into(),
                access_key_id: credentials
                    .as_ref()
                    .map(|c| c.access_key.expose().to_owned()),
                secret_access_key: credentials
                    .as_ref()
                    .map(|c| c.secret_key.expose().to_owned()),
            })
            .context("configuring S3 blob storage")?,
        ),
    })
}

fn parse_hex_key(path: &Path, text: &str) -> anyhow::Result<Keypair> {
    let bytes = hex::decode(text.trim())
        .with_context(|| format!("{} is not a hex-encoded key", path.display()))?;
    Keypair::from_private_bytes(KeyAlgorithm::K256, &bytes)
        .map_err(|e| anyhow::anyhow!("{} is not a secp256k1 key: {e}", path.display()))
}

/// The service's secp256k1 key.
///
/// With `key_file` (`STRATOS_SERVICE_KEY_FILE`) that file, which must exist: instances that share
/// a key must never each invent one. Otherwise `{data_dir}/service_key` (hex); on the first
/// start it is created (owner-only permissions) — from the TS original's `{data_dir}/signing_key`
/// (raw 32 bytes) when that file is there, so a data directory moved over from the original keeps
/// its key and every attestation it signed stays valid; else a new key.
pub fn load_service_key(data_dir: &Path, key_file: Option<&Path>) -> anyhow::Result<Keypair> {
    if let Some(path) = key_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading STRATOS_SERVICE_KEY_FILE {}", path.display()))?;
        return parse_hex_key(path, &text);
    }
    let path = data_dir.join("service_key");
    match std::fs::read_to_string(&path) {
        Ok(text) => parse_hex_key(&path, &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir)
                .with_context(|| format!("creating {}", data_dir.display()))?;
            let original = data_dir.join("signing_key");
            let key = match std::fs::read(&original) {
                Ok(bytes) => {
                    let key =
                        Keypair::from_private_bytes(KeyAlgorithm::K256, &bytes).map_err(|e| {
                            anyhow::anyhow!(
                                "{} (the TS original's service key) is not a raw 32-byte \
                                 secp256k1 key: {e}",
                                original.display()
                            )
                        })?;
                    tracing::warn!(
                        from = %original.display(),
                        to = %path.display(),
                        did_key = %key.did_key(),
                        "adopted the TS original's service key: attestations it signed stay valid"
                    );
                    key
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let key = Keypair::generate(KeyAlgorithm::K256);
                    tracing::info!(path = %path.display(), "generated a new service key");
                    key
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("reading {}", original.display()));
                }
            };
            write_private(&path, &hex::encode(key.private_bytes()))?;
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("creating {}", path.display()))
}

/// The external allow-list (`STRATOS_ALLOW_LIST_URI`), refreshed in the background and, with
/// `STRATOS_VALKEY_URL`, mirrored into a Valkey set (through `valkey`) for other instances and tools.
async fn open_allow_list(
    config: &Config,
    valkey: Option<Arc<dyn stratos_ports::env::Cache>>,
) -> anyhow::Result<Option<Arc<stratos_network::allow_list::HttpAllowList>>> {
    let Some(uri) = &config.enrollment.allow_list_uri else {
        return Ok(None);
    };
    let mirror = valkey.map(|cache| stratos_network::allow_list::Mirror {
        cache,
        key: config
            .enrollment
            .allow_list_bootstrap_name
            .clone()
            .unwrap_or_else(|| "allowlist".into()),
    });
    let mut list_config = stratos_network::allow_list::AllowListConfig::new(uri.as_str());
    list_config.user_agent = config.user_agent();
    let list = stratos_network::allow_list::HttpAllowList::start(list_config, mirror)
        .await
        .context("starting the external allow-list")?;
    Ok(Some(Arc::new(list)))
}

/// The PEM of `STRATOS_VALKEY_CA_FILE`, when set.
#[cfg(feature = "valkey")]
fn valkey_ca(config: &Config) -> anyhow::Result<Option<Vec<u8>>> {
    config
        .valkey_ca_file
        .as_ref()
        .map(|path| {
            std::fs::read(path)
                .with_context(|| format!("reading STRATOS_VALKEY_CA_FILE {}", path.display()))
        })
        .transpose()
}

/// The library's authentication settings from the configuration.
fn auth_settings(config: &Config) -> AuthSettings {
    let a = &config.auth;
    let mut settings = AuthSettings::default();
    settings.dev_mode = a.dev_mode;
    settings.admin_password = a.admin_password.clone();
    // The answer of a disabled admin endpoint names the variable that enables it.
    settings.admin_disabled_hint = "STRATOS_ADMIN_PASSWORD is not set".into();
    settings.sync_token = a.sync_token.clone();
    settings.dpop_require_nonce = a.dpop_require_nonce;
    settings.service_auth_max_lifetime_secs = i64::from(a.service_auth_max_lifetime_secs);
    // Proofs name the URL the client called: the configured public URL (D16).
    settings.public_url = Some(config.public_url.as_str().to_owned());
    settings
}

impl AppState {
    /// Opens every adapter the configuration names and builds the library's services.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        // Before anything is opened: a backend this build lacks is named, not half-started.
        check_features(&config)?;
        // Before anything is opened or created under another identity.
        crate::identity::check(&config.data_dir, &config.service_did)?;
        let storage_figures = Arc::new(crate::storage_metrics::StorageFigures::default());
        // Below the block cache the builder adds: the figures count what reaches the storage.
        let storage = open_storage(&config).await?.map_repos(|repos| {
            Arc::new(crate::storage_metrics::TimedRepos::new(
                repos,
                storage_figures.clone(),
            ))
        });
        let blobs = open_blobs(&config)?;
        let service_key = load_service_key(&config.data_dir, config.service_key_file.as_deref())?;
        let policy = config
            .enrollment_policy()
            .map_err(|e| anyhow::anyhow!("enrollment policy: {e}"))?;
        let identity: Arc<dyn IdentityResolver> = Arc::new(
            stratos_network::identity::HttpIdentityResolver::new(
                stratos_network::identity::IdentityConfig {
                    plc_url: config.plc_url.as_str().to_owned(),
                    // Plain-http identity lookups only for loopback hosts, and only in the
                    // development mode that already requires a loopback bind.
                    allow_http_for_localhost: config.auth.dev_mode,
                    allow_private_targets: config.outbound_allow_private,
                    user_agent: config.user_agent(),
                    ..Default::default()
                },
            )
            .map_err(|e| anyhow::anyhow!("identity resolver: {e}"))?,
        );
        let auth_servers: Arc<dyn AuthorizationServers> = Arc::new(
            stratos_network::HttpAuthorizationServers::new(stratos_network::AuthServerConfig {
                // As for identity lookups: plain http only to loopback, only in development.
                allow_http_for_localhost: config.auth.dev_mode,
                allow_private_targets: config.outbound_allow_private,
                user_agent: config.user_agent(),
                ..Default::default()
            })
            .map_err(|e| anyhow::anyhow!("authorization servers: {e}"))?,
        );
        let s = &config.stream;
        let mut builder = Stratos::builder(config.service_did.clone(), service_key)
            .public_url(config.public_url.as_str())
            .service_fragment(config.service_fragment.clone())
            .storage(storage)
            .blob_store(blobs)
            .identity(identity.clone())
            .authorization_servers(auth_servers)
            .auth_settings(auth_settings(&config))
            .enrollment_policy(policy)
            .rate_limit(config.write_rate.rate_limit())
            .block_cache(config.block_cache_size)
            .stream_settings(HubSettings {
                live_window: s.live_window,
                heartbeat: std::time::Duration::from_secs(s.heartbeat_secs),
                send_timeout: std::time::Duration::from_secs(s.send_timeout_secs),
            });
        match crate::oauth_client::http_client_config(&config)? {
            Some(oauth) => {
                let client = stratos_network::HttpOAuthClient::new(oauth, identity.clone())
                    .map_err(|e| anyhow::anyhow!("OAuth client: {e}"))?;
                let redirects = RedirectPolicy::new(
                    config.oauth.redirect_origins.iter().map(|u| u.as_str()),
                    !config.public_url.is_https(),
                );
                builder = builder.oauth(Arc::new(client), redirects);
            }
            None => {
                if let Some(why) = crate::oauth_client::unavailable_reason(&config) {
                    tracing::warn!("OAuth enrollment is off: {why}");
                }
            }
        }
        // One Valkey connection serves the allow-list mirror and the readiness check.
        let valkey = valkey_cache(&config).await?;
        let allow_list = open_allow_list(&config, valkey.clone()).await?;
        if let Some(list) = &allow_list {
            builder = builder.allow_list(list.clone());
        }
        if let Some(notifier) = valkey_notifier(&config).await? {
            builder = builder.notifier(notifier);
        }
        let stratos = builder.build().await.context("composing Stratos")?;
        let client_metadata = crate::oauth_client::client_metadata(&config)?;
        let limits = config.limits;
        Ok(Self {
            bodies: crate::body::BodyGate::new(
                limits.max_bodies_per_ip,
                limits.max_bodies,
                limits.body_timeout_secs,
            ),
            imports: Arc::new(tokio::sync::Semaphore::new(
                limits.import_concurrency as usize,
            )),
            background: tokio::runtime::Handle::current(),
            metrics: Arc::new(crate::metrics::HttpMetrics::default()),
            storage_figures,
            allow_list,
            valkey,
            client_metadata,
            stratos,
            config,
        })
    }
}
