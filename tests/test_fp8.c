/*
 * test_fp8.c: FP8 conversions against a table and a brute-force nearest
 * search, the quantizer, every scale form of FP8 checkpoints and malformed
 * scale tensors (small files written here), the ComfyUI / SAI key map on a
 * file built from the tiny fixture transformer (our writer and an
 * independent Python writer, tests/fp8/comfy_fp8.py), quantize-at-load,
 * the PyTorch writer of tests/gpu/run.sh's comfy stage (tests/gpu/
 * comfy_fp8.py, both forms, Large and Medium, where a python3 has torch)
 * with the stage's commands on the CPU, and the tiny pipeline's final
 * latents from the FP8 files against BF16 (on the backend of
 * SD_TEST_DEVICE, as the golden tests: cpu, cuda, cuda-bf16).
 *
 * Invariant: every comparison between two FP8 paths is exact (the same
 * codes times the same scales), but a per-tensor file's fused q, k, v
 * against quantize-at-load's one scale each; only FP8 against BF16 has a
 * tolerance.
 */

#include <stdint.h>
#include <unistd.h>
#include <sys/stat.h>

#include "golden.h"
#include "ckpt.h"
#include "fp8.h"
#include "fp8_policy.h"
#include "pipeline.h"
#include "safetensors.h"


static char  tdir[256];


/* ---- conversions ----------------------------------------------------- */


/* Decoding written from the OCP spec, independent of the engine's. */
static float
ref_e4m3(uint8_t b)
{
    int    e = (b >> 3) & 0xf, m = b & 7;
    float  v;

    if ((b & 0x7f) == 0x7f) {
        return NAN;
    }
    v = e == 0 ? ldexpf((float) m, -9) : ldexpf(1.0f + m / 8.0f, e - 7);
    return (b & 0x80) ? -v : v;
}


static float
ref_e5m2(uint8_t b)
{
    int    e = (b >> 2) & 0x1f, m = b & 3;
    float  v;

    if (e == 31) {
        v = m ? NAN : INFINITY;
    } else {
        v = e == 0 ? ldexpf((float) m, -16) : ldexpf(1.0f + m / 4.0f, e - 15);
    }
    return (b & 0x80) ? -v : v;
}


/* Nearest finite code by search, ties to the even code, saturating. */
static uint8_t
brute(float (*dec)(uint8_t), uint8_t maxcode, float x)
{
    int      c, best;
    double   d, bd, a;

    a = fabs((double) x);
    best = 0;
    bd = INFINITY;
    for (c = 0; c <= maxcode; c++) {
        d = fabs((double) dec((uint8_t) c) - a);
        if (d < bd || (d == bd && (c & 1) == 0)) {
            bd = d;
            best = c;
        }
    }
    return (uint8_t) (best | (signbit(x) ? 0x80 : 0));
}


static void
test_conversions(void)
{
    int       c, bad;
    float     x;
    uint32_t  r;
    size_t    i;

    static const struct {
        float     x;
        uint8_t   e4m3, e5m2;
    } table[] = {
        { 0.0f,            0x00, 0x00 },
        { -0.0f,           0x80, 0x80 },
        { 1.0f,            0x38, 0x3c },
        { -2.0f,           0xc0, 0xc0 },
        { 1.0625f,         0x38, 0x3c },    /* e4m3 tie 1 | 1.125: even */
        { 1.1875f,         0x3a, 0x3d },    /* e4m3 tie 1.125 | 1.25: even */
        { 1.125f,          0x39, 0x3c },    /* e5m2 tie 1 | 1.25: even */
        { 1.375f,          0x3b, 0x3e },    /* e5m2 tie 1.25 | 1.5: even */
        { 448.0f,          0x7e, 0x5f },
        { 464.0f,          0x7e, 0x5f },    /* e4m3 tie 448 | (480): sat. */
        { 1e6f,            0x7e, 0x7b },
        { 57344.0f,        0x7e, 0x7b },
        { 61440.0f,        0x7e, 0x7b },    /* e5m2 tie 57344 | (65536) */
        { INFINITY,        0x7e, 0x7b },
        { -INFINITY,       0xfe, 0xfb },
        { 0x1p-9f,         0x01, 0x18 },    /* e4m3 smallest subnormal */
        { 0x1p-10f,        0x00, 0x14 },    /* tie 0 | 2^-9: even (0) */
        { 0x3p-10f,        0x02, 0x1a },    /* tie 2^-9 | 2^-8: even */
        { 0x1p-6f,         0x08, 0x24 },    /* e4m3 smallest normal */
        { 0xfp-10f,        0x08, 0x24 },    /* tie 7 | 8 x 2^-9: even 8 */
        { 0x11p-10f,       0x08, 0x24 },    /* tie 8 | 9 x 2^-9: even 8 */
        { 0x1p-16f,        0x00, 0x01 },    /* e5m2 smallest subnormal */
        { 0x3p-17f,        0x00, 0x02 },    /* e5m2 tie 1 | 2: even */
        { 0x1p-14f,        0x00, 0x04 },    /* e5m2 smallest normal */
    };

    for (i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        T_CHECK(sd_f32_to_e4m3(table[i].x) == table[i].e4m3,
                "e4m3(%a) = 0x%02x, want 0x%02x", (double) table[i].x,
                sd_f32_to_e4m3(table[i].x), table[i].e4m3);
        T_CHECK(sd_f32_to_e5m2(table[i].x) == table[i].e5m2,
                "e5m2(%a) = 0x%02x, want 0x%02x", (double) table[i].x,
                sd_f32_to_e5m2(table[i].x), table[i].e5m2);
    }
    T_CHECK(sd_f32_to_e4m3(NAN) == 0x7f, "e4m3(NaN) = 0x%02x",
            sd_f32_to_e4m3(NAN));
    T_CHECK(sd_f32_to_e5m2(NAN) == 0x7e, "e5m2(NaN) = 0x%02x",
            sd_f32_to_e5m2(NAN));

    /* all 256 codes decode as the spec says; finite codes round-trip */
    bad = 0;
    for (c = 0; c < 256; c++) {
        x = sd_e4m3_to_f32((uint8_t) c);
        if (isnan(ref_e4m3((uint8_t) c)) ? !isnan(x)
            : (x != ref_e4m3((uint8_t) c)
               || signbit(x) != signbit(ref_e4m3((uint8_t) c))
               || sd_f32_to_e4m3(x) != c))
        {
            bad++;
        }
        x = sd_e5m2_to_f32((uint8_t) c);
        if (isnan(ref_e5m2((uint8_t) c)) ? !isnan(x)
            : (x != ref_e5m2((uint8_t) c)
               || (isfinite(x) && sd_f32_to_e5m2(x) != c)))
        {
            bad++;
        }
    }
    T_CHECK(bad == 0, "%d of 512 codes decode or round-trip wrong", bad);
    T_CHECK(sd_e5m2_to_f32(0x7c) == INFINITY, "e5m2 0x7c is +inf");

    /* 200000 values over the whole range against the nearest-code search */
    bad = 0;
    r = 12345;
    for (i = 0; i < 200000; i++) {
        r = r * 1664525u + 1013904223u;
        x = ldexpf((float) (r >> 8) / 16777216.0f, (int) (r % 40) - 22);
        if (r & 0x80) {
            x = -x;
        }
        if (sd_f32_to_e4m3(x) != brute(ref_e4m3, 0x7e, x)) {
            if (bad++ < 3) {
                printf("   e4m3(%a) = 0x%02x, nearest 0x%02x\n", (double) x,
                       sd_f32_to_e4m3(x), brute(ref_e4m3, 0x7e, x));
            }
        }
        if (sd_f32_to_e5m2(x) != brute(ref_e5m2, 0x7b, x)) {
            if (bad++ < 3) {
                printf("   e5m2(%a) = 0x%02x, nearest 0x%02x\n", (double) x,
                       sd_f32_to_e5m2(x), brute(ref_e5m2, 0x7b, x));
            }
        }
    }
    T_CHECK(bad == 0, "%d of 400000 encodings differ from the nearest code",
            bad);
}


