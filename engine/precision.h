/*
 * precision.h: the FP8 precision policy, as data in one place.
 *
 * Every weight that may be stored in FP8 E4M3 belongs to one layer kind,
 * recognised by its checkpoint name (diffusers / transformers names). A
 * policy is the set of kinds stored in FP8; everything else (embedders,
 * the final layer, norms, CLIP, the VAE, biases) stays in the backend's
 * activation dtype. The default set is what the precision sweep
 * (sd-cli fp8-sweep, README "FP8 precision policy") measured as safe.
 */

#ifndef SD_PRECISION_H
#define SD_PRECISION_H

#include <stdint.h>
#include "backend.h"


typedef enum {
    SD_FP8_IMG_QKV = 0,     /* MMDiT image-stream q/k/v (attn and attn2) */
    SD_FP8_IMG_OUT,         /* image-stream attention output projection */
    SD_FP8_IMG_FF_UP,       /* image-stream MLP first projection (GELU) */
    SD_FP8_IMG_FF_DOWN,     /* image-stream MLP second projection */
    SD_FP8_TXT_QKV,         /* text-stream (context) q/k/v */
    SD_FP8_TXT_OUT,
    SD_FP8_TXT_FF_UP,
    SD_FP8_TXT_FF_DOWN,
    SD_FP8_ADALN,           /* the blocks' adaLN modulation linears */
    SD_FP8_ATTN,            /* the MMDiT's attention itself (no weight):
                               E4M3 Q, K, V and P (sd_attention_fp8), on
                               backends with fp8_attn */
    SD_FP8_T5_QKV,          /* T5-XXL self-attention q/k/v */
    SD_FP8_T5_OUT,          /* T5-XXL attention output (o) */
    SD_FP8_T5_FF_UP,        /* T5-XXL gated-GELU wi_0 / wi_1 */
    SD_FP8_T5_FF_DOWN,      /* T5-XXL wo */
    SD_FP8_CLIP,            /* CLIP-L and CLIP-G attention and MLP linears */
    SD_FP8_NKINDS
} sd_fp8_kind;

#define SD_FP8_ALL  ((1u << SD_FP8_NKINDS) - 1)

/* The kind's name ("img_qkv", ...). */
const char *sd_fp8_kind_name(int kind);

/* The kind of a weight (its checkpoint name and shape), -1: never FP8. */
int sd_fp8_kind_of(const char *name, int ndim, const int64_t *shape);

/* The default policy: the kinds stored in FP8 by "sd_precision fp8". */
unsigned sd_fp8_default_kinds(void);

/*
 * Parse a comma-separated list of kind names (or "all", "none", "t5",
 * "mmdit", "clip": groups) into a mask. Returns 0 and sets *mask, or -1 and
 * writes the unknown name into bad.
 */
int sd_fp8_parse_kinds(const char *list, unsigned *mask, char *bad,
    size_t badlen);

/* "img_qkv,img_out,..." for mask into buf; returns buf. */
const char *sd_fp8_kinds_str(unsigned mask, char *buf, size_t len);

/*
 * The backend weight policy of an FP8 backend: FP8 E4M3 for the weights
 * whose kind is in be->fp8_kinds, the activation dtype for the rest.
 */
sd_dtype sd_fp8_weight_policy(const sd_backend *be, const char *name,
    int ndim, const int64_t *shape);

/* Make be an FP8 backend storing the kinds of mask in FP8 (before loading). */
void sd_fp8_apply(sd_backend *be, unsigned mask);

#endif /* SD_PRECISION_H */
