/*
 * mmdit.c: the SD3.5 diffusion transformer, diffusers'
 * SD3Transformer2DModel (models/transformers/transformer_sd3.py), for
 * SD3.5 Large (MMDiT) and SD3.5 Medium (MMDiT-X: the blocks listed in
 * dual_attention_layers add a second, image-only attention "attn2").
 *
 * The code follows the reference module by module, in the same order:
 * PatchEmbed (+ cropped stored position table), CombinedTimestepTextProj-
 * Embeddings, context_embedder, JointTransformerBlock x num_layers (the last
 * one context_pre_only), AdaLayerNormContinuous norm_out, proj_out,
 * unpatchify. Weight names are diffusers' checkpoint names as they are.
 *
 * Invariant: every size comes from config.json or from a checkpoint tensor
 * shape, and all tensor math goes through backend.h ops (the host computes
 * only the B x 256 sinusoidal timestep table). The forward pass allocates
 * nothing quadratic in the token count; per-block temporaries are freed
 * before the next block, so peak memory is the weights plus a few
 * (B, L, width) activations and one (B, L, 4 width) feed-forward hidden.
 */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "mmdit.h"
#include "precision.h"


#define SD_MMDIT_EPS        1e-6f       /* every LayerNorm and RMSNorm */
#define SD_MMDIT_MAX_PERIOD 10000.0     /* Timesteps: max_period */
#define SD_MMDIT_NAME_LEN   160


typedef struct {
    sd_tensor      *w;                  /* (out, in) */
    sd_tensor      *b;                  /* (out) */
} sd_mmdit_linear;


/*
 * One stream of an Attention module: q, k, v projections stacked into one
 * (3 W, W) product, output projection and QK RMSNorms.
 */
typedef struct {
    sd_mmdit_linear qkv;                /* to_q/to_k/to_v or add_*_proj */
    sd_mmdit_linear out;                /* to_out.0 or to_add_out; may be
                                           empty (context_pre_only) */
    sd_tensor      *norm[2];            /* norm_q, norm_k: (head_dim) */
    float           qk8[2];             /* with the FP8 attention: the fixed
                                           E4M3 scales of q and k of the
                                           sequence it writes into (both
                                           streams of the joint one) */
} sd_mmdit_attn;


typedef struct {
    sd_mmdit_linear proj;               /* net.0.proj: (ff, width) */
    sd_mmdit_linear down;               /* net.2: (width, ff) */
} sd_mmdit_ff;


typedef struct {
    int             dual;               /* SD35AdaLayerNormZeroX + attn2 */
    int             pre_only;           /* context_pre_only (last block) */
    sd_mmdit_linear norm1;              /* (6 or 9 width, width) */
    sd_mmdit_linear norm1_context;      /* (6 or 2 width, width) */
    sd_mmdit_attn   attn_x;             /* attn, image stream */
    sd_mmdit_attn   attn_c;             /* attn, context stream */
    sd_mmdit_attn   attn2;              /* dual only */
    sd_mmdit_ff     ff;
    sd_mmdit_ff     ff_context;         /* not pre_only */
} sd_mmdit_block;


struct sd_mmdit {
    sd_backend     *be;
    sd_mmdit_info   info;
    int             t_channels;         /* Timesteps num_channels (256) */

    sd_tensor      *pos_embed;          /* (1, pos_max^2, width) */
    sd_mmdit_linear patch;              /* pos_embed.proj, conv weight
                                           (width, in, p, p) */
    sd_mmdit_linear t_lin1, t_lin2;     /* timestep_embedder */
    sd_mmdit_linear p_lin1, p_lin2;     /* text_embedder */
    sd_mmdit_linear context_embedder;   /* (width, joint_dim) */
    sd_mmdit_block *blocks;
    sd_mmdit_linear norm_out;           /* (2 width, width) */
    sd_mmdit_linear proj_out;           /* (p * p * out, width) */

    int            *dual;               /* num_layers flags from config */
    int             qk_norm;            /* qk_norm == "rms_norm" */
    int             attn8;              /* attention in FP8 (the policy's
                                           "attn" kind, sd_attention_fp8) */
    int             block_join;         /* SD_MMDIT_BLOCK_JOIN=1 (a
                                           measurement knob): the lanes
                                           join at every block's end */
    int             o_bf16;             /* SD_MMDIT_O_BF16=1: the FP8
                                           attention writes BF16 and
                                           the out projections quantize
                                           it (A/B; else E4M3 rows) */
    int             attn2_serial;       /* SD_MMDIT_ATTN2_SERIAL=1 (A/B):
                                           attn2 after the joint attention
                                           on lane 0, in the joint
                                           buffers (else on lane 1 beside
                                           it, in its own, where it can:
                                           sd_mmdit_attn2_beside) */

    sd_tensor_list  owned;              /* every weight, for sd_mmdit_free */
    void           *rec;                /* a recorded cached step
                                           (sd_backend_replay) */
    void           *rec_fb[3];          /* with step caching: the first
                                           block, the others, the reuse */
    void           *rec_mods;           /* the per-image modulations'
                                           products (sd_mmdit_cache_fill) */
};


/* config.json */

#define SD_MMDIT_MAX_DIM  (1 << 20)


static sd_status
sd_mmdit_parse_config(sd_err *err, sd_mmdit *m, const cJSON *cfg,
    const char *path)
{
    sd_mmdit_info  *in = &m->info;
    const char     *qk_norm = NULL;
    int            *list, caption, i, n;
    sd_status       s;

    if ((s = sd_config_int_in(err, cfg, path, "in_channels", 1,
                              SD_MMDIT_MAX_DIM, &in->in_channels)))
    {
        return s;
    }
    in->out_channels = in->in_channels;     /* diffusers: None -> in */
    if ((s = sd_config_int_in_opt(err, cfg, path, "out_channels", 1,
                                  SD_MMDIT_MAX_DIM, &in->out_channels))
        || (s = sd_config_int_in(err, cfg, path, "patch_size", 1,
                                 SD_MMDIT_MAX_DIM, &in->patch_size))
        || (s = sd_config_int_in(err, cfg, path, "num_layers", 1,
                                 SD_MMDIT_MAX_DIM, &in->num_layers))
        || (s = sd_config_int_in(err, cfg, path, "num_attention_heads", 1,
                                 SD_MMDIT_MAX_DIM, &in->heads))
        || (s = sd_config_int_in(err, cfg, path, "attention_head_dim", 1,
                                 SD_MMDIT_MAX_DIM, &in->head_dim))
        || (s = sd_config_int_in(err, cfg, path, "joint_attention_dim", 1,
                                 SD_MMDIT_MAX_DIM, &in->joint_dim))
        || (s = sd_config_int_in(err, cfg, path, "caption_projection_dim", 1,
                                 SD_MMDIT_MAX_DIM, &caption))
        || (s = sd_config_int_in(err, cfg, path, "pooled_projection_dim", 1,
                                 SD_MMDIT_MAX_DIM, &in->pooled_dim))
        || (s = sd_config_int_in(err, cfg, path, "pos_embed_max_size", 1,
                                 SD_MMDIT_MAX_DIM, &in->pos_max))
        || (s = sd_config_str_opt(err, cfg, path, "qk_norm", &qk_norm)))
    {
        return s;
    }

    if ((int64_t) in->heads * in->head_dim > SD_MMDIT_MAX_DIM) {
        return sd_errorf(err, SD_ERR_FORMAT, "transformer config \"%s\": "
                         "%d heads of %d is too wide", path, in->heads,
                         in->head_dim);
    }
    in->width = in->heads * in->head_dim;   /* inner_dim */
    if (caption != in->width) {
        return sd_errorf(err, SD_ERR_UNSUPPORTED, "transformer config "
                         "\"%s\": caption_projection_dim %d differs from "
                         "the width %d", path, caption, in->width);
    }

    /* qk_norm: None (SD3.0) or "rms_norm" (SD3.5) */
    if (qk_norm != NULL) {
        if (strcmp(qk_norm, "rms_norm") != 0) {
            return sd_errorf(err, SD_ERR_UNSUPPORTED, "transformer config "
                             "\"%s\": qk_norm other than \"rms_norm\"",
                             path);
        }
        m->qk_norm = 1;
    }

    /* dual_attention_layers: indices of the MMDiT-X blocks, as flags */
    m->dual = sd_calloc(err, in->num_layers, sizeof(int), "dual layers");
    list = sd_calloc(err, in->num_layers, sizeof(int), "dual layers");
    if (m->dual == NULL || list == NULL) {
        free(list);
        return SD_ERR_NOMEM;
    }
    s = sd_config_int_array(err, cfg, path, "dual_attention_layers", 0,
                            in->num_layers - 1, list, in->num_layers, &n);
    for (i = 0; s == SD_OK && i < n; i++) {
        m->dual[list[i]] = 1;
    }
    free(list);
    return s;
}


static sd_status
sd_mmdit_read_config(sd_err *err, sd_mmdit *m, const char *dir)
{
    char       path[4096];
    cJSON     *cfg;
    sd_status  s;

    SD_TRY(sd_path_join(err, path, sizeof(path), dir, "config.json"));
    SD_TRY(sd_config_load(err, dir, "config.json", &cfg));
    s = sd_mmdit_parse_config(err, m, cfg, path);
    cJSON_Delete(cfg);
    return s;
}


/* Weights */

/* Load name with exactly this shape (ndim 0: as stored); m owns it. */
static sd_status
sd_mmdit_weight(sd_err *err, sd_mmdit *m, const sd_st *st, const char *name,
    int ndim, const int64_t *shape, sd_tensor **out)
{
    SD_TRY(sd_weight_load(err, m->be, st, name, ndim, shape, out));
    return sd_tensor_list_add(err, &m->owned, *out);
}


/*
 * prefix.weight (out, in) and prefix.bias (out); out <= 0: take the stored
 * row count (the feed-forward width).
 */
static sd_status
sd_mmdit_linear_load(sd_err *err, sd_mmdit *m, const sd_st *st,
    const char *prefix, int64_t out, int64_t in, sd_mmdit_linear *lin)
{
    char                 name[SD_MMDIT_NAME_LEN];
    const sd_st_tensor  *t;
    int64_t              shape[2];

    if (snprintf(name, sizeof(name), "%s.weight", prefix)
        >= (int) sizeof(name))
    {
        return sd_errorf(err, SD_ERR_INTERNAL, "name \"%s\" too long",
                         prefix);
    }
    if (out <= 0) {
        t = sd_st_find(st, name);
        if (t == NULL || t->ndim != 2) {
            return sd_errorf(err, SD_ERR_FORMAT, "transformer: tensor \"%s\" "
                             "missing or not a matrix", name);
        }
        out = t->shape[0];
    }
    shape[0] = out;
    shape[1] = in;
    SD_TRY(sd_mmdit_weight(err, m, st, name, 2, shape, &lin->w));

    snprintf(name, sizeof(name), "%s.bias", prefix);
    return sd_mmdit_weight(err, m, st, name, 1, shape, &lin->b);
}


/*
 * One stream of attention: prefix "transformer_blocks.i.attn"; names[]:
 * q, k, v, out projections and q, k norms (out NULL: none).
 */
