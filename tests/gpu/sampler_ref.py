#!/usr/bin/env python3
"""Reference final latents of A1111's samplers and schedulers on the tiny
SD3.5 fixtures, for tests/test_sampler.c.

The tiny transformer and text encoders run through diffusers in float32 on
the CPU; the transformer is wrapped as a k-diffusion denoiser the way A1111
1.10 wraps SD3 (denoised = x - sigma * v, timestep = sigma * 1000, CFG on
[uncond; cond]); the samplers are k-diffusion's own functions (the checkout
given), the schedules k-diffusion's get_sigmas_* and DiscreteSchedule over
SD3's discrete flow table, with A1111's sd_schedulers.py rules written out
below. The stochastic samplers get the noise our engine draws (see
ancestral_seed in engine/pipeline.c: torch CPU randn of a splitmix seed per
step), so they are compared exactly too.

Usage: sampler_ref.py FIXTURES KDIFFUSION_CHECKOUT OUT.safetensors
(diffusers importable; torchsde, torchdiffeq, scipy, tqdm optional)."""
import importlib, importlib.machinery, json, math, os, sys, types

import torch
from safetensors.torch import save_file

fx, kd_path, out_path = sys.argv[1], sys.argv[2], sys.argv[3]
torch.set_grad_enabled(False)


def stub(name, **attrs):
    try:
        return importlib.import_module(name)
    except Exception:
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        # diffusers asks importlib.util.find_spec of optional packages,
        # which refuses a module without a spec
        m.__spec__ = importlib.machinery.ModuleSpec(name, None)
        sys.modules[name] = m
        return m


# k-diffusion's sampling.py and external.py without the package's training
# dependencies (torchvision, clip, kornia...): only utils.append_dims is used.
stub('scipy')
stub('scipy.integrate')
stub('torchdiffeq', odeint=None)
stub('torchsde')
stub('tqdm')
stub('tqdm.auto', trange=lambda n, *a, **k: range(n),
     tqdm=lambda x, *a, **k: x)
pkg = types.ModuleType('k_diffusion')
pkg.__path__ = [os.path.join(kd_path, 'k_diffusion')]
sys.modules['k_diffusion'] = pkg
utils = types.ModuleType('k_diffusion.utils')
utils.append_dims = lambda x, n: x[(...,) + (None,) * (n - x.ndim)]
sys.modules['k_diffusion.utils'] = utils
pkg.utils = utils
K = importlib.import_module('k_diffusion.sampling')
Kext = importlib.import_module('k_diffusion.external')

from diffusers import FlowMatchEulerDiscreteScheduler
from sdref import tiny_pipeline


SHIFT, TRAIN = 3.0, 1000


class FlowSchedule(Kext.DiscreteSchedule):
    """A1111 modules/models/sd3: ModelSamplingDiscreteFlow's table
    sigma(t) = shift t / (1 + (shift - 1) t), t = arange(1, 1001) / 1000,
    under k-diffusion's DiscreteSchedule."""
    def __init__(self):
        t = torch.arange(1, TRAIN + 1, 1) / TRAIN
        super().__init__(SHIFT * t / (1 + (SHIFT - 1) * t), quantize=False)


FS = FlowSchedule()
SMIN, SMAX = FS.sigmas[0].item(), FS.sigmas[-1].item()


def beta_ppf(p, a, b):
    """scipy.stats.beta.ppf when scipy is there, else bisection."""
    try:
        from scipy import stats
        return float(stats.beta.ppf(p, a, b))
    except Exception:
        lo, hi = 0.0, 1.0
        for _ in range(200):
            mid = (lo + hi) / 2
            n, s, x = 20000, 0.0, 0.0
            # I_mid(a, b) by the midpoint rule on t^(a-1)(1-t)^(b-1)
            h = mid / n
            s = sum(((i + .5) * h) ** (a - 1) * (1 - (i + .5) * h) ** (b - 1)
                    for i in range(n)) * h
            tot = math.gamma(a) * math.gamma(b) / math.gamma(a + b)
            lo, hi = (mid, hi) if s / tot < p else (lo, mid)
        return (lo + hi) / 2


