//! The [`AppViewIndex`] conformance suite (the indexer's writes and the AppView's feed reads).

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::json;
use stratos_domain::appview::{self, FeedCursor, PostRow};
use stratos_domain::data;
use stratos_domain::syntax::{AtUri, Datetime, Did, RecordKey, Tid};
use stratos_ports::appview_store::{
    ActorCursor, AppViewIndex, EnrollmentChange, FeedQuery, IndexBatch, IndexedEnrollment,
    PostChange,
};

/// What the cases run against (each starts empty).
pub type Subject = Arc<dyn AppViewIndex>;

/// One test per [`AppViewIndex`] case, in a module `appview_index`. The argument gives a future
/// of an empty index, afresh for every case (see [`crate::conformance`]).
#[macro_export]
macro_rules! appview_index_conformance {
    ($fixture:expr $(,)?) => {
        $crate::__conformance_suite! {
            module: appview_index,
            port: appview_index,
            fixture: $fixture,
            cases: [
                batches_write_rows_and_cursors_together,
                updates_replace_boundaries_and_keep_the_feed_position,
                a_replacing_batch_leaves_exactly_its_posts,
                feeds_select_by_boundary_and_author,
                pages_neither_skip_nor_repeat_posts_of_equal_time,
                replies_come_oldest_first,
                enrollments_and_the_service_cursor,
            ],
        }
    };
}

fn did(s: &str) -> Did {
    Did::parse(s).expect("suite DID")
}

const S: &str = "did:web:stratos.suite";

fn b(name: &str) -> String {
    format!("{S}/{name}")
}

/// A post row as the indexer would build it.
pub fn row(author: &Did, rkey: &str, text: &str, boundaries: &[&str], at_ms: i64) -> PostRow {
    row_replying(author, rkey, text, boundaries, at_ms, None)
}

fn row_replying(
    author: &Did,
    rkey: &str,
    text: &str,
    boundaries: &[&str],
    at_ms: i64,
    parent: Option<&str>,
) -> PostRow {
    let at = Datetime::from_unix_millis(at_ms);
    let mut record = json!({
        "$type": appview::POST_COLLECTION,
        "text": text,
        "createdAt": at.as_str(),
        "boundary": { "values": boundaries.iter().map(|v| json!({ "value": b(v) })).collect::<Vec<_>>() },
    });
    if let Some(parent) = parent {
        record["reply"] = json!({
            "root": { "uri": parent, "cid": "bafyreib2rxk3rybk3aobmv5cjuql3bm2twh4jo5uxgf5kpqcsgz7soqoy4" },
            "parent": { "uri": parent, "cid": "bafyreib2rxk3rybk3aobmv5cjuql3bm2twh4jo5uxgf5kpqcsgz7soqoy4" },
        });
    }
    let record = data::json_to_ipld(&record).expect("record");
    let (cid, _) = data::record_cid(&record).expect("cid");
    appview::post_row(
        author,
        &RecordKey::parse(rkey).expect("rkey"),
        &cid,
        &record,
        &Datetime::from_unix_millis(at_ms + 5),
    )
    .expect("row")
}

fn batch(author: &Did, seq: u64, changes: Vec<PostChange>) -> IndexBatch {
    IndexBatch {
        did: author.clone(),
        replace: false,
        changes,
        cursor: ActorCursor {
            seq,
            rev: Some(Tid::from_parts(seq, 0)),
        },
    }
}

fn up(row: PostRow) -> PostChange {
    PostChange::Upsert(Box::new(row))
}

fn query(boundaries: &[&str], author: Option<&Did>, limit: usize) -> FeedQuery {
    FeedQuery {
        boundaries: Some(boundaries.iter().map(|v| b(v)).collect()),
        author: author.cloned(),
        limit,
        after: None,
    }
}

fn texts(rows: &[PostRow]) -> Vec<&str> {
    rows.iter().map(|r| r.text.as_str()).collect()
}

