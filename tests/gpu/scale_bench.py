#!/usr/bin/env python3
"""Throughput and latency of txt2img through nginx under sustained load,
for the GPU scaling run (tests/gpu/run.sh scale): at each concurrency C,
C clients post txt2img back to back for --duration seconds (each request on
a new connection, as many clients behind a gateway); images per minute
count the answers completed in that window, latency is the whole request
(queue wait included).

Usage:
  scale_bench.py run URL --label "1 GPU" --levels 1,2,4 --out r1.json
  scale_bench.py report r1.json r2.json --out DIR [--at C --target X]
    writes DIR/scale.md (the table, and images/min of the last file over
    the first at their highest common concurrency: the 2-GPU speed-up),
    DIR/scale.svg (the plot, drawn here: no library needed) and, where
    matplotlib is installed, DIR/scale.png. With --at C (batching across
    requests, tests/gpu/run.sh batch): the speed-up is instead the last
    file's images/min at C clients over the first file's at 1 client (one
    request at a time), against --target."""
import argparse
import json
import statistics
import sys
import threading
import time

BODY = {'prompt': 'a futuristic cityscape at sunset, cyberpunk style',
        'negative_prompt': 'blurry, low-res, distortion',
        'sampler_name': 'Euler', 'cfg_scale': 4.5}


def wait_ready(url, timeout=900):
    """Until every worker has its model in (sd_engine_ready on /metrics:
    with several workers /internal/ping answers for one of them)."""
    import re
    import requests
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            if requests.get(url + '/internal/ping', timeout=5).json().get(
                    'status') == 'failed':
                raise SystemExit(f'{url}: the model failed to load (see '
                                 'the error log)')
            m = requests.get(url + '/metrics', timeout=5).text
            ready = re.findall(r'(?m)^sd_engine_ready\{[^}]*\} (\d+)$', m)
            if ready and all(v == '1' for v in ready):
                return time.time() - t0
        except (requests.RequestException, ValueError):
            pass
        time.sleep(1)
    raise SystemExit(f'{url}: not ready after {timeout} s')


def one(url, a, seed):
    import requests
    body = dict(BODY, width=a.width, height=a.height, steps=a.steps,
                seed=seed)
    t = time.time()
    r = requests.post(url + '/sdapi/v1/txt2img', json=body, timeout=900,
                      headers={'Connection': 'close'})
    return t, time.time(), r.status_code


def level(url, a, c):
    """c closed-loop clients for a.duration seconds: (done, latencies,
    errors, window seconds)."""
    stop = time.time() + a.duration
    lat, errors, ends = [], [], []
    lock = threading.Lock()
    start = time.time()

    def client(k):
        seed = 1000 * k
        while time.time() < stop:
            t0, t1, code = one(url, a, seed)
            seed += 1
            with lock:
                if code == 200:
                    lat.append(t1 - t0)
                    ends.append(t1)
                else:
                    errors.append(code)

    ts = [threading.Thread(target=client, args=(k,)) for k in range(c)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    # the window: until the last answer (a request started before the end
    # of --duration is waited for and counted)
    window = (max(ends) if ends else time.time()) - start
    return len(lat), lat, errors, window


def pct(xs, q):
    if not xs:
        return float('nan')
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, int(round(q * (len(xs) - 1)))))
    return xs[k]


def cmd_run(a):
    ready = wait_ready(a.url)
    one(a.url, a, 1)                                    # warm-up
    rows = []
    for c in [int(x) for x in a.levels.split(',')]:
        n, lat, errors, window = level(a.url, a, c)
        row = {'concurrency': c, 'images': n, 'errors': len(errors),
               'window_s': window,
               'images_per_min': n * 60.0 / window if window > 0 else 0,
               'p50_s': pct(lat, 0.5), 'p99_s': pct(lat, 0.99),
               'mean_s': statistics.mean(lat) if lat else float('nan')}
        rows.append(row)
        print(f"{a.label}: C={c} {n} images in {window:.1f} s = "
              f"{row['images_per_min']:.2f}/min, p50 {row['p50_s']:.2f} s, "
              f"p99 {row['p99_s']:.2f} s, {len(errors)} errors", flush=True)
    res = {'label': a.label, 'url': a.url, 'width': a.width,
           'height': a.height, 'steps': a.steps, 'duration_s': a.duration,
           'ready_s': ready, 'levels': rows}
    with open(a.out, 'w') as f:
        json.dump(res, f, indent=1)
    return 0 if all(r['errors'] == 0 and r['images'] for r in rows) else 1


