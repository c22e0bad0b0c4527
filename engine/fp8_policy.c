/*
 * fp8_policy.c: the FP8 policy as the checkpoint tools (sd-cli quantize,
 * quantize-at-load in ckpt.c) ask it: by name and keep-list. It answers
 * from precision.c, the one table of layer kinds and the default policy
 * that the GPU backend applies, so a file we write holds FP8 exactly where
 * "sd_precision fp8" computes in FP8.
 */

#include <string.h>

#include "fp8_policy.h"
#include "precision.h"


const char *
sd_fp8_layer_kind(const char *name)
{
    /* the kind of a name whatever its shape: a shape that passes */
    int  k = sd_fp8_kind_of(name, 2, (const int64_t[]) { 16, 16 });

    return k >= 0 ? sd_fp8_kind_name(k) : "other";
}


const char *
sd_fp8_default_keep(void)
{
    static char  buf[256];

    if (buf[0] == '\0') {
        sd_fp8_kinds_str(SD_FP8_ALL & ~sd_fp8_default_kinds(), buf,
                         sizeof(buf));
    }
    return buf;
}


const char *const *
sd_fp8_kinds(void)
{
    static const char  *list[SD_FP8_NKINDS + 1];
    int                 i;

    if (list[0] == NULL) {
        for (i = 0; i < SD_FP8_NKINDS; i++) {
            list[i] = sd_fp8_kind_name(i);
        }
    }
    return list;
}


/* The kinds stored in FP8 under keep: NULL or "default": the default
   policy; "none": every kind; else every kind but those listed. */
static int
sd_fp8_keep_mask(const char *keep, unsigned *fp8, char *bad, size_t badlen)
{
    unsigned  m;

    if (keep == NULL || strcmp(keep, "default") == 0) {
        *fp8 = sd_fp8_default_kinds();
        return 0;
    }
    if (sd_fp8_parse_kinds(keep, &m, bad, badlen) != 0) {
        return -1;
    }
    *fp8 = SD_FP8_ALL & ~m;
    return 0;
}


sd_status
sd_fp8_keep_check(sd_err *err, const char *keep)
{
    unsigned  m;
    char      bad[64];

    if (sd_fp8_keep_mask(keep, &m, bad, sizeof(bad)) != 0) {
        return sd_errorf(err, SD_ERR_INVALID, "fp8 keep list: unknown "
                         "layer kind \"%s\"", bad);
    }
    return SD_OK;
}


int
sd_fp8_wanted(const char *name, int ndim, const int64_t *shape,
    const char *keep)
{
    unsigned  m;
    int       k = sd_fp8_kind_of(name, ndim, shape);

    return k >= 0 && sd_fp8_keep_mask(keep, &m, NULL, 0) == 0
           && (m & (1u << k)) != 0;
}
