#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! The framework-free XRPC reads and the one error mapping: boundary-filtered answers over a
//! neutral request view, with the library's authentication (the dev bearer here; the token
//! checks are tests/auth.rs).

use serde_json::{Value, json};
use stratos_domain::syntax::Did;
use stratos_ports::Stratos;
use stratos_ports::auth::{AuthSettings, RequestView};
use stratos_ports::usecases::UseCaseError;
use stratos_ports::xrpc::{XrpcError, XrpcResponse, reads};
use stratos_testkit::memory;

const POST: &str = "zone.stratos.feed.post";
const ALICE: &str = "did:web:alice.example";
const BOB: &str = "did:web:bob.example";
const CAROL: &str = "did:web:carol.example";

/// Alice and Bob hold `friends`, Carol `family`; Alice posted for friends. The URI and rkey of
/// the post.
async fn world() -> (Stratos, String, String) {
    let stratos = memory::stratos(Did::parse("did:web:stratos.example").unwrap())
        .boundaries(["friends", "family"])
        .auth_settings(AuthSettings::default().dev_mode(true))
        .build()
        .await
        .unwrap();
    let (friends, family) = (&stratos.boundaries()[0], &stratos.boundaries()[1]);
    for (who, boundary) in [(ALICE, friends), (BOB, friends), (CAROL, family)] {
        stratos
            .enrollments()
            .enroll_direct(&Did::parse(who).unwrap(), std::slice::from_ref(boundary))
            .await
            .unwrap();
    }
    let alice = Did::parse(ALICE).unwrap();
    let post = json!({"$type": POST, "text": "for friends only",
        "createdAt": "2026-12-07T09:00:00.000Z", "boundary": {
            "$type": "zone.stratos.boundary.defs#Domains", "values": [{"value": friends.as_str()}]}});
    let commit = stratos
        .records()
        .create_record(&alice, &alice, &POST.parse().unwrap(), None, post)
        .await
        .unwrap();
    let uri = commit.results[0].uri.clone();
    let rkey = uri.rkey().unwrap().to_string();
    (stratos, uri.to_string(), rkey)
}

fn get(path_and_query: &str, viewer: Option<&str>) -> RequestView {
    let req = RequestView::new("GET", path_and_query);
    match viewer {
        Some(did) => req.with_header("Authorization", format!("Bearer {did}")),
        None => req,
    }
}

async fn serve(stratos: &Stratos, req: &RequestView, body: &[u8]) -> XrpcResponse {
    reads::serve(stratos, req, body).await.expect("a read")
}

#[tokio::test]
async fn get_record_answers_a_denied_record_exactly_like_a_missing_one() {
    let (stratos, uri, rkey) = world().await;
    let path = |rkey: &str| {
        format!("/xrpc/com.atproto.repo.getRecord?repo={ALICE}&collection={POST}&rkey={rkey}")
    };
    let ok = serve(&stratos, &get(&path(&rkey), Some(BOB)), b"").await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.body["uri"], uri);
    assert_eq!(ok.body["value"]["text"], "for friends only");
    assert_eq!(ok.header("content-type"), Some("application/json"));

    let missing = serve(&stratos, &get(&path("3zzzzzzzzzzzz"), Some(BOB)), b"").await;
    assert_eq!(missing.status, 400);
    assert_eq!(missing.body["error"], "RecordNotFound");
    for viewer in [Some(CAROL), None, Some("Bearer-less junk")] {
        let denied = serve(&stratos, &get(&path(&rkey), viewer), b"").await;
        assert_eq!(
            (denied.status, &denied.body),
            (missing.status, &missing.body),
            "{viewer:?}"
        );
    }
}

#[tokio::test]
async fn list_records_filters_and_checks_its_parameters() {
    let (stratos, uri, _) = world().await;
    let path = format!("/xrpc/com.atproto.repo.listRecords?repo={ALICE}&collection={POST}");
    let page = serve(&stratos, &get(&path, Some(BOB)), b"").await;
    assert_eq!(page.body["records"][0]["uri"], uri);
    let page = serve(&stratos, &get(&path, Some(CAROL)), b"").await;
    assert_eq!(page.body["records"], json!([]));
    for bad in ["&limit=0", "&limit=101", "&reverse=yes"] {
        let res = serve(&stratos, &get(&format!("{path}{bad}"), None), b"").await;
        assert_eq!(
            (res.status, &res.body["error"]),
            (400, &json!("InvalidRequest")),
            "{bad}"
        );
    }
    let res = serve(
        &stratos,
        &get("/xrpc/com.atproto.repo.listRecords?repo=alice", None),
        b"",
    )
    .await;
    assert_eq!(res.body["error"], "InvalidRequest");
}

