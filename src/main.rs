//! `sudomode`: the binary is the command line of the library (`src/cli.rs`).

use std::process::ExitCode;

// Allocation was about a fifth of the proxy's CPU profile under load (see
// BENCHMARKS.md); mimalloc's thread-local caches cut that down.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    sudomode::cli::main()
}