/// A batch's rows and its cursor land together; deletes remove rows; cursors are per account
/// and the last one wins.
pub async fn batches_write_rows_and_cursors_together(index: Subject) {
    let rei = did("did:plc:avrei");
    let asuka = did("did:plc:avasuka");
    let p1 = row(&rei, "3kaa", "one", &["a"], 1_000);
    let p2 = row(&rei, "3kab", "two", &["a"], 2_000);
    let p3 = row(&asuka, "3kac", "three", &["a"], 3_000);
    index
        .apply(&[
            batch(&rei, 1, vec![up(p1.clone()), up(p2.clone())]),
            batch(&asuka, 7, vec![up(p3.clone())]),
        ])
        .await
        .expect("apply");
    let page = index.feed(&query(&["a"], None, 10)).await.expect("feed");
    assert_eq!(texts(&page.posts), ["three", "two", "one"]);
    assert_eq!(index.post(&p2.uri).await.expect("post"), Some(p2.clone()));
    index
        .apply(&[batch(&rei, 2, vec![PostChange::Delete(p1.uri.clone())])])
        .await
        .expect("delete");
    assert_eq!(index.post(&p1.uri).await.expect("post"), None);
    // Deleting what is not there is no error.
    index
        .apply(&[batch(&rei, 3, vec![PostChange::Delete(p1.uri.clone())])])
        .await
        .expect("delete again");
    let mut cursors = index.cursors().await.expect("cursors");
    cursors.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        cursors,
        [
            (
                asuka.clone(),
                ActorCursor {
                    seq: 7,
                    rev: Some(Tid::from_parts(7, 0))
                }
            ),
            (
                rei.clone(),
                ActorCursor {
                    seq: 3,
                    rev: Some(Tid::from_parts(3, 0))
                }
            ),
        ]
    );
    index.ping().await.expect("ping");
}

/// An update replaces text and boundaries; the post keeps its place in feeds.
pub async fn updates_replace_boundaries_and_keep_the_feed_position(index: Subject) {
    let rei = did("did:plc:avrei");
    let before = row(&rei, "3kaa", "draft", &["a", "b"], 1_000);
    index
        .apply(&[batch(&rei, 1, vec![up(before.clone())])])
        .await
        .expect("apply");
    let mut after = row(&rei, "3kaa", "final", &["b"], 9_000);
    after.indexed_at = Datetime::from_unix_millis(9_000).to_string();
    index
        .apply(&[batch(&rei, 2, vec![up(after)])])
        .await
        .expect("update");
    let only_a = index.feed(&query(&["a"], None, 10)).await.expect("feed");
    assert!(only_a.posts.is_empty(), "the old boundary is gone");
    let got = index.post(&before.uri).await.expect("post").expect("row");
    assert_eq!(got.text, "final");
    assert_eq!(got.boundaries, [b("b")]);
    assert_eq!(got.sort_at, before.sort_at, "the feed position stays");
}

/// A backfill batch (`replace`) leaves the account with exactly its posts; other accounts keep
/// theirs.
pub async fn a_replacing_batch_leaves_exactly_its_posts(index: Subject) {
    let rei = did("did:plc:avrei");
    let asuka = did("did:plc:avasuka");
    index
        .apply(&[
            batch(
                &rei,
                1,
                vec![
                    up(row(&rei, "3kaa", "stale", &["a"], 1_000)),
                    up(row(&rei, "3kab", "kept", &["a"], 2_000)),
                ],
            ),
            batch(
                &asuka,
                1,
                vec![up(row(&asuka, "3kac", "other", &["a"], 3_000))],
            ),
        ])
        .await
        .expect("apply");
    let mut backfill = batch(
        &rei,
        40,
        vec![
            up(row(&rei, "3kab", "kept", &["a"], 2_000)),
            up(row(&rei, "3kad", "new", &["a"], 4_000)),
        ],
    );
    backfill.replace = true;
    index.apply(&[backfill]).await.expect("backfill");
    let page = index.feed(&query(&["a"], None, 10)).await.expect("feed");
    assert_eq!(texts(&page.posts), ["new", "other", "kept"]);

    // Backfills and updates of two accounts in one call: each change lands as if applied
    // one by one (an update after another account's backfill replaces the boundaries).
    let mut rei_backfill = batch(
        &rei,
        41,
        vec![up(row(&rei, "3kae", "moving", &["a"], 5_000))],
    );
    rei_backfill.replace = true;
    let mut asuka_backfill = batch(
        &asuka,
        2,
        vec![up(row(&asuka, "3kaf", "asuka", &["b"], 6_000))],
    );
    asuka_backfill.replace = true;
    index
        .apply(&[
            rei_backfill,
            asuka_backfill,
            batch(
                &rei,
                42,
                vec![up(row(&rei, "3kae", "moved", &["b"], 5_000))],
            ),
        ])
        .await
        .expect("apply");
    let in_a = index.feed(&query(&["a"], None, 10)).await.expect("feed");
    assert!(in_a.posts.is_empty(), "{:?}", texts(&in_a.posts));
    let in_b = index.feed(&query(&["b"], None, 10)).await.expect("feed");
    assert_eq!(texts(&in_b.posts), ["asuka", "moved"]);
    let moved = index
        .post(&in_b.posts[1].uri)
        .await
        .expect("post")
        .expect("row");
    assert_eq!(moved.boundaries, [b("b")]);
}

