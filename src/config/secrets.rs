//! `${env:NAME}` and `${file:PATH}` references, expanded in every string of the
//! config tree. Errors name the key, never the value.

use std::path::Path;

use serde_json::Value;

/// Expands references in place; on failure returns (key path, message).
pub fn expand(v: &mut Value, base: &Path, key: &str) -> Result<(), (String, String)> {
    match v {
        Value::String(s) => {
            if s.contains("${") {
                *s = expand_str(s, base)
                    .map_err(|m| (key.trim_start_matches('.').to_string(), m))?;
            }
            Ok(())
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand(item, base, &format!("{key}[{i}]"))?;
            }
            Ok(())
        }
        Value::Object(map) => {
            for (k, item) in map.iter_mut() {
                expand(item, base, &format!("{key}.{k}"))?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn expand_str(s: &str, base: &Path) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| "unterminated `${` reference".to_string())?;
        let reference = &after[..end];
        out.push_str(&resolve(reference, base)?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
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
