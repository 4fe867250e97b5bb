//! Policy tests (SPEC §5.6): the `tests:` cases of policy files, run through the real intent mapper.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sudomode_intent::{Mapper, RawRequest};

use crate::locate::ItemLoc;
use crate::parse::FileCtx;
use crate::{Policy, RuleName, Verdict};

/// The request of a test case.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TestRequest {
    /// Default `GET`.
    pub method: String,
    pub url: String,
    pub body: Option<String>,
    pub headers: BTreeMap<String, String>,
    /// Default `default`.
    pub agent: Option<String>,
}

/// One `tests:` entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyTest {
    pub name: String,
    pub file: String,
    pub line: usize,
    pub request: TestRequest,
    pub expect: Verdict,
    /// The rule expected to decide, if given.
    pub rule: Option<RuleName>,
    /// Time the case runs at (`now:` RFC 3339); default the current time.
    #[serde(skip)]
    pub now: Option<time::OffsetDateTime>,
}

/// Outcome of one case.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TestResult {
    pub file: String,
    pub line: usize,
    pub name: String,
    pub passed: bool,
    /// What happened (decision and rule), or why it failed.
    pub message: String,
}

/// Outcome of [`Policy::run_tests`].
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct TestReport {
    pub results: Vec<TestResult>,
}

impl TestReport {
    pub fn passed(&self) -> usize {
        self.results.iter().filter(|r| r.passed).count()
    }

    pub fn failed(&self) -> usize {
        self.results.len() - self.passed()
    }

    pub fn ok(&self) -> bool {
        self.failed() == 0
    }

    pub fn failures(&self) -> impl Iterator<Item = &TestResult> {
        self.results.iter().filter(|r| !r.passed)
    }
}

impl fmt::Display for TestReport {
    /// One line per failure (`file:line: test "name": message`), then a
    /// `N passed, M failed` summary.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in self.failures() {
            writeln!(
                f,
                "FAIL {}:{}: test {:?}: {}",
                r.file, r.line, r.name, r.message
            )?;
        }
        write!(f, "{} passed, {} failed", self.passed(), self.failed())
    }
}

/// A `tests:` entry as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTest {
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

pub(crate) fn compile_test(
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

fn run_one(policy: &Policy, mapper: &Mapper, t: &PolicyTest) -> Result<String, String> {
    let url = url::Url::parse(&t.request.url).map_err(|e| format!("bad url: {e}"))?;
    let host = url.host_str().ok_or("url has no host")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = url.port_or_known_default().unwrap_or(443);
    let mut path_and_query = url.path().to_string();
    if let Some(q) = url.query() {
        path_and_query.push('?');
        path_and_query.push_str(q);
    }
    let mut headers = http::HeaderMap::new();
    for (k, v) in &t.request.headers {
        let name = http::HeaderName::from_bytes(k.as_bytes())
            .map_err(|e| format!("bad header name {k:?}: {e}"))?;
        let value =
            http::HeaderValue::from_str(v).map_err(|e| format!("bad header value for {k}: {e}"))?;
        headers.append(name, value);
    }
    let body = t.request.body.as_deref().unwrap_or("").as_bytes();
    if !body.is_empty() {
        headers
            .entry(http::header::CONTENT_LENGTH)
            .or_insert(http::HeaderValue::from(body.len()));
    }
    let raw = RawRequest {
        method: &t.request.method,
        scheme: url.scheme(),
        host,
        port,
        path_and_query: &path_and_query,
        headers: &headers,
        body,
    };
    let mapped = mapper
        .map(&raw)
        .map_err(|e| format!("request could not be mapped: {e}"))?;
    let agent = t.request.agent.as_deref().unwrap_or("default");
    let now = t.now.unwrap_or_else(time::OffsetDateTime::now_utc);
    let d = policy.decide(agent, &mapped, now);
    let intent = mapped
        .intents
        .get(d.intent_index)
        .map(|i| format!("{} {}", i.resource, i.action))
        .unwrap_or_else(|| "no intent".to_string());
    let what = format!("{intent} → {} {}", d.verdict, decided_by(policy, &d));
    if d.verdict != t.expect || t.rule.as_ref().is_some_and(|r| d.rule.as_ref() != Some(r)) {
        let wanted = t
            .rule
            .as_ref()
            .map_or(String::new(), |r| format!(" by rule {}", r.0));
        return Err(format!("expected {}{wanted}, got {what}", t.expect));
    }
    Ok(what)
}

/// `by rule NAME (file:line)`, with the reason when the rule gives one.
fn decided_by(policy: &Policy, d: &crate::Decision) -> String {
    let Some(name) = &d.rule else {
        return format!("({})", d.reason);
    };
    let Some(rule) = policy.rules().iter().find(|r| &r.name == name) else {
        return format!("by rule {name}: {}", d.reason);
    };
    let place = format!("by rule {name} ({}:{})", rule.file, rule.line);
    if rule.reason.is_some() || rule.description.is_some() {
        format!("{place}: {}", d.reason)
    } else {
        place
    }
}

impl Policy {
    /// Runs every `tests:` case: builds the request from its URL, maps it
    /// with `mapper`, decides, and compares with `expect` (and `rule`).
    pub fn run_tests(&self, mapper: &Mapper) -> TestReport {
        let results = self
            .tests()
            .iter()
            .map(|t| {
                let (passed, message) = match run_one(self, mapper, t) {
                    Ok(m) => (true, m),
                    Err(m) => (false, m),
                };
                TestResult {
                    file: t.file.clone(),
                    line: t.line,
                    name: t.name.clone(),
                    passed,
                    message,
                }
            })
            .collect();
        TestReport { results }
    }
}
