/*
 * vae.c: the SD3.5 16-channel AutoencoderKL (diffusers AutoencoderKL with
 * DownEncoderBlock2D / UpDecoderBlock2D blocks), decoder and encoder, written
 * against backend.h so every backend runs the same code.
 *
 * Reference: diffusers src/diffusers/models/autoencoders/vae.py (Encoder,
 * Decoder), autoencoder_kl.py (AutoencoderKL), resnet.py (ResnetBlock2D),
 * downsampling.py (Downsample2D), upsampling.py (Upsample2D),
 * unets/unet_2d_blocks.py (UNetMidBlock2D, DownEncoderBlock2D,
 * UpDecoderBlock2D), attention_processor.py (Attention, AttnProcessor).
 *
 * Invariant: every size comes from vae/config.json and is checked against
 * the stored tensor shapes at load time. Each forward stage takes ownership
 * of its input activation only on success: stage(&x) replaces x with its
 * output and frees the old one, or leaves x untouched for the caller to free,
 * so at most three full-size activations are alive at once (input, one
 * temporary, output) and nothing leaks on any error path.
 */

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "vae.h"


#define SD_VAE_MAX_BLOCKS  8
#define SD_VAE_EPS         1e-6f        /* resnet_eps and attention norm eps */


/* A conv, linear or norm: weight and bias (bias may be NULL). */
typedef struct {
    sd_tensor      *w;
    sd_tensor      *b;
} sd_vae_param;


/* ResnetBlock2D, temb_channels None, output_scale_factor 1. */
typedef struct {
    sd_vae_param    norm1, conv1, norm2, conv2;
    sd_vae_param    shortcut;           /* 1x1 conv; w NULL when cin == cout */
    int64_t         cin, cout;
} sd_vae_resnet;


/* Attention(heads 1, residual_connection, rescale_output_factor 1). */
typedef struct {
    sd_vae_param    norm, q, k, v, out;
    int64_t         c;
} sd_vae_attn;


/* A DownEncoderBlock2D or UpDecoderBlock2D. */
typedef struct {
    sd_vae_resnet  *res;
    int             nres;
    sd_vae_param    sample;             /* resampler conv; w NULL if none */
} sd_vae_block;


/* Encoder or Decoder of vae.py. */
typedef struct {
    sd_vae_param    conv_in;
    sd_vae_block    blocks[SD_VAE_MAX_BLOCKS];
    sd_vae_resnet   mid_res[2];
    sd_vae_attn     mid_attn;
    int             has_attn;
    sd_vae_param    norm_out, conv_out;
} sd_vae_coder;


struct sd_vae {
    sd_backend     *be;

    /* config.json */
    int             nblocks;
    int64_t         ch[SD_VAE_MAX_BLOCKS];  /* block_out_channels */
    int             layers;                 /* layers_per_block */
    int             groups;                 /* norm_num_groups */
    int64_t         in_ch, out_ch, latent;
    float           scaling, shift;
    int             use_quant, use_post_quant, mid_attn;

    sd_vae_param    quant, post_quant;
    sd_vae_coder    enc, dec;

    /* every weight tensor, owned here; the structs above borrow them */
    sd_tensor_list  owned;
};


/* Config. */

/* Every entry of the optional array key must equal want. */
static sd_status
vae_cfg_types(sd_err *err, const cJSON *cfg, const char *path,
    const char *key, const char *want, int n)
{
    const cJSON  *arr = cJSON_GetObjectItemCaseSensitive(cfg, key), *it;

    if (arr == NULL || cJSON_IsNull(arr)) {
        return SD_OK;
    }
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) != n) {
        return sd_errorf(err, SD_ERR_FORMAT, "\"%s\": \"%s\" must be an array "
                         "of %d block types", path, key, n);
    }
    cJSON_ArrayForEach(it, arr) {
        if (!cJSON_IsString(it) || strcmp(it->valuestring, want) != 0) {
            return sd_errorf(err, SD_ERR_UNSUPPORTED, "\"%s\": \"%s\" has a "
                             "block type other than \"%s\"", path, key, want);
        }
    }
    return SD_OK;
}


/* block_out_channels, act_fn and the block types. */
static sd_status
vae_parse_blocks(sd_err *err, sd_vae *v, const cJSON *cfg, const char *path)
{
    const char  *act = NULL;
    int          ch[SD_VAE_MAX_BLOCKS], i, n;

    SD_TRY(sd_config_int_array(err, cfg, path, "block_out_channels", 1,
                               65536, ch, SD_VAE_MAX_BLOCKS, &n));
    if (n < 1) {
        return sd_errorf(err, SD_ERR_FORMAT, "\"%s\": \"block_out_channels\" "
                         "is missing or empty", path);
    }
    for (i = 0; i < n; i++) {
        v->ch[i] = ch[i];
    }
    v->nblocks = n;

    SD_TRY(sd_config_str_opt(err, cfg, path, "act_fn", &act));
    if (act != NULL && strcmp(act, "silu") != 0) {
        return sd_errorf(err, SD_ERR_UNSUPPORTED, "\"%s\": \"act_fn\" must be "
                         "\"silu\"", path);
    }
    SD_TRY(vae_cfg_types(err, cfg, path, "down_block_types",
                         "DownEncoderBlock2D", n));
    SD_TRY(vae_cfg_types(err, cfg, path, "up_block_types",
                         "UpDecoderBlock2D", n));
    return SD_OK;
}


