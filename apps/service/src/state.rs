//! The composition root: configuration in, adapters and use cases out.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use stratos_domain::crypto::{KeyAlgorithm, Keypair};
use stratos_domain::lexicon::Catalog;
use stratos_domain::write::WritePolicy;
use stratos_ports::blob_store::BlobStore;
use stratos_ports::block_cache::CachedBlocks;
use stratos_ports::enrollment_store::EnrollmentStore;
use stratos_ports::env::{AllowList, AuthorizationServers, Clock, IdentityResolver};
use stratos_ports::keys::SigningKeyStore;
use stratos_ports::outbox::Outbox;
use stratos_ports::repo_store::RepoStore;
use stratos_ports::usecases::enrollment::{EnrollmentDeps, Enrollments};
use stratos_ports::usecases::records::{RecordDeps, Records};

use crate::config::{BlobStorage, Config, SqliteDurability, StorageBackend};

/// Everything a request handler needs.
pub struct AppState {
    /// The effective configuration.
    pub config: Config,
    /// Record use cases.
    pub records: Arc<Records>,
    /// Enrollment use cases.
    pub enrollments: Arc<Enrollments>,
    /// Enrollment reads (status, resolveEnrollments, health).
    pub enrollment_store: Arc<dyn EnrollmentStore>,
    /// Repository reads that need no use case (heads, CAR export for sync).
    pub repos: Arc<dyn RepoStore>,
    /// Blobs.
    pub blobs: Arc<dyn BlobStore>,
    /// The service's secp256k1 key (attestations, `did.json`).
    pub service_key: Arc<Keypair>,
    /// DID documents of token issuers.
    pub identity: Arc<dyn IdentityResolver>,
    /// The sync stream's live fan-out (fed by the use cases after each commit).
    pub streams: Arc<crate::routes::StreamHub>,
    /// Keys of accounts' OAuth authorization servers (DPoP-bound access tokens).
    pub auth_servers: Arc<dyn AuthorizationServers>,
    /// DPoP nonces and replay cache, shared by all workers.
    pub dpop: crate::dpop::DpopVerifier,
    /// The OAuth client metadata document.
    pub client_metadata: serde_json::Value,
    /// Admission of requests that carry a body (per-address and global caps).
    pub bodies: Arc<crate::body::BodyGate>,
    /// Places for repository imports running at once.
    pub imports: Arc<tokio::sync::Semaphore>,
    /// The runtime the state was built on (the multi-threaded one in `main`): CPU-heavy work
    /// such as an import runs there, on a blocking thread, never on an HTTP worker.
    pub background: tokio::runtime::Handle,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Wall-clock time.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
    }
}

struct Storage {
    repos: Arc<dyn RepoStore>,
    enrollments: Arc<dyn EnrollmentStore>,
    keys: Arc<dyn SigningKeyStore>,
    outbox: Arc<dyn Outbox>,
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
            let s = stratos_sqlite::SqliteStorage::open(data_dir, durability)
                .await
                .with_context(|| format!("opening SQLite storage in {}", data_dir.display()))?;
            Storage {
                repos: Arc::new(CachedBlocks::new(s.repos.clone(), config.block_cache_size)),
                enrollments: Arc::new(s.enrollments.clone()),
                keys: Arc::new(s.keys.clone()),
                outbox: Arc::new(s.outbox.clone()),
            }
        }
        StorageBackend::Postgres {
            url, actor_pool, ..
        } => {
            let s = stratos_postgres::PostgresStorage::connect(&stratos_postgres::PostgresConfig {
                url: url.expose().to_owned(),
                pool_size: *actor_pool,
                schema_prefix: String::new(),
            })
            .await
            .context("connecting to PostgreSQL")?;
            Storage {
                repos: Arc::new(CachedBlocks::new(s.repos.clone(), config.block_cache_size)),
                enrollments: Arc::new(s.enrollments.clone()),
                keys: Arc::new(s.keys.clone()),
                outbox: Arc::new(s.outbox.clone()),
            }
        }
    })
}

