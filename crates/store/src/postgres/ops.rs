//! The conditional updates of held requests, each one transaction that
//! takes the chain head first (so they serialise with every append, on
//! every replica) and then the request row: parking a request unless an
//! identical one is pending, and read-modify-write of one request with its
//! events. This is what makes joining, approving, rejecting, expiring and
//! using the retry grant happen once across replicas.

use super::Postgres;
use super::append::{Appender, notify};
use super::connect::Failure;
use super::rows::{PARK_SQL, RequestRow, UPSERT_ONE_SQL, decode};
use crate::error::StoreError;
use crate::model::{Batch, NewEvent, RequestRecord};
use crate::storage::{Parked, Update};

impl Postgres {
    /// See [`crate::Storage::insert_pending`].
    pub(crate) async fn insert_pending(
        &self,
        record: RequestRecord,
        event: NewEvent,
    ) -> Result<Parked, StoreError> {
        let batch = self.shared.prepare(Batch::one(event, record))?;
        let run = async {
            let mut client = self.shared.pool.get().await?;
            let tx = client.transaction().await?;
            let mut head = Appender::lock(&tx).await?;
            let Some(row) = batch.rows.first() else {
                return Ok(Parked::Inserted);
            };
            let insert = tx.prepare_cached(&PARK_SQL).await?;
            if tx.execute(&insert, &row.params()).await? == 0 {
                let existing = tx
                    .query_opt(
                        "SELECT record FROM sudomode_requests \
                         WHERE status = 'pending' AND retry_key = $1",
                        &[&row_key(row)],
                    )
                    .await?;
                tx.rollback().await?;
                return Ok(match existing {
                    Some(r) => {
                        Parked::Existing(Box::new(decode(r.get(0)).map_err(|e| Failure {
                            message: e.to_string(),
                            fault: false,
                        })?))
                    }
                    // Decided in between (cannot happen under the head lock).
                    None => Parked::Inserted,
                });
            }
            for ev in &batch.events {
                head.seal(ev);
            }
            head.finish(&tx).await?;
            notify(
                &tx,
                &self.shared.replica,
                std::iter::once((row.id.as_str(), true)),
            )
            .await?;
            tx.commit().await?;
            Ok::<_, Failure>(Parked::Inserted)
        };
        run.await.map_err(|f| self.shared.error(f))
    }

    /// See [`crate::Storage::update_request`]; also returns the record
    /// written, as stored.
    pub(crate) async fn update_request<T, F>(
        &self,
        id: &str,
        f: F,
    ) -> Result<(T, Option<RequestRecord>), StoreError>
    where
        F: FnOnce(Option<RequestRecord>) -> Update<T>,
    {
        let mut client = self
            .shared
            .pool
            .get()
            .await
            .map_err(|e| self.shared.error(e.into()))?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| self.shared.error(e.into()))?;
        let mut head = Appender::lock(&tx)
            .await
            .map_err(|e| self.shared.error(e))?;
        let current = match tx
            .query_opt(
                "SELECT record FROM sudomode_requests WHERE id = $1 FOR UPDATE",
                &[&id],
            )
            .await
            .map_err(|e| self.shared.error(e.into()))?
        {
            Some(row) => Some(decode(row.get(0))?),
            None => None,
        };
        let (record, events, out) = match f(current) {
            Update::Keep(out) => return Ok((out, None)),
            Update::Write(record, events, out) => (record, events, out),
        };
        let batch = self.shared.prepare(Batch {
            events,
            upserts: vec![(*record).clone()],
        })?;
        let write = async {
            for ev in &batch.events {
                head.seal(ev);
            }
            head.finish(&tx).await?;
            let upsert = tx.prepare_cached(&UPSERT_ONE_SQL).await?;
            for row in &batch.rows {
                tx.execute(&upsert, &row.params()).await?;
            }
            let changed = batch.rows.iter().map(|r| (r.id.as_str(), r.held));
            notify(&tx, &self.shared.replica, changed).await?;
            tx.commit().await?;
            Ok::<_, Failure>(())
        };
        write.await.map_err(|f| self.shared.error(f))?;
        let mut stored = *record;
        self.redact_record(&mut stored);
        Ok((out, Some(stored)))
    }
}

fn row_key(row: &RequestRow) -> &str {
    row.retry_key()
}
