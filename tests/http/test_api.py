"""Every endpoint besides txt2img: shapes as A1111 answers them."""

import base64
import json
import time

from conftest import FAST


def test_ping(nginx):
    r = nginx.get("/internal/ping")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    assert r.json() == {"status": "ready"}


def test_sd_models(nginx):
    r = nginx.get("/sdapi/v1/sd-models")
    assert r.status_code == 200
    models = r.json()
    assert len(models) == 1
    m = models[0]
    assert set(m) == {"title", "model_name", "hash", "sha256", "filename",
                      "config"}
    assert m["model_name"] == "tiny"
    assert len(m["hash"]) == 10
    # the engine's hash is no sha256 of a file: null, as A1111 answers
    # for a checkpoint whose sha256 it has not computed
    assert m["sha256"] is None
    assert m["title"] == f"tiny [{m['hash']}]"
    assert m["filename"].endswith("tiny-sd35-large")
    assert nginx.post("/sdapi/v1/refresh-checkpoints").status_code == 200
    assert nginx.get("/sdapi/v1/sd-models").json() == models


def test_samplers_and_schedulers(nginx):
    # what the engine serves (sd_sampler_names(), its aliases, ...), in
    # A1111's shapes
    samplers = nginx.get("/sdapi/v1/samplers").json()
    assert [s["name"] for s in samplers] == [
        "Euler", "Euler a", "Heun", "DPM++ 2M", "DPM++ 2M SDE",
        "DPM++ 3M SDE", "DDIM", "UniPC", "LCM"]
    assert all(set(s) == {"name", "aliases", "options"} for s in samplers)
    assert any(s["aliases"] for s in samplers)
    schedulers = nginx.get("/sdapi/v1/schedulers").json()
    assert schedulers[0] == {"name": "automatic", "label": "Automatic",
                             "aliases": None, "default_rho": -1,
                             "need_inner_model": False}
    assert [(s["name"], s["label"]) for s in schedulers[1:]] == [
        ("uniform", "Uniform"), ("karras", "Karras"),
        ("exponential", "Exponential"), ("sgm_uniform", "SGM Uniform"),
        ("kl_optimal", "KL Optimal"), ("simple", "Simple"),
        ("normal", "Normal"), ("ddim", "DDIM"), ("beta", "Beta")]

    # each one listed is accepted, by its name in any case and by label
    for i, s in enumerate(samplers):
        sched = ("automatic", "Automatic", "")[i % 3]
        r = nginx.post("/sdapi/v1/txt2img", dict(
            FAST, steps=1, sampler_name=s["name"].upper(),
            scheduler=sched))
        assert r.status_code == 200, r.text
        info = json.loads(r.json()["info"])
        assert info["sampler_name"] == s["name"]
        assert f"Sampler: {s['name']}," in info["infotexts"][0]


def test_options(nginx):
    o = nginx.get("/sdapi/v1/options").json()
    assert o["sd_model_checkpoint"].startswith("tiny")
    assert o["randn_source"] == "GPU"
    assert o["samples_format"] == "png"

    r = nginx.post("/sdapi/v1/options", {"randn_source": "CPU",
                                         "unknown_option": 1})
    assert r.status_code == 200
    assert r.json() is None
    assert nginx.get("/sdapi/v1/options").json()["randn_source"] == "CPU"

    r = nginx.post("/sdapi/v1/options", {"sd_model_checkpoint": "tiny"})
    assert r.status_code == 200

    # an unknown or malformed model is the client's fault: 422 naming it
    for bad in ("nope", 5, ["tiny"], {"a": 1}):
        r = nginx.post("/sdapi/v1/options", {"sd_model_checkpoint": bad})
        assert r.status_code == 422, bad
        assert r.json()["detail"][0]["loc"] == ["body",
                                                "sd_model_checkpoint"]
    assert nginx.get("/sdapi/v1/options").json()[
        "sd_model_checkpoint"].startswith("tiny")

    r = nginx.post("/sdapi/v1/options", {"randn_source": "NV"})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "randn_source"]


def test_memory(nginx):
    m = nginx.get("/sdapi/v1/memory").json()
    assert m["ram"]["total"] > 0
    assert m["cuda"] == {"error": "unavailable"}
    assert any(v > 0 for v in m["engine"].values())


