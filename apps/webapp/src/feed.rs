//! The merged feed, without I/O: public posts from PDSes, private posts the AppView SDK let the
//! viewer read, and stubs of private posts the viewer may not read, merged by time, filtered by
//! boundary and grouped into threads.

use std::collections::{HashMap, HashSet};

use serde_json::Value;
use stratos_domain::syntax::{Datetime, Did};

/// The collection of public posts (on the PDS).
pub const PUBLIC_POST: &str = "app.bsky.feed.post";
/// The collection of Stratos posts (in Stratos; their stubs on the PDS).
pub const PRIVATE_POST: &str = "zone.stratos.feed.post";

/// What the viewer sees of a post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visibility {
    /// A public post on the author's PDS.
    Public,
    /// A private post the viewer may read, with the boundaries shown to them.
    Private {
        /// Qualified boundaries (`{serviceDid}/{name}`).
        boundaries: Vec<String>,
    },
    /// A private post the viewer may not read: only its stub is public.
    Hidden,
}

/// A reply's references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyRef {
    /// The thread's root post.
    pub root_uri: String,
    /// The post replied to.
    pub parent_uri: String,
}

/// One post of the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedItem {
    /// `at://…`.
    pub uri: String,
    /// The author.
    pub author: Did,
    /// The text ('' for hidden posts).
    pub text: String,
    /// `createdAt` as written.
    pub created_at: String,
    /// `createdAt` in Unix milliseconds (0 when it does not parse): the sort key.
    pub sort_ms: i64,
    /// What the viewer sees.
    pub visibility: Visibility,
    /// Reply references (`None` for a thread's first post).
    pub reply: Option<ReplyRef>,
}

fn millis(created_at: &str) -> i64 {
    Datetime::parse(created_at)
        .ok()
        .map(|d| d.to_unix_millis())
        .unwrap_or(0)
}

fn reply_of(record: &Value) -> Option<ReplyRef> {
    let reply = record.get("reply")?;
    let uri = |k: &str| reply.get(k)?.get("uri")?.as_str().map(str::to_owned);
    Some(ReplyRef {
        root_uri: uri("root")?,
        parent_uri: uri("parent")?,
    })
}

/// A public post (`app.bsky.feed.post` record of `author` under `rkey`).
pub fn public_item(author: &Did, rkey: &str, record: &Value) -> FeedItem {
    let created_at = record["createdAt"].as_str().unwrap_or_default().to_owned();
    FeedItem {
        uri: format!("at://{author}/{PUBLIC_POST}/{rkey}"),
        author: author.clone(),
        text: record["text"].as_str().unwrap_or_default().to_owned(),
        sort_ms: millis(&created_at),
        created_at,
        visibility: Visibility::Public,
        reply: reply_of(record),
    }
}

/// A stub on the PDS (`zone.stratos.feed.post` of `author` under `rkey`): a private post whose
/// content is not shown. `None` when the record is not a stub.
pub fn stub_item(author: &Did, rkey: &str, record: &Value) -> Option<FeedItem> {
    let source = record.get("source")?;
    source.get("subject")?.get("uri")?.as_str()?;
    let created_at = record["createdAt"].as_str().unwrap_or_default().to_owned();
    Some(FeedItem {
        uri: format!("at://{author}/{PRIVATE_POST}/{rkey}"),
        author: author.clone(),
        text: String::new(),
        sort_ms: millis(&created_at),
        created_at,
        visibility: Visibility::Hidden,
        reply: None,
    })
}

/// A private post the AppView SDK returned for the viewer.
pub fn private_item(view: &stratos_ports::usecases::appview::PostView) -> FeedItem {
    let row = &view.row;
    let reply = match (&row.reply_root, &row.reply_parent) {
        (Some(root), Some(parent)) => Some(ReplyRef {
            root_uri: root.clone(),
            parent_uri: parent.clone(),
        }),
        _ => None,
    };
    FeedItem {
        uri: row.uri.to_string(),
        author: row.creator.clone(),
        text: row.text.clone(),
        sort_ms: millis(&row.created_at),
        created_at: row.created_at.clone(),
        visibility: Visibility::Private {
            boundaries: view.shown_boundaries.clone(),
        },
        reply,
    }
}

