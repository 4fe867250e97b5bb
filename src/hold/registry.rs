//! The pending registry (SPEC §6): park a REQUIRE_APPROVAL request, join
//! identical ones, approve / reject / expire, and the one-time retry grant.
//!
//! A held request's record is written durably before anyone is notified. An
//! approval is recorded durably before the waiting agent call is released.
//! Forwarding after approval happens exactly once: the first live waiter (or
//! the first identical retry within `hold.retry_window`) claims it. Every
//! write goes through the audit phase ([`Recorder`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use sudomode_store::{RequestRecord, Status, StoreError};
use time::OffsetDateTime;
use tokio::sync::watch;

use super::edits::{ApprovedEdit, HeldCall, RequestHead};
use crate::audit::{Flight, Recorder};
use crate::core::decided::Decided;
use crate::ids::RequestId;

/// An operator's approval: the reason, the standing grant it also makes
/// (SPEC §6.1) and the edits it approves (SPEC §6.2), if any.
#[derive(Debug, Clone, Default)]
pub struct Approval {
    pub reason: Option<String>,
    pub grant: Option<String>,
    pub edit: Option<ApprovedEdit>,
}

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
    /// New or joined: wait on the ticket for the outcome.
    Wait(Ticket),
    /// An identical request was approved and its one forwarding is now
    /// claimed by this call: forward it under that request's id.
    Grant(Flight),
    /// The agent already has too many requests waiting.
    OverCap {
        decided: Box<Decided>,
        waiting: usize,
    },
}

/// A call waiting for a held request's outcome. A joined call also counts
/// against its agent's cap until the ticket is dropped.
pub struct Ticket {
    pub id: RequestId,
    pub rx: watch::Receiver<Outcome>,
    pub joined: bool,
    /// The held request's body (a joined call forwards these bytes, which
    /// are its own by the join key, and drops its copy).
    pub body: Bytes,
    holds: Arc<Holds>,
    agent: String,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.joined {
            self.holds.lock().leave(&self.agent);
        }
    }
}

struct Held {
    record: RequestRecord,
    tx: watch::Sender<Outcome>,
    /// Approved at (for the retry window).
    approved_at: Option<OffsetDateTime>,
    body: Bytes,
    /// The request head as sent (for edits; not kept across a restart).
    head: Option<Arc<RequestHead>>,
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
    /// Pending requests plus live joined calls, per agent (the cap).
    waiting: HashMap<String, usize>,
}

impl Map {
    /// Drops the retry-key link only if it still points at `id`: a newer
    /// pending request may own that key by now.
    fn unlink(&mut self, key: &str, id: &str) {
        if self.by_key.get(key).is_some_and(|k| k == id) {
            self.by_key.remove(key);
        }
    }

    fn waiting(&self, agent: &str) -> usize {
        self.waiting.get(agent).copied().unwrap_or(0)
    }

    fn join(&mut self, agent: &str) {
        *self.waiting.entry(agent.to_string()).or_default() += 1;
    }

