//! PDS write-back benchmark against the real PDS of the e2e harness (docs/performance.md).
//!
//! The service runs in process on SQLite (relaxed) with the loopback OAuth client; every
//! account enrolls through `/oauth/authorize` → the PDS's sign-in and consent → the callback,
//! so delivery writes with real DPoP-bound OAuth sessions.
//!
//! 1. **Latency at light load**: one create at a time (round-robin over the accounts); from the
//!    moment the create request is sent until the stub is readable on the PDS
//!    (`com.atproto.repo.getRecord`, polled every 5 ms): p50, p99, max.
//! 2. **Throughput**: `DELIVERY_RECORDS` creates per account sent at once (16 clients), then
//!    the time until every account's last stub is on the PDS (an account's items go out in
//!    order, so its last stub means all of them): stub writes per second.
//! 3. **The PDS's own ceiling** for the same calls: as many `putRecord`s of a stub-sized record,
//!    16 accounts at a time and each account's one after the other (the order delivery keeps),
//!    made directly through the same OAuth client with DPoP-bound sessions of the bench's own.
//!
//! `scripts/e2e-env` first; then `cargo bench -p stratos-service --bench delivery`
//! (`DELIVERY_ACCOUNTS`, default 50; `DELIVERY_RECORDS`, default 20; `DELIVERY_SAMPLES`,
//! default 100). Without the e2e install it prints `SKIPPED:` and exits.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // bench code

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::LOCATION;
use serde_json::{Value, json};
use stratos_testkit::e2e::{Account, Browser, Harness, installed_node};

const SERVICE_DID: &str = "did:web:nerv.tokyo.jp";
const PUBLIC: &str = "http://127.0.0.1:9";
const POST: &str = "zone.stratos.feed.post";
const AT_ONCE: usize = 16;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn http() -> reqwest::Client {
    stratos_testkit::http_client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(64)
        .build()
        .unwrap()
}

