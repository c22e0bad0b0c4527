/*
 * gemm8.cu: an own FP8 matrix product for Hopper (sm_90a), for the
 * MMDiT's linears: D (M x N) = epilogue(A (M x K) B (N x K)^T), A and B
 * E4M3 rows (K-major, the only layout FP8 wgmma reads), F32 accumulation
 * without promotion (what cuBLASLt's FAST_ACCUM does), and the epilogue
 * d = acc sa[m] sb[n] + bias[n], optionally GELU (tanh form), written as
 * BF16: what the engine's cuBLASLt products with outer-vector scales and
 * the BIAS / GELU_BIAS epilogues compute, bit for bit at the MMDiT's
 * shapes. It is the base for epilogues cuBLASLt cannot fuse: the
 * output as E4M3 rows with one scale a row (sd_cuda_g8_q), each row's
 * scale a bound of its values known before the product (the row norms of
 * A and B: Cauchy-Schwarz), which the feed-forward's GELU product uses by
 * default (sd_cuda_linear_rows8: the hidden layer then needs no pass to
 * find its rows' maxima and quantize them before the second product);
 * and the QKV split (sd_cuda_g8_split: RMSNorm per head, q and k in
 * E4M3, v and its maxima), behind SD_CUDA_G8=1.
 *
 * A persistent kernel, one block an SM, 384 threads: warpgroup 0 is the
 * producer (one thread issues TMA copies of a BM x 128-byte tile of A and
 * a BN x 128-byte tile of B into four stages, 128-byte swizzle),
 * warpgroups 1 and 2 the consumers, each owning BM / 2 rows of the
 * BM x BN output tile (128 x 256 or 256 x 128) and accumulating with
 * m64nBNk32 wgmma from shared memory. Tiles go to blocks round-robin, M
 * fastest (a wave's blocks share B's tile and A stays in L2); the
 * producer runs ahead into a block's next tile while its consumers write
 * one out: 64 x 64 chunks through shared memory, stored by TMA.
 *
 * Measured on the H200 (tests/gpu/gemm8_check.cu, session 15): 0.86-0.90
 * of cuBLASLt's speed where K is 1536-2432 (QKV 1,324 TFLOP/s at 256 x 128
 * against 1,489; the GELU product 1,278 at 128 x 256 against 1,412), at
 * par where K is 6144-9728 (the feed-forward's second product 1,401
 * against 1,408). The main loop alone runs at about 1,630 TFLOP/s; what
 * is lost is the epilogue, about 1.5-2.5 us a tile in which the tensor
 * cores idle (two consumers on one tile finish together). Since each
 * epilogue kind is a kernel of its own (session 17): QKV 1,360 TFLOP/s
 * against cuBLASLt's 1,475 (0.92), the second product 1,422 against
 * 1,404 (1.01), the out projection 1,270 against 1,291 (0.98). Not kept:
 * three stages at 128 x 256 with room for the whole output tile (the
 * main loop then waits for its loads: 1,253 at K 9728), the output
 * written from registers (4-byte stores: 790-1,040), a chunk read back
 * from shared memory and stored by the threads (the same as TMA), B's
 * rows permuted so each thread holds 8 consecutive columns (16-byte
 * stores: the same at 256 x 128), clusters of two blocks sharing B's
 * tile by multicast (0.3-0.6: each stage then waits for both blocks'
 * consumers across SMs, and four stages do not cover that).
 * The E4M3 rows (session 16): the GELU product 8192 x 9728 x 2432 in
 * 0.300 ms (0.305 with BF16 out; cuBLASLt's BF16 0.278 plus the rows'
 * quantization pass 0.054), the norms' pass 0.010; the Large step 66.0
 * -> 64.9 ms, Medium 28.0 -> 27.4 (tests/gpu/run.sh ffh8, in turn).
 * Not kept (session 17, gemm8_check in turn in one call): GELU with the
 * row multiplier folded into its half (5 operations and the tanh an
 * output against 8): 0.3008 / 0.3007 ms against 0.3020 / 0.3019, so the
 * epilogue's arithmetic does not bound it; the consumers let apart
 * between tiles (each thread reading its columns' scales and bias from
 * L1 instead of a copy both stage between two barriers, and the second
 * consumer started a stage behind, so one's epilogue could run beside
 * the other's products): slower at every shape (QKV 0.227 against 0.220,
 * the E4M3 GELU product 0.308 against 0.301, the out projection 0.081
 * against 0.077; the Large step 65.52 / 65.68 against 65.29 / 65.36 ms):
 * a consumer ahead holds stages the producer would refill.
 *
 * The invariant that is not obvious: a stage is refilled only after every
 * consumer warp has waited for the products that read it (the empty
 * barrier counts 8 arrivals, one a consumer warp).
 *
 * Only sm_90a runs it; other targets compile an empty kernel and
 * sd_cuda_g8_ok() says no.
 */

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <cuda.h>
#include <cudaTypedefs.h>

#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include "cuda.h"
#include "sm90.h"


#define G8_BK       128                 /* bytes of K a stage */
#define G8_THREADS  384
#define G8_EBUF     (64 * 128)          /* an output chunk: 64 x 64 BF16 */
#define G8_ST       4                   /* stages */
#define G8_QM       1.03125f            /* the E4M3 output's bound's
                                           margin: 1 + 2^-5 covers the
                                           sums' and tanh's rounding */

/*
 * A tile is BM x BN: each consumer warpgroup owns BM / 2 rows, BM / 128
 * m64 products a k32 step. Four stages of BM + BN rows of 128 bytes and
 * two 64 x 64 BF16 output chunks a consumer fit in 227 KiB when BM + BN
 * is 384 (no room to align: the dynamic shared memory must start
 * 1024-byte aligned, which sd_cuda_g8_ok checks).
 */
template <int BM, int BN>
struct g8_smem {
    uint8_t   a[G8_ST][BM * G8_BK];
    uint8_t   b[G8_ST][BN * G8_BK];
    uint8_t   e[2][2][G8_EBUF];         /* a consumer's output chunks */
    float     cs[BN];                   /* the tile's column scales */
    float     cb[BN];                   /* and bias */
    float     nw[2][64];                /* the QKV split's norm weights */
    uint64_t  full[G8_ST];
    uint64_t  empty[G8_ST];
};

#define G8_SMEM_BYTES(bm, bn)  sizeof(g8_smem<bm, bn>)


#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

/* a (128 bytes of K, rows) box of a 2-D (K, rows) map at (k, row) */
static __device__ __forceinline__ void
g8_tma_load(void *dst, const CUtensorMap *map, int k, int row,
    uint64_t *bar)
{
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global"
                 ".mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];"
                 :: "r"(sm90_smem_addr(dst)), "l"((uint64_t) map), "r"(k),
                    "r"(row), "r"(sm90_smem_addr(bar))
                 : "memory");
}


/*
 * A wgmma shared-memory descriptor for a K-major operand of 128-byte rows
 * in the 128-byte swizzle: 8-row groups 1024 bytes apart (the leading
 * offset is unused by a swizzled K-major operand). Each k32 step of a
 * stage starts 32 bytes further: 2 in the address field.
 */
static __device__ __forceinline__ uint64_t
g8_desc(const void *p)
{
    uint64_t  d;

    d = (uint64_t) ((sm90_smem_addr(p) & 0x3ffff) >> 4);
    d |= (uint64_t) 1 << 16;
    d |= (uint64_t) (1024 >> 4) << 32;
    d |= (uint64_t) 1 << 62;
    return d;
}


