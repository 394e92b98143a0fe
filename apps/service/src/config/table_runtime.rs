//! The settings table, continued (see `table.rs`): limits, authentication, the sync stream, the
//! OAuth client and outbound identity resolution.

use super::setting::{Default, Parser, Secrecy, Section, Setting, Shown};

/// The largest byte-size limit: 1 TiB, far above any real request, and still a `usize` on 64-bit
/// targets.
const MAX_BYTES: u64 = 1 << 40;
/// A day in milliseconds, the longest rate-limit window or cooldown.
const DAY_MS: u64 = 86_400_000;

pub(super) const LIMITS: Section = Section {
    title: "Limits",
    note: None,
    settings: &[
        Setting {
            name: "STRATOS_IMPORT_MAX_BYTES",
            parser: Parser::ByteSize { max: MAX_BYTES },
            default: Default::Value("268435456"),
            secret: Secrecy::Public,
            doc: "Largest repository CAR `zone.stratos.repo.importRepo` accepts.",
            show: |c| Shown::of(c.limits.import_max_bytes),
        },
        Setting {
            name: "STRATOS_MAX_BODY_BYTES",
            parser: Parser::ByteSize { max: MAX_BYTES },
            default: Default::Value("1048576"),
            secret: Secrecy::Public,
            doc: "Largest JSON request body.",
            show: |c| Shown::of(c.limits.max_body_bytes),
        },
        Setting {
            name: "STRATOS_BLOB_MAX_BYTES",
            parser: Parser::ByteSize { max: MAX_BYTES },
            default: Default::Value("5242880"),
            secret: Secrecy::Public,
            doc: "Largest blob `com.atproto.repo.uploadBlob` accepts (413 above). Uploads no \
                  record references are deleted after 24 h. The lexicon fields bound blobs \
                  further (images 2,000,000 bytes; `app.bsky.embed.video` allows 300,000,000, so \
                  videos need a higher limit than the default).",
            show: |c| Shown::of(c.limits.blob_max_bytes),
        },
        Setting {
            name: "STRATOS_BODY_TIMEOUT_SECS",
            parser: Parser::Int { min: 1, max: 3_600 },
            default: Default::Value("30"),
            secret: Secrecy::Public,
            doc: "A request body must arrive whole within this time plus one second per MiB of \
                  its announced length (so a 256 MiB import gets 286 s), or the request answers \
                  408 `RequestTimeout` and the connection is closed (a client that announces a \
                  body and then stalls cannot hold a connection forever).",
            show: |c| Shown::of(c.limits.body_timeout_secs),
        },
        Setting {
            name: "STRATOS_MAX_BODIES_PER_IP",
            parser: Parser::Int {
                min: 0,
                max: 1_000_000,
            },
            default: Default::Value("32"),
            secret: Secrecy::Public,
            doc: "Request bodies that may be *arriving* at once from one client address; more \
                  answer 429 `RateLimitExceeded` at once, without reading the body. A body counts \
                  only while it is being received, not while its request is handled, so clients \
                  that send whole bodies (a proxy, a load generator) do not meet the cap; clients \
                  that trickle bodies do. `0` disables the per-address cap.",
            show: |c| Shown::of(c.limits.max_bodies_per_ip),
        },
        Setting {
            name: "STRATOS_MAX_BODIES",
            parser: Parser::Int {
                min: 1,
                max: 1_000_000,
            },
            default: Default::Value("1024"),
            secret: Secrecy::Public,
            doc: "Request bodies that may be arriving at once in the whole process; more answer \
                  503 `ServiceUnavailable` at once.",
            show: |c| Shown::of(c.limits.max_bodies),
        },
        Setting {
            name: "STRATOS_IMPORT_CONCURRENCY",
            parser: Parser::Int { min: 1, max: 64 },
            default: Default::Value("1"),
            secret: Secrecy::Public,
            doc: "Repository imports (`importRepo`) running at once; more answer 429 at once. \
                  Each import holds its CAR plus ~1.1× its size at worst (see operators.md).",
            show: |c| Shown::of(c.limits.import_concurrency),
        },
        Setting {
            name: "STRATOS_WRITE_RATE_MAX_WRITES",
            parser: Parser::Int {
                min: 1,
                max: 1_000_000,
            },
            default: Default::Value("300"),
            secret: Secrecy::Public,
            doc: "Writes allowed per account per window. An `importRepo` costs a tenth of this, \
                  whatever its outcome.",
            show: |c| Shown::of(c.write_rate.max_writes),
        },
        Setting {
            name: "STRATOS_WRITE_RATE_WINDOW_MS",
            parser: Parser::Int {
                min: 1,
                max: DAY_MS,
            },
            default: Default::Value("60000"),
            secret: Secrecy::Public,
            doc: "Rate-limit window (ms).",
            show: |c| Shown::of(c.write_rate.window_ms),
        },
        Setting {
            name: "STRATOS_WRITE_RATE_COOLDOWN_MS",
            parser: Parser::Int {
                min: 0,
                max: DAY_MS,
            },
            default: Default::Value("10000"),
            secret: Secrecy::Public,
            doc: "How long an account that exceeded the limit waits (ms).",
            show: |c| Shown::of(c.write_rate.cooldown_ms),
        },
        Setting {
            name: "STRATOS_WRITE_RATE_COOLDOWN_JITTER_MS",
            parser: Parser::Int {
                min: 0,
                max: DAY_MS,
            },
            default: Default::Value("1000"),
            secret: Secrecy::Public,
            doc: "Random extra cooldown (ms), so throttled clients do not retry in lockstep.",
            show: |c| Shown::of(c.write_rate.cooldown_jitter_ms),
        },
    ],
};

