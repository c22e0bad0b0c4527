#!/usr/bin/env python3
"""tests/data/resize_ref.json: PIL's resizes of a fixed 23x17 pattern, for
test_upscale.c: Image.resize with LANCZOS, BICUBIC, BILINEAR and NEAREST,
and A1111 1.10's images.resize_image() modes 0-2 (upscaler None), written
out below as A1111 has it. Usage: make_resize_ref.py (python3-pil)."""
import json, os
from PIL import Image

W, H = 23, 17


def pattern(w, h):
    im = Image.new('RGB', (w, h))
    im.putdata([tuple((x * 37 + y * 91 + c * 53 + (x * y) % 17 * 11) % 256
                      for c in range(3)) for y in range(h) for x in range(w)])
    return im


def resize_image(mode, im, width, height):
    """modules/images.py resize_image, upscaler None"""
    def resize(im, w, h):
        return im.resize((w, h), resample=Image.LANCZOS)
    if mode == 0:
        return resize(im, width, height)
    ratio, src_ratio = width / height, im.width / im.height
    if mode == 1:
        src_w = width if ratio > src_ratio else im.width * height // im.height
        src_h = height if ratio <= src_ratio else im.height * width // im.width
        resized = resize(im, src_w, src_h)
        res = Image.new("RGB", (width, height))
        res.paste(resized, box=(width // 2 - src_w // 2,
                                height // 2 - src_h // 2))
        return res
    src_w = width if ratio < src_ratio else im.width * height // im.height
    src_h = height if ratio >= src_ratio else im.height * width // im.width
    resized = resize(im, src_w, src_h)
    res = Image.new("RGB", (width, height))
    res.paste(resized, box=(width // 2 - src_w // 2, height // 2 - src_h // 2))
    if ratio < src_ratio:
        fill_height = height // 2 - src_h // 2
        if fill_height > 0:
            res.paste(resized.resize((width, fill_height), box=(0, 0, width, 0)),
                      box=(0, 0))
            res.paste(resized.resize((width, fill_height), box=(
                0, resized.height, width, resized.height)),
                box=(0, fill_height + src_h))
    elif ratio > src_ratio:
        fill_width = width // 2 - src_w // 2
        if fill_width > 0:
            res.paste(resized.resize((fill_width, height), box=(0, 0, 0, height)),
                      box=(0, 0))
            res.paste(resized.resize((fill_width, height), box=(
                resized.width, 0, resized.width, height)),
                box=(fill_width + src_w, 0))
    return res


im = pattern(W, H)
out = {}
for name, f in (('lanczos', Image.LANCZOS), ('bicubic', Image.BICUBIC),
                ('bilinear', Image.BILINEAR), ('nearest', Image.NEAREST)):
    for w, h in ((40, 29), (11, 9), (23, 40), (64, 17)):
        out[f'{name}.{w}x{h}'] = im.resize((w, h), resample=f).tobytes().hex()
for mode in (0, 1, 2):
    for w, h in ((32, 32), (48, 16), (16, 40)):
        out[f'mode{mode}.{w}x{h}'] = resize_image(mode, im, w, h).tobytes().hex()
json.dump(out, open(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                 'resize_ref.json'), 'w'), indent=0)
print(len(out), 'cases')
