//! The governance core: one path that judges, records and ends every request,
//! for the proxy and for explicit intents (`/v1/govern`) alike.
//!
//! `judge_*` maps a request to intents and asks the policy (nothing is written
//! yet); [`Core::admit`] records the decision through the audit phase and says
//! what happens next: forward (with the terminal guard that writes how it
//! ended), hold for an operator, or refuse. Refusals are [`Refusal`] values;
//! each listener turns them into its wire format in one place.

pub mod decided;
pub mod engine;
pub mod refusal;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;
use sudomode_intent::{Intent, IntentError, Mapped, NormalizedRequest, RawRequest};
use sudomode_policy::{Decision, Verdict};

use crate::audit::{Flight, Recorder};
use crate::hold::edits::RequestHead;
use crate::hold::{Entry, Holds, Ticket};
use crate::ids::{AgentName, RequestId};
use crate::metrics::Metrics;
use decided::{Decided, Draft, Judgement};
use engine::Engine;
pub use refusal::{Refusal, RefusalKind};

/// A held decision keeps its judgement for grants and edits; others drop it
/// at once (`head` is only built for a held one).
fn keep_judgement(
    decided: Decided,
    mapped: Mapped,
    policy: Arc<sudomode_policy::Policy>,
    head: impl FnOnce() -> Option<RequestHead>,
) -> Decided {
    if decided.verdict != Verdict::RequireApproval {
        return decided;
    }
    decided.hold_with(Judgement {
        mapped,
        policy,
        head: head().map(Arc::new),
    })
}

/// Why a request was denied, for the agent.
fn denial_message(about: &About) -> String {
    format!(
        "{} {} was denied by {}: {}",
        about.resource,
        about.action,
        about
            .rule
            .as_deref()
            .map(|x| format!("rule `{x}`"))
            .unwrap_or_else(|| "the default (no rule matched)".into()),
        about.reason
    )
}

/// One agent call's context through the phases.
pub struct Call {
    pub id: RequestId,
    pub agent: AgentName,
    pub started: Instant,
}

impl Call {
    pub fn new(agent: AgentName) -> Self {
        Call {
            id: RequestId::new(),
            agent,
            started: Instant::now(),
        }
    }
}

/// What a refusal about a decided request names (resource, action, rule).
#[derive(Debug, Clone)]
pub struct About {
    pub resource: String,
    pub action: String,
    pub rule: Option<String>,
    pub reason: String,
    /// The deciding rule's `reply_after`, if it sets one.
    pub reply_after: Option<Duration>,
}

impl About {
    fn of(d: &Decided) -> Self {
        About {
            resource: d.resource().to_string(),
            action: d.action().to_string(),
            rule: d.rule.as_ref().map(|r| r.0.clone()),
            reason: d.reason().to_string(),
            reply_after: d.reply_after,
        }
    }
}

/// What happens to a recorded decision.
pub enum Admission {
    /// Send it upstream now; the guard writes how it ended.
    Forward(Flight),
    /// An explicit intent was allowed: the agent acts itself.
    Allowed(RequestId),
    /// Refused (and recorded).
    Refused(Refusal),
    /// Held for an operator: wait on the ticket.
    Held(Ticket, About),
}

/// An HTTP request as the proxy received it.
pub struct HttpSubject<'a> {
    pub raw: RawRequest<'a>,
    /// The URL exactly as sent (approvals bind it).
    pub raw_url: &'a str,
    /// The query string as sent (the normalised URL keeps it as is).
    pub raw_query: &'a str,
}

pub struct Core {
    pub engine: Engine,
    pub recorder: Arc<Recorder>,
    pub holds: Arc<Holds>,
    pub metrics: Arc<Metrics>,
    hold_timeout: Duration,
    public_url: String,
}

impl Core {
    pub fn new(
        engine: Engine,
        recorder: Arc<Recorder>,
        holds: Arc<Holds>,
        metrics: Arc<Metrics>,
        hold_timeout: Duration,
        public_url: String,
    ) -> Self {
        Core {
            engine,
            recorder,
            holds,
            metrics,
            hold_timeout,
            public_url,
        }
    }

    /// Maps and judges an HTTP request; nothing is recorded yet.
    pub fn judge_http(&self, call: &Call, s: &HttpSubject<'_>) -> Result<Decided, IntentError> {
        let judged = self.engine.judge(call.agent.as_str(), &s.raw)?;
        let url = judged.mapped.request.url(s.raw_query);
        let decided = Decided::new(
            &Draft {
                id: &call.id,
                agent: &call.agent,
                method: &judged.mapped.request.method,
                url: &url,
                raw_url: s.raw_url,
                intents: &judged.mapped.intents,
                body: s.raw.body,
                headers: Some(s.raw.headers),
                explicit: false,
                policy_version: judged.policy.version(),
                hold_timeout: self.hold_timeout,
            },
            &judged.decision,
            serde_json::to_value(&judged.mapped.request).ok(),
        )
        .redact(self.recorder.storage());
        Ok(keep_judgement(
            decided,
            judged.mapped,
            judged.policy,
            || Some(RequestHead::of(&s.raw)),
        ))
    }

