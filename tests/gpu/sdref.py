"""Shared by the reference scripts of tests/gpu (sampler_ref.py,
tiny_ref.py, img2img_ref.py): the tiny SD3.5 fixtures loaded into diffusers'
StableDiffusion3Pipeline. Imported from the scripts' own folder."""
import os


def staged(src, tag):
    """The fixture folder with its link files (a path as the content, as
    git stores symbolic links) made real symbolic links, under
    /tmp/sd/TAG-NAME."""
    dst = f'/tmp/sd/{tag}-{os.path.basename(src)}'
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


def tiny_pipeline(fx, model, dtype, tag, cls=None, **kw):
    """diffusers' pipeline of FX/tiny-sd35-MODEL ('large' or 'medium') in
    dtype, on the CPU: StableDiffusion3Pipeline or the class cls, kw for
    from_pretrained (text_encoder=None...)."""
    if cls is None:
        from diffusers import StableDiffusion3Pipeline as cls
    return cls.from_pretrained(staged(f'{fx}/tiny-sd35-{model}', tag),
                               torch_dtype=dtype, **kw)
