//! Discovery over the in-memory ports: genuine enrollments at two services are found with the
//! user's key; a record signed by a key the service's document does not list, naming another
//! endpoint, claiming other boundaries, stored under a key that names no service, or for a
//! service that does not resolve, is rejected with its reason, without hiding the others.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::sync::Arc;

use serde_json::{Value, json};
use stratos_client::ClientError;
use stratos_client::discovery::{Discovery, service_did_of};
use stratos_domain::attestation;
use stratos_domain::crypto::{KeyAlgorithm, Keypair};
use stratos_domain::data;
use stratos_domain::enrollment::{ENROLLMENT_COLLECTION, EnrollmentRecord, enrollment_rkey};
use stratos_domain::syntax::{Did, Nsid, RecordKey};
use stratos_testkit::memory::{MemoryIdentity, MemoryPublicRecords};

struct Service {
    did: Did,
    url: String,
    key: Keypair,
}

impl Service {
    fn new(did: &str, url: &str) -> Self {
        Self {
            did: Did::parse(did).unwrap(),
            url: url.to_owned(),
            key: Keypair::generate(KeyAlgorithm::K256),
        }
    }

    fn document(&self) -> Value {
        let mb = self.key.did_key();
        json!({
            "id": self.did.as_str(),
            "verificationMethod": [{
                "id": format!("{}#atproto_pns", self.did),
                "type": "Multikey",
                "controller": self.did.as_str(),
                "publicKeyMultibase": mb.strip_prefix("did:key:").unwrap(),
            }],
            "service": [{ "id": "#atproto_pns", "type": "StratosService", "serviceEndpoint": self.url }],
        })
    }

    /// The record this service publishes for `user` (signing with `signer`, by default its key).
    fn record(
        &self,
        user: &Did,
        user_key: &Keypair,
        boundaries: &[&str],
        signer: Option<&Keypair>,
    ) -> Value {
        let boundaries: Vec<String> = boundaries
            .iter()
            .map(|b| format!("{}/{b}", self.did))
            .collect();
        let signer = signer.unwrap_or(&self.key);
        let record = EnrollmentRecord {
            service: self.url.clone(),
            boundaries: boundaries.clone(),
            signing_key: user_key.did_key(),
            attestation: attestation::attest(signer, user, &boundaries, &user_key.did_key())
                .unwrap(),
            created_at: "2026-12-07T10:00:00.000Z".parse().unwrap(),
        };
        data::ipld_to_json(&record.to_ipld()).unwrap()
    }

    fn rkey(&self) -> RecordKey {
        enrollment_rkey(&self.did).unwrap()
    }
}

#[test]
fn record_keys_name_service_dids() {
    let k = |s: &str| RecordKey::parse(s).unwrap();
    assert_eq!(
        service_did_of(&k("did:web:stratos.example"))
            .unwrap()
            .as_str(),
        "did:web:stratos.example"
    );
    assert_eq!(
        service_did_of(&k("did:web:localhost:3100"))
            .unwrap()
            .as_str(),
        "did:web:localhost%3A3100"
    );
    assert_eq!(
        service_did_of(&k("did:plc:ewvi7nxzyoun6zhxrhs64oiz"))
            .unwrap()
            .as_str(),
        "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
    );
    assert!(service_did_of(&k("self")).is_err());
    assert!(service_did_of(&k("3kaaaaaaaaaa2")).is_err());
}

