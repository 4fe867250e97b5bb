//! Standing grants (SPEC §6.1): what an operator may grant ([`Terms`]),
//! making and revoking grants through the audit phase, and — in the core's
//! admission — letting a REQUIRE_APPROVAL request through when a grant
//! covers every intent of it that needs an approval (`admit`).

mod admit;

use std::time::Duration;

use serde::Deserialize;
use sudomode_policy::{Policy, Verdict};
use sudomode_store::{Grant, RequestRecord, StoreError};
use time::OffsetDateTime;

use crate::core::Core;

pub(crate) use admit::apply;

/// The longest a grant may last (SPEC §6.1).
pub const MAX_FOR: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// The terms cannot make a grant (400).
    #[error("{0}")]
    Invalid(String),
    /// The request's rule does not allow a grant (409).
    #[error("{0}")]
    NotGrantable(String),
    #[error("no such grant")]
    NotFound,
    /// The request to approve with a grant is unknown or not pending.
    #[error(transparent)]
    Hold(#[from] crate::hold::HoldError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// `"grant"` of an approval: `{"for", "max_uses"?, "condition"?}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantTerms {
    #[serde(rename = "for")]
    pub lasts: String,
    #[serde(default)]
    pub max_uses: Option<u64>,
    #[serde(default)]
    pub condition: Option<String>,
}

/// `POST /api/v1/grants`: a grant made directly.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewGrant {
    pub agent: String,
    pub resource: String,
    pub action: String,
    #[serde(rename = "for")]
    pub lasts: String,
    #[serde(default)]
    pub max_uses: Option<u64>,
    #[serde(default)]
    pub condition: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// Validated terms of a grant.
#[derive(Debug, Clone)]
pub struct Terms {
    pub lasts: Duration,
    pub max_uses: Option<u64>,
    pub condition: Option<String>,
    pub reason: Option<String>,
}

/// Exactly whom and what a grant covers.
#[derive(Debug, Clone)]
pub struct Scope {
    pub agent: String,
    pub resource: String,
    pub action: String,
}

impl GrantTerms {
    pub fn validate(self, policy: &Policy, reason: Option<String>) -> Result<Terms, GrantError> {
        let lasts = sudomode_policy::parse_duration(&self.lasts)
            .map_err(|e| GrantError::Invalid(format!("grant.for: {e}")))?;
        if lasts > MAX_FOR {
            return Err(GrantError::Invalid(format!(
                "grant.for: {:?} is longer than 7 days, the most a grant may last",
                self.lasts
            )));
        }
        if self.max_uses == Some(0) {
            return Err(GrantError::Invalid(
                "grant.max_uses: must be at least 1 (leave it out for no limit)".into(),
            ));
        }
        let condition = self
            .condition
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty());
        if let Some(c) = &condition {
            policy
                .compile_condition(c)
                .map_err(|e| GrantError::Invalid(format!("grant.condition: {e}")))?;
        }
        Ok(Terms {
            lasts,
            max_uses: self.max_uses,
            condition,
            reason: reason
                .map(|r| r.trim().to_string())
                .filter(|r| !r.is_empty()),
        })
    }
}

impl NewGrant {
    /// Splits into scope and validated terms; `agents` are the configured
    /// agent names (a grant for an unknown agent could never apply).
    pub fn validate(
        self,
        policy: &Policy,
        agents: &[String],
    ) -> Result<(Scope, Terms), GrantError> {
        for (name, v) in [
            ("agent", &self.agent),
            ("resource", &self.resource),
            ("action", &self.action),
        ] {
            if v.trim().is_empty() || v.trim() != v {
                return Err(GrantError::Invalid(format!(
                    "{name}: must be the exact, non-empty name"
                )));
            }
        }
        if !agents.contains(&self.agent) {
            return Err(GrantError::Invalid(format!(
                "agent: no agent is named {:?}",
                self.agent
            )));
        }
        let terms = GrantTerms {
            lasts: self.lasts,
            max_uses: self.max_uses,
            condition: self.condition,
        }
        .validate(policy, self.reason)?;
        Ok((
            Scope {
                agent: self.agent,
                resource: self.resource,
                action: self.action,
            },
            terms,
        ))
    }
}

