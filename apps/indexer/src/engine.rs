//! The indexer's engine: the service-level stream names the accounts, one verified stream per
//! account (at most `max_connections` open, the rest waiting their turn in order) turns commits
//! into index batches, and one writer commits them — rows and cursors in one transaction.
//!
//! Exactly-once: an account's cursor (`seq`, and the revision the index reflects) is written in
//! the transaction that writes its rows, and its stream resumes after that cursor. A new
//! account (no cursor), an `OutdatedCursor`, a commit the service could not prove (`Resync`)
//! and a frame that fails verification all lead to a backfill: the account's export (verified)
//! replaces its rows, with the stream position the export covers; the stream then resumes
//! there and skips commits the export already contains (revision ≤ the export's).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use stratos_client::ClientError;
use stratos_client::firehose::{Firehose, FirehoseItem, RepoOp};
use stratos_client::frame::CommitFrame;
use stratos_client::stream::{
    EnrollmentItem, EnrollmentStream, RecordStream, StreamAuth, StreamItem,
};
use stratos_client::verify;
use stratos_client::xrpc::{Auth, StratosClient};
use stratos_domain::Cid;
use stratos_domain::appview::{self, POST_COLLECTION};
use stratos_domain::crypto::PublicKey;
use stratos_domain::enrollment::ENROLLMENT_COLLECTION;
use stratos_domain::repo::Action;
use stratos_domain::syntax::{AtUri, Datetime, Did, Nsid, RecordKey, Tid};
use stratos_ports::appview_store::{
    ActorCursor, EnrollmentChange, IndexBatch, IndexWriter, IndexedEnrollment, PostChange,
};
use tokio::sync::{Mutex, Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::config::IndexerConfig;
use crate::metrics::Metrics;

/// Failures that stop the indexer from starting.
#[derive(Debug, thiserror::Error)]
pub enum IndexerError {
    /// The index could not be read.
    #[error(transparent)]
    Store(#[from] stratos_ports::appview_store::IndexStoreError),
    /// The client could not be built.
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// Why an account's backfill failed (retried with backoff).
#[derive(Debug, thiserror::Error)]
enum BackfillError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("the export did not say which stream position it covers")]
    NoPosition,
    #[error("verification ran away: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("the writer stopped")]
    Stopped,
}

/// What the writer is handed.
enum Msg {
    /// An account's batch and, for a commit, when the service sequenced it (ms).
    Batch(IndexBatch, Option<i64>),
    /// An enrollment change with the service-level stream's position (service URL, seq), if
    /// it came from there.
    Enrollment(EnrollmentChange, Option<(String, u64)>, oneshot::Sender<()>),
    /// Commit what came before, then answer.
    Flush(oneshot::Sender<()>),
}

struct ActorTask {
    stop: watch::Sender<bool>,
    join: JoinHandle<()>,
}

struct Inner {
    config: IndexerConfig,
    store: Arc<dyn IndexWriter>,
    public: StratosClient,
    sync: StratosClient,
    metrics: Arc<Metrics>,
    permits: Arc<Semaphore>,
    actors: Mutex<HashMap<Did, ActorTask>>,
    cursors: std::sync::Mutex<HashMap<Did, ActorCursor>>,
    writer: mpsc::Sender<Msg>,
    shutdown: watch::Receiver<bool>,
}

/// A running indexer.
pub struct Indexer {
    inner: Arc<Inner>,
    shutdown: watch::Sender<bool>,
    service: JoinHandle<()>,
    firehose: Option<JoinHandle<()>>,
    writer: JoinHandle<()>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl std::fmt::Debug for Indexer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Indexer")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Indexer {
    /// Starts indexing into `store` from the service of `config`; the returned handle stops it
    /// ([`Indexer::stop`]).
    pub async fn start(
        config: IndexerConfig,
        store: Arc<dyn IndexWriter>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, IndexerError> {
        let public = StratosClient::new(&config.service_url)?;
        let sync = StratosClient::new(&config.service_url)?
            .with_auth(Auth::Bearer(config.sync_token.clone()));
        let cursors: HashMap<Did, ActorCursor> = store.cursors().await?.into_iter().collect();
        let known = store.enrollments().await?;
        let service_cursor = store.service_cursor(&config.service_url).await?;
        let (writer_tx, writer_rx) = mpsc::channel(config.batch_max.max(16) * 2);
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let inner = Arc::new(Inner {
            permits: Arc::new(Semaphore::new(config.max_connections)),
            config,
            store: store.clone(),
            public,
            sync,
            metrics: metrics.clone(),
            actors: Mutex::new(HashMap::new()),
            cursors: std::sync::Mutex::new(cursors),
            writer: writer_tx,
            shutdown: shutdown_rx,
        });
        let writer = tokio::spawn(write_loop(
            writer_rx,
            store.clone(),
            metrics,
            inner.config.batch_max,
        ));
        for e in known {
            inner.clone().follow(e.did).await;
        }
        let service = tokio::spawn(inner.clone().service_loop(service_cursor));
        let firehose = match inner.config.repo_provider.clone() {
            Some(provider) => {
                let cursor = store.service_cursor(&firehose_key(&provider)).await?;
                Some(tokio::spawn(inner.clone().firehose_loop(provider, cursor)))
            }
            None => None,
        };
        Ok(Self {
            inner,
            shutdown: shutdown_tx,
            service,
            firehose,
            writer,
        })
    }

    /// The figures.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// Stops every stream, commits what was received, and returns when the last batch is
    /// written.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.service.await;
        if let Some(f) = self.firehose {
            let _ = f.await;
        }
        let tasks: Vec<ActorTask> = self
            .inner
            .actors
            .lock()
            .await
            .drain()
            .map(|(_, t)| t)
            .collect();
        for t in &tasks {
            let _ = t.stop.send(true);
        }
        for t in tasks {
            let _ = t.join.await;
        }
        let (tx, rx) = oneshot::channel();
        if self.inner.writer.send(Msg::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
        drop(self.inner);
        let _ = self.writer.await;
    }
}

impl Inner {
    fn backoff(&self, failures: u32) -> Duration {
        Duration::from_millis(250)
            .saturating_mul(1u32 << failures.min(16))
            .min(self.config.max_backoff)
    }

    fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Starts following `did` (no-op when already followed).
    async fn follow(self: Arc<Self>, did: Did) {
        let mut actors = self.actors.lock().await;
        if actors.contains_key(&did) || self.stopping() {
            return;
        }
        let (stop, stop_rx) = watch::channel(false);
        let join = tokio::spawn(self.clone().actor_loop(did.clone(), stop_rx));
        actors.insert(did, ActorTask { stop, join });
        self.metrics.actors.store(actors.len(), Ordering::Relaxed);
    }

    /// Stops following `did` and waits until its task sent its last batch.
    async fn unfollow(&self, did: &Did) {
        let task = {
            let mut actors = self.actors.lock().await;
            let t = actors.remove(did);
            self.metrics.actors.store(actors.len(), Ordering::Relaxed);
            t
        };
        if let Some(t) = task {
            let _ = t.stop.send(true);
            let _ = t.join.await;
        }
        if let Ok(mut cursors) = self.cursors.lock() {
            cursors.remove(did);
        }
    }

    /// The service-level stream: enrollments in, accounts followed or dropped.
    async fn service_loop(self: Arc<Self>, cursor: Option<u64>) {
        let mut shutdown = self.shutdown.clone();
        let flag = self.metrics.service_connected.clone();
        let open = |cursor| {
            EnrollmentStream::builder(&self.config.service_url)
                .auth(StreamAuth::SyncToken(self.config.sync_token.clone()))
                .max_backoff(self.config.max_backoff)
                .connected_flag(flag.clone())
                .cursor(cursor)
                .build()
        };
        let mut stream = open(cursor);
        let mut failures = 0u32;
        loop {
            let item = tokio::select! {
                item = stream.next() => item,
                _ = shutdown.changed() => break,
            };
            match item {
                Ok(EnrollmentItem::Enrollment(e)) => {
                    failures = 0;
                    self.metrics
                        .service_connected
                        .store(true, Ordering::Relaxed);
                    if let Ok(t) = Datetime::parse(&e.time) {
                        self.metrics
                            .service_lag_ms
                            .store(now_ms() - t.to_unix_millis(), Ordering::Relaxed);
                    }
                    let change = if e.action == "unenroll" {
                        self.unfollow(&e.did).await;
                        EnrollmentChange::Remove(e.did.clone())
                    } else {
                        EnrollmentChange::Upsert(IndexedEnrollment {
                            did: e.did.clone(),
                            service_url: self.config.service_url.clone(),
                            enrolled_at: e.time.clone(),
                            boundaries: e.boundaries.clone(),
                        })
                    };
                    let (tx, rx) = oneshot::channel();
                    if self
                        .writer
                        .send(Msg::Enrollment(
                            change,
                            Some((self.config.service_url.clone(), e.seq)),
                            tx,
                        ))
                        .await
                        .is_err()
                    {
                        break;
                    }
                    // Applied before the account's first batch: its enrollment row exists
                    // when its posts do.
                    let _ = rx.await;
                    self.metrics.enrollments.fetch_add(1, Ordering::Relaxed);
                    if e.action != "unenroll" {
                        self.clone().follow(e.did).await;
                    }
                }
                Ok(EnrollmentItem::OutdatedCursor { message }) => {
                    tracing::warn!(
                        message = message.as_deref().unwrap_or(""),
                        "service-level stream: cursor older than the service retains; enrollment changes in between are missed"
                    );
                }
                Err(e) => {
                    self.metrics
                        .service_connected
                        .store(false, Ordering::Relaxed);
                    tracing::warn!(error = %e, "service-level stream failed; retrying");
                    failures = failures.saturating_add(1);
                    tokio::select! {
                        () = tokio::time::sleep(self.backoff(failures)) => {}
                        _ = shutdown.changed() => break,
                    }
                    stream = open(stream.cursor());
                }
            }
        }
        self.metrics
            .service_connected
            .store(false, Ordering::Relaxed);
    }

    /// Watches a PDS's or relay's firehose for enrollment records in this service: a verified
    /// record (the service's attestation, checked against the key of the service's DID
    /// document) makes the account followed; a deleted one drops it when the service confirms
    /// the account left. The firehose's cursor is stored every few seconds.
    async fn firehose_loop(self: Arc<Self>, provider: String, cursor: Option<u64>) {
        let mut shutdown = self.shutdown.clone();
        let mut failures = 0u32;
        let (rkey, service_keys) = loop {
            match self.service_identity().await {
                Ok(found) => break found,
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = %e, "reading the service's DID document failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(self.backoff(failures)) => {}
                        _ = shutdown.changed() => return,
                    }
                }
            }
        };
        let key_name = firehose_key(&provider);
        let open = |cursor| {
            Firehose::builder(&provider, ENROLLMENT_COLLECTION)
                .max_backoff(self.config.max_backoff)
                .cursor(cursor)
                .build()
        };
        let mut stream = open(cursor);
        let mut saved = cursor;
        let mut last_save = std::time::Instant::now();
        loop {
            let item = tokio::select! {
                item = stream.next() => item,
                _ = shutdown.changed() => break,
            };
            match item {
                Ok(FirehoseItem::Commit { repo, ops, .. }) => {
                    failures = 0;
                    for op in ops.into_iter().filter(|op| op.rkey == rkey.as_str()) {
                        self.clone().firehose_op(&repo, op, &service_keys).await;
                    }
                }
                Ok(FirehoseItem::OutdatedCursor) => {
                    tracing::warn!(%provider, "firehose cursor older than the host retains");
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(%provider, error = %e, "firehose failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(self.backoff(failures)) => {}
                        _ = shutdown.changed() => break,
                    }
                    stream = open(stream.cursor());
                }
            }
            if stream.cursor() != saved && last_save.elapsed() >= Duration::from_secs(5) {
                saved = stream.cursor();
                last_save = std::time::Instant::now();
                if let Some(seq) = saved
                    && let Err(e) = self.store.set_service_cursor(&key_name, seq).await
                {
                    tracing::warn!(error = %e, "storing the firehose cursor failed");
                }
            }
        }
        if let Some(seq) = stream.cursor()
            && stream.cursor() != saved
        {
            let _ = self.store.set_service_cursor(&key_name, seq).await;
        }
    }

    async fn firehose_op(self: Arc<Self>, repo: &Did, op: RepoOp, service_keys: &[PublicKey]) {
        match op.action {
            Action::Create | Action::Update => {
                let checked = op
                    .record
                    .as_ref()
                    .ok_or_else(|| ClientError::Frame("the commit lacks the record".into()))
                    .and_then(|r| {
                        stratos_domain::data::ipld_to_json(r)
                            .map_err(|e| ClientError::Verification(Box::new(e)))
                    })
                    .and_then(|json| {
                        let mut last = ClientError::Discovery("no service key".into());
                        for key in service_keys {
                            match verify::enrollment_record(repo, &json, key) {
                                Ok(found) => return Ok(found),
                                Err(e) => last = e,
                            }
                        }
                        Err(last)
                    });
                match checked {
                    Ok(_) => {
                        self.metrics
                            .firehose_enrollments
                            .fetch_add(1, Ordering::Relaxed);
                        self.follow(repo.clone()).await;
                    }
                    Err(e) => {
                        self.metrics
                            .firehose_rejected
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%repo, error = %e, "an enrollment record on the firehose did not verify");
                    }
                }
            }
            Action::Delete => {
                // The record going is a hint; the service says whether the account left.
                let left =
                    matches!(self.public.enrollment_status(repo).await, Ok(s) if !s.enrolled);
                if left {
                    self.unfollow(repo).await;
                    let (tx, rx) = oneshot::channel();
                    if self
                        .writer
                        .send(Msg::Enrollment(
                            EnrollmentChange::Remove(repo.clone()),
                            None,
                            tx,
                        ))
                        .await
                        .is_ok()
                    {
                        let _ = rx.await;
                    }
                }
            }
        }
    }

    /// The enrollment record key of this service and the keys of the DID document it serves.
    async fn service_identity(&self) -> Result<(RecordKey, Vec<PublicKey>), ClientError> {
        let doc = self.public.did_document().await?;
        let did = doc["id"]
            .as_str()
            .and_then(|id| Did::parse(id).ok())
            .ok_or_else(|| ClientError::Discovery("the DID document has no valid id".into()))?;
        let keys = stratos_client::discovery::document_keys(&doc);
        if keys.is_empty() {
            return Err(ClientError::Discovery(
                "the service's DID document lists no key".into(),
            ));
        }
        let rkey = stratos_domain::enrollment::enrollment_rkey(&did)
            .map_err(|e| ClientError::Verification(Box::new(e)))?;
        Ok((rkey, keys))
    }

    /// The account's signing key, as the service reports it (`enrollment.status`).
    async fn signing_key(&self, did: &Did) -> Result<PublicKey, ClientError> {
        let status = self.public.enrollment_status(did).await?;
        let key = status
            .signing_key
            .ok_or_else(|| ClientError::Discovery(format!("{did} is not enrolled")))?;
        PublicKey::from_did_key(&key).map_err(|e| ClientError::Verification(Box::new(e)))
    }

    /// One account: wait for a connection, follow its stream, give the connection up when
    /// idle while others wait, until stopped.
    async fn actor_loop(self: Arc<Self>, did: Did, mut stop: watch::Receiver<bool>) {
        let mut failures = 0u32;
        let key = loop {
            match self.signing_key(&did).await {
                Ok(k) => break k,
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(%did, error = %e, "signing key lookup failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(self.backoff(failures)) => {}
                        _ = stop.changed() => return,
                    }
                }
            }
        };
        let stored = self.cursors.lock().ok().and_then(|c| c.get(&did).cloned());
        let mut position = Position {
            seq: stored.as_ref().map(|c| c.seq),
            floor: stored.and_then(|c| c.rev),
            chain: None,
        };
        loop {
            self.metrics.actors_waiting.fetch_add(1, Ordering::Relaxed);
            let permit = tokio::select! {
                p = self.permits.clone().acquire_owned() => p,
                _ = stop.changed() => {
                    self.metrics.actors_waiting.fetch_sub(1, Ordering::Relaxed);
                    return;
                }
            };
            self.metrics.actors_waiting.fetch_sub(1, Ordering::Relaxed);
            let Ok(_permit) = permit else { return };
            self.metrics
                .actors_connected
                .fetch_add(1, Ordering::Relaxed);
            let end = self.session(&did, &key, &mut position, &mut stop).await;
            self.metrics
                .actors_connected
                .fetch_sub(1, Ordering::Relaxed);
            match end {
                SessionEnd::Stopped => return,
                SessionEnd::Evicted => tokio::task::yield_now().await,
            }
        }
    }

    /// Follows the account's stream while holding a connection.
    async fn session(
        &self,
        did: &Did,
        key: &PublicKey,
        pos: &mut Position,
        stop: &mut watch::Receiver<bool>,
    ) -> SessionEnd {
        let mut failures = 0u32;
        if pos.seq.is_none()
            && let Some(end) = self.backfill_until_done(did, key, pos, stop).await
        {
            return end;
        }
        let mut stream = RecordStream::builder(&self.config.service_url, did.clone(), key.clone())
            .auth(StreamAuth::SyncToken(self.config.sync_token.clone()))
            .max_backoff(self.config.max_backoff)
            .cursor(pos.seq)
            .chain(pos.chain)
            .build();
        loop {
            let item = tokio::select! {
                item = stream.next() => item,
                _ = stop.changed() => return SessionEnd::Stopped,
                () = tokio::time::sleep(self.config.idle_eviction) => {
                    if self.permits.available_permits() == 0
                        && self.metrics.actors_waiting.load(Ordering::Relaxed) > 0
                    {
                        return SessionEnd::Evicted;
                    }
                    continue;
                }
            };
            match item {
                Ok(StreamItem::Commit { frame, .. }) => {
                    failures = 0;
                    self.metrics.frames.fetch_add(1, Ordering::Relaxed);
                    pos.chain = stream.chain();
                    if self.index_commit(did, &frame, pos).await.is_err() {
                        return SessionEnd::Stopped;
                    }
                }
                // Each of these is answered the same way: re-read the account from its export
                // and resume the stream at the position the export covers.
                Ok(StreamItem::Resync { frame }) => {
                    tracing::info!(%did, seq = frame.seq, "commit without proof; backfilling");
                    if let Some(end) = self.rebuild(did, key, pos, stop, &mut stream).await {
                        return end;
                    }
                }
                Ok(StreamItem::OutdatedCursor { .. }) => {
                    tracing::info!(%did, "cursor older than the service retains; backfilling");
                    if let Some(end) = self.rebuild(did, key, pos, stop, &mut stream).await {
                        return end;
                    }
                }
                Err(
                    e @ (ClientError::Unverified { .. }
                    | ClientError::BrokenChain(_)
                    | ClientError::NoProof(_)),
                ) => {
                    self.metrics
                        .verification_failures
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%did, error = %e, "a frame failed verification and was not indexed; backfilling");
                    if let Some(end) = self.rebuild(did, key, pos, stop, &mut stream).await {
                        return end;
                    }
                }
                Err(ClientError::Refused { error, .. }) if error == "FutureCursor" => {
                    // The service's log is behind the stored cursor (restored from a backup):
                    // what the index holds may not exist there; start again from the export.
                    tracing::warn!(%did, "the stored cursor is ahead of the service; backfilling");
                    if let Some(end) = self.rebuild(did, key, pos, stop, &mut stream).await {
                        return end;
                    }
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(%did, error = %e, "account stream failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(self.backoff(failures)) => {}
                        _ = stop.changed() => return SessionEnd::Stopped,
                    }
                    stream.resume_from(pos.seq, None);
                }
            }
        }
    }

    /// Backfills the account, then resumes `stream` at the export's position; `Some` when the
    /// session must end instead.
    async fn rebuild(
        &self,
        did: &Did,
        key: &PublicKey,
        pos: &mut Position,
        stop: &mut watch::Receiver<bool>,
        stream: &mut RecordStream,
    ) -> Option<SessionEnd> {
        let end = self.backfill_until_done(did, key, pos, stop).await;
        if end.is_none() {
            stream.resume_from(pos.seq, None);
        }
        end
    }

    /// Turns one verified commit into a batch for the writer.
    async fn index_commit(
        &self,
        did: &Did,
        frame: &CommitFrame,
        pos: &mut Position,
    ) -> Result<(), ()> {
        let skip = pos.floor.as_ref().is_some_and(|floor| frame.rev <= *floor);
        // When the service sequenced the commit: the rows' indexedAt and the lag's start.
        let sequenced = Datetime::parse(&frame.time).ok();
        let changes = if skip {
            Vec::new()
        } else {
            let indexed_at = sequenced
                .clone()
                .unwrap_or_else(|| Datetime::from_unix_millis(now_ms()));
            commit_changes(did, frame, &indexed_at)
        };
        pos.seq = Some(frame.seq);
        if !skip {
            pos.floor = None;
        }
        let batch = IndexBatch {
            did: did.clone(),
            replace: false,
            changes,
            cursor: ActorCursor {
                seq: frame.seq,
                rev: Some(pos.floor.clone().unwrap_or_else(|| frame.rev.clone())),
            },
        };
        self.writer
            .send(Msg::Batch(batch, sequenced.map(|t| t.to_unix_millis())))
            .await
            .map_err(drop)
    }

    /// Backfills until it succeeds; `Some` when the session must end instead.
    async fn backfill_until_done(
        &self,
        did: &Did,
        key: &PublicKey,
        pos: &mut Position,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<SessionEnd> {
        let mut failures = 0u32;
        loop {
            match self.backfill(did, key, pos).await {
                Ok(()) => return None,
                Err(BackfillError::Stopped) => return Some(SessionEnd::Stopped),
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(%did, error = %e, "backfill failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(self.backoff(failures)) => {}
                        _ = stop.changed() => return Some(SessionEnd::Stopped),
                    }
                }
            }
        }
    }

    /// Replaces the account's rows with its verified export.
    async fn backfill(
        &self,
        did: &Did,
        key: &PublicKey,
        pos: &mut Position,
    ) -> Result<(), BackfillError> {
        let started = std::time::Instant::now();
        let (car, seq) = self.sync.export_car_for_sync(did).await?;
        let seq = seq.ok_or(BackfillError::NoPosition)?;
        let (k, d) = (key.clone(), did.clone());
        // Verification is CPU-bound and linear in the repository: off the async workers.
        let export = tokio::task::spawn_blocking(move || verify::repo_export_records(&k, &d, &car))
            .await??;
        let indexed_at = Datetime::from_unix_millis(now_ms());
        let prefix = format!("{POST_COLLECTION}/");
        let changes = export
            .records
            .iter()
            .filter_map(|r| {
                let rkey = RecordKey::parse(r.path.strip_prefix(&prefix)?).ok()?;
                appview::post_row(did, &rkey, &r.cid, &r.value, &indexed_at)
                    .ok()
                    .map(|row| PostChange::Upsert(Box::new(row)))
            })
            .collect();
        let batch = IndexBatch {
            did: did.clone(),
            replace: true,
            changes,
            cursor: ActorCursor {
                seq,
                rev: Some(export.rev.clone()),
            },
        };
        self.writer
            .send(Msg::Batch(batch, None))
            .await
            .map_err(|_| BackfillError::Stopped)?;
        self.metrics.backfills.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            %did,
            records = export.records.len(),
            ms = started.elapsed().as_millis() as u64,
            "backfilled from the export (handed to the writer)"
        );
        pos.seq = Some(seq);
        pos.floor = Some(export.rev);
        pos.chain = None;
        Ok(())
    }
}

