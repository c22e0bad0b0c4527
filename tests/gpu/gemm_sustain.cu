/*
 * gemm_sustain.cu: cuBLASLt's algorithms for the MMDiT image stream's FP8
 * products, each timed under sustained load, on the GPU machine. A Large
 * step holds the card at its power limit (docs/perf-history.md, session
 * 30), where a product's time follows the energy it spends more than its
 * time in a short burst; the engine runs the heuristic's first candidate
 * (the deterministic pick; the heuristic offers one at these shapes).
 *
 * For each shape, as the engine issues it (E4M3 x E4M3 -> BF16, per-row
 * outer-vector scales, fast accumulation, BF16 bias, the engine's alignment
 * preferences; the out projection and the second feed-forward product one
 * call a CFG half with beta 1 onto the residual), the candidates are the
 * heuristic's and, with ENUM=1, every configuration cuBLASLt's algorithms
 * for these types accept (enumerate()). Each is run in a burst (ms a call,
 * 20 calls after one); the heuristic's first and the NSUST fastest others
 * are then run under sustained load, after the card was heated by 2 s of
 * the first:
 *   sustained  ms a call over a window of SUSTAIN_MS (default 400) of
 *              back-to-back calls; two rounds, the second in reverse order,
 *              the mean of the two
 *   MHz, W     the SM clock and the board power NVML reported, sampled every
 *              5 ms by a second thread in those windows (mean)
 *   mJ         the board's energy a call (NVML's energy counter over the
 *              windows)
 * with each candidate's configuration (cfg(): cuBLASLt's algorithm id,
 * tile, stages, cluster shape, split-K, swizzle, custom option, inner
 * shape, reduction scheme, the enum values of cublasLt.h).
 *
 * With VALUES=1, the heuristic's first candidate only, under sustained
 * load with operands of different values (values()): whether the codes'
 * range moves a product's energy.
 *
 * Build: nvcc -O3 -o gemm_sustain gemm_sustain.cu -lcublasLt -ldl -lpthread
 * Usage: [ENUM=1|VALUES=1] [SUSTAIN_MS=N] gemm_sustain [SHAPE...]  (large-qkv
 *        large-out large-down medium-qkv medium-out medium-down; default
 *        all)
 */

#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cublasLt.h>

#include "lt_common.cuh"

#define NCAND  16
#define MAXCAND 2048
#define NSUST  10                       /* sustained: the best by burst */
static const size_t  WS = 32u << 20;
static cublasLtHandle_t  lt;


/* NVML through dlopen (the driver's library; no header in every toolkit) */
typedef void *nvml_dev;
static int (*nv_init)(void);
static int (*nv_handle)(unsigned, nvml_dev *);
static int (*nv_clock)(nvml_dev, int, unsigned *);
static int (*nv_power)(nvml_dev, unsigned *);
static int (*nv_energy)(nvml_dev, unsigned long long *);
static nvml_dev  dev;
static int       have_nvml;

static void
nvml_open(void)
{
    void  *h = dlopen("libnvidia-ml.so.1", RTLD_NOW);

    if (h == NULL) {
        return;
    }
    nv_init = (int (*)(void)) dlsym(h, "nvmlInit_v2");
    nv_handle = (int (*)(unsigned, nvml_dev *))
                dlsym(h, "nvmlDeviceGetHandleByIndex_v2");
    nv_clock = (int (*)(nvml_dev, int, unsigned *))
               dlsym(h, "nvmlDeviceGetClockInfo");
    nv_power = (int (*)(nvml_dev, unsigned *))
               dlsym(h, "nvmlDeviceGetPowerUsage");
    nv_energy = (int (*)(nvml_dev, unsigned long long *))
                dlsym(h, "nvmlDeviceGetTotalEnergyConsumption");
    have_nvml = nv_init && nv_handle && nv_clock && nv_power && nv_energy
                && nv_init() == 0 && nv_handle(0, &dev) == 0;
}

