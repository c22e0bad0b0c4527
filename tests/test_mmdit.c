/*
 * test_mmdit.c: the SD3.5 transformer (MMDiT for Large, MMDiT-X for Medium)
 * against the golden transformer call of the public fixtures, skip-layer
 * guidance, and clean failures on bad arguments and broken configs.
 *
 * Invariant: every case also checks that the backend holds no more memory
 * after a call than before it, so a leak of per-call temporaries fails.
 */

#include <limits.h>
#include <stdint.h>
#include <unistd.h>
#include <sys/stat.h>

#include "golden.h"
#include "mmdit.h"


/* Read golden tensor key into a new host buffer of n floats (or NULL). */
static float *
t_golden(const sd_st *g, const char *key, int64_t *n)
{
    const sd_st_tensor  *t;
    sd_err               err = { 0 };
    float               *buf;

    t = sd_st_find(g, key);
    if (t == NULL) {
        return NULL;
    }
    buf = malloc((size_t) t->numel * sizeof(float));
    if (buf == NULL || sd_st_read_f32(&err, t, buf) != SD_OK) {
        free(buf);
        return NULL;
    }
    *n = t->numel;
    return buf;
}


static sd_tensor *
t_upload(sd_backend *be, const sd_st *g, const char *key)
{
    const sd_st_tensor  *t = sd_st_find(g, key);
    sd_tensor           *x = NULL;
    sd_err               err = { 0 };
    float               *buf;
    int64_t              n, shape[SD_MAX_DIMS];
    int                  i;

    if (t == NULL || t->ndim > SD_MAX_DIMS || t->ndim < 1) {
        return NULL;
    }
    for (i = 0; i < t->ndim; i++) {
        shape[i] = t->shape[i];
    }
    buf = t_golden(g, key, &n);
    if (buf == NULL
        || sd_tensor_new(&err, be, t->ndim, shape, &x) != SD_OK
        || sd_tensor_upload(&err, x, buf) != SD_OK)
    {
        sd_tensor_free(x);
        x = NULL;
    }
    free(buf);
    return x;
}


