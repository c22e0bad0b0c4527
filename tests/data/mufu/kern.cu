// Kernels loaded twice: as compiled (ref) and with every FMUL.RZ by the
// immediate 1/(2pi) patched to 1.0 (raw), so that in the raw module
// __sinf(x) == MUFU.SIN(x).  Constants that must not be patched are params.
#include <stdint.h>

extern "C" __global__ void
k_eval(const uint32_t *xb, uint32_t *s, uint32_t *c, unsigned n)
{
    unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float x = __uint_as_float(xb[i]);
        s[i] = __float_as_uint(__sinf(x));
        c[i] = __float_as_uint(__cosf(x));
    }
}

// x = i * 2^-Q for i in [start, start + n)  (exact while < 2^24 sig bits)
extern "C" __global__ void
k_grid(unsigned start, unsigned n, float scale, uint32_t *s, uint32_t *c)
{
    unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float x = (float) (start + i) * scale;
        s[i] = __float_as_uint(__sinf(x));
        c[i] = __float_as_uint(__cosf(x));
    }
}

// cnt[((fn * 2 + mode) * 32 + k) * 256 + exponent]: mismatches of f(x) vs
// f(quantized x) with N = N0 + k fraction bits; mode 0 trunc, 1 round.
extern "C" __global__ void
k_quant(uint32_t blo, uint32_t bhi, int N0, int nN,
    unsigned long long *cnt)
{
    uint32_t b = blo + blockIdx.x * blockDim.x + threadIdx.x;
    bool ok = b < bhi;
    float x = __uint_as_float(ok ? b : blo);
    float fs = __sinf(x), fc = __cosf(x);
    unsigned e = (ok ? b : blo) >> 23;
    unsigned lane = threadIdx.x & 31;
    unsigned e0 = __shfl_sync(0xffffffffu, e, 0);
    for (int k = 0; k < nN; k++) {
        float sc = ldexpf(1.0f, N0 + k), isc = ldexpf(1.0f, -(N0 + k));
        float xt = floorf(x * sc) * isc;
        float xr = rintf(x * sc) * isc;
        bool m[4];
        m[0] = ok && __float_as_uint(__sinf(xt)) != __float_as_uint(fs);
        m[1] = ok && __float_as_uint(__sinf(xr)) != __float_as_uint(fs);
        m[2] = ok && __float_as_uint(__cosf(xt)) != __float_as_uint(fc);
        m[3] = ok && __float_as_uint(__cosf(xr)) != __float_as_uint(fc);
        for (int j = 0; j < 4; j++) {
            unsigned bal = __ballot_sync(0xffffffffu, m[j]);
            if (lane == 0 && bal) {
                atomicAdd(&cnt[((size_t) j * 32 + k) * 256 + e0],
                          (unsigned long long) __popc(bal));
            }
        }
    }
}

// symmetry identities on the grid x = i * 2^-24, i in [0, 2^24)
// cnt[j]: mismatches of identity j; mx[j]: max |bit difference|
extern "C" __global__ void
k_sym(float scale, unsigned long long *cnt, unsigned *mx)
{
    unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (1u << 24)) return;
    float x = (float) i * scale;
    float s = __sinf(x), c = __cosf(x);
    float r[8], l[8];
    bool use[8];
    // 0: sin(x) = sin(0.5 - x), x <= 0.5
    use[0] = i <= (1u << 23); l[0] = s; r[0] = __sinf((float) ((1u << 23) - i) * scale);
    // 1: sin(x + 0.5) = -sin(x), x < 0.5
    use[1] = i < (1u << 23); l[1] = __sinf((float) (i + (1u << 23)) * scale); r[1] = -s;
    // 2: cos(x) = sin(x + 0.25) mod 1
    use[2] = true; l[2] = c; r[2] = __sinf((float) ((i + (1u << 22)) & 0xffffffu) * scale);
    // 3: cos(x) = sin(0.25 - x), x <= 0.25
    use[3] = i <= (1u << 22); l[3] = c; r[3] = __sinf((float) ((1u << 22) - i) * scale);
    // 4: cos(x) = cos(1 - x), x > 0
    use[4] = i > 0; l[4] = c; r[4] = __cosf((float) ((1u << 24) - i) * scale);
    // 5: sin(x) = -sin(1 - x), x > 0
    use[5] = i > 0; l[5] = s; r[5] = -__sinf((float) ((1u << 24) - i) * scale);
    // 6: cos(x) = -cos(0.5 - x), x <= 0.5
    use[6] = i <= (1u << 23); l[6] = c; r[6] = -__cosf((float) ((1u << 23) - i) * scale);
    // 7: sin(x) = cos(x - 0.25) mod 1
    use[7] = true; l[7] = s; r[7] = __cosf((float) ((i - (1u << 22)) & 0xffffffu) * scale);
    for (int j = 0; j < 8; j++) {
        if (use[j] && __float_as_uint(l[j]) != __float_as_uint(r[j])) {
            atomicAdd(&cnt[j], 1ull);
            float d = fabsf(l[j] - r[j]);
            atomicMax(&mx[j], __float_as_uint(d));
        }
    }
}

// curand's argument: v = fmaf((float) y, 2pi 2^-32, pi 2^-32)
extern "C" __global__ void
k_cur_ref(unsigned long long y0, unsigned n, float c1, float c2,
    uint32_t *s, uint32_t *c)
{
    unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float v = fmaf((float) (uint32_t) (y0 + i), c1, c2);
        float ss, cc;
        __sincosf(v, &ss, &cc);
        s[i] = __float_as_uint(ss);
        c[i] = __float_as_uint(cc);
    }
}

// raw module: MUFU(RZ(v * inv2pi)) against the reference; cnt[0..1]
extern "C" __global__ void
k_cur_raw(unsigned long long y0, unsigned n, float c1, float c2,
    float inv2pi, const uint32_t *s, const uint32_t *c,
    unsigned long long *cnt)
{
    unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float v = fmaf((float) (uint32_t) (y0 + i), c1, c2);
        float x = __fmul_rz(v, inv2pi);
        if (__float_as_uint(__sinf(x)) != s[i]) atomicAdd(&cnt[0], 1ull);
        if (__float_as_uint(__cosf(x)) != c[i]) atomicAdd(&cnt[1], 1ull);
    }
}