static unsigned long long
energy_mj(void)
{
    unsigned long long  e = 0;

    if (have_nvml) {
        nv_energy(dev, &e);
    }
    return e;
}


/* the sampler: SM clock (NVML_CLOCK_SM 1) and power every 5 ms while
   sampling; its sums under s_mu */
static pthread_mutex_t  s_mu = PTHREAD_MUTEX_INITIALIZER;
static int              sampling, stop_sampler;
static double           s_mhz, s_w;
static long             s_n;

/* sampling on (sums zeroed) or off; off: the window's means */
static void
sample_window(int on, double *mhz, double *w)
{
    pthread_mutex_lock(&s_mu);
    if (on) {
        s_mhz = s_w = 0;
        s_n = 0;
    } else {
        *mhz = s_n ? s_mhz / s_n : 0;
        *w = s_n ? s_w / s_n : 0;
    }
    sampling = on;
    pthread_mutex_unlock(&s_mu);
}

static void *
sampler(void *arg)
{
    (void) arg;
    for (;;) {
        unsigned  c = 0, p = 0;
        int       ok = have_nvml && nv_clock(dev, 1, &c) == 0
                       && nv_power(dev, &p) == 0;

        pthread_mutex_lock(&s_mu);
        if (stop_sampler) {
            pthread_mutex_unlock(&s_mu);
            break;
        }
        if (sampling && ok) {
            s_mhz += c;
            s_w += p / 1000.0;
            s_n++;
        }
        pthread_mutex_unlock(&s_mu);
        usleep(5000);
    }
    return NULL;
}


static unsigned
nblk(int64_t n)
{
    return (unsigned) ((n + 255) / 256);
}


typedef struct {
    const char  *name;
    int64_t      out, K, rows;      /* D out x rows a call, rows a half */
    int          halves;            /* 2: one call a CFG half, beta 1 */
} shape;

static const shape  shapes[] = {
    { "large-qkv",   3 * 2432, 2432, 8192, 1 },
    { "large-out",   2432,     2432, 4096, 2 },
    { "large-down",  2432,     9728, 4096, 2 },
    { "medium-qkv",  3 * 1536, 1536, 8192, 1 },
    { "medium-out",  1536,     1536, 4096, 2 },
    { "medium-down", 1536,     6144, 4096, 2 },
};

typedef struct {
    cublasLtMatmulDesc_t             desc;
    cublasLtMatrixLayout_t           la, lb, ld;
    cublasLtMatmulHeuristicResult_t  res[NCAND];
    int                              n;
    cublasLtMatmulAlgo_t             al[MAXCAND];   /* what is timed */
    double                           burst[MAXCAND];
    int                              na, nheur;
    uint8_t                         *w, *x;
    __nv_bfloat16                   *d, *bias;
    float                           *ws, *xs;
    void                            *lws;
    const shape                     *s;
} plan;


