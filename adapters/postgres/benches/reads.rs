#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // bench code
//! Read throughput of the PostgreSQL repository store with 8, 32 and 64 actors read at once
//! (one reader each): `head` then `get_record` of one of the actor's records, repeatedly. These
//! statements name the actor's schema, so they run unnamed (see `src/repo/mod.rs`).
//!
//! `STRATOS_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \
//!  cargo bench -p stratos-postgres --bench reads` (env: `PRELOAD`, `READS`).

use std::sync::Arc;
use std::time::Instant;

use rand_core::{OsRng, RngCore};
use stratos_domain::boundary::ReadFilter;
use stratos_ports::repo_store::{ListQuery, RepoStore};
use stratos_postgres::{PostgresConfig, PostgresStorage};
use stratos_testkit::bench::{env, setup};

const POSTS: &str = "zone.stratos.feed.post";

fn posts() -> stratos_domain::syntax::Nsid {
    stratos_testkit::builders::nsid(POSTS)
}

fn main() {
    let url = std::env::var("STRATOS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let preload = env("PRELOAD", 100);
    let reads = env("READS", 300);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        println!("{preload} preloaded records per actor, {reads} reads per actor\n");
        for actors in [8usize, 32, 64] {
            let storage = PostgresStorage::connect(&PostgresConfig {
                url: url.clone(),
                pool_size: u32::try_from(actors).unwrap() + 4,
                schema_prefix: format!("b{:010x}_", OsRng.next_u64() & 0xff_ffff_ffff),
            })
            .await
            .unwrap();
            let repos = Arc::new(storage.repos.clone());
            let s = setup(
                repos.clone(),
                Arc::new(storage.enrollments.clone()),
                Arc::new(storage.keys.clone()),
                actors,
                preload,
            )
            .await;
            let start = Instant::now();
            let mut tasks = Vec::new();
            for d in s.actors.clone() {
                let repos = repos.clone();
                tasks.push(tokio::spawn(async move {
                    let query = ListQuery {
                        collection: posts(),
                        limit: 1,
                        cursor: None,
                        reverse: false,
                        filter: ReadFilter::All,
                    };
                    let rkey = repos.list_records(&d, &query).await.unwrap()[0]
                        .rkey
                        .clone();
                    for _ in 0..reads {
                        repos.head(&d).await.unwrap().unwrap();
                        repos
                            .get_record(&d, &posts(), &rkey)
                            .await
                            .unwrap()
                            .unwrap();
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            let elapsed = start.elapsed().as_secs_f64();
            println!(
                "postgres, {actors} actors: {:.0} reads/s (head + get_record = 2 reads)",
                (2 * actors * reads) as f64 / elapsed
            );
            storage.drop_everything().await.unwrap();
        }
    });
}
