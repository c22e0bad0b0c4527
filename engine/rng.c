/*
 * rng.c: torch.randn for a fresh CPU or CUDA generator, in plain C.
 *
 * CPU generator (ComfyUI's convention). torch seeds mt19937 with the low
 * 32 bits of the seed. For float32 tensors of 16 or more elements, x86-64
 * builds of torch take normal_fill_AVX2: every element first gets a 24-bit
 * uniform (low 24 bits of one mt19937 draw, times 2^-24); each block of 16
 * is then Box-Muller transformed pairwise (j, j + 8) with the avx_mathfun.h
 * log256_ps and sincos256_ps polynomials; when numel % 16 != 0 the last 16
 * elements get fresh uniforms and are transformed again. Invariant: the
 * polynomials must be evaluated with exactly the roundings torch's binary
 * performs, and GCC compiled torch's _mm256_mul_ps/_mm256_add_ps pairs into
 * FMAs (-mfma, -ffp-contract=fast), so the fused steps below are explicit
 * fmaf() calls and every other step must stay unfused (fp-contract is turned
 * off for this file; x86-64 SSE float arithmetic is assumed, not x87). Fewer
 * than 16 elements take the scalar path: at::normal_distribution<double>
 * with 53-bit uniforms from two draws, log1p, and the sin half cached for
 * the next element. (aarch64 torch builds use the libm normal_fill instead
 * and give other values; the goldens come from an x86-64 build.)
 *
 * CUDA generator (the AUTOMATIC1111 default). torch runs
 * distribution_elementwise_grid_stride_kernel with curand_normal4 on a
 * Philox4x32-10 state curand_init(seed, thread index, offset 0): with T
 * threads in the grid, thread t's k-th curand_normal4 call (counter word 0
 * equal to k) writes elements t + 4Tk + Ti, i = 0..3, in the order
 * (sin, cos) of the first uniform pair, then (sin, cos) of the second. T is
 * 256 * min(ceil(n / 256), SMs * maxThreadsPerSM / 256); we assume an H100
 * (132 SMs, 2048 threads each: T at most 270336). Up to 270336 elements
 * (every SD3.5 latent up to 1024x1024, 16x128x128 = 262144) each element is
 * the sin half of its own thread's first draw and the grid cap plays no
 * part; larger tensors depend on the GPU (an RTX 4090, 128 SMs x 1536
 * threads, caps T at 196608, so a 1024x1024 latent already differs there).
 *
 * Exactness of the CUDA path: Philox, the uniforms, logf (libdevice's
 * __nv_logf, ported operation by operation and checked against the device
 * on every float in (0, 1]) and sqrtf are bit-exact. The sine is not: curand
 * calls __sincosf, the GPU's MUFU.SIN approximation (absolute error about
 * 2^-21), whose table is not public. We model it as the correctly rounded
 * sine of the revolutions value MUFU sees (v / 2pi rounded toward zero);
 * about 23% of elements come out bit-identical, the rest within about 1e-6
 * absolute. Bit-exact CUDA noise needs the GPU itself (curand_normal4 in a
 * kernel with the layout above reproduced the goldens exactly on an H100).
 */

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "rng.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize ("fp-contract=off")
#endif


#define SD_MT_N           624
#define SD_MT_M           397

/* H100: 132 SMs x (2048 / 256) blocks x 256 threads. */
#define SD_CUDA_BLOCK     256
#define SD_CUDA_MAX_GRID  (132 * (2048 / SD_CUDA_BLOCK))


typedef struct {
    uint32_t    state[SD_MT_N];
    int         next;
} sd_mt19937;


static void sd_mt_seed(sd_mt19937 *mt, uint64_t seed);
static uint32_t sd_mt_next(sd_mt19937 *mt);
static float sd_mt_uniform24(sd_mt19937 *mt);
static double sd_mt_uniform53(sd_mt19937 *mt);
static float sd_f32(uint32_t bits);
static uint32_t sd_f32_bits(float f);
static float sd_avx_logf(float x);
static void sd_avx_sincosf(float x, float *s, float *c);
static void sd_normal_fill_16(float *data);
static void sd_randn_cpu_small(sd_mt19937 *mt, float *out, size_t n);
static void sd_philox4x32_10(const uint32_t ctr[4], uint32_t k0, uint32_t k1,
    uint32_t out[4]);
static float sd_nv_logf(float a);
static float sd_sfu_sinf(float v);
static float sd_sfu_cosf(float v);


/* ---------------------------------------------------------------- CPU */

