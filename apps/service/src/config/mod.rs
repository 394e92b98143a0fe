//! The service configuration, read strictly from environment variables (and from `./.env` when
//! there is one).
//!
//! One table of settings (`table.rs`, `table_runtime.rs`) gives every variable's name, parser,
//! default, secrecy and documentation. It drives parsing (`setting.rs`, then the rules between
//! variables in `build.rs`), the redacted start-up summary (`summary.rs`), the hints for unknown
//! variables, and the variable tables of `docs/configuration.md` (`doc.rs`; a test fails when the
//! committed document differs from the table).
//!
//! Parsing never stops at the first mistake: every problem is collected and reported together in
//! one [`ConfigError`], so a broken deployment is fixed in one round trip. Booleans accept only
//! `true`, `false`, `1` and `0`, because the TypeScript service read `STRATOS_DEV_MODE=false` as
//! *true* (defect D10) and so switched authentication off in the very setups that tried to keep it
//! on.
//!
//! Secrets are held in [`Secret`] and [`ConnectionUrl`], whose `Debug` never shows them. The
//! derived `Debug` of [`Config`] and its [`Display`](std::fmt::Display) rendering are therefore safe to
//! log.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use stratos_domain::boundary::Boundary;
use stratos_domain::enrollment::{EnrollmentMode as PolicyMode, EnrollmentPolicy};
use stratos_domain::rate_limit::RateLimit;
use stratos_domain::syntax::Did;

mod build;
mod doc;
mod dotenv;
mod parsed;
mod setting;
mod summary;
mod table;
mod table_runtime;
#[cfg(test)]
mod tests;
mod values;

pub use doc::{reference_markdown, update_reference};
pub use dotenv::DOTENV_FILE;
pub use table::VARIABLES;
pub use values::{ConfigError, ConnectionUrl, HttpUrl, Problem, Secret};

// ---- the configuration ---------------------------------------------------------------------------

/// How the service admits new accounts (`STRATOS_ENROLLMENT_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrollmentMode {
    /// Anyone may enroll.
    Open,
    /// Only listed DIDs, accounts on listed PDSes, or accounts on the external allow-list.
    Allowlist,
    /// No new enrollments; existing ones keep working.
    Closed,
}

impl EnrollmentMode {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Allowlist => "allowlist",
            Self::Closed => "closed",
        }
    }
}

impl From<EnrollmentMode> for PolicyMode {
    fn from(mode: EnrollmentMode) -> Self {
        match mode {
            EnrollmentMode::Open => Self::Open,
            EnrollmentMode::Allowlist => Self::Allowlist,
            EnrollmentMode::Closed => Self::Closed,
        }
    }
}

/// What a power loss may cost the SQLite backend (`STRATOS_SQLITE_DURABILITY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqliteDurability {
    /// Nothing acknowledged is lost (`synchronous=FULL`).
    Durable,
    /// The last acknowledged commits may be lost; the database stays consistent
    /// (`synchronous=NORMAL`).
    Relaxed,
}

impl SqliteDurability {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Durable => "durable",
            Self::Relaxed => "relaxed",
        }
    }
}

/// Where repositories, enrollments and OAuth state live (`STORAGE_BACKEND`).
#[derive(Debug, Clone)]
pub enum StorageBackend {
    /// One SQLite file for the service and one per actor, under `data_dir`.
    Sqlite {
        /// `STRATOS_DATA_DIR`.
        data_dir: PathBuf,
        /// `STRATOS_SQLITE_DURABILITY`.
        durability: SqliteDurability,
    },
    /// PostgreSQL, one schema per actor.
    Postgres {
        /// `STRATOS_POSTGRES_URL`, or the URL built from `STRATOS_PG_*`.
        url: ConnectionUrl,
        /// `STRATOS_PG_ACTOR_POOL_SIZE`.
        actor_pool: u32,
        /// `STRATOS_PG_ADMIN_POOL_SIZE`.
        admin_pool: u32,
    },
}

impl StorageBackend {
    /// The configuration spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Sqlite { .. } => "sqlite",
            Self::Postgres { .. } => "postgres",
        }
    }
}

/// Explicit S3 credentials.
#[derive(Debug, Clone)]
pub struct S3Credentials {
    /// `STRATOS_S3_ACCESS_KEY`.
    pub access_key: Secret,
    /// `STRATOS_S3_SECRET_KEY`.
    pub secret_key: Secret,
}

