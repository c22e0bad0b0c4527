"""The result cache in a real memcached (Debian's memcached, started here on
a free port): a fixed-seed request answered again from the cache with the
same bytes and without the engine, tenants kept apart, seed -1 never
cached, memcached stopped mid-run."""

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import time

import pytest

from conftest import FAST, free_port

MEMCACHED = shutil.which("memcached") or "/usr/bin/memcached"
TENANT = "sd_tenant $http_x_tenant;"


class Memcached:
    def __init__(self):
        self.port = free_port()
        args = [MEMCACHED, "-l", "127.0.0.1", "-p", str(self.port),
                "-U", "0", "-m", "64", "-I", "2m"]
        if os.geteuid() == 0:
            args += ["-u", "root"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 1).close()
                return
            except OSError:
                assert self.proc.poll() is None, "memcached exited"
                time.sleep(0.05)
        raise AssertionError("memcached did not start")

    def stats(self):
        with socket.create_connection(("127.0.0.1", self.port), 5) as s:
            s.sendall(b"stats\r\n")
            buf = b""
            while not buf.endswith(b"END\r\n"):
                buf += s.recv(65536)
        return {k.decode(): int(v) for k, v in re.findall(
            rb"STAT (\w+) (\d+)\r\n", buf)}

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def memcached():
    if not os.path.exists(MEMCACHED):
        pytest.skip("memcached is not installed (make deps)")
    m = Memcached()
    yield m
    m.stop()


def cached_server(nginx_factory, mc, extra=""):
    return nginx_factory(
        http=f"sd_cache_memcached 127.0.0.1:{mc.port}; sd_cache_ttl 60s; "
             f"sd_cache_timeout 5s; {extra}",
        loc=TENANT)


def metric(n, name):
    text = n.get("/metrics").text
    m = re.search(rf"(?m)^{name} (\d+)$", text)
    return int(m.group(1)) if m else 0


def steps_run(n):
    return metric(n, "sd_step_seconds_count")


def test_hit_same_bytes_fresh_task(nginx_factory, memcached):
    n = cached_server(nginx_factory, memcached)
    body = dict(FAST, prompt="a cached cube", seed=7, batch_size=2)

    r1 = n.post("/sdapi/v1/txt2img", body, headers={"X-Tenant": "a"})
    assert r1.status_code == 200, r1.text
    assert r1.headers["X-Cache"] == "MISS"
    steps = steps_run(n)
    assert steps >= 2

    # the store follows the answer: wait until memcached holds it
    deadline = time.time() + 30
    while memcached.stats()["curr_items"] < 1 and time.time() < deadline:
        time.sleep(0.05)
    assert memcached.stats()["curr_items"] == 1

    r2 = n.post("/sdapi/v1/txt2img", body, headers={"X-Tenant": "a"})
    assert r2.status_code == 200, r2.text
    assert r2.headers["X-Cache"] == "HIT"
    assert r2.headers["X-Task-Id"] != r1.headers["X-Task-Id"]
    a, b = r1.json(), r2.json()
    assert len(a["images"]) == 2
    assert [base64.b64decode(x) for x in a["images"]] == \
        [base64.b64decode(x) for x in b["images"]]
    ia, ib = json.loads(a["info"]), json.loads(b["info"])
    assert ia["infotexts"] == ib["infotexts"]
    assert ia["all_seeds"] == ib["all_seeds"] == [7, 8]
    assert a["parameters"] == b["parameters"]
    # the engine was not touched: no sampling step ran for the hit
    assert steps_run(n) == steps
    assert metric(n, "sd_cache_hits_total") == 1
    assert metric(n, "sd_cache_misses_total") == 1
    assert metric(n, "sd_cache_stores_total") == 1

    # a field that changes the pixels is another entry
    r3 = n.post("/sdapi/v1/txt2img", dict(body, cfg_scale=2.0),
                headers={"X-Tenant": "a"})
    assert r3.status_code == 200 and r3.headers["X-Cache"] == "MISS"


