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
mod transitions;

use std::sync::Arc;

use sudomode_store::{
    Batch, Grant, NewEvent, Parked, RequestRecord, RowBase, Storage, StoreError, Wait,
};
use time::OffsetDateTime;
use tokio::sync::broadcast;

use crate::config::Durability;
use crate::core::decided::Decided;

use flight::InFlight;
pub use flight::{Ending, Flight};
pub use transitions::{Refused, Retry};

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
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<RequestRecord>> {
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

    // `write`, `decided` and `admitted` are plain functions that turn their
    // arguments into the batch first and return the store's future (or an
    // `async move` block over it): as `async fn`s each would keep its
    // arguments (a `Decided` is about 1 KiB) beside the future it awaits,
    // inside the admission every forwarded request boxes.
    fn write(
        &self,
        events: Vec<NewEvent>,
        record: Option<RequestRecord>,
        wait: Wait,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + '_ {
        let batch = Batch {
            events,
            upserts: record.into_iter().collect(),
        };
        self.storage.commit(batch, wait)
    }

    /// An ALLOW or DENY decision (the request's first record).
    pub fn decided(&self, d: Decided) -> impl Future<Output = Result<(), StoreError>> + Send + '_ {
        self.write(vec![d.event], Some(d.record), self.decision_wait())
    }

    /// An ALLOW decision that is forwarded next: recorded, then tracked until
    /// it ends (the returned guard writes the ending exactly once). The guard
    /// exists from the moment the batch is queued, so an agent that leaves
    /// while it commits still gets an ending, written after the batch.
    #[allow(clippy::manual_async_fn)] // an `async move` block: see `write`
    pub fn admitted(
        self: &Arc<Self>,
        d: Decided,
    ) -> impl Future<Output = Result<Flight, StoreError>> + Send + '_ {
        let record = d.record.clone();
        let batch = Batch {
            events: vec![d.event],
            upserts: vec![d.record],
        };
        // The record must be on disk before any byte goes upstream, but nobody reads
        // it back on this path: its row may follow the answer (`Wait::Logged`).
        let wait = match self.durability {
            Durability::Strict => Wait::Logged,
            Durability::Batched => Wait::Queued,
        };
        async move {
            let mut sent = self.storage.send_keeping_base(batch, wait, true).await?;
            let flight = Flight::new(
                self.clone(),
                self.in_flight.clone(),
                record,
                sent.take_base(),
            );
            match sent.done().await {
                Ok(()) => Ok(flight),
                Err(e) => {
                    // Not recorded: nothing to end, and nothing will be forwarded.
                    flight.disarm();
                    Err(e)
                }
            }
        }
    }

    /// The guard for a request about to be forwarded.
    pub fn flight(self: &Arc<Self>, record: RequestRecord) -> Flight {
        Flight::new(self.clone(), self.in_flight.clone(), record, None)
    }

    /// A REQUIRE_APPROVAL decision parks the request — durable before anyone
    /// is notified — unless an identical request is pending already (on any
    /// replica): then nothing is written and that one is to be joined.
    pub async fn held(&self, d: &Decided) -> Result<Parked, StoreError> {
        self.storage
            .insert_pending(d.record.clone(), d.event.clone())
            .await
    }

    /// A call identical to a pending request joined it instead of creating
    /// another: its decision is recorded on the pending request.
    pub async fn joined(&self, pending_id: &str, d: &Decided) -> Result<(), StoreError> {
        let event = events::joined(pending_id, d);
        self.write(vec![event], None, self.decision_wait()).await
    }

    /// One operator's approval, if the request is still pending: the record
    /// and whether enough operators approved (released).
    pub async fn approve(
        &self,
        id: &str,
        operator: &str,
        approval: crate::hold::Approval,
    ) -> Result<Result<(RequestRecord, bool), Refused>, StoreError> {
        let operator = operator.to_string();
        let now = OffsetDateTime::now_utc();
        self.storage
            .update_request(id, move |cur| {
                transitions::approve(cur, &operator, &approval, now)
            })
            .await
    }

    /// An operator's rejection, if the request is still pending.
    pub async fn reject(
        &self,
        id: &str,
        operator: &str,
        reason: Option<String>,
    ) -> Result<Result<RequestRecord, Refused>, StoreError> {
        let operator = operator.to_string();
        let now = OffsetDateTime::now_utc();
        self.storage
            .update_request(id, move |cur| {
                transitions::reject(cur, &operator, reason.as_deref(), now)
            })
            .await
    }

    /// Expires the request if its window ended; the expired record, or
    /// `None` when another replica (or a decision) came first.
    pub async fn expire(
        &self,
        id: &str,
        retry_window: std::time::Duration,
    ) -> Result<Option<RequestRecord>, StoreError> {
        let now = OffsetDateTime::now_utc();
        self.storage
            .update_request(id, move |cur| transitions::expire(cur, now, retry_window))
            .await
    }

    /// Takes the approval's one forwarding — for the waiting agent call, or
    /// (`retry`) for an identical retry within `hold.retry_window` — and
    /// tracks it until it ends. `None` when it was taken already. Runs to the
    /// end in its own task: if the caller goes away after the claim, the
    /// dropped guard records the request as cancelled.
    pub async fn claim(
        self: &Arc<Self>,
        id: &str,
        retry: Option<Retry>,
    ) -> Result<Option<Flight>, StoreError> {
        let me = self.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            let claimed = me
                .storage
                .update_request(&id, move |cur| transitions::claim(cur, retry))
                .await?;
            Ok(claimed.map(|record| me.flight(record)))
        })
        .await
        .map_err(|e| StoreError::Storage(format!("claim task: {e}")))?
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
    /// `base`: the record's row as stored with its decision, when the record
    /// has not changed since (see [`Flight`]).
    fn end(&self, mut record: RequestRecord, ending: &Ending, base: Option<&RowBase>) {
        let event = events::ended(&mut record, ending);
        let batch = Batch {
            events: vec![event],
            upserts: vec![record],
        };
        if let Err(e) = self.storage.commit_now_on(batch, base) {
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
            self.end(r, &ending, None);
        }
        n
    }
}
