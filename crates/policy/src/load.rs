//! Loading and validating policy files (SPEC §5.1, §5.4), the version hash and reload fingerprints.
//!
//! Version / fingerprint scheme (hex SHA-256), over the files in load order:
//! for each file, `path` as given (UTF-8, lossy), `"\n"`, the content length
//! in bytes as ASCII decimal, `"\n"`, then the content bytes. The built-in
//! policy hashes as one file named `builtin:default.yaml`. So a policy loaded
//! from some paths has `version() == fingerprint(paths)` until a file changes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::condition::Condition;
use crate::decide::RuleIndex;
use crate::error::{PolicyError, PolicyErrors, parse_duration};
use crate::glob::{Glob, GlobList};
use crate::testing::{PolicyTest, TestRequest};
use crate::{Mode, Policy, Rule, RuleName, Verdict};

/// The starter policy (SPEC §5.7), also shipped as `policies/default.yaml`.
pub const DEFAULT_POLICY_YAML: &str = include_str!("../../../policies/default.yaml");
/// The name the built-in policy is loaded under.
pub const DEFAULT_POLICY_NAME: &str = "builtin:default.yaml";

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
    condition: Option<serde_yaml::Value>,
    decision: Option<serde_yaml::Value>,
    reason: Option<String>,
    approvals: Option<serde_yaml::Value>,
    timeout: Option<serde_yaml::Value>,
    mode: Option<serde_yaml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTest {
    name: Option<String>,
    request: Option<RawTestRequest>,
    expect: Option<String>,
    rule: Option<String>,
    /// RFC 3339 time the test runs at (for conditions on `now`).
    now: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTestRequest {
    method: Option<String>,
    url: Option<String>,
    body: Option<serde_yaml::Value>,
    headers: Option<std::collections::BTreeMap<String, String>>,
    agent: Option<String>,
}

/// Where items of a top-level list (`rules:` / `tests:`) and their fields are
/// written, found by scanning the text (serde_yaml values carry no spans).
#[derive(Debug, Default, Clone)]
struct ItemLoc {
    line: usize,
    col: usize,
    fields: Vec<(String, usize, usize)>,
}

impl ItemLoc {
    fn field(&self, key: &str) -> (usize, usize) {
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
fn locate_items(text: &str, list_key: &str) -> (Option<(usize, usize)>, Vec<ItemLoc>) {
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
fn yaml_message(e: &serde_yaml::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// serde_yaml's message, with `rules[3]: ` replaced by the rule's name when
/// the text shows it (`rule "x": unknown field …`).
fn describe_yaml_error(text: &str, line: usize, e: &serde_yaml::Error) -> String {
    let msg = yaml_message(e);
    for (list, what) in [("rules", "rule"), ("tests", "test")] {
        let prefix = format!("{list}[");
        let Some(rest) = msg.strip_prefix(&prefix) else { continue };
        let Some((idx, tail)) = rest.split_once(']') else { continue };
        let Ok(idx) = idx.parse::<usize>() else { continue };
        let tail = tail.trim_start_matches('.').trim_start_matches(':').trim_start();
        let (_, items) = locate_items(text, list);
        let name = items.get(idx).and_then(|it| {
            let (l, c) = it.field("name");
            let raw = text.lines().nth(l.checked_sub(1)?)?;
            let after = raw.get(c.checked_sub(1)?..)?;
            let v = after.split_once(':')?.1.trim();
            let v = v.split(" #").next().unwrap_or(v).trim().trim_matches(['"', '\'']);
            (!v.is_empty() && it.fields.iter().any(|(k, _, _)| k == "name")).then(|| v.to_string())
        });
        let _ = line;
        return match name {
            Some(n) => format!("{what} {n:?}: {tail}"),
            None => format!("{what} #{}: {tail}", idx + 1),
        };
    }
    msg
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

fn scalar_string(v: &serde_yaml::Value) -> Option<String> {
    use serde_yaml::Value as Y;
    match v {
        Y::String(s) => Some(s.clone()),
        Y::Bool(b) => Some(b.to_string()),
        Y::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Collects errors for one file.
struct FileCtx<'a> {
    file: &'a str,
    errors: &'a mut Vec<PolicyError>,
}

impl FileCtx<'_> {
    fn err(&mut self, (line, column): (usize, usize), message: String) {
        self.errors.push(PolicyError {
            file: self.file.to_string(),
            line,
            column,
            message,
        });
    }
}

struct Parsed {
    rules: Vec<Rule>,
    tests: Vec<(PolicyTest, (usize, usize))>,
}

fn parse_file(env: &cel::Env, file: &str, text: &str, errors: &mut Vec<PolicyError>) -> Parsed {
    let mut out = Parsed {
        rules: Vec::new(),
        tests: Vec::new(),
    };
    let mut cx = FileCtx { file, errors };
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
            cx.err((l, c), describe_yaml_error(text, l, &e));
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
    let path = glob_field(cx, "path", &rr.path, false);

    let decision = match &rr.decision {
        None => {
            cx.err(
                (loc.line, loc.col),
                format!("{who}: missing `decision` (ALLOW, DENY or REQUIRE_APPROVAL)"),
            );
            None
        }
        Some(v) => {
            match scalar_string(v).as_deref().and_then(Verdict::parse) {
                Some(d) => Some(d),
                None => {
                    let shown = scalar_string(v).unwrap_or_else(|| yaml_kind(v).to_string());
                    cx.err(
                    loc.field("decision"),
                    format!("{who}: bad decision {shown:?}: expected ALLOW, DENY or REQUIRE_APPROVAL"),
                );
                    None
                }
            }
        }
    };

    let condition = match &rr.condition {
        None | Some(serde_yaml::Value::Null) => None,
        Some(v) => match scalar_string(v) {
            Some(src) => match Condition::compile(env, &src) {
                Ok(c) => Some(c),
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
    let mut timeout = None;
    let mut timeout_text = None;
    if let Some(v) = &rr.timeout {
        if decision.is_some() && !is_approval {
            cx.err(
                loc.field("timeout"),
                format!("{who}: `timeout` only applies to REQUIRE_APPROVAL rules"),
            );
        } else {
            match scalar_string(v).map(|s| (parse_duration(&s), s)) {
                Some((Ok(d), s)) => {
                    timeout = Some(d);
                    timeout_text = Some(s);
                }
                Some((Err(e), _)) => cx.err(loc.field("timeout"), format!("{who}: `timeout`: {e}")),
                None => cx.err(
                    loc.field("timeout"),
                    format!("{who}: `timeout` must be a duration such as 30s, 10m, 2h"),
                ),
            }
        }
    }
    let mode = match &rr.mode {
        None => Mode::Enforce,
        Some(v) => match scalar_string(v)
            .map(|s| s.trim().to_ascii_lowercase())
            .as_deref()
        {
            Some("enforce") => Mode::Enforce,
            Some("report") => Mode::Report,
            _ => {
                let shown = scalar_string(v).unwrap_or_else(|| yaml_kind(v).to_string());
                cx.err(
                    loc.field("mode"),
                    format!("{who}: bad mode {shown:?}: expected enforce or report"),
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
        mode,
        file: cx.file.to_string(),
        line: loc.line,
        column: loc.col,
    })
}

fn compile_test(
    cx: &mut FileCtx<'_>,
    index: usize,
    rt: RawTest,
    loc: &ItemLoc,
) -> Option<PolicyTest> {
    let before = cx.errors.len();
    let name = rt.name.clone().unwrap_or_else(|| format!("#{}", index + 1));
    let who = format!("test {name:?}");
    if rt.name.is_none() {
        cx.err(
            (loc.line, loc.col),
            format!("test #{}: missing `name`", index + 1),
        );
    }
    let expect = match rt.expect.as_deref() {
        None => {
            cx.err(
                (loc.line, loc.col),
                format!("{who}: missing `expect` (ALLOW, DENY or REQUIRE_APPROVAL)"),
            );
            None
        }
        Some(e) => match Verdict::parse(e) {
            Some(v) => Some(v),
            None => {
                cx.err(
                    loc.field("expect"),
                    format!("{who}: bad expect {e:?}: expected ALLOW, DENY or REQUIRE_APPROVAL"),
                );
                None
            }
        },
    };
    let now = match rt.now.as_deref() {
        None => None,
        Some(s) => {
            match time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
                Ok(t) => Some(t),
                Err(e) => {
                    cx.err(
                        loc.field("now"),
                        format!("{who}: `now` is not RFC 3339: {e}"),
                    );
                    None
                }
            }
        }
    };
    let request = match rt.request {
        None => {
            cx.err(
                (loc.line, loc.col),
                format!("{who}: missing `request` ({{method, url, body?, headers?, agent?}})"),
            );
            None
        }
        Some(r) => {
            let url = match r.url {
                None => {
                    cx.err(
                        loc.field("request"),
                        format!("{who}: request is missing `url`"),
                    );
                    None
                }
                Some(u) => match url::Url::parse(&u) {
                    Ok(p) if matches!(p.scheme(), "http" | "https") && p.host_str().is_some() => {
                        Some(u)
                    }
                    Ok(_) => {
                        cx.err(
                            loc.field("request"),
                            format!("{who}: url {u:?} must be http(s) with a host"),
                        );
                        None
                    }
                    Err(e) => {
                        cx.err(loc.field("request"), format!("{who}: bad url {u:?}: {e}"));
                        None
                    }
                },
            };
            let body = match r.body {
                None | Some(serde_yaml::Value::Null) => None,
                Some(serde_yaml::Value::String(s)) => Some(s),
                Some(other) => match serde_json::to_string(&other) {
                    Ok(j) => Some(j),
                    Err(e) => {
                        cx.err(
                            loc.field("request"),
                            format!("{who}: body cannot be written as JSON: {e}"),
                        );
                        None
                    }
                },
            };
            url.map(|url| TestRequest {
                method: r.method.unwrap_or_else(|| "GET".to_string()),
                url,
                body,
                headers: r.headers.unwrap_or_default(),
                agent: r.agent,
            })
        }
    };
    if cx.errors.len() != before {
        return None;
    }
    Some(PolicyTest {
        name,
        file: cx.file.to_string(),
        line: loc.line,
        request: request?,
        expect: expect?,
        rule: rt.rule.map(RuleName),
        now,
    })
}

/// Expands `paths`: a file as is; a directory → its `*.yaml` / `*.yml` files
/// in sorted file-name order. Only files directly in the directory are read,
/// not subdirectories (so `policies/examples/` is not loaded with
/// `policies/`).
pub fn expand_paths(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p)?;
        if meta.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)?
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|f| {
                    f.is_file()
                        && matches!(f.extension().and_then(|x| x.to_str()), Some("yaml" | "yml"))
                        && !f
                            .file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with('.'))
                })
                .collect();
            files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
            out.extend(files);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn hash_sources<N: AsRef<str>, T: AsRef<[u8]>>(sources: &[(N, T)]) -> String {
    let mut h = Sha256::new();
    for (name, text) in sources {
        let text = text.as_ref();
        h.update(name.as_ref().as_bytes());
        h.update(b"\n");
        h.update(text.len().to_string().as_bytes());
        h.update(b"\n");
        h.update(text);
    }
    hex::encode(h.finalize())
}

/// Cheap hash of the policy files' names and contents (see the module doc
/// for the scheme): poll it (~500 ms) and reload when it changes. Equal to
/// [`Policy::version`] of a policy loaded from the same, unchanged paths.
pub fn fingerprint(paths: &[PathBuf]) -> std::io::Result<String> {
    let files = expand_paths(paths)?;
    let mut sources = Vec::with_capacity(files.len());
    for f in files {
        let bytes = std::fs::read(&f)?;
        sources.push((f.to_string_lossy().into_owned(), bytes));
    }
    Ok(hash_sources(&sources))
}

impl Policy {
    /// Loads files and/or directories (see [`expand_paths`]), rules
    /// concatenated in order. All problems are reported at once.
    pub fn load(paths: &[PathBuf]) -> Result<Policy, PolicyErrors> {
        let mut errors = Vec::new();
        let mut sources: Vec<(String, String)> = Vec::new();
        for p in paths {
            let files = match expand_paths(std::slice::from_ref(p)) {
                Ok(f) => f,
                Err(e) => {
                    errors.push(io_error(p, &e));
                    continue;
                }
            };
            if files.is_empty() {
                errors.push(PolicyError {
                    file: p.to_string_lossy().into_owned(),
                    line: 0,
                    column: 0,
                    message: "directory holds no *.yaml or *.yml policy file".to_string(),
                });
            }
            for f in files {
                match std::fs::read(&f) {
                    Ok(bytes) => match String::from_utf8(bytes) {
                        Ok(s) => sources.push((f.to_string_lossy().into_owned(), s)),
                        Err(_) => errors.push(PolicyError {
                            file: f.to_string_lossy().into_owned(),
                            line: 0,
                            column: 0,
                            message: "not UTF-8 text".to_string(),
                        }),
                    },
                    Err(e) => errors.push(io_error(&f, &e)),
                }
            }
        }
        if paths.is_empty() {
            errors.push(PolicyError {
                file: "<policies>".to_string(),
                line: 0,
                column: 0,
                message: "no policy file given".to_string(),
            });
        }
        Self::build(&sources, errors)
    }

    /// Loads in-memory sources `(name, text)`, in order (names are used in
    /// messages and in the version hash).
    pub fn from_sources<N: AsRef<str>, T: AsRef<str>>(
        sources: &[(N, T)],
    ) -> Result<Policy, PolicyErrors> {
        let owned: Vec<(String, String)> = sources
            .iter()
            .map(|(n, t)| (n.as_ref().to_string(), t.as_ref().to_string()))
            .collect();
        Self::build(&owned, Vec::new())
    }

    /// The built-in starter policy (SPEC §5.7), from the embedded
    /// `policies/default.yaml`.
    pub fn builtin() -> Policy {
        match Self::from_sources(&[(DEFAULT_POLICY_NAME, DEFAULT_POLICY_YAML)]) {
            Ok(p) => p,
            // Invariant: the embedded file is validated by the unit test
            // `builtin_policy_loads_and_passes_its_tests`.
            Err(e) => panic!("the embedded starter policy is invalid: {e}"),
        }
    }

    fn build(
        sources: &[(String, String)],
        mut errors: Vec<PolicyError>,
    ) -> Result<Policy, PolicyErrors> {
        let env = Arc::new(cel::Env::stdlib());
        let mut rules: Vec<Rule> = Vec::new();
        let mut tests: Vec<(PolicyTest, (usize, usize))> = Vec::new();
        let mut seen: HashMap<String, (String, usize)> = HashMap::new();
        for (name, text) in sources {
            let parsed = parse_file(&env, name, text, &mut errors);
            for r in parsed.rules {
                if let Some((f, l)) = seen.get(&r.name.0) {
                    errors.push(PolicyError {
                        file: r.file.clone(),
                        line: r.line,
                        column: r.column,
                        message: format!(
                            "rule {:?}: duplicate name (first defined at {f}:{l})",
                            r.name.0
                        ),
                    });
                    continue;
                }
                seen.insert(r.name.0.clone(), (r.file.clone(), r.line));
                rules.push(r);
            }
            tests.extend(parsed.tests);
        }
        // A test's `rule:` must name a rule, unless that rule failed to load
        // (then its own error is already reported).
        if errors.is_empty() {
            for (t, (line, col)) in &tests {
                if let Some(r) = &t.rule
                    && !seen.contains_key(&r.0)
                {
                    errors.push(PolicyError {
                        file: t.file.clone(),
                        line: *line,
                        column: *col,
                        message: format!(
                            "test {:?}: `rule: {}` names no rule in the policy",
                            t.name, r.0
                        ),
                    });
                }
            }
        }
        if !errors.is_empty() {
            return Err(PolicyErrors(errors));
        }
        let index = RuleIndex::build(&rules);
        Ok(Policy {
            index,
            rules,
            tests: tests.into_iter().map(|(t, _)| t).collect(),
            env,
            version: hash_sources(sources),
            loaded_at: time::OffsetDateTime::now_utc(),
            files: sources.iter().map(|(n, _)| n.clone()).collect(),
        })
    }
}

fn io_error(p: &Path, e: &std::io::Error) -> PolicyError {
    PolicyError {
        file: p.to_string_lossy().into_owned(),
        line: 0,
        column: 0,
        message: format!("cannot read: {e}"),
    }
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
    fn key_parsing() {
        assert_eq!(key_of("name: x"), Some("name"));
        assert_eq!(key_of("name:"), Some("name"));
        assert_eq!(key_of("\"name\": x"), Some("name"));
        assert_eq!(key_of("url: https://x"), Some("url"));
        assert_eq!(key_of("https://x"), None);
    }

    #[test]
    fn version_scheme() {
        let a = hash_sources(&[("a.yaml", "x")]);
        let mut h = Sha256::new();
        h.update(b"a.yaml\n1\nx");
        assert_eq!(a, hex::encode(h.finalize()));
        assert_ne!(a, hash_sources(&[("b.yaml", "x")]));
    }
}
