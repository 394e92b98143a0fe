//! The statements' shape per dialect; the adapters' conformance suites run them for real.

use super::*;
use crate::enrollment_store::{Enrollment, EnrollmentAction};

fn both() -> [ServiceSql; 2] {
    [ServiceSql::sqlite(), ServiceSql::postgres("p_stratos")]
}

fn every(s: &ServiceSql) -> Vec<Sql> {
    use stratos_domain::boundary::Boundary;
    use stratos_domain::syntax::{Datetime, Did, RecordKey};
    let e = Enrollment {
        did: Did::parse("did:plc:a").unwrap(),
        enrolled_at: Datetime::parse("2026-12-07T09:00:00.000Z").unwrap(),
        pds_endpoint: None,
        signing_key: "k".into(),
        enrollment_rkey: Some(RecordKey::parse("r").unwrap()),
        boundaries: vec![],
    };
    let two = [
        Boundary::parse("did:web:s/a").unwrap(),
        Boundary::parse("did:web:s/b").unwrap(),
    ];
    vec![
        s.enrollment_exists("d"),
        s.enrollment_upsert(&e).unwrap(),
        s.enrollment_set_rkey("d", "r"),
        s.enrollment_delete("d"),
        s.enrollment_get("d"),
        s.enrollment_list("c", 5),
        s.boundaries_of("d"),
        s.boundaries_insert("d", &two).unwrap().unwrap(),
        s.boundary_delete("d", &two[0]),
        s.boundaries_clear("d"),
        s.event_append("d", EnrollmentAction::Update, "t", &two)
            .unwrap(),
        s.events_after(1, 2),
        s.event_latest_seq(),
        s.events_prune(3),
        s.key_upsert("d", "a", vec![1]).unwrap(),
        s.key_get("d"),
        s.key_delete("d"),
        s.oauth_state_upsert("k", "v", 1).unwrap(),
        s.oauth_state_take("k"),
        s.oauth_session_upsert("d", "v").unwrap(),
        s.oauth_session_get("d"),
        s.oauth_session_delete("d"),
        s.outbox_enqueue("d", vec![1]).unwrap(),
        s.outbox_claim(1, 2, 3),
        s.outbox_bury(1, 2, "e"),
        s.outbox_complete(1, 2),
        s.outbox_fail(1, 2, 3, 4, 5, "e"),
        s.outbox_release(1, 2, 3),
        s.outbox_count(),
        s.outbox_rows(),
        s.outbox_dead_count(Some("d")),
        s.outbox_dead_count(None),
        s.outbox_dead_letters(1, 2),
        s.outbox_requeue(1).unwrap(),
        s.outbox_delete_dead(1),
        s.outbox_purge("d"),
    ]
}

#[test]
fn placeholders_match_the_dialect_and_the_values() {
    for s in both() {
        for q in every(&s) {
            let (marks, foreign) = match s.dialect() {
                Dialect::Sqlite => (q.text.matches('?').count(), q.text.contains('$')),
                Dialect::Postgres => (q.text.matches('$').count(), q.text.contains('?')),
            };
            assert_eq!(marks, q.values.len(), "{}", q.text);
            assert!(!foreign, "{}", q.text);
        }
    }
}

#[test]
fn postgres_qualifies_every_table_and_sqlite_none() {
    let [sqlite, postgres] = both();
    for q in every(&postgres) {
        assert!(q.text.contains("\"p_stratos\"."), "{}", q.text);
    }
    for q in every(&sqlite) {
        assert!(!q.text.contains("p_stratos"), "{}", q.text);
    }
    for ddl in postgres.create_tables().iter().skip(1) {
        assert!(ddl.contains("\"p_stratos\"."), "{ddl}");
    }
    assert_eq!(
        postgres.create_tables()[0],
        "CREATE SCHEMA IF NOT EXISTS \"p_stratos\""
    );
}

