//! The AppView SDK: boundary-filtered feeds over the index an indexer writes
//! ([`crate::appview_store`]), with the semantics of reference §4.6.
//!
//! - A feed needs an authenticated viewer ([`AppViewError::AuthRequired`] otherwise).
//! - The viewer's boundaries come from a short-lived cache, then the indexed enrollment (kept
//!   current by the indexer from the service-level stream), then the service
//!   ([`BoundaryResolver`], e.g. `resolveEnrollments`). [`AppView::update_viewer`] sets a cached
//!   entry from the service-level stream's `#enrollment` frame ([`AppView::invalidate`] drops
//!   one).
//! - Timeline: posts sharing a boundary with the viewer; `boundary=` narrows to one of them (one
//!   the viewer lacks gives an empty page). Feeds show only the boundaries the viewer holds.
//! - Author feed: the same, restricted to one author; the author sees all of their own posts.
//! - A single post (and its thread context): all its boundaries, after
//!   [`boundary::can_read`] — **the** read-access rule. A post the viewer may not read and a post
//!   that does not exist get the same answer, `BoundaryMismatch`, so the answer never tells
//!   whether a private post exists.
//!
//! ```
//! # use std::sync::Arc;
//! # use stratos_ports::usecases::appview::{AppView, FeedParams, AppViewError};
//! # async fn run(store: Arc<dyn stratos_ports::appview_store::FeedStore>, viewer: stratos_domain::syntax::Did) -> Result<(), AppViewError> {
//! let appview = AppView::builder(store).build();
//! let page = appview.timeline(Some(&viewer), &FeedParams::default()).await?;
//! println!("{}", page.to_json());
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use stratos_domain::appview::{self, FeedCursor, PostRow};
use stratos_domain::boundary::{self, BoundarySet, Viewer};
use stratos_domain::syntax::{AtUri, Did};

use crate::Cause;
use crate::appview_store::{BoundaryResolver, FeedQuery, FeedStore, IndexStoreError};
use crate::env::{Clock, SystemClock};

/// How long a viewer's boundaries are cached unless invalidated.
pub const DEFAULT_VIEWER_TTL_MS: i64 = 60_000;

/// How many viewers the cache holds before it starts over.
pub const VIEWER_CACHE_CAPACITY: usize = 100_000;

/// How far up a thread [`AppView::thread`] walks.
pub const MAX_THREAD_PARENTS: usize = 8;

/// How many replies [`AppView::thread`] returns.
pub const MAX_THREAD_REPLIES: usize = 50;

/// Failures of the AppView's queries.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AppViewError {
    /// The query needs an authenticated viewer.
    #[error("authentication required")]
    AuthRequired,
    /// A parameter is malformed.
    #[error("{0}")]
    InvalidRequest(String),
    /// The post does not exist, or the viewer may not read it (the two are not told apart).
    #[error("post not found or not visible to the viewer")]
    BoundaryMismatch,
    /// The index failed.
    #[error(transparent)]
    Store(#[from] IndexStoreError),
    /// Looking the viewer's boundaries up failed.
    #[error("resolving the viewer's boundaries failed: {0}")]
    Resolver(#[source] Cause),
}

/// A feed request's parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedParams {
    /// Only this (qualified) boundary.
    pub boundary: Option<String>,
    /// Page size (clamped to 1–100; 50 by default).
    pub limit: Option<usize>,
    /// The previous page's cursor.
    pub cursor: Option<String>,
}

/// A post as a feed shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct PostView {
    /// The post.
    pub row: PostRow,
    /// The boundaries shown.
    pub shown_boundaries: Vec<String>,
}

impl PostView {
    /// `feedViewPost`: `{post: {uri, cid, author: {did, handle}, record, indexedAt}}` (the handle
    /// is the DID: handles are the AppView's own business).
    pub fn to_json(&self) -> Value {
        let r = &self.row;
        json!({
            "post": {
                "uri": r.uri.as_str(),
                "cid": r.cid.to_string(),
                "author": { "did": r.creator.as_str(), "handle": r.creator.as_str() },
                "record": r.record_json(&self.shown_boundaries),
                "indexedAt": r.indexed_at,
            }
        })
    }
}

/// A page of a feed.
#[derive(Debug, Clone, PartialEq)]
pub struct Feed {
    /// The posts, newest first.
    pub feed: Vec<PostView>,
    /// The next page's cursor.
    pub cursor: Option<String>,
}

impl Feed {
    /// `{feed: [feedViewPost], cursor?}`.
    pub fn to_json(&self) -> Value {
        let mut out =
            json!({ "feed": self.feed.iter().map(PostView::to_json).collect::<Vec<_>>() });
        if let Some(c) = &self.cursor {
            out["cursor"] = json!(c);
        }
        out
    }
}

