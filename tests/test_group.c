/*
 * test_group.c: batching across requests (sd.h: sd_request_groupable,
 * sd_generate_group) on the tiny Large model. Requests that share every
 * forward pass get the images they get alone (the same bytes on the CPU;
 * on the GPU, SD_TEST_DEVICE=cuda|cuda-bf16|cuda-fp8, within a few levels,
 * the products' summation order), each its own progress, interrupt and
 * abort; requests that cannot share run alone in the same call.
 */

#include <unistd.h>

#include "t.h"
#include "sd.h"


/* what one member's progress saw, and the flag it raises at a step */
typedef struct {
    int             calls, first, last, steps;
    int             stop_at, raise;
    volatile int    cancel;
} member_t;

static void
on_step(void *data, int job, int jobs, int step, int steps)
{
    member_t  *m = data;

    if (m->calls++ == 0) {
        m->first = step;
    }
    T_CHECK(job == 0 && jobs == 1, "progress job %d of %d", job, jobs);
    m->last = step;
    m->steps = steps;
    if (m->raise && step == m->stop_at) {
        m->cancel = m->raise;
    }
}


/*
 * How far an image of a shared pass may be from the same request alone:
 * the products see more rows, and OpenBLAS (the GPU's libraries too)
 * picks its kernels, so its summation order, by the row count. On the
 * CPU a few values end one level apart (at most 1 in 1000 of them; on the
 * H200 none did, in BF16 and FP8); a pass of one request alone is the
 * same bytes.
 */
static int  max_diff_allowed = 1;
static int  on_gpu;
static int  worst;              /* the largest difference seen */

/* res's images against ref's: same count, seeds, infotext, pixels */
static void
same_images(const sd_result *res, const sd_result *ref, const char *what,
    int exact)
{
    int     i, d, n_off, big;
    size_t  j, px;

    T_CHECK(res->n_images == ref->n_images, "%s: %d images, alone %d", what,
            res->n_images, ref->n_images);
    for (i = 0; i < res->n_images && i < ref->n_images; i++) {
        const sd_image  *a = &res->images[i], *b = &ref->images[i];

        T_CHECK(a->seed == b->seed && a->subseed == b->subseed
                && a->width == b->width && a->height == b->height,
                "%s: image %d seeds %llu/%llu", what, i,
                (unsigned long long) a->seed, (unsigned long long) b->seed);
        T_CHECK(strcmp(a->infotext, b->infotext) == 0, "%s: infotext %s vs "
                "%s", what, a->infotext, b->infotext);
        if (a->rgb == NULL || b->rgb == NULL || a->width != b->width
            || a->height != b->height)
        {
            T_CHECK(0, "%s: image %d has no pixels", what, i);
            continue;
        }
        px = (size_t) a->width * a->height * 3;
        n_off = big = 0;
        for (j = 0; j < px; j++) {
            d = abs((int) a->rgb[j] - (int) b->rgb[j]);
            worst = d > worst && !exact ? d : worst;
            n_off += d > 0;
            big += d > max_diff_allowed;
        }
        if (on_gpu) {
            printf("   %s: image %d, %d of %zu values differ\n", what, i,
                   n_off, px);
        }
        T_CHECK(big == 0 && (size_t) n_off * 1000 <= px,
                "%s: image %d, %d "
                "values differ, %d by more than %d from the request alone",
                what, i, n_off, big, max_diff_allowed);
        if (exact) {
            T_CHECK(a->png_len == b->png_len
                    && memcmp(a->png, b->png, a->png_len) == 0,
                    "%s: image %d, the same PNG bytes", what, i);
        }
    }
}


static void
base_request(sd_request *r)
{
    sd_request_init(r);
    r->width = 128;
    r->height = 128;
    r->steps = 4;
    r->cfg_scale = 4.5f;
    r->seed = 7;
    r->subseed = 3;
    r->rng = SD_RNG_CPU;
}


