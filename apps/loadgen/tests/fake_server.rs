//! Runs the generator against a tiny keep-alive HTTP/1.1 server written here on tokio's
//! `TcpListener`, which plays the Stratos service: enrollment, createRecord with a JSON `uri`,
//! getRecord answering 200 to the viewer and 400 `RecordNotFound` to the stranger.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use stratos_loadgen::args::{Config, Workload};
use stratos_loadgen::stats::{LEAK, Op};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PASSWORD: &str = "pw";
const SERVICE: &str = "did:web:fake";

#[derive(Default)]
struct Fake {
    /// Answer the stranger with the record, as a broken boundary check would.
    leak: AtomicBool,
    enrolls: AtomicU64,
    creates: AtomicU64,
    gets: AtomicU64,
    denied: AtomicU64,
    lists: AtomicU64,
    bad_creates: AtomicU64,
}

struct Request {
    method: String,
    target: String,
    auth: String,
    body: Vec<u8>,
}

async fn start(fake: Arc<Fake>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, Arc::clone(&fake)));
        }
    });
    format!("http://{addr}")
}

async fn serve(mut stream: TcpStream, fake: Arc<Fake>) {
    let mut buf = Vec::new();
    loop {
        let Some(req) = read_request(&mut stream, &mut buf).await else {
            return;
        };
        let (status, body) = answer(&fake, &req);
        let reason = if status == 200 { "OK" } else { "Error" };
        // One write per answer: a head and a body in two small writes would meet Nagle's
        // algorithm and the client's delayed ACK, adding ~40 ms to every request.
        let response = format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Reads one request from the connection; `buf` carries bytes already read past it.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Request> {
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let target = first.next()?.to_owned();
    let (mut auth, mut length) = (String::new(), 0usize);
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "authorization" => auth = v.trim().to_owned(),
                "content-length" => length = v.trim().parse().ok()?,
                _ => {}
            }
        }
    }
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[head_end..head_end + length].to_vec();
    buf.drain(..head_end + length);
    Some(Request {
        method,
        target,
        auth,
        body,
    })
}

fn query_param<'a>(target: &'a str, name: &str) -> Option<&'a str> {
    target
        .split_once('?')?
        .1
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

