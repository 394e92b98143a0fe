//! The settings table: every variable the service reads, once. It drives parsing (each row's
//! parser and default), the start-up summary (each row's `show` and secrecy), the hints for
//! unknown variables and the variable tables of docs/configuration.md (`doc.rs`; a test fails
//! when the committed document differs).
//!
//! The rows are split by section over this file and `table_runtime.rs` only to keep each file
//! short; [`SECTIONS`] is the order of the documentation and of the summary.

use super::setting::{Default, Parser, Secrecy, Section, Setting, Shown};
use super::{BlobStorage, Config, ConnectionUrl, S3Credentials, StorageBackend};

use super::table_runtime::{AUTH, LIMITS, OAUTH, OUTBOUND, STREAM};

/// Every section, in the order of docs/configuration.md.
pub(super) const SECTIONS: &[Section] = &[
    IDENTITY, ENROLLMENT, STORAGE, BLOBS, LIMITS, AUTH, STREAM, OAUTH, OUTBOUND,
];

/// Every setting, in the order of docs/configuration.md.
pub(super) fn settings() -> impl Iterator<Item = &'static Setting> {
    SECTIONS.iter().flat_map(|section| section.settings.iter())
}

/// The row of `name`, if the service reads it.
pub(super) fn setting(name: &str) -> Option<&'static Setting> {
    settings().find(|s| s.name == name)
}

const COUNT: usize = {
    let mut count = 0;
    let mut i = 0;
    while i < SECTIONS.len() {
        count += SECTIONS[i].settings.len();
        i += 1;
    }
    count
};

const NAMES: [&str; COUNT] = {
    let mut names = [""; COUNT];
    let mut n = 0;
    let mut i = 0;
    while i < SECTIONS.len() {
        let mut j = 0;
        while j < SECTIONS[i].settings.len() {
            names[n] = SECTIONS[i].settings[j].name;
            n += 1;
            j += 1;
        }
        i += 1;
    }
    names
};

/// Every variable the service reads, in the order of `docs/configuration.md` (the names of the
/// settings table).
pub const VARIABLES: &[&str] = &NAMES;

