#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! Write-back (`stratos_ports::usecases::write_back::SessionWriteBack`) through a Stratos built
//! on the in-memory fakes with `.oauth(…)`, against a scripted PDS + authorization server that
//! keeps records and counts calls: records and stubs reach the PDS with the session, a refused
//! token is refreshed once, a dead grant asks for re-authorisation (and shows in the account's
//! state), transient and permanent refusals are told apart, and leaving deletes everything
//! Stratos wrote before the session is ended — and only that session.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::Value;
use stratos_domain::oauth::{
    AuthorizationState, AuthorizationTarget, CallbackParams, DpopKey, Session,
};
use stratos_domain::syntax::{Did, Nsid, RecordKey};
use stratos_ports::Cause;
use stratos_ports::outbox::{OutboxAction, OutboxItem};
use stratos_ports::pds_client::{
    AtprotoOAuthClient, AuthorizationRequest, PdsClientError, PdsWrite, PdsWriter, StartOptions,
};
use stratos_ports::usecases::delivery::{DeliveryReport, DeliverySettings};
use stratos_ports::usecases::oauth::RedirectPolicy;
use stratos_ports::{Storage, Stratos};
use stratos_testkit::builders::{did, nsid, post};
use stratos_testkit::memory::{self, ManualClock};

const SERVICE: &str = "did:web:nerv.tokyo.jp";
const POSTS: &str = "zone.stratos.feed.post";
const ENROLLMENT: &str = "zone.stratos.actor.enrollment";
const NOW_MS: i64 = 1_800_000_000_000;

/// A PDS and its authorization server, scripted: records per `(did, collection, rkey)`, the
/// failures the next writes and refreshes answer with, and every token it was shown.
#[derive(Default)]
struct FakePds {
    records: Mutex<BTreeMap<(String, String, String), Value>>,
    write_failures: Mutex<VecDeque<PdsClientError>>,
    refresh_failure: Mutex<Option<PdsClientError>>,
    /// Access tokens the PDS accepts (a refresh adds one).
    valid_tokens: Mutex<Vec<String>>,
    writes_seen: Mutex<Vec<String>>,
    refreshes: AtomicUsize,
    revoked: Mutex<Vec<String>>,
}

impl FakePds {
    fn record(&self, did: &Did, collection: &str, rkey: &str) -> Option<Value> {
        self.records
            .lock()
            .unwrap()
            .get(&(did.to_string(), collection.to_owned(), rkey.to_owned()))
            .cloned()
    }

    fn count(&self, did: &Did) -> usize {
        self.records
            .lock()
            .unwrap()
            .keys()
            .filter(|(d, _, _)| d == did.as_str())
            .count()
    }

    fn fail_next_write(&self, e: PdsClientError) {
        self.write_failures.lock().unwrap().push_back(e);
    }

    fn check(&self, session: &Session) -> Result<(), PdsClientError> {
        self.writes_seen
            .lock()
            .unwrap()
            .push(session.access_token.clone());
        if let Some(e) = self.write_failures.lock().unwrap().pop_front() {
            return Err(e);
        }
        if !self
            .valid_tokens
            .lock()
            .unwrap()
            .contains(&session.access_token)
        {
            return Err(PdsClientError::TokenRejected("invalid_token".into()));
        }
        Ok(())
    }
}

fn not_here() -> PdsClientError {
    PdsClientError::Refused(Cause::message("the flow is not part of these tests"))
}

#[async_trait]
impl AtprotoOAuthClient for FakePds {
    async fn start_authorization(
        &self,
        _target: &AuthorizationTarget,
        _options: &StartOptions,
    ) -> Result<(AuthorizationRequest, AuthorizationState), PdsClientError> {
        Err(not_here())
    }

    async fn finish_authorization(
        &self,
        _state: AuthorizationState,
        _callback: &CallbackParams,
    ) -> Result<Session, PdsClientError> {
        Err(not_here())
    }

    async fn refresh(&self, session: &Session) -> Result<Session, PdsClientError> {
        let n = self.refreshes.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(e) = self.refresh_failure.lock().unwrap().clone() {
            return Err(e);
        }
        let mut fresh = session.clone();
        fresh.access_token = format!("{}-refreshed-{n}", session.access_token);
        fresh.refresh_token = Some(format!("rt-{n}"));
        self.valid_tokens
            .lock()
            .unwrap()
            .push(fresh.access_token.clone());
        Ok(fresh)
    }

    async fn revoke(&self, session: &Session) -> Result<(), PdsClientError> {
        self.revoked
            .lock()
            .unwrap()
            .push(session.access_token.clone());
        Ok(())
    }
}

