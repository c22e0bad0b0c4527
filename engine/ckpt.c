/*
 * ckpt.c: FP8 checkpoints (ComfyUI scaled_fp8 and comfy_quant forms, plain
 * casts), the SAI / ComfyUI single-file layout under diffusers names,
 * quantize-at-load and the FP8 writer in ComfyUI's naming.
 *
 * Invariant: nothing here copies a weight that can be a view: split qkv
 * rows and prefix-stripped names point into the file mapping (with the
 * scale pointer advanced for per-row scales); only the adaLN weights whose
 * shift / scale halves diffusers swaps are copied, into memory the sd_st
 * owns. The MMDiT key map is one table used both ways (reader and writer);
 * it follows diffusers' convert_sd3_transformer_checkpoint_to_diffusers.
 */

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cJSON.h>

#include "ckpt.h"
#include "fp8.h"
#include "fp8_policy.h"


#define SD_CKPT_NAME  512

#define SD_CKPT_MMDIT_PREFIX  "model.diffusion_model."


/* swap: 1 always, 2 in the last joint block only (its pre-only context) */
typedef struct {
    const char     *orig;
    const char     *diff[3];        /* 1 part, or q, k, v of a fused qkv */
    int             swap;
} sd_ckpt_rule;


static const sd_ckpt_rule  sd_ckpt_top_rules[] = {
    { "x_embedder.proj",     { "pos_embed.proj" }, 0 },
    { "t_embedder.mlp.0",    { "time_text_embed.timestep_embedder.linear_1" },
                                                   0 },
    { "t_embedder.mlp.2",    { "time_text_embed.timestep_embedder.linear_2" },
                                                   0 },
    { "y_embedder.mlp.0",    { "time_text_embed.text_embedder.linear_1" }, 0 },
    { "y_embedder.mlp.2",    { "time_text_embed.text_embedder.linear_2" }, 0 },
    { "context_embedder",    { "context_embedder" }, 0 },
    { "final_layer.linear",  { "proj_out" }, 0 },
    { "final_layer.adaLN_modulation.1", { "norm_out.linear" }, 1 },
    { NULL, { NULL }, 0 }
};


static const sd_ckpt_rule  sd_ckpt_block_rules[] = {
    { "x_block.attn.qkv",
      { "attn.to_q", "attn.to_k", "attn.to_v" }, 0 },
    { "context_block.attn.qkv",
      { "attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj" }, 0 },
    { "x_block.attn2.qkv",
      { "attn2.to_q", "attn2.to_k", "attn2.to_v" }, 0 },
    { "x_block.attn.ln_q",             { "attn.norm_q" }, 0 },
    { "x_block.attn.ln_k",             { "attn.norm_k" }, 0 },
    { "context_block.attn.ln_q",       { "attn.norm_added_q" }, 0 },
    { "context_block.attn.ln_k",       { "attn.norm_added_k" }, 0 },
    { "x_block.attn2.ln_q",            { "attn2.norm_q" }, 0 },
    { "x_block.attn2.ln_k",            { "attn2.norm_k" }, 0 },
    { "x_block.attn.proj",             { "attn.to_out.0" }, 0 },
    { "context_block.attn.proj",       { "attn.to_add_out" }, 0 },
    { "x_block.attn2.proj",            { "attn2.to_out.0" }, 0 },
    { "x_block.adaLN_modulation.1",    { "norm1.linear" }, 0 },
    { "context_block.adaLN_modulation.1", { "norm1_context.linear" }, 2 },
    { "x_block.mlp.fc1",               { "ff.net.0.proj" }, 0 },
    { "x_block.mlp.fc2",               { "ff.net.2" }, 0 },
    { "context_block.mlp.fc1",         { "ff_context.net.0.proj" }, 0 },
    { "context_block.mlp.fc2",         { "ff_context.net.2" }, 0 },
    { NULL, { NULL }, 0 }
};


static const struct {
    const char     *component;
    const char     *prefix;
} sd_ckpt_text_prefixes[] = {
    { "text_encoder",   "text_encoders.clip_l.transformer." },
    { "text_encoder_2", "text_encoders.clip_g.transformer." },
    { "text_encoder_3", "text_encoders.t5xxl.transformer." },
};

#define SD_CKPT_NTEXT \
    (sizeof(sd_ckpt_text_prefixes) / sizeof(sd_ckpt_text_prefixes[0]))


static int
sd_ckpt_is_fp8(sd_dtype dt)
{
    return dt == SD_DT_F8_E4M3 || dt == SD_DT_F8_E5M2;
}


static int
sd_ckpt_is_float(sd_dtype dt)
{
    return dt == SD_DT_F32 || dt == SD_DT_BF16 || dt == SD_DT_F16;
}


static void
sd_ckpt_shape_str(char *buf, size_t len, const sd_st_tensor *t)
{
    int     k;
    size_t  n;

    n = (size_t) snprintf(buf, len, "[");
    for (k = 0; k < t->ndim && n < len; k++) {
        n += (size_t) snprintf(buf + n, len - n, "%s%lld", k ? ", " : "",
                               (long long) t->shape[k]);
    }
    if (n < len) {
        snprintf(buf + n, len - n, "]");
    }
}


/* ---- scales ---------------------------------------------------------- */


