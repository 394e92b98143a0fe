//! What an AppView indexes of a private post, and the rules of its boundary-filtered feeds
//! (reference `ts-stratos-indexer-client-e2e.md` §1.9 and §4.6).
//!
//! An indexed post is a [`PostRow`]: the columns of the AppView's `stratos_post` table plus its
//! boundaries. [`post_row`] builds one from a verified record; [`PostRow::record_json`] rebuilds
//! the record a feed shows. Feeds page by [`FeedCursor`] (sort time, then URI, so posts with the
//! same time are neither skipped nor repeated). Who may see a post is decided by
//! [`crate::boundary::can_read`], as everywhere else.

use ipld_core::ipld::Ipld;
use serde_json::{Map, Value, json};

use crate::boundary::{self, BoundarySet};
use crate::data;
use crate::syntax::{AtUri, Datetime, Did, Nsid, RecordKey};
use crate::{Cid, Error, Result};

/// The collection an AppView indexes.
pub const POST_COLLECTION: &str = "zone.stratos.feed.post";

/// The largest page a feed returns.
pub const MAX_FEED_LIMIT: usize = 100;

/// The page size when the caller names none.
pub const DEFAULT_FEED_LIMIT: usize = 50;

/// One indexed private post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostRow {
    /// `at://{creator}/zone.stratos.feed.post/{rkey}`.
    pub uri: AtUri,
    /// The record's CID.
    pub cid: Cid,
    /// The author.
    pub creator: Did,
    /// The record key.
    pub rkey: RecordKey,
    /// `text` ('' when absent).
    pub text: String,
    /// `reply.root.uri`.
    pub reply_root: Option<String>,
    /// `reply.root.cid`.
    pub reply_root_cid: Option<String>,
    /// `reply.parent.uri`.
    pub reply_parent: Option<String>,
    /// `reply.parent.cid`.
    pub reply_parent_cid: Option<String>,
    /// `embed`, as JSON text.
    pub embed: Option<String>,
    /// `facets`, as JSON text.
    pub facets: Option<String>,
    /// `langs`, comma-joined.
    pub langs: Option<String>,
    /// `labels`, as JSON text.
    pub labels: Option<String>,
    /// `tags`, comma-joined.
    pub tags: Option<String>,
    /// The record's `createdAt` as written (the indexing time when absent or invalid).
    pub created_at: String,
    /// When the post was indexed: the commit's time on the stream.
    pub indexed_at: String,
    /// The feed order: the earlier of `createdAt` and `indexedAt` (a post cannot sort ahead of
    /// when it reached the index by claiming a future date), in UTC with milliseconds so that
    /// strings compare like instants.
    pub sort_at: String,
    /// The post's qualified boundaries, sorted and without duplicates.
    pub boundaries: Vec<String>,
}

/// Builds the row of `creator`'s post `rkey` from its record. `indexed_at` is the time the
/// change was sequenced. Fails only when the record is not a map.
pub fn post_row(
    creator: &Did,
    rkey: &RecordKey,
    cid: &Cid,
    record: &Ipld,
    indexed_at: &Datetime,
) -> Result<PostRow> {
    let Ipld::Map(map) = record else {
        return Err(Error::InvalidRepo("a post record is not a map".into()));
    };
    let collection = Nsid::parse(POST_COLLECTION)?;
    let string = |key: &str| match map.get(key) {
        Some(Ipld::String(s)) => Some(s.clone()),
        _ => None,
    };
    let json_text = |key: &str| -> Result<Option<String>> {
        match map.get(key) {
            None | Some(Ipld::Null) => Ok(None),
            Some(v) => Ok(Some(data::ipld_to_json(v)?.to_string())),
        }
    };
    let joined = |key: &str| match map.get(key) {
        Some(Ipld::List(items)) => {
            let parts: Vec<&str> = items
                .iter()
                .filter_map(|i| match i {
                    Ipld::String(s) => Some(s.as_str()),
                    _ => None,
                })
                .collect();
            (!parts.is_empty()).then(|| parts.join(","))
        }
        _ => None,
    };
    let reply_ref = |which: &str, field: &str| -> Option<String> {
        let Some(Ipld::Map(reply)) = map.get("reply") else {
            return None;
        };
        let Some(Ipld::Map(r)) = reply.get(which) else {
            return None;
        };
        match r.get(field) {
            Some(Ipld::String(s)) => Some(s.clone()),
            Some(Ipld::Link(c)) => Some(c.to_string()),
            _ => None,
        }
    };
    let created = string("createdAt").and_then(|s| Datetime::parse(&s).ok());
    let sort_ms = match &created {
        Some(c) => c.to_unix_millis().min(indexed_at.to_unix_millis()),
        None => indexed_at.to_unix_millis(),
    };
    let mut boundaries: Vec<String> = boundary::record_boundary_values(record)
        .into_iter()
        .map(str::to_owned)
        .collect();
    boundaries.sort();
    boundaries.dedup();
    Ok(PostRow {
        uri: AtUri::for_record(creator, &collection, rkey),
        cid: *cid,
        creator: creator.clone(),
        rkey: rkey.clone(),
        text: string("text").unwrap_or_default(),
        reply_root: reply_ref("root", "uri"),
        reply_root_cid: reply_ref("root", "cid"),
        reply_parent: reply_ref("parent", "uri"),
        reply_parent_cid: reply_ref("parent", "cid"),
        embed: json_text("embed")?,
        facets: json_text("facets")?,
        langs: joined("langs"),
        labels: json_text("labels")?,
        tags: joined("tags"),
        created_at: created.map_or_else(|| indexed_at.to_string(), |c| c.to_string()),
        indexed_at: indexed_at.to_string(),
        sort_at: Datetime::from_unix_millis(sort_ms).to_string(),
        boundaries,
    })
}

