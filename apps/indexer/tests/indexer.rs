//! The indexer against a real `stratos` process and the machine's PostgreSQL: S16 of reference
//! §5.7 through the AppView SDK (seeded through the admin API; `e2e_s16.rs` runs it again with
//! enrollment through OAuth on the real PDS), restarts of the indexer and of the service, and
//! a new account's backfill from its export.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::*;
use stratos_domain::syntax::AtUri;
use stratos_indexer::config::IndexerConfig;
use stratos_indexer::engine::Indexer;
use stratos_indexer::metrics::Metrics;
use stratos_ports::usecases::appview::{AppView, AppViewError, FeedParams};
use stratos_ports::xrpc::XrpcError;

async fn start_indexer(
    service: &Service,
    pg: &str,
    schema: &str,
    index: Arc<stratos_postgres::PostgresAppViewIndex>,
) -> Indexer {
    let vars: HashMap<String, String> = indexer_vars(service, pg, schema).into_iter().collect();
    let config = IndexerConfig::from_vars(&vars).unwrap();
    Indexer::start(config, index, Arc::new(Metrics::default()))
        .await
        .unwrap()
}

fn texts(feed: &stratos_ports::usecases::appview::Feed) -> Vec<String> {
    let mut t: Vec<String> = feed.feed.iter().map(|p| p.row.text.clone()).collect();
    t.sort();
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s16_the_appview_shows_each_viewer_exactly_what_they_may_see() {
    let Some(pg) = postgres_url() else { return };
    let mut service = Service::start().await;
    let (index, schema) = fresh_index(&pg).await;
    let rei = did("did:plc:rei");
    let sakura = did("did:plc:sakura");
    let kaoruko = did("did:plc:kaoruko");
    service.enroll(&rei, &["swordsmith"]).await;
    service.enroll(&sakura, &["swordsmith"]).await;
    service.enroll(&kaoruko, &["aekea"]).await;
    // Posts written before the indexer exists reach it through the backfill.
    service.post(&rei, "rei early", &["swordsmith"]).await;
    let indexer = start_indexer(&service, &pg, &schema, index.clone()).await;
    let rei_post = service.post(&rei, "rei swordsmith", &["swordsmith"]).await;
    let kaoruko_post = service.post(&kaoruko, "kaoruko aekea", &["aekea"]).await;
    let to_delete = service.post(&rei, "rei deleted", &["swordsmith"]).await;
    service.delete(&rei, &to_delete).await;
    let moved = service
        .post(&sakura, "sakura moving", &["swordsmith"])
        .await;
    service
        .update(&sakura, &moved, "sakura moved", &["swordsmith"])
        .await;
    eventually(30, "the posts to be indexed", || async {
        indexed_posts(&pg, &schema, &rei).await.len() == 2
            && indexed_posts(&pg, &schema, &kaoruko).await.len() == 1
            && indexed_posts(&pg, &schema, &sakura).await
                == [(moved.to_string(), "sakura moved".to_string())]
    })
    .await;
    // The tables hold the posts with their boundaries.
    for who in [&rei, &sakura, &kaoruko] {
        assert_eq!(
            indexed_posts(&pg, &schema, who).await,
            service.posts_of(who).await,
            "{who}"
        );
    }

    let appview = AppView::builder(index.clone()).build();
    let all = FeedParams::default();
    // Swordsmith viewers see swordsmith posts, not aekea ones; and vice versa.
    let sakura_feed = appview.timeline(Some(&sakura), &all).await.unwrap();
    assert_eq!(
        texts(&sakura_feed),
        ["rei early", "rei swordsmith", "sakura moved"]
    );
    let kaoruko_feed = appview.timeline(Some(&kaoruko), &all).await.unwrap();
    assert_eq!(texts(&kaoruko_feed), ["kaoruko aekea"]);
    // A cross-boundary author feed is empty.
    assert!(
        appview
            .author_feed(Some(&kaoruko), &rei, &all)
            .await
            .unwrap()
            .feed
            .is_empty()
    );
    // getPost: same boundary OK, cross-boundary BoundaryMismatch.
    let uri = |who: &stratos_domain::syntax::Did, rkey: &stratos_domain::syntax::RecordKey| {
        AtUri::parse(&format!("at://{who}/zone.stratos.feed.post/{rkey}")).unwrap()
    };
    let same = appview
        .get_post(Some(&sakura), &uri(&rei, &rei_post))
        .await
        .unwrap();
    assert_eq!(same.row.text, "rei swordsmith");
    assert_eq!(same.row.boundaries, [qualified("swordsmith")]);
    let cross = appview
        .get_post(Some(&sakura), &uri(&kaoruko, &kaoruko_post))
        .await
        .unwrap_err();
    assert_eq!(XrpcError::from(cross).error, "BoundaryMismatch");
    // Unauthenticated feeds are rejected.
    assert!(matches!(
        appview.timeline(None, &all).await,
        Err(AppViewError::AuthRequired)
    ));
    // `boundary=` restricts.
    let only_aekea = FeedParams {
        boundary: Some(qualified("aekea")),
        ..FeedParams::default()
    };
    assert!(
        appview
            .timeline(Some(&sakura), &only_aekea)
            .await
            .unwrap()
            .feed
            .is_empty()
    );
    // Deletes disappear from feeds.
    assert!(
        appview
            .get_post(Some(&rei), &uri(&rei, &to_delete))
            .await
            .is_err()
    );
    // Each account was new to the index: backfilled once from its export (what reached the
    // service after that came as verified frames; how much did depends on timing).
    assert!(indexer.metrics().backfills.load(Ordering::Relaxed) >= 3);
    assert_eq!(
        indexer
            .metrics()
            .verification_failures
            .load(Ordering::Relaxed),
        0
    );

    // Restart of the indexer: it resumes from stratos_sync_cursor, nothing twice, nothing lost.
    indexer.stop().await;
    let late = service.post(&rei, "rei while down", &["swordsmith"]).await;
    let indexer = start_indexer(&service, &pg, &schema, index.clone()).await;
    eventually(
        30,
        "the post written while the indexer was down",
        || async { indexed_posts(&pg, &schema, &rei).await.len() == 3 },
    )
    .await;
    assert_eq!(
        indexed_posts(&pg, &schema, &rei).await,
        service.posts_of(&rei).await
    );
    assert_eq!(
        indexer.metrics().backfills.load(Ordering::Relaxed),
        0,
        "accounts with a cursor resume; they are not backfilled again"
    );
    let _ = late;

    // The service restarts under the indexer: the streams reconnect and go on.
    service.kill().await;
    service.restart().await;
    service
        .post(&kaoruko, "kaoruko after restart", &["aekea"])
        .await;
    eventually(30, "the post after the service restarted", || async {
        indexed_posts(&pg, &schema, &kaoruko).await.len() == 2
    })
    .await;
    assert_eq!(
        indexed_posts(&pg, &schema, &kaoruko).await,
        service.posts_of(&kaoruko).await
    );

    // A boundary change reaches a long-lived viewer cache through the service-level stream at
    // once (not after the hour-long TTL).
    let cached = Arc::new(
        AppView::builder(index.clone())
            .viewer_ttl_ms(3_600_000)
            .build(),
    );
    let invalidations = tokio::spawn(stratos_client::stream::invalidate_viewers(
        stratos_client::stream::EnrollmentStream::builder(&service.base)
            .auth(stratos_client::stream::StreamAuth::SyncToken(
                SYNC_TOKEN.into(),
            ))
            .build(),
        cached.clone(),
    ));
    let before = cached.timeline(Some(&kaoruko), &all).await.unwrap();
    assert!(texts(&before).iter().all(|t| !t.starts_with("rei")));
    service
        .admin()
        .admin_set_boundaries(&kaoruko, &["aekea", "swordsmith"])
        .await
        .unwrap();
    eventually(30, "the cached viewer to see the new boundary", || async {
        let feed = cached.timeline(Some(&kaoruko), &all).await.unwrap();
        texts(&feed).iter().any(|t| t == "rei swordsmith")
    })
    .await;
    invalidations.abort();
    service
        .admin()
        .admin_set_boundaries(&kaoruko, &["aekea"])
        .await
        .unwrap();

    // Unenrolling removes the account's rows; a new account is picked up live.
    service.as_user(&sakura).unenroll().await.unwrap();
    let asuka = did("did:plc:asuka");
    service.enroll(&asuka, &["aekea"]).await;
    service.post(&asuka, "asuka new", &["aekea"]).await;
    eventually(30, "the unenrollment and the new account", || async {
        indexed_posts(&pg, &schema, &sakura).await.is_empty()
            && indexed_posts(&pg, &schema, &asuka).await.len() == 1
    })
    .await;
    let kaoruko_feed = appview.timeline(Some(&kaoruko), &all).await.unwrap();
    assert_eq!(
        texts(&kaoruko_feed),
        ["asuka new", "kaoruko aekea", "kaoruko after restart"]
    );
    indexer.stop().await;
    index.drop_schema().await.unwrap();
}

/// A corrupted frame (one byte flipped on the wire) is refused by verification, counted, never
/// indexed; the account is re-read from its export and every post lands exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_frame_is_refused_counted_and_repaired_from_the_export() {
    let Some(pg) = postgres_url() else { return };
    let service = Service::start().await;
    let (index, schema) = fresh_index(&pg).await;
    let rei = did("did:plc:rei");
    service.enroll(&rei, &["swordsmith"]).await;
    // The indexer reaches the service through the proxy; the 3rd large frame is corrupted.
    let (proxy, seen) = tampering_proxy(service.port, 3).await;
    let mut vars: HashMap<String, String> =
        indexer_vars(&service, &pg, &schema).into_iter().collect();
    vars.insert(
        "STRATOS_SERVICE_URL".into(),
        format!("http://127.0.0.1:{proxy}"),
    );
    let config = IndexerConfig::from_vars(&vars).unwrap();
    let metrics = Arc::new(Metrics::default());
    let indexer = Indexer::start(config, index.clone(), metrics.clone())
        .await
        .unwrap();
    // Wait until the account is followed (its backfill done), then write through the stream.
    eventually(30, "the first backfill", || async {
        metrics.backfills.load(Ordering::Relaxed) >= 1
    })
    .await;
    for i in 0..6 {
        service
            .post(
                &rei,
                &format!("post {i} {}", "x".repeat(250)),
                &["swordsmith"],
            )
            .await;
    }
    eventually(30, "every post, after the repair", || async {
        indexed_posts(&pg, &schema, &rei).await.len() == 6
    })
    .await;
    assert!(seen.load(Ordering::SeqCst) >= 3, "the proxy saw the frames");
    assert_eq!(
        metrics.verification_failures.load(Ordering::Relaxed),
        1,
        "the corrupted frame was refused"
    );
    assert!(
        metrics.backfills.load(Ordering::Relaxed) >= 2,
        "and repaired"
    );
    assert_eq!(
        indexed_posts(&pg, &schema, &rei).await,
        service.posts_of(&rei).await
    );
    indexer.stop().await;
    index.drop_schema().await.unwrap();
}

