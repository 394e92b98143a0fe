//! Prometheus metrics (text format 0.0.4) at `/metrics`: requests and their durations per XRPC
//! method and status, the sync stream's figures, the outbox's depth, build information.
//!
//! Label values are bounded: the method label is the route a request matched (the registered
//! XRPC methods and operational paths) or `unmatched`, never a path the caller chose.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Upper bounds of the duration histograms, seconds.
pub const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Default, Clone)]
struct Series {
    count: u64,
    sum: f64,
    /// Observations at or below each bound (not cumulative; summed when rendered).
    buckets: [u64; BUCKETS.len()],
}

/// Request counts and durations, and the PDS delivery's outcomes.
#[derive(Debug)]
pub struct HttpMetrics {
    /// method → status → series.
    series: Mutex<HashMap<String, HashMap<u16, Series>>>,
    started: Instant,
    /// Outbox items delivered, retried later, dead-lettered; failed batches.
    pub delivery: DeliveryCounters,
}

/// What the outbox delivery did, summed over its batches.
#[derive(Debug, Default)]
pub struct DeliveryCounters {
    /// Items written to (or deleted from) PDSes.
    pub delivered: AtomicU64,
    /// Items that failed and wait for a retry.
    pub retried: AtomicU64,
    /// Items that became dead letters.
    pub dead: AtomicU64,
    /// Batches that failed as a whole (the outbox could not be read).
    pub failed_batches: AtomicU64,
    /// Outbox calls that failed after a claim.
    pub outbox_errors: AtomicU64,
}

impl DeliveryCounters {
    /// Adds one batch's report (or its failure).
    pub fn record(
        &self,
        report: Result<
            &stratos_ports::usecases::delivery::DeliveryReport,
            &stratos_ports::usecases::delivery::DeliveryError,
        >,
    ) {
        let add = |c: &AtomicU64, n: usize| {
            c.fetch_add(n as u64, Ordering::Relaxed);
        };
        match report {
            Ok(r) => {
                add(&self.delivered, r.delivered);
                add(&self.retried, r.retried);
                add(&self.dead, r.dead);
                add(&self.outbox_errors, r.outbox_errors);
            }
            Err(_) => add(&self.failed_batches, 1),
        }
    }

    fn render(&self, out: &mut String) {
        for (name, help, c) in [
            (
                "stratos_delivery_delivered_total",
                "Outbox items written to (or deleted from) PDSes.",
                &self.delivered,
            ),
            (
                "stratos_delivery_retried_total",
                "Outbox items that failed and wait for a retry.",
                &self.retried,
            ),
            (
                "stratos_delivery_dead_letters_total",
                "Outbox items that became dead letters.",
                &self.dead,
            ),
            (
                "stratos_delivery_failed_batches_total",
                "Delivery batches that failed as a whole.",
                &self.failed_batches,
            ),
            (
                "stratos_delivery_outbox_errors_total",
                "Outbox calls that failed after a claim.",
                &self.outbox_errors,
            ),
        ] {
            sample(out, name, "counter", help, c.load(Ordering::Relaxed) as f64);
        }
    }
}

impl Default for HttpMetrics {
    fn default() -> Self {
        Self {
            series: Mutex::new(HashMap::new()),
            started: Instant::now(),
            delivery: DeliveryCounters::default(),
        }
    }
}

/// The method label of a request: the XRPC method of the route it matched, the operational
/// path, or `unmatched`.
pub fn method_label(pattern: Option<&str>) -> &str {
    match pattern {
        Some(p) => p.strip_prefix("/xrpc/").unwrap_or(p),
        None => "unmatched",
    }
}

/// [`method_label`] without looking the route up again (which costs an allocation and a walk
/// of every route per request): under `/xrpc/`, every path that is not a registered method
/// (of the right HTTP method) reaches the fallback, which answers 501 — so any other status
/// means the path is a registered method's, and the label set stays bounded. That holds only
/// for a path written exactly as the route (NSID characters only): a percent-encoded spelling
/// can match the same route, and each spelling would become a new label. Such paths, and other
/// paths (operational endpoints, 404s), are rare and take the lookup.
pub fn label_of<'a>(
    path: &'a str,
    status: u16,
    pattern: impl FnOnce() -> Option<String>,
) -> std::borrow::Cow<'a, str> {
    let plain = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    };
    match path.strip_prefix("/xrpc/") {
        Some(_) if status == 501 => std::borrow::Cow::Borrowed("unmatched"),
        Some(nsid) if plain(nsid) => std::borrow::Cow::Borrowed(nsid),
        _ => std::borrow::Cow::Owned(method_label(pattern().as_deref()).to_owned()),
    }
}

