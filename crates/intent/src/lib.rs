//! Turns one HTTP request into the intents SudoMode judges (SPEC §4).
//!
//! The proxy builds a [`RawRequest`] from what the agent sent; [`Mapper::map`]
//! normalises it (§4.8), decodes the body (§4.1) and runs the custom, built-in
//! and generic mappers (§4.2–4.7). Everything here is pure: no I/O.

mod aws;
mod aws_chunked;
mod aws_protocol;
pub mod catalog;
mod custom;
mod decode;
mod generic;
pub mod glob;
mod llm;
mod mcp;
mod multipart;
mod normalize;
mod postgrest;
mod s3;
mod sql;
mod sql_http;
mod sql_tables;
mod stripe;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::decode::Body;

pub use crate::aws::claims_host as is_aws_host;
pub use crate::aws_chunked::{Unframed, is_aws_chunked, unframe};
pub use crate::aws_protocol::{AwsErrorProtocol, aws_error_protocol};
pub use crate::decode::{
    Kind as BodyKind, content_kind, decode_content, parse_args, parse_form, parse_json, scalar,
};
pub use crate::mcp::request_id as jsonrpc_request_id;
pub use crate::normalize::{header_lists, normalize_host, normalize_path};
pub use crate::sql::{Flavor as SqlFlavor, sql_intents};

/// What the agent sent, before any normalisation.
#[derive(Debug, Clone)]
pub struct RawRequest<'a> {
    /// Method as sent (any case).
    pub method: &'a str,
    /// `http` or `https`.
    pub scheme: &'a str,
    /// Host as sent (may have upper case, trailing dot); no port.
    pub host: &'a str,
    pub port: u16,
    /// Origin-form target, e.g. `/v1/charges?expand[]=x` (may be un-normalised).
    pub path_and_query: &'a str,
    pub headers: &'a http::HeaderMap,
    /// Body bytes exactly as sent (possibly Content-Encoded).
    pub body: &'a [u8],
}

/// The request as judged: normalised per SPEC §4.8. Serialised into the
/// audit and exposed to CEL as `request`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NormalizedRequest {
    /// Upper case, as sent: what is forwarded. A method override adds
    /// intents read as the override (see [`Intent::method`]).
    pub method: String,
    pub scheme: String,
    /// Lower case, no trailing dot.
    pub host: String,
    pub port: u16,
    /// Percent-decoded where safe, dot segments resolved, `//` collapsed.
    pub path: String,
    /// Raw query values (first value per key), for CEL `request.query`.
    pub query: BTreeMap<String, String>,
    /// Lower-case header names; credential headers redacted to `[redacted]`.
    pub headers: BTreeMap<String, String>,
}

impl NormalizedRequest {
    /// `scheme://host[:port]path[?query]` with default ports dropped and the
    /// path normalised; the URL shown to operators.
    pub fn url(&self, raw_query: &str) -> String {
        let mut s = self.origin();
        s.push_str(&self.path);
        if !raw_query.is_empty() {
            s.push('?');
            s.push_str(raw_query);
        }
        s
    }

    /// The URL with the target exactly as sent (`//`, `..`, `%2F` kept): what
    /// identifies "the same request" for joining and retries (SPEC §6), since
    /// some upstreams (S3 keys) read the path literally.
    pub fn url_as_sent(&self, path_and_query: &str) -> String {
        let (path, query) = normalize::split_target(path_and_query);
        let mut s = self.origin();
        s.push_str(path);
        if !query.is_empty() {
            s.push('?');
            s.push_str(query);
        }
        s
    }

    /// `scheme://host[:port]`, default ports dropped.
    fn origin(&self) -> String {
        let default = matches!(
            (self.scheme.as_str(), self.port),
            ("https", 443) | ("http", 80)
        );
        if default {
            format!("{}://{}", self.scheme, self.host)
        } else {
            format!("{}://{}:{}", self.scheme, self.host, self.port)
        }
    }
}

/// One thing the agent is trying to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Intent {
    pub resource: String,
    pub action: String,
    /// Always a JSON object.
    pub args: serde_json::Value,
    /// The method this intent reads the request as, when a method override
    /// makes it differ from the method sent (§4.8); rules match it as
    /// `method` and conditions see it as `request.method`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

impl Intent {
    pub fn new(resource: impl Into<String>, action: impl Into<String>, args: Value) -> Intent {
        Intent {
            resource: resource.into(),
            action: action.into(),
            args,
            method: None,
        }
    }

    /// The intent as recorded: `resource`, `action`, `args`, and `method`
    /// for an override's reading.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("resource".into(), Value::String(self.resource.clone()));
        m.insert("action".into(), Value::String(self.action.clone()));
        m.insert("args".into(), self.args.clone());
        if let Some(method) = &self.method {
            m.insert("method".into(), Value::String(method.clone()));
        }
        Value::Object(m)
    }
}