    fn leave(&mut self, agent: &str) {
        if let Some(n) = self.waiting.get_mut(agent) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.waiting.remove(agent);
            }
        }
    }

    fn insert(&mut self, held: Held) {
        if held.record.status == Status::Pending {
            self.join(&held.record.agent);
        }
        self.by_key
            .insert(held.record.retry_key.clone(), held.record.id.clone());
        self.by_id.insert(held.record.id.clone(), held);
    }

    /// Sets a held request's status; leaving `pending` drops its agent's count.
    fn settle(&mut self, id: &str, status: Status) -> Option<&mut Held> {
        let h = self.by_id.get_mut(id)?;
        let was_pending = h.record.status == Status::Pending;
        h.record.status = status;
        let agent = h.record.agent.clone();
        if was_pending && status != Status::Pending {
            self.leave(&agent);
        }
        self.by_id.get_mut(id)
    }

    fn remove(&mut self, id: &str) -> Option<Held> {
        let h = self.by_id.remove(id)?;
        if h.record.status == Status::Pending {
            self.leave(&h.record.agent);
        }
        self.unlink(&h.record.retry_key, id);
        Some(h)
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
    /// approved ones keep their unused retry grant. (Their bodies are not
    /// kept: only an identical retry can forward them.)
    pub async fn restore(&self) -> Result<usize, StoreError> {
        let open = self.recorder.storage().open_requests().await?;
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
            map.insert(Held {
                record,
                tx,
                approved_at,
                body: Bytes::new(),
                head: None,
            });
        }
        Ok(n)
    }

    /// Parks (or joins, or uses the grant of) a REQUIRE_APPROVAL request.
    pub async fn enter(
        self: &Arc<Self>,
        decided: Decided,
        body: Bytes,
    ) -> Result<Entry, HoldError> {
        let now = OffsetDateTime::now_utc();
        let agent = decided.agent.as_str().to_string();
        enum Found {
            Join(RequestId, watch::Receiver<Outcome>, Bytes),
            Claim(Box<RequestRecord>),
            New,
            OverCap(usize),
        }
        let found = {
            let mut map = self.lock();
            let waiting = map.waiting(&agent);
            let existing = map
                .by_key
                .get(decided.retry_key())
                .cloned()
                .and_then(|id| map.by_id.get_mut(&id).map(|h| (id, h)));
            match existing {
                Some((_, h)) if h.record.status == Status::Approved => {
                    if !h.record.retry_grant_used
                        && !decided.explicit
                        && !h.record.is_explicit()
                        && self.within_retry(h, now)
                    {
                        h.record.retry_grant_used = true;
                        Found::Claim(Box::new(h.record.clone()))
                    } else if waiting >= self.max_per_agent {
                        Found::OverCap(waiting)
                    } else {
                        Found::New
                    }
                }
                // Joined calls count against the cap too.
                _ if waiting >= self.max_per_agent => Found::OverCap(waiting),
                Some((id, h)) if h.record.status == Status::Pending => {
                    let rx = h.tx.subscribe();
                    let body = h.body.clone();
                    map.join(&agent);
                    Found::Join(RequestId::from_stored(id), rx, body)
                }
                _ => Found::New,
            }
        };
        match found {
            Found::OverCap(waiting) => Ok(Entry::OverCap {
                decided: Box::new(decided),
                waiting,
            }),
            Found::Claim(record) => {
                let id = record.id.clone();
                let flight = self.recorder.claimed(*record, true).await?;
                self.forget_if_done(&id);
                Ok(Entry::Grant(flight))
            }
            Found::Join(id, rx, body) => {
                let ticket = Ticket {
                    id: id.clone(),
                    rx,
                    joined: true,
                    body,
                    holds: self.clone(),
                    agent,
                };
                self.recorder.joined(id.as_str(), &decided).await?;
                Ok(Entry::Wait(ticket))
            }
            Found::New => self.park(decided, body).await,
        }
    }

    async fn park(self: &Arc<Self>, decided: Decided, body: Bytes) -> Result<Entry, HoldError> {
        let (tx, rx) = watch::channel(Outcome::Pending);
        let id = decided.id.clone();
        let head = decided.judgement.as_ref().and_then(|j| j.head.clone());
        self.lock().insert(Held {
            record: decided.record.clone(),
            tx,
            approved_at: None,
            body: body.clone(),
            head,
        });
        if let Err(e) = self.recorder.held(&decided).await {
            self.lock().remove(id.as_str());
            return Err(e.into());
        }
        Ok(Entry::Wait(Ticket {
            id,
            rx,
            joined: false,
            body,
            holds: self.clone(),
            agent: decided.agent.as_str().to_string(),
        }))
    }

    fn within_retry(&self, h: &Held, now: OffsetDateTime) -> bool {
        h.approved_at.is_none_or(|at| now - at <= self.retry_window)
    }

    /// A live waiter claims the approval's one forwarding. `None` when another
    /// waiter or a retry already did.
    pub async fn claim(&self, id: &RequestId) -> Result<Option<Flight>, HoldError> {
        let record = {
            let mut map = self.lock();
            let Some(h) = map.by_id.get_mut(id.as_str()) else {
                return Ok(None);
            };
            if h.record.status != Status::Approved || h.record.retry_grant_used {
                return Ok(None);
            }
            h.record.retry_grant_used = true;
            h.record.clone()
        };
        let flight = self.recorder.claimed(record, false).await?;
        self.forget_if_done(id.as_str());
        Ok(Some(flight))
    }

    fn forget_if_done(&self, id: &str) {
        let mut map = self.lock();
        let done = map.by_id.get(id).is_some_and(|h| h.record.retry_grant_used);
        if done {
            map.remove(id);
        }
    }

    /// A pending request's record, head and body (for edits).
    pub fn held_call(&self, id: &str) -> Option<HeldCall> {
        let map = self.lock();
        let h = map.by_id.get(id)?;
        (h.record.status == Status::Pending).then(|| HeldCall {
            record: h.record.clone(),
            head: h.head.clone(),
            body: h.body.clone(),
        })
    }

    /// Records an operator's approval; releases the request when enough
    /// distinct operators approved. The same operator twice counts once.
    pub async fn approve(
        &self,
        id: &str,
        operator: &str,
        reason: Option<String>,
    ) -> Result<RequestRecord, HoldError> {
        let approval = Approval {
            reason,
            ..Approval::default()
        };
        self.approve_with(id, operator, approval).await
    }

    /// [`Holds::approve`] with a grant made or edits approved.
    pub async fn approve_with(
        &self,
        id: &str,
        operator: &str,
        approval: Approval,
    ) -> Result<RequestRecord, HoldError> {
        let reason = approval.reason.clone();
        let now = OffsetDateTime::now_utc();
        let step = self.approve_in_map(id, operator, &approval, now);
        let (record, released, tx) = match step {
            Err(HoldError::NotFound) => return Err(self.explain_not_held(id).await),
            other => other?,
        };
        self.recorder
            .approved(&record, operator, reason.as_deref(), released)
            .await?;
        if released {
            let _ = tx.send(Outcome::Approved);
            self.forget_if_done(id);
        }
        Ok(record)
    }

    /// The registry's side of an approval: (record, released, waiters).
    fn approve_in_map(
        &self,
        id: &str,
        operator: &str,
        approval: &Approval,
        now: OffsetDateTime,
    ) -> Result<(RequestRecord, bool, watch::Sender<Outcome>), HoldError> {
        let mut map = self.lock();
        let h = pending_mut(&mut map, id)?;
        if !h.record.approvals.iter().any(|a| a.operator == operator) {
            h.record.approvals.push(sudomode_store::Approval {
                operator: operator.to_string(),
                at: now,
                reason: approval.reason.clone(),
                grant: approval.grant.clone(),
            });
        }
        if let Some(edit) = &approval.edit {
            edit.stamp(&mut h.record);
        }
        let released = h.record.approvals.len() as u32 >= h.record.required_approvals.max(1);
        let explicit = h.record.is_explicit();
        if released && let Some(h) = map.settle(id, Status::Approved) {
            h.approved_at = Some(now);
            // An explicit intent has nothing to forward.
            h.record.retry_grant_used |= explicit;
        }
        let h = map.by_id.get(id).ok_or(HoldError::NotFound)?;
        Ok((h.record.clone(), released, h.tx.clone()))
    }

    pub async fn reject(
        &self,
        id: &str,
        operator: &str,
        reason: Option<String>,
    ) -> Result<RequestRecord, HoldError> {
        let held = {
            let mut map = self.lock();
            match pending_mut(&mut map, id) {
                Ok(_) => {
                    map.settle(id, Status::Rejected);
                    map.remove(id)
                }
                Err(HoldError::NotFound) => None,
                Err(e) => return Err(e),
            }
        };
        let Some(mut held) = held else {
            return Err(self.explain_not_held(id).await);
        };
        held.record.rejected_by = Some(operator.to_string());
        held.record.rejected_reason = reason.clone();
        held.record.completed_at = Some(OffsetDateTime::now_utc());
        self.recorder
            .rejected(&held.record, operator, reason.as_deref())
            .await?;
        let _ = held.tx.send(Outcome::Rejected {
            by: operator.to_string(),
            reason,
        });
        Ok(held.record)
    }

    /// 404 for an unknown request, 409 for one that is no longer pending:
    /// read from the store (outside the registry's lock) when not held here.
    pub async fn explain_not_held(&self, id: &str) -> HoldError {
        match self.recorder.storage().get_request(id).await {
            Ok(Some(r)) => HoldError::NotPending(r.status),
            Ok(None) => HoldError::NotFound,
            Err(e) => e.into(),
        }
    }

    /// Expires pending requests whose window ended and approvals whose retry
    /// window lapsed unused. Returns how many changed.
    pub async fn sweep(&self) -> usize {
        let now = OffsetDateTime::now_utc();
        let expired: Vec<Held> = {
            let mut map = self.lock();
            let ids: Vec<String> = map
                .by_id
                .iter()
                .filter(|(_, h)| match h.record.status {
                    Status::Pending => h.record.expires_at.is_some_and(|e| now >= e),
                    Status::Approved => {
                        !h.record.is_explicit()
                            && !h.record.retry_grant_used
                            && !self.within_retry(h, now)
                    }
                    _ => false,
                })
                .map(|(id, _)| id.clone())
                .collect();
            ids.iter()
                .filter_map(|id| {
                    map.settle(id, Status::Expired);
                    map.remove(id)
                })
                .collect()
        };
        let n = expired.len();
        for mut held in expired {
            held.record.completed_at = Some(now);
            if let Err(e) = self.recorder.expired(&held.record).await {
                tracing::error!(error = %e, "recording an expiry failed");
            }
            let _ = held.tx.send(Outcome::Expired);
        }
        n
    }
}