/* D (64 x n, F32 registers) += A (64 x 32) B (n x 32)^T, both E4M3 in
   shared memory; acc 0: D = A B^T */
static __device__ __forceinline__ void
g8_wgmma_n128(float *d, uint64_t da, uint64_t db, int acc)
{
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k32.f32.e4m3.e4m3 "
        SM90_REGS64 ", %64, %65, p, 1, 1;\n}\n"
        : SM90_ACC64(d)
        : "l"(da), "l"(db), "r"(acc));
}


static __device__ __forceinline__ void
g8_wgmma_n256(float *d, uint64_t da, uint64_t db, int acc)
{
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n256k32.f32.e4m3.e4m3 "
        SM90_REGS128 ", %128, %129, p, 1, 1;\n}\n"
        : SM90_ACC128(d)
        : "l"(da), "l"(db), "r"(acc));
}


template <int BN>
static __device__ __forceinline__ void
g8_mma(float *d, uint64_t da, uint64_t db, int acc)
{
    if constexpr (BN == 256) {
        g8_wgmma_n256(d, da, db, acc);
    } else {
        g8_wgmma_n128(d, da, db, acc);
    }
}


#if defined(G8_TANH16)
/*
 * -DG8_TANH16 (a variant gemm8_check measures, not built by default; not
 * yet run on the GPU): GELU of a pair with one tanh.approx.f16x2, half
 * the MUFU operations of two tanh.approx.f32 (16 a clock an SM: at a
 * 128 x 256 tile's 32,768 outputs about 2,000 clocks of the epilogue,
 * which folding GELU's other arithmetic did not shorten). The tanh's
 * argument rounded to F16 and its result to F16's step near 1 (2^-11):
 * about the error tanh.approx.f32 has already (2^-10.99), far under the
 * E4M3 output's.
 */
static __device__ __forceinline__ void
g8_gelu2(float *x0, float *x1)
{
    float     u0 = 0.7978845608f * (*x0 + 0.044715f * *x0 * *x0 * *x0);
    float     u1 = 0.7978845608f * (*x1 + 0.044715f * *x1 * *x1 * *x1);
    __half2   h = __floats2half2_rn(u0, u1), t;
    uint32_t  hi = *(uint32_t *) &h, to;
    float2    tf;

    asm("tanh.approx.f16x2 %0, %1;" : "=r"(to) : "r"(hi));
    t = *(__half2 *) &to;
    tf = __half22float2(t);
    *x0 = 0.5f * *x0 * (1.f + tf.x);
    *x1 = 0.5f * *x1 * (1.f + tf.y);
}
#else
/* SD3's feed-forward activation, the tanh form (cuBLASLt's GELU) */
static __device__ __forceinline__ float
g8_gelu(float x)
{
    float  u = 0.7978845608f * (x + 0.044715f * x * x * x), th;

    asm("tanh.approx.f32 %0, %1;" : "=f"(th) : "f"(u));
    return 0.5f * x * (1.f + th);
}
#endif


/* a thread's four outputs of an accumulator's column pair: rows r and
   r + 8 (a[0..1], a[2..3]) with their scales s0, s1, the columns' scales
   sc and bias bi, GELU'd when gelu */
static __device__ __forceinline__ void
g8_out4(float *v, const float *a, float s0, float s1, float2 sc, float2 bi,
    int gelu)
{
    v[0] = a[0] * s0 * sc.x + bi.x;
    v[1] = a[1] * s0 * sc.y + bi.y;
    v[2] = a[2] * s1 * sc.x + bi.x;
    v[3] = a[3] * s1 * sc.y + bi.y;
    if (gelu) {
#if defined(G8_TANH16)
        g8_gelu2(&v[0], &v[1]);
        g8_gelu2(&v[2], &v[3]);
#else
        v[0] = g8_gelu(v[0]);
        v[1] = g8_gelu(v[1]);
        v[2] = g8_gelu(v[2]);
        v[3] = g8_gelu(v[3]);
#endif
    }
}


/* g8_out4 times the rows' E4M3 multipliers q0, q1 (the E4M3 epilogue) */
static __device__ __forceinline__ void
g8_out4_q(float *v, const float *a, float s0, float s1, float2 sc,
    float2 bi, int gelu, float q0, float q1)
{
    g8_out4(v, a, s0, s1, sc, bi, gelu);
    v[0] *= q0;
    v[1] *= q0;
    v[2] *= q1;
    v[3] *= q1;
}


static __device__ __forceinline__ uint32_t
g8_pack_bf16(float lo, float hi)
{
    __nv_bfloat162  v = __floats2bfloat162_rn(lo, hi);

    return *(uint32_t *) &v;
}

/*
 * The QKV split of one 64 x 64 chunk of the product's output (one head
 * of q, k or v): a[4 kk + 2 rr + e] is row gr0 + rl0 + 8 rr, column
 * hcol + 8 kk + 2 (lane % 4) + e before the scales (acc sa[row] sb[col]
 * + bias[col], rounded to BF16 as the product's output would be). q, k:
 * RMS-normalized per row, E4M3 into a 64 x 64-byte buffer (16-byte unit
 * u of row r at u ^ ((r / 2) % 4)), v: BF16 into 64 x 128 bytes
 * (u ^ (r % 8)); both conflict-free. Then, after the warpgroup's
 * barrier, read back as 16-byte row pieces and stored at their rows of
 * the sequence (a buffer is written again two chunks on, after the
 * barrier of the chunk between: every thread is done reading it).
 */
