//! Warnings about a policy that loads but will not do what it says (SPEC §5.4):
//! rules that can never match because an earlier unconditional rule takes every
//! request they would, and resource or action names no mapping produces.

use sudomode_intent::CustomIntent;
use sudomode_intent::catalog::{FAMILIES, Family};

use crate::error::{PolicyError, PolicyWarning};
use crate::files::file_name;
use crate::{GlobList, Mode, Rule, Verdict};

/// Suggestions closer than this (normalised Damerau–Levenshtein) are near misses.
const NEAR_MISS: f64 = 0.8;
/// Suggestions for a name inside a known family need only this much in common.
const IN_FAMILY: f64 = 0.5;

fn warning(rule: &Rule, (line, column): (usize, usize), message: String) -> PolicyWarning {
    PolicyWarning(PolicyError {
        file: rule.file.clone(),
        line,
        column,
        message: format!("rule {:?}: {message}", rule.name.0),
    })
}

/// Rules an earlier enforce rule without a condition always takes first.
pub(crate) fn shadowed(rules: &[Rule]) -> Vec<PolicyWarning> {
    let mut out = Vec::new();
    let catch_alls: Vec<usize> = (0..rules.len())
        .filter(|&i| rules[i].mode == Mode::Enforce && rules[i].condition.is_none())
        .collect();
    for (i, later) in rules.iter().enumerate() {
        let Some(first) = catch_alls
            .iter()
            .take_while(|&&a| a < i)
            .map(|&a| &rules[a])
            .find(|a| covers(a, later))
        else {
            continue;
        };
        let placement = if first.file == later.file {
            format!("move it above {:?}", first.name.0)
        } else {
            format!(
                "move it into a file that sorts before {} (rules are read in file-name order, e.g. 00-myrules.yaml), or above {:?}",
                file_name(&first.file),
                first.name.0
            )
        };
        out.push(warning(
            later,
            (later.line, later.column),
            format!(
                "can never match: rule {:?} ({}:{}) comes first, has no condition and matches every request this one would; {placement}",
                first.name.0,
                file_name(&first.file),
                first.line
            ),
        ));
    }
    out
}

/// Whether every request `later` matches is matched by `first`'s matchers.
fn covers(first: &Rule, later: &Rule) -> bool {
    let opt = |a: &Option<GlobList>, b: &Option<GlobList>| match (a, b) {
        (None, _) => true,
        (Some(a), _) if a.is_any() => true,
        (Some(a), Some(b)) => a.covers(b),
        (Some(_), None) => false,
    };
    // An ALLOW rule matches paths exactly, a DENY or approval rule also their variants:
    // only an unrestricted ALLOW path covers a stricter rule's path.
    let path_ok = if first.decision == Verdict::Allow && later.decision != Verdict::Allow {
        first.path.as_ref().is_none_or(GlobList::is_any)
    } else {
        opt(&first.path, &later.path)
    };
    first.resource.covers(&later.resource)
        && first.action.covers(&later.action)
        && opt(&first.agent, &later.agent)
        && opt(&first.host, &later.host)
        && opt(&first.method, &later.method)
        && path_ok
}

/// Resource and action names that no built-in mapping or custom intent produces.
pub(crate) fn unknown_names(rules: &[Rule], custom: &[CustomIntent]) -> Vec<PolicyWarning> {
    let custom_resources: Vec<&str> = custom
        .iter()
        .filter_map(|c| c.resource.as_deref())
        .collect();
    let mut out = Vec::new();
    for rule in rules {
        for g in &rule.resource.0 {
            if let Some(r) = g.literal()
                && let Some(msg) = resource_problem(r, &custom_resources)
            {
                out.push(warning(rule, rule.field("resource"), msg));
            }
        }
        let reach = Reach::of(&rule.resource, custom);
        for g in &rule.action.0 {
            if let Some(a) = g.literal()
                && let Some(msg) = action_problem(a, &reach, &rule.resource)
            {
                out.push(warning(rule, rule.field("action"), msg));
            }
        }
    }
    out
}

const GOVERN_ONLY: &str = "only a /v1/govern call naming it can match";

fn resource_problem(r: &str, custom: &[&str]) -> Option<String> {
    if custom.contains(&r) {
        return None;
    }
    let family = Family::of(r);
    if family.is_some_and(|f| f.produces_resource(r)) {
        return None;
    }
    let mut candidates: Vec<String> = match family {
        Some(f) => f.resources(),
        None => FAMILIES.iter().flat_map(|f| f.resources()).collect(),
    };
    candidates.extend(custom.iter().map(|c| c.to_string()));
    let threshold = if family.is_some() {
        IN_FAMILY
    } else {
        NEAR_MISS
    };
    let closest = closest(r, candidates.iter().map(String::as_str), threshold);
    if family.is_none() && closest.is_none() {
        // A name of the caller's own, as the original SudoMode's SDK sends.
        return None;
    }
    Some(format!(
        "resource {r:?} is not produced by any built-in mapping or custom intent{}; {GOVERN_ONLY}",
        suggestion(closest)
    ))
}

