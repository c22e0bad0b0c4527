/*
 * test_img2img_ref.c: img2img and inpainting on both tiny models against
 * diffusers' StableDiffusion3Img2ImgPipeline and
 * StableDiffusion3InpaintPipeline (tests/data/img2img_ref.safetensors,
 * made by tests/gpu/img2img_ref.py, which says how A1111's semantics map
 * onto diffusers' parameters and what differs by design).
 *
 * Per case, through the pipeline: the init image's latents, the latent
 * mask (exactly), the sigmas that run (A1111's start step), the final
 * latents and the decoded image. Through sd_generate (the request as the
 * API gives it: Euler, Automatic, rng CPU, mask_blur 0, inpainting_fill 1
 * "original"): the image, which keeps the original pixels outside the mask
 * (A1111's overlay, which diffusers does not do) and is diffusers' image
 * inside it.
 */

#include <unistd.h>

#include "t.h"
#include "golden.h"
#include "inpaint.h"
#include "pipeline.h"
#include "safetensors.h"
#include "sd.h"


#define REF_PATH  "tests/data/img2img_ref.safetensors"


/* The uint8 reference tensor key of n values, or NULL (recorded). */
static const uint8_t *
ref_u8(const sd_st *ref, const char *key, size_t n)
{
    const sd_st_tensor  *t = sd_st_find(ref, key);

    if (t == NULL || t->dtype != SD_DT_U8 || (size_t) t->numel != n) {
        T_CHECK(0, "%s: missing, not U8 or not %zu values", key, n);
        return NULL;
    }
    return t->data;
}


/* t_golden_cmp, and the error printed (what the reference measures) */
static void
cmp_f32(const sd_st *ref, const char *key, const float *a, size_t n,
    double tol)
{
    const sd_st_tensor  *t = sd_st_find(ref, key);
    float               *b;
    sd_err               err = {0};

    t_golden_cmp(ref, key, a, n, tol);
    b = t && (size_t) t->numel == n ? malloc(n * sizeof(float)) : NULL;
    if (b && sd_st_read_f32(&err, t, b) == SD_OK) {
        printf("   %-28s rel L2 %.3g\n", key, t_rel_l2(a, b, n));
    }
    free(b);
}


/*
 * img (n values) against the reference image_u8 where keep is 0 (or
 * everywhere when keep is NULL): within 1 at 99.9% of the values; where
 * keep is 255, equal to orig.
 */
static void
check_image(const char *what, const uint8_t *img, const uint8_t *ref,
    const uint8_t *keep, const uint8_t *orig, size_t n)
{
    size_t  i, off = 0, kept = 0, moved = 0;

    for (i = 0; i < n; i++) {
        if (keep && keep[i / 3] == 0) {
            kept++;
            moved += img[i] != orig[i];
            continue;
        }
        off += abs((int) img[i] - (int) ref[i]) > 1;
    }
    printf("   %s: %zu of %zu values differ by more than 1, %zu kept\n",
           what, off, n - kept, kept);
    if (!t_dev_bf16) {
        T_CHECK(off <= (n - kept) / 1000, "%s: %zu of %zu values differ by "
                "more than 1", what, off, n - kept);
    }
    T_CHECK(moved == 0, "%s: %zu of %zu values outside the mask are not "
            "the original's", what, moved, kept);
}


/* The request of a case, as the API would give it. */
static void
case_request(const cJSON *meta, const cJSON *cs, const sd_rgb8 *init,
    const uint8_t *mask, sd_request *r)
{
    sd_request_init(r);
    r->prompt = cJSON_GetObjectItem(meta, "prompt")->valuestring;
    r->negative_prompt = cJSON_GetObjectItem(meta,
                                             "negative_prompt")->valuestring;
    r->width = init->width;
    r->height = init->height;
    r->cfg_scale = (float) cJSON_GetObjectItem(meta, "cfg")->valuedouble;
    r->steps = cJSON_GetObjectItem(cs, "steps")->valueint;
    r->seed = (int64_t) cJSON_GetObjectItem(cs, "seed")->valuedouble;
    r->rng = SD_RNG_CPU;
    r->sampler = "Euler";
    r->scheduler = "Automatic";
    r->init_images = init;
    r->n_init_images = 1;
    r->resize_mode = 0;
    r->denoising_strength = (float) cJSON_GetObjectItem(cs,
                            "denoising_strength")->valuedouble;
    if (mask) {
        r->mask.gray = mask;
        r->mask.width = init->width;
        r->mask.height = init->height;
        r->mask_blur_x = 0;
        r->mask_blur_y = 0;
        r->inpainting_fill = 1;
        r->inpaint_full_res = 0;
    }
}


