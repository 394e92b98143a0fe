//! The [`OAuthStore`] conformance suite.

use std::sync::Arc;

use stratos_domain::syntax::Did;
use stratos_ports::oauth_store::OAuthStore;

/// What the cases run against (each starts empty).
pub type Subject = Arc<dyn OAuthStore>;

/// One test per [`OAuthStore`] case, in a module `oauth_store`. The argument gives a future of
/// an empty store, afresh for every case (see [`crate::conformance`]).
#[macro_export]
macro_rules! oauth_store_conformance {
    ($fixture:expr $(,)?) => {
        $crate::__conformance_suite! {
            module: oauth_store,
            port: oauth_store,
            fixture: $fixture,
            cases: [
                states_are_single_use_and_expire,
                sessions_are_replaced_and_deleted,
            ],
        }
    };
}

/// A state is taken once; a state past its expiry, or never stored, is gone.
pub async fn states_are_single_use_and_expire(store: Subject) {
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
}

/// One session per account: putting replaces it, deleting (twice) removes it.
pub async fn sessions_are_replaced_and_deleted(store: Subject) {
    let s = store.as_ref();
    let rei = Did::parse("did:plc:oauthrei").expect("did");
    let asuka = Did::parse("did:plc:oauthasuka").expect("did");
    assert_eq!(s.get_session(&rei).await.expect("get"), None);
    s.put_session(&rei, "session-1").await.expect("put");
    s.put_session(&asuka, "asuka's").await.expect("put");
    s.put_session(&rei, "session-2").await.expect("replace");
    assert_eq!(
        s.get_session(&rei).await.expect("get").as_deref(),
        Some("session-2")
    );
    s.delete_session(&rei).await.expect("delete");
    s.delete_session(&rei).await.expect("delete is idempotent");
    assert_eq!(s.get_session(&rei).await.expect("get"), None);
    assert_eq!(
        s.get_session(&asuka).await.expect("get").as_deref(),
        Some("asuka's"),
        "sessions are per account"
    );
}
