//! SudoMode's own answers to MCP requests (SPEC §4.9): the JSON error of §3,
//! also shaped as the JSON-RPC 2.0 error answering the request's `id`. MCP
//! clients (the official SDKs among them) surface an error body only when it
//! parses as JSON-RPC; anything else becomes a bare "server error" and the
//! model never learns the reason.

use http::Response;
use serde_json::{Value, json};
use sudomode_intent::Intent;

use super::ProxyBody;
use super::pipeline::Ctx;
use super::reply::{ErrorType, RefusalBody, full};

/// JSON-RPC "Invalid Request": the body could not be judged.
const INVALID_REQUEST: i64 = -32600;
/// An implementation-defined server error (-32000 to -32099): refused,
/// rejected, expired or not delivered.
const REFUSED: i64 = -32001;

/// Remembers the JSON-RPC id of an MCP request (or of any request whose
/// mapping failed, since a malformed tool call is one) for [`answer`].
pub(super) fn note(ctx: &Ctx, body: &[u8], intents: Option<&[Intent]>) {
    let mcp = intents.is_none_or(|all| all.iter().any(|i| i.resource.starts_with("mcp.")));
    if mcp && let Some(id) = sudomode_intent::jsonrpc_request_id(body) {
        let _ = ctx.jsonrpc_id.set(id);
    }
}

/// A refusal SudoMode made for a noted request, as a JSON-RPC error too;
/// every other response (the upstream's above all) is returned untouched.
pub(super) fn answer(ctx: &Ctx, resp: Response<ProxyBody>) -> Response<ProxyBody> {
    let (Some(id), Some(RefusalBody(refusal))) =
        (ctx.jsonrpc_id.get(), resp.extensions().get::<RefusalBody>())
    else {
        return resp;
    };
    let body = envelope(refusal, id);
    let (parts, _) = resp.into_parts();
    Response::from_parts(parts, full(serde_json::to_vec(&body).unwrap_or_default()))
}

/// `{"error": {type, message, …}}` → the same fields plus `jsonrpc`, `id`,
/// `error.code` and `error.data` (the details, where JSON-RPC clients keep them).
fn envelope(refusal: &Value, id: &Value) -> Value {
    let mut error = refusal
        .get("error")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let invalid = [ErrorType::BadRequest, ErrorType::TooLarge]
        .iter()
        .any(|t| error.get("type").and_then(Value::as_str) == Some(t.as_str()));
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
    fn keeps_sudomode_fields_and_adds_json_rpc() {
        let refusal =
            json!({"error": {"type": "denied", "message": "m", "request_id": "r", "rule": "x"}});
        let v = envelope(&refusal, &json!(4));
        assert_eq!(v["jsonrpc"], "2.0");
        assert_eq!(v["id"], 4);
        assert_eq!(v["error"]["type"], "denied");
        assert_eq!(v["error"]["message"], "m");
        assert_eq!(v["error"]["code"], REFUSED);
        assert_eq!(v["error"]["data"]["rule"], "x");
        let bad = envelope(
            &json!({"error": {"type": "bad_request", "message": "m"}}),
            &json!("a"),
        );
        assert_eq!(bad["error"]["code"], INVALID_REQUEST);
        assert_eq!(bad["id"], "a");
    }
}
