//! The service configuration, read strictly from environment variables.
//!
//! Parsing never stops at the first mistake: every problem is collected and reported together in
//! one [`ConfigError`], so a broken deployment is fixed in one round trip. Booleans accept only
//! `true`, `false`, `1` and `0`, because the TypeScript service read `STRATOS_DEV_MODE=false` as
//! *true* (defect D10) and so switched authentication off in the very setups that tried to keep it
//! on.
//!
//! Secrets are held in [`Secret`] and [`ConnectionUrl`], whose `Debug` never shows them. The
//! derived `Debug` of [`Config`] and its [`Display`](fmt::Display) rendering are therefore safe to
//! log. `docs/configuration.md` lists every variable.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;

use stratos_domain::boundary::{Boundary, qualify_configured};
use stratos_domain::enrollment::{EnrollmentMode as PolicyMode, EnrollmentPolicy};
use stratos_domain::rate_limit::RateLimit;
use stratos_domain::syntax::Did;

/// What redacted values render as.
const REDACTED: &str = "<redacted>";

/// Every variable the service reads, in the order of `docs/configuration.md`.
pub const VARIABLES: &[&str] = &[
    "STRATOS_SERVICE_DID",
    "STRATOS_SERVICE_FRAGMENT",
    "STRATOS_BIND",
    "STRATOS_PORT",
    "STRATOS_PUBLIC_URL",
    "STRATOS_ALLOWED_DOMAINS",
    "STRATOS_AUTO_ENROLL_DOMAINS",
    "STRATOS_ENROLLMENT_MODE",
    "STRATOS_ALLOWED_DIDS",
    "STRATOS_ALLOWED_PDS_ENDPOINTS",
    "STRATOS_ALLOW_LIST_URI",
    "STRATOS_ALLOW_LIST_BOOTSTRAP_NAME",
    "STRATOS_VALKEY_URL",
    "STORAGE_BACKEND",
    "STRATOS_DATA_DIR",
    "STRATOS_SQLITE_DURABILITY",
    "STRATOS_POSTGRES_URL",
    "STRATOS_PG_HOST",
    "STRATOS_PG_PORT",
    "STRATOS_PG_USERNAME",
    "STRATOS_PG_PASSWORD",
    "STRATOS_PG_DBNAME",
    "STRATOS_PG_SSLMODE",
    "STRATOS_PG_ACTOR_POOL_SIZE",
    "STRATOS_PG_ADMIN_POOL_SIZE",
    "STRATOS_BLOCK_CACHE_SIZE",
    "STRATOS_BLOB_STORAGE",
    "STRATOS_S3_BUCKET",
    "STRATOS_S3_REGION",
    "STRATOS_S3_ENDPOINT",
    "STRATOS_S3_ACCESS_KEY",
    "STRATOS_S3_SECRET_KEY",
    "STRATOS_IMPORT_MAX_BYTES",
    "STRATOS_MAX_BODY_BYTES",
    "STRATOS_BLOB_MAX_BYTES",
    "STRATOS_BODY_TIMEOUT_SECS",
    "STRATOS_MAX_BODIES_PER_IP",
    "STRATOS_MAX_BODIES",
    "STRATOS_IMPORT_CONCURRENCY",
    "STRATOS_WRITE_RATE_MAX_WRITES",
    "STRATOS_WRITE_RATE_WINDOW_MS",
    "STRATOS_WRITE_RATE_COOLDOWN_MS",
    "STRATOS_WRITE_RATE_COOLDOWN_JITTER_MS",
    "STRATOS_DPOP_REQUIRE_NONCE",
    "STRATOS_DEV_MODE",
    "STRATOS_ADMIN_PASSWORD",
    "STRATOS_SYNC_TOKEN",
    "STRATOS_SERVICE_AUTH_MAX_LIFETIME_SECS",
    "STRATOS_ALLOWED_APPVIEWS",
    "STRATOS_SYNC_HEARTBEAT_SECS",
    "STRATOS_SYNC_SEND_TIMEOUT_SECS",
    "STRATOS_SYNC_LIVE_WINDOW",
    "STRATOS_OAUTH_CLIENT_ID",
    "STRATOS_OAUTH_CLIENT_SECRET",
    "STRATOS_OAUTH_CLIENT_NAME",
    "STRATOS_OAUTH_LOGO_URI",
    "STRATOS_OAUTH_TOS_URI",
    "STRATOS_OAUTH_POLICY_URI",
    "STRATOS_PLC_URL",
    "STRATOS_OUTBOUND_ALLOW_PRIVATE",
    "STRATOS_REPO_URL",
    "STRATOS_OPERATOR_CONTACT",
    "LOG_LEVEL",
];

/// Names the TypeScript service or its documentation used that this service does not read, with
/// what to do instead. Reported as warnings so an old `.env` still starts.
const RETIRED: &[(&str, &str)] = &[
    (
        "STRATOS_RETENTION_DAYS",
        "was never used by the reference service and is not read",
    ),
    (
        "STRATOS_SIGNING_KEY_HEX",
        "is not read: the service key lives in {STRATOS_DATA_DIR}/signing_key",
    ),
    ("STRATOS_LOG_LEVEL", "is not read; use LOG_LEVEL"),
    ("STRATOS_DB_URL", "is not read; use STRATOS_POSTGRES_URL"),
    ("STRATOS_DB_DIALECT", "is not read; use STORAGE_BACKEND"),
    (
        "STRATOS_STORAGE_BACKEND",
        "is not read; use STORAGE_BACKEND",
    ),
    (
        "STRATOS_OAUTH_REDIRECT_URI",
        "is not read: the redirect URI is {STRATOS_PUBLIC_URL}/oauth/callback",
    ),
];

// ---- errors --------------------------------------------------------------------------------------

/// One invalid variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The variable at fault.
    pub variable: String,
    /// What is wrong with it. Never contains a secret value.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.variable, self.message)
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// One or more variables are invalid; all of them are listed.
    #[error("invalid configuration:{}", render_problems(.0))]
    Invalid(Vec<Problem>),
}

impl ConfigError {
    /// Every problem found.
    pub fn problems(&self) -> &[Problem] {
        match self {
            Self::Invalid(problems) => problems,
        }
    }
}

fn render_problems(problems: &[Problem]) -> String {
    problems.iter().map(|p| format!("\n  {p}")).collect()
}

// ---- value types ---------------------------------------------------------------------------------

/// A secret value. `Debug` prints `<redacted>` and there is no `Display`, so the value reaches a
/// log only through an explicit [`Secret::expose`].
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that needs it (comparison, connection set-up).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// A connection URL (Postgres, Valkey) that may carry a password. `Debug` and
/// [`ConnectionUrl::redacted`] mask the password of the user part and any `…password=` query
/// parameter.
#[derive(Clone)]
pub struct ConnectionUrl(String);

impl ConnectionUrl {
    /// The full URL, password included, for the connection set-up.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with every password replaced by `<redacted>`.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

impl fmt::Debug for ConnectionUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ConnectionUrl")
            .field(&self.redacted())
            .finish()
    }
}

/// Masks passwords in a URL. Errs on the side of hiding too much: everything before the *last*
/// `@` counts as user information, because passwords are often pasted without percent-encoding
/// and may themselves contain `/`, `?`, `#` or `@`.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return REDACTED.to_owned();
    };
    let mut out = format!("{scheme}://");
    let rest = match rest.rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            match userinfo.split_once(':') {
                Some((user, _)) => {
                    out.push_str(user);
                    out.push(':');
                    out.push_str(REDACTED);
                }
                None => out.push_str(userinfo),
            }
            out.push('@');
            &rest[at + 1..]
        }
        None => rest,
    };
    match rest.split_once('?') {
        Some((before, query)) => {
            out.push_str(before);
            out.push('?');
            let params: Vec<String> = query
                .split('&')
                .map(|param| match param.split_once('=') {
                    // Covers libpq's `password` and `sslpassword`.
                    Some((key, _)) if key.to_ascii_lowercase().ends_with("password") => {
                        format!("{key}={REDACTED}")
                    }
                    _ => param.to_owned(),
                })
                .collect();
            out.push_str(&params.join("&"));
        }
        None => out.push_str(rest),
    }
    out
}

/// An absolute `http` or `https` URL: ASCII, no credentials, lower-case scheme and host, and no
/// explicit default port (`https://x:443` is stored as `https://x`, so derived `did:web`s match).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpUrl {
    value: String,
    https: bool,
    host: String,
    port: Option<u16>,
    /// Byte index in `value` where the path (or query) starts.
    tail: usize,
}

impl HttpUrl {
    /// The URL.
    pub fn as_str(&self) -> &str {
        &self.value
    }

    /// True for `https`.
    pub fn is_https(&self) -> bool {
        self.https
    }

    /// The host, lower-case; IPv6 literals keep their brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, when it is not the scheme's default.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// Path, query and fragment (empty for a bare origin).
    fn tail(&self) -> &str {
        &self.value[self.tail..]
    }

    /// Parses any http(s) URL.
    fn parse(input: &str) -> Result<Self, String> {
        if !input.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(
                "must be ASCII without spaces (write international domain names in \
                        punycode)"
                    .to_owned(),
            );
        }
        let (scheme, rest) = input
            .split_once("://")
            .ok_or("must start with http:// or https://")?;
        let https = match scheme.to_ascii_lowercase().as_str() {
            "http" => false,
            "https" => true,
            _ => return Err("must start with http:// or https://".to_owned()),
        };
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        if authority.contains('@') {
            return Err("must not contain credentials".to_owned());
        }
        let (host, port) = split_host_port(authority)?;
        let default_port = if https { 443 } else { 80 };
        let port = port.filter(|p| *p != default_port);
        let mut value = format!("{}://{host}", if https { "https" } else { "http" });
        if let Some(port) = port {
            value.push_str(&format!(":{port}"));
        }
        let tail_start = value.len();
        value.push_str(tail);
        Ok(Self {
            value,
            https,
            host,
            port,
            tail: tail_start,
        })
    }

    /// Parses a base URL that paths are appended to: no query or fragment, trailing `/` removed.
    fn parse_base(input: &str) -> Result<Self, String> {
        let mut url = Self::parse(input)?;
        if url.tail().contains(['?', '#']) {
            return Err("must not have a query or fragment".to_owned());
        }
        let trimmed = url.value.trim_end_matches('/').len().max(url.tail);
        url.value.truncate(trimmed);
        Ok(url)
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}

fn split_host_port(authority: &str) -> Result<(String, Option<u16>), String> {
    if let Some(bracketed) = authority.strip_prefix('[') {
        let (addr, after) = bracketed
            .split_once(']')
            .ok_or("has an unclosed `[` in the host")?;
        addr.parse::<Ipv6Addr>()
            .map_err(|_| "has an invalid IPv6 address".to_owned())?;
        let port = match after {
            "" => None,
            _ => Some(parse_port(
                after.strip_prefix(':').ok_or("has junk after the host")?,
            )?),
        };
        return Ok((format!("[{}]", addr.to_ascii_lowercase()), port));
    }
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, Some(parse_port(port)?)),
        None => (authority, None),
    };
    check_hostname(host)?;
    Ok((host.to_ascii_lowercase(), port))
}

