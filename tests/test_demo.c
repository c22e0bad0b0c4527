/*
 * test_demo.c: the embedded demo model (demo.h) is written, loads with
 * every part on the CPU backend, tokenizes any text without unknown CLIP
 * tokens, generates finite, non-constant images through the pipeline and
 * through the public API, is byte-identical for one seed, and reports an
 * unwritable folder as an error naming it.
 */

#include <ftw.h>
#include <time.h>
#include <unistd.h>

#include "t.h"
#include "demo.h"
#include "pipeline.h"
#include "safetensors.h"


/* every file the demo writes, relative to its folder */
static const char *const  files[] = {
    "model_index.json",
    "scheduler/scheduler_config.json",
    "tokenizer/vocab.json",
    "tokenizer/merges.txt",
    "tokenizer/tokenizer_config.json",
    "tokenizer_2/vocab.json",
    "tokenizer_2/merges.txt",
    "tokenizer_2/tokenizer_config.json",
    "tokenizer_3/spiece.model",
    "tokenizer_3/tokenizer_config.json",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",
    "text_encoder_2/config.json",
    "text_encoder_2/model.safetensors",
    "text_encoder_3/config.json",
    "text_encoder_3/model.safetensors",
    "transformer/config.json",
    "transformer/diffusion_pytorch_model.safetensors",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
};

#define NFILES  (sizeof(files) / sizeof(files[0]))

static const char  *odd_prompt =
    "A café in Zürich, 猫 and 🐱🚀 at night — "
    "“naïve” ﬁsh ½ Ω \t\n ÅNGSTRÖM <|endoftext|> <extra_id_3> done";


static double
now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}


static int
rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void) sb;
    (void) flag;
    (void) ftw;
    return remove(path);
}


static void
rm_rf(const char *path)
{
    nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}


/* 1 if the two files have the same bytes; *size gets a's size */
static int
same_file(const char *a, const char *b, size_t *size)
{
    sd_err   err = {0};
    char    *da = NULL, *db = NULL;
    size_t   la = 0, lb = 0;
    int      same;

    same = sd_read_file(&err, a, &da, &la) == SD_OK
           && sd_read_file(&err, b, &db, &lb) == SD_OK
           && la == lb && memcmp(da, db, la) == 0;
    free(da);
    free(db);
    if (size) {
        *size = la;
    }
    return same;
}


static size_t
check_deterministic(const char *d1, const char *d2, const char *d3)
{
    char    a[4200], b[4200];
    size_t  i, size, total = 0;
    int     differs = 0;

    for (i = 0; i < NFILES; i++) {
        snprintf(a, sizeof(a), "%s/%s", d1, files[i]);
        snprintf(b, sizeof(b), "%s/%s", d2, files[i]);
        T_CHECK(same_file(a, b, &size), "%s differs between two writes "
                "with one seed", files[i]);
        T_CHECK(size > 0, "%s is empty", files[i]);
        total += size;
        snprintf(b, sizeof(b), "%s/%s", d3, files[i]);
        if (strstr(files[i], ".safetensors") && !same_file(a, b, NULL)) {
            differs++;
        }
    }
    T_CHECK(differs == 5, "another seed changes %d of 5 weight files",
            differs);
    return total;
}


