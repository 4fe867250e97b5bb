//! Parsing of Slack interaction payloads (`block_actions` button presses on SudoMode messages).

use serde::Deserialize;

use super::{ACTION_APPROVE, ACTION_APPROVE_GRANT, ACTION_REJECT};
use crate::error::InteractionError;

/// What the operator pressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The Approve button (`sudomode_approve`).
    Approve,
    /// "Approve for 1 h" (`sudomode_approve_grant`): approve and allow the
    /// same agent and intent for an hour.
    ApproveForAnHour,
    /// The Reject button (`sudomode_reject`).
    Reject,
}

/// A parsed button press. The caller must still verify the signature
/// (before parsing) and map `user_id` to an operator with the approver role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interaction {
    /// Slack user id of the presser (`user.id`).
    pub user_id: String,
    /// Approve or reject.
    pub decision: Decision,
    /// The SudoMode request id (the button's `value`).
    pub request_id: String,
    /// Where to post the message update / an ephemeral reply (secret-ish: do not log).
    pub response_url: Option<String>,
    /// Channel id of the message (`container.channel_id`, else `channel.id`).
    pub channel: Option<String>,
    /// Timestamp of the message (`container.message_ts`, else `message.ts`).
    pub message_ts: Option<String>,
}

#[derive(Deserialize)]
struct Payload {
    #[serde(rename = "type")]
    kind: Option<String>,
    user: Option<IdOnly>,
    #[serde(default)]
    actions: Vec<Action>,
    response_url: Option<String>,
    container: Option<Container>,
    channel: Option<IdOnly>,
    message: Option<Message>,
}

#[derive(Deserialize)]
struct IdOnly {
    id: Option<String>,
}

#[derive(Deserialize)]
struct Action {
    action_id: Option<String>,
    value: Option<String>,
}

#[derive(Deserialize)]
struct Container {
    channel_id: Option<String>,
    message_ts: Option<String>,
}

#[derive(Deserialize)]
struct Message {
    ts: Option<String>,
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|v| !v.is_empty())
}

/// Parse the raw body of `POST /slack/interactions`
/// (`application/x-www-form-urlencoded`, `payload=<JSON>`).
///
/// Call [`crate::verify_slack_signature`] on the same bytes first.
pub fn parse_interaction(body: &[u8]) -> Result<Interaction, InteractionError> {
    let payload = url::form_urlencoded::parse(body)
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| v.into_owned())
        .ok_or(InteractionError::MissingPayload)?;
    parse_interaction_payload(&payload)
}

