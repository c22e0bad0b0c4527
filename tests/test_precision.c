/*
 * test_precision.c: the FP8 precision policy: which checkpoint weights
 * belong to which layer kind, the kind lists of sd_fp8_keep / --fp8-keep,
 * and the weight policy an FP8 backend applies.
 */

#include <string.h>

#include "t.h"
#include "fp8_policy.h"
#include "precision.h"


#define KIND(name, r, c)  sd_fp8_kind_of(name, 2, (int64_t[]) { r, c })


static void
check_kinds(void)
{
    T_CHECK(KIND("transformer_blocks.0.attn.to_q.weight", 2432, 2432)
            == SD_FP8_IMG_QKV, "to_q");
    T_CHECK(KIND("transformer_blocks.12.attn2.to_k.weight", 1536, 1536)
            == SD_FP8_IMG_QKV, "attn2 to_k");
    T_CHECK(KIND("transformer_blocks.3.attn.to_out.0.weight", 64, 64)
            == SD_FP8_IMG_OUT, "to_out");
    T_CHECK(KIND("transformer_blocks.3.attn.to_add_out.weight", 64, 64)
            == SD_FP8_TXT_OUT, "to_add_out");
    T_CHECK(KIND("transformer_blocks.3.ff.net.0.proj.weight", 256, 64)
            == SD_FP8_IMG_FF_UP, "ff up");
    T_CHECK(KIND("transformer_blocks.3.ff_context.net.2.weight", 64, 256)
            == SD_FP8_TXT_FF_DOWN, "ff_context down");
    T_CHECK(KIND("transformer_blocks.37.norm1_context.linear.weight", 4864,
                 2432) == SD_FP8_ADALN, "adaLN");
    T_CHECK(KIND("encoder.block.23.layer.1.DenseReluDense.wo.weight", 4096,
                 10240) == SD_FP8_T5_FF_DOWN, "t5 wo");
    T_CHECK(KIND("encoder.block.0.layer.0.SelfAttention.q.weight", 4096,
                 4096) == SD_FP8_T5_QKV, "t5 q");
    T_CHECK(KIND("text_model.encoder.layers.5.mlp.fc1.weight", 5120, 1280)
            == SD_FP8_CLIP, "clip fc1");
    /* never FP8: embedders, final layer, biases, norms, odd sizes */
    T_CHECK(KIND("context_embedder.weight", 2432, 4096) < 0, "context");
    T_CHECK(KIND("norm_out.linear.weight", 4864, 2432) < 0, "norm_out");
    T_CHECK(KIND("proj_out.weight", 64, 2432) < 0, "proj_out");
    T_CHECK(KIND("time_text_embed.timestep_embedder.linear_1.weight", 2432,
                 256) < 0, "time embed");
    T_CHECK(KIND("encoder.embed_tokens.weight", 32128, 4096) < 0, "t5 emb");
    T_CHECK(KIND("transformer_blocks.0.attn.to_q.weight", 2432, 2430) < 0,
            "not a multiple of 16");
    T_CHECK(sd_fp8_kind_of("transformer_blocks.0.attn.to_q.bias", 1,
                           (int64_t[]) { 2432 }) < 0, "bias");
}


static void
check_lists(void)
{
    unsigned  m = 0;
    char      bad[32], buf[256];

    T_CHECK(sd_fp8_parse_kinds("img_ff_down, t5_ff_down", &m, bad,
                               sizeof(bad)) == 0
            && m == ((1u << SD_FP8_IMG_FF_DOWN) | (1u << SD_FP8_T5_FF_DOWN)),
            "two kinds: %x", m);
    T_CHECK(strcmp(sd_fp8_kinds_str(m, buf, sizeof(buf)),
                   "img_ff_down,t5_ff_down") == 0, "printed: %s", buf);
    T_CHECK(sd_fp8_parse_kinds("t5", &m, bad, sizeof(bad)) == 0
            && m == ((1u << SD_FP8_T5_QKV) | (1u << SD_FP8_T5_OUT)
                     | (1u << SD_FP8_T5_FF_UP) | (1u << SD_FP8_T5_FF_DOWN)),
            "group t5: %x", m);
    T_CHECK(sd_fp8_parse_kinds("mmdit", &m, bad, sizeof(bad)) == 0
            && m == (1u << SD_FP8_T5_QKV) - 1, "group mmdit: %x", m);
    T_CHECK((m & (1u << SD_FP8_ATTN)) != 0, "group mmdit: no attn");
    /* the attention itself: a kind with no weight of its own */
    T_CHECK(sd_fp8_parse_kinds("attn", &m, bad, sizeof(bad)) == 0
            && m == 1u << SD_FP8_ATTN
            && strcmp(sd_fp8_kinds_str(m, buf, sizeof(buf)), "attn") == 0,
            "kind attn: %x %s", m, buf);
    T_CHECK(strcmp(sd_fp8_layer_kind("transformer_blocks.0.attn.to_q.weight"),
                   "img_qkv") == 0
            && strcmp(sd_fp8_layer_kind("transformer_blocks.0.attn.weight"),
                      "other") == 0,
            "no weight is of kind attn");
    T_CHECK(sd_fp8_parse_kinds("", &m, bad, sizeof(bad)) == 0 && m == 0,
            "empty list");
    T_CHECK(sd_fp8_parse_kinds("img_qkv,ff_down", &m, bad, sizeof(bad))
            == -1 && strcmp(bad, "ff_down") == 0, "unknown named: %s", bad);
    T_CHECK(strcmp(sd_fp8_kinds_str(0, buf, sizeof(buf)), "none") == 0,
            "none");
    T_CHECK((sd_fp8_default_kinds() & (1u << SD_FP8_CLIP)) == 0
            && (sd_fp8_default_kinds() & (1u << SD_FP8_IMG_QKV)),
            "default policy");
}


static void
check_policy(void)
{
    sd_backend  be;

    memset(&be, 0, sizeof(be));
    be.weight_dtype = SD_DT_BF16;
    be.fp8_kinds = 1u << SD_FP8_IMG_QKV;
    T_CHECK(sd_fp8_weight_policy(&be, "transformer_blocks.1.attn.to_q."
                                 "weight", 2, (int64_t[]) { 192, 64 })
            == SD_DT_F8_E4M3, "in the policy: FP8");
    T_CHECK(sd_fp8_weight_policy(&be, "transformer_blocks.1.ff.net.2."
                                 "weight", 2, (int64_t[]) { 64, 256 })
            == SD_DT_BF16, "kept: BF16");
    T_CHECK(sd_fp8_weight_policy(&be, "pos_embed.proj.weight", 4,
                                 (int64_t[]) { 64, 16, 2, 2 })
            == SD_DT_BF16, "conv: BF16");

    /* a BF16 backend runs CLIP in F32; FP8 keeps it BF16 (memory) */
    memset(&be, 0, sizeof(be));
    be.clip_f32 = 1;
    sd_fp8_apply(&be, 1u << SD_FP8_IMG_QKV);
    T_CHECK(!be.clip_f32 && be.weight_policy == sd_fp8_weight_policy,
            "sd_fp8_apply: CLIP back to BF16, the FP8 policy on");
}


int
main(void)
{
    check_kinds();
    check_lists();
    check_policy();
    return T_DONE();
}