def sigmas_for(sched, n):
    """A1111 1.10 sd_schedulers.py on SD3's schedule; 'diffusers' is the
    FlowMatchEulerDiscreteScheduler schedule our Automatic uses."""
    if sched == 'diffusers':
        s = FlowMatchEulerDiscreteScheduler(num_train_timesteps=TRAIN,
                                            shift=SHIFT)
        s.set_timesteps(n)
        return s.sigmas.float()
    if sched in ('uniform', 'normal'):
        if sched == 'uniform':
            return FS.get_sigmas(n).float()
        start, end = FS.sigma_to_t(torch.tensor(SMAX)), \
            FS.sigma_to_t(torch.tensor(SMIN))
        ts = torch.linspace(start, end, n)
        return torch.FloatTensor([FS.t_to_sigma(t) for t in ts] + [0.0])
    if sched == 'sgm_uniform':
        start, end = FS.sigma_to_t(torch.tensor(SMAX)), \
            FS.sigma_to_t(torch.tensor(SMIN))
        ts = torch.linspace(start, end, n + 1)[:-1]
        return torch.FloatTensor([FS.t_to_sigma(t) for t in ts] + [0.0])
    if sched == 'karras':
        return K.get_sigmas_karras(n, SMIN, SMAX, rho=7.0).float()
    if sched == 'exponential':
        return K.get_sigmas_exponential(n, SMIN, SMAX).float()
    if sched == 'kl_optimal':
        amin = torch.arctan(torch.tensor(SMIN))
        amax = torch.arctan(torch.tensor(SMAX))
        i = torch.arange(n + 1)
        return torch.tan(i / n * amin + (1.0 - i / n) * amax).float()
    if sched == 'simple':
        ss = len(FS.sigmas) / n
        return torch.FloatTensor([float(FS.sigmas[-(1 + int(x * ss))])
                                  for x in range(n)] + [0.0])
    if sched == 'ddim':
        ss = max(len(FS.sigmas) // n, 1)
        sigs, x = [], 1
        while x < len(FS.sigmas):
            sigs.append(float(FS.sigmas[x]))
            x += ss
        return torch.FloatTensor(sigs[::-1] + [0.0])
    if sched == 'beta':
        ts = [1 - i / (n - 1) if n > 1 else 1.0 for i in range(n)]
        return torch.FloatTensor([SMIN + beta_ppf(t, 0.6, 0.6) * (SMAX - SMIN)
                                  for t in ts] + [0.0])
    raise ValueError(sched)


def ancestral_seed(seed, i):
    """engine/pipeline.c ancestral_seed: splitmix64 of seed and step."""
    M = (1 << 64) - 1
    z = (seed + 0x9e3779b97f4a7c15 * (i + 1)) & M
    z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & M
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & M
    return (z ^ (z >> 31)) & 0xffffffff


def noise_sampler_for(seed, x, sigmas):
    """Step-indexed noise, as the engine draws it (torch CPU generator)."""
    idx = {float(s): i for i, s in enumerate(sigmas[:-1].tolist())}

    def ns(sigma, sigma_next):
        i = idx[float(sigma)]
        g = torch.Generator('cpu').manual_seed(ancestral_seed(seed, i))
        return torch.randn(x.numel(), generator=g).view(x.shape)
    return ns


def sample_lcm_flow(model, x, sigmas, noise_sampler, extra_args=None):
    """LCM with flow renoising (ComfyUI's sample_lcm with noise_scaling)."""
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        den = model(x, sigmas[i] * s_in)
        x = den
        if sigmas[i + 1] > 0:
            s1 = sigmas[i + 1]
            x = (1 - s1) * den + s1 * noise_sampler(sigmas[i], sigmas[i + 1])
    return x


def sample_euler_a_rf(model, x, sigmas, noise_sampler, eta=1.0):
    """k-diffusion's sample_euler_ancestral_RF (later versions), eta 1."""
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        den = model(x, sigmas[i] * s_in)
        s0, s1 = sigmas[i].double(), sigmas[i + 1].double()
        if s1 == 0:
            x = den
            continue
        sd = s1 * (1 + (s1 / s0 - 1) * eta)
        a1, ad = 1 - s1, 1 - sd
        rn = (s1 ** 2 - sd ** 2 * a1 ** 2 / ad ** 2).clamp(min=0).sqrt()
        r = sd / s0
        x = (r * x.double() + (1 - r) * den.double())
        x = (a1 / ad * x + rn * noise_sampler(sigmas[i], sigmas[i + 1])
             .double()).float()
    return x


# (name in the C test, A1111 sampler label, scheduler label, sampler, sched)
CASES = [
    ('euler.automatic', 'Euler', 'Automatic', 'euler', 'diffusers'),
    ('euler.uniform', 'Euler', 'Uniform', 'euler', 'uniform'),
    ('euler.sgm_uniform', 'Euler', 'SGM Uniform', 'euler', 'sgm_uniform'),
    ('euler.simple', 'Euler', 'Simple', 'euler', 'simple'),
    ('euler.normal', 'Euler', 'Normal', 'euler', 'normal'),
    ('euler.kl_optimal', 'Euler', 'KL Optimal', 'euler', 'kl_optimal'),
    ('euler.ddim', 'Euler', 'DDIM', 'euler', 'ddim'),
    ('euler.beta', 'Euler', 'Beta', 'euler', 'beta'),
    ('euler.exponential', 'Euler', 'Exponential', 'euler', 'exponential'),
    ('heun.karras', 'Heun', 'Karras', 'heun', 'karras'),
    ('heun.automatic', 'Heun', 'Automatic', 'heun', 'diffusers'),
    ('dpmpp_2m.automatic', 'DPM++ 2M', 'Automatic', 'dpmpp_2m', 'karras'),
    ('dpmpp_2m.uniform', 'DPM++ 2M', 'Uniform', 'dpmpp_2m', 'uniform'),
    ('dpmpp_2m_sde.automatic', 'DPM++ 2M SDE', 'Automatic', 'dpmpp_2m_sde',
     'exponential'),
    ('dpmpp_3m_sde.automatic', 'DPM++ 3M SDE', 'Automatic', 'dpmpp_3m_sde',
     'exponential'),
    ('ddim.automatic', 'DDIM', 'Automatic', 'euler', 'diffusers'),
    ('euler_a.automatic', 'Euler a', 'Automatic', 'euler_a_rf', 'diffusers'),
    ('lcm.automatic', 'LCM', 'Automatic', 'lcm', 'diffusers'),
]

PROMPT, NEG, SEED, STEPS, CFG, SIZE = \
    'a red cube on a wooden table', 'blurry', 1234, 5, 4.5, 64

tensors, meta = {}, {'prompt': PROMPT, 'negative_prompt': NEG, 'seed': SEED,
                     'steps': STEPS, 'cfg': CFG, 'width': SIZE,
                     'height': SIZE, 'rng': 'CPU', 'cases': []}
for sched in ('diffusers', 'uniform', 'sgm_uniform', 'karras', 'exponential',
              'kl_optimal', 'simple', 'normal', 'ddim', 'beta'):
    for n in (1, 4, 5, 20, 30):
        tensors[f'sigmas.{sched}.{n}'] = sigmas_for(sched, n).contiguous()

for model in ('large', 'medium'):
    pipe = tiny_pipeline(fx, model, torch.float32, 'sampler-ref')
    pe, ne, pp, npool = pipe.encode_prompt(
        prompt=PROMPT, prompt_2=None, prompt_3=None, negative_prompt=NEG,
        do_classifier_free_guidance=True)
    ctx, pool = torch.cat([ne, pe]), torch.cat([npool, pp])
    tr = pipe.transformer

    def model_fn(x, sigma, **kw):
        xin = torch.cat([x, x])
        t = torch.cat([sigma, sigma]) * TRAIN
        v = tr(hidden_states=xin, timestep=t, encoder_hidden_states=ctx,
               pooled_projections=pool, return_dict=False)[0]
        vu, vc = v.chunk(2)
        v = vu + CFG * (vc - vu)
        return x - sigma.view(-1, 1, 1, 1) * v

    C = tr.config.in_channels
    g = torch.Generator('cpu').manual_seed(SEED)
    noise = torch.randn(C * (SIZE // 8) ** 2, generator=g).view(
        1, C, SIZE // 8, SIZE // 8)
    tensors[f'{model}.noise'] = noise.contiguous()
    for name, label, sch, smp, sched in CASES:
        if smp == 'dpmpp_3m_sde':
            sg = sigmas_for(sched, STEPS + 1)
            sg = torch.cat([sg[:-2], sg[-1:]])    # discard_next_to_last
        else:
            sg = sigmas_for(sched, STEPS)
        x = noise * sg[0]
        ns = noise_sampler_for(SEED, x, sg)
        if smp == 'euler':
            out = K.sample_euler(model_fn, x, sg, disable=True)
        elif smp == 'heun':
            out = K.sample_heun(model_fn, x, sg, disable=True)
        elif smp == 'dpmpp_2m':
            out = K.sample_dpmpp_2m(model_fn, x, sg, disable=True)
        elif smp == 'dpmpp_2m_sde':
            out = K.sample_dpmpp_2m_sde(model_fn, x, sg, disable=True,
                                        noise_sampler=ns)
        elif smp == 'dpmpp_3m_sde':
            out = K.sample_dpmpp_3m_sde(model_fn, x, sg, disable=True,
                                        noise_sampler=ns)
        elif smp == 'lcm':
            out = sample_lcm_flow(model_fn, x, sg, ns)
        elif smp == 'euler_a_rf':
            out = sample_euler_a_rf(model_fn, x, sg, ns)
        tensors[f'{model}.{name}.sigmas'] = sg.float().contiguous()
        tensors[f'{model}.{name}.final'] = out.float().contiguous()
        if model == 'large':
            meta['cases'].append({'name': name, 'sampler': label,
                                  'scheduler': sch})
        print(json.dumps({'case': f'{model}.{name}',
                          'norm': out.norm().item()}), flush=True)

save_file(tensors, out_path, metadata={'cases': json.dumps(meta)})
print('wrote', out_path)
