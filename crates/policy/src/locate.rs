//! Finding where rules, tests and their fields are written (serde_yaml values carry no spans), and YAML error wording.

use crate::error::quote_name;

/// Where items of a top-level list (`rules:` / `tests:`) and their fields are
/// written, found by scanning the text (serde_yaml values carry no spans).
#[derive(Debug, Default, Clone)]
pub(crate) struct ItemLoc {
    pub(crate) line: usize,
    pub(crate) col: usize,
    pub(crate) fields: Vec<(String, usize, usize)>,
}

impl ItemLoc {
    pub(crate) fn field(&self, key: &str) -> (usize, usize) {
        self.fields
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, l, c)| (*l, *c))
            .unwrap_or((self.line, self.col))
    }
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_blank_or_comment(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#')
}

/// `key:` at the start of `s` (plain or quoted key).
fn key_of(s: &str) -> Option<&str> {
    let s = s.trim_end();
    let (k, rest) = if let Some(q) = s.strip_prefix('"') {
        let end = q.find('"')?;
        (&q[..end], &q[end + 1..])
    } else if let Some(q) = s.strip_prefix('\'') {
        let end = q.find('\'')?;
        (&q[..end], &q[end + 1..])
    } else {
        let end = s.find(':')?;
        (&s[..end], &s[end..])
    };
    if rest.starts_with(':') && (rest.len() == 1 || rest[1..].starts_with([' ', '\t'])) {
        Some(k.trim())
    } else {
        None
    }
}

/// Finds the items of the top-level list `list_key` and the lines of their keys.
pub(crate) fn locate_items(text: &str, list_key: &str) -> (Option<(usize, usize)>, Vec<ItemLoc>) {
    let lines: Vec<&str> = text.lines().collect();
    let mut items = Vec::new();
    let Some(start) = lines
        .iter()
        .position(|l| indent_of(l) == 0 && key_of(l) == Some(list_key))
    else {
        return (None, items);
    };
    let list_loc = Some((start + 1, 1));
    let mut item_indent: Option<usize> = None;
    let mut key_indent = 0usize;
    for (i, raw) in lines.iter().enumerate().skip(start + 1) {
        if is_blank_or_comment(raw) {
            continue;
        }
        let ind = indent_of(raw);
        let body = &raw[ind..];
        if ind == 0 && !body.starts_with('-') {
            break; // next top-level key
        }
        let is_item = body == "-" || body.starts_with("- ");
        if is_item && item_indent.is_none_or(|ii| ii == ind) {
            item_indent = Some(ind);
            let after = body[1..].trim_start_matches(' ');
            key_indent = ind + (body.len() - after.len());
            let mut loc = ItemLoc {
                line: i + 1,
                col: ind + 1,
                fields: Vec::new(),
            };
            if let Some(k) = key_of(after) {
                loc.fields.push((k.to_string(), i + 1, key_indent + 1));
            }
            items.push(loc);
            continue;
        }
        if let Some(last) = items.last_mut()
            && ind == key_indent
            && let Some(k) = key_of(body)
        {
            last.fields.push((k.to_string(), i + 1, ind + 1));
        }
    }
    (list_loc, items)
}

/// Strips serde_yaml's " at line N column M" (we print the location first).
pub(crate) fn yaml_message(e: &serde_yaml::Error) -> String {
    let s = e.to_string();
    let mut out = String::with_capacity(s.len());
    let mut rest = s.as_str();
    // Drop every " at line N column M".
    while let Some(i) = rest.find(" at line ") {
        out.push_str(&rest[..i]);
        let after = &rest[i + " at line ".len()..];
        let digits = |t: &str| t.len() - t.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let n = digits(after);
        let tail = &after[n..];
        rest = match tail.strip_prefix(" column ") {
            Some(t) => &t[digits(t)..],
            None => tail,
        };
    }
    out.push_str(rest);
    let mut out = redact_values(&out);
    if out.contains("while scanning an alias") {
        out.push_str(" (a glob starting with `*` must be quoted: resource: \"*\")");
    }
    out
}

/// serde's wording of a value (`string "…"`, ``integer `5` ``) → its kind only: a
/// file that is not a policy (a token, a key) must not be quoted back.
const VALUE_KINDS: &[(&str, char, char, &str)] = &[
    ("string \"", '"', '"', "a string"),
    ("integer `", '`', '`', "an integer"),
    ("floating point `", '`', '`', "a number"),
    ("boolean `", '`', '`', "a boolean"),
    ("char '", '\'', '\'', "a character"),
];

