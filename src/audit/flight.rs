//! The terminal guard: a request admitted for forwarding is tracked by a
//! [`Flight`] that writes exactly one ending — `completed`, `failed` or
//! `cancelled` — whether the forward phase finishes, fails, the agent leaves
//! (the future is dropped), or the server shuts down first.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use sudomode_store::{RequestRecord, RowBase};

use super::Recorder;

/// How a forwarded request ended.
#[derive(Debug, Clone)]
pub enum Ending {
    Completed {
        upstream_status: u16,
        duration_ms: f64,
        request_bytes: u64,
    },
    Failed {
        error: String,
        error_type: &'static str,
    },
    Cancelled {
        why: String,
    },
}

impl Ending {
    pub fn kind(&self) -> &'static str {
        match self {
            Ending::Completed { .. } => "completed",
            Ending::Failed { .. } => "failed",
            Ending::Cancelled { .. } => "cancelled",
        }
    }
}

/// The record of a request in flight; whoever takes it writes the ending.
type Cell = Arc<Mutex<Option<RequestRecord>>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Critical sections are a take or an insert; a poisoned lock still holds
    // a consistent value.
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Every request in flight, so shutdown can end them.
#[derive(Default)]
pub(super) struct InFlight {
    next: AtomicU64,
    map: Mutex<HashMap<u64, Cell>>,
}

impl InFlight {
    fn insert(&self, cell: Cell) -> u64 {
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        lock(&self.map).insert(key, cell);
        key
    }

    fn remove(&self, key: u64) {
        lock(&self.map).remove(&key);
    }

    pub(super) fn len(&self) -> usize {
        lock(&self.map).len()
    }

    /// Takes every record still in flight; their guards will write nothing.
    pub(super) fn take_all(&self) -> Vec<RequestRecord> {
        let cells: Vec<Cell> = lock(&self.map).drain().map(|(_, c)| c).collect();
        cells.iter().filter_map(|c| lock(c).take()).collect()
    }
}

/// A request admitted for forwarding (see the module docs).
pub struct Flight {
    recorder: Arc<Recorder>,
    in_flight: Arc<InFlight>,
    cell: Cell,
    key: u64,
    started: Instant,
    /// The record's row as stored with its decision: the ending is stored as it
    /// with the ending fields changed (the record is not changed in between).
    base: Option<RowBase>,
}

impl Flight {
    pub(super) fn new(
        recorder: Arc<Recorder>,
        in_flight: Arc<InFlight>,
        record: RequestRecord,
        base: Option<RowBase>,
    ) -> Self {
        let cell: Cell = Arc::new(Mutex::new(Some(record)));
        let key = in_flight.insert(cell.clone());
        Flight {
            recorder,
            in_flight,
            cell,
            key,
            started: Instant::now(),
            base,
        }
    }

    /// The request's id (the held request's id for an approved or retried call).
    pub fn id(&self) -> String {
        lock(&self.cell)
            .as_ref()
            .map(|r| r.id.clone())
            .unwrap_or_default()
    }

    /// Reads the record being forwarded (e.g. its approved edit).
    pub fn with_record<T>(&self, f: impl FnOnce(&RequestRecord) -> T) -> Option<T> {
        lock(&self.cell).as_ref().map(f)
    }

    /// Milliseconds since the request was admitted.
    pub fn elapsed_ms(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * 1000.0
    }

    /// Writes the ending (once; nothing if shutdown already ended it).
    pub fn end(self, ending: Ending) {
        self.finish(&ending);
    }

    /// Forgets the request without an ending: its decision was never recorded.
    pub(super) fn disarm(self) {
        lock(&self.cell).take();
    }

    fn finish(&self, ending: &Ending) {
        self.in_flight.remove(self.key);
        let record = lock(&self.cell).take();
        if let Some(record) = record {
            self.recorder.end(record, ending, self.base.as_ref());
        }
    }
}

impl Drop for Flight {
    /// The agent went away (its future was dropped) before an ending was written.
    fn drop(&mut self) {
        self.finish(&Ending::Cancelled {
            why: "the agent closed the connection before the upstream's answer was relayed".into(),
        });
    }
}
