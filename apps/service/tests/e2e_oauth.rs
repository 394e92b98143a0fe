#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! Enrollment through `/oauth/authorize` → the REAL PDS's sign-in and consent → `/oauth/callback`,
//! against `e2e/harness.mjs` (`@atproto/pds` with its authorization server, `@did-plc/server`),
//! started through `stratos_testkit::e2e`. PAR, PKCE, DPoP and the token exchange run for real;
//! the user's part is driven through the authorization server's own HTTP API
//! (`stratos_testkit::e2e::Browser`). Without the install every test prints `SKIPPED:` and
//! passes, except under `CI=true`, where it fails.
//!
//! The service runs the atproto loopback client (its public URL is `http://127.0.0.1:9`, where
//! nothing listens: the tests read the authorization server's redirect and call the service's
//! callback with its query, as a browser would on a real deployment). Accounts are named by DID
//! at `/oauth/authorize` because the harness's `.test` handles resolve nowhere.

use std::path::Path;
use std::sync::OnceLock;

use reqwest::StatusCode;
use reqwest::header::LOCATION;
use serde_json::Value;
use stratos_testkit::e2e::{Account, Browser, Harness, installed_node};

mod common;
use common::rkey_of;

const SERVICE_DID: &str = "did:web:nerv.tokyo.jp";
/// The service's public URL: the loopback client's redirect URI is `{this}/oauth/callback`.
const PUBLIC: &str = "http://127.0.0.1:9";

fn harness() -> Option<&'static Harness> {
    static H: OnceLock<Harness> = OnceLock::new();
    let node = installed_node()?;
    Some(H.get_or_init(|| {
        Harness::start(
            &node,
            &[
                "rei", "sakura", "kaoruko", "fuyuko", "haruki", "misato", "asuka", "hikari",
                "touji", "kensuke", "shinji", "mari", "ritsuko", "maya",
            ],
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }))
}

/// A service running the loopback OAuth client against the harness, with `extra` settings.
async fn stratos(
    h: &Harness,
    dir: &Path,
    extra: &[(&str, &str)],
) -> stratos_service::RunningServer {
    let mut vars = vec![
        ("STRATOS_PLC_URL", h.plc_url.as_str()),
        ("STRATOS_OUTBOUND_ALLOW_PRIVATE", "true"),
        ("STRATOS_PUBLIC_URL", PUBLIC),
        ("STRATOS_ALLOWED_DOMAINS", "swordsmith,aekea"),
        ("STRATOS_OAUTH_REDIRECT_ORIGINS", "http://app.example"),
    ];
    vars.extend_from_slice(extra);
    let config = common::config(dir, &vars);
    stratos_service::start(config, 1).await.unwrap()
}

