//! Outbox delivery: claims items under a lease, performs them on the users' PDSes through the
//! [`Deliver`] port, and completes, retries (exponential backoff with full jitter, capped),
//! dead-letters or holds them.
//!
//! One [`Delivery::run_once`] claims a batch, groups it by account (a claim hands out each
//! account's items oldest first, see [`crate::outbox`]), and works on up to
//! [`DeliverySettings::accounts_at_once`] accounts at once, each account's items one after the
//! other:
//!
//! | outcome of an item | what happens to it | and to the account's later items in the batch |
//! |---|---|---|
//! | delivered | completed (removed) | go on |
//! | [`DeliveryFailure::Retry`] (or the attempt timed out) | one attempt counted, due again after the backoff; a dead letter after [`DeliverySettings::max_attempts`] | given back untouched (they wait behind it), unless it just died |
//! | [`DeliveryFailure::Permanent`] | a dead letter at once | go on (a dead letter blocks nothing) |
//! | [`DeliveryFailure::NeedsReauthorization`] | given back without an attempt, due again after [`DeliverySettings::reauthorization_wait_ms`]; the account is reported | given back untouched |
//!
//! An item is only started while its lease has at least [`DeliverySettings::attempt_timeout_ms`]
//! left, and an attempt is cut off after that long, so a lease never runs out while its item is
//! being performed (given instance clocks that agree): another instance cannot claim the
//! account's items meanwhile. Delivery is at least once — a completion that fails after the PDS
//! took the write leaves the item to be performed again — which `putRecord` with a fixed rkey
//! and `deleteRecord` tolerate.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use rand_core::{OsRng, RngCore};
use stratos_domain::syntax::Did;
use tokio::task::JoinSet;

use super::UseCaseError;
use crate::env::Clock;
use crate::outbox::{ClaimedItem, DeadLetter, Disposition, FailedAttempt, Outbox, OutboxError};
pub use crate::pds::{Deliver, DeliveryFailure};

/// How delivery claims, retries and waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliverySettings {
    /// How long a claim holds its items (ms). Must exceed the time a batch of one account takes
    /// with every item at its timeout, or the account's last items are given back unattempted.
    pub lease_ms: i64,
    /// Items claimed per run.
    pub batch_size: usize,
    /// Accounts worked on at once within a batch.
    pub accounts_at_once: usize,
    /// Failed attempts after which an item becomes a dead letter.
    pub max_attempts: u32,
    /// The first retry waits up to this long (ms); each further failure doubles the bound.
    pub backoff_base_ms: i64,
    /// The largest bound a retry waits (ms).
    pub backoff_cap_ms: i64,
    /// An attempt taking longer is cut off and counts as a transient failure (ms).
    pub attempt_timeout_ms: i64,
    /// How long an account that must authorise Stratos again waits before its items are tried
    /// again (ms).
    pub reauthorization_wait_ms: i64,
    /// How long [`Delivery::run`] waits when a run found nothing to do, or failed (ms).
    pub idle_wait_ms: i64,
    /// How long a woken worker waits before it claims (ms; see [`Delivery::with_wakeup`]): the
    /// writes of a burst go out in one claim instead of one claim per commit, which bounds the
    /// claims of a busy service at about 1000 / this per second.
    pub wakeup_delay_ms: i64,
}

impl Default for DeliverySettings {
    /// A 2-minute lease; 256 items and 16 accounts at once; 30 attempts; backoff from 1 s up to
    /// 1 h, so the waits between the 30 attempts are bounded by about 18 h in all (full jitter:
    /// about 9 h on average) — an outage shorter than that loses nothing; 30 s per attempt;
    /// 10 min before retrying an account that needs re-authorisation; 1 s idle wait; 20 ms after
    /// a wake-up.
    fn default() -> Self {
        Self {
            lease_ms: 120_000,
            batch_size: 256,
            accounts_at_once: 16,
            max_attempts: 30,
            backoff_base_ms: 1_000,
            backoff_cap_ms: 3_600_000,
            attempt_timeout_ms: 30_000,
            reauthorization_wait_ms: 600_000,
            idle_wait_ms: 1_000,
            wakeup_delay_ms: 20,
        }
    }
}

