/*
 * pipeline.c: SD3.5 text-to-image sampling, as StableDiffusion3Pipeline
 * .__call__ does it (diffusers pipelines/stable_diffusion_3/
 * pipeline_stable_diffusion_3.py), with A1111's seeds and variation noise.
 *
 * Per step: the transformer sees [uncond batch ; cond batch] in one call
 * (cond alone when cfg <= 1), guidance mixes the halves, optional skip-layer
 * guidance adds (cond - cond_without_layers) * scale, and one Euler step
 * x += (sigma_next - sigma) * v moves the latents. "Euler a" instead steps
 * to sigma_down and adds fresh noise back up to sigma_next, as k-diffusion's
 * sample_euler_ancestral_RF does for rectified flow (eta 1); its noise is
 * drawn per step from the image's seed (see ancestral_seed()), so it is
 * deterministic but not A1111's own noise stream.
 *
 * Invariant: host and backend agree on layouts: latents are (B, C, h, w)
 * with h = height / 8; the batch's image i uses seeds[i].
 */

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline.h"
#include "rng.h"
#ifdef SD_PIPE_TRACE
#include <stdio.h>
#endif


void
sd_pipe_dump_free(sd_pipe_dump *d)
{
    free(d->noise);
    free(d->sigmas);
    free(d->timesteps);
    free(d->latents_step0);
    free(d->final_latents);
    memset(d, 0, sizeof(*d));
}


/*
 * FlowMatchEulerDiscreteScheduler: __init__ computes the shifted training
 * sigmas in float32 (sigma_max, sigma_min); set_timesteps spaces N points
 * linearly between them in float64 (numpy), shifts again, casts to
 * float32, and timesteps = sigmas * num_train_timesteps in float32.
 */
void
sd_flow_schedule(int steps, float shift, int train_steps, float *sigmas,
    float *timesteps)
{
    float   s_first, s_last, smax, smin;
    double  start, stop, step, s;
    int     i;

    s_first = (float) train_steps / (float) train_steps;
    s_last = 1.0f / (float) train_steps;
    smax = shift * s_first / (1.0f + (shift - 1.0f) * s_first);
    smin = shift * s_last / (1.0f + (shift - 1.0f) * s_last);

    start = (double) smax * train_steps;
    stop = (double) smin * train_steps;
    step = steps > 1 ? (stop - start) / (steps - 1) : 0.0;

    for (i = 0; i < steps; i++) {
        double t = (steps > 1 && i == steps - 1) ? stop : i * step + start;

        s = t / train_steps;
        s = shift * s / (1.0 + (shift - 1.0) * s);
        sigmas[i] = (float) s;
        timesteps[i] = sigmas[i] * (float) train_steps;
    }
    sigmas[steps] = 0.0f;
}


/*
 * A1111 modules/processing.py slerp(val, low, high) on (C, H, W) noise:
 * norms and dot products over dim 1 (H), one angle per (c, w) column;
 * a plain linear mix when the two are nearly parallel on average.
 */
void
sd_noise_slerp(float val, float *low, const float *high, int c, int h, int w)
{
    double  *dot, mean = 0;
    size_t   n = (size_t) c * h * w, k;
    int      ci, y, x;

    dot = malloc((size_t) c * w * sizeof(double));
    if (dot == NULL) {
        return;
    }
    for (ci = 0; ci < c; ci++) {
        for (x = 0; x < w; x++) {
            double nl = 0, nh = 0, d = 0;

            for (y = 0; y < h; y++) {
                k = ((size_t) ci * h + y) * w + x;
                nl += (double) low[k] * low[k];
                nh += (double) high[k] * high[k];
            }
            nl = sqrt(nl);
            nh = sqrt(nh);
            for (y = 0; y < h; y++) {
                k = ((size_t) ci * h + y) * w + x;
                d += (low[k] / nl) * (high[k] / nh);
            }
            dot[(size_t) ci * w + x] = d;
            mean += d;
        }
    }
    mean /= (double) c * w;

    if (mean > 0.9995) {
        for (k = 0; k < n; k++) {
            low[k] = low[k] * val + high[k] * (1.0f - val);
        }
        free(dot);
        return;
    }

    for (ci = 0; ci < c; ci++) {
        for (x = 0; x < w; x++) {
            double om = acos(dot[(size_t) ci * w + x]), so = sin(om);
            double a = sin((1.0 - val) * om) / so, b = sin(val * om) / so;

            for (y = 0; y < h; y++) {
                k = ((size_t) ci * h + y) * w + x;
                low[k] = (float) (a * low[k] + b * high[k]);
            }
        }
    }
    free(dot);
}


sd_status
sd_pipe_validate(sd_err *err, const sd_model *m, const sd_pipe_args *a)
{
    const sd_mmdit_info  *info = sd_mmdit_get_info(m->dit);
    int                   unit = 8 * info->patch_size;
    int                   max = 8 * info->patch_size * info->pos_max;

    if (a->width < unit || a->width % unit != 0 || a->width > max) {
        return sd_errorf(err, SD_ERR_INVALID, "width: must be a multiple of "
                         "%d between %d and %d (got %d)", unit, unit, max,
                         a->width);
    }
    if (a->height < unit || a->height % unit != 0 || a->height > max) {
        return sd_errorf(err, SD_ERR_INVALID, "height: must be a multiple of "
                         "%d between %d and %d (got %d)", unit, unit, max,
                         a->height);
    }
    if (a->steps < 1 || a->steps > 1000) {
        return sd_errorf(err, SD_ERR_INVALID, "steps: must be between 1 and "
                         "1000 (got %d)", a->steps);
    }
    if (!(a->cfg >= 0.0f && a->cfg <= 100.0f)) {
        return sd_errorf(err, SD_ERR_INVALID, "cfg_scale: must be between 0 "
                         "and 100");
    }
    if (a->batch < 1 || a->batch > 64) {
        return sd_errorf(err, SD_ERR_INVALID, "batch_size: must be between 1 "
                         "and 64 (got %d)", a->batch);
    }
    if (a->img_cond && (a->slg_scale != 0.0f || a->n_seg > 0 || a->init)) {
        /* per-image conditioning fills the context batch once; skip-layer
           guidance and prompt editing would refill it from one prompt */
        return sd_errorf(err, SD_ERR_INTERNAL, "batched requests: no "
                         "skip-layer guidance, prompt editing or init "
                         "images");
    }
    if (!(a->subseed_strength >= 0.0f && a->subseed_strength <= 1.0f)) {
        return sd_errorf(err, SD_ERR_INVALID, "subseed_strength: must be "
                         "between 0 and 1");
    }
    if (a->slg_scale != 0.0f) {
        int i;

        if (!(a->slg_start >= 0.0f && a->slg_start <= a->slg_stop
              && a->slg_stop <= 1.0f))
        {
            return sd_errorf(err, SD_ERR_INVALID, "skip layer guidance: "
                             "start and stop must satisfy 0 <= start <= "
                             "stop <= 1");
        }
        for (i = 0; i < a->slg_n_layers; i++) {
            if (a->slg_layers[i] < 0 || a->slg_layers[i] >= info->num_layers)
            {
                return sd_errorf(err, SD_ERR_INVALID, "skip layer guidance: "
                                 "layer %d outside 0..%d", a->slg_layers[i],
                                 info->num_layers - 1);
            }
        }
    }
    return SD_OK;
}


