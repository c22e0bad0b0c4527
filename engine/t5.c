/*
 * t5.c: the T5 encoder (T5EncoderModel of transformers) used as SD3.5's
 * third text encoder.
 *
 * Reference: transformers/models/t5/modeling_t5.py. Pre-norm layers with
 * T5LayerNorm (RMS, no mean, no bias); attention without 1/sqrt(d) scaling
 * and with a relative position bias computed once from the first block's
 * relative_attention_bias and shared by every layer; gated-gelu (gelu_new)
 * feed-forward; final RMS norm. The bias buckets are computed on the host in
 * float32 exactly as the reference does, since a bucket boundary decided by
 * one rounding would change the output.
 *
 * Products are fused as the MMDiT's: q, k, v are one (3 inner, d_model)
 * weight whose product sd_qkv_split copies apart, and the gated
 * feed-forward's wi_0, wi_1 one (2 d_ff, d_model) weight whose product
 * sd_gated_act turns into act(wi_0 x) * wi_1 x in one pass.
 */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "textenc.h"


/* tensor pointers only (sd_t5_free frees them as an array) */
typedef struct {
    sd_tensor  *ln1;
    sd_tensor  *qkv;                /* (3 inner, d_model): q, k, v rows */
    sd_tensor  *o, *ln2;
    sd_tensor  *wi;                 /* (2 d_ff, d_model): wi_0 then wi_1
                                       rows; not gated: wi (d_ff, d_model) */
    sd_tensor  *wo;
} sd_t5_layer;


struct sd_t5 {
    sd_backend     *be;
    int             d_model, d_kv, heads, ffn, layers, vocab;
    int             buckets, max_distance;
    int             gated;
    sd_act          act;
    float           eps;
    float          *rel_bias;       /* host (buckets, heads) */
    sd_tensor      *bias;           /* (H, L, L) for bias_len, kept */
    int             bias_len;
    sd_tensor      *embed, *final_ln;
    sd_t5_layer    *layer;
};


static sd_status
t5_config(sd_err *err, sd_t5 *t, const char *dir)
{
    cJSON       *cfg;
    const char  *ff = NULL;
    char         path[4096];
    sd_status    s;

    SD_TRY(sd_config_load(err, dir, "config.json", &cfg));
    snprintf(path, sizeof(path), "%s/config.json", dir);

    t->eps = 1e-6f;
    t->buckets = 32;
    t->max_distance = 128;
    if ((s = sd_config_int(err, cfg, path, "d_model", &t->d_model))
        || (s = sd_config_int(err, cfg, path, "d_kv", &t->d_kv))
        || (s = sd_config_int(err, cfg, path, "num_heads", &t->heads))
        || (s = sd_config_int(err, cfg, path, "d_ff", &t->ffn))
        || (s = sd_config_int(err, cfg, path, "num_layers", &t->layers))
        || (s = sd_config_int(err, cfg, path, "vocab_size", &t->vocab))
        || (s = sd_config_int_opt(err, cfg, path,
                                  "relative_attention_num_buckets",
                                  &t->buckets))
        || (s = sd_config_int_opt(err, cfg, path,
                                  "relative_attention_max_distance",
                                  &t->max_distance))
        || (s = sd_config_float_opt(err, cfg, path, "layer_norm_epsilon",
                                    &t->eps))
        || (s = sd_config_str(err, cfg, path, "feed_forward_proj", &ff)))
    {
        cJSON_Delete(cfg);
        return s;
    }

    /* "gated-gelu" (T5 v1.1, SD3); T5 maps "gelu" to gelu_new */
    t->gated = strncmp(ff, "gated-", 6) == 0;
    if (strcmp(ff + (t->gated ? 6 : 0), "gelu") == 0) {
        t->act = SD_ACT_GELU_TANH;
    } else {
        s = sd_errorf(err, SD_ERR_UNSUPPORTED, "\"%s\": feed_forward_proj "
                      "\"%s\" is not supported", path, ff);
    }
    cJSON_Delete(cfg);
    if (s != SD_OK) {
        return s;
    }

    if (t->d_model <= 0 || t->d_kv <= 0 || t->heads <= 0 || t->ffn <= 0
        || t->layers <= 0 || t->buckets < 2 || t->max_distance <= 0)
    {
        return sd_errorf(err, SD_ERR_FORMAT, "\"%s\": inconsistent sizes",
                         path);
    }
    return SD_OK;
}