/// Names the TypeScript service or its documentation used that this service does not read, with
/// what to do instead. Reported as warnings so an old `.env` still starts.
pub(super) const RETIRED: &[(&str, &str)] = &[
    (
        "STRATOS_RETENTION_DAYS",
        "was never used by the reference service and is not read",
    ),
    (
        "STRATOS_SIGNING_KEY_HEX",
        "is not read: the service key is {STRATOS_DATA_DIR}/service_key (a TS original's \
         {STRATOS_DATA_DIR}/signing_key is adopted at the first start) or STRATOS_SERVICE_KEY_FILE",
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

/// The Valkey URL schemes the adapter's client accepts.
pub(super) const VALKEY_SCHEMES: &[&str] = &[
    "redis",
    "rediss",
    "valkey",
    "valkeys",
    "unix",
    "redis+unix",
    "valkey+unix",
];

const IDENTITY: Section = Section {
    title: "Identity and network",
    note: None,
    settings: &[
        Setting {
            name: "STRATOS_SERVICE_DID",
            parser: Parser::Did,
            default: Default::Derived("`did:web` of `STRATOS_PUBLIC_URL`"),
            secret: Secrecy::Public,
            doc: "The service DID: qualifies boundaries, is the JWT `aud`, the `id` of \
                  `/.well-known/did.json`, and the stub `source.service` prefix. When unset it is \
                  derived from the public URL: `http://localhost:3100` → \
                  `did:web:localhost%3A3100`, `https://stratos.example.com` → \
                  `did:web:stratos.example.com`. A public URL with a path or an IPv6 host cannot \
                  be turned into a `did:web`, so this variable must then be set. Recorded in \
                  `{STRATOS_DATA_DIR}/service_did` at the first start; a later start with another \
                  DID is refused until `stratos migrate-service-did` (see the rules above).",
            show: |c| Shown::of(&c.service_did),
        },
        Setting {
            name: "STRATOS_SERVICE_FRAGMENT",
            parser: Parser::Fragment,
            default: Default::Value("atproto_pns"),
            secret: Secrecy::Public,
            doc: "Fragment of the service entry in the DID document and in stub records (no \
                  leading `#`).",
            show: |c| Shown::of(&c.service_fragment),
        },
        Setting {
            name: "STRATOS_BIND",
            parser: Parser::Ip,
            default: Default::Value("127.0.0.1"),
            secret: Secrecy::Public,
            doc: "Listen address. Use `0.0.0.0` or `::` to listen on every interface. Host names \
                  are not accepted.",
            show: |c| Shown::of(c.bind),
        },
        Setting {
            name: "STRATOS_PORT",
            parser: Parser::Int {
                min: 1,
                max: 65_535,
            },
            default: Default::Value("3100"),
            secret: Secrecy::Public,
            doc: "Listen port. Without `STRATOS_PUBLIC_URL` and `STRATOS_SERVICE_DID` it also \
                  picks the service DID, so to move an existing data directory to another port, \
                  set `STRATOS_SERVICE_DID` to its recorded DID.",
            show: |c| Shown::of(c.port),
        },
        Setting {
            name: "STRATOS_PUBLIC_URL",
            parser: Parser::BaseUrl,
            default: Default::Derived("`http://localhost:{STRATOS_PORT}`"),
            secret: Secrecy::Public,
            doc: "Public base URL: DID document `serviceEndpoint`, OAuth client id and redirect, \
                  DPoP `htu` base, the enrollment record's `service`.",
            show: |c| Shown::of(&c.public_url),
        },
    ],
};

const ENROLLMENT: Section = Section {
    title: "Boundaries and enrollment",
    note: None,
    settings: &[
        Setting {
            name: "STRATOS_ALLOWED_DOMAINS",
            parser: Parser::List,
            default: Default::Unset,
            secret: Secrecy::Public,
            doc: "The boundaries the service offers. Bare names are qualified with the service \
                  DID (`eng` → `did:web:x/eng`). Already-qualified entries must belong to this \
                  service. Empty means no record can be written.",
            show: |c| Shown::list(&c.allowed_boundaries),
        },
        Setting {
            name: "STRATOS_AUTO_ENROLL_DOMAINS",
            parser: Parser::List,
            default: Default::Unset,
            secret: Secrecy::Public,
            doc: "The boundaries a new enrollee gets. Each must be in `STRATOS_ALLOWED_DOMAINS`. \
                  Empty means all offered boundaries.",
            show: |c| Shown::list(&c.auto_enroll_boundaries),
        },
        Setting {
            name: "STRATOS_ENROLLMENT_MODE",
            parser: Parser::Choice(&["open", "allowlist", "closed"]),
            default: Default::Value("allowlist"),
            secret: Secrecy::Public,
            doc: "Who may enroll: anyone; only the accounts the next three variables admit; or \
                  nobody new (existing enrollments keep working). With `allowlist` and none of \
                  the next three set, no account can enroll itself; only the operator can enroll \
                  accounts (`zone.stratos.admin.enrollActor`), and without \
                  `STRATOS_ADMIN_PASSWORD` **nobody can enroll**.",
            show: |c| Shown::of(c.enrollment.mode.as_str()),
        },
        Setting {
            name: "STRATOS_ALLOWED_DIDS",
            parser: Parser::DidList,
            default: Default::Unset,
            secret: Secrecy::Public,
            doc: "DIDs admitted in `allowlist` mode.",
            show: |c| Shown::list(&c.enrollment.allowed_dids),
        },
        Setting {
            name: "STRATOS_ALLOWED_PDS_ENDPOINTS",
            parser: Parser::BaseUrlList,
            default: Default::Unset,
            secret: Secrecy::Public,
            doc: "Accounts hosted on these PDSes are admitted in `allowlist` mode.",
            show: |c| Shown::list(&c.enrollment.allowed_pds_endpoints),
        },
        Setting {
            name: "STRATOS_ALLOW_LIST_URI",
            parser: Parser::Url,
            default: Default::Unset,
            secret: Secrecy::Public,
            doc: "External allow-list (one DID per line), fetched at startup and every 10 \
                  minutes.",
            show: |c| Shown::opt(c.enrollment.allow_list_uri.as_ref()),
        },
        Setting {
            name: "STRATOS_ALLOW_LIST_BOOTSTRAP_NAME",
            parser: Parser::Token,
            default: Default::Unset,
            secret: Secrecy::Public,
            doc: "Valkey set the external allow-list is copied into, shared across instances. \
                  Needs `STRATOS_VALKEY_URL`.",
            show: |c| Shown::opt(c.enrollment.allow_list_bootstrap_name.as_ref()),
        },
        Setting {
            name: "STRATOS_VALKEY_URL",
            parser: Parser::Connection(VALKEY_SCHEMES),
            default: Default::Unset,
            secret: Secrecy::PasswordInUrl,
            doc: "Valkey/Redis connection: `redis://` in the clear, `rediss://` over TLS \
                  (rustls; the server's certificate is checked against the system's roots, or \
                  `STRATOS_VALKEY_CA_FILE`).",
            show: |c| Shown::opt(c.valkey_url.as_ref().map(ConnectionUrl::expose).as_ref()),
        },
        Setting {
            name: "STRATOS_VALKEY_CA_FILE",
            parser: Parser::Path,
            default: Default::Derived("the system's root certificates"),
            secret: Secrecy::Public,
            doc: "PEM file of the CA that signed the `rediss://` server's certificate (a \
                  private CA). Read at start.",
            show: |c| {
                Shown::opt(
                    c.valkey_ca_file
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .as_ref(),
                )
            },
        },
    ],
};

/// The Postgres settings of a configuration on Postgres.
fn postgres(c: &Config) -> Option<(&ConnectionUrl, u32, u32)> {
    match &c.storage {
        StorageBackend::Postgres {
            url,
            actor_pool,
            admin_pool,
        } => Some((url, *actor_pool, *admin_pool)),
        StorageBackend::Sqlite { .. } => None,
    }
}

/// The summary shows the URL built from the `STRATOS_PG_*` parts as `STRATOS_POSTGRES_URL`.
fn in_postgres_url(_: &Config) -> Shown {
    Shown::Skip
}

const STORAGE: Section = Section {
    title: "Storage",
    note: None,
    settings: &[
        Setting {
            name: "STORAGE_BACKEND",
            parser: Parser::Choice(&["sqlite", "postgres"]),
            default: Default::Value("sqlite"),
            secret: Secrecy::Public,
            doc: "Where repositories, enrollments and OAuth state live.",
            show: |c| Shown::of(c.storage.as_str()),
        },
        Setting {
            name: "STRATOS_DATA_DIR",
            parser: Parser::Path,
            default: Default::Value("./data"),
            secret: Secrecy::Public,
            doc: "Service signing key (`service_key`), the recorded service DID (`service_did`) \
                  and assets. With SQLite it also holds the database files; with local blob \
                  storage, `blobs/`. Relative paths are resolved against the working directory.",
            show: |c| Shown::of(c.data_dir.display()),
        },
        Setting {
            name: "STRATOS_SERVICE_KEY_FILE",
            parser: Parser::Path,
            default: Default::Derived("`{STRATOS_DATA_DIR}/service_key`"),
            secret: Secrecy::Public,
            doc: "The service's secp256k1 key (64 hex characters): it signs attestations and \
                  derives the DPoP nonce and OAuth sealing keys, so every instance of one \
                  service must use the same file. The file must exist when this is set. \
                  Unset: `{STRATOS_DATA_DIR}/service_key`, created at the first start — or, when \
                  the data directory is the TS original's, adopted from its `signing_key` (raw \
                  32 bytes), so existing attestations stay valid.",
            show: |c| match &c.service_key_file {
                Some(p) => Shown::of(p.display()),
                None => Shown::UnsetMeaning("{STRATOS_DATA_DIR}/service_key"),
            },
        },
        Setting {
            name: "STRATOS_SQLITE_DURABILITY",
            parser: Parser::Choice(&["durable", "relaxed"]),
            default: Default::Value("durable"),
            secret: Secrecy::Public,
            doc: "`durable`: nothing acknowledged is lost (WAL, `synchronous=FULL`). `relaxed`: a \
                  power loss may lose the last acknowledged commits, but the database stays \
                  consistent (`synchronous=NORMAL`).",
            show: |c| match &c.storage {
                StorageBackend::Sqlite { durability, .. } => Shown::of(durability.as_str()),
                StorageBackend::Postgres { .. } => Shown::Skip,
            },
        },
        Setting {
            name: "STRATOS_POSTGRES_URL",
            parser: Parser::Connection(&["postgres", "postgresql"]),
            default: Default::Unset,
            secret: Secrecy::PasswordInUrl,
            doc: "Postgres connection; takes precedence over the parts below. With \
                  `STORAGE_BACKEND=postgres`, either this or `STRATOS_PG_HOST` is required. \
                  Otherwise startup fails with \"STRATOS_POSTGRES_URL is required when \
                  STORAGE_BACKEND=postgres\". Never echoed in errors.",
            show: |c| postgres(c).map_or(Shown::Skip, |(url, _, _)| Shown::of(url.expose())),
        },
        Setting {
            name: "STRATOS_PG_HOST",
            parser: Parser::PgHost,
            default: Default::Unset,
            secret: Secrecy::Public,
            doc: "When set (and there is no URL), the URL \
                  `postgres://user[:password]@host:port/db?sslmode=…` is built from the \
                  `STRATOS_PG_*` parts, with each part percent-encoded.",
            show: in_postgres_url,
        },
        Setting {
            name: "STRATOS_PG_PORT",
            parser: Parser::Int {
                min: 1,
                max: 65_535,
            },
            default: Default::Value("5432"),
            secret: Secrecy::Public,
            doc: "Postgres port (built URL).",
            show: in_postgres_url,
        },
        Setting {
            name: "STRATOS_PG_USERNAME",
            parser: Parser::Text,
            default: Default::Value("stratos"),
            secret: Secrecy::Public,
            doc: "Postgres user (built URL).",
            show: in_postgres_url,
        },
        Setting {
            name: "STRATOS_PG_PASSWORD",
            parser: Parser::Secret,
            default: Default::Unset,
            secret: Secrecy::Secret,
            doc: "Postgres password (built URL).",
            show: in_postgres_url,
        },
        Setting {
            name: "STRATOS_PG_DBNAME",
            parser: Parser::Text,
            default: Default::Value("stratos"),
            secret: Secrecy::Public,
            doc: "Postgres database (built URL).",
            show: in_postgres_url,
        },
        Setting {
            name: "STRATOS_PG_SSLMODE",
            parser: Parser::Choice(&[
                "disable",
                "allow",
                "prefer",
                "require",
                "verify-ca",
                "verify-full",
            ]),
            default: Default::Value("require"),
            secret: Secrecy::Public,
            doc: "`sslmode` of the built URL, with libpq's meaning (rustls): `require` \
                  encrypts without checking the certificate, `verify-ca` checks it against the \
                  roots, `verify-full` also checks the host name; `prefer` tries TLS first.",
            show: in_postgres_url,
        },
        Setting {
            name: "STRATOS_PG_SSLROOTCERT",
            parser: Parser::Path,
            default: Default::Derived("the bundled web PKI roots"),
            secret: Secrecy::Public,
            doc: "PEM file of the CA for `verify-ca` / `verify-full` (`sslrootcert` of the \
                  built URL; with `STRATOS_POSTGRES_URL`, write `sslrootcert=` in the URL).",
            show: in_postgres_url,
        },
        Setting {
            name: "STRATOS_PG_ACTOR_POOL_SIZE",
            parser: Parser::Int {
                min: 1,
                max: 10_000,
            },
            default: Default::Value("200"),
            secret: Secrecy::Public,
            doc: "Connection pool for actor repositories.",
            show: |c| postgres(c).map_or(Shown::Skip, |(_, actor, _)| Shown::of(actor)),
        },
        Setting {
            name: "STRATOS_PG_ADMIN_POOL_SIZE",
            parser: Parser::Int {
                min: 1,
                max: 10_000,
            },
            default: Default::Value("3"),
            secret: Secrecy::Public,
            doc: "Connection pool for the service tables.",
            show: |c| postgres(c).map_or(Shown::Skip, |(_, _, admin)| Shown::of(admin)),
        },
        Setting {
            name: "STRATOS_BLOCK_CACHE_SIZE",
            parser: Parser::Int {
                min: 1,
                max: 100_000_000,
            },
            default: Default::Value("50000"),
            secret: Secrecy::Public,
            doc: "Entries of the shared repository block (MST node) cache.",
            show: |c| Shown::of(c.block_cache_size),
        },
    ],
};

/// The S3 settings of a configuration on S3: bucket, region, endpoint, credentials.
type S3View<'a> = (
    &'a String,
    Option<&'a String>,
    Option<&'a super::HttpUrl>,
    Option<&'a S3Credentials>,
);

fn s3(c: &Config) -> Option<S3View<'_>> {
    match &c.blobs {
        BlobStorage::S3 {
            bucket,
            region,
            endpoint,
            credentials,
        } => Some((
            bucket,
            region.as_ref(),
            endpoint.as_ref(),
            credentials.as_ref(),
        )),
        BlobStorage::Local { .. } => None,
    }
}

