//! Storage for the OAuth client the service runs against users' PDSes: pending authorization
//! states (short-lived, single use) and sessions by account. Values are opaque serialized
//! documents owned by the OAuth client; they contain tokens, so adapters must never log them.

use async_trait::async_trait;
use stratos_domain::syntax::Did;

/// Failures of an [`OAuthStore`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OAuthStoreError {
    /// The backend failed.
    #[error("OAuth store failed: {0}")]
    Backend(#[source] crate::Cause),
}

/// OAuth state and session storage.
#[async_trait]
pub trait OAuthStore: Send + Sync {
    /// Stores a pending authorization state under `key`, expiring at `expires_at_ms`.
    async fn put_state(
        &self,
        key: &str,
        value: &str,
        expires_at_ms: i64,
    ) -> Result<(), OAuthStoreError>;
    /// Removes and returns a state if it exists and has not expired at `now_ms` (single use).
    async fn take_state(&self, key: &str, now_ms: i64) -> Result<Option<String>, OAuthStoreError>;
    /// Stores (or replaces) an account's session.
    async fn put_session(&self, did: &Did, value: &str) -> Result<(), OAuthStoreError>;
    /// The account's session.
    async fn get_session(&self, did: &Did) -> Result<Option<String>, OAuthStoreError>;
    /// Deletes the account's session; idempotent.
    async fn delete_session(&self, did: &Did) -> Result<(), OAuthStoreError>;
}
