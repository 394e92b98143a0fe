//! The write pipeline: commits, record semantics, storage deltas, export and verification.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use ipld_core::ipld::Ipld;
use stratos_domain::blocks::{BlockMap, BlockRead};
use stratos_domain::car::{self, CarLimits};
use stratos_domain::commit::SignedCommit;
use stratos_domain::crypto::{KeyAlgorithm, Keypair};
use stratos_domain::mst::{self, Mst};
use stratos_domain::repo::{self, Action, CommitOutput, RecordWrite, RepoHead};
use stratos_domain::syntax::{Did, Nsid, RecordKey, Tid};
use stratos_domain::tid::TidGenerator;
use stratos_domain::{Error, cid};

struct Fixture {
    store: BlockMap,
    head: Option<RepoHead>,
    did: Did,
    key: Keypair,
    tids: TidGenerator,
}

impl Fixture {
    fn new(alg: KeyAlgorithm) -> Self {
        Self {
            store: BlockMap::new(),
            head: None,
            did: Did::parse("did:plc:ewvi7nxzyoun6zhxrhs64oiz").unwrap(),
            key: Keypair::generate(alg),
            tids: TidGenerator::with_clock_id(3),
        }
    }

    fn try_commit(&mut self, writes: &[RecordWrite]) -> Result<CommitOutput, Error> {
        let rev = self.tids.next_now();
        repo::apply_writes(
            &self.store,
            &self.did,
            self.head.as_ref(),
            writes,
            rev,
            &self.key,
        )
    }

    fn commit(&mut self, writes: &[RecordWrite]) -> CommitOutput {
        let out = self.try_commit(writes).unwrap();
        self.persist(&out);
        out
    }

    fn persist(&mut self, out: &CommitOutput) {
        for cid in &out.removed_nodes {
            assert!(
                self.store.remove(cid).is_some(),
                "removed node {cid} was not stored"
            );
        }
        self.store.extend(out.new_blocks.clone());
        self.head = Some(out.head.clone());
    }
}

fn record(text: &str) -> Vec<u8> {
    let value = Ipld::Map(
        [
            (
                "$type".to_owned(),
                Ipld::String("zone.stratos.feed.post".into()),
            ),
            ("text".to_owned(), Ipld::String(text.into())),
        ]
        .into(),
    );
    serde_ipld_dagcbor::to_vec(&value).unwrap()
}

fn nsid() -> Nsid {
    Nsid::parse("zone.stratos.feed.post").unwrap()
}

fn create(rkey: &str, text: &str) -> RecordWrite {
    RecordWrite::Create {
        collection: nsid(),
        rkey: RecordKey::parse(rkey).unwrap(),
        record: record(text),
    }
}

fn update(rkey: &str, text: &str) -> RecordWrite {
    RecordWrite::Update {
        collection: nsid(),
        rkey: RecordKey::parse(rkey).unwrap(),
        record: record(text),
    }
}

fn delete(rkey: &str) -> RecordWrite {
    RecordWrite::Delete {
        collection: nsid(),
        rkey: RecordKey::parse(rkey).unwrap(),
    }
}

#[test]
fn new_repo_gets_a_signed_empty_commit() {
    for alg in [KeyAlgorithm::P256, KeyAlgorithm::K256] {
        let mut f = Fixture::new(alg);
        let out = f.commit(&[]);
        assert_eq!(out.head.data, mst::empty_root());
        assert!(out.ops.is_empty());
        let commit = SignedCommit::decode(&out.commit_bytes).unwrap();
        assert_eq!(cid::dag_cbor(&out.commit_bytes), out.head.commit);
        assert_eq!(commit.did, f.did);
        assert_eq!(commit.prev, None);
        commit.verify(f.key.public_key()).unwrap();
        // A different key does not verify it.
        assert!(commit.verify(Keypair::generate(alg).public_key()).is_err());
    }
}

#[test]
fn record_cid_is_the_cid_of_the_record_bytes() {
    // Defect D1 of the TS original: the CID was computed over a wrapped byte string.
    let mut f = Fixture::new(KeyAlgorithm::P256);
    f.commit(&[]);
    let out = f.commit(&[create("3kabcabcabc22", "hello")]);
    let expected = cid::dag_cbor(&record("hello"));
    assert_eq!(out.ops[0].cid, Some(expected));
    assert_eq!(
        out.new_blocks.get(&expected),
        Some(record("hello").as_slice())
    );
    let mut tree = Mst::load(&f.store, out.head.data);
    assert_eq!(
        tree.get("zone.stratos.feed.post/3kabcabcabc22").unwrap(),
        Some(expected)
    );
}

