//! MCP tool calls (SPEC §4.9): JSON-RPC 2.0 messages posted to a Model
//! Context Protocol server over Streamable HTTP become one intent each —
//! `mcp.<server>.tools` / tool name for `tools/call`, `mcp.<server>` / method
//! for everything else, `mcp.<server>` / `response` for the agent's replies.

use serde_json::{Map, Value};

use crate::{Ctx, Intent, IntentError, generic};

/// The JSON-RPC method whose intent names the tool instead of the method.
const TOOLS_CALL: &str = "tools/call";
/// Action of a JSON-RPC response the agent sends (no `method`).
const RESPONSE: &str = "response";

/// The `id` of a body that is a single JSON-RPC request (not a batch, not a
/// notification), so that SudoMode's own answer to it — a refusal — can be
/// the JSON-RPC error for that request, which MCP clients surface.
pub fn request_id(body: &[u8]) -> Option<Value> {
    #[derive(serde::Deserialize)]
    struct Probe {
        jsonrpc: Option<serde::de::IgnoredAny>,
        method: Option<serde::de::IgnoredAny>,
        id: Option<Value>,
    }
    let p: Probe = serde_json::from_slice(body).ok()?;
    p.jsonrpc?;
    p.method?;
    p.id.filter(|id| id.is_string() || id.is_number())
}

fn bad(msg: impl Into<String>) -> IntentError {
    IntentError::BadRequest(msg.into())
}

/// Host-based detection: `Some` when the body claims JSON-RPC (an object
/// with a `jsonrpc` member, or a batch with a message in it), with the
/// normalised host as the server name.
pub(crate) fn detect(ctx: &Ctx<'_>) -> Result<Option<Vec<Intent>>, IntentError> {
    if ctx.body.is_empty() {
        return Ok(None);
    }
    // Read as JSON whatever the Content-Type says: a server that ignores the
    // type would run the tool call, so it must not pass as a form post.
    let Ok(body) = ctx.body.json_ref() else {
        return Ok(None);
    };
    let claimed = match body {
        Value::Object(m) => m.contains_key("jsonrpc"),
        Value::Array(a) => a.iter().any(claims_message),
        _ => false,
    };
    if !claimed {
        return Ok(None);
    }
    with_other_method(ctx, messages(body, &ctx.req.host)?).map(Some)
}

/// A custom intent's `mcp:` endpoint (§4.7): every POST must be JSON-RPC;
/// GET and DELETE (event stream, session end) follow the generic mapping.
pub(crate) fn declared(ctx: &Ctx<'_>, server: &str) -> Result<Vec<Intent>, IntentError> {
    if ctx.method() != "POST" && ctx.body.is_empty() {
        return Ok(vec![generic::map(ctx)?]);
    }
    let body = ctx.body.json_ref().map_err(|e| {
        bad(format!(
            "the body sent to MCP server {server:?} is not JSON-RPC: {e}"
        ))
    })?;
    with_other_method(ctx, messages(body, server)?)
}

/// A POST is judged as MCP only. Any other method carrying JSON-RPC (say a
/// POST with a method override an MCP server ignores) is judged both ways,
/// the strictest decision winning (§4.8).
fn with_other_method(ctx: &Ctx<'_>, mcp: Vec<Intent>) -> Result<Vec<Intent>, IntentError> {
    if ctx.method() == "POST" {
        return Ok(mcp);
    }
    let mut all = vec![generic::map(ctx)?];
    all.extend(mcp);
    Ok(all)
}

/// A batch element that makes the array a JSON-RPC batch.
fn claims_message(v: &Value) -> bool {
    v.get("method").is_some_and(Value::is_string) || v.get("jsonrpc").is_some()
}

/// One intent per message of a single message or a batch.
fn messages(body: &Value, server: &str) -> Result<Vec<Intent>, IntentError> {
    match body {
        Value::Object(m) => Ok(vec![message(m, server)?]),
        Value::Array(a) if a.is_empty() => Err(bad("empty JSON-RPC batch")),
        Value::Array(a) => a
            .iter()
            .map(|v| match v {
                Value::Object(m) => message(m, server),
                _ => Err(bad("a JSON-RPC batch element is not an object")),
            })
            .collect(),
        _ => Err(bad(format!(
            "the body sent to MCP server {server:?} is not a JSON-RPC message"
        ))),
    }
}

fn message(m: &Map<String, Value>, server: &str) -> Result<Intent, IntentError> {
    match m.get("method") {
        Some(Value::String(method)) => request(server, method, m.get("params")),
        Some(_) => Err(bad("JSON-RPC method is not a string")),
        None if m.contains_key("result") || m.contains_key("error") => Ok(Intent::new(
            format!("mcp.{server}"),
            RESPONSE,
            Value::Object(Map::new()),
        )),
        None => Err(bad(
            "JSON-RPC message with neither a method nor a result or error",
        )),
    }
}

/// MCP params are always an object; `null` is read as absent, as the
/// official SDKs do.
fn object_or_empty(v: Option<&Value>, what: &str) -> Result<Map<String, Value>, IntentError> {
    match v {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m.clone()),
        Some(_) => Err(bad(format!("{what} is not a JSON object"))),
    }
}

