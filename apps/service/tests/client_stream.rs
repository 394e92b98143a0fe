#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! `stratos_client::stream::RecordStream` against the running service: every commit, replayed
//! and live (a multi-op commit too), arrives verified and chained; a new consumer resumes from a
//! saved cursor and chain; a consumer verifying with the wrong key is refused at the first frame;
//! a stream the service refuses is an error, not a retry loop.

use std::time::Duration;

use serde_json::{Value as Json, json};
use stratos_client::ClientError;
use stratos_client::stream::{RecordStream, StreamAuth, StreamItem};
use stratos_domain::crypto::{KeyAlgorithm, Keypair, PublicKey};
use stratos_domain::repo::Action;
use stratos_domain::syntax::Did;

use crate::common;

use common::ADMIN;
const SYNC: &str = "sync-secret-for-client-tests";
const POST: &str = "zone.stratos.feed.post";
const SERVICE: &str = "did:web:nerv.tokyo.jp";

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

/// The service's test configuration with the stream's token and no write limit.
fn config(dir: &std::path::Path) -> stratos_service::config::Config {
    common::config(
        dir,
        &[
            ("STRATOS_SYNC_TOKEN", SYNC),
            ("STRATOS_WRITE_RATE_MAX_WRITES", "1000000"),
        ],
    )
}

/// Enrolls `did` (admin) and returns its signing key.
async fn enroll(http: &reqwest::Client, base: &str, did: &str) -> PublicKey {
    let enrolled = common::post_ok(
        http,
        base,
        "zone.stratos.admin.enrollActor",
        &format!("Bearer {ADMIN}"),
        json!({ "did": did, "boundaries": ["general"] }),
    )
    .await;
    PublicKey::from_did_key(enrolled["signingKey"].as_str().unwrap()).unwrap()
}

/// A post by `did` (dev bearer) in `general`; the answer.
async fn create(http: &reqwest::Client, base: &str, did: &str, text: &str) -> Json {
    common::post_ok(
        http,
        base,
        "com.atproto.repo.createRecord",
        &format!("Bearer {did}"),
        json!({ "repo": did, "collection": POST,
                "record": common::post_record(SERVICE, text, &["general"]) }),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_stream_verifies_replayed_and_live_commits_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let server = stratos_service::start(config(dir.path()), 2).await.unwrap();
    let base = server.url();
    let http = stratos_testkit::http_client();
    let rei = "did:plc:rei";
    let key = enroll(&http, &base, rei).await;
    let owner = format!("Bearer {rei}");
    let mut rkeys = Vec::new();
    for i in 0..10 {
        rkeys.push(common::rkey_of(
            &create(&http, &base, rei, &format!("before {i}")).await,
        ));
    }
    common::post_ok(
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
    create(&http, &base, rei, "live").await;
    assert_eq!(actions(&next(&mut stream).await.unwrap()), [Action::Create]);
    assert_eq!(stream.cursor(), Some(12));

    // A new consumer resumes from what the first one would have saved.
    let (cursor, chain) = (stream.cursor(), stream.chain());
    drop(stream);
    create(&http, &base, rei, "while away").await;
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

/// The consumer rides out a restart of the service (same address and data): it reconnects with
/// backoff from its cursor, and the commits made after the restart arrive verified, chained onto
/// those before it. A cursor older than the retained log yields `OutdatedCursor` (the backfill
/// signal) and then the retained commits, verified afresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_stream_reconnects_across_a_restart_and_signals_an_outdated_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let start = || {
        let mut config = config(dir.path());
        config.port = port;
        stratos_service::start(config, 2)
    };
    let server = start().await.unwrap();
    let base = server.url();
    let http = stratos_testkit::http_client();
    let rei = "did:plc:rei";
    let key = enroll(&http, &base, rei).await;
    for text in ["one", "two", "three"] {
        create(&http, &base, rei, text).await;
    }
    let did = Did::parse(rei).unwrap();
    let mut stream = RecordStream::builder(&base, did.clone(), key.clone())
        .auth(StreamAuth::SyncToken(SYNC.into()))
        .max_backoff(Duration::from_millis(500))
        .build();
    for _ in 0..3 {
        actions(&next(&mut stream).await.unwrap());
    }
    let chain_before = stream.chain();

    server.stop().await.unwrap();
    let server = start().await.unwrap();
    assert_eq!(server.url(), base, "same address");
    create(&http, &base, rei, "four").await;
    create(&http, &base, rei, "five").await;
    for seq in [4, 5] {
        let item = next(&mut stream).await.unwrap();
        let StreamItem::Commit { frame, .. } = &item else {
            panic!("{item:?}")
        };
        assert_eq!(frame.seq, seq);
    }
    assert_ne!(stream.chain(), chain_before);

    // Drop the oldest events, as a retention job would; a consumer resuming before them is told.
    common::drop_oldest_events(dir.path(), rei, 3).await;
    let mut late = RecordStream::builder(&base, did, key)
        .auth(StreamAuth::SyncToken(SYNC.into()))
        .cursor(Some(1))
        .build();
    assert!(matches!(
        next(&mut late).await.unwrap(),
        StreamItem::OutdatedCursor { .. }
    ));
    for seq in [4, 5] {
        let StreamItem::Commit { frame, verified } = next(&mut late).await.unwrap() else {
            panic!("a commit")
        };
        assert_eq!(frame.seq, seq);
        assert!(verified.is_some());
    }
    server.stop().await.unwrap();
}

/// An import commits more ops than a firehose event may prove: the consumer is told to re-read
/// the account (`Resync`, its content not handed over as verified), the export it re-reads
/// verifies, and the next commit verifies again from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_too_large_to_prove_asks_for_a_resync() {
    let dir = tempfile::tempdir().unwrap();
    let server = stratos_service::start(config(dir.path()), 2).await.unwrap();
    let base = server.url();
    let http = stratos_testkit::http_client();
    let kaji = "did:plc:kaji";
    let key = enroll(&http, &base, kaji).await;
    let did = Did::parse(kaji).unwrap();
    // A repository of 250 posts built elsewhere, imported in one commit.
    let car = common::foreign_repo_car(&did, SERVICE, 250);
    let client = stratos_client::xrpc::StratosClient::new(&base)
        .unwrap()
        .with_auth(stratos_client::xrpc::Auth::Bearer(kaji.into()));
    assert_eq!(client.import_repo(car).await.unwrap(), 250);

    let mut stream = RecordStream::builder(&base, did.clone(), key.clone())
        .auth(StreamAuth::SyncToken(SYNC.into()))
        .build();
    let StreamItem::Resync { frame } = next(&mut stream).await.unwrap() else {
        panic!("the import asks for a resync")
    };
    assert_eq!((frame.ops.len(), frame.blocks.as_ref()), (250, None));
    let (repo, _) = client.export_verified_repo(&key, &did).await.unwrap();
    assert_eq!(repo.records.len(), 250);
    // Resume the chain from the verified export: the next commit must follow it.
    stream.resume_from(stream.cursor(), Some(repo.data));
    create(&http, &base, kaji, "after the import").await;
    assert_eq!(actions(&next(&mut stream).await.unwrap()), [Action::Create]);
    server.stop().await.unwrap();
}
