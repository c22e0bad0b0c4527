/*
 * test_engine.c: the public engine API (sd.h) on the tiny Large model:
 * request checks with A1111 field names, a generated image equal to the
 * golden, batches and seeds, variation seeds, "Euler a", interrupt (stop
 * and decode) and abort, the model hash without loading, and precision.
 */

#include <png.h>

#include "t.h"
#include "golden.h"
#include "image.h"
#include "sd.h"


/* Decode an 8-bit RGB PNG from memory; returns malloc'd pixels or NULL. */
static uint8_t *
png_pixels(const unsigned char *png, size_t len, int *w, int *h)
{
    png_image  img;
    uint8_t   *px;

    memset(&img, 0, sizeof(img));
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&img, png, len)) {
        return NULL;
    }
    img.format = PNG_FORMAT_RGB;
    px = malloc(PNG_IMAGE_SIZE(img));
    if (px && !png_image_finish_read(&img, NULL, px, 0, NULL)) {
        free(px);
        px = NULL;
    }
    *w = (int) img.width;
    *h = (int) img.height;
    return px;
}


static int  stop_at;
static volatile int  flag;

static void
on_step(void *data, int job, int jobs, int step, int steps)
{
    (void) data;
    (void) job;
    (void) jobs;
    (void) steps;
    if (step == stop_at) {
        flag = *(int *) data;
    }
}


static void
check_requests(sd_engine *e)
{
    sd_request  r;
    char        msg[256];

    sd_request_init(&r);
    T_CHECK(r.width == 512 && r.height == 512 && r.steps == 50
            && r.cfg_scale == 7.0f && r.seed == -1 && r.batch_size == 1
            && r.n_iter == 1 && r.rng == SD_RNG_CUDA, "A1111 defaults");
    r.width = 256;
    r.height = 256;
    T_CHECK(sd_request_check(e, &r, msg, sizeof(msg)) == SD_OK, "valid: %s",
            msg);
    r.width = 72;
    T_CHECK(sd_request_check(e, &r, msg, sizeof(msg)) == SD_ERR_INVALID
            && strncmp(msg, "width: ", 7) == 0, "width 72: %s", msg);
    r.width = 256;
    /* any sampler and scheduler name resolves (A1111 1.10 falls back) */
    r.sampler = "DPM++ 2M Karras";
    T_CHECK(sd_request_check(e, &r, msg, sizeof(msg)) == SD_OK,
            "legacy combined name: %s", msg);
    r.sampler = "no such sampler";
    r.scheduler = "no such scheduler";
    T_CHECK(sd_request_check(e, &r, msg, sizeof(msg)) == SD_OK,
            "unknown names fall back: %s", msg);
    r.sampler = "euler a";
    T_CHECK(sd_request_check(e, &r, msg, sizeof(msg)) == SD_OK,
            "sampler names are matched without case: %s", msg);
    r.scheduler = "Karras";
    T_CHECK(sd_request_check(e, &r, msg, sizeof(msg)) == SD_OK,
            "scheduler Karras: %s", msg);
    r.clip_skip = 13;
    T_CHECK(sd_request_check(e, &r, msg, sizeof(msg)) == SD_ERR_INVALID
            && strncmp(msg, "CLIP_stop_at_last_layers: ", 26) == 0,
            "clip skip 13: %s", msg);
    r.clip_skip = 1;
    r.enable_hr = 1;
    r.hr_upscaler = "ESRGAN_4x";
    T_CHECK(sd_request_check(e, &r, msg, sizeof(msg)) == SD_ERR_INVALID
            && strncmp(msg, "hr_upscaler: ", 13) == 0, "hr_upscaler: %s",
            msg);
    r.enable_hr = 0;
    r.hr_upscaler = "Latent";
    r.resize_mode = 4;
    r.n_init_images = 0;
    r.denoising_strength = 1.5f;
    T_CHECK(sd_request_check(e, &r, msg, sizeof(msg)) == SD_OK,
            "img2img fields unused without init images: %s", msg);
    r.denoising_strength = 0.75f;
    r.resize_mode = 0;
    r.scheduler = "Automatic";
    r.steps = 0;
    T_CHECK(sd_request_check(e, &r, msg, sizeof(msg)) == SD_ERR_INVALID
            && strncmp(msg, "steps: ", 7) == 0, "steps 0: %s", msg);
    r.steps = 4;
    r.seed = -5;
    T_CHECK(sd_request_check(e, &r, msg, sizeof(msg)) == SD_ERR_INVALID
            && strncmp(msg, "seed: ", 6) == 0, "seed -5: %s", msg);
}


