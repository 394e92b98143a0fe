#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! Hostile input over real HTTP (issue 14): imports that once crashed or stalled the process,
//! bodies that never finish, client mistakes that answered 500, and answers that told a caller
//! whether a private record exists.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use stratos_domain::syntax::Did;
use stratos_service::RunningServer;
use stratos_testkit::hostile::{BrokenCar, dag_bomb_car, deep_chain_car, unreferenced_blocks_car};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::common;

const ALICE: &str = "did:plc:alice";
const BOB: &str = "did:plc:bob";
const POST: &str = "zone.stratos.feed.post";

struct Svc {
    server: RunningServer,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn start(extra: &[(&str, &str)]) -> Svc {
    let dir = tempfile::tempdir().unwrap();
    let server = stratos_service::start(common::config(dir.path(), extra), 2)
        .await
        .unwrap();
    let http = stratos_testkit::http_client_builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    Svc {
        server,
        http,
        _dir: dir,
    }
}

impl Svc {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url())
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        auth: Option<&str>,
        body: Option<Vec<u8>>,
        content_type: &str,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, self.url(path));
        if let Some(did) = auth {
            req = req.header("authorization", format!("Bearer {did}"));
        }
        if let Some(body) = body {
            req = req.header("content-type", content_type).body(body);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, nsid: &str, auth: Option<&str>, body: Value) -> (StatusCode, Value) {
        let bytes = serde_json::to_vec(&body).unwrap();
        let path = format!("/xrpc/{nsid}");
        self.call(
            reqwest::Method::POST,
            &path,
            auth,
            Some(bytes),
            "application/json",
        )
        .await
    }

    async fn get(&self, path: &str, auth: Option<&str>) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, auth, None, "").await
    }

    async fn import(&self, did: &str, car: Vec<u8>) -> (StatusCode, Value) {
        let path = "/xrpc/zone.stratos.repo.importRepo";
        self.call(
            reqwest::Method::POST,
            path,
            Some(did),
            Some(car),
            "application/vnd.ipld.car",
        )
        .await
    }

    async fn enroll(&self, did: &str, boundaries: &[&str]) {
        let (s, b) = self
            .call(
                reqwest::Method::POST,
                "/xrpc/zone.stratos.admin.enrollActor",
                Some(common::ADMIN),
                Some(serde_json::to_vec(&json!({ "did": did, "boundaries": boundaries })).unwrap()),
                "application/json",
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }

    async fn healthy(&self) {
        let (s, _) = self.get("/health", None).await;
        assert_eq!(s, StatusCode::OK);
    }
}

fn did(s: &str) -> Did {
    Did::parse(s).unwrap()
}

fn post_in(text: &str, boundaries: &[&str], reply_to: Option<&str>) -> Value {
    let mut v = common::post_record("did:web:nerv.tokyo.jp", text, boundaries);
    if let Some(uri) = reply_to {
        let strong = json!({ "uri": uri, "cid": "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm" });
        v["reply"] = json!({ "root": strong, "parent": strong });
    }
    v
}

