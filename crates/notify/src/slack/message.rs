//! Block Kit messages for pending and decided requests, with mrkdwn escaping of agent-controlled text.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{ACTION_APPROVE, ACTION_REJECT, ACTIONS_BLOCK_PREFIX};

/// Longest rendering of one argument value (characters, before escaping).
const MAX_VALUE_CHARS: usize = 200;
/// Longest SQL shown (characters, before escaping).
const MAX_SQL_CHARS: usize = 600;
/// Most arguments listed.
const MAX_ARGS: usize = 6;
/// Arguments shown first when present (after a Stripe amount).
const KEY_ARGS: [&str; 5] = ["sql", "bucket", "key", "TableName", "region"];
/// Mention keywords neutralised when they follow `@`.
const MENTIONS: [&str; 3] = ["channel", "here", "everyone"];
/// Zero-width space inserted after `@` in `@channel`-style text.
const ZWSP: char = '\u{200B}';

/// Characters left unescaped in a URL path segment (RFC 3986 unreserved).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Escape text for Slack mrkdwn: `&`, `<`, `>` become entities (so no link,
/// mention or `<!channel>` can be injected) and `@channel` / `@here` /
/// `@everyone` get a zero-width space after the `@`.
pub fn escape_mrkdwn(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for (i, c) in s.char_indices() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '@' => {
                out.push('@');
                let rest = &s[i + 1..];
                if MENTIONS.iter().any(|m| {
                    rest.get(..m.len())
                        .is_some_and(|head| head.eq_ignore_ascii_case(m))
                }) {
                    out.push(ZWSP);
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// Truncate to at most `max` characters, ending with `…` when cut.
fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_string(),
        Some((idx, _)) => {
            let cut = s[..idx]
                .char_indices()
                .nth(max.saturating_sub(1))
                .map_or(idx, |(i, _)| i);
            format!("{}…", &s[..cut])
        }
    }
}

/// Escaped, truncated text.
fn text(s: &str, max: usize) -> String {
    escape_mrkdwn(&truncate(s, max))
}

/// Inline code span: escaped, truncated, backticks replaced so the span cannot be closed early.
fn code(s: &str, max: usize) -> String {
    let t = truncate(s, max).replace('`', "\u{02CB}");
    if t.is_empty() {
        return "_(empty)_".to_string();
    }
    format!("`{}`", escape_mrkdwn(&t))
}

/// Code block, same rules as [`code`].
fn code_block(s: &str, max: usize) -> String {
    let t = truncate(s, max).replace('`', "\u{02CB}");
    format!("```{}```", escape_mrkdwn(&t))
}

fn str_field<'a>(req: &'a Value, key: &str) -> &'a str {
    req.get(key).and_then(Value::as_str).unwrap_or("")
}

fn render_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "null".to_string(),
        other => other.to_string(),
    }
}

const ZERO_DECIMAL: [&str; 16] = [
    "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV",
    "XAF", "XOF", "XPF",
];
const THREE_DECIMAL: [&str; 5] = ["BHD", "JOD", "KWD", "OMR", "TND"];

fn group_thousands(n: u128) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Format a Stripe amount (minor units) as money: `2500`, `usd` → `25.00 USD`.
pub fn format_money(amount_minor: i64, currency: &str) -> String {
    let cur = currency.to_ascii_uppercase();
    let decimals: u32 = if ZERO_DECIMAL.contains(&cur.as_str()) {
        0
    } else if THREE_DECIMAL.contains(&cur.as_str()) {
        3
    } else {
        2
    };
    let sign = if amount_minor < 0 { "-" } else { "" };
    let abs = u128::from(amount_minor.unsigned_abs());
    let scale = 10u128.pow(decimals);
    let whole = group_thousands(abs / scale);
    let cur = if cur.is_empty() {
        String::new()
    } else {
        format!(" {cur}")
    };
    if decimals == 0 {
        format!("{sign}{whole}{cur}")
    } else {
        let frac = abs % scale;
        format!(
            "{sign}{whole}.{frac:0width$}{cur}",
            width = decimals as usize
        )
    }
}

