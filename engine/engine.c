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

#include "image.h"
#include "pipeline.h"
#include "sd.h"
#ifdef SD_HAVE_CUDA
#include "sd_cuda.h"
#endif


#define SD_VERSION  "sd35-nginx 0.1"


static const char *const  sd_samplers[] = { "Euler", "Euler a", NULL };
static const char *const  sd_schedulers[] = { "Automatic", NULL };


/* The version A1111's infotext and "info" name. */
const char *
sd_version(void)
{
    return SD_VERSION;
}


const char *const *
sd_sampler_names(void)
{
    return sd_samplers;
}


const char *const *
sd_scheduler_names(void)
{
    return sd_schedulers;
}


/* NULL or "" is the default (index 0); otherwise a name of the list. */
static int
name_index(const char *const *names, const char *name)
{
    int  i;

    if (name == NULL || name[0] == '\0') {
        return 0;
    }
    for (i = 0; names[i]; i++) {
        if (strcasecmp(names[i], name) == 0) {
            return i;
        }
    }
    return -1;
}


/* "A, B, C" of a name list, for messages. */
static const char *
names_list(const char *const *names, char *buf, size_t len)
{
    size_t  n = 0;
    int     i;

    buf[0] = '\0';
    for (i = 0; names[i] && n < len; i++) {
        n += snprintf(buf + n, len - n, "%s%s", i ? ", " : "", names[i]);
    }
    return buf;
}


sd_status
sd_sampler_parse(sd_err *err, const char *name, sd_sampler *out)
{
    char  list[256];
    int   i = name_index(sd_samplers, name);

    if (i < 0) {
        return sd_errorf(err, SD_ERR_INVALID, "sampler_name: \"%s\" is not "
                         "supported; available: %s", name,
                         names_list(sd_samplers, list, sizeof(list)));
    }
    *out = i == 1 ? SD_SAMPLER_EULER_A : SD_SAMPLER_EULER;
    return SD_OK;
}


/* The canonical spelling of a request's sampler, for the infotext. */
static const char *
sampler_name(const sd_request *r)
{
    int  i = name_index(sd_samplers, r->sampler);

    return sd_samplers[i < 0 ? 0 : i];
}


struct sd_engine {
    sd_backend         *be;
    sd_model           *model;
    pthread_mutex_t     lock;
    int                 cuda;           /* the backend is the GPU's */
    char                device[640];
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
}


static void
set_errbuf(char *errbuf, size_t errlen, const sd_err *err)
{
    if (errbuf && errlen) {
        snprintf(errbuf, errlen, "%s", err->msg[0] ? err->msg
                                                   : sd_status_str(err->status));
    }
}


