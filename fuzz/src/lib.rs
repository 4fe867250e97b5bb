//! Fuzz harness entry points. The same functions run under libFuzzer
//! (`cargo fuzz run <target>`) and under the stable-Rust mutation loop in
//! `crates/policy/tests/fuzz_stable.rs`, which includes `targets.rs` by path
//! (and `crates/store/tests/roundtrip.rs`, which includes `store_roundtrip.rs`).

#[path = "targets.rs"]
pub mod targets;

#[path = "store_roundtrip.rs"]
pub mod store_roundtrip;
