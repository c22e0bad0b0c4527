"""Hostile requests: header injection through force_task_id, routes reached
through the wrong location, tenants reading or acting on each other's
tasks, operator-only routes, unbounded prompts, JSON that cJSON alone
would accept, seeds at the edge of 2^63."""

import base64
import json
import socket

import requests

import sdutil
from conftest import FAST, raw_post, read_response, wait_state


def detail(r):
    assert r.status_code == 422, r.text
    d = r.json()["detail"]
    assert isinstance(d, list) and len(d) == 1
    return d[0]


def raw(n, data):
    """Sends raw bytes, returns (status line, headers text, body)."""
    s = socket.create_connection(("127.0.0.1", n.port))
    s.sendall(data)
    s.settimeout(30)
    buf = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    s.close()
    head, _, body = buf.partition(b"\r\n\r\n")
    return head.decode("latin-1"), body


# 1. X-Task-Id

def test_force_task_id_header_injection(nginx):
    for bad in ("x\r\nSet-Cookie: a=1", "x\nSet-Cookie: a=1", "x\ry",
                "a b", "a\tb", "a;b", "a/b", "é", "a\u2028b", "x" * 64):
        r = nginx.post("/sdapi/v1/txt2img", dict(FAST, force_task_id=bad))
        d = detail(r)
        assert d["loc"] == ["body", "force_task_id"], bad
        assert "Set-Cookie" not in r.headers
        assert r.headers["X-Task-Id"].startswith("task(")
        assert "\r" not in r.headers["X-Task-Id"]

    # the same, byte for byte on the wire
    body = json.dumps(dict(FAST, force_task_id="a\r\nSet-Cookie: evil=1"))
    head, _ = raw(nginx, (
        "POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: x\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        + body).encode())
    assert head.startswith("HTTP/1.1 422")
    assert "evil" not in head

    # A1111's own ids, and the alphabet's other characters, still work
    for good in ("task(abc123def456ghi)", "A-Z_a.z:0(9)", "x" * 63):
        r = nginx.post("/sdapi/v1/txt2img", dict(FAST, force_task_id=good,
                                                  send_images=False))
        assert r.status_code == 200, r.text
        assert r.headers["X-Task-Id"] == good


# 4. routes answer only where they are meant to

def test_routes_only_in_their_location(nginx_factory):
    # /internal/ must not reach /sdapi/v1/ routes, nor the reverse
    n = nginx_factory(loc="sd_max_steps 3;")
    for path in ("/internal/sdapi/v1/txt2img", "/internal/x/sdapi/v1/txt2img"):
        r = n.post(path, dict(FAST, steps=4))
        assert r.status_code == 404, path
        assert r.json() == {"detail": "Not Found"}
    assert n.get("/internal/sdapi/v1/options").status_code == 404
    assert n.get("/sdapi/v1/internal/ping").status_code == 404
    assert n.post("/sdapi/v1/internal/progress",
                  {"id_task": "x"}).status_code == 404
    # where they are meant to, with the location's limit
    assert detail(n.post("/sdapi/v1/txt2img", dict(FAST, steps=4)))[
        "loc"] == ["body", "steps"]
    assert n.get("/internal/ping").status_code == 200


def test_routes_under_a_prefix(nginx_factory):
    # a tenant's own prefix works; a prefix without the family does not
    n = nginx_factory(server="location /tenant-a/sdapi/v1/ { sd_api; "
                             "sd_max_steps 2; } "
                             "location /tenant-b/ { sd_api; }")
    r = n.post("/tenant-a/sdapi/v1/txt2img", dict(FAST, steps=3))
    assert detail(r)["loc"] == ["body", "steps"]
    assert n.post("/tenant-a/sdapi/v1/txt2img", FAST).status_code == 200
    assert n.post("/tenant-b/sdapi/v1/txt2img", FAST).status_code == 404


# 5. tenants

TENANT = "sd_tenant $http_x_tenant;"


def test_tenants_isolated(nginx_factory):
    n = nginx_factory(operator="off", loc=TENANT, internal=TENANT)
    a = {"X-Tenant": "alice"}
    b = {"X-Tenant": "bob"}

    n.gate("a1", step=1)
    sa = raw_post(n, "/sdapi/v1/txt2img",
                  dict(FAST, steps=4, n_iter=2, force_task_id="a1"), a)
    p = wait_state(n, "a1", headers=a)
    assert p["active"]

    # bob sees nothing of alice's
    assert n.post("/internal/progress", {"id_task": "a1"},
                  headers=b).json()["textinfo"] == "Waiting..."
    assert n.get("/sdapi/v1/progress", headers=b).json()["state"][
        "job"] == ""
    assert n.get("/sdapi/v1/progress", headers=a).json()["state"][
        "job"] == "a1"
    n.gate("a2")
    sa2 = raw_post(n, "/sdapi/v1/txt2img", dict(FAST, force_task_id="a2"),
                   a)
    wait_state(n, "a2", "queued", headers=a)
    assert n.get("/internal/pending-tasks", headers=b).json() == {
        "size": 0, "tasks": []}
    assert n.get("/internal/pending-tasks", headers=a).json() == {
        "size": 1, "tasks": ["a2"]}

    # bob takes alice's task id: a task of his own, hers untouched
    sb = raw_post(n, "/sdapi/v1/txt2img", dict(FAST, force_task_id="a1"),
                  b)
    wait_state(n, "a1", "queued", headers=b)
    assert n.post("/internal/progress", {"id_task": "a1"},
                  headers=a).json()["active"]

    # bob's interrupt and skip do not reach alice's running job
    assert n.post("/sdapi/v1/interrupt", headers=b).json() == {}
    assert n.post("/sdapi/v1/skip", headers=b).status_code == 200
    g = n.get("/sdapi/v1/progress", headers=a).json()
    assert g["state"]["interrupted"] is False
    assert g["state"]["skipped"] is False
    n.release("a1")
    n.release("a2")
    status, _, body = read_response(sa)
    assert status == 200
    # both iterations ran in full: nobody interrupted or skipped them
    assert len(body["images"]) == 2
    assert read_response(sa2)[0] == 200
    assert read_response(sb)[0] == 200
    assert 'sd: interrupt requested, 0 jobs' in n.logs()

    # the server-wide routes are the operator's
    for path, body in (("/sdapi/v1/options", {"randn_source": "CPU"}),
                       ("/sdapi/v1/options", {"sd_model_checkpoint": "x"}),
                       ("/sdapi/v1/unload-checkpoint", None),
                       ("/sdapi/v1/reload-checkpoint", None),
                       ("/sdapi/v1/refresh-checkpoints", None)):
        r = n.post(path, body, headers=a)
        assert r.status_code == 403, path
        assert r.json() == {"detail": "Forbidden"}
    assert n.get("/sdapi/v1/options", headers=a).json()[
        "randn_source"] == "GPU"
    assert n.get("/internal/ping").json()["status"] == "ready"


def test_tenant_interrupts_its_own(nginx_factory):
    # alice's interrupt stops alice's job, not bob's
    n = nginx_factory(operator="off", loc=TENANT, internal=TENANT,
                      parallel=2)
    a = {"X-Tenant": "alice"}
    b = {"X-Tenant": "bob"}
    # ja holds the engine after a step; jb waits before its first one
    n.gate("ja", step=1)
    n.gate("jb")
    job = dict(FAST, steps=3, n_iter=2)
    sa = raw_post(n, "/sdapi/v1/txt2img", dict(job, force_task_id="ja"), a)
    sb = raw_post(n, "/sdapi/v1/txt2img", dict(job, force_task_id="jb"), b)
    wait_state(n, "ja", headers=a)
    wait_state(n, "jb", headers=b, started=False)
    assert n.post("/sdapi/v1/interrupt", headers=a).json() == {}
    n.release("ja")
    n.release("jb")
    _, _, body_a = read_response(sa)
    _, _, body_b = read_response(sb)
    assert len(body_a["images"]) == 1          # stopped after iteration 1
    assert len(body_b["images"]) == 2          # untouched


def test_long_tenant_key(nginx_factory):
    n = nginx_factory(loc=TENANT)
    r = n.post("/sdapi/v1/txt2img", FAST, headers={"X-Tenant": "t" * 64})
    assert r.status_code == 500
    assert n.post("/sdapi/v1/txt2img", FAST,
                  headers={"X-Tenant": "t" * 63}).status_code == 200


# 7. bounded answers

def test_prompt_length_limit(nginx_factory):
    n = nginx_factory(http="client_max_body_size 16m;")
    big = "x" * (4 * 1024 * 1024)
    d = detail(n.post("/sdapi/v1/txt2img", dict(FAST, prompt=big,
                                                batch_size=8, n_iter=8)))
    assert d["loc"] == ["body", "prompt"]
    assert d["type"] == "string_too_long"
    assert "65536" in d["msg"]
    d = detail(n.post("/sdapi/v1/txt2img",
                      dict(FAST, negative_prompt="x" * 65537)))
    assert d["loc"] == ["body", "negative_prompt"]

    # at the limit: accepted, and the answer stays near
    # images x (4 x prompt) + the PNGs
    r = n.post("/sdapi/v1/txt2img", dict(FAST, prompt="y" * 65536,
                                         batch_size=2, steps=1))
    assert r.status_code == 200
    assert len(r.content) < 2 * (4 * 65536 * 4 // 3) + 200000


def test_prompt_length_directive(nginx_factory):
    n = nginx_factory(loc="sd_max_prompt_length 1k;")
    assert detail(n.post("/sdapi/v1/txt2img", dict(FAST, prompt="x" * 1025)))[
        "loc"] == ["body", "prompt"]
    assert n.post("/sdapi/v1/txt2img",
                  dict(FAST, prompt="x" * 1024)).status_code == 200


# 8. seeds, JSON

def test_all_seeds_with_variation(nginx):
    r = nginx.post("/sdapi/v1/txt2img", dict(
        FAST, seed=50, subseed=7, subseed_strength=0.5, batch_size=2,
        n_iter=2))
    assert r.status_code == 200, r.text
    info = json.loads(r.json()["info"])
    # A1111: the seed stays for every image, the subseed advances
    assert info["all_seeds"] == [50, 50, 50, 50]
    assert info["all_subseeds"] == [7, 8, 9, 10]
    for k, text in enumerate(info["infotexts"]):
        assert "Seed: 50," in text
        assert f"Variation seed: {7 + k}," in text
    texts = [sdutil.png_text(base64.b64decode(i))["parameters"]
             for i in r.json()["images"]]
    assert texts == info["infotexts"]


def test_largest_seed(nginx):
    top = 2**63 - 1
    body = json.dumps(dict(FAST, seed=top, subseed=top, send_images=False))
    r = requests.post(nginx.url + "/sdapi/v1/txt2img", data=body)
    assert r.status_code == 200, r.text
    # exact on the wire, not through a double
    assert b'"seed":9223372036854775807' in r.content
    info = json.loads(r.json()["info"])
    assert info["seed"] == top and info["all_seeds"] == [top]
    assert f"Seed: {top}," in info["infotexts"][0]
    assert r.json()["parameters"]["seed"] == top

    for bad in (2**63, 2**64 - 1, 2**64, 9.3e18):
        d = detail(nginx.post("/sdapi/v1/txt2img", dict(FAST, seed=bad)))
        assert d["loc"] == ["body", "seed"], bad
        assert d["type"] == "less_than_equal"
    d = detail(nginx.post("/sdapi/v1/txt2img",
                          dict(FAST, seed=top, batch_size=2)))
    assert d["loc"] == ["body", "seed"]
    r = nginx.post("/sdapi/v1/txt2img",
                   dict(FAST, seed=top - 1, batch_size=2, send_images=False))
    assert json.loads(r.json()["info"])["all_seeds"] == [top - 1, top]


def test_json_strict(nginx):
    url = nginx.url + "/sdapi/v1/txt2img"
    good = json.dumps(FAST).encode()
    for data, off in ((good + b"garbage", len(good)),
                      (good + good, len(good)),
                      (good + b" {}", len(good) + 1),
                      (b'{"prompt": "a\x01b"}', 13),
                      (b'{"prompt": "\xff"}', 12)):
        d = detail(requests.post(url, data=data))
        assert d["type"] == "json_invalid", data
        assert d["loc"] == ["body", off], data
    # trailing white space is fine
    assert requests.post(url, data=good + b" \r\n").status_code == 200

    # a NUL inside a string is refused, not truncated
    d = detail(requests.post(url, data=b'{"prompt": "cat\\u0000dog"}'))
    assert d["type"] == "json_invalid"
    assert d["loc"] == ["body", 15]
    assert "NUL" in d["ctx"]["error"]
    # in any field, nested too
    d = detail(requests.post(url, data=b'{"styles": ["a\\u0000"]}'))
    assert d["type"] == "json_invalid"
    # the same for the other routes with a body
    d = detail(requests.post(nginx.url + "/sdapi/v1/options",
                             data=b'{"randn_source": "CPU"} x'))
    assert d["type"] == "json_invalid"
    assert nginx.get("/sdapi/v1/options").json()["randn_source"] == "GPU"

    # deep nesting is refused, the worker lives on
    d = detail(requests.post(url, data=b"[" * 100000))
    assert d["type"] == "json_invalid"
    assert nginx.post("/sdapi/v1/txt2img", FAST).status_code == 200