/* The backend of cfg's device and precision. */
static sd_status
engine_backend(sd_err *err, sd_engine *e, const sd_engine_config *cfg)
{
    sd_precision  p = cfg->precision;

    if (cfg->device == SD_DEVICE_CPU) {
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
    if (p == SD_PRECISION_FP8) {
        return sd_errorf(err, SD_ERR_UNSUPPORTED, "precision: fp8 is not "
                         "available yet; use bf16");
    }
    SD_TRY(sd_backend_cuda_create(err, cfg->device_index,
                                  p == SD_PRECISION_FP32 ? SD_DT_F32
                                                         : SD_DT_BF16,
                                  &e->be));
    e->cuda = 1;
    snprintf(e->device, sizeof(e->device), "cuda:%d %s, %s",
             cfg->device_index, p == SD_PRECISION_FP32 ? "fp32" : "bf16",
             sd_cuda_info(e->be));
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
sd_result_free(sd_result *res)
{
    int  i;

    if (res == NULL || res->images == NULL) {
        return;
    }
    for (i = 0; i < res->n_images; i++) {
        free(res->images[i].png);
        free(res->images[i].infotext);
    }
    free(res->images);
    res->images = NULL;
    res->n_images = 0;
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
    char    cfg[32], vs[32], var[128] = "";
    size_t  len;
    char   *s;

    float_repr(cfg, sizeof(cfg), r->cfg_scale);
    if (r->subseed_strength > 0.0f) {
        float_repr(vs, sizeof(vs), r->subseed_strength);
        snprintf(var, sizeof(var), ", Variation seed: %llu, Variation seed "
                 "strength: %s", (unsigned long long) subseed, vs);
    }

    len = strlen(r->prompt) + strlen(r->negative_prompt) + 1024;
    s = sd_malloc(err, len, "infotext");
    if (s == NULL) {
        return SD_ERR_NOMEM;
    }
    snprintf(s, len, "%s\n%s%s%sSteps: %d, Sampler: %s, Schedule type: %s, "
             "CFG scale: %s, Seed: %llu, Size: %dx%d, Model hash: %s, "
             "Model: %s%s%s, Version: %s",
             r->prompt,
             r->negative_prompt[0] ? "Negative prompt: " : "",
             r->negative_prompt,
             r->negative_prompt[0] ? "\n" : "",
             r->steps, sampler_name(r), sd_schedulers[0], cfg,
             (unsigned long long) seed,
             r->width, r->height, m->hash, m->name, var,
             r->rng == SD_RNG_CPU ? ", RNG: CPU" : "", SD_VERSION);
    *out = s;
    return SD_OK;
}


static sd_status
check_request(sd_err *err, const sd_request *r)
{
    sd_sampler  sampler;
    char        list[256];

    if (r->prompt == NULL || r->negative_prompt == NULL) {
        return sd_errorf(err, SD_ERR_INVALID, "prompt: must be a string");
    }
    SD_TRY(sd_sampler_parse(err, r->sampler, &sampler));
    if (name_index(sd_schedulers, r->scheduler) < 0) {
        return sd_errorf(err, SD_ERR_INVALID, "scheduler: \"%s\" is not "
                         "supported; available: %s", r->scheduler,
                         names_list(sd_schedulers, list, sizeof(list)));
    }
    if (r->n_iter < 1 || r->n_iter > 1000) {
        return sd_errorf(err, SD_ERR_INVALID, "n_iter: must be between 1 and "
                         "1000 (got %d)", r->n_iter);
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
    if (r->slg_n_layers < 0 || r->slg_n_layers > 16) {
        return sd_errorf(err, SD_ERR_INVALID, "skip layer guidance: at most "
                         "16 layers");
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
    if (sd_sampler_parse(NULL, r->sampler, &a->sampler) != SD_OK) {
        a->sampler = SD_SAMPLER_EULER;      /* check_request refuses it */
    }
    a->subseed_strength = r->subseed_strength;
    a->rng = r->rng;
    a->slg_scale = r->slg_scale;
    a->slg_start = r->slg_start;
    a->slg_stop = r->slg_stop;
    a->slg_layers = r->slg_layers;
    a->slg_n_layers = r->slg_n_layers;
    a->jobs = r->n_iter;
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


static sd_status
generate(sd_err *err, sd_engine *e, const sd_request *r,
    sd_progress_fn progress, void *data, volatile int *cancel,
    sd_result *res)
{
    sd_pipe_args  a;
    sd_cond       c, n;
    uint64_t      seed, subseed;
    uint8_t      *rgb = NULL;
    sd_status     s;
    size_t        px = (size_t) r->width * r->height * 3;
    int           it, i, k;

    memset(&c, 0, sizeof(c));
    memset(&n, 0, sizeof(n));
    SD_TRY(check_request(err, r));

    pipe_args(r, &a);
    a.progress = progress;
    a.progress_data = data;
    a.cancel = cancel;
    SD_TRY(sd_pipe_validate(err, e->model, &a));

    seed = r->seed == -1 ? random_seed() : (uint64_t) r->seed;
    subseed = r->subseed == -1 ? random_seed() : (uint64_t) r->subseed;

    res->images = sd_calloc(err, (size_t) r->n_iter * r->batch_size,
                            sizeof(sd_image), "results");
    if (res->images == NULL) {
        return SD_ERR_NOMEM;
    }

    SD_TRY_GOTO(s, sd_cond_encode(err, e->model, r->prompt, &c), out);
    if (r->cfg_scale > 1.0f) {
        SD_TRY_GOTO(s, sd_cond_encode(err, e->model, r->negative_prompt, &n),
                    out);
    }

    for (it = 0; it < r->n_iter; it++) {
        /* A1111: seeds advance per image unless variation seeds do */
        for (i = 0; i < r->batch_size; i++) {
            k = it * r->batch_size + i;
            a.seeds[i] = seed + (r->subseed_strength > 0.0f ? 0 : k);
            a.subseeds[i] = subseed + k;
        }
        a.job = it;
        SD_TRY_GOTO(s, sd_pipe_txt2img(err, e->model, &a, &c, &n, &rgb, NULL),
                    out);
        if (rgb == NULL) {
            break;              /* stopped before its first step */
        }

        for (i = 0; i < r->batch_size; i++) {
            sd_image *img = &res->images[res->n_images];

            img->seed = a.seeds[i];
            img->subseed = a.subseeds[i];
            SD_TRY_GOTO(s, sd_infotext(err, e->model, r, img->seed,
                                       img->subseed, &img->infotext), out);
            res->n_images++;
            SD_TRY_GOTO(s, sd_png_encode(err, rgb + i * px, r->width,
                                         r->height, img->infotext, &img->png,
                                         &img->png_len), out);
        }
        free(rgb);
        rgb = NULL;
        if (cancel && *cancel == SD_CANCEL_STOP) {
            break;              /* A1111: no iteration starts after one */
        }
    }
    s = SD_OK;

out:
    free(rgb);
    sd_cond_free(&c);
    sd_cond_free(&n);
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
#ifdef SD_HAVE_CUDA
    /* the calling thread (an nginx thread-pool thread) uses our GPU */
    if (e->cuda) {
        s = sd_cuda_bind(&err, e->be);
        if (s != SD_OK) {
            pthread_mutex_unlock(&e->lock);
            set_errbuf(errbuf, errlen, &err);
            return s;
        }
    }
#endif
    s = generate(&err, e, req, progress, progress_data, cancel, res);
    pthread_mutex_unlock(&e->lock);

    if (s != SD_OK) {
        set_errbuf(errbuf, errlen, &err);
    }
    return s;
}
