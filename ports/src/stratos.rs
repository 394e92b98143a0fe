//! [`Stratos`]: one entry point that composes the use cases over the ports.
//!
//! An app (the service, an AppView that embeds Stratos, a test) builds one [`Stratos`] with
//! [`Stratos::builder`] from the service's identity, a [`Storage`] bundle from one storage
//! adapter, a blob store and an identity resolver; everything else has a production default. The
//! handle is cheap to clone and gives the record, blob, enrollment and sync-stream services and
//! the authentication of requests ([`Stratos::auth`]).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use stratos_domain::crypto::{KeyAlgorithm, Keypair};
//! use stratos_domain::syntax::{Datetime, Did};
//! use stratos_ports::Stratos;
//! use stratos_testkit::memory::{self, MemoryBlobStore, MemoryIdentity};
//!
//! let stratos = Stratos::builder(
//!     Did::parse("did:web:stratos.example")?,
//!     Keypair::generate(KeyAlgorithm::K256),
//! )
//! .storage(memory::storage())
//! .blob_store(Arc::new(MemoryBlobStore::new()))
//! .identity(Arc::new(MemoryIdentity::new()))
//! .boundaries(["general"])
//! .build()
//! .await?;
//! assert_eq!(stratos.public_url(), "https://stratos.example");
//! assert_eq!(stratos.boundaries()[0].as_str(), "did:web:stratos.example/general");
//! # Ok(())
//! # }
//! ```

use std::sync::Arc;
use std::time::Duration;

use stratos_domain::boundary::Boundary;
use stratos_domain::crypto::Keypair;
use stratos_domain::enrollment::{EnrollmentMode, EnrollmentPolicy};
use stratos_domain::lexicon::Catalog;
use stratos_domain::oauth::SealKey;
use stratos_domain::rate_limit::{DEFAULT_RATE_LIMIT, RateLimit};
use stratos_domain::syntax::{Datetime, Did};
use stratos_domain::write::WritePolicy;

use crate::auth::{AuthContext, AuthSettings, Authenticator};
use crate::blob_store::BlobStore;
use crate::block_cache::CachedBlocks;
use crate::enrollment_store::EnrollmentEvent;
use crate::env::{AllowList, AuthorizationServers, Clock, IdentityResolver, Notifier, SystemClock};
use crate::legacy_source::LegacySource;
use crate::pds_client::{AtprotoOAuthClient, PdsWriter};
use crate::storage::Storage;
use crate::usecases::UseCaseError;
use crate::usecases::delivery::{DeadLetters, Deliver, Delivery, DeliverySettings};
use crate::usecases::enrollment::{EnrollmentDeps, Enrollments};
use crate::usecases::legacy::{self, LegacyReport};
use crate::usecases::oauth::{OAuthDeps, OAuthEnrollment, RedirectPolicy};
use crate::usecases::records::{RecordDeps, Records};
use crate::usecases::stream::hub::{HubSettings, StreamHub};
use crate::usecases::stream::{CommitEvent, EventSink};
use crate::usecases::write_back::SessionWriteBack;

/// Blocks kept by the default block cache (the service's `STRATOS_BLOCK_CACHE_SIZE` default).
pub const DEFAULT_BLOCK_CACHE: usize = 50_000;

/// The default `#fragment` of the service's DID document entry that PDS stubs point at.
pub const DEFAULT_SERVICE_FRAGMENT: &str = "atproto_pns";

/// The default sync-stream settings (the service's `STRATOS_SYNC_*` defaults).
pub const DEFAULT_HUB_SETTINGS: HubSettings = HubSettings {
    live_window: 256,
    heartbeat: Duration::from_secs(30),
    send_timeout: Duration::from_secs(10),
};

