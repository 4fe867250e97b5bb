//! Types stored and returned by the store: request records (SPEC §8), audit events (SPEC §11),
//! batches, filters, options and reports.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::fields::Fields;

/// Lifecycle state of a request (SPEC §6). Lower-case in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// ALLOW decision, not yet forwarded / finished.
    Allowed,
    /// DENY decision (final).
    Denied,
    /// Held for approval.
    Pending,
    /// Approved by enough operators.
    Approved,
    /// Rejected by an operator (final).
    Rejected,
    /// The approval window ended (final).
    Expired,
    /// Cancelled (final).
    Cancelled,
    /// Forwarded; upstream answered (final).
    Completed,
    /// Forwarding failed (final).
    Failed,
}

impl Status {
    /// Every status, in declaration order.
    pub const ALL: [Status; 9] = [
        Status::Allowed,
        Status::Denied,
        Status::Pending,
        Status::Approved,
        Status::Rejected,
        Status::Expired,
        Status::Cancelled,
        Status::Completed,
        Status::Failed,
    ];

    /// Lower-case name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Allowed => "allowed",
            Status::Denied => "denied",
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Rejected => "rejected",
            Status::Expired => "expired",
            Status::Cancelled => "cancelled",
            Status::Completed => "completed",
            Status::Failed => "failed",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = String;
    /// Case-insensitive (the SDK-compatible `/v1` routes use upper case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown status {s:?}"))
    }
}

/// One operator's approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    /// Operator name.
    pub operator: String,
    /// When they approved.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Optional reason they gave.
    #[serde(default)]
    pub reason: Option<String>,
    /// The standing grant (SPEC §6.1) this approval also made, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
}

/// The SPEC §8 Request object plus the fields SudoMode needs internally.
///
/// Ids should come from [`crate::new_request_id`] (UUIDv7): the requests table is keyed by id
/// and listed in descending key order, which is newest first for UUIDv7 ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Request id (UUIDv7 string).
    pub id: String,
    /// When the request arrived (RFC3339 UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Agent name.
    pub agent: String,
    /// HTTP method (or the explicit-intent pseudo method).
    pub method: String,
    /// Normalised URL.
    pub url: String,
    /// Request headers that change what the upstream executes
    /// (`stripe-account`, `idempotency-key`, `prefer`), lower-case names.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub headers: std::collections::BTreeMap<String, String>,
    /// Primary intent resource.
    pub resource: String,
    /// Primary intent action.
    pub action: String,
    /// Primary intent arguments.
    pub args: Value,
    /// `ALLOW`, `DENY` or `REQUIRE_APPROVAL`.
    pub decision: String,
    /// Matched rule, if any.
    pub rule: Option<String>,
    /// Human-readable reason for the decision.
    pub reason: String,
    /// Lifecycle state.
    pub status: Status,
    /// Distinct approvals needed.
    pub required_approvals: u32,
    /// Approvals so far.
    #[serde(default)]
    pub approvals: Vec<Approval>,
    /// Operator who rejected it.
    #[serde(default)]
    pub rejected_by: Option<String>,
    /// Their reason.
    #[serde(default)]
    pub rejected_reason: Option<String>,
    /// End of the approval window.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// Upstream HTTP status once forwarded.
    #[serde(default)]
    pub upstream_status: Option<u16>,
    /// When it reached a final state after forwarding.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub completed_at: Option<OffsetDateTime>,
    /// Every intent (several for multi-statement SQL).
    #[serde(default)]
    pub intents: Vec<Value>,
    /// Hash of agent + method + normalised URL + body hash (computed by the caller); identical
    /// retries join the held request through it.
    #[serde(default)]
    pub retry_key: String,
    /// Hex SHA-256 of the request body the operator saw.
    #[serde(default)]
    pub body_sha256: String,
    /// Version (SHA-256) of the policy that decided.
    #[serde(default)]
    pub policy_version: String,
    /// The single retry an approval grants has been used.
    #[serde(default)]
    pub retry_grant_used: bool,
    /// An explicit intent (`/v1/govern`): there is nothing to forward.
    #[serde(default)]
    pub explicit: bool,
    /// The standing grant that allowed it (SPEC §6.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<String>,
    /// Approving it may also make a standing grant: a REQUIRE_APPROVAL whose
    /// rule is `grantable` and needs one approver.
    #[serde(default, skip_serializing_if = "is_false")]
    pub grantable: bool,
    /// The arguments as an operator edited them (SPEC §6.2); `args` keeps
    /// the proposed ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_args: Option<Value>,
    /// Approved with edits: what is forwarded is the edited request.
    #[serde(default, skip_serializing_if = "is_false")]
    pub edited: bool,
    /// The edits approved, and the edited body's hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edit: Option<EditRecord>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// An approval's edits (SPEC §6.2): the JSON merge patch over `args` and the
