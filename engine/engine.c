/*
 * engine.c: the public engine (sd.h): one model on one device, A1111
 * request semantics (defaults, seeds, variation seeds, batches and
 * iterations, infotext), PNG results.
 *
 * Ownership: the engine owns its backend and model; sd_generate() may be
 * called from several threads and runs one request at a time per engine
 * (a mutex), so the model's backend scratch is never shared. The caller
 * owns the sd_result it receives.
 */

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "condsched.h"
#include "image.h"
#include "inpaint.h"
#include "pipeline.h"
#include "prompt.h"
#include "promptenc.h"
#include "rng.h"
#include "sampler.h"
#include "sd.h"
#include "textcache.h"
#include "upscale.h"
#ifdef SD_HAVE_CUDA
#include "sd_cuda.h"
#include "precision.h"
#endif


#define SD_VERSION  "sd35-nginx 0.1"


static const char *const  sd_upscalers[] = { "None", "Lanczos", "Nearest",
                                             NULL };
static const char *const  sd_latent_modes[] = {
    "Latent", "Latent (antialiased)", "Latent (bicubic)",
    "Latent (bicubic antialiased)", "Latent (nearest)",
    "Latent (nearest-exact)", NULL
};


/* The version A1111's infotext and "info" name. */
const char *
sd_version(void)
{
    return SD_VERSION;
}


const char *const *
sd_sampler_names(void)
{
    return sd_sampler_labels;
}


const char *const *
sd_scheduler_names(void)
{
    return sd_sched_labels;
}


const char *const *
sd_sampler_aliases(int i)
{
    static const char *const  aliases[SD_SAMPLER_COUNT][3] = {
        { "k_euler", NULL, NULL },
        { "k_euler_a", "k_euler_ancestral", NULL },
        { "k_heun", NULL, NULL },
        { "k_dpmpp_2m", NULL, NULL },
        { "k_dpmpp_2m_sde", NULL, NULL },
        { "k_dpmpp_3m_sde", NULL, NULL },
        { "ddim", NULL, NULL },
        { "unipc", NULL, NULL },
        { "k_lcm", NULL, NULL },
    };
    static const char *const  none[1] = { NULL };

    return i >= 0 && i < SD_SAMPLER_COUNT ? aliases[i] : none;
}


const char *
sd_scheduler_name(int i)
{
    return i >= 0 && i < SD_SCHED_COUNT ? sd_sched_names[i] : NULL;
}


const char *const *
sd_upscaler_names(void)
{
    return sd_upscalers;
}


const char *const *
sd_latent_upscale_modes(void)
{
    return sd_latent_modes;
}


/* The index of name in names (exact, then any case), or -1. */
static int
name_index(const char *const *names, const char *name)
{
    int  i;

    if (name == NULL) {
        return -1;
    }
    for (i = 0; names[i]; i++) {
        if (strcmp(names[i], name) == 0) {
            return i;
        }
    }
    for (i = 0; names[i]; i++) {
        if (strcasecmp(names[i], name) == 0) {
            return i;
        }
    }
    return -1;
}


/*
 * Any name resolves (A1111 1.10's get_sampler_and_scheduler, sampler.c):
 * this never fails; err is kept for the callers' signature.
 */
sd_status
sd_sampler_parse(sd_err *err, const char *name, sd_sampler *out)
{
    sd_sched  sch;
    int       fb;

    (void) err;
    sd_sampler_resolve(name, NULL, out, &sch, &fb);
    return SD_OK;
}


/* The labels of what a request runs, for the infotext and the result. */
static void
request_sampler(const sd_request *r, const char **smp, const char **sch)
{
    sd_sampler  s;
    sd_sched    c;
    int         fb;

    sd_sampler_resolve(r->sampler, r->scheduler, &s, &c, &fb);
    *smp = sd_sampler_labels[s];
    *sch = sd_sched_labels[c];
}


struct sd_engine {
    sd_backend         *be;
    sd_model           *model;
    pthread_mutex_t     lock;
    sd_tcache          *tcache;         /* NULL: none; under lock */
    int                 cuda;           /* the backend is the GPU's */
    char                device[640];
    int64_t             group_px;       /* pixels a shared pass may hold
                                           (the workspace's); 0: any */
    volatile int        lost;           /* the device failed (sd_engine_
                                           lost); set under lock */
    char                lost_why[256];  /* its error, set before lost */
};




void
sd_engine_config_init(sd_engine_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->device = SD_DEVICE_CPU;
    cfg->ws_width = SD_PIPE_WS_SIDE;
    cfg->ws_height = SD_PIPE_WS_SIDE;
    cfg->ws_batch = SD_PIPE_WS_BATCH;
}


void
sd_request_init(sd_request *req)
{
    /* A1111 StableDiffusionProcessingTxt2Img defaults */
    memset(req, 0, sizeof(*req));
    req->prompt = "";
    req->negative_prompt = "";
    req->width = 512;
    req->height = 512;
    req->steps = 50;
    req->cfg_scale = 7.0f;
    req->seed = -1;
    req->subseed = -1;
    req->subseed_strength = 0.0f;
    req->batch_size = 1;
    req->n_iter = 1;
    req->rng = SD_RNG_CUDA;
    req->sampler = "Euler";
    req->scheduler = "Automatic";
    req->slg_start = 0.01f;
    req->slg_stop = 0.2f;
    req->clip_skip = 1;
    req->eta = -1.0f;
    /* A1111 StableDiffusionProcessingImg2Img / the hires fix defaults */
    req->denoising_strength = 0.75f;
    req->mask_blur_x = 4;
    req->mask_blur_y = 4;
    req->inpaint_full_res = 1;
    req->hr_scale = 2.0f;
    req->hr_upscaler = "Latent";
}


static void
set_errbuf(char *errbuf, size_t errlen, const sd_err *err)
{
    if (errbuf && errlen) {
        snprintf(errbuf, errlen, "%s",
                 err->msg[0] ? err->msg : sd_status_str(err->status));
    }
}


/* A call on an engine whose device failed: SD_ERR_DEVICE at once. */
static sd_status
engine_check_lost(sd_err *err, const sd_engine *e)
{
    if (e->lost) {
        return sd_errorf(err, SD_ERR_DEVICE, "the device failed earlier in "
                         "this process (%s): no more work runs here until "
                         "the process restarts", e->lost_why);
    }
    return SD_OK;
}


/*
 * After a call failed with s and err: if the device is gone (the call said
 * so, or the context's sticky error says so whatever the call met first),
 * the status becomes SD_ERR_DEVICE and the engine is marked lost.
 */
static sd_status
engine_note_failure(sd_err *err, sd_engine *e, sd_status s)
{
#ifdef SD_HAVE_CUDA
    char  why[128], msg[sizeof(err->msg)];

    if (s != SD_OK && s != SD_ERR_DEVICE && e->cuda
        && sd_cuda_lost(why, sizeof(why)))
    {
        snprintf(msg, sizeof(msg), "the GPU failed: %.120s (%.360s)", why,
                 err->msg);
        sd_err_clear(err);
        s = sd_errorf(err, SD_ERR_DEVICE, "%s", msg);
    }
#endif
    if (s == SD_ERR_DEVICE && !e->lost) {
        snprintf(e->lost_why, sizeof(e->lost_why), "%.250s", err->msg);
        e->lost = 1;
    }
    return s;
}


int
sd_engine_lost(const sd_engine *e)
{
    return e != NULL && e->lost;
}


sd_status
sd_engine_inject_fault(sd_engine *e, char *errbuf, size_t errlen)
{
    sd_err     err = {0};
    sd_status  s = SD_OK;

    if (e == NULL) {
        return SD_ERR_INVALID;
    }
    pthread_mutex_lock(&e->lock);
    if (!e->cuda) {
        /* no device to fault: the engine marks itself lost, and this call
           does not fail (the next one meets it) */
        sd_err  f = {0};

        (void) engine_note_failure(&f, e, sd_errorf(&f, SD_ERR_DEVICE,
                                   "injected device fault "
                                   "(sd_engine_inject_fault)"));
    }
#ifdef SD_HAVE_CUDA
    else {
        /* the trap meets the next call, as a real fault would */
        s = sd_cuda_bind(&err, e->be);
        if (s == SD_OK) {
            s = sd_cuda_inject_fault(&err, e->be);
        }
        s = engine_note_failure(&err, e, s);
    }
#endif
    pthread_mutex_unlock(&e->lock);
    if (s != SD_OK) {
        set_errbuf(errbuf, errlen, &err);
    }
    return s;
}


int64_t
sd_image_seed(int64_t seed, float subseed_strength, int64_t k)
{
    /* unsigned: wraps as the engine's uint64_t seeds do, never overflows */
    return subseed_strength > 0.0f ? seed
                                   : (int64_t) ((uint64_t) seed + (uint64_t) k);
}


int64_t
sd_image_subseed(int64_t subseed, int64_t k)
{
    return (int64_t) ((uint64_t) subseed + (uint64_t) k);
}


