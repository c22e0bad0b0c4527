"""Every example in conf/ is started here: the minimal nginx.conf, the
multi-tenant gateway (API keys, per-tenant limits, limit_req/limit_conn)
and the TLS server."""

import json
import subprocess
import time
import warnings

import requests

from conftest import FAST, MODEL, ROOT, SLOW, free_port, rewrite_example


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


def test_gateway_conf(nginx_factory, module):
    port = free_port()
    n = nginx_factory(conf=example("gateway.conf", module, {7860: port}),
                      port=port)
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

    m = n.get("/metrics").text
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
