#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! What an operator watches, over real HTTP against the `stratos` binary: `/metrics` (scraped
//! and parsed), the access log with trace ids and callers (JSON and text), `RUST_LOG`
//! filtering, secrets kept out of the logs, liveness and readiness (with Valkey when the
//! machine has one).

use std::collections::HashMap;
use std::io::Read as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_stratos");
const ADMIN: &str = "observability-admin-password";
const SYNC: &str = "observability-sync-token";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The binary on a free port, its stdout and stderr into files (read after it stops).
struct Service {
    child: Child,
    base: String,
    log: std::path::PathBuf,
}

impl Service {
    fn start(dir: &Path, env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let log = dir.join(format!("log-{port}.txt"));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(BIN)
            .env_clear()
            .env("STRATOS_DATA_DIR", dir.join("data"))
            .env("STRATOS_PORT", port.to_string())
            .env("STRATOS_SERVICE_DID", "did:web:stratos.example")
            .env("STRATOS_PUBLIC_URL", "https://stratos.example")
            .env("STRATOS_ALLOWED_DOMAINS", "general")
            .env("STRATOS_DEV_MODE", "true")
            .env("STRATOS_ADMIN_PASSWORD", ADMIN)
            .env("STRATOS_SYNC_TOKEN", SYNC)
            .env("STRATOS_SQLITE_DURABILITY", "relaxed")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the service did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, base, log }
    }

    /// Stops the service and returns everything it logged.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut text = String::new();
        std::fs::File::open(&self.log)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        text
    }
}

/// `name{labels} value` lines of the text format, keyed by `name{labels}`; every line must be
/// a comment or such a sample with a number.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# ") {
            assert!(
                rest.starts_with("HELP ") || rest.starts_with("TYPE "),
                "{line}"
            );
            continue;
        }
        let (key, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not a number: {line}"));
        assert!(out.insert(key.to_owned(), value).is_none(), "twice: {key}");
    }
    out
}