static sd_status
sd_mmdit_attn_load(sd_err *err, sd_mmdit *m, const sd_st *st,
    const char *prefix, const char *const names[6], sd_mmdit_attn *a)
{
    char         name[SD_MMDIT_NAME_LEN];
    int64_t      w = m->info.width, d = m->info.head_dim;
    int          j;

    /* to_q, to_k, to_v as one (3 W, W) weight and (3 W) bias */
    SD_TRY(sd_weight_load_cat(err, m->be, st, prefix, names, 3, w, w, 1,
                              &a->qkv.w, &a->qkv.b));
    SD_TRY(sd_tensor_list_add(err, &m->owned, a->qkv.w));
    SD_TRY(sd_tensor_list_add(err, &m->owned, a->qkv.b));

    if (names[3] != NULL) {
        snprintf(name, sizeof(name), "%s.%s", prefix, names[3]);
        SD_TRY(sd_mmdit_linear_load(err, m, st, name, w, w, &a->out));
    }
    for (j = 0; j < 2 && m->qk_norm; j++) {
        snprintf(name, sizeof(name), "%s.%s.weight", prefix, names[4 + j]);
        SD_TRY(sd_mmdit_weight(err, m, st, name, 1, &d, &a->norm[j]));
    }
    return SD_OK;
}


/* JointTransformerBlock.__init__ (attention.py) */
static sd_status
sd_mmdit_block_load(sd_err *err, sd_mmdit *m, const sd_st *st, int i)
{
    static const char *const  x_names[6] = {
        "to_q", "to_k", "to_v", "to_out.0", "norm_q", "norm_k"
    };
    static const char *const  c_names[6] = {
        "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out",
        "norm_added_q", "norm_added_k"
    };
    static const char *const  c_pre_names[6] = {
        "add_q_proj", "add_k_proj", "add_v_proj", NULL,
        "norm_added_q", "norm_added_k"
    };
    sd_mmdit_block  *b = &m->blocks[i];
    char             p[40], name[SD_MMDIT_NAME_LEN];
    int64_t          w = m->info.width;

    b->dual = m->dual[i];
    b->pre_only = (i == m->info.num_layers - 1);
    snprintf(p, sizeof(p), "transformer_blocks.%d", i);

    snprintf(name, sizeof(name), "%s.norm1.linear", p);
    SD_TRY(sd_mmdit_linear_load(err, m, st, name, (b->dual ? 9 : 6) * w, w,
                                &b->norm1));
    snprintf(name, sizeof(name), "%s.norm1_context.linear", p);
    SD_TRY(sd_mmdit_linear_load(err, m, st, name, (b->pre_only ? 2 : 6) * w,
                                w, &b->norm1_context));

    snprintf(name, sizeof(name), "%s.attn", p);
    SD_TRY(sd_mmdit_attn_load(err, m, st, name, x_names, &b->attn_x));
    SD_TRY(sd_mmdit_attn_load(err, m, st, name,
                              b->pre_only ? c_pre_names : c_names,
                              &b->attn_c));
    if (b->dual) {
        snprintf(name, sizeof(name), "%s.attn2", p);
        SD_TRY(sd_mmdit_attn_load(err, m, st, name, x_names, &b->attn2));
    }

    snprintf(name, sizeof(name), "%s.ff.net.0.proj", p);
    SD_TRY(sd_mmdit_linear_load(err, m, st, name, 0, w, &b->ff.proj));
    snprintf(name, sizeof(name), "%s.ff.net.2", p);
    SD_TRY(sd_mmdit_linear_load(err, m, st, name, w, b->ff.proj.w->ne[0],
                                &b->ff.down));
    if (!b->pre_only) {
        snprintf(name, sizeof(name), "%s.ff_context.net.0.proj", p);
        SD_TRY(sd_mmdit_linear_load(err, m, st, name, 0, w,
                                    &b->ff_context.proj));
        snprintf(name, sizeof(name), "%s.ff_context.net.2", p);
        SD_TRY(sd_mmdit_linear_load(err, m, st, name, w,
                                    b->ff_context.proj.w->ne[0],
                                    &b->ff_context.down));
    }
    return SD_OK;
}


/* F.scaled_dot_product_attention's default scale, 1/sqrt(D): the
   attention's, and the one the FP8 attention's q and k scales are set for */
static float
sd_mmdit_attn_scale(const sd_mmdit *m)
{
    return (float) (1.0 / sqrt((double) m->info.head_dim));
}


/*
 * The FP8 attention's fixed scales of q and k for the attentions a and b
 * (b NULL, or the other stream of the same sequence), from the largest
 * |norm_q| and |norm_k| over both streams (sd_fp8_attn_scales). Norms no
 * such scales fit turn the FP8 attention off for the model (m->attn8 0).
 */
static sd_status
sd_mmdit_qk8(sd_err *err, sd_mmdit *m, sd_mmdit_attn *a, sd_mmdit_attn *b)
{
    int64_t  d = m->info.head_dim, i;
    float   *h, amax[2];
    int      j, t;

    h = sd_malloc(err, (size_t) d * sizeof(float), "fp8 attention scales");
    if (h == NULL) {
        return SD_ERR_NOMEM;
    }
    for (j = 0; j < 2; j++) {
        amax[j] = 0.0f;
        for (t = 0; t < (b ? 2 : 1); t++) {
            const sd_tensor  *nw = (t == 0 ? a : b)->norm[j];

            if (sd_tensor_download(err, nw, h) != SD_OK) {
                free(h);
                return err->status;
            }
            for (i = 0; i < d; i++) {
                amax[j] = fmaxf(amax[j], fabsf(h[i]));
            }
        }
    }
    free(h);
    if (sd_fp8_attn_scales(amax[0], amax[1], d, sd_mmdit_attn_scale(m),
                           &a->qk8[0], &a->qk8[1]) != 0)
    {
        m->attn8 = 0;
        return SD_OK;
    }
    if (b) {
        b->qk8[0] = a->qk8[0];
        b->qk8[1] = a->qk8[1];
    }
    return SD_OK;
}


/* m->attn8 and every attention's q, k scales when it is on */
static sd_status
sd_mmdit_attn8_init(sd_err *err, sd_mmdit *m)
{
    const sd_backend  *be = m->be;
    int                i;

    m->attn8 = be->fp8_attn && (be->fp8_kinds & (1u << SD_FP8_ATTN))
               && m->qk_norm && m->info.head_dim == 64;
    for (i = 0; m->attn8 && i < m->info.num_layers; i++) {
        sd_mmdit_block  *b = &m->blocks[i];

        SD_TRY(sd_mmdit_qk8(err, m, &b->attn_x, &b->attn_c));
        if (b->dual) {
            SD_TRY(sd_mmdit_qk8(err, m, &b->attn2, NULL));
        }
    }
    return SD_OK;
}


/* SD3Transformer2DModel.__init__ */
static sd_status
sd_mmdit_load_weights(sd_err *err, sd_mmdit *m, const sd_st *st)
{
    const sd_mmdit_info  *in = &m->info;
    const sd_st_tensor   *t;
    int64_t               w = in->width, shape[4];
    int                   i;

    /* PatchEmbed: proj conv (width, in, p, p), stored pos_embed table */
    shape[0] = w;
    shape[1] = in->in_channels;
    shape[2] = in->patch_size;
    shape[3] = in->patch_size;
    SD_TRY(sd_conv_weight_load(err, m->be, st, "pos_embed.proj.weight",
                               shape, &m->patch.w));
    SD_TRY(sd_tensor_list_add(err, &m->owned, m->patch.w));
    SD_TRY(sd_mmdit_weight(err, m, st, "pos_embed.proj.bias", 1, shape,
                           &m->patch.b));
    shape[0] = 1;
    shape[1] = (int64_t) in->pos_max * in->pos_max;
    shape[2] = w;
    SD_TRY(sd_mmdit_weight(err, m, st, "pos_embed.pos_embed", 3, shape,
                           &m->pos_embed));

    /* CombinedTimestepTextProjEmbeddings */
    t = sd_st_find(st, "time_text_embed.timestep_embedder.linear_1.weight");
    if (t == NULL || t->ndim != 2 || t->shape[1] < 2 || t->shape[1] % 2) {
        return sd_errorf(err, SD_ERR_FORMAT, "transformer: timestep_embedder"
                         ".linear_1.weight missing or of odd width");
    }
    m->t_channels = (int) t->shape[1];
    SD_TRY(sd_mmdit_linear_load(err, m, st,
                                "time_text_embed.timestep_embedder.linear_1",
                                w, m->t_channels, &m->t_lin1));
    SD_TRY(sd_mmdit_linear_load(err, m, st,
                                "time_text_embed.timestep_embedder.linear_2",
                                w, w, &m->t_lin2));
    SD_TRY(sd_mmdit_linear_load(err, m, st,
                                "time_text_embed.text_embedder.linear_1",
                                w, in->pooled_dim, &m->p_lin1));
    SD_TRY(sd_mmdit_linear_load(err, m, st,
                                "time_text_embed.text_embedder.linear_2",
                                w, w, &m->p_lin2));

    SD_TRY(sd_mmdit_linear_load(err, m, st, "context_embedder", w,
                                in->joint_dim, &m->context_embedder));

    for (i = 0; i < in->num_layers; i++) {
        SD_TRY(sd_mmdit_block_load(err, m, st, i));
    }

    SD_TRY(sd_mmdit_attn8_init(err, m));

    SD_TRY(sd_mmdit_linear_load(err, m, st, "norm_out.linear", 2 * w, w,
                                &m->norm_out));
    return sd_mmdit_linear_load(err, m, st, "proj_out",
                                (int64_t) in->patch_size * in->patch_size
                                * in->out_channels, w, &m->proj_out);
}


sd_status
sd_mmdit_load(sd_err *err, sd_backend *be, const char *dir, sd_mmdit **out)
{
    sd_mmdit   *m;
    sd_st      *st = NULL;
    sd_status   s;

    *out = NULL;
    m = sd_calloc(err, 1, sizeof(sd_mmdit), "transformer");
    if (m == NULL) {
        return SD_ERR_NOMEM;
    }
    m->be = be;
    m->block_join = sd_env_on("SD_MMDIT_BLOCK_JOIN");
    m->o_bf16 = sd_env_on("SD_MMDIT_O_BF16");
    m->attn2_serial = sd_env_on("SD_MMDIT_ATTN2_SERIAL");

    SD_TRY_GOTO(s, sd_mmdit_read_config(err, m, dir), failed);

    m->blocks = sd_calloc(err, m->info.num_layers, sizeof(sd_mmdit_block),
                          "transformer blocks");
    if (m->blocks == NULL) {
        s = SD_ERR_NOMEM;
        goto failed;
    }

    SD_TRY_GOTO(s, sd_st_open_dir(err, dir, &st), failed);
    SD_TRY_GOTO(s, sd_mmdit_load_weights(err, m, st), failed);
    sd_st_close(st);

    *out = m;
    return SD_OK;

failed:
    sd_st_close(st);
    sd_mmdit_free(m);
    return s;
}


void
sd_mmdit_free(sd_mmdit *m)
{
    if (m == NULL) {
        return;
    }
    sd_backend_replay_free(m->be, m->rec);
    sd_backend_replay_free(m->be, m->rec_fb[0]);
    sd_backend_replay_free(m->be, m->rec_fb[1]);
    sd_backend_replay_free(m->be, m->rec_fb[2]);
    sd_backend_replay_free(m->be, m->rec_mods);
    sd_tensor_list_free(&m->owned);
    free(m->blocks);
    free(m->dual);
    free(m);
}


const sd_mmdit_info *
sd_mmdit_get_info(const sd_mmdit *m)
{
    return &m->info;
}


/* Forward */

/* y: (N..., out) = x @ w^T + b */
static sd_status
sd_mmdit_linear_fwd(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const sd_mmdit_linear *lin)
{
    return sd_linear(err, y, x, lin->w, lin->b);
}


