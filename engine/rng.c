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
 * on every float in (0, 1]) and sqrtf are bit-exact, and so is the sine:
 * curand's __sincosf compiles on sm_90 to FMUL.RZ by 1/(2pi) (0x3E22F983)
 * and MUFU.SIN / MUFU.COS of that value in turns, and sd_sfu_turn() below
 * reproduces the H100's MUFU.SIN and MUFU.COS for every float in [0, 1).
 */

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "rng.h"
#include "sd_err.h"

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
static uint32_t sd_sfu_square_of(uint32_t t);
static float sd_sfu_quadrant(uint32_t r);
static float sd_sfu_turn(uint32_t k);
static uint32_t sd_sfu_fixed(float v);


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


/* libdevice __nv_logf as nvcc emits it (PTX of CUDA 12), for a > 0.
   Inlined into each build of sd_randn_cuda_range (below). */
static inline __attribute__((always_inline)) float
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
 * The H100's MUFU.SIN / MUFU.COS (sm_90), bit for bit. Facts, measured on
 * an H100 by a probe that patched the FMUL.RZ immediate of __sinf to 1.0
 * so that MUFU saw chosen inputs (every float in [2^-126, 1), the grid
 * i * 2^-25 on [0, 1/2) and i * 2^-24 on [0, 1)):
 *
 *  - the argument x (in turns) is truncated to fixed point k = floor(x *
 *    2^25): f(x) == f(k * 2^-25) for every float in [2^-126, 1);
 *  - quadrant q = k >> 23 and r = k mod 2^23: sin is A(r), A(~r), -A(r),
 *    -A(~r) in quadrants 0..3 (~r: 23-bit ones' complement), and cos(x) is
 *    sin(x + 1/4); the negation gives -0 for a zero;
 *  - A(r) ~ sin(2 pi r 2^-25) is a piecewise quadratic: segment j = r >> 17
 *    (64 segments), t = r mod 2^17, and in units of 2^-37
 *        P = C0[j] * 2^12 + C1[j] * t - C2[j] * sq(t),
 *    where sq(t) is a truncated squarer: the partial products t_a t_b
 *    2^(a + b) of t * t with a + b >= 18 summed, then shifted right by 19;
 *  - the float result is P * 2^-37 truncated (toward zero) to 24
 *    significant bits.
 *
 * The table holds C0, C1, C2 fitted exactly to those measurements by
 * tests/data/mufu/fit.c: for each segment, integers that satisfy all 2^17
 * interval constraints the truncated outputs impose (the lowest feasible
 * C0 was a multiple of 2^12 in every segment; tests/data/mufu/probe.cu
 * made the measurements). The model reproduces every measured value: all
 * 2^23 r and, with the rules above, sin and cos of every float in [0, 1).
 * On the H100 it also equalled __sincosf for all 2^32 curand arguments,
 * and sd_randn_cuda equalled torch.randn for sizes up to 1081361.
 * Assumptions: other sm_90 parts (H200) have the H100's MUFU, and the
 * argument stays in [0, 1) turns (curand's v lies in (0, 2pi]).
 */

static const struct {
    uint32_t  c0;
    uint16_t  c1;
    uint16_t  c2;
} sd_sfu_coef[64] = {
    { 0x0000000u, 25737,   14 }, { 0x00c90a7u, 25730,   48 },
    { 0x0191f64u, 25706,   76 }, { 0x025aa3eu, 25668,  110 },
    { 0x0322f4au, 25613,  137 }, { 0x03eac9au, 25544,  171 },
    { 0x04b203du, 25459,  201 }, { 0x057884eu, 25358,  229 },
    { 0x063e2ddu, 25243,  262 }, { 0x0702e08u, 25112,  292 },
    { 0x07c67e4u, 24966,  322 }, { 0x0888e92u, 24805,  352 },
    { 0x094a02fu, 24629,  381 }, { 0x0a09ae5u, 24438,  410 },
    { 0x0ac7cd1u, 24233,  441 }, { 0x0b84426u, 24013,  470 },
    { 0x0c3ef15u, 23778,  497 }, { 0x0cf7bcbu, 23529,  525 },
    { 0x0dae87fu, 23266,  553 }, { 0x0e63374u, 22989,  581 },
    { 0x0f15aeau, 22698,  608 }, { 0x0fc5d24u, 22394,  637 },
    { 0x1073876u, 22076,  664 }, { 0x111eb36u, 21744,  688 },
    { 0x11c73b0u, 21400,  715 }, { 0x126d054u, 21042,  738 },
    { 0x130ff7eu, 20672,  763 }, { 0x13affa2u, 20290,  790 },
    { 0x144cf2fu, 19895,  812 }, { 0x14e6ca9u, 19489,  839 },
    { 0x157d690u, 19070,  859 }, { 0x1610b72u, 18640,  881 },
    { 0x16a09e5u, 18199,  904 }, { 0x172d082u, 17747,  926 },
    { 0x17b5df2u, 17284,  946 }, { 0x183b0dfu, 16811,  967 },
    { 0x18bc804u, 16328,  988 }, { 0x193a226u, 15834, 1004 },
    { 0x19b3e02u, 15332, 1025 }, { 0x1a29a79u, 14820, 1043 },
    { 0x1a9b660u, 14299, 1059 }, { 0x1b090a7u, 13769, 1074 },
    { 0x1b72832u, 13232, 1093 }, { 0x1bd7c09u, 12686, 1107 },
    { 0x1c38b2cu, 12133, 1123 }, { 0x1c954b0u, 11572, 1136 },
    { 0x1ced7aeu, 11004, 1148 }, { 0x1d4134cu, 10430, 1162 },
    { 0x1d906bdu,  9849, 1172 }, { 0x1ddb13au,  9263, 1185 },
    { 0x1e2120eu,  8671, 1196 }, { 0x1e6288fu,  8073, 1203 },
    { 0x1e9f416u,  7471, 1213 }, { 0x1ed7411u,  6864, 1220 },
    { 0x1f0a7edu,  6254, 1230 }, { 0x1f38f3cu,  5639, 1236 },
    { 0x1f6297eu,  5021, 1242 }, { 0x1f87650u,  4400, 1247 },
    { 0x1fa7559u,  3776, 1250 }, { 0x1fc2647u,  3151, 1258 },
    { 0x1fd88d9u,  2523, 1260 }, { 0x1fe9cddu,  1893, 1260 },
    { 0x1ff621eu,  1263, 1263 }, { 0x1ffd886u,   632, 1265 },
};


/* sq(t): partial products of weight 2^18 and above of t * t, then >> 19. */
static uint32_t
sd_sfu_square_of(uint32_t t)
{
    uint64_t  sum = 0;
    int       a;

    for (a = 0; a < 17; a++) {
        /* bit a of t times the bits b of t with a + b >= 18 */
        sum += ((uint64_t) (t & ~((1u << (18 - a)) - 1)) << a)
               & (0 - (uint64_t) (t >> a & 1));
    }

    return (uint32_t) (sum >> 19);
}


/* sq(t) for every t < 2^17, made once (512 KB): the loop above was a
   quarter of an element's time */
static uint32_t         sd_sfu_sq[1u << 17];
static pthread_once_t   sd_sfu_sq_once = PTHREAD_ONCE_INIT;

static void
sd_sfu_sq_init(void)
{
    uint32_t  t;

    for (t = 0; t < (1u << 17); t++) {
        sd_sfu_sq[t] = sd_sfu_square_of(t);
    }
}


/* A(r) for r in [0, 2^23): the first quadrant's sine. */
static float
sd_sfu_quadrant(uint32_t r)
{
    uint32_t  j, t;
    int64_t   p;
    double    d;
    float     f;

    j = r >> 17;
    t = r & 0x1ffff;

    p = ((int64_t) sd_sfu_coef[j].c0 << 12)
        + (int64_t) sd_sfu_coef[j].c1 * t
        - (int64_t) sd_sfu_coef[j].c2 * sd_sfu_sq[t];

    /* to float toward zero (p is below 2^38, so d is exact; p >= 0) */
    d = (double) p;
    f = (float) d;
    if ((double) f > d) {
        f = sd_f32(sd_f32_bits(f) - 1);     /* toward zero: f > 0 here */
    }

    return f * sd_f32(0x2D000000u);                     /* 2^-37, exact */
}


/* MUFU.SIN of the fixed-point turn k * 2^-25 (k taken mod 2^25). */
static float
sd_sfu_turn(uint32_t k)
{
    uint32_t  q, r;
    float     a;

    q = (k >> 23) & 3;
    r = k & 0x7fffff;
    if (q & 1) {
        r ^= 0x7fffff;
    }
    a = sd_sfu_quadrant(r);

    return (q & 2) ? -a : a;
}


/*
 * __sincosf's argument as MUFU sees it: v * (1 / 2pi) rounded toward zero
 * (FMUL.RZ), then truncated to 25 fraction bits; v >= 0 here.
 */
static uint32_t
sd_sfu_fixed(float v)
{
    double  p;
    float   rev;

    p = (double) v * (double) sd_f32(0x3E22F983u);      /* exact product */
    rev = (float) p;
    if ((double) rev > p) {
        rev = sd_f32(sd_f32_bits(rev) - 1); /* toward zero: rev > 0 */
    }

    return (uint32_t) ((double) rev * 33554432.0);      /* floor(rev 2^25) */
}


/*
 * elements [i0, i1) of sd_randn_cuda's n, T = threads. Built twice on
 * x86-64, picked when the program loads: with the FMA instructions (each
 * fmaf() one instruction, not a call into libm) and without; an fmaf()
 * rounds once either way and nothing else is fused (fp-contract is off),
 * so both give the same bits.
 */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("fma", "default")))
