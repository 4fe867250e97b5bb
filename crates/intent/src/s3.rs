//! S3 REST operations (SPEC §4.3): bucket and key from the host or the
//! literal path, operation from method, sub-resources and headers.

use serde_json::{Map, Value};

use crate::normalize::decoded_segments;
use crate::{Ctx, IntentError, object};

fn bad(msg: impl Into<String>) -> IntentError {
    IntentError::BadRequest(msg.into())
}

/// (sub-resource, GET, PUT, DELETE) on a bucket.
const BUCKET_OPS: &OpTable = &[
    ("acl", "GetBucketAcl", "PutBucketAcl", ""),
    (
        "policy",
        "GetBucketPolicy",
        "PutBucketPolicy",
        "DeleteBucketPolicy",
    ),
    (
        "tagging",
        "GetBucketTagging",
        "PutBucketTagging",
        "DeleteBucketTagging",
    ),
    (
        "versioning",
        "GetBucketVersioning",
        "PutBucketVersioning",
        "",
    ),
    (
        "lifecycle",
        "GetBucketLifecycleConfiguration",
        "PutBucketLifecycleConfiguration",
        "DeleteBucketLifecycle",
    ),
    ("cors", "GetBucketCors", "PutBucketCors", "DeleteBucketCors"),
    (
        "encryption",
        "GetBucketEncryption",
        "PutBucketEncryption",
        "DeleteBucketEncryption",
    ),
    (
        "website",
        "GetBucketWebsite",
        "PutBucketWebsite",
        "DeleteBucketWebsite",
    ),
    ("logging", "GetBucketLogging", "PutBucketLogging", ""),
    (
        "notification",
        "GetBucketNotificationConfiguration",
        "PutBucketNotificationConfiguration",
        "",
    ),
    (
        "replication",
        "GetBucketReplication",
        "PutBucketReplication",
        "DeleteBucketReplication",
    ),
    (
        "publicAccessBlock",
        "GetPublicAccessBlock",
        "PutPublicAccessBlock",
        "DeletePublicAccessBlock",
    ),
    (
        "ownershipControls",
        "GetBucketOwnershipControls",
        "PutBucketOwnershipControls",
        "DeleteBucketOwnershipControls",
    ),
    (
        "object-lock",
        "GetObjectLockConfiguration",
        "PutObjectLockConfiguration",
        "",
    ),
    (
        "accelerate",
        "GetBucketAccelerateConfiguration",
        "PutBucketAccelerateConfiguration",
        "",
    ),
    (
        "requestPayment",
        "GetBucketRequestPayment",
        "PutBucketRequestPayment",
        "",
    ),
    (
        "analytics",
        "GetBucketAnalyticsConfiguration",
        "PutBucketAnalyticsConfiguration",
        "DeleteBucketAnalyticsConfiguration",
    ),
    (
        "metrics",
        "GetBucketMetricsConfiguration",
        "PutBucketMetricsConfiguration",
        "DeleteBucketMetricsConfiguration",
    ),
    (
        "inventory",
        "GetBucketInventoryConfiguration",
        "PutBucketInventoryConfiguration",
        "DeleteBucketInventoryConfiguration",
    ),
    (
        "intelligent-tiering",
        "GetBucketIntelligentTieringConfiguration",
        "PutBucketIntelligentTieringConfiguration",
        "DeleteBucketIntelligentTieringConfiguration",
    ),
    ("location", "GetBucketLocation", "", ""),
    ("uploads", "ListMultipartUploads", "", ""),
    ("versions", "ListObjectVersions", "", ""),
    ("policyStatus", "GetBucketPolicyStatus", "", ""),
    ("session", "CreateSession", "", ""),
];