fn open_blobs(config: &Config) -> anyhow::Result<Arc<dyn BlobStore>> {
    Ok(match &config.blobs {
        BlobStorage::Local { dir } => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating blob directory {}", dir.display()))?;
            Arc::new(stratos_blobs::OpendalBlobStore::fs(dir).context("opening blob directory")?)
        }
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

/// The sync stream's hub over the storage, connected to the other instances through Valkey
/// when `STRATOS_VALKEY_URL` is set.
async fn open_streams(
    config: &Config,
    storage: &Storage,
) -> anyhow::Result<Arc<crate::routes::StreamHub>> {
    let cursor = storage
        .enrollments
        .latest_event_seq()
        .await
        .context("reading the enrollment log")?;
    let s = &config.stream;
    let hub = Arc::new(crate::routes::StreamHub::new(
        storage.repos.clone(),
        storage.enrollments.clone(),
        crate::routes::HubSettings {
            live_window: s.live_window,
            heartbeat: std::time::Duration::from_secs(s.heartbeat_secs),
            send_timeout: std::time::Duration::from_secs(s.send_timeout_secs),
        },
        cursor,
    ));
    if let Some(url) = &config.valkey_url {
        let notifier = stratos_valkey::ValkeyNotifier::connect(url.expose(), "stratos:")
            .await
            .context("connecting to Valkey for stream notifications")?;
        hub.attach_notifier(Arc::new(notifier));
    }
    Ok(hub)
}

/// Loads the service's secp256k1 key from `{data_dir}/service_key` (hex), creating it on first
/// start with owner-only permissions.
pub fn load_service_key(data_dir: &Path) -> anyhow::Result<Keypair> {
    let path = data_dir.join("service_key");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let bytes = hex::decode(text.trim()).context("service_key is not hex")?;
            Keypair::from_private_bytes(KeyAlgorithm::K256, &bytes)
                .map_err(|e| anyhow::anyhow!("service_key is not a secp256k1 key: {e}"))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir)
                .with_context(|| format!("creating {}", data_dir.display()))?;
            let key = Keypair::generate(KeyAlgorithm::K256);
            write_private(&path, &hex::encode(key.private_bytes()))?;
            tracing::info!(path = %path.display(), "generated a new service key");
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
/// `STRATOS_VALKEY_URL`, mirrored into a Valkey set for other instances and tools.
async fn open_allow_list(config: &Config) -> anyhow::Result<Option<Arc<dyn AllowList>>> {
    let Some(uri) = &config.enrollment.allow_list_uri else {
        return Ok(None);
    };
    let mirror = match &config.valkey_url {
        Some(url) => {
            let cache = stratos_valkey::ValkeyCache::connect(url.expose(), "stratos:")
                .await
                .context("connecting to Valkey")?;
            Some(stratos_network::allow_list::Mirror {
                cache: Arc::new(cache),
                key: config
                    .enrollment
                    .allow_list_bootstrap_name
                    .clone()
                    .unwrap_or_else(|| "allowlist".into()),
            })
        }
        None => None,
    };
    let list = stratos_network::allow_list::HttpAllowList::start(
        stratos_network::allow_list::AllowListConfig::new(uri.as_str()),
        mirror,
    )
    .await
    .context("starting the external allow-list")?;
    Ok(Some(Arc::new(list)))
}

impl AppState {
    /// Opens every adapter the configuration names and builds the use cases.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        // Before anything is opened or created under another identity.
        crate::identity::check(&config.data_dir, &config.service_did)?;
        let storage = open_storage(&config).await?;
        let streams = open_streams(&config, &storage).await?;
        let blobs = open_blobs(&config)?;
        let service_key = Arc::new(load_service_key(&config.data_dir)?);
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let catalog =
            Arc::new(Catalog::stratos().map_err(|e| anyhow::anyhow!("loading the lexicons: {e}"))?);
        let records = Arc::new(
            Records::new(RecordDeps {
                repos: storage.repos.clone(),
                enrollments: storage.enrollments.clone(),
                keys: storage.keys.clone(),
                clock: clock.clone(),
                catalog,
                policy: WritePolicy {
                    service_did: config.service_did.clone(),
                    allowed: config.allowed_boundaries.clone(),
                },
                service_ref: format!("{}#{}", config.service_did, config.service_fragment),
                rate_limit: config.write_rate.rate_limit(),
                blobs: blobs.clone(),
            })
            .with_event_sink(streams.clone()),
        );
        let policy = config
            .enrollment_policy()
            .map_err(|e| anyhow::anyhow!("enrollment policy: {e}"))?;
        let allow_list = open_allow_list(&config).await?;
        let identity: Arc<dyn IdentityResolver> = Arc::new(
            stratos_network::identity::HttpIdentityResolver::new(
                stratos_network::identity::IdentityConfig {
                    plc_url: config.plc_url.as_str().to_owned(),
                    // Plain-http identity lookups only for loopback hosts, and only in the
                    // development mode that already requires a loopback bind.
                    allow_http_for_localhost: config.auth.dev_mode,
                    allow_private_targets: config.outbound_allow_private,
                    ..Default::default()
                },
            )
            .map_err(|e| anyhow::anyhow!("identity resolver: {e}"))?,
        );
        let enrollments = Arc::new(
            Enrollments::new(EnrollmentDeps {
                repos: storage.repos.clone(),
                enrollments: storage.enrollments.clone(),
                keys: storage.keys.clone(),
                outbox: storage.outbox.clone(),
                blobs: blobs.clone(),
                identity: identity.clone(),
                allow_list,
                clock,
                policy,
                service_did: config.service_did.clone(),
                service_endpoint: config.public_url.as_str().to_owned(),
                service_key: service_key.clone(),
                records: records.clone(),
            })
            .with_event_sink(streams.clone()),
        );
        let auth_servers: Arc<dyn AuthorizationServers> = Arc::new(
            stratos_network::HttpAuthorizationServers::new(stratos_network::AuthServerConfig {
                // As for identity lookups: plain http only to loopback, only in development.
                allow_http_for_localhost: config.auth.dev_mode,
                allow_private_targets: config.outbound_allow_private,
                ..Default::default()
            })
            .map_err(|e| anyhow::anyhow!("authorization servers: {e}"))?,
        );
        let dpop = crate::dpop::DpopVerifier::new(
            &service_key,
            config.auth.dpop_require_nonce,
            config.public_url.as_str(),
        );
        let client_metadata = crate::oauth_client::client_metadata(&config)?;
        let limits = config.limits;
        Ok(Self {
            bodies: crate::body::BodyGate::new(limits.max_bodies_per_ip, limits.max_bodies),
            imports: Arc::new(tokio::sync::Semaphore::new(
                limits.import_concurrency as usize,
            )),
            background: tokio::runtime::Handle::current(),
            streams,
            auth_servers,
            dpop,
            client_metadata,
            records,
            enrollments,
            enrollment_store: storage.enrollments,
            repos: storage.repos,
            blobs,
            service_key,
            identity,
            config,
        })
    }
}