/*
 * randn(seed) into out on the generator a->rng names: torch's CUDA one by
 * dev where one is given (sd_backend_randn_cuda; SD_ERR_UNSUPPORTED where
 * it cannot), else on the host. The CPU generator is always the host's.
 */
static sd_status
draw_noise(sd_err *err, sd_backend *dev, const sd_pipe_args *a,
    uint64_t seed, float *out, size_t n)
{
    if (a->rng == SD_RNG_CPU) {
        sd_randn_cpu(seed, out, n);
    } else if (dev) {
        return sd_backend_randn_cuda(err, dev, seed, out, n);
    } else {
        sd_randn_cuda(seed, out, n);
    }
    return SD_OK;
}


/* Fill the host noise of image i: randn(seed) [slerp randn(subseed)],
   drawn as draw_noise does. */
static sd_status
make_noise(sd_err *err, const sd_pipe_args *a, sd_backend *dev, int i,
    float *dst, int c, int h, int w)
{
    size_t     n = (size_t) c * h * w;
    float     *sub;
    sd_status  s;

    SD_TRY(draw_noise(err, dev, a, a->seeds[i], dst, n));
    if (a->subseed_strength <= 0.0f) {
        return SD_OK;
    }
    sub = sd_malloc(err, n * sizeof(float), "variation noise");
    if (sub == NULL) {
        return SD_ERR_NOMEM;
    }
    s = draw_noise(err, dev, a, a->subseeds[i], sub, n);
    if (s == SD_OK) {
        sd_noise_slerp(a->subseed_strength, dst, sub, c, h, w);
    }
    free(sub);
    return s;
}


/* Repeat a (1, ...) conditioning tensor n times into dst at row block r. */
static sd_status
repeat_into(sd_err *err, sd_tensor *dst, int r, int n, const sd_tensor *src)
{
    int64_t  len = sd_numel(src);
    int      i;

    for (i = 0; i < n; i++) {
        SD_TRY(sd_copy2d(err, dst, (int64_t) (r + i) * len, 0, src, 0, 0, 1,
                         len));
    }
    return SD_OK;
}


static void *
dup_floats(const float *src, size_t n)
{
    float  *p = malloc(n * sizeof(float));

    if (p) {
        memcpy(p, src, n * sizeof(float));
    }
    return p;
}


/* prompt editing: sampling steps [start, stop) with the args' segment arg */
typedef struct {
    sd_mmdit_cache  *cache;
    int              start, stop, arg;
} sd_pipe_seg;


typedef struct {
    sd_tensor       *lat, *in, *out, *ctx, *pool, *tmp, *ctx1, *pool1, *skip;
    sd_tensor       *x0;            /* latest denoised estimate */
    sd_mmdit_cache  *cache;         /* the transformer's per-image part */
    float           *host;
    int              have_x0;
    /* prompt editing: a cache per segment of steps */
    sd_pipe_seg     *seg;
    int              nseg, seg_cur;
    /* batching across requests: the denoised estimates of the images
       frozen by img_stop (host, batch x per), which of them are */
    float           *frozen;
    unsigned char    is_frozen[64];
    int              n_frozen;
} sd_pipe_bufs;


/* what step caching did, into the caller's counters; its tensors freed
   before the decoder needs the workspace */
static void
step_cache_report(const sd_pipe_args *a, const sd_pipe_bufs *b)
{
    int  i, n = sd_mmdit_cache_steps_cached(b->cache), on = 1;

    if (b->cache) {
        on = sd_mmdit_cache_step_cache_on(b->cache);
        sd_mmdit_cache_drop_step_cache(b->cache);
    }
    for (i = 0; i < b->nseg; i++) {
        n += sd_mmdit_cache_steps_cached(b->seg[i].cache);
        on &= sd_mmdit_cache_step_cache_on(b->seg[i].cache);
        sd_mmdit_cache_drop_step_cache(b->seg[i].cache);
    }
    if (a->steps_cached) {
        *a->steps_cached += n;
    }
    if (a->step_cache_off && a->step_cache > 0.0f && !on) {
        *a->step_cache_off = 1;
    }
}


/* the per-image transformer caches, once sampling is done: the decoder
   then has their workspace (a workspace measured for the decoder's peak
   holds a schedule of any length) */
static void
caches_free(sd_pipe_bufs *b)
{
    int  i;

    sd_mmdit_cache_free(b->cache);
    b->cache = NULL;
    for (i = 0; i < b->nseg; i++) {
        sd_mmdit_cache_free(b->seg[i].cache);
        b->seg[i].cache = NULL;
    }
}


static void
bufs_free(sd_pipe_bufs *b)
{
    sd_tensor_free(b->lat);
    sd_tensor_free(b->in);
    sd_tensor_free(b->out);
    sd_tensor_free(b->ctx);
    sd_tensor_free(b->pool);
    sd_tensor_free(b->tmp);
    sd_tensor_free(b->ctx1);
    sd_tensor_free(b->pool1);
    sd_tensor_free(b->skip);
    sd_tensor_free(b->x0);
    caches_free(b);
    free(b->seg);
    free(b->host);
    free(b->frozen);
}


/*
 * v = uncond + cfg * (cond - uncond), uncond and cond the rows of pred at
 * offsets un and co, each of v's shape (v may be the uncond rows).
 */
static sd_status
guide_at(sd_err *err, sd_tensor *v, sd_tensor *pred, int64_t un_at,
    int64_t co_at, sd_tensor *tmp, float cfg)
{
    sd_tensor  un, co;

    SD_TRY(sd_tensor_view(err, pred, un_at, v->ndim, v->ne, &un));
    SD_TRY(sd_tensor_view(err, pred, co_at, v->ndim, v->ne, &co));
    SD_TRY(sd_scale(err, tmp, &un, -1.0f, 0.0f));
    SD_TRY(sd_add(err, tmp, &co, tmp));
    SD_TRY(sd_scale(err, tmp, tmp, cfg, 0.0f));
    return sd_add(err, v, &un, tmp);
}


/*
 * The guided prediction over the uncond half of pred: every image with
 * cfg, or (batching across requests) image i with cfgs[i].
 */
