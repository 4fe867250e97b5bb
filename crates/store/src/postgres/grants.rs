//! Standing grants (SPEC §6.1) in PostgreSQL: the `sudomode_grants` table
//! (the grant's JSON plus the columns it is looked up by). Counting a use
//! is one transaction that locks the grants' rows, so replicas racing for
//! the last use take turns and only one gets it; creating and revoking
//! append their event to the chain in the same transaction.

use deadpool_postgres::Transaction;
use time::OffsetDateTime;

use super::Postgres;
use super::append::Appender;
use super::connect::Failure;
use crate::Grant;
use crate::error::StoreError;
use crate::model::{Batch, NewEvent};

fn decode(s: &str) -> Result<Grant, Failure> {
    serde_json::from_str(s).map_err(|e| Failure {
        message: format!("a stored grant does not decode: {e}"),
        fault: false,
    })
}

fn encode(g: &Grant) -> Result<String, StoreError> {
    serde_json::to_string(g).map_err(|e| StoreError::Invalid(e.to_string()))
}

impl Postgres {
    /// See [`crate::Storage::get_grant`].
    pub(crate) async fn get_grant(&self, id: &str) -> Result<Option<Grant>, StoreError> {
        let run = async {
            let client = self.shared.pool.get().await?;
            let row = client
                .query_opt(
                    "SELECT grant_json FROM sudomode_grants WHERE id = $1",
                    &[&id],
                )
                .await?;
            row.map(|r| decode(r.get(0))).transpose()
        };
        run.await.map_err(|f| self.shared.error(f))
    }

    /// See [`crate::Storage::list_grants`]: newest first (ids are UUIDv7).
    pub(crate) async fn list_grants(&self) -> Result<Vec<Grant>, StoreError> {
        self.select_grants(
            "SELECT grant_json FROM sudomode_grants ORDER BY id DESC",
            &[],
        )
        .await
    }

    /// Grants naming exactly this agent and intent that are active at `now`.
    pub(crate) async fn active_grants_for(
        &self,
        agent: &str,
        resource: &str,
        action: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<Grant>, StoreError> {
        let found = self
            .select_grants(
                "SELECT grant_json FROM sudomode_grants \
                 WHERE agent = $1 AND resource = $2 AND action = $3 ORDER BY id DESC",
                &[&agent, &resource, &action],
            )
            .await?;
        Ok(found.into_iter().filter(|g| g.is_active(now)).collect())
    }

    async fn select_grants(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Grant>, StoreError> {
        let run = async {
            let client = self.shared.pool.get().await?;
            let rows = client.query(sql, params).await?;
            rows.iter()
                .map(|r| decode(r.get(0)))
                .collect::<Result<Vec<_>, Failure>>()
        };
        run.await.map_err(|f| self.shared.error(f))
    }

    /// See [`crate::Storage::create_grant`].
    pub(crate) async fn create_grant(
        &self,
        grant: Grant,
        event: NewEvent,
    ) -> Result<(), StoreError> {
        let json = encode(&grant)?;
        let batch = self.shared.prepare(Batch {
            events: vec![event],
            upserts: Vec::new(),
        })?;
        let run = async {
            let mut client = self.shared.pool.get().await?;
            let tx = client.transaction().await?;
            let mut head = Appender::lock(&tx).await?;
            tx.execute(
                "INSERT INTO sudomode_grants (id, agent, resource, action, grant_json) \
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &grant.id,
                    &grant.agent,
                    &grant.resource,
                    &grant.action,
                    &json,
                ],
            )
            .await?;
            for ev in &batch.events {
                head.seal(ev);
            }
            head.finish(&tx).await?;
            tx.commit().await?;
            Ok::<_, Failure>(())
        };
        run.await.map_err(|f| self.shared.error(f))
    }

    /// See [`crate::Storage::use_grants`]: the rows stay locked from the
    /// check to the commit, so a use is never counted twice.
    pub(crate) async fn use_grants(
        &self,
        ids: Vec<String>,
        now: OffsetDateTime,
    ) -> Result<Option<Vec<Grant>>, StoreError> {
        let mut ids = ids;
        let mut seen = std::collections::HashSet::new();
        ids.retain(|id| seen.insert(id.clone()));
        let run = async {
            let mut client = self.shared.pool.get().await?;
            let tx = client.transaction().await?;
            // One order for every locker, so two uses never deadlock.
            let rows = tx
                .query(
                    "SELECT id, grant_json FROM sudomode_grants WHERE id = ANY($1) \
                     ORDER BY id FOR UPDATE",
                    &[&ids],
                )
                .await?;
            let mut used = Vec::with_capacity(ids.len());
            for id in &ids {
                let Some(row) = rows.iter().find(|r| r.get::<_, &str>(0) == id) else {
                    return Ok(None);
                };
                let mut g = decode(row.get(1))?;
                if !g.is_active(now) {
                    return Ok(None);
                }
                g.uses += 1;
                used.push(g);
            }
            for g in &used {
                set_grant(&tx, g).await?;
            }
            tx.commit().await?;
            Ok::<_, Failure>(Some(used))
        };
        run.await.map_err(|f| self.shared.error(f))
    }

    /// See [`crate::Storage::revoke_grant`].
    pub(crate) async fn revoke_grant(
        &self,
        id: &str,
        by: &str,
        now: OffsetDateTime,
        event: impl FnOnce(&Grant) -> NewEvent + Send,
    ) -> Result<Option<Grant>, StoreError> {
        let mut client = self
            .shared
            .pool
            .get()
            .await
            .map_err(|e| self.shared.error(e.into()))?;
        let found = async {
            let tx = client.transaction().await?;
            // The chain head first, as every writer takes it, then the row.
            let head = Appender::lock(&tx).await?;
            let row = tx
                .query_opt(
                    "SELECT grant_json FROM sudomode_grants WHERE id = $1 FOR UPDATE",
                    &[&id],
                )
                .await?;
            let grant = row.map(|r| decode(r.get(0))).transpose()?;
            Ok::<_, Failure>((tx, head, grant))
        };
        let (tx, mut head, grant) = found.await.map_err(|f| self.shared.error(f))?;
        let Some(mut g) = grant else {
            return Ok(None);
        };
        if !g.revoke(by, now) {
            return Ok(Some(g));
        }
        let batch = self.shared.prepare(Batch {
            events: vec![event(&g)],
            upserts: Vec::new(),
        })?;
        let write = async {
            set_grant(&tx, &g).await?;
            for ev in &batch.events {
                head.seal(ev);
            }
            head.finish(&tx).await?;
            tx.commit().await?;
            Ok::<_, Failure>(())
        };
        write.await.map_err(|f| self.shared.error(f))?;
        Ok(Some(g))
    }
}

async fn set_grant(tx: &Transaction<'_>, g: &Grant) -> Result<(), Failure> {
    let json = encode(g).map_err(|e| Failure {
        message: e.to_string(),
        fault: false,
    })?;
    tx.execute(
        "UPDATE sudomode_grants SET grant_json = $2 WHERE id = $1",
        &[&g.id, &json],
    )
    .await?;
    Ok(())
}
