//! Every argument of a request as mrkdwn lines (SPEC §10): nested values
//! flattened (`meta.route.hops[1].bank`), long values cut with their
//! length, Stripe amounts as money, SQL in a code block, and the headers
//! that change what runs. Lines are packed into as many section blocks as
//! Slack allows; when they do not all fit, the caller shows "Review in the
//! dashboard" instead of the buttons.

use serde_json::{Value, json};

use super::money::format_money;
use super::text::{code, code_block, text};

/// Longest rendering of one argument value (characters).
const MAX_VALUE_CHARS: usize = 200;
/// Longest argument name shown (characters).
const MAX_KEY_CHARS: usize = 100;
/// Longest SQL shown (characters).
const MAX_SQL_CHARS: usize = 600;
/// Slack's limit on a section's text.
pub const MAX_SECTION_CHARS: usize = 3000;
/// Lines flattened at most: beyond this nothing could be shown anyway.
const MAX_LINES: usize = 2_000;
/// Marker the store adds to arguments it kept truncated.
const TRUNCATED_KEY: &str = "sudomode_truncated";

/// Argument lines, and whether they are the whole of the arguments.
pub struct ArgLines {
    pub lines: Vec<String>,
    pub complete: bool,
}

/// Every argument of `req` as escaped mrkdwn lines.
pub fn arg_lines(req: &Value) -> ArgLines {
    let mut out = ArgLines {
        lines: Vec::new(),
        complete: true,
    };
    let Some(args) = req.get("args") else {
        return out;
    };
    let resource = req.get("resource").and_then(Value::as_str).unwrap_or("");
    if let Some(obj) = args.as_object() {
        if obj.contains_key(TRUNCATED_KEY) {
            // Stored cut: nobody sees the whole arguments.
            out.complete = false;
        }
        let money = resource.starts_with("stripe.");
        for (k, v) in obj {
            if money && k == "amount" && v.is_i64() {
                out.lines.push(amount_line(v, obj.get("currency")));
            } else if k == "sql" && v.is_string() {
                let sql = v.as_str().unwrap_or("");
                out.lines
                    .push(format!("• `sql`:\n{}", code_block(sql, MAX_SQL_CHARS)));
            } else {
                flatten(k, v, &mut out);
            }
        }
    } else {
        flatten("", args, &mut out);
    }
    out
}

fn amount_line(amount: &Value, currency: Option<&Value>) -> String {
    let n = amount.as_i64().unwrap_or_default();
    let currency = currency.and_then(Value::as_str).unwrap_or("");
    let money = if currency.is_empty() {
        format!("{n} (minor units)")
    } else {
        format_money(n, currency)
    };
    format!(
        "• `amount`: {} ({})",
        text(&money, 60),
        code(&n.to_string(), 40)
    )
}

/// One line per leaf, nested keys joined with `.` and `[i]`.
fn flatten(key: &str, v: &Value, out: &mut ArgLines) {
    if out.lines.len() >= MAX_LINES {
        out.complete = false;
        return;
    }
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (k, item) in map {
                let path = if key.is_empty() {
                    k.clone()
                } else {
                    format!("{key}.{k}")
                };
                flatten(&path, item, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, item) in items.iter().enumerate() {
                flatten(&format!("{key}[{i}]"), item, out);
            }
        }
        leaf => {
            let rendered = match leaf {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let name = if key.is_empty() { "(value)" } else { key };
            out.lines.push(format!(
                "• {}: {}",
                code(name, MAX_KEY_CHARS),
                code(&rendered, MAX_VALUE_CHARS)
            ));
        }
    }
}

/// The request's meaning-changing headers (`request.headers`) as lines.
pub fn header_lines(req: &Value) -> Vec<String> {
    let Some(headers) = req.get("headers").and_then(Value::as_object) else {
        return Vec::new();
    };
    headers
        .iter()
        .map(|(k, v)| {
            let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
            format!(
                "• {}: {}",
                code(k, MAX_KEY_CHARS),
                code(&v, MAX_VALUE_CHARS)
            )
        })
        .collect()
}

/// Section blocks holding `lines` under `title`, at most `max_blocks`;
/// the lines that did not fit are counted in the second value.
pub fn sections(title: &str, lines: &[String], max_blocks: usize) -> (Vec<Value>, usize) {
    let mut blocks = Vec::new();
    let mut current = format!("*{title}*");
    let mut placed = 0;
    for line in lines {
        if line.len() + title.len() + 3 > MAX_SECTION_CHARS {
            // Too long for any section (a value of escapes): left unshown.
            continue;
        }
        if current.len() + 1 + line.len() > MAX_SECTION_CHARS {
            if blocks.len() + 1 >= max_blocks {
                break;
            }
            blocks.push(section(std::mem::take(&mut current)));
        }
        if !current.is_empty() {
            current.push('\n');
        }
        current.push_str(line);
        placed += 1;
    }
    blocks.push(section(current));
    (blocks, lines.len() - placed)
}

fn section(text: String) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_values_are_flattened_and_all_shown() {
        let req = json!({"resource": "http.x", "args": {
            "meta": {"route": {"hops": ["x", {"bank": "DE89"}]}, "empty": {}},
            "a": 1, "b": null, "c": [], "d": "text"
        }});
        let l = arg_lines(&req);
        assert!(l.complete);
        assert_eq!(
            l.lines,
            vec![
                "• `meta.route.hops[0]`: `x`",
                "• `meta.route.hops[1].bank`: `DE89`",
                "• `meta.empty`: `{}`",
                "• `a`: `1`",
                "• `b`: `null`",
                "• `c`: `[]`",
                "• `d`: `text`",
            ]
        );
    }

    #[test]
    fn stripe_amount_sql_and_truncated_arguments() {
        let req =
            json!({"resource": "stripe.charges", "args": {"amount": 250000, "currency": "usd"}});
        let l = arg_lines(&req);
        assert_eq!(l.lines[0], "• `amount`: 2,500.00 USD (`250000`)");
        assert_eq!(l.lines[1], "• `currency`: `usd`");
        let req = json!({"resource": "sql", "args": {"sql": "DROP TABLE `t`\n-- x"}});
        assert_eq!(
            arg_lines(&req).lines[0],
            "• `sql`:\n```DROP TABLE ˋtˋ\n-- x```"
        );
        let req = json!({"args": {"blob": "x… [9 bytes]", TRUNCATED_KEY: {"bytes": 9}}});
        assert!(!arg_lines(&req).complete);
    }

    #[test]
    fn sections_respect_slacks_limits() {
        let lines: Vec<String> = (0..500)
            .map(|i| format!("• `k{i}`: `{}`", "v".repeat(100)))
            .collect();
        let (blocks, left) = sections("Arguments", &lines, 100);
        assert_eq!(left, 0);
        for b in &blocks {
            assert!(b["text"]["text"].as_str().unwrap().len() <= MAX_SECTION_CHARS);
        }
        let (blocks, left) = sections("Arguments", &lines, 3);
        assert_eq!(blocks.len(), 3);
        assert!(left > 0);
        let (_, left) = sections("A", &["x".repeat(MAX_SECTION_CHARS)], 3);
        assert_eq!(left, 1, "a line too long for Slack is not shown");
    }
}