/// Why [`StratosBuilder::build`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A required part was not given.
    #[error("Stratos::builder() needs {0}")]
    Missing(&'static str),
    /// A boundary name, the public URL or the lexicons are invalid.
    #[error("invalid {what}")]
    Invalid {
        /// What was invalid.
        what: &'static str,
        /// The rule that rejected it.
        #[source]
        source: stratos_domain::Error,
    },
    /// The storage could not be read (the enrollment log's position, for the stream).
    #[error("reading the storage")]
    Storage(#[source] crate::usecases::UseCaseError),
    /// The key that seals OAuth sessions could not be derived from the service key.
    #[error("deriving the OAuth sealing key")]
    SealKey(#[source] stratos_domain::oauth::OAuthError),
}

/// What [`StratosBuilder::oauth`] was given: the flows' client, the PDS writer, the redirects.
type OAuthParts = (
    Arc<dyn AtprotoOAuthClient>,
    Arc<dyn PdsWriter>,
    RedirectPolicy,
);

/// Builds a [`Stratos`]; see [`Stratos::builder`].
#[must_use = "a builder does nothing until `build` is called"]
pub struct StratosBuilder {
    service_did: Did,
    service_key: Keypair,
    public_url: Option<String>,
    service_fragment: String,
    storage: Option<Storage>,
    blobs: Option<Arc<dyn BlobStore>>,
    identity: Option<Arc<dyn IdentityResolver>>,
    authorization_servers: Option<Arc<dyn AuthorizationServers>>,
    auth: AuthSettings,
    allow_list: Option<Arc<dyn AllowList>>,
    clock: Arc<dyn Clock>,
    notifier: Option<Arc<dyn Notifier>>,
    boundaries: Vec<String>,
    policy: Option<EnrollmentPolicy>,
    rate_limit: RateLimit,
    block_cache: usize,
    stream: HubSettings,
    catalog: Option<Catalog>,
    oauth: Option<OAuthParts>,
}

impl std::fmt::Debug for StratosBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StratosBuilder")
            .field("service_did", &self.service_did)
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

impl StratosBuilder {
    /// The public base URL of the service (the `service` of enrollment records). Default: for a
    /// `did:web` service, `https://` and its host; other DIDs must set it.
    pub fn public_url(mut self, url: impl Into<String>) -> Self {
        self.public_url = Some(url.into());
        self
    }

    /// The `#fragment` of the service entry in the service's DID document that PDS stubs name
    /// (default [`DEFAULT_SERVICE_FRAGMENT`]).
    pub fn service_fragment(mut self, fragment: impl Into<String>) -> Self {
        self.service_fragment = fragment.into();
        self
    }

    /// The storage bundle (required): from `stratos_sqlite::open_storage`,
    /// `stratos_postgres::connect_storage` or `stratos_testkit::memory::storage`.
    pub fn storage(mut self, storage: Storage) -> Self {
        self.storage = Some(storage);
        self
    }

    /// The blob store (required).
    pub fn blob_store(mut self, blobs: Arc<dyn BlobStore>) -> Self {
        self.blobs = Some(blobs);
        self
    }

    /// Resolves the DID documents of accounts that enroll (required; production:
    /// `stratos_network::identity::HttpIdentityResolver`).
    pub fn identity(mut self, identity: Arc<dyn IdentityResolver>) -> Self {
        self.identity = Some(identity);
        self
    }

    /// The OAuth authorization servers of accounts' PDSes, whose keys check DPoP-bound access
    /// tokens (production: `stratos_network::HttpAuthorizationServers`). Default: none, and
    /// every `Authorization: DPoP` request is refused as an invalid token.
    pub fn authorization_servers(mut self, servers: Arc<dyn AuthorizationServers>) -> Self {
        self.authorization_servers = Some(servers);
        self
    }

    /// How requests are authenticated (default [`AuthSettings::default`]: no dev bearer, no
    /// admin password, DPoP nonces required); see [`Stratos::auth`].
    pub fn auth_settings(mut self, settings: AuthSettings) -> Self {
        self.auth = settings;
        self
    }

    /// Enrollment through atproto OAuth at the users' own PDSes (default: none, and
    /// [`Stratos::oauth`] is `None`): `client` runs the flows and writes to the users' PDSes
    /// with their sessions (production: `stratos_network::HttpOAuthClient`), `redirects` says
    /// where the callback may send users back to. Flows and sessions are kept in the storage's
    /// OAuth store, sealed with a key derived from the service key. With it,
    /// [`Stratos::delivery`] drains the outbox into the PDSes.
    pub fn oauth<C>(mut self, client: Arc<C>, redirects: RedirectPolicy) -> Self
    where
        C: AtprotoOAuthClient + PdsWriter + 'static,
    {
        self.oauth = Some((client.clone(), client, redirects));
        self
    }

    /// An external allow-list consulted in allow-list mode (default: none).
    pub fn allow_list(mut self, list: Arc<dyn AllowList>) -> Self {
        self.allow_list = Some(list);
        self
    }

    /// The clock (default: [`SystemClock`]; tests inject a manual one).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Connects the sync stream to the other instances of the service (default: none, one
    /// instance). Building with a notifier spawns two tasks on the current tokio runtime.
    pub fn notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifier = Some(notifier);
        self
    }

    /// The boundaries the service offers, as bare names (`general`) or qualified
    /// (`did:web:…/general`). With [`StratosBuilder::enrollment_policy`] unset, anyone may enroll
    /// and receives all of them.
    pub fn boundaries<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.boundaries = names.into_iter().map(Into::into).collect();
        self
    }

    /// Who may enroll, and the boundaries offered (replaces [`StratosBuilder::boundaries`]).
    pub fn enrollment_policy(mut self, policy: EnrollmentPolicy) -> Self {
        self.policy = Some(policy);
        self
    }

    /// Writes allowed per account (default [`DEFAULT_RATE_LIMIT`]).
    pub fn rate_limit(mut self, limit: RateLimit) -> Self {
        self.rate_limit = limit;
        self
    }

    /// Blocks kept in memory in front of the repository store (default
    /// [`DEFAULT_BLOCK_CACHE`]; 0 turns the cache off).
    pub fn block_cache(mut self, blocks: usize) -> Self {
        self.block_cache = blocks;
        self
    }

    /// Sync-stream settings (default [`DEFAULT_HUB_SETTINGS`]).
    pub fn stream_settings(mut self, settings: HubSettings) -> Self {
        self.stream = settings;
        self
    }

    /// The lexicons records are validated against (default: [`Catalog::stratos`]).
    pub fn catalog(mut self, catalog: Catalog) -> Self {
        self.catalog = Some(catalog);
        self
    }

    /// Composes the services. Reads the storage once (the enrollment log's end, where the live
    /// stream starts).
    pub async fn build(self) -> Result<Stratos, BuildError> {
        let storage = self
            .storage
            .ok_or(BuildError::Missing("a storage bundle"))?;
        let blobs = self.blobs.ok_or(BuildError::Missing("a blob store"))?;
        let identity = self
            .identity
            .ok_or(BuildError::Missing("an identity resolver"))?;
        let public_url = match self.public_url {
            Some(url) => url,
            None => did_web_url(&self.service_did).ok_or(BuildError::Missing(
                "a public URL (`public_url`) for a service DID that is not did:web",
            ))?,
        };
        let policy = match self.policy {
            Some(policy) => policy,
            None => {
                let offered = stratos_domain::boundary::qualify_configured(
                    &self.service_did,
                    &self.boundaries,
                )
                .map_err(|source| BuildError::Invalid {
                    what: "boundary",
                    source,
                })?;
                EnrollmentPolicy::new(EnrollmentMode::Open, offered)
            }
        };
        let catalog = match self.catalog {
            Some(c) => c,
            None => Catalog::stratos().map_err(|source| BuildError::Invalid {
                what: "bundled lexicons",
                source,
            })?,
        };
        let block_cache = self.block_cache;
        let mut cache = None;
        let storage = if block_cache == 0 {
            storage
        } else {
            storage.map_repos(|repos| {
                let cached = Arc::new(CachedBlocks::new(repos, block_cache));
                cache = Some(cached.clone());
                cached
            })
        };
        let cursor = storage
            .enrollments()
            .latest_event_seq()
            .await
            .map_err(|e| BuildError::Storage(e.into()))?;
        let streams = Arc::new(StreamHub::new(
            storage.repos().clone(),
            storage.enrollments().clone(),
            self.stream,
            cursor,
        ));
        if let Some(notifier) = self.notifier {
            streams.attach_notifier(notifier);
        }
        let service_key = Arc::new(self.service_key);
        let auth = Authenticator::new(
            AuthContext {
                service_did: self.service_did.clone(),
                public_url: &public_url,
                service_key: &service_key,
                identity: identity.clone(),
                servers: self.authorization_servers,
                clock: self.clock.clone(),
            },
            self.auth,
        );
        let boundaries = policy.allowed_boundaries.clone();
        let outbox_wakeup = Arc::new(tokio::sync::Notify::new());
        // Every commit queues its stubs and every enrollment change its record: the same
        // events also wake the outbox's delivery.
        let sink: Arc<dyn EventSink> = Arc::new(WakingSink {
            hub: streams.clone(),
            wakeup: outbox_wakeup.clone(),
        });
        let records = Arc::new(
            Records::new(RecordDeps {
                repos: storage.repos().clone(),
                enrollments: storage.enrollments().clone(),
                keys: storage.keys().clone(),
                clock: self.clock.clone(),
                catalog: Arc::new(catalog),
                policy: WritePolicy {
                    service_did: self.service_did.clone(),
                    allowed: policy.allowed_boundaries.clone(),
                },
                service_ref: format!("{}#{}", self.service_did, self.service_fragment),
                rate_limit: self.rate_limit,
                blobs: blobs.clone(),
            })
            .with_event_sink(sink.clone()),
        );
        let enrollments = Arc::new(
            Enrollments::new(EnrollmentDeps {
                repos: storage.repos().clone(),
                enrollments: storage.enrollments().clone(),
                keys: storage.keys().clone(),
                outbox: storage.outbox().clone(),
                blobs: blobs.clone(),
                identity: identity.clone(),
                allow_list: self.allow_list,
                clock: self.clock.clone(),
                policy,
                service_did: self.service_did.clone(),
                service_endpoint: public_url.clone(),
                service_key: service_key.clone(),
                records: records.clone(),
            })
            .with_event_sink(sink.clone()),
        );
        let (oauth, writer) = match self.oauth {
            Some((client, writer, redirects)) => (
                Some(Arc::new(OAuthEnrollment::new(
                    OAuthDeps {
                        client,
                        store: storage.oauth().clone(),
                        seal: Arc::new(SealKey::derive(&service_key).map_err(BuildError::SealKey)?),
                        clock: self.clock.clone(),
                        redirects,
                    },
                    enrollments.clone(),
                ))),
                Some(writer),
            ),
            None => (None, None),
        };
        Ok(Stratos {
            inner: Arc::new(Inner {
                service_did: self.service_did,
                public_url,
                service_key,
                storage,
                block_cache: cache,
                blobs,
                identity,
                clock: self.clock,
                boundaries,
                auth,
                records,
                enrollments,
                streams,
                outbox_wakeup,
                write_back: oauth
                    .clone()
                    .zip(writer)
                    .map(|(o, w)| Arc::new(SessionWriteBack::new(o, w)) as Arc<dyn Deliver>),
                oauth,
            }),
        })
    }
}

