"""Reloads, shutdowns and dead workers: a graceful reload or quit finishes
the running and queued jobs (bounded by sd_shutdown_timeout, then 503 with
Retry-After), SIGTERM answers 503 at once, what a dead worker leaves in
the shared zone (tasks, gauges) is reaped, and a worker whose GPU failed
answers its jobs 503 and is replaced. Jobs are held by their gate
(sd_test_gate), so nothing here depends on the machine's speed."""

import signal
import time

from conftest import FAST, raw_post, read_response, until, wait_state

JOB = dict(FAST, steps=3)


def metrics(n):
    return n.get("/metrics").text


def gauge(text, name):
    """{labels: value} of one metric."""
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            key, _, value = line.rpartition(" ")
            out[key[len(name):]] = float(value)
    return out


def no_ghosts(n):
    """Nothing queued or running anywhere, as every reader sees it."""
    assert n.get("/internal/pending-tasks").json() == {"size": 0,
                                                       "tasks": []}
    assert n.get("/sdapi/v1/progress").json()["state"]["job"] == ""
    m = metrics(n)
    assert set(gauge(m, "sd_tenant_queued").values()) <= {0.0}, m
    assert set(gauge(m, "sd_tenant_running").values()) <= {0.0}, m
    assert set(gauge(m, "sd_queue_depth").values()) <= {0.0}, m
    assert set(gauge(m, "sd_jobs_running").values()) <= {0.0}, m


def hold_two(n):
    """r1 running, held after its first step; r2 queued behind it."""
    n.gate("r1", step=1)
    s1 = raw_post(n, "/sdapi/v1/txt2img", dict(JOB, force_task_id="r1"))
    wait_state(n, "r1")
    s2 = raw_post(n, "/sdapi/v1/txt2img", dict(JOB, force_task_id="r2"))
    wait_state(n, "r2", "queued")
    return s1, s2


def test_reload_finishes_jobs(nginx_factory):
    n = nginx_factory()
    old = n.workers()
    s1, s2 = hold_two(n)

    n.reload()
    # a new worker serves; the old one keeps its jobs
    assert len(n.workers()) == 2
    assert set(old) <= set(n.workers())
    p = n.post("/internal/progress", {"id_task": "r1"}).json()
    assert p["active"]
    assert n.post("/internal/progress", {"id_task": "r2"}).json()["queued"]

    # the new worker takes new work meanwhile
    assert n.post("/sdapi/v1/txt2img", FAST).status_code == 200

    n.release("r1")
    assert read_response(s1)[0] == 200
    assert read_response(s2)[0] == 200
    until(lambda: not set(old) & set(n.workers()), what="the old worker")
    until(lambda: len(n.workers()) == 1)
    no_ghosts(n)
    assert "cancelled" not in n.logs()


def test_reloads_lose_nothing(nginx_factory):
    # jobs on one worker generation after another, none lost
    n = nginx_factory(workers=2)
    socks = []
    for i in range(4):
        n.gate(f"g{i}", step=1)
        socks.append(raw_post(n, "/sdapi/v1/txt2img",
                              dict(JOB, force_task_id=f"g{i}")))
        wait_state(n, f"g{i}")
        n.reload()
    for i in range(4):
        n.release(f"g{i}")
    assert [read_response(s)[0] for s in socks] == [200] * 4
    until(lambda: len(n.workers()) == 2, what="old workers to end")
    no_ghosts(n)


def test_quit_finishes_jobs(nginx_factory):
    n = nginx_factory()
    s1, s2 = hold_two(n)
    n.proc.send_signal(signal.SIGQUIT)
    time.sleep(0.5)
    assert n.proc.poll() is None            # waits for its jobs
    n.release("r1")
    assert read_response(s1)[0] == 200
    assert read_response(s2)[0] == 200
    n.proc.wait(30)


def test_shutdown_timeout(nginx_factory):
    n = nginx_factory(http="sd_shutdown_timeout 1s;")
    s1, s2 = hold_two(n)                     # r1 never released
    t0 = time.time()
    n.proc.send_signal(signal.SIGQUIT)
    for s in (s2, s1):
        status, headers, body = read_response(s)
        assert status == 503
        assert body == {"detail": "shutting down"}
        assert int(headers["retry-after"]) > 0
    assert time.time() - t0 < 20
    n.proc.wait(30)
    assert "sd_shutdown_timeout passed: 1 running and 1 queued" in n.logs()


def test_sigterm_answers_at_once(nginx_factory):
    n = nginx_factory()
    s1, s2 = hold_two(n)                     # r1 never released
    n.proc.send_signal(signal.SIGTERM)
    for s in (s1, s2):
        status, headers, body = read_response(s, timeout=20)
        assert status == 503
        assert body == {"detail": "shutting down"}
        assert int(headers["retry-after"]) > 0
    n.proc.wait(30)