/// The name a firehose's cursor is stored under.
fn firehose_key(provider: &str) -> String {
    format!("firehose:{}", provider.trim_end_matches('/'))
}

/// Where an account's stream stands in this process.
struct Position {
    /// The last sequence number sent to the writer.
    seq: Option<u64>,
    /// Commits of this revision or older are already indexed (after a backfill).
    floor: Option<Tid>,
    /// The data root the last verified commit reached.
    chain: Option<Cid>,
}

enum SessionEnd {
    Stopped,
    Evicted,
}

/// The index changes of one commit: its `zone.stratos.feed.post` ops.
fn commit_changes(did: &Did, frame: &CommitFrame, indexed_at: &Datetime) -> Vec<PostChange> {
    let Ok(collection) = Nsid::parse(POST_COLLECTION) else {
        return Vec::new();
    };
    frame
        .ops
        .iter()
        .filter_map(|op| {
            let (coll, rkey) = op.path.trim_start_matches('/').split_once('/')?;
            if coll != POST_COLLECTION {
                return None;
            }
            let rkey = RecordKey::parse(rkey).ok()?;
            match op.action {
                Action::Delete => Some(PostChange::Delete(AtUri::for_record(
                    did,
                    &collection,
                    &rkey,
                ))),
                Action::Create | Action::Update => {
                    let (cid, record) = (op.cid?, op.record.as_ref()?);
                    appview::post_row(did, &rkey, &cid, record, indexed_at)
                        .ok()
                        .map(|row| PostChange::Upsert(Box::new(row)))
                }
            }
        })
        .collect()
}

