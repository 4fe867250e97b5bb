//! The two body formats an approval's edits are written back into (SPEC
//! §6.2): a JSON object (or an MCP tool call's arguments), and a form whose
//! untouched fields keep their exact bytes and whose edited fields are
//! re-encoded in bracket notation where they stood. Each returns the new
//! body and the fields the body carried before the edit.

use serde_json::{Map, Value};

use super::edits::EditError;

fn not_editable(why: impl Into<String>) -> EditError {
    EditError::NotEditable(why.into())
}

/// Patches a JSON body.
pub(super) fn json(
    decoded: &[u8],
    patch: &Value,
    tool_call: bool,
) -> Result<(Vec<u8>, Map<String, Value>), EditError> {
    let mut doc = sudomode_intent::parse_json(decoded)
        .map_err(|e| not_editable(format!("the body is not JSON: {e}")))?;
    let target = if tool_call {
        if doc.get("method").and_then(Value::as_str) != Some("tools/call") {
            return Err(not_editable("only a single MCP tools/call can be edited"));
        }
        let params = doc
            .get_mut("params")
            .and_then(Value::as_object_mut)
            .ok_or_else(|| not_editable("the tool call has no params"))?;
        params
            .entry("arguments")
            .or_insert_with(|| Value::Object(Map::new()))
    } else {
        &mut doc
    };
    if !target.is_object() {
        return Err(not_editable(
            "the body is not a JSON object, so it has no fields to edit",
        ));
    }
    let base = target.as_object().cloned().unwrap_or_default();
    json_patch::merge(target, patch);
    let body = serde_json::to_vec(&doc).map_err(|e| EditError::Invalid(e.to_string()))?;
    Ok((body, base))
}

/// Patches a form body field by field (a top-level key of the patch replaces
/// every pair of that field, at the place of its first pair; new fields go
/// last).
pub(super) fn form(
    decoded: &[u8],
    patch: &Value,
) -> Result<(Vec<u8>, Map<String, Value>), EditError> {
    let fields = sudomode_intent::parse_form(decoded)
        .map_err(|e| not_editable(format!("the form cannot be read: {e}")))?;
    let (Value::Object(fields), Some(patch)) = (fields, patch.as_object()) else {
        return Err(not_editable("the form has no fields"));
    };
    let mut out: Vec<String> = Vec::new();
    let mut done: Vec<&str> = Vec::new();
    for raw in decoded.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
        let name = field_name(raw);
        match patch.get_key_value(name.as_str()) {
            None => out.push(String::from_utf8_lossy(raw).into_owned()),
            Some((k, p)) => {
                if !done.contains(&k.as_str()) {
                    done.push(k);
                    encode(k, &patched(fields.get(k), p), &mut out)?;
                }
            }
        }
    }
    for (k, p) in patch.iter().filter(|(k, _)| !done.contains(&k.as_str())) {
        encode(k, &patched(None, p), &mut out)?;
    }
    Ok((out.join("&").into_bytes(), fields))
}

/// The top-level field a raw `key=value` pair belongs to (`metadata[order]`
/// → `metadata`).
fn field_name(raw: &[u8]) -> String {
    let key = raw.split(|b| *b == b'=').next().unwrap_or_default();
    let key: String = url::form_urlencoded::parse(key)
        .next()
        .map(|(k, _)| k.into_owned())
        .unwrap_or_default();
    match key.find('[') {
        Some(i) if i > 0 => key[..i].to_string(),
        _ => key,
    }
}

/// A field's value after the merge patch (`Null`: removed).
fn patched(current: Option<&Value>, patch: &Value) -> Value {
    let mut v = current.cloned().unwrap_or(Value::Null);
    json_patch::merge(&mut v, patch);
    v
}

/// `name=value` pairs in bracket notation (`items[0][price]=p_1`).
fn encode(name: &str, v: &Value, out: &mut Vec<String>) -> Result<(), EditError> {
    match v {
        Value::Null => Ok(()),
        Value::Object(m) => m
            .iter()
            .try_for_each(|(k, v)| encode(&format!("{name}[{k}]"), v, out)),
        Value::Array(a) => a.iter().enumerate().try_for_each(|(i, v)| match v {
            Value::Null => Err(not_editable(format!(
                "{name}[{i}]: a form cannot carry null"
            ))),
            v => encode(&format!("{name}[{i}]"), v, out),
        }),
        Value::String(s) => {
            out.push(pair(name, s));
            Ok(())
        }
        Value::Number(n) => {
            out.push(pair(name, &n.to_string()));
            Ok(())
        }
        Value::Bool(b) => {
            out.push(pair(name, if *b { "true" } else { "false" }));
            Ok(())
        }
    }
}

fn pair(name: &str, value: &str) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair(name, value)
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn form_edit(body: &str, patch: Value) -> String {
        String::from_utf8(form(body.as_bytes(), &patch).unwrap().0).unwrap()
    }

    #[test]
    fn form_fields_are_replaced_in_place_and_others_keep_their_bytes() {
        assert_eq!(
            form_edit(
                "amount=5000&currency=usd&metadata[order]=7&description=a%20b",
                json!({"amount": 2500})
            ),
            "amount=2500&currency=usd&metadata[order]=7&description=a%20b"
        );
        assert_eq!(
            form_edit(
                "amount=1&metadata[order]=7&metadata[x]=y&z=1",
                json!({"metadata": {"x": null, "n": "a b"}, "new": true, "z": null})
            ),
            "amount=1&metadata%5Border%5D=7&metadata%5Bn%5D=a+b&new=true"
        );
        assert_eq!(
            form_edit("a=1", json!({"items": [{"price": "p_1"}]})),
            "a=1&items%5B0%5D%5Bprice%5D=p_1"
        );
    }

    #[test]
    fn json_bodies_and_tool_calls_are_patched() {
        let (b, base) = json(
            br#"{"a":1,"b":null,"c":{"d":2}}"#,
            &json!({"a": null, "c": {"e": 3}}),
            false,
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v, json!({"b": null, "c": {"d": 2, "e": 3}}));
        assert_eq!(
            Value::Object(base),
            json!({"a": 1, "b": null, "c": {"d": 2}})
        );
        let call = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"pay","arguments":{"amount":5}}}"#;
        let (b, base) = json(call, &json!({"amount": 4}), true).unwrap();
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["params"]["arguments"]["amount"], 4);
        assert_eq!(v["params"]["name"], "pay");
        assert_eq!(Value::Object(base), json!({"amount": 5}));
        assert!(json(b"[1,2]", &json!({"a": 1}), false).is_err());
        assert!(json(br#"{"a":1,"a":2}"#, &json!({"a": 1}), false).is_err());
    }
}
