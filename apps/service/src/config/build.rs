//! Assembling a [`Config`]: every variable is parsed by its row of the settings table
//! (`parsed.rs`), then the rules that tie variables together are applied here (derived defaults, backend choices, dev
//! mode and the bind address, boundaries qualified with the service DID).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use stratos_domain::boundary::{Boundary, qualify_configured};
use stratos_domain::syntax::Did;

use super::parsed::Values;
use super::table::{RETIRED, VARIABLES, setting};
use super::values::{ConnectionUrl, HttpUrl, Problem};
use super::{
    AuthConfig, BlobStorage, Config, ConfigError, EnrollmentConfig, EnrollmentMode, Limits,
    LogFormat, LogLevel, OAuthClientConfig, S3Credentials, SqliteDurability, StorageBackend,
    StreamConfig, WriteRateLimit,
};

/// Secrets that may come from a file: `{NAME}_FILE` names a file whose content (without its
/// trailing line break) is the value — for container secrets, which are mounted as files.
pub(super) const FILE_SECRETS: &[&str] = &[
    "STRATOS_ADMIN_PASSWORD",
    "STRATOS_SYNC_TOKEN",
    "STRATOS_OAUTH_CLIENT_SECRET",
];

/// Replaces each `{NAME}_FILE` of [`FILE_SECRETS`] by `NAME` with the file's content. Both set,
/// or a file that cannot be read, is a problem naming the variable (never the content).
fn read_secret_files(
    vars: &HashMap<String, String>,
    problems: &mut Vec<Problem>,
) -> HashMap<String, String> {
    let mut out = vars.clone();
    for name in FILE_SECRETS {
        let file_var = format!("{name}_FILE");
        let Some(path) = vars.get(&file_var).filter(|p| !p.is_empty()) else {
            continue;
        };
        out.remove(&file_var);
        if vars.get(*name).is_some_and(|v| !v.is_empty()) {
            problems.push(Problem {
                variable: file_var,
                message: format!("set {name} or {name}_FILE, not both"),
            });
            continue;
        }
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let value = text
                    .strip_suffix("\r\n")
                    .or_else(|| text.strip_suffix('\n'))
                    .unwrap_or(&text);
                out.insert((*name).to_owned(), value.to_owned());
            }
            Err(e) => problems.push(Problem {
                variable: file_var,
                message: format!("cannot read {path}: {}", e.kind()),
            }),
        }
    }
    out
}

/// Parses `vars` (already filtered to the relevant names) into a configuration.
pub(super) fn parse(
    vars: &HashMap<String, String>,
    mut problems: Vec<Problem>,
) -> Result<Config, ConfigError> {
    let vars = &read_secret_files(vars, &mut problems);
    let mut v = Values::parse(vars, problems);
    let config = read_config(&mut v);
    v.warnings.extend(unknown_variable_warnings(vars));
    match config {
        Some(mut config) if v.problems.is_empty() => {
            config.warnings = v.warnings;
            Ok(config)
        }
        // `None` without a recorded problem would be a bug; still never start on it.
        _ if v.problems.is_empty() => Err(ConfigError::Invalid(vec![Problem {
            variable: "(configuration)".to_owned(),
            message: "could not be determined".to_owned(),
        }])),
        _ => Err(ConfigError::Invalid(v.problems)),
    }
}

