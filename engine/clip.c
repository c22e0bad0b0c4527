/*
 * clip.c: the CLIP text transformer with projection (CLIPTextModelWith-
 * Projection of transformers), as SD3.5 uses it twice: CLIP-L (quick_gelu)
 * and CLIP-G (gelu).
 *
 * Reference: transformers/models/clip/modeling_clip.py. Pre-norm layers with
 * a causal mask; "penultimate" is hidden_states[-2], the input of the last
 * layer, without the final layer norm; the pooled output is the final-norm
 * hidden state at the first EOS token (eos_token_id from the config).
 *
 * q_proj, k_proj, v_proj are one (3 d, d) weight and (3 d) bias, as the
 * MMDiT's: one product, which sd_qkv_split copies apart.
 */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "textenc.h"


/* tensor pointers only (sd_clip_free frees them as an array) */
typedef struct {
    sd_tensor  *ln1_w, *ln1_b, *ln2_w, *ln2_b;
    sd_tensor  *qkv_w, *qkv_b;      /* (3 d, d), (3 d): q, k, v rows */
    sd_tensor  *o_w, *o_b;
    sd_tensor  *fc1_w, *fc1_b, *fc2_w, *fc2_b;
} sd_clip_layer;


struct sd_clip {
    sd_backend     *be;
    int             f32;            /* be->clip_f32 on a narrower backend:
                                       F32 weights and activations, the
                                       outputs cast to the backend's */
    int             width, heads, layers, ffn, proj, max_pos, vocab;
    int             eos_id;
    float           eps;
    sd_act          act;
    sd_tensor      *tok_emb, *pos_emb, *final_w, *final_b, *proj_w;
    sd_clip_layer  *layer;
};


static sd_status
clip_weight(sd_err *err, sd_clip *c, const sd_st *st, const char *fmt,
    int idx, int ndim, int64_t d0, int64_t d1, sd_tensor **out)
{
    char     name[256];
    int64_t  shape[2] = { d0, d1 };

    snprintf(name, sizeof(name), fmt, idx);
    return sd_weight_load(err, c->be, st, name, ndim, shape, out);
}


/* q_proj, k_proj, v_proj of layer i stacked into l->qkv_w, l->qkv_b (in
   the dtype and memory sd_weight_load would give each: clip_f32 set F32
   as the backend's weight dtype while CLIP loads) */
static sd_status
clip_load_qkv(sd_err *err, sd_clip *c, const sd_st *st, int i,
    sd_clip_layer *l)
{
    static const char *const  proj[3] = { "q_proj", "k_proj", "v_proj" };
    char                      prefix[64];

    snprintf(prefix, sizeof(prefix), "text_model.encoder.layers.%d."
             "self_attn", i);
    return sd_weight_load_cat(err, c->be, st, prefix, proj, 3, c->width,
                              c->width, 1, &l->qkv_w, &l->qkv_b);
}


static sd_status
clip_load_layer(sd_err *err, sd_clip *c, const sd_st *st, int i)
{
    sd_clip_layer  *l = &c->layer[i];
    const char     *p = "text_model.encoder.layers.%d.";
    char            f[128];
    int             d = c->width;

#define W(field, suffix, nd, a, b)                                          \
    snprintf(f, sizeof(f), "%s%s", p, suffix);                              \
    SD_TRY(clip_weight(err, c, st, f, i, nd, a, b, &l->field))

    W(ln1_w, "layer_norm1.weight", 1, d, 0);
    W(ln1_b, "layer_norm1.bias", 1, d, 0);
    W(ln2_w, "layer_norm2.weight", 1, d, 0);
    W(ln2_b, "layer_norm2.bias", 1, d, 0);
    SD_TRY(clip_load_qkv(err, c, st, i, l));
    W(o_w, "self_attn.out_proj.weight", 2, d, d);
    W(o_b, "self_attn.out_proj.bias", 1, d, 0);
    W(fc1_w, "mlp.fc1.weight", 2, c->ffn, d);
    W(fc1_b, "mlp.fc1.bias", 1, c->ffn, 0);
    W(fc2_w, "mlp.fc2.weight", 2, d, c->ffn);
    W(fc2_b, "mlp.fc2.bias", 1, d, 0);

#undef W
    return SD_OK;
}


