//! In-memory [`RepoStore`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use stratos_domain::Cid;
use stratos_domain::blocks::BlockMap;
use stratos_domain::boundary::{Boundary, ReadFilter};
use stratos_domain::repo::RepoHead;
use stratos_domain::syntax::{Did, Nsid, RecordKey};
use stratos_ports::repo_store::{
    BlobListQuery, BlobReference, CommitUnit, IndexChange, ListQuery, ReleasedBlob, RepoResult,
    RepoStore, RepoStoreError, SeqEvent, StoredBlob, StoredRecord,
};

use super::outbox::MemoryOutbox;

#[derive(Debug, Default)]
struct Actor {
    head: Option<RepoHead>,
    blocks: HashMap<Cid, Vec<u8>>,
    /// `(collection, rkey)` → `(cid, boundaries)`.
    records: BTreeMap<(Nsid, RecordKey), (Cid, Vec<Boundary>)>,
    events: Vec<SeqEvent>,
    next_seq: u64,
    /// CID string → `(blob, released)`; a released blob lost its last reference and waits for
    /// [`RepoStore::release_blobs`].
    blobs: BTreeMap<String, (StoredBlob, bool)>,
    /// `(collection, rkey)` → `(cid string, rev)` of every blob the record references.
    record_blobs: BTreeMap<(Nsid, RecordKey), Vec<(String, String)>>,
}

/// Repositories in a map; every operation holds one lock, so commits are atomic.
#[derive(Debug, Default)]
pub struct MemoryRepoStore {
    actors: Mutex<HashMap<String, Actor>>,
    outbox: Option<Arc<MemoryOutbox>>,
}