const BLOBS: Section = Section {
    title: "Blobs",
    note: None,
    settings: &[
        Setting {
            name: "STRATOS_BLOB_STORAGE",
            parser: Parser::Choice(&["local", "s3"]),
            default: Default::Value("local"),
            secret: Secrecy::Public,
            doc: "`local`: files under `{STRATOS_DATA_DIR}/blobs`. `s3`: an S3 bucket.",
            show: |c| Shown::of(c.blobs.as_str()),
        },
        Setting {
            name: "STRATOS_S3_BUCKET",
            parser: Parser::Bucket,
            default: Default::Unset,
            secret: Secrecy::Public,
            doc: "Required with `s3`.",
            show: |c| s3(c).map_or(Shown::Skip, |(bucket, ..)| Shown::of(bucket)),
        },
        Setting {
            name: "STRATOS_S3_REGION",
            parser: Parser::Text,
            default: Default::Unset,
            secret: Secrecy::Public,
            doc: "S3 region. Unset leaves it to the S3 client's defaults.",
            show: |c| s3(c).map_or(Shown::Skip, |(_, region, ..)| Shown::opt(region)),
        },
        Setting {
            name: "STRATOS_S3_ENDPOINT",
            parser: Parser::BaseUrl,
            default: Default::Unset,
            secret: Secrecy::Public,
            doc: "Endpoint of a self-hosted S3 (MinIO, Garage, …). Unset means AWS.",
            show: |c| s3(c).map_or(Shown::Skip, |(_, _, endpoint, _)| Shown::opt(endpoint)),
        },
        Setting {
            name: "STRATOS_S3_ACCESS_KEY",
            parser: Parser::Secret,
            default: Default::Unset,
            secret: Secrecy::Secret,
            doc: "Explicit S3 credentials. Set both keys or neither. With neither, the AWS \
                  environment/profile chain is used.",
            show: |c| {
                s3(c).map_or(Shown::Skip, |(.., keys)| {
                    Shown::secret(keys.map(|k| &k.access_key))
                })
            },
        },
        Setting {
            name: "STRATOS_S3_SECRET_KEY",
            parser: Parser::Secret,
            default: Default::Unset,
            secret: Secrecy::Secret,
            doc: "See `STRATOS_S3_ACCESS_KEY`.",
            show: |c| {
                s3(c).map_or(Shown::Skip, |(.., keys)| {
                    Shown::secret(keys.map(|k| &k.secret_key))
                })
            },
        },
    ],
};
