//! Judging (SPEC §5.2–5.3): first matching enforce rule per intent, strictest across intents; plus explanations.
//!
//! Speed: rules whose `resource` globs are all literals are indexed by
//! resource, so an intent only visits the rules that can match its resource
//! (in policy order); the cheap matchers run before any CEL, and the CEL
//! context is built at most once per intent, on the first condition met.

use std::collections::HashMap;

use serde::Serialize;
use sudomode_intent::{Intent, Mapped, NormalizedRequest};

use crate::condition::{EvalInput, to_chrono};
use crate::{Decision, Mode, NO_RULE_MATCHED, Policy, Rule, RuleName, Verdict};

/// Candidate rules per resource.
#[derive(Debug, Default)]
pub(crate) struct RuleIndex {
    /// Literal resource → rule indices (ascending).
    by_resource: HashMap<String, Vec<u32>>,
    /// Rules with a wildcard resource glob (ascending).
    wildcard: Vec<u32>,
}

impl RuleIndex {
    pub(crate) fn build(rules: &[Rule]) -> RuleIndex {
        let mut idx = RuleIndex::default();
        for (i, r) in rules.iter().enumerate() {
            let i = i as u32;
            match r.resource.literals() {
                Some(lits) => {
                    for l in lits {
                        let v = idx.by_resource.entry(l.to_string()).or_default();
                        if v.last() != Some(&i) {
                            v.push(i);
                        }
                    }
                }
                None => idx.wildcard.push(i),
            }
        }
        idx
    }

    /// Calls `f` on candidate rule indices for `resource`, in policy order,
    /// until it returns `true`.
    fn for_each(&self, resource: &str, mut f: impl FnMut(usize) -> bool) {
        let lit: &[u32] = self.by_resource.get(resource).map_or(&[], Vec::as_slice);
        let wild = self.wildcard.as_slice();
        let (mut a, mut b) = (0, 0);
        while a < lit.len() || b < wild.len() {
            let next = if b >= wild.len() || (a < lit.len() && lit[a] < wild[b]) {
                a += 1;
                lit[a - 1]
            } else {
                b += 1;
                wild[b - 1]
            };
            if f(next as usize) {
                return;
            }
        }
    }
}

/// How one rule fared against one intent.
enum Outcome {
    /// A matcher failed: (field, subject, patterns).
    NoMatch(&'static str, String, String),
    ConditionFalse,
    /// Matched; `Some(err)` when by fail-closed on a condition error.
    Matched(Option<String>),
    /// An ALLOW rule whose condition errored: does not match.
    ErrorNoMatch(String),
}

struct RuleEval<'a> {
    input: EvalInput<'a>,
    ctx: Option<cel::Context<'a, 'a>>,
}

impl<'a> RuleEval<'a> {
    fn new(input: EvalInput<'a>) -> Self {
        RuleEval { input, ctx: None }
    }

    /// The matchers (cheapest first), then the condition. `explain` asks for
    /// a described mismatch.
    fn eval(&mut self, rule: &Rule, describe: bool) -> Outcome {
        let intent = self.input.intent;
        let req = self.input.request;
        let checks: [(&'static str, Option<&crate::GlobList>, &str); 5] = [
            ("resource", Some(&rule.resource), intent.resource.as_str()),
            ("action", Some(&rule.action), intent.action.as_str()),
            ("agent", rule.agent.as_ref(), self.input.agent),
            ("host", rule.host.as_ref(), req.host.as_str()),
            ("method", rule.method.as_ref(), req.method.as_str()),
        ];
        let path_fails = rule
            .path
            .as_ref()
            .filter(|g| !path_matches(rule, g, &req.path));
        let failed = checks
            .into_iter()
            .find_map(|(field, globs, subject)| {
                globs
                    .filter(|g| !g.is_match(subject))
                    .map(|g| (field, g, subject))
            })
            .or_else(|| path_fails.map(|g| ("path", g, req.path.as_str())));
        if let Some((field, g, subject)) = failed {
            return if describe {
                Outcome::NoMatch(field, subject.to_string(), g.describe())
            } else {
                Outcome::NoMatch(field, String::new(), String::new())
            };
        }
        let Some(cond) = &rule.condition else {
            return Outcome::Matched(None);
        };
        let input = &self.input;
        let ctx = self.ctx.get_or_insert_with(|| input.context());
        match cond.eval(ctx) {
            Ok(true) => Outcome::Matched(None),
            Ok(false) => Outcome::ConditionFalse,
            Err(e) => {
                if rule.decision == Verdict::Allow {
                    Outcome::ErrorNoMatch(e)
                } else {
                    Outcome::Matched(Some(e))
                }
            }
        }
    }
}

/// A rule's `path` against the request path. DENY and REQUIRE_APPROVAL globs are
/// compiled case-insensitive and also match the path with `;` parameters removed
/// (`/admin;jsessionid=1/users` → `/admin/users`), as servlet containers and
/// case-insensitive routers execute it; ALLOW rules match the path as sent.
fn path_matches(rule: &Rule, globs: &crate::GlobList, path: &str) -> bool {
    if globs.is_match(path) {
        return true;
    }
    rule.decision != Verdict::Allow
        && path.contains(';')
        && globs.is_match(&strip_path_params(path))
}

/// `path` with every `;…` parameter removed from each segment.
fn strip_path_params(path: &str) -> String {
    path.split('/')
        .map(|seg| seg.split_once(';').map_or(seg, |(name, _)| name))
        .collect::<Vec<_>>()
        .join("/")
}

/// The `why` of an explanation line.
fn why(outcome: &Outcome, rule: &Rule, matched: bool) -> String {
    let base = match outcome {
        Outcome::NoMatch(field, subject, pats) => {
            format!("{field} {subject} does not match {pats}")
        }
        Outcome::ConditionFalse => "condition false".to_string(),
        Outcome::ErrorNoMatch(e) => {
            format!("condition error: {e} (fail closed: ALLOW rule does not match)")
        }
        Outcome::Matched(Some(e)) => format!("condition error: {e} (fail closed: counts as match)"),
        Outcome::Matched(None) if rule.condition.is_some() => "condition true".to_string(),
        Outcome::Matched(None) => "matchers match (no condition)".to_string(),
    };
    if !matched {
        return base;
    }
    match rule.mode {
        Mode::Report => {
            format!(
                "{base}; report mode: would have {} (evaluation continues)",
                rule.decision
            )
        }
        Mode::Enforce => format!("{base}; decides {}", rule.decision),
    }
}

/// Per-intent result.
struct IntentResult<'p> {
    rule: Option<&'p Rule>,
    errors: Vec<String>,
    would_have: Vec<RuleName>,
}

