//! A refusal in an AWS service's own error format (SPEC §3): S3's
//! `<Error>`, the query protocol's `<ErrorResponse>`, EC2's `<Response>`,
//! and the JSON protocols' `{"__type", "message"}` with `x-amzn-ErrorType`.

use http::{HeaderMap, HeaderValue};
use serde_json::json;
use sudomode_intent::AwsErrorProtocol;

use super::Written;
use crate::core::{Refusal, RefusalKind};

/// The body and headers for refusal `r` with AWS error `code`.
pub fn write(
    protocol: AwsErrorProtocol,
    r: &Refusal,
    code: &'static str,
    mut headers: HeaderMap,
) -> Written {
    let id = r.request_id.as_str();
    if let Ok(v) = HeaderValue::from_str(id) {
        let name = match protocol {
            AwsErrorProtocol::S3Xml => "x-amz-request-id",
            _ => "x-amzn-requestid",
        };
        headers.insert(name, v);
    }
    let (message, id) = (xml(&r.message), xml(id));
    let xml_body = |text: String| Written {
        body: format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{text}").into_bytes(),
        content_type: HeaderValue::from_static("application/xml"),
        headers: headers.clone(),
    };
    match protocol {
        AwsErrorProtocol::S3Xml => xml_body(format!(
            "<Error><Code>{code}</Code><Message>{message}</Message><RequestId>{id}</RequestId></Error>"
        )),
        AwsErrorProtocol::QueryXml => {
            let side = if is_server_side(r.kind) {
                "Receiver"
            } else {
                "Sender"
            };
            xml_body(format!(
                "<ErrorResponse><Error><Type>{side}</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>{id}</RequestId></ErrorResponse>"
            ))
        }
        AwsErrorProtocol::Ec2Xml => xml_body(format!(
            "<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>{id}</RequestID></Response>"
        )),
        AwsErrorProtocol::Json => {
            headers.insert("x-amzn-errortype", HeaderValue::from_static(code));
            Written {
                body: json!({"__type": code, "message": r.message})
                    .to_string()
                    .into_bytes(),
                content_type: HeaderValue::from_static("application/x-amz-json-1.1"),
                headers,
            }
        }
    }
}

/// Whether the fault is on the service's side (query protocol `Type`).
fn is_server_side(kind: RefusalKind) -> bool {
    matches!(
        kind,
        RefusalKind::Pending | RefusalKind::StoreUnavailable | RefusalKind::UpstreamError
    )
}

/// Text as XML character data.
fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Not allowed in XML 1.0 at all: shown, not dropped silently.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::RequestId;

    #[test]
    fn xml_escapes_markup_and_control_characters() {
        assert_eq!(xml("a<b>&\"c'\u{1}"), "a&lt;b&gt;&amp;&quot;c&apos;\\u0001");
    }

    #[test]
    fn each_protocol_names_code_message_and_id() {
        let id = RequestId::new();
        let r = Refusal::new(RefusalKind::Denied, &id, "no <way>");
        for (p, needle) in [
            (
                AwsErrorProtocol::S3Xml,
                "<Error><Code>AccessDenied</Code><Message>no &lt;way&gt;</Message>",
            ),
            (
                AwsErrorProtocol::QueryXml,
                "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>",
            ),
            (
                AwsErrorProtocol::Ec2Xml,
                "<Response><Errors><Error><Code>AccessDenied</Code>",
            ),
            (
                AwsErrorProtocol::Json,
                "{\"__type\":\"AccessDenied\",\"message\":\"no <way>\"}",
            ),
        ] {
            let w = write(p, &r, "AccessDenied", HeaderMap::new());
            let text = String::from_utf8(w.body).unwrap();
            assert!(text.contains(needle), "{p:?}: {text}");
            assert!(
                text.contains(id.as_str()) || p == AwsErrorProtocol::Json,
                "{text}"
            );
        }
    }
}
