#!/usr/bin/env python3
"""txt2img through nginx from an HTTP client: waits for the model, times
the whole request (JSON in, base64 PNG out) after a warm-up, with the
prompt of the warm-up (the text cache holds its encoding) and with a new
prompt each request (encoded each time; the negative prompt as before, so
held), with the warm-up's prompt again through http.client (the time to
the answer's last byte, without the requests library's own costs: it
reads the answer in 10 kB pieces, among others), then checks
that a request larger than the GPU workspace answers 500 with the reason
and that the next request still works. Prints a table.
Usage: http_bench.py URL [--width W] [--height H] [--steps N] [--runs N]
                         [--big WxHxB]"""
import argparse, base64, http.client, json, statistics, sys, time
import urllib.parse
import requests

ap = argparse.ArgumentParser()
ap.add_argument('url')
ap.add_argument('--width', type=int, default=1024)
ap.add_argument('--height', type=int, default=1024)
ap.add_argument('--steps', type=int, default=28)
ap.add_argument('--cfg', type=float, default=4.5)
ap.add_argument('--runs', type=int, default=3)
ap.add_argument('--big', default='1536x1536x8')
ap.add_argument('--expect-oom', action='store_true',
                help='the --big request must answer 500 (over the workspace)')
a = ap.parse_args()

t0 = time.time()
while time.time() - t0 < 600:
    try:
        r = requests.get(a.url + '/sdapi/v1/sd-models', timeout=5)
        p = requests.post(a.url + '/sdapi/v1/txt2img', timeout=600,
                          json={'prompt': 'x', 'steps': 1, 'width': 64,
                                'height': 64})
        if p.status_code == 200:
            break
        if p.status_code not in (502, 503, 504):
            print('warm-up request answered', p.status_code, p.text[:2000])
            sys.exit(1)
    except requests.RequestException:
        pass
    time.sleep(1)
ready = time.time() - t0


def request(w, h, steps, batch=1, seed=1234,
            prompt='a futuristic cityscape at sunset, cyberpunk style'):
    return {'prompt': prompt,
            'negative_prompt': 'blurry, low-res, distortion',
            'width': w, 'height': h, 'steps': steps, 'cfg_scale': a.cfg,
            'seed': seed, 'batch_size': batch, 'sampler_name': 'Euler'}


def txt2img(w, h, steps, batch=1, seed=1234, **kw):
    body = request(w, h, steps, batch, seed, **kw)
    t = time.time()
    r = requests.post(a.url + '/sdapi/v1/txt2img', json=body, timeout=600)
    return r, time.time() - t


def txt2img_raw(w, h, steps, seed):
    """The same request as txt2img's through http.client: (status, the
    body's bytes, seconds from before the connection to the last byte)"""
    u = urllib.parse.urlsplit(a.url)
    body = json.dumps(request(w, h, steps, seed=seed))
    t = time.time()
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
    c.request('POST', '/sdapi/v1/txt2img', body,
              {'Content-Type': 'application/json'})
    resp = c.getresponse()
    data = resp.read()
    dt = time.time() - t
    c.close()
    return resp.status, data, dt


r, _ = txt2img(a.width, a.height, a.steps)          # warm-up
ok = r.status_code == 200
times = []
for i in range(a.runs):
    r, dt = txt2img(a.width, a.height, a.steps, seed=100 + i)
    ok = ok and r.status_code == 200
    times.append(dt)
png = base64.b64decode(r.json()['images'][0]) if ok else b''
fresh = []
for i in range(a.runs):
    r, dt = txt2img(a.width, a.height, a.steps, seed=200 + i,
                    prompt=f'a lighthouse on a cliff at dawn, view {i}, '
                           f'oil painting number {1000 + i}')
    ok = ok and r.status_code == 200
    fresh.append(dt)
raw = []
for i in range(a.runs):
    st, data, dt = txt2img_raw(a.width, a.height, a.steps, 300 + i)
    ok = ok and st == 200 and len(json.loads(data)['images']) == 1
    raw.append(dt)
bw, bh, bb = (int(x) for x in a.big.split('x'))
big, bdt = txt2img(bw, bh, 2, batch=bb)
after, adt = txt2img(512, 512, 4)
print('| through nginx (HTTP client) | |')
print('| --- | --- |')
print(f'| ready (load + workspace sizing) | {ready:.1f} s |')
print(f'| txt2img {a.width}x{a.height}, {a.steps} steps, cfg {a.cfg}, '
      f'median of {a.runs} | {statistics.median(times):.3f} s |')
print(f'| all runs | {", ".join(f"{t:.3f}" for t in times)} s |')
print(f'| txt2img, a new prompt each request, median of {a.runs} | '
      f'{statistics.median(fresh):.3f} s |')
print(f'| all runs, new prompts | {", ".join(f"{t:.3f}" for t in fresh)} s |')
print(f'| the same prompt, to the answer\'s last byte (http.client), '
      f'median of {a.runs} | {statistics.median(raw):.3f} s |')
print(f'| all runs, http.client | {", ".join(f"{t:.3f}" for t in raw)} s |')
print(f'| PNG bytes | {len(png)} |')
print(f'| {bw}x{bh} batch {bb}: status | {big.status_code}: '
      f'{big.text[:160]!r} |')
print(f'| next request (512x512, 4 steps): status | {after.status_code} '
      f'({adt:.2f} s) |')
big_ok = big.status_code == 500 if a.expect_oom else \
    big.status_code in (200, 500)
sys.exit(0 if ok and after.status_code == 200 and big_ok else 1)
