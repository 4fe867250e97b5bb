//! Retention (SPEC §11 "Months of traffic"): events older than a cutoff, and
//! the finished requests they describe, move out of the live store into
//! compressed JSON Lines segments under `<store dir>/archive/`:
//! `audit-<first seq>-<last seq>.jsonl.gz` (the canonical event lines, as
//! exported) and `requests-<first seq>-<last seq>.jsonl.gz` (the records).
//! The live chain then gets an `audit.archived` checkpoint naming the segment,
//! its last seq and hash and both files' SHA-256, and starts from that hash,
//! so the archives followed by the live log verify from the first event.
//! Requests still open (pending, or approved with the retry unused) are never
//! moved.
//!
//! The files are written from a read snapshot on the caller's thread; only
//! the removal and the checkpoint go through the writer, in one transaction.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use redb::{ReadableDatabase, ReadableTable};

use serde_json::Value;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::Store;
use crate::chain::ChainVerifier;
use crate::error::StoreError;
use crate::layout::{self, LOG, ROWS};
use crate::model::{NewEvent, VerifyReport};
use crate::query;

/// The checkpoint event's type.
pub const ARCHIVED_EVENT: &str = "audit.archived";

/// What one archive run moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveReport {
    /// Events file name (in the archive directory).
    pub segment: String,
    /// Events moved, and the seq range.
    pub events: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    /// Hash of the last archived event (the live chain's anchor).
    pub last_hash: String,
    /// Requests moved.
    pub requests: u64,
}

/// What the writer removes, and the checkpoint it appends.
pub(crate) struct Prune {
    pub(crate) upto_seq: u64,
    pub(crate) last_hash: String,
    pub(crate) rows: Vec<Vec<u8>>,
    pub(crate) checkpoint: NewEvent,
}

/// A [`Prune`] with its checkpoint prepared for the writer.
pub(crate) struct PreparedPrune {
    pub(crate) upto_seq: u64,
    pub(crate) last_hash: String,
    pub(crate) rows: Vec<Vec<u8>>,
    pub(crate) checkpoint: crate::writer::Prepared,
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The archive directory of a store file.
pub fn archive_dir(store_path: &Path) -> PathBuf {
    store_path
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join("archive")
}

/// Writes `lines` gzip-compressed to `path` (via a temporary file, synced);
/// returns the file's SHA-256.
fn write_segment(path: &Path, lines: &[Vec<u8>]) -> Result<String, StoreError> {
    let tmp = path.with_extension("tmp");
    let file = File::create(&tmp).map_err(io_err(&tmp))?;
    let mut gz = GzEncoder::new(BufWriter::new(file), Compression::default());
    for l in lines {
        gz.write_all(l).map_err(io_err(&tmp))?;
        gz.write_all(b"\n").map_err(io_err(&tmp))?;
    }
    let file = gz
        .finish()
        .map_err(io_err(&tmp))?
        .into_inner()
        .map_err(|e| io_err(&tmp)(e.into_error()))?;
    file.sync_all().map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))?;
    file_sha256(path)
}

