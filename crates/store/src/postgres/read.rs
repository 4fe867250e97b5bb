//! Reads from PostgreSQL: records, listings (filtered from the indexes,
//! newest first), open and due requests, audit events, export and chain
//! verification (streamed in pages, never the whole log in memory).

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::LazyLock;
use std::time::Duration;

use time::OffsetDateTime;
use tokio_postgres::types::ToSql;

use super::Postgres;
use super::connect::Failure;
use super::rows::decode;
use crate::chain::ChainVerifier;
use crate::error::StoreError;
use crate::model::{AuditEvent, Filter, RequestRecord, VerifyReport};
use crate::query::page_limit;

/// Events read per round trip by verify and export.
const PAGE: i64 = 5_000;

fn decode_event(line: &str) -> Result<AuditEvent, StoreError> {
    serde_json::from_str(line).map_err(|e| StoreError::corrupt("sudomode_audit", e))
}

fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Postgres {
    /// Rows of `sql` (first column: a record's JSON), decoded.
    async fn records(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<RequestRecord>, StoreError> {
        let rows = self.query(sql, params).await?;
        rows.iter().map(|r| decode(r.get(0))).collect()
    }

    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let run = async {
            let client = self.shared.pool.get().await?;
            let stmt = client.prepare_cached(sql).await?;
            Ok::<_, Failure>(client.query(&stmt, params).await?)
        };
        run.await.map_err(|f| self.shared.error(f))
    }

    pub(crate) async fn get_request(&self, id: &str) -> Result<Option<RequestRecord>, StoreError> {
        if id.contains('\0') {
            return Ok(None);
        }
        let mut v = self
            .records("SELECT record FROM sudomode_requests WHERE id = $1", &[&id])
            .await?;
        Ok(v.pop())
    }

    pub(crate) async fn get_requests(
        &self,
        ids: &[String],
    ) -> Result<Vec<RequestRecord>, StoreError> {
        let ids: Vec<&String> = ids.iter().filter(|i| !i.contains('\0')).collect();
        self.records(
            "SELECT record FROM sudomode_requests WHERE id = ANY($1)",
            &[&ids],
        )
        .await
    }

    pub(crate) async fn list_requests(
        &self,
        filter: &Filter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<(Vec<RequestRecord>, Option<String>), StoreError> {
        let limit = page_limit(limit);
        let status = filter.status.map(|s| s.as_str().to_string());
        let decision = filter.decision.as_ref().map(|d| d.to_ascii_uppercase());
        let mut conds: Vec<String> = Vec::new();
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::new();
        let wanted: [(&str, &str, Option<&(dyn ToSql + Sync)>); 8] = [
            ("status", "=", status.as_ref().map(|v| v as _)),
            ("agent", "=", filter.agent.as_ref().map(|v| v as _)),
            ("resource", "=", filter.resource.as_ref().map(|v| v as _)),
            ("action", "=", filter.action.as_ref().map(|v| v as _)),
            ("decision", "=", decision.as_ref().map(|v| v as _)),
            ("created_at", ">=", filter.since.as_ref().map(|v| v as _)),
            ("created_at", "<", filter.until.as_ref().map(|v| v as _)),
            ("id", "<", cursor.as_ref().map(|v| v as _)),
        ];
        for (column, op, value) in wanted {
            if let Some(v) = value {
                params.push(v);
                conds.push(format!("{column} {op} ${}", params.len()));
            }
        }
        let take = as_i64(limit as u64 + 1);
        params.push(&take);
        let sql = listing_sql(&conds, params.len());
        let mut out = self.records(&sql, &params).await?;
        let next = if out.len() > limit {
            out.truncate(limit);
            out.last().map(|r| r.id.clone())
        } else {
            None
        };
        Ok((out, next))
    }

    pub(crate) async fn events_for_request(&self, id: &str) -> Result<Vec<AuditEvent>, StoreError> {
        if id.contains('\0') {
            return Ok(Vec::new());
        }
        let rows = self
            .query(
                "SELECT line FROM sudomode_audit WHERE request_id = $1 ORDER BY seq",
                &[&id],
            )
            .await?;
        rows.iter().map(|r| decode_event(r.get(0))).collect()
    }

    pub(crate) async fn open_requests(&self) -> Result<Vec<RequestRecord>, StoreError> {
        self.records(
            "SELECT record FROM sudomode_requests WHERE open ORDER BY id",
            &[],
        )
        .await
    }

    pub(crate) async fn find_open(&self, key: &str) -> Result<Option<RequestRecord>, StoreError> {
        let mut v = self
            .records(
                "SELECT record FROM sudomode_requests WHERE open AND retry_key = $1 \
                 ORDER BY id DESC LIMIT 1",
                &[&key],
            )
            .await?;
        Ok(v.pop())
    }

    pub(crate) async fn pending_count(&self, agent: &str) -> Result<usize, StoreError> {
        let rows = self
            .query(
                "SELECT count(*) FROM sudomode_requests WHERE status = 'pending' AND agent = $1",
                &[&agent],
            )
            .await?;
        let n: i64 = rows.first().map_or(0, |r| r.get(0));
        Ok(usize::try_from(n).unwrap_or(0))
    }

    pub(super) async fn count_pending(&self) -> Result<usize, StoreError> {
        let rows = self
            .query(
                "SELECT count(*) FROM sudomode_requests WHERE status = 'pending'",
                &[],
            )
            .await?;
        let n: i64 = rows.first().map_or(0, |r| r.get(0));
        Ok(usize::try_from(n).unwrap_or(0))
    }

    pub(crate) async fn due_for_expiry(
        &self,
        now: OffsetDateTime,
        retry_window: Duration,
    ) -> Result<Vec<RequestRecord>, StoreError> {
        let lapsed = now - retry_window;
        let due = self
            .records(
                "SELECT record FROM sudomode_requests WHERE open AND \
                 ((status = 'pending' AND expires_at <= $1) OR \
                  (status = 'approved' AND approved_at < $2)) \
                 ORDER BY id LIMIT 1000",
                &[&now, &lapsed],
            )
            .await?;
        // The SQL is a pre-filter; the rule is the one every backend uses.
        Ok(due
            .into_iter()
            .filter(|r| crate::open::is_due(r, now, retry_window))
            .collect())
    }

    pub(crate) async fn audit_after(
        &self,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let rows = self
            .query(
                "SELECT line FROM sudomode_audit WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[&as_i64(after_seq), &as_i64(limit as u64)],
            )
            .await?;
        rows.iter().map(|r| decode_event(r.get(0))).collect()
    }

    /// One page of canonical lines after `after`, within the time bounds.
    async fn page(
        &self,
        after: i64,
        since: Option<OffsetDateTime>,
        until: Option<OffsetDateTime>,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        let rows = self
            .query(
                "SELECT seq, line FROM sudomode_audit WHERE seq > $1 \
                 AND ($2::timestamptz IS NULL OR at >= $2) \
                 AND ($3::timestamptz IS NULL OR at < $3) ORDER BY seq LIMIT $4",
                &[&after, &since, &until, &PAGE],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    pub(crate) async fn verify(&self) -> Result<VerifyReport, StoreError> {
        let mut v = ChainVerifier::new(true);
        let mut after = 0;
        loop {
            let page = self.page(after, None, None).await?;
            let Some((last, _)) = page.last() else {
                break;
            };
            after = *last;
            for (_, line) in &page {
                v.feed_line(line);
            }
        }
        Ok(v.finish())
    }

    /// Writes the matching events as JSON Lines (blocking: from the
    /// blocking pool, inside the runtime).
    pub(crate) fn export_blocking(
        &self,
        since: Option<OffsetDateTime>,
        until: Option<OffsetDateTime>,
        out: &mut impl Write,
    ) -> Result<u64, StoreError> {
        let rt = tokio::runtime::Handle::try_current()
            .map_err(|e| StoreError::Storage(format!("export outside the runtime: {e}")))?;
        let mut n = 0;
        let mut after = 0;
        loop {
            let page = rt.block_on(self.page(after, since, until))?;
            let Some((last, _)) = page.last() else {
                break;
            };
            after = *last;
            for (_, line) in &page {
                out.write_all(line.as_bytes()).map_err(StoreError::Stream)?;
                out.write_all(b"\n").map_err(StoreError::Stream)?;
                n += 1;
            }
        }
        out.flush().map_err(StoreError::Stream)?;
        Ok(n)
    }

    pub(crate) async fn counts_by_decision(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        let rows = self.query(&COUNTS_SQL, &[]).await?;
        let mut out: BTreeMap<String, u64> = ["ALLOW", "DENY", "REQUIRE_APPROVAL"]
            .into_iter()
            .map(|d| (d.to_string(), 0))
            .collect();
        for r in rows {
            let n: i64 = r.get(1);
            out.insert(r.get(0), u64::try_from(n).unwrap_or(0));
        }
        Ok(out)
    }
}

/// The two parts of `sudomode_requests` the history filters' indexes split
/// it into (schema.rs: they leave out the rows still 'allowed', in flight,
/// which have an index of their own). A listing or a count reads each part
/// from its own indexes and merges them.
const PARTS: [&str; 2] = ["status <> 'allowed'", "status = 'allowed'"];

/// Requests by decision, counted part by part (see [`PARTS`]).
static COUNTS_SQL: LazyLock<String> = LazyLock::new(|| {
    let [settled, in_flight] = PARTS.map(|part| {
        format!(
            "SELECT decision, count(*) AS n FROM sudomode_requests WHERE {part} GROUP BY decision"
        )
    });
    format!(
        "SELECT decision, sum(n)::bigint FROM ({settled} UNION ALL {in_flight}) AS parts \
         GROUP BY decision"
    )
});

/// A filtered page, newest first, under `conds` (each with its parameter;
/// `$limit` is the page size): the newest of each part (see [`PARTS`]), merged.
fn listing_sql(conds: &[String], limit: usize) -> String {
    let [settled, in_flight] = PARTS.map(|part| {
        let wheres: Vec<&str> = std::iter::once(part)
            .chain(conds.iter().map(String::as_str))
            .collect();
        format!(
            "(SELECT id, record FROM sudomode_requests WHERE {} ORDER BY id DESC LIMIT ${limit})",
            wheres.join(" AND ")
        )
    });
    format!(
        "SELECT record FROM ({settled} UNION ALL {in_flight}) AS page ORDER BY id DESC LIMIT ${limit}"
    )
}