/* large p0 through sd_generate equals the golden image. */
static void
check_golden(sd_engine *e, const sd_st *g)
{
    const sd_st_tensor  *ref = sd_st_find(g, "large.p0.image_u8");
    sd_request           r;
    sd_result            res;
    char                 msg[256];
    uint8_t             *px;
    size_t               i, off = 0;
    int                  w = 0, h = 0;

    sd_request_init(&r);
    r.prompt = "a photo of an astronaut riding a horse on mars";
    r.width = 128;
    r.height = 128;
    r.steps = 4;
    r.cfg_scale = 4.5f;
    r.seed = 42;
    r.rng = SD_RNG_CPU;
    if (sd_generate(e, &r, NULL, NULL, NULL, &res, msg, sizeof(msg))
        != SD_OK)
    {
        T_CHECK(0, "generate: %s", msg);
        return;
    }
    T_CHECK(res.n_images == 1 && res.images[0].seed == 42, "one image, seed");
    px = png_pixels(res.images[0].png, res.images[0].png_len, &w, &h);
    T_CHECK(px && w == 128 && h == 128 && ref && ref->numel == 128 * 128 * 3,
            "png %dx%d", w, h);
    if (px && ref && ref->numel == 128 * 128 * 3) {
        for (i = 0; i < 128 * 128 * 3; i++) {
            off += abs((int) px[i] - (int) ((uint8_t *) ref->data)[i]) > 1;
        }
        T_CHECK(off <= 49, "%zu values off by more than 1", off);
    }
    T_CHECK(strstr(res.images[0].infotext, "Steps: 4, Sampler: Euler, "
                   "Schedule type: Automatic, CFG scale: 4.5, Seed: 42, "
                   "Size: 128x128, Model hash: ") != NULL,
            "infotext: %s", res.images[0].infotext);
    free(px);
    sd_result_free(&res);
}


static void
check_batches(sd_engine *e)
{
    sd_request  r;
    sd_result   a, b;
    char        msg[256];

    sd_request_init(&r);
    r.prompt = "two dogs";
    r.width = 64;
    r.height = 64;
    r.steps = 2;
    r.seed = 100;
    r.batch_size = 2;
    r.n_iter = 2;
    T_CHECK(sd_generate(e, &r, NULL, NULL, NULL, &a, msg, sizeof(msg))
            == SD_OK && a.n_images == 4, "batch 2 x 2: %s", msg);
    if (a.n_images == 4) {
        T_CHECK(a.images[0].seed == 100 && a.images[1].seed == 101
                && a.images[3].seed == 103, "seeds advance per image");
        T_CHECK(a.images[0].png_len != a.images[1].png_len
                || memcmp(a.images[0].png, a.images[1].png,
                          a.images[0].png_len) != 0, "images differ");
    }

    /* variation seeds: the same seed, subseeds advancing */
    r.batch_size = 2;
    r.n_iter = 1;
    r.subseed = 7;
    r.subseed_strength = 0.5f;
    T_CHECK(sd_generate(e, &r, NULL, NULL, NULL, &b, msg, sizeof(msg))
            == SD_OK && b.n_images == 2, "variation: %s", msg);
    if (b.n_images == 2) {
        T_CHECK(b.images[0].seed == 100 && b.images[1].seed == 100
                && b.images[0].subseed == 7 && b.images[1].subseed == 8
                && strstr(b.images[1].infotext, "Variation seed: 8, "
                          "Variation seed strength: 0.5"),
                "variation seeds: %s", b.images[1].infotext);
    }
    sd_result_free(&a);
    sd_result_free(&b);
}


