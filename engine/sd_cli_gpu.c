/*
 * sd_cli_gpu.c: sd-cli's measurements.
 *
 *   sd-cli bench --model DIR [--device cuda[:N]] [--precision bf16|fp32]
 *                [--width W] [--height H] [--steps N] [--cfg F] [--batch N]
 *                [--runs N] [--prompt TEXT] [--negative TEXT] [--sampler NAME]
 *   sd-cli step --model DIR --ref FILE [--ref-log FILE] [--device ...]
 *               [--precision ...] [--reps N]
 *
 * bench times a whole txt2img, component by component (load, text
 * encoding, and the same through the text-conditioning cache as a miss
 * and as a hit, each denoising step, the VAE decode, end to end) after a
 * warm-up run, as the median of --runs runs, and prints a table with the
 * memory each part holds. Steps are timed by synchronizing in the
 * pipeline's progress callback, so each step's time is its own.
 *
 * step is the side-by-side check with the reference implementation:
 * ../shared/bench/step_ref.py writes fixed inputs and diffusers' outputs
 * (BF16 and F32) to a safetensors file; step feeds the same inputs to our
 * transformer and VAE decoder, times them (median of back-to-back calls
 * after a warm-up), and prints the relative L2 error against both
 * reference outputs, with the reference's own times from its log.
 */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "pipeline.h"
#include "safetensors.h"
#include "sd_cli.h"
#include "textcache.h"
#ifdef SD_HAVE_CUDA
#include "sd_cuda.h"
#endif


#define SD_BENCH_MAX_STEPS  1000
#define SD_BENCH_MAX_RUNS   32


static int
cmp_double(const void *a, const void *b)
{
    double  x = *(const double *) a, y = *(const double *) b;

    return x < y ? -1 : x > y;
}


/* the q-quantile of v[0..n-1] (sorted in place), nearest rank */
static double
quantile(double *v, int n, double q)
{
    int  k;

    if (n <= 0) {
        return 0.0;
    }
    qsort(v, n, sizeof(double), cmp_double);
    k = (int) ceil(q * n) - 1;
    return v[k < 0 ? 0 : (k >= n ? n - 1 : k)];
}


static double
gib(size_t b)
{
    return (double) b / (1024.0 * 1024.0 * 1024.0);
}


/* What a step's progress callback records. */
typedef struct {
    sd_backend     *be;
    double          t[SD_BENCH_MAX_STEPS + 1];
    int             n;
} sd_bench_clock;


static void
bench_progress(void *data, int job, int jobs, int step, int steps)
{
    sd_bench_clock  *c = data;
    sd_err           err = {0};

    (void) job;
    (void) jobs;
    (void) steps;
    sd_backend_sync(&err, c->be);
    if (step <= SD_BENCH_MAX_STEPS) {
        c->t[step] = sd_seconds();
        c->n = step;
    }
}