static sd_status
guide(sd_err *err, sd_tensor *v, sd_tensor *pred, sd_tensor *tmp, float cfg,
    const float *cfgs)
{
    sd_tensor  vi, ti;
    int64_t    n = sd_numel(v), bsz = v->ne[0], per = n / bsz, ne[4];
    int64_t    i;

    if (cfgs == NULL) {
        return guide_at(err, v, pred, 0, n, tmp, cfg);
    }
    memcpy(ne, v->ne, sizeof(ne));
    ne[0] = 1;
    for (i = 0; i < bsz; i++) {
        SD_TRY(sd_tensor_view(err, v, i * per, v->ndim, ne, &vi));
        SD_TRY(sd_tensor_view(err, tmp, i * per, v->ndim, ne, &ti));
        SD_TRY(guide_at(err, &vi, pred, i * per, n + i * per, &ti,
                        cfgs[i]));
    }
    return SD_OK;
}


/*
 * The stochastic samplers' noise of step i for one image: a seed derived
 * from the image's seed (+ eta_noise_seed_delta) and the step, so runs
 * repeat exactly (not A1111's continued generator: see sampler.c).
 */
static uint64_t
ancestral_seed(uint64_t seed, int i)
{
    uint64_t  z = seed + 0x9e3779b97f4a7c15ULL * (uint64_t) (i + 1);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return (z ^ (z >> 31)) & 0xffffffffULL;
}


/* What the sampler's callbacks need. */
typedef struct {
    sd_err             *err;
    sd_model           *m;
    const sd_pipe_args *a;
    sd_pipe_bufs       *b;
    const float        *sigmas;
    int                 steps;
    int                 stop;           /* the cancel flag seen, or 0 */
    int                 stop_at;        /* the step it stopped before */
    float              *step0;          /* dump: latents after step 0 */
    const float        *x;              /* the sampler's latents */
} sd_pipe_run;


static void
run_noise(void *ctx, int k, int step, float *out, size_t n)
{
    sd_pipe_run  *r = ctx;
    uint64_t      seed = ancestral_seed(r->a->seeds[k] + r->a->ensd, step);

    if (r->a->rng == SD_RNG_CPU) {
        sd_randn_cpu(seed, out, n);
    } else {
        sd_randn_cuda(seed, out, n);
    }
}


/* inpainting: x = x nmask + init (1 - nmask), every image and channel */
static void
mask_blend(const sd_pipe_args *a, float *x, size_t per, int64_t hw)
{
    size_t  i;

    if (a->mask == NULL || a->init == NULL) {
        return;
    }
    for (i = 0; i < a->batch * per; i++) {
        float  nm = a->mask[i % hw];

        x[i] = x[i] * nm + a->init[i] * (1.0f - nm);
    }
}


/*
 * Prompt editing: the cache of the segment holding step *j, *j made
 * relative to it; skip-layer guidance's cond-only batch follows it.
 */
static sd_status
seg_select(sd_err *err, sd_pipe_run *r, int *j, sd_mmdit_cache **cache)
{
    sd_pipe_bufs        *b = r->b;
    const sd_pipe_args  *a = r->a;
    const sd_cond       *c;
    int                  k;

    if (b->nseg == 0) {
        return SD_OK;
    }
    for (k = 0; k < b->nseg - 1 && *j >= b->seg[k].stop; k++) {
    }
    *cache = b->seg[k].cache;
    *j -= b->seg[k].start;
    if (k != b->seg_cur && b->ctx1) {
        c = a->seg_cond[b->seg[k].arg];
        SD_TRY(repeat_into(err, b->ctx1, 0, a->batch, c->context));
        SD_TRY(repeat_into(err, b->pool1, 0, a->batch, c->pooled));
    }
    b->seg_cur = k;
    return SD_OK;
}


/*
 * The guided denoised estimate at sigmas[j]: v = guided prediction (with
 * skip-layer guidance), x0 = x - sigma v, into b->x0 from the latents in
 * b->lat (run_denoise uploads them and downloads x0 for the host's
 * samplers; sample_device keeps both on the device).
 */
static sd_status
denoise_core(sd_pipe_run *r, float sigma, int j)
{
    sd_err              *err = r->err;
    const sd_pipe_args  *a = r->a;
    sd_pipe_bufs        *b = r->b;
    sd_model            *m = r->m;
    int                  cfg_on = a->cfg > 1.0f, bsz = a->batch, k;
    int64_t              n = sd_numel(b->lat);
    float                t2[128];
    sd_tensor            v, co;
    sd_mmdit_cache      *cache = b->cache;
    int                  cj = j;

    for (k = 0; k < (cfg_on ? 2 : 1) * bsz; k++) {
        t2[k] = sigma * (float) m->train_steps;
    }
    SD_TRY(seg_select(err, r, &cj, &cache));

    if (cfg_on) {
        /* latent_model_input = torch.cat([latents] * 2) */
        SD_TRY(sd_copy2d(err, b->in, 0, 0, b->lat, 0, 0, 1, n));
        SD_TRY(sd_copy2d(err, b->in, n, 0, b->lat, 0, 0, 1, n));
        SD_TRY(sd_mmdit_forward_cached(err, m->dit, b->in, cache, cj,
                                       b->out));
        SD_TRY(sd_tensor_view(err, b->out, 0, b->lat->ndim, b->lat->ne, &v));
        /* guided prediction written over the uncond half */
        SD_TRY(guide(err, &v, b->out, b->tmp, a->cfg, a->img_cfg));

        if (a->slg_scale != 0.0f && a->slg_n_layers > 0
            && j > r->steps * a->slg_start && j < r->steps * a->slg_stop)
        {
            /* noise_pred += (cond - cond_skipping_layers) * slg_scale */
            SD_TRY(sd_mmdit_forward(err, m->dit, b->lat, t2, b->ctx1,
                                    b->pool1, a->slg_layers, a->slg_n_layers,
                                    b->skip));
            SD_TRY(sd_tensor_view(err, b->out, n, b->lat->ndim, b->lat->ne,
                                  &co));
            SD_TRY(sd_scale(err, b->skip, b->skip, -1.0f, 0.0f));
            SD_TRY(sd_add(err, b->skip, &co, b->skip));
            SD_TRY(sd_scale(err, b->skip, b->skip, a->slg_scale, 0.0f));
            SD_TRY(sd_add(err, &v, &v, b->skip));
        }
    } else {
        SD_TRY(sd_mmdit_forward_cached(err, m->dit, b->lat, cache, cj,
                                       b->out));
        SD_TRY(sd_tensor_view(err, b->out, 0, b->lat->ndim, b->lat->ne, &v));
    }

    /* x0 = x - sigma v: the denoised estimate */
    SD_TRY(sd_scale(err, b->x0, &v, -sigma, 0.0f));
    SD_TRY(sd_add(err, b->x0, b->x0, b->lat));
    b->have_x0 = 1;
    return SD_OK;
}


static sd_status
run_denoise(void *ctx, const float *x, float sigma, int j, float *den)
{
    sd_pipe_run   *r = ctx;
    sd_pipe_bufs  *b = r->b;
    int64_t        n = sd_numel(b->lat);

    SD_TRY(sd_tensor_upload(r->err, b->lat, x));
    SD_TRY(denoise_core(r, sigma, j));
    SD_TRY(sd_tensor_download(r->err, b->x0, den));
    mask_blend(r->a, den, n / r->a->batch, b->lat->ne[2] * b->lat->ne[3]);
    return SD_OK;
}


