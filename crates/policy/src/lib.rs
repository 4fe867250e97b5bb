//! SudoMode policy (SPEC §5): ordered YAML rules with CEL conditions.
//!
//! * [`Policy::load`] / [`Policy::from_sources`] / [`Policy::builtin`] read and
//!   validate policy files ([`PolicyErrors`] names `file:line:col`).
//! * [`Policy::decide`] judges a mapped request; [`Policy::explain`] says why.
//! * [`Policy::run_tests`] runs the files' `tests:` cases.
//! * [`fingerprint`] is a cheap hash of the policy files for hot-reload polling.
//! * [`Policy::rules_info`] / [`Policy::summary`] describe the policy for the API.
//! * [`Policy::warnings`] / [`Policy::name_warnings`]: what loads but will not do
//!   what it says (Python spellings read as CEL, shadowed rules, unknown names).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod bounds;
mod cel_text;
mod condition;
mod decide;
mod error;
mod files;
mod glob;
mod grants;
mod info;
mod lint;
mod load;
mod locate;
mod parse;
mod python;
mod testing;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_lang;

pub use bounds::{MAX_CONDITION_BYTES, MAX_CONDITION_DEPTH};
pub use condition::Condition;
pub use decide::{Considered, Explanation};
pub use error::{
    PolicyError, PolicyErrors, PolicyWarning, parse_duration, parse_positive_duration,
};
pub use files::MAX_POLICY_FILE_BYTES;
pub use glob::{Glob, GlobError, GlobList};
pub use grants::ApprovalNeed;
pub use info::{PolicySummary, RuleInfo};
pub use load::{DEFAULT_POLICY_NAME, DEFAULT_POLICY_YAML, fingerprint};
pub use python::PythonSpelling;
pub use testing::{PolicyTest, TestReport, TestRequest, TestResult};

/// What a policy says about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Verdict {
    #[serde(rename = "ALLOW")]
    Allow,
    #[serde(rename = "REQUIRE_APPROVAL")]
    RequireApproval,
    #[serde(rename = "DENY")]
    Deny,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "ALLOW",
            Verdict::RequireApproval => "REQUIRE_APPROVAL",
            Verdict::Deny => "DENY",
        }
    }

    /// Parses `ALLOW`, `DENY` or `REQUIRE_APPROVAL` in any case.
    pub fn parse(s: &str) -> Option<Verdict> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("allow") {
            Some(Verdict::Allow)
        } else if t.eq_ignore_ascii_case("deny") {
            Some(Verdict::Deny)
        } else if t.eq_ignore_ascii_case("require_approval") {
            Some(Verdict::RequireApproval)
        } else {
            None
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Name of a rule (`sudomode.builtin` for the proxy's own refusals).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RuleName(pub String);

impl RuleName {
    /// The rule name the proxy uses for its own refusals.
    pub const BUILTIN: &'static str = "sudomode.builtin";

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RuleName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The outcome of judging a request. Never a bool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub verdict: Verdict,
    /// Rule that decided; `None` when no rule matched (default DENY).
    pub rule: Option<RuleName>,
    pub reason: String,
    /// REQUIRE_APPROVAL: distinct operators needed (≥ 1).
    pub approvals: u32,
    /// REQUIRE_APPROVAL: the rule's own window, if it sets one.
    pub timeout: Option<std::time::Duration>,
    /// REQUIRE_APPROVAL: the rule's own `reply_after` (zero: hold until the
    /// window ends), if it sets one.
    #[serde(default)]
    pub reply_after: Option<std::time::Duration>,
    /// Index into `Mapped::intents` of the intent that decided (strictest).
    pub intent_index: usize,
    /// Condition evaluation errors met on the way (fail-closed).
    pub condition_errors: Vec<String>,
    /// `mode: report` rules that matched before the decision.
    pub would_have: Vec<RuleName>,
}

impl Decision {
    /// A DENY made by the proxy itself (rule `sudomode.builtin`).
    pub fn builtin_deny(reason: impl Into<String>) -> Decision {
        Decision {
            verdict: Verdict::Deny,
            rule: Some(RuleName(RuleName::BUILTIN.to_string())),
            reason: reason.into(),
            approvals: 0,
            timeout: None,
            reply_after: None,
            intent_index: 0,
            condition_errors: Vec::new(),
            would_have: Vec::new(),
        }
    }

    /// The default DENY when no rule matched.
    pub fn no_match() -> Decision {
        Decision {
            verdict: Verdict::Deny,
            rule: None,
            reason: NO_RULE_MATCHED.to_string(),
            approvals: 0,
            timeout: None,
            reply_after: None,
            intent_index: 0,
            condition_errors: Vec::new(),
            would_have: Vec::new(),
        }
    }
}

/// Reason of the default DENY.
pub const NO_RULE_MATCHED: &str = "no rule matched";

/// `mode:` of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Enforce,
    Report,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Report => "report",
        }
    }
}

