//! `import::read_repo_car` against hostile and broken CARs (issue 14, findings 1, 2, 4, 5), and
//! against genuine exports.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use stratos_domain::blocks::BlockMap;
use stratos_domain::car;
use stratos_domain::crypto::{KeyAlgorithm, Keypair};
use stratos_domain::import::{ImportLimits, read_repo_car};
use stratos_domain::mst::Mst;
use stratos_domain::repo::{self, RecordWrite, RepoHead};
use stratos_domain::syntax::{Did, Nsid, RecordKey};
use stratos_domain::{Error, cid, tid};
use stratos_testkit::hostile::{
    BrokenCar, CarBuilder, dag_bomb_car, deep_chain_car, key_on_layer, post_bytes,
    unreferenced_blocks_car,
};

fn did() -> Did {
    Did::parse("did:plc:ewvi7nxzyoun6zhxrhs64oiz").unwrap()
}

fn invalid_repo(result: Result<impl std::fmt::Debug, Error>) -> String {
    match result {
        Err(Error::InvalidRepo(m)) => m,
        other => panic!("expected InvalidRepo, got {other:?}"),
    }
}

/// A genuine repository of `n` records, exported with the service's own writer.
fn genuine(n: usize) -> (Vec<u8>, Vec<(String, stratos_domain::Cid)>) {
    let key = Keypair::generate(KeyAlgorithm::P256);
    let mut store = BlockMap::new();
    let mut head: Option<RepoHead> = None;
    let writes: Vec<RecordWrite> = (0..n)
        .map(|i| RecordWrite::Create {
            collection: Nsid::parse("zone.stratos.feed.post").unwrap(),
            rkey: RecordKey::parse(&format!("r{i:05}")).unwrap(),
            record: post_bytes(&format!("post {i}")),
        })
        .collect();
    for chunk in std::iter::once(&[][..]).chain(writes.chunks(50)) {
        let out =
            repo::apply_writes(&store, &did(), head.as_ref(), chunk, tid::next(), &key).unwrap();
        for c in &out.removed_nodes {
            store.remove(c);
        }
        store.extend(out.new_blocks.clone());
        head = Some(out.head);
    }
    let head = head.unwrap();
    let entries = Mst::load(&store, head.data).entries().unwrap();
    let bytes = car::write_repo(&store, &head.commit, Vec::new()).unwrap();
    (bytes, entries)
}

#[test]
fn genuine_exports_read_back_with_every_record() {
    for n in [0, 1, 7, 600] {
        let (bytes, entries) = genuine(n);
        let repo = read_repo_car(&bytes, ImportLimits::default()).unwrap();
        assert_eq!(repo.did, did());
        let got: Vec<_> = repo
            .records
            .iter()
            .map(|r| (r.path.clone(), r.cid))
            .collect();
        assert_eq!(got, entries, "{n} records");
        for r in &repo.records {
            assert_eq!(cid::dag_cbor(r.bytes), r.cid);
        }
    }
}

#[test]
fn a_deep_chain_of_empty_nodes_is_refused_without_recursion() {
    // 5,000 levels aborted the process ("has overflowed its stack") before the checked walk.
    for depth in [3, 5_000, 50_000] {
        let message = invalid_repo(read_repo_car(
            &deep_chain_car(&did(), depth),
            ImportLimits::default(),
        ));
        assert!(message.contains("malformed"), "{message}");
    }
}

#[test]
fn a_dag_bomb_is_refused_after_a_few_nodes() {
    // 18 levels kept a worker busy for 16 s; 64 levels would never finish a naive walk.
    for levels in [2, 18, 64] {
        let message = invalid_repo(read_repo_car(
            &dag_bomb_car(&did(), levels),
            ImportLimits::default(),
        ));
        assert!(message.contains("malformed"), "{message}");
    }
}

#[test]
fn a_node_reused_at_one_layer_is_refused() {
    // Layers alone do not catch reuse: two entries on layer 1 whose gaps both point at the
    // same layer-0 node. Keys would repeat; the walk refuses the second visit.
    let mut car = CarBuilder::new();
    let record = car.post("x");
    let leaf = car.node(None, &[(key_on_layer("m", 0), record, None)]);
    let k1 = key_on_layer("a", 1);
    let k2 = key_on_layer("z", 1);
    let root = car.node(Some(leaf), &[(k1, record, Some(leaf)), (k2, record, None)]);
    let commit = car.commit(&did(), root);
    let message = invalid_repo(read_repo_car(
        &car.finish(&[commit]),
        ImportLimits::default(),
    ));
    assert!(
        message.contains("twice") || message.contains("order"),
        "{message}"
    );
}

