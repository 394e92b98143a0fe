//! Timeline query latency over a large index (docs/performance.md, "AppView timeline"):
//! seeds `--posts` posts (50 authors, 20 boundaries, one or two each) into schema
//! `bench_timeline` of `$BENCH_PG_URL` unless it already holds them, then times the AppView
//! SDK's timeline for viewers holding 3 boundaries — first pages and pages deep behind a cursor —
//! and prints the plan of one query.
//!
//! ```sh
//! BENCH_PG_URL=postgres://postgres@127.0.0.1:5432/test \
//!   cargo run --release -p stratos-indexer --example timeline_bench -- --posts 1000000
//! ```

use std::sync::Arc;
use std::time::Instant;

use sea_orm::sqlx::{self, AssertSqlSafe, Row as _};
use stratos_domain::syntax::{Did, Tid};
use stratos_ports::appview_store::{
    ActorCursor, EnrollmentChange, IndexBatch, IndexWriter, IndexedEnrollment, PostChange,
};
use stratos_ports::usecases::appview::{AppView, FeedParams};
use stratos_postgres::{AppViewConfig, PostgresAppViewIndex};
use stratos_testkit::conformance::appview_index::row;

const SCHEMA: &str = "bench_timeline";
const BOUNDARIES: u64 = 20;
const AUTHORS: u64 = 50;

/// A small deterministic generator (xorshift), so runs seed the same data.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let posts: u64 = args
        .iter()
        .position(|a| a == "--posts")
        .and_then(|i| args.get(i + 1))
        .map_or(Ok(1_000_000), |v| v.parse())?;
    let url = std::env::var("BENCH_PG_URL")?;
    let index = Arc::new(
        PostgresAppViewIndex::connect(&AppViewConfig {
            url,
            schema: SCHEMA.into(),
            pool_size: 4,
        })
        .await?,
    );
    let pool = index.pool().clone();
    let have: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT count(*) FROM {SCHEMA}.stratos_post"
    )))
    .fetch_one(&pool)
    .await?;
    let authors: Vec<Did> = (0..AUTHORS)
        .map(|i| Did::parse(&format!("did:plc:bench{i:04}")))
        .collect::<Result<_, _>>()?;
    if have as u64 != posts {
        println!("seeding {posts} posts (have {have})");
        sqlx::query(AssertSqlSafe(format!(
            "TRUNCATE {SCHEMA}.stratos_post, {SCHEMA}.stratos_post_boundary"
        )))
        .execute(&pool)
        .await?;
        let started = Instant::now();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let chunk = 5_000;
        let mut n = 0u64;
        while n < posts {
            let mut changes = Vec::with_capacity(chunk);
            for _ in 0..chunk.min((posts - n) as usize) {
                let author = &authors[(rng.next() % AUTHORS) as usize];
                let b1 = format!("b{}", rng.next() % BOUNDARIES);
                let b2 = format!("b{}", rng.next() % BOUNDARIES);
                let bs: Vec<&str> = if rng.next().is_multiple_of(4) {
                    vec![&b1, &b2]
                } else {
                    vec![&b1]
                };
                let rkey = Tid::from_parts(1_700_000_000_000_000 + n, 0).to_string();
                // One post per second of a little under 12 days per million.
                let at = 1_765_000_000_000 + (n as i64) * 1_000;
                changes.push(PostChange::Upsert(Box::new(row(
                    author,
                    &rkey,
                    &format!("post {n}"),
                    &bs,
                    at,
                ))));
                n += 1;
            }
            let batch = IndexBatch {
                did: authors[0].clone(),
                replace: false,
                changes,
                cursor: ActorCursor { seq: n, rev: None },
            };
            index.apply(&[batch]).await?;
        }
        println!("seeded in {:.1} s", started.elapsed().as_secs_f64());
        sqlx::query(AssertSqlSafe(format!("ANALYZE {SCHEMA}.stratos_post")))
            .execute(&pool)
            .await?;
        sqlx::query(AssertSqlSafe(format!(
            "ANALYZE {SCHEMA}.stratos_post_boundary"
        )))
        .execute(&pool)
        .await?;
    }
    // Viewers holding 3 boundaries each (the suite's qualification: `did:web:stratos.suite/…`).
    let mut rng = Rng(42);
    let mut viewers = Vec::new();
    for v in 0..20 {
        let did = Did::parse(&format!("did:plc:viewer{v:03}"))?;
        let boundaries = (0..3)
            .map(|_| format!("did:web:stratos.suite/b{}", rng.next() % BOUNDARIES))
            .collect();
        index
            .apply_enrollment(
                &EnrollmentChange::Upsert(IndexedEnrollment {
                    did: did.clone(),
                    service_url: "https://stratos.suite".into(),
                    enrolled_at: "2026-12-07T00:00:00.000Z".into(),
                    boundaries,
                }),
                None,
            )
            .await?;
        viewers.push(did);
    }
    let appview = AppView::builder(index.clone()).build();
    for (label, depth) in [("first page", 0usize), ("page 20 (behind a cursor)", 19)] {
        let mut times = Vec::new();
        for round in 0..400 {
            let viewer = &viewers[round % viewers.len()];
            let mut params = FeedParams {
                limit: Some(50),
                ..FeedParams::default()
            };
            for _ in 0..depth {
                params.cursor = appview.timeline(Some(viewer), &params).await?.cursor;
            }
            let t = Instant::now();
            let page = appview.timeline(Some(viewer), &params).await?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(page.feed.len(), 50);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "timeline, 3 boundaries, limit 50, {label}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} queries)",
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            times[times.len() - 1],
            times.len()
        );
    }
    let plan = sqlx::query(AssertSqlSafe(format!(
        "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) \
         SELECT p.uri FROM {SCHEMA}.stratos_post p JOIN (SELECT DISTINCT x.uri, x.\"sortAt\" FROM unnest($1::text[]) AS v(boundary) \
         CROSS JOIN LATERAL (SELECT b.uri, b.\"sortAt\" FROM {SCHEMA}.stratos_post_boundary b WHERE b.boundary = v.boundary \
         ORDER BY b.\"sortAt\" DESC, b.uri DESC LIMIT $2) x ORDER BY x.\"sortAt\" DESC, x.uri DESC LIMIT $2) page ON page.uri = p.uri \
         ORDER BY p.\"sortAt\" DESC, p.uri DESC"
    )))
    .bind(vec!["did:web:stratos.suite/b1", "did:web:stratos.suite/b7", "did:web:stratos.suite/b13"])
    .bind(50i64)
    .fetch_all(&pool)
    .await?;
    println!("plan of a first page:");
    for line in plan {
        let text: String = line.try_get(0)?;
        println!("  {text}");
    }
    Ok(())
}
