#!/usr/bin/env python3
"""ncu_sass.py: a kernel's warp stall samples per SASS instruction (the CSV
of `ncu -i REP --page source --csv --print-source sass`), summed: each stall
reason's share of all samples, the instructions with the most samples (with
their three largest reasons), and the samples between the kernel's
instructions that match MARK (a regex; default the warpgroup waits and
barriers), so the main loop and the epilogue can be told apart.

Usage: ncu_sass.py SASS.csv [--top N] [--mark REGEX]
"""

import argparse
import csv
import re
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--mark", default=r"WARPGROUP\.DEPBAR\.LE gsb0, 0x0|"
                                      r"UTMASTG|EXIT")
    a = ap.parse_args()
    rows = list(csv.reader(open(a.csv, errors="replace")))
    hdr = next((r for r in rows if "Address" in r and "Source" in r), None)
    if hdr is None:
        print("ncu_sass: no SASS table in", a.csv)
        return 1
    data = [r for r in rows[rows.index(hdr) + 1:] if len(r) == len(hdr)]
    ns = hdr.index("Warp Stall Sampling (All Samples)")
    src = hdr.index("Source")
    reasons = [i for i, h in enumerate(hdr)
               if h.startswith("stall_") and "Not Issued" not in h]

    def num(v):
        try:
            return int(v)
        except ValueError:
            return 0

    total = sum(num(r[ns]) for r in data) or 1
    print(f"{len(data)} instructions, {total} samples")
    sums = sorted(((sum(num(r[i]) for r in data), hdr[i][6:])
                   for i in reasons), reverse=True)
    print("reasons: " + ", ".join(f"{n} {100 * v / total:.1f}%"
                                  for v, n in sums if v))
    print("top instructions:")
    top = sorted(range(len(data)), key=lambda k: -num(data[k][ns]))
    for k in sorted(top[:a.top]):
        r = data[k]
        why = sorted(((num(r[i]), hdr[i][6:]) for i in reasons),
                     reverse=True)[:3]
        print(f"  {k:5d} {100 * num(r[ns]) / total:5.1f}%  "
              f"{r[src].strip()[:56]:56s} "
              + ", ".join(f"{n} {v}" for v, n in why if v))
    print("between marks:")
    mark = re.compile(a.mark)
    start, acc = 0, 0
    for k, r in enumerate(data):
        acc += num(r[ns])
        if mark.search(r[src]) or k == len(data) - 1:
            print(f"  {start:5d}-{k:5d} {100 * acc / total:5.1f}%  "
                  f"(ends at {r[src].strip()[:40]})")
            start, acc = k + 1, 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
