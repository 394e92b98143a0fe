#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! `stratos_client::stream::RecordStream` against the running service: every commit, replayed
//! and live (a multi-op commit too), arrives verified and chained; a new consumer resumes from a
//! saved cursor and chain; a consumer verifying with the wrong key is refused at the first frame;
//! a stream the service refuses is an error, not a retry loop.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value as Json, json};
use stratos_client::ClientError;
use stratos_client::stream::{RecordStream, StreamAuth, StreamItem};
use stratos_domain::crypto::{KeyAlgorithm, Keypair, PublicKey};
use stratos_domain::repo::Action;
use stratos_domain::syntax::Did;

mod common;

use common::ADMIN;
const SYNC: &str = "sync-secret-for-client-tests";
const POST: &str = "zone.stratos.feed.post";
const SERVICE: &str = "did:web:nerv.tokyo.jp";

async fn call(http: &reqwest::Client, base: &str, nsid: &str, auth: &str, body: Json) -> Json {
    let res = http
        .post(format!("{base}/xrpc/{nsid}"))
        .header("authorization", auth)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let body: Json = res.json().await.unwrap_or(Json::Null);
    assert_eq!(status, StatusCode::OK, "{nsid}: {body}");
    body
}

async fn next(stream: &mut RecordStream) -> Result<StreamItem, ClientError> {
    tokio::time::timeout(Duration::from_secs(20), stream.next())
        .await
        .expect("an item within 20 s")
}

fn actions(item: &StreamItem) -> Vec<Action> {
    match item {
        StreamItem::Commit { frame, verified } => {
            assert!(verified.is_some(), "verified by default");
            frame.ops.iter().map(|op| op.action).collect()
        }
        other => panic!("expected a commit, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_stream_verifies_replayed_and_live_commits_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::config(
        dir.path(),
        &[
            ("STRATOS_SYNC_TOKEN", SYNC),
            ("STRATOS_WRITE_RATE_MAX_WRITES", "1000000"),
        ],
    );
    let server = stratos_service::start(config, 2).await.unwrap();
    let base = server.url();
    let http = reqwest::Client::new();
    let rei = "did:plc:rei";
    let enrolled = call(
        &http,
        &base,
        "zone.stratos.admin.enrollActor",
        &format!("Bearer {ADMIN}"),
        json!({ "did": rei, "boundaries": ["general"] }),
    )
    .await;
    let key = PublicKey::from_did_key(enrolled["signingKey"].as_str().unwrap()).unwrap();
    let owner = format!("Bearer {rei}");
    let create = |text: String| {
        let (http, base, owner) = (http.clone(), base.clone(), owner.clone());
        async move {
            call(
                &http,
                &base,
                "com.atproto.repo.createRecord",
                &owner,
                json!({ "repo": rei, "collection": POST,
                        "record": common::post_record(SERVICE, &text, &["general"]) }),
            )
            .await
        }
    };
    let mut rkeys = Vec::new();
    for i in 0..10 {
        rkeys.push(common::rkey_of(&create(format!("before {i}")).await));
    }
    call(
        &http,
        &base,
        "com.atproto.repo.applyWrites",
        &owner,
        json!({ "repo": rei, "writes": [
            { "$type": "com.atproto.repo.applyWrites#create", "collection": POST,
              "value": common::post_record(SERVICE, "batch", &["general"]) },
            { "$type": "com.atproto.repo.applyWrites#update", "collection": POST,
              "rkey": rkeys[1], "value": common::post_record(SERVICE, "changed", &["general"]) },
            { "$type": "com.atproto.repo.applyWrites#delete", "collection": POST, "rkey": rkeys[2] },
        ]}),
    )
    .await;

    let did = Did::parse(rei).unwrap();
    let mut stream = RecordStream::builder(&base, did.clone(), key.clone())
        .auth(StreamAuth::SyncToken(SYNC.into()))
        .build();
    for _ in 0..10 {
        assert_eq!(actions(&next(&mut stream).await.unwrap()), [Action::Create]);
    }
    assert_eq!(
        actions(&next(&mut stream).await.unwrap()),
        [Action::Create, Action::Update, Action::Delete]
    );
    create("live".into()).await;
    assert_eq!(actions(&next(&mut stream).await.unwrap()), [Action::Create]);
    assert_eq!(stream.cursor(), Some(12));

    // A new consumer resumes from what the first one would have saved.
    let (cursor, chain) = (stream.cursor(), stream.chain());
    drop(stream);
    create("while away".into()).await;
    let mut resumed = RecordStream::builder(&base, did.clone(), key.clone())
        .auth(StreamAuth::Authorization(format!("Bearer {rei}")))
        .cursor(cursor)
        .chain(chain)
        .build();
    let item = next(&mut resumed).await.unwrap();
    assert_eq!(actions(&item), [Action::Create]);
    let StreamItem::Commit { frame, .. } = item else {
        unreachable!()
    };
    assert_eq!(frame.seq, 13);

    // The wrong key: the first frame is refused, nothing is handed over.
    let other = Keypair::generate(KeyAlgorithm::P256);
    let mut wrong = RecordStream::builder(&base, did.clone(), other.public_key().clone())
        .auth(StreamAuth::SyncToken(SYNC.into()))
        .build();
    assert!(matches!(
        next(&mut wrong).await,
        Err(ClientError::Unverified { seq: 1, .. })
    ));
    assert_eq!(wrong.cursor(), None);

    // A refused stream is an error (no retry loop).
    let mut refused = RecordStream::builder(&base, did, key)
        .auth(StreamAuth::SyncToken("not the token".into()))
        .build();
    assert!(matches!(
        next(&mut refused).await,
        Err(ClientError::Refused { error, .. }) if error == "AuthRequired"
    ));
    server.stop().await.unwrap();
}