fn suggestion(closest: Option<&str>) -> String {
    closest.map_or(String::new(), |c| format!(" (closest: {c:?})"))
}

/// Which mappings a rule's resource globs can reach.
struct Reach<'c> {
    /// Families the globs name outright (`stripe.*`, `sql`).
    named: Vec<Family>,
    /// Families only a wildcard reaches (`*`): judged by their listed actions.
    implied: Vec<Family>,
    /// Names outside every family (explicit intents) may match.
    open: bool,
    /// Actions of custom intents whose resource the globs match.
    custom_actions: Vec<&'c str>,
}

impl<'c> Reach<'c> {
    fn of(resources: &GlobList, custom: &'c [CustomIntent]) -> Reach<'c> {
        let mut reach = Reach {
            named: Vec::new(),
            implied: Vec::new(),
            open: false,
            custom_actions: Vec::new(),
        };
        for g in &resources.0 {
            let fixed = g.fixed_prefix();
            match (g.literal(), fixed.split_once('.')) {
                (Some(lit), _) => match Family::of(lit) {
                    Some(f) => reach.named.push(f),
                    None => reach.open = true,
                },
                (None, Some((first, _))) => match Family::of(first) {
                    Some(f) if first == f.prefix() => reach.named.push(f),
                    _ => reach.open = true,
                },
                (None, None) => {
                    // `*`, `stri*`: any family the glob may reach, and names of its own.
                    reach.open = true;
                    reach
                        .implied
                        .extend(FAMILIES.iter().filter(|f| f.prefix().starts_with(fixed)));
                }
            }
        }
        for c in custom {
            if let (Some(r), Some(a)) = (c.resource.as_deref(), c.action.as_deref())
                && resources.is_match(r)
            {
                reach.custom_actions.push(a);
            }
        }
        reach
    }

    fn produces(&self, action: &str) -> bool {
        self.custom_actions.contains(&action)
            || self.named.iter().any(|f| f.produces_action(action))
            || self.implied.iter().any(|f| {
                if f.closed_actions() {
                    f.produces_action(action)
                } else {
                    f.actions().contains(&action)
                }
            })
    }

    fn vocabulary(&self) -> Vec<&'c str> {
        let mut v: Vec<&'c str> = self.custom_actions.clone();
        for f in self.named.iter().chain(&self.implied) {
            v.extend(f.actions());
        }
        v
    }
}

fn action_problem(a: &str, reach: &Reach<'_>, resources: &GlobList) -> Option<String> {
    if reach.produces(a) {
        return None;
    }
    let certain = !reach.open
        && reach.implied.is_empty()
        && !reach.named.is_empty()
        && reach.named.iter().all(|f| f.closed_actions());
    let threshold = if certain { IN_FAMILY } else { NEAR_MISS };
    let vocabulary = reach.vocabulary();
    let closest = closest(a, vocabulary.iter().copied(), threshold);
    if !certain && closest.is_none() {
        return None;
    }
    let aws_hint = if reach.named.contains(&Family::Aws) && !reach.produces(a) {
        " (AWS actions are operation names such as DeleteTable)"
    } else {
        ""
    };
    Some(format!(
        "action {a:?} is not produced for {} by any built-in mapping or custom intent{}{aws_hint}; {GOVERN_ONLY}",
        resources.describe(),
        suggestion(closest)
    ))
}

/// The most similar candidate at or above `threshold` (first one on ties).
fn closest<'a>(
    name: &str,
    candidates: impl Iterator<Item = &'a str>,
    threshold: f64,
) -> Option<&'a str> {
    let mut best: Option<(&str, f64)> = None;
    for c in candidates {
        if c == name {
            continue;
        }
        let score = strsim::normalized_damerau_levenshtein(name, c);
        if score >= threshold && best.is_none_or(|(_, s)| score > s) {
            best = Some((c, score));
        }
    }
    best.map(|(c, _)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_misses() {
        let v = ["create", "retrieve", "head", "delete"];
        assert_eq!(
            closest("creat", v.iter().copied(), NEAR_MISS),
            Some("create")
        );
        assert_eq!(
            closest("retreive", v.iter().copied(), NEAR_MISS),
            Some("retrieve")
        );
        assert_eq!(closest("read", v.iter().copied(), NEAR_MISS), None);
        assert_eq!(closest("delete", v.iter().copied(), NEAR_MISS), None);
    }

    #[test]
    fn resources() {
        assert!(resource_problem("stripe.customers", &[]).is_none());
        let m = resource_problem("stripe.customer", &[]).unwrap();
        assert!(m.contains("\"stripe.customers\""), "{m}");
        assert!(resource_problem("database", &[]).is_none());
        assert!(resource_problem("github.repos", &["github.repos"]).is_none());
        let m = resource_problem("stripes.charges", &[]).unwrap();
        assert!(m.contains("\"stripe.charges\""), "{m}");
        let m = resource_problem("llm.opnai", &[]).unwrap();
        assert!(m.contains("\"llm.openai\""), "{m}");
    }
}