/* The scale tensor s of weight w: 1 value, or 1 per row ([N] or [N, 1]). */
static sd_status
sd_ckpt_read_scale(sd_err *err, sd_st *st, const sd_st_tensor *w,
    const sd_st_tensor *s, int per_row_ok, float **vals, int64_t *n)
{
    char     shape[128];
    float   *v;
    int64_t  i, rows;
    int      fits;

    if (!sd_ckpt_is_float(s->dtype)) {
        return sd_errorf(err, SD_ERR_FORMAT, "\"%s\": tensor \"%s\": scale "
                         "dtype %s, expected F32", s->file, s->name,
                         sd_dtype_name(s->dtype));
    }

    rows = w->ndim >= 1 ? w->shape[0] : 1;
    fits = s->numel == 1
           || (per_row_ok && s->numel == rows
               && (s->ndim == 1 || (s->ndim == 2 && s->shape[1] == 1)));
    if (!fits) {
        sd_ckpt_shape_str(shape, sizeof(shape), s);
        return sd_errorf(err, SD_ERR_FORMAT, "\"%s\": tensor \"%s\": shape "
                         "%s does not fit weight \"%s\" (%lld rows): one "
                         "value%s expected", s->file, s->name, shape, w->name,
                         (long long) rows,
                         per_row_ok ? " or one per row" : "");
    }

    v = sd_st_hold(err, st, (size_t) s->numel * sizeof(float), "fp8 scales");
    if (v == NULL) {
        return SD_ERR_NOMEM;
    }
    SD_TRY(sd_st_read_f32(err, s, v));

    for (i = 0; i < s->numel; i++) {
        if (!isfinite(v[i]) || !(v[i] > 0.0f)) {
            return sd_errorf(err, SD_ERR_FORMAT, "\"%s\": tensor \"%s\": "
                             "value %g at %lld is not a positive finite "
                             "scale", s->file, s->name, (double) v[i],
                             (long long) i);
        }
    }

    *vals = v;
    *n = s->numel;
    return SD_OK;
}


/* <layer>.comfy_quant: U8 bytes of {"format": "float8_e4m3fn" | ...}. */
static sd_status
sd_ckpt_check_quant(sd_err *err, const sd_st_tensor *cq,
    const sd_st_tensor *w)
{
    cJSON        *root;
    sd_status     s;
    sd_dtype      want;
    const cJSON  *fmt;

    if (cq->dtype != SD_DT_U8 || cq->ndim != 1) {
        return sd_errorf(err, SD_ERR_FORMAT, "\"%s\": tensor \"%s\": "
                         "expected U8 bytes of a JSON object, got %s with %d "
                         "dimensions", cq->file, cq->name,
                         sd_dtype_name(cq->dtype),
                         cq->ndim);
    }

    root = cJSON_ParseWithLength(cq->data, cq->nbytes);
    fmt = cJSON_GetObjectItemCaseSensitive(root, "format");
    if (!cJSON_IsString(fmt)) {
        cJSON_Delete(root);
        return sd_errorf(err, SD_ERR_FORMAT, "\"%s\": tensor \"%s\": not "
                         "a JSON object with a \"format\" string", cq->file,
                         cq->name);
    }

    s = SD_OK;
    if (strncmp(fmt->valuestring, "float8_e4m3fn", 13) == 0) {
        want = SD_DT_F8_E4M3;
    } else if (strncmp(fmt->valuestring, "float8_e5m2", 11) == 0) {
        want = SD_DT_F8_E5M2;
    } else {
        s = sd_errorf(err, SD_ERR_UNSUPPORTED, "\"%s\": tensor \"%s\": "
                      "format \"%s\" is not supported (float8_e4m3fn, "
                      "float8_e5m2)", cq->file, cq->name, fmt->valuestring);
        cJSON_Delete(root);
        return s;
    }

    if (w->dtype != want) {
        s = sd_errorf(err, SD_ERR_FORMAT, "\"%s\": tensor \"%s\": format "
                      "\"%s\" but \"%s\" is %s", cq->file, cq->name,
                      fmt->valuestring, w->name,
                      sd_dtype_name(w->dtype));
    }
    cJSON_Delete(root);
    return s;
}


static const sd_st_tensor *
sd_ckpt_find2(const sd_st *st, const char *base, const char *a,
    const char *b, char *name, size_t len)
{
    const sd_st_tensor  *t;

    snprintf(name, len, "%s.%s", base, a);
    t = sd_st_find(st, name);
    if (t == NULL && b != NULL) {
        snprintf(name, len, "%s.%s", base, b);
        t = sd_st_find(st, name);
    }
    return t;
}


static sd_status
sd_ckpt_attach_one(sd_err *err, sd_st *st, sd_st_tensor *w)
{
    char                 base[SD_CKPT_NAME], name[SD_CKPT_NAME + 32];
    float               *v;
    size_t               n;
    int64_t              nv;
    const sd_st_tensor  *cq, *sc, *in;

    n = strlen(w->name);
    if (n < 7 || n - 7 >= sizeof(base)
        || strcmp(w->name + n - 7, ".weight") != 0)
    {
        return SD_OK;                           /* e.g. the scaled_fp8 marker */
    }
    memcpy(base, w->name, n - 7);
    base[n - 7] = '\0';

    cq = sd_ckpt_find2(st, base, "comfy_quant", NULL, name, sizeof(name));
    if (cq != NULL) {
        SD_TRY(sd_ckpt_check_quant(err, cq, w));
    }

    sc = sd_ckpt_find2(st, base, "weight_scale", "scale_weight", name,
                       sizeof(name));
    if (sc == NULL && cq != NULL) {
        return sd_errorf(err, SD_ERR_FORMAT, "\"%s\": tensor "
                         "\"%s.weight_scale\": missing (\"%s.comfy_quant\" "
                         "marks \"%s\" as scaled FP8)", w->file, base, base,
                         w->name);
    }

    if (sc != NULL) {
        SD_TRY(sd_ckpt_read_scale(err, st, w, sc, 1, &v, &nv));
        w->scale = v;
        w->n_scale = nv;
    }

    in = sd_ckpt_find2(st, base, "input_scale", "scale_input", name,
                       sizeof(name));
    if (in != NULL) {
        SD_TRY(sd_ckpt_read_scale(err, st, w, in, 0, &v, &nv));
        w->input_scale = v[0];
    }
    return SD_OK;
}