int
sd_engine_offload_valid(const char *s)
{
    unsigned  mask;

    return s != NULL && sd_offload_parse(s, &mask) == 0;
}


/* The backend of cfg's device and precision. */
static sd_status
engine_backend(sd_err *err, sd_engine *e, const sd_engine_config *cfg)
{
    sd_precision  p = cfg->precision;

    unsigned      off = 0;

    if (cfg->offload && sd_offload_parse(cfg->offload, &off) != 0) {
        return sd_errorf(err, SD_ERR_INVALID, "offload: \"%s\": t5, clip, "
                         "text or none", cfg->offload);
    }
    if (cfg->device == SD_DEVICE_CPU) {
        if (off) {
            return sd_errorf(err, SD_ERR_INVALID, "offload: the CPU backend "
                             "holds every weight in host memory already");
        }
        if (p != SD_PRECISION_AUTO && p != SD_PRECISION_FP32) {
            return sd_errorf(err, SD_ERR_UNSUPPORTED, "precision: the CPU "
                             "backend computes in fp32 only");
        }
        snprintf(e->device, sizeof(e->device), "cpu, fp32");
        return sd_backend_cpu_create(err, cfg->threads, &e->be);
    }
    if (cfg->device != SD_DEVICE_CUDA) {
        return sd_errorf(err, SD_ERR_INVALID, "device: unknown device %d",
                         (int) cfg->device);
    }
#ifdef SD_HAVE_CUDA
    {
        unsigned  keep = 0;
        char      bad[64], kinds[256];

        if (p == SD_PRECISION_FP8 && cfg->fp8_keep
            && sd_fp8_parse_kinds(cfg->fp8_keep, &keep, bad,
                                  sizeof(bad)) != 0)
        {
            return sd_errorf(err, SD_ERR_INVALID, "fp8_keep: unknown layer "
                             "kind \"%s\"", bad);
        }
        SD_TRY(sd_backend_cuda_create(err, cfg->device_index,
                                      p == SD_PRECISION_FP32 ? SD_DT_F32
                                                             : SD_DT_BF16,
                                      &e->be));
        e->cuda = 1;
        e->be->offload = off;
        if (p == SD_PRECISION_FP8) {
            sd_fp8_apply(e->be, sd_fp8_default_kinds() & ~keep);
        }
        snprintf(e->device, sizeof(e->device), "cuda:%d %s%s%s, %s",
                 cfg->device_index,
                 p == SD_PRECISION_FP32 ? "fp32"
                 : p == SD_PRECISION_FP8 ? "fp8" : "bf16",
                 p == SD_PRECISION_FP8 ? " " : "",
                 p == SD_PRECISION_FP8
                 ? sd_fp8_kinds_str(e->be->fp8_kinds, kinds, sizeof(kinds))
                 : "",
                 sd_cuda_info(e->be));
    }
    return SD_OK;
#else
    return sd_errorf(err, SD_ERR_UNSUPPORTED, "device: this engine was "
                     "built without CUDA (no nvcc at build time)");
#endif
}


sd_status
sd_engine_open(const sd_engine_config *cfg, sd_engine **out, char *errbuf,
    size_t errlen)
{
    sd_engine  *e;
    sd_err      err = {0};
    sd_status   s;

    *out = NULL;
    if (cfg == NULL || cfg->model_dir == NULL || cfg->model_dir[0] == '\0') {
        sd_errorf(&err, SD_ERR_INVALID, "no model folder given");
        set_errbuf(errbuf, errlen, &err);
        return SD_ERR_INVALID;
    }

    e = sd_calloc(&err, 1, sizeof(sd_engine), "engine");
    if (e == NULL) {
        set_errbuf(errbuf, errlen, &err);
        return SD_ERR_NOMEM;
    }
    pthread_mutex_init(&e->lock, NULL);

    s = engine_backend(&err, e, cfg);
    if (s == SD_OK) {
        s = sd_model_load(&err, e->be, cfg->model_dir, SD_PART_ALL,
                          &e->model);
    }
#ifdef SD_HAVE_CUDA
    if (s == SD_OK && cfg->device == SD_DEVICE_CUDA) {
        s = sd_pipe_reserve(&err, e->model, cfg->ws_bytes, cfg->ws_width,
                            cfg->ws_height, cfg->ws_batch);
        e->group_px = (int64_t) cfg->ws_width * cfg->ws_height
                      * cfg->ws_batch;
    }
#endif
    if (s != SD_OK) {
        set_errbuf(errbuf, errlen, &err);
        sd_engine_close(e);
        return s;
    }
    if (cfg->name && cfg->name[0]) {
        snprintf(e->model->name, sizeof(e->model->name), "%s", cfg->name);
    }
    if (cfg->text_cache > 0) {
        e->tcache = sd_tcache_new(cfg->text_cache);
        if (e->tcache == NULL) {
            sd_errorf(&err, SD_ERR_NOMEM, "out of memory: text cache");
            set_errbuf(errbuf, errlen, &err);
            sd_engine_close(e);
            return SD_ERR_NOMEM;
        }
    }
    *out = e;
    return SD_OK;
}


const char *
sd_engine_device_info(const sd_engine *e)
{
    return e->device;
}


void
sd_engine_close(sd_engine *e)
{
    if (e == NULL) {
        return;
    }
    sd_tcache_free(e->tcache);          /* its tensors: the backend's */
    sd_model_free(e->model);
    sd_backend_destroy(e->be);
    pthread_mutex_destroy(&e->lock);
    free(e);
}


const char *
sd_engine_model_name(const sd_engine *e)
{
    return e->model->name;
}


const char *
sd_engine_model_hash(const sd_engine *e)
{
    return e->model->hash;
}


size_t
sd_engine_memory_bytes(const sd_engine *e)
{
    return e->be->bytes_in_use;
}


void
sd_engine_text_cache_stats(const sd_engine *e, uint64_t *hits,
    uint64_t *misses, int *entries)
{
    sd_tcache_stats(e ? e->tcache : NULL, hits, misses, entries);
}


void
sd_result_free(sd_result *res)
{
    int  i;

    if (res == NULL) {
        return;
    }
    for (i = 0; i < res->n_images; i++) {
        free(res->images[i].png);
        free(res->images[i].infotext);
        free(res->images[i].prompt);
        free(res->images[i].negative_prompt);
        free(res->images[i].rgb);
    }
    for (i = 0; i < res->n_extra_networks; i++) {
        free(res->extra_networks[i]);
    }
    free(res->extra_networks);
    free(res->comments);
    free(res->images);
    memset(res, 0, sizeof(*res));
}


/* A1111 picks int(random.randrange(4294967294)) for seed -1. */
static uint64_t
random_seed(void)
{
    uint32_t  v;

    if (getrandom(&v, sizeof(v), 0) != (ssize_t) sizeof(v)) {
        v = (uint32_t) time(NULL) ^ (uint32_t) clock();
    }
    return v % 4294967294u;
}


/* Python's repr of a float as A1111 prints it: "7.0", "4.5", "0.1". */
static void
float_repr(char *buf, size_t len, float f)
{
    int  p;

    for (p = 1; p <= 9; p++) {
        snprintf(buf, len, "%.*g", p, (double) f);
        if (strtof(buf, NULL) == f) {
            break;
        }
    }
    if (strpbrk(buf, ".eEn") == NULL) {
        strncat(buf, ".0", len - strlen(buf) - 1);
    }
}