def svg_plot(results, path):
    """Two panels: images/min against concurrency, latency p50 and p99
    against concurrency; one colour per result file."""
    W, H, P = 920, 380, 60
    pw = (W - 3 * P) / 2
    colors = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd']
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" '
           f'height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>']
    cs = sorted({r['concurrency'] for res in results
                 for r in res['levels']})

    def panel(x0, title, ylabel, series):
        ymax = max([y for _, pts, _ in series for _, y in pts] + [1e-9])
        ymax *= 1.15
        y0, ph = P, H - 2 * P

        def X(c):
            i = cs.index(c)
            return x0 + (pw * (i + 0.5) / len(cs))

        def Y(v):
            return y0 + ph - ph * v / ymax
        out.append(f'<text x="{x0 + pw / 2}" y="{P - 25}" '
                   f'text-anchor="middle" font-size="14">{title}</text>')
        out.append(f'<rect x="{x0}" y="{y0}" width="{pw}" height="{ph}" '
                   f'fill="none" stroke="#444"/>')
        for k in range(5):
            v = ymax * k / 4
            out.append(f'<line x1="{x0}" x2="{x0 + pw}" y1="{Y(v):.1f}" '
                       f'y2="{Y(v):.1f}" stroke="#ddd"/>')
            out.append(f'<text x="{x0 - 6}" y="{Y(v) + 4:.1f}" '
                       f'text-anchor="end">{v:.3g}</text>')
        for c in cs:
            out.append(f'<text x="{X(c):.1f}" y="{y0 + ph + 16}" '
                       f'text-anchor="middle">{c}</text>')
        out.append(f'<text x="{x0 + pw / 2}" y="{y0 + ph + 34}" '
                   f'text-anchor="middle">concurrent clients</text>')
        out.append(f'<text x="{x0 - 45}" y="{y0 + ph / 2}" '
                   f'text-anchor="middle" transform="rotate(-90 '
                   f'{x0 - 45} {y0 + ph / 2})">{ylabel}</text>')
        for i, (name, pts, style) in enumerate(series):
            col = style[0]
            d = ' '.join(f'{X(c):.1f},{Y(v):.1f}' for c, v in pts
                         if v == v)
            out.append(f'<polyline points="{d}" fill="none" '
                       f'stroke="{col}" stroke-width="2" '
                       f'stroke-dasharray="{style[1]}"/>')
            for c, v in pts:
                if v == v:
                    out.append(f'<circle cx="{X(c):.1f}" cy="{Y(v):.1f}" '
                               f'r="3" fill="{col}"/>')
            out.append(f'<text x="{x0 + 8}" y="{y0 + 16 + 15 * i}" '
                       f'fill="{col}">{name}</text>')

    thr, lat = [], []
    for i, res in enumerate(results):
        col = colors[i % len(colors)]
        lv = res['levels']
        thr.append((res['label'], [(r['concurrency'], r['images_per_min'])
                                   for r in lv], (col, '')))
        lat.append((res['label'] + ' p50',
                    [(r['concurrency'], r['p50_s']) for r in lv], (col, '')))
        lat.append((res['label'] + ' p99',
                    [(r['concurrency'], r['p99_s']) for r in lv],
                    (col, '6,4')))
    r0 = results[0]
    panel(P, f"images per minute ({r0['width']}x{r0['height']}, "
          f"{r0['steps']} steps)", 'images / min', thr)
    panel(2 * P + pw, 'latency', 'seconds', lat)
    out.append('</svg>')
    with open(path, 'w') as f:
        f.write('\n'.join(out) + '\n')


