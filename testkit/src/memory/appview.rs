//! An in-memory AppView index ([`IndexWriter`] + [`FeedStore`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use stratos_domain::appview::PostRow;
use stratos_domain::syntax::{AtUri, Did};
use stratos_ports::Cause;
use stratos_ports::appview_store::{
    ActorCursor, EnrollmentChange, FeedPage, FeedQuery, FeedStore, IndexBatch, IndexResult,
    IndexStoreError, IndexWriter, IndexedEnrollment, PostChange,
};

#[derive(Debug, Default, Clone)]
struct State {
    posts: BTreeMap<String, PostRow>,
    cursors: HashMap<Did, ActorCursor>,
    enrollments: BTreeMap<Did, IndexedEnrollment>,
    service_cursors: HashMap<String, u64>,
}

/// The in-memory index; every method is one critical section, so batches are atomic.
#[derive(Debug, Default)]
pub struct MemoryAppViewIndex {
    state: Mutex<State>,
}

impl MemoryAppViewIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> IndexResult<T> {
        let mut state = self
            .state
            .lock()
            .map_err(|_| IndexStoreError::Backend(Cause::message("poisoned")))?;
        Ok(f(&mut state))
    }
}

fn remove_actor_posts(state: &mut State, did: &Did) {
    state.posts.retain(|_, p| &p.creator != did);
}

#[async_trait]
impl IndexWriter for MemoryAppViewIndex {
    async fn apply(&self, batches: &[IndexBatch]) -> IndexResult<()> {
        self.with(|state| {
            for batch in batches {
                if batch.replace {
                    remove_actor_posts(state, &batch.did);
                }
                for change in &batch.changes {
                    match change {
                        PostChange::Upsert(row) => {
                            let mut row = (**row).clone();
                            if let Some(old) = state.posts.get(row.uri.as_str()) {
                                // An update keeps what was first indexed of the post's identity.
                                row.created_at.clone_from(&old.created_at);
                                row.sort_at.clone_from(&old.sort_at);
                            }
                            state.posts.insert(row.uri.to_string(), row);
                        }
                        PostChange::Delete(uri) => {
                            state.posts.remove(uri.as_str());
                        }
                    }
                }
                state
                    .cursors
                    .insert(batch.did.clone(), batch.cursor.clone());
            }
        })
    }

    async fn cursors(&self) -> IndexResult<Vec<(Did, ActorCursor)>> {
        self.with(|s| {
            s.cursors
                .iter()
                .map(|(d, c)| (d.clone(), c.clone()))
                .collect()
        })
    }

    async fn apply_enrollment(
        &self,
        change: &EnrollmentChange,
        service_seq: Option<(&str, u64)>,
    ) -> IndexResult<()> {
        self.with(|state| {
            match change {
                EnrollmentChange::Upsert(e) => {
                    state.enrollments.insert(e.did.clone(), e.clone());
                }
                EnrollmentChange::Remove(did) => {
                    state.enrollments.remove(did);
                    state.cursors.remove(did);
                    remove_actor_posts(state, did);
                }
            }
            if let Some((service, seq)) = service_seq {
                state.service_cursors.insert(service.to_owned(), seq);
            }
        })
    }

    async fn service_cursor(&self, service_url: &str) -> IndexResult<Option<u64>> {
        self.with(|s| s.service_cursors.get(service_url).copied())
    }

    async fn set_service_cursor(&self, service_url: &str, seq: u64) -> IndexResult<()> {
        self.with(|s| {
            s.service_cursors.insert(service_url.to_owned(), seq);
        })
    }

    async fn enrollments(&self) -> IndexResult<Vec<IndexedEnrollment>> {
        self.with(|s| s.enrollments.values().cloned().collect())
    }

    async fn ping(&self) -> IndexResult<()> {
        self.with(|_| ())
    }
}

#[async_trait]
impl FeedStore for MemoryAppViewIndex {
    async fn feed(&self, query: &FeedQuery) -> IndexResult<FeedPage> {
        self.with(|state| {
            let mut matching: Vec<&PostRow> = state
                .posts
                .values()
                .filter(|p| query.author.as_ref().is_none_or(|a| &p.creator == a))
                .filter(|p| match &query.boundaries {
                    None => query.author.is_some(),
                    Some(wanted) => p.boundaries.iter().any(|b| wanted.contains(b)),
                })
                .filter(|p| {
                    query
                        .after
                        .as_ref()
                        .is_none_or(|c| c.is_before(&p.sort_at, p.uri.as_str()))
                })
                .collect();
            matching.sort_by(|a, b| {
                (b.sort_at.as_str(), b.uri.as_str()).cmp(&(a.sort_at.as_str(), a.uri.as_str()))
            });
            matching.truncate(query.limit);
            let cursor = (matching.len() == query.limit && query.limit > 0)
                .then(|| matching.last().map(|p| p.position()))
                .flatten();
            FeedPage {
                posts: matching.into_iter().cloned().collect(),
                cursor,
            }
        })
    }

    async fn post(&self, uri: &AtUri) -> IndexResult<Option<PostRow>> {
        self.with(|s| s.posts.get(uri.as_str()).cloned())
    }

    async fn replies(&self, uri: &AtUri, limit: usize) -> IndexResult<Vec<PostRow>> {
        self.with(|s| {
            let mut replies: Vec<PostRow> = s
                .posts
                .values()
                .filter(|p| p.reply_parent.as_deref() == Some(uri.as_str()))
                .cloned()
                .collect();
            replies.sort_by(|a, b| (&a.sort_at, &a.uri).cmp(&(&b.sort_at, &b.uri)));
            replies.truncate(limit);
            replies
        })
    }

    async fn enrollment(&self, did: &Did) -> IndexResult<Option<IndexedEnrollment>> {
        self.with(|s| s.enrollments.get(did).cloned())
    }
}
