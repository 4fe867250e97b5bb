//! A judged request as typed values ([`Decided`]), and how it becomes the
//! store's record and `request.decided` event — the only place that shape is
//! made, for the proxy and for explicit intents alike.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sudomode_intent::Intent;
use sudomode_policy::{Decision, RuleName, Verdict};
use sudomode_store::{NewEvent, RequestRecord, Status};
use time::OffsetDateTime;

use crate::ids::{AgentName, RequestId};

/// The outcome of judging one request, before anything is recorded.
pub struct Decided {
    pub id: RequestId,
    pub agent: AgentName,
    pub verdict: Verdict,
    pub rule: Option<RuleName>,
    /// An explicit intent (`/v1/govern`): nothing to forward.
    pub explicit: bool,
    /// The deciding rule's `reply_after`, if it sets one (SPEC §6).
    pub reply_after: Option<std::time::Duration>,
    /// The row the store will keep (made here, at the store boundary).
    pub(crate) record: RequestRecord,
    /// Its `request.decided` event.
    pub(crate) event: NewEvent,
    /// A REQUIRE_APPROVAL decision keeps what standing grants and edits
    /// need until it is admitted (see [`Judgement`]).
    pub(crate) judgement: Option<Box<Judgement>>,
}

/// A held decision's judgement: the intents and request as judged, not yet
/// masked (grant conditions are evaluated on them), the policy that judged,
/// and the request head (an edit re-encodes the body under it).
pub struct Judgement {
    pub mapped: sudomode_intent::Mapped,
    pub policy: std::sync::Arc<sudomode_policy::Policy>,
    pub head: Option<std::sync::Arc<crate::hold::edits::RequestHead>>,
}

/// What a decision is made from.
pub struct Draft<'a> {
    pub id: &'a RequestId,
    pub agent: &'a AgentName,
    pub method: &'a str,
    /// Normalised URL (what the operator reads).
    pub url: &'a str,
    /// The URL exactly as sent: approvals bind it (S3 keys are literal).
    pub raw_url: &'a str,
    pub intents: &'a [Intent],
    pub body: &'a [u8],
    /// Request headers that travel upstream (None for explicit intents).
    pub headers: Option<&'a http::HeaderMap>,
    pub explicit: bool,
    pub policy_version: &'a str,
    /// Approval window when the decision is REQUIRE_APPROVAL.
    pub hold_timeout: std::time::Duration,
}

impl Decided {
    /// Builds the record and event of a decision. `request` is the normalised
    /// request as judged, recorded with the event when there is one.
    pub fn new(d: &Draft<'_>, decision: &Decision, request: Option<Value>) -> Self {
        let record = new_record(d, decision);
        let event = decided_event(&record, decision, request);
        Decided {
            id: d.id.clone(),
            agent: d.agent.clone(),
            verdict: decision.verdict,
            rule: decision.rule.clone(),
            explicit: d.explicit,
            reply_after: decision.reply_after,
            record,
            event,
            judgement: None,
        }
    }

    /// Keeps the judgement of a REQUIRE_APPROVAL decision (see [`Judgement`])
    /// and notes whether approving it may also make a standing grant.
    pub(crate) fn hold_with(mut self, judgement: Judgement) -> Self {
        if self.verdict == Verdict::RequireApproval {
            self.record.grantable = self
                .rule
                .as_ref()
                .is_some_and(|r| judgement.policy.rule_grantable(r.as_str()));
            self.judgement = Some(Box::new(judgement));
        }
        self
    }

    pub fn resource(&self) -> &str {
        &self.record.resource
    }

    pub fn action(&self) -> &str {
        &self.record.action
    }

    pub fn reason(&self) -> &str {
        &self.record.reason
    }

    /// Whether any intent is an MCP message (SPEC §4.9).
    pub fn touches_mcp(&self) -> bool {
        self.record.intents.iter().any(|i| {
            i.get("resource")
                .and_then(Value::as_str)
                .is_some_and(|r| r.starts_with("mcp."))
        })
    }

    /// The identity of "the same request" for joining and retries.
    pub fn retry_key(&self) -> &str {
        &self.record.retry_key
    }