/*
 * Batching across requests: the images img_stop names keep this step's
 * denoised estimate (the first time only). Returns 1 once every image is.
 */
static int
freeze(sd_pipe_run *r, const float *den)
{
    const sd_pipe_args  *a = r->a;
    sd_pipe_bufs        *b = r->b;
    size_t               per = sd_numel(b->lat) / a->batch;
    int                  i;

    for (i = 0; i < a->batch; i++) {
        if (!a->img_stop[i] || b->is_frozen[i]) {
            continue;
        }
        if (b->frozen == NULL) {
            b->frozen = malloc(a->batch * per * sizeof(float));
            if (b->frozen == NULL) {
                continue;       /* kept running: decoded at its end */
            }
        }
        memcpy(b->frozen + i * per, den + i * per, per * sizeof(float));
        b->is_frozen[i] = 1;
        b->n_frozen++;
    }
    return b->n_frozen == a->batch;
}


/* After each step: the dump, progress, then the cancel flag. */
static int
run_step(void *ctx, int i, int steps, const float *den)
{
    sd_pipe_run         *r = ctx;
    const sd_pipe_args  *a = r->a;
    int                  flag;

    (void) den;
    if (r->step0 && i == 0) {
        memcpy(r->step0, r->x, sd_numel(r->b->lat) / a->batch
                               * sizeof(float));
    }
    if (a->progress) {
        a->progress(a->progress_data, a->job, a->jobs, i + 1, steps);
    }
    if (a->img_stop && freeze(r, den) && i + 1 < steps) {
        r->stop = SD_CANCEL_STOP;       /* every image frozen */
        r->stop_at = i + 1;
        return 1;
    }
    flag = a->cancel ? *a->cancel : 0;
    if (flag && i + 1 < steps) {
        r->stop = flag;
        r->stop_at = i + 1;
        return 1;
    }
    return 0;
}


/*
 * Euler (and DDIM, the same update) with the latents on the device, for
 * backends that queue work (sd_backend_queued): where sd_sample uploads x
 * and downloads the denoised estimate every step (two synchronizations,
 * the GPU idle while the host converts, steps and converts back), the
 * latents stay in x32 (F32, as the host keeps them) and the host keeps one
 * step queued ahead of the one it waits for, reporting each step's
 * progress and reading the cancel flag once that step is done. The same
 * floats as sd_sample: the transformer's input is x32 rounded as an upload
 * rounds it, and sd_euler_step rounds each op of the update as the host's
 * loop does. Each step first copies x0 aside (prev0), so a stop seen
 * after step i, when step i + 1 is already queued, returns step i's
 * estimate, as sd_sample would. On return den holds what sd_sample leaves
 * there, and x too unless a step stopped the loop (the pipeline then
 * decodes den, or fails: x is not read).
 */
static sd_status
sample_device(sd_err *err, sd_pipe_run *r, const float *sig, int ns,
    float *x, float *den)
{
    sd_pipe_bufs  *b = r->b;
    sd_backend    *be = b->lat->be;
    sd_tensor     *x32 = NULL, *prev0 = NULL;
    int64_t        n = sd_numel(b->lat);
    int            i, steps = ns - 1, done = 0;
    sd_status      s;

    SD_TRY_GOTO(s, sd_tensor_new_as(err, be, SD_MEM_ACT, SD_DT_F32,
                                    b->lat->ndim, b->lat->ne, &x32), out);
    SD_TRY_GOTO(s, sd_tensor_new_as(err, be, SD_MEM_ACT, b->x0->dtype,
                                    b->x0->ndim, b->x0->ne, &prev0), out);
    SD_TRY_GOTO(s, sd_tensor_upload(err, x32, x), out);

    for (i = 0; i < steps; i++) {
        double  s0 = sig[i], s1 = sig[i + 1];

        if (i > 0) {
            /* step i - 1's estimate, kept for a stop seen after it */
            SD_TRY_GOTO(s, sd_copy2d(err, prev0, 0, 0, b->x0, 0, 0, 1, n),
                        out);
        }
        SD_TRY_GOTO(s, sd_copy2d(err, b->lat, 0, 0, x32, 0, 0, 1, n), out);
        SD_TRY_GOTO(s, denoise_core(r, (float) s0, i), out);
        SD_TRY_GOTO(s, sd_euler_step(err, x32, b->x0, (float) s0,
                                     (float) (s1 - s0)), out);
        SD_TRY_GOTO(s, sd_backend_mark(err, be, i & 1), out);
        if (i > 0) {
            SD_TRY_GOTO(s, sd_backend_wait_mark(err, be, (i - 1) & 1),
                        out);
            if (run_step(r, i - 1, steps, NULL)) {
                break;                  /* step i's work is discarded */
            }
        }
        done = i + 1;
    }
    if (done == steps) {
        SD_TRY_GOTO(s, sd_backend_wait_mark(err, be, (steps - 1) & 1),
                    out);
        run_step(r, steps - 1, steps, NULL);
        SD_TRY_GOTO(s, sd_tensor_download(err, x32, x), out);
        SD_TRY_GOTO(s, sd_tensor_download(err, b->x0, den), out);
    } else {
        /* after step i's queued work, as downloads wait for the queue */
        SD_TRY_GOTO(s, sd_tensor_download(err, prev0, den), out);
    }
    s = SD_OK;

out:
    sd_tensor_free(x32);
    sd_tensor_free(prev0);
    return s;
}


/* the device loop above applies: its sampler, nothing per step on the host
   but progress and the cancel flag (SD_PIPE_HOST_SAMPLER=1: sd_sample) */
static int
device_sampling(const sd_pipe_run *r)
{
    const sd_pipe_args  *a = r->a;
    const char          *e = getenv("SD_PIPE_HOST_SAMPLER");

    return (a->sampler == SD_SAMPLER_EULER || a->sampler == SD_SAMPLER_DDIM)
           && sd_backend_queued(r->b->lat->be) && a->img_stop == NULL
           && r->step0 == NULL && (a->mask == NULL || a->init == NULL)
           && !(e && e[0] == '1');
}


/*
 * The decoder's (3, H, W) output in [-1, 1] to 8-bit RGB (H, W, 3) as
 * VaeImageProcessor does: (x / 2 + 0.5).clamp(0, 1) * 255, rounded half to
 * even (nearbyintf's default mode: adding and taking away 1.5 2^23 rounds
 * a float in [0, 2^22) to an integer the same way, without a libm call).
 * Spread over threads in chunks of rows: a 1024^2 image took 10-16 ms on
 * one core.
 */
#define SD_RGB8_CHUNK  (64 * 1024)      /* pixels a worker takes at once */