/// One line of an explanation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Considered {
    pub rule: String,
    pub matched: bool,
    pub why: String,
    /// Index of the intent (only for requests with several intents).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intent: Option<usize>,
}

/// `sudomode policy explain` output (SPEC §1).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    pub intents: Vec<Intent>,
    pub decision: Verdict,
    pub rule: Option<RuleName>,
    pub reason: String,
    pub considered: Vec<Considered>,
    /// The full decision (what `decide` returns).
    #[serde(skip)]
    pub full: Decision,
}

impl Policy {
    fn judge_intent<'p>(
        &'p self,
        agent: &str,
        request: &NormalizedRequest,
        intent: &Intent,
        now: chrono::DateTime<chrono::FixedOffset>,
        mut trace: Option<(&mut Vec<Considered>, Option<usize>)>,
    ) -> IntentResult<'p> {
        let input = EvalInput {
            env: &self.env,
            agent,
            intent,
            request,
            now,
        };
        let mut ev = RuleEval::new(input);
        let mut res = IntentResult {
            rule: None,
            errors: Vec::new(),
            would_have: Vec::new(),
        };
        let mut visit =
            |i: usize, describe: bool, res: &mut IntentResult<'p>| -> (bool, Option<Considered>) {
                let rule = &self.rules[i];
                let outcome = ev.eval(rule, describe);
                let matched = match &outcome {
                    Outcome::NoMatch(..) | Outcome::ConditionFalse => false,
                    Outcome::ErrorNoMatch(e) => {
                        res.errors.push(format!("rule {}: {e}", rule.name));
                        false
                    }
                    Outcome::Matched(err) => {
                        if let Some(e) = err {
                            res.errors.push(format!("rule {}: {e}", rule.name));
                        }
                        true
                    }
                };
                let stop = matched && rule.mode == Mode::Enforce;
                if matched {
                    match rule.mode {
                        Mode::Report => res.would_have.push(rule.name.clone()),
                        Mode::Enforce => res.rule = Some(rule),
                    }
                }
                let c = describe.then(|| Considered {
                    rule: rule.name.0.clone(),
                    matched,
                    why: why(&outcome, rule, matched),
                    intent: None,
                });
                (stop, c)
            };
        match trace.as_mut() {
            None => self
                .index
                .for_each(&intent.resource, |i| visit(i, false, &mut res).0),
            Some((out, intent_no)) => {
                for i in 0..self.rules.len() {
                    let (stop, c) = visit(i, true, &mut res);
                    if let Some(mut c) = c {
                        c.intent = *intent_no;
                        out.push(c);
                    }
                    if stop {
                        break;
                    }
                }
            }
        }
        res
    }

    fn decide_inner(
        &self,
        agent: &str,
        mapped: &Mapped,
        now: time::OffsetDateTime,
        mut trace: Option<&mut Vec<Considered>>,
    ) -> Decision {
        let now = to_chrono(now);
        let multi = mapped.intents.len() > 1;
        let mut best: Option<(Verdict, usize, Option<&Rule>)> = None;
        let mut errors = Vec::new();
        let mut would_have = Vec::new();
        for (i, intent) in mapped.intents.iter().enumerate() {
            let t = trace.as_deref_mut().map(|v| (v, multi.then_some(i)));
            // An intent read as a method override is judged as that method (§4.8).
            let overridden = intent.method.as_ref().map(|m| NormalizedRequest {
                method: m.clone(),
                ..mapped.request.clone()
            });
            let request = overridden.as_ref().unwrap_or(&mapped.request);
            let r = self.judge_intent(agent, request, intent, now, t);
            let verdict = r.rule.map_or(Verdict::Deny, |rule| rule.decision);
            errors.extend(r.errors);
            would_have.extend(r.would_have);
            if best.as_ref().is_none_or(|(v, _, _)| verdict > *v) {
                best = Some((verdict, i, r.rule));
            }
        }
        let mut d = match best {
            // No intent at all: nothing to allow.
            None => Decision::no_match(),
            Some((_, i, None)) => Decision {
                intent_index: i,
                ..Decision::no_match()
            },
            Some((verdict, i, Some(rule))) => Decision {
                verdict,
                rule: Some(rule.name.clone()),
                reason: rule.reason_text(),
                approvals: if verdict == Verdict::RequireApproval {
                    rule.approvals.max(1)
                } else {
                    0
                },
                timeout: if verdict == Verdict::RequireApproval {
                    rule.timeout
                } else {
                    None
                },
                reply_after: if verdict == Verdict::RequireApproval {
                    rule.reply_after
                } else {
                    None
                },
                intent_index: i,
                condition_errors: Vec::new(),
                would_have: Vec::new(),
            },
        };
        d.condition_errors = errors;
        d.would_have = would_have;
        d
    }

    /// Judges a mapped request: per intent, rules in order, the first
    /// matching `enforce` rule decides (report rules that match are listed in
    /// `would_have`); no match → DENY "no rule matched"; across intents the
    /// strictest wins (the first such intent is `intent_index`). Pure.
    pub fn decide(&self, agent: &str, mapped: &Mapped, now: time::OffsetDateTime) -> Decision {
        self.decide_inner(agent, mapped, now, None)
    }

    /// The enforce rule that decides one intent on its own (`None`: no rule
    /// matched, the default DENY).
    pub(crate) fn intent_rule(
        &self,
        agent: &str,
        request: &NormalizedRequest,
        intent: &Intent,
        now: time::OffsetDateTime,
    ) -> Option<&Rule> {
        self.judge_intent(agent, request, intent, to_chrono(now), None)
            .rule
    }

    /// Like [`Policy::decide`], recording every rule considered and why.
    pub fn explain(&self, agent: &str, mapped: &Mapped, now: time::OffsetDateTime) -> Explanation {
        let mut considered = Vec::new();
        let full = self.decide_inner(agent, mapped, now, Some(&mut considered));
        Explanation {
            intents: mapped.intents.clone(),
            decision: full.verdict,
            rule: full.rule.clone(),
            reason: full.reason.clone(),
            considered,
            full,
        }
    }
}

