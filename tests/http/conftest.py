"""The HTTP tests' harness: each test starts a real nginx on loopback, on a
free port, with the module (build/ngx_http_sd_module.so, built here with
"make module" when missing or stale) and the tiny model from the fixtures
on the CPU backend, and stops it afterwards. A test fails if nginx logged
an alert, an emergency, a critical error or a crashed worker."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(os.environ.get("SD_FIXTURES") or ROOT / "../shared/fixtures")
if not FIXTURES.is_absolute():
    FIXTURES = ROOT / FIXTURES
FIXTURES = FIXTURES.resolve()
MODEL = FIXTURES / "tiny-sd35-large"
GOLDEN = FIXTURES / "golden-public.safetensors"
MODULE = ROOT / "build" / "ngx_http_sd_module.so"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

# A small, fast request (about a second on two cores) and a slow one.
FAST = {"prompt": "a red cube", "width": 64, "height": 64, "steps": 2,
        "cfg_scale": 1.0, "seed": 1}
SLOW = {"prompt": "a slow job", "width": 256, "height": 256, "steps": 40,
        "cfg_scale": 4.0, "seed": 2}

# Workers must reach the test's prefix (pytest's tmp dirs are private).
USER = "user root;" if os.geteuid() == 0 else ""

BASE_CONF = """
{user}
load_module {module};
worker_processes {workers};
worker_rlimit_core 1g;
working_directory {prefix};
error_log error.log info;
pid nginx.pid;
thread_pool sd threads=8 max_queue=64;
events {{ worker_connections 256; }}
http {{
    access_log access.log;
    client_body_temp_path tmp/body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;

    sd_model tiny {model} default;
    sd_thread_pool sd;
    sd_queue_size {queue};
    sd_parallel {parallel};
    sd_test_gate {prefix}/gates;
    {http}
    server {{
        listen 127.0.0.1:{port};
        location /sdapi/v1/ {{ sd_api; sd_operator {operator}; {loc} }}
        location /internal/ {{ sd_api; sd_operator {operator}; {internal} }}
        location = /metrics {{ sd_metrics; }}
        error_page 413 /internal/error;
        {server}
    }}
}}
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nginx_t(module, tmp_path, name, http="", server="", loc=""):
    """nginx -t on a one-location configuration of the tiny model with
    directives added at each level; the CompletedProcess (stderr: its
    messages)."""
    prefix = tmp_path / name
    (prefix / "logs").mkdir(parents=True)
    (prefix / "nginx.conf").write_text(
        f"load_module {module};\nerror_log stderr;\npid nginx.pid;\n"
        f"events {{}}\nhttp {{ sd_model tiny {MODEL} default;\n{http}\n"
        f"server {{ listen 127.0.0.1:{free_port()}; {server}\n"
        f"location / {{ sd_api; {loc} }} }} }}\n")
    return subprocess.run([NGINX, "-t", "-p", str(prefix) + "/", "-c",
                           "nginx.conf", "-e", "stderr"],
                          capture_output=True, text=True)


@pytest.fixture(scope="session")
def module():
    # as the C tests do: without the fixtures, report skipped, not failed
    if not MODEL.is_dir():
        pytest.skip(f"fixtures not found: no tiny model at {MODEL} "
                    "(set SD_FIXTURES)")
    r = subprocess.run(["make", "-s", "module"], cwd=ROOT,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True)
    assert r.returncode == 0, "make module failed:\n" + r.stdout[-4000:]
    return MODULE