fn config(h: &Harness, dir: &std::path::Path) -> stratos_service::config::Config {
    let vars: Vec<(String, String)> = [
        ("STRATOS_DATA_DIR", dir.to_string_lossy().as_ref()),
        ("STRATOS_SERVICE_DID", SERVICE_DID),
        ("STRATOS_PUBLIC_URL", PUBLIC),
        ("STRATOS_DEV_MODE", "true"),
        ("STRATOS_ADMIN_PASSWORD", "bench-admin"),
        ("STRATOS_PLC_URL", h.plc_url.as_str()),
        ("STRATOS_OUTBOUND_ALLOW_PRIVATE", "true"),
        ("STRATOS_ALLOWED_DOMAINS", "swordsmith"),
        ("STRATOS_ENROLLMENT_MODE", "open"),
        ("STRATOS_SQLITE_DURABILITY", "relaxed"),
        ("STRATOS_WRITE_RATE_MAX_WRITES", "1000000"),
        ("LOG_LEVEL", "error"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let mut config = stratos_service::config::Config::from_pairs(vars).unwrap();
    config.port = 0;
    config
}

/// `/oauth/authorize` → the PDS's sign-in and consent → `/oauth/callback`.
async fn enroll(h: &Harness, http: &reqwest::Client, base: &str, account: &Account) {
    let res = http
        .get(format!("{base}/oauth/authorize?handle={}", account.did))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FOUND);
    let url = res.headers()[LOCATION].to_str().unwrap().to_owned();
    let location = Browser::new(&h.pds_url, &url)
        .unwrap()
        .authorize(account, true)
        .await
        .unwrap();
    let (_, query) = location.split_once('?').unwrap();
    let res = http
        .get(format!("{base}/oauth/callback?{query}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{:?}", res.text().await);
}

/// Creates a post in Stratos as `did` (dev bearer): its rkey.
async fn create(http: &reqwest::Client, base: &str, did: &str, n: usize) -> String {
    let record = json!({
        "$type": POST,
        "text": format!("private post {n}"),
        "boundary": {
            "$type": "zone.stratos.boundary.defs#Domains",
            "values": [{ "value": format!("{SERVICE_DID}/swordsmith") }],
        },
        "createdAt": "2026-12-07T09:00:00.000Z",
    });
    let res = http
        .post(format!("{base}/xrpc/com.atproto.repo.createRecord"))
        .bearer_auth(did)
        .json(&json!({ "repo": did, "collection": POST, "record": record }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    body["uri"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned()
}

async fn on_pds(
    http: &reqwest::Client,
    pds: &str,
    did: &str,
    collection: &str,
    rkey: &str,
) -> bool {
    http.get(format!(
        "{pds}/xrpc/com.atproto.repo.getRecord?repo={did}&collection={collection}&rkey={rkey}"
    ))
    .send()
    .await
    .map(|r| r.status() == StatusCode::OK)
    .unwrap_or(false)
}

async fn wait_on_pds(http: &reqwest::Client, pds: &str, did: &str, collection: &str, rkey: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !on_pds(http, pds, did, collection, rkey).await {
        assert!(
            Instant::now() < deadline,
            "{did}/{collection}/{rkey} never reached the PDS"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// The PDS's own rate for the same calls: `per_account` putRecords of a stub-sized record for
/// every account, `AT_ONCE` accounts at a time and each account's calls in order, made directly
/// with `stratos_network::HttpOAuthClient` (the client delivery uses) and DPoP-bound OAuth
/// sessions of the bench's own (one more sign-in per account).
async fn direct_ceiling(h: &Harness, per_account: usize) -> (usize, Duration) {
    use stratos_domain::oauth::{AuthorizationTarget, CallbackParams};
    use stratos_ports::pds_client::{AtprotoOAuthClient, PdsWriter, StartOptions};
    let identity =
        stratos_network::HttpIdentityResolver::new(stratos_network::identity::IdentityConfig {
            plc_url: h.plc_url.clone(),
            allow_http_for_localhost: true,
            allow_private_targets: true,
            ..Default::default()
        })
        .unwrap();
    let mut config = stratos_network::OAuthClientConfig::loopback(
        "http://127.0.0.1:9/oauth/callback",
        "atproto repo:zone.stratos.actor.enrollment repo:zone.stratos.feed.post",
    );
    config.allow_http_for_localhost = true;
    config.allow_private_targets = true;
    let client =
        Arc::new(stratos_network::HttpOAuthClient::new(config, Arc::new(identity)).unwrap());
    let mut sessions = Vec::new();
    for account in &h.accounts {
        let target = AuthorizationTarget::parse(&account.did).unwrap();
        let (request, state) = client
            .start_authorization(&target, &StartOptions::default())
            .await
            .unwrap();
        let location = Browser::new(&h.pds_url, &request.url)
            .unwrap()
            .authorize(account, true)
            .await
            .unwrap();
        let (_, query) = location.split_once('?').unwrap();
        let session = client
            .finish_authorization(state, &CallbackParams::from_query(query))
            .await
            .unwrap();
        sessions.push(session);
    }
    let queue = Arc::new(tokio::sync::Mutex::new(sessions));
    let collection = stratos_domain::syntax::Nsid::parse(POST).unwrap();
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..AT_ONCE {
        let (queue, client, collection) = (queue.clone(), client.clone(), collection.clone());
        workers.push(tokio::spawn(async move {
            let mut done = 0;
            loop {
                let Some(mut session) = queue.lock().await.pop() else {
                    return done;
                };
                for i in 0..per_account {
                    let rkey = stratos_domain::syntax::RecordKey::parse(&format!("direct{i:06}")).unwrap();
                    // A stub's shape and size.
                    let record = json!({
                        "$type": POST,
                        "source": {
                            "vary": "authenticated",
                            "subject": {
                                "uri": format!("at://{}/{POST}/{rkey}", session.did),
                                "cid": "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm",
                            },
                            "service": format!("{SERVICE_DID}#atproto_pns"),
                        },
                        "createdAt": "2026-12-07T09:00:00.000Z",
                    });
                    let written = client
                        .put_record(&session, &collection, &rkey, &record)
                        .await
                        .unwrap();
                    if let Some(next) = written.session {
                        session = next;
                    }
                    done += 1;
                }
            }
        }));
    }
    let mut total = 0;
    for w in workers {
        total += w.await.unwrap();
    }
    (total, started.elapsed())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let Some(node) = installed_node() else {
        println!("SKIPPED: the e2e install is missing (scripts/e2e-env)");
        return;
    };
    let accounts = env("DELIVERY_ACCOUNTS", 50);
    let per_account = env("DELIVERY_RECORDS", 20);
    let samples = env("DELIVERY_SAMPLES", 100);
    let handles: Vec<String> = (0..accounts).map(|i| format!("bench{i:03}")).collect();
    let labels: Vec<&str> = handles.iter().map(String::as_str).collect();
    let h = Harness::start(&node, &labels).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = stratos_service::start(config(&h, dir.path()), 2)
        .await
        .unwrap();
    let (http, base) = (http(), server.url());

    let started = Instant::now();
    for account in &h.accounts {
        enroll(&h, &http, &base, account).await;
    }
    for account in &h.accounts {
        wait_on_pds(
            &http,
            &h.pds_url,
            &account.did,
            "zone.stratos.actor.enrollment",
            SERVICE_DID,
        )
        .await;
    }
    println!(
        "{accounts} accounts enrolled through OAuth, enrollment records on the PDS, in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // 1. Latency at light load.
    let mut latencies = Vec::with_capacity(samples);
    for n in 0..samples {
        let did = &h.accounts[n % accounts].did;
        let t0 = Instant::now();
        let rkey = create(&http, &base, did, n).await;
        wait_on_pds(&http, &h.pds_url, did, POST, &rkey).await;
        latencies.push(t0.elapsed());
    }
    latencies.sort();
    println!(
        "create → stub on the PDS, one at a time ({samples} samples): p50 {}, p99 {}, max {}",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies[latencies.len() - 1]),
    );

    // 2. Throughput through the outbox.
    let t0 = Instant::now();
    let dids: Vec<String> = h.accounts.iter().map(|a| a.did.clone()).collect();
    let queue = Arc::new(tokio::sync::Mutex::new(dids.clone()));
    let mut clients = Vec::new();
    for _ in 0..AT_ONCE {
        let (queue, http, base) = (queue.clone(), http.clone(), base.clone());
        clients.push(tokio::spawn(async move {
            let mut last = Vec::new();
            loop {
                let Some(did) = queue.lock().await.pop() else {
                    return last;
                };
                let mut rkey = String::new();
                for i in 0..per_account {
                    rkey = create(&http, &base, &did, 100_000 + i).await;
                }
                last.push((did, rkey));
            }
        }));
    }
    let mut last = Vec::new();
    for c in clients {
        last.extend(c.await.unwrap());
    }
    let created = t0.elapsed();
    for (did, rkey) in &last {
        wait_on_pds(&http, &h.pds_url, did, POST, rkey).await;
    }
    let drained = t0.elapsed();
    let total = accounts * per_account;
    let through_outbox = total as f64 / drained.as_secs_f64();
    println!(
        "{total} creates ({accounts} accounts × {per_account}) sent in {:.2} s; every stub on the PDS after {:.2} s: {through_outbox:.0} stub writes/s",
        created.as_secs_f64(),
        drained.as_secs_f64()
    );

    // 3. The PDS's own ceiling for the same calls.
    let (direct, took) = direct_ceiling(&h, per_account).await;
    let ceiling = direct as f64 / took.as_secs_f64();
    println!(
        "direct putRecord to the PDS ({direct} calls, {AT_ONCE} accounts at a time, in order per account): {ceiling:.0} writes/s; delivery reaches {:.0} % of it",
        100.0 * through_outbox / ceiling
    );
    server.stop().await.unwrap();
}