/// (sub-resource, GET, PUT, DELETE) on an object.
const OBJECT_OPS: &OpTable = &[
    ("acl", "GetObjectAcl", "PutObjectAcl", ""),
    (
        "tagging",
        "GetObjectTagging",
        "PutObjectTagging",
        "DeleteObjectTagging",
    ),
    ("retention", "GetObjectRetention", "PutObjectRetention", ""),
    ("legal-hold", "GetObjectLegalHold", "PutObjectLegalHold", ""),
    ("attributes", "GetObjectAttributes", "", ""),
    ("torrent", "GetObjectTorrent", "", ""),
    (
        "uploadId",
        "ListParts",
        "UploadPart",
        "AbortMultipartUpload",
    ),
];

/// Sub-resources that select an operation (POST-only ones included).
fn is_subresource(k: &str) -> bool {
    BUCKET_OPS.iter().chain(OBJECT_OPS).any(|(s, ..)| *s == k)
        || matches!(k, "delete" | "restore" | "select" | "uploads")
}

type OpTable = [(&'static str, &'static str, &'static str, &'static str)];

fn pick(table: &'static OpTable, sub: &str, method: &str) -> &'static str {
    table
        .iter()
        .find(|(s, ..)| *s == sub)
        .map_or("", |&(_, get, put, delete)| match method {
            "GET" => get,
            "PUT" => put,
            "DELETE" => delete,
            _ => "",
        })
}

pub(crate) fn map(
    ctx: &Ctx<'_>,
    host_bucket: Option<String>,
) -> Result<(String, Map<String, Value>), IntentError> {
    // S3 keys are literal: `a//b` and `x/../y` are distinct keys, so bucket
    // and key come from the path as sent, only percent-decoded.
    let decoded = percent_encoding::percent_decode_str(ctx.raw_path).decode_utf8_lossy();
    let p = decoded.strip_prefix('/').unwrap_or(&decoded);
    let (bucket, key) = match host_bucket {
        Some(b) => (b, p.to_string()),
        None => {
            let (b, k) = p.split_once('/').unwrap_or((p, ""));
            // Whatever a path-normalising hop might make of the bucket must be
            // the bucket we judge.
            let normalized = decoded_segments(&ctx.req.path)
                .into_iter()
                .next()
                .unwrap_or_default();
            if b != normalized {
                return Err(bad("ambiguous S3 bucket in path"));
            }
            (b.to_string(), k.to_string())
        }
    };
    let mut keys: Vec<String> = Vec::new();
    for (k, _) in url::form_urlencoded::parse(ctx.raw_query.as_bytes()) {
        if is_subresource(&k) && !keys.contains(&k.to_string()) {
            keys.push(k.into_owned());
        }
    }
    if keys.len() > 1 {
        return Err(bad(format!(
            "several S3 sub-resources at once: {}",
            keys.join(", ")
        )));
    }
    let sub = keys.first().map(String::as_str).unwrap_or("");
    let method = ctx.method();
    let copy = ctx.header_strict("x-amz-copy-source")?;
    let query = ctx.query_args()?;
    let op: &str = if bucket.is_empty() {
        if method == "GET" { "ListBuckets" } else { "" }
    } else if key.is_empty() {
        match (method, sub) {
            ("HEAD", "") => "HeadBucket",
            ("GET", "") if query.get("list-type").and_then(Value::as_i64) == Some(2) => {
                "ListObjectsV2"
            }
            ("GET", "") => "ListObjects",
            ("PUT", "") => "CreateBucket",
            ("DELETE", "") => "DeleteBucket",
            ("POST", "delete") => "DeleteObjects",
            ("POST", "") => "PostObject",
            (m, s) => pick(BUCKET_OPS, s, m),
        }
    } else {
        match (method, sub) {
            ("HEAD", "") => "HeadObject",
            ("GET", "") => "GetObject",
            ("PUT", "") if copy.is_some() => "CopyObject",
            ("PUT", "") => "PutObject",
            ("DELETE", "") => "DeleteObject",
            ("PUT", "uploadId") if copy.is_some() => "UploadPartCopy",
            ("POST", "uploads") => "CreateMultipartUpload",
            ("POST", "uploadId") => "CompleteMultipartUpload",
            ("POST", "restore") => "RestoreObject",
            ("POST", "select") => "SelectObjectContent",
            (m, s) => pick(OBJECT_OPS, s, m),
        }
    };
    let mut args = Map::new();
    if !bucket.is_empty() {
        args.insert("bucket".into(), Value::String(bucket));
    }
    if !key.is_empty() {
        args.insert("key".into(), Value::String(key));
    }
    args.insert("query".into(), Value::Object(object(query)));
    if let Some(c) = copy {
        args.insert("copy_source".into(), Value::String(c.to_string()));
    }
    match op {
        "DeleteObjects" => {
            let keys = xml_keys(&ctx.body.bytes);
            args.insert("count".into(), Value::from(keys.len()));
            args.insert(
                "keys".into(),
                Value::Array(keys.into_iter().map(Value::String).collect()),
            );
        }
        // The policy document is what a reviewer needs to see (`Principal: *`).
        "PutBucketPolicy" => {
            if let Ok(policy) = ctx.body.json() {
                args.insert("policy".into(), policy);
            }
        }
        "PutObject" | "UploadPart" => upload_args(ctx, &mut args),
        _ => {}
    }
    let action = if op.is_empty() {
        args.insert("path".into(), Value::String(ctx.req.path.clone()));
        "unknown"
    } else {
        op
    };
    Ok((action.to_string(), args))
}

/// What an upload stores: `size` (bytes, out of any aws-chunked framing)
/// and `checksum` (`{"crc32": "…"}`) from `x-amz-checksum-*` headers or
/// trailers.
fn upload_args(ctx: &Ctx<'_>, args: &mut Map<String, Value>) {
    args.insert("size".into(), Value::from(ctx.upload.size));
    let mut sums = Map::new();
    let headers = ctx
        .headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)));
    let trailers = ctx
        .upload
        .trailers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()));
    for (name, value) in headers.chain(trailers) {
        if let Some(alg) = name.strip_prefix("x-amz-checksum-")
            && alg != "type"
        {
            sums.insert(alg.to_string(), Value::String(value.to_string()));
        }
    }
    if !sums.is_empty() {
        args.insert("checksum".into(), Value::Object(sums));
    }
}

