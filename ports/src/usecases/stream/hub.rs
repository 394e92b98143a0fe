//! The in-process fan-out of the sync stream: the commit path hands each committed event to
//! [`StreamHub`] (after its transaction committed), which broadcasts it from memory to the live
//! subscribers of that account, and enrollment events to the service-level subscribers.
//!
//! One bounded `tokio::sync::broadcast` channel per account with subscribers (none for the
//! others: a commit nobody listens to costs one map lookup), one for enrollments. Each event is
//! shared (`Arc`) and its frame is encoded once, by the first subscriber that sends it.
//!
//! Every storage read the stream makes goes through [`StreamStore`], which counts them, so the
//! benchmark can show that live delivery reads nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use crate::enrollment_store::{EnrollmentEvent, EnrollmentStore};
use crate::env::Notifier;
use crate::repo_store::RepoStore;
use crate::usecases::UseCaseError;
use crate::usecases::stream::{self, CommitEvent, EventSink};
use bytes::Bytes;
use stratos_domain::blocks::BlockMap;
use stratos_domain::syntax::Did;
use tokio::sync::{broadcast, mpsc, watch};

/// A live event with its frame, encoded at most once however many subscribers send it.
#[derive(Debug)]
pub struct Live<T> {
    /// The event.
    pub event: T,
    /// When the committed event reached the hub (after its transaction committed).
    pub published: std::time::Instant,
    frame: OnceLock<Result<Bytes, String>>,
}

impl<T> Live<T> {
    fn new(event: T) -> Arc<Self> {
        Arc::new(Self {
            event,
            published: std::time::Instant::now(),
            frame: OnceLock::new(),
        })
    }

    /// The unfiltered frame, encoded by the first caller.
    pub fn frame(
        &self,
        encode: impl FnOnce(&T) -> Result<Vec<u8>, UseCaseError>,
    ) -> Result<Bytes, String> {
        self.frame
            .get_or_init(|| {
                encode(&self.event)
                    .map(Bytes::from)
                    .map_err(|e| e.to_string())
            })
            .clone()
    }
}

/// A committed event as broadcast.
pub type LiveCommit = Arc<Live<CommitEvent>>;
/// An enrollment event as broadcast.
pub type LiveEnrollment = Arc<Live<EnrollmentEvent>>;

/// Counters of the stream, for tests, the benchmark and operators.
#[derive(Debug)]
pub struct Stats {
    /// Storage queries made by the stream (backfill, catch-up, gap fill, remote announcements).
    pub store_queries: AtomicU64,
    /// Of those, the ones made while subscribers were live (catch-up after lagging the window,
    /// gap fill): the number the benchmark requires to stay 0.
    pub live_queries: AtomicU64,
    /// Frames sent to subscribers.
    pub frames_sent: AtomicU64,
    /// Events handed to the hub by the commit path.
    pub commits_published: AtomicU64,
    /// Subscribers that fell behind the in-memory window and caught up from the log.
    pub catch_ups: AtomicU64,
    /// Subscribers cut off because their outgoing buffer stayed full for the send timeout.
    pub slow_disconnects: AtomicU64,
    /// Subscribers currently connected.
    pub subscribers: AtomicUsize,
    /// Live commit frames by the time from the hub receiving the committed event to the frame
    /// being handed to the socket: bucket `i` counts `i` ms (rounded down), the last bucket
    /// everything from [`LATENCY_BUCKETS`] − 1 ms on.
    pub delivery_ms: [AtomicU64; LATENCY_BUCKETS],
}

/// Buckets of [`Stats::delivery_ms`] (1 ms each).
pub const LATENCY_BUCKETS: usize = 256;