#[test]
fn entries_on_the_wrong_layer_are_refused() {
    let mut car = CarBuilder::new();
    let record = car.post("x");
    // The root's key is on layer 2, so its left child must hold layer-1 keys; it holds a
    // layer-0 one.
    let child = car.node(None, &[(key_on_layer("a", 0), record, None)]);
    let top = car.node(Some(child), &[(key_on_layer("c", 2), record, None)]);
    let commit = car.commit(&did(), top);
    let message = invalid_repo(read_repo_car(
        &car.finish(&[commit]),
        ImportLimits::default(),
    ));
    assert!(message.contains("layer"), "{message}");
}

#[test]
fn unreferenced_blocks_are_neither_hashed_nor_kept() {
    // A block whose bytes do not match its CID fails any reader that hashes it: this one is
    // referenced by nothing, so the import never looks at it.
    let mut car = CarBuilder::new();
    let record = car.post("kept");
    let root = car.node(None, &[(key_on_layer("c", 0), record, None)]);
    let commit = car.commit(&did(), root);
    car.raw_section(cid::dag_cbor(b"\x01"), b"\x02".to_vec());
    let bytes = car.finish(&[commit]);
    assert!(car::read(&bytes, car::CarLimits::default()).is_err());
    let repo = read_repo_car(&bytes, ImportLimits::default()).unwrap();
    assert_eq!(repo.records.len(), 1);

    let many = unreferenced_blocks_car(&did(), &post_bytes("kept"), 20_000);
    assert_eq!(
        read_repo_car(&many, ImportLimits::default())
            .unwrap()
            .records
            .len(),
        1
    );
}

#[test]
fn a_referenced_block_that_does_not_match_its_cid_is_refused() {
    let mut car = CarBuilder::new();
    let fake = cid::dag_cbor(&post_bytes("claimed"));
    car.raw_section(fake, post_bytes("actual"));
    let root = car.node(None, &[(key_on_layer("c", 0), fake, None)]);
    let commit = car.commit(&did(), root);
    let bytes = car.finish(&[commit]);
    let result = read_repo_car(&bytes, ImportLimits::default());
    assert!(
        matches!(result, Err(Error::CarHashMismatch(c)) if c == fake),
        "{result:?}"
    );
}

#[test]
fn keys_pointing_at_one_large_block_are_bounded() {
    // 200 keys at one ~60 kB record: 12 MB of records to decode from a ~70 kB CAR.
    let mut car = CarBuilder::new();
    let big = car.post(&"x".repeat(60_000));
    let entries: Vec<_> = (0..200)
        .map(|i| format!("zone.stratos.feed.post/k{i:04}"))
        .filter(|k| stratos_domain::mst::layer(k.as_bytes()) == 0)
        .map(|k| (k, big, None))
        .collect();
    assert!(entries.len() > 100);
    let root = car.node(None, &entries);
    let commit = car.commit(&did(), root);
    let message = invalid_repo(read_repo_car(
        &car.finish(&[commit]),
        ImportLimits::default(),
    ));
    assert!(message.contains("record bytes"), "{message}");
}

#[test]
fn the_record_count_is_bounded() {
    let (bytes, _) = genuine(120);
    let limits = ImportLimits {
        max_records: 100,
        ..ImportLimits::default()
    };
    assert!(matches!(
        read_repo_car(&bytes, limits),
        Err(Error::TooManyRecords { limit: 100 })
    ));
}

#[test]
fn each_broken_car_names_what_is_wrong() {
    for case in BrokenCar::ALL {
        let message = invalid_repo(read_repo_car(&case.car(&did()), ImportLimits::default()));
        let expected = match case {
            BrokenCar::MissingRoot => "root block",
            BrokenCar::RootNotCommit => "not a repository commit",
            BrokenCar::DanglingData => "tree root",
            BrokenCar::InvalidKey => "invalid key",
            BrokenCar::MissingRecord => "record block",
        };
        assert!(message.contains(expected), "{case:?}: {message}");
    }
}

#[test]
fn two_roots_or_none_are_refused() {
    let (bytes, _) = genuine(1);
    let repo = read_repo_car(&bytes, ImportLimits::default()).unwrap();
    let mut car = CarBuilder::new();
    car.post("x");
    let two = car.finish(&[repo.data, repo.data]);
    assert!(invalid_repo(read_repo_car(&two, ImportLimits::default())).contains("one root"));
}
