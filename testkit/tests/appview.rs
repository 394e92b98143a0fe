//! The AppView SDK's feed rules (reference §4.6) over the in-memory index: who sees what,
//! filters, paging, the opaque denial, and the viewer-boundary cache.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use stratos_domain::syntax::{AtUri, Did, Tid};
use stratos_ports::Cause;
use stratos_ports::appview_store::{
    ActorCursor, BoundaryResolver, EnrollmentChange, IndexBatch, IndexWriter, IndexedEnrollment,
    PostChange,
};
use stratos_ports::usecases::appview::{AppView, AppViewError, FeedParams};
use stratos_ports::xrpc::XrpcError;
use stratos_testkit::conformance::appview_index::row;
use stratos_testkit::memory::{ManualClock, MemoryAppViewIndex};

const S: &str = "did:web:stratos.suite";

fn did(s: &str) -> Did {
    Did::parse(s).unwrap()
}

fn b(name: &str) -> String {
    format!("{S}/{name}")
}

struct Fixture {
    index: Arc<MemoryAppViewIndex>,
    rei: Did,
    sakura: Did,
    kaoruko: Did,
    rei_post: AtUri,
    kaoruko_post: AtUri,
}

async fn enroll(index: &MemoryAppViewIndex, who: &Did, boundaries: &[&str]) {
    index
        .apply_enrollment(
            &EnrollmentChange::Upsert(IndexedEnrollment {
                did: who.clone(),
                service_url: "https://stratos.suite".into(),
                enrolled_at: "2026-12-07T00:00:00.000Z".into(),
                boundaries: boundaries.iter().map(|n| b(n)).collect(),
            }),
            None,
        )
        .await
        .unwrap();
}

/// Rei and Sakura hold `swordsmith`, Kaoruko `aekea`; Rei posted in swordsmith (twice, and
/// once in both), Kaoruko in aekea.
async fn fixture() -> Fixture {
    let index = Arc::new(MemoryAppViewIndex::new());
    let rei = did("did:plc:rei");
    let sakura = did("did:plc:sakura");
    let kaoruko = did("did:plc:kaoruko");
    enroll(&index, &rei, &["swordsmith"]).await;
    enroll(&index, &sakura, &["swordsmith"]).await;
    enroll(&index, &kaoruko, &["aekea"]).await;
    let p1 = row(&rei, "3kaa", "rei one", &["swordsmith"], 1_000);
    let p2 = row(&rei, "3kab", "rei two", &["swordsmith"], 2_000);
    let p3 = row(&rei, "3kac", "rei both", &["swordsmith", "aekea"], 3_000);
    let k1 = row(&kaoruko, "3kad", "kaoruko", &["aekea"], 4_000);
    let (rei_post, kaoruko_post) = (p1.uri.clone(), k1.uri.clone());
    let cursor = ActorCursor {
        seq: 1,
        rev: Some(Tid::from_parts(1, 0)),
    };
    index
        .apply(&[
            IndexBatch {
                did: rei.clone(),
                replace: false,
                changes: [p1, p2, p3]
                    .into_iter()
                    .map(|p| PostChange::Upsert(Box::new(p)))
                    .collect(),
                cursor: cursor.clone(),
            },
            IndexBatch {
                did: kaoruko.clone(),
                replace: false,
                changes: vec![PostChange::Upsert(Box::new(k1))],
                cursor,
            },
        ])
        .await
        .unwrap();
    Fixture {
        index,
        rei,
        sakura,
        kaoruko,
        rei_post,
        kaoruko_post,
    }
}

fn texts(feed: &stratos_ports::usecases::appview::Feed) -> Vec<&str> {
    feed.feed.iter().map(|p| p.row.text.as_str()).collect()
}