impl Default for Stats {
    fn default() -> Self {
        Self {
            store_queries: AtomicU64::new(0),
            live_queries: AtomicU64::new(0),
            frames_sent: AtomicU64::new(0),
            commits_published: AtomicU64::new(0),
            catch_ups: AtomicU64::new(0),
            slow_disconnects: AtomicU64::new(0),
            subscribers: AtomicUsize::new(0),
            delivery_ms: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Stats {
    /// Counts one live delivery that took `elapsed` since the commit reached the hub.
    pub fn record_delivery(&self, elapsed: Duration) {
        let ms = usize::try_from(elapsed.as_millis()).unwrap_or(usize::MAX);
        if let Some(bucket) = self.delivery_ms.get(ms.min(LATENCY_BUCKETS - 1)) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The `p`-quantile (0..=1) of [`Stats::delivery_ms`] in ms, `None` before any delivery.
    pub fn delivery_quantile_ms(&self, p: f64) -> Option<usize> {
        let counts: Vec<u64> = self
            .delivery_ms
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((total as f64) * p.clamp(0.0, 1.0)).ceil().max(1.0) as u64;
        let mut seen = 0;
        counts.iter().position(|c| {
            seen += c;
            seen >= rank
        })
    }
}

/// A copy of [`Stats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// See [`Stats::store_queries`].
    pub store_queries: u64,
    /// See [`Stats::live_queries`].
    pub live_queries: u64,
    /// See [`Stats::frames_sent`].
    pub frames_sent: u64,
    /// See [`Stats::commits_published`].
    pub commits_published: u64,
    /// See [`Stats::catch_ups`].
    pub catch_ups: u64,
    /// See [`Stats::slow_disconnects`].
    pub slow_disconnects: u64,
    /// See [`Stats::subscribers`].
    pub subscribers: usize,
    /// Median of [`Stats::delivery_ms`].
    pub delivery_p50_ms: Option<usize>,
    /// 99th percentile of [`Stats::delivery_ms`].
    pub delivery_p99_ms: Option<usize>,
}

/// The only storage access of the stream; every call is counted.
#[derive(Clone)]
pub struct StreamStore {
    repos: Arc<dyn RepoStore>,
    enrollments: Arc<dyn EnrollmentStore>,
    stats: Arc<Stats>,
}

impl std::fmt::Debug for StreamStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamStore").finish_non_exhaustive()
    }
}

/// Whether a read happens for a subscriber that was already live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Start-up checks and backfill.
    Backfill,
    /// Catch-up or gap fill of a live subscriber, or an announcement from another instance.
    Live,
}

