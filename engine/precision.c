/*
 * precision.c: the FP8 precision policy (see precision.h). The table below
 * is the one place that says which weights may be FP8; the default mask
 * is the one place that says which are.
 */

#include <stdio.h>
#include <string.h>

#include "precision.h"


static const char *const kind_names[SD_FP8_NKINDS] = {
    "img_qkv", "img_out", "img_ff_up", "img_ff_down",
    "txt_qkv", "txt_out", "txt_ff_up", "txt_ff_down",
    "adaln", "attn",
    "t5_qkv", "t5_out", "t5_ff_up", "t5_ff_down",
    "clip"
};

/* Name suffixes (after the block index) and their kinds. */
static const struct {
    const char  *suffix;
    int          kind;
} kinds[] = {
    /* MMDiT / MMDiT-X: transformer_blocks.N.<suffix> */
    { ".attn.to_q.weight",              SD_FP8_IMG_QKV },
    { ".attn.to_k.weight",              SD_FP8_IMG_QKV },
    { ".attn.to_v.weight",              SD_FP8_IMG_QKV },
    { ".attn2.to_q.weight",             SD_FP8_IMG_QKV },
    { ".attn2.to_k.weight",             SD_FP8_IMG_QKV },
    { ".attn2.to_v.weight",             SD_FP8_IMG_QKV },
    { ".attn.to_out.0.weight",          SD_FP8_IMG_OUT },
    { ".attn2.to_out.0.weight",         SD_FP8_IMG_OUT },
    { ".ff.net.0.proj.weight",          SD_FP8_IMG_FF_UP },
    { ".ff.net.2.weight",               SD_FP8_IMG_FF_DOWN },
    { ".attn.add_q_proj.weight",        SD_FP8_TXT_QKV },
    { ".attn.add_k_proj.weight",        SD_FP8_TXT_QKV },
    { ".attn.add_v_proj.weight",        SD_FP8_TXT_QKV },
    { ".attn.to_add_out.weight",        SD_FP8_TXT_OUT },
    { ".ff_context.net.0.proj.weight",  SD_FP8_TXT_FF_UP },
    { ".ff_context.net.2.weight",       SD_FP8_TXT_FF_DOWN },
    { ".norm1.linear.weight",           SD_FP8_ADALN },
    { ".norm1_context.linear.weight",   SD_FP8_ADALN },
    /* T5 encoder: encoder.block.N.layer.<suffix> */
    { ".SelfAttention.q.weight",        SD_FP8_T5_QKV },
    { ".SelfAttention.k.weight",        SD_FP8_T5_QKV },
    { ".SelfAttention.v.weight",        SD_FP8_T5_QKV },
    { ".SelfAttention.o.weight",        SD_FP8_T5_OUT },
    { ".DenseReluDense.wi_0.weight",    SD_FP8_T5_FF_UP },
    { ".DenseReluDense.wi_1.weight",    SD_FP8_T5_FF_UP },
    { ".DenseReluDense.wi.weight",      SD_FP8_T5_FF_UP },
    { ".DenseReluDense.wo.weight",      SD_FP8_T5_FF_DOWN },
    /* CLIP-L, CLIP-G: text_model.encoder.layers.N.<suffix> */
    { ".self_attn.q_proj.weight",       SD_FP8_CLIP },
    { ".self_attn.k_proj.weight",       SD_FP8_CLIP },
    { ".self_attn.v_proj.weight",       SD_FP8_CLIP },
    { ".self_attn.out_proj.weight",     SD_FP8_CLIP },
    { ".mlp.fc1.weight",                SD_FP8_CLIP },
    { ".mlp.fc2.weight",                SD_FP8_CLIP },
};


const char *
sd_fp8_kind_name(int kind)
{
    return kind >= 0 && kind < SD_FP8_NKINDS ? kind_names[kind] : "?";
}


static int
ends_with(const char *s, const char *suffix)
{
    size_t  n = strlen(s), m = strlen(suffix);

    return n >= m && strcmp(s + n - m, suffix) == 0;
}