static void
check_groupable(sd_engine *e)
{
    sd_request  a, b;

    base_request(&a);
    base_request(&b);
    T_CHECK(sd_request_groupable(&a, NULL) && sd_request_groupable(&a, &b),
            "plain txt2img requests share passes");
    T_CHECK(!sd_request_groupable(NULL, NULL), "no request");
    b.prompt = "another prompt";
    b.negative_prompt = "blurry";
    b.seed = 99;
    b.cfg_scale = 7.0f;
    b.batch_size = 3;
    b.clip_skip = 2;
    T_CHECK(sd_request_groupable(&a, &b), "prompts, seeds, cfg_scale, "
            "batch_size, clip_skip may differ");
    b.sampler = "k_euler";
    T_CHECK(sd_request_groupable(&a, &b), "the same sampler by an alias");
#define NOT(field, value, why)                                              \
    do {                                                                    \
        base_request(&b);                                                   \
        b.field = value;                                                    \
        T_CHECK(!sd_request_groupable(&a, &b)                               \
                && !sd_request_groupable(&b, &a), why);                     \
    } while (0)
    NOT(width, 256, "another width");
    NOT(height, 64, "another height");
    NOT(steps, 5, "other steps");
    NOT(sampler, "Euler a", "another sampler");
    NOT(scheduler, "Karras", "another scheduler");
    NOT(cfg_scale, 1.0f, "guidance off against on");
    NOT(eta_noise_seed_delta, 31337, "another ENSD");
    NOT(rng, SD_RNG_CUDA, "another noise source");
    NOT(subseed_strength, 0.5f, "another variation strength");
    NOT(seed, -1, "an unresolved seed");
    NOT(n_iter, 2, "several iterations");
    NOT(enable_hr, 1, "hires fix");
    NOT(step_cache, 0.1f, "step caching");
    NOT(slg_scale, 2.5f, "skip-layer guidance");
    NOT(prompt, "a [cat:dog:0.5]", "prompt editing");
    NOT(prompt, "a [cat|dog]", "alternation");
    NOT(negative_prompt, "[ugly:blurry:2]", "an edited negative");
    NOT(n_init_images, 1, "img2img");
#undef NOT
    base_request(&b);
    b.cfg_scale = 1.0f;
    b.negative_prompt = "[ugly:blurry:2]";
    a.cfg_scale = 1.0f;
    T_CHECK(sd_request_groupable(&a, &b), "an edited negative is unused "
            "without guidance");
    if (!on_gpu) {
        T_CHECK(sd_engine_group_images(e, 1024, 1024) == 64,
                "the CPU bounds a pass at 64 images");
    } else {
        /* the workspace was sized for 256 x 256 x 4 */
        T_CHECK(sd_engine_group_images(e, 128, 128) == 16
                && sd_engine_group_images(e, 1024, 1024) == 1,
                "the workspace bounds a pass: %d at 128^2",
                sd_engine_group_images(e, 128, 128));
    }
}


/* n requests alone, each with its member's progress and flag */
static int
alone(sd_engine *e, int n, sd_request *r, member_t *m, sd_result *ref)
{
    char  msg[256];
    int   k;

    for (k = 0; k < n; k++) {
        if (sd_generate(e, &r[k], on_step, &m[k], &m[k].cancel, &ref[k],
                        msg, sizeof(msg)) != SD_OK)
        {
            T_CHECK(0, "request %d alone: %s", k, msg);
            return -1;
        }
    }
    return 0;
}


static void
group(sd_engine *e, int n, sd_request *r, member_t *m, sd_result *res,
    sd_status *st, char msg[][256])
{
    const sd_request  *rp[8];
    void              *pd[8];
    volatile int      *cp[8];
    char              *ep[8];
    int                k;

    for (k = 0; k < n; k++) {
        rp[k] = &r[k];
        pd[k] = &m[k];
        cp[k] = &m[k].cancel;
        ep[k] = msg[k];
        msg[k][0] = '\0';
    }
    sd_generate_group(e, n, rp, on_step, pd, cp, res, st, ep, 256);
}


/* r[0..4]: three requests of one size (different prompts, negatives,
   cfg, seeds, batch sizes), one that cannot share (other steps) and one
   whose prompt is two CLIP chunks long */
static void
requests(sd_request *r)
{
    static char  longp[2048];
    int          i;

    base_request(&r[0]);
    r[0].prompt = "a red car in the rain";
    r[0].seed = 11;

    base_request(&r[1]);
    r[1].prompt = "a blue house by the sea, morning light";
    r[1].negative_prompt = "blurry";
    r[1].seed = 22;
    r[1].subseed = 5;
    r[1].batch_size = 2;
    r[1].cfg_scale = 7.0f;
    r[1].clip_skip = 2;

    base_request(&r[2]);
    r[2].prompt = "a cat";
    r[2].negative_prompt = "a dog";
    r[2].seed = 33;
    r[2].cfg_scale = 3.0f;
    r[2].sampler = "k_euler";

    base_request(&r[3]);
    r[3].prompt = "a lighthouse";
    r[3].seed = 44;
    r[3].steps = 3;

    longp[0] = '\0';
    for (i = 0; i < 40; i++) {
        strcat(longp, "green tree, ");
    }
    base_request(&r[4]);
    r[4].prompt = longp;
    r[4].seed = 55;
}


