#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! Every in-memory fake passes its port's conformance suite, one named test per case
//! (`cargo test -p stratos-testkit --test conformance repo_store::lifecycle` runs one).

use std::sync::Arc;

use stratos_testkit::conformance::Fixture;
use stratos_testkit::conformance::cache::TimedCache;
use stratos_testkit::conformance::outbox::OutboxUnderTest;
use stratos_testkit::memory::{
    ManualClock, MemoryBlobStore, MemoryCache, MemoryEnrollmentStore, MemoryKeyStore,
    MemoryNotifier, MemoryOAuthStore, MemoryOutbox, MemoryRepoStore,
};

stratos_testkit::repo_store_conformance!(async { Arc::new(MemoryRepoStore::new()) });
stratos_testkit::enrollment_store_conformance!(async { Arc::new(MemoryEnrollmentStore::new()) });
stratos_testkit::outbox_conformance!(async {
    let outbox = Arc::new(MemoryOutbox::new());
    let plant = outbox.clone();
    Fixture::new(OutboxUnderTest::new(
        outbox.clone(),
        Arc::new(MemoryRepoStore::with_outbox(outbox)),
        move |did| {
            plant.push_raw(&did, b"\xff not an item".to_vec());
            async {}
        },
    ))
});
stratos_testkit::blob_store_conformance!(async { Arc::new(MemoryBlobStore::new()) });
stratos_testkit::appview_index_conformance!(async {
    Arc::new(stratos_testkit::memory::MemoryAppViewIndex::new())
});
stratos_testkit::key_store_conformance!(async { Arc::new(MemoryKeyStore::new()) });
stratos_testkit::oauth_store_conformance!(async { Arc::new(MemoryOAuthStore::new()) });
stratos_testkit::notifier_conformance!(async { Arc::new(MemoryNotifier::new()) });
stratos_testkit::cache_conformance!(async {
    // The cache's time is a manual clock: waiting advances it.
    let clock = Arc::new(ManualClock::at(0));
    let tick = clock.clone();
    TimedCache::new(Arc::new(MemoryCache::new(ClockRef(clock))), move |ms| {
        tick.advance(ms as i64);
        async {}
    })
});

/// A shared handle to the manual clock (the cache owns its clock).
struct ClockRef(Arc<ManualClock>);

impl stratos_ports::env::Clock for ClockRef {
    fn now_ms(&self) -> i64 {
        self.0.now_ms()
    }
}

/// Every `pub async fn` of a suite module is a case of its macro, so a case written but not
/// listed cannot go unrun (a listed case without a function does not compile).
#[test]
fn every_case_is_listed_in_its_suite_macro() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/conformance");
    let mut suites = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|n| n == "mod.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let functions: Vec<&str> = text
            .split("\npub async fn ")
            .skip(1)
            .map(|rest| rest.split('(').next().unwrap())
            .collect();
        let listed = text
            .split_once("macro_rules!")
            .and_then(|(_, m)| m.split_once("cases: ["))
            .and_then(|(_, m)| m.split_once(']'))
            .map(|(list, _)| list)
            .unwrap_or_else(|| panic!("{} has no suite macro with a case list", path.display()));
        let listed: Vec<&str> = listed
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        assert!(!functions.is_empty(), "{}", path.display());
        for f in &functions {
            assert!(
                listed.contains(f),
                "{}: case {f} is missing from its macro's case list",
                path.display()
            );
        }
        assert_eq!(listed.len(), functions.len(), "{}", path.display());
        suites += 1;
    }
    assert_eq!(suites, 9, "one suite per port");
}

#[tokio::test]
async fn memory_notifier_subscriptions_close_with_the_notifier() {
    use stratos_ports::env::Notifier;
    let notifier = MemoryNotifier::new();
    let mut sub = notifier.subscribe("seq").await.unwrap();
    notifier.publish("seq", b"last").await.unwrap();
    drop(notifier);
    assert_eq!(sub.next().await.as_deref(), Some(&b"last"[..]));
    assert_eq!(sub.next().await, None, "closed once the notifier is gone");
}

mod block_cache {
    //! The block cache decorator: conformance over the in-memory store, and what it saves.

    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use stratos_domain::Cid;
    use stratos_domain::blocks::BlockMap;
    use stratos_domain::repo::RepoHead;
    use stratos_domain::syntax::{Did, Nsid, RecordKey, Tid};
    use stratos_ports::block_cache::{CachedBlocks, DEFAULT_CAPACITY};
    use stratos_ports::repo_store::{
        BlobListQuery, BlobReference, CommitUnit, ListQuery, ReleasedBlob, RepoResult, RepoStore,
        SeqEvent, StoredBlob, StoredRecord,
    };
    use stratos_testkit::memory::MemoryRepoStore;

    mod cached {
        use super::*;
        stratos_testkit::repo_store_conformance!(async {
            Arc::new(CachedBlocks::new(MemoryRepoStore::new(), DEFAULT_CAPACITY))
        });
    }

