//! Notifications (SPEC §10): turns request changes announced by the
//! recorder into Slack messages (post, refresh, update once decided) and
//! signed webhooks, and serves Slack button presses (`interactions`).
//!
//! Nothing here may delay, block or lose a request: every Slack or webhook
//! call runs in a spawned task, failures are logged and counted
//! (`sudomode_notifications_total`), and the announcement loop only ever
//! does in-memory bookkeeping.

pub mod interactions;
pub mod settings;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Body;
use axum::extract::{Request, State as AxState};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::Value;
use sudomode_notify::{
    Channel, EventName, MessageRef, NotifyStats, SlackNotifier, UpdateTarget, WebhookDispatcher,
};
use sudomode_store::{RequestRecord, Status};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc, watch};

use crate::config::Config;
use crate::state::State;

/// Slack and webhook notifiers built from the configuration, plus what is
/// remembered about posted messages.
pub struct Notifications {
    slack: Option<SlackNotifier>,
    webhooks: WebhookDispatcher,
    /// Events at least one webhook subscribes to: lets the loop skip
    /// serialising records nobody will receive (allowed traffic is hot).
    webhook_events: Vec<EventName>,
    stats: Arc<NotifyStats>,
    /// Slack message of each open request (from `chat.postMessage`, or from
    /// a button press after a restart), so decisions can `chat.update` it.
    messages: Mutex<HashMap<String, MessageRef>>,
}

impl std::fmt::Debug for Notifications {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The notifiers' own Debug impls redact secrets.
        f.debug_struct("Notifications")
            .field("slack", &self.slack)
            .field("webhooks", &self.webhooks)
            .finish_non_exhaustive()
    }
}

impl Notifications {
    /// Builds the notifiers from `slack:` and `webhooks:`. Errors name the
    /// key (`slack.bot_token`, `webhooks[1].url`) and never a value.
    pub fn from_config(config: &Config) -> Result<Self, String> {
        let stats = Arc::new(NotifyStats::new());
        let slack = match &config.slack {
            None | Some(Value::Null) => None,
            Some(v) => {
                let cfg = settings::slack(v)?;
                let notifier = SlackNotifier::new(cfg, config.public_url())
                    .map_err(|e| format!("slack: {e}"))?
                    .with_stats(stats.clone());
                Some(notifier)
            }
        };
        let hooks = config
            .webhooks
            .iter()
            .enumerate()
            .map(|(i, v)| settings::webhook(i, v))
            .collect::<Result<Vec<_>, _>>()?;
        let mut webhook_events: Vec<EventName> = Vec::new();
        for e in hooks.iter().flat_map(|h| h.events.iter()) {
            if !webhook_events.contains(e) {
                webhook_events.push(*e);
            }
        }
        let webhooks = WebhookDispatcher::new(hooks)
            .map_err(|e| format!("webhooks: {e}"))?
            .with_stats(stats.clone());
        Ok(Notifications {
            slack,
            webhooks,
            webhook_events,
            stats,
            messages: Mutex::new(HashMap::new()),
        })
    }

    /// True when neither Slack nor any webhook is configured.
    pub fn is_empty(&self) -> bool {
        self.slack.is_none() && self.webhooks.is_empty()
    }

    /// The Slack notifier, when `slack:` is configured.
    pub fn slack(&self) -> Option<&SlackNotifier> {
        self.slack.as_ref()
    }

    /// `sudomode_notifications_total{channel,result}` in Prometheus text.
    pub fn render_metrics(&self) -> String {
        self.stats.render_prometheus()
    }

    fn messages(&self) -> MutexGuard<'_, HashMap<String, MessageRef>> {
        // Critical sections are single map operations; a poisoned lock
        // still holds a consistent map.
        match self.messages.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The Slack message posted for a request, if known.
    pub fn message_ref(&self, id: &str) -> Option<MessageRef> {
        self.messages().get(id).cloned()
    }

    /// Remembers where a request's message lives (keeps an existing entry).
    pub fn remember_message(&self, id: &str, msg: MessageRef) {
        self.messages().entry(id.to_string()).or_insert(msg);
    }

    fn forget_message(&self, id: &str) {
        self.messages().remove(id);
    }

    fn wants_webhook(&self, event: EventName) -> bool {
        self.webhook_events.contains(&event)
    }

    fn dispatch_webhook(&self, event: EventName, request: &Value) {
        // Handles are dropped on purpose: deliveries retry and count
        // themselves in the background.
        drop(self.webhooks.dispatch(event, request));
    }

    /// Counts a lost stretch of announcements once per configured channel.
    fn count_lag(&self) {
        if self.slack.is_some() {
            self.stats.record(Channel::Slack, false);
        }
        if !self.webhooks.is_empty() {
            self.stats.record(Channel::Webhook, false);
        }
    }
}

