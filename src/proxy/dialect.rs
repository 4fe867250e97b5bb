//! The shape an agent's client needs a refusal in (SPEC §3 "Speak the
//! client's language"): SudoMode's JSON error as it is; for an MCP request
//! (§4.9) the same JSON also shaped as the JSON-RPC 2.0 error answering the
//! request's `id`; for an AWS request (§4.3) the service's own error format
//! with the JSON in `X-SudoMode-Error`. SDKs surface an error body only when
//! it parses in their protocol; anything else becomes a bare "server error"
//! (or an empty message) and the model never learns the reason.

mod aws_error;

use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::{Value, json};
use sudomode_intent::AwsErrorProtocol;

use crate::core::decided::Decided;
use crate::core::{Refusal, RefusalKind};

/// JSON-RPC "Invalid Request": the body could not be judged.
const INVALID_REQUEST: i64 = -32600;
/// An implementation-defined server error (-32000 to -32099): refused,
/// rejected, expired or not delivered.
const REFUSED: i64 = -32001;
/// The JSON error, for clients that read it beside an AWS error body.
pub const SUDOMODE_ERROR: &str = "x-sudomode-error";

/// How refusals are written for one request.
#[derive(Debug, Clone, Default)]
pub enum Dialect {
    /// SudoMode's JSON error (SPEC §3).
    #[default]
    Json,
    /// The JSON error, on a Stripe host: a `pending` answer also says
    /// `Stripe-Should-Retry: true`, so the SDK retries (and joins the hold).
    Stripe,
    /// Also a JSON-RPC error answering request `id`.
    JsonRpc(Value),
    /// The AWS service's own error format.
    Aws(AwsErrorProtocol),
}

/// A refusal as written on the wire: body, content type, extra headers.
pub struct Written {
    pub body: Vec<u8>,
    pub content_type: HeaderValue,
    pub headers: HeaderMap,
}

/// What a dialect is chosen from: the request as the agent sent it.
pub struct Sent<'a> {
    pub host: &'a str,
    pub headers: &'a HeaderMap,
    pub raw_query: &'a str,
    /// Empty until read.
    pub body: &'a [u8],
}

impl Dialect {
    /// Before the request is judged (an early refusal): AWS's own host
    /// names speak AWS, Stripe's host gets the Stripe retry header.
    pub fn of_request(sent: &Sent<'_>) -> Dialect {
        if sudomode_intent::is_aws_host(sent.host)
            && let Some(p) = aws_protocol(sent)
        {
            return Dialect::Aws(p);
        }
        if sent.host == "api.stripe.com" {
            return Dialect::Stripe;
        }
        Dialect::Json
    }

    /// After judging (`Err` when the request could not be mapped): a tool
    /// call is answered as JSON-RPC (a malformed one too), and a request
    /// judged as AWS (§4.3: on any host, by its SigV4 signature) in its
    /// service's format. A forged signature on a host that maps otherwise
    /// (Stripe, SQL, an LLM) changes nothing.
    pub fn judged(sent: &Sent<'_>, decided: Result<&Decided, ()>) -> Dialect {
        let mcp = decided.is_err() || decided.is_ok_and(Decided::touches_mcp);
        if let Some(id) = mcp
            .then(|| sudomode_intent::jsonrpc_request_id(sent.body))
            .flatten()
        {
            return Dialect::JsonRpc(id);
        }
        let aws = decided.is_ok_and(|d| d.resource().starts_with("aws."));
        match aws.then(|| aws_protocol(sent)).flatten() {
            Some(p) => Dialect::Aws(p),
            None => Dialect::of_request(sent),
        }
    }

    /// The refusal body in this dialect.
    pub fn body(&self, kind: RefusalKind, refusal: Value) -> Value {
        match self {
            Dialect::JsonRpc(id) => envelope(kind, refusal, id),
            _ => refusal,
        }
    }

