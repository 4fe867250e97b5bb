//! The PostgreSQL schema: created and migrated at start inside one
//! transaction under an advisory lock, so replicas starting together take
//! turns; a database whose schema is newer than this binary is refused.

use deadpool_postgres::Client;

use super::connect::Failure;
use crate::chain::GENESIS_HASH;
use crate::error::StoreError;

/// The schema version this binary writes.
pub(super) const VERSION: i32 = 5;

/// Key of the advisory lock that serialises migrations ("sudomode" in ASCII).
const LOCK_KEY: i64 = 0x7375_646f_6d6f_6465;

/// Migration `i` brings the schema from version `i` to `i + 1`.
const MIGRATIONS: [&str; VERSION as usize] = [
    r#"
CREATE TABLE sudomode_requests (
    id text PRIMARY KEY,
    created_at timestamptz NOT NULL,
    agent text NOT NULL,
    status text NOT NULL,
    decision text NOT NULL,
    resource text NOT NULL,
    action text NOT NULL,
    retry_key text NOT NULL,
    expires_at timestamptz,
    approved_at timestamptz,
    open boolean NOT NULL,
    record text NOT NULL
);
-- At most one pending request per retry key, whichever replica parks it.
CREATE UNIQUE INDEX sudomode_requests_one_pending
    ON sudomode_requests (retry_key) WHERE status = 'pending';
CREATE INDEX sudomode_requests_open ON sudomode_requests (retry_key, id) WHERE open;
CREATE INDEX sudomode_requests_pending_agent
    ON sudomode_requests (agent) WHERE status = 'pending';
CREATE INDEX sudomode_requests_status ON sudomode_requests (status, id);
CREATE INDEX sudomode_requests_agent ON sudomode_requests (agent, id);
CREATE INDEX sudomode_requests_resource ON sudomode_requests (resource, id);
CREATE INDEX sudomode_requests_decision ON sudomode_requests (decision, id);
CREATE TABLE sudomode_audit (
    seq bigint PRIMARY KEY,
    request_id text,
    at timestamptz NOT NULL,
    line text NOT NULL
);
CREATE INDEX sudomode_audit_request
    ON sudomode_audit (request_id, seq) WHERE request_id IS NOT NULL;
-- The chain head: every append locks this one row, so seq has one order.
CREATE TABLE sudomode_chain_head (
    id integer PRIMARY KEY CHECK (id = 1),
    seq bigint NOT NULL,
    hash text NOT NULL,
    at timestamptz NOT NULL
);
INSERT INTO sudomode_chain_head VALUES (1, 0, '$GENESIS', 'epoch');
"#,
    r#"
-- Standing grants (SPEC §6.1): the grant's JSON, looked up by its target.
CREATE TABLE sudomode_grants (
    id text PRIMARY KEY,
    agent text NOT NULL,
    resource text NOT NULL,
    action text NOT NULL,
    grant_json text NOT NULL
);
CREATE INDEX sudomode_grants_target ON sudomode_grants (agent, resource, action);
"#,
    r#"
-- One row per running replica. A strict group commits without waiting for
-- the WAL flush, so the chain head is not locked over it; the synchronous
-- update of this row right after flushes the WAL past that commit before
-- the group's callers are answered.
CREATE TABLE sudomode_replicas (
    replica text PRIMARY KEY,
    flushed_at timestamptz NOT NULL
);
"#,
    r#"
-- An allowed request's row is written twice: with its decision and with its
-- ending. The history filters' indexes leave out the rows still 'allowed'
-- (in flight), so the first write does not touch them; those rows have an
-- index of their own, and a filtered list reads both (read.rs).
DROP INDEX sudomode_requests_status, sudomode_requests_agent,
    sudomode_requests_resource, sudomode_requests_decision;
CREATE INDEX sudomode_requests_status ON sudomode_requests (status, id)
    WHERE status <> 'allowed';
CREATE INDEX sudomode_requests_agent ON sudomode_requests (agent, id)
    WHERE status <> 'allowed';
CREATE INDEX sudomode_requests_resource ON sudomode_requests (resource, id)
    WHERE status <> 'allowed';
CREATE INDEX sudomode_requests_decision ON sudomode_requests (decision, id)
    WHERE status <> 'allowed';
CREATE INDEX sudomode_requests_allowed ON sudomode_requests (id)
    WHERE status = 'allowed';
"#,
    r#"
-- Keys and filter columns compare as bytes (collation "C") whatever the
-- database's default: ids, names and statuses need no language rules, a
-- language collation (en_US.UTF-8, the default of many servers) made every
-- index comparison a strcoll() and cost the pair of replicas 15 % of its
-- throughput, and an index in "C" never needs rebuilding when the operating
-- system's collation rules change. The indexes are rebuilt; the rows stay.
ALTER TABLE sudomode_requests
    ALTER COLUMN id TYPE text COLLATE "C",
    ALTER COLUMN agent TYPE text COLLATE "C",
    ALTER COLUMN status TYPE text COLLATE "C",
    ALTER COLUMN decision TYPE text COLLATE "C",
    ALTER COLUMN resource TYPE text COLLATE "C",
    ALTER COLUMN action TYPE text COLLATE "C",
    ALTER COLUMN retry_key TYPE text COLLATE "C";
ALTER TABLE sudomode_audit ALTER COLUMN request_id TYPE text COLLATE "C";
ALTER TABLE sudomode_grants
    ALTER COLUMN id TYPE text COLLATE "C",
    ALTER COLUMN agent TYPE text COLLATE "C",
    ALTER COLUMN resource TYPE text COLLATE "C",
    ALTER COLUMN action TYPE text COLLATE "C";
ALTER TABLE sudomode_replicas ALTER COLUMN replica TYPE text COLLATE "C";
"#,
];

/// Creates or migrates the schema; refuses one newer than [`VERSION`].
pub(super) async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(Failure::from)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await
        .map_err(Failure::from)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS sudomode_schema (version integer NOT NULL)")
        .await
        .map_err(Failure::from)?;
    let found: Option<i32> = tx
        .query_one("SELECT max(version) FROM sudomode_schema", &[])
        .await
        .map_err(Failure::from)?
        .get(0);
    let found = found.unwrap_or(0);
    if found > VERSION {
        return Err(StoreError::Storage(format!(
            "the PostgreSQL schema is version {found}, newer than this SudoMode knows \
             (version {VERSION}): upgrade SudoMode on this replica (another replica runs a newer one)"
        )));
    }
    for (v, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.batch_execute(&sql.replace("$GENESIS", GENESIS_HASH))
            .await
            .map_err(Failure::from)?;
        tracing::info!(version = v + 1, "PostgreSQL schema migrated");
    }
    // Rows of replicas gone for a week (each start is a new replica).
    tx.execute(
        "DELETE FROM sudomode_replicas WHERE flushed_at < now() - interval '7 days'",
        &[],
    )
    .await
    .map_err(Failure::from)?;
    if found < VERSION {
        tx.execute("DELETE FROM sudomode_schema", &[])
            .await
            .map_err(Failure::from)?;
        tx.execute("INSERT INTO sudomode_schema VALUES ($1)", &[&VERSION])
            .await
            .map_err(Failure::from)?;
    }
    tx.commit().await.map_err(Failure::from)?;
    Ok(())
}
