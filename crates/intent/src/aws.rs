//! AWS mapping (SPEC §4.3): service and region from the host or the SigV4
//! credential scope, operation from `X-Amz-Target`, `Action`, S3 or Lambda REST.

use serde_json::{Map, Value};

use crate::normalize::decoded_segments;
use crate::{Ctx, Intent, IntentError, merge_strict, object, s3};

fn bad(msg: impl Into<String>) -> IntentError {
    IntentError::BadRequest(msg.into())
}

#[derive(Debug, PartialEq)]
pub(crate) struct Scope {
    pub service: String,
    pub region: Option<String>,
}

/// `Credential=AKID/20240101/us-east-1/dynamodb/aws4_request` (SigV4) or
/// `AKID/20240101/s3/aws4_request` (SigV4a, region set elsewhere).
pub(crate) fn parse_credential(cred: &str) -> Option<Scope> {
    let parts: Vec<&str> = cred.trim().split('/').collect();
    let ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    match parts.as_slice() {
        [_, _, region, service, "aws4_request"] if ok(region) && ok(service) => Some(Scope {
            service: service.to_string(),
            region: Some(region.to_string()),
        }),
        [_, _, service, "aws4_request"] if ok(service) => Some(Scope {
            service: service.to_string(),
            region: None,
        }),
        _ => None,
    }
}

/// The SigV4 scope from `Authorization` or a presigned URL; a SigV4
/// request whose scope cannot be read is refused rather than guessed.
pub(crate) fn credential_scope(ctx: &Ctx<'_>) -> Result<Option<Scope>, IntentError> {
    let mut found: Option<Scope> = None;
    if let Some(auth) = ctx.header_strict("authorization")? {
        let auth = auth.trim_start();
        if auth.starts_with("AWS4-") {
            let cred = auth
                .split([',', ' '])
                .find_map(|p| p.trim().strip_prefix("Credential="))
                .ok_or_else(|| bad("SigV4 Authorization without a Credential"))?;
            found = Some(
                parse_credential(cred).ok_or_else(|| bad("malformed SigV4 credential scope"))?,
            );
        }
    }
    for (k, v) in url::form_urlencoded::parse(ctx.raw_query.as_bytes()) {
        if k.eq_ignore_ascii_case("X-Amz-Credential") {
            let s = parse_credential(&v).ok_or_else(|| bad("malformed X-Amz-Credential"))?;
            match &found {
                Some(f) if *f != s => return Err(bad("conflicting SigV4 credential scopes")),
                _ => found = Some(s),
            }
        }
    }
    if let (Some(f), Some(set)) = (&mut found, ctx.header_strict("x-amz-region-set")?)
        && f.region.is_none()
    {
        f.region = Some(set.trim().to_string());
    }
    Ok(found)
}