static sd_status
clip_config(sd_err *err, sd_clip *c, const char *dir)
{
    cJSON       *cfg;
    const char  *act = NULL;
    char         path[4096];
    sd_status    s;

    SD_TRY(sd_config_load(err, dir, "config.json", &cfg));
    snprintf(path, sizeof(path), "%s/config.json", dir);

    c->eps = 1e-5f;
    c->eos_id = 2;
    c->max_pos = 77;
    if ((s = sd_config_int(err, cfg, path, "hidden_size", &c->width))
        || (s = sd_config_int(err, cfg, path, "num_attention_heads",
                              &c->heads))
        || (s = sd_config_int(err, cfg, path, "num_hidden_layers",
                              &c->layers))
        || (s = sd_config_int(err, cfg, path, "intermediate_size", &c->ffn))
        || (s = sd_config_int(err, cfg, path, "projection_dim", &c->proj))
        || (s = sd_config_int(err, cfg, path, "vocab_size", &c->vocab))
        || (s = sd_config_int_opt(err, cfg, path, "max_position_embeddings",
                                  &c->max_pos))
        || (s = sd_config_int_opt(err, cfg, path, "eos_token_id",
                                  &c->eos_id))
        || (s = sd_config_float_opt(err, cfg, path, "layer_norm_eps",
                                    &c->eps))
        || (s = sd_config_str(err, cfg, path, "hidden_act", &act)))
    {
        cJSON_Delete(cfg);
        return s;
    }

    if (strcmp(act, "quick_gelu") == 0) {
        c->act = SD_ACT_QUICK_GELU;
    } else if (strcmp(act, "gelu") == 0) {
        c->act = SD_ACT_GELU;
    } else if (strcmp(act, "gelu_new") == 0 
               || strcmp(act, "gelu_pytorch_tanh") == 0)
    {
        c->act = SD_ACT_GELU_TANH;
    } else {
        s = sd_errorf(err, SD_ERR_UNSUPPORTED, "\"%s\": hidden_act \"%s\" "
                      "is not supported", path, act);
    }
    cJSON_Delete(cfg);
    if (s != SD_OK) {
        return s;
    }

    if (c->width <= 0 || c->heads <= 0 || c->width % c->heads != 0
        || c->layers < 2 || c->ffn <= 0 || c->proj <= 0 || c->vocab <= 0)
    {
        return sd_errorf(err, SD_ERR_FORMAT, "\"%s\": inconsistent sizes "
                         "(hidden %d, heads %d, layers %d)", path, c->width,
                         c->heads, c->layers);
    }
    return SD_OK;
}


static sd_status clip_load(sd_err *err, sd_backend *be, const char *dir,
    sd_clip **out);


sd_status
sd_clip_load(sd_err *err, sd_backend *be, const char *dir, sd_clip **out)
{
    sd_dtype    wd = be->weight_dtype;
    sd_dtype  (*wp)(const sd_backend *, const char *, int,
                    const int64_t *) = be->weight_policy;
    int         f32 = be->clip_f32 && be->act_dtype != SD_DT_F32;
    sd_status   s;

    if (f32) {
        be->weight_dtype = SD_DT_F32;
        be->weight_policy = NULL;
    }
    s = clip_load(err, be, dir, out);
    be->weight_dtype = wd;
    be->weight_policy = wp;
    if (s == SD_OK) {
        (*out)->f32 = f32;
    }
    return s;
}