def test_killed_worker_is_reaped(nginx_factory):
    n = nginx_factory(loc="sd_tenant $http_x_tenant;")
    s1, s2 = hold_two(n)
    m = metrics(n)
    assert gauge(m, "sd_tenant_running") == {'{tenant="-"}': 1.0}
    assert gauge(m, "sd_tenant_queued") == {'{tenant="-"}': 1.0}

    (pid,) = n.workers()
    n.kill_worker(pid)
    for s in (s1, s2):
        try:
            read_response(s, timeout=20)
        except (ConnectionError, IndexError, ValueError):
            pass

    # the respawned worker reaps what the dead one left
    until(lambda: n.workers() and n.workers() != [pid])
    until(lambda: n.get("/internal/ping").json()["status"] == "ready")
    for task in ("r1", "r2"):
        p = n.post("/internal/progress", {"id_task": task}).json()
        assert not p["active"] and not p["queued"], p
    no_ghosts(n)
    assert n.post("/sdapi/v1/txt2img", FAST).status_code == 200
    m = metrics(n)
    assert len(gauge(m, "sd_engine_ready")) == 1


def test_killed_worker_among_two(nginx_factory):
    # the worker that runs the job dies; the other one keeps its slot
    n = nginx_factory(workers=2)
    until(lambda: len(gauge(metrics(n), "sd_engine_ready")) == 2)
    n.gate("k1", step=1)
    s = raw_post(n, "/sdapi/v1/txt2img", dict(JOB, force_task_id="k1"))
    wait_state(n, "k1")
    m = metrics(n)
    (busy,) = [k for k, v in gauge(m, "sd_jobs_running").items() if v == 1]
    info = gauge(m, "sd_worker_info")
    (pid,) = [int(k.split('pid="')[1].rstrip('"}')) for k in info
              if k.startswith(busy[:-1] + ",")]
    other = [p for p in n.workers() if p != pid]

    n.kill_worker(pid)
    try:
        read_response(s, timeout=10)
    except (ConnectionError, IndexError, ValueError):
        pass
    until(lambda: len(n.workers()) == 2 and pid not in n.workers(),
          what="respawn")
    until(lambda: not n.post("/internal/progress",
                             {"id_task": "k1"}).json()["active"])
    n.release("k1")
    no_ghosts(n)
    assert set(other) <= set(n.workers())
    until(lambda: len(gauge(metrics(n), "sd_engine_ready")) == 2)
    assert len(gauge(metrics(n), "sd_worker_info")) == 2


def test_device_fault_restarts_worker(nginx_factory):
    """A GPU fault (SD_ERR_DEVICE: the process's CUDA context is gone until
    it ends), injected through the tests' switch (a file
    sd_test_gate/device-fault: the next job meets one; the file is taken
    away): the job answers 503 with Retry-After, so does the job queued
    behind it (never run), the worker logs it at crit and exits, and the
    master's new worker answers."""
    n = nginx_factory()
    n.expected.append(r"the GPU failed \(task \"f1\": the device failed "
                      r"earlier in this process \(injected device fault")
    (pid,) = n.workers()
    n.gate("f1")
    s1 = raw_post(n, "/sdapi/v1/txt2img", dict(JOB, force_task_id="f1"))
    wait_state(n, "f1", started=False)
    s2 = raw_post(n, "/sdapi/v1/txt2img", dict(JOB, force_task_id="f2"))
    wait_state(n, "f2", "queued")
    fault = n.prefix / "gates" / "device-fault"
    fault.write_text("")
    n.release("f1")

    status, headers, body = read_response(s1, timeout=30)
    assert status == 503, body
    assert body == {"detail": "GPU failure: the worker restarts"}
    assert int(headers["retry-after"]) > 0
    status, headers, body = read_response(s2, timeout=30)
    assert status == 503, body
    assert body["detail"] == "shutting down" and "retry-after" in headers
    assert not fault.exists()

    # the master starts another worker; its engine loads on a new context
    until(lambda: n.workers() and pid not in n.workers(), what="respawn")
    until(lambda: n.get("/internal/ping").json()["status"] == "ready",
          what="the new worker's engine")
    r = n.post("/sdapi/v1/txt2img", JOB)
    assert r.status_code == 200, r.text
    m = metrics(n)
    assert gauge(m, "sd_device_failures_total") == {"": 1.0}
    assert len(gauge(m, "sd_engine_ready")) == 1
    no_ghosts(n)
    logs = n.logs()
    assert f"worker process {pid} exited with code 0" in logs
    assert "sd task \"f1\" failed: the GPU failed: the device failed " \
           "earlier in this process (injected device fault" in logs
