#!/usr/bin/env python3
"""comfy_fp8.py: a ComfyUI "fp8_scaled" SD3.5 transformer file from a
diffusers folder, written as the community's conversion scripts write one
(PyTorch, safetensors), with nothing of this project's code: the key map is
the inverse of diffusers' scripts/convert_sd3_to_diffusers.py, derived here.

    python3 tests/gpu/comfy_fp8.py MODEL_DIR OUT.safetensors
        [--form scaled_fp8|comfy_quant] [--keep KINDS] [--device cpu|cuda]
        [--own-io]

MODEL_DIR: a diffusers SD3.5 folder (Large, Large Turbo, Medium) or its
transformer/ folder, holding one *.safetensors file or shards listed in a
*.safetensors.index.json.

Written, every name under "model.diffusion_model.":
  - the original MMDiT keys: pos_embed, x_embedder.proj, t_embedder.mlp.N,
    y_embedder.mlp.N, context_embedder, joint_blocks.N.{x_block,
    context_block}.{attn.qkv (q, k, v fused), attn.ln_q, attn.ln_k,
    attn.proj, adaLN_modulation.1, mlp.fc1, mlp.fc2}, x_block.attn2.* of
    MMDiT-X (Medium), final_layer.{linear, adaLN_modulation.1}; the final
    adaLN and the last block's context adaLN with their halves in SAI's
    (shift, scale) order (diffusers keeps (scale, shift));
  - FP8 layers, one scale per tensor: weight = (w / s) cast to
    float8_e4m3fn, s = max|w| / 448;
      scaled_fp8 (ComfyUI's older form, as in sd3.5_large_fp8_scaled):
        the marker "scaled_fp8", an empty float8_e4m3fn tensor (its dtype
        names the format; 2 elements would ask ComfyUI for matmuls in full
        precision), <layer>.scale_weight = s (F32 scalar) and
        <layer>.scale_input = 1.0;
      comfy_quant (the newer form): <layer>.weight_scale = s,
        <layer>.input_scale = 1.0 and <layer>.comfy_quant = U8 bytes of
        {"format": "float8_e4m3fn"};
  - every other tensor as it is (dtype and values: BF16 in the releases).

The FP8 layers are the weights the engine's default FP8 policy quantizes
(engine/precision.c, README "FP8 precision policy"): the joint blocks'
linear weights (qkv, proj, mlp, adaLN, attn2) whose two dimensions are
multiples of 16; --keep takes the policy's kind names as sd-cli's --keep
does. So `sd-cli fp8-check MODEL_DIR OUT` finds every tensor equal to
quantize-at-load (per tensor) but two of the three parts of each fused qkv:
its one scale is that of q, k and v together, so the parts without the
largest value differ by FP8 rounding.

Invariant: w / s is an IEEE float32 division (w widened first; s computed
on the host, then handed to w's device as a tensor: torch's CUDA division
by a host scalar multiplies by 1/s) and the quotient, clamped to +-448
(torch's cast gives NaN from 464 up), is cast rounding to nearest even.
Without torch.float8_e4m3fn (torch before 2.1) e4m3_codes() rounds the
same way in float32 torch ops. The safetensors package reads the tensors
where it is installed, and writes the file where torch has float8 too;
otherwise, or with --own-io, the format is read and written here (the
header's JSON, then the tensors' bytes in its order, streamed).
"""

import argparse
import ctypes
import json
import mmap
import os
import struct
import sys
import time

import torch

try:
    from safetensors import safe_open
    from safetensors.torch import save_file
except ImportError:
    safe_open = save_file = None


F8 = getattr(torch, "float8_e4m3fn", None)
E4M3_MAX = 448.0
PREFIX = "model.diffusion_model."

DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16,
          "BF16": torch.bfloat16, "I64": torch.int64, "I32": torch.int32,
          "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
          "BOOL": torch.bool}
if F8 is not None:
    DTYPES["F8_E4M3"] = F8
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}


# ---- reading the diffusers transformer ---------------------------------


