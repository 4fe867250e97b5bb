//! Parsing one policy file: YAML into raw structs (unknown fields refused with their location), then compiled rules and tests.

use serde::Deserialize;

use crate::condition::{Condition, excerpt};
use crate::error::{
    PolicyError, PolicyWarning, SHOWN_MAX, parse_duration, parse_positive_duration, quote_value,
};
use crate::glob::{Glob, GlobList};
use crate::locate::{ItemLoc, describe_yaml_error, locate_items};
use crate::testing::{PolicyTest, RawTest, compile_test};
use crate::{Mode, Rule, RuleName, Verdict};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    rules: Option<Vec<RawRule>>,
    #[serde(default)]
    tests: Option<Vec<RawTest>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Option<serde_yaml::Value>,
    description: Option<String>,
    resource: Option<serde_yaml::Value>,
    action: Option<serde_yaml::Value>,
    agent: Option<serde_yaml::Value>,
    host: Option<serde_yaml::Value>,
    method: Option<serde_yaml::Value>,
    path: Option<serde_yaml::Value>,
    /// `Some(Null)` for an empty `condition:` (refused), unlike a plain Option.
    #[serde(default, deserialize_with = "present")]
    condition: Option<serde_yaml::Value>,
    decision: Option<serde_yaml::Value>,
    reason: Option<String>,
    approvals: Option<serde_yaml::Value>,
    timeout: Option<serde_yaml::Value>,
    reply_after: Option<serde_yaml::Value>,
    mode: Option<serde_yaml::Value>,
    grantable: Option<serde_yaml::Value>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<serde_yaml::Value>, D::Error> {
    serde_yaml::Value::deserialize(d).map(Some)
}

/// A string or a list of strings → globs.
fn globs(v: &serde_yaml::Value, case_insensitive: bool) -> Result<GlobList, String> {
    use serde_yaml::Value as Y;
    let list: Vec<String> = match v {
        Y::String(s) => vec![s.clone()],
        Y::Sequence(seq) if !seq.is_empty() => {
            let mut out = Vec::with_capacity(seq.len());
            for item in seq {
                match item {
                    Y::String(s) => out.push(s.clone()),
                    other => {
                        return Err(format!(
                            "list items must be strings, got {}",
                            yaml_kind(other)
                        ));
                    }
                }
            }
            out
        }
        Y::Sequence(_) => return Err("empty list".to_string()),
        other => {
            return Err(format!(
                "must be a glob or a list of globs, got {}",
                yaml_kind(other)
            ));
        }
    };
    let mut out = Vec::with_capacity(list.len());
    for s in list {
        out.push(Glob::new(&s, case_insensitive).map_err(|e| format!("bad glob: {e}"))?);
    }
    Ok(GlobList(out))
}

fn yaml_kind(v: &serde_yaml::Value) -> &'static str {
    use serde_yaml::Value as Y;
    match v {
        Y::Null => "null",
        Y::Bool(_) => "a boolean",
        Y::Number(_) => "a number",
        Y::String(_) => "a string",
        Y::Sequence(_) => "a list",
        Y::Mapping(_) => "a mapping",
        Y::Tagged(_) => "a tagged value",
    }
}

pub(crate) fn scalar_string(v: &serde_yaml::Value) -> Option<String> {
    use serde_yaml::Value as Y;
    match v {
        Y::String(s) => Some(s.clone()),
        Y::Bool(b) => Some(b.to_string()),
        Y::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A rule's `timeout` or `reply_after`: a duration as written (`30s`, `10m`);
/// `reply_after` also takes `0` (answer nothing before the window ends).
fn hold_duration(
    key: &str,
    v: &serde_yaml::Value,
) -> Result<(std::time::Duration, String), String> {
    let text = scalar_string(v)
        .filter(|s| s.len() <= SHOWN_MAX)
        .ok_or_else(|| format!("`{key}` must be a duration such as 30s, 10m, 2h"))?;
    // `reply_after` may be zero (`0`, `0s`): answer nothing before the window ends.
    let parsed = if key == "reply_after" {
        if text.trim() == "0" {
            return Ok((std::time::Duration::ZERO, text));
        }
        parse_duration(&text)
    } else {
        parse_positive_duration(&text)
    };
    parsed
        .map(|d| (d, text))
        .map_err(|e| format!("`{key}`: {e}"))
}

/// Collects errors and warnings for one file.
pub(crate) struct FileCtx<'a> {
    pub(crate) file: &'a str,
    pub(crate) errors: &'a mut Vec<PolicyError>,
    pub(crate) warnings: &'a mut Vec<PolicyWarning>,
}

impl FileCtx<'_> {
    fn problem(&self, (line, column): (usize, usize), message: String) -> PolicyError {
        PolicyError {
            file: self.file.to_string(),
            line,
            column,
            message,
        }
    }

    pub(crate) fn err(&mut self, at: (usize, usize), message: String) {
        let e = self.problem(at, message);
        self.errors.push(e);
    }

    pub(crate) fn warn(&mut self, at: (usize, usize), message: String) {
        let w = PolicyWarning(self.problem(at, message));
        self.warnings.push(w);
    }
}

