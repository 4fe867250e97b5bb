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

/// Memory freed after a burst (handshakes, judging, 10,000 held calls
/// approved at once) goes back to the OS at once instead of after mimalloc's
/// default 1 s (10 s for arenas), which an idle worker thread never reaches:
/// 10,000 held measured about 80 MiB less. Under steady load it costs page
/// faults: 1.7 per request at stop 33 (about 8 % of CPU against a 100 ms
/// delay's 0.3), 0.85 since the futures each request boxes shrank (stop 35).
/// A delay buys throughput and costs the held figure: 100 ms measured 8-11 %
/// more requests a second and 245-269 MiB with 10,000 held, against
/// 220-236 MiB at 0 (bench/PROFILE.md, stops 33 and 39), over the 256 MiB
/// target. `MIMALLOC_PURGE_DELAY` set by the user still wins.
fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets a plain integer option; mimalloc reads options atomically.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    }
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

fn main() -> ExitCode {
    tune_allocator();
    sudomode::cli::main(no_huge_pages)
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
            assert_eq!(get(MI_OPTION_PURGE_DELAY), 0);
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