#[async_trait]
impl PdsWriter for FakePds {
    async fn put_record(
        &self,
        session: &Session,
        collection: &Nsid,
        rkey: &RecordKey,
        record: &Value,
    ) -> Result<PdsWrite, PdsClientError> {
        self.check(session)?;
        self.records.lock().unwrap().insert(
            (
                session.did.to_string(),
                collection.to_string(),
                rkey.to_string(),
            ),
            record.clone(),
        );
        // The PDS hands out a new DPoP nonce now and then: the session to keep changes.
        let mut next = session.clone();
        next.pds_nonce = Some(format!("nonce-{}", self.writes_seen.lock().unwrap().len()));
        Ok(PdsWrite {
            uri: Some(format!("at://{}/{collection}/{rkey}", session.did)),
            cid: None,
            session: Some(next),
        })
    }

    async fn delete_record(
        &self,
        session: &Session,
        collection: &Nsid,
        rkey: &RecordKey,
    ) -> Result<PdsWrite, PdsClientError> {
        self.check(session)?;
        self.records.lock().unwrap().remove(&(
            session.did.to_string(),
            collection.to_string(),
            rkey.to_string(),
        ));
        Ok(PdsWrite {
            uri: None,
            cid: None,
            session: None,
        })
    }
}

struct World {
    stratos: Stratos,
    pds: Arc<FakePds>,
    clock: Arc<ManualClock>,
    storage: Storage,
}

async fn world() -> World {
    let pds = Arc::new(FakePds::default());
    let clock = Arc::new(ManualClock::at(NOW_MS));
    let storage = memory::storage();
    let stratos = memory::stratos(did(SERVICE))
        .storage(storage.clone())
        .boundaries(["swordsmith", "aekea"])
        .clock(clock.clone())
        .oauth(pds.clone(), RedirectPolicy::default())
        .build()
        .await
        .unwrap();
    World {
        stratos,
        pds,
        clock,
        storage,
    }
}

impl World {
    /// An enrolled account with a session whose access token the PDS accepts.
    async fn enrolled(&self, account: &str) -> Did {
        let account = did(account);
        self.stratos.enrollments().enroll(&account).await.unwrap();
        self.authorize(&account, "at-1").await;
        account
    }

    /// Stores a session for `account`, authorised now, with `token` accepted by the PDS.
    async fn authorize(&self, account: &Did, token: &str) {
        let now_s = self.clock.now_ms_value() / 1000;
        let session = Session {
            did: account.clone(),
            issuer: "https://pds.example".into(),
            pds_url: "https://pds.example".into(),
            client_id: "https://stratos.example/client-metadata.json".into(),
            access_token: format!("{account}-{token}"),
            refresh_token: Some("rt-0".into()),
            dpop_key: DpopKey::generate(),
            expires_at: Some(now_s + 3600),
            scope: "atproto".into(),
            auth_server_nonce: None,
            pds_nonce: None,
            created_at: now_s,
            updated_at: now_s,
        };
        self.pds
            .valid_tokens
            .lock()
            .unwrap()
            .push(session.access_token.clone());
        self.oauth().save_session(&session).await.unwrap();
    }

    fn oauth(&self) -> &Arc<stratos_ports::usecases::oauth::OAuthEnrollment> {
        self.stratos.oauth().unwrap()
    }

    /// Runs delivery batches until one claims nothing (retries are due at once: no backoff).
    async fn drain(&self) -> DeliveryReport {
        let delivery = self
            .stratos
            .delivery(DeliverySettings {
                backoff_base_ms: 0,
                backoff_cap_ms: 0,
                ..DeliverySettings::default()
            })
            .unwrap();
        let mut total = DeliveryReport::default();
        for _ in 0..20 {
            let r = delivery.run_once().await.unwrap();
            if r.claimed == 0 {
                break;
            }
            // Retries are due at once, but after the moment they failed.
            self.clock.advance(1);
            total.claimed += r.claimed;
            total.delivered += r.delivered;
            total.retried += r.retried;
            total.dead += r.dead;
            total.held += r.held;
            total.needs_reauthorization.extend(r.needs_reauthorization);
        }
        total
    }
}

/// `ManualClock::now_ms` through the trait, without importing it in every helper.
trait NowMs {
    fn now_ms_value(&self) -> i64;
}

impl NowMs for ManualClock {
    fn now_ms_value(&self) -> i64 {
        stratos_ports::env::Clock::now_ms(self)
    }
}

