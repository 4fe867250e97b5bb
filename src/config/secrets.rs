//! `${env:NAME}` and `${file:PATH}` references, expanded in every string of the
//! config tree (or only listed, for `env`/`exec`). Errors name the key, never
//! the value.

use std::path::Path;

use serde_json::Value;

/// Expands references in place; returns the keys whose value came from a
/// reference (errors must not quote those values). On failure returns (key
/// path, message).
pub fn expand(v: &mut Value, base: &Path) -> Result<Vec<String>, (String, String)> {
    let mut expanded = Vec::new();
    expand_at(v, base, "", &mut expanded)?;
    Ok(expanded)
}

fn expand_at(
    v: &mut Value,
    base: &Path,
    key: &str,
    expanded: &mut Vec<String>,
) -> Result<(), (String, String)> {
    let key_name = || key.trim_start_matches('.').to_string();
    match v {
        Value::String(s) => {
            if s.contains("${") {
                *s = expand_str(s, base).map_err(|m| (key_name(), m))?;
                expanded.push(key_name());
            }
            Ok(())
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_at(item, base, &format!("{key}[{i}]"), expanded)?;
            }
            Ok(())
        }
        Value::Object(map) => {
            for (k, item) in map.iter_mut() {
                expand_at(item, base, &format!("{key}.{k}"), expanded)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn expand_str(s: &str, base: &Path) -> Result<String, String> {
    map_references(s, |reference| resolve(reference, base))
}

/// `s` with every `${…}` reference replaced by what `f` makes of its inside.
fn map_references(
    s: &str,
    mut f: impl FnMut(&str) -> Result<String, String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| "unterminated `${` reference".to_string())?;
        out.push_str(&f(&after[..end])?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Every variable the tree reads through `${env:NAME}`, without reading any.
pub fn env_names(v: &Value) -> Vec<String> {
    let mut names = Vec::new();
    collect_env_names(v, &mut names);
    names.sort();
    names.dedup();
    names
}

fn collect_env_names(v: &Value, names: &mut Vec<String>) {
    match v {
        Value::String(s) if s.contains("${") => {
            // A malformed reference is reported when the config is resolved.
            let _ = map_references(s, |reference| {
                if let Some(name) = reference.strip_prefix("env:") {
                    names.push(name.to_string());
                }
                Ok(String::new())
            });
        }
        Value::Array(items) => items.iter().for_each(|i| collect_env_names(i, names)),
        Value::Object(map) => map.values().for_each(|i| collect_env_names(i, names)),
        _ => {}
    }
}

fn resolve(reference: &str, base: &Path) -> Result<String, String> {
    if let Some(name) = reference.strip_prefix("env:") {
        return std::env::var(name)
            .map_err(|_| format!("environment variable `{name}` is not set"));
    }
    if let Some(p) = reference.strip_prefix("file:") {
        let path = Path::new(p);
        let path = if path.is_absolute() {
            path.to_path_buf()
        } else {
            base.join(path)
        };
        let mut text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read secret file `{}`: {e}", path.display()))?;
        if text.ends_with('\n') {
            text.pop();
            if text.ends_with('\r') {
                text.pop();
            }
        }
        return Ok(text);
    }
    Err(format!(
        "unknown reference `${{{reference}}}`: use ${{env:NAME}} or ${{file:PATH}}"
    ))
}
