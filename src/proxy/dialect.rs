//! The shape an agent's client needs a refusal in (SPEC §3 "Speak the
//! client's language"): SudoMode's JSON error as it is, or — for an MCP
//! request (§4.9) — the same JSON also shaped as the JSON-RPC 2.0 error
//! answering the request's `id`. MCP clients (the official SDKs among them)
//! surface an error body only when it parses as JSON-RPC; anything else
//! becomes a bare "server error" and the model never learns the reason.

use serde_json::{Value, json};

use crate::core::RefusalKind;
use crate::core::decided::Decided;

/// JSON-RPC "Invalid Request": the body could not be judged.
const INVALID_REQUEST: i64 = -32600;
/// An implementation-defined server error (-32000 to -32099): refused,
/// rejected, expired or not delivered.
const REFUSED: i64 = -32001;

/// How refusals are written for one request.
#[derive(Debug, Clone, Default)]
pub enum Dialect {
    /// SudoMode's JSON error (SPEC §3).
    #[default]
    Json,
    /// Also a JSON-RPC error answering request `id`.
    JsonRpc(Value),
}

impl Dialect {
    /// The dialect of a judged request (`Err` when it could not be mapped:
    /// a malformed tool call is still answered as JSON-RPC).
    pub fn of(decided: Result<&Decided, ()>, body: &[u8]) -> Dialect {
        let mcp = decided.is_err() || decided.is_ok_and(Decided::touches_mcp);
        match mcp
            .then(|| sudomode_intent::jsonrpc_request_id(body))
            .flatten()
        {
            Some(id) => Dialect::JsonRpc(id),
            None => Dialect::Json,
        }
    }

    /// The refusal body in this dialect.
    pub fn body(&self, kind: RefusalKind, refusal: Value) -> Value {
        match self {
            Dialect::Json => refusal,
            Dialect::JsonRpc(id) => envelope(kind, refusal, id),
        }
    }
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