#endif
static void
sd_randn_cuda_range(uint64_t seed, float *out, size_t i0, size_t i1,
    uint64_t threads)
{
    uint64_t  k, rem, lane, t;
    uint32_t  ctr[4], x[4], ux, uy, turn;
    float     u, v, s;
    size_t    i;

    for (i = i0; i < i1; i++) {
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

        /* __sincosf: MUFU.SIN and MUFU.COS of the same fixed-point turn */
        turn = sd_sfu_fixed(v);
        if (lane % 2 != 0) {
            turn += 1u << 23;           /* cos(x) = sin(x + 1/4) */
        }
        out[i] = sd_sfu_turn(turn) * s + 0.0f;  /* rand * std + mean */
    }
}


/*
 * Every element is computed on its own (about 80 ns on one core: a
 * 1024x1024 latent took 15-20 ms before the first step), so chunks of them
 * go to up to SD_RANDN_THREADS threads; the values do not depend on it.
 */
#define SD_RANDN_CHUNK    16384
#define SD_RANDN_THREADS  16

typedef struct {
    uint64_t    seed, threads;
    float      *out;
} sd_randn_job;


static void
sd_randn_chunk(void *arg, int64_t i0, int64_t i1)
{
    sd_randn_job  *job = arg;

    sd_randn_cuda_range(job->seed, job->out, (size_t) i0, (size_t) i1,
                        job->threads);
}


uint64_t
sd_randn_cuda_threads(size_t n)
{
    uint64_t  grid = (n + SD_CUDA_BLOCK - 1) / SD_CUDA_BLOCK;

    return (grid < SD_CUDA_MAX_GRID ? grid : SD_CUDA_MAX_GRID)
           * SD_CUDA_BLOCK;
}


void
sd_randn_cuda(uint64_t seed, float *out, size_t n)
{
    sd_randn_job  job;

    if (n == 0) {
        return;
    }
    (void) pthread_once(&sd_sfu_sq_once, sd_sfu_sq_init);

    job.seed = seed;
    job.threads = sd_randn_cuda_threads(n);
    job.out = out;
    sd_run_chunks(sd_randn_chunk, &job, (int64_t) n, SD_RANDN_CHUNK,
                  SD_RANDN_THREADS);
}
