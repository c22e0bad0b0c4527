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
 * find its rows' maxima and quantize them before the second product).
 * The QKV split fused as an epilogue (SD_CUDA_G8=1) was removed on
 * 2026-12-02: slower than cuBLASLt and the split's pass (66.61 against
 * 65.29 ms a Large step; gemm8_check 0.2516 ms against 0.197 + 0.052),
 * and the split now writes V^T for the attention from both streams at
 * once.
 *
 * A persistent kernel, one block an SM, 384 threads: warpgroup 0 is the
 * producer (one thread issues TMA copies of a BM x 128-byte tile of A and
 * a BN x 128-byte tile of B into four stages, 128-byte swizzle),
 * warpgroups 1 and 2 the consumers, each owning BM / 2 rows of the
 * BM x BN output tile (128 x 256 or 256 x 128) and accumulating with
 * m64nBNk32 wgmma from shared memory. Or ping-pong (session 20): each
 * consumer owns whole tiles (128 x 128 or 192 x 128) and the two take
 * turns at the tensor cores, one's epilogue beside the other's main loop
 * (g8_smem). Tiles go to blocks round-robin, M
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
 * Session 20 (gemm8_check in one call, cuBLASLt's time in turn): the
 * ping-pong schedule. 128 x 128 tiles (six stages) hide the epilogue
 * (QKV 0.2039 ms against 0.2115 at 256 x 128; cuBLASLt 0.1955) but their
 * main loop reads more bytes a product: at K 9728 0.3256 against 0.2735
 * (0.2864 with the tiles N fastest, B staying in L2). 192 x 128 (four
 * stages; the consumers at 240 registers, the producer at 24, else the
 * E4M3 epilogue spilled): QKV 0.1943 N fastest (cuBLASLt 0.1954), the
 * GELU product with E4M3 rows 0.2832 against 0.3010 (kept: g8_rows_tile),
 * the out projection 0.0721 against cuBLASLt's 0.0749 (which the engine
 * runs with the gate and residual fused: not moved), the second product
 * 0.2837 against 0.2774. Not kept: the QKV product writing its q and k
 * thirds as the attention's E4M3 inputs itself (each head's RMS over a
 * quad's 16 values a thread, codes through shared memory stored by TMA
 * through a 3-D map; v as BF16 for the split): the split's codes to the
 * bit, but 0.2201 ms at 128 x 128 (192 x 128 spilled: 0.2244) against
 * cuBLASLt's 0.1959, about the split's q and k part it saves: the Large
 * step 64.85 / 64.56 ms against 64.75 / 64.54, Medium 27.13 against
 * 27.18, in turn.
 * Session 38: G8_E_RES, the gated products (x += gate (h w^T + b)) of
 * both batch entries in one launch, 128 x 128 ping-pong tiles within a
 * batch (A and x through 3-D maps), the gate folded into the tile's
 * column scales and bias, each tile's residual loaded by TMA into a
 * buffer a chunk (5 stages) while its products run; the same device time
 * as cuBLASLt's two launches a step, but the step slower (fp8.cu,
 * SD_CUDA_G8_GATE: off by default).
 * Not kept (2026-12-02, H100): GELU's tanh of a pair in one
 * tanh.approx.f16x2 (-DG8_TANH16): the E4M3 GELU rows 0.3053 / 0.3060 ms
 * against 0.3002 / 0.3008, error 1.89e-1 against 1.82e-1 (codes up to 5
 * apart), the Large step 67.35 / 67.15 ms against 67.41 / 67.18: no gain.
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
#ifndef G8_WGU
#define G8_WGU      1                   /* g8_kernel's warpgroup index */
#endif                                  /* warp-uniform (below) */
#define G8_THREADS  384
#define G8_EBUF     (64 * 128)          /* an output chunk: 64 x 64 BF16 */
#define G8_ST       4                   /* stages */
#ifndef G8_ST_PP
#define G8_ST_PP    6                   /* stages of the ping-pong tiles */
#endif
#define G8_QM       1.03125f            /* the E4M3 output's bound's
                                           margin: 1 + 2^-5 covers the
                                           sums' and tanh's rounding */

/*
 * A tile is BM x BN: each consumer warpgroup owns BM / 2 rows, BM / 128
 * m64 products a k32 step. Four stages of BM + BN rows of 128 bytes and
 * two 64 x 64 BF16 output chunks a consumer fit in 227 KiB when BM + BN
 * is 384 (no room to align: the dynamic shared memory must start
 * 1024-byte aligned, which sd_cuda_g8_ok checks).
 * With PP (ping-pong) each consumer owns whole tiles, the block's even
 * and odd ones, and the two run their main loops in turn (named barriers
 * 4 and 5), so one's epilogue runs beside the other's products: BM x BN
 * is 128 x 128 or 192 x 128 (BM / 64 m64 products), as many stages as
 * fit (6 or 4), each read by one consumer, a set of column scales a
 * consumer.
 */
