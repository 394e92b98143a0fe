#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! Crash durability: the `stratos` binary under concurrent createRecord load is killed with
//! SIGKILL and restarted on the same data directory (SQLite, the default storage) three times.
//! Afterwards every acknowledged record reads back with the CID it was acknowledged with, and
//! each account's exported repository verifies: the commit is signed by the account's key, the
//! tree is the canonical MST of its entries, and every acknowledged record is in it.
//!
//! Both `STRATOS_SQLITE_DURABILITY` modes are held to the same promise here: a process crash
//! loses nothing acknowledged. `relaxed` only gives up the last commits on a power loss or an
//! OS crash (WAL with `synchronous=NORMAL`), which killing a process cannot simulate.
//!
//! The binary is `STRATOS_KILL9_BIN` when set (CI passes the release build), otherwise the
//! debug build of this package, so `scripts/test` runs the test too.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

mod common;
use stratos_domain::blocks::BlockMap;
use stratos_domain::car::{self, CarLimits};
use stratos_domain::commit::SignedCommit;
use stratos_domain::crypto::PublicKey;
use stratos_domain::mst::Mst;

const ADMIN: &str = "kill-nine-admin";
const POST: &str = "zone.stratos.feed.post";
const SERVICE_DID: &str = "did:web:nerv.tokyo.jp";
const ACCOUNTS: &[&str] = &["did:plc:kill9rei", "did:plc:kill9asuka"];
const WRITERS_PER_ACCOUNT: usize = 2;
const KILLS: usize = 3;
/// Upper bound on the writes of one writer in one round, so a fast machine stays bounded too.
const MAX_WRITES_PER_ROUND: usize = 400;

