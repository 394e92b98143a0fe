//! The indexer's figures, rendered in the Prometheus text format at `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};

/// Upper bounds (seconds) of the lag histogram's buckets.
const LAG_BUCKETS: [f64; 10] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Counters and gauges, updated without locks.
#[derive(Debug, Default)]
pub struct Metrics {
    /// `#commit` frames received and verified.
    pub frames: AtomicU64,
    /// Frames refused by verification (not indexed).
    pub verification_failures: AtomicU64,
    /// Posts written (inserted or replaced).
    pub posts_upserted: AtomicU64,
    /// Posts removed.
    pub posts_deleted: AtomicU64,
    /// Accounts backfilled from their export.
    pub backfills: AtomicU64,
    /// Transactions committed.
    pub write_batches: AtomicU64,
    /// Transactions that failed (retried).
    pub write_failures: AtomicU64,
    /// `#enrollment` frames applied.
    pub enrollments: AtomicU64,
    /// Enrollment records in this service seen on the firehose whose attestation verified.
    pub firehose_enrollments: AtomicU64,
    /// Enrollment records in this service seen on the firehose that did not verify.
    pub firehose_rejected: AtomicU64,
    /// Accounts followed.
    pub actors: AtomicUsize,
    /// Account streams holding a connection.
    pub actors_connected: AtomicUsize,
    /// Account streams waiting for a connection.
    pub actors_waiting: AtomicUsize,
    /// The service-level stream is connected (has delivered or is open).
    pub service_connected: std::sync::Arc<AtomicBool>,
    /// Lag of the last `#enrollment` frame (ms between sequencing and applying).
    pub service_lag_ms: AtomicI64,
    /// Lag of the last written commit (ms between sequencing and its row being committed).
    pub actor_lag_ms: AtomicI64,
    lag_buckets: [AtomicU64; LAG_BUCKETS.len()],
    lag_count: AtomicU64,
    lag_sum_ms: AtomicU64,
}

impl Metrics {
    /// Records the sequencing → committed-row lag of one commit.
    pub fn observe_lag_ms(&self, ms: i64) {
        let ms = ms.max(0);
        self.actor_lag_ms.store(ms, Ordering::Relaxed);
        let secs = ms as f64 / 1000.0;
        for (i, bound) in LAG_BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.lag_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.lag_count.fetch_add(1, Ordering::Relaxed);
        self.lag_sum_ms
            .fetch_add(u64::try_from(ms).unwrap_or(0), Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        let gauge = |out: &mut String, name: &str, help: &str, v: f64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter(
            &mut out,
            "stratos_indexer_frames_total",
            "Commit frames received and verified.",
            r(&self.frames),
        );
        counter(
            &mut out,
            "stratos_indexer_verification_failures_total",
            "Frames refused by verification (not indexed).",
            r(&self.verification_failures),
        );
        counter(
            &mut out,
            "stratos_indexer_posts_upserted_total",
            "Posts written.",
            r(&self.posts_upserted),
        );
        counter(
            &mut out,
            "stratos_indexer_posts_deleted_total",
            "Posts removed.",
            r(&self.posts_deleted),
        );
        counter(
            &mut out,
            "stratos_indexer_backfills_total",
            "Accounts backfilled from their export.",
            r(&self.backfills),
        );
        counter(
            &mut out,
            "stratos_indexer_write_batches_total",
            "Transactions committed.",
            r(&self.write_batches),
        );
        counter(
            &mut out,
            "stratos_indexer_write_failures_total",
            "Transactions that failed and were retried.",
            r(&self.write_failures),
        );
        counter(
            &mut out,
            "stratos_indexer_enrollments_total",
            "Enrollment frames applied.",
            r(&self.enrollments),
        );
        counter(
            &mut out,
            "stratos_indexer_firehose_enrollments_total",
            "Enrollment records for this service seen on the firehose, attestation verified.",
            r(&self.firehose_enrollments),
        );
        counter(
            &mut out,
            "stratos_indexer_firehose_rejected_total",
            "Enrollment records for this service seen on the firehose that did not verify.",
            r(&self.firehose_rejected),
        );
        let u = |a: &AtomicUsize| a.load(Ordering::Relaxed) as f64;
        gauge(
            &mut out,
            "stratos_indexer_actors",
            "Accounts followed.",
            u(&self.actors),
        );
        gauge(
            &mut out,
            "stratos_indexer_actors_connected",
            "Account streams holding a connection.",
            u(&self.actors_connected),
        );
        gauge(
            &mut out,
            "stratos_indexer_actors_waiting",
            "Account streams waiting for a connection.",
            u(&self.actors_waiting),
        );
        gauge(
            &mut out,
            "stratos_indexer_service_stream_connected",
            "1 when the service-level stream is connected.",
            f64::from(u8::from(self.service_connected.load(Ordering::Relaxed))),
        );
        let _ = writeln!(
            out,
            "# HELP stratos_indexer_lag_seconds Lag of the last event applied, per source.\n\
             # TYPE stratos_indexer_lag_seconds gauge\n\
             stratos_indexer_lag_seconds{{source=\"service\"}} {}\n\
             stratos_indexer_lag_seconds{{source=\"actors\"}} {}",
            self.service_lag_ms.load(Ordering::Relaxed) as f64 / 1000.0,
            self.actor_lag_ms.load(Ordering::Relaxed) as f64 / 1000.0,
        );
        let _ = writeln!(
            out,
            "# HELP stratos_indexer_index_lag_seconds Sequenced by the service to committed in the index.\n\
             # TYPE stratos_indexer_index_lag_seconds histogram"
        );
        for (i, bound) in LAG_BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "stratos_indexer_index_lag_seconds_bucket{{le=\"{bound}\"}} {}",
                r(&self.lag_buckets[i])
            );
        }
        let count = r(&self.lag_count);
        let _ = writeln!(
            out,
            "stratos_indexer_index_lag_seconds_bucket{{le=\"+Inf\"}} {count}\n\
             stratos_indexer_index_lag_seconds_sum {}\n\
             stratos_indexer_index_lag_seconds_count {count}",
            r(&self.lag_sum_ms) as f64 / 1000.0
        );
        let _ = writeln!(
            out,
            "# HELP stratos_indexer_build_info Build information.\n\
             # TYPE stratos_indexer_build_info gauge\n\
             stratos_indexer_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_parses_and_counts() {
        let m = Metrics::default();
        m.frames.fetch_add(3, Ordering::Relaxed);
        m.observe_lag_ms(40);
        m.observe_lag_ms(3_000);
        let text = m.render();
        let mut samples = std::collections::HashMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').unwrap_or_default();
            assert!(value.parse::<f64>().is_ok(), "{line}");
            samples.insert(name.to_owned(), value.to_owned());
        }
        assert_eq!(samples["stratos_indexer_frames_total"], "3");
        assert_eq!(
            samples["stratos_indexer_index_lag_seconds_bucket{le=\"0.05\"}"],
            "1"
        );
        assert_eq!(
            samples["stratos_indexer_index_lag_seconds_bucket{le=\"+Inf\"}"],
            "2"
        );
        assert_eq!(
            samples["stratos_indexer_lag_seconds{source=\"actors\"}"],
            "3"
        );
    }
}
