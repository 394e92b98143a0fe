//! `zone.stratos.sync.subscribeRecords`: the WebSocket event stream.
//!
//! Per-account stream (`did` given): `#commit` frames of that account. Service-level stream (no
//! `did`): `#enrollment` frames. Each connection first replays its log from the cursor, page by
//! page until caught up, then delivers live events pushed from memory by [`hub::StreamHub`].
//! It subscribes to the live broadcast *before* reading the log, and drops live events it
//! already sent by sequence number, so the switch has no gap and no duplicate.
//!
//! Frames follow the atproto event-stream framing: a DAG-CBOR header `{op: 1, t}` followed by a
//! DAG-CBOR body; errors are `{op: -1}` + `{error, message}`, after which the server closes
//! with code 1008 and the error name as reason.
//!
//! Frames go to the socket through a per-subscriber buffer ([`Outbox`]: at most
//! [`BUFFER_FRAMES`] frames and [`BUFFER_BYTES`] bytes) drained by a writer task. The buffer
//! always keeps room for one last item, the error frame and close, so a consumer cut off for
//! being too slow still receives `#error ConsumerTooSlow` when it reads again.

mod outbox;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{CloseCode, CloseReason, Message, MessageStream, Session};
use futures_util::StreamExt as _;
use serde::Deserialize;
use stratos_domain::boundary::Boundary;
use stratos_domain::syntax::Did;
use stratos_ports::usecases::stream::{self, CommitEvent};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{OwnedSemaphorePermit, watch};

use crate::auth;
use crate::error::ApiError;
use crate::state::AppState;
use stratos_ports::usecases::stream::hub::{self, Phase, StreamHub};

use self::outbox::{BUFFER_BYTES, BUFFER_FRAMES, Out, Outbox};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawParams {
    did: Option<String>,
    cursor: Option<String>,
    domain: Option<String>,
    sync_token: Option<String>,
}

/// The parsed query of a subscription.
#[derive(Debug, Clone)]
struct Params {
    did: Option<Did>,
    cursor: Option<u64>,
    /// Qualified boundary.
    domain: Option<String>,
    sync_token: Option<String>,
}

/// An error frame to send before closing.
#[derive(Debug, Clone)]
struct Failure {
    error: &'static str,
    message: String,
}

impl Failure {
    fn new(error: &'static str, message: impl Into<String>) -> Self {
        Self {
            error,
            message: message.into(),
        }
    }
}

fn parse_params(req: &HttpRequest, service_did: &Did) -> Result<Params, Failure> {
    let raw = web::Query::<RawParams>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| Failure::new("InvalidRequest", format!("invalid query parameters: {e}")))?;
    let did = raw
        .did
        .map(|d| Did::parse(&d).map_err(|_| Failure::new("InvalidRequest", "`did` must be a DID")))
        .transpose()?;
    let cursor = raw
        .cursor
        .map(|c| {
            // Strict: the reference read anything unparsable as 0 (`parseInt(..) || 0`).
            if c.is_empty() || !c.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Failure::new(
                    "InvalidRequest",
                    "`cursor` must be a non-negative integer",
                ));
            }
            c.parse::<u64>()
                .map_err(|_| Failure::new("InvalidRequest", "`cursor` is out of range"))
        })
        .transpose()?;
    let domain = raw
        .domain
        .map(|d| {
            if d.len() > 253 {
                return Err(Failure::new("InvalidRequest", "`domain` is too long"));
            }
            // A bare name means this service's boundary of that name.
            if d.starts_with("did:") {
                Ok(d)
            } else {
                Boundary::qualify(service_did, &d)
                    .map(|b| b.to_string())
                    .map_err(|e| Failure::new("InvalidRequest", format!("`domain`: {e}")))
            }
        })
        .transpose()?;
    Ok(Params {
        did,
        cursor,
        domain,
        sync_token: raw.sync_token.filter(|t| !t.is_empty()),
    })
}

/// Who is subscribing.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Access {
    /// A trusted service (the sync token, or an allowed AppView): every stream.
    Service,
    /// An account: its own stream only.
    Account(Did),
}

/// A service-auth JWT passed as `syncToken` (WebSocket clients cannot always set headers):
/// `aud` = this service, `lxm` = this method, signed with the issuer's `#atproto` key.
async fn verify_sync_jwt(state: &AppState, token: &str) -> Result<Did, Failure> {
    state
        .stratos
        .auth()
        .verify_service_token(token, Some(stream::NSID))
        .await
        .map_err(|e| {
            let message = e.to_xrpc().message;
            Failure::new("AuthRequired", format!("invalid syncToken: {message}"))
        })
}