/* chunk k of mod: (n, B, W), the permuted (B, n * W) modulation: (B, W) */
static sd_status
sd_mmdit_chunk(sd_err *err, const sd_tensor *mod, int k, sd_tensor *view)
{
    int64_t  shape[2] = { mod->ne[1], mod->ne[2] };

    return sd_tensor_view(err, mod, k * shape[0] * shape[1], 2, shape, view);
}


/*
 * The adaLN modulation vector: linear(silu(temb)) chunked n ways
 * (normalization.py AdaLayerNormZero / SD35AdaLayerNormZeroX /
 * AdaLayerNormContinuous: "emb = self.linear(self.silu(emb))").
 * temb_silu: (B, W) -> *out: (n, B, W), chunk k contiguous.
 */
static sd_status
sd_mmdit_modulation(sd_err *err, sd_mmdit *m, const sd_mmdit_linear *lin,
    const sd_tensor *temb_silu, sd_tensor **out)
{
    static const int  perm[3] = { 1, 0, 2 };
    sd_tensor        *mod;
    sd_status         s;
    int64_t           b = temb_silu->ne[0], w = m->info.width;
    int64_t           n = lin->w->ne[0] / w;

    *out = NULL;
    /* mod: (B, n * W) */
    SD_TRY(sd_tensor_new2(err, m->be, b, n * w, &mod));
    s = sd_mmdit_linear_fwd(err, mod, temb_silu, lin);
    if (s == SD_OK) {
        /* (B, n, W) -> (n, B, W) */
        s = sd_tensor_reshape(err, mod, 3, (int64_t[3]) { b, n, w });
    }
    if (s == SD_OK) {
        s = sd_tensor_new3(err, m->be, n, b, w, out);
    }
    if (s == SD_OK) {
        s = sd_permute(err, *out, mod, perm);
    }
    sd_tensor_free(mod);
    if (s != SD_OK) {
        sd_tensor_free(*out);
        *out = NULL;
    }
    return s;
}


/*
 * Per-image constants (sd_mmdit_cache_new): for up to SD_MMDIT_CACHE_STEPS
 * steps of a schedule at a time (rows c0..), each block's adaLN modulation
 * and the final norm's, already chunked, one row of all: (C, P) per step:
 * block i's norm1 (6|9, B, W) at moff[i], its norm1_context (6|2, B, W) at
 * coff[i], the final norm's (2, B, W) at foff. A step outside the rows
 * held refills them from that step on (one product per modulation for C
 * steps: the weights read once per C steps, and the memory bounded
 * whatever the step count, so a workspace measured with C steps holds any
 * schedule). A step runs from cur (P): its row copied there first, so
 * every step reads the same addresses (a recorded step replays
 * unchanged). And the context embedder's output ctx: (B, Lc, W), which no
 * step changes.
 */
struct sd_mmdit_cache {
    int             steps, layers;
    int             chunk, c0;          /* C rows held, from step c0 */
    float          *t;                  /* the steps' timesteps (host) */
    int64_t         batch;
    int64_t         per_step;           /* P */
    int64_t        *moff, *coff;        /* layers each */
    int64_t         foff;
    sd_tensor      *all, *cur;
    sd_tensor      *pooled;             /* (B, pooled_dim), for refills */
    sd_tensor      *ctx;

    /*
     * Step caching (first-block cache), thr > 0: the image stream hs and
     * the context stream cx live here across a step's parts; r1 is this
     * step's first-block residual, r1_full the last full step's, rest the
     * other blocks' residual of the last full step, hs1n minus hs after
     * the first block, meas (sum |r1 - r1_full|, sum |r1_full|).
     */
    float           thr;
    sd_tensor      *hs, *cx, *r1, *r1_full, *rest, *hs1n, *meas;
    int             full_steps, run, cached;
};


/*
 * Where a forward pass takes a modulation from: computed from
 * temb_silu (B, W) now, or step "step" of a cache.
 */
typedef struct {
    const sd_tensor        *temb_silu;
    const sd_mmdit_cache   *cache;
    int                     step;
} sd_mmdit_mods;


/*
 * The modulation (n, B, W) of lin (block i's norm1 when ctx is 0, its
 * norm1_context when 1; the final norm when i < 0): a view of the cache,
 * or computed into *owned (the caller frees it).
 */
static sd_status
sd_mmdit_mod_get(sd_err *err, sd_mmdit *m, const sd_mmdit_mods *src,
    const sd_mmdit_linear *lin, int i, int ctx, sd_tensor **owned,
    sd_tensor *view)
{
    int64_t  shape[3], off;

    *owned = NULL;
    if (src->cache == NULL) {
        SD_TRY(sd_mmdit_modulation(err, m, lin, src->temb_silu, owned));
        *view = **owned;
        view->view = 1;
        return SD_OK;
    }
    shape[0] = lin->w->ne[0] / m->info.width;
    shape[1] = src->cache->batch;
    shape[2] = m->info.width;
    off = i < 0 ? src->cache->foff : (ctx ? src->cache->coff[i]
                                          : src->cache->moff[i]);
    return sd_tensor_view(err, src->cache->cur, off, 3, shape, view);
}


/*
 * An attention's buffers for B batches of l tokens: q, k, v (B, l, W),
 * or with the FP8 attention (m->attn8) E4M3 q8, k8 and V^T's E4M3 codes
 * vt8 (B, heads, 64, Lp) with its tiles' scales vts (B, heads, tiles;
 * sd_qkv_split_fp8); its output o (BF16) and o8 (E4M3 rows with their
 * scales, for out projections with E4M3 weights: be->fp8_act), each only
 * where an out projection takes it (sd_mmdit_attn_bufs).
 */
typedef struct {
    sd_tensor  *q, *k, *v, *q8, *k8, *vt8, *vts, *o, *o8;
} sd_mmdit_abuf;


/*
 * A forward pass's activations, taken once before the first block and
 * reused by every block (no allocation inside the loop; and the text
 * stream's work may still run on lane 1 when the image stream's ends, so
 * nothing either touches is freed before the block's join).
 * B batches, Lx image and Lc text tokens, L = Lx + Lc, W wide, F the
 * feed-forward width.
 */
typedef struct {
    sd_tensor      *hx;         /* (B, Lx, W) normalized image stream */
    sd_tensor      *nx;         /* (B, Lx, W) the ZeroX second one, or NULL */
    sd_tensor      *nc;         /* (B, Lc, W) the same for the text */
    sd_mmdit_abuf   j;          /* the joint sequence's attention (L) */
    sd_tensor      *tx, *tc;    /* (B, Lx | Lc, 3 W) fused projections */
    sd_tensor      *fx, *fc;    /* (B, Lx | Lc, F) feed-forward hidden */
    /* E4M3 twins of hx, nx, nc (be->fp8_act): a norm that feeds a
       product with E4M3 weights writes its rows quantized */
    sd_tensor      *hx8, *nx8, *nc8;
    /* the FP8 attention (m->attn8): each (b, h)'s largest |v|, a slot of
       B x heads floats an attention of the pass (block i's joint one 2 i,
       its attn2 2 i + 1), all zeroed once when the activations are taken
       (one launch a pass, not one an attention) */
    sd_tensor      *vamax;
    /* (B, Lx, F) E4M3 twin of fx: the image stream's feed-forward hidden
       layer as E4M3 rows (be->fp8_ffh, sd_mmdit_ffh8; fx then only where
       a block's is not) */
    sd_tensor      *fx8;
    /* attn2's own buffers (MMDiT-X, where sd_mmdit_attn2_beside), so that
       it runs on lane 1 beside the joint attention: its product tx2 (B,
       Lx, 3 W) and its attention's (Lx); else tx2 NULL and attn2 uses the
       first Lx rows' worth of the joint ones */
    sd_tensor      *tx2;
    sd_mmdit_abuf   a2;
} sd_mmdit_acts;


static void
sd_mmdit_acts_free(sd_mmdit_acts *a)
{
    sd_tensors_free((sd_tensor **) a, sizeof(*a) / sizeof(sd_tensor *));
    memset(a, 0, sizeof(*a));
}


/* Whether a block's product that follows a norm has E4M3 weights. */
static int
sd_mmdit_any_fp8(const sd_mmdit *m)
{
    int  i;

    for (i = 0; i < m->info.num_layers; i++) {
        const sd_mmdit_block  *k = &m->blocks[i];

        if (k->attn_x.qkv.w->dtype == SD_DT_F8_E4M3
            || k->attn_c.qkv.w->dtype == SD_DT_F8_E4M3
            || k->ff.proj.w->dtype == SD_DT_F8_E4M3
            || (k->ff_context.proj.w
                && k->ff_context.proj.w->dtype == SD_DT_F8_E4M3))
        {
            return 1;
        }
    }
    return 0;
}


/* Whether a feed-forward's GELU product writes its hidden layer as E4M3
   rows for the second product (sd_linear_act into E4M3): both weights
   E4M3, the first's dimensions multiples of 16 (be->fp8_ffh's terms),
   its input E4M3 rows from the norm (be->fp8_act) */
static int
sd_mmdit_ffh8(const sd_mmdit *m, const sd_mmdit_ff *ff)
{
    return m->be->fp8_ffh && m->be->fp8_act
           && ff->proj.w->dtype == SD_DT_F8_E4M3
           && ff->down.w->dtype == SD_DT_F8_E4M3 && !ff->proj.w->view
           && ff->proj.w->ne[0] % 16 == 0 && ff->proj.w->ne[1] % 16 == 0;
}


/* Whether the attention before out projections w1 and w2 (NULL: none)
   writes E4M3 rows: the FP8 attention feeding E4M3 weights */
static int
sd_mmdit_o8(const sd_mmdit *m, const sd_tensor *w1, const sd_tensor *w2)
{
    return m->attn8 && m->be->fp8_act && !m->o_bf16
           && w1->dtype == SD_DT_F8_E4M3
           && (w2 == NULL || w2->dtype == SD_DT_F8_E4M3);
}


/* A block's joint attention output: 1 E4M3 (sd_mmdit_o8), 0 BF16; attn2's
   with second 1 */
static int
sd_mmdit_block_o8(const sd_mmdit *m, const sd_mmdit_block *k, int second)
{
    if (second) {
        return sd_mmdit_o8(m, k->attn2.out.w, NULL);
    }
    return sd_mmdit_o8(m, k->attn_x.out.w,
                       k->pre_only ? NULL : k->attn_c.out.w);
}


/* Whether MMDiT-X's attn2 runs on lane 1 beside the joint attention, in
   its own buffers: unless SD_MMDIT_ATTN2_SERIAL=1, with the FP8 attention
   (which may run on lane 1) or where the lanes run in order (the CPU) */
static int
sd_mmdit_attn2_beside(const sd_mmdit *m)
{
    return !m->attn2_serial && (m->attn8 || !sd_backend_queued(m->be));
}


/* An attention's buffers (sd_mmdit_abuf) for B batches of l tokens, its
   output as BF16 where bf, as E4M3 rows where f8 */