fn parse_port(port: &str) -> Result<u16, String> {
    port.parse::<u16>()
        .ok()
        .filter(|p| *p > 0 && port.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| "has an invalid port (expected 1 to 65535)".to_owned())
}

/// DNS names and IPv4 literals. `_` is tolerated because container networks hand out such names.
fn check_hostname(host: &str) -> Result<(), String> {
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if host.is_empty() || host.len() > 253 || !host.split('.').all(label_ok) {
        return Err("has an invalid host name".to_owned());
    }
    Ok(())
}

/// The `did:web` a service at `url` has: the host, with `:port` percent-encoded when present.
fn did_web_for(url: &HttpUrl) -> Result<Did, String> {
    if !url.tail().is_empty() {
        return Err(
            "cannot be derived from STRATOS_PUBLIC_URL because it has a path (a did:web \
                    document lives at the origin); set STRATOS_SERVICE_DID"
                .to_owned(),
        );
    }
    if url.host().starts_with('[') {
        return Err(
            "cannot be derived from an IPv6 STRATOS_PUBLIC_URL; set STRATOS_SERVICE_DID".to_owned(),
        );
    }
    let id = match url.port() {
        Some(port) => format!("{}%3A{port}", url.host()),
        None => url.host().to_owned(),
    };
    Did::parse(&format!("did:web:{id}")).map_err(|e| e.to_string())
}

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
    /// `STRATOS_DATA_DIR`: the service signing key and assets; the SQLite files and local blobs by
    /// default.
    pub data_dir: PathBuf,
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
    /// Likely mistakes that do not stop the service (unknown `STRATOS_*` variables, settings
    /// ignored by the chosen backend, …), for the startup log.
    pub warnings: Vec<String>,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut vars = HashMap::new();
        let mut problems = Vec::new();
        for (name, value) in std::env::vars_os() {
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
        parse(&vars, problems)
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
        parse(&vars, Vec::new())
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

fn is_relevant(name: &str) -> bool {
    name.starts_with("STRATOS_") || VARIABLES.contains(&name)
}

/// Renders the effective configuration with the variable names an operator would change.
impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn list<T: fmt::Display>(items: &[T]) -> String {
            items
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        }
        fn opt<T: fmt::Display>(value: Option<&T>) -> String {
            value.map_or_else(|| "(unset)".to_owned(), ToString::to_string)
        }
        fn secret(value: Option<&Secret>) -> &'static str {
            if value.is_some() { REDACTED } else { "(unset)" }
        }

        writeln!(f, "STRATOS_SERVICE_DID={}", self.service_did)?;
        writeln!(f, "STRATOS_SERVICE_FRAGMENT={}", self.service_fragment)?;
        writeln!(f, "STRATOS_BIND={}", self.bind)?;
        writeln!(f, "STRATOS_PORT={}", self.port)?;
        writeln!(f, "STRATOS_PUBLIC_URL={}", self.public_url)?;
        writeln!(
            f,
            "STRATOS_ALLOWED_DOMAINS={}",
            list(&self.allowed_boundaries)
        )?;
        writeln!(
            f,
            "STRATOS_AUTO_ENROLL_DOMAINS={}",
            list(&self.auto_enroll_boundaries)
        )?;
        let e = &self.enrollment;
        writeln!(f, "STRATOS_ENROLLMENT_MODE={}", e.mode.as_str())?;
        writeln!(f, "STRATOS_ALLOWED_DIDS={}", list(&e.allowed_dids))?;
        writeln!(
            f,
            "STRATOS_ALLOWED_PDS_ENDPOINTS={}",
            list(&e.allowed_pds_endpoints)
        )?;
        writeln!(
            f,
            "STRATOS_ALLOW_LIST_URI={}",
            opt(e.allow_list_uri.as_ref())
        )?;
        writeln!(
            f,
            "STRATOS_ALLOW_LIST_BOOTSTRAP_NAME={}",
            opt(e.allow_list_bootstrap_name.as_ref())
        )?;
        writeln!(
            f,
            "STRATOS_VALKEY_URL={}",
            opt(self
                .valkey_url
                .as_ref()
                .map(ConnectionUrl::redacted)
                .as_ref())
        )?;
        writeln!(f, "STORAGE_BACKEND={}", self.storage.as_str())?;
        writeln!(f, "STRATOS_DATA_DIR={}", self.data_dir.display())?;
        match &self.storage {
            StorageBackend::Sqlite { durability, .. } => {
                writeln!(f, "STRATOS_SQLITE_DURABILITY={}", durability.as_str())?;
            }
            StorageBackend::Postgres {
                url,
                actor_pool,
                admin_pool,
            } => {
                writeln!(f, "STRATOS_POSTGRES_URL={}", url.redacted())?;
                writeln!(f, "STRATOS_PG_ACTOR_POOL_SIZE={actor_pool}")?;
                writeln!(f, "STRATOS_PG_ADMIN_POOL_SIZE={admin_pool}")?;
            }
        }
        writeln!(f, "STRATOS_BLOCK_CACHE_SIZE={}", self.block_cache_size)?;
        writeln!(f, "STRATOS_BLOB_STORAGE={}", self.blobs.as_str())?;
        if let BlobStorage::S3 {
            bucket,
            region,
            endpoint,
            credentials,
        } = &self.blobs
        {
            writeln!(f, "STRATOS_S3_BUCKET={bucket}")?;
            writeln!(f, "STRATOS_S3_REGION={}", opt(region.as_ref()))?;
            writeln!(f, "STRATOS_S3_ENDPOINT={}", opt(endpoint.as_ref()))?;
            let keys = secret(credentials.as_ref().map(|c| &c.secret_key));
            writeln!(f, "STRATOS_S3_ACCESS_KEY={keys}")?;
            writeln!(f, "STRATOS_S3_SECRET_KEY={keys}")?;
        }
        let l = &self.limits;
        writeln!(f, "STRATOS_IMPORT_MAX_BYTES={}", l.import_max_bytes)?;
        writeln!(f, "STRATOS_MAX_BODY_BYTES={}", l.max_body_bytes)?;
        writeln!(f, "STRATOS_BLOB_MAX_BYTES={}", l.blob_max_bytes)?;
        writeln!(f, "STRATOS_BODY_TIMEOUT_SECS={}", l.body_timeout_secs)?;
        writeln!(f, "STRATOS_MAX_BODIES_PER_IP={}", l.max_bodies_per_ip)?;
        writeln!(f, "STRATOS_MAX_BODIES={}", l.max_bodies)?;
        writeln!(f, "STRATOS_IMPORT_CONCURRENCY={}", l.import_concurrency)?;
        let w = &self.write_rate;
        writeln!(f, "STRATOS_WRITE_RATE_MAX_WRITES={}", w.max_writes)?;
        writeln!(f, "STRATOS_WRITE_RATE_WINDOW_MS={}", w.window_ms)?;
        writeln!(f, "STRATOS_WRITE_RATE_COOLDOWN_MS={}", w.cooldown_ms)?;
        writeln!(
            f,
            "STRATOS_WRITE_RATE_COOLDOWN_JITTER_MS={}",
            w.cooldown_jitter_ms
        )?;
        let a = &self.auth;
        writeln!(f, "STRATOS_DPOP_REQUIRE_NONCE={}", a.dpop_require_nonce)?;
        writeln!(f, "STRATOS_DEV_MODE={}", a.dev_mode)?;
        writeln!(
            f,
            "STRATOS_ADMIN_PASSWORD={}",
            if a.admin_password.is_some() {
                REDACTED
            } else {
                "(unset: admin endpoints disabled)"
            }
        )?;
        writeln!(f, "STRATOS_SYNC_TOKEN={}", secret(a.sync_token.as_ref()))?;
        writeln!(
            f,
            "STRATOS_SERVICE_AUTH_MAX_LIFETIME_SECS={}",
            a.service_auth_max_lifetime_secs
        )?;
        let st = &self.stream;
        writeln!(f, "STRATOS_ALLOWED_APPVIEWS={}", list(&st.allowed_appviews))?;
        writeln!(f, "STRATOS_SYNC_HEARTBEAT_SECS={}", st.heartbeat_secs)?;
        writeln!(f, "STRATOS_SYNC_SEND_TIMEOUT_SECS={}", st.send_timeout_secs)?;
        writeln!(f, "STRATOS_SYNC_LIVE_WINDOW={}", st.live_window)?;
        let o = &self.oauth;
        writeln!(f, "STRATOS_OAUTH_CLIENT_ID={}", opt(o.client_id.as_ref()))?;
        writeln!(
            f,
            "STRATOS_OAUTH_CLIENT_SECRET={}",
            secret(o.client_secret.as_ref())
        )?;
        writeln!(f, "STRATOS_OAUTH_CLIENT_NAME={}", o.client_name)?;
        writeln!(f, "STRATOS_OAUTH_LOGO_URI={}", opt(o.logo_uri.as_ref()))?;
        writeln!(f, "STRATOS_OAUTH_TOS_URI={}", opt(o.tos_uri.as_ref()))?;
        writeln!(f, "STRATOS_OAUTH_POLICY_URI={}", opt(o.policy_uri.as_ref()))?;
        writeln!(f, "STRATOS_PLC_URL={}", self.plc_url)?;
        writeln!(
            f,
            "STRATOS_OUTBOUND_ALLOW_PRIVATE={}",
            self.outbound_allow_private
        )?;
        writeln!(f, "STRATOS_REPO_URL={}", self.repo_url)?;
        writeln!(
            f,
            "STRATOS_OPERATOR_CONTACT={}",
            opt(self.operator_contact.as_ref())
        )?;
        write!(f, "LOG_LEVEL={}", self.log_level.as_str())
    }
}

// ---- parsing -------------------------------------------------------------------------------------

/// Reads variables, recording every problem instead of stopping at the first.
struct Reader<'a> {
    vars: &'a HashMap<String, String>,
    /// Names consulted, so tests can check the parser against [`VARIABLES`].
    read: BTreeSet<&'static str>,
    problems: Vec<Problem>,
    warnings: Vec<String>,
}

/// A value for an error message: quoted, and cut short so a pasted file does not flood the log.
fn shown(value: &str) -> String {
    const MAX: usize = 80;
    if value.chars().count() > MAX {
        format!("{:?}…", value.chars().take(MAX).collect::<String>())
    } else {
        format!("{value:?}")
    }
}

impl<'a> Reader<'a> {
    fn raw(&mut self, name: &'static str) -> Option<&'a str> {
        self.read.insert(name);
        let vars = self.vars;
        vars.get(name).map(String::as_str)
    }

    /// The trimmed value; an empty value counts as unset, as `NAME=` does in compose files.
    fn value(&mut self, name: &'static str) -> Option<&'a str> {
        self.raw(name).map(str::trim).filter(|v| !v.is_empty())
    }

    fn is_set(&mut self, name: &'static str) -> bool {
        self.value(name).is_some()
    }

    fn problem(&mut self, name: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            variable: name.to_owned(),
            message: message.into(),
        });
    }

