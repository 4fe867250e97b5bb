//! Reads: requests, listings, audit events, export and chain verification.
//!
//! Every method opens one redb read transaction, so it sees a consistent snapshot that
//! includes every commit that had resolved when it started. They are synchronous and cheap
//! except `export` and `verify`, which scan the whole log (use `spawn_blocking` for those).

use std::collections::BTreeMap;
use std::io::{BufRead, Write};

use redb::{ReadOnlyTable, ReadableDatabase, ReadableTable};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::chain::{ChainVerifier, GENESIS_HASH};
use crate::error::StoreError;
use crate::model::{AuditEvent, Filter, RequestRecord, Status, VerifyReport};
use crate::writer::{decision_key, status_key};
use crate::{COUNTS, EVENTS, EVENTS_BY_REQUEST, OPEN_REQUESTS, REQUESTS, Store};

/// Largest page `list_requests` returns.
pub const MAX_LIMIT: usize = 500;
/// Page size when the caller passes 0.
pub const DEFAULT_LIMIT: usize = 50;

fn decode_record(s: &str) -> Result<RequestRecord, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::corrupt("requests", e))
}

fn decode_event(s: &str) -> Result<AuditEvent, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::corrupt("audit_events", e))
}

fn get_record(
    t: &ReadOnlyTable<&str, &str>,
    id: &str,
) -> Result<Option<RequestRecord>, StoreError> {
    match t.get(id)? {
        Some(g) => decode_record(g.value()).map(Some),
        None => Ok(None),
    }
}

impl Store {
    /// One request record.
    pub fn get_request(&self, id: &str) -> Result<Option<RequestRecord>, StoreError> {
        let rtx = self.inner.slot.get()?.begin_read()?;
        get_record(&rtx.open_table(REQUESTS)?, id)
    }