/* The mask of a case (NULL for img2img; missing: recorded, *bad set). */
static const uint8_t *
case_mask(const sd_st *ref, const cJSON *cs, size_t n, int *bad)
{
    const cJSON    *mk = cJSON_GetObjectItem(cs, "mask");
    const uint8_t  *m;
    char            key[128];

    *bad = 0;
    if (!cJSON_IsString(mk)) {
        return NULL;
    }
    snprintf(key, sizeof(key), "mask.%s", mk->valuestring);
    m = ref_u8(ref, key, n);
    *bad = m == NULL;
    return m;
}


/* Every case of the reference through the pipeline on model k. */
static void
check_pipeline(const sd_st *ref, const cJSON *meta, sd_model *m,
    const char *model, const sd_rgb8 *init)
{
    const cJSON  *cases = cJSON_GetObjectItem(meta, "cases"), *cs;
    sd_cond       c, n;
    sd_err        err = {0};
    float        *lat;
    char          key[256];
    size_t        per = (size_t) 16 * (init->height / 8) * (init->width / 8);
    size_t        npx = (size_t) init->width * init->height;

    lat = malloc(per * sizeof(float));
    if (lat == NULL) {
        T_CHECK(0, "out of memory");
        return;
    }
    /* the init latents: VAE posterior mean, shifted and scaled */
    T_CHECK(sd_pipe_encode_image(&err, m, init->rgb, init->width,
                                 init->height, lat) == SD_OK,
            "%s: encode: %s", model, err.msg);
    snprintf(key, sizeof(key), "%s.init_latents", model);
    cmp_f32(ref, key, lat, per, t_tol(1e-4, 3e-2));

    if (sd_cond_encode(&err, m, cJSON_GetObjectItem(meta,
                       "prompt")->valuestring, &c) != SD_OK
        || sd_cond_encode(&err, m, cJSON_GetObjectItem(meta,
                          "negative_prompt")->valuestring, &n) != SD_OK)
    {
        T_CHECK(0, "%s: encode: %s", model, err.msg);
        free(lat);
        return;
    }

    cJSON_ArrayForEach(cs, cases) {
        const char    *name = cJSON_GetObjectItem(cs, "name")->valuestring;
        const uint8_t *mask, *want;
        sd_request     r;
        sd_inpaint     ip;
        sd_pipe_args   a;
        sd_pipe_dump   d;
        uint8_t       *rgb = NULL;
        int            fb, bad, ran;

        mask = case_mask(ref, cs, npx, &bad);
        if (bad) {
            continue;
        }
        case_request(meta, cs, init, mask, &r);
        memset(&ip, 0, sizeof(ip));
        if (mask) {
            const sd_st_tensor  *lm;
            float               *want_m;
            size_t               i, hw = per / 16, diff = 0;

            T_CHECK(sd_inpaint_prepare(&err, &r, &ip) == SD_OK && ip.active,
                    "%s.%s: inpaint: %s", model, name, err.msg);
            snprintf(key, sizeof(key), "%s.%s.latmask", model, name);
            lm = sd_st_find(ref, key);
            want_m = malloc(hw * sizeof(float));
            if (!ip.active || lm == NULL || (size_t) lm->numel != hw
                || want_m == NULL)
            {
                T_CHECK(0, "%s: latent mask missing", key);
                free(want_m);
                sd_inpaint_free(&ip);
                continue;
            }
            sd_st_read_f32(&err, lm, want_m);
            for (i = 0; i < hw; i++) {
                diff += ip.latmask[i] != want_m[i];
            }
            /* A1111's bicubic-and-round is diffusers' nearest here */
            T_CHECK(diff == 0, "%s: %zu of %zu latent mask values differ",
                    key, diff, hw);
            free(want_m);
        }

        memset(&a, 0, sizeof(a));
        memset(&d, 0, sizeof(d));
        a.width = r.width;
        a.height = r.height;
        a.cfg = r.cfg_scale;
        a.seeds[0] = (uint64_t) r.seed;
        a.batch = 1;
        a.rng = SD_RNG_CPU;
        sd_sampler_resolve(r.sampler, r.scheduler, &a.sampler, &a.sched, &fb);
        a.init = lat;
        a.mask = ip.active ? ip.latmask : NULL;
        a.steps = r.steps;
        a.start = sd_img2img_start(&a.steps, r.denoising_strength, 0);
        T_CHECK(a.start == cJSON_GetObjectItem(cs, "start")->valueint,
                "%s.%s: A1111's start step %d, the reference's %d", model,
                name, a.start, cJSON_GetObjectItem(cs, "start")->valueint);
        ran = sd_pipe_txt2img(&err, m, &a, &c, &n, &rgb, &d) == SD_OK;
        T_CHECK(ran, "%s.%s: %s", model, name, err.msg);
        if (ran) {
            snprintf(key, sizeof(key), "%s.%s.sigmas", model, name);
            t_golden_cmp(ref, key, d.sigmas, a.steps - a.start, 1e-6);
            snprintf(key, sizeof(key), "%s.%s.final", model, name);
            cmp_f32(ref, key, d.final_latents, per, t_tol(1e-3, 3e-2));
            snprintf(key, sizeof(key), "%s.%s.image_u8", model, name);
            want = ref_u8(ref, key, npx * 3);
            if (want) {
                check_image(key, rgb, want, NULL, NULL, npx * 3);
            }
        }
        free(rgb);
        sd_pipe_dump_free(&d);
        sd_inpaint_free(&ip);
    }
    sd_cond_free(&c);
    sd_cond_free(&n);
    free(lat);
}


