//! The hold registry (SPEC §6, §15): park a REQUIRE_APPROVAL request, join
//! identical ones, approve / reject / expire, and the one-time retry grant.
//!
//! The store is the truth about held requests, whichever replica holds the
//! agent's call: parking is an insert that finds an identical pending
//! request instead (one pending request per retry key), and every decision
//! is a conditional update of the stored record with its event
//! ([`Recorder`]), so it happens once across replicas. This registry keeps
//! only what is local: the agent calls waiting here (to release them) and
//! the joined calls counted against the agent's cap. Changes made elsewhere
//! reach the waiters through the store's feed of held requests, and (on a
//! shared store) a periodic re-check, so a lost notification only delays.
//!
//! A held request's record is durable before anyone is notified; an approval
//! is durable before the waiting call is released; forwarding after approval
//! happens exactly once: the first live waiter (or identical retry within
//! `hold.retry_window`) claims it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use sudomode_store::{Parked, RequestRecord, Status, StoreError, approved_at};
use time::OffsetDateTime;
use tokio::sync::{broadcast, watch};

use super::edits::{ApprovedEdit, HeldCall, RequestHead};
use crate::audit::{Flight, Recorder, Refused, Retry};
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

impl Outcome {
    /// What a stored record means for the calls waiting on it.
    fn of(r: &RequestRecord) -> Option<Outcome> {
        match r.status {
            Status::Pending | Status::Allowed | Status::Denied => None,
            Status::Rejected => Some(Outcome::Rejected {
                by: r.rejected_by.clone().unwrap_or_default(),
                reason: r.rejected_reason.clone(),
            }),
            Status::Expired => Some(Outcome::Expired),
            // Approved, and possibly forwarded already: the claim decides.
            Status::Approved | Status::Completed | Status::Failed | Status::Cancelled => {
                Some(Outcome::Approved)
            }
        }
    }
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

impl From<Refused> for HoldError {
    fn from(r: Refused) -> Self {
        match r {
            Refused::Missing => HoldError::NotFound,
            Refused::NotPending(s) => HoldError::NotPending(s),
        }
    }
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
        self.holds
            .lock()
            .leave(self.id.as_str(), &self.agent, self.joined);
    }
}

/// A held call's body and head (for edits).
type HeldBytes = (Bytes, Option<Arc<RequestHead>>);

/// The agent calls waiting here on one held request.
struct Waiter {
    tx: watch::Sender<Outcome>,
    /// The body the calls here share (identical by the join key).
    body: Bytes,
    calls: usize,
    /// The request head as sent (for edits; only on the replica holding the call).
    head: Option<Arc<RequestHead>>,
}

#[derive(Default)]
struct Local {
    waiters: HashMap<String, Waiter>,
    /// Head and body of the requests parked here while they are pending,
    /// also after their calls left (an operator may still edit them).
    parked: HashMap<String, HeldBytes>,
    /// Live joined calls per agent (they count against the cap).
    joined: HashMap<String, usize>,
}

impl Local {
    /// Registers one more call waiting on `id`; the body the calls share.
    fn wait(
        &mut self,
        id: &str,
        agent: &str,
        (body, head): HeldBytes,
        joined: bool,
    ) -> (watch::Receiver<Outcome>, Bytes) {
        if joined {
            *self.joined.entry(agent.to_string()).or_default() += 1;
        }
        let before = self.waiters.len();
        let w = self
            .waiters
            .entry(id.to_string())
            .or_insert_with(|| Waiter {
                tx: watch::channel(Outcome::Pending).0,
                body,
                calls: 0,
                head,
            });
        w.calls += 1;
        let rx = (w.tx.subscribe(), w.body.clone());
        super::memory::held_changed(before, self.waiters.len());
        rx
    }

    fn leave(&mut self, id: &str, agent: &str, joined: bool) {
        if joined && let Some(n) = self.joined.get_mut(agent) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.joined.remove(agent);
            }
        }
        if let Some(w) = self.waiters.get_mut(id) {
            w.calls = w.calls.saturating_sub(1);
            if w.calls == 0 {
                let before = self.waiters.len();
                self.waiters.remove(id);
                super::memory::held_changed(before, self.waiters.len());
            }
        }
    }

    fn joined(&self, agent: &str) -> usize {
        self.joined.get(agent).copied().unwrap_or(0)
    }
}

pub struct Holds {
    recorder: Arc<Recorder>,
    retry_window: Duration,
    max_per_agent: usize,
    local: Mutex<Local>,
}

/// How many times `enter` looks again after losing a race to another call.
const ENTER_ATTEMPTS: usize = 4;