#[tokio::test]
async fn the_enrollment_record_and_stubs_reach_the_pds_and_leave_with_the_account() {
    let w = world().await;
    let rei = w.enrolled("did:plc:rei").await;
    let created = w
        .stratos
        .records()
        .create_record(
            &rei,
            &rei,
            &nsid(POSTS),
            None,
            post("hidden", &["swordsmith"]),
        )
        .await
        .unwrap();
    let uri = &created.results[0].uri;
    let rkey = uri.rkey().unwrap().to_string();

    let report = w.drain().await;
    assert_eq!((report.delivered, report.dead), (2, 0), "{report:?}");
    let record = w
        .pds
        .record(&rei, ENROLLMENT, SERVICE)
        .expect("enrollment record");
    assert_eq!(record["$type"], ENROLLMENT);
    let stub = w.pds.record(&rei, POSTS, &rkey).expect("stub");
    assert_eq!(stub["source"]["subject"]["uri"], uri.to_string(), "{stub}");
    assert!(!stub.to_string().contains("hidden"), "no content: {stub}");
    // The PDS's new nonce was kept.
    let kept = w.oauth().session(&rei).await.unwrap().unwrap();
    assert!(kept.pds_nonce.is_some());

    w.stratos.enrollments().unenroll(&rei).await.unwrap();
    let report = w.drain().await;
    assert_eq!((report.delivered, report.dead), (3, 0), "{report:?}");
    assert_eq!(w.pds.count(&rei), 0, "both records deleted from the PDS");
    assert_eq!(
        w.pds.revoked.lock().unwrap().len(),
        1,
        "the session revoked"
    );
    assert!(!w.oauth().has_session(&rei).await.unwrap(), "and forgotten");
    assert_eq!(w.storage.outbox().pending().await.unwrap(), 0);
}

#[tokio::test]
async fn a_refused_token_is_refreshed_once_and_the_write_retried() {
    let w = world().await;
    let rei = w.enrolled("did:plc:rei").await;
    // The PDS no longer takes the stored token (it expired early).
    w.pds.valid_tokens.lock().unwrap().clear();
    let report = w.drain().await;
    assert_eq!(report.delivered, 1, "{report:?}");
    assert_eq!(w.pds.refreshes.load(Ordering::SeqCst), 1);
    assert!(w.pds.record(&rei, ENROLLMENT, SERVICE).is_some());
    let seen = w.pds.writes_seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "one refused call, one retry: {seen:?}");
    assert!(seen[1].ends_with("-refreshed-1"), "{seen:?}");
    // The rotated tokens were stored at once.
    let kept = w.oauth().session(&rei).await.unwrap().unwrap();
    assert_eq!(kept.refresh_token.as_deref(), Some("rt-1"));
}

#[tokio::test]
async fn a_dead_grant_holds_the_account_until_it_authorises_again() {
    let w = world().await;
    let rei = w.enrolled("did:plc:rei").await;
    w.pds.valid_tokens.lock().unwrap().clear();
    *w.pds.refresh_failure.lock().unwrap() = Some(PdsClientError::ReauthorizationRequired(
        "invalid_grant".into(),
    ));
    let report = w.drain().await;
    assert_eq!(
        report.needs_reauthorization,
        std::slice::from_ref(&rei),
        "{report:?}"
    );
    assert_eq!(
        (report.delivered, report.dead),
        (0, 0),
        "nothing lost: {report:?}"
    );
    assert!(
        !w.oauth().has_session(&rei).await.unwrap(),
        "the dead session is gone"
    );
    assert_eq!(
        w.storage.outbox().pending().await.unwrap(),
        1,
        "the item waits"
    );

    // The user signs in again; after the wait the item goes out.
    *w.pds.refresh_failure.lock().unwrap() = None;
    w.authorize(&rei, "at-2").await;
    w.clock
        .advance(DeliverySettings::default().reauthorization_wait_ms + 1);
    let report = w.drain().await;
    assert_eq!(report.delivered, 1, "{report:?}");
    assert!(w.pds.record(&rei, ENROLLMENT, SERVICE).is_some());
}

#[tokio::test]
async fn an_account_without_a_session_waits_without_spending_attempts() {
    let w = world().await;
    let rei = did("did:plc:rei");
    w.stratos.enrollments().enroll(&rei).await.unwrap();
    let report = w.drain().await;
    assert_eq!(report.needs_reauthorization, std::slice::from_ref(&rei));
    assert_eq!(
        w.pds.writes_seen.lock().unwrap().len(),
        0,
        "no call without a session"
    );
    let page = w
        .storage
        .outbox()
        .claim(NOW_MS + 700_000, 1_000, 10)
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].attempts, 0, "held, not failed");
}