pub(super) const AUTH: Section = Section {
    title: "Authentication",
    note: None,
    settings: &[
        Setting {
            name: "STRATOS_DPOP_REQUIRE_NONCE",
            parser: Parser::Bool,
            default: Default::Value("true"),
            secret: Secrecy::Public,
            doc: "Require server-issued DPoP nonces.",
            show: |c| Shown::of(c.auth.dpop_require_nonce),
        },
        Setting {
            name: "STRATOS_DEV_MODE",
            parser: Parser::Bool,
            default: Default::Value("false"),
            secret: Secrecy::Public,
            doc: "Accept `Authorization: Bearer <did>` with no cryptography, and show error \
                  details. Only allowed with a loopback `STRATOS_BIND` (`127.0.0.1`, `::1`). Any \
                  other bind address is a startup error (\"dev mode only binds to loopback\").",
            show: |c| Shown::of(c.auth.dev_mode),
        },
        Setting {
            name: "STRATOS_ADMIN_PASSWORD",
            parser: Parser::Secret,
            default: Default::Unset,
            secret: Secrecy::Secret,
            doc: "Password for the admin endpoints (Basic or Bearer). Unset or empty disables \
                  them: always 401 `AuthenticationRequired`, with a message naming this variable. \
                  Or `STRATOS_ADMIN_PASSWORD_FILE`: a file holding it (a container secret).",
            show: |c| match &c.auth.admin_password {
                Some(password) => Shown::of(password.expose()),
                None => Shown::UnsetMeaning("admin endpoints disabled"),
            },
        },
        Setting {
            name: "STRATOS_SYNC_TOKEN",
            parser: Parser::Secret,
            default: Default::Unset,
            secret: Secrecy::Secret,
            doc: "Static token, sent as the `syncToken` query parameter of \
                  `zone.stratos.sync.subscribeRecords`, that lets a trusted service (the indexer) \
                  read every stream: the service-level one and every account's. Compared in \
                  constant time. Or `STRATOS_SYNC_TOKEN_FILE`: a file holding it.",
            show: |c| Shown::secret(c.auth.sync_token.as_ref()),
        },
        Setting {
            name: "STRATOS_SERVICE_AUTH_MAX_LIFETIME_SECS",
            parser: Parser::Int {
                min: 60,
                max: 86_400,
            },
            default: Default::Value("3600"),
            secret: Secrecy::Public,
            doc: "Longest lifetime accepted for a service-auth JWT: `exp` at most this far past \
                  `iat` (or past now when the token has no `iat`), plus the clock skew. `exp` and \
                  `iat` must also be integers below 2^53.",
            show: |c| Shown::of(c.auth.service_auth_max_lifetime_secs),
        },
    ],
};