/* Every case through the public API (on the CPU). */
static void
check_generate(const sd_st *ref, const cJSON *meta, const char *dir,
    const char *model, const sd_rgb8 *init)
{
    const cJSON       *cs;
    sd_engine_config   cfg;
    sd_engine         *e;
    char               msg[256], key[256];
    size_t             npx = (size_t) init->width * init->height;

    sd_engine_config_init(&cfg);
    cfg.model_dir = dir;
    if (sd_engine_open(&cfg, &e, msg, sizeof(msg)) != SD_OK) {
        T_CHECK(0, "open %s: %s", dir, msg);
        return;
    }
    cJSON_ArrayForEach(cs, cJSON_GetObjectItem(meta, "cases")) {
        const char     *name = cJSON_GetObjectItem(cs, "name")->valuestring;
        const uint8_t  *mask, *want;
        sd_request      r;
        sd_result       res;
        int             bad;

        mask = case_mask(ref, cs, npx, &bad);
        snprintf(key, sizeof(key), "%s.%s.image_u8", model, name);
        want = ref_u8(ref, key, npx * 3);
        if (bad || want == NULL) {
            continue;
        }
        case_request(meta, cs, init, mask, &r);
        memset(&res, 0, sizeof(res));
        if (sd_generate(e, &r, NULL, NULL, NULL, &res, msg, sizeof(msg))
            != SD_OK)
        {
            T_CHECK(0, "%s: generate: %s", key, msg);
            continue;
        }
        T_CHECK(res.n_images == 1 && res.images[0].width == init->width
                && res.images[0].height == init->height
                && res.images[0].rgb != NULL, "%s: one %dx%d image", key,
                init->width, init->height);
        if (res.n_images == 1 && res.images[0].rgb != NULL) {
            snprintf(key, sizeof(key), "%s.%s (sd_generate)", model, name);
            check_image(key, res.images[0].rgb, want, mask, init->rgb,
                        npx * 3);
        }
        sd_result_free(&res);
    }
    sd_engine_close(e);
}


int
main(void)
{
    const char  *names[] = { "large", "medium" };
    sd_backend  *be = NULL;
    sd_st       *ref;
    sd_err       err = {0};
    cJSON       *meta;
    const char  *js;
    sd_rgb8      init;
    char         path[4096];
    int          k;

    snprintf(path, sizeof(path), "%s/tiny-sd35-large/model_index.json",
             t_fixtures());
    if (access(path, R_OK) != 0) {
        T_SKIP("no fixtures at %s: img2img is not checked against diffusers",
               t_fixtures());
        return T_DONE();
    }
    if (sd_st_open(&err, REF_PATH, &ref) != SD_OK) {
        T_SKIP("%s not there yet (tests/gpu/sampler_ref.sh img2img makes "
               "it): img2img is not checked against diffusers", REF_PATH);
        return T_DONE();
    }
    js = sd_st_metadata(ref, "cases");
    meta = js ? cJSON_Parse(js) : NULL;
    T_CHECK(meta && cJSON_GetArraySize(cJSON_GetObjectItem(meta, "cases"))
            >= 4, "reference metadata");
    init.width = meta ? cJSON_GetObjectItem(meta, "width")->valueint : 0;
    init.height = meta ? cJSON_GetObjectItem(meta, "height")->valueint : 0;
    init.rgb = ref_u8(ref, "init_u8", (size_t) init.width * init.height * 3);
    if (meta == NULL || init.rgb == NULL || t_backend(&err, &be) != SD_OK) {
        T_CHECK(0, "reference or backend: %s", err.msg);
        cJSON_Delete(meta);
        sd_st_close(ref);
        return T_DONE();
    }

    for (k = 0; k < 2; k++) {
        sd_model  *m;

        snprintf(path, sizeof(path), "%s/tiny-sd35-%s", t_fixtures(),
                 names[k]);
        if (sd_model_load(&err, be, path, SD_PART_ALL, &m) != SD_OK) {
            T_CHECK(0, "load %s: %s", path, err.msg);
            continue;
        }
        check_pipeline(ref, meta, m, names[k], &init);
        sd_model_free(m);
        check_generate(ref, meta, path, names[k], &init);
    }
    cJSON_Delete(meta);
    sd_st_close(ref);
    sd_backend_destroy(be);
    return T_DONE();
}
