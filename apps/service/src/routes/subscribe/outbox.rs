//! The per-subscriber outgoing buffer of the sync stream and the writer task that drains it
//! into the WebSocket (see the parent module's docs for why it keeps room for a last item).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix_web::web::Bytes;
use actix_ws::{CloseReason, Session};
use stratos_ports::usecases::stream::hub::StreamHub;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;

/// Frames buffered per subscriber ahead of the socket (actix-ws queues up to 32 more).
pub(super) const BUFFER_FRAMES: usize = 64;
/// Bytes buffered per subscriber ahead of the socket. A frame larger than this is let in when
/// the buffer is empty, so one big commit does not cut a consumer off.
pub(super) const BUFFER_BYTES: usize = 4 << 20;

/// What the writer task hands to the socket, in order.
pub(super) enum Out {
    Frame {
        bytes: Bytes,
        /// The frame's share of [`BUFFER_BYTES`], given back once the socket took it.
        _room: OwnedSemaphorePermit,
        /// For live commits: when the event reached the hub (delivery latency).
        published: Option<Instant>,
    },
    Ping,
    Pong(Bytes),
    /// The last item, in the room kept for it: an error frame (if any), then the close.
    Close {
        frame: Option<Bytes>,
        reason: CloseReason,
    },
}

/// The subscriber's outgoing buffer and the task that drains it into the socket.
pub(super) struct Outbox {
    pub(super) tx: mpsc::Sender<Out>,
    /// Room for [`Out::Close`], taken when the connection starts, so a full buffer cannot keep
    /// the error frame out.
    last: Option<mpsc::OwnedPermit<Out>>,
    pub(super) bytes: Arc<Semaphore>,
    /// Items the socket took: the writer's progress.
    taken: Arc<AtomicU64>,
    pub(super) writer: JoinHandle<()>,
}

impl Outbox {
    pub(super) fn new(session: Session, hub: Arc<StreamHub>) -> Self {
        let (tx, rx) = mpsc::channel(BUFFER_FRAMES + 1);
        // A fresh channel has room: this cannot fail.
        let last = tx.clone().try_reserve_owned().ok();
        let taken = Arc::new(AtomicU64::new(0));
        let writer = actix_web::rt::spawn(write_out(session, rx, hub, taken.clone()));
        Self {
            tx,
            last,
            bytes: Arc::new(Semaphore::new(BUFFER_BYTES)),
            taken,
            writer,
        }
    }

    /// Queues the last item and waits for the writer to hand it to the socket, as long as the
    /// socket takes something at least every `linger`; then drops the connection.
    pub(super) async fn close(
        mut self,
        frame: Option<Bytes>,
        reason: CloseReason,
        linger: Duration,
    ) {
        let Some(last) = self.last.take() else {
            self.writer.abort();
            return;
        };
        drop(last.send(Out::Close { frame, reason }));
        drop(self.tx);
        let mut seen = self.taken.load(Ordering::Relaxed);
        loop {
            if tokio::time::timeout(linger, &mut self.writer).await.is_ok() {
                return;
            }
            let now = self.taken.load(Ordering::Relaxed);
            if now == seen {
                self.writer.abort();
                return;
            }
            seen = now;
        }
    }
}

/// The writer task: hands the buffered items to the socket until the last one, or until the
/// client is gone.
async fn write_out(
    mut session: Session,
    mut rx: mpsc::Receiver<Out>,
    hub: Arc<StreamHub>,
    taken: Arc<AtomicU64>,
) {
    while let Some(out) = rx.recv().await {
        let sent = match out {
            Out::Frame {
                bytes,
                _room,
                published,
            } => {
                let sent = session.binary(bytes).await;
                if sent.is_ok() {
                    hub.stats().frames_sent.fetch_add(1, Ordering::Relaxed);
                    if let Some(published) = published {
                        hub.stats().record_delivery(published.elapsed());
                    }
                }
                sent
            }
            Out::Ping => session.ping(b"").await,
            Out::Pong(payload) => session.pong(&payload).await,
            Out::Close { frame, reason } => {
                if let Some(frame) = frame {
                    if session.binary(frame).await.is_err() {
                        return;
                    }
                    taken.fetch_add(1, Ordering::Relaxed);
                }
                let _ = session.close(Some(reason)).await;
                return;
            }
        };
        if sent.is_err() {
            return; // the client is gone
        }
        taken.fetch_add(1, Ordering::Relaxed);
    }
}