static void
test_quantize(void)
{
    int       i, j, bad;
    float     x[4 * 32], sc[4], s1, d, bound;
    uint8_t   q[4 * 32];
    sd_err    err = {0};

    for (i = 0; i < 4; i++) {
        for (j = 0; j < 32; j++) {
            x[i * 32 + j] = i == 2 ? 0.0f
                : (float) ((j * 37 + i * 11) % 29 - 14) * (i + 1) * 0.01f;
        }
    }

    T_CHECK(sd_fp8_quantize(&err, x, 4, 32, 1, q, sc) == SD_OK, "%s",
            err.msg);
    T_CHECK(sc[2] == 1.0f, "all-zero row scale %g, want 1", (double) sc[2]);
    T_CHECK(sc[0] == 0.14f / 448.0f, "row 0 scale %g", (double) sc[0]);
    bad = 0;
    for (i = 0; i < 4; i++) {
        for (j = 0; j < 32; j++) {
            d = fabsf(sd_e4m3_to_f32(q[i * 32 + j]) * sc[i] - x[i * 32 + j]);
            bound = fmaxf(fabsf(x[i * 32 + j]) * 0.0625f,
                          sc[i] * 0x1p-10f);
            bad += d > bound * 1.0001f;
        }
        /* the row's largest magnitude maps onto +-448 */
        bad += i != 2 && sd_e4m3_to_f32(q[i * 32 + 14 % 32]) == 0.0f
               && x[i * 32 + 14] != 0.0f;
    }
    T_CHECK(bad == 0, "%d per-row values off by more than half an ulp", bad);

    T_CHECK(sd_fp8_quantize(&err, x, 4, 32, 0, q, &s1) == SD_OK, "%s",
            err.msg);
    T_CHECK(s1 == 0.56f / 448.0f, "tensor scale %g", (double) s1);

    x[3 * 32 + 5] = NAN;
    sd_err_clear(&err);
    T_CHECK(sd_fp8_quantize(&err, x, 4, 32, 1, q, sc) != SD_OK
            && strstr(err.msg, "row 3") != NULL,
            "NaN input: \"%s\"", err.msg);
}


/* ---- scale forms ----------------------------------------------------- */


static uint8_t   w8[4 * 32];
static float     want[4 * 32];


static void
t_path(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%.200s/%.50s", tdir, name);
}


/* A file of one F8 weight "l.weight" [4, 32] plus extra tensors. */
static sd_status
write_case(const char *name, sd_dtype wdt, const sd_st_out *extra, size_t n)
{
    char        path[512];
    size_t      i;
    sd_err      err = {0};
    sd_st_out   t[8];

    memset(t, 0, sizeof(t));
    t[0].name = "l.weight";
    t[0].dtype = wdt;
    t[0].ndim = 2;
    t[0].shape[0] = 4;
    t[0].shape[1] = 32;
    t[0].data = w8;
    for (i = 0; i < n; i++) {
        t[1 + i] = extra[i];
    }
    t_path(path, sizeof(path), name);
    return sd_st_write(&err, path, t, 1 + n);
}


static sd_st_out
t_out(const char *name, sd_dtype dt, int ndim, int64_t d0, int64_t d1,
    const void *data)
{
    sd_st_out  o;

    memset(&o, 0, sizeof(o));
    o.name = name;
    o.dtype = dt;
    o.ndim = ndim;
    o.shape[0] = d0;
    o.shape[1] = d1;
    o.data = data;
    return o;
}


/* Open case name; on success the dequantized weight must equal want[]. */
static sd_status
open_case(const char *name, sd_err *err, sd_st_tensor *info)
{
    char                 path[512];
    float                got[4 * 32];
    sd_st               *st;
    sd_status            s;
    const sd_st_tensor  *t;

    t_path(path, sizeof(path), name);
    s = sd_st_open(err, path, &st);
    if (s != SD_OK) {
        return s;
    }
    t = sd_st_find(st, "l.weight");
    s = sd_st_read_f32(err, t, got);
    if (s == SD_OK) {
        T_CHECK(memcmp(got, want, sizeof(got)) == 0,
                "%s: dequantized weight differs", name);
        *info = *t;
        info->scale = NULL;                     /* freed with st */
    }
    sd_st_close(st);
    return s;
}