/// Where blobs live (`STRATOS_BLOB_STORAGE`).
#[derive(Debug, Clone)]
pub enum BlobStorage {
    /// Files under `{STRATOS_DATA_DIR}/blobs`.
    Local {
        /// The blob root.
        dir: PathBuf,
    },
    /// An S3 bucket.
    S3 {
        /// `STRATOS_S3_BUCKET`.
        bucket: String,
        /// `STRATOS_S3_REGION`; `None` leaves it to the S3 client's defaults.
        region: Option<String>,
        /// `STRATOS_S3_ENDPOINT`, for self-hosted S3; `None` for AWS.
        endpoint: Option<HttpUrl>,
        /// `None` uses the AWS environment and profile chain.
        credentials: Option<S3Credentials>,
    },
}

impl BlobStorage {
    /// The configuration spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Local { .. } => "local",
            Self::S3 { .. } => "s3",
        }
    }
}

/// Who may enroll.
#[derive(Debug, Clone)]
pub struct EnrollmentConfig {
    /// `STRATOS_ENROLLMENT_MODE`.
    pub mode: EnrollmentMode,
    /// `STRATOS_ALLOWED_DIDS`.
    pub allowed_dids: Vec<Did>,
    /// `STRATOS_ALLOWED_PDS_ENDPOINTS`, without trailing `/`.
    pub allowed_pds_endpoints: Vec<HttpUrl>,
    /// `STRATOS_ALLOW_LIST_URI`: a newline-separated list of DIDs, fetched periodically.
    pub allow_list_uri: Option<HttpUrl>,
    /// `STRATOS_ALLOW_LIST_BOOTSTRAP_NAME`: the Valkey set the external list is copied into.
    pub allow_list_bootstrap_name: Option<String>,
}

/// Size limits, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `STRATOS_MAX_BODY_BYTES`: JSON request bodies.
    pub max_body_bytes: usize,
    /// `STRATOS_BLOB_MAX_BYTES`: one uploaded blob.
    pub blob_max_bytes: usize,
    /// `STRATOS_IMPORT_MAX_BYTES`: one imported repository CAR.
    pub import_max_bytes: usize,
    /// `STRATOS_BODY_TIMEOUT_SECS`: a request body must arrive whole within this time.
    pub body_timeout_secs: u32,
    /// `STRATOS_MAX_BODIES_PER_IP`: request bodies arriving at once from one client address
    /// (0: no per-address cap, e.g. behind a proxy that enforces its own).
    pub max_bodies_per_ip: u32,
    /// `STRATOS_MAX_BODIES`: request bodies arriving at once in the whole process.
    pub max_bodies: u32,
    /// `STRATOS_IMPORT_CONCURRENCY`: repository imports running at once.
    pub import_concurrency: u32,
}

/// The per-account write rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteRateLimit {
    /// `STRATOS_WRITE_RATE_MAX_WRITES` per window.
    pub max_writes: u32,
    /// `STRATOS_WRITE_RATE_WINDOW_MS`.
    pub window_ms: u32,
    /// `STRATOS_WRITE_RATE_COOLDOWN_MS`: how long an account that exceeded the limit waits.
    pub cooldown_ms: u32,
    /// `STRATOS_WRITE_RATE_COOLDOWN_JITTER_MS`: random extra cooldown, so throttled clients do not
    /// retry in lockstep.
    pub cooldown_jitter_ms: u32,
}

impl WriteRateLimit {
    /// The limit in the domain's terms.
    pub fn rate_limit(&self) -> RateLimit {
        RateLimit {
            max: self.max_writes,
            window_ms: i64::from(self.window_ms),
        }
    }
}

/// Authentication switches and shared secrets.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// `STRATOS_DEV_MODE`: accept `Authorization: Bearer <did>` without any cryptography. Only
    /// ever true on a loopback bind address.
    pub dev_mode: bool,
    /// `STRATOS_DPOP_REQUIRE_NONCE`.
    pub dpop_require_nonce: bool,
    /// `STRATOS_ADMIN_PASSWORD`; `None` disables the admin endpoints.
    pub admin_password: Option<Secret>,
    /// `STRATOS_SYNC_TOKEN`: static token for service-level subscriptions.
    pub sync_token: Option<Secret>,
    /// `STRATOS_SERVICE_AUTH_MAX_LIFETIME_SECS`: the longest a service-auth JWT may live
    /// (`exp` past `iat`, or past now when it has no `iat`).
    pub service_auth_max_lifetime_secs: u32,
}

/// The sync stream (`zone.stratos.sync.subscribeRecords`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamConfig {
    /// `STRATOS_ALLOWED_APPVIEWS`: issuers whose service-auth JWTs may read every stream (the
    /// service-level one and every account's). Any other verified issuer reads only its own.
    pub allowed_appviews: Vec<Did>,
    /// `STRATOS_SYNC_HEARTBEAT_SECS`: ping interval; a connection that did not answer the
    /// previous ping is closed.
    pub heartbeat_secs: u64,
    /// `STRATOS_SYNC_SEND_TIMEOUT_SECS`: a subscriber whose outgoing buffer stays full for this
    /// long is cut off (`ConsumerTooSlow`).
    pub send_timeout_secs: u64,
    /// `STRATOS_SYNC_LIVE_WINDOW`: events per account kept in memory for live subscribers; one
    /// that falls further behind catches up from the sequence log.
    pub live_window: usize,
}