/*
 * Step caching: a threshold no change is below runs the split step (the
 * first block, then the others) and gives the pixels of the plain step;
 * the largest threshold reuses some steps, never the first two, the last
 * or more than 3 in a row, changes the image and says so in the infotext;
 * values outside [0, 1] are refused naming the field.
 */
static void
check_step_cache(sd_engine *e)
{
    sd_request  r;
    sd_result   a, b, c;
    char        msg[256];
    size_t      n = 64 * 64 * 3;

    sd_request_init(&r);
    r.prompt = "a red fox in the snow";
    r.width = 64;
    r.height = 64;
    r.steps = 10;
    r.seed = 5;
    T_CHECK(sd_generate(e, &r, NULL, NULL, NULL, &a, msg, sizeof(msg))
            == SD_OK && a.n_images == 1 && a.steps_cached == 0,
            "no step cache: %s", msg);
    r.step_cache = 1e-6f;
    T_CHECK(sd_generate(e, &r, NULL, NULL, NULL, &b, msg, sizeof(msg))
            == SD_OK && b.n_images == 1 && b.steps_cached == 0,
            "step cache 1e-6: %s", msg);
    r.step_cache = 1.0f;
    T_CHECK(sd_generate(e, &r, NULL, NULL, NULL, &c, msg, sizeof(msg))
            == SD_OK && c.n_images == 1, "step cache 1: %s", msg);
    if (a.n_images == 1 && b.n_images == 1 && c.n_images == 1) {
        T_CHECK(memcmp(a.images[0].rgb, b.images[0].rgb, n) == 0,
                "the split step gives the same pixels");
        T_CHECK(c.steps_cached >= 1 && c.steps_cached <= 6,
                "steps reused: %d (1..6 of 10)", c.steps_cached);
        T_CHECK(memcmp(a.images[0].rgb, c.images[0].rgb, n) != 0,
                "reused steps change the image");
        T_CHECK(strstr(c.images[0].infotext, ", Step cache: 1.0,") != NULL
                && strstr(a.images[0].infotext, "Step cache") == NULL,
                "infotext: %s", c.images[0].infotext);
    }
    sd_result_free(&a);
    sd_result_free(&b);
    sd_result_free(&c);

    r.step_cache = 1.5f;
    T_CHECK(sd_generate(e, &r, NULL, NULL, NULL, &a, msg, sizeof(msg))
            == SD_ERR_INVALID && strstr(msg, "step_cache") != NULL,
            "step cache 1.5: %s", msg);
    r.step_cache = -0.1f;
    T_CHECK(sd_generate(e, &r, NULL, NULL, NULL, &a, msg, sizeof(msg))
            == SD_ERR_INVALID && strstr(msg, "step_cache") != NULL,
            "step cache -0.1: %s", msg);
}


/* progress: the steps of the last job */
static void
count_steps(void *data, int job, int jobs, int step, int steps)
{
    (void) job;
    (void) jobs;
    (void) step;
    *(int *) data = steps;
}


/*
 * The n_iter loop's cancel flag: at (job, step) the callback raises code
 * (step 0: as iteration job begins); it records the step-0 calls.
 */
typedef struct {
    int           job, step, code;
    int           begun[8];         /* the jobs whose step 0 came, in order */
    int           n_begun, jobs;
    volatile int *flag;
} it_probe;


static void
on_iteration_step(void *data, int job, int jobs, int step, int steps)
{
    it_probe  *p = data;

    (void) steps;
    if (step == 0 && p->n_begun < 8) {
        p->begun[p->n_begun++] = job;
        p->jobs = jobs;
    }
    if (job == p->job && step == p->step) {
        *p->flag = p->code;
    }
}


static int
same_png(const sd_image *a, const sd_image *b)
{
    return a->png_len == b->png_len
           && memcmp(a->png, b->png, a->png_len) == 0;
}