#[tokio::test]
async fn finding_1_a_deep_empty_node_chain_is_refused_and_the_process_lives() {
    let svc = start(&[]).await;
    svc.enroll(ALICE, &["general"]).await;
    // 5,000 levels (~420 kB) aborted the whole process with a stack overflow.
    let (s, b) = svc.import(ALICE, deep_chain_car(&did(ALICE), 5_000)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(b["error"], "InvalidRepo", "{b}");
    svc.healthy().await;
}

#[tokio::test]
async fn finding_2_a_dag_bomb_is_refused_at_once() {
    let svc = start(&[]).await;
    svc.enroll(ALICE, &["general"]).await;
    // 18 levels kept a worker busy for 16 s; 48 levels would never have finished.
    let (s, b) = svc.import(ALICE, dag_bomb_car(&did(ALICE), 48)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(b["error"], "InvalidRepo", "{b}");
    svc.healthy().await;
}

/// Opens a connection that announces a 1,000-byte JSON body to an endpoint anonymous callers may
/// use, sends one byte, and then nothing.
async fn stalled_body(svc: &Svc) -> TcpStream {
    let mut stream = TcpStream::connect(svc.server.addr).await.unwrap();
    let head = "POST /xrpc/zone.stratos.repo.hydrateRecords HTTP/1.1\r\nHost: localhost\r\n\
                Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{";
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// The status line of the first answer on `stream`, or `None` when none arrives in `wait`.
async fn status_of(stream: &mut TcpStream, wait: Duration) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    match tokio::time::timeout(wait, stream.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            text.lines().next().map(str::to_owned)
        }
        _ => None,
    }
}

#[tokio::test]
async fn finding_3_bodies_that_never_finish_are_cut_off_and_capped() {
    let svc = start(&[
        ("STRATOS_BODY_TIMEOUT_SECS", "1"),
        ("STRATOS_MAX_BODIES_PER_IP", "4"),
    ])
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(stalled_body(&svc).await);
    }
    // Give the server time to admit the four before the fifth arrives.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut fifth = stalled_body(&svc).await;
    let line = status_of(&mut fifth, Duration::from_secs(20)).await;
    assert!(
        line.as_deref().is_some_and(|l| l.contains(" 429 ")),
        "the fifth in-flight body from one address is refused at once: {line:?}"
    );
    // Requests without a body still go through while the four are held.
    svc.healthy().await;
    // The held ones get 408 once their deadline passes (they waited forever before).
    for mut stream in held {
        let line = status_of(&mut stream, Duration::from_secs(20)).await;
        assert!(
            line.as_deref().is_some_and(|l| l.contains(" 408 ")),
            "a stalled body is cut off: {line:?}"
        );
    }
    // Their places are free again.
    let (s, _) = svc
        .post(
            "zone.stratos.repo.hydrateRecords",
            None,
            json!({ "uris": [] }),
        )
        .await;
    assert_ne!(s, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn finding_4_unreferenced_blocks_are_ignored_and_imports_are_rate_limited() {
    let svc = start(&[("STRATOS_WRITE_RATE_MAX_WRITES", "30")]).await;
    svc.enroll(ALICE, &["general"]).await;
    svc.enroll(BOB, &["general"]).await;
    // A valid one-record repository padded with 50,000 blocks nothing references.
    let record = stratos_domain::data::json_to_object(&post_in("kept", &["general"], None))
        .and_then(|v| stratos_domain::data::encode(&v))
        .unwrap();
    let (s, b) = svc
        .import(ALICE, unreferenced_blocks_car(&did(ALICE), &record, 50_000))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["imported"], 1);
    // Each import costs a tenth of the window whatever its outcome: the eleventh is refused.
    let mut statuses = Vec::new();
    for _ in 0..11 {
        let (s, b) = svc
            .import(BOB, BrokenCar::MissingRecord.car(&did(BOB)))
            .await;
        statuses.push((s, b["error"].as_str().unwrap_or_default().to_owned()));
    }
    assert!(
        statuses[..10]
            .iter()
            .all(|(s, _)| *s == StatusCode::BAD_REQUEST),
        "{statuses:?}"
    );
    assert_eq!(
        statuses[10].0,
        StatusCode::TOO_MANY_REQUESTS,
        "{statuses:?}"
    );
    assert_eq!(statuses[10].1, "RateLimitExceeded");
}

#[tokio::test]
async fn finding_5_broken_imports_and_duplicate_writes_are_client_errors() {
    let svc = start(&[]).await;
    svc.enroll(ALICE, &["general"]).await;
    for case in BrokenCar::ALL {
        let (s, b) = svc.import(ALICE, case.car(&did(ALICE))).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{case:?}: {b}");
        assert_eq!(b["error"], "InvalidRepo", "{case:?}: {b}");
    }
    let create = |rkey: &str| json!({ "$type": "com.atproto.repo.applyWrites#create", "collection": POST, "rkey": rkey, "value": post_in("x", &["general"], None) });
    let delete = |rkey: &str| json!({ "$type": "com.atproto.repo.applyWrites#delete", "collection": POST, "rkey": rkey });
    for writes in [
        json!([create("3kaaaaaaaaaa2"), create("3kaaaaaaaaaa2")]),
        json!([create("3kaaaaaaaaaa3"), delete("3kaaaaaaaaaa3")]),
    ] {
        let (s, b) = svc
            .post(
                "com.atproto.repo.applyWrites",
                Some(ALICE),
                json!({ "repo": ALICE, "writes": writes }),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
        assert_eq!(b["error"], "InvalidRequest", "{b}");
    }
}

#[tokio::test]
async fn finding_8_a_reply_does_not_tell_whether_an_unreadable_parent_exists() {
    let svc = start(&[]).await;
    svc.enroll(ALICE, &["other", "general"]).await;
    svc.enroll(BOB, &["general"]).await;
    let (s, b) = svc
        .post(
            "com.atproto.repo.createRecord",
            Some(ALICE),
            json!({ "repo": ALICE, "collection": POST, "rkey": "3kaaaaaaaaaa2", "record": post_in("secret", &["other"], None) }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // Bob cannot read Alice's post. Replying to it and to a URI where nothing exists must
    // answer the same way.
    let existing = format!("at://{ALICE}/{POST}/3kaaaaaaaaaa2");
    let missing = format!("at://{ALICE}/{POST}/3kaaaaaaaaaa7");
    let mut answers = Vec::new();
    for parent in [&existing, &missing] {
        let (s, b) = svc
            .post(
                "com.atproto.repo.createRecord",
                Some(BOB),
                json!({ "repo": BOB, "collection": POST, "record": post_in("re", &["general"], Some(parent)) }),
            )
            .await;
        answers.push((s, b["error"].clone()));
    }
    assert_eq!(answers[0], answers[1], "{answers:?}");
    // A reader of the parent is still held to its boundaries.
    let (s, b) = svc
        .post(
            "com.atproto.repo.createRecord",
            Some(ALICE),
            json!({ "repo": ALICE, "collection": POST, "record": post_in("re", &["general"], Some(&existing)) }),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(b["error"], "ReplyBoundaryEscalation");
}

#[tokio::test]
async fn finding_8_describe_repo_lists_only_collections_the_caller_can_read() {
    let svc = start(&[]).await;
    svc.enroll(ALICE, &["other"]).await;
    svc.enroll(BOB, &["general"]).await;
    let (s, b) = svc
        .post(
            "com.atproto.repo.createRecord",
            Some(ALICE),
            json!({ "repo": ALICE, "collection": POST, "record": post_in("secret", &["other"], None) }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let path = format!("/xrpc/com.atproto.repo.describeRepo?repo={ALICE}");
    for caller in [None, Some(BOB)] {
        let (s, b) = svc.get(&path, caller).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(
            b["collections"],
            json!([]),
            "{caller:?} sees no private collection"
        );
    }
    let (_, b) = svc.get(&path, Some(ALICE)).await;
    assert_eq!(b["collections"], json!([POST]));
}
