#!/usr/bin/env python3
"""comfy_fp8.py: write a ComfyUI "fp8_scaled" SD3.5 transformer file from a
diffusers transformer folder, as ComfyUI's own conversion lays it out, with
nothing of this project's C code: numpy and a hand-written safetensors
reader and writer.

    python3 tests/fp8/comfy_fp8.py DIFFUSERS_TRANSFORMER_DIR OUT.safetensors
    python3 tests/fp8/comfy_fp8.py DIFFUSERS_MODEL_DIR OUT.safetensors

Given a whole model folder (with model_index.json) it writes the bundle
ComfyUI's SD3.5 checkpoints are: the transformer, the VAE in the LDM layout
under "first_stage_model." (diffusers' attention Linear weights as 1x1
convolutions) and the text encoders under "text_encoders.{clip_l,clip_g,
t5xxl}.transformer." (T5's linear weights scaled FP8 as above, CLIP as is).

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
import os
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


def vae_to_ldm(sd):
    """diffusers AutoencoderKL keys -> LDM (first_stage_model) keys."""
    nup = 1 + max(int(k.split(".")[2]) for k in sd
                  if k.startswith("decoder.up_blocks."))
    out = {}
    for k, (dt, shape, arr) in sd.items():
        n = k.replace("conv_norm_out", "norm_out")
        n = n.replace("conv_shortcut", "nin_shortcut")
        n = re.sub(r"down_blocks\.(\d+)\.resnets\.", r"down.\1.block.", n)
        n = re.sub(r"down_blocks\.(\d+)\.downsamplers\.0\.",
                   r"down.\1.downsample.", n)
        m = re.match(r"decoder\.up_blocks\.(\d+)\.(resnets|upsamplers\.0)"
                     r"\.(.*)", n)
        if m:
            b = nup - 1 - int(m.group(1))
            kind = "block" if m.group(2) == "resnets" else "upsample"
            n = f"decoder.up.{b}.{kind}.{m.group(3)}"
        n = re.sub(r"mid_block\.resnets\.(\d+)\.",
                   lambda g: f"mid.block_{int(g.group(1)) + 1}.", n)
        m = re.match(r"(\w+)\.mid_block\.attentions\.0\."
                     r"(group_norm|to_q|to_k|to_v|to_out\.0)\.(weight|bias)", n)
        if m:
            ldm = {"group_norm": "norm", "to_q": "q", "to_k": "k",
                   "to_v": "v", "to_out.0": "proj_out"}[m.group(2)]
            n = f"{m.group(1)}.mid.attn_1.{ldm}.{m.group(3)}"
            if ldm != "norm" and m.group(3) == "weight":
                shape = list(shape) + [1, 1]
        out[n] = (dt, shape, arr)
    return out


T5_QUANT = re.compile(r"encoder\.block\.\d+\.layer\.\d+\."
                      r"(SelfAttention\.[qkvo]|DenseReluDense\.w[io](_[01])?)"
                      r"\.weight$")


def scaled(out, name, dt, shape, arr):
    """name = scaled_fp8 E4M3 of the weight, with scale_weight/scale_input."""
    w = to_f32(dt, arr)
    amax = np.float32(np.abs(w).max())
    s = amax / np.float32(448.0) if amax > 0 else np.float32(1.0)
    base = name[:-len(".weight")]
    out[name] = ("F8_E4M3", shape, e4m3(w / s))
    out[base + ".scale_weight"] = ("F32", [], np.array([s], np.float32))
    out[base + ".scale_input"] = ("F32", [], np.array([1.0], np.float32))


def one_file(folder):
    for n in ("diffusion_pytorch_model.safetensors", "model.safetensors"):
        try:
            return read_st(f"{folder}/{n}")
        except FileNotFoundError:
            pass
    raise SystemExit(f"{folder}: no single safetensors file")


def main():
    src, dst = sys.argv[1], sys.argv[2]
    bundle = os.path.exists(f"{src}/model_index.json")
    tdir = f"{src}/transformer" if bundle else src
    sd = one_file(tdir)
    pre = "model.diffusion_model."
    out = {pre + "scaled_fp8": ("F8_E4M3", [0], np.zeros(0, np.uint8))}
    for k, (dt, shape, arr) in to_original(sd).items():
        if QUANT.search(k):
            scaled(out, pre + k, dt, shape, arr)
        else:
            out[pre + k] = (dt, shape, arr)
    if bundle:
        for k, v in vae_to_ldm(one_file(f"{src}/vae")).items():
            out["first_stage_model." + k] = v
        for comp, name in (("text_encoder", "clip_l"),
                           ("text_encoder_2", "clip_g"),
                           ("text_encoder_3", "t5xxl")):
            if not os.path.isdir(f"{src}/{comp}"):
                continue
            p = f"text_encoders.{name}.transformer."
            for k, (dt, shape, arr) in one_file(f"{src}/{comp}").items():
                if name == "t5xxl" and T5_QUANT.search(k):
                    scaled(out, p + k, dt, shape, arr)
                else:
                    out[p + k] = (dt, shape, arr)
    write_st(dst, out)


if __name__ == "__main__":
    main()