pub(super) const STREAM: Section = Section {
    title: "Sync stream (`zone.stratos.sync.subscribeRecords`)",
    note: Some(
        "With `STRATOS_VALKEY_URL` set, every instance announces its new events on the Valkey \
         channel `stratos:stream` and wakes its own subscribers on the other instances' \
         announcements (see docs/architecture.md, \"The sync stream\").",
    ),
    settings: &[
        Setting {
            name: "STRATOS_ALLOWED_APPVIEWS",
            parser: Parser::DidList,
            default: Default::Unset,
            secret: Secrecy::Public,
            doc: "Issuers whose service-auth JWTs (`aud` = the service DID, `lxm` = \
                  `zone.stratos.sync.subscribeRecords`, in `syncToken` or `Authorization: \
                  Bearer`) may read every stream, and export any repository with \
                  `zone.stratos.sync.getRepo` (a JWT with `lxm` = that method, in `syncToken` \
                  only). Any other issuer with a valid JWT reads only its own account's stream: \
                  a valid signature alone proves an identity, not trust.",
            show: |c| Shown::list(&c.stream.allowed_appviews),
        },
        Setting {
            name: "STRATOS_SYNC_HEARTBEAT_SECS",
            parser: Parser::Int { min: 1, max: 3_600 },
            default: Default::Value("30"),
            secret: Secrecy::Public,
            doc: "Ping interval. A connection that did not answer the previous ping with a pong \
                  is closed.",
            show: |c| Shown::of(c.stream.heartbeat_secs),
        },
        Setting {
            name: "STRATOS_SYNC_SEND_TIMEOUT_SECS",
            parser: Parser::Int { min: 1, max: 3_600 },
            default: Default::Value("10"),
            secret: Secrecy::Public,
            doc: "Each subscriber has an outgoing buffer of 64 frames or 4 MiB ahead of its \
                  socket, with room always kept for a last error frame. A subscriber whose buffer \
                  stays full for this long is cut off: after the frames already buffered it gets \
                  `#error ConsumerTooSlow` and a close (1008), which it reads when it reads \
                  again; a connection that then takes nothing for this long again is dropped. \
                  Memory per subscriber stays bounded.",
            show: |c| Shown::of(c.stream.send_timeout_secs),
        },
        Setting {
            name: "STRATOS_SYNC_LIVE_WINDOW",
            parser: Parser::Int {
                min: 1,
                max: 65_536,
            },
            default: Default::Value("256"),
            secret: Secrecy::Public,
            doc: "Events per account kept in memory for live subscribers. A subscriber that \
                  falls further behind catches up from the sequence log, then goes live again.",
            show: |c| Shown::of(c.stream.live_window),
        },
    ],
};

pub(super) const OAUTH: Section = Section {
    title: "OAuth client (enrollment)",
    note: None,
    settings: &[
        Setting {
            name: "STRATOS_OAUTH_CLIENT_ID",
            parser: Parser::Url,
            default: Default::Derived("`{STRATOS_PUBLIC_URL}/client-metadata.json`"),
            secret: Secrecy::Public,
            doc: "OAuth `client_id`. May have a query (loopback client ids do).",
            show: |c| Shown::opt(c.oauth.client_id.as_ref()),
        },
        Setting {
            name: "STRATOS_OAUTH_CLIENT_SECRET",
            parser: Parser::Key,
            default: Default::Unset,
            secret: Secrecy::Secret,
            doc: "Client private key. When set, the client authenticates with \
                  `private_key_jwt`. Or `STRATOS_OAUTH_CLIENT_SECRET_FILE`: a file holding it.",
            show: |c| Shown::secret(c.oauth.client_secret.as_ref()),
        },
        Setting {
            name: "STRATOS_OAUTH_CLIENT_NAME",
            parser: Parser::Text,
            default: Default::Value("Stratos Service"),
            secret: Secrecy::Public,
            doc: "Client name on the consent screen.",
            show: |c| Shown::of(&c.oauth.client_name),
        },
        Setting {
            name: "STRATOS_OAUTH_LOGO_URI",
            parser: Parser::Url,
            default: Default::Unset,
            secret: Secrecy::Public,
            doc: "Logo on the consent screen.",
            show: |c| Shown::opt(c.oauth.logo_uri.as_ref()),
        },
        Setting {
            name: "STRATOS_OAUTH_TOS_URI",
            parser: Parser::Url,
            default: Default::Unset,
            secret: Secrecy::Public,
            doc: "Terms of service link.",
            show: |c| Shown::opt(c.oauth.tos_uri.as_ref()),
        },
        Setting {
            name: "STRATOS_OAUTH_POLICY_URI",
            parser: Parser::Url,
            default: Default::Unset,
            secret: Secrecy::Public,
            doc: "Privacy policy link.",
            show: |c| Shown::opt(c.oauth.policy_uri.as_ref()),
        },
        Setting {
            name: "STRATOS_OAUTH_REDIRECT_ORIGINS",
            parser: Parser::BaseUrlList,
            default: Default::Unset,
            secret: Secrecy::Public,
            doc: "Applications `/oauth/authorize?redirect_uri=` may send the user back to, by \
                  origin (`https://app.example`). A `redirect_uri` elsewhere is refused (400), \
                  so the service is no open redirect; without one the callback answers JSON.",
            show: |c| Shown::list(&c.oauth.redirect_origins),
        },
    ],
};

