//! `sudomode`: the binary is the command line of the library (`src/cli.rs`).

use std::process::ExitCode;

// Allocation was about a fifth of the proxy's CPU profile under load (see
// BENCHMARKS.md); mimalloc's thread-local caches cut that down.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc 3's `mi_option_e` (between
/// `eager_commit_delay`, 14, and `use_numa_nodes`, 16, which
/// `libmimalloc-sys` names); the test below checks it against the default.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// `mi_option_allow_thp` (43; default 1, which the test below checks).
const MI_OPTION_ALLOW_THP: libmimalloc_sys::mi_option_t = 43;

/// How long freed memory stays before it goes back to the OS, by how many
/// calls are held here (`sudomode::hold::memory`). With few held, 100 ms:
/// the next requests reuse the pages instead of faulting them back in, 8-11 %
/// more requests a second at 64 connections and 10-12 % less CPU per request
/// than 0. With many held, 0: a slice handed out again while still resident
/// stays resident in full under the few objects a held call keeps in it, and
/// 10,000 held measured 245-269 MiB at 100 ms against 220-236 MiB at 0
/// (bench/PROFILE.md, stops 33 and 39). mimalloc's default is 1 s (10 s for
/// arenas). `MIMALLOC_PURGE_DELAY` set by the user wins and stays fixed.
const PURGE_DELAY_FEW_HELD_MS: std::ffi::c_long = 100;
const PURGE_DELAY_MANY_HELD_MS: std::ffi::c_long = 0;

fn user_sets_purge_delay() -> bool {
    std::env::var_os("MIMALLOC_PURGE_DELAY").is_some()
}

fn tune_allocator() {
    if !user_sets_purge_delay() {
        purge_for(false);
    }
}

/// The delay for few or many calls held; the hold registry calls it as the
/// calls held here cross its line.
fn purge_for(many_held: bool) {
    let ms = if many_held {
        PURGE_DELAY_MANY_HELD_MS
    } else {
        PURGE_DELAY_FEW_HELD_MS
    };
    // SAFETY: sets a plain integer option; mimalloc reads options atomically.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, ms) };
}

/// Transparent huge pages off for the server (`sudomode run` calls this
/// before it starts; `exec`'s agent would inherit the flag, so not for every
/// command). Held calls are many small, long-lived objects spread over
/// mimalloc's pages; with THP a 2 MiB region is resident as soon as one of
/// them lives in it. 10,000 held measured 213-231 MiB without against 302 MiB
/// with (bench/PROFILE.md). mimalloc reads its own option when the process
/// loads, before `main`, and has by then asked for huge pages on its first
/// arena; the process-wide flag covers that arena too. `MIMALLOC_ALLOW_THP`
/// set by the user still wins (mimalloc then applies it itself).
fn no_huge_pages() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        return;
    }
    // SAFETY: sets a plain integer option; mimalloc reads options atomically.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_ALLOW_THP, 0) };
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes integers and sets one flag of this
    // process; on a kernel without it the call fails and nothing changes.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// The process set-up for `sudomode run` (see [`sudomode::cli::main`]).
fn serving() {
    no_huge_pages();
    if !user_sets_purge_delay() {
        sudomode::hold::memory::on_many_held(purge_for);
    }
}

fn main() -> ExitCode {
    tune_allocator();
    sudomode::cli::main(serving)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_options_set_are_the_ones_meant() {
        // mimalloc 3's default purge delay is 1000 ms and THP is allowed (1);
        // the options next to them have other defaults. One test: both read
        // the defaults before `tune_allocator` changes them.
        let get = |o| unsafe { libmimalloc_sys::mi_option_get(o) };
        let user_purge = std::env::var_os("MIMALLOC_PURGE_DELAY").is_some();
        let user_thp = std::env::var_os("MIMALLOC_ALLOW_THP").is_some();
        if !user_purge {
            assert_eq!(get(MI_OPTION_PURGE_DELAY), 1000);
        }
        if !user_thp {
            assert_eq!(get(MI_OPTION_ALLOW_THP), 1);
            assert_eq!(
                get(MI_OPTION_ALLOW_THP + 1),
                0,
                "minimal_purge_size follows"
            );
        }
        tune_allocator();
        no_huge_pages();
        if !user_purge {
            assert_eq!(get(MI_OPTION_PURGE_DELAY), PURGE_DELAY_FEW_HELD_MS);
            purge_for(true);
            assert_eq!(get(MI_OPTION_PURGE_DELAY), PURGE_DELAY_MANY_HELD_MS);
            purge_for(false);
            assert_eq!(get(MI_OPTION_PURGE_DELAY), PURGE_DELAY_FEW_HELD_MS);
        }
        if !user_thp {
            assert_eq!(get(MI_OPTION_ALLOW_THP), 0);
            #[cfg(target_os = "linux")]
            assert_eq!(
                unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) },
                1
            );
        }
    }
}