/// With one connection for three accounts, each waits its turn: an idle stream gives its
/// connection up to a waiting one, and every account's posts arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_take_turns_when_connections_are_capped() {
    let Some(pg) = postgres_url() else { return };
    let service = Service::start().await;
    let (index, schema) = fresh_index(&pg).await;
    let accounts = [
        did("did:plc:turna"),
        did("did:plc:turnb"),
        did("did:plc:turnc"),
    ];
    for a in &accounts {
        service.enroll(a, &["swordsmith"]).await;
    }
    let mut vars: HashMap<String, String> =
        indexer_vars(&service, &pg, &schema).into_iter().collect();
    vars.insert("ACTOR_SYNC_MAX_CONNECTIONS".into(), "1".into());
    vars.insert("ACTOR_SYNC_IDLE_EVICTION_MS".into(), "200".into());
    let metrics = Arc::new(Metrics::default());
    let indexer = Indexer::start(
        IndexerConfig::from_vars(&vars).unwrap(),
        index.clone(),
        metrics.clone(),
    )
    .await
    .unwrap();
    eventually(30, "the three accounts to be followed", || async {
        metrics.actors.load(Ordering::Relaxed) == 3
    })
    .await;
    let mut saw_waiting = false;
    for round in 0..3 {
        for a in &accounts {
            service
                .post(a, &format!("turn {round}"), &["swordsmith"])
                .await;
        }
        assert!(metrics.actors_connected.load(Ordering::Relaxed) <= 1);
        saw_waiting |= metrics.actors_waiting.load(Ordering::Relaxed) > 0;
    }
    assert!(saw_waiting, "with one connection, accounts wait");
    for a in &accounts {
        eventually(30, "every account's posts", || async {
            indexed_posts(&pg, &schema, a).await.len() == 3
        })
        .await;
        assert_eq!(
            indexed_posts(&pg, &schema, a).await,
            service.posts_of(a).await
        );
    }
    indexer.stop().await;
    index.drop_schema().await.unwrap();
}
