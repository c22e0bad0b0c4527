/*
 * test_rng.c: sd_randn_cpu / sd_randn_cuda against torch.randn.
 *
 * References: the public goldens' noise_cpu / noise_cuda tensors (the
 * cases of cases-public.json, latent [1, 16, H/8, W/8]) and
 * tests/data/noise_ref.json (torch 2.11 on an H100: first and last 8 values
 * as float32 bit patterns and the sum of all bit patterns, for odd sizes and
 * seeds up to 2^32 + 7). CPU and CUDA noise must both match bit for bit
 * (the CUDA sine is the H100's MUFU.SIN/COS, reproduced in engine/rng.c).
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "t.h"
#include "rng.h"
#include "safetensors.h"
#include "sd_err.h"


static uint32_t
t_bits(float f)
{
    uint32_t  b;

    memcpy(&b, &f, sizeof(b));
    return b;
}


static float
t_hexf(const char *hex)
{
    uint32_t  b = (uint32_t) strtoul(hex, NULL, 16);
    float     f;

    memcpy(&f, &b, sizeof(f));
    return f;
}


/* Share of bit-identical elements and the largest absolute difference. */
static void
t_compare(const float *a, const float *b, size_t n, double *same,
    double *maxdiff)
{
    size_t  i, eq = 0;
    double  d;

    *maxdiff = 0;
    for (i = 0; i < n; i++) {
        eq += t_bits(a[i]) == t_bits(b[i]);
        d = fabs((double) a[i] - (double) b[i]);
        if (d > *maxdiff) {
            *maxdiff = d;
        }
    }
    *same = n ? (double) eq / (double) n : 1.0;
}


static void
t_golden_case(const sd_st *st, const char *model, const cJSON *c)
{
    const sd_st_tensor  *t;
    const cJSON         *name, *w, *h, *seed;
    char                 key[128];
    float               *out;
    size_t               n;
    double               same, maxdiff;

    name = cJSON_GetObjectItem(c, "name");
    w = cJSON_GetObjectItem(c, "width");
    h = cJSON_GetObjectItem(c, "height");
    seed = cJSON_GetObjectItem(c, "seed");
    if (!cJSON_IsString(name) || !cJSON_IsNumber(w) || !cJSON_IsNumber(h)
        || !cJSON_IsNumber(seed))
    {
        T_CHECK(0, "malformed case in cases-public.json");
        return;
    }

    n = (size_t) 16 * (size_t) (h->valueint / 8) * (size_t) (w->valueint / 8);
    out = malloc(n * sizeof(float));
    if (out == NULL) {
        T_CHECK(0, "out of memory");
        return;
    }

    snprintf(key, sizeof(key), "%s.%s.noise_cpu", model, name->valuestring);
    t = sd_st_find(st, key);
    T_CHECK(t != NULL && t->dtype == SD_DT_F32 && (size_t) t->numel == n,
            "%s: missing or wrong size", key);
    if (t != NULL && (size_t) t->numel == n) {
        sd_randn_cpu((uint64_t) seed->valuedouble, out, n);
        t_compare(out, t->data, n, &same, &maxdiff);
        T_CHECK(memcmp(out, t->data, n * sizeof(float)) == 0,
                "%s: %.4f%% bit-identical, max diff %g", key, 100 * same,
                maxdiff);
    }

    snprintf(key, sizeof(key), "%s.%s.noise_cuda", model, name->valuestring);
    t = sd_st_find(st, key);
    T_CHECK(t != NULL && t->dtype == SD_DT_F32 && (size_t) t->numel == n,
            "%s: missing or wrong size", key);
    if (t != NULL && (size_t) t->numel == n) {
        sd_randn_cuda((uint64_t) seed->valuedouble, out, n);
        t_compare(out, t->data, n, &same, &maxdiff);
        T_CHECK(memcmp(out, t->data, n * sizeof(float)) == 0,
                "%s: %.4f%% bit-identical, max diff %g", key, 100 * same,
                maxdiff);
    }

    free(out);
}


static void
t_goldens(void)
{
    sd_err   err;
    sd_st   *st = NULL;
    cJSON   *cases, *model;
    char     path[1024];
    char    *text;
    size_t   len;

    sd_err_clear(&err);
    if (sd_path_join(&err, path, sizeof(path), t_fixtures(),
                     "cases-public.json") != SD_OK
        || sd_read_file(&err, path, &text, &len) != SD_OK)
    {
        T_SKIP("no fixtures at %s: %s", t_fixtures(), err.msg);
        return;
    }
    cases = cJSON_Parse(text);
    free(text);
    T_CHECK(cases != NULL, "cases-public.json does not parse");
    if (cases == NULL) {
        return;
    }

    if (sd_path_join(&err, path, sizeof(path), t_fixtures(),
                     "golden-public.safetensors") != SD_OK
        || sd_st_open(&err, path, &st) != SD_OK)
    {
        T_CHECK(0, "golden-public.safetensors: %s", err.msg);
        cJSON_Delete(cases);
        return;
    }

    cJSON_ArrayForEach(model, cases) {
        const cJSON  *c;

        cJSON_ArrayForEach(c, model) {
            t_golden_case(st, model->string, c);
        }
    }

    sd_st_close(st);
    cJSON_Delete(cases);
}