/// Assembles the configuration; `None` when a value it cannot do without is invalid (the reason
/// is in `v.problems`).
pub(super) fn read_config(v: &mut Values) -> Option<Config> {
    // ---- network and identity
    let bind = v
        .ip("STRATOS_BIND")
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let port: u16 = v.int("STRATOS_PORT");
    // The reference defaulted to port 3100 here even when STRATOS_PORT moved the listener.
    let public_url = if v.is_set("STRATOS_PUBLIC_URL") {
        v.url("STRATOS_PUBLIC_URL")
    } else {
        derived_base_url(v, "STRATOS_PUBLIC_URL", &format!("http://localhost:{port}"))
    };
    let service_did = service_did(v, public_url.as_ref());
    let service_fragment = v.text("STRATOS_SERVICE_FRAGMENT").unwrap_or_default();

    // ---- boundaries and enrollment
    let (allowed_boundaries, auto_enroll_boundaries) = boundaries(v, service_did.as_ref());
    let enrollment = enrollment(v);
    let valkey_url = v.connection("STRATOS_VALKEY_URL");
    let valkey_ca_file = v.path("STRATOS_VALKEY_CA_FILE");
    if !v.is_set("STRATOS_VALKEY_URL") {
        v.warn_ignored(
            &["STRATOS_ALLOW_LIST_BOOTSTRAP_NAME"],
            "STRATOS_VALKEY_URL is not set",
        );
    }

    // ---- storage
    let data_dir = v
        .path("STRATOS_DATA_DIR")
        .unwrap_or_else(|| PathBuf::from("./data"));
    let service_key_file = v.path("STRATOS_SERVICE_KEY_FILE");
    let storage = storage(v, &data_dir);
    let block_cache_size: usize = v.int("STRATOS_BLOCK_CACHE_SIZE");
    let blobs = blobs(v, &data_dir);

    // ---- limits
    let limits = Limits {
        import_max_bytes: v.int("STRATOS_IMPORT_MAX_BYTES"),
        max_body_bytes: v.int("STRATOS_MAX_BODY_BYTES"),
        blob_max_bytes: v.int("STRATOS_BLOB_MAX_BYTES"),
        body_timeout_secs: v.int("STRATOS_BODY_TIMEOUT_SECS"),
        max_bodies_per_ip: v.int("STRATOS_MAX_BODIES_PER_IP"),
        max_bodies: v.int("STRATOS_MAX_BODIES"),
        import_concurrency: v.int("STRATOS_IMPORT_CONCURRENCY"),
    };
    let write_rate = WriteRateLimit {
        max_writes: v.int("STRATOS_WRITE_RATE_MAX_WRITES"),
        window_ms: v.int("STRATOS_WRITE_RATE_WINDOW_MS"),
        cooldown_ms: v.int("STRATOS_WRITE_RATE_COOLDOWN_MS"),
        cooldown_jitter_ms: v.int("STRATOS_WRITE_RATE_COOLDOWN_JITTER_MS"),
    };

    // ---- auth
    let auth = AuthConfig {
        dpop_require_nonce: v.bool("STRATOS_DPOP_REQUIRE_NONCE").unwrap_or(true),
        dev_mode: v.bool("STRATOS_DEV_MODE").unwrap_or(false),
        admin_password: v.secret("STRATOS_ADMIN_PASSWORD"),
        sync_token: v.secret("STRATOS_SYNC_TOKEN"),
        service_auth_max_lifetime_secs: v.int("STRATOS_SERVICE_AUTH_MAX_LIFETIME_SECS"),
    };
    enrollment_warning(v, &enrollment, &auth);
    if auth.dev_mode {
        if bind.is_loopback() {
            v.warnings.push(
                "STRATOS_DEV_MODE is on: `Authorization: Bearer <did>` is accepted without \
                 verification (loopback only)"
                    .to_owned(),
            );
        } else {
            // Dev mode authenticates anyone who names a DID; it must never be reachable from
            // another machine.
            v.problem(
                "STRATOS_DEV_MODE",
                format!("dev mode only binds to loopback, but STRATOS_BIND is {bind}"),
            );
        }
    }
    let stream = StreamConfig {
        allowed_appviews: v.dids("STRATOS_ALLOWED_APPVIEWS"),
        heartbeat_secs: v.int("STRATOS_SYNC_HEARTBEAT_SECS"),
        send_timeout_secs: v.int("STRATOS_SYNC_SEND_TIMEOUT_SECS"),
        live_window: v.int("STRATOS_SYNC_LIVE_WINDOW"),
    };
    let oauth = OAuthClientConfig {
        client_id: v.url("STRATOS_OAUTH_CLIENT_ID"),
        client_secret: v.secret("STRATOS_OAUTH_CLIENT_SECRET"),
        client_name: v.text("STRATOS_OAUTH_CLIENT_NAME").unwrap_or_default(),
        logo_uri: v.url("STRATOS_OAUTH_LOGO_URI"),
        tos_uri: v.url("STRATOS_OAUTH_TOS_URI"),
        policy_uri: v.url("STRATOS_OAUTH_POLICY_URI"),
        redirect_origins: v.urls("STRATOS_OAUTH_REDIRECT_ORIGINS"),
    };

    // ---- identity resolution, User-Agent, logging
    let plc_url = v.url("STRATOS_PLC_URL");
    // Development runs its PDS and friends on loopback; anywhere else, a URL a caller chose must
    // not reach the service's own network unless the operator says so.
    let outbound_allow_private = v
        .bool("STRATOS_OUTBOUND_ALLOW_PRIVATE")
        .unwrap_or(auth.dev_mode);
    if outbound_allow_private && !auth.dev_mode {
        v.warnings.push(
            "STRATOS_OUTBOUND_ALLOW_PRIVATE is on: DID documents, handles and access tokens can \
             make the service fetch private, loopback and link-local addresses"
                .to_owned(),
        );
    }
    let repo_url = v.url("STRATOS_REPO_URL");
    let operator_contact = v.text("STRATOS_OPERATOR_CONTACT");
    let log_filter = v.text("RUST_LOG").filter(|f| !f.trim().is_empty());
    if let Some(filter) = &log_filter
        && let Err(e) = tracing_subscriber::EnvFilter::try_new(filter)
    {
        v.problem("RUST_LOG", format!("not a tracing filter: {e}"));
    }
    let metrics_addr = if v.is_set("STRATOS_METRICS_PORT") {
        let metrics_port: u16 = v.int("STRATOS_METRICS_PORT");
        let metrics_bind = v.ip("STRATOS_METRICS_BIND").unwrap_or(bind);
        if metrics_port == port && (metrics_bind == bind || bind.is_unspecified()) {
            v.problem(
                "STRATOS_METRICS_PORT",
                "is the service's own port (STRATOS_PORT): choose another, or unset it to serve \
                 /metrics on the service's port",
            );
        }
        Some(SocketAddr::new(metrics_bind, metrics_port))
    } else {
        v.warn_ignored(&["STRATOS_METRICS_BIND"], "STRATOS_METRICS_PORT is not set");
        None
    };
    let log_format = v.choice(
        "STRATOS_LOG_FORMAT",
        &[("text", LogFormat::Text), ("json", LogFormat::Json)],
    );
    let log_level = v.choice(
        "LOG_LEVEL",
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
        enrollment: enrollment?,
        valkey_url,
        valkey_ca_file,
        data_dir,
        service_key_file,
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
        log_level: log_level?,
        log_filter,
        log_format: log_format?,
        metrics_addr,
        warnings: Vec::new(),
    })
}