/// What one [`Delivery::run_once`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Items claimed.
    pub claimed: usize,
    /// Items performed and completed.
    pub delivered: usize,
    /// Items that failed and wait for a retry.
    pub retried: usize,
    /// Items that became dead letters.
    pub dead: usize,
    /// Items given back without an attempt (behind a failed item of their account, held for
    /// re-authorisation, or too close to the end of the lease).
    pub held: usize,
    /// Accounts whose PDS said they must authorise Stratos again (each once, in DID order):
    /// mark their enrollments.
    pub needs_reauthorization: Vec<Did>,
    /// Outbox calls that failed after the claim (a lost lease, the backend), and accounts whose
    /// delivery panicked: those items are claimable again when their lease runs out.
    pub outbox_errors: usize,
}

impl DeliveryReport {
    /// One `info` line for a batch that claimed anything (failed claims are logged by
    /// [`Delivery::run_with`] itself).
    pub fn log(&self) {
        if self.claimed > 0 {
            tracing::info!(
                claimed = self.claimed,
                delivered = self.delivered,
                retried = self.retried,
                dead = self.dead,
                held = self.held,
                reauthorize = self.needs_reauthorization.len(),
                outbox_errors = self.outbox_errors,
                "outbox delivery"
            );
        }
    }

    fn add(&mut self, other: DeliveryReport) {
        self.claimed += other.claimed;
        self.delivered += other.delivered;
        self.retried += other.retried;
        self.dead += other.dead;
        self.held += other.held;
        self.outbox_errors += other.outbox_errors;
        self.needs_reauthorization
            .extend(other.needs_reauthorization);
    }
}

/// Why a run did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// The claim failed.
    #[error("claiming outbox items: {0}")]
    Claim(#[source] OutboxError),
}

/// The bound of the wait before retry number `attempts` (the number of failed attempts so far,
/// at least 1): `base × 2^(attempts − 1)`, at most `cap`.
pub fn backoff_bound_ms(settings: &DeliverySettings, attempts: u32) -> i64 {
    let base = settings.backoff_base_ms.max(1);
    let cap = settings.backoff_cap_ms.max(base);
    let doublings = attempts.saturating_sub(1).min(62);
    base.checked_mul(1_i64 << doublings)
        .map_or(cap, |b| b.min(cap))
}

/// The wait before retry number `attempts` with full jitter: uniform in `1..=bound` from the
/// random `draw` (so failures of many items spread out instead of retrying together).
pub fn backoff_ms(settings: &DeliverySettings, attempts: u32, draw: u64) -> i64 {
    let bound = u64::try_from(backoff_bound_ms(settings, attempts)).unwrap_or(1);
    i64::try_from(draw % bound + 1).unwrap_or(1)
}