def png_plot(results, path):
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    for res in results:
        c = [r['concurrency'] for r in res['levels']]
        a1.plot(c, [r['images_per_min'] for r in res['levels']], 'o-',
                label=res['label'])
        a2.plot(c, [r['p50_s'] for r in res['levels']], 'o-',
                label=res['label'] + ' p50')
        a2.plot(c, [r['p99_s'] for r in res['levels']], 'o--',
                label=res['label'] + ' p99')
    a1.set(xlabel='concurrent clients', ylabel='images / min',
           title='throughput')
    a2.set(xlabel='concurrent clients', ylabel='seconds', title='latency')
    for ax in (a1, a2):
        ax.grid(alpha=.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def cmd_report(a):
    import os
    results = [json.load(open(f)) for f in a.files]
    os.makedirs(a.out, exist_ok=True)
    one = next((r['images_per_min'] for r in results[0]['levels']
                if r['concurrency'] == 1), None)
    lines = ['| server | clients | images | window (s) | images/min | '
             'vs one at a time | p50 (s) | p99 (s) | errors |',
             '| --- | --- | --- | --- | --- | --- | --- | --- | --- |']
    for res in results:
        for r in res['levels']:
            vs = f"{r['images_per_min'] / one:.3f}x" if one else ""
            lines.append(f"| {res['label']} | {r['concurrency']} | "
                         f"{r['images']} | {r['window_s']:.1f} | "
                         f"{r['images_per_min']:.2f} | {vs} | "
                         f"{r['p50_s']:.2f} | "
                         f"{r['p99_s']:.2f} | {r['errors']} |")
    speedup = None
    target = a.target if a.target is not None else 1.9
    if a.at is not None and len(results) >= 2 and one:
        last = results[-1]
        r = next((r for r in last['levels'] if r['concurrency'] == a.at),
                 None)
        if r:
            speedup = r['images_per_min'] / one
            lines.append('')
            lines.append(f"{last['label']} at {a.at} clients over "
                         f"{results[0]['label']} one at a time: "
                         f"{r['images_per_min']:.2f} / {one:.2f} images/min "
                         f"= **{speedup:.3f}x** (target >= {target}x)")
    elif len(results) >= 2:
        first, last = results[0], results[-1]
        common = sorted({r['concurrency'] for r in first['levels']} &
                        {r['concurrency'] for r in last['levels']})
        if common:
            c = common[-1]
            f = next(r for r in first['levels'] if r['concurrency'] == c)
            best_first = max(r['images_per_min'] for r in first['levels'])
            best_last = max(r['images_per_min'] for r in last['levels'])
            speedup = best_last / best_first if best_first else None
            lines.append('')
            lines.append(f"{last['label']} over {first['label']}: best "
                         f"images/min {best_last:.2f} / {best_first:.2f} = "
                         f"**{speedup:.2f}x** (target >= {target}x); at "
                         f"{c} clients {f['images_per_min']:.2f} for "
                         f"{first['label']}")
    text = '\n'.join(lines) + '\n'
    open(os.path.join(a.out, 'scale.md'), 'w').write(text)
    svg_plot(results, os.path.join(a.out, 'scale.svg'))
    png = png_plot(results, os.path.join(a.out, 'scale.png'))
    print(text)
    print('plot:', os.path.join(a.out, 'scale.svg'),
          '(and scale.png)' if png else '(no matplotlib: SVG only)')
    return 0 if speedup is None or speedup >= target else 2


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest='cmd', required=True)
    r = sub.add_parser('run')
    r.add_argument('url')
    r.add_argument('--label', required=True)
    r.add_argument('--levels', default='1,2,4')
    r.add_argument('--duration', type=float, default=45)
    r.add_argument('--width', type=int, default=1024)
    r.add_argument('--height', type=int, default=1024)
    r.add_argument('--steps', type=int, default=28)
    r.add_argument('--out', required=True)
    p = sub.add_parser('report')
    p.add_argument('files', nargs='+')
    p.add_argument('--out', required=True)
    p.add_argument('--at', type=int)
    p.add_argument('--target', type=float)
    a = ap.parse_args()
    return cmd_run(a) if a.cmd == 'run' else cmd_report(a)


if __name__ == '__main__':
    sys.exit(main())