static sd_status
vae_parse_config(sd_err *err, sd_vae *v, const cJSON *cfg, const char *path)
{
    int        in = 3, out = 3, latent, i;
    sd_status  s;

    SD_TRY(vae_parse_blocks(err, v, cfg, path));

    /* defaults are diffusers' AutoencoderKL defaults */
    v->layers = 1;
    v->groups = 32;
    v->shift = 0;
    v->use_quant = 1;
    v->use_post_quant = 1;
    v->mid_attn = 1;
    if ((s = sd_config_int_in_opt(err, cfg, path, "layers_per_block", 1, 64,
                                  &v->layers))
        || (s = sd_config_int_in_opt(err, cfg, path, "norm_num_groups", 1,
                                     65536, &v->groups))
        || (s = sd_config_int_in_opt(err, cfg, path, "in_channels", 1, 65536,
                                     &in))
        || (s = sd_config_int_in_opt(err, cfg, path, "out_channels", 1,
                                     65536, &out))
        || (s = sd_config_int_in(err, cfg, path, "latent_channels", 1, 65536,
                                 &latent))
        || (s = sd_config_float(err, cfg, path, "scaling_factor",
                                &v->scaling))
        || (s = sd_config_float_opt(err, cfg, path, "shift_factor",
                                    &v->shift))
        || (s = sd_config_bool_opt(err, cfg, path, "use_quant_conv",
                                   &v->use_quant))
        || (s = sd_config_bool_opt(err, cfg, path, "use_post_quant_conv",
                                   &v->use_post_quant))
        || (s = sd_config_bool_opt(err, cfg, path, "mid_block_add_attention",
                                   &v->mid_attn)))
    {
        return s;
    }
    v->in_ch = in;
    v->out_ch = out;
    v->latent = latent;

    if (v->scaling == 0) {
        return sd_errorf(err, SD_ERR_FORMAT, "\"%s\": \"scaling_factor\" is "
                         "0", path);
    }
    for (i = 0; i < v->nblocks; i++) {
        if (v->ch[i] % v->groups != 0) {
            return sd_errorf(err, SD_ERR_FORMAT, "\"%s\": %lld channels are "
                             "not divisible into %d groups", path,
                             (long long) v->ch[i], v->groups);
        }
    }
    return SD_OK;
}


/* Weights. */

/*
 * Load "<prefix>.weight" with shape wshape[0..wdim-1] and, when bias is set,
 * "<prefix>.bias" of wshape[0]. A linear (wdim 2) also accepts the
 * (out, in, 1, 1) layout some converted checkpoints store.
 */
static sd_status
vae_param(sd_err *err, sd_vae *v, const sd_st *st, sd_vae_param *p,
    int bias, int wdim, const int64_t *wshape, const char *fmt, ...)
{
    const sd_st_tensor  *t;
    char                 prefix[192], name[224];
    va_list              ap;
    int64_t              lin4[4];
    int                  n;

    va_start(ap, fmt);
    n = vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t) n >= sizeof(prefix)) {
        return sd_errorf(err, SD_ERR_INTERNAL, "VAE weight name too long");
    }

    snprintf(name, sizeof(name), "%s.weight", prefix);
    t = sd_st_find(st, name);
    if (wdim == 2 && t != NULL && t->ndim == 4) {
        lin4[0] = wshape[0];
        lin4[1] = wshape[1];
        lin4[2] = 1;
        lin4[3] = 1;
        SD_TRY(sd_weight_load(err, v->be, st, name, 4, lin4, &p->w));
        SD_TRY(sd_tensor_list_add(err, &v->owned, p->w));
        SD_TRY(sd_tensor_reshape(err, p->w, 2, wshape));
    } else if (wdim == 4) {
        /* conv: stored (Co, Ci, kh, kw), kept (Co, kh, kw, Ci) */
        SD_TRY(sd_conv_weight_load(err, v->be, st, name, wshape, &p->w));
        SD_TRY(sd_tensor_list_add(err, &v->owned, p->w));
    } else {
        SD_TRY(sd_weight_load(err, v->be, st, name, wdim, wshape, &p->w));
        SD_TRY(sd_tensor_list_add(err, &v->owned, p->w));
    }

    if (bias) {
        snprintf(name, sizeof(name), "%s.bias", prefix);
        SD_TRY(sd_weight_load(err, v->be, st, name, 1, wshape, &p->b));
        SD_TRY(sd_tensor_list_add(err, &v->owned, p->b));
    }
    return SD_OK;
}


static sd_status
vae_conv(sd_err *err, sd_vae *v, const sd_st *st, sd_vae_param *p,
    int64_t co, int64_t ci, int64_t k, const char *prefix)
{
    int64_t  s[4] = { co, ci, k, k };

    return vae_param(err, v, st, p, 1, 4, s, "%s", prefix);
}


void
sd_vae_subpixel_weights(const float *w3, int64_t co, int64_t ci, float *w2)
{
    int64_t  a, c, o, ky, kx, k;

    memset(w2, 0, (size_t) (16 * co * ci) * sizeof(float));
    for (a = 0; a < 2; a++) {
        for (c = 0; c < 2; c++) {
            for (o = 0; o < co; o++) {
                for (ky = 0; ky < 3; ky++) {
                    for (kx = 0; kx < 3; kx++) {
                        const float  *src = w3 + ((o * 3 + ky) * 3 + kx) * ci;
                        float        *dst = w2 + ((((2 * a + c) * co + o) * 2
                                                  + (a + ky + 1) / 2 - a) * 2
                                                 + (c + kx + 1) / 2 - c) * ci;

                        for (k = 0; k < ci; k++) {
                            dst[k] += src[k];
                        }
                    }
                }
            }
        }
    }
}