impl Holds {
    pub fn new(recorder: Arc<Recorder>, retry_window: Duration, max_per_agent: usize) -> Self {
        Self {
            recorder,
            retry_window,
            max_per_agent,
            local: Mutex::new(Local::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Local> {
        // Critical sections below never panic; a poisoned lock still holds
        // consistent maps.
        match self.local.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Requests pending now (every replica's, with a shared store).
    pub fn pending_count(&self) -> usize {
        self.recorder.storage().pending_total()
    }

    /// Open requests in the store at start (they survive restarts as
    /// records: pending ones stay approvable, approved ones keep their
    /// unused retry grant).
    pub async fn restore(&self) -> Result<usize, StoreError> {
        Ok(self.recorder.storage().open_requests().await?.len())
    }

    /// Parks (or joins, or uses the grant of) a REQUIRE_APPROVAL request.
    pub async fn enter(
        self: &Arc<Self>,
        decided: Decided,
        body: Bytes,
    ) -> Result<Entry, HoldError> {
        let agent = decided.agent.as_str().to_string();
        let storage = self.recorder.storage();
        for _ in 0..ENTER_ATTEMPTS {
            let now = OffsetDateTime::now_utc();
            match storage.find_open(decided.retry_key()).await? {
                Some(r) if r.status == Status::Approved && self.claimable(&r, &decided, now) => {
                    let retry = Retry {
                        now,
                        window: self.retry_window,
                    };
                    match self.recorder.claim(&r.id, Some(retry)).await? {
                        Some(flight) => return Ok(Entry::Grant(flight)),
                        None => continue, // another call took it: look again
                    }
                }
                Some(r) if r.status == Status::Pending => {
                    if let Some(over) = self.over_cap(&agent).await? {
                        return Ok(over.into_entry(decided));
                    }
                    return self.join(r, &decided, body).await;
                }
                _ => {}
            }
            if let Some(over) = self.over_cap(&agent).await? {
                return Ok(over.into_entry(decided));
            }
            match self.park(&decided, body.clone()).await? {
                Some(ticket) => return Ok(Entry::Wait(ticket)),
                None => continue, // an identical request was parked first: join it
            }
        }
        Err(HoldError::Store(StoreError::Commit(
            "the request kept changing while it was being held; retry".into(),
        )))
    }

    /// Whether this call may use `r`'s approval as its one retry.
    fn claimable(&self, r: &RequestRecord, decided: &Decided, now: OffsetDateTime) -> bool {
        !r.retry_grant_used
            && !decided.explicit
            && !r.is_explicit()
            && approved_at(r).is_none_or(|at| now - at <= self.retry_window)
    }

    /// The cap: requests of the agent pending in the store plus the calls
    /// joined on this replica.
    async fn over_cap(&self, agent: &str) -> Result<Option<OverCap>, HoldError> {
        let pending = self.recorder.storage().pending_count(agent).await?;
        let waiting = pending + self.lock().joined(agent);
        Ok((waiting >= self.max_per_agent).then_some(OverCap(waiting)))
    }

    /// Records the request as pending and waits on it here; `None` when an
    /// identical request was pending already (nothing written).
    async fn park(
        self: &Arc<Self>,
        decided: &Decided,
        body: Bytes,
    ) -> Result<Option<Ticket>, HoldError> {
        let id = decided.id.clone();
        let agent = decided.agent.as_str().to_string();
        let head = decided.judgement.as_ref().and_then(|j| j.head.clone());
        // Waiting before the insert: an approval right after it finds us.
        let call = (body, head);
        let ticket = self.ticket(id.as_str(), &agent, call.clone(), false);
        match self.recorder.held(decided).await? {
            Parked::Inserted => {
                self.lock().parked.insert(id.as_str().to_string(), call);
                Ok(Some(ticket))
            }
            Parked::Existing(_) => Ok(None),
        }
    }

    /// Joins the pending request `r` with this call.
    async fn join(
        self: &Arc<Self>,
        r: RequestRecord,
        decided: &Decided,
        body: Bytes,
    ) -> Result<Entry, HoldError> {
        let ticket = self.ticket(&r.id, decided.agent.as_str(), (body, None), true);
        self.recorder.joined(&r.id, decided).await?;
        // Decided between the lookup and the registration above: settle now.
        if let Some(now) = self.recorder.storage().get_request(&r.id).await? {
            self.settle(&now);
        }
        Ok(Entry::Wait(ticket))
    }

    fn ticket(self: &Arc<Self>, id: &str, agent: &str, call: HeldBytes, joined: bool) -> Ticket {
        let (rx, body) = self.lock().wait(id, agent, call, joined);
        Ticket {
            id: RequestId::from_stored(id.to_string()),
            rx,
            joined,
            body,
            holds: self.clone(),
            agent: agent.to_string(),
        }
    }

    /// Tells the calls waiting here on `r` what became of it.
    fn settle(&self, r: &RequestRecord) {
        let Some(outcome) = Outcome::of(r) else {
            return;
        };
        let mut local = self.lock();
        local.parked.remove(&r.id);
        if let Some(w) = local.waiters.get(&r.id) {
            w.tx.send_if_modified(|o| {
                let changed = *o == Outcome::Pending;
                if changed {
                    *o = outcome;
                }
                changed
            });
        }
    }

    /// A live waiter claims the approval's one forwarding. `None` when another
    /// waiter or a retry already did.
    pub async fn claim(&self, id: &RequestId) -> Result<Option<Flight>, HoldError> {
        Ok(self.recorder.claim(id.as_str(), None).await?)
    }

    /// A pending request's record, head and body (for edits). The head and
    /// body are only where the call waits: elsewhere (another replica, or
    /// after a restart) the head is `None`.
    pub async fn held_call(&self, id: &str) -> Option<HeldCall> {
        let (body, head) = {
            let local = self.lock();
            match (local.waiters.get(id), local.parked.get(id)) {
                (_, Some(call)) => call.clone(),
                (Some(w), None) => (w.body.clone(), w.head.clone()),
                (None, None) => (Bytes::new(), None),
            }
        };
        let record = self.recorder.storage().get_request(id).await.ok()??;
        (record.status == Status::Pending).then_some(HeldCall { record, head, body })
    }

    /// Why request `id` cannot be decided or edited now.
    pub async fn explain_not_held(&self, id: &str) -> HoldError {
        match self.recorder.storage().get_request(id).await {
            Ok(Some(r)) => HoldError::NotPending(r.status),
            Ok(None) => HoldError::NotFound,
            Err(e) => e.into(),
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
        self.approve_with(
            id,
            operator,
            Approval {
                reason,
                ..Approval::default()
            },
        )
        .await
    }

    /// [`Holds::approve`] with a grant made or edits approved.
    pub async fn approve_with(
        &self,
        id: &str,
        operator: &str,
        approval: Approval,
    ) -> Result<RequestRecord, HoldError> {
        let (record, released) = self.recorder.approve(id, operator, approval).await??;
        if released {
            self.settle(&record);
        }
        Ok(record)
    }

    pub async fn reject(
        &self,
        id: &str,
        operator: &str,
        reason: Option<String>,
    ) -> Result<RequestRecord, HoldError> {
        let record = self.recorder.reject(id, operator, reason).await??;
        self.settle(&record);
        Ok(record)
    }

    /// Expires pending requests whose window ended and approvals whose retry
    /// window lapsed unused — once, whichever replica gets there first.
    /// Returns how many this call expired.
    pub async fn sweep(&self) -> usize {
        let storage = self.recorder.storage();
        let due = match storage
            .due_for_expiry(OffsetDateTime::now_utc(), self.retry_window)
            .await
        {
            Ok(due) => due,
            Err(e) => {
                tracing::debug!(error = %e, "looking for expired requests failed");
                return 0;
            }
        };
        let mut n = 0;
        for r in due {
            match self.recorder.expire(&r.id, self.retry_window).await {
                Ok(Some(expired)) => {
                    n += 1;
                    self.settle(&expired);
                }
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "recording an expiry failed"),
            }
        }
        n
    }

    /// Re-reads the requests calls wait on (or were parked) here and settles
    /// those decided elsewhere: a lost notification only delays the release.
    pub async fn recheck(&self) {
        let ids: Vec<String> = {
            let local = self.lock();
            local
                .waiters
                .iter()
                .filter(|(_, w)| *w.tx.borrow() == Outcome::Pending)
                .map(|(id, _)| id.clone())
                .chain(local.parked.keys().cloned())
                .collect::<std::collections::HashSet<_>>()
                .into_iter()
                .collect()
        };
        if ids.is_empty() {
            return;
        }
        match self.recorder.storage().get_requests(ids).await {
            Ok(records) => records.iter().for_each(|r| self.settle(r)),
            Err(e) => tracing::debug!(error = %e, "re-checking held requests failed"),
        }
    }
}

/// The agent's count of waiting requests when it is at the cap.
struct OverCap(usize);

impl OverCap {
    fn into_entry(self, decided: Decided) -> Entry {
        Entry::OverCap {
            decided: Box::new(decided),
            waiting: self.0,
        }
    }
}

/// How often a shared store's held requests are re-read.
const RECHECK_EVERY: u32 = 4;

/// Runs the expiry sweep until shutdown, follows held requests changed by
/// other replicas, and on a shared store re-checks the held requests.
pub async fn sweeper(holds: Arc<Holds>, mut shutdown: watch::Receiver<bool>) {
    let storage = holds.recorder.storage().clone();
    let follower = tokio::spawn(follow(holds.clone(), storage.held_elsewhere()));
    let shared = storage.is_shared();
    let mut tick = 0u32;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = shutdown.changed() => break,
        }
        holds.sweep().await;
        tick = tick.wrapping_add(1);
        if shared && tick.is_multiple_of(RECHECK_EVERY) {
            holds.recheck().await;
        }
    }
    follower.abort();
}

/// Settles local waiters as other replicas decide.
async fn follow(holds: Arc<Holds>, mut changes: broadcast::Receiver<Arc<RequestRecord>>) {
    loop {
        match changes.recv().await {
            Ok(r) => holds.settle(&r),
            // Missed some: the periodic re-check catches up.
            Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return,
        }
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