#[tokio::test]
async fn hydrate_records_reports_denied_as_not_found() {
    let (stratos, uri, _) = world().await;
    let body = json!({ "uris": [uri] }).to_string();
    let req = |viewer: &str| {
        RequestView::new("POST", "/xrpc/zone.stratos.repo.hydrateRecords")
            .with_header("authorization", format!("Bearer {viewer}"))
    };
    let res = serve(&stratos, &req(BOB), body.as_bytes()).await;
    assert_eq!(res.body["records"][0]["uri"], uri);
    assert_eq!(res.body["notFound"], json!([]));
    let res = serve(&stratos, &req(CAROL), body.as_bytes()).await;
    assert_eq!(res.body["records"], json!([]));
    assert_eq!(res.body["notFound"], json!([uri]));
    assert_eq!(res.body["blocked"], json!([]));
    let res = serve(&stratos, &req(BOB), b"").await;
    assert_eq!(
        (res.status, &res.body["error"]),
        (400, &json!("InvalidRequest"))
    );

    let one = format!("/xrpc/zone.stratos.repo.hydrateRecord?uri={uri}");
    assert_eq!(
        serve(&stratos, &get(&one, Some(BOB)), b"").await.status,
        200
    );
    let res = serve(&stratos, &get(&one, Some(CAROL)), b"").await;
    assert_eq!(res.body["error"], "RecordNotFound");
}

#[tokio::test]
async fn serve_answers_only_its_reads_with_the_right_methods() {
    let (stratos, _, _) = world().await;
    assert!(
        reads::serve(&stratos, &get("/hello", None), b"")
            .await
            .is_none()
    );
    assert!(
        reads::serve(
            &stratos,
            &get("/xrpc/com.atproto.repo.createRecord", None),
            b""
        )
        .await
        .is_none()
    );
    let res = serve(
        &stratos,
        &RequestView::new("POST", "/xrpc/com.atproto.repo.getRecord"),
        b"{}",
    )
    .await;
    assert_eq!(res.status, 400);
    assert_eq!(
        res.body["message"],
        "Incorrect HTTP method (POST) expected GET"
    );
    // Mounted below a prefix: the NSID is what follows `/xrpc/`.
    let res = serve(
        &stratos,
        &get("/stratos/xrpc/com.atproto.repo.getRecord", None),
        b"",
    )
    .await;
    assert_eq!(res.body["error"], "InvalidRequest");
    // A request with a DPoP proof gets the current nonce.
    let res = serve(
        &stratos,
        &get("/xrpc/com.atproto.repo.getRecord", None).with_header("DPoP", "x"),
        b"",
    )
    .await;
    assert_eq!(
        res.header("dpop-nonce"),
        Some(stratos.auth().current_nonce().as_str())
    );
}

#[test]
fn use_case_errors_map_to_their_xrpc_answers() {
    let cases: Vec<(UseCaseError, u16, &str)> = vec![
        (
            UseCaseError::InvalidRequest("x".into()),
            400,
            "InvalidRequest",
        ),
        (
            UseCaseError::NotEnrolled(ALICE.parse().unwrap()),
            400,
            "NotEnrolled",
        ),
        (UseCaseError::Forbidden("x".into()), 403, "Forbidden"),
        (
            UseCaseError::RepoAlreadyExists(ALICE.into()),
            409,
            "RepoNotEmpty",
        ),
        (UseCaseError::BlobNotFound("x".into()), 400, "BlobNotFound"),
        (UseCaseError::InvalidSwap("x".into()), 400, "InvalidSwap"),
        (UseCaseError::Conflict(ALICE.into()), 503, "WriteConflict"),
        (
            UseCaseError::Unavailable(stratos_ports::Cause::message("db down")),
            503,
            "ServiceUnavailable",
        ),
        (
            UseCaseError::Internal("/var/secret".into()),
            500,
            "InternalServerError",
        ),
        (
            UseCaseError::Rule(stratos_domain::Error::RateLimited {
                retry_after_ms: 1500,
            }),
            429,
            "RateLimitExceeded",
        ),
    ];
    for (e, status, name) in cases {
        let x = XrpcError::from(e);
        assert_eq!((x.status, x.error), (status, name), "{x}");
        // Internal details stay in the log.
        assert!(!x.message.contains("/var/secret") && !x.message.contains("db down"));
    }
    let conflict = XrpcError::from(UseCaseError::Conflict(ALICE.into()));
    assert_eq!(conflict.headers(), vec![("retry-after", "1".to_owned())]);
    // The OAuth callback's enrollment fails the way any use case does: a concurrent write is a
    // retryable conflict, not "storage unavailable".
    use stratos_ports::usecases::oauth::OAuthFlowError;
    let through_oauth = XrpcError::from(OAuthFlowError::from(UseCaseError::Conflict(ALICE.into())));
    assert_eq!(
        (through_oauth.status, through_oauth.error),
        (503, "WriteConflict")
    );
    assert_eq!(
        through_oauth.headers(),
        vec![("retry-after", "1".to_owned())]
    );
    let limited_oauth = XrpcError::from(OAuthFlowError::from(UseCaseError::Rule(
        stratos_domain::Error::RateLimited {
            retry_after_ms: 1500,
        },
    )));
    assert_eq!(limited_oauth.status, 429);
    let limited = XrpcError::from(UseCaseError::Rule(stratos_domain::Error::RateLimited {
        retry_after_ms: 1500,
    }));
    assert_eq!(limited.retry_after_s, Some(2));
    let body: Value = XrpcResponse::from(XrpcError::record_not_found()).body;
    assert_eq!(
        body,
        json!({"error": "RecordNotFound", "message": "Could not locate record"})
    );
}
