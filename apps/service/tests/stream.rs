#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! `zone.stratos.sync.subscribeRecords` against the running service (SQLite, loopback port),
//! read with tokio-tungstenite and decoded by the small CBOR reader at the bottom of this file,
//! written from the atproto event-stream and DAG-CBOR specifications (it shares nothing with the
//! service's encoder).
//!
//! Covered: backfill across several pages then live delivery with no gap and no duplicate
//! across a reconnect with cursor under concurrent writes; every auth mode and its refusals; the
//! cursor rules (future, outdated, invalid); the service-level stream (enroll, update,
//! unenroll; unenroll ends the account's stream); the `domain` filter; heartbeats; slow
//! consumers; clean shutdown; a plain GET; two instances sharing a store through Valkey, and two
//! on PostgreSQL writing the same accounts at once.

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::StreamExt as _;
use reqwest::StatusCode;
use serde_json::{Value as Json, json};
use stratos_service::RunningServer;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::common;

use common::ADMIN;
const SYNC: &str = "sync-secret-for-tests";
const POST: &str = "zone.stratos.feed.post";
const SERVICE: &str = "did:web:nerv.tokyo.jp";

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Svc {
    server: Option<RunningServer>,
    http: reqwest::Client,
    base: String,
    path: std::path::PathBuf,
    _dir: Option<tempfile::TempDir>,
}

async fn start_with(extra: &[(&str, &str)]) -> Svc {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let mut svc = start_in(&path, extra).await;
    svc._dir = Some(dir);
    svc
}

/// A service over the data directory `path` (another instance may share it).
async fn start_in(path: &std::path::Path, extra: &[(&str, &str)]) -> Svc {
    let mut vars = vec![
        ("STRATOS_SYNC_TOKEN", SYNC),
        ("STRATOS_WRITE_RATE_MAX_WRITES", "1000000"),
    ];
    vars.extend_from_slice(extra);
    let config = common::config(path, &vars);
    let server = stratos_service::start(config, 2).await.unwrap();
    Svc {
        base: server.url(),
        server: Some(server),
        http: stratos_testkit::http_client(),
        path: path.to_path_buf(),
        _dir: None,
    }
}

fn post(text: &str, boundaries: &[&str]) -> Json {
    common::post_record(SERVICE, text, boundaries)
}

impl Svc {
    async fn xrpc_post(&self, nsid: &str, auth: &str, body: Json) -> (StatusCode, Json) {
        let res = self
            .http
            .post(format!("{}/xrpc/{nsid}", self.base))
            .header("authorization", auth)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(Json::Null))
    }

    async fn admin(&self, nsid: &str, body: Json) {
        let (s, b) = self.xrpc_post(nsid, &format!("Bearer {ADMIN}"), body).await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }

    async fn enroll(&self, did: &str, boundaries: &[&str]) {
        self.admin(
            "zone.stratos.admin.enrollActor",
            json!({ "did": did, "boundaries": boundaries }),
        )
        .await;
    }

    async fn create(&self, did: &str, text: &str, boundaries: &[&str]) -> Json {
        let (s, b) = self
            .xrpc_post(
                "com.atproto.repo.createRecord",
                &format!("Bearer {did}"),
                json!({ "repo": did, "collection": POST, "record": post(text, boundaries) }),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        b
    }

    fn ws_url(&self, query: &str) -> String {
        format!(
            "{}/xrpc/zone.stratos.sync.subscribeRecords?{query}",
            self.base.replacen("http", "ws", 1)
        )
    }

    async fn connect(&self, query: &str) -> Ws {
        tokio_tungstenite::connect_async(self.ws_url(query))
            .await
            .unwrap()
            .0
    }

    async fn connect_with_auth(&self, query: &str, auth: &str) -> Ws {
        let mut req = self.ws_url(query).into_client_request().unwrap();
        req.headers_mut()
            .insert("authorization", auth.parse().unwrap());
        tokio_tungstenite::connect_async(req).await.unwrap().0
    }

    fn stats(&self) -> stratos_service::StatsSnapshot {
        self.server.as_ref().unwrap().stream_stats()
    }

    async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.stop().await.unwrap();
        }
    }
}

/// What a subscriber saw in one WebSocket message.
#[derive(Debug, Clone, PartialEq)]
enum Frame {
    Message { t: String, body: Cbor },
    Error { error: String, message: String },
}

/// The next frame, `None` once the server closed (the close frame is returned as `Err`).
async fn next_frame(ws: &mut Ws) -> Result<Frame, Option<(CloseCode, String)>> {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("a frame within 20 s");
        match msg {
            Some(Ok(Message::Binary(bytes))) => return Ok(decode_frame(&bytes)),
            Some(Ok(Message::Close(c))) => {
                return Err(c.map(|c| (c.code, c.reason.to_string())));
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(other)) => panic!("unexpected message {other:?}"),
            Some(Err(_)) | None => return Err(None),
        }
    }
}

/// Reads an error frame and then the close (1008, reason = error name).
async fn expect_error(ws: &mut Ws, name: &str) -> String {
    let frame = next_frame(ws).await.expect("an error frame");
    let Frame::Error { error, message } = frame else {
        panic!("expected error {name}, got {frame:?}");
    };
    assert_eq!(error, name, "{message}");
    let close = next_frame(ws).await.expect_err("closed after the error");
    assert_eq!(close, Some((CloseCode::Policy, name.to_owned())));
    message
}

/// One op: action, path, CID bytes, the record's text.
type Op = (String, String, Option<Vec<u8>>, Option<String>);

/// A `#commit` as the consumer sees it.
#[derive(Debug, Clone)]
struct Commit {
    seq: u64,
    did: String,
    rev: String,
    ops: Vec<Op>,
}

