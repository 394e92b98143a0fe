//! Per-account repository signing keys. Private key bytes never appear in `Debug` output or
//! error messages.

use async_trait::async_trait;
use stratos_domain::crypto::Keypair;
use stratos_domain::syntax::Did;

/// Failures of a [`SigningKeyStore`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyStoreError {
    /// Stored key bytes are unusable.
    #[error("stored signing key of {0} is unusable")]
    Corrupt(String),
    /// The backend failed.
    #[error("key store failed: {0}")]
    Backend(#[source] crate::Cause),
}

/// Storage of account signing keys.
#[async_trait]
pub trait SigningKeyStore: Send + Sync {
    /// Stores (or replaces) an account's key.
    async fn put(&self, did: &Did, key: &Keypair) -> Result<(), KeyStoreError>;
    /// The account's key, if any.
    async fn get(&self, did: &Did) -> Result<Option<Keypair>, KeyStoreError>;
    /// Deletes the account's key; idempotent.
    async fn delete(&self, did: &Did) -> Result<(), KeyStoreError>;
}