fn answer(fake: &Fake, req: &Request) -> (u16, String) {
    let path = req.target.split('?').next().unwrap_or_default();
    let caller = req.auth.strip_prefix("Bearer ").unwrap_or_default();
    match (req.method.as_str(), path) {
        ("POST", "/xrpc/zone.stratos.admin.enrollActor") => {
            if caller != PASSWORD {
                return (401, json!({"error": "AuthRequired"}).to_string());
            }
            fake.enrolls.fetch_add(1, Ordering::Relaxed);
            let input: Value = serde_json::from_slice(&req.body).unwrap();
            let boundaries: Vec<String> = input["boundaries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| format!("{SERVICE}/{}", b.as_str().unwrap()))
                .collect();
            (
                200,
                json!({"did": input["did"], "enrolled": true, "boundaries": boundaries})
                    .to_string(),
            )
        }
        ("POST", "/xrpc/com.atproto.repo.createRecord") => {
            let input: Value = serde_json::from_slice(&req.body).unwrap();
            let boundary = &input["record"]["boundary"]["values"][0]["value"];
            if input["repo"] != caller || *boundary != format!("{SERVICE}/general") {
                fake.bad_creates.fetch_add(1, Ordering::Relaxed);
                return (400, json!({"error": "InvalidRecord"}).to_string());
            }
            let n = fake.creates.fetch_add(1, Ordering::Relaxed);
            let uri = format!("at://{caller}/zone.stratos.feed.post/rk{n}");
            (
                200,
                json!({"uri": uri, "cid": "bafyfake", "commit": {"cid": "bafyc", "rev": "r"}})
                    .to_string(),
            )
        }
        ("GET", "/xrpc/com.atproto.repo.getRecord") => {
            assert!(query_param(&req.target, "rkey").unwrap().starts_with("rk"));
            let record = json!({"uri": "at://x", "cid": "bafyfake", "value": {}}).to_string();
            if caller == "did:plc:loadgenviewer" {
                fake.gets.fetch_add(1, Ordering::Relaxed);
                (200, record)
            } else if caller == "did:plc:loadgenstranger" {
                fake.denied.fetch_add(1, Ordering::Relaxed);
                if fake.leak.load(Ordering::Relaxed) {
                    (200, record)
                } else {
                    (
                        400,
                        json!({"error": "RecordNotFound", "message": "Could not locate record"})
                            .to_string(),
                    )
                }
            } else {
                (401, json!({"error": "AuthRequired"}).to_string())
            }
        }
        ("GET", "/xrpc/com.atproto.repo.listRecords") => {
            assert_eq!(query_param(&req.target, "limit"), Some("50"));
            fake.lists.fetch_add(1, Ordering::Relaxed);
            (200, json!({"records": []}).to_string())
        }
        _ => (501, json!({"error": "MethodNotImplemented"}).to_string()),
    }
}

fn config(base: String, workload: Workload) -> Config {
    Config {
        base,
        workload,
        actors: 4,
        concurrency: 4,
        duration: Duration::from_millis(1000),
        warmup: Duration::from_millis(200),
        admin_password: Some(PASSWORD.into()),
        seed: 3,
        quiet: true,
        ..Config::default()
    }
}

#[tokio::test]
async fn get_workload_counts_denied_reads_as_ok_denied() {
    let fake = Arc::new(Fake::default());
    let base = start(Arc::clone(&fake)).await;
    let report = stratos_loadgen::run(&config(base, Workload::Get))
        .await
        .unwrap();

    assert_eq!(
        report.setup.enrolled, 6,
        "4 actors, the viewer, the stranger"
    );
    assert_eq!(fake.enrolls.load(Ordering::Relaxed), 6);
    assert_eq!(report.setup.seeded, 12);
    assert_eq!(fake.creates.load(Ordering::Relaxed), 12);
    assert_eq!(fake.bad_creates.load(Ordering::Relaxed), 0);
    assert_eq!(report.setup.record_boundary, "did:web:fake/general");

    let get = report.stats.op(Op::Get);
    let denied = report.stats.op(Op::GetDenied);
    assert!(get.ok > 50, "too few gets: {}", get.ok);
    assert!(
        denied.ok_denied > 50,
        "too few denied gets: {}",
        denied.ok_denied
    );
    assert_eq!((get.ok_denied, get.unexpected), (0, 0));
    assert_eq!((denied.ok, denied.unexpected), (0, 0));
    // The warm-up and the requests in flight at the end reached the server but are not counted.
    assert!(fake.gets.load(Ordering::Relaxed) >= get.ok);
    assert!(fake.denied.load(Ordering::Relaxed) >= denied.ok_denied);
    assert!(report.warmup_requests > 0);
    assert_eq!(report.stats.op(Op::Create).requests(), 0);
    assert_eq!(get.latency.count(), get.ok);
    assert!(get.latency.percentile(99.0) > 0);

    // Roughly half the gets are made as the stranger.
    let share = denied.requests() as f64 / (get.requests() + denied.requests()) as f64;
    assert!((0.35..0.65).contains(&share), "denied share {share}");
    assert!(report.passed());
    assert!(report.stats.by_status.is_empty());
    let j = report.json();
    assert_eq!(j["ops"]["get-denied"]["okDenied"], denied.ok_denied);
    assert!(report.text().contains("PASS"));
}

#[tokio::test]
async fn mixed_workload_sends_every_kind() {
    let fake = Arc::new(Fake::default());
    let base = start(Arc::clone(&fake)).await;
    // The "service" is this process: its CPU in the window is measured through --pid.
    let cfg = Config {
        pid: Some(std::process::id()),
        ..config(base, Workload::Mixed)
    };
    let report = stratos_loadgen::run(&cfg).await.unwrap();
    assert!(report.cpu.server.is_some() && report.cpu.loadgen.is_some());
    assert!(report.json()["cpu"]["serverUsPerRequest"].is_number());
    let (create, get, list) = (
        report.stats.op(Op::Create),
        report.stats.op(Op::Get),
        report.stats.op(Op::List),
    );
    assert!(create.ok > 0 && get.ok > 0 && list.ok > 0);
    // The mixed workload reads as the sharing viewer only.
    assert_eq!(report.stats.op(Op::GetDenied).requests(), 0);
    assert_eq!(report.total().unexpected, 0);
    assert!(fake.creates.load(Ordering::Relaxed) >= 12 + create.ok);
    assert!(fake.lists.load(Ordering::Relaxed) >= list.ok);
    assert_eq!(fake.bad_creates.load(Ordering::Relaxed), 0);
    // 10 / 70 / 20 by default: gets dominate.
    assert!(get.ok > create.ok && get.ok > list.ok);
    assert!(report.passed());
}

#[tokio::test]
async fn a_leaked_record_fails_the_run() {
    let fake = Arc::new(Fake::default());
    fake.leak.store(true, Ordering::Relaxed);
    let base = start(Arc::clone(&fake)).await;
    let cfg = Config {
        duration: Duration::from_millis(300),
        warmup: Duration::ZERO,
        ..config(base, Workload::Get)
    };
    let report = stratos_loadgen::run(&cfg).await.unwrap();
    let denied = report.stats.op(Op::GetDenied);
    assert!(denied.unexpected > 0);
    assert_eq!(denied.ok_denied, 0);
    assert_eq!(report.stats.by_xrpc.get(LEAK), Some(&denied.unexpected));
    assert_eq!(report.stats.by_status.get("200"), Some(&denied.unexpected));
    assert!(!report.passed());
    assert_eq!(report.json()["passed"], false);
}

#[tokio::test]
async fn setup_errors_stop_the_run() {
    let fake = Arc::new(Fake::default());
    let base = start(fake).await;
    let cfg = Config {
        admin_password: Some("wrong".into()),
        ..config(base, Workload::Create)
    };
    let err = stratos_loadgen::run(&cfg).await.unwrap_err().to_string();
    assert!(err.contains("AuthRequired"), "{err}");

    // Nothing listening: the port of a listener that was just closed.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let cfg = config(format!("http://{addr}"), Workload::Create);
    assert!(stratos_loadgen::run(&cfg).await.is_err());
}