/// The key arguments as mrkdwn lines (escaped).
fn key_args_lines(req: &Value) -> Vec<String> {
    let Some(args) = req.get("args").and_then(Value::as_object) else {
        return Vec::new();
    };
    let resource = str_field(req, "resource");
    let mut lines = Vec::new();
    let mut shown: Vec<&str> = Vec::new();

    // Stripe amounts as money.
    if resource.starts_with("stripe.")
        && let Some(amount) = args.get("amount").and_then(Value::as_i64)
    {
        let currency = args.get("currency").and_then(Value::as_str).unwrap_or("");
        let money = if currency.is_empty() {
            format!("{amount} (minor units)")
        } else {
            format_money(amount, currency)
        };
        lines.push(format!("• *amount:* {}", text(&money, 60)));
        shown.push("amount");
        if args.contains_key("currency") {
            shown.push("currency");
        }
    }
    for key in KEY_ARGS {
        if let Some(v) = args.get(key) {
            if key == "sql" {
                lines.push(format!(
                    "• *sql:*\n{}",
                    code_block(&render_value(v), MAX_SQL_CHARS)
                ));
            } else {
                lines.push(format!(
                    "• *{}:* {}",
                    key,
                    code(&render_value(v), MAX_VALUE_CHARS)
                ));
            }
            shown.push(key);
        }
    }
    let rest: Vec<(&String, &Value)> = args
        .iter()
        .filter(|(k, _)| !shown.contains(&k.as_str()))
        .collect();
    let room = MAX_ARGS.saturating_sub(lines.len());
    for (k, v) in rest.iter().take(room) {
        lines.push(format!(
            "• *{}:* {}",
            text(k, 60),
            code(&render_value(v), MAX_VALUE_CHARS)
        ));
    }
    if rest.len() > room {
        lines.push(format!("_…and {} more_", rest.len() - room));
    }
    lines
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

/// Blocks common to the pending and decided messages.
fn body_blocks(req: &Value, public_url: &str, title: &str) -> Vec<Value> {
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
                code(str_field(req, "url"), 200),
            ) + &mcp_tool_line(req)),
        }),
    ];
    let args = key_args_lines(req);
    if !args.is_empty() {
        blocks.push(json!({
            "type": "section",
            "text": mrkdwn(format!("*Key arguments*\n{}", args.join("\n"))),
        }));
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
    let link = escape_mrkdwn(&dashboard_link(public_url, id)).replace('|', "%7C");
    blocks.push(json!({
        "type": "context",
        "elements": [mrkdwn(format!("<{link}|Open in dashboard> · request {}", code(id, 80)))],
    }));
    blocks
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

/// The Block Kit message (`{"text", "blocks"}`) for a pending request, with
/// Approve / Reject buttons whose `value` is the request id.
pub fn pending_message(request: &Value, public_url: &str) -> Value {
    let id = str_field(request, "id");
    let mut blocks = body_blocks(request, public_url, "🔐 Approval needed");
    blocks.push(json!({
        "type": "actions",
        "block_id": block_id(ACTIONS_BLOCK_PREFIX, id),
        "elements": [
            {
                "type": "button",
                "action_id": ACTION_APPROVE,
                "style": "primary",
                "text": {"type": "plain_text", "text": "Approve", "emoji": true},
                "value": id,
                "confirm": {
                    "title": {"type": "plain_text", "text": "Approve this request?"},
                    "text": {"type": "mrkdwn", "text": "The exact request shown will be forwarded upstream with real credentials."},
                    "confirm": {"type": "plain_text", "text": "Approve"},
                    "deny": {"type": "plain_text", "text": "Cancel"}
                }
            },
            {
                "type": "button",
                "action_id": ACTION_REJECT,
                "style": "danger",
                "text": {"type": "plain_text", "text": "Reject", "emoji": true},
                "value": id
            }
        ]
    }));
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
    let mut blocks = body_blocks(request, public_url, title);
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

    fn buttons(msg: &Value) -> Vec<Value> {
        let blocks = msg["blocks"].as_array().unwrap();
        let actions = blocks.iter().find(|b| b["type"] == "actions").unwrap();
        assert_eq!(actions["block_id"], "sudomode_actions:req_01H");
        actions["elements"].as_array().unwrap().clone()
    }

    #[test]
    fn pending_has_both_buttons_with_id() {
        let msg = pending_message(&request(), "https://sudo.example.com/");
        let b = buttons(&msg);
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
    fn escape_rules() {
        assert_eq!(escape_mrkdwn("a<b>&c"), "a&lt;b&gt;&amp;c");
        assert_eq!(
            escape_mrkdwn("@Channel @here @everyone"),
            "@\u{200B}Channel @\u{200B}here @\u{200B}everyone"
        );
        assert_eq!(escape_mrkdwn("bob@example.com"), "bob@example.com");
        assert_eq!(escape_mrkdwn("&amp;"), "&amp;amp;");
    }

    #[test]
    fn truncates_long_values() {
        let mut r = request();
        r["args"]["description"] = Value::String("x".repeat(5000));
        r["args"]["sql"] = Value::String(format!("SELECT `a` FROM t WHERE {}", "y".repeat(5000)));
        let s = all_text(&pending_message(&r, "http://h"));
        assert!(!s.contains(&"x".repeat(MAX_VALUE_CHARS + 1)));
        assert!(!s.contains(&"y".repeat(MAX_SQL_CHARS + 1)));
        assert!(s.contains('…'));
        assert!(!s.contains("`a`"), "backticks in values are neutralised");
        assert_eq!(truncate("héllo", 3), "hé…");
        assert_eq!(truncate("héllo", 5), "héllo");
    }

    #[test]
    fn key_args_selection() {
        let r = json!({"id": "r", "resource": "sql", "action": "drop",
            "args": {"database": "db.neon.tech", "sql": "DROP TABLE users", "tables": ["users"], "has_where": false}});
        let lines = key_args_lines(&r);
        assert!(
            lines[0].starts_with("• *sql:*\n```DROP TABLE users```"),
            "{lines:?}"
        );
        let r = json!({"id": "r", "resource": "aws.dynamodb", "action": "DeleteTable",
            "args": {"region": "us-east-1", "TableName": "prod"}});
        let lines = key_args_lines(&r);
        assert_eq!(lines[0], "• *TableName:* `prod`");
        let many: Map<String, Value> = (0..10).map(|i| (format!("k{i}"), json!(i))).collect();
        let r = json!({"id": "r", "resource": "http.x", "action": "post", "args": many});
        let lines = key_args_lines(&r);
        assert_eq!(lines.len(), MAX_ARGS + 1);
        assert_eq!(lines[MAX_ARGS], "_…and 4 more_");
    }

    #[test]
    fn money() {
        assert_eq!(format_money(2500, "usd"), "25.00 USD");
        assert_eq!(format_money(5, "eur"), "0.05 EUR");
        assert_eq!(format_money(-123456789, "gbp"), "-1,234,567.89 GBP");
        assert_eq!(format_money(5000, "jpy"), "5,000 JPY");
        assert_eq!(format_money(1230, "kwd"), "1.230 KWD");
        assert_eq!(
            format_money(i64::MIN, "usd"),
            "-92,233,720,368,547,758.08 USD"
        );
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
        assert!(
            !msg["blocks"]
                .as_array()
                .unwrap()
                .iter()
                .any(|b| b["type"] == "actions")
        );
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