/// A scalar as quoted in a message (see [`quote_value`]).
fn shown(v: &serde_yaml::Value) -> String {
    scalar_string(v).map_or_else(|| yaml_kind(v).to_string(), |s| quote_value(&s))
}

pub(crate) struct Parsed {
    pub(crate) rules: Vec<Rule>,
    /// Every named rule, valid or not: (name, line, column).
    pub(crate) names: Vec<(String, usize, usize)>,
    pub(crate) tests: Vec<(PolicyTest, (usize, usize))>,
}

pub(crate) fn parse_file(
    env: &cel::Env,
    file: &str,
    text: &str,
    errors: &mut Vec<PolicyError>,
    warnings: &mut Vec<PolicyWarning>,
) -> Parsed {
    let mut out = Parsed {
        rules: Vec::new(),
        names: Vec::new(),
        tests: Vec::new(),
    };
    let mut cx = FileCtx {
        file,
        errors,
        warnings,
    };
    if text.trim().is_empty() {
        cx.err(
            (1, 1),
            "empty policy file: expected a `rules:` list".to_string(),
        );
        return out;
    }
    let raw: RawFile = match serde_yaml::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            let (l, c) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((1, 1));
            cx.err((l, c), describe_yaml_error(text, &e));
            return out;
        }
    };
    let (_, rule_locs) = locate_items(text, "rules");
    let (_, test_locs) = locate_items(text, "tests");
    let Some(raw_rules) = raw.rules else {
        cx.err((1, 1), "missing `rules:` list".to_string());
        return out;
    };
    for (i, rr) in raw_rules.into_iter().enumerate() {
        let loc = rule_locs.get(i).cloned().unwrap_or_default();
        let loc = if loc.line == 0 {
            ItemLoc {
                line: 1,
                col: 1,
                fields: vec![],
            }
        } else {
            loc
        };
        if let Some(n) = rr.name.as_ref().and_then(scalar_string)
            && !n.trim().is_empty()
        {
            out.names.push((n, loc.line, loc.col));
        }
        if let Some(rule) = compile_rule(env, &mut cx, i, rr, &loc) {
            out.rules.push(rule);
        }
    }
    for (i, rt) in raw.tests.unwrap_or_default().into_iter().enumerate() {
        let loc = test_locs.get(i).cloned().unwrap_or_default();
        let loc = if loc.line == 0 {
            ItemLoc {
                line: 1,
                col: 1,
                fields: vec![],
            }
        } else {
            loc
        };
        if let Some(t) = compile_test(&mut cx, i, rt, &loc) {
            out.tests.push((t, (loc.line, loc.col)));
        }
    }
    out
}