typedef struct {
    const float    *px;                 /* (3, hw) */
    uint8_t        *rgb;                /* (hw, 3) */
    int64_t         hw;
} sd_rgb8_job;


static inline uint8_t
sd_to_u8(float x)
{
    float  v = x / 2.0f + 0.5f;

    v = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
    return (uint8_t) ((v * 255.0f + 0x1.8p23f) - 0x1.8p23f);
}


static void
sd_rgb8_chunk(void *arg, int64_t k0, int64_t k1)
{
    sd_rgb8_job  *job = arg;
    int64_t       k, hw = job->hw;

    for (k = k0; k < k1; k++) {
        job->rgb[3 * k] = sd_to_u8(job->px[k]);
        job->rgb[3 * k + 1] = sd_to_u8(job->px[hw + k]);
        job->rgb[3 * k + 2] = sd_to_u8(job->px[2 * hw + k]);
    }
}


void
sd_image_to_rgb8(const float *px, int64_t hw, uint8_t *rgb)
{
    sd_rgb8_job  job;

    job.px = px;
    job.rgb = rgb;
    job.hw = hw;
    sd_run_chunks(sd_rgb8_chunk, &job, hw, SD_RGB8_CHUNK, 8);
}


/*
 * img: (1, 3, H, W) -> rgb (H, W, 3): the backend's own conversion where
 * it has one (the bytes alone come back from a GPU), else the floats
 * downloaded into px (*px allocated on first use) and converted here.
 */
static sd_status
image_rgb8(sd_err *err, const sd_tensor *img, float **px, uint8_t *rgb)
{
    int64_t  hw = img->ne[2] * img->ne[3];

    if (img->ndim != 4 || img->ne[0] != 1 || img->ne[1] != 3) {
        return sd_errorf(err, SD_ERR_INTERNAL, "decode: image of %d "
                         "dimensions, %lld channels", img->ndim,
                         (long long) img->ne[1]);
    }
    if (img->be->ops->to_rgb8) {
        return img->be->ops->to_rgb8(err, img, rgb);
    }
    if (*px == NULL) {
        *px = sd_malloc(err, (size_t) hw * 3 * sizeof(float), "image");
        if (*px == NULL) {
            return SD_ERR_NOMEM;
        }
    }
    SD_TRY(sd_tensor_download(err, img, *px));
    sd_image_to_rgb8(*px, hw, rgb);
    return SD_OK;
}


/*
 * VAE decode of latents / scaling + shift, mapped to 8-bit RGB (H, W, 3),
 * one image at a time (the decoder's activations are the largest of the
 * pipeline; one image bounds them whatever the batch).
 */
static sd_status
decode(sd_err *err, sd_model *m, const sd_pipe_args *a, sd_pipe_bufs *b,
    uint8_t *rgb)
{
    float      sc = sd_vae_scaling_factor(m->vae);
    float      sh = sd_vae_shift_factor(m->vae);
    int64_t    n = sd_numel(b->lat), per = n / a->batch, k;
    int64_t    hw = (int64_t) a->width * a->height;
    int64_t    shape[4] = { 1, b->lat->ne[1], b->lat->ne[2], b->lat->ne[3] };
    sd_tensor  *img = NULL, lv;
    float      *px = NULL;
    sd_status   s = SD_OK;
    int         i;

    SD_TRY(sd_tensor_download(err, b->lat, b->host));
    for (k = 0; k < n; k++) {
        b->host[k] = b->host[k] / sc + sh;
    }
    SD_TRY(sd_tensor_upload(err, b->lat, b->host));

    for (i = 0; i < a->batch && s == SD_OK; i++) {
        SD_TRY_GOTO(s, sd_tensor_view(err, b->lat, i * per, 4, shape, &lv),
                    out);
        SD_TRY_GOTO(s, sd_vae_decode(err, m->vae, &lv, &img), out);
        s = image_rgb8(err, img, &px, rgb + (int64_t) i * hw * 3);
        sd_tensor_free(img);
        img = NULL;
    }

out:
    free(px);
    return s;
}


int
sd_img2img_start(int *steps, float strength, int requested)
{
    float  d = strength < 0.999f ? strength : 0.999f;
    int    t_enc;

    if (requested > 0) {
        *steps = d > 0.0f ? (int) ((float) requested / d) : 0;
        *steps = *steps < requested ? requested : *steps;
        t_enc = requested - 1;
    } else {
        t_enc = (int) (d * (float) *steps);
    }
    return *steps - t_enc - 1;
}


/* PyTorch's upsample source index, align_corners False */
static float
src_index(float scale, int dst, int cubic)
{
    float  s = scale * ((float) dst + 0.5f) - 0.5f;

    return (!cubic && s < 0.0f) ? 0.0f : s;
}


static float
cubic_w(float x, int k)
{
    const float  A = -0.75f;
    float        t;

    /* weights of taps -1, 0, 1, 2 at fraction x (upsample_bicubic2d) */
    switch (k) {
    case 0:
        t = x + 1.0f;
        return ((A * t - 5.0f * A) * t + 8.0f * A) * t - 4.0f * A;
    case 1:
        return ((A + 2.0f) * x - (A + 3.0f)) * x * x + 1.0f;
    case 2:
        t = 1.0f - x;
        return ((A + 2.0f) * t - (A + 3.0f)) * t * t + 1.0f;
    default:
        t = 2.0f - x;
        return ((A * t - 5.0f * A) * t + 8.0f * A) * t - 4.0f * A;
    }
}