/// The SPEC §8 Request object: the record's serde form without the
/// internal retry key — the same shape the operator API answers with.
pub fn request_json(r: &RequestRecord) -> Value {
    let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.remove("retry_key");
    }
    v
}

/// One Slack call for one request's message, in order.
enum SlackJob {
    Post(Arc<Value>),
    Refresh(Arc<Value>),
    Decided(Arc<Value>),
}

/// What the loop remembers about a request it saw pending.
struct Tracked {
    status: Status,
    approvals: usize,
    /// Queue of this request's Slack worker (None once decided or without Slack).
    slack: Option<mpsc::UnboundedSender<SlackJob>>,
}

/// Subscribes now and follows the announcements in a task: subscribing
/// before the proxy accepts anything means no early request goes unnotified.
pub fn spawn(
    state: Arc<State>,
    notifications: Arc<Notifications>,
    shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    // Nothing to send: do not even subscribe, so the hot path's
    // announcements cost nothing extra. This replica's own changes: with
    // several replicas each notifies about what it did, so nothing is
    // posted or delivered twice; decisions taken elsewhere only update the
    // Slack messages posted here.
    let storage = state.core.recorder.storage();
    let changes =
        (!notifications.is_empty()).then(|| (storage.subscribe_own(), storage.held_elsewhere()));
    tokio::spawn(async move {
        if let Some((changes, elsewhere)) = changes {
            follow(changes, elsewhere, notifications, shutdown).await;
        }
    })
}