/* encoder.block.<i>.layer.<part[j]>.weight stacked into one weight *out */
static sd_status
t5_load_cat(sd_err *err, sd_t5 *t, const sd_st *st, int i,
    const char *const *part, int n, int64_t rows, sd_tensor **out)
{
    char        prefix[64];
    sd_tensor  *none;               /* no biases: stays NULL */

    snprintf(prefix, sizeof(prefix), "encoder.block.%d.layer", i);
    return sd_weight_load_cat(err, t->be, st, prefix, part, n, rows,
                              t->d_model, 0, out, &none);
}


static sd_status
t5_load_layer(sd_err *err, sd_t5 *t, const sd_st *st, int i)
{
    static const char *const  qkv[3] = {
        "0.SelfAttention.q", "0.SelfAttention.k", "0.SelfAttention.v"
    };
    static const char *const  wi[2] = {
        "1.DenseReluDense.wi_0", "1.DenseReluDense.wi_1"
    };
    sd_t5_layer  *l = &t->layer[i];
    char          name[256];
    int64_t       inner = (int64_t) t->heads * t->d_kv;

#define W(field, suffix, nd, a, b)                                          \
    do {                                                                    \
        int64_t shape_[2] = { a, b };                                       \
        snprintf(name, sizeof(name), "encoder.block.%d.layer.%s", i,        \
                 suffix);                                                   \
        SD_TRY(sd_weight_load(err, t->be, st, name, nd, shape_,             \
                              &l->field));                                  \
    } while (0)

    W(ln1, "0.layer_norm.weight", 1, t->d_model, 0);
    SD_TRY(t5_load_cat(err, t, st, i, qkv, 3, inner, &l->qkv));
    W(o, "0.SelfAttention.o.weight", 2, t->d_model, inner);
    W(ln2, "1.layer_norm.weight", 1, t->d_model, 0);
    if (t->gated) {
        SD_TRY(t5_load_cat(err, t, st, i, wi, 2, t->ffn, &l->wi));
    } else {
        W(wi, "1.DenseReluDense.wi.weight", 2, t->ffn, t->d_model);
    }
    W(wo, "1.DenseReluDense.wo.weight", 2, t->d_model, t->ffn);

#undef W
    return SD_OK;
}


static sd_status
t5_load_bias(sd_err *err, sd_t5 *t, const sd_st *st)
{
    const sd_st_tensor  *rb;
    int64_t              shape[2] = { t->buckets, t->heads };

    SD_TRY(sd_st_get(err, st, "encoder.block.0.layer.0.SelfAttention."
                     "relative_attention_bias.weight", 2, shape, &rb));
    t->rel_bias = sd_malloc(err, (size_t) rb->numel * sizeof(float),
                            "t5 relative bias");
    if (t->rel_bias == NULL) {
        return SD_ERR_NOMEM;
    }
    return sd_st_read_f32(err, rb, t->rel_bias);
}


sd_status
sd_t5_load(sd_err *err, sd_backend *be, const char *dir, sd_t5 **out)
{
    sd_t5               *t;
    sd_st               *st = NULL;
    sd_status            s;
    const char          *emb;
    int64_t              shape[2];
    int                  i;

    *out = NULL;
    t = sd_calloc(err, 1, sizeof(sd_t5), "t5");
    if (t == NULL) {
        return SD_ERR_NOMEM;
    }
    t->be = be;

    SD_TRY_GOTO(s, t5_config(err, t, dir), fail);
    t->layer = sd_calloc(err, t->layers, sizeof(sd_t5_layer), "t5");
    if (t->layer == NULL) {
        s = SD_ERR_NOMEM;
        goto fail;
    }
    SD_TRY_GOTO(s, sd_st_open_dir(err, dir, &st), fail);

    /* the tied embedding is "shared.weight"; some exports keep only the
       encoder's copy */
    emb = sd_st_find(st, "shared.weight") ? "shared.weight"
                                          : "encoder.embed_tokens.weight";
    shape[0] = t->vocab;
    shape[1] = t->d_model;
    /* the embedding table is read a few rows per prompt: host memory */
    be->load_mem = SD_MEM_HOST;
    s = sd_weight_load(err, be, st, emb, 2, shape, &t->embed);
    be->load_mem = SD_MEM_WEIGHT;
    if (s != SD_OK) {
        goto fail;
    }
    shape[0] = t->d_model;
    SD_TRY_GOTO(s, sd_weight_load(err, be, st, "encoder.final_layer_norm."
                                  "weight", 1, shape, &t->final_ln), fail);
    SD_TRY_GOTO(s, t5_load_bias(err, t, st), fail);
    /* offloaded: the layers' matrices stay in host memory */
    be->load_mem = (be->offload & SD_OFFLOAD_T5) ? SD_MEM_HOST
                                                 : SD_MEM_WEIGHT;
    for (i = 0; i < t->layers; i++) {
        s = t5_load_layer(err, t, st, i);
        if (s != SD_OK) {
            be->load_mem = SD_MEM_WEIGHT;
            goto fail;
        }
    }
    be->load_mem = SD_MEM_WEIGHT;

    sd_st_close(st);
    *out = t;
    return SD_OK;

fail:
    sd_st_close(st);
    sd_t5_free(t);
    return s;
}