static sd_status
sd_mmdit_attn_bufs(sd_err *err, sd_mmdit *m, int64_t b, int64_t l, int bf,
    int f8, sd_mmdit_abuf *ab)
{
    sd_backend  *be = m->be;
    int64_t      w = m->info.width, h = m->info.heads;
    int64_t      sq[3] = { b, l, w };

    if (m->attn8) {
        int64_t  svt[4] = { b, h, 64, sd_fp8_vt_len(l) };
        int64_t  sts = b * h * sd_fp8_vt_tiles(l);

        SD_TRY(sd_tensor_new_as(err, be, SD_MEM_ACT, SD_DT_F8_E4M3, 3, sq,
                                &ab->q8));
        SD_TRY(sd_tensor_new_as(err, be, SD_MEM_ACT, SD_DT_F8_E4M3, 3, sq,
                                &ab->k8));
        SD_TRY(sd_tensor_new_as(err, be, SD_MEM_ACT, SD_DT_U8, 4, svt,
                                &ab->vt8));
        SD_TRY(sd_tensor_new_as(err, be, SD_MEM_ACT, SD_DT_F32, 1, &sts,
                                &ab->vts));
    } else {
        SD_TRY(sd_tensor_new3(err, be, b, l, w, &ab->q));
        SD_TRY(sd_tensor_new3(err, be, b, l, w, &ab->k));
        SD_TRY(sd_tensor_new3(err, be, b, l, w, &ab->v));
    }
    if (bf) {
        SD_TRY(sd_tensor_new3(err, be, b, l, w, &ab->o));
    }
    if (f8) {
        SD_TRY(sd_tensor_new_as(err, be, SD_MEM_ACT, SD_DT_F8_E4M3, 3, sq,
                                &ab->o8));
    }
    return SD_OK;
}


static sd_status
sd_mmdit_acts_new(sd_err *err, sd_mmdit *m, int64_t b, int64_t lx,
    int64_t lc, sd_mmdit_acts *a)
{
    sd_backend  *be = m->be;
    int64_t      w = m->info.width, f = 0, l = lx + lc;
    int          i, dual = 0, f8 = 0, fbf = 0, beside;
    int          o8[2] = { 0, 0 }, obf[2] = { 0, 0 };  /* joint, attn2 */

    memset(a, 0, sizeof(*a));
    beside = sd_mmdit_attn2_beside(m);
    for (i = 0; i < m->info.num_layers; i++) {
        const sd_mmdit_block  *k = &m->blocks[i];
        int                    j;

        f = k->ff.proj.w->ne[0] > f ? k->ff.proj.w->ne[0] : f;
        dual |= k->dual;
        if (sd_mmdit_ffh8(m, &k->ff)) {
            f8 = 1;
        } else {
            fbf = 1;
        }
        /* attn2's output in its own buffers (beside) or the joint ones */
        for (j = 0; j < (k->dual ? 2 : 1); j++) {
            int  at = j && beside;

            if (sd_mmdit_block_o8(m, k, j)) {
                o8[at] = 1;
            } else {
                obf[at] = 1;
            }
        }
    }
    if (dual) {
        SD_TRY(sd_tensor_new3(err, be, b, lx, w, &a->nx));
    }
    SD_TRY(sd_tensor_new3(err, be, b, lx, w, &a->hx));
    SD_TRY(sd_tensor_new3(err, be, b, lc, w, &a->nc));
    SD_TRY(sd_mmdit_attn_bufs(err, m, b, l, obf[0], o8[0], &a->j));
    if (m->attn8) {
        int64_t  sv = 2 * (int64_t) m->info.num_layers * b * m->info.heads;

        SD_TRY(sd_tensor_new_as(err, be, SD_MEM_ACT, SD_DT_F32, 1, &sv,
                                &a->vamax));
        SD_TRY(sd_scale(err, a->vamax, a->vamax, 0.0f, 0.0f));
    }
    SD_TRY(sd_tensor_new3(err, be, b, lx, 3 * w, &a->tx));
    SD_TRY(sd_tensor_new3(err, be, b, lc, 3 * w, &a->tc));
    if (fbf) {
        SD_TRY(sd_tensor_new3(err, be, b, lx, f, &a->fx));
    }
    if (f8) {
        int64_t  sf[3] = { b, lx, f };

        SD_TRY(sd_tensor_new_as(err, be, SD_MEM_ACT, SD_DT_F8_E4M3, 3, sf,
                                &a->fx8));
    }
    SD_TRY(sd_tensor_new3(err, be, b, lc, f, &a->fc));
    if (dual && beside) {
        SD_TRY(sd_tensor_new3(err, be, b, lx, 3 * w, &a->tx2));
        SD_TRY(sd_mmdit_attn_bufs(err, m, b, lx, obf[1], o8[1], &a->a2));
    }
    if (be->fp8_act && sd_mmdit_any_fp8(m)) {
        int64_t  sx[3] = { b, lx, w }, sc[3] = { b, lc, w };

        SD_TRY(sd_tensor_new_as(err, be, SD_MEM_ACT, SD_DT_F8_E4M3, 3, sx,
                                &a->hx8));
        SD_TRY(sd_tensor_new_as(err, be, SD_MEM_ACT, SD_DT_F8_E4M3, 3, sc,
                                &a->nc8));
        if (dual) {
            SD_TRY(sd_tensor_new_as(err, be, SD_MEM_ACT, SD_DT_F8_E4M3, 3,
                                    sx, &a->nx8));
        }
    }
    return SD_OK;
}


/* The buffer a norm writes for the product with weights w: E4M3 when w is */
static sd_tensor *
sd_mmdit_norm_out(const sd_tensor *w, sd_tensor *bf, sd_tensor *f8)
{
    return f8 && w->dtype == SD_DT_F8_E4M3 ? f8 : bf;
}


/*
 * One stream's projection into the joint sequence, JointAttnProcessor2_0:
 * "query = attn.to_q(hidden_states) ... query = attn.norm_q(query)" and
 * "torch.cat([query, encoder_hidden_states_query_proj], dim=2)", with
 * q, k, v as one product into t: (B, n, 3 W).
 * h: (B, n, W) -> rows [r0, r0 + n) of each batch of q, k, v: (B, L', W)
 * (L' = L, or Lx for attn2: views of the joint buffers). With the FP8
 * attention only the product: sd_mmdit_split8 splits both streams' at
 * once (q, k, v and r0 unused).
 */
static sd_status
sd_mmdit_project(sd_err *err, sd_mmdit *m, const sd_mmdit_attn *at,
    const sd_tensor *h, sd_tensor *t, sd_tensor *q, sd_tensor *k,
    sd_tensor *v, int64_t r0)
{
    SD_TRY(sd_mmdit_linear_fwd(err, t, h, &at->qkv));
    if (m->attn8) {
        return SD_OK;
    }
    return sd_qkv_split(err, q, k, v, r0, t, at->norm[0], at->norm[1],
                        m->info.heads, SD_MMDIT_EPS);
}


/*
 * The FP8 attention's inputs for a sequence of l tokens (the joint one,
 * or attn2's image tokens) from the buffers ab: E4M3 q, k (views as (B,
 * l, W)), V^T's codes and tiles' scales (views sized for l), the v maxima
 * of slot (zero: taken once per pass, sd_mmdit_acts_new).
 */
typedef struct {
    sd_tensor  q, k, vt, vts, vam;
} sd_mmdit_seq8;

static sd_status
sd_mmdit_seq8_begin(sd_err *err, sd_mmdit *m, const sd_mmdit_abuf *ab,
    sd_tensor *vamax, int slot, int64_t l, sd_mmdit_seq8 *s)
{
    int64_t  b = ab->q8->ne[0], h = m->info.heads;
    int64_t  sq[3] = { b, l, ab->q8->ne[2] };
    int64_t  svt[4] = { b, h, 64, sd_fp8_vt_len(l) };
    int64_t  nts = b * h * sd_fp8_vt_tiles(l), n = b * h;

    SD_TRY(sd_tensor_view(err, ab->q8, 0, 3, sq, &s->q));
    SD_TRY(sd_tensor_view(err, ab->k8, 0, 3, sq, &s->k));
    SD_TRY(sd_tensor_view(err, ab->vt8, 0, 4, svt, &s->vt));
    SD_TRY(sd_tensor_view(err, ab->vts, 0, 1, &nts, &s->vts));
    return sd_tensor_view(err, vamax, slot * n, 1, &n, &s->vam);
}


/* both streams' products (xt: rows from 0, ct: after them, or NULL) split
   into the FP8 attention's inputs at once */
static sd_status
sd_mmdit_split8(sd_err *err, sd_mmdit *m, sd_mmdit_seq8 *s,
    const sd_mmdit_attn *ax, const sd_tensor *xt, const sd_mmdit_attn *ac,
    const sd_tensor *ct)
{
    const sd_tensor  *src[2] = { xt, ct };
    const sd_tensor  *nq[2] = { ax->norm[0], ac ? ac->norm[0] : NULL };
    const sd_tensor  *nk[2] = { ax->norm[1], ac ? ac->norm[1] : NULL };

    return sd_qkv_split_fp8(err, &s->q, &s->k, &s->vt, &s->vts, &s->vam,
                            src, nq, nk, m->info.heads, SD_MMDIT_EPS,
                            ax->qk8[0], ax->qk8[1]);
}


/* F.scaled_dot_product_attention over q, k, v into o, scale 1/sqrt(D):
   with the FP8 attention from s (q, k, v NULL) */
static sd_status
sd_mmdit_sdpa(sd_err *err, sd_mmdit *m, const sd_mmdit_attn *at,
    sd_tensor *o, const sd_tensor *q, const sd_tensor *k,
    const sd_tensor *v, const sd_mmdit_seq8 *s)
{
    float  scale = sd_mmdit_attn_scale(m);

    if (m->attn8) {
        return sd_attention_fp8(err, o, &s->q, &s->k, &s->vt, &s->vts,
                                &s->vam, m->info.heads, at->qk8[0],
                                at->qk8[1], scale);
    }
    return sd_attention(err, o, q, k, v, m->info.heads, 0, NULL, scale);
}


/*
 * attn2 of an MMDiT-X block: image-only self-attention of nx, its output
 * (B, Lx, W) in *ov (sd_mmdit_attn2_out), then projected and added into x
 * with its gate (sd_mmdit_attn2_add). In its own buffers where the
 * activations have them (a->tx2: it then runs beside the joint attention),
 * else in the first Lx rows' worth of the joint buffers, viewed as (B, Lx,
 * W).
 */
static sd_status
sd_mmdit_attn2_out(sd_err *err, sd_mmdit *m, const sd_mmdit_attn *at,
    sd_mmdit_acts *a, sd_tensor *ov)
{
    const sd_mmdit_abuf  *ab = a->tx2 ? &a->a2 : &a->j;

    return sd_tensor_view(err, sd_mmdit_o8(m, at->out.w, NULL) ? ab->o8
                                                               : ab->o,
                          0, 3, a->hx->ne, ov);
}

static sd_status
sd_mmdit_attn2(sd_err *err, sd_mmdit *m, int bi, const sd_mmdit_attn *at,
    sd_mmdit_acts *a)
{
    const sd_tensor  *nx = sd_mmdit_norm_out(at->qkv.w, a->nx, a->nx8);
    sd_tensor        *t = a->tx2 ? a->tx2 : a->tx;
    sd_mmdit_abuf    *ab = a->tx2 ? &a->a2 : &a->j;
    sd_tensor         qv, kv, vv, ov;
    sd_mmdit_seq8     s8;

    SD_TRY(sd_mmdit_attn2_out(err, m, at, a, &ov));
    if (m->attn8) {
        SD_TRY(sd_mmdit_seq8_begin(err, m, ab, a->vamax, 2 * bi + 1,
                                   a->hx->ne[1], &s8));
        SD_TRY(sd_mmdit_project(err, m, at, nx, t, NULL, NULL, NULL, 0));
        SD_TRY(sd_mmdit_split8(err, m, &s8, at, t, NULL, NULL));
        return sd_mmdit_sdpa(err, m, at, &ov, NULL, NULL, NULL, &s8);
    }
    SD_TRY(sd_tensor_view(err, ab->q, 0, 3, a->hx->ne, &qv));
    SD_TRY(sd_tensor_view(err, ab->k, 0, 3, a->hx->ne, &kv));
    SD_TRY(sd_tensor_view(err, ab->v, 0, 3, a->hx->ne, &vv));
    SD_TRY(sd_mmdit_project(err, m, at, nx, t, &qv, &kv, &vv, 0));
    return sd_mmdit_sdpa(err, m, at, &ov, &qv, &kv, &vv, NULL);
}

