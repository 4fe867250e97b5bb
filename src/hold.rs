//! The pending registry (SPEC §6): park a REQUIRE_APPROVAL request, join
//! identical ones, approve / reject / expire, and the one-time retry grant.
//!
//! A held request's record is written durably before anyone is notified. An
//! approval is recorded durably before the waiting agent call is released.
//! Forwarding after approval happens exactly once: the first live waiter (or
//! the first identical retry within `hold.retry_window`) claims the grant.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sudomode_store::{Approval, NewEvent, RequestRecord, Status, StoreError};
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::audit::Recorder;

/// What a waiting agent call learns.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Pending,
    Approved,
    Rejected { by: String, reason: Option<String> },
    Expired,
}

#[derive(Debug, thiserror::Error)]
pub enum HoldError {
    #[error("no such request")]
    NotFound,
    #[error("request is {0}, not pending")]
    NotPending(Status),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// How a REQUIRE_APPROVAL request enters the registry.
pub enum Entry {
    /// New or joined: wait on the receiver for the outcome.
    Wait {
        id: String,
        rx: watch::Receiver<Outcome>,
        joined: bool,
    },
    /// An identical request was approved and its grant is now claimed by
    /// this call: forward it under that request's id.
    Grant { record: Box<RequestRecord> },
    /// The agent already has too many pending requests.
    OverCap { pending: usize },
}

struct Held {
    record: RequestRecord,
    tx: watch::Sender<Outcome>,
    /// Approved at (for the retry window).
    approved_at: Option<OffsetDateTime>,
    /// Explicit intents (`/v1/govern`) have nothing to forward.
    explicit: bool,
}

pub struct Holds {
    recorder: Arc<Recorder>,
    retry_window: Duration,
    max_per_agent: usize,
    map: Mutex<Map>,
}

#[derive(Default)]
struct Map {
    by_id: HashMap<String, Held>,
    by_key: HashMap<String, String>,
}

impl Map {
    /// Drops the retry-key link only if it still points at `id`: a newer
    /// pending request may own that key by now.
    fn unlink(&mut self, key: &str, id: &str) {
        if self.by_key.get(key).is_some_and(|k| k == id) {
            self.by_key.remove(key);
        }
    }
}

impl Holds {
    pub fn new(recorder: Arc<Recorder>, retry_window: Duration, max_per_agent: usize) -> Self {
        Self {
            recorder,
            retry_window,
            max_per_agent,
            map: Mutex::new(Map::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Map> {
        // Critical sections below never panic; a poisoned lock still holds a
        // consistent map.
        match self.map.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    pub fn pending_count(&self) -> usize {
        self.lock()
            .by_id
            .values()
            .filter(|h| h.record.status == Status::Pending)
            .count()
    }

    /// Reloads open records after a restart: pending ones stay approvable,
    /// approved ones keep their unused retry grant.
    pub fn restore(&self) -> Result<usize, StoreError> {
        let open = self.recorder.store().pending_requests()?;
        let mut map = self.lock();
        let n = open.len();
        for record in open {
            let approved_at = (record.status == Status::Approved)
                .then(|| record.approvals.last().map(|a| a.at))
                .flatten();
            let outcome = if record.status == Status::Approved {
                Outcome::Approved
            } else {
                Outcome::Pending
            };
            let (tx, _) = watch::channel(outcome);
            let explicit = record.method == "GOVERN";
            map.by_key
                .insert(record.retry_key.clone(), record.id.clone());
            map.by_id.insert(
                record.id.clone(),
                Held {
                    record,
                    tx,
                    approved_at,
                    explicit,
                },
            );
        }
        Ok(n)
    }

    /// Parks (or joins, or uses the grant of) a REQUIRE_APPROVAL request.
    /// `record` arrives with status `pending`; `decided` is its decision event.
    pub async fn enter(
        &self,
        mut record: RequestRecord,
        decided: NewEvent,
        explicit: bool,
    ) -> Result<Entry, HoldError> {
        // Held as stored (secrets masked, bulk arguments cut): every answer
        // built from the held copy shows what every other view shows.
        self.recorder.store().redact_record(&mut record);
        let now = OffsetDateTime::now_utc();
        let claimed = {
            let mut map = self.lock();
            if let Some(id) = map.by_key.get(&record.retry_key).cloned()
                && let Some(h) = map.by_id.get_mut(&id)
            {
                match h.record.status {
                    Status::Pending => {
                        return Ok(Entry::Wait {
                            id,
                            rx: h.tx.subscribe(),
                            joined: true,
                        });
                    }
                    Status::Approved
                        if !h.record.retry_grant_used
                            && !h.explicit
                            && self.within_retry(h, now) =>
                    {
                        h.record.retry_grant_used = true;
                        Some(h.record.clone())
                    }
                    _ => None,
                }
            } else {
                None
            }
        };
        if let Some(granted) = claimed {
            let event = NewEvent::new("request.retry_granted")
                .request(granted.id.clone())
                .agent(granted.agent.clone())
                .field("retry_key", granted.retry_key.clone());
            self.recorder
                .durable(vec![event], Some(granted.clone()))
                .await?;
            self.forget_if_done(&granted.id);
            return Ok(Entry::Grant {
                record: Box::new(granted),
            });
        }
        let pending = {
            let map = self.lock();
            map.by_id
                .values()
                .filter(|h| h.record.status == Status::Pending && h.record.agent == record.agent)
                .count()
        };
        if pending >= self.max_per_agent {
            return Ok(Entry::OverCap { pending });
        }
        let (tx, rx) = watch::channel(Outcome::Pending);
        let id = record.id.clone();
        {
            let mut map = self.lock();
            map.by_key.insert(record.retry_key.clone(), id.clone());
            map.by_id.insert(
                id.clone(),
                Held {
                    record: record.clone(),
                    tx,
                    approved_at: None,
                    explicit,
                },
            );
        }
        if let Err(e) = self.recorder.durable(vec![decided], Some(record)).await {
            let mut map = self.lock();
            if let Some(h) = map.by_id.remove(&id) {
                map.unlink(&h.record.retry_key, &id);
            }
            return Err(e.into());
        }
        Ok(Entry::Wait {
            id,
            rx,
            joined: false,
        })
    }

    fn within_retry(&self, h: &Held, now: OffsetDateTime) -> bool {
        h.approved_at.is_none_or(|at| now - at <= self.retry_window)
    }

    /// A live waiter claims the approval's one forwarding. False when another
    /// waiter or a retry already did.
    pub async fn claim(&self, id: &str) -> Result<Option<RequestRecord>, HoldError> {
        let record = {
            let mut map = self.lock();
            let Some(h) = map.by_id.get_mut(id) else {
                return Ok(None);
            };
            if h.record.status != Status::Approved || h.record.retry_grant_used {
                return Ok(None);
            }
            h.record.retry_grant_used = true;
            h.record.clone()
        };
        self.recorder.durable(vec![], Some(record.clone())).await?;
        self.forget_if_done(id);
        Ok(Some(record))
    }

    fn forget_if_done(&self, id: &str) {
        let mut map = self.lock();
        let done = map.by_id.get(id).is_some_and(|h| h.record.retry_grant_used);
        if done && let Some(h) = map.by_id.remove(id) {
            map.unlink(&h.record.retry_key, id);
        }
    }

    /// Records an operator's approval; releases the request when enough
    /// distinct operators approved. The same operator twice counts once.
    pub async fn approve(
        &self,
        id: &str,
        operator: &str,
        reason: Option<String>,
    ) -> Result<RequestRecord, HoldError> {
        let now = OffsetDateTime::now_utc();
        let (record, released, tx) = {
            let mut map = self.lock();
            let h = self.pending_mut(&mut map, id)?;
            if !h.record.approvals.iter().any(|a| a.operator == operator) {
                h.record.approvals.push(Approval {
                    operator: operator.to_string(),
                    at: now,
                    reason: reason.clone(),
                });
            }
            let released = h.record.approvals.len() as u32 >= h.record.required_approvals.max(1);
            if released {
                h.record.status = Status::Approved;
                h.approved_at = Some(now);
                if h.explicit {
                    h.record.retry_grant_used = true;
                }
            }
            (h.record.clone(), released, h.tx.clone())
        };
        let mut event = NewEvent::new("request.approved")
            .request(id)
            .agent(record.agent.clone())
            .operator(operator)
            .field("approvals", record.approvals.len() as u64)
            .field("required_approvals", record.required_approvals)
            .field("released", released);
        if let Some(r) = &reason {
            event = event.field("reason", r.clone());
        }
        self.recorder
            .durable(vec![event], Some(record.clone()))
            .await?;
        if released {
            let _ = tx.send(Outcome::Approved);
            self.forget_if_done(id);
        }
        Ok(record)
    }

    pub async fn reject(
        &self,
        id: &str,
        operator: &str,
        reason: Option<String>,
    ) -> Result<RequestRecord, HoldError> {
        let (record, tx) = {
            let mut map = self.lock();
            let h = self.pending_mut(&mut map, id)?;
            h.record.status = Status::Rejected;
            h.record.rejected_by = Some(operator.to_string());
            h.record.rejected_reason = reason.clone();
            h.record.completed_at = Some(OffsetDateTime::now_utc());
            let out = (h.record.clone(), h.tx.clone());
            let key = h.record.retry_key.clone();
            map.by_id.remove(id);
            map.unlink(&key, id);
            out
        };
        let mut event = NewEvent::new("request.rejected")
            .request(id)
            .agent(record.agent.clone())
            .operator(operator);
        if let Some(r) = &reason {
            event = event.field("reason", r.clone());
        }
        self.recorder
            .durable(vec![event], Some(record.clone()))
            .await?;
        let _ = tx.send(Outcome::Rejected {
            by: operator.to_string(),
            reason,
        });
        Ok(record)
    }

    fn pending_mut<'m>(&self, map: &'m mut Map, id: &str) -> Result<&'m mut Held, HoldError> {
        if let Some(h) = map.by_id.get_mut(id) {
            return if h.record.status == Status::Pending {
                Ok(h)
            } else {
                Err(HoldError::NotPending(h.record.status))
            };
        }
        // Not held: tell a finished request (409) from an unknown one (404).
        match self.recorder.store().get_request(id) {
            Ok(Some(r)) => Err(HoldError::NotPending(r.status)),
            Ok(None) => Err(HoldError::NotFound),
            Err(e) => Err(e.into()),
        }
    }

    /// Expires pending requests whose window ended and approvals whose retry
    /// window lapsed unused. Returns how many changed.
    pub async fn sweep(&self) -> usize {
        let now = OffsetDateTime::now_utc();
        let expired: Vec<(RequestRecord, watch::Sender<Outcome>)> = {
            let mut map = self.lock();
            let ids: Vec<String> = map
                .by_id
                .iter()
                .filter(|(_, h)| match h.record.status {
                    Status::Pending => h.record.expires_at.is_some_and(|e| now >= e),
                    Status::Approved => {
                        !h.explicit && !h.record.retry_grant_used && !self.within_retry(h, now)
                    }
                    _ => false,
                })
                .map(|(id, _)| id.clone())
                .collect();
            ids.iter()
                .filter_map(|id| {
                    let mut h = map.by_id.remove(id)?;
                    map.unlink(&h.record.retry_key, id);
                    h.record.status = Status::Expired;
                    h.record.completed_at = Some(now);
                    Some((h.record, h.tx))
                })
                .collect()
        };
        let n = expired.len();
        for (record, tx) in expired {
            let event = NewEvent::new("request.expired")
                .request(record.id.clone())
                .agent(record.agent.clone());
            if let Err(e) = self.recorder.durable(vec![event], Some(record)).await {
                tracing::error!(error = %e, "recording an expiry failed");
            }
            let _ = tx.send(Outcome::Expired);
        }
        n
    }
}

/// Runs the expiry sweep until shutdown.
pub async fn sweeper(holds: Arc<Holds>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = shutdown.changed() => return,
        }
        holds.sweep().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Durability;

    fn record(id: &str, key: &str) -> RequestRecord {
        let json = serde_json::json!({
            "id": id, "created_at": "2026-01-01T00:00:00Z", "agent": "bot", "method": "POST",
            "url": "https://api.stripe.com/v1/charges", "resource": "stripe.charges", "action": "create",
            "args": {}, "decision": "REQUIRE_APPROVAL", "rule": "r", "reason": "x", "status": "pending",
            "required_approvals": 1, "approvals": [], "rejected_by": null, "expires_at": "2999-01-01T00:00:00Z",
            "upstream_status": null, "completed_at": null, "intents": [], "retry_key": key,
            "body_sha256": "00", "policy_version": "v", "retry_grant_used": false
        });
        serde_json::from_value(json).unwrap()
    }

    async fn holds(dir: &std::path::Path, retry: Duration) -> Holds {
        let store = sudomode_store::Store::open(&dir.join("s.redb"), Default::default()).unwrap();
        Holds::new(
            Arc::new(Recorder::new(store, Durability::Strict)),
            retry,
            10,
        )
    }

    #[tokio::test]
    async fn a_lapsed_approval_does_not_unlink_a_newer_pending_request() {
        let dir = tempfile::tempdir().unwrap();
        let h = holds(dir.path(), Duration::ZERO).await;
        let ev = || NewEvent::new("request.decided");
        assert!(matches!(
            h.enter(record("a", "k"), ev(), false).await.unwrap(),
            Entry::Wait { joined: false, .. }
        ));
        h.approve("a", "alice", None).await.unwrap();
        // The approval's retry window (0 s) is over: an identical request is held anew.
        assert!(matches!(
            h.enter(record("b", "k"), ev(), false).await.unwrap(),
            Entry::Wait { joined: false, .. }
        ));
        assert_eq!(h.sweep().await, 1, "the lapsed approval expires");
        match h.enter(record("c", "k"), ev(), false).await.unwrap() {
            Entry::Wait {
                id, joined: true, ..
            } => assert_eq!(id, "b"),
            _ => panic!("an identical request must join the pending one"),
        }
    }

    #[tokio::test]
    async fn grant_is_used_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        let h = holds(dir.path(), Duration::from_secs(60)).await;
        let ev = || NewEvent::new("request.decided");
        h.enter(record("a", "k"), ev(), false).await.unwrap();
        h.approve("a", "alice", None).await.unwrap();
        assert!(matches!(
            h.enter(record("b", "k"), ev(), false).await.unwrap(),
            Entry::Grant { .. }
        ));
        assert!(
            h.claim("a").await.unwrap().is_none(),
            "the retry consumed the grant"
        );
        assert!(matches!(
            h.enter(record("c", "k"), ev(), false).await.unwrap(),
            Entry::Wait { joined: false, .. }
        ));
    }
}