static sd_status
clip_load(sd_err *err, sd_backend *be, const char *dir, sd_clip **out)
{
    sd_clip   *c;
    sd_st     *st = NULL;
    sd_status  s;
    int        i;

    *out = NULL;
    c = sd_calloc(err, 1, sizeof(sd_clip), "clip");
    if (c == NULL) {
        return SD_ERR_NOMEM;
    }
    c->be = be;

    SD_TRY_GOTO(s, clip_config(err, c, dir), fail);
    c->layer = sd_calloc(err, c->layers, sizeof(sd_clip_layer), "clip");
    if (c->layer == NULL) {
        s = SD_ERR_NOMEM;
        goto fail;
    }
    SD_TRY_GOTO(s, sd_st_open_dir(err, dir, &st), fail);

    /* the token table is read a few rows per prompt: host memory */
    be->load_mem = SD_MEM_HOST;
    s = clip_weight(err, c, st, "text_model.embeddings.token_embedding."
                    "weight", 0, 2, c->vocab, c->width, &c->tok_emb);
    be->load_mem = SD_MEM_WEIGHT;
    if (s != SD_OK) {
        goto fail;
    }
    SD_TRY_GOTO(s, clip_weight(err, c, st,
                "text_model.embeddings.position_embedding.weight", 0, 2,
                c->max_pos, c->width, &c->pos_emb), fail);
    SD_TRY_GOTO(s, clip_weight(err, c, st, "text_model.final_layer_norm."
                "weight", 0, 1, c->width, 0, &c->final_w), fail);
    SD_TRY_GOTO(s, clip_weight(err, c, st, "text_model.final_layer_norm."
                "bias", 0, 1, c->width, 0, &c->final_b), fail);
    /* offloaded: the layers' matrices and the projection stay in host
       memory */
    be->load_mem = (be->offload & SD_OFFLOAD_CLIP) ? SD_MEM_HOST
                                                   : SD_MEM_WEIGHT;
    s = clip_weight(err, c, st, "text_projection.weight", 0, 2, c->proj,
                    c->width, &c->proj_w);
    for (i = 0; s == SD_OK && i < c->layers; i++) {
        s = clip_load_layer(err, c, st, i);
    }
    be->load_mem = SD_MEM_WEIGHT;
    if (s != SD_OK) {
        goto fail;
    }

    sd_st_close(st);
    *out = c;
    return SD_OK;

fail:
    sd_st_close(st);
    sd_clip_free(c);
    return s;
}


void
sd_clip_free(sd_clip *c)
{
    if (c == NULL) {
        return;
    }
    if (c->layer) {
        /* sd_clip_layer holds tensor pointers only */
        sd_tensors_free((sd_tensor **) c->layer, (size_t) c->layers
                        * (sizeof(sd_clip_layer) / sizeof(sd_tensor *)));
        free(c->layer);
    }
    sd_tensor_free(c->tok_emb);
    sd_tensor_free(c->pos_emb);
    sd_tensor_free(c->final_w);
    sd_tensor_free(c->final_b);
    sd_tensor_free(c->proj_w);
    free(c);
}


int
sd_clip_width(const sd_clip *c)
{
    return c->width;
}


int
sd_clip_proj_dim(const sd_clip *c)
{
    return c->proj;
}


int
sd_clip_max_len(const sd_clip *c)
{
    return c->max_pos;
}


/*
 * x: (B, L, d) += attn(ln1(x)); x += mlp(ln2(x)). Scratch tensors given:
 * qkv (B, L, 3 d), q, k, v (B, L, d), f (B, L, ffn).
 */
static sd_status
clip_layer_forward(sd_err *err, sd_clip *c, const sd_clip_layer *l,
    sd_tensor *x, sd_tensor *h, sd_tensor *qkv, sd_tensor *q, sd_tensor *k,
    sd_tensor *v, sd_tensor *f)
{
    int  d = c->width;

    /* CLIPEncoderLayer.forward: residual + self_attn(layer_norm1(x));
       q_proj, k_proj, v_proj as one product [q | k | v], split */
    SD_TRY(sd_layer_norm(err, h, x, l->ln1_w, l->ln1_b, c->eps));
    SD_TRY(sd_linear(err, qkv, h, l->qkv_w, l->qkv_b));
    SD_TRY(sd_qkv_split(err, q, k, v, 0, qkv, NULL, NULL, c->heads, c->eps));
    SD_TRY(sd_attention(err, h, q, k, v, c->heads, 1, NULL,
                        1.0f / sqrtf((float) (d / c->heads))));
    SD_TRY(sd_linear(err, q, h, l->o_w, l->o_b));
    SD_TRY(sd_add(err, x, x, q));

    /* residual + mlp(layer_norm2(x)): fc2(act(fc1(.))) */
    SD_TRY(sd_layer_norm(err, h, x, l->ln2_w, l->ln2_b, c->eps));
    SD_TRY(sd_linear(err, f, h, l->fc1_w, l->fc1_b));
    SD_TRY(sd_act_apply(err, f, f, c->act));
    SD_TRY(sd_linear(err, h, f, l->fc2_w, l->fc2_b));
    return sd_add(err, x, x, h);
}