sd_status
sd_ckpt_attach_scales(sd_err *err, sd_st *st)
{
    size_t         i, n;
    sd_st_tensor  *t;

    n = sd_st_count(st);
    for (i = 0; i < n; i++) {
        t = sd_st_at_mut(st, i);
        if (sd_ckpt_is_fp8(t->dtype)) {
            SD_TRY(sd_ckpt_attach_one(err, st, t));
        }
    }
    return SD_OK;
}


/* ---- the MMDiT key map ----------------------------------------------- */


/*
 * key (without "model.diffusion_model."): its diffusers name(s) in out[]
 * (3 for a fused qkv), *swap if the halves are swapped; returns the number
 * of names, 0 if the key is not mapped (scales, markers, unknown keys).
 */
static int
sd_ckpt_mmdit_names(const char *key, int nlayers, char out[3][SD_CKPT_NAME],
    int *swap)
{
    int                  j, nb, last;
    long                 blk;
    char                *end, prefix[64];
    size_t               len;
    const char          *p, *tail;
    const sd_ckpt_rule  *r;

    *swap = 0;

    if (strcmp(key, "pos_embed") == 0) {
        snprintf(out[0], SD_CKPT_NAME, "pos_embed.pos_embed");
        return 1;
    }

    if (strncmp(key, "joint_blocks.", 13) == 0) {
        blk = strtol(key + 13, &end, 10);
        if (end == key + 13 || *end != '.' || blk < 0 || blk > 9999) {
            return 0;
        }
        p = end + 1;
        r = sd_ckpt_block_rules;
        last = blk == nlayers - 1;
        snprintf(prefix, sizeof(prefix), "transformer_blocks.%ld.", blk);

    } else {
        p = key;
        r = sd_ckpt_top_rules;
        last = 0;
        prefix[0] = '\0';
    }

    for ( /* void */ ; r->orig != NULL; r++) {
        len = strlen(r->orig);
        if (strncmp(p, r->orig, len) != 0 || p[len] != '.') {
            continue;
        }
        tail = p + len + 1;
        if (strcmp(tail, "weight") != 0 && strcmp(tail, "bias") != 0) {
            return 0;
        }
        nb = r->diff[1] != NULL ? 3 : 1;
        for (j = 0; j < nb; j++) {
            snprintf(out[j], SD_CKPT_NAME, "%s%s.%s", prefix, r->diff[j],
                     tail);
        }
        *swap = r->swap == 1 || (r->swap == 2 && last);
        return nb;
    }
    return 0;
}


/* One more than the largest N of "<prefix>N." names, or 0. */
static int
sd_ckpt_count_blocks(const sd_st *st, const char *prefix)
{
    int                  n;
    long                 blk;
    char                *end;
    size_t               i, len;
    const sd_st_tensor  *t;

    n = 0;
    len = strlen(prefix);
    for (i = 0; i < sd_st_count(st); i++) {
        t = sd_st_at(st, i);
        if (strncmp(t->name, prefix, len) != 0) {
            continue;
        }
        blk = strtol(t->name + len, &end, 10);
        if (end != t->name + len && *end == '.' && blk >= 0 && blk < 9999
            && blk + 1 > n)
        {
            n = (int) blk + 1;
        }
    }
    return n;
}


/* A copy of t with its first and second halves of rows swapped. */
static sd_status
sd_ckpt_swap_view(sd_err *err, sd_st *st, sd_st_tensor *t)
{
    float          *sc;
    size_t          half;
    int64_t         h;
    unsigned char  *d;

    if (t->ndim < 1 || t->shape[0] % 2 != 0) {
        return sd_errorf(err, SD_ERR_FORMAT, "tensor \"%s\": %lld rows, "
                         "cannot swap shift and scale halves", t->name,
                         (long long) (t->ndim ? t->shape[0] : 0));
    }

    half = t->nbytes / 2;
    d = sd_st_hold(err, st, t->nbytes, "swapped adaLN weight");
    if (d == NULL) {
        return SD_ERR_NOMEM;
    }
    memcpy(d, (const unsigned char *) t->data + half, half);
    memcpy(d + half, t->data, half);
    t->data = d;

    if (t->scale != NULL && t->n_scale > 1) {
        h = t->n_scale / 2;
        sc = sd_st_hold(err, st, (size_t) t->n_scale * sizeof(float),
                        "swapped adaLN scales");
        if (sc == NULL) {
            return SD_ERR_NOMEM;
        }
        memcpy(sc, t->scale + h, (size_t) h * sizeof(float));
        memcpy(sc + h, t->scale, (size_t) h * sizeof(float));
        t->scale = sc;
    }
    return SD_OK;
}


