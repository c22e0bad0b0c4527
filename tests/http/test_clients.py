"""What real A1111 clients send, body for body, taken from their sources:
SillyTavern (public/scripts/extensions/stable-diffusion/index.js,
generateAutoImage), text-generation-webui (extensions/sd_api_pictures/
script.py), Open WebUI (backend/open_webui/routers/images.py) and the
webuiapi client (mix1009/sdwebuiapi, webuiapi.py). Only the size and the
step count are made small, so that the tiny model answers at once; every
other field is what the client sends by default."""

import base64
import json

from conftest import FAST

SMALL = {"width": FAST["width"], "height": FAST["height"],
         "steps": FAST["steps"]}


def ok(r):
    assert r.status_code == 200, r.text
    return r.json()


def one_image(out):
    assert len(out["images"]) == 1
    assert base64.b64decode(out["images"][0])[:8] == b"\x89PNG\r\n\x1a\n"
    return json.loads(out["info"])


def test_sillytavern(nginx):
    # the lists it reads to fill its settings
    for path in ("samplers", "schedulers", "sd-models", "upscalers",
                 "sd-vae", "options", "latent-upscale-modes"):
        ok(nginx.get("/sdapi/v1/" + path))
    model = ok(nginx.get("/sdapi/v1/sd-models"))[0]["title"]
    assert ok(nginx.post("/sdapi/v1/options",
                         {"sd_model_checkpoint": model})) is None

    # generateAutoImage() with its defaults: DDIM, scheduler "normal",
    # save_images on every request, hires fields off
    body = {
        "prompt": "best quality, absurdres, aesthetic, a cat",
        "negative_prompt": "lowres, bad anatomy, bad hands, text, error",
        "sampler_name": "DDIM", "scheduler": "normal", "steps": 20,
        "cfg_scale": 7, "width": 512, "height": 512,
        "restore_faces": False, "enable_hr": False, "hr_upscaler": "Latent",
        "hr_scale": 2.0, "hr_additional_modules": [],
        "denoising_strength": 0.7, "hr_second_pass_steps": 0, "seed": -1,
        "override_settings": {"CLIP_stop_at_last_layers": 1},
        "override_settings_restore_afterwards": True, "clip_skip": 1,
        "save_images": True, "send_images": True,
        "do_not_save_grid": False, "do_not_save_samples": False,
    }
    info = one_image(ok(nginx.post("/sdapi/v1/txt2img", dict(body,
                                                              **SMALL))))
    # a sampler this server lacks falls back, and the info says which ran
    served = [s["name"] for s in ok(nginx.get("/sdapi/v1/samplers"))]
    assert info["sampler_name"] in served
    assert info["seed"] >= 0
    ok(nginx.get("/sdapi/v1/progress"))


def test_text_generation_webui(nginx):
    # get_checkpoints(), load_checkpoint(), get_samplers()
    titles = [m["title"] for m in ok(nginx.get("/sdapi/v1/sd-models"))]
    assert ok(nginx.get("/sdapi/v1/options"))["sd_model_checkpoint"] \
        in titles
    ok(nginx.post("/sdapi/v1/options", {"sd_model_checkpoint": titles[0]}))
    ok(nginx.get("/sdapi/v1/samplers"))

    # get_SD_pictures(): hr_scale as a string, an upscaler this server
    # does not have (hires off), A1111 emphasis in the prompt
    body = {
        "prompt": "(Masterpiece:1.1), detailed, intricate, colorful"
                  "(a girl in a garden:1)",
        "seed": -1, "sampler_name": "DPM++ 2M", "enable_hr": False,
        "hr_scale": "1.0", "hr_upscaler": "ESRGAN_4x",
        "denoising_strength": 0.61, "steps": 32, "cfg_scale": 7,
        "width": 512, "height": 512, "restore_faces": False,
        "override_settings_restore_afterwards": True,
        "negative_prompt": "(worst quality, low quality:1.3)",
    }
    out = ok(nginx.post("/sdapi/v1/txt2img", dict(body, **SMALL)))
    one_image(out)
    # "parameters" as A1111 types it: the string became a number
    assert out["parameters"]["hr_scale"] == 1.0

    # give_VRAM_priority(): a JSON "" body on the checkpoint routes
    for path in ("unload-checkpoint", "reload-checkpoint"):
        r = nginx.post("/sdapi/v1/" + path, data=b'""',
                       headers={"Content-Type": "application/json"})
        assert r.status_code == 200, (path, r.text)


