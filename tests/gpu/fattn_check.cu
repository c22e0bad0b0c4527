/*
 * fattn_check.cu: the own Hopper attention (kernels/fattn.cu) alone, on
 * the GPU machine: error against an F32 reference computed on the GPU
 * (a sample of query rows at the large shapes, every row at the small
 * ones) and time per call at the MMDiT's shapes, after warm-up, median
 * of back-to-back calls. Prints a table.
 *
 * Build (tests/gpu/run.sh fattn): nvcc -gencode arch=compute_90a,...
 *   tests/gpu/fattn_check.cu kernels/fattn.cu
 */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <algorithm>
#include <vector>

#include <cuda_runtime.h>
#include <cuda_bf16.h>

int sd_cuda_fattn_ok(int device);
cudaError_t sd_cuda_fattn_bf16(void *o, const void *q, const void *k,
    const void *v, int b, int lq, int lk, int h, float scale,
    cudaStream_t st);
cudaError_t sd_cuda_fattn_fp8(void *o, const void *q8, const void *k8,
    const void *vt8, const float *vts, float sq, float sk,
    const float *vamax, int b, int lq, int lk, int h, float scale,
    float *osc, cudaStream_t st);
cudaError_t sd_cuda_fattn_quant_rows(void *y, const void *x, float s,
    int64_t n, cudaStream_t st);
cudaError_t sd_cuda_fattn_quant_vt(void *vt8, float *vts, float *vamax,
    const void *v, int b, int l, int h, cudaStream_t st);

#define CK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { \
    printf("cuda error %s at %s:%d\n", cudaGetErrorString(e_), __FILE__, \
           __LINE__); exit(1); } } while (0)


/* one block per sampled (b, h, row): F32 scores in shared memory */
__global__ void
ref_kernel(float *out, const __nv_bfloat16 *q, const __nv_bfloat16 *k,
    const __nv_bfloat16 *v, int lq, int lk, int h, int rstep, float scale)
{
    extern __shared__ float  sc[];
    __shared__ float         red[2];
    int                      nr = (lq + rstep - 1) / rstep;
    int                      ri = blockIdx.x % nr, hi = blockIdx.x / nr % h;
    int                      bi = blockIdx.x / nr / h, row = ri * rstep;
    int64_t                  ld = (int64_t) h * 64;
    const __nv_bfloat16     *qr = q + ((int64_t) bi * lq + row) * ld + hi * 64;
    float                    mx = -INFINITY, sum = 0.f;

    for (int j = threadIdx.x; j < lk; j += blockDim.x) {
        const __nv_bfloat16 *kr = k + ((int64_t) bi * lk + j) * ld + hi * 64;
        float  s = 0.f;

        for (int d = 0; d < 64; d++) {
            s += __bfloat162float(qr[d]) * __bfloat162float(kr[d]);
        }
        sc[j] = s * scale;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int j = 0; j < lk; j++) {
            mx = fmaxf(mx, sc[j]);
        }
        for (int j = 0; j < lk; j++) {
            sum += expf(sc[j] - mx);
        }
        red[0] = mx;
        red[1] = sum;
    }
    __syncthreads();
    if (threadIdx.x < 64) {
        float  acc = 0.f;
        int    d = threadIdx.x;

        for (int j = 0; j < lk; j++) {
            acc += expf(sc[j] - red[0])
                   * __bfloat162float(v[((int64_t) bi * lk + j) * ld
                                        + hi * 64 + d]);
        }
        out[(int64_t) blockIdx.x * 64 + d] = acc / red[1];
    }
}


static uint64_t  rng = 88172645463325252ull;

