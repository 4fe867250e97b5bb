//! `multipart/form-data` bodies (RFC 7578) decoded into args (SPEC §4.8):
//! fields as form fields (bracket notation, typed scalars), files as
//! `{filename, content_type, size}`. A body that does not parse is refused.

use memchr::memmem;
use serde_json::{Map, Value, json};

use crate::IntentError;
use crate::decode::{arrayify, insert, scalar, split_key};

/// More parts than this is not a form, it is an attempt to exhaust the judge.
const MAX_PARTS: usize = 1000;
/// Headers one part may carry.
const MAX_PART_HEADERS: usize = 16;

fn bad(msg: impl Into<String>) -> IntentError {
    IntentError::BadRequest(format!("multipart body: {}", msg.into()))
}

/// The `boundary` parameter of a `multipart/form-data` Content-Type.
pub(crate) fn boundary(content_type: &str) -> Option<String> {
    let mut params = content_type.split(';');
    let mime = params.next()?.trim();
    if !mime.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

/// Decodes the parts of `body` into one args object.
pub(crate) fn parse(body: &[u8], boundary: &str) -> Result<Value, IntentError> {
    if boundary.is_empty() || boundary.len() > 200 {
        return Err(bad("missing or invalid boundary"));
    }
    let delim = format!("--{boundary}");
    let next = format!("\r\n--{boundary}");
    let finder = memmem::Finder::new(next.as_bytes());
    let mut root = Map::new();
    // The first delimiter may open the body directly (no preamble).
    let mut pos = if body.starts_with(delim.as_bytes()) {
        delim.len()
    } else {
        finder
            .find(body)
            .map(|i| i + next.len())
            .ok_or_else(|| bad("no boundary"))?
    };
    for _ in 0..=MAX_PARTS {
        let rest = body.get(pos..).unwrap_or_default();
        if rest.starts_with(b"--") {
            return Ok(Value::Object(
                root.into_iter().map(|(k, v)| (k, arrayify(v))).collect(),
            ));
        }
        let start = pos + line_end(rest).ok_or_else(|| bad("truncated delimiter line"))?;
        let part_len = finder
            .find(body.get(start..).unwrap_or_default())
            .ok_or_else(|| bad("no closing boundary"))?;
        let part = body.get(start..start + part_len).unwrap_or_default();
        add_part(&mut root, part)?;
        pos = start + part_len + next.len();
    }
    Err(bad(format!("more than {MAX_PARTS} parts")))
}

/// Offset just past the CRLF ending the delimiter line (transport padding allowed).
fn line_end(rest: &[u8]) -> Option<usize> {
    let i = memmem::find(rest, b"\r\n")?;
    rest.get(..i)
        .is_some_and(|pad| pad.iter().all(|b| *b == b' ' || *b == b'\t'))
        .then_some(i + 2)
}

fn add_part(root: &mut Map<String, Value>, part: &[u8]) -> Result<(), IntentError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_PART_HEADERS];
    let (content_start, headers) = match httparse::parse_headers(part, &mut headers) {
        Ok(httparse::Status::Complete((n, h))) => (n, h),
        _ => return Err(bad("unreadable part headers")),
    };
    let header = |name: &str| {
        headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
    };
    let disposition =
        header("content-disposition").ok_or_else(|| bad("part without Content-Disposition"))?;
    let params = disposition_params(disposition);
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let name = param("name").ok_or_else(|| bad("part without a name"))?;
    let content = part.get(content_start..).unwrap_or_default();
    let value = match param("filename").or_else(|| param("filename*")) {
        Some(filename) => json!({
            "filename": filename,
            "content_type": header("content-type").unwrap_or("application/octet-stream"),
            "size": content.len(),
        }),
        None => scalar(&String::from_utf8_lossy(content)),
    };
    insert(root, &split_key(&name)?, value)
}

/// `form-data; name="a"; filename="b.pdf"` → [(name, a), (filename, b.pdf)],
/// parameter names lower-cased, quoted values unescaped.
fn disposition_params(v: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = v.split_once(';').map_or("", |(_, r)| r);
    while let Some((key, after)) = rest.split_once('=') {
        let key = key
            .trim()
            .trim_start_matches(';')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, tail) = match after.strip_prefix('"') {
            Some(q) => {
                let mut value = String::new();
                let mut chars = q.char_indices();
                let mut end = q.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, e)) = chars.next() {
                                value.push(e);
                            }
                        }
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        c => value.push(c),
                    }
                }
                (value, q.get(end..).unwrap_or(""))
            }
            None => {
                let end = after.find(';').unwrap_or(after.len());
                (after[..end].trim().to_string(), &after[end..])
            }
        };
        out.push((key, value));
        rest = tail;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CT: &str = "multipart/form-data; boundary=\"b0und\"";

    fn body(parts: &str) -> Vec<u8> {
        parts.replace('\n', "\r\n").into_bytes()
    }

    #[test]
    fn fields_and_files() {
        assert_eq!(boundary(CT).as_deref(), Some("b0und"));
        assert_eq!(boundary("multipart/mixed; boundary=x"), None);
        let b = body(
            "preamble\n--b0und\nContent-Disposition: form-data; name=\"amount\"\n\n999999\n\
             --b0und\nContent-Disposition: form-data; name=\"items[0][price]\"\n\np_1\n\
             --b0und\nContent-Disposition: form-data; name=\"tags[]\"\n\na\n\
             --b0und\nContent-Disposition: form-data; name=\"tags[]\"\n\nb\n\
             --b0und\nContent-Disposition: form-data; name=\"f\"; filename=\"a \\\"b\\\".csv\"\nContent-Type: text/csv\n\nx,y\n1,2\n\
             --b0und--\n",
        );
        assert_eq!(
            parse(&b, "b0und").unwrap(),
            json!({"amount": 999999, "items": [{"price": "p_1"}], "tags": ["a", "b"],
                   "f": {"filename": "a \"b\".csv", "content_type": "text/csv", "size": 8}})
        );
    }

    #[test]
    fn malformed_bodies_are_refused() {
        for b in [
            "--b0und\nContent-Disposition: form-data; name=\"a\"\n\n1",
            "--b0und\nContent-Disposition: form-data\n\n1\n--b0und--",
            "--b0und\nX: y\n\n1\n--b0und--",
            "no delimiter at all",
            "--b0und",
        ] {
            assert!(parse(&body(b), "b0und").is_err(), "{b:?}");
        }
        assert!(parse(b"--\r\n", "").is_err());
        let many =
            "--b0und\nContent-Disposition: form-data; name=\"a\"\n\n1\n".repeat(MAX_PARTS + 1);
        assert!(parse(&body(&format!("{many}--b0und--")), "b0und").is_err());
    }
}