static sd_status
sd_mmdit_attn2_add(sd_err *err, sd_mmdit *m, const sd_mmdit_attn *at,
    sd_mmdit_acts *a, sd_tensor *x, const sd_tensor *gate)
{
    sd_tensor  ov;

    SD_TRY(sd_mmdit_attn2_out(err, m, at, a, &ov));
    return sd_linear_gate_add(err, x, gate, &ov, 0, at->out.w, at->out.b);
}


/*
 * FeedForward(dim, dim_out=dim, activation_fn="gelu-approximate"):
 * net.0 = GELU(proj, approximate="tanh"), net.2 = Linear.
 * x: (B, n, W) -> y: (B, n, W) through h: (B, n, F) (a view of the
 * preallocated hidden buffer: hbuf8, E4M3 rows, where not NULL and x is
 * E4M3 rows, else hbuf).
 */
static sd_status
sd_mmdit_ff_fwd(sd_err *err, const sd_mmdit_ff *ff, const sd_tensor *x,
    sd_tensor *hbuf, sd_tensor *hbuf8, sd_tensor *res, const sd_tensor *gate)
{
    sd_tensor  h;
    int64_t    shape[3] = { x->ne[0], x->ne[1], ff->proj.w->ne[0] };

    SD_TRY(sd_tensor_view(err, hbuf8 && x->dtype == SD_DT_F8_E4M3 ? hbuf8
                                                                   : hbuf,
                          0, 3, shape, &h));
    SD_TRY(sd_linear_act(err, &h, x, ff->proj.w, ff->proj.b,
                         SD_ACT_GELU_TANH));
    return sd_linear_gate_add(err, res, gate, &h, 0, ff->down.w,
                              ff->down.b);
}


/* y = LayerNorm(x, no affine, eps 1e-6) * (1 + scale) + shift; (B, L, W) */
static sd_status
sd_mmdit_norm_mod(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *shift, const sd_tensor *scale)
{
    return sd_norm_modulate(err, y, x, shift, scale, SD_MMDIT_EPS);
}


/*
 * JointTransformerBlock.forward (attention.py), in its order, with
 * JointAttnProcessor2_0 (attention_processor.py) inside. x: (B, Lx, W)
 * image stream, c: (B, Lc, W) context stream, both updated in place (c is
 * left as it was by the context_pre_only block, whose context output the
 * reference drops).
 * The two streams only meet in the attention: the text stream's work runs
 * on lane 1 beside the image stream's, and the block ends with a join.
 */
static sd_status
sd_mmdit_block_fwd(sd_err *err, sd_mmdit *m, int bi, sd_tensor *x,
    sd_tensor *c, const sd_mmdit_mods *src, sd_mmdit_acts *a)
{
    enum { SH_MSA, SC_MSA, G_MSA, SH_MLP, SC_MLP, G_MLP, SH_MSA2, SC_MSA2,
           G_MSA2 };
    const sd_mmdit_block  *blk = &m->blocks[bi];
    sd_backend            *be = m->be;
    sd_tensor             *mod = NULL, *cmod = NULL, *hx, *nc;
    sd_tensor             *o = sd_mmdit_block_o8(m, blk, 0) ? a->j.o8
                                                            : a->j.o;
    sd_mmdit_seq8          s8;
    sd_tensor              k[9], ck[6], mv, cmv;
    sd_status              s;
    int64_t                lx = x->ne[1];
    int                    j;

    /* norm1 (AdaLayerNormZero or SD35AdaLayerNormZeroX): mod: (6|9, B, W) */
    SD_TRY_GOTO(s, sd_mmdit_mod_get(err, m, src, &blk->norm1, bi, 0, &mod,
                                    &mv), done);
    for (j = 0; j < (blk->dual ? 9 : 6); j++) {
        SD_TRY_GOTO(s, sd_mmdit_chunk(err, &mv, j, &k[j]), done);
    }
    /* norm1_context: (6, B, W), or AdaLayerNormContinuous (2, B, W) */
    SD_TRY_GOTO(s, sd_mmdit_mod_get(err, m, src, &blk->norm1_context, bi, 1,
                                    &cmod, &cmv), done);
    for (j = 0; j < (blk->pre_only ? 2 : 6); j++) {
        SD_TRY_GOTO(s, sd_mmdit_chunk(err, &cmv, j, &ck[j]), done);
    }

    /* lane 1: norm1_context (AdaLayerNormContinuous chunks are (scale,
       shift)), the text stream's q, k, v into rows Lx.. (with the FP8
       attention its product; both streams are split after the join) */
    if (m->attn8) {
        SD_TRY_GOTO(s, sd_mmdit_seq8_begin(err, m, &a->j, a->vamax, 2 * bi,
                                           a->j.q8->ne[1], &s8), done);
    }
    SD_TRY_GOTO(s, sd_backend_lane(err, be, 1), done);
    nc = sd_mmdit_norm_out(blk->attn_c.qkv.w, a->nc, a->nc8);
    if (blk->pre_only) {
        SD_TRY_GOTO(s, sd_mmdit_norm_mod(err, nc, c, &ck[1], &ck[0]), done);
    } else {
        SD_TRY_GOTO(s, sd_mmdit_norm_mod(err, nc, c, &ck[SH_MSA],
                                         &ck[SC_MSA]), done);
    }
    SD_TRY_GOTO(s, sd_mmdit_project(err, m, &blk->attn_c, nc, a->tc, a->j.q,
                                    a->j.k, a->j.v, lx), done);

    /* lane 0: "norm_hidden_states = norm(x) * (1 + scale_msa) +
       shift_msa" (ZeroX also "norm_hidden_states2" from the same norm),
       the image stream's q, k, v into rows 0.. */
    SD_TRY_GOTO(s, sd_backend_lane(err, be, 0), done);
    hx = sd_mmdit_norm_out(blk->attn_x.qkv.w, a->hx, a->hx8);
    if (blk->dual) {
        /* both from one pass over x where the backend can */
        SD_TRY_GOTO(s, sd_norm_modulate2(err, hx, sd_mmdit_norm_out(
                                             blk->attn2.qkv.w, a->nx,
                                             a->nx8), x, &k[SH_MSA],
                                         &k[SC_MSA], &k[SH_MSA2],
                                         &k[SC_MSA2], SD_MMDIT_EPS), done);
    } else {
        SD_TRY_GOTO(s, sd_mmdit_norm_mod(err, hx, x, &k[SH_MSA],
                                         &k[SC_MSA]), done);
    }
    SD_TRY_GOTO(s, sd_mmdit_project(err, m, &blk->attn_x, hx, a->tx, a->j.q,
                                    a->j.k, a->j.v, 0), done);

    /* the joint attention, then each stream's part of it: to_add_out
       (lane 1, unless context_pre_only), to_out.0 (lane 0); in its own
       buffers attn2 ("attn_output2 = self.attn2(hidden_states=
       norm_hidden_states2)") runs on lane 1 beside it, up to its output
       (its projection is added after the joint one's, as the reference
       adds them) */
    SD_TRY_GOTO(s, sd_backend_join(err, be), done);
    if (blk->dual && a->tx2 != NULL) {
        SD_TRY_GOTO(s, sd_backend_lane(err, be, 1), done);
        SD_TRY_GOTO(s, sd_mmdit_attn2(err, m, bi, &blk->attn2, a), done);
        SD_TRY_GOTO(s, sd_backend_lane(err, be, 0), done);
    }
    if (m->attn8) {
        SD_TRY_GOTO(s, sd_mmdit_split8(err, m, &s8, &blk->attn_x, a->tx,
                                       &blk->attn_c, a->tc), done);
    }
    SD_TRY_GOTO(s, sd_mmdit_sdpa(err, m, &blk->attn_x, o, a->j.q, a->j.k, a->j.v,
                                 &s8), done);
    if (!blk->pre_only) {
        SD_TRY_GOTO(s, sd_backend_lane(err, be, 1), done);
        /* "encoder_hidden_states = encoder_hidden_states + c_gate_msa *
           context_attn_output" */
        SD_TRY_GOTO(s, sd_linear_gate_add(err, c, &ck[G_MSA], o, lx,
                                          blk->attn_c.out.w,
                                          blk->attn_c.out.b), done);
        SD_TRY_GOTO(s, sd_backend_lane(err, be, 0), done);
    }
    /* "hidden_states = hidden_states + gate_msa * attn_output" */
    SD_TRY_GOTO(s, sd_linear_gate_add(err, x, &k[G_MSA], o, 0,
                                      blk->attn_x.out.w, blk->attn_x.out.b),
                done);

    if (blk->dual) {
        /* "hidden_states = hidden_states + gate_msa2 * attn_output2":
           lane 1 done with attn2 (in its own buffers) or, in the joint
           buffers, with o, which attn2 then reuses */
        SD_TRY_GOTO(s, sd_backend_join(err, be), done);
        if (a->tx2 == NULL) {
            SD_TRY_GOTO(s, sd_mmdit_attn2(err, m, bi, &blk->attn2, a),
                        done);
        }
        SD_TRY_GOTO(s, sd_mmdit_attn2_add(err, m, &blk->attn2, a, x,
                                          &k[G_MSA2]), done);
    }

    if (!blk->pre_only) {
        /* lane 1: norm2_context, modulate, ff_context, "+ c_gate_mlp *
           context_ff_output" */
        SD_TRY_GOTO(s, sd_backend_lane(err, be, 1), done);
        nc = sd_mmdit_norm_out(blk->ff_context.proj.w, a->nc, a->nc8);
        SD_TRY_GOTO(s, sd_mmdit_norm_mod(err, nc, c, &ck[SH_MLP],
                                         &ck[SC_MLP]), done);
        SD_TRY_GOTO(s, sd_mmdit_ff_fwd(err, &blk->ff_context, nc, a->fc,
                                       NULL, c, &ck[G_MLP]), done);
        SD_TRY_GOTO(s, sd_backend_lane(err, be, 0), done);
    }

    /* "norm_hidden_states = self.norm2(hidden_states) * (1 + scale_mlp)
       + shift_mlp; hidden_states += gate_mlp * self.ff(...)" */
    hx = sd_mmdit_norm_out(blk->ff.proj.w, a->hx, a->hx8);
    SD_TRY_GOTO(s, sd_mmdit_norm_mod(err, hx, x, &k[SH_MLP], &k[SC_MLP]),
                done);
    SD_TRY_GOTO(s, sd_mmdit_ff_fwd(err, &blk->ff, hx, a->fx,
                                   sd_mmdit_ffh8(m, &blk->ff) ? a->fx8
                                                              : NULL,
                                   x, &k[G_MLP]), done);
    s = SD_OK;

done:
    /* both lanes done before anything is freed or reused: at once on an
       error or when this block made its own modulation; else lane 1's
       tail (the text stream's FF) runs on beside the next block's image
       stream, up to the join before its attention or the caller's */
    if ((s != SD_OK || mod || cmod || m->block_join)
        && sd_backend_join(err, be) != SD_OK && s == SD_OK)
    {
        s = err->status;
    }
    sd_tensor_free(mod);
    sd_tensor_free(cmod);
    return s;
}


