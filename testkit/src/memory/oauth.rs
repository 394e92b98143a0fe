//! In-memory [`OAuthStore`].

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use stratos_domain::syntax::Did;
use stratos_ports::oauth_store::{OAuthStore, OAuthStoreError};

#[derive(Default)]
struct State {
    states: HashMap<String, (String, i64)>,
    sessions: HashMap<String, String>,
}

/// OAuth states and sessions in maps.
#[derive(Default)]
pub struct MemoryOAuthStore {
    state: Mutex<State>,
}

impl std::fmt::Debug for MemoryOAuthStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryOAuthStore").finish_non_exhaustive()
    }
}

impl MemoryOAuthStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl OAuthStore for MemoryOAuthStore {
    async fn put_state(
        &self,
        key: &str,
        value: &str,
        expires_at_ms: i64,
    ) -> Result<(), OAuthStoreError> {
        self.lock()
            .states
            .insert(key.to_owned(), (value.to_owned(), expires_at_ms));
        Ok(())
    }

    async fn take_state(&self, key: &str, now_ms: i64) -> Result<Option<String>, OAuthStoreError> {
        Ok(self
            .lock()
            .states
            .remove(key)
            .filter(|(_, exp)| *exp > now_ms)
            .map(|(v, _)| v))
    }

    async fn put_session(&self, did: &Did, value: &str) -> Result<(), OAuthStoreError> {
        self.lock()
            .sessions
            .insert(did.to_string(), value.to_owned());
        Ok(())
    }

    async fn get_session(&self, did: &Did) -> Result<Option<String>, OAuthStoreError> {
        Ok(self.lock().sessions.get(did.as_str()).cloned())
    }

    async fn delete_session(&self, did: &Did) -> Result<(), OAuthStoreError> {
        self.lock().sessions.remove(did.as_str());
        Ok(())
    }
}