#[tokio::test]
async fn transient_failures_retry_and_refusals_are_dead_letters() {
    let w = world().await;
    let rei = w.enrolled("did:plc:rei").await;
    w.pds.fail_next_write(PdsClientError::Transient {
        retry_after_secs: None,
        cause: Cause::message("503"),
    });
    let report = w.drain().await;
    assert_eq!((report.retried, report.delivered), (1, 1), "{report:?}");

    let created = w
        .stratos
        .records()
        .create_record(&rei, &rei, &nsid(POSTS), None, post("x", &["aekea"]))
        .await
        .unwrap();
    w.pds.fail_next_write(PdsClientError::Rejected {
        status: 400,
        error: Some("InvalidRecord".into()),
        message: None,
    });
    let report = w.drain().await;
    assert_eq!((report.dead, report.delivered), (1, 0), "{report:?}");
    assert_eq!(w.storage.outbox().dead_count(&rei).await.unwrap(), 1);
    let rkey = created.results[0].uri.rkey().unwrap().to_string();
    assert!(w.pds.record(&rei, POSTS, &rkey).is_none());
}

#[tokio::test]
async fn leaving_ends_only_the_session_it_left_with() {
    let w = world().await;
    let rei = w.enrolled("did:plc:rei").await;
    w.drain().await;
    w.stratos.enrollments().unenroll(&rei).await.unwrap();
    // Before delivery runs, the account comes back with a new sign-in (a later second).
    w.clock.advance(5_000);
    w.stratos.enrollments().enroll(&rei).await.unwrap();
    w.authorize(&rei, "at-new").await;
    let report = w.drain().await;
    assert_eq!(report.dead, 0, "{report:?}");
    assert!(
        w.pds.revoked.lock().unwrap().is_empty(),
        "the new session is not revoked"
    );
    assert!(w.oauth().has_session(&rei).await.unwrap());
    // Order on the PDS: the old record's deletion, then the new enrollment's record.
    assert!(w.pds.record(&rei, ENROLLMENT, SERVICE).is_some());
}

#[tokio::test]
async fn a_queued_record_that_is_not_json_is_a_dead_letter() {
    let w = world().await;
    let rei = w.enrolled("did:plc:rei").await;
    w.drain().await;
    w.storage
        .outbox()
        .enqueue(OutboxItem {
            did: rei.clone(),
            action: OutboxAction::PutRecord {
                collection: nsid(POSTS),
                rkey: stratos_testkit::builders::rkey("3kabc"),
                record_json: "{not json".into(),
            },
        })
        .await
        .unwrap();
    let report = w.drain().await;
    assert_eq!(report.dead, 1, "{report:?}");
    let dead = w.storage.outbox().dead_letters(10, None).await.unwrap();
    assert!(dead[0].last_error.contains("not JSON"), "{dead:?}");
}

/// The running worker sleeps for an hour when idle, yet a new post's stub goes out at once:
/// every commit wakes it.
#[tokio::test]
async fn a_commit_wakes_the_idle_worker() {
    let w = world().await;
    let rei = w.enrolled("did:plc:rei").await;
    let delivery = w
        .stratos
        .delivery(DeliverySettings {
            idle_wait_ms: 3_600_000,
            ..DeliverySettings::default()
        })
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(async move {
        delivery
            .run(async {
                let _ = stopped.await;
            })
            .await;
    });
    let wait_for = |collection: &'static str, rkey: String| {
        let pds = w.pds.clone();
        let rei = rei.clone();
        async move {
            for _ in 0..500 {
                if pds.record(&rei, collection, &rkey).is_some() {
                    return true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            false
        }
    };
    // The enrollment record went out on the first run; the worker is idle now.
    assert!(wait_for(ENROLLMENT, SERVICE.to_owned()).await);
    let created = w
        .stratos
        .records()
        .create_record(&rei, &rei, &nsid(POSTS), None, post("now", &["aekea"]))
        .await
        .unwrap();
    let rkey = created.results[0].uri.rkey().unwrap().to_string();
    assert!(
        wait_for(POSTS, rkey).await,
        "the stub went out within 5 s, not after the hour's idle wait"
    );
    stop.send(()).unwrap();
    worker.await.unwrap();
}

/// An account that leaves without ever having had a session: its queued deletes can never be
/// written, so they become dead letters (visible, retryable) instead of waiting forever; the end
/// of its (absent) session is simply done.
#[tokio::test]
async fn an_account_that_left_without_a_session_leaves_dead_letters_not_a_wait() {
    let w = world().await;
    let rei = did("did:plc:rei");
    w.stratos.enrollments().enroll(&rei).await.unwrap();
    w.stratos.enrollments().unenroll(&rei).await.unwrap();
    let report = w.drain().await;
    assert!(report.needs_reauthorization.is_empty(), "{report:?}");
    assert_eq!((report.dead, report.delivered), (1, 1), "{report:?}");
    assert_eq!(w.storage.outbox().pending().await.unwrap(), 0);
    assert_eq!(w.pds.writes_seen.lock().unwrap().len(), 0);
}
