/*
 * gemm8_check.cu: the own FP8 product (kernels/gemm8.cu) against the
 * engine's cuBLASLt call (outer-vector scales, fast accumulation, BIAS or
 * GELU_BIAS epilogue, BF16 out, the heuristic's first algorithm: what
 * gemm.cu runs) at the MMDiT's shapes, on the GPU machine: each output's
 * error against a reference computed on the CPU (E4M3 products summed in
 * F64) at 4096 sampled entries, the largest difference between the two over
 * every entry, and the time per call (median of 7 rounds of 10
 * back-to-back calls after warm-up, the two taking turns). Prints a table.
 * With G8_SUSTAIN_MS=t, the two run in turn for about t ms of GPU time
 * before each shape's rounds, so the card is timed at the clock a
 * sustained load holds it at (the step's: the power limit), not in the
 * short bursts between host work (the top clock).
 *
 * Build (tests/gpu/pack.sh): nvcc -O3 -std=c++17 -gencode
 *   arch=compute_90a,code=sm_90a -Iengine -DG8_STANDALONE
 *   tests/gpu/gemm8_check.cu kernels/gemm8.cu -lcublasLt
 * Usage: gemm8_check [name ...]   (default: every shape)
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
#include <cuda_fp8.h>
#include <cublasLt.h>

#include "../../kernels/cuda.h"
#include "lt_common.cuh"

#define NSAMP  4096
#define ROUNDS 7
#define CALLS  10

/* a tile code's (sd_cuda_g8_gemm) schedule and order, for the table */
static const char *
tile_tag(int tile)
{
    int  pp = tile % 1000000 == 128128 || tile % 1000000 == 192128;

    return tile >= 1000000 ? (pp ? " pp, N fast" : " N fast")
                           : (pp ? " pp" : "");
}


static cublasLtHandle_t  lt;
static void             *ws;
static const size_t      WS = 32u << 20;
static const float      *gsa, *gsb;
static const __nv_bfloat16  *gbias;


static __device__ __host__ uint32_t
mix(uint32_t h)
{
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    h *= 3266489917u;
    h ^= h >> 16;
    return h;
}


/* E4M3 codes of values in [-1, 1) */
__global__ void
fill_e4m3(uint8_t *p, int64_t n, uint32_t seed)
{
    int64_t  i = (int64_t) blockIdx.x * blockDim.x + threadIdx.x;

    if (i < n) {
        uint32_t       h = mix((uint32_t) i * 2654435761u ^ seed);
        __nv_fp8_e4m3  v((float) ((int) (h & 0xffff) - 32768) / 32768.f);

        p[i] = v.__x;
    }
}


/* rows of k normal values times sd, quantized per row as the engine's
   activations and weights are: codes of v 448 / amax, scale amax / 448;
   one block of 256 a row */
__global__ void
fill_gauss_rows(uint8_t *p, float *scale, int k, float sd, uint32_t seed)
{
    __shared__ float  part[8];
    int64_t           r = blockIdx.x;
    float             am = 0.f, inv;
    int               j;

    for (j = threadIdx.x; j < k; j += 256) {
        uint32_t  h1 = mix((uint32_t) (r * k + j) * 2u ^ seed);
        uint32_t  h2 = mix((uint32_t) (r * k + j) * 2u + 1u ^ seed);
        float     u1 = ((h1 >> 8) + 1) / 16777217.f, u2 = (h2 >> 8)
                                                       / 16777216.f;

        am = fmaxf(am, fabsf(sqrtf(-2.f * logf(u1))
                             * cosf(6.2831853f * u2)));
    }
    for (j = 16; j; j >>= 1) {
        am = fmaxf(am, __shfl_xor_sync(0xffffffffu, am, j));
    }
    if (threadIdx.x % 32 == 0) {
        part[threadIdx.x / 32] = am;
    }
    __syncthreads();
    am = 0.f;
    for (j = 0; j < 8; j++) {
        am = fmaxf(am, part[j]);
    }
    inv = 448.f / am;
    for (j = threadIdx.x; j < k; j += 256) {
        uint32_t  h1 = mix((uint32_t) (r * k + j) * 2u ^ seed);
        uint32_t  h2 = mix((uint32_t) (r * k + j) * 2u + 1u ^ seed);
        float     u1 = ((h1 >> 8) + 1) / 16777217.f, u2 = (h2 >> 8)
                                                       / 16777216.f;
        __nv_fp8_e4m3  v(sqrtf(-2.f * logf(u1)) * cosf(6.2831853f * u2)
                         * inv);

        p[r * k + j] = v.__x;
    }
    if (threadIdx.x == 0) {
        scale[r] = am / 448.f * sd;
    }
}


