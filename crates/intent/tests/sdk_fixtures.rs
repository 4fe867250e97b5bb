//! Requests recorded from the official SDKs (tests/fixtures/capture.py) must
//! map to the documented intents, both as captured (custom endpoint, SigV4
//! scope decides) and rewritten to the real API hosts.

use base64::Engine;
use serde_json::{Value, json};
use sudomode_intent::{Intent, IntentError, Mapper, RawRequest};

struct Fixture {
    method: String,
    path: String,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

fn load(name: &str) -> Fixture {
    let file = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let mut headers = http::HeaderMap::new();
    for h in v["headers"].as_array().unwrap() {
        let (k, val) = (h[0].as_str().unwrap(), h[1].as_str().unwrap());
        headers.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            val.parse().unwrap(),
        );
    }
    Fixture {
        method: v["method"].as_str().unwrap().into(),
        path: v["path"].as_str().unwrap().into(),
        headers,
        body: base64::engine::general_purpose::STANDARD
            .decode(v["body_b64"].as_str().unwrap())
            .unwrap(),
    }
}

fn map_as(f: &Fixture, host: &str, path: &str) -> Result<Vec<Intent>, IntentError> {
    let mut headers = f.headers.clone();
    headers.insert(http::header::HOST, host.parse().unwrap());
    let mapper = Mapper::new(Vec::new(), 10 << 20).unwrap();
    let req = RawRequest {
        method: &f.method,
        scheme: "https",
        host,
        port: 443,
        path_and_query: path,
        headers: &headers,
        body: &f.body,
    };
    mapper.map(&req).map(|m| m.intents)
}

fn single(intents: Vec<Intent>) -> Intent {
    assert_eq!(intents.len(), 1, "{intents:?}");
    intents.into_iter().next().unwrap()
}

#[track_caller]
fn check(i: &Intent, resource: &str, action: &str, args: &[(&str, Value)]) {
    assert_eq!(
        (i.resource.as_str(), i.action.as_str()),
        (resource, action),
        "{i:?}"
    );
    for (ptr, want) in args {
        assert_eq!(i.args.pointer(ptr), Some(want), "{ptr} in {}", i.args);
    }
}

#[test]
fn stripe_python() {
    let s = |name: &str| {
        let f = load(name);
        single(map_as(&f, "api.stripe.com", &f.path).unwrap())
    };
    check(
        &s("stripe_charge_create"),
        "stripe.charges",
        "create",
        &[
            ("/amount", json!(5000)),
            ("/currency", json!("usd")),
            ("/metadata/order", json!(7)),
        ],
    );
    check(
        &s("stripe_refund_create"),
        "stripe.refunds",
        "create",
        &[("/charge", json!("ch_1")), ("/amount", json!(2500))],
    );
    check(
        &s("stripe_customer_delete"),
        "stripe.customers",
        "delete",
        &[("/id", json!("cus_1"))],
    );
    check(
        &s("stripe_payment_intent_confirm"),
        "stripe.payment_intents",
        "confirm",
        &[("/id", json!("pi_1"))],
    );
    check(
        &s("stripe_charge_list"),
        "stripe.charges",
        "list",
        &[("/limit", json!(3))],
    );
    check(
        &s("stripe_customer_retrieve"),
        "stripe.customers",
        "retrieve",
        &[("/id", json!("cus_1"))],
    );
}

/// (fixture, real host, resource, action, args that must be present)
type AwsCase = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Vec<(&'static str, Value)>,
);