static sd_status
sd_ckpt_add_mmdit_views(sd_err *err, sd_st *st, const sd_st_tensor *src,
    const char *key, int nlayers)
{
    int           j, nb, swap;
    char          names[3][SD_CKPT_NAME];
    int64_t       rows;
    sd_st_tensor  v;

    nb = sd_ckpt_mmdit_names(key, nlayers, names, &swap);
    if (nb == 0) {
        return SD_OK;
    }

    v = *src;

    if (nb == 1) {
        if (swap) {
            SD_TRY(sd_ckpt_swap_view(err, st, &v));
        }
        return sd_st_add_view(err, st, &v, names[0]);
    }

    rows = src->ndim >= 1 ? src->shape[0] : 0;
    if (rows % 3 != 0 || rows == 0) {
        return sd_errorf(err, SD_ERR_FORMAT, "tensor \"%s\": %lld rows, not "
                         "a fused q, k, v", src->name, (long long) rows);
    }

    for (j = 0; j < 3; j++) {
        v = *src;
        v.shape[0] = rows / 3;
        v.numel = src->numel / 3;
        v.nbytes = src->nbytes / 3;
        v.data = (const unsigned char *) src->data + (size_t) j * v.nbytes;
        if (src->scale != NULL && src->n_scale > 1) {
            v.scale = src->scale + j * (rows / 3);
            v.n_scale = rows / 3;
        }
        SD_TRY(sd_st_add_view(err, st, &v, names[j]));
    }
    return SD_OK;
}


static sd_status
sd_ckpt_map_mmdit(sd_err *err, sd_st *st)
{
    int            nlayers;
    char           blocks[64];
    size_t         i, n, plen;
    const char    *prefix;
    sd_st_tensor   src;

    if (sd_st_find(st, "proj_out.weight") != NULL
        || sd_st_find(st, "transformer_blocks.0.attn.to_q.weight") != NULL)
    {
        return SD_OK;                           /* diffusers names already */
    }

    if (sd_st_find(st, SD_CKPT_MMDIT_PREFIX "final_layer.linear.weight")
        != NULL)
    {
        prefix = SD_CKPT_MMDIT_PREFIX;
    } else if (sd_st_find(st, "final_layer.linear.weight") != NULL) {
        prefix = "";
    } else {
        return SD_OK;                           /* not an MMDiT file */
    }

    plen = strlen(prefix);
    snprintf(blocks, sizeof(blocks), "%sjoint_blocks.", prefix);
    nlayers = sd_ckpt_count_blocks(st, blocks);

    n = sd_st_count(st);
    for (i = 0; i < n; i++) {
        src = *sd_st_at(st, i);                 /* views realloc the array */
        if (strncmp(src.name, prefix, plen) != 0) {
            continue;
        }
        SD_TRY(sd_ckpt_add_mmdit_views(err, st, &src, src.name + plen,
                                       nlayers));
    }
    return sd_st_reindex(err, st);
}


static sd_status
sd_ckpt_map_prefix(sd_err *err, sd_st *st, const char *prefix)
{
    size_t         i, n, plen, added;
    sd_st_tensor   src;

    plen = strlen(prefix);
    n = sd_st_count(st);
    added = 0;

    for (i = 0; i < n; i++) {
        src = *sd_st_at(st, i);
        if (strncmp(src.name, prefix, plen) != 0 || src.name[plen] == '\0') {
            continue;
        }
        if (sd_st_find(st, src.name + plen) != NULL) {
            continue;                           /* both names in the file */
        }
        SD_TRY(sd_st_add_view(err, st, &src, src.name + plen));
        added++;
    }

    return added ? sd_st_reindex(err, st) : SD_OK;
}


/* ---- the LDM VAE key map ---------------------------------------------- */


/*
 * key (without "first_stage_model."): its diffusers AutoencoderKL name, as
 * diffusers' convert_ldm_vae_checkpoint; nup: the decoder's up blocks
 * (LDM numbers them from the bottom, diffusers from the top). *flat: a
 * conv-shaped attention weight to view as a linear one. 0: not mapped.
 */
