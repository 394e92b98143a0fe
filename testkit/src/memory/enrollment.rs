//! In-memory [`EnrollmentStore`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use stratos_domain::boundary::Boundary;
use stratos_domain::syntax::{Datetime, Did, RecordKey};
use stratos_ports::enrollment_store::{
    Enrollment, EnrollmentAction, EnrollmentEvent, EnrollmentResult, EnrollmentStore,
    EnrollmentStoreError,
};

/// Enrollments in a sorted map, with the event log beside them under the same lock (so a
/// change and its event are atomic, like a transaction).
#[derive(Debug, Default)]
pub struct MemoryEnrollmentStore {
    rows: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    enrollments: BTreeMap<String, Enrollment>,
    events: VecDeque<EnrollmentEvent>,
    last_seq: u64,
}

impl State {
    fn append(&mut self, did: &Did, action: EnrollmentAction, boundaries: Vec<Boundary>) {
        self.last_seq += 1;
        self.events.push_back(EnrollmentEvent {
            seq: self.last_seq,
            did: did.clone(),
            action,
            time: now(),
            boundaries,
        });
    }
}

fn now() -> Datetime {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    Datetime::from_unix_millis(ms)
}

impl MemoryEnrollmentStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.rows.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(
        &self,
        did: &Did,
        f: impl FnOnce(&mut Vec<Boundary>),
    ) -> EnrollmentResult<Vec<Boundary>> {
        let mut state = self.lock();
        let row = state
            .enrollments
            .get_mut(did.as_str())
            .ok_or_else(|| EnrollmentStoreError::NotEnrolled(did.clone()))?;
        f(&mut row.boundaries);
        row.boundaries.sort();
        row.boundaries.dedup();
        let out = row.boundaries.clone();
        state.append(did, EnrollmentAction::Update, out.clone());
        Ok(out)
    }
}

#[async_trait]
impl EnrollmentStore for MemoryEnrollmentStore {
    async fn enroll(&self, enrollment: &Enrollment) -> EnrollmentResult<()> {
        let mut e = enrollment.clone();
        e.boundaries.sort();
        e.boundaries.dedup();
        let mut state = self.lock();
        let action = if state.enrollments.contains_key(e.did.as_str()) {
            EnrollmentAction::Update
        } else {
            EnrollmentAction::Enroll
        };
        state.append(&e.did, action, e.boundaries.clone());
        state.enrollments.insert(e.did.to_string(), e);
        Ok(())
    }

    async fn get(&self, did: &Did) -> EnrollmentResult<Option<Enrollment>> {
        Ok(self.lock().enrollments.get(did.as_str()).cloned())
    }

    async fn boundaries(&self, did: &Did) -> EnrollmentResult<Vec<Boundary>> {
        Ok(self
            .lock()
            .enrollments
            .get(did.as_str())
            .map(|e| e.boundaries.clone())
            .unwrap_or_default())
    }

    async fn add_boundary(
        &self,
        did: &Did,
        boundary: &Boundary,
    ) -> EnrollmentResult<Vec<Boundary>> {
        self.update(did, |b| b.push(boundary.clone()))
    }

    async fn remove_boundary(
        &self,
        did: &Did,
        boundary: &Boundary,
    ) -> EnrollmentResult<Vec<Boundary>> {
        self.update(did, |b| b.retain(|x| x != boundary))
    }

    async fn set_boundaries(
        &self,
        did: &Did,
        boundaries: &[Boundary],
    ) -> EnrollmentResult<Vec<Boundary>> {
        self.update(did, |b| *b = boundaries.to_vec())
    }

    async fn set_enrollment_rkey(&self, did: &Did, rkey: &RecordKey) -> EnrollmentResult<()> {
        let mut state = self.lock();
        let row = state
            .enrollments
            .get_mut(did.as_str())
            .ok_or_else(|| EnrollmentStoreError::NotEnrolled(did.clone()))?;
        row.enrollment_rkey = Some(rkey.clone());
        Ok(())
    }

    async fn unenroll(&self, did: &Did) -> EnrollmentResult<bool> {
        let mut state = self.lock();
        let existed = state.enrollments.remove(did.as_str()).is_some();
        if existed {
            state.append(did, EnrollmentAction::Unenroll, Vec::new());
        }
        Ok(existed)
    }

    async fn list(&self, cursor: Option<&Did>, limit: usize) -> EnrollmentResult<Vec<Enrollment>> {
        let state = self.lock();
        Ok(state
            .enrollments
            .values()
            .filter(|e| cursor.is_none_or(|c| e.did.as_str() > c.as_str()))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn events_after(
        &self,
        cursor: u64,
        limit: usize,
    ) -> EnrollmentResult<Vec<EnrollmentEvent>> {
        let state = self.lock();
        // Sequence numbers are consecutive, so the position of `cursor + 1` is arithmetic.
        let first = state.events.front().map_or(0, |e| e.seq);
        let skip = usize::try_from((cursor + 1).saturating_sub(first)).unwrap_or(usize::MAX);
        Ok(state
            .events
            .iter()
            .skip(skip)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn latest_event_seq(&self) -> EnrollmentResult<u64> {
        Ok(self.lock().last_seq)
    }

    async fn prune_events(&self, before: u64) -> EnrollmentResult<u64> {
        let mut state = self.lock();
        let mut n = 0;
        while state.events.len() > 1 && state.events.front().is_some_and(|e| e.seq < before) {
            state.events.pop_front();
            n += 1;
        }
        Ok(n)
    }
}