static void
check_tokenizers(const sd_model *m)
{
    sd_err   err = {0};
    int32_t  l[77], g[77], t5[64];
    int32_t  eos = sd_clip_tok_eos(m->tok_g);
    int      i, n_eos = 0, first = -1, last = -1;

    /* every listed word is one token: BOS, 5 words, EOS */
    T_CHECK(sd_clip_tok_encode(&err, m->tok_l, "a photo of a cat", l, 77)
            == SD_OK, "%s", err.msg);
    T_CHECK(l[6] == sd_clip_tok_eos(m->tok_l) && l[0] == eos - 1,
            "\"a photo of a cat\": ids %d %d %d %d %d %d %d", l[0], l[1],
            l[2], l[3], l[4], l[5], l[6]);
    T_CHECK(sd_t5_tok_encode(&err, m->tok_t5, "a photo of a cat", t5, 64)
            == SD_OK, "%s", err.msg);
    T_CHECK(t5[4] > 2 && t5[5] == 1 && t5[6] == 0, "T5 \"a photo of a "
            "cat\": ids %d %d %d %d %d %d %d", t5[0], t5[1], t5[2], t5[3],
            t5[4], t5[5], t5[6]);

    /* any UTF-8: no unknown (= EOS) token before the real EOS; tokenizer_2
       pads with "!", so EOS appears once there unless a byte was unknown */
    T_CHECK(sd_clip_tok_encode(&err, m->tok_l, odd_prompt, l, 77) == SD_OK
            && sd_clip_tok_encode(&err, m->tok_g, odd_prompt, g, 77)
               == SD_OK, "%s", err.msg);
    for (i = 1; i < 77; i++) {
        if (g[i] == eos) {
            n_eos++;
            if (first < 0) {
                first = i;
            }
            last = i;
        }
    }
    T_CHECK(n_eos == 2 && first > 10 && last < 76, "odd prompt: %d EOS ids, "
            "at %d and %d (one is the literal <|endoftext|>)", n_eos, first,
            last);
    T_CHECK(last > 0 && memcmp(l, g, (last + 1) * sizeof(int32_t)) == 0,
            "tokenizer and tokenizer_2 differ on the odd prompt");
    printf("odd prompt: %d CLIP tokens\n", last - 1);
    T_CHECK(sd_t5_tok_encode(&err, m->tok_t5, odd_prompt, t5, 64) == SD_OK,
            "%s", err.msg);
}


static void
check_image(sd_model *m, const sd_cond *c, const sd_cond *n, int w, int h)
{
    sd_pipe_args   a;
    sd_pipe_dump   d;
    sd_err         err = {0};
    uint8_t       *rgb = NULL;
    size_t         i, bad = 0, np, per;
    int            lo = 255, hi = 0, hist[256] = {0}, levels = 0;
    double         t0 = now();

    memset(&a, 0, sizeof(a));
    memset(&d, 0, sizeof(d));
    a.width = w;
    a.height = h;
    a.steps = 2;
    a.cfg = 3.0f;
    a.batch = 1;
    a.seeds[0] = 42;
    a.rng = SD_RNG_CPU;

    if (sd_pipe_txt2img(&err, m, &a, c, n, &rgb, &d) != SD_OK) {
        T_CHECK(0, "txt2img %dx%d: %s", w, h, err.msg);
        return;
    }
    per = (size_t) d.latent_c * d.latent_h * d.latent_w;
    for (i = 0; d.final_latents && i < per; i++) {
        bad += !isfinite(d.final_latents[i]);
    }
    T_CHECK(d.final_latents != NULL && bad == 0, "%dx%d: %zu non-finite "
            "latents", w, h, bad);

    np = (size_t) w * h * 3;
    for (i = 0; i < np; i++) {
        lo = rgb[i] < lo ? rgb[i] : lo;
        hi = rgb[i] > hi ? rgb[i] : hi;
        hist[rgb[i]]++;
    }
    for (i = 0; i < 256; i++) {
        levels += hist[i] > 0;
    }
    T_CHECK(hi - lo > 32 && levels > 16, "%dx%d: image nearly constant "
            "(%d..%d, %d levels)", w, h, lo, hi, levels);
    /* saturation is allowed, but not everywhere */
    T_CHECK(hist[0] + hist[255] < (int) (np / 2), "%dx%d: %d of %zu values "
            "saturated", w, h, hist[0] + hist[255], np);
    printf("txt2img %dx%d, 2 steps: %.3f s, values %d..%d\n", w, h,
           now() - t0, lo, hi);

    free(rgb);
    sd_pipe_dump_free(&d);
}


