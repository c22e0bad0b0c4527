/*
 * golden.h: the public goldens for the stage tests. t_golden_open() opens
 * golden-public.safetensors and parses cases-public.json from the fixtures;
 * t_golden_cmp() checks host floats against one golden tensor by relative
 * L2 error. Fixtures that are absent are a skip, fixtures that are broken a
 * failure.
 */

#ifndef SD_GOLDEN_H
#define SD_GOLDEN_H

#include <cJSON.h>

#include "t.h"
#include "backend.h"
#include "safetensors.h"
#ifdef SD_HAVE_CUDA
#include "sd_cuda.h"
#include "precision.h"
#endif


/*
 * The backend the golden tests run on, from SD_TEST_DEVICE: "cpu" (the
 * default), "cuda" (the GPU in F32: the fixture tolerances hold) or
 * "cuda-bf16" (the GPU in BF16: t_tol's second, looser bound) or
 * "cuda-fp8" (BF16 with the default FP8 policy: twelve times that bound,
 * which catches a broken FP8 path, not its precision: sd-cli fp8-sweep
 * measures that; the tiny T5's outlier-heavy random rows end 0.34 away).
 */
static int  t_dev_bf16, t_dev_fp8;

static inline sd_status
t_backend(sd_err *err, sd_backend **be)
{
    const char  *d = getenv("SD_TEST_DEVICE");
    const char  *off = getenv("SD_TEST_OFFLOAD");
    unsigned     mask = 0;

    /* SD_TEST_OFFLOAD=t5|clip|text: those encoders' matrices in host
       memory (on the CPU the loaders' other path, same numbers) */
    if (off && sd_offload_parse(off, &mask) != 0) {
        return sd_errorf(err, SD_ERR_INVALID, "SD_TEST_OFFLOAD \"%s\"", off);
    }
    if (d == NULL || d[0] == '\0' || strcmp(d, "cpu") == 0) {
        SD_TRY(sd_backend_cpu_create(err, 0, be));
        (*be)->offload = mask;
        return SD_OK;
    }
#ifdef SD_HAVE_CUDA
    if (strcmp(d, "cuda") == 0 || strcmp(d, "cuda-bf16") == 0
        || strcmp(d, "cuda-fp8") == 0)
    {
        t_dev_fp8 = strcmp(d, "cuda-fp8") == 0;
        t_dev_bf16 = strcmp(d, "cuda-bf16") == 0 || t_dev_fp8;
        printf("   device %s\n", d);
        SD_TRY(sd_backend_cuda_create(err, 0, t_dev_bf16 ? SD_DT_BF16
                                                         : SD_DT_F32, be));
        if (t_dev_fp8) {
            sd_fp8_apply(*be, sd_fp8_default_kinds());
        }
        (*be)->offload = mask;
        return sd_cuda_reserve(err, *be, (size_t) 2 << 30);
    }
#endif
    return sd_errorf(err, SD_ERR_UNSUPPORTED, "SD_TEST_DEVICE \"%s\" is not "
                     "available in this build", d);
}


/* The tolerance of a check on the device under test. */
static inline double
t_tol(double f32, double bf16)
{
    return t_dev_fp8 ? 12 * bf16 : t_dev_bf16 ? bf16 : f32;
}


/* 0: *g and *cases are open; -1: the reason is recorded, nothing is open. */
static inline int
t_golden_open(sd_st **g, cJSON **cases)
{
    char    path[4096], *text;
    size_t  len;
    sd_err  err = {0};

    *cases = NULL;
    snprintf(path, sizeof(path), "%s/golden-public.safetensors",
             t_fixtures());
    if (sd_st_open(&err, path, g) != SD_OK) {
        T_SKIP("fixtures absent (%s): set SD_FIXTURES", err.msg);
        return -1;
    }
    snprintf(path, sizeof(path), "%s/cases-public.json", t_fixtures());
    if (sd_read_file(&err, path, &text, &len) != SD_OK) {
        T_CHECK(0, "%s", err.msg);
        sd_st_close(*g);
        return -1;
    }
    *cases = cJSON_ParseWithLength(text, len);
    free(text);
    if (*cases == NULL) {
        T_CHECK(0, "\"%s\" does not parse", path);
        sd_st_close(*g);
        return -1;
    }
    return 0;
}


/* a[0 .. n-1] against the golden key: relative L2 error below tol. */
static inline void
t_golden_cmp(const sd_st *g, const char *key, const float *a, size_t n,
    double tol)
{
    const sd_st_tensor  *r = sd_st_find(g, key);
    float               *b;
    sd_err               err = {0};
    double               e;

    if (r == NULL || (size_t) r->numel != n || a == NULL) {
        T_CHECK(0, "%s: golden missing or %zu elements vs %lld", key, n,
                r ? (long long) r->numel : -1LL);
        return;
    }
    b = malloc(n * sizeof(float));
    if (b == NULL) {
        T_CHECK(0, "%s: out of memory", key);
        return;
    }
    sd_st_read_f32(&err, r, b);
    e = t_rel_l2(a, b, n);
    if (t_dev_bf16) {
        printf("   %-34s rel L2 %.3g\n", key, e);
    }
    T_CHECK(e < tol, "%s: relative L2 error %.3g (limit %g)", key, e, tol);
    free(b);
}

#endif /* SD_GOLDEN_H */