/*
 * Upsample2D's conv in its sub-pixel form. A nearest 2x upsample then a
 * 3x3 conv (pad 1) makes output pixel (2i+a, 2j+c) from the small image's
 * rows i-1+a, i+a and columns j-1+c, j+c alone, each weighted by the sum
 * of the 3x3 taps that land on it: tap (ky, kx) on the 2x2 tap
 * ((a+ky+1)/2 - a, (c+kx+1)/2 - c). Phase p = 2a + c gets the output
 * channels [p Co, (p+1) Co) of a (4 Co, 2, 2, Ci) weight (taps summed in
 * F32, then stored in the weight's dtype), the bias repeated; a 2x2 conv
 * with pad 1 then gives (H+1) x (W+1) pixels, of which phase (a, c) reads
 * those shifted by (a, c) (sd_subpixel2x). 4/9 of the multiply-adds, and
 * no upsampled copy of the input.
 */
static sd_status
vae_conv_subpixel(sd_err *err, sd_vae *v, const sd_st *st, sd_vae_param *p,
    int64_t co, int64_t ci, const char *prefix)
{
    int64_t     s3[4] = { co, ci, 3, 3 }, s2[4] = { 4 * co, 2, 2, ci };
    int64_t     o, k, n3 = co * 9 * ci, n2 = 4 * co * 4 * ci;
    sd_tensor  *w3 = NULL, *b3 = NULL;
    float      *h3 = NULL, *h2 = NULL, *hb = NULL;
    char        name[224];
    sd_status   s;

    snprintf(name, sizeof(name), "%s.weight", prefix);
    SD_TRY_GOTO(s, sd_conv_weight_load(err, v->be, st, name, s3, &w3), out);
    snprintf(name, sizeof(name), "%s.bias", prefix);
    SD_TRY_GOTO(s, sd_weight_load(err, v->be, st, name, 1, &co, &b3), out);

    h3 = sd_malloc(err, (size_t) n3 * sizeof(float), "VAE upsampler conv");
    h2 = sd_malloc(err, (size_t) n2 * sizeof(float), "VAE upsampler conv");
    hb = sd_malloc(err, (size_t) 4 * co * sizeof(float), "VAE bias");
    if (h3 == NULL || h2 == NULL || hb == NULL) {
        s = SD_ERR_NOMEM;
        goto out;
    }
    SD_TRY_GOTO(s, sd_tensor_download(err, w3, h3), out);
    SD_TRY_GOTO(s, sd_tensor_download(err, b3, hb), out);

    sd_vae_subpixel_weights(h3, co, ci, h2);
    for (k = 1; k < 4; k++) {
        memcpy(hb + k * co, hb, (size_t) co * sizeof(float));
    }

    SD_TRY_GOTO(s, sd_tensor_new_as(err, v->be, SD_MEM_WEIGHT, w3->dtype, 4,
                                    s2, &p->w), out);
    SD_TRY_GOTO(s, sd_tensor_list_add(err, &v->owned, p->w), out);
    SD_TRY_GOTO(s, sd_tensor_upload(err, p->w, h2), out);
    o = 4 * co;
    SD_TRY_GOTO(s, sd_tensor_new_as(err, v->be, SD_MEM_WEIGHT, b3->dtype, 1,
                                    &o, &p->b), out);
    SD_TRY_GOTO(s, sd_tensor_list_add(err, &v->owned, p->b), out);
    SD_TRY_GOTO(s, sd_tensor_upload(err, p->b, hb), out);
    s = SD_OK;

out:
    sd_tensor_free(w3);
    sd_tensor_free(b3);
    free(h3);
    free(h2);
    free(hb);
    return s;
}


static sd_status
vae_norm(sd_err *err, sd_vae *v, const sd_st *st, sd_vae_param *p,
    int64_t c, const char *prefix)
{
    return vae_param(err, v, st, p, 1, 1, &c, "%s", prefix);
}


static sd_status
vae_load_resnet(sd_err *err, sd_vae *v, const sd_st *st, sd_vae_resnet *r,
    int64_t cin, int64_t cout, const char *prefix)
{
    char  n[192];

    r->cin = cin;
    r->cout = cout;
    snprintf(n, sizeof(n), "%s.norm1", prefix);
    SD_TRY(vae_norm(err, v, st, &r->norm1, cin, n));
    snprintf(n, sizeof(n), "%s.conv1", prefix);
    SD_TRY(vae_conv(err, v, st, &r->conv1, cout, cin, 3, n));
    snprintf(n, sizeof(n), "%s.norm2", prefix);
    SD_TRY(vae_norm(err, v, st, &r->norm2, cout, n));
    snprintf(n, sizeof(n), "%s.conv2", prefix);
    SD_TRY(vae_conv(err, v, st, &r->conv2, cout, cout, 3, n));
    if (cin != cout) {
        snprintf(n, sizeof(n), "%s.conv_shortcut", prefix);
        SD_TRY(vae_conv(err, v, st, &r->shortcut, cout, cin, 1, n));
    }
    return SD_OK;
}


