"""The circuit breaker: engine failures injected through the tests' switch
(sd_test_gate DIR: a file DIR/engine-fail fails every job as a backend
failure would) open it; open, txt2img answers 503 with Retry-After at once
and /internal/ping says so; after the cool-down one job goes through
(held by its gate here, so nothing depends on the machine's speed) and
its success closes the breaker, its failure opens it again."""

import re
import time

from conftest import FAST, raw_post, read_response, wait_state


def breaker_server(nginx_factory, cooldown):
    return nginx_factory(http="sd_breaker_failures 2; sd_breaker_window 1h; "
                              f"sd_breaker_cooldown {cooldown};")


def metric(n, name):
    m = re.search(rf"(?m)^{name} (\d+)$", n.get("/metrics").text)
    return int(m.group(1)) if m else 0


def wait_half_open(n):
    deadline = time.time() + 30
    while n.get("/internal/ping").json()["breaker"] != "half-open":
        assert time.time() < deadline, "the breaker never half-opened"
        time.sleep(0.01)


def fail_twice(n):
    fail = n.prefix / "gates" / "engine-fail"
    fail.write_text("")
    for _ in range(2):
        r = n.post("/sdapi/v1/txt2img", FAST)
        assert r.status_code == 500, r.text
        assert "injected engine failure" in r.text
    return fail


def test_breaker_opens(nginx_factory):
    n = breaker_server(nginx_factory, "1h")

    # client errors never count
    for _ in range(3):
        assert n.post("/sdapi/v1/txt2img",
                      dict(FAST, steps=0)).status_code == 422
    assert n.get("/internal/ping").json()["breaker"] == "closed"

    fail = fail_twice(n)
    fail.unlink()

    r = n.post("/sdapi/v1/txt2img", FAST)
    assert r.status_code == 503
    assert r.json()["detail"] == "circuit breaker open"
    assert 3500 <= int(r.headers["Retry-After"]) <= 3600

    p = n.get("/internal/ping")
    assert p.status_code == 503
    assert p.json() == {"status": "breaker open", "breaker": "open"}

    text = n.get("/metrics").text
    assert re.search(r'(?m)^sd_breaker_state\{worker="\d+"\} 1$', text)
    assert metric(n, "sd_breaker_opened_total") == 1
    assert metric(n, "sd_breaker_rejected_total") == 1
    assert metric(n, "sd_jobs_failed_total") == 2


def test_breaker_half_open_then_closes(nginx_factory):
    n = breaker_server(nginx_factory, "1ms")
    fail = fail_twice(n)
    assert metric(n, "sd_breaker_opened_total") == 1

    # cool-down over: one probe goes in (held by its gate), the rest wait
    wait_half_open(n)
    n.gate("probe1")
    s = raw_post(n, "/sdapi/v1/txt2img", dict(FAST, force_task_id="probe1"))
    wait_state(n, "probe1", started=False)
    r = n.post("/sdapi/v1/txt2img", FAST)
    assert r.status_code == 503 and "Retry-After" in r.headers
    assert n.get("/internal/ping").json()["breaker"] == "half-open"

    # the probe fails: open again
    n.release("probe1")
    status, _, body = read_response(s)
    assert status == 500, body
    assert metric(n, "sd_breaker_opened_total") == 2

    # the next probe succeeds: closed
    fail.unlink()
    wait_half_open(n)
    n.gate("probe2")
    s = raw_post(n, "/sdapi/v1/txt2img", dict(FAST, force_task_id="probe2"))
    wait_state(n, "probe2", started=False)
    assert n.post("/sdapi/v1/txt2img", FAST).status_code == 503
    n.release("probe2")
    status, _, body = read_response(s)
    assert status == 200, body
    assert n.get("/internal/ping").json() == {"status": "ready",
                                              "breaker": "closed"}
    for _ in range(2):
        assert n.post("/sdapi/v1/txt2img", FAST).status_code == 200
    text = n.get("/metrics").text
    assert re.search(r'(?m)^sd_breaker_state\{worker="\d+"\} 0$', text)