def test_open_webui(nginx):
    # get_models(): the titles; set_image_model(): options round trip
    models = ok(nginx.get("/sdapi/v1/sd-models"))
    assert {"title", "model_name"} <= set(models[0])
    opts = ok(nginx.get("/sdapi/v1/options"))
    opts["sd_model_checkpoint"] = models[0]["title"]
    ok(nginx.post("/sdapi/v1/options", opts))

    body = {"prompt": "a lighthouse at dusk", "batch_size": 2,
            "width": 512, "height": 512, "steps": 20,
            "negative_prompt": "blurry", "cfg_scale": 7.0,
            "sampler_name": "Euler a", "scheduler": "Automatic"}
    out = ok(nginx.post("/sdapi/v1/txt2img", dict(body, **SMALL)))
    assert len(out["images"]) == 2
    info = json.loads(out["info"])
    assert info["sampler_name"] == "Euler a"
    assert info["all_seeds"][1] == info["all_seeds"][0] + 1


def test_webuiapi_methods(nginx):
    # every getter of the webuiapi client answers its A1111 shape
    lists = ("samplers", "schedulers", "upscalers", "latent-upscale-modes",
             "sd-models", "sd-vae", "hypernetworks", "face-restorers",
             "realesrgan-models", "prompt-styles", "loras", "script-info")
    for path in lists:
        assert isinstance(ok(nginx.get("/sdapi/v1/" + path)), list), path
    for path in ("options", "cmd-flags", "embeddings", "scripts", "memory",
                 "progress"):
        assert isinstance(ok(nginx.get("/sdapi/v1/" + path)), dict), path
    for path in ("refresh-checkpoints", "refresh-loras", "interrupt",
                 "skip"):
        ok(nginx.post("/sdapi/v1/" + path))

    # txt2img() as webuiapi sends it with only a prompt (webuiapi's own
    # defaults), then png_info() on its image, as a data: URL
    body = {
        "enable_hr": False, "denoising_strength": 0.7,
        "firstphase_width": 0, "firstphase_height": 0, "hr_scale": 2,
        "hr_upscaler": "Latent", "hr_second_pass_steps": 0,
        "hr_resize_x": 0, "hr_resize_y": 0, "hr_checkpoint_name": None,
        "hr_sampler_name": None, "hr_scheduler": None, "hr_prompt": "",
        "hr_negative_prompt": "", "prompt": "a red cube", "styles": [],
        "seed": -1, "subseed": -1, "subseed_strength": 0.0,
        "seed_resize_from_h": 0, "seed_resize_from_w": 0,
        "sampler_name": "Euler a", "scheduler": "Automatic",
        "batch_size": 1, "n_iter": 1, "steps": 30, "cfg_scale": 7.0,
        "width": 512, "height": 512, "restore_faces": False,
        "tiling": False, "do_not_save_samples": False,
        "do_not_save_grid": False, "negative_prompt": "", "eta": 1.0,
        "s_churn": 0, "s_tmax": 0, "s_tmin": 0, "s_noise": 1,
        "override_settings": {}, "override_settings_restore_afterwards": True,
        "sampler_index": "Euler a", "script_name": None, "script_args": [],
        "send_images": True, "save_images": False, "alwayson_scripts": {},
    }
    out = ok(nginx.post("/sdapi/v1/txt2img", dict(body, **SMALL)))
    info = one_image(out)
    url = "data:image/png;base64," + out["images"][0]
    pi = ok(nginx.post("/sdapi/v1/png-info", {"image": url}))
    assert pi["info"] == info["infotexts"][0]

    # interrogate(): no interrogator here, said plainly
    r = nginx.post("/sdapi/v1/interrogate", {"image": url, "model": "clip"})
    assert r.status_code == 501


def test_typed_parameters_version_rng(nginx):
    body = dict(FAST, steps="2", seed="11", cfg_scale="1.5",
                do_not_save_grid=1, override_settings={"randn_source": "CPU"})
    out = ok(nginx.post("/sdapi/v1/txt2img", body))
    p = out["parameters"]
    assert p["steps"] == 2 and p["seed"] == 11 and p["cfg_scale"] == 1.5
    assert p["do_not_save_grid"] is True
    info = json.loads(out["info"])
    text = info["infotexts"][0]
    # A1111 writes "RNG: CPU" when the noise is the CPU generator's, and
    # the same version in the infotext and in "info"
    assert ", RNG: CPU, " in text
    assert text.endswith(", Version: " + info["version"])
    text = one_image(ok(nginx.post("/sdapi/v1/txt2img", FAST)))[
        "infotexts"][0]
    assert "RNG:" not in text