/// Feeds select posts sharing any of the boundaries (each post once), and an author's; no
/// boundaries select nothing; `None` selects all of an author's posts.
pub async fn feeds_select_by_boundary_and_author(index: Subject) {
    let rei = did("did:plc:avrei");
    let asuka = did("did:plc:avasuka");
    index
        .apply(&[
            batch(
                &rei,
                1,
                vec![
                    up(row(&rei, "3kaa", "a+b", &["a", "b"], 1_000)),
                    up(row(&rei, "3kab", "c", &["c"], 2_000)),
                ],
            ),
            batch(&asuka, 1, vec![up(row(&asuka, "3kac", "b", &["b"], 3_000))]),
        ])
        .await
        .expect("apply");
    let ab = index
        .feed(&query(&["a", "b"], None, 10))
        .await
        .expect("feed");
    assert_eq!(texts(&ab.posts), ["b", "a+b"], "each post once");
    assert!(ab.cursor.is_none(), "a page that is not full ends the feed");
    let none = index.feed(&query(&[], None, 10)).await.expect("feed");
    assert!(none.posts.is_empty());
    let rei_b = index
        .feed(&query(&["b"], Some(&rei), 10))
        .await
        .expect("feed");
    assert_eq!(texts(&rei_b.posts), ["a+b"]);
    let all_rei = FeedQuery {
        boundaries: None,
        author: Some(rei.clone()),
        limit: 10,
        after: None,
    };
    let all = index.feed(&all_rei).await.expect("feed");
    assert_eq!(texts(&all.posts), ["c", "a+b"]);
    let page = index
        .feed(&query(&["a", "b", "c"], None, 2))
        .await
        .expect("feed");
    assert_eq!(texts(&page.posts), ["b", "c"]);
    assert_eq!(
        page.cursor,
        Some(page.posts[1].position()),
        "a full page hands out its last position"
    );
}

/// Paging through posts that share one sort time returns each exactly once, in order.
pub async fn pages_neither_skip_nor_repeat_posts_of_equal_time(index: Subject) {
    let rei = did("did:plc:avrei");
    let asuka = did("did:plc:avasuka");
    let mut rows = Vec::new();
    for i in 0..23 {
        let author = if i % 2 == 0 { &rei } else { &asuka };
        // Three distinct times only: most posts tie.
        rows.push(row(
            author,
            &format!("3kz{i:02}"),
            &format!("p{i}"),
            &["a"],
            1_000 * (i % 3),
        ));
    }
    let (r, a): (Vec<_>, Vec<_>) = rows.iter().cloned().partition(|p| p.creator == rei);
    index
        .apply(&[
            batch(&rei, 1, r.into_iter().map(up).collect()),
            batch(&asuka, 1, a.into_iter().map(up).collect()),
        ])
        .await
        .expect("apply");
    let mut expected: Vec<(String, String)> = rows
        .iter()
        .map(|p| (p.sort_at.clone(), p.uri.to_string()))
        .collect();
    expected.sort();
    expected.reverse();
    let mut seen = Vec::new();
    let mut after: Option<FeedCursor> = None;
    for _ in 0..10 {
        let mut q = query(&["a"], None, 5);
        q.after = after.clone();
        let page = index.feed(&q).await.expect("feed");
        seen.extend(
            page.posts
                .iter()
                .map(|p| (p.sort_at.clone(), p.uri.to_string())),
        );
        match page.cursor {
            Some(c) => after = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, expected);
    let unique: BTreeSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), 23);
}