/// A post with the part of its thread the viewer may see.
#[derive(Debug, Clone, PartialEq)]
pub struct Thread {
    /// The post.
    pub post: PostView,
    /// Its ancestors the viewer may read, nearest first, up to the first one missing or hidden.
    pub parents: Vec<PostView>,
    /// Its direct replies the viewer may read, oldest first.
    pub replies: Vec<PostView>,
}

/// Builds an [`AppView`].
pub struct AppViewBuilder {
    store: Arc<dyn FeedStore>,
    resolver: Option<Arc<dyn BoundaryResolver>>,
    clock: Arc<dyn Clock>,
    ttl_ms: i64,
}

impl AppViewBuilder {
    /// Where viewers' boundaries are looked up when the index has no enrollment for them.
    pub fn resolver(mut self, resolver: Arc<dyn BoundaryResolver>) -> Self {
        self.resolver = Some(resolver);
        self
    }

    /// How long a viewer's boundaries stay cached (0: not cached).
    pub fn viewer_ttl_ms(mut self, ttl_ms: i64) -> Self {
        self.ttl_ms = ttl_ms;
        self
    }

    /// The clock of the cache (tests).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The AppView.
    pub fn build(self) -> AppView {
        AppView {
            store: self.store,
            resolver: self.resolver,
            clock: self.clock,
            ttl_ms: self.ttl_ms,
            cache: Mutex::new(HashMap::new()),
        }
    }
}

impl std::fmt::Debug for AppViewBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppViewBuilder")
            .field("ttl_ms", &self.ttl_ms)
            .finish_non_exhaustive()
    }
}

type CacheEntry = (i64, Arc<BoundarySet>);

/// Boundary-filtered feeds for viewers.
pub struct AppView {
    store: Arc<dyn FeedStore>,
    resolver: Option<Arc<dyn BoundaryResolver>>,
    clock: Arc<dyn Clock>,
    ttl_ms: i64,
    cache: Mutex<HashMap<Did, CacheEntry>>,
}

impl std::fmt::Debug for AppView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppView")
            .field("ttl_ms", &self.ttl_ms)
            .finish_non_exhaustive()
    }
}

impl AppView {
    /// A builder over `store`.
    pub fn builder(store: Arc<dyn FeedStore>) -> AppViewBuilder {
        AppViewBuilder {
            store,
            resolver: None,
            clock: Arc::new(SystemClock),
            ttl_ms: DEFAULT_VIEWER_TTL_MS,
        }
    }