/*
 * PatchEmbed.forward (embeddings.py) with pos_embed_max_size: conv with
 * kernel = stride = patch, "flatten(2).transpose(1, 2)", plus the stored
 * table center-cropped as cropped_pos_embed() does. Channels-last, the
 * conv's output (B, h, w, W) is already the token sequence.
 * x: (B, C, H, W) -> hs: (B, h * w, W) with h = H / p, w = W / p.
 */
static sd_status
sd_mmdit_patch_embed(sd_err *err, sd_mmdit *m, const sd_tensor *x,
    sd_tensor *hs)
{
    static const int  perm[4] = { 0, 2, 3, 1 };
    sd_tensor        *xt = NULL, *pos = NULL, hv;
    sd_status         s;
    int64_t           b = x->ne[0], p = m->info.patch_size;
    int64_t           h = x->ne[2] / p, w = x->ne[3] / p, n = h * w;
    int64_t           cw = m->info.width, max = m->info.pos_max;
    int64_t           top = (max - h) / 2, left = (max - w) / 2, bi;

    /* xt: (B, H, W, C) -> hs viewed (B, h, w, W) */
    SD_TRY_GOTO(s, sd_tensor_new4(err, m->be, b, x->ne[2], x->ne[3],
                                  x->ne[1], &xt), done);
    SD_TRY_GOTO(s, sd_permute(err, xt, x, perm), done);
    SD_TRY_GOTO(s, sd_tensor_view(err, hs, 0, 4,
                                  (int64_t[4]) { b, h, w, cw }, &hv), done);
    SD_TRY_GOTO(s, sd_conv2d(err, &hv, xt, m->patch.w, m->patch.b, (int) p,
                             0), done);

    /* pos: (h * w, W) = pos_embed.reshape(max, max, W)[top:top + h,
       left:left + w] */
    SD_TRY_GOTO(s, sd_tensor_new2(err, m->be, n, cw, &pos), done);
    SD_TRY_GOTO(s, sd_copy2d(err, pos, 0, w * cw, m->pos_embed,
                             (top * max + left) * cw, max * cw, h, w * cw),
                done);
    for (bi = 0; bi < b; bi++) {
        SD_TRY_GOTO(s, sd_tensor_view(err, hs, bi * n * cw, 2,
                                      (int64_t[2]) { n, cw }, &hv), done);
        SD_TRY_GOTO(s, sd_add(err, &hv, &hv, pos), done);
    }
    s = SD_OK;

done:
    sd_tensor_free(xt);
    sd_tensor_free(pos);
    return s;
}


/*
 * CombinedTimestepTextProjEmbeddings.forward: Timesteps(256,
 * flip_sin_to_cos=True, downscale_freq_shift=0) on the host (float32 as
 * get_timestep_embedding computes it), TimestepEmbedding (linear, silu,
 * linear) plus PixArtAlphaTextProjection (linear, silu, linear) of pooled.
 * t: B host floats, pooled: (B, P) -> temb: (B, W).
 */
static sd_status
sd_mmdit_time_text(sd_err *err, sd_mmdit *m, const float *t,
    const sd_tensor *pooled, sd_tensor *temb)
{
    sd_tensor  *ts = NULL, *h = NULL, *e = NULL;
    sd_status   s;
    float      *host = NULL, f, arg;
    int64_t     b = pooled->ne[0], w = m->info.width, bi;
    int         half = m->t_channels / 2, j;

    host = sd_malloc(err, (size_t) b * m->t_channels * sizeof(float),
                     "timestep embedding");
    if (host == NULL) {
        return SD_ERR_NOMEM;
    }
    /* emb = exp(-log(10000) * arange(half) / half); cat([cos, sin]) */
    for (j = 0; j < half; j++) {
        f = expf((float) -log(SD_MMDIT_MAX_PERIOD) * (float) j
                 / (float) half);
        for (bi = 0; bi < b; bi++) {
            arg = t[bi] * f;
            host[bi * m->t_channels + j] = (float) cos((double) arg);
            host[bi * m->t_channels + half + j] = (float) sin((double) arg);
        }
    }

    /* ts: (B, 256); h, e: (B, W) */
    SD_TRY_GOTO(s, sd_tensor_new2(err, m->be, b, m->t_channels, &ts), done);
    SD_TRY_GOTO(s, sd_tensor_upload(err, ts, host), done);
    SD_TRY_GOTO(s, sd_tensor_new2(err, m->be, b, w, &h), done);
    SD_TRY_GOTO(s, sd_tensor_new2(err, m->be, b, w, &e), done);

    SD_TRY_GOTO(s, sd_mmdit_linear_fwd(err, h, ts, &m->t_lin1), done);
    SD_TRY_GOTO(s, sd_act_apply(err, h, h, SD_ACT_SILU), done);
    SD_TRY_GOTO(s, sd_mmdit_linear_fwd(err, temb, h, &m->t_lin2), done);

    SD_TRY_GOTO(s, sd_mmdit_linear_fwd(err, h, pooled, &m->p_lin1), done);
    SD_TRY_GOTO(s, sd_act_apply(err, h, h, SD_ACT_SILU), done);
    SD_TRY_GOTO(s, sd_mmdit_linear_fwd(err, e, h, &m->p_lin2), done);

    /* "conditioning = timesteps_emb + pooled_projections" */
    SD_TRY_GOTO(s, sd_add(err, temb, temb, e), done);
    s = SD_OK;

done:
    free(host);
    sd_tensor_free(ts);
    sd_tensor_free(h);
    sd_tensor_free(e);
    return s;
}


/*
 * norm_out (AdaLayerNormContinuous: chunks scale, shift), proj_out and the
 * unpatchify of SD3Transformer2DModel.forward:
 * "reshape(n, h, w, p, q, c); einsum('nhwpqc->nchpwq')", done as two
 * permutes of at most 4 dimensions.
 * hs: (B, h * w, W) -> out: (B, C, h * p, w * p).
 */
static sd_status
sd_mmdit_final(sd_err *err, sd_mmdit *m, const sd_tensor *hs,
    const sd_mmdit_mods *src, int64_t h, int64_t w, sd_tensor *out)
{
    static const int  perm3[3] = { 0, 2, 1 };
    static const int  perm4[4] = { 0, 2, 1, 3 };
    sd_tensor        *mod = NULL, *n = NULL, *po = NULL, *tc = NULL;
    sd_tensor         scale, shift, ov, mv;
    sd_status         s;
    int64_t           b = hs->ne[0], l = hs->ne[1], p = m->info.patch_size;
    int64_t           c = m->info.out_channels;

    SD_TRY_GOTO(s, sd_mmdit_mod_get(err, m, src, &m->norm_out, -1, 0, &mod,
                                    &mv), done);
    SD_TRY_GOTO(s, sd_mmdit_chunk(err, &mv, 0, &scale), done);
    SD_TRY_GOTO(s, sd_mmdit_chunk(err, &mv, 1, &shift), done);

    /* n: (B, L, W); po: (B, L, p * p * C) */
    SD_TRY_GOTO(s, sd_tensor_new3(err, m->be, b, l, m->info.width, &n), done);
    SD_TRY_GOTO(s, sd_mmdit_norm_mod(err, n, hs, &shift, &scale), done);
    SD_TRY_GOTO(s, sd_tensor_new3(err, m->be, b, l, p * p * c, &po), done);
    SD_TRY_GOTO(s, sd_mmdit_linear_fwd(err, po, n, &m->proj_out), done);

    /* (B, h w p q, C) -> tc: (B, C, h w p q) */
    SD_TRY_GOTO(s, sd_tensor_reshape(err, po, 3,
                                     (int64_t[3]) { b, l * p * p, c }),
                done);
    SD_TRY_GOTO(s, sd_tensor_new3(err, m->be, b, c, l * p * p, &tc), done);
    SD_TRY_GOTO(s, sd_permute(err, tc, po, perm3), done);

    /* (B C h, w, p, q) -> out: (B C h, p, w, q) = (B, C, h p, w q) */
    SD_TRY_GOTO(s, sd_tensor_reshape(err, tc, 4,
                                     (int64_t[4]) { b * c * h, w, p, p }),
                done);
    SD_TRY_GOTO(s, sd_tensor_view(err, out, 0, 4,
                                  (int64_t[4]) { b * c * h, p, w, p }, &ov),
                done);
    SD_TRY_GOTO(s, sd_permute(err, &ov, tc, perm4), done);
    s = SD_OK;

done:
    sd_tensor_free(mod);
    sd_tensor_free(n);
    sd_tensor_free(po);
    sd_tensor_free(tc);
    return s;
}


/* The latent x: (B, C, H, W) and out of the same shape, for this model. */
static sd_status
sd_mmdit_check_x(sd_err *err, const sd_mmdit *m, const sd_tensor *x,
    const sd_tensor *out)
{
    const sd_mmdit_info  *in = &m->info;

    if (x->ndim != 4 || x->ne[1] != in->in_channels
        || x->ne[2] % in->patch_size || x->ne[3] % in->patch_size
        || x->ne[2] == 0 || x->ne[3] == 0)
    {
        return sd_errorf(err, SD_ERR_INVALID, "transformer: latent must be "
                         "(B, %d, H, W) with H, W multiples of %d",
                         in->in_channels, in->patch_size);
    }
    if (x->ne[2] / in->patch_size > in->pos_max
        || x->ne[3] / in->patch_size > in->pos_max)
    {
        return sd_errorf(err, SD_ERR_INVALID, "transformer: latent %lldx%lld "
                         "exceeds the position table (%d patches of %d)",
                         (long long) x->ne[2], (long long) x->ne[3],
                         in->pos_max, in->patch_size);
    }
    if (out->ndim != 4 || out->ne[0] != x->ne[0]
        || out->ne[1] != in->out_channels
        || out->ne[2] != x->ne[2] || out->ne[3] != x->ne[3])
    {
        return sd_errorf(err, SD_ERR_INVALID, "transformer: output must be "
                         "(%lld, %d, %lld, %lld)", (long long) x->ne[0],
                         in->out_channels, (long long) x->ne[2],
                         (long long) x->ne[3]);
    }
    return SD_OK;
}


static sd_status
sd_mmdit_check_args(sd_err *err, const sd_mmdit *m, const sd_tensor *x,
    const float *t, const sd_tensor *context, const sd_tensor *pooled,
    const int *skip, int n_skip, const sd_tensor *out)
{
    const sd_mmdit_info  *in = &m->info;
    int64_t               b;
    int                   i;

    SD_TRY(sd_mmdit_check_x(err, m, x, out));
    b = x->ne[0];
    if (context->ndim != 3 || context->ne[0] != b
        || context->ne[2] != in->joint_dim || context->ne[1] < 1
        || sd_numel(pooled) != b * in->pooled_dim || pooled->ne[0] != b)
    {
        return sd_errorf(err, SD_ERR_INVALID, "transformer: context must be "
                         "(%lld, L, %d) and pooled (%lld, %d)", (long long) b,
                         in->joint_dim, (long long) b, in->pooled_dim);
    }
    if (t == NULL || n_skip < 0 || (n_skip > 0 && skip == NULL)) {
        return sd_errorf(err, SD_ERR_INVALID, "transformer: no timesteps or "
                         "bad skip list");
    }
    for (i = 0; i < n_skip; i++) {
        if (skip[i] < 0 || skip[i] >= in->num_layers) {
            return sd_errorf(err, SD_ERR_INVALID, "transformer: skip layer %d "
                             "outside 0..%d", skip[i], in->num_layers - 1);
        }
    }
    return SD_OK;
}


/*
 * SD3Transformer2DModel.forward after the embeddings: patch embedding,
 * the blocks, the final norm. c: (B, Lc, W), the embedded context, is
 * updated in place.
 */
