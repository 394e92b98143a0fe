//! Repository core benchmarks (issue targets in docs/performance.md):
//! - one create + new MST root + commit build + sign, into 10k- and 100k-record repos;
//! - CAR export of a 10k-record repo from memory, and CAR read + verify of it;
//! - verifying the self-verifying slice of a one-record create on a 10k-record repo (signature
//!   and inversion), as a stream consumer does for each `#commit` frame; the slice's size is
//!   printed once.
//!
//! Run: `cargo bench -p stratos-domain --bench repo`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use ipld_core::ipld::Ipld;
use stratos_domain::blocks::BlockMap;
use stratos_domain::car::{self, CarLimits};
use stratos_domain::crypto::{KeyAlgorithm, Keypair};
use stratos_domain::repo::{self, RecordWrite, RepoHead};
use stratos_domain::sync;
use stratos_domain::syntax::{Did, Nsid, RecordKey};
use stratos_domain::tid::TidGenerator;

const COLLECTION: &str = "zone.stratos.feed.post";

fn post(i: u64) -> Vec<u8> {
    let mut map = std::collections::BTreeMap::new();
    map.insert("$type".to_owned(), Ipld::String(COLLECTION.into()));
    map.insert(
        "text".to_owned(),
        Ipld::String(format!(
            "post number {i}: a short private note for the members of the boundary"
        )),
    );
    map.insert(
        "createdAt".to_owned(),
        Ipld::String("2026-11-25T04:00:00.000Z".into()),
    );
    map.insert(
        "boundary".to_owned(),
        Ipld::Map(
            [(
                "values".to_owned(),
                Ipld::List(vec![Ipld::Map(
                    [(
                        "value".to_owned(),
                        Ipld::String("did:web:stratos.example/members".into()),
                    )]
                    .into(),
                )]),
            )]
            .into(),
        ),
    );
    serde_ipld_dagcbor::to_vec(&Ipld::Map(map)).unwrap()
}

struct Repo {
    store: BlockMap,
    head: RepoHead,
    did: Did,
    key: Keypair,
}

fn create(tids: &mut TidGenerator, i: u64) -> RecordWrite {
    RecordWrite::Create {
        collection: Nsid::parse(COLLECTION).unwrap(),
        rkey: RecordKey::parse(tids.next_now().as_str()).unwrap(),
        record: post(i),
    }
}

/// A repository with `n` records, built through the real write pipeline in batches.
fn build(n: u64, tids: &mut TidGenerator) -> Repo {
    let did = Did::parse("did:plc:benchbenchbenchbenchbenc").unwrap();
    let key = Keypair::generate(KeyAlgorithm::P256);
    let mut store = BlockMap::new();
    let out = repo::apply_writes(&store, &did, None, &[], tids.next_now(), &key).unwrap();
    store.extend(out.new_blocks);
    let mut r = Repo {
        store,
        head: out.head,
        did,
        key,
    };
    let mut i = 0;
    while i < n {
        let batch: Vec<_> = (i..(i + 1000).min(n)).map(|j| create(tids, j)).collect();
        let rev = tids.next_now();
        let out = repo::apply_writes(&r.store, &r.did, Some(&r.head), &batch, rev, &r.key).unwrap();
        for cid in &out.removed_nodes {
            r.store.remove(cid);
        }
        r.store.extend(out.new_blocks);
        r.head = out.head;
        i += batch.len() as u64;
    }
    r
}

fn bench_commit(c: &mut Criterion) {
    let mut group = c.benchmark_group("create_commit_sign");
    for n in [10_000u64, 100_000] {
        let mut tids = TidGenerator::with_clock_id(1);
        let r = build(n, &mut tids);
        group.bench_function(format!("{n}_records"), |b| {
            b.iter_batched(
                || {
                    let write = create(&mut tids, n);
                    let rev = tids.next_now();
                    (write, rev)
                },
                |(write, rev)| {
                    let out =
                        repo::apply_writes(&r.store, &r.did, Some(&r.head), &[write], rev, &r.key)
                            .unwrap();
                    black_box(out.head)
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn bench_car(c: &mut Criterion) {
    let r = build(10_000, &mut TidGenerator::with_clock_id(1));
    let mut group = c.benchmark_group("car_10k_records");
    group.sample_size(30);
    group.bench_function("export", |b| {
        b.iter(|| {
            let out =
                car::write_repo(&r.store, &r.head.commit, Vec::with_capacity(4 << 20)).unwrap();
            black_box(out.len())
        })
    });
    let bytes = car::write_repo(&r.store, &r.head.commit, Vec::new()).unwrap();
    group.bench_function("read_verify", |b| {
        b.iter(|| {
            black_box(
                car::read(&bytes, CarLimits::default())
                    .unwrap()
                    .blocks
                    .len(),
            )
        })
    });
    group.finish();
}

fn bench_sync(c: &mut Criterion) {
    let mut tids = TidGenerator::with_clock_id(1);
    let r = build(10_000, &mut tids);
    let rev = tids.next_now();
    let write = create(&mut tids, 10_001);
    let out = repo::apply_writes(&r.store, &r.did, Some(&r.head), &[write], rev, &r.key).unwrap();
    let relevant = out.relevant_car.clone().unwrap();
    let slice = car::read(&relevant, CarLimits::default()).unwrap();
    eprintln!(
        "one-record create on 10k records: slice {} bytes, {} blocks (record {} bytes)",
        relevant.len(),
        slice.blocks.len(),
        post(10_001).len()
    );
    let mut group = c.benchmark_group("sync_10k_records");
    group.bench_function("verify_one_create", |b| {
        b.iter(|| {
            let event = sync::CommitEvent {
                did: &r.did,
                commit: out.head.commit,
                rev: &out.head.rev,
                prev_data: Some(r.head.data),
                ops: &out.ops,
                blocks: &relevant,
            };
            black_box(
                sync::verify_commit(r.key.public_key(), &event)
                    .unwrap()
                    .data,
            )
        })
    });
    group.finish();
}

criterion_group!(benches, bench_commit, bench_car, bench_sync);
criterion_main!(benches);