class Nginx:
    """One nginx with its own prefix under the test's tmp_path."""

    def __init__(self, prefix, conf, port, scheme="http"):
        self.prefix = Path(prefix)
        self.port = port
        self.url = f"{scheme}://127.0.0.1:{port}"
        self.proc = None
        self.killed = 0         # workers a test killed on purpose
        self.expected = []      # regexes of crit lines a test causes
        self.nworkers = 1
        self.metrics_url = self.url + "/metrics"
        (self.prefix / "tmp").mkdir(parents=True, exist_ok=True)
        (self.prefix / "logs").mkdir(exist_ok=True)
        (self.prefix / "gates").mkdir(exist_ok=True)
        (self.prefix / "nginx.conf").write_text(conf)
        self.log = self.prefix / "error.log"

    def start(self, wait_ready=True, verify=True):
        out = open(self.prefix / "stderr.log", "w")
        self.proc = subprocess.Popen(
            [NGINX, "-p", str(self.prefix) + "/", "-c", "nginx.conf",
             "-e", "stderr", "-g", "daemon off;"],
            stdout=out, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("nginx exited:\n" + self.logs())
            try:
                r = requests.get(self.url + "/internal/ping", timeout=2,
                                 verify=verify)
                if not wait_ready or r.json().get("status") == "ready":
                    return self
            except (requests.ConnectionError, ValueError):
                pass
            time.sleep(0.05)
        raise AssertionError("nginx did not get ready:\n" + self.logs())

    def wait_workers_ready(self, count, exclude=(), timeout=60):
        """Until `count` workers (not those in exclude) have their model
        in, as the metrics say (slot -> pid from sd_worker_info)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            text = requests.get(self.metrics_url, timeout=30).text
            pids = dict(re.findall(
                r'(?m)^sd_worker_info\{worker="(\d+)",pid="(\d+)"\} 1$',
                text))
            ready = re.findall(r'(?m)^sd_engine_ready\{worker="(\d+)"\} 1$',
                               text)
            if len([w for w in ready
                    if int(pids.get(w, 0)) not in exclude]) >= count:
                return
            time.sleep(0.05)
        raise AssertionError(f"{count} workers not ready:\n{text}")

    def reload(self):
        """nginx -s reload: returns once the old workers have stopped
        taking connections and the new ones are all ready."""
        old = set(self.workers())
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 60
        while time.time() < deadline:
            logs = self.logs()
            if all(f"{p}#{p}: gracefully shutting down" in logs
                   or p not in self.workers() for p in old):
                break
            time.sleep(0.05)
        self.wait_workers_ready(self.nworkers, exclude=old)

    def gate(self, task, step=None):
        """Holds task's job (sd_test_gate): before its first step, or after
        step `step` of its first iteration, until release(task)."""
        (self.prefix / "gates" / task).write_text(
            "" if step is None else str(step))

    def release(self, task):
        (self.prefix / "gates" / task).unlink(missing_ok=True)

    def logs(self):
        text = ""
        for name in ("stderr.log", "error.log"):
            p = self.prefix / name
            if p.exists():
                text += p.read_text(errors="replace")
        return text

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()

    def workers(self):
        """The pids of the master's worker processes (from /proc)."""
        pids = []
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            fields = stat.rpartition(")")[2].split()
            if int(fields[1]) == self.proc.pid and fields[0] != "Z":
                pids.append(int(d.name))
        return sorted(pids)

    def kill_worker(self, pid, sig=signal.SIGKILL):
        self.killed += 1
        os.kill(pid, sig)

    def check_log(self):
        bad = [line for line in re.findall(r".*\[(?:alert|emerg|crit)\].*",
                                           self.logs())
               if "exited on signal" not in line
               and not any(re.search(x, line) for x in self.expected)]
        assert not bad, "nginx logged:\n" + "\n".join(bad)
        exits = re.findall(r".*exited on signal.*", self.logs())
        assert len(exits) == self.killed, "nginx logged:\n" + "\n".join(
            exits)

    def post(self, path, json=None, **kw):
        kw.setdefault("timeout", 120)
        return requests.post(self.url + path, json=json, **kw)

    def get(self, path, **kw):
        kw.setdefault("timeout", 30)
        return requests.get(self.url + path, **kw)


@pytest.fixture
def nginx_factory(module, tmp_path):
    started = []

    def make(workers=1, queue=16, parallel=1, http="", loc="", conf=None,
             port=None, wait_ready=True, scheme="http", verify=True,
             operator="on", internal="", server=""):
        port = port or free_port()
        prefix = tmp_path / f"ngx{len(started)}"
        if conf is None:
            conf = BASE_CONF.format(user=USER, module=module, model=MODEL,
                                    prefix=prefix,
                                    workers=workers, queue=queue,
                                    parallel=parallel, http=http, loc=loc,
                                    port=port, operator=operator,
                                    internal=internal, server=server)
        n = Nginx(prefix, conf, port, scheme)
        n.nworkers = workers
        started.append(n)
        n.start(wait_ready=wait_ready, verify=verify)
        if wait_ready and workers > 1:
            n.wait_workers_ready(workers)
        return n

    yield make

    for n in started:
        n.stop()
    for n in started:
        n.check_log()


@pytest.fixture
def nginx(nginx_factory):
    return nginx_factory()


def rewrite_example(text, module, model, ports):
    """A conf/ example with this checkout's module, the tiny model and free
    ports in place of its defaults (the way "make serve" rewrites
    conf/nginx.conf)."""
    text = re.sub(r"(?m)^load_module .*;", f"load_module {module};", text)
    text = re.sub(r"(?m)^(\s*sd_model\s+\S+\s+)\S+?(\s*(default)?;)",
                  lambda m: m.group(1) + str(model) + m.group(2), text)
    for old, new in ports.items():
        text = text.replace(f"127.0.0.1:{old}", f"127.0.0.1:{new}")
    text = re.sub(r"(?m)^error_log .*;", "error_log error.log info;", text)
    # the tests' gates (sd_test_gate), in the prefix
    text = re.sub(r"(?m)^http \{", "http {\n    sd_test_gate gates;", text,
                  count=1)
    return USER + "\n" + text


def metric(n, name):
    """The value of an unlabelled metric on /metrics, or None."""
    for line in n.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def raw_post(n, path, body, headers=None):
    """Sends a POST on its own connection and returns the socket, so that a
    test can read the answer later or close the connection (an abort)."""
    s = socket.create_connection(("127.0.0.1", n.port))
    data = json.dumps(body).encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n")
    for k, v in (headers or {}).items():
        head += f"{k}: {v}\r\n"
    s.sendall(head.encode() + b"\r\n" + data)
    return s


def read_response(s, timeout=120):
    """(status, headers, parsed JSON body) of a raw_post() answer."""
    s.settimeout(timeout)
    buf = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    s.close()
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, json.loads(body) if body else None


def until(cond, timeout=30, what="condition"):
    """cond()'s first true value, polled every 50 ms for timeout seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def wait_state(n, task, state="active", timeout=60, headers=None,
               started=True):
    """Polls /internal/progress until the task is in the given state (for
    "active", with a step done unless started=False: a job held by its
    gate before its first step)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        p = n.post("/internal/progress", {"id_task": task},
                   headers=headers).json()
        if p[state] and (state != "active" or not started
                         or (p["progress"] or 0) > 0):
            return p
        time.sleep(0.02)
    raise AssertionError(f"task {task} never {state}: {p}")
