//! The [`SigningKeyStore`] conformance suite.

use std::sync::Arc;

use stratos_domain::crypto::{KeyAlgorithm, Keypair};
use stratos_domain::syntax::Did;
use stratos_ports::keys::SigningKeyStore;

/// Runs every case against `store`.
pub async fn run(store: Arc<dyn SigningKeyStore>) {
    let s = store.as_ref();
    let rei = Did::parse("did:plc:keysrei").expect("did");
    assert!(s.get(&rei).await.expect("get").is_none());
    for alg in [KeyAlgorithm::P256, KeyAlgorithm::K256] {
        let key = Keypair::generate(alg);
        s.put(&rei, &key).await.expect("put");
        let back = s.get(&rei).await.expect("get").expect("stored");
        assert_eq!(back.did_key(), key.did_key(), "same key, same curve");
        let sig = back.sign(b"msg").expect("sign");
        key.public_key().verify(b"msg", &sig).expect("usable key");
    }
    s.delete(&rei).await.expect("delete");
    s.delete(&rei).await.expect("delete is idempotent");
    assert!(s.get(&rei).await.expect("get").is_none());
}
