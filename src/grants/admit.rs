//! The grant check of the core's admission: a REQUIRE_APPROVAL decision
//! becomes ALLOW when every intent that needs an approval is covered by an
//! active grant of the same agent, resource and action whose condition
//! holds, the rule allows grants, and every such grant still has a use left
//! (counted atomically, all or none). Anything else — a store error included
//! — leaves the decision as it was: held for a human.

use sudomode_intent::Intent;
use sudomode_policy::{Policy, Verdict};
use sudomode_store::{Grant, Status};
use time::OffsetDateTime;

use crate::core::Core;
use crate::core::decided::{Decided, Judgement};

/// The REQUIRE_APPROVAL decision, allowed by grants where they cover it. Only
/// such a decision keeps a judgement; the admission calls this (boxed) for it
/// alone.
pub(crate) async fn apply(core: &Core, decided: Decided) -> Decided {
    let Some(judgement) = decided.judgement.as_deref() else {
        return decided;
    };
    let found = covering(core, &decided, judgement).await;
    match found {
        Ok(Some(grants)) => allow(decided, &grants),
        Ok(None) => decided,
        Err(e) => {
            tracing::warn!(request_id = %decided.id, error = %e, "grants could not be checked; the request is held");
            decided
        }
    }
}

/// The grants (one use each already counted) that cover the request, if any.
async fn covering(
    core: &Core,
    decided: &Decided,
    j: &Judgement,
) -> Result<Option<Vec<Grant>>, sudomode_store::StoreError> {
    let now = OffsetDateTime::now_utc();
    let agent = decided.agent.as_str();
    let needs = j.policy.approval_needs(agent, &j.mapped, now);
    if needs.is_empty() || needs.iter().any(|n| !n.grantable) {
        return Ok(None);
    }
    let storage = core.recorder.storage();
    let mut chosen: Vec<String> = Vec::new();
    for need in &needs {
        let Some(intent) = j.mapped.intents.get(need.intent) else {
            return Ok(None);
        };
        let candidates = storage
            .active_grants_for(agent, &intent.resource, &intent.action, now)
            .await?;
        let Some(g) = candidates
            .iter()
            .find(|g| condition_holds(&j.policy, g, agent, &j.mapped.request, intent, now))
        else {
            return Ok(None);
        };
        // One grant covering several intents (two DELETEs) is used once.
        if !chosen.contains(&g.id) {
            chosen.push(g.id.clone());
        }
    }
    storage.use_grants(chosen, now).await
}

fn condition_holds(
    policy: &Policy,
    g: &Grant,
    agent: &str,
    request: &sudomode_intent::NormalizedRequest,
    intent: &Intent,
    now: OffsetDateTime,
) -> bool {
    let Some(src) = &g.condition else {
        return true;
    };
    let result = policy
        .compile_condition(src)
        .and_then(|c| policy.eval_condition(&c, agent, request, intent, now));
    match result {
        Ok(b) => b,
        Err(e) => {
            // Fails closed: a condition that cannot be judged does not hold.
            tracing::debug!(grant = %g.id, error = %e, "grant condition could not be evaluated");
            false
        }
    }
}

/// The decision as allowed by `grants`: decision ALLOW, the policy's rule
/// kept, the grant named in the record, the reason and the event.
fn allow(mut d: Decided, grants: &[Grant]) -> Decided {
    let primary = grants
        .iter()
        .find(|g| g.resource == d.record.resource && g.action == d.record.action)
        .or_else(|| grants.first());
    let Some(primary) = primary else {
        return d;
    };
    let others = grants.len() - 1;
    let reason = format!(
        "allowed by standing grant {} from {}{} instead of an approval (rule {}: {})",
        primary.id,
        primary.created_by,
        if others > 0 {
            format!(" and {others} more")
        } else {
            String::new()
        },
        d.rule.as_ref().map_or("-", |r| r.as_str()),
        d.record.reason
    );
    d.verdict = Verdict::Allow;
    d.judgement = None;
    let r = &mut d.record;
    r.status = Status::Allowed;
    r.decision = Verdict::Allow.as_str().to_string();
    r.reason = reason.clone();
    r.expires_at = None;
    r.grant_id = Some(primary.id.clone());
    r.grantable = false;
    let ids: Vec<String> = grants.iter().map(|g| g.id.clone()).collect();
    d.event = std::mem::take(&mut d.event)
        .field("decision", Verdict::Allow.as_str())
        .field("reason", reason)
        .field("grant_id", primary.id.clone())
        .field("grants", ids);
    d
}
