//! Which wire protocol an AWS request speaks, so that a refusal can be
//! written the way that service writes its own errors (SPEC §3 "Speak the
//! client's language"): AWS SDKs surface a message only from an error body
//! they parse.

use crate::aws::{claims_host, parse_credential, parse_host};

/// How an AWS service writes its errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsErrorProtocol {
    /// S3 (REST-XML): `<Error><Code>…</Code><Message>…</Message>…</Error>`.
    S3Xml,
    /// Query protocol (STS, IAM, SNS…) and the other REST-XML services:
    /// `<ErrorResponse><Error><Type>…</Type><Code>…</Code>…</ErrorResponse>`.
    QueryXml,
    /// EC2: `<Response><Errors><Error>…</Error></Errors><RequestID>…`.
    Ec2Xml,
    /// JSON and REST-JSON (DynamoDB, Lambda, Secrets Manager…):
    /// `{"__type", "message"}` with `x-amzn-ErrorType`.
    Json,
}

/// Services that speak the query protocol (or REST-XML with the same error
/// shape) when the request itself does not say.
const QUERY_SERVICES: &[&str] = &[
    "iam",
    "sts",
    "sns",
    "sqs",
    "ses",
    "rds",
    "elasticache",
    "cloudformation",
    "autoscaling",
    "elasticloadbalancing",
    "redshift",
    "monitoring",
    "sdb",
    "docdb",
    "neptune",
    "route53",
    "cloudfront",
];

/// `None` when the request is not an AWS request (§4.3: an `amazonaws.com`
/// host, or a SigV4 signature in `Authorization` or the query).
pub fn aws_error_protocol(
    host: &str,
    headers: &http::HeaderMap,
    raw_query: &str,
    body: &[u8],
) -> Option<AwsErrorProtocol> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let scope = header("authorization")
        .filter(|a| a.trim_start().starts_with("AWS4-"))
        .and_then(|a| {
            a.split([',', ' '])
                .find_map(|p| p.trim().strip_prefix("Credential="))
        })
        .or_else(|| {
            raw_query
                .split('&')
                .find_map(|p| p.strip_prefix("X-Amz-Credential="))
        })
        .map(|c| percent_encoding::percent_decode_str(c).decode_utf8_lossy())
        .and_then(|c| parse_credential(&c));
    let on_aws = claims_host(&host);
    if !on_aws && scope.is_none() {
        return None;
    }
    let service = on_aws
        .then(|| parse_host(&host))
        .flatten()
        .map(|h| h.service)
        .or(scope.map(|s| s.service))
        .unwrap_or_default();
    let content_type = header("content-type").unwrap_or("").to_ascii_lowercase();
    if header("x-amz-target").is_some() || content_type.starts_with("application/x-amz-json") {
        return Some(AwsErrorProtocol::Json);
    }
    if service.starts_with("s3") {
        return Some(AwsErrorProtocol::S3Xml);
    }
    if service == "ec2" {
        return Some(AwsErrorProtocol::Ec2Xml);
    }
    let names_action = |text: &[u8]| url::form_urlencoded::parse(text).any(|(k, _)| k == "Action");
    let form = content_type.starts_with("application/x-www-form-urlencoded");
    if names_action(raw_query.as_bytes())
        || (form && names_action(body))
        || QUERY_SERVICES.contains(&service.as_str())
    {
        return Some(AwsErrorProtocol::QueryXml);
    }
    Some(AwsErrorProtocol::Json)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proto(
        host: &str,
        headers: &[(&str, &str)],
        query: &str,
        body: &str,
    ) -> Option<AwsErrorProtocol> {
        let mut h = http::HeaderMap::new();
        for (k, v) in headers {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        aws_error_protocol(host, &h, query, body.as_bytes())
    }

    const SIGV4_IAM: &str = "AWS4-HMAC-SHA256 Credential=AKID/20250101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=00";

    #[test]
    fn protocols_by_service_and_request() {
        use AwsErrorProtocol::*;
        assert_eq!(proto("api.stripe.com", &[], "", ""), None);
        assert_eq!(
            proto("agent-bucket.s3.amazonaws.com", &[], "", ""),
            Some(S3Xml)
        );
        assert_eq!(
            proto("s3.us-east-1.amazonaws.com", &[], "", ""),
            Some(S3Xml)
        );
        assert_eq!(
            proto("ec2.us-east-1.amazonaws.com", &[], "", ""),
            Some(Ec2Xml)
        );
        assert_eq!(proto("iam.amazonaws.com", &[], "", ""), Some(QueryXml));
        assert_eq!(
            proto(
                "sts.us-east-1.amazonaws.com",
                &[(
                    "content-type",
                    "application/x-www-form-urlencoded; charset=utf-8"
                )],
                "",
                "Action=GetCallerIdentity&Version=2011-06-15"
            ),
            Some(QueryXml)
        );
        assert_eq!(
            proto(
                "dynamodb.us-east-1.amazonaws.com",
                &[("x-amz-target", "DynamoDB_20120810.Scan")],
                "",
                "{}"
            ),
            Some(Json)
        );
        // SQS now speaks JSON: the request says so.
        assert_eq!(
            proto(
                "sqs.us-east-1.amazonaws.com",
                &[("content-type", "application/x-amz-json-1.0")],
                "",
                "{}"
            ),
            Some(Json)
        );
        assert_eq!(
            proto("lambda.us-east-1.amazonaws.com", &[], "", ""),
            Some(Json)
        );
        // Any host, when the request carries SigV4: the scope names the service.
        assert_eq!(
            proto("localhost", &[("authorization", SIGV4_IAM)], "", ""),
            Some(QueryXml)
        );
        assert_eq!(
            proto(
                "minio.internal",
                &[],
                "X-Amz-Credential=AKID%2F20250101%2Fus-east-1%2Fs3%2Faws4_request",
                ""
            ),
            Some(S3Xml)
        );
    }
}
