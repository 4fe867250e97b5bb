//! MCP tool calls (SPEC §4.9) in notifications: which tool, on which server,
//! read from a Request whose resource is `mcp.<server>.tools`.

use serde::Serialize;
use serde_json::Value;

/// The tool an MCP tool call runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ToolCall<'a> {
    pub server: &'a str,
    #[serde(rename = "name")]
    pub tool: &'a str,
}

/// `Some` when the Request is an MCP tool call.
pub fn tool_call(request: &Value) -> Option<ToolCall<'_>> {
    let resource = request.get("resource")?.as_str()?;
    let server = resource.strip_prefix("mcp.")?.strip_suffix(".tools")?;
    if server.is_empty() {
        return None;
    }
    let tool = request.get("action")?.as_str()?;
    Some(ToolCall { server, tool })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_server_and_tool() {
        let r = json!({"resource": "mcp.mcp.example.com.tools", "action": "send_payment"});
        assert_eq!(
            tool_call(&r),
            Some(ToolCall {
                server: "mcp.example.com",
                tool: "send_payment"
            })
        );
        for resource in ["mcp.github", "mcp.tools", "stripe.charges", "http.x.tools"] {
            assert_eq!(
                tool_call(&json!({"resource": resource, "action": "a"})),
                None
            );
        }
    }
}