static void
plan_make(plan *p, const shape *s)
{
    cublasLtMatmulPreference_t   pref;
    uint64_t                     wsz = WS;
    int64_t                      rows = s->rows * s->halves;

    memset(p, 0, sizeof(*p));
    p->s = s;
    lt_fp8_desc(&p->desc, CUBLASLT_EPILOGUE_BIAS);
    LT(cublasLtMatrixLayoutCreate(&p->la, CUDA_R_8F_E4M3, s->K, s->out,
                                  s->K));
    LT(cublasLtMatrixLayoutCreate(&p->lb, CUDA_R_8F_E4M3, s->K, s->rows,
                                  s->K));
    LT(cublasLtMatrixLayoutCreate(&p->ld, CUDA_R_16BF, s->out, s->rows,
                                  s->out));

    CK(cudaMalloc(&p->w, s->out * s->K));
    CK(cudaMalloc(&p->x, rows * s->K));
    CK(cudaMalloc(&p->d, rows * s->out * 2));
    CK(cudaMalloc(&p->bias, s->halves * s->out * 2));
    CK(cudaMalloc(&p->ws, s->halves * s->out * 4));
    CK(cudaMalloc(&p->xs, rows * 4));
    CK(cudaMalloc(&p->lws, WS));
    lt_fill_e4m3<<<nblk(s->out * s->K), 256>>>(p->w, s->out * s->K, 1);
    lt_fill_e4m3<<<nblk(rows * s->K), 256>>>(p->x, rows * s->K, 2);
    lt_fill_bf16<<<nblk(rows * s->out), 256>>>(p->d, rows * s->out, 3);
    lt_fill_bf16<<<nblk(s->halves * s->out), 256>>>(p->bias,
                                                    s->halves * s->out, 4);
    lt_fill_f32<<<nblk(s->halves * s->out), 256>>>(p->ws,
                                                   s->halves * s->out, 1e-3f,
                                                   2e-3f, 5);
    lt_fill_f32<<<nblk(rows), 256>>>(p->xs, rows, 1e-2f, 2e-2f, 6);
    CK(cudaDeviceSynchronize());

    /* the scale and bias pointers set before the heuristic, as the engine
       sets them (outer-vector scales have no algorithm without them) */
    LT(cublasLtMatmulDescSetAttribute(p->desc,
           CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &p->ws, sizeof(p->ws)));
    LT(cublasLtMatmulDescSetAttribute(p->desc,
           CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &p->xs, sizeof(p->xs)));
    LT(cublasLtMatmulDescSetAttribute(p->desc,
           CUBLASLT_MATMUL_DESC_BIAS_POINTER, &p->bias, sizeof(p->bias)));
    LT(cublasLtMatmulPreferenceCreate(&pref));
    LT(cublasLtMatmulPreferenceSetAttribute(pref,
           CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsz, sizeof(wsz)));
    /* the alignments the engine states (kernels/gemm.cu): 256 bytes but
       for a half's rows, which start K bytes apart */
    for (int k = 0; k < 4; k++) {
        static const cublasLtMatmulPreferenceAttributes_t  at[4] = {
            CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
            CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
            CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
            CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES
        };
        uint32_t  al = 256;

        if (k == 1 && s->halves > 1) {
            al = (uint32_t) (s->K & -s->K) < 256 ? (uint32_t) (s->K & -s->K)
                                                 : 256;
        }
        LT(cublasLtMatmulPreferenceSetAttribute(pref, at[k], &al,
                                                sizeof(al)));
    }
    if (cublasLtMatmulAlgoGetHeuristic(lt, p->desc, p->la, p->lb,
            p->ld, p->ld, pref, NCAND, p->res, &p->n)
        != CUBLAS_STATUS_SUCCESS)
    {
        p->n = 0;
    }
    cublasLtMatmulPreferenceDestroy(pref);
}


/* the candidate's configuration string (below) */
static const char *cfg(const cublasLtMatmulAlgo_t *a);

/* the distinct ids (at most max) of a cap that is an array of uint32_t;
   none listed: one, 0 (undefined) */
static int
cap_ids(const cublasLtMatmulAlgo_t *a, cublasLtMatmulAlgoCapAttributes_t at,
    uint32_t *ids, int max)
{
    size_t     sz = 0, got = 0;
    uint32_t  *all;
    int        n, k = 0;

    cublasLtMatmulAlgoCapGetAttribute(a, at, NULL, 0, &sz);
    n = (int) (sz / 4);
    all = (uint32_t *) calloc(n ? n : 1, 4);
    if (n == 0 || all == NULL
        || cublasLtMatmulAlgoCapGetAttribute(a, at, all, sz, &got)
           != CUBLAS_STATUS_SUCCESS)
    {
        free(all);
        ids[0] = 0;
        return 1;
    }
    for (int i = 0; i < n && k < max; i++) {
        int  seen = 0;

        for (int j = 0; j < k && !seen; j++) {
            seen = ids[j] == all[i];
        }
        if (!seen) {
            ids[k++] = all[i];
        }
    }
    free(all);
    return k ? k : (ids[0] = 0, 1);
}

