//! Policy tests (SPEC §5.6): the `tests:` cases of policy files, run through the real intent mapper.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use sudomode_intent::{Mapper, RawRequest};

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
    let got_rule = d.rule.as_ref().map_or("none", RuleName::as_str);
    let what = format!("{intent} → {} (rule {got_rule}: {})", d.verdict, d.reason);
    if d.verdict != t.expect {
        return Err(format!("expected {}, got {what}", t.expect));
    }
    if let Some(r) = &t.rule
        && d.rule.as_ref() != Some(r)
    {
        return Err(format!("expected rule {}, got {what}", r.0));
    }
    Ok(what)
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
