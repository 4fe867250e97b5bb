//! The audit phase: the one place where request records and audit events are
//! written. Every transition of a request — decided, joined, held, approved,
//! rejected, expired, its retry used, and how it ended — has one function
//! here; the phases and the hold registry call these and never the store.
//!
//! Durability (SPEC §11): decisions follow `audit.durability`; held requests
//! and operator decisions are always durable before anyone acts on them; the
//! end of a request is queued (it describes what already happened).

mod events;
mod flight;
pub mod retention;

use std::sync::Arc;

use sudomode_store::{Batch, Grant, NewEvent, RequestRecord, Storage, StoreError, Wait};
use tokio::sync::broadcast;

use crate::config::Durability;
use crate::core::decided::Decided;

use flight::InFlight;
pub use flight::{Ending, Flight};

pub struct Recorder {
    storage: Storage,
    durability: Durability,
    in_flight: Arc<InFlight>,
}

impl Recorder {
    pub fn new(storage: Storage, durability: Durability) -> Self {
        Self {
            storage,
            durability,
            in_flight: Arc::new(InFlight::default()),
        }
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Request changes as they are recorded (SSE, Slack, webhooks).
    pub fn subscribe(&self) -> broadcast::Receiver<RequestRecord> {
        self.storage.subscribe()
    }

    /// How long a decision's caller waits: durable in `strict` mode, queued
    /// (committed within 50 ms) in `batched`.
    fn decision_wait(&self) -> Wait {
        match self.durability {
            Durability::Strict => Wait::Durable,
            Durability::Batched => Wait::Queued,
        }
    }

    async fn write(
        &self,
        events: Vec<NewEvent>,
        record: Option<RequestRecord>,
        wait: Wait,
    ) -> Result<(), StoreError> {
        let batch = Batch {
            events,
            upserts: record.into_iter().collect(),
        };
        self.storage.commit(batch, wait).await
    }

    /// An ALLOW or DENY decision (the request's first record).
    pub async fn decided(&self, d: &Decided) -> Result<(), StoreError> {
        self.write(
            vec![d.event.clone()],
            Some(d.record.clone()),
            self.decision_wait(),
        )
        .await
    }

    /// An ALLOW decision that is forwarded next: recorded, then tracked until
    /// it ends (the returned guard writes the ending exactly once).
    pub async fn admitted(self: &Arc<Self>, d: Decided) -> Result<Flight, StoreError> {
        let record = d.record.clone();
        let batch = Batch {
            events: vec![d.event],
            upserts: vec![d.record],
        };
        self.tracked(batch, record, self.decision_wait()).await
    }

    /// Queues `batch`, starts tracking `record` as in flight, then waits for
    /// the batch's durability. The guard exists from the moment the batch is
    /// queued, so an agent that leaves while it commits still gets an ending,
    /// written after the batch.
    async fn tracked(
        self: &Arc<Self>,
        batch: Batch,
        record: RequestRecord,
        wait: Wait,
    ) -> Result<Flight, StoreError> {
        let sent = self.storage.send(batch, wait).await?;
        let flight = self.flight(record);
        match sent.done().await {
            Ok(()) => Ok(flight),
            Err(e) => {
                // Not recorded: nothing to end, and nothing will be forwarded.
                flight.disarm();
                Err(e)
            }
        }
    }

    /// The guard for a request about to be forwarded.
    pub fn flight(self: &Arc<Self>, record: RequestRecord) -> Flight {
        Flight::new(self.clone(), self.in_flight.clone(), record)
    }

    /// A REQUIRE_APPROVAL decision parks the request: durable before anyone
    /// is notified.
    pub async fn held(&self, d: &Decided) -> Result<(), StoreError> {
        self.write(vec![d.event.clone()], Some(d.record.clone()), Wait::Durable)
            .await
    }

    /// A call identical to a pending request joined it instead of creating
    /// another: its decision is recorded on the pending request.
    pub async fn joined(&self, pending_id: &str, d: &Decided) -> Result<(), StoreError> {
        let event = events::joined(pending_id, d);
        self.write(vec![event], None, self.decision_wait()).await
    }

    /// One operator's approval (`released` when enough approved).
    pub async fn approved(
        &self,
        record: &RequestRecord,
        operator: &str,
        reason: Option<&str>,
        released: bool,
    ) -> Result<(), StoreError> {
        let event = events::approved(record, operator, reason, released);
        self.write(vec![event], Some(record.clone()), Wait::Durable)
            .await
    }

    pub async fn rejected(
        &self,
        record: &RequestRecord,
        operator: &str,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        let event = events::rejected(record, operator, reason);
        self.write(vec![event], Some(record.clone()), Wait::Durable)
            .await
    }

    pub async fn expired(&self, record: &RequestRecord) -> Result<(), StoreError> {
        let event = events::expired(record);
        self.write(vec![event], Some(record.clone()), Wait::Durable)
            .await
    }

    /// The approval's one forwarding was claimed — by the waiting agent call,
    /// or (`retry`) by an identical retry within `hold.retry_window` — and is
    /// about to be forwarded.
    pub async fn claimed(
        self: &Arc<Self>,
        record: RequestRecord,
        retry: bool,
    ) -> Result<Flight, StoreError> {
        let events = if retry {
            vec![events::retry_granted(&record)]
        } else {
            Vec::new()
        };
        let batch = Batch {
            events,
            upserts: vec![record.clone()],
        };
        self.tracked(batch, record, Wait::Durable).await
    }

    /// A new standing grant, durably with its `grant.created` event.
    pub async fn grant_created(&self, grant: Grant) -> Result<(), StoreError> {
        let event = events::grant_created(&grant);
        self.storage.create_grant(grant, event).await
    }

    /// Revokes a standing grant (`grant.revoked`); `None` if unknown.
    pub async fn grant_revoked(
        &self,
        id: &str,
        operator: &str,
    ) -> Result<Option<Grant>, StoreError> {
        let now = time::OffsetDateTime::now_utc();
        self.storage
            .revoke_grant(id, operator, now, events::grant_revoked)
            .await
    }

    /// An event that concerns no single request (server, policy).
    pub async fn event(&self, event: NewEvent) -> Result<(), StoreError> {
        self.write(vec![event], None, Wait::Durable).await
    }

    /// Writes the ending of the record, once. Queued without waiting: it may
    /// run while a request's future is being dropped.
    fn end(&self, mut record: RequestRecord, ending: &Ending) {
        let event = events::ended(&mut record, ending);
        let batch = Batch {
            events: vec![event],
            upserts: vec![record],
        };
        if let Err(e) = self.storage.commit_now(batch) {
            tracing::error!(error = %e, kind = ending.kind(), "recording the end of a request failed");
        }
    }

    /// Requests being forwarded right now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// At shutdown: every request still in flight ends `cancelled` before the
    /// store closes (SPEC §6 "Every request ends").
    pub fn cancel_in_flight(&self, why: &str) -> usize {
        let ending = Ending::Cancelled {
            why: why.to_string(),
        };
        let records = self.in_flight.take_all();
        let n = records.len();
        for r in records {
            self.end(r, &ending);
        }
        n
    }
}
