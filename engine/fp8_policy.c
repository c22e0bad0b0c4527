/*
 * fp8_policy.c: the FP8 precision policy as data: layer kinds by diffusers
 * name pattern (fnmatch), and the kinds that stay BF16 by default.
 *
 * Invariant: the first matching rule wins, so specific patterns come
 * before general ones; the default keep set is the starting policy
 * (embedders, the final layer, CLIP and the T5 embeddings stay BF16) until
 * the measured sweep replaces it here.
 */

#include <fnmatch.h>
#include <string.h>

#include "fp8_policy.h"


typedef struct {
    const char     *pattern;
    const char     *kind;
} sd_fp8_rule;


static const sd_fp8_rule  sd_fp8_rules[] = {
    /* MMDiT joint blocks: image stream, context stream, MMDiT-X attn2 */
    { "transformer_blocks.*.attn.to_[qkv].weight",          "attn_qkv" },
    { "transformer_blocks.*.attn.add_[qkv]_proj.weight",    "attn_qkv_context" },
    { "transformer_blocks.*.attn2.to_[qkv].weight",         "attn2_qkv" },
    { "transformer_blocks.*.attn.to_out.0.weight",          "attn_out" },
    { "transformer_blocks.*.attn.to_add_out.weight",        "attn_out_context" },
    { "transformer_blocks.*.attn2.to_out.0.weight",         "attn2_out" },
    { "transformer_blocks.*.ff.net.0.proj.weight",          "ff_up" },
    { "transformer_blocks.*.ff.net.2.weight",               "ff_down" },
    { "transformer_blocks.*.ff_context.net.0.proj.weight",  "ff_context_up" },
    { "transformer_blocks.*.ff_context.net.2.weight",       "ff_context_down" },
    { "transformer_blocks.*.norm1.linear.weight",           "adaln" },
    { "transformer_blocks.*.norm1_context.linear.weight",   "adaln" },

    /* MMDiT outside the blocks */
    { "norm_out.linear.weight",                             "final_adaln" },
    { "proj_out.weight",                                    "final" },
    { "context_embedder.weight",                            "context_embedder" },
    { "time_text_embed.*",                                  "time_text_embed" },
    { "pos_embed.*",                                        "pos_embed" },

    /* T5-XXL encoder */
    { "encoder.block.*.layer.0.SelfAttention.relative_attention_bias.weight",
                                                            "t5_rel_bias" },
    { "encoder.block.*.layer.0.SelfAttention.[qkv].weight", "t5_attn_qkv" },
    { "encoder.block.*.layer.0.SelfAttention.o.weight",     "t5_attn_out" },
    { "encoder.block.*.layer.1.DenseReluDense.wi_[01].weight", "t5_ff_up" },
    { "encoder.block.*.layer.1.DenseReluDense.wo.weight",   "t5_ff_down" },
    { "shared.weight",                                      "t5_embed" },
    { "encoder.embed_tokens.weight",                        "t5_embed" },

    /* CLIP-L / CLIP-G */
    { "text_model.*",                                       "clip" },
    { "text_projection.weight",                             "clip" },
};

#define SD_FP8_NRULES  (sizeof(sd_fp8_rules) / sizeof(sd_fp8_rules[0]))


static const char *const  sd_fp8_kind_list[] = {
    "attn_qkv", "attn_qkv_context", "attn2_qkv", "attn_out",
    "attn_out_context", "attn2_out", "ff_up", "ff_down", "ff_context_up",
    "ff_context_down", "adaln", "final_adaln", "final", "context_embedder",
    "time_text_embed", "pos_embed", "t5_rel_bias", "t5_attn_qkv",
    "t5_attn_out", "t5_ff_up", "t5_ff_down", "t5_embed", "clip", "other",
    NULL
};


/* Starting policy (issue 8): embedders, final layer, CLIP, T5 embeddings. */
static const char  sd_fp8_keep_default[] =
    "final_adaln,final,context_embedder,time_text_embed,pos_embed,"
    "t5_rel_bias,t5_embed,clip,other";


const char *
sd_fp8_layer_kind(const char *name)
{
    size_t  i;

    for (i = 0; i < SD_FP8_NRULES; i++) {
        if (fnmatch(sd_fp8_rules[i].pattern, name, 0) == 0) {
            return sd_fp8_rules[i].kind;
        }
    }
    return "other";
}


const char *
sd_fp8_default_keep(void)
{
    return sd_fp8_keep_default;
}


const char *const *
sd_fp8_kinds(void)
{
    return sd_fp8_kind_list;
}


static int
sd_fp8_known_kind(const char *s, size_t n)
{
    size_t  i;

    for (i = 0; sd_fp8_kind_list[i] != NULL; i++) {
        if (strlen(sd_fp8_kind_list[i]) == n
            && strncmp(sd_fp8_kind_list[i], s, n) == 0)
        {
            return 1;
        }
    }
    return 0;
}


static const char *
sd_fp8_keep_resolve(const char *keep)
{
    if (keep == NULL || strcmp(keep, "default") == 0) {
        return sd_fp8_keep_default;
    }
    if (strcmp(keep, "none") == 0) {
        return "";
    }
    return keep;
}


/* 1 if kind is an item of the comma-separated list. */
static int
sd_fp8_list_has(const char *list, const char *kind)
{
    size_t       n, k;
    const char  *p, *c;

    k = strlen(kind);
    for (p = list; *p != '\0'; p = *c ? c + 1 : c) {
        c = strchr(p, ',');
        if (c == NULL) {
            c = p + strlen(p);
        }
        n = (size_t) (c - p);
        if (n == k && strncmp(p, kind, n) == 0) {
            return 1;
        }
    }
    return 0;
}


sd_status
sd_fp8_keep_check(sd_err *err, const char *keep)
{
    size_t       n;
    const char  *p, *c;

    keep = sd_fp8_keep_resolve(keep);
    for (p = keep; *p != '\0'; p = *c ? c + 1 : c) {
        c = strchr(p, ',');
        if (c == NULL) {
            c = p + strlen(p);
        }
        n = (size_t) (c - p);
        if (!sd_fp8_known_kind(p, n)) {
            return sd_errorf(err, SD_ERR_INVALID, "fp8 keep list: unknown "
                             "layer kind \"%.*s\"", (int) n, p);
        }
    }
    return SD_OK;
}


int
sd_fp8_wanted(const char *name, int ndim, const int64_t *shape,
    const char *keep)
{
    size_t  n;

    n = strlen(name);
    if (ndim != 2 || n < 7 || strcmp(name + n - 7, ".weight") != 0) {
        return 0;
    }
    if (shape[1] % 16 != 0 || shape[0] < 1) {
        return 0;
    }
    return !sd_fp8_list_has(sd_fp8_keep_resolve(keep),
                            sd_fp8_layer_kind(name));
}
