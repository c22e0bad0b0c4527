"""Every example in conf/ is started here: the minimal nginx.conf, the
multi-tenant gateway (API keys, per-tenant limits, limit_req/limit_conn)
and the TLS server."""

import json
import socket
import ssl
import subprocess
import time
import warnings

import pytest
import requests

from conftest import (FAST, MODEL, ROOT, SLOW, free_port, raw_post,
                      read_response, rewrite_example, wait_state)


def example(name, module, ports):
    text = (ROOT / "conf" / name).read_text()
    return rewrite_example(text, module, MODEL, ports)


def test_minimal_conf(nginx_factory, module):
    port = free_port()
    n = nginx_factory(conf=example("nginx.conf", module, {7860: port}),
                      port=port)
    r = n.post("/sdapi/v1/txt2img", FAST)
    assert r.status_code == 200
    assert len(r.json()["images"]) == 1
    assert n.get("/metrics").status_code == 200
    r = n.post("/sdapi/v1/png-info", {"image": "x" * 20000000})
    assert r.status_code == 413
    assert r.json() == {"detail": "Request Entity Too Large"}


def gateway(nginx_factory, module):
    """conf/gateway.conf on free ports; .op is its operator server."""
    port, op = free_port(), free_port()
    n = nginx_factory(conf=example("gateway.conf", module,
                                   {7860: port, 7861: op}), port=port)
    n.op = f"http://127.0.0.1:{op}"
    n.op_port = op
    n.metrics_url = n.op + "/metrics"
    n.nworkers = 2
    n.wait_workers_ready(2)
    return n


def test_gateway_conf(nginx_factory, module):
    n = gateway(nginx_factory, module)
    alice = {"Authorization": "Bearer key-alice"}
    bob = {"Authorization": "Bearer key-bob"}

    r = n.post("/sdapi/v1/txt2img", FAST)
    assert r.status_code == 401
    assert r.json() == {"detail": "Not authenticated"}
    r = n.post("/sdapi/v1/txt2img", FAST,
               headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401

    r = n.post("/sdapi/v1/txt2img", dict(FAST, steps=30), headers=alice)
    assert r.status_code == 200
    # bob's plan allows 20 steps at most: the same map, another limit
    r = n.post("/sdapi/v1/txt2img", dict(FAST, steps=30), headers=bob)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "steps"]

    # bob's plan: 1 r/s with a burst of 2; alice is not limited by it
    codes = [n.get("/sdapi/v1/samplers", headers=bob).status_code
             for _ in range(6)]
    assert 429 in codes
    assert codes[0] == 200
    codes = [n.get("/sdapi/v1/samplers", headers=alice).status_code
             for _ in range(6)]
    assert codes == [200] * 6

    m = requests.get(n.op + "/metrics").text
    assert 'sd_tenant_requests_total{tenant="alice"} 1' in m
    assert 'sd_tenant_requests_total{tenant="bob"} 1' in m
    assert 'sd_requests_total{route="txt2img",code="401"} 2' in m


