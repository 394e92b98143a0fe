//! In-memory [`EnrollmentStore`].

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use stratos_domain::syntax::Did;
use stratos_ports::enrollment_store::{
    Enrollment, EnrollmentResult, EnrollmentStore, EnrollmentStoreError,
};

/// Enrollments in a sorted map.
#[derive(Debug, Default)]
pub struct MemoryEnrollmentStore {
    rows: Mutex<BTreeMap<String, Enrollment>>,
}

impl MemoryEnrollmentStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Enrollment>> {
        self.rows.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, did: &Did, f: impl FnOnce(&mut Vec<String>)) -> EnrollmentResult<Vec<String>> {
        let mut rows = self.lock();
        let row = rows
            .get_mut(did.as_str())
            .ok_or_else(|| EnrollmentStoreError::NotEnrolled(did.to_string()))?;
        f(&mut row.boundaries);
        row.boundaries.sort();
        row.boundaries.dedup();
        Ok(row.boundaries.clone())
    }
}

#[async_trait]
impl EnrollmentStore for MemoryEnrollmentStore {
    async fn enroll(&self, enrollment: &Enrollment) -> EnrollmentResult<()> {
        let mut e = enrollment.clone();
        e.boundaries.sort();
        e.boundaries.dedup();
        self.lock().insert(e.did.clone(), e);
        Ok(())
    }

    async fn get(&self, did: &Did) -> EnrollmentResult<Option<Enrollment>> {
        Ok(self.lock().get(did.as_str()).cloned())
    }

    async fn boundaries(&self, did: &Did) -> EnrollmentResult<Vec<String>> {
        Ok(self
            .lock()
            .get(did.as_str())
            .map(|e| e.boundaries.clone())
            .unwrap_or_default())
    }

    async fn add_boundary(&self, did: &Did, boundary: &str) -> EnrollmentResult<Vec<String>> {
        self.update(did, |b| b.push(boundary.to_owned()))
    }

    async fn remove_boundary(&self, did: &Did, boundary: &str) -> EnrollmentResult<Vec<String>> {
        self.update(did, |b| b.retain(|x| x != boundary))
    }

    async fn set_boundaries(
        &self,
        did: &Did,
        boundaries: &[String],
    ) -> EnrollmentResult<Vec<String>> {
        self.update(did, |b| *b = boundaries.to_vec())
    }

    async fn set_enrollment_rkey(&self, did: &Did, rkey: &str) -> EnrollmentResult<()> {
        let mut rows = self.lock();
        let row = rows
            .get_mut(did.as_str())
            .ok_or_else(|| EnrollmentStoreError::NotEnrolled(did.to_string()))?;
        row.enrollment_rkey = Some(rkey.to_owned());
        Ok(())
    }

    async fn unenroll(&self, did: &Did) -> EnrollmentResult<bool> {
        Ok(self.lock().remove(did.as_str()).is_some())
    }

    async fn list(&self, cursor: Option<&str>, limit: usize) -> EnrollmentResult<Vec<Enrollment>> {
        let rows = self.lock();
        Ok(rows
            .values()
            .filter(|e| cursor.is_none_or(|c| e.did.as_str() > c))
            .take(limit)
            .cloned()
            .collect())
    }
}
