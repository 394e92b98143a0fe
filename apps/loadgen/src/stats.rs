//! What each request's answer means for the run, and the per-worker tallies that are merged at
//! the end (workers never share counters, so recording takes no lock).

use std::collections::BTreeMap;

use crate::histogram::Histogram;
use crate::http::{Answer, Failure};

/// The kinds of request the workers send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Create,
    /// getRecord as a viewer who shares the record's boundary.
    Get,
    /// getRecord as a viewer who does not: the answer must look like "not found".
    GetDenied,
    List,
}

impl Op {
    pub const ALL: [Op; 4] = [Op::Create, Op::Get, Op::GetDenied, Op::List];

    pub fn name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Get => "get",
            Op::GetDenied => "get-denied",
            Op::List => "list",
        }
    }

    fn index(self) -> usize {
        match self {
            Op::Create => 0,
            Op::Get => 1,
            Op::GetDenied => 2,
            Op::List => 3,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// The denied viewer got the "not found" answer it must get.
    OkDenied,
    /// Anything else; `xrpc` is the XRPC error name when the body had one.
    Unexpected {
        xrpc: Option<String>,
    },
}

/// The name of a record-level error the reference returns for a missing or unreadable record.
const RECORD_NOT_FOUND: &str = "RecordNotFound";
/// Shown in the error tables when a denied viewer was given the record.
pub const LEAK: &str = "(boundary leak: denied viewer got the record)";

/// Decides what an HTTP answer to `op` means.
pub fn classify(op: Op, status: u16, body: &[u8]) -> Outcome {
    let success = (200..300).contains(&status);
    match op {
        Op::GetDenied if success => Outcome::Unexpected {
            xrpc: Some(LEAK.to_owned()),
        },
        Op::GetDenied => {
            let name = xrpc_error(body);
            if matches!(status, 400 | 404) && name.as_deref() == Some(RECORD_NOT_FOUND) {
                Outcome::OkDenied
            } else {
                Outcome::Unexpected { xrpc: name }
            }
        }
        _ if success => Outcome::Ok,
        _ => Outcome::Unexpected {
            xrpc: xrpc_error(body),
        },
    }
}

/// The `error` field of an XRPC error body, if the body is one.
pub fn xrpc_error(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.get("error")?.as_str().map(str::to_owned)
}

/// A short, printable excerpt of a response body.
pub fn excerpt(body: &[u8]) -> String {
    const MAX: usize = 300;
    let text = String::from_utf8_lossy(body);
    let mut out: String = text.chars().take(MAX).collect();
    if text.chars().count() > MAX {
        out.push('…');
    }
    out
}

#[derive(Debug, Clone, Default)]
pub struct OpStats {
    /// Latency of every request that got an HTTP answer, whatever its status.
    pub latency: Histogram,
    pub ok: u64,
    pub ok_denied: u64,
    pub unexpected: u64,
}

impl OpStats {
    pub fn requests(&self) -> u64 {
        self.ok + self.ok_denied + self.unexpected
    }

    fn merge(&mut self, other: &OpStats) {
        self.latency.merge(&other.latency);
        self.ok += other.ok;
        self.ok_denied += other.ok_denied;
        self.unexpected += other.unexpected;
    }
}

/// A server answering with arbitrary error names must not grow the tables without bound.
const MAX_DISTINCT_KEYS: usize = 64;
const OTHER_KEY: &str = "(other)";

#[derive(Debug, Clone, Default)]
pub struct Stats {
    ops: [OpStats; 4],
    /// Unexpected failures by HTTP status, or `transport` / `timeout`.
    pub by_status: BTreeMap<String, u64>,
    /// Unexpected failures by XRPC error name.
    pub by_xrpc: BTreeMap<String, u64>,
    /// The first unexpected failure, for diagnosis.
    pub first_error: Option<String>,
}

impl Stats {
    pub fn op(&self, op: Op) -> &OpStats {
        &self.ops[op.index()]
    }

    pub fn total(&self) -> OpStats {
        let mut t = OpStats::default();
        for s in &self.ops {
            t.merge(s);
        }
        t
    }

    pub fn record(&mut self, op: Op, result: &Result<Answer, Failure>, micros: u64) {
        let stats = &mut self.ops[op.index()];
        let (status_key, xrpc, detail) = match result {
            Ok(answer) => {
                stats.latency.record(micros);
                match classify(op, answer.status, &answer.body) {
                    Outcome::Ok => {
                        stats.ok += 1;
                        return;
                    }
                    Outcome::OkDenied => {
                        stats.ok_denied += 1;
                        return;
                    }
                    Outcome::Unexpected { xrpc } => (
                        answer.status.to_string(),
                        xrpc,
                        format!("HTTP {}: {}", answer.status, excerpt(&answer.body)),
                    ),
                }
            }
            Err(Failure::Transport(e)) => ("transport".to_owned(), None, e.clone()),
            Err(Failure::Timeout) => ("timeout".to_owned(), None, "no answer in time".into()),
        };
        stats.unexpected += 1;
        bump(&mut self.by_status, status_key);
        if let Some(name) = xrpc {
            bump(&mut self.by_xrpc, name);
        }
        if self.first_error.is_none() {
            self.first_error = Some(format!("{}: {detail}", op.name()));
        }
    }

    pub fn merge(&mut self, other: Stats) {
        for (a, b) in self.ops.iter_mut().zip(&other.ops) {
            a.merge(b);
        }
        for (k, n) in other.by_status {
            add(&mut self.by_status, k, n);
        }
        for (k, n) in other.by_xrpc {
            add(&mut self.by_xrpc, k, n);
        }
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

fn bump(map: &mut BTreeMap<String, u64>, key: String) {
    add(map, key, 1);
}

fn add(map: &mut BTreeMap<String, u64>, key: String, n: u64) {
    let key = if map.len() >= MAX_DISTINCT_KEYS && !map.contains_key(&key) {
        OTHER_KEY.to_owned()
    } else {
        key
    };
    *map.entry(key).or_insert(0) += n;
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::body::Bytes;

    fn answer(status: u16, body: &str) -> Result<Answer, Failure> {
        Ok(Answer {
            status,
            body: Bytes::copy_from_slice(body.as_bytes()),
        })
    }

    #[test]
    fn classification() {
        let not_found = br#"{"error":"RecordNotFound","message":"x"}"#;
        assert_eq!(classify(Op::Get, 200, b"{}"), Outcome::Ok);
        assert_eq!(classify(Op::Create, 200, b"{}"), Outcome::Ok);
        assert_eq!(classify(Op::GetDenied, 400, not_found), Outcome::OkDenied);
        assert_eq!(classify(Op::GetDenied, 404, not_found), Outcome::OkDenied);
        assert_eq!(
            classify(Op::GetDenied, 200, b"{}"),
            Outcome::Unexpected {
                xrpc: Some(LEAK.into())
            }
        );
        assert_eq!(
            classify(Op::GetDenied, 401, br#"{"error":"AuthRequired"}"#),
            Outcome::Unexpected {
                xrpc: Some("AuthRequired".into())
            }
        );
        assert_eq!(
            classify(Op::Get, 400, not_found),
            Outcome::Unexpected {
                xrpc: Some("RecordNotFound".into())
            }
        );
        assert_eq!(
            classify(Op::List, 502, b"<html>bad gateway</html>"),
            Outcome::Unexpected { xrpc: None }
        );
    }

    #[test]
    fn tallies_and_merges() {
        let mut a = Stats::default();
        a.record(Op::Get, &answer(200, "{}"), 1_000);
        a.record(
            Op::GetDenied,
            &answer(400, r#"{"error":"RecordNotFound"}"#),
            2_000,
        );
        a.record(
            Op::Create,
            &answer(503, r#"{"error":"WriteConflict"}"#),
            3_000,
        );
        let mut b = Stats::default();
        b.record(Op::Create, &Err(Failure::Timeout), 0);
        b.record(Op::List, &Err(Failure::Transport("reset".into())), 0);
        b.record(
            Op::Create,
            &answer(503, r#"{"error":"WriteConflict"}"#),
            5_000,
        );
        a.merge(b);
        let total = a.total();
        assert_eq!((total.ok, total.ok_denied, total.unexpected), (1, 1, 4));
        assert_eq!(
            total.latency.count(),
            4,
            "failures without an answer have no latency"
        );
        assert_eq!(a.op(Op::Create).unexpected, 3);
        assert_eq!(a.by_status.get("503"), Some(&2));
        assert_eq!(a.by_status.get("timeout"), Some(&1));
        assert_eq!(a.by_status.get("transport"), Some(&1));
        assert_eq!(a.by_xrpc.get("WriteConflict"), Some(&2));
        assert!(a.first_error.as_deref().unwrap().contains("WriteConflict"));
    }

    #[test]
    fn error_tables_are_bounded() {
        let mut s = Stats::default();
        for i in 0..200 {
            let body = format!(r#"{{"error":"E{i}"}}"#);
            s.record(Op::Get, &answer(400, &body), 10);
        }
        assert_eq!(s.by_xrpc.len(), MAX_DISTINCT_KEYS + 1);
        assert_eq!(s.by_xrpc.values().sum::<u64>(), 200);
    }
}