/// The `stratos` process; killed (SIGKILL, by pid) and reaped when dropped, so no test failure
/// leaves it behind.
struct Server {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Server {
    fn start(bin: &Path, data: &Path, durability: &str, log: PathBuf) -> Server {
        let port = free_port();
        let out = File::create(&log).unwrap();
        let child = Command::new(bin)
            // Only what this test sets: a STRATOS_* variable of the caller must not change it,
            // nor a `.env` in the working directory (the service reads `./.env`).
            .env_clear()
            .current_dir(data.parent().unwrap_or(data))
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("STRATOS_BIND", "127.0.0.1")
            .env("STRATOS_PORT", port.to_string())
            // Fixed, so boundaries qualified in earlier rounds stay valid whatever the port.
            .env("STRATOS_SERVICE_DID", SERVICE_DID)
            .env("STRATOS_PUBLIC_URL", "https://nerv.tokyo.jp")
            .env("STRATOS_DATA_DIR", data)
            .env("STRATOS_SQLITE_DURABILITY", durability)
            .env("STRATOS_DEV_MODE", "true")
            .env("STRATOS_ADMIN_PASSWORD", ADMIN)
            .env("STRATOS_ALLOWED_DOMAINS", "general")
            .env("STRATOS_WRITE_RATE_MAX_WRITES", "1000000")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    /// Waits until `/health` answers 200 (storage open, recovery done).
    async fn ready(&mut self, http: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("stratos exited with {status}:\n{}", self.log_text());
            }
            if let Ok(r) = http.get(format!("{}/health", self.base)).send().await
                && r.status() == StatusCode::OK
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "stratos not ready after 60 s:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn kill9(&mut self) {
        // `Child::kill` is SIGKILL on Unix; `wait` reaps it so the next start owns the files.
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    l.local_addr().unwrap().port()
}

fn binary() -> PathBuf {
    match std::env::var_os("STRATOS_KILL9_BIN") {
        Some(p) => {
            let p = PathBuf::from(p);
            // Relative to the workspace root, where CI runs.
            let p = if p.is_relative() {
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(p)
            } else {
                p
            };
            assert!(
                p.is_file(),
                "STRATOS_KILL9_BIN={} is not a file",
                p.display()
            );
            p
        }
        None => PathBuf::from(env!("CARGO_BIN_EXE_stratos")),
    }
}

/// What the writers learnt: acknowledged records (`collection/rkey` → (CID, text)) per account,
/// and how many creates per account were in flight when the server died (outcome unknown).
#[derive(Default)]
struct Ledger {
    acked: BTreeMap<String, BTreeMap<String, (String, String)>>,
    unknown: BTreeMap<String, usize>,
}

fn post(text: &str) -> Value {
    common::post_record(SERVICE_DID, text, &["general"])
}

/// Creates records on `base` until `stop`, the write bound, or the server dies under it. Any
/// answer but 200, or a transport error before the kill, fails the test.
async fn writer(
    http: reqwest::Client,
    base: String,
    did: &'static str,
    tag: String,
    stop: Arc<AtomicBool>,
    killed: Arc<AtomicBool>,
    ledger: Arc<Mutex<Ledger>>,
) {
    for n in 0..MAX_WRITES_PER_ROUND {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let text = format!("{tag}-{n}");
        let res = http
            .post(format!("{base}/xrpc/com.atproto.repo.createRecord"))
            .header("authorization", format!("Bearer {did}"))
            .json(&json!({ "repo": did, "collection": POST, "record": post(&text) }))
            .send()
            .await;
        let body = match res {
            Ok(r) => {
                let status = r.status();
                match r.bytes().await {
                    Ok(b) => {
                        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
                        serde_json::from_slice::<Value>(&b).unwrap()
                    }
                    Err(e) => {
                        // The server died after the status line: the write may or may not be in.
                        assert!(killed.load(Ordering::SeqCst), "{e}");
                        *ledger
                            .lock()
                            .unwrap()
                            .unknown
                            .entry(did.into())
                            .or_default() += 1;
                        return;
                    }
                }
            }
            Err(e) => {
                assert!(
                    killed.load(Ordering::SeqCst),
                    "write failed before the kill: {e}"
                );
                *ledger
                    .lock()
                    .unwrap()
                    .unknown
                    .entry(did.into())
                    .or_default() += 1;
                return;
            }
        };
        let uri = body["uri"].as_str().unwrap();
        let prefix = format!("at://{did}/");
        let key = uri.strip_prefix(&prefix).unwrap().to_owned();
        let cid = body["cid"].as_str().unwrap().to_owned();
        let previous = ledger
            .lock()
            .unwrap()
            .acked
            .entry(did.into())
            .or_default()
            .insert(key.clone(), (cid, text));
        assert!(previous.is_none(), "{key} acknowledged twice");
    }
}

async fn get_json(http: &reqwest::Client, url: String, did: &str) -> (StatusCode, Value) {
    let r = http
        .get(url)
        .header("authorization", format!("Bearer {did}"))
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The account's signing key, from its own enrollment status (a did:key).
async fn signing_key(http: &reqwest::Client, base: &str, did: &str) -> String {
    let (s, body) = get_json(
        http,
        format!("{base}/xrpc/zone.stratos.enrollment.status?did={did}"),
        did,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["enrolled"], json!(true), "{body}");
    body["signingKey"].as_str().unwrap().to_owned()
}

/// Everything a restart must preserve, checked against the final server.
async fn verify(
    http: &reqwest::Client,
    base: &str,
    ledger: &Ledger,
    keys: &BTreeMap<&str, String>,
) {
    for did in ACCOUNTS {
        let empty = BTreeMap::new();
        let acked = ledger.acked.get(*did).unwrap_or(&empty);
        // Every acknowledged record reads back with its CID and content, 8 reads at a time.
        let acked_list: Vec<(&String, &(String, String))> = acked.iter().collect();
        let mut checked = 0;
        for chunk in acked_list.chunks(8) {
            let reads = chunk.iter().map(|&(key, (cid, text))| {
                let rkey = key.strip_prefix(&format!("{POST}/")).unwrap().to_owned();
                let url = format!(
                    "{base}/xrpc/com.atproto.repo.getRecord?repo={did}&collection={POST}&rkey={rkey}"
                );
                async move {
                    let (s, body) = get_json(http, url, did).await;
                    assert_eq!(s, StatusCode::OK, "{key}: {body}");
                    assert_eq!(body["cid"].as_str(), Some(cid.as_str()), "{key}");
                    assert_eq!(body["value"]["text"].as_str(), Some(text.as_str()), "{key}");
                }
            });
            checked += futures_util::future::join_all(reads).await.len();
        }
        assert_eq!(checked, acked.len());

        // The exported repository verifies on its own.
        let r = http
            .get(format!("{base}/xrpc/zone.stratos.sync.getRepo?did={did}"))
            .header("authorization", format!("Bearer {did}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let bytes = r.bytes().await.unwrap();
        // `car::read` checks every block against its CID.
        let parsed = car::read(&bytes, CarLimits::default()).unwrap();
        let [root] = parsed.roots.as_slice() else {
            panic!("one root expected: {:?}", parsed.roots);
        };
        let (s, latest) = get_json(
            http,
            format!("{base}/xrpc/com.atproto.sync.getLatestCommit?did={did}"),
            did,
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{latest}");
        assert_eq!(latest["cid"].as_str(), Some(root.to_string().as_str()));
        let commit = SignedCommit::decode(parsed.blocks.get(root).unwrap()).unwrap();
        assert_eq!(commit.did.as_str(), *did);
        assert_eq!(latest["rev"].as_str(), Some(commit.rev.as_str()));
        let key = PublicKey::from_did_key(&keys[*did]).unwrap();
        commit.verify(&key).unwrap();

        let entries = Mst::load(&parsed.blocks, commit.data).entries().unwrap();
        assert!(
            entries.windows(2).all(|w| w[0].0 < w[1].0),
            "tree keys are not strictly ordered"
        );
        // The MST's shape depends only on its key set: rebuilding it from the entries must give
        // the committed root, or the stored tree is malformed.
        let mut rebuilt = Mst::empty(BlockMap::new());
        for (k, v) in &entries {
            rebuilt.put(k, *v).unwrap();
        }
        assert_eq!(
            rebuilt.root(),
            commit.data,
            "the tree is not the canonical MST"
        );
        let in_tree: BTreeMap<&str, String> = entries
            .iter()
            .map(|(k, v)| (k.as_str(), v.to_string()))
            .collect();
        for (key, (cid, _)) in acked {
            assert!(
                parsed.blocks.contains(&cid.parse().unwrap()),
                "{key}: record block missing from the export"
            );
            assert_eq!(
                in_tree.get(key.as_str()),
                Some(cid),
                "{key} in the exported tree"
            );
        }
        // Anything else can only be a create whose answer the kill cut off.
        let extra: BTreeSet<&str> = in_tree
            .keys()
            .filter(|k| k.starts_with(&format!("{POST}/")) && !acked.contains_key(**k))
            .copied()
            .collect();
        let unknown = ledger.unknown.get(*did).copied().unwrap_or(0);
        assert!(
            extra.len() <= unknown,
            "{did}: {} unacknowledged records but only {unknown} creates were cut off",
            extra.len()
        );
        eprintln!(
            "kill9 {did}: {} acknowledged, {} cut off ({} of them committed), {} tree entries",
            acked.len(),
            unknown,
            extra.len(),
            entries.len()
        );
    }
}

async fn crash_cycles(durability: &str) {
    let bin = binary();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let http = stratos_testkit::http_client_builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut keys: BTreeMap<&str, String> = BTreeMap::new();
    let mut acked_before = 0;

    for round in 0..=KILLS {
        let log = dir.path().join(format!("stratos-{round}.log"));
        let mut server = Server::start(&bin, &data, durability, log);
        server.ready(&http).await;
        if round == 0 {
            for did in ACCOUNTS {
                let r = http
                    .post(format!(
                        "{}/xrpc/zone.stratos.admin.enrollActor",
                        server.base
                    ))
                    .header("authorization", format!("Bearer {ADMIN}"))
                    .json(&json!({ "did": did, "boundaries": ["general"] }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::OK);
                let body: Value = r.json().await.unwrap();
                keys.insert(did, body["signingKey"].as_str().unwrap().to_owned());
            }
        }
        // The enrollment, and with it the signing key, survives every crash.
        for did in ACCOUNTS {
            assert_eq!(signing_key(&http, &server.base, did).await, keys[*did]);
        }
        if round == KILLS {
            let ledger = std::mem::take(&mut *ledger.lock().unwrap());
            verify(&http, &server.base, &ledger, &keys).await;
            return;
        }

        let stop = Arc::new(AtomicBool::new(false));
        let killed = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for did in ACCOUNTS {
            for w in 0..WRITERS_PER_ACCOUNT {
                tasks.push(tokio::spawn(writer(
                    http.clone(),
                    server.base.clone(),
                    did,
                    format!("r{round}w{w}"),
                    stop.clone(),
                    killed.clone(),
                    ledger.clone(),
                )));
            }
        }
        // Kill mid-load, at a different point each round.
        tokio::time::sleep(Duration::from_millis(700 + 350 * round as u64)).await;
        killed.store(true, Ordering::SeqCst);
        server.kill9();
        stop.store(true, Ordering::SeqCst);
        for t in tasks {
            t.await.unwrap();
        }
        let acked: usize = ledger
            .lock()
            .unwrap()
            .acked
            .values()
            .map(BTreeMap::len)
            .sum();
        // A round without acknowledged writes would test nothing.
        assert!(
            acked > acked_before,
            "round {round}: no write was acknowledged"
        );
        eprintln!("kill9 {durability} round {round}: {acked} acknowledged so far");
        acked_before = acked;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_mode_keeps_every_acknowledged_write_across_sigkill() {
    crash_cycles("durable").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relaxed_mode_keeps_every_acknowledged_write_across_sigkill() {
    crash_cycles("relaxed").await;
}
