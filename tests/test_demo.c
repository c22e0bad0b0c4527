/*
 * test_demo.c: the embedded demo model (demo.h) is written, loads with
 * every part on the CPU backend, tokenizes any text without unknown CLIP
 * tokens, generates finite, non-constant images through the pipeline and
 * through the public API, is byte-identical for one seed (and to what it
 * always was: a hash of its files), and reports an unwritable folder as an
 * error naming it. The full-size presets have the SD3.5 sizes; a toy
 * MMDiT-X written through the same path (dual attention layers, embedding
 * tables larger than the tokenizers, the parallel generator, shards) has
 * the diffusers tensor names, the same tensors whatever the thread count
 * and the shard size, and loads and generates.
 */

#include <ftw.h>
#include <time.h>
#include <unistd.h>

#include "t.h"
#include "demo.h"
#include "pipeline.h"
#include "safetensors.h"


/*
 * FNV-1a 64 of every demo file (relative name, a NUL, its bytes) in the
 * order of files[], written with seed 1234 and 99 by the demo writer as it
 * was before the sizes became an sd_demo_config: the bytes must not move.
 */
#define DEMO_HASH_1234  0x08c2aadf3b4caae1ULL
#define DEMO_HASH_99    0x97ad01e1b5fe20a6ULL

/* the components with weights, and their base file names */
static const char *const  parts[5][2] = {
    { "text_encoder", "model" },
    { "text_encoder_2", "model" },
    { "text_encoder_3", "model" },
    { "transformer", "diffusion_pytorch_model" },
    { "vae", "diffusion_pytorch_model" },
};


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


/* FNV-1a 64 of the demo files of dir; 0 if one cannot be read */
static uint64_t
demo_hash(const char *dir)
{
    sd_err     err = {0};
    char       path[4200], *data;
    size_t     i, k, len;
    uint64_t   h = 14695981039346656037ULL;

    for (i = 0; i < NFILES; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        if (sd_read_file(&err, path, &data, &len) != SD_OK) {
            return 0;
        }
        for (k = 0; k <= strlen(files[i]); k++) {
            h = (h ^ (unsigned char) files[i][k]) * 1099511628211ULL;
        }
        for (k = 0; k < len; k++) {
            h = (h ^ (unsigned char) data[k]) * 1099511628211ULL;
        }
        free(data);
    }
    return h;
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
        double  wall = now() - t1;

        T_CHECK(res.n_images == 1 && res.images[0].png_len > 8
                && memcmp(res.images[0].png, "\x89PNG\r\n\x1a\n", 8) == 0,
                "sd_generate: no PNG");
        /* every phase ran, and the phases fit in the call's wall time */
        T_CHECK(res.time_text > 0 && res.time_setup > 0
                && res.time_steps > 0 && res.time_decode > 0
                && res.time_png > 0
                && res.time_text + res.time_setup + res.time_steps
                   + res.time_decode + res.time_png <= wall,
                "sd_generate's times: text %g, setup %g, steps %g, "
                "decode %g, PNG %g s; the call %g s", res.time_text,
                res.time_setup, res.time_steps, res.time_decode,
                res.time_png, wall);
        printf("engine: load %.3f s, generate %dx%d, %d steps %.3f s, "
               "PNG %zu bytes\n", t1 - t0, req.width, req.height, req.steps,
               wall, res.n_images ? res.images[0].png_len : 0);
        sd_result_free(&res);
    }
    sd_engine_close(e);
}