static int
sd_ckpt_vae_name(const char *key, int nup, char *out, size_t len, int *flat)
{
    int          i, j, n;
    char         part[16], rest[256];
    const char  *p;

    static const struct {
        const char  *ldm, *diff;
    } attn[] = {
        { "norm.", "group_norm." }, { "q.", "to_q." }, { "k.", "to_k." },
        { "v.", "to_v." }, { "proj_out.", "to_out.0." },
    };

    *flat = 0;
    if (strncmp(key, "encoder.", 8) == 0) {
        strcpy(part, "encoder");
        p = key + 8;
    } else if (strncmp(key, "decoder.", 8) == 0) {
        strcpy(part, "decoder");
        p = key + 8;
    } else {
        return 0;                   /* quant_conv: SD3's VAE has none */
    }

    if (strncmp(p, "norm_out.", 9) == 0) {
        n = snprintf(out, len, "%s.conv_norm_out.%s", part, p + 9);

    } else if (strncmp(p, "conv_in.", 8) == 0
               || strncmp(p, "conv_out.", 9) == 0)
    {
        n = snprintf(out, len, "%s.%s", part, p);

    } else if (sscanf(p, "down.%d.block.%d.%255s", &i, &j, rest) == 3) {
        if (strncmp(rest, "nin_shortcut.", 13) == 0) {
            n = snprintf(out, len, "%s.down_blocks.%d.resnets.%d."
                         "conv_shortcut.%s", part, i, j, rest + 13);
        } else {
            n = snprintf(out, len, "%s.down_blocks.%d.resnets.%d.%s", part,
                         i, j, rest);
        }

    } else if (sscanf(p, "down.%d.downsample.conv.%255s", &i, rest) == 2) {
        n = snprintf(out, len, "%s.down_blocks.%d.downsamplers.0.conv.%s",
                     part, i, rest);

    } else if (sscanf(p, "up.%d.block.%d.%255s", &i, &j, rest) == 3) {
        if (i < 0 || i >= nup) {
            return 0;
        }
        if (strncmp(rest, "nin_shortcut.", 13) == 0) {
            n = snprintf(out, len, "%s.up_blocks.%d.resnets.%d."
                         "conv_shortcut.%s", part, nup - 1 - i, j, rest + 13);
        } else {
            n = snprintf(out, len, "%s.up_blocks.%d.resnets.%d.%s", part,
                         nup - 1 - i, j, rest);
        }

    } else if (sscanf(p, "up.%d.upsample.conv.%255s", &i, rest) == 2) {
        if (i < 0 || i >= nup) {
            return 0;
        }
        n = snprintf(out, len, "%s.up_blocks.%d.upsamplers.0.conv.%s", part,
                     nup - 1 - i, rest);

    } else if (sscanf(p, "mid.block_%d.%255s", &i, rest) == 2) {
        if (i < 1 || i > 2) {
            return 0;
        }
        if (strncmp(rest, "nin_shortcut.", 13) == 0) {
            n = snprintf(out, len, "%s.mid_block.resnets.%d.conv_shortcut.%s",
                         part, i - 1, rest + 13);
        } else {
            n = snprintf(out, len, "%s.mid_block.resnets.%d.%s", part, i - 1,
                         rest);
        }

    } else if (strncmp(p, "mid.attn_1.", 11) == 0) {
        p += 11;
        for (i = 0; i < 5; i++) {
            if (strncmp(p, attn[i].ldm, strlen(attn[i].ldm)) == 0) {
                break;
            }
        }
        if (i == 5) {
            return 0;
        }
        n = snprintf(out, len, "%s.mid_block.attentions.0.%s%s", part,
                     attn[i].diff, p + strlen(attn[i].ldm));
        *flat = i > 0;

    } else {
        return 0;
    }

    return n > 0 && (size_t) n < len;
}


static sd_status
sd_ckpt_map_vae(sd_err *err, sd_st *st)
{
    int            nup, flat;
    char           name[SD_CKPT_NAME], up[64];
    size_t         i, n, plen;
    const char    *prefix;
    sd_st_tensor   v;

    if (sd_st_find(st, "first_stage_model.decoder.mid.block_1.conv1.weight")
        != NULL)
    {
        prefix = "first_stage_model.";
    } else if (sd_st_find(st, "decoder.mid.block_1.conv1.weight") != NULL) {
        prefix = "";
    } else {
        return SD_OK;                           /* diffusers names */
    }

    plen = strlen(prefix);
    snprintf(up, sizeof(up), "%sdecoder.up.", prefix);
    nup = sd_ckpt_count_blocks(st, up);

    n = sd_st_count(st);
    for (i = 0; i < n; i++) {
        v = *sd_st_at(st, i);
        if (strncmp(v.name, prefix, plen) != 0
            || !sd_ckpt_vae_name(v.name + plen, nup, name, sizeof(name),
                                 &flat))
        {
            continue;
        }
        if (flat && v.ndim == 4 && v.shape[2] == 1 && v.shape[3] == 1) {
            v.ndim = 2;                         /* (C, C, 1, 1) as (C, C) */
        } else if (flat && v.ndim == 3 && v.shape[2] == 1) {
            v.ndim = 2;
        }
        SD_TRY(sd_st_add_view(err, st, &v, name));
    }
    return sd_st_reindex(err, st);
}


static sd_status
sd_ckpt_map_component(sd_err *err, sd_st *st, const char *comp)
{
    size_t  i;

    if (strcmp(comp, "transformer") == 0) {
        return sd_ckpt_map_mmdit(err, st);
    }
    if (strcmp(comp, "vae") == 0) {
        return sd_ckpt_map_vae(err, st);
    }
    for (i = 0; i < SD_CKPT_NTEXT; i++) {
        if (strcmp(comp, sd_ckpt_text_prefixes[i].component) == 0) {
            return sd_ckpt_map_prefix(err, st,
                                      sd_ckpt_text_prefixes[i].prefix);
        }
    }
    return SD_OK;
}


sd_status
sd_ckpt_map_layout(sd_err *err, sd_st *st, const char *dir)
{
    char         comp[256];
    size_t       n;
    const char  *p;

    n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') {
        n--;
    }
    p = dir + n;
    while (p > dir && p[-1] != '/') {
        p--;
    }
    if ((size_t) (dir + n - p) >= sizeof(comp)) {
        return SD_OK;
    }
    memcpy(comp, p, (size_t) (dir + n - p));
    comp[dir + n - p] = '\0';

    return sd_ckpt_map_component(err, st, comp);
}


sd_status
sd_ckpt_open_file(sd_err *err, const char *path, const char *component,
    sd_st **out)
{
    sd_st      *st;
    sd_status   s;

    *out = NULL;
    SD_TRY(sd_st_open(err, path, &st));

    s = component ? sd_ckpt_map_component(err, st, component) : SD_OK;
    if (s != SD_OK) {
        sd_st_close(st);
        return s;
    }
    *out = st;
    return SD_OK;
}


