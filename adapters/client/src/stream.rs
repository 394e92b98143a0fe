//! A verified consumer of one account's `zone.stratos.sync.subscribeRecords` stream.
//!
//! ```no_run
//! # async fn run(key: stratos_domain::crypto::PublicKey) -> Result<(), stratos_client::ClientError> {
//! use stratos_client::stream::{RecordStream, StreamAuth, StreamItem};
//! use stratos_domain::syntax::Did;
//!
//! let did = Did::parse("did:plc:ewvi7nxzyoun6zhxrhs64oiz").map_err(|e| stratos_client::ClientError::Url(e.to_string()))?;
//! let saved_cursor: Option<u64> = None; // from the consumer's own storage
//! let mut stream = RecordStream::builder("https://stratos.example", did, key)
//!     .auth(StreamAuth::SyncToken("secret".into()))
//!     .cursor(saved_cursor)
//!     .build();
//! loop {
//!     match stream.next().await? {
//!         StreamItem::Commit { frame, .. } => {
//!             // Index `frame.ops`, then persist `frame.seq` with the same transaction.
//!         }
//!         StreamItem::OutdatedCursor { .. } | StreamItem::Resync { .. } => {
//!             // Re-read the account from its verified export, then continue.
//!         }
//!     }
//! }
//! # }
//! ```

use std::time::Duration;

use futures_util::StreamExt as _;
use stratos_domain::Cid;
use stratos_domain::crypto::PublicKey;
use stratos_domain::sync::VerifiedCommit;
use stratos_domain::syntax::Did;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::ClientError;
use crate::frame::{self, CommitFrame, Frame};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How the consumer authenticates.
#[derive(Clone)]
pub enum StreamAuth {
    /// The service's static sync token (`syncToken` query parameter).
    SyncToken(String),
    /// An `Authorization` header value, e.g. `Bearer <service-auth JWT>`.
    Authorization(String),
}

impl std::fmt::Debug for StreamAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets are never printed.
        f.write_str(match self {
            StreamAuth::SyncToken(_) => "SyncToken(..)",
            StreamAuth::Authorization(_) => "Authorization(..)",
        })
    }
}

/// What the stream hands over.
#[derive(Debug, Clone)]
pub enum StreamItem {
    /// A commit; `verified` is `Some` unless verification was turned off.
    Commit {
        /// The frame.
        frame: Box<CommitFrame>,
        /// What verification established (the data root after the commit, its blocks).
        verified: Option<Box<VerifiedCommit>>,
    },
    /// A commit the service could not prove event by event (more than
    /// [`stratos_domain::sync::MAX_PROVEN_OPS`] ops, e.g. an import; or an event stored before
    /// events carried proofs). Its content is not verified and must not be trusted: re-read the
    /// account from its verified export (`xrpc::StratosClient::export_verified_repo`). The chain
    /// check starts again at the next commit.
    Resync {
        /// The frame, for its `seq` and `rev`.
        frame: Box<CommitFrame>,
    },
    /// The cursor is older than what the service retains: backfill from the repository export,
    /// then go on reading (the stream continues from the oldest retained event; the chain
    /// check starts again there).
    OutdatedCursor {
        /// The service's message.
        message: Option<String>,
    },
}

/// Connection settings shared by the streams.
#[derive(Debug, Clone)]
pub(crate) struct LinkConfig {
    pub(crate) service: String,
    pub(crate) method: &'static str,
    pub(crate) auth: Option<StreamAuth>,
    pub(crate) connected: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    pub(crate) connect_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_backoff: Duration,
}

impl LinkConfig {
    fn new(service: &str) -> Self {
        Self::for_method(service, "zone.stratos.sync.subscribeRecords")
    }

    /// Settings for the event stream `method` of the host at `service` (`http(s)://`).
    pub(crate) fn for_method(service: &str, method: &'static str) -> Self {
        Self {
            method,
            service: service.trim_end_matches('/').to_owned(),
            auth: None,
            connected: None,
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(90),
            max_backoff: Duration::from_secs(30),
        }
    }

