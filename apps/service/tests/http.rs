#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! The service over real HTTP on a loopback port, with SQLite and local blobs in a temporary
//! directory: positive paths and the negative cases (unauthenticated, wrong owner, foreign
//! boundary, bad record, oversized body, bad parameters, rate limit).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common;

use common::{ADMIN, Svc, rkey_of, start_with};
const POST: &str = "zone.stratos.feed.post";

async fn start() -> Svc {
    start_with(&[]).await
}

impl Svc {
    async fn get(&self, path_and_query: &str, auth: Option<&str>) -> (StatusCode, Value) {
        let mut req = self.http.get(self.url(path_and_query));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn enroll(&self, did: &str, boundaries: &[&str]) {
        let (s, body) = self
            .post(
                "zone.stratos.admin.enrollActor",
                Some(&format!("Bearer {ADMIN}")),
                json!({ "did": did, "boundaries": boundaries }),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
    }

    async fn create(&self, did: &str, text: &str, boundaries: &[&str]) -> (StatusCode, Value) {
        self.post(
            "com.atproto.repo.createRecord",
            Some(&format!("Bearer {did}")),
            json!({ "repo": did, "collection": POST, "record": post(text, boundaries) }),
        )
        .await
    }
}

fn post(text: &str, boundaries: &[&str]) -> Value {
    common::post_record("did:web:nerv.tokyo.jp", text, boundaries)
}

#[tokio::test]
async fn operational_endpoints_and_xrpc_fallbacks() {
    let svc = start().await;
    let (s, body) = svc.get("/health", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["components"]["db"], "ok");
    let (s, doc) = svc.get("/.well-known/did.json", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(doc["id"], "did:web:nerv.tokyo.jp");
    assert_eq!(
        doc["verificationMethod"][0]["id"],
        "did:web:nerv.tokyo.jp#atproto_pns"
    );
    assert!(
        doc["verificationMethod"][0]["publicKeyMultibase"]
            .as_str()
            .unwrap()
            .starts_with("zQ3s")
    );
    assert_eq!(
        doc["service"][0]["serviceEndpoint"],
        "https://nerv.tokyo.jp"
    );
    let robots = svc
        .http
        .get(svc.url("/robots.txt"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(robots.contains("Disallow: /"));
    let (s, body) = svc.get("/xrpc/com.example.nothing", None).await;
    assert_eq!(s, StatusCode::NOT_IMPLEMENTED);
    assert_eq!(body["error"], "MethodNotImplemented");
    let (s, body) = svc
        .post("com.atproto.repo.getRecord", None, json!({}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("Incorrect HTTP method")
    );
    let (s, body) = svc.get("/xrpc/zone.stratos.server.listDomains", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        body["domains"],
        json!([
            "did:web:nerv.tokyo.jp/general",
            "did:web:nerv.tokyo.jp/other"
        ])
    );
    svc.stop().await;
}

#[tokio::test]
async fn cors_trace_ids_and_the_oauth_client_metadata() {
    let svc = start().await;
    // A browser preflight: 204, any origin, the reference's methods, the asked headers echoed.
    let res = svc
        .http
        .request(
            reqwest::Method::OPTIONS,
            svc.url("/xrpc/com.atproto.repo.createRecord"),
        )
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,dpop,content-type",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let h = res.headers();
    assert_eq!(h["access-control-allow-origin"], "*");
    assert_eq!(
        h["access-control-allow-methods"],
        "GET,HEAD,PUT,PATCH,POST,DELETE"
    );
    assert_eq!(
        h["access-control-allow-headers"],
        "authorization,dpop,content-type"
    );
    // Every answer, errors included, lets browsers read the auth headers and the trace id.
    let res = svc
        .http
        .get(svc.url("/xrpc/com.example.nothing"))
        .header("origin", "https://app.example")
        .header("x-trace-id", "trace-123")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_IMPLEMENTED);
    let h = res.headers();
    assert_eq!(h["access-control-allow-origin"], "*");
    let exposed = h["access-control-expose-headers"].to_str().unwrap();
    for name in ["DPoP-Nonce", "WWW-Authenticate", "x-trace-id"] {
        assert!(exposed.contains(name), "{exposed}");
    }
    assert_eq!(h["x-trace-id"], "trace-123");
    // Without a usable trace id the service makes one.
    let res = svc
        .http
        .get(svc.url("/health"))
        .header("x-trace-id", "not a token!")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-trace-id"].len(), 16);
    // A write without credentials is challenged for DPoP.
    let res = svc
        .http
        .post(svc.url("/xrpc/com.atproto.repo.createRecord"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()["www-authenticate"], "DPoP realm=\"stratos\"");
    // The OAuth client metadata, at both addresses.
    for path in [
        "/client-metadata.json",
        "/.well-known/oauth-client-metadata.json",
    ] {
        let (s, doc) = svc.get(path, None).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(
            doc["client_id"],
            "https://nerv.tokyo.jp/client-metadata.json"
        );
        assert_eq!(
            doc["redirect_uris"],
            json!(["https://nerv.tokyo.jp/oauth/callback"])
        );
        assert_eq!(doc["dpop_bound_access_tokens"], true);
    }
    svc.stop().await;
}

#[tokio::test]
async fn admin_enrollment_is_authenticated_and_checks_boundaries() {
    let svc = start().await;
    let body = json!({ "did": "did:plc:rei", "boundaries": ["general"] });
    let (s, b) = svc
        .post("zone.stratos.admin.enrollActor", None, body.clone())
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    let (s, _) = svc
        .post(
            "zone.stratos.admin.enrollActor",
            Some("Bearer wrong"),
            body.clone(),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, b) = svc
        .post(
            "zone.stratos.admin.enrollActor",
            Some(&format!("Bearer {ADMIN}")),
            json!({ "did": "did:plc:rei", "boundaries": ["lilin"] }),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(b["error"], "BoundaryNotAllowed");
    // Basic auth works too (any user name).
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("admin:{ADMIN}"));
    let (s, b) = svc
        .post(
            "zone.stratos.admin.enrollActor",
            Some(&format!("Basic {basic}")),
            body,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["boundaries"], json!(["did:web:nerv.tokyo.jp/general"]));
    assert_eq!(b["new"], true);
    let (s, status) = svc
        .get(
            "/xrpc/zone.stratos.enrollment.status?did=did:plc:rei",
            Some("Bearer did:plc:rei"),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(status["enrolled"], true);
    assert!(status["attestation"]["sig"]["$bytes"].is_string());
    // Others learn enrollment, not boundaries.
    let (_, other) = svc
        .get("/xrpc/zone.stratos.enrollment.status?did=did:plc:rei", None)
        .await;
    assert_eq!(other["enrolled"], true);
    assert!(other.get("boundaries").is_none());
    svc.stop().await;
}

#[tokio::test]
async fn admin_boundary_changes_touch_one_account_only() {
    let svc = start().await;
    svc.enroll("did:plc:rei", &["general"]).await;
    svc.enroll("did:plc:asuka", &["general"]).await;
    let auth = format!("Bearer {ADMIN}");
    let (s, b) = svc
        .post(
            "zone.stratos.admin.addBoundary",
            Some(&auth),
            json!({ "did": "did:plc:rei", "boundary": "other" }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = svc
        .post(
            "zone.stratos.admin.removeBoundary",
            Some(&auth),
            json!({ "did": "did:plc:rei", "boundary": "general" }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["boundaries"], json!(["did:web:nerv.tokyo.jp/other"]));
    // D8: removing from one account left the other alone.
    let (_, asuka) = svc
        .get(
            "/xrpc/zone.stratos.identity.resolveEnrollments?did=did:plc:asuka",
            None,
        )
        .await;
    assert_eq!(
        asuka["boundaries"],
        json!(["did:web:nerv.tokyo.jp/general"])
    );
    let (s, b) = svc
        .post(
            "zone.stratos.admin.setBoundaries",
            Some(&auth),
            json!({ "did": "did:plc:asuka", "boundaries": ["general", "other"] }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["boundaries"].as_array().unwrap().len(), 2);
    // D7: a body that is not JSON is a clear 400, not a silent no-op.
    let res = svc
        .http
        .post(svc.url("/xrpc/zone.stratos.admin.setBoundaries"))
        .header("authorization", &auth)
        .body("did=did:plc:asuka")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    svc.stop().await;
}

#[tokio::test]
async fn boundary_filtered_reads_hide_denied_records_like_missing_ones() {
    let svc = start().await;
    svc.enroll("did:plc:rei", &["general"]).await;
    svc.enroll("did:plc:shinji", &["general"]).await;
    svc.enroll("did:plc:stranger", &["other"]).await;
    let (s, created) = svc.create("did:plc:rei", "hello", &["general"]).await;
    assert_eq!(s, StatusCode::OK, "{created}");
    assert!(created["commit"]["cid"].is_string());
    let rkey = rkey_of(&created);
    let path =
        format!("/xrpc/com.atproto.repo.getRecord?repo=did:plc:rei&collection={POST}&rkey={rkey}");
    let (s, rec) = svc.get(&path, Some("Bearer did:plc:shinji")).await;
    assert_eq!(s, StatusCode::OK, "{rec}");
    assert_eq!(rec["value"]["text"], "hello");
    assert_eq!(rec["cid"], created["cid"]);
    let (s, owner) = svc.get(&path, Some("Bearer did:plc:rei")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(owner["uri"], rec["uri"]);
    let (denied_status, denied) = svc.get(&path, Some("Bearer did:plc:stranger")).await;
    let (anon_status, anon) = svc.get(&path, None).await;
    let missing_path = format!(
        "/xrpc/com.atproto.repo.getRecord?repo=did:plc:rei&collection={POST}&rkey=3zzzzzzzzzzzz"
    );
    let (missing_status, missing) = svc.get(&missing_path, Some("Bearer did:plc:shinji")).await;
    assert_eq!(denied_status, StatusCode::BAD_REQUEST);
    assert_eq!((denied_status, &denied), (missing_status, &missing));
    assert_eq!((anon_status, &anon), (missing_status, &missing));
    assert_eq!(missing["error"], "RecordNotFound");

    // listRecords: full pages for the viewer, cursor, strict `reverse`.
    for i in 0..4 {
        let (s, _) = svc
            .create("did:plc:rei", &format!("secret {i}"), &["other"])
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "rei does not hold `other`");
    }
    let list = format!("/xrpc/com.atproto.repo.listRecords?repo=did:plc:rei&collection={POST}");
    let (s, page) = svc.get(&list, Some("Bearer did:plc:shinji")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(page["records"].as_array().unwrap().len(), 1);
    let (_, page) = svc.get(&list, Some("Bearer did:plc:stranger")).await;
    assert_eq!(page["records"].as_array().unwrap().len(), 0);
    let (s, page) = svc
        .get(
            &format!("{list}&reverse=false"),
            Some("Bearer did:plc:shinji"),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(page["records"].as_array().unwrap().len(), 1);
    let (s, b) = svc.get(&format!("{list}&reverse=nope"), None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let (s, _) = svc.get(&format!("{list}&limit=0"), None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // A bad cursor is a clear 400; a good one pages without repeats.
    let (s, b) = svc
        .get(&format!("{list}&cursor=not%20a%20key!"), None)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert!(b["message"].as_str().unwrap().contains("cursor"), "{b}");
    for i in 0..2 {
        let (s, _) = svc
            .create("did:plc:rei", &format!("more {i}"), &["general"])
            .await;
        assert_eq!(s, StatusCode::OK);
    }
    let (_, first) = svc
        .get(&format!("{list}&limit=2"), Some("Bearer did:plc:shinji"))
        .await;
    assert_eq!(first["records"].as_array().unwrap().len(), 2);
    let cursor = first["cursor"].as_str().unwrap();
    let (_, second) = svc
        .get(
            &format!("{list}&limit=2&cursor={cursor}"),
            Some("Bearer did:plc:shinji"),
        )
        .await;
    let second = second["records"].as_array().unwrap();
    assert_eq!(second.len(), 1, "3 readable records in all");
    assert!(
        first["records"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["uri"] != second[0]["uri"])
    );

    // Hydration as a viewer: denied records are `notFound`.
    let uri = created["uri"].as_str().unwrap();
    let (s, h) = svc
        .post(
            "zone.stratos.repo.hydrateRecords",
            Some("Bearer did:plc:stranger"),
            json!({ "uris": [uri] }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{h}");
    assert_eq!(h["records"].as_array().unwrap().len(), 0);
    assert_eq!(h["notFound"], json!([uri]));
    let (_, h) = svc
        .post(
            "zone.stratos.repo.hydrateRecords",
            Some("Bearer did:plc:shinji"),
            json!({ "uris": [uri] }),
        )
        .await;
    assert_eq!(h["records"][0]["uri"], uri);
    svc.stop().await;
}

#[tokio::test]
async fn writes_refuse_bad_callers_and_bad_records() {
    let svc = start_with(&[("STRATOS_MAX_BODY_BYTES", "4096")]).await;
    svc.enroll("did:plc:rei", &["general"]).await;
    svc.enroll("did:plc:asuka", &["general"]).await;
    let body =
        json!({ "repo": "did:plc:rei", "collection": POST, "record": post("x", &["general"]) });
    // Unauthenticated.
    let (s, b) = svc
        .post("com.atproto.repo.createRecord", None, body.clone())
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(b["error"], "AuthenticationRequired");
    // Wrong owner.
    let (s, b) = svc
        .post(
            "com.atproto.repo.createRecord",
            Some("Bearer did:plc:asuka"),
            body.clone(),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    // Not enrolled.
    let (s, b) = svc
        .post(
            "com.atproto.repo.createRecord",
            Some("Bearer did:plc:nobody"),
            json!({ "repo": "did:plc:nobody", "collection": POST, "record": post("x", &["general"]) }),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(b["error"], "NotEnrolled");
    // Foreign boundary.
    let mut foreign = post("x", &[]);
    foreign["boundary"]["values"] = json!([{ "value": "did:web:seele.example/general" }]);
    let (s, b) = svc
        .post(
            "com.atproto.repo.createRecord",
            Some("Bearer did:plc:rei"),
            json!({ "repo": "did:plc:rei", "collection": POST, "record": foreign }),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(b["error"], "BoundaryServiceMismatch", "{b}");
    // A record that fails its lexicon.
    let mut bad = post("x", &["general"]);
    bad["text"] = json!(42);
    let (s, b) = svc
        .post(
            "com.atproto.repo.createRecord",
            Some("Bearer did:plc:rei"),
            json!({ "repo": "did:plc:rei", "collection": POST, "record": bad }),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(b["error"], "InvalidRecord", "{b}");
    // Outside the Stratos namespace.
    let (s, b) = svc
        .post(
            "com.atproto.repo.createRecord",
            Some("Bearer did:plc:rei"),
            json!({ "repo": "did:plc:rei", "collection": "app.bsky.feed.post", "record": {"text": "x"} }),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(b["error"], "InvalidCollection", "{b}");
    // Oversized body.
    let (s, b) = svc
        .post(
            "com.atproto.repo.createRecord",
            Some("Bearer did:plc:rei"),
            json!({ "repo": "did:plc:rei", "collection": POST, "record": post(&"x".repeat(5000), &["general"]) }),
        )
        .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(b["error"], "PayloadTooLarge");
    // Malformed JSON.
    let res = svc
        .http
        .post(svc.url("/xrpc/com.atproto.repo.createRecord"))
        .header("authorization", "Bearer did:plc:rei")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    // An unverifiable token (here: a DPoP token without its proof) is refused, never trusted.
    let (s, b) = svc
        .post(
            "com.atproto.repo.createRecord",
            Some("DPoP abc.def.ghi"),
            body.clone(),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(b["error"], "AuthenticationRequired");
    assert!(b["message"].as_str().unwrap().contains("DPoP proof"), "{b}");
    // Nothing above was written.
    let (_, page) = svc
        .get(
            &format!("/xrpc/com.atproto.repo.listRecords?repo=did:plc:rei&collection={POST}"),
            Some("Bearer did:plc:rei"),
        )
        .await;
    assert_eq!(page["records"].as_array().unwrap().len(), 0);
    svc.stop().await;
}

#[tokio::test]
async fn apply_writes_is_all_or_nothing_and_put_delete_work() {
    let svc = start().await;
    svc.enroll("did:plc:rei", &["general"]).await;
    let auth = Some("Bearer did:plc:rei");
    let (s, b) = svc
        .post(
            "com.atproto.repo.applyWrites",
            auth,
            json!({ "repo": "did:plc:rei", "writes": [
                { "$type": "com.atproto.repo.applyWrites#create", "collection": POST, "rkey": "3kaaaaaaaaaa2", "value": post("one", &["general"]) },
                { "$type": "com.atproto.repo.applyWrites#create", "collection": POST, "value": post("two", &["other"]) },
            ]}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let get = format!(
        "/xrpc/com.atproto.repo.getRecord?repo=did:plc:rei&collection={POST}&rkey=3kaaaaaaaaaa2"
    );
    let (s, _) = svc.get(&get, auth).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "the failed batch left nothing");
    let (s, b) = svc
        .post(
            "com.atproto.repo.applyWrites",
            auth,
            json!({ "repo": "did:plc:rei", "writes": [
                { "$type": "com.atproto.repo.applyWrites#create", "collection": POST, "rkey": "3kaaaaaaaaaa2", "value": post("one", &["general"]) },
                { "$type": "com.atproto.repo.applyWrites#create", "collection": POST, "rkey": "3kaaaaaaaaaa3", "value": post("two", &["general"]) },
            ]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        b["results"][0]["$type"],
        "com.atproto.repo.applyWrites#createResult"
    );
    let (s, b) = svc
        .post(
            "com.atproto.repo.putRecord",
            auth,
            json!({ "repo": "did:plc:rei", "collection": POST, "rkey": "3kaaaaaaaaaa2", "record": post("edited", &["general"]) }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (_, rec) = svc.get(&get, auth).await;
    assert_eq!(rec["value"]["text"], "edited");
    let (s, b) = svc
        .post(
            "com.atproto.repo.deleteRecord",
            auth,
            json!({ "repo": "did:plc:rei", "collection": POST, "rkey": "3kaaaaaaaaaa2" }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, _) = svc.get(&get, auth).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, head) = svc
        .get(
            "/xrpc/com.atproto.sync.getLatestCommit?did=did:plc:rei",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(head["cid"], b["commit"]["cid"]);
    // The full CAR is for the owner only.
    let (s, _) = svc
        .get(
            "/xrpc/zone.stratos.sync.getRepo?did=did:plc:rei",
            Some("Bearer did:plc:asuka"),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let res = svc
        .http
        .get(svc.url("/xrpc/zone.stratos.sync.getRepo?did=did:plc:rei"))
        .header("authorization", "Bearer did:plc:rei")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let car = res.bytes().await.unwrap();
    let parsed =
        stratos_domain::car::read(&car, stratos_domain::car::CarLimits::default()).unwrap();
    assert_eq!(parsed.roots[0].to_string(), head["cid"].as_str().unwrap());
    // describeRepo lists the collection to its owner (others see only collections they may
    // read: tests/hostile.rs).
    let (s, d) = svc
        .get("/xrpc/com.atproto.repo.describeRepo?repo=did:plc:rei", auth)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(d["collections"], json!([POST]));
    // Unenroll removes everything.
    let (s, _) = svc
        .post("zone.stratos.enrollment.unenroll", auth, json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = svc
        .get(
            "/xrpc/com.atproto.sync.getLatestCommit?did=did:plc:rei",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    svc.stop().await;
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let svc = start_with(&[
        ("STRATOS_WRITE_RATE_MAX_WRITES", "2"),
        ("STRATOS_WRITE_RATE_WINDOW_MS", "60000"),
    ])
    .await;
    svc.enroll("did:plc:rei", &["general"]).await;
    for i in 0..2 {
        let (s, b) = svc
            .create("did:plc:rei", &format!("p{i}"), &["general"])
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    let res = svc
        .http
        .post(svc.url("/xrpc/com.atproto.repo.createRecord"))
        .header("authorization", "Bearer did:plc:rei")
        .json(&json!({ "repo": "did:plc:rei", "collection": POST, "record": post("p3", &["general"]) }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    let b: Value = res.json().await.unwrap();
    assert_eq!(b["error"], "RateLimitExceeded");
    svc.stop().await;
}

#[tokio::test]
async fn dev_bearer_is_refused_when_dev_mode_is_off() {
    let svc = start_with(&[("STRATOS_DEV_MODE", "false")]).await;
    svc.enroll("did:plc:rei", &["general"]).await;
    let (s, b) = svc.create("did:plc:rei", "x", &["general"]).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    assert_eq!(b["error"], "InvalidToken");
    svc.stop().await;
}

#[tokio::test]
async fn swap_commit_and_swap_record_are_honoured() {
    let svc = start().await;
    svc.enroll("did:plc:rei", &["general"]).await;
    let auth = Some("Bearer did:plc:rei");
    let (_, head) = svc
        .get(
            "/xrpc/com.atproto.sync.getLatestCommit?did=did:plc:rei",
            None,
        )
        .await;
    let (s, created) = svc
        .post(
            "com.atproto.repo.createRecord",
            auth,
            json!({ "repo": "did:plc:rei", "collection": POST, "rkey": "3kaaaaaaaaaa2",
                    "record": post("one", &["general"]), "swapCommit": head["cid"] }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{created}");
    // The old head no longer matches.
    let (s, b) = svc
        .post(
            "com.atproto.repo.createRecord",
            auth,
            json!({ "repo": "did:plc:rei", "collection": POST, "record": post("two", &["general"]),
                    "swapCommit": head["cid"] }),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(b["error"], "InvalidSwap", "{b}");
    // swapRecord: null means "must not exist".
    let (s, b) = svc
        .post(
            "com.atproto.repo.putRecord",
            auth,
            json!({ "repo": "did:plc:rei", "collection": POST, "rkey": "3kaaaaaaaaaa2",
                    "record": post("edit", &["general"]), "swapRecord": null }),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(b["error"], "InvalidSwap", "{b}");
    let (s, b) = svc
        .post(
            "com.atproto.repo.putRecord",
            auth,
            json!({ "repo": "did:plc:rei", "collection": POST, "rkey": "3kaaaaaaaaaa2",
                    "record": post("edit", &["general"]), "swapRecord": created["cid"] }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // The record changed, so the first CID is stale for a delete.
    let (s, b) = svc
        .post(
            "com.atproto.repo.deleteRecord",
            auth,
            json!({ "repo": "did:plc:rei", "collection": POST, "rkey": "3kaaaaaaaaaa2",
                    "swapRecord": created["cid"] }),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(b["error"], "InvalidSwap", "{b}");
    let get = format!(
        "/xrpc/com.atproto.repo.getRecord?repo=did:plc:rei&collection={POST}&rkey=3kaaaaaaaaaa2"
    );
    let (s, rec) = svc.get(&get, auth).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(rec["value"]["text"], "edit");
    svc.stop().await;
}

#[tokio::test]
async fn sync_get_record_proves_readable_records_only_and_import_round_trips() {
    let svc = start().await;
    svc.enroll("did:plc:rei", &["general"]).await;
    svc.enroll("did:plc:shinji", &["general"]).await;
    svc.enroll("did:plc:stranger", &["other"]).await;
    svc.enroll("did:plc:kaworu", &["general"]).await;
    let (_, created) = svc.create("did:plc:rei", "proved", &["general"]).await;
    let rkey = rkey_of(&created);
    let path =
        format!("/xrpc/com.atproto.sync.getRecord?did=did:plc:rei&collection={POST}&rkey={rkey}");
    let res = svc
        .http
        .get(svc.url(&path))
        .header("authorization", "Bearer did:plc:shinji")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let car = stratos_domain::car::read(
        &res.bytes().await.unwrap(),
        stratos_domain::car::CarLimits::default(),
    )
    .unwrap();
    let (_, head) = svc
        .get(
            "/xrpc/com.atproto.sync.getLatestCommit?did=did:plc:rei",
            None,
        )
        .await;
    assert_eq!(car.roots[0].to_string(), head["cid"].as_str().unwrap());
    assert!(
        car.blocks
            .iter()
            .any(|(c, _)| c.to_string() == created["cid"].as_str().unwrap()),
        "the record block is in the proof"
    );
    // Denied and anonymous viewers get the not-found answer, not the content.
    let (s, b) = svc.get(&path, Some("Bearer did:plc:stranger")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(b["error"], "RecordNotFound");
    let (s, _) = svc.get(&path, None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Import: Kaworu exports his repository, leaves, comes back empty and imports it.
    let (s, _) = svc
        .create("did:plc:kaworu", "carried over", &["general"])
        .await;
    assert_eq!(s, StatusCode::OK);
    let export = svc
        .http
        .get(svc.url("/xrpc/zone.stratos.sync.getRepo?did=did:plc:kaworu"))
        .header("authorization", "Bearer did:plc:kaworu")
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let (s, _) = svc
        .post(
            "zone.stratos.enrollment.unenroll",
            Some("Bearer did:plc:kaworu"),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    svc.enroll("did:plc:kaworu", &["general"]).await;
    let import = |who: &'static str, body: Vec<u8>| {
        let req = svc
            .http
            .post(svc.url("/xrpc/zone.stratos.repo.importRepo"))
            .header("authorization", format!("Bearer {who}"))
            .header("content-type", "application/vnd.ipld.car")
            .body(body);
        async move {
            let res = req.send().await.unwrap();
            (res.status(), res.json::<Value>().await.unwrap())
        }
    };
    // Someone else's repository is refused.
    let (s, b) = import("did:plc:shinji", export.to_vec()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let (s, b) = import("did:plc:kaworu", export.to_vec()).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["imported"], 1);
    let (_, page) = svc
        .get(
            &format!("/xrpc/com.atproto.repo.listRecords?repo=did:plc:kaworu&collection={POST}"),
            Some("Bearer did:plc:kaworu"),
        )
        .await;
    assert_eq!(page["records"][0]["value"]["text"], "carried over");
    // A second import into the now non-empty repository is refused.
    let (s, b) = import("did:plc:kaworu", export.to_vec()).await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    // A malformed CAR is a client error.
    let res = svc
        .http
        .post(svc.url("/xrpc/zone.stratos.repo.importRepo"))
        .header("authorization", "Bearer did:plc:shinji")
        .body(export[..export.len() / 2].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let b: Value = res.json().await.unwrap();
    assert_eq!(b["error"], "InvalidCar", "{b}");
    svc.stop().await;
}

/// A tiny PLC directory on a loopback port serving one DID document.
async fn fake_plc(did: &'static str, doc: Value) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let doc = doc.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let found = head.starts_with(&format!("GET /{did} "));
                let body = if found {
                    doc.to_string()
                } else {
                    String::new()
                };
                let status = if found { "200 OK" } else { "404 Not Found" };
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

fn service_jwt(key: &stratos_domain::crypto::Keypair, claims: &Value) -> String {
    use base64::Engine as _;
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let header = json!({ "typ": "JWT", "alg": key.public_key().algorithm().jwt_alg() });
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = key.sign(input.as_bytes()).unwrap();
    format!("{input}.{}", b64(&sig))
}

#[tokio::test]
async fn service_auth_jwts_are_verified_against_the_issuers_did_document() {
    const ISSUER: &str = "did:plc:abcdefghijklmnopqrstuvwx";
    let key = stratos_domain::crypto::Keypair::generate(stratos_domain::crypto::KeyAlgorithm::K256);
    let doc = json!({
        "id": ISSUER,
        "verificationMethod": [{
            "id": format!("{ISSUER}#atproto"),
            "type": "Multikey",
            "controller": ISSUER,
            "publicKeyMultibase": key.public_key().to_multikey(),
        }],
    });
    let plc = fake_plc(ISSUER, doc).await;
    let svc = start_with(&[("STRATOS_PLC_URL", plc.as_str())]).await;
    svc.enroll(ISSUER, &["general"]).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = |lxm: &str, aud: &str| json!({ "iss": ISSUER, "aud": aud, "exp": now + 60, "iat": now, "lxm": lxm });
    let create =
        json!({ "repo": ISSUER, "collection": POST, "record": post("signed", &["general"]) });
    let good = service_jwt(
        &key,
        &claims("com.atproto.repo.createRecord", "did:web:nerv.tokyo.jp"),
    );
    let (s, b) = svc
        .post(
            "com.atproto.repo.createRecord",
            Some(&format!("Bearer {good}")),
            create.clone(),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // Wrong audience, wrong method, wrong key: refused.
    let wrong_aud = service_jwt(
        &key,
        &claims("com.atproto.repo.createRecord", "did:web:seele.example"),
    );
    let wrong_lxm = service_jwt(
        &key,
        &claims("com.atproto.repo.deleteRecord", "did:web:nerv.tokyo.jp"),
    );
    let other =
        stratos_domain::crypto::Keypair::generate(stratos_domain::crypto::KeyAlgorithm::K256);
    let wrong_key = service_jwt(
        &other,
        &claims("com.atproto.repo.createRecord", "did:web:nerv.tokyo.jp"),
    );
    let with = |exp: i64, iat: Option<i64>| {
        let mut c = claims("com.atproto.repo.createRecord", "did:web:nerv.tokyo.jp");
        c["exp"] = json!(exp);
        match iat {
            Some(iat) => c["iat"] = json!(iat),
            None => {
                c.as_object_mut().unwrap().remove("iat");
            }
        }
        service_jwt(&key, &c)
    };
    let now = now as i64;
    let expired = with(now - 120, Some(now - 180));
    // 2^60 is past the 2^53 range of JWT numeric dates: it was accepted as a 36-million-year
    // token. A token living two hours (iat now) or minted years ahead is past the lifetime cap.
    let huge = with(1 << 60, Some(now));
    let long = with(now + 7_200, Some(now));
    let long_without_iat = with(now + 7_200, None);
    let old_iat = with(now + 60, Some(now - 365 * 86_400));
    // Failures carry the atproto names (`@atproto/xrpc-server`), not internal codes.
    for (token, name) in [
        (wrong_aud, "BadJwtAudience"),
        (wrong_lxm, "BadJwtLexiconMethod"),
        (wrong_key, "BadJwtSignature"),
        (expired, "JwtExpired"),
        (huge, "BadJwt"),
        (long, "BadJwt"),
        (long_without_iat, "BadJwt"),
        (old_iat, "BadJwt"),
    ] {
        let (s, b) = svc
            .post(
                "com.atproto.repo.createRecord",
                Some(&format!("Bearer {token}")),
                create.clone(),
            )
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{name}: {b}");
        assert_eq!(b["error"], name, "{b}");
    }
    // Within the cap (55 minutes) still works.
    let fine = with(now + 3_300, Some(now));
    let (s, b) = svc
        .post(
            "com.atproto.repo.createRecord",
            Some(&format!("Bearer {fine}")),
            create.clone(),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    svc.stop().await;
}

/// Operators see and retry dead letters: with the loopback OAuth client the delivery worker
/// runs, and a damaged outbox row becomes a dead letter at its first claim. The listing shows
/// it (account, error, no write since it does not decode) with the total; a retry queues it
/// again under a new id (it dies again: still damaged); unknown ids, bad parameters and
/// callers without the operator password are refused.
#[tokio::test]
async fn dead_letters_are_listed_and_retried_by_the_operator() {
    use sea_orm::ConnectionTrait as _;
    let svc = start_with(&[("STRATOS_PUBLIC_URL", "http://127.0.0.1:9")]).await;
    let admin = format!("Bearer {ADMIN}");
    let list = "/xrpc/zone.stratos.admin.listDeadLetters";

    let (s, _) = svc.get(list, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = svc.get(list, Some("Bearer did:plc:rei")).await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "an account is not the operator"
    );
    let (s, body) = svc.get(list, Some(&admin)).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body, json!({ "total": 0, "deadLetters": [] }));

    let db = sea_orm::Database::connect(format!(
        "sqlite://{}",
        svc.data_dir().join("service.sqlite").display()
    ))
    .await
    .unwrap();
    db.execute_unprepared(
        "INSERT INTO outbox (did, item, due_ms) VALUES ('did:plc:rei', x'00ff', 0)",
    )
    .await
    .unwrap();
    // The worker skips a table it knows holds nothing due; a row written behind its back is
    // seen at the table's next change through the outbox (an enrollment queues its record).
    svc.enroll("did:plc:asuka", &["general"]).await;
    let dead = async |not_id: Option<&str>| {
        for _ in 0..200 {
            let (_, body) = svc.get(list, Some(&admin)).await;
            if body["total"] == 1 && body["deadLetters"][0]["id"].as_str() != not_id {
                return body["deadLetters"][0].clone();
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("no dead letter appeared");
    };
    let letter = dead(None).await;
    assert_eq!(letter["did"], "did:plc:rei", "{letter}");
    assert!(letter.get("action").is_none(), "nothing decodes: {letter}");
    assert!(
        letter["lastError"].as_str().unwrap().contains("corrupt"),
        "{letter}"
    );
    let id = letter["id"].as_str().unwrap().to_owned();

    let retry = "zone.stratos.admin.retryDeadLetter";
    let (s, _) = svc.post(retry, None, json!({ "id": id })).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, body) = svc.post(retry, Some(&admin), json!({ "id": id })).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let queued = body["id"].as_str().unwrap().to_owned();
    assert_ne!(queued, id);
    assert_eq!(
        dead(Some(&id)).await["id"],
        queued.as_str(),
        "buried again under its new id"
    );
    let (s, body) = svc.post(retry, Some(&admin), json!({ "id": id })).await;
    assert_eq!(
        (s, &body["error"]),
        (StatusCode::BAD_REQUEST, &json!("NotFound")),
        "{body}"
    );
    let (s, body) = svc.post(retry, Some(&admin), json!({ "id": "x" })).await;
    assert_eq!(
        (s, &body["error"]),
        (StatusCode::BAD_REQUEST, &json!("InvalidRequest"))
    );
    let (s, _) = svc.get(&format!("{list}?limit=0"), Some(&admin)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = svc.get(&format!("{list}?cursor=nope"), Some(&admin)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    svc.stop().await;
}