/* image k of res, over all its iterations, has seed + k (A1111) */
static int
seeds_of(const sd_result *res, int64_t seed)
{
    int  i;

    for (i = 0; i < res->n_images; i++) {
        if (res->images[i].seed != (uint64_t) (seed + i)) {
            return 0;
        }
    }
    return 1;
}


static void
check_iterations(sd_engine *e)
{
    sd_request    r;
    sd_result     full, sk, in, nx, ab;
    char          msg[256];
    int           i;
    volatile int  fl = 0;
    it_probe      p;

    sd_request_init(&r);
    r.prompt = "a harbour";
    r.width = 64;
    r.height = 64;
    r.steps = 4;
    r.seed = 40;
    r.batch_size = 2;
    r.n_iter = 3;

    /* every iteration in full: progress begins each with step 0 */
    memset(&p, 0, sizeof(p));
    p.job = -1;
    p.flag = &fl;
    T_CHECK(sd_generate(e, &r, on_iteration_step, &p, &fl, &full, msg,
                        sizeof(msg)) == SD_OK
            && full.n_images == 6 && full.iterations == 3
            && seeds_of(&full, 40), "3 x 2: %d images, %s",
            full.n_images, msg);
    T_CHECK(p.n_begun == 3 && p.begun[0] == 0 && p.begun[1] == 1
            && p.begun[2] == 2 && p.jobs == 3, "step 0 per iteration: %d",
            p.n_begun);

    /* a skip after step 2 of iteration 1 ends that one only, with its
       latest estimate; the flag is cleared and iteration 2 runs in full */
    memset(&p, 0, sizeof(p));
    p.job = 1;
    p.step = 2;
    p.code = SD_CANCEL_SKIP;
    p.flag = &fl;
    fl = 0;
    T_CHECK(sd_generate(e, &r, on_iteration_step, &p, &fl, &sk, msg,
                        sizeof(msg)) == SD_OK
            && sk.n_images == 6 && sk.iterations == 3 && fl == 0
            && seeds_of(&sk, 40), "skip: %d images, flag %d, %s",
            sk.n_images, fl, msg);
    if (sk.n_images == 6 && full.n_images == 6) {
        for (i = 0; i < 6; i++) {
            T_CHECK(same_png(&sk.images[i], &full.images[i])
                    == (i / 2 != 1), "skip: image %d %s the full run's", i,
                    i / 2 == 1 ? "differs from" : "is");
        }
    }

    /* an interrupt in iteration 1: its images, no iteration 2 */
    p.n_begun = 0;
    p.code = SD_CANCEL_STOP;
    fl = 0;
    T_CHECK(sd_generate(e, &r, on_iteration_step, &p, &fl, &in, msg,
                        sizeof(msg)) == SD_OK
            && in.n_images == 4 && in.iterations == 2 && p.n_begun == 2
            && seeds_of(&in, 40), "interrupt: %d images, %d iterations",
            in.n_images, in.iterations);
    if (in.n_images == 4) {
        T_CHECK(same_png(&in.images[1], &full.images[1])
                && !same_png(&in.images[2], &full.images[2]),
                "interrupt: iteration 0 whole, 1 stopped");
    }
    sd_result_free(&in);

    /* an interrupt as iteration 1 begins: it does not run */
    p.step = 0;
    fl = 0;
    T_CHECK(sd_generate(e, &r, on_iteration_step, &p, &fl, &in, msg,
                        sizeof(msg)) == SD_OK
            && in.n_images == 2 && in.iterations == 1,
            "interrupt between iterations: %d images, %d iterations",
            in.n_images, in.iterations);

    /* a skip as iteration 1 begins: nothing to decode there, 2 runs */
    p.code = SD_CANCEL_SKIP;
    fl = 0;
    T_CHECK(sd_generate(e, &r, on_iteration_step, &p, &fl, &nx, msg,
                        sizeof(msg)) == SD_OK
            && nx.n_images == 4 && nx.iterations == 3 && fl == 0,
            "skip before a step: %d images, %d iterations",
            nx.n_images, nx.iterations);
    if (nx.n_images == 4 && full.n_images == 6) {
        T_CHECK(same_png(&nx.images[1], &full.images[1])
                && same_png(&nx.images[2], &full.images[4])
                && nx.images[2].seed == 44 && nx.images[3].seed == 45,
                "skip before a step: iteration 2's images and seeds");
    }

    /* an abort as iteration 2 begins fails the request */
    p.job = 2;
    p.code = SD_CANCEL_ABORT;
    fl = 0;
    T_CHECK(sd_generate(e, &r, on_iteration_step, &p, &fl, &ab, msg,
                        sizeof(msg)) == SD_ERR_CANCELLED
            && ab.n_images == 0 && ab.iterations == 0
            && strstr(msg, "iteration 3 of 3"), "abort: %s", msg);

    sd_result_free(&full);
    sd_result_free(&sk);
    sd_result_free(&in);
    sd_result_free(&nx);
    sd_result_free(&ab);
}


