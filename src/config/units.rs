//! Sizes (`10MiB`) in config files, and durations (`500ms`, `30s`, `10m`,
//! `2h`, `7d`) through the project's one duration parser.

// Messages say what is wrong without the value: the caller decides whether
// the value may be quoted (never when it came from a secret reference).

/// Durations use the project's one parser (the policy crate's).
pub use sudomode_policy::parse_duration;

pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| "is not a size like 10MiB".to_string())?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "KB" | "kB" => 1024,
        "MiB" | "M" | "MB" => 1024 * 1024,
        "GiB" | "G" | "GB" => 1024 * 1024 * 1024,
        _ => return Err("is not a size like 512KiB or 10MiB".to_string()),
    };
    n.checked_mul(mult)
        .and_then(|v| usize::try_from(v).ok())
        .ok_or_else(|| "is too large".to_string())
}