/// Object keys of a `DeleteObjects` request (`<Object><Key>k</Key>…`).
fn xml_keys(body: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(body);
    let mut out = Vec::new();
    let mut rest = text.as_ref();
    while let Some(start) = rest.find("<Key>") {
        let after = &rest[start + "<Key>".len()..];
        let Some(end) = after.find("</Key>") else {
            break;
        };
        let raw = &after[..end];
        out.push(
            raw.replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&"),
        );
        rest = &after[end + "</Key>".len()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::test_support::{map, one, req};
    use serde_json::json;

    fn op(method: &str, host: &str, target: &str, headers: &[(&str, &str)]) -> String {
        one(&req(method, host, target, headers, b"")).action
    }

    #[test]
    fn operations() {
        let v = "b.s3.us-west-2.amazonaws.com";
        let p = "s3.us-west-2.amazonaws.com";
        for (m, host, t, want) in [
            ("GET", "s3.amazonaws.com", "/", "ListBuckets"),
            ("GET", v, "/k/x.txt", "GetObject"),
            ("GET", p, "/b/k/x.txt", "GetObject"),
            ("PUT", v, "/k", "PutObject"),
            ("DELETE", p, "/b/k", "DeleteObject"),
            ("HEAD", v, "/k", "HeadObject"),
            ("HEAD", v, "/", "HeadBucket"),
            ("POST", v, "/?delete", "DeleteObjects"),
            ("POST", p, "/b?delete=", "DeleteObjects"),
            ("GET", v, "/?list-type=2&prefix=a", "ListObjectsV2"),
            ("GET", p, "/b", "ListObjects"),
            ("PUT", p, "/b", "CreateBucket"),
            ("DELETE", v, "/", "DeleteBucket"),
            ("PUT", v, "/?policy", "PutBucketPolicy"),
            ("GET", v, "/?policy", "GetBucketPolicy"),
            ("DELETE", v, "/?policy", "DeleteBucketPolicy"),
            ("PUT", v, "/?acl", "PutBucketAcl"),
            ("PUT", v, "/k?acl", "PutObjectAcl"),
            ("PUT", v, "/?tagging", "PutBucketTagging"),
            ("PUT", v, "/k?tagging", "PutObjectTagging"),
            ("POST", v, "/k?uploads", "CreateMultipartUpload"),
            ("PUT", v, "/k?partNumber=1&uploadId=u", "UploadPart"),
            ("POST", v, "/k?uploadId=u", "CompleteMultipartUpload"),
            ("DELETE", v, "/k?uploadId=u", "AbortMultipartUpload"),
            ("PUT", v, "/?versioning", "PutBucketVersioning"),
            ("PUT", v, "/?lifecycle", "PutBucketLifecycleConfiguration"),
            ("GET", v, "/k?x-id=GetObject", "GetObject"),
            ("PATCH", v, "/k", "unknown"),
        ] {
            assert_eq!(op(m, host, t, &[]), want, "{m} {host}{t}");
        }
        assert_eq!(
            op("PUT", v, "/k", &[("x-amz-copy-source", "/o/k")]),
            "CopyObject"
        );
    }

    #[test]
    fn args_and_literal_keys() {
        let i = one(&req(
            "GET",
            "s3.us-west-2.amazonaws.com",
            "/b/a//b%20c?versionId=3",
            &[],
            b"",
        ));
        assert_eq!(
            i.args,
            json!({"bucket":"b","key":"a//b c","query":{"versionId":3},"region":"us-west-2"})
        );
        let i = one(&req("DELETE", "b.s3.amazonaws.com", "/x/../y", &[], b""));
        assert_eq!(i.args["key"], "x/../y");
        assert_eq!(i.args["region"], "us-east-1");
    }

    #[test]
    fn delete_objects_and_policy_bodies() {
        let body =
            b"<Delete><Object><Key>a</Key></Object><Object><Key>b&amp;c</Key></Object></Delete>";
        let i = one(&req("POST", "b.s3.amazonaws.com", "/?delete", &[], body));
        assert_eq!(
            (&i.args["keys"], &i.args["count"]),
            (&json!(["a", "b&c"]), &json!(2))
        );
        let i = one(&req(
            "PUT",
            "b.s3.amazonaws.com",
            "/?policy",
            &[],
            br#"{"Statement":[{"Principal":"*"}]}"#,
        ));
        assert_eq!(i.args["policy"]["Statement"][0]["Principal"], "*");
    }

    #[test]
    fn refusals() {
        // Two sub-resources: which one S3 honours is not ours to guess.
        assert!(map(&req("PUT", "b.s3.amazonaws.com", "/?policy&acl", &[], b"")).is_err());
        // A bucket that a normalising hop would read differently.
        assert!(
            map(&req(
                "DELETE",
                "s3.amazonaws.com",
                "/b/../other/k",
                &[],
                b""
            ))
            .is_err()
        );
    }

    #[test]
    fn uploads_are_judged_out_of_their_aws_chunked_framing() {
        let body = b"b\r\nhello world\r\n0\r\nx-amz-checksum-crc32:DUoRhQ==\r\n\r\n";
        let headers = [
            ("content-encoding", "aws-chunked"),
            ("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"),
            ("x-amz-trailer", "x-amz-checksum-crc32"),
            ("x-amz-decoded-content-length", "11"),
            ("content-length", "52"),
        ];
        let i = one(&req("PUT", "b.s3.amazonaws.com", "/k.txt", &headers, body));
        assert_eq!(i.action, "PutObject");
        assert_eq!(i.args["size"], 11);
        assert_eq!(i.args["checksum"]["crc32"], "DUoRhQ==");
        // A plain upload: its own size and header checksum.
        let i = one(&req(
            "PUT",
            "b.s3.amazonaws.com",
            "/k.txt",
            &[("x-amz-checksum-sha256", "abc=")],
            b"hello",
        ));
        assert_eq!(i.args["size"], 5);
        assert_eq!(i.args["checksum"]["sha256"], "abc=");
    }
}