def test_png_info(nginx):
    r = nginx.post("/sdapi/v1/txt2img", FAST)
    assert r.status_code == 200
    image = r.json()["images"][0]

    for prefix in ("", "data:image/png;base64,"):
        info = nginx.post("/sdapi/v1/png-info", {"image": prefix + image})
        assert info.status_code == 200
        body = info.json()
        assert body["info"].startswith("a red cube\n")
        assert "Steps: 2" in body["info"]
        p = body["parameters"]
        assert p["Prompt"] == "a red cube"
        assert p["Steps"] == "2"
        assert p["Seed"] == "1"
        assert p["Size-1"] == "64" and p["Size-2"] == "64"
        assert body["items"] == {}

    r = nginx.post("/sdapi/v1/png-info",
                   {"image": base64.b64encode(b"not a png").decode()})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "image"]

    r = nginx.post("/sdapi/v1/png-info", {})
    assert r.status_code == 422

    assert nginx.post("/sdapi/v1/png-info", {"image": ""}).json()["info"] \
        == ""


def test_checkpoint_endpoints(nginx):
    assert nginx.post("/sdapi/v1/refresh-checkpoints").status_code == 200

    r = nginx.post("/sdapi/v1/unload-checkpoint")
    assert r.status_code == 200 and r.json() == {}
    # a txt2img after an unload waits for the model to load again
    r = nginx.post("/sdapi/v1/txt2img", FAST)
    assert r.status_code == 200, r.text
    assert len(r.json()["images"]) == 1

    r = nginx.post("/sdapi/v1/unload-checkpoint")
    assert r.status_code == 200
    for _ in range(200):
        if nginx.get("/internal/ping").json()["status"] == "unloaded":
            break
        time.sleep(0.05)
    assert nginx.get("/internal/ping").json()["status"] == "unloaded"
    m = nginx.get("/metrics").text
    assert 'sd_engine_memory_bytes{worker="0"} 0' in m

    r = nginx.post("/sdapi/v1/reload-checkpoint")
    assert r.status_code == 200 and r.json() == {}
    for _ in range(400):
        if nginx.get("/internal/ping").json()["status"] == "ready":
            break
        time.sleep(0.05)
    assert nginx.get("/internal/ping").json()["status"] == "ready"
    assert nginx.post("/sdapi/v1/txt2img", FAST).status_code == 200


def test_progress_idle(nginx):
    p = nginx.get("/sdapi/v1/progress").json()
    assert p["progress"] == 0
    assert p["eta_relative"] == 0
    assert p["current_image"] is None
    assert set(p["state"]) >= {"skipped", "interrupted", "job", "job_count",
                               "job_timestamp", "job_no", "sampling_step",
                               "sampling_steps"}


def test_internal_progress_and_pending(nginx):
    r = nginx.post("/internal/progress", {"id_task": "task(nope)"})
    assert r.status_code == 200
    body = r.json()
    assert body["active"] is False and body["queued"] is False
    assert body["completed"] is False
    assert body["textinfo"] == "Waiting..."

    r = nginx.post("/sdapi/v1/txt2img", dict(FAST, force_task_id="t-done"))
    assert r.status_code == 200
    assert r.headers["X-Task-Id"] == "t-done"
    body = nginx.post("/internal/progress", {"id_task": "t-done"}).json()
    assert body["completed"] is True and body["active"] is False

    p = nginx.get("/internal/pending-tasks").json()
    assert p == {"size": 0, "tasks": []}


def test_not_found_and_method(nginx):
    r = nginx.get("/sdapi/v1/nothing-here")
    assert r.status_code == 404
    assert r.json() == {"detail": "Not Found"}

    r = nginx.get("/sdapi/v1/txt2img")
    assert r.status_code == 405
    assert r.json() == {"detail": "Method Not Allowed"}
    assert r.headers["Allow"] == "POST"
    assert r.headers["X-Task-Id"]

    r = nginx.post("/sdapi/v1/sd-models")
    assert r.status_code == 405


def test_metrics(nginx):
    assert nginx.post("/sdapi/v1/txt2img", FAST).status_code == 200
    nginx.get("/sdapi/v1/nothing-here")
    nginx.post("/sdapi/v1/txt2img", dict(FAST, width=65))
    m = nginx.get("/metrics")
    assert m.status_code == 200
    assert m.headers["Content-Type"].startswith("text/plain")
    text = m.text
    assert 'sd_requests_total{route="txt2img",code="200"} 1' in text
    assert 'sd_requests_total{route="txt2img",code="422"} 1' in text
    assert 'sd_requests_total{route="other",code="404"} 1' in text
    assert "sd_images_generated_total 1" in text
    assert 'sd_queue_depth{worker="0"} 0' in text
    assert 'sd_jobs_running{worker="0"} 0' in text
    assert 'sd_step_seconds_bucket{le="+Inf"} 2' in text
    assert 'sd_request_seconds_count 1' in text
    assert 'sd_tenant_requests_total{tenant="-"} 2' in text
    assert 'sd_tenant_images_total{tenant="-"} 1' in text
    assert "sd_engine_memory_bytes" in text
    for line in text.splitlines():
        assert line.startswith("#") or len(line.split(" ")) == 2, line
    json.dumps(text)
