#!/usr/bin/env python3
"""Independent SigV4 verifier for the credentials crate's tests (uses botocore, not aws-sigv4).

Reads one JSON object on stdin:
  {"method", "url", "headers": [[name, value], ...], "body_hex",
   "access_key_id", "secret_access_key", "session_token" (optional)}
and recomputes the signature the way AWS would check it: only the headers named in
SignedHeaders, the X-Amz-Date the request carries, the region/service of its credential
scope, and the REAL secret key. Prints "ok" (exit 0) or "mismatch: <why>" (exit 1).
"""
import hashlib
import json
import sys
from urllib.parse import urlsplit, urlunsplit, unquote

from botocore.auth import (S3SigV4Auth, S3SigV4QueryAuth, SigV4Auth,
                           SigV4QueryAuth, UNSIGNED_PAYLOAD)
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def fail(why):
    print("mismatch: " + why)
    sys.exit(1)


def main():
    req = json.load(sys.stdin)
    body = bytes.fromhex(req.get("body_hex", ""))
    headers = {}
    for name, value in req["headers"]:
        headers.setdefault(name.lower(), []).append(value)
    url = req["url"]
    parts = urlsplit(url)
    akid = req["access_key_id"]
    token = req.get("session_token")
    creds = Credentials(akid, req["secret_access_key"], token)

    query_pairs = [p.partition("=") for p in parts.query.split("&") if p]
    qmap = {unquote(k): unquote(v) for k, _, v in query_pairs}
    presigned = "X-Amz-Signature" in qmap

    if presigned:
        if qmap.get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256":
            fail("bad X-Amz-Algorithm")
        credential = qmap["X-Amz-Credential"]
        signed_list = qmap["X-Amz-SignedHeaders"]
        signature = qmap["X-Amz-Signature"]
        amz_date = qmap["X-Amz-Date"]
        if token is not None and qmap.get("X-Amz-Security-Token") != token:
            fail("session token missing from the query")
        if token is None and "X-Amz-Security-Token" in qmap:
            fail("unexpected X-Amz-Security-Token")
        # The canonical query covers everything except the signature itself.
        kept = "&".join(f"{k}={v}" if s else k for k, s, v in query_pairs
                        if unquote(k) != "X-Amz-Signature")
        url = urlunsplit((parts.scheme, parts.netloc, parts.path, kept, parts.fragment))
    else:
        auth = headers.get("authorization")
        if not auth or len(auth) != 1:
            fail("expected exactly one Authorization header")
        algorithm, _, rest = auth[0].partition(" ")
        if algorithm != "AWS4-HMAC-SHA256":
            fail("bad algorithm")
        fields = dict(p.strip().split("=", 1) for p in rest.split(","))
        credential = fields["Credential"]
        signed_list = fields["SignedHeaders"]
        signature = fields["Signature"]
        amz_date = headers.get("x-amz-date", [None])[0]
        if amz_date is None:
            fail("no X-Amz-Date header")
        if token is not None and headers.get("x-amz-security-token") != [token]:
            fail("session token header missing or wrong")
        if token is None and "x-amz-security-token" in headers:
            fail("unexpected X-Amz-Security-Token header")

    scope = credential.split("/")
    if len(scope) != 5 or scope[4] != "aws4_request":
        fail("bad credential scope " + credential)
    if scope[0] != akid:
        fail("credential scope names another access key id")
    if scope[1] != amz_date[:8]:
        fail("scope date differs from X-Amz-Date")
    region, service = scope[2], scope[3]
    signed = signed_list.split(";")
    if signed != sorted(signed) or "host" not in signed:
        fail("SignedHeaders not sorted or without host")
    for name in headers:
        if name.startswith("x-amz-") and name not in signed and not presigned:
            fail(f"x-amz header {name} present but not signed")

    # The Host header the request carries must be the one that was signed, and must match
    # the URL (default port omitted).
    expected_host = parts.hostname
    if parts.port and parts.port != {"https": 443, "http": 80}.get(parts.scheme):
        expected_host = f"{expected_host}:{parts.port}"
    if headers.get("host") != [expected_host]:
        fail(f"Host header {headers.get('host')} != {expected_host}")

    content_sha = headers.get("x-amz-content-sha256", [None])[0]
    if content_sha is not None and content_sha != UNSIGNED_PAYLOAD:
        if content_sha != hashlib.sha256(body).hexdigest():
            fail("x-amz-content-sha256 is not the SHA-256 of the body")
    if service == "s3" and not presigned and content_sha is None:
        fail("S3 request without x-amz-content-sha256")

    to_sign = {}
    for name in signed:
        if name not in headers:
            fail(f"signed header {name} absent from the request")
        to_sign[name] = ",".join(headers[name])
    aws_req = AWSRequest(method=req["method"], url=url, data=body, headers=to_sign)
    aws_req.context["timestamp"] = amz_date
    if presigned:
        cls = S3SigV4QueryAuth if service == "s3" else SigV4QueryAuth
    else:
        cls = S3SigV4Auth if service == "s3" else SigV4Auth
    signer = cls(creds, service, region)
    computed_signed = signer.signed_headers(signer.headers_to_sign(aws_req))
    if computed_signed != signed_list:
        fail(f"signed header list {computed_signed} != {signed_list}")
    canonical = signer.canonical_request(aws_req)
    sts = signer.string_to_sign(aws_req, canonical)
    expected = signer.signature(sts, aws_req)
    if expected != signature:
        fail("signature differs\n--- canonical request (botocore) ---\n" + canonical)
    print("ok")


if __name__ == "__main__":
    main()
