//! The [`EnrollmentStore`] conformance suite.

use std::sync::Arc;

use stratos_domain::syntax::Did;
use stratos_ports::enrollment_store::{Enrollment, EnrollmentStore, EnrollmentStoreError};

fn did(s: &str) -> Did {
    Did::parse(s).expect("suite DID")
}

fn enrollment(d: &str, boundaries: &[&str]) -> Enrollment {
    Enrollment {
        did: d.to_owned(),
        enrolled_at: "2026-11-25T09:00:00.000Z".into(),
        pds_endpoint: None,
        signing_key: "did:key:zDnaembgSGUhZULN2Caob4HLJPaxBh92N7rtH21TErzqf8HQo".into(),
        enrollment_rkey: None,
        boundaries: boundaries.iter().map(|b| (*b).to_owned()).collect(),
    }
}

/// Runs every case against `store` (which must start empty).
pub async fn run(store: Arc<dyn EnrollmentStore>) {
    let s = store.as_ref();
    let rei = did("did:plc:rei");
    let asuka = did("did:plc:asuka");
    assert_eq!(s.get(&rei).await.expect("get"), None);
    assert!(s.boundaries(&rei).await.expect("boundaries").is_empty());
    assert!(matches!(
        s.add_boundary(&rei, "did:web:s/x").await,
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
        s.add_boundary(&rei, "did:web:s/x").await.expect("add"),
        ["did:web:s/x", "did:web:s/z"]
    );
    assert_eq!(
        s.add_boundary(&rei, "did:web:s/x")
            .await
            .expect("add twice"),
        ["did:web:s/x", "did:web:s/z"]
    );
    // Removing a boundary from one account leaves every other account alone (TS defect D8).
    assert_eq!(
        s.remove_boundary(&rei, "did:web:s/x")
            .await
            .expect("remove"),
        ["did:web:s/z"]
    );
    assert_eq!(
        s.boundaries(&asuka).await.expect("boundaries"),
        ["did:web:s/x"]
    );
    assert_eq!(
        s.set_boundaries(&rei, &["did:web:s/b".into(), "did:web:s/a".into()])
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
    s.set_enrollment_rkey(&rei, "did:web:s")
        .await
        .expect("rkey");
    assert_eq!(
        s.get(&rei)
            .await
            .expect("get")
            .expect("enrolled")
            .enrollment_rkey
            .as_deref(),
        Some("did:web:s")
    );

    // A working cursor: pages are disjoint, ordered by DID, and terminate (TS defect D9).
    for i in 0..25 {
        s.enroll(&enrollment(&format!("did:plc:page{i:02}"), &[]))
            .await
            .expect("enroll");
    }
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..20 {
        let page = s.list(cursor.as_deref(), 10).await.expect("list");
        if page.is_empty() {
            break;
        }
        cursor = page.last().map(|e| e.did.clone());
        all.extend(page.into_iter().map(|e| e.did));
    }
    assert_eq!(all.len(), 27, "every enrollment listed once");
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(all, sorted);

    assert!(s.unenroll(&rei).await.expect("unenroll"));
    assert!(!s.unenroll(&rei).await.expect("unenroll twice"));
    assert_eq!(s.get(&rei).await.expect("get"), None);
    assert!(s.boundaries(&rei).await.expect("boundaries").is_empty());
    assert_eq!(
        s.boundaries(&asuka).await.expect("boundaries"),
        ["did:web:s/x"]
    );
}
