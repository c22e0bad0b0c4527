#!/usr/bin/env python3
"""comfy_fp8.py: write a ComfyUI "fp8_scaled" SD3.5 transformer file from a
diffusers transformer folder, as ComfyUI's own conversion lays it out, with
nothing of this project's C code: numpy and a hand-written safetensors
reader and writer.

    python3 tests/fp8/comfy_fp8.py DIFFUSERS_TRANSFORMER_DIR OUT.safetensors

Layout written (ComfyUI's older scaled_fp8 form, as in
sd3.5_large_fp8_scaled.safetensors): the original MMDiT keys under
"model.diffusion_model." (fused attn.qkv, final adaLN halves in (shift,
scale) order), a "model.diffusion_model.scaled_fp8" marker (empty E4M3
tensor), and for every linear weight of the joint blocks an F8_E4M3
"<layer>.weight" = round_to_nearest_even(clamp(w / s, +-448)) with
"<layer>.scale_weight" = s = max|w| / 448 (F32 scalar) and
"<layer>.scale_input" = 1.0. Every other tensor keeps its dtype and bytes.
"""

import json
import re
import struct
import sys

import numpy as np


DT = {"F32": np.float32, "BF16": np.uint16, "F16": np.float16,
      "U8": np.uint8, "F8_E4M3": np.uint8}


def read_st(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        b, e = v["data_offsets"]
        arr = np.frombuffer(data[b:e], dtype=DT[v["dtype"]])
        out[k] = (v["dtype"], list(v["shape"]), arr)
    return out


def write_st(path, tensors):
    hdr, blobs, off = {}, [], 0
    for k, (dt, shape, arr) in tensors.items():
        raw = np.ascontiguousarray(arr).tobytes()
        hdr[k] = {"dtype": dt, "shape": shape,
                  "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(hdr).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def to_f32(dt, arr):
    if dt == "BF16":
        return (arr.astype(np.uint32) << 16).view(np.float32)
    return arr.astype(np.float32)


def e4m3(x):
    """float32 array -> E4M3FN codes: round to nearest even, saturating."""
    a = np.minimum(np.abs(x).astype(np.float64), 448.0)
    _, e = np.frexp(a)
    ex = np.maximum(e - 1, -6)                  # normal exponent, or -6
    quantum = np.ldexp(1.0, ex - 3)
    q = np.minimum(np.rint(a / quantum) * quantum, 448.0)
    _, e2 = np.frexp(q)
    ex2 = e2 - 1
    normal = q >= 2.0 ** -6
    mant = np.where(normal, q / np.ldexp(1.0, ex2) - 1.0, 0.0) * 8
    code = np.where(normal, ((ex2 + 7) * 8 + mant), q / 2.0 ** -9)
    code = code.astype(np.uint8)
    return code | (np.signbit(x).astype(np.uint8) << 7)


def to_original(sd):
    """diffusers SD3Transformer2DModel keys -> original MMDiT keys."""
    n = 1 + max(int(k.split(".")[1]) for k in sd
                if k.startswith("transformer_blocks."))
    out = {}

    def take(dst, *src, swap=False):
        parts = [sd.pop(s) for s in src if s in sd]
        if not parts:
            return
        assert len(parts) == len(src), src
        dt = parts[0][0]
        shape = list(parts[0][1])
        shape[0] *= len(parts)
        arr = np.concatenate([p[2] for p in parts])
        if swap:
            half = arr.size // 2
            arr = np.concatenate([arr[half:], arr[:half]])
        out[dst] = (dt, shape, arr)

    take("pos_embed", "pos_embed.pos_embed")
    for w in ("weight", "bias"):
        take(f"x_embedder.proj.{w}", f"pos_embed.proj.{w}")
        for i, j in ((0, 1), (2, 2)):
            take(f"t_embedder.mlp.{i}.{w}",
                 f"time_text_embed.timestep_embedder.linear_{j}.{w}")
            take(f"y_embedder.mlp.{i}.{w}",
                 f"time_text_embed.text_embedder.linear_{j}.{w}")
        take(f"context_embedder.{w}", f"context_embedder.{w}")
        take(f"final_layer.linear.{w}", f"proj_out.{w}")
        take(f"final_layer.adaLN_modulation.1.{w}", f"norm_out.linear.{w}",
             swap=True)
        for b in range(n):
            s, d = f"transformer_blocks.{b}.", f"joint_blocks.{b}."
            take(f"{d}x_block.attn.qkv.{w}", *(f"{s}attn.to_{c}.{w}"
                                               for c in "qkv"))
            take(f"{d}context_block.attn.qkv.{w}",
                 *(f"{s}attn.add_{c}_proj.{w}" for c in "qkv"))
            take(f"{d}x_block.attn2.qkv.{w}", *(f"{s}attn2.to_{c}.{w}"
                                                for c in "qkv"))
            for a, m in (("attn", "attn"), ("attn2", "attn2")):
                take(f"{d}x_block.{a}.ln_q.{w}", f"{s}{m}.norm_q.{w}")
                take(f"{d}x_block.{a}.ln_k.{w}", f"{s}{m}.norm_k.{w}")
                take(f"{d}x_block.{a}.proj.{w}", f"{s}{m}.to_out.0.{w}")
            take(f"{d}context_block.attn.ln_q.{w}",
                 f"{s}attn.norm_added_q.{w}")
            take(f"{d}context_block.attn.ln_k.{w}",
                 f"{s}attn.norm_added_k.{w}")
            take(f"{d}context_block.attn.proj.{w}", f"{s}attn.to_add_out.{w}")
            take(f"{d}x_block.adaLN_modulation.1.{w}", f"{s}norm1.linear.{w}")
            take(f"{d}context_block.adaLN_modulation.1.{w}",
                 f"{s}norm1_context.linear.{w}", swap=(b == n - 1))
            take(f"{d}x_block.mlp.fc1.{w}", f"{s}ff.net.0.proj.{w}")
            take(f"{d}x_block.mlp.fc2.{w}", f"{s}ff.net.2.{w}")
            take(f"{d}context_block.mlp.fc1.{w}",
                 f"{s}ff_context.net.0.proj.{w}")
            take(f"{d}context_block.mlp.fc2.{w}", f"{s}ff_context.net.2.{w}")
    assert not sd, f"unmapped diffusers keys: {sorted(sd)[:5]}"
    return out


QUANT = re.compile(r"joint_blocks\.\d+\.(x|context)_block\."
                   r"(attn2?\.qkv|attn2?\.proj|mlp\.fc[12]|adaLN_modulation\.1)"
                   r"\.weight$")


def main():
    src, dst = sys.argv[1], sys.argv[2]
    sd = read_st(f"{src}/diffusion_pytorch_model.safetensors")
    pre = "model.diffusion_model."
    out = {pre + "scaled_fp8": ("F8_E4M3", [0], np.zeros(0, np.uint8))}
    for k, (dt, shape, arr) in to_original(sd).items():
        if not QUANT.search(k):
            out[pre + k] = (dt, shape, arr)
            continue
        w = to_f32(dt, arr)
        amax = np.float32(np.abs(w).max())
        s = amax / np.float32(448.0) if amax > 0 else np.float32(1.0)
        base = pre + k[:-len(".weight")]
        out[pre + k] = ("F8_E4M3", shape, e4m3(w / s))
        out[base + ".scale_weight"] = ("F32", [], np.array([s], np.float32))
        out[base + ".scale_input"] = ("F32", [],
                                      np.array([1.0], np.float32))
    write_st(dst, out)


if __name__ == "__main__":
    main()
