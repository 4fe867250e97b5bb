//! Durations (`500ms`, `30s`, `10m`, `2h`, `7d`) and sizes (`10MiB`) in config files.

use std::time::Duration;

// Messages say what is wrong without the value: the caller decides whether
// the value may be quoted (never when it came from a secret reference).
const NOT_A_DURATION: &str = "is not a duration like 500ms, 30s, 10m, 2h or 7d";

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| NOT_A_DURATION.to_string())?;
    let ms = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(NOT_A_DURATION.to_string());
        }
    };
    n.checked_mul(ms)
        .map(Duration::from_millis)
        .ok_or_else(|| "is too long".to_string())
}

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