/* The A1111 "parameters" text; *out is malloc'd. */
sd_status
sd_infotext(sd_err *err, const sd_model *m, const sd_request *r,
    uint64_t seed, uint64_t subseed, char **out)
{
    char         cfg[32], vs[32], var[320] = "", inp[200] = "";
    const char  *smp, *sch;
    size_t       len;
    char        *s;

    request_sampler(r, &smp, &sch);

    float_repr(cfg, sizeof(cfg), r->cfg_scale);
    if (r->subseed_strength > 0.0f) {
        float_repr(vs, sizeof(vs), r->subseed_strength);
        snprintf(var, sizeof(var), ", Variation seed: %llu, Variation seed "
                 "strength: %s", (unsigned long long) subseed, vs);
    }
    /* A1111 create_infotext: Denoising strength, Clip skip, ENSD (when
       the sampler draws noise per step) after the variation seeds */
    if (r->n_init_images > 0 || r->enable_hr) {
        float_repr(vs, sizeof(vs), r->denoising_strength);
        snprintf(var + strlen(var), sizeof(var) - strlen(var),
                 ", Denoising strength: %s", vs);
    }
    if (r->clip_skip > 1) {
        snprintf(var + strlen(var), sizeof(var) - strlen(var),
                 ", Clip skip: %d", r->clip_skip);
    }
    if (r->eta_noise_seed_delta != 0) {
        sd_sampler  sm;
        sd_sched    sc;
        int         fb;

        sd_sampler_resolve(r->sampler, r->scheduler, &sm, &sc, &fb);
        if (sm == SD_SAMPLER_EULER_A || sm == SD_SAMPLER_DPMPP_2M_SDE
            || sm == SD_SAMPLER_DPMPP_3M_SDE || sm == SD_SAMPLER_LCM)
        {
            snprintf(var + strlen(var), sizeof(var) - strlen(var),
                     ", ENSD: %lld", (long long) r->eta_noise_seed_delta);
        }
    }
    if (r->enable_hr) {
        size_t  l = strlen(var);

        if (r->hr_resize_x == 0 && r->hr_resize_y == 0) {
            float_repr(vs, sizeof(vs), r->hr_scale);
            l += snprintf(var + l, sizeof(var) - l, ", Hires upscale: %s", vs);
        } else {
            l += snprintf(var + l, sizeof(var) - l, ", Hires resize: %dx%d",
                          r->hr_resize_x, r->hr_resize_y);
        }
        if (r->hr_second_pass_steps && l < sizeof(var)) {
            l += snprintf(var + l, sizeof(var) - l, ", Hires steps: %d",
                          r->hr_second_pass_steps);
        }
        if (l < sizeof(var)) {
            snprintf(var + l, sizeof(var) - l, ", Hires upscaler: %.64s",
                     r->hr_upscaler && r->hr_upscaler[0] ? r->hr_upscaler
                                                         : "Latent");
        }
    }

    if (r->step_cache > 0.0f && strlen(var) < sizeof(var)) {
        float_repr(vs, sizeof(vs), r->step_cache);
        snprintf(var + strlen(var), sizeof(var) - strlen(var),
                 ", Step cache: %s", vs);
    }

    /* inpainting's extra_generation_params, in A1111's order, after RNG */
    if (r->n_init_images > 0 && r->mask.gray != NULL) {
        static const char  *content[4] = { "fill", NULL, "latent noise",
                                           "latent nothing" };
        size_t              l;

        l = strlen(inp);
        if (r->inpainting_mask_invert) {
            l += snprintf(inp + l, sizeof(inp) - l,
                          ", Mask mode: Inpaint not masked");
        }
        if ((r->mask_blur_x > 0 || r->mask_blur_y > 0)
            && r->mask_blur_x == r->mask_blur_y)
        {
            l += snprintf(inp + l, sizeof(inp) - l, ", Mask blur: %d",
                          r->mask_blur_x);
        }
        if (r->inpaint_full_res) {
            l += snprintf(inp + l, sizeof(inp) - l, ", Inpaint area: Only "
                          "masked, Masked area padding: %d",
                          r->inpaint_full_res_padding);
        }
        if (r->inpainting_fill >= 0 && r->inpainting_fill < 4
            && content[r->inpainting_fill])
        {
            snprintf(inp + l, sizeof(inp) - l, ", Masked content: %s",
                     content[r->inpainting_fill]);
        }
    }

    len = strlen(r->prompt) + strlen(r->negative_prompt) + 1024;
    s = sd_malloc(err, len, "infotext");
    if (s == NULL) {
        return SD_ERR_NOMEM;
    }
    snprintf(s, len, "%s\n%s%s%sSteps: %d, Sampler: %s, Schedule type: %s, "
             "CFG scale: %s, Seed: %llu, Size: %dx%d, Model hash: %s, "
             "Model: %s%s%s%s, Version: %s",
             r->prompt,
             r->negative_prompt[0] ? "Negative prompt: " : "",
             r->negative_prompt,
             r->negative_prompt[0] ? "\n" : "",
             r->steps, smp, sch, cfg,
             (unsigned long long) seed,
             r->width, r->height, m->hash, m->name, var,
             r->rng == SD_RNG_CPU ? ", RNG: CPU" : "", inp, SD_VERSION);
    *out = s;
    return SD_OK;
}


static sd_status
check_img2img(sd_err *err, const sd_request *r)
{
    int  i;

    if (r->n_init_images < 0 || r->n_init_images > 64
        || (r->n_init_images > 0 && r->init_images == NULL))
    {
        return sd_errorf(err, SD_ERR_INVALID, "init_images: at most 64 "
                         "images");
    }
    for (i = 0; i < r->n_init_images; i++) {
        const sd_rgb8  *im = &r->init_images[i];

        if (im->rgb == NULL || im->width < 1 || im->height < 1
            || im->width > 16384 || im->height > 16384)
        {
            return sd_errorf(err, SD_ERR_INVALID, "init_images: image %d "
                             "is empty or larger than 16384 pixels a side",
                             i);
        }
    }
    if (r->n_init_images == 0) {
        return SD_OK;           /* txt2img: the rest is not read */
    }
    if (r->resize_mode < 0 || r->resize_mode > 3) {
        return sd_errorf(err, SD_ERR_INVALID, "resize_mode: must be 0, 1, 2 "
                         "or 3 (got %d)", r->resize_mode);
    }
    if (!(r->denoising_strength >= 0.0f && r->denoising_strength <= 1.0f)) {
        return sd_errorf(err, SD_ERR_INVALID, "denoising_strength: must be "
                         "between 0 and 1");
    }
    if (r->mask.gray != NULL
        && (r->mask.width < 1 || r->mask.height < 1 || r->mask.width > 16384
            || r->mask.height > 16384))
    {
        return sd_errorf(err, SD_ERR_INVALID, "mask: empty or larger than "
                         "16384 pixels a side");
    }
    if (r->mask_blur_x < 0 || r->mask_blur_x > 256 || r->mask_blur_y < 0
        || r->mask_blur_y > 256)
    {
        return sd_errorf(err, SD_ERR_INVALID, "mask_blur: must be between 0 "
                         "and 256");
    }
    if (r->inpainting_fill < 0 || r->inpainting_fill > 3) {
        return sd_errorf(err, SD_ERR_INVALID, "inpainting_fill: must be 0, "
                         "1, 2 or 3 (got %d)", r->inpainting_fill);
    }
    if (r->inpaint_full_res_padding < 0
        || r->inpaint_full_res_padding > 4096)
    {
        return sd_errorf(err, SD_ERR_INVALID, "inpaint_full_res_padding: "
                         "must be between 0 and 4096");
    }
    return SD_OK;
}


static sd_status
check_hires(sd_err *err, const sd_request *r)
{
    if (!r->enable_hr) {
        return SD_OK;
    }
    if (r->n_init_images > 0) {
        return sd_errorf(err, SD_ERR_INVALID, "enable_hr: hires fix is for "
                         "txt2img only");
    }
    if (!(r->hr_scale >= 1.0f && r->hr_scale <= 8.0f)) {
        return sd_errorf(err, SD_ERR_INVALID, "hr_scale: must be between 1 "
                         "and 8");
    }
    if (r->hr_resize_x < 0 || r->hr_resize_y < 0 || r->hr_resize_x > 16384
        || r->hr_resize_y > 16384)
    {
        return sd_errorf(err, SD_ERR_INVALID, "%s: must be between 0 and "
                         "16384", r->hr_resize_x < 0 || r->hr_resize_x > 16384
                                  ? "hr_resize_x" : "hr_resize_y");
    }
    if (r->hr_second_pass_steps < 0 || r->hr_second_pass_steps > 1000) {
        return sd_errorf(err, SD_ERR_INVALID, "hr_second_pass_steps: must be "
                         "between 0 and 1000");
    }
    if (!(r->denoising_strength >= 0.0f && r->denoising_strength <= 1.0f)) {
        return sd_errorf(err, SD_ERR_INVALID, "denoising_strength: must be "
                         "between 0 and 1");
    }
    if (r->hr_upscaler && r->hr_upscaler[0]
        && name_index(sd_upscalers, r->hr_upscaler) < 0
        && name_index(sd_latent_modes, r->hr_upscaler) < 0)
    {
        return sd_errorf(err, SD_ERR_INVALID, "hr_upscaler: \"%s\" is not "
                         "an upscaler here; see /sdapi/v1/upscalers and "
                         "/sdapi/v1/latent-upscale-modes", r->hr_upscaler);
    }
    return SD_OK;
}


