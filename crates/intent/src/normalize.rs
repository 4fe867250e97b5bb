//! Request normalisation (SPEC §4.8): host, path, method overrides, query and
//! redacted headers, so that what is judged is never easier to pass than what
//! the upstream executes.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::decode::{Body, Kind};
use crate::{IntentError, NormalizedRequest, RawRequest};

/// Headers that carry credentials. Beyond the usual ones: Supabase
/// `apikey`, Azure `api-key`, Google `x-goog-api-key`, GitLab
/// `private-token`, and Neon's connection string (it embeds the password).
const REDACTED: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
    "x-amz-security-token",
    "apikey",
    "api-key",
    "x-goog-api-key",
    "private-token",
    "x-auth-token",
    "neon-connection-string",
];

const OVERRIDE_HEADERS: &[&str] = &[
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

const KNOWN_METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

fn bad(msg: impl Into<String>) -> IntentError {
    IntentError::BadRequest(msg.into())
}

/// Splits an origin-form target into (path, query) at the first `?`.
pub fn split_target(target: &str) -> (&str, &str) {
    let target = target.split_once('#').map_or(target, |(t, _)| t);
    // Absolute-form (`http://host/p`), as a plain-HTTP proxy request carries.
    let target = match target.split_once("://") {
        Some((scheme, rest)) if !target.starts_with('/') && !scheme.contains(['/', '?']) => {
            rest.find(['/', '?']).map_or("/", |i| &rest[i..])
        }
        _ => target,
    };
    target.split_once('?').unwrap_or((target, ""))
}

/// The request as judged, with `method` as sent (upper case); the readings a
/// method override adds come from [`method_readings`].
pub fn normalize(req: &RawRequest<'_>) -> NormalizedRequest {
    let (raw_path, raw_query) = split_target(req.path_and_query);
    let query = query_map(raw_query);
    NormalizedRequest {
        method: req.method.to_ascii_uppercase(),
        scheme: req.scheme.to_ascii_lowercase(),
        host: normalize_host(req.host),
        port: req.port,
        path: normalize_path(raw_path),
        query,
        headers: header_map(req.headers),
    }
}

/// The project's one host normaliser: lower case, no trailing dot, no IPv6
/// brackets, no `:port` (`[::1]:8443` → `::1`, `API.Stripe.com.:443` →
/// `api.stripe.com`).
pub fn normalize_host(host: &str) -> String {
    let host = host.trim();
    let host = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        match host.rsplit_once(':') {
            // Only one colon: a port suffix. Several: a bare IPv6 address.
            Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        }
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

fn query_map(raw_query: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in url::form_urlencoded::parse(raw_query.as_bytes()) {
        out.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    out
}

fn header_map(headers: &http::HeaderMap) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let name = name.as_str().to_ascii_lowercase();
        let value = if REDACTED.contains(&name.as_str()) {
            "[redacted]".to_string()
        } else {
            String::from_utf8_lossy(value.as_bytes()).into_owned()
        };
        out.entry(name)
            .and_modify(|v| {
                if value != "[redacted]" {
                    v.push_str(", ");
                    v.push_str(&value);
                }
            })
            .or_insert(value);
    }
    out
}

/// Whether a comma-separated header (`Connection`, `Expect`,
/// `Content-Encoding`, `Prefer`, …) lists `token`, in any of its lines,
/// case-insensitively. Unreadable lines list nothing.
pub fn header_lists(
    headers: &http::HeaderMap,
    name: impl http::header::AsHeaderName,
    token: &str,
) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// The methods the upstream may execute: the one sent, then the override if
/// there is one that differs (headers, `_method` in the query, a form body or
/// a JSON body all count). Upstreams differ in which one they honour, so both
/// are judged; overrides that disagree with each other are refused, since
/// nobody can say what runs.
pub fn method_readings(
    req: &RawRequest<'_>,
    bodies: &[Body<'_>],
) -> Result<Vec<String>, IntentError> {
    let (_, raw_query) = split_target(req.path_and_query);
    let mut overrides: Vec<String> = Vec::new();
    for h in OVERRIDE_HEADERS {
        for v in req.headers.get_all(*h) {
            let v = v
                .to_str()
                .map_err(|_| bad(format!("unreadable {h} header")))?;
            overrides.extend(v.split(',').map(|s| s.trim().to_string()));
        }
    }
    for (k, v) in url::form_urlencoded::parse(raw_query.as_bytes()) {
        if k == "_method" {
            overrides.push(v.trim().to_string());
        }
    }
    let typed = req.headers.contains_key(http::header::CONTENT_TYPE);
    overrides.extend(bodies.iter().flat_map(|b| body_method(b, typed)));
    let mut chosen: Option<String> = None;
    for o in overrides {
        let o = o.to_ascii_uppercase();
        if !KNOWN_METHODS.contains(&o.as_str()) {
            return Err(bad(format!("unknown method override {o:?}")));
        }
        match &chosen {
            Some(c) if *c != o => return Err(bad("conflicting method overrides")),
            _ => chosen = Some(o),
        }
    }
    let original = req.method.to_ascii_uppercase();
    Ok(match chosen {
        Some(o) if o != original => vec![original, o],
        _ => vec![original],
    })
}

/// `_method` in a body that a framework reads as a form (form type, or no
/// type at all as Rack does) or as JSON (Laravel merges JSON input).
fn body_method(body: &Body<'_>, typed: bool) -> Vec<String> {
    if body.is_empty() {
        return Vec::new();
    }
    let from_form = || {
        url::form_urlencoded::parse(&body.bytes)
            .filter(|(k, _)| k == "_method")
            .map(|(_, v)| v.trim().to_string())
            .collect::<Vec<_>>()
    };
    match body.kind {
        Kind::Form => from_form(),
        Kind::Json => match body.json_ref().ok().and_then(|v| v.get("_method")) {
            Some(Value::String(s)) => vec![s.clone()],
            Some(other) => vec![other.to_string()],
            None => Vec::new(),
        },
        // Rails and Laravel read `_method` from multipart forms too.
        Kind::Multipart => match body.args().ok().and_then(|a| a.get("_method").cloned()) {
            Some(Value::String(s)) => vec![s],
            Some(other) => vec![other.to_string()],
            None => Vec::new(),
        },
        Kind::Other if !typed => from_form(),
        Kind::Other => Vec::new(),
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes escapes of unreserved characters and `/` (an upstream that
/// decodes `%2F` would route on it, and resolving `..` after it is the
/// stricter reading); other escapes stay, with upper-case hex, so `%25`
/// cannot be decoded twice. `\` counts as `/` because WHATWG URL parsers and
/// IIS route it that way. Then dot segments are resolved and `//` collapsed.
pub fn normalize_path(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut decoded = String::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(|x| hex(*x)),
                bytes.get(i + 2).and_then(|x| hex(*x)),
            )
        {
            let c = h * 16 + l;
            if c.is_ascii_alphanumeric() || b"-._~/".contains(&c) {
                decoded.push(c as char);
            } else if c == b'\\' {
                decoded.push('/');
            } else {
                decoded.push_str(&format!("%{c:02X}"));
            }
            i += 3;
            continue;
        }
        if b == b'%' {
            // A stray `%` (not starting an escape) is escaped itself, so the
            // result never contains an escape that was not in the input
            // (`%C%61` must not become `%Ca`): normalising is idempotent and
            // decoding the result once equals decoding the input once.
            decoded.push_str("%25");
        } else if b == b'\\' {
            decoded.push('/');
        } else if b.is_ascii() {
            decoded.push(b as char);
        } else {
            // Non-ASCII bytes are escaped so the judged path stays ASCII.
            decoded.push_str(&format!("%{b:02X}"));
        }
        i += 1;
    }
    resolve_dots(&decoded)
}

fn resolve_dots(path: &str) -> String {
    let trailing = path.ends_with('/')
        || path.ends_with("/.")
        || path.ends_with("/..")
        || path == "."
        || path == "..";
    let mut out: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut s = String::with_capacity(path.len() + 1);
    for seg in &out {
        s.push('/');
        s.push_str(seg);
    }
    if s.is_empty() || trailing {
        s.push('/');
    }
    s
}

/// Fully percent-decoded segments of a normalised path, for mappers that
/// need names (tables, functions, captures).
pub fn decoded_segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        for (raw, want) in [
            ("/v1/charges", "/v1/charges"),
            ("//v1//charges", "/v1/charges"),
            ("/v1/./charges", "/v1/charges"),
            ("/v1/customers/../charges", "/v1/charges"),
            ("/v1/customers/%2e%2e/x", "/v1/x"),
            ("/v1/customers/%2E%2E/x", "/v1/x"),
            ("/v1/customers/.%2e/x", "/v1/x"),
            ("/v1/customers%2F..%2Fcharges", "/v1/charges"),
            ("/v1/customers%2fcus_1", "/v1/customers/cus_1"),
            ("/v1/%63harges", "/v1/charges"),
            ("/../../etc", "/etc"),
            ("/a\\..\\b", "/b"),
            ("/a%5c..%5cb", "/b"),
            ("/a%20b", "/a%20b"),
            ("/a%2520", "/a%2520"),
            ("/a%3a", "/a%3A"),
            ("/a%zz", "/a%25zz"),
            ("/a%2", "/a%252"),
            ("/a%C%61", "/a%25Ca"),
            ("/%2%65%2%65/x", "/%252e%252e/x"),
            ("/a/", "/a/"),
            ("/a/.", "/a/"),
            ("", "/"),
            ("/", "/"),
            ("/é", "/%C3%A9"),
        ] {
            assert_eq!(normalize_path(raw), want, "{raw}");
        }
    }

    #[test]
    fn hosts() {
        assert_eq!(normalize_host("API.Stripe.COM."), "api.stripe.com");
        assert_eq!(normalize_host("api.stripe.com:443"), "api.stripe.com");
        assert_eq!(normalize_host("[::1]:8443"), "::1");
        assert_eq!(normalize_host("[fd00::1]"), "fd00::1");
        assert_eq!(normalize_host("::1"), "::1");
    }

    #[test]
    fn targets() {
        assert_eq!(split_target("/a?b=1?c"), ("/a", "b=1?c"));
        assert_eq!(split_target("/a"), ("/a", ""));
        assert_eq!(split_target("http://h:80/a?b"), ("/a", "b"));
        assert_eq!(split_target("http://h?b"), ("", "b"));
        assert_eq!(split_target("https://h"), ("/", ""));
    }

    #[test]
    fn segments_decode() {
        assert_eq!(decoded_segments("/a/b%20c/"), vec!["a", "b c"]);
    }
}
