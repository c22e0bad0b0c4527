#!/usr/bin/env python3
"""The reference's own BF16 error on the tiny fixtures: diffusers'
StableDiffusion3Pipeline in BF16 on the GPU, every public case, from the
golden noise (noise_cpu), compared with the golden final latents (F32 CPU).
Prints one JSON line per case: {"case": "large.p0", "ref_bf16_rel_l2": x}.
Usage: tiny_ref.py FIXTURES   (diffusers' source on PYTHONPATH)"""
import json, sys
import torch
from safetensors.torch import load_file
from sdref import tiny_pipeline

fx = sys.argv[1]
g = load_file(f'{fx}/golden-public.safetensors')
cases = json.load(open(f'{fx}/cases-public.json'))
for model in ('large', 'medium'):
    pipe = tiny_pipeline(fx, model, torch.bfloat16, 'tiny-ref').to('cuda')
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