static void
sd_mt_seed(sd_mt19937 *mt, uint64_t seed)
{
    uint32_t  *s = mt->state;
    int        j;

    s[0] = (uint32_t) seed;
    for (j = 1; j < SD_MT_N; j++) {
        s[j] = 1812433253u * (s[j - 1] ^ (s[j - 1] >> 30)) + (uint32_t) j;
    }
    mt->next = SD_MT_N;
}


static uint32_t
sd_mt_next(sd_mt19937 *mt)
{
    uint32_t  *s = mt->state;
    uint32_t   y;
    int        k;

    if (mt->next >= SD_MT_N) {
        for (k = 0; k < SD_MT_N; k++) {
            y = (s[k] & 0x80000000u) | (s[(k + 1) % SD_MT_N] & 0x7fffffffu);
            s[k] = s[(k + SD_MT_M) % SD_MT_N] ^ (y >> 1)
                   ^ ((y & 1) ? 0x9908b0dfu : 0);
        }
        mt->next = 0;
    }

    y = s[mt->next++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;

    return y;
}


/* at::uniform_real_distribution<float>: the low 24 bits of one draw. */
static float
sd_mt_uniform24(sd_mt19937 *mt)
{
    return (float) (sd_mt_next(mt) & 0xffffffu) * (1.0f / 16777216.0f);
}


/* uniform_real_distribution<double>: low 53 bits of (first << 32 | next). */
static double
sd_mt_uniform53(sd_mt19937 *mt)
{
    uint64_t  hi, lo;

    hi = sd_mt_next(mt);
    lo = sd_mt_next(mt);

    return (double) (((hi << 32) | lo) & ((UINT64_C(1) << 53) - 1))
           * (1.0 / 9007199254740992.0);
}


static float
sd_f32(uint32_t bits)
{
    float  f;

    memcpy(&f, &bits, sizeof(f));
    return f;
}


static uint32_t
sd_f32_bits(float f)
{
    uint32_t  bits;

    memcpy(&bits, &f, sizeof(bits));
    return bits;
}


/*
 * log256_ps of avx_mathfun.h for one lane (x > 0 here). The Horner chain
 * and the y * z + e * q1 step were fused by the compiler in torch's build.
 */
static float
sd_avx_logf(float x)
{
    float    e, y, z, tmp;
    int32_t  ex;
    int      lt;

    if (x < sd_f32(0x00800000u)) {
        x = sd_f32(0x00800000u);
    }
    ex = (int32_t) (sd_f32_bits(x) >> 23) - 0x7f;
    x = sd_f32((sd_f32_bits(x) & ~0x7f800000u) | sd_f32_bits(0.5f));
    e = (float) ex;
    e = e + 1.0f;

    lt = x < (float) 0.707106781186547524;
    tmp = lt ? x : 0.0f;
    x = x - 1.0f;
    e = e - (lt ? 1.0f : 0.0f);
    x = x + tmp;

    z = x * x;

    y = (float) 7.0376836292E-2;
    y = fmaf(y, x, (float) -1.1514610310E-1);
    y = fmaf(y, x, (float) 1.1676998740E-1);
    y = fmaf(y, x, (float) -1.2420140846E-1);
    y = fmaf(y, x, (float) 1.4249322787E-1);
    y = fmaf(y, x, (float) -1.6668057665E-1);
    y = fmaf(y, x, (float) 2.0000714765E-1);
    y = fmaf(y, x, (float) -2.4999993993E-1);
    y = fmaf(y, x, (float) 3.3333331174E-1);
    y = y * x;

    tmp = e * (float) -2.12194440e-4;
    y = fmaf(y, z, tmp);
    tmp = z * 0.5f;
    y = y - tmp;                        /* z * 0.5 is exact: fused or not */

    x = x + y;
    x = fmaf(e, (float) 0.693359375, x);

    return x;
}


/* sincos256_ps of avx_mathfun.h for one lane, with torch's build's FMAs. */
static void
sd_avx_sincosf(float x, float *s, float *c)
{
    float     y, y2, z, tmp, ysin1, ysin2;
    int32_t   j, jc;
    uint32_t  sign_sin, sign_cos;
    int       poly;

    sign_sin = sd_f32_bits(x) & 0x80000000u;
    x = fabsf(x);

    y = x * (float) 1.27323954473516;                   /* 4 / pi */
    j = (int32_t) y;
    j = (j + 1) & ~1;
    y = (float) j;

    sign_sin ^= (uint32_t) (j & 4) << 29;
    poly = (j & 2) == 0;
    jc = j - 2;
    sign_cos = (uint32_t) (~jc & 4) << 29;

    x = fmaf(y, (float) -0.78515625, x);
    x = fmaf(y, (float) -2.4187564849853515625e-4, x);
    x = fmaf(y, (float) -3.77489497744594108e-8, x);

    z = x * x;

    y = (float) 2.443315711809948E-005;
    y = fmaf(y, z, (float) -1.388731625493765E-003);
    y = fmaf(y, z, (float) 4.166664568298827E-002);
    y = y * z;
    tmp = z * 0.5f;
    y = fmaf(y, z, -tmp);
    y = y + 1.0f;

    y2 = (float) -1.9515295891E-4;
    y2 = fmaf(y2, z, (float) 8.3321608736E-3);
    y2 = fmaf(y2, z, (float) -1.6666654611E-1);
    y2 = y2 * z;
    y2 = fmaf(y2, x, x);

    /* the lane selection by masks, additions of zero included */
    ysin2 = poly ? y2 : 0.0f;
    ysin1 = poly ? 0.0f : y;
    y2 = y2 - ysin2;
    y = y - ysin1;

    *s = sd_f32(sd_f32_bits(ysin1 + ysin2) ^ sign_sin);
    *c = sd_f32(sd_f32_bits(y + y2) ^ sign_cos);
}


/* normal_fill_16_AVX2 with mean 0, std 1: data[0..15] uniforms in place. */
static void
sd_normal_fill_16(float *data)
{
    float  u1, u2, radius, theta, s, c;
    int    j;

    for (j = 0; j < 8; j++) {
        u1 = 1.0f - data[j];
        u2 = data[j + 8];
        radius = sqrtf(-2.0f * sd_avx_logf(u1));
        theta = (float) 6.283185307179586 * u2;
        sd_avx_sincosf(theta, &s, &c);
        data[j] = radius * c + 0.0f;
        data[j + 8] = radius * s + 0.0f;
    }
}


/* cpu_serial_kernel over at::normal_distribution<double>(0, 1). */
static void
sd_randn_cpu_small(sd_mt19937 *mt, float *out, size_t n)
{
    double  u1, u2, r, theta, cached = 0;
    int     have_cached = 0;
    size_t  i;

    for (i = 0; i < n; i++) {
        if (have_cached) {
            out[i] = (float) (cached * 1.0 + 0.0);
            have_cached = 0;
            continue;
        }
        u1 = sd_mt_uniform53(mt);
        u2 = sd_mt_uniform53(mt);
        r = sqrt(-2.0 * log1p(-u2));
        theta = 2.0 * 3.14159265358979323846 * u1;
        cached = r * sin(theta);
        have_cached = 1;
        out[i] = (float) (r * cos(theta) * 1.0 + 0.0);
    }
}


void
sd_randn_cpu(uint64_t seed, float *out, size_t n)
{
    sd_mt19937   mt;
    float       *tail;
    size_t       i;

    sd_mt_seed(&mt, seed);

    if (n < 16) {
        sd_randn_cpu_small(&mt, out, n);
        return;
    }

    for (i = 0; i < n; i++) {
        out[i] = sd_mt_uniform24(&mt);
    }
    for (i = 0; i + 16 <= n; i += 16) {
        sd_normal_fill_16(out + i);
    }
    if (n % 16 != 0) {
        tail = out + n - 16;
        for (i = 0; i < 16; i++) {
            tail[i] = sd_mt_uniform24(&mt);
        }
        sd_normal_fill_16(tail);
    }
}


/* --------------------------------------------------------------- CUDA */

/* curand_Philox4x32_10: ten rounds, the key bumped between rounds. */
static void
sd_philox4x32_10(const uint32_t ctr[4], uint32_t k0, uint32_t k1,
    uint32_t out[4])
{
    uint32_t  x0 = ctr[0], x1 = ctr[1], x2 = ctr[2], x3 = ctr[3];
    uint64_t  p0, p1;
    int       r;

    for (r = 0; r < 10; r++) {
        p0 = (uint64_t) 0xD2511F53u * x0;
        p1 = (uint64_t) 0xCD9E8D57u * x2;
        x0 = (uint32_t) (p1 >> 32) ^ x1 ^ k0;
        x1 = (uint32_t) p1;
        x2 = (uint32_t) (p0 >> 32) ^ x3 ^ k1;
        x3 = (uint32_t) p0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }

    out[0] = x0;
    out[1] = x1;
    out[2] = x2;
    out[3] = x3;
}


/* libdevice __nv_logf as nvcc emits it (PTX of CUDA 12), for a > 0. */
static float
sd_nv_logf(float a)
{
    float    i = 0.0f, m, e, f, p, r;
    int32_t  ia, ie;

    if (a == 0.0f) {
        return -INFINITY;
    }
    if (a < sd_f32(0x00800000u)) {
        a = a * sd_f32(0x4B000000u);                     /* 2^23 */
        i = -23.0f;
    }
    ia = (int32_t) sd_f32_bits(a);
    ie = (int32_t) (((uint32_t) ia - 0x3f2aaaabu) & 0xff800000u);
    m = sd_f32((uint32_t) (ia - ie));
    e = fmaf((float) ie, sd_f32(0x34000000u), i);       /* 2^-23 */
    f = m - 1.0f;

    p = fmaf(sd_f32(0xBE055027u), f, sd_f32(0x3E1039F6u));
    p = fmaf(p, f, sd_f32(0xBDF8CDCCu));
    p = fmaf(p, f, sd_f32(0x3E0F2955u));
    p = fmaf(p, f, sd_f32(0xBE2AD8B9u));
    p = fmaf(p, f, sd_f32(0x3E4CED0Bu));
    p = fmaf(p, f, sd_f32(0xBE7FFF22u));
    p = fmaf(p, f, sd_f32(0x3EAAAA78u));
    p = fmaf(p, f, sd_f32(0xBF000000u));
    p = p * f;
    p = fmaf(p, f, f);
    r = fmaf(e, sd_f32(0x3F317218u), p);                /* ln 2 */

    if ((uint32_t) ia >= 0x7f800000u) {
        r = fmaf(a, INFINITY, INFINITY);
    }
    return r;
}


/*
 * Model of __sinf / __cosf (MUFU): the argument is first scaled to
 * revolutions, v * (1 / 2pi) rounded toward zero, as the SASS does; the
 * sine of that is then rounded correctly, which the hardware does not.
 */
static float
sd_sfu_sinf(float v)
{
    double  p;
    float   rev;

    p = (double) v * (double) sd_f32(0x3E22F983u);      /* exact product */
    rev = (float) p;
    if (fabs((double) rev) > fabs(p)) {
        rev = nextafterf(rev, 0.0f);
    }
    return (float) sin(6.283185307179586476925 * (double) rev);
}


static float
sd_sfu_cosf(float v)
{
    double  p;
    float   rev;

    p = (double) v * (double) sd_f32(0x3E22F983u);
    rev = (float) p;
    if (fabs((double) rev) > fabs(p)) {
        rev = nextafterf(rev, 0.0f);
    }
    return (float) cos(6.283185307179586476925 * (double) rev);
}


void
sd_randn_cuda(uint64_t seed, float *out, size_t n)
{
    uint64_t  grid, threads, k, rem, lane, t;
    uint32_t  ctr[4], x[4], ux, uy;
    float     u, v, s;
    size_t    i;

    if (n == 0) {
        return;
    }

    grid = (n + SD_CUDA_BLOCK - 1) / SD_CUDA_BLOCK;
    if (grid > SD_CUDA_MAX_GRID) {
        grid = SD_CUDA_MAX_GRID;
    }
    threads = grid * SD_CUDA_BLOCK;

    for (i = 0; i < n; i++) {
        /* element i = t + 4 * threads * k + threads * lane */
        k = i / (4 * threads);
        rem = i % (4 * threads);
        lane = rem / threads;
        t = rem % threads;

        ctr[0] = (uint32_t) k;
        ctr[1] = (uint32_t) (k >> 32);
        ctr[2] = (uint32_t) t;
        ctr[3] = (uint32_t) (t >> 32);
        sd_philox4x32_10(ctr, (uint32_t) seed, (uint32_t) (seed >> 32), x);

        ux = x[(lane / 2) * 2];
        uy = x[(lane / 2) * 2 + 1];

        /* _curand_box_muller: both scalings fused by nvcc */
        u = fmaf((float) ux, sd_f32(0x2F800000u), sd_f32(0x2F000000u));
        v = fmaf((float) uy, sd_f32(0x30C90FDBu), sd_f32(0x30490FDBu));
        s = sqrtf(-2.0f * sd_nv_logf(u));

        out[i] = ((lane % 2 == 0) ? sd_sfu_sinf(v) * s : sd_sfu_cosf(v) * s)
                 + 0.0f;                /* rand * std + mean */
    }
}
