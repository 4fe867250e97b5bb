"""A real agent for the end-to-end tests: official SDKs through SudoMode.

Usage: python3 agent.py CALL   (prints one JSON line: {"ok": ..., "result"|"error": ...})
Environment: HTTPS_PROXY and the CA variables from `sudomode env`; the keys
the agent holds are placeholders — SudoMode injects the real ones.
"""
import json
import os
import sys


def stripe_call(name):
    import stripe
    stripe.api_key = os.environ.get("STRIPE_API_KEY", "sk_test_placeholder")
    stripe.ca_bundle_path = os.environ["REQUESTS_CA_BUNDLE"]
    stripe.max_network_retries = 0
    if name == "stripe_small_charge":
        return stripe.Charge.create(amount=30, currency="usd", source="tok_visa")
    if name == "stripe_big_charge":
        return stripe.Charge.create(amount=5000, currency="usd", source="tok_visa")
    if name == "stripe_delete_customer":
        return stripe.Customer.delete("cus_123")
    raise SystemExit("unknown call " + name)


def aws_call(name):
    import boto3
    from botocore.config import Config
    cfg = Config(retries={"max_attempts": 1, "mode": "standard"}, region_name="us-east-1")
    if name.startswith("ddb_"):
        c = boto3.client("dynamodb", config=cfg)
        if name == "ddb_list_tables":
            return c.list_tables()
        if name == "ddb_delete_table":
            return c.delete_table(TableName="users")
    if name.startswith("s3_"):
        c = boto3.client("s3", config=cfg)
        if name == "s3_put":
            return c.put_object(Bucket="agent-bucket", Key="notes/a.txt", Body=b"hello from the agent")
        if name == "s3_get":
            r = c.get_object(Bucket="agent-bucket", Key="notes/a.txt")
            return {"body": r["Body"].read().decode("utf-8", "replace")}
    if name == "ec2_terminate":
        c = boto3.client("ec2", config=cfg)
        return c.terminate_instances(InstanceIds=["i-0123456789abcdef0"])
    raise SystemExit("unknown call " + name)


def main():
    name = sys.argv[1]
    try:
        if name.startswith("stripe_"):
            result = stripe_call(name)
        else:
            result = aws_call(name)
        print(json.dumps({"ok": True, "result": json.loads(json.dumps(result, default=str))}))
    except Exception as e:  # the test inspects what the SDK raised
        status = getattr(e, "http_status", None)
        resp = getattr(e, "response", None)
        if status is None and isinstance(resp, dict):
            status = resp.get("ResponseMetadata", {}).get("HTTPStatusCode")
        print(json.dumps({"ok": False, "error": type(e).__name__, "status": status, "message": str(e)}))


if __name__ == "__main__":
    main()
