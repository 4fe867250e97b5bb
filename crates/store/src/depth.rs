//! Bounds the JSON nesting of what is written, so every stored row can be read
//! back (SPEC §13.7): readers use serde_json's default recursion limit (128
//! levels), and a row must stay well inside it whatever an agent sent.

use serde_json::{Map, Value};

use crate::fields::Fields;
use crate::model::RequestRecord;

/// Deepest nesting (arrays and objects, the row itself included) of a stored
/// row. Below serde_json's 128 with room for the envelopes readers add
/// (`{"requests": [row]}`, an exported line inside a listing).
pub const MAX_STORED_DEPTH: usize = 100;

/// What stands in for a container nested deeper than a row may hold.
pub const TOO_DEEP: &str = "[nested too deeply]";

/// Replaces every container of `v` that would sit deeper than `levels`
/// (counting `v` itself as level 1) with [`TOO_DEEP`]. Recurses at most
/// `levels` frames, so it is safe on any value. Returns whether it clipped.
pub(crate) fn clip(v: &mut Value, levels: usize) -> bool {
    match v {
        Value::Array(_) | Value::Object(_) if levels == 0 => {
            *v = Value::String(TOO_DEEP.to_string());
            true
        }
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |acc, i| clip(i, levels - 1) | acc),
        Value::Object(map) => clip_values(map, levels - 1),
        _ => false,
    }
}

/// [`clip`] for each value of an object whose values sit at `levels` budget.
pub(crate) fn clip_values(map: &mut Map<String, Value>, levels: usize) -> bool {
    map.values_mut().fold(false, |acc, v| clip(v, levels) | acc)
}

/// Bounds an event's type-specific fields: they sit one level inside the row.
pub(crate) fn clip_event_fields(fields: &mut Fields) -> bool {
    fields
        .values_mut()
        .fold(false, |acc, v| clip(v, MAX_STORED_DEPTH - 1) | acc)
}

/// Bounds a record's JSON values: `args` sits one level inside the row, each
/// of `intents` two (inside the list).
pub(crate) fn clip_record(rec: &mut RequestRecord) -> bool {
    let args = clip(&mut rec.args, MAX_STORED_DEPTH - 1);
    rec.intents
        .iter_mut()
        .fold(args, |acc, i| clip(i, MAX_STORED_DEPTH - 2) | acc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(depth: usize) -> Value {
        (1..depth).fold(json!([1]), |v, _| json!([v]))
    }

    fn depth(v: &Value) -> usize {
        match v {
            Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
            Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
            _ => 0,
        }
    }

    #[test]
    fn clips_only_what_is_too_deep() {
        let mut v = nested(5);
        assert!(!clip(&mut v, 5));
        assert_eq!(v, nested(5));
        assert!(clip(&mut v, 3));
        assert_eq!(v, json!([[["[nested too deeply]"]]]));
        assert_eq!(depth(&v), 3);
        let mut flat = json!({"a": 1, "b": "x"});
        assert!(!clip(&mut flat, 1));
        let mut o = json!({"a": {"b": 1}, "c": 2});
        assert!(clip(&mut o, 1));
        assert_eq!(o, json!({"a": TOO_DEEP, "c": 2}));
        let mut scalar = json!(3);
        assert!(!clip(&mut scalar, 0));
    }

    #[test]
    fn a_clipped_value_reads_back() {
        let mut v = json!({"args": nested(126)});
        clip(&mut v, MAX_STORED_DEPTH);
        assert_eq!(depth(&v), MAX_STORED_DEPTH);
        let text = serde_json::to_string(&json!({"requests": [v]})).unwrap();
        assert!(serde_json::from_str::<Value>(&text).is_ok());
    }
}