    fn set_connected(&self, up: bool) {
        if let Some(flag) = &self.connected {
            flag.store(up, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// `ws(s)://…/xrpc/{method}?{params}[&syncToken=…]`.
    pub(crate) fn url(&self, params: &[(&str, String)]) -> Result<String, ClientError> {
        let base = if let Some(rest) = self.service.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = self.service.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            return Err(ClientError::Url(format!(
                "{} is not an http(s) URL",
                self.service
            )));
        };
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (k, v) in params {
            query.append_pair(k, v);
        }
        if let Some(StreamAuth::SyncToken(token)) = &self.auth {
            query.append_pair("syncToken", token);
        }
        Ok(format!("{base}/xrpc/{}?{}", self.method, query.finish()))
    }
}

/// The socket of a stream and its reconnection state.
#[derive(Debug, Default)]
pub(crate) struct Link {
    socket: Option<Socket>,
    failures: u32,
}

impl Link {
    /// The next binary message, (re)connecting with backoff as needed.
    pub(crate) async fn next_binary(
        &mut self,
        config: &LinkConfig,
        url: impl Fn() -> Result<String, ClientError>,
    ) -> Result<Vec<u8>, ClientError> {
        loop {
            let Some(socket) = self.socket.as_mut() else {
                if self.failures > 0 {
                    tokio::time::sleep(self.backoff(config)).await;
                }
                match connect(config, &url()?).await {
                    Ok(socket) => {
                        self.socket = Some(socket);
                        config.set_connected(true);
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "stream connection failed");
                        self.failures = self.failures.saturating_add(1);
                    }
                }
                continue;
            };
            let message = match tokio::time::timeout(config.idle_timeout, socket.next()).await {
                Ok(Some(Ok(message))) => message,
                Ok(Some(Err(_)) | None) | Err(_) => {
                    self.reconnect();
                    config.set_connected(false);
                    continue;
                }
            };
            match message {
                Message::Binary(bytes) => {
                    self.failures = 0;
                    return Ok(bytes.to_vec());
                }
                Message::Close(_) => {
                    self.reconnect();
                    config.set_connected(false);
                }
                _ => {}
            }
        }
    }

    /// [`Link::next_binary`] on the stream for `did` (if any) after `cursor` (if any).
    pub(crate) async fn next_after(
        &mut self,
        config: &LinkConfig,
        did: Option<&Did>,
        cursor: Option<u64>,
    ) -> Result<Vec<u8>, ClientError> {
        let mut params = Vec::with_capacity(2);
        if let Some(d) = did {
            params.push(("did", d.to_string()));
        }
        if let Some(c) = cursor {
            params.push(("cursor", c.to_string()));
        }
        self.next_binary(config, || config.url(&params)).await
    }

    /// Handles an error frame: the socket is gone; `ConsumerTooSlow` is retried after a
    /// backoff, anything else is returned.
    pub(crate) fn error_frame(
        &mut self,
        config: &LinkConfig,
        error: String,
        message: String,
    ) -> Option<ClientError> {
        self.socket = None;
        config.set_connected(false);
        if error == "ConsumerTooSlow" {
            self.failures = 1;
            return None;
        }
        Some(ClientError::Refused { error, message })
    }

    fn reconnect(&mut self) {
        self.socket = None;
        self.failures = self.failures.saturating_add(1);
    }

    /// 250 ms doubled per consecutive failure, capped, then a random 50–100 % of it (so that
    /// many consumers of a restarted service do not return in step).
    fn backoff(&self, config: &LinkConfig) -> Duration {
        let exp = self.failures.saturating_sub(1).min(16);
        let base = Duration::from_millis(250)
            .saturating_mul(1u32 << exp)
            .min(config.max_backoff);
        let jitter = 0.5 + f64::from(rand_u16()) / f64::from(u16::MAX) / 2.0;
        base.mul_f64(jitter)
    }
}

async fn connect(config: &LinkConfig, url: &str) -> Result<Socket, ClientError> {
    let mut request = url
        .into_client_request()
        .map_err(|e| ClientError::Url(e.to_string()))?;
    if let Some(StreamAuth::Authorization(value)) = &config.auth {
        let value = HeaderValue::from_str(value).map_err(|e| ClientError::Url(e.to_string()))?;
        request.headers_mut().insert("authorization", value);
    }
    let connect = tokio_tungstenite::connect_async(request);
    match tokio::time::timeout(config.connect_timeout, connect).await {
        Ok(Ok((socket, _))) => Ok(socket),
        Ok(Err(e)) => Err(ClientError::Connect(e.to_string())),
        Err(_) => Err(ClientError::Connect("timed out".into())),
    }
}

/// The connection settings every stream builder offers (its `link` field).
macro_rules! link_settings {
    () => {
        /// Authentication (none: only streams the service opens to anyone, i.e. none by
        /// default).
        pub fn auth(mut self, auth: $crate::stream::StreamAuth) -> Self {
            self.link.auth = Some(auth);
            self
        }

        /// A flag the stream keeps at `true` while its socket is open (for a readiness
        /// probe: `next` holds the stream while it waits).
        pub fn connected_flag(
            mut self,
            flag: std::sync::Arc<std::sync::atomic::AtomicBool>,
        ) -> Self {
            self.link.connected = Some(flag);
            self
        }

        /// Time allowed for connecting (default 10 s).
        pub fn connect_timeout(mut self, timeout: std::time::Duration) -> Self {
            self.link.connect_timeout = timeout;
            self
        }

        /// Silence after which the connection is presumed dead and re-opened (default 90 s;
        /// the service pings every 30 s by default).
        pub fn idle_timeout(mut self, timeout: std::time::Duration) -> Self {
            self.link.idle_timeout = timeout;
            self
        }

        /// Longest wait between reconnection attempts (default 30 s; waits double from
        /// 250 ms, with jitter).
        pub fn max_backoff(mut self, max: std::time::Duration) -> Self {
            self.link.max_backoff = max;
            self
        }
    };
}

pub(crate) use link_settings;

/// Builds a [`RecordStream`].
#[derive(Debug, Clone)]
pub struct RecordStreamBuilder {
    link: LinkConfig,
    did: Did,
    key: PublicKey,
    cursor: Option<u64>,
    chain: Option<Cid>,
    verify: bool,
}

impl RecordStreamBuilder {
    link_settings!();