static void
print_memory(sd_model *m)
{
    printf("| weights: text encoders | %.2f GiB |\n", gib(m->bytes_text));
    printf("| weights: transformer | %.2f GiB |\n", gib(m->bytes_dit));
    printf("| weights: VAE | %.2f GiB |\n", gib(m->bytes_vae));
#ifdef SD_HAVE_CUDA
    if (strcmp(m->be->ops->name, "cuda") == 0) {
        sd_cuda_mem  mem;
        sd_err       err = {0};

        if (sd_cuda_memory(&err, m->be, &mem) == SD_OK) {
            printf("| activation workspace (reserved / used at peak) | "
                   "%.2f / %.2f GiB |\n", gib(mem.workspace),
                   gib(mem.ws_high));
            printf("| library workspaces (cuBLASLt, cuDNN) | %.2f GiB |\n",
                   gib(mem.library));
            printf("| GPU memory in use, whole process (driver) | %.2f of "
                   "%.0f GiB |\n", gib(mem.device_used),
                   gib(mem.device_total));
            printf("| weights in pinned host memory (embedding tables, "
                   "offloaded encoders) | %.2f GiB |\n", gib(mem.host));
        }
        {
            long         rec, rep, fail;
            const char  *why;

            sd_cuda_graph_stats(m->be, &rec, &rep, &fail, &why);
            printf("| CUDA graphs: transformer steps, per-image "
                   "modulations (recorded / replayed / failed) | "
                   "%ld / %ld / %ld%s%s |\n", rec, rep,
                   fail, why[0] ? ": " : "", why);
            printf("| FP8 products widened to BF16 (no FP8 algorithm) | "
                   "%ld |\n", sd_cuda_fp8_widened(m->be));
            printf("| CUDA graphs: memset nodes made kernel nodes | %ld |\n",
                   sd_cuda_graph_memsets(m->be));
        }
        {
            char   info[2048], *line, *save = NULL;

            /* which attention kernel each shape ran, and why */
            sd_cuda_attention_info(m->be, info, sizeof(info));
            for (line = strtok_r(info, "\n", &save); line;
                 line = strtok_r(NULL, "\n", &save))
            {
                printf("| %s |\n", line);
            }
        }
        return;
    }
#endif
    printf("| backend memory at peak | %.2f GiB |\n",
           gib(m->be->bytes_peak));
}


/*
 * The text-conditioning cache: per run, the prompt and negative encoded
 * into an empty cache (a miss), then asked again (a hit), each timed to a
 * synchronized device; medians after a warm-up run.
 */
static int
bench_text_get(sd_tcache *tc, sd_backend *be, sd_model *m,
    const char *prompt, const char *negative, double *ms)
{
    sd_cond         tmp;
    const sd_cond  *out;
    sd_err          err = {0};
    double          t0;

    sd_backend_sync(&err, be);
    t0 = sd_seconds();
    if (sd_tcache_get(&err, tc, m, prompt, 0, &tmp, &out) != SD_OK
        || (negative && sd_tcache_get(&err, tc, m, negative, 0, &tmp, &out)
                        != SD_OK))
    {
        return sd_cli_fail("encoding", &err);
    }
    sd_backend_sync(&err, be);
    *ms = (sd_seconds() - t0) * 1e3;
    return 0;
}


static int
bench_text_cache(sd_backend *be, sd_model *m, const char *prompt,
    const char *negative, int runs, double *miss_ms, double *hit_ms)
{
    sd_tcache  *tc;
    double      miss[SD_BENCH_MAX_RUNS], hit[SD_BENCH_MAX_RUNS], t;
    int         r, rc;

    for (r = -1; r < runs; r++) {
        tc = sd_tcache_new(4);
        if (tc == NULL) {
            fprintf(stderr, "sd-cli: out of memory\n");
            return 1;
        }
        rc = bench_text_get(tc, be, m, prompt, negative, &t);
        if (rc == 0 && r >= 0) {
            miss[r] = t;
        }
        if (rc == 0) {
            rc = bench_text_get(tc, be, m, prompt, negative, &t);
        }
        if (rc == 0 && r >= 0) {
            hit[r] = t;
        }
        sd_tcache_free(tc);
        if (rc != 0) {
            return rc;
        }
    }
    *miss_ms = quantile(miss, runs, 0.5);
    *hit_ms = quantile(hit, runs, 0.5);
    return 0;
}


/*
 * With step caching: the steps that reused the residual per image, and
 * the first image against the same image without the cache (same seed and
 * prompts): final latents (relative L2) and 8-bit pixels (PSNR).
 */