sd_status
sd_latent_upscale(sd_err *err, const char *mode, const float *in, int b,
    int c, int h, int w, float *out, int oh, int ow)
{
    float  sy = (float) h / (float) oh, sx = (float) w / (float) ow;
    int    kind, p, y, x, i, j;

    if (strncmp(mode, "Latent (nearest-exact)", 22) == 0) {
        kind = 3;
    } else if (strncmp(mode, "Latent (nearest)", 16) == 0) {
        kind = 2;
    } else if (strncmp(mode, "Latent (bicubic", 15) == 0) {
        kind = 1;
    } else if (strncmp(mode, "Latent", 6) == 0) {
        kind = 0;
    } else {
        return sd_errorf(err, SD_ERR_INVALID, "hr_upscaler: \"%s\" is not "
                         "a latent mode", mode);
    }
    for (p = 0; p < b * c; p++) {
        const float  *src = in + (size_t) p * h * w;
        float        *dst = out + (size_t) p * oh * ow;

        for (y = 0; y < oh; y++) {
            for (x = 0; x < ow; x++) {
                float  v = 0.0f;

                if (kind >= 2) {
                    int  yi = kind == 2 ? (int) floorf(y * sy)
                                        : (int) floorf((y + 0.5f) * sy);
                    int  xi = kind == 2 ? (int) floorf(x * sx)
                                        : (int) floorf((x + 0.5f) * sx);

                    yi = yi > h - 1 ? h - 1 : yi;
                    xi = xi > w - 1 ? w - 1 : xi;
                    v = src[yi * w + xi];
                } else if (kind == 0) {
                    float  fy = src_index(sy, y, 0), fx = src_index(sx, x, 0);
                    int    y0 = (int) fy, x0 = (int) fx;
                    int    y1 = y0 + (y0 < h - 1), x1 = x0 + (x0 < w - 1);
                    float  ly = fy - y0, lx = fx - x0;

                    v = (1 - ly) * ((1 - lx) * src[y0 * w + x0]
                                    + lx * src[y0 * w + x1])
                        + ly * ((1 - lx) * src[y1 * w + x0]
                                + lx * src[y1 * w + x1]);
                } else {
                    float  fy = src_index(sy, y, 1), fx = src_index(sx, x, 1);
                    int    y0 = (int) floorf(fy), x0 = (int) floorf(fx);
                    float  ty = fy - y0, tx = fx - x0;

                    for (i = 0; i < 4; i++) {
                        int    yy = y0 - 1 + i;
                        float  row = 0.0f;

                        yy = yy < 0 ? 0 : (yy > h - 1 ? h - 1 : yy);
                        for (j = 0; j < 4; j++) {
                            int  xx = x0 - 1 + j;

                            xx = xx < 0 ? 0 : (xx > w - 1 ? w - 1 : xx);
                            row += cubic_w(tx, j) * src[yy * w + xx];
                        }
                        v += cubic_w(ty, i) * row;
                    }
                }
                dst[y * ow + x] = v;
            }
        }
    }
    return SD_OK;
}


sd_status
sd_pipe_encode_image(sd_err *err, sd_model *m, const uint8_t *rgb,
    int width, int height, float *out)
{
    int64_t     hw = (int64_t) width * height, k;
    float      *px, sc, sh;
    sd_tensor  *img = NULL, *mean = NULL, *std = NULL;
    sd_status   s;
    int         c;

    px = sd_malloc(err, (size_t) hw * 3 * sizeof(float), "image");
    if (px == NULL) {
        return SD_ERR_NOMEM;
    }
    /* A1111: x / 255 * 2 - 1, channels first */
    for (c = 0; c < 3; c++) {
        for (k = 0; k < hw; k++) {
            px[c * hw + k] = (float) rgb[k * 3 + c] / 255.0f * 2.0f - 1.0f;
        }
    }
    SD_TRY_GOTO(s, sd_tensor_new4(err, m->be, 1, 3, height, width, &img),
                out);
    SD_TRY_GOTO(s, sd_tensor_upload(err, img, px), out);
    SD_TRY_GOTO(s, sd_vae_encode(err, m->vae, img, &mean, &std), out);
    SD_TRY_GOTO(s, sd_tensor_download(err, mean, out), out);
    sc = sd_vae_scaling_factor(m->vae);
    sh = sd_vae_shift_factor(m->vae);
    for (k = 0; k < sd_numel(mean); k++) {
        out[k] = (out[k] - sh) * sc;
    }

out:
    free(px);
    sd_tensor_free(img);
    sd_tensor_free(mean);
    sd_tensor_free(std);
    return s;
}


/* Latents stay F32 whatever the backend computes in: the sampler's sums
   are where low precision would accumulate. */
static sd_status
latent_new(sd_err *err, sd_backend *be, int64_t b, int64_t c, int64_t h,
    int64_t w, sd_tensor **out)
{
    int64_t  shape[4] = { b, c, h, w };

    return sd_tensor_new_as(err, be, SD_MEM_ACT, SD_DT_F32, 4, shape, out);
}


/*
 * Batching across requests: image i's conditioning (and its negative's,
 * cfg_on) into its rows of the context and pooled batches.
 */
static sd_status
img_conds(sd_err *err, const sd_pipe_args *a, sd_pipe_bufs *b, int cfg_on)
{
    int  i, bsz = a->batch;

    for (i = 0; i < bsz; i++) {
        const sd_cond  *c = a->img_cond[i];
        const sd_cond  *u = cfg_on ? a->img_ncond[i] : NULL;

        if (c->context->ne[1] != b->ctx->ne[1]
            || (u && u->context->ne[1] != b->ctx->ne[1]))
        {
            return sd_errorf(err, SD_ERR_INTERNAL, "batched requests: "
                             "contexts of different lengths");
        }
        if (cfg_on) {
            SD_TRY(repeat_into(err, b->ctx, i, 1, u->context));
            SD_TRY(repeat_into(err, b->pool, i, 1, u->pooled));
        }
        SD_TRY(repeat_into(err, b->ctx, (cfg_on ? bsz : 0) + i, 1,
                           c->context));
        SD_TRY(repeat_into(err, b->pool, (cfg_on ? bsz : 0) + i, 1,
                           c->pooled));
    }
    return SD_OK;
}


static sd_status
alloc_bufs(sd_err *err, sd_model *m, const sd_pipe_args *a,
    const sd_cond *cond, const sd_cond *ncond, sd_pipe_bufs *b, int c,
    int h, int w)
{
    sd_backend  *be = m->be;
    int          bsz = a->batch, cfg_on = a->cfg > 1.0f, bb;
    int64_t      rows = cond->context->ne[1], jd = cond->context->ne[2];
    int64_t      pd = cond->pooled->ne[1];

    bb = cfg_on ? 2 * bsz : bsz;
    SD_TRY(latent_new(err, be, bsz, c, h, w, &b->lat));
    SD_TRY(latent_new(err, be, bb, c, h, w, &b->out));
    SD_TRY(latent_new(err, be, bsz, c, h, w, &b->tmp));
    SD_TRY(latent_new(err, be, bsz, c, h, w, &b->x0));
    SD_TRY(sd_tensor_new3(err, be, bb, rows, jd, &b->ctx));
    SD_TRY(sd_tensor_new2(err, be, bb, pd, &b->pool));
    b->host = sd_malloc(err, (size_t) bsz * c * h * w * sizeof(float),
                        "latents");
    if (b->host == NULL) {
        return SD_ERR_NOMEM;
    }

    if (cfg_on) {
        SD_TRY(latent_new(err, be, bb, c, h, w, &b->in));
    }
    if (a->img_cond) {
        return img_conds(err, a, b, cfg_on);
    }

    /* prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds]) */
    if (cfg_on) {
        SD_TRY(repeat_into(err, b->ctx, 0, bsz, ncond->context));
        SD_TRY(repeat_into(err, b->ctx, bsz, bsz, cond->context));
        SD_TRY(repeat_into(err, b->pool, 0, bsz, ncond->pooled));
        SD_TRY(repeat_into(err, b->pool, bsz, bsz, cond->pooled));
        if (a->slg_scale != 0.0f && a->slg_n_layers > 0) {
            SD_TRY(sd_tensor_new3(err, be, bsz, rows, jd, &b->ctx1));
            SD_TRY(sd_tensor_new2(err, be, bsz, pd, &b->pool1));
            SD_TRY(latent_new(err, be, bsz, c, h, w, &b->skip));
            SD_TRY(repeat_into(err, b->ctx1, 0, bsz, cond->context));
            SD_TRY(repeat_into(err, b->pool1, 0, bsz, cond->pooled));
        }
    } else {
        SD_TRY(repeat_into(err, b->ctx, 0, bsz, cond->context));
        SD_TRY(repeat_into(err, b->pool, 0, bsz, cond->pooled));
    }
    return SD_OK;
}


