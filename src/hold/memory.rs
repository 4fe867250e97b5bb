//! The hint the hold registry gives the process about memory: whether many
//! agent calls are parked here. The binary installs what to do with it (the
//! allocator's settings live in `main.rs`); the library only reports.

use std::sync::OnceLock;

/// Calls parked here at or above which the process is told "many"; it is told
/// "few" again below half of it, so a count hovering at the line does not flap.
pub const MANY_HELD: usize = 256;

static HOOK: OnceLock<fn(bool)> = OnceLock::new();

/// Installs `f`, called with `true` when the calls parked here reach
/// [`MANY_HELD`] and with `false` when they fall below half of it. The first
/// installation wins.
pub fn on_many_held(f: fn(bool)) {
    let _ = HOOK.set(f);
}

/// The count of parked calls went from `before` to `after` (by one, or not at all).
pub(crate) fn held_changed(before: usize, after: usize) {
    if let Some(f) = HOOK.get()
        && let Some(many) = crossing(before, after)
    {
        f(many);
    }
}

/// `Some(true)` on reaching [`MANY_HELD`], `Some(false)` on falling below half of it.
fn crossing(before: usize, after: usize) -> Option<bool> {
    if before < MANY_HELD && after >= MANY_HELD {
        Some(true)
    } else if before >= MANY_HELD / 2 && after < MANY_HELD / 2 {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Moves the count from `n` to `to` one call at a time, as the registry
    /// does, keeping the last crossing in `many`.
    fn walk(n: &mut usize, to: usize, many: &mut bool) {
        while *n != to {
            let next = if to > *n { *n + 1 } else { *n - 1 };
            if let Some(m) = crossing(*n, next) {
                *many = m;
            }
            *n = next;
        }
    }

    #[test]
    fn many_from_the_line_until_below_half_of_it() {
        let (mut n, mut many) = (0, false);
        walk(&mut n, MANY_HELD - 1, &mut many);
        assert!(!many);
        walk(&mut n, MANY_HELD, &mut many);
        assert!(many);
        walk(&mut n, MANY_HELD / 2, &mut many);
        assert!(many, "still many at half the line");
        walk(&mut n, MANY_HELD / 2 - 1, &mut many);
        assert!(!many);
        walk(&mut n, MANY_HELD - 1, &mut many);
        assert!(!many, "few again until the line");
    }
}