/* ---- quantize at load ------------------------------------------------ */


sd_status
sd_ckpt_quantize(sd_err *err, sd_st *st, int per_row, const char *keep,
    int *nq)
{
    float         *f, *sc;
    size_t         i, n, big;
    int64_t        rows, cols;
    sd_status      s;
    uint8_t       *q;
    sd_st_tensor  *t;

    *nq = 0;
    SD_TRY(sd_fp8_keep_check(err, keep));

    /* one F32 buffer for the largest weight serves every one: a fresh
       buffer per weight faults its pages in anew each time */
    n = sd_st_count(st);
    big = 0;
    for (i = 0; i < n; i++) {
        t = sd_st_at_mut(st, i);
        if (!sd_ckpt_is_fp8(t->dtype) && sd_ckpt_is_float(t->dtype)
            && sd_fp8_wanted(t->name, t->ndim, t->shape, keep)
            && (size_t) t->numel > big)
        {
            big = (size_t) t->numel;
        }
    }
    if (big == 0) {
        return SD_OK;
    }
    f = sd_malloc(err, big * sizeof(float), "fp8 source");
    if (f == NULL) {
        return SD_ERR_NOMEM;
    }

    for (i = 0; i < n; i++) {
        t = sd_st_at_mut(st, i);
        if (sd_ckpt_is_fp8(t->dtype) || !sd_ckpt_is_float(t->dtype)
            || !sd_fp8_wanted(t->name, t->ndim, t->shape, keep))
        {
            continue;
        }

        rows = t->shape[0];
        cols = t->shape[1];

        q = sd_st_hold(err, st, (size_t) t->numel, "fp8 weight");
        sc = sd_st_hold(err, st, (size_t) (per_row ? rows : 1)
                        * sizeof(float), "fp8 scales");
        if (q == NULL || sc == NULL) {
            free(f);
            return SD_ERR_NOMEM;
        }

        s = sd_st_read_f32(err, t, f);
        if (s == SD_OK) {
            s = sd_fp8_quantize(err, f, rows, cols, per_row, q, sc);
        }
        if (s != SD_OK) {
            free(f);
            return sd_errorf(err, s, "quantizing \"%s\"", t->name);
        }

        t->dtype = SD_DT_F8_E4M3;
        t->data = q;
        t->nbytes = (size_t) t->numel;
        t->scale = sc;
        t->n_scale = per_row ? rows : 1;
        t->input_scale = 0.0f;
        (*nq)++;
    }
    free(f);
    return SD_OK;
}


/* ---- the writer ------------------------------------------------------ */


typedef struct {
    sd_st_out      *t;
    size_t          n;
    size_t          cap;
    void          **bufs;           /* owned by the writer */
    size_t          nbufs;
    size_t          capbufs;
    int             per_row;
    const char     *keep;
    int             nq;             /* tensors quantized */
} sd_ckpt_writer;


static void *
sd_ckpt_w_alloc(sd_err *err, sd_ckpt_writer *w, size_t size, const char *what)
{
    void  *p, **b;

    if (w->nbufs == w->capbufs) {
        w->capbufs = w->capbufs ? 2 * w->capbufs : 256;
        b = realloc(w->bufs, w->capbufs * sizeof(void *));
        if (b == NULL) {
            sd_errorf(err, SD_ERR_NOMEM, "out of memory for %s", what);
            return NULL;
        }
        w->bufs = b;
    }
    p = sd_malloc(err, size ? size : 1, what);
    if (p != NULL) {
        w->bufs[w->nbufs++] = p;
    }
    return p;
}


static sd_status
sd_ckpt_w_add(sd_err *err, sd_ckpt_writer *w, const char *name, sd_dtype dt,
    int ndim, const int64_t *shape, const void *data)
{
    char        *nm;
    sd_st_out   *t;

    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 256;
        t = realloc(w->t, w->cap * sizeof(sd_st_out));
        if (t == NULL) {
            return sd_errorf(err, SD_ERR_NOMEM, "out of memory for \"%s\"",
                             name);
        }
        w->t = t;
    }

    nm = sd_ckpt_w_alloc(err, w, strlen(name) + 1, "tensor name");
    if (nm == NULL) {
        return SD_ERR_NOMEM;
    }
    strcpy(nm, name);

    t = &w->t[w->n++];
    memset(t, 0, sizeof(*t));
    t->name = nm;
    t->dtype = dt;
    t->ndim = ndim;
    if (ndim > 0) {
        memcpy(t->shape, shape, (size_t) ndim * sizeof(int64_t));
    }
    t->data = data;
    return SD_OK;
}


/*
 * One output tensor "<oname>" (a name ending ".weight" or ".bias") from the
 * F32 values x of shape; quantized if the policy wants kind_name in FP8.
 * x stays the caller's: what is written is a copy (FP8, BF16 or F32).
 */
