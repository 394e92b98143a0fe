#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // bench code
//! Commit throughput through the record use case over PostgreSQL with 8, 32 and 64 concurrent
//! actors (one writer each), to compare with `pgbench` running a transaction of the same shape
//! (`benches/commit_shape.sql`, see docs/performance.md).
//!
//! `STRATOS_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \
//!  cargo bench -p stratos-postgres --bench commits` (env: `PRELOAD`, `COMMITS`).

use std::sync::Arc;
use std::time::Instant;

use rand_core::{OsRng, RngCore};
use stratos_postgres::{PostgresConfig, PostgresStorage};
use stratos_testkit::bench::{env, report, run_writers, setup};

fn main() {
    let url = std::env::var("STRATOS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let preload = env("PRELOAD", 10_000);
    let commits = env("COMMITS", 100);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        println!("{preload} preloaded records per actor, {commits} commits per actor\n");
        for actors in [8usize, 32, 64] {
            let storage = PostgresStorage::connect(&PostgresConfig {
                url: url.clone(),
                pool_size: u32::try_from(actors).unwrap() + 4,
                schema_prefix: format!("b{:010x}_", OsRng.next_u64() & 0xff_ffff_ffff),
            })
            .await
            .unwrap();
            let t = Instant::now();
            let s = setup(
                Arc::new(storage.repos.clone()),
                Arc::new(storage.enrollments.clone()),
                Arc::new(storage.keys.clone()),
                actors,
                preload,
            )
            .await;
            println!(
                "(postgres {actors} actors preload {:.1} s)",
                t.elapsed().as_secs_f64()
            );
            report(
                &format!("postgres, {actors} actors"),
                &run_writers(&s, commits).await,
            );
            storage.drop_everything().await.unwrap();
        }
    });
}