static void
t_model(sd_backend *be, const sd_st *g, const char *model)
{
    char                  dir[512], key[64];
    sd_err                err = { 0 };
    sd_mmdit             *m = NULL;
    const sd_mmdit_info  *in;
    sd_tensor            *x, *ctx, *pooled, *out = NULL;
    float                *t = NULL, *ref = NULL, *got = NULL, *got2 = NULL;
    int64_t               n = 0, nt = 0;
    size_t                before;
    sd_status             s;
    double                e;
    int                   skip[2];

    snprintf(dir, sizeof(dir), "%s/tiny-sd35-%s/transformer", t_fixtures(),
             model);
    if (access(dir, R_OK) != 0) {
        T_SKIP("%s: no fixture folder %s", model, dir);
        return;
    }

    s = sd_mmdit_load(&err, be, dir, &m);
    T_CHECK(s == SD_OK, "%s: load: %s", model, err.msg);
    if (s != SD_OK) {
        return;
    }
    in = sd_mmdit_get_info(m);
    T_CHECK(in->width == in->heads * in->head_dim && in->num_layers > 0
            && in->patch_size > 0, "%s: info", model);

    snprintf(key, sizeof(key), "%s.dit.x", model);
    x = t_upload(be, g, key);
    snprintf(key, sizeof(key), "%s.dit.context", model);
    ctx = t_upload(be, g, key);
    snprintf(key, sizeof(key), "%s.dit.pooled", model);
    pooled = t_upload(be, g, key);
    snprintf(key, sizeof(key), "%s.dit.t", model);
    t = t_golden(g, key, &nt);
    snprintf(key, sizeof(key), "%s.dit.out", model);
    ref = t_golden(g, key, &n);
    T_CHECK(x && ctx && pooled && t && ref, "%s: golden tensors", model);
    if (!(x && ctx && pooled && t && ref)) {
        goto done;
    }
    T_CHECK(nt == x->ne[0], "%s: one timestep per batch", model);

    s = sd_tensor_new4(&err, be, x->ne[0], in->out_channels, x->ne[2],
                       x->ne[3], &out);
    T_CHECK(s == SD_OK && n == sd_numel(out), "%s: output shape", model);
    if (s != SD_OK || n != sd_numel(out)) {
        goto done;
    }
    got = malloc(n * sizeof(float));
    got2 = malloc(n * sizeof(float));

    /* the golden call */
    before = be->bytes_in_use;
    s = sd_mmdit_forward(&err, m, x, t, ctx, pooled, NULL, 0, out);
    T_CHECK(s == SD_OK, "%s: forward: %s", model, err.msg);
    T_CHECK(be->bytes_in_use == before, "%s: forward leaked %zu bytes",
            model, be->bytes_in_use - before);
    if (s == SD_OK && got && got2) {
        sd_tensor_download(&err, out, got);
        e = t_rel_l2(got, ref, n);
        printf("%s: transformer rel L2 vs golden %.3g\n", model, e);
        T_CHECK(e < t_tol(1e-4, 3e-2), "%s: rel L2 %.3g", model, e);
    }

    /* attn2 of the MMDiT-X blocks in its own buffers, beside the joint
       attention (lane 1), against it after the joint attention in the
       joint buffers (SD_MMDIT_ATTN2_SERIAL=1): the same bytes */
    if (s == SD_OK && got && got2) {
        sd_mmdit  *m2 = NULL;

        setenv("SD_MMDIT_ATTN2_SERIAL", "1", 1);
        s = sd_mmdit_load(&err, be, dir, &m2);
        unsetenv("SD_MMDIT_ATTN2_SERIAL");
        if (s == SD_OK) {
            s = sd_mmdit_forward(&err, m2, x, t, ctx, pooled, NULL, 0, out);
        }
        T_CHECK(s == SD_OK, "%s: attn2 serial: %s", model, err.msg);
        if (s == SD_OK) {
            sd_tensor_download(&err, out, got2);
            T_CHECK(memcmp(got, got2, n * sizeof(float)) == 0,
                    "%s: attn2 beside the joint attention differs from "
                    "attn2 after it (rel L2 %.3g)", model,
                    t_rel_l2(got2, got, n));
        }
        sd_mmdit_free(m2);
        T_CHECK(be->bytes_in_use == before, "%s: the second model leaked "
                "%zu bytes", model, be->bytes_in_use - before);
    }

    /* skip-layer guidance: skipping a block changes the output */
    skip[0] = in->num_layers > 1 ? 1 : 0;
    s = sd_mmdit_forward(&err, m, x, t, ctx, pooled, skip, 1, out);
    T_CHECK(s == SD_OK, "%s: forward with skip: %s", model, err.msg);
    T_CHECK(be->bytes_in_use == before, "%s: skip forward leaked", model);
    if (s == SD_OK && got && got2) {
        sd_tensor_download(&err, out, got2);
        e = t_rel_l2(got2, got, n);
        T_CHECK(e > 1e-3 && e == e, "%s: skip layer %d changed the output "
                "by %.3g", model, skip[0], e);
    }

    /* the per-image cache: step 1 of a 3-step schedule equals an uncached
       call at that step's timestep */
    {
        static const float  sched[3] = { 999.0f, 321.5f, 12.25f };
        sd_mmdit_cache      *cache = NULL;
        float                t1[2] = { sched[1], sched[1] };

        s = sd_mmdit_forward(&err, m, x, t1, ctx, pooled, NULL, 0, out);
        if (s == SD_OK && got) {
            sd_tensor_download(&err, out, got);
        }
        if (s == SD_OK) {
            s = sd_mmdit_cache_new(&err, m, sched, 3, ctx, pooled, &cache);
        }
        if (s == SD_OK) {
            s = sd_mmdit_forward_cached(&err, m, x, cache, 1, out);
        }
        T_CHECK(s == SD_OK, "%s: cached forward: %s", model, err.msg);
        if (s == SD_OK && got && got2) {
            sd_tensor_download(&err, out, got2);
            e = t_rel_l2(got2, got, n);
            T_CHECK(e < t_tol(1e-6, 1e-2), "%s: cached vs uncached %.3g",
                    model, e);
        }
        sd_err_clear(&err);
        T_CHECK(cache && sd_mmdit_forward_cached(&err, m, x, cache, 3, out)
                         == SD_ERR_INVALID, "%s: step past the cache: %s",
                model, err.msg);
        sd_mmdit_cache_free(cache);
        T_CHECK(be->bytes_in_use == before, "%s: cache leaked", model);
    }

    /* a schedule longer than the cache holds at once: steps in later
       rows, and back to an earlier one, equal uncached calls (the rows
       computed again from each) */
    {
        enum { NS = 2 * SD_MMDIT_CACHE_STEPS + 5 };
        static const int  at[] = { 1, SD_MMDIT_CACHE_STEPS + 3, NS - 1, 2 };
        float             sched[NS];
        sd_mmdit_cache   *cache = NULL;
        size_t            j;
        double            worst = 0.0;

        for (j = 0; j < NS; j++) {
            sched[j] = 1000.0f - 999.0f * (float) j / (NS - 1);
        }
        s = sd_mmdit_cache_new(&err, m, sched, NS, ctx, pooled, &cache);
        for (j = 0; j < sizeof(at) / sizeof(at[0]) && s == SD_OK; j++) {
            float  tj[2] = { sched[at[j]], sched[at[j]] };

            s = sd_mmdit_forward(&err, m, x, tj, ctx, pooled, NULL, 0, out);
            if (s == SD_OK && got) {
                sd_tensor_download(&err, out, got);
                s = sd_mmdit_forward_cached(&err, m, x, cache, at[j], out);
            }
            if (s == SD_OK && got && got2) {
                sd_tensor_download(&err, out, got2);
                e = t_rel_l2(got2, got, n);
                worst = e > worst || e != e ? e : worst;
            }
        }
        T_CHECK(s == SD_OK, "%s: %d-step cache: %s", model, NS, err.msg);
        T_CHECK(worst < t_tol(1e-6, 1e-2), "%s: %d-step cache vs uncached "
                "%.3g", model, NS, worst);
        sd_mmdit_cache_free(cache);
        T_CHECK(be->bytes_in_use == before, "%s: long cache leaked", model);
    }

    /* the last (context_pre_only) block can be skipped too */
    skip[0] = in->num_layers - 1;
    s = sd_mmdit_forward(&err, m, x, t, ctx, pooled, skip, 1, out);
    T_CHECK(s == SD_OK, "%s: skip last block: %s", model, err.msg);

    /* an out-of-range skip index is an error, not a crash */
    skip[0] = 0;
    skip[1] = in->num_layers;
    sd_err_clear(&err);
    s = sd_mmdit_forward(&err, m, x, t, ctx, pooled, skip, 2, out);
    T_CHECK(s == SD_ERR_INVALID && strstr(err.msg, "skip") != NULL,
            "%s: bad skip index gave %d \"%s\"", model, (int) s, err.msg);
    skip[1] = -1;
    sd_err_clear(&err);
    s = sd_mmdit_forward(&err, m, x, t, ctx, pooled, skip, 2, out);
    T_CHECK(s == SD_ERR_INVALID, "%s: negative skip index", model);

    /* wrong shapes are refused */
    sd_err_clear(&err);
    s = sd_mmdit_forward(&err, m, x, t, pooled, pooled, NULL, 0, out);
    T_CHECK(s == SD_ERR_INVALID && err.msg[0], "%s: bad context", model);
    T_CHECK(be->bytes_in_use == before, "%s: failed calls leaked", model);

done:
    free(t);
    free(ref);
    free(got);
    free(got2);
    sd_tensor_free(x);
    sd_tensor_free(ctx);
    sd_tensor_free(pooled);
    sd_tensor_free(out);
    sd_mmdit_free(m);
}