class Source:
    """The transformer's tensors: name -> (dtype name, shape), read on
    demand, from one file or the shards of an index."""

    def __init__(self, folder, pkg):
        names = sorted(os.listdir(folder))
        index = [n for n in names if n.endswith(".safetensors.index.json")]
        if len(index) > 1:
            sys.exit(f"{folder}: {len(index)} index files, expected one")
        if index:
            with open(os.path.join(folder, index[0])) as f:
                wmap = json.load(f)["weight_map"]
            files = sorted(set(wmap.values()))
        else:
            files = [n for n in names if n.endswith(".safetensors")]
            if len(files) != 1:
                sys.exit(f"{folder}: {len(files)} .safetensors files and no "
                         f"index, expected one")
            wmap = None
        self.meta, self.where, self.handles = {}, {}, []
        for n in files:
            h = StFile(os.path.join(folder, n), pkg)
            self.handles.append(h)
            for k, dt, shape in h.list():
                if k in self.meta:
                    sys.exit(f"{folder}: tensor {k} in two shards")
                self.meta[k] = (dt, shape)
                self.where[k] = h
        if wmap is not None:
            lost = [k for k, n in wmap.items() if self.where.get(k) is None
                    or os.path.basename(self.where[k].path) != n]
            if lost:
                sys.exit(f"{folder}: {len(lost)} tensors of the index not in "
                         f"their shard, e.g. {lost[0]}")

    def get(self, name):
        return self.where[name].get(name)