impl Scope {
    /// The agent and primary intent of a request.
    pub fn of(record: &RequestRecord) -> Self {
        Scope {
            agent: record.agent.clone(),
            resource: record.resource.clone(),
            action: record.action.clone(),
        }
    }
}

/// 409 unless approving `record` may also make a grant: a REQUIRE_APPROVAL
/// whose rule says `grantable` and needs one approver.
pub fn check_grantable(record: &RequestRecord) -> Result<(), GrantError> {
    let rule = record.rule.as_deref().unwrap_or("(none)");
    if record.decision != Verdict::RequireApproval.as_str() {
        return Err(GrantError::NotGrantable(format!(
            "only a request that needed approval can be approved with a grant (this one was {})",
            record.decision
        )));
    }
    if record.required_approvals > 1 {
        return Err(GrantError::NotGrantable(format!(
            "rule `{rule}` needs {} approvers, so it cannot be granted standing",
            record.required_approvals
        )));
    }
    if !record.grantable {
        return Err(GrantError::NotGrantable(format!(
            "rule `{rule}` does not allow standing grants (grantable: false); approve without a grant"
        )));
    }
    Ok(())
}

/// The grant an approval of request `id` asks for: valid terms (400), and a
/// pending request whose rule allows grants (404 / 409).
pub async fn for_approval(
    core: &Core,
    id: &str,
    terms: GrantTerms,
    reason: Option<String>,
) -> Result<(Scope, Terms), GrantError> {
    let terms = terms.validate(&core.engine.policy(), reason)?;
    let record = core
        .recorder
        .storage()
        .get_request(id)
        .await?
        .ok_or(crate::hold::HoldError::NotFound)?;
    if record.status != sudomode_store::Status::Pending {
        return Err(crate::hold::HoldError::NotPending(record.status).into());
    }
    check_grantable(&record)?;
    Ok((Scope::of(&record), terms))
}

/// Makes a grant (with its `grant.created` event). `id`: a pre-chosen id
/// (an approval names the grant it makes before the grant is written).
pub async fn create(
    core: &Core,
    scope: Scope,
    terms: Terms,
    operator: &str,
    from_request: Option<&str>,
    id: Option<String>,
) -> Result<Grant, GrantError> {
    let now = OffsetDateTime::now_utc();
    let lasts = time::Duration::try_from(terms.lasts).unwrap_or(time::Duration::hours(1));
    let grant = Grant {
        id: id.unwrap_or_else(new_id),
        created_at: now,
        created_by: operator.to_string(),
        from_request: from_request.map(str::to_string),
        agent: scope.agent,
        resource: scope.resource,
        action: scope.action,
        condition: terms.condition,
        expires_at: now + lasts,
        max_uses: terms.max_uses,
        uses: 0,
        revoked_at: None,
        revoked_by: None,
        reason: terms.reason,
    };
    core.recorder.grant_created(grant.clone()).await?;
    tracing::info!(grant = %grant.id, operator, agent = %crate::logtext::escape_log(&grant.agent),
        resource = %crate::logtext::escape_log(&grant.resource), action = %crate::logtext::escape_log(&grant.action),
        "standing grant created");
    Ok(grant)
}

/// Revokes a grant; an already revoked one is returned as it is.
pub async fn revoke(core: &Core, id: &str, operator: &str) -> Result<Grant, GrantError> {
    let g = core
        .recorder
        .grant_revoked(id, operator)
        .await?
        .ok_or(GrantError::NotFound)?;
    tracing::info!(grant = %g.id, operator, "standing grant revoked");
    Ok(g)
}

/// A new grant id (UUIDv7: sorts by creation time).
pub fn new_id() -> String {
    sudomode_store::new_request_id()
}

/// The Grant object of the API: the stored grant plus whether it is active.
pub fn grant_json(g: &Grant, now: OffsetDateTime) -> serde_json::Value {
    let mut v = serde_json::to_value(g).unwrap_or(serde_json::Value::Null);
    if let serde_json::Value::Object(m) = &mut v {
        m.insert("active".into(), g.is_active(now).into());
    }
    v
}
