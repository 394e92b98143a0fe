//! The [`OAuthStore`] conformance suite.

use std::sync::Arc;

use stratos_domain::syntax::Did;
use stratos_ports::oauth_store::OAuthStore;

/// Runs every case against `store`.
pub async fn run(store: Arc<dyn OAuthStore>) {
    let s = store.as_ref();
    s.put_state("k1", "{\"verifier\":\"a\"}", 1_000)
        .await
        .expect("put");
    s.put_state("k2", "{\"verifier\":\"b\"}", 1_000)
        .await
        .expect("put");
    assert_eq!(
        s.take_state("k1", 500).await.expect("take").as_deref(),
        Some("{\"verifier\":\"a\"}")
    );
    assert_eq!(
        s.take_state("k1", 500).await.expect("take"),
        None,
        "states are single use"
    );
    assert_eq!(
        s.take_state("k2", 1_000).await.expect("take"),
        None,
        "expired states are gone"
    );
    assert_eq!(s.take_state("nope", 0).await.expect("take"), None);

    let rei = Did::parse("did:plc:oauthrei").expect("did");
    assert_eq!(s.get_session(&rei).await.expect("get"), None);
    s.put_session(&rei, "session-1").await.expect("put");
    s.put_session(&rei, "session-2").await.expect("replace");
    assert_eq!(
        s.get_session(&rei).await.expect("get").as_deref(),
        Some("session-2")
    );
    s.delete_session(&rei).await.expect("delete");
    s.delete_session(&rei).await.expect("delete is idempotent");
    assert_eq!(s.get_session(&rei).await.expect("get"), None);
}
