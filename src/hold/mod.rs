//! Holding for approval (SPEC §6): the pending registry that operators decide
//! through (`registry`), and the proxy's hold phase that parks an agent call
//! until the outcome and then forwards it exactly once (`phase`); edits of a
//! held call (`edits`), also through another replica (`edit_peers`).

mod edit_body;
pub mod edit_peers;
pub mod edits;
pub mod memory;
pub mod phase;
pub mod registry;

pub use registry::{Approval, Entry, HoldError, Holds, Outcome, Ticket, sweeper};
