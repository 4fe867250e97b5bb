//! Block Kit messages for pending and decided requests (SPEC §10). Every
//! argument is shown (see [`super::args`]) and all agent-controlled text is
//! escaped (see [`super::text`]); when Slack's limits would hide any
//! argument, the buttons give way to "Review in the dashboard".

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::args::{arg_lines, header_lines, sections};
pub use super::money::format_money;
use super::text::{code, escape_mrkdwn, text};
use super::{ACTION_APPROVE, ACTION_APPROVE_GRANT, ACTION_REJECT, ACTIONS_BLOCK_PREFIX};

/// Slack's limit on blocks in one message.
const MAX_BLOCKS: usize = 50;
/// Blocks besides the arguments: header, request, headers, rule, link,
/// actions, decision — and one spare.
const OTHER_BLOCKS: usize = 8;
/// Longest URL shown (characters).
const MAX_URL_CHARS: usize = 500;

/// What the Approve button's confirmation says: no more than is shown.
const CONFIRM_TEXT: &str = "Forwards this request upstream with real credentials. \
Every argument is listed in the message; long values are cut and show their length.";

/// What the "Approve for 1 h" confirmation says.
const CONFIRM_GRANT_TEXT: &str = "Forwards this request, and for the next hour lets this agent \
make the same kind of call (same resource and action, any arguments) without asking. \
Revoke it any time on the dashboard's Grants page.";

/// Characters left unescaped in a URL path segment (RFC 3986 unreserved).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn str_field<'a>(req: &'a Value, key: &str) -> &'a str {
    req.get(key).and_then(Value::as_str).unwrap_or("")
}

fn expiry_text(req: &Value) -> String {
    let raw = str_field(req, "expires_at");
    if raw.is_empty() {
        return "—".to_string();
    }
    match OffsetDateTime::parse(raw, &Rfc3339) {
        Ok(t) => {
            let fallback = t.format(&Rfc3339).unwrap_or_default();
            format!(
                "<!date^{}^{{date_short_pretty}} at {{time}}|{}>",
                t.unix_timestamp(),
                escape_mrkdwn(&fallback)
            )
        }
        Err(_) => text(raw, 64),
    }
}

fn distinct_approvers(req: &Value) -> Vec<&str> {
    let mut names: Vec<&str> = Vec::new();
    if let Some(list) = req.get("approvals").and_then(Value::as_array) {
        for a in list {
            if let Some(op) = a.get("operator").and_then(Value::as_str)
                && !names.contains(&op)
            {
                names.push(op);
            }
        }
    }
    names
}

fn approvals_text(req: &Value) -> String {
    let required = req
        .get("required_approvals")
        .and_then(Value::as_u64)
        .unwrap_or(1);
    let have = distinct_approvers(req).len() as u64;
    let left = required.saturating_sub(have);
    if required <= 1 {
        format!("{left} needed")
    } else {
        format!("{left} of {required} still needed")
    }
}

/// Dashboard link for a request: `{public_url}/#/requests/{id}`.
pub fn dashboard_link(public_url: &str, id: &str) -> String {
    format!(
        "{}/#/requests/{}",
        public_url.trim_end_matches('/'),
        utf8_percent_encode(id, SEGMENT)
    )
}

/// The dashboard link as mrkdwn `<url|label>`.
fn link(public_url: &str, id: &str, label: &str) -> String {
    let url = escape_mrkdwn(&dashboard_link(public_url, id)).replace('|', "%7C");
    format!("<{url}|{label}>")
}

fn mrkdwn(s: String) -> Value {
    json!({"type": "mrkdwn", "text": s})
}

fn fallback_text(req: &Value, prefix: &str) -> String {
    format!(
        "{prefix}: {} wants {} · {}",
        text(str_field(req, "agent"), 80),
        text(str_field(req, "resource"), 80),
        text(str_field(req, "action"), 80)
    )
}