/// The one writer: takes what is ready (up to `max` batches), commits it in one transaction,
/// retries a failed transaction until it succeeds (nothing is dropped), and answers flushes.
async fn write_loop(
    mut rx: mpsc::Receiver<Msg>,
    store: Arc<dyn IndexWriter>,
    metrics: Arc<Metrics>,
    max: usize,
) {
    let mut pending: Vec<IndexBatch> = Vec::new();
    let mut times: Vec<i64> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Batch(b, t) => {
                    pending.push(b);
                    times.extend(t);
                }
                Msg::Enrollment(change, position, done) => {
                    commit(&store, &metrics, &mut pending, &mut times).await;
                    let mut failures = 0u32;
                    let position = position.as_ref().map(|(s, q)| (s.as_str(), *q));
                    while let Err(e) = store.apply_enrollment(&change, position).await {
                        failures = failures.saturating_add(1);
                        metrics.write_failures.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(error = %e, "writing an enrollment failed; retrying");
                        tokio::time::sleep(Duration::from_millis(100 << failures.min(6))).await;
                    }
                    let _ = done.send(());
                }
                Msg::Flush(done) => {
                    commit(&store, &metrics, &mut pending, &mut times).await;
                    let _ = done.send(());
                }
            }
            if pending.len() < max {
                next = rx.try_recv().ok();
            }
        }
        commit(&store, &metrics, &mut pending, &mut times).await;
    }
    commit(&store, &metrics, &mut pending, &mut times).await;
}

async fn commit(
    store: &Arc<dyn IndexWriter>,
    metrics: &Metrics,
    pending: &mut Vec<IndexBatch>,
    times: &mut Vec<i64>,
) {
    if pending.is_empty() {
        return;
    }
    let mut failures = 0u32;
    while let Err(e) = store.apply(pending).await {
        failures = failures.saturating_add(1);
        metrics.write_failures.fetch_add(1, Ordering::Relaxed);
        tracing::error!(error = %e, batches = pending.len(), "index transaction failed; retrying");
        tokio::time::sleep(Duration::from_millis(100 << failures.min(6))).await;
    }
    metrics.write_batches.fetch_add(1, Ordering::Relaxed);
    let (mut up, mut del) = (0u64, 0u64);
    for b in pending.iter() {
        for c in &b.changes {
            match c {
                PostChange::Upsert(_) => up += 1,
                PostChange::Delete(_) => del += 1,
            }
        }
    }
    metrics.posts_upserted.fetch_add(up, Ordering::Relaxed);
    metrics.posts_deleted.fetch_add(del, Ordering::Relaxed);
    let now = now_ms();
    for t in times.drain(..) {
        metrics.observe_lag_ms(now - t);
    }
    pending.clear();
}
