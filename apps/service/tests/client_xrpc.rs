#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! `stratos_client::xrpc::StratosClient` against the running service: every typed call, with a
//! per-call service-auth JWT signed by the account's key (issuer resolved through a stub PLC
//! directory), with the admin bearer, anonymously, and with a DPoP-bound token from a stub
//! authorization server (the nonce handshake done by the client); XRPC errors come back typed.

use std::sync::Arc;

use serde_json::{Value, json};
use stratos_client::ClientError;
use stratos_client::xrpc::{Auth, DpopSession, Page, StratosClient, Write};
use stratos_domain::crypto::{KeyAlgorithm, Keypair, PublicKey};
use stratos_domain::oauth::DpopKey;
use stratos_domain::syntax::{AtUri, Did, Nsid, RecordKey};
use stratos_testkit::http_stub::StubServer;
use stratos_testkit::tokens::{now_secs, sign_jwt};

use crate::common;

use common::ADMIN;
const SERVICE: &str = "did:web:nerv.tokyo.jp";
const PUBLIC: &str = "https://nerv.tokyo.jp";
const POST: &str = "zone.stratos.feed.post";
const ACCOUNT: &str = "did:plc:accountaccountaccountacc";
const OTHER: &str = "did:plc:otherotherotherotherothe";

fn post(text: &str, boundaries: &[&str]) -> Value {
    common::post_record(SERVICE, text, boundaries)
}

fn rkey(uri: &str) -> RecordKey {
    RecordKey::parse(uri.rsplit('/').next().unwrap()).unwrap()
}

