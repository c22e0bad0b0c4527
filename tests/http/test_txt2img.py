"""txt2img: pixels against the golden images, info and infotext fields,
A1111's defaults echoed in "parameters", batches and iterations."""

import base64
import functools
import json

import pytest

import sdutil
from conftest import FAST, GOLDEN


@functools.lru_cache(maxsize=None)
def cases():
    # read when a test runs (and only with the fixtures there), so that
    # collection never fails without them
    return json.loads((GOLDEN.parent / "cases-public.json").read_text())


def golden_case(name):
    return next(c for c in cases()["large"] if c["name"] == name)


@pytest.mark.parametrize("name", ["p0", "p2"])
def test_golden_image(nginx, name):
    c = golden_case(name)
    body = {"prompt": c["prompt"], "negative_prompt": c["negative_prompt"],
            "width": c["width"], "height": c["height"], "steps": c["steps"],
            "cfg_scale": c["cfg"], "seed": c["seed"],
            "sampler_name": "Euler",
            "override_settings": {"randn_source": "CPU"}}
    r = nginx.post("/sdapi/v1/txt2img", body)
    assert r.status_code == 200, r.text
    assert r.headers["X-Task-Id"].startswith("task(")
    out = r.json()
    assert set(out) == {"images", "parameters", "info"}
    assert len(out["images"]) == 1
    assert not out["images"][0].startswith("data:")

    png = base64.b64decode(out["images"][0])
    w, h, ch, px = sdutil.png_decode(png)
    assert (w, h) == (c["width"], c["height"])
    dtype, shape, ref = sdutil.safetensors_read(GOLDEN,
                                                f"large.{name}.image_u8")
    assert dtype == "U8" and shape == [1, h, w, 3]
    off = sum(1 for i in range(w * h) for k in range(3)
              if abs(px[i * ch + k] - ref[i * 3 + k]) > 1)
    assert off <= 0.001 * w * h * 3, f"{off} values differ by more than 1"

    text = sdutil.png_text(png)["parameters"]
    info = json.loads(out["info"])
    assert info["infotexts"] == [text]
    assert f"Seed: {c['seed']}" in text
    assert f"Size: {w}x{h}" in text
    assert f"Steps: {c['steps']}" in text
    assert "Sampler: Euler" in text