/// SHA-256 of the body it makes, which is exactly what is forwarded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EditRecord {
    pub patch: Value,
    pub body_sha256: String,
}

impl RequestRecord {
    /// An explicit intent. Records written before the `explicit` field existed
    /// carry the pseudo method `GOVERN` instead.
    pub fn is_explicit(&self) -> bool {
        self.explicit || self.method == "GOVERN"
    }

    /// Pending, or approved with its retry grant still unused: what restart recovery reloads.
    pub fn is_open(&self) -> bool {
        match self.status {
            Status::Pending => true,
            Status::Approved => !self.retry_grant_used,
            _ => false,
        }
    }
}

/// An audit event as handed to the store; the writer assigns `seq`, `time`, `prev_hash`, `hash`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    /// Event type, e.g. `request.decided`.
    pub kind: String,
    /// Request concerned, if any.
    pub request_id: Option<String>,
    /// Agent concerned, if any.
    pub agent: Option<String>,
    /// Operator concerned, if any.
    pub operator: Option<String>,
    /// Type-specific fields, flattened into the event. Must not use the reserved names
    /// `seq`, `time`, `type`, `request_id`, `agent`, `operator`, `prev_hash`, `hash`.
    pub fields: Fields,
}

impl NewEvent {
    /// An event of `kind` with no subject and no fields.
    pub fn new(kind: impl Into<String>) -> Self {
        NewEvent {
            kind: kind.into(),
            ..NewEvent::default()
        }
    }

    /// Sets `request_id`.
    pub fn request(mut self, id: impl Into<String>) -> Self {
        self.request_id = Some(id.into());
        self
    }

    /// Sets `agent`.
    pub fn agent(mut self, agent: impl Into<String>) -> Self {
        self.agent = Some(agent.into());
        self
    }

    /// Sets `operator`.
    pub fn operator(mut self, operator: impl Into<String>) -> Self {
        self.operator = Some(operator.into());
        self
    }

    /// Adds a type-specific field.
    pub fn field(mut self, name: impl Into<Cow<'static, str>>, value: impl Into<Value>) -> Self {
        self.fields.insert(name.into(), value.into());
        self
    }
}

/// A stored audit event, exactly as exported (one JSON line each).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Sequence number, from 1, without gaps.
    pub seq: u64,
    /// When the writer recorded it (RFC3339 UTC, sub-second precision).
    pub time: String,
    /// Event type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Request concerned (`null` when none).
    pub request_id: Option<String>,
    /// Agent concerned (`null` when none).
    pub agent: Option<String>,
    /// Operator concerned (`null` when none).
    pub operator: Option<String>,
    /// Type-specific fields.
    #[serde(flatten)]
    pub fields: Map<String, Value>,
    /// Hash of the previous event (64 zeros for the first).
    pub prev_hash: String,
    /// Hex SHA-256 of the canonical JSON of this event without `hash`.
    pub hash: String,
}

/// What one `commit` writes atomically: audit events (in order) and request upserts
/// (whole-record replace, keyed by id).
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// Events to append.
    pub events: Vec<NewEvent>,
    /// Records to insert or replace.
    pub upserts: Vec<RequestRecord>,
}