/*
 * The transformer's per-image caches: one over all steps, or with prompt
 * editing one per segment, each from its conditionings.
 */
static sd_status
caches_new(sd_err *err, sd_model *m, const sd_pipe_args *a, sd_pipe_bufs *b,
    const float *ts, int steps)
{
    int  i, start = 0, stop, bsz = a->batch, cfg_on = a->cfg > 1.0f;

    if (a->n_seg == 0) {
        return sd_mmdit_cache_new(err, m->dit, ts, steps, b->ctx, b->pool,
                                  &b->cache);
    }
    b->seg = sd_calloc(err, a->n_seg, sizeof(*b->seg), "prompt segments");
    if (b->seg == NULL) {
        return SD_ERR_NOMEM;
    }
    b->seg_cur = -1;
    for (i = 0; i < a->n_seg && start < steps; i++) {
        const sd_cond  *c = a->seg_cond[i], *n = a->seg_ncond[i];
        sd_pipe_seg    *g = &b->seg[b->nseg];

        stop = i == a->n_seg - 1 || a->seg_end[i] > steps ? steps
                                                           : a->seg_end[i];
        if (stop <= start) {
            continue;
        }
        if (c->context->ne[1] != b->ctx->ne[1]
            || (cfg_on && n->context->ne[1] != b->ctx->ne[1]))
        {
            return sd_errorf(err, SD_ERR_INTERNAL, "prompt editing: "
                             "contexts of different lengths");
        }
        if (cfg_on) {
            SD_TRY(repeat_into(err, b->ctx, 0, bsz, n->context));
            SD_TRY(repeat_into(err, b->pool, 0, bsz, n->pooled));
        }
        SD_TRY(repeat_into(err, b->ctx, cfg_on ? bsz : 0, bsz, c->context));
        SD_TRY(repeat_into(err, b->pool, cfg_on ? bsz : 0, bsz, c->pooled));
        g->start = start;
        g->stop = stop;
        g->arg = i;
        SD_TRY(sd_mmdit_cache_new(err, m->dit, ts + start, stop - start,
                                  b->ctx, b->pool, &g->cache));
        b->nseg++;
        start = stop;
    }
    return SD_OK;
}


/* The initial noise of every image of the batch, on its own thread. */
typedef struct {
    const sd_pipe_args  *a;
    float               *host;
    int                  c, h, w;
    sd_err               err;
    sd_status            s;
} sd_pipe_noise;


static void *
noise_run(void *arg)
{
    sd_pipe_noise  *nz = arg;
    size_t          per = (size_t) nz->c * nz->h * nz->w;
    int             i;

    nz->s = SD_OK;
    for (i = 0; i < nz->a->batch && nz->s == SD_OK; i++) {
        nz->s = make_noise(&nz->err, nz->a, NULL, i, nz->host + i * per,
                           nz->c, nz->h, nz->w);
    }
    return NULL;
}


/*
 * The noise of every image drawn by the device where it draws torch's CUDA
 * generator exactly (sd_backend_randn_cuda): *done 1; else nothing drawn,
 * *done 0, for the host to draw (the device's kernel and a 1 MB download
 * take ~0.2 ms of a 1024x1024 image's setup, the host ~1-1.5 ms).
 */
static sd_status
noise_device(sd_err *err, sd_model *m, const sd_pipe_args *a, float *host,
    int c, int h, int w, int *done)
{
    size_t      per = (size_t) c * h * w;
    sd_status   s;
    int         i;

    *done = 0;
    if (a->rng == SD_RNG_CPU) {
        return SD_OK;
    }
    for (i = 0; i < a->batch; i++) {
        s = make_noise(err, a, m->be, i, host + i * per, c, h, w);
        if (s == SD_ERR_UNSUPPORTED && i == 0) {
            sd_err_clear(err);          /* the host draws them */
            return SD_OK;
        }
        SD_TRY(s);
    }
    *done = 1;
    return SD_OK;
}


/*
 * latents = randn per image, seed + i (prepare_latents; flow noise_scaling
 * at sigmas[0] = 1 is the noise itself) into b->host, drawn on a thread of
 * its own (or this one, when none starts) while this one queues the
 * per-image caches: a 1024x1024 image's noise took the host ~4 ms and the
 * caches' queueing ~3 ms on the H200 machine (session 23), since made
 * faster (rng.c) and recorded (sd_mmdit_cache_fill); the setup phase
 * took 2.7-3.7 ms after. Both are waited for on every path. Where the
 * device draws the noise itself (noise_device), no thread is started.
 */
static sd_status
noise_and_caches(sd_err *err, sd_model *m, const sd_pipe_args *a,
    sd_pipe_bufs *b, const float *ts, int steps, int c, int h, int w)
{
    sd_pipe_noise  nz;
    pthread_t      tid;
    sd_status      s;
    int            started, done;

    /* drawn by the device, first (its download waits for what is queued) */
    SD_TRY(noise_device(err, m, a, b->host, c, h, w, &done));
    if (done) {
        return caches_new(err, m, a, b, ts, steps);
    }
    memset(&nz, 0, sizeof(nz));
    nz.a = a;
    nz.host = b->host;
    nz.c = c;
    nz.h = h;
    nz.w = w;
    started = pthread_create(&tid, NULL, noise_run, &nz) == 0;

    s = caches_new(err, m, a, b, ts, steps);

    if (started) {
        pthread_join(tid, NULL);
    } else {
        noise_run(&nz);
    }
    if (s == SD_OK && nz.s != SD_OK) {
        s = sd_errorf(err, nz.s, "%s", nz.err.msg);
    }
    return s;
}