#[tokio::test]
async fn timelines_show_exactly_the_shared_boundaries() {
    let f = fixture().await;
    let av = AppView::builder(f.index.clone()).build();
    let all = FeedParams::default();
    let sakura = av.timeline(Some(&f.sakura), &all).await.unwrap();
    assert_eq!(texts(&sakura), ["rei both", "rei two", "rei one"]);
    // Feeds show only the boundaries the viewer holds too.
    assert_eq!(sakura.feed[0].shown_boundaries, [b("swordsmith")]);
    let json = sakura.to_json();
    assert_eq!(
        json["feed"][0]["post"]["record"]["boundary"]["values"],
        serde_json::json!([{ "value": b("swordsmith") }])
    );
    assert_eq!(json["feed"][0]["post"]["author"]["did"], "did:plc:rei");
    let kaoruko = av.timeline(Some(&f.kaoruko), &all).await.unwrap();
    assert_eq!(texts(&kaoruko), ["kaoruko", "rei both"]);
    // `boundary=` narrows; one the viewer lacks gives nothing rather than an error.
    let narrowed = FeedParams {
        boundary: Some(b("aekea")),
        ..FeedParams::default()
    };
    assert!(
        av.timeline(Some(&f.sakura), &narrowed)
            .await
            .unwrap()
            .feed
            .is_empty()
    );
    assert_eq!(
        texts(&av.timeline(Some(&f.kaoruko), &narrowed).await.unwrap()),
        ["kaoruko", "rei both"]
    );
    // No viewer: refused.
    let err = av.timeline(None, &all).await.unwrap_err();
    assert!(matches!(err, AppViewError::AuthRequired));
    assert_eq!(XrpcError::from(err).status, 401);
    // A malformed cursor is the client's mistake.
    let bad = FeedParams {
        cursor: Some("nope".into()),
        ..FeedParams::default()
    };
    let err = av.timeline(Some(&f.sakura), &bad).await.unwrap_err();
    assert_eq!(XrpcError::from(err).status, 400);
}