/// Hex SHA-256 of a file's bytes.
pub fn file_sha256(path: &Path) -> Result<String, StoreError> {
    let mut f = File::open(path).map_err(io_err(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

impl Store {
    /// The archive directory beside the store file.
    pub fn archive_dir(&self) -> PathBuf {
        archive_dir(self.path())
    }

    /// Moves events older than `cutoff`, and the finished requests whose
    /// events all went with them, into a new archive segment (see the module
    /// docs). `None` when nothing is old enough.
    pub async fn archive_before(
        &self,
        cutoff: OffsetDateTime,
    ) -> Result<Option<ArchiveReport>, StoreError> {
        let store = self.clone();
        let prepared = tokio::task::spawn_blocking(move || store.write_archive(cutoff))
            .await
            .map_err(|e| StoreError::Storage(format!("archive task: {e}")))??;
        let Some((prune, report)) = prepared else {
            return Ok(None);
        };
        self.prune(prune).await?;
        Ok(Some(report))
    }

    /// Writes the segment files from a snapshot; returns what to remove.
    fn write_archive(
        &self,
        cutoff: OffsetDateTime,
    ) -> Result<Option<(Prune, ArchiveReport)>, StoreError> {
        let rtx = self.inner.slot.get()?.begin_read()?;
        let log = rtx.open_table(LOG)?;
        let rows = rtx.open_table(ROWS)?;
        let words = self.words();
        let cutoff_us = (cutoff.unix_timestamp_nanos() / 1000) as i64;
        let mut lines = Vec::new();
        let (mut first, mut last, mut last_hash) = (0, 0, String::new());
        query::each_event(&log, 0, &mut |ev| {
            let t = layout::event_micros(ev.body).map_err(|e| StoreError::corrupt("log", e))?;
            if t >= cutoff_us {
                return Ok(false);
            }
            lines.push(
                layout::render_event(ev, &words, true)
                    .map_err(|e| StoreError::corrupt("log", e))?,
            );
            if first == 0 {
                first = ev.seq;
            }
            last = ev.seq;
            last_hash = hex::encode(
                layout::event_hash_bytes(ev.body).map_err(|e| StoreError::corrupt("log", e))?,
            );
            Ok(true)
        })?;
        if lines.is_empty() {
            return Ok(None);
        }
        let mut records = Vec::new();
        let mut keys = Vec::new();
        for item in rows.iter()? {
            let (k, v) = item?;
            let head = layout::decode_row_head(v.value())
                .map_err(|e| StoreError::corrupt("request_rows", e))?;
            if head.open || head.seqs.last().is_some_and(|s| *s > last) {
                continue;
            }
            let id = layout::id_of_key(k.value());
            let rec = layout::decode_record(v.value(), &words, &id)
                .map_err(|e| StoreError::corrupt("request_rows", e))?;
            if rec.created_at >= cutoff || rec.is_open() {
                continue;
            }
            records.push(serde_json::to_vec(&rec).map_err(|e| StoreError::Invalid(e.to_string()))?);
            keys.push(k.value().to_vec());
        }
        drop((log, rows, words));
        let dir = self.archive_dir();
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let segment = format!("audit-{first:012}-{last:012}.jsonl.gz");
        let requests_file = format!("requests-{first:012}-{last:012}.jsonl.gz");
        let sha = write_segment(&dir.join(&segment), &lines)?;
        let requests_sha = write_segment(&dir.join(&requests_file), &records)?;
        let checkpoint = NewEvent::new(ARCHIVED_EVENT)
            .field("segment", segment.clone())
            .field("first_seq", first)
            .field("last_seq", last)
            .field("last_hash", last_hash.clone())
            .field("events", lines.len() as u64)
            .field("sha256", sha)
            .field("requests_segment", requests_file)
            .field("requests", records.len() as u64)
            .field("requests_sha256", requests_sha)
            .field("cutoff", crate::chain::format_time(cutoff));
        let report = ArchiveReport {
            segment,
            events: lines.len() as u64,
            first_seq: first,
            last_seq: last,
            last_hash: last_hash.clone(),
            requests: keys.len() as u64,
        };
        let prune = Prune {
            upto_seq: last,
            last_hash,
            rows: keys,
            checkpoint,
        };
        Ok(Some((prune, report)))
    }

    /// Recomputes the whole history: every archive segment in order, then the
    /// live log, checking each checkpoint's files against their SHA-256.
    pub fn verify_with_archive(&self) -> Result<VerifyReport, StoreError> {
        let dir = self.archive_dir();
        let mut v = ArchiveVerifier::new(&dir);
        for seg in segments(&dir)? {
            let f = File::open(&seg).map_err(io_err(&seg))?;
            for line in BufReader::new(MultiGzDecoder::new(f)).lines() {
                v.feed_line(&line.map_err(StoreError::Stream)?);
            }
        }
        let rtx = self.inner.slot.get()?.begin_read()?;
        let log = rtx.open_table(LOG)?;
        let words = self.words();
        query::each_event(&log, 0, &mut |ev| {
            let line = layout::render_event(ev, &words, true)
                .map_err(|e| StoreError::corrupt("log", e))?;
            v.feed_line(&String::from_utf8_lossy(&line));
            Ok(true)
        })?;
        Ok(v.finish())
    }
}

/// The events segments in the archive directory, oldest first.
pub fn segments(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_err(dir)(e)),
    };
    for e in entries {
        let p = e.map_err(io_err(dir))?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.starts_with("audit-") && name.ends_with(".jsonl.gz") {
            out.push(p);
        }
    }
    // Names carry zero-padded seqs, so name order is chain order.
    out.sort();
    Ok(out)
}

/// Writes every archived event line to `out`; returns how many.
pub(crate) fn export_archives(
    dir: &Path,
    keep: &dyn Fn(&str) -> bool,
    out: &mut dyn Write,
) -> Result<u64, StoreError> {
    let mut n = 0;
    for seg in segments(dir)? {
        let f = File::open(&seg).map_err(io_err(&seg))?;
        for line in BufReader::new(MultiGzDecoder::new(f)).lines() {
            let line = line.map_err(StoreError::Stream)?;
            if line.trim().is_empty() || !keep(&line) {
                continue;
            }
            out.write_all(line.as_bytes()).map_err(StoreError::Stream)?;
            out.write_all(b"\n").map_err(StoreError::Stream)?;
            n += 1;
        }
    }
    Ok(n)
}

/// Chain verification that also checks each `audit.archived` checkpoint's
/// files against the SHA-256 it names.
pub struct ArchiveVerifier {
    chain: ChainVerifier,
    dir: PathBuf,
    problem: Option<String>,
}

impl ArchiveVerifier {
    /// Verifies from the first event; segment files are looked up in `dir`.
    pub fn new(dir: &Path) -> Self {
        ArchiveVerifier {
            chain: ChainVerifier::new(true),
            dir: dir.to_path_buf(),
            problem: None,
        }
    }

    /// Feeds one event line (blank lines are skipped).
    pub fn feed_line(&mut self, line: &str) {
        if line.trim().is_empty() {
            return;
        }
        self.chain.feed_line(line);
        if line.contains(ARCHIVED_EVENT) && self.problem.is_none() {
            self.problem = self.check_checkpoint(line).err();
        }
    }

    fn check_checkpoint(&self, line: &str) -> Result<(), String> {
        let v: Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
        if v.get("type").and_then(Value::as_str) != Some(ARCHIVED_EVENT) {
            return Ok(());
        }
        for (file, sha) in [
            ("segment", "sha256"),
            ("requests_segment", "requests_sha256"),
        ] {
            let name = v.get(file).and_then(Value::as_str).unwrap_or_default();
            let want = v.get(sha).and_then(Value::as_str).unwrap_or_default();
            if name.contains('/') || name.is_empty() {
                return Err(format!("checkpoint names no valid {file}: {name:?}"));
            }
            let got = file_sha256(&self.dir.join(name))
                .map_err(|e| format!("archive segment {name}: {e}"))?;
            if got != want {
                return Err(format!("archive segment {name} does not match its SHA-256"));
            }
        }
        Ok(())
    }

    /// The report; a checkpoint mismatch makes it fail.
    pub fn finish(self) -> VerifyReport {
        let mut r = self.chain.finish();
        if let Some(p) = self.problem {
            r.ok = false;
            r.problem.get_or_insert(p);
        }
        r
    }
}

/// The `meta` value naming the last archived event.
pub(crate) fn archived_meta(seq: u64, hash: &str) -> Vec<u8> {
    let mut v = seq.to_be_bytes().to_vec();
    let mut h = [0u8; 32];
    // The hash was rendered by this store: 64 hex digits.
    let _ = hex::decode_to_slice(hash, &mut h);
    v.extend_from_slice(&h);
    v
}

/// Inside the writer's transaction: drops the archived events (rewriting a
/// chunk the cut falls inside), the archived rows with their index entries,
/// and records the live chain's new anchor.
pub(crate) fn remove(
    txn: &redb::WriteTransaction,
    p: &PreparedPrune,
    words: &layout::SharedWords,
) -> Result<(), StoreError> {
    let corrupt = |t: &'static str| move |e: crate::codec::CodecError| StoreError::corrupt(t, e);
    let mut log = txn.open_table(LOG)?;
    let mut gone = Vec::new();
    let mut tail: Option<(u64, Vec<u8>)> = None;
    for item in log.range(..=p.upto_seq)? {
        let (k, v) = item?;
        let mut it = layout::ChunkIter::new(k.value(), v.value()).map_err(corrupt("log"))?;
        let mut kept: Option<(u64, Vec<u8>)> = None;
        while let Some(ev) = it.next_event().map_err(corrupt("log"))? {
            if ev.seq <= p.upto_seq {
                continue;
            }
            let (_, bytes) = kept.get_or_insert_with(|| (ev.seq, ev.prev_hash.to_vec()));
            layout::push_event(bytes, ev.body);
        }
        gone.push(k.value());
        if kept.is_some() {
            tail = kept;
        }
    }
    for k in gone {
        log.remove(k)?;
    }
    if let Some((first, bytes)) = tail {
        log.insert(first, bytes.as_slice())?;
    }
    let w = layout::snapshot(words);
    let mut rows = txn.open_table(ROWS)?;
    let mut orphans = txn.open_table(layout::ORPHANS)?;
    let mut postings = crate::index::Changes::default();
    for key in &p.rows {
        let Some(row) = rows.remove(key.as_slice())? else {
            continue;
        };
        let id = layout::id_of_key(key);
        let rec = layout::decode_record(row.value(), &w, &id).map_err(corrupt("request_rows"))?;
        use crate::index::Field;
        postings.remove(Field::Agent, &rec.agent, key);
        postings.remove(Field::Resource, &rec.resource, key);
        postings.remove(Field::Action, &rec.action, key);
        postings.remove(Field::Decision, &rec.decision.to_ascii_uppercase(), key);
        postings.remove(Field::Status, rec.status.as_str(), key);
        let seqs: Vec<u64> = orphans
            .range((id.as_str(), 0)..=(id.as_str(), u64::MAX))?
            .map(|i| i.map(|(k, _)| k.value().1))
            .collect::<Result<_, _>>()?;
        for s in seqs {
            orphans.remove((id.as_str(), s))?;
        }
    }
    postings.apply(&mut txn.open_table(layout::INDEX)?)?;
    txn.open_table(layout::META)?.insert(
        layout::ARCHIVED_HEAD,
        archived_meta(p.upto_seq, &p.last_hash).as_slice(),
    )?;
    Ok(())
}
