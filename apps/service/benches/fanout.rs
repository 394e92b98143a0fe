//! Fan-out benchmark of `zone.stratos.sync.subscribeRecords` (docs/performance.md).
//!
//! Part 1, in process (so the stream's storage-read counter can be read): the service on SQLite
//! (relaxed) with 100 enrolled accounts, one per-account subscriber each plus one service-level
//! subscriber, while 50 writers create records over HTTP as fast as they can. Reports storage
//! queries the stream made per subscriber per live event (must be 0), create→deliver latency
//! (from the moment the create request is sent until the subscriber decoded the frame: p50,
//! p99, max) and delivered events per second.
//!
//! Part 2, the `stratos` binary as a child process: RSS before and after 1,000 idle
//! subscribers (10 on each of the 100 accounts).
//!
//! `cargo bench -p stratos-service --bench fanout` (FANOUT_SECS, FANOUT_IDLE override the
//! duration and the idle count).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // bench code

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

const ADMIN: &str = "bench-admin";
const SYNC: &str = "bench-sync";
const POST: &str = "zone.stratos.feed.post";
const ACTORS: usize = 100;
const WRITERS: usize = 50;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn vars(dir: &std::path::Path, port: u16) -> Vec<(String, String)> {
    [
        ("STRATOS_DATA_DIR", dir.to_string_lossy().as_ref()),
        ("STRATOS_PORT", port.to_string().as_str()),
        ("STRATOS_SERVICE_DID", "did:web:nerv.tokyo.jp"),
        ("STRATOS_PUBLIC_URL", "https://nerv.tokyo.jp"),
        ("STRATOS_ALLOWED_DOMAINS", "general"),
        ("STRATOS_ADMIN_PASSWORD", ADMIN),
        ("STRATOS_DEV_MODE", "true"),
        ("STRATOS_SQLITE_DURABILITY", "relaxed"),
        ("STRATOS_SYNC_TOKEN", SYNC),
        ("STRATOS_WRITE_RATE_MAX_WRITES", "1000000"),
        ("LOG_LEVEL", "error"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect()
}

fn actor(i: usize) -> String {
    format!("did:plc:fan{i:04}")
}

async fn enroll_all(http: &reqwest::Client, base: &str) {
    for i in 0..ACTORS {
        let res = http
            .post(format!("{base}/xrpc/zone.stratos.admin.enrollActor"))
            .header("authorization", format!("Bearer {ADMIN}"))
            .json(&json!({ "did": actor(i), "boundaries": ["general"] }))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{}", res.text().await.unwrap());
    }
}

fn ws_url(base: &str, query: &str) -> String {
    format!(
        "{}/xrpc/zone.stratos.sync.subscribeRecords?{query}",
        base.replacen("http", "ws", 1)
    )
}

/// The text of every op's record in a `#commit` frame: good enough to find our timestamps
/// without a CBOR decoder (the text is a tagged ASCII marker).
fn stamps(frame: &[u8]) -> Vec<u64> {
    let mut out = Vec::new();
    let needle = b"ts=";
    let mut i = 0;
    while i + needle.len() < frame.len() {
        if &frame[i..i + needle.len()] == needle {
            let digits: Vec<u8> = frame[i + needle.len()..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .copied()
                .collect();
            if let Ok(n) = std::str::from_utf8(&digits).unwrap_or("").parse() {
                out.push(n);
            }
            i += needle.len() + digits.len();
        } else {
            i += 1;
        }
    }
    out
}

/// The event's `time` (RFC 3339, UTC, set by the service when it starts the write) as unix
/// milliseconds: the value of the CBOR text key `time` in the frame body.
fn event_time_ms(frame: &[u8]) -> Option<i64> {
    let key = b"\x64time";
    let at = frame.windows(key.len()).position(|w| w == key)? + key.len();
    let (len, start) = match *frame.get(at)? {
        h @ 0x60..=0x77 => (usize::from(h - 0x60), at + 1),
        0x78 => (usize::from(*frame.get(at + 1)?), at + 2),
        _ => return None,
    };
    let text = std::str::from_utf8(frame.get(start..start + len)?).ok()?;
    rfc3339_ms(text)
}

/// `YYYY-MM-DDTHH:MM:SS[.fff]Z` → unix milliseconds.
fn rfc3339_ms(t: &str) -> Option<i64> {
    let n = |r: std::ops::Range<usize>| t.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (hh, mm, ss) = (n(11..13)?, n(14..16)?, n(17..19)?);
    let ms = match t.get(19..20) {
        Some(".") => {
            let frac: String = t[20..].chars().take_while(char::is_ascii_digit).collect();
            format!("{frac:0<3}").get(0..3)?.parse::<i64>().ok()?
        }
        _ => 0,
    };
    // Days from the civil date (proleptic Gregorian), as in Howard Hinnant's algorithm.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + hh) * 60 + mm) * 60_000 + ss * 1000 + ms)
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

async fn fan_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = stratos_service::config::Config::from_pairs(vars(dir.path(), 3100)).unwrap();
    config.port = 0;
    let server = stratos_service::start(config, 2).await.unwrap();
    let base = server.url();
    let http = stratos_testkit::http_client();
    enroll_all(&http, &base).await;

    let epoch = Instant::now();
    let live = Arc::new(AtomicBool::new(false));
    let delivered = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::<u64>::new()));
    let server_latencies = Arc::new(std::sync::Mutex::new(Vec::<u64>::new()));
    let mut subs = Vec::new();
    for i in 0..ACTORS {
        let (mut ws, _) = tokio_tungstenite::connect_async(ws_url(
            &base,
            &format!("did={}&syncToken={SYNC}", actor(i)),
        ))
        .await
        .unwrap();
        let (delivered, latencies, live) = (delivered.clone(), latencies.clone(), live.clone());
        let server_latencies = server_latencies.clone();
        subs.push(tokio::spawn(async move {
            while let Some(Ok(msg)) = ws.next().await {
                if let Message::Binary(frame) = msg {
                    let now = epoch.elapsed().as_micros() as u64;
                    if live.load(Ordering::Relaxed) {
                        delivered.fetch_add(1, Ordering::Relaxed);
                        let mut l = latencies.lock().unwrap();
                        for ts in stamps(&frame) {
                            l.push(now.saturating_sub(ts));
                        }
                        if let Some(t) = event_time_ms(&frame) {
                            let waited = u64::try_from(unix_ms() - t).unwrap_or(0);
                            server_latencies.lock().unwrap().push(waited * 1000);
                        }
                    }
                }
            }
        }));
    }
    let service_frames = Arc::new(AtomicU64::new(0));
    {
        let (mut ws, _) =
            tokio_tungstenite::connect_async(ws_url(&base, &format!("syncToken={SYNC}")))
                .await
                .unwrap();
        let frames = service_frames.clone();
        subs.push(tokio::spawn(async move {
            while let Some(Ok(msg)) = ws.next().await {
                if matches!(msg, Message::Binary(_)) {
                    frames.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    // Every subscriber has replayed (nothing to replay yet but the enrollments) and is live.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.stream_stats();
    assert_eq!(before.subscribers, ACTORS + 1, "{before:?}");
    live.store(true, Ordering::Relaxed);

    let secs = env("FANOUT_SECS", 10);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let created = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (http, base, created) = (http.clone(), base.clone(), created.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0usize;
            while Instant::now() < deadline {
                let did = actor(w + WRITERS * (n % 2));
                n += 1;
                let ts = epoch.elapsed().as_micros() as u64;
                let res = http
                    .post(format!("{base}/xrpc/com.atproto.repo.createRecord"))
                    .header("authorization", format!("Bearer {did}"))
                    .json(&json!({ "repo": did, "collection": POST, "record": {
                        "$type": POST, "text": format!("ts={ts}"),
                        "boundary": { "$type": "zone.stratos.boundary.defs#Domains",
                                      "values": [{ "value": "did:web:nerv.tokyo.jp/general" }] },
                        "createdAt": "2026-11-25T09:00:00.000Z" } }))
                    .send()
                    .await
                    .unwrap();
                assert!(res.status().is_success());
                created.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let started = Instant::now();
    for w in writers {
        w.await.unwrap();
    }
    let write_secs = started.elapsed().as_secs_f64();
    let created = created.load(Ordering::Relaxed);
    // Let the last frames arrive.
    let wait = Instant::now();
    while delivered.load(Ordering::Relaxed) < created && wait.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let after = server.stream_stats();
    let delivered = delivered.load(Ordering::Relaxed);
    let mut lat = latencies.lock().unwrap().clone();
    lat.sort_unstable();
    let mut server_lat = server_latencies.lock().unwrap().clone();
    server_lat.sort_unstable();
    let live_queries = after.live_queries - before.live_queries;
    let all_queries = after.store_queries - before.store_queries;
    println!(
        "fan-out: {ACTORS} per-account subscribers + 1 service-level, {WRITERS} writers, {secs} s"
    );
    println!(
        "  records created            {created} ({:.0}/s)",
        created as f64 / write_secs
    );
    println!(
        "  #commit frames delivered   {delivered} ({:.0}/s, {} missing)",
        delivered as f64 / elapsed,
        created.saturating_sub(delivered)
    );
    println!(
        "  frames sent by the server  {}",
        after.frames_sent - before.frames_sent
    );
    println!(
        "  stream storage queries     {all_queries} during the live phase ({live_queries} by live subscribers) = {:.4} per subscriber per live event",
        live_queries as f64 / (delivered.max(1) as f64)
    );
    println!(
        "  create->deliver latency    p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} samples)",
        percentile(&lat, 0.50) as f64 / 1000.0,
        percentile(&lat, 0.99) as f64 / 1000.0,
        lat.last().copied().unwrap_or(0) as f64 / 1000.0,
        lat.len()
    );
    println!(
        "  write start->deliver       p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms ({} samples; from the event's `time`, ms precision)",
        percentile(&server_lat, 0.50) as f64 / 1000.0,
        percentile(&server_lat, 0.99) as f64 / 1000.0,
        server_lat.last().copied().unwrap_or(0) as f64 / 1000.0,
        server_lat.len()
    );
    println!(
        "  commit->socket (server)    p50 {} ms, p99 {} ms (from the committed event reaching the hub to its frame handed to the subscriber's socket; 1 ms buckets)",
        after.delivery_p50_ms.unwrap_or(0),
        after.delivery_p99_ms.unwrap_or(0)
    );
    println!(
        "  catch-ups {}, slow disconnects {}",
        after.catch_ups, after.slow_disconnects
    );
    assert_eq!(live_queries, 0, "live delivery must not read storage");
    assert_eq!(
        delivered, created,
        "every created record was delivered once"
    );
    server.stop().await.unwrap();
    for s in subs {
        s.abort();
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

async fn idle_rss() {
    let idle = env("FANOUT_IDLE", 1000) as usize;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_stratos"))
        .env_clear()
        // Away from any `.env` of the checkout, which the service would read.
        .current_dir(dir.path())
        .envs(vars(dir.path(), port))
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = stratos_testkit::http_client();
    for _ in 0..100 {
        if http.get(format!("{base}/health")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    enroll_all(&http, &base).await;
    // One subscriber per account first, so the per-account stores are open in both readings.
    let mut sockets = Vec::new();
    for i in 0..ACTORS {
        let (ws, _) = tokio_tungstenite::connect_async(ws_url(
            &base,
            &format!("did={}&syncToken={SYNC}", actor(i)),
        ))
        .await
        .unwrap();
        sockets.push(ws);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss_kib(child.id());
    let mut idle_sockets = Vec::new();
    for i in 0..idle {
        let (ws, _) = tokio_tungstenite::connect_async(ws_url(
            &base,
            &format!("did={}&syncToken={SYNC}", actor(i % ACTORS)),
        ))
        .await
        .unwrap();
        idle_sockets.push(ws);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(child.id());
    println!(
        "idle: RSS of the stratos process {:.1} MiB with {ACTORS} subscribers, {:.1} MiB with {} more idle ones: +{:.1} MiB ({:.1} KiB each)",
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        idle,
        (after.saturating_sub(before)) as f64 / 1024.0,
        after.saturating_sub(before) as f64 / idle.max(1) as f64
    );
    drop(idle_sockets);
    drop(sockets);
    let _ = child.kill();
    let _ = child.wait();
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: run only when benching.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(fan_out());
    rt.block_on(idle_rss());
}
