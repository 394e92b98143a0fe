//! In-memory [`BlobStore`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use stratos_domain::Cid;
use stratos_domain::syntax::Did;
use stratos_ports::blob_store::{BlobResult, BlobStore, BlobStoreError};

#[derive(Debug, Default)]
struct State {
    next_temp: u64,
    temp: HashMap<(String, String), Vec<u8>>,
    /// `did` → `cid string` → bytes.
    permanent: HashMap<String, BTreeMap<String, (Cid, Vec<u8>)>>,
}

/// Blobs in maps.
#[derive(Debug, Default)]
pub struct MemoryBlobStore {
    state: Mutex<State>,
}

impl MemoryBlobStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Temporary uploads held now (all accounts), for tests that check nothing is left behind.
    pub fn temp_len(&self) -> usize {
        self.lock().temp.len()
    }

    /// Permanent blobs held now (all accounts).
    pub fn permanent_len(&self) -> usize {
        self.lock().permanent.values().map(BTreeMap::len).sum()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl BlobStore for MemoryBlobStore {
    async fn put_temp(&self, did: &Did, bytes: Vec<u8>) -> BlobResult<String> {
        let mut s = self.lock();
        s.next_temp += 1;
        let key = format!("tmp{:016x}", s.next_temp);
        s.temp.insert((did.to_string(), key.clone()), bytes);
        Ok(key)
    }

    async fn make_permanent(&self, did: &Did, temp_key: &str, cid: &Cid) -> BlobResult<()> {
        let mut s = self.lock();
        let exists = s
            .permanent
            .get(did.as_str())
            .is_some_and(|m| m.contains_key(&cid.to_string()));
        let temp = s.temp.remove(&(did.to_string(), temp_key.to_owned()));
        if exists {
            return Ok(());
        }
        let bytes = temp.ok_or_else(|| BlobStoreError::NotFound(temp_key.to_owned()))?;
        s.permanent
            .entry(did.to_string())
            .or_default()
            .insert(cid.to_string(), (*cid, bytes));
        Ok(())
    }

    async fn delete_temp(&self, did: &Did, temp_key: &str) -> BlobResult<()> {
        self.lock()
            .temp
            .remove(&(did.to_string(), temp_key.to_owned()));
        Ok(())
    }

    async fn get(&self, did: &Did, cid: &Cid) -> BlobResult<Vec<u8>> {
        self.lock()
            .permanent
            .get(did.as_str())
            .and_then(|m| m.get(&cid.to_string()))
            .map(|(_, b)| b.clone())
            .ok_or_else(|| BlobStoreError::NotFound(cid.to_string()))
    }

    async fn size(&self, did: &Did, cid: &Cid) -> BlobResult<u64> {
        Ok(self.get(did, cid).await?.len() as u64)
    }

    async fn read_range(
        &self,
        did: &Did,
        cid: &Cid,
        offset: u64,
        len: usize,
    ) -> BlobResult<Vec<u8>> {
        let bytes = self.get(did, cid).await?;
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        let end = start.saturating_add(len).min(bytes.len());
        Ok(bytes[start..end].to_vec())
    }

    async fn has(&self, did: &Did, cid: &Cid) -> BlobResult<bool> {
        Ok(self
            .lock()
            .permanent
            .get(did.as_str())
            .is_some_and(|m| m.contains_key(&cid.to_string())))
    }

    async fn delete(&self, did: &Did, cid: &Cid) -> BlobResult<()> {
        if let Some(m) = self.lock().permanent.get_mut(did.as_str()) {
            m.remove(&cid.to_string());
        }
        Ok(())
    }

    async fn list(&self, did: &Did, cursor: Option<&str>, limit: usize) -> BlobResult<Vec<Cid>> {
        Ok(self
            .lock()
            .permanent
            .get(did.as_str())
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| cursor.is_none_or(|c| k.as_str() > c))
                    .take(limit)
                    .map(|(_, (cid, _))| *cid)
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn delete_actor(&self, did: &Did) -> BlobResult<()> {
        let mut s = self.lock();
        s.permanent.remove(did.as_str());
        s.temp.retain(|(d, _), _| d != did.as_str());
        Ok(())
    }
}