/// The OAuth client the service uses for enrollment.
#[derive(Debug, Clone)]
pub struct OAuthClientConfig {
    /// `STRATOS_OAUTH_CLIENT_ID`; `None` serves the client metadata from the public URL.
    pub client_id: Option<HttpUrl>,
    /// `STRATOS_OAUTH_CLIENT_SECRET`: a private key (PEM or JWK) for `private_key_jwt`.
    pub client_secret: Option<Secret>,
    /// `STRATOS_OAUTH_CLIENT_NAME`.
    pub client_name: String,
    /// `STRATOS_OAUTH_LOGO_URI`.
    pub logo_uri: Option<HttpUrl>,
    /// `STRATOS_OAUTH_TOS_URI`.
    pub tos_uri: Option<HttpUrl>,
    /// `STRATOS_OAUTH_POLICY_URI`.
    pub policy_uri: Option<HttpUrl>,
    /// `STRATOS_OAUTH_REDIRECT_ORIGINS`: where `/oauth/authorize?redirect_uri=` may lead.
    pub redirect_origins: Vec<HttpUrl>,
}

/// `LOG_LEVEL`, in the reference service's (pino) vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Only unrecoverable errors.
    Fatal,
    /// Errors.
    Error,
    /// Warnings and errors.
    Warn,
    /// The default.
    Info,
    /// Debugging detail.
    Debug,
    /// Everything.
    Trace,
    /// Nothing.
    Silent,
}

/// `STRATOS_LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Json => "json",
        }
    }
}

impl LogLevel {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fatal => "fatal",
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
            Self::Trace => "trace",
            Self::Silent => "silent",
        }
    }

    /// The equivalent `tracing` filter directive (`fatal` has no own level in `tracing`).
    pub fn filter_directive(self) -> &'static str {
        match self {
            Self::Fatal | Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
            Self::Trace => "trace",
            Self::Silent => "off",
        }
    }
}

/// The effective configuration of the service.
#[derive(Debug, Clone)]
pub struct Config {
    /// `STRATOS_SERVICE_DID`, or the `did:web` of the public URL.
    pub service_did: Did,
    /// `STRATOS_SERVICE_FRAGMENT`: the service id in the DID document and in stub records.
    pub service_fragment: String,
    /// `STRATOS_BIND`.
    pub bind: IpAddr,
    /// `STRATOS_PORT`.
    pub port: u16,
    /// `STRATOS_PUBLIC_URL`, without trailing `/`.
    pub public_url: HttpUrl,
    /// `STRATOS_ALLOWED_DOMAINS`, qualified with the service DID.
    pub allowed_boundaries: Vec<Boundary>,
    /// `STRATOS_AUTO_ENROLL_DOMAINS`, qualified; empty means "all allowed boundaries".
    pub auto_enroll_boundaries: Vec<Boundary>,
    /// Who may enroll.
    pub enrollment: EnrollmentConfig,
    /// `STRATOS_VALKEY_URL`.
    pub valkey_url: Option<ConnectionUrl>,
    /// `STRATOS_VALKEY_CA_FILE`: the CA of a `rediss://` server.
    pub valkey_ca_file: Option<PathBuf>,
    /// `STRATOS_DATA_DIR`: the service signing key and assets; the SQLite files and local blobs by
    /// default.
    pub data_dir: PathBuf,
    /// `STRATOS_SERVICE_KEY_FILE`: the service key, when not `{data_dir}/service_key`.
    pub service_key_file: Option<PathBuf>,
    /// `STORAGE_BACKEND` and its settings.
    pub storage: StorageBackend,
    /// `STRATOS_BLOCK_CACHE_SIZE`: entries of the shared repository node cache.
    pub block_cache_size: usize,
    /// `STRATOS_BLOB_STORAGE` and its settings.
    pub blobs: BlobStorage,
    /// Request size limits.
    pub limits: Limits,
    /// The per-account write rate limit.
    pub write_rate: WriteRateLimit,
    /// Authentication.
    pub auth: AuthConfig,
    /// The enrollment OAuth client.
    pub oauth: OAuthClientConfig,
    /// The sync stream.
    pub stream: StreamConfig,
    /// `STRATOS_PLC_URL`.
    pub plc_url: HttpUrl,
    /// `STRATOS_OUTBOUND_ALLOW_PRIVATE` (default: `STRATOS_DEV_MODE`): let fetches of URLs that
    /// callers choose (`did:web` hosts, handles, a token's PDS, authorization server and key
    /// set) reach private, loopback, link-local and other non-public addresses.
    pub outbound_allow_private: bool,
    /// `STRATOS_REPO_URL`: the code repository named in the User-Agent.
    pub repo_url: HttpUrl,
    /// `STRATOS_OPERATOR_CONTACT`: named in the User-Agent.
    pub operator_contact: Option<String>,
    /// `LOG_LEVEL`.
    pub log_level: LogLevel,
    /// `RUST_LOG`: a `tracing` filter that replaces `LOG_LEVEL`.
    pub log_filter: Option<String>,
    /// `STRATOS_LOG_FORMAT`.
    pub log_format: LogFormat,
    /// `STRATOS_METRICS_BIND` and `STRATOS_METRICS_PORT`: where `/metrics` is served instead of
    /// the service's port, when set.
    pub metrics_addr: Option<SocketAddr>,
    /// Likely mistakes that do not stop the service (unknown `STRATOS_*` variables, settings
    /// ignored by the chosen backend, …), for the startup log.
    pub warnings: Vec<String>,
}

