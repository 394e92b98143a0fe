#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // bench code
//! Commit throughput through the record use case: 50 actors with 10,000 records each, one
//! writer per actor, over the in-memory store and over SQLite (durable and relaxed), next to the
//! disk's flush ceiling. Also: listRecords pages when half the records are denied.
//!
//! `cargo bench -p stratos-sqlite --bench commits` (env: `ACTORS`, `PRELOAD`, `COMMITS` to
//! shrink the run).

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use stratos_domain::rate_limit::RateLimit;
use stratos_ports::enrollment_store::EnrollmentStore;
use stratos_ports::keys::SigningKeyStore;
use stratos_ports::repo_store::RepoStore;
use stratos_ports::usecases::records::{Records, WriteOp};
use stratos_sqlite::{Durability, SqliteStorage};
use stratos_testkit::builders::{build_records_with, enroll_into, post};
use stratos_testkit::memory::{
    ManualClock, MemoryEnrollmentStore, MemoryKeyStore, MemoryRepoStore,
};

const POSTS: &str = "zone.stratos.feed.post";

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Setup {
    records: Arc<Records>,
    actors: Vec<stratos_domain::syntax::Did>,
    /// An account holding only `even`: denied half of every actor's records.
    viewer: stratos_domain::syntax::Did,
}

async fn setup(
    repos: Arc<dyn RepoStore>,
    enrollments: Arc<dyn EnrollmentStore>,
    keys: Arc<dyn SigningKeyStore>,
    actors: usize,
    preload: usize,
) -> Setup {
    let records = Arc::new(build_records_with(
        repos,
        enrollments.clone(),
        keys.clone(),
        Arc::new(ManualClock::at(1_795_000_000_000)),
        &["even", "odd"],
        RateLimit {
            max: u32::MAX,
            window_ms: 1,
        },
    ));
    let mut dids = Vec::new();
    for i in 0..actors {
        let d = enroll_into(
            &records,
            enrollments.as_ref(),
            keys.as_ref(),
            &format!("did:plc:bench{i:04}"),
            &["even", "odd"],
        )
        .await;
        dids.push(d);
    }
    let viewer = enroll_into(
        &records,
        enrollments.as_ref(),
        keys.as_ref(),
        "did:plc:benchviewer",
        &["even"],
    )
    .await;
    let mut tasks = Vec::new();
    for d in dids.clone() {
        let records = records.clone();
        tasks.push(tokio::spawn(async move {
            let mut left = preload;
            let mut n = 0;
            while left > 0 {
                let batch = left.min(200);
                let ops = (0..batch)
                    .map(|_| {
                        n += 1;
                        WriteOp::Create {
                            collection: POSTS.into(),
                            rkey: None,
                            value: post(
                                &format!("preload {n}"),
                                &[if n % 2 == 0 { "even" } else { "odd" }],
                            ),
                        }
                    })
                    .collect();
                records.apply_writes(&d, &d, ops).await.unwrap();
                left -= batch;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    Setup {
        records,
        actors: dids,
        viewer,
    }
}

struct Outcome {
    commits: usize,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
}

async fn run_writers(setup: &Setup, commits_per_actor: usize) -> Outcome {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for d in setup.actors.clone() {
        let records = setup.records.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(commits_per_actor);
            for i in 0..commits_per_actor {
                let t = Instant::now();
                records
                    .create_record(&d, &d, POSTS, None, post(&format!("bench {i}"), &["even"]))
                    .await
                    .unwrap();
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed();
    all.sort_unstable();
    let pct = |p: f64| all[((all.len() as f64 - 1.0) * p) as usize];
    Outcome {
        commits: all.len(),
        elapsed,
        p50: pct(0.50),
        p99: pct(0.99),
    }
}

fn report(name: &str, o: &Outcome) {
    println!(
        "{name:<28} {:>8.0} commits/s   p50 {:>7.2} ms   p99 {:>7.2} ms   ({} commits in {:.2} s)",
        o.commits as f64 / o.elapsed.as_secs_f64(),
        o.p50.as_secs_f64() * 1e3,
        o.p99.as_secs_f64() * 1e3,
        o.commits,
        o.elapsed.as_secs_f64()
    );
}

/// Pages of 50 for a viewer denied half the records: all pages but the last must be full.
async fn list_half_denied(setup: &Setup) {
    let owner = &setup.actors[0];
    let start = Instant::now();
    let mut pages = 0;
    let mut seen = 0;
    let mut cursor = None;
    let viewer = &setup.viewer;
    loop {
        let page = setup
            .records
            .list_records(Some(viewer), owner, POSTS, 50, cursor, false)
            .await
            .unwrap();
        pages += 1;
        seen += page.records.len();
        if page.cursor.is_none() || pages >= 40 {
            break;
        }
        assert_eq!(page.records.len(), 50, "pages come back full");
        cursor = page.cursor;
    }
    let per_page = start.elapsed() / pages;
    println!(
        "{:<28} {pages} pages, {seen} records, {:.2} ms per full page of 50",
        "list_records (half denied)",
        per_page.as_secs_f64() * 1e3
    );
}

/// The flush ceiling of the disk under `dir`: small write + fdatasync in a loop.
fn fsync_ceiling(dir: &std::path::Path, threads: usize) -> f64 {
    let window = Duration::from_secs(2);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let path = dir.join(format!("fsync-{t}"));
            std::thread::spawn(move || {
                let mut f = std::fs::File::create(&path).unwrap();
                let start = Instant::now();
                let mut n = 0u64;
                while start.elapsed() < window {
                    f.write_all(&[0u8; 512]).unwrap();
                    f.sync_data().unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    total as f64 / window.as_secs_f64()
}

fn main() {
    // Criterion-style filters and flags are accepted and ignored.
    let actors = env("ACTORS", 50);
    let preload = env("PRELOAD", 10_000);
    let commits = env("COMMITS", 200);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        println!("{actors} actors × {preload} preloaded records, {commits} commits per actor\n");

        let t = Instant::now();
        let mem = setup(
            Arc::new(MemoryRepoStore::new()),
            Arc::new(MemoryEnrollmentStore::new()),
            Arc::new(MemoryKeyStore::new()),
            actors,
            preload,
        )
        .await;
        println!("(memory preload {:.1} s)", t.elapsed().as_secs_f64());
        report("memory", &run_writers(&mem, commits).await);
        list_half_denied(&mem).await;
        drop(mem);

        for durability in [Durability::Durable, Durability::Relaxed] {
            // On the project's disk (not a tmpfs), so flushes are real.
            let base = std::env::var("BENCH_DIR")
                .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../target").into());
            std::fs::create_dir_all(&base).unwrap();
            let dir = tempfile::tempdir_in(base).unwrap();
            let s = SqliteStorage::open(dir.path(), durability).await.unwrap();
            let t = Instant::now();
            let setup = setup(
                Arc::new(s.repos.clone()),
                Arc::new(s.enrollments.clone()),
                Arc::new(s.keys.clone()),
                actors,
                preload,
            )
            .await;
            println!("(sqlite {durability:?} preload {:.1} s)", t.elapsed().as_secs_f64());
            report(&format!("sqlite {durability:?}"), &run_writers(&setup, commits).await);
            if durability == Durability::Durable {
                list_half_denied(&setup).await;
                let one = fsync_ceiling(dir.path(), 1);
                let many = fsync_ceiling(dir.path(), 8);
                println!(
                    "{:<28} {one:>8.0} flushes/s (1 file)   {many:.0} flushes/s (8 files in parallel)",
                    "disk flush ceiling"
                );
            }
        }
    });
}