    /// Forgets `did`'s cached boundaries (call it for each `#enrollment` frame of the
    /// service-level stream).
    pub fn invalidate(&self, did: &Did) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(did);
        }
    }

    /// Records the boundaries `did` holds now, as the service-level stream reports them (an
    /// `#enrollment` frame carries the boundaries held after the change; empty for `unenroll`).
    /// Better than [`AppView::invalidate`] when the frame is at hand: the index the cache would
    /// otherwise re-read may not have applied the same frame yet.
    pub fn update_viewer(&self, did: &Did, boundaries: impl IntoIterator<Item = String>) {
        let set: Arc<BoundarySet> = Arc::new(boundaries.into_iter().collect());
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= VIEWER_CACHE_CAPACITY {
                cache.clear();
            }
            cache.insert(did.clone(), (self.clock.now_ms(), set));
        }
    }

    /// The boundaries `did` holds (empty when not enrolled).
    pub async fn viewer_boundaries(&self, did: &Did) -> Result<Arc<BoundarySet>, AppViewError> {
        let now = self.clock.now_ms();
        if let Ok(cache) = self.cache.lock()
            && let Some((at, set)) = cache.get(did)
            && now.saturating_sub(*at) < self.ttl_ms
        {
            return Ok(set.clone());
        }
        let enrollment = match self.store.enrollment(did).await? {
            Some(e) => Some(e),
            None => match &self.resolver {
                Some(r) => r.resolve(did).await.map_err(AppViewError::Resolver)?,
                None => None,
            },
        };
        let set: Arc<BoundarySet> = Arc::new(
            enrollment
                .map(|e| e.boundaries.into_iter().collect())
                .unwrap_or_default(),
        );
        if self.ttl_ms > 0
            && let Ok(mut cache) = self.cache.lock()
        {
            if cache.len() >= VIEWER_CACHE_CAPACITY {
                cache.clear();
            }
            cache.insert(did.clone(), (now, set.clone()));
        }
        Ok(set)
    }

    /// `zone.stratos.feed.getTimeline`: the viewer's boundary-filtered timeline.
    pub async fn timeline(
        &self,
        viewer: Option<&Did>,
        params: &FeedParams,
    ) -> Result<Feed, AppViewError> {
        self.feed(viewer, None, params).await
    }

    /// `zone.stratos.feed.getAuthorFeed`: `author`'s posts the viewer may see.
    pub async fn author_feed(
        &self,
        viewer: Option<&Did>,
        author: &Did,
        params: &FeedParams,
    ) -> Result<Feed, AppViewError> {
        self.feed(viewer, Some(author), params).await
    }

    async fn feed(
        &self,
        viewer: Option<&Did>,
        author: Option<&Did>,
        params: &FeedParams,
    ) -> Result<Feed, AppViewError> {
        let viewer = viewer.ok_or(AppViewError::AuthRequired)?;
        let after = params
            .cursor
            .as_deref()
            .map(FeedCursor::parse)
            .transpose()
            .map_err(|e| AppViewError::InvalidRequest(format!("invalid cursor: {e}")))?;
        let held = self.viewer_boundaries(viewer).await?;
        let own = author == Some(viewer);
        let boundaries = if own && params.boundary.is_none() {
            None
        } else if own {
            params.boundary.clone().map(|b| vec![b])
        } else {
            Some(appview::feed_boundaries(&held, params.boundary.as_deref()))
        };
        let query = FeedQuery {
            boundaries,
            author: author.cloned(),
            limit: appview::feed_limit(params.limit),
            after,
        };
        let page = self.store.feed(&query).await?;
        let who = Viewer::Account {
            did: viewer.as_str(),
            boundaries: &held,
        };
        let feed = page
            .posts
            .into_iter()
            // The query already filtered; the one rule still decides each post.
            .filter(|p| boundary::can_read(who, p.creator.as_str(), &p.boundaries))
            .map(|row| {
                let shown = if row.creator == *viewer {
                    row.boundaries.clone()
                } else {
                    row.shared_boundaries(&held)
                };
                PostView {
                    row,
                    shown_boundaries: shown,
                }
            })
            .collect();
        Ok(Feed {
            feed,
            cursor: page.cursor.map(|c| c.to_string()),
        })
    }

    /// `zone.stratos.feed.getPost`: one post with all its boundaries, if the viewer may read it.
    pub async fn get_post(
        &self,
        viewer: Option<&Did>,
        uri: &AtUri,
    ) -> Result<PostView, AppViewError> {
        let viewer = viewer.ok_or(AppViewError::AuthRequired)?;
        let held = self.viewer_boundaries(viewer).await?;
        self.readable(viewer, &held, uri)
            .await?
            .ok_or(AppViewError::BoundaryMismatch)
    }

    /// A post and the thread around it the viewer may read.
    pub async fn thread(&self, viewer: Option<&Did>, uri: &AtUri) -> Result<Thread, AppViewError> {
        let viewer = viewer.ok_or(AppViewError::AuthRequired)?;
        let held = self.viewer_boundaries(viewer).await?;
        let post = self
            .readable(viewer, &held, uri)
            .await?
            .ok_or(AppViewError::BoundaryMismatch)?;
        let mut parents = Vec::new();
        let mut next = post.row.reply_parent.clone();
        while let Some(parent) = next.take() {
            if parents.len() >= MAX_THREAD_PARENTS {
                break;
            }
            let Ok(parent) = AtUri::parse(&parent) else {
                break;
            };
            match self.readable(viewer, &held, &parent).await? {
                Some(p) => {
                    next = p.row.reply_parent.clone();
                    parents.push(p);
                }
                None => break,
            }
        }
        let who = Viewer::Account {
            did: viewer.as_str(),
            boundaries: &held,
        };
        let replies = self
            .store
            .replies(uri, MAX_THREAD_REPLIES)
            .await?
            .into_iter()
            .filter(|r| boundary::can_read(who, r.creator.as_str(), &r.boundaries))
            .map(|row| PostView {
                shown_boundaries: row.boundaries.clone(),
                row,
            })
            .collect();
        Ok(Thread {
            post,
            parents,
            replies,
        })
    }

    async fn readable(
        &self,
        viewer: &Did,
        held: &BoundarySet,
        uri: &AtUri,
    ) -> Result<Option<PostView>, AppViewError> {
        let Some(row) = self.store.post(uri).await? else {
            return Ok(None);
        };
        let who = Viewer::Account {
            did: viewer.as_str(),
            boundaries: held,
        };
        Ok(
            boundary::can_read(who, row.creator.as_str(), &row.boundaries).then(|| PostView {
                shown_boundaries: row.boundaries.clone(),
                row,
            }),
        )
    }
}
