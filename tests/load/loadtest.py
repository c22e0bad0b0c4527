#!/usr/bin/env python3
"""make loadtest: 200 concurrent clients for 60 s against nginx with the
module and the tiny fixture model (2 workers, 10 tenants with a queue
share of 4 each, a queue of 16 per worker), with 10 reloads and a worker
killed under load. Not part of CI (it takes a couple of minutes and the
whole machine); the README has its figures.

It checks what the issue asks:
- every answer is 200, or 429 or 503 with Retry-After; nothing else;
- every accepted job completes: a client gets no answer only at the kill,
  and only as many as the killed worker could hold;
- no worker exits on a signal but the killed one, nothing logged at
  alert or crit, and afterwards no queued or running task is left;
- resident memory of the workers is flat after warm-up (10 s of load):
  within 10 % between the first and the last steady samples.
"""

import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(os.environ.get("SD_FIXTURES") or ROOT / "../shared/fixtures")
if not FIXTURES.is_absolute():
    FIXTURES = ROOT / FIXTURES
MODEL = FIXTURES.resolve() / "tiny-sd35-large"
MODULE = ROOT / "build" / "ngx_http_sd_module.so"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

CLIENTS = int(os.environ.get("SD_LOAD_CLIENTS", 200))
SECONDS = int(os.environ.get("SD_LOAD_SECONDS", 60))
WARMUP = 10
RELOADS = 10
TENANTS = 10
QUEUE = 16

JOB = {"prompt": "a red cube", "width": 64, "height": 64, "steps": 2,
       "cfg_scale": 1.0, "send_images": True}