#[test]
fn create_update_delete_semantics_and_ops() {
    let mut f = Fixture::new(KeyAlgorithm::P256);
    f.commit(&[]);
    let out = f.commit(&[create("a", "one"), create("b", "two")]);
    assert_eq!(
        out.ops.iter().map(|o| o.action).collect::<Vec<_>>(),
        [Action::Create, Action::Create]
    );
    assert_eq!(out.ops[0].path, "zone.stratos.feed.post/a");

    assert!(
        matches!(f.try_commit(&[create("a", "again")]), Err(Error::RecordExists(p)) if p.ends_with("/a"))
    );
    assert!(matches!(
        f.try_commit(&[update("zzz", "x")]),
        Err(Error::RecordNotFound(_))
    ));
    assert!(matches!(
        f.try_commit(&[delete("zzz")]),
        Err(Error::RecordNotFound(_))
    ));
    assert!(matches!(
        f.try_commit(&[create("c", "x"), delete("c")]),
        Err(Error::DuplicateWrite(p)) if p == "zone.stratos.feed.post/c"
    ));
    assert!(matches!(f.try_commit(&[]), Err(Error::Commit(_))));

    let out = f.commit(&[update("a", "uno"), delete("b")]);
    assert_eq!(out.ops[0].action, Action::Update);
    assert_eq!(out.ops[0].prev, Some(cid::dag_cbor(&record("one"))));
    assert_eq!(out.ops[0].cid, Some(cid::dag_cbor(&record("uno"))));
    assert_eq!(
        out.ops[1],
        repo::RecordOp {
            action: Action::Delete,
            path: "zone.stratos.feed.post/b".into(),
            cid: None,
            prev: Some(cid::dag_cbor(&record("two"))),
        }
    );
    let mut tree = Mst::load(&f.store, out.head.data);
    assert_eq!(tree.entries().unwrap().len(), 1);
}

#[test]
fn a_failing_write_leaves_nothing_behind() {
    let mut f = Fixture::new(KeyAlgorithm::P256);
    f.commit(&[]);
    f.commit(&[create("a", "one")]);
    let before = (f.store.clone(), f.head.clone());
    // The third write fails: the whole batch is rejected and nothing is returned to persist.
    let err = f
        .try_commit(&[create("b", "x"), update("a", "y"), delete("missing")])
        .unwrap_err();
    assert!(matches!(err, Error::RecordNotFound(_)));
    assert_eq!((f.store.clone(), f.head.clone()), before);
}

#[test]
fn rev_must_increase() {
    let mut f = Fixture::new(KeyAlgorithm::P256);
    let out = f.commit(&[]);
    let stale = Tid::from_parts(out.head.rev.timestamp_micros() - 1, 0);
    let err = repo::apply_writes(
        &f.store,
        &f.did,
        f.head.as_ref(),
        &[create("a", "x")],
        stale,
        &f.key,
    );
    assert!(matches!(err, Err(Error::Commit(_))));
}

#[test]
fn storage_delta_keeps_exactly_the_reachable_nodes() {
    let mut f = Fixture::new(KeyAlgorithm::P256);
    f.commit(&[]);
    let mut texts = Vec::new();
    for round in 0..30 {
        let writes: Vec<_> = (0..7)
            .map(|i| create(&format!("r{round:02}k{i}"), &format!("t{round}-{i}")))
            .collect();
        texts.extend(writes.iter().map(RecordWrite::path));
        f.commit(&writes);
        if round % 3 == 2 {
            f.commit(&[
                delete(&format!("r{round:02}k3")),
                update(&format!("r{round:02}k1"), "changed"),
            ]);
        }
    }
    // Every node reachable from the head is stored, and every stored node is reachable.
    let head = f.head.clone().unwrap();
    let mut tree = Mst::load(&f.store, head.data);
    let reachable: std::collections::HashSet<_> = tree.node_cids().unwrap().into_iter().collect();
    for cid in &reachable {
        assert!(f.store.read(cid).unwrap().is_some());
    }
    let stored_nodes = f
        .store
        .iter()
        .filter(|(c, b)| mst::node_links(c, b).is_ok())
        .count();
    assert_eq!(stored_nodes, reachable.len(), "stale MST nodes left behind");
}

#[test]
fn exported_car_reads_back_and_verifies() {
    let mut f = Fixture::new(KeyAlgorithm::P256);
    f.commit(&[]);
    for i in 0..50 {
        f.commit(&[create(&format!("k{i:03}"), &format!("text {i}"))]);
    }
    let head = f.head.clone().unwrap();
    let bytes = car::write_repo(&f.store, &head.commit, Vec::new()).unwrap();
    let parsed = car::read(&bytes, CarLimits::default()).unwrap();
    assert_eq!(parsed.roots, vec![head.commit]);
    assert_eq!(parsed.order[0], head.commit, "commit block comes first");
    let commit = SignedCommit::decode(parsed.blocks.get(&head.commit).unwrap()).unwrap();
    commit.verify(f.key.public_key()).unwrap();
    let mut tree = Mst::load(&parsed.blocks, commit.data);
    let entries = tree.entries().unwrap();
    assert_eq!(entries.len(), 50);
    for (_, value) in &entries {
        assert!(
            parsed.blocks.contains(value),
            "record block missing from the export"
        );
    }
    // The export holds exactly commit + nodes + records.
    assert_eq!(
        parsed.blocks.len(),
        1 + tree.node_cids().unwrap().len() + 50
    );
}
