"""The result cache's key (ngx_module/ngx_http_sd_cache.c) against a real
memcached: img2img cached like txt2img, its init images and mask by their
pixels, and two requests that differ in any field that changes the answer's
images never sharing an entry (each variant a miss, stored, then answered
from its own entry with its own bytes)."""

import base64
import json
import struct
import time
import zlib

from conftest import FAST
from test_cache import cached_server, memcached, metric, steps_run  # noqa

BASE = dict(FAST, seed=21)


def png_encode(w, h, pixel, level=6):
    """An 8-bit RGB PNG whose pixel (x, y) is pixel(x, y)."""
    raw = b"".join(b"\0" + bytes(c for x in range(w) for c in pixel(x, y))
                   for y in range(h))

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    return base64.b64encode(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw, level))
        + chunk(b"IEND", b"")).decode()


def gradient(x, y):
    return (x * 4 & 255, y * 4 & 255, 128)


def wait_items(mc, n):
    """The store follows the answer: wait until memcached holds n items."""
    deadline = time.time() + 30
    while mc.stats()["curr_items"] < n and time.time() < deadline:
        time.sleep(0.05)
    assert mc.stats()["curr_items"] == n


def images(r):
    assert r.status_code == 200, r.text
    return [base64.b64decode(x) for x in r.json()["images"]]


def info(r):
    """The answer's info but for what is each request's own."""
    o = json.loads(r.json()["info"])
    for k in ("job_timestamp", "subseed", "all_subseeds"):
        del o[k]
    return o


def check_apart(n, mc, path, base, variants, headers=None):
    """base, then every variant: each a miss and an entry of its own; then
    each again: a hit with the bytes and info of its own first answer."""
    first, infos = [], []
    for i, body in enumerate([base] + variants):
        r = n.post(path, body, headers=headers)
        assert r.status_code == 200, (i, r.text)
        assert r.headers["X-Cache"] == "MISS", i
        first.append(images(r))
        infos.append(info(r))
        wait_items(mc, i + 1)

    steps = steps_run(n)
    for i, body in enumerate([base] + variants):
        r = n.post(path, body, headers=headers)
        assert r.headers.get("X-Cache") == "HIT", (i, r.text[:200])
        assert images(r) == first[i], i
        assert info(r) == infos[i], i
    assert steps_run(n) == steps
    return first


def test_img2img_cached(nginx_factory, memcached):
    n = cached_server(nginx_factory, memcached)
    init = png_encode(64, 64, gradient)
    body = dict(BASE, init_images=[init], denoising_strength=0.5,
                sampler_name="k_euler")
    a = {"X-Tenant": "a"}

    r1 = n.post("/sdapi/v1/img2img", body, headers=a)
    assert r1.status_code == 200, r1.text
    assert r1.headers["X-Cache"] == "MISS"
    wait_items(memcached, 1)
    steps = steps_run(n)

    # the same pixels, compressed otherwise and sent as a data: URL: the
    # engine would read the same image, so it is the same entry
    same = dict(body, init_images=["data:image/png;base64,"
                                   + png_encode(64, 64, gradient, 1)],
                include_init_images=True)
    assert same["init_images"][0][22:] != init
    r2 = n.post("/sdapi/v1/img2img", same, headers=a)
    assert r2.headers["X-Cache"] == "HIT", r2.text
    assert r2.headers["X-Task-Id"] != r1.headers["X-Task-Id"]
    assert images(r2) == images(r1)
    # the info too, "sampler_name" included: what ran, not the alias asked
    assert info(r2) == info(r1)
    assert info(r2)["sampler_name"] == "Euler"
    assert info(r2)["denoising_strength"] == 0.5
    # the parameters are the request's own (include_init_images echoes)
    assert r2.json()["parameters"]["init_images"] == same["init_images"]
    assert r1.json()["parameters"]["init_images"] is None
    assert steps_run(n) == steps

    # another tenant does not see it
    r = n.post("/sdapi/v1/img2img", body, headers={"X-Tenant": "b"})
    assert r.headers["X-Cache"] == "MISS"
    assert images(r) == images(r1)
    wait_items(memcached, 2)
    assert metric(n, "sd_cache_hits_total") == 1

    # seed -1: neither looked up nor stored
    r = n.post("/sdapi/v1/img2img", dict(body, seed=-1), headers=a)
    assert r.status_code == 200 and r.headers["X-Cache"] == "MISS"
    assert memcached.stats()["cmd_set"] == 2


def test_img2img_key_fields(nginx_factory, memcached):
    n = cached_server(nginx_factory, memcached)
    init = png_encode(64, 64, gradient)
    # one pixel changed
    other = png_encode(64, 64, lambda x, y: (255, 0, 0) if x == y == 5
                       else gradient(x, y))
    wide = png_encode(96, 64, gradient)
    base = dict(BASE, init_images=[init], denoising_strength=0.5)
    check_apart(n, memcached, "/sdapi/v1/img2img", base, [
        dict(base, init_images=[other]),
        dict(base, init_images=[init, other], batch_size=2),
        dict(base, denoising_strength=0.6),
        dict(base, init_images=[wide]),
        dict(base, init_images=[wide], resize_mode=1),
    ])
    # the mask and its fields are in the key too (ngx_http_sd_cache_img2img),
    # but the engine refuses inpainting before any lookup ("mask: inpainting
    # is not implemented yet"): a variant with a mask belongs here when it
    # inpaints


def test_txt2img_key_fields(nginx_factory, memcached, tmp_path):
    styles = tmp_path / "styles.csv"
    styles.write_text('name,prompt,negative_prompt\n'
                      'Film,"{prompt}, film grain",\n')
    n = cached_server(nginx_factory, memcached,
                      f"sd_styles_file {styles};")
    jpeg = {"samples_format": "jpg"}
    first = check_apart(n, memcached, "/sdapi/v1/txt2img", BASE, [
        dict(BASE, sampler_name="Euler a"),
        dict(BASE, scheduler="Karras"),
        dict(BASE, override_settings={"CLIP_stop_at_last_layers": 2}),
        dict(BASE, override_settings={"eta_noise_seed_delta": 31337}),
        dict(BASE, styles=["Film"]),
        dict(BASE, override_settings=jpeg),
        dict(BASE, override_settings=dict(jpeg, jpeg_quality=40)),
        dict(BASE, override_settings={"enable_pnginfo": False}),
        dict(BASE, enable_hr=True, hr_scale=1.5, hr_second_pass_steps=1),
        dict(BASE, enable_hr=True, hr_scale=1.5, hr_second_pass_steps=1,
             denoising_strength=0.4),
        dict(BASE, enable_hr=True, hr_scale=1.5, hr_second_pass_steps=1,
             hr_upscaler="Lanczos"),
        dict(BASE, override_settings={"samples_format": "webp"}),
        dict(BASE, override_settings={"samples_format": "webp",
                                      "webp_lossless": True}),
    ])
    # the entries hold what was sent: PNG, JPEG at two qualities
    assert first[0][0][:4] == b"\x89PNG"
    assert first[6][0][:2] == first[7][0][:2] == b"\xff\xd8"
    assert first[6][0] != first[7][0]
    assert first[12][0][8:12] == first[13][0][8:12] == b"WEBP"
    assert first[12][0] != first[13][0]

    # a style that is not in the file changes nothing the engine reads:
    # the first entry, with the request's own styles in its info
    r = n.post("/sdapi/v1/txt2img", dict(BASE, styles=["Nope"]))
    assert r.headers["X-Cache"] == "HIT"
    assert images(r) == first[0]
    assert json.loads(r.json()["info"])["styles"] == ["Nope"]