/// Replaces quoted values in a serde message by their kind, and long quoted names
/// (`` unknown field `…` ``) by their length.
fn redact_values(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    'scan: while !rest.is_empty() {
        for (lead, _, close, kind) in VALUE_KINDS {
            if let Some(after) = rest.strip_prefix(lead) {
                out.push_str(kind);
                rest = skip_quoted(after, *close);
                continue 'scan;
            }
        }
        if let Some(after) = rest.strip_prefix('`') {
            let end = after.find('`').unwrap_or(after.len());
            out.push_str(&quote_name(&after[..end]));
            rest = after.get(end + 1..).unwrap_or("");
            continue;
        }
        let c = rest.chars().next().unwrap_or(' ');
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// The text after a quoted value ending with `close` (backslash escapes skipped).
fn skip_quoted(s: &str, close: char) -> &str {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == close {
            return &s[i + c.len_utf8()..];
        }
    }
    ""
}

/// serde_yaml's message, with `rules[3]: ` replaced by the rule's name when
/// the text shows it (`rule "x": unknown field …`).
pub(crate) fn describe_yaml_error(text: &str, e: &serde_yaml::Error) -> String {
    let msg = yaml_message(e);
    for (list, what) in [("rules", "rule"), ("tests", "test")] {
        let prefix = format!("{list}[");
        let Some(rest) = msg.strip_prefix(&prefix) else {
            continue;
        };
        let Some((idx, tail)) = rest.split_once(']') else {
            continue;
        };
        let Ok(idx) = idx.parse::<usize>() else {
            continue;
        };
        let tail = tail
            .trim_start_matches('.')
            .trim_start_matches(':')
            .trim_start();
        let (_, items) = locate_items(text, list);
        let name = items.get(idx).and_then(|it| {
            let (l, c) = it.field("name");
            let raw = text.lines().nth(l.checked_sub(1)?)?;
            let after = raw.get(c.checked_sub(1)?..)?;
            let v = after.split_once(':')?.1.trim();
            let v = v
                .split(" #")
                .next()
                .unwrap_or(v)
                .trim()
                .trim_matches(['"', '\'']);
            (!v.is_empty() && it.fields.iter().any(|(k, _, _)| k == "name")).then(|| v.to_string())
        });
        return match name {
            Some(n) => format!("{what} {n:?}: {tail}"),
            None => format!("{what} #{}: {tail}", idx + 1),
        };
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate() {
        let text = "# c\nrules:\n  - name: a\n    resource: x\n\n    decision: ALLOW\n  - name: b\n    resource: y\ntests:\n- name: t\n  expect: DENY\n";
        let (_, r) = locate_items(text, "rules");
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].line, r[0].col), (3, 3));
        assert_eq!(r[0].field("name"), (3, 5));
        assert_eq!(r[0].field("decision"), (6, 5));
        assert_eq!(r[1].field("resource"), (8, 5));
        assert_eq!(r[1].field("nope"), (7, 3));
        let (_, t) = locate_items(text, "tests");
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].field("expect"), (11, 3));
    }

    #[test]
    fn values_are_not_quoted_back() {
        assert_eq!(
            redact_values(r#"invalid type: string "sk_live_\"x\" 123", expected struct RawFile"#),
            "invalid type: a string, expected struct RawFile"
        );
        assert_eq!(
            redact_values("invalid type: integer `12345`, expected a string"),
            "invalid type: an integer, expected a string"
        );
        let long = format!(
            "unknown field `{}`, expected `rules` or `tests`",
            "k".repeat(100)
        );
        assert_eq!(
            redact_values(&long),
            "unknown field (a name of 100 characters, not shown), expected `rules` or `tests`"
        );
        assert_eq!(
            redact_values("unknown field `rule`, expected `rules` or `tests`"),
            "unknown field `rule`, expected `rules` or `tests`"
        );
        for text in [
            "sk_live_ABCDEF0123456789",
            "- sk_live_ABCDEF0123456789",
            "12345678901234",
        ] {
            let e = serde_yaml::from_str::<std::collections::BTreeMap<String, String>>(text)
                .unwrap_err();
            let m = yaml_message(&e);
            assert!(!m.contains("ABCDEF") && !m.contains("12345678"), "{m}");
        }
    }

    #[test]
    fn key_parsing() {
        assert_eq!(key_of("name: x"), Some("name"));
        assert_eq!(key_of("name:"), Some("name"));
        assert_eq!(key_of("\"name\": x"), Some("name"));
        assert_eq!(key_of("url: https://x"), Some("url"));
        assert_eq!(key_of("https://x"), None);
    }
}
