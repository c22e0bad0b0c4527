#!/usr/bin/env python3
"""tests/data/sampler_gauss.safetensors: the reference for test_sampler.c
without a model. k-diffusion's samplers (the checkout given) and A1111's
schedules (tests/gpu/sampler_ref.py's sigmas_for) run on an analytic
denoiser: data N(0.7, 0.5^2) per element, x = (1 - sigma) x0 + sigma eps,
denoised = E[x0 | x] in float32. Noise: torch CPU randn, eps from seed 7,
step i's noise from seed 1000 + 31 i, as the C test draws them.
Usage (python3-torch, python3-scipy): make_sampler_gauss.py KDIFFUSION_DIR
"""
import json, os, struct, sys

import torch

here = os.path.dirname(os.path.abspath(__file__))
ref = open(os.path.join(here, '..', 'gpu', 'sampler_ref.py')).read()
sys.argv = ['sampler_ref.py', '-', sys.argv[1], '-']
# the loader and the schedules of sampler_ref.py, without its model part
head = ref[:ref.index('from diffusers import')]
exec(head.replace('from safetensors.torch import save_file', ''))
part = ref[ref.index('SHIFT, TRAIN'):ref.index('def noise_sampler_for')]
FlowMatchEulerDiscreteScheduler = None
exec(part)
lcm_and_rf = ref[ref.index('def sample_lcm_flow'):ref.index('# (name in the C')]
exec(lcm_and_rf)

N, MU, S = 4096, 0.7, 0.5


def den(x, sigma, **kw):
    a = 1 - sigma.view(-1, 1)
    v = a * a * S * S + sigma.view(-1, 1) ** 2
    return MU + a * S * S * (x - a * MU) / v


def noise_sampler(sg):
    idx = {float(s): i for i, s in enumerate(sg[:-1].tolist())}

    def ns(sigma, sigma_next):
        g = torch.Generator().manual_seed(1000 + 31 * idx[float(sigma)])
        return torch.randn(N, generator=g).view(1, N)
    return ns


eps = torch.randn(N, generator=torch.Generator().manual_seed(7)).view(1, N)
out = {}
for sched in ('uniform', 'sgm_uniform', 'karras', 'exponential',
              'kl_optimal', 'simple', 'normal', 'ddim', 'beta'):
    for n in (1, 2, 4, 5, 20, 30):
        out[f'sigmas.{sched}.{n}'] = sigmas_for(sched, n)

CASES = [('euler', 'karras', 15), ('euler', 'uniform', 8),
         ('heun', 'karras', 15), ('heun', 'simple', 6),
         ('dpmpp_2m', 'karras', 15), ('dpmpp_2m', 'exponential', 10),
         ('dpmpp_2m_sde', 'exponential', 12), ('dpmpp_2m_sde', 'karras', 8),
         ('dpmpp_3m_sde', 'exponential', 12), ('dpmpp_3m_sde', 'sgm_uniform', 9),
         ('euler_a', 'normal', 12), ('lcm', 'kl_optimal', 6)]
for smp, sched, n in CASES:
    sg = sigmas_for(sched, n)
    x = eps * sg[0]
    ns = noise_sampler(sg)
    f = {'euler': lambda: K.sample_euler(den, x, sg, disable=True),
         'heun': lambda: K.sample_heun(den, x, sg, disable=True),
         'dpmpp_2m': lambda: K.sample_dpmpp_2m(den, x, sg, disable=True),
         'dpmpp_2m_sde': lambda: K.sample_dpmpp_2m_sde(
             den, x, sg, disable=True, noise_sampler=ns),
         'dpmpp_3m_sde': lambda: K.sample_dpmpp_3m_sde(
             den, x, sg, disable=True, noise_sampler=ns),
         'euler_a': lambda: sample_euler_a_rf(den, x, sg, ns),
         'lcm': lambda: sample_lcm_flow(den, x, sg, ns)}[smp]
    out[f'{smp}.{sched}.{n}'] = f().view(-1)

# safetensors, written by hand (F32, little-endian)
hdr, blob = {}, b''
for k in sorted(out):
    t = out[k].float().contiguous().view(-1)
    b = struct.pack(f'<{t.numel()}f', *t.tolist())
    hdr[k] = {'dtype': 'F32', 'shape': [t.numel()],
              'data_offsets': [len(blob), len(blob) + len(b)]}
    blob += b
hdr['__metadata__'] = {'cases': json.dumps(CASES)}
h = json.dumps(hdr).encode()
h += b' ' * (-len(h) % 8)
with open(os.path.join(here, 'sampler_gauss.safetensors'), 'wb') as fp:
    fp.write(struct.pack('<Q', len(h)) + h + blob)
print(len(out), 'tensors')
