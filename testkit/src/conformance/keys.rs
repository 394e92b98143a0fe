//! The [`SigningKeyStore`] conformance suite.

use std::sync::Arc;

use stratos_domain::crypto::{KeyAlgorithm, Keypair};
use stratos_domain::syntax::Did;
use stratos_ports::keys::SigningKeyStore;

/// What the cases run against (each starts empty).
pub type Subject = Arc<dyn SigningKeyStore>;

/// One test per [`SigningKeyStore`] case, in a module `key_store`. The argument gives a future
/// of an empty store, afresh for every case (see [`crate::conformance`]).
#[macro_export]
macro_rules! key_store_conformance {
    ($fixture:expr $(,)?) => {
        $crate::__conformance_suite! {
            module: key_store,
            port: keys,
            fixture: $fixture,
            cases: [
                stored_keys_come_back_usable_on_both_curves,
                keys_are_per_account,
                deleting_a_key_is_idempotent,
            ],
        }
    };
}

fn did(s: &str) -> Did {
    Did::parse(s).expect("suite DID")
}

/// A stored key comes back as the same key on its own curve (P-256 and secp256k1), able to
/// sign; storing again replaces it.
pub async fn stored_keys_come_back_usable_on_both_curves(store: Subject) {
    let s = store.as_ref();
    let rei = did("did:plc:keysrei");
    assert!(s.get(&rei).await.expect("get").is_none());
    for alg in [KeyAlgorithm::P256, KeyAlgorithm::K256] {
        let key = Keypair::generate(alg);
        s.put(&rei, &key).await.expect("put");
        let back = s.get(&rei).await.expect("get").expect("stored");
        assert_eq!(back.did_key(), key.did_key(), "same key, same curve");
        let sig = back.sign(b"msg").expect("sign");
        key.public_key().verify(b"msg", &sig).expect("usable key");
    }
}

/// Each account has its own key.
pub async fn keys_are_per_account(store: Subject) {
    let s = store.as_ref();
    let rei = did("did:plc:keysrei");
    let asuka = did("did:plc:keysasuka");
    let (k1, k2) = (
        Keypair::generate(KeyAlgorithm::P256),
        Keypair::generate(KeyAlgorithm::P256),
    );
    s.put(&rei, &k1).await.expect("put");
    assert!(s.get(&asuka).await.expect("get").is_none());
    s.put(&asuka, &k2).await.expect("put");
    let back = |d: Did| {
        let s = store.clone();
        async move { s.get(&d).await.expect("get").expect("stored").did_key() }
    };
    assert_eq!(back(rei.clone()).await, k1.did_key());
    assert_eq!(back(asuka.clone()).await, k2.did_key());
    s.delete(&asuka).await.expect("delete");
    assert_eq!(
        back(rei).await,
        k1.did_key(),
        "deleting one leaves the other"
    );
}

/// Deleting a key removes it; deleting again (or deleting a key never stored) is fine.
pub async fn deleting_a_key_is_idempotent(store: Subject) {
    let s = store.as_ref();
    let rei = did("did:plc:keysrei");
    s.delete(&rei).await.expect("deleting a missing key");
    s.put(&rei, &Keypair::generate(KeyAlgorithm::K256))
        .await
        .expect("put");
    s.delete(&rei).await.expect("delete");
    s.delete(&rei).await.expect("delete is idempotent");
    assert!(s.get(&rei).await.expect("get").is_none());
}