static int
bench_step_cache(sd_model *m, sd_pipe_args *a, const char *prompt,
    const char *negative, double cfg, int nruns, int cached)
{
    sd_pipe_dump  d[2];
    sd_cond       c, n;
    sd_err        err = {0};
    uint8_t      *rgb[2] = { NULL, NULL };
    float         thr = a->step_cache;
    int           i, rc = 1, once = 0;

    memset(d, 0, sizeof(d));
    memset(&c, 0, sizeof(c));
    memset(&n, 0, sizeof(n));
    if (sd_cond_encode(&err, m, prompt, &c) != SD_OK
        || (cfg > 1.0 && sd_cond_encode(&err, m, negative, &n) != SD_OK))
    {
        rc = sd_cli_fail("encoding", &err);
        goto out;
    }
    for (i = 0; i < 2; i++) {
        a->step_cache = i ? thr : 0.0f;
        a->steps_cached = i ? &once : NULL;
        if (sd_pipe_txt2img(&err, m, a, &c, &n, &rgb[i], &d[i]) != SD_OK) {
            rc = sd_cli_fail("generating", &err);
            goto out;
        }
    }
    printf("| step cache %.3g: steps reusing the residual, per image | "
           "%.1f of %d |\n", thr, (double) cached / nruns, a->steps);
    printf("| step cache: final latents vs without, rel. L2 | %.3e |\n",
           sd_cli_rel_l2(d[1].final_latents, d[0].final_latents,
                         (size_t) d[0].latent_c * d[0].latent_h
                         * d[0].latent_w));
    printf("| step cache: image vs without, PSNR | %.1f dB (%d steps "
           "reused) |\n", sd_cli_psnr(rgb[1], rgb[0], (size_t) a->width
                                                      * a->height * 3),
           once);
    rc = 0;

out:
    a->step_cache = thr;
    for (i = 0; i < 2; i++) {
        free(rgb[i]);
        sd_pipe_dump_free(&d[i]);
    }
    sd_cond_free(&c);
    sd_cond_free(&n);
    return rc;
}


