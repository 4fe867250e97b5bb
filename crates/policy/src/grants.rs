//! What standing grants (SPEC §6.1) need from the policy: which intents of a
//! request need an approval and whether their rules allow a grant, and grant
//! conditions compiled and evaluated like rule conditions (same variables).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use sudomode_intent::{Intent, Mapped, NormalizedRequest};

use crate::condition::{Condition, EvalInput, to_chrono};
use crate::{Policy, RuleName, Verdict};

/// Grant conditions compiled once per loaded policy: a grant's condition is
/// judged on every REQUIRE_APPROVAL request it might cover, and compiling CEL
/// costs far more than evaluating it. Bounded: past this many distinct
/// conditions the cache starts over.
#[derive(Default)]
pub(crate) struct CompiledConditions(Mutex<HashMap<String, Arc<Condition>>>);

const MAX_COMPILED_CONDITIONS: usize = 1024;

/// One intent of a request that needs an operator's approval on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalNeed {
    /// Index into `Mapped::intents`.
    pub intent: usize,
    pub rule: RuleName,
    /// The rule allows a grant to stand in for the approval: `grantable` and
    /// a single approver.
    pub grantable: bool,
}

impl Policy {
    /// Every intent whose own decision is REQUIRE_APPROVAL, with its rule. A
    /// request whose decision is REQUIRE_APPROVAL has at least one; each needs
    /// its own grant.
    pub fn approval_needs(
        &self,
        agent: &str,
        mapped: &Mapped,
        now: time::OffsetDateTime,
    ) -> Vec<ApprovalNeed> {
        mapped
            .intents
            .iter()
            .enumerate()
            .filter_map(|(i, intent)| {
                let rule = self.intent_rule(agent, &mapped.request, intent, now)?;
                (rule.decision == Verdict::RequireApproval).then(|| ApprovalNeed {
                    intent: i,
                    rule: rule.name.clone(),
                    grantable: rule.grantable && rule.approvals <= 1,
                })
            })
            .collect()
    }

    /// Whether the rule named `name` lets a standing grant replace its
    /// approval; `false` for an unknown rule.
    pub fn rule_grantable(&self, name: &str) -> bool {
        self.rules.iter().any(|r| {
            r.name.as_str() == name
                && r.decision == Verdict::RequireApproval
                && r.grantable
                && r.approvals <= 1
        })
    }

    /// Compiles a grant's condition as a rule condition is compiled (CEL, the
    /// variables of SPEC §5.3, boolean, bounded in size and depth), once per
    /// policy for each distinct source.
    pub fn compile_condition(&self, source: &str) -> Result<Arc<Condition>, String> {
        let cache = &self.grant_conditions.0;
        if let Some(c) = cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(source)
        {
            return Ok(c.clone());
        }
        let compiled = Arc::new(Condition::compile(&self.env, source)?.0);
        let mut map = cache.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_COMPILED_CONDITIONS {
            map.clear();
        }
        map.insert(source.to_string(), compiled.clone());
        Ok(compiled)
    }

    /// Evaluates `condition` for one intent; an error means it does not hold
    /// (a grant fails closed).
    pub fn eval_condition(
        &self,
        condition: &Condition,
        agent: &str,
        request: &NormalizedRequest,
        intent: &Intent,
        now: time::OffsetDateTime,
    ) -> Result<bool, String> {
        let input = EvalInput {
            env: &self.env,
            agent,
            intent,
            request,
            now: to_chrono(now),
        };
        condition.eval(&input.context())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
rules:
  - name: charges
    resource: stripe.charges
    decision: REQUIRE_APPROVAL
  - name: payouts
    resource: stripe.payouts
    decision: REQUIRE_APPROVAL
    approvals: 2
  - name: drops
    resource: sql
    action: drop
    decision: REQUIRE_APPROVAL
    grantable: false
  - name: deletes
    resource: sql
    action: delete
    decision: REQUIRE_APPROVAL
  - name: rest
    resource: "*"
    decision: ALLOW
"#;

    fn policy(text: &str) -> Policy {
        Policy::from_sources(&[("p.yaml".to_string(), text.to_string())]).unwrap()
    }

    fn mapped(intents: &[(&str, &str)]) -> Mapped {
        Mapped {
            request: NormalizedRequest {
                method: "POST".into(),
                scheme: "https".into(),
                host: "h".into(),
                port: 443,
                path: "/".into(),
                query: Default::default(),
                headers: Default::default(),
            },
            intents: intents
                .iter()
                .map(|(r, a)| Intent::new(*r, *a, serde_json::json!({"amount": 5})))
                .collect(),
        }
    }

    #[test]
    fn each_intent_that_needs_approval_is_listed_with_its_rule() {
        let p = policy(POLICY);
        let now = time::OffsetDateTime::now_utc();
        let needs = p.approval_needs(
            "bot",
            &mapped(&[("sql", "select"), ("sql", "delete"), ("sql", "drop")]),
            now,
        );
        let got: Vec<(usize, &str, bool)> = needs
            .iter()
            .map(|n| (n.intent, n.rule.as_str(), n.grantable))
            .collect();
        assert_eq!(got, vec![(1, "deletes", true), (2, "drops", false)]);
        let two = p.approval_needs("bot", &mapped(&[("stripe.payouts", "create")]), now);
        assert!(!two[0].grantable, "two approvers: no grant");
        assert!(p.rule_grantable("charges"));
        assert!(!p.rule_grantable("payouts"));
        assert!(!p.rule_grantable("drops"));
        assert!(!p.rule_grantable("rest"));
        assert!(!p.rule_grantable("nope"));
    }

    #[test]
    fn grant_conditions_compile_and_evaluate_like_rule_conditions() {
        let p = policy(POLICY);
        let m = mapped(&[("stripe.charges", "create")]);
        let now = time::OffsetDateTime::now_utc();
        let c = p.compile_condition("args.amount <= 10").unwrap();
        let c_first = c.clone();
        assert_eq!(
            p.eval_condition(&c, "bot", &m.request, &m.intents[0], now),
            Ok(true)
        );
        let c = p.compile_condition("args.missing > 1").unwrap();
        assert!(
            p.eval_condition(&c, "bot", &m.request, &m.intents[0], now)
                .is_err()
        );
        let again = p.compile_condition("args.amount <= 10").unwrap();
        assert!(Arc::ptr_eq(&c_first, &again), "compiled once per policy");
        assert!(p.compile_condition("args.amount +").is_err());
        assert!(p.compile_condition("nope == 1").is_err());
        assert!(p.compile_condition("1 + 2").is_err(), "not boolean");
    }

    #[test]
    fn grantable_is_a_boolean_on_approval_rules_only() {
        let bad = |t: &str| Policy::from_sources(&[("p.yaml".to_string(), t.to_string())]);
        let e = bad(
            "rules:\n  - name: a\n    resource: x\n    decision: ALLOW\n    grantable: false\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("`grantable` only applies to REQUIRE_APPROVAL"),
            "{e}"
        );
        assert!(e.contains("p.yaml:5"), "{e}");
        let e = bad("rules:\n  - name: a\n    resource: x\n    decision: REQUIRE_APPROVAL\n    grantable: nope\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("must be true or false"), "{e}");
        let p = policy(
            "rules:\n  - name: a\n    resource: x\n    decision: REQUIRE_APPROVAL\n    grantable: false\n",
        );
        assert!(!p.rules()[0].grantable);
        assert_eq!(p.rules_info()[0].grantable, Some(false));
    }
}