static void
test_scale_forms(void)
{
    int            i;
    char           cq_e4[] = "{\"format\": \"float8_e4m3fn\"}";
    char           cq_e5[] = "{\"format\": \"float8_e5m2\"}";
    char           cq_nv[] = "{\"format\": \"nvfp4\"}";
    float          s_half = 0.5f, s_two = 2.0f, rows[4] = { 1, 2, 0.25f, 4 };
    float          s_neg = -1.0f, s_nan = NAN, s_zero = 0.0f;
    int32_t        s_int = 1;
    sd_err         err = {0};
    sd_st_out      e[4];
    sd_st_tensor   info;

    for (i = 0; i < 4 * 32; i++) {
        w8[i] = (uint8_t) ((i * 7) & 0xff);
        if ((w8[i] & 0x7f) == 0x7f) {
            w8[i] = 0x10;                       /* no NaN codes */
        }
    }

    /* plain cast: scale 1 */
    for (i = 0; i < 4 * 32; i++) {
        want[i] = sd_e4m3_to_f32(w8[i]);
    }
    T_CHECK(write_case("plain.safetensors", SD_DT_F8_E4M3, NULL, 0) == SD_OK,
            "write plain");
    memset(&info, 0, sizeof(info));
    T_CHECK(open_case("plain.safetensors", &err, &info) == SD_OK, "plain: %s",
            err.msg);
    T_CHECK(info.n_scale == 0 && info.input_scale == 0.0f,
            "plain: no scale expected");

    /* old ComfyUI form: scaled_fp8 marker, scale_weight, scale_input */
    for (i = 0; i < 4 * 32; i++) {
        want[i] = sd_e4m3_to_f32(w8[i]) * 0.5f;
    }
    e[0] = t_out("l.scale_weight", SD_DT_F32, 0, 0, 0, &s_half);
    e[1] = t_out("l.scale_input", SD_DT_F32, 0, 0, 0, &s_two);
    e[2] = t_out("scaled_fp8", SD_DT_F8_E4M3, 1, 0, 0, NULL);
    write_case("old.safetensors", SD_DT_F8_E4M3, e, 3);
    T_CHECK(open_case("old.safetensors", &err, &info) == SD_OK, "old: %s",
            err.msg);
    T_CHECK(info.n_scale == 1 && info.input_scale == 2.0f,
            "old: n_scale %lld input_scale %g", (long long) info.n_scale,
            (double) info.input_scale);

    /* new form, per tensor, with comfy_quant and input_scale */
    e[0] = t_out("l.weight_scale", SD_DT_F32, 0, 0, 0, &s_half);
    e[1] = t_out("l.input_scale", SD_DT_F32, 1, 1, 0, &s_two);
    e[2] = t_out("l.comfy_quant", SD_DT_U8, 1, (int64_t) strlen(cq_e4), 0,
                 cq_e4);
    write_case("new.safetensors", SD_DT_F8_E4M3, e, 3);
    T_CHECK(open_case("new.safetensors", &err, &info) == SD_OK, "new: %s",
            err.msg);
    T_CHECK(info.n_scale == 1 && info.input_scale == 2.0f, "new: scales");

    /* new form, per output channel, [4] and [4, 1] */
    for (i = 0; i < 4 * 32; i++) {
        want[i] = sd_e4m3_to_f32(w8[i]) * rows[i / 32];
    }
    e[0] = t_out("l.weight_scale", SD_DT_F32, 1, 4, 0, rows);
    write_case("rows.safetensors", SD_DT_F8_E4M3, e, 1);
    T_CHECK(open_case("rows.safetensors", &err, &info) == SD_OK, "rows: %s",
            err.msg);
    T_CHECK(info.n_scale == 4, "rows: n_scale %lld",
            (long long) info.n_scale);
    e[0] = t_out("l.weight_scale", SD_DT_F32, 2, 4, 1, rows);
    write_case("rows2.safetensors", SD_DT_F8_E4M3, e, 1);
    T_CHECK(open_case("rows2.safetensors", &err, &info) == SD_OK,
            "rows [4,1]: %s", err.msg);

    /* E5M2 with a scale and its comfy_quant */
    for (i = 0; i < 4 * 32; i++) {
        w8[i] &= 0x7b;                          /* finite E5M2 codes */
        want[i] = sd_e5m2_to_f32(w8[i]) * 0.5f;
    }
    e[0] = t_out("l.weight_scale", SD_DT_F32, 0, 0, 0, &s_half);
    e[1] = t_out("l.comfy_quant", SD_DT_U8, 1, (int64_t) strlen(cq_e5), 0,
                 cq_e5);
    write_case("e5m2.safetensors", SD_DT_F8_E5M2, e, 2);
    T_CHECK(open_case("e5m2.safetensors", &err, &info) == SD_OK, "e5m2: %s",
            err.msg);

    /* malformed: each must fail naming the tensor and the fault */
    {
        static const struct {
            const char  *file, *scale, *expect;
        } bad[] = {
            { "b_dtype.safetensors", "l.weight_scale", "dtype I32" },
            { "b_shape.safetensors", "l.weight_scale", "shape [3]" },
            { "b_neg.safetensors",   "l.weight_scale", "positive finite" },
            { "b_nan.safetensors",   "l.scale_weight", "positive finite" },
            { "b_zero.safetensors",  "l.weight_scale", "positive finite" },
            { "b_in.safetensors",    "l.input_scale",  "one value expected" },
            { "b_miss.safetensors",  "l.weight_scale", "missing" },
            { "b_fmt.safetensors",   "l.comfy_quant",  "nvfp4" },
            { "b_mix.safetensors",   "l.comfy_quant",  "is F8_E4M3" },
        };

        e[1] = t_out("l.comfy_quant", SD_DT_U8, 1, (int64_t) strlen(cq_e4),
                     0, cq_e4);
        e[0] = t_out("l.weight_scale", SD_DT_I32, 0, 0, 0, &s_int);
        write_case(bad[0].file, SD_DT_F8_E4M3, e, 1);
        e[0] = t_out("l.weight_scale", SD_DT_F32, 1, 3, 0, rows);
        write_case(bad[1].file, SD_DT_F8_E4M3, e, 1);
        e[0] = t_out("l.weight_scale", SD_DT_F32, 0, 0, 0, &s_neg);
        write_case(bad[2].file, SD_DT_F8_E4M3, e, 1);
        e[0] = t_out("l.scale_weight", SD_DT_F32, 0, 0, 0, &s_nan);
        write_case(bad[3].file, SD_DT_F8_E4M3, e, 1);
        e[0] = t_out("l.weight_scale", SD_DT_F32, 0, 0, 0, &s_zero);
        write_case(bad[4].file, SD_DT_F8_E4M3, e, 1);
        e[0] = t_out("l.input_scale", SD_DT_F32, 1, 4, 0, rows);
        write_case(bad[5].file, SD_DT_F8_E4M3, e, 1);
        write_case(bad[6].file, SD_DT_F8_E4M3, e + 1, 1);
        e[0] = t_out("l.weight_scale", SD_DT_F32, 0, 0, 0, &s_half);
        e[1] = t_out("l.comfy_quant", SD_DT_U8, 1, (int64_t) strlen(cq_nv),
                     0, cq_nv);
        write_case(bad[7].file, SD_DT_F8_E4M3, e, 2);
        e[1] = t_out("l.comfy_quant", SD_DT_U8, 1, (int64_t) strlen(cq_e5),
                     0, cq_e5);
        write_case(bad[8].file, SD_DT_F8_E4M3, e, 2);

        for (i = 0; i < (int) (sizeof(bad) / sizeof(bad[0])); i++) {
            sd_err_clear(&err);
            T_CHECK(open_case(bad[i].file, &err, &info) != SD_OK
                    && strstr(err.msg, bad[i].scale) != NULL
                    && strstr(err.msg, bad[i].expect) != NULL,
                    "%s: \"%s\" should name %s and say %s", bad[i].file,
                    err.msg, bad[i].scale, bad[i].expect);
        }
    }
}


