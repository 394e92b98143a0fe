//! What the indexer's tests share: a real `stratos` process (the service binary, SQLite in a
//! temporary directory, dev auth on loopback, the sync token), a fresh schema on the machine's
//! PostgreSQL, and the calls the scenarios make.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stratos_client::xrpc::{Auth, StratosClient};
use stratos_domain::syntax::{Did, Nsid, RecordKey};
use stratos_postgres::{AppViewConfig, PostgresAppViewIndex};
use tokio::process::{Child, Command};

pub const SERVICE_DID: &str = "did:web:nerv.tokyo.jp";
pub const ADMIN: &str = "correct horse battery staple";
pub const SYNC_TOKEN: &str = "indexer-test-sync-token";

/// The machine's PostgreSQL, or `None` (outside CI) without one.
pub fn postgres_url() -> Option<String> {
    match std::env::var("STRATOS_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "STRATOS_TEST_POSTGRES_URL is not set in CI: the indexer suite must run"
            );
            eprintln!("SKIPPED: indexer suite (set STRATOS_TEST_POSTGRES_URL to run it)");
            None
        }
    }
}

/// A fresh AppView schema.
pub async fn fresh_index(url: &str) -> (Arc<PostgresAppViewIndex>, String) {
    let schema = format!("ix{:012x}", rand_u64() & 0xffff_ffff_ffff);
    let index = PostgresAppViewIndex::connect(&AppViewConfig {
        url: url.to_owned(),
        schema: schema.clone(),
        pool_size: 4,
    })
    .await
    .unwrap();
    (Arc::new(index), schema)
}

fn rand_u64() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    (nanos as u64) ^ u64::from(std::process::id()).rotate_left(32)
}

/// The `stratos` binary of this build, built first when missing (a test run of this package
/// alone does not build another package's binaries).
pub fn stratos_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    let bin = profile_dir.join("stratos");
    if !bin.exists() {
        let status = std::process::Command::new(env!("CARGO"))
            .args([
                "build",
                "--locked",
                "-q",
                "-p",
                "stratos-service",
                "--bin",
                "stratos",
            ])
            .status()
            .unwrap();
        assert!(status.success(), "building the stratos binary");
    }
    bin
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `stratos` process over a data directory that outlives it (restarts reuse it).
pub struct Service {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub base: String,
    child: Option<Child>,
}

impl Service {
    pub async fn start() -> Service {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut s = Service {
            base: format!("http://127.0.0.1:{port}"),
            dir,
            port,
            child: None,
        };
        s.restart().await;
        s
    }

    /// (Re)starts the process on the same port and data directory; returns when it answers.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new(stratos_bin())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("STRATOS_DATA_DIR", self.dir.path())
            .env("STRATOS_SERVICE_DID", SERVICE_DID)
            .env("STRATOS_PUBLIC_URL", "https://nerv.tokyo.jp")
            .env("STRATOS_ALLOWED_DOMAINS", "swordsmith,aekea")
            .env("STRATOS_ENROLLMENT_MODE", "open")
            .env("STRATOS_ADMIN_PASSWORD", ADMIN)
            .env("STRATOS_SYNC_TOKEN", SYNC_TOKEN)
            .env("STRATOS_DEV_MODE", "true")
            .env("STRATOS_BIND", "127.0.0.1")
            .env("STRATOS_PORT", self.port.to_string())
            .env("STRATOS_SQLITE_DURABILITY", "relaxed")
            .env("STRATOS_LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let http = stratos_testkit::http_client();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = http.get(format!("{}/health", self.base)).send().await
                && r.status().is_success()
            {
                return;
            }
            assert!(Instant::now() < deadline, "stratos did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILLs the process.
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().await.unwrap();
            let _ = c.wait().await;
        }
    }

    pub fn admin(&self) -> StratosClient {
        StratosClient::new(&self.base)
            .unwrap()
            .with_auth(Auth::Bearer(ADMIN.into()))
    }

    /// A client authenticated as `did` (dev bearer).
    pub fn as_user(&self, did: &Did) -> StratosClient {
        self.writer().as_user(did)
    }

    pub async fn enroll(&self, did: &Did, boundaries: &[&str]) {
        self.admin().admin_enroll(did, boundaries).await.unwrap();
    }

    /// Writes to this service, for a task of its own.
    pub fn writer(&self) -> Writer {
        Writer {
            base: self.base.clone(),
        }
    }

    pub async fn post(&self, did: &Did, text: &str, boundaries: &[&str]) -> RecordKey {
        self.writer().post(did, text, boundaries).await
    }

    pub async fn update(&self, did: &Did, rkey: &RecordKey, text: &str, boundaries: &[&str]) {
        self.writer().update(did, rkey, text, boundaries).await;
    }

    pub async fn delete(&self, did: &Did, rkey: &RecordKey) {
        self.writer().delete(did, rkey).await;
    }

    /// Every post of `did` as the service holds it: `(rkey, text)`, sorted.
    pub async fn posts_of(&self, did: &Did) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        let http = stratos_testkit::http_client();
        loop {
            let mut url = format!(
                "{}/xrpc/com.atproto.repo.listRecords?repo={did}&collection=zone.stratos.feed.post&limit=100",
                self.base
            );
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={c}"));
            }
            let page: Value = http
                .get(url)
                .header("authorization", format!("Bearer {did}"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            for r in page["records"].as_array().unwrap() {
                let rkey = r["uri"].as_str().unwrap().rsplit('/').next().unwrap();
                out.push((
                    rkey.to_owned(),
                    r["value"]["text"].as_str().unwrap().to_owned(),
                ));
            }
            match page["cursor"].as_str() {
                Some(c) if !page["records"].as_array().unwrap().is_empty() => {
                    cursor = Some(c.to_owned());
                }
                _ => break,
            }
        }
        out.sort();
        out
    }
}

