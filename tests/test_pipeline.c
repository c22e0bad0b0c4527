/*
 * test_pipeline.c: the whole tiny pipeline for every public case of both
 * models against the goldens: schedule, noise (CPU generator), the first
 * Euler step, the final latents and the 8-bit image. Also the validation
 * rules and the cost of one case.
 */

#include <time.h>

#include "golden.h"
#ifdef SD_HAVE_CUDA
#include "sd_cuda.h"
#endif
#include "pipeline.h"
#include "safetensors.h"
#include "textcache.h"


static void
check_u8(const sd_st *g, const char *key, const uint8_t *img, size_t n)
{
    const sd_st_tensor  *r = sd_st_find(g, key);
    const uint8_t       *ref;
    size_t               i, off = 0;

    if (r == NULL || (size_t) r->numel != n) {
        T_CHECK(0, "%s: golden missing or of another size", key);
        return;
    }
    ref = r->data;
    for (i = 0; i < n; i++) {
        int d = (int) img[i] - (int) ref[i];
        if (d > 1 || d < -1) {
            off++;
        }
    }
    /* BF16 (checked by its latents) may move more pixels than F32 */
    if (t_dev_bf16) {
        printf("   %s: %zu of %zu values differ by more than 1\n", key, off,
               n);
        return;
    }
    T_CHECK(off <= n / 1000, "%s: %zu of %zu values differ by more than 1",
            key, off, n);
}


/*
 * The BF16 bound on a case's final latents: 2e-2, or the reference's own
 * BF16 error on that case when larger (tests/data/tiny_bf16_ref.json,
 * measured with diffusers by tests/gpu/tiny_ref.py).
 */
static double
bf16_bound(const char *key)
{
    static cJSON  *ref;
    const cJSON   *v;
    char          *text;
    size_t         len;
    sd_err         err = {0};

    if (ref == NULL && sd_read_file(&err, "tests/data/tiny_bf16_ref.json",
                                    &text, &len) == SD_OK)
    {
        ref = cJSON_ParseWithLength(text, len);
        free(text);
    }
    v = ref ? cJSON_GetObjectItem(ref, key) : NULL;
    return cJSON_IsNumber(v) && v->valuedouble > 2e-2 ? v->valuedouble
                                                       : 2e-2;
}