static sd_status
check_request(sd_err *err, const sd_request *r)
{
    if (r->prompt == NULL || r->negative_prompt == NULL) {
        return sd_errorf(err, SD_ERR_INVALID, "prompt: must be a string");
    }
    if (r->n_iter < 1 || r->n_iter > 4096) {
        return sd_errorf(err, SD_ERR_INVALID, "n_iter: must be between 1 and "
                         "4096 (got %d)", r->n_iter);
    }
    if (r->batch_size < 1 || r->batch_size > 64) {
        return sd_errorf(err, SD_ERR_INVALID, "batch_size: must be between 1 "
                         "and 64 (got %d)", r->batch_size);
    }
    if (r->seed < -1 || r->subseed < -1) {
        return sd_errorf(err, SD_ERR_INVALID, "%s: must be -1 (random) or "
                         "a non-negative integer",
                         r->seed < -1 ? "seed" : "subseed");
    }
    if (!(r->step_cache >= 0.0f && r->step_cache <= 1.0f)) {
        return sd_errorf(err, SD_ERR_INVALID, "step_cache: must be between "
                         "0 (off) and 1");
    }
    if (r->slg_n_layers < 0 || r->slg_n_layers > 16) {
        return sd_errorf(err, SD_ERR_INVALID, "skip layer guidance: at most "
                         "16 layers");
    }
    if (r->clip_skip < 1 || r->clip_skip > 12) {
        return sd_errorf(err, SD_ERR_INVALID, "CLIP_stop_at_last_layers: "
                         "must be between 1 and 12 (got %d)", r->clip_skip);
    }
    if (r->eta_noise_seed_delta < 0) {
        return sd_errorf(err, SD_ERR_INVALID, "eta_noise_seed_delta: must "
                         "not be negative");
    }
    if (r->eta > 10.0f) {
        return sd_errorf(err, SD_ERR_INVALID, "eta: must be at most 10");
    }
    SD_TRY(check_img2img(err, r));
    SD_TRY(check_hires(err, r));

    if (r->n_init_images > 0 && r->mask.gray && r->inpaint_full_res) {
        int  i;

        for (i = 0; i < r->n_init_images; i++) {
            if (r->init_images[i].width != r->mask.width
                || r->init_images[i].height != r->mask.height)
            {
                return sd_errorf(err, SD_ERR_INVALID, "mask: %dx%d, init "
                                 "image %d is %dx%d; inpaint_full_res "
                                 "(\"only masked\") needs them the same "
                                 "size", r->mask.width, r->mask.height, i,
                                 r->init_images[i].width,
                                 r->init_images[i].height);
            }
        }
    }

    /* valid, not done yet */
    if (r->n_init_images > 0 && r->resize_mode == 3 && r->mask.gray) {
        return sd_errorf(err, SD_ERR_UNSUPPORTED, "resize_mode: 3 (latent "
                         "upscale) with a mask is not implemented yet");
    }
    return SD_OK;
}


/* The pipeline's arguments of a request (seeds are filled per batch). */
static void
pipe_args(const sd_request *r, sd_pipe_args *a)
{
    memset(a, 0, sizeof(*a));
    a->width = r->width;
    a->height = r->height;
    a->steps = r->steps;
    a->cfg = r->cfg_scale;
    a->batch = r->batch_size;
    {
        int  fb;

        sd_sampler_resolve(r->sampler, r->scheduler, &a->sampler, &a->sched,
                           &fb);
    }
    a->eta = r->eta < 0.0f ? 1.0f : r->eta;     /* opts.eta_ancestral */
    a->ensd = (uint64_t) r->eta_noise_seed_delta;

    a->subseed_strength = r->subseed_strength;
    a->rng = r->rng;
    a->slg_scale = r->slg_scale;
    a->slg_start = r->slg_start;
    a->slg_stop = r->slg_stop;
    a->slg_layers = r->slg_layers;
    a->slg_n_layers = r->slg_n_layers;
    a->jobs = r->n_iter;
    a->step_cache = r->step_cache;
}


sd_status
sd_request_check(const sd_engine *e, const sd_request *req, char *errbuf,
    size_t errlen)
{
    sd_pipe_args  a;
    sd_err        err = {0};
    sd_status     s;

    if (e == NULL || req == NULL) {
        sd_errorf(&err, SD_ERR_INVALID, "no engine or request");
        set_errbuf(errbuf, errlen, &err);
        return SD_ERR_INVALID;
    }
    s = check_request(&err, req);
    if (s == SD_OK) {
        pipe_args(req, &a);
        s = sd_pipe_validate(&err, e->model, &a);
    }
    if (s != SD_OK) {
        set_errbuf(errbuf, errlen, &err);
    }
    return s;
}


/*
 * A prompt as A1111 encodes it: extra-network tags removed (and listed in
 * the result); the rest through the text cache, which encodes it with the
 * emphasis and the chunks of promptenc.h.
 */
static sd_status
encode_prompt(sd_err *err, sd_engine *e, const char *prompt, int clip_skip,
    sd_result *res, sd_cond *tmp, const sd_cond **out)
{
    char            *text = NULL, **tags = NULL, **l;
    int              n = 0, i;
    sd_status        s;

    SD_TRY(sd_prompt_extra_networks(err, prompt, &text, &tags, &n));
    if (n > 0) {
        l = realloc(res->extra_networks,
                    (size_t) (res->n_extra_networks + n) * sizeof(char *));
        if (l == NULL) {
            s = sd_errorf(err, SD_ERR_NOMEM, "out of memory for the "
                          "extra networks");
            goto out;
        }
        res->extra_networks = l;
        for (i = 0; i < n; i++) {
            l[res->n_extra_networks++] = tags[i];
            tags[i] = NULL;
        }
    }
    s = sd_tcache_get(err, e->tcache, e->model, text, clip_skip, tmp, out);

out:
    for (i = 0; i < n; i++) {
        free(tags[i]);
    }
    free(tags);
    free(text);
    return s;
}


/*
 * resize_mode 3 ("Just resize (latent upscale)"): the image encoded at its
 * own size (the encoder gives floor(H / 8) x floor(W / 8) latents), then
 * F.interpolate(mode="bilinear") to the request's latent size.
 */
static sd_status
latent_resize(sd_err *err, sd_engine *e, const sd_request *r,
    const sd_rgb8 *im, float *out)
{
    int        c = sd_vae_latent_channels(e->model->vae);
    int        h = im->height / 8, w = im->width / 8;
    float     *lat;
    sd_status  s;

    if (h < 1 || w < 1) {
        return sd_errorf(err, SD_ERR_INVALID, "init_images: %dx%d is too "
                         "small for resize_mode 3 (8x8 at least)",
                         im->width, im->height);
    }
    lat = sd_malloc(err, (size_t) c * h * w * sizeof(float), "latents");
    if (lat == NULL) {
        return SD_ERR_NOMEM;
    }
    s = sd_pipe_encode_image(err, e->model, im->rgb, im->width, im->height,
                             lat);
    if (s == SD_OK) {
        s = sd_latent_upscale(err, "Latent", lat, 1, c, h, w, out,
                              r->height / 8, r->width / 8);
    }
    free(lat);
    return s;
}


/*
 * img2img: the init latents of an iteration's batch, image i from
 * init_images[i % n] in every iteration (sd.h; A1111 encodes the batch's
 * init images once for all iterations), resized by resize_mode (A1111's
 * resize_image) and encoded; init holds batch x per floats. Only inpaint
 * fill 2 differs between iterations: it adds the seeds' noise.
 */
static sd_status
init_latents(sd_err *err, sd_engine *e, const sd_request *r, size_t per,
    float *init, sd_inpaint *ip, const uint64_t *seeds, uint8_t **ov,
    int *ow, int *oh)
{
    uint8_t   *px = NULL;
    sd_status  s = SD_OK;
    int        i;
    size_t     k, hw = (size_t) (r->width / 8) * (r->height / 8);

    for (i = 0; i < r->batch_size && s == SD_OK; i++) {
        const sd_rgb8  *im = &r->init_images[i % r->n_init_images];

        if (ip->active) {
            free(ov[i]);
            ov[i] = NULL;
            s = sd_inpaint_image(err, r, ip, im, &px, &ov[i], &ow[i],
                                 &oh[i]);
        } else if (r->resize_mode == 3) {
            s = latent_resize(err, e, r, im, init + i * per);
            continue;
        } else {
            s = sd_resize_image(err, r->resize_mode, im, r->width,
                                r->height, &px);
        }
        if (s == SD_OK) {
            s = sd_pipe_encode_image(err, e->model, px, r->width, r->height,
                                     init + i * per);
        }
        free(px);
        px = NULL;
        if (s != SD_OK || !ip->active || r->inpainting_fill < 2) {
            continue;
        }
        /* fill 2: the seed's noise (create_random_tensors) in the masked
           latents; fill 3: zeros */
        if (r->inpainting_fill == 2) {
            float  *nz = sd_malloc(err, per * sizeof(float), "noise");

            if (nz == NULL) {
                return SD_ERR_NOMEM;
            }
            if (r->rng == SD_RNG_CPU) {
                sd_randn_cpu(seeds[i], nz, per);
            } else {
                sd_randn_cuda(seeds[i], nz, per);
            }
            for (k = 0; k < per; k++) {
                float  nm = ip->latmask[k % hw];

                init[i * per + k] = init[i * per + k] * (1 - nm) + nz[k] * nm;
            }
            free(nz);
        } else {
            for (k = 0; k < per; k++) {
                init[i * per + k] *= 1 - ip->latmask[k % hw];
            }
        }
    }
    return s;
}


/*
 * Hires fix's target size (A1111 StableDiffusionProcessingTxt2Img
 * .calculate_target_resolution): hr_scale, or hr_resize_x / _y with the
 * other side from the aspect; both given: cover, then crop (*crop_x / _y
 * latent columns / rows off, half each side).
 */