static __device__ __forceinline__ void
g8_qkv_chunk(const sd_cuda_g8_split &p, const float *cs, const float *cb,
    const float (*nw)[64], const float *a, float sa0, float sa1,
    uint32_t buf, int gr0, int m, int hcol, int t, int cw)
{
    int    lane = t % 32, qd = lane % 4, rl0 = (t / 32) * 16 + lane / 4;
    int    part = hcol / p.w, hc = hcol - part * p.w, kk, rr, i;
    float  x[32];

    #pragma unroll
    for (kk = 0; kk < 8; kk++) {
        int     cl = 8 * kk + 2 * qd;
        float2  sc = *(const float2 *) &cs[cl];
        float2  bi = *(const float2 *) &cb[cl];

        #pragma unroll
        for (rr = 0; rr < 2; rr++) {
            float  sr = rr ? sa1 : sa0;

            x[4 * kk + 2 * rr] = __bfloat162float(__float2bfloat16_rn(
                a[4 * kk + 2 * rr] * sr * sc.x + bi.x));
            x[4 * kk + 2 * rr + 1] = __bfloat162float(__float2bfloat16_rn(
                a[4 * kk + 2 * rr + 1] * sr * sc.y + bi.y));
        }
    }
    if (part < 2) {
        const float  *wv = nw[part];
        float         r = 1.f / (part == 0 ? p.sq : p.sk);

        #pragma unroll
        for (rr = 0; rr < 2; rr++) {
            int    row = rl0 + 8 * rr;
            float  ss = 0.f, inv;

            #pragma unroll
            for (kk = 0; kk < 8; kk++) {
                ss += x[4 * kk + 2 * rr] * x[4 * kk + 2 * rr];
                ss += x[4 * kk + 2 * rr + 1] * x[4 * kk + 2 * rr + 1];
            }
            ss += __shfl_xor_sync(0xffffffffu, ss, 1);
            ss += __shfl_xor_sync(0xffffffffu, ss, 2);
            inv = rsqrtf(ss / 64.f + p.eps);
            #pragma unroll
            for (kk = 0; kk < 8; kk++) {
                int       cl = 8 * kk + 2 * qd;
                uint32_t  o = buf + row * 64
                              + (((kk / 2) ^ ((row / 2) & 3)) << 4)
                              + (kk & 1) * 8 + 2 * qd;
                uint16_t  v2 = (uint16_t) __nv_cvt_float2_to_fp8x2(
                    make_float2(x[4 * kk + 2 * rr] * (inv * wv[cl] * r),
                                x[4 * kk + 2 * rr + 1]
                                * (inv * wv[cl + 1] * r)),
                    __NV_SATFINITE, __NV_E4M3);

                asm volatile("st.shared.b16 [%0], %1;" :: "r"(o), "h"(v2));
            }
        }
        asm volatile("bar.sync %0, 128;" :: "r"(2 + cw) : "memory");
        #pragma unroll
        for (i = 0; i < 2; i++) {
            int    row = t / 4 + 32 * i, u = t % 4, gr = gr0 + row;
            uint4  val;

            asm volatile("ld.shared.v4.b32 {%0, %1, %2, %3}, [%4];"
                         : "=r"(val.x), "=r"(val.y), "=r"(val.z),
                           "=r"(val.w)
                         : "r"(buf + row * 64 + ((u ^ ((row / 2) & 3)) << 4))
                         : "memory");
            if (gr < m) {
                int      bi = gr / p.n;
                int64_t  drow = (int64_t) bi * p.l + p.r0 + gr - bi * p.n;

                *(uint4 *) ((part == 0 ? p.q8 : p.k8) + drow * p.w + hc
                            + 16 * u) = val;
                if (hc == 0 && u == 0) {
                    (part == 0 ? p.qs : p.ks)[drow] =
                        part == 0 ? p.sq : p.sk;
                }
            }
        }
        return;
    }
    {
        /* v: the chunk's largest |v| (rows past m count 0), one atomic
           a warp when its 16 rows are of one batch, else one a row */
        float  am[2] = { 0.f, 0.f };
        int    g0 = gr0 + rl0 - lane / 4, b0 = g0 / p.n;
        int    one = (g0 + 15) / p.n == b0;

        #pragma unroll
        for (rr = 0; rr < 2; rr++) {
            int  row = rl0 + 8 * rr;

            #pragma unroll
            for (kk = 0; kk < 8; kk++) {
                uint32_t  o = buf + row * 128 + ((kk ^ (row & 7)) << 4)
                              + 4 * qd;

                am[rr] = fmaxf(am[rr], fmaxf(fabsf(x[4 * kk + 2 * rr]),
                                             fabsf(x[4 * kk + 2 * rr + 1])));
                asm volatile("st.shared.b32 [%0], %1;"
                             :: "r"(o), "r"(g8_pack_bf16(
                                 x[4 * kk + 2 * rr],
                                 x[4 * kk + 2 * rr + 1])));
            }
            am[rr] = gr0 + row < m ? am[rr] : 0.f;
            am[rr] = fmaxf(am[rr], __shfl_xor_sync(0xffffffffu, am[rr], 1));
            am[rr] = fmaxf(am[rr], __shfl_xor_sync(0xffffffffu, am[rr], 2));
        }
        if (one) {
            float  wm = fmaxf(am[0], am[1]);

            for (i = 4; i < 32; i *= 2) {
                wm = fmaxf(wm, __shfl_xor_sync(0xffffffffu, wm, i));
            }
            if (lane == 0 && wm > 0.f) {
                atomicMax((unsigned *) &p.vamax[b0 * p.heads + hc / 64],
                          __float_as_uint(wm));
            }
        } else if (qd == 0) {
            for (rr = 0; rr < 2; rr++) {
                int  gr = gr0 + rl0 + 8 * rr;

                if (gr < m && am[rr] > 0.f) {
                    atomicMax((unsigned *) &p.vamax[(gr / p.n) * p.heads
                                                    + hc / 64],
                              __float_as_uint(am[rr]));
                }
            }
        }
    }
    asm volatile("bar.sync %0, 128;" :: "r"(2 + cw) : "memory");
    #pragma unroll
    for (i = 0; i < 4; i++) {
        int    row = t / 8 + 16 * i, u = t % 8, gr = gr0 + row;
        uint4  val;

        asm volatile("ld.shared.v4.b32 {%0, %1, %2, %3}, [%4];"
                     : "=r"(val.x), "=r"(val.y), "=r"(val.z), "=r"(val.w)
                     : "r"(buf + row * 128 + ((u ^ (row & 7)) << 4))
                     : "memory");
        if (gr < m) {
            int      bi = gr / p.n;
            int64_t  drow = (int64_t) bi * p.l + p.r0 + gr - bi * p.n;

            *(uint4 *) (p.v + drow * p.w + hc + 8 * u) = val;
        }
    }
}


/* An output chunk's buffer may be written: the TMA store that read it
   last is done (the consumer's thread 0 waits, its warpgroup with it) */
static __device__ __forceinline__ void
g8_chunk_begin(int t, int cw)
{
    if (t == 0) {
        asm volatile("cp.async.bulk.wait_group.read 1;" ::: "memory");
    }
    asm volatile("bar.sync %0, 128;" :: "r"(2 + cw) : "memory");
}


/* The chunk in buf, written by the warpgroup's threads, stored by TMA
   through the map td at (column x, row y) */
static __device__ __forceinline__ void
g8_chunk_store(int t, int cw, const CUtensorMap *td, int x, int y,
    uint32_t buf)
{
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    asm volatile("bar.sync %0, 128;" :: "r"(2 + cw) : "memory");
    if (t == 0) {
        asm volatile(
            "cp.async.bulk.tensor.2d.global.shared::cta"
            ".bulk_group [%0, {%1, %2}], [%3];\n"
            "cp.async.bulk.commit_group;"
            :: "l"((uint64_t) td), "r"(x), "r"(y), "r"(buf)
            : "memory");
    }
}


/*
 * The tile's output as E4M3 rows (sd_cuda_g8_q): a warpgroup's BM / 2 x BN
 * in 64 x 128-byte chunks (the BF16 chunks' bytes), each row divided by
 * its bound's share of 448 (ys, written by the tiles of the first
 * columns), the codes two bytes a store into the 128-byte swizzle (unit
 * u of row r at u ^ (r % 8)), stored by TMA in turn through the
 * consumer's two buffers. ec counts the consumer's chunks so far.
 */