static void
check_group(sd_engine *e)
{
    sd_request  r[5];
    member_t    m[5];
    sd_result   ref[5], res[5];
    sd_status   st[5];
    char        msg[5][256];
    int         k;

    requests(r);
    memset(m, 0, sizeof(m));
    if (alone(e, 5, r, m, ref) != 0) {
        return;
    }
    memset(m, 0, sizeof(m));
    group(e, 5, r, m, res, st, msg);
    for (k = 0; k < 5; k++) {
        char  what[64];

        snprintf(what, sizeof(what), "request %d of the group", k);
        T_CHECK(st[k] == SD_OK, "%s: %s", what, msg[k]);
        if (st[k] == SD_OK) {
            same_images(&res[k], &ref[k], what, 0);
        }
        T_CHECK(m[k].first == 0 && m[k].last == r[k].steps
                && m[k].calls == r[k].steps + 1, "%s: progress %d calls, "
                "%d to %d", what, m[k].calls, m[k].first, m[k].last);
        sd_result_free(&res[k]);
        sd_result_free(&ref[k]);
    }
}


/* a pass of one request is the request alone, byte for byte (the CPU) */
static void
check_one(sd_engine *e)
{
    sd_request  r[5];
    member_t    m[2];
    sd_result   ref, res;
    sd_status   st;
    char        msg[1][256];

    requests(r);
    memset(m, 0, sizeof(m));
    if (alone(e, 1, r + 1, m, &ref) != 0) {
        return;
    }
    group(e, 1, r + 1, m + 1, &res, &st, msg);
    T_CHECK(st == SD_OK, "a group of one: %s", msg[0]);
    if (st == SD_OK) {
        same_images(&res, &ref, "a group of one", !on_gpu);
    }
    sd_result_free(&res);
    sd_result_free(&ref);
}


/* one member interrupted at step 2, one aborted at step 1, one left */
static void
check_cancel(sd_engine *e)
{
    sd_request  r[5];       /* requests() fills five */
    member_t    m[3];
    sd_result   ref[3], res[3];
    sd_status   st[3];
    char        msg[3][256];
    int         k;

    requests(r);
    memset(m, 0, sizeof(m));
    m[0].stop_at = 2;
    m[0].raise = SD_CANCEL_STOP;
    m[2].stop_at = 3;
    m[2].raise = SD_CANCEL_SKIP;
    if (alone(e, 1, r, m, ref) != 0 || alone(e, 1, r + 2, m + 2, ref + 2)
        != 0)
    {
        return;
    }
    T_CHECK(m[2].cancel == 0, "a skip is cleared after the request");
    memset(m, 0, sizeof(m));
    m[0].stop_at = 2;
    m[0].raise = SD_CANCEL_STOP;
    m[1].stop_at = 1;
    m[1].raise = SD_CANCEL_ABORT;
    m[2].stop_at = 3;
    m[2].raise = SD_CANCEL_SKIP;
    group(e, 3, r, m, res, st, msg);
    T_CHECK(st[0] == SD_OK, "interrupted: %s", msg[0]);
    if (st[0] == SD_OK) {
        same_images(&res[0], &ref[0], "interrupted at step 2", 0);
    }
    T_CHECK(m[0].last == 2 && m[0].calls == 3, "no progress after the "
            "interrupt (%d calls, last %d)", m[0].calls, m[0].last);
    T_CHECK(st[1] == SD_ERR_CANCELLED && res[1].n_images == 0
            && strcmp(msg[1], "cancelled at step 2 of 4") == 0,
            "aborted: %d %s", st[1], msg[1]);
    T_CHECK(st[2] == SD_OK && m[2].cancel == 0, "skipped at step 3: %s",
            msg[2]);
    if (st[2] == SD_OK) {
        same_images(&res[2], &ref[2], "skipped at step 3", 0);
    }
    for (k = 0; k < 3; k++) {
        sd_result_free(&res[k]);
        if (k != 1) {
            sd_result_free(&ref[k]);
        }
    }

    /* everyone gone: the pass ends at once, every request cancelled */
    memset(m, 0, sizeof(m));
    for (k = 0; k < 3; k++) {
        m[k].stop_at = 1;
        m[k].raise = SD_CANCEL_ABORT;
    }
    group(e, 3, r, m, res, st, msg);
    for (k = 0; k < 3; k++) {
        T_CHECK(st[k] == SD_ERR_CANCELLED && res[k].n_images == 0
                && m[k].calls == 2, "all aborted, request %d: %s (%d "
                "calls)", k, msg[k], m[k].calls);
        sd_result_free(&res[k]);
    }

    /* raised before the first step: abort fails, interrupt has no image */
    memset(m, 0, sizeof(m));
    m[0].raise = SD_CANCEL_ABORT;
    m[1].raise = SD_CANCEL_STOP;
    group(e, 3, r, m, res, st, msg);
    T_CHECK(st[0] == SD_ERR_CANCELLED && strcmp(msg[0], "cancelled before "
            "iteration 1 of 1") == 0, "aborted at once: %s", msg[0]);
    T_CHECK(st[1] == SD_OK && res[1].n_images == 0, "interrupted at once: "
            "%d images", res[1].n_images);
    T_CHECK(st[2] == SD_OK && res[2].n_images == 1, "the third goes on");
    for (k = 0; k < 3; k++) {
        sd_result_free(&res[k]);
    }
}