    /// Requests matching `filter`, newest first (descending id), at most `limit` (0 → 50,
    /// capped at 500), starting after `cursor` (the `next_cursor` of the previous page).
    /// Returns the page and the cursor of the next one, `None` at the end.
    pub fn list_requests(
        &self,
        filter: &Filter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<(Vec<RequestRecord>, Option<String>), StoreError> {
        let limit = match limit {
            0 => DEFAULT_LIMIT,
            n => n.min(MAX_LIMIT),
        };
        let rtx = self.inner.slot.get()?.begin_read()?;
        let requests = rtx.open_table(REQUESTS)?;
        let mut out = Vec::new();
        let mut more = false;
        let mut take = |rec: RequestRecord| {
            if !filter.matches(&rec) {
                return true;
            }
            if out.len() == limit {
                more = true;
                return false;
            }
            out.push(rec);
            true
        };
        if filter.status == Some(Status::Pending) {
            // Pending requests are all in the small open index.
            let open = rtx.open_table(OPEN_REQUESTS)?;
            let range = match cursor {
                Some(c) => open.range::<&str>(..c)?,
                None => open.range::<&str>(..)?,
            };
            for item in range.rev() {
                let (k, _) = item?;
                if let Some(rec) = get_record(&requests, k.value())?
                    && !take(rec)
                {
                    break;
                }
            }
        } else {
            let range = match cursor {
                Some(c) => requests.range::<&str>(..c)?,
                None => requests.range::<&str>(..)?,
            };
            for item in range.rev() {
                let (_, v) = item?;
                if !take(decode_record(v.value())?) {
                    break;
                }
            }
        }
        let next = if more {
            out.last().map(|r| r.id.clone())
        } else {
            None
        };
        Ok((out, next))
    }

    /// Requests that are pending, or approved with their retry grant unused (restart
    /// recovery), oldest first.
    pub fn pending_requests(&self) -> Result<Vec<RequestRecord>, StoreError> {
        let rtx = self.inner.slot.get()?.begin_read()?;
        let requests = rtx.open_table(REQUESTS)?;
        let open = rtx.open_table(OPEN_REQUESTS)?;
        let mut out = Vec::new();
        for item in open.iter()? {
            let (k, _) = item?;
            if let Some(rec) = get_record(&requests, k.value())?
                && rec.is_open()
            {
                out.push(rec);
            }
        }
        Ok(out)
    }

    /// The newest open request (see [`Store::pending_requests`]) with this retry key.
    pub fn find_open_by_retry_key(&self, key: &str) -> Result<Option<RequestRecord>, StoreError> {
        let rtx = self.inner.slot.get()?.begin_read()?;
        let requests = rtx.open_table(REQUESTS)?;
        let open = rtx.open_table(OPEN_REQUESTS)?;
        for item in open.iter()?.rev() {
            let (k, _) = item?;
            if let Some(rec) = get_record(&requests, k.value())?
                && rec.retry_key == key
            {
                return Ok(Some(rec));
            }
        }
        Ok(None)
    }

    /// Number of requests per status (every status present, zeros included).
    pub fn counts_by_status(&self) -> Result<BTreeMap<Status, u64>, StoreError> {
        let rtx = self.inner.slot.get()?.begin_read()?;
        let counts = rtx.open_table(COUNTS)?;
        let mut out = BTreeMap::new();
        for s in Status::ALL {
            let n = counts
                .get(status_key(s.as_str()).as_str())?
                .map_or(0, |g| g.value());
            out.insert(s, n);
        }
        Ok(out)
    }

    /// Number of requests per decision (`ALLOW`, `DENY`, `REQUIRE_APPROVAL` always present).
    pub fn counts_by_decision(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        let rtx = self.inner.slot.get()?.begin_read()?;
        let counts = rtx.open_table(COUNTS)?;
        let mut out: BTreeMap<String, u64> = ["ALLOW", "DENY", "REQUIRE_APPROVAL"]
            .into_iter()
            .map(|d| (d.to_string(), 0))
            .collect();
        let prefix = decision_key("");
        for item in counts.range::<&str>(prefix.as_str()..)? {
            let (k, v) = item?;
            let Some(d) = k.value().strip_prefix(prefix.as_str()) else {
                break;
            };
            out.insert(d.to_string(), v.value());
        }
        Ok(out)
    }

    /// Audit events of one request, in seq order.
    pub fn events_for_request(&self, id: &str) -> Result<Vec<AuditEvent>, StoreError> {
        let rtx = self.inner.slot.get()?.begin_read()?;
        let index = rtx.open_table(EVENTS_BY_REQUEST)?;
        let events = rtx.open_table(EVENTS)?;
        let mut out = Vec::new();
        for item in index.range((id, 0)..=(id, u64::MAX))? {
            let (k, _) = item?;
            let (_, seq) = k.value();
            if let Some(g) = events.get(seq)? {
                out.push(decode_event(g.value())?);
            }
        }
        Ok(out)
    }

    /// Up to `limit` events with `seq > after_seq`, in seq order.
    pub fn audit_after(&self, after_seq: u64, limit: usize) -> Result<Vec<AuditEvent>, StoreError> {
        let rtx = self.inner.slot.get()?.begin_read()?;
        let events = rtx.open_table(EVENTS)?;
        let mut out = Vec::new();
        let Some(start) = after_seq.checked_add(1) else {
            return Ok(out);
        };
        for item in events.range(start..)?.take(limit) {
            let (_, v) = item?;
            out.push(decode_event(v.value())?);
        }
        Ok(out)
    }

    /// One event by seq.
    pub fn event(&self, seq: u64) -> Result<Option<AuditEvent>, StoreError> {
        let rtx = self.inner.slot.get()?.begin_read()?;
        let events = rtx.open_table(EVENTS)?;
        match events.get(seq)? {
            Some(g) => decode_event(g.value()).map(Some),
            None => Ok(None),
        }
    }

    /// The last committed event's seq and hash (0 and 64 zeros when empty).
    pub fn head(&self) -> Result<(u64, String), StoreError> {
        let rtx = self.inner.slot.get()?.begin_read()?;
        let events = rtx.open_table(EVENTS)?;
        match events.last()? {
            Some((k, v)) => Ok((k.value(), decode_event(v.value())?.hash)),
            None => Ok((0, GENESIS_HASH.to_string())),
        }
    }

    /// Writes events with `since <= time < until` as JSON Lines (the stored canonical lines,
    /// `hash` included); returns how many. A full export (no bounds) verifies with
    /// [`verify_lines`]; a bounded one with [`verify_lines_partial`].
    pub fn export(
        &self,
        since: Option<OffsetDateTime>,
        until: Option<OffsetDateTime>,
        out: &mut impl Write,
    ) -> Result<u64, StoreError> {
        let rtx = self.inner.slot.get()?.begin_read()?;
        let events = rtx.open_table(EVENTS)?;
        let mut n = 0;
        for item in events.iter()? {
            let (_, v) = item?;
            let line = v.value();
            if since.is_some() || until.is_some() {
                let t = event_time(line)?;
                if since.is_some_and(|s| t < s) {
                    continue;
                }
                if until.is_some_and(|u| t >= u) {
                    break; // times never decrease along the chain
                }
            }
            out.write_all(line.as_bytes()).map_err(StoreError::Stream)?;
            out.write_all(b"\n").map_err(StoreError::Stream)?;
            n += 1;
        }
        out.flush().map_err(StoreError::Stream)?;
        Ok(n)
    }

    /// Recomputes every hash and link of the stored chain.
    pub fn verify(&self) -> Result<VerifyReport, StoreError> {
        let rtx = self.inner.slot.get()?.begin_read()?;
        let events = rtx.open_table(EVENTS)?;
        let mut v = ChainVerifier::new(true);
        for item in events.iter()? {
            let (_, line) = item?;
            v.feed_line(line.value());
        }
        Ok(v.finish())
    }
}

fn event_time(line: &str) -> Result<OffsetDateTime, StoreError> {
    let v: Value =
        serde_json::from_str(line).map_err(|e| StoreError::corrupt("audit_events", e))?;
    let t = v.get("time").and_then(Value::as_str).unwrap_or_default();
    OffsetDateTime::parse(t, &Rfc3339).map_err(|e| StoreError::corrupt("audit_events", e))
}

fn verify_stream(reader: impl BufRead, from_genesis: bool) -> Result<VerifyReport, StoreError> {
    let mut v = ChainVerifier::new(from_genesis);
    for line in reader.lines() {
        let line = line.map_err(StoreError::Stream)?;
        if line.trim().is_empty() {
            continue;
        }
        v.feed_line(&line);
    }
    Ok(v.finish())
}

/// Verifies an exported JSON Lines stream holding the whole log (it must start at seq 1).
/// Blank lines are ignored. Deleting events at the end cannot be detected from the lines
/// alone: compare `head_hash` with a copy kept elsewhere.
pub fn verify_lines(reader: impl BufRead) -> Result<VerifyReport, StoreError> {
    verify_stream(reader, true)
}

/// Like [`verify_lines`] for a partial export (`--since`): the first event's seq and
/// `prev_hash` are taken on trust as the anchor.
pub fn verify_lines_partial(reader: impl BufRead) -> Result<VerifyReport, StoreError> {
    verify_stream(reader, false)
}
