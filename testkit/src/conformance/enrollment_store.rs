//! The [`EnrollmentStore`] conformance suite.

use std::sync::Arc;

use stratos_domain::boundary::Boundary;
use stratos_domain::syntax::{Datetime, Did, RecordKey};
use stratos_ports::enrollment_store::{
    Enrollment, EnrollmentAction, EnrollmentEvent, EnrollmentStore, EnrollmentStoreError,
};

fn did(s: &str) -> Did {
    Did::parse(s).expect("suite DID")
}

fn b(s: &str) -> Boundary {
    Boundary::parse(s).expect("suite boundary")
}

fn rkey(s: &str) -> RecordKey {
    RecordKey::parse(s).expect("suite record key")
}

fn enrollment(d: &str, boundaries: &[&str]) -> Enrollment {
    Enrollment {
        did: did(d),
        enrolled_at: Datetime::parse("2026-11-25T09:00:00.000Z").expect("suite time"),
        pds_endpoint: None,
        signing_key: "did:key:zDnaembgSGUhZULN2Caob4HLJPaxBh92N7rtH21TErzqf8HQo".into(),
        enrollment_rkey: None,
        boundaries: boundaries.iter().map(|x| b(x)).collect(),
    }
}

/// What the cases run against (each starts empty).
pub type Subject = Arc<dyn EnrollmentStore>;

/// One test per [`EnrollmentStore`] case, in a module `enrollment_store`. The argument gives a
/// future of an empty store, afresh for every case (see [`crate::conformance`]).
#[macro_export]
macro_rules! enrollment_store_conformance {
    ($fixture:expr $(,)?) => {
        $crate::__conformance_suite! {
            module: enrollment_store,
            port: enrollment_store,
            fixture: $fixture,
            cases: [
                boundary_changes_touch_one_account_only,
                listing_pages_are_disjoint_ordered_and_terminate,
                unenroll_removes_one_account,
                the_event_log_has_one_event_per_change,
                the_event_log_pages_and_prunes_without_reusing_numbers,
                concurrent_changes_are_logged_in_commit_order,
            ],
        }
    };
}

/// Enrolling, re-enrolling (which replaces the row and the boundary set), adding, removing and
/// setting boundaries, the enrollment rkey; removing a boundary from one account leaves every
/// other account alone (TS defect D8).
pub async fn boundary_changes_touch_one_account_only(store: Subject) {
    boundary_changes(store.as_ref()).await;
}

/// The changes of [`boundary_changes_touch_one_account_only`], on an empty store: eight logged
/// changes (two enrolls, six updates) and three that log nothing.
async fn boundary_changes(s: &dyn EnrollmentStore) {
    let rei = did("did:plc:rei");
    let asuka = did("did:plc:asuka");
    assert_eq!(s.get(&rei).await.expect("get"), None);
    assert!(s.boundaries(&rei).await.expect("boundaries").is_empty());
    assert!(matches!(
        s.add_boundary(&rei, &b("did:web:s/x")).await,
        Err(EnrollmentStoreError::NotEnrolled(_))
    ));

    s.enroll(&enrollment("did:plc:rei", &["did:web:s/y", "did:web:s/x"]))
        .await
        .expect("enroll");
    s.enroll(&enrollment("did:plc:asuka", &["did:web:s/x"]))
        .await
        .expect("enroll");
    let got = s.get(&rei).await.expect("get").expect("enrolled");
    assert_eq!(got.boundaries, ["did:web:s/x", "did:web:s/y"], "sorted");
    assert_eq!(got.pds_endpoint, None);

    // Re-enrolling replaces the row and the boundary set.
    let mut again = enrollment("did:plc:rei", &["did:web:s/z"]);
    again.pds_endpoint = Some("https://pds.example".into());
    s.enroll(&again).await.expect("re-enroll");
    let got = s.get(&rei).await.expect("get").expect("enrolled");
    assert_eq!(got.boundaries, ["did:web:s/z"]);
    assert_eq!(got.pds_endpoint.as_deref(), Some("https://pds.example"));

    assert_eq!(
        s.add_boundary(&rei, &b("did:web:s/x")).await.expect("add"),
        ["did:web:s/x", "did:web:s/z"]
    );
    assert_eq!(
        s.add_boundary(&rei, &b("did:web:s/x"))
            .await
            .expect("add twice"),
        ["did:web:s/x", "did:web:s/z"]
    );
    // Removing a boundary from one account leaves every other account alone (TS defect D8).
    assert_eq!(
        s.remove_boundary(&rei, &b("did:web:s/x"))
            .await
            .expect("remove"),
        ["did:web:s/z"]
    );
    assert_eq!(
        s.boundaries(&asuka).await.expect("boundaries"),
        ["did:web:s/x"]
    );
    assert_eq!(
        s.set_boundaries(&rei, &[b("did:web:s/b"), b("did:web:s/a")])
            .await
            .expect("set"),
        ["did:web:s/a", "did:web:s/b"]
    );
    assert!(
        s.set_boundaries(&rei, &[])
            .await
            .expect("set empty")
            .is_empty()
    );
    assert_eq!(
        s.boundaries(&asuka).await.expect("boundaries"),
        ["did:web:s/x"]
    );
    s.set_enrollment_rkey(&rei, &rkey("did:web:s"))
        .await
        .expect("rkey");
    assert_eq!(
        s.get(&rei)
            .await
            .expect("get")
            .expect("enrolled")
            .enrollment_rkey
            .as_ref()
            .map(RecordKey::as_str),
        Some("did:web:s")
    );
}