/* p->al: the heuristic's candidates, then (ENUM=1) every configuration of
   every algorithm cuBLASLt has for these types that cublasLtMatmulAlgoCheck
   accepts for the shape: tiles and stages from the algorithm's caps, the
   cluster shapes auto, 1x1, 2x1, 1x2, 2x2, 4x1, 1x4, every custom option
   (at most 64), no split-K, no swizzle; duplicates of a configuration
   dropped; the first MAXCAND in the algorithms' order (cuBLASLt 13.1 on
   the H200 accepts more: its algorithm 66 lists 512 tiles or more) */
static void
enumerate(plan *p)
{
    static const uint16_t  cl[7] = { 0, 2, 3, 5, 6, 4, 8 };
    int                    ids[64], nid = 0, have;
    static char            seen[MAXCAND][96];
    char                   mine[96];       /* this configuration's */
    const char            *e = getenv("ENUM");

    p->na = 0;
    for (int i = 0; i < p->n && p->na < MAXCAND; i++) {
        if (p->res[i].state == CUBLAS_STATUS_SUCCESS) {
            p->al[p->na] = p->res[i].algo;
            snprintf(seen[p->na], 96, "%s", cfg(&p->res[i].algo));
            p->na++;
        }
    }
    p->nheur = p->na;
    if (e == NULL || atoi(e) == 0) {
        return;
    }
    cublasLtMatmulAlgoGetIds(lt, CUBLAS_COMPUTE_32F, CUDA_R_32F,
                             CUDA_R_8F_E4M3, CUDA_R_8F_E4M3, CUDA_R_16BF,
                             CUDA_R_16BF, 64, ids, &nid);
    for (int k = 0; k < nid; k++) {
        cublasLtMatmulAlgo_t  a;
        uint32_t              tiles[512], stages[128];
        size_t                sz = 0;
        int                   nt, nst, cmax = 0;

        if (cublasLtMatmulAlgoInit(lt, CUBLAS_COMPUTE_32F, CUDA_R_32F,
                CUDA_R_8F_E4M3, CUDA_R_8F_E4M3, CUDA_R_16BF, CUDA_R_16BF,
                ids[k], &a) != CUBLAS_STATUS_SUCCESS)
        {
            continue;
        }
        /* the caps' arrays read whole (their size asked first), each id
           kept once */
        nt = cap_ids(&a, CUBLASLT_ALGO_CAP_TILE_IDS, tiles, 512);
        nst = cap_ids(&a, CUBLASLT_ALGO_CAP_STAGES_IDS, stages, 128);
        cublasLtMatmulAlgoCapGetAttribute(&a,
            CUBLASLT_ALGO_CAP_CUSTOM_OPTION_MAX, &cmax, sizeof(cmax), &sz);
        if (cmax > 63) cmax = 63;
        printf("algo %d: %d tiles, %d stages, custom options 0..%d\n",
               ids[k], nt, nst, cmax);
        for (int t = 0; t < nt; t++)
        for (int st = 0; st < nst; st++)
        for (int c = 0; c < 7; c++)
        for (int o = 0; o <= cmax && p->na < MAXCAND; o++) {
            cublasLtMatmulHeuristicResult_t  r;
            cublasLtMatmulAlgo_t             b = a;
            int32_t                          one = 1;
            uint32_t                         sw = 0;

            cublasLtMatmulAlgoConfigSetAttribute(&b,
                CUBLASLT_ALGO_CONFIG_TILE_ID, &tiles[t], 4);
            cublasLtMatmulAlgoConfigSetAttribute(&b,
                CUBLASLT_ALGO_CONFIG_STAGES_ID, &stages[st], 4);
            cublasLtMatmulAlgoConfigSetAttribute(&b,
                CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID, &cl[c], 2);
            cublasLtMatmulAlgoConfigSetAttribute(&b,
                CUBLASLT_ALGO_CONFIG_CUSTOM_OPTION, &o, 4);
            cublasLtMatmulAlgoConfigSetAttribute(&b,
                CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &one, 4);
            cublasLtMatmulAlgoConfigSetAttribute(&b,
                CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING, &sw, 4);
            memset(&r, 0, sizeof(r));
            if (cublasLtMatmulAlgoCheck(lt, p->desc, p->la, p->lb, p->ld,
                                        p->ld, &b, &r) != CUBLAS_STATUS_SUCCESS
                || r.workspaceSize > WS)
            {
                continue;
            }
            snprintf(mine, sizeof(mine), "%s", cfg(&b));
            have = 0;
            for (int j = 0; j < p->na && !have; j++) {
                have = !strcmp(seen[j], mine);
            }
            if (!have) {
                p->al[p->na] = b;
                memcpy(seen[p->na], mine, sizeof(mine));
                p->na++;
            }
        }
    }
}

