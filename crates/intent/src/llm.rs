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

/// POST paths that run the model (inference): their action is the path
/// alone. Every other call (files, fine-tuning, batches, keys, projects,
/// vector stores, stored responses…) gets a verb from the method, so a
/// policy can tell `files.create` from `files.delete` and from inference.
const INFERENCE: &[&str] = &[
    "chat.completions",
    "completions",
    "responses",
    "embeddings",
    "messages",
    "messages.count_tokens",
    "moderations",
    "audio.speech",
    "audio.transcriptions",
    "audio.translations",
    "images.generations",
    "images.edits",
    "images.variations",
];

/// Path words are lower-case letters and `_` (`fine_tuning`, `api_keys`);
/// anything else is an id (`file-abc123`, `gpt-4o`, `ft:gpt-4o:org::x1`).
fn is_word(seg: &str) -> bool {
    !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

/// Action and the last id in the path: `files.delete` + `file-1`.
fn action_of(method: &str, tail: &[String]) -> (String, Option<String>) {
    let words: Vec<&str> = tail
        .iter()
        .map(String::as_str)
        .filter(|s| is_word(s))
        .collect();
    let path = words.join(".");
    let last_id = tail.iter().rev().find(|s| !is_word(s)).cloned();
    let ends_with_id = tail.last().is_some_and(|s| !is_word(s));
    // `/fine_tuning/jobs/{id}/cancel`: the path names its own operation.
    let follows_id =
        tail.len() >= 2 && !ends_with_id && tail.iter().rev().nth(1).is_some_and(|s| !is_word(s));
    let verb = match method {
        "POST" if !ends_with_id && last_id.is_none() && INFERENCE.contains(&path.as_str()) => None,
        "POST" if follows_id => None,
        "POST" if ends_with_id => Some("update"),
        "POST" => Some("create"),
        "GET" | "HEAD" if ends_with_id || follows_id => Some("retrieve"),
        "GET" | "HEAD" => Some("list"),
        "PUT" | "PATCH" => Some("update"),
        "DELETE" => Some("delete"),
        _ => None,
    };
    let action = match (verb, path.is_empty()) {
        (Some(v), false) => format!("{path}.{v}"),
        (Some(v), true) => v.to_string(),
        (None, false) => path,
        (None, true) => method.to_ascii_lowercase(),
    };
    (action, last_id)
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
    let (action, id) = action_of(ctx.method(), tail);
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
    if let Some(id) = id {
        // The object acted on is the one in the path, whatever the body says.
        args.insert("id".into(), Value::String(id));
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
            "models.list"
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

    #[test]
    fn management_calls_carry_a_verb() {
        let action = |m: &str, path: &str| {
            let i = one(&req(m, "api.openai.com", path, &[], b""));
            (i.action, i.args.get("id").cloned())
        };
        for (m, path, want, id) in [
            (
                "GET",
                "/v1/models/gpt-4o",
                "models.retrieve",
                Some("gpt-4o"),
            ),
            (
                "DELETE",
                "/v1/models/ft:gpt-4o:acme::x1",
                "models.delete",
                Some("ft:gpt-4o:acme::x1"),
            ),
            ("GET", "/v1/files", "files.list", None),
            ("POST", "/v1/files", "files.create", None),
            (
                "DELETE",
                "/v1/files/file-abc123",
                "files.delete",
                Some("file-abc123"),
            ),
            (
                "GET",
                "/v1/files/file-abc123/content",
                "files.content.retrieve",
                Some("file-abc123"),
            ),
            (
                "POST",
                "/v1/fine_tuning/jobs",
                "fine_tuning.jobs.create",
                None,
            ),
            (
                "POST",
                "/v1/fine_tuning/jobs/ftjob-1/cancel",
                "fine_tuning.jobs.cancel",
                Some("ftjob-1"),
            ),
            (
                "DELETE",
                "/v1/organization/projects/proj_1/api_keys/key_1",
                "organization.projects.api_keys.delete",
                Some("key_1"),
            ),
            ("POST", "/v1/batches", "batches.create", None),
            ("POST", "/v1/vector_stores", "vector_stores.create", None),
            ("GET", "/v1/chat/completions", "chat.completions.list", None),
            (
                "DELETE",
                "/v1/responses/resp_1",
                "responses.delete",
                Some("resp_1"),
            ),
            (
                "POST",
                "/v1/chat/completions/cmpl_1",
                "chat.completions.update",
                Some("cmpl_1"),
            ),
        ] {
            assert_eq!(
                action(m, path),
                (want.to_string(), id.map(|s| json!(s))),
                "{m} {path}"
            );
        }
        let i = one(&req(
            "POST",
            "api.anthropic.com",
            "/v1/messages/batches",
            &[],
            b"{}",
        ));
        assert_eq!(i.action, "messages.batches.create");
        let i = one(&req(
            "POST",
            "api.anthropic.com",
            "/v1/messages/count_tokens",
            &[],
            b"{}",
        ));
        assert_eq!(i.action, "messages.count_tokens");
    }
}