static sd_status
sd_ckpt_w_emit(sd_err *err, sd_ckpt_writer *w, const char *oname,
    const char *kind_name, int ndim, const int64_t *shape, const float *x,
    int keep_f32)
{
    char             base[SD_CKPT_NAME], name[SD_CKPT_NAME + 32];
    float           *sc;
    size_t           len;
    int64_t          i, numel, nsc;
    uint8_t         *q;
    uint16_t        *h;
    unsigned char   *cq;

    static const char  quant[] = "{\"format\": \"float8_e4m3fn\"}";

    numel = 1;
    for (i = 0; i < ndim; i++) {
        numel *= shape[i];
    }

    if (!sd_fp8_wanted(kind_name, ndim, shape, w->keep)) {
        if (keep_f32) {
            sc = sd_ckpt_w_alloc(err, w, (size_t) numel * sizeof(float),
                                 "f32 tensor");
            if (sc == NULL) {
                return SD_ERR_NOMEM;
            }
            memcpy(sc, x, (size_t) numel * sizeof(float));
            return sd_ckpt_w_add(err, w, oname, SD_DT_F32, ndim, shape, sc);
        }
        h = sd_ckpt_w_alloc(err, w, (size_t) numel * 2, "bf16 tensor");
        if (h == NULL) {
            return SD_ERR_NOMEM;
        }
        for (i = 0; i < numel; i++) {
            h[i] = sd_f32_to_bf16(x[i]);
        }
        return sd_ckpt_w_add(err, w, oname, SD_DT_BF16, ndim, shape, h);
    }

    len = strlen(oname) - 7;                    /* without ".weight" */
    if (len >= sizeof(base)) {
        return sd_errorf(err, SD_ERR_INVALID, "tensor name \"%s\" too long",
                         oname);
    }
    memcpy(base, oname, len);
    base[len] = '\0';

    nsc = w->per_row ? shape[0] : 1;
    q = sd_ckpt_w_alloc(err, w, (size_t) numel, "fp8 tensor");
    sc = sd_ckpt_w_alloc(err, w, (size_t) nsc * sizeof(float), "fp8 scales");
    cq = sd_ckpt_w_alloc(err, w, sizeof(quant) - 1, "comfy_quant");
    if (q == NULL || sc == NULL || cq == NULL) {
        return SD_ERR_NOMEM;
    }
    SD_TRY(sd_fp8_quantize(err, x, shape[0], shape[1], w->per_row, q, sc));
    memcpy(cq, quant, sizeof(quant) - 1);

    SD_TRY(sd_ckpt_w_add(err, w, oname, SD_DT_F8_E4M3, ndim, shape, q));
    snprintf(name, sizeof(name), "%s.weight_scale", base);
    SD_TRY(sd_ckpt_w_add(err, w, name, SD_DT_F32, w->per_row ? 1 : 0, &nsc,
                         sc));
    snprintf(name, sizeof(name), "%s.comfy_quant", base);
    i = (int64_t) (sizeof(quant) - 1);
    SD_TRY(sd_ckpt_w_add(err, w, name, SD_DT_U8, 1, &i, cq));
    w->nq++;
    return SD_OK;
}


/* Tensor t written through F32 (quantized or widened FP8 to BF16). */
static sd_status
sd_ckpt_w_convert(sd_err *err, sd_ckpt_writer *w, const sd_st_tensor *t,
    const char *oname)
{
    float      *x;
    sd_status   s;

    x = sd_malloc(err, (size_t) t->numel * sizeof(float), "f32 tensor");
    if (x == NULL) {
        return SD_ERR_NOMEM;
    }
    s = sd_st_read_f32(err, t, x);
    if (s == SD_OK) {
        s = sd_ckpt_w_emit(err, w, oname, t->name, t->ndim, t->shape, x, 0);
    }
    free(x);
    return s;
}


/* One original MMDiT key from its diffusers part(s), if present. */
static sd_status
sd_ckpt_w_mmdit_key(sd_err *err, sd_ckpt_writer *w, const sd_st *st,
    const char *key, int nlayers)
{
    int                  j, nb, swap, k, f32;
    char                 names[3][SD_CKPT_NAME], oname[SD_CKPT_NAME + 32];
    float               *x, *tmp;
    size_t               half;
    int64_t              shape[SD_ST_MAX_DIMS], off;
    sd_status            s;
    const sd_st_tensor  *p[3];

    nb = sd_ckpt_mmdit_names(key, nlayers, names, &swap);
    if (nb == 0) {
        return sd_errorf(err, SD_ERR_INTERNAL, "no map for \"%s\"", key);
    }

    p[0] = p[1] = p[2] = NULL;
    for (j = 0; j < nb; j++) {
        p[j] = sd_st_find(st, names[j]);
    }
    if (p[0] == NULL) {
        return SD_OK;                           /* e.g. no attn2 here */
    }

    f32 = 1;
    for (j = 0; j < nb; j++) {
        if (p[j] == NULL || p[j]->ndim != p[0]->ndim || p[j]->ndim < 1
            || p[j]->numel != p[0]->numel)
        {
            return sd_errorf(err, SD_ERR_FORMAT, "\"%s\": parts of a fused "
                             "q, k, v missing or of different shapes",
                             names[j]);
        }
        f32 = f32 && p[j]->dtype == SD_DT_F32;
    }

    memcpy(shape, p[0]->shape, sizeof(shape));
    shape[0] *= nb;

    k = snprintf(oname, sizeof(oname), "%s%s", SD_CKPT_MMDIT_PREFIX, key);
    if (k < 0 || (size_t) k >= sizeof(oname)) {
        return sd_errorf(err, SD_ERR_INVALID, "name \"%s\" too long", key);
    }
    if (swap && shape[0] % 2 != 0) {
        return sd_errorf(err, SD_ERR_FORMAT, "tensor \"%s\": odd rows, "
                         "cannot swap halves", names[0]);
    }

    /* x: (nb x rows, ...) the parts one after another */
    x = sd_malloc(err, (size_t) p[0]->numel * (size_t) nb * sizeof(float),
                  "f32 tensor");
    tmp = NULL;
    if (x == NULL) {
        return SD_ERR_NOMEM;
    }
    s = SD_OK;
    for (j = 0, off = 0; j < nb && s == SD_OK; j++, off += p[0]->numel) {
        s = sd_st_read_f32(err, p[j], x + off);
    }

    if (s == SD_OK && swap) {
        half = (size_t) p[0]->numel / 2;
        tmp = sd_malloc(err, half * sizeof(float), "swap buffer");
        if (tmp == NULL) {
            s = SD_ERR_NOMEM;
        } else {
            memcpy(tmp, x, half * sizeof(float));
            memmove(x, x + half, half * sizeof(float));
            memcpy(x + half, tmp, half * sizeof(float));
        }
    }

    if (s == SD_OK) {
        s = sd_ckpt_w_emit(err, w, oname, names[0], p[0]->ndim, shape, x,
                           f32);
    }
    free(tmp);
    free(x);
    return s;
}


