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

/// Memory freed after a burst (handshakes, judging, 10,000 held calls
/// approved at once) goes back to the OS at once instead of after mimalloc's
/// default 1 s (10 s for arenas), which an idle worker thread never reaches:
/// 10,000 held measured about 80 MiB less, with no change in throughput
/// (bench/PROFILE.md). `MIMALLOC_PURGE_DELAY` set by the user still wins.
fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets a plain integer option; mimalloc reads options atomically.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    }
}

fn main() -> ExitCode {
    tune_allocator();
    sudomode::cli::main()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_option_is_the_one_meant() {
        // mimalloc 3's default purge delay is 1000 ms; another option would
        // not have that default.
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(
                unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) },
                1000
            );
        }
        tune_allocator();
        assert_eq!(
            unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) },
            0
        );
    }
}