/// One feed: every post once (a readable private post replaces its stub), newest first, ties
/// by URI so the order is stable.
pub fn merge(public: Vec<FeedItem>, private: Vec<FeedItem>, stubs: Vec<FeedItem>) -> Vec<FeedItem> {
    let readable: HashSet<String> = private.iter().map(|p| p.uri.clone()).collect();
    let mut seen = HashSet::new();
    let mut out: Vec<FeedItem> = public
        .into_iter()
        .chain(private)
        .chain(stubs.into_iter().filter(|s| !readable.contains(&s.uri)))
        .filter(|p| seen.insert(p.uri.clone()))
        .collect();
    out.sort_by(|a, b| b.sort_ms.cmp(&a.sort_ms).then_with(|| a.uri.cmp(&b.uri)));
    out
}

/// The feed of one tab: `None` is everything; a boundary keeps the public posts and the private
/// posts in that boundary (a hidden post's boundaries are unknown: it shows under "All" only).
pub fn filter(items: &[FeedItem], boundary: Option<&str>) -> Vec<FeedItem> {
    items
        .iter()
        .filter(|p| match (boundary, &p.visibility) {
            (None, _) | (Some(_), Visibility::Public) => true,
            (Some(b), Visibility::Private { boundaries }) => boundaries.iter().any(|x| x == b),
            (Some(_), Visibility::Hidden) => false,
        })
        .cloned()
        .collect()
}

/// The deepest indentation shown.
pub const MAX_DEPTH: usize = 4;

/// Threads in display order, each post with its depth: posts whose parent is in the feed go
/// under it (oldest reply first), the rest are roots in feed order (orphaned replies included).
pub fn threads(items: &[FeedItem]) -> Vec<(FeedItem, usize)> {
    let present: HashSet<&str> = items.iter().map(|p| p.uri.as_str()).collect();
    let mut children: HashMap<&str, Vec<&FeedItem>> = HashMap::new();
    let mut roots = Vec::new();
    for p in items {
        match &p.reply {
            Some(r) if present.contains(r.parent_uri.as_str()) && r.parent_uri != p.uri => {
                children.entry(r.parent_uri.as_str()).or_default().push(p)
            }
            _ => roots.push(p),
        }
    }
    for list in children.values_mut() {
        list.sort_by(|a, b| a.sort_ms.cmp(&b.sort_ms).then_with(|| a.uri.cmp(&b.uri)));
    }
    let mut out = Vec::with_capacity(items.len());
    // Iterative depth-first walk; `placed` stops a cycle of replies from looping.
    let mut placed: HashSet<&str> = HashSet::new();
    for root in roots {
        let mut stack = vec![(root, 0usize)];
        while let Some((p, depth)) = stack.pop() {
            if !placed.insert(p.uri.as_str()) {
                continue;
            }
            out.push((p.clone(), depth.min(MAX_DEPTH)));
            if let Some(kids) = children.get(p.uri.as_str()) {
                for kid in kids.iter().rev() {
                    stack.push((kid, depth + 1));
                }
            }
        }
    }
    out
}

/// A boundary as people read it: `did:web:x/name` → `name`; anything else unchanged.
pub fn display_boundary(value: &str) -> &str {
    match value
        .strip_prefix("did:")
        .and_then(|_| value.split_once('/'))
    {
        Some((_, name)) => name,
        None => value,
    }
}

/// A DID short enough for a byline: the first 16 and last 6 characters of one longer than 24.
pub fn short_did(did: &str) -> String {
    let chars: Vec<char> = did.chars().collect();
    if chars.len() <= 24 {
        return did.to_owned();
    }
    let head: String = chars[..16].iter().collect();
    let tail: String = chars[chars.len() - 6..].iter().collect();
    format!("{head}…{tail}")
}