async fn traffic(base: &str) {
    let http = stratos_testkit::http_client();
    // An account through the admin API, a post with dev-mode auth, reads with a trace id.
    let did = "did:plc:observabilitytest000000";
    let res = http
        .post(format!("{base}/xrpc/zone.stratos.admin.enrollActor"))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({ "did": did, "boundaries": ["general"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{:?}", res.text().await);
    let res = http
        .post(format!("{base}/xrpc/com.atproto.repo.createRecord"))
        .bearer_auth(did)
        .header("x-trace-id", "trace-create-1")
        .json(&serde_json::json!({
            "repo": did,
            "collection": "zone.stratos.feed.post",
            "record": {
                "$type": "zone.stratos.feed.post",
                "text": "observed",
                "boundary": { "$type": "zone.stratos.boundary.defs#Domains",
                              "values": [{ "value": "did:web:stratos.example/general" }] },
                "createdAt": "2026-12-07T00:00:00.000Z"
            }
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{:?}", res.text().await);
    assert_eq!(res.headers()["x-trace-id"], "trace-create-1");
    // A secret in a query string (the stream's token) and one in a header must never be logged.
    let _ = http
        .get(format!(
            "{base}/xrpc/com.atproto.sync.listRepos?syncToken={SYNC}"
        ))
        .header("x-trace-id", "trace-secret-1")
        .send()
        .await
        .unwrap();
    for _ in 0..3 {
        let res = http
            .get(format!(
                "{base}/xrpc/com.atproto.repo.listRecords?repo={did}&collection=zone.stratos.feed.post"
            ))
            .header("x-trace-id", "trace-list-1")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    let res = http
        .get(format!("{base}/xrpc/com.example.nothing"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 501);
    // A percent-encoded spelling of a real method: whether the router takes it for the method
    // or not, the spelling never becomes a label (checked below).
    let res = http
        .get(format!(
            "{base}/xrpc/com.atproto.repo.describeRep%6F?repo={did}"
        ))
        .send()
        .await
        .unwrap();
    assert!(
        [200, 400, 501].contains(&res.status().as_u16()),
        "{}",
        res.status()
    );
    let res = http
        .get(format!("{base}/no/such/path"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_access_log_json_and_readiness() {
    let dir = tempfile::tempdir().unwrap();
    let valkey = std::env::var("STRATOS_TEST_VALKEY_URL").ok();
    let mut env = vec![("RUST_LOG", "info"), ("STRATOS_LOG_FORMAT", "json")];
    if let Some(url) = &valkey {
        env.push(("STRATOS_VALKEY_URL", url.as_str()));
    }
    let service = Service::start(dir.path(), &env);
    let base = service.base.clone();
    traffic(&base).await;

    // Liveness and readiness.
    let live = stratos_testkit::http_client()
        .get(format!("{base}/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    let ready: Value = stratos_testkit::http_client()
        .get(format!("{base}/ready"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ok", "{ready}");
    assert_eq!(ready["components"]["db"], "ok");
    assert_eq!(ready["components"]["blobstore"], "ok");
    if valkey.is_some() {
        assert_eq!(ready["components"]["valkey"], "ok", "{ready}");
    } else {
        assert!(ready["components"].get("valkey").is_none());
    }

    // /metrics parses, and counts what was done.
    let res = stratos_testkit::http_client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let m = parse_metrics(&res.text().await.unwrap());
    let get = |k: &str| *m.get(k).unwrap_or_else(|| panic!("no sample {k}"));
    assert_eq!(get("stratos_build_info{version=\"0.1.0\"}"), 1.0);
    assert_eq!(
        get("stratos_http_requests_total{method=\"com.atproto.repo.listRecords\",status=\"200\"}"),
        3.0
    );
    assert_eq!(
        get("stratos_http_requests_total{method=\"com.atproto.repo.createRecord\",status=\"200\"}"),
        1.0
    );
    assert_eq!(
        get("stratos_http_requests_total{method=\"unmatched\",status=\"404\"}"),
        1.0
    );
    // The unknown XRPC method and the path the caller chose never become label values.
    assert!(
        !m.keys()
            .any(|k| k.contains("com.example") || k.contains("no/such") || k.contains('%'))
    );
    let labels = "method=\"com.atproto.repo.listRecords\",status=\"200\"";
    assert_eq!(
        get(&format!(
            "stratos_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}}"
        )),
        3.0
    );
    assert_eq!(
        get(&format!(
            "stratos_http_request_duration_seconds_count{{{labels}}}"
        )),
        3.0
    );
    let mut last = 0.0;
    for key in m.keys().filter(|k| {
        k.starts_with("stratos_http_request_duration_seconds_bucket{") && k.contains(labels)
    }) {
        assert!(get(key) <= 3.0, "{key}");
        last = f64::max(last, get(key));
    }
    assert_eq!(last, 3.0);
    assert_eq!(get("stratos_stream_commits_published_total"), 1.0);
    assert!(m.contains_key("stratos_outbox_pending"));
    assert_eq!(get("stratos_outbox_dead_letters"), 0.0);
    assert!(m.contains_key("stratos_stream_subscribers"));
    // Two commits reached the storage: the enrollment's empty one and the post.
    assert_eq!(get("stratos_storage_commit_duration_seconds_count"), 2.0);
    assert_eq!(
        get("stratos_storage_commit_duration_seconds_bucket{le=\"+Inf\"}"),
        2.0
    );
    assert!(get("stratos_storage_commit_duration_seconds_sum") > 0.0);
    assert_eq!(get("stratos_storage_commit_failures_total"), 0.0);
    assert!(m.contains_key("stratos_storage_block_reads_total"));
    assert!(get("stratos_uptime_seconds") > 0.0);
    // SQLite's pools: the service database's one connection, the account databases held open
    // (the one account's), neither busy between requests.
    assert_eq!(
        get("stratos_storage_pool_max_connections{pool=\"service\"}"),
        1.0
    );
    assert_eq!(
        get("stratos_storage_pool_max_connections{pool=\"actors\"}"),
        512.0
    );
    assert_eq!(
        get("stratos_storage_pool_connections{pool=\"actors\",state=\"idle\"}"),
        1.0
    );
    assert_eq!(
        get("stratos_storage_pool_connections{pool=\"actors\",state=\"busy\"}"),
        0.0
    );
    assert_eq!(
        get("stratos_storage_pool_connections{pool=\"service\",state=\"busy\"}"),
        0.0
    );
    // The block cache: what it passed on is exactly what the storage counted as read.
    assert!(get("stratos_block_cache_capacity_blocks") > 0.0);
    assert!(get("stratos_block_cache_blocks") > 0.0);
    assert!(get("stratos_block_cache_hits_total") > 0.0);
    assert_eq!(
        get("stratos_block_cache_misses_total"),
        get("stratos_storage_blocks_read_total")
    );

    let logs = service.stop();
    // Every line is JSON; the access lines carry the trace id, method, status and caller.
    let lines: Vec<Value> = logs
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let access: Vec<&Value> = lines
        .iter()
        .filter(|l| l["target"] == "stratos::access")
        .collect();
    let create = access
        .iter()
        .find(|l| l["span"]["trace_id"] == "trace-create-1")
        .unwrap_or_else(|| panic!("no access line for the create: {logs}"));
    assert_eq!(create["xrpc"], "com.atproto.repo.createRecord");
    assert_eq!(create["status"], 200);
    assert_eq!(create["method"], "POST");
    assert_eq!(create["caller"], "did:plc:observabilitytest000000");
    assert!(create["ms"].as_f64().unwrap() >= 0.0);
    let enroll = access
        .iter()
        .find(|l| l["xrpc"] == "zone.stratos.admin.enrollActor")
        .unwrap();
    assert_eq!(enroll["caller"], "admin");
    assert_eq!(
        access
            .iter()
            .filter(|l| l["span"]["trace_id"] == "trace-list-1")
            .count(),
        3
    );
    let secret = access
        .iter()
        .find(|l| l["span"]["trace_id"] == "trace-secret-1")
        .unwrap();
    assert_eq!(secret["path"], "/xrpc/com.atproto.sync.listRepos");
    for s in [SYNC, ADMIN] {
        assert!(!logs.contains(s), "a secret reached the log: {s}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_log_filters_and_text_lines_name_the_trace_id() {
    let dir = tempfile::tempdir().unwrap();
    // Access lines on, everything else at warn: the start-up's info lines disappear.
    let service = Service::start(
        dir.path(),
        &[
            ("RUST_LOG", "warn,stratos::access=info"),
            ("STRATOS_LOG_FORMAT", "text"),
        ],
    );
    let res = stratos_testkit::http_client()
        .get(format!("{}/live", service.base))
        .header("x-trace-id", "text-trace-7")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let logs = service.stop();
    let line = logs
        .lines()
        .find(|l| l.contains("stratos::access"))
        .unwrap_or_else(|| panic!("no access line: {logs}"));
    assert!(line.contains("trace_id=text-trace-7"), "{line}");
    assert!(line.contains("status=200"), "{line}");
    assert!(
        !logs.contains("effective configuration"),
        "an info line passed a warn filter: {logs}"
    );

    // A filter that does not parse stops the start with the variable named.
    let out = Command::new(BIN)
        .env_clear()
        .env("STRATOS_DATA_DIR", dir.path().join("data2"))
        .env("STRATOS_PORT", free_port().to_string())
        .env("RUST_LOG", "info,[=bad")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("RUST_LOG"));
}

/// `STRATOS_METRICS_PORT`: `/metrics` moves to a port of its own (on `STRATOS_METRICS_BIND`),
/// the service's port answers 404 for it, and the metrics port serves nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_on_a_port_of_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let metrics_port = free_port().to_string();
    let service = Service::start(
        dir.path(),
        &[
            ("STRATOS_METRICS_PORT", metrics_port.as_str()),
            ("STRATOS_METRICS_BIND", "127.0.0.1"),
        ],
    );
    let metrics = format!("http://127.0.0.1:{metrics_port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", metrics_port.parse::<u16>().unwrap())).is_err()
    {
        assert!(Instant::now() < deadline, "the metrics port did not open");
        std::thread::sleep(Duration::from_millis(50));
    }
    let http = stratos_testkit::http_client();
    let get = |url: String| http.get(url).send();
    let res = get(format!("{metrics}/metrics")).await.unwrap();
    assert_eq!(res.status(), 200);
    let m = parse_metrics(&res.text().await.unwrap());
    assert_eq!(m.get("stratos_build_info{version=\"0.1.0\"}"), Some(&1.0));
    assert_eq!(
        get(format!("{}/metrics", service.base))
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(get(format!("{metrics}/live")).await.unwrap().status(), 404);
    assert_eq!(
        get(format!("{}/live", service.base))
            .await
            .unwrap()
            .status(),
        200
    );
    drop(service.stop());

    // The service's own port is refused as the metrics port.
    let port = free_port().to_string();
    let out = Command::new(BIN)
        .env_clear()
        .env("STRATOS_DATA_DIR", dir.path().join("data3"))
        .env("STRATOS_PORT", &port)
        .env("STRATOS_METRICS_PORT", &port)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("STRATOS_METRICS_PORT"));
}

/// Outbound requests name the service (`STRATOS_REPO_URL`, `STRATOS_OPERATOR_CONTACT`), and a
/// failed allow-list fetch is logged and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_requests_carry_the_user_agent_and_allow_list_failures_show() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let list_url = format!("http://{}/allow.txt", listener.local_addr().unwrap());
    let seen = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = socket.read(&mut buf).await.unwrap();
            assert!(n > 0, "the request ended early");
            head.extend_from_slice(&buf[..n]);
        }
        socket
            .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        String::from_utf8_lossy(&head).into_owned()
    });
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(
        dir.path(),
        &[
            ("STRATOS_ALLOW_LIST_URI", list_url.as_str()),
            ("STRATOS_REPO_URL", "https://code.example/stratos"),
            ("STRATOS_OPERATOR_CONTACT", "ops@example.com"),
            ("STRATOS_LOG_FORMAT", "text"),
        ],
    );
    let head = tokio::time::timeout(Duration::from_secs(30), seen)
        .await
        .unwrap()
        .unwrap()
        .to_ascii_lowercase();
    let expected = format!(
        "user-agent: stratos/{} (+https://code.example/stratos; ops@example.com)",
        env!("CARGO_PKG_VERSION")
    );
    assert!(head.contains(&expected), "{head}");
    let m = parse_metrics(
        &stratos_testkit::http_client()
            .get(format!("{}/metrics", service.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(m["stratos_allow_list_refresh_failures_total"], 1.0);
    assert_eq!(m["stratos_allow_list_dids"], 0.0);
    let logs = service.stop();
    assert!(
        logs.contains("external allow-list: the first fetch failed"),
        "{logs}"
    );
}

/// The service on PostgreSQL and Valkey over TLS (the TLS-only servers of `scripts/tls-servers`,
/// certificates of a private CA): it starts, writes, and reports both ready. Skipped without
/// those servers — except under `CI=true`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_and_valkey_over_tls() {
    let (Ok(pg), Ok(valkey), Ok(ca)) = (
        std::env::var("STRATOS_TEST_POSTGRES_TLS_URL"),
        std::env::var("STRATOS_TEST_VALKEY_TLS_URL"),
        std::env::var("STRATOS_TEST_VALKEY_TLS_CA"),
    ) else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "no TLS servers in CI (scripts/tls-servers)"
        );
        eprintln!("SKIPPED: the service over TLS (scripts/tls-servers)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(
        dir.path(),
        &[
            ("STORAGE_BACKEND", "postgres"),
            ("STRATOS_POSTGRES_URL", pg.as_str()),
            ("STRATOS_VALKEY_URL", valkey.as_str()),
            ("STRATOS_VALKEY_CA_FILE", ca.as_str()),
        ],
    );
    let base = service.base.clone();
    // Start-up against a remote database can take a moment after the port opens.
    let deadline = Instant::now() + Duration::from_secs(30);
    let ready = loop {
        let res = stratos_testkit::http_client()
            .get(format!("{base}/ready"))
            .send()
            .await
            .unwrap();
        let status = res.status();
        let body: Value = res.json().await.unwrap();
        if status == 200 || Instant::now() > deadline {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(ready["status"], "ok", "{ready}");
    assert_eq!(ready["components"]["valkey"], "ok", "{ready}");
    traffic(&base).await;
    // PostgreSQL's one pool, at its configured size (STRATOS_PG_ACTOR_POOL_SIZE's default).
    let m = parse_metrics(
        &stratos_testkit::http_client()
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    let max = m["stratos_storage_pool_max_connections{pool=\"main\"}"];
    assert!(max >= 1.0, "{max}");
    let idle = m["stratos_storage_pool_connections{pool=\"main\",state=\"idle\"}"];
    let busy = m["stratos_storage_pool_connections{pool=\"main\",state=\"busy\"}"];
    assert!(
        idle + busy >= 1.0 && idle + busy <= max,
        "{idle} {busy} {max}"
    );
    let logs = service.stop();
    assert!(!logs.contains("\"level\":\"ERROR\""), "{logs}");
}