fn xrpc_error(r: Result<impl std::fmt::Debug, ClientError>) -> (u16, String) {
    match r {
        Err(ClientError::Xrpc { status, error, .. }) => (status, error),
        other => panic!("expected an XRPC error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_typed_with_service_auth_admin_and_dpop() {
    // The stub plays the PLC directory (issuer keys for service-auth JWTs), the account's PDS
    // and its authorization server (for the DPoP-bound token).
    let net = StubServer::start().await.unwrap();
    let origin = net.url();
    let account_key = Keypair::generate(KeyAlgorithm::P256);
    let other_key = Keypair::generate(KeyAlgorithm::K256);
    let as_key = Keypair::generate(KeyAlgorithm::P256);
    for (did, key) in [(ACCOUNT, &account_key), (OTHER, &other_key)] {
        net.json(
            &format!("/{did}"),
            &json!({
                "id": did,
                "verificationMethod": [{
                    "id": format!("{did}#atproto"), "type": "Multikey", "controller": did,
                    "publicKeyMultibase": key.public_key().to_multikey(),
                }],
                "service": [{ "id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": origin }],
            }),
        );
    }
    common::stub_authorization_server(&net, &as_key);
    let dir = tempfile::tempdir().unwrap();
    let config = common::config(dir.path(), &[("STRATOS_PLC_URL", origin.as_str())]);
    let server = stratos_service::start(config, 2).await.unwrap();
    let base = server.url();

    let account = Did::parse(ACCOUNT).unwrap();
    let posts = Nsid::parse(POST).unwrap();
    let admin = StratosClient::new(&base)
        .unwrap()
        .with_auth(Auth::Bearer(ADMIN.into()));
    let enrolled = admin.admin_enroll(&account, &["general"]).await.unwrap();
    assert_eq!(enrolled["did"], ACCOUNT);
    admin.admin_add_boundary(&account, "other").await.unwrap();
    admin
        .admin_remove_boundary(&account, "other")
        .await
        .unwrap();
    admin
        .admin_set_boundaries(&account, &["general"])
        .await
        .unwrap();
    assert!(
        admin
            .admin_list_dead_letters(&Page::default())
            .await
            .is_ok()
    );
    assert_eq!(
        xrpc_error(admin.admin_retry_dead_letter("999").await),
        (400, "NotFound".into())
    );

    // The account itself, with a service-auth JWT per call.
    let owner = StratosClient::new(&base)
        .unwrap()
        .with_auth(Auth::service_jwt(
            Arc::new(account_key),
            account.clone(),
            SERVICE,
        ));
    let status = owner.enrollment_status(&account).await.unwrap();
    assert!(status.enrolled && status.attestation.is_some());
    let user_key = PublicKey::from_did_key(status.signing_key.as_deref().unwrap()).unwrap();
    assert!(owner.resolve_enrollments(&account).await.unwrap().enrolled);
    assert!(!owner.list_domains().await.unwrap().is_empty());

    let first = owner
        .create_record(&account, &posts, None, &post("first", &["general"]))
        .await
        .unwrap();
    assert!(first.commit.is_some());
    let second = owner
        .create_record(&account, &posts, None, &post("second", &["general"]))
        .await
        .unwrap();
    let got = owner
        .get_record(&account, &posts, &rkey(&first.uri), None)
        .await
        .unwrap();
    assert_eq!(got.value["text"], "first");
    let replaced = owner
        .put_record(
            &account,
            &posts,
            &rkey(&first.uri),
            &post("first, edited", &["general"]),
            Some(&first.cid.parse().unwrap()),
        )
        .await
        .unwrap();
    assert_ne!(replaced.cid, first.cid);
    // A stale swap is a typed conflict.
    let (status_code, error) = xrpc_error(
        owner
            .put_record(
                &account,
                &posts,
                &rkey(&first.uri),
                &post("again", &["general"]),
                Some(&first.cid.parse().unwrap()),
            )
            .await,
    );
    assert_eq!((status_code, error.as_str()), (400, "InvalidSwap"));
    let applied = owner
        .apply_writes(
            &account,
            &[
                Write::Create {
                    collection: posts.clone(),
                    rkey: None,
                    value: post("third", &["general"]),
                },
                Write::Delete {
                    collection: posts.clone(),
                    rkey: rkey(&second.uri),
                },
            ],
        )
        .await
        .unwrap();
    assert_eq!(applied.results.len(), 2);
    let listed = owner
        .list_records(
            &account,
            &posts,
            &Page {
                limit: Some(10),
                ..Page::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(listed.records.len(), 2);
    assert_eq!(
        owner.describe_repo(&account).await.unwrap().collections,
        [POST]
    );
    let latest = owner.get_latest_commit(&account).await.unwrap();
    assert_eq!(latest.rev, applied.commit.rev);

    // Verified reads.
    let proven = owner
        .get_verified_record(&user_key, &account, &posts, &rkey(&first.uri))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(proven.cid.to_string(), replaced.cid);
    let (repo, car) = owner
        .export_verified_repo(&user_key, &account)
        .await
        .unwrap();
    assert_eq!(repo.records.len(), 2);
    let synced = owner.get_repo(&account).await.unwrap();
    assert_eq!(
        stratos_client::verify::repo_export(&user_key, &account, &synced)
            .unwrap()
            .records,
        repo.records
    );

    // Blobs.
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89\0\0\0\nIDATx\x9cc\0\x01\0\0\x05\0\x01\r\n-\xb4\0\0\0\0IEND\xaeB`\x82".to_vec();
    let blob = owner.upload_blob(png.clone(), "image/png").await.unwrap();
    let mut with_image = post("with an image", &["general"]);
    with_image["embed"] = json!({
        "$type": "app.bsky.embed.images",
        "images": [{ "alt": "a dot", "image": blob }],
    });
    let pictured = owner
        .create_record(&account, &posts, None, &with_image)
        .await
        .unwrap();
    let blob_cid = blob["ref"]["$link"].as_str().unwrap().parse().unwrap();
    assert_eq!(owner.get_blob(&account, &blob_cid).await.unwrap(), png);
    assert_eq!(
        owner
            .list_blobs(&account, None, &Page::default())
            .await
            .unwrap()
            .cids,
        [blob_cid.to_string()]
    );

    // Hydration: the owner sees its records; a URI that does not exist is "not found".
    let uri = AtUri::parse(&pictured.uri).unwrap();
    assert_eq!(
        owner.hydrate_record(&uri, None).await.unwrap().uri,
        pictured.uri
    );
    let missing = AtUri::parse(&format!("at://{ACCOUNT}/{POST}/3kzzzzzzzzzz2")).unwrap();
    let hydrated = owner
        .hydrate_records(&[uri.clone(), missing.clone()])
        .await
        .unwrap();
    assert_eq!(hydrated.records.len(), 1);
    assert_eq!(hydrated.not_found, [missing.to_string()]);

    // Someone else, authenticated, enrolled nowhere: the private records are not theirs to see,
    // and a denial says no more than "not found".
    let other = StratosClient::new(&base)
        .unwrap()
        .with_auth(Auth::service_jwt(
            Arc::new(other_key),
            Did::parse(OTHER).unwrap(),
            SERVICE,
        ));
    assert_eq!(
        xrpc_error(
            other
                .get_record(&account, &posts, &rkey(&first.uri), None)
                .await
        )
        .1,
        "RecordNotFound"
    );
    assert!(
        other
            .hydrate_records(std::slice::from_ref(&uri))
            .await
            .unwrap()
            .records
            .is_empty()
    );
    // Anonymous writes are refused; a token for another audience too.
    let anonymous = StratosClient::new(&base).unwrap();
    assert_eq!(
        xrpc_error(
            anonymous
                .create_record(&account, &posts, None, &post("x", &["general"]))
                .await
        )
        .0,
        401
    );
    let wrong_audience = StratosClient::new(&base)
        .unwrap()
        .with_auth(Auth::service_jwt(
            Arc::new(Keypair::generate(KeyAlgorithm::P256)),
            account.clone(),
            "did:web:elsewhere.example",
        ));
    assert_eq!(
        xrpc_error(
            wrong_audience
                .create_record(&account, &posts, None, &post("x", &["general"]))
                .await
        )
        .0,
        401
    );

    // A DPoP-bound token from the account's authorization server: the client learns the nonce.
    let dpop_key = DpopKey::generate();
    let now = now_secs();
    let token = sign_jwt(
        &as_key,
        &json!({ "typ": "at+jwt", "kid": "as-1" }),
        &json!({
            "iss": origin, "sub": ACCOUNT, "aud": "did:web:pds.example", "iat": now, "exp": now + 300,
            "scope": "atproto transition:generic", "cnf": { "jkt": dpop_key.thumbprint() },
        }),
    );
    let dpop = StratosClient::new(&base)
        .unwrap()
        .with_public_url(PUBLIC)
        .with_auth(Auth::Dpop(Arc::new(DpopSession::new(token, dpop_key))));
    let by_dpop = dpop
        .create_record(&account, &posts, None, &post("by dpop", &["general"]))
        .await
        .unwrap();
    assert_eq!(
        dpop.get_record(&account, &posts, &rkey(&by_dpop.uri), None)
            .await
            .unwrap()
            .value["text"],
        "by dpop"
    );

    // Import into another account's repository, then leave.
    let imported = admin
        .admin_enroll(&Did::parse(OTHER).unwrap(), &["general"])
        .await
        .unwrap();
    assert_eq!(imported["did"], OTHER);
    let (code, error) = xrpc_error(other.import_repo(car.clone()).await);
    assert_eq!(
        code, 400,
        "another account's repository is refused: {error}"
    );
    assert_eq!(
        xrpc_error(owner.import_repo(car).await),
        (409, "RepoNotEmpty".into())
    );
    // A repository of the other account's own, built and signed elsewhere, goes in whole.
    let other_did = Did::parse(OTHER).unwrap();
    let own_car = common::foreign_repo_car(&other_did, SERVICE, 3);
    assert_eq!(other.import_repo(own_car).await.unwrap(), 3);
    assert_eq!(
        other
            .list_records(&other_did, &posts, &Page::default())
            .await
            .unwrap()
            .records
            .len(),
        3
    );
    owner.unenroll().await.unwrap();
    assert!(!owner.enrollment_status(&account).await.unwrap().enrolled);
    server.stop().await.unwrap();
}
