"""Inpainting through /sdapi/v1/img2img: the mask (a PNG, as clients send
it) reaches the engine; what it keeps comes back as the init image's
pixels, "only masked" answers at the init image's size."""

import base64
import struct
import zlib

import sdutil
from conftest import FAST


def gray_png(w, h, value):
    """An 8-bit gray PNG, value(x, y) per pixel."""
    raw = b"".join(b"\x00" + bytes(value(x, y) for x in range(w))
                   for y in range(h))

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    return base64.b64encode(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")).decode()


def test_inpaint(nginx):
    init = nginx.post("/sdapi/v1/txt2img", FAST).json()["images"][0]
    _, _, ch, ref = sdutil.png_decode(base64.b64decode(init))
    body = dict(FAST, init_images=[init], denoising_strength=0.5, steps=4,
                mask=gray_png(64, 64, lambda x, y: 255 if x >= 32 else 0),
                mask_blur=0, inpainting_fill=1, inpaint_full_res=False)
    r = nginx.post("/sdapi/v1/img2img", body)
    assert r.status_code == 200, r.text
    w, h, c2, px = sdutil.png_decode(base64.b64decode(r.json()["images"][0]))
    assert (w, h) == (64, 64)

    def side(p, c, x0, x1):
        return [p[(y * 64 + x) * c + k] for y in range(64)
                for x in range(x0, x1) for k in range(3)]
    assert side(px, c2, 0, 32) == side(ref, ch, 0, 32)
    assert side(px, c2, 32, 64) != side(ref, ch, 32, 64)
    # A1111 echoes neither image without include_init_images
    assert r.json()["parameters"]["mask"] is None

    # only masked (A1111's default), a blank mask: img2img and a comment
    r = nginx.post("/sdapi/v1/img2img", dict(
        body, mask=gray_png(64, 64, lambda x, y: 0), inpaint_full_res=True))
    assert r.status_code == 200, r.text