static void
hires_size(const sd_request *r, int *tw, int *th, int *uw, int *uh)
{
    int  w = r->width, h = r->height;

    if (r->hr_resize_x == 0 && r->hr_resize_y == 0) {
        *uw = *tw = (int) (w * r->hr_scale);
        *uh = *th = (int) (h * r->hr_scale);
    } else if (r->hr_resize_y == 0) {
        *uw = *tw = r->hr_resize_x;
        *uh = *th = r->hr_resize_x * h / w;
    } else if (r->hr_resize_x == 0) {
        *uw = *tw = r->hr_resize_y * w / h;
        *uh = *th = r->hr_resize_y;
    } else {
        *tw = r->hr_resize_x;
        *th = r->hr_resize_y;
        if ((double) w / h < (double) r->hr_resize_x / r->hr_resize_y) {
            *uw = r->hr_resize_x;
            *uh = r->hr_resize_x * h / w;
        } else {
            *uw = r->hr_resize_y * w / h;
            *uh = r->hr_resize_y;
        }
    }
}


static int
is_latent_mode(const char *u)
{
    return u == NULL || u[0] == '\0' || strncmp(u, "Latent", 6) == 0;
}


/*
 * The second pass's init latents (batch x (C, th/8, tw/8)) from the first
 * pass: its latents through a latent mode, or its pixels (rgb) through a
 * PIL upscaler and the VAE encoder; a cover-size upscale (uw x uh) is
 * cropped to the centre as A1111 truncates it.
 */
static sd_status
hires_init(sd_err *err, sd_engine *e, const sd_request *r, const float *lat,
    const uint8_t *rgb, int uw, int uh, int tw, int th, float *init)
{
    int        c = sd_vae_latent_channels(e->model->vae), i, y;
    int        h = r->height / 8, w = r->width / 8;
    int        lw = uw / 8, lh = uh / 8, ow = tw / 8, oh = th / 8;
    int        cx = (lw - ow) / 2, cy = (lh - oh) / 2, k;
    size_t     per = (size_t) c * oh * ow;
    float     *up = NULL;
    uint8_t   *px = NULL, *crop = NULL;
    sd_status  s = SD_OK;

    if (is_latent_mode(r->hr_upscaler)) {
        up = sd_malloc(err, (size_t) r->batch_size * c * lh * lw
                            * sizeof(float), "hires latents");
        if (up == NULL) {
            return SD_ERR_NOMEM;
        }
        s = sd_latent_upscale(err, r->hr_upscaler && r->hr_upscaler[0]
                                   ? r->hr_upscaler : "Latent", lat,
                              r->batch_size, c, h, w, up, lh, lw);
        for (i = 0; s == SD_OK && i < r->batch_size * c; i++) {
            for (y = 0; y < oh; y++) {
                memcpy(init + (size_t) i * oh * ow + (size_t) y * ow,
                       up + (size_t) i * lh * lw + (size_t) (y + cy) * lw
                       + cx, ow * sizeof(float));
            }
        }
        free(up);
        return s;
    }

    up = sd_malloc(err, (size_t) c * lh * lw * sizeof(float), "hires");
    if (up == NULL) {
        return SD_ERR_NOMEM;
    }
    for (i = 0; i < r->batch_size && s == SD_OK; i++) {
        sd_rgb8  im = { rgb + (size_t) i * r->width * r->height * 3,
                        r->width, r->height };
        int      ow2, oh2;
        char     msg[256];

        if (sd_upscale_rgb8(r->hr_upscaler, &im, uw, uh, &px, &ow2, &oh2,
                            msg, sizeof(msg)) != SD_OK)
        {
            s = sd_errorf(err, SD_ERR_INVALID, "%s", msg);
            break;
        }
        if (ow2 != uw || oh2 != uh) {
            /* "None" keeps the size: A1111's resize() then uses LANCZOS */
            sd_rgb8  im2 = { px, ow2, oh2 };

            s = sd_resize_image(err, 0, &im2, uw, uh, &crop);
            free(px);
            px = crop;
            crop = NULL;
            if (s != SD_OK) {
                break;
            }
        }
        s = sd_pipe_encode_image(err, e->model, px, lw * 8, lh * 8, up);
        for (k = 0; s == SD_OK && k < c; k++) {
            for (y = 0; y < oh; y++) {
                memcpy(init + i * per + (size_t) k * oh * ow
                       + (size_t) y * ow,
                       up + (size_t) k * lh * lw + (size_t) (y + cy) * lw
                       + cx, ow * sizeof(float));
            }
        }
        free(px);
        px = NULL;
    }
    free(up);
    return s;
}


/*
 * The next image of res: its seeds, prompts (as sent), pixels, infotext
 * (of info, the request as it ran) and PNG.
 */
static sd_status
result_image(sd_err *err, sd_engine *e, const sd_request *info,
    const uint8_t *pix, int iw, int ih, uint64_t seed, uint64_t subseed,
    sd_result *res)
{
    sd_image  *img = &res->images[res->n_images];
    sd_status  s;
    double     t0;

    img->seed = seed;
    img->subseed = subseed;
    img->width = iw;
    img->height = ih;
    img->prompt = strdup(info->prompt);
    img->negative_prompt = strdup(info->negative_prompt);
    img->rgb = malloc((size_t) iw * ih * 3);
    res->n_images++;
    if (img->prompt == NULL || img->negative_prompt == NULL
        || img->rgb == NULL)
    {
        return sd_errorf(err, SD_ERR_NOMEM, "out of memory for an image's "
                         "prompts and pixels");
    }
    memcpy(img->rgb, pix, (size_t) iw * ih * 3);
    SD_TRY(sd_infotext(err, e->model, info, seed, subseed, &img->infotext));
    t0 = sd_seconds();
    s = sd_png_encode(err, pix, iw, ih, img->infotext, &img->png,
                      &img->png_len);
    res->time_png += sd_seconds() - t0;
    return s;
}


