//! Property test: whatever the recorder accepts, the store reads back (SPEC
//! §13.7). Stable-Rust driver for the cargo-fuzz target `store_roundtrip`
//! (same body, included by path): seeded random byte programs building
//! values nested up to 300 levels, plus JSON texts as deep as serde_json
//! accepts. `SUDOMODE_FUZZ_ITERS=N` sets the number of random inputs
//! (default 150), `SUDOMODE_FUZZ_SEED` the seed.

#[path = "../../../fuzz/src/store_roundtrip.rs"]
mod store_roundtrip;

use serde_json::Value;
use store_roundtrip::{roundtrip_value, store_roundtrip, value_from_bytes};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// `{"a":[[…1…]]}` with `levels` containers, as text.
fn deep_text(levels: usize) -> String {
    format!(
        "{{\"a\":{}1{}}}",
        "[".repeat(levels - 1),
        "]".repeat(levels - 1)
    )
}

#[test]
fn values_at_and_past_every_limit_read_back() {
    // The body (126 deep), serde_json's own limit (127), the store's
    // bound and its neighbours, and the intake limit (64).
    for levels in [1, 2, 63, 64, 65, 97, 98, 99, 100, 101, 125, 126, 127] {
        let v: Value = serde_json::from_str(&deep_text(levels)).unwrap();
        roundtrip_value(v);
    }
}

#[test]
fn the_byte_program_builds_deep_values() {
    // Opening arrays only: one per two bytes, capped.
    let v = value_from_bytes(&[0u8; 1000]);
    assert_eq!(depth(&v), store_roundtrip::MAX_BUILD_DEPTH);
    roundtrip_value(v);
}

#[test]
fn random_inputs_read_back() {
    let seed = env_u64("SUDOMODE_FUZZ_SEED", 0x05ee_d0f5_700e);
    let iters = env_u64("SUDOMODE_FUZZ_ITERS", 150);
    let mut rng = Rng(seed | 1);
    for i in 0..iters {
        let len = rng.below(900) as usize;
        // Bias towards opening containers so deep values are common.
        let bias = rng.below(4);
        let data: Vec<u8> = (0..len)
            .map(|_| {
                let b = rng.next() as u8;
                if rng.below(4) < bias { b & 0xF8 } else { b }
            })
            .collect();
        let result = std::panic::catch_unwind(|| store_roundtrip(&data));
        assert!(
            result.is_ok(),
            "input {i} (seed {seed:#x}) failed: {:?}",
            String::from_utf8_lossy(&data)
        );
    }
}
