#!/usr/bin/env python3
"""Independent verifier of a SudoMode audit export (JSON Lines), standard library only.

Usage: verify_export.py FILE   (or - for stdin)
Prints {"ok", "events", "head_hash", "first_bad_seq"} as JSON; exit 0 when the chain holds, 1 when not.

Each event's hash is the hex SHA-256 of its canonical JSON without "hash":
json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False), except that
floats are written the way SudoMode (serde_json) writes them: fixed notation when the decimal
exponent is in [-5, 16), else "1.5e+16" / "1e-7" (no zero padding). For floats of magnitude
1e-4 to 1e16 that is exactly what json.dumps writes.
"""
import hashlib
import json
import sys
from decimal import Decimal

GENESIS = "0" * 64


def fmt_float(f):
    r = repr(f)  # shortest round-trip digits
    if r in ("inf", "-inf", "nan"):
        raise ValueError("non-finite number")
    sign, digits, exp = Decimal(r).as_tuple()
    digits = "".join(map(str, digits)).lstrip("0") or "0"
    # Decimal may carry trailing zeros ("100.0" -> 1000e-1): strip them into the exponent.
    if digits != "0":
        stripped = digits.rstrip("0")
        exp += len(digits) - len(stripped)
        digits = stripped
    s = "-" if sign else ""
    if digits == "0":
        return s + "0.0"
    e10 = len(digits) + exp - 1  # exponent of the first digit
    if -5 <= e10 < 16:
        if exp >= 0:
            return s + digits + "0" * exp + ".0"
        point = len(digits) + exp
        if point > 0:
            return s + digits[:point] + "." + digits[point:]
        return s + "0." + "0" * (-point) + digits
    mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return s + mant + "e" + ("+" if e10 >= 0 else "-") + str(abs(e10))


def canonical(v):
    if isinstance(v, dict):
        return "{" + ",".join(
            json.dumps(k, ensure_ascii=False) + ":" + canonical(v[k]) for k in sorted(v)
        ) + "}"
    if isinstance(v, list):
        return "[" + ",".join(canonical(x) for x in v) + "]"
    if isinstance(v, float):
        return fmt_float(v)
    return json.dumps(v, ensure_ascii=False)  # str, int, bool, None


def plain_floats(v):
    if isinstance(v, dict):
        return all(plain_floats(x) for x in v.values())
    if isinstance(v, list):
        return all(plain_floats(x) for x in v)
    if isinstance(v, float):
        return v == 0 or 1e-4 <= abs(v) < 1e16
    return True


def event_hash(obj):
    body = {k: v for k, v in obj.items() if k != "hash"}
    text = canonical(body)
    if plain_floats(body):
        # The documented recipe, checked against the float-exact one.
        assert text == json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def verify(lines):
    events = 0
    last_seq = 0
    last_hash = GENESIS
    first_bad = None
    for line in lines:
        if not line.strip():
            continue
        events += 1
        expected = last_seq + 1
        try:
            obj = json.loads(line)
            seq, prev, h = obj["seq"], obj["prev_hash"], obj["hash"]
        except (ValueError, KeyError, TypeError):
            first_bad = first_bad or expected
            last_seq = expected
            continue
        if seq != expected:
            first_bad = first_bad or expected
        elif prev != last_hash:
            first_bad = first_bad or seq
        if event_hash(obj) != h:
            first_bad = first_bad or seq
        last_seq, last_hash = seq, h
    return {"ok": first_bad is None, "events": events, "head_hash": last_hash,
            "first_bad_seq": first_bad}


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    src = sys.stdin if sys.argv[1] == "-" else open(sys.argv[1], encoding="utf-8")
    with src:
        report = verify(src)
    print(json.dumps(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
