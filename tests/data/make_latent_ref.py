#!/usr/bin/env python3
"""tests/data/latent_upscale_ref.json: torch.nn.functional.interpolate of a
fixed (1, 2, 5, 7) tensor to (9, 13) and (10, 14), the modes of A1111's
latent upscalers, for test_sampler.c. Usage: make_latent_ref.py (torch)."""
import json, os
import torch
import torch.nn.functional as F

x = torch.tensor([[(((c * 5 + y) * 7 + x) * 37 % 23) / 7.0 - 1.5
                   for x in range(7)] for c in range(2) for y in range(5)],
                 dtype=torch.float32).view(1, 2, 5, 7)
out = {}
for mode, kw in (('Latent', dict(mode='bilinear')),
                 ('Latent (bicubic)', dict(mode='bicubic')),
                 ('Latent (nearest)', dict(mode='nearest')),
                 ('Latent (nearest-exact)', dict(mode='nearest-exact'))):
    for size in ((9, 13), (10, 14)):
        y = F.interpolate(x, size=size, antialias=False, **kw)
        out[f'{mode}|{size[0]}x{size[1]}'] = [float(v) for v in y.view(-1)]
json.dump(out, open(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                 'latent_upscale_ref.json'), 'w'))
print(len(out), 'cases')