/// A working cursor: pages are disjoint, ordered by DID, and terminate (TS defect D9).
pub async fn listing_pages_are_disjoint_ordered_and_terminate(store: Subject) {
    let s = store.as_ref();
    s.enroll(&enrollment("did:plc:rei", &["did:web:s/x"]))
        .await
        .expect("enroll");
    s.enroll(&enrollment("did:plc:asuka", &[]))
        .await
        .expect("enroll");
    enroll_pages(s).await;
    let mut all = Vec::new();
    let mut cursor: Option<Did> = None;
    for _ in 0..20 {
        let page = s.list(cursor.as_ref(), 10).await.expect("list");
        assert!(page.len() <= 10, "at most the limit");
        if page.is_empty() {
            break;
        }
        cursor = page.last().map(|e| e.did.clone());
        all.extend(page.into_iter().map(|e| e.did));
    }
    assert_eq!(all.len(), 27, "every enrollment listed once");
    let mut sorted = all.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(all, sorted, "ordered by DID, no duplicate");
    let first = s.list(None, 1).await.expect("list");
    assert_eq!(
        first.iter().map(|e| e.did.as_str()).collect::<Vec<_>>(),
        ["did:plc:asuka"],
        "the first page starts at the smallest DID"
    );
}

/// Twenty-five enrollments without boundaries, `did:plc:page00` to `did:plc:page24`.
async fn enroll_pages(s: &dyn EnrollmentStore) {
    for i in 0..25 {
        s.enroll(&enrollment(&format!("did:plc:page{i:02}"), &[]))
            .await
            .expect("enroll");
    }
}

/// Unenrolling removes the account and its boundaries, once; other accounts stay.
pub async fn unenroll_removes_one_account(store: Subject) {
    let s = store.as_ref();
    let rei = did("did:plc:rei");
    let asuka = did("did:plc:asuka");
    s.enroll(&enrollment("did:plc:rei", &["did:web:s/x", "did:web:s/y"]))
        .await
        .expect("enroll");
    s.enroll(&enrollment("did:plc:asuka", &["did:web:s/x"]))
        .await
        .expect("enroll");
    assert!(s.unenroll(&rei).await.expect("unenroll"));
    assert!(!s.unenroll(&rei).await.expect("unenroll twice"));
    assert_eq!(s.get(&rei).await.expect("get"), None);
    assert!(s.boundaries(&rei).await.expect("boundaries").is_empty());
    assert!(matches!(
        s.add_boundary(&rei, &b("did:web:s/x")).await,
        Err(EnrollmentStoreError::NotEnrolled(_))
    ));
    assert_eq!(
        s.boundaries(&asuka).await.expect("boundaries"),
        ["did:web:s/x"]
    );
    assert!(s.get(&asuka).await.expect("get").is_some());
}

/// The history the event-log cases read: the boundary changes, 25 enrollments, an unenroll
/// and a second unenroll that changes nothing; 34 logged changes.
async fn history(s: &dyn EnrollmentStore) {
    boundary_changes(s).await;
    enroll_pages(s).await;
    let rei = did("did:plc:rei");
    assert!(s.unenroll(&rei).await.expect("unenroll"));
    assert!(!s.unenroll(&rei).await.expect("unenroll twice"));
}

fn summary(events: &[EnrollmentEvent]) -> Vec<(u64, String, EnrollmentAction, Vec<String>)> {
    events
        .iter()
        .map(|e| {
            (
                e.seq,
                e.did.to_string(),
                e.action,
                e.boundaries.iter().map(ToString::to_string).collect(),
            )
        })
        .collect()
}

