//! Standing grants (SPEC §6.1) in redb: the `grants` table (id → JSON), its
//! index by agent and intent (what a REQUIRE_APPROVAL request looks up, so the
//! check costs the grants of that intent, not every grant ever made), and the
//! operations the storage boundary offers for them — create, read, list,
//! revoke, and the atomic "use these if each is still valid".
//!
//! Rows are written by the writer thread like everything else (one durable
//! transaction with their audit event). Read-check-write sequences hold an
//! in-process lock across the durable commit, so two uses can never both see
//! the last remaining use (redb has a single process by construction: the
//! file is locked).

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::StoreError;
use crate::model::NewEvent;
use crate::{Store, writer};

/// id → JSON of the [`Grant`].
pub(crate) const GRANTS: TableDefinition<&str, &str> = TableDefinition::new("grants");

/// (agent, resource, action, id) → (): one entry per grant; those names never change.
const BY_INTENT: TableDefinition<(&str, &str, &str, &str), ()> =
    TableDefinition::new("grants_by_intent");

/// A grant as the writer stores it: its JSON, and the names its index entry is filed under.
pub(crate) struct GrantRow {
    id: String,
    agent: String,
    resource: String,
    action: String,
    json: String,
}

/// A standing grant: the SPEC §6.1 Grant object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grant {
    /// UUIDv7 (sorts by creation time).
    pub id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// The operator who made it.
    pub created_by: String,
    /// The request approved with it, when made that way.
    pub from_request: Option<String>,
    /// Exact agent name.
    pub agent: String,
    /// Exact intent resource.
    pub resource: String,
    /// Exact intent action.
    pub action: String,
    /// CEL over the rule variables; must hold for the grant to apply.
    pub condition: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// `None`: unlimited until it expires.
    pub max_uses: Option<u64>,
    pub uses: u64,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    #[serde(default)]
    pub revoked_by: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

impl Grant {
    /// Marks it revoked by `by` at `now`; `false`, and unchanged, when it
    /// already was.
    pub(crate) fn revoke(&mut self, by: &str, now: OffsetDateTime) -> bool {
        if self.revoked_at.is_some() {
            return false;
        }
        self.revoked_at = Some(now);
        self.revoked_by = Some(by.to_string());
        true
    }

    /// Not revoked, not expired, uses left.
    pub fn is_active(&self, now: OffsetDateTime) -> bool {
        self.revoked_at.is_none()
            && now < self.expires_at
            && self.max_uses.is_none_or(|m| self.uses < m)
    }

    /// The grant names exactly this agent and intent.
    pub fn covers(&self, agent: &str, resource: &str, action: &str) -> bool {
        self.agent == agent && self.resource == resource && self.action == action
    }
}

fn decode(s: &str) -> Result<Grant, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::corrupt("grants", e))
}

fn encode(g: &Grant) -> Result<GrantRow, StoreError> {
    let json = serde_json::to_string(g).map_err(|e| StoreError::Invalid(e.to_string()))?;
    Ok(GrantRow {
        id: g.id.clone(),
        agent: g.agent.clone(),
        resource: g.resource.clone(),
        action: g.action.clone(),
        json,
    })
}

