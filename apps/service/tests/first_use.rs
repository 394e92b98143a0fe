#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! What a first-time user runs into, over real HTTP on a loopback port (SQLite and local blobs
//! in a temporary directory): standard atproto tools can export a repository
//! (`com.atproto.sync.getRepo`), and client mistakes get answers that say what to do instead
//! (admin without a password, export by a non-owner, a short boundary name, a dev bearer that
//! is not a DID).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common;

use common::{ADMIN, Svc, start_with};
const POST: &str = "zone.stratos.feed.post";
const SERVICE: &str = "did:web:nerv.tokyo.jp";

fn post_with_values(values: &[&str]) -> Value {
    json!({
        "$type": POST,
        "text": "hello",
        "boundary": {
            "$type": "zone.stratos.boundary.defs#Domains",
            "values": values.iter().map(|v| json!({ "value": v })).collect::<Vec<_>>(),
        },
        "createdAt": "2026-11-25T09:00:00.000Z",
    })
}

impl Svc {
    /// Status, content type and body bytes.
    async fn get_raw(
        &self,
        path_and_query: &str,
        auth: Option<&str>,
    ) -> (StatusCode, String, Vec<u8>) {
        let mut req = self.http.get(self.url(path_and_query));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let ctype = res
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, ctype, res.bytes().await.unwrap().to_vec())
    }

    async fn enroll_general(&self, did: &str) {
        let (s, b) = self
            .post(
                "zone.stratos.admin.enrollActor",
                Some(&format!("Bearer {ADMIN}")),
                json!({ "did": did, "boundaries": ["general"] }),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }

    async fn create_with(&self, did: &str, values: &[&str]) -> (StatusCode, Value) {
        self.post(
            "com.atproto.repo.createRecord",
            Some(&format!("Bearer {did}")),
            json!({ "repo": did, "collection": POST, "record": post_with_values(values) }),
        )
        .await
    }
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or(Value::Null)
}

/// Standard atproto tools export with `com.atproto.sync.getRepo`: it serves the same CAR as
/// `zone.stratos.sync.getRepo`, under the same rule (the owner only: the CAR holds every
/// private record in clear).
#[tokio::test]
async fn com_atproto_sync_get_repo_serves_the_owner_and_refuses_everyone_else() {
    let svc = start_with(&[]).await;
    svc.enroll_general("did:plc:rei").await;
    let (s, b) = svc
        .create_with("did:plc:rei", &[&format!("{SERVICE}/general")])
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (_, _, head) = svc
        .get_raw(
            "/xrpc/com.atproto.sync.getLatestCommit?did=did:plc:rei",
            None,
        )
        .await;
    let head = json_of(&head);

    let atproto = "/xrpc/com.atproto.sync.getRepo?did=did:plc:rei";
    let (s, ctype, car) = svc.get_raw(atproto, Some("Bearer did:plc:rei")).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&car));
    assert_eq!(ctype, "application/vnd.ipld.car");
    let parsed =
        stratos_domain::car::read(&car, stratos_domain::car::CarLimits::default()).unwrap();
    assert_eq!(parsed.roots[0].to_string(), head["cid"].as_str().unwrap());
    let (_, _, stratos) = svc
        .get_raw(
            "/xrpc/zone.stratos.sync.getRepo?did=did:plc:rei",
            Some("Bearer did:plc:rei"),
        )
        .await;
    assert_eq!(car, stratos, "both methods export the same CAR");

    let (s, _, body) = svc.get_raw(atproto, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(json_of(&body)["error"], "AuthenticationRequired");
    let (s, _, body) = svc.get_raw(atproto, Some("Bearer did:plc:asuka")).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let body = json_of(&body);
    // The refusal says what the rule is, not that the caller "cannot write".
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("only the repository's owner may export it"),
        "{body}"
    );
    assert!(!message.contains("write"), "{body}");
    let (s, _, body) = svc
        .get_raw("/xrpc/com.atproto.sync.getRepo", Some("Bearer did:plc:rei"))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{}", json_of(&body));
    svc.stop().await;
}

/// Admin endpoints of a service without `STRATOS_ADMIN_PASSWORD` answer 401
/// `AuthenticationRequired` (as docs/configuration.md says), and say why.
#[tokio::test]
async fn admin_endpoints_without_a_configured_password_answer_401() {
    let svc = start_with(&[("STRATOS_ADMIN_PASSWORD", "")]).await;
    for auth in [None, Some("Bearer anything")] {
        let (s, b) = svc
            .post(
                "zone.stratos.admin.enrollActor",
                auth,
                json!({ "did": "did:plc:rei", "boundaries": ["general"] }),
            )
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
        assert_eq!(b["error"], "AuthenticationRequired", "{b}");
        assert!(
            b["message"]
                .as_str()
                .unwrap()
                .contains("STRATOS_ADMIN_PASSWORD"),
            "{b}"
        );
    }
    svc.stop().await;
}

/// A boundary given by its short name is refused with the service DID and the qualified form
/// to use instead.
#[tokio::test]
async fn a_short_boundary_name_is_refused_with_the_qualified_form() {
    let svc = start_with(&[]).await;
    svc.enroll_general("did:plc:rei").await;
    let (s, b) = svc.create_with("did:plc:rei", &["general"]).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(b["error"], "InvalidBoundary", "{b}");
    let message = b["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("\"{SERVICE}/general\"")),
        "names the qualified form: {message}"
    );
    assert!(
        message.contains(&format!("service {SERVICE}")),
        "names the service DID: {message}"
    );
    // The qualified form it suggests works.
    let (s, b) = svc
        .create_with("did:plc:rei", &[&format!("{SERVICE}/general")])
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    svc.stop().await;
}

/// In dev mode a bearer that is neither a DID nor a JWT is refused with a message saying that
/// dev mode expects a DID.
#[tokio::test]
async fn a_dev_bearer_that_is_not_a_did_says_dev_mode_expects_one() {
    let svc = start_with(&[]).await;
    svc.enroll_general("did:plc:rei").await;
    let (s, b) = svc
        .post(
            "com.atproto.repo.createRecord",
            Some("Bearer notadid"),
            json!({ "repo": "did:plc:rei", "collection": POST, "record": post_with_values(&[&format!("{SERVICE}/general")]) }),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    assert_eq!(b["error"], "InvalidToken", "{b}");
    let message = b["message"].as_str().unwrap();
    assert!(message.contains("dev mode"), "{message}");
    assert!(message.contains("Bearer <did>"), "{message}");
    svc.stop().await;
}