/// The delivery worker: an outbox, the PDS port, a clock and settings. Cheap to clone.
#[derive(Clone)]
pub struct Delivery {
    outbox: Arc<dyn Outbox>,
    pds: Arc<dyn Deliver>,
    clock: Arc<dyn Clock>,
    settings: DeliverySettings,
    wakeup: Option<Arc<tokio::sync::Notify>>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Delivery {
    /// A worker draining `outbox` into `pds`, on `clock`'s time.
    pub fn new(
        outbox: Arc<dyn Outbox>,
        pds: Arc<dyn Deliver>,
        clock: Arc<dyn Clock>,
        settings: DeliverySettings,
    ) -> Self {
        Self {
            outbox,
            pds,
            clock,
            settings,
            wakeup: None,
        }
    }

    /// Ends [`Delivery::run`]'s idle wait early whenever `wakeup` is notified (`notify_one`;
    /// a notification while a batch runs is kept for the next wait): signal it after queueing
    /// items, so a new stub goes out at once instead of after up to
    /// [`DeliverySettings::idle_wait_ms`]. [`crate::Stratos::delivery`] wires it to every commit
    /// and enrollment change.
    #[must_use]
    pub fn with_wakeup(mut self, wakeup: Arc<tokio::sync::Notify>) -> Self {
        self.wakeup = Some(wakeup);
        self
    }

    /// The settings.
    pub fn settings(&self) -> &DeliverySettings {
        &self.settings
    }

    /// Claims one batch and works it off (see the module docs). Fails only when the claim
    /// fails; later outbox failures are counted in the report.
    pub async fn run_once(&self) -> Result<DeliveryReport, DeliveryError> {
        let now = self.clock.now_ms();
        let claimed = self
            .outbox
            .claim(now, self.settings.lease_ms, self.settings.batch_size.max(1))
            .await
            .map_err(DeliveryError::Claim)?;
        let mut report = DeliveryReport {
            claimed: claimed.len(),
            ..DeliveryReport::default()
        };
        let mut accounts: BTreeMap<Did, Vec<ClaimedItem>> = BTreeMap::new();
        for item in claimed {
            accounts
                .entry(item.item.did.clone())
                .or_default()
                .push(item);
        }
        let mut accounts = accounts.into_values();
        let mut running = JoinSet::new();
        let at_once = self.settings.accounts_at_once.max(1);
        loop {
            while running.len() < at_once {
                let Some(items) = accounts.next() else { break };
                let worker = self.clone();
                running.spawn(async move { worker.account(items).await });
            }
            match running.join_next().await {
                Some(Ok(done)) => report.add(done),
                // A panicking `Deliver`: the account's items come back when the lease runs out.
                Some(Err(_)) => report.outbox_errors += 1,
                None => break,
            }
        }
        report.needs_reauthorization.sort();
        report.needs_reauthorization.dedup();
        Ok(report)
    }

    /// One account's items of a batch, oldest first, one after the other.
    async fn account(&self, items: Vec<ClaimedItem>) -> DeliveryReport {
        let mut report = DeliveryReport::default();
        let mut rest = items.into_iter();
        while let Some(claimed) = rest.next() {
            let now = self.clock.now_ms();
            let hold_until =
                if now.saturating_add(self.settings.attempt_timeout_ms) > claimed.leased_until_ms {
                    // Too little lease left to start: give it and the rest back as they are.
                    Some(now)
                } else {
                    match self.attempt(&claimed).await {
                        Ok(()) => {
                            match self.outbox.complete(claimed.lease()).await {
                                Ok(()) => report.delivered += 1,
                                Err(_) => {
                                    report.outbox_errors += 1;
                                    // Someone else may hold the account's items now.
                                    return report;
                                }
                            }
                            None
                        }
                        Err(DeliveryFailure::NeedsReauthorization) => {
                            report.needs_reauthorization.push(claimed.item.did.clone());
                            Some(
                                self.clock
                                    .now_ms()
                                    .saturating_add(self.settings.reauthorization_wait_ms),
                            )
                        }
                        Err(failure) => match self.fail(&claimed, failure).await {
                            Ok(Disposition::Dead) => {
                                report.dead += 1;
                                None
                            }
                            Ok(Disposition::Retry) => {
                                report.retried += 1;
                                let now = self.clock.now_ms();
                                self.give_back(rest, now, &mut report).await;
                                return report;
                            }
                            Err(_) => {
                                report.outbox_errors += 1;
                                return report;
                            }
                        },
                    }
                };
            if let Some(due) = hold_until {
                self.give_back(std::iter::once(claimed).chain(rest), due, &mut report)
                    .await;
                return report;
            }
        }
        report
    }

    /// One attempt, cut off after the attempt timeout.
    async fn attempt(&self, claimed: &ClaimedItem) -> Result<(), DeliveryFailure> {
        let limit = Duration::from_millis(
            u64::try_from(self.settings.attempt_timeout_ms.max(1)).unwrap_or(1),
        );
        match tokio::time::timeout(limit, self.pds.deliver(&claimed.item)).await {
            Ok(result) => result,
            Err(_) => Err(DeliveryFailure::Retry(format!(
                "no answer within {} ms",
                self.settings.attempt_timeout_ms
            ))),
        }
    }

    /// Records a failed attempt: a dead letter when permanent or out of attempts, else due
    /// after the backoff.
    async fn fail(
        &self,
        claimed: &ClaimedItem,
        failure: DeliveryFailure,
    ) -> Result<Disposition, OutboxError> {
        let now = self.clock.now_ms();
        let attempts = claimed.attempts.saturating_add(1);
        let wait = backoff_ms(&self.settings, attempts, OsRng.next_u64());
        self.outbox
            .fail(
                claimed.lease(),
                FailedAttempt {
                    now_ms: now,
                    retry_at_ms: now.saturating_add(wait),
                    max_attempts: self.settings.max_attempts,
                    permanent: matches!(failure, DeliveryFailure::Permanent(_)),
                    error: failure.to_string(),
                },
            )
            .await
    }

    /// Gives items back without an attempt, due at `due_ms` at the earliest.
    async fn give_back(
        &self,
        items: impl Iterator<Item = ClaimedItem>,
        due_ms: i64,
        report: &mut DeliveryReport,
    ) {
        for item in items {
            match self.outbox.release(item.lease(), due_ms).await {
                Ok(()) => report.held += 1,
                Err(_) => report.outbox_errors += 1,
            }
        }
    }

    /// Runs batches until `shutdown` completes: again at once after a batch that claimed
    /// something, after [`DeliverySettings::idle_wait_ms`] after an empty batch or a failed
    /// claim. `on_report` sees every batch's report (mark the accounts that need
    /// re-authorisation there). A batch in progress when `shutdown` completes is finished
    /// first (each attempt is bounded by the attempt timeout).
    pub async fn run_with(
        &self,
        shutdown: impl Future<Output = ()>,
        mut on_report: impl FnMut(Result<&DeliveryReport, &DeliveryError>),
    ) {
        let mut shutdown = pin!(shutdown);
        let idle =
            Duration::from_millis(u64::try_from(self.settings.idle_wait_ms.max(1)).unwrap_or(1));
        loop {
            if poll_once(shutdown.as_mut()).await {
                return;
            }
            let busy = match self.run_once().await {
                Ok(report) => {
                    on_report(Ok(&report));
                    report.claimed > 0
                }
                Err(e) => {
                    tracing::warn!(error = %e, "outbox delivery: claim failed");
                    on_report(Err(&e));
                    false
                }
            };
            if busy {
                continue;
            }
            let mut sleep = pin!(tokio::time::sleep(idle));
            let mut woken = pin!(async {
                match &self.wakeup {
                    Some(w) => w.notified().await,
                    None => std::future::pending().await,
                }
            });
            let waited = std::future::poll_fn(|cx| {
                if shutdown.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Waited::Stop);
                }
                if woken.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Waited::Woken);
                }
                sleep.as_mut().poll(cx).map(|()| Waited::Idle)
            })
            .await;
            match waited {
                Waited::Stop => return,
                Waited::Idle => {}
                Waited::Woken => {
                    let delay = u64::try_from(self.settings.wakeup_delay_ms.max(0)).unwrap_or(0);
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                }
            }
        }
    }

    /// [`Delivery::run_with`], logging each batch that did something ([`DeliveryReport::log`]).
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        self.run_with(shutdown, |report| {
            if let Ok(r) = report {
                r.log();
            }
        })
        .await;
    }
}

