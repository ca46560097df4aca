//! Alert groups in memory, with the DynamoDB store's semantics (every operation checks
//! everything before it changes anything): the property tests' store and the local pipeline's.

use std::collections::BTreeMap;
use std::sync::Mutex;

use streamwatch_core::notify::group::{GroupBatch, GroupKey, GroupState, GroupStore, Joined};
use streamwatch_core::time::Micros;
use streamwatch_core::{AlertRecord, PortError};

/// In-memory groups.
#[derive(Debug, Default)]
pub struct EmbeddedGroupStore {
    inner: Mutex<Groups>,
}

#[derive(Debug, Default)]
struct Groups {
    states: BTreeMap<GroupKey, GroupState>,
    /// Group → alert id → (alert, batch it was sealed into).
    members: BTreeMap<GroupKey, BTreeMap<String, (AlertRecord, Option<u64>)>>,
    /// Every sealed batch, in sealing order.
    batches: Vec<GroupBatch>,
}

impl EmbeddedGroupStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every batch sealed so far, in order.
    pub fn batches(&self) -> Vec<GroupBatch> {
        self.lock().batches.clone()
    }

    /// Members never sealed into a batch, by group.
    pub fn unsealed(&self) -> BTreeMap<GroupKey, Vec<String>> {
        self.lock()
            .members
            .iter()
            .map(|(g, m)| {
                let ids = m
                    .iter()
                    .filter(|(_, (_, b))| b.is_none())
                    .map(|(id, _)| id.clone())
                    .collect();
                (g.clone(), ids)
            })
            .collect()
    }

    /// The group's state.
    pub fn state(&self, group: &GroupKey) -> Option<GroupState> {
        self.lock().states.get(group).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Groups> {
        // Each operation checks everything before it changes anything.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl GroupStore for EmbeddedGroupStore {
    async fn put_member(&self, group: &GroupKey, alert: &AlertRecord) -> Result<Joined, PortError> {
        let mut g = self.lock();
        let members = g.members.entry(group.clone()).or_default();
        if members.contains_key(&alert.id) {
            return Ok(Joined::Already);
        }
        members.insert(alert.id.clone(), (alert.clone(), None));
        Ok(Joined::New)
    }

    async fn group(&self, group: &GroupKey) -> Result<Option<GroupState>, PortError> {
        Ok(self.lock().states.get(group).cloned())
    }

    async fn put_group(
        &self,
        group: &GroupKey,
        expected: Option<u64>,
        next: &GroupState,
    ) -> Result<bool, PortError> {
        let mut g = self.lock();
        if g.states.get(group).map(|s| s.version) != expected {
            return Ok(false);
        }
        g.states.insert(group.clone(), next.clone());
        Ok(true)
    }

    async fn waiting(&self, group: &GroupKey) -> Result<Vec<AlertRecord>, PortError> {
        Ok(self
            .lock()
            .members
            .get(group)
            .map(|m| {
                m.values()
                    .filter(|(_, b)| b.is_none())
                    .map(|(a, _)| a.clone())
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn seal(
        &self,
        expected: u64,
        next: &GroupState,
        batch: &GroupBatch,
    ) -> Result<bool, PortError> {
        let mut g = self.lock();
        let group = &batch.group;
        if g.states.get(group).map(|s| s.version) != Some(expected) {
            return Ok(false);
        }
        let Some(members) = g.members.get_mut(group) else {
            return Ok(false);
        };
        let all_waiting = batch
            .alerts
            .iter()
            .all(|a| matches!(members.get(&a.id), Some((_, None))));
        if !all_waiting {
            return Ok(false);
        }
        for a in &batch.alerts {
            if let Some(m) = members.get_mut(&a.id) {
                m.1 = Some(batch.number);
            }
        }
        g.states.insert(group.clone(), next.clone());
        g.batches.push(batch.clone());
        Ok(true)
    }

    async fn batch(&self, notification_id: &str) -> Result<Option<GroupBatch>, PortError> {
        Ok(self
            .lock()
            .batches
            .iter()
            .find(|b| b.notification_id() == notification_id)
            .cloned())
    }

    async fn due(&self, now: Micros, limit: usize) -> Result<Vec<GroupKey>, PortError> {
        Ok(self
            .lock()
            .states
            .iter()
            .filter(|(_, s)| s.due_micros.is_some_and(|d| d <= now))
            .map(|(g, _)| g.clone())
            .take(limit)
            .collect())
    }
}