/// Blocks common to the pending and decided messages, and whether every
/// argument is in them.
fn body_blocks(req: &Value, public_url: &str, title: &str) -> (Vec<Value>, bool) {
    let id = str_field(req, "id");
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": title, "emoji": true}}),
        json!({
            "type": "section",
            "block_id": block_id("sudomode_request:", id),
            "text": mrkdwn(format!(
                "*Agent:* {}\n*Intent:* {} · {}\n*Request:* {} {}",
                code(str_field(req, "agent"), 80),
                code(str_field(req, "resource"), 100),
                code(str_field(req, "action"), 100),
                text(str_field(req, "method"), 10),
                code(str_field(req, "url"), MAX_URL_CHARS),
            ) + &mcp_tool_line(req)),
        }),
    ];
    let headers = header_lines(req);
    let mut complete = true;
    if !headers.is_empty() {
        let (h, left) = sections("Headers that change what runs", &headers, 1);
        complete &= left == 0;
        blocks.extend(h);
    }
    let args = arg_lines(req);
    complete &= args.complete;
    if !args.lines.is_empty() {
        let (mut a, left) = sections("Arguments", &args.lines, MAX_BLOCKS - OTHER_BLOCKS);
        if left > 0 {
            complete = false;
            a.push(json!({"type": "section", "text": mrkdwn(format!(
                "_…and {left} more argument lines: {}_",
                link(public_url, id, "review them in the dashboard")
            ))}));
        }
        blocks.extend(a);
    }
    blocks.push(json!({
        "type": "section",
        "fields": [
            mrkdwn(format!("*Rule*\n{}", code(str_field(req, "rule"), 100))),
            mrkdwn(format!("*Reason*\n{}", text(str_field(req, "reason"), 300))),
            mrkdwn(format!("*Expires*\n{}", expiry_text(req))),
            mrkdwn(format!("*Approvals*\n{}", approvals_text(req))),
        ],
    }));
    blocks.push(json!({
        "type": "context",
        "elements": [mrkdwn(format!(
            "{} · request {}",
            link(public_url, id, "Open in dashboard"),
            code(id, 80)
        ))],
    }));
    (blocks, complete)
}

/// `\n*Tool:* `send_payment` on MCP server `github`` for an MCP tool call.
fn mcp_tool_line(req: &Value) -> String {
    crate::mcp::tool_call(req)
        .map(|t| {
            format!(
                "\n*Tool:* {} on MCP server {}",
                code(t.tool, 100),
                code(t.server, 100)
            )
        })
        .unwrap_or_default()
}