int
sd_cli_bench(int argc, char **argv)
{
    const char      *model = NULL, *device = "cuda", *precision = NULL;
    const char      *sampler = NULL;
    const char      *prompt = "a futuristic cityscape at sunset, cyberpunk "
                              "style";
    const char      *negative = "blurry, low-res, distortion";
    int              width = 1024, height = 1024, steps = 28, batch = 1;
    int              runs = 3, r, i, rc = 1, profile = 0;
    double           cfg = 4.5, t0, t1, t2, t3, load_s;
    double           enc[SD_BENCH_MAX_RUNS], dec[SD_BENCH_MAX_RUNS];
    double           e2e[SD_BENCH_MAX_RUNS], *step_ms = NULL;
    double           tc_miss = 0, tc_hit = 0, step_cache = 0;
    int              nstep = 0, cached = 0;
    sd_backend      *be = NULL;
    sd_model        *m = NULL;
    sd_pipe_args     a;
    sd_cond          c, n;
    sd_err           err = {0};
    uint8_t         *rgb = NULL;
    sd_bench_clock  *clk = NULL;
    sd_cli_opt       opts[] = {
        { "--model",     .s = &model },
        { "--device",    .s = &device },
        { "--precision", .s = &precision },
        { "--fp8-keep",  .s = &sd_cli_fp8_keep },
        { "--offload",   .s = &sd_cli_offload },
        { "--prompt",    .s = &prompt },
        { "--negative",  .s = &negative },
        { "--width",     .i = &width, .lo = 16, .hi = 1 << 14 },
        { "--height",    .i = &height, .lo = 16, .hi = 1 << 14 },
        { "--steps",     .i = &steps, .lo = 1, .hi = SD_BENCH_MAX_STEPS },
        { "--batch",     .i = &batch, .lo = 1, .hi = 64 },
        { "--runs",      .i = &runs, .lo = 1, .hi = SD_BENCH_MAX_RUNS },
        { "--profile",   .i = &profile, .lo = 0, .hi = 1 },
        { "--cfg",       .d = &cfg },
        { "--step-cache", .d = &step_cache },
        { "--sampler",   .s = &sampler },
    };

    memset(&c, 0, sizeof(c));
    memset(&n, 0, sizeof(n));
    if (sd_cli_parse(argc, argv, opts, sizeof(opts) / sizeof(opts[0])) != 0
        || model == NULL)
    {
        return sd_cli_usage();
    }
    clk = calloc(1, sizeof(*clk));
    step_ms = calloc((size_t) runs * steps, sizeof(double));
    if (clk == NULL || step_ms == NULL) {
        fprintf(stderr, "sd-cli: out of memory\n");
        goto out;
    }

    t0 = sd_seconds();
    if ((rc = sd_cli_backend(device, precision, &be, &err)) != 0) {
        goto out;
    }
    rc = 1;
    if (sd_model_load(&err, be, model, SD_PART_ALL, &m) != SD_OK) {
        rc = sd_cli_fail("loading the model", &err);
        goto out;
    }
    if (sd_cli_reserve(m, width, height, batch, &err) != 0) {
        goto out;
    }
    load_s = sd_seconds() - t0;

    memset(&a, 0, sizeof(a));
    a.width = width;
    a.height = height;
    a.steps = steps;
    a.batch = batch;
    a.cfg = (float) cfg;
    a.jobs = 1;
    for (i = 0; i < batch; i++) {
        a.seeds[i] = 1000 + (uint64_t) i;
    }
    a.progress = bench_progress;
    a.progress_data = clk;
    a.step_cache = (float) step_cache;
    a.steps_cached = &cached;
    a.eta = 1.0f;
    if (sampler && sd_sampler_parse(&err, sampler, &a.sampler) != SD_OK) {
        fprintf(stderr, "sd-cli: --sampler: %s\n", err.msg);
        rc = 2;
        goto out;
    }
    clk->be = be;
    if (sd_pipe_validate(&err, m, &a) != SD_OK) {
        fprintf(stderr, "sd-cli: %s\n", err.msg);
        rc = 2;
        goto out;
    }

    /* run -1 is the warm-up: plans, algorithms, lazy loading; with
       --profile 1, run "runs" is one more, every op timed */
    for (r = -1; r < runs + (profile ? 1 : 0); r++) {
#ifdef SD_HAVE_CUDA
        if (r == runs && strcmp(be->ops->name, "cuda") == 0) {
            sd_cuda_profile(be, 1);
        }
#endif
        sd_backend_sync(&err, be);
        t0 = sd_seconds();
        if (sd_cond_encode(&err, m, prompt, &c) != SD_OK
            || (cfg > 1.0 && sd_cond_encode(&err, m, negative, &n) != SD_OK))
        {
            rc = sd_cli_fail("encoding", &err);
            goto out;
        }
        sd_backend_sync(&err, be);
        t1 = sd_seconds();
        clk->t[0] = t1;
        clk->n = 0;
        if (sd_pipe_txt2img(&err, m, &a, &c, &n, &rgb, NULL) != SD_OK) {
            rc = sd_cli_fail("generating", &err);
            goto out;
        }
        sd_backend_sync(&err, be);
        t3 = sd_seconds();
        t2 = clk->t[clk->n];
        free(rgb);
        rgb = NULL;
        sd_cond_free(&c);
        sd_cond_free(&n);
        fprintf(stderr, "sd-cli: run %d: %.3f s\n", r, t3 - t0);
        if (r < 0 || r == runs) {
            continue;
        }
        enc[r] = (t1 - t0) * 1e3;
        dec[r] = (t3 - t2) * 1e3;
        e2e[r] = (t3 - t0) * 1e3;
        for (i = 1; i <= clk->n; i++) {
            step_ms[nstep++] = (clk->t[i] - clk->t[i - 1]) * 1e3;
        }
    }

    /* textcache.h: what a prompt seen again costs (sd_text_cache) */
    if (bench_text_cache(be, m, prompt, cfg > 1.0 ? negative : NULL, runs,
                         &tc_miss, &tc_hit) != 0)
    {
        goto out;
    }

    printf("\n| %s, %dx%d, %d steps, cfg %.1f, batch %d, %s %s%s%s | |\n",
           m->name, width, height, steps, cfg, batch,
           device ? device : "cpu", precision ? precision : "",
           sampler ? ", sampler " : "", sampler ? sampler : "");
    printf("| --- | --- |\n");
    printf("| load (weights + workspace sizing) | %.2f s |\n", load_s);
    printf("| text encoding (prompt + negative), median | %.1f ms |\n",
           quantile(enc, runs, 0.5));
    printf("| text encoding, sd_text_cache miss (encode + keep), median | "
           "%.1f ms |\n", tc_miss);
    printf("| text encoding, sd_text_cache hit, median | %.3f ms |\n",
           tc_hit);
    printf("| denoising step, median | %.2f ms |\n",
           quantile(step_ms, nstep, 0.5));
    printf("| denoising step, p90 | %.2f ms |\n",
           quantile(step_ms, nstep, 0.9));
    printf("| VAE decode (+ download), median | %.1f ms |\n",
           quantile(dec, runs, 0.5));
    printf("| end to end (encode, %d steps, decode), median | %.3f s |\n",
           steps, quantile(e2e, runs, 0.5) / 1e3);
    if (step_cache > 0 && bench_step_cache(m, &a, prompt, negative, cfg,
                                           runs + 1 + profile, cached) != 0)
    {
        goto out;
    }
    print_memory(m);
#ifdef SD_HAVE_CUDA
    if (profile && strcmp(be->ops->name, "cuda") == 0) {
        char  *rep = malloc(1 << 16);

        if (rep) {
            sd_cuda_profile_report(be, rep, 1 << 16);
            printf("\n| op (one whole run, every op synchronised by events)"
                   " | calls | ms | share |\n| --- | --- | --- | --- |\n%s",
                   rep);
            free(rep);
        }
        sd_cuda_profile(be, 0);
    }
#endif
    rc = 0;

out:
    free(rgb);
    free(clk);
    free(step_ms);
    sd_cond_free(&c);
    sd_cond_free(&n);
    sd_model_free(m);
    sd_backend_destroy(be);
    return rc;
}