static void
check_samplers_and_stops(sd_engine *e)
{
    const char *const  *names = sd_sampler_names();
    sd_request          r;
    sd_result           eu, a1, a2, st, st2, ab;
    char                msg[256];
    int                 code;

    T_CHECK(names[0] && strcmp(names[0], "Euler") == 0 && names[1]
            && strcmp(names[1], "Euler a") == 0 && names[8]
            && strcmp(names[8], "LCM") == 0 && names[9] == NULL,
            "sampler names");
    T_CHECK(strcmp(sd_scheduler_names()[0], "Automatic") == 0,
            "scheduler names");

    sd_request_init(&r);
    r.prompt = "a lighthouse";
    r.width = 64;
    r.height = 64;
    r.steps = 4;
    r.seed = 5;
    sd_generate(e, &r, NULL, NULL, NULL, &eu, msg, sizeof(msg));
    r.sampler = "Euler a";
    sd_generate(e, &r, NULL, NULL, NULL, &a1, msg, sizeof(msg));
    sd_generate(e, &r, NULL, NULL, NULL, &a2, msg, sizeof(msg));
    T_CHECK(eu.n_images == 1 && a1.n_images == 1 && a2.n_images == 1,
            "three runs: %s", msg);
    if (eu.n_images && a1.n_images && a2.n_images) {
        T_CHECK(a1.images[0].png_len == a2.images[0].png_len
                && memcmp(a1.images[0].png, a2.images[0].png,
                          a1.images[0].png_len) == 0,
                "Euler a repeats exactly for a seed");
        T_CHECK(eu.images[0].png_len != a1.images[0].png_len
                || memcmp(eu.images[0].png, a1.images[0].png,
                          eu.images[0].png_len) != 0,
                "Euler a differs from Euler");
        T_CHECK(strstr(a1.images[0].infotext, "Sampler: Euler a,") != NULL,
                "infotext names Euler a");
    }

    /* extra-network tags: removed before encoding, listed in the result;
       the result carries the pixels and what ran */
    {
        sd_result  tag;

        r.sampler = "Euler";
        r.prompt = "a lighthouse <lora:foo:0.5>";
        T_CHECK(sd_generate(e, &r, NULL, NULL, NULL, &tag, msg, sizeof(msg))
                == SD_OK && tag.n_images == 1, "tags: %s", msg);
        if (tag.n_images == 1 && eu.n_images == 1) {
            T_CHECK(tag.n_extra_networks == 1
                    && strcmp(tag.extra_networks[0], "lora:foo:0.5") == 0,
                    "the tag is listed (%d)", tag.n_extra_networks);
            T_CHECK(tag.images[0].rgb && eu.images[0].rgb
                    && memcmp(tag.images[0].rgb, eu.images[0].rgb,
                              64 * 64 * 3) == 0,
                    "the tag does not reach the text encoders");
            T_CHECK(strcmp(tag.images[0].prompt, r.prompt) == 0
                    && strstr(tag.images[0].infotext, "<lora:foo:0.5>")
                    && strcmp(tag.sampler, "Euler") == 0
                    && strcmp(tag.scheduler, "Automatic") == 0
                    && tag.width == 64 && tag.images[0].width == 64,
                    "prompt, infotext and what ran");
        }
        sd_result_free(&tag);

        /* clip skip 2: hidden_states[-3] of both CLIPs, another image;
           beyond the tiny CLIPs' 3 layers, refused naming the option */
        r.prompt = "a lighthouse";
        r.clip_skip = 2;
        T_CHECK(sd_generate(e, &r, NULL, NULL, NULL, &tag, msg, sizeof(msg))
                == SD_OK && tag.n_images == 1 && eu.n_images == 1
                && memcmp(tag.images[0].rgb, eu.images[0].rgb, 64 * 64 * 3)
                   != 0, "clip skip 2: %s", msg);
        sd_result_free(&tag);
        r.clip_skip = 4;
        T_CHECK(sd_generate(e, &r, NULL, NULL, NULL, &tag, msg, sizeof(msg))
                == SD_ERR_INVALID && strncmp(msg, "CLIP_stop_at_last_layers: ",
                                             26) == 0, "clip skip 4: %s", msg);
        sd_result_free(&tag);
        r.clip_skip = 1;
        /* img2img from the Euler image: A1111's step count for the
           strength, deterministic, and the infotext says so */
        {
            sd_rgb8    init = { eu.images[0].rgb, 64, 64 };
            sd_result  i1, i2;
            int        last = 0;

            r.prompt = "a lighthouse";
            r.init_images = &init;
            r.n_init_images = 1;
            r.denoising_strength = 0.5f;
            r.resize_mode = 1;
            T_CHECK(sd_generate(e, &r, count_steps, &last, NULL, &i1, msg,
                                sizeof(msg)) == SD_OK && i1.n_images == 1,
                    "img2img: %s", msg);
            T_CHECK(last == 3, "4 steps at strength 0.5 run 3 (%d)", last);
            T_CHECK(sd_generate(e, &r, NULL, NULL, NULL, &i2, msg,
                                sizeof(msg)) == SD_OK && i2.n_images == 1,
                    "img2img again: %s", msg);
            if (i1.n_images == 1 && i2.n_images == 1) {
                T_CHECK(memcmp(i1.images[0].rgb, i2.images[0].rgb,
                               64 * 64 * 3) == 0
                        && memcmp(i1.images[0].rgb, eu.images[0].rgb,
                                  64 * 64 * 3) != 0,
                        "img2img repeats, and changes the image");
                T_CHECK(strstr(i1.images[0].infotext,
                               "Denoising strength: 0.5,") != NULL,
                        "infotext: %s", i1.images[0].infotext);
            }
            sd_result_free(&i1);
            sd_result_free(&i2);
            r.resize_mode = 3;
            r.mask.gray = eu.images[0].rgb;     /* any 64 x 64 bytes */
            r.mask.width = r.mask.height = 64;
            T_CHECK(sd_request_check(e, &r, msg, sizeof(msg))
                    == SD_ERR_UNSUPPORTED && strncmp(msg, "resize_mode: ",
                                                     13) == 0,
                    "resize_mode 3 with a mask: %s", msg);
            r.mask.gray = NULL;
            r.resize_mode = 0;
            r.init_images = NULL;
            r.n_init_images = 0;
        }

        /* hires fix: 64x64 then 128x128 through a latent mode and through
           Lanczos; the second pass's steps as A1111 counts them */
        {
            static const char *const  ups[] = { "Latent", "Lanczos",
                                                "Latent (nearest-exact)" };
            sd_result  hr;
            int        last = 0, u;

            r.prompt = "a lighthouse";
            r.enable_hr = 1;
            r.hr_scale = 2.0f;
            r.denoising_strength = 0.5f;
            r.hr_second_pass_steps = 2;
            for (u = 0; u < 3; u++) {
                r.hr_upscaler = ups[u];
                T_CHECK(sd_generate(e, &r, count_steps, &last, NULL, &hr,
                                    msg, sizeof(msg)) == SD_OK
                        && hr.n_images == 1 && hr.width == 128
                        && hr.images[0].width == 128 && hr.hr_steps == 2
                        && last == 2, "hires %s: %s (%d steps)", ups[u], msg,
                        last);
                if (hr.n_images == 1) {
                    T_CHECK(strstr(hr.images[0].infotext, "Size: 64x64,")
                            && strstr(hr.images[0].infotext,
                                      "Denoising strength: 0.5, Hires "
                                      "upscale: 2.0, Hires steps: 2, Hires "
                                      "upscaler: "), "infotext: %s",
                            hr.images[0].infotext);
                }
                sd_result_free(&hr);
            }
            r.hr_scale = 1.125f;        /* 72 x 72: not a multiple of 16 */
            T_CHECK(sd_generate(e, &r, NULL, NULL, NULL, &hr, msg,
                                sizeof(msg)) == SD_ERR_INVALID
                    && strncmp(msg, "hr_scale: the second pass at 72x72: "
                               "width: ", 43) == 0 && hr.n_images == 0,
                    "hires 72x72: %s", msg);
            sd_result_free(&hr);
            r.enable_hr = 0;
            r.hr_upscaler = "Latent";
            r.hr_second_pass_steps = 0;
            r.denoising_strength = 0.75f;
        }

        r.prompt = "a lighthouse";
        r.sampler = "DPM++ 2M Karras";
        T_CHECK(sd_generate(e, &r, NULL, NULL, NULL, &tag, msg, sizeof(msg))
                == SD_OK && tag.n_images == 1
                && strcmp(tag.sampler, "DPM++ 2M") == 0
                && strcmp(tag.scheduler, "Automatic") == 0
                && strstr(tag.images[0].infotext, "Sampler: DPM++ 2M, "
                          "Schedule type: Automatic,"), "DPM++ 2M: %s", msg);
        sd_result_free(&tag);
    }

    /* interrupt after step 2 of 4: an image, not the full run's */
    r.sampler = "Euler";
    stop_at = 2;
    code = SD_CANCEL_STOP;
    flag = 0;
    T_CHECK(sd_generate(e, &r, on_step, &code, &flag, &st, msg, sizeof(msg))
            == SD_OK && st.n_images == 1, "stop: %s", msg);
    if (st.n_images == 1 && eu.n_images == 1) {
        T_CHECK(st.images[0].png_len != eu.images[0].png_len
                || memcmp(st.images[0].png, eu.images[0].png,
                          st.images[0].png_len) != 0,
                "a stopped run decodes an earlier estimate");
    }

    /* a stop ends the request: no later iteration runs */
    r.n_iter = 3;
    flag = 0;
    T_CHECK(sd_generate(e, &r, on_step, &code, &flag, &st2, msg, sizeof(msg))
            == SD_OK && st2.n_images == 1, "stop with n_iter 3: %d images, "
            "%s", st2.n_images, msg);
    sd_result_free(&st2);

    /* stopped before the first step: nothing to decode, no image */
    flag = SD_CANCEL_STOP;
    T_CHECK(sd_generate(e, &r, NULL, NULL, &flag, &st2, msg, sizeof(msg))
            == SD_OK && st2.n_images == 0, "stop before start: %d images",
            st2.n_images);
    sd_result_free(&st2);
    r.n_iter = 1;

    code = SD_CANCEL_ABORT;
    flag = 0;
    T_CHECK(sd_generate(e, &r, on_step, &code, &flag, &ab, msg, sizeof(msg))
            == SD_ERR_CANCELLED && ab.n_images == 0 && ab.images == NULL,
            "abort: %s", msg);
    sd_result_free(&ab);

    sd_result_free(&eu);
    sd_result_free(&a1);
    sd_result_free(&a2);
    sd_result_free(&st);
}


