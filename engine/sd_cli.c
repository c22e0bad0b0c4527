/*
 * sd_cli.c: the sd-cli command-line tool.
 *
 *   sd-cli encode  --model DIR --prompt TEXT [--negative TEXT] --dump FILE
 *   sd-cli txt2img --model DIR --prompt TEXT [--negative TEXT] [--width W]
 *                  [--height H] [--steps N] [--cfg F] [--seed S]
 *                  [--rng cpu|cuda] [--sampler NAME] [--batch N]
 *                  [--slg-scale F --slg-layers 7,8,9 --slg-start F
 *                   --slg-stop F] --output FILE.png [--dump FILE]
 *   sd-cli make-demo DIR [--seed S]
 *
 * Dumps are safetensors files whose tensor names and shapes are those of
 * the reference goldens (batch dimension 1 first); they are how the
 * pipeline is checked from outside, so the names are a stable interface.
 */

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "demo.h"
#include "image.h"
#include "pipeline.h"
#include "safetensors.h"
#include "sd_cli.h"
#include "precision.h"
#ifdef SD_HAVE_CUDA
#include "sd_cuda.h"
#endif


typedef struct {
    const char     *model, *prompt, *negative, *dump, *output, *rng;
    const char     *sampler, *slg_layers, *device, *precision;
    int             width, height, steps, batch;
    double          cfg, slg_scale, slg_start, slg_stop;
    long long       seed;
} sd_cli_args;


int
sd_cli_usage(void)
{
    fprintf(stderr,
        "usage:\n"
        "  sd-cli encode --model DIR --prompt TEXT [--negative TEXT] "
        "--dump FILE\n"
        "  sd-cli txt2img --model DIR --prompt TEXT [--negative TEXT]\n"
        "         [--width W] [--height H] [--steps N] [--cfg F] [--seed S]\n"
        "         [--rng cpu|cuda] [--sampler Euler|'Euler a'] [--batch N]\n"
        "         [--slg-scale F --slg-layers 7,8,9 --slg-start F "
        "--slg-stop F]\n"
        "         --output FILE.png [--dump FILE]\n"
        "  sd-cli make-demo DIR [--seed S]\n"
        "  sd-cli gpus\n"
        "  sd-cli make-random --config large|medium|large-turbo DIR "
        "[--seed S]\n"
        "  sd-cli bench --model DIR [--device cuda[:N]] "
        "[--precision bf16|fp8|fp32]\n"
        "         [--fp8-keep KINDS] [--offload t5|clip|text] [--width W] "
        "[--height H]\n"
        "         [--steps N] [--cfg F] [--batch N] [--runs N] "
        "[--profile 1] [--sampler NAME]\n"
        "  sd-cli fp8-sweep --model DIR [--device cuda[:N]] "
        "[--prompts FILE]\n"
        "         [--kinds KINDS] [--width W] [--height H] [--steps N] "
        "[--cfg F]\n"
        "  sd-cli step --model DIR --ref FILE [--ref-log FILE] "
        "[--device cuda[:N]]\n"
        "         [--precision bf16|fp32] [--reps N]\n"
        "  sd-cli quantize MODEL_DIR OUT.safetensors "
        "[--scale tensor|channel]\n"
        "         [--keep KIND,...|default|none]\n"
        "  sd-cli fp8-model OUT_DIR --base DIR [--file F] [--transformer F]\n"
        "         [--text-encoder F] [--text-encoder-2 F] "
        "[--text-encoder-3 F] [--vae F]\n"
        "  sd-cli fp8-check MODEL_DIR FILE [--scale tensor|channel] "
        "[--keep K]\n"
        "         [--max-error F]\n"
        "encode and txt2img also take --device cpu|cuda[:N] and --precision "
        "fp32|bf16|fp8\n(bf16 and fp8 on the GPU).\n");
    return 2;
}