    /// Resume after this sequence number (the last one the consumer persisted).
    pub fn cursor(mut self, cursor: Option<u64>) -> Self {
        self.cursor = cursor;
        self
    }

    /// The data root the account's last persisted event reached: the first frame must follow
    /// it. Without it the chain check starts at the first frame received.
    pub fn chain(mut self, data: Option<Cid>) -> Self {
        self.chain = data;
        self
    }

    /// Turns verification off (it is on by default; frames of events stored before events
    /// carried proofs can only be read this way).
    pub fn unverified(mut self) -> Self {
        self.verify = false;
        self
    }

    /// The consumer; it connects on the first [`RecordStream::next`].
    pub fn build(self) -> RecordStream {
        RecordStream {
            cursor: self.cursor,
            chain: self.chain,
            config: self,
            link: Link::default(),
        }
    }
}

/// A per-account stream consumer: connects lazily, resumes after its cursor on every
/// reconnection (backoff with jitter), drops frames at or below the cursor, and verifies each
/// commit (signature, inversion, chain to the frame before) before handing it over.
#[derive(Debug)]
pub struct RecordStream {
    config: RecordStreamBuilder,
    link: Link,
    cursor: Option<u64>,
    chain: Option<Cid>,
}

impl RecordStream {
    /// A builder for the stream of `did` at the Stratos service `service` (its `http(s)://`
    /// base URL), verified with the account's signing key `key`.
    pub fn builder(service: &str, did: Did, key: PublicKey) -> RecordStreamBuilder {
        RecordStreamBuilder {
            link: LinkConfig::new(service),
            did,
            key,
            cursor: None,
            chain: None,
            verify: true,
        }
    }