/* what Large, Large Turbo and Medium share: the text encoders and VAE */
static void
check_shared_sizes(const sd_demo_config *c)
{
    T_CHECK(c->clip_len == 77 && c->clip_vocab == 49408
            && c->clip_l.width == 768 && c->clip_l.ffn == 3072
            && c->clip_l.layers == 12 && c->clip_l.heads == 12
            && c->clip_g.width == 1280 && c->clip_g.ffn == 5120
            && c->clip_g.layers == 32 && c->clip_g.heads == 20,
            "%s: CLIP-L %d/%d/%d/%d, CLIP-G %d/%d/%d/%d, vocab %d", c->name,
            c->clip_l.width, c->clip_l.ffn, c->clip_l.layers,
            c->clip_l.heads, c->clip_g.width, c->clip_g.ffn,
            c->clip_g.layers, c->clip_g.heads, c->clip_vocab);
    /* pooled_projection_dim 2048, joint_attention_dim 4096 */
    T_CHECK(c->clip_l.width + c->clip_g.width == 2048, "%s: pooled", c->name);
    T_CHECK(c->t5_width == 4096 && c->t5_kv == 64 && c->t5_ff == 10240
            && c->t5_layers == 24 && c->t5_heads == 64
            && c->t5_buckets == 32 && c->t5_vocab == 32128,
            "%s: T5-XXL sizes", c->name);
    T_CHECK(c->latent == 16 && c->vae_ch[0] == 128 && c->vae_ch[1] == 256
            && c->vae_ch[2] == 512 && c->vae_ch[3] == 512
            && c->vae_layers == 2 && c->vae_groups == 32,
            "%s: VAE sizes", c->name);
    T_CHECK(c->dit_patch == 2 && c->dit_sample == 128 && c->dit_mlp == 4
            && c->dit_t_channels == 256 && c->dit_head_dim == 64,
            "%s: transformer patch, sample_size, mlp, head_dim", c->name);
}


static void
check_presets(void)
{
    static const char *const  large[2] = { "large", "large-turbo" };
    const sd_demo_config     *c;
    int                       i, dual_ok;

    for (i = 0; i < 2; i++) {
        c = sd_demo_config_named(large[i]);
        if (c == NULL) {
            T_CHECK(0, "no preset \"%s\"", large[i]);
            continue;
        }
        T_CHECK(strcmp(c->name, large[i]) == 0, "%s named %s", large[i],
                c->name);
        check_shared_sizes(c);
        T_CHECK(c->dit_layers == 38 && c->dit_heads == 38
                && c->dit_heads * c->dit_head_dim == 2432
                && c->dit_pos_max == 192 && c->dit_ndual == 0,
                "%s: MMDiT %d layers, %d heads, pos %d, %d dual", large[i],
                c->dit_layers, c->dit_heads, c->dit_pos_max, c->dit_ndual);
    }

    c = sd_demo_config_named("medium");
    if (c == NULL) {
        T_CHECK(0, "no preset \"medium\"");
    } else {
        check_shared_sizes(c);
        dual_ok = c->dit_ndual == 13;
        for (i = 0; dual_ok && i < 13; i++) {
            dual_ok = c->dit_dual[i] == i;
        }
        T_CHECK(c->dit_layers == 24 && c->dit_heads == 24
                && c->dit_heads * c->dit_head_dim == 1536
                && c->dit_pos_max == 384 && dual_ok,
                "medium: MMDiT-X %d layers, %d heads, pos %d, %d dual",
                c->dit_layers, c->dit_heads, c->dit_pos_max, c->dit_ndual);
    }

    c = sd_demo_config_named("demo");
    T_CHECK(c != NULL && c->dit_layers == 2 && c->dit_ndual == 0
            && c->clip_l.width == 32 && c->clip_g.width == 48
            && c->t5_width == 96 && c->shard_bytes == 0,
            "demo preset sizes");
    T_CHECK(sd_demo_config_named("xl") == NULL
            && sd_demo_config_named(NULL) == NULL, "unknown preset found");
}


/* every tensor of part in a has the same shape and bytes in b */
static void
same_tensors(const char *a, const char *b, const char *part)
{
    sd_err               err = {0};
    sd_st               *sa = NULL, *sb = NULL;
    char                 da[4200], db[4200];
    const sd_st_tensor  *ta, *tb;
    size_t               i, bad = 0;

    snprintf(da, sizeof(da), "%s/%s", a, part);
    snprintf(db, sizeof(db), "%s/%s", b, part);
    if (sd_st_open_dir(&err, da, &sa) != SD_OK
        || sd_st_open_dir(&err, db, &sb) != SD_OK)
    {
        T_CHECK(0, "%s: %s", part, err.msg);
        goto done;
    }
    for (i = 0; i < sd_st_count(sa); i++) {
        ta = sd_st_at(sa, i);
        tb = sd_st_find(sb, ta->name);
        bad += tb == NULL || tb->nbytes != ta->nbytes
               || memcmp(ta->shape, tb->shape, sizeof(ta->shape)) != 0
               || memcmp(ta->data, tb->data, ta->nbytes) != 0;
    }
    T_CHECK(sd_st_count(sa) == sd_st_count(sb) && bad == 0, "%s: %zu of "
            "%zu tensors differ with other threads and shards", part, bad,
            sd_st_count(sa));

done:
    sd_st_close(sa);
    sd_st_close(sb);
}