/* A tensor of the reference file, as host floats of its numel. */
static float *
ref_get(const sd_st *st, const char *name, const sd_st_tensor **out)
{
    const sd_st_tensor  *t = sd_st_find(st, name);
    float               *h;
    sd_err               err = {0};

    *out = t;
    if (t == NULL) {
        fprintf(stderr, "sd-cli: the reference has no \"%s\"\n", name);
        return NULL;
    }
    h = malloc((size_t) t->numel * sizeof(float));
    if (h == NULL || sd_st_read_f32(&err, t, h) != SD_OK) {
        fprintf(stderr, "sd-cli: reading \"%s\": %s\n", name, err.msg);
        free(h);
        return NULL;
    }
    return h;
}


/* "key" of the reference's JSON lines, or -1 */
static double
log_value(const char *path, const char *key)
{
    FILE    *f;
    char     line[4096];
    double   v = -1.0;
    cJSON   *j, *it;

    if (path == NULL || (f = fopen(path, "r")) == NULL) {
        return -1.0;
    }
    while (fgets(line, sizeof(line), f)) {
        j = cJSON_Parse(line);
        it = j ? cJSON_GetObjectItem(j, key) : NULL;
        if (cJSON_IsNumber(it)) {
            v = it->valuedouble;
        }
        cJSON_Delete(j);
    }
    fclose(f);
    return v;
}


/* an uploaded copy of host floats of this shape */
static sd_tensor *
upload_new(sd_backend *be, sd_dtype dt, int ndim, const int64_t *shape,
    const float *h, sd_err *err)
{
    sd_tensor  *t;

    if (sd_tensor_new_as(err, be, SD_MEM_ACT, dt, ndim, shape, &t) != SD_OK) {
        return NULL;
    }
    if (sd_tensor_upload(err, t, h) != SD_OK) {
        sd_tensor_free(t);
        return NULL;
    }
    return t;
}