/// `https://{host}` for `did:web:{host}` (ports percent-encoded as `%3A`).
fn did_web_url(did: &Did) -> Option<String> {
    let host = did.as_str().strip_prefix("did:web:")?;
    if host.contains(':') {
        // A path-based did:web has no single base URL to guess.
        return None;
    }
    Some(format!("https://{}", host.replace("%3A", ":")))
}

struct Inner {
    service_did: Did,
    public_url: String,
    service_key: Arc<Keypair>,
    storage: Storage,
    block_cache: Option<Arc<CachedBlocks<Arc<dyn crate::repo_store::RepoStore>>>>,
    blobs: Arc<dyn BlobStore>,
    identity: Arc<dyn IdentityResolver>,
    clock: Arc<dyn Clock>,
    boundaries: Vec<Boundary>,
    auth: Authenticator,
    records: Arc<Records>,
    enrollments: Arc<Enrollments>,
    streams: Arc<StreamHub>,
    oauth: Option<Arc<OAuthEnrollment>>,
    write_back: Option<Arc<dyn Deliver>>,
    outbox_wakeup: Arc<tokio::sync::Notify>,
}

/// The use cases' event sink: the stream hub, plus a wake-up of the outbox's delivery.
#[derive(Debug)]
struct WakingSink {
    hub: Arc<StreamHub>,
    wakeup: Arc<tokio::sync::Notify>,
}