fn block_id(prefix: &str, id: &str) -> String {
    // Slack limits block_id to 255 characters.
    let mut s = format!("{prefix}{id}");
    if s.len() > 255 {
        let mut end = 255;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Approving may also make a standing grant: the rule allows one and one
/// approver decides (SPEC §6.1).
fn grantable(req: &Value) -> bool {
    req.get("grantable").and_then(Value::as_bool) == Some(true)
        && req
            .get("required_approvals")
            .and_then(Value::as_u64)
            .unwrap_or(1)
            <= 1
}

fn grant_button(id: &str) -> Value {
    json!({
        "type": "button",
        "action_id": ACTION_APPROVE_GRANT,
        "text": {"type": "plain_text", "text": "Approve for 1 h", "emoji": true},
        "value": id,
        "confirm": {
            "title": {"type": "plain_text", "text": "Approve and allow for 1 h?"},
            "text": {"type": "mrkdwn", "text": CONFIRM_GRANT_TEXT},
            "confirm": {"type": "plain_text", "text": "Approve for 1 h"},
            "deny": {"type": "plain_text", "text": "Cancel"}
        }
    })
}

fn buttons(req: &Value) -> Value {
    let id = str_field(req, "id");
    let mut elements = vec![approve_button(id)];
    if grantable(req) {
        elements.push(grant_button(id));
    }
    elements.push(json!({
        "type": "button",
        "action_id": ACTION_REJECT,
        "style": "danger",
        "text": {"type": "plain_text", "text": "Reject", "emoji": true},
        "value": id
    }));
    json!({
        "type": "actions",
        "block_id": block_id(ACTIONS_BLOCK_PREFIX, id),
        "elements": elements,
    })
}

fn approve_button(id: &str) -> Value {
    json!({
        "type": "button",
        "action_id": ACTION_APPROVE,
        "style": "primary",
        "text": {"type": "plain_text", "text": "Approve", "emoji": true},
        "value": id,
        "confirm": {
            "title": {"type": "plain_text", "text": "Approve this request?"},
            "text": {"type": "mrkdwn", "text": CONFIRM_TEXT},
            "confirm": {"type": "plain_text", "text": "Approve"},
            "deny": {"type": "plain_text", "text": "Cancel"}
        }
    })
}

/// The Block Kit message (`{"text", "blocks"}`) for a pending request:
/// Approve / Reject buttons whose `value` is the request id, or, when not
/// every argument could be shown, a "Review in the dashboard" link.
pub fn pending_message(request: &Value, public_url: &str) -> Value {
    let id = str_field(request, "id");
    let (mut blocks, complete) = body_blocks(request, public_url, "🔐 Approval needed");
    if complete {
        blocks.push(buttons(request));
    } else {
        blocks.push(json!({
            "type": "section",
            "block_id": block_id("sudomode_review:", id),
            "text": mrkdwn(format!(
                "*{}*: not every argument fits in Slack, so decide there.",
                link(public_url, id, "Review in the dashboard")
            )),
        }));
    }
    json!({"text": fallback_text(request, "Approval needed"), "blocks": blocks})
}

/// The outcome line of a decided request, escaped mrkdwn.
pub fn decision_line(request: &Value) -> String {
    let status = str_field(request, "status");
    match status {
        "approved" | "completed" | "failed" => {
            let approvers = distinct_approvers(request);
            let reason = request
                .get("approvals")
                .and_then(Value::as_array)
                .and_then(|l| {
                    l.iter()
                        .rev()
                        .filter_map(|a| a.get("reason").and_then(Value::as_str))
                        .find(|r| !r.is_empty())
                })
                .unwrap_or("");
            let who = if approvers.is_empty() {
                "an operator".to_string()
            } else {
                approvers
                    .iter()
                    .map(|a| text(a, 60))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let mut line = format!("✅ Approved by {who}");
            if !reason.is_empty() {
                line.push_str(&format!(": {}", text(reason, 300)));
            }
            line.push_str(&grant_note(request));
            line
        }
        "rejected" => {
            let who = str_field(request, "rejected_by");
            let who = if who.is_empty() {
                "an operator".to_string()
            } else {
                text(who, 60)
            };
            let reason = str_field(request, "rejected_reason");
            let mut line = format!("❌ Rejected by {who}");
            if !reason.is_empty() {
                line.push_str(&format!(": {}", text(reason, 300)));
            }
            line
        }
        "expired" => "⌛ Expired".to_string(),
        "cancelled" => "🚫 Cancelled".to_string(),
        other => format!("Status: {}", text(other, 40)),
    }
}

/// "and allowed … again": the standing grant an approval made, if any.
fn grant_note(request: &Value) -> String {
    let grant = request
        .get("approvals")
        .and_then(Value::as_array)
        .and_then(|l| {
            l.iter()
                .find_map(|a| a.get("grant").and_then(Value::as_str))
        });
    match grant {
        Some(g) => format!(
            "\n🔁 …and allowed {} to make {} · {} calls without asking until the grant ({}) ends",
            code(str_field(request, "agent"), 80),
            code(str_field(request, "resource"), 100),
            code(str_field(request, "action"), 100),
            code(g, 80)
        ),
        None => String::new(),
    }
}

/// The Block Kit message for a decided request: the same details, with the
/// buttons replaced by who decided ("✅ Approved by alice: reason", "❌ Rejected by …", "⌛ Expired").
pub fn decided_message(request: &Value, public_url: &str) -> Value {
    let line = decision_line(request);
    let title = match str_field(request, "status") {
        "approved" | "completed" | "failed" => "✅ Approved",
        "rejected" => "❌ Rejected",
        "expired" => "⌛ Expired",
        "cancelled" => "🚫 Cancelled",
        _ => "SudoMode request",
    };
    let (mut blocks, _) = body_blocks(request, public_url, title);
    blocks.push(json!({
        "type": "section",
        "block_id": block_id("sudomode_decision:", str_field(request, "id")),
        "text": mrkdwn(line.clone()),
    }));
    let mut msg = Map::new();
    msg.insert(
        "text".into(),
        Value::String(format!("{} — {}", fallback_text(request, "SudoMode"), line)),
    );
    msg.insert("blocks".into(), Value::Array(blocks));
    Value::Object(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Value {
        json!({
            "id": "req_01H", "created_at": "2026-11-23T21:00:00Z", "agent": "billing-bot",
            "method": "POST", "url": "https://api.stripe.com/v1/charges",
            "resource": "stripe.charges", "action": "create",
            "args": {"amount": 250000, "currency": "usd",
                     "description": "<!channel> please <https://evil.example|click here> & @here now",
                     "customer": "cus_1"},
            "decision": "REQUIRE_APPROVAL", "rule": "big-charges", "reason": "amount > 1000 <@U123>",
            "status": "pending", "required_approvals": 2,
            "approvals": [{"operator": "alice", "at": "2026-11-23T21:01:00Z", "reason": "ok"}],
            "rejected_by": null, "expires_at": "2026-11-23T21:10:00Z",
            "upstream_status": null, "completed_at": null
        })
    }

    fn all_text(v: &Value) -> String {
        v.to_string()
    }

    fn actions(msg: &Value) -> Vec<Value> {
        let blocks = msg["blocks"].as_array().unwrap();
        blocks
            .iter()
            .filter(|b| b["type"] == "actions")
            .flat_map(|b| b["elements"].as_array().unwrap().clone())
            .collect()
    }

    #[test]
    fn the_grant_button_shows_only_where_the_rule_allows_a_grant() {
        let mut r = request();
        r["grantable"] = json!(true);
        assert_eq!(
            actions(&pending_message(&r, "http://h")).len(),
            2,
            "two approvers"
        );
        r["required_approvals"] = json!(1);
        let b = actions(&pending_message(&r, "http://h"));
        let ids: Vec<&str> = b.iter().map(|b| b["action_id"].as_str().unwrap()).collect();
        assert_eq!(
            ids,
            [
                "sudomode_approve",
                "sudomode_approve_grant",
                "sudomode_reject"
            ]
        );
        assert_eq!(b[1]["text"]["text"], "Approve for 1 h");
        assert_eq!(b[1]["value"], "req_01H");
        r["status"] = json!("approved");
        r["approvals"] =
            json!([{"operator": "alice", "at": "x", "reason": "via Slack", "grant": "g-1"}]);
        let line = decision_line(&r);
        assert!(
            line.starts_with("✅ Approved by alice: via Slack\n🔁"),
            "{line}"
        );
        assert!(line.contains("`g-1`"), "{line}");
    }

    #[test]
    fn pending_has_both_buttons_with_id() {
        let msg = pending_message(&request(), "https://sudo.example.com/");
        let b = actions(&msg);
        assert_eq!(b.len(), 2);
        assert_eq!(b[0]["action_id"], "sudomode_approve");
        assert_eq!(b[0]["style"], "primary");
        assert_eq!(b[0]["value"], "req_01H");
        assert_eq!(b[1]["action_id"], "sudomode_reject");
        assert_eq!(b[1]["style"], "danger");
        assert_eq!(b[1]["value"], "req_01H");
        let s = all_text(&msg);
        assert!(
            s.contains("<https://sudo.example.com/#/requests/req_01H|Open in dashboard>"),
            "{s}"
        );
        assert!(s.contains("2,500.00 USD"), "{s}");
        assert!(s.contains("big-charges"));
        assert!(s.contains("1 of 2 still needed"), "{s}");
        assert!(s.contains("<!date^"), "{s}");
        assert!(s.contains("billing-bot"));
        assert!(s.contains("stripe.charges"));
        assert!(!s.contains("exact request shown"), "{s}");
    }

    #[test]
    fn agent_text_is_escaped() {
        let msg = pending_message(&request(), "http://127.0.0.1:8081");
        let s = all_text(&msg);
        assert!(!s.contains("<!channel>"), "{s}");
        assert!(!s.contains("<https://evil"), "{s}");
        assert!(!s.contains("<@U123>"), "{s}");
        assert!(s.contains("&lt;!channel&gt;"), "{s}");
        assert!(s.contains("&lt;https://evil.example|click here&gt;"), "{s}");
        assert!(s.contains("&amp; @\u{200B}here"), "{s}");
        // The only `<` in the whole message are our own link and date tokens.
        let opens: Vec<&str> = s
            .match_indices('<')
            .map(|(i, _)| &s[i..(i + 8).min(s.len())])
            .collect();
        assert!(
            opens
                .iter()
                .all(|o| o.starts_with("<http://") || o.starts_with("<!date^")),
            "{opens:?}"
        );
    }

    #[test]
    fn truncates_long_values_with_their_length() {
        let mut r = request();
        r["args"]["description"] = Value::String("x".repeat(5000));
        r["args"]["sql"] = Value::String(format!("SELECT `a` FROM t WHERE {}", "y".repeat(5000)));
        let s = all_text(&pending_message(&r, "http://h"));
        assert!(!s.contains(&"x".repeat(201)));
        assert!(!s.contains(&"y".repeat(601)));
        assert!(s.contains("(5000 chars)"), "{s}");
        assert!(!s.contains("`a`"), "backticks in values are neutralised");
    }

    #[test]
    fn every_argument_is_listed() {
        let many: Map<String, Value> = (0..10).map(|i| (format!("k{i}"), json!(i))).collect();
        let r = json!({"id": "r", "resource": "http.x", "action": "post", "args": many});
        let s = all_text(&pending_message(&r, "http://h"));
        for i in 0..10 {
            assert!(s.contains(&format!("`k{i}`")), "{s}");
        }
        assert_eq!(actions(&pending_message(&r, "http://h")).len(), 2);
    }

    #[test]
    fn hidden_arguments_replace_the_buttons() {
        let items: Vec<Value> = (0..5000).map(|i| json!(format!("acct_{i}"))).collect();
        let r = json!({"id": "r", "resource": "http.x", "action": "post", "args": {"to": items}});
        let msg = pending_message(&r, "http://h");
        assert!(actions(&msg).is_empty());
        let blocks = msg["blocks"].as_array().unwrap();
        assert!(blocks.len() <= MAX_BLOCKS, "{}", blocks.len());
        assert!(all_text(&msg).contains("Review in the dashboard"));
    }

    #[test]
    fn headers_are_shown() {
        let mut r = request();
        r["headers"] = json!({"stripe-account": "acct_X"});
        let s = all_text(&pending_message(&r, "http://h"));
        assert!(s.contains("Headers that change what runs"), "{s}");
        assert!(s.contains("`stripe-account`: `acct_X`"), "{s}");
    }

    #[test]
    fn decided_variants() {
        let mut r = request();
        r["status"] = json!("approved");
        r["approvals"] = json!([
            {"operator": "alice", "at": "x", "reason": "looks fine"},
            {"operator": "<!channel>", "at": "y", "reason": null}
        ]);
        let msg = decided_message(&r, "http://h");
        let s = all_text(&msg);
        assert!(actions(&msg).is_empty());
        assert!(
            s.contains("✅ Approved by alice, &lt;!channel&gt;: looks fine"),
            "{s}"
        );

        r["status"] = json!("rejected");
        r["rejected_by"] = json!("bob");
        r["rejected_reason"] = json!("too much");
        assert_eq!(decision_line(&r), "❌ Rejected by bob: too much");
        r["status"] = json!("expired");
        assert_eq!(decision_line(&r), "⌛ Expired");
        assert!(all_text(&decided_message(&r, "http://h")).contains("⌛ Expired"));
    }

    #[test]
    fn link_encodes_id() {
        assert_eq!(
            dashboard_link("http://h:1/", "a/b c"),
            "http://h:1/#/requests/a%2Fb%20c"
        );
    }
}