impl PostRow {
    /// The record a feed shows, rebuilt from the columns; `boundaries` are the values to show
    /// (feeds show only those the viewer holds too, a single post all of them).
    pub fn record_json(&self, boundaries: &[String]) -> Value {
        let mut record = Map::new();
        record.insert("$type".into(), json!(POST_COLLECTION));
        record.insert("text".into(), json!(self.text));
        record.insert("createdAt".into(), json!(self.created_at));
        if let (Some(root), Some(parent)) = (&self.reply_root, &self.reply_parent) {
            record.insert(
                "reply".into(),
                json!({
                    "root": { "uri": root, "cid": self.reply_root_cid },
                    "parent": { "uri": parent, "cid": self.reply_parent_cid },
                }),
            );
        }
        if !boundaries.is_empty() {
            record.insert(
                "boundary".into(),
                json!({
                    "$type": "zone.stratos.boundary.defs#Domains",
                    "values": boundaries.iter().map(|b| json!({ "value": b })).collect::<Vec<_>>(),
                }),
            );
        }
        for (key, text) in [
            ("facets", &self.facets),
            ("embed", &self.embed),
            ("labels", &self.labels),
        ] {
            if let Some(v) = text.as_deref().and_then(|t| serde_json::from_str(t).ok()) {
                record.insert(key.into(), v);
            }
        }
        for (key, joined) in [("langs", &self.langs), ("tags", &self.tags)] {
            if let Some(j) = joined {
                record.insert(key.into(), json!(j.split(',').collect::<Vec<_>>()));
            }
        }
        Value::Object(record)
    }

    /// The boundaries of this post that `viewer` holds too, in order.
    pub fn shared_boundaries(&self, viewer: &BoundarySet) -> Vec<String> {
        self.boundaries
            .iter()
            .filter(|b| viewer.contains(b.as_str()))
            .cloned()
            .collect()
    }

    /// Where this post sits in a feed.
    pub fn position(&self) -> FeedCursor {
        FeedCursor {
            sort_at: self.sort_at.clone(),
            uri: self.uri.to_string(),
        }
    }
}

/// A position in a feed: pages continue with posts strictly after it in the order
/// (`sort_at` descending, then `uri` descending).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FeedCursor {
    /// The last post's sort time.
    pub sort_at: String,
    /// The last post's URI.
    pub uri: String,
}

impl FeedCursor {
    /// Parses a cursor a feed handed out (`{sortAt}::{uri}`).
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || Error::syntax("feed cursor", s, "not {sortAt}::{uri}");
        let (sort_at, uri) = s.split_once("::").ok_or_else(bad)?;
        Datetime::parse(sort_at).map_err(|_| bad())?;
        AtUri::parse(uri).map_err(|_| bad())?;
        Ok(Self {
            sort_at: sort_at.to_owned(),
            uri: uri.to_owned(),
        })
    }

    /// Whether a post at `(sort_at, uri)` comes after this position in a feed.
    pub fn is_before(&self, sort_at: &str, uri: &str) -> bool {
        (sort_at, uri) < (self.sort_at.as_str(), self.uri.as_str())
    }
}

impl std::fmt::Display for FeedCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}::{}", self.sort_at, self.uri)
    }
}

/// The boundaries a feed selects for a viewer holding `viewer`: all of them, or only `filter`
/// when asked (a boundary the viewer lacks selects nothing, it is not an error: the answer must
/// not tell the boundary apart from one without posts).
pub fn feed_boundaries(viewer: &BoundarySet, filter: Option<&str>) -> Vec<String> {
    match filter {
        Some(f) => viewer.iter().filter(|b| b.as_str() == f).cloned().collect(),
        None => viewer.iter().cloned().collect(),
    }
}