/*
 * Write dir/config.json and link the large model's weights beside it;
 * 1: written, but there are no weights to link.
 */
static int
t_write_config(const char *dir, const char *json)
{
    char   path[600], src[600], abs[PATH_MAX];
    FILE  *f;

    snprintf(path, sizeof(path), "%s/config.json", dir);
    f = fopen(path, "w");
    if (f == NULL) {
        return -1;
    }
    fputs(json, f);
    fclose(f);

    snprintf(path, sizeof(path), "%s/diffusion_pytorch_model.safetensors",
             dir);
    snprintf(src, sizeof(src), "%s/tiny-sd35-large/transformer/"
             "diffusion_pytorch_model.safetensors", t_fixtures());
    unlink(path);
    /* the link lives in /tmp: it must name the fixture absolutely */
    if (access(src, R_OK) != 0 || realpath(src, abs) == NULL) {
        return 1;
    }
    return symlink(abs, path) == 0 ? 0 : -1;
}


#define T_CFG_HEAD                                                          \
    "{ \"_class_name\": \"SD3Transformer2DModel\", \"attention_head_dim\": " \
    "64, \"caption_projection_dim\": 128, \"in_channels\": 16, "            \
    "\"joint_attention_dim\": 128, \"num_attention_heads\": 2, "            \
    "\"out_channels\": 16, \"patch_size\": 2, "                             \
    "\"pooled_projection_dim\": 80, \"qk_norm\": \"rms_norm\", "