    /// Turns the decision into the proxy's own DENY (rule `sudomode.builtin`),
    /// e.g. when the agent has too many requests waiting.
    pub fn into_builtin_denial(mut self, reason: String) -> Self {
        self.verdict = Verdict::Deny;
        self.rule = Some(RuleName(RuleName::BUILTIN.to_string()));
        let r = &mut self.record;
        r.status = Status::Denied;
        r.decision = Verdict::Deny.as_str().to_string();
        r.rule = Some(RuleName::BUILTIN.to_string());
        r.reason = reason.clone();
        r.expires_at = None;
        self.event = self
            .event
            .field("decision", Verdict::Deny.as_str())
            .field("rule", RuleName::BUILTIN)
            .field("reason", reason);
        self
    }

    /// Masks secrets and truncates bulk arguments in the record, as the store
    /// will keep it: the one view every channel gets.
    pub(crate) fn redact(mut self, storage: &sudomode_store::Storage) -> Self {
        storage.redact_record(&mut self.record);
        self
    }

    /// Adds a field to the decision's event (e.g. why it was refused unjudged).
    pub fn note(mut self, name: &'static str, value: impl Into<Value>) -> Self {
        self.event = self.event.field(name, value);
        self
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    if data.is_empty() {
        // Most requests have no body.
        return sudomode_store::EMPTY_SHA256.to_string();
    }
    hex::encode(Sha256::digest(data))
}

/// Identity of "the same request" for joining and retries (SPEC §6): agent,
/// method, the URL exactly as sent, body hash — and the headers that reach the
/// upstream, because they change what it executes (`Stripe-Account`).
pub fn retry_key(
    agent: &str,
    method: &str,
    raw_url: &str,
    body_sha256: &str,
    headers_sha256: &str,
) -> String {
    // The hash of the five joined by newlines, fed in parts (no joined copy).
    let mut h = Sha256::new();
    for (i, part) in [agent, method, raw_url, body_sha256, headers_sha256]
        .iter()
        .enumerate()
    {
        if i > 0 {
            h.update(b"\n");
        }
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Headers that differ between an SDK's attempts at the same call without
/// changing what the upstream executes: signatures and their dates, per-call
/// ids, telemetry, framing. Everything else is bound by the approval.
const VOLATILE_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "date",
    "x-amz-date",
    "x-amz-security-token",
    "amz-sdk-invocation-id",
    "amz-sdk-request",
    "idempotency-key",
    "x-stripe-client-telemetry",
    "x-stripe-client-user-agent",
    "user-agent",
    "content-length",
    "traceparent",
    "tracestate",
    "x-request-id",
    "x-amzn-trace-id",
];

/// SHA-256 over the sorted, lower-cased stable headers (name: value lines).
pub fn headers_sha256(headers: &http::HeaderMap) -> String {
    // The lines `name: value`, sorted as text and joined by newlines, hashed
    // without building them.
    let mut lines: Vec<(&str, std::borrow::Cow<'_, str>)> = headers
        .iter()
        .filter(|(n, _)| !VOLATILE_HEADERS.contains(&n.as_str()))
        .map(|(n, v)| (n.as_str(), String::from_utf8_lossy(v.as_bytes())))
        .collect();
    lines.sort_by(|a, b| line_bytes(a.0, &a.1).cmp(line_bytes(b.0, &b.1)));
    let mut h = Sha256::new();
    for (i, (n, v)) in lines.iter().enumerate() {
        if i > 0 {
            h.update(b"\n");
        }
        h.update(n.as_bytes());
        h.update(b": ");
        h.update(v.as_bytes());
    }
    hex::encode(h.finalize())
}

/// The bytes of the line `name: value`.
fn line_bytes<'a>(name: &'a str, value: &'a str) -> impl Iterator<Item = u8> + 'a {
    name.bytes().chain(*b": ").chain(value.bytes())
}

/// Upstream-visible headers that change what runs (SPEC §8): shown to the
/// operator beside the arguments.
const SHOWN_HEADERS: [&str; 3] = ["stripe-account", "idempotency-key", "prefer"];

fn shown_headers(headers: &http::HeaderMap) -> std::collections::BTreeMap<String, String> {
    SHOWN_HEADERS
        .iter()
        .filter_map(|name| {
            let values: Vec<String> = headers
                .get_all(*name)
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect();
            (!values.is_empty()).then(|| (name.to_string(), values.join(", ")))
        })
        .collect()
}

fn status_of(verdict: Verdict) -> Status {
    match verdict {
        Verdict::Allow => Status::Allowed,
        Verdict::Deny => Status::Denied,
        Verdict::RequireApproval => Status::Pending,
    }
}

fn new_record(d: &Draft<'_>, decision: &Decision) -> RequestRecord {
    let now = OffsetDateTime::now_utc();
    let idx = decision.intent_index.min(d.intents.len().saturating_sub(1));
    let intent = d.intents.get(idx);
    let body_sha256 = sha256_hex(d.body);
    let status = status_of(decision.verdict);
    let window = decision.timeout.unwrap_or(d.hold_timeout);
    RequestRecord {
        id: d.id.as_str().to_string(),
        created_at: now,
        agent: d.agent.as_str().to_string(),
        method: d.method.to_string(),
        url: d.url.to_string(),
        headers: d.headers.map(shown_headers).unwrap_or_default(),
        resource: intent.map(|i| i.resource.clone()).unwrap_or_default(),
        action: intent.map(|i| i.action.clone()).unwrap_or_default(),
        args: intent
            .map(|i| i.args.clone())
            .unwrap_or(Value::Object(Default::default())),
        decision: decision.verdict.as_str().to_string(),
        rule: decision.rule.as_ref().map(|r| r.0.clone()),
        reason: decision.reason.clone(),
        status,
        required_approvals: decision.approvals.max(1),
        approvals: vec![],
        rejected_by: None,
        rejected_reason: None,
        expires_at: (status == Status::Pending)
            .then(|| now + time::Duration::try_from(window).unwrap_or(time::Duration::minutes(10))),
        upstream_status: None,
        completed_at: None,
        intents: d.intents.iter().map(Intent::to_json).collect(),
        retry_key: retry_key(
            d.agent.as_str(),
            d.method,
            d.raw_url,
            &body_sha256,
            &d.headers.map(headers_sha256).unwrap_or_default(),
        ),
        body_sha256,
        policy_version: d.policy_version.to_string(),
        retry_grant_used: false,
        explicit: d.explicit,
        grant_id: None,
        grantable: false,
        approved_args: None,
        edited: false,
        edit: None,
    }
}

/// `request.decided`: intent(s), decision, rule, reason, policy version,
/// condition errors, report-mode matches, and the request as judged.
fn decided_event(r: &RequestRecord, d: &Decision, request: Option<Value>) -> NewEvent {
    // In name order: the store then has nothing to sort.
    let ev = NewEvent::new("request.decided")
        .request(r.id.clone())
        .agent(r.agent.clone())
        .field("action", r.action.clone())
        .field("args", r.args.clone())
        .field("body_sha256", r.body_sha256.clone())
        .field("condition_errors", json!(d.condition_errors))
        .field("decision", r.decision.clone())
        .field("intents", Value::Array(r.intents.clone()))
        .field("method", r.method.clone())
        .field("policy_version", r.policy_version.clone())
        .field("reason", r.reason.clone());
    let ev = match request {
        Some(req) => ev.field("request", req),
        None => ev,
    };
    ev.field("resource", r.resource.clone())
        .field(
            "rule",
            r.rule.clone().map(Value::String).unwrap_or(Value::Null),
        )
        .field("url", r.url.clone())
        .field(
            "would_have",
            json!(d.would_have.iter().map(|w| w.0.clone()).collect::<Vec<_>>()),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_fed_in_parts_are_the_hashes_of_the_joined_text() {
        assert_eq!(sha256_hex(b""), hex::encode(Sha256::digest(b"")));
        let key = retry_key("bot", "POST", "https://h/p?q=1", "ab", "cd");
        assert_eq!(
            key,
            hex::encode(Sha256::digest(b"bot\nPOST\nhttps://h/p?q=1\nab\ncd"))
        );
        let mut headers = http::HeaderMap::new();
        // `a1` sorts before `a` as a line (`1` < `:`), after it as a name.
        for (n, v) in [
            ("a", "x"),
            ("a1", "y"),
            ("b", "z"),
            ("a", "w"),
            ("user-agent", "u"),
        ] {
            headers.append(
                http::HeaderName::from_static(n),
                http::HeaderValue::from_static(v),
            );
        }
        headers.append("c", http::HeaderValue::from_bytes(b"\xff").expect("value"));
        let mut lines: Vec<String> = ["a: x", "a1: y", "b: z", "a: w", "c: \u{fffd}"]
            .map(String::from)
            .to_vec();
        lines.sort();
        assert_eq!(
            headers_sha256(&headers),
            hex::encode(Sha256::digest(lines.join("\n").as_bytes()))
        );
        assert_eq!(headers_sha256(&http::HeaderMap::new()), sha256_hex(b""));
    }
}