    /// Judges an explicit intent (`/v1/govern`): the agent names the intent.
    pub fn judge_explicit(
        &self,
        call: &Call,
        resource: &str,
        action: &str,
        args: Value,
    ) -> Decided {
        let mapped = Mapped {
            request: NormalizedRequest {
                method: "GOVERN".into(),
                scheme: "sudomode".into(),
                host: "govern".into(),
                port: 0,
                path: "/v1/govern".into(),
                query: Default::default(),
                headers: Default::default(),
            },
            intents: vec![Intent::new(resource, action, args)],
        };
        let judged = self.engine.decide(call.agent.as_str(), mapped);
        let url = format!("sudomode:govern/{resource}/{action}");
        // Canonical args are the "body": identical asks join one pending request.
        let body = sudomode_store::canonical_json(&judged.mapped.intents[0].args);
        let decided = Decided::new(
            &Draft {
                id: &call.id,
                agent: &call.agent,
                method: "GOVERN",
                url: &url,
                raw_url: &url,
                intents: &judged.mapped.intents,
                body: body.as_bytes(),
                headers: None,
                explicit: true,
                policy_version: judged.policy.version(),
                hold_timeout: self.hold_timeout,
            },
            &judged.decision,
            None,
        )
        .redact(self.recorder.storage());
        keep_judgement(decided, judged.mapped, judged.policy, || None)
    }

    /// A request refused before it could be judged (unreadable, too large, a
    /// forbidden target): still a decision, recorded as the proxy's own DENY.
    pub async fn refuse_unjudged(
        &self,
        call: &Call,
        method: &str,
        url: &str,
        host: &str,
        refusal: Refusal,
    ) -> Refusal {
        let decision = Decision::builtin_deny(refusal.message.clone());
        let intents = [Intent::new(
            format!("http.{host}"),
            method.to_ascii_lowercase(),
            serde_json::json!({}),
        )];
        let mut decided = Decided::new(
            &Draft {
                id: &call.id,
                agent: &call.agent,
                method,
                url,
                raw_url: url,
                intents: &intents,
                body: &[],
                headers: None,
                explicit: false,
                policy_version: self.engine.policy().version(),
                hold_timeout: self.hold_timeout,
            },
            &decision,
            None,
        )
        .note("error_type", refusal.kind.as_str())
        .redact(self.recorder.storage());
        if let Some(rule) = &refusal.rule {
            decided.record.rule = Some(rule.clone());
        }
        self.log(&decided, Some(refusal.kind));
        self.metrics.decided(Verdict::Deny);
        if let Err(e) = self.recorder.decided(decided).await {
            tracing::error!(request_id = %call.id, error = %e, "recording a refusal failed");
        }
        refusal
    }

