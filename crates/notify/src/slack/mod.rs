//! Slack integration: Block Kit messages, request signature verification, interaction parsing, and the Web API client.

mod args;
pub mod client;
pub mod interaction;
pub mod message;
mod money;
pub mod text;
pub mod verify;

/// `action_id` of the Approve button.
pub const ACTION_APPROVE: &str = "sudomode_approve";
/// `action_id` of the "Approve for 1 h" button: approves with a one-hour
/// standing grant (SPEC §6.1, §10).
pub const ACTION_APPROVE_GRANT: &str = "sudomode_approve_grant";
/// `action_id` of the Reject button.
pub const ACTION_REJECT: &str = "sudomode_reject";
/// Prefix of the actions block's `block_id` (followed by the request id).
pub const ACTIONS_BLOCK_PREFIX: &str = "sudomode_actions:";