    /// The sequence number of the last commit handed over.
    pub fn cursor(&self) -> Option<u64> {
        self.cursor
    }

    /// The data root the last verified commit reached.
    pub fn chain(&self) -> Option<Cid> {
        self.chain
    }

    /// Continues the chain check from `data` (or from the next commit, with `None`): after
    /// re-reading the account from its verified export following a refused frame or a
    /// [`StreamItem::Resync`], pass the export's data root. Frames up to `cursor` are skipped.
    pub fn resume_from(&mut self, cursor: Option<u64>, data: Option<Cid>) {
        self.chain = data;
        if cursor != self.cursor {
            self.cursor = cursor;
            // A new position needs a new subscription.
            self.link.socket = None;
        }
    }

    /// The next item. Connection failures are retried here (with backoff); errors returned
    /// are the service refusing the stream, or a frame that is malformed or does not verify
    /// (the frame is not handed over and the cursor does not move past it: re-read the account
    /// and go on with [`RecordStream::resume_from`]).
    pub async fn next(&mut self) -> Result<StreamItem, ClientError> {
        loop {
            let bytes = self
                .link
                .next_after(&self.config.link, Some(&self.config.did), self.cursor)
                .await?;
            match frame::decode(&bytes)? {
                Frame::Commit(commit) => {
                    if commit.did != self.config.did {
                        return Err(ClientError::Frame(format!(
                            "a commit of {} on the stream of {}",
                            commit.did, self.config.did
                        )));
                    }
                    if self.cursor.is_some_and(|c| commit.seq <= c) {
                        continue;
                    }
                    if self.config.verify && commit.blocks.is_none() {
                        self.chain = None;
                        self.cursor = Some(commit.seq);
                        return Ok(StreamItem::Resync { frame: commit });
                    }
                    let verified = if self.config.verify {
                        let v = commit.verify(&self.config.key, self.chain)?;
                        self.chain = Some(v.data);
                        Some(Box::new(v))
                    } else {
                        None
                    };
                    self.cursor = Some(commit.seq);
                    return Ok(StreamItem::Commit {
                        frame: commit,
                        verified,
                    });
                }
                Frame::Info { name, message } if name == "OutdatedCursor" => {
                    self.chain = None;
                    return Ok(StreamItem::OutdatedCursor { message });
                }
                Frame::Error { error, message } => {
                    if let Some(refused) = self.link.error_frame(&self.config.link, error, message)
                    {
                        return Err(refused);
                    }
                }
                Frame::Info { .. } | Frame::Enrollment(_) | Frame::Unknown { .. } => continue,
            }
        }
    }
}

/// What the service-level stream hands over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrollmentItem {
    /// An account enrolled, changed boundaries, or left.
    Enrollment(crate::frame::EnrollmentFrame),
    /// The cursor is older than what the service retains: re-read the enrollments the
    /// consumer cares about; the stream continues from the oldest retained event.
    OutdatedCursor {
        /// The service's message.
        message: Option<String>,
    },
}

/// Builds an [`EnrollmentStream`].
#[derive(Debug, Clone)]
pub struct EnrollmentStreamBuilder {
    link: LinkConfig,
    cursor: Option<u64>,
}

impl EnrollmentStreamBuilder {
    link_settings!();

    /// Resume after this service-wide sequence number.
    pub fn cursor(mut self, cursor: Option<u64>) -> Self {
        self.cursor = cursor;
        self
    }