template <int MI, int BN>
static __device__ __forceinline__ void
g8_out_e4m3(float (*acc)[BN / 2], const float *cs, const float *cb,
    const float *sa0, const float *sa1, const float *rn0, const float *rn1,
    float qw, float qb, float *ys, int gelu, uint32_t eb, int ec,
    const CUtensorMap *td, int m, int n0, int mw, int t, int cw)
{
    int  lane = t % 32, rl0 = (t / 32) * 16 + lane / 4;
    int  mi, c, kk;

    #pragma unroll
    for (mi = 0; mi < MI; mi++) {
        float  b0 = (rn0[mi] * qw + qb) * G8_QM;
        float  b1 = (rn1[mi] * qw + qb) * G8_QM;
        float  q0 = b0 > 0.f ? 448.f / b0 : 1.f;
        float  q1 = b1 > 0.f ? 448.f / b1 : 1.f;
        int    r0 = mw + 64 * mi + rl0;

        if (n0 == 0 && lane % 4 == 0) {
            if (r0 < m) {
                ys[r0] = b0 > 0.f ? b0 / 448.f : 1.f;
            }
            if (r0 + 8 < m) {
                ys[r0 + 8] = b1 > 0.f ? b1 / 448.f : 1.f;
            }
        }
        #pragma unroll
        for (c = 0; c < BN / 128; c++, ec++) {
            uint32_t  buf = eb + (ec & 1) * G8_EBUF;

            g8_chunk_begin(t, cw);
            #pragma unroll
            for (kk = 0; kk < 16; kk++) {
                int       jj = 16 * c + kk;
                int       cl = 8 * jj + 2 * (lane % 4);
                float     v[4];
                uint32_t  o0, o1;

                g8_out4_q(v, acc[mi] + 4 * jj, sa0[mi], sa1[mi],
                          *(const float2 *) &cs[cl],
                          *(const float2 *) &cb[cl], gelu, q0, q1);
                o0 = buf + rl0 * 128 + (((kk >> 1) ^ (rl0 & 7)) << 4)
                     + (kk & 1) * 8 + 2 * (lane % 4);
                o1 = o0 + 8 * 128;      /* row + 8: the same swizzle */
                asm volatile("st.shared.b16 [%0], %1;"
                             :: "r"(o0), "h"((uint16_t)
                                 __nv_cvt_float2_to_fp8x2(
                                     make_float2(v[0], v[1]),
                                     __NV_SATFINITE, __NV_E4M3)));
                asm volatile("st.shared.b16 [%0], %1;"
                             :: "r"(o1), "h"((uint16_t)
                                 __nv_cvt_float2_to_fp8x2(
                                     make_float2(v[2], v[3]),
                                     __NV_SATFINITE, __NV_E4M3)));
            }
            g8_chunk_store(t, cw, td, n0 + 128 * c, mw + 64 * mi, buf);
        }
    }
}

#endif /* __CUDA_ARCH_FEAT_SM90_ALL */


/*
 * The epilogues, a template argument of the kernel: BF16 out, E4M3 rows
 * (sd_cuda_g8_q), the QKV split (sd_cuda_g8_split), the first two GELU'd
 * or not (G8_E_GELU). One kernel a kind, not one with run-time branches
 * around every kind's code: that kernel held 8,192 instructions, and at
 * the QKV shape its consumers spent a fifth of their time in the
 * epilogue, a third of it waiting for instructions to be fetched (ncu's
 * stall samples, session 17).
 */
#define G8_E_BF16   0
#define G8_E_GELU   1
#define G8_E_Q8     2
#define G8_E_SPLIT  4

/*
 * grid: min(tiles, SMs) blocks of G8_THREADS; d = acc sa[row] sb[col]
 * (+ bias[col]) (GELU) as BF16 through the map td, or as E4M3 rows
 * (q8o), or the QKV split (qkv: g8_qkv_chunk), as EPI says. A thread of
 * consumer
 * warp w holds, of each 64 x BN accumulator of its warpgroup, rows
 * 16 w + lane / 4 and 8 more, columns 8 j + 2 (lane % 4) and the next:
 * acc[mi][4 j ...].
 */