sd_status
sd_pipe_txt2img(sd_err *err, sd_model *m, const sd_pipe_args *a,
    const sd_cond *cond, const sd_cond *ncond, uint8_t **rgb,
    sd_pipe_dump *dump)
{
    sd_pipe_bufs    b;
    sd_pipe_run     run;
    sd_sample_args  sa;
    sd_flow_model   fm;
    sd_status       s;
    float          *sigmas = NULL, *ts = NULL, *den = NULL;
    int             c, h, w, i, ns, steps, flag;
    size_t          per;
    double          t0 = sd_seconds(), t1;

    *rgb = NULL;
    memset(&b, 0, sizeof(b));
    SD_TRY(sd_pipe_validate(err, m, a));
    if (m->vae == NULL || m->dit == NULL) {
        return sd_errorf(err, SD_ERR_INTERNAL, "model not fully loaded");
    }

    c = sd_mmdit_get_info(m->dit)->in_channels;
    h = a->height / 8;
    w = a->width / 8;
    per = (size_t) c * h * w;

    sigmas = sd_malloc(err, SD_SCHED_MAX_SIGMAS(a->steps + 1)
                            * sizeof(float), "sigmas");
    ts = sd_malloc(err, SD_SCHED_MAX_SIGMAS(a->steps + 1) * sizeof(float),
                   "timesteps");
    den = sd_malloc(err, a->batch * per * sizeof(float), "denoised");
    if (sigmas == NULL || ts == NULL || den == NULL) {
        s = SD_ERR_NOMEM;
        goto out;
    }
    fm.shift = m->shift;
    fm.train_steps = m->train_steps;
    if (a->sampler == SD_SAMPLER_DPMPP_3M_SDE) {
        /* A1111 discard_next_to_last_sigma: one more, then drop it */
        ns = sd_sched_sigmas(err, &fm, a->sampler, a->sched, a->steps + 1,
                             sigmas);
        if (ns > 2) {
            sigmas[ns - 2] = sigmas[ns - 1];
            ns--;
        }
    } else {
        ns = sd_sched_sigmas(err, &fm, a->sampler, a->sched, a->steps,
                             sigmas);
    }
    if (ns < 2) {
        s = ns < 0 ? err->status : sd_errorf(err, SD_ERR_INTERNAL, "empty "
                                             "schedule");
        goto out;
    }
    steps = ns - 1;
    if (a->init) {
        int  start = a->start < ns - 1 ? a->start : ns - 2;

        memmove(sigmas, sigmas + start, (ns - start) * sizeof(float));
        ns -= start;
        steps = ns - 1;
    }
    for (i = 0; i < steps; i++) {
        ts[i] = sigmas[i] * (float) m->train_steps;
    }

    SD_TRY_GOTO(s, alloc_bufs(err, m, a, cond, ncond, &b, c, h, w), out);
    /* the timestep and text embeddings and every adaLN modulation of every
       step, and the embedded context: once per image, queued while another
       thread draws the noise */
#ifdef SD_PIPE_TRACE
    double tr1 = sd_seconds();
#endif
    SD_TRY_GOTO(s, noise_and_caches(err, m, a, &b, ts, steps, c, h, w), out);
#ifdef SD_PIPE_TRACE
    {
        double tr2 = sd_seconds();
        sd_backend_sync(err, m->be);
        fprintf(stderr, "trace: bufs %.2f noise and caches %.2f, caches' "
                "GPU work left %.2f ms\n", (tr1 - t0) * 1e3,
                (tr2 - tr1) * 1e3, (sd_seconds() - tr2) * 1e3);
    }
#endif
    if (b.cache) {
        sd_mmdit_cache_set_step_cache(b.cache, a->step_cache);
    }
    for (i = 0; i < b.nseg; i++) {
        sd_mmdit_cache_set_step_cache(b.seg[i].cache, a->step_cache);
    }
    if (a->init) {
        /* add_noise_to_latent: x (1 - sigma) + noise sigma */
        for (i = 0; i < (int) (a->batch * per); i++) {
            b.host[i] = a->init[i] * (1.0f - sigmas[0])
                        + b.host[i] * sigmas[0];
        }
    } else if (sigmas[0] != 1.0f) {
        for (i = 0; i < (int) (a->batch * per); i++) {
            b.host[i] *= sigmas[0];
        }
    }
    if (dump) {
        dump->latent_c = c;
        dump->latent_h = h;
        dump->latent_w = w;
        dump->noise = dup_floats(b.host, per);
        dump->sigmas = dup_floats(sigmas, ns);
        dump->timesteps = dup_floats(ts, steps);
        dump->latents_step0 = malloc(per * sizeof(float));
    }

    flag = a->cancel ? *a->cancel : 0;
    if (flag == SD_CANCEL_STOP || flag == SD_CANCEL_SKIP) {
        s = SD_OK;              /* nothing denoised yet: no image */
        goto out;
    }
    if (flag) {
        s = sd_errorf(err, SD_ERR_CANCELLED, "cancelled at step 1 of %d",
                      steps);
        goto out;
    }

    memset(&run, 0, sizeof(run));
    run.err = err;
    run.m = m;
    run.a = a;
    run.b = &b;
    run.sigmas = sigmas;
    run.steps = steps;
    run.step0 = dump ? dump->latents_step0 : NULL;
    run.x = b.host;

    memset(&sa, 0, sizeof(sa));
    sa.sampler = a->sampler;
    sa.eta = a->eta;
    sa.s_noise = 1.0f;
    sa.batch = a->batch;
    sa.n = per;
    sa.denoise = run_denoise;
    sa.noise = run_noise;
    sa.on_step = run_step;
    sa.ctx = &run;
    t1 = sd_seconds();
    if (a->times) {
        a->times->setup += t1 - t0;
    }
    s = device_sampling(&run)
        ? sample_device(err, &run, sigmas, ns, b.host, den)
        : sd_sample(err, &sa, sigmas, ns, b.host, den);
    if (a->times) {
        a->times->steps += sd_seconds() - t1;
    }
    step_cache_report(a, &b);
    caches_free(&b);
    if (s != SD_OK) {
        goto out;
    }

    if (run.stop == SD_CANCEL_STOP || run.stop == SD_CANCEL_SKIP) {
        /* A1111's interrupt or skip: decode the latest denoised estimate */
        memcpy(b.host, den, a->batch * per * sizeof(float));
    } else if (run.stop) {
        s = sd_errorf(err, SD_ERR_CANCELLED, "cancelled at step %d of %d",
                      run.stop_at + 1, steps);
        goto out;
    }
    for (i = 0; i < a->batch; i++) {
        if (b.is_frozen[i]) {
            memcpy(b.host + i * per, b.frozen + i * per,
                   per * sizeof(float));
        }
    }
    mask_blend(a, b.host, per, (int64_t) h * w);
    SD_TRY_GOTO(s, sd_tensor_upload(err, b.lat, b.host), out);

    if (dump) {
        dump->final_latents = dup_floats(b.host, per);
    }
    if (a->latents_out) {
        memcpy(a->latents_out, b.host, a->batch * per * sizeof(float));
        s = SD_OK;
        goto out;
    }

    *rgb = sd_malloc(err, (size_t) a->batch * a->width * a->height * 3,
                     "image");
    if (*rgb == NULL) {
        s = SD_ERR_NOMEM;
        goto out;
    }
    t1 = sd_seconds();
    s = decode(err, m, a, &b, *rgb);
    if (a->times) {
        a->times->decode += sd_seconds() - t1;
    }
    if (s != SD_OK) {
        free(*rgb);
        *rgb = NULL;
    }

out:
    free(sigmas);
    free(ts);
    free(den);
    bufs_free(&b);
    return s;
}