impl EventSink for WakingSink {
    fn commit(&self, event: CommitEvent) {
        self.hub.commit(event);
        self.wakeup.notify_one();
    }

    fn enrollment(&self, event: EnrollmentEvent) {
        self.hub.enrollment(event);
        self.wakeup.notify_one();
    }

    fn enrollment_cursor(&self) -> u64 {
        self.hub.enrollment_cursor()
    }
}

/// A composed Stratos instance: the services an app serves. Cheap to clone.
#[derive(Clone)]
pub struct Stratos {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Stratos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stratos")
            .field("service_did", &self.inner.service_did)
            .field("public_url", &self.inner.public_url)
            .finish_non_exhaustive()
    }
}

impl Stratos {
    /// Starts a builder for the service `service_did`, whose secp256k1 key `service_key` signs
    /// attestations and appears in its DID document.
    pub fn builder(service_did: Did, service_key: Keypair) -> StratosBuilder {
        StratosBuilder {
            service_did,
            service_key,
            public_url: None,
            service_fragment: DEFAULT_SERVICE_FRAGMENT.to_owned(),
            storage: None,
            blobs: None,
            identity: None,
            authorization_servers: None,
            auth: AuthSettings::default(),
            allow_list: None,
            clock: Arc::new(SystemClock),
            notifier: None,
            boundaries: Vec::new(),
            policy: None,
            rate_limit: DEFAULT_RATE_LIMIT,
            block_cache: DEFAULT_BLOCK_CACHE,
            stream: DEFAULT_HUB_SETTINGS,
            catalog: None,
            oauth: None,
        }
    }

