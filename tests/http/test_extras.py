"""A1111's extras (ngx_module/ngx_http_sd_postprocess.c, _extras.c):
extra-single-image and extra-batch-images with the built-in upscalers
None, Lanczos and Nearest, A1111's sizes (scale by: int(w*s)//8*8; scale
to: then the centre cropped), images as plain base64 or data: URLs."""

import base64

import sdutil
from conftest import FAST


def make_png(nginx):
    r = nginx.post("/sdapi/v1/txt2img", FAST)
    assert r.status_code == 200, r.text
    return r.json()["images"][0]


def decode(b64):
    w, h, ch, px = sdutil.png_decode(base64.b64decode(b64))
    return w, h, ch, px


def test_extra_single_image(nginx):
    src = make_png(nginx)
    sw, sh, sch, spx = decode(src)

    # Nearest by 2: every source pixel becomes a 2x2 block
    r = nginx.post("/sdapi/v1/extra-single-image", {
        "image": src, "upscaler_1": "Nearest", "upscaling_resize": 2})
    assert r.status_code == 200, r.text
    out = r.json()
    assert set(out) == {"html_info", "image"}
    assert "Postprocess upscaler: Nearest" in out["html_info"]
    w, h, ch, px = decode(out["image"])
    assert (w, h) == (2 * sw, 2 * sh)
    for y, x in ((0, 0), (5, 9), (sh - 1, sw - 1)):
        for k in range(3):
            want = spx[(y * sw + x) * sch + k]
            assert px[((2 * y + 1) * w + 2 * x + 1) * ch + k] == want

    # Lanczos by 1.5 as a data: URL: 64 * 1.5 = 96, a multiple of 8
    r = nginx.post("/sdapi/v1/extra-single-image", {
        "image": "data:image/png;base64," + src, "upscaler_1": "lanczos",
        "upscaling_resize": 1.5})
    assert r.status_code == 200, r.text
    assert decode(r.json()["image"])[:2] == (96, 96)

    # scale to 200x120 with crop: by max(200/64, 120/64), then the centre
    r = nginx.post("/sdapi/v1/extra-single-image", {
        "image": src, "upscaler_1": "Lanczos", "resize_mode": 1,
        "upscaling_resize_w": 200, "upscaling_resize_h": 120,
        "upscaling_crop": True})
    assert r.status_code == 200, r.text
    assert decode(r.json()["image"])[:2] == (200, 120)

    # None: the image back as it was
    r = nginx.post("/sdapi/v1/extra-single-image", {
        "image": src, "upscaler_1": "None"})
    w, h, ch, px = decode(r.json()["image"])
    assert (w, h) == (sw, sh)
    assert [px[i * ch + k] for i in range(w * h) for k in range(3)] == \
        [spx[i * sch + k] for i in range(w * h) for k in range(3)]

    # what is wrong is named
    for body, field in (({"image": "***", "upscaler_1": "Lanczos"}, "image"),
                        ({"image": src, "upscaler_1": "ESRGAN_4x"},
                         "upscaler_1"),
                        ({"image": base64.b64encode(b"GIF89a....").decode(),
                          "upscaler_1": "Lanczos"}, "image"),
                        ({"image": src, "gfpgan_visibility": 0.5},
                         "gfpgan_visibility")):
        r = nginx.post("/sdapi/v1/extra-single-image", body)
        assert r.status_code == 422, (field, r.text)
        assert r.json()["detail"][0]["loc"] == ["body", field]


def test_extra_batch_images(nginx):
    src = make_png(nginx)
    r = nginx.post("/sdapi/v1/extra-batch-images", {
        "imageList": [{"data": src, "name": "a.png"},
                      {"data": "data:image/png;base64," + src,
                       "name": "b.png"}],
        "upscaler_1": "Nearest", "upscaling_resize": 3})
    assert r.status_code == 200, r.text
    out = r.json()
    assert set(out) == {"html_info", "images"}
    assert len(out["images"]) == 2
    assert out["images"][0] == out["images"][1]
    assert decode(out["images"][0])[:2] == (192, 192)

    # the options' samples_format applies here too
    nginx.post("/sdapi/v1/options", {"samples_format": "jpg"})
    r = nginx.post("/sdapi/v1/extra-batch-images", {
        "imageList": [{"data": src, "name": "a.png"}],
        "upscaler_1": "Lanczos"})
    assert base64.b64decode(r.json()["images"][0])[:3] == b"\xff\xd8\xff"