/* UNetMidBlock2D: resnets.0, attentions.0 (optional), resnets.1. */
static sd_status
vae_load_mid(sd_err *err, sd_vae *v, const sd_st *st, sd_vae_coder *c,
    const char *part)
{
    int64_t  ch = v->ch[v->nblocks - 1], lin[2] = { ch, ch };
    char     n[192];

    snprintf(n, sizeof(n), "%s.mid_block.resnets.0", part);
    SD_TRY(vae_load_resnet(err, v, st, &c->mid_res[0], ch, ch, n));
    snprintf(n, sizeof(n), "%s.mid_block.resnets.1", part);
    SD_TRY(vae_load_resnet(err, v, st, &c->mid_res[1], ch, ch, n));

    c->has_attn = v->mid_attn;
    if (!c->has_attn) {
        return SD_OK;
    }
    c->mid_attn.c = ch;
    snprintf(n, sizeof(n), "%s.mid_block.attentions.0", part);
    SD_TRY(vae_param(err, v, st, &c->mid_attn.norm, 1, 1, &ch,
                     "%s.group_norm", n));
    SD_TRY(vae_param(err, v, st, &c->mid_attn.q, 1, 2, lin, "%s.to_q", n));
    SD_TRY(vae_param(err, v, st, &c->mid_attn.k, 1, 2, lin, "%s.to_k", n));
    SD_TRY(vae_param(err, v, st, &c->mid_attn.v, 1, 2, lin, "%s.to_v", n));
    SD_TRY(vae_param(err, v, st, &c->mid_attn.out, 1, 2, lin,
                     "%s.to_out.0", n));
    return SD_OK;
}


static sd_status
vae_alloc_resnets(sd_err *err, sd_vae_block *b, int n)
{
    b->res = sd_calloc(err, n, sizeof(sd_vae_resnet), "VAE resnets");
    if (b->res == NULL) {
        return SD_ERR_NOMEM;
    }
    b->nres = n;
    return SD_OK;
}


/* Encoder (vae.py): conv_in, down_blocks, mid_block, norm, conv_out. */
static sd_status
vae_load_encoder(sd_err *err, sd_vae *v, const sd_st *st)
{
    sd_vae_coder  *c = &v->enc;
    int64_t        cin, cout, top = v->ch[v->nblocks - 1];
    char           n[192];
    int            i, j;

    SD_TRY(vae_conv(err, v, st, &c->conv_in, v->ch[0], v->in_ch, 3,
                    "encoder.conv_in"));

    for (i = 0; i < v->nblocks; i++) {
        sd_vae_block  *b = &c->blocks[i];

        cout = v->ch[i];
        cin = i == 0 ? v->ch[0] : v->ch[i - 1];
        SD_TRY(vae_alloc_resnets(err, b, v->layers));
        for (j = 0; j < v->layers; j++) {
            snprintf(n, sizeof(n), "encoder.down_blocks.%d.resnets.%d", i, j);
            SD_TRY(vae_load_resnet(err, v, st, &b->res[j],
                                   j == 0 ? cin : cout, cout, n));
        }
        if (i < v->nblocks - 1) {
            snprintf(n, sizeof(n), "encoder.down_blocks.%d.downsamplers.0"
                     ".conv", i);
            SD_TRY(vae_conv(err, v, st, &b->sample, cout, cout, 3, n));
        }
    }

    SD_TRY(vae_load_mid(err, v, st, c, "encoder"));
    SD_TRY(vae_norm(err, v, st, &c->norm_out, top, "encoder.conv_norm_out"));
    SD_TRY(vae_conv(err, v, st, &c->conv_out, 2 * v->latent, top, 3,
                    "encoder.conv_out"));
    return SD_OK;
}


/* Decoder (vae.py): conv_in, mid_block, up_blocks (reversed), norm, out. */
static sd_status
vae_load_decoder(sd_err *err, sd_vae *v, const sd_st *st)
{
    sd_vae_coder  *c = &v->dec;
    int64_t        cin, cout, top = v->ch[v->nblocks - 1];
    char           n[192];
    int            i, j, nb = v->nblocks;

    SD_TRY(vae_conv(err, v, st, &c->conv_in, top, v->latent, 3,
                    "decoder.conv_in"));
    SD_TRY(vae_load_mid(err, v, st, c, "decoder"));

    for (i = 0; i < nb; i++) {
        sd_vae_block  *b = &c->blocks[i];

        /* reversed_block_out_channels[i], prev_output_channel */
        cout = v->ch[nb - 1 - i];
        cin = i == 0 ? top : v->ch[nb - i];
        SD_TRY(vae_alloc_resnets(err, b, v->layers + 1));
        for (j = 0; j < v->layers + 1; j++) {
            snprintf(n, sizeof(n), "decoder.up_blocks.%d.resnets.%d", i, j);
            SD_TRY(vae_load_resnet(err, v, st, &b->res[j],
                                   j == 0 ? cin : cout, cout, n));
        }
        if (i < nb - 1) {
            snprintf(n, sizeof(n), "decoder.up_blocks.%d.upsamplers.0.conv",
                     i);
            SD_TRY(vae_conv_subpixel(err, v, st, &b->sample, cout, cout, n));
        }
    }

    SD_TRY(vae_norm(err, v, st, &c->norm_out, v->ch[0],
                    "decoder.conv_norm_out"));
    SD_TRY(vae_conv(err, v, st, &c->conv_out, v->out_ch, v->ch[0], 3,
                    "decoder.conv_out"));
    return SD_OK;
}


static sd_status
vae_load_weights(sd_err *err, sd_vae *v, const sd_st *st)
{
    SD_TRY(vae_load_encoder(err, v, st));
    SD_TRY(vae_load_decoder(err, v, st));
    if (v->use_quant) {
        SD_TRY(vae_conv(err, v, st, &v->quant, 2 * v->latent, 2 * v->latent,
                        1, "quant_conv"));
    }
    if (v->use_post_quant) {
        SD_TRY(vae_conv(err, v, st, &v->post_quant, v->latent, v->latent, 1,
                        "post_quant_conv"));
    }
    return SD_OK;
}


