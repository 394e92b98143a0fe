//! The summary of a run, as text for people and as JSON for scripts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Value, json};

use crate::args::Workload;
use crate::cpu::WindowCpu;
use crate::stats::{Op, OpStats, Stats};

/// More unexpected failures than this share of the measured requests fails the run.
pub const MAX_UNEXPECTED_RATIO: f64 = 0.01;

/// What happened before the measured run.
#[derive(Debug, Clone, Default)]
pub struct Setup {
    pub enrolled: usize,
    pub enroll_failed: usize,
    pub seeded: usize,
    pub seed_failed: usize,
    /// The boundary value written into created records.
    pub record_boundary: String,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub workload: Workload,
    pub base: String,
    pub actors: usize,
    pub concurrency: usize,
    pub threads: usize,
    pub window: Duration,
    pub warmup: Duration,
    pub warmup_requests: u64,
    pub setup: Setup,
    pub stats: Stats,
    /// CPU time spent in the measured window (the service's with `--pid`).
    pub cpu: WindowCpu,
    /// The `--pid` given.
    pub pid: Option<u32>,
}

impl Report {
    pub fn total(&self) -> OpStats {
        self.stats.total()
    }

    pub fn unexpected_ratio(&self) -> f64 {
        let t = self.total();
        if t.requests() == 0 {
            0.0
        } else {
            t.unexpected as f64 / t.requests() as f64
        }
    }

    /// A run passes when it measured something and at most 1 % of it failed unexpectedly.
    pub fn passed(&self) -> bool {
        self.total().requests() > 0 && self.unexpected_ratio() <= MAX_UNEXPECTED_RATIO
    }

    /// CPU microseconds per measured request.
    fn per_request_us(&self, cpu: Option<Duration>) -> Option<f64> {
        let n = self.total().requests();
        cpu.filter(|_| n > 0)
            .map(|c| c.as_secs_f64() * 1e6 / n as f64)
    }

    /// The CPU line of the text summary.
    fn cpu_line(&self) -> String {
        let part = |who: &str, cpu: Option<Duration>| match (cpu, self.per_request_us(cpu)) {
            (Some(c), Some(us)) => {
                format!("{who} {:.2} s ({us:.0} µs per request)", c.as_secs_f64())
            }
            (Some(c), None) => format!("{who} {:.2} s", c.as_secs_f64()),
            (None, _) => format!("{who} not measured"),
        };
        let server = match self.pid {
            None => "server not measured (pass --pid)".to_owned(),
            Some(pid) if self.cpu.server.is_none() => {
                format!("server (pid {pid}) could not be read")
            }
            Some(pid) => part(&format!("server (pid {pid})"), self.cpu.server),
        };
        format!(
            "CPU in the measured window: {server}; load generator {}",
            part("", self.cpu.loadgen).trim_start()
        )
    }

    fn rate(&self, n: u64) -> f64 {
        let secs = self.window.as_secs_f64();
        if secs > 0.0 { n as f64 / secs } else { 0.0 }
    }

