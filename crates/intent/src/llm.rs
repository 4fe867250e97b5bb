//! LLM provider mapping (SPEC §4.5): provider from host, action from path,
//! request settings as args with message content left out.

use serde_json::{Map, Value};

use crate::normalize::decoded_segments;
use crate::{Ctx, Intent, IntentError, object};

/// Fields that carry conversation content: large, private, not policy input.
const CONTENT: &[&str] = &[
    "messages",
    "input",
    "prompt",
    "system",
    "contents",
    "instructions",
];

fn provider(host: &str) -> Option<&'static str> {
    match host {
        "api.openai.com" => Some("openai"),
        "api.anthropic.com" => Some("anthropic"),
        _ => None,
    }
}

/// `None` when the host is not a known provider.
pub(crate) fn map(ctx: &Ctx<'_>) -> Result<Option<Intent>, IntentError> {
    let Some(p) = provider(&ctx.req.host) else {
        return Ok(None);
    };
    let segs = decoded_segments(&ctx.req.path);
    let tail: &[String] = match segs.first().map(String::as_str) {
        Some("v1") => segs.get(1..).unwrap_or(&[]),
        _ => &segs,
    };
    let action = if tail.is_empty() {
        ctx.method().to_ascii_lowercase()
    } else {
        tail.join(".")
    };
    let mut args = if ctx.body.is_empty() {
        object(ctx.query_args()?)
    } else {
        summarize(ctx.body.args()?)
    };
    if matches!(ctx.method(), "GET" | "HEAD" | "DELETE") && !ctx.body.is_empty() {
        for (k, v) in object(ctx.query_args()?) {
            args.entry(k).or_insert(v);
        }
    }
    Ok(Some(Intent::new(
        format!("llm.{p}"),
        action,
        Value::Object(args),
    )))
}

fn summarize(body: Value) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in object(body) {
        if CONTENT.contains(&k.as_str()) {
            continue;
        }
        if k == "tools" {
            out.insert(k, Value::Array(tool_names(&v)));
        } else {
            out.insert(k, v);
        }
    }
    out
}

/// OpenAI chat (`function.name`), Responses and Anthropic (`name`), and
/// built-in tools known only by `type`.
fn tool_names(tools: &Value) -> Vec<Value> {
    let Value::Array(items) = tools else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|t| {
            t.pointer("/function/name")
                .or_else(|| t.get("name"))
                .or_else(|| t.get("type"))
                .and_then(Value::as_str)
                .map(|s| Value::String(s.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::test_support::{one, req};
    use serde_json::json;

    #[test]
    fn openai_and_anthropic() {
        let body = br#"{"model":"gpt-4o","messages":[{"role":"user","content":"secret"}],"max_tokens":10,"stream":true,"temperature":0.2,
            "tools":[{"type":"function","function":{"name":"delete_repo","parameters":{}}},{"type":"web_search"}]}"#;
        let i = one(&req(
            "POST",
            "api.openai.com",
            "/v1/chat/completions",
            &[("content-type", "application/json")],
            body,
        ));
        assert_eq!(
            (i.resource.as_str(), i.action.as_str()),
            ("llm.openai", "chat.completions")
        );
        assert_eq!(
            i.args,
            json!({"model":"gpt-4o","max_tokens":10,"stream":true,"temperature":0.2,"tools":["delete_repo","web_search"]})
        );
        let i = one(&req(
            "POST",
            "api.openai.com",
            "/v1/responses",
            &[],
            br#"{"model":"m","input":"hi","instructions":"x"}"#,
        ));
        assert_eq!(
            (i.action.as_str(), i.args),
            ("responses", json!({"model":"m"}))
        );
        assert_eq!(
            one(&req(
                "POST",
                "api.openai.com",
                "/v1/embeddings",
                &[],
                br#"{"input":"x"}"#
            ))
            .action,
            "embeddings"
        );
        let i = one(&req("POST", "api.anthropic.com", "/v1/messages", &[], br#"{"model":"claude","system":"s","messages":[],"tools":[{"name":"bash","input_schema":{}}]}"#));
        assert_eq!(
            (i.resource.as_str(), i.action.as_str()),
            ("llm.anthropic", "messages")
        );
        assert_eq!(i.args, json!({"model":"claude","tools":["bash"]}));
        assert_eq!(
            one(&req("GET", "api.openai.com", "/v1/models", &[], b"")).action,
            "models"
        );
        assert_eq!(
            one(&req(
                "POST",
                "api.openai.com",
                "/v1/audio/speech",
                &[],
                b"{}"
            ))
            .action,
            "audio.speech"
        );
    }
}
