/*
 * fp8_policy.h: which layers of SD3.5 (MMDiT, T5, CLIP) are stored and run
 * in FP8: a table of layer kinds keyed by diffusers tensor-name patterns and
 * the default set of kinds kept in BF16.
 *
 * Invariant: the policy is data (fp8_policy.c) and is the one place that
 * decides; callers pass a tensor name and shape and get a yes or no.
 */

#ifndef SD_FP8_POLICY_H
#define SD_FP8_POLICY_H

#include <stdint.h>
#include "sd_err.h"

/* Layer kind of a diffusers tensor name ("attn_qkv", "ff_up", ...), or
 * "other". */
const char *sd_fp8_layer_kind(const char *name);

/* The comma-separated kinds kept in BF16 by default. */
const char *sd_fp8_default_keep(void);

/* Every kind the table knows, NULL-terminated (for help texts, checks). */
const char *const *sd_fp8_kinds(void);

/*
 * Check a comma-separated list of kinds (NULL or "default": the default
 * set; "none": quantize every kind): an unknown kind is an error naming it.
 */
sd_status sd_fp8_keep_check(sd_err *err, const char *keep);

/*
 * 1 if this tensor is stored in FP8: a 2-D ".weight" whose kind is not in
 * keep (as for sd_fp8_keep_check) and whose columns are a multiple of 16
 * (the FP8 GEMMs' K alignment); else 0.
 */
int sd_fp8_wanted(const char *name, int ndim, const int64_t *shape,
    const char *keep);

#endif /* SD_FP8_POLICY_H */