double
sd_cli_rel_l2(const float *a, const float *b, size_t n)
{
    double  num = 0, den = 0, d;
    size_t  i;

    for (i = 0; i < n; i++) {
        d = (double) a[i] - b[i];
        num += d * d;
        den += (double) b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}


double
sd_cli_psnr(const uint8_t *a, const uint8_t *b, size_t n)
{
    double  mse = 0;
    size_t  i;

    for (i = 0; i < n; i++) {
        mse += ((double) a[i] - b[i]) * ((double) a[i] - b[i]);
    }
    mse /= (double) (n ? n : 1);
    return mse > 0 ? 10.0 * log10(255.0 * 255.0 / mse) : 99.0;
}


int
sd_cli_fail(const char *what, const sd_err *err)
{
    fprintf(stderr, "sd-cli: %s: %s\n", what, err->msg[0] ? err->msg
                                          : sd_status_str(err->status));
    return 1;
}


int
sd_cli_parse_int(const char *name, const char *v, long long lo, long long hi,
    long long *out)
{
    char       *end;
    long long   n;

    errno = 0;
    n = strtoll(v, &end, 10);
    if (errno || end == v || *end || n < lo || n > hi) {
        fprintf(stderr, "sd-cli: %s: \"%s\" is not an integer in %lld..%lld"
                "\n", name, v, lo, hi);
        return -1;
    }
    *out = n;
    return 0;
}


int
sd_cli_parse_double(const char *name, const char *v, double *out)
{
    char  *end;

    errno = 0;
    *out = strtod(v, &end);
    if (errno || end == v || *end) {
        fprintf(stderr, "sd-cli: %s: \"%s\" is not a number\n", name, v);
        return -1;
    }
    return 0;
}


int
sd_cli_parse(int argc, char **argv, const sd_cli_opt *opts, size_t nopts)
{
    const sd_cli_opt  *o, *end = opts + nopts;
    long long          n;
    int                i;

    for (i = 0; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (v == NULL) {
            fprintf(stderr, "sd-cli: %s needs a value\n", k);
            return -1;
        }
        i++;
        for (o = opts; o < end && strcmp(k, o->name) != 0; o++) {
            /* void */
        }
        if (o == end) {
            fprintf(stderr, "sd-cli: unknown option \"%s\"\n", k);
            return -1;
        }
        if (o->s) {
            *o->s = v;
        } else if (o->d) {
            if (sd_cli_parse_double(k, v, o->d)) return -1;
        } else {
            if (sd_cli_parse_int(k, v, o->lo, o->hi, &n)) return -1;
            if (o->i) {
                *o->i = (int) n;
            } else {
                *o->ll = n;
            }
        }
    }
    return 0;
}


/* --fp8-keep of the command being run (layer kinds kept in BF16) */
const char  *sd_cli_fp8_keep;
/* --offload of the command being run (text encoders in host memory) */
const char  *sd_cli_offload;


int
sd_cli_backend(const char *device, const char *precision, sd_backend **be,
    sd_err *err)
{
    long long  idx = 0;
    int        bf16, fp8;
    unsigned   keep = 0;
    char       bad[64], kinds[256];

    *be = NULL;
    if (device == NULL || strcmp(device, "cpu") == 0) {
        if (precision && strcmp(precision, "fp32") != 0) {
            fprintf(stderr, "sd-cli: --precision: the CPU computes in fp32 "
                    "only\n");
            return 2;
        }
        if (sd_backend_cpu_create(err, 0, be) != SD_OK) {
            return sd_cli_fail("creating the backend", err);
        }
        return 0;
    }
    if (strcmp(device, "cuda") != 0
        && (strncmp(device, "cuda:", 5) != 0
            || sd_cli_parse_int("--device", device + 5, 0, 255, &idx)))
    {
        fprintf(stderr, "sd-cli: --device: cpu, cuda or cuda:N\n");
        return 2;
    }
    if (precision && strcmp(precision, "bf16") != 0
        && strcmp(precision, "fp32") != 0 && strcmp(precision, "fp8") != 0)
    {
        fprintf(stderr, "sd-cli: --precision: bf16, fp8 or fp32 on the "
                "GPU\n");
        return 2;
    }
    bf16 = precision == NULL || strcmp(precision, "fp32") != 0;
    fp8 = precision && strcmp(precision, "fp8") == 0;
    if (fp8 && sd_fp8_parse_kinds(sd_cli_fp8_keep ? sd_cli_fp8_keep : "",
                                  &keep, bad, sizeof(bad)) != 0)
    {
        fprintf(stderr, "sd-cli: --fp8-keep: unknown layer kind \"%s\"\n",
                bad);
        return 2;
    }
#ifdef SD_HAVE_CUDA
    if (sd_backend_cuda_create(err, (int) idx, bf16 ? SD_DT_BF16 : SD_DT_F32,
                               be) != SD_OK)
    {
        return sd_cli_fail("creating the CUDA backend", err);
    }
    if (sd_cli_offload
        && sd_offload_parse(sd_cli_offload, &(*be)->offload) != 0)
    {
        fprintf(stderr, "sd-cli: --offload: t5, clip, text or none\n");
        return 2;
    }
    if (fp8) {
        sd_fp8_apply(*be, sd_fp8_default_kinds() & ~keep);
    }
    fprintf(stderr, "sd-cli: %s, %s%s%s\n", sd_cuda_info(*be),
            fp8 ? "fp8 " : bf16 ? "bf16" : "fp32",
            fp8 ? sd_fp8_kinds_str((*be)->fp8_kinds, kinds, sizeof(kinds))
                : "", "");
    return 0;
#else
    (void) bf16;
    (void) kinds;
    fprintf(stderr, "sd-cli: --device %s: built without CUDA\n", device);
    return 2;
#endif
}


/*
 * The GPU workspace for requests up to width x height x batch (nothing on
 * the CPU).
 */
int
sd_cli_reserve(sd_model *m, int width, int height, int batch, sd_err *err)
{
#ifdef SD_HAVE_CUDA
    if (strcmp(m->be->ops->name, "cuda") == 0
        && sd_pipe_reserve(err, m, 0, width, height, batch) != SD_OK)
    {
        return sd_cli_fail("sizing the GPU workspace", err);
    }
#else
    (void) m;
    (void) width;
    (void) height;
    (void) batch;
    (void) err;
#endif
    return 0;
}


static int
parse_args(int argc, char **argv, sd_cli_args *a)
{
    sd_cli_opt  opts[] = {
        { "--model",      .s = &a->model },
        { "--prompt",     .s = &a->prompt },
        { "--negative",   .s = &a->negative },
        { "--dump",       .s = &a->dump },
        { "--output",     .s = &a->output },
        { "--rng",        .s = &a->rng },
        { "--sampler",    .s = &a->sampler },
        { "--slg-layers", .s = &a->slg_layers },
        { "--device",     .s = &a->device },
        { "--precision",  .s = &a->precision },
        { "--width",      .i = &a->width, .lo = 1, .hi = 1 << 16 },
        { "--height",     .i = &a->height, .lo = 1, .hi = 1 << 16 },
        { "--steps",      .i = &a->steps, .lo = 0, .hi = 100000 },
        { "--batch",      .i = &a->batch, .lo = 1, .hi = 64 },
        { "--seed",       .ll = &a->seed, .lo = 0, .hi = 0xffffffffffffLL },
        { "--cfg",        .d = &a->cfg },
        { "--slg-scale",  .d = &a->slg_scale },
        { "--slg-start",  .d = &a->slg_start },
        { "--slg-stop",   .d = &a->slg_stop },
    };
    memset(a, 0, sizeof(*a));
    a->prompt = "";
    a->negative = "";
    a->width = 1024;
    a->height = 1024;
    a->steps = 28;
    a->cfg = 4.5;
    a->seed = 42;
    a->batch = 1;
    a->rng = "cuda";
    a->sampler = "Euler";
    a->slg_start = 0.01;
    a->slg_stop = 0.2;

    if (sd_cli_parse(argc, argv, opts, sizeof(opts) / sizeof(opts[0]))
        != 0)
    {
        return -1;
    }
    if (a->model == NULL) {
        fprintf(stderr, "sd-cli: --model DIR is required\n");
        return -1;
    }
    return 0;
}


/* A dump under construction: host copies owned until written. */
typedef struct {
    sd_st_out   t[32];
    void       *own[32];
    size_t      n;
} sd_cli_dump;


static int
dump_add(sd_cli_dump *d, const char *name, sd_dtype dt, void *data,
    int own, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3)
{
    sd_st_out  *o = &d->t[d->n];

    if (data == NULL || d->n == 32) {
        return -1;
    }
    o->name = name;
    o->dtype = dt;
    o->ndim = ndim;
    o->shape[0] = d0;
    o->shape[1] = d1;
    o->shape[2] = d2;
    o->shape[3] = d3;
    o->data = data;
    d->own[d->n] = own ? data : NULL;
    d->n++;
    return 0;
}


static void
dump_free(sd_cli_dump *d)
{
    size_t  i;

    for (i = 0; i < d->n; i++) {
        free(d->own[i]);
    }
    d->n = 0;
}


static float *
host_copy(const sd_tensor *t)
{
    float   *p;
    sd_err   err = {0};

    if (t == NULL) {
        return NULL;
    }
    p = malloc((size_t) sd_numel(t) * sizeof(float));
    if (p && sd_tensor_download(&err, t, p) != SD_OK) {
        free(p);
        p = NULL;
    }
    return p;
}


/* The encode-stage tensors of the prompt and the negative prompt. */
static int
dump_cond(sd_cli_dump *d, const sd_model *m, const sd_cond *c,
    const sd_cond *n)
{
    int64_t  rows = c->context->ne[1], jd = c->context->ne[2];
    int      r = 0;

    r |= dump_add(d, "clip_l.ids", SD_DT_I32, c->ids_l, 0, 2, 1,
                  m->clip_len, 0, 0);
    r |= dump_add(d, "clip_g.ids", SD_DT_I32, c->ids_g, 0, 2, 1,
                  m->clip_len, 0, 0);
    r |= dump_add(d, "t5.ids", SD_DT_I32, c->ids_t5, 0, 2, 1, m->t5_len, 0,
                  0);
    r |= dump_add(d, "clip_l.penultimate", SD_DT_F32, host_copy(c->pen_l), 1,
                  3, 1, c->pen_l->ne[1], c->pen_l->ne[2], 0);
    r |= dump_add(d, "clip_l.text_embeds", SD_DT_F32, host_copy(c->emb_l), 1,
                  2, 1, c->emb_l->ne[1], 0, 0);
    r |= dump_add(d, "clip_g.penultimate", SD_DT_F32, host_copy(c->pen_g), 1,
                  3, 1, c->pen_g->ne[1], c->pen_g->ne[2], 0);
    r |= dump_add(d, "clip_g.text_embeds", SD_DT_F32, host_copy(c->emb_g), 1,
                  2, 1, c->emb_g->ne[1], 0, 0);
    if (c->t5) {
        r |= dump_add(d, "t5.hidden", SD_DT_F32, host_copy(c->t5), 1, 3, 1,
                      c->t5->ne[1], c->t5->ne[2], 0);
    }
    r |= dump_add(d, "prompt_embeds", SD_DT_F32, host_copy(c->context), 1, 3,
                  1, rows, jd, 0);
    r |= dump_add(d, "pooled", SD_DT_F32, host_copy(c->pooled), 1, 2, 1,
                  c->pooled->ne[1], 0, 0);
    r |= dump_add(d, "neg_prompt_embeds", SD_DT_F32, host_copy(n->context), 1,
                  3, 1, rows, jd, 0);
    r |= dump_add(d, "neg_pooled", SD_DT_F32, host_copy(n->pooled), 1, 2, 1,
                  n->pooled->ne[1], 0, 0);
    return r;
}


static int
cmd_encode(int argc, char **argv)
{
    sd_cli_args   a;
    sd_backend   *be = NULL;
    sd_model     *m = NULL;
    sd_cond       c, n;
    sd_cli_dump   d;
    sd_err        err = {0};
    int           rc = 1;

    memset(&c, 0, sizeof(c));
    memset(&n, 0, sizeof(n));
    memset(&d, 0, sizeof(d));
    if (parse_args(argc, argv, &a) != 0) {
        return sd_cli_usage();
    }
    if (a.dump == NULL) {
        fprintf(stderr, "sd-cli: encode needs --dump FILE\n");
        return sd_cli_usage();
    }
    if ((rc = sd_cli_backend(a.device, a.precision, &be, &err)) != 0) {
        goto out;
    }
    rc = 1;
    if (sd_model_load(&err, be, a.model, SD_PART_TEXT, &m) != SD_OK) {
        rc = sd_cli_fail("loading the model", &err);
        goto out;
    }
    if (sd_cond_encode(&err, m, a.prompt, &c) != SD_OK
        || sd_cond_encode(&err, m, a.negative, &n) != SD_OK)
    {
        rc = sd_cli_fail("encoding", &err);
        goto out;
    }
    if (dump_cond(&d, m, &c, &n) != 0) {
        fprintf(stderr, "sd-cli: out of memory preparing the dump\n");
        goto out;
    }
    if (sd_st_write(&err, a.dump, d.t, d.n) != SD_OK) {
        rc = sd_cli_fail("writing the dump", &err);
        goto out;
    }
    rc = 0;

out:
    dump_free(&d);
    sd_cond_free(&c);
    sd_cond_free(&n);
    sd_model_free(m);
    sd_backend_destroy(be);
    return rc;
}


static void
progress_bar(void *data, int job, int jobs, int step, int steps)
{
    const struct timespec  *t0 = data;
    struct timespec         now;
    double                  el;
    int                     i, w = 30, done = w * step / steps;

    (void) job;
    (void) jobs;
    clock_gettime(CLOCK_MONOTONIC, &now);
    el = (now.tv_sec - t0->tv_sec) + (now.tv_nsec - t0->tv_nsec) / 1e9;
    fprintf(stderr, "\r[");
    for (i = 0; i < w; i++) {
        fputc(i < done ? '#' : '.', stderr);
    }
    fprintf(stderr, "] step %d/%d  %.1fs%s", step, steps, el,
            step == steps ? "\n" : "");
    fflush(stderr);
}


static int
parse_layers(const char *s, int *layers, int *n)
{
    char  *end;
    long   v;

    *n = 0;
    while (s && *s) {
        v = strtol(s, &end, 10);
        if (end == s || *n == 16 || v < 0 || v > 1000
            || (*end && *end != ','))
        {
            fprintf(stderr, "sd-cli: --slg-layers: expected a list like "
                    "7,8,9\n");
            return -1;
        }
        layers[(*n)++] = (int) v;
        s = *end == ',' ? end + 1 : end;
    }
    return 0;
}


static int
write_file(const char *path, const void *data, size_t len)
{
    FILE  *f = fopen(path, "wb");

    if (f == NULL || fwrite(data, 1, len, f) != len) {
        fprintf(stderr, "sd-cli: writing \"%s\" failed: %s\n", path,
                strerror(errno));
        if (f) {
            fclose(f);
        }
        return -1;
    }
    if (fclose(f) != 0) {
        fprintf(stderr, "sd-cli: writing \"%s\" failed: %s\n", path,
                strerror(errno));
        return -1;
    }
    return 0;
}


static int
cmd_txt2img(int argc, char **argv)
{
    sd_cli_args      a;
    sd_pipe_args     p;
    sd_pipe_dump     pd;
    sd_request       req;
    sd_backend      *be = NULL;
    sd_model        *m = NULL;
    sd_cond          c, n;
    sd_cli_dump      d;
    sd_err           err = {0};
    uint8_t         *rgb = NULL;
    unsigned char   *png = NULL;
    size_t           png_len;
    char            *info = NULL;
    struct timespec  t0;
    int              rc = 1, i, layers[16], nl = 0;

    memset(&c, 0, sizeof(c));
    memset(&n, 0, sizeof(n));
    memset(&d, 0, sizeof(d));
    memset(&p, 0, sizeof(p));
    memset(&pd, 0, sizeof(pd));
    if (parse_args(argc, argv, &a) != 0
        || parse_layers(a.slg_layers, layers, &nl) != 0)
    {
        return sd_cli_usage();
    }
    if (a.output == NULL && a.dump == NULL) {
        fprintf(stderr, "sd-cli: txt2img needs --output FILE.png or --dump "
                "FILE\n");
        return sd_cli_usage();
    }
    {
        /* the API falls back on unknown names as A1111 does; a command
           line refuses them */
        const char *const  *names = sd_sampler_names();
        char                list[256] = "";
        int                 fb, k;

        sd_sampler_resolve(a.sampler, NULL, &p.sampler, &p.sched, &fb);
        if (fb) {
            for (k = 0; names[k]; k++) {
                snprintf(list + strlen(list), sizeof(list) - strlen(list),
                         "%s%s", k ? ", " : "", names[k]);
            }
            fprintf(stderr, "sd-cli: --sampler: \"%s\" is not supported; "
                    "available: %s\n", a.sampler, list);
            return 2;
        }
        p.eta = 1.0f;
    }
    if (strcmp(a.rng, "cpu") != 0 && strcmp(a.rng, "cuda") != 0) {
        fprintf(stderr, "sd-cli: --rng: must be cpu or cuda\n");
        return 2;
    }

    p.width = a.width;
    p.height = a.height;
    p.steps = a.steps;
    p.batch = a.batch;
    p.cfg = (float) a.cfg;
    p.rng = strcmp(a.rng, "cpu") == 0 ? SD_RNG_CPU : SD_RNG_CUDA;
    p.slg_scale = (float) a.slg_scale;
    p.slg_start = (float) a.slg_start;
    p.slg_stop = (float) a.slg_stop;
    p.slg_layers = layers;
    p.slg_n_layers = nl;
    p.jobs = 1;
    for (i = 0; i < a.batch; i++) {
        p.seeds[i] = (uint64_t) a.seed + i;
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (isatty(STDERR_FILENO)) {
        p.progress = progress_bar;
        p.progress_data = &t0;
    }

    if ((rc = sd_cli_backend(a.device, a.precision, &be, &err)) != 0) {
        goto out;
    }
    rc = 1;
    if (sd_model_load(&err, be, a.model, SD_PART_ALL, &m) != SD_OK) {
        rc = sd_cli_fail("loading the model", &err);
        goto out;
    }
    if (sd_cli_reserve(m, a.width, a.height, a.batch, &err) != 0) {
        goto out;
    }
    if (sd_pipe_validate(&err, m, &p) != SD_OK) {
        fprintf(stderr, "sd-cli: %s\n", err.msg);
        rc = 2;
        goto out;
    }
    if (sd_cond_encode(&err, m, a.prompt, &c) != SD_OK
        || sd_cond_encode(&err, m, a.negative, &n) != SD_OK)
    {
        rc = sd_cli_fail("encoding", &err);
        goto out;
    }
    if (sd_pipe_txt2img(&err, m, &p, &c, &n, &rgb, a.dump ? &pd : NULL)
        != SD_OK)
    {
        rc = sd_cli_fail("generating", &err);
        goto out;
    }

    if (a.output) {
        sd_request_init(&req);
        req.prompt = a.prompt;
        req.negative_prompt = a.negative;
        req.width = a.width;
        req.height = a.height;
        req.steps = a.steps;
        req.cfg_scale = (float) a.cfg;
        req.sampler = a.sampler;
        if (sd_infotext(&err, m, &req, p.seeds[0], 0, &info) != SD_OK
            || sd_png_encode(&err, rgb, a.width, a.height, info, &png,
                             &png_len) != SD_OK)
        {
            rc = sd_cli_fail("encoding the PNG", &err);
            goto out;
        }
        if (write_file(a.output, png, png_len) != 0) {
            goto out;
        }
    }

    if (a.dump) {
        int64_t  ch = pd.latent_c, h = pd.latent_h, w = pd.latent_w;

        if (dump_cond(&d, m, &c, &n) != 0
            || dump_add(&d, "noise", SD_DT_F32, pd.noise, 0, 4, 1, ch, h, w)
            || dump_add(&d, "sigmas", SD_DT_F32, pd.sigmas, 0, 1,
                        a.steps + 1, 0, 0, 0)
            || dump_add(&d, "timesteps", SD_DT_F32, pd.timesteps, 0, 1,
                        a.steps, 0, 0, 0)
            || dump_add(&d, "latents_after_step0", SD_DT_F32,
                        pd.latents_step0, 0, 4, 1, ch, h, w)
            || dump_add(&d, "final_latents", SD_DT_F32, pd.final_latents, 0,
                        4, 1, ch, h, w)
            || dump_add(&d, "image_u8", SD_DT_U8, rgb, 0, 4, 1, a.height,
                        a.width, 3))
        {
            fprintf(stderr, "sd-cli: out of memory preparing the dump\n");
            goto out;
        }
        if (sd_st_write(&err, a.dump, d.t, d.n) != SD_OK) {
            rc = sd_cli_fail("writing the dump", &err);
            goto out;
        }
    }
    rc = 0;

out:
    dump_free(&d);
    sd_pipe_dump_free(&pd);
    free(rgb);
    free(png);
    free(info);
    sd_cond_free(&c);
    sd_cond_free(&n);
    sd_model_free(m);
    sd_backend_destroy(be);
    return rc;
}


static int
cmd_make_demo(int argc, char **argv)
{
    sd_err     err = {0};
    long long  seed = 0;

    if (argc != 1 && !(argc == 3 && strcmp(argv[1], "--seed") == 0)) {
        return sd_cli_usage();
    }
    if (argc == 3
        && sd_cli_parse_int("--seed", argv[2], 0, 0xffffffffLL, &seed))
    {
        return 2;
    }
    if (sd_demo_write(&err, argv[0], (uint64_t) seed) != SD_OK) {
        return sd_cli_fail("writing the demo model", &err);
    }
    return 0;
}


/* make-random --config NAME DIR [--seed S]: a full-size random model */
static int
cmd_make_random(int argc, char **argv)
{
    const sd_demo_config  *cfg;
    const char            *name = NULL, *dir = NULL;
    sd_err                 err = {0};
    long long              seed = 0;
    int                    i;

    for (i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            name = argv[++i];
        } else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
            if (sd_cli_parse_int("--seed", argv[++i], 0, 0xffffffffLL,
                                 &seed))
            {
                return 2;
            }
        } else if (dir == NULL && argv[i][0] != '-') {
            dir = argv[i];
        } else {
            return sd_cli_usage();
        }
    }
    if (name == NULL || dir == NULL) {
        return sd_cli_usage();
    }
    cfg = sd_demo_config_named(name);
    if (cfg == NULL) {
        fprintf(stderr, "sd-cli: --config: \"%s\" is not one of large, "
                "medium, large-turbo, demo\n", name);
        return 2;
    }
    if (sd_demo_write_config(&err, dir, cfg, (uint64_t) seed) != SD_OK) {
        return sd_cli_fail("writing the model", &err);
    }
    return 0;
}


