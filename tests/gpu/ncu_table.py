#!/usr/bin/env python3
"""ncu_table.py: ncu's --csv output (one metric, gpu__time_duration.sum)
as one table: each kernel and grid, calls, median and total time, sorted by
total. Usage: ncu_table.py LOG [--top N]"""
import csv
import statistics
import sys


def main():
    path = sys.argv[1]
    top = int(sys.argv[sys.argv.index('--top') + 1]) if '--top' in sys.argv \
        else 40
    lines = [l for l in open(path, errors='replace') if l.startswith('"')]
    rows = {}
    for r in csv.DictReader(lines):
        if r.get('Metric Name') != 'gpu__time_duration.sum':
            continue
        name = r['Kernel Name']
        name = name.split('(')[0] if not name.startswith('void ') \
            else name[5:].split('(')[0]
        key = (name[:70], r.get('Grid Size', ''), r.get('Block Size', ''))
        unit = r.get('Metric Unit', 'ns')
        v = float(r['Metric Value'].replace(',', ''))
        v = v / 1e6 if unit == 'ns' else v / 1e3 if unit == 'us' \
            else v if unit == 'ms' else v / 1e6
        rows.setdefault(key, []).append(v)
    print('| kernel | grid | block | calls | median ms | total ms |')
    print('| --- | --- | --- | --- | --- | --- |')
    out = sorted(rows.items(), key=lambda kv: -sum(kv[1]))
    for (name, grid, block), v in out[:top]:
        print(f'| {name} | {grid} | {block} | {len(v)} | '
              f'{statistics.median(v):.4f} | {sum(v):.3f} |')


main()
