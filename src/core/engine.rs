//! Judging: the intent mapper and the current policy, swapped atomically on
//! hot reload so requests in flight keep the policy they started with.

use std::sync::{Arc, RwLock};

use sudomode_intent::{IntentError, Mapped, Mapper, RawRequest};
use sudomode_policy::{Decision, Policy};

pub struct Judged {
    pub mapped: Mapped,
    pub decision: Decision,
    /// The policy that decided (its version goes into the record).
    pub policy: Arc<Policy>,
}

pub struct Engine {
    mapper: Mapper,
    policy: RwLock<Arc<Policy>>,
}

impl Engine {
    pub fn new(mapper: Mapper, policy: Policy) -> Self {
        Self {
            mapper,
            policy: RwLock::new(Arc::new(policy)),
        }
    }

    /// The policy in force now.
    pub fn policy(&self) -> Arc<Policy> {
        // A poisoned lock only means a writer panicked mid-swap of an Arc,
        // which leaves the old value intact.
        match self.policy.read() {
            Ok(p) => p.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub fn replace(&self, policy: Policy) {
        let new = Arc::new(policy);
        match self.policy.write() {
            Ok(mut p) => *p = new,
            Err(p) => *p.into_inner() = new,
        }
    }

    /// Maps an HTTP request to intents and decides.
    pub fn judge(&self, agent: &str, raw: &RawRequest<'_>) -> Result<Judged, IntentError> {
        Ok(self.decide(agent, self.mapper.map(raw)?))
    }

    /// Decides already-mapped intents (an explicit intent names its own).
    pub fn decide(&self, agent: &str, mapped: Mapped) -> Judged {
        let policy = self.policy();
        let decision = policy.decide(agent, &mapped, time::OffsetDateTime::now_utc());
        Judged {
            mapped,
            decision,
            policy,
        }
    }
}