/* ---- the key map on the tiny transformer ------------------------------ */


/* Every tensor of ref is in a and b with bit-identical F32 values. */
static void
same_weights(const sd_st *ref, const sd_st *a, const sd_st *b,
    const char *what, double *rel_max)
{
    size_t               i, nd, nmiss;
    float               *x, *y, *r;
    double               rel;
    sd_err               err = {0};
    const sd_st_tensor  *t, *ta, *tb;

    nd = 0;
    nmiss = 0;
    *rel_max = 0;
    for (i = 0; i < sd_st_count(ref); i++) {
        t = sd_st_at(ref, i);
        ta = sd_st_find(a, t->name);
        tb = sd_st_find(b, t->name);
        if (ta == NULL || tb == NULL || ta->numel != t->numel
            || tb->numel != t->numel)
        {
            if (nmiss++ < 3) {
                printf("   %s: \"%s\" missing or of another size\n", what,
                       t->name);
            }
            continue;
        }
        x = malloc((size_t) t->numel * sizeof(float));
        y = malloc((size_t) t->numel * sizeof(float));
        r = malloc((size_t) t->numel * sizeof(float));
        if (x && y && r && sd_st_read_f32(&err, ta, x) == SD_OK
            && sd_st_read_f32(&err, tb, y) == SD_OK
            && sd_st_read_f32(&err, t, r) == SD_OK)
        {
            if (memcmp(x, y, (size_t) t->numel * sizeof(float)) != 0) {
                if (nd++ < 3) {
                    printf("   %s: \"%s\" differs\n", what, t->name);
                }
            }
            rel = t_rel_l2(x, r, (size_t) t->numel);
            if (rel > *rel_max) {
                *rel_max = rel;
            }
        }
        free(x);
        free(y);
        free(r);
    }
    T_CHECK(nmiss == 0 && nd == 0, "%s: %zu missing, %zu differ of %zu",
            what, nmiss, nd, sd_st_count(ref));
}


/*
 * Component comp of the bundle file py against the fixture's: the same
 * values as in our file (ours) or, when ours is NULL, exactly the
 * fixture's (BF16 passed through; the VAE's attention weights reshaped).
 */
static void
same_component(const char *model, const char *py, const char *ours,
    const char *comp, double bound)
{
    char                 dir[600], what[128];
    double               rel;
    sd_st               *ref = NULL, *a = NULL, *b = NULL;
    sd_err               err = {0};

    snprintf(dir, sizeof(dir), "%s/%s", model, comp);
    snprintf(what, sizeof(what), "python bundle %s", comp);
    if (sd_st_open_dir(&err, dir, &ref) != SD_OK
        || sd_ckpt_open_file(&err, py, comp, &a) != SD_OK
        || (ours != NULL && sd_ckpt_open_file(&err, ours, comp, &b) != SD_OK))
    {
        T_CHECK(0, "%s: %s", what, err.msg);
    } else {
        same_weights(ref, a, b ? b : ref, what, &rel);
        printf("   %s vs BF16: worst rel. L2 %.4f\n", what, rel);
        T_CHECK(rel <= bound, "%s: error %.4f over %.4f", what, rel, bound);
    }
    sd_st_close(ref);
    sd_st_close(a);
    sd_st_close(b);
}


static const char *
tiny_dir(char *buf, size_t len)
{
    snprintf(buf, len, "%s/tiny-sd35-large", t_fixtures());
    return buf;
}


/* Run tests/fp8/comfy_fp8.py with a python3 that has numpy; 77: none. */
static int
run_python(const char *src, const char *out)
{
    char  cmd[2048];
    int   rc;

    snprintf(cmd, sizeof(cmd),
             "for p in python3 /usr/bin/python3; do "
             "if $p -c 'import numpy' 2>/dev/null; then "
             "exec $p tests/fp8/comfy_fp8.py '%s' '%s'; fi; done; exit 77",
             src, out);
    rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}


