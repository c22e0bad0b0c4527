#!/usr/bin/env python3
"""ncu_raw.py: ncu's `--csv --page raw` output (a row a launch, a column a
metric, the row after the header the units) summed by kernel and grid:
calls and, per call, each metric it knows that the log has, as one table in
order of total time (the log's order with --sort first).

  ncu_raw.py LOG [--title T] [--top N] [--sort time|first]
  ncu_raw.py LOG --first-grid N [--default K]

The second form prints the index (among the log's launches) of the first
launch whose grid is N blocks, else K (default 0): a later ncu run's
--launch-skip. Metrics: gpu__time_duration.sum (us a call),
dram__bytes.sum (MB a call, and GB/s with the time),
dram__throughput.avg.pct_of_peak_sustained_elapsed (DRAM %),
smsp__inst_executed.sum (M instructions a call). Units are read from the
units row (ns and byte in the H200's logs; ncu may scale a column).
"""
import argparse
import csv
import sys

TIME = 'gpu__time_duration.sum'
BYTES = 'dram__bytes.sum'
DRAM = 'dram__throughput.avg.pct_of_peak_sustained_elapsed'
INST = 'smsp__inst_executed.sum'
SCALE = {'ns': 1e-3, 'us': 1.0, 'ms': 1e3, 's': 1e6,
         'nsecond': 1e-3, 'usecond': 1.0, 'msecond': 1e3, 'second': 1e6,
         'byte': 1e-6, 'Kbyte': 1e-3, 'Mbyte': 1.0, 'Gbyte': 1e3,
         'KB': 1e-3, 'MB': 1.0, 'GB': 1e3,
         'inst': 1e-6, 'Kinst': 1e-3, 'Minst': 1.0, 'Ginst': 1e3, '%': 1.0}


def launches(path):
    """(header, units, launch rows) of a raw page, or None"""
    rows = [r for r in csv.reader(open(path, errors='replace')) if len(r) > 5]
    hdr = next((r for r in rows if 'Kernel Name' in r), None)
    if hdr is None:
        return None
    i = rows.index(hdr)
    return hdr, rows[i + 1], rows[i + 2:]


def short(name):
    name = name[5:] if name.startswith('void ') else name
    return name.split('(')[0][:60]


def value(r, col, units):
    try:
        v = float(r[col].replace(',', ''))
    except (ValueError, IndexError):
        return None
    return v * SCALE.get(units[col], 1.0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('log')
    ap.add_argument('--title', default='kernel')
    ap.add_argument('--top', type=int, default=60)
    ap.add_argument('--sort', choices=('time', 'first'), default='time')
    ap.add_argument('--first-grid')
    ap.add_argument('--default', type=int, default=0)
    a = ap.parse_args()
    got = launches(a.log)
    if got is None:
        print(a.default if a.first_grid else 'no ncu rows')
        return 0
    hdr, units, data = got
    gcol = hdr.index('launch__grid_size') if 'launch__grid_size' in hdr \
        else hdr.index('Grid Size') if 'Grid Size' in hdr else None
    grid = (lambda r: r[gcol].replace(',', '')) if gcol is not None \
        else (lambda r: '')
    if a.first_grid:
        print(next((i for i, r in enumerate(data) if grid(r) == a.first_grid),
                   a.default))
        return 0
    cols = [m for m in (TIME, BYTES, DRAM, INST) if m in hdr]
    ix = {m: hdr.index(m) for m in cols}
    agg = {}
    for r in data:
        vals = {m: value(r, ix[m], units) for m in cols}
        if any(v is None for v in vals.values()):
            continue
        s = agg.setdefault((short(r[hdr.index('Kernel Name')]), grid(r)),
                           [0, {m: 0.0 for m in cols}])
        s[0] += 1
        for m in cols:
            s[1][m] += vals[m]
    head = ['calls']
    head += ['us each'] if TIME in cols else []
    head += ['MB each'] if BYTES in cols else []
    head += ['GB/s'] if BYTES in cols and TIME in cols else []
    head += ['DRAM %'] if DRAM in cols else []
    head += ['M instructions each'] if INST in cols else []
    print(f'| {a.title} | grid | ' + ' | '.join(head) + ' |')
    print('| --- ' * (len(head) + 2) + '|')
    items = list(agg.items())
    if a.sort == 'time' and TIME in cols:
        items.sort(key=lambda kv: -kv[1][1][TIME])
    for (k, g), (n, t) in items[:a.top]:
        out = [str(n)]
        out += [f'{t[TIME] / n:.1f}'] if TIME in cols else []
        out += [f'{t[BYTES] / n:.0f}'] if BYTES in cols else []
        out += [f'{t[BYTES] / t[TIME] * 1e3:.0f}'] \
            if BYTES in cols and TIME in cols and t[TIME] > 0 else \
            (['-'] if BYTES in cols and TIME in cols else [])
        out += [f'{t[DRAM] / n:.0f}'] if DRAM in cols else []
        out += [f'{t[INST] / n:.2f}'] if INST in cols else []
        print(f'| {k} | {g} | ' + ' | '.join(out) + ' |')
    return 0


sys.exit(main())