fn is_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts
            .first()
            .is_some_and(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts
            .last()
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && parts[1..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
}

/// Host labels whose SigV4 signing name differs.
fn signing_name(label: &str) -> &str {
    match label {
        "email" => "ses",
        "queue" => "sqs",
        "bedrock-runtime" | "bedrock-agent" | "bedrock-agent-runtime" => "bedrock",
        "iot" => "iotdata",
        "appsync-api" => "appsync",
        "aps-workspaces" => "aps",
        "sso" => "awsssoportal",
        "oidc" => "sso-oauth",
        "s3-accesspoint" | "s3-control" | "s3-accelerate" => "s3",
        other => other,
    }
}

#[derive(Debug, PartialEq)]
pub(crate) struct HostInfo {
    /// The host label naming the service (`email`, `s3`, `dynamodb`).
    pub label: String,
    /// Its signing name (`ses`, `s3`, `dynamodb`).
    pub service: String,
    pub region: Option<String>,
    /// Virtual-hosted S3 bucket.
    pub bucket: Option<String>,
}

pub(crate) fn parse_host(host: &str) -> Option<HostInfo> {
    let rest = host
        .strip_suffix(".amazonaws.com")
        .or_else(|| host.strip_suffix(".amazonaws.com.cn"))?;
    let labels: Vec<&str> = rest.split('.').collect();
    let region = labels.iter().find(|l| is_region(l)).map(|r| r.to_string());
    // The last s3-ish label: bucket names may themselves contain `s3` labels.
    if let Some(idx) = labels
        .iter()
        .rposition(|l| *l == "s3" || l.starts_with("s3-"))
    {
        let label = labels[idx];
        let bucket = (idx > 0).then(|| labels[..idx].join("."));
        let legacy_region = ["s3-website-", "s3-fips-", "s3-"]
            .iter()
            .find_map(|p| label.strip_prefix(p))
            .filter(|r| is_region(r))
            .map(str::to_string);
        let service = if label == "s3-object-lambda" {
            "s3-object-lambda"
        } else {
            "s3"
        };
        return Some(HostInfo {
            label: label.to_string(),
            service: service.to_string(),
            region: region.or(legacy_region),
            bucket,
        });
    }
    let label = labels
        .iter()
        .rev()
        .find(|l| !is_region(l) && !matches!(**l, "dualstack" | "fips" | "vpce" | "api"))?;
    let label = label.strip_suffix("-fips").unwrap_or(label);
    if label.is_empty() {
        return None;
    }
    Some(HostInfo {
        label: label.to_string(),
        service: signing_name(label).to_string(),
        region,
        bucket: None,
    })
}

/// `None` when the request is not AWS at all.
/// AWS's own host names, which the AWS mapping claims whatever the request.
pub fn claims_host(host: &str) -> bool {
    host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn")
}

pub(crate) fn map(ctx: &Ctx<'_>) -> Result<Option<Intent>, IntentError> {
    let host = ctx.req.host.as_str();
    let on_aws = claims_host(host);
    let scope = credential_scope(ctx)?;
    if !on_aws && scope.is_none() {
        return Ok(None);
    }
    let (service, region, bucket) = match (on_aws.then(|| parse_host(host)).flatten(), scope) {
        (Some(h), scope) => {
            if let Some(s) = &scope
                && s.service != h.service
                && s.service != h.label
            {
                return Err(bad(format!(
                    "SigV4 credential scope names service {:?} but the host is {:?}",
                    s.service, h.service
                )));
            }
            let region = h.region.or_else(|| scope.and_then(|s| s.region));
            (h.service, region, h.bucket)
        }
        (None, Some(s)) => (s.service, s.region, None),
        (None, None) => return Err(bad("cannot tell the AWS service from the host")),
    };
    let region = region.unwrap_or_else(|| "us-east-1".to_string());
    let (action, mut args) = match service.as_str() {
        "s3" | "s3-object-lambda" => s3::map(ctx, bucket)?,
        "lambda" if ctx.req.path.starts_with("/20") => lambda_rest(ctx)?,
        "bedrock" if ctx.req.path.starts_with("/model/") => bedrock(ctx)?,
        _ => rpc(ctx)?,
    };
    args.insert("region".into(), Value::String(region));
    Ok(Some(Intent::new(
        format!("aws.{service}"),
        action,
        Value::Object(args),
    )))
}

fn valid_operation(op: &str) -> bool {
    !op.is_empty() && op.len() <= 128 && op.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// JSON protocol (`X-Amz-Target`) and query protocol (`Action=`); every
/// place an operation can be named must agree.
fn rpc(ctx: &Ctx<'_>) -> Result<(String, Map<String, Value>), IntentError> {
    let mut ops: Vec<String> = Vec::new();
    if let Some(t) = ctx.header_strict("x-amz-target")? {
        ops.push(t.rsplit('.').next().unwrap_or("").trim().to_string());
    }
    for (k, v) in url::form_urlencoded::parse(ctx.raw_query.as_bytes()) {
        if k == "Action" {
            ops.push(v.into_owned());
        }
    }
    // Smithy RPC v2 (CBOR): `POST /service/{Service}/operation/{Operation}`.
    let segs = decoded_segments(&ctx.req.path);
    let cbor = matches!(segs.as_slice(), [s, _, o, _] if s == "service" && o == "operation");
    if let (true, Some(op)) = (cbor, segs.get(3)) {
        ops.push(op.clone());
    }
    let mut args = Map::new();
    if !ctx.body.is_empty() && !cbor {
        let body = object(ctx.body.args()?);
        // `Action` names the operation only in query-protocol (form) bodies;
        // in a JSON body it would be an ordinary member.
        let form = ctx.body.json().is_err();
        if let Some(a) = body.get("Action").filter(|_| form) {
            ops.push(a.as_str().map_or_else(|| a.to_string(), str::to_string));
        }
        args = body;
    }
    let mut query = object(ctx.query_args()?);
    query.retain(|k, _| !k.starts_with("X-Amz-"));
    merge_strict(&mut args, Value::Object(query))?;
    let mut op: Option<String> = None;
    for o in ops {
        if !valid_operation(&o) {
            return Err(bad(format!("malformed AWS operation name {o:?}")));
        }
        match &op {
            Some(p) if *p != o => return Err(bad("conflicting AWS operation names")),
            _ => op = Some(o),
        }
    }
    let action = match op {
        Some(o) => o,
        None => {
            args.insert("path".into(), Value::String(ctx.req.path.clone()));
            "unknown".to_string()
        }
    };
    Ok((action, args))
}

/// Bedrock runtime: `/model/{modelId}/invoke|converse…`; prompts stay out of args.
fn bedrock(ctx: &Ctx<'_>) -> Result<(String, Map<String, Value>), IntentError> {
    let segs = decoded_segments(&ctx.req.path);
    let op = match (segs.get(2).map(String::as_str), segs.len()) {
        (Some("invoke"), 3) => "InvokeModel",
        (Some("invoke-with-response-stream"), 3) => "InvokeModelWithResponseStream",
        (Some("converse"), 3) => "Converse",
        (Some("converse-stream"), 3) => "ConverseStream",
        _ => "unknown",
    };
    let mut args = object(ctx.query_args()?);
    if let Some(m) = segs.get(1) {
        args.insert("model_id".into(), Value::String(m.clone()));
    }
    if op == "unknown" {
        args.insert("path".into(), Value::String(ctx.req.path.clone()));
    }
    Ok((op.to_string(), args))
}

/// Lambda's REST API: `/2015-03-31/functions/{name}[/invocations|/code…]`.
fn lambda_rest(ctx: &Ctx<'_>) -> Result<(String, Map<String, Value>), IntentError> {
    let segs = decoded_segments(&ctx.req.path);
    let seg = |i: usize| segs.get(i).map(String::as_str);
    let method = ctx.method();
    let op = match (seg(1), seg(2), seg(3), seg(4), method) {
        (Some("functions"), None, _, _, "GET") => "ListFunctions",
        (Some("functions"), None, _, _, "POST") => "CreateFunction",
        (Some("functions"), Some(_), None, _, "GET") => "GetFunction",
        (Some("functions"), Some(_), None, _, "DELETE") => "DeleteFunction",
        (Some("functions"), Some(_), Some("invocations"), None, "POST") => "Invoke",
        (Some("functions"), Some(_), Some("invoke-async"), None, "POST") => "InvokeAsync",
        (Some("functions"), Some(_), Some("response-streaming-invocations"), None, "POST") => {
            "InvokeWithResponseStream"
        }
        (Some("functions"), Some(_), Some("code"), None, "PUT") => "UpdateFunctionCode",
        (Some("functions"), Some(_), Some("configuration"), None, "PUT") => {
            "UpdateFunctionConfiguration"
        }
        (Some("functions"), Some(_), Some("configuration"), None, "GET") => {
            "GetFunctionConfiguration"
        }
        (Some("functions"), Some(_), Some("versions"), None, "POST") => "PublishVersion",
        (Some("functions"), Some(_), Some("versions"), None, "GET") => "ListVersionsByFunction",
        (Some("functions"), Some(_), Some("aliases"), None, "POST") => "CreateAlias",
        (Some("functions"), Some(_), Some("aliases"), None, "GET") => "ListAliases",
        (Some("functions"), Some(_), Some("aliases"), Some(_), "DELETE") => "DeleteAlias",
        (Some("functions"), Some(_), Some("policy"), None, "GET") => "GetPolicy",
        (Some("functions"), Some(_), Some("policy"), None, "POST") => "AddPermission",
        (Some("functions"), Some(_), Some("policy"), Some(_), "DELETE") => "RemovePermission",
        (Some("functions"), Some(_), Some("concurrency"), None, "PUT") => "PutFunctionConcurrency",
        (Some("functions"), Some(_), Some("concurrency"), None, "DELETE") => {
            "DeleteFunctionConcurrency"
        }
        (Some("functions"), Some(_), Some("url"), None, "POST") => "CreateFunctionUrlConfig",
        (Some("functions"), Some(_), Some("url"), None, "PUT") => "UpdateFunctionUrlConfig",
        (Some("functions"), Some(_), Some("url"), None, "DELETE") => "DeleteFunctionUrlConfig",
        _ => "unknown",
    };
    let mut args = object(ctx.query_args()?);
    if op == "unknown" {
        args.insert("path".into(), Value::String(ctx.req.path.clone()));
    }
    if let (Some("functions"), Some(name)) = (seg(1), seg(2)) {
        args.insert("function_name".into(), Value::String(name.to_string()));
    }
    // Function definitions are judged; invocation payloads are the caller's data.
    if matches!(
        op,
        "CreateFunction" | "UpdateFunctionConfiguration" | "AddPermission" | "CreateAlias"
    ) {
        merge_strict(&mut args, ctx.body.args()?)?;
    }
    Ok((op.to_string(), args))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{map, one, req};
    use serde_json::json;

    fn auth(service: &str, region: &str) -> String {
        format!(
            "AWS4-HMAC-SHA256 Credential=AKID/20240101/{region}/{service}/aws4_request, SignedHeaders=host, Signature=abc"
        )
    }

    #[test]
    fn hosts() {
        let h = |s| parse_host(s).map(|h| (h.service, h.region, h.bucket));
        let s = |x: &str| Some(x.to_string());
        assert_eq!(
            h("dynamodb.us-east-1.amazonaws.com"),
            Some(("dynamodb".into(), s("us-east-1"), None))
        );
        assert_eq!(h("s3.amazonaws.com"), Some(("s3".into(), None, None)));
        assert_eq!(
            h("bucket.s3.us-west-2.amazonaws.com"),
            Some(("s3".into(), s("us-west-2"), s("bucket")))
        );
        assert_eq!(
            h("my.s3.bucket.s3.amazonaws.com"),
            Some(("s3".into(), None, s("my.s3.bucket")))
        );
        assert_eq!(
            h("bucket.s3-us-west-2.amazonaws.com"),
            Some(("s3".into(), s("us-west-2"), s("bucket")))
        );
        assert_eq!(
            h("s3.dualstack.eu-west-1.amazonaws.com"),
            Some(("s3".into(), s("eu-west-1"), None))
        );
        assert_eq!(
            h("ec2-fips.us-east-1.amazonaws.com"),
            Some(("ec2".into(), s("us-east-1"), None))
        );
        assert_eq!(h("iam.amazonaws.com"), Some(("iam".into(), None, None)));
        assert_eq!(
            h("email.us-east-1.amazonaws.com"),
            Some(("ses".into(), s("us-east-1"), None))
        );
        assert_eq!(
            h("streams.dynamodb.us-east-1.amazonaws.com").map(|x| x.0),
            Some("dynamodb".into())
        );
        assert_eq!(
            h("bedrock-runtime.us-east-1.amazonaws.com").map(|x| x.0),
            Some("bedrock".into())
        );
        assert_eq!(h("example.com"), None);
    }

    #[test]
    fn json_and_query_protocols() {
        let a = auth("dynamodb", "us-east-1");
        let i = one(&req(
            "POST",
            "dynamodb.us-east-1.amazonaws.com",
            "/",
            &[
                ("x-amz-target", "DynamoDB_20120810.DeleteTable"),
                ("content-type", "application/x-amz-json-1.0"),
                ("authorization", &a),
            ],
            br#"{"TableName":"users"}"#,
        ));
        assert_eq!(
            (i.resource.as_str(), i.action.as_str()),
            ("aws.dynamodb", "DeleteTable")
        );
        assert_eq!(i.args, json!({"TableName":"users","region":"us-east-1"}));
        let i = one(&req(
            "POST",
            "ec2.eu-west-1.amazonaws.com",
            "/",
            &[("content-type", "application/x-www-form-urlencoded")],
            b"Action=TerminateInstances&InstanceId.1=i-1",
        ));
        assert_eq!(
            (i.resource.as_str(), i.action.as_str()),
            ("aws.ec2", "TerminateInstances")
        );
        assert_eq!(i.args["region"], "eu-west-1");
        assert_eq!(i.args["InstanceId.1"], "i-1");
        let i = one(&req(
            "GET",
            "iam.amazonaws.com",
            "/?Action=ListUsers&Version=2010-05-08",
            &[],
            b"",
        ));
        assert_eq!(
            (i.action.as_str(), &i.args["region"]),
            ("ListUsers", &json!("us-east-1"))
        );
        let i = one(&req("POST", "sts.amazonaws.com", "/x", &[], b""));
        assert_eq!(
            (i.action.as_str(), &i.args["path"]),
            ("unknown", &json!("/x"))
        );
    }

    #[test]
    fn refusals() {
        // Scope names another service than the host.
        let a = auth("s3", "us-east-1");
        assert!(
            map(&req(
                "POST",
                "dynamodb.us-east-1.amazonaws.com",
                "/",
                &[("authorization", &a)],
                b"{}"
            ))
            .is_err()
        );
        // Target and Action disagree.
        assert!(
            map(&req(
                "POST",
                "dynamodb.us-east-1.amazonaws.com",
                "/?Action=ListTables",
                &[("x-amz-target", "DynamoDB_20120810.DeleteTable")],
                b"{}"
            ))
            .is_err()
        );
        assert!(
            map(&req(
                "POST",
                "ec2.us-east-1.amazonaws.com",
                "/?Action=DescribeInstances",
                &[],
                b"Action=TerminateInstances"
            ))
            .is_err()
        );
        // Malformed SigV4.
        assert!(
            map(&req(
                "POST",
                "localhost",
                "/",
                &[("authorization", "AWS4-HMAC-SHA256 Credential=garbage")],
                b""
            ))
            .is_err()
        );
        // Bad JSON to a JSON-protocol service.
        assert!(
            map(&req(
                "POST",
                "dynamodb.us-east-1.amazonaws.com",
                "/",
                &[
                    ("x-amz-target", "DynamoDB_20120810.DeleteTable"),
                    ("content-type", "application/x-amz-json-1.0")
                ],
                b"{nope"
            ))
            .is_err()
        );
        // Two different targets: which one AWS reads is not ours to guess.
        assert!(
            map(&req(
                "POST",
                "dynamodb.us-east-1.amazonaws.com",
                "/",
                &[
                    ("x-amz-target", "DynamoDB_20120810.ListTables"),
                    ("x-amz-target", "DynamoDB_20120810.DeleteTable")
                ],
                b"{}"
            ))
            .is_err()
        );
        // Aliased signing names are not refused.
        let a = auth("ses", "us-east-1");
        assert!(
            map(&req(
                "POST",
                "email.us-east-1.amazonaws.com",
                "/",
                &[("authorization", &a)],
                b"Action=SendEmail"
            ))
            .is_ok()
        );
    }

    #[test]
    fn custom_endpoint_uses_scope() {
        let a = auth("dynamodb", "eu-central-1");
        let i = one(&req(
            "POST",
            "localhost",
            "/",
            &[
                ("x-amz-target", "DynamoDB_20120810.ListTables"),
                ("authorization", &a),
            ],
            b"{}",
        ));
        assert_eq!(
            (i.resource.as_str(), i.action.as_str(), &i.args["region"]),
            ("aws.dynamodb", "ListTables", &json!("eu-central-1"))
        );
        let i = one(&req(
            "GET",
            "minio.local",
            "/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F20240101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=x",
            &[],
            b"",
        ));
        assert_eq!(
            (i.resource.as_str(), i.action.as_str()),
            ("aws.s3", "GetObject")
        );
    }

    #[test]
    fn bedrock_and_rpc_v2() {
        let i = one(&req(
            "POST",
            "bedrock-runtime.us-west-2.amazonaws.com",
            "/model/anthropic.claude-v2/invoke",
            &[],
            br#"{"prompt":"x"}"#,
        ));
        assert_eq!(
            (i.resource.as_str(), i.action.as_str()),
            ("aws.bedrock", "InvokeModel")
        );
        assert_eq!(
            i.args,
            json!({"model_id":"anthropic.claude-v2","region":"us-west-2"})
        );
        let i = one(&req(
            "POST",
            "monitoring.us-east-1.amazonaws.com",
            "/service/GraniteServiceVersion20100801/operation/DeleteAlarms",
            &[("content-type", "application/cbor")],
            b"\xa1\x00",
        ));
        assert_eq!(
            (i.resource.as_str(), i.action.as_str()),
            ("aws.monitoring", "DeleteAlarms")
        );
    }

    #[test]
    fn lambda() {
        let h = "lambda.eu-west-1.amazonaws.com";
        let i = one(&req(
            "POST",
            h,
            "/2015-03-31/functions/my-fn/invocations",
            &[],
            br#"{"a":1}"#,
        ));
        assert_eq!(
            (i.resource.as_str(), i.action.as_str()),
            ("aws.lambda", "Invoke")
        );
        assert_eq!(
            i.args,
            json!({"function_name":"my-fn","region":"eu-west-1"})
        );
        assert_eq!(
            one(&req("GET", h, "/2015-03-31/functions/", &[], b"")).action,
            "ListFunctions"
        );
        assert_eq!(
            one(&req("DELETE", h, "/2015-03-31/functions/f", &[], b"")).action,
            "DeleteFunction"
        );
        assert_eq!(
            one(&req("PUT", h, "/2015-03-31/functions/f/code", &[], b"{}")).action,
            "UpdateFunctionCode"
        );
        assert_eq!(
            one(&req("GET", h, "/2015-03-31/functions/f", &[], b"")).action,
            "GetFunction"
        );
        assert_eq!(
            one(&req(
                "POST",
                h,
                "/2015-03-31/functions",
                &[],
                br#"{"FunctionName":"f"}"#
            ))
            .args["FunctionName"],
            "f"
        );
        let i = one(&req(
            "GET",
            h,
            "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A1%3Afunction%3Af",
            &[],
            b"",
        ));
        assert_eq!(
            i.args["function_name"],
            "arn:aws:lambda:us-east-1:1:function:f"
        );
    }
}