    /// Records the decision and says what happens next. `body` is what a held
    /// request would forward (shared by the calls that join it).
    ///
    /// A plain function returning an `async move` block, as the proxy's
    /// `handle`: every forwarded request boxes this future, and an `async fn`
    /// would keep `decided` (about 1 KiB) twice in it.
    #[allow(clippy::manual_async_fn)] // see above
    pub fn admit(
        &self,
        mut decided: Decided,
        body: Bytes,
    ) -> impl Future<Output = Admission> + Send + '_ {
        async move {
            // A standing grant may stand in for the approval (SPEC §6.1). Boxed:
            // only REQUIRE_APPROVAL looks grants up.
            if decided.verdict == Verdict::RequireApproval {
                decided = Box::pin(crate::grants::apply(self, decided)).await;
            }
            self.metrics.decided(decided.verdict);
            // A faulted store could not record the decision: refuse at once (in
            // `batched` mode the decision would otherwise be forwarded unrecorded).
            if let Some(why) = self.recorder.storage().fault() {
                tracing::warn!(request_id = %decided.id, reason = %why, "store unavailable; request refused");
                return Admission::Refused(Refusal::store_unavailable(&decided.id));
            }
            let id = decided.id.clone();
            let admitted = match (decided.verdict, decided.explicit) {
                (Verdict::Allow, false) => {
                    self.log(&decided, None);
                    self.recorder
                        .admitted(decided)
                        .await
                        .map(Admission::Forward)
                }
                (Verdict::Allow, true) => {
                    self.log(&decided, None);
                    self.recorder
                        .decided(decided)
                        .await
                        .map(|()| Admission::Allowed(id.clone()))
                }
                (Verdict::Deny, _) => {
                    self.log(&decided, Some(RefusalKind::Denied));
                    let about = About::of(&decided);
                    let refusal =
                        self.refusal(RefusalKind::Denied, &id, &about, denial_message(&about));
                    self.recorder
                        .decided(decided)
                        .await
                        .map(|()| Admission::Refused(refusal))
                }
                // Boxed: inline, the hold's future made every request's admission (boxed
                // by the proxy) twice as large.
                (Verdict::RequireApproval, _) => {
                    let about = About::of(&decided);
                    return Box::pin(self.hold(decided, about, body)).await;
                }
            };
            admitted.unwrap_or_else(|e| {
                tracing::error!(request_id = %id, error = %e, "recording a decision failed; request refused");
                Admission::Refused(Refusal::store_unavailable(&id))
            })
        }
    }

    async fn hold(&self, decided: Decided, about: About, body: Bytes) -> Admission {
        let id = decided.id.clone();
        // Logged once the id is known: a joined call or a retry under an
        // approval is recorded under the held request's id, not its own.
        let line = LogLine::of(&decided);
        match self.holds.enter(decided, body).await {
            Ok(Entry::Wait(ticket)) => {
                line.emit(&ticket.id, None);
                if ticket.joined {
                    tracing::info!(request_id = %ticket.id, call = %id, "identical pending request joined");
                }
                Admission::Held(ticket, about)
            }
            Ok(Entry::Grant(flight)) => {
                let held = RequestId::from_stored(flight.id());
                line.emit(&held, None);
                tracing::info!(request_id = %held, call = %id, "identical retry forwarded under an earlier approval");
                Admission::Forward(flight)
            }
            Ok(Entry::OverCap { decided, waiting }) => {
                let message = format!(
                    "{} {} needs approval, but agent `{}` already has {waiting} requests waiting (hold.max_pending_per_agent); wait for those to be decided",
                    about.resource, about.action, decided.agent
                );
                let denied = (*decided).into_builtin_denial(message.clone());
                self.log(&denied, Some(RefusalKind::Denied));
                let refusal = self.refusal(RefusalKind::Denied, &id, &About::of(&denied), message);
                match self.recorder.decided(denied).await {
                    Ok(()) => Admission::Refused(refusal),
                    Err(_) => Admission::Refused(Refusal::store_unavailable(&id)),
                }
            }
            Err(e) => {
                line.emit(&id, Some(RefusalKind::StoreUnavailable));
                tracing::error!(request_id = %id, error = %e, "holding a request failed; request refused");
                Admission::Refused(Refusal::store_unavailable(&id))
            }
        }
    }

    /// A refusal about a decided request, with its approval URL; `message`
    /// says what happened to it (for a denial: [`denial_message`]).
    pub fn refusal(
        &self,
        kind: RefusalKind,
        id: &RequestId,
        about: &About,
        message: String,
    ) -> Refusal {
        let mut r = Refusal::new(kind, id, message);
        r.resource = Some(about.resource.clone());
        r.action = Some(about.action.clone());
        r.rule = about.rule.clone();
        r.reason = Some(about.reason.clone());
        r.approval_url = Some(self.approval_url(id));
        r
    }

    pub fn approval_url(&self, id: &RequestId) -> String {
        format!("{}/#/requests/{}", self.public_url, id)
    }

    /// One structured line per decision, under the id the API knows.
    fn log(&self, d: &Decided, refused: Option<RefusalKind>) {
        LogLine::of(d).emit(&d.id, refused);
    }
}

/// The fields of a decision's log line, taken before the decision moves on.
struct LogLine {
    agent: String,
    method: String,
    url: String,
    resource: String,
    action: String,
    decision: &'static str,
    rule: Option<String>,
    reason: String,
}

impl LogLine {
    fn of(d: &Decided) -> Self {
        use crate::logtext::escape_log;
        let r = &d.record;
        LogLine {
            agent: escape_log(d.agent.as_str()).into_owned(),
            method: escape_log(&r.method).into_owned(),
            url: escape_log(&r.url).into_owned(),
            resource: escape_log(&r.resource).into_owned(),
            action: escape_log(&r.action).into_owned(),
            decision: d.verdict.as_str(),
            rule: d.rule.as_ref().map(|r| escape_log(r.as_str()).into_owned()),
            reason: escape_log(&r.reason).into_owned(),
        }
    }

    /// Under `id`: the request id the operator API answers for.
    fn emit(&self, id: &RequestId, refused: Option<RefusalKind>) {
        tracing::info!(
            request_id = %id, agent = %self.agent,
            method = %self.method, url = %self.url,
            resource = %self.resource, action = %self.action,
            decision = %self.decision,
            rule = self.rule.as_deref().unwrap_or("-"),
            refused = refused.map(RefusalKind::as_str).unwrap_or("-"),
            reason = %self.reason,
            "decided"
        );
    }
}