/* The CUDA devices this build can use; exit 0 when there is one. */
static int
cmd_gpus(void)
{
#ifdef SD_HAVE_CUDA
    int  n = sd_cuda_device_count();

    printf("%d CUDA device%s\n", n, n == 1 ? "" : "s");
    return n > 0 ? 0 : 1;
#else
    printf("built without CUDA\n");
    return 1;
#endif
}


int
main(int argc, char **argv)
{
    if (argc < 2) {
        return sd_cli_usage();
    }
    if (strcmp(argv[1], "encode") == 0) {
        return cmd_encode(argc - 2, argv + 2);
    }
    if (strcmp(argv[1], "txt2img") == 0) {
        return cmd_txt2img(argc - 2, argv + 2);
    }
    if (strcmp(argv[1], "make-demo") == 0) {
        return cmd_make_demo(argc - 2, argv + 2);
    }
    if (strcmp(argv[1], "make-random") == 0) {
        return cmd_make_random(argc - 2, argv + 2);
    }
    if (strcmp(argv[1], "gpus") == 0) {
        return cmd_gpus();
    }
    if (strcmp(argv[1], "bench") == 0) {
        return sd_cli_bench(argc - 2, argv + 2);
    }
    if (strcmp(argv[1], "fp8-sweep") == 0) {
        return sd_cli_fp8_sweep(argc - 2, argv + 2);
    }
    if (strcmp(argv[1], "step") == 0) {
        return sd_cli_step(argc - 2, argv + 2);
    }
    if (strcmp(argv[1], "quantize") == 0) {
        return sd_cli_quantize(argc - 2, argv + 2);
    }
    if (strcmp(argv[1], "fp8-model") == 0) {
        return sd_cli_fp8_model(argc - 2, argv + 2);
    }
    if (strcmp(argv[1], "fp8-check") == 0) {
        return sd_cli_fp8_check(argc - 2, argv + 2);
    }
    return sd_cli_usage();
}