__global__ void
fill_f32(float *p, int64_t n, float lo, float hi, uint32_t seed)
{
    int64_t  i = (int64_t) blockIdx.x * blockDim.x + threadIdx.x;

    if (i < n) {
        uint32_t  h = mix((uint32_t) i ^ seed);

        p[i] = lo + (hi - lo) * (float) (h & 0xffff) / 65536.f;
    }
}


__global__ void
fill_bf16(__nv_bfloat16 *p, int64_t n, float amp, uint32_t seed)
{
    int64_t  i = (int64_t) blockIdx.x * blockDim.x + threadIdx.x;

    if (i < n) {
        uint32_t  h = mix((uint32_t) i ^ seed);

        p[i] = __float2bfloat16(amp * ((float) (h & 0xffff) - 32768.f)
                                / 32768.f);
    }
}


typedef struct {
    const char  *name;
    int          m, n, k, gelu;
} shape;

static const shape  shapes[] = {
    { "qkv",        8192, 7296, 2432, 0 },
    { "ff-up",      8192, 9728, 2432, 1 },
    { "ff-down",    8192, 2432, 9728, 0 },
    { "out",        8192, 2432, 2432, 0 },
    { "txt-qkv",     666, 7296, 2432, 0 },
    { "txt-down",    666, 2432, 9728, 0 },
    { "txt-up",      666, 9728, 2432, 1 },
    { "m-qkv",      8192, 4608, 1536, 0 },
    { "m-ff-up",    8192, 6144, 1536, 1 },
    { "m-ff-down",  8192, 1536, 6144, 0 },
};


typedef struct {
    cublasLtMatmulDesc_t    desc;
    cublasLtMatrixLayout_t  la, lb, ld;
    cublasLtMatmulAlgo_t    algo;
} plan;


