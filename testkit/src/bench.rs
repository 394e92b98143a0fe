//! The commit benchmark's harness, shared by every storage backend's bench: enrolled actors with
//! pre-loaded repositories, one writer per actor through the record use case, p50/p99 latency,
//! and paging with half the records denied.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // bench support code

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use stratos_domain::rate_limit::RateLimit;
use stratos_ports::enrollment_store::EnrollmentStore;
use stratos_ports::keys::SigningKeyStore;
use stratos_ports::repo_store::RepoStore;
use stratos_ports::usecases::records::{Records, WriteOp};

use crate::builders::{build_records_with, enroll_into, nsid, post};
use crate::memory::ManualClock;

const POSTS: &str = "zone.stratos.feed.post";

/// A `usize` from the environment, or `default`.
pub fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Actors with pre-loaded repositories and the use cases over the backend under test.
#[derive(Debug)]
pub struct Setup {
    /// The record use cases over the backend under test.
    pub records: Arc<Records>,
    /// The actors, each with its pre-loaded repository.
    pub actors: Vec<stratos_domain::syntax::Did>,
    /// An account holding only `even`: denied half of every actor's records.
    pub viewer: stratos_domain::syntax::Did,
}

/// Enrolls `actors` accounts (plus a viewer holding `even` only) and pre-loads `preload` records
/// each, alternating `even`/`odd` boundaries.
pub async fn setup(
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
                            collection: nsid(POSTS),
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

/// Throughput and latency of one run.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    /// Commits made.
    pub commits: usize,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Median commit latency.
    pub p50: Duration,
    /// 99th-percentile commit latency.
    pub p99: Duration,
}

impl Outcome {
    /// Commits per second.
    pub fn rate(&self) -> f64 {
        self.commits as f64 / self.elapsed.as_secs_f64()
    }
}

/// One writer per actor, `commits_per_actor` creates each, all at once.
pub async fn run_writers(setup: &Setup, commits_per_actor: usize) -> Outcome {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for d in setup.actors.clone() {
        let records = setup.records.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(commits_per_actor);
            for i in 0..commits_per_actor {
                let t = Instant::now();
                records
                    .create_record(
                        &d,
                        &d,
                        &nsid(POSTS),
                        None,
                        post(&format!("bench {i}"), &["even"]),
                    )
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

/// Prints one result line.
pub fn report(name: &str, o: &Outcome) {
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
pub async fn list_half_denied(setup: &Setup) {
    let owner = &setup.actors[0];
    let start = Instant::now();
    let mut pages = 0;
    let mut seen = 0;
    let mut cursor = None;
    let viewer = &setup.viewer;
    loop {
        let page = setup
            .records
            .list_records(Some(viewer), owner, &nsid(POSTS), 50, cursor, false)
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
pub fn fsync_ceiling(dir: &std::path::Path, threads: usize) -> f64 {
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
