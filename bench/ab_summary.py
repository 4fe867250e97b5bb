"""Summary of an alternated A/B (bench/ab.sh, bench/ab-postgres.sh).

    ab_summary.py RUNS.jsonl --keys rps proxy_cpu_us --ratios rps proxy_cpu_us

RUNS holds one JSON object a run with `side` (A or B), `round` and the keys.
Prints each side's medians of --keys, then for each of --ratios the median of
B/A over the pairs and how many pairs B was higher in.
"""

import argparse
import json
import statistics


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs")
    ap.add_argument("--keys", nargs="+", required=True)
    ap.add_argument("--ratios", nargs="+", default=["rps"])
    args = ap.parse_args()
    with open(args.runs) as f:
        runs = [json.loads(line) for line in f if line.strip()]
    print("median   " + "  ".join(f"{k:>15}" for k in args.keys))
    for side in "AB":
        mine = [r for r in runs if r["side"] == side]
        if mine:
            print(f"{side:<8} " + "  ".join(f"{round(statistics.median(r[k] for r in mine), 1):>15}" for k in args.keys))
    pairs: dict[int, dict[str, dict]] = {}
    for r in runs:
        pairs.setdefault(r["round"], {})[r["side"]] = r
    both = [p for p in pairs.values() if len(p) == 2]
    for k in args.ratios if both else []:
        ratios = [p["B"][k] / p["A"][k] for p in both if p["A"][k]]
        higher = sum(1 for p in both if p["B"][k] > p["A"][k])
        print(f"B/A {k}: median {statistics.median(ratios):.3f} (B higher in {higher} of {len(both)} pairs)")


if __name__ == "__main__":
    main()