static void
test_key_map(void)
{
    int                  nq, rc;
    char                 model[512], dir[600], ours_t[512], ours_r[512];
    char                 py[512];
    double               rel;
    sd_st               *ref, *load, *a, *b;
    sd_err               err = {0};
    const sd_st_tensor  *t;

    tiny_dir(model, sizeof(model));
    snprintf(dir, sizeof(dir), "%s/transformer", model);
    if (access(dir, R_OK) != 0) {
        T_SKIP("no tiny fixture at %s", dir);
        return;
    }
    t_path(ours_t, sizeof(ours_t), "ours_tensor.safetensors");
    t_path(ours_r, sizeof(ours_r), "ours_rows.safetensors");
    t_path(py, sizeof(py), "comfy_py.safetensors");

    T_CHECK(sd_ckpt_write_fp8(&err, model, ours_t, 0, NULL) == SD_OK,
            "write per-tensor: %s", err.msg);
    T_CHECK(sd_ckpt_write_fp8(&err, model, ours_r, 1, NULL) == SD_OK,
            "write per-row: %s", err.msg);

    if (sd_st_open_dir(&err, dir, &ref) != SD_OK) {
        T_CHECK(0, "open fixture: %s", err.msg);
        return;
    }

    /* our file uses the ComfyUI names, fused qkv, comfy_quant */
    a = NULL;
    T_CHECK(sd_ckpt_open_file(&err, ours_r, "transformer", &a) == SD_OK,
            "open ours: %s", err.msg);
    t = a ? sd_st_find(a, "model.diffusion_model.joint_blocks.0.x_block."
                       "attn.qkv.weight") : NULL;
    T_CHECK(t != NULL && t->dtype == SD_DT_F8_E4M3 && t->shape[0] == 384
            && t->n_scale == 384, "fused qkv in FP8 with 384 row scales");
    T_CHECK(a && sd_st_find(a, "model.diffusion_model.joint_blocks.0."
                            "x_block.attn.qkv.comfy_quant") != NULL,
            "comfy_quant written");
    t = a ? sd_st_find(a, "proj_out.weight") : NULL;
    T_CHECK(t != NULL && t->dtype == SD_DT_BF16, "final layer kept BF16");

    /* quantize-at-load per row == our per-row file, bit for bit */
    load = NULL;
    if (sd_st_open_dir(&err, dir, &load) == SD_OK) {
        T_CHECK(sd_ckpt_quantize(&err, load, 1, NULL, &nq) == SD_OK
                && nq > 0, "quantize at load: %s", err.msg);
        printf("   quantize-at-load: %d tensors in FP8\n", nq);
        if (a != NULL) {
            same_weights(ref, a, load, "per-row file vs quantize-at-load",
                         &rel);
            printf("   per-row FP8 vs BF16 weights: worst rel. L2 %.4f\n",
                   rel);
            T_CHECK(rel < 0.04, "per-row FP8 weight error %.4f", rel);
        }
        sd_st_close(load);
    }
    sd_st_close(a);

    /* an independent writer (Python, ComfyUI's scaled_fp8 bundle) == ours */
    rc = run_python(model, py);
    if (rc == 77) {
        T_SKIP("no python3 with numpy: the independent writer not run");
    } else {
        T_CHECK(rc == 0, "tests/fp8/comfy_fp8.py exited %d", rc);
        a = b = NULL;
        if (rc == 0
            && sd_ckpt_open_file(&err, py, "transformer", &a) == SD_OK
            && sd_ckpt_open_file(&err, ours_t, "transformer", &b) == SD_OK)
        {
            t = sd_st_find(a, "model.diffusion_model.joint_blocks.2."
                           "context_block.mlp.fc2.weight");
            T_CHECK(t == NULL, "pre-only context block has no mlp");
            t = sd_st_find(a, "transformer_blocks.1.attn.to_k.weight");
            T_CHECK(t != NULL && t->n_scale == 1 && t->input_scale == 1.0f
                    && t->dtype == SD_DT_F8_E4M3,
                    "scale_weight / scale_input attached to the k view");
            same_weights(ref, a, b, "python scaled_fp8 vs ours per-tensor",
                         &rel);
            printf("   per-tensor FP8 vs BF16 weights: worst rel. L2 %.4f\n",
                   rel);
            T_CHECK(rel < 0.08, "per-tensor FP8 weight error %.4f", rel);
        } else {
            T_CHECK(0, "open python file: %s", err.msg);
        }
        sd_st_close(a);
        sd_st_close(b);
        if (rc == 0) {
            same_component(model, py, ours_t, "text_encoder_3", 0.08);
            same_component(model, py, NULL, "vae", 0);
            same_component(model, py, NULL, "text_encoder_2", 0);
        }
    }

    sd_st_close(ref);
}


/* ---- an independent PyTorch writer: tests/gpu/comfy_fp8.py ----------- */


/* A python3 that imports torch (and so numpy): its path, or NULL. */
static const char *
torch_python(void)
{
    static const char  *cands[] = { "python3", "/usr/bin/python3" };
    char                cmd[256];
    size_t              i;

    for (i = 0; i < sizeof(cands) / sizeof(cands[0]); i++) {
        snprintf(cmd, sizeof(cmd), "%s -c 'import torch, numpy' "
                 ">/dev/null 2>&1", cands[i]);
        if (system(cmd) == 0) {
            return cands[i];
        }
    }
    return NULL;
}


/* q, k or v of a fused qkv: one scale for the three in a per-tensor file */
static int
qkv_part(const char *name)
{
    static const char  *parts[] = {
        ".to_q.weight", ".to_k.weight", ".to_v.weight",
        ".add_q_proj.weight", ".add_k_proj.weight", ".add_v_proj.weight"
    };
    size_t  i, n = strlen(name), m;

    for (i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
        m = strlen(parts[i]);
        if (n >= m && strcmp(name + n - m, parts[i]) == 0) {
            return 1;
        }
    }
    return 0;
}


/*
 * file a against quantize-at-load (per tensor) of the folder: FP8 exactly
 * where load is, every tensor bit for bit equal but q, k and v; those
 * within the E4M3 error of BF16.
 */