/* row-major Y (m, n) = X (m, k) W (n, k)^T as column-major W^T X */
static int
plan_make(plan *p, const shape *s, const float *wsc, const float *xsc,
    const void *bias)
{
    cublasLtEpilogue_t epi = s->gelu ? CUBLASLT_EPILOGUE_GELU_BIAS
                                     : CUBLASLT_EPILOGUE_BIAS;
    cublasLtMatmulPreference_t       pref;
    cublasLtMatmulHeuristicResult_t  res;
    uint64_t           wsz = WS;
    int                nres = 0;

    lt_fp8_desc(&p->desc, epi);
    LT(cublasLtMatmulDescSetAttribute(p->desc,
           CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &wsc, sizeof(wsc)));
    LT(cublasLtMatmulDescSetAttribute(p->desc,
           CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &xsc, sizeof(xsc)));
    LT(cublasLtMatmulDescSetAttribute(p->desc,
           CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
    LT(cublasLtMatrixLayoutCreate(&p->la, CUDA_R_8F_E4M3, s->k, s->n, s->k));
    LT(cublasLtMatrixLayoutCreate(&p->lb, CUDA_R_8F_E4M3, s->k, s->m, s->k));
    LT(cublasLtMatrixLayoutCreate(&p->ld, CUDA_R_16BF, s->n, s->m, s->n));
    LT(cublasLtMatmulPreferenceCreate(&pref));
    LT(cublasLtMatmulPreferenceSetAttribute(pref,
           CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsz, sizeof(wsz)));
    if (cublasLtMatmulAlgoGetHeuristic(lt, p->desc, p->la, p->lb, p->ld,
                                       p->ld, pref, 1, &res, &nres)
        != CUBLAS_STATUS_SUCCESS)
    {
        nres = 0;
    }
    cublasLtMatmulPreferenceDestroy(pref);
    if (nres > 0) {
        p->algo = res.algo;
    }
    return nres > 0;
}


static void
plan_run(plan *p, const void *w, const void *x, void *y)
{
    float  one = 1.f, zero = 0.f;

    LT(cublasLtMatmul(lt, p->desc, &one, w, p->la, x, p->lb, &zero, y,
                      p->ld, y, p->ld, &p->algo, ws, WS, 0));
}


static void
plan_free(plan *p)
{
    cublasLtMatrixLayoutDestroy(p->la);
    cublasLtMatrixLayoutDestroy(p->lb);
    cublasLtMatrixLayoutDestroy(p->ld);
    cublasLtMatmulDescDestroy(p->desc);
}


static float
bf2f(uint16_t h)
{
    uint32_t  u = (uint32_t) h << 16;
    float     f;

    memcpy(&f, &u, 4);
    return f;
}


/* an E4M3 code's value (no NaN codes are written) */
static double
e4m3d(uint8_t c)
{
    int     e = (c >> 3) & 15, f = c & 7;
    double  v = e ? ldexp(1.0 + f / 8.0, e - 7) : ldexp(f / 8.0, -6);

    return c & 0x80 ? -v : v;
}


/* the exact outputs at the sampled (row, col), on the CPU: F64 sums of
   the E4M3 products */
static void
reference(std::vector<double> &out, const std::vector<int> &rc,
    const uint8_t *a, const uint8_t *b, const shape *s)
{
    std::vector<uint8_t>  ha((size_t) s->m * s->k), hb((size_t) s->n * s->k);
    std::vector<float>    hsa(s->m), hsb(s->n);
    std::vector<uint16_t> hbias(s->n);
    double                lut[256];

    for (int i = 0; i < 256; i++) {
        lut[i] = e4m3d((uint8_t) i);
    }
    CK(cudaMemcpy(ha.data(), a, ha.size(), cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(hb.data(), b, hb.size(), cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(hsa.data(), gsa, hsa.size() * 4, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(hsb.data(), gsb, hsb.size() * 4, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(hbias.data(), gbias, hbias.size() * 2,
                  cudaMemcpyDeviceToHost));
    for (int i = 0; i < NSAMP; i++) {
        int             r = rc[2 * i], c = rc[2 * i + 1];
        const uint8_t  *ar = &ha[(size_t) r * s->k];
        const uint8_t  *br = &hb[(size_t) c * s->k];
        double          v = 0.0;

        for (int j = 0; j < s->k; j++) {
            v += lut[ar[j]] * lut[br[j]];
        }
        v = v * hsa[r] * hsb[c] + bf2f(hbias[c]);
        if (s->gelu) {
            v = 0.5 * v * (1.0 + tanh(0.7978845608028654
                                      * (v + 0.044715 * v * v * v)));
        }
        out[i] = v;
    }
}


/* largest |x - ref| over the samples, relative to the samples' rms */
static double
sample_err(const uint16_t *y, int n, const int *rc, const double *ref)
{
    double  e = 0.0, ss = 0.0;

    for (int i = 0; i < NSAMP; i++) {
        double  x = bf2f(y[(int64_t) rc[2 * i] * n + rc[2 * i + 1]]);

        e = std::max(e, fabs(x - ref[i]));
        ss += ref[i] * ref[i];
    }
    return e / sqrt(ss / NSAMP + 1e-30);
}


/* one call of f's time: CALLS back-to-back calls after warm untimed */
template <typename F>
static float
round_ms(F f, int warm)
{
    static cudaEvent_t  e0, e1;
    float               ms;
    int                 i;

    if (e0 == NULL) {
        CK(cudaEventCreate(&e0));
        CK(cudaEventCreate(&e1));
    }
    for (i = 0; i < warm; i++) {
        f();
    }
    CK(cudaEventRecord(e0, 0));
    for (i = 0; i < CALLS; i++) {
        f();
    }
    CK(cudaEventRecord(e1, 0));
    CK(cudaEventSynchronize(e1));
    CK(cudaEventElapsedTime(&ms, e0, e1));
    return ms / CALLS;
}


/* f and g in turn for about G8_SUSTAIN_MS ms of GPU time (none unset) */
template <typename F, typename G>
static void
sustain(F f, G g)
{
    static const char  *ev = getenv("G8_SUSTAIN_MS");
    float               want = ev ? (float) atof(ev) : 0.f, done = 0.f;

    while (done < want) {
        done += round_ms(f, 0) * CALLS;
        done += round_ms(g, 0) * CALLS;
    }
}


static float
median(std::vector<float> v)
{
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}


/* an E4M3 code's order on the integers (codes of one sign order as their
   magnitudes) */
static int
code_ord(int c)
{
    return (c & 0x80) ? -(c & 0x7f) : c;
}


/*
 * The product written as E4M3 rows (sd_cuda_g8_gemm8, the feed-forward's
 * hidden layer for the next product): the row scales against the bound
 * computed here in F64 (sd_cuda_g8_q), every code against cuBLASLt's BF16
 * output y divided by the same scale and rounded here, the sampled
 * error against the F64 reference (and what rounding the reference itself
 * to E4M3 with these scales errs), how much of E4M3's range the rows use,
 * and the times: the norms' pass, the product (each tile). 0: agrees.
 */
static int
e4m3_check(const shape *s, const uint8_t *a, const uint8_t *b,
    const float *sa, const float *sb, const __nv_bfloat16 *bias,
    const void *y, const std::vector<int> &rc, const std::vector<double> &ref,
    const int *tiles, int ntiles)
{
    std::vector<uint8_t>   ha((size_t) s->m * s->k), hb((size_t) s->n * s->k),
                           hq((size_t) s->m * s->n), hq2((size_t) s->m * s->n);
    std::vector<uint16_t>  hy((size_t) s->m * s->n), hbias(s->n);
    std::vector<float>     hsa(s->m), hsb(s->n), hys(s->m), hys2(s->m), hc(2);
    std::vector<double>    bnd(s->m), use;
    double                 lut[256], wmax = 0.0, bmax = 0.0, emax = 0.0;
    float                 *rn, *wn, *ys;
    uint8_t               *q;
    sd_cuda_g8_q           qq, qs;      /* max |bias| found once / by
                                           each launch */
    int                    fails = 0;

    for (int i = 0; i < 256; i++) {
        lut[i] = e4m3d((uint8_t) i);
    }
    CK(cudaMalloc((void **) &rn, s->m * 4));
    CK(cudaMalloc((void **) &ys, s->m * 4));
    CK(cudaMalloc((void **) &wn, 16));
    CK(cudaMalloc((void **) &q, (size_t) s->m * s->n));
    CK(cudaMemcpy(ha.data(), a, ha.size(), cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(hb.data(), b, hb.size(), cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(hsa.data(), sa, hsa.size() * 4, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(hsb.data(), sb, hsb.size() * 4, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(hbias.data(), bias, hbias.size() * 2,
                  cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(hy.data(), y, hy.size() * 2, cudaMemcpyDeviceToHost));
    for (int c = 0; c < s->n; c++) {
        double  ss = 0.0;

        for (int j = 0; j < s->k; j++) {
            ss += lut[hb[(size_t) c * s->k + j]] * lut[hb[(size_t) c * s->k
                                                        + j]];
        }
        wmax = std::max(wmax, hsb[c] * sqrt(ss));
        bmax = std::max(bmax, fabs((double) bf2f(hbias[c])));
    }
    for (int r = 0; r < s->m; r++) {
        double  ss = 0.0;

        for (int j = 0; j < s->k; j++) {
            ss += lut[ha[(size_t) r * s->k + j]] * lut[ha[(size_t) r * s->k
                                                        + j]];
        }
        bnd[r] = (hsa[r] * sqrt(ss) * wmax + bmax) * 1.03125;
    }
    memset(&qq, 0, sizeof(qq));
    qq.ys = ys;
    qq.rn = rn;
    qq.wn = wn;
    qq.bm = wn + 1;
    qs = qq;
    qs.bm = NULL;
    CK(sd_cuda_g8_wnorm(wn, b, sb, s->n, s->k, bias, 0));
    CK(sd_cuda_g8_rownorm(rn, a, s->k, sa, s->m, s->k, 0));
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(hc.data(), wn, 8, cudaMemcpyDeviceToHost));
    for (int ti = 0; ti < ntiles; ti++) {
        std::vector<float>  tq, tn, ts;
        int64_t             ndiff = 0;
        int                 maxd = 0, bad = 0, same;
        double              e = 0.0, ei = 0.0, ss = 0.0;

        /* the codes and row scales with qp's bias magnitude: found once
           (qq) or searched by the launch (qs), the same bytes */
        auto  codes = [&](sd_cuda_g8_q *qp, std::vector<uint8_t> &oq,
                          std::vector<float> &oys) {
            CK(cudaMemset(q, 0x7f, (size_t) s->m * s->n));
            CK(cudaMemset(ys, 0, s->m * 4));
            CK(sd_cuda_g8_gemm8(q, s->n, a, s->k, b, s->k, s->m, s->n, s->k,
                                sa, sb, bias, s->gelu, qp, tiles[ti], 0, 0));
            CK(cudaDeviceSynchronize());
            CK(cudaMemcpy(oq.data(), q, oq.size(), cudaMemcpyDeviceToHost));
            CK(cudaMemcpy(oys.data(), ys, oys.size() * 4,
                          cudaMemcpyDeviceToHost));
        };

        codes(&qs, hq2, hys2);
        codes(&qq, hq, hys);
        same = hq == hq2 && hys == hys2;
        use.clear();
        for (int r = 0; r < s->m; r++) {
            double  want = bnd[r] > 0.0 ? bnd[r] / 448.0 : 1.0, am = 0.0;

            emax = std::max(emax, fabs(hys[r] - want) / want);
            bad += !(fabs(hys[r] - want) <= 1e-4 * want);
            for (int c = 0; c < s->n; c++) {
                float          x = bf2f(hy[(size_t) r * s->n + c]);
                __nv_fp8_e4m3  cc(x / hys[r]);
                int            g = hq[(size_t) r * s->n + c], dd;

                dd = abs(code_ord(g) - code_ord(cc.__x));
                ndiff += dd != 0;
                maxd = std::max(maxd, dd);
                am = std::max(am, (double) fabsf(x));
            }
            use.push_back(am / (hys[r] * 448.0));
        }
        for (int i = 0; i < NSAMP; i++) {
            int             r = rc[2 * i], c = rc[2 * i + 1];
            __nv_fp8_e4m3   ci((float) (ref[i] / hys[r]));

            e = std::max(e, fabs(lut[hq[(size_t) r * s->n + c]] * hys[r]
                                 - ref[i]));
            ei = std::max(ei, fabs(lut[ci.__x] * hys[r] - ref[i]));
            ss += ref[i] * ref[i];
        }
        ss = sqrt(ss / NSAMP + 1e-30);
        sustain([&] {
            CK(sd_cuda_g8_rownorm(rn, a, s->k, sa, s->m, s->k, 0));
        }, [&] {
            CK(sd_cuda_g8_gemm8(q, s->n, a, s->k, b, s->k, s->m, s->n,
                                s->k, sa, sb, bias, s->gelu, &qq, tiles[ti],
                                0, 0));
        });
        for (int rr = 0; rr < ROUNDS; rr++) {
            tn.push_back(round_ms([&] {
                CK(sd_cuda_g8_rownorm(rn, a, s->k, sa, s->m, s->k, 0));
            }, 1));
            tq.push_back(round_ms([&] {
                CK(sd_cuda_g8_gemm8(q, s->n, a, s->k, b, s->k, s->m, s->n,
                                    s->k, sa, sb, bias, s->gelu, &qq,
                                    tiles[ti], 0, 0));
            }, 1));
            ts.push_back(round_ms([&] {
                CK(sd_cuda_g8_gemm8(q, s->n, a, s->k, b, s->k, s->m, s->n,
                                    s->k, sa, sb, bias, s->gelu, &qs,
                                    tiles[ti], 0, 0));
            }, 1));
        }
        std::sort(use.begin(), use.end());
        printf("| %s, E4M3 rows | %d x %d x %d | norms %.4f | | %d x %d%s "
               "| %.4f | %.0f | | codes differing from cuBLASLt's rounded: "
               "%lld of %lld (at most %d apart) | err %.2e (E4M3 of the "
               "exact sums: %.2e) | row scales off: %d (at most %.1e); "
               "rows' largest code / 448: median %.3f, min %.3f; "
               "max |bias| searched by each launch: %.4f ms, %s |\n",
               s->name, s->m, s->n, s->k, median(tn),
               tiles[ti] / 1000 % 1000, tiles[ti] % 1000, tile_tag(tiles[ti]),
               median(tq),
               2.0 * s->m * s->n * s->k / median(tq) / 1e9,
               (long long) ndiff, (long long) s->m * s->n, maxd, e / ss,
               ei / ss, bad, emax, use[use.size() / 2], use[0], median(ts),
               same ? "the same bytes" : "BYTES DIFFER");
        /* a code apart where BF16's rounding of the sum moved it across
           an E4M3 tie (double rounding: about 1.7% of the codes) */
        fails += bad || maxd > 1 || ndiff > (int64_t) s->m * s->n / 20
                 || !(e <= 1.5 * ei + 1e-3 * ss)
                 || !(hc[0] > 0.f && fabs(hc[0] - wmax) <= 1e-4 * wmax)
                 || hc[1] != (float) bmax || !same;
    }
    cudaFree(rn);
    cudaFree(ys);
    cudaFree(wn);
    cudaFree(q);
    return fails;
}


int
main(int argc, char **argv)
{
    /* tiles: BM * 1000 + BN */
    /* + 1000000: N fastest; 1128128, 1192128: ping-pong (gemm8.cu) */
    const int   bns[] = { 128256, 256128, 1128128, 1192128 };
    const int   nbn = (int) (sizeof(bns) / sizeof(bns[0]));
    int64_t     ma = 0, mb = 0, mm = 0, mn = 0, md = 0;
    uint8_t    *a, *b;
    float      *sa, *sb;
    __nv_bfloat16  *bias;
    void       *y0, *y1;
    size_t      nsh = sizeof(shapes) / sizeof(shapes[0]);
    int         fails = 0;

    if (!sd_cuda_g8_ok(0)) {
        printf("gemm8_check: the sm_90a kernel does not run here\n");
        return 1;
    }
    printf("cuBLASLt %zu\n", cublasLtGetVersion());
    LT(cublasLtCreate(&lt));
    CK(cudaMalloc(&ws, WS));
    for (size_t i = 0; i < nsh; i++) {
        const shape *s = &shapes[i];

        ma = std::max(ma, (int64_t) s->m * s->k);
        mb = std::max(mb, (int64_t) s->n * s->k);
        mm = std::max(mm, (int64_t) s->m);
        mn = std::max(mn, (int64_t) s->n);
        md = std::max(md, (int64_t) s->m * s->n);
    }
    CK(cudaMalloc((void **) &a, ma));
    CK(cudaMalloc((void **) &b, mb));
    CK(cudaMalloc((void **) &sa, mm * 4));
    CK(cudaMalloc((void **) &sb, mn * 4));
    CK(cudaMalloc((void **) &bias, mn * 2));
    CK(cudaMalloc(&y0, md * 2));
    CK(cudaMalloc(&y1, md * 2));

    printf("| shape | M x N x K | cuBLASLt ms | TFLOP/s | BN | own ms "
           "| TFLOP/s | speed own / cuBLASLt | err own | err cuBLASLt "
           "| max diff / rms |\n");
    printf("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- "
           "| --- |\n");
    for (size_t i = 0; i < nsh; i++) {
        const shape  *s = &shapes[i];
        std::vector<int>       rc(2 * NSAMP);
        std::vector<double>    ref(NSAMP);
        std::vector<uint16_t>  h0((size_t) s->m * s->n), h1(h0.size());
        double        flop = 2.0 * s->m * s->n * s->k, ec, ss = 0.0;
        plan          p;
        int           want = argc < 2, j;

        for (j = 1; j < argc; j++) {
            want |= strcmp(argv[j], s->name) == 0;
        }
        if (!want) {
            continue;
        }
        fill_e4m3<<<(unsigned) ((s->m * (int64_t) s->k + 255) / 256), 256>>>(
            a, (int64_t) s->m * s->k, 17u + (uint32_t) i);
        fill_e4m3<<<(unsigned) ((s->n * (int64_t) s->k + 255) / 256), 256>>>(
            b, (int64_t) s->n * s->k, 91u + (uint32_t) i);
        /* scales as the engine's: amax / 448 of rows of unit size */
        fill_f32<<<(s->m + 255) / 256, 256>>>(sa, s->m, 0.5f / 448.f,
                                               4.f / 448.f, 5u);
        fill_f32<<<(s->n + 255) / 256, 256>>>(sb, s->n, 0.02f / 448.f,
                                               0.2f / 448.f, 7u);
        fill_bf16<<<(s->n + 255) / 256, 256>>>(bias, s->n, 0.5f, 11u);
        for (j = 0; j < NSAMP; j++) {
            rc[2 * j] = (int) (mix(2u * j + 1u) % (uint32_t) s->m);
            rc[2 * j + 1] = (int) (mix(2u * j + 7919u) % (uint32_t) s->n);
        }
        gsa = sa;
        gsb = sb;
        gbias = bias;
        reference(ref, rc, a, b, s);
        if (!plan_make(&p, s, sb, sa, bias)) {
            printf("| %s | cuBLASLt: no algorithm |\n", s->name);
            continue;
        }
        plan_run(&p, b, a, y0);
        CK(cudaDeviceSynchronize());
        CK(cudaMemcpy(h0.data(), y0, h0.size() * 2, cudaMemcpyDeviceToHost));
        ec = sample_err(h0.data(), s->n, rc.data(), ref.data());
        for (size_t q = 0; q < h0.size(); q++) {
            ss += (double) bf2f(h0[q]) * bf2f(h0[q]);
        }
        ss = sqrt(ss / (double) h0.size());

        for (int bi = 0; bi < nbn; bi++) {
            std::vector<float>  tc, to;
            double              eo, mx = 0.0;
            cudaError_t         er;

            CK(cudaMemset(y1, 0xff, (size_t) s->m * s->n * 2));
            er = sd_cuda_g8_gemm(y1, s->n, a, s->k, b, s->k, s->m, s->n,
                                 s->k, sa, sb, bias, s->gelu, bns[bi], 0, 0);
            if (er != cudaSuccess) {
                printf("| %s | tile %d: %s |\n", s->name, bns[bi],
                       cudaGetErrorString(er));
                fails++;
                continue;
            }
            CK(cudaDeviceSynchronize());
            CK(cudaMemcpy(h1.data(), y1, h1.size() * 2,
                          cudaMemcpyDeviceToHost));
            eo = sample_err(h1.data(), s->n, rc.data(), ref.data());
            for (size_t q = 0; q < h1.size(); q++) {
                double  dd = fabs((double) bf2f(h1[q]) - bf2f(h0[q]));

                mx = dd == dd ? std::max(mx, dd) : INFINITY;
            }
            sustain([&] { plan_run(&p, b, a, y0); }, [&] {
                CK(sd_cuda_g8_gemm(y1, s->n, a, s->k, b, s->k, s->m, s->n,
                                   s->k, sa, sb, bias, s->gelu, bns[bi], 0,
                                   0));
            });
            for (int r = 0; r < ROUNDS; r++) {
                tc.push_back(round_ms([&] { plan_run(&p, b, a, y0); }, 1));
                to.push_back(round_ms([&] {
                    CK(sd_cuda_g8_gemm(y1, s->n, a, s->k, b, s->k, s->m,
                                       s->n, s->k, sa, sb, bias, s->gelu,
                                       bns[bi], 0, 0));
                }, 1));
            }
            /* an own output off by more than BF16's rounding of the two
               sums' difference fails the check */
            if (!(mx / ss < 0.05) || !(eo < 2.0 * ec + 0.02)) {
                fails++;
            }
            printf("| %s | %d x %d x %d | %.4f | %.0f | %d x %d%s | %.4f "
                   "| %.0f | %.3f | %.2e | %.2e | %.2e |\n", s->name, s->m,
                   s->n, s->k, median(tc), flop / median(tc) / 1e9,
                   bns[bi] / 1000 % 1000, bns[bi] % 1000, tile_tag(bns[bi]),
                   median(to), flop / median(to) / 1e9,
                   median(tc) / median(to), eo, ec, mx / ss);
        }
        if (s->gelu) {
            /* inputs as a random model's: normal rows quantized per row
               (the norm's output, weights of 0.02), a bias of 0.05 */
            fill_gauss_rows<<<s->m, 256>>>(a, sa, s->k, 1.f, 3u);
            fill_gauss_rows<<<s->n, 256>>>(b, sb, s->k, 0.02f, 9u);
            fill_bf16<<<(s->n + 255) / 256, 256>>>(bias, s->n, 0.05f, 13u);
            reference(ref, rc, a, b, s);
            /* y0: cuBLASLt's product of them */
            plan_run(&p, b, a, y0);
            CK(cudaDeviceSynchronize());
            fails += e4m3_check(s, a, b, sa, sb, bias, y0, rc, ref, bns,
                                nbn);
        }
        plan_free(&p);
    }
    printf("gemm8_check: %s\n", fails ? "FAILED" : "ok");
    return fails ? 1 : 0;
}