/// Parse the decoded `payload` JSON of a Slack interaction.
pub fn parse_interaction_payload(json: &str) -> Result<Interaction, InteractionError> {
    let p: Payload =
        serde_json::from_str(json).map_err(|e| InteractionError::InvalidJson(e.to_string()))?;
    let kind = p.kind.unwrap_or_default();
    if kind != "block_actions" {
        return Err(InteractionError::UnsupportedType(kind));
    }
    let user_id =
        non_empty(p.user.and_then(|u| u.id)).ok_or(InteractionError::MissingField("user.id"))?;
    let action = p
        .actions
        .into_iter()
        .next()
        .ok_or(InteractionError::MissingField("actions"))?;
    let action_id = non_empty(action.action_id)
        .ok_or(InteractionError::MissingField("actions[0].action_id"))?;
    let decision = match action_id.as_str() {
        ACTION_APPROVE => Decision::Approve,
        ACTION_APPROVE_GRANT => Decision::ApproveForAnHour,
        ACTION_REJECT => Decision::Reject,
        _ => return Err(InteractionError::UnknownAction(action_id)),
    };
    let request_id =
        non_empty(action.value).ok_or(InteractionError::MissingField("actions[0].value"))?;
    let (container_channel, container_ts) = match p.container {
        Some(c) => (non_empty(c.channel_id), non_empty(c.message_ts)),
        None => (None, None),
    };
    Ok(Interaction {
        user_id,
        decision,
        request_id,
        response_url: non_empty(p.response_url),
        channel: container_channel.or_else(|| non_empty(p.channel.and_then(|c| c.id))),
        message_ts: container_ts.or_else(|| non_empty(p.message.and_then(|m| m.ts))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A realistic block_actions payload as Slack sends it.
    fn slack_payload(action_id: &str, value: &str) -> serde_json::Value {
        json!({
            "type": "block_actions",
            "user": {"id": "U024BE7LH", "username": "alice", "name": "alice", "team_id": "T024BE7LD"},
            "api_app_id": "A02", "token": "Shh_its_a_seekrit",
            "container": {"type": "message", "message_ts": "1700000000.000100",
                          "channel_id": "C0SUDO", "is_ephemeral": false},
            "trigger_id": "12466734323.1395872398.8f58d0b9b4e7ad9d1d1e1bd7f36e8a5e",
            "team": {"id": "T024BE7LD", "domain": "acme"},
            "enterprise": null, "is_enterprise_install": false,
            "channel": {"id": "C0SUDO", "name": "approvals"},
            "message": {"type": "message", "ts": "1700000000.000100", "bot_id": "B01", "text": "Approval needed",
                        "blocks": []},
            "state": {"values": {}},
            "response_url": "https://hooks.slack.com/actions/T024BE7LD/6012345678/AbCdEf",
            "actions": [{"action_id": action_id, "block_id": "sudomode_actions:req_42",
                         "text": {"type": "plain_text", "text": "Approve", "emoji": true},
                         "value": value, "style": "primary", "type": "button",
                         "action_ts": "1700000010.123456"}]
        })
    }

    fn form(payload: &serde_json::Value) -> Vec<u8> {
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", &payload.to_string())
            .finish()
            .into_bytes()
    }

    #[test]
    fn parses_block_actions_approve_and_reject() {
        let i = parse_interaction(&form(&slack_payload("sudomode_approve", "req_42"))).unwrap();
        assert_eq!(
            i,
            Interaction {
                user_id: "U024BE7LH".into(),
                decision: Decision::Approve,
                request_id: "req_42".into(),
                response_url: Some(
                    "https://hooks.slack.com/actions/T024BE7LD/6012345678/AbCdEf".into()
                ),
                channel: Some("C0SUDO".into()),
                message_ts: Some("1700000000.000100".into()),
            }
        );
        let i = parse_interaction(&form(&slack_payload("sudomode_reject", "req_42"))).unwrap();
        assert_eq!(i.decision, Decision::Reject);
        let i =
            parse_interaction(&form(&slack_payload("sudomode_approve_grant", "req_42"))).unwrap();
        assert_eq!(i.decision, Decision::ApproveForAnHour);
    }

    #[test]
    fn falls_back_to_channel_and_message() {
        let mut p = slack_payload("sudomode_reject", "r1");
        p.as_object_mut().unwrap().remove("container");
        let i = parse_interaction(&form(&p)).unwrap();
        assert_eq!(i.channel.as_deref(), Some("C0SUDO"));
        assert_eq!(i.message_ts.as_deref(), Some("1700000000.000100"));
    }

    #[test]
    fn refuses_bad_payloads() {
        assert_eq!(
            parse_interaction(b"foo=bar"),
            Err(InteractionError::MissingPayload)
        );
        assert!(matches!(
            parse_interaction(b"payload=%7Bnot+json"),
            Err(InteractionError::InvalidJson(_))
        ));
        let mut p = slack_payload("sudomode_approve", "r1");
        p["type"] = json!("view_submission");
        assert_eq!(
            parse_interaction(&form(&p)),
            Err(InteractionError::UnsupportedType("view_submission".into()))
        );
        assert_eq!(
            parse_interaction(&form(&slack_payload("other_button", "r1"))),
            Err(InteractionError::UnknownAction("other_button".into()))
        );
        assert_eq!(
            parse_interaction(&form(&slack_payload("sudomode_approve", ""))),
            Err(InteractionError::MissingField("actions[0].value"))
        );
        let mut p = slack_payload("sudomode_approve", "r1");
        p["user"] = json!({});
        assert_eq!(
            parse_interaction(&form(&p)),
            Err(InteractionError::MissingField("user.id"))
        );
        let mut p = slack_payload("sudomode_approve", "r1");
        p["actions"] = json!([]);
        assert_eq!(
            parse_interaction(&form(&p)),
            Err(InteractionError::MissingField("actions"))
        );
    }
}