    /// The refusal as this dialect writes it.
    pub fn write(&self, r: &Refusal) -> Written {
        let json = r.body_json();
        let mut headers = HeaderMap::new();
        if r.kind == RefusalKind::Pending && matches!(self, Dialect::Stripe) {
            headers.insert("stripe-should-retry", HeaderValue::from_static("true"));
        }
        let Dialect::Aws(protocol) = self else {
            return Written {
                body: serde_json::to_vec(&self.body(r.kind, json)).unwrap_or_default(),
                content_type: HeaderValue::from_static("application/json"),
                headers,
            };
        };
        if let Ok(v) = HeaderValue::from_str(&ascii_json(&json)) {
            headers.insert(SUDOMODE_ERROR, v);
        }
        aws_error::write(*protocol, r, aws_code(r.kind, r.status, *protocol), headers)
    }
}

fn aws_protocol(sent: &Sent<'_>) -> Option<AwsErrorProtocol> {
    sudomode_intent::aws_error_protocol(sent.host, sent.headers, sent.raw_query, sent.body)
}

/// The AWS error code for a refusal (SPEC §3).
fn aws_code(kind: RefusalKind, status: StatusCode, p: AwsErrorProtocol) -> &'static str {
    let json = p == AwsErrorProtocol::Json;
    match kind {
        RefusalKind::Denied
        | RefusalKind::Rejected
        | RefusalKind::Expired
        | RefusalKind::ProxyAuthRequired => {
            if json {
                "AccessDeniedException"
            } else {
                "AccessDenied"
            }
        }
        RefusalKind::Pending | RefusalKind::StoreUnavailable => "ServiceUnavailable",
        RefusalKind::BadRequest | RefusalKind::TooLarge => "InvalidRequest",
        RefusalKind::UpstreamError if status == StatusCode::GATEWAY_TIMEOUT => "GatewayTimeout",
        RefusalKind::UpstreamError => "BadGateway",
    }
}

/// JSON with every non-ASCII character escaped (`\uXXXX`), so it is a
/// header value any client reads.
fn ascii_json(v: &Value) -> String {
    let text = v.to_string();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

/// `{"error": {type, message, …}}` → the same fields plus `jsonrpc`, `id`,
/// `error.code` and `error.data` (the details, where JSON-RPC clients keep them).
fn envelope(kind: RefusalKind, refusal: Value, id: &Value) -> Value {
    let mut error = refusal
        .get("error")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let invalid = matches!(kind, RefusalKind::BadRequest | RefusalKind::TooLarge);
    let data = Value::Object(error.clone());
    error.insert(
        "code".into(),
        json!(if invalid { INVALID_REQUEST } else { REFUSED }),
    );
    error.insert("data".into(), data);
    json!({"jsonrpc": "2.0", "id": id, "error": error})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_json_is_ascii_and_parses_back() {
        let v = json!({"error": {"message": "refusé — 日本 🚀"}});
        let text = ascii_json(&v);
        assert!(text.is_ascii(), "{text}");
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), v);
    }

    #[test]
    fn keeps_sudomode_fields_and_adds_json_rpc() {
        let refusal =
            json!({"error": {"type": "denied", "message": "m", "request_id": "r", "rule": "x"}});
        let v = Dialect::JsonRpc(json!(4)).body(RefusalKind::Denied, refusal);
        assert_eq!(v["jsonrpc"], "2.0");
        assert_eq!(v["id"], 4);
        assert_eq!(v["error"]["type"], "denied");
        assert_eq!(v["error"]["message"], "m");
        assert_eq!(v["error"]["code"], REFUSED);
        assert_eq!(v["error"]["data"]["rule"], "x");
        let bad = Dialect::JsonRpc(json!("a")).body(
            RefusalKind::BadRequest,
            json!({"error": {"type": "bad_request", "message": "m"}}),
        );
        assert_eq!(bad["error"]["code"], INVALID_REQUEST);
        assert_eq!(bad["id"], "a");
    }
}