sd_status
sd_clip_forward(sd_err *err, sd_clip *c, const int32_t *ids, int batch,
    int len, sd_tensor **penultimate, sd_tensor **last, sd_tensor **embeds)
{
    return sd_clip_forward_skip(err, c, ids, batch, len, 1, penultimate,
                                last, embeds);
}


/* *t (F32) replaced by its copy in dtype dt */
static sd_status
clip_narrow(sd_err *err, sd_backend *be, sd_dtype dt, sd_tensor **t)
{
    static const int  perm[4] = { 0, 1, 2, 3 };
    sd_tensor        *n;
    sd_status         s;

    if (*t == NULL) {
        return SD_OK;
    }
    SD_TRY(sd_tensor_new_as(err, be, SD_MEM_ACT, dt, (*t)->ndim, (*t)->ne,
                            &n));
    s = sd_permute(err, n, *t, perm);
    sd_tensor_free(*t);
    *t = n;
    if (s != SD_OK) {
        sd_tensor_free(n);
        *t = NULL;
    }
    return s;
}


static sd_status clip_forward(sd_err *err, sd_clip *c, const int32_t *ids,
    int batch, int len, int skip, sd_tensor **penultimate, sd_tensor **last,
    sd_tensor **embeds);


sd_status
sd_clip_forward_skip(sd_err *err, sd_clip *c, const int32_t *ids, int batch,
    int len, int skip, sd_tensor **penultimate, sd_tensor **last,
    sd_tensor **embeds)
{
    sd_tensor  *t[3] = { NULL, NULL, NULL };
    sd_dtype    act = c->be->act_dtype;
    sd_status   s;
    int         i;

    if (!c->f32) {
        return clip_forward(err, c, ids, batch, len, skip, penultimate,
                            last, embeds);
    }
    if (penultimate) *penultimate = NULL;
    if (last) *last = NULL;
    if (embeds) *embeds = NULL;
    /* F32 inside (be->clip_f32), the outputs in the backend's dtype */
    c->be->act_dtype = SD_DT_F32;
    s = clip_forward(err, c, ids, batch, len, skip,
                     penultimate ? &t[0] : NULL, last ? &t[1] : NULL,
                     embeds ? &t[2] : NULL);
    c->be->act_dtype = act;
    for (i = 0; i < 3 && s == SD_OK; i++) {
        s = clip_narrow(err, c->be, act, &t[i]);
    }
    if (s != SD_OK) {
        sd_tensors_free(t, 3);
        return s;
    }
    if (penultimate) *penultimate = t[0];
    if (last) *last = t[1];
    if (embeds) *embeds = t[2];
    return SD_OK;
}