static void
like_load(const sd_st *ref, const sd_st *a, const sd_st *load,
    const char *what)
{
    size_t               i, n, same, f8, qkv, other;
    float               *x, *y, *r;
    double               rel, worst;
    sd_err               err = {0};
    const sd_st_tensor  *t, *ta, *tl;

    same = f8 = qkv = other = 0;
    worst = 0;
    for (i = 0; i < sd_st_count(ref); i++) {
        t = sd_st_at(ref, i);
        ta = sd_st_find(a, t->name);
        tl = sd_st_find(load, t->name);
        if (ta == NULL || tl == NULL || ta->numel != t->numel) {
            continue;                           /* same_weights counts it */
        }
        f8 += (ta->dtype == SD_DT_F8_E4M3) != (tl->dtype == SD_DT_F8_E4M3);
        n = (size_t) t->numel;
        x = malloc(n * sizeof(float));
        y = malloc(n * sizeof(float));
        r = malloc(n * sizeof(float));
        if (x && y && r && sd_st_read_f32(&err, ta, x) == SD_OK
            && sd_st_read_f32(&err, tl, y) == SD_OK
            && sd_st_read_f32(&err, t, r) == SD_OK)
        {
            if (memcmp(x, y, n * sizeof(float)) == 0) {
                same++;
            } else if (qkv_part(t->name)) {
                rel = t_rel_l2(x, r, n);
                worst = rel > worst ? rel : worst;
                qkv++;
            } else if (other++ < 3) {
                printf("   %s: \"%s\" differs from quantize-at-load\n", what,
                       t->name);
            }
        }
        free(x);
        free(y);
        free(r);
    }
    printf("   %s: %zu of %zu tensors equal to quantize-at-load, %zu q/k/v "
           "differ (worst rel. L2 to BF16 %.4f)\n", what, same,
           sd_st_count(ref), qkv, worst);
    T_CHECK(f8 == 0, "%s: %zu tensors FP8 in one and not the other", what,
            f8);
    T_CHECK(other == 0 && same + qkv == sd_st_count(ref) && worst < 0.05,
            "%s: %zu equal, %zu q/k/v parts and %zu others differ (q/k/v "
            "rel. L2 %.4f)", what, same, qkv, other, worst);
}


static void
test_torch_writer(void)
{
    int                  f, m, rc;
    char                 model[512], dir[600], ours[512], py[512];
    char                 cmd[2048], what[128];
    double               rel;
    sd_st               *ref, *load, *a, *b;
    sd_err               err = {0};
    const char          *python = torch_python();
    const sd_st_tensor  *t;

    static const char  *models[] = { "large", "medium" };
    static const char  *forms[] = { "scaled_fp8", "comfy_quant" };

    if (python == NULL) {
        T_SKIP("no python3 with torch: tests/gpu/comfy_fp8.py not run");
        return;
    }
    for (m = 0; m < 2; m++) {
        snprintf(model, sizeof(model), "%s/tiny-sd35-%s", t_fixtures(),
                 models[m]);
        snprintf(dir, sizeof(dir), "%s/transformer", model);
        if (access(dir, R_OK) != 0) {
            T_SKIP("no tiny fixture at %s", dir);
            continue;
        }
        snprintf(cmd, sizeof(cmd), "ours_%s.safetensors", models[m]);
        t_path(ours, sizeof(ours), cmd);
        ref = load = NULL;
        if (sd_ckpt_write_fp8(&err, model, ours, 0, NULL) != SD_OK
            || sd_st_open_dir(&err, dir, &ref) != SD_OK
            || sd_st_open_dir(&err, dir, &load) != SD_OK
            || sd_ckpt_quantize(&err, load, 0, NULL, &rc) != SD_OK)
        {
            T_CHECK(0, "%s: %s", models[m], err.msg);
            sd_st_close(ref);
            sd_st_close(load);
            continue;
        }
        for (f = 0; f < 2; f++) {
            snprintf(cmd, sizeof(cmd), "torch_%s_%s.safetensors", models[m],
                     forms[f]);
            t_path(py, sizeof(py), cmd);
            snprintf(cmd, sizeof(cmd), "%s tests/gpu/comfy_fp8.py '%s' '%s' "
                     "--form %s", python, model, py, forms[f]);
            fflush(stdout);
            rc = system(cmd);
            T_CHECK(rc == 0, "%s: exited %d", cmd, rc);
            a = b = NULL;
            if (rc != 0
                || sd_ckpt_open_file(&err, py, "transformer", &a) != SD_OK
                || sd_ckpt_open_file(&err, ours, "transformer", &b) != SD_OK)
            {
                T_CHECK(rc != 0, "open %s: %s", py, err.msg);
                sd_st_close(a);
                continue;
            }
            snprintf(what, sizeof(what), "tiny %s, torch %s", models[m],
                     forms[f]);
            /* the same bytes as our per-tensor writer, names mapped */
            same_weights(ref, a, b, what, &rel);
            like_load(ref, a, load, what);
            t = sd_st_find(a, f ? "model.diffusion_model.joint_blocks.0."
                                  "x_block.attn.qkv.comfy_quant"
                                : "model.diffusion_model.scaled_fp8");
            T_CHECK(t != NULL, "%s: its form's marker", what);
            t = sd_st_find(a, "transformer_blocks.1.ff.net.2.weight");
            T_CHECK(t != NULL && t->dtype == SD_DT_F8_E4M3 && t->n_scale == 1
                    && t->input_scale == 1.0f, "%s: FP8 ff.net.2 with one "
                    "scale and input scale 1", what);
            t = sd_st_find(a, "transformer_blocks.0.attn2.to_k.weight");
            T_CHECK(m == 0 ? t == NULL : t != NULL && t->n_scale == 1,
                    "%s: attn2 only in Medium", what);
            sd_st_close(a);
            sd_st_close(b);
        }
        sd_st_close(ref);
        sd_st_close(load);
    }
}


/*
 * What tests/gpu/run.sh's comfy stage runs, on the CPU and the tiny Large:
 * fp8-check of the torch file, fp8-model, txt2img --dump from that folder
 * and from the BF16 one, dump_cmp.py between the two.
 */
