#!/usr/bin/env python3
"""A GPU fault through nginx, on the GPU machine (tests/gpu/run.sh
devicefault): a server started with sd_test_gate GATES answers a request,
then a file GATES/device-fault makes its next job launch a kernel that
traps (sd_engine_inject_fault): the CUDA context's sticky error. That job
must answer 503 with Retry-After, the worker must exit and the master's
new worker load the model on a new context and answer again. Prints a
table (times in seconds) and exits 1 if any of it did not happen.

Usage: device_fault.py URL GATES ERROR_LOG [--size N] [--steps N]
"""

import argparse
import re
import sys
import time
from pathlib import Path

import requests


def worker_pids(url):
    text = requests.get(url + "/metrics", timeout=30).text
    return set(re.findall(r'(?m)^sd_worker_info\{worker="\d+",pid="(\d+)"\} 1$',
                          text)), text


def ready(url):
    try:
        r = requests.get(url + "/internal/ping", timeout=5)
        return r.status_code == 200 and r.json().get("status") == "ready"
    except (requests.RequestException, ValueError):
        return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("gates")
    ap.add_argument("error_log")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=4)
    a = ap.parse_args()
    body = {"prompt": "a red cube on a table", "width": a.size,
            "height": a.size, "steps": a.steps, "cfg_scale": 4.5, "seed": 7}
    rows, ok = [], True

    def check(what, cond, value=""):
        nonlocal ok
        ok = ok and bool(cond)
        rows.append((what, "yes" if cond else "NO", value))

    deadline = time.time() + 300
    while not ready(a.url) and time.time() < deadline:
        time.sleep(0.2)
    t0 = time.time()
    r = requests.post(a.url + "/sdapi/v1/txt2img", json=body, timeout=300)
    check("a request before the fault: 200", r.status_code == 200,
          f"{time.time() - t0:.2f}")
    before, _ = worker_pids(a.url)

    Path(a.gates, "device-fault").write_text("")
    t0 = time.time()
    r = requests.post(a.url + "/sdapi/v1/txt2img", json=body, timeout=300)
    detail = r.json().get("detail") if r.headers.get(
        "content-type", "").startswith("application/json") else r.text[:80]
    check("the faulting request: 503 with Retry-After",
          r.status_code == 503 and "Retry-After" in r.headers,
          f"{time.time() - t0:.2f} ({r.status_code}: {detail})")
    check("the fault's switch taken away",
          not Path(a.gates, "device-fault").exists())

    t1 = time.time()
    while time.time() < t1 + 300:
        try:
            now, _ = worker_pids(a.url)
        except requests.RequestException:
            now = set()
        if now and not (now & before) and ready(a.url):
            break
        time.sleep(0.1)
    check("a new worker, its model loaded", now and not (now & before),
          f"{time.time() - t1:.2f}")

    t0 = time.time()
    r = requests.post(a.url + "/sdapi/v1/txt2img", json=body, timeout=300)
    check("a request after it: 200", r.status_code == 200,
          f"{time.time() - t0:.2f}")
    _, text = worker_pids(a.url)
    m = re.search(r"(?m)^sd_device_failures_total (\d+)$", text)
    check("sd_device_failures_total 1", m and m.group(1) == "1",
          m.group(1) if m else "-")

    log = Path(a.error_log).read_text(errors="replace")
    crit = re.findall(r".*\[crit\].*the GPU failed.*", log)
    check("the worker's crit line", len(crit) == 1,
          crit[0].split("sd: ", 1)[-1][:150] if crit else "")
    check("the old worker exited with code 0",
          all(f"worker process {p} exited with code 0" in log
              for p in before))

    print("| device fault through nginx | ok | value |")
    print("| --- | --- | --- |")
    for what, res, value in rows:
        print(f"| {what} | {res} | {value} |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