impl Config {
    /// Reads the process environment, after `./.env` when the working directory has one: the
    /// README's `cp .env.example .env` configures a start without exporting anything. A variable
    /// set in the environment wins over the file.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_env_and_file(std::env::vars_os(), Path::new(DOTENV_FILE))
    }

    /// [`Config::from_env`] over the given environment and `.env` path (tests).
    pub(crate) fn from_env_and_file(
        env: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
        dotenv_path: &Path,
    ) -> Result<Self, ConfigError> {
        let mut vars = HashMap::new();
        let mut problems = Vec::new();
        for (name, value) in env {
            // Every name the service reads is ASCII, so a non-Unicode name is not ours.
            let Some(name) = name.to_str() else { continue };
            if !is_relevant(name) {
                continue;
            }
            match value.into_string() {
                Ok(value) => {
                    vars.insert(name.to_owned(), value);
                }
                Err(_) => problems.push(Problem {
                    variable: name.to_owned(),
                    message: "is not valid UTF-8".to_owned(),
                }),
            }
        }
        let file = dotenv::read(dotenv_path, &mut problems);
        for (name, value) in file.vars {
            if is_relevant(&name) && !vars.contains_key(&name) {
                vars.insert(name, value);
            }
        }
        let mut config = build::parse(&vars, problems)?;
        config.warnings.extend(file.warnings);
        Ok(config)
    }

    /// Reads a map of variables (tests, embedding).
    pub fn from_map(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        Self::from_pairs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// Reads `(name, value)` pairs; a later pair overrides an earlier one.
    pub fn from_pairs<I, K, V>(pairs: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let vars = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .filter(|(k, _)| is_relevant(k))
            .collect();
        build::parse(&vars, Vec::new())
    }

    /// The `User-Agent` of every outbound request:
    /// `Stratos/<version> (+<STRATOS_REPO_URL>; <STRATOS_OPERATOR_CONTACT or unknown>)`, so the
    /// operators of PDSes, PLC directories and allow-list hosts can tell who is calling.
    pub fn user_agent(&self) -> String {
        format!(
            "Stratos/{} (+{}; {})",
            env!("CARGO_PKG_VERSION"),
            self.repo_url.as_str(),
            self.operator_contact.as_deref().unwrap_or("unknown")
        )
    }

    /// The address to listen on.
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.port)
    }

    /// The domain's enrollment rules for this configuration.
    pub fn enrollment_policy(&self) -> stratos_domain::Result<EnrollmentPolicy> {
        EnrollmentPolicy::new(self.enrollment.mode.into(), self.allowed_boundaries.clone())
            .with_allowed_dids(self.enrollment.allowed_dids.iter().map(|d| d.as_str()))
            .with_allowed_pds(
                self.enrollment
                    .allowed_pds_endpoints
                    .iter()
                    .map(HttpUrl::as_str),
            )
            .with_auto_enroll(self.auto_enroll_boundaries.clone())
    }

    /// The effective configuration as `NAME=value` lines for the startup log, secrets shown as
    /// `<redacted>`. Same as the `Display` rendering.
    pub fn redacted(&self) -> String {
        self.to_string()
    }
}

/// True for the names the configuration looks at: its own, and any `STRATOS_*` (so a misspelt
/// one gets a hint).
fn is_relevant(name: &str) -> bool {
    name.starts_with("STRATOS_") || VARIABLES.contains(&name)
}
