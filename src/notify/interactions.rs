//! `POST /slack/interactions` (SPEC §10, §13.9): Approve / Reject button
//! presses from Slack.
//!
//! A press counts only with a valid, fresh `X-Slack-Signature` over the raw
//! body and from a Slack user mapped to an operator who may decide. Slack
//! wants an answer within 3 s, so the handler records the decision and
//! answers; messages to Slack (refusals, the updated message) are sent from
//! spawned tasks.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use sudomode_notify::{
    Decision, Interaction, MessageRef, SLACK_SIGNATURE_HEADER, SLACK_TIMESTAMP_HEADER,
    SlackNotifier, UpdateTarget, parse_interaction,
};
use sudomode_store::Status;
use time::OffsetDateTime;

use super::{Notifications, request_json};
use crate::dashboard::error::ApiError;
use crate::grants::{self, GrantError, GrantTerms};
use crate::hold::{Approval, HoldError};
use crate::state::State;

/// Reason recorded with decisions made from Slack.
const VIA_SLACK: &str = "via Slack";

/// Slack's interaction payloads carry the whole message; far below this.
const MAX_BODY: usize = 1 << 20;

struct Ctx {
    state: Arc<State>,
    notifications: Arc<Notifications>,
}

/// The Slack interaction route, to be merged into the dashboard router.
pub fn routes(state: Arc<State>, notifications: Arc<Notifications>) -> Router {
    Router::new()
        .route("/slack/interactions", post(interaction))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(Arc::new(Ctx {
            state,
            notifications,
        }))
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> &'h str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

async fn interaction(AxState(ctx): AxState<Arc<Ctx>>, headers: HeaderMap, body: Bytes) -> Response {
    // Without a signing secret nothing from Slack can be trusted: the route
    // does not exist.
    let Some(slack) = ctx
        .notifications
        .slack()
        .filter(|s| s.config().signing_secret.is_some())
    else {
        return ApiError::NotFound("Slack interactions are not configured".into()).into_response();
    };
    let now = OffsetDateTime::now_utc().unix_timestamp();
    if let Err(e) = slack.verify(
        header_str(&headers, SLACK_TIMESTAMP_HEADER),
        header_str(&headers, SLACK_SIGNATURE_HEADER),
        &body,
        now,
    ) {
        // The body is untrusted and may carry anything: never logged.
        tracing::warn!(target: "sudomode::notify", reason = %e, "Slack interaction refused");
        return ApiError::Unauthorized(e.to_string()).into_response();
    }
    let press = match parse_interaction(&body) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(target: "sudomode::notify", error = %e, "unusable Slack interaction");
            return ApiError::bad_request(e.to_string()).into_response();
        }
    };
    let operator = ctx
        .state
        .config
        .operators
        .iter()
        .find(|o| o.slack_user_id.as_deref() == Some(press.user_id.as_str()));
    let Some(operator) = operator.filter(|o| o.role.can_decide()) else {
        tracing::warn!(
            target: "sudomode::notify",
            slack_user = %press.user_id,
            request = %press.request_id,
            operator = operator.map(|o| o.name.as_str()).unwrap_or(""),
            "Slack button press from a user who may not decide"
        );
        let text = match operator {
            Some(o) => format!(
                "You are signed in to SudoMode as {} ({}), which cannot approve or reject requests.",
                o.name,
                o.role.as_str()
            ),
            None => "Your Slack account is not mapped to a SudoMode approver; nothing was changed."
                .to_string(),
        };
        ephemeral(slack, &press, text);
        return StatusCode::OK.into_response();
    };
    // Remember where the message is before deciding, so the announcement of
    // the decision can `chat.update` it even if this process did not post it
    // (e.g. after a restart).
    let seeded = seed_message(&ctx.notifications, &press);
    // With a bot token and a known message, the decision's announcement
    // updates the message (`chat.update`), as for dashboard decisions: one
    // update, not two. Otherwise the response_url is the only way. Decided
    // before deciding, since the announcement may be handled (and the
    // message forgotten) before `approve` even returns here.
    let loop_updates =
        slack.has_bot_token() && ctx.notifications.message_ref(&press.request_id).is_some();
    let id = press.request_id.as_str();
    let result = match press.decision {
        Decision::Approve => ctx
            .state
            .core
            .holds
            .approve(id, &operator.name, Some(VIA_SLACK.to_string()))
            .await
            .map(Some),
        Decision::ApproveForAnHour => {
            approve_for_an_hour(&ctx.state, id, &operator.name, slack, &press).await
        }
        Decision::Reject => ctx
            .state
            .core
            .holds
            .reject(id, &operator.name, Some(VIA_SLACK.to_string()))
            .await
            .map(Some),
    };
    let record = match result {
        Ok(Some(r)) => r,
        Ok(None) => {
            if seeded {
                ctx.notifications.forget_message(id);
            }
            return StatusCode::OK.into_response();
        }
        Err(e) => {
            if seeded {
                ctx.notifications.forget_message(id);
            }
            return match e {
                HoldError::NotPending(status) => {
                    ephemeral(
                        slack,
                        &press,
                        format!("This request was already decided: it is {status}."),
                    );
                    StatusCode::OK.into_response()
                }
                HoldError::NotFound => {
                    ephemeral(slack, &press, "SudoMode does not know this request.".into());
                    StatusCode::OK.into_response()
                }
                HoldError::Store(e) => ApiError::from(e).into_response(),
            };
        }
    };
    tracing::info!(
        target: "sudomode::notify",
        request = %id,
        operator = %operator.name,
        status = %record.status,
        "decided via Slack"
    );
    if record.status == Status::Pending {
        let text = format!(
            "Your approval was recorded ({} of {} needed).",
            record.approvals.len(),
            record.required_approvals.max(1)
        );
        ephemeral(slack, &press, text);
    } else if !loop_updates && let Some(url) = press.response_url.clone() {
        let slack = slack.clone();
        let request = request_json(&record);
        tokio::spawn(async move {
            // Failures are logged and counted by the notifier.
            let _ = slack
                .update_decided(UpdateTarget::ResponseUrl(&url), &request)
                .await;
        });
    }
    StatusCode::OK.into_response()
}