/// A base URL computed from other settings (a `Default::Derived`).
fn derived_base_url(v: &mut Values, name: &'static str, url: &str) -> Option<HttpUrl> {
    match HttpUrl::parse_base(url) {
        Ok(url) => Some(url),
        Err(why) => {
            v.problem(name, format!("default {url:?} {why}"));
            None
        }
    }
}

/// The `did:web` a service at `url` has: the host, with `:port` percent-encoded when present.
pub(super) fn did_web_for(url: &HttpUrl) -> Result<Did, String> {
    if !url.is_origin() {
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

fn service_did(v: &mut Values, public_url: Option<&HttpUrl>) -> Option<Did> {
    const NAME: &str = "STRATOS_SERVICE_DID";
    let derived = public_url.map(did_web_for);
    if v.is_set(NAME) {
        // Invalid: already reported.
        let did = v.did(NAME)?;
        if let Some(Ok(from_url)) = &derived
            && did.method() == "web"
            && did != *from_url
        {
            v.warnings.push(format!(
                "{NAME} is {did} but STRATOS_PUBLIC_URL implies {from_url}: the did:web \
                 document will not be found at this service"
            ));
        }
        return Some(did);
    }
    v.used.insert(NAME);
    match derived {
        Some(Ok(did)) => Some(did),
        Some(Err(why)) => {
            v.problem(NAME, why);
            None
        }
        // The public URL is invalid and already reported.
        None => None,
    }
}

/// Qualifies each configured boundary on its own, so every bad entry is reported.
fn qualify_list(v: &mut Values, name: &'static str, service: Option<&Did>) -> Vec<Boundary> {
    let entries = v.list(name);
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
            Err(e) => v.problem(name, e.to_string()),
        }
    }
    out
}

fn boundaries(v: &mut Values, service: Option<&Did>) -> (Vec<Boundary>, Vec<Boundary>) {
    let allowed = qualify_list(v, "STRATOS_ALLOWED_DOMAINS", service);
    let auto = qualify_list(v, "STRATOS_AUTO_ENROLL_DOMAINS", service);
    for b in auto.iter().filter(|b| !allowed.contains(b)) {
        v.problem(
            "STRATOS_AUTO_ENROLL_DOMAINS",
            format!("{b} is not in STRATOS_ALLOWED_DOMAINS"),
        );
    }
    if allowed.is_empty() && service.is_some() {
        v.warnings.push(
            "STRATOS_ALLOWED_DOMAINS is empty: the service offers no boundaries, so no record can \
             be written"
                .to_owned(),
        );
    }
    (allowed, auto)
}