/// Decides who is calling, in the order of the reference's intended design: `syncToken` (the
/// static token, else a service-auth JWT), then the `Authorization` header (dev bearer or a
/// service-auth JWT), then nothing (refused).
async fn authenticate(
    req: &HttpRequest,
    state: &AppState,
    params: &Params,
) -> Result<Access, Failure> {
    let trusted = |did: Did| {
        if state.config.stream.allowed_appviews.contains(&did) {
            Access::Service
        } else {
            Access::Account(did)
        }
    };
    if let Some(token) = &params.sync_token {
        if state.stratos.auth().is_sync_token(token) {
            return Ok(Access::Service);
        }
        if token.split('.').count() == 3 {
            return verify_sync_jwt(state, token).await.map(trusted);
        }
        return Err(Failure::new("AuthRequired", "invalid syncToken"));
    }
    match auth::caller(req, state).await {
        Ok(Some(did)) => Ok(trusted(did)),
        Ok(None) => Err(Failure::new(
            "AuthRequired",
            "syncToken query parameter or Authorization header required",
        )),
        Err(e) => Err(Failure::new("AuthRequired", e.xrpc.message)),
    }
}

fn authorize(access: &Access, params: &Params) -> Result<(), Failure> {
    match (access, &params.did) {
        (Access::Service, _) => Ok(()),
        (Access::Account(me), Some(did)) if me == did => Ok(()),
        (Access::Account(_), Some(_)) => Err(Failure::new(
            "AuthRequired",
            "only the account itself or an authorised service may read this stream",
        )),
        (Access::Account(_), None) => Err(Failure::new(
            "AuthRequired",
            "the service-level stream needs the sync token or an authorised service",
        )),
    }
}

/// `GET /xrpc/zone.stratos.sync.subscribeRecords` (WebSocket upgrade).
pub async fn subscribe_records(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (response, session, messages) = actix_ws::handle(&req, body).map_err(|_| {
        ApiError::invalid("zone.stratos.sync.subscribeRecords is a WebSocket event stream")
    })?;
    // Errors after the upgrade are error frames, as in every atproto event stream.
    let checked = match parse_params(&req, &state.config.service_did) {
        Ok(params) => match authenticate(&req, &state, &params).await {
            Ok(access) => authorize(&access, &params).map(|()| params),
            Err(f) => Err(f),
        },
        Err(f) => Err(f),
    };
    let hub = state.stratos.streams().clone();
    actix_web::rt::spawn(async move {
        let mut conn = Conn::new(hub, session, messages);
        let end = match checked {
            Ok(params) => conn.run(params).await,
            Err(f) => End::Fail(f),
        };
        conn.finish(end).await;
    });
    Ok(response)
}

/// How a connection ends.
#[derive(Debug)]
enum End {
    /// The client closed or went away: nothing more to send.
    Gone,
    /// Send an error frame, then close with 1008.
    Fail(Failure),
    /// The service is stopping: close with 1001.
    Shutdown,
    /// The client did not answer a ping in time.
    Unresponsive,
}

/// How long a connection closed because the service stops or a pong was missed may take
/// nothing before it is dropped (a failure gets the send timeout: its error frame is the point).
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// One subscriber connection.
struct Conn {
    hub: Arc<StreamHub>,
    out: Outbox,
    messages: MessageStream,
    shutdown: watch::Receiver<bool>,
    send_timeout: Duration,
    /// Answered the last ping.
    alive: bool,
}

/// Keeps the subscriber gauge right however the task ends.
struct Gauge(Arc<StreamHub>);