impl HttpMetrics {
    /// Records one answered request.
    pub fn observe(&self, method: &str, status: u16, seconds: f64) {
        let mut map = self
            .series
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Looked up by `&str` first: the common case allocates nothing.
        let by_status = match map.get_mut(method) {
            Some(m) => m,
            None => map.entry(method.to_owned()).or_default(),
        };
        let s = by_status.entry(status).or_default();
        s.count += 1;
        s.sum += seconds;
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            s.buckets[i] += 1;
        }
    }

    /// Seconds since the process started serving.
    pub fn uptime_secs(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// The request families, in the text format.
    pub fn render(&self, out: &mut String) {
        let mut rows: Vec<(String, u16, Series)> = {
            let map = self
                .series
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            map.iter()
                .flat_map(|(m, by)| by.iter().map(move |(st, s)| (m.clone(), *st, s.clone())))
                .collect()
        };
        rows.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        self.delivery.render(out);
        family(
            out,
            "stratos_http_requests_total",
            "counter",
            "Requests answered, by XRPC method (or path) and status.",
        );
        for (m, st, s) in &rows {
            let _ = writeln!(
                out,
                "stratos_http_requests_total{{method=\"{}\",status=\"{st}\"}} {}",
                escape(m),
                s.count
            );
        }
        family(
            out,
            "stratos_http_request_duration_seconds",
            "histogram",
            "Time from the request reaching the service to its answer's head, by method and status.",
        );
        for (m, st, s) in &rows {
            let labels = format!("method=\"{}\",status=\"{st}\"", escape(m));
            let mut cumulative = 0;
            for (bound, n) in BUCKETS.iter().zip(s.buckets) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "stratos_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "stratos_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                s.count
            );
            let _ = writeln!(
                out,
                "stratos_http_request_duration_seconds_sum{{{labels}}} {}",
                s.sum
            );
            let _ = writeln!(
                out,
                "stratos_http_request_duration_seconds_count{{{labels}}} {}",
                s.count
            );
        }
    }
}

/// `# HELP` and `# TYPE` of a family.
pub fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// One sample without labels.
pub fn sample(out: &mut String, name: &str, kind: &str, help: &str, value: f64) {
    family(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// A label value as the text format wants it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_end_at_the_count() {
        let m = HttpMetrics::default();
        m.observe("com.atproto.repo.getRecord", 200, 0.0007);
        m.observe("com.atproto.repo.getRecord", 200, 0.3);
        m.observe("com.atproto.repo.getRecord", 200, 60.0);
        m.observe("com.atproto.repo.getRecord", 400, 0.001);
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains(
            "stratos_http_requests_total{method=\"com.atproto.repo.getRecord\",status=\"200\"} 3"
        ));
        assert!(out.contains("status=\"200\",le=\"0.001\"} 1\n"));
        assert!(out.contains("status=\"200\",le=\"0.5\"} 2\n"));
        assert!(out.contains("status=\"200\",le=\"10\"} 2\n"));
        assert!(out.contains("status=\"200\",le=\"+Inf\"} 3\n"));
        assert!(out.contains("status=\"400\",le=\"+Inf\"} 1\n"));
    }

    #[test]
    fn labels_come_from_routes() {
        assert_eq!(
            method_label(Some("/xrpc/com.atproto.repo.getRecord")),
            "com.atproto.repo.getRecord"
        );
        assert_eq!(method_label(Some("/health")), "/health");
        assert_eq!(method_label(None), "unmatched");
        assert_eq!(
            label_of("/xrpc/com.atproto.repo.getRecord", 400, || None),
            "com.atproto.repo.getRecord"
        );
        // The fallback's answer: the caller's path never becomes a label.
        assert_eq!(label_of("/xrpc/made.up.thing", 501, || None), "unmatched");
        assert_eq!(
            label_of("/health", 200, || Some("/health".into())),
            "/health"
        );
        assert_eq!(label_of("/no/such", 404, || None), "unmatched");
        // Another spelling of a registered method is labelled by its route, not its spelling.
        assert_eq!(
            label_of("/xrpc/com.atproto.repo.getRecor%64", 200, || Some(
                "/xrpc/com.atproto.repo.getRecord".into()
            )),
            "com.atproto.repo.getRecord"
        );
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
