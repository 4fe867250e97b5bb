//! The PostgreSQL backend (`store.postgres`, SPEC §15): several replicas
//! share request records, held requests, the retry grant and one audit
//! chain. Writes go through this replica's group commit (`writer`) or, for
//! the conditional updates of held requests, one transaction each (`ops`);
//! both append to the chain under its head lock (`append`). Other replicas'
//! changes arrive by LISTEN/NOTIFY (`listen`), and so do the questions only
//! the replica where a call waits can answer (`peers`). Faults: see `writer`.

mod append;
mod connect;
mod grants;
mod listen;
mod ops;
mod peers;
mod read;
mod rows;
mod schema;
mod writer;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};

use crate::chain::Redactor;
use crate::error::StoreError;
use crate::model::{Batch, RequestRecord, Stats, StoreOptions};
use crate::storage::Feeds;
use crate::{Submitted, prepare_events, prepare_records, stored_view};

use connect::Failure;
use rows::RequestRow;
use writer::{Msg, PgBatch, Writer};

pub use peers::PeerAsk;

/// Handle to the PostgreSQL store; cheap to clone.
#[derive(Clone)]
pub struct Postgres {
    shared: Arc<Shared>,
}

/// What the writer, the listener and the request paths share.
pub(crate) struct Shared {
    pool: Pool,
    target: connect::Target,
    redactor: Redactor,
    /// Hides the connection string's secrets in any message (defence in
    /// depth: the driver's messages do not quote it).
    scrubber: Redactor,
    fault: Mutex<Option<String>>,
    /// Wakes the writer when a fault is reported (it probes and recovers).
    faulted: tokio::sync::Notify,
    stats: crate::stats::Counters,
    pending_total: AtomicUsize,
    /// This process, in NOTIFY payloads (so it skips its own).
    replica: String,
    feeds: Arc<Feeds>,
    /// This replica's asks to the others, waiting for an answer.
    waiting: peers::Waiting,
    tx: mpsc::UnboundedSender<Msg>,
    permits: Arc<Semaphore>,
    stop: watch::Sender<bool>,
}

