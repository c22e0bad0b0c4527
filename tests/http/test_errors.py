"""Bad input answers as A1111 (FastAPI) does: 422 naming the field, 404,
405, 413, and fields this server cannot honour refused, not dropped."""

import json
import time

import pytest
import requests

from conftest import FAST, SLOW, raw_post, read_response, wait_state


def detail(r):
    assert r.status_code == 422, r.text
    d = r.json()["detail"]
    assert isinstance(d, list) and len(d) == 1
    assert set(d[0]) >= {"loc", "msg", "type"}
    return d[0]


@pytest.mark.parametrize("field,value,type_", [
    ("width", 65, "multiple_of"),
    ("height", 100, "multiple_of"),
    ("width", 0, "greater_than_equal"),
    ("steps", 0, "greater_than_equal"),
    ("steps", 151, "less_than_equal"),
    ("steps", "many", "int_parsing"),
    ("steps", 2.5, "int_from_float"),
    ("cfg_scale", "x", "float_parsing"),
    ("cfg_scale", [1], "float_type"),
    ("prompt", 5, "string_type"),
    ("batch_size", 9, "less_than_equal"),
    ("n_iter", 0, "greater_than_equal"),
    ("send_images", "maybe", "bool_type"),
    ("subseed_strength", 2, "less_than_equal"),
    ("styles", "a", "list_type"),
])
def test_invalid_values(nginx, field, value, type_):
    r = nginx.post("/sdapi/v1/txt2img", dict(FAST, **{field: value}))
    d = detail(r)
    assert d["loc"] == ["body", field]
    assert d["type"] == type_
    assert r.headers["X-Task-Id"]


@pytest.mark.parametrize("field,value", [
    ("restore_faces", True),
    ("tiling", True),
    ("script_name", "x/y/z plot"),
    ("alwayson_scripts", {"controlnet": {"args": []}}),
    ("refiner_checkpoint", "other"),
    ("s_churn", 0.5),
    ("seed_resize_from_w", 512),
    ("infotext", "Steps: 20"),
])
def test_unsupported_fields(nginx, field, value):
    d = detail(nginx.post("/sdapi/v1/txt2img", dict(FAST, **{field: value})))
    assert d["loc"] == ["body", field]
    assert d["type"] == "value_error"
    assert "not supported" in d["msg"]


def test_unsupported_defaults_accepted(nginx):
    body = dict(FAST, enable_hr=False, restore_faces=None, script_name=None,
                alwayson_scripts={}, script_args=[], s_churn=0,
                refiner_checkpoint="", seed_resize_from_w=-1,
                hr_upscaler="Latent", eta=None, do_not_save_grid=True)
    assert nginx.post("/sdapi/v1/txt2img", body).status_code == 200


def test_override_settings(nginx):
    d = detail(nginx.post("/sdapi/v1/txt2img", dict(
        FAST, override_settings={"randn_source": "NV"})))
    assert d["loc"] == ["body", "override_settings"]
    d = detail(nginx.post("/sdapi/v1/txt2img", dict(
        FAST, override_settings={"sd_model_checkpoint": "missing"})))
    assert d["loc"] == ["body", "override_settings"]
    r = nginx.post("/sdapi/v1/txt2img", dict(
        FAST, override_settings={"sd_model_checkpoint": "tiny",
                                 "CLIP_stop_at_last_layers": 1}))
    assert r.status_code == 200


def test_malformed_json(nginx):
    r = requests.post(nginx.url + "/sdapi/v1/txt2img",
                      data=b'{"prompt": "x", "steps": }',
                      headers={"Content-Type": "application/json"})
    d = detail(r)
    assert d["type"] == "json_invalid"
    assert d["loc"][0] == "body" and d["loc"][1] == 25

    d = detail(requests.post(nginx.url + "/sdapi/v1/txt2img", data=b"[1]"))
    assert d["loc"] == ["body"]
    d = detail(requests.post(nginx.url + "/sdapi/v1/txt2img", data=b""))
    assert d["type"] == "missing"


def test_unknown_sampler_falls_back(nginx):
    # A1111 1.10 refuses no sampler or scheduler name: an unknown one runs
    # its samplers[0] and "Automatic", and the infotext says so
    r = nginx.post("/sdapi/v1/txt2img", dict(FAST, sampler_name="Nope++",
                                             scheduler="Nope"))
    assert r.status_code == 200, r.text
    info = json.loads(r.json()["info"])
    assert "Sampler: DPM++ 2M, Schedule type: Automatic," \
        in info["infotexts"][0]
    # the info names what ran, "parameters" what was asked; logged
    assert info["sampler_name"] == "DPM++ 2M"
    assert r.json()["parameters"]["sampler_name"] == "Nope++"
    assert '"Nope++" / "Nope" ran as "DPM++ 2M" / "Automatic"' \
        in nginx.logs()
    r = nginx.post("/sdapi/v1/txt2img", dict(FAST,
                                             sampler_name="DPM++ 2M Karras"))
    assert r.status_code == 200, r.text


