#!/usr/bin/env python3
"""dump_cmp.py: two `sd-cli txt2img --dump` files of the same request
compared: the relative L2 error of A's final latents and latents after the
first step against B's, and the PSNR of A's 8-bit image against B's.

    python3 tests/gpu/dump_cmp.py A.safetensors B.safetensors

Prints one "name value" line each (final_latents_rel_l2,
step0_rel_l2, image_psnr_db); needs numpy only (the file is read here).
"""

import json
import struct
import sys

import numpy as np


def read(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
        data = f.read()
    hdr.pop("__metadata__", None)
    out = {}
    for k, v in hdr.items():
        dt = {"F32": np.float32, "U8": np.uint8, "I32": np.int32}.get(
            v["dtype"])
        if dt is None:
            continue
        b, e = v["data_offsets"]
        out[k] = np.frombuffer(data[b:e], dtype=dt).reshape(v["shape"])
    return out


def rel_l2(a, b):
    a, b = a.astype(np.float64), b.astype(np.float64)
    den = np.linalg.norm(b)
    return np.linalg.norm(a - b) / (den if den > 0 else 1.0)


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 99.0 if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    a, b = read(sys.argv[1]), read(sys.argv[2])
    for k in ("final_latents", "latents_after_step0", "image_u8"):
        if k not in a or k not in b or a[k].shape != b[k].shape:
            sys.exit(f"{k}: missing or of other shapes")
    print(f"final_latents_rel_l2 "
          f"{rel_l2(a['final_latents'], b['final_latents']):.3e}")
    print(f"step0_rel_l2 "
          f"{rel_l2(a['latents_after_step0'], b['latents_after_step0']):.3e}")
    print(f"image_psnr_db {psnr(a['image_u8'], b['image_u8']):.1f}")


if __name__ == "__main__":
    main()