/// One compiled rule (SPEC §5.2).
#[derive(Debug)]
pub struct Rule {
    pub name: RuleName,
    pub description: Option<String>,
    pub resource: GlobList,
    pub action: GlobList,
    pub agent: Option<GlobList>,
    pub host: Option<GlobList>,
    pub method: Option<GlobList>,
    pub path: Option<GlobList>,
    pub condition: Option<Condition>,
    pub decision: Verdict,
    /// As written; see [`Rule::reason_text`].
    pub reason: Option<String>,
    /// Distinct operators needed (REQUIRE_APPROVAL; default 1).
    pub approvals: u32,
    pub timeout: Option<Duration>,
    /// The timeout as written (`10m`).
    pub timeout_text: Option<String>,
    /// REQUIRE_APPROVAL: answer a still-held call with 503 `pending` after
    /// this long (zero: never before the window ends); `hold.reply_after`
    /// when unset.
    pub reply_after: Option<Duration>,
    /// `reply_after` as written (`20s`, `0`).
    pub reply_after_text: Option<String>,
    pub mode: Mode,
    /// REQUIRE_APPROVAL only: standing grants (SPEC §6.1) may loosen it.
    pub grantable: bool,
    /// Source file, 1-based line and column of the rule.
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// Where each field is written: (key, line, column).
    pub(crate) fields: Vec<(String, usize, usize)>,
}

impl Rule {
    /// Line and column of field `key`, else of the rule.
    pub(crate) fn field(&self, key: &str) -> (usize, usize) {
        self.fields
            .iter()
            .find(|(k, _, _)| k == key)
            .map_or((self.line, self.column), |(_, l, c)| (*l, *c))
    }

    /// The reason shown to agents and operators: `reason`, else the
    /// description, else `rule <name>`.
    pub fn reason_text(&self) -> String {
        match (&self.reason, &self.description) {
            (Some(r), _) if !r.trim().is_empty() => r.clone(),
            (_, Some(d)) if !d.trim().is_empty() => d.clone(),
            _ => format!("rule {}", self.name),
        }
    }
}

/// A loaded, validated, immutable policy. Cheap to share (`Arc<Policy>`);
/// `decide` is pure.
pub struct Policy {
    rules: Vec<Rule>,
    tests: Vec<PolicyTest>,
    env: Arc<cel::Env>,
    index: decide::RuleIndex,
    version: String,
    loaded_at: time::OffsetDateTime,
    files: Vec<String>,
    warnings: Vec<PolicyWarning>,
    grant_conditions: grants::CompiledConditions,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("version", &self.version)
            .field("files", &self.files)
            .field("rules", &self.rules.len())
            .field("tests", &self.tests.len())
            .finish()
    }
}

impl Policy {
    /// SHA-256 (hex) of the policy text; see [`fingerprint`] for the scheme.
    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn loaded_at(&self) -> time::OffsetDateTime {
        self.loaded_at
    }

    /// The files read, in load order (`builtin:default.yaml` for the built-in).
    pub fn files(&self) -> &[String] {
        &self.files
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn tests(&self) -> &[PolicyTest] {
        &self.tests
    }

    /// What loads but is likely not meant: conditions written with Python spellings
    /// (with the CEL they are read as), and rules that can never match because an
    /// earlier rule without a condition takes every request they would.
    pub fn warnings(&self) -> &[PolicyWarning] {
        &self.warnings
    }

    /// Resource and action names that neither a built-in mapping nor one of `custom`
    /// produces (only an explicit `/v1/govern` call could match them), each with the
    /// closest real name.
    pub fn name_warnings(&self, custom: &[sudomode_intent::CustomIntent]) -> Vec<PolicyWarning> {
        lint::unknown_names(&self.rules, custom)
    }
}

#[cfg(test)]
mod lib_tests {
    use super::*;

    #[test]
    fn policy_is_send_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Policy>();
        assert_send_sync::<Arc<Policy>>();
    }

    #[test]
    fn verdict_parse_any_case() {
        assert_eq!(Verdict::parse("allow"), Some(Verdict::Allow));
        assert_eq!(Verdict::parse("Allow"), Some(Verdict::Allow));
        assert_eq!(
            Verdict::parse("REQUIRE_APPROVAL"),
            Some(Verdict::RequireApproval)
        );
        assert_eq!(
            Verdict::parse("require_approval"),
            Some(Verdict::RequireApproval)
        );
        assert_eq!(Verdict::parse("DeNy"), Some(Verdict::Deny));
        assert_eq!(Verdict::parse("block"), None);
        assert!(
            Verdict::Deny > Verdict::RequireApproval && Verdict::RequireApproval > Verdict::Allow
        );
    }

    #[test]
    fn builtin_deny() {
        let d = Decision::builtin_deny("metadata address");
        assert_eq!(d.verdict, Verdict::Deny);
        assert_eq!(
            d.rule.as_ref().map(RuleName::as_str),
            Some("sudomode.builtin")
        );
    }
}