fn as_commit(frame: &Frame) -> Commit {
    let Frame::Message { t, body } = frame else {
        panic!("expected a message, got {frame:?}");
    };
    assert_eq!(t, "#commit");
    let commit = body.get("commit").expect("commit");
    assert!(matches!(commit, Cbor::Cid(_)), "commit is a cid-link");
    let ops = body
        .get("ops")
        .and_then(Cbor::array)
        .expect("ops")
        .iter()
        .map(|op| {
            let action = op.get("action").and_then(Cbor::text).unwrap().to_owned();
            let path = op.get("path").and_then(Cbor::text).unwrap().to_owned();
            let cid = match op.get("cid") {
                Some(Cbor::Cid(c)) => Some(c.clone()),
                Some(Cbor::Null) | None => None,
                Some(other) => panic!("cid must be a cid-link or null, got {other:?}"),
            };
            let text = op
                .get("record")
                .and_then(|r| r.get("text"))
                .and_then(Cbor::text)
                .map(str::to_owned);
            (action, path, cid, text)
        })
        .collect();
    Commit {
        seq: body.get("seq").and_then(Cbor::uint).expect("seq"),
        did: body.get("did").and_then(Cbor::text).unwrap().to_owned(),
        rev: body.get("rev").and_then(Cbor::text).unwrap().to_owned(),
        ops,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backfill_then_live_without_gap_or_duplicate_across_a_reconnect() {
    let svc = start_with(&[]).await;
    let rei = "did:plc:rei";
    svc.enroll(rei, &["general"]).await;
    // More than one page of history before anyone subscribes (the reference read only 100).
    for i in 0..130 {
        svc.create(rei, &format!("before {i}"), &["general"]).await;
    }
    let total = 430;
    let base = svc.base.clone();
    let writer = tokio::spawn(async move {
        let mut tasks = Vec::new();
        for w in 0..4 {
            let http = stratos_testkit::http_client();
            let base = base.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..50 {
                    let res = http
                        .post(format!("{base}/xrpc/com.atproto.repo.createRecord"))
                        .header("authorization", "Bearer did:plc:rei")
                        .json(&json!({ "repo": "did:plc:rei", "collection": POST,
                                       "record": post(&format!("during {w}-{i}"), &["general"]) }))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(res.status(), StatusCode::OK);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });

    let mut seen: Vec<Commit> = Vec::new();
    let mut ws = svc.connect(&format!("did={rei}&syncToken={SYNC}")).await;
    // Drop the connection part-way, while writes are still running.
    while seen.len() < 170 {
        seen.push(as_commit(&next_frame(&mut ws).await.unwrap()));
    }
    drop(ws);
    let cursor = seen.last().unwrap().seq;
    let mut ws = svc
        .connect(&format!("did={rei}&cursor={cursor}&syncToken={SYNC}"))
        .await;
    writer.await.unwrap();
    for i in 0..100 {
        svc.create(rei, &format!("after {i}"), &["general"]).await;
    }
    while seen.len() < total {
        seen.push(as_commit(&next_frame(&mut ws).await.unwrap()));
    }
    let seqs: Vec<u64> = seen.iter().map(|c| c.seq).collect();
    assert_eq!(
        seqs,
        (1..=total as u64).collect::<Vec<_>>(),
        "consecutive, no gap, no duplicate"
    );
    // Nothing more arrives: the stream neither repeats nor invents events.
    svc.create(rei, "sentinel", &["general"]).await;
    let last = as_commit(&next_frame(&mut ws).await.unwrap());
    assert_eq!(last.ops[0].3.as_deref(), Some("sentinel"));
    assert_eq!(last.seq, total as u64 + 1);

    for (i, c) in seen.iter().enumerate() {
        assert_eq!(c.seq, i as u64 + 1, "consecutive, no gap, no duplicate");
        assert_eq!(c.did, rei);
        assert_eq!(c.rev.len(), 13, "a TID");
        assert_eq!(c.ops.len(), 1);
        let (action, path, cid, text) = &c.ops[0];
        assert_eq!(action, "create");
        assert!(
            path.starts_with(&format!("{POST}/")),
            "no leading slash: {path}"
        );
        assert!(cid.is_some());
        assert!(text.is_some(), "the record travels with the event");
    }
    let texts: BTreeSet<String> = seen.iter().filter_map(|c| c.ops[0].3.clone()).collect();
    assert_eq!(texts.len(), total, "every write exactly once");
    assert!(
        texts.contains("before 0") && texts.contains("during 3-49") && texts.contains("after 99")
    );
    let revs: Vec<&String> = seen.iter().map(|c| &c.rev).collect();
    let mut sorted = revs.clone();
    sorted.sort();
    assert_eq!(revs, sorted, "revisions ascend with the sequence");
    // Live delivery read nothing from storage on behalf of subscribers.
    assert_eq!(svc.stats().live_queries, 0, "{:?}", svc.stats());
    svc.stop().await;
}

/// Checks one `#commit` frame as a consumer of atproto sync v1.1 does, with nothing but the
/// frame and the account's key: the signature, and that undoing the ops on the commit's tree
/// (using only the frame's blocks) arrives at its `prevData`, which must be the root the frame
/// before it reached (`chain`: that root and revision). Returns the ops' actions.
fn verify_frame(
    frame: &Frame,
    key: &stratos_domain::crypto::PublicKey,
    chain: &mut Option<(stratos_domain::Cid, String)>,
) -> Vec<String> {
    use stratos_domain::Cid;
    use stratos_domain::repo::{Action, RecordOp};
    let Frame::Message { body, .. } = frame else {
        panic!("expected a message, got {frame:?}");
    };
    let link = |v: Option<&Cbor>| match v {
        Some(Cbor::Cid(b)) => Some(Cid::try_from(&b[..]).unwrap()),
        Some(Cbor::Null) | None => None,
        Some(other) => panic!("expected a cid-link or null, got {other:?}"),
    };
    let did =
        stratos_domain::syntax::Did::parse(body.get("did").and_then(Cbor::text).unwrap()).unwrap();
    let rev =
        stratos_domain::syntax::Tid::parse(body.get("rev").and_then(Cbor::text).unwrap()).unwrap();
    let since = body.get("since").and_then(Cbor::text).map(str::to_owned);
    let prev_data = link(body.get("prevData"));
    let Some(Cbor::Bytes(blocks)) = body.get("blocks") else {
        panic!("an unfiltered frame carries its blocks");
    };
    let ops: Vec<RecordOp> = body
        .get("ops")
        .and_then(Cbor::array)
        .unwrap()
        .iter()
        .map(|op| RecordOp {
            action: Action::parse(op.get("action").and_then(Cbor::text).unwrap()).unwrap(),
            path: op.get("path").and_then(Cbor::text).unwrap().to_owned(),
            cid: link(op.get("cid")),
            prev: link(op.get("prev")),
        })
        .collect();
    let event = stratos_domain::sync::CommitEvent {
        did: &did,
        commit: link(body.get("commit")).unwrap(),
        rev: &rev,
        prev_data,
        ops: &ops,
        blocks,
    };
    let verified = stratos_domain::sync::verify_commit(key, &event).expect("the frame verifies");
    // Tampering is caught: another previous root, or one op fewer.
    let forged = stratos_domain::sync::CommitEvent {
        prev_data: Some(verified.data),
        ..event
    };
    assert!(stratos_domain::sync::verify_commit(key, &forged).is_err());
    let fewer = stratos_domain::sync::CommitEvent {
        ops: &ops[1..],
        ..event
    };
    assert!(stratos_domain::sync::verify_commit(key, &fewer).is_err());
    if let Some((data, last_rev)) = chain.as_ref() {
        assert_eq!(
            prev_data,
            Some(*data),
            "prevData is the previous frame's root"
        );
        assert_eq!(
            since.as_deref(),
            Some(last_rev.as_str()),
            "since is the previous rev"
        );
    } else {
        // Enrollment committed the empty repository (no event), so the first frame starts there.
        assert_eq!(prev_data, Some(stratos_domain::mst::empty_root()));
    }
    *chain = Some((verified.data, rev.to_string()));
    ops.iter().map(|op| op.action.as_str().to_owned()).collect()
}

/// Every `#commit` frame, replayed from the log or sent live, verifies on its own and chains
/// onto the one before it; a multi-op commit (create, update, delete) inverts too. A filtered
/// subscriber gets no blocks (they would name records outside its boundary).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_frames_verify_on_their_own_replayed_and_live() {
    let svc = start_with(&[]).await;
    let rei = "did:plc:rei";
    let (s, enrolled) = svc
        .xrpc_post(
            "zone.stratos.admin.enrollActor",
            &format!("Bearer {ADMIN}"),
            json!({ "did": rei, "boundaries": ["general"] }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{enrolled}");
    let key =
        stratos_domain::crypto::PublicKey::from_did_key(enrolled["signingKey"].as_str().unwrap())
            .unwrap();
    let mut rkeys = Vec::new();
    for i in 0..40 {
        let out = svc.create(rei, &format!("before {i}"), &["general"]).await;
        rkeys.push(
            out["uri"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_owned(),
        );
    }
    let (s, b) = svc
        .xrpc_post(
            "com.atproto.repo.applyWrites",
            &format!("Bearer {rei}"),
            json!({ "repo": rei, "writes": [
                { "$type": "com.atproto.repo.applyWrites#create", "collection": POST,
                  "value": post("batch", &["general"]) },
                { "$type": "com.atproto.repo.applyWrites#update", "collection": POST,
                  "rkey": rkeys[3], "value": post("changed", &["general"]) },
                { "$type": "com.atproto.repo.applyWrites#delete", "collection": POST,
                  "rkey": rkeys[7] },
            ]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");

    let mut ws = svc.connect(&format!("did={rei}&syncToken={SYNC}")).await;
    let mut chain = None;
    for _ in 0..40 {
        assert_eq!(
            verify_frame(&next_frame(&mut ws).await.unwrap(), &key, &mut chain),
            ["create"]
        );
    }
    assert_eq!(
        verify_frame(&next_frame(&mut ws).await.unwrap(), &key, &mut chain),
        ["create", "update", "delete"]
    );
    // Live.
    svc.create(rei, "live", &["general"]).await;
    let (s, b) = svc
        .xrpc_post(
            "com.atproto.repo.deleteRecord",
            &format!("Bearer {rei}"),
            json!({ "repo": rei, "collection": POST, "rkey": rkeys[0] }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        verify_frame(&next_frame(&mut ws).await.unwrap(), &key, &mut chain),
        ["create"]
    );
    assert_eq!(
        verify_frame(&next_frame(&mut ws).await.unwrap(), &key, &mut chain),
        ["delete"]
    );

    let mut filtered = svc
        .connect(&format!("did={rei}&domain=general&syncToken={SYNC}"))
        .await;
    let Frame::Message { body, .. } = next_frame(&mut filtered).await.unwrap() else {
        panic!("a commit frame");
    };
    assert!(body.get("blocks").is_none() && body.get("prevData").is_none());
    svc.stop().await;
}

/// A tiny PLC directory serving DID documents for the given keys.
async fn fake_plc(docs: Vec<(&'static str, String)>) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let docs: Vec<(String, Json)> = docs
        .into_iter()
        .map(|(did, multikey)| {
            (
                did.to_owned(),
                json!({
                    "id": did,
                    "verificationMethod": [{
                        "id": format!("{did}#atproto"),
                        "type": "Multikey",
                        "controller": did,
                        "publicKeyMultibase": multikey,
                    }],
                }),
            )
        })
        .collect();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let docs = docs.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let found = docs
                    .iter()
                    .find(|(did, _)| head.starts_with(&format!("GET /{did} ")));
                let (status, body) = match found {
                    Some((_, doc)) => ("200 OK", doc.to_string()),
                    None => ("404 Not Found", String::new()),
                };
                let res = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(res.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}")
}

fn service_jwt(key: &stratos_domain::crypto::Keypair, iss: &str, aud: &str, lxm: &str) -> String {
    use base64::Engine as _;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let header = json!({ "typ": "JWT", "alg": key.public_key().algorithm().jwt_alg() });
    let claims = json!({ "iss": iss, "aud": aud, "exp": now + 60, "iat": now, "lxm": lxm });
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = key.sign(input.as_bytes()).unwrap();
    format!("{input}.{}", b64(&sig))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_auth_mode_and_every_refusal() {
    use stratos_domain::crypto::{KeyAlgorithm, Keypair};
    const APPVIEW: &str = "did:plc:appviewappviewappviewapp";
    const ACCOUNT: &str = "did:plc:accountaccountaccountacc";
    let appview_key = Keypair::generate(KeyAlgorithm::K256);
    let account_key = Keypair::generate(KeyAlgorithm::P256);
    let plc = fake_plc(vec![
        (APPVIEW, appview_key.public_key().to_multikey()),
        (ACCOUNT, account_key.public_key().to_multikey()),
    ])
    .await;
    let svc = start_with(&[
        ("STRATOS_PLC_URL", plc.as_str()),
        ("STRATOS_ALLOWED_APPVIEWS", APPVIEW),
    ])
    .await;
    let rei = "did:plc:rei";
    svc.enroll(rei, &["general"]).await;
    svc.enroll(ACCOUNT, &["general"]).await;
    svc.create(rei, "hello", &["general"]).await;
    svc.create(ACCOUNT, "mine", &["general"]).await;
    let lxm = "zone.stratos.sync.subscribeRecords";

    let first_text = |f: Frame| as_commit(&f).ops[0].3.clone();
    // 1. The static sync token: any account's stream and the service-level stream.
    let mut ws = svc.connect(&format!("did={rei}&syncToken={SYNC}")).await;
    assert_eq!(
        first_text(next_frame(&mut ws).await.unwrap()).as_deref(),
        Some("hello")
    );
    let mut ws = svc.connect(&format!("syncToken={SYNC}")).await;
    let Frame::Message { t, .. } = next_frame(&mut ws).await.unwrap() else {
        panic!()
    };
    assert_eq!(t, "#enrollment");
    // 2. A service-auth JWT from an allowed AppView, in syncToken.
    let jwt = service_jwt(&appview_key, APPVIEW, SERVICE, lxm);
    let mut ws = svc.connect(&format!("did={rei}&syncToken={jwt}")).await;
    assert_eq!(
        first_text(next_frame(&mut ws).await.unwrap()).as_deref(),
        Some("hello")
    );
    let mut ws = svc.connect(&format!("syncToken={jwt}")).await;
    assert!(matches!(
        next_frame(&mut ws).await.unwrap(),
        Frame::Message { .. }
    ));
    // ... and in the Authorization header.
    let mut ws = svc
        .connect_with_auth(&format!("did={rei}"), &format!("Bearer {jwt}"))
        .await;
    assert_eq!(
        first_text(next_frame(&mut ws).await.unwrap()).as_deref(),
        Some("hello")
    );
    // 3. An account's own JWT: its own stream only.
    let own = service_jwt(&account_key, ACCOUNT, SERVICE, lxm);
    let mut ws = svc.connect(&format!("did={ACCOUNT}&syncToken={own}")).await;
    assert_eq!(
        first_text(next_frame(&mut ws).await.unwrap()).as_deref(),
        Some("mine")
    );
    let mut ws = svc.connect(&format!("did={rei}&syncToken={own}")).await;
    expect_error(&mut ws, "AuthRequired").await;
    let mut ws = svc.connect(&format!("syncToken={own}")).await;
    expect_error(&mut ws, "AuthRequired").await;
    // 4. The owner's dev-mode bearer: its own stream only.
    let mut ws = svc
        .connect_with_auth(&format!("did={rei}"), &format!("Bearer {rei}"))
        .await;
    assert_eq!(
        first_text(next_frame(&mut ws).await.unwrap()).as_deref(),
        Some("hello")
    );
    let mut ws = svc
        .connect_with_auth(&format!("did={rei}"), "Bearer did:plc:sakura")
        .await;
    expect_error(&mut ws, "AuthRequired").await;
    let mut ws = svc.connect_with_auth("", &format!("Bearer {rei}")).await;
    expect_error(&mut ws, "AuthRequired").await;
    // 5. Everything else: nothing, a wrong token, wrong audience / method / key.
    let mut ws = svc.connect(&format!("did={rei}")).await;
    let m = expect_error(&mut ws, "AuthRequired").await;
    assert!(m.contains("syncToken"), "{m}");
    let mut ws = svc.connect(&format!("did={rei}&syncToken=wrong")).await;
    expect_error(&mut ws, "AuthRequired").await;
    for bad in [
        service_jwt(&appview_key, APPVIEW, "did:web:seele.example", lxm),
        service_jwt(
            &appview_key,
            APPVIEW,
            SERVICE,
            "com.atproto.repo.createRecord",
        ),
        service_jwt(&account_key, APPVIEW, SERVICE, lxm),
    ] {
        let mut ws = svc.connect(&format!("did={rei}&syncToken={bad}")).await;
        expect_error(&mut ws, "AuthRequired").await;
    }
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_rules_future_outdated_invalid_and_live_only() {
    let svc = start_with(&[]).await;
    let rei = "did:plc:rei";
    svc.enroll(rei, &["general"]).await;
    for i in 0..5 {
        svc.create(rei, &format!("p{i}"), &["general"]).await;
    }
    let mut ws = svc
        .connect(&format!("did={rei}&cursor=6&syncToken={SYNC}"))
        .await;
    expect_error(&mut ws, "FutureCursor").await;
    let mut ws = svc
        .connect(&format!("did={rei}&cursor=abc&syncToken={SYNC}"))
        .await;
    expect_error(&mut ws, "InvalidRequest").await;
    let mut ws = svc
        .connect(&format!("did={rei}&cursor=-1&syncToken={SYNC}"))
        .await;
    expect_error(&mut ws, "InvalidRequest").await;
    let mut ws = svc
        .connect(&format!("did=did:plc:nobody&syncToken={SYNC}"))
        .await;
    expect_error(&mut ws, "NotFound").await;
    // cursor = latest: nothing replayed, the next write arrives live.
    let mut ws = svc
        .connect(&format!("did={rei}&cursor=5&syncToken={SYNC}"))
        .await;
    svc.create(rei, "live", &["general"]).await;
    let c = as_commit(&next_frame(&mut ws).await.unwrap());
    assert_eq!((c.seq, c.ops[0].3.as_deref()), (6, Some("live")));
    // cursor in the middle: exactly what follows it.
    let mut ws = svc
        .connect(&format!("did={rei}&cursor=3&syncToken={SYNC}"))
        .await;
    for expected in 4..=6 {
        assert_eq!(as_commit(&next_frame(&mut ws).await.unwrap()).seq, expected);
    }

    // Beyond retention: drop the oldest events of the account's log, as a retention job would.
    common::drop_oldest_events(&svc.path, rei, 3).await;
    let mut ws = svc
        .connect(&format!("did={rei}&cursor=1&syncToken={SYNC}"))
        .await;
    let Frame::Message { t, body } = next_frame(&mut ws).await.unwrap() else {
        panic!()
    };
    assert_eq!(t, "#info");
    assert_eq!(
        body.get("name").and_then(Cbor::text),
        Some("OutdatedCursor")
    );
    for expected in 4..=6 {
        assert_eq!(as_commit(&next_frame(&mut ws).await.unwrap()).seq, expected);
    }
    // No cursor means "from the start of what is retained", never outdated.
    let mut ws = svc.connect(&format!("did={rei}&syncToken={SYNC}")).await;
    assert_eq!(as_commit(&next_frame(&mut ws).await.unwrap()).seq, 4);

    // The service-level log has the same rules.
    svc.enroll("did:plc:asuka", &["general"]).await;
    svc.enroll("did:plc:shinji", &["general"]).await;
    let mut ws = svc.connect(&format!("cursor=9&syncToken={SYNC}")).await;
    expect_error(&mut ws, "FutureCursor").await;
    let storage =
        stratos_sqlite::SqliteStorage::open(&svc.path, stratos_sqlite::Durability::Relaxed)
            .await
            .unwrap();
    use stratos_ports::enrollment_store::EnrollmentStore as _;
    assert_eq!(storage.enrollments.prune_events(3).await.unwrap(), 2);
    let mut ws = svc.connect(&format!("cursor=1&syncToken={SYNC}")).await;
    let Frame::Message { t, .. } = next_frame(&mut ws).await.unwrap() else {
        panic!()
    };
    assert_eq!(t, "#info");
    let Frame::Message { t, body } = next_frame(&mut ws).await.unwrap() else {
        panic!()
    };
    assert_eq!(t, "#enrollment");
    assert_eq!(body.get("seq").and_then(Cbor::uint), Some(3));
    assert_eq!(body.get("did").and_then(Cbor::text), Some("did:plc:shinji"));
    svc.stop().await;
}

fn enrollment(frame: &Frame) -> (u64, String, String, Vec<String>) {
    let Frame::Message { t, body } = frame else {
        panic!("expected a message, got {frame:?}");
    };
    assert_eq!(t, "#enrollment");
    assert!(body.get("time").and_then(Cbor::text).is_some());
    (
        body.get("seq").and_then(Cbor::uint).unwrap(),
        body.get("did").and_then(Cbor::text).unwrap().to_owned(),
        body.get("action").and_then(Cbor::text).unwrap().to_owned(),
        body.get("boundaries")
            .and_then(Cbor::array)
            .unwrap()
            .iter()
            .map(|b| b.text().unwrap().to_owned())
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_level_stream_replays_and_follows_enrollment_changes() {
    let svc = start_with(&[]).await;
    let b = |n: &str| format!("{SERVICE}/{n}");
    svc.enroll("did:plc:rei", &["general"]).await;
    let mut service = svc.connect(&format!("syncToken={SYNC}")).await;
    assert_eq!(
        enrollment(&next_frame(&mut service).await.unwrap()),
        (1, "did:plc:rei".into(), "enroll".into(), vec![b("general")])
    );
    let mut actor = svc
        .connect(&format!("did=did:plc:rei&syncToken={SYNC}"))
        .await;
    svc.create("did:plc:rei", "bye soon", &["general"]).await;
    svc.admin(
        "zone.stratos.admin.addBoundary",
        json!({ "did": "did:plc:rei", "boundary": "other" }),
    )
    .await;
    svc.enroll("did:plc:asuka", &["other"]).await;
    let (s, body) = svc
        .xrpc_post(
            "zone.stratos.enrollment.unenroll",
            "Bearer did:plc:rei",
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        enrollment(&next_frame(&mut service).await.unwrap()),
        (
            2,
            "did:plc:rei".into(),
            "update".into(),
            vec![b("general"), b("other")]
        )
    );
    assert_eq!(
        enrollment(&next_frame(&mut service).await.unwrap()),
        (3, "did:plc:asuka".into(), "enroll".into(), vec![b("other")])
    );
    assert_eq!(
        enrollment(&next_frame(&mut service).await.unwrap()),
        (4, "did:plc:rei".into(), "unenroll".into(), vec![])
    );
    // The account's own stream delivered its commit, then ended with the unenrollment.
    assert_eq!(
        as_commit(&next_frame(&mut actor).await.unwrap()).ops[0]
            .3
            .as_deref(),
        Some("bye soon")
    );
    expect_error(&mut actor, "NotFound").await;
    // A reconnect with cursor resumes after it.
    let mut again = svc.connect(&format!("cursor=2&syncToken={SYNC}")).await;
    assert_eq!(enrollment(&next_frame(&mut again).await.unwrap()).0, 3);
    assert_eq!(enrollment(&next_frame(&mut again).await.unwrap()).0, 4);
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domain_filter_sends_only_that_boundary() {
    let svc = start_with(&[]).await;
    let rei = "did:plc:rei";
    svc.enroll(rei, &["general", "other"]).await;
    let g = svc.create(rei, "in general", &["general"]).await;
    svc.create(rei, "in other", &["other"]).await;
    let rkey = g["uri"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    // Moved out of `general`: a filtered subscriber sees it leave.
    let (s, b) = svc
        .xrpc_post(
            "com.atproto.repo.putRecord",
            &format!("Bearer {rei}"),
            json!({ "repo": rei, "collection": POST, "rkey": rkey, "record": post("moved", &["other"]) }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    for query in [
        "domain=general".to_owned(),
        format!("domain={SERVICE}/general"),
    ] {
        let mut ws = svc
            .connect(&format!("did={rei}&{query}&syncToken={SYNC}"))
            .await;
        let first = as_commit(&next_frame(&mut ws).await.unwrap());
        assert_eq!(
            (first.seq, first.ops[0].3.as_deref()),
            (1, Some("in general"))
        );
        let second = as_commit(&next_frame(&mut ws).await.unwrap());
        assert_eq!(second.seq, 3, "seq 2 (another boundary) is skipped");
        assert_eq!(
            (second.ops[0].0.as_str(), &second.ops[0].2),
            ("delete", &None)
        );
        svc.create(rei, "live general", &["general"]).await;
        svc.create(rei, "live other", &["other"]).await;
        svc.create(rei, "live general 2", &["general"]).await;
        let a = as_commit(&next_frame(&mut ws).await.unwrap());
        let b = as_commit(&next_frame(&mut ws).await.unwrap());
        assert!(a.ops[0].3.as_deref().unwrap().starts_with("live general"));
        assert!(b.ops[0].3.as_deref().unwrap().starts_with("live general"));
        assert!(b.seq > a.seq + 1);
    }
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_readers_and_drop_silent_clients() {
    let svc = start_with(&[("STRATOS_SYNC_HEARTBEAT_SECS", "1")]).await;
    svc.enroll("did:plc:rei", &["general"]).await;
    // A reader answers pings (tungstenite does so while reading) and stays connected.
    let mut reader = svc.connect(&format!("syncToken={SYNC}")).await;
    let mut silent = svc.connect(&format!("syncToken={SYNC}")).await;
    let mut pings = 0;
    let started = tokio::time::Instant::now();
    while started.elapsed() < Duration::from_millis(3500) {
        match tokio::time::timeout(Duration::from_millis(200), reader.next()).await {
            Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
            Ok(Some(Ok(Message::Binary(_)))) | Err(_) => {}
            other => panic!("reader lost its connection: {other:?}"),
        }
    }
    assert!(pings >= 2, "pings: {pings}");
    // The silent client never read, so never answered: it was closed.
    let mut closed = None;
    while let Some(msg) = silent.next().await {
        if let Ok(Message::Close(c)) = msg {
            closed = c;
            break;
        }
    }
    let closed = closed.expect("a close frame");
    assert_eq!(closed.code, CloseCode::Policy);
    svc.create("did:plc:rei", "still here", &["general"]).await;
    reader.close(None).await.ok();
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumers_are_disconnected_and_laggards_catch_up() {
    let svc = start_with(&[
        ("STRATOS_SYNC_SEND_TIMEOUT_SECS", "2"),
        ("STRATOS_SYNC_LIVE_WINDOW", "2"),
        ("STRATOS_MAX_BODY_BYTES", "4000000"),
    ])
    .await;
    let rei = "did:plc:rei";
    svc.enroll(rei, &["general"]).await;
    // A consumer with a tiny receive buffer that stops reading.
    let stalled = {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let stream = socket
            .connect(svc.server.as_ref().unwrap().addr)
            .await
            .unwrap();
        tokio_tungstenite::client_async(svc.ws_url(&format!("did={rei}&syncToken={SYNC}")), stream)
            .await
            .unwrap()
            .0
    };
    // A laggard that pauses briefly (less than the send timeout) then reads on.
    let mut laggard = svc.connect(&format!("did={rei}&syncToken={SYNC}")).await;
    // Big commits: 150 records of ~3 kB each per event.
    let big = "👩\u{200d}👩\u{200d}👧\u{200d}👦".repeat(110);
    let mut commits = 0u64;
    let mut seqs = Vec::new();
    while svc.stats().slow_disconnects == 0 {
        let writes: Vec<Json> = (0..150)
            .map(|_| json!({ "$type": "com.atproto.repo.applyWrites#create", "collection": POST, "value": post(&big, &["general"]) }))
            .collect();
        let (s, b) = svc
            .xrpc_post(
                "com.atproto.repo.applyWrites",
                &format!("Bearer {rei}"),
                json!({ "repo": rei, "writes": writes }),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        commits += 1;
        assert!(commits < 400, "the stalled consumer was never disconnected");
        // Keep the laggard just within its time budget.
        if commits.is_multiple_of(3) {
            for _ in 0..3 {
                seqs.push(as_commit(&next_frame(&mut laggard).await.unwrap()).seq);
            }
        }
    }
    // The laggard saw every event, in order (catching up from the log when it fell out of the
    // two-event window), and was never cut off: it kept accepting frames.
    while (seqs.len() as u64) < commits {
        match next_frame(&mut laggard).await {
            Ok(f) => seqs.push(as_commit(&f).seq),
            Err(e) => panic!("laggard disconnected: {e:?}"),
        }
    }
    assert_eq!(seqs, (1..=commits).collect::<Vec<_>>());
    drop(stalled);
    let stats = svc.stats();
    assert_eq!(
        stats.slow_disconnects, 1,
        "only the stalled consumer: {stats:?}"
    );
    svc.stop().await;
}

/// A consumer that stops reading while writes go on is told why it is cut off: once it reads
/// again it gets every frame buffered for it, in order, then `#error ConsumerTooSlow` and the
/// close (the error frame has room kept for it, so a full buffer cannot keep it out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_consumer_reads_consumer_too_slow_when_it_reads_again() {
    let svc = start_with(&[
        ("STRATOS_SYNC_SEND_TIMEOUT_SECS", "5"),
        ("STRATOS_MAX_BODY_BYTES", "4000000"),
    ])
    .await;
    let rei = "did:plc:rei";
    svc.enroll(rei, &["general"]).await;
    let mut stalled = {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let stream = socket
            .connect(svc.server.as_ref().unwrap().addr)
            .await
            .unwrap();
        tokio_tungstenite::client_async(
            svc.ws_url(&format!("did={rei}&syncToken={SYNC}")),
            tokio_tungstenite::MaybeTlsStream::Plain(stream),
        )
        .await
        .unwrap()
        .0
    };
    // Writes go on in the background (big commits fill the socket buffers quickly) until the
    // test has seen the error.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (http, base, stop) = (svc.http.clone(), svc.base.clone(), stop.clone());
        let big = "👩\u{200d}👩\u{200d}👧\u{200d}👦".repeat(110);
        tokio::spawn(async move {
            let mut commits = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && commits < 400 {
                let writes: Vec<Json> = (0..150)
                    .map(|_| json!({ "$type": "com.atproto.repo.applyWrites#create", "collection": POST, "value": post(&big, &["general"]) }))
                    .collect();
                let res = http
                    .post(format!("{base}/xrpc/com.atproto.repo.applyWrites"))
                    .header("authorization", format!("Bearer {rei}"))
                    .json(&json!({ "repo": rei, "writes": writes }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), StatusCode::OK);
                commits += 1;
            }
            commits
        })
    };
    while svc.stats().slow_disconnects == 0 {
        assert!(
            !writer.is_finished(),
            "the stalled consumer was never cut off"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The consumer reads again a while after it was cut off: later than the 1 s + 1 s the
    // service used to wait for room for the error frame and the close, within the send timeout
    // a cut-off consumer now has to take what is buffered for it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut seqs = Vec::new();
    let (error, message) = loop {
        match next_frame(&mut stalled).await {
            Ok(Frame::Error { error, message }) => break (error, message),
            Ok(frame) => seqs.push(as_commit(&frame).seq),
            Err(close) => panic!("closed without an error frame after {seqs:?}: {close:?}"),
        }
    };
    assert_eq!(error, "ConsumerTooSlow", "{message}");
    assert!(message.contains("cursor"), "{message}");
    let close = next_frame(&mut stalled)
        .await
        .expect_err("closed after the error");
    assert_eq!(
        close,
        Some((CloseCode::Policy, "ConsumerTooSlow".to_owned()))
    );
    // Nothing it was sent before the error is missing: it can resume from the last seq.
    assert!(!seqs.is_empty());
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let commits = writer.await.unwrap();
    assert!(commits > seqs.len() as u64, "it was cut off before the end");
    assert_eq!(svc.stats().slow_disconnects, 1);
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_service_closes_streams_and_plain_gets_are_refused() {
    let svc = start_with(&[]).await;
    let res = svc
        .http
        .get(format!(
            "{}/xrpc/zone.stratos.sync.subscribeRecords?syncToken={SYNC}",
            svc.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body: Json = res.json().await.unwrap();
    assert_eq!(body["error"], "InvalidRequest", "{body}");

    let mut ws = svc.connect(&format!("syncToken={SYNC}")).await;
    let stopping = tokio::spawn(svc.stop());
    let close = next_frame(&mut ws).await.expect_err("closed");
    assert_eq!(close.map(|c| c.0), Some(CloseCode::Away));
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("the server stops promptly")
        .unwrap();
}

/// Two instances over one data directory, connected through Valkey: events committed on one
/// reach the other's live subscribers (records and enrollments), in order and without gaps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_instance_delivers_through_valkey() {
    let Ok(url) = std::env::var("STRATOS_TEST_VALKEY_URL") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "STRATOS_TEST_VALKEY_URL is required in CI"
        );
        eprintln!("SKIPPED: STRATOS_TEST_VALKEY_URL not set");
        return;
    };
    let a = start_with(&[("STRATOS_VALKEY_URL", url.as_str())]).await;
    a.enroll("did:plc:rei", &["general"]).await;
    let b = start_in(&a.path, &[("STRATOS_VALKEY_URL", url.as_str())]).await;
    let mut records = b
        .connect(&format!("did=did:plc:rei&syncToken={SYNC}"))
        .await;
    let mut service = b.connect(&format!("syncToken={SYNC}")).await;
    assert_eq!(enrollment(&next_frame(&mut service).await.unwrap()).0, 1);
    let mut seqs = Vec::new();
    for i in 0..20 {
        a.create("did:plc:rei", &format!("from a {i}"), &["general"])
            .await;
        if i % 5 == 4 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    while seqs.len() < 20 {
        let c = as_commit(&next_frame(&mut records).await.unwrap());
        assert_eq!(c.ops[0].3, Some(format!("from a {}", seqs.len())));
        seqs.push(c.seq);
    }
    assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
    a.enroll("did:plc:asuka", &["general"]).await;
    assert_eq!(
        enrollment(&next_frame(&mut service).await.unwrap()),
        (
            2,
            "did:plc:asuka".into(),
            "enroll".into(),
            vec![format!("{SERVICE}/general")]
        )
    );
    b.stop().await;
    a.stop().await;
}

/// Two instances on one PostgreSQL and one Valkey, writing the same accounts at once (issue 20):
/// no commit is lost or doubled, each account's sequence numbers stay gapless, and a subscriber
/// on one instance receives every write made through the other, in order. The delay from a
/// write's answer to its frame on the other instance is printed (p50/p99); the bound asserted is
/// loose (the figure for docs/performance.md is the printed one; the host is shared and noisy),
/// but far below what delivery without Valkey's notification would take.
#[cfg(all(feature = "postgres", feature = "valkey"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_on_postgres_write_the_same_accounts() {
    use sea_orm::sqlx::{self, Connection as _};
    let (Ok(pg), Ok(valkey)) = (
        std::env::var("STRATOS_TEST_POSTGRES_URL"),
        std::env::var("STRATOS_TEST_VALKEY_URL"),
    ) else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "STRATOS_TEST_POSTGRES_URL and STRATOS_TEST_VALKEY_URL are required in CI"
        );
        eprintln!(
            "SKIPPED: two instances (set STRATOS_TEST_POSTGRES_URL and STRATOS_TEST_VALKEY_URL)"
        );
        return;
    };
    // A database of its own: the service's schema names carry no prefix.
    let name = format!("stratos_two_instances_{}", std::process::id());
    let admin_sql = |sql: String| {
        let pg = pg.clone();
        async move {
            let mut conn = sqlx::PgConnection::connect(&pg).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .unwrap();
        }
    };
    admin_sql(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
    admin_sql(format!("CREATE DATABASE {name}")).await;
    let (base, query) = pg.split_once('?').unwrap_or((&pg, ""));
    let host = base.rsplit_once('/').unwrap().0;
    let url = if query.is_empty() {
        format!("{host}/{name}")
    } else {
        format!("{host}/{name}?{query}")
    };
    // Another test's instances share the Valkey channel; their notices name accounts this
    // database does not have, which the instances here look up and ignore.
    let vars = [
        ("STORAGE_BACKEND", "postgres"),
        ("STRATOS_POSTGRES_URL", url.as_str()),
        ("STRATOS_VALKEY_URL", valkey.as_str()),
    ];
    let a = std::sync::Arc::new(start_with(&vars).await);
    let b = std::sync::Arc::new(start_in(&a.path, &vars).await);
    const ACTORS: [&str; 3] = ["did:plc:two0", "did:plc:two1", "did:plc:two2"];
    const PER_WRITER: usize = 25;
    for did in ACTORS {
        a.enroll(did, &["general"]).await;
    }
    // Subscribers on both instances, for every account.
    let mut subs = Vec::new();
    for did in ACTORS {
        for (at, svc) in [("a", &a), ("b", &b)] {
            let ws = svc.connect(&format!("did={did}&syncToken={SYNC}")).await;
            subs.push((did, at, ws));
        }
    }
    // Two writers per account, one through each instance, at the same time. Each remembers
    // when each write was answered.
    let answered = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::<
        String,
        (&'static str, std::time::Instant),
    >::new()));
    let mut writers = Vec::new();
    for did in ACTORS {
        for (at, svc) in [("a", a.clone()), ("b", b.clone())] {
            let answered = answered.clone();
            writers.push(tokio::spawn(async move {
                for i in 0..PER_WRITER {
                    let text = format!("{did} via {at} {i}");
                    svc.create(did, &text, &["general"]).await;
                    answered
                        .lock()
                        .unwrap()
                        .insert(text, (at, std::time::Instant::now()));
                }
            }));
        }
    }
    // Read every subscriber to the end while the writers run.
    let total = 2 * PER_WRITER;
    let mut readers = Vec::new();
    for (did, at, mut ws) in subs {
        readers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while seen.len() < total {
                let frame = tokio::time::timeout(Duration::from_secs(30), next_frame(&mut ws))
                    .await
                    .unwrap_or_else(|_| panic!("{did} on {at}: only {} of {total}", seen.len()))
                    .unwrap();
                let c = as_commit(&frame);
                assert_eq!(c.did, did);
                let text = c.ops[0].3.clone().unwrap();
                seen.push((c.seq, text, std::time::Instant::now()));
            }
            (did, at, seen)
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let answered = answered.lock().unwrap().clone();
    let mut delays = Vec::new();
    for r in readers {
        let (did, at, seen) = r.await.unwrap();
        // Gapless, in order, each write exactly once.
        let seqs: Vec<u64> = seen.iter().map(|(seq, _, _)| *seq).collect();
        assert_eq!(
            seqs,
            (1..=total as u64).collect::<Vec<_>>(),
            "{did} on {at}"
        );
        let texts: BTreeSet<&str> = seen.iter().map(|(_, t, _)| t.as_str()).collect();
        assert_eq!(texts.len(), total, "{did} on {at}: a write seen twice");
        for (_, text, when) in &seen {
            let (via, done) = answered
                .get(text)
                .unwrap_or_else(|| panic!("{did} on {at}: {text} was never written"));
            assert!(text.starts_with(did));
            // Written through the other instance: the cross-instance delay. A frame can come
            // before the writer has read its answer; that counts as no delay.
            if *via != at {
                delays.push(when.saturating_duration_since(*done));
            }
        }
    }
    assert_eq!(delays.len(), ACTORS.len() * 2 * PER_WRITER);
    delays.sort();
    let p = |q: f64| delays[((delays.len() as f64 * q).ceil() as usize).clamp(1, delays.len()) - 1];
    eprintln!(
        "two instances: {} cross-instance deliveries, p50 {:?}, p99 {:?}, max {:?}",
        delays.len(),
        p(0.5),
        p(0.99),
        delays[delays.len() - 1]
    );
    assert!(p(0.99) < Duration::from_secs(2), "p99 {:?}", p(0.99));
    // Both instances list every record of each account once.
    for did in ACTORS {
        for svc in [&a, &b] {
            let res: Json = svc
                .http
                .get(format!(
                    "{}/xrpc/com.atproto.repo.listRecords?repo={did}&collection={POST}&limit=100",
                    svc.base
                ))
                .header("authorization", format!("Bearer {did}"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let texts: BTreeSet<&str> = res["records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["value"]["text"].as_str().unwrap())
                .collect();
            assert_eq!(texts.len(), total, "{did}: {res}");
        }
    }
    std::sync::Arc::into_inner(b).unwrap().stop().await;
    std::sync::Arc::into_inner(a).unwrap().stop().await;
    admin_sql(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
}

// ---- an independent event-stream frame decoder (RFC 8949 CBOR, atproto DAG-CBOR subset) -------

/// A decoded CBOR value.
#[derive(Debug, Clone, PartialEq)]
enum Cbor {
    Uint(u64),
    Neg(i128),
    Bytes(Vec<u8>),
    Text(String),
    Array(Vec<Cbor>),
    Map(Vec<(String, Cbor)>),
    /// Tag 42: the CID bytes after the 0x00 multibase prefix.
    Cid(Vec<u8>),
    Bool(bool),
    Null,
}

impl Cbor {
    fn get(&self, key: &str) -> Option<&Cbor> {
        match self {
            Cbor::Map(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
    fn text(&self) -> Option<&str> {
        match self {
            Cbor::Text(s) => Some(s),
            _ => None,
        }
    }
    fn uint(&self) -> Option<u64> {
        match self {
            Cbor::Uint(n) => Some(*n),
            _ => None,
        }
    }
    fn array(&self) -> Option<&[Cbor]> {
        match self {
            Cbor::Array(a) => Some(a),
            _ => None,
        }
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> u8 {
        let b = self.buf[self.pos];
        self.pos += 1;
        b
    }
    fn take(&mut self, n: usize) -> &[u8] {
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        s
    }
    /// Major type and argument; DAG-CBOR forbids indefinite lengths.
    fn head(&mut self) -> (u8, u64) {
        let b = self.byte();
        let (major, info) = (b >> 5, b & 0x1f);
        let arg = match info {
            0..=23 => u64::from(info),
            24 => u64::from(self.byte()),
            25 => u64::from(u16::from_be_bytes(self.take(2).try_into().unwrap())),
            26 => u64::from(u32::from_be_bytes(self.take(4).try_into().unwrap())),
            27 => u64::from_be_bytes(self.take(8).try_into().unwrap()),
            _ => panic!("indefinite or reserved length (info {info})"),
        };
        (major, arg)
    }
    fn value(&mut self) -> Cbor {
        let (major, arg) = self.head();
        let n = usize::try_from(arg).unwrap();
        match major {
            0 => Cbor::Uint(arg),
            1 => Cbor::Neg(-1 - i128::from(arg)),
            2 => Cbor::Bytes(self.take(n).to_vec()),
            3 => Cbor::Text(String::from_utf8(self.take(n).to_vec()).unwrap()),
            4 => Cbor::Array((0..n).map(|_| self.value()).collect()),
            5 => {
                let mut entries: Vec<(String, Cbor)> = Vec::with_capacity(n);
                for _ in 0..n {
                    let Cbor::Text(k) = self.value() else {
                        panic!("map keys are strings in DAG-CBOR")
                    };
                    // Canonical order: shorter keys first, then bytewise.
                    if let Some((prev, _)) = entries.last() {
                        assert!(
                            (prev.len(), prev.as_bytes()) < (k.len(), k.as_bytes()),
                            "map keys out of canonical order: {prev} before {k}"
                        );
                    }
                    let v = self.value();
                    entries.push((k, v));
                }
                Cbor::Map(entries)
            }
            6 => {
                assert_eq!(arg, 42, "only tag 42 (CID) exists in DAG-CBOR");
                let Cbor::Bytes(b) = self.value() else {
                    panic!("tag 42 wraps bytes")
                };
                assert_eq!(
                    b[0], 0,
                    "CID bytes start with the identity multibase prefix"
                );
                assert_eq!(b[1], 1, "CIDv1");
                Cbor::Cid(b[1..].to_vec())
            }
            7 => match arg {
                20 => Cbor::Bool(false),
                21 => Cbor::Bool(true),
                22 => Cbor::Null,
                _ => panic!("simple/float value {arg} not expected"),
            },
            _ => unreachable!(),
        }
    }
}

/// One WebSocket message = header then body, nothing after.
fn decode_frame(bytes: &[u8]) -> Frame {
    let mut r = Reader { buf: bytes, pos: 0 };
    let header = r.value();
    let body = r.value();
    assert_eq!(r.pos, bytes.len(), "trailing bytes after the body");
    match header.get("op") {
        Some(Cbor::Uint(1)) => {
            let t = header.get("t").and_then(Cbor::text).expect("t").to_owned();
            assert!(t.starts_with('#'), "short type names: {t}");
            Frame::Message { t, body }
        }
        Some(Cbor::Neg(-1)) => Frame::Error {
            error: body.get("error").and_then(Cbor::text).unwrap().to_owned(),
            message: body
                .get("message")
                .and_then(Cbor::text)
                .unwrap_or_default()
                .to_owned(),
        },
        other => panic!("unknown op {other:?}"),
    }
}
