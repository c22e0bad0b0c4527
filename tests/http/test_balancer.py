"""conf/balancer.conf: a plain nginx in front of two sd servers, with
max_fails/fail_timeout and proxy_next_upstream for 503: every request
succeeds while one server is stopped, and while one answers 503 because
its circuit breaker is open."""

import re

import requests

from conftest import FAST, ROOT, USER, Nginx, free_port


def balancer(tmp_path, ports, port):
    text = (ROOT / "conf" / "balancer.conf").read_text()
    text = text.replace("127.0.0.1:7870", f"127.0.0.1:{ports[0]}")
    text = text.replace("127.0.0.1:7871", f"127.0.0.1:{ports[1]}")
    text = text.replace("127.0.0.1:7860", f"127.0.0.1:{port}")
    text = re.sub(r"(?m)^error_log .*;", "error_log error.log info;", text)
    b = Nginx(tmp_path / "balancer", USER + "\n" + text, port)
    b.start()       # ready: /internal/ping through it answers "ready"
    return b


def served(n):
    text = requests.get(n.metrics_url, timeout=30).text
    m = re.search(r'(?m)^sd_requests_total\{route="txt2img",code="200"\} '
                  r'(\d+)$', text)
    return int(m.group(1)) if m else 0


KEYS = [f"Bearer key-{i}" for i in range(4)]


def test_one_server_stopped(nginx_factory, tmp_path):
    a = nginx_factory()
    b = nginx_factory()
    lb = balancer(tmp_path, (a.port, b.port), free_port())
    try:
        for key in KEYS:
            r = lb.post("/sdapi/v1/txt2img", FAST,
                        headers={"Authorization": key})
            assert r.status_code == 200, r.text
        assert served(a) + served(b) == len(KEYS)

        before = served(a)
        b.stop()
        for key in KEYS:
            r = lb.post("/sdapi/v1/txt2img", FAST,
                        headers={"Authorization": key})
            assert r.status_code == 200, r.text
        assert served(a) - before == len(KEYS)
    finally:
        lb.stop()
    lb.check_log()


def test_breaker_open_server_skipped(nginx_factory, tmp_path):
    a = nginx_factory(http="sd_breaker_failures 1; sd_breaker_cooldown 1h;")
    b = nginx_factory()
    fail = a.prefix / "gates" / "engine-fail"
    fail.write_text("")
    assert a.post("/sdapi/v1/txt2img", FAST).status_code == 500
    fail.unlink()
    assert a.post("/sdapi/v1/txt2img", FAST).status_code == 503

    lb = balancer(tmp_path, (a.port, b.port), free_port())
    try:
        for key in KEYS:
            r = lb.post("/sdapi/v1/txt2img", FAST,
                        headers={"Authorization": key})
            assert r.status_code == 200, r.text
        # every image came from b; a answered nothing but 503s
        assert served(b) == len(KEYS)
        assert served(a) == 0
    finally:
        lb.stop()
    lb.check_log()
