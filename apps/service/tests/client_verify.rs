#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! `stratos_client::verify` against the running service: record proofs (present and absent),
//! the repository export and the enrollment attestation verify with the right keys; a wrong
//! key, another account, a flipped byte and altered enrollment facts are refused.

use serde_json::{Value as Json, json};
use stratos_client::verify;
use stratos_domain::crypto::{KeyAlgorithm, Keypair, PublicKey};
use stratos_domain::syntax::{Did, Nsid, RecordKey};

use crate::common;

use common::ADMIN;
const POST: &str = "zone.stratos.feed.post";
const SERVICE: &str = "did:web:nerv.tokyo.jp";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proofs_exports_and_attestations_verify_with_the_right_keys_only() {
    let svc = common::start_with(&[]).await;
    let rei = Did::parse("did:plc:rei").unwrap();
    let owner = "Bearer did:plc:rei";
    common::post_ok(
        &svc.http,
        &svc.base,
        "zone.stratos.admin.enrollActor",
        &format!("Bearer {ADMIN}"),
        json!({ "did": rei.as_str(), "boundaries": ["general"] }),
    )
    .await;
    let status: Json = svc
        .get_ok(
            &format!("/xrpc/zone.stratos.enrollment.status?did={rei}"),
            owner,
        )
        .await
        .json()
        .await
        .unwrap();
    let user_key = PublicKey::from_did_key(status["signingKey"].as_str().unwrap()).unwrap();
    let mut rkeys = Vec::new();
    for i in 0..12 {
        let out = common::post_ok(
                &svc.http,
                &svc.base,
                "com.atproto.repo.createRecord",
                owner,
                json!({ "repo": rei.as_str(), "collection": POST,
                        "record": common::post_record(SERVICE, &format!("post {i}"), &["general"]) }),
            )
        .await;
        rkeys.push(common::rkey_of(&out));
    }
    let collection = Nsid::parse(POST).unwrap();
    let other_key = Keypair::generate(KeyAlgorithm::P256);

    // A record proof, with the record.
    let rkey = RecordKey::parse(&rkeys[5]).unwrap();
    let car = svc
        .get_ok(
            &format!("/xrpc/com.atproto.sync.getRecord?did={rei}&collection={POST}&rkey={rkey}"),
            owner,
        )
        .await
        .bytes()
        .await
        .unwrap();
    let record = verify::record_proof(&user_key, &rei, &collection, &rkey, &car)
        .unwrap()
        .expect("present");
    assert_eq!(
        stratos_domain::data::ipld_to_json(&record.record).unwrap()["text"],
        "post 5"
    );
    assert!(verify::record_proof(other_key.public_key(), &rei, &collection, &rkey, &car).is_err());
    let asuka = Did::parse("did:plc:asuka").unwrap();
    assert!(verify::record_proof(&user_key, &asuka, &collection, &rkey, &car).is_err());
    let mut flipped = car.to_vec();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert!(verify::record_proof(&user_key, &rei, &collection, &rkey, &flipped).is_err());
    // The same CAR does not prove another key present.
    let elsewhere = RecordKey::parse(&rkeys[6]).unwrap();
    assert!(
        verify::record_proof(&user_key, &rei, &collection, &elsewhere, &car).is_err(),
        "a proof for one path says nothing of another"
    );
    let missing = RecordKey::parse("3kzzzzzzzzzz2").unwrap();
    let res = svc
        .http
        .get(format!(
            "{}/xrpc/com.atproto.sync.getRecord?did={rei}&collection={POST}&rkey={missing}",
            svc.base
        ))
        .header("authorization", owner)
        .send()
        .await
        .unwrap();
    // No proof of absence is served: it would tell a reader without access that the record
    // does not exist (a denial never reveals whether a private record exists).
    assert!(res.status().is_client_error(), "{}", res.status());

    // The export.
    let export = svc
        .get_ok(&format!("/xrpc/zone.stratos.sync.getRepo?did={rei}"), owner)
        .await
        .bytes()
        .await
        .unwrap();
    let repo = verify::repo_export(&user_key, &rei, &export).unwrap();
    assert_eq!(repo.records.len(), 12);
    assert_eq!(record.rev, repo.rev);
    assert!(verify::repo_export(other_key.public_key(), &rei, &export).is_err());
    assert!(verify::repo_export(&user_key, &asuka, &export).is_err());

    // The enrollment record as the service publishes it, checked against the service's key
    // from its DID document.
    let doc: Json = svc
        .get_ok("/.well-known/did.json", owner)
        .await
        .json()
        .await
        .unwrap();
    let multibase = doc["verificationMethod"][0]["publicKeyMultibase"]
        .as_str()
        .unwrap();
    let service_key = PublicKey::from_did_key(&format!("did:key:{multibase}")).unwrap();
    let record = json!({
        "$type": "zone.stratos.actor.enrollment",
        "service": svc.base,
        "boundaries": status["boundaries"],
        "signingKey": status["signingKey"],
        "attestation": status["attestation"],
        "createdAt": status["enrolledAt"],
    });
    let (parsed, key) = verify::enrollment_record(&rei, &record, &service_key).unwrap();
    assert_eq!(key, user_key);
    assert_eq!(parsed.boundaries.len(), 1);
    assert!(verify::enrollment_record(&rei, &record, other_key.public_key()).is_err());
    assert!(verify::enrollment_record(&asuka, &record, &service_key).is_err());
    let mut more = record.clone();
    more["boundaries"] = json!([{ "value": format!("{SERVICE}/general") }, { "value": format!("{SERVICE}/secret") }]);
    assert!(verify::enrollment_record(&rei, &more, &service_key).is_err());
    let mut swapped = record.clone();
    swapped["signingKey"] = json!(other_key.did_key());
    assert!(verify::enrollment_record(&rei, &swapped, &service_key).is_err());
    svc.stop().await;
}

