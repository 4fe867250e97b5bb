//! The audit phase: every decision and lifecycle change goes to the store
//! (durably when it must), then is announced to SSE and notifications.

use sudomode_store::{Batch, NewEvent, RequestRecord, Store, StoreError};
use tokio::sync::broadcast;

use crate::config::Durability;

pub struct Recorder {
    store: Store,
    durability: Durability,
    changes: broadcast::Sender<RequestRecord>,
}

impl Recorder {
    pub fn new(store: Store, durability: Durability) -> Self {
        let (changes, _) = broadcast::channel(4_096);
        Self {
            store,
            durability,
            changes,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Request changes as they are recorded (SSE, Slack, webhooks).
    pub fn subscribe(&self) -> broadcast::Receiver<RequestRecord> {
        self.changes.subscribe()
    }

    /// On disk before it returns, whatever the durability setting: held
    /// requests, approvals and everything before a byte goes upstream in
    /// `strict` mode.
    pub async fn durable(
        &self,
        events: Vec<NewEvent>,
        record: Option<RequestRecord>,
    ) -> Result<(), StoreError> {
        self.commit(events, record, true).await
    }

    /// Durable in `strict` mode; queued (committed within 50 ms) in `batched`.
    pub async fn decision(
        &self,
        events: Vec<NewEvent>,
        record: Option<RequestRecord>,
    ) -> Result<(), StoreError> {
        let wait = self.durability == Durability::Strict;
        self.commit(events, record, wait).await
    }

    /// After-the-fact records (forwarded, completed): never on the hot path's
    /// critical section, committed within the writer's flush interval.
    pub async fn queued(
        &self,
        events: Vec<NewEvent>,
        record: Option<RequestRecord>,
    ) -> Result<(), StoreError> {
        self.commit(events, record, false).await
    }

    /// Writes, waiting for the fsync when `wait`, then announces the change.
    async fn commit(
        &self,
        events: Vec<NewEvent>,
        mut record: Option<RequestRecord>,
        wait: bool,
    ) -> Result<(), StoreError> {
        // One view for every channel: what is announced is what is stored.
        if let Some(r) = &mut record {
            self.store.redact_record(r);
        }
        let announced = self.to_announce(&record);
        let batch = Batch {
            events,
            upserts: record.into_iter().collect(),
        };
        if wait {
            self.store.commit_durable(batch).await?;
        } else {
            self.store.commit_batched(batch).await?;
        }
        self.announce(announced);
        Ok(())
    }

    pub async fn event(&self, event: NewEvent) -> Result<(), StoreError> {
        self.durable(vec![event], None).await
    }

    /// A copy of the record for the subscribers, when there are any: with no
    /// dashboard or notifier listening the hot path skips the clone.
    fn to_announce(&self, record: &Option<RequestRecord>) -> Option<RequestRecord> {
        if self.changes.receiver_count() == 0 {
            return None;
        }
        record.clone()
    }

    fn announce(&self, record: Option<RequestRecord>) {
        if let Some(r) = record {
            // A subscriber may have left meanwhile: that is normal.
            let _ = self.changes.send(r);
        }
    }
}