/// Direct replies to a post, oldest first.
pub async fn replies_come_oldest_first(index: Subject) {
    let rei = did("did:plc:avrei");
    let root = row(&rei, "3kaa", "root", &["a"], 1_000);
    let parent = root.uri.to_string();
    index
        .apply(&[batch(
            &rei,
            1,
            vec![
                up(root.clone()),
                up(row_replying(
                    &rei,
                    "3kac",
                    "second",
                    &["a"],
                    3_000,
                    Some(&parent),
                )),
                up(row_replying(
                    &rei,
                    "3kab",
                    "first",
                    &["a"],
                    2_000,
                    Some(&parent),
                )),
                up(row(&rei, "3kad", "unrelated", &["a"], 4_000)),
            ],
        )])
        .await
        .expect("apply");
    let replies = index.replies(&root.uri, 10).await.expect("replies");
    assert_eq!(texts(&replies), ["first", "second"]);
    assert_eq!(replies[0].reply_parent.as_deref(), Some(parent.as_str()));
    let one = index.replies(&root.uri, 1).await.expect("replies");
    assert_eq!(texts(&one), ["first"]);
    let none = AtUri::parse("at://did:plc:avrei/zone.stratos.feed.post/3kzz").expect("uri");
    assert!(index.replies(&none, 10).await.expect("replies").is_empty());
}

/// Enrollments are upserted and removed with the service stream's cursor; removing one removes
/// the account's posts and cursor.
pub async fn enrollments_and_the_service_cursor(index: Subject) {
    let rei = did("did:plc:avrei");
    let url = "https://stratos.suite";
    assert_eq!(index.service_cursor(url).await.expect("cursor"), None);
    let enrollment = IndexedEnrollment {
        did: rei.clone(),
        service_url: url.into(),
        enrolled_at: "2026-12-07T00:00:00.000Z".into(),
        boundaries: vec![b("a"), b("b")],
    };
    index
        .apply_enrollment(
            &EnrollmentChange::Upsert(enrollment.clone()),
            Some((url, 4)),
        )
        .await
        .expect("enroll");
    assert_eq!(
        index.enrollment(&rei).await.expect("get"),
        Some(enrollment.clone())
    );
    assert_eq!(
        index.enrollments().await.expect("all"),
        std::slice::from_ref(&enrollment)
    );
    assert_eq!(index.service_cursor(url).await.expect("cursor"), Some(4));
    let changed = IndexedEnrollment {
        boundaries: vec![b("c")],
        ..enrollment
    };
    index
        .apply_enrollment(&EnrollmentChange::Upsert(changed.clone()), None)
        .await
        .expect("update");
    assert_eq!(index.enrollment(&rei).await.expect("get"), Some(changed));
    assert_eq!(index.service_cursor(url).await.expect("cursor"), Some(4));
    index
        .apply(&[batch(
            &rei,
            9,
            vec![up(row(&rei, "3kaa", "p", &["c"], 1_000))],
        )])
        .await
        .expect("apply");
    index
        .apply_enrollment(&EnrollmentChange::Remove(rei.clone()), Some((url, 5)))
        .await
        .expect("remove");
    assert_eq!(index.enrollment(&rei).await.expect("get"), None);
    assert!(index.cursors().await.expect("cursors").is_empty());
    assert!(
        index
            .feed(&query(&["c"], None, 10))
            .await
            .expect("feed")
            .posts
            .is_empty()
    );
    assert_eq!(index.service_cursor(url).await.expect("cursor"), Some(5));
    assert_eq!(
        index.service_cursor("https://other").await.expect("cursor"),
        None
    );
    index
        .set_service_cursor("firehose:https://pds.suite", 77)
        .await
        .expect("set");
    index
        .set_service_cursor("firehose:https://pds.suite", 78)
        .await
        .expect("set");
    assert_eq!(
        index
            .service_cursor("firehose:https://pds.suite")
            .await
            .expect("cursor"),
        Some(78)
    );
    assert_eq!(index.service_cursor(url).await.expect("cursor"), Some(5));
}