static float
gauss(void)
{
    double  u1, u2;

    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    u1 = ((rng >> 11) + 1.0) / 9007199254740993.0;
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    u2 = (rng >> 11) / 9007199254740992.0;
    return (float) (sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}


static void
fill(std::vector<__nv_bfloat16> &x, float amp)
{
    for (auto &e : x) {
        e = __float2bfloat16(gauss() * amp);
    }
}


/* median ms of one call of f, back to back after warm-up */
template <typename F>
static double
time_ms(F f)
{
    cudaEvent_t          e0, e1;
    std::vector<float>   t;

    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    for (int i = 0; i < 20; i++) {
        CK(f());
    }
    for (int r = 0; r < 15; r++) {
        float  x;

        CK(cudaEventRecord(e0));
        for (int i = 0; i < 10; i++) {
            CK(f());
        }
        CK(cudaEventRecord(e1));
        CK(cudaEventSynchronize(e1));
        CK(cudaEventElapsedTime(&x, e0, e1));
        t.push_back(x / 10);
    }
    std::sort(t.begin(), t.end());
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    return t[t.size() / 2];
}


/* an E4M3 code's value */
static double
e4m3_value(uint8_t c)
{
    int     e = (c >> 3) & 15, m = c & 7;
    double  v = e ? ldexp(1.0 + m / 8.0, e - 7) : ldexp(m / 8.0, -6);

    if ((c & 0x7f) == 0x7f) {
        return NAN;
    }
    return c & 0x80 ? -v : v;
}


/* per-(b, h) max |x| of (B, L, H * 64) */
static std::vector<float>
amax(const std::vector<__nv_bfloat16> &x, int b, int l, int h)
{
    std::vector<float>  m((size_t) b * h, 0.f);

    for (size_t i = 0; i < x.size(); i++) {
        int    hi = (int) (i / 64 % h), bi = (int) (i / 64 / h / l);
        float  a = fabsf(__bfloat162float(x[i]));

        m[bi * h + hi] = std::max(m[bi * h + hi], a);
    }
    return m;
}


/*
 * One shape: errors, and with timed its times. ramp: K's rows scaled by 1
 * to 3 and V's by 1 to 2^6 along the keys, so a row's largest score and
 * V's tiles' scales grow from tile to tile (the E4M3 kernel's running
 * maxima then move, and its output is rescaled, late in the rows too).
 */
static int
run(int b, int lq, int lk, int h, float amp, int rstep, int timed,
    int ramp = 0)
{
    size_t   nq = (size_t) b * lq * h * 64, nk = (size_t) b * lk * h * 64;
    std::vector<__nv_bfloat16>  hq(nq), hk(nk), hv(nk), ho(nq);
    __nv_bfloat16  *q, *k, *v, *o;
    float          *ref, scale = 0.125f;
    int             nr = (lq + rstep - 1) / rstep, nref = b * h * nr;
    std::vector<float>  hr((size_t) nref * 64);
    double          e2 = 0, r2 = 0, emax = 0, ms = 0, e8 = 0, ms8 = 0;
    double          msq = 0, fl = 4.0 * b * h * (double) lq * lk * 64;
    double          e8o = 0, ms8o = 0;
    unsigned long long  h8sum = 14695981039346656037ull;

    fill(hq, amp);
    fill(hk, amp);
    fill(hv, 1.f);
    for (size_t i = 0; ramp && i < nk; i++) {
        double  f = (double) (i / ((size_t) h * 64) % lk) / lk;

        hk[i] = __float2bfloat16(__bfloat162float(hk[i])
                                 * (float) (1.0 + 2.0 * f));
        hv[i] = __float2bfloat16(__bfloat162float(hv[i])
                                 * (float) exp2(6.0 * f));
    }
    CK(cudaMalloc(&q, nq * 2));
    CK(cudaMalloc(&k, nk * 2));
    CK(cudaMalloc(&v, nk * 2));
    CK(cudaMalloc(&o, nq * 2));
    CK(cudaMalloc(&ref, hr.size() * 4));
    CK(cudaMemcpy(q, hq.data(), nq * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(k, hk.data(), nk * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(v, hv.data(), nk * 2, cudaMemcpyHostToDevice));
    CK(cudaMemset(o, 0xff, nq * 2));

    CK(sd_cuda_fattn_bf16(o, q, k, v, b, lq, lk, h, scale, 0));
    CK(cudaDeviceSynchronize());
    CK(cudaFuncSetAttribute(ref_kernel,
                            cudaFuncAttributeMaxDynamicSharedMemorySize,
                            lk * 4));
    ref_kernel<<<nref, 128, lk * 4>>>(ref, q, k, v, lq, lk, h, rstep, scale);
    CK(cudaGetLastError());
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(ho.data(), o, nq * 2, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(hr.data(), ref, hr.size() * 4, cudaMemcpyDeviceToHost));

    for (int i = 0; i < nref; i++) {
        int  ri = i % nr, hi = i / nr % h, bi = i / nr / h, row = ri * rstep;

        for (int d = 0; d < 64; d++) {
            double  x = __bfloat162float(ho[((size_t) bi * lq + row) * h * 64
                                            + hi * 64 + d]);
            double  y = hr[(size_t) i * 64 + d];

            if (!(fabs(x - y) <= emax)) {
                emax = isnan(x) ? INFINITY : fabs(x - y);
            }
            e2 += (x - y) * (x - y);
            r2 += y * y;
        }
    }

    if (timed) {
        ms = time_ms([&] {
            return sd_cuda_fattn_bf16(o, q, k, v, b, lq, lk, h, scale, 0);
        });
    }

    /* E4M3: Q and K with one scale each (the step's are static bounds
       from the RMSNorm weights), V with one per tile of 128 keys of each
       (b, h) from its max |x| (the QKV split's V^T, vt8.h) */
    {
        std::vector<float>  aq = amax(hq, b, lq, h), ak = amax(hk, b, lk, h);
        int                 lp = (lk + 15) & ~15, nt = (lk + 127) / 128;
        float              *dav, *dvts, sq, sk;
        void               *q8, *k8, *vt8;

        /* Q's codes up to 28 (Gaussian rows: scores far under F16's
           65504), K's to 448, then sq raised to make 8 scale log2(e) sq
           sk a power of two, as sd_fp8_attn_scales does */
        sq = std::max(*std::max_element(aq.begin(), aq.end()), 1e-30f)
             / 28.f;
        sk = std::max(*std::max_element(ak.begin(), ak.end()), 1e-30f)
             / 448.f;
        {
            double  s8 = 8.0 * scale * 1.4426950408889634 * sq * sk;

            sq = (float) (sq * exp2(std::max(ceil(log2(s8)), -14.0)) / s8);
        }
        CK(cudaMalloc(&dav, b * h * 4));
        CK(cudaMemset(dav, 0, b * h * 4));
        CK(cudaMalloc(&dvts, (size_t) b * h * nt * 4));
        CK(cudaMalloc(&q8, nq)); CK(cudaMalloc(&k8, nk));
        CK(cudaMalloc(&vt8, (size_t) b * h * 64 * lp));
        CK(sd_cuda_fattn_quant_rows(q8, q, sq, (int64_t) nq, 0));
        CK(sd_cuda_fattn_quant_rows(k8, k, sk, (int64_t) nk, 0));
        CK(sd_cuda_fattn_quant_vt(vt8, dvts, dav, v, b, lk, h, 0));
        CK(cudaMemset(o, 0xff, nq * 2));
        CK(sd_cuda_fattn_fp8(o, q8, k8, vt8, dvts, sq, sk, dav, b, lq, lk,
                             h, scale, NULL, 0));
        CK(cudaDeviceSynchronize());
        CK(cudaMemcpy(ho.data(), o, nq * 2, cudaMemcpyDeviceToHost));
        /* FNV-1a of the whole output: builds that should agree bit for
           bit (a loop reordered, not the arithmetic) print the same */
        {
            const uint8_t  *p = (const uint8_t *) ho.data();

            for (size_t i = 0; i < nq * 2; i++) {
                h8sum = (h8sum ^ p[i]) * 1099511628211ull;
            }
        }
        e8 = 0;
        for (int i = 0; i < nref; i++) {
            int  ri = i % nr, hi = i / nr % h, bi = i / nr / h;
            int  row = ri * rstep;

            for (int d = 0; d < 64; d++) {
                double  x = __bfloat162float(
                    ho[((size_t) bi * lq + row) * h * 64 + hi * 64 + d]);
                double  y = hr[(size_t) i * 64 + d];

                e8 += isnan(x) ? INFINITY : (x - y) * (x - y);
            }
        }
        /* the E4M3 output (the out projection's input): codes and one
           scale a row, dequantized against the same reference */
        {
            std::vector<uint8_t>  h8(nq);
            std::vector<float>    hs((size_t) b * lq);
            float                *osc;

            CK(cudaMalloc(&osc, hs.size() * 4));
            CK(cudaMemset(o, 0xff, nq));
            CK(cudaMemset(osc, 0xff, hs.size() * 4));
            CK(sd_cuda_fattn_fp8(o, q8, k8, vt8, dvts, sq, sk, dav, b, lq,
                                 lk, h, scale, osc, 0));
            CK(cudaDeviceSynchronize());
            CK(cudaMemcpy(h8.data(), o, nq, cudaMemcpyDeviceToHost));
            CK(cudaMemcpy(hs.data(), osc, hs.size() * 4,
                          cudaMemcpyDeviceToHost));
            e8o = 0;
            for (int i = 0; i < nref; i++) {
                int  ri = i % nr, hi = i / nr % h, bi = i / nr / h;
                int  row = ri * rstep;

                for (int d = 0; d < 64; d++) {
                    size_t  at = ((size_t) bi * lq + row) * h * 64
                                 + hi * 64 + d;
                    double  x = e4m3_value(h8[at])
                                * hs[(size_t) bi * lq + row];
                    double  y = hr[(size_t) i * 64 + d];

                    e8o += isnan(x) ? INFINITY : (x - y) * (x - y);
                }
            }
            if (timed) {
                ms8o = time_ms([&] {
                    return sd_cuda_fattn_fp8(o, q8, k8, vt8, dvts, sq, sk,
                                             dav, b, lq, lk, h, scale, osc,
                                             0);
                });
            }
            cudaFree(osc);
        }
        if (timed) {
            ms8 = time_ms([&] {
                return sd_cuda_fattn_fp8(o, q8, k8, vt8, dvts, sq, sk, dav, b,
                                         lq, lk, h, scale, NULL, 0);
            });
            msq = time_ms([&] {
                return sd_cuda_fattn_quant_vt(vt8, dvts, dav, v, b, lk, h,
                                              0);
            });
        }
        cudaFree(dav); cudaFree(dvts);
        cudaFree(q8); cudaFree(k8); cudaFree(vt8);
    }

    printf("| %d | %d | %d | %d | %.1f%s | %.3e | %.3e | %.4f | %.0f | %.3e "
           "| %.4f | %.0f | %.3e | %.4f | %.4f | %016llx |\n", b, lq, lk, h,
           amp, ramp ? " ramp" : "", sqrt(e2 / r2), emax, ms,
           ms > 0 ? fl / (ms * 1e-3) / 1e12 : 0.0, sqrt(e8 / r2), ms8,
           ms8 > 0 ? fl / (ms8 * 1e-3) / 1e12 : 0.0, sqrt(e8o / r2), ms8o,
           msq, (unsigned long long) h8sum);
    cudaFree(q); cudaFree(k); cudaFree(v); cudaFree(o); cudaFree(ref);
    /* E4M3's Q and K errors grow with the logits: bounded at amplitude 1
       (the MMDiT's RMS-normalized heads are near it), reported above; the
       ramp's keys up to 3 times larger: 7.5e-2 to 8.9e-2 (H200, 2026-12-04,
       with and without FA_LAZY) */
    return sqrt(e2 / r2) < 1e-2
           && (amp > 1.f ? sqrt(e8 / r2) < 0.25
                         : sqrt(e8 / r2) < (ramp ? 0.12 : 8e-2))
           && sqrt(e8o / r2) < sqrt(e8 / r2) + 4e-2
           ? 0 : 1;
}


/* the table's header (rule: its separator line too) */
static void
header(int rule)
{
    printf("| B | Lq | Lk | H | amp | BF16 rel L2 | max abs | ms | TFLOP/s "
           "| E4M3 rel L2 | ms | TFLOP/s | E4M3 out: rel L2 | ms "
           "| V^T quantize ms | E4M3 BF16 out FNV-1a |\n");
    if (rule) {
        printf("| --- | --- | --- | --- | --- | --- | --- | --- | --- "
               "| --- | --- | --- | --- | --- | --- | --- |\n");
    }
}


int
main(int argc, char **argv)
{
    int  bad = 0;

    if (argc > 1 && strcmp(argv[1], "sweep") == 0) {
        /* a block's fixed cost (launch, Q, the first tiles' loads, the
           output) against its cost a key tile: B 2, 33 heads, L a
           multiple of 384 (whole query blocks of 192 rows and key tiles
           of 128), so the 66 L / 192 blocks are whole waves of 132 */
        if (!sd_cuda_fattn_ok(0)) {
            printf("fattn: not available on this device\n");
            return 1;
        }
        header(0);
        for (int l = 1920; l <= 7680; l += 1920) {
            bad += run(2, l, l, 33, 1.f, 97, 1);
        }
        printf("fattn sweep: %s\n", bad ? "FAILED" : "ok");
        return bad;
    }
    if (argc > 1) {             /* prof H [e4m3]: three calls, for ncu */
        int     hh = atoi(argv[1]), e4 = argc > 2;
        size_t  n = (size_t) 2 * 4429 * hh * 64 * 2;
        void   *q, *k, *v, *o;
        float  *vamax, *vts;
        std::vector<float>  ones((size_t) 2 * hh * 35, 1.f);

        sd_cuda_fattn_ok(0);
        CK(cudaMalloc(&q, n)); CK(cudaMalloc(&k, n));
        CK(cudaMalloc(&v, n)); CK(cudaMalloc(&o, n));
        CK(cudaMalloc(&vamax, 2 * hh * sizeof(float)));
        CK(cudaMemset(q, 0, n)); CK(cudaMemset(k, 0, n));
        CK(cudaMemset(v, 0, n));
        CK(cudaMemset(vamax, 0, 2 * hh * sizeof(float)));
        CK(cudaMalloc(&vts, ones.size() * sizeof(float)));
        CK(cudaMemcpy(vts, ones.data(), ones.size() * sizeof(float),
                      cudaMemcpyHostToDevice));
        for (int i = 0; i < 3; i++) {
            if (e4) {       /* zeros: q8, k8 and V^T (Lp >= 4429) all 0 */
                /* sq ln 2: 8 scale log2(e) sq sk = 1 */
                CK(sd_cuda_fattn_fp8(o, q, k, v, vts, 0.6931472f, 1.f,
                                     vamax, 2, 4429, 4429, hh, 0.125f, NULL,
                                     0));
            } else {
                CK(sd_cuda_fattn_bf16(o, q, k, v, 2, 4429, 4429, hh, 0.125f,
                                      0));
            }
        }
        CK(cudaDeviceSynchronize());
        return 0;
    }

    if (!sd_cuda_fattn_ok(0)) {
        printf("fattn: not available on this device\n");
        return 1;
    }
    header(1);
    bad += run(1, 128, 128, 1, 1.f, 1, 0);
    bad += run(1, 77, 77, 2, 1.f, 1, 0);
    bad += run(2, 333, 333, 3, 2.f, 1, 0);
    bad += run(1, 300, 1000, 2, 3.f, 1, 0);
    bad += run(2, 1000, 300, 2, 1.f, 1, 0);
    bad += run(2, 4429, 4429, 38, 1.f, 37, 1);
    bad += run(2, 4429, 4429, 38, 3.f, 37, 0);
    bad += run(2, 4429, 4429, 24, 1.f, 37, 1);
    bad += run(2, 4096, 4096, 24, 1.f, 37, 1);
    bad += run(1, 300, 1000, 2, 1.f, 1, 0, 1);
    bad += run(2, 4429, 4429, 24, 1.f, 37, 0, 1);
    printf("fattn: %s\n", bad ? "FAILED" : "ok");
    return bad;
}
