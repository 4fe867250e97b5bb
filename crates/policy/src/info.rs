//! Policy summary for the operator API and dashboard (`GET /api/v1/policy`).

use serde::Serialize;

use crate::{Policy, Rule, Verdict};

/// One rule as shown by the API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleInfo {
    pub name: String,
    pub description: Option<String>,
    pub resource: Vec<String>,
    pub action: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<Vec<String>>,
    pub decision: Verdict,
    pub condition: Option<String>,
    /// The CEL judged, when `condition` is written with Python spellings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition_cel: Option<String>,
    /// The reason as shown to agents (see [`Rule::reason_text`]).
    pub reason: String,
    /// `enforce` or `report`.
    pub mode: &'static str,
    /// Distinct approvers (REQUIRE_APPROVAL rules; 0 otherwise).
    pub approvals: u32,
    /// As written (`10m`), REQUIRE_APPROVAL rules only.
    pub timeout: Option<String>,
    /// REQUIRE_APPROVAL rules: whether standing grants may loosen it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grantable: Option<bool>,
    /// As written (`20s`, `0`), when the rule sets its own `reply_after`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_after: Option<String>,
    pub file: String,
    pub line: usize,
}

impl From<&Rule> for RuleInfo {
    fn from(r: &Rule) -> Self {
        RuleInfo {
            name: r.name.0.clone(),
            description: r.description.clone(),
            resource: r.resource.patterns(),
            action: r.action.patterns(),
            agent: r.agent.as_ref().map(|g| g.patterns()),
            host: r.host.as_ref().map(|g| g.patterns()),
            method: r.method.as_ref().map(|g| g.patterns()),
            path: r.path.as_ref().map(|g| g.patterns()),
            decision: r.decision,
            condition: r.condition.as_ref().map(|c| c.source().to_string()),
            condition_cel: r
                .condition
                .as_ref()
                .filter(|c| c.cel() != c.source())
                .map(|c| c.cel().to_string()),
            reason: r.reason_text(),
            mode: r.mode.as_str(),
            approvals: r.approvals,
            timeout: r.timeout_text.clone(),
            grantable: (r.decision == Verdict::RequireApproval).then_some(r.grantable),
            reply_after: r.reply_after_text.clone(),
            file: r.file.clone(),
            line: r.line,
        }
    }
}

/// The loaded policy as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicySummary {
    /// SHA-256 hex of the policy text.
    pub version: String,
    /// RFC 3339 UTC.
    #[serde(with = "time::serde::rfc3339")]
    pub loaded_at: time::OffsetDateTime,
    pub files: Vec<String>,
    pub rules: Vec<RuleInfo>,
}

impl Policy {
    pub fn rules_info(&self) -> Vec<RuleInfo> {
        self.rules().iter().map(RuleInfo::from).collect()
    }

    pub fn summary(&self) -> PolicySummary {
        PolicySummary {
            version: self.version().to_string(),
            loaded_at: self.loaded_at(),
            files: self.files().to_vec(),
            rules: self.rules_info(),
        }
    }
}