    /// Warns, for each of `names` that is set, that `reason` makes it ineffective.
    fn warn_ignored(&mut self, names: &[&'static str], reason: &str) {
        for name in names {
            if self.is_set(name) {
                self.warnings
                    .push(format!("{name} is ignored because {reason}"));
            }
        }
    }

    /// Free text without control characters (it ends up in headers and metadata).
    fn text(&mut self, name: &'static str) -> Option<String> {
        let value = self.value(name)?;
        if value.chars().any(char::is_control) {
            self.problem(name, "must not contain control characters");
            return None;
        }
        Some(value.to_owned())
    }

    fn flag(&mut self, name: &'static str, default: bool) -> bool {
        let Some(value) = self.value(name) else {
            return default;
        };
        match value.to_ascii_lowercase().as_str() {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => {
                self.problem(
                    name,
                    format!("expected true, false, 1 or 0, got {}", shown(value)),
                );
                default
            }
        }
    }

    fn uint<T: TryFrom<u64>>(
        &mut self,
        name: &'static str,
        default: T,
        range: RangeInclusive<u64>,
    ) -> T {
        let Some(value) = self.value(name) else {
            return default;
        };
        let parsed = value
            .parse::<u64>()
            .ok()
            .filter(|n| range.contains(n) && value.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| T::try_from(n).ok());
        match parsed {
            Some(n) => n,
            None => {
                self.problem(
                    name,
                    format!(
                        "expected an integer from {} to {}, got {}",
                        range.start(),
                        range.end(),
                        shown(value)
                    ),
                );
                default
            }
        }
    }

    /// One of `options`, case-insensitively.
    fn choice<T: Copy>(&mut self, name: &'static str, default: T, options: &[(&str, T)]) -> T {
        let Some(value) = self.value(name) else {
            return default;
        };
        if let Some((_, chosen)) = options
            .iter()
            .find(|(spelling, _)| spelling.eq_ignore_ascii_case(value))
        {
            return *chosen;
        }
        let spellings: Vec<&str> = options.iter().map(|(s, _)| *s).collect();
        self.problem(
            name,
            format!(
                "expected one of {}, got {}",
                spellings.join(", "),
                shown(value)
            ),
        );
        default
    }

    /// A comma-separated list: entries trimmed, empty entries dropped.
    fn list(&mut self, name: &'static str) -> Vec<String> {
        self.value(name)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn url(&mut self, name: &'static str, base: bool) -> Option<HttpUrl> {
        let value = self.value(name)?;
        let parsed = if base {
            HttpUrl::parse_base(value)
        } else {
            HttpUrl::parse(value)
        };
        match parsed {
            Ok(url) => Some(url),
            Err(why) => {
                self.problem(name, format!("{why}, got {}", shown(value)));
                None
            }
        }
    }

    /// A base URL with a default.
    fn base_url_or(&mut self, name: &'static str, default: &str) -> Option<HttpUrl> {
        if self.is_set(name) {
            return self.url(name, true);
        }
        match HttpUrl::parse_base(default) {
            Ok(url) => Some(url),
            Err(why) => {
                self.problem(name, format!("default {default:?} {why}"));
                None
            }
        }
    }

    /// A secret. Passwords and tokens are taken verbatim, and surrounding whitespace is refused
    /// rather than trimmed: it is nearly always a quoting or CRLF mistake, and trimming would make
    /// the effective secret differ from the one the operator wrote down. Key material (`trim`)
    /// is trimmed, since a PEM file's trailing newline is meaningless.
    fn secret(&mut self, name: &'static str, trim: bool) -> Option<Secret> {
        let value = self.raw(name)?;
        if value.trim().is_empty() {
            return None;
        }
        if trim {
            return Some(Secret::new(value.trim()));
        }
        if value.trim() != value {
            self.problem(
                name,
                "has leading or trailing whitespace (a quoting or CRLF mistake?); remove it",
            );
            return None;
        }
        Some(Secret::new(value))
    }

    /// A connection URL with one of `schemes`. The value is never echoed: it may hold a password.
    fn connection_url(&mut self, name: &'static str, schemes: &[&str]) -> Option<ConnectionUrl> {
        let value = self.value(name)?;
        let scheme_ok = value.split_once("://").is_some_and(|(scheme, rest)| {
            !rest.is_empty() && schemes.iter().any(|s| s.eq_ignore_ascii_case(scheme))
        });
        if !scheme_ok {
            let spelled: Vec<String> = schemes.iter().map(|s| format!("{s}://")).collect();
            self.problem(
                name,
                format!("must be a URL starting with {}", spelled.join(" or ")),
            );
            return None;
        }
        if value.chars().any(char::is_whitespace) {
            self.problem(name, "must not contain whitespace");
            return None;
        }
        Some(ConnectionUrl(value.to_owned()))
    }
}

fn parse(vars: &HashMap<String, String>, problems: Vec<Problem>) -> Result<Config, ConfigError> {
    let mut r = Reader {
        vars,
        read: BTreeSet::new(),
        problems,
        warnings: Vec::new(),
    };
    let config = read_config(&mut r);
    r.warnings.extend(unknown_variable_warnings(vars, &r.read));
    match config {
        Some(mut config) if r.problems.is_empty() => {
            config.warnings = r.warnings;
            Ok(config)
        }
        // `None` without a recorded problem would be a parser bug; still never start on it.
        _ if r.problems.is_empty() => Err(ConfigError::Invalid(vec![Problem {
            variable: "(configuration)".to_owned(),
            message: "could not be determined".to_owned(),
        }])),
        _ => Err(ConfigError::Invalid(r.problems)),
    }
}

/// Reads everything; `None` when a value the configuration cannot do without is invalid (the
/// reason is in `r.problems`).
fn read_config(r: &mut Reader<'_>) -> Option<Config> {
    // ---- network and identity
    let bind = match r.value("STRATOS_BIND") {
        None => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Some(v) => v.parse::<IpAddr>().unwrap_or_else(|_| {
            r.problem(
                "STRATOS_BIND",
                format!(
                    "expected an IP address such as 127.0.0.1, 0.0.0.0 or ::, got {}",
                    shown(v)
                ),
            );
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        }),
    };
    let port: u16 = r.uint("STRATOS_PORT", 3100, 1..=65_535);
    // The reference defaulted to port 3100 here even when STRATOS_PORT moved the listener.
    let public_url = r.base_url_or("STRATOS_PUBLIC_URL", &format!("http://localhost:{port}"));
    let service_did = service_did(r, public_url.as_ref());
    let service_fragment = match r.value("STRATOS_SERVICE_FRAGMENT") {
        None => "atproto_pns".to_owned(),
        Some(v)
            if v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')) =>
        {
            v.to_owned()
        }
        Some(v) => {
            r.problem(
                "STRATOS_SERVICE_FRAGMENT",
                format!(
                    "expected letters, digits, `_`, `-` or `.` (no leading `#`), got {}",
                    shown(v)
                ),
            );
            String::new()
        }
    };

    // ---- boundaries and enrollment
    let (allowed_boundaries, auto_enroll_boundaries) = boundaries(r, service_did.as_ref());
    let enrollment = enrollment(r);
    let valkey_url = r.connection_url(
        "STRATOS_VALKEY_URL",
        &[
            "redis",
            "rediss",
            "valkey",
            "valkeys",
            "redis+unix",
            "valkey+unix",
            "unix",
        ],
    );
    if valkey_url.is_none() && !r.is_set("STRATOS_VALKEY_URL") {
        r.warn_ignored(
            &["STRATOS_ALLOW_LIST_BOOTSTRAP_NAME"],
            "STRATOS_VALKEY_URL is not set",
        );
    }

    // ---- storage
    let data_dir = r
        .value("STRATOS_DATA_DIR")
        .map_or_else(|| PathBuf::from("./data"), PathBuf::from);
    let storage = storage(r, &data_dir);
    let block_cache_size: usize = r.uint("STRATOS_BLOCK_CACHE_SIZE", 50_000, 1..=100_000_000);
    let blobs = blobs(r, &data_dir);

    // ---- limits
    const MAX_BYTES: u64 = 1 << 40;
    let limits = Limits {
        import_max_bytes: r.uint("STRATOS_IMPORT_MAX_BYTES", 256 << 20, 1..=MAX_BYTES),
        max_body_bytes: r.uint("STRATOS_MAX_BODY_BYTES", 1 << 20, 1..=MAX_BYTES),
        blob_max_bytes: r.uint("STRATOS_BLOB_MAX_BYTES", 5 << 20, 1..=MAX_BYTES),
        body_timeout_secs: r.uint("STRATOS_BODY_TIMEOUT_SECS", 30, 1..=3_600),
        max_bodies_per_ip: r.uint("STRATOS_MAX_BODIES_PER_IP", 32, 0..=1_000_000),
        max_bodies: r.uint("STRATOS_MAX_BODIES", 1_024, 1..=1_000_000),
        import_concurrency: r.uint("STRATOS_IMPORT_CONCURRENCY", 1, 1..=64),
    };
    const DAY_MS: u64 = 86_400_000;
    let write_rate = WriteRateLimit {
        max_writes: r.uint("STRATOS_WRITE_RATE_MAX_WRITES", 300, 1..=1_000_000),
        window_ms: r.uint("STRATOS_WRITE_RATE_WINDOW_MS", 60_000, 1..=DAY_MS),
        cooldown_ms: r.uint("STRATOS_WRITE_RATE_COOLDOWN_MS", 10_000, 0..=DAY_MS),
        cooldown_jitter_ms: r.uint("STRATOS_WRITE_RATE_COOLDOWN_JITTER_MS", 1_000, 0..=DAY_MS),
    };

    // ---- auth
    let auth = AuthConfig {
        dpop_require_nonce: r.flag("STRATOS_DPOP_REQUIRE_NONCE", true),
        dev_mode: r.flag("STRATOS_DEV_MODE", false),
        admin_password: r.secret("STRATOS_ADMIN_PASSWORD", false),
        sync_token: r.secret("STRATOS_SYNC_TOKEN", false),
        service_auth_max_lifetime_secs: r.uint(
            "STRATOS_SERVICE_AUTH_MAX_LIFETIME_SECS",
            3_600,
            60..=86_400,
        ),
    };
    if enrollment.mode == EnrollmentMode::Allowlist
        && enrollment.allowed_dids.is_empty()
        && enrollment.allowed_pds_endpoints.is_empty()
        && enrollment.allow_list_uri.is_none()
    {
        // The policy governs accounts enrolling themselves; the operator's enrollActor does
        // not go through it, so "nobody" is only true without an admin password.
        let what = if auth.admin_password.is_some() {
            "accounts cannot enroll themselves (the enrollment policy admits nobody); the \
             operator can still enroll them with zone.stratos.admin.enrollActor"
        } else {
            "nobody can enroll: the enrollment policy admits nobody and the admin endpoints \
             (zone.stratos.admin.enrollActor) are off without STRATOS_ADMIN_PASSWORD"
        };
        r.warnings.push(format!(
            "STRATOS_ENROLLMENT_MODE=allowlist with no STRATOS_ALLOWED_DIDS, \
             STRATOS_ALLOWED_PDS_ENDPOINTS or STRATOS_ALLOW_LIST_URI: {what}"
        ));
    }
    if auth.dev_mode {
        if bind.is_loopback() {
            r.warnings.push(
                "STRATOS_DEV_MODE is on: `Authorization: Bearer <did>` is accepted without \
                 verification (loopback only)"
                    .to_owned(),
            );
        } else {
            // Dev mode authenticates anyone who names a DID; it must never be reachable from
            // another machine.
            r.problem(
                "STRATOS_DEV_MODE",
                format!("dev mode only binds to loopback, but STRATOS_BIND is {bind}"),
            );
        }
    }
    let mut allowed_appviews = Vec::new();
    for entry in r.list("STRATOS_ALLOWED_APPVIEWS") {
        match Did::parse(&entry) {
            Ok(did) => allowed_appviews.push(did),
            Err(e) => r.problem("STRATOS_ALLOWED_APPVIEWS", e.to_string()),
        }
    }
    let stream = StreamConfig {
        allowed_appviews,
        heartbeat_secs: r.uint("STRATOS_SYNC_HEARTBEAT_SECS", 30, 1..=3_600),
        send_timeout_secs: r.uint("STRATOS_SYNC_SEND_TIMEOUT_SECS", 10, 1..=3_600),
        live_window: r.uint("STRATOS_SYNC_LIVE_WINDOW", 256, 1..=65_536),
    };
    let oauth = OAuthClientConfig {
        client_id: r.url("STRATOS_OAUTH_CLIENT_ID", false),
        client_secret: r.secret("STRATOS_OAUTH_CLIENT_SECRET", true),
        client_name: r
            .text("STRATOS_OAUTH_CLIENT_NAME")
            .unwrap_or_else(|| "Stratos Service".to_owned()),
        logo_uri: r.url("STRATOS_OAUTH_LOGO_URI", false),
        tos_uri: r.url("STRATOS_OAUTH_TOS_URI", false),
        policy_uri: r.url("STRATOS_OAUTH_POLICY_URI", false),
    };

    // ---- identity resolution, User-Agent, logging
    let plc_url = r.base_url_or("STRATOS_PLC_URL", "https://plc.directory");
    // Development runs its PDS and friends on loopback; anywhere else, a URL a caller chose must
    // not reach the service's own network unless the operator says so.
    let outbound_allow_private = r.flag("STRATOS_OUTBOUND_ALLOW_PRIVATE", auth.dev_mode);
    if outbound_allow_private && !auth.dev_mode {
        r.warnings.push(
            "STRATOS_OUTBOUND_ALLOW_PRIVATE is on: DID documents, handles and access tokens can \
             make the service fetch private, loopback and link-local addresses"
                .to_owned(),
        );
    }
    let repo_url = r.base_url_or("STRATOS_REPO_URL", "http://localhost:3100");
    let operator_contact = r.text("STRATOS_OPERATOR_CONTACT");
    if operator_contact.as_deref().is_some_and(|c| !c.is_ascii()) {
        r.problem(
            "STRATOS_OPERATOR_CONTACT",
            "must be ASCII (it is sent in the User-Agent header)",
        );
    }
    let log_level = r.choice(
        "LOG_LEVEL",
        LogLevel::Info,
        &[
            ("fatal", LogLevel::Fatal),
            ("error", LogLevel::Error),
            ("warn", LogLevel::Warn),
            ("info", LogLevel::Info),
            ("debug", LogLevel::Debug),
            ("trace", LogLevel::Trace),
            ("silent", LogLevel::Silent),
        ],
    );

    Some(Config {
        service_did: service_did?,
        service_fragment,
        bind,
        port,
        public_url: public_url?,
        allowed_boundaries,
        auto_enroll_boundaries,
        enrollment,
        valkey_url,
        data_dir,
        storage: storage?,
        block_cache_size,
        blobs: blobs?,
        limits,
        write_rate,
        auth,
        oauth,
        stream,
        plc_url: plc_url?,
        outbound_allow_private,
        repo_url: repo_url?,
        operator_contact,
        log_level,
        warnings: Vec::new(),
    })
}

fn service_did(r: &mut Reader<'_>, public_url: Option<&HttpUrl>) -> Option<Did> {
    const NAME: &str = "STRATOS_SERVICE_DID";
    let derived = public_url.map(did_web_for);
    match r.value(NAME) {
        Some(value) => match Did::parse(value) {
            Ok(did) => {
                if let Some(Ok(from_url)) = &derived
                    && did.method() == "web"
                    && did != *from_url
                {
                    r.warnings.push(format!(
                        "{NAME} is {did} but STRATOS_PUBLIC_URL implies {from_url}: the \
                         did:web document will not be found at this service"
                    ));
                }
                Some(did)
            }
            Err(e) => {
                r.problem(NAME, e.to_string());
                None
            }
        },
        None => match derived {
            Some(Ok(did)) => Some(did),
            Some(Err(why)) => {
                r.problem(NAME, why);
                None
            }
            // The public URL is invalid and already reported.
            None => None,
        },
    }
}

/// Qualifies each configured boundary on its own, so every bad entry is reported.
fn qualify_list(r: &mut Reader<'_>, name: &'static str, service: Option<&Did>) -> Vec<Boundary> {
    let entries = r.list(name);
    let Some(service) = service else {
        return Vec::new();
    };
    let mut out: Vec<Boundary> = Vec::new();
    for entry in entries {
        match qualify_configured(service, &[entry]) {
            Ok(qualified) => {
                for b in qualified {
                    if !out.contains(&b) {
                        out.push(b);
                    }
                }
            }
            Err(e) => r.problem(name, e.to_string()),
        }
    }
    out
}

fn boundaries(r: &mut Reader<'_>, service: Option<&Did>) -> (Vec<Boundary>, Vec<Boundary>) {
    let allowed = qualify_list(r, "STRATOS_ALLOWED_DOMAINS", service);
    let auto = qualify_list(r, "STRATOS_AUTO_ENROLL_DOMAINS", service);
    for b in auto.iter().filter(|b| !allowed.contains(b)) {
        r.problem(
            "STRATOS_AUTO_ENROLL_DOMAINS",
            format!("{b} is not in STRATOS_ALLOWED_DOMAINS"),
        );
    }
    if allowed.is_empty() && service.is_some() {
        r.warnings.push(
            "STRATOS_ALLOWED_DOMAINS is empty: the service offers no boundaries, so no record can \
             be written"
                .to_owned(),
        );
    }
    (allowed, auto)
}

fn enrollment(r: &mut Reader<'_>) -> EnrollmentConfig {
    let mode = r.choice(
        "STRATOS_ENROLLMENT_MODE",
        EnrollmentMode::Allowlist,
        &[
            ("open", EnrollmentMode::Open),
            ("allowlist", EnrollmentMode::Allowlist),
            ("closed", EnrollmentMode::Closed),
        ],
    );
    let mut allowed_dids = Vec::new();
    for entry in r.list("STRATOS_ALLOWED_DIDS") {
        match Did::parse(&entry) {
            Ok(did) => allowed_dids.push(did),
            Err(e) => r.problem("STRATOS_ALLOWED_DIDS", e.to_string()),
        }
    }
    let mut allowed_pds_endpoints = Vec::new();
    for entry in r.list("STRATOS_ALLOWED_PDS_ENDPOINTS") {
        match HttpUrl::parse_base(&entry) {
            Ok(url) => allowed_pds_endpoints.push(url),
            Err(why) => r.problem(
                "STRATOS_ALLOWED_PDS_ENDPOINTS",
                format!("{why}, got {}", shown(&entry)),
            ),
        }
    }
    let allow_list_uri = r.url("STRATOS_ALLOW_LIST_URI", false);
    let allow_list_bootstrap_name = r.text("STRATOS_ALLOW_LIST_BOOTSTRAP_NAME");
    if allow_list_bootstrap_name
        .as_deref()
        .is_some_and(|n| n.chars().any(char::is_whitespace))
    {
        r.problem(
            "STRATOS_ALLOW_LIST_BOOTSTRAP_NAME",
            "must not contain whitespace",
        );
    }
    if mode != EnrollmentMode::Allowlist {
        r.warn_ignored(
            &[
                "STRATOS_ALLOWED_DIDS",
                "STRATOS_ALLOWED_PDS_ENDPOINTS",
                "STRATOS_ALLOW_LIST_URI",
            ],
            &format!("STRATOS_ENROLLMENT_MODE={}", mode.as_str()),
        );
    }
    EnrollmentConfig {
        mode,
        allowed_dids,
        allowed_pds_endpoints,
        allow_list_uri,
        allow_list_bootstrap_name,
    }
}

const PG_PARTS: &[&str] = &[
    "STRATOS_PG_HOST",
    "STRATOS_PG_PORT",
    "STRATOS_PG_USERNAME",
    "STRATOS_PG_PASSWORD",
    "STRATOS_PG_DBNAME",
    "STRATOS_PG_SSLMODE",
];

fn storage(r: &mut Reader<'_>, data_dir: &std::path::Path) -> Option<StorageBackend> {
    #[derive(Clone, Copy)]
    enum Kind {
        Sqlite,
        Postgres,
    }
    let kind = r.choice(
        "STORAGE_BACKEND",
        Kind::Sqlite,
        &[("sqlite", Kind::Sqlite), ("postgres", Kind::Postgres)],
    );
    let durability = r.choice(
        "STRATOS_SQLITE_DURABILITY",
        SqliteDurability::Durable,
        &[
            ("durable", SqliteDurability::Durable),
            ("relaxed", SqliteDurability::Relaxed),
        ],
    );
    let url = r.connection_url("STRATOS_POSTGRES_URL", &["postgres", "postgresql"]);
    let from_parts = postgres_from_parts(r);
    let actor_pool: u32 = r.uint("STRATOS_PG_ACTOR_POOL_SIZE", 200, 1..=10_000);
    let admin_pool: u32 = r.uint("STRATOS_PG_ADMIN_POOL_SIZE", 3, 1..=10_000);
    match kind {
        Kind::Sqlite => {
            let mut postgres_only = vec![
                "STRATOS_POSTGRES_URL",
                "STRATOS_PG_ACTOR_POOL_SIZE",
                "STRATOS_PG_ADMIN_POOL_SIZE",
            ];
            postgres_only.extend_from_slice(PG_PARTS);
            r.warn_ignored(&postgres_only, "STORAGE_BACKEND=sqlite");
            Some(StorageBackend::Sqlite {
                data_dir: data_dir.to_path_buf(),
                durability,
            })
        }
        Kind::Postgres => {
            r.warn_ignored(&["STRATOS_SQLITE_DURABILITY"], "STORAGE_BACKEND=postgres");
            let url = match (url, from_parts) {
                (Some(url), _) => {
                    r.warn_ignored(PG_PARTS, "STRATOS_POSTGRES_URL is set");
                    url
                }
                (None, Some(url)) => url,
                (None, None) => {
                    if !r.is_set("STRATOS_POSTGRES_URL") && !r.is_set("STRATOS_PG_HOST") {
                        r.problem(
                            "STRATOS_POSTGRES_URL",
                            "STRATOS_POSTGRES_URL is required when STORAGE_BACKEND=postgres \
                             (or set STRATOS_PG_HOST to build it from STRATOS_PG_*)",
                        );
                    }
                    return None;
                }
            };
            Some(StorageBackend::Postgres {
                url,
                actor_pool,
                admin_pool,
            })
        }
    }
}

/// `postgres://user[:password]@host:port/db?sslmode=…` from `STRATOS_PG_*`, when
/// `STRATOS_PG_HOST` is set. Every part is read (and validated) either way.
fn postgres_from_parts(r: &mut Reader<'_>) -> Option<ConnectionUrl> {
    let host = r.value("STRATOS_PG_HOST");
    let port: u16 = r.uint("STRATOS_PG_PORT", 5432, 1..=65_535);
    let user = r
        .text("STRATOS_PG_USERNAME")
        .unwrap_or_else(|| "stratos".to_owned());
    let password = r.secret("STRATOS_PG_PASSWORD", false);
    let db = r
        .text("STRATOS_PG_DBNAME")
        .unwrap_or_else(|| "stratos".to_owned());
    let sslmode = r.choice(
        "STRATOS_PG_SSLMODE",
        "require",
        &[
            ("disable", "disable"),
            ("allow", "allow"),
            ("prefer", "prefer"),
            ("require", "require"),
            ("verify-ca", "verify-ca"),
            ("verify-full", "verify-full"),
        ],
    );
    let host = host?;
    let host = if host.parse::<Ipv6Addr>().is_ok() {
        format!("[{host}]")
    } else if check_hostname(host).is_ok() {
        host.to_owned()
    } else {
        r.problem(
            "STRATOS_PG_HOST",
            format!(
                "expected a host name or IP address, got {} (use STRATOS_POSTGRES_URL for \
                 socket paths)",
                shown(host)
            ),
        );
        return None;
    };
    let mut url = format!("postgres://{}", percent_encode(&user));
    if let Some(password) = &password {
        url.push(':');
        url.push_str(&percent_encode(password.expose()));
    }
    url.push_str(&format!(
        "@{host}:{port}/{}?sslmode={sslmode}",
        percent_encode(&db)
    ));
    Some(ConnectionUrl(url))
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

const S3_VARIABLES: &[&str] = &[
    "STRATOS_S3_BUCKET",
    "STRATOS_S3_REGION",
    "STRATOS_S3_ENDPOINT",
    "STRATOS_S3_ACCESS_KEY",
    "STRATOS_S3_SECRET_KEY",
];

fn blobs(r: &mut Reader<'_>, data_dir: &std::path::Path) -> Option<BlobStorage> {
    #[derive(Clone, Copy)]
    enum Kind {
        Local,
        S3,
    }
    let kind = r.choice(
        "STRATOS_BLOB_STORAGE",
        Kind::Local,
        &[("local", Kind::Local), ("s3", Kind::S3)],
    );
    let bucket = r.text("STRATOS_S3_BUCKET");
    if bucket
        .as_deref()
        .is_some_and(|b| b.contains('/') || b.chars().any(char::is_whitespace))
    {
        r.problem(
            "STRATOS_S3_BUCKET",
            "must be a bucket name, without `/` or whitespace",
        );
    }
    let region = r.text("STRATOS_S3_REGION");
    let endpoint = r.url("STRATOS_S3_ENDPOINT", true);
    let access_key = r.secret("STRATOS_S3_ACCESS_KEY", false);
    let secret_key = r.secret("STRATOS_S3_SECRET_KEY", false);
    match kind {
        Kind::Local => {
            r.warn_ignored(S3_VARIABLES, "STRATOS_BLOB_STORAGE=local");
            Some(BlobStorage::Local {
                dir: data_dir.join("blobs"),
            })
        }
        Kind::S3 => {
            let credentials = match (access_key, secret_key) {
                (Some(access_key), Some(secret_key)) => Some(S3Credentials {
                    access_key,
                    secret_key,
                }),
                (None, None) => None,
                (Some(_), None) => {
                    if !r.is_set("STRATOS_S3_SECRET_KEY") {
                        r.problem(
                            "STRATOS_S3_SECRET_KEY",
                            "is required when STRATOS_S3_ACCESS_KEY is set (set both or neither)",
                        );
                    }
                    None
                }
                (None, Some(_)) => {
                    if !r.is_set("STRATOS_S3_ACCESS_KEY") {
                        r.problem(
                            "STRATOS_S3_ACCESS_KEY",
                            "is required when STRATOS_S3_SECRET_KEY is set (set both or neither)",
                        );
                    }
                    None
                }
            };
            let Some(bucket) = bucket else {
                if !r.is_set("STRATOS_S3_BUCKET") {
                    r.problem(
                        "STRATOS_S3_BUCKET",
                        "STRATOS_S3_BUCKET is required when STRATOS_BLOB_STORAGE=s3",
                    );
                }
                return None;
            };
            Some(BlobStorage::S3 {
                bucket,
                region,
                endpoint,
                credentials,
            })
        }
    }
}

/// Warnings for `STRATOS_*` variables nobody read: retired names, and likely typos with the
/// closest known name.
fn unknown_variable_warnings(
    vars: &HashMap<String, String>,
    read: &BTreeSet<&'static str>,
) -> Vec<String> {
    let mut unknown: Vec<&str> = vars
        .keys()
        .map(String::as_str)
        .filter(|name| name.starts_with("STRATOS_") && !read.contains(name))
        .collect();
    unknown.sort_unstable();
    unknown
        .into_iter()
        .map(|name| {
            if let Some((_, why)) = RETIRED.iter().find(|(retired, _)| *retired == name) {
                return format!("{name} {why}");
            }
            let closest = VARIABLES
                .iter()
                .map(|known| (edit_distance(name, known), *known))
                .min();
            match closest {
                Some((distance, known)) if distance <= 3 => {
                    format!("unknown variable {name} is ignored; did you mean {known}?")
                }
                _ => format!("unknown variable {name} is ignored"),
            }
        })
        .collect()
}

/// Levenshtein distance over bytes (variable names are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_pairs(pairs.iter().copied())
    }

    fn ok(pairs: &[(&str, &str)]) -> Config {
        match load(pairs) {
            Ok(config) => config,
            Err(e) => panic!("expected a valid configuration, got {e}"),
        }
    }

    fn problems(pairs: &[(&str, &str)]) -> Vec<Problem> {
        match load(pairs) {
            Ok(config) => panic!("expected an error, got {config:?}"),
            Err(e) => e.problems().to_vec(),
        }
    }

    fn has_problem(problems: &[Problem], variable: &str, needle: &str) -> bool {
        problems
            .iter()
            .any(|p| p.variable == variable && p.message.contains(needle))
    }

    #[test]
    fn defaults_with_empty_map() {
        let config = Config::from_map(&HashMap::new()).unwrap();
        assert_eq!(config.service_did.as_str(), "did:web:localhost%3A3100");
        assert_eq!(config.service_fragment, "atproto_pns");
        assert_eq!(config.bind, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(config.port, 3100);
        assert_eq!(config.socket_addr().to_string(), "127.0.0.1:3100");
        assert_eq!(config.public_url.as_str(), "http://localhost:3100");
        assert!(config.allowed_boundaries.is_empty());
        assert!(config.auto_enroll_boundaries.is_empty());
        assert_eq!(config.enrollment.mode, EnrollmentMode::Allowlist);
        assert!(config.enrollment.allowed_dids.is_empty());
        assert!(config.enrollment.allowed_pds_endpoints.is_empty());
        assert!(config.enrollment.allow_list_uri.is_none());
        assert!(config.enrollment.allow_list_bootstrap_name.is_none());
        assert!(config.valkey_url.is_none());
        assert_eq!(config.data_dir, PathBuf::from("./data"));
        assert!(matches!(
            &config.storage,
            StorageBackend::Sqlite { data_dir, durability: SqliteDurability::Durable }
                if data_dir == &PathBuf::from("./data")
        ));
        assert_eq!(config.block_cache_size, 50_000);
        assert!(matches!(
            &config.blobs,
            BlobStorage::Local { dir } if dir == &PathBuf::from("./data").join("blobs")
        ));
        assert_eq!(
            config.limits,
            Limits {
                max_body_bytes: 1_048_576,
                blob_max_bytes: 5_242_880,
                import_max_bytes: 268_435_456,
                body_timeout_secs: 30,
                max_bodies_per_ip: 32,
                max_bodies: 1_024,
                import_concurrency: 1,
            }
        );
        assert_eq!(
            config.write_rate,
            WriteRateLimit {
                max_writes: 300,
                window_ms: 60_000,
                cooldown_ms: 10_000,
                cooldown_jitter_ms: 1_000,
            }
        );
        assert_eq!(
            config.write_rate.rate_limit(),
            stratos_domain::rate_limit::DEFAULT_RATE_LIMIT
        );
        assert!(!config.auth.dev_mode);
        assert!(config.auth.dpop_require_nonce);
        assert!(config.auth.admin_password.is_none());
        assert!(config.auth.sync_token.is_none());
        assert!(config.oauth.client_id.is_none());
        assert!(config.oauth.client_secret.is_none());
        assert_eq!(config.oauth.client_name, "Stratos Service");
        assert_eq!(config.plc_url.as_str(), "https://plc.directory");
        assert_eq!(config.repo_url.as_str(), "http://localhost:3100");
        assert!(config.operator_contact.is_none());
        assert_eq!(config.log_level, LogLevel::Info);
        // The defaults are safe but inert: the operator is told why.
        assert!(
            config
                .warnings
                .iter()
                .any(|w| w.contains("nobody can enroll"))
        );
        assert!(
            config
                .warnings
                .iter()
                .any(|w| w.contains("STRATOS_ALLOWED_DOMAINS is empty"))
        );
    }

    #[test]
    fn an_empty_allowlist_with_an_admin_password_still_lets_the_operator_enroll() {
        // The README's own example: the old warning said "nobody can enroll" although
        // zone.stratos.admin.enrollActor works.
        let config = ok(&[
            ("STRATOS_DEV_MODE", "true"),
            ("STRATOS_ADMIN_PASSWORD", "secret"),
            ("STRATOS_ALLOWED_DOMAINS", "general"),
        ]);
        assert!(
            !config
                .warnings
                .iter()
                .any(|w| w.contains("nobody can enroll")),
            "{:?}",
            config.warnings
        );
        let enrollment: Vec<_> = config
            .warnings
            .iter()
            .filter(|w| w.contains("STRATOS_ENROLLMENT_MODE=allowlist"))
            .collect();
        assert_eq!(enrollment.len(), 1, "{:?}", config.warnings);
        assert!(enrollment[0].contains("cannot enroll themselves"));
        assert!(enrollment[0].contains("zone.stratos.admin.enrollActor"));
        // Once an allow-list admits someone, there is nothing to warn about.
        let config = ok(&[
            ("STRATOS_ADMIN_PASSWORD", "secret"),
            ("STRATOS_ALLOWED_DIDS", "did:plc:rei"),
        ]);
        assert!(
            !config
                .warnings
                .iter()
                .any(|w| w.contains("STRATOS_ENROLLMENT_MODE=allowlist")),
            "{:?}",
            config.warnings
        );
    }

    #[test]
    fn every_boolean_spelling_is_accepted() {
        for (spelling, expected) in [
            ("true", true),
            ("TRUE", true),
            ("True", true),
            ("1", true),
            ("false", false),
            ("FALSE", false),
            ("False", false),
            ("0", false),
            (" false ", false),
        ] {
            for name in ["STRATOS_DEV_MODE", "STRATOS_DPOP_REQUIRE_NONCE"] {
                let config = ok(&[(name, spelling)]);
                let value = match name {
                    "STRATOS_DEV_MODE" => config.auth.dev_mode,
                    _ => config.auth.dpop_require_nonce,
                };
                assert_eq!(value, expected, "{name}={spelling:?}");
            }
        }
        // Empty means unset, so the default applies.
        assert!(
            ok(&[("STRATOS_DPOP_REQUIRE_NONCE", "")])
                .auth
                .dpop_require_nonce
        );
        assert!(!ok(&[("STRATOS_DEV_MODE", "")]).auth.dev_mode);
    }

    #[test]
    fn other_boolean_spellings_are_rejected() {
        for spelling in ["yes", "no", "on", "off", "2", "t", "f", "-1", "truee"] {
            for name in ["STRATOS_DEV_MODE", "STRATOS_DPOP_REQUIRE_NONCE"] {
                let found = problems(&[(name, spelling)]);
                assert!(
                    has_problem(&found, name, "expected true, false, 1 or 0"),
                    "{name}={spelling:?}: {found:?}"
                );
            }
        }
    }

    #[test]
    fn outbound_private_targets_follow_dev_mode_unless_set() {
        let dev = [("STRATOS_DEV_MODE", "true"), ("STRATOS_BIND", "127.0.0.1")];
        assert!(!ok(&[]).outbound_allow_private);
        assert!(ok(&dev).outbound_allow_private);
        let guarded = ok(&[dev[0], dev[1], ("STRATOS_OUTBOUND_ALLOW_PRIVATE", "false")]);
        assert!(!guarded.outbound_allow_private);
        let open = ok(&[("STRATOS_OUTBOUND_ALLOW_PRIVATE", "1")]);
        assert!(open.outbound_allow_private);
        assert!(
            open.warnings
                .iter()
                .any(|w| w.contains("STRATOS_OUTBOUND_ALLOW_PRIVATE is on"))
        );
        assert!(has_problem(
            &problems(&[("STRATOS_OUTBOUND_ALLOW_PRIVATE", "yes")]),
            "STRATOS_OUTBOUND_ALLOW_PRIVATE",
            "expected true, false, 1 or 0"
        ));
    }

    #[test]
    fn d10_dev_mode_false_is_false() {
        // The reference's `.env.example` and docker-compose value, which it read as `true`.
        let config = ok(&[("STRATOS_DEV_MODE", "false")]);
        assert!(!config.auth.dev_mode);
        let config = ok(&[("STRATOS_DEV_MODE", "0")]);
        assert!(!config.auth.dev_mode);
    }

    #[test]
    fn dev_mode_refuses_non_loopback_binds() {
        for bind in ["0.0.0.0", "::", "192.168.1.10"] {
            let found = problems(&[("STRATOS_DEV_MODE", "true"), ("STRATOS_BIND", bind)]);
            assert!(
                has_problem(
                    &found,
                    "STRATOS_DEV_MODE",
                    "dev mode only binds to loopback"
                ),
                "{bind}: {found:?}"
            );
        }
        for bind in ["127.0.0.1", "::1"] {
            let config = ok(&[("STRATOS_DEV_MODE", "true"), ("STRATOS_BIND", bind)]);
            assert!(config.auth.dev_mode);
            assert!(config.warnings.iter().any(|w| w.contains("DEV_MODE is on")));
        }
        // Without dev mode any address is fine.
        let config = ok(&[("STRATOS_BIND", "0.0.0.0")]);
        assert_eq!(config.socket_addr().to_string(), "0.0.0.0:3100");
    }

    #[test]
    fn bad_bind_address() {
        let found = problems(&[("STRATOS_BIND", "localhost")]);
        assert!(has_problem(
            &found,
            "STRATOS_BIND",
            "expected an IP address"
        ));
    }

    #[test]
    fn postgres_without_url_is_an_error() {
        let found = problems(&[("STORAGE_BACKEND", "postgres")]);
        assert!(has_problem(
            &found,
            "STRATOS_POSTGRES_URL",
            "STRATOS_POSTGRES_URL is required when STORAGE_BACKEND=postgres"
        ));
        // Parts without a host are not enough either.
        let found = problems(&[
            ("STORAGE_BACKEND", "postgres"),
            ("STRATOS_PG_USERNAME", "app"),
        ]);
        assert!(has_problem(&found, "STRATOS_POSTGRES_URL", "is required"));
    }

    #[test]
    fn postgres_url_is_used_as_given() {
        let config = ok(&[
            ("STORAGE_BACKEND", "postgres"),
            ("STRATOS_POSTGRES_URL", "postgres://app:pw@db:5432/stratos"),
            ("STRATOS_PG_ACTOR_POOL_SIZE", "50"),
            ("STRATOS_PG_ADMIN_POOL_SIZE", "2"),
            ("STRATOS_PG_HOST", "ignored"),
        ]);
        let StorageBackend::Postgres {
            url,
            actor_pool,
            admin_pool,
        } = &config.storage
        else {
            panic!("expected postgres, got {:?}", config.storage);
        };
        assert_eq!(url.expose(), "postgres://app:pw@db:5432/stratos");
        assert_eq!((*actor_pool, *admin_pool), (50, 2));
        assert!(
            config
                .warnings
                .iter()
                .any(|w| w.contains("STRATOS_PG_HOST is ignored"))
        );
        let found = problems(&[
            ("STORAGE_BACKEND", "postgres"),
            ("STRATOS_POSTGRES_URL", "mysql://db/x"),
        ]);
        assert!(has_problem(&found, "STRATOS_POSTGRES_URL", "postgres://"));
        assert_eq!(found.len(), 1, "{found:?}");
    }

    #[test]
    fn postgres_dsn_built_from_parts() {
        let config = ok(&[
            ("STORAGE_BACKEND", "postgres"),
            ("STRATOS_PG_HOST", "db.internal"),
        ]);
        let StorageBackend::Postgres { url, .. } = &config.storage else {
            panic!("expected postgres");
        };
        assert_eq!(
            url.expose(),
            "postgres://stratos@db.internal:5432/stratos?sslmode=require"
        );

        let config = ok(&[
            ("STORAGE_BACKEND", "postgres"),
            ("STRATOS_PG_HOST", "::1"),
            ("STRATOS_PG_PORT", "6543"),
            ("STRATOS_PG_USERNAME", "app user"),
            ("STRATOS_PG_PASSWORD", "p@ss:w/rd"),
            ("STRATOS_PG_DBNAME", "stratos_prod"),
            ("STRATOS_PG_SSLMODE", "verify-full"),
        ]);
        let StorageBackend::Postgres { url, .. } = &config.storage else {
            panic!("expected postgres");
        };
        assert_eq!(
            url.expose(),
            "postgres://app%20user:p%40ss%3Aw%2Frd@[::1]:6543/stratos_prod?sslmode=verify-full"
        );
        assert_eq!(
            url.redacted(),
            "postgres://app%20user:<redacted>@[::1]:6543/stratos_prod?sslmode=verify-full"
        );

        let found = problems(&[
            ("STORAGE_BACKEND", "postgres"),
            ("STRATOS_PG_HOST", "db"),
            ("STRATOS_PG_SSLMODE", "strict"),
            ("STRATOS_PG_PORT", "0"),
        ]);
        assert!(has_problem(&found, "STRATOS_PG_SSLMODE", "verify-full"));
        assert!(has_problem(&found, "STRATOS_PG_PORT", "from 1 to 65535"));
    }

    #[test]
    fn pool_sizes_must_be_positive() {
        let found = problems(&[
            ("STORAGE_BACKEND", "postgres"),
            ("STRATOS_POSTGRES_URL", "postgres://db/x"),
            ("STRATOS_PG_ACTOR_POOL_SIZE", "0"),
            ("STRATOS_PG_ADMIN_POOL_SIZE", "-3"),
        ]);
        assert!(has_problem(&found, "STRATOS_PG_ACTOR_POOL_SIZE", "from 1"));
        assert!(has_problem(&found, "STRATOS_PG_ADMIN_POOL_SIZE", "from 1"));
    }

    #[test]
    fn sqlite_durability_and_ignored_postgres_settings() {
        let config = ok(&[
            ("STRATOS_SQLITE_DURABILITY", "relaxed"),
            ("STRATOS_DATA_DIR", "/var/lib/stratos"),
            ("STRATOS_POSTGRES_URL", "postgres://db/x"),
        ]);
        assert!(matches!(
            &config.storage,
            StorageBackend::Sqlite { data_dir, durability: SqliteDurability::Relaxed }
                if data_dir == &PathBuf::from("/var/lib/stratos")
        ));
        assert!(matches!(
            &config.blobs,
            BlobStorage::Local { dir } if dir == &PathBuf::from("/var/lib/stratos/blobs")
        ));
        assert!(
            config
                .warnings
                .iter()
                .any(|w| w == "STRATOS_POSTGRES_URL is ignored because STORAGE_BACKEND=sqlite")
        );
        let found = problems(&[("STRATOS_SQLITE_DURABILITY", "fast")]);
        assert!(has_problem(
            &found,
            "STRATOS_SQLITE_DURABILITY",
            "durable, relaxed"
        ));
    }

    #[test]
    fn s3_without_bucket_is_an_error() {
        let found = problems(&[("STRATOS_BLOB_STORAGE", "s3")]);
        assert!(has_problem(
            &found,
            "STRATOS_S3_BUCKET",
            "STRATOS_S3_BUCKET is required when STRATOS_BLOB_STORAGE=s3"
        ));
    }

    #[test]
    fn half_s3_credentials_are_an_error() {
        let found = problems(&[
            ("STRATOS_BLOB_STORAGE", "s3"),
            ("STRATOS_S3_BUCKET", "blobs"),
            ("STRATOS_S3_ACCESS_KEY", "AKIA"),
        ]);
        assert!(has_problem(
            &found,
            "STRATOS_S3_SECRET_KEY",
            "both or neither"
        ));
        let found = problems(&[
            ("STRATOS_BLOB_STORAGE", "s3"),
            ("STRATOS_S3_BUCKET", "blobs"),
            ("STRATOS_S3_SECRET_KEY", "shh"),
        ]);
        assert!(has_problem(
            &found,
            "STRATOS_S3_ACCESS_KEY",
            "both or neither"
        ));
    }

    #[test]
    fn s3_with_everything() {
        let config = ok(&[
            ("STRATOS_BLOB_STORAGE", "S3"),
            ("STRATOS_S3_BUCKET", "blobs"),
            ("STRATOS_S3_REGION", "eu-west-1"),
            ("STRATOS_S3_ENDPOINT", "http://127.0.0.1:9000/"),
            ("STRATOS_S3_ACCESS_KEY", "AKIA"),
            ("STRATOS_S3_SECRET_KEY", "shh"),
        ]);
        let BlobStorage::S3 {
            bucket,
            region,
            endpoint,
            credentials,
        } = &config.blobs
        else {
            panic!("expected s3");
        };
        assert_eq!(bucket, "blobs");
        assert_eq!(region.as_deref(), Some("eu-west-1"));
        assert_eq!(
            endpoint.as_ref().map(HttpUrl::as_str),
            Some("http://127.0.0.1:9000")
        );
        let credentials = credentials.as_ref().unwrap();
        assert_eq!(credentials.access_key.expose(), "AKIA");
        assert_eq!(credentials.secret_key.expose(), "shh");
        // Without keys the AWS chain is used.
        let config = ok(&[("STRATOS_BLOB_STORAGE", "s3"), ("STRATOS_S3_BUCKET", "b")]);
        assert!(matches!(
            &config.blobs,
            BlobStorage::S3 {
                credentials: None,
                ..
            }
        ));
        // S3 settings under local storage are flagged, not fatal.
        let config = ok(&[("STRATOS_S3_BUCKET", "b")]);
        assert!(
            config
                .warnings
                .iter()
                .any(|w| w == "STRATOS_S3_BUCKET is ignored because STRATOS_BLOB_STORAGE=local")
        );
    }

    #[test]
    fn lists_are_trimmed_and_empties_dropped() {
        let config = ok(&[
            (
                "STRATOS_ALLOWED_DOMAINS",
                " engineering, ,design,,engineering ",
            ),
            ("STRATOS_AUTO_ENROLL_DOMAINS", ",design ,"),
            (
                "STRATOS_ALLOWED_DIDS",
                " did:plc:abc ,, did:web:example.com,",
            ),
            (
                "STRATOS_ALLOWED_PDS_ENDPOINTS",
                "https://pds.example/ , ,https://other.example",
            ),
        ]);
        let names: Vec<&str> = config
            .allowed_boundaries
            .iter()
            .map(Boundary::as_str)
            .collect();
        assert_eq!(
            names,
            [
                "did:web:localhost%3A3100/engineering",
                "did:web:localhost%3A3100/design"
            ]
        );
        let auto: Vec<&str> = config
            .auto_enroll_boundaries
            .iter()
            .map(Boundary::as_str)
            .collect();
        assert_eq!(auto, ["did:web:localhost%3A3100/design"]);
        let dids: Vec<&str> = config
            .enrollment
            .allowed_dids
            .iter()
            .map(|d| d.as_str())
            .collect();
        assert_eq!(dids, ["did:plc:abc", "did:web:example.com"]);
        let pds: Vec<&str> = config
            .enrollment
            .allowed_pds_endpoints
            .iter()
            .map(HttpUrl::as_str)
            .collect();
        assert_eq!(pds, ["https://pds.example", "https://other.example"]);
        // And the domain accepts the result.
        let policy = config.enrollment_policy().unwrap();
        assert_eq!(policy.enroll_boundaries(), config.auto_enroll_boundaries);
    }

    #[test]
    fn boundary_rules() {
        let found = problems(&[
            ("STRATOS_ALLOWED_DOMAINS", "a"),
            ("STRATOS_AUTO_ENROLL_DOMAINS", "b"),
        ]);
        assert!(has_problem(
            &found,
            "STRATOS_AUTO_ENROLL_DOMAINS",
            "is not in STRATOS_ALLOWED_DOMAINS"
        ));
        // A boundary qualified for another service is refused rather than double-qualified.
        let found = problems(&[("STRATOS_ALLOWED_DOMAINS", "did:web:other.example/a")]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].variable, "STRATOS_ALLOWED_DOMAINS");
        let config = ok(&[("STRATOS_ALLOWED_DOMAINS", "did:web:localhost%3A3100/a,a,b")]);
        assert_eq!(config.allowed_boundaries.len(), 2);
    }

    #[test]
    fn enrollment_modes() {
        for (spelling, mode) in [
            ("open", EnrollmentMode::Open),
            ("allowlist", EnrollmentMode::Allowlist),
            ("closed", EnrollmentMode::Closed),
            ("Open", EnrollmentMode::Open),
        ] {
            let config = ok(&[("STRATOS_ENROLLMENT_MODE", spelling)]);
            assert_eq!(config.enrollment.mode, mode);
            assert_eq!(config.enrollment.mode.as_str(), spelling.to_lowercase());
            assert_eq!(
                config.enrollment_policy().unwrap().mode,
                PolicyMode::from(mode)
            );
        }
        let found = problems(&[("STRATOS_ENROLLMENT_MODE", "allow-list")]);
        assert!(has_problem(
            &found,
            "STRATOS_ENROLLMENT_MODE",
            "open, allowlist, closed"
        ));
        let found = problems(&[("STRATOS_ALLOWED_DIDS", "did:plc:ok,not-a-did")]);
        assert!(has_problem(&found, "STRATOS_ALLOWED_DIDS", "not-a-did"));
        let config = ok(&[
            ("STRATOS_ENROLLMENT_MODE", "open"),
            ("STRATOS_ALLOWED_DIDS", "did:plc:abc"),
        ]);
        assert!(
            config.warnings.iter().any(
                |w| w == "STRATOS_ALLOWED_DIDS is ignored because STRATOS_ENROLLMENT_MODE=open"
            )
        );
    }

    #[test]
    fn allow_list_and_valkey() {
        let config = ok(&[
            (
                "STRATOS_ALLOW_LIST_URI",
                "https://lists.example/allow.txt?v=2",
            ),
            ("STRATOS_VALKEY_URL", "redis://:hunter2@valkey:6379/0"),
            ("STRATOS_ALLOW_LIST_BOOTSTRAP_NAME", "stratos:allow"),
        ]);
        assert_eq!(
            config
                .enrollment
                .allow_list_uri
                .as_ref()
                .map(HttpUrl::as_str),
            Some("https://lists.example/allow.txt?v=2")
        );
        assert_eq!(
            config.valkey_url.as_ref().map(ConnectionUrl::redacted),
            Some("redis://:<redacted>@valkey:6379/0".to_owned())
        );
        let config = ok(&[("STRATOS_ALLOW_LIST_BOOTSTRAP_NAME", "stratos:allow")]);
        assert!(config.warnings.iter().any(|w| w.contains(
            "STRATOS_ALLOW_LIST_BOOTSTRAP_NAME is ignored because STRATOS_VALKEY_URL is not set"
        )));
        let found = problems(&[("STRATOS_VALKEY_URL", "http://valkey")]);
        assert!(has_problem(&found, "STRATOS_VALKEY_URL", "redis://"));
    }

    #[test]
    fn several_errors_are_reported_together() {
        let err = load(&[
            ("STRATOS_PORT", "eighty"),
            ("STRATOS_DEV_MODE", "yes"),
            ("STORAGE_BACKEND", "mysql"),
            ("STRATOS_BLOB_STORAGE", "s3"),
            ("LOG_LEVEL", "verbose"),
            ("STRATOS_WRITE_RATE_WINDOW_MS", "0"),
            ("STRATOS_PUBLIC_URL", "ftp://example.com"),
        ])
        .unwrap_err();
        let variables: Vec<&str> = err.problems().iter().map(|p| p.variable.as_str()).collect();
        for expected in [
            "STRATOS_PORT",
            "STRATOS_DEV_MODE",
            "STORAGE_BACKEND",
            "STRATOS_S3_BUCKET",
            "LOG_LEVEL",
            "STRATOS_WRITE_RATE_WINDOW_MS",
            "STRATOS_PUBLIC_URL",
        ] {
            assert!(variables.contains(&expected), "{expected} in {variables:?}");
        }
        let rendered = err.to_string();
        assert!(rendered.starts_with("invalid configuration:\n  "));
        assert_eq!(rendered.lines().count(), err.problems().len() + 1);
    }

    #[test]
    fn integers_are_range_checked() {
        for (name, bad) in [
            ("STRATOS_PORT", "0"),
            ("STRATOS_PORT", "65536"),
            ("STRATOS_PORT", "+80"),
            ("STRATOS_PORT", "80.0"),
            ("STRATOS_BLOCK_CACHE_SIZE", "0"),
            ("STRATOS_IMPORT_MAX_BYTES", "0"),
            ("STRATOS_MAX_BODY_BYTES", "-1"),
            ("STRATOS_BLOB_MAX_BYTES", "1e6"),
            ("STRATOS_WRITE_RATE_MAX_WRITES", "0"),
            ("STRATOS_WRITE_RATE_COOLDOWN_MS", "86400001"),
        ] {
            let found = problems(&[(name, bad)]);
            assert!(
                has_problem(&found, name, "expected an integer"),
                "{name}={bad}"
            );
        }
        let config = ok(&[
            ("STRATOS_WRITE_RATE_COOLDOWN_MS", "0"),
            ("STRATOS_WRITE_RATE_COOLDOWN_JITTER_MS", "0"),
            ("STRATOS_MAX_BODY_BYTES", "2048"),
        ]);
        assert_eq!(config.write_rate.cooldown_ms, 0);
        assert_eq!(config.write_rate.cooldown_jitter_ms, 0);
        assert_eq!(config.limits.max_body_bytes, 2048);
    }

    #[test]
    fn did_web_for_a_custom_port() {
        let config = ok(&[("STRATOS_PORT", "8080")]);
        assert_eq!(config.public_url.as_str(), "http://localhost:8080");
        assert_eq!(config.service_did.as_str(), "did:web:localhost%3A8080");
        let config = ok(&[("STRATOS_PUBLIC_URL", "https://Stratos.Example.com:8443/")]);
        assert_eq!(
            config.public_url.as_str(),
            "https://stratos.example.com:8443"
        );
        assert_eq!(
            config.service_did.as_str(),
            "did:web:stratos.example.com%3A8443"
        );
    }

    #[test]
    fn did_web_for_a_public_url_without_port() {
        let config = ok(&[("STRATOS_PUBLIC_URL", "https://stratos.example.com")]);
        assert_eq!(config.service_did.as_str(), "did:web:stratos.example.com");
        // An explicit default port is not part of the DID.
        let config = ok(&[("STRATOS_PUBLIC_URL", "https://stratos.example.com:443")]);
        assert_eq!(config.public_url.as_str(), "https://stratos.example.com");
        assert_eq!(config.service_did.as_str(), "did:web:stratos.example.com");
    }

    #[test]
    fn explicit_service_did() {
        let config = ok(&[
            ("STRATOS_SERVICE_DID", "did:plc:abc123"),
            ("STRATOS_PUBLIC_URL", "https://stratos.example.com/base"),
        ]);
        assert_eq!(config.service_did.as_str(), "did:plc:abc123");
        assert_eq!(
            config.public_url.as_str(),
            "https://stratos.example.com/base"
        );
        // With a path the did:web cannot be derived.
        let found = problems(&[("STRATOS_PUBLIC_URL", "https://stratos.example.com/base")]);
        assert!(has_problem(&found, "STRATOS_SERVICE_DID", "has a path"));
        let found = problems(&[("STRATOS_SERVICE_DID", "stratos")]);
        assert!(has_problem(&found, "STRATOS_SERVICE_DID", "invalid DID"));
        let config = ok(&[("STRATOS_SERVICE_DID", "did:web:elsewhere.example")]);
        assert!(config.warnings.iter().any(|w| w.contains("implies")));
    }

    #[test]
    fn public_url_rules() {
        for (bad, why) in [
            ("ftp://example.com", "http:// or https://"),
            ("example.com", "http:// or https://"),
            ("https://example.com/?x=1", "query or fragment"),
            ("https://example.com#top", "query or fragment"),
            ("https://user:pw@example.com", "credentials"),
            ("https://exa mple.com", "ASCII without spaces"),
            ("https://example.com:99999", "port"),
            ("https://-bad-.example", "host name"),
            ("https://[::1", "unclosed"),
        ] {
            let found = problems(&[("STRATOS_PUBLIC_URL", bad)]);
            assert!(
                has_problem(&found, "STRATOS_PUBLIC_URL", why),
                "{bad}: {found:?}"
            );
        }
        let config = ok(&[
            ("STRATOS_PUBLIC_URL", "https://stratos.example.com///"),
            ("STRATOS_PLC_URL", "https://plc.example/"),
        ]);
        assert_eq!(config.public_url.as_str(), "https://stratos.example.com");
        assert!(config.public_url.is_https());
        assert_eq!(config.plc_url.as_str(), "https://plc.example");
    }

    #[test]
    fn secrets_are_redacted() {
        let secrets = [
            ("STRATOS_ADMIN_PASSWORD", "admin-secret-1"),
            ("STRATOS_SYNC_TOKEN", "sync-secret-2"),
            ("STRATOS_OAUTH_CLIENT_SECRET", "oauth-secret-3"),
            ("STRATOS_S3_ACCESS_KEY", "s3-access-secret-4"),
            ("STRATOS_S3_SECRET_KEY", "s3-secret-secret-5"),
        ];
        let mut pairs = vec![
            ("STORAGE_BACKEND", "postgres"),
            (
                "STRATOS_POSTGRES_URL",
                "postgres://app:pg-url-secret-6@db/x?sslpassword=pg-url-secret-7",
            ),
            ("STRATOS_PG_PASSWORD", "pg-part-secret-8"),
            ("STRATOS_PG_HOST", "db"),
            ("STRATOS_VALKEY_URL", "redis://:valkey-secret-9@valkey:6379"),
            ("STRATOS_BLOB_STORAGE", "s3"),
            ("STRATOS_S3_BUCKET", "b"),
        ];
        pairs.extend(secrets);
        let config = ok(&pairs);
        assert_eq!(
            config.auth.admin_password.as_ref().map(Secret::expose),
            Some("admin-secret-1")
        );
        let debug = format!("{config:?}");
        let pretty = format!("{config:#?}");
        let rendered = config.redacted();
        assert_eq!(rendered, config.to_string());
        for text in [&debug, &pretty, &rendered] {
            assert!(!text.contains("secret-"), "secret leaked in:\n{text}");
            assert!(text.contains(REDACTED));
        }
        assert!(rendered.contains("STRATOS_ADMIN_PASSWORD=<redacted>"));
        assert!(rendered.contains("STRATOS_POSTGRES_URL=postgres://app:<redacted>@db/x"));
        assert!(rendered.contains("STRATOS_VALKEY_URL=redis://:<redacted>@valkey:6379"));

        // Invalid secret-bearing values are not echoed in errors either.
        let err = load(&[
            ("STORAGE_BACKEND", "postgres"),
            ("STRATOS_POSTGRES_URL", "pg://u:bad-secret-10@db/x"),
            ("STRATOS_VALKEY_URL", "http://:bad-secret-11@valkey"),
            ("STRATOS_ADMIN_PASSWORD", " bad-secret-12"),
            ("STRATOS_SYNC_TOKEN", "bad-secret-13\r"),
        ])
        .unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(!text.contains("secret-"), "secret leaked in: {text}");
        assert_eq!(err.problems().len(), 4, "{err}");
    }

    #[test]
    fn secret_handling() {
        // Empty disables.
        let config = ok(&[("STRATOS_ADMIN_PASSWORD", ""), ("STRATOS_SYNC_TOKEN", "  ")]);
        assert!(config.auth.admin_password.is_none());
        assert!(config.auth.sync_token.is_none());
        assert!(config.to_string().contains("admin endpoints disabled"));
        // Key material loses its trailing newline.
        let config = ok(&[("STRATOS_OAUTH_CLIENT_SECRET", "-----BEGIN-----\nkey\n")]);
        assert_eq!(
            config.oauth.client_secret.as_ref().map(Secret::expose),
            Some("-----BEGIN-----\nkey")
        );
        assert_eq!(format!("{:?}", Secret::new("x")), "<redacted>");
    }

    #[test]
    fn redact_url_hides_awkward_passwords() {
        for (url, expected) in [
            ("postgres://u:p@h/db", "postgres://u:<redacted>@h/db"),
            (
                "postgres://u:p/?#@x@h:1/db",
                "postgres://u:<redacted>@h:1/db",
            ),
            ("postgres://u@h/db", "postgres://u@h/db"),
            ("postgres://h/db", "postgres://h/db"),
            (
                "postgres://h/db?user=u&password=p&sslmode=require",
                "postgres://h/db?user=u&password=<redacted>&sslmode=require",
            ),
            ("not a url with p", "<redacted>"),
        ] {
            assert_eq!(redact_url(url), expected, "{url}");
        }
    }

    #[test]
    fn oauth_client() {
        let config = ok(&[
            (
                "STRATOS_OAUTH_CLIENT_ID",
                "https://stratos.example.com/client-metadata.json",
            ),
            ("STRATOS_OAUTH_CLIENT_NAME", "My Stratos"),
            (
                "STRATOS_OAUTH_LOGO_URI",
                "https://cdn.example/logo.png?s=64",
            ),
            ("STRATOS_OAUTH_TOS_URI", "https://example.com/tos"),
            ("STRATOS_OAUTH_POLICY_URI", "https://example.com/privacy"),
        ]);
        assert_eq!(config.oauth.client_name, "My Stratos");
        assert_eq!(
            config.oauth.logo_uri.as_ref().map(HttpUrl::as_str),
            Some("https://cdn.example/logo.png?s=64")
        );
        assert!(config.oauth.client_id.is_some());
        let found = problems(&[("STRATOS_OAUTH_TOS_URI", "tos.html")]);
        assert!(has_problem(&found, "STRATOS_OAUTH_TOS_URI", "http://"));
    }

    #[test]
    fn log_levels() {
        for level in [
            LogLevel::Fatal,
            LogLevel::Error,
            LogLevel::Warn,
            LogLevel::Info,
            LogLevel::Debug,
            LogLevel::Trace,
            LogLevel::Silent,
        ] {
            assert_eq!(ok(&[("LOG_LEVEL", level.as_str())]).log_level, level);
        }
        assert_eq!(LogLevel::Silent.filter_directive(), "off");
        assert_eq!(LogLevel::Fatal.filter_directive(), "error");
    }

    #[test]
    fn unknown_variables_become_warnings() {
        let config = ok(&[
            ("STRATOS_DEV_MOD", "true"),
            ("STRATOS_RETENTION_DAYS", "30"),
            ("STRATOS_SIGNING_KEY_HEX", "00"),
            ("STRATOS_COMPLETELY_DIFFERENT_THING", "x"),
            ("REDIS_HOST", "localhost"),
            ("HOME", "/root"),
        ]);
        let warnings = &config.warnings;
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("STRATOS_DEV_MOD is ignored; did you mean STRATOS_DEV_MODE?")),
            "{warnings:?}"
        );
        assert!(
            warnings
                .iter()
                .any(|w| w.starts_with("STRATOS_RETENTION_DAYS "))
        );
        assert!(
            warnings
                .iter()
                .any(|w| w.starts_with("STRATOS_SIGNING_KEY_HEX "))
        );
        assert!(
            warnings
                .iter()
                .any(|w| w == "unknown variable STRATOS_COMPLETELY_DIFFERENT_THING is ignored")
        );
        assert!(!warnings.iter().any(|w| w.contains("REDIS_HOST")));
        assert!(!warnings.iter().any(|w| w.contains("HOME")));
        // The typo did not switch anything on.
        assert!(!config.auth.dev_mode);
    }

    #[test]
    fn the_parser_reads_exactly_the_documented_variables() {
        let vars = HashMap::new();
        let mut r = Reader {
            vars: &vars,
            read: BTreeSet::new(),
            problems: Vec::new(),
            warnings: Vec::new(),
        };
        let _ = read_config(&mut r);
        let documented: BTreeSet<&str> = VARIABLES.iter().copied().collect();
        assert_eq!(r.read, documented);
        assert_eq!(documented.len(), VARIABLES.len(), "duplicate in VARIABLES");
        for (retired, _) in RETIRED {
            assert!(!documented.contains(retired));
        }
    }

    #[test]
    fn env_example_and_docs_cover_every_variable() {
        let example = include_str!("../.env.example");
        let docs = include_str!("../../../docs/configuration.md");
        for name in VARIABLES {
            assert!(
                example
                    .lines()
                    .any(|l| l.starts_with(&format!("{name}="))
                        || l.starts_with(&format!("# {name}="))),
                "{name} missing from .env.example"
            );
            assert!(
                docs.contains(&format!("| `{name}` |")),
                "{name} missing from docs/configuration.md"
            );
        }
        // Uncommenting every line of the example must change nothing: its defaults are the
        // parser's.
        let pairs = example.lines().filter_map(|line| {
            let line = line.strip_prefix("# ").unwrap_or(line);
            let (name, value) = line.split_once('=')?;
            VARIABLES.contains(&name).then_some((name, value))
        });
        let uncommented = Config::from_pairs(pairs).unwrap();
        let defaults = Config::from_pairs(std::iter::empty::<(String, String)>()).unwrap();
        assert_eq!(uncommented.redacted(), defaults.redacted());
    }

    #[test]
    fn from_env_reads_the_process_environment() {
        // The test process has no STRATOS_* variables of its own unless a developer exported
        // some; either way this must not panic, and on a clean environment it yields defaults.
        if std::env::vars().all(|(k, _)| !is_relevant(&k)) {
            let config = Config::from_env().unwrap();
            assert_eq!(config.port, 3100);
        }
    }

    #[test]
    fn edit_distance_basics() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }
}
