"""Clients as a newcomer runs them (tests/newcomer.rs, tests/aws_sdk.rs).

Usage: python3 newcomer.py CALL [ARG]   (prints one JSON line)
  govern_requests URL | govern_httpx URL   POST /v1/govern with requests / httpx
  stripe_charge | openai_chat | ddb_scan   one call, few retries (pending answers)
  aws CALL                                 boto3 at default settings (see aws_call)
The proxy, CA and placeholder keys come from the environment (`sudomode exec`
or the test); nothing here names SudoMode's address.
"""
import json
import os
import sys

GOVERN_BODY = {"resource": "shell", "action": "exec", "args": {"command": "ls"}}


def govern(lib, url):
    if lib == "requests":
        import requests
        r = requests.post(url, json=GOVERN_BODY, timeout=20)
        return {"status": r.status_code, "body": r.json()}
    import httpx
    r = httpx.post(url, json=GOVERN_BODY, timeout=20)
    return {"status": r.status_code, "body": r.json()}


def stripe_charge():
    import stripe
    stripe.api_key = "sk_test_placeholder"
    stripe.ca_bundle_path = os.environ["REQUESTS_CA_BUNDLE"]
    stripe.max_network_retries = 1
    return stripe.Charge.create(amount=5000, currency="usd", source="tok_visa")


def openai_chat():
    import openai
    client = openai.OpenAI(api_key="sk-placeholder", max_retries=1, timeout=30)
    return client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )


def boto_config(attempts=2):
    from botocore.config import Config
    return Config(retries={"max_attempts": attempts, "mode": "standard"}, region_name="us-east-1")


def aws_call(name):
    """boto3 at its defaults but for retries (checksums: when_supported)."""
    import boto3
    cfg = boto_config(1)
    if name == "ddb_scan":
        return boto3.client("dynamodb", config=boto_config(2)).scan(TableName="users")
    if name == "s3_get":
        return boto3.client("s3", config=cfg).get_object(Bucket="agent-bucket", Key="notes/a.txt")
    if name == "s3_delete":
        return boto3.client("s3", config=cfg).delete_object(Bucket="agent-bucket", Key="notes/a.txt")
    if name == "iam_list_users":
        return boto3.client("iam", config=cfg).list_users()
    if name == "sts_whoami":
        return boto3.client("sts", config=cfg).get_caller_identity()
    if name == "ec2_describe":
        return boto3.client("ec2", config=cfg).describe_instances()
    if name == "s3_create_bucket":
        return boto3.client("s3", config=cfg).create_bucket(Bucket="agent-bucket")
    if name == "s3_put_get":
        s3 = boto3.client("s3", config=cfg)
        body = os.environ.get("UPLOAD_TEXT", "hello from the agent").encode()
        put = s3.put_object(Bucket="agent-bucket", Key="notes/a.txt", Body=body)
        got = s3.get_object(Bucket="agent-bucket", Key="notes/a.txt")
        return {
            "etag": put.get("ETag"),
            "checksum_crc32": put.get("ChecksumCRC32"),
            "body": got["Body"].read().decode("utf-8", "replace"),
        }
    raise SystemExit("unknown call " + name)


def failure(e):
    """What the SDK raised, as the test inspects it."""
    out = {"ok": False, "error": type(e).__name__, "message": str(e)}
    resp = getattr(e, "response", None)
    if isinstance(resp, dict):  # botocore ClientError (or a modeled subclass)
        from botocore.exceptions import ClientError
        out["client_error"] = isinstance(e, ClientError)
        meta = resp.get("ResponseMetadata", {})
        out["status"] = meta.get("HTTPStatusCode")
        out["code"] = resp.get("Error", {}).get("Code")
        out["aws_message"] = resp.get("Error", {}).get("Message")
        out["headers"] = meta.get("HTTPHeaders", {})
    else:
        out["status"] = getattr(e, "http_status", None) or getattr(e, "status_code", None)
    return out


def main():
    call = sys.argv[1]
    try:
        if call.startswith("govern_"):
            result = govern(call[len("govern_"):], sys.argv[2])
        elif call == "stripe_charge":
            result = stripe_charge()
        elif call == "openai_chat":
            result = openai_chat()
        elif call == "aws":
            result = aws_call(sys.argv[2])
        else:
            raise SystemExit("unknown call " + call)
        print(json.dumps({"ok": True, "result": json.loads(json.dumps(result, default=str))}))
    except Exception as e:  # the test inspects what the client raised
        print(json.dumps(failure(e), default=str))


if __name__ == "__main__":
    main()