static sd_status
generate(sd_err *err, sd_engine *e, const sd_request *r,
    sd_progress_fn progress, void *data, volatile int *cancel,
    sd_result *res)
{
    sd_pipe_args  a;
    sd_cond       c, n;
    const sd_cond *cp = NULL, *np = NULL;
    uint64_t      seed, subseed;
    uint8_t      *rgb = NULL;
    float        *init = NULL, *first = NULL;
    sd_pipe_args  a2;
    sd_cond       hc, hn, pad[4];
    sd_edit       ed[2];
    sd_inpaint    ip;
    uint8_t      *ov[64], *comp = NULL;
    int           ow[64], oh[64];
    const sd_cond *pc = NULL, *pn = NULL;
    int           tw = r->width, th = r->height, uw = 0, uh = 0;
    sd_status     s;
    size_t        px = (size_t) r->width * r->height * 3;
    size_t        per = (size_t) 16 * (r->height / 8) * (r->width / 8);
    int           it, i, k, flag, fb_off = 0;
    sd_request    rinfo = *r;
    sd_pipe_times pt = {0};
    double        t0;

    memset(&c, 0, sizeof(c));
    memset(&n, 0, sizeof(n));
    memset(&hc, 0, sizeof(hc));
    memset(&hn, 0, sizeof(hn));
    memset(pad, 0, sizeof(pad));
    memset(ed, 0, sizeof(ed));
    memset(&ip, 0, sizeof(ip));
    memset(ov, 0, sizeof(ov));
    SD_TRY(check_request(err, r));

    pipe_args(r, &a);
    a.progress = progress;
    a.progress_data = data;
    a.cancel = cancel;
    a.steps_cached = &res->steps_cached;
    a.step_cache_off = &fb_off;
    a.times = &pt;
    SD_TRY(sd_pipe_validate(err, e->model, &a));

    seed = r->seed == -1 ? random_seed() : (uint64_t) r->seed;
    subseed = r->subseed == -1 ? random_seed() : (uint64_t) r->subseed;

    res->images = sd_calloc(err, (size_t) r->n_iter * r->batch_size,
                            sizeof(sd_image), "results");
    if (res->images == NULL) {
        return SD_ERR_NOMEM;
    }
    request_sampler(r, &res->sampler, &res->scheduler);
    res->width = res->first_pass_width = r->width;
    res->height = res->first_pass_height = r->height;

    /* through the text cache when the engine has one (textcache.h) */
    t0 = sd_seconds();
    SD_TRY_GOTO(s, encode_prompt(err, e, r->prompt, r->clip_skip, res, &c,
                                 &cp), out);
    if (r->cfg_scale > 1.0f) {
        SD_TRY_GOTO(s, encode_prompt(err, e, r->negative_prompt,
                                     r->clip_skip, res, &n, &np), out);
    }
    SD_TRY_GOTO(s, sd_edit_prepare(err, e->tcache, e->model, r->prompt,
                                   r->negative_prompt, r->cfg_scale > 1.0f,
                                   r->steps, 0, r->clip_skip, &ed[0]), out);
    sd_edit_args(&ed[0], &a, &cp, &np);
    if (r->cfg_scale > 1.0f) {
        SD_TRY_GOTO(s, sd_cond_pad_pair(err, e->tcache, e->model,
                                        r->clip_skip, &cp, &np, &pad[0],
                                        &pad[1]), out);
    }
    pc = cp;
    pn = np ? np : &n;
    res->time_text += sd_seconds() - t0;

    if (r->enable_hr) {
        int  fb, c16 = sd_vae_latent_channels(e->model->vae);

        hires_size(r, &tw, &th, &uw, &uh);
        if (uw % 8 || uh % 8) {
            s = sd_errorf(err, SD_ERR_INVALID, "hr_scale: the upscaled size "
                          "%dx%d must be a multiple of 8", uw, uh);
            goto out;
        }
        a2 = a;
        a2.width = tw;
        a2.height = th;
        a2.steps = r->hr_second_pass_steps ? r->hr_second_pass_steps
                                           : r->steps;
        a2.start = sd_img2img_start(&a2.steps, r->denoising_strength,
                                    a2.steps);
        if (r->hr_sampler && r->hr_sampler[0]) {
            sd_sampler_resolve(r->hr_sampler, r->hr_scheduler, &a2.sampler,
                               &a2.sched, &fb);
        }
        if (sd_pipe_validate(err, e->model, &a2) != SD_OK) {
            char  m[sizeof(err->msg)];

            snprintf(m, sizeof(m), "%s", err->msg);
            sd_err_clear(err);
            s = sd_errorf(err, SD_ERR_INVALID, "%s: the second pass at "
                          "%dx%d: %.400s", r->hr_resize_x || r->hr_resize_y
                          ? "hr_resize_x" : "hr_scale", tw, th, m);
            goto out;
        }
        res->width = tw;
        res->height = th;
        res->hr_steps = a2.steps - a2.start;
        res->hr_sampler = sd_sampler_labels[a2.sampler];
        res->hr_scheduler = sd_sched_labels[a2.sched];
        px = (size_t) tw * th * 3;
        first = sd_malloc(err, (size_t) r->batch_size * c16 * (r->height / 8)
                               * (r->width / 8) * sizeof(float), "latents");
        init = sd_malloc(err, (size_t) r->batch_size * c16 * (th / 8)
                              * (tw / 8) * sizeof(float), "latents");
        if (first == NULL || init == NULL) {
            s = SD_ERR_NOMEM;
            goto out;
        }
        t0 = sd_seconds();
        if (r->hr_prompt && r->hr_prompt[0]
            && strcmp(r->hr_prompt, r->prompt) != 0)
        {
            SD_TRY_GOTO(s, encode_prompt(err, e, r->hr_prompt,
                                         r->clip_skip, res, &hc, &pc), out);
        }
        if (r->cfg_scale > 1.0f && r->hr_negative_prompt
            && r->hr_negative_prompt[0]
            && strcmp(r->hr_negative_prompt, r->negative_prompt) != 0)
        {
            SD_TRY_GOTO(s, encode_prompt(err, e,
                                         r->hr_negative_prompt, r->clip_skip,
                                         res, &hn, &pn), out);
        }
        SD_TRY_GOTO(s, sd_edit_prepare(err, e->tcache, e->model,
                                       r->hr_prompt && r->hr_prompt[0]
                                       ? r->hr_prompt : r->prompt,
                                       r->hr_negative_prompt
                                       && r->hr_negative_prompt[0]
                                       ? r->hr_negative_prompt
                                       : r->negative_prompt,
                                       r->cfg_scale > 1.0f, r->steps,
                                       r->hr_second_pass_steps
                                       ? r->hr_second_pass_steps : r->steps,
                                       r->clip_skip, &ed[1]), out);
        if (ed[1].n == 0) {
            a2.n_seg = 0;       /* a copy of the first pass's args */
        }
        sd_edit_args(&ed[1], &a2, &pc, &pn);
        if (r->cfg_scale > 1.0f) {
            SD_TRY_GOTO(s, sd_cond_pad_pair(err, e->tcache, e->model,
                                            r->clip_skip, &pc, &pn, &pad[2],
                                            &pad[3]), out);
        }
        res->time_text += sd_seconds() - t0;
    }

    if (r->n_init_images > 0 && r->mask.gray != NULL) {
        SD_TRY_GOTO(s, sd_inpaint_prepare(err, r, &ip), out);
        if (ip.comment[0] && res->comments == NULL) {
            res->comments = strdup(ip.comment);
        }
    }

    /*
     * A1111's n_iter loop (process_images): iteration it runs images it *
     * batch_size ... with their seeds; an interrupt lets no later one
     * begin, a skip ends only the current one.
     */
    for (it = 0; it < r->n_iter; it++) {
        if (progress) {
            progress(data, it, r->n_iter, 0, r->steps);
        }
        flag = cancel ? *cancel : 0;
        if (flag == SD_CANCEL_ABORT) {
            s = sd_errorf(err, SD_ERR_CANCELLED, "cancelled before "
                          "iteration %d of %d", it + 1, r->n_iter);
            goto out;
        }
        if (flag == SD_CANCEL_STOP) {
            break;              /* A1111: none begins after an interrupt */
        }
        res->iterations++;

        /* A1111: seeds advance per image unless variation seeds do */
        for (i = 0; i < r->batch_size; i++) {
            k = it * r->batch_size + i;
            a.seeds[i] = (uint64_t) sd_image_seed((int64_t) seed,
                                                  r->subseed_strength, k);
            a.subseeds[i] = (uint64_t) sd_image_subseed((int64_t) subseed,
                                                        k);
        }
        a.job = it;
        if (r->n_init_images > 0) {
            if (init == NULL) {
                per = (size_t) sd_vae_latent_channels(e->model->vae)
                      * (r->height / 8) * (r->width / 8);
                init = sd_malloc(err, r->batch_size * per * sizeof(float),
                                 "init latents");
                if (init == NULL) {
                    s = SD_ERR_NOMEM;
                    goto out;
                }
            }
            SD_TRY_GOTO(s, init_latents(err, e, r, per, init, &ip, a.seeds,
                                        ov, ow, oh), out);
            a.mask = ip.active ? ip.latmask : NULL;
            a.init = init;
            a.steps = r->steps;
            a.start = sd_img2img_start(&a.steps, r->denoising_strength, 0);
        }
        if (r->enable_hr) {
            a.latents_out = is_latent_mode(r->hr_upscaler) ? first : NULL;
            SD_TRY_GOTO(s, sd_pipe_txt2img(err, e->model, &a, cp,
                                           np ? np : &n, &rgb, NULL), out);
            if (cancel && *cancel) {
                goto next;      /* no second pass after a stop or skip */
            }
            SD_TRY_GOTO(s, hires_init(err, e, r, first, rgb, uw, uh, tw, th,
                                      init), out);
            free(rgb);
            rgb = NULL;
            memcpy(a2.seeds, a.seeds, sizeof(a.seeds));
            memcpy(a2.subseeds, a.subseeds, sizeof(a.subseeds));
            a2.job = it;
            a2.init = init;
            SD_TRY_GOTO(s, sd_pipe_txt2img(err, e->model, &a2, pc, pn, &rgb,
                                           NULL), out);
        } else {
            SD_TRY_GOTO(s, sd_pipe_txt2img(err, e->model, &a, cp,
                                           np ? np : &n, &rgb, NULL), out);
        }
        if (rgb == NULL) {
            goto next;          /* stopped before its first step */
        }

        for (i = 0; i < r->batch_size; i++) {
            const uint8_t  *pix = rgb + i * px;
            int             iw = tw, ih = th;

            if (ip.active) {
                /* inpainting: put back into (the box of) the original */
                free(comp);
                comp = NULL;
                SD_TRY_GOTO(s, sd_inpaint_compose(err, r, &ip, pix, ov[i],
                                                  ow[i], oh[i], &comp), out);
                pix = comp;
                iw = ow[i];
                ih = oh[i];
            }
            if (fb_off && rinfo.step_cache > 0.0f) {
                /* the workspace could not hold the step cache: none ran */
                rinfo.step_cache = 0.0f;
                if (res->comments == NULL) {
                    res->comments = strdup("Step cache off: the GPU "
                                           "workspace cannot hold it at "
                                           "this size\n");
                }
            }
            SD_TRY_GOTO(s, result_image(err, e, &rinfo, pix, iw, ih,
                                        a.seeds[i], a.subseeds[i], res),
                        out);
        }

    next:

        free(rgb);
        rgb = NULL;
        flag = cancel ? *cancel : 0;
        if (flag == SD_CANCEL_SKIP) {
            *cancel = 0;        /* skipped: the next iteration runs */

        } else if (flag == SD_CANCEL_STOP) {
            break;              /* A1111: none begins after an interrupt */
        }
    }
    s = SD_OK;

out:
    res->time_setup += pt.setup;
    res->time_steps += pt.steps;
    res->time_decode += pt.decode;
    free(rgb);
    free(init);
    free(first);
    sd_cond_free(&c);
    sd_cond_free(&n);
    sd_cond_free(&hc);
    sd_cond_free(&hn);
    for (i = 0; i < 4; i++) {
        sd_cond_free(&pad[i]);
    }
    sd_edit_free(&ed[0]);
    sd_edit_free(&ed[1]);
    sd_inpaint_free(&ip);
    free(comp);
    for (i = 0; i < 64; i++) {
        free(ov[i]);
    }
    if (s != SD_OK) {
        sd_result_free(res);
    }
    return s;
}


