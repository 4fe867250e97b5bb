//! Approve with edits across replicas (SPEC §6.2, §15): a held call's bytes
//! stay in the replica where it waits, so the replica an operator edits it
//! through asks the others ([`prepare_elsewhere`]); the one holding it
//! prepares the edit exactly as for its own operator ([`answer_edits`]) and
//! answers with the result, and the asker approves through the shared store.
//! The waiting replica forwards the edit the record carries, as it does for
//! any approval made elsewhere.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sudomode_store::PeerAsk;
use tokio::sync::{broadcast, watch};

use super::HoldError;
use super::edits::{ApprovedEdit, EditError, prepare_here};
use crate::state::State;

/// How long the asker waits for the replica holding the call. Only a call
/// whose replica stopped waits it out.
const ASK_WITHIN: Duration = Duration::from_secs(3);

/// The edit prepared by the replica where call `id` waits; `None` when no
/// replica answered (none holds it any more).
pub(super) async fn prepare_elsewhere(
    state: &State,
    id: &str,
    patch: &Value,
) -> Result<Option<ApprovedEdit>, EditError> {
    let ask = json!({"edit": {"id": id, "patch": patch}});
    let storage = state.core.recorder.storage();
    let answer = storage
        .ask_peers(ask, ASK_WITHIN)
        .await
        .map_err(|e| match e {
            sudomode_store::StoreError::Invalid(why) => EditError::Invalid(format!(
                "edits: too large to pass to the replica holding the call ({why})"
            )),
            other => EditError::Hold(HoldError::Store(other)),
        })?;
    answer.map(|a| from_wire(patch, a)).transpose()
}

/// Answers other replicas' asks for edits of calls held here, until shutdown.
pub async fn answer_edits(state: Arc<State>, mut shutdown: watch::Receiver<bool>) {
    let mut asks = state.core.recorder.storage().peer_asks();
    loop {
        tokio::select! {
            ask = asks.recv() => match ask {
                Ok(ask) => {
                    tokio::spawn(answer(state.clone(), ask));
                }
                // The asker of a missed ask waits out its deadline.
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = shutdown.changed() => return,
        }
    }
}

async fn answer(state: Arc<State>, ask: Arc<PeerAsk>) {
    let Some(edit) = ask.body.get("edit") else {
        return;
    };
    let (Some(id), Some(patch)) = (edit["id"].as_str(), edit.get("patch")) else {
        return;
    };
    // Silent when the call does not wait here: the replica where it does answers.
    let Some(result) = prepare_here(&state, id, patch.clone()).await else {
        return;
    };
    let storage = state.core.recorder.storage();
    let reply = to_wire(&result);
    if let Err(e) = storage.answer_peer(&ask, reply).await {
        tracing::warn!(request_id = %id, error = %e, "answering another replica's edit failed");
        if matches!(e, sudomode_store::StoreError::Invalid(_)) {
            let too_large = to_wire(&Err(EditError::NotEditable(
                "the edited call's arguments are too large to pass between replicas: approve it as it is, or reject it".into(),
            )));
            let _ = storage.answer_peer(&ask, too_large).await;
        }
    }
}

/// An answer as it travels: the edit's hash and arguments, or the error.
fn to_wire(result: &Result<ApprovedEdit, EditError>) -> Value {
    match result {
        Ok(e) => json!({"ok": {"body_sha256": e.body_sha256, "approved_args": e.approved_args}}),
        Err(EditError::Denied { rule, reason }) => {
            json!({"error": {"type": "denied", "rule": rule, "reason": reason}})
        }
        Err(EditError::Invalid(m)) => json!({"error": {"type": "invalid", "message": m}}),
        Err(e) => json!({"error": {"type": "not_editable", "message": e.to_string()}}),
    }
}

fn from_wire(patch: &Value, answer: Value) -> Result<ApprovedEdit, EditError> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    if let Some(ok) = answer.get("ok") {
        return Ok(ApprovedEdit {
            patch: patch.clone(),
            body_sha256: text(&ok["body_sha256"]),
            approved_args: ok["approved_args"].clone(),
        });
    }
    let e = &answer["error"];
    Err(match e["type"].as_str() {
        Some("denied") => EditError::Denied {
            rule: e["rule"].as_str().map(str::to_string),
            reason: text(&e["reason"]),
        },
        Some("invalid") => EditError::Invalid(text(&e["message"])),
        Some("not_editable") => EditError::NotEditable(text(&e["message"])),
        _ => EditError::NotEditable("the replica holding the call gave no usable answer".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_travel_unchanged() {
        let patch = json!({"amount": 2500});
        let edit = ApprovedEdit {
            patch: patch.clone(),
            body_sha256: "ab".repeat(32),
            approved_args: json!({"amount": 2500, "currency": "usd"}),
        };
        let back = from_wire(&patch, to_wire(&Ok(edit.clone()))).unwrap();
        assert_eq!(
            (back.patch, back.body_sha256, back.approved_args),
            (edit.patch, edit.body_sha256, edit.approved_args)
        );
        let denied = EditError::Denied {
            rule: Some("big".into()),
            reason: "too much".into(),
        };
        match from_wire(&patch, to_wire(&Err(denied))) {
            Err(EditError::Denied { rule, reason }) => {
                assert_eq!(
                    (rule.as_deref(), reason.as_str()),
                    (Some("big"), "too much")
                )
            }
            other => panic!("{other:?}"),
        }
        for e in [
            EditError::Invalid("bad".into()),
            EditError::NotEditable("no".into()),
        ] {
            let want = e.to_string();
            let kind = std::mem::discriminant(&e);
            let back = from_wire(&patch, to_wire(&Err(e))).unwrap_err();
            assert_eq!(
                (std::mem::discriminant(&back), back.to_string()),
                (kind, want)
            );
        }
        assert!(matches!(
            from_wire(&patch, json!({"nonsense": 1})),
            Err(EditError::NotEditable(_))
        ));
    }
}
