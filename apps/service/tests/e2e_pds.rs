#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! Stratos against a REAL atproto network: the PLC directory and PDS of `e2e/harness.mjs`
//! (`@did-plc/server` in memory, `@atproto/pds` on SQLite, both on loopback), installed by
//! `scripts/e2e-env` under `target/e2e` (or `STRATOS_E2E_DIR`). Nothing here is a stub: tokens
//! are minted by the PDS, identities resolved through the PLC directory, and exported
//! repositories checked by `@atproto/repo` (`e2e/verify-car.mjs`).
//!
//! The harness is started by `stratos_testkit::e2e` (shared with the OAuth client's real-PDS
//! test). Without the install every test prints one `SKIPPED:` line and passes — except under
//! `CI=true`, where a missing install is a failure. An install made from another
//! `e2e/package-lock.json` is never skipped: the harness refuses it and the tests fail, telling
//! to re-run `scripts/e2e-env`.
//!
//! The tests share one harness process (one PLC, one PDS; each test uses its own account). It is
//! started by the first test that needs it and lives until the test process exits, when its stdin
//! closes and it stops itself — also when the test process is killed. A `Harness` a test owns
//! is stopped when dropped.

use std::path::Path;
use std::sync::OnceLock;

use reqwest::StatusCode;
use serde_json::{Value, json};
use stratos_domain::car::{self, CarLimits};
use stratos_testkit::e2e::{Account, Harness, installed_node};

mod common;

use common::ADMIN;

/// The Stratos service DID of `common::config`: the `aud` of every service-auth token.
const SERVICE_DID: &str = "did:web:nerv.tokyo.jp";
const POST: &str = "zone.stratos.feed.post";
const ENROLLMENT: &str = "zone.stratos.actor.enrollment";

// ---------------------------------------------------------------------------------------------
// The harness (the launcher is `stratos_testkit::e2e`)

