"""Batching across requests (sd_batch): queued txt2img jobs of one size,
step count and sampler share the forward passes of the first of them, each
with its own prompt, seeds, cfg_scale, progress, interrupt and answer.

The jobs are lined up with gates (sd_test_gate), so nothing depends on the
machine's speed: a held job keeps the engine while the others queue, then
its release lets the first queued one take the rest along."""

import base64
import json
import signal
import time

import sdutil

from conftest import metric, raw_post, read_response, until, wait_state

BASE = {"width": 64, "height": 64, "steps": 3, "cfg_scale": 4.5,
        "sampler_name": "Euler"}
HOLD = {"prompt": "hold", "width": 128, "height": 128, "steps": 2,
        "cfg_scale": 1.0, "seed": 9}
MEMBERS = {
    "b1": dict(BASE, prompt="a red cube", seed=11),
    "b2": dict(BASE, prompt="a blue sphere on grass",
               negative_prompt="blurry", seed=22, cfg_scale=7.0,
               batch_size=2),
    "b3": dict(BASE, prompt="a green cone", seed=33, cfg_scale=3.0),
}


def pixels(b64):
    return sdutil.png_decode(base64.b64decode(b64))[3]


def close_to(a, b, levels=1, share=0.001):
    """Images of a shared pass against the request alone: more rows can
    change a product's summation order (test_group.c), so a few values may
    end a level apart."""
    assert len(a) == len(b)
    diff = [abs(x - y) for x, y in zip(a, b)]
    assert max(diff) <= levels
    assert sum(d > 0 for d in diff) <= share * len(a)


def line_up(n, members, lead_step=None, tenants=None):
    """'hold' keeps the engine; the members queue behind it in order (the
    first held after step lead_step once it runs, if given)."""
    tenants = tenants or {}
    n.gate("hold")
    socks = {"hold": raw_post(n, "/sdapi/v1/txt2img",
                              dict(HOLD, force_task_id="hold"),
                              tenant(tenants, "hold"))}
    wait_state(n, "hold", started=False, headers=tenant(tenants, "hold"))
    for i, (task, body) in enumerate(members.items()):
        if i == 0 and lead_step is not None:
            n.gate(task, step=lead_step)
        socks[task] = raw_post(n, "/sdapi/v1/txt2img",
                               dict(body, force_task_id=task),
                               tenant(tenants, task))
        wait_state(n, task, "queued", headers=tenant(tenants, task))
    return socks


def tenant(tenants, task):
    return {"X-Tenant": tenants[task]} if task in tenants else None