static void
run_case(const sd_st *g, sd_model *m, const char *model, const cJSON *cs)
{
    sd_pipe_args  a;
    sd_pipe_dump  d;
    sd_cond       c, n;
    sd_err        err = {0};
    uint8_t      *rgb;
    char          pfx[128], key[256];
    size_t        per;
    struct timespec t0, t1;

    memset(&a, 0, sizeof(a));
    memset(&d, 0, sizeof(d));
    a.width = cJSON_GetObjectItem(cs, "width")->valueint;
    a.height = cJSON_GetObjectItem(cs, "height")->valueint;
    a.steps = cJSON_GetObjectItem(cs, "steps")->valueint;
    a.cfg = (float) cJSON_GetObjectItem(cs, "cfg")->valuedouble;
    a.seeds[0] = (uint64_t) cJSON_GetObjectItem(cs, "seed")->valuedouble;
    a.batch = 1;
    a.rng = SD_RNG_CPU;
    snprintf(pfx, sizeof(pfx), "%s.%s",
             model, cJSON_GetObjectItem(cs, "name")->valuestring);

    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (sd_cond_encode(&err, m, cJSON_GetObjectItem(cs, "prompt")->valuestring,
                       &c) != SD_OK
        || sd_cond_encode(&err, m, cJSON_GetObjectItem(cs,
                          "negative_prompt")->valuestring, &n) != SD_OK)
    {
        T_CHECK(0, "%s: encode: %s", pfx, err.msg);
        return;
    }
    if (sd_pipe_txt2img(&err, m, &a, &c, &n, &rgb, &d) != SD_OK) {
        T_CHECK(0, "%s: txt2img: %s", pfx, err.msg);
        sd_cond_free(&c);
        sd_cond_free(&n);
        return;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("   %s: %dx%d, %d steps: %.0f ms\n", pfx, a.width, a.height,
           a.steps, (t1.tv_sec - t0.tv_sec) * 1e3
                    + (t1.tv_nsec - t0.tv_nsec) / 1e6);

    per = (size_t) d.latent_c * d.latent_h * d.latent_w;
    snprintf(key, sizeof(key), "%s.noise_cpu", pfx);
    t_golden_cmp(g, key, d.noise, per, 1e-12);
    snprintf(key, sizeof(key), "%s.sigmas", pfx);
    t_golden_cmp(g, key, d.sigmas, a.steps + 1, 1e-7);
    snprintf(key, sizeof(key), "%s.timesteps", pfx);
    t_golden_cmp(g, key, d.timesteps, a.steps, 1e-7);
    snprintf(key, sizeof(key), "%s.latents_after_step0", pfx);
    t_golden_cmp(g, key, d.latents_step0, per, t_tol(1e-4, 3e-2));
    snprintf(key, sizeof(key), "%s.final_latents", pfx);
    t_golden_cmp(g, key, d.final_latents, per,
                 t_tol(1e-3, bf16_bound(pfx)));
    snprintf(key, sizeof(key), "%s.image_u8", pfx);
    check_u8(g, key, rgb, (size_t) a.width * a.height * 3);

    free(rgb);
    sd_pipe_dump_free(&d);
    sd_cond_free(&c);
    sd_cond_free(&n);
}


static void
check_validation(sd_model *m)
{
    sd_pipe_args  a;
    sd_err        err = {0};

    memset(&a, 0, sizeof(a));
    a.width = 64;
    a.height = 64;
    a.steps = 2;
    a.batch = 1;
    a.cfg = 1.0f;
    T_CHECK(sd_pipe_validate(&err, m, &a) == SD_OK, "valid: %s", err.msg);

    a.width = 72;
    sd_err_clear(&err);
    T_CHECK(sd_pipe_validate(&err, m, &a) == SD_ERR_INVALID
            && strstr(err.msg, "width") && strstr(err.msg, "multiple of 16"),
            "width 72: %s", err.msg);
    a.width = 64;
    a.steps = 0;
    sd_err_clear(&err);
    T_CHECK(sd_pipe_validate(&err, m, &a) == SD_ERR_INVALID
            && strstr(err.msg, "steps"), "steps 0: %s", err.msg);
    a.steps = 2;
    a.height = 16 * 4096;
    sd_err_clear(&err);
    T_CHECK(sd_pipe_validate(&err, m, &a) == SD_ERR_INVALID
            && strstr(err.msg, "height"), "height too big: %s", err.msg);
    a.height = 64;

    /* per-image conditioning (batching across requests) refuses what
       would refill the context batch from one prompt */
    {
        static const sd_cond  *none[1];
        static const int       seg_end[1] = { 2 };

        a.img_cond = none;
        a.slg_scale = 2.0f;
        sd_err_clear(&err);
        T_CHECK(sd_pipe_validate(&err, m, &a) == SD_ERR_INTERNAL
                && strstr(err.msg, "batched requests"),
                "img_cond with skip-layer guidance: %s", err.msg);
        a.slg_scale = 0.0f;
        a.n_seg = 1;
        a.seg_end = seg_end;
        sd_err_clear(&err);
        T_CHECK(sd_pipe_validate(&err, m, &a) == SD_ERR_INTERNAL,
                "img_cond with prompt editing: %s", err.msg);
        a.n_seg = 0;
        sd_err_clear(&err);
        T_CHECK(sd_pipe_validate(&err, m, &a) == SD_OK,
                "img_cond alone: %s", err.msg);
    }
}


/*
 * Skip-layer guidance on Medium: a window that holds no step leaves the
 * result bit-identical; a window over the steps changes it.
 */
static void
check_slg(sd_model *m)
{
    static const int  layers[] = { 1 };
    sd_pipe_args      a;
    sd_cond           c, n;
    sd_err            err = {0};
    uint8_t          *base = NULL, *off = NULL, *on = NULL;
    size_t            px = 64 * 64 * 3;

    memset(&a, 0, sizeof(a));
    a.width = 64;
    a.height = 64;
    a.steps = 4;
    a.batch = 1;
    a.cfg = 4.0f;
    a.seeds[0] = 7;
    a.rng = SD_RNG_CPU;
    if (sd_cond_encode(&err, m, "a cat", &c) != SD_OK
        || sd_cond_encode(&err, m, "", &n) != SD_OK)
    {
        T_CHECK(0, "slg encode: %s", err.msg);
        return;
    }
    T_CHECK(sd_pipe_txt2img(&err, m, &a, &c, &n, &base, NULL) == SD_OK,
            "slg base: %s", err.msg);

    a.slg_scale = 2.8f;
    a.slg_layers = layers;
    a.slg_n_layers = 1;
    a.slg_start = 0.9f;
    a.slg_stop = 0.9f;
    T_CHECK(sd_pipe_txt2img(&err, m, &a, &c, &n, &off, NULL) == SD_OK,
            "slg empty window: %s", err.msg);
    a.slg_start = 0.0f;
    a.slg_stop = 1.0f;
    T_CHECK(sd_pipe_txt2img(&err, m, &a, &c, &n, &on, NULL) == SD_OK,
            "slg on: %s", err.msg);
    if (base && off && on) {
        T_CHECK(memcmp(base, off, px) == 0, "slg outside its window "
                "changed the image");
        T_CHECK(memcmp(base, on, px) != 0, "slg inside its window left the "
                "image unchanged");
    }

    a.slg_layers = (const int[]) { 99 };
    sd_err_clear(&err);
    T_CHECK(sd_pipe_validate(&err, m, &a) == SD_ERR_INVALID
            && strstr(err.msg, "layer 99"), "slg layer 99: %s", err.msg);

    free(base);
    free(off);
    free(on);
    sd_cond_free(&c);
    sd_cond_free(&n);
}


/*
 * The graph and sampler checks' request: 64x64, 6 steps, cfg 4, Euler, the
 * CPU's noise, seed; prompt and "" encoded into c and n. 0 (nothing to
 * free) when encoding fails (reported).
 */
static int
small_request(sd_model *m, const char *prompt, uint64_t seed,
    sd_pipe_args *a, sd_cond *c, sd_cond *n)
{
    sd_err  err = {0};

    memset(a, 0, sizeof(*a));
    a->width = 64;
    a->height = 64;
    a->steps = 6;
    a->batch = 1;
    a->cfg = 4.0f;
    a->seeds[0] = seed;
    a->rng = SD_RNG_CPU;
    a->sampler = SD_SAMPLER_EULER;
    if (sd_cond_encode(&err, m, prompt, c) != SD_OK) {
        T_CHECK(0, "encoding \"%s\": %s", prompt, err.msg);
        return 0;
    }
    if (sd_cond_encode(&err, m, "", n) != SD_OK) {
        T_CHECK(0, "encoding \"\": %s", err.msg);
        sd_cond_free(c);
        return 0;
    }
    return 1;
}


#ifdef SD_HAVE_CUDA
/*
 * Recorded steps (CUDA graphs): the same image with the transformer's steps
 * replayed from one recording as with every op launched, and the steps
 * after the second are replays; the per-image modulations' recording
 * replays from the third image of a shape on.
 */
static void
check_graphs(sd_model *m)
{
    sd_pipe_args  a;
    sd_cond       c, n;
    sd_err        err = {0};
    uint8_t      *off = NULL, *off2 = NULL, *on = NULL, *on2 = NULL;
    size_t        px = 64 * 64 * 3, i, diff = 0;
    long          r0, p0, f0, r1, p1, f1;
    const char   *why;
    sd_tcache    *tc;
    sd_cond       tmp;
    const sd_cond *nc = NULL;

    if (strcmp(m->be->ops->name, "cuda") != 0
        || !small_request(m, "a red cube", 11, &a, &c, &n))
    {
        return;
    }
    sd_cuda_set_graphs(m->be, 0);
    T_CHECK(sd_pipe_txt2img(&err, m, &a, &c, &n, &off, NULL) == SD_OK,
            "graphs off: %s", err.msg);
    T_CHECK(sd_pipe_txt2img(&err, m, &a, &c, &n, &off2, NULL) == SD_OK,
            "graphs off again: %s", err.msg);
    sd_cuda_set_graphs(m->be, 1);
    sd_cuda_graph_stats(m->be, &r0, &p0, &f0, &why);
    T_CHECK(sd_pipe_txt2img(&err, m, &a, &c, &n, &on, NULL) == SD_OK,
            "graphs on: %s", err.msg);
    sd_cuda_graph_stats(m->be, &r1, &p1, &f1, &why);
    printf("   graphs: %ld recorded, %ld replayed, %ld failed%s%s\n",
           r1 - r0, p1 - p0, f1 - f0, why[0] ? ": " : "", why);
    /* the step recorded at the second, replayed after; the per-image
       modulations run, recorded or replayed, by what came before */
    T_CHECK(f1 == f0 && r1 - r0 >= 1 && r1 - r0 <= 2
            && p1 - p0 >= a.steps - 2 && p1 - p0 <= a.steps - 1
            && (r1 - r0) + (p1 - p0) <= a.steps,
            "graphs: %ld recorded, %ld replayed, %ld failed (%s)",
            r1 - r0, p1 - p0, f1 - f0, why);
    if (off && off2 && on) {
        for (i = 0; i < px; i++) {
            diff += off[i] != on[i];
        }
        /* a run that differs from itself bounds what a replay may */
        T_CHECK(diff == 0 || memcmp(off, off2, px) != 0,
                "graphs: %zu of %zu bytes differ from the launched run",
                diff, px);
    }

    /* a new prompt through the text cache (a miss keeps its entry) leaves
       the workspace's layout alone: the next image replays every step,
       and the per-image modulations (run the first image, recorded the
       second, unless an earlier image of this shape recorded them) */
    tc = sd_tcache_new(4);
    if (tc && sd_tcache_get(&err, tc, m, "a blue sphere", 0, &tmp, &nc)
              == SD_OK)
    {
        sd_cuda_graph_stats(m->be, &r0, &p0, &f0, &why);
        T_CHECK(sd_pipe_txt2img(&err, m, &a, nc, &n, &on2, NULL) == SD_OK,
                "graphs after a cache miss: %s", err.msg);
        sd_cuda_graph_stats(m->be, &r1, &p1, &f1, &why);
        printf("   after a text cache miss: %ld recorded, %ld replayed\n",
               r1 - r0, p1 - p0);
        T_CHECK(f1 == f0 && r1 - r0 <= 1
                && (r1 - r0) + (p1 - p0) == a.steps + 1,
                "graphs after a text cache miss: %ld recorded, %ld "
                "replayed, %ld failed (%s)", r1 - r0, p1 - p0, f1 - f0, why);
        /* the next image replays everything: the steps, the modulations */
        free(on2);
        on2 = NULL;
        r0 = r1;
        p0 = p1;
        T_CHECK(sd_pipe_txt2img(&err, m, &a, nc, &n, &on2, NULL) == SD_OK,
                "graphs, a third image: %s", err.msg);
        sd_cuda_graph_stats(m->be, &r1, &p1, &f1, &why);
        printf("   the next image: %ld recorded, %ld replayed\n", r1 - r0,
               p1 - p0);
        T_CHECK(f1 == f0 && r1 == r0 && p1 - p0 == a.steps + 1,
                "graphs, a third image: %ld recorded, %ld replayed, %ld "
                "failed (%s)", r1 - r0, p1 - p0, f1 - f0, why);
    } else {
        T_CHECK(0, "text cache: %s", err.msg);
    }
    sd_tcache_free(tc);
    free(off);
    free(off2);
    free(on);
    free(on2);
    sd_cond_free(&c);
    sd_cond_free(&n);
}
#endif


/*
 * Euler with the latents on the device (pipeline.c's sample_device, the
 * default on a GPU) against the host's sampler loop (SD_PIPE_HOST_SAMPLER
 * =1): the same final latents, float for float, and the same image; and
 * the same for a cancel flag raised at step 3 (A1111's interrupt: the
 * estimate of the step before decoded in both). On the CPU, whose ops
 * finish as they return, through a copy of its ops with marks (no-ops):
 * the device loop's order, copies and stop on the CPU's exact ops.
 */
static sd_status
mark_none(sd_err *err, sd_backend *be, int slot)
{
    (void) err;
    (void) be;
    (void) slot;
    return SD_OK;
}

static void
stop_at_3(void *data, int job, int jobs, int step, int steps)
{
    volatile int  *flag = data;

    (void) job;
    (void) jobs;
    (void) steps;
    if (step == 3) {
        *flag = SD_CANCEL_STOP;
    }
}


static void
check_device_sampler(sd_model *m)
{
    const sd_backend_ops  *keep = m->be->ops;
    sd_backend_ops         queued = *keep;
    sd_pipe_args   a;
    sd_cond        c, n;
    sd_err         err = {0};
    uint8_t       *img[4] = { NULL, NULL, NULL, NULL };
    float         *lat[4] = { NULL, NULL, NULL, NULL };
    uint8_t       *none = NULL;         /* latents_out: nothing decoded */
    size_t         per = 16 * 8 * 8;
    volatile int   flag = 0;
    int            k;

    if (!small_request(m, "a green cone", 5, &a, &c, &n)) {
        return;
    }
    if (!sd_backend_queued(m->be)) {
        queued.mark = mark_none;
        queued.wait_mark = mark_none;
        m->be->ops = &queued;
    }
    for (k = 0; k < 4; k++) {
        lat[k] = calloc(per * 4, sizeof(float));
        a.latents_out = NULL;
        a.cancel = k >= 2 ? &flag : NULL;
        a.progress = k >= 2 ? stop_at_3 : NULL;
        a.progress_data = (void *) &flag;
        flag = 0;
        if (k & 1) {
            setenv("SD_PIPE_HOST_SAMPLER", "1", 1);
        } else {
            unsetenv("SD_PIPE_HOST_SAMPLER");
        }
        T_CHECK(sd_pipe_txt2img(&err, m, &a, &c, &n, &img[k], NULL) == SD_OK
                && img[k] != NULL, "device sampler %d: %s", k, err.msg);
        a.latents_out = lat[k];
        flag = 0;
        T_CHECK(sd_pipe_txt2img(&err, m, &a, &c, &n, &none, NULL) == SD_OK
                && none == NULL, "device sampler %d, latents: %s", k,
                err.msg);
    }
    unsetenv("SD_PIPE_HOST_SAMPLER");
    m->be->ops = keep;
    for (k = 0; k < 4; k += 2) {
        T_CHECK(img[k] && img[k + 1]
                && memcmp(img[k], img[k + 1], 64 * 64 * 3) == 0
                && memcmp(lat[k], lat[k + 1], per * 4 * sizeof(float)) == 0,
                "device sampler%s: the image or latents differ from the "
                "host's loop", k ? " (stopped at step 3)" : "");
    }
    T_CHECK(img[0] && img[2] && memcmp(img[0], img[2], 64 * 64 * 3) != 0,
            "device sampler: the stopped image is the full one");
    for (k = 0; k < 4; k++) {
        free(img[k]);
        free(lat[k]);
    }
    sd_cond_free(&c);
    sd_cond_free(&n);
}


/*
 * sd_image_to_rgb8 against VaeImageProcessor's formula with nearbyintf:
 * every value on a fine grid of [-1.25, 1.25] (ties at .5 included: x =
 * (2 j + 1) / 255 - 1 lands on them), more pixels than one chunk, each
 * channel its own plane.
 */
static void
check_rgb8(void)
{
    int64_t   hw = 3 * 65536 + 77, k, bad = 0;
    float    *px = malloc((size_t) hw * 3 * sizeof(float));
    uint8_t  *rgb = malloc((size_t) hw * 3);

    if (px == NULL || rgb == NULL) {
        T_CHECK(0, "memory");
        free(px);
        free(rgb);
        return;
    }
    for (k = 0; k < hw * 3; k++) {
        px[k] = k % 3 == 0 ? -1.25f + 2.5f * (float) (k / 3) / (float) hw
              : k % 3 == 1 ? (float) (2 * (k % 255) + 1) / 255.0f - 1.0f
              : (float) ((k * 7919) % 2001) / 1000.0f - 1.0f;
    }
    sd_image_to_rgb8(px, hw, rgb);
    for (k = 0; k < hw * 3 && bad < 5; k++) {
        int64_t  p = k / 3, c = k % 3;
        float    v = px[c * hw + p] / 2.0f + 0.5f;

        v = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
        if (rgb[k] != (uint8_t) nearbyintf(v * 255.0f)) {
            printf("   pixel %lld channel %lld: %u, expected %u\n",
                   (long long) p, (long long) c, rgb[k],
                   (uint8_t) nearbyintf(v * 255.0f));
            bad++;
        }
    }
    T_CHECK(bad == 0, "sd_image_to_rgb8 differs from nearbyintf");
    free(px);
    free(rgb);
}


int
main(void)
{
    static const char  *models[] = { "large", "medium" };
    char                path[4096];
    cJSON              *cases, *list;
    sd_st              *g;
    sd_model           *m;
    sd_backend         *be;
    sd_err              err = {0};
    float               sg[5], ts[4];
    int                 i, k;

    /* the schedule alone: shift 3, 4 steps (diffusers' values) */
    sd_flow_schedule(4, 3.0f, 1000, sg, ts);
    T_CHECK(sg[0] == 1.0f && sg[4] == 0.0f && ts[0] == 1000.0f
            && fabsf(sg[1] - 0.857692f) < 1e-5f, "schedule %g %g", sg[1],
            sg[3]);
    check_rgb8();

    if (t_golden_open(&g, &cases) != 0) {
        return T_DONE();
    }
    if (t_backend(&err, &be) != SD_OK) {
        T_CHECK(0, "backend: %s", err.msg);
        return T_DONE();
    }

    for (k = 0; k < 2; k++) {
        snprintf(path, sizeof(path), "%s/tiny-sd35-%s", t_fixtures(),
                 models[k]);
        sd_err_clear(&err);
        if (sd_model_load(&err, be, path, SD_PART_ALL, &m) != SD_OK) {
            T_CHECK(0, "load %s: %s", path, err.msg);
            continue;
        }
        list = cJSON_GetObjectItem(cases, models[k]);
        for (i = 0; i < cJSON_GetArraySize(list); i++) {
            run_case(g, m, models[k], cJSON_GetArrayItem(list, i));
        }
        if (k == 0) {
            check_validation(m);
#ifdef SD_HAVE_CUDA
            check_graphs(m);
#endif
            check_device_sampler(m);
        } else {
            check_slg(m);
        }
        sd_model_free(m);
    }

    cJSON_Delete(cases);
    sd_st_close(g);
    sd_backend_destroy(be);
    return T_DONE();
}