fn client() -> reqwest::Client {
    stratos_testkit::http_client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// `/oauth/authorize` for `account` (by DID): the authorization server's URL it redirects to.
async fn authorize(http: &reqwest::Client, base: &str, query: &str) -> reqwest::Response {
    http.get(format!("{base}/oauth/authorize?{query}"))
        .send()
        .await
        .unwrap()
}

async fn start_flow(http: &reqwest::Client, base: &str, account: &Account) -> String {
    let res = authorize(http, base, &format!("handle={}", account.did)).await;
    assert_eq!(res.status(), StatusCode::FOUND, "{:?}", res.text().await);
    res.headers()
        .get(LOCATION)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned()
}

/// The service's callback with the query the authorization server redirected `location` with.
async fn callback(http: &reqwest::Client, base: &str, location: &str) -> reqwest::Response {
    let (target, query) = location.split_once('?').unwrap();
    assert_eq!(
        target,
        format!("{PUBLIC}/oauth/callback"),
        "the service's redirect URI"
    );
    http.get(format!("{base}/oauth/callback?{query}"))
        .send()
        .await
        .unwrap()
}

/// Signs `account` in at the PDS and consents: the authorization server's redirect.
async fn consent(h: &Harness, authorize_url: &str, account: &Account) -> String {
    Browser::new(&h.pds_url, authorize_url)
        .unwrap()
        .authorize(account, true)
        .await
        .unwrap()
}

async fn status(http: &reqwest::Client, base: &str, did: &str) -> Value {
    // Dev mode's `Bearer <did>` stands in for the account's own token (the harness's PDS signs
    // its access tokens with a secret only it holds).
    let res = http
        .get(format!("{base}/oauth/status"))
        .bearer_auth(did)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

fn boundary_values(status: &Value) -> Vec<String> {
    let mut out: Vec<String> = status["boundaries"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|b| b["value"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// S1: the service is healthy once started. S2: authorize → PDS sign-in → consent → callback
/// enrolls the account; status says so. A second round for the same account is "already
/// enrolled". The enrollment holds the configured boundaries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s1_s2_oauth_enrollment_through_the_real_pds() {
    let Some(h) = harness() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = stratos(h, dir.path(), &[]).await;
    let (http, base) = (client(), server.url());
    let health = http.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let health: Value = health.json().await.unwrap();
    assert_eq!(health["status"], "ok", "{health}");
    assert!(health["version"].is_string(), "{health}");
    let rei = h.account("rei.test");

    let before = status(&http, &base, &rei.did).await;
    assert_eq!(before["enrolled"], false, "{before}");

    let location = consent(h, &start_flow(&http, &base, &rei).await, &rei).await;
    let res = callback(&http, &base, &location).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["success"], true, "{body}");
    assert_eq!(body["did"], rei.did.as_str());
    assert_eq!(body["enrolled"], true, "a new enrollment: {body}");

    let after = status(&http, &base, &rei.did).await;
    assert_eq!(after["enrolled"], true, "{after}");
    assert_eq!(
        boundary_values(&after),
        [
            format!("{SERVICE_DID}/aekea"),
            format!("{SERVICE_DID}/swordsmith")
        ],
        "open enrollment grants every offered boundary"
    );

    // Again: the same account comes back already enrolled.
    let location = consent(h, &start_flow(&http, &base, &rei).await, &rei).await;
    let body: Value = callback(&http, &base, &location)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["success"], true, "{body}");
    assert_eq!(body["enrolled"], false, "already enrolled: {body}");
    server.stop().await.unwrap();
}

/// S4: a wrong password is refused by the PDS, and nothing is enrolled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s4_a_wrong_password_enrolls_nothing() {
    let Some(h) = harness() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = stratos(h, dir.path(), &[]).await;
    let (http, base) = (client(), server.url());
    let sakura = h.account("sakura.test");
    let url = start_flow(&http, &base, &sakura).await;
    let (code, body) = Browser::new(&h.pds_url, &url)
        .unwrap()
        .try_sign_in(&sakura, "not the password")
        .await
        .unwrap();
    assert!((400..500).contains(&code), "{code} {body}");
    assert_eq!(status(&http, &base, &sakura.did).await["enrolled"], false);
    server.stop().await.unwrap();
}

/// S15: with `STRATOS_AUTO_ENROLL_DOMAINS`, a fresh enrollment gets exactly those boundaries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s15_auto_enroll_domains_are_granted() {
    let Some(h) = harness() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = stratos(h, dir.path(), &[("STRATOS_AUTO_ENROLL_DOMAINS", "aekea")]).await;
    let (http, base) = (client(), server.url());
    let haruki = h.account("haruki.test");
    let location = consent(h, &start_flow(&http, &base, &haruki).await, &haruki).await;
    assert_eq!(
        callback(&http, &base, &location).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        boundary_values(&status(&http, &base, &haruki.did).await),
        [format!("{SERVICE_DID}/aekea")]
    );
    server.stop().await.unwrap();
}

/// The callback refuses a replayed `state`, a wrong `iss` and a flow it never started; none of
/// them enrolls anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callback_refuses_replays_foreign_issuers_and_unknown_flows() {
    let Some(h) = harness() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = stratos(h, dir.path(), &[]).await;
    let (http, base) = (client(), server.url());
    let fuyuko = h.account("fuyuko.test");
    let location = consent(h, &start_flow(&http, &base, &fuyuko).await, &fuyuko).await;

    // Another issuer's answer with this flow's state: refused, and the flow is spent.
    let forged = location.replace("iss=", "iss=https%3A%2F%2Fevil.example&was=");
    let res = callback(&http, &base, &forged).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "CallbackError", "{body}");
    // The genuine answer now finds its flow used.
    let res = callback(&http, &base, &location).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST, "single use");
    assert_eq!(status(&http, &base, &fuyuko.did).await["enrolled"], false);

    // A flow this service never started.
    let res = http
        .get(format!(
            "{base}/oauth/callback?state=made-up&code=x&iss={}",
            h.pds_url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    // A clean run afterwards still works (nothing was left half-done).
    let location = consent(h, &start_flow(&http, &base, &fuyuko).await, &fuyuko).await;
    assert_eq!(
        callback(&http, &base, &location).await.status(),
        StatusCode::OK
    );
    server.stop().await.unwrap();
}

/// An account the allow-list does not admit signs in, is refused with 403 `EnrollmentDenied`,
/// and is not enrolled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ineligible_account_is_refused_after_sign_in() {
    let Some(h) = harness() else { return };
    let dir = tempfile::tempdir().unwrap();
    let misato = h.account("misato.test");
    let server = stratos(
        h,
        dir.path(),
        &[
            ("STRATOS_ENROLLMENT_MODE", "allowlist"),
            ("STRATOS_ALLOWED_DIDS", "did:plc:someoneelse"),
        ],
    )
    .await;
    let (http, base) = (client(), server.url());
    let location = consent(h, &start_flow(&http, &base, &misato).await, &misato).await;
    let res = callback(&http, &base, &location).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "EnrollmentDenied", "{body}");
    assert_eq!(status(&http, &base, &misato.did).await["enrolled"], false);
    server.stop().await.unwrap();
}