sd_status
sd_vae_load(sd_err *err, sd_backend *be, const char *dir, sd_vae **out)
{
    sd_vae     *v;
    sd_st      *st = NULL;
    cJSON      *cfg = NULL;
    char        path[4096];
    sd_status   s;

    *out = NULL;
    v = sd_calloc(err, 1, sizeof(sd_vae), "VAE");
    if (v == NULL) {
        return SD_ERR_NOMEM;
    }
    v->be = be;

    SD_TRY_GOTO(s, sd_path_join(err, path, sizeof(path), dir, "config.json"),
                fail);
    SD_TRY_GOTO(s, sd_config_load(err, dir, "config.json", &cfg), fail);
    SD_TRY_GOTO(s, vae_parse_config(err, v, cfg, path), fail);

    SD_TRY_GOTO(s, sd_st_open_dir(err, dir, &st), fail);
    SD_TRY_GOTO(s, vae_load_weights(err, v, st), fail);

    sd_st_close(st);
    cJSON_Delete(cfg);
    *out = v;
    return SD_OK;

fail:
    sd_st_close(st);
    cJSON_Delete(cfg);
    sd_vae_free(v);
    return s;
}


void
sd_vae_free(sd_vae *v)
{
    int  b;

    if (v == NULL) {
        return;
    }
    sd_tensor_list_free(&v->owned);
    for (b = 0; b < SD_VAE_MAX_BLOCKS; b++) {
        free(v->enc.blocks[b].res);
        free(v->dec.blocks[b].res);
    }
    free(v);
}


float
sd_vae_scaling_factor(const sd_vae *v)
{
    return v->scaling;
}


float
sd_vae_shift_factor(const sd_vae *v)
{
    return v->shift;
}


int
sd_vae_latent_channels(const sd_vae *v)
{
    return (int) v->latent;
}


/*
 * Forward stages, channels-last: activations are (B, H, W, C). Each stage
 * replaces *xp with its output on success.
 */

static sd_status
vae_new(sd_err *err, sd_vae *v, const sd_tensor *like, int64_t c,
    int64_t h, int64_t w, sd_tensor **out)
{
    return sd_tensor_new4(err, v->be, like->ne[0], h, w, c, out);
}


/* *out = conv(x), a new tensor of the same spatial size (x is kept). */
static sd_status
vae_conv_new(sd_err *err, sd_vae *v, const sd_vae_param *p,
    const sd_tensor *x, sd_tensor **out)
{
    sd_tensor  *y;
    sd_status   s;

    *out = NULL;
    SD_TRY(vae_new(err, v, x, p->w->ne[0], x->ne[1], x->ne[2], &y));
    s = sd_conv2d(err, y, x, p->w, p->b, 1, (int) (p->w->ne[1] / 2));
    if (s != SD_OK) {
        sd_tensor_free(y);
        return s;
    }
    *out = y;
    return SD_OK;
}


/* y = conv(x), same spatial size (k 3 pad 1, or k 1 pad 0). */
static sd_status
vae_conv_fwd(sd_err *err, sd_vae *v, const sd_vae_param *p, sd_tensor **xp)
{
    sd_tensor  *y;

    SD_TRY(vae_conv_new(err, v, p, *xp, &y));
    sd_tensor_free(*xp);
    *xp = y;
    return SD_OK;
}


/* y = silu(group_norm(x)), a new tensor; x is kept. */
static sd_status
vae_norm_silu(sd_err *err, sd_vae *v, const sd_vae_param *p,
    const sd_tensor *x, sd_tensor **out)
{
    sd_tensor  *y;
    sd_status   s;

    *out = NULL;
    SD_TRY(vae_new(err, v, x, x->ne[3], x->ne[1], x->ne[2], &y));
    s = sd_group_norm(err, y, x, v->groups, p->w, p->b, SD_VAE_EPS,
                      SD_ACT_SILU);
    if (s != SD_OK) {
        sd_tensor_free(y);
        return s;
    }
    *out = y;
    return SD_OK;
}


/*
 * ResnetBlock2D.forward (resnet.py):
 *   h = conv1(silu(norm1(x))); h = conv2(dropout(silu(norm2(h))))
 *   x = conv_shortcut(x) if in != out; return (x + h) / 1.0
 * With a shortcut, it runs first: x is then needed no more and norm1 runs
 * in place on it; norm2 always runs in place. At full resolution (the
 * decoder's last block, 256 channels in, 128 out) that leaves x's norm
 * out of the peak: x, its norm and conv1's output were 1.28 GB at 1024^2.
 * *xp is consumed (NULL on failure once taken).
 */
static sd_status
vae_resnet(sd_err *err, sd_vae *v, const sd_vae_resnet *r, sd_tensor **xp)
{
    sd_tensor  *x = *xp, *h = NULL, *sc = NULL;
    sd_status   s;

    /* x: (B, H, W, cin) -> h: (B, H, W, cout) */
    if (r->shortcut.w != NULL) {
        /* sc: (B, H, W, cout) = conv_shortcut(x), 1x1 */
        SD_TRY(vae_conv_new(err, v, &r->shortcut, x, &sc));
        h = x;
        x = NULL;
        *xp = NULL;
        SD_TRY_GOTO(s, sd_group_norm(err, h, h, v->groups, r->norm1.w,
                                     r->norm1.b, SD_VAE_EPS, SD_ACT_SILU),
                    fail);
    } else {
        SD_TRY(vae_norm_silu(err, v, &r->norm1, x, &h));
    }
    SD_TRY_GOTO(s, vae_conv_fwd(err, v, &r->conv1, &h), fail);
    SD_TRY_GOTO(s, sd_group_norm(err, h, h, v->groups, r->norm2.w,
                                 r->norm2.b, SD_VAE_EPS, SD_ACT_SILU), fail);

    /* conv2 adds into the older tensor (x, or sc), so the block's output
       stays where its input was, low in the workspace: the first-fit
       arena's high-water mark over the decoder at 1024^2 (its allocations
       replayed offline) drops from 1280 to 1152 MB; a backend may fold
       the sum into the convolution (sd_conv2d_add) */
    SD_TRY_GOTO(s, sd_conv2d_add(err, sc ? sc : x, h, r->conv2.w,
                                 r->conv2.b, 1,
                                 (int) (r->conv2.w->ne[1] / 2)), fail);
    sd_tensor_free(h);
    *xp = sc ? sc : x;
    return SD_OK;

fail:
    sd_tensor_free(h);
    sd_tensor_free(sc);
    return s;
}