impl Batch {
    /// A batch of one event and one upsert (the common "request decided" shape).
    pub fn one(event: NewEvent, record: RequestRecord) -> Self {
        Batch {
            events: vec![event],
            upserts: vec![record],
        }
    }

    /// A batch of events only.
    pub fn events(events: Vec<NewEvent>) -> Self {
        Batch {
            events,
            upserts: Vec::new(),
        }
    }

    /// True when it writes nothing.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.upserts.is_empty()
    }
}

/// Result of a durable commit.
#[derive(Debug, Clone, Default)]
pub struct Committed {
    /// Sequence numbers assigned to the batch's events, in order.
    pub seqs: Vec<u64>,
    /// The events as stored (with time and hashes), in order.
    pub events: Vec<AuditEvent>,
}

/// How the writer makes commits durable (SPEC §11 `audit.durability`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Durability {
    /// Every group commit is fsync'd (`commit_batched` callers just don't wait for it).
    #[default]
    Strict,
    /// Groups holding only `commit_batched` work are committed without fsync and made durable
    /// by a flush within `StoreOptions::flush_interval`; any `commit` (strict) group fsyncs
    /// everything before it.
    Batched,
}

/// Options for [`crate::Store::open`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Durability mode.
    pub durability: Durability,
    /// Longest time batched work stays un-fsync'd (default 20 ms; SPEC allows 50 ms).
    pub flush_interval: Duration,
    /// Capacity of the writer queue, in batches; a full queue makes callers wait.
    pub queue_capacity: usize,
    /// Most batches folded into one redb transaction.
    pub max_group: usize,
    /// Secret values that must never be written (see [`crate::Store::set_secrets`]).
    pub secrets: Vec<String>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            durability: Durability::Strict,
            flush_interval: Duration::from_millis(20),
            queue_capacity: 4096,
            max_group: 1024,
            secrets: Vec::new(),
        }
    }
}

/// Filter for [`crate::Store::list_requests`]; `None` fields match everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Exact status.
    pub status: Option<Status>,
    /// Exact agent.
    pub agent: Option<String>,
    /// Exact resource.
    pub resource: Option<String>,
    /// Exact action.
    pub action: Option<String>,
    /// Exact decision (`ALLOW`, …; compared case-insensitively).
    pub decision: Option<String>,
    /// `created_at >= since`.
    pub since: Option<OffsetDateTime>,
    /// `created_at < until`.
    pub until: Option<OffsetDateTime>,
}

impl Filter {
    /// Whether `r` passes the filter.
    pub fn matches(&self, r: &RequestRecord) -> bool {
        self.status.is_none_or(|s| s == r.status)
            && self.agent.as_deref().is_none_or(|a| a == r.agent)
            && self.resource.as_deref().is_none_or(|x| x == r.resource)
            && self.action.as_deref().is_none_or(|x| x == r.action)
            && self
                .decision
                .as_deref()
                .is_none_or(|d| d.eq_ignore_ascii_case(&r.decision))
            && self.since.is_none_or(|t| r.created_at >= t)
            && self.until.is_none_or(|t| r.created_at < t)
    }
}

/// Counters for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// redb write transactions committed by the writer (durable or not).
    pub commits: u64,
    /// Of those, commits that were fsync'd (`Durability::Immediate`), flushes included.
    pub fsyncs: u64,
    /// Batches handed to the writer and committed.
    pub batches: u64,
    /// Audit events appended.
    pub events: u64,
    /// Request records written.
    pub upserts: u64,
    /// Group commits that failed.
    pub failed_commits: u64,
    /// Times the store was reopened after a fault.
    pub recoveries: u64,
}

/// Outcome of verifying the hash chain (SPEC §8 `/api/v1/audit/verify`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Every hash and link checked out.
    pub ok: bool,
    /// Events examined (all of them, including any after the first bad one).
    pub events: u64,
    /// `hash` of the last event (64 zeros when there are none).
    pub head_hash: String,
    /// First sequence number that fails: a tampered event, a broken `prev_hash` link, or the
    /// first missing number when events were deleted.
    pub first_bad_seq: Option<u64>,
    /// What failed first, for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}