int
sd_fp8_kind_of(const char *name, int ndim, const int64_t *shape)
{
    size_t  i;

    /* FP8 GEMMs need both dimensions multiples of 16 */
    if (name == NULL || ndim != 2 || shape[0] % 16 != 0
        || shape[1] % 16 != 0)
    {
        return -1;
    }
    if (strncmp(name, "transformer_blocks.", 19) != 0
        && strncmp(name, "encoder.block.", 14) != 0
        && strncmp(name, "text_model.encoder.layers.", 26) != 0)
    {
        return -1;
    }
    for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        if (ends_with(name, kinds[i].suffix)) {
            return kinds[i].kind;
        }
    }
    return -1;
}


unsigned
sd_fp8_default_kinds(void)
{
    /* every kind the sweep was run on but CLIP (small, and read once per
       prompt); see README "FP8 precision policy" */
    return SD_FP8_ALL & ~(1u << SD_FP8_CLIP);
}


static int
kind_group(const char *w, size_t n, unsigned *m)
{
    static const struct { const char *name; unsigned mask; } groups[] = {
        { "all",  SD_FP8_ALL },
        { "none", 0 },
        { "mmdit", (1u << SD_FP8_T5_QKV) - 1 },
        { "t5", ((1u << SD_FP8_CLIP) - 1) & ~((1u << SD_FP8_T5_QKV) - 1) },
        { "clip", 1u << SD_FP8_CLIP },
    };
    size_t  i;

    for (i = 0; i < sizeof(groups) / sizeof(groups[0]); i++) {
        if (strlen(groups[i].name) == n && strncmp(w, groups[i].name, n) == 0)
        {
            *m = groups[i].mask;
            return 0;
        }
    }
    for (i = 0; i < SD_FP8_NKINDS; i++) {
        if (strlen(kind_names[i]) == n && strncmp(w, kind_names[i], n) == 0) {
            *m = 1u << i;
            return 0;
        }
    }
    return -1;
}


int
sd_fp8_parse_kinds(const char *list, unsigned *mask, char *bad,
    size_t badlen)
{
    const char  *p = list, *e;
    unsigned     acc = 0, m;

    while (p && *p) {
        while (*p == ' ' || *p == ',') {
            p++;
        }
        if (*p == '\0') {
            break;
        }
        for (e = p; *e && *e != ',' && *e != ' '; e++) {
        }
        if (kind_group(p, (size_t) (e - p), &m) != 0) {
            if (bad && badlen) {
                snprintf(bad, badlen, "%.*s", (int) (e - p), p);
            }
            return -1;
        }
        acc |= m;
        p = e;
    }
    *mask = acc;
    return 0;
}


const char *
sd_fp8_kinds_str(unsigned mask, char *buf, size_t len)
{
    size_t  o = 0;
    int     i;

    if (len == 0) {
        return buf;
    }
    buf[0] = '\0';
    for (i = 0; i < SD_FP8_NKINDS; i++) {
        if (mask & (1u << i)) {
            int  n = snprintf(buf + o, len - o, "%s%s", o ? "," : "",
                              kind_names[i]);

            if (n < 0 || (size_t) n >= len - o) {
                break;
            }
            o += (size_t) n;
        }
    }
    if (o == 0) {
        snprintf(buf, len, "none");
    }
    return buf;
}


sd_dtype
sd_fp8_weight_policy(const sd_backend *be, const char *name, int ndim,
    const int64_t *shape)
{
    int  k = sd_fp8_kind_of(name, ndim, shape);

    if (k >= 0 && (be->fp8_kinds & (1u << k))) {
        return SD_DT_F8_E4M3;
    }
    return be->weight_dtype;
}


void
sd_fp8_apply(sd_backend *be, unsigned mask)
{
    be->fp8_kinds = mask;
    be->weight_policy = sd_fp8_weight_policy;
    be->clip_f32 = 0;           /* FP8's memory bound: CLIP stays BF16 */
}