sd_status
sd_generate(sd_engine *e, const sd_request *req, sd_progress_fn progress,
    void *progress_data, volatile int *cancel, sd_result *res, char *errbuf,
    size_t errlen)
{
    sd_err     err = {0};
    sd_status  s;

    memset(res, 0, sizeof(*res));
    if (e == NULL || req == NULL) {
        sd_errorf(&err, SD_ERR_INVALID, "no engine or request");
        set_errbuf(errbuf, errlen, &err);
        return SD_ERR_INVALID;
    }

    pthread_mutex_lock(&e->lock);
    s = engine_check_lost(&err, e);
#ifdef SD_HAVE_CUDA
    /* the calling thread (an nginx thread-pool thread) uses our GPU */
    if (s == SD_OK && e->cuda) {
        s = sd_cuda_bind(&err, e->be);
    }
#endif
    if (s == SD_OK) {
        s = generate(&err, e, req, progress, progress_data, cancel, res);
    }
    s = engine_note_failure(&err, e, s);
    pthread_mutex_unlock(&e->lock);

    if (s != SD_OK) {
        set_errbuf(errbuf, errlen, &err);
    }
    return s;
}


/*
 * The engine's GPU as the driver sees it (cudaMemGetInfo): bytes in use by
 * every process and the device's total. Callable from any thread, beside a
 * running sd_generate(). The CPU backend has no such figures: zeros and
 * SD_ERR_UNSUPPORTED.
 */
sd_status
sd_engine_gpu_memory(const sd_engine *e, size_t *used, size_t *total,
    char *errbuf, size_t errlen)
{
    sd_err     err;
    sd_status  s;

    sd_err_clear(&err);
    *used = 0;
    *total = 0;

    if (e == NULL || !e->cuda) {
        sd_errorf(&err, SD_ERR_UNSUPPORTED, "no GPU: the engine runs on "
                  "the CPU");
        set_errbuf(errbuf, errlen, &err);
        return SD_ERR_UNSUPPORTED;
    }
#ifdef SD_HAVE_CUDA
    {
        sd_cuda_mem  m;

        s = sd_cuda_memory(&err, e->be, &m);
        if (s != SD_OK) {
            set_errbuf(errbuf, errlen, &err);
            return s;
        }
        *used = m.device_used;
        *total = m.device_total;
        return SD_OK;
    }
#else
    s = SD_ERR_UNSUPPORTED;
    sd_errorf(&err, s, "built without CUDA");
    set_errbuf(errbuf, errlen, &err);
    return s;
#endif
}


/* ---- batching across requests (sd.h: sd_generate_group) ---- */

static int
groupable_one(const sd_request *r)
{
    return r->n_iter == 1 && r->n_init_images == 0 && !r->enable_hr
           && r->slg_scale == 0.0f && r->step_cache == 0.0f
           && r->batch_size >= 1 && r->batch_size <= 64
           && r->seed >= 0 && r->subseed >= 0
           && !sd_prompt_edited(r->prompt, r->steps)
           && !(r->cfg_scale > 1.0f
                && sd_prompt_edited(r->negative_prompt, r->steps));
}


int
sd_request_groupable(const sd_request *a, const sd_request *b)
{
    sd_pipe_args  pa, pb;

    if (a == NULL || !groupable_one(a)) {
        return 0;
    }
    if (b == NULL) {
        return 1;
    }
    if (!groupable_one(b)) {
        return 0;
    }
    /* the pass runs on the first's pipeline arguments: b's must agree
       on all but the per-image ones (batch, cfg_scale, seeds) */
    pipe_args(a, &pa);
    pipe_args(b, &pb);
    return pa.width == pb.width && pa.height == pb.height
           && pa.steps == pb.steps && pa.sampler == pb.sampler
           && pa.sched == pb.sched && pa.eta == pb.eta
           && pa.ensd == pb.ensd && pa.rng == pb.rng
           && pa.subseed_strength == pb.subseed_strength
           && (pa.cfg > 1.0f) == (pb.cfg > 1.0f);
}


int
sd_engine_group_images(const sd_engine *e, int width, int height)
{
    int64_t  n;

    if (e == NULL || width < 1 || height < 1) {
        return 1;
    }
    if (e->group_px <= 0) {
        return 64;
    }
    n = e->group_px / ((int64_t) width * height);
    return n < 1 ? 1 : n > 64 ? 64 : (int) n;
}


enum { SD_G_OUT, SD_G_RUN, SD_G_STOP, SD_G_ABORT };

typedef struct {
    const sd_request   *r;
    sd_result          *res;
    sd_err              err;
    sd_status           st;
    sd_cond             c, n;           /* own copies, padded to a pair */
    int                 chunks;
    int                 first, count;   /* its images in the batch */
    int                 state;          /* SD_G_* */
    int                 stop_at;        /* steps done when it stopped */
    int                 solo;           /* runs alone after the others */
} sd_group_member;

typedef struct {
    sd_group_member    *mb;
    int                 n;
    sd_progress_fn      progress;
    void *const        *pdata;
    volatile int *const *cancel;
    volatile int       *img_stop;
    volatile int        cancel_all;
} sd_group;


/* member k's progress data and cancel flag (the arrays may be NULL) */
#define G_DATA(g, k)  ((g)->pdata ? (g)->pdata[k] : NULL)
#define G_FLAG(g, k)  ((g)->cancel && (g)->cancel[k] ? *(g)->cancel[k] : 0)


/* The conditioning of text as a copy this call owns (the text cache's
   entries last two calls only). */
static sd_status
own_cond(sd_err *err, sd_engine *e, const char *text, int clip_skip,
    sd_result *res, sd_cond *dst)
{
    sd_cond         tmp;
    const sd_cond  *out;
    sd_status       s;

    double          t0 = sd_seconds();

    memset(&tmp, 0, sizeof(tmp));
    SD_TRY(encode_prompt(err, e, text, clip_skip, res, &tmp, &out));
    s = sd_cond_copy(err, e->model, out, dst);
    sd_cond_free(&tmp);
    res->time_text += sd_seconds() - t0;
    return s;
}


/*
 * A member's request checked and encoded (prompt, and negative when
 * guided, evened out in chunks as generate() does), its result begun.
 */
static sd_status
member_prepare(sd_engine *e, sd_group_member *g)
{
    const sd_request  *r = g->r;
    sd_err            *err = &g->err;
    sd_pipe_args       a;
    sd_cond            pc, pn;
    const sd_cond     *cp = &g->c, *np = &g->n;
    sd_status          s;

    memset(&pc, 0, sizeof(pc));
    memset(&pn, 0, sizeof(pn));
    SD_TRY(check_request(err, r));
    pipe_args(r, &a);
    SD_TRY(sd_pipe_validate(err, e->model, &a));
    g->res->images = sd_calloc(err, r->batch_size, sizeof(sd_image),
                               "results");
    if (g->res->images == NULL) {
        return SD_ERR_NOMEM;
    }
    request_sampler(r, &g->res->sampler, &g->res->scheduler);
    g->res->width = g->res->first_pass_width = r->width;
    g->res->height = g->res->first_pass_height = r->height;

    SD_TRY(own_cond(err, e, r->prompt, r->clip_skip, g->res, &g->c));
    if (r->cfg_scale > 1.0f) {
        SD_TRY(own_cond(err, e, r->negative_prompt, r->clip_skip, g->res,
                        &g->n));
        s = sd_cond_pad_pair(err, e->tcache, e->model, r->clip_skip, &cp,
                             &np, &pc, &pn);
        if (s == SD_OK && cp == &pc) {
            sd_cond_free(&g->c);
            g->c = pc;
            memset(&pc, 0, sizeof(pc));
        }
        if (s == SD_OK && np == &pn) {
            sd_cond_free(&g->n);
            g->n = pn;
            memset(&pn, 0, sizeof(pn));
        }
        sd_cond_free(&pc);
        sd_cond_free(&pn);
        SD_TRY(s);
    }
    g->chunks = sd_cond_chunks(e->model, &g->c);
    return SD_OK;
}


/*
 * The pass's progress: each member's own callback, then its cancel flag.
 * A member stopped (interrupt, skip) before the last step keeps that
 * step's estimate (img_stop); one aborted goes on unseen until the pass
 * ends. With no member left running the pass stops.
 */
static void
group_progress(void *data, int job, int jobs, int step, int steps)
{
    sd_group         *g = data;
    sd_group_member  *m;
    int               k, i, flag, live = 0, stopped = 0;

    (void) job;
    (void) jobs;
    for (k = 0; k < g->n; k++) {
        m = &g->mb[k];
        stopped |= m->state == SD_G_STOP;
        if (m->state != SD_G_RUN) {
            continue;
        }
        if (g->progress) {
            g->progress(G_DATA(g, k), 0, 1, step, steps);
        }
        flag = G_FLAG(g, k);
        if (flag == 0 || (flag != SD_CANCEL_ABORT && step >= steps)) {
            live++;
            continue;
        }
        m->stop_at = step;
        if (flag == SD_CANCEL_ABORT) {
            m->state = SD_G_ABORT;
            continue;
        }
        m->state = SD_G_STOP;
        stopped = 1;
        for (i = 0; i < m->count; i++) {
            g->img_stop[m->first + i] = 1;
        }
    }
    if (live == 0) {
        g->cancel_all = stopped ? SD_CANCEL_STOP : SD_CANCEL_ABORT;
    }
}