impl Shared {
    fn fault(&self) -> Option<String> {
        self.fault
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A failure of any path: when the database is away, the store is
    /// faulted until the writer's probe succeeds.
    fn report(&self, f: &Failure) {
        if !f.fault {
            return;
        }
        let mut fault = self.fault.lock().unwrap_or_else(PoisonError::into_inner);
        if fault.is_none() {
            let why = self.scrub(&f.message);
            tracing::error!(error = %why, "audit store fault: refusing what needs the store until PostgreSQL answers again");
            *fault = Some(why);
            self.faulted.notify_one();
        }
    }

    fn recovered(&self) {
        *self.fault.lock().unwrap_or_else(PoisonError::into_inner) = None;
        self.stats.recovered();
    }

    fn scrub(&self, s: &str) -> String {
        let mut s = s.to_string();
        self.scrubber.redact_str(&mut s);
        s
    }

    /// The error a caller gets for `f` (and the fault it reports).
    fn error(&self, f: Failure) -> StoreError {
        self.report(&f);
        StoreError::from(Failure {
            message: self.scrub(&f.message),
            fault: f.fault,
        })
    }

    fn prepare(&self, batch: Batch) -> Result<PgBatch, StoreError> {
        let events = prepare_events(&self.redactor, batch.events, false)?;
        let rows = prepare_records(&self.redactor, batch.upserts)?
            .into_iter()
            .map(|rec| {
                let json =
                    serde_json::to_string(&rec).map_err(|e| StoreError::Invalid(e.to_string()))?;
                Ok(RequestRow::new(&rec, json))
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(PgBatch { events, rows })
    }
}

/// How often the pending count is refreshed (it also notices a lost database).
const HOUSEKEEPING: Duration = Duration::from_secs(1);

impl Postgres {
    /// Connects, migrates the schema, and starts the writer, the listener
    /// and housekeeping.
    pub(crate) async fn open(
        url: &str,
        opts: StoreOptions,
        feeds: Arc<Feeds>,
    ) -> Result<Postgres, StoreError> {
        let target = connect::target(url)?;
        let mut secrets = vec![url.to_string()];
        if let Some(pw) = target.config.get_password() {
            secrets.push(String::from_utf8_lossy(pw).into_owned());
        }
        let scrubber = Redactor::new(secrets);
        let scrub = |e: StoreError| match e {
            StoreError::Unavailable(m) => StoreError::Unavailable(redacted(&scrubber, m)),
            StoreError::Storage(m) => StoreError::Storage(redacted(&scrubber, m)),
            other => other,
        };
        let pool = connect::pool(&target)?;
        let mut client = pool
            .get()
            .await
            .map_err(|e| scrub(Failure::from(e).into()))?;
        schema::migrate(&mut client).await.map_err(scrub)?;
        drop(client);
        let (tx, rx) = mpsc::unbounded_channel();
        let (stop, stopped) = watch::channel(false);
        let shared = Arc::new(Shared {
            pool,
            target,
            redactor: Redactor::new(opts.secrets),
            scrubber,
            fault: Mutex::new(None),
            faulted: tokio::sync::Notify::new(),
            stats: Default::default(),
            pending_total: AtomicUsize::new(0),
            replica: crate::new_request_id(),
            feeds,
            waiting: Default::default(),
            tx,
            permits: Arc::new(Semaphore::new(
                opts.queue_capacity.clamp(1, Semaphore::MAX_PERMITS),
            )),
            stop,
        });
        tokio::spawn(
            Writer {
                shared: shared.clone(),
                rx,
                replay: Vec::new(),
                backoff: Duration::from_millis(100),
            }
            .run(),
        );
        tokio::spawn(listen::run(Arc::downgrade(&shared), stopped.clone()));
        tokio::spawn(housekeeping(Arc::downgrade(&shared), stopped));
        let pg = Postgres { shared };
        pg.refresh_pending().await;
        Ok(pg)
    }

    /// Queues a batch for the group commit; waits only for room in the queue.
    pub(crate) async fn submit(
        &self,
        batch: Batch,
        durable: bool,
    ) -> Result<Submitted, StoreError> {
        let batch = self.shared.prepare(batch)?;
        let permit = self
            .shared
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        let (reply, rx) = if durable {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        self.shared
            .tx
            .send(Msg::Commit {
                batch,
                reply,
                _permit: Some(permit),
            })
            .map_err(|_| StoreError::Closed)?;
        Ok(Submitted { rx })
    }

    /// Queues a batch at once, without waiting for room.
    pub(crate) fn submit_now(&self, batch: Batch) -> Result<(), StoreError> {
        if self.shared.permits.is_closed() {
            return Err(StoreError::Closed);
        }
        let batch = self.shared.prepare(batch)?;
        self.shared
            .tx
            .send(Msg::Commit {
                batch,
                reply: None,
                _permit: None,
            })
            .map_err(|_| StoreError::Closed)
    }

    pub(crate) fn redact_record(&self, rec: &mut RequestRecord) {
        stored_view(&self.shared.redactor, rec);
    }

    pub(crate) fn fault(&self) -> Option<String> {
        self.shared.fault()
    }

    pub(crate) fn pending_total(&self) -> usize {
        self.shared.pending_total.load(Ordering::Relaxed)
    }

    pub(crate) fn stats(&self) -> Stats {
        self.shared.stats.snapshot()
    }

    /// Commits what is queued, then stops the writer and the listener.
    pub(crate) async fn close(&self) -> Result<(), StoreError> {
        self.shared.permits.close();
        let (tx, rx) = oneshot::channel();
        let result = if self.shared.tx.send(Msg::Shutdown(tx)).is_ok() {
            rx.await.unwrap_or(Ok(()))
        } else {
            Ok(())
        };
        let _ = self.shared.stop.send(true);
        result
    }

    async fn refresh_pending(&self) {
        match self.count_pending().await {
            Ok(n) => self.shared.pending_total.store(n, Ordering::Relaxed),
            Err(e) => tracing::debug!(error = %e, "counting pending requests failed"),
        }
    }
}

fn redacted(r: &Redactor, mut s: String) -> String {
    r.redact_str(&mut s);
    s
}

/// Refreshes the pending count every second; a failure marks the store
/// faulted, so an idle replica also notices a lost database (and `/healthz`
/// says so) before a request fails on it.
async fn housekeeping(shared: std::sync::Weak<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(HOUSEKEEPING) => {}
            _ = stop.changed() => return,
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        Postgres { shared }.refresh_pending().await;
    }
}