static void
test_torch_cli(void)
{
    int          rc;
    char         model[512], py[512], cmd[8192], out[4096];
    FILE        *p;
    size_t       n;
    const char  *cli = getenv("SD_CLI"), *python = torch_python();

    cli = (cli && *cli) ? cli : "build/sd-cli";
    tiny_dir(model, sizeof(model));
    t_path(py, sizeof(py), "torch_large_scaled_fp8.safetensors");
    if (python == NULL || access(py, R_OK) != 0 || access(cli, X_OK) != 0) {
        T_SKIP("no torch file or no %s: the comfy stage's commands not run",
               cli);
        return;
    }
    snprintf(cmd, sizeof(cmd),
             "%s fp8-check '%s' '%s' && echo check=0 || echo check=$?;"
             " %s fp8-model '%s/torchmodel' --base '%s' --file '%s' &&"
             " for m in '%s/torchmodel' '%s'; do"
             "   %s txt2img --model \"$m\" --prompt 'a red fox' --width 64"
             "   --height 64 --steps 2 --seed 7"
             "   --dump \"%s/torch-dump-$(basename \"$m\").safetensors\""
             "   || exit 1;"
             " done &&"
             " %s tests/gpu/dump_cmp.py '%s/torch-dump-torchmodel.safetensors'"
             " '%s/torch-dump-%s.safetensors' 2>&1",
             cli, model, py, cli, tdir, model, py, tdir, model, cli, tdir,
             python, tdir, tdir, strrchr(model, '/') + 1);
    fflush(stdout);
    p = popen(cmd, "r");
    n = p ? fread(out, 1, sizeof(out) - 1, p) : 0;
    out[n] = '\0';
    rc = p ? pclose(p) : -1;
    printf("%s", out);
    T_CHECK(rc == 0 && strstr(out, "check=0") != NULL
            && strstr(out, "transformer         107       0") != NULL,
            "fp8-check of the torch file: %s", out);
    T_CHECK(strstr(out, "final_latents_rel_l2 ") != NULL
            && strstr(out, "image_psnr_db ") != NULL,
            "fp8-model, txt2img from it and dump_cmp.py: %s", out);
}


/* ---- policy ---------------------------------------------------------- */


static void
test_policy(void)
{
    int64_t  s2[2] = { 128, 128 }, s3[2] = { 128, 120 };
    sd_err   err = {0};

    T_CHECK(strcmp(sd_fp8_layer_kind("transformer_blocks.3.attn.to_q."
                                     "weight"), "img_qkv") == 0,
            "to_q kind");
    T_CHECK(strcmp(sd_fp8_layer_kind("encoder.block.0.layer.1."
                                     "DenseReluDense.wi_1.weight"),
                   "t5_ff_up") == 0, "t5 wi_1 kind");
    T_CHECK(sd_fp8_wanted("transformer_blocks.0.ff.net.2.weight", 2, s2,
                          NULL), "ff_down in FP8 by default");
    T_CHECK(!sd_fp8_wanted("transformer_blocks.0.ff.net.2.weight", 2, s2,
                           "img_ff_down,adaln"), "ff_down kept when listed");
    T_CHECK(!sd_fp8_wanted("transformer_blocks.0.ff.net.2.weight", 2, s3,
                           NULL), "K not a multiple of 16 stays");
    T_CHECK(!sd_fp8_wanted("proj_out.weight", 2, s2, NULL),
            "final layer kept by default");
    T_CHECK(!sd_fp8_wanted("proj_out.weight", 2, s2, "none"),
            "the final layer is never FP8");
    T_CHECK(!sd_fp8_wanted("text_model.encoder.layers.0.mlp.fc1.weight", 2,
                           s2, NULL), "CLIP kept by default");
    T_CHECK(sd_fp8_wanted("text_model.encoder.layers.0.mlp.fc1.weight", 2,
                          s2, "none"), "\"none\" quantizes CLIP too");
    T_CHECK(!sd_fp8_wanted("transformer_blocks.0.ff.net.2.bias", 1, s2,
                           NULL), "bias stays");
    T_CHECK(sd_fp8_keep_check(&err, "adaln,bogus") != SD_OK
            && strstr(err.msg, "\"bogus\"") != NULL, "unknown kind: %s",
            err.msg);
}


/* ---- the tiny pipeline from an FP8 file -------------------------------- */


static int
latents(const char *model, float **out, size_t *n)
{
    sd_backend    *be = NULL;
    sd_model      *m = NULL;
    sd_pipe_args   a;
    sd_pipe_dump   d;
    sd_cond        c, neg;
    sd_err         err = {0};
    uint8_t       *rgb = NULL;
    int            ok = 0;

    memset(&a, 0, sizeof(a));
    memset(&d, 0, sizeof(d));
    a.width = 64;
    a.height = 64;
    a.steps = 4;
    a.cfg = 4.0f;
    a.seeds[0] = 7;
    a.batch = 1;
    a.rng = SD_RNG_CPU;

    if (t_backend(&err, &be) != SD_OK
        || sd_model_load(&err, be, model, SD_PART_ALL, &m) != SD_OK)
    {
        T_CHECK(0, "%s: %s", model, err.msg);
        goto done;
    }
    if (sd_cond_encode(&err, m, "a red fox in the snow", &c) != SD_OK) {
        T_CHECK(0, "encode: %s", err.msg);
        goto done;
    }
    if (sd_cond_encode(&err, m, "", &neg) != SD_OK) {
        sd_cond_free(&c);
        T_CHECK(0, "encode: %s", err.msg);
        goto done;
    }
    if (sd_pipe_txt2img(&err, m, &a, &c, &neg, &rgb, &d) == SD_OK) {
        *n = (size_t) d.latent_c * d.latent_h * d.latent_w;
        *out = malloc(*n * sizeof(float));
        if (*out != NULL) {
            memcpy(*out, d.final_latents, *n * sizeof(float));
            ok = 1;
        }
        free(rgb);
        sd_pipe_dump_free(&d);
    } else {
        T_CHECK(0, "txt2img: %s", err.msg);
    }
    sd_cond_free(&c);
    sd_cond_free(&neg);

done:
    sd_model_free(m);
    sd_backend_destroy(be);
    return ok;
}


/*
 * A model folder name under tdir: the fixture's parts linked, and the
 * components listed in comps (space-separated) replaced by file.
 */