/// "Approve for 1 h": approves with a one-hour standing grant (SPEC §6.1,
/// §10) where the rule allows one; otherwise nothing changes and the presser
/// is told why (`None`).
async fn approve_for_an_hour(
    state: &State,
    id: &str,
    operator: &str,
    slack: &SlackNotifier,
    press: &Interaction,
) -> Result<Option<sudomode_store::RequestRecord>, HoldError> {
    let core = &state.core;
    let terms = GrantTerms {
        lasts: "1h".into(),
        max_uses: None,
        condition: None,
    };
    let (scope, terms) = match grants::for_approval(core, id, terms, Some(VIA_SLACK.into())).await {
        Ok(ok) => ok,
        Err(GrantError::Hold(e)) => return Err(e),
        Err(GrantError::Store(e)) => return Err(e.into()),
        Err(e) => {
            ephemeral(slack, press, format!("Nothing was changed: {e}"));
            return Ok(None);
        }
    };
    let grant_id = grants::new_id();
    let approval = Approval {
        reason: Some(VIA_SLACK.to_string()),
        grant: Some(grant_id.clone()),
        edit: None,
    };
    let record = core.holds.approve_with(id, operator, approval).await?;
    if let Err(e) = grants::create(core, scope, terms, operator, Some(id), Some(grant_id)).await {
        tracing::error!(target: "sudomode::notify", request = %id, error = %e, "the grant of a Slack approval could not be recorded");
        ephemeral(
            slack,
            press,
            "Approved, but the one-hour grant could not be recorded.".into(),
        );
    }
    Ok(Some(record))
}

/// Records the pressed message's location unless already known; true when
/// it was added here.
fn seed_message(n: &Notifications, press: &Interaction) -> bool {
    let (Some(channel), Some(ts)) = (press.channel.clone(), press.message_ts.clone()) else {
        return false;
    };
    if n.message_ref(&press.request_id).is_some() {
        return false;
    }
    n.remember_message(&press.request_id, MessageRef { channel, ts });
    true
}

/// Tells only the presser, via the interaction's response_url, in the background.
fn ephemeral(slack: &SlackNotifier, press: &Interaction, text: String) {
    let Some(url) = press.response_url.clone() else {
        return;
    };
    let slack = slack.clone();
    tokio::spawn(async move {
        // Failures are logged and counted by the notifier.
        let _ = slack.ephemeral_refusal(&url, &text).await;
    });
}