#[tokio::test]
async fn genuine_enrollments_are_found_and_forgeries_rejected() {
    let identity = Arc::new(MemoryIdentity::new());
    let records = Arc::new(MemoryPublicRecords::new());
    let a = Service::new("did:web:stratos.example", "https://stratos.example");
    let b = Service::new("did:web:localhost%3A3100", "http://localhost:3100");
    identity.insert_doc(&a.did, a.document());
    identity.insert_doc(&b.did, b.document());
    let collection = Nsid::parse(ENROLLMENT_COLLECTION).unwrap();
    let rei = Did::parse("did:plc:rei").unwrap();
    let rei_key = Keypair::generate(KeyAlgorithm::P256);
    records.put(
        &rei,
        &collection,
        a.rkey(),
        a.record(&rei, &rei_key, &["general"], None),
    );
    records.put(
        &rei,
        &collection,
        b.rkey(),
        b.record(&rei, &rei_key, &["members", "staff"], None),
    );

    let discovery = Discovery::new(identity.clone(), records.clone());
    let found = discovery.enrollments(&rei).await.unwrap();
    assert!(found.rejected.is_empty(), "{:?}", found.rejected);
    assert_eq!(found.enrollments.len(), 2);
    assert_eq!(found.enrollments[0].service_did, a.did);
    assert_eq!(found.enrollments[0].service_url, "https://stratos.example");
    assert_eq!(found.enrollments[1].boundaries.len(), 2);
    assert!(
        found
            .enrollments
            .iter()
            .all(|e| &e.signing_key == rei_key.public_key())
    );
    assert_eq!(
        discovery
            .enrollment_at(&rei, &b.did)
            .await
            .unwrap()
            .unwrap()
            .service_did,
        b.did
    );
    let nobody = Did::parse("did:plc:nobody").unwrap();
    assert!(
        discovery
            .enrollments(&nobody)
            .await
            .unwrap()
            .enrollments
            .is_empty()
    );

    // Forgeries, each next to a genuine record that still comes through.
    let asuka = Did::parse("did:plc:asuka").unwrap();
    let asuka_key = Keypair::generate(KeyAlgorithm::P256);
    records.put(
        &asuka,
        &collection,
        a.rkey(),
        a.record(&asuka, &asuka_key, &["general"], None),
    );
    let cases: Vec<(&str, Value, RecordKey)> = vec![
        (
            "signed by a key the document does not list",
            b.record(
                &asuka,
                &asuka_key,
                &["general"],
                Some(&Keypair::generate(KeyAlgorithm::K256)),
            ),
            b.rkey(),
        ),
        (
            "another endpoint",
            {
                let mut r = b.record(&asuka, &asuka_key, &["general"], None);
                r["service"] = json!("https://evil.example");
                r
            },
            b.rkey(),
        ),
        (
            "other boundaries",
            {
                let mut r = b.record(&asuka, &asuka_key, &["general"], None);
                r["boundaries"] = json!([{ "value": format!("{}/secret", b.did) }]);
                r
            },
            b.rkey(),
        ),
        (
            "another user's attestation",
            b.record(&rei, &rei_key, &["general"], None),
            b.rkey(),
        ),
        (
            "a key naming no service",
            a.record(&asuka, &asuka_key, &["general"], None),
            RecordKey::parse("self").unwrap(),
        ),
        (
            "a service that does not resolve",
            a.record(&asuka, &asuka_key, &["general"], None),
            RecordKey::parse("did:web:gone.example").unwrap(),
        ),
    ];
    for (what, record, rkey) in cases {
        // Each case on its own: the genuine record at `a` and the forged one.
        let records = Arc::new(MemoryPublicRecords::new());
        records.put(
            &asuka,
            &collection,
            a.rkey(),
            a.record(&asuka, &asuka_key, &["general"], None),
        );
        records.put(&asuka, &collection, rkey.clone(), record);
        let discovery = Discovery::new(identity.clone(), records);
        let found = discovery.enrollments(&asuka).await.unwrap();
        assert_eq!(found.enrollments.len(), 1, "{what}: the genuine one stays");
        assert_eq!(found.enrollments[0].service_did, a.did);
        assert!(
            matches!(found.rejected.as_slice(), [(k, ClientError::Discovery(_) | ClientError::Verification(_))] if *k == rkey),
            "{what}: {:?}",
            found.rejected
        );
    }
}