template <int BM, int BN, int EPI>
__global__ void __launch_bounds__(G8_THREADS, 1)
g8_kernel(const __grid_constant__ CUtensorMap ta,
    const __grid_constant__ CUtensorMap tb,
    const __grid_constant__ CUtensorMap td, int m, int n, int k,
    const float *sa, const float *sb, const __nv_bfloat16 *bias,
    const sd_cuda_g8_q q8o, const sd_cuda_g8_split qkv)
{
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    const int         MI = BM / 128;    /* m64 products a warpgroup */
    constexpr int     gelu = EPI & G8_E_GELU;
    constexpr bool    q8 = (EPI & G8_E_Q8) != 0;
    constexpr bool    split = EPI == G8_E_SPLIT;
    extern __shared__ __align__(1024) unsigned char  g8_raw[];
    g8_smem<BM, BN>  *sm = (g8_smem<BM, BN> *) g8_raw;
    int               wg = threadIdx.x / 128, t = threadIdx.x % 128;
    int               mt = (m + BM - 1) / BM, nt = (n + BN - 1) / BN;
    int               tiles = mt * nt, nk = (k + G8_BK - 1) / G8_BK;
    int               tile, kb, s, it = 0;

    if (threadIdx.x == 0) {
        for (s = 0; s < G8_ST; s++) {
            sm90_mbar_init(&sm->full[s], 1);
            sm90_mbar_init(&sm->empty[s], 8);
        }
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();

    if (wg == 0) {
        asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n");
        if (t == 0) {
            for (tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
                int  m0 = (tile % mt) * BM, n0 = (tile / mt) * BN;

                for (kb = 0; kb < nk; kb++, it++) {
                    s = it % G8_ST;
                    if (it >= G8_ST) {
                        sm90_mbar_wait(&sm->empty[s], (it / G8_ST - 1) & 1);
                    }
                    sm90_mbar_expect(&sm->full[s], (BM + BN) * G8_BK);
                    g8_tma_load(sm->a[s], &ta, kb * G8_BK, m0, &sm->full[s]);
                    g8_tma_load(sm->b[s], &tb, kb * G8_BK, n0, &sm->full[s]);
                }
            }
        }
        return;
    }

    asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n");

    {
        int       cw = wg - 1, w = t / 32, lane = t % 32, j, kk, mi, ec = 0;
        int       rl0 = w * 16 + lane / 4;  /* the thread's first row */
        float     acc[MI][BN / 2];
        float     qw = 0.f, qb = 0.f;       /* E4M3 output: the largest
                                               norm of B's rows, |bias| */
        uint32_t  eb = sm90_smem_addr(sm->e[cw][0]);

        if (q8) {
            /* the bias's largest magnitude, by both consumers while the
               first stages load (cb, free until the first epilogue) */
            int    i = threadIdx.x - 128;
            float  v = 0.f;

            qw = *q8o.wn;
            for (; bias && i < n; i += 256) {
                v = fmaxf(v, fabsf(__bfloat162float(bias[i])));
            }
            for (i = 16; i; i >>= 1) {
                v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, i));
            }
            if (lane == 0) {
                sm->cb[(threadIdx.x - 128) / 32] = v;
            }
            asm volatile("bar.sync 1, 256;" ::: "memory");
            for (i = 0; i < 8; i++) {
                qb = fmaxf(qb, sm->cb[i]);
            }
            asm volatile("bar.sync 1, 256;" ::: "memory");
        }

        if (split && threadIdx.x < 256) {
            /* visible to both consumers after the first tile's
               products (bar.sync 1 below) */
            int  i = threadIdx.x - 128;

            sm->nw[i / 64][i % 64] = __bfloat162float(
                (i < 64 ? qkv.nq : qkv.nk)[i % 64]);
        }

        for (mi = 0; mi < MI; mi++) {
            for (j = 0; j < BN / 2; j++) {
                acc[mi][j] = 0.f;
            }
        }
        for (tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
            int    m0 = (tile % mt) * BM, n0 = (tile / mt) * BN;
            int    mw = m0 + cw * (BM / 2);     /* the warpgroup's rows */
            float  sa0[MI], sa1[MI], rn0[MI], rn1[MI], csv = 0.f, cbv = 0.f;
            int    cj = threadIdx.x - 128;

            /* the tile's row and column scales and bias, loaded now and
               used after the products (which hide the loads) */
            if (cj < BN && n0 + cj < n) {
                csv = sb[n0 + cj];
                cbv = bias ? __bfloat162float(bias[n0 + cj]) : 0.f;
            }
            for (mi = 0; mi < MI; mi++) {
                int  r0 = mw + 64 * mi + rl0, r1 = r0 + 8;

                sa0[mi] = r0 < m ? sa[r0] : 0.f;
                sa1[mi] = r1 < m ? sa[r1] : 0.f;
                rn0[mi] = q8 && r0 < m ? q8o.rn[r0] : 0.f;
                rn1[mi] = q8 && r1 < m ? q8o.rn[r1] : 0.f;
            }

            for (kb = 0; kb < nk; kb++, it++) {
                uint64_t  da, db;

                s = it % G8_ST;
                sm90_mbar_wait(&sm->full[s], (it / G8_ST) & 1);
                da = g8_desc(sm->a[s] + cw * (BM / 2) * G8_BK);
                db = g8_desc(sm->b[s]);
                sm90_wgmma_fence();
                #pragma unroll
                for (kk = 0; kk < G8_BK / 32; kk++) {
                    #pragma unroll
                    for (mi = 0; mi < MI; mi++) {
                        /* 64 rows of 128 bytes: 8192 bytes, 512 units */
                        g8_mma<BN>(acc[mi], da + 512 * mi + 2 * kk,
                                   db + 2 * kk, kb > 0 || kk > 0);
                    }
                }
                sm90_wgmma_commit();
                if (kb > 0) {
                    /* the previous stage's products are done: free it */
                    sm90_wgmma_wait<1>();
                    if (lane == 0) {
                        sm90_mbar_arrive(&sm->empty[(it - 1) % G8_ST]);
                    }
                }
            }
            sm90_wgmma_wait<0>();
            if (lane == 0) {
                sm90_mbar_arrive(&sm->empty[(it - 1) % G8_ST]);
            }
            /* both consumers are past the last tile's epilogue */
            asm volatile("bar.sync 1, 256;" ::: "memory");
            if (cj < BN) {
                sm->cs[cj] = csv;
                sm->cb[cj] = cbv;
            }
            asm volatile("bar.sync 1, 256;" ::: "memory");

            if constexpr (q8) {
                g8_out_e4m3<MI, BN>(acc, sm->cs, sm->cb, sa0, sa1, rn0,
                                    rn1, qw, qb, q8o.ys, gelu, eb, ec, &td,
                                    m, n0, mw, t, cw);
                ec += MI * (BN / 128);
            } else {
                /* the output through shared memory, a 64 x 64 chunk at a time
                   in two buffers, each in the 128-byte swizzle (16-byte unit
                   u of row r at u ^ (r % 8): a warp's 32 words land in 32
                   banks) and stored by TMA */
                #pragma unroll
                for (mi = 0; mi < MI; mi++) {
                    #pragma unroll
                    for (int c = 0; c < BN / 64; c++, ec++) {
                        uint32_t  buf = eb + (ec & 1) * G8_EBUF;

                        if constexpr (split) {
                            /* never with TMA stores: one barrier a chunk
                               keeps the buffers apart (g8_qkv_chunk) */
                            g8_qkv_chunk(qkv, sm->cs + 64 * c, sm->cb + 64 * c,
                                         sm->nw, acc[mi] + 32 * c, sa0[mi],
                                         sa1[mi], buf, mw + 64 * mi, m,
                                         n0 + 64 * c, t, cw);
                            continue;
                        }
                        g8_chunk_begin(t, cw);
                        #pragma unroll
                        for (kk = 0; kk < 8; kk++) {
                            int       jj = 8 * c + kk;
                            int       cl = 8 * jj + 2 * (lane % 4);
                            float     v[4];
                            uint32_t  o0, o1;

                            g8_out4(v, acc[mi] + 4 * jj, sa0[mi], sa1[mi],
                                    *(const float2 *) &sm->cs[cl],
                                    *(const float2 *) &sm->cb[cl], gelu);
                            o0 = buf + rl0 * 128 + ((kk ^ (rl0 & 7)) << 4)
                                 + 4 * (lane % 4);
                            o1 = o0 + 8 * 128;  /* row + 8: the same swizzle */
                            asm volatile("st.shared.b32 [%0], %1;"
                                         :: "r"(o0),
                                            "r"(g8_pack_bf16(v[0], v[1])));
                            asm volatile("st.shared.b32 [%0], %1;"
                                         :: "r"(o1),
                                            "r"(g8_pack_bf16(v[2], v[3])));
                        }
                        g8_chunk_store(t, cw, &td, n0 + 64 * c, mw + 64 * mi,
                                       buf);
                    }
                }
            }
        }
        if (t == 0) {
            asm volatile("cp.async.bulk.wait_group 0;" ::: "memory");
        }
    }
#endif
}


/* every epilogue's kernel of a tile shape may take its shared memory */
template <int BM, int BN>
static cudaError_t
g8_smem_attr(void)
{
    static const void  *f[] = {
        (const void *) g8_kernel<BM, BN, G8_E_BF16>,
        (const void *) g8_kernel<BM, BN, G8_E_BF16 | G8_E_GELU>,
        (const void *) g8_kernel<BM, BN, G8_E_Q8>,
        (const void *) g8_kernel<BM, BN, G8_E_Q8 | G8_E_GELU>,
        (const void *) g8_kernel<BM, BN, G8_E_SPLIT>,
    };
    size_t              i;
    cudaError_t         e = cudaSuccess;

    for (i = 0; i < sizeof(f) / sizeof(f[0]) && e == cudaSuccess; i++) {
        e = cudaFuncSetAttribute(f[i],
                                 cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 (int) G8_SMEM_BYTES(BM, BN));
    }
    return e;
}


/* the low bits of the dynamic shared memory's address (the kernel's
   swizzled buffers need 0 mod 1024) */
__global__ void
g8_probe_kernel(int *out)
{
    extern __shared__ __align__(1024) unsigned char  g8_praw[];

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    *out = (int) (__cvta_generic_to_shared(g8_praw) & 1023);
#else
    *out = -1;
#endif
}


static int  g8_sms;                     /* sd_cuda_g8_ok's card's */


/* rows x k E4M3 (row stride ld bytes) as (K, rows), boxes of 128 x box */
static int
g8_map(CUtensorMap *mp, const void *p, int64_t rows, int64_t k, int64_t ld,
    int box)
{
    cuuint64_t  dims[2] = { (cuuint64_t) k, (cuuint64_t) rows };
    cuuint64_t  strides[1] = { (cuuint64_t) ld };
    cuuint32_t  bx[2] = { G8_BK, (cuuint32_t) box };

    return sm90_map(mp, CU_TENSOR_MAP_DATA_TYPE_UINT8, 2, p, dims, strides,
                    bx, CU_TENSOR_MAP_SWIZZLE_128B);
}