fn compile_rule(
    env: &cel::Env,
    cx: &mut FileCtx<'_>,
    index: usize,
    rr: RawRule,
    loc: &ItemLoc,
) -> Option<Rule> {
    let before = cx.errors.len();
    let name = match rr.name.as_ref().and_then(scalar_string) {
        Some(n) if !n.trim().is_empty() => n,
        Some(_) => {
            cx.err(
                loc.field("name"),
                format!("rule #{}: `name` is empty", index + 1),
            );
            format!("#{}", index + 1)
        }
        None => {
            cx.err(
                (loc.line, loc.col),
                format!("rule #{}: missing `name`", index + 1),
            );
            format!("#{}", index + 1)
        }
    };
    let who = format!("rule {name:?}");
    let glob_field = |cx: &mut FileCtx<'_>, key: &str, v: &Option<serde_yaml::Value>, ci: bool| {
        v.as_ref().and_then(|v| match globs(v, ci) {
            Ok(g) => Some(g),
            Err(e) => {
                cx.err(loc.field(key), format!("{who}: `{key}`: {e}"));
                None
            }
        })
    };
    let resource = match &rr.resource {
        None => {
            cx.err(
                (loc.line, loc.col),
                format!("{who}: missing `resource` (use \"*\" for any)"),
            );
            None
        }
        Some(_) => glob_field(cx, "resource", &rr.resource, false),
    };
    let action = glob_field(cx, "action", &rr.action, false).unwrap_or_else(GlobList::any);
    let agent = glob_field(cx, "agent", &rr.agent, false);
    let host = glob_field(cx, "host", &rr.host, true);
    let method = glob_field(cx, "method", &rr.method, true);

    let decision = match &rr.decision {
        None => {
            cx.err(
                (loc.line, loc.col),
                format!("{who}: missing `decision` (ALLOW, DENY or REQUIRE_APPROVAL)"),
            );
            None
        }
        Some(v) => match scalar_string(v).as_deref().and_then(Verdict::parse) {
            Some(d) => Some(d),
            None => {
                cx.err(
                    loc.field("decision"),
                    format!(
                        "{who}: bad decision {}: expected ALLOW, DENY or REQUIRE_APPROVAL",
                        shown(v)
                    ),
                );
                None
            }
        },
    };
    // A DENY or approval path also matches its case and `;`-parameter variants
    // (SPEC §5.2), which servers execute as the same path; ALLOW stays exact.
    let loose_path = decision.is_some_and(|d| d != Verdict::Allow);
    let path = glob_field(cx, "path", &rr.path, loose_path);

    let condition = match &rr.condition {
        None => None,
        Some(serde_yaml::Value::Null) => {
            // An empty `condition:` would silently make the rule unconditional.
            cx.err(
                loc.field("condition"),
                format!("{who}: `condition` is empty (remove it, or write a CEL expression)"),
            );
            None
        }
        Some(v) => match scalar_string(v) {
            Some(src) if src.trim().is_empty() => {
                cx.err(
                    loc.field("condition"),
                    format!("{who}: `condition` is empty (remove it, or write a CEL expression)"),
                );
                None
            }
            Some(src) => match Condition::compile(env, &src) {
                Ok((c, python)) => {
                    if let Some(p) = python {
                        cx.warn(
                            loc.field("condition"),
                            format!(
                                "{who}: condition is written in Python ({}); read as the CEL `{}`",
                                p.words.join(", "),
                                excerpt(&p.cel, 300)
                            ),
                        );
                    }
                    Some(c)
                }
                Err(e) => {
                    cx.err(loc.field("condition"), format!("{who}: {e}"));
                    None
                }
            },
            None => {
                cx.err(
                    loc.field("condition"),
                    format!(
                        "{who}: `condition` must be a CEL expression string, got {}",
                        yaml_kind(v)
                    ),
                );
                None
            }
        },
    };

    let is_approval = decision == Some(Verdict::RequireApproval);
    let mut approvals = 1u32;
    if let Some(v) = &rr.approvals {
        if decision.is_some() && !is_approval {
            cx.err(
                loc.field("approvals"),
                format!("{who}: `approvals` only applies to REQUIRE_APPROVAL rules"),
            );
        } else {
            match v.as_u64() {
                Some(n) if (1..=100).contains(&n) => approvals = n as u32,
                _ => cx.err(
                    loc.field("approvals"),
                    format!("{who}: `approvals` must be a whole number from 1 to 100"),
                ),
            }
        }
    }
    let approval_only = |key: &str, v: &Option<serde_yaml::Value>, cx: &mut FileCtx<'_>| {
        let v = v.as_ref()?;
        if decision.is_some() && !is_approval {
            cx.err(
                loc.field(key),
                format!("{who}: `{key}` only applies to REQUIRE_APPROVAL rules"),
            );
            return None;
        }
        let parsed = hold_duration(key, v);
        if let Err(e) = &parsed {
            cx.err(loc.field(key), format!("{who}: {e}"));
        }
        parsed.ok()
    };
    let (timeout, timeout_text) = approval_only("timeout", &rr.timeout, cx).unzip();
    let (reply_after, reply_after_text) = approval_only("reply_after", &rr.reply_after, cx).unzip();
    let grantable = grantable(cx, &rr, &who, decision, loc);
    let mode = match &rr.mode {
        None => Mode::Enforce,
        Some(v) => match scalar_string(v)
            .map(|s| s.trim().to_ascii_lowercase())
            .as_deref()
        {
            Some("enforce") => Mode::Enforce,
            Some("report") => Mode::Report,
            _ => {
                cx.err(
                    loc.field("mode"),
                    format!("{who}: bad mode {}: expected enforce or report", shown(v)),
                );
                Mode::Enforce
            }
        },
    };
    if cx.errors.len() != before {
        return None;
    }
    Some(Rule {
        name: RuleName(name),
        description: rr.description,
        resource: resource?,
        action,
        agent,
        host,
        method,
        path,
        condition,
        decision: decision?,
        reason: rr.reason,
        approvals: if is_approval { approvals } else { 0 },
        timeout,
        timeout_text,
        reply_after,
        reply_after_text,
        mode,
        grantable,
        file: cx.file.to_string(),
        line: loc.line,
        column: loc.col,
        fields: loc.fields.clone(),
    })
}

/// `grantable` (SPEC §5.2, §6.1): a boolean, on REQUIRE_APPROVAL rules only;
/// default true.
fn grantable(
    cx: &mut FileCtx<'_>,
    rr: &RawRule,
    who: &str,
    decision: Option<Verdict>,
    loc: &ItemLoc,
) -> bool {
    let Some(v) = &rr.grantable else {
        return true;
    };
    if decision.is_some() && decision != Some(Verdict::RequireApproval) {
        cx.err(
            loc.field("grantable"),
            format!("{who}: `grantable` only applies to REQUIRE_APPROVAL rules"),
        );
        return true;
    }
    match v {
        serde_yaml::Value::Bool(b) => *b,
        other => {
            cx.err(
                loc.field("grantable"),
                format!(
                    "{who}: `grantable` must be true or false, got {}",
                    shown(other)
                ),
            );
            true
        }
    }
}
