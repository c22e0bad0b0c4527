#!/usr/bin/env python3
"""Reference img2img and inpainting on the tiny SD3.5 fixtures, for
tests/test_img2img_ref.c: diffusers' StableDiffusion3Img2ImgPipeline and
StableDiffusion3InpaintPipeline in float32 on the CPU.

The prompt embeddings are the goldens' (FX/golden-public.safetensors, case
p0 of cases-public.json), so no text encoder is loaded. The init image and
the masks are made here (8-bit, stored in the output), the noise is a CPU
generator seeded with the case's seed, as the engine's `rng: CPU` draws it
for the first image of a request.

How A1111 1.10 (which the engine follows) maps onto diffusers, and what is
set here so that the two compute the same thing:

- start step: A1111 runs the schedule of `steps` from index
  steps - t_enc - 1, t_enc = int(min(strength, 0.999) * steps), i.e.
  t_enc + 1 steps; diffusers from index int(steps - steps * strength),
  i.e. int(steps * strength) steps (one fewer: A1111 0.6 of 10 steps runs
  7, diffusers 6). The pipelines get strength (t_enc + 0.5) / steps, which
  starts on A1111's index (1.0 stays 1.0: both start at sigma 1, pure
  noise). The schedule itself is the same (FlowMatchEulerDiscrete, shift 3
  = A1111's "Automatic" for SD3), and so is the noising x = (1 - s) init +
  s noise.
- the VAE encoding: diffusers samples the posterior with the generator
  (retrieve_latents(..., sample_mode="sample")), which also moves the
  generator before the noise is drawn; the engine takes the posterior
  mean. retrieve_latents is replaced by its "argmax" mode (the mean) in
  both pipeline modules.
- inpainting's latent mask: diffusers resizes the binarized mask to the
  latents with nearest; A1111 with PIL's bicubic and rounds. The masks
  here are unions of 8x8-aligned blocks, where both give the same 0/1
  latent mask (stored, and compared exactly by the C test).
- inpainting's blend: diffusers puts the init latents, noised to the next
  sigma with the same noise, outside the mask after every step; A1111
  keeps the init latents outside the mask in the denoised estimate of
  every step (CFGDenoiser, mask_before_denoising off) and in the final
  latents. With Euler on flow matching and a 0/1 mask the two are the same
  arithmetic: x + (s' - s)(x - init)/s = (1 - s') init + s' noise when
  x = (1 - s) init + s noise.
- the image: diffusers returns the decoded image as it is; A1111 lays the
  original over it outside the mask (mask_blur 0: a 0/1 overlay). The
  stored image is diffusers' decode; the C test expects the original
  pixels outside the mask and this image inside.
- inpainting_fill 1 ("original"): both encode the unmasked init image.

Usage: img2img_ref.py FIXTURES OUT.safetensors (diffusers importable)."""
import json, os, sys

import torch
from safetensors.torch import load_file, save_file

from sdref import tiny_pipeline

fx, out_path = sys.argv[1], sys.argv[2]
torch.set_grad_enabled(False)

from diffusers.pipelines.stable_diffusion_3 import \
    pipeline_stable_diffusion_3_img2img as m_i2i, \
    pipeline_stable_diffusion_3_inpaint as m_inp


def retrieve_mean(encoder_output, generator=None, sample_mode='sample'):
    """retrieve_latents in its "argmax" mode whatever it is asked: the
    posterior mean, the generator left alone (the engine's encoding)."""
    return encoder_output.latent_dist.mode()


m_i2i.retrieve_latents = retrieve_mean
m_inp.retrieve_latents = retrieve_mean

W, H = 64, 48
golden = load_file(os.path.join(fx, 'golden-public.safetensors'))
p0 = json.load(open(os.path.join(fx, 'cases-public.json')))['large'][0]
assert p0['name'] == 'p0'