/// `redirect_uri`: an application on the allow-list gets the user back with
/// `stratos_enrolled=true`; anything else is refused before the flow starts (no open redirect).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_go_only_to_listed_applications() {
    let Some(h) = harness() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = stratos(h, dir.path(), &[]).await;
    let (http, base) = (client(), server.url());
    let kaoruko = h.account("kaoruko.test");

    let res = authorize(
        &http,
        &base,
        &format!(
            "handle={}&redirect_uri=https%3A%2F%2Fevil.example%2Fgrab",
            kaoruko.did
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = authorize(&http, &base, "redirect_uri=http%3A%2F%2Fapp.example%2F").await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST, "no handle");

    let res = authorize(
        &http,
        &base,
        &format!(
            "handle={}&redirect_uri=http%3A%2F%2Fapp.example%2Fdone",
            kaoruko.did
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::FOUND);
    let url = res
        .headers()
        .get(LOCATION)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let location = consent(h, &url, &kaoruko).await;
    let res = callback(&http, &base, &location).await;
    assert_eq!(res.status(), StatusCode::FOUND);
    let back = res.headers().get(LOCATION).unwrap().to_str().unwrap();
    assert!(
        back.starts_with("http://app.example/done?stratos_enrolled=true"),
        "{back}"
    );
    assert_eq!(status(&http, &base, &kaoruko.did).await["enrolled"], true);
    server.stop().await.unwrap();
}

/// The account's records of `collection` on the PDS, read as anyone can (no credentials).
async fn pds_records(h: &Harness, did: &str, collection: &str) -> Vec<Value> {
    let res = stratos_testkit::http_client()
        .get(format!(
            "{}/xrpc/com.atproto.repo.listRecords?repo={did}&collection={collection}",
            h.pds_url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    body["records"].as_array().cloned().unwrap_or_default()
}

/// Waits (at most 30 s) until `collection` on the PDS holds `n` records of the account: the
/// records then. Delivery runs in the background, so the PDS catches up a moment later.
async fn pds_eventually(h: &Harness, did: &str, collection: &str, n: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let records = pds_records(h, did, collection).await;
        if records.len() == n || std::time::Instant::now() > deadline {
            assert_eq!(records.len(), n, "{collection} on the PDS: {records:?}");
            return records;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// S3 and S14 against the real PDS: after the OAuth enrollment the enrollment record appears in
/// the account's PDS repository; a private post's content-free stub appears there at the same
/// collection and key; leaving through `/oauth/revoke` removes both from the PDS (the deletes go
/// out with the session before the session is ended) and nothing of the account stays here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_s14_records_reach_the_pds_and_leave_with_the_account() {
    let Some(h) = harness() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = stratos(h, dir.path(), &[]).await;
    let (http, base) = (client(), server.url());
    let asuka = h.account("asuka.test");
    const ENROLLMENT: &str = "zone.stratos.actor.enrollment";
    const POST: &str = "zone.stratos.feed.post";

    let location = consent(h, &start_flow(&http, &base, &asuka).await, &asuka).await;
    assert_eq!(
        callback(&http, &base, &location).await.status(),
        StatusCode::OK
    );

    // S3: the enrollment record, signed by the service, names this service and its boundaries.
    let enrollment = pds_eventually(h, &asuka.did, ENROLLMENT, 1).await;
    let value = &enrollment[0]["value"];
    assert_eq!(value["$type"], ENROLLMENT, "{value}");
    assert_eq!(value["service"], PUBLIC, "{value}");
    assert_eq!(
        value["boundaries"].as_array().map(Vec::len),
        Some(2),
        "{value}"
    );
    assert!(value["attestation"].is_object(), "{value}");
    let now = status(&http, &base, &asuka.did).await;
    assert_eq!(now["needsAuthorization"], false, "{now}");
    assert_eq!(now["pdsDeadLetters"], 0, "{now}");

    // The enrollment as an AppView discovers it with stratos-client: read from the real PDS
    // (found through the PLC directory), checked against the service's DID document; the user
    // key it yields verifies the proof of the private post below.
    let did = stratos_domain::syntax::Did::parse(&asuka.did).unwrap();
    let identity = std::sync::Arc::new(stratos_testkit::memory::MemoryIdentity::new());
    let service_doc: Value = http
        .get(format!("{base}/.well-known/did.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    identity.insert_doc(
        &stratos_domain::syntax::Did::parse(SERVICE_DID).unwrap(),
        service_doc,
    );
    let records = stratos_network::HttpIdentityResolver::new(stratos_network::IdentityConfig {
        plc_url: h.plc_url.clone(),
        allow_http_for_localhost: true,
        allow_private_targets: true,
        ..stratos_network::IdentityConfig::default()
    })
    .unwrap();
    let discovery =
        stratos_client::discovery::Discovery::new(identity, std::sync::Arc::new(records));
    let found = discovery.enrollments(&did).await.unwrap();
    assert!(found.rejected.is_empty(), "{:?}", found.rejected);
    assert_eq!(found.enrollments.len(), 1);
    let e = &found.enrollments[0];
    assert_eq!(e.service_did.as_str(), SERVICE_DID);
    assert_eq!(e.service_url, PUBLIC);
    assert_eq!(
        e.signing_key.to_did_key(),
        value["signingKey"].as_str().unwrap()
    );

    // A private post: its stub reaches the PDS with no content.
    let record = common::post_record(SERVICE_DID, "only for swordsmiths", &["swordsmith"]);
    let res = http
        .post(format!("{base}/xrpc/com.atproto.repo.createRecord"))
        .bearer_auth(&asuka.did)
        .json(&serde_json::json!({"repo": asuka.did, "collection": POST, "record": record}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let created: Value = res.json().await.unwrap();
    let uri = created["uri"].as_str().unwrap().to_owned();
    let stubs = pds_eventually(h, &asuka.did, POST, 1).await;
    let rkey = rkey_of(&created);
    assert!(
        stubs[0]["uri"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/{POST}/{rkey}")),
        "the stub sits at the record's collection and key: {stubs:?}"
    );
    let res = http
        .get(format!(
            "{base}/xrpc/com.atproto.sync.getRecord?did={}&collection={POST}&rkey={rkey}",
            asuka.did
        ))
        .bearer_auth(&asuka.did)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let proof_car = res.bytes().await.unwrap();
    let proven = stratos_client::verify::record_proof(
        &e.signing_key,
        &did,
        &stratos_domain::syntax::Nsid::parse(POST).unwrap(),
        &stratos_domain::syntax::RecordKey::parse(&rkey).unwrap(),
        &proof_car,
    )
    .unwrap()
    .expect("the post is proven");
    assert_eq!(proven.cid.to_string(), created["cid"].as_str().unwrap());
    // The same proof, checked by the atproto reference implementation (@atproto/repo).
    let (ok, verdict) = h
        .verify_record_proof(&proof_car, &asuka.did, &e.signing_key.to_did_key())
        .await
        .unwrap();
    assert!(ok, "{verdict}");
    assert_eq!(verdict["records"][0]["rkey"], rkey.as_str(), "{verdict}");
    assert_eq!(
        verdict["records"][0]["text"], "only for swordsmiths",
        "{verdict}"
    );
    let mut flipped = proof_car.to_vec();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    let (ok, verdict) = h
        .verify_record_proof(&flipped, &asuka.did, &e.signing_key.to_did_key())
        .await
        .unwrap();
    assert!(!ok, "a flipped byte must fail: {verdict}");
    let stub = &stubs[0]["value"];
    assert_eq!(stub["source"]["subject"]["uri"], uri.as_str(), "{stub}");
    assert_eq!(stub["source"]["subject"]["cid"], created["cid"], "{stub}");
    assert!(
        !stub.to_string().contains("only for swordsmiths"),
        "a stub carries no content: {stub}"
    );

    // S14: leaving removes what Stratos wrote to the PDS.
    let res = http
        .post(format!("{base}/oauth/revoke"))
        .bearer_auth(&asuka.did)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    pds_eventually(h, &asuka.did, POST, 0).await;
    pds_eventually(h, &asuka.did, ENROLLMENT, 0).await;
    assert_eq!(status(&http, &base, &asuka.did).await["enrolled"], false);
    server.stop().await.unwrap();
}

/// A service-auth JWT the real PDS mints for `account`, for one call of `lxm` on this service.
async fn token(h: &Harness, account: &Account, lxm: &str) -> String {
    let session = h.session(account).await.unwrap();
    h.service_auth(&session, SERVICE_DID, lxm).await.unwrap()
}

/// `POST /xrpc/{lxm}` with a PDS-minted token for `account`: status and JSON answer.
async fn call(
    h: &Harness,
    http: &reqwest::Client,
    base: &str,
    lxm: &str,
    account: &Account,
    body: Value,
) -> (StatusCode, Value) {
    let res = http
        .post(format!("{base}/xrpc/{lxm}"))
        .bearer_auth(token(h, account, lxm).await)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// `GET /xrpc/{lxm}?{query}` with a PDS-minted token for `as_account` (anonymous: `None`).
async fn read(
    h: &Harness,
    http: &reqwest::Client,
    base: &str,
    lxm: &str,
    query: &str,
    as_account: Option<&Account>,
) -> (StatusCode, Value) {
    let mut req = http.get(format!("{base}/xrpc/{lxm}?{query}"));
    if let Some(a) = as_account {
        req = req.bearer_auth(token(h, a, lxm).await);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// S5–S14 with every caller authenticated by a service-auth JWT the real PDS minted (no dev
/// shortcut: each token is verified against the account's key in the real PLC directory).
/// Three accounts enroll through OAuth; the operator assigns boundaries (S5): Hikari and Touji
/// share `swordsmith`, Kensuke holds `aekea`. Hikari posts in `swordsmith` (S6) and reads it back
/// (S7); Touji reads it (S8); Kensuke and an anonymous reader get the same answer as for a
/// missing record (S9, S10); listRecords shows it to Touji only (S11); Kensuke's `aekea` post is
/// his alone (S12); Hikari deletes hers and it is gone (S13); hydration answers alike; Kensuke
/// leaves through `zone.stratos.enrollment.unenroll` and his records leave the PDS (S14).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s5_to_s14_boundaries_with_tokens_the_real_pds_mints() {
    let Some(h) = harness() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = stratos(h, dir.path(), &[]).await;
    let (http, base) = (client(), server.url());
    let (hikari, touji, kensuke) = (
        h.account("hikari.test"),
        h.account("touji.test"),
        h.account("kensuke.test"),
    );
    for (account, boundary) in [
        (&hikari, "swordsmith"),
        (&touji, "swordsmith"),
        (&kensuke, "aekea"),
    ] {
        enroll_with_boundary(h, &http, &base, account, boundary).await;
        // S5: the operator's assignment reads back.
        assert_eq!(
            boundary_values(&status(&http, &base, &account.did).await),
            [format!("{SERVICE_DID}/{boundary}")]
        );
    }

    // S6: the owner creates with a PDS-minted token.
    let create = "com.atproto.repo.createRecord";
    let post = |text: &str, boundary: &str| common::post_record(SERVICE_DID, text, &[boundary]);
    let (s, created) = call(
        h,
        &http,
        &base,
        create,
        &hikari,
        serde_json::json!({
            "repo": hikari.did, "collection": "zone.stratos.feed.post",
            "record": post("for swordsmiths", "swordsmith"),
        }),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{created}");
    let rkey = rkey_of(&created);
    let get = "com.atproto.repo.getRecord";
    let query = format!(
        "repo={}&collection=zone.stratos.feed.post&rkey={rkey}",
        hikari.did
    );

    // S7, S8: the owner and a holder of the boundary read it.
    for reader in [&hikari, &touji] {
        let (s, body) = read(h, &http, &base, get, &query, Some(reader)).await;
        assert_eq!(s, StatusCode::OK, "{}: {body}", reader.handle);
        assert_eq!(body["uri"], created["uri"]);
        assert_eq!(body["value"]["text"], "for swordsmiths");
        assert_eq!(
            body["value"]["boundary"]["values"][0]["value"],
            format!("{SERVICE_DID}/swordsmith")
        );
    }
    // S9, S10: another boundary and no token read it as missing — the very same answer.
    let missing = format!(
        "repo={}&collection=zone.stratos.feed.post&rkey=3zzzzzzzzzzzz",
        hikari.did
    );
    let (_, absent) = read(h, &http, &base, get, &missing, Some(&kensuke)).await;
    for reader in [Some(&kensuke), None] {
        let (s, body) = read(h, &http, &base, get, &query, reader).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body, absent, "a denial reads exactly like a missing record");
    }

    // S11: listRecords shows the post to Touji only.
    let list = "com.atproto.repo.listRecords";
    let list_query = format!("repo={}&collection=zone.stratos.feed.post", hikari.did);
    for (reader, expected) in [(Some(&touji), 1), (Some(&kensuke), 0), (None, 0)] {
        let (s, body) = read(h, &http, &base, list, &list_query, reader).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert_eq!(
            body["records"].as_array().unwrap().len(),
            expected,
            "{body}"
        );
    }

    // S12: the other way round — Kensuke's aekea post is his alone.
    let (s, theirs) = call(
        h,
        &http,
        &base,
        create,
        &kensuke,
        serde_json::json!({
            "repo": kensuke.did, "collection": "zone.stratos.feed.post",
            "record": post("for aekea", "aekea"),
        }),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{theirs}");
    let their_rkey = rkey_of(&theirs);
    let their_query = format!(
        "repo={}&collection=zone.stratos.feed.post&rkey={their_rkey}",
        kensuke.did
    );
    let (s, _) = read(h, &http, &base, get, &their_query, Some(&hikari)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = read(h, &http, &base, get, &their_query, Some(&kensuke)).await;
    assert_eq!(s, StatusCode::OK);

    // S13: the owner deletes; the record is gone, also for the owner.
    let delete = "com.atproto.repo.deleteRecord";
    let (s, body) = call(
        h,
        &http,
        &base,
        delete,
        &hikari,
        serde_json::json!({
            "repo": hikari.did, "collection": "zone.stratos.feed.post", "rkey": rkey,
        }),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, _) = read(h, &http, &base, get, &query, Some(&hikari)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Hydration by AT-URI with a PDS-minted token: Kensuke's own post, not Hikari's gone one.
    let hydrate = "zone.stratos.repo.hydrateRecord";
    let their_uri = theirs["uri"].as_str().unwrap();
    let (s, body) = read(
        h,
        &http,
        &base,
        hydrate,
        &format!("uri={their_uri}"),
        Some(&kensuke),
    )
    .await;
    assert_eq!(
        (s, &body["value"]["text"]),
        (StatusCode::OK, &Value::from("for aekea"))
    );
    let (s, _) = read(
        h,
        &http,
        &base,
        hydrate,
        &format!("uri={their_uri}"),
        Some(&touji),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "another boundary");

    // S14 through the XRPC procedure: Kensuke leaves; his enrollment record leaves the PDS, and
    // his writes are refused from then on.
    let unenroll = "zone.stratos.enrollment.unenroll";
    let (s, body) = call(h, &http, &base, unenroll, &kensuke, serde_json::json!({})).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(status(&http, &base, &kensuke.did).await["enrolled"], false);
    pds_eventually(h, &kensuke.did, "zone.stratos.actor.enrollment", 0).await;
    pds_eventually(h, &kensuke.did, "zone.stratos.feed.post", 0).await;
    let (s, body) = call(
        h,
        &http,
        &base,
        create,
        &kensuke,
        serde_json::json!({
            "repo": kensuke.did, "collection": "zone.stratos.feed.post",
            "record": post("after leaving", "aekea"),
        }),
    )
    .await;
    assert!(s.is_client_error(), "{body}");
    server.stop().await.unwrap();
}

/// A session the user revokes at their PDS: the next write to the PDS is refused, the refresh
/// too, and the account's status says it must authorise again (nothing is deleted; the stub
/// waits). Signing in again clears it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_revoked_at_the_pds_asks_the_account_to_authorise_again() {
    let Some(h) = harness() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = stratos(h, dir.path(), &[]).await;
    let (http, base) = (client(), server.url());
    let shinji = h.account("shinji.test");
    const ENROLLMENT: &str = "zone.stratos.actor.enrollment";

    let url = start_flow(&http, &base, &shinji).await;
    let mut browser = Browser::new(&h.pds_url, &url).unwrap();
    let location = browser.authorize(&shinji, true).await.unwrap();
    assert_eq!(
        callback(&http, &base, &location).await.status(),
        StatusCode::OK
    );
    pds_eventually(h, &shinji.did, ENROLLMENT, 1).await;
    assert_eq!(
        status(&http, &base, &shinji.did).await["needsAuthorization"],
        false
    );

    // The user signs Stratos out at the PDS's account page.
    assert!(browser.revoke_oauth_sessions(&shinji).await.unwrap() >= 1);
    let record = common::post_record(SERVICE_DID, "after the revocation", &["swordsmith"]);
    let res = http
        .post(format!("{base}/xrpc/com.atproto.repo.createRecord"))
        .bearer_auth(&shinji.did)
        .json(&serde_json::json!({
            "repo": shinji.did, "collection": "zone.stratos.feed.post", "record": record,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let now = status(&http, &base, &shinji.did).await;
        if now["needsAuthorization"] == true {
            assert_eq!(now["enrolled"], true, "nothing is deleted: {now}");
            assert_eq!(
                now["pdsDeadLetters"], 0,
                "the stub waits, it is not given up: {now}"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{now}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        pds_records(h, &shinji.did, "zone.stratos.feed.post")
            .await
            .is_empty(),
        "nothing was written with the revoked session"
    );

    // Signing in again makes the account writable again.
    let location = consent(h, &start_flow(&http, &base, &shinji).await, &shinji).await;
    assert_eq!(
        callback(&http, &base, &location).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        status(&http, &base, &shinji.did).await["needsAuthorization"],
        false
    );
    server.stop().await.unwrap();
}

/// The PDS goes down while stubs are queued (its own harness: the outage must not touch the
/// other tests' PDS): the writes wait — nothing is lost or given up — and all reach the PDS
/// once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stubs_wait_out_a_pds_outage_and_arrive_when_it_is_back() {
    let Some(node) = installed_node() else { return };
    let h = Harness::start(&node, &["nagisa"]).unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let server = stratos(&h, dir.path(), &[]).await;
    let (http, base) = (client(), server.url());
    let nagisa = h.account("nagisa.test");
    const POST: &str = "zone.stratos.feed.post";

    let location = consent(&h, &start_flow(&http, &base, &nagisa).await, &nagisa).await;
    assert_eq!(
        callback(&http, &base, &location).await.status(),
        StatusCode::OK
    );
    pds_eventually(&h, &nagisa.did, "zone.stratos.actor.enrollment", 1).await;

    h.set_pds_down(true).await.unwrap();
    let mut rkeys = Vec::new();
    for n in 0..3 {
        let record =
            common::post_record(SERVICE_DID, &format!("during the outage {n}"), &["aekea"]);
        let res = http
            .post(format!("{base}/xrpc/com.atproto.repo.createRecord"))
            .bearer_auth(&nagisa.did)
            .json(&serde_json::json!({ "repo": nagisa.did, "collection": POST, "record": record }))
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            StatusCode::OK,
            "Stratos takes writes while the PDS is down"
        );
        let body: Value = res.json().await.unwrap();
        rkeys.push(rkey_of(&body));
    }
    // Several failed attempts later, nothing is given up.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let now = status(&http, &base, &nagisa.did).await;
    assert_eq!(
        (&now["enrolled"], &now["pdsDeadLetters"]),
        (&Value::from(true), &Value::from(0)),
        "{now}"
    );

    h.set_pds_down(false).await.unwrap();
    let stubs = pds_eventually(&h, &nagisa.did, POST, 3).await;
    let mut on_pds: Vec<String> = stubs.iter().map(rkey_of).collect();
    on_pds.sort();
    rkeys.sort();
    assert_eq!(on_pds, rkeys);
    server.stop().await.unwrap();
}

/// S16 end to end: `stratos-indexer` (its engine, in this process, watching the PDS's firehose
/// too) runs while three accounts enroll through OAuth on the real PDS (Mari and Ritsuko hold
/// `swordsmith`, Maya `aekea`) — the firehose shows their enrollment records, attestations
/// verified — and post with tokens the PDS mints; the indexer indexes the posts into PostgreSQL; the AppView SDK then shows each
/// viewer exactly their boundaries, refuses cross-boundary reads and anonymous feeds, honours
/// `boundary=`, drops deleted posts, and an indexer restart resumes without duplicates. The
/// stubs of the same posts are on the PDS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s16_the_indexer_and_the_appview_sdk_over_oauth_enrollments() {
    use stratos_ports::usecases::appview::{AppView, FeedParams};
    let Some(h) = harness() else { return };
    let Ok(pg) = std::env::var("STRATOS_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "no PostgreSQL in CI"
        );
        eprintln!("SKIPPED: S16 (set STRATOS_TEST_POSTGRES_URL)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = stratos(h, dir.path(), &[("STRATOS_SYNC_TOKEN", "s16-sync")]).await;
    let (http, base) = (client(), server.url());
    let (mari, ritsuko, maya) = (
        h.account("mari.test"),
        h.account("ritsuko.test"),
        h.account("maya.test"),
    );
    let schema = format!("s16{}", std::process::id());
    let index = std::sync::Arc::new(
        stratos_postgres::PostgresAppViewIndex::connect(&stratos_postgres::AppViewConfig {
            url: pg,
            schema,
            pool_size: 4,
        })
        .await
        .unwrap(),
    );
    let vars: std::collections::HashMap<String, String> = [
        ("STRATOS_SERVICE_URL", base.as_str()),
        ("STRATOS_SYNC_TOKEN", "s16-sync"),
        ("BSKY_DB_POSTGRES_URL", "unused: the index is given"),
        ("ACTOR_SYNC_RECONNECT_MAX_DELAY_MS", "500"),
        ("BSKY_REPO_PROVIDER", h.pds_url.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let config = stratos_indexer::config::IndexerConfig::from_vars(&vars).unwrap();
    let metrics = std::sync::Arc::new(stratos_indexer::metrics::Metrics::default());
    let indexer =
        stratos_indexer::engine::Indexer::start(config.clone(), index.clone(), metrics.clone())
            .await
            .unwrap();

    for (account, boundary) in [
        (&mari, "swordsmith"),
        (&ritsuko, "swordsmith"),
        (&maya, "aekea"),
    ] {
        enroll_with_boundary(h, &http, &base, account, boundary).await;
    }
    // The firehose of the PDS showed the three enrollment records, attested by this service.
    // (Other tests' services enroll accounts on the same PDS under the same service DID with
    // keys of their own: their records do not verify here and are not followed.)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while metrics
        .firehose_enrollments
        .load(std::sync::atomic::Ordering::Relaxed)
        < 3
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the firehose never showed the enrollments"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    let create = "com.atproto.repo.createRecord";
    let mut rkeys = std::collections::HashMap::new();
    for (account, text, boundary) in [
        (&mari, "mari swordsmith", "swordsmith"),
        (&ritsuko, "ritsuko swordsmith", "swordsmith"),
        (&maya, "maya aekea", "aekea"),
        (&mari, "mari to delete", "swordsmith"),
    ] {
        let (s, out) = call(
            h,
            &http,
            &base,
            create,
            account,
            serde_json::json!({
                "repo": account.did, "collection": "zone.stratos.feed.post",
                "record": common::post_record(SERVICE_DID, text, &[boundary]),
            }),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{out}");
        rkeys.insert(text, rkey_of(&out));
    }
    let (s, _) = call(
        h,
        &http,
        &base,
        "com.atproto.repo.deleteRecord",
        &mari,
        serde_json::json!({ "repo": mari.did, "collection": "zone.stratos.feed.post", "rkey": rkeys["mari to delete"] }),
    )
    .await;
    assert_eq!(s, StatusCode::OK);

    let did = |a: &Account| stratos_domain::syntax::Did::parse(&a.did).unwrap();
    let appview = AppView::builder(index.clone()).viewer_ttl_ms(0).build();
    let all = FeedParams::default();
    let feed_texts = |feed: stratos_ports::usecases::appview::Feed| {
        let mut t: Vec<String> = feed.feed.into_iter().map(|p| p.row.text).collect();
        t.sort();
        t
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let mari_feed = feed_texts(appview.timeline(Some(&did(&mari)), &all).await.unwrap());
        let maya_feed = feed_texts(appview.timeline(Some(&did(&maya)), &all).await.unwrap());
        if mari_feed == ["mari swordsmith", "ritsuko swordsmith"] && maya_feed == ["maya aekea"] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "feeds never settled: {mari_feed:?} {maya_feed:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Cross-boundary author feed: empty. getPost: same boundary OK, cross BoundaryMismatch.
    assert!(
        appview
            .author_feed(Some(&did(&ritsuko)), &did(&maya), &all)
            .await
            .unwrap()
            .feed
            .is_empty()
    );
    let uri = |a: &Account, text: &str| {
        stratos_domain::syntax::AtUri::parse(&format!(
            "at://{}/zone.stratos.feed.post/{}",
            a.did, rkeys[text]
        ))
        .unwrap()
    };
    let ok = appview
        .get_post(Some(&did(&ritsuko)), &uri(&mari, "mari swordsmith"))
        .await
        .unwrap();
    assert_eq!(ok.row.text, "mari swordsmith");
    let cross = appview
        .get_post(Some(&did(&ritsuko)), &uri(&maya, "maya aekea"))
        .await
        .unwrap_err();
    assert_eq!(
        stratos_ports::xrpc::XrpcError::from(cross).error,
        "BoundaryMismatch"
    );
    assert!(appview.timeline(None, &all).await.is_err());
    let only_aekea = FeedParams {
        boundary: Some(format!("{SERVICE_DID}/aekea")),
        ..FeedParams::default()
    };
    assert!(
        appview
            .timeline(Some(&did(&mari)), &only_aekea)
            .await
            .unwrap()
            .feed
            .is_empty()
    );
    // The PDS holds the content-free stubs of the surviving posts.
    pds_eventually(h, &mari.did, "zone.stratos.feed.post", 1).await;
    pds_eventually(h, &maya.did, "zone.stratos.feed.post", 1).await;

    // Restart: resume from stratos_sync_cursor, nothing twice.
    indexer.stop().await;
    let metrics = std::sync::Arc::new(stratos_indexer::metrics::Metrics::default());
    let indexer = stratos_indexer::engine::Indexer::start(config, index.clone(), metrics.clone())
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        feed_texts(appview.timeline(Some(&did(&mari)), &all).await.unwrap()),
        ["mari swordsmith", "ritsuko swordsmith"]
    );
    assert_eq!(
        metrics.backfills.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    indexer.stop().await;
    index.drop_schema().await.unwrap();
    server.stop().await.unwrap();
}

/// Enrolls `account` through OAuth and has the operator give it `boundary` alone (S5).
async fn enroll_with_boundary(
    h: &Harness,
    http: &reqwest::Client,
    base: &str,
    account: &Account,
    boundary: &str,
) {
    let location = consent(h, &start_flow(http, base, account).await, account).await;
    assert_eq!(
        callback(http, base, &location).await.status(),
        StatusCode::OK
    );
    let res = http
        .post(format!("{base}/xrpc/zone.stratos.admin.setBoundaries"))
        .bearer_auth(common::ADMIN)
        .json(&serde_json::json!({ "did": account.did, "boundaries": [boundary] }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{:?}", res.text().await);
}