/*
 * Attention with _from_deprecated_attn_block (attention_processor.py,
 * AttnProcessor2_0): group_norm, then tokens (B, HW, C) (channels-last
 * already is that layout), one head of C, scale 1/sqrt(C), to_out.0,
 * + residual, / rescale_output_factor (1.0).
 */
static sd_status
vae_attention(sd_err *err, sd_vae *v, const sd_vae_attn *a, sd_tensor **xp)
{
    sd_tensor  *x = *xp, *n = NULL, *q = NULL, *k = NULL, *vv = NULL;
    sd_tensor  *o = NULL;
    int64_t     bsz = x->ne[0], c = x->ne[3], hh = x->ne[1], ww = x->ne[2];
    int64_t     tok3[3] = { bsz, hh * ww, c };
    sd_status   s;

    /* n: (B, H, W, C) = group_norm(x), as tokens (B, HW, C) */
    SD_TRY_GOTO(s, vae_new(err, v, x, c, hh, ww, &n), fail);
    SD_TRY_GOTO(s, sd_group_norm(err, n, x, v->groups, a->norm.w, a->norm.b,
                                 SD_VAE_EPS, SD_ACT_NONE), fail);
    SD_TRY_GOTO(s, sd_tensor_reshape(err, n, 3, tok3), fail);

    /* q, k, v: (B, HW, C) */
    SD_TRY_GOTO(s, sd_tensor_new(err, v->be, 3, tok3, &q), fail);
    SD_TRY_GOTO(s, sd_tensor_new(err, v->be, 3, tok3, &k), fail);
    SD_TRY_GOTO(s, sd_tensor_new(err, v->be, 3, tok3, &vv), fail);
    SD_TRY_GOTO(s, sd_linear(err, q, n, a->q.w, a->q.b), fail);
    SD_TRY_GOTO(s, sd_linear(err, k, n, a->k.w, a->k.b), fail);
    SD_TRY_GOTO(s, sd_linear(err, vv, n, a->v.w, a->v.b), fail);

    /* o: (B, HW, C) = softmax(q k^T / sqrt(C)) v; n = to_out.0(o) */
    SD_TRY_GOTO(s, sd_tensor_new(err, v->be, 3, tok3, &o), fail);
    SD_TRY_GOTO(s, sd_attention(err, o, q, k, vv, 1, 0, NULL,
                                (float) (1.0 / sqrt((double) c))), fail);
    SD_TRY_GOTO(s, sd_linear(err, n, o, a->out.w, a->out.b), fail);

    /* x += n */
    SD_TRY_GOTO(s, sd_tensor_reshape(err, n, 4, x->ne), fail);
    SD_TRY_GOTO(s, sd_add(err, x, x, n), fail);

    s = SD_OK;

fail:
    sd_tensor_free(n);
    sd_tensor_free(q);
    sd_tensor_free(k);
    sd_tensor_free(vv);
    sd_tensor_free(o);
    return s;
}


/*
 * Downsample2D with padding 0 (downsampling.py): F.pad(x, (0, 1, 0, 1))
 * then conv 3x3 stride 2 without padding. The pad is built from copies:
 * p: (B, H+1, W+1, C) gets x row by row, and zeros in its last column and
 * last row from a small zero tensor read with stride 0.
 */
static sd_status
vae_downsample(sd_err *err, sd_vae *v, const sd_vae_param *cv, sd_tensor **xp)
{
    sd_tensor  *x = *xp, *p = NULL, *z = NULL, *y = NULL;
    int64_t     bsz = x->ne[0], h = x->ne[1], w = x->ne[2], c = x->ne[3];
    int64_t     ph = h + 1, pw = w + 1, bi;
    float      *zeros = NULL;
    sd_status   s;

    if (h < 2 || w < 2) {
        return sd_errorf(err, SD_ERR_INVALID, "VAE encoder: a %lldx%lld "
                         "feature map is too small to downsample",
                         (long long) h, (long long) w);
    }

    /* z: (W+1) C zeros */
    zeros = sd_calloc(err, pw * c, sizeof(float), "VAE pad zeros");
    if (zeros == NULL) {
        return SD_ERR_NOMEM;
    }
    SD_TRY_GOTO(s, sd_tensor_new2(err, v->be, 1, pw * c, &z), fail);
    SD_TRY_GOTO(s, sd_tensor_upload(err, z, zeros), fail);

    SD_TRY_GOTO(s, vae_new(err, v, x, c, ph, pw, &p), fail);
    /* the H rows of W pixels of each image */
    for (bi = 0; bi < bsz; bi++) {
        SD_TRY_GOTO(s, sd_copy2d(err, p, bi * ph * pw * c, pw * c, x,
                                 bi * h * w * c, w * c, h, w * c), fail);
    }
    /* the last pixel of every row, then the last row of every image */
    SD_TRY_GOTO(s, sd_copy2d(err, p, w * c, pw * c, z, 0, 0, bsz * ph, c),
                fail);
    SD_TRY_GOTO(s, sd_copy2d(err, p, h * pw * c, ph * pw * c, z, 0, 0, bsz,
                             pw * c), fail);

    /* y: (B, (H-2)/2+1, (W-2)/2+1, C) */
    SD_TRY_GOTO(s, vae_new(err, v, x, cv->w->ne[0], (ph - 3) / 2 + 1,
                           (pw - 3) / 2 + 1, &y), fail);
    SD_TRY_GOTO(s, sd_conv2d(err, y, p, cv->w, cv->b, 2, 0), fail);

    sd_tensor_free(p);
    sd_tensor_free(z);
    free(zeros);
    sd_tensor_free(x);
    *xp = y;
    return SD_OK;

fail:
    sd_tensor_free(p);
    sd_tensor_free(z);
    sd_tensor_free(y);
    free(zeros);
    return s;
}


