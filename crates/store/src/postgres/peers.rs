//! Questions one replica asks the others, and their answers, over NOTIFY on
//! one channel: what only the replica where a call waits can answer (its
//! bytes never leave that process). An ask goes to every replica; those that
//! cannot answer stay silent, and the asker takes the first answer or none
//! within its deadline. Nothing here changes state: the asker decides with
//! the answer through the shared store as usual.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::oneshot;

use super::connect::Failure;
use super::{Postgres, Shared};
use crate::error::StoreError;

pub(super) const PEER_CHANNEL: &str = "sudomode_peers";
/// NOTIFY payloads must stay under 8000 bytes.
const MAX_PAYLOAD: usize = 7_900;

/// A question from another replica; answer it with [`crate::Storage::answer_peer`].
#[derive(Debug, Clone)]
pub struct PeerAsk {
    /// What is asked, as the asker wrote it.
    pub body: Value,
    from: String,
    nonce: String,
}

/// One NOTIFY on [`PEER_CHANNEL`]: an ask (`to` empty) or an answer to `to`.
#[derive(Serialize, Deserialize)]
struct Wire {
    from: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    to: Option<String>,
    nonce: String,
    body: Value,
}

/// The asks of this replica still waiting, by nonce.
#[derive(Default)]
pub(super) struct Waiting(Mutex<HashMap<String, oneshot::Sender<Value>>>);

impl Waiting {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<Value>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Removes an ask from [`Waiting`] however the asker ends (answered, timed
/// out, or its future dropped).
struct Forget<'a>(&'a Waiting, &'a str);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.0.lock().remove(self.1);
    }
}

impl Postgres {
    /// Asks the other replicas; the first answer within `within`, or `None`.
    pub(crate) async fn ask_peers(
        &self,
        body: Value,
        within: Duration,
    ) -> Result<Option<Value>, StoreError> {
        let shared = &self.shared;
        let nonce = crate::new_request_id();
        let payload = encode(&Wire {
            from: shared.replica.clone(),
            to: None,
            nonce: nonce.clone(),
            body,
        })?;
        let (tx, rx) = oneshot::channel();
        shared.waiting.lock().insert(nonce.clone(), tx);
        let _forget = Forget(&shared.waiting, &nonce);
        notify(shared, &payload).await?;
        Ok(tokio::time::timeout(within, rx)
            .await
            .ok()
            .and_then(Result::ok))
    }

    /// Answers `ask` (to its replica only).
    pub(crate) async fn answer_peer(&self, ask: &PeerAsk, body: Value) -> Result<(), StoreError> {
        let payload = encode(&Wire {
            from: self.shared.replica.clone(),
            to: Some(ask.from.clone()),
            nonce: ask.nonce.clone(),
            body,
        })?;
        notify(&self.shared, &payload).await
    }

    /// A notification on [`PEER_CHANNEL`]: an answer to one of this replica's
    /// asks, or another replica's ask.
    pub(super) fn peer_message(&self, payload: &str) {
        let Ok(wire) = serde_json::from_str::<Wire>(payload) else {
            tracing::debug!("ignoring a malformed message on the replicas' channel");
            return;
        };
        let shared = &self.shared;
        if wire.from == shared.replica {
            return;
        }
        match wire.to {
            Some(to) if to == shared.replica => {
                if let Some(tx) = shared.waiting.lock().remove(&wire.nonce) {
                    let _ = tx.send(wire.body);
                }
            }
            Some(_) => {}
            None => shared.feeds.peer_ask(PeerAsk {
                body: wire.body,
                from: wire.from,
                nonce: wire.nonce,
            }),
        }
    }
}

fn encode(wire: &Wire) -> Result<String, StoreError> {
    let payload = serde_json::to_string(wire).map_err(|e| StoreError::Invalid(e.to_string()))?;
    if payload.len() > MAX_PAYLOAD {
        return Err(StoreError::Invalid(format!(
            "a message between replicas is limited to {MAX_PAYLOAD} bytes; this one has {}",
            payload.len()
        )));
    }
    Ok(payload)
}

async fn notify(shared: &Shared, payload: &str) -> Result<(), StoreError> {
    let run = async {
        let client = shared.pool.get().await?;
        client
            .execute("SELECT pg_notify($1, $2)", &[&PEER_CHANNEL, &payload])
            .await?;
        Ok::<(), Failure>(())
    };
    run.await.map_err(|f| shared.error(f))
}