template <int BM, int BN, bool PP, int NE = 2>
struct g8_smem {
    /* stages: as many as fit beside the output chunks (PP) */
    static constexpr int  FIT = (227 * 1024 - 2 * NE * G8_EBUF - 16 * BN
                                 - 256) / ((BM + BN) * G8_BK);
    static constexpr int  ST = !PP ? G8_ST : FIT < G8_ST_PP ? FIT
                                                             : G8_ST_PP;
    static constexpr int  NC = PP ? 2 : 1;  /* column sets: a tile's */
    uint8_t   a[ST][BM * G8_BK];
    uint8_t   b[ST][BN * G8_BK];
    uint8_t   e[2][NE][G8_EBUF];        /* a consumer's output chunks */
    float     cs[NC][BN];               /* the tile's column scales */
    float     cb[NC][BN];               /* and bias */
    uint64_t  full[ST];
    uint64_t  empty[ST];
    uint64_t  res[2];                   /* a consumer's residual chunks
                                           are in (G8_E_RES) */
};

#define G8_SMEM_BYTES(bm, bn, pp)  sizeof(g8_smem<bm, bn, pp>)
/* G8_E_RES's: a buffer for each of a consumer's chunks of a tile */
#define G8_RES_NE(bm, bn)          ((bm) / 64 * ((bn) / 64))
#define G8_SMEM_RES(bm, bn)                                                 \
    sizeof(g8_smem<bm, bn, true, G8_RES_NE(bm, bn)>)


/*
 * G8_E_RES: x (nb batches of rows x n BF16) += gate_b (a_b w^T sa sb +
 * bias): a batch's tiles are its own (A, the row scales and x indexed by
 * batch), the gate folded into the tile's column scales and bias as
 * sd_cuda_linear_gate_fp8's gate_scales_kernel folds it (the F32
 * product, the bias times the gate rounded to BF16).
 */
typedef struct {
    const __nv_bfloat16  *gate;         /* (nb, n) */
    int64_t               hl;           /* the row scales' stride between
                                           batches */
    int                   nb;
} g8_res;


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