def test_info_and_parameters(nginx):
    body = dict(FAST, batch_size=2, n_iter=2, seed=100, subseed=7,
                styles=["none"], unknown_key="ignored")
    r = nginx.post("/sdapi/v1/txt2img", body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert len(out["images"]) == 4

    info = json.loads(out["info"])
    for key in ("prompt", "all_prompts", "negative_prompt", "seed",
                "all_seeds", "subseed", "all_subseeds", "width", "height",
                "sampler_name", "cfg_scale", "steps", "batch_size",
                "sd_model_name", "sd_model_hash", "infotexts",
                "job_timestamp", "version"):
        assert key in info, key
    assert info["all_seeds"] == [100, 101, 102, 103]
    assert info["all_subseeds"] == [7, 8, 9, 10]
    assert info["all_prompts"] == ["a red cube"] * 4
    assert info["batch_size"] == 2
    assert info["sd_model_name"] == "tiny"
    assert len(info["sd_model_hash"]) == 10
    assert len(info["job_timestamp"]) == 14
    assert info["styles"] == ["none"]

    seeds = []
    for img, text in zip(out["images"], info["infotexts"]):
        t = sdutil.png_text(base64.b64decode(img))["parameters"]
        assert t == text
        seeds.append(int(t.split("Seed: ")[1].split(",")[0]))
    assert seeds == [100, 101, 102, 103]

    p = out["parameters"]
    assert p["seed"] == 100 and p["n_iter"] == 2 and p["batch_size"] == 2
    assert "unknown_key" not in p
    # A1111's defaults for what the request left out
    assert p["sampler_index"] == "Euler"
    assert p["enable_hr"] is False
    assert p["send_images"] is True
    assert p["alwayson_scripts"] == {}
    assert p["script_args"] == []
    assert p["denoising_strength"] == 0.75
    assert p["restore_faces"] is None
    assert p["override_settings_restore_afterwards"] is True


def test_seed_random_and_send_images(nginx):
    r = nginx.post("/sdapi/v1/txt2img", dict(FAST, seed=-1,
                                              send_images=False))
    assert r.status_code == 200
    out = r.json()
    assert out["images"] == []
    info = json.loads(out["info"])
    assert 0 <= info["seed"] < 4294967294
    assert out["parameters"]["seed"] == -1


def test_same_seed_same_image(nginx):
    a = nginx.post("/sdapi/v1/txt2img", FAST).json()["images"][0]
    b = nginx.post("/sdapi/v1/txt2img", dict(FAST, sampler_name=None,
                                              sampler_index="euler"))
    assert b.status_code == 200
    assert b.json()["images"][0] == a
    c = nginx.post("/sdapi/v1/txt2img", dict(FAST, seed=2)).json()
    assert c["images"][0] != a


def test_randn_source_gpu_differs(nginx):
    cpu = nginx.post("/sdapi/v1/txt2img", dict(
        FAST, override_settings={"randn_source": "CPU"})).json()
    gpu = nginx.post("/sdapi/v1/txt2img", dict(
        FAST, override_settings={"randn_source": "GPU"})).json()
    assert cpu["images"][0] != gpu["images"][0]


def test_body_in_temp_file(nginx_factory):
    # a body over client_body_buffer_size goes to a temp file first
    n = nginx_factory(loc="client_body_buffer_size 1k;")
    r = n.post("/sdapi/v1/txt2img", dict(FAST, negative_prompt="x " * 2000))
    assert r.status_code == 200, r.text
    assert len(r.json()["images"]) == 1


def test_two_models(nginx_factory):
    medium = GOLDEN.parent / "tiny-sd35-medium"
    n = nginx_factory(http=f"sd_model medium {medium};")
    models = n.get("/sdapi/v1/sd-models").json()
    assert [m["model_name"] for m in models] == ["tiny", "medium"]
    # not loaded yet, and yet hashed (sd_model_hash_dir)
    assert len(models[1]["hash"]) == 10
    assert models[1]["hash"] != models[0]["hash"]
    assert models[1]["title"] == f"medium [{models[1]['hash']}]"

    c = next(c for c in cases()["medium"] if c["name"] == "p0")
    body = {"prompt": c["prompt"], "negative_prompt": c["negative_prompt"],
            "width": c["width"], "height": c["height"], "steps": c["steps"],
            "cfg_scale": c["cfg"], "seed": c["seed"],
            "override_settings": {"randn_source": "CPU",
                                  "sd_model_checkpoint": "medium"}}
    # the first request for a model waits for it to load
    r = n.post("/sdapi/v1/txt2img", body)
    assert r.status_code == 200, r.text
    info = json.loads(r.json()["info"])
    assert info["sd_model_name"] == "medium"
    assert info["sd_model_hash"] == models[1]["hash"]
    assert n.get("/sdapi/v1/sd-models").json() == models
    w, h, ch, px = sdutil.png_decode(base64.b64decode(r.json()["images"][0]))
    _, _, ref = sdutil.safetensors_read(GOLDEN, "medium.p0.image_u8")
    off = sum(1 for i in range(w * h) for k in range(3)
              if abs(px[i * ch + k] - ref[i * 3 + k]) > 1)
    assert off <= 0.001 * w * h * 3

    # the default model through options, for every later request
    assert n.post("/sdapi/v1/options",
                  {"sd_model_checkpoint": "medium"}).status_code == 200
    assert n.get("/sdapi/v1/options").json()[
        "sd_model_checkpoint"].startswith("medium [")
    r = n.post("/sdapi/v1/txt2img", FAST)
    assert json.loads(r.json()["info"])["sd_model_name"] == "medium"


# What a client library sends by default (webuiapi's txt2img() with only
# a prompt given): "Euler a" and every hires/script field at its default.
WEBUIAPI = {
    "enable_hr": False, "denoising_strength": 0.7, "firstphase_width": 0,
    "firstphase_height": 0, "hr_scale": 2, "hr_upscaler": "Latent",
    "hr_second_pass_steps": 0, "hr_resize_x": 0, "hr_resize_y": 0,
    "prompt": "a red cube", "styles": [], "seed": 7, "subseed": -1,
    "subseed_strength": 0.0, "seed_resize_from_h": 0,
    "seed_resize_from_w": 0, "sampler_name": "Euler a",
    "sampler_index": "Euler a", "batch_size": 1, "n_iter": 1, "steps": 4,
    "cfg_scale": 7.0, "width": 64, "height": 64, "restore_faces": False,
    "tiling": False, "do_not_save_samples": False,
    "do_not_save_grid": False, "negative_prompt": "", "eta": 1.0,
    "s_churn": 0, "s_tmax": 0, "s_tmin": 0, "s_noise": 1,
    "override_settings": {}, "override_settings_restore_afterwards": True,
    "script_args": [], "script_name": None, "send_images": True,
    "save_images": False, "alwayson_scripts": {},
}


def test_client_library_defaults(nginx):
    r = nginx.post("/sdapi/v1/txt2img", WEBUIAPI)
    assert r.status_code == 200, r.text
    out = r.json()
    assert len(out["images"]) == 1
    info = json.loads(out["info"])
    assert info["sampler_name"] == "Euler a"
    text = sdutil.png_text(base64.b64decode(out["images"][0]))["parameters"]
    assert info["infotexts"] == [text]
    assert "Sampler: Euler a," in text
    assert "Seed: 7," in text and "Steps: 4," in text
    assert out["parameters"]["sampler_index"] == "Euler a"

    # deterministic per seed, and not the Euler image
    again = nginx.post("/sdapi/v1/txt2img", WEBUIAPI).json()
    assert again["images"] == out["images"]
    euler = nginx.post("/sdapi/v1/txt2img", dict(
        WEBUIAPI, sampler_name="Euler", sampler_index="Euler")).json()
    assert euler["images"][0] != out["images"][0]