/// Follows the recorder's announcements until shutdown and notifies.
async fn follow(
    mut changes: broadcast::Receiver<Arc<RequestRecord>>,
    mut elsewhere: broadcast::Receiver<Arc<RequestRecord>>,
    notifications: Arc<Notifications>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tracked: HashMap<String, Tracked> = HashMap::new();
    loop {
        let record = tokio::select! {
            _ = shutdown.changed() => return,
            r = changes.recv() => r,
            Ok(r) = elsewhere.recv() => {
                decided_elsewhere(&mut tracked, r);
                continue;
            }
        };
        match record {
            Ok(record) => on_change(&notifications, &mut tracked, record),
            Err(RecvError::Lagged(n)) => {
                // The loop fell behind the broadcast buffer: those changes
                // are gone for notification purposes (the requests themselves
                // are unaffected).
                tracing::warn!(
                    target: "sudomode::notify",
                    missed = n,
                    "notifications fell behind; some request changes were not notified"
                );
                notifications.count_lag();
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// Bookkeeping for one announced record; spawns whatever must be sent.
fn on_change(
    n: &Arc<Notifications>,
    tracked: &mut HashMap<String, Tracked>,
    r: Arc<RequestRecord>,
) {
    let status = r.status;
    // Allowed requests are the hot path and have no event of their own.
    if status == Status::Allowed {
        return;
    }
    let previous = tracked.get(&r.id).map(|t| (t.status, t.approvals));
    let more_approvals = |prev: usize| status == Status::Pending && r.approvals.len() > prev;
    // Re-announcements of the same state (e.g. an approval's grant being
    // claimed) are not news; one more approval on a pending request is.
    if let Some((prev_status, prev_approvals)) = previous
        && prev_status == status
        && !more_approvals(prev_approvals)
    {
        return;
    }
    // A pending request with approvals that this process never saw
    // pending was held before a restart: its `pending` was already sent.
    let partial = status == Status::Pending && (previous.is_some() || !r.approvals.is_empty());
    let event = EventName::from_status(status.as_str()).filter(|_| !partial);
    let wants_webhook = event.is_some_and(|e| n.wants_webhook(e));
    let slack = n.slack.is_some();
    let slack_relevant = slack
        && matches!(
            status,
            Status::Pending
                | Status::Approved
                | Status::Rejected
                | Status::Expired
                | Status::Cancelled
        );
    if !wants_webhook && !slack_relevant {
        forget_if_final(tracked, &r);
        return;
    }
    let request = Arc::new(request_json(&r));
    if let Some(e) = event
        && wants_webhook
    {
        n.dispatch_webhook(e, &request);
    }
    match status {
        Status::Pending => {
            let t = tracked.entry(r.id.clone()).or_insert_with(|| Tracked {
                status,
                approvals: 0,
                slack: slack.then(|| spawn_slack_worker(n.clone(), r.id.clone())),
            });
            t.approvals = r.approvals.len();
            let job = if partial {
                SlackJob::Refresh(request)
            } else {
                SlackJob::Post(request)
            };
            if let Some(q) = &t.slack {
                let _ = q.send(job);
            }
        }
        Status::Approved | Status::Rejected | Status::Expired | Status::Cancelled => {
            match tracked.get_mut(&r.id).and_then(|t| t.slack.take()) {
                Some(q) => {
                    let _ = q.send(SlackJob::Decided(request));
                }
                // Held before a restart: the message is known only if a
                // button press told us where it is.
                None if slack && previous.is_none() => {
                    if let Some(msg) = n.message_ref(&r.id) {
                        let n = n.clone();
                        let id = r.id.clone();
                        tokio::spawn(async move {
                            update_decided(&n, &id, &msg, &request).await;
                        });
                    }
                }
                // Already decided (an approval whose grant lapsed): the
                // message already shows the decision.
                None => {}
            }
            let t = tracked.entry(r.id.clone()).or_insert_with(|| Tracked {
                status,
                approvals: 0,
                slack: None,
            });
            t.status = status;
            t.approvals = r.approvals.len();
        }
        _ => {}
    }
    forget_if_final(tracked, &r);
}

/// Another replica decided a request this one posted to Slack: the message
/// is updated from here, where it is known. (Its webhooks were sent there.)
fn decided_elsewhere(tracked: &mut HashMap<String, Tracked>, r: Arc<RequestRecord>) {
    if r.status == Status::Pending {
        return;
    }
    if let Some(q) = tracked.get_mut(&r.id).and_then(|t| t.slack.take()) {
        let _ = q.send(SlackJob::Decided(Arc::new(request_json(&r))));
    }
    forget_if_final(tracked, &r);
}

/// Drops the bookkeeping of a request that will not change any more.
/// (Approved requests stay until forwarded, so the re-announcement when
/// the grant is claimed is recognised as no news.)
fn forget_if_final(tracked: &mut HashMap<String, Tracked>, r: &RequestRecord) {
    let done = match r.status {
        Status::Allowed | Status::Pending => false,
        // An explicit intent (`/v1/govern`) is never forwarded, so its
        // approval is its last change.
        Status::Approved => r.is_explicit(),
        _ => true,
    };
    if done {
        // A running worker keeps its own queue and forgets the message
        // itself once its final update went out.
        tracked.remove(&r.id);
    }
}

/// One task per held request runs its Slack calls in order (post, then
/// refreshes, then the final update), so an update never overtakes the
/// post it edits, while a slow Slack only ever delays this one queue.
fn spawn_slack_worker(n: Arc<Notifications>, id: String) -> mpsc::UnboundedSender<SlackJob> {
    let (tx, mut rx) = mpsc::unbounded_channel::<SlackJob>();
    tokio::spawn(async move {
        let Some(slack) = n.slack.clone() else { return };
        while let Some(job) = rx.recv().await {
            match job {
                SlackJob::Post(request) => {
                    // Failures are logged and counted by the notifier.
                    if let Ok(Some(msg)) = slack.post_pending(&request).await {
                        n.remember_message(&id, msg);
                    }
                }
                SlackJob::Refresh(request) => {
                    if slack.has_bot_token()
                        && let Some(msg) = n.message_ref(&id)
                    {
                        let _ = slack.refresh_pending(&msg, &request).await;
                    }
                }
                SlackJob::Decided(request) => {
                    if let Some(msg) = n.message_ref(&id) {
                        update_decided(&n, &id, &msg, &request).await;
                    }
                    break;
                }
            }
        }
        n.forget_message(&id);
    });
    tx
}

/// `chat.update` of a decided request's message (needs the bot token; with
/// only an incoming webhook Slack offers no way to edit it).
async fn update_decided(n: &Notifications, id: &str, msg: &MessageRef, request: &Value) {
    let Some(slack) = &n.slack else { return };
    if slack.has_bot_token() {
        let _ = slack
            .update_decided(UpdateTarget::Message(msg), request)
            .await;
    }
    n.forget_message(id);
}

/// Middleware for the dashboard router: appends
/// `sudomode_notifications_total` to the `GET /metrics` answer, so the
/// counters appear there without the dashboard knowing about notifications.
pub async fn append_metrics(
    AxState(n): AxState<Arc<Notifications>>,
    req: Request,
    next: Next,
) -> Response {
    let is_metrics = req.method() == Method::GET && req.uri().path() == "/metrics";
    let resp = next.run(req).await;
    if !is_metrics || resp.status() != StatusCode::OK {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    // The metrics text is a few KiB; the cap only guards against surprises.
    match axum::body::to_bytes(body, 4 << 20).await {
        Ok(bytes) => {
            let mut text = bytes.to_vec();
            if !text.is_empty() && !text.ends_with(b"\n") {
                text.push(b'\n');
            }
            text.extend_from_slice(n.render_metrics().as_bytes());
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(text))
        }
        Err(e) => {
            tracing::warn!(target: "sudomode::notify", error = %e, "reading the metrics body failed");
            Response::from_parts(parts, Body::empty())
        }
    }
}