/* First/last values as bit patterns, compared exactly. */
static void
t_ref_values(const char *what, const cJSON *hexes, const float *v, size_t cnt,
    uint64_t seed, size_t n)
{
    const cJSON  *e;
    size_t        i = 0;
    float         ref;

    T_CHECK(cJSON_GetArraySize(hexes) == (int) cnt,
            "seed %llu n %zu: %s has %d values, expected %zu",
            (unsigned long long) seed, n, what, cJSON_GetArraySize(hexes),
            cnt);

    cJSON_ArrayForEach(e, hexes) {
        if (i >= cnt || !cJSON_IsString(e)) {
            break;
        }
        ref = t_hexf(e->valuestring);
        T_CHECK(t_bits(v[i]) == t_bits(ref),
                "seed %llu n %zu: %s[%zu] %08x, torch %08x",
                (unsigned long long) seed, n, what, i,
                (unsigned) t_bits(v[i]), (unsigned) t_bits(ref));
        i++;
    }
}


/* The sum of all bit patterns (below 2^53: the JSON double is exact). */
static void
t_ref_bitsum(const char *what, const cJSON *bitsum, const float *v,
    uint64_t seed, size_t n)
{
    uint64_t  sum;
    size_t    i;

    T_CHECK(cJSON_IsNumber(bitsum), "seed %llu n %zu: no %s_bitsum",
            (unsigned long long) seed, n, what);
    if (!cJSON_IsNumber(bitsum)) {
        return;
    }

    for (sum = 0, i = 0; i < n; i++) {
        sum += t_bits(v[i]);
    }
    T_CHECK(sum == (uint64_t) bitsum->valuedouble,
            "seed %llu n %zu: %s bit sum %llu, torch %.0f",
            (unsigned long long) seed, n, what, (unsigned long long) sum,
            bitsum->valuedouble);
}


static void
t_ref_case(const cJSON *c)
{
    const cJSON  *jseed, *jn;
    uint64_t      seed;
    float        *out;
    size_t        n, k;

    jseed = cJSON_GetObjectItem(c, "seed");
    jn = cJSON_GetObjectItem(c, "n");
    if (!cJSON_IsNumber(jseed) || !cJSON_IsNumber(jn) || jn->valuedouble < 1) {
        T_CHECK(0, "malformed case in noise_ref.json");
        return;
    }
    seed = (uint64_t) jseed->valuedouble;
    n = (size_t) jn->valuedouble;
    k = n < 8 ? n : 8;

    out = malloc(n * sizeof(float));
    if (out == NULL) {
        T_CHECK(0, "out of memory");
        return;
    }

    sd_randn_cpu(seed, out, n);
    t_ref_values("cpu_head", cJSON_GetObjectItem(c, "cpu_head"), out, k,
                 seed, n);
    t_ref_values("cpu_tail", cJSON_GetObjectItem(c, "cpu_tail"),
                 out + n - k, k, seed, n);
    t_ref_bitsum("cpu", cJSON_GetObjectItem(c, "cpu_bitsum"), out, seed, n);

    sd_randn_cuda(seed, out, n);
    t_ref_values("cuda_head", cJSON_GetObjectItem(c, "cuda_head"), out, k,
                 seed, n);
    t_ref_values("cuda_tail", cJSON_GetObjectItem(c, "cuda_tail"),
                 out + n - k, k, seed, n);
    t_ref_bitsum("cuda", cJSON_GetObjectItem(c, "cuda_bitsum"), out, seed,
                 n);

    free(out);
}


static void
t_noise_ref(void)
{
    sd_err        err;
    cJSON        *root;
    const cJSON  *c;
    char         *text;
    size_t        len;

    sd_err_clear(&err);
    if (sd_read_file(&err, "tests/data/noise_ref.json", &text, &len)
        != SD_OK)
    {
        T_SKIP("tests/data/noise_ref.json not readable (run from the "
               "project root): %s", err.msg);
        return;
    }
    root = cJSON_Parse(text);
    free(text);
    T_CHECK(root != NULL, "noise_ref.json does not parse");
    if (root == NULL) {
        return;
    }

    cJSON_ArrayForEach(c, cJSON_GetObjectItem(root, "cases")) {
        t_ref_case(c);
    }

    cJSON_Delete(root);
}


int
main(void)
{
    t_goldens();
    t_noise_ref();

    return T_DONE();
}