/// The log of a history: one event per change, in order, consecutive sequence numbers from 1,
/// nothing for failed changes, rkey updates or a second unenroll.
pub async fn the_event_log_has_one_event_per_change(store: Subject) {
    use EnrollmentAction::{Enroll, Unenroll, Update};
    let s = store.as_ref();
    assert_eq!(s.latest_event_seq().await.expect("latest"), 0, "empty log");
    assert!(s.events_after(0, 10).await.expect("events").is_empty());
    history(s).await;
    let all = s.events_after(0, 1000).await.expect("events");
    assert_eq!(all.len(), 34, "{:?}", summary(&all));
    assert_eq!(s.latest_event_seq().await.expect("latest"), 34);
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1, "consecutive sequence numbers");
        assert!(
            e.time.as_str().ends_with('Z') && e.time.as_str().len() >= 20,
            "{}",
            e.time
        );
    }
    let b = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    let head = summary(&all[..9]);
    let expected = vec![
        (
            1,
            "did:plc:rei".into(),
            Enroll,
            b(&["did:web:s/x", "did:web:s/y"]),
        ),
        (2, "did:plc:asuka".into(), Enroll, b(&["did:web:s/x"])),
        (3, "did:plc:rei".into(), Update, b(&["did:web:s/z"])),
        (
            4,
            "did:plc:rei".into(),
            Update,
            b(&["did:web:s/x", "did:web:s/z"]),
        ),
        (
            5,
            "did:plc:rei".into(),
            Update,
            b(&["did:web:s/x", "did:web:s/z"]),
        ),
        (6, "did:plc:rei".into(), Update, b(&["did:web:s/z"])),
        (
            7,
            "did:plc:rei".into(),
            Update,
            b(&["did:web:s/a", "did:web:s/b"]),
        ),
        (8, "did:plc:rei".into(), Update, b(&[])),
        (9, "did:plc:page00".into(), Enroll, b(&[])),
    ];
    assert_eq!(head, expected);
    assert_eq!(
        summary(&all[33..]),
        vec![(34, "did:plc:rei".into(), Unenroll, b(&[]))]
    );
}

/// Paging the log is strictly after the cursor and at most `limit`; retention drops old events,
/// always keeps the newest, and never reuses a number.
pub async fn the_event_log_pages_and_prunes_without_reusing_numbers(store: Subject) {
    use EnrollmentAction::Enroll;
    let s = store.as_ref();
    history(s).await;
    let b = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    // Paging: strictly after the cursor, at most `limit`.
    let page = s.events_after(10, 5).await.expect("page");
    assert_eq!(
        page.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [11, 12, 13, 14, 15]
    );
    assert!(s.events_after(34, 10).await.expect("tail").is_empty());
    assert!(s.events_after(99, 10).await.expect("beyond").is_empty());

    // Retention: old events go, the newest always stays, numbers are never reused.
    assert_eq!(s.prune_events(20).await.expect("prune"), 19);
    let kept = s.events_after(0, 1000).await.expect("events");
    assert_eq!(kept.first().map(|e| e.seq), Some(20));
    assert_eq!(kept.len(), 15);
    assert_eq!(s.events_after(25, 2).await.expect("page").len(), 2);
    assert_eq!(s.events_after(25, 2).await.expect("page")[0].seq, 26);
    s.prune_events(u64::MAX).await.expect("prune all");
    let kept = s.events_after(0, 1000).await.expect("events");
    assert_eq!(kept.iter().map(|e| e.seq).collect::<Vec<_>>(), [34]);
    assert_eq!(s.latest_event_seq().await.expect("latest"), 34);
    s.enroll(&enrollment("did:plc:kaworu", &["did:web:s/x"]))
        .await
        .expect("enroll");
    let tail = s.events_after(34, 10).await.expect("tail");
    assert_eq!(
        summary(&tail),
        vec![(35, "did:plc:kaworu".into(), Enroll, b(&["did:web:s/x"]))]
    );
}

/// Changes racing on different accounts still get consecutive numbers, and a reader that pages
/// by cursor while they run sees every event exactly once, in order.
pub async fn concurrent_changes_are_logged_in_commit_order(store: Subject) {
    let start = store.latest_event_seq().await.expect("latest");
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let d = format!("did:plc:race{i:02}");
            store
                .enroll(&enrollment(&d, &["did:web:s/x"]))
                .await
                .expect("enroll");
            store
                .add_boundary(&did(&d), &b("did:web:s/y"))
                .await
                .expect("add");
        }));
    }
    let mut seen = Vec::new();
    let mut cursor = start;
    for round in 0.. {
        if seen.len() >= 32 {
            break;
        }
        assert!(round < 100_000, "only {} of 32 events appeared", seen.len());
        for e in store.events_after(cursor, 7).await.expect("page") {
            assert_eq!(e.seq, cursor + 1, "no gap and no duplicate");
            cursor = e.seq;
            seen.push(e);
        }
        tokio::task::yield_now().await;
    }
    for t in tasks {
        t.await.expect("task");
    }
    assert_eq!(store.latest_event_seq().await.expect("latest"), start + 32);
    // Per account, the enroll comes before its boundary change.
    for i in 0..16 {
        let d = format!("did:plc:race{i:02}");
        let mine: Vec<EnrollmentAction> = seen
            .iter()
            .filter(|e| e.did == d)
            .map(|e| e.action)
            .collect();
        assert_eq!(mine, [EnrollmentAction::Enroll, EnrollmentAction::Update]);
    }
}