static int
fp8_model_dir(const char *model, const char *file, const char *name,
    const char *comps, char *out, size_t len)
{
    char   cmd[4096];

    snprintf(out, len, "%s/%s", tdir, name);
    snprintf(cmd, sizeof(cmd),
             "set -e; d='%s'; m='%s'; mkdir -p \"$d\"; "
             "for p in \"$m\"/*; do b=$(basename \"$p\"); "
             "case \" %s \" in *\" $b \"*) mkdir \"$d/$b\"; "
             "ln -s \"$p/config.json\" \"$d/$b/\"; "
             "ln -s '%s' \"$d/$b/model.safetensors\";; "
             "*) ln -s \"$p\" \"$d/$b\";; esac; done",
             out, model, comps, file);
    return system(cmd) == 0;
}


static void
test_pipeline_fp8(void)
{
    char     model[512], file[512], dir[1024], name[32], abs[1024];
    float   *ref = NULL, *q = NULL;
    size_t   n = 0, n2 = 0;
    double   rel;

    static const struct {
        const char  *file, *comps, *what;
        double       bound;             /* about twice what was measured */
    } runs[] = {
        { "ours_rows.safetensors", "transformer",
          "our per-row file (transformer)", 0.1 },
        /* the tiny random T5's attention is the sensitive part: 0.115 */
        { "ours_rows.safetensors", "text_encoder_3",
          "our per-row file (T5)", 0.25 },
        { "comfy_py.safetensors",
          "transformer vae text_encoder text_encoder_2 text_encoder_3",
          "the Python ComfyUI bundle (every part)", 0.25 },
        { "torch_large_scaled_fp8.safetensors", "transformer",
          "the PyTorch scaled_fp8 file (transformer)", 0.1 },
    };

    tiny_dir(model, sizeof(model));
    if (realpath(model, abs) == NULL) {
        T_SKIP("no tiny fixture");
        return;
    }
    if (!latents(abs, &ref, &n)) {
        return;
    }
    for (size_t i = 0; i < sizeof(runs) / sizeof(runs[0]); i++) {
        t_path(file, sizeof(file), runs[i].file);
        if (access(file, R_OK) != 0) {
            T_SKIP("%s not written", runs[i].file);
            continue;
        }
        snprintf(name, sizeof(name), "fp8model%zu", i);
        if (!fp8_model_dir(abs, file, name, runs[i].comps, dir,
                           sizeof(dir)))
        {
            T_CHECK(0, "cannot make the FP8 model folder");
            continue;
        }
        if (latents(dir, &q, &n2)) {
            T_CHECK(n == n2, "latent sizes %zu, %zu", n, n2);
            rel = t_rel_l2(q, ref, n);
            printf("   tiny large, 64x64, 4 steps: final latents from %s "
                   "vs BF16: rel. L2 %.4f\n", runs[i].what, rel);
            T_CHECK(rel > 0.0 && rel < runs[i].bound, "FP8 latents rel. L2 "
                    "%.4f, bound %.2f", rel, runs[i].bound);
        }
        free(q);
        q = NULL;
    }
    free(ref);
}


/* sd-cli quantize, fp8-model and txt2img on the result, from outside. */
static void
test_cli(void)
{
    int          rc;
    char         model[512], cmd[4096], out[4096];
    FILE        *p;
    size_t       n;
    const char  *cli = getenv("SD_CLI");

    cli = (cli && *cli) ? cli : "build/sd-cli";
    tiny_dir(model, sizeof(model));
    if (access(cli, X_OK) != 0 || access(model, R_OK) != 0) {
        T_SKIP("no %s or no fixture", cli);
        return;
    }

    snprintf(cmd, sizeof(cmd),
             "%s quantize '%s' '%s/cli.safetensors' --keep adaln,bogus 2>&1;"
             " echo rc=$?;"
             " %s quantize '%s' '%s/cli.safetensors' --scale channel >/dev/null"
             " && %s fp8-model '%s/climodel' --base '%s'"
             " --file '%s/cli.safetensors'"
             " && %s txt2img --model '%s/climodel' --prompt fox --width 64"
             " --height 64 --steps 2 --output '%s/cli.png' >/dev/null;"
             " echo rc=$?",
             cli, model, tdir, cli, model, tdir, cli, tdir, model, tdir,
             cli, tdir, tdir);
    p = popen(cmd, "r");
    n = p ? fread(out, 1, sizeof(out) - 1, p) : 0;
    out[n] = '\0';
    rc = p ? pclose(p) : -1;

    T_CHECK(rc == 0 && strstr(out, "unknown layer kind \"bogus\"") != NULL
            && strstr(out, "rc=1") != NULL,
            "quantize --keep bogus must fail naming it: %s", out);
    T_CHECK(strstr(out, "transformer: ") != NULL
            && strstr(out, "text_encoder_3: ") != NULL
            && strstr(out, "rc=0") != NULL,
            "quantize, fp8-model, txt2img: %s", out);
    snprintf(cmd, sizeof(cmd), "%s/cli.png", tdir);
    T_CHECK(access(cmd, R_OK) == 0, "txt2img from the FP8 folder wrote no "
            "PNG");

    /* fp8-check: the per-channel file equals quantize-at-load exactly */
    snprintf(cmd, sizeof(cmd), "%s fp8-check '%s' '%s/cli.safetensors' "
             "--scale channel 2>&1; echo rc=$?", cli, model, tdir);
    p = popen(cmd, "r");
    n = p ? fread(out, 1, sizeof(out) - 1, p) : 0;
    out[n] = '\0';
    rc = p ? pclose(p) : -1;
    T_CHECK(rc == 0 && strstr(out, "rc=0") != NULL
            && strstr(out, "transformer         107       0     107") != NULL
            && strstr(out, "text_encoder_3       21       0      21") != NULL,
            "fp8-check: %s", out);
}


int
main(void)
{
    char  cmd[512];

    snprintf(tdir, sizeof(tdir), "/tmp/sd_test_fp8.XXXXXX");
    if (mkdtemp(tdir) == NULL) {
        printf("mkdtemp failed\n");
        return 1;
    }

    test_conversions();
    test_quantize();
    test_scale_forms();
    test_policy();
    test_key_map();
    test_torch_writer();
    test_torch_cli();
    test_pipeline_fp8();
    test_cli();

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tdir);
    if (system(cmd) != 0) {
        printf("cannot remove %s\n", tdir);
    }
    return T_DONE();
}