int
main(void)
{
    sd_engine_config  cfg;
    sd_engine        *e, *x;
    sd_st            *g;
    cJSON            *cases;
    char              dir[4096], msg[256], hash[16];

    if (t_golden_open(&g, &cases) != 0) {
        return T_DONE();
    }
    snprintf(dir, sizeof(dir), "%s/tiny-sd35-large", t_fixtures());
    sd_engine_config_init(&cfg);
    cfg.model_dir = dir;
    if (sd_engine_open(&cfg, &e, msg, sizeof(msg)) != SD_OK) {
        T_CHECK(0, "open: %s", msg);
        return T_DONE();
    }
    T_CHECK(strcmp(sd_engine_model_name(e), "tiny-sd35-large") == 0
            && sd_engine_memory_bytes(e) > 0, "name and memory");
    T_CHECK(sd_model_hash_dir(dir, hash, msg, sizeof(msg)) == SD_OK
            && strlen(hash) == 10
            && strcmp(hash, sd_engine_model_hash(e)) == 0,
            "hash without loading: %s vs %s", hash, sd_engine_model_hash(e));
    T_CHECK(sd_model_hash_dir("/no/model", hash, msg, sizeof(msg))
            == SD_ERR_IO && strstr(msg, "/no/model"), "hash: %s", msg);

    {
        /* the CPU backend has no GPU memory to report */
        size_t  used = 1, total = 1;

        T_CHECK(sd_engine_gpu_memory(e, &used, &total, msg, sizeof(msg))
                == SD_ERR_UNSUPPORTED && used == 0 && total == 0
                && strstr(msg, "CPU"), "gpu memory on the CPU: %s", msg);
    }

    check_requests(e);
    check_golden(e, g);
    check_batches(e);
    check_samplers_and_stops(e);
    check_iterations(e);
    check_step_cache(e);
    sd_engine_close(e);

    cfg.precision = SD_PRECISION_FP8;
    T_CHECK(sd_engine_open(&cfg, &x, msg, sizeof(msg)) == SD_ERR_UNSUPPORTED
            && strncmp(msg, "precision: ", 11) == 0, "fp8 on cpu: %s", msg);
    cfg.precision = SD_PRECISION_AUTO;

    /* A1111's seeds of image k: one rule for the engine and the module */
    T_CHECK(sd_image_seed(5, 0.0f, 3) == 8 && sd_image_seed(5, 0.5f, 3) == 5
            && sd_image_subseed(7, 2) == 9 && sd_image_seed(5, 0.0f, 0) == 5
            && sd_image_seed(INT64_MAX, 0.0f, 1) == INT64_MIN,
            "image seeds");

    /* offload: the values, and the CPU, where it means nothing */
    T_CHECK(sd_engine_offload_valid("t5") && sd_engine_offload_valid("clip")
            && sd_engine_offload_valid("text")
            && sd_engine_offload_valid("t5,clip")
            && sd_engine_offload_valid("none") && sd_engine_offload_valid("")
            && !sd_engine_offload_valid("t5,,x")
            && !sd_engine_offload_valid("vae")
            && !sd_engine_offload_valid("t55")
            && !sd_engine_offload_valid(NULL), "offload values");
    cfg.offload = "vae";
    T_CHECK(sd_engine_open(&cfg, &x, msg, sizeof(msg)) == SD_ERR_INVALID
            && strstr(msg, "offload") && strstr(msg, "vae"),
            "offload vae: %s", msg);
    cfg.offload = "t5";
    T_CHECK(sd_engine_open(&cfg, &x, msg, sizeof(msg)) == SD_ERR_INVALID
            && strstr(msg, "offload: the CPU"), "offload on cpu: %s", msg);
    cfg.offload = NULL;
    cfg.model_dir = "/no/model";
    T_CHECK(sd_engine_open(&cfg, &x, msg, sizeof(msg)) == SD_ERR_IO
            && strstr(msg, "/no/model"), "missing model: %s", msg);

    cJSON_Delete(cases);
    sd_st_close(g);
    return T_DONE();
}