/// "just now", "5m", "3h", "2d", or the date for a week and older.
pub fn relative_time(now_ms: i64, then_ms: i64, created_at: &str) -> String {
    let secs = (now_ms - then_ms).max(0) / 1000;
    match secs {
        s if s < 60 => "just now".into(),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s if s < 7 * 86_400 => format!("{}d", s / 86_400),
        _ => created_at.get(..10).unwrap_or(created_at).to_owned(),
    }
}

/// Boundary values from the forms Stratos answers in: `[{"value": …}]` or plain strings.
pub fn boundary_values(list: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = list
        .iter()
        .filter_map(|b| {
            b.get("value")
                .and_then(Value::as_str)
                .or_else(|| b.as_str())
        })
        .map(str::to_owned)
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
mod tests {
    use super::*;
    use serde_json::json;

    fn did(s: &str) -> Did {
        Did::parse(s).unwrap()
    }

    fn item(uri: &str, at: &str, vis: Visibility, parent: Option<&str>) -> FeedItem {
        FeedItem {
            uri: uri.into(),
            author: did("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"),
            text: uri.into(),
            created_at: at.into(),
            sort_ms: millis(at),
            visibility: vis,
            reply: parent.map(|p| ReplyRef {
                root_uri: p.into(),
                parent_uri: p.into(),
            }),
        }
    }

    fn private(b: &str) -> Visibility {
        Visibility::Private {
            boundaries: vec![b.into()],
        }
    }

    #[test]
    fn display_boundary_takes_the_name_after_the_did() {
        assert_eq!(
            display_boundary("did:web:nerv.tokyo.jp/swordsmith"),
            "swordsmith"
        );
        assert_eq!(display_boundary("did:web:x/part1/part2"), "part1/part2");
        assert_eq!(display_boundary("swordsmith"), "swordsmith");
        assert_eq!(display_boundary("did:web:x"), "did:web:x");
        assert_eq!(display_boundary("a/b"), "a/b");
    }

    #[test]
    fn short_did_cuts_long_ones() {
        assert_eq!(short_did("did:web:short"), "did:web:short");
        assert_eq!(
            short_did("did:plc:abcdefghijklmnopqrstuvwx"),
            "did:plc:abcdefgh…stuvwx"
        );
    }

    #[test]
    fn a_readable_private_post_replaces_its_stub_and_order_is_newest_first() {
        let stub = item(
            "at://a/p/1",
            "2026-01-01T00:00:03Z",
            Visibility::Hidden,
            None,
        );
        let hidden = item(
            "at://a/p/2",
            "2026-01-01T00:00:02Z",
            Visibility::Hidden,
            None,
        );
        let readable = item("at://a/p/1", "2026-01-01T00:00:03Z", private("x/b"), None);
        let public = item(
            "at://a/q/1",
            "2026-01-01T00:00:01Z",
            Visibility::Public,
            None,
        );
        let feed = merge(vec![public], vec![readable], vec![stub, hidden]);
        let uris: Vec<_> = feed
            .iter()
            .map(|p| (p.uri.as_str(), &p.visibility))
            .collect();
        assert_eq!(
            uris,
            vec![
                ("at://a/p/1", &private("x/b")),
                ("at://a/p/2", &Visibility::Hidden),
                ("at://a/q/1", &Visibility::Public),
            ]
        );
    }

    #[test]
    fn a_boundary_tab_keeps_public_posts_and_that_boundary() {
        let feed = vec![
            item("at://1", "2026-01-01T00:00:03Z", private("d/a"), None),
            item("at://2", "2026-01-01T00:00:02Z", private("d/b"), None),
            item("at://3", "2026-01-01T00:00:01Z", Visibility::Public, None),
            item("at://4", "2026-01-01T00:00:00Z", Visibility::Hidden, None),
        ];
        let uris = |b| -> Vec<String> { filter(&feed, b).into_iter().map(|p| p.uri).collect() };
        assert_eq!(uris(Some("d/a")), vec!["at://1", "at://3"]);
        assert_eq!(uris(None).len(), 4);
    }

    #[test]
    fn replies_go_under_their_parents_oldest_first_and_orphans_are_roots() {
        let feed = merge(
            vec![
                item(
                    "at://root",
                    "2026-01-01T00:00:00Z",
                    Visibility::Public,
                    None,
                ),
                item(
                    "at://r2",
                    "2026-01-01T00:00:05Z",
                    Visibility::Public,
                    Some("at://root"),
                ),
                item(
                    "at://r1",
                    "2026-01-01T00:00:04Z",
                    Visibility::Public,
                    Some("at://root"),
                ),
                item(
                    "at://r1a",
                    "2026-01-01T00:00:06Z",
                    Visibility::Public,
                    Some("at://r1"),
                ),
                item(
                    "at://orphan",
                    "2026-01-01T00:00:03Z",
                    Visibility::Public,
                    Some("at://gone"),
                ),
            ],
            vec![],
            vec![],
        );
        let shown: Vec<(String, usize)> = threads(&feed)
            .into_iter()
            .map(|(p, d)| (p.uri, d))
            .collect();
        assert_eq!(
            shown,
            vec![
                ("at://orphan".to_owned(), 0),
                ("at://root".to_owned(), 0),
                ("at://r1".to_owned(), 1),
                ("at://r1a".to_owned(), 2),
                ("at://r2".to_owned(), 1),
            ]
        );
    }

    #[test]
    fn a_reply_cycle_shows_each_post_once() {
        let feed = vec![
            item(
                "at://a",
                "2026-01-01T00:00:01Z",
                Visibility::Public,
                Some("at://b"),
            ),
            item(
                "at://b",
                "2026-01-01T00:00:00Z",
                Visibility::Public,
                Some("at://a"),
            ),
        ];
        // Neither is a root: both are replies to a present post. Nothing is shown twice.
        assert!(threads(&feed).len() <= 2);
    }

    #[test]
    fn records_become_items() {
        let author = did("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa");
        let p = public_item(
            &author,
            "3k",
            &json!({"text":"hi","createdAt":"2026-01-01T00:00:00.000Z",
                    "reply":{"root":{"uri":"at://r","cid":"c"},"parent":{"uri":"at://p","cid":"c"}}}),
        );
        assert_eq!(p.uri, format!("at://{author}/app.bsky.feed.post/3k"));
        assert_eq!(p.reply.unwrap().parent_uri, "at://p");
        assert!(stub_item(&author, "3k", &json!({"text": "not a stub"})).is_none());
        let s = stub_item(
            &author,
            "3k",
            &json!({"source":{"vary":"authenticated","subject":{"uri":"at://x","cid":"c"},"service":"did:web:s#atproto_pns"},"createdAt":"2026-01-01T00:00:00.000Z"}),
        )
        .unwrap();
        assert_eq!(s.visibility, Visibility::Hidden);
        assert_eq!(s.text, "");
        assert_eq!(
            boundary_values(&[json!({"value":"b"}), json!("a"), json!({"value":"b"})]),
            vec!["a", "b"]
        );
    }

    #[test]
    fn relative_times() {
        let t = millis("2026-01-08T00:00:00Z");
        assert_eq!(relative_time(t, t - 5_000, "x"), "just now");
        assert_eq!(relative_time(t, t - 300_000, "x"), "5m");
        assert_eq!(relative_time(t, t - 3 * 3_600_000, "x"), "3h");
        assert_eq!(relative_time(t, t - 2 * 86_400_000, "x"), "2d");
        assert_eq!(relative_time(t, 0, "2025-12-01T00:00:00Z"), "2025-12-01");
    }
}