fn enrollment(v: &mut Values) -> Option<EnrollmentConfig> {
    let mode = v.choice(
        "STRATOS_ENROLLMENT_MODE",
        &[
            ("open", EnrollmentMode::Open),
            ("allowlist", EnrollmentMode::Allowlist),
            ("closed", EnrollmentMode::Closed),
        ],
    )?;
    let allowed_dids = v.dids("STRATOS_ALLOWED_DIDS");
    let allowed_pds_endpoints = v.urls("STRATOS_ALLOWED_PDS_ENDPOINTS");
    let allow_list_uri = v.url("STRATOS_ALLOW_LIST_URI");
    let allow_list_bootstrap_name = v.text("STRATOS_ALLOW_LIST_BOOTSTRAP_NAME");
    if mode != EnrollmentMode::Allowlist {
        v.warn_ignored(
            &[
                "STRATOS_ALLOWED_DIDS",
                "STRATOS_ALLOWED_PDS_ENDPOINTS",
                "STRATOS_ALLOW_LIST_URI",
            ],
            &format!("STRATOS_ENROLLMENT_MODE={}", mode.as_str()),
        );
    }
    Some(EnrollmentConfig {
        mode,
        allowed_dids,
        allowed_pds_endpoints,
        allow_list_uri,
        allow_list_bootstrap_name,
    })
}

/// The defaults are safe but inert: say who can enroll when the allow-list admits nobody.
fn enrollment_warning(v: &mut Values, enrollment: &Option<EnrollmentConfig>, auth: &AuthConfig) {
    let Some(enrollment) = enrollment else { return };
    if enrollment.mode != EnrollmentMode::Allowlist
        || !enrollment.allowed_dids.is_empty()
        || !enrollment.allowed_pds_endpoints.is_empty()
        || enrollment.allow_list_uri.is_some()
    {
        return;
    }
    // The policy governs accounts enrolling themselves; the operator's enrollActor does not go
    // through it, so "nobody" is only true without an admin password.
    let what = if auth.admin_password.is_some() {
        "accounts cannot enroll themselves (the enrollment policy admits nobody); the operator \
         can still enroll them with zone.stratos.admin.enrollActor"
    } else {
        "nobody can enroll: the enrollment policy admits nobody and the admin endpoints \
         (zone.stratos.admin.enrollActor) are off without STRATOS_ADMIN_PASSWORD"
    };
    v.warnings.push(format!(
        "STRATOS_ENROLLMENT_MODE=allowlist with no STRATOS_ALLOWED_DIDS, \
         STRATOS_ALLOWED_PDS_ENDPOINTS or STRATOS_ALLOW_LIST_URI: {what}"
    ));
}

const PG_PARTS: &[&str] = &[
    "STRATOS_PG_HOST",
    "STRATOS_PG_PORT",
    "STRATOS_PG_USERNAME",
    "STRATOS_PG_PASSWORD",
    "STRATOS_PG_DBNAME",
    "STRATOS_PG_SSLMODE",
    "STRATOS_PG_SSLROOTCERT",
];