def test_tenants_and_random_seeds_not_shared(nginx_factory, memcached):
    n = cached_server(nginx_factory, memcached)
    body = dict(FAST, prompt="a tenant's cube", seed=11)

    r = n.post("/sdapi/v1/txt2img", body, headers={"X-Tenant": "a"})
    assert r.headers["X-Cache"] == "MISS"
    deadline = time.time() + 30
    while memcached.stats()["curr_items"] < 1 and time.time() < deadline:
        time.sleep(0.05)

    # the same request from another tenant is its own entry
    r = n.post("/sdapi/v1/txt2img", body, headers={"X-Tenant": "b"})
    assert r.status_code == 200 and r.headers["X-Cache"] == "MISS"
    r = n.post("/sdapi/v1/txt2img", body, headers={"X-Tenant": "a"})
    assert r.status_code == 200 and r.headers["X-Cache"] == "HIT"

    # seed -1 is never looked up nor stored
    items = None
    deadline = time.time() + 30
    while time.time() < deadline:
        items = memcached.stats()["curr_items"]
        if items == 2:
            break
        time.sleep(0.05)
    assert items == 2
    for _ in range(2):
        r = n.post("/sdapi/v1/txt2img", dict(body, seed=-1),
                   headers={"X-Tenant": "a"})
        assert r.status_code == 200 and r.headers["X-Cache"] == "MISS"
    assert memcached.stats()["cmd_set"] == 2


def test_memcached_down(nginx_factory, memcached):
    n = cached_server(nginx_factory, memcached)
    body = dict(FAST, prompt="memcached goes away", seed=5)
    r = n.post("/sdapi/v1/txt2img", body)
    assert r.status_code == 200 and r.headers["X-Cache"] == "MISS"

    memcached.stop()
    for seed in (5, 6, 7):
        r = n.post("/sdapi/v1/txt2img", dict(body, seed=seed))
        assert r.status_code == 200, r.text
        assert r.headers["X-Cache"] == "MISS"
        assert len(r.json()["images"]) == 1
    assert metric(n, "sd_cache_errors_total") >= 3
    # logged once per interval (10 s), not once per request
    lines = re.findall(r"sd cache: memcached at .*", n.logs())
    assert 1 <= len(lines) <= 2, lines


def test_entry_size_limit(nginx_factory, memcached):
    n = cached_server(nginx_factory, memcached, "sd_cache_max_entry 1k;")
    body = dict(FAST, prompt="too large to keep", seed=3)
    for _ in range(2):
        r = n.post("/sdapi/v1/txt2img", body)
        assert r.status_code == 200 and r.headers["X-Cache"] == "MISS"
    assert metric(n, "sd_cache_too_large_total") == 2
    assert memcached.stats()["cmd_set"] == 0


def text_cache(n):
    text = n.get("/metrics").text
    return [int(re.search(rf'(?m)^sd_text_cache_{k}\{{worker="\d+"\}} '
                          rf'(\d+)$', text).group(1))
            for k in ("hits_total", "misses_total", "entries")]


def test_text_cache_metrics(nginx_factory):
    # the engine's prompt cache (sd_text_cache, on by default): a prompt
    # seen again is not encoded again, whatever the seed
    n = nginx_factory()
    for seed in (1, 2):
        assert n.post("/sdapi/v1/txt2img",
                      dict(FAST, seed=seed)).status_code == 200
    assert text_cache(n) == [1, 1, 1]
    # with cfg > 1 the empty negative prompt is encoded once, then kept
    for seed in (3, 4):
        assert n.post("/sdapi/v1/txt2img",
                      dict(FAST, seed=seed, cfg_scale=2.0)).status_code == 200
    assert text_cache(n) == [4, 2, 1]

    off = nginx_factory(http="sd_text_cache 0;")
    for seed in (1, 2):
        assert off.post("/sdapi/v1/txt2img",
                        dict(FAST, seed=seed)).status_code == 200
    assert text_cache(off) == [0, 0, 0]