static sd_status
clip_forward(sd_err *err, sd_clip *c, const int32_t *ids, int batch,
    int len, int skip, sd_tensor **penultimate, sd_tensor **last,
    sd_tensor **embeds)
{
    sd_tensor  *x = NULL, *h = NULL, *qkv = NULL, *q = NULL, *k = NULL;
    sd_tensor  *v = NULL, *f = NULL, *pen = NULL, *fin = NULL, *pool = NULL;
    sd_tensor  *emb = NULL;
    sd_tensor   row, pos;
    sd_status   s;
    int64_t     n = (int64_t) batch * len;
    int         i, b, eos;

    if (penultimate) *penultimate = NULL;
    if (last) *last = NULL;
    if (embeds) *embeds = NULL;
    if (len > c->max_pos || len <= 0 || batch <= 0) {
        return sd_errorf(err, SD_ERR_INVALID, "clip: %d tokens, the model "
                         "takes at most %d", len, c->max_pos);
    }
    if (skip < 1 || skip > c->layers) {
        return sd_errorf(err, SD_ERR_INVALID, "CLIP_stop_at_last_layers: "
                         "must be between 1 and %d (got %d)", c->layers,
                         skip);
    }

    SD_TRY_GOTO(s, sd_tensor_new3(err, c->be, batch, len, c->width, &x), out);
    SD_TRY_GOTO(s, sd_tensor_new3(err, c->be, batch, len, c->width, &h), out);
    SD_TRY_GOTO(s, sd_tensor_new3(err, c->be, batch, len, 3 * c->width,
                                  &qkv), out);
    SD_TRY_GOTO(s, sd_tensor_new3(err, c->be, batch, len, c->width, &q), out);
    SD_TRY_GOTO(s, sd_tensor_new3(err, c->be, batch, len, c->width, &k), out);
    SD_TRY_GOTO(s, sd_tensor_new3(err, c->be, batch, len, c->width, &v), out);
    SD_TRY_GOTO(s, sd_tensor_new3(err, c->be, batch, len, c->ffn, &f), out);

    /* CLIPTextEmbeddings: token_embedding(ids) + position_embedding(0..L) */
    SD_TRY_GOTO(s, sd_embed(err, x, c->tok_emb, ids), out);
    for (b = 0; b < batch; b++) {
        int64_t  shape[2] = { len, c->width };

        SD_TRY_GOTO(s, sd_tensor_view(err, x, (int64_t) b * len * c->width,
                                      2, shape, &row), out);
        SD_TRY_GOTO(s, sd_tensor_view(err, c->pos_emb, 0, 2, shape, &pos),
                    out);
        SD_TRY_GOTO(s, sd_add(err, &row, &row, &pos), out);
    }

    for (i = 0; i < c->layers; i++) {
        if (i == c->layers - skip && penultimate) {
            /* hidden_states[-(skip + 1)]: the input of layer L - skip */
            SD_TRY_GOTO(s, sd_tensor_new3(err, c->be, batch, len, c->width,
                                          &pen), out);
            SD_TRY_GOTO(s, sd_copy2d(err, pen, 0, 0, x, 0, 0, 1, n * c->width),
                        out);
        }
        SD_TRY_GOTO(s, clip_layer_forward(err, c, &c->layer[i], x, h, qkv, q,
                                          k, v, f), out);
    }

    /* final_layer_norm */
    SD_TRY_GOTO(s, sd_layer_norm(err, x, x, c->final_w, c->final_b, c->eps),
                out);

    if (embeds) {
        /* pooled: row of the first EOS token (argmax of ids if eos is 2) */
        SD_TRY_GOTO(s, sd_tensor_new2(err, c->be, batch, c->width, &pool),
                    out);
        for (b = 0; b < batch; b++) {
            const int32_t  *r = ids + (int64_t) b * len;

            eos = 0;
            for (i = 0; i < len; i++) {
                if (c->eos_id == 2 ? r[i] > r[eos] : r[i] == c->eos_id) {
                    eos = i;
                    if (c->eos_id != 2) {
                        break;
                    }
                }
            }
            SD_TRY_GOTO(s, sd_copy2d(err, pool, (int64_t) b * c->width, 0, x,
                                     ((int64_t) b * len + eos) * c->width, 0,
                                     1, c->width), out);
        }
        /* text_projection (no bias) */
        SD_TRY_GOTO(s, sd_tensor_new2(err, c->be, batch, c->proj, &emb), out);
        SD_TRY_GOTO(s, sd_linear(err, emb, pool, c->proj_w, NULL), out);
    }

    if (last) {
        fin = x;
        x = NULL;
    }
    s = SD_OK;

out:
    sd_tensor_free(x);
    sd_tensor_free(h);
    sd_tensor_free(qkv);
    sd_tensor_free(q);
    sd_tensor_free(k);
    sd_tensor_free(v);
    sd_tensor_free(f);
    sd_tensor_free(pool);
    if (s != SD_OK) {
        sd_tensor_free(pen);
        sd_tensor_free(fin);
        sd_tensor_free(emb);
        return s;
    }
    if (penultimate) *penultimate = pen;
    if (last) *last = fin;
    if (embeds) *embeds = emb;
    return SD_OK;
}