    /// The rows of the table: every request kind that was sent, then the total.
    fn rows(&self) -> Vec<(&'static str, OpStats)> {
        let mut rows: Vec<(&'static str, OpStats)> = Op::ALL
            .iter()
            .map(|&op| (op.name(), self.stats.op(op).clone()))
            .filter(|(_, s)| s.requests() > 0)
            .collect();
        rows.push(("total", self.total()));
        rows
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} against {}: {} actors, {} connections, {} thread{}, {:.1} s measured after {:.1} s warm-up ({} warm-up requests)",
            self.workload.name(),
            self.base,
            self.actors,
            self.concurrency,
            self.threads,
            if self.threads == 1 { "" } else { "s" },
            self.window.as_secs_f64(),
            self.warmup.as_secs_f64(),
            self.warmup_requests,
        );
        let _ = writeln!(
            out,
            "setup: {} enrolled ({} failed), {} records seeded ({} failed), record boundary `{}`",
            self.setup.enrolled,
            self.setup.enroll_failed,
            self.setup.seeded,
            self.setup.seed_failed,
            self.setup.record_boundary,
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<11} {:>9} {:>10} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>10}",
            "request",
            "count",
            "req/s",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "max ms",
            "ok",
            "ok-denied",
            "unexpected"
        );
        for (name, s) in self.rows() {
            let h = &s.latency;
            let _ = writeln!(
                out,
                "{:<11} {:>9} {:>10.1} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>9} {:>9} {:>10}",
                name,
                s.requests(),
                self.rate(s.requests()),
                ms(h.percentile(50.0)),
                ms(h.percentile(95.0)),
                ms(h.percentile(99.0)),
                ms(h.max()),
                s.ok,
                s.ok_denied,
                s.unexpected,
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "errors by HTTP status: {}",
            table(&self.stats.by_status)
        );
        let _ = writeln!(out, "errors by XRPC error: {}", table(&self.stats.by_xrpc));
        let _ = writeln!(out, "{}", self.cpu_line());
        if let Some(e) = &self.stats.first_error {
            let _ = writeln!(out, "first unexpected error: {e}");
        }
        for hint in self.hints() {
            let _ = writeln!(out, "hint: {hint}");
        }
        let t = self.total();
        let _ = writeln!(
            out,
            "unexpected failures: {} of {} ({:.2} %, limit {:.0} %): {}",
            t.unexpected,
            t.requests(),
            self.unexpected_ratio() * 100.0,
            MAX_UNEXPECTED_RATIO * 100.0,
            if self.passed() {
                "PASS"
            } else if t.requests() == 0 {
                "FAIL (nothing measured)"
            } else {
                "FAIL"
            }
        );
        out
    }

    /// Advice for failures that come from the service's configuration rather than its speed.
    fn hints(&self) -> Vec<&'static str> {
        let mut hints = Vec::new();
        if self.stats.by_xrpc.contains_key("RateLimitExceeded") {
            hints.push(
                "the service limits writes per account (STRATOS_WRITE_RATE_MAX_WRITES, 300 per \
                 minute by default); raise it for load runs",
            );
        }
        if self.stats.by_xrpc.contains_key("WriteConflict") {
            hints.push(
                "concurrent writes to one repository conflict; use at least as many --actors \
                 as --concurrency",
            );
        }
        if self.stats.by_xrpc.contains_key("NotEnrolled") {
            hints.push("an account is not enrolled; check the enrollment lines above");
        }
        hints
    }

    pub fn json(&self) -> Value {
        let op_json = |s: &OpStats| {
            let h = &s.latency;
            json!({
                "requests": s.requests(),
                "throughput": self.rate(s.requests()),
                "ok": s.ok,
                "okDenied": s.ok_denied,
                "unexpected": s.unexpected,
                "latencyMs": {
                    "p50": ms(h.percentile(50.0)),
                    "p95": ms(h.percentile(95.0)),
                    "p99": ms(h.percentile(99.0)),
                    "max": ms(h.max()),
                    "mean": h.mean() / 1000.0,
                },
            })
        };
        let ops: serde_json::Map<String, Value> = self
            .rows()
            .iter()
            .filter(|(name, _)| *name != "total")
            .map(|(name, s)| ((*name).to_owned(), op_json(s)))
            .collect();
        json!({
            "workload": self.workload.name(),
            "base": self.base,
            "actors": self.actors,
            "concurrency": self.concurrency,
            "threads": self.threads,
            "durationSecs": self.window.as_secs_f64(),
            "warmupSecs": self.warmup.as_secs_f64(),
            "warmupRequests": self.warmup_requests,
            "setup": {
                "enrolled": self.setup.enrolled,
                "enrollFailed": self.setup.enroll_failed,
                "seeded": self.setup.seeded,
                "seedFailed": self.setup.seed_failed,
                "recordBoundary": self.setup.record_boundary,
            },
            "total": op_json(&self.total()),
            "ops": ops,
            "errorsByStatus": self.stats.by_status,
            "errorsByXrpc": self.stats.by_xrpc,
            "firstError": self.stats.first_error,
            "hints": self.hints(),
            "unexpectedRatio": self.unexpected_ratio(),
            "passed": self.passed(),
            "cpu": {
                "pid": self.pid,
                "serverSecs": self.cpu.server.map(|c| c.as_secs_f64()),
                "serverUsPerRequest": self.per_request_us(self.cpu.server),
                "loadgenSecs": self.cpu.loadgen.map(|c| c.as_secs_f64()),
                "loadgenUsPerRequest": self.per_request_us(self.cpu.loadgen),
            },
        })
    }
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

fn table(map: &BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "none".into();
    }
    map.iter()
        .map(|(k, n)| format!("{k} ×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Answer, Failure};
    use hyper::body::Bytes;

    fn report(ok: u64, failed: u64) -> Report {
        let mut stats = Stats::default();
        for i in 0..ok {
            let a = Ok(Answer {
                status: 200,
                body: Bytes::new(),
            });
            stats.record(Op::Get, &a, 1_000 + i);
        }
        for _ in 0..failed {
            stats.record(Op::Get, &Err(Failure::Timeout), 0);
        }
        Report {
            workload: Workload::Get,
            base: "http://x".into(),
            actors: 1,
            concurrency: 1,
            threads: 1,
            window: Duration::from_secs(2),
            warmup: Duration::ZERO,
            warmup_requests: 0,
            setup: Setup::default(),
            stats,
            cpu: WindowCpu {
                server: Some(Duration::from_millis(50)),
                loadgen: Some(Duration::from_millis(10)),
            },
            pid: Some(7),
        }
    }

    #[test]
    fn pass_threshold_is_one_percent() {
        assert!(report(99, 1).passed());
        assert!(!report(98, 2).passed());
        assert!(!report(0, 0).passed(), "an empty run cannot pass");
        let r = report(99, 1);
        let j = r.json();
        assert_eq!(j["total"]["requests"], 100);
        assert_eq!(j["total"]["throughput"], 50.0);
        assert_eq!(j["errorsByStatus"]["timeout"], 1);
        assert_eq!(j["passed"], true);
        assert!(r.text().contains("PASS"));
        assert!(report(1, 1).text().contains("timeout ×1"));
    }

    #[test]
    fn cpu_is_reported_per_request() {
        let r = report(100, 0);
        let j = r.json();
        assert_eq!(j["cpu"]["serverUsPerRequest"], 500.0);
        assert_eq!(j["cpu"]["loadgenUsPerRequest"], 100.0);
        assert!(
            r.text()
                .contains("server (pid 7) 0.05 s (500 µs per request); load generator 0.01 s (100 µs per request)"),
            "{}",
            r.text()
        );
        let mut unread = report(100, 0);
        unread.cpu.server = None;
        assert!(unread.text().contains("server (pid 7) could not be read"));
        unread.pid = None;
        assert!(unread.text().contains("server not measured (pass --pid)"));
        assert_eq!(unread.json()["cpu"]["serverUsPerRequest"], Value::Null);
    }
}