/*
 * Whether the kernel runs on this device: sm_90 with the sm_90a code
 * loaded, a driver with TMA, dynamic shared memory 1024-byte aligned.
 * Synchronizes: call it at start-up.
 */
int
sd_cuda_g8_ok(int device)
{
    cudaDeviceProp  p;
    int            *dv, hv = -1;
    const int       big = (int) G8_SMEM_BYTES(256, 128);

    if (cudaGetDeviceProperties(&p, device) != cudaSuccess || p.major != 9
        || sm90_tensor_map_encode() == NULL
        || cudaFuncSetAttribute(g8_probe_kernel,
                                cudaFuncAttributeMaxDynamicSharedMemorySize,
                                big) != cudaSuccess)
    {
        (void) cudaGetLastError();
        return 0;
    }
    if (cudaMalloc((void **) &dv, sizeof(int)) != cudaSuccess) {
        (void) cudaGetLastError();
        return 0;
    }
    g8_probe_kernel<<<1, 1, big>>>(dv);
    if (cudaMemcpy(&hv, dv, sizeof(int), cudaMemcpyDeviceToHost)
        != cudaSuccess)
    {
        hv = -1;
    }
    cudaFree(dv);
    (void) cudaGetLastError();
    g8_sms = p.multiProcessorCount;
    /* the kernels' shared memory, set once here (not while a stream is
       being captured into a graph) */
    if (hv != 0 || g8_smem_attr<128, 256>() != cudaSuccess
        || g8_smem_attr<256, 128>() != cudaSuccess)
    {
        (void) cudaGetLastError();
        return 0;
    }
    return 1;
}


template <int BM, int BN>
static cudaError_t
g8_launch(const void *a, int64_t lda, const void *b, int64_t ldb,
    const CUtensorMap *td, int m, int n, int k, const float *sa,
    const float *sb, const void *bias, int gelu, const sd_cuda_g8_q *q,
    const sd_cuda_g8_split *qkv, int sms, cudaStream_t st)
{
    CUtensorMap           ta, tb;
    int                   tiles = ((m + BM - 1) / BM) * ((n + BN - 1) / BN);
    unsigned              grid;
    size_t                smem = G8_SMEM_BYTES(BM, BN);
    const __nv_bfloat16  *bi = (const __nv_bfloat16 *) bias;
    int                   epi = qkv->w ? G8_E_SPLIT
                                : (q->ys ? G8_E_Q8 : G8_E_BF16)
                                  | (gelu ? G8_E_GELU : 0);

    if ((qkv->w && (gelu || q->ys)) || !g8_map(&ta, a, m, k, lda, BM)
        || !g8_map(&tb, b, n, k, ldb, BN))
    {
        return cudaErrorInvalidValue;
    }
    if (sms <= 0 || sms > g8_sms) {
        sms = g8_sms;                   /* 0: every SM */
    }
    grid = (unsigned) (tiles < sms ? tiles : sms);
#define G8_GO(e)                                                            \
    g8_kernel<BM, BN, e><<<grid, G8_THREADS, smem, st>>>(                  \
        ta, tb, *td, m, n, k, sa, sb, bi, *q, *qkv)
    switch (epi) {
    case G8_E_BF16:
        G8_GO(G8_E_BF16);
        break;
    case G8_E_BF16 | G8_E_GELU:
        G8_GO(G8_E_BF16 | G8_E_GELU);
        break;
    case G8_E_Q8:
        G8_GO(G8_E_Q8);
        break;
    case G8_E_Q8 | G8_E_GELU:
        G8_GO(G8_E_Q8 | G8_E_GELU);
        break;
    default:
        G8_GO(G8_E_SPLIT);
        break;
    }
#undef G8_GO
    return cudaGetLastError();
}


/*
 * d (m x n BF16, row stride ldd elements) = (a (m x k E4M3, row stride
 * lda bytes) b (n x k E4M3, ldb)^T) sa[row] sb[col] + bias[col] (BF16,
 * NULL: none), GELU'd when gelu; tile: BM * 1000 + BN (128256, 256128);
 * sms: blocks at most (0: every SM). k, lda, ldb multiples of 16, n and
 * ldd of 8, a, b and d 16-byte aligned; sd_cuda_g8_ok() must have said
 * yes.
 */
cudaError_t
sd_cuda_g8_gemm(void *d, int64_t ldd, const void *a, int64_t lda,
    const void *b, int64_t ldb, int m, int n, int k, const float *sa,
    const float *sb, const void *bias, int gelu, int tile, int sms,
    cudaStream_t st)
{
    CUtensorMap       td;
    sd_cuda_g8_split  none;
    sd_cuda_g8_q      bf;
    cuuint64_t        dims[2] = { (cuuint64_t) n, (cuuint64_t) m };
    cuuint64_t        strides[1] = { (cuuint64_t) ldd * 2 };
    cuuint32_t        bx[2] = { 64, 64 };

    if (m <= 0 || n <= 0 || k <= 0 || k % 16 != 0 || lda % 16 != 0
        || ldb % 16 != 0 || n % 8 != 0 || ldd % 8 != 0
        || (((uintptr_t) a | (uintptr_t) b | (uintptr_t) d) & 15) != 0
        || sa == NULL || sb == NULL
        || !sm90_map(&td, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, d, dims,
                     strides, bx, CU_TENSOR_MAP_SWIZZLE_128B))
    {
        return cudaErrorInvalidValue;
    }
    memset(&none, 0, sizeof(none));
    memset(&bf, 0, sizeof(bf));
    switch (tile) {
    case 128256:
        return g8_launch<128, 256>(a, lda, b, ldb, &td, m, n, k, sa, sb,
                                   bias, gelu, &bf, &none, sms, st);
    case 256128:
        return g8_launch<256, 128>(a, lda, b, ldb, &td, m, n, k, sa, sb,
                                   bias, gelu, &bf, &none, sms, st);
    default:
        return cudaErrorInvalidValue;
    }
}


/*
 * sd_cuda_g8_gemm's product written as E4M3 rows (sd_cuda_g8_q): d (m x n
 * bytes, row stride ldd) and q->ys (m); n and ldd multiples of 16.
 */
cudaError_t
sd_cuda_g8_gemm8(void *d, int64_t ldd, const void *a, int64_t lda,
    const void *b, int64_t ldb, int m, int n, int k, const float *sa,
    const float *sb, const void *bias, int gelu, const sd_cuda_g8_q *q,
    int tile, int sms, cudaStream_t st)
{
    CUtensorMap       td;
    sd_cuda_g8_split  none;
    cuuint64_t        dims[2] = { (cuuint64_t) n, (cuuint64_t) m };
    cuuint64_t        strides[1] = { (cuuint64_t) ldd };
    cuuint32_t        bx[2] = { 128, 64 };

    if (m <= 0 || n <= 0 || k <= 0 || k % 16 != 0 || lda % 16 != 0
        || ldb % 16 != 0 || n % 16 != 0 || ldd % 16 != 0
        || (((uintptr_t) a | (uintptr_t) b | (uintptr_t) d) & 15) != 0
        || sa == NULL || sb == NULL || q == NULL || q->ys == NULL
        || q->rn == NULL || q->wn == NULL
        || !sm90_map(&td, CU_TENSOR_MAP_DATA_TYPE_UINT8, 2, d, dims,
                     strides, bx, CU_TENSOR_MAP_SWIZZLE_128B))
    {
        return cudaErrorInvalidValue;
    }
    memset(&none, 0, sizeof(none));
    switch (tile) {
    case 128256:
        return g8_launch<128, 256>(a, lda, b, ldb, &td, m, n, k, sa, sb,
                                   bias, gelu, q, &none, sms, st);
    case 256128:
        return g8_launch<256, 128>(a, lda, b, ldb, &td, m, n, k, sa, sb,
                                   bias, gelu, q, &none, sms, st);
    default:
        return cudaErrorInvalidValue;
    }
}