/*
 * Upsample2D (upsampling.py): nearest 2x, then conv 3x3 pad 1, as the 2x2
 * conv of its sub-pixel form (vae_conv_subpixel) and the phases
 * interleaved. x is freed before the output is made (out of its peak).
 */
static sd_status
vae_upsample(sd_err *err, sd_vae *v, const sd_vae_param *cv, sd_tensor **xp)
{
    sd_tensor  *x = *xp, *p = NULL, *y = NULL;
    int64_t     h = x->ne[1], w = x->ne[2], co = cv->w->ne[0] / 4;
    sd_status   s;

    /* p: (B, H+1, W+1, 4 Co), the four phases */
    SD_TRY(vae_new(err, v, x, 4 * co, h + 1, w + 1, &p));
    s = sd_conv2d(err, p, x, cv->w, cv->b, 1, 1);
    if (s != SD_OK) {
        sd_tensor_free(p);
        return s;
    }
    sd_tensor_free(x);
    *xp = NULL;
    s = vae_new(err, v, p, co, 2 * h, 2 * w, &y);
    if (s == SD_OK) {
        s = sd_subpixel2x(err, y, p);
    }
    sd_tensor_free(p);
    if (s != SD_OK) {
        sd_tensor_free(y);
        return s;
    }
    *xp = y;
    return SD_OK;
}


/* UNetMidBlock2D.forward: resnets[0], attentions[0], resnets[1]. */
static sd_status
vae_mid(sd_err *err, sd_vae *v, const sd_vae_coder *c, sd_tensor **xp)
{
    SD_TRY(vae_resnet(err, v, &c->mid_res[0], xp));
    if (c->has_attn) {
        SD_TRY(vae_attention(err, v, &c->mid_attn, xp));
    }
    return vae_resnet(err, v, &c->mid_res[1], xp);
}


/* conv_norm_out, SiLU, conv_out. */
static sd_status
vae_head(sd_err *err, sd_vae *v, const sd_vae_coder *c, sd_tensor **xp)
{
    sd_tensor  *t;

    SD_TRY(vae_norm_silu(err, v, &c->norm_out, *xp, &t));
    sd_tensor_free(*xp);
    *xp = t;
    return vae_conv_fwd(err, v, &c->conv_out, xp);
}


/* (B, C, H, W) <-> (B, H, W, C) at the VAE's boundaries, converting dtype */
static sd_status
vae_to_nhwc(sd_err *err, sd_vae *v, const sd_tensor *x, sd_tensor **out)
{
    static const int  perm[4] = { 0, 2, 3, 1 };

    SD_TRY(sd_tensor_new4(err, v->be, x->ne[0], x->ne[2], x->ne[3],
                          x->ne[1], out));
    if (sd_permute(err, *out, x, perm) != SD_OK) {
        sd_tensor_free(*out);
        *out = NULL;
        return err->status;
    }
    return SD_OK;
}


static sd_status
vae_to_nchw(sd_err *err, sd_vae *v, sd_tensor **xp)
{
    static const int  perm[4] = { 0, 3, 1, 2 };
    sd_tensor        *x = *xp, *y;

    SD_TRY(sd_tensor_new4(err, v->be, x->ne[0], x->ne[3], x->ne[1],
                          x->ne[2], &y));
    if (sd_permute(err, y, x, perm) != SD_OK) {
        sd_tensor_free(y);
        return err->status;
    }
    sd_tensor_free(x);
    *xp = y;
    return SD_OK;
}


/*
 * AutoencoderKL._decode: post_quant_conv (when configured), then
 * Decoder.forward (vae.py): conv_in, mid_block, up_blocks, norm, SiLU,
 * conv_out.
 */
sd_status
sd_vae_decode(sd_err *err, sd_vae *v, const sd_tensor *z, sd_tensor **img)
{
    sd_vae_coder  *c = &v->dec;
    sd_tensor     *x = NULL;
    sd_status      s;
    int            i, j;

    *img = NULL;
    if (z->ndim != 4 || z->ne[1] != v->latent || z->ne[2] < 1
        || z->ne[3] < 1)
    {
        return sd_errorf(err, SD_ERR_INVALID, "VAE decode: latent must be "
                         "(B, %lld, h, w)", (long long) v->latent);
    }

    /* x: (B, h, w, latent) */
    SD_TRY(vae_to_nhwc(err, v, z, &x));
    if (v->use_post_quant) {
        SD_TRY_GOTO(s, vae_conv_fwd(err, v, &v->post_quant, &x), fail);
    }
    /* x: (B, h, w, ch[-1]) */
    SD_TRY_GOTO(s, vae_conv_fwd(err, v, &c->conv_in, &x), fail);

    SD_TRY_GOTO(s, vae_mid(err, v, c, &x), fail);

    /* up_blocks: resnets, then nearest 2x + conv except the last */
    for (i = 0; i < v->nblocks; i++) {
        for (j = 0; j < c->blocks[i].nres; j++) {
            SD_TRY_GOTO(s, vae_resnet(err, v, &c->blocks[i].res[j], &x),
                        fail);
        }
        if (c->blocks[i].sample.w != NULL) {
            SD_TRY_GOTO(s, vae_upsample(err, v, &c->blocks[i].sample, &x),
                        fail);
        }
    }

    /* x: (B, 8h, 8w, out_channels) -> (B, out_channels, 8h, 8w) */
    SD_TRY_GOTO(s, vae_head(err, v, c, &x), fail);
    SD_TRY_GOTO(s, vae_to_nchw(err, v, &x), fail);
    *img = x;
    return SD_OK;

fail:
    sd_tensor_free(x);
    return s;
}