impl StreamStore {
    fn count(&self, phase: Phase) {
        self.stats.store_queries.fetch_add(1, Ordering::Relaxed);
        if phase == Phase::Live {
            self.stats.live_queries.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// True when the account has a repository.
    pub async fn actor_exists(&self, did: &Did) -> Result<bool, UseCaseError> {
        self.count(Phase::Backfill);
        Ok(self.repos.actor_exists(did).await?)
    }

    /// The account's latest sequence number.
    pub async fn latest_seq(&self, did: &Did) -> Result<u64, UseCaseError> {
        self.count(Phase::Backfill);
        Ok(self.repos.latest_seq(did).await?)
    }

    /// The account's events after `cursor` with their records (one or two queries).
    pub async fn actor_events(
        &self,
        did: &Did,
        cursor: u64,
        limit: usize,
        phase: Phase,
    ) -> Result<Vec<CommitEvent>, UseCaseError> {
        self.count(phase);
        let events = self.repos.events_after(did, cursor, limit).await?;
        let mut cids: Vec<_> = events
            .iter()
            .flat_map(|e| e.ops.iter().filter_map(|op| op.cid))
            .collect();
        cids.sort();
        cids.dedup();
        let blocks = if cids.is_empty() {
            BlockMap::new()
        } else {
            self.count(phase);
            self.repos.get_blocks(did, &cids).await?
        };
        Ok(events
            .iter()
            .map(|e| stream::live_event(did, e, &blocks))
            .collect())
    }

    /// The latest enrollment event number.
    pub async fn latest_enrollment_seq(&self) -> Result<u64, UseCaseError> {
        self.count(Phase::Backfill);
        Ok(self.enrollments.latest_event_seq().await?)
    }

    /// Enrollment events after `cursor`.
    pub async fn enrollment_events(
        &self,
        cursor: u64,
        limit: usize,
        phase: Phase,
    ) -> Result<Vec<EnrollmentEvent>, UseCaseError> {
        self.count(phase);
        Ok(self.enrollments.events_after(cursor, limit).await?)
    }
}

struct ActorChannel {
    tx: broadcast::Sender<LiveCommit>,
    /// Highest sequence number broadcast (0: none yet).
    last: u64,
}

/// Stream settings (from the configuration).
#[derive(Debug, Clone, Copy)]
pub struct HubSettings {
    /// Events per account kept in memory.
    pub live_window: usize,
    /// Ping interval.
    pub heartbeat: Duration,
    /// Longest a subscriber's outgoing buffer may stay full (then `ConsumerTooSlow`), and
    /// longest a cut-off subscriber may take nothing before its connection is dropped.
    pub send_timeout: Duration,
}

/// The live fan-out. Implements [`EventSink`] for the use cases.
pub struct StreamHub {
    store: StreamStore,
    settings: HubSettings,
    actors: Mutex<HashMap<String, ActorChannel>>,
    /// The enrollment broadcast and the highest number sent on it, under one lock so numbers
    /// go out in order.
    enrollments: Mutex<(broadcast::Sender<LiveEnrollment>, u64)>,
    stats: Arc<Stats>,
    shutdown: watch::Sender<bool>,
    /// Announcements to other instances (present with a notifier).
    announce: OnceLock<mpsc::Sender<String>>,
    /// Tells this instance's own announcements apart from the others'.
    instance: u64,
}

impl std::fmt::Debug for StreamHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamHub")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The Valkey channel (after the notifier's `stratos:` prefix) carrying announcements.
pub const CHANNEL: &str = "stream";

/// Announcements queued for Valkey before new ones are dropped (they are hints: a subscriber
/// on another instance that misses one is woken by the next event or its heartbeat-free
/// reconnect with a cursor).
const ANNOUNCE_QUEUE: usize = 10_000;

impl StreamHub {
    /// A hub over the given stores; `enrollment_cursor` is the enrollment log's current end (the
    /// hub announces only what comes after it).
    pub fn new(
        repos: Arc<dyn RepoStore>,
        enrollments: Arc<dyn EnrollmentStore>,
        settings: HubSettings,
        enrollment_cursor: u64,
    ) -> Self {
        let stats = Arc::new(Stats::default());
        let mut nonce = [0u8; 8];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
        Self {
            store: StreamStore {
                repos,
                enrollments,
                stats: stats.clone(),
            },
            settings,
            actors: Mutex::new(HashMap::new()),
            enrollments: Mutex::new((broadcast::channel(1024).0, enrollment_cursor)),
            stats,
            shutdown: watch::channel(false).0,
            announce: OnceLock::new(),
            instance: u64::from_le_bytes(nonce),
        }
    }

    /// The counted storage handle.
    pub fn store(&self) -> &StreamStore {
        &self.store
    }

    /// The settings.
    pub fn settings(&self) -> HubSettings {
        self.settings
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// A snapshot of the counters.
    pub fn snapshot(&self) -> StatsSnapshot {
        let s = &self.stats;
        StatsSnapshot {
            store_queries: s.store_queries.load(Ordering::Relaxed),
            live_queries: s.live_queries.load(Ordering::Relaxed),
            frames_sent: s.frames_sent.load(Ordering::Relaxed),
            commits_published: s.commits_published.load(Ordering::Relaxed),
            catch_ups: s.catch_ups.load(Ordering::Relaxed),
            slow_disconnects: s.slow_disconnects.load(Ordering::Relaxed),
            subscribers: s.subscribers.load(Ordering::Relaxed),
            delivery_p50_ms: s.delivery_quantile_ms(0.5),
            delivery_p99_ms: s.delivery_quantile_ms(0.99),
        }
    }

    /// Subscribes to one account's live events (before its backfill starts, so nothing
    /// committed in between is missed).
    pub fn subscribe_actor(&self, did: &str) -> broadcast::Receiver<LiveCommit> {
        let mut actors = lock(&self.actors);
        actors
            .entry(did.to_owned())
            .or_insert_with(|| ActorChannel {
                tx: broadcast::channel(self.settings.live_window).0,
                last: 0,
            })
            .tx
            .subscribe()
    }

    /// Drops the account's channel once its last subscriber has gone.
    pub fn release_actor(&self, did: &str) {
        let mut actors = lock(&self.actors);
        if actors.get(did).is_some_and(|c| c.tx.receiver_count() == 0) {
            actors.remove(did);
        }
    }

    /// Subscribes to enrollment events.
    pub fn subscribe_enrollments(&self) -> broadcast::Receiver<LiveEnrollment> {
        lock(&self.enrollments).0.subscribe()
    }

    /// A receiver that changes to `true` when the service stops.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Closes every subscription with a close frame (service stop).
    pub fn shut_down(&self) {
        self.shutdown.send_replace(true);
    }

    /// Broadcasts a commit to the account's live subscribers, if any. Numbers at or below the
    /// last one broadcast are dropped (an event can arrive both from this instance's commit
    /// path and from another instance's announcement).
    fn broadcast_commit(&self, event: CommitEvent) {
        let mut actors = lock(&self.actors);
        let Some(channel) = actors.get_mut(event.did.as_str()) else {
            return;
        };
        if event.seq <= channel.last {
            return;
        }
        channel.last = event.seq;
        let did = event.did.clone();
        if channel.tx.send(Live::new(event)).is_err() {
            // Fails only without receivers: every subscriber has gone.
            actors.remove(did.as_str());
        }
    }

    fn broadcast_enrollment(&self, event: EnrollmentEvent, local: bool) {
        let ends = stream::ends_actor_stream(&event);
        let did = event.did.clone();
        let seq = event.seq;
        {
            let mut guard = lock(&self.enrollments);
            if seq <= guard.1 {
                return;
            }
            guard.1 = seq;
            // No receiver is fine: the event stays in the log for later subscribers.
            let _ = guard.0.send(Live::new(event));
        }
        if ends {
            // The account's repository is gone: end its per-actor streams (after the events
            // already broadcast, which receivers still drain).
            lock(&self.actors).remove(did.as_str());
        }
        if local {
            self.announce_to_others(format!("e {} {seq}", self.instance));
        }
    }

    fn announce_to_others(&self, message: String) {
        if let Some(tx) = self.announce.get() {
            // A full queue drops the hint; see ANNOUNCE_QUEUE.
            let _ = tx.try_send(message);
        }
    }

    /// Connects the hub to other instances through `notifier`: announces this instance's events
    /// and broadcasts the other instances' events to local subscribers (read from the log once
    /// per instance, not per subscriber). Spawns two tasks on the current runtime.
    pub fn attach_notifier(self: &Arc<Self>, notifier: Arc<dyn Notifier>) {
        let (tx, mut rx) = mpsc::channel::<String>(ANNOUNCE_QUEUE);
        if self.announce.set(tx).is_err() {
            return;
        }
        let publisher = notifier.clone();
        tokio::spawn(async move {
            while let Some(message) = rx.recv().await {
                if let Err(e) = publisher.publish(CHANNEL, message.as_bytes()).await {
                    tracing::warn!(error = %e, "could not announce a stream event");
                }
            }
        });
        let hub = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                match notifier.subscribe(CHANNEL).await {
                    Ok(mut sub) => {
                        backoff = Duration::from_millis(100);
                        // Anything announced while we were not subscribed: catch up once.
                        if let Some(hub) = hub.upgrade() {
                            hub.catch_up_everything().await;
                        }
                        while let Some(message) = sub.next().await {
                            let Some(hub) = hub.upgrade() else { return };
                            hub.on_announcement(&message).await;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "stream notifier subscription failed"),
                }
                if hub.strong_count() == 0 {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        });
    }

    async fn on_announcement(&self, message: &[u8]) {
        let Ok(text) = std::str::from_utf8(message) else {
            return;
        };
        let mut parts = text.splitn(4, ' ');
        let (Some(kind), Some(instance)) = (parts.next(), parts.next()) else {
            return;
        };
        if instance.parse::<u64>().ok() == Some(self.instance) {
            return;
        }
        match kind {
            "c" => {
                let seq = parts.next().and_then(|s| s.parse::<u64>().ok());
                let did = parts.next().and_then(|d| Did::parse(d).ok());
                if let (Some(seq), Some(did)) = (seq, did) {
                    self.fetch_remote_commits(&did, seq).await;
                }
            }
            "e" => self.fetch_remote_enrollments().await,
            _ => {}
        }
    }

    /// Reads another instance's commits of `did` up to `seq` from the log and broadcasts them,
    /// when this instance has subscribers for `did`.
    async fn fetch_remote_commits(&self, did: &Did, seq: u64) {
        let last = {
            let actors = lock(&self.actors);
            match actors.get(did.as_str()) {
                Some(c) if c.tx.receiver_count() > 0 => c.last,
                _ => return,
            }
        };
        if seq <= last {
            return;
        }
        // Unknown position (no event broadcast yet): start at the announced event; each
        // subscriber fills any gap behind it from the log itself.
        let mut cursor = if last == 0 { seq - 1 } else { last };
        while cursor < seq {
            match self
                .store
                .actor_events(did, cursor, stream::PAGE, Phase::Live)
                .await
            {
                Ok(events) if !events.is_empty() => {
                    for e in events {
                        cursor = e.seq;
                        self.broadcast_commit(e);
                    }
                }
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(error = %e, %did, "reading announced events failed");
                    return;
                }
            }
        }
    }

    async fn fetch_remote_enrollments(&self) {
        let remote = Remote(self);
        if let Err(e) = stream::pump_enrollments(self.store.enrollments.as_ref(), &remote).await {
            tracing::warn!(error = %e, "reading announced enrollment events failed");
        }
        self.stats.store_queries.fetch_add(1, Ordering::Relaxed);
        self.stats.live_queries.fetch_add(1, Ordering::Relaxed);
    }

    /// After (re)subscribing to announcements: every account with local subscribers, and the
    /// enrollment log, are read once to pick up what was announced in between.
    async fn catch_up_everything(&self) {
        let dids: Vec<(String, u64)> = lock(&self.actors)
            .iter()
            .filter(|(_, c)| c.last > 0)
            .map(|(d, c)| (d.clone(), c.last))
            .collect();
        for (did, last) in dids {
            if let Ok(did) = Did::parse(&did) {
                self.fetch_remote_commits(&did, last.saturating_add(stream::PAGE as u64))
                    .await;
            }
        }
        self.fetch_remote_enrollments().await;
    }
}

impl EventSink for StreamHub {
    fn commit(&self, event: CommitEvent) {
        self.stats.commits_published.fetch_add(1, Ordering::Relaxed);
        if self.announce.get().is_some() {
            self.announce_to_others(format!("c {} {} {}", self.instance, event.seq, event.did));
        }
        self.broadcast_commit(event);
    }

    fn enrollment(&self, event: EnrollmentEvent) {
        self.broadcast_enrollment(event, true);
    }

    fn enrollment_cursor(&self) -> u64 {
        lock(&self.enrollments).1
    }
}

/// The hub as a sink for events read after another instance's announcement: broadcast, but
/// not announced again.
#[derive(Debug)]
struct Remote<'a>(&'a StreamHub);

impl EventSink for Remote<'_> {
    fn commit(&self, event: CommitEvent) {
        self.0.broadcast_commit(event);
    }

    fn enrollment(&self, event: EnrollmentEvent) {
        self.0.broadcast_enrollment(event, false);
    }

    fn enrollment_cursor(&self) -> u64 {
        self.0.enrollment_cursor()
    }
}
