//! Building request records and decision events, shared by the proxy
//! pipeline and explicit intents (`/v1/govern`).

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sudomode_intent::Intent;
use sudomode_policy::{Decision, Verdict};
use sudomode_store::{NewEvent, RequestRecord, Status};
use time::OffsetDateTime;

/// What a new record is made from.
pub struct Draft<'a> {
    pub id: &'a str,
    pub agent: &'a str,
    pub method: &'a str,
    pub url: &'a str,
    /// The URL exactly as sent, when it may differ from `url`: the retry and
    /// join key binds it (S3 keys are literal).
    pub url_as_sent: Option<&'a str>,
    pub intents: &'a [Intent],
    pub decision: &'a Decision,
    pub policy_version: &'a str,
    pub body: &'a [u8],
    /// Request headers that travel upstream (None for explicit intents).
    pub headers: Option<&'a http::HeaderMap>,
    /// Approval window when the decision is REQUIRE_APPROVAL.
    pub hold_timeout: std::time::Duration,
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Identity of "the same request" for joining and retries (SPEC §6): agent,
/// method, URL exactly as sent, body hash — and the headers that reach the
/// upstream, because they change what it executes (`Stripe-Account`).
pub fn retry_key(
    agent: &str,
    method: &str,
    url: &str,
    body_sha256: &str,
    headers_sha256: &str,
) -> String {
    sha256_hex(format!("{agent}\n{method}\n{url}\n{body_sha256}\n{headers_sha256}").as_bytes())
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
    let mut lines: Vec<String> = headers
        .iter()
        .filter(|(n, _)| !VOLATILE_HEADERS.contains(&n.as_str()))
        .map(|(n, v)| format!("{}: {}", n.as_str(), String::from_utf8_lossy(v.as_bytes())))
        .collect();
    lines.sort();
    sha256_hex(lines.join("\n").as_bytes())
}

pub fn new_record(d: &Draft<'_>) -> RequestRecord {
    let now = OffsetDateTime::now_utc();
    let idx = d
        .decision
        .intent_index
        .min(d.intents.len().saturating_sub(1));
    let intent = d.intents.get(idx);
    let body_sha256 = sha256_hex(d.body);
    let status = match d.decision.verdict {
        Verdict::Allow => Status::Allowed,
        Verdict::Deny => Status::Denied,
        Verdict::RequireApproval => Status::Pending,
    };
    let window = d.decision.timeout.unwrap_or(d.hold_timeout);
    RequestRecord {
        id: d.id.to_string(),
        created_at: now,
        agent: d.agent.to_string(),
        method: d.method.to_string(),
        url: d.url.to_string(),
        resource: intent.map(|i| i.resource.clone()).unwrap_or_default(),
        action: intent.map(|i| i.action.clone()).unwrap_or_default(),
        args: intent
            .map(|i| i.args.clone())
            .unwrap_or(Value::Object(Default::default())),
        decision: d.decision.verdict.as_str().to_string(),
        rule: d.decision.rule.as_ref().map(|r| r.0.clone()),
        reason: d.decision.reason.clone(),
        status,
        required_approvals: d.decision.approvals.max(1),
        approvals: vec![],
        rejected_by: None,
        rejected_reason: None,
        expires_at: (status == Status::Pending)
            .then(|| now + time::Duration::try_from(window).unwrap_or(time::Duration::minutes(10))),
        upstream_status: None,
        completed_at: None,
        intents: d.intents.iter().map(Intent::to_json).collect(),
        retry_key: retry_key(
            d.agent,
            d.method,
            d.url_as_sent.unwrap_or(d.url),
            &body_sha256,
            &d.headers.map(headers_sha256).unwrap_or_default(),
        ),
        body_sha256,
        policy_version: d.policy_version.to_string(),
        retry_grant_used: false,
    }
}

/// `request.decided`: intent(s), decision, rule, reason, policy version,
/// condition errors and report-mode matches.
pub fn decided_event(r: &RequestRecord, d: &Decision, request: Option<Value>) -> NewEvent {
    let mut e = NewEvent::new("request.decided")
        .request(r.id.clone())
        .agent(r.agent.clone())
        .field("method", r.method.clone())
        .field("url", r.url.clone())
        .field("resource", r.resource.clone())
        .field("action", r.action.clone())
        .field("args", r.args.clone())
        .field("intents", Value::Array(r.intents.clone()))
        .field("decision", r.decision.clone())
        .field(
            "rule",
            r.rule.clone().map(Value::String).unwrap_or(Value::Null),
        )
        .field("reason", r.reason.clone())
        .field("policy_version", r.policy_version.clone())
        .field("body_sha256", r.body_sha256.clone())
        .field("condition_errors", json!(d.condition_errors))
        .field(
            "would_have",
            json!(d.would_have.iter().map(|w| w.0.clone()).collect::<Vec<_>>()),
        );
    if let Some(req) = request {
        e = e.field("request", req);
    }
    e
}