/* mean and std of a tensor written by the parallel generator */
static void
check_stats(const sd_st *st, const char *name, double std)
{
    sd_err               err = {0};
    const sd_st_tensor  *t = sd_st_find(st, name);
    float               *v = t ? malloc(t->numel * sizeof(float)) : NULL;
    double               s1 = 0, s2 = 0, sd;
    int64_t              i;

    if (v == NULL) {
        T_CHECK(0, "%s missing", name);
        return;
    }
    if (sd_st_read_f32(&err, t, v) == SD_OK) {
        for (i = 0; i < t->numel; i++) {
            s1 += v[i];
            s2 += (double) v[i] * v[i];
        }
    }
    s1 /= t->numel;
    sd = sqrt(s2 / t->numel - s1 * s1);
    T_CHECK(fabs(s1) < 0.01 * std && fabs(sd / std - 1) < 0.01, "%s: mean "
            "%g, std %g, not 0 and %g", name, s1, sd, std);
    free(v);
}


/* the MMDiT-X tensors of diffusers' JointTransformerBlock */
static void
check_mmditx_names(const char *dir)
{
    sd_err               err = {0};
    sd_st               *st = NULL;
    char                 path[4200];
    const sd_st_tensor  *t;
    struct stat          sb;
    int64_t              w = 64, hd = 32, sh[2];

    snprintf(path, sizeof(path), "%s/transformer/diffusion_pytorch_model"
             ".safetensors", dir);
    T_CHECK(stat(path, &sb) != 0, "a stale single file beside the shards");
    snprintf(path, sizeof(path), "%s/transformer", dir);
    if (sd_st_open_dir(&err, path, &st) != SD_OK) {
        T_CHECK(0, "%s", err.msg);
        return;
    }
    T_CHECK(strstr(sd_st_at(st, 0)->file, "-of-0000") != NULL, "not "
            "sharded: %s", sd_st_at(st, 0)->file);

#define GET(name, nd, n0, n1)                                               \
    sh[0] = (n0);                                                           \
    sh[1] = (n1);                                                           \
    T_CHECK(sd_st_get(&err, st, name, nd, sh, &t) == SD_OK, "%s", err.msg); \
    sd_err_clear(&err)

    /* blocks 0 and 1: SD35AdaLayerNormZeroX and attn2 */
    GET("transformer_blocks.0.norm1.linear.weight", 2, 9 * w, w);
    GET("transformer_blocks.1.norm1.linear.bias", 1, 9 * w, 0);
    GET("transformer_blocks.1.attn2.to_q.weight", 2, w, w);
    GET("transformer_blocks.1.attn2.to_k.bias", 1, w, 0);
    GET("transformer_blocks.1.attn2.to_v.weight", 2, w, w);
    GET("transformer_blocks.1.attn2.to_out.0.weight", 2, w, w);
    GET("transformer_blocks.1.attn2.to_out.0.bias", 1, w, 0);
    GET("transformer_blocks.1.attn2.norm_q.weight", 1, hd, 0);
    GET("transformer_blocks.1.attn2.norm_k.weight", 1, hd, 0);
    GET("transformer_blocks.1.ff_context.net.2.weight", 2, w, 4 * w);

    /* block 2, the last: plain AdaLayerNormZero, context_pre_only */
    GET("transformer_blocks.2.norm1.linear.weight", 2, 6 * w, w);
    GET("transformer_blocks.2.norm1_context.linear.weight", 2, 2 * w, w);
#undef GET
    T_CHECK(sd_st_find(st, "transformer_blocks.2.attn2.to_q.weight") == NULL
            && sd_st_find(st, "transformer_blocks.1.attn2.add_q_proj."
                          "weight") == NULL
            && sd_st_find(st, "transformer_blocks.1.attn2.norm_added_q."
                          "weight") == NULL
            && sd_st_find(st, "transformer_blocks.2.attn.to_add_out."
                          "weight") == NULL
            && sd_st_find(st, "transformer_blocks.2.ff_context.net.2."
                          "weight") == NULL, "tensors diffusers does not "
            "expect");
    sd_st_close(st);
}