def init_image():
    """(H, W, 3) uint8: gradients, a checker and a disc, deterministic."""
    y = torch.arange(H).view(H, 1, 1).expand(H, W, 3)
    x = torch.arange(W).view(1, W, 1).expand(H, W, 3)
    c = torch.arange(3).view(1, 1, 3).expand(H, W, 3)
    v = x * 3 + y * 2 + c * 70 + ((x // 8 + y // 8) % 2) * 40
    disc = ((x - 40) ** 2 + (y - 20) ** 2) < 100
    v = torch.where(disc, 230 - c * 60, v % 200)
    return v.to(torch.uint8).contiguous()


def block_mask(blocks):
    """(H, W) uint8, 255 on the given 8x8 blocks (bx, by)."""
    m = torch.zeros(H, W, dtype=torch.uint8)
    for bx, by in blocks:
        m[by * 8:(by + 1) * 8, bx * 8:(bx + 1) * 8] = 255
    return m


MASKS = {
    # the right half
    'half': block_mask([(bx, by) for bx in range(4, 8) for by in range(6)]),
    # an L, a lone block and a hole in it, off the edges
    'shape': block_mask([(1, 1), (1, 2), (1, 3), (2, 3), (3, 3), (5, 1),
                         (5, 3), (6, 3), (5, 4), (6, 4), (4, 4)]),
}

# (name, mask or None, steps, A1111 denoising_strength, seed)
CASES = [
    ('i2i_s06', None, 10, 0.6, 7),
    ('i2i_s10', None, 4, 1.0, 42),
    ('inp_half_s06', 'half', 5, 0.6, 1234),
    ('inp_shape_s10', 'shape', 4, 1.0, 99),
    ('inp_shape_s06', 'shape', 6, 0.6, 5),
]
CFG = p0['cfg']


def a1111_start(steps, d):
    """A1111 setup_img2img_steps / the engine's sd_img2img_start."""
    return steps - int(min(d, 0.999) * steps) - 1


def mapped_strength(steps, d):
    """The diffusers strength that starts on A1111's step."""
    if d >= 1.0:
        return 1.0
    s = (steps - a1111_start(steps, d) - 0.5) / steps
    assert int(steps - steps * s) == a1111_start(steps, d)
    return s


img = init_image()
tensors = {'init_u8': img}
for k, m in MASKS.items():
    tensors[f'mask.{k}'] = m.contiguous()
meta = {'prompt': p0['prompt'], 'negative_prompt': p0['negative_prompt'],
        'cfg': CFG, 'width': W, 'height': H, 'rng': 'CPU', 'cases': []}

# the image as the pipelines take it: (1, 3, H, W) in [0, 1]
img_t = (img.permute(2, 0, 1).unsqueeze(0).float() / 255.0).contiguous()
kw = dict(text_encoder=None, text_encoder_2=None, text_encoder_3=None,
          tokenizer=None, tokenizer_2=None, tokenizer_3=None)
for model in ('large', 'medium'):
    i2i = tiny_pipeline(fx, model, torch.float32, 'img2img-ref',
                        m_i2i.StableDiffusion3Img2ImgPipeline, **kw)
    inp = m_inp.StableDiffusion3InpaintPipeline(**i2i.components)
    emb = {k: golden[f'{model}.p0.{k}'] for k in
           ('prompt_embeds', 'neg_prompt_embeds', 'pooled', 'neg_pooled')}
    vae = i2i.vae
    sf, sh = vae.config.scaling_factor, vae.config.shift_factor
    lat0 = (vae.encode(img_t * 2 - 1).latent_dist.mode() - sh) * sf
    tensors[f'{model}.init_latents'] = lat0.contiguous()

    for name, mk, steps, d, seed in CASES:
        ts = []

        def on_step(pipe, i, t, kwargs):
            ts.append(float(t))
            return {}

        args = dict(image=img_t, height=H, width=W, num_inference_steps=steps,
                    strength=mapped_strength(steps, d), guidance_scale=CFG,
                    prompt_embeds=emb['prompt_embeds'],
                    negative_prompt_embeds=emb['neg_prompt_embeds'],
                    pooled_prompt_embeds=emb['pooled'],
                    negative_pooled_prompt_embeds=emb['neg_pooled'],
                    generator=torch.Generator('cpu').manual_seed(seed),
                    output_type='latent', callback_on_step_end=on_step)
        if mk is None:
            lat = i2i(**args).images
        else:
            mask_t = (MASKS[mk].float() / 255.0).view(1, 1, H, W)
            lat = inp(mask_image=mask_t, **args).images
            # prepare_mask_latents' resize of the binarized mask
            lm = torch.nn.functional.interpolate(
                (mask_t >= 0.5).float(), size=(H // 8, W // 8))
            tensors[f'{model}.{name}.latmask'] = lm.contiguous()
        assert len(ts) == steps - a1111_start(steps, d), (name, ts)
        dec = vae.decode(lat / sf + sh, return_dict=False)[0]
        im = (dec / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1)
        tensors[f'{model}.{name}.sigmas'] = \
            (torch.tensor(ts, dtype=torch.float64) / 1000).float()
        tensors[f'{model}.{name}.final'] = lat.float().contiguous()
        tensors[f'{model}.{name}.image'] = im.float().contiguous()
        tensors[f'{model}.{name}.image_u8'] = \
            (im * 255).round().to(torch.uint8).contiguous()
        if model == 'large':
            meta['cases'].append({
                'name': name, 'mask': mk, 'steps': steps,
                'denoising_strength': d, 'seed': seed,
                'diffusers_strength': mapped_strength(steps, d),
                'start': a1111_start(steps, d)})
        print(json.dumps({'case': f'{model}.{name}', 'steps_run': len(ts),
                          'norm': lat.norm().item()}), flush=True)

save_file(tensors, out_path, metadata={'cases': json.dumps(meta)})
print('wrote', out_path)