impl MemoryRepoStore {
    /// An empty store whose commits' outbox items are dropped.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store that enqueues commits' outbox items into `outbox`.
    pub fn with_outbox(outbox: Arc<MemoryOutbox>) -> Self {
        Self {
            actors: Mutex::new(HashMap::new()),
            outbox: Some(outbox),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Actor>> {
        self.actors.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn visible(filter: &ReadFilter, boundaries: &[Boundary]) -> bool {
    match filter {
        ReadFilter::All => true,
        ReadFilter::Nothing => false,
        ReadFilter::AnyOf(set) => boundaries.iter().any(|x| set.iter().any(|s| x == s)),
    }
}

fn missing(did: &Did) -> RepoStoreError {
    RepoStoreError::ActorNotFound(did.clone())
}

fn stored(
    actor: &Actor,
    collection: &Nsid,
    rkey: &RecordKey,
    cid: Cid,
    b: &[Boundary],
) -> RepoResult<StoredRecord> {
    let bytes = actor
        .blocks
        .get(&cid)
        .ok_or_else(|| RepoStoreError::Corrupt(format!("record block {cid} missing")))?;
    Ok(StoredRecord {
        collection: collection.clone(),
        rkey: rkey.clone(),
        cid,
        boundaries: b.to_vec(),
        bytes: bytes.clone(),
    })
}

#[async_trait]
impl RepoStore for MemoryRepoStore {
    async fn create_actor(&self, did: &Did) -> RepoResult<()> {
        self.lock().entry(did.to_string()).or_default();
        Ok(())
    }

    async fn destroy_actor(&self, did: &Did) -> RepoResult<()> {
        self.lock().remove(did.as_str());
        Ok(())
    }

    async fn actor_exists(&self, did: &Did) -> RepoResult<bool> {
        Ok(self.lock().contains_key(did.as_str()))
    }

    async fn head(&self, did: &Did) -> RepoResult<Option<RepoHead>> {
        let actors = self.lock();
        let actor = actors.get(did.as_str()).ok_or_else(|| missing(did))?;
        Ok(actor.head.clone())
    }

    async fn get_blocks(&self, did: &Did, cids: &[Cid]) -> RepoResult<BlockMap> {
        let actors = self.lock();
        let actor = actors.get(did.as_str()).ok_or_else(|| missing(did))?;
        let mut out = BlockMap::new();
        for cid in cids {
            if let Some(bytes) = actor.blocks.get(cid) {
                out.insert(*cid, bytes.clone());
            }
        }
        Ok(out)
    }

    async fn apply_commit(&self, did: &Did, unit: CommitUnit) -> RepoResult<u64> {
        let mut actors = self.lock();
        let actor = actors.get_mut(did.as_str()).ok_or_else(|| missing(did))?;
        if actor.head.as_ref().map(|h| h.commit) != unit.prev {
            return Err(RepoStoreError::Conflict(did.to_string()));
        }
        // Validate everything before the first mutation: a unit applies whole or not at all.
        for change in &unit.index {
            if let IndexChange::Delete { collection, rkey } = change
                && !actor
                    .records
                    .contains_key(&(collection.clone(), rkey.clone()))
            {
                return Err(RepoStoreError::IndexMismatch(format!(
                    "delete of missing record {collection}/{rkey}"
                )));
            }
            if let IndexChange::Put { cid, .. } = change
                && !unit.new_blocks.contains(cid)
                && !actor.blocks.contains_key(cid)
            {
                return Err(RepoStoreError::IndexMismatch(format!(
                    "record block {cid} is neither new nor stored"
                )));
            }
            if let IndexChange::Put { blobs, .. } = change {
                for cid in blobs {
                    if !matches!(actor.blobs.get(&cid.to_string()), Some((_, false))) {
                        return Err(RepoStoreError::BlobMissing(cid.to_string()));
                    }
                }
            }
        }
        for (cid, bytes) in unit.new_blocks.iter() {
            actor.blocks.insert(*cid, bytes.to_vec());
        }
        for cid in &unit.removed_blocks {
            actor.blocks.remove(cid);
        }
        let rev = unit.head.rev.to_string();
        let mut lost = BTreeSet::new();
        for change in unit.index {
            match change {
                IndexChange::Put {
                    collection,
                    rkey,
                    cid,
                    boundaries,
                    blobs,
                } => {
                    let path = (collection, rkey);
                    let refs: Vec<(String, String)> =
                        blobs.iter().map(|c| (c.to_string(), rev.clone())).collect();
                    for (c, _) in &refs {
                        if let Some((blob, _)) = actor.blobs.get_mut(c) {
                            blob.temp_key = None;
                        }
                    }
                    let old = if refs.is_empty() {
                        actor.record_blobs.remove(&path)
                    } else {
                        actor.record_blobs.insert(path.clone(), refs)
                    };
                    lost.extend(old.into_iter().flatten().map(|(c, _)| c));
                    actor.records.insert(path, (cid, boundaries));
                }
                IndexChange::Delete { collection, rkey } => {
                    let path = (collection, rkey);
                    let old = actor.record_blobs.remove(&path);
                    lost.extend(old.into_iter().flatten().map(|(c, _)| c));
                    actor.records.remove(&path);
                }
            }
        }
        for c in lost {
            let referenced = actor
                .record_blobs
                .values()
                .any(|refs| refs.iter().any(|(x, _)| *x == c));
            if !referenced && let Some((_, released)) = actor.blobs.get_mut(&c) {
                *released = true;
            }
        }
        let mut seq = 0;
        if let Some(mut event) = unit.event {
            actor.next_seq += 1;
            seq = actor.next_seq;
            event.seq = seq;
            actor.events.push(event);
        }
        actor.head = Some(unit.head);
        if let Some(outbox) = &self.outbox {
            for item in unit.outbox {
                outbox.push(item);
            }
        }
        Ok(seq)
    }

    async fn get_record(
        &self,
        did: &Did,
        collection: &Nsid,
        rkey: &RecordKey,
    ) -> RepoResult<Option<StoredRecord>> {
        let actors = self.lock();
        let actor = actors.get(did.as_str()).ok_or_else(|| missing(did))?;
        match actor.records.get(&(collection.clone(), rkey.clone())) {
            None => Ok(None),
            Some((cid, b)) => stored(actor, collection, rkey, *cid, b).map(Some),
        }
    }

    async fn list_records(&self, did: &Did, query: &ListQuery) -> RepoResult<Vec<StoredRecord>> {
        let actors = self.lock();
        let actor = actors.get(did.as_str()).ok_or_else(|| missing(did))?;
        let in_collection = actor
            .records
            .iter()
            .skip_while(|((c, _), _)| *c < query.collection)
            .take_while(|((c, _), _)| *c == query.collection);
        let visible = |b: &Vec<Boundary>| visible(&query.filter, b);
        let after_cursor = |rkey: &RecordKey| match &query.cursor {
            None => true,
            Some(c) if query.reverse => rkey > c,
            Some(c) => rkey < c,
        };
        let rows: Vec<_> = if query.reverse {
            in_collection
                .filter(|((_, r), (_, b))| after_cursor(r) && visible(b))
                .take(query.limit)
                .collect()
        } else {
            let all: Vec<_> = in_collection.collect();
            all.into_iter()
                .rev()
                .filter(|((_, r), (_, b))| after_cursor(r) && visible(b))
                .take(query.limit)
                .collect()
        };
        rows.into_iter()
            .map(|((c, r), (cid, b))| stored(actor, c, r, *cid, b))
            .collect()
    }

    async fn events_after(
        &self,
        did: &Did,
        cursor: u64,
        limit: usize,
    ) -> RepoResult<Vec<SeqEvent>> {
        let actors = self.lock();
        let actor = actors.get(did.as_str()).ok_or_else(|| missing(did))?;
        Ok(actor
            .events
            .iter()
            .filter(|e| e.seq > cursor)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn latest_seq(&self, did: &Did) -> RepoResult<u64> {
        let actors = self.lock();
        let actor = actors.get(did.as_str()).ok_or_else(|| missing(did))?;
        Ok(actor.next_seq)
    }

    async fn all_blocks(&self, did: &Did) -> RepoResult<BlockMap> {
        let actors = self.lock();
        let actor = actors.get(did.as_str()).ok_or_else(|| missing(did))?;
        let mut out = BlockMap::new();
        for (cid, bytes) in &actor.blocks {
            out.insert(*cid, bytes.clone());
        }
        Ok(out)
    }

    async fn track_blob(&self, did: &Did, upload: StoredBlob) -> RepoResult<Option<StoredBlob>> {
        let mut actors = self.lock();
        let actor = actors.get_mut(did.as_str()).ok_or_else(|| missing(did))?;
        let key = upload.cid.to_string();
        if let Some((existing, false)) = actor.blobs.get(&key) {
            return Ok(Some(existing.clone()));
        }
        actor.blobs.insert(key, (upload, false));
        Ok(None)
    }

    async fn blob(&self, did: &Did, cid: &Cid) -> RepoResult<Option<StoredBlob>> {
        let actors = self.lock();
        let actor = actors.get(did.as_str()).ok_or_else(|| missing(did))?;
        Ok(match actor.blobs.get(&cid.to_string()) {
            Some((blob, false)) => Some(blob.clone()),
            _ => None,
        })
    }

    async fn records_referencing_blob(
        &self,
        did: &Did,
        cid: &Cid,
    ) -> RepoResult<Vec<BlobReference>> {
        let actors = self.lock();
        let actor = actors.get(did.as_str()).ok_or_else(|| missing(did))?;
        let c = cid.to_string();
        Ok(actor
            .record_blobs
            .iter()
            .filter(|(_, refs)| refs.iter().any(|(x, _)| *x == c))
            .filter_map(|(path, _)| {
                actor.records.get(path).map(|(_, b)| BlobReference {
                    collection: path.0.clone(),
                    rkey: path.1.clone(),
                    boundaries: b.clone(),
                })
            })
            .collect())
    }

    async fn list_blobs(&self, did: &Did, query: &BlobListQuery) -> RepoResult<Vec<Cid>> {
        let actors = self.lock();
        let actor = actors.get(did.as_str()).ok_or_else(|| missing(did))?;
        let mut cids = BTreeMap::new();
        for (path, refs) in &actor.record_blobs {
            let Some((_, boundaries)) = actor.records.get(path) else {
                continue;
            };
            if !visible(&query.filter, boundaries) {
                continue;
            }
            for (c, rev) in refs {
                let after_cursor = query.cursor.as_ref().is_none_or(|cur| c > cur);
                let after_since = query
                    .since
                    .as_ref()
                    .is_none_or(|s| rev.as_str() > s.as_str());
                if after_cursor && after_since {
                    let cid = stratos_domain::cid::parse(c)
                        .map_err(|e| RepoStoreError::Corrupt(e.to_string()))?;
                    cids.insert(c.clone(), cid);
                }
            }
        }
        Ok(cids.into_values().take(query.limit).collect())
    }

    async fn release_blobs(
        &self,
        did: &Did,
        uploads_before_ms: i64,
    ) -> RepoResult<Vec<ReleasedBlob>> {
        let mut actors = self.lock();
        let actor = actors.get_mut(did.as_str()).ok_or_else(|| missing(did))?;
        let mut out = Vec::new();
        actor.blobs.retain(|_, (blob, released)| {
            let expired = blob.temp_key.is_some() && blob.created_ms < uploads_before_ms;
            if *released || expired {
                out.push(ReleasedBlob {
                    cid: blob.cid,
                    temp_key: blob.temp_key.clone(),
                });
                false
            } else {
                true
            }
        });
        Ok(out)
    }
}
