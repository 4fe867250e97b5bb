#!/usr/bin/env python3
"""Plays the agent for the credentials crate's tests: signs requests with botocore and
DUMMY keys, exactly as an SDK would, and prints them as JSON lines
{"name", "host", "method", "url", "headers": [[k, v]...], "body_hex"}."""
import json
import sys

from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

DUMMY = Credentials(sys.argv[1], "dummy-secret", sys.argv[2] if len(sys.argv) > 2 else None)


def emit(name, signer, method, url, headers, body=b""):
    req = AWSRequest(method=method, url=url, data=body, headers=headers)
    signer.add_auth(req)
    prepared = req.prepare()
    print(json.dumps({
        "name": name,
        "host": prepared.url.split("/")[2].split(":")[0],
        "method": method,
        "url": prepared.url,
        "headers": [[k, v] for k, v in prepared.headers.items()],
        "body_hex": body.hex(),
    }))


emit("dynamodb", SigV4Auth(DUMMY, "dynamodb", "eu-central-1"), "POST",
     "https://dynamodb.eu-central-1.amazonaws.com/",
     {"Content-Type": "application/x-amz-json-1.0",
      "X-Amz-Target": "DynamoDB_20120810.DeleteTable",
      "User-Agent": "Boto3/1.34 agent"},
     b'{"TableName": "orders"}')
emit("s3-put", S3SigV4Auth(DUMMY, "s3", "us-west-2"), "PUT",
     "https://agent-bucket.s3.us-west-2.amazonaws.com/a/b%3Dc.json",
     {"Content-Type": "application/json", "x-amz-meta-run": "42"},
     b'{"hello": "world"}')
emit("s3-presigned", S3SigV4QueryAuth(DUMMY, "s3", "us-west-2", expires=600), "GET",
     "https://agent-bucket.s3.us-west-2.amazonaws.com/report.csv?response-content-type=text%2Fcsv",
     {})