/// Result of mapping: the normalised request and at least one intent
/// (several for multi-statement SQL, and one per reading of a request that
/// reads several ways, such as a method override: the policy judges them all
/// and the strictest decision wins).
#[derive(Debug, Clone, PartialEq)]
pub struct Mapped {
    pub request: NormalizedRequest,
    pub intents: Vec<Intent>,
}

/// Why a request cannot be judged; the proxy answers these fail-closed.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum IntentError {
    /// Body (or its decompressed form) exceeds the cap → 413 `too_large`.
    #[error("request body exceeds the {limit}-byte limit")]
    TooLarge { limit: usize },
    /// Cannot be parsed or mapped safely → 400 `bad_request`.
    #[error("{0}")]
    BadRequest(String),
    /// A custom mapping in the configuration is invalid (startup error).
    #[error("invalid custom intent #{index}: {message}")]
    InvalidCustom { index: usize, message: String },
}

/// `intents:` entry from sudomode.yaml (SPEC §4.7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomIntent {
    #[serde(rename = "match")]
    pub matcher: CustomMatch,
    #[serde(default)]
    pub resource: Option<String>,
    #[serde(default)]
    pub action: Option<String>,
    /// JSON pointer to the SQL text: the request maps to SQL intents.
    #[serde(default)]
    pub sql: Option<String>,
    /// Treat matching requests as PostgREST.
    #[serde(default)]
    pub postgrest: bool,
    /// MCP server name: requests map to `mcp.<name>` / `mcp.<name>.tools` (§4.9).
    #[serde(default)]
    pub mcp: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomMatch {
    /// Host glob.
    pub host: String,
    #[serde(default)]
    pub method: Option<String>,
    /// Path template: `{name}` captures one segment into args, `*` any suffix.
    #[serde(default)]
    pub path: Option<String>,
}

/// Maps requests to intents. Built once from the configuration.
#[derive(Debug, Clone, Default)]
pub struct Mapper {
    custom: Vec<custom::Compiled>,
    max_body_bytes: usize,
}

impl Mapper {
    /// Validates and compiles the custom mappings (§4.7).
    pub fn new(custom: Vec<CustomIntent>, max_body_bytes: usize) -> Result<Self, IntentError> {
        let custom = custom
            .into_iter()
            .enumerate()
            .map(|(index, c)| custom::Compiled::new(index, c))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            custom,
            max_body_bytes,
        })
    }

    /// Normalises, decodes and maps one request; at least one intent on success.
    pub fn map(&self, req: &RawRequest<'_>) -> Result<Mapped, IntentError> {
        let mut types = req.headers.get_all(http::header::CONTENT_TYPE).iter();
        if let Some(first) = types.next()
            && types.any(|t| t != first)
        {
            // Which Content-Type the upstream honours decides how it reads the body.
            return Err(IntentError::BadRequest(
                "conflicting Content-Type headers".into(),
            ));
        }
        let unframed = aws_chunked::unframe(req.headers, req.body, self.max_body_bytes)?;
        let sent = unframed.as_ref().map_or(req.body, |u| &u.body[..]);
        let upload = || Upload {
            size: sent.len(),
            trailers: unframed.as_ref().map_or(&[][..], |u| &u.trailers[..]),
        };
        let bytes = decode::decode_content(req.headers, sent, self.max_body_bytes)?;
        let bodies = decode::readings(bytes, req.headers);
        let methods = normalize::method_readings(req, &bodies)?;
        let request = normalize::normalize(req);
        let (raw_path, raw_query) = normalize::split_target(req.path_and_query);
        let mut intents: Vec<Intent> = Vec::new();
        // Every reading of the method and of the body is judged (§4.8).
        for method in methods {
            // The override's reading: the same request as that method.
            let overridden = (method != request.method).then(|| NormalizedRequest {
                method,
                ..request.clone()
            });
            for body in &bodies {
                let ctx = Ctx {
                    req: overridden.as_ref().unwrap_or(&request),
                    headers: req.headers,
                    raw_path,
                    raw_query,
                    body,
                    upload: upload(),
                };
                for mut intent in self.intents(&ctx)? {
                    intent.method = overridden.as_ref().map(|r| r.method.clone());
                    if !intents.contains(&intent) {
                        intents.push(intent);
                    }
                }
            }
        }
        if intents.is_empty() {
            return Err(IntentError::BadRequest("request maps to no intent".into()));
        }
        Ok(Mapped { request, intents })
    }

    fn intents(&self, ctx: &Ctx<'_>) -> Result<Vec<Intent>, IntentError> {
        for c in &self.custom {
            if let Some(intents) = c.try_map(ctx)? {
                return Ok(intents);
            }
        }
        let host = ctx.req.host.as_str();
        // Host-specific mappers come before AWS: a forged SigV4 header must
        // not move a Neon or OpenAI call into the `aws.*` namespace.
        if host == "api.stripe.com" {
            return stripe::map(ctx).map(|i| vec![i]);
        }
        if let Some(intents) = sql_http::builtin(ctx)? {
            return Ok(intents);
        }
        if host.ends_with(".supabase.co") && ctx.req.path.starts_with("/rest/v1/") {
            return postgrest::map(ctx).map(|i| vec![i]);
        }
        if let Some(i) = llm::map(ctx)? {
            return Ok(vec![i]);
        }
        // Before the SigV4 check, so a forged signature cannot move a tool call.
        if !aws::claims_host(host)
            && let Some(intents) = mcp::detect(ctx)?
        {
            return Ok(intents);
        }
        if let Some(i) = aws::map(ctx)? {
            return Ok(vec![i]);
        }
        generic::map(ctx).map(|i| vec![i])
    }
}

