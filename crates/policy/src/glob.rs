//! Rule matchers: the project's one glob engine lives in the intent crate
//! (custom intents, credentials' hosts and tunnel hosts use it too).

pub use sudomode_intent::glob::{Glob, GlobError, GlobList};