def test_tls_conf(nginx_factory, module, tmp_path):
    port, plain = free_port(), free_port()
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
         "-days", "2", "-subj", "/CN=localhost", "-addext",
         "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True)
    text = example("tls.conf", module, {7443: port, 7860: plain})
    text = text.replace("cert.pem", str(cert)).replace("key.pem", str(key))
    text = text.replace(":7443$request_uri", f":{port}$request_uri")
    n = nginx_factory(conf=text, port=port, scheme="https",
                      verify=str(cert))
    r = n.post("/sdapi/v1/txt2img", FAST, verify=str(cert))
    assert r.status_code == 200
    assert len(r.json()["images"]) == 1

    # HTTP/2, and a client that goes away over HTTP/2 cancels its job
    out = subprocess.run(
        ["curl", "-s", "--http2", "--cacert", str(cert), "-o", "/dev/null",
         "-w", "%{http_version} %{http_code}", "-d", json.dumps(FAST),
         f"https://127.0.0.1:{port}/sdapi/v1/txt2img"],
        capture_output=True, text=True)
    assert out.stdout == "2 200"
    slow = dict(SLOW, force_task_id="h2slow")
    n.gate("h2slow")
    subprocess.run(
        ["curl", "-s", "--http2", "--cacert", str(cert), "-m", "3",
         "-o", "/dev/null", "-d", json.dumps(slow),
         f"https://127.0.0.1:{port}/sdapi/v1/txt2img"])
    for _ in range(100):
        if 'sd task "h2slow" cancelled' in n.logs():
            break
        time.sleep(0.05)
    assert 'sd task "h2slow" cancelled: the client went away' in n.logs()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = requests.get(f"http://127.0.0.1:{plain}/sdapi/v1/samplers",
                         allow_redirects=False)
    assert r.status_code == 308
    assert r.headers["Location"].startswith("https://")
    assert r.headers["Location"].endswith(f":{port}/sdapi/v1/samplers")
    assert r.json() == {"detail": "Permanent Redirect"}

    # nginx's own answers, JSON on both servers
    assert_json_answers(port, tls_ca=str(cert))
    assert_json_answers(plain, expect={404: 308})


ALICE = {"Authorization": "Bearer key-alice"}
BOB = {"Authorization": "Bearer key-bob"}
CAROL = {"Authorization": "Bearer key-carol"}


def test_gateway_routes_only_where_meant(nginx_factory, module):
    # the tenant location carries the plan's limits; no other location of
    # the example reaches txt2img around them
    n = gateway(nginx_factory, module)
    for path in ("/internal/sdapi/v1/txt2img",
                 "/internal/x/sdapi/v1/txt2img",
                 "/internal/ping/sdapi/v1/txt2img", "/x/sdapi/v1/txt2img",
                 "/sd-error/sdapi/v1/txt2img"):
        r = n.post(path, dict(FAST, steps=30), headers=BOB)
        assert r.status_code in (401, 404), path
        assert r.status_code != 200 and "images" not in r.text
        assert r.headers["Content-Type"] == "application/json"
    r = n.post("/sdapi/v1/txt2img", dict(FAST, steps=30), headers=BOB)
    assert r.status_code == 422
    assert n.get("/internal/ping").json() == {"status": "ready"}


def test_gateway_keys_are_exact(nginx_factory, module):
    n = gateway(nginx_factory, module)
    for key in ("Bearer KEY-ALICE", "bearer key-alice", "BEARER key-alice",
                "Bearer key-alicex", "xBearer key-alice", "Bearer  key-alice",
                "Bearer key-Alice"):
        r = n.get("/sdapi/v1/samplers", headers={"Authorization": key})
        assert r.status_code == 401, key
        assert r.json() == {"detail": "Not authenticated"}
    assert n.get("/sdapi/v1/samplers", headers=ALICE).status_code == 200