static sd_status
sd_mmdit_run(sd_err *err, sd_mmdit *m, const sd_tensor *x, sd_tensor *c,
    const sd_mmdit_mods *src, const int *skip, int n_skip, sd_tensor *out)
{
    sd_tensor      *hs = NULL;
    sd_mmdit_acts   acts;
    sd_status       s;
    int64_t         b = x->ne[0], h, w;
    int             i, j, skipped;

    memset(&acts, 0, sizeof(acts));
    h = x->ne[2] / m->info.patch_size;
    w = x->ne[3] / m->info.patch_size;

    /* "hidden_states = self.pos_embed(hidden_states)": hs: (B, h w, W) */
    SD_TRY_GOTO(s, sd_tensor_new3(err, m->be, b, h * w, m->info.width, &hs),
                done);
    SD_TRY_GOTO(s, sd_mmdit_patch_embed(err, m, x, hs), done);
    SD_TRY_GOTO(s, sd_mmdit_acts_new(err, m, b, h * w, c->ne[1], &acts),
                done);

    /* the blocks; "is_skip = index_block in skip_layers": pass through */
    for (i = 0; i < m->info.num_layers; i++) {
        skipped = 0;
        for (j = 0; j < n_skip; j++) {
            skipped |= (skip[j] == i);
        }
        if (!skipped) {
            SD_TRY_GOTO(s, sd_mmdit_block_fwd(err, m, i, hs, c, src, &acts),
                        done);
        }
    }
    /* the last block's lane 1 done before its buffers go */
    SD_TRY_GOTO(s, sd_backend_join(err, m->be), done);
    sd_mmdit_acts_free(&acts);

    /* norm_out, proj_out, unpatchify: out: (B, C, H, W) */
    SD_TRY_GOTO(s, sd_mmdit_final(err, m, hs, src, h, w, out), done);
    s = SD_OK;

done:
    sd_mmdit_acts_free(&acts);
    sd_tensor_free(hs);
    return s;
}


/* SD3Transformer2DModel.forward */
sd_status
sd_mmdit_forward(sd_err *err, sd_mmdit *m, const sd_tensor *x,
    const float *t, const sd_tensor *context, const sd_tensor *pooled,
    const int *skip, int n_skip, sd_tensor *out)
{
    sd_tensor      *c = NULL, *temb = NULL, *temb_silu = NULL;
    sd_mmdit_mods   src;
    sd_status       s;
    int64_t         b, cw = m->info.width;

    SD_TRY(sd_mmdit_check_args(err, m, x, t, context, pooled, skip, n_skip,
                               out));
    b = x->ne[0];

    /* "temb = self.time_text_embed(timestep, pooled_projections)": (B, W);
       every adaLN applies silu to it first, so do that once */
    SD_TRY_GOTO(s, sd_tensor_new2(err, m->be, b, cw, &temb), done);
    SD_TRY_GOTO(s, sd_mmdit_time_text(err, m, t, pooled, temb), done);
    SD_TRY_GOTO(s, sd_tensor_new2(err, m->be, b, cw, &temb_silu), done);
    SD_TRY_GOTO(s, sd_act_apply(err, temb_silu, temb, SD_ACT_SILU), done);

    /* "encoder_hidden_states = self.context_embedder(...)": (B, Lc, W) */
    SD_TRY_GOTO(s, sd_tensor_new3(err, m->be, b, context->ne[1], cw, &c),
                done);
    SD_TRY_GOTO(s, sd_mmdit_linear_fwd(err, c, context, &m->context_embedder),
                done);

    src.temb_silu = temb_silu;
    src.cache = NULL;
    src.step = 0;
    s = sd_mmdit_run(err, m, x, c, &src, skip, n_skip, out);

done:
    sd_tensor_free(c);
    sd_tensor_free(temb);
    sd_tensor_free(temb_silu);
    return s;
}


/* the step cache's tensors, newest first (the arena's order) */
static void
sd_mmdit_fb_free(sd_mmdit_cache *cache)
{
    sd_tensor_free(cache->meas);
    sd_tensor_free(cache->hs1n);
    sd_tensor_free(cache->rest);
    sd_tensor_free(cache->r1_full);
    sd_tensor_free(cache->r1);
    sd_tensor_free(cache->cx);
    sd_tensor_free(cache->hs);
    cache->meas = cache->hs1n = cache->rest = cache->r1_full = NULL;
    cache->r1 = cache->cx = cache->hs = NULL;
}


void
sd_mmdit_cache_free(sd_mmdit_cache *cache)
{
    if (cache == NULL) {
        return;
    }
    sd_mmdit_fb_free(cache);
    sd_tensor_free(cache->all);
    sd_tensor_free(cache->cur);
    sd_tensor_free(cache->pooled);
    sd_tensor_free(cache->ctx);
    free(cache->t);
    free(cache);
}


void
sd_mmdit_cache_set_step_cache(sd_mmdit_cache *cache, float thr)
{
    cache->thr = thr > 0.0f ? thr : 0.0f;
}


void
sd_mmdit_cache_drop_step_cache(sd_mmdit_cache *cache)
{
    if (cache) {
        sd_mmdit_fb_free(cache);
    }
}


int
sd_mmdit_cache_steps_cached(const sd_mmdit_cache *cache)
{
    return cache ? cache->cached : 0;
}


int
sd_mmdit_cache_step_cache_on(const sd_mmdit_cache *cache)
{
    return cache && cache->thr > 0.0f;
}


/* lin(temb_silu): (S B, n W) into all[:S, off : off + n B W] as (S, n, B,
   W), S = the steps filled */
static sd_status
sd_mmdit_cache_mod(sd_err *err, sd_mmdit *m, const sd_mmdit_linear *lin,
    const sd_tensor *temb_silu, sd_mmdit_cache *cache, int64_t off)
{
    static const int  perm[4] = { 0, 2, 1, 3 };
    sd_tensor        *mod = NULL, *tmp = NULL;
    sd_status         s;
    int64_t           w = m->info.width, n = lin->w->ne[0] / w;
    int64_t           b = cache->batch, steps = temb_silu->ne[0] / b;

    SD_TRY(sd_tensor_new2(err, m->be, steps * b, n * w, &mod));
    s = sd_mmdit_linear_fwd(err, mod, temb_silu, lin);
    if (s == SD_OK) {
        s = sd_tensor_reshape(err, mod, 4, (int64_t[4]) { steps, b, n, w });
    }
    if (s == SD_OK) {
        s = sd_tensor_new4(err, m->be, steps, n, b, w, &tmp);
    }
    if (s == SD_OK) {
        s = sd_permute(err, tmp, mod, perm);
    }
    if (s == SD_OK) {
        s = sd_copy2d(err, cache->all, off, cache->per_step, tmp, 0,
                      n * b * w, steps, n * b * w);
    }
    sd_tensor_free(tmp);
    sd_tensor_free(mod);
    return s;
}


/* every block's modulations and the final norm's from temb_silu into the
   cache's rows: device work only, recorded (sd_backend_replay) */
typedef struct {
    sd_mmdit            *m;
    const sd_tensor     *temb_silu;
    sd_mmdit_cache      *cache;
} sd_mmdit_fill;


static sd_status
sd_mmdit_cache_mods(sd_err *err, void *data)
{
    sd_mmdit_fill   *f = data;
    sd_mmdit        *m = f->m;
    sd_mmdit_cache  *cache = f->cache;
    int              i;

    for (i = 0; i < cache->layers; i++) {
        SD_TRY(sd_mmdit_cache_mod(err, m, &m->blocks[i].norm1, f->temb_silu,
                                  cache, cache->moff[i]));
        SD_TRY(sd_mmdit_cache_mod(err, m, &m->blocks[i].norm1_context,
                                  f->temb_silu, cache, cache->coff[i]));
    }
    return sd_mmdit_cache_mod(err, m, &m->norm_out, f->temb_silu, cache,
                              cache->foff);
}


/* Rows 0.. of all for steps c0 .. c0 + C - 1 (those the schedule has) */
static sd_status
sd_mmdit_cache_fill(sd_err *err, sd_mmdit *m, sd_mmdit_cache *cache, int c0)
{
    sd_tensor      *prep = NULL, *temb = NULL, *temb_silu = NULL;
    sd_mmdit_fill   fill;
    const void     *key[4];
    float          *ts;
    sd_status       s;
    int64_t         b = cache->batch, cw = m->info.width;
    int64_t         np = sd_numel(cache->pooled);
    int             n = cache->steps - c0, i, k;

    n = n < cache->chunk ? n : cache->chunk;
    ts = sd_malloc(err, (size_t) n * b * sizeof(float), "timesteps");
    if (ts == NULL) {
        return SD_ERR_NOMEM;
    }
    /* rows s B + j: step c0 + s, batch j: its timestep, pooled[j] */
    for (i = 0; i < n; i++) {
        for (k = 0; k < b; k++) {
            ts[i * b + k] = cache->t[c0 + i];
        }
    }
    SD_TRY_GOTO(s, sd_tensor_new2(err, m->be, n * b, cache->pooled->ne[1],
                                  &prep), done);
    for (i = 0; i < n; i++) {
        SD_TRY_GOTO(s, sd_copy2d(err, prep, i * np, 0, cache->pooled, 0, 0,
                                 1, np), done);
    }
    SD_TRY_GOTO(s, sd_tensor_new2(err, m->be, n * b, cw, &temb), done);
    SD_TRY_GOTO(s, sd_mmdit_time_text(err, m, ts, prep, temb), done);
    SD_TRY_GOTO(s, sd_tensor_new2(err, m->be, n * b, cw, &temb_silu), done);
    SD_TRY_GOTO(s, sd_act_apply(err, temb_silu, temb, SD_ACT_SILU), done);
    /* ~230 ops queued one by one took ~2.7 ms of the host per image (the
       GPU's part is far less): a recording of them replays for the next
       image with the same buffers */
    fill.m = m;
    fill.temb_silu = temb_silu;
    fill.cache = cache;
    memset(key, 0, sizeof(key));
    key[0] = temb_silu->data;
    key[1] = cache->all->data;
    key[2] = (const void *) (uintptr_t) (sd_numel(temb_silu) << 16
                                         | (int64_t) cache->layers);
    key[3] = (const void *) (uintptr_t) cache->per_step;
    SD_TRY_GOTO(s, sd_backend_replay(err, m->be, &m->rec_mods, key,
                                     sizeof(key), sd_mmdit_cache_mods,
                                     &fill), done);
    cache->c0 = c0;
    s = SD_OK;

done:
    if (s != SD_OK) {
        cache->c0 = -1;                 /* no rows to trust */
    }
    sd_tensor_free(prep);
    sd_tensor_free(temb);
    sd_tensor_free(temb_silu);
    free(ts);
    return s;
}