/// A trusted sync consumer (the sync token as bearer or `syncToken`) exports any account, with
/// the stream position the export covers; a wrong token is refused, and an account still
/// exports only its own repository.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_consumers_export_any_account_with_its_stream_position() {
    let svc = common::start_with(&[("STRATOS_SYNC_TOKEN", "sync-secret")]).await;
    let rei = Did::parse("did:plc:rei").unwrap();
    let enrolled = common::post_ok(
        &svc.http,
        &svc.base,
        "zone.stratos.admin.enrollActor",
        &format!("Bearer {ADMIN}"),
        json!({ "did": rei.as_str(), "boundaries": ["general"] }),
    )
    .await;
    let key = PublicKey::from_did_key(enrolled["signingKey"].as_str().unwrap()).unwrap();
    for i in 0..3 {
        common::post_ok(
            &svc.http,
            &svc.base,
            "com.atproto.repo.createRecord",
            "Bearer did:plc:rei",
            json!({ "repo": rei.as_str(), "collection": POST,
                    "record": common::post_record(SERVICE, &format!("post {i}"), &["general"]) }),
        )
        .await;
    }
    let indexer = stratos_client::xrpc::StratosClient::new(&svc.base)
        .unwrap()
        .with_auth(stratos_client::xrpc::Auth::Bearer("sync-secret".into()));
    let (car, seq) = indexer.export_car_for_sync(&rei).await.unwrap();
    let export = verify::repo_export_records(&key, &rei, &car).unwrap();
    assert_eq!(export.records.len(), 3);
    assert_eq!(
        stratos_domain::data::ipld_to_json(&export.records[0].value).unwrap()["$type"],
        POST
    );
    // The enrollment's first event and three creates: position 3 or later covers them all.
    assert!(seq.is_some_and(|s| s >= 3), "{seq:?}");
    let by_param = svc
        .http
        .get(svc.url(&format!(
            "/xrpc/zone.stratos.sync.getRepo?did={rei}&syncToken=sync-secret"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(by_param.status(), 200);
    assert!(by_param.headers().contains_key("stratos-seq"));
    let wrong = svc
        .http
        .get(svc.url(&format!(
            "/xrpc/zone.stratos.sync.getRepo?did={rei}&syncToken=nope"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let other = svc
        .http
        .get(svc.url(&format!("/xrpc/zone.stratos.sync.getRepo?did={rei}")))
        .header("authorization", "Bearer did:plc:asuka")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 403);
    assert!(!other.headers().contains_key("stratos-seq"));
    svc.stop().await;
}
