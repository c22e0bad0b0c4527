#!/usr/bin/env python3
"""The reference's own BF16 error on the tiny fixtures: diffusers'
StableDiffusion3Pipeline in BF16 on the GPU, every public case, from the
golden noise (noise_cpu), compared with the golden final latents (F32 CPU).
Prints one JSON line per case: {"case": "large.p0", "ref_bf16_rel_l2": x}.
Usage: tiny_ref.py FIXTURES   (diffusers' source on PYTHONPATH)"""
import json, os, sys
import torch
from safetensors.torch import load_file
from diffusers import StableDiffusion3Pipeline

fx = sys.argv[1]


def staged(src):
    """The fixture folder with its link files (a path as the content, as
    git stores symbolic links) made real symbolic links."""
    dst = f'/tmp/sd/tiny-ref-{os.path.basename(src)}'
    os.makedirs(dst, exist_ok=True)
    for e in os.listdir(src):
        p, q = os.path.join(src, e), os.path.join(dst, e)
        if os.path.lexists(q):
            continue
        if os.path.isfile(p) and os.path.getsize(p) < 256 and e != \
                'model_index.json':
            target = os.path.normpath(os.path.join(src, open(p).read().strip()))
            os.symlink(target if os.path.isdir(target) else p, q)
        else:
            os.symlink(os.path.abspath(p), q)
    return dst

g = load_file(f'{fx}/golden-public.safetensors')
cases = json.load(open(f'{fx}/cases-public.json'))
for model in ('large', 'medium'):
    pipe = StableDiffusion3Pipeline.from_pretrained(
        staged(f'{fx}/tiny-sd35-{model}'),
        torch_dtype=torch.bfloat16).to('cuda')
    pipe.set_progress_bar_config(disable=True)
    for c in cases[model]:
        key = f"{model}.{c['name']}"
        noise = g[f'{key}.noise_cpu'].to('cuda', torch.bfloat16)
        lat = pipe(prompt=c['prompt'], negative_prompt=c['negative_prompt'],
                   width=c['width'], height=c['height'],
                   num_inference_steps=c['steps'], guidance_scale=c['cfg'],
                   latents=noise, output_type='latent').images
        ref = g[f'{key}.final_latents'].float()
        e = ((lat.float().cpu() - ref).norm() / ref.norm()).item()
        print(json.dumps({'case': key, 'ref_bf16_rel_l2': e}), flush=True)
