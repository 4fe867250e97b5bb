//! How records and events sit in PostgreSQL: a request row keeps the JSON
//! of the record as stored plus the columns the indexes and the conditional
//! updates need; an audit row keeps the event's canonical line.

use std::sync::LazyLock;

use time::OffsetDateTime;
use tokio_postgres::types::ToSql;

use crate::model::RequestRecord;
use crate::open::approved_at;

/// Columns of `sudomode_requests`, in insert order.
const REQUEST_COLUMNS: &str = "id, created_at, agent, status, decision, resource, \
     action, retry_key, expires_at, approved_at, open, record";

/// What an upsert of a changed request sets.
const REQUEST_UPDATE: &str = "status = EXCLUDED.status, decision = EXCLUDED.decision, \
     expires_at = EXCLUDED.expires_at, approved_at = EXCLUDED.approved_at, \
     open = EXCLUDED.open, record = EXCLUDED.record";

/// One request row.
pub(super) struct RequestRow {
    pub(super) id: String,
    created_at: OffsetDateTime,
    agent: String,
    status: String,
    decision: String,
    resource: String,
    action: String,
    retry_key: String,
    expires_at: Option<OffsetDateTime>,
    approved_at: Option<OffsetDateTime>,
    open: bool,
    record: String,
    /// A held request (the registries of other replicas follow these).
    pub(super) held: bool,
}

impl RequestRow {
    /// `json` is the record's stored JSON.
    pub(super) fn new(rec: &RequestRecord, json: String) -> Self {
        RequestRow {
            id: text(&rec.id),
            created_at: rec.created_at,
            agent: text(&rec.agent),
            status: rec.status.as_str().to_string(),
            decision: text(&rec.decision),
            resource: text(&rec.resource),
            action: text(&rec.action),
            retry_key: text(&rec.retry_key),
            expires_at: rec.expires_at,
            approved_at: approved_at(rec),
            open: rec.is_open(),
            record: json,
            held: rec.decision == "REQUIRE_APPROVAL",
        }
    }

    pub(super) fn retry_key(&self) -> &str {
        &self.retry_key
    }

    /// The row's values as statement parameters.
    pub(super) fn params(&self) -> [&(dyn ToSql + Sync); 12] {
        [
            &self.id,
            &self.created_at,
            &self.agent,
            &self.status,
            &self.decision,
            &self.resource,
            &self.action,
            &self.retry_key,
            &self.expires_at,
            &self.approved_at,
            &self.open,
            &self.record,
        ]
    }
}

/// Many request rows as one array per column, for one `unnest` upsert.
#[derive(Default)]
pub(super) struct RequestColumns {
    id: Vec<String>,
    created_at: Vec<OffsetDateTime>,
    agent: Vec<String>,
    status: Vec<String>,
    decision: Vec<String>,
    resource: Vec<String>,
    action: Vec<String>,
    retry_key: Vec<String>,
    expires_at: Vec<Option<OffsetDateTime>>,
    approved_at: Vec<Option<OffsetDateTime>>,
    open: Vec<bool>,
    record: Vec<String>,
}

impl RequestColumns {
    pub(super) fn push(&mut self, r: &RequestRow) {
        self.id.push(r.id.clone());
        self.created_at.push(r.created_at);
        self.agent.push(r.agent.clone());
        self.status.push(r.status.clone());
        self.decision.push(r.decision.clone());
        self.resource.push(r.resource.clone());
        self.action.push(r.action.clone());
        self.retry_key.push(r.retry_key.clone());
        self.expires_at.push(r.expires_at);
        self.approved_at.push(r.approved_at);
        self.open.push(r.open);
        self.record.push(r.record.clone());
    }

    pub(super) fn is_empty(&self) -> bool {
        self.id.is_empty()
    }

    pub(super) fn params(&self) -> [&(dyn ToSql + Sync); 12] {
        [
            &self.id,
            &self.created_at,
            &self.agent,
            &self.status,
            &self.decision,
            &self.resource,
            &self.action,
            &self.retry_key,
            &self.expires_at,
            &self.approved_at,
            &self.open,
            &self.record,
        ]
    }
}

/// The upsert of [`RequestColumns`] (built once: the writer prepares it per group).
pub(super) static UPSERT_MANY_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO sudomode_requests ({REQUEST_COLUMNS}) \
         SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], \
         $5::text[], $6::text[], $7::text[], $8::text[], $9::timestamptz[], \
         $10::timestamptz[], $11::bool[], $12::text[]) \
         ON CONFLICT (id) DO UPDATE SET {REQUEST_UPDATE}"
    )
});

/// The upsert of one [`RequestRow`].
pub(super) static UPSERT_ONE_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO sudomode_requests ({REQUEST_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (id) DO UPDATE SET {REQUEST_UPDATE}"
    )
});

/// The insert of one held [`RequestRow`], unless an identical request (same
/// retry key) is pending already.
pub(super) static PARK_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO sudomode_requests ({REQUEST_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (retry_key) WHERE status = 'pending' DO NOTHING"
    )
});

/// Decodes a stored record.
pub(super) fn decode(json: &str) -> Result<RequestRecord, crate::StoreError> {
    serde_json::from_str(json).map_err(|e| crate::StoreError::corrupt("sudomode_requests", e))
}

/// A column value PostgreSQL accepts: text may not contain NUL, which an
/// agent could put in its name to make every commit of a group fail. The
/// record's JSON keeps the exact value.
fn text(s: &str) -> String {
    if s.contains('\0') {
        s.replace('\0', "\u{FFFD}")
    } else {
        s.to_string()
    }
}