static void
t_configs(sd_backend *be)
{
    static const struct {
        const char  *json;
        sd_status    want;
        const char  *in_msg;
    } cases[] = {
        /* num_layers missing */
        { T_CFG_HEAD "\"pos_embed_max_size\": 32 }",
          SD_ERR_FORMAT, "num_layers" },
        /* pos_embed_max_size missing */
        { T_CFG_HEAD "\"num_layers\": 3 }",
          SD_ERR_FORMAT, "pos_embed_max_size" },
        /* a string where a number belongs */
        { T_CFG_HEAD "\"num_layers\": \"3\", \"pos_embed_max_size\": 32 }",
          SD_ERR_FORMAT, "num_layers" },
        /* dual attention layer outside the model */
        { T_CFG_HEAD "\"num_layers\": 3, \"pos_embed_max_size\": 32, "
          "\"dual_attention_layers\": [5] }",
          SD_ERR_FORMAT, "dual_attention_layers" },
        /* not JSON */
        { "{ \"num_layers\": ", SD_ERR_FORMAT, "config" },
        /* config and weights disagree: one layer more than stored */
        { T_CFG_HEAD "\"num_layers\": 4, \"pos_embed_max_size\": 32 }",
          0, "transformer_blocks" },
        /* wrong position table size */
        { T_CFG_HEAD "\"num_layers\": 3, \"pos_embed_max_size\": 16 }",
          0, "pos_embed" },
    };
    char        tmpl[] = "/tmp/test_mmdit.XXXXXX", path[600];
    char       *dir;
    sd_err      err;
    sd_mmdit   *m;
    sd_status   s;
    size_t      i, before;
    int         rc;

    dir = mkdtemp(tmpl);
    if (dir == NULL) {
        T_SKIP("mkdtemp() failed");
        return;
    }
    before = be->bytes_in_use;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        rc = t_write_config(dir, cases[i].json);
        if (rc < 0 || (rc == 1 && cases[i].want == 0)) {
            T_SKIP("config case %zu: no config or weights to test", i);
            continue;
        }
        sd_err_clear(&err);
        m = NULL;
        s = sd_mmdit_load(&err, be, dir, &m);
        T_CHECK(s != SD_OK && m == NULL && (cases[i].want == 0
                                            || s == cases[i].want)
                && strstr(err.msg, cases[i].in_msg) != NULL,
                "config case %zu: status %d \"%s\"", i, (int) s, err.msg);
        sd_mmdit_free(m);
    }
    T_CHECK(be->bytes_in_use == before, "failed loads leaked %zu bytes",
            be->bytes_in_use - before);

    snprintf(path, sizeof(path), "%s/config.json", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/diffusion_pytorch_model.safetensors",
             dir);
    unlink(path);
    rmdir(dir);
}


int
main(void)
{
    char         path[512];
    sd_err       err = { 0 };
    sd_backend  *be = NULL;
    sd_st       *g = NULL;

    if (t_backend(&err, &be) != SD_OK) {
        T_CHECK(0, "cpu backend: %s", err.msg);
        return T_DONE();
    }

    snprintf(path, sizeof(path), "%s/golden-public.safetensors",
             t_fixtures());
    if (access(path, R_OK) != 0) {
        T_SKIP("no fixtures at %s", t_fixtures());
    } else if (sd_st_open(&err, path, &g) != SD_OK) {
        T_CHECK(0, "goldens: %s", err.msg);
    } else {
        t_model(be, g, "large");
        t_model(be, g, "medium");
        sd_st_close(g);
    }

    t_configs(be);

    sd_backend_destroy(be);
    return T_DONE();
}