fn aws_cases() -> Vec<AwsCase> {
    vec![
        (
            "aws_dynamodb_list_tables",
            "dynamodb.us-east-1.amazonaws.com",
            "aws.dynamodb",
            "ListTables",
            vec![],
        ),
        (
            "aws_dynamodb_delete_table",
            "dynamodb.us-east-1.amazonaws.com",
            "aws.dynamodb",
            "DeleteTable",
            vec![("/TableName", json!("users"))],
        ),
        (
            "aws_dynamodb_put_item",
            "dynamodb.us-east-1.amazonaws.com",
            "aws.dynamodb",
            "PutItem",
            vec![("/TableName", json!("users")), ("/Item/id/S", json!("1"))],
        ),
        (
            "aws_ec2_terminate_instances",
            "ec2.us-east-1.amazonaws.com",
            "aws.ec2",
            "TerminateInstances",
            vec![("/InstanceId.1", json!("i-123"))],
        ),
        (
            "aws_sts_get_caller_identity",
            "sts.amazonaws.com",
            "aws.sts",
            "GetCallerIdentity",
            vec![],
        ),
        (
            "aws_iam_create_user",
            "iam.amazonaws.com",
            "aws.iam",
            "CreateUser",
            vec![("/UserName", json!("bob"))],
        ),
        (
            "aws_lambda_invoke",
            "lambda.us-east-1.amazonaws.com",
            "aws.lambda",
            "Invoke",
            vec![("/function_name", json!("my-fn"))],
        ),
        (
            "aws_secretsmanager_get_secret_value",
            "secretsmanager.us-east-1.amazonaws.com",
            "aws.secretsmanager",
            "GetSecretValue",
            vec![("/SecretId", json!("db-pass"))],
        ),
        (
            "aws_sqs_send_message",
            "sqs.us-east-1.amazonaws.com",
            "aws.sqs",
            "SendMessage",
            vec![("/MessageBody", json!("hi"))],
        ),
        (
            "aws_s3_path_put_object",
            "s3.us-east-1.amazonaws.com",
            "aws.s3",
            "PutObject",
            vec![("/bucket", json!("my-bucket")), ("/key", json!("a/b.txt"))],
        ),
        (
            "aws_s3_path_get_object",
            "s3.us-east-1.amazonaws.com",
            "aws.s3",
            "GetObject",
            vec![("/bucket", json!("my-bucket")), ("/key", json!("a/b.txt"))],
        ),
        (
            "aws_s3_path_delete_objects",
            "s3.us-east-1.amazonaws.com",
            "aws.s3",
            "DeleteObjects",
            vec![("/bucket", json!("my-bucket"))],
        ),
        (
            "aws_s3_path_list_objects_v2",
            "s3.us-east-1.amazonaws.com",
            "aws.s3",
            "ListObjectsV2",
            vec![
                ("/bucket", json!("my-bucket")),
                ("/query/prefix", json!("a/")),
            ],
        ),
        (
            "aws_s3_path_put_bucket_policy",
            "s3.us-east-1.amazonaws.com",
            "aws.s3",
            "PutBucketPolicy",
            vec![("/bucket", json!("my-bucket"))],
        ),
    ]
}

#[test]
fn boto3_as_captured_uses_sigv4_scope() {
    for (name, _, resource, action, args) in aws_cases() {
        let f = load(name);
        let i = single(map_as(&f, "127.0.0.1", &f.path).unwrap_or_else(|e| panic!("{name}: {e}")));
        check(&i, resource, action, &args);
        assert_eq!(i.args["region"], "us-east-1", "{name}");
    }
}

#[test]
fn boto3_on_real_hosts() {
    for (name, host, resource, action, args) in aws_cases() {
        let f = load(name);
        let i = single(map_as(&f, host, &f.path).unwrap_or_else(|e| panic!("{name}: {e}")));
        check(&i, resource, action, &args);
        assert_eq!(i.args["region"], "us-east-1", "{name}");
    }
}

#[test]
fn boto3_s3_virtual_hosted() {
    for (name, _, resource, action, args) in aws_cases()
        .into_iter()
        .filter(|c| c.0.starts_with("aws_s3"))
    {
        let f = load(name);
        let path = f.path.strip_prefix("/my-bucket").unwrap();
        let path = if path.is_empty() || path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        let i = single(
            map_as(&f, "my-bucket.s3.us-east-1.amazonaws.com", &path)
                .unwrap_or_else(|e| panic!("{name}: {e}")),
        );
        check(&i, resource, action, &args);
    }
}

#[test]
fn boto3_scope_must_match_host() {
    let f = load("aws_dynamodb_delete_table");
    assert!(matches!(
        map_as(&f, "ec2.us-east-1.amazonaws.com", "/"),
        Err(IntentError::BadRequest(_))
    ));
    let f = load("aws_s3_path_put_object");
    assert!(matches!(
        map_as(&f, "dynamodb.us-east-1.amazonaws.com", &f.path),
        Err(IntentError::BadRequest(_))
    ));
}