def test_location_limits(nginx_factory):
    n = nginx_factory(loc="sd_max_pixels 4096; sd_max_steps 3; "
                          "sd_max_batch_size 1; sd_max_n_iter 1;")
    d = detail(n.post("/sdapi/v1/txt2img", dict(FAST, width=128)))
    assert d["loc"] == ["body", "width"] and "4096" in d["msg"]
    d = detail(n.post("/sdapi/v1/txt2img", dict(FAST, steps=4)))
    assert d["loc"] == ["body", "steps"]
    d = detail(n.post("/sdapi/v1/txt2img", dict(FAST, batch_size=2)))
    assert d["loc"] == ["body", "batch_size"]
    d = detail(n.post("/sdapi/v1/txt2img", dict(FAST, n_iter=2)))
    assert d["loc"] == ["body", "n_iter"]
    assert n.post("/sdapi/v1/txt2img", FAST).status_code == 200
    # leaving steps out does not get A1111's 50 past the limit
    body = {k: v for k, v in FAST.items() if k != "steps"}
    r = n.post("/sdapi/v1/txt2img", body)
    assert r.status_code == 200
    assert json.loads(r.json()["info"])["steps"] == 3


def test_413(nginx_factory):
    n = nginx_factory(http="client_max_body_size 1k;")
    r = n.post("/sdapi/v1/txt2img", dict(FAST, prompt="x" * 4000))
    assert r.status_code == 413
    assert r.json() == {"detail": "Request Entity Too Large"}


def test_engine_error_is_logged_once(nginx):
    # an engine refusal is a client fault: logged at info, once
    # (any sampler name is taken, as A1111 falls back: the model's size
    # limit is what only the engine refuses)
    nginx.post("/sdapi/v1/txt2img", dict(FAST, width=1024))
    log = nginx.logs()
    assert log.count("refused") == 1
    assert '[info]' in log.split("sd_request_check() refused")[0] \
        .splitlines()[-1]


def test_request_check_before_queueing(nginx):
    # what only the model knows (the tiny model: at most 512 wide) is
    # refused at once, not after the running job
    # (the running job is held by its gate: a refusal that waited for it
    # would never come)
    nginx.gate("r")
    s = raw_post(nginx, "/sdapi/v1/txt2img", dict(SLOW, force_task_id="r"))
    wait_state(nginx, "r", started=False)
    d = detail(nginx.post("/sdapi/v1/txt2img", dict(FAST, width=1024),
                          timeout=30))
    assert d["loc"] == ["body", "width"]
    assert d["msg"].startswith("width: ") and "512" in d["msg"]
    assert d["type"] == "value_error"
    assert nginx.get("/sdapi/v1/progress").json()["state"]["job"] == "r"
    assert nginx.get("/internal/pending-tasks").json()["size"] == 0
    nginx.post("/sdapi/v1/interrupt")
    nginx.release("r")
    assert read_response(s)[0] == 200
    assert "sd_request_check() refused" in nginx.logs()


def test_engine_refusal_when_not_loaded(nginx):
    # no engine to check with: the job waits for the load, and the
    # engine's own refusal answers the same 422
    assert nginx.post("/sdapi/v1/unload-checkpoint").status_code == 200
    for _ in range(200):
        if nginx.get("/internal/ping").json()["status"] == "unloaded":
            break
        time.sleep(0.05)
    d = detail(nginx.post("/sdapi/v1/txt2img", dict(FAST, width=1024)))
    assert d["loc"] == ["body", "width"]
    assert "512" in d["msg"]
    log = nginx.logs()
    assert log.count("sd_generate() refused") == 1
    assert "sd_request_check() refused" not in log


def test_precision_the_backend_lacks(nginx_factory):
    # the CPU backend computes in fp32: the load fails, logged once at
    # error, and txt2img answers 500 at once rather than waiting
    n = nginx_factory(http="sd_precision bf16;", wait_ready=False)
    for _ in range(400):
        if n.get("/internal/ping").json()["status"] == "failed":
            break
        time.sleep(0.05)
    assert n.get("/internal/ping").json()["status"] == "failed"
    for _ in range(2):
        r = n.post("/sdapi/v1/txt2img", FAST, timeout=10)
        assert r.status_code == 500
        body = r.json()
        assert body["error"] == "ModelLoadError"
        assert body["errors"].startswith("precision: ")
    log = n.logs()
    lines = [l for l in log.splitlines() if "sd_engine_open(" in l]
    assert len(lines) == 1, log
    assert "[error]" in lines[0] and "fp32" in lines[0]
    assert log.count("fp32") == 1


def test_precision_fp32(nginx_factory):
    n = nginx_factory(http="sd_precision fp32;")
    assert n.post("/sdapi/v1/txt2img", FAST).status_code == 200