/// Everything a mapper may look at for one request.
pub(crate) struct Ctx<'a> {
    pub req: &'a NormalizedRequest,
    /// Original headers (unredacted: SigV4 scope, `Prefer`, `X-Amz-Target`).
    pub headers: &'a http::HeaderMap,
    /// Path exactly as sent, for protocols whose keys are literal (S3).
    pub raw_path: &'a str,
    pub raw_query: &'a str,
    pub body: &'a Body<'a>,
    pub upload: Upload<'a>,
}

/// The body as the upstream stores it: its size once out of any
/// `aws-chunked` framing, and that framing's trailers (trailing checksums).
pub(crate) struct Upload<'a> {
    pub size: usize,
    pub trailers: &'a [(String, String)],
}

impl Ctx<'_> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A header that decides the mapping: unreadable or repeated with
    /// different values is refused, since the upstream may read another copy.
    pub fn header_strict(&self, name: &str) -> Result<Option<&str>, IntentError> {
        let mut found: Option<&str> = None;
        for v in self.headers.get_all(name) {
            let v = v
                .to_str()
                .map_err(|_| IntentError::BadRequest(format!("unreadable {name} header")))?;
            match found {
                Some(f) if f != v => {
                    return Err(IntentError::BadRequest(format!(
                        "conflicting {name} headers"
                    )));
                }
                _ => found = Some(v),
            }
        }
        Ok(found)
    }

    /// Query string decoded per §4.1.
    pub fn query_args(&self) -> Result<Value, IntentError> {
        decode::parse_form(self.raw_query.as_bytes())
    }

    pub fn method(&self) -> &str {
        &self.req.method
    }
}

/// Adds `from`'s keys to `into`; a key present in both with a different
/// value is refused, since the upstream's precedence is unknown.
pub(crate) fn merge_strict(into: &mut Map<String, Value>, from: Value) -> Result<(), IntentError> {
    let Value::Object(from) = from else {
        return Ok(());
    };
    for (k, v) in from {
        match into.get(&k) {
            Some(existing) if *existing != v => {
                return Err(IntentError::BadRequest(format!(
                    "parameter {k:?} appears in both the query and the body with different values"
                )));
            }
            Some(_) => {}
            None => {
                into.insert(k, v);
            }
        }
    }
    Ok(())
}

pub(crate) fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    pub struct Req {
        pub method: String,
        pub host: String,
        pub target: String,
        pub headers: http::HeaderMap,
        pub body: Vec<u8>,
    }

    pub fn req(
        method: &str,
        host: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Req {
        let mut h = http::HeaderMap::new();
        for (k, v) in headers {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        Req {
            method: method.into(),
            host: host.into(),
            target: target.into(),
            headers: h,
            body: body.to_vec(),
        }
    }

    pub fn map_with(mapper: &Mapper, r: &Req) -> Result<Mapped, IntentError> {
        mapper.map(&RawRequest {
            method: &r.method,
            scheme: "https",
            host: &r.host,
            port: 443,
            path_and_query: &r.target,
            headers: &r.headers,
            body: &r.body,
        })
    }

    pub fn map(r: &Req) -> Result<Mapped, IntentError> {
        map_with(&Mapper::new(Vec::new(), 1 << 20).unwrap(), r)
    }

    pub fn one(r: &Req) -> Intent {
        let mut m = map(r).unwrap();
        assert_eq!(m.intents.len(), 1, "{:?}", m.intents);
        m.intents.remove(0)
    }
}