/*
 * DiagonalGaussianDistribution (vae.py) from moments: (B, 2L, h, w):
 * mean = moments[:, :L]; logvar = clamp(moments[:, L:], -30, 20);
 * std = exp(0.5 logvar). The backend has no exp op, and this is one
 * latent-sized elementwise step at the very end, so it runs on the host
 * through download/upload (the same on every backend).
 */
static sd_status
vae_posterior(sd_err *err, sd_vae *v, const sd_tensor *mom, sd_tensor **mean,
    sd_tensor **std)
{
    int64_t     bsz = mom->ne[0], per = v->latent * mom->ne[2] * mom->ne[3];
    int64_t     i, bi;
    float      *host = NULL, *sd = NULL, lv;
    sd_tensor  *m = NULL, *d = NULL;
    sd_status   s;

    /* m, d: (B, L, h, w), as the moments (channels first) */
    SD_TRY_GOTO(s, sd_tensor_new4(err, v->be, bsz, v->latent, mom->ne[2],
                                  mom->ne[3], &m), fail);
    SD_TRY_GOTO(s, sd_tensor_new4(err, v->be, bsz, v->latent, mom->ne[2],
                                  mom->ne[3], &d), fail);

    /* m: (B, L, h, w) = moments[:, :L] */
    SD_TRY_GOTO(s, sd_copy2d(err, m, 0, per, mom, 0, 2 * per, bsz, per),
                fail);

    host = sd_malloc(err, (size_t) sd_numel(mom) * sizeof(float),
                     "VAE moments");
    sd = sd_malloc(err, (size_t) sd_numel(d) * sizeof(float), "VAE std");
    if (host == NULL || sd == NULL) {
        s = SD_ERR_NOMEM;
        goto fail;
    }
    SD_TRY_GOTO(s, sd_tensor_download(err, mom, host), fail);
    for (bi = 0; bi < bsz; bi++) {
        for (i = 0; i < per; i++) {
            lv = host[(2 * bi + 1) * per + i];
            lv = lv < -30.0f ? -30.0f : (lv > 20.0f ? 20.0f : lv);
            sd[bi * per + i] = expf(0.5f * lv);
        }
    }
    SD_TRY_GOTO(s, sd_tensor_upload(err, d, sd), fail);

    free(host);
    free(sd);
    *mean = m;
    *std = d;
    return SD_OK;

fail:
    free(host);
    free(sd);
    sd_tensor_free(m);
    sd_tensor_free(d);
    return s;
}


/*
 * AutoencoderKL._encode: Encoder.forward (vae.py): conv_in, down_blocks,
 * mid_block, norm, SiLU, conv_out to 2 * latent channels; quant_conv when
 * configured; then the posterior's mean and std.
 */
sd_status
sd_vae_encode(sd_err *err, sd_vae *v, const sd_tensor *img, sd_tensor **mean,
    sd_tensor **std)
{
    sd_vae_coder  *c = &v->enc;
    sd_tensor     *x = NULL;
    sd_status      s;
    int            i, j;

    *mean = NULL;
    *std = NULL;
    if (img->ndim != 4 || img->ne[1] != v->in_ch || img->ne[2] < 1
        || img->ne[3] < 1)
    {
        return sd_errorf(err, SD_ERR_INVALID, "VAE encode: image must be "
                         "(B, %lld, H, W)", (long long) v->in_ch);
    }

    /* x: (B, H, W, ch[0]) */
    SD_TRY(vae_to_nhwc(err, v, img, &x));
    SD_TRY_GOTO(s, vae_conv_fwd(err, v, &c->conv_in, &x), fail);

    /* down_blocks: resnets, then pad + conv stride 2 except the last */
    for (i = 0; i < v->nblocks; i++) {
        for (j = 0; j < c->blocks[i].nres; j++) {
            SD_TRY_GOTO(s, vae_resnet(err, v, &c->blocks[i].res[j], &x),
                        fail);
        }
        if (c->blocks[i].sample.w != NULL) {
            SD_TRY_GOTO(s, vae_downsample(err, v, &c->blocks[i].sample, &x),
                        fail);
        }
    }

    SD_TRY_GOTO(s, vae_mid(err, v, c, &x), fail);

    /* x: (B, H/8, W/8, 2L) moments -> (B, 2L, H/8, W/8) */
    SD_TRY_GOTO(s, vae_head(err, v, c, &x), fail);
    if (v->use_quant) {
        SD_TRY_GOTO(s, vae_conv_fwd(err, v, &v->quant, &x), fail);
    }
    SD_TRY_GOTO(s, vae_to_nchw(err, v, &x), fail);

    SD_TRY_GOTO(s, vae_posterior(err, v, x, mean, std), fail);
    sd_tensor_free(x);
    return SD_OK;

fail:
    sd_tensor_free(x);
    return s;
}