def test_gateway_tenants_isolated(nginx_factory, module):
    n = gateway(nginx_factory, module)
    n.gate("alice-1", step=1)
    s = raw_post(n, "/sdapi/v1/txt2img",
                 dict(FAST, steps=3, n_iter=2, force_task_id="alice-1"),
                 ALICE)
    wait_state(n, "alice-1", headers=ALICE)

    # carol sees nothing of alice's, and cannot stop it
    p = n.post("/internal/progress", {"id_task": "alice-1"}, headers=CAROL)
    assert p.json()["textinfo"] == "Waiting..."
    assert n.get("/sdapi/v1/progress", headers=CAROL).json()["state"][
        "job"] == ""
    assert n.get("/internal/pending-tasks", headers=CAROL).json()[
        "size"] == 0
    assert n.post("/sdapi/v1/interrupt", headers=CAROL).status_code == 200
    assert n.post("/sdapi/v1/skip", headers=CAROL).status_code == 200
    for path, body in (("/sdapi/v1/options", {"randn_source": "CPU"}),
                       ("/sdapi/v1/unload-checkpoint", {}),
                       ("/sdapi/v1/reload-checkpoint", {}),
                       ("/sdapi/v1/refresh-checkpoints", {})):
        r = n.post(path, body, headers=CAROL)
        assert r.status_code == 403, path
        assert r.json() == {"detail": "Forbidden"}

    # carol's job under alice's id is carol's own (on either worker: queued
    # behind alice's, or held by the same gate file)
    c = raw_post(n, "/sdapi/v1/txt2img",
                 dict(FAST, steps=3, force_task_id="alice-1"), CAROL)
    for _ in range(3000):
        p = n.post("/internal/progress", {"id_task": "alice-1"},
                   headers=CAROL).json()
        if p["active"] or p["queued"]:
            break
        time.sleep(0.02)
    assert p["active"] or p["queued"]
    assert n.post("/internal/progress", {"id_task": "alice-1"},
                  headers=ALICE).json()["active"]

    # the operator sees both and may change the options
    assert requests.get(n.op + "/sdapi/v1/progress").json()["state"][
        "job"] == "alice-1"
    m = requests.get(n.op + "/metrics").text
    assert 'sd_tenant_running{tenant="alice"} 1' in m
    assert ('sd_tenant_running{tenant="carol"} 1' in m
            or 'sd_tenant_queued{tenant="carol"} 1' in m)
    assert requests.post(n.op + "/sdapi/v1/options",
                         json={"randn_source": "GPU"}).status_code == 200

    n.release("alice-1")
    status, _, body = read_response(s)
    assert status == 200 and len(body["images"]) == 2   # not interrupted
    assert read_response(c)[0] == 200
    assert n.get("/internal/ping").json()["status"] == "ready"


def raw_http(port, data, tls_ca=None):
    """(status, headers, body) of raw bytes sent to the port."""
    s = socket.create_connection(("127.0.0.1", port))
    if tls_ca:
        ctx = ssl.create_default_context(cafile=tls_ca)
        s = ctx.wrap_socket(s, server_hostname="localhost")
    s.sendall(data)
    s.settimeout(30)
    buf = b""
    while True:
        try:
            chunk = s.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            break
        if not chunk:
            break
        buf += chunk
    s.close()
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return int(lines[0].split()[1]), headers, body


# what nginx answers itself, before any module sees the request
HOSTILE = [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"TRACE / HTTP/1.1\r\nHost: x\r\n\r\n", 405),
    (b"POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: x\r\n"
     b"Transfer-Encoding: gzip\r\n\r\n", 501),
    (b"GET /no/such/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
     404),
    (b"GET /nothing.html HTTP/1.1\r\nHost: x\r\nConnection: close"
     b"\r\n\r\n", 404),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"y" * 9000 + b"\r\n\r\n",
     400),
    (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    (b"POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: x\r\n"
     b"Content-Length: 99999999999\r\n\r\n", 413),
]


def assert_json_answers(port, tls_ca=None, expect=None):
    for data, status in HOSTILE:
        got, headers, body = raw_http(port, data, tls_ca)
        want = (expect or {}).get(status, status)
        assert got == want, (data[:40], got)
        assert headers.get("content-type") == "application/json", data[:40]
        assert "detail" in json.loads(body), body


@pytest.mark.parametrize("name", ["nginx.conf", "gateway.conf"])
def test_examples_answer_json(nginx_factory, module, name):
    ports = {7860: free_port(), 7861: free_port()}
    n = nginx_factory(conf=example(name, module, ports), port=ports[7860])
    assert_json_answers(n.port)
    if name == "gateway.conf":
        assert_json_answers(ports[7861])
        # the metrics' deny, and a missing key, as JSON too
        r = requests.get(n.url + "/metrics")
        assert r.status_code == 404 and r.json() == {"detail": "Not Found"}
