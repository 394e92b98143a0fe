#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // bench code
//! Commit throughput through the record use case: 50 actors with 10,000 records each, one
//! writer per actor, over the in-memory store and over SQLite (durable and relaxed), next to the
//! disk's flush ceiling. Also: listRecords pages when half the records are denied.
//!
//! `cargo bench -p stratos-sqlite --bench commits` (env: `ACTORS`, `PRELOAD`, `COMMITS` to
//! shrink the run; `MODES=memory,durable,relaxed` to pick the stores).

use std::sync::Arc;
use std::time::Instant;

use stratos_sqlite::{Durability, SqliteStorage};
use stratos_testkit::bench::{env, fsync_ceiling, list_half_denied, report, run_writers, setup};
use stratos_testkit::memory::{MemoryEnrollmentStore, MemoryKeyStore, MemoryRepoStore};

// The same allocator as the `stratos` binary: glibc's malloc under the driver's many threads
// costs a measurable share of commit throughput (docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // Criterion-style filters and flags are accepted and ignored.
    let actors = env("ACTORS", 50);
    let preload = env("PRELOAD", 10_000);
    let commits = env("COMMITS", 400);
    let modes = std::env::var("MODES").unwrap_or_else(|_| "memory,durable,relaxed".into());
    let wants = |m: &str| modes.split(',').any(|x| x.trim() == m);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        println!("{actors} actors × {preload} preloaded records, {commits} commits per actor\n");

        if wants("memory") {
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
        }

        for durability in [Durability::Durable, Durability::Relaxed] {
            let name = if durability == Durability::Durable { "durable" } else { "relaxed" };
            if !wants(name) {
                continue;
            }
            // On the project's disk (not a tmpfs), so flushes are real.
            let base = std::env::var("BENCH_DIR")
                .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../target").into());
            std::fs::create_dir_all(&base).unwrap();
            let tmp = tempfile::tempdir_in(base).unwrap();
            let dir = tmp.path().to_path_buf();
            let _guard = if std::env::var_os("KEEP_BENCH_DIR").is_some() {
                println!("(keeping {})", tmp.keep().display());
                None
            } else {
                Some(tmp)
            };
            let s = SqliteStorage::open(dir.as_path(), durability).await.unwrap();
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
            // The preload (and an earlier mode's deleted files) leave large WALs and dirty pages
            // behind; flush them and let background checkpoints finish so they do not land in
            // the measured run.
            let _ = std::process::Command::new("sync").status();
            tokio::time::sleep(std::time::Duration::from_secs(3)).await;
            report(&format!("sqlite {durability:?}"), &run_writers(&setup, commits).await);
            if durability == Durability::Durable {
                list_half_denied(&setup).await;
                let one = fsync_ceiling(dir.as_path(), 1);
                let many = fsync_ceiling(dir.as_path(), 8);
                println!(
                    "{:<28} {one:>8.0} flushes/s (1 file)   {many:.0} flushes/s (8 files in parallel)",
                    "disk flush ceiling"
                );
            }
        }
    });
}