#define G8_RN  5                        /* g8_rownorm_kernel's loads a
                                           lane at once: K up to 2560 in
                                           one turn */

/* sum of squares of 16 E4M3 codes */
static __device__ __forceinline__ float
g8_ss16(uint4 u)
{
    const uint32_t  w[4] = { u.x, u.y, u.z, u.w };
    float           ss = 0.f;
    int             i, h;

    #pragma unroll
    for (i = 0; i < 4; i++) {
        #pragma unroll
        for (h = 0; h < 2; h++) {
            __half2_raw  r = __nv_cvt_fp8x2_to_halfraw2(
                (__nv_fp8x2_storage_t) (w[i] >> (16 * h)), __NV_E4M3);
            float2       f = __half22float2(*(__half2 *) &r);

            ss = fmaf(f.x, f.x, ss);
            ss = fmaf(f.y, f.y, ss);
        }
    }
    return ss;
}


/* One warp a row: rn[r] = sa[r] |a_r|_2 (E4M3 codes, k % 16 == 0) */
__global__ void
g8_rownorm_kernel(float *rn, const uint8_t *a, int64_t lda, const float *sa,
    int m, int k)
{
    int    lane = threadIdx.x % 32, i;
    int    row = blockIdx.x * 8 + threadIdx.x / 32;
    float  v = 0.f;

    if (row >= m) {
        return;
    }
    /* G8_RN loads a lane issued together, then summed (one load a turn
       of a loop waited on each: 10 us for 8192 x 2432 on the H200) */
    for (int j0 = 0; j0 < k / 16; j0 += 32 * G8_RN) {
        uint4  u[G8_RN];
        int    j;

        #pragma unroll
        for (j = 0; j < G8_RN; j++) {
            int  c = j0 + 32 * j + lane;

            u[j] = c < k / 16 ? *(const uint4 *) (a + (int64_t) row * lda
                                                  + 16 * c)
                              : make_uint4(0, 0, 0, 0);
        }
        #pragma unroll
        for (j = 0; j < G8_RN; j++) {
            v += g8_ss16(u[j]);
        }
    }
    for (i = 16; i; i >>= 1) {
        v += __shfl_xor_sync(0xffffffffu, v, i);
    }
    if (lane == 0) {
        rn[row] = sa[row] * sqrtf(v);
    }
}


/* *out = max over rows of sb[r] |b_r|_2 (out zeroed first) */
__global__ void
g8_wnorm_kernel(float *out, const uint8_t *b, const float *sb, int n, int k)
{
    int    row = blockIdx.x * 8 + threadIdx.x / 32, lane = threadIdx.x % 32;
    int    i;
    float  v = 0.f;

    if (row >= n) {
        return;
    }
    for (i = lane; i < k / 16; i += 32) {
        v += g8_ss16(*(const uint4 *) (b + (int64_t) row * k + 16 * i));
    }
    for (i = 16; i; i >>= 1) {
        v += __shfl_xor_sync(0xffffffffu, v, i);
    }
    if (lane == 0) {
        /* nonnegative floats order as their bits */
        atomicMax((unsigned *) out, __float_as_uint(sb[row] * sqrtf(v)));
    }
}


/* sd_cuda_g8_q's rn for a (m x k E4M3, stride lda) with row scales sa */
cudaError_t
sd_cuda_g8_rownorm(float *rn, const void *a, int64_t lda, const float *sa,
    int m, int k, cudaStream_t st)
{
    if (m <= 0 || k % 16 != 0 || lda % 16 != 0 || ((uintptr_t) a & 15)) {
        return cudaErrorInvalidValue;
    }
    g8_rownorm_kernel<<<(unsigned) ((m + 7) / 8), 256, 0, st>>>(
        rn, (const uint8_t *) a, lda, sa, m, k);
    return cudaGetLastError();
}


/* *out (device) = the largest L2 norm of b's rows (n x k E4M3, scales
   sb), sd_cuda_g8_q's wn */
cudaError_t
sd_cuda_g8_wnorm(float *out, const void *b, const float *sb, int n, int k,
    cudaStream_t st)
{
    cudaError_t  e;

    if (n <= 0 || k % 16 != 0 || ((uintptr_t) b & 15)) {
        return cudaErrorInvalidValue;
    }
    e = cudaMemsetAsync(out, 0, sizeof(float), st);
    if (e != cudaSuccess) {
        return e;
    }
    g8_wnorm_kernel<<<(unsigned) ((n + 7) / 8), 256, 0, st>>>(
        out, (const uint8_t *) b, sb, n, k);
    return cudaGetLastError();
}


/*
 * The QKV product with the split fused (sd_cuda_g8_split): a (m x k E4M3
 * rows) times b (3 w x k E4M3 rows) with scales sa, sb and bias, into
 * p's q8, k8, v, vamax; w % 128 == 0.
 */
cudaError_t
sd_cuda_g8_qkv(const void *a, int64_t lda, const void *b, int64_t ldb,
    int m, int k, const float *sa, const float *sb, const void *bias,
    const sd_cuda_g8_split *p, int sms, cudaStream_t st)
{
    CUtensorMap  td;

    if (m <= 0 || k <= 0 || k % 16 != 0 || lda % 16 != 0 || ldb % 16 != 0
        || p->w <= 0 || p->w % 128 != 0
        || p->n <= 0 || p->heads * 64 != p->w
        || (((uintptr_t) a | (uintptr_t) b) & 15) != 0 || sa == NULL
        || sb == NULL)
    {
        return cudaErrorInvalidValue;
    }
    memset(&td, 0, sizeof(td));         /* no TMA store in this mode */
    {
        sd_cuda_g8_q  bf;

        memset(&bf, 0, sizeof(bf));
        return g8_launch<256, 128>(a, lda, b, ldb, &td, m, 3 * p->w, k, sa,
                                   sb, bias, 0, &bf, p, sms, st);
    }
}


#if !defined(G8_STANDALONE)   /* tests/gpu/gemm8_check.cu: the kernel alone */

/*
 * Whether sd_cuda_linear_rows8 takes these: y and x E4M3 rows with their
 * scales, w an E4M3 weight of its own (not a view: its scales' last slot
 * holds the rows' largest norm, SD_CUDA_WSCALES) on the device, BF16 bias
 * or none, GELU (tanh) or no activation, K and N multiples of 16.
 */
