//! In-memory [`SigningKeyStore`]; keeps raw private bytes like a real adapter would.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use stratos_domain::crypto::{KeyAlgorithm, Keypair};
use stratos_domain::syntax::Did;
use stratos_ports::keys::{KeyStoreError, SigningKeyStore};

/// Keys in a map.
#[derive(Default)]
pub struct MemoryKeyStore {
    keys: Mutex<HashMap<String, (KeyAlgorithm, [u8; 32])>>,
}

impl std::fmt::Debug for MemoryKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryKeyStore").finish_non_exhaustive()
    }
}

impl MemoryKeyStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, (KeyAlgorithm, [u8; 32])>> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl SigningKeyStore for MemoryKeyStore {
    async fn put(&self, did: &Did, key: &Keypair) -> Result<(), KeyStoreError> {
        self.lock().insert(
            did.to_string(),
            (key.public_key().algorithm(), key.private_bytes()),
        );
        Ok(())
    }

    async fn get(&self, did: &Did) -> Result<Option<Keypair>, KeyStoreError> {
        let Some((alg, bytes)) = self.lock().get(did.as_str()).copied() else {
            return Ok(None);
        };
        Keypair::from_private_bytes(alg, &bytes)
            .map(Some)
            .map_err(|_| KeyStoreError::Corrupt(did.to_string()))
    }

    async fn delete(&self, did: &Did) -> Result<(), KeyStoreError> {
        self.lock().remove(did.as_str());
        Ok(())
    }
}