pub(super) const OUTBOUND: Section = Section {
    title: "Identity resolution, User-Agent, logging",
    note: None,
    settings: &[
        Setting {
            name: "STRATOS_PLC_URL",
            parser: Parser::BaseUrl,
            default: Default::Value("https://plc.directory"),
            secret: Secrecy::Public,
            doc: "PLC directory for `did:plc` and the handle-resolution fallback. The operator's \
                  choice, so it may be on any address (loopback in tests).",
            show: |c| Shown::of(&c.plc_url),
        },
        Setting {
            name: "STRATOS_OUTBOUND_ALLOW_PRIVATE",
            parser: Parser::Bool,
            default: Default::Derived("the value of `STRATOS_DEV_MODE`"),
            secret: Secrecy::Public,
            doc: "Let fetches of URLs that callers choose — `did:web` documents, handles, and for \
                  a DPoP token the PDS's protected-resource metadata, the authorization server's \
                  metadata and its `jwks_uri` — reach private, loopback, link-local, CGNAT, \
                  unique-local, multicast, documentation and other non-public addresses. Off (the \
                  default outside dev mode), such targets are refused after DNS resolution, for \
                  IP literals and on every redirect hop, and these fetches ignore `HTTP(S)_PROXY` \
                  (through a proxy the rule could not see the address). Set it to `true` only \
                  when the PDSes and authorization servers you serve really live on a private \
                  network, or when an egress proxy enforces the rule instead; the service then \
                  warns at startup. Set it to `false` in dev mode to try the guard on loopback. \
                  See docs/auth.md, \"Outbound fetches\".",
            show: |c| Shown::of(c.outbound_allow_private),
        },
        Setting {
            name: "STRATOS_REPO_URL",
            parser: Parser::BaseUrl,
            default: Default::Value("http://localhost:3100"),
            secret: Secrecy::Public,
            doc: "Code repository URL named in the outbound User-Agent \
                  `Stratos/<version> (+<repo>; <contact>)`.",
            show: |c| Shown::of(&c.repo_url),
        },
        Setting {
            name: "STRATOS_OPERATOR_CONTACT",
            parser: Parser::HeaderText,
            default: Default::Derived("unset (`unknown` in the User-Agent)"),
            secret: Secrecy::Public,
            doc: "Operator contact named in the User-Agent.",
            show: |c| Shown::opt(c.operator_contact.as_ref()),
        },
        Setting {
            name: "LOG_LEVEL",
            parser: Parser::Choice(&["fatal", "error", "warn", "info", "debug", "trace", "silent"]),
            default: Default::Value("info"),
            secret: Secrecy::Public,
            doc: "Log level. `fatal` logs as `error`; `silent` turns logging off.",
            show: |c| Shown::of(c.log_level.as_str()),
        },
        Setting {
            name: "RUST_LOG",
            parser: Parser::Text,
            default: Default::Derived("unset: `LOG_LEVEL` for every module"),
            secret: Secrecy::Public,
            doc: "A `tracing` filter (`info,stratos::access=warn,sqlx=warn`, …); replaces \
                  `LOG_LEVEL` when set. Access-log lines have the target `stratos::access`.",
            show: |c| Shown::opt(c.log_filter.as_ref()),
        },
        Setting {
            name: "STRATOS_LOG_FORMAT",
            parser: Parser::Choice(&["text", "json"]),
            default: Default::Value("text"),
            secret: Secrecy::Public,
            doc: "`text` (one human-readable line per event) or `json` (one JSON object per \
                  line, with the request span's `trace_id`).",
            show: |c| Shown::of(c.log_format.as_str()),
        },
        Setting {
            name: "STRATOS_METRICS_PORT",
            parser: Parser::Int {
                min: 1,
                max: 65_535,
            },
            default: Default::Derived("unset: `/metrics` on `STRATOS_PORT`"),
            secret: Secrecy::Public,
            doc: "Serve `/metrics` on this port (on `STRATOS_METRICS_BIND`) instead of the \
                  service's: the service's port then answers 404 for it, so the figures need \
                  no rule at the TLS proxy.",
            show: |c| Shown::opt(c.metrics_addr.map(|a| a.port()).as_ref()),
        },
        Setting {
            name: "STRATOS_METRICS_BIND",
            parser: Parser::Ip,
            default: Default::Derived("`STRATOS_BIND`"),
            secret: Secrecy::Public,
            doc: "Listen address of `STRATOS_METRICS_PORT` (an interface only the monitoring \
                  network reaches, for instance). Ignored without `STRATOS_METRICS_PORT`.",
            show: |c| Shown::opt(c.metrics_addr.map(|a| a.ip()).as_ref()),
        },
    ],
};
