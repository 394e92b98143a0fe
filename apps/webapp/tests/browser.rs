#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! The web app in a real browser: headless Chromium (Debian's `chromium`), driven by
//! Playwright (`playwright-core` from the npm registry, installed with the e2e harness by
//! `scripts/e2e-env`) through `e2e/webapp.mjs`, against the real `stratos` service, the
//! indexer and the PDS + PLC of `e2e/harness.mjs`, all on loopback:
//!
//! - alice and bob sign in through OAuth on the PDS's own sign-in and consent pages, enroll
//!   through the service's `/oauth/authorize`, get different boundaries from the operator,
//!   post privately and publicly, reply and delete; each sees exactly what their boundary
//!   allows, and the other's private post only as "private";
//! - carol signs in without enrolling and sees public posts and stubs only;
//! - bob leaves the service from the page.
//!
//! Screenshots of every step go to `target/webapp-screens/` (`STRATOS_WEBAPP_SCREENS` to move
//! them). Without the e2e install, Chromium or PostgreSQL the test prints `SKIPPED:` and
//! passes — except under `CI=true`, where it fails.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use stratos_testkit::e2e::{Harness, installed_node, workspace_root};

const SERVICE_DID: &str = "did:web:stratos.example";
const ADMIN: &str = "webapp-test-admin";
const SYNC: &str = "webapp-test-sync";

fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn required<T>(what: &str, value: Option<T>) -> Option<T> {
    if value.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "under CI=true the browser test must run: {what} is missing"
        );
        eprintln!("SKIPPED: the web app's browser test ({what} is missing)");
    }
    value
}

fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("STRATOS_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    path.is_file().then_some(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_users_with_different_boundaries_and_a_stranger_in_chromium() {
    let Some(node) = installed_node() else { return };
    let Some(pg) = required(
        "STRATOS_TEST_POSTGRES_URL",
        std::env::var("STRATOS_TEST_POSTGRES_URL").ok(),
    ) else {
        return;
    };
    let Some(chromium) = required("chromium (apt-get install chromium)", chromium()) else {
        return;
    };
    let h = Harness::start(&node, &["alice", "bob", "carol"]).unwrap();

    // The service: its public URL is where the PDS sends the browser back to, so it is fixed
    // before start-up; the web app's origin is an allowed enrollment redirect.
    let (service_port, webapp_port) = (free_port(), free_port());
    let service_url = format!("http://127.0.0.1:{service_port}");
    let webapp_url = format!("http://127.0.0.1:{webapp_port}");
    let data = tempfile::tempdir().unwrap();
    let config = stratos_service::config::Config::from_pairs(vec![
        ("STRATOS_DATA_DIR", data.path().to_str().unwrap()),
        ("STRATOS_SERVICE_DID", SERVICE_DID),
        ("STRATOS_PUBLIC_URL", service_url.as_str()),
        ("STRATOS_BIND", "127.0.0.1"),
        ("STRATOS_PORT", &service_port.to_string()),
        ("STRATOS_PLC_URL", h.plc_url.as_str()),
        ("STRATOS_OUTBOUND_ALLOW_PRIVATE", "true"),
        ("STRATOS_ALLOWED_DOMAINS", "swordsmith,aekea"),
        ("STRATOS_ENROLLMENT_MODE", "open"),
        ("STRATOS_ADMIN_PASSWORD", ADMIN),
        ("STRATOS_SYNC_TOKEN", SYNC),
        ("STRATOS_OAUTH_REDIRECT_ORIGINS", webapp_url.as_str()),
        ("STRATOS_SQLITE_DURABILITY", "relaxed"),
        // The harness's PLC and PDS speak http:// on loopback, which only development mode
        // lets the service use. The web app never uses dev mode's `Bearer <did>`: every call
        // it makes carries a token the PDS minted.
        ("STRATOS_DEV_MODE", "true"),
    ])
    .unwrap();
    let service = stratos_service::start(config, 2).await.unwrap();
    assert_eq!(service.url(), service_url);

    // The indexer, into a schema of its own in the machine's PostgreSQL.
    let schema = format!("webapp{}", std::process::id());
    let index = std::sync::Arc::new(stratos_postgres_index(&pg, &schema).await);
    let vars: HashMap<String, String> = [
        ("STRATOS_SERVICE_URL", service_url.as_str()),
        ("STRATOS_SYNC_TOKEN", SYNC),
        ("BSKY_DB_POSTGRES_URL", "unused: the index is given"),
        ("ACTOR_SYNC_RECONNECT_MAX_DELAY_MS", "500"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let metrics = std::sync::Arc::new(stratos_indexer::metrics::Metrics::default());
    let indexer = stratos_indexer::engine::Indexer::start(
        stratos_indexer::config::IndexerConfig::from_vars(&vars).unwrap(),
        index.clone(),
        metrics,
    )
    .await
    .unwrap();

    // The web app.
    let webapp_vars: HashMap<String, String> = [
        ("WEBAPP_BIND", format!("127.0.0.1:{webapp_port}")),
        ("WEBAPP_STRATOS_URL", service_url.clone()),
        ("WEBAPP_INDEX_DATABASE_URL", pg.clone()),
        ("WEBAPP_INDEX_SCHEMA", schema.clone()),
        ("WEBAPP_PLC_URL", h.plc_url.clone()),
        ("WEBAPP_ALLOW_PRIVATE", "true".into()),
        ("WEBAPP_VIEWER_TTL_MS", "500".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let webapp =
        stratos_webapp::start(stratos_webapp::WebAppConfig::from_vars(&webapp_vars).unwrap())
            .await
            .unwrap();
    assert_eq!(webapp.public_url, webapp_url);

    // The browser part.
    let screens = std::env::var_os("STRATOS_WEBAPP_SCREENS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/webapp-screens"));
    std::fs::create_dir_all(&screens).unwrap();
    let accounts: Vec<serde_json::Value> = ["alice", "bob", "carol"]
        .iter()
        .map(|n| {
            let a = h.account(&format!("{n}.test"));
            serde_json::json!({ "name": n, "did": a.did, "handle": a.handle, "password": a.password })
        })
        .collect();
    let script = workspace_root().join("e2e/webapp.mjs");
    let run = tokio::process::Command::new(&node)
        .arg(&script)
        .env("WEBAPP_URL", &webapp_url)
        .env("STRATOS_URL", &service_url)
        .env("STRATOS_DID", SERVICE_DID)
        .env("STRATOS_ADMIN", ADMIN)
        .env("PDS_URL", &h.pds_url)
        .env("ACCOUNTS", serde_json::Value::from(accounts).to_string())
        .env("SCREENS", &screens)
        .env("CHROMIUM", &chromium)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(600), run)
        .await
        .expect("the browser flow took over 10 minutes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser flow failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- harness\n{}",
        out.status,
        h.stderr()
    );
    eprintln!("{stdout}");
    for shot in [
        "01-sign-in",
        "03-signed-in",
        "06-alice-feed",
        "08-carol-feed",
        "09-alice-375px",
    ] {
        assert!(
            screens.join(format!("{shot}.png")).is_file(),
            "no screenshot {shot}"
        );
    }

    // Requests no browser of the app sends: clear 4xx answers, nothing echoed unescaped.
    let http = stratos_testkit::http_client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = http
        .get(format!(
            "{webapp_url}/oauth/callback?state=forged&code=x&iss=http://evil.example"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let res = http
        .post(format!("{webapp_url}/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("handle", "<script>alert(1)</script>")]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body = res.text().await.unwrap();
    assert!(!body.contains("<script>"), "{body}");
    for path in ["/post", "/delete", "/unenroll", "/logout"] {
        let res = http
            .post(format!("{webapp_url}{path}"))
            .header("cookie", "stratos_webapp=not-a-session")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[("csrf", "x"), ("text", "t"), ("uri", "at://x")]))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403, "{path}");
    }
    let res = http
        .post(format!("{webapp_url}/post"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(vec![b'a'; 64 * 1024])
        .send()
        .await
        .unwrap();
    assert!(res.status().is_client_error(), "{}", res.status());
    let res = http.get(format!("{webapp_url}/")).send().await.unwrap();
    let csp = res.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("Handle, DID or PDS address")
    );

    // What the browser did is on the servers: alice's private posts have stubs on her PDS
    // and rows in the AppView index with her boundary only.
    let alice = h.account("alice.test");
    let stubs: serde_json::Value = stratos_testkit::http_client()
        .get(format!(
            "{}/xrpc/com.atproto.repo.listRecords?repo={}&collection=zone.stratos.feed.post",
            h.pds_url, alice.did
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stubs = stubs["records"].as_array().unwrap();
    assert!(!stubs.is_empty(), "no stubs on alice's PDS");
    for s in stubs {
        assert!(
            s["value"].get("text").is_none(),
            "a stub carries content: {s}"
        );
        assert!(s["value"]["source"]["subject"]["uri"].is_string());
    }
    let rows: Vec<(String,)> = sqlx_rows(&index, &alice.did).await;
    assert!(!rows.is_empty());
    assert!(
        rows.iter()
            .all(|(b,)| b == &format!("{SERVICE_DID}/swordsmith")),
        "{rows:?}"
    );

    webapp.stop().await;
    indexer.stop().await;
    index.drop_schema().await.unwrap();
    service.stop().await.unwrap();
}

async fn stratos_postgres_index(url: &str, schema: &str) -> stratos_postgres::PostgresAppViewIndex {
    stratos_postgres::PostgresAppViewIndex::connect(&stratos_postgres::AppViewConfig {
        url: url.to_owned(),
        schema: schema.to_owned(),
        pool_size: 4,
    })
    .await
    .unwrap()
}

/// The boundaries of `did`'s indexed posts.
async fn sqlx_rows(index: &stratos_postgres::PostgresAppViewIndex, did: &str) -> Vec<(String,)> {
    let posts = stratos_ports::appview_store::FeedStore::feed(
        index,
        &stratos_ports::appview_store::FeedQuery {
            author: Some(stratos_domain::syntax::Did::parse(did).unwrap()),
            boundaries: None,
            after: None,
            limit: 100,
        },
    )
    .await
    .unwrap();
    posts
        .posts
        .into_iter()
        .flat_map(|p| p.boundaries.into_iter().map(|b| (b,)))
        .collect()
}