/// Whether `future` is ready at its first poll.
async fn poll_once<F: Future<Output = ()>>(mut future: std::pin::Pin<&mut F>) -> bool {
    std::future::poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx).is_ready())).await
}

/// How an idle wait ended.
enum Waited {
    Stop,
    Woken,
    Idle,
}

/// A page of dead letters ([`DeadLetters::list`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterPage {
    /// The dead letters, in id order.
    pub letters: Vec<DeadLetter>,
    /// Dead letters of every account.
    pub total: u64,
    /// The id to continue after, when the page was full.
    pub cursor: Option<u64>,
}

/// The operator's side of the outbox: writes to users' PDSes that failed for good, listed and
/// queued again (the service's `zone.stratos.admin.listDeadLetters` / `retryDeadLetter`).
#[derive(Clone)]
pub struct DeadLetters {
    outbox: Arc<dyn Outbox>,
}

impl std::fmt::Debug for DeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetters").finish_non_exhaustive()
    }
}

impl DeadLetters {
    /// The dead letters of `outbox`.
    pub fn new(outbox: Arc<dyn Outbox>) -> Self {
        Self { outbox }
    }

    /// Up to `limit` dead letters after the id `cursor`, in id order, with the total.
    pub async fn list(
        &self,
        limit: usize,
        cursor: Option<u64>,
    ) -> Result<DeadLetterPage, UseCaseError> {
        let letters = self.outbox.dead_letters(limit.max(1), cursor).await?;
        let total = self.outbox.dead_total().await?;
        let cursor = (letters.len() >= limit.max(1))
            .then(|| letters.last().map(|l| l.id))
            .flatten();
        Ok(DeadLetterPage {
            letters,
            total,
            cursor,
        })
    }

    /// Queues the dead letter `id` again, behind its account's newer writes, with no attempts:
    /// the new item's id. [`UseCaseError::NotFound`] when `id` is not a dead letter.
    pub async fn retry(&self, id: u64) -> Result<u64, UseCaseError> {
        Ok(self.outbox.retry_dead(id).await?)
    }

    /// The number of dead letters of one account.
    pub async fn count(&self, did: &Did) -> Result<u64, UseCaseError> {
        Ok(self.outbox.dead_count(did).await?)
    }
}