    /// The consumer; it connects on the first [`EnrollmentStream::next`].
    pub fn build(self) -> EnrollmentStream {
        EnrollmentStream {
            cursor: self.cursor,
            config: self,
            link: Link::default(),
        }
    }
}

/// The service-level stream (`subscribeRecords` without `did`): `#enrollment` frames, resumed
/// after its cursor on every reconnection. It needs the sync token or an allowed AppView's
/// credentials. Enrollment frames carry no signature: they are as trustworthy as the
/// connection to the service.
#[derive(Debug)]
pub struct EnrollmentStream {
    config: EnrollmentStreamBuilder,
    link: Link,
    cursor: Option<u64>,
}

impl EnrollmentStream {
    /// A builder for the service-level stream of the Stratos service at `service`.
    pub fn builder(service: &str) -> EnrollmentStreamBuilder {
        EnrollmentStreamBuilder {
            link: LinkConfig::new(service),
            cursor: None,
        }
    }

    /// The sequence number of the last enrollment handed over.
    pub fn cursor(&self) -> Option<u64> {
        self.cursor
    }

    /// The next item (connection failures are retried here; errors are the service refusing
    /// the stream or a malformed frame).
    pub async fn next(&mut self) -> Result<EnrollmentItem, ClientError> {
        loop {
            let bytes = self
                .link
                .next_after(&self.config.link, None, self.cursor)
                .await?;
            match frame::decode(&bytes)? {
                Frame::Enrollment(e) => {
                    if self.cursor.is_some_and(|c| e.seq <= c) {
                        continue;
                    }
                    self.cursor = Some(e.seq);
                    return Ok(EnrollmentItem::Enrollment(e));
                }
                Frame::Info { name, message } if name == "OutdatedCursor" => {
                    return Ok(EnrollmentItem::OutdatedCursor { message });
                }
                Frame::Error { error, message } => {
                    if let Some(refused) = self.link.error_frame(&self.config.link, error, message)
                    {
                        return Err(refused);
                    }
                }
                Frame::Info { .. } | Frame::Commit(_) | Frame::Unknown { .. } => continue,
            }
        }
    }
}

/// Keeps an AppView's viewer cache current: every `#enrollment` frame of the service-level
/// stream sets that account's cached boundaries to those the frame reports
/// ([`stratos_ports::usecases::appview::AppView::update_viewer`]), so a boundary change shows in
/// its next feed instead of after the cache's TTL (and does not wait for the indexer to apply
/// the same frame). Runs until the service refuses the stream
/// (returned); connection failures are retried inside.
///
/// ```no_run
/// # async fn run(appview: std::sync::Arc<stratos_ports::usecases::appview::AppView>) {
/// use stratos_client::stream::{EnrollmentStream, StreamAuth, invalidate_viewers};
/// let stream = EnrollmentStream::builder("https://stratos.example")
///     .auth(StreamAuth::SyncToken("secret".into()))
///     .build();
/// tokio::spawn(invalidate_viewers(stream, appview));
/// # }
/// ```
pub async fn invalidate_viewers(
    mut stream: EnrollmentStream,
    appview: std::sync::Arc<stratos_ports::usecases::appview::AppView>,
) -> ClientError {
    loop {
        match stream.next().await {
            Ok(EnrollmentItem::Enrollment(e)) => appview.update_viewer(&e.did, e.boundaries),
            Ok(EnrollmentItem::OutdatedCursor { .. }) => {}
            Err(e) => return e,
        }
    }
}

/// A random number for jitter (not a secret; the OS generator is simply at hand).
fn rand_u16() -> u16 {
    let mut b = [0u8; 2];
    // Without randomness the jitter is the midpoint: still a valid wait.
    if getrandom(&mut b).is_err() {
        return u16::MAX / 2;
    }
    u16::from_le_bytes(b)
}

fn getrandom(buf: &mut [u8]) -> Result<(), rand_core::Error> {
    use rand_core::RngCore as _;
    rand_core::OsRng.try_fill_bytes(buf)
}