impl Drop for Gauge {
    fn drop(&mut self) {
        self.0.stats().subscribers.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Drops the account's broadcast channel with its last subscriber.
struct ActorRelease(Arc<StreamHub>, String);

impl Drop for ActorRelease {
    fn drop(&mut self) {
        self.0.release_actor(&self.1);
    }
}

/// One message the connection loop woke up for.
enum Wake<T> {
    Shutdown,
    Incoming(Option<Result<Message, actix_ws::ProtocolError>>),
    Heartbeat,
    Live(Result<T, RecvError>),
}

impl Conn {
    fn new(hub: Arc<StreamHub>, session: Session, messages: MessageStream) -> Self {
        let shutdown = hub.shutdown_signal();
        let send_timeout = hub.settings().send_timeout;
        Self {
            out: Outbox::new(session, hub.clone()),
            hub,
            messages,
            shutdown,
            send_timeout,
            alive: true,
        }
    }

    async fn finish(self, end: End) {
        let Conn {
            out, send_timeout, ..
        } = self;
        let (frame, reason, linger) = match end {
            End::Gone => {
                out.writer.abort();
                return;
            }
            End::Fail(f) => (
                Some(Bytes::from(stream::error_frame(f.error, &f.message))),
                CloseReason {
                    code: CloseCode::Policy,
                    description: Some(f.error.to_owned()),
                },
                send_timeout,
            ),
            End::Shutdown => (
                None,
                CloseReason {
                    code: CloseCode::Away,
                    description: Some("service stopping".into()),
                },
                CLOSE_LINGER,
            ),
            End::Unresponsive => (
                None,
                CloseReason {
                    code: CloseCode::Policy,
                    description: Some("no pong".into()),
                },
                CLOSE_LINGER,
            ),
        };
        out.close(frame, reason, linger).await;
    }

    /// Queues one item once the buffer has room for it (`bytes` of [`BUFFER_BYTES`] and a
    /// slot); a buffer that stays full for the send timeout cuts the consumer off.
    async fn push(
        &mut self,
        bytes: usize,
        item: impl FnOnce(OwnedSemaphorePermit) -> Out,
    ) -> Result<(), End> {
        let deadline = tokio::time::Instant::now() + self.send_timeout;
        let need = u32::try_from(bytes.min(BUFFER_BYTES)).unwrap_or(u32::MAX);
        let room = match tokio::time::timeout_at(
            deadline,
            self.out.bytes.clone().acquire_many_owned(need),
        )
        .await
        {
            Ok(Ok(room)) => room,
            // The semaphore is never closed; if it were, nothing more could be sent.
            Ok(Err(_closed)) => return Err(End::Gone),
            Err(_elapsed) => return Err(self.too_slow()),
        };
        match tokio::time::timeout_at(deadline, self.out.tx.reserve()).await {
            Ok(Ok(slot)) => {
                slot.send(item(room));
                Ok(())
            }
            // The writer stopped: the client is gone.
            Ok(Err(_closed)) => Err(End::Gone),
            Err(_elapsed) => Err(self.too_slow()),
        }
    }

    fn too_slow(&self) -> End {
        self.hub
            .stats()
            .slow_disconnects
            .fetch_add(1, Ordering::Relaxed);
        End::Fail(Failure::new(
            "ConsumerTooSlow",
            format!(
                "the subscriber took no frame for {} s with its buffer full ({BUFFER_FRAMES} \
                 frames / {} MiB); reconnect with the last seq as cursor",
                self.send_timeout.as_secs(),
                BUFFER_BYTES >> 20
            ),
        ))
    }

    /// Sends one frame (`published`: when its live event reached the hub).
    async fn send(&mut self, frame: Bytes, published: Option<Instant>) -> Result<(), End> {
        self.push(frame.len(), |room| Out::Frame {
            bytes: frame,
            _room: room,
            published,
        })
        .await
    }

    fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    async fn run(&mut self, params: Params) -> End {
        self.hub.stats().subscribers.fetch_add(1, Ordering::Relaxed);
        let _gauge = Gauge(self.hub.clone());
        let result = match params.did.clone() {
            Some(did) => self.actor_stream(did, params).await,
            None => self.service_stream(params).await,
        };
        match result {
            Ok(()) => End::Gone,
            Err(end) => end,
        }
    }

    /// Handles one incoming message; `Err` ends the connection.
    async fn incoming(
        &mut self,
        msg: Option<Result<Message, actix_ws::ProtocolError>>,
    ) -> Result<(), End> {
        match msg {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => Err(End::Gone),
            Some(Ok(Message::Ping(p))) => self.push(0, |_| Out::Pong(p)).await,
            Some(Ok(Message::Pong(_))) => {
                self.alive = true;
                Ok(())
            }
            // The stream is one-way; anything else from the client is ignored.
            Some(Ok(_)) => Ok(()),
        }
    }

    async fn heartbeat(&mut self) -> Result<(), End> {
        if !self.alive {
            return Err(End::Unresponsive);
        }
        self.alive = false;
        self.push(0, |_| Out::Ping).await
    }

    async fn wake<T: Clone>(
        &mut self,
        live: &mut tokio::sync::broadcast::Receiver<T>,
        tick: &mut tokio::time::Interval,
    ) -> Wake<T> {
        tokio::select! {
            biased;
            _ = self.shutdown.changed() => Wake::Shutdown,
            m = self.messages.next() => Wake::Incoming(m),
            _ = tick.tick() => Wake::Heartbeat,
            r = live.recv() => Wake::Live(r),
        }
    }

    fn ticker(&self) -> tokio::time::Interval {
        let period = self.hub.settings().heartbeat;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick
    }

    /// Sends one commit event (filtered by `domain`).
    async fn send_commit(
        &mut self,
        live: Option<&hub::Live<CommitEvent>>,
        event: &CommitEvent,
        domain: Option<&str>,
    ) -> Result<(), End> {
        let frame = match (live, domain) {
            (Some(live), None) => live
                .frame(|e| stream::commit_frame(e, None).map(Option::unwrap_or_default))
                .map(Some),
            _ => stream::commit_frame(event, domain)
                .map(|f| f.map(Bytes::from))
                .map_err(|e| e.to_string()),
        };
        match frame {
            Ok(Some(frame)) if !frame.is_empty() => {
                self.send(frame, live.map(|l| l.published)).await
            }
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::error!(error = %e, did = %event.did, seq = event.seq, "encoding a commit frame failed");
                Err(End::Fail(Failure::new(
                    "InternalServerError",
                    "an event could not be encoded",
                )))
            }
        }
    }

    /// Replays the account's log after `last` until a short page (caught up); returns the new
    /// position.
    async fn replay_actor(
        &mut self,
        did: &Did,
        mut last: u64,
        domain: Option<&str>,
        phase: Phase,
    ) -> Result<u64, End> {
        loop {
            if self.stopping() {
                return Err(End::Shutdown);
            }
            let page = self
                .hub
                .store()
                .actor_events(did, last, stream::PAGE, phase)
                .await
                .map_err(|e| End::Fail(Failure::new("InternalServerError", e.to_string())))?;
            let full = page.len() == stream::PAGE;
            for event in &page {
                self.send_commit(None, event, domain).await?;
                last = event.seq;
            }
            if !full {
                return Ok(last);
            }
        }
    }

    async fn actor_stream(&mut self, did: Did, params: Params) -> Result<(), End> {
        let hub = self.hub.clone();
        // Declared first so it drops last, after the receiver: the channel goes with the last one.
        let _release = ActorRelease(hub.clone(), did.to_string());
        let mut live = hub.subscribe_actor(did.as_str());
        let store = hub.store();
        let fail = |e: stratos_ports::usecases::UseCaseError| {
            End::Fail(Failure::new("InternalServerError", e.to_string()))
        };
        if !store.actor_exists(&did).await.map_err(fail)? {
            return Err(End::Fail(Failure::new("NotFound", "Account not found")));
        }
        let latest = store.latest_seq(&did).await.map_err(fail)?;
        let first = store
            .actor_events(&did, 0, 1, Phase::Backfill)
            .await
            .map_err(fail)?
            .first()
            .map(|e| e.seq);
        let start = stream::start(params.cursor, first, latest)
            .map_err(|e| End::Fail(Failure::new("FutureCursor", e.to_string())))?;
        let domain = params.domain.as_deref();
        if start.outdated {
            self.send_outdated(start.after).await?;
        }
        let mut last = self
            .replay_actor(&did, start.after, domain, Phase::Backfill)
            .await?;
        let mut tick = self.ticker();
        loop {
            match self.wake(&mut live, &mut tick).await {
                Wake::Shutdown => return Err(End::Shutdown),
                Wake::Incoming(m) => self.incoming(m).await?,
                Wake::Heartbeat => self.heartbeat().await?,
                Wake::Live(Ok(event)) => {
                    let seq = event.event.seq;
                    if seq <= last {
                        continue; // already sent by the replay
                    }
                    if seq > last + 1 {
                        // A gap (an event committed by another instance, or one this
                        // subscriber missed around its switch to live): fill it from the log.
                        last = self.replay_actor(&did, last, domain, Phase::Live).await?;
                        if seq <= last {
                            continue;
                        }
                    }
                    self.send_commit(Some(&event), &event.event, domain).await?;
                    last = seq;
                }
                Wake::Live(Err(RecvError::Lagged(_))) => {
                    // Fell behind the in-memory window: catch up from the log, then go on live
                    // (events still in the window are dropped by number).
                    hub.stats().catch_ups.fetch_add(1, Ordering::Relaxed);
                    last = self.replay_actor(&did, last, domain, Phase::Live).await?;
                }
                Wake::Live(Err(RecvError::Closed)) => {
                    return Err(End::Fail(Failure::new(
                        "NotFound",
                        "the account left this service",
                    )));
                }
            }
        }
    }

    async fn send_outdated(&mut self, cursor: u64) -> Result<(), End> {
        let frame = stream::info_frame(
            "OutdatedCursor",
            &format!("Cursor {cursor} is too old, some events may be missed"),
        )
        .map_err(|e| End::Fail(Failure::new("InternalServerError", e.to_string())))?;
        self.send(Bytes::from(frame), None).await
    }

    async fn send_enrollment(
        &mut self,
        live: Option<&hub::Live<stratos_ports::enrollment_store::EnrollmentEvent>>,
        event: &stratos_ports::enrollment_store::EnrollmentEvent,
    ) -> Result<(), End> {
        let frame = match live {
            Some(live) => live.frame(stream::enrollment_frame),
            None => stream::enrollment_frame(event)
                .map(Bytes::from)
                .map_err(|e| e.to_string()),
        };
        match frame {
            Ok(frame) => self.send(frame, None).await,
            Err(e) => Err(End::Fail(Failure::new("InternalServerError", e))),
        }
    }

    async fn replay_enrollments(&mut self, mut last: u64, phase: Phase) -> Result<u64, End> {
        loop {
            if self.stopping() {
                return Err(End::Shutdown);
            }
            let page = self
                .hub
                .store()
                .enrollment_events(last, stream::PAGE, phase)
                .await
                .map_err(|e| End::Fail(Failure::new("InternalServerError", e.to_string())))?;
            let full = page.len() == stream::PAGE;
            for event in &page {
                self.send_enrollment(None, event).await?;
                last = event.seq;
            }
            if !full {
                return Ok(last);
            }
        }
    }

    async fn service_stream(&mut self, params: Params) -> Result<(), End> {
        let hub = self.hub.clone();
        let mut live = hub.subscribe_enrollments();
        let store = hub.store();
        let fail = |e: stratos_ports::usecases::UseCaseError| {
            End::Fail(Failure::new("InternalServerError", e.to_string()))
        };
        let latest = store.latest_enrollment_seq().await.map_err(fail)?;
        let first = store
            .enrollment_events(0, 1, Phase::Backfill)
            .await
            .map_err(fail)?
            .first()
            .map(|e| e.seq);
        let start = stream::start(params.cursor, first, latest)
            .map_err(|e| End::Fail(Failure::new("FutureCursor", e.to_string())))?;
        if start.outdated {
            self.send_outdated(start.after).await?;
        }
        let mut last = self
            .replay_enrollments(start.after, Phase::Backfill)
            .await?;
        let mut tick = self.ticker();
        loop {
            match self.wake(&mut live, &mut tick).await {
                Wake::Shutdown => return Err(End::Shutdown),
                Wake::Incoming(m) => self.incoming(m).await?,
                Wake::Heartbeat => self.heartbeat().await?,
                Wake::Live(Ok(event)) => {
                    let seq = event.event.seq;
                    if seq <= last {
                        continue;
                    }
                    if seq > last + 1 {
                        last = self.replay_enrollments(last, Phase::Live).await?;
                        if seq <= last {
                            continue;
                        }
                    }
                    self.send_enrollment(Some(&event), &event.event).await?;
                    last = seq;
                }
                Wake::Live(Err(RecvError::Lagged(_))) => {
                    hub.stats().catch_ups.fetch_add(1, Ordering::Relaxed);
                    last = self.replay_enrollments(last, Phase::Live).await?;
                }
                Wake::Live(Err(RecvError::Closed)) => return Err(End::Shutdown),
            }
        }
    }
}

/// Closes every subscription (close code 1001) when the process gets SIGINT or SIGTERM, so the
/// server's graceful stop does not wait for long-lived streams to end by themselves.
pub async fn close_streams_on_signal(hub: Arc<StreamHub>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        if tokio::signal::ctrl_c().await.is_err() {
            return;
        }
    }
    hub.shut_down();
}