static void
check_engine(const char *dir)
{
    sd_engine_config  cfg;
    sd_engine        *e = NULL;
    sd_request        req;
    sd_result         res;
    char              msg[512];
    double            t0 = now(), t1;

    sd_engine_config_init(&cfg);
    cfg.model_dir = dir;
    if (sd_engine_open(&cfg, &e, msg, sizeof(msg)) != SD_OK) {
        T_CHECK(0, "sd_engine_open: %s", msg);
        return;
    }
    t1 = now();

    sd_request_init(&req);
    req.prompt = odd_prompt;
    req.negative_prompt = "blurry";
    req.steps = 2;
    req.seed = 7;
    memset(&res, 0, sizeof(res));
    if (sd_generate(e, &req, NULL, NULL, NULL, &res, msg, sizeof(msg))
        != SD_OK)
    {
        T_CHECK(0, "sd_generate: %s", msg);
    } else {
        T_CHECK(res.n_images == 1 && res.images[0].png_len > 8
                && memcmp(res.images[0].png, "\x89PNG\r\n\x1a\n", 8) == 0,
                "sd_generate: no PNG");
        printf("engine: load %.3f s, generate %dx%d, %d steps %.3f s, "
               "PNG %zu bytes\n", t1 - t0, req.width, req.height, req.steps,
               now() - t1, res.n_images ? res.images[0].png_len : 0);
        sd_result_free(&res);
    }
    sd_engine_close(e);
}


int
main(void)
{
    char          tmp[] = "/tmp/sd_demo_XXXXXX";
    char          d1[256], d2[256], d3[256], bad[256];
    sd_err        err = {0};
    sd_backend   *be = NULL;
    sd_model     *m = NULL;
    sd_cond       c, n;
    double        t0;
    size_t        total;
    FILE         *f;

    if (mkdtemp(tmp) == NULL) {
        T_CHECK(0, "mkdtemp failed");
        return T_DONE();
    }
    snprintf(d1, sizeof(d1), "%s/a/nested/demo", tmp);
    snprintf(d2, sizeof(d2), "%s/b/", tmp);
    snprintf(d3, sizeof(d3), "%s/c", tmp);

    t0 = now();
    T_CHECK(sd_demo_write(&err, d1, 1234) == SD_OK, "write: %s", err.msg);
    printf("sd_demo_write: %.3f s\n", now() - t0);
    T_CHECK(sd_demo_write(&err, d2, 1234) == SD_OK, "write: %s", err.msg);
    T_CHECK(sd_demo_write(&err, d3, 99) == SD_OK, "write: %s", err.msg);
    /* overwriting in place is fine too */
    T_CHECK(sd_demo_write(&err, d2, 1234) == SD_OK, "rewrite: %s", err.msg);
    total = check_deterministic(d1, d2, d3);
    printf("demo model: %zu bytes in %zu files\n", total, NFILES);
    T_CHECK(total < 8u << 20, "demo model of %zu bytes", total);

    /* a regular file where a folder should be */
    snprintf(bad, sizeof(bad), "%s/file", tmp);
    f = fopen(bad, "w");
    if (f) {
        fclose(f);
    }
    strcat(bad, "/demo");
    sd_err_clear(&err);
    T_CHECK(sd_demo_write(&err, bad, 1) == SD_ERR_IO
            && strstr(err.msg, tmp) != NULL, "unwritable folder: \"%s\"",
            err.msg);
    sd_err_clear(&err);
    T_CHECK(sd_demo_write(&err, "", 1) == SD_ERR_INVALID, "empty folder");

    sd_err_clear(&err);
    sd_backend_cpu_create(&err, 0, &be);
    t0 = now();
    if (be == NULL || sd_model_load(&err, be, d1, SD_PART_ALL, &m) != SD_OK)
    {
        T_CHECK(0, "load: %s", err.msg);
        goto done;
    }
    printf("sd_model_load: %.3f s\n", now() - t0);

    check_tokenizers(m);

    if (sd_cond_encode(&err, m, odd_prompt, &c) != SD_OK) {
        T_CHECK(0, "encode: %s", err.msg);
        goto done;
    }
    if (sd_cond_encode(&err, m, "", &n) != SD_OK) {
        T_CHECK(0, "encode: %s", err.msg);
        sd_cond_free(&c);
        goto done;
    }
    check_image(m, &c, &n, 64, 64);
    check_image(m, &c, &n, 128, 96);
    sd_cond_free(&c);
    sd_cond_free(&n);
    sd_model_free(m);
    m = NULL;

    check_engine(d1);

done:
    sd_model_free(m);
    if (be) {
        sd_backend_destroy(be);
    }
    rm_rf(tmp);
    return T_DONE();
}