int
sd_cuda_linear_rows8_fits(const sd_tensor *y, const sd_tensor *x,
    const sd_tensor *w, const sd_tensor *b, sd_act act)
{
    int64_t  rows = sd_numel(x) / (x->ne[x->ndim - 1] ? x->ne[x->ndim - 1]
                                                      : 1);

    return sd_cuda_of(y)->ffh8 && sd_cuda_e4m3_rows(x, rows)
           && sd_cuda_e4m3_rows(y, rows) && w->dtype == SD_DT_F8_E4M3
           && w->ndim == 2 && w->scale != NULL && w->n_scale == w->ne[0]
           && !w->view && w->mem == SD_MEM_WEIGHT
           && (b == NULL || b->dtype == SD_DT_BF16)
           && (act == SD_ACT_NONE || act == SD_ACT_GELU_TANH)
           && w->ne[1] % 16 == 0 && w->ne[0] % 16 == 0
           && x->ne[x->ndim - 1] == w->ne[1] && rows > 0
           && rows < (1 << 30) && w->ne[0] < (1 << 30)
           && (((uintptr_t) x->data | (uintptr_t) w->data
                | (uintptr_t) y->data) & 15) == 0;
}


/* w's rows' largest norm into its last scale slot, once a weight (the
   first product; synchronized unless a graph is being captured, where
   stream order alone keeps it before the product) */
static sd_status
g8_weight_norm(sd_err *err, sd_cuda *c, const sd_tensor *w)
{
    cudaError_t  e;
    int          i;

    for (i = 0; i < c->wn_n; i++) {
        if (c->wn_known[i] == w->data) {
            return SD_OK;
        }
    }
    if (c->wn_n == c->wn_cap) {
        int           cap = c->wn_cap ? 2 * c->wn_cap : 64;
        const void  **p = (const void **) realloc(c->wn_known,
                                                  (size_t) cap
                                                  * sizeof(*p));

        if (p == NULL) {
            return sd_errorf(err, SD_ERR_NOMEM, "out of host memory");
        }
        c->wn_known = p;
        c->wn_cap = cap;
    }
    e = sd_cuda_g8_wnorm(w->scale + w->ne[0], w->data, w->scale,
                         (int) w->ne[0], (int) w->ne[1], c->stream);
    if (e == cudaSuccess && !c->capturing) {
        e = cudaStreamSynchronize(c->stream);
    }
    if (e != cudaSuccess) {
        return sd_cuda_fail(err, e, "linear_rows8: weight norm", __FILE__,
                            __LINE__);
    }
    c->wn_known[c->wn_n++] = w->data;
    return SD_OK;
}


/*
 * y (rows x N E4M3 rows, scales y->scale) = act(x w^T + b) through
 * gemm8.cu with the output rows' scales bounded before the product
 * (sd_cuda_g8_q): a pass over x for its rows' norms, then the product.
 * Only where sd_cuda_linear_rows8_fits. (The norm writing the rows' norms
 * as it quantizes them, in place of the pass, measured the same: Large
 * 65.01 / 64.78 ms against 64.75 / 64.97, session 16; the norm's kernel
 * is bound by its arithmetic, which decoding the codes again adds to.)
 */
sd_status
sd_cuda_linear_rows8(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *w, const sd_tensor *b, sd_act act)
{
    sd_cuda       *c = sd_cuda_of(y);
    int64_t        K = w->ne[1], N = w->ne[0], rows = sd_numel(x) / K;
    void          *scr;
    sd_cuda_g8_q   q;
    cudaError_t    e;

    SD_TRY(g8_weight_norm(err, c, w));
    SD_TRY(sd_cuda_scratch(err, c, (size_t) rows * sizeof(float), &scr));
    if (c->measuring) {
        sd_cuda_scratch_free(c, scr);
        return SD_OK;
    }
    q.ys = y->scale;
    q.rn = (const float *) scr;
    q.wn = w->scale + N;
    e = sd_cuda_g8_rownorm((float *) scr, x->data, K, x->scale, (int) rows,
                           (int) K, c->stream);
    if (e == cudaSuccess) {
        e = sd_cuda_g8_gemm8(y->data, N, x->data, K, w->data, K, (int) rows,
                             (int) N, (int) K, x->scale, w->scale,
                             b ? b->data : NULL, act == SD_ACT_GELU_TANH,
                             &q, 128256, c->lane ? c->lane1_sms : 0,
                             c->stream);
    }
    sd_cuda_scratch_free(c, scr);
    if (e != cudaSuccess) {
        return sd_cuda_fail(err, e, "linear_rows8", __FILE__, __LINE__);
    }
    return SD_OK;
}


/*
 * Whether sd_cuda_linear_qkv_fp8 takes these: x (B, n, K) E4M3 rows with
 * their scales, w (3 W, K) E4M3 with row scales on the device, BF16 bias
 * (or none), v and the norms BF16, W = 64 heads, a multiple of 128.
 */
int
sd_cuda_linear_qkv_fp8_fits(const sd_tensor *q8, const sd_tensor *v,
    const sd_tensor *x, const sd_tensor *w, const sd_tensor *b, int heads)
{
    int64_t  rows = x->ne[0] * x->ne[1], wd = w->ne[0] / 3;

    return x->dtype == SD_DT_F8_E4M3 && sd_cuda_e4m3_rows(x, rows)
           && w->dtype == SD_DT_F8_E4M3 && w->scale != NULL
           && w->mem != SD_MEM_HOST && (b == NULL || b->dtype == SD_DT_BF16)
           && v->dtype == SD_DT_BF16 && q8->scale != NULL
           && wd % 128 == 0 && wd == (int64_t) heads * 64
           && w->ne[1] % 16 == 0 && rows < (1 << 30)
           && (((uintptr_t) x->data | (uintptr_t) w->data
                | (uintptr_t) q8->data | (uintptr_t) v->data) & 15) == 0;
}


sd_status
sd_cuda_linear_qkv_fp8(sd_err *err, sd_tensor *q8, sd_tensor *k8,
    sd_tensor *v, sd_tensor *vamax, int64_t r0, const sd_tensor *x,
    const sd_tensor *w, const sd_tensor *b, const sd_tensor *nq,
    const sd_tensor *nk, int heads, float eps, float sq, float sk)
{
    sd_cuda           *c = sd_cuda_of(q8);
    sd_cuda_g8_split   p;
    cudaError_t        e;

    if (nq->dtype != SD_DT_BF16 || nk->dtype != SD_DT_BF16) {
        return sd_errorf(err, SD_ERR_UNSUPPORTED, "cuda: the fused QKV "
                         "split takes BF16 norms");
    }
    memset(&p, 0, sizeof(p));
    p.q8 = (uint8_t *) q8->data;
    p.k8 = (uint8_t *) k8->data;
    p.qs = q8->scale;
    p.ks = k8->scale;
    p.v = (__nv_bfloat16 *) v->data;
    p.vamax = (float *) vamax->data;
    p.nq = (const __nv_bfloat16 *) nq->data;
    p.nk = (const __nv_bfloat16 *) nk->data;
    p.w = (int) (w->ne[0] / 3);
    p.n = (int) x->ne[1];
    p.l = (int) q8->ne[1];
    p.r0 = (int) r0;
    p.heads = heads;
    p.eps = eps;
    p.sq = sq;
    p.sk = sk;
    e = sd_cuda_g8_qkv(x->data, w->ne[1], w->data, w->ne[1],
                       (int) (x->ne[0] * x->ne[1]), (int) w->ne[1], x->scale,
                       w->scale, b ? b->data : NULL, &p,
                       c->lane ? c->lane1_sms : 0, c->stream);
    if (e != cudaSuccess) {
        return sd_cuda_fail(err, e, "linear_qkv_fp8", __FILE__, __LINE__);
    }
    return SD_OK;
}

#endif /* G8_STANDALONE */