/* one call of candidate i for half hf: the gate's scales and the bias of
   that half, beta 1 onto the residual where the product is per half */
static cublasStatus_t
call(plan *p, int i, int hf)
{
    const shape  *s = p->s;
    float         one = 1.f, beta = s->halves > 1 ? 1.f : 0.f;
    const void   *bias = p->bias + hf * s->out;
    const float  *as = p->ws + hf * s->out, *bs = p->xs + hf * s->rows;
    void         *d = p->d + hf * s->rows * s->out;

    LT(cublasLtMatmulDescSetAttribute(p->desc,
           CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &as, sizeof(as)));
    LT(cublasLtMatmulDescSetAttribute(p->desc,
           CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &bs, sizeof(bs)));
    LT(cublasLtMatmulDescSetAttribute(p->desc,
           CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
    return cublasLtMatmul(lt, p->desc, &one, p->w, p->la,
                          p->x + hf * s->rows * s->K, p->lb, &beta, d,
                          p->ld, d, p->ld, &p->al[i], p->lws, WS, 0);
}

/* one step's worth of the product: both halves where it is per half */
static void
step(plan *p, int i)
{
    for (int hf = 0; hf < p->s->halves; hf++) {
        call(p, i, hf);
    }
}

static double
now_ms(void)
{
    struct timespec  t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* back-to-back steps of candidate i for about ms milliseconds: ms a step;
   with stats, the clock, power and energy a step in that window */
typedef struct { double ms, mhz, w, mj; } meas;

static meas
sustain(plan *p, int i, double ms, int stats)
{
    cudaEvent_t         e0, e1, ev[2];
    meas                m = { 0, 0, 0, 0 };
    long                n = 0, chunk = 8;
    double              t0;
    unsigned long long  j0 = 0, j1;
    float               el;

    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    CK(cudaEventCreate(&ev[0]));
    CK(cudaEventCreate(&ev[1]));
    CK(cudaEventRecord(ev[1], 0));
    step(p, i);
    CK(cudaDeviceSynchronize());
    if (stats) {
        sample_window(1, NULL, NULL);
        j0 = energy_mj();
    }
    CK(cudaEventRecord(e0, 0));
    t0 = now_ms();
    while (now_ms() - t0 < ms) {
        /* two chunks in flight: the queue never runs dry, never far ahead */
        for (int c = 0; c < chunk; c++) {
            step(p, i);
        }
        n += chunk;
        CK(cudaEventRecord(ev[n / chunk % 2], 0));
        CK(cudaEventSynchronize(ev[(n / chunk + 1) % 2]));
    }
    CK(cudaEventRecord(e1, 0));
    CK(cudaEventSynchronize(e1));
    CK(cudaEventElapsedTime(&el, e0, e1));
    m.ms = el / n;
    if (stats) {
        sample_window(0, &m.mhz, &m.w);
        j1 = energy_mj();
        m.mj = have_nvml ? (double) (j1 - j0) / n : 0;
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    cudaEventDestroy(ev[0]);
    cudaEventDestroy(ev[1]);
    return m;
}

static double
burst(plan *p, int i)
{
    cudaEvent_t  e0, e1;
    float        el;

    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    step(p, i);
    CK(cudaEventRecord(e0, 0));
    for (int r = 0; r < 20; r++) {
        step(p, i);
    }
    CK(cudaEventRecord(e1, 0));
    CK(cudaEventSynchronize(e1));
    CK(cudaEventElapsedTime(&el, e0, e1));
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    return el / 20;
}

/* rows of n normal values (a hash's Box-Muller), each row quantized to
   E4M3 as the engine quantizes weights and activations: its largest
   magnitude to top; one block a row */
__global__ void
fill_rows_normal(uint8_t *p, int64_t n, float top, uint32_t seed)
{
    __shared__ float  red[32];
    uint8_t          *row = p + (int64_t) blockIdx.x * n;
    float             am = 0.f, q;

    for (int pass = 0; pass < 2; pass++) {
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
            uint32_t  h = (uint32_t) ((int64_t) blockIdx.x * n + i)
                          * 2654435761u ^ seed;
            uint32_t  g;
            float     u1, u2, v;

            h ^= h >> 15; h *= 2246822519u; h ^= h >> 13;
            g = h * 3266489917u ^ (seed * 668265263u); g ^= g >> 16;
            u1 = ((h >> 8) + 1) * (1.f / 16777217.f);
            u2 = (g >> 8) * (1.f / 16777216.f);
            v = sqrtf(-2.f * logf(u1)) * cospif(2.f * u2);
            if (pass == 0) {
                am = fmaxf(am, fabsf(v));
            } else {
                __nv_fp8_e4m3  c(v * q);
                row[i] = c.__x;
            }
        }
        if (pass == 0) {
            for (int o = 16; o > 0; o >>= 1) {
                am = fmaxf(am, __shfl_xor_sync(0xffffffffu, am, o));
            }
            if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = am;
            __syncthreads();
            if (threadIdx.x == 0) {
                for (int w = 1; w < (int) (blockDim.x >> 5); w++) {
                    red[0] = fmaxf(red[0], red[w]);
                }
            }
            __syncthreads();
            q = red[0] > 0.f ? top / red[0] : 1.f;
        }
    }
}

/* uniform values in [-top, top) (lt_fill_e4m3's times top) */
__global__ void
fill_uniform(uint8_t *p, int64_t n, float top, uint32_t seed)
{
    int64_t  i = (int64_t) blockIdx.x * blockDim.x + threadIdx.x;

    if (i < n) {
        p[i] = lt_e4m3_uniform(i, seed, top);
    }
}

/* VALUES=1: the heuristic's first candidate under sustained load with
   operands of each kind in turn (two rounds, the second in reverse):
   normal rows quantized to a row maximum of 448 (the engine's), of other
   powers of two, each operand alone at 1, and uniform values */
typedef struct { const char *name; int uni; float wtop, xtop; } fill;

static void
values(plan *p, double win)
{
    static const fill  f[] = {
        { "normal, rows to 448 (the engine's)", 0, 448.f, 448.f },
        { "normal, rows to 256",  0, 256.f, 256.f },
        { "normal, rows to 64",   0, 64.f,  64.f },
        { "normal, rows to 16",   0, 16.f,  16.f },
        { "normal, rows to 4",    0, 4.f,   4.f },
        { "normal, rows to 1",    0, 1.f,   1.f },
        { "normal, rows to 0.25", 0, .25f,  .25f },
        { "normal, W 448, X 1",   0, 448.f, 1.f },
        { "normal, W 1, X 448",   0, 1.f,   448.f },
        { "uniform [-1, 1)",      1, 1.f,   1.f },
        { "uniform [-4, 4)",      1, 4.f,   4.f },
    };
    const shape  *s = p->s;
    int           nf = (int) (sizeof(f) / sizeof(f[0]));
    int64_t       rows = s->rows * s->halves;
    meas          m[16][2];

    printf("| shape | operands | ms a step (rounds) | vs the engine's | "
           "MHz | W | mJ a step | vs the engine's |\n");
    printf("| --- | --- | --- | --- | --- | --- | --- | --- |\n");
    for (int r = 0; r < 2; r++) {
        for (int k = 0; k < nf; k++) {
            int  j = r ? nf - 1 - k : k;

            if (f[j].uni) {
                fill_uniform<<<nblk(s->out * s->K), 256>>>(p->w,
                    s->out * s->K, f[j].wtop, 1);
                fill_uniform<<<nblk(rows * s->K), 256>>>(p->x, rows * s->K,
                                                          f[j].xtop, 2);
            } else {
                fill_rows_normal<<<(unsigned) s->out, 256>>>(p->w, s->K,
                                                             f[j].wtop, 1);
                fill_rows_normal<<<(unsigned) rows, 256>>>(p->x, s->K,
                                                          f[j].xtop, 2);
            }
            CK(cudaDeviceSynchronize());
            sustain(p, 0, r == 0 && k == 0 ? 2000 : 300, 0);
            m[j][r] = sustain(p, 0, win, 1);
        }
    }
    for (int j = 0; j < nf; j++) {
        double  t = (m[j][0].ms + m[j][1].ms) / 2;
        double  t0 = (m[0][0].ms + m[0][1].ms) / 2;
        double  e = (m[j][0].mj + m[j][1].mj) / 2;
        double  e0 = (m[0][0].mj + m[0][1].mj) / 2;

        printf("| %s | %s | %.4f (%.4f / %.4f) | %+.1f%% | %.0f | %.0f | "
               "%.1f | %+.1f%% |\n", s->name, f[j].name, t, m[j][0].ms,
               m[j][1].ms, 100.0 * (t / t0 - 1.0),
               (m[j][0].mhz + m[j][1].mhz) / 2, (m[j][0].w + m[j][1].w) / 2,
               e, 100.0 * (e / e0 - 1.0));
    }
    fflush(stdout);
}

/* the candidate's configuration as one string: algorithm id, tile,
   stages, cluster shape, split-K, swizzle, custom option, inner shape,
   reduction scheme */
static const char *
cfg(const cublasLtMatmulAlgo_t *a)
{
    static const cublasLtMatmulAlgoConfigAttributes_t  at[9] = {
        CUBLASLT_ALGO_CONFIG_ID, CUBLASLT_ALGO_CONFIG_TILE_ID,
        CUBLASLT_ALGO_CONFIG_STAGES_ID, CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID,
        CUBLASLT_ALGO_CONFIG_SPLITK_NUM, CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING,
        CUBLASLT_ALGO_CONFIG_CUSTOM_OPTION,
        CUBLASLT_ALGO_CONFIG_INNER_SHAPE_ID,
        CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME
    };
    static char  buf[96];
    size_t       o = 0;

    for (int k = 0; k < 9; k++) {
        uint32_t  v = 0;
        size_t    got = 0;

        /* the cluster and inner shapes are 16-bit */
        cublasLtMatmulAlgoConfigGetAttribute(a, at[k], &v, k == 3 || k == 7
                                             ? 2 : sizeof(v), &got);
        o += (size_t) snprintf(buf + o, sizeof(buf) - o, k ? ".%u" : "%u",
                               v);
    }
    return buf;
}

int
main(int argc, char **argv)
{
    const char  *env = getenv("SUSTAIN_MS");
    double       win = env ? atof(env) : 400.0;
    pthread_t    th;
    int          ns = (int) (sizeof(shapes) / sizeof(shapes[0]));
    static plan  p;

    nvml_open();
    LT(cublasLtCreate(&lt));
    pthread_create(&th, NULL, sampler, NULL);
    printf("cuBLASLt %zu, NVML %s, window %.0f ms\n", cublasLtGetVersion(),
           have_nvml ? "yes" : "no", win);
    for (int si = 0; si < ns; si++) {
        int     set[NSUST + 1], nset = 0, nok = 0, want = argc < 2;
        double  sus[NSUST + 1][2];
        meas    m[NSUST + 1][2];

        for (int a = 1; a < argc; a++) {
            want |= !strcmp(argv[a], shapes[si].name);
        }
        if (!want) {
            continue;
        }
        plan_make(&p, &shapes[si]);
        enumerate(&p);
        if (getenv("VALUES") != NULL && atoi(getenv("VALUES")) != 0
            && p.na > 0)
        {
            values(&p, win);
            cudaFree(p.w); cudaFree(p.x); cudaFree(p.d); cudaFree(p.bias);
            cudaFree(p.ws); cudaFree(p.xs); cudaFree(p.lws);
            continue;
        }
        if (p.na == 0) {
            printf("%s: no candidates\n", shapes[si].name);
            continue;
        }
        /* every candidate in a burst; those that fail or give a wrong
           status are left out */
        for (int i = 0; i < p.na; i++) {
            int  ok = call(&p, i, 0) == CUBLAS_STATUS_SUCCESS
                      && cudaDeviceSynchronize() == cudaSuccess;

            cudaGetLastError();
            p.burst[i] = ok ? burst(&p, i) : -1;
            nok += ok;
        }
        /* the heuristic's first, then the fastest others by burst */
        set[nset++] = 0;
        while (nset < NSUST + 1) {
            int  best = -1;

            for (int i = 1; i < p.na; i++) {
                int  in = 0;

                for (int j = 0; j < nset; j++) {
                    in |= set[j] == i;
                }
                if (!in && p.burst[i] > 0
                    && (best < 0 || p.burst[i] < p.burst[best]))
                {
                    best = i;
                }
            }
            if (best < 0) {
                break;
            }
            set[nset++] = best;
        }
        printf("%s: %d candidates (%d from the heuristic), %d ran; "
               "sustained: the heuristic's first and the %d fastest others "
               "in a burst\n", shapes[si].name, p.na, p.nheur, nok,
               nset - 1);
        printf("| shape | key | cand | config | burst ms | "
               "sustained ms (rounds) | vs cand 0 | MHz | W | mJ a step |\n");
        printf("| --- | --- | --- | --- | --- | --- | --- | --- | --- | "
               "--- |\n");
        /* heat the card, then two rounds, the second in reverse order */
        sustain(&p, 0, 2000, 0);
        for (int r = 0; r < 2; r++) {
            for (int k = 0; k < nset; k++) {
                int  j = r ? nset - 1 - k : k;

                m[j][r] = sustain(&p, set[j], win, 1);
                sus[j][r] = m[j][r].ms;
            }
        }
        for (int j = 0; j < nset; j++) {
            double  s0 = (sus[0][0] + sus[0][1]) / 2;
            double  sj = (sus[j][0] + sus[j][1]) / 2;

            printf("| %s | %lldx%lldx%lld | %d | %s | %.4f | %.4f "
                   "(%.4f / %.4f) | %+.1f%% | %.0f | %.0f | %.1f |\n",
                   shapes[si].name, (long long) shapes[si].out,
                   (long long) shapes[si].rows, (long long) shapes[si].K,
                   set[j], cfg(&p.al[set[j]]), p.burst[set[j]], sj,
                   sus[j][0], sus[j][1], 100.0 * (sj / s0 - 1.0),
                   (m[j][0].mhz + m[j][1].mhz) / 2,
                   (m[j][0].w + m[j][1].w) / 2,
                   (m[j][0].mj + m[j][1].mj) / 2);
        }
        fflush(stdout);
        /* this shape's buffers */
        cudaFree(p.w); cudaFree(p.x); cudaFree(p.d); cudaFree(p.bias);
        cudaFree(p.ws); cudaFree(p.xs); cudaFree(p.lws);
    }
    pthread_mutex_lock(&s_mu);
    stop_sampler = 1;
    pthread_mutex_unlock(&s_mu);
    pthread_join(th, NULL);
    return 0;
}