static void
print_row(const char *what, double ours, double ref, const char *unit)
{
    if (ref > 0) {
        printf("| %s | %.2f %s | %.2f %s | %.2fx |\n", what, ours, unit, ref,
               unit, ref / ours);
    } else {
        printf("| %s | %.2f %s | - | - |\n", what, ours, unit);
    }
}


int
sd_cli_step(int argc, char **argv)
{
    const char          *model = NULL, *ref = NULL, *ref_log = NULL;
    const char          *device = "cuda", *precision = NULL;
    const sd_st_tensor  *tx, *tc, *tp, *tt, *tz, *rb, *rf, *ib, *iff;
    int                  reps = 5, r, rc = 1;
    sd_st               *st = NULL;
    sd_backend          *be = NULL;
    sd_model            *m = NULL;
    sd_err               err = {0};
    float               *hx = NULL, *hc = NULL, *hp = NULL, *ht = NULL;
    float               *hz = NULL, *ob = NULL, *of = NULL, *imb = NULL;
    float               *imf = NULL, *out = NULL, *img_h = NULL;
    sd_tensor           *x = NULL, *ctx = NULL, *pool = NULL, *y = NULL;
    sd_tensor           *z = NULL, *img = NULL;
    double               ms[64], vms[64], t0;
    int64_t              i, nz;
    float                sc, sh;
    sd_cli_opt           opts[] = {
        { "--model",     .s = &model },
        { "--ref",       .s = &ref },
        { "--ref-log",   .s = &ref_log },
        { "--device",    .s = &device },
        { "--precision", .s = &precision },
        { "--reps",      .i = &reps, .lo = 1, .hi = 64 },
    };

    if (sd_cli_parse(argc, argv, opts, sizeof(opts) / sizeof(opts[0])) != 0
        || model == NULL || ref == NULL)
    {
        return sd_cli_usage();
    }
    if (sd_st_open(&err, ref, &st) != SD_OK) {
        return sd_cli_fail("opening the reference", &err);
    }
    hx = ref_get(st, "in.hidden_states", &tx);
    hc = ref_get(st, "in.encoder_hidden_states", &tc);
    hp = ref_get(st, "in.pooled_projections", &tp);
    ht = ref_get(st, "in.timestep", &tt);
    hz = ref_get(st, "in.latents_vae", &tz);
    ob = ref_get(st, "out.bf16.noise_pred", &rb);
    of = ref_get(st, "out.f32.noise_pred", &rf);
    imb = ref_get(st, "out.bf16.image", &ib);
    imf = ref_get(st, "out.f32.image", &iff);
    if (!hx || !hc || !hp || !ht || !hz || !ob || !of || !imb || !imf
        || tx->ndim != 4 || tc->ndim != 3 || tp->ndim != 2 || tz->ndim != 4)
    {
        fprintf(stderr, "sd-cli: the reference lacks tensors or has other "
                "shapes\n");
        goto out;
    }

    if ((rc = sd_cli_backend(device, precision, &be, &err)) != 0) {
        goto out;
    }
    rc = 1;
    if (sd_model_load(&err, be, model, SD_PART_DIT | SD_PART_VAE, &m)
        != SD_OK)
    {
        rc = sd_cli_fail("loading the model", &err);
        goto out;
    }
    /* the transformer runs the batch as one CFG pass of tx->shape[0] */
    if (sd_cli_reserve(m, (int) tx->shape[3] * 8, (int) tx->shape[2] * 8,
                       (int) (tx->shape[0] + 1) / 2, &err) != 0)
    {
        goto out;
    }

    x = upload_new(be, SD_DT_F32, 4, tx->shape, hx, &err);
    ctx = upload_new(be, be->act_dtype, 3, tc->shape, hc, &err);
    pool = upload_new(be, be->act_dtype, 2, tp->shape, hp, &err);
    if (x == NULL || ctx == NULL || pool == NULL
        || sd_tensor_new_as(&err, be, SD_MEM_ACT, SD_DT_F32, 4, tx->shape,
                            &y) != SD_OK)
    {
        rc = sd_cli_fail("uploading the inputs", &err);
        goto out;
    }

    /* warm-up, then reps timed calls */
    for (r = -1; r < reps; r++) {
        sd_backend_sync(&err, be);
        t0 = sd_seconds();
        if (sd_mmdit_forward(&err, m->dit, x, ht, ctx, pool, NULL, 0, y)
            != SD_OK)
        {
            rc = sd_cli_fail("transformer", &err);
            goto out;
        }
        sd_backend_sync(&err, be);
        if (r >= 0) {
            ms[r] = (sd_seconds() - t0) * 1e3;
        }
    }
    out = malloc((size_t) rf->numel * sizeof(float));
    if (out == NULL || sd_tensor_download(&err, y, out) != SD_OK) {
        rc = sd_cli_fail("downloading", &err);
        goto out;
    }

    /* the VAE: z / scaling + shift, as step_ref.py does */
    sc = sd_vae_scaling_factor(m->vae);
    sh = sd_vae_shift_factor(m->vae);
    nz = tz->numel;
    for (i = 0; i < nz; i++) {
        hz[i] = hz[i] / sc + sh;
    }
    z = upload_new(be, SD_DT_F32, 4, tz->shape, hz, &err);
    for (r = -1; z && r < reps; r++) {
        sd_backend_sync(&err, be);
        t0 = sd_seconds();
        sd_tensor_free(img);
        img = NULL;
        if (sd_vae_decode(&err, m->vae, z, &img) != SD_OK) {
            rc = sd_cli_fail("VAE decode", &err);
            goto out;
        }
        sd_backend_sync(&err, be);
        if (r >= 0) {
            vms[r] = (sd_seconds() - t0) * 1e3;
        }
    }
    img_h = malloc((size_t) iff->numel * sizeof(float));
    if (z == NULL || img == NULL || img_h == NULL
        || sd_numel(img) != iff->numel
        || sd_tensor_download(&err, img, img_h) != SD_OK)
    {
        rc = sd_cli_fail("the decoded image", &err);
        goto out;
    }

    printf("\n| one step, %lldx%lld latent, batch %lld, %s, ours in %s | "
           "ours | diffusers (BF16) | speed-up |\n",
           (long long) tx->shape[2], (long long) tx->shape[3],
           (long long) tx->shape[0], device, precision ? precision : "bf16");
    printf("| --- | --- | --- | --- |\n");
    print_row("transformer call, median",
              quantile(ms, reps, 0.5), log_value(ref_log,
                                                 "bf16.transformer_ms"),
              "ms");
    print_row("VAE decode, median", quantile(vms, reps, 0.5),
              log_value(ref_log, "bf16.vae_decode_ms"), "ms");
    printf("| transformer output: rel L2 vs diffusers F32 | %.3e | %.3e "
           "(diffusers BF16) | |\n",
           sd_cli_rel_l2(out, of, (size_t) rf->numel),
           sd_cli_rel_l2(ob, of, (size_t) rf->numel));
    printf("| transformer output: rel L2 vs diffusers BF16 | %.3e | | |\n",
           sd_cli_rel_l2(out, ob, (size_t) rb->numel));
    printf("| VAE image: rel L2 vs diffusers F32 | %.3e | %.3e "
           "(diffusers BF16) | |\n",
           sd_cli_rel_l2(img_h, imf, (size_t) iff->numel),
           sd_cli_rel_l2(imb, imf, (size_t) iff->numel));
    print_memory(m);
    rc = 0;

out:
    free(hx); free(hc); free(hp); free(ht); free(hz);
    free(ob); free(of); free(imb); free(imf); free(out); free(img_h);
    sd_tensor_free(x);
    sd_tensor_free(ctx);
    sd_tensor_free(pool);
    sd_tensor_free(y);
    sd_tensor_free(z);
    sd_tensor_free(img);
    sd_model_free(m);
    sd_backend_destroy(be);
    sd_st_close(st);
    return rc;
}