/// The held entry for `id` while it is pending. Not held here at all →
/// `NotFound`; the API then asks the store whether it finished
/// ([`Holds::explain_not_held`]).
fn pending_mut<'m>(map: &'m mut Map, id: &str) -> Result<&'m mut Held, HoldError> {
    match map.by_id.get_mut(id) {
        Some(h) if h.record.status == Status::Pending => Ok(h),
        Some(h) => Err(HoldError::NotPending(h.record.status)),
        None => Err(HoldError::NotFound),
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
    use crate::core::decided::Draft;
    use crate::ids::AgentName;
    use sudomode_policy::{Decision, RuleName, Verdict};

    /// A REQUIRE_APPROVAL decision for agent `bot` whose join key is made from `key`.
    fn decided(key: &str) -> Decided {
        let decision = Decision {
            verdict: Verdict::RequireApproval,
            rule: Some(RuleName("r".into())),
            reason: "x".into(),
            approvals: 1,
            timeout: None,
            reply_after: None,
            intent_index: 0,
            condition_errors: vec![],
            would_have: vec![],
        };
        Decided::new(
            &Draft {
                id: &RequestId::new(),
                agent: &AgentName("bot".into()),
                method: "POST",
                url: "https://api.stripe.com/v1/charges",
                raw_url: "https://api.stripe.com/v1/charges",
                intents: &[],
                body: key.as_bytes(),
                headers: None,
                explicit: false,
                policy_version: "v",
                hold_timeout: Duration::from_secs(600),
            },
            &decision,
            None,
        )
    }

    fn holds(dir: &std::path::Path, retry: Duration) -> Arc<Holds> {
        let store = sudomode_store::Store::open(&dir.join("s.redb"), Default::default()).unwrap();
        let storage = sudomode_store::Storage::redb(store);
        Arc::new(Holds::new(
            Arc::new(Recorder::new(storage, Durability::Strict)),
            retry,
            10,
        ))
    }

    fn waits(e: Entry) -> Ticket {
        match e {
            Entry::Wait(t) => t,
            _ => panic!("expected to wait"),
        }
    }

    #[tokio::test]
    async fn a_lapsed_approval_does_not_unlink_a_newer_pending_request() {
        let dir = tempfile::tempdir().unwrap();
        let h = holds(dir.path(), Duration::ZERO);
        let a = waits(h.enter(decided("k"), Bytes::new()).await.unwrap());
        assert!(!a.joined);
        h.approve(a.id.as_str(), "alice", None).await.unwrap();
        // The approval's retry window (0 s) is over: an identical request is held anew.
        let b = waits(h.enter(decided("k"), Bytes::new()).await.unwrap());
        assert!(!b.joined);
        assert_eq!(h.sweep().await, 1, "the lapsed approval expires");
        let c = waits(h.enter(decided("k"), Bytes::new()).await.unwrap());
        assert!(c.joined, "an identical request must join the pending one");
        assert_eq!(c.id, b.id);
    }

    #[tokio::test]
    async fn grant_is_used_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        let h = holds(dir.path(), Duration::from_secs(60));
        let a = waits(h.enter(decided("k"), Bytes::new()).await.unwrap());
        h.approve(a.id.as_str(), "alice", None).await.unwrap();
        match h.enter(decided("k"), Bytes::new()).await.unwrap() {
            Entry::Grant(flight) => {
                flight.end(crate::audit::Ending::Cancelled { why: "test".into() })
            }
            _ => panic!("the retry must use the grant"),
        }
        assert!(
            h.claim(&a.id).await.unwrap().is_none(),
            "the retry consumed the grant"
        );
        let c = waits(h.enter(decided("k"), Bytes::new()).await.unwrap());
        assert!(!c.joined);
    }

    #[tokio::test]
    async fn joined_calls_count_against_the_cap_and_share_one_body() {
        let dir = tempfile::tempdir().unwrap();
        let h = holds(dir.path(), Duration::from_secs(60));
        let body = Bytes::from(vec![7u8; 1024]);
        let first = waits(h.enter(decided("k"), body.clone()).await.unwrap());
        let mut joined = Vec::new();
        for _ in 0..9 {
            let t = waits(h.enter(decided("k"), Bytes::new()).await.unwrap());
            assert!(t.joined);
            assert_eq!(
                t.body.as_ptr(),
                body.as_ptr(),
                "joined calls share the first body"
            );
            joined.push(t);
        }
        assert!(
            matches!(
                h.enter(decided("k"), Bytes::new()).await.unwrap(),
                Entry::OverCap { waiting: 10, .. }
            ),
            "the eleventh identical call is over the cap of 10"
        );
        drop(joined.pop());
        assert!(waits(h.enter(decided("k"), Bytes::new()).await.unwrap()).joined);
        drop(first);
    }
}