/// A feed's page size: `requested` clamped to `1..=MAX_FEED_LIMIT`, the default when absent.
pub fn feed_limit(requested: Option<usize>) -> usize {
    requested
        .unwrap_or(DEFAULT_FEED_LIMIT)
        .clamp(1, MAX_FEED_LIMIT)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code
    use super::*;

    fn rec(v: Value) -> Ipld {
        data::json_to_ipld(&v).unwrap()
    }

    #[test]
    fn a_row_takes_every_column_and_sorts_by_the_earlier_time() {
        let did = Did::parse("did:plc:ewvi7nxzyoun6zhxrhs64oiz").unwrap();
        let rkey = RecordKey::parse("3kabc").unwrap();
        let record = rec(json!({
            "$type": POST_COLLECTION,
            "text": "hello",
            "createdAt": "2030-01-01T00:00:00Z",
            "langs": ["en", "de"],
            "tags": ["a"],
            "reply": {
                "root": { "uri": "at://did:plc:a/zone.stratos.feed.post/1", "cid": "bafyroot" },
                "parent": { "uri": "at://did:plc:a/zone.stratos.feed.post/2", "cid": "bafyparent" }
            },
            "facets": [{ "index": { "byteStart": 0, "byteEnd": 1 } }],
            "boundary": { "values": [ { "value": "did:web:s/b" }, { "value": "did:web:s/a" }, { "value": "did:web:s/a" } ] }
        }));
        let (cid, _) = data::record_cid(&record).unwrap();
        let indexed = Datetime::parse("2026-12-07T10:00:00.5+01:00").unwrap();
        let row = post_row(&did, &rkey, &cid, &record, &indexed).unwrap();
        assert_eq!(
            row.uri.as_str(),
            "at://did:plc:ewvi7nxzyoun6zhxrhs64oiz/zone.stratos.feed.post/3kabc"
        );
        assert_eq!(row.text, "hello");
        assert_eq!(row.langs.as_deref(), Some("en,de"));
        assert_eq!(row.reply_parent_cid.as_deref(), Some("bafyparent"));
        assert_eq!(row.boundaries, ["did:web:s/a", "did:web:s/b"]);
        // A future createdAt sorts at the indexing time, normalised to UTC.
        assert_eq!(row.sort_at, "2026-12-07T09:00:00.500Z");
        assert_eq!(row.created_at, "2030-01-01T00:00:00Z");
        let shown = row.record_json(&row.boundaries);
        assert_eq!(shown["reply"]["root"]["cid"], "bafyroot");
        assert_eq!(shown["langs"], json!(["en", "de"]));
        assert_eq!(shown["facets"][0]["index"]["byteEnd"], 1);
        assert_eq!(shown["boundary"]["values"][1]["value"], "did:web:s/b");
        // No createdAt: the indexing time stands in.
        let bare = rec(json!({ "$type": POST_COLLECTION }));
        let row = post_row(&did, &rkey, &cid, &bare, &indexed).unwrap();
        assert_eq!(row.created_at, indexed.as_str());
        assert!(row.record_json(&[]).get("boundary").is_none());
        assert!(post_row(&did, &rkey, &cid, &Ipld::Integer(1), &indexed).is_err());
    }

    #[test]
    fn cursors_round_trip_and_order_ties_by_uri() {
        let c = FeedCursor {
            sort_at: "2026-12-07T09:00:00.000Z".into(),
            uri: "at://did:plc:a/zone.stratos.feed.post/2".into(),
        };
        assert_eq!(FeedCursor::parse(&c.to_string()).unwrap(), c);
        assert!(c.is_before(&c.sort_at, "at://did:plc:a/zone.stratos.feed.post/1"));
        assert!(!c.is_before(&c.sort_at, &c.uri));
        assert!(!c.is_before("2026-12-07T09:00:00.001Z", "at://a"));
        for bad in [
            "",
            "x::y",
            "2026-12-07T09:00:00.000Z",
            "2026-12-07T09:00:00.000Z::nope",
        ] {
            assert!(FeedCursor::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_boundary_filter_only_narrows() {
        let viewer: BoundarySet = ["s/a".to_owned(), "s/b".to_owned()].into();
        assert_eq!(feed_boundaries(&viewer, None), ["s/a", "s/b"]);
        assert_eq!(feed_boundaries(&viewer, Some("s/b")), ["s/b"]);
        assert!(feed_boundaries(&viewer, Some("s/c")).is_empty());
        assert_eq!(feed_limit(None), DEFAULT_FEED_LIMIT);
        assert_eq!(feed_limit(Some(0)), 1);
        assert_eq!(feed_limit(Some(1000)), MAX_FEED_LIMIT);
    }
}