class StFile:
    """One safetensors file: 8-byte header length, JSON header, the data.
    The header is read here; a tensor comes from the safetensors package
    (pkg), else as a view of a private mapping."""

    def __init__(self, path, pkg):
        self.path = path
        with open(path, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            self.hdr = json.loads(f.read(n))
            self.base = 8 + n
            if not pkg:
                self.map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        self.hdr.pop("__metadata__", None)
        self.f = safe_open(path, framework="pt") if pkg else None

    def list(self):
        for k, v in self.hdr.items():
            yield k, v["dtype"], list(v["shape"])

    def get(self, name):
        v = self.hdr[name]
        if v["dtype"] not in DTYPES:
            sys.exit(f"{self.path}: {name}: dtype {v['dtype']} not read here")
        if self.f is not None:
            return self.f.get_tensor(name)
        dt = DTYPES[v["dtype"]]
        b, e = v["data_offsets"]
        n = 1
        for d in v["shape"]:
            n *= d
        if n == 0:
            return torch.empty(v["shape"], dtype=dt)
        t = torch.frombuffer(self.map, dtype=dt, count=n,
                             offset=self.base + b)
        if t.numel() * t.element_size() != e - b:
            sys.exit(f"{self.path}: {name}: {e - b} bytes for shape "
                     f"{v['shape']}")
        return t.reshape(v["shape"])


# ---- the key map: diffusers -> the original MMDiT ---------------------


# (original key without .weight/.bias, diffusers parts, swap halves):
# scripts/convert_sd3_to_diffusers.py read backwards (it pops the original
# keys into these names, chunks qkv in 3 along rows, swaps the halves of
# the final adaLN and of the last block's context adaLN)
TOP = [
    ("x_embedder.proj", ["pos_embed.proj"], False),
    ("t_embedder.mlp.0", ["time_text_embed.timestep_embedder.linear_1"],
     False),
    ("t_embedder.mlp.2", ["time_text_embed.timestep_embedder.linear_2"],
     False),
    ("y_embedder.mlp.0", ["time_text_embed.text_embedder.linear_1"], False),
    ("y_embedder.mlp.2", ["time_text_embed.text_embedder.linear_2"], False),
    ("context_embedder", ["context_embedder"], False),
    ("final_layer.linear", ["proj_out"], False),
    ("final_layer.adaLN_modulation.1", ["norm_out.linear"], True),
]


def block_map(i, last):
    b = f"transformer_blocks.{i}."
    x = f"joint_blocks.{i}.x_block."
    c = f"joint_blocks.{i}.context_block."
    qkv = ("to_q", "to_k", "to_v")
    return [
        (x + "attn.qkv", [b + "attn." + p for p in qkv], False),
        (x + "attn.ln_q", [b + "attn.norm_q"], False),
        (x + "attn.ln_k", [b + "attn.norm_k"], False),
        (x + "attn.proj", [b + "attn.to_out.0"], False),
        (x + "attn2.qkv", [b + "attn2." + p for p in qkv], False),
        (x + "attn2.ln_q", [b + "attn2.norm_q"], False),
        (x + "attn2.ln_k", [b + "attn2.norm_k"], False),
        (x + "attn2.proj", [b + "attn2.to_out.0"], False),
        (x + "adaLN_modulation.1", [b + "norm1.linear"], False),
        (x + "mlp.fc1", [b + "ff.net.0.proj"], False),
        (x + "mlp.fc2", [b + "ff.net.2"], False),
        (c + "attn.qkv", [b + "attn.add_q_proj", b + "attn.add_k_proj",
                          b + "attn.add_v_proj"], False),
        (c + "attn.ln_q", [b + "attn.norm_added_q"], False),
        (c + "attn.ln_k", [b + "attn.norm_added_k"], False),
        # the last block's context is pre-only: no proj, no mlp
        (c + "attn.proj", [b + "attn.to_add_out"], False),
        (c + "adaLN_modulation.1", [b + "norm1_context.linear"], last),
        (c + "mlp.fc1", [b + "ff_context.net.0.proj"], False),
        (c + "mlp.fc2", [b + "ff_context.net.2"], False),
    ]


def mmdit_plan(src, nlayers):
    """[(original key, [diffusers names], swap)] for every source tensor."""
    layers = list(TOP)
    for i in range(nlayers):
        layers += block_map(i, i == nlayers - 1)
    rules = [("pos_embed", ["pos_embed.pos_embed"], False)]
    for key, parts, swap in layers:
        for tail in ("weight", "bias"):
            rules.append((f"{key}.{tail}", [f"{p}.{tail}" for p in parts],
                          swap))
    plan, used = [], set()
    for key, parts, swap in rules:
        have = [p in src.meta for p in parts]
        if not any(have):
            continue                    # no attn2 here, pre-only context
        if not all(have):
            sys.exit(f"{key}: parts missing: {parts}")
        shapes = [src.meta[p][1] for p in parts]
        dts = {src.meta[p][0] for p in parts}
        if len(dts) != 1 or any(s != shapes[0] for s in shapes):
            sys.exit(f"{key}: parts of other dtypes or shapes: {parts}")
        if swap and shapes[0][0] % 2:
            sys.exit(f"{parts[0]}: odd rows, no halves to swap")
        plan.append((key, parts, swap))
        used.update(parts)
    left = sorted(set(src.meta) - used)
    if left:
        sys.exit(f"{len(left)} diffusers tensors not mapped, e.g. {left[:3]}")
    return plan


def count_layers(src, folder):
    try:
        with open(os.path.join(folder, "config.json")) as f:
            return int(json.load(f)["num_layers"])
    except (OSError, KeyError, ValueError):
        return 1 + max(int(k.split(".")[1]) for k in src.meta
                       if k.startswith("transformer_blocks."))


# ---- the FP8 policy (engine/precision.c, MMDiT kinds) ------------------


KINDS = [
    (".attn.to_q.weight", "img_qkv"), (".attn.to_k.weight", "img_qkv"),
    (".attn.to_v.weight", "img_qkv"), (".attn2.to_q.weight", "img_qkv"),
    (".attn2.to_k.weight", "img_qkv"), (".attn2.to_v.weight", "img_qkv"),
    (".attn.to_out.0.weight", "img_out"),
    (".attn2.to_out.0.weight", "img_out"),
    (".ff.net.0.proj.weight", "img_ff_up"),
    (".ff.net.2.weight", "img_ff_down"),
    (".attn.add_q_proj.weight", "txt_qkv"),
    (".attn.add_k_proj.weight", "txt_qkv"),
    (".attn.add_v_proj.weight", "txt_qkv"),
    (".attn.to_add_out.weight", "txt_out"),
    (".ff_context.net.0.proj.weight", "txt_ff_up"),
    (".ff_context.net.2.weight", "txt_ff_down"),
    (".norm1.linear.weight", "adaln"),
    (".norm1_context.linear.weight", "adaln"),
]
MMDIT = sorted({k for _, k in KINDS})
GROUPS = {"all": MMDIT, "mmdit": MMDIT, "none": [], "t5": [], "clip": []}
T5_KINDS = ["t5_qkv", "t5_out", "t5_ff_up", "t5_ff_down"]


def fp8_kinds(keep):
    """The MMDiT kinds in FP8 under --keep (as sd-cli: none given or
    "default": the default policy, every MMDiT kind; else every kind but
    those listed)."""
    if keep is None or keep == "default":
        return set(MMDIT)
    kept = set()
    for w in keep.replace(",", " ").split():
        if w in GROUPS:
            kept.update(GROUPS[w])
        elif w in MMDIT or w in T5_KINDS:
            kept.add(w)
        else:
            sys.exit(f"--keep: unknown layer kind \"{w}\"")
    return set(MMDIT) - kept


def fp8_kind(name, shape):
    if (not name.startswith("transformer_blocks.") or len(shape) != 2
            or shape[0] % 16 or shape[1] % 16):
        return None                     # FP8 GEMMs need multiples of 16
    for suffix, kind in KINDS:
        if name.endswith(suffix):
            return kind
    return None


# ---- E4M3 ---------------------------------------------------------------


def pow2(e):
    """2**e, exactly, for an int32 tensor of exponents in the normal range."""
    return ((e + 127) << 23).to(torch.int32).view(torch.float32)


def e4m3_codes(x):
    """float32 x, |x| <= 448 -> float8_e4m3fn codes (uint8), rounding to
    nearest even: |x| in its binade [2^e, 2^(e+1)) has 8 steps of 2^(e-3);
    below 2^-6 the subnormal step 2^-9 (the binade of e = -6 continued)."""
    sign = torch.signbit(x).to(torch.uint8) << 7
    a = x.abs()
    _, e = torch.frexp(a)               # a = m * 2^e, m in [0.5, 1)
    ex = torch.clamp(e - 1, min=-6)
    step = pow2(ex - 3)
    q = torch.clamp(torch.round(a / step) * step, max=E4M3_MAX)
    _, e2 = torch.frexp(q)              # the binade after rounding up
    ex2 = torch.clamp(e2 - 1, min=-6)
    normal = q >= 2.0 ** -6
    mant = (q / pow2(ex2) - 1.0) * 8.0  # 0..7 for a normal q
    code = torch.where(normal, (ex2 + 7).to(torch.float32) * 8.0 + mant,
                       q * 2.0 ** 9)
    return code.to(torch.uint8) | sign


def quantize(w, device):
    """(the weight in float8_e4m3fn, or its E4M3 codes as uint8 where torch
    has no float8; the F32 scalar scale)."""
    x = w.to(device=device, dtype=torch.float32)
    amax = x.abs().max().cpu()
    if not torch.isfinite(amax):
        sys.exit("a weight holds a value that is not finite")
    s = amax / E4M3_MAX if amax > 0 else torch.tensor(1.0)
    y = torch.clamp(x / s.to(device), -E4M3_MAX, E4M3_MAX)
    q = y.to(F8) if F8 is not None else e4m3_codes(y)
    return q.cpu(), s.reshape(()).to(torch.float32)


# ---- the plan of the output ---------------------------------------------


class Out:
    """One output tensor: its name, dtype name and shape, made on demand
    (make() is called once, in file order)."""

    def __init__(self, name, dtype, shape, make):
        self.name, self.dtype, self.shape, self.make = name, dtype, shape, \
            make

    def nbytes(self):
        n = {"F8_E4M3": 1, "U8": 1, "I8": 1, "BOOL": 1, "BF16": 2, "F16": 2,
             "I16": 2, "F32": 4, "I32": 4, "F64": 8, "I64": 8}[self.dtype]
        for d in self.shape:
            n *= d
        return n


def joined(src, parts, swap):
    ts = [src.get(p) for p in parts]
    t = ts[0] if len(ts) == 1 else torch.cat(ts, 0)
    if swap:
        h = t.shape[0] // 2
        t = torch.cat([t[h:], t[:h]], 0)
    return t


def layer_outs(name, parts, swap, shape, src, form, device, stats):
    """The FP8 weight "name" and its scales in the form asked for."""
    base = name[:-len(".weight")]
    cell = {}

    def weight():
        q, s = quantize(joined(src, parts, swap), device)
        cell["s"] = s
        stats["fp8"] += 1
        return q

    def one():
        return torch.tensor(1.0, dtype=torch.float32)

    if form == "scaled_fp8":
        names = (base + ".scale_weight", base + ".scale_input")
    else:
        names = (base + ".weight_scale", base + ".input_scale")
    outs = [Out(name, "F8_E4M3", shape, weight),
            Out(names[0], "F32", [], lambda: cell.pop("s")),
            Out(names[1], "F32", [], one)]
    if form == "comfy_quant":
        cq = list(json.dumps({"format": "float8_e4m3fn"}).encode("utf-8"))
        outs.append(Out(base + ".comfy_quant", "U8", [len(cq)],
                        lambda: torch.tensor(cq, dtype=torch.uint8)))
    return outs


def plan_outs(src, plan, form, kinds, device, stats):
    outs = []
    if form == "scaled_fp8":
        outs.append(Out(PREFIX + "scaled_fp8", "F8_E4M3", [0],
                        lambda: torch.empty(0, dtype=F8 or torch.uint8)))
    for key, parts, swap in plan:
        dt, shape = src.meta[parts[0]]
        kind = fp8_kind(parts[0], shape)
        if len(parts) > 1:
            shape = [shape[0] * len(parts)] + shape[1:]
        if kind in kinds:
            stats["kinds"][kind] = stats["kinds"].get(kind, 0) + 1
            outs += layer_outs(PREFIX + key, parts, swap, shape, src, form,
                               device, stats)
        else:
            outs.append(Out(PREFIX + key, dt, shape,
                            lambda p=parts, s=swap: joined(src, p, s)))
    return outs


# ---- writing --------------------------------------------------------------


def raw_bytes(t):
    t = t.contiguous()
    if t.numel() == 0:
        return b""
    return ctypes.string_at(t.data_ptr(), t.numel() * t.element_size())


def write_own(path, outs):
    """The safetensors format: u64 header length, the JSON header (padded
    with spaces to 8 bytes), the tensors' bytes in header order."""
    hdr, off = {"__metadata__": {"format": "pt"}}, 0
    for o in outs:
        n = o.nbytes()
        hdr[o.name] = {"dtype": o.dtype, "shape": o.shape,
                       "data_offsets": [off, off + n]}
        off += n
    h = json.dumps(hdr, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for o in outs:
            t = o.make()
            b = raw_bytes(t.view(torch.uint8) if F8 is not None
                          and t.dtype == F8 else t)
            if len(b) != o.nbytes():
                sys.exit(f"{o.name}: {len(b)} bytes made, {o.nbytes()} "
                         f"planned")
            f.write(b)


def write_package(path, outs):
    tensors = {}
    for o in outs:
        t = o.make()
        if DTYPE_NAMES.get(t.dtype) != o.dtype or list(t.shape) != o.shape:
            sys.exit(f"{o.name}: made {t.dtype} {list(t.shape)}, planned "
                     f"{o.dtype} {o.shape}")
        tensors[o.name] = t.contiguous()
    save_file(tensors, path, metadata={"format": "pt"})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="diffusers SD3.5 folder or its "
                    "transformer/")
    ap.add_argument("out", help="the .safetensors file to write")
    ap.add_argument("--form", choices=("scaled_fp8", "comfy_quant"),
                    default="scaled_fp8")
    ap.add_argument("--keep", help="layer kinds kept in BF16 (sd-cli's "
                    "--keep: kind names, mmdit, none, default)")
    ap.add_argument("--device", default="cpu", help="where the scales and "
                    "casts are computed (cpu, cuda)")
    ap.add_argument("--own-io", action="store_true", help="read and write "
                    "the format here even where the safetensors package is")
    a = ap.parse_args()

    t0 = time.time()
    folder = a.model
    if os.path.isdir(os.path.join(folder, "transformer")):
        folder = os.path.join(folder, "transformer")
    read_pkg = safe_open is not None and not a.own_io
    src = Source(folder, read_pkg)
    plan = mmdit_plan(src, count_layers(src, folder))
    stats = {"fp8": 0, "kinds": {}}
    outs = plan_outs(src, plan, a.form, fp8_kinds(a.keep), a.device, stats)
    pkg = read_pkg and F8 is not None
    (write_package if pkg else write_own)(a.out, outs)
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(stats["kinds"].items()))
    print(f"{a.out}: {len(outs)} tensors, {stats['fp8']} FP8 E4M3 with "
          f"per-tensor scales ({a.form}; {kinds}), "
          f"{os.path.getsize(a.out) / 2**30:.2f} GiB; torch "
          f"{torch.__version__}, E4M3 by "
          f"{'its float8 cast' if F8 is not None else 'e4m3_codes()'}, "
          f"read by {'safetensors' if read_pkg else 'this script'}, "
          f"written by {'safetensors' if pkg else 'this script'}; "
          f"{time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