/* A member's images out of the pass's pixels, as generate() makes them. */
static void
member_images(sd_engine *e, sd_group_member *g, const sd_pipe_args *a,
    const uint8_t *rgb)
{
    const sd_request  *r = g->r;
    size_t             px = (size_t) r->width * r->height * 3;
    int                i;

    g->res->iterations = 1;
    for (i = 0; i < g->count && g->st == SD_OK; i++) {
        g->st = result_image(&g->err, e, r, rgb + (g->first + i) * px,
                             r->width, r->height, a->seeds[g->first + i],
                             a->subseeds[g->first + i], g->res);
    }
}


/*
 * The shared pass over the members in SD_G_RUN: their images side by
 * side, each with its conditioning, guidance and seeds. SD_ERR_NOMEM
 * (the pass did not fit) is returned for the caller to run them alone;
 * any other failure is every member's.
 */
static sd_status
group_pass(sd_engine *e, sd_group *g)
{
    sd_group_member  *lead = NULL, *m;
    sd_pipe_args      a;
    sd_err            err = {0};
    const sd_cond    *ic[64], *in[64];
    float             cfg[64];
    volatile int      stop[64];
    uint8_t          *rgb = NULL;
    sd_status         s;
    sd_pipe_times     pt = {0};
    int               k, i, total = 0, flag, running = 0;

    for (k = 0; k < g->n; k++) {
        m = &g->mb[k];
        if (m->state != SD_G_RUN) {
            continue;
        }
        if (lead == NULL) {
            lead = m;
            pipe_args(lead->r, &a);
        }
        m->first = total;
        m->count = m->r->batch_size;
        total += m->count;
        /* the iteration begins: progress 0, then its flag (generate()) */
        if (g->progress) {
            g->progress(G_DATA(g, k), 0, 1, 0, m->r->steps);
        }
        flag = G_FLAG(g, k);
        if (flag) {
            m->stop_at = 0;
            m->state = flag == SD_CANCEL_ABORT ? SD_G_ABORT : SD_G_STOP;
        }
        running += m->state == SD_G_RUN;
        for (i = m->first; i < total; i++) {
            ic[i] = &m->c;
            in[i] = &m->n;
            cfg[i] = m->r->cfg_scale;
            stop[i] = flag != 0;
            /* A1111's seeds of image i - first of its request (sd.h) */
            a.seeds[i] = (uint64_t) sd_image_seed(m->r->seed,
                             m->r->subseed_strength, i - m->first);
            a.subseeds[i] = (uint64_t) sd_image_subseed(m->r->subseed,
                                                        i - m->first);
        }
    }
    if (lead == NULL) {
        return SD_OK;
    }

    a.batch = total;
    a.jobs = 1;
    a.img_cond = ic;
    a.img_ncond = in;
    a.img_cfg = cfg;
    a.img_stop = stop;
    g->img_stop = stop;
    g->cancel_all = 0;
    a.progress = group_progress;
    a.progress_data = g;
    a.cancel = &g->cancel_all;
    a.times = &pt;
    if (running == 0) {
        s = SD_OK;              /* everyone stopped before the first step */
    } else {
        s = sd_pipe_txt2img(&err, e->model, &a, &lead->c, &lead->n, &rgb,
                            NULL);
    }
    if (s == SD_ERR_NOMEM) {
        return s;
    }

    for (k = 0; k < g->n; k++) {
        m = &g->mb[k];
        if (m->state == SD_G_OUT) {
            continue;
        }
        /* the shared pass's time is each member's */
        m->res->time_setup += pt.setup;
        m->res->time_steps += pt.steps;
        m->res->time_decode += pt.decode;
        if (m->state == SD_G_ABORT) {
            m->st = m->stop_at == 0
                    ? sd_errorf(&m->err, SD_ERR_CANCELLED, "cancelled "
                                "before iteration 1 of 1")
                    : sd_errorf(&m->err, SD_ERR_CANCELLED, "cancelled at "
                                "step %d of %d", m->stop_at + 1,
                                m->r->steps);
        } else if (s != SD_OK) {
            m->st = sd_errorf(&m->err, err.status, "%s", err.msg);
        } else if (m->state == SD_G_STOP && m->stop_at == 0) {
            m->st = SD_OK;      /* stopped before its first step: none */
        } else if (rgb) {
            member_images(e, m, &a, rgb);
        }
        if (G_FLAG(g, k) == SD_CANCEL_SKIP) {
            *g->cancel[k] = 0;  /* skipped: as after an iteration */
        }
        m->state = SD_G_OUT;
    }
    free(rgb);
    return SD_OK;
}


void
sd_generate_group(sd_engine *e, int n, const sd_request *const *reqs,
    sd_progress_fn progress, void *const *progress_data,
    volatile int *const *cancel, sd_result *res, sd_status *status,
    char *const *errbuf, size_t errlen)
{
    sd_group_member  *mb, *lead = NULL;
    sd_group          g;
    sd_err            err = {0};
    sd_status         s = SD_OK;
    int               k, images = 0;

    for (k = 0; k < n; k++) {
        memset(&res[k], 0, sizeof(res[k]));
        status[k] = SD_OK;
    }
    mb = calloc(n > 0 ? n : 1, sizeof(*mb));
    if (e == NULL || reqs == NULL || errbuf == NULL || mb == NULL) {
        sd_errorf(&err, e && reqs ? SD_ERR_NOMEM : SD_ERR_INVALID,
                  e && reqs ? "out of memory for a batch of requests"
                            : "no engine or requests");
        for (k = 0; k < n; k++) {
            status[k] = err.status;
            if (errbuf) {
                set_errbuf(errbuf[k], errlen, &err);
            }
        }
        free(mb);
        return;
    }

    pthread_mutex_lock(&e->lock);
    s = engine_check_lost(&err, e);
#ifdef SD_HAVE_CUDA
    if (s == SD_OK && e->cuda) {
        s = sd_cuda_bind(&err, e->be);
    }
#endif
    s = engine_note_failure(&err, e, s);
    memset(&g, 0, sizeof(g));
    g.mb = mb;
    g.n = n;
    g.progress = progress;
    g.pdata = progress_data;
    g.cancel = cancel;

    /* who shares the pass: those that can with the first, their prompts
       of its chunk count, up to 64 images; the others alone, after */
    for (k = 0; k < n && s == SD_OK; k++) {
        sd_group_member  *m = &mb[k];

        m->r = reqs[k];
        m->res = &res[k];
        m->state = SD_G_OUT;
        if (reqs[k] == NULL) {
            m->st = sd_errorf(&m->err, SD_ERR_INVALID, "no request");
            continue;
        }
        if (!sd_request_groupable(lead ? lead->r : reqs[k],
                                  lead ? reqs[k] : NULL)
            || images + reqs[k]->batch_size > 64)
        {
            m->solo = 1;
            continue;
        }
        m->st = member_prepare(e, m);
        if (m->st != SD_OK) {
            sd_result_free(m->res);
            continue;
        }
        if (lead && m->chunks != lead->chunks) {
            sd_result_free(m->res);
            m->solo = 1;
            continue;
        }
        lead = lead ? lead : m;
        m->state = SD_G_RUN;
        images += reqs[k]->batch_size;
    }

    if (s != SD_OK) {
        for (k = 0; k < n; k++) {
            mb[k].st = sd_errorf(&mb[k].err, err.status, "%s", err.msg);
        }
    } else if (images > 0 && group_pass(e, &g) == SD_ERR_NOMEM) {
        for (k = 0; k < n; k++) {
            if (mb[k].state != SD_G_OUT) {
                sd_result_free(mb[k].res);
                mb[k].solo = 1;
                mb[k].state = SD_G_OUT;
            }
        }
    }

    for (k = 0; k < n; k++) {
        sd_group_member  *m = &mb[k];

        if (s == SD_OK && m->solo) {
            sd_err_clear(&m->err);
            m->st = engine_check_lost(&m->err, e);
            if (m->st == SD_OK) {
                m->st = generate(&m->err, e, m->r, progress, G_DATA(&g, k),
                                 g.cancel ? cancel[k] : NULL, m->res);
            }
        }
        /* a member that failed with the device: each failure after it too */
        m->st = engine_note_failure(&m->err, e, m->st);
        if (m->st != SD_OK) {
            sd_result_free(m->res);
            set_errbuf(errbuf[k], errlen, &m->err);
        }
        status[k] = m->st;
        sd_cond_free(&m->c);
        sd_cond_free(&m->n);
    }
    pthread_mutex_unlock(&e->lock);
    free(mb);
}
