//! Bulk arguments (SPEC §11): argument values larger than 64 KiB in total
//! are stored truncated — long strings cut with their size, long lists and
//! objects cut with a count — and marked with the total size and the body's
//! SHA-256, so refused bulk requests cannot fill the disk. The decision was
//! made on the whole arguments, and an approval still binds the exact body
//! bytes through `body_sha256`.

use serde_json::{Map, Value, json};

/// Arguments up to this size (roughly, as JSON text) are kept whole.
pub const MAX_ARGS_BYTES: usize = 64 * 1024;
/// Longest string kept whole once the arguments are over the limit.
const MAX_STRING_BYTES: usize = 1024;
/// Key of the marker added to truncated arguments.
pub const TRUNCATED_KEY: &str = "sudomode_truncated";

/// Truncates `args` in place when they are over [`MAX_ARGS_BYTES`].
pub fn truncate_args(args: &mut Value, body_sha256: &str) {
    let Some(size) = oversize(args) else {
        return;
    };
    let mut budget = MAX_ARGS_BYTES;
    let cut = clip(args, &mut budget);
    let marker = json!({"bytes": size, "body_sha256": body_sha256});
    *args = match cut {
        Value::Object(mut map) => {
            map.insert(TRUNCATED_KEY.into(), marker);
            Value::Object(map)
        }
        other => json!({TRUNCATED_KEY: marker, "value": other}),
    };
}

/// The arguments' approximate JSON size when it is over the limit: a walk
/// that allocates nothing, so small arguments cost almost nothing. Cutting
/// may overshoot the limit by a little, so arguments that carry the marker
/// get some slack: truncating twice changes nothing, and a marker an agent
/// sends itself buys it no more than that slack.
fn oversize(v: &Value) -> Option<usize> {
    let size = approx_size(v);
    let limit = if v.get(TRUNCATED_KEY).is_some() {
        4 * MAX_ARGS_BYTES
    } else {
        MAX_ARGS_BYTES
    };
    (size > limit).then_some(size)
}

fn approx_size(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len() + 2,
        Value::Array(items) => items.iter().map(|i| approx_size(i) + 1).sum::<usize>() + 2,
        Value::Object(map) => {
            map.iter()
                .map(|(k, i)| k.len() + 4 + approx_size(i))
                .sum::<usize>()
                + 2
        }
        Value::Number(_) => 20,
        Value::Bool(_) | Value::Null => 5,
    }
}

/// A copy of `v` that spends at most about `budget` bytes.
fn clip(v: &Value, budget: &mut usize) -> Value {
    match v {
        Value::String(s) => {
            let kept = cut_string(s);
            *budget = budget.saturating_sub(kept.len() + 2);
            Value::String(kept)
        }
        Value::Array(items) => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                if *budget == 0 {
                    out.push(Value::String(format!("… {} more items", items.len() - i)));
                    break;
                }
                out.push(clip(item, budget));
            }
            Value::Array(out)
        }
        Value::Object(map) => {
            let mut out = Map::new();
            for (i, (k, item)) in map.iter().enumerate() {
                if *budget == 0 {
                    out.insert("…".into(), json!(format!("{} more keys", map.len() - i)));
                    break;
                }
                *budget = budget.saturating_sub(k.len() + 4);
                out.insert(k.clone(), clip(item, budget));
            }
            Value::Object(out)
        }
        scalar => {
            *budget = budget.saturating_sub(approx_size(scalar));
            scalar.clone()
        }
    }
}

/// The string, or its first [`MAX_STRING_BYTES`] and its size.
fn cut_string(s: &str) -> String {
    if s.len() <= MAX_STRING_BYTES {
        return s.to_string();
    }
    let mut end = MAX_STRING_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [{} bytes]", &s[..end], s.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_arguments_are_kept_whole() {
        let mut v = json!({"amount": 5, "note": "x".repeat(60_000)});
        let before = v.clone();
        truncate_args(&mut v, "abc");
        assert_eq!(v, before);
    }

    #[test]
    fn a_bulk_value_is_cut_with_its_size_and_the_body_hash() {
        let mut v = json!({"amount": 5, "blob": "é".repeat(400_000), "to": "acct_1"});
        truncate_args(&mut v, "abc");
        assert_eq!(v["amount"], 5);
        assert_eq!(v["to"], "acct_1");
        let blob = v["blob"].as_str().unwrap();
        assert!(
            blob.len() < 1100 && blob.ends_with("… [800000 bytes]"),
            "{blob}"
        );
        assert_eq!(v[TRUNCATED_KEY]["body_sha256"], "abc");
        assert!(v[TRUNCATED_KEY]["bytes"].as_u64().unwrap() > 800_000);
        let again = v.clone();
        truncate_args(&mut v, "abc");
        assert_eq!(v, again, "a stored view is stored as it is");
    }

    #[test]
    fn long_lists_are_cut_with_a_count() {
        let items: Vec<Value> = (0..20_000).map(|i| json!({"n": i})).collect();
        let mut v = json!({"items": items});
        truncate_args(&mut v, "h");
        let kept = v["items"].as_array().unwrap();
        assert!(kept.len() < 20_000);
        let last = kept.last().unwrap().as_str().unwrap();
        assert!(last.ends_with("more items"), "{last}");
        assert!(serde_json::to_string(&v).unwrap().len() < 2 * MAX_ARGS_BYTES);
        let again = v.clone();
        truncate_args(&mut v, "h");
        assert_eq!(v, again);
        let mut scalar = Value::String("s".repeat(100_000));
        truncate_args(&mut scalar, "h");
        assert_eq!(scalar[TRUNCATED_KEY]["body_sha256"], "h");
    }
}