    /// Record writes and boundary-filtered reads, blobs, repository export and import (also as
    /// separate services: `records().writes()`, `.reads()`, `.proofs()`, `.blobs()`,
    /// `.transfer()`).
    pub fn records(&self) -> &Arc<Records> {
        &self.inner.records
    }

    /// Enrollment, unenrollment and status.
    pub fn enrollments(&self) -> &Arc<Enrollments> {
        &self.inner.enrollments
    }

    /// Enrollment through atproto OAuth and the accounts' sessions, when built with
    /// [`StratosBuilder::oauth`].
    pub fn oauth(&self) -> Option<&Arc<OAuthEnrollment>> {
        self.inner.oauth.as_ref()
    }

    /// Write-back to the users' PDSes with their OAuth sessions, when built with
    /// [`StratosBuilder::oauth`]: what [`Stratos::delivery`] performs each outbox item with.
    pub fn write_back(&self) -> Option<&Arc<dyn Deliver>> {
        self.inner.write_back.as_ref()
    }

    /// The outbox's delivery worker over [`Stratos::write_back`] (`None` without
    /// [`StratosBuilder::oauth`]): run it in the background with [`Delivery::run`] so enrollment
    /// records and stubs reach the PDSes.
    pub fn delivery(&self, settings: DeliverySettings) -> Option<Delivery> {
        let pds = self.inner.write_back.clone()?;
        Some(
            Delivery::new(
                self.inner.storage.outbox().clone(),
                pds,
                self.inner.clock.clone(),
                settings,
            )
            .with_wakeup(self.inner.outbox_wakeup.clone()),
        )
    }

    /// The outbox's dead letters, for operators: listed, counted, queued again.
    pub fn dead_letters(&self) -> DeadLetters {
        DeadLetters::new(self.inner.storage.outbox().clone())
    }

    /// Authentication of requests: the caller of a [`RequestView`](crate::auth::RequestView)
    /// (DPoP-bound tokens, service-auth JWTs, the dev bearer), the admin check, DPoP nonces.
    pub fn auth(&self) -> &Authenticator {
        &self.inner.auth
    }

    /// The sync stream's live fan-out (`zone.stratos.sync.subscribeRecords`).
    pub fn streams(&self) -> &Arc<StreamHub> {
        &self.inner.streams
    }

    /// The storage bundle (with the block cache in front of its repository store).
    pub fn storage(&self) -> &Storage {
        &self.inner.storage
    }

    /// The block cache's size and hit counts; `None` when it is off
    /// ([`StratosBuilder::block_cache`] of 0).
    pub fn block_cache_figures(&self) -> Option<crate::block_cache::CacheFigures> {
        self.inner.block_cache.as_ref().map(|c| c.figures())
    }

    /// The blob store.
    pub fn blob_store(&self) -> &Arc<dyn BlobStore> {
        &self.inner.blobs
    }

    /// The identity resolver.
    pub fn identity(&self) -> &Arc<dyn IdentityResolver> {
        &self.inner.identity
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// The service's DID.
    pub fn service_did(&self) -> &Did {
        &self.inner.service_did
    }

    /// The service's public base URL.
    pub fn public_url(&self) -> &str {
        &self.inner.public_url
    }

    /// The service's secp256k1 key.
    pub fn service_key(&self) -> &Arc<Keypair> {
        &self.inner.service_key
    }

    /// The boundaries the service offers.
    pub fn boundaries(&self) -> &[Boundary] {
        &self.inner.boundaries
    }

    /// Imports the TypeScript original's enrollments, keys and records from `source`, keeping
    /// the boundaries this service offers (`stratos migrate-from-ts`; see
    /// [`crate::usecases::legacy`]). Run it while no other instance serves the same storage.
    pub async fn import_legacy(
        &self,
        source: &dyn LegacySource,
    ) -> Result<LegacyReport, UseCaseError> {
        let now = Datetime::from_unix_millis(self.clock().now_ms());
        legacy::import(
            self.enrollments(),
            self.records(),
            source,
            self.boundaries(),
            now,
        )
        .await
    }
}