impl Explanation {
    /// Human-readable rendering for `policy explain --format text`.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for (i, it) in self.intents.iter().enumerate() {
            let args = serde_json::to_string(&it.args).unwrap_or_default();
            s.push_str(&format!(
                "intent {}: {} {} {}\n",
                i, it.resource, it.action, args
            ));
        }
        s.push_str("rules considered:\n");
        for c in &self.considered {
            let mark = if c.matched { "✔" } else { "✘" };
            match c.intent {
                Some(i) => s.push_str(&format!("  [{i}] {mark} {}: {}\n", c.rule, c.why)),
                None => s.push_str(&format!("  {mark} {}: {}\n", c.rule, c.why)),
            }
        }
        if self.considered.is_empty() {
            s.push_str("  (none)\n");
        }
        s.push_str(&format!(
            "decision: {} (rule: {})\nreason: {}\n",
            self.decision,
            self.rule.as_ref().map_or("none", RuleName::as_str),
            self.reason
        ));
        if !self.full.would_have.is_empty() {
            let w: Vec<&str> = self.full.would_have.iter().map(RuleName::as_str).collect();
            s.push_str(&format!("report-mode matches: {}\n", w.join(", ")));
        }
        for e in &self.full.condition_errors {
            s.push_str(&format!("condition error: {e}\n"));
        }
        if self.rule.is_none() && self.reason == NO_RULE_MATCHED {
            s.push_str("(no rule matched: default DENY)\n");
        }
        s
    }
}

#[cfg(test)]
mod path_tests {
    use super::strip_path_params;

    #[test]
    fn path_parameters_are_removed_per_segment() {
        assert_eq!(
            strip_path_params("/admin;jsessionid=1/users"),
            "/admin/users"
        );
        assert_eq!(strip_path_params("/admin;/users;x=1;y=2"), "/admin/users");
        assert_eq!(strip_path_params("/a/b"), "/a/b");
        assert_eq!(strip_path_params("/;x/a"), "//a");
    }
}