fn storage(v: &mut Values, data_dir: &Path) -> Option<StorageBackend> {
    #[derive(Clone, Copy)]
    enum Kind {
        Sqlite,
        Postgres,
    }
    let kind = v.choice(
        "STORAGE_BACKEND",
        &[("sqlite", Kind::Sqlite), ("postgres", Kind::Postgres)],
    );
    let durability = v.choice(
        "STRATOS_SQLITE_DURABILITY",
        &[
            ("durable", SqliteDurability::Durable),
            ("relaxed", SqliteDurability::Relaxed),
        ],
    );
    let url = v.connection("STRATOS_POSTGRES_URL");
    let from_parts = postgres_from_parts(v);
    let actor_pool: u32 = v.int("STRATOS_PG_ACTOR_POOL_SIZE");
    let admin_pool: u32 = v.int("STRATOS_PG_ADMIN_POOL_SIZE");
    match kind? {
        Kind::Sqlite => {
            let mut postgres_only = vec![
                "STRATOS_POSTGRES_URL",
                "STRATOS_PG_ACTOR_POOL_SIZE",
                "STRATOS_PG_ADMIN_POOL_SIZE",
            ];
            postgres_only.extend_from_slice(PG_PARTS);
            v.warn_ignored(&postgres_only, "STORAGE_BACKEND=sqlite");
            Some(StorageBackend::Sqlite {
                data_dir: data_dir.to_path_buf(),
                durability: durability?,
            })
        }
        Kind::Postgres => {
            v.warn_ignored(&["STRATOS_SQLITE_DURABILITY"], "STORAGE_BACKEND=postgres");
            let url = match (url, from_parts) {
                (Some(url), _) => {
                    v.warn_ignored(PG_PARTS, "STRATOS_POSTGRES_URL is set");
                    url
                }
                (None, Some(url)) => url,
                (None, None) => {
                    if !v.is_set("STRATOS_POSTGRES_URL") && !v.is_set("STRATOS_PG_HOST") {
                        v.problem(
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

/// What percent-encoding leaves alone in the parts of a built Postgres URL: RFC 3986's
/// unreserved characters, so user names, passwords and database names with `@`, `:`, `/` or
/// spaces survive the trip through the URL.
const URL_PART: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `postgres://user[:password]@host:port/db?sslmode=…` from `STRATOS_PG_*`, when
/// `STRATOS_PG_HOST` is set. Every part is read (and validated) either way.
fn postgres_from_parts(v: &mut Values) -> Option<ConnectionUrl> {
    let host = v.text("STRATOS_PG_HOST");
    let port: u16 = v.int("STRATOS_PG_PORT");
    let user = v.text("STRATOS_PG_USERNAME").unwrap_or_default();
    let password = v.secret("STRATOS_PG_PASSWORD");
    let db = v.text("STRATOS_PG_DBNAME").unwrap_or_default();
    let sslmode = v.choice(
        "STRATOS_PG_SSLMODE",
        &[
            ("disable", "disable"),
            ("allow", "allow"),
            ("prefer", "prefer"),
            ("require", "require"),
            ("verify-ca", "verify-ca"),
            ("verify-full", "verify-full"),
        ],
    );
    let rootcert = v.path("STRATOS_PG_SSLROOTCERT");
    // Invalid host: already reported.
    let host = host?;
    let mut url = format!("postgres://{}", utf8_percent_encode(&user, URL_PART));
    if let Some(password) = &password {
        url.push(':');
        url.push_str(&utf8_percent_encode(password.expose(), URL_PART).to_string());
    }
    url.push_str(&format!(
        "@{host}:{port}/{}?sslmode={}",
        utf8_percent_encode(&db, URL_PART),
        sslmode?
    ));
    if let Some(path) = rootcert {
        url.push_str("&sslrootcert=");
        url.push_str(&utf8_percent_encode(&path.to_string_lossy(), URL_PART).to_string());
    }
    Some(ConnectionUrl(url))
}

const S3_VARIABLES: &[&str] = &[
    "STRATOS_S3_BUCKET",
    "STRATOS_S3_REGION",
    "STRATOS_S3_ENDPOINT",
    "STRATOS_S3_ACCESS_KEY",
    "STRATOS_S3_SECRET_KEY",
];

fn blobs(v: &mut Values, data_dir: &Path) -> Option<BlobStorage> {
    #[derive(Clone, Copy)]
    enum Kind {
        Local,
        S3,
    }
    let kind = v.choice(
        "STRATOS_BLOB_STORAGE",
        &[("local", Kind::Local), ("s3", Kind::S3)],
    );
    let bucket = v.text("STRATOS_S3_BUCKET");
    let region = v.text("STRATOS_S3_REGION");
    let endpoint = v.url("STRATOS_S3_ENDPOINT");
    let access_key = v.secret("STRATOS_S3_ACCESS_KEY");
    let secret_key = v.secret("STRATOS_S3_SECRET_KEY");
    match kind? {
        Kind::Local => {
            v.warn_ignored(S3_VARIABLES, "STRATOS_BLOB_STORAGE=local");
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
                    if !v.is_set("STRATOS_S3_SECRET_KEY") {
                        v.problem(
                            "STRATOS_S3_SECRET_KEY",
                            "is required when STRATOS_S3_ACCESS_KEY is set (set both or neither)",
                        );
                    }
                    None
                }
                (None, Some(_)) => {
                    if !v.is_set("STRATOS_S3_ACCESS_KEY") {
                        v.problem(
                            "STRATOS_S3_ACCESS_KEY",
                            "is required when STRATOS_S3_SECRET_KEY is set (set both or neither)",
                        );
                    }
                    None
                }
            };
            let Some(bucket) = bucket else {
                if !v.is_set("STRATOS_S3_BUCKET") {
                    v.problem(
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

/// Warnings for `STRATOS_*` variables the table does not have: retired names, and likely typos
/// with the closest known name (Levenshtein distance of at most 3).
pub(super) fn unknown_variable_warnings(vars: &HashMap<String, String>) -> Vec<String> {
    let mut unknown: Vec<&str> = vars
        .keys()
        .map(String::as_str)
        .filter(|name| name.starts_with("STRATOS_") && setting(name).is_none())
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
                .map(|known| (strsim::levenshtein(name, known), *known))
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