/*
 * A toy MMDiT-X through the full-size path: blocks 0 and 1 of 3 dual,
 * embedding tables larger than the tokenizers and large enough for the
 * parallel generator (6000 x 48 and 3000 x 96 values), shards of 256 KiB;
 * written with 3 threads into dir (over a single-file model) and with one
 * thread and no shards into one, the same tensors.
 */
static void
check_mmditx(sd_backend *be, const char *dir, const char *one)
{
    sd_demo_config  cfg = *sd_demo_config_named("demo");
    sd_err          err = {0};
    sd_model       *m = NULL;
    sd_st          *st = NULL;
    sd_cond         c, n;
    char            path[4200];
    double          t0 = now();
    int             i;

    cfg.name = "toy-mmditx";
    cfg.dit_layers = 3;
    cfg.dit_ndual = 2;
    cfg.dit_dual[0] = 0;
    cfg.dit_dual[1] = 1;
    cfg.clip_vocab = 6000;
    cfg.t5_vocab = 3000;
    cfg.shard_bytes = 256 << 10;
    cfg.threads = 3;
    T_CHECK(sd_demo_write_config(&err, dir, &cfg, 5) == SD_OK, "toy: %s",
            err.msg);
    printf("toy MMDiT-X, sharded, 3 threads: %.3f s\n", now() - t0);
    cfg.shard_bytes = 0;
    cfg.threads = 1;
    T_CHECK(sd_demo_write_config(&err, one, &cfg, 5) == SD_OK, "toy: %s",
            err.msg);
    for (i = 0; i < 5; i++) {
        same_tensors(dir, one, parts[i][0]);
    }
    check_mmditx_names(dir);

    snprintf(path, sizeof(path), "%s/text_encoder_2", dir);
    if (sd_st_open_dir(&err, path, &st) == SD_OK) {
        check_stats(st, "text_model.embeddings.token_embedding.weight", 1.0);
        sd_st_close(st);
    }
    snprintf(path, sizeof(path), "%s/text_encoder_3", dir);
    if (sd_st_open_dir(&err, path, &st) == SD_OK) {
        check_stats(st, "shared.weight", 1.0);
        sd_st_close(st);
    }

    /* bad sizes are refused with a message */
    cfg.dit_dual[1] = 3;
    sd_err_clear(&err);
    T_CHECK(sd_demo_write_config(&err, one, &cfg, 5) == SD_ERR_INVALID
            && strstr(err.msg, "dual_attention_layers") != NULL,
            "dual layer 3 of 3: \"%s\"", err.msg);
    sd_err_clear(&err);
    T_CHECK(sd_demo_write_config(&err, one, NULL, 5) == SD_ERR_INVALID,
            "no sizes");

    sd_err_clear(&err);
    if (sd_model_load(&err, be, dir, SD_PART_ALL, &m) != SD_OK) {
        T_CHECK(0, "toy load: %s", err.msg);
        return;
    }
    if (sd_cond_encode(&err, m, "a photo of a cat", &c) != SD_OK) {
        T_CHECK(0, "toy encode: %s", err.msg);
    } else {
        if (sd_cond_encode(&err, m, "", &n) != SD_OK) {
            T_CHECK(0, "toy encode: %s", err.msg);
        } else {
            check_image(m, &c, &n, 64, 64);
            sd_cond_free(&n);
        }
        sd_cond_free(&c);
    }
    sd_model_free(m);
}


int
main(void)
{
    char          tmp[] = "/tmp/sd_demo_XXXXXX";
    char          d1[256], d2[256], d3[256], d4[256], bad[256];
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
    snprintf(d4, sizeof(d4), "%s/d", tmp);

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
    T_CHECK(demo_hash(d1) == DEMO_HASH_1234 && demo_hash(d3) == DEMO_HASH_99,
            "the demo files changed: hashes %016llx, %016llx",
            (unsigned long long) demo_hash(d1),
            (unsigned long long) demo_hash(d3));
    T_CHECK(sd_demo_write_config(&err, d4, sd_demo_config_named("demo"),
                                 1234) == SD_OK
            && demo_hash(d4) == DEMO_HASH_1234, "the demo preset: %s",
            err.msg);
    check_presets();

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

    /* over the seed-99 demo model: no stale single files stay */
    check_mmditx(be, d3, d4);

done:
    sd_model_free(m);
    if (be) {
        sd_backend_destroy(be);
    }
    rm_rf(tmp);
    return T_DONE();
}