    mod tiny_cache {
        //! Constant eviction must not change any answer.
        use super::*;
        stratos_testkit::repo_store_conformance!(async {
            Arc::new(CachedBlocks::new(MemoryRepoStore::new(), 3))
        });
    }

    mod disabled_cache {
        use super::*;
        stratos_testkit::repo_store_conformance!(async {
            Arc::new(CachedBlocks::new(MemoryRepoStore::new(), 0))
        });
    }

    /// Counts what reaches the wrapped store's `get_blocks`.
    #[derive(Debug, Default)]
    struct Counting {
        inner: MemoryRepoStore,
        calls: AtomicUsize,
        cids: AtomicUsize,
    }

    impl Counting {
        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
        fn cids(&self) -> usize {
            self.cids.load(Ordering::SeqCst)
        }
    }

    #[async_trait]
    impl RepoStore for Counting {
        async fn create_actor(&self, did: &Did) -> RepoResult<()> {
            self.inner.create_actor(did).await
        }
        async fn destroy_actor(&self, did: &Did) -> RepoResult<()> {
            self.inner.destroy_actor(did).await
        }
        async fn actor_exists(&self, did: &Did) -> RepoResult<bool> {
            self.inner.actor_exists(did).await
        }
        async fn head(&self, did: &Did) -> RepoResult<Option<RepoHead>> {
            self.inner.head(did).await
        }
        async fn get_blocks(&self, did: &Did, cids: &[Cid]) -> RepoResult<BlockMap> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.cids.fetch_add(cids.len(), Ordering::SeqCst);
            self.inner.get_blocks(did, cids).await
        }
        async fn apply_commit(&self, did: &Did, unit: CommitUnit) -> RepoResult<u64> {
            self.inner.apply_commit(did, unit).await
        }
        async fn get_record(
            &self,
            did: &Did,
            collection: &Nsid,
            rkey: &RecordKey,
        ) -> RepoResult<Option<StoredRecord>> {
            self.inner.get_record(did, collection, rkey).await
        }
        async fn list_records(
            &self,
            did: &Did,
            query: &ListQuery,
        ) -> RepoResult<Vec<StoredRecord>> {
            self.inner.list_records(did, query).await
        }
        async fn events_after(
            &self,
            did: &Did,
            cursor: u64,
            limit: usize,
        ) -> RepoResult<Vec<SeqEvent>> {
            self.inner.events_after(did, cursor, limit).await
        }
        async fn latest_seq(&self, did: &Did) -> RepoResult<u64> {
            self.inner.latest_seq(did).await
        }
        async fn all_blocks(&self, did: &Did) -> RepoResult<BlockMap> {
            self.inner.all_blocks(did).await
        }
        async fn track_blob(
            &self,
            did: &Did,
            upload: StoredBlob,
        ) -> RepoResult<Option<StoredBlob>> {
            self.inner.track_blob(did, upload).await
        }
        async fn blob(&self, did: &Did, cid: &Cid) -> RepoResult<Option<StoredBlob>> {
            self.inner.blob(did, cid).await
        }
        async fn records_referencing_blob(
            &self,
            did: &Did,
            cid: &Cid,
        ) -> RepoResult<Vec<BlobReference>> {
            self.inner.records_referencing_blob(did, cid).await
        }
        async fn list_blobs(&self, did: &Did, query: &BlobListQuery) -> RepoResult<Vec<Cid>> {
            self.inner.list_blobs(did, query).await
        }
        async fn release_blobs(
            &self,
            did: &Did,
            uploads_before_ms: i64,
        ) -> RepoResult<Vec<ReleasedBlob>> {
            self.inner.release_blobs(did, uploads_before_ms).await
        }
    }

    fn did(s: &str) -> Did {
        Did::parse(s).unwrap()
    }

    /// `n` distinct blocks.
    fn blocks(tag: &str, n: usize) -> BlockMap {
        let mut map = BlockMap::new();
        for i in 0..n {
            map.insert_dag_cbor(format!("{tag} {i}").into_bytes());
        }
        map
    }

    fn cids_of(map: &BlockMap) -> Vec<Cid> {
        map.iter().map(|(c, _)| *c).collect()
    }

    /// A unit that only adds and removes blocks (the in-memory store checks nothing else).
    fn unit(prev: Option<Cid>, new_blocks: BlockMap, removed: Vec<Cid>) -> CommitUnit {
        let commit = stratos_domain::cid::dag_cbor(format!("commit after {prev:?}").as_bytes());
        CommitUnit {
            prev,
            head: RepoHead {
                commit,
                rev: Tid::parse("3jzfcijpj2z2a").unwrap(),
                data: commit,
            },
            new_blocks,
            removed_blocks: removed,
            index: Vec::new(),
            event: None,
            outbox: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_second_read_is_served_from_the_cache() {
        let cache = CachedBlocks::new(Counting::default(), 100);
        let d = did("did:plc:blockcacheread");
        cache.create_actor(&d).await.unwrap();
        let stored = blocks("read", 5);
        // Written past the cache, so the first read has to fetch.
        cache
            .inner()
            .apply_commit(&d, unit(None, stored.clone(), Vec::new()))
            .await
            .unwrap();
        let cids = cids_of(&stored);

        let first = cache.get_blocks(&d, &cids).await.unwrap();
        assert_eq!(first, stored);
        assert_eq!((cache.inner().calls(), cache.inner().cids()), (1, 5));

        let second = cache.get_blocks(&d, &cids).await.unwrap();
        assert_eq!(second, stored);
        assert_eq!(
            cache.inner().calls(),
            1,
            "the second read never reached the store"
        );

        // A mixed read fetches only the misses, in one call; absent CIDs stay absent.
        let absent = stratos_domain::cid::dag_cbor(b"never stored");
        let mut mixed = cids.clone();
        mixed.push(absent);
        let got = cache.get_blocks(&d, &mixed).await.unwrap();
        assert_eq!(got, stored);
        assert_eq!((cache.inner().calls(), cache.inner().cids()), (2, 6));

        // Blocks are per actor: another actor's read of the same CIDs is its own.
        let other = did("did:plc:blockcacheother");
        cache.create_actor(&other).await.unwrap();
        assert!(cache.get_blocks(&other, &cids).await.unwrap().is_empty());
        assert_eq!(cache.inner().calls(), 3);
    }

    #[tokio::test]
    async fn commits_fill_and_trim_the_cache_and_destroy_empties_it() {
        let cache = CachedBlocks::new(Counting::default(), 100);
        let d = did("did:plc:blockcachecommit");
        cache.create_actor(&d).await.unwrap();
        let first = blocks("commit one", 4);
        let u1 = unit(None, first.clone(), Vec::new());
        let head1 = u1.head.commit;
        cache.apply_commit(&d, u1).await.unwrap();
        assert_eq!(cache.len(), 4);
        assert_eq!(cache.get_blocks(&d, &cids_of(&first)).await.unwrap(), first);
        assert_eq!(
            cache.inner().calls(),
            0,
            "new blocks were cached by the commit"
        );

        // A failed commit (stale head) caches nothing.
        let rejected = blocks("rejected", 2);
        assert!(
            cache
                .apply_commit(&d, unit(None, rejected.clone(), Vec::new()))
                .await
                .is_err()
        );
        assert_eq!(cache.len(), 4);

        // Removed blocks leave the cache with the commit that removes them.
        let gone = cids_of(&first)[0];
        cache
            .apply_commit(&d, unit(Some(head1), BlockMap::new(), vec![gone]))
            .await
            .unwrap();
        assert_eq!(cache.len(), 3);
        assert!(cache.get_blocks(&d, &[gone]).await.unwrap().is_empty());
        assert_eq!(
            cache.inner().calls(),
            1,
            "the removed block was asked of the store"
        );

        cache.destroy_actor(&d).await.unwrap();
        assert!(cache.is_empty(), "destroy drops the actor's blocks");
        cache.create_actor(&d).await.unwrap();
        assert!(
            cache
                .get_blocks(&d, &cids_of(&first))
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn capacity_bounds_the_entries_and_evicts_the_least_recently_used() {
        let cache = CachedBlocks::new(Counting::default(), 10);
        let d = did("did:plc:blockcachecap");
        cache.create_actor(&d).await.unwrap();
        let stored = blocks("cap", 40);
        cache
            .inner()
            .apply_commit(&d, unit(None, stored.clone(), Vec::new()))
            .await
            .unwrap();
        let cids = cids_of(&stored);

        // Read the first 10, then keep touching the first one while 30 others stream past.
        cache.get_blocks(&d, &cids[..10]).await.unwrap();
        assert_eq!(cache.len(), 10);
        for chunk in cids[10..].chunks(3) {
            cache.get_blocks(&d, &cids[..1]).await.unwrap();
            cache.get_blocks(&d, chunk).await.unwrap();
            assert!(cache.len() <= 10, "never more than the capacity");
        }
        assert_eq!(cache.len(), 10);
        let calls = cache.inner().calls();
        cache.get_blocks(&d, &cids[..1]).await.unwrap();
        assert_eq!(cache.inner().calls(), calls, "the hot block stayed");
        cache.get_blocks(&d, &cids[1..2]).await.unwrap();
        assert_eq!(cache.inner().calls(), calls + 1, "a cold block was evicted");

        // Many hits on a full cache keep the bookkeeping bounded and the answers right.
        for _ in 0..5_000 {
            let got = cache.get_blocks(&d, &cids[30..40]).await.unwrap();
            assert_eq!(got.len(), 10);
        }
        assert_eq!(cache.len(), 10);
    }
}