/* a bad member fails alone, with its field named */
static void
check_errors(sd_engine *e)
{
    sd_request  r[5];       /* requests() fills five */
    member_t    m[3];
    sd_result   res[3];
    sd_status   st[3];
    char        msg[3][256];
    int         k;

    requests(r);
    r[1].width = 72;
    memset(m, 0, sizeof(m));
    group(e, 3, r, m, res, st, msg);
    T_CHECK(st[0] == SD_OK && st[2] == SD_OK && res[0].n_images == 1
            && res[2].n_images == 1, "the valid members: %s / %s", msg[0],
            msg[2]);
    T_CHECK(st[1] == SD_ERR_INVALID && strncmp(msg[1], "width: ", 7) == 0
            && res[1].n_images == 0, "width 72: %s", msg[1]);
    for (k = 0; k < 3; k++) {
        sd_result_free(&res[k]);
    }
}


/*
 * A device fault (sd_engine_inject_fault: on the GPU a kernel that traps,
 * for the next call to meet as a real fault's sticky error; on the CPU the
 * engine marks itself lost): that call answers SD_ERR_DEVICE with the
 * fault's text, every call after it at once, alone or grouped, and the
 * engine still closes. Last: on the GPU the process's context is gone.
 */
static void
check_device_fault(sd_engine *e)
{
    sd_request         r;
    sd_result          res[2];
    sd_status          s, st[2];
    const sd_request  *rp[2] = { &r, &r };
    char               msg[256], m0[256], m1[256], *ep[2] = { m0, m1 };

    base_request(&r);
    r.prompt = "a fault";
    T_CHECK(!sd_engine_lost(e), "not lost before the fault");
    msg[0] = '\0';
    s = sd_engine_inject_fault(e, msg, sizeof(msg));
    T_CHECK(s == SD_OK, "inject: %s %s", sd_status_str(s), msg);

    msg[0] = '\0';
    s = sd_generate(e, &r, NULL, NULL, NULL, &res[0], msg, sizeof(msg));
    T_CHECK(s == SD_ERR_DEVICE && res[0].n_images == 0 && sd_engine_lost(e)
            && strstr(msg, on_gpu ? "unspecified launch failure"
                                  : "injected device fault"),
            "the call after the fault: %s: %s", sd_status_str(s), msg);
    sd_result_free(&res[0]);

    s = sd_generate(e, &r, NULL, NULL, NULL, &res[0], msg, sizeof(msg));
    T_CHECK(s == SD_ERR_DEVICE && strstr(msg, "failed earlier"),
            "the call after that: %s: %s", sd_status_str(s), msg);
    sd_result_free(&res[0]);

    sd_generate_group(e, 2, rp, NULL, NULL, NULL, res, st, ep, 256);
    T_CHECK(st[0] == SD_ERR_DEVICE && st[1] == SD_ERR_DEVICE
            && res[0].n_images == 0 && res[1].n_images == 0
            && strstr(m1, "failed earlier"),
            "a group after it: %s, %s: %s", sd_status_str(st[0]),
            sd_status_str(st[1]), m1);
    sd_result_free(&res[0]);
    sd_result_free(&res[1]);
}


int
main(void)
{
    sd_engine_config  cfg;
    sd_engine        *e;
    char              dir[4096], msg[256];
    const char       *d = getenv("SD_TEST_DEVICE");

    snprintf(dir, sizeof(dir), "%s/tiny-sd35-large", t_fixtures());
    if (access(dir, R_OK) != 0) {
        T_SKIP("no fixtures at %s", dir);
        return T_DONE();
    }
    sd_engine_config_init(&cfg);
    cfg.model_dir = dir;
    if (d && strncmp(d, "cuda", 4) == 0) {
        cfg.device = SD_DEVICE_CUDA;
        cfg.precision = strcmp(d, "cuda-fp8") == 0 ? SD_PRECISION_FP8
                        : strcmp(d, "cuda-bf16") == 0 ? SD_PRECISION_BF16
                        : SD_PRECISION_FP32;
        cfg.ws_width = cfg.ws_height = 256;
        on_gpu = 1;     /* the H200, BF16 and FP8: 0 values differ */
        printf("   device %s\n", d);
    }
    if (sd_engine_open(&cfg, &e, msg, sizeof(msg)) != SD_OK) {
        T_CHECK(0, "open: %s", msg);
        return T_DONE();
    }
    check_groupable(e);
    check_one(e);
    check_group(e);
    check_cancel(e);
    check_errors(e);
    printf("   largest difference from a request alone: %d levels\n", worst);
    check_device_fault(e);              /* last: it ends the context */
    sd_engine_close(e);
    return T_DONE();
}