#[test]
fn only_postgres_locks() {
    let [sqlite, postgres] = both();
    assert!(sqlite.event_lock().is_none());
    assert_eq!(
        postgres.event_lock().as_deref(),
        Some("LOCK TABLE \"p_stratos\".\"enrollment_event\" IN EXCLUSIVE MODE")
    );
    assert!(postgres.enrollment_exists("d").text.ends_with("FOR UPDATE"));
    assert!(!sqlite.enrollment_exists("d").text.contains("FOR"));
    let claim = postgres.outbox_claim(1, 2, 3).text;
    assert!(claim.contains(" FOR UPDATE) RETURNING "), "{claim}");
    assert!(!claim.contains("SKIP LOCKED"), "{claim}");
    assert!(!sqlite.outbox_claim(1, 2, 3).text.contains("FOR UPDATE"));
    assert!(sqlite.outbox_lock(true).is_none());
    assert_eq!(
        postgres.outbox_lock(true).as_deref(),
        Some("SELECT pg_advisory_xact_lock(hashtext('\"p_stratos\".\"outbox\"'))")
    );
    assert!(
        postgres
            .outbox_lock(false)
            .unwrap()
            .contains("pg_advisory_xact_lock_shared(")
    );
}

#[test]
fn an_accounts_own_outbox_has_no_did_column() {
    let own = ServiceSql::account_outbox();
    for q in [
        own.outbox_claim(1, 2, 3),
        own.outbox_dead_letters(0, 5),
        own.outbox_requeue(1).unwrap(),
        own.outbox_purge("d"),
    ] {
        assert!(!q.text.contains("did"), "{}", q.text);
    }
    let shared = ServiceSql::sqlite().outbox_claim(1, 2, 3).text;
    assert!(shared.contains("\"o\".\"did\" = \"r\".\"did\""), "{shared}");
    assert!(shared.ends_with("\"did\""), "{shared}");
}

#[test]
fn added_outbox_columns_are_idempotent_on_postgres() {
    for (column, ddl) in ServiceSql::postgres("p").outbox_added_columns() {
        assert!(
            ddl.contains(&format!("ADD COLUMN IF NOT EXISTS {column} ")),
            "{ddl}"
        );
    }
    for (column, ddl) in ServiceSql::sqlite().outbox_added_columns() {
        assert!(ddl.contains(&format!("ADD COLUMN {column} ")), "{ddl}");
        let created = ServiceSql::sqlite().create_tables().join("\n");
        assert!(
            created.contains(&format!(" {column} ")),
            "new tables have {column}"
        );
    }
}

#[test]
fn the_boundary_aggregate_is_per_dialect() {
    let [sqlite, postgres] = both();
    assert!(sqlite.enrollment_get("d").text.contains("char(10)"));
    assert!(postgres.enrollment_get("d").text.contains("chr(10)"));
}

#[test]
fn sqlite_keeps_its_rowid_keys() {
    let ddl = ServiceSql::sqlite().create_tables().join("\n");
    assert!(ddl.contains("(seq INTEGER PRIMARY KEY,"), "{ddl}");
    assert!(
        ddl.contains("(id INTEGER PRIMARY KEY AUTOINCREMENT,"),
        "{ddl}"
    );
    assert!(
        ddl.contains("PRIMARY KEY (did, boundary)) WITHOUT ROWID"),
        "{ddl}"
    );
}

#[test]
fn no_boundaries_no_insert_and_limits_saturate() {
    assert!(
        ServiceSql::sqlite()
            .boundaries_insert("d", &[])
            .unwrap()
            .is_none()
    );
    let q = ServiceSql::sqlite().events_after(u64::MAX, usize::MAX);
    assert_eq!(
        q.values,
        [Value::from(i64::MAX), Value::from(i64::MAX.unsigned_abs())]
    );
}

/// The claim statement filled from its cached template is the one sea-query builds, for every
/// table kind and a spread of times, leases and limits (including saturation).
#[test]
fn the_cached_claim_is_the_built_one() {
    let tables = [
        ServiceSql::sqlite(),
        ServiceSql::postgres("p_stratos"),
        ServiceSql::postgres("other_schema"),
        ServiceSql::account_outbox(),
    ];
    for s in &tables {
        for (now, lease, n) in [
            (0, 0, 1),
            (1_000, 500, 10),
            (1_765_000_000_000, 120_000, 256),
            (i64::MAX - 5, 60_000, usize::MAX),
            (-3, -7, 0),
        ] {
            for _ in 0..2 {
                let cached = s.outbox_claim(now, lease, n);
                let built = s.build_outbox_claim(now, lease, n);
                assert_eq!(cached.text, built.text);
                assert_eq!(cached.values, built.values, "{now} {lease} {n}");
            }
        }
    }
}