/// The harness the tests share, started on first use; `None` when it is not installed.
fn harness() -> Option<&'static Harness> {
    static SHARED: OnceLock<Result<Harness, String>> = OnceLock::new();
    let node = installed_node()?;
    match SHARED.get_or_init(|| Harness::start(&node, &["alice", "bob", "carol"])) {
        Ok(h) => Some(h),
        Err(e) => panic!("{e}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Talking to the PDS and to Stratos

async fn xrpc_post(
    http: &reqwest::Client,
    base: &str,
    nsid: &str,
    token: Option<&str>,
    body: &Value,
) -> (StatusCode, Value) {
    let mut req = http.post(format!("{base}/xrpc/{nsid}")).json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn xrpc_get(
    http: &reqwest::Client,
    base: &str,
    path_and_query: &str,
    token: Option<&str>,
) -> (StatusCode, Value) {
    let (status, bytes) = xrpc_get_bytes(http, base, path_and_query, token).await;
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn xrpc_get_bytes(
    http: &reqwest::Client,
    base: &str,
    path_and_query: &str,
    token: Option<&str>,
) -> (StatusCode, Vec<u8>) {
    let mut req = http.get(format!("{base}/xrpc/{path_and_query}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    (status, res.bytes().await.unwrap().to_vec())
}

/// A PDS session (`com.atproto.server.createSession`): the access JWT.
async fn pds_session(_http: &reqwest::Client, h: &Harness, account: &Account) -> String {
    h.session(account).await.unwrap()
}

/// A service-auth JWT minted by the PDS (`com.atproto.server.getServiceAuth`) for `aud`/`lxm`.
async fn service_auth(
    _http: &reqwest::Client,
    h: &Harness,
    session: &str,
    aud: &str,
    lxm: &str,
) -> String {
    h.service_auth(session, aud, lxm).await.unwrap()
}

/// The Stratos service in-process, resolving identities through the harness's PLC directory.
///
/// Dev mode stays on (`common::config`): it is what lets the identity resolver use an `http://`
/// PLC directory on loopback. Its `Bearer <did>` shortcut plays no part here — every request
/// carries a JWT, and the refusals of altered and misdirected tokens show they are verified.
async fn start_stratos(h: &Harness, dir: &Path) -> stratos_service::RunningServer {
    let config = common::config(
        dir,
        &[
            ("STRATOS_PLC_URL", h.plc_url.as_str()),
            // The PLC directory and the PDS are on loopback, which outbound fetches refuse
            // unless this is on (it follows dev mode by default; said here so it stays on).
            ("STRATOS_OUTBOUND_ALLOW_PRIVATE", "true"),
        ],
    );
    stratos_service::start(config, 1).await.unwrap()
}

async fn admin_enroll(http: &reqwest::Client, base: &str, did: &str) {
    let (s, body) = xrpc_post(
        http,
        base,
        "zone.stratos.admin.enrollActor",
        Some(ADMIN),
        &json!({ "did": did, "boundaries": ["general"] }),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
}

fn post(text: &str) -> Value {
    common::post_record(SERVICE_DID, text, &["general"])
}

fn rkey_of(uri: &Value) -> String {
    uri.as_str().unwrap().rsplit('/').next().unwrap().to_owned()
}

// ---------------------------------------------------------------------------------------------
// Tests

/// (a) The PDS keeps what we write: a session from `createSession`, an enrollment-shaped record
/// in `zone.stratos.actor.enrollment` (a lexicon the PDS does not know) created and read back
/// with the same value and CID, and the PDS's own repository export verifying with the account's
/// PLC-published key — so `verify-car` accepts a genuine atproto CAR. Refusals show each step
/// can fail.
#[tokio::test]
async fn a_record_written_to_the_real_pds_reads_back() {
    let Some(h) = harness() else { return };
    let http = stratos_testkit::http_client();
    let alice = h.account("alice.test");
    let session = pds_session(&http, h, &alice).await;

    let record = json!({
        "$type": ENROLLMENT,
        "service": "https://nerv.tokyo.jp",
        "boundaries": [{ "value": format!("{SERVICE_DID}/general") }],
        "signingKey": "did:key:zDnaeTiq1PdzvZXUaMdezchcMJQpBdH2VN4pgrrEhMCCbmwSb",
        "attestation": {
            "sig": { "$bytes": "c2lnbmF0dXJlIGJ5dGVz" },
            "signingKey": "did:key:zDnaeTiq1PdzvZXUaMdezchcMJQpBdH2VN4pgrrEhMCCbmwSb",
        },
        "createdAt": "2026-12-08T09:00:00.000Z",
    });
    let create = json!({
        "repo": alice.did,
        "collection": ENROLLMENT,
        // One record per Stratos service, keyed by the service DID (the reference's format).
        "rkey": SERVICE_DID,
        "record": record,
    });

    // Without a session, and with a wrong password: refused, nothing written.
    let (s, body) = xrpc_post(
        &http,
        &h.pds_url,
        "com.atproto.repo.createRecord",
        None,
        &create,
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
    let (s, body) = xrpc_post(
        &http,
        &h.pds_url,
        "com.atproto.server.createSession",
        None,
        &json!({ "identifier": alice.handle, "password": "not-the-password" }),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
    let get = format!(
        "com.atproto.repo.getRecord?repo={}&collection={ENROLLMENT}&rkey={SERVICE_DID}",
        alice.did
    );
    let (s, body) = xrpc_get(&http, &h.pds_url, &get, None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "RecordNotFound", "{body}");

    let (s, created) = xrpc_post(
        &http,
        &h.pds_url,
        "com.atproto.repo.createRecord",
        Some(&session),
        &create,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{created}");
    assert_eq!(
        created["uri"],
        json!(format!("at://{}/{ENROLLMENT}/{SERVICE_DID}", alice.did))
    );

    let (s, got) = xrpc_get(&http, &h.pds_url, &get, None).await;
    assert_eq!(s, StatusCode::OK, "{got}");
    assert_eq!(got["cid"], created["cid"], "{got}");
    assert_eq!(got["value"], record, "{got}");

    // The PDS's own export verifies with the key the PLC directory publishes for the account.
    let (s, car) = xrpc_get_bytes(
        &http,
        &h.pds_url,
        &format!("com.atproto.sync.getRepo?did={}", alice.did),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (ok, verdict) = h
        .verify_car(&car, &alice.did, &alice.signing_key)
        .await
        .unwrap();
    assert!(ok, "{verdict}");
    assert!(
        verdict["records"].as_array().unwrap().contains(
            &json!({ "collection": ENROLLMENT, "rkey": SERVICE_DID, "cid": created["cid"] })
        ),
        "{verdict}"
    );
}

/// (b) Stratos accepts a service-auth JWT the real PDS minted (ES256K, signed by the account's
/// key, which Stratos resolves through the real PLC directory) for `createRecord` and
/// `getRecord`, and refuses real PDS tokens for another audience or method, one with an altered
/// signature, and one of another account — writing nothing for any of them.
#[tokio::test]
async fn stratos_accepts_service_auth_minted_by_the_real_pds() {
    let Some(h) = harness() else { return };
    let http = stratos_testkit::http_client();
    let bob = h.account("bob.test");
    let alice = h.account("alice.test");
    let dir = tempfile::tempdir().unwrap();
    let server = start_stratos(h, dir.path()).await;
    let base = server.url();
    admin_enroll(&http, &base, &bob.did).await;

    let session = pds_session(&http, h, &bob).await;
    let create_lxm = "com.atproto.repo.createRecord";
    let create =
        json!({ "repo": bob.did, "collection": POST, "record": post("from a real PDS token") });

    let other_aud = service_auth(&http, h, &session, "did:web:seele.example", create_lxm).await;
    let other_lxm = service_auth(
        &http,
        h,
        &session,
        SERVICE_DID,
        "com.atproto.repo.deleteRecord",
    )
    .await;
    let good = service_auth(&http, h, &session, SERVICE_DID, create_lxm).await;
    // The same token with one signature character changed (not the last, whose low bits base64url
    // may not carry).
    let mut forged = good.clone().into_bytes();
    let i = forged.len() - 10;
    forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    for (token, status, error) in [
        (&other_aud, StatusCode::UNAUTHORIZED, "BadJwtAudience"),
        (&other_lxm, StatusCode::UNAUTHORIZED, "BadJwtLexiconMethod"),
        (&forged, StatusCode::UNAUTHORIZED, "BadJwtSignature"),
    ] {
        let (s, body) = xrpc_post(&http, &base, create_lxm, Some(token), &create).await;
        assert_eq!(s, status, "{error}: {body}");
        assert_eq!(body["error"], error, "{body}");
    }
    // Alice's genuine token does not write Bob's repository.
    let alice_session = pds_session(&http, h, &alice).await;
    let alices = service_auth(&http, h, &alice_session, SERVICE_DID, create_lxm).await;
    let (s, body) = xrpc_post(&http, &base, create_lxm, Some(&alices), &create).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");

    let (s, created) = xrpc_post(&http, &base, create_lxm, Some(&good), &create).await;
    assert_eq!(s, StatusCode::OK, "{created}");
    assert!(
        created["uri"]
            .as_str()
            .unwrap()
            .starts_with(&format!("at://{}/{POST}/", bob.did)),
        "{created}"
    );

    let read = service_auth(
        &http,
        h,
        &session,
        SERVICE_DID,
        "com.atproto.repo.getRecord",
    )
    .await;
    let (s, got) = xrpc_get(
        &http,
        &base,
        &format!(
            "com.atproto.repo.getRecord?repo={}&collection={POST}&rkey={}",
            bob.did,
            rkey_of(&created["uri"])
        ),
        Some(&read),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{got}");
    assert_eq!(got["cid"], created["cid"], "{got}");
    assert_eq!(got["value"]["text"], "from a real PDS token", "{got}");

    // Exactly the one accepted write is stored.
    let list = service_auth(
        &http,
        h,
        &session,
        SERVICE_DID,
        "com.atproto.repo.listRecords",
    )
    .await;
    let (s, page) = xrpc_get(
        &http,
        &base,
        &format!(
            "com.atproto.repo.listRecords?repo={}&collection={POST}",
            bob.did
        ),
        Some(&list),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert_eq!(page["records"].as_array().unwrap().len(), 1, "{page}");
    server.stop().await.unwrap();
}

/// (c) The account's Stratos repository, exported by its owner (`zone.stratos.sync.getRepo` with
/// a real PDS token), verifies with `@atproto/repo` against the signing key Stratos publishes in
/// `zone.stratos.enrollment.status`, and holds every created record with its CID. The verifier
/// rejects the same CAR with one byte changed, without one record's block, checked against
/// another key, or claimed for another DID.
#[tokio::test]
async fn stratos_repository_export_verifies_with_atproto_repo() {
    let Some(h) = harness() else { return };
    let http = stratos_testkit::http_client();
    let carol = h.account("carol.test");
    let dir = tempfile::tempdir().unwrap();
    let server = start_stratos(h, dir.path()).await;
    let base = server.url();
    admin_enroll(&http, &base, &carol.did).await;
    let session = pds_session(&http, h, &carol).await;

    let create_lxm = "com.atproto.repo.createRecord";
    let mut created = Vec::new();
    for i in 0..3 {
        let token = service_auth(&http, h, &session, SERVICE_DID, create_lxm).await;
        let (s, body) = xrpc_post(
            &http,
            &base,
            create_lxm,
            Some(&token),
            &json!({ "repo": carol.did, "collection": POST, "record": post(&format!("record {i}")) }),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        created.push(json!({
            "collection": POST,
            "rkey": rkey_of(&body["uri"]),
            "cid": body["cid"],
        }));
    }

    let status_token = service_auth(
        &http,
        h,
        &session,
        SERVICE_DID,
        "zone.stratos.enrollment.status",
    )
    .await;
    let (s, status) = xrpc_get(
        &http,
        &base,
        &format!("zone.stratos.enrollment.status?did={}", carol.did),
        Some(&status_token),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{status}");
    let stratos_key = status["signingKey"].as_str().unwrap().to_owned();

    let export = service_auth(&http, h, &session, SERVICE_DID, "zone.stratos.sync.getRepo").await;
    let (s, car) = xrpc_get_bytes(
        &http,
        &base,
        &format!("zone.stratos.sync.getRepo?did={}", carol.did),
        Some(&export),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&car));

    let (ok, verdict) = h.verify_car(&car, &carol.did, &stratos_key).await.unwrap();
    assert!(ok, "{verdict}");
    assert_eq!(verdict["ok"], json!(true), "{verdict}");
    let mut records = verdict["records"].as_array().unwrap().clone();
    let mut expected = created.clone();
    let by_rkey = |v: &Value| v["rkey"].as_str().unwrap().to_owned();
    records.sort_by_key(by_rkey);
    expected.sort_by_key(by_rkey);
    assert_eq!(records, expected, "{verdict}");

    // The same bytes with one byte of the last block changed: its CID no longer matches.
    let mut tampered = car.clone();
    *tampered.last_mut().unwrap() ^= 0x01;
    let (ok, verdict) = h
        .verify_car(&tampered, &carol.did, &stratos_key)
        .await
        .unwrap();
    assert!(!ok, "a tampered CAR was accepted: {verdict}");
    assert!(
        verdict["error"]
            .as_str()
            .unwrap()
            .contains("Not a valid CID"),
        "{verdict}"
    );
    // Every remaining block genuine, but one record's block left out.
    let parsed = car::read(&car, CarLimits::default()).unwrap();
    let dropped = stratos_domain::cid::parse(created[0]["cid"].as_str().unwrap()).unwrap();
    let mut writer = car::CarWriter::new(Vec::new(), &parsed.roots).unwrap();
    for cid in parsed.order.iter().filter(|cid| **cid != dropped) {
        writer
            .write_block(cid, parsed.blocks.get(cid).unwrap())
            .unwrap();
    }
    let incomplete = writer.finish();
    assert!(incomplete.len() < car.len());
    let (ok, verdict) = h
        .verify_car(&incomplete, &carol.did, &stratos_key)
        .await
        .unwrap();
    assert!(!ok, "a CAR without a record block was accepted: {verdict}");
    assert!(
        verdict["error"].as_str().unwrap().contains("missing"),
        "{verdict}"
    );
    // The account's PDS key did not sign the Stratos repository.
    let (ok, verdict) = h
        .verify_car(&car, &carol.did, &carol.signing_key)
        .await
        .unwrap();
    assert!(!ok, "accepted under the wrong key: {verdict}");
    assert!(
        verdict["error"]
            .as_str()
            .unwrap()
            .contains("Invalid signature"),
        "{verdict}"
    );
    // Another account's DID: the commit names Carol.
    let alice = h.account("alice.test");
    let (ok, verdict) = h.verify_car(&car, &alice.did, &stratos_key).await.unwrap();
    assert!(!ok, "accepted for another DID: {verdict}");
    assert!(
        verdict["error"]
            .as_str()
            .unwrap()
            .contains("Invalid repo did"),
        "{verdict}"
    );
    server.stop().await.unwrap();
}