CONF = """
{user}
load_module {module};
worker_processes 2;
working_directory {prefix};
error_log error.log notice;
pid nginx.pid;
thread_pool sd threads=4 max_queue=256;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path tmp/body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;
    sd_model tiny {model} default;
    sd_thread_pool sd;
    sd_cpu_threads 1;
    sd_queue_size {queue};
    sd_shutdown_timeout 60s;
    server {{
        listen 127.0.0.1:{port} backlog=1024;
        location /sdapi/v1/ {{
            sd_api;
            sd_tenant $http_x_tenant;
            sd_tenant_queue 4;
        }}
        location /internal/ {{ sd_api; sd_operator on; }}
        location = /metrics {{ sd_metrics; }}
    }}
}}
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.codes = {}
        self.bad = []           # answers outside the contract
        self.errors = []        # (time, what): no answer at all
        self.images = 0
        self.latency = []

    def add(self, code, ok, dt, images=0):
        with self.lock:
            self.codes[code] = self.codes.get(code, 0) + 1
            if not ok:
                self.bad.append(code)
            if code == 200:
                self.latency.append(dt)
                self.images += images


def client(port, tenant, stop, stats):
    body = json.dumps(JOB)
    while not stop.is_set():
        t0 = time.time()
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
            c.request("POST", "/sdapi/v1/txt2img", body,
                      {"Content-Type": "application/json",
                       "X-Tenant": tenant})
            r = c.getresponse()
            data = r.read()
            c.close()
        except (OSError, http.client.HTTPException) as e:
            with stats.lock:
                stats.errors.append((time.time(), repr(e)))
            time.sleep(0.1)
            continue
        dt = time.time() - t0
        code = r.status
        if code == 200:
            n = len(json.loads(data)["images"])
            stats.add(code, n == 1, dt, n)
        elif code in (429, 503):
            ok = (r.getheader("Retry-After") or "0").isdigit() and \
                int(r.getheader("Retry-After")) > 0
            stats.add(code, ok, dt)
            # a client that backs off a little, not for Retry-After's 5 s
            time.sleep(random.uniform(0.2, 1.0))
        else:
            stats.add(code, False, dt)
            time.sleep(0.2)


def workers(master):
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == master and fields[0] != "Z":
            out.append(int(d.name))
    return sorted(out)


def rss_kb(pid):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def get(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", path)
    r = c.getresponse()
    data = r.read().decode()
    c.close()
    return data


def main():
    if not MODEL.is_dir():
        print(f"loadtest: no tiny model at {MODEL} (set SD_FIXTURES)")
        return 1

    prefix = Path(tempfile.mkdtemp(prefix="sd-load."))
    for d in ("tmp", "logs"):
        (prefix / d).mkdir()
    port = free_port()
    user = "user root;" if os.geteuid() == 0 else ""
    (prefix / "nginx.conf").write_text(CONF.format(
        user=user, module=MODULE, prefix=prefix, model=MODEL, port=port,
        queue=QUEUE))
    out = open(prefix / "stderr.log", "w")
    master = subprocess.Popen([NGINX, "-p", f"{prefix}/", "-c", "nginx.conf",
                               "-e", "stderr", "-g", "daemon off;"],
                              stdout=out, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            m = get(port, "/metrics")
            if len(re.findall(r"(?m)^sd_engine_ready\{.*\} 1$", m)) == 2:
                break
        except OSError:
            pass
        time.sleep(0.2)
    else:
        print("loadtest: nginx did not get ready")
        master.kill()
        return 1

    stats = Stats()
    stop = threading.Event()
    threads = [threading.Thread(target=client, daemon=True,
                                args=(port, f"t{i % TENANTS}", stop, stats))
               for i in range(CLIENTS)]
    start = time.time()
    for t in threads:
        t.start()

    print(f"loadtest: {CLIENTS} clients, {SECONDS} s, pid {master.pid}, "
          f"prefix {prefix}")

    # steady: warm-up, then memory samples of the same two workers
    steady = workers(master.pid)
    samples = []
    reload_at = start + WARMUP + (SECONDS - WARMUP) / 3
    while time.time() < reload_at:
        time.sleep(1)
        if time.time() - start >= WARMUP:
            samples.append(sum(rss_kb(p) for p in steady))

    # 10 reloads under load, then a worker killed
    kill_at = start + SECONDS - 5
    gap = (kill_at - time.time()) / RELOADS
    for _ in range(RELOADS):
        master.send_signal(signal.SIGHUP)
        time.sleep(gap)
    live = workers(master.pid)
    newest = max(live)
    killed_at = time.time()
    os.kill(newest, signal.SIGKILL)
    while time.time() < start + SECONDS:
        time.sleep(0.5)

    stop.set()
    for t in threads:
        t.join(600)
    took = time.time() - start

    # after: no task left, no worker but the configured two
    time.sleep(3)
    pending = json.loads(get(port, "/internal/pending-tasks"))
    progress = json.loads(get(port, "/sdapi/v1/progress"))
    metrics = get(port, "/metrics")
    gauges = re.findall(r"(?m)^sd_tenant_(?:queued|running)\{.*\} (\d+)$",
                        metrics)
    after = workers(master.pid)
    rss_after = sum(rss_kb(p) for p in after)
    master.send_signal(signal.SIGQUIT)
    master.wait(120)
    log = (prefix / "error.log").read_text(errors="replace") + \
        (prefix / "stderr.log").read_text(errors="replace")

    problems = []
    if stats.bad:
        problems.append(f"answers outside 200/429/503+Retry-After: "
                        f"{sorted(set(stats.bad))}")
    early = [e for e in stats.errors if e[0] < killed_at]
    late = [e for e in stats.errors if e[0] > killed_at + 5]
    if early or late:
        problems.append(f"requests without an answer apart from the kill: "
                        f"{(early + late)[:5]}")
    if len(stats.errors) > QUEUE + 1 + 64:
        problems.append(f"{len(stats.errors)} requests lost at the kill")
    signals = re.findall(r"exited on signal \d+", log)
    if len(signals) != 1:
        problems.append(f"workers exited on signals: {signals}")
    alerts = [line for line in log.splitlines()
              if re.search(r"\[(alert|crit|emerg)\]", line)
              and "exited on signal" not in line]
    if alerts:
        problems.append(f"logged: {alerts[:5]}")
    if pending["size"] or progress["state"]["job"] or \
            any(int(g) for g in gauges):
        problems.append(f"left behind: {pending}, {progress['state']}, "
                        f"{gauges}")
    if len(samples) >= 4:
        first = sum(samples[:2]) / 2
        last = sum(samples[-2:]) / 2
        if last > first * 1.10:
            problems.append(f"memory grew: {first:.0f} -> {last:.0f} kB")

    lat = sorted(stats.latency) or [0]
    answers = sum(stats.codes.values())
    report = {
        "clients": CLIENTS, "seconds": round(took, 1),
        "answers": answers, "codes": stats.codes,
        "images": stats.images,
        "images_per_s": round(stats.images / took, 2),
        "latency_200_p50_s": round(lat[len(lat) // 2], 2),
        "latency_200_p99_s": round(lat[int(len(lat) * 0.99)], 2),
        "reloads": RELOADS, "killed_worker": newest,
        "lost_at_kill": len(stats.errors),
        "worker_rss_kb_steady": samples,
        "workers_rss_kb_after": rss_after,
        "problems": problems,
    }
    (ROOT / "build").mkdir(exist_ok=True)
    (ROOT / "build" / "loadtest.json").write_text(json.dumps(report,
                                                             indent=1))
    print(json.dumps(report, indent=1))
    print("loadtest:", "FAILED" if problems else "passed")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