/// Writes as accounts (dev bearer) to a service at `base`.
#[derive(Debug, Clone)]
pub struct Writer {
    pub base: String,
}

impl Writer {
    pub fn as_user(&self, did: &Did) -> StratosClient {
        StratosClient::new(&self.base)
            .unwrap()
            .with_auth(Auth::Bearer(did.to_string()))
    }

    /// Creates a post; its record key.
    pub async fn post(&self, did: &Did, text: &str, boundaries: &[&str]) -> RecordKey {
        let out = self
            .as_user(did)
            .create_record(did, &posts(), None, &record(text, boundaries))
            .await
            .unwrap();
        RecordKey::parse(out.uri.rsplit('/').next().unwrap()).unwrap()
    }

    pub async fn update(&self, did: &Did, rkey: &RecordKey, text: &str, boundaries: &[&str]) {
        self.as_user(did)
            .put_record(did, &posts(), rkey, &record(text, boundaries), None)
            .await
            .unwrap();
    }

    pub async fn delete(&self, did: &Did, rkey: &RecordKey) {
        self.as_user(did)
            .delete_record(did, &posts(), rkey)
            .await
            .unwrap();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.start_kill();
        }
    }
}

pub fn posts() -> Nsid {
    Nsid::parse("zone.stratos.feed.post").unwrap()
}

pub fn record(text: &str, boundaries: &[&str]) -> Value {
    json!({
        "$type": "zone.stratos.feed.post",
        "text": text,
        "boundary": {
            "$type": "zone.stratos.boundary.defs#Domains",
            "values": boundaries.iter().map(|b| json!({ "value": format!("{SERVICE_DID}/{b}") })).collect::<Vec<_>>(),
        },
        "createdAt": "2026-12-07T09:00:00.000Z",
    })
}

pub fn qualified(name: &str) -> String {
    format!("{SERVICE_DID}/{name}")
}

/// The indexer's configuration for `service` and `schema`.
pub fn indexer_vars(service: &Service, pg: &str, schema: &str) -> Vec<(String, String)> {
    vec![
        ("STRATOS_SERVICE_URL".into(), service.base.clone()),
        ("STRATOS_SYNC_TOKEN".into(), SYNC_TOKEN.into()),
        ("BSKY_DB_POSTGRES_URL".into(), pg.into()),
        ("BSKY_DB_POSTGRES_SCHEMA".into(), schema.into()),
        ("HEALTH_PORT".into(), free_port().to_string()),
        ("ACTOR_SYNC_RECONNECT_MAX_DELAY_MS".into(), "500".into()),
    ]
}

/// Every indexed post of `did`: `(rkey, text)`, sorted (straight from the table).
pub async fn indexed_posts(pg: &str, schema: &str, did: &Did) -> Vec<(String, String)> {
    let pool = sea_orm::sqlx::PgPool::connect(pg).await.unwrap();
    let rows: Vec<(String, String)> =
        sea_orm::sqlx::query_as(sea_orm::sqlx::AssertSqlSafe(format!(
            "SELECT rkey, text FROM \"{schema}\".stratos_post WHERE creator = $1 ORDER BY rkey"
        )))
        .bind(did.as_str())
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    rows
}

/// Waits until `f` holds (checked every 50 ms), at most `secs`.
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn did(s: &str) -> Did {
    Did::parse(s).unwrap()
}

pub fn data_dir(s: &Service) -> &Path {
    s.dir.path()
}

/// A TCP proxy in front of a service that corrupts one byte in the middle of the `nth`
/// WebSocket binary message of at least 1 KiB it forwards from the service (counting over every
/// connection), as a hostile network or a broken middlebox would. Plain HTTP passes untouched.
pub async fn tampering_proxy(
    target: u16,
    nth: usize,
) -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else {
                continue;
            };
            let seen = counter.clone();
            tokio::spawn(async move {
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut cr, &mut sw).await;
                });
                // The response head: a 101 switches to frame parsing, anything else is copied.
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if sr.read_exact(&mut byte).await.is_err() {
                        return;
                    }
                    head.push(byte[0]);
                }
                if cw.write_all(&head).await.is_err() {
                    return;
                }
                if !head.starts_with(b"HTTP/1.1 101") {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    return;
                }
                loop {
                    let mut h = [0u8; 2];
                    if sr.read_exact(&mut h).await.is_err() {
                        return;
                    }
                    let mut header = h.to_vec();
                    let len = match h[1] & 0x7f {
                        126 => {
                            let mut b = [0u8; 2];
                            if sr.read_exact(&mut b).await.is_err() {
                                return;
                            }
                            header.extend_from_slice(&b);
                            u64::from(u16::from_be_bytes(b))
                        }
                        127 => {
                            let mut b = [0u8; 8];
                            if sr.read_exact(&mut b).await.is_err() {
                                return;
                            }
                            header.extend_from_slice(&b);
                            u64::from_be_bytes(b)
                        }
                        n => u64::from(n),
                    };
                    let mut payload = vec![0u8; len as usize];
                    if sr.read_exact(&mut payload).await.is_err() {
                        return;
                    }
                    if h[0] & 0x0f == 2
                        && payload.len() >= 1024
                        && seen.fetch_add(1, Ordering::SeqCst) + 1 == nth
                    {
                        let mid = payload.len() / 2;
                        payload[mid] ^= 0x01;
                    }
                    if cw.write_all(&header).await.is_err() || cw.write_all(&payload).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (port, seen)
}
