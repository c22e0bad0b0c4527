#!/usr/bin/env python3
"""ktrace.py: tests/gpu/ktrace.c's CSV (every kernel's device start and end)
as tables: each CUDA graph replay (a denoising step) - its wall time, the
time no kernel ran, each stream's busy time and the gaps between its
kernels - and each kernel's time under the step's real load and clock.

Usage: ktrace.py CSV [--skip N] [--timeline FILE] [--top N]
  --skip N       leave out each graph's first N replays (warm-up)
  --timeline F   one replay (the median's) kernel by kernel into F
"""
import csv
import re
import statistics
import sys


def short(name):
    m = re.match(r'_Z(?:N\d+)?(\d+)', name)
    if m:
        n = int(m.group(1))
        base = name[m.end():m.end() + n]
        t = re.search(r'ILi(\d+)ELi(\d+)E', name)
        return base + (f'<{t.group(1)},{t.group(2)}>' if t else '')
    return name[:60]


def arg(flag, default):
    return sys.argv[sys.argv.index(flag) + 1] if flag in sys.argv \
        else default


def union(iv):
    tot, cur_s, cur_e = 0, None, None
    for s, e in sorted(iv):
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                tot += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None:
        tot += cur_e - cur_s
    return tot


def gaps_before(x):
    """each row's start minus the end of the row before it on its stream
    (None for a stream's first)"""
    prev, out = {}, []
    for r in x:
        out.append(r[0] - prev[r[2]] if r[2] in prev else None)
        prev[r[2]] = r[1]
    return out


def main():
    skip = int(arg('--skip', '2'))
    top = int(arg('--top', '40'))
    rows = []
    with open(sys.argv[1]) as f:
        for r in csv.DictReader(f):
            rows.append((int(r['start']), int(r['end']), int(r['stream']),
                         int(r['graph']), int(r['node']), r['grid'],
                         short(r['name'])))
    rows.sort()
    # graph replays: a node seen again starts the graph's next replay
    inst, seen = {}, {}
    for r in rows:
        g = r[3]
        if not g:
            continue
        lst = inst.setdefault(g, [[]])
        if r[4] in seen.setdefault(g, set()):
            lst.append([])
            seen[g] = set()
        lst[-1].append(r)
        seen[g].add(r[4])
    print(f'kernels traced: {len(rows)}, graphs: {len(inst)}')
    print('| graph | kernels a replay | replays | wall ms (median) | '
          'no kernel running, ms | streams: busy ms / gaps ms / kernels |')
    print('| --- | --- | --- | --- | --- | --- |')
    best = None
    for g, lst in sorted(inst.items()):
        n = statistics.median(len(x) for x in lst)
        lst = [x for x in lst if len(x) == n][skip:]
        if not lst:
            continue
        walls, idles, per = [], [], {}
        for x in lst:
            t0 = min(r[0] for r in x)
            t1 = max(r[1] for r in x)
            walls.append((t1 - t0) / 1e6)
            idles.append((t1 - t0 - union([(r[0], r[1]) for r in x])) / 1e6)
            gb = gaps_before(x)
            for s in {r[2] for r in x}:
                ks = [r for r in x if r[2] == s]
                busy = union([(r[0], r[1]) for r in ks]) / 1e6
                gaps = sum(max(0, g) for r, g in zip(x, gb)
                           if r[2] == s and g is not None)
                per.setdefault(s, []).append((busy, gaps / 1e6, len(ks)))
        streams = '; '.join(
            f'{s}: {statistics.median(v[0] for v in vals):.2f} / '
            f'{statistics.median(v[1] for v in vals):.2f} / {vals[0][2]}'
            for s, vals in sorted(per.items()))
        print(f'| {g} | {int(n)} | {len(lst)} | '
              f'{statistics.median(walls):.3f} | '
              f'{statistics.median(idles):.3f} | {streams} |')
        if best is None or len(lst) * n > best[0]:
            best = (len(lst) * n, g, lst, walls)
    if best is None:
        return
    _, g, lst, walls = best
    print(f'\nkernels of graph {g} (a replay: median over {len(lst)}), '
          'by total time, under the step\'s load:')
    print('| kernel | grid | stream | calls | median us | total ms | '
          'gap before, median us |')
    print('| --- | --- | --- | --- | --- | --- | --- |')
    stat = {}
    for x in lst:
        for r, gap in zip(x, gaps_before(x)):
            d = stat.setdefault((r[6], r[5], r[2]), {'d': [], 'g': []})
            d['d'].append((r[1] - r[0]) / 1e3)
            if gap is not None:
                d['g'].append(gap / 1e3)
    nrep = len(lst)
    out = sorted(stat.items(), key=lambda kv: -sum(kv[1]['d']))
    for (name, grid, s), d in out[:top]:
        calls = len(d['d']) / nrep
        g_med = statistics.median(d['g']) if d['g'] else 0
        print(f'| {name} | {grid} | {s} | {calls:g} | '
              f'{statistics.median(d["d"]):.1f} | '
              f'{sum(d["d"]) / nrep / 1e3:.3f} | {g_med:.1f} |')
    tl = arg('--timeline', None)
    if tl:
        med = sorted(range(len(lst)), key=lambda i: walls[i])[len(lst) // 2]
        x = lst[med]
        t0 = x[0][0]
        with open(tl, 'w') as f:
            f.write('start_us dur_us gap_us stream grid kernel\n')
            for r, g in zip(x, gaps_before(x)):
                gap = g / 1e3 if g is not None else 0
                f.write(f'{(r[0] - t0) / 1e3:10.1f} {(r[1] - r[0]) / 1e3:8.1f}'
                        f' {gap:7.1f} {r[2]:3d} {r[5]:>12} {r[6]}\n')


main()