static sd_status
sd_ckpt_w_mmdit(sd_err *err, sd_ckpt_writer *w, const sd_st *st)
{
    int                  n, b, tl;
    char                 key[SD_CKPT_NAME];
    const sd_ckpt_rule  *r;

    static const char  *tails[] = { "weight", "bias" };

    n = sd_ckpt_count_blocks(st, "transformer_blocks.");
    if (n == 0) {
        return sd_errorf(err, SD_ERR_FORMAT, "transformer: no "
                         "transformer_blocks.N tensors");
    }

    SD_TRY(sd_ckpt_w_mmdit_key(err, w, st, "pos_embed", n));

    for (tl = 0; tl < 2; tl++) {
        for (r = sd_ckpt_top_rules; r->orig != NULL; r++) {
            snprintf(key, sizeof(key), "%s.%s", r->orig, tails[tl]);
            SD_TRY(sd_ckpt_w_mmdit_key(err, w, st, key, n));
        }
    }

    for (b = 0; b < n; b++) {
        for (r = sd_ckpt_block_rules; r->orig != NULL; r++) {
            for (tl = 0; tl < 2; tl++) {
                snprintf(key, sizeof(key), "joint_blocks.%d.%s.%s", b,
                         r->orig, tails[tl]);
                SD_TRY(sd_ckpt_w_mmdit_key(err, w, st, key, n));
            }
        }
    }
    return SD_OK;
}


/* A text encoder under "text_encoders.<name>.transformer." */
static sd_status
sd_ckpt_w_prefixed(sd_err *err, sd_ckpt_writer *w, const sd_st *st,
    const char *prefix)
{
    char                 oname[SD_CKPT_NAME + 64];
    size_t               i;
    const sd_st_tensor  *t;

    for (i = 0; i < sd_st_count(st); i++) {
        t = sd_st_at(st, i);
        snprintf(oname, sizeof(oname), "%s%s", prefix, t->name);

        if (!sd_ckpt_is_fp8(t->dtype)
            && !sd_fp8_wanted(t->name, t->ndim, t->shape, w->keep))
        {
            /* kept as it is: no copy */
            SD_TRY(sd_ckpt_w_add(err, w, oname, t->dtype, t->ndim, t->shape,
                                 t->data));
            continue;
        }
        SD_TRY(sd_ckpt_w_convert(err, w, t, oname));
    }
    return SD_OK;
}


sd_status
sd_ckpt_write_fp8(sd_err *err, const char *model_dir, const char *out_path,
    int per_row, const char *keep)
{
    char             dir[4096];
    size_t           i;
    sd_st           *st[1 + SD_CKPT_NTEXT];
    sd_status        s;
    struct stat      sb;
    sd_ckpt_writer   w;

    SD_TRY(sd_fp8_keep_check(err, keep));

    memset(&w, 0, sizeof(w));
    memset(st, 0, sizeof(st));
    w.per_row = per_row;
    w.keep = keep;

    SD_TRY_GOTO(s, sd_path_join(err, dir, sizeof(dir), model_dir,
                                "transformer"), done);
    SD_TRY_GOTO(s, sd_st_open_dir(err, dir, &st[0]), done);
    SD_TRY_GOTO(s, sd_ckpt_w_mmdit(err, &w, st[0]), done);

    for (i = 0; i < SD_CKPT_NTEXT; i++) {
        SD_TRY_GOTO(s, sd_path_join(err, dir, sizeof(dir), model_dir,
                                    sd_ckpt_text_prefixes[i].component),
                    done);
        if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
            continue;                           /* T5 is optional */
        }
        SD_TRY_GOTO(s, sd_st_open_dir(err, dir, &st[1 + i]), done);
        SD_TRY_GOTO(s, sd_ckpt_w_prefixed(err, &w, st[1 + i],
                                          sd_ckpt_text_prefixes[i].prefix),
                    done);
    }

    s = sd_st_write(err, out_path, w.t, w.n);

done:

    for (i = 0; i < 1 + SD_CKPT_NTEXT; i++) {
        sd_st_close(st[i]);
    }
    for (i = 0; i < w.nbufs; i++) {
        free(w.bufs[i]);
    }
    free(w.bufs);
    free(w.t);
    return s;
}