sd_status
sd_mmdit_cache_new(sd_err *err, sd_mmdit *m, const float *t, int steps,
    const sd_tensor *context, const sd_tensor *pooled, sd_mmdit_cache **out)
{
    sd_mmdit_cache  *cache;
    sd_status        s;
    int64_t          b = pooled->ne[0], cw = m->info.width, p = 0;
    int              i, nl = m->info.num_layers;

    *out = NULL;
    if (steps < 1 || pooled->ndim != 2 || context->ndim != 3
        || context->ne[0] != b)
    {
        return sd_errorf(err, SD_ERR_INVALID, "transformer cache: %d steps, "
                         "pooled and context of other batches", steps);
    }
    cache = sd_calloc(err, 1, sizeof(*cache) + 2 * nl * sizeof(int64_t),
                      "transformer cache");
    if (cache == NULL) {
        return SD_ERR_NOMEM;
    }
    cache->t = sd_malloc(err, (size_t) steps * sizeof(float), "timesteps");
    if (cache->t == NULL) {
        free(cache);
        return SD_ERR_NOMEM;
    }
    memcpy(cache->t, t, (size_t) steps * sizeof(float));
    cache->steps = steps;
    cache->chunk = steps < SD_MMDIT_CACHE_STEPS ? steps
                                                 : SD_MMDIT_CACHE_STEPS;
    cache->c0 = -1;
    cache->layers = nl;
    cache->batch = b;
    cache->moff = (int64_t *) (cache + 1);
    cache->coff = cache->moff + nl;

    /* one step's row: each modulation (n, B, W) in turn */
    for (i = 0; i < nl; i++) {
        cache->moff[i] = p;
        p += m->blocks[i].norm1.w->ne[0] * b;
        cache->coff[i] = p;
        p += m->blocks[i].norm1_context.w->ne[0] * b;
    }
    cache->foff = p;
    p += m->norm_out.w->ne[0] * b;
    cache->per_step = p;
    SD_TRY_GOTO(s, sd_tensor_new2(err, m->be, cache->chunk, p, &cache->all),
                fail);
    SD_TRY_GOTO(s, sd_tensor_new2(err, m->be, 1, p, &cache->cur), fail);
    SD_TRY_GOTO(s, sd_tensor_new2(err, m->be, b, pooled->ne[1],
                                  &cache->pooled), fail);
    SD_TRY_GOTO(s, sd_copy2d(err, cache->pooled, 0, 0, pooled, 0, 0, 1,
                             sd_numel(pooled)), fail);
    SD_TRY_GOTO(s, sd_mmdit_cache_fill(err, m, cache, 0), fail);

    SD_TRY_GOTO(s, sd_tensor_new3(err, m->be, b, context->ne[1], cw,
                                  &cache->ctx), fail);
    SD_TRY_GOTO(s, sd_mmdit_linear_fwd(err, cache->ctx, context,
                                       &m->context_embedder), fail);
    *out = cache;
    return SD_OK;

fail:
    sd_mmdit_cache_free(cache);
    return s;
}


/* One recorded step: everything it reads and writes is in device memory. */
typedef struct {
    sd_mmdit               *m;
    const sd_tensor        *x;
    sd_mmdit_cache         *cache;
    sd_tensor              *out;
} sd_mmdit_step;


static sd_status
sd_mmdit_step_run(sd_err *err, void *data)
{
    sd_mmdit_step  *st = data;
    sd_tensor      *c = NULL;
    sd_mmdit_mods   src;
    sd_status       s;

    /* the blocks update the context stream: a copy per step */
    SD_TRY(sd_tensor_new(err, st->m->be, 3, st->cache->ctx->ne, &c));
    s = sd_copy2d(err, c, 0, 0, st->cache->ctx, 0, 0, 1, sd_numel(c));
    if (s == SD_OK) {
        src.temb_silu = NULL;
        src.cache = st->cache;
        src.step = 0;
        s = sd_mmdit_run(err, st->m, st->x, c, &src, NULL, 0, st->out);
    }
    sd_tensor_free(c);
    return s;
}


/* Step caching: blocks [i0, i1) over cache->hs / cx, this step's mods */
static sd_status
sd_mmdit_fb_blocks(sd_err *err, sd_mmdit_step *st, int i0, int i1)
{
    sd_mmdit_cache  *k = st->cache;
    sd_mmdit_acts    acts;
    sd_mmdit_mods    src;
    sd_status        s = SD_OK;
    int              i;

    memset(&acts, 0, sizeof(acts));
    src.temb_silu = NULL;
    src.cache = k;
    src.step = 0;
    SD_TRY(sd_mmdit_acts_new(err, st->m, k->hs->ne[0], k->hs->ne[1],
                             k->cx->ne[1], &acts));
    for (i = i0; i < i1 && s == SD_OK; i++) {
        s = sd_mmdit_block_fwd(err, st->m, i, k->hs, k->cx, &src, &acts);
    }
    if (s == SD_OK) {
        s = sd_backend_join(err, st->m->be);
    }
    sd_mmdit_acts_free(&acts);
    return s;
}


/* Step caching: the final layer of cache->hs into the step's output */
static sd_status
sd_mmdit_fb_final(sd_err *err, sd_mmdit_step *st)
{
    sd_mmdit_mods  src;
    int64_t        p = st->m->info.patch_size;

    src.temb_silu = NULL;
    src.cache = st->cache;
    src.step = 0;
    return sd_mmdit_final(err, st->m, st->cache->hs, &src, st->x->ne[2] / p,
                          st->x->ne[3] / p, st->out);
}


/*
 * Step caching, part 1 (recorded): the context stream's copy, the patch
 * embedding and the first block into cache->hs / cx; r1 = hs after the
 * block - hs before it; hs1n = -hs.
 */
static sd_status
sd_mmdit_fb_first(sd_err *err, void *data)
{
    sd_mmdit_step   *st = data;
    sd_mmdit_cache  *k = st->cache;

    SD_TRY(sd_copy2d(err, k->cx, 0, 0, k->ctx, 0, 0, 1, sd_numel(k->cx)));
    SD_TRY(sd_mmdit_patch_embed(err, st->m, st->x, k->hs));
    SD_TRY(sd_scale(err, k->r1, k->hs, -1.0f, 0.0f));
    SD_TRY(sd_mmdit_fb_blocks(err, st, 0, 1));
    SD_TRY(sd_add(err, k->r1, k->r1, k->hs));
    return sd_scale(err, k->hs1n, k->hs, -1.0f, 0.0f);
}


/* Part 2, a full step (recorded): the other blocks, their residual kept,
   the final layer */
static sd_status
sd_mmdit_fb_rest(sd_err *err, void *data)
{
    sd_mmdit_step   *st = data;
    sd_mmdit_cache  *k = st->cache;

    SD_TRY(sd_mmdit_fb_blocks(err, st, 1, st->m->info.num_layers));
    SD_TRY(sd_add(err, k->rest, k->hs, k->hs1n));
    SD_TRY(sd_copy2d(err, k->r1_full, 0, 0, k->r1, 0, 0, 1,
                     sd_numel(k->r1)));
    return sd_mmdit_fb_final(err, st);
}


/* Part 2, a reused step (recorded): hs after the first block + the last
   full step's residual of the others, the final layer */
static sd_status
sd_mmdit_fb_reuse(sd_err *err, void *data)
{
    sd_mmdit_step   *st = data;

    SD_TRY(sd_add(err, st->cache->hs, st->cache->hs, st->cache->rest));
    return sd_mmdit_fb_final(err, st);
}


/*
 * A step with step caching: part 1, then the host reads the change of the
 * first block's residual since the last full step and runs the other
 * blocks, or reuses their residual when the change is below the
 * threshold (from the third step on, at most 3 in a row, never the last;
 * the first two steps are full). The step cache's tensors are taken on
 * the first step, before the step's own; if the workspace cannot hold
 * them, caching turns off for this image.
 */
static sd_status
sd_mmdit_forward_fb(sd_err *err, sd_mmdit *m, const sd_tensor *x,
    sd_mmdit_cache *k, int step, sd_mmdit_step *st, const void **key,
    size_t key_len)
{
    int64_t    b = x->ne[0], l, w = m->info.width;
    float      meas[2] = { 1.0f, 0.0f };
    int        reuse;
    sd_err     e2 = {0};

    if (k->hs == NULL) {
        l = (x->ne[2] / m->info.patch_size) * (x->ne[3] / m->info.patch_size);
        if (sd_tensor_new3(&e2, m->be, b, l, w, &k->hs) != SD_OK
            || sd_tensor_new(&e2, m->be, 3, k->ctx->ne, &k->cx) != SD_OK
            || sd_tensor_new3(&e2, m->be, b, l, w, &k->r1) != SD_OK
            || sd_tensor_new3(&e2, m->be, b, l, w, &k->r1_full) != SD_OK
            || sd_tensor_new3(&e2, m->be, b, l, w, &k->rest) != SD_OK
            || sd_tensor_new3(&e2, m->be, b, l, w, &k->hs1n) != SD_OK
            || sd_tensor_new_as(&e2, m->be, SD_MEM_ACT, SD_DT_F32, 1,
                                (int64_t[1]) { 2 }, &k->meas) != SD_OK)
        {
            /* no room: this image runs without */
            sd_mmdit_fb_free(k);
            k->thr = 0.0f;
            return sd_backend_replay(err, m->be, &m->rec, key, key_len,
                                     sd_mmdit_step_run, st);
        }
    }
    key[6] = k->hs->data;
    key[7] = k->rest->data;
    SD_TRY(sd_backend_replay(err, m->be, &m->rec_fb[0], key, key_len,
                             sd_mmdit_fb_first, st));

    /* meas = (|r1 - r1_full|, |r1_full|), where a reuse may follow (r1_full
       is written by then) */
    reuse = step >= 2 && k->full_steps >= 2 && step < k->steps - 1
            && k->run < 3;
    if (reuse) {
        SD_TRY(sd_abs_diff_sum(err, k->meas, k->r1, k->r1_full));
        SD_TRY(sd_tensor_download(err, k->meas, meas));
        reuse = meas[1] > 0.0f && meas[0] < k->thr * meas[1];
    }
    if (reuse) {
        k->run++;
        k->cached++;
        return sd_backend_replay(err, m->be, &m->rec_fb[2], key, key_len,
                                 sd_mmdit_fb_reuse, st);
    }
    k->run = 0;
    k->full_steps++;
    return sd_backend_replay(err, m->be, &m->rec_fb[1], key, key_len,
                             sd_mmdit_fb_rest, st);
}


sd_status
sd_mmdit_forward_cached(sd_err *err, sd_mmdit *m, const sd_tensor *x,
    sd_mmdit_cache *cache, int step, sd_tensor *out)
{
    sd_mmdit_step  st;
    const void    *key[8];

    if (step < 0 || step >= cache->steps || x->ndim != 4
        || x->ne[0] != cache->batch)
    {
        return sd_errorf(err, SD_ERR_INVALID, "transformer: step %d of a "
                         "cache of %d, batch %lld", step, cache->steps,
                         (long long) cache->batch);
    }
    SD_TRY(sd_mmdit_check_x(err, m, x, out));

    /* this step's modulations where every step reads them (the rows
       refilled from this step on when it is past those held) */
    if (cache->c0 < 0 || step < cache->c0
        || step >= cache->c0 + cache->chunk)
    {
        SD_TRY(sd_mmdit_cache_fill(err, m, cache, step));
    }
    SD_TRY(sd_copy2d(err, cache->cur, 0, 0, cache->all,
                     (step - cache->c0) * cache->per_step, 0, 1,
                     cache->per_step));

    /* the same buffers and sizes replay the same recording */
    st.m = m;
    st.x = x;
    st.cache = cache;
    st.out = out;
    memset(key, 0, sizeof(key));
    key[0] = x->data;
    key[1] = out->data;
    key[2] = cache->cur->data;
    key[3] = cache->ctx->data;
    key[4] = (const void *) (uintptr_t) (x->ne[2] << 32 | x->ne[3]);
    key[5] = (const void *) (uintptr_t) (cache->ctx->ne[1] << 8
                                         | (int64_t) x->ne[0]);
    if (cache->thr > 0.0f) {
        return sd_mmdit_forward_fb(err, m, x, cache, step, &st, key,
                                   sizeof(key));
    }
    return sd_backend_replay(err, m->be, &m->rec, key, sizeof(key),
                             sd_mmdit_step_run, &st);
}
