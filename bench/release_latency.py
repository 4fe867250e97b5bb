#!/usr/bin/env python3
"""Release latency of a cross-replica approval (SPEC §14, §15).

An agent's call is held on replica A; an operator approves it through replica
B's API; the time from sending the approval to the agent receiving the
upstream's answer on A is one sample. Sequential, bounded in count and time.
Prints one JSON object.

  release_latency.py --proxy http://127.0.0.1:PA --ca ca.pem \
      --approve-api http://127.0.0.1:DB --token TOKEN --count 200
"""
import argparse
import json
import statistics
import sys
import threading
import time

import requests


def pending_id(api, token, marker, deadline):
    while time.monotonic() < deadline:
        r = requests.get(f"{api}/api/v1/requests?status=pending&limit=50",
                         headers={"Authorization": f"Bearer {token}"}, timeout=10)
        for req in r.json().get("requests", []):
            if marker in req.get("url", ""):
                return req["id"]
        time.sleep(0.005)
    raise TimeoutError(f"{marker} never became pending")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--proxy", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--approve-api", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--url", default="https://bench.local/release")
    p.add_argument("--count", type=int, default=200)
    p.add_argument("--timeout", type=float, default=300)
    a = p.parse_args()
    proxies = {"https": a.proxy, "http": a.proxy}
    deadline = time.monotonic() + a.timeout
    samples, failures = [], 0
    for i in range(a.count):
        if time.monotonic() > deadline:
            break
        marker = f"/r{i}-{time.time_ns()}"
        answer = {}

        def agent():
            try:
                r = requests.post(a.url + marker, data=b"x", proxies=proxies,
                                  verify=a.ca, timeout=60)
                answer["status"] = r.status_code
            except Exception as e:  # noqa: BLE001 - recorded as a failure
                answer["error"] = str(e)
            answer["at"] = time.monotonic()

        t = threading.Thread(target=agent)
        t.start()
        rid = pending_id(a.approve_api, a.token, marker, deadline)
        sent = time.monotonic()
        r = requests.post(f"{a.approve_api}/api/v1/requests/{rid}/approve",
                          headers={"Authorization": f"Bearer {a.token}"}, json={}, timeout=10)
        t.join(60)
        if r.status_code != 200 or answer.get("status") != 200:
            failures += 1
            continue
        samples.append((answer["at"] - sent) * 1000.0)
    samples.sort()

    def pct(q):
        if not samples:
            return None
        return samples[min(len(samples) - 1, int(q * len(samples)))]

    json.dump({
        "mode": "release",
        "samples": len(samples),
        "failures": failures,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": samples[-1] if samples else None,
        "mean_ms": statistics.fmean(samples) if samples else None,
    }, sys.stdout)
    print()


if __name__ == "__main__":
    main()