void
sd_t5_free(sd_t5 *t)
{
    if (t == NULL) {
        return;
    }
    if (t->layer) {
        /* sd_t5_layer holds tensor pointers only */
        sd_tensors_free((sd_tensor **) t->layer, (size_t) t->layers
                        * (sizeof(sd_t5_layer) / sizeof(sd_tensor *)));
        free(t->layer);
    }
    sd_tensor_free(t->embed);
    sd_tensor_free(t->final_ln);
    sd_tensor_free(t->bias);
    free(t->rel_bias);
    free(t);
}


int
sd_t5_width(const sd_t5 *t)
{
    return t->d_model;
}


/*
 * T5Attention._relative_position_bucket, bidirectional: half the buckets
 * for each direction, exact up to max_exact, logarithmic beyond. The log
 * is evaluated in float32 as torch does.
 */
static int
t5_bucket(int rel, int buckets, int max_distance)
{
    int    half = buckets / 2, max_exact = half / 2, ret = 0, large;
    float  f;

    if (rel > 0) {
        ret = half;
    }
    rel = rel < 0 ? -rel : rel;
    if (rel < max_exact) {
        return ret + rel;
    }
    f = logf((float) rel / (float) max_exact)
        / (float) log((double) max_distance / max_exact)
        * (float) (half - max_exact);
    large = max_exact + (int) f;
    if (large > half - 1) {
        large = half - 1;
    }
    return ret + large;
}


/*
 * bias: (H, L, L), bias[h][i][j] = rel_bias[bucket(j - i)][h]. It depends
 * only on the length, so it is computed once and kept with the weights
 * (the host loop and upload cost more than the whole encoder on a GPU).
 */
static sd_status
t5_position_bias(sd_err *err, sd_t5 *t, int len, sd_tensor **out)
{
    float      *host;
    sd_status   s;
    int         h, i, j, bk;
    int64_t     shape[3] = { t->heads, len, len };

    if (t->bias && t->bias_len == len) {
        *out = t->bias;
        return SD_OK;
    }
    sd_tensor_free(t->bias);
    t->bias = NULL;
    SD_TRY(sd_tensor_new_as(err, t->be, SD_MEM_WEIGHT, t->be->act_dtype, 3,
                            shape, out));
    host = sd_malloc(err, (size_t) t->heads * len * len * sizeof(float),
                     "t5 position bias");
    if (host == NULL) {
        sd_tensor_free(*out);
        *out = NULL;
        return SD_ERR_NOMEM;
    }
    for (i = 0; i < len; i++) {
        for (j = 0; j < len; j++) {
            bk = t5_bucket(j - i, t->buckets, t->max_distance);
            for (h = 0; h < t->heads; h++) {
                host[((size_t) h * len + i) * len + j] =
                    t->rel_bias[bk * t->heads + h];
            }
        }
    }
    s = sd_tensor_upload(err, *out, host);
    free(host);
    if (s != SD_OK) {
        sd_tensor_free(*out);
        *out = NULL;
        return s;
    }
    t->bias = *out;
    t->bias_len = len;
    return SD_OK;
}