impl Store {
    /// One grant.
    pub fn get_grant(&self, id: &str) -> Result<Option<Grant>, StoreError> {
        let rtx = self.inner.slot.get()?.begin_read()?;
        let t = match rtx.open_table(GRANTS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        match t.get(id)? {
            Some(g) => decode(g.value()).map(Some),
            None => Ok(None),
        }
    }

    /// Every grant, newest first.
    pub fn list_grants(&self) -> Result<Vec<Grant>, StoreError> {
        let rtx = self.inner.slot.get()?.begin_read()?;
        let t = match rtx.open_table(GRANTS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for row in t.iter()?.rev() {
            let (_, v) = row?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }

    /// Grants active at `now` for exactly this agent, resource and action,
    /// newest first. Reads only the grants filed under those names.
    pub fn active_grants_for(
        &self,
        agent: &str,
        resource: &str,
        action: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<Grant>, StoreError> {
        let rtx = self.inner.slot.get()?.begin_read()?;
        let (index, grants) = match (rtx.open_table(BY_INTENT), rtx.open_table(GRANTS)) {
            (Ok(i), Ok(g)) => (i, g),
            (Err(redb::TableError::TableDoesNotExist(_)), _)
            | (_, Err(redb::TableError::TableDoesNotExist(_))) => return Ok(Vec::new()),
            (Err(e), _) | (_, Err(e)) => return Err(e.into()),
        };
        // The entries under these names sort together, ids (UUIDv7) oldest first.
        let mut ids = Vec::new();
        for entry in index.range((agent, resource, action, "")..)? {
            let (key, _) = entry?;
            let (a, r, x, id) = key.value();
            if (a, r, x) != (agent, resource, action) {
                break;
            }
            ids.push(id.to_string());
        }
        let mut out = Vec::new();
        for id in ids.iter().rev() {
            let Some(json) = grants.get(id.as_str())? else {
                return Err(StoreError::corrupt(
                    "grants_by_intent",
                    format!("grant {id} is indexed but not stored"),
                ));
            };
            let g = decode(json.value())?;
            if g.covers(agent, resource, action) && g.is_active(now) {
                out.push(g);
            }
        }
        Ok(out)
    }

    /// Writes grants and events in one durable transaction.
    async fn write_grants(
        &self,
        grants: &[Grant],
        events: Vec<NewEvent>,
    ) -> Result<(), StoreError> {
        let mut prepared = self.prepare(
            crate::model::Batch {
                events,
                upserts: Vec::new(),
            },
            false,
        )?;
        for g in grants {
            prepared.grants.push(encode(g)?);
        }
        self.commit_prepared(prepared).await
    }

    /// Stores a new grant with its `grant.created` event.
    pub async fn create_grant(&self, grant: Grant, event: NewEvent) -> Result<(), StoreError> {
        let _one = self.inner.grant_lock.lock().await;
        self.write_grants(&[grant], vec![event]).await
    }

    /// Adds one use to each grant of `ids`, all or none: only when every one
    /// is still active at `now`. Returns the grants as updated, or `None`
    /// when any was not (unknown, revoked, expired or used up).
    pub async fn use_grants(
        &self,
        ids: Vec<String>,
        now: OffsetDateTime,
    ) -> Result<Option<Vec<Grant>>, StoreError> {
        let _one = self.inner.grant_lock.lock().await;
        let reader = self.clone();
        let found = tokio::task::spawn_blocking(move || {
            ids.iter()
                .map(|id| reader.get_grant(id))
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| StoreError::Storage(format!("store read task: {e}")))??;
        let mut used = Vec::with_capacity(found.len());
        for g in found {
            match g {
                Some(mut g) if g.is_active(now) => {
                    g.uses += 1;
                    used.push(g);
                }
                _ => return Ok(None),
            }
        }
        self.write_grants(&used, Vec::new()).await?;
        Ok(Some(used))
    }

    /// Revokes a grant (by `by`, at `now`) with the event `event` makes of
    /// it. `None` for an unknown grant; an already revoked one is returned
    /// unchanged.
    pub async fn revoke_grant(
        &self,
        id: &str,
        by: &str,
        now: OffsetDateTime,
        event: impl FnOnce(&Grant) -> NewEvent + Send,
    ) -> Result<Option<Grant>, StoreError> {
        let _one = self.inner.grant_lock.lock().await;
        let reader = self.clone();
        let key = id.to_string();
        let found = tokio::task::spawn_blocking(move || reader.get_grant(&key))
            .await
            .map_err(|e| StoreError::Storage(format!("store read task: {e}")))??;
        let Some(mut g) = found else {
            return Ok(None);
        };
        if !g.revoke(by, now) {
            return Ok(Some(g));
        }
        let ev = event(&g);
        self.write_grants(std::slice::from_ref(&g), vec![ev])
            .await?;
        Ok(Some(g))
    }
}

/// Writes prepared grant rows inside the writer's transaction.
pub(crate) fn insert_rows(
    txn: &redb::WriteTransaction,
    batches: &[(writer::Prepared, bool)],
) -> Result<(), StoreError> {
    if batches.iter().all(|(b, _)| b.grants.is_empty()) {
        return Ok(());
    }
    let mut t = txn.open_table(GRANTS)?;
    let mut index = txn.open_table(BY_INTENT)?;
    for (b, _) in batches {
        for g in &b.grants {
            t.insert(g.id.as_str(), g.json.as_str())?;
            file(&mut index, &g.agent, &g.resource, &g.action, &g.id)?;
        }
    }
    Ok(())
}

/// Files grant `id` under its agent and intent.
fn file(
    index: &mut redb::Table<(&str, &str, &str, &str), ()>,
    agent: &str,
    resource: &str,
    action: &str,
    id: &str,
) -> Result<(), StoreError> {
    index.insert((agent, resource, action, id), ())?;
    Ok(())
}

/// Creates the grant tables, and files every grant in the index when the counts differ: a
/// store from before the index, or grants created since by a version without it. Grants are
/// never deleted and their names never change, so equal counts mean the same entries.
pub(crate) fn ensure_index(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    let grants = txn.open_table(GRANTS)?;
    let mut index = txn.open_table(BY_INTENT)?;
    if grants.len()? == index.len()? {
        return Ok(());
    }
    index.retain(|_, _| false)?;
    for row in grants.iter()? {
        let (_, v) = row?;
        let g = decode(v.value())?;
        file(&mut index, &g.agent, &g.resource, &g.action, &g.id)?;
    }
    tracing::info!(
        grants = grants.len()?,
        "standing grants indexed by agent and intent"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreOptions;

    fn grant(id: &str, max_uses: Option<u64>) -> Grant {
        let now = OffsetDateTime::now_utc();
        Grant {
            id: id.into(),
            created_at: now,
            created_by: "alice".into(),
            from_request: None,
            agent: "bot".into(),
            resource: "stripe.charges".into(),
            action: "create".into(),
            condition: None,
            expires_at: now + time::Duration::hours(1),
            max_uses,
            uses: 0,
            revoked_at: None,
            revoked_by: None,
            reason: None,
        }
    }

    #[tokio::test]
    async fn uses_never_exceed_max_uses_under_concurrency_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = Store::open(&path, StoreOptions::default()).unwrap();
        store
            .create_grant(grant("g1", Some(3)), NewEvent::new("grant.created"))
            .await
            .unwrap();
        let now = OffsetDateTime::now_utc();
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let s = store.clone();
                tokio::spawn(async move { s.use_grants(vec!["g1".into()], now).await })
            })
            .collect();
        let mut passed = 0;
        for t in tasks {
            if t.await.unwrap().unwrap().is_some() {
                passed += 1;
            }
        }
        assert_eq!(passed, 3);
        store.close().await.unwrap();
        drop(store);
        let store = Store::open(&path, StoreOptions::default()).unwrap();
        let g = store.get_grant("g1").unwrap().unwrap();
        assert_eq!(g.uses, 3);
        assert!(!g.is_active(now));
        assert_eq!(store.verify().unwrap().events, 1);
    }

    #[tokio::test]
    async fn all_or_none_and_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb"), StoreOptions::default()).unwrap();
        assert!(store.list_grants().unwrap().is_empty());
        for g in [grant("a", Some(1)), grant("b", None)] {
            store
                .create_grant(g, NewEvent::new("grant.created"))
                .await
                .unwrap();
        }
        let now = OffsetDateTime::now_utc();
        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(
            store
                .use_grants(ids(&["a", "b"]), now)
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            store
                .use_grants(ids(&["b", "a"]), now)
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(store.get_grant("b").unwrap().unwrap().uses, 1, "none used");
        assert!(
            store
                .use_grants(ids(&["nope"]), now)
                .await
                .unwrap()
                .is_none()
        );
        let ev = |g: &Grant| NewEvent::new("grant.revoked").field("grant_id", g.id.clone());
        let r = store
            .revoke_grant("b", "bob", now, ev)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.revoked_by.as_deref(), Some("bob"));
        let again = store
            .revoke_grant("b", "carol", now, ev)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again.revoked_by.as_deref(), Some("bob"), "revoked once");
        assert!(
            store
                .revoke_grant("zz", "bob", now, ev)
                .await
                .unwrap()
                .is_none()
        );
        assert!(store.use_grants(ids(&["b"]), now).await.unwrap().is_none());
        let list: Vec<String> = store
            .list_grants()
            .unwrap()
            .into_iter()
            .map(|g| g.id)
            .collect();
        assert_eq!(list, ["b", "a"], "newest (highest id) first");
        assert_eq!(store.verify().unwrap().events, 3);
    }

    fn for_intent(id: &str, agent: &str, resource: &str, action: &str) -> Grant {
        Grant {
            agent: agent.into(),
            resource: resource.into(),
            action: action.into(),
            ..grant(id, None)
        }
    }

    async fn create(store: &Store, g: Grant) {
        store
            .create_grant(g, NewEvent::new("grant.created"))
            .await
            .unwrap();
    }

    fn found(store: &Store, agent: &str, resource: &str, action: &str) -> Vec<String> {
        let now = OffsetDateTime::now_utc();
        store
            .active_grants_for(agent, resource, action, now)
            .unwrap()
            .into_iter()
            .map(|g| g.id)
            .collect()
    }

    #[tokio::test]
    async fn a_lookup_finds_exactly_the_active_grants_of_its_agent_and_intent_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = Store::open(&path, StoreOptions::default()).unwrap();
        assert!(found(&store, "bot", "stripe.charges", "create").is_empty());
        // Names that share prefixes with the one looked up, on each side of it.
        for (id, agent, resource, action) in [
            ("g01", "bot", "stripe.charges", "create"),
            ("g02", "bo", "stripe.charges", "create"),
            ("g03", "bot2", "stripe.charges", "create"),
            ("g04", "bot", "stripe.charge", "create"),
            ("g05", "bot", "stripe.charges.x", "create"),
            ("g06", "bot", "stripe.charges", "creat"),
            ("g07", "bot", "stripe.charges", "create2"),
            ("g08", "bot", "stripe.charges", "create"),
            ("g09", "bot", "stripe.charges", "create"),
            ("g10", "bot", "stripe.charges", "create"),
        ] {
            create(&store, for_intent(id, agent, resource, action)).await;
        }
        let now = OffsetDateTime::now_utc();
        let mut expired = for_intent("g11", "bot", "stripe.charges", "create");
        expired.expires_at = now - time::Duration::seconds(1);
        create(&store, expired).await;
        let mut used_up = for_intent("g12", "bot", "stripe.charges", "create");
        used_up.max_uses = Some(1);
        create(&store, used_up).await;
        assert!(
            store
                .use_grants(vec!["g12".into()], now)
                .await
                .unwrap()
                .is_some()
        );
        let ev = |g: &Grant| NewEvent::new("grant.revoked").field("grant_id", g.id.clone());
        store
            .revoke_grant("g09", "bob", now, ev)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            found(&store, "bot", "stripe.charges", "create"),
            ["g10", "g08", "g01"]
        );
        assert_eq!(found(&store, "bo", "stripe.charges", "create"), ["g02"]);
        assert_eq!(found(&store, "bot", "stripe.charges", "creat"), ["g06"]);
        assert!(found(&store, "nobody", "stripe.charges", "create").is_empty());
        store.close().await.unwrap();
        drop(store);
        let store = Store::open(&path, StoreOptions::default()).unwrap();
        assert_eq!(
            found(&store, "bot", "stripe.charges", "create"),
            ["g10", "g08", "g01"]
        );
    }

    /// A store from before the index (or one a version without it added grants to) has its
    /// grants filed at open, so none is missed by the lookup.
    #[tokio::test]
    async fn grants_the_index_does_not_hold_are_filed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = Store::open(&path, StoreOptions::default()).unwrap();
        create(&store, for_intent("g1", "bot", "stripe.charges", "create")).await;
        create(&store, for_intent("g2", "bot", "aws.s3", "delete")).await;
        store.close().await.unwrap();
        drop(store);
        {
            // As an older version leaves the file: no index, and a grant it created.
            let db = redb::Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.delete_table(BY_INTENT).unwrap();
            {
                let mut t = txn.open_table(GRANTS).unwrap();
                let g3 = encode(&for_intent("g3", "bot", "stripe.charges", "create")).unwrap();
                t.insert("g3", g3.json.as_str()).unwrap();
            }
            txn.commit().unwrap();
        }
        let store = Store::open(&path, StoreOptions::default()).unwrap();
        assert_eq!(
            found(&store, "bot", "stripe.charges", "create"),
            ["g3", "g1"]
        );
        assert_eq!(found(&store, "bot", "aws.s3", "delete"), ["g2"]);
        store.close().await.unwrap();
        drop(store);
        {
            // A grant added without its entry while the index exists: the counts differ.
            let db = redb::Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut t = txn.open_table(GRANTS).unwrap();
                let g4 = encode(&for_intent("g4", "bot", "aws.s3", "delete")).unwrap();
                t.insert("g4", g4.json.as_str()).unwrap();
            }
            txn.commit().unwrap();
        }
        let store = Store::open(&path, StoreOptions::default()).unwrap();
        assert_eq!(found(&store, "bot", "aws.s3", "delete"), ["g4", "g2"]);
        assert_eq!(
            found(&store, "bot", "stripe.charges", "create"),
            ["g3", "g1"]
        );
    }
}