fn request(server: &str, method: &str, params: Option<&Value>) -> Result<Intent, IntentError> {
    let params = object_or_empty(params, &format!("params of {method:?}"))?;
    if method != TOOLS_CALL {
        return Ok(Intent::new(
            format!("mcp.{server}"),
            method,
            Value::Object(params),
        ));
    }
    let Some(Value::String(tool)) = params.get("name") else {
        return Err(bad("tools/call without a string params.name"));
    };
    let args = object_or_empty(params.get("arguments"), "tools/call params.arguments")?;
    Ok(Intent::new(
        format!("mcp.{server}.tools"),
        tool.clone(),
        Value::Object(args),
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::test_support::{map, map_with, one, req};
    use crate::{CustomIntent, CustomMatch, IntentError, Mapper};

    const JSON: &[(&str, &str)] = &[("content-type", "application/json")];

    fn post(host: &str, body: &str) -> crate::test_support::Req {
        req("POST", host, "/mcp", JSON, body.as_bytes())
    }

    fn pairs(r: &crate::test_support::Req) -> Vec<(String, String)> {
        map(r)
            .unwrap()
            .intents
            .into_iter()
            .map(|i| (i.resource, i.action))
            .collect()
    }

    #[test]
    fn tool_call_names_the_tool() {
        let i = one(&post(
            "MCP.Example.com.",
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"send_payment","arguments":{"amount":250,"to":"acct_1"}}}"#,
        ));
        assert_eq!(
            (i.resource.as_str(), i.action.as_str()),
            ("mcp.mcp.example.com.tools", "send_payment")
        );
        assert_eq!(i.args, json!({"amount": 250, "to": "acct_1"}));
        let i = one(&post(
            "h",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ping"}}"#,
        ));
        assert_eq!((i.action.as_str(), i.args), ("ping", json!({})));
    }

    #[test]
    fn other_methods_and_responses() {
        let i = one(&post(
            "h",
            r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25"}}"#,
        ));
        assert_eq!(
            (i.resource.as_str(), i.action.as_str()),
            ("mcp.h", "initialize")
        );
        assert_eq!(i.args, json!({"protocolVersion": "2025-11-25"}));
        let i = one(&post(
            "h",
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        ));
        assert_eq!(
            (i.action.as_str(), i.args),
            ("notifications/initialized", json!({}))
        );
        let i = one(&post(
            "h",
            r#"{"jsonrpc":"2.0","id":"s1","result":{"roots":[]}}"#,
        ));
        assert_eq!(
            (i.resource.as_str(), i.action.as_str()),
            ("mcp.h", "response")
        );
        let i = one(&post(
            "h",
            r#"{"jsonrpc":"2.0","id":"s1","error":{"code":1,"message":"x"}}"#,
        ));
        assert_eq!(i.action, "response");
    }

    #[test]
    fn batch_is_one_intent_per_message() {
        let r = post(
            "h",
            r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},
                {"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_repo","arguments":{"repo":"a"}}},
                {"jsonrpc":"2.0","id":"x","result":{}}]"#,
        );
        let want: Vec<(String, String)> = [
            ("mcp.h", "tools/list"),
            ("mcp.h.tools", "delete_repo"),
            ("mcp.h", "response"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(pairs(&r), want);
    }

    #[test]
    fn malformed_json_rpc_is_bad_request() {
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":7}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":[1]}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":[1]}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":5}"#,
            r#"{"jsonrpc":"2.0","id":1}"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}, 3]"#,
            r#"[{"method":"ping"}, {"id":1}]"#,
            // A repeated key: which copy the server reads is its parser's choice.
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"x"}}"#,
        ] {
            let e = map(&post("h", body)).unwrap_err();
            assert!(matches!(e, IntentError::BadRequest(_)), "{body}: {e:?}");
        }
    }

    #[test]
    fn not_json_rpc_stays_generic() {
        for body in [r#"{"method":"card","amount":5}"#, r#"[1,2]"#, r#"[]"#] {
            assert_eq!(one(&post("h", body)).resource, "http.h", "{body}");
        }
        assert_eq!(
            one(&req("POST", "h", "/mcp", &[], b"a=1")).resource,
            "http.h"
        );
        // GET and DELETE on the endpoint: event stream and session end.
        assert_eq!(one(&req("GET", "h", "/mcp", &[], b"")).action, "get");
        assert_eq!(one(&req("DELETE", "h", "/mcp", &[], b"")).action, "delete");
    }

    #[test]
    fn content_type_does_not_hide_a_tool_call() {
        let body =
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_all"}}"#;
        for ct in ["application/x-www-form-urlencoded", "text/plain"] {
            let i = one(&req("POST", "h", "/mcp", &[("content-type", ct)], body));
            assert_eq!(i.action, "delete_all", "{ct}");
        }
    }

    #[test]
    fn method_override_is_judged_both_ways() {
        let r = req(
            "POST",
            "h",
            "/mcp",
            &[
                ("content-type", "application/json"),
                ("x-http-method-override", "DELETE"),
            ],
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_all"}}"#,
        );
        // As sent (POST) the tool call; read as the override (DELETE) both
        // the generic call and, since a JSON-RPC body under another method is
        // judged both ways, the tool call again.
        let p = pairs(&r);
        assert_eq!(
            p,
            [
                ("mcp.h.tools".to_string(), "delete_all".to_string()),
                ("http.h".to_string(), "delete".to_string()),
                ("mcp.h.tools".to_string(), "delete_all".to_string())
            ]
        );
    }

    #[test]
    fn host_specific_builtins_keep_their_hosts() {
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#;
        assert_eq!(one(&post("api.openai.com", body)).resource, "llm.openai");
        assert_eq!(one(&post("api.stripe.com", body)).resource, "stripe.mcp");
        let aws = one(&req(
            "POST",
            "lambda.us-east-1.amazonaws.com",
            "/",
            JSON,
            body.as_bytes(),
        ));
        assert_eq!(aws.resource, "aws.lambda");
        // A forged SigV4 header does not move a tool call into aws.*.
        let forged = one(&req(
            "POST",
            "h",
            "/mcp",
            &[
                ("content-type", "application/json"),
                (
                    "authorization",
                    "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00",
                ),
            ],
            body.as_bytes(),
        ));
        assert_eq!(forged.resource, "mcp.h.tools");
    }

    fn custom(mcp: &str) -> Mapper {
        Mapper::new(
            vec![CustomIntent {
                matcher: CustomMatch {
                    host: "mcp.example.com".into(),
                    method: None,
                    path: Some("/mcp".into()),
                },
                resource: None,
                action: None,
                sql: None,
                postgrest: false,
                mcp: Some(mcp.into()),
            }],
            1 << 20,
        )
        .unwrap()
    }

    #[test]
    fn custom_server_name() {
        let m = custom("github");
        let r = post(
            "mcp.example.com",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create_issue","arguments":{"title":"t"}}}"#,
        );
        let i = &map_with(&m, &r).unwrap().intents[0];
        assert_eq!(
            (i.resource.as_str(), i.action.as_str()),
            ("mcp.github.tools", "create_issue")
        );
        let i = &map_with(
            &m,
            &post(
                "mcp.example.com",
                r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
            ),
        )
        .unwrap()
        .intents[0];
        assert_eq!(
            (i.resource.as_str(), i.action.as_str()),
            ("mcp.github", "ping")
        );
        // On a declared endpoint every POST must be JSON-RPC.
        for body in ["a=1", r#"{"x":1}"#, "[]", "3"] {
            assert!(
                map_with(&m, &post("mcp.example.com", body)).is_err(),
                "{body}"
            );
        }
        let get = &map_with(&m, &req("GET", "mcp.example.com", "/mcp", &[], b""))
            .unwrap()
            .intents;
        assert_eq!(
            (get[0].resource.as_str(), get[0].action.as_str()),
            ("http.mcp.example.com", "get")
        );
        // Other paths on the host are detected by their body, named by host.
        let other = post(
            "mcp.example.com",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#,
        );
        let other = crate::test_support::Req {
            target: "/other".into(),
            ..other
        };
        assert_eq!(
            map_with(&m, &other).unwrap().intents[0].resource,
            "mcp.mcp.example.com.tools"
        );
    }

    #[test]
    fn request_ids() {
        use super::request_id;
        let id = |b: &str| request_id(b.as_bytes());
        assert_eq!(
            id(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call"}"#),
            Some(json!(7))
        );
        assert_eq!(
            id(r#"{"jsonrpc":"2.0","id":"a","method":"x","params":{}}"#),
            Some(json!("a"))
        );
        for b in [
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            r#"{"jsonrpc":"2.0","id":null,"method":"x"}"#,
            r#"{"id":1,"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"x"}]"#,
            "amount=5",
        ] {
            assert_eq!(id(b), None, "{b}");
        }
    }

    #[test]
    fn custom_mcp_validation() {
        let bad = |c: CustomIntent| {
            matches!(
                Mapper::new(vec![c], 10),
                Err(IntentError::InvalidCustom { .. })
            )
        };
        let base = CustomIntent {
            matcher: CustomMatch {
                host: "h".into(),
                method: None,
                path: None,
            },
            resource: None,
            action: None,
            sql: None,
            postgrest: false,
            mcp: Some("gh".into()),
        };
        assert!(!bad(base.clone()));
        assert!(bad(CustomIntent {
            mcp: Some("".into()),
            ..base.clone()
        }));
        assert!(bad(CustomIntent {
            mcp: Some("a b".into()),
            ..base.clone()
        }));
        assert!(bad(CustomIntent {
            postgrest: true,
            ..base.clone()
        }));
        assert!(bad(CustomIntent {
            sql: Some("/q".into()),
            ..base.clone()
        }));
        assert!(bad(CustomIntent {
            resource: Some("r".into()),
            action: Some("a".into()),
            ..base
        }));
    }
}