sd_status
sd_t5_forward(sd_err *err, sd_t5 *t, const int32_t *ids, int batch, int len,
    sd_tensor **hidden)
{
    sd_tensor  *x = NULL, *h = NULL, *qkv = NULL, *q = NULL, *k = NULL;
    sd_tensor  *v = NULL, *a = NULL, *f = NULL, *g = NULL, *bias = NULL;
    sd_status   s;
    int64_t     inner = (int64_t) t->heads * t->d_kv;
    int         i;

    *hidden = NULL;
    if (batch <= 0 || len <= 0) {
        return sd_errorf(err, SD_ERR_INVALID, "t5: empty input");
    }

    SD_TRY_GOTO(s, sd_tensor_new3(err, t->be, batch, len, t->d_model, &x),
                out);
    SD_TRY_GOTO(s, sd_tensor_new3(err, t->be, batch, len, t->d_model, &h),
                out);
    SD_TRY_GOTO(s, sd_tensor_new3(err, t->be, batch, len, 3 * inner, &qkv),
                out);
    SD_TRY_GOTO(s, sd_tensor_new3(err, t->be, batch, len, inner, &q), out);
    SD_TRY_GOTO(s, sd_tensor_new3(err, t->be, batch, len, inner, &k), out);
    SD_TRY_GOTO(s, sd_tensor_new3(err, t->be, batch, len, inner, &v), out);
    SD_TRY_GOTO(s, sd_tensor_new3(err, t->be, batch, len, inner, &a), out);
    /* f: wi's product, (B, L, 2 d_ff) gated ([wi_0 | wi_1]); g: the gated
       activation, (B, L, d_ff) */
    SD_TRY_GOTO(s, sd_tensor_new3(err, t->be, batch, len,
                                  (t->gated ? 2 : 1) * (int64_t) t->ffn, &f),
                out);
    if (t->gated) {
        SD_TRY_GOTO(s, sd_tensor_new3(err, t->be, batch, len, t->ffn, &g),
                    out);
    }
    SD_TRY_GOTO(s, t5_position_bias(err, t, len, &bias), out);

    /* embed_tokens(ids); dropout is identity */
    SD_TRY_GOTO(s, sd_embed(err, x, t->embed, ids), out);

    for (i = 0; i < t->layers; i++) {
        const sd_t5_layer  *l = &t->layer[i];

        /* T5LayerSelfAttention: x + o(attn(q, k, v of rms(x)) + bias);
           qkv: (B, L, 3 inner) = [q | k | v], split into q, k, v */
        SD_TRY_GOTO(s, sd_rms_norm(err, h, x, l->ln1, t->eps), out);
        SD_TRY_GOTO(s, sd_linear(err, qkv, h, l->qkv, NULL), out);
        SD_TRY_GOTO(s, sd_qkv_split(err, q, k, v, 0, qkv, NULL, NULL,
                                    t->heads, t->eps), out);
        SD_TRY_GOTO(s, sd_attention(err, a, q, k, v, t->heads, 0, bias, 1.0f),
                    out);
        SD_TRY_GOTO(s, sd_linear(err, h, a, l->o, NULL), out);
        SD_TRY_GOTO(s, sd_add(err, x, x, h), out);

        /* T5LayerFF: x + wo(act(wi_0(rms(x))) * wi_1(rms(x))), gated;
           x + wo(act(wi(rms(x)))) not */
        SD_TRY_GOTO(s, sd_rms_norm(err, h, x, l->ln2, t->eps), out);
        SD_TRY_GOTO(s, sd_linear(err, f, h, l->wi, NULL), out);
        if (t->gated) {
            SD_TRY_GOTO(s, sd_gated_act(err, g, f, t->act), out);
            SD_TRY_GOTO(s, sd_linear(err, h, g, l->wo, NULL), out);
        } else {
            SD_TRY_GOTO(s, sd_act_apply(err, f, f, t->act), out);
            SD_TRY_GOTO(s, sd_linear(err, h, f, l->wo, NULL), out);
        }
        SD_TRY_GOTO(s, sd_add(err, x, x, h), out);
    }

    /* final_layer_norm */
    SD_TRY_GOTO(s, sd_rms_norm(err, x, x, t->final_ln, t->eps), out);
    *hidden = x;
    x = NULL;
    s = SD_OK;

out:
    sd_tensor_free(x);
    sd_tensor_free(h);
    sd_tensor_free(qkv);
    sd_tensor_free(q);
    sd_tensor_free(k);
    sd_tensor_free(v);
    sd_tensor_free(a);
    sd_tensor_free(f);
    sd_tensor_free(g);
    return s;
}