#[tokio::test]
async fn pages_follow_their_cursor() {
    let f = fixture().await;
    let av = AppView::builder(f.index.clone()).build();
    let first = av
        .timeline(
            Some(&f.sakura),
            &FeedParams {
                limit: Some(2),
                ..FeedParams::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(texts(&first), ["rei both", "rei two"]);
    let second = av
        .timeline(
            Some(&f.sakura),
            &FeedParams {
                limit: Some(2),
                cursor: first.cursor.clone(),
                ..FeedParams::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(texts(&second), ["rei one"]);
    assert!(second.cursor.is_none());
}

#[tokio::test]
async fn author_feeds_cross_boundary_and_own() {
    let f = fixture().await;
    let av = AppView::builder(f.index.clone()).build();
    let all = FeedParams::default();
    let cross = av
        .author_feed(Some(&f.sakura), &f.kaoruko, &all)
        .await
        .unwrap();
    assert!(
        cross.feed.is_empty(),
        "a cross-boundary author feed is empty"
    );
    let shared = av
        .author_feed(Some(&f.kaoruko), &f.rei, &all)
        .await
        .unwrap();
    assert_eq!(texts(&shared), ["rei both"]);
    // The author reads all of their own posts, with every boundary shown.
    let own = av.author_feed(Some(&f.rei), &f.rei, &all).await.unwrap();
    assert_eq!(texts(&own), ["rei both", "rei two", "rei one"]);
    assert_eq!(own.feed[0].shown_boundaries, [b("aekea"), b("swordsmith")]);
}

#[tokio::test]
async fn a_post_is_shown_whole_or_denied_like_a_missing_one() {
    let f = fixture().await;
    let av = AppView::builder(f.index.clone()).build();
    let post = av.get_post(Some(&f.sakura), &f.rei_post).await.unwrap();
    assert_eq!(post.row.text, "rei one");
    let denied = av
        .get_post(Some(&f.sakura), &f.kaoruko_post)
        .await
        .unwrap_err();
    let missing_uri = AtUri::parse("at://did:plc:kaoruko/zone.stratos.feed.post/3kzz").unwrap();
    let missing = av
        .get_post(Some(&f.sakura), &missing_uri)
        .await
        .unwrap_err();
    let (denied, missing) = (XrpcError::from(denied), XrpcError::from(missing));
    assert_eq!(denied.error, "BoundaryMismatch");
    assert_eq!(
        (denied.status, &denied.error, &denied.message),
        (missing.status, &missing.error, &missing.message),
        "a denial must not tell an existing post apart from a missing one"
    );
    assert!(matches!(
        av.get_post(None, &f.rei_post).await,
        Err(AppViewError::AuthRequired)
    ));
    // An unenrolled viewer sees nothing.
    let stranger = did("did:plc:stranger");
    assert!(av.get_post(Some(&stranger), &f.rei_post).await.is_err());
    assert!(
        av.timeline(Some(&stranger), &FeedParams::default())
            .await
            .unwrap()
            .feed
            .is_empty()
    );
}

#[tokio::test]
async fn threads_show_only_readable_context() {
    let f = fixture().await;
    let parent = f.rei_post.to_string();
    let mut reply = row(&f.sakura, "3kba", "sakura replies", &["swordsmith"], 5_000);
    reply.reply_parent = Some(parent.clone());
    reply.reply_root = Some(parent.clone());
    let mut hidden = row(&f.kaoruko, "3kbb", "kaoruko replies", &["aekea"], 6_000);
    hidden.reply_parent = Some(parent.clone());
    hidden.reply_root = Some(parent);
    let reply_uri = reply.uri.clone();
    for (who, r) in [(&f.sakura, reply), (&f.kaoruko, hidden)] {
        f.index
            .apply(&[IndexBatch {
                did: who.clone(),
                replace: false,
                changes: vec![PostChange::Upsert(Box::new(r))],
                cursor: ActorCursor { seq: 2, rev: None },
            }])
            .await
            .unwrap();
    }
    let av = AppView::builder(f.index.clone()).build();
    let thread = av.thread(Some(&f.sakura), &f.rei_post).await.unwrap();
    let replies: Vec<&str> = thread.replies.iter().map(|p| p.row.text.as_str()).collect();
    assert_eq!(replies, ["sakura replies"]);
    let up = av.thread(Some(&f.sakura), &reply_uri).await.unwrap();
    assert_eq!(up.parents.len(), 1);
    assert_eq!(up.parents[0].row.uri, f.rei_post);
}

struct CountingResolver {
    calls: AtomicUsize,
    boundaries: Vec<String>,
}

#[async_trait]
impl BoundaryResolver for CountingResolver {
    async fn resolve(&self, did: &Did) -> Result<Option<IndexedEnrollment>, Cause> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(Some(IndexedEnrollment {
            did: did.clone(),
            service_url: "https://stratos.suite".into(),
            enrolled_at: "2026-12-07T00:00:00.000Z".into(),
            boundaries: self.boundaries.clone(),
        }))
    }
}

#[tokio::test]
async fn viewer_boundaries_are_cached_for_their_ttl_and_invalidated() {
    let f = fixture().await;
    let resolver = Arc::new(CountingResolver {
        calls: AtomicUsize::new(0),
        boundaries: vec![b("aekea")],
    });
    let clock = Arc::new(ManualClock::at(1_000_000));
    let av = AppView::builder(f.index.clone())
        .resolver(resolver.clone())
        .clock(clock.clone())
        .viewer_ttl_ms(10_000)
        .build();
    // Not in the index: the resolver answers, once per TTL.
    let newcomer = did("did:plc:newcomer");
    let feed = av
        .timeline(Some(&newcomer), &FeedParams::default())
        .await
        .unwrap();
    assert_eq!(texts(&feed), ["kaoruko", "rei both"]);
    av.timeline(Some(&newcomer), &FeedParams::default())
        .await
        .unwrap();
    assert_eq!(resolver.calls.load(Ordering::SeqCst), 1);
    clock.advance(10_001);
    av.timeline(Some(&newcomer), &FeedParams::default())
        .await
        .unwrap();
    assert_eq!(resolver.calls.load(Ordering::SeqCst), 2);
    // The index knows Sakura: no resolver call. A change seen on the service-level stream
    // invalidates the cached entry at once.
    av.timeline(Some(&f.sakura), &FeedParams::default())
        .await
        .unwrap();
    assert_eq!(resolver.calls.load(Ordering::SeqCst), 2);
    enroll(&f.index, &f.sakura, &["aekea"]).await;
    let stale = av
        .timeline(Some(&f.sakura), &FeedParams::default())
        .await
        .unwrap();
    assert_eq!(texts(&stale), ["rei both", "rei two", "rei one"]);
    av.invalidate(&f.sakura);
    let fresh = av
        .timeline(Some(&f.sakura), &FeedParams::default())
        .await
        .unwrap();
    assert_eq!(texts(&fresh), ["kaoruko", "rei both"]);
    // A frame's boundaries go straight into the cache.
    av.update_viewer(&f.sakura, [b("swordsmith")]);
    let updated = av
        .timeline(Some(&f.sakura), &FeedParams::default())
        .await
        .unwrap();
    assert_eq!(texts(&updated), ["rei both", "rei two", "rei one"]);
    av.update_viewer(&f.sakura, Vec::new());
    assert!(
        av.timeline(Some(&f.sakura), &FeedParams::default())
            .await
            .unwrap()
            .feed
            .is_empty()
    );
}