def wait_log(n, text, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if text in n.logs():
            return
        time.sleep(0.02)
    raise AssertionError(f"not logged: {text}")


def test_batched_jobs_answer_as_alone(nginx_factory):
    n = nginx_factory(http="sd_batch 8;")
    other = dict(BASE, prompt="another size", seed=44, width=128)
    socks = line_up(n, dict(MEMBERS, c=other))
    n.release("hold")
    answers = {t: read_response(s) for t, s in socks.items()}
    assert all(a[0] == 200 for a in answers.values()), {
        t: a[0] for t, a in answers.items()}
    log = n.logs()
    assert 'sd task "b1" shares its forward passes with 2 more' in log
    assert 'sd task "c" shares' not in log
    assert metric(n, "sd_jobs_batched_total") == 3
    assert metric(n, "sd_images_generated_total") == 1 + 4 + 1

    # each one alone, now that nothing waits with it
    for task, body in MEMBERS.items():
        got = answers[task][2]
        alone = n.post("/sdapi/v1/txt2img", body).json()
        assert len(got["images"]) == len(alone["images"]) == \
            body.get("batch_size", 1)
        assert json_info(got) == json_info(alone)
        for g, a in zip(got["images"], alone["images"]):
            close_to(pixels(g), pixels(a))
    assert metric(n, "sd_jobs_batched_total") == 3


def json_info(answer):
    info = json.loads(answer["info"])
    return info["infotexts"], info["all_seeds"], info["all_prompts"]


def test_batch_limit_and_off(nginx_factory):
    # sd_batch 3: b1 (1 image) + b2 (2 images) fill it; b3 runs after
    n = nginx_factory(http="sd_batch 3;")
    socks = line_up(n, MEMBERS)
    n.release("hold")
    assert all(read_response(s)[0] == 200 for s in socks.values())
    assert 'sd task "b1" shares its forward passes with 1 more' in n.logs()
    assert metric(n, "sd_jobs_batched_total") == 2

    # the default (sd_batch 1): every job alone
    m = nginx_factory()
    socks = line_up(m, MEMBERS)
    m.release("hold")
    assert all(read_response(s)[0] == 200 for s in socks.values())
    assert "shares its forward passes" not in m.logs()
    assert metric(m, "sd_jobs_batched_total") == 0


def test_batch_member_interrupt_and_abort(nginx_factory):
    # b1 leads, held after its first step with b2 and b3 in its passes;
    # tenant "b" interrupts (only b2 is theirs), b3's client goes away
    n = nginx_factory(http="sd_batch 8;", loc="sd_tenant $http_x_tenant;",
                      operator="off", internal="sd_tenant $http_x_tenant;")
    members = {t: dict(b, steps=4) for t, b in MEMBERS.items()}
    tenants = {"hold": "a", "b1": "a", "b2": "b", "b3": "c"}
    socks = line_up(n, members, lead_step=1, tenants=tenants)
    n.release("hold")
    assert read_response(socks["hold"])[0] == 200
    wait_state(n, "b1", headers=tenant(tenants, "b1"))
    for t in ("b2", "b3"):
        wait_state(n, t, started=False, headers=tenant(tenants, t))
    assert n.post("/sdapi/v1/interrupt", {},
                  headers=tenant(tenants, "b2")).status_code == 200
    socks["b3"].close()
    wait_log(n, 'sd task "b3": the client went away, stopping it')
    n.release("b1")

    s1, _, a1 = read_response(socks["b1"])
    s2, _, a2 = read_response(socks["b2"])
    assert s1 == 200 and s2 == 200
    assert len(a2["images"]) == 2
    wait_log(n, 'sd task "b3" cancelled: the client went away')
    log = n.logs()
    assert 'sd task "b2" interrupted' in log
    assert 'sd task "b1" interrupted' not in log
    assert metric(n, "sd_jobs_cancelled_total") == 1
    assert metric(n, "sd_jobs_batched_total") == 3

    # b1 ran all its steps: as alone
    alone = n.post("/sdapi/v1/txt2img", members["b1"],
                   headers=tenant(tenants, "b1")).json()
    close_to(pixels(a1["images"][0]), pixels(alone["images"][0]))

    # b2 kept its estimate after step 1: as alone, interrupted there
    n.gate("b2x", step=1)
    sock = raw_post(n, "/sdapi/v1/txt2img",
                    dict(members["b2"], force_task_id="b2x"),
                    tenant(tenants, "b2"))
    wait_state(n, "b2x", headers=tenant(tenants, "b2"))
    n.post("/sdapi/v1/interrupt", {}, headers=tenant(tenants, "b2"))
    n.release("b2x")
    st, _, alone = read_response(sock)
    assert st == 200
    for g, a in zip(a2["images"], alone["images"]):
        close_to(pixels(g), pixels(a))
    full = n.post("/sdapi/v1/txt2img", members["b2"],
                  headers=tenant(tenants, "b2")).json()
    assert pixels(a2["images"][0]) != pixels(full["images"][0])


def test_batch_directive_checked(module, tmp_path):
    from conftest import nginx_t
    r = nginx_t(module, tmp_path, "zero", http="sd_batch 0;")
    assert r.returncode != 0
    assert '"sd_batch" must be between 1 and 64' in r.stderr
    r = nginx_t(module, tmp_path, "big", http="sd_batch 65;")
    assert r.returncode != 0
    r = nginx_t(module, tmp_path, "ok", http="sd_batch 64;")
    assert r.returncode == 0, r.stderr


def held_batch(n):
    """b1 leads b2 and b3, held after its first step."""
    socks = line_up(n, MEMBERS, lead_step=1)
    n.release("hold")
    assert read_response(socks.pop("hold"))[0] == 200
    wait_state(n, "b1")
    for t in ("b2", "b3"):
        wait_state(n, t, started=False)
    return socks


def test_batch_quit_finishes(nginx_factory):
    n = nginx_factory(http="sd_batch 8;")
    socks = held_batch(n)
    n.proc.send_signal(signal.SIGQUIT)
    time.sleep(0.5)
    assert n.proc.poll() is None            # waits for the whole batch
    n.release("b1")
    for t, s in socks.items():
        status, _, body = read_response(s)
        assert status == 200, t
        assert len(body["images"]) == MEMBERS[t].get("batch_size", 1)
    n.proc.wait(30)


def test_batch_sigterm_answers_every_member(nginx_factory):
    n = nginx_factory(http="sd_batch 8;")
    socks = held_batch(n)                   # b1 never released
    n.proc.send_signal(signal.SIGTERM)
    for t, s in socks.items():
        status, headers, body = read_response(s, timeout=20)
        assert status == 503, t
        assert body == {"detail": "shutting down"}
        assert int(headers["retry-after"]) > 0
    n.proc.wait(30)


def test_batch_leaves_no_ghosts(nginx_factory):
    n = nginx_factory(http="sd_batch 8;")
    socks = held_batch(n)
    running = [line for line in n.get("/metrics").text.splitlines()
               if line.startswith("sd_jobs_running{")]
    assert running and float(running[0].split()[-1]) == 3
    n.release("b1")
    assert all(read_response(s)[0] == 200 for s in socks.values())
    assert n.get("/internal/pending-tasks").json() == {"size": 0,
                                                       "tasks": []}
    assert n.get("/sdapi/v1/progress").json()["state"]["job"] == ""
    m = n.get("/metrics").text
    for name in ("sd_jobs_running{", "sd_queue_depth{"):
        assert all(float(line.split()[-1]) == 0 for line in m.splitlines()
                   if line.startswith(name)), m


def test_device_fault_in_a_batch(nginx_factory):
    """A GPU fault met by a shared pass (sd_test_gate's device-fault file,
    taken by the batch's thread): every member answers 503 with
    Retry-After, the worker is replaced, the next request answers."""
    n = nginx_factory(http="sd_batch 8;")
    n.expected.append(r"the GPU failed \(task \"b1\": the device failed "
                      r"earlier in this process \(injected device fault")
    (pid,) = n.workers()
    n.gate("hold", step=1)              # past its own look at the switch
    hold = raw_post(n, "/sdapi/v1/txt2img", dict(HOLD, force_task_id="hold"))
    wait_state(n, "hold")
    socks = {}
    for task, body in MEMBERS.items():
        socks[task] = raw_post(n, "/sdapi/v1/txt2img",
                               dict(body, force_task_id=task))
        wait_state(n, task, "queued")
    (n.prefix / "gates" / "device-fault").write_text("")
    n.release("hold")
    assert read_response(hold)[0] == 200
    for task, s in socks.items():
        status, headers, body = read_response(s)
        assert status == 503, (task, body)
        assert body == {"detail": "GPU failure: the worker restarts"}
        assert "retry-after" in headers
    assert not (n.prefix / "gates" / "device-fault").exists()
    until(lambda: n.workers() and pid not in n.workers()
          and n.get("/internal/ping").json()["status"] == "ready",
          timeout=60, what="a new worker")
    r = n.post("/sdapi/v1/txt2img", dict(MEMBERS["b1"]))
    assert r.status_code == 200, r.text
    assert metric(n, "sd_device_failures_total") == 1