/* g8_tma_load through a 3-D (K, rows, batch) map, batch z */
static __device__ __forceinline__ void
g8_tma_load3(void *dst, const CUtensorMap *map, int k, int row, int z,
    uint64_t *bar)
{
    asm volatile("cp.async.bulk.tensor.3d.shared::cluster.global"
                 ".mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}],"
                 " [%5];"
                 :: "r"(sm90_smem_addr(dst)), "l"((uint64_t) map), "r"(k),
                    "r"(row), "r"(z), "r"(sm90_smem_addr(bar))
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


/* SD3's feed-forward activation, the tanh form (cuBLASLt's GELU) */
static __device__ __forceinline__ float
g8_gelu(float x)
{
    float  u = 0.7978845608f * (x + 0.044715f * x * x * x), th;

    asm("tanh.approx.f32 %0, %1;" : "=f"(th) : "f"(u));
    return 0.5f * x * (1.f + th);
}


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
        v[0] = g8_gelu(v[0]);
        v[1] = g8_gelu(v[1]);
        v[2] = g8_gelu(v[2]);
        v[3] = g8_gelu(v[3]);
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


/* The consumers that share a tile's column scales meet: both (cooperative
   tiles), or consumer cw alone (PP: a set of its own) */
template <bool PP>
static __device__ __forceinline__ void
g8_cols_sync(int cw)
{
    if (PP) {
        asm volatile("bar.sync %0, 128;" :: "r"(2 + cw) : "memory");
    } else {
        asm volatile("bar.sync 1, 256;" ::: "memory");
    }
}


/* The chunk's writes by the warpgroup's threads seen by TMA, the
   warpgroup met */
static __device__ __forceinline__ void
g8_chunk_ready(int cw)
{
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    asm volatile("bar.sync %0, 128;" :: "r"(2 + cw) : "memory");
}


/* The chunk in buf, written by the warpgroup's threads, stored by TMA
   through the map td at (column x, row y) */
static __device__ __forceinline__ void
g8_chunk_store(int t, int cw, const CUtensorMap *td, int x, int y,
    uint32_t buf)
{
    g8_chunk_ready(cw);
    if (t == 0) {
        asm volatile(
            "cp.async.bulk.tensor.2d.global.shared::cta"
            ".bulk_group [%0, {%1, %2}], [%3];\n"
            "cp.async.bulk.commit_group;"
            :: "l"((uint64_t) td), "r"(x), "r"(y), "r"(buf)
            : "memory");
    }
}


/* g8_chunk_store through a 3-D (columns, rows, batch) map, batch z */
static __device__ __forceinline__ void
g8_chunk_store3(int t, int cw, const CUtensorMap *td, int x, int y, int z,
    uint32_t buf)
{
    g8_chunk_ready(cw);
    if (t == 0) {
        asm volatile(
            "cp.async.bulk.tensor.3d.global.shared::cta"
            ".bulk_group [%0, {%1, %2, %3}], [%4];\n"
            "cp.async.bulk.commit_group;"
            :: "l"((uint64_t) td), "r"(x), "r"(y), "r"(z), "r"(buf)
            : "memory");
    }
}


/* a BF16 pair from shared memory as two floats */
static __device__ __forceinline__ float2
g8_ld_bf16x2(uint32_t a)
{
    uint32_t  u;

    asm volatile("ld.shared.b32 %0, [%1];" : "=r"(u) : "r"(a) : "memory");
    return __bfloat1622float2(*(__nv_bfloat162 *) &u);
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
 * The epilogues, a template argument of the kernel: BF16 out or E4M3 rows
 * (sd_cuda_g8_q), either GELU'd or not (G8_E_GELU). One kernel a kind,
 * not one with run-time branches around every kind's code: that kernel
 * held 8,192 instructions, and at the QKV shape its consumers spent a
 * fifth of their time in the epilogue, a third of it waiting for
 * instructions to be fetched (ncu's stall samples, session 17).
 */
#define G8_E_BF16   0
#define G8_E_GELU   1
#define G8_E_Q8     2
#define G8_E_RES    4                   /* BF16 plus the residual, by
                                           batch (g8_res; ping-pong) */

/*
 * grid: min(tiles, SMs) blocks of G8_THREADS; d = acc sa[row] sb[col]
 * (+ bias[col]) (GELU) as BF16 through the map td, or as E4M3 rows
 * (q8o), as EPI says. A thread of consumer warp w holds, of each 64 x BN
 * accumulator of its warpgroup, rows 16 w + lane / 4 and 8 more, columns
 * 8 j + 2 (lane % 4) and the next: acc[mi][4 j ...].
 */
template <int BM, int BN, int EPI, bool PP>
__global__ void __launch_bounds__(G8_THREADS, 1)
g8_kernel(const __grid_constant__ CUtensorMap ta,
    const __grid_constant__ CUtensorMap tb,
    const __grid_constant__ CUtensorMap td, int m, int n, int k, int nf,
    const float *sa, const float *sb, const __nv_bfloat16 *bias,
    const sd_cuda_g8_q q8o, const g8_res rs)
{
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    constexpr bool    res = (EPI & G8_E_RES) != 0;
    typedef g8_smem<BM, BN, PP, res ? G8_RES_NE(BM, BN) : 2>  smem_t;
    constexpr int     ST = smem_t::ST;
    constexpr int     MI = PP ? BM / 64 : BM / 128; /* m64 products a
                                                       warpgroup */
    constexpr int     CR = PP ? BM : BM / 2;  /* a consumer's rows */
    constexpr int     TS = PP ? 2 : 1;  /* a consumer's stride in tiles */
    constexpr int     gelu = EPI & G8_E_GELU;
    constexpr bool    q8 = (EPI & G8_E_Q8) != 0;
    static_assert(!res || (PP && !q8 && !gelu), "G8_E_RES: ping-pong, BF16");
    extern __shared__ __align__(1024) unsigned char  g8_raw[];
    smem_t           *sm = (smem_t *) g8_raw;
    /* G8_WGU: the warpgroup's index warp-uniform to ptxas
       (sm90_uniform), which keeps what derives from it (the ping-pong
       consumers' tile loop, stages, descriptors) on the uniform
       datapath (as fattn.cu's FA_IDLE): 112-160 fewer
       SASS instructions in the ping-pong kernels. H200, run.sh s37g in
       turn against -DG8_WGU=0 (the same bits: one seed's Large image
       identical, test_backend 490/490): the GELU product with E4M3 rows
       (192 x 128 ping-pong, the engine's) 0.2657 / 0.2656 ms against
       0.2822 / 0.2819, its BF16 form 0.2662 / 0.2659 against 0.2778 /
       0.2781 (cuBLASLt 0.2744), 128 x 128 ping-pong 0.2853 / 0.2847
       against 0.2995 / 0.3010; Large's 28-step step 60.77 / 60.74 ms
       against 61.28 / 61.35 */
    int               wg = G8_WGU ? sm90_uniform((int) threadIdx.x / 128)
                                  : (int) threadIdx.x / 128;
    int               t = threadIdx.x % 128;
    /* G8_E_RES: m is a batch's rows, mb its row tiles */
    int               mb = (m + BM - 1) / BM, nt = (n + BN - 1) / BN;
    int               mt = res ? mb * rs.nb : mb;
    int               tiles = mt * nt, nk = (k + G8_BK - 1) / G8_BK;
    int               tile, kb, s, it = 0;
    int               ntl;              /* the block's tiles */

    ntl = tiles > (int) blockIdx.x
          ? (tiles - 1 - (int) blockIdx.x) / (int) gridDim.x + 1 : 0;

    if (threadIdx.x == 0) {
        for (s = 0; s < ST; s++) {
            sm90_mbar_init(&sm->full[s], 1);
            sm90_mbar_init(&sm->empty[s], PP ? 4 : 8);
        }
        if (res) {
            sm90_mbar_init(&sm->res[0], 1);
            sm90_mbar_init(&sm->res[1], 1);
        }
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();

    if (wg == 0) {
        /* 192-row tiles: the consumers' 192 accumulators need 240 */
        if constexpr (BM == 192) {
            asm volatile("setmaxnreg.dec.sync.aligned.u32 24;\n");
        } else {
            asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n");
        }
        if (t == 0) {
            for (tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
                int  mx = nf ? tile / nt : tile % mt;
                int  m0 = (res ? mx % mb : mx) * BM, z = res ? mx / mb : 0;
                int  n0 = (nf ? tile % nt : tile / mt) * BN;

                for (kb = 0; kb < nk; kb++, it++) {
                    s = it % ST;
                    if (it >= ST) {
                        sm90_mbar_wait(&sm->empty[s], (it / ST - 1) & 1);
                    }
                    sm90_mbar_expect(&sm->full[s], (BM + BN) * G8_BK);
                    if constexpr (res) {
                        g8_tma_load3(sm->a[s], &ta, kb * G8_BK, m0, z,
                                     &sm->full[s]);
                    } else {
                        g8_tma_load(sm->a[s], &ta, kb * G8_BK, m0,
                                    &sm->full[s]);
                    }
                    g8_tma_load(sm->b[s], &tb, kb * G8_BK, n0, &sm->full[s]);
                }
            }
        }
        return;
    }

    if constexpr (BM == 192) {
        asm volatile("setmaxnreg.inc.sync.aligned.u32 240;\n");
    } else {
        asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n");
    }

    {
        int       cw = wg - 1, w = t / 32, lane = t % 32, j, kk, mi, ec = 0;
        int       lt;                       /* the tile's index in the
                                               block's */
        float    *ccs = sm->cs[PP ? cw : 0], *ccb = sm->cb[PP ? cw : 0];
        int       rl0 = w * 16 + lane / 4;  /* the thread's first row */
        float     acc[MI][BN / 2];
        float     qw = 0.f, qb = 0.f;       /* E4M3 output: the largest
                                               norm of B's rows, |bias| */
        uint32_t  eb = sm90_smem_addr(sm->e[cw][0]);

        if (q8 && q8o.bm) {
            /* the bias's largest magnitude, found once a weight */
            qw = *q8o.wn;
            qb = *q8o.bm;
        } else if (q8) {
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
                sm->cb[0][(threadIdx.x - 128) / 32] = v;
            }
            asm volatile("bar.sync 1, 256;" ::: "memory");
            for (i = 0; i < 8; i++) {
                qb = fmaxf(qb, sm->cb[0][i]);
            }
            asm volatile("bar.sync 1, 256;" ::: "memory");
        }

        for (mi = 0; mi < MI; mi++) {
            for (j = 0; j < BN / 2; j++) {
                acc[mi][j] = 0.f;
            }
        }
        for (lt = PP ? cw : 0; lt < ntl; lt += TS) {
            int    m0, n0, mw, mx, z;
            float  sa0[MI], sa1[MI], rn0[MI], rn1[MI], csv = 0.f, cbv = 0.f;
            int    cj = PP ? t : threadIdx.x - 128;
            const float  *sat;

            tile = (int) blockIdx.x + lt * (int) gridDim.x;
            mx = nf ? tile / nt : tile % mt;
            m0 = (res ? mx % mb : mx) * BM;
            z = res ? mx / mb : 0;      /* G8_E_RES: the tile's batch */
            n0 = (nf ? tile % nt : tile / mt) * BN;
            mw = m0 + (PP ? 0 : cw * (BM / 2)); /* the warpgroup's rows */
            it = lt * nk;               /* the tile's first stage's use */
            sat = res ? sa + z * rs.hl : sa;

            if (res && t == 0) {
                /* the tile's residual, a chunk a buffer, loaded while the
                   products run: the stores that read the buffers last
                   (this consumer's tile before) are past reading */
                int  nc = 0;

                asm volatile("cp.async.bulk.wait_group.read 0;"
                             ::: "memory");
                #pragma unroll
                for (mi = 0; mi < MI; mi++) {
                    #pragma unroll
                    for (int c = 0; c < BN / 64; c++) {
                        nc += mw + 64 * mi < m && n0 + 64 * c < n;
                    }
                }
                /* (chunks wholly past the rows or columns: none) */
                sm90_mbar_expect(&sm->res[cw], nc * G8_EBUF);
                #pragma unroll
                for (mi = 0; mi < MI; mi++) {
                    #pragma unroll
                    for (int c = 0; c < BN / 64; c++) {
                        if (mw + 64 * mi < m && n0 + 64 * c < n) {
                            g8_tma_load3(sm->e[cw][mi * (BN / 64) + c], &td,
                                         n0 + 64 * c, mw + 64 * mi, z,
                                         &sm->res[cw]);
                        }
                    }
                }
            }

            /* the tile's row and column scales and bias, loaded now and
               used after the products (which hide the loads) */
            if (cj < BN && n0 + cj < n) {
                csv = sb[n0 + cj];
                cbv = bias ? __bfloat162float(bias[n0 + cj]) : 0.f;
                if (res) {
                    float  g = __bfloat162float(rs.gate[(int64_t) z * n
                                                        + n0 + cj]);

                    csv *= g;
                    cbv = __bfloat162float(__float2bfloat16(cbv * g));
                }
            }
            for (mi = 0; mi < MI; mi++) {
                int  r0 = mw + 64 * mi + rl0, r1 = r0 + 8;

                sa0[mi] = r0 < m ? sat[r0] : 0.f;
                sa1[mi] = r1 < m ? sat[r1] : 0.f;
                rn0[mi] = q8 && r0 < m ? q8o.rn[r0] : 0.f;
                rn1[mi] = q8 && r1 < m ? q8o.rn[r1] : 0.f;
            }

            if (PP && lt > 0) {
                /* the other consumer's main loop is issued: its stages'
                   full barriers are all past, so this tile's are at most
                   a phase ahead */
                asm volatile("bar.sync %0, 256;" :: "r"(4 + cw) : "memory");
            }
            for (kb = 0; kb < nk; kb++, it++) {
                uint64_t  da, db;

                s = it % ST;
                sm90_mbar_wait(&sm->full[s], (it / ST) & 1);
                da = g8_desc(sm->a[s] + (PP ? 0 : cw * CR * G8_BK));
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
                        sm90_mbar_arrive(&sm->empty[(it - 1) % ST]);
                    }
                }
            }
            if (PP && lt + 1 < ntl) {
                /* the other consumer's next tile may start its loop */
                asm volatile("bar.arrive %0, 256;" :: "r"(5 - cw)
                             : "memory");
            }
            sm90_wgmma_wait<0>();
            if (lane == 0) {
                sm90_mbar_arrive(&sm->empty[(it - 1) % ST]);
            }
            /* the consumers (PP: this one) are past the last tile's
               epilogue */
            g8_cols_sync<PP>(cw);
            if (cj < BN) {
                ccs[cj] = csv;
                ccb[cj] = cbv;
            }
            g8_cols_sync<PP>(cw);

            if constexpr (q8) {
                g8_out_e4m3<MI, BN>(acc, ccs, ccb, sa0, sa1, rn0,
                                    rn1, qw, qb, q8o.ys, gelu, eb, ec, &td,
                                    m, n0, mw, t, cw);
                ec += MI * (BN / 128);
            } else {
                /* the output through shared memory, a 64 x 64 chunk at a time
                   in two buffers, each in the 128-byte swizzle (16-byte unit
                   u of row r at u ^ (r % 8): a warp's 32 words land in 32
                   banks) and stored by TMA; G8_E_RES: each chunk in its own
                   buffer over its residual */
                if (res) {
                    sm90_mbar_wait(&sm->res[cw], (lt >> 1) & 1);
                }
                #pragma unroll
                for (mi = 0; mi < MI; mi++) {
                    #pragma unroll
                    for (int c = 0; c < BN / 64; c++, ec++) {
                        uint32_t  buf = eb + (res ? mi * (BN / 64) + c
                                                  : ec & 1) * G8_EBUF;

                        if (res && (mw + 64 * mi >= m || n0 + 64 * c >= n)) {
                            continue;   /* the warpgroup's alike */
                        }
                        if (!res) {
                            g8_chunk_begin(t, cw);
                        }
                        #pragma unroll
                        for (kk = 0; kk < 8; kk++) {
                            int       jj = 8 * c + kk;
                            int       cl = 8 * jj + 2 * (lane % 4);
                            float     v[4];
                            uint32_t  o0, o1;

                            g8_out4(v, acc[mi] + 4 * jj, sa0[mi], sa1[mi],
                                    *(const float2 *) &ccs[cl],
                                    *(const float2 *) &ccb[cl], gelu);
                            o0 = buf + rl0 * 128 + ((kk ^ (rl0 & 7)) << 4)
                                 + 4 * (lane % 4);
                            o1 = o0 + 8 * 128;  /* row + 8: the same swizzle */
                            if (res) {
                                float2  x0 = g8_ld_bf16x2(o0);
                                float2  x1 = g8_ld_bf16x2(o1);

                                v[0] += x0.x;
                                v[1] += x0.y;
                                v[2] += x1.x;
                                v[3] += x1.y;
                            }
                            asm volatile("st.shared.b32 [%0], %1;"
                                         :: "r"(o0),
                                            "r"(g8_pack_bf16(v[0], v[1])));
                            asm volatile("st.shared.b32 [%0], %1;"
                                         :: "r"(o1),
                                            "r"(g8_pack_bf16(v[2], v[3])));
                        }
                        if (res) {
                            g8_chunk_store3(t, cw, &td, n0 + 64 * c,
                                            mw + 64 * mi, z, buf);
                        } else {
                            g8_chunk_store(t, cw, &td, n0 + 64 * c,
                                           mw + 64 * mi, buf);
                        }
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
template <int BM, int BN, bool PP>
static cudaError_t
g8_smem_attr(void)
{
    static const void  *f[] = {
        (const void *) g8_kernel<BM, BN, G8_E_BF16, PP>,
        (const void *) g8_kernel<BM, BN, G8_E_BF16 | G8_E_GELU, PP>,
        (const void *) g8_kernel<BM, BN, G8_E_Q8, PP>,
        (const void *) g8_kernel<BM, BN, G8_E_Q8 | G8_E_GELU, PP>,
    };
    size_t              i;
    cudaError_t         e = cudaSuccess;

    for (i = 0; i < sizeof(f) / sizeof(f[0]) && e == cudaSuccess; i++) {
        e = cudaFuncSetAttribute(f[i],
                                 cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 (int) G8_SMEM_BYTES(BM, BN, PP));
    }
    return e;
}


/* G8_E_RES's kernel: 128 x 128 ping-pong tiles, N fastest */
#define G8_RES_KERNEL  g8_kernel<128, 128, G8_E_RES, true>


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


/* a persistent launch's blocks: one a tile, sms at most (0: every SM) */
static unsigned
g8_grid(int tiles, int sms)
{
    if (sms <= 0 || sms > g8_sms) {
        sms = g8_sms;
    }
    return (unsigned) (tiles < sms ? tiles : sms);
}


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
    const int       big = (int) G8_SMEM_BYTES(128, 128, true);

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
    if (hv != 0 || g8_smem_attr<128, 256, false>() != cudaSuccess
        || g8_smem_attr<256, 128, false>() != cudaSuccess
        || g8_smem_attr<128, 128, true>() != cudaSuccess
        || g8_smem_attr<192, 128, true>() != cudaSuccess
        || cudaFuncSetAttribute(G8_RES_KERNEL,
                                cudaFuncAttributeMaxDynamicSharedMemorySize,
                                (int) G8_SMEM_RES(128, 128)) != cudaSuccess)
    {
        (void) cudaGetLastError();
        return 0;
    }
    return 1;
}


template <int BM, int BN, bool PP>
static cudaError_t
g8_launch(const void *a, int64_t lda, const void *b, int64_t ldb,
    const CUtensorMap *td, int m, int n, int k, const float *sa,
    const float *sb, const void *bias, int gelu, const sd_cuda_g8_q *q,
    int nf, int sms, cudaStream_t st)
{
    CUtensorMap           ta, tb;
    int                   tiles = ((m + BM - 1) / BM) * ((n + BN - 1) / BN);
    unsigned              grid;
    size_t                smem = G8_SMEM_BYTES(BM, BN, PP);
    const __nv_bfloat16  *bi = (const __nv_bfloat16 *) bias;
    int                   epi = (q->ys ? G8_E_Q8 : G8_E_BF16)
                                | (gelu ? G8_E_GELU : 0);
    g8_res                rs;

    memset(&rs, 0, sizeof(rs));
    if (!g8_map(&ta, a, m, k, lda, BM) || !g8_map(&tb, b, n, k, ldb, BN)) {
        return cudaErrorInvalidValue;
    }
    grid = g8_grid(tiles, sms);
#define G8_GO(e)                                                            \
    g8_kernel<BM, BN, e, PP><<<grid, G8_THREADS, smem, st>>>(              \
        ta, tb, *td, m, n, k, nf, sa, sb, bi, *q, rs)
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
    }
#undef G8_GO
    return cudaGetLastError();
}


/* g8_launch of a tile code (sd_cuda_g8_gemm's tile) */
static cudaError_t
g8_tile_launch(int tile, const void *a, int64_t lda, const void *b,
    int64_t ldb, const CUtensorMap *td, int m, int n, int k, const float *sa,
    const float *sb, const void *bias, int gelu, const sd_cuda_g8_q *q,
    int sms, cudaStream_t st)
{
    int  nf = tile / 1000000;

    switch (tile % 1000000) {
    case 128256:
        return g8_launch<128, 256, false>(a, lda, b, ldb, td, m, n, k, sa,
                                          sb, bias, gelu, q, nf, sms, st);
    case 256128:
        return g8_launch<256, 128, false>(a, lda, b, ldb, td, m, n, k, sa,
                                          sb, bias, gelu, q, nf, sms, st);
    case 128128:                        /* ping-pong */
        return g8_launch<128, 128, true>(a, lda, b, ldb, td, m, n, k, sa,
                                         sb, bias, gelu, q, nf, sms, st);
    case 192128:                        /* ping-pong */
        return g8_launch<192, 128, true>(a, lda, b, ldb, td, m, n, k, sa,
                                         sb, bias, gelu, q, nf, sms, st);
    default:
        return cudaErrorInvalidValue;
    }
}


/*
 * d (m x n BF16, row stride ldd elements) = (a (m x k E4M3, row stride
 * lda bytes) b (n x k E4M3, ldb)^T) sa[row] sb[col] + bias[col] (BF16,
 * NULL: none), GELU'd when gelu; tile: BM * 1000 + BN (128256, 256128,
 * or 128128 and 192128: a tile a consumer in turn, ping-pong), plus
 * 1000000 for tiles in the order N fastest (else M fastest);
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
    CUtensorMap   td;
    sd_cuda_g8_q  bf;
    cuuint64_t    dims[2] = { (cuuint64_t) n, (cuuint64_t) m };
    cuuint64_t    strides[1] = { (cuuint64_t) ldd * 2 };
    cuuint32_t    bx[2] = { 64, 64 };

    if (m <= 0 || n <= 0 || k <= 0 || k % 16 != 0 || lda % 16 != 0
        || ldb % 16 != 0 || n % 8 != 0 || ldd % 8 != 0
        || (((uintptr_t) a | (uintptr_t) b | (uintptr_t) d) & 15) != 0
        || sa == NULL || sb == NULL
        || !sm90_map(&td, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, d, dims,
                     strides, bx, CU_TENSOR_MAP_SWIZZLE_128B))
    {
        return cudaErrorInvalidValue;
    }
    memset(&bf, 0, sizeof(bf));
    return g8_tile_launch(tile, a, lda, b, ldb, &td, m, n, k, sa, sb, bias,
                          gelu, &bf, sms, st);
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
    CUtensorMap  td;
    cuuint64_t   dims[2] = { (cuuint64_t) n, (cuuint64_t) m };
    cuuint64_t   strides[1] = { (cuuint64_t) ldd };
    cuuint32_t   bx[2] = { 128, 64 };

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
    return g8_tile_launch(tile, a, lda, b, ldb, &td, m, n, k, sa, sb, bias,
                          gelu, q, sms, st);
}


/*
 * x (nb batches of m x n BF16, contiguous) += gate_b (a_b b^T sa_b sb +
 * bias) (G8_E_RES): batch z's rows of a (E4M3, row stride k bytes) start
 * at a + z ldz bytes and their scales at sa + z hl; b (n x k E4M3) with
 * its row scales sb, bias (n BF16) or none, gate (nb x n BF16). Both
 * batches in one launch of 128 x 128 ping-pong tiles, N fastest, a tile
 * within one batch (A, x through 3-D maps); each tile's residual loaded
 * by TMA into a buffer a chunk while its products run. k and ldz
 * multiples of 16, n of 8, x, a and b 16-byte aligned; sms: blocks at
 * most (0: every SM).
 */
cudaError_t
sd_cuda_g8_gate(void *x, const void *a, int64_t ldz, const float *sa,
    int64_t hl, const void *b, const float *sb, const void *bias,
    const void *gate, int nb, int m, int n, int k, int sms, cudaStream_t st)
{
    CUtensorMap   ta, tb, td;
    cuuint64_t    ad[3] = { (cuuint64_t) k, (cuuint64_t) m, (cuuint64_t) nb };
    cuuint64_t    as[2] = { (cuuint64_t) k, (cuuint64_t) ldz };
    cuuint32_t    abx[3] = { G8_BK, 128, 1 };
    cuuint64_t    dd[3] = { (cuuint64_t) n, (cuuint64_t) m, (cuuint64_t) nb };
    cuuint64_t    ds[2] = { (cuuint64_t) n * 2, (cuuint64_t) n * m * 2 };
    cuuint32_t    dbx[3] = { 64, 64, 1 };
    sd_cuda_g8_q  q;
    g8_res        rs;
    int           tiles;

    if (nb <= 0 || m <= 0 || n <= 0 || k <= 0 || k % 16 != 0
        || ldz % 16 != 0 || n % 8 != 0 || sa == NULL || sb == NULL
        || gate == NULL
        || (((uintptr_t) a | (uintptr_t) b | (uintptr_t) x) & 15) != 0
        || !sm90_map(&ta, CU_TENSOR_MAP_DATA_TYPE_UINT8, 3, a, ad, as, abx,
                     CU_TENSOR_MAP_SWIZZLE_128B)
        || !g8_map(&tb, b, n, k, k, 128)
        || !sm90_map(&td, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3, x, dd, ds,
                     dbx, CU_TENSOR_MAP_SWIZZLE_128B))
    {
        return cudaErrorInvalidValue;
    }
    memset(&q, 0, sizeof(q));
    rs.gate = (const __nv_bfloat16 *) gate;
    rs.hl = hl;
    rs.nb = nb;
    tiles = nb * ((m + 127) / 128) * ((n + 127) / 128);
    G8_RES_KERNEL<<<g8_grid(tiles, sms), G8_THREADS, G8_SMEM_RES(128, 128),
                    st>>>(ta, tb, td, m, n, k, 1, sa, sb,
                          (const __nv_bfloat16 *) bias, q, rs);
    return cudaGetLastError();
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


/* out[0] = max over rows of sb[r] |b_r|_2, out[1] = max |bias| (out
   zeroed first) */
__global__ void
g8_wnorm_kernel(float *out, const uint8_t *b, const float *sb, int n, int k,
    const __nv_bfloat16 *bias)
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
        if (bias) {
            atomicMax((unsigned *) out + 1,
                      __float_as_uint(fabsf(__bfloat162float(bias[row]))));
        }
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


/* out[0] (device) = the largest L2 norm of b's rows (n x k E4M3, scales
   sb), sd_cuda_g8_q's wn; out[1] = the largest magnitude of bias (n BF16,
   or none: 0), sd_cuda_g8_q's bm */
cudaError_t
sd_cuda_g8_wnorm(float *out, const void *b, const float *sb, int n, int k,
    const void *bias, cudaStream_t st)
{
    cudaError_t  e;

    if (n <= 0 || k % 16 != 0 || ((uintptr_t) b & 15)) {
        return cudaErrorInvalidValue;
    }
    e = cudaMemsetAsync(out, 0, 2 * sizeof(float), st);
    if (e != cudaSuccess) {
        return e;
    }
    g8_wnorm_kernel<<<(unsigned) ((n + 7) / 8), 256, 0, st>>>(
        out, (const uint8_t *) b, sb, n, k, (const __nv_bfloat16 *) bias);
    return cudaGetLastError();
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


/*
 * w's rows' largest norm and bias's largest magnitude into its last two
 * scale slots, once a weight and bias (the first product; synchronized
 * unless a graph is being captured, where stream order alone keeps it
 * before the product). bias is a weight of its own or NULL: its writes
 * and its release forget it (wn_forget), which an activation's or a
 * view's would not.
 */
static sd_status
g8_weight_norm(sd_err *err, sd_cuda *c, const sd_tensor *w,
    const sd_tensor *bias)
{
    const void  *bd = bias ? bias->data : NULL;
    cudaError_t  e;
    int          i;

    for (i = 0; i < c->wn_n; i++) {
        if (c->wn_known[i].w == w->data && c->wn_known[i].bias == bd) {
            return SD_OK;
        }
        if (c->wn_known[i].w == w->data) {
            break;                      /* found with another bias */
        }
    }
    if (i == c->wn_n && c->wn_n == c->wn_cap) {
        int          cap = c->wn_cap ? 2 * c->wn_cap : 64;
        sd_cuda_wn  *p = (sd_cuda_wn *) realloc(c->wn_known,
                                                (size_t) cap * sizeof(*p));

        if (p == NULL) {
            return sd_errorf(err, SD_ERR_NOMEM, "out of host memory");
        }
        c->wn_known = p;
        c->wn_cap = cap;
    }
    e = sd_cuda_g8_wnorm(w->scale + w->ne[0], w->data, w->scale,
                         (int) w->ne[0], (int) w->ne[1], bd, c->stream);
    if (e == cudaSuccess && !c->capturing) {
        e = cudaStreamSynchronize(c->stream);
    }
    if (e != cudaSuccess) {
        return sd_cuda_fail(err, e, "linear_rows8: weight norm", __FILE__,
                            __LINE__);
    }
    c->wn_known[i].w = w->data;
    c->wn_known[i].bias = bd;
    c->wn_n += i == c->wn_n;
    return SD_OK;
}


/*
 * The tile of the E4M3-rows product, measured (gemm8_check, H200, session
 * 20): ping-pong 192 x 128, N fastest, where the rows fill the card (the
 * Large GELU product 8192 x 9728 x 2432: 0.2832 ms against 0.3010 at 128
 * x 256; Medium's 8192 x 6144 x 1536: 0.1325 against 0.1391), 128 x 256
 * for the text stream's few rows (666: 0.0361 against 0.0399 or more).
 */
static int
g8_rows_tile(int64_t rows)
{
    return rows >= 4096 ? 1192128 : 128256;
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
    int            bk;

    /* a bias's magnitude is kept only where its changes are seen */
    bk = b == NULL || (b->mem == SD_MEM_WEIGHT && !b->view);
    SD_TRY(g8_weight_norm(err, c, w, bk ? b : NULL));
    SD_TRY(sd_cuda_scratch(err, c, (size_t) rows * sizeof(float), &scr));
    if (c->measuring) {
        sd_cuda_scratch_free(c, scr);
        return SD_OK;
    }
    q.ys = y->scale;
    q.rn = (const float *) scr;
    q.wn = w->scale + N;
    q.bm = bk ? w->scale + N + 1 : NULL;
    e = sd_cuda_g8_rownorm((float *) scr, x->data, K, x->scale, (int) rows,
                           (int) K, c->stream);
    if (e == cudaSuccess) {
        e = sd_cuda_g8_gemm8(y->data, N, x->data, K, w->data, K, (int) rows,
                             (int) N, (int) K, x->scale, w->scale,
                             b ? b->data : NULL, act == SD_ACT_GELU_TANH,
                             &q, g8_rows_tile(rows),
                             c->lane ? c->lane1_sms : 0, c->stream);
    }
    sd_cuda_scratch_free(c, scr);
    if (e != cudaSuccess) {
        return sd_cuda_fail(err, e, "linear_rows8", __FILE__, __LINE__);
    }
    return SD_OK;
}

#endif /* G8_STANDALONE */
