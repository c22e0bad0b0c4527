/*
 * fattn.cu: an own fused attention for Hopper (sm_90a): O = softmax(scale
 * Q K^T) V at head size 64, BF16 in and out, F32 softmax and accumulation,
 * in the way FlashAttention-3 describes: a producer warp streams K and V
 * tiles into shared memory with the bulk tensor copy engine (TMA), three
 * consumer warpgroups each own 64 query rows and run both products on the
 * tensor cores with wgmma (S = Q K^T from shared memory, O += P V with P
 * from registers), the online softmax in between. No L x L matrix exists.
 *
 * Layout: q, k, v, o are (B, L, H * 64) row-major, the MMDiT's joint
 * buffers; a head is a 128-byte column block of each row. TMA reads the
 * (64, H, L, B) view with a 128-byte swizzle, the layout wgmma reads: Q
 * and K as K-major operands, V as the MN-major (transposed) operand of the
 * second product. Rows past L arrive as zeros; their scores are masked.
 *
 * The invariant that is not obvious: a K/V stage is refilled only after
 * all consumer warpgroups have waited for the products that read it
 * (the empty barrier counts one arrival per consumer warp).
 *
 * Only sm_90a runs it (wgmma, setmaxnreg); other targets compile an empty
 * kernel and sd_cuda_fattn_ok() says no, so attention.cu uses cuDNN.
 */

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cuda.h>
#include <cudaTypedefs.h>

#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include "cuda.h"
#include "sm90.h"
#include "vt8.h"


#define FA_D        64                  /* head size */

/*
 * The configuration kept, measured on the H200 at B = 2, 4429 tokens, 38
 * heads (tests/gpu/fattn_check.cu, cuDNN's SDPA: 0.93 ms, 410 TFLOP/s):
 * three consumer warpgroups (192 query rows), three K/V stages and the
 * overlap: 0.776 ms, 492 TFLOP/s. Two consumers: 0.91; no overlap: 0.80;
 * two stages: 0.91; a quarter of the exponentials as polynomials: 0.89.
 * The E4M3 kernel (2026-12-01): 0.664 ms, 575 TFLOP/s, with the rows'
 * maxima and sums of a tile as trees (fa_softmax) 0.636 ms, 601 TFLOP/s;
 * under ncu it was latency-bound (0.96 eligible warps of 3.2 a scheduler,
 * issue slots 54% busy, the MUFU about half). No gain from: the consumer
 * warpgroups issuing their products in turn (FlashAttention-3's ping-pong,
 * 571), four K/V stages (599), 1 in 4 or 1 in 8 exponentials as cubic
 * polynomials on the FMA pipe (539, 560), rescaling O only when a row's
 * maximum grew by more than 0.75 (577; E4M3's P then up to 2^8.75).
 * 24 heads: 584 (8.7 waves of one block an SM; the last query block of
 * a head holds 13 of its 192 rows).
 * Session 13, under ncu at 38 heads: the XU pipe (MUFU.EX2, and the
 * F2FP conversions of P to E4M3, half an instruction an element) 72%
 * busy, the tensor pipe 37%, issue 53%, 0.86 eligible warps a scheduler.
 * One group of four exponentials in 16, 8, 4 or 2 as a degree-2
 * polynomial on the FMA pipe took the XU down to 66 / 62 / 52 / 32% and
 * the kernel from 624 to 613 / 596 / 587 / 540 TFLOP/s; ex2.approx.f16x2
 * is two MUFU.EX2.F16 (no pair at once). What took it to 816 (24 heads
 * 804; error against F32 5.42e-2 -> 5.73e-2): the E4M3 scores below;
 * with a fourth K/V stage, which the freed registers allow, 831-834 (24
 * heads 827-828) in that call, 817 against three stages' 816 in the next.
 * Session 14, no gain (the same output bits): the scores two tiles deep
 * (tile j + 1's Q K^T issued with tile j - 1's P V before tile j's
 * softmax; 728-750 against 802-821: 136 bytes of spills at 128 registers);
 * no producer warpgroup, the last consumer warp done with a stage
 * refilling it (168 registers, no spills: 728-730 one or two tiles deep);
 * a tail block's idle consumers leaving (within the noise).
 * Session 19 (2026-12-02, ncu in the pipeline, graphs off, against the
 * revision before in one call), not kept: each stream's output rows
 * written apart (the same bits; ptxas scheduled the main loop anew:
 * 0.4652 ms a layer against 0.4498), the tiles' V scales staged in
 * shared memory once a block (0.4573 against 0.4525), an instance with
 * the E4M3 output alone (0.4515 against 0.4501). Any change here, the
 * epilogue's too, moves the main loop's schedule: measure it.
 * Session 26 (ncu's warp stall samples per SASS instruction, run.sh
 * fattnstall): the E4M3 main loop was 296 instructions a warp and tile,
 * issue-bound (issue slots 58% busy), 32 of them moves of the score
 * accumulators that ptxas made to merge the softmax's masking branch.
 * Only the last tile masks now (fa_tile's LAST): 262 instructions, 38
 * heads 0.4544 / 0.4554 ms against 0.4738 / 0.4705, the same bits. Then
 * a tile's stage indices in unsigned arithmetic and its K and V
 * descriptors as stage 0's plus the stages' stride, not built from each
 * stage's address (uniform-datapath instructions take issue slots too):
 * 38 heads 0.4372 / 0.4437 ms against 0.4573 / 0.4513 (E4M3 out, the
 * engine's: 0.4101 / 0.4116 against 0.4248 / 0.4258), 24 heads 0.2778 /
 * 0.2823 against 0.2896 / 0.2867, the same bits (run.sh fattnvar).
 * Session 35: a block's fixed cost (its launch, Q's and the first K/V
 * tiles' loads, the ramp before the products overlap, the output),
 * fitted from whole waves of blocks at 1920-7680 tokens (fattn_check
 * sweep, 33 heads): about 3.5 us against 0.79 us a K/V tile, a tenth of
 * a 4429-token block. So the kernel is persistent: one block an SM takes
 * its units in turn, the producer loading the next unit's Q (two
 * buffers) and K/V tiles while the consumers finish one (run.sh pers, in
 * turn against a block a unit, SD_CUDA_FATTN_UNITS=1, the same bits):
 * 38 heads 0.4172 ms against 0.4359 (E4M3 out, the engine's: 0.3910
 * against 0.4116), 24 heads 0.2522 against 0.2774 (0.2539 against
 * 0.2690), 24 heads at 4096 tokens 0.2117 against 0.2297; the 28-step
 * step Large 61.59 / 61.40 ms against 61.84 / 62.01, Medium 24.67 /
 * 24.56 against 24.88 / 24.84.
 * Session 36, not kept (the same bits, run.sh xu): a consumer's next
 * unit's tile 0 scores and softmax issued beside the last P V product of
 * the unit before (as the main loop overlaps tiles), that unit's output
 * stored after them, and the E4M3 rows' scale found once a batch entry:
 * 38 heads 0.4230 / 0.4308 ms against 0.4211 / 0.4170 (E4M3 out 0.3943 /
 * 0.3950 against 0.3930 / 0.3930), 24 heads 0.2684 / 0.2751 against
 * 0.2656 / 0.2581; Large's step 61.76 / 61.34 against 61.49 / 60.54:
 * while one warpgroup ramps up, the other two keep the tensor cores busy.
 * Nor (run.sh xu, FA_VAR=idle0) a consumer warpgroup with no query rows
 * in its unit (the last query block's second and third at 4429 tokens)
 * skipping the products and only waiting for and releasing each K/V
 * stage: the same bits, but 38 heads 0.4661 / 0.4661 ms against 0.4314 /
 * 0.4268 (BF16 0.866 against 0.815), Large's step 64.22 / 64.11 against
 * 63.00 / 62.47, Medium's 25.93 / 25.72 against 25.05 / 25.18: the early
 * return changes how ptxas schedules the main loop. Session 37 kept it
 * as a call from the unit loop on a warp-uniform index (FA_IDLE below).
 */
#define FA_NWG      3                   /* consumer warpgroups */
#define FA_BOX      64                  /* rows of one TMA box */
#define FA_BN       128                 /* key rows per tile */
#ifndef FA_STAGES                       /* -DFA_STAGES=N, -DFA_STAGES8=N: */
#define FA_STAGES   3                   /* K/V tiles in flight, BF16 and */
#endif                                  /* E4M3, variants for fattn_check */
#ifndef FA_STAGES8
#define FA_STAGES8  4
#endif
#define FA_NST(eb)  ((eb) == 1 ? FA_STAGES8 : FA_STAGES)
#ifndef FA_MASK_ALL                     /* -DFA_MASK_ALL=1: every tile's */
#define FA_MASK_ALL 0                   /* softmax checks for keys past */
#endif                                  /* the end (the kernel before
                                           2026-12-03), for measuring */
/*
 * FA_LAZY (E4M3 kernel): a row's running maximum m moves only when a
 * tile's maximum passes it by more than FA_LAZY_HEAD (log2 units), and
 * then to FA_LAZY_OVER above that maximum, so after the first tiles most
 * tiles leave every m of a warp where it was; the output accumulated so
 * far is rescaled only when some row of the warp moved or the two tiles'
 * V scales (powers of two, vt8.h) differ (its 32 multiplications a
 * thread are skipped otherwise), and the scales' ratio comes from their
 * exponents (no IEEE division in the loop). P's largest code is then
 * round(8 (8 + 0.75) + 55.5) = 126 (448, E4M3's largest; 127 would be
 * NaN), and just after a move P peaks at 2^(8 - 1.25). -DFA_LAZY=0:
 * every tile rescales (the kernel before 2026-12-04), for measuring.
 * Measured (H200, session 32, against FA_LAZY=0 in turn, both with
 * vt8.h's powers of two): the main loop about 248 SASS instructions
 * either way, 32 of them now skipped where no row moved; fattn_check
 * within its spread (38 heads 0.4430 / 0.4520 ms against
 * 0.4534 / 0.4579, E4M3 out 0.4336 / 0.4298 against 0.4131 / 0.4199: the
 * kernel is bound by its softmax's latency, not its issue slots); in the
 * pipeline, where the card holds its power limit, Large's 28-step step
 * 62.77 / 62.49 ms against 62.82 / 62.73 and 63.87 / 63.73 against 63.92
 * / 64.08, Medium's 25.77 / 25.58 against 25.82 / 25.73 and 26.26
 * against 26.39; error against F32 5.749e-2 against 5.730e-2 (38 heads).
 */
#ifndef FA_LAZY
#define FA_LAZY       1
#endif
#define FA_LAZY_HEAD  0.75f
#define FA_LAZY_OVER  1.25f
/*
 * The E4M3 kernel's scores and P. S = Q K^T accumulates in F16 (wgmma
 * .f16: 32 registers a thread, not 64), which the caller's scales allow
 * (sd_fp8_attn_scales: |Q codes|_2 <= 112, |K codes|_2 <= 448, so |S| <=
 * 50176 < 65504) and make s8 = 8 scale log2(e) sq sk a power of two. The
 * softmax runs on half pairs, and P's E4M3 codes come from one fma.f16x2
 * a pair, no exponential and no conversion: code = round(8 x + 55.5) for
 * x = S sl2 - m + 8 is the low byte of fma(S, s8, 1536 + 55 - k) (the
 * halves from 1024 to 2048 are the integers), clamped at 1536 (code 0),
 * two codes a register gathered by a byte permute. A code c reads as
 * 2^(c / 8 - 7) along each octave's linear ramp (E4M3's mantissa is
 * linear within the octave), so P is 2^x up to that ramp's ripple (+-3%
 * with the 0.5) and the code's rounding; the row sums come from the same
 * codes on the tensor cores (below), so the ripple only reweights keys.
 * The running maximum less 8 is moved up to the grid (k + 0.5) / 8 with
 * 1591 - k a whole half, which makes the fma's constant exact; P <= 256
 * (448 with FA_LAZY).
 * A CPU simulation of the output's error from P alone at logits of unit
 * spread: 2.62e-2 with P rounded to E4M3, 3.02e-2 with the ramp.
 * The F32 scores with the ramp's codes (no F16): 640 TFLOP/s; F16 scores
 * with exponentials of half pairs: 556.
 *
 * The row sums: each tile's P times a column of ones (a row of V^T's 8
 * extra rows, FA_VX) into a fresh m64n8k32 accumulator, added to l in F32
 * once the tile's products are done (session 12: 616-623 against 594-597
 * TFLOP/s with 64 additions a thread and tile on the FMA pipe). The ones
 * as a 65th column of the P V product itself (72 columns, the sums
 * accumulated across all tiles inside the tensor cores) ran 624 / 614 but
 * erred 8.6e-2: FP8 products accumulate with fewer bits than F32, which a
 * sum of positive terms growing to 10^5 shows.
 */
/* bytes after each E4M3 V^T stage: 8 more rows of V^T, a row of ones and
   7 of zeros, the B operand of the sums' product */
#define FA_VX(eb)   ((eb) == 1 ? 1024 : 0)

/* the kernel's shared memory; EB bytes an element (2: BF16, 1: E4M3,
   where v holds V^T) */
template <int EB>
struct fa_smem {
    uint8_t    q[2][FA_NWG * 64 * FA_D * EB];  /* a block's units' Q in
                                                  turn */
    uint8_t    k[FA_NST(EB)][FA_BN * FA_D * EB];
    uint8_t    v[FA_NST(EB)][FA_BN * FA_D * EB + FA_VX(EB)];
    uint64_t   full[FA_NST(EB)];
    uint64_t   empty[FA_NST(EB)];
    uint64_t   qbar[2];                 /* q[i] loaded */
    uint64_t   qfree[2];                /* q[i] read by the last scores */
};

#define FA_SMEM_BYTES(eb)  (sizeof(fa_smem<eb>) + 1024)


#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

/* one (64 x rows) box of the (64, H, L, B) view into shared memory */
static __device__ __forceinline__ void
fa_tma_load(void *dst, const CUtensorMap *map, int h, int row, int b,
    uint64_t *bar)
{
    asm volatile("cp.async.bulk.tensor.4d.shared::cluster.global"
                 ".mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4, %5}],"
                 " [%6];"
                 :: "r"(sm90_smem_addr(dst)), "l"((uint64_t) map), "r"(0),
                    "r"(h), "r"(row), "r"(b), "r"(sm90_smem_addr(bar))
                 : "memory");
}


/*
 * A wgmma shared-memory descriptor for a 128-byte-swizzled operand whose
 * rows are 128 bytes: 8-row groups 1024 bytes apart (both offsets say so:
 * the one that does not apply to an operand of one atom is unused).
 */
static __device__ __forceinline__ uint64_t
fa_desc(const void *p, uint32_t lbo)
{
    uint64_t  d;

    d = (uint64_t) ((sm90_smem_addr(p) & 0x3ffff) >> 4);
    d |= (uint64_t) ((lbo & 0x3ffff) >> 4) << 16;
    d |= (uint64_t) (1024 >> 4) << 32;
    d |= (uint64_t) 1 << 62;
    return d;
}


/* keeps the compiler from moving reads of r above the last wait */
static __device__ __forceinline__ void
fa_fence_regs(float *r, int n)
{
    for (int i = 0; i < n; i++) {
        asm volatile("" : "+f"(r[i]) :: "memory");
    }
}


static __device__ __forceinline__ float
fa_exp2(float x)
{
    float  y;

    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}


static __device__ __forceinline__ uint32_t
fa_pack_bf16(float lo, float hi)
{
    __nv_bfloat162  v = __floats2bfloat162_rn(lo, hi);

    return *(uint32_t *) &v;
}




static __device__ __forceinline__ void
fa_wgmma_m64n128k16_ss_bf16(float *d, uint64_t da, uint64_t db, int acc)
{
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
        SM90_REGS64 ", %64, %65, p, 1, 1, 0, 0;\n}\n"
        : SM90_ACC64(d)
        : "l"(da), "l"(db), "r"(acc));
}

static __device__ __forceinline__ void
fa_wgmma_m64n64k16_rs_bf16(float *d, const uint32_t *a, uint64_t db)
{
    asm volatile(
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
        SM90_REGS32 ", {%32, %33, %34, %35}, %36, 1, 1, 1, 1;\n"
        : SM90_ACC32(d, 0)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db));
}





/*
 * The BF16 kernel's online softmax of one score tile, in place: s[4 n + 2
 * r + c] is row 16 w + g + 8 r, column 8 n + 2 qd + c of the 64 x 128
 * tile (the wgmma accumulator layout); columns from valid on are masked.
 * m, l: the running maximum (in log2 units) and this thread's part of the
 * sum of rows g and g + 8; a: the factor the output accumulated so far
 * takes. P = exp2(x - m).
 */
static __device__ __forceinline__ void
fa_softmax(float *s, float *m, float *l, float *a, float sl2, int valid,
    int qd)
{
    float  mx0 = -INFINITY, mx1 = -INFINITY, mn0, mn1, r0 = 0.f, r1 = 0.f;
    int    i;

    if (valid < FA_BN) {
        for (i = 0; i < 64; i++) {
            if (8 * (i / 4) + 2 * qd + (i & 1) >= valid) {
                s[i] = -INFINITY;
            }
        }
    }
    {
        /* the rows' maxima as trees: 5 dependent steps, not 16 */
        float  x0[8], x1[8];

        for (i = 0; i < 8; i++) {
            x0[i] = fmaxf(fmaxf(s[8 * i], s[8 * i + 1]),
                          fmaxf(s[8 * i + 4], s[8 * i + 5]));
            x1[i] = fmaxf(fmaxf(s[8 * i + 2], s[8 * i + 3]),
                          fmaxf(s[8 * i + 6], s[8 * i + 7]));
        }
        for (i = 0; i < 4; i++) {
            x0[i] = fmaxf(x0[i], x0[i + 4]);
            x1[i] = fmaxf(x1[i], x1[i + 4]);
        }
        mx0 = fmaxf(fmaxf(x0[0], x0[2]), fmaxf(x0[1], x0[3]));
        mx1 = fmaxf(fmaxf(x1[0], x1[2]), fmaxf(x1[1], x1[3]));
    }
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffff, mx0, 1));
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffff, mx0, 2));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffff, mx1, 1));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffff, mx1, 2));
    mn0 = fmaxf(m[0], mx0 * sl2);
    mn1 = fmaxf(m[1], mx1 * sl2);
    a[0] = fa_exp2(m[0] - mn0);
    a[1] = fa_exp2(m[1] - mn1);
    m[0] = mn0;
    m[1] = mn1;
    {
        /* the sums in four parts a row, 4 additions deep, not 16 */
        float  p0[4] = { 0.f, 0.f, 0.f, 0.f }, p1[4] = { 0.f, 0.f, 0.f, 0.f };

        for (i = 0; i < 64; i += 4) {
            s[i] = fa_exp2(fmaf(s[i], sl2, -mn0));
            s[i + 1] = fa_exp2(fmaf(s[i + 1], sl2, -mn0));
            s[i + 2] = fa_exp2(fmaf(s[i + 2], sl2, -mn1));
            s[i + 3] = fa_exp2(fmaf(s[i + 3], sl2, -mn1));
            p0[(i / 4) & 3] += s[i] + s[i + 1];
            p1[(i / 4) & 3] += s[i + 2] + s[i + 3];
        }
        r0 = (p0[0] + p0[1]) + (p0[2] + p0[3]);
        r1 = (p1[0] + p1[1]) + (p1[2] + p1[3]);
    }
    l[0] = l[0] * a[0] + r0;
    l[1] = l[1] * a[1] + r1;
}


/* P as the A operand of O += P V: k16 step kk = score columns 16 kk.. */
static __device__ __forceinline__ void
fa_pack_p_bf16(uint32_t *pa, const float *s)
{
    for (int kk = 0; kk < 8; kk++) {
        const float  *p0 = &s[8 * kk], *p1 = &s[8 * kk + 4];

        pa[4 * kk] = fa_pack_bf16(p0[0], p0[1]);
        pa[4 * kk + 1] = fa_pack_bf16(p0[2], p0[3]);
        pa[4 * kk + 2] = fa_pack_bf16(p1[0], p1[1]);
        pa[4 * kk + 3] = fa_pack_bf16(p1[2], p1[3]);
    }
}


static __device__ __forceinline__ void
fa_rescale(float *o, const float *a)
{
    for (int i = 0; i < 32; i += 4) {
        o[i] *= a[0];
        o[i + 1] *= a[0];
        o[i + 2] *= a[1];
        o[i + 3] *= a[1];
    }
}


/* S (64 x 128) = Q (64 x 64) K^T: four k16 steps, 32 bytes apart inside
   the swizzled rows */
static __device__ __forceinline__ void
fa_issue_qk_bf16(float *s, uint64_t dq, const void *k)
{
    uint64_t  dk = fa_desc(k, 16);

    for (int kk = 0; kk < 4; kk++) {
        fa_wgmma_m64n128k16_ss_bf16(s, dq + 2 * kk, dk + 2 * kk, kk > 0);
    }
}


/* O (64 x 64) += P (64 x 128) V (128 x 64): V is the MN-major operand,
   each k16 step 16 rows = 2048 bytes further */
static __device__ __forceinline__ void
fa_issue_pv_bf16(float *o, const uint32_t *pa, const void *v)
{
    uint64_t  dv = fa_desc(v, 1024);

    for (int kk = 0; kk < 8; kk++) {
        fa_wgmma_m64n64k16_rs_bf16(o, &pa[4 * kk],
                                   dv + (uint64_t) (128 * kk));
    }
}

/*
 * The E4M3 kernel's pieces. FP8 wgmma reads both operands K-major, so V
 * arrives transposed ((B, H, 64, Lp) E4M3, vt8.h's layout), and
 * P, the A operand from registers, must hold four consecutive k of a row
 * per register where the score accumulator holds pairs 8 columns apart.
 * Instead of shuffling P between threads, the keys of V^T are permuted
 * within each group of 16 (vt8_key): position 4 t + j of a group holds
 * key 8 (j >> 1) + 2 t + (j & 1), which is exactly what thread t of a
 * quad holds at slot j. The sum over keys does not care about the order.
 */
static __device__ __forceinline__ uint64_t
fa_desc8(const void *p, uint32_t sbo, uint64_t layout)
{
    uint64_t  d;

    d = (uint64_t) ((sm90_smem_addr(p) & 0x3ffff) >> 4);
    d |= (uint64_t) 1 << 16;
    d |= (uint64_t) ((sbo & 0x3ffff) >> 4) << 32;
    d |= layout << 62;
    return d;
}


static __device__ __forceinline__ void
fa_wgmma_m64n64k32_rs_e4m3(float *d, const uint32_t *a, uint64_t db)
{
    asm volatile(
        "wgmma.mma_async.sync.aligned.m64n64k32.f32.e4m3.e4m3 "
        SM90_REGS32 ", {%32, %33, %34, %35}, %36, 1, 1, 1;\n"
        : SM90_ACC32(d, 0)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db));
}


/* P's row sums: 8 columns, the first against a row of ones */
static __device__ __forceinline__ void
fa_wgmma_m64n8k32_rs_e4m3(float *d, const uint32_t *a, uint64_t db, int acc)
{
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %9, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n8k32.f32.e4m3.e4m3 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, %8, p, 1, 1;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(acc));
}


#define FA_RACC8(d, i)                                                      \
    "+r"(d[i]), "+r"(d[i + 1]), "+r"(d[i + 2]), "+r"(d[i + 3]),             \
    "+r"(d[i + 4]), "+r"(d[i + 5]), "+r"(d[i + 6]), "+r"(d[i + 7])


/* S (64 x 128) = Q K^T in E4M3 with F16 accumulators, two k32 steps 32
   bytes apart inside the 64-byte swizzled rows: register i holds the F32
   layout's slots 2 i (low half) and 2 i + 1 */
static __device__ __forceinline__ void
fa_issue_qk8d(uint32_t *d, uint64_t dq, uint64_t dk)
{
    for (int kk = 0; kk < 2; kk++) {
        asm volatile(
            "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
            "wgmma.mma_async.sync.aligned.m64n128k32.f16.e4m3.e4m3 "
            SM90_REGS32 ", %32, %33, p, 1, 1;\n}\n"
            : FA_RACC8(d, 0), FA_RACC8(d, 8), FA_RACC8(d, 16),
              FA_RACC8(d, 24)
            : "l"(dq + 2 * kk), "l"(dk + 2 * kk), "r"(kk > 0 ? 1 : 0));
    }
}


/* the same from K's tile in shared memory */
static __device__ __forceinline__ void
fa_issue_qk8(uint32_t *d, uint64_t dq, const void *k)
{
    fa_issue_qk8d(d, dq, fa_desc8(k, 512, 2));
}


static __device__ __forceinline__ void
fa_fence_u32(uint32_t *r, int n)
{
    for (int i = 0; i < n; i++) {
        asm volatile("" : "+r"(r[i]) :: "memory");
    }
}


static __device__ __forceinline__ uint32_t
fa_hmax2(uint32_t x, uint32_t y)
{
    uint32_t  d;

    asm("max.f16x2 %0, %1, %2;" : "=r"(d) : "r"(x), "r"(y));
    return d;
}


/*
 * The E4M3 kernel's online softmax of a tile of F16 scores, in place, into
 * P's codes (the low bytes of each half; see FA_NST's comment): even
 * registers are row g, odd ones row g + 8, register i columns 8 (i / 2) +
 * 2 qd and + 1. m: the running maxima (log2 units, on the grid (k + 0.5)
 * / 8 + 8); a: the factors the output so far takes. s8 = 8 sl2, a power
 * of two (the launcher checks).
 */
static __device__ __forceinline__ void
fa_softmax8(uint32_t *s, float *m, float *a, float s8, int valid, int qd)
{
    uint32_t  x[16], mm, c0, c1, h8;
    float     mx0, mx1, mn0, mn1, k0, k1;
    int       i;

    if (valid < FA_BN) {
        for (i = 0; i < 32; i++) {
            int  col = 8 * (i / 2) + 2 * qd;

            if (col >= valid) {
                s[i] = 0xfc00fc00u;                     /* -inf, -inf */
            } else if (col + 1 >= valid) {
                s[i] = (s[i] & 0xffffu) | 0xfc000000u;
            }
        }
    }
    /* the maxima of the even (row g) and odd (row g + 8) registers */
    for (i = 0; i < 16; i++) {
        x[i] = fa_hmax2(s[i], s[i + 16]);
    }
    for (i = 0; i < 8; i++) {
        x[i] = fa_hmax2(x[i], x[i + 8]);
    }
    for (i = 0; i < 4; i++) {
        x[i] = fa_hmax2(x[i], x[i + 4]);
    }
    x[0] = fa_hmax2(x[0], x[2]);
    x[1] = fa_hmax2(x[1], x[3]);
    /* each row's two halves folded: (row g, row g + 8), then the quad */
    mm = fa_hmax2(__byte_perm(x[0], x[1], 0x5410),
                  __byte_perm(x[0], x[1], 0x7632));
    mm = fa_hmax2(mm, __shfl_xor_sync(0xffffffff, mm, 1));
    mm = fa_hmax2(mm, __shfl_xor_sync(0xffffffff, mm, 2));
    mx0 = __half2float(__ushort_as_half((unsigned short) (mm & 0xffffu)));
    mx1 = __half2float(__ushort_as_half((unsigned short) (mm >> 16)));
    /* the new maxima less 8, up to (k + 0.5) / 8 with 1591 - k a whole
       half (the fma's constant); FA_LAZY: m where it was (on the grid,
       so the lines below give it back exactly and a = 1) unless the
       tile's maximum passed it by more than FA_LAZY_HEAD */
    s8 = __half2float(__float2half_rn(s8));     /* the power of two */
    mx0 *= s8 * 0.125f;
    mx1 *= s8 * 0.125f;
#if FA_LAZY
    mn0 = mx0 > m[0] + FA_LAZY_HEAD ? mx0 + FA_LAZY_OVER : m[0];
    mn1 = mx1 > m[1] + FA_LAZY_HEAD ? mx1 + FA_LAZY_OVER : m[1];
#else
    mn0 = fmaxf(m[0], mx0);
    mn1 = fmaxf(m[1], mx1);
#endif
    k0 = ceilf(fmaf(8.f, mn0 - 8.f, -0.5f));
    k1 = ceilf(fmaf(8.f, mn1 - 8.f, -0.5f));
    c0 = __half_as_ushort(__float2half_rd(1591.f - k0));
    c1 = __half_as_ushort(__float2half_rd(1591.f - k1));
    k0 = 1591.f - __half2float(__ushort_as_half((unsigned short) c0));
    k1 = 1591.f - __half2float(__ushort_as_half((unsigned short) c1));
    mn0 = fmaf(k0 + 0.5f, 0.125f, 8.f);
    mn1 = fmaf(k1 + 0.5f, 0.125f, 8.f);
    /* FA_LAZY: exactly 1 where m stayed */
    a[0] = FA_LAZY && mn0 == m[0] ? 1.f : fa_exp2(m[0] - mn0);
    a[1] = FA_LAZY && mn1 == m[1] ? 1.f : fa_exp2(m[1] - mn1);
    m[0] = mn0;
    m[1] = mn1;
    c0 *= 0x10001u;
    c1 *= 0x10001u;
    h8 = (uint32_t) __half_as_ushort(__float2half_rn(s8)) * 0x10001u;
    for (i = 0; i < 32; i++) {
        uint32_t  t;

        asm("fma.rn.f16x2 %0, %1, %2, %3;" : "=r"(t)
            : "r"(s[i]), "r"(h8), "r"(i & 1 ? c1 : c0));
        s[i] = fa_hmax2(t, 0x66006600u);                /* 1536: code 0 */
    }
}


/* P's codes (bytes 0 and 2 of each register) as E4M3 A operands: k32
   step kk = score columns 32 kk.., in the keys' permuted order */
static __device__ __forceinline__ void
fa_pack_p8(uint32_t *pa, const uint32_t *s)
{
    for (int kk = 0; kk < 4; kk++) {
        const uint32_t  *p = &s[8 * kk];

        pa[4 * kk] = __byte_perm(p[0], p[2], 0x6420);
        pa[4 * kk + 1] = __byte_perm(p[1], p[3], 0x6420);
        pa[4 * kk + 2] = __byte_perm(p[4], p[6], 0x6420);
        pa[4 * kk + 3] = __byte_perm(p[5], p[7], 0x6420);
    }
}


/* O (64 x 64) += P (64 x 128) V (128 x 64), V^T rows 128 keys = 128 bytes;
   t = P's row sums, its first step not reading t (zeroing t between the
   products made ptxas fence them): t[0] and t[2] in quad lane 0 */
static __device__ __forceinline__ void
fa_issue_pv8d(float *o, float *t, const uint32_t *pa, uint64_t dv)
{
    /* the 8 rows after the tile: its bytes >> 4 further (shared memory
       addresses stay below 2^18, so the descriptor's field never wraps) */
    uint64_t  d1 = dv + ((FA_BN * FA_D) >> 4);

    for (int kk = 0; kk < 4; kk++) {
        fa_wgmma_m64n64k32_rs_e4m3(o, &pa[4 * kk], dv + 2 * kk);
    }
    for (int kk = 0; kk < 4; kk++) {
        fa_wgmma_m64n8k32_rs_e4m3(t, &pa[4 * kk], d1 + 2 * kk, kk > 0);
    }
}


static __device__ __forceinline__ void
fa_issue_pv8(float *o, float *t, const uint32_t *pa, const void *vt)
{
    fa_issue_pv8d(o, t, pa, fa_desc8(vt, 1024, 1));
}


/* the BF16 (EB 2) or E4M3 (EB 1) P V product */
template <int EB>
static __device__ __forceinline__ void
fa_issue_pv(float *o, float *t, const uint32_t *pa, const void *v)
{
    if (EB == 1) {
        fa_issue_pv8(o, t, pa, v);
    } else {
        fa_issue_pv_bf16(o, pa, v);
    }
}


/* the E4M3 output's scale from V's largest magnitude: amax / 448 (1 for
   zeros) */
static __device__ __forceinline__ float
fa8_vscale(float amax)
{
    return amax > 0.f ? amax * (1.f / 448.f) : 1.f;
}


/*
 * One K/V tile j > 0 of a consumer warpgroup's main loop: tile j's scores
 * issued with tile j - 1's P V, tile j's softmax while that product runs,
 * then O rescaled and tile j's P packed for the next step. LAST: the
 * sequence's last tile, whose keys past lk are masked; every other tile
 * has FA_BN keys, and its softmax no masking.
 */
template <int EB, bool LAST>
static __device__ __forceinline__ void
fa_tile(fa_smem<EB> *sm, int j, unsigned uj, int lk, float sl2, int qd,
    int lane, uint64_t dq, const float *vts, uint32_t *sh, float *sacc,
    float *oacc, float *t8, uint32_t *pa, float *m, float *l, float *a,
    float *vs)
{
    const int       sv = EB == 1;       /* F16 scores, sums on tensor
                                           cores */
    const int       valid = LAST ? lk - j * FA_BN : FA_BN;
    /* uj: the tile's index among the block's (its units' tiles in turn),
       > 0, which picks its stage and phase (unsigned: no sign fix-ups) */
    int             sp = (int) ((uj - 1) % FA_NST(EB));
    int             s = (int) (uj % FA_NST(EB));
    float           vn = EB == 1 ? vts[j] : 1.f, ar[2];

    sm90_mbar_wait(&sm->full[s], (int) ((uj / FA_NST(EB)) & 1));
    sm90_wgmma_fence();
    if (sv) {
        /* stage s's descriptors: stage 0's (loop-invariant) plus s
           strides, fewer instructions than building each from its
           stage's address; the same descriptors */
        fa_issue_qk8d(sh, dq, fa_desc8(sm->k[0], 512, 2)
                              + (uint64_t) s * (sizeof(sm->k[0]) >> 4));
    } else {
        fa_issue_qk_bf16(sacc, dq, sm->k[s]);
    }
    sm90_wgmma_commit();
    if (sv) {
        fa_issue_pv8d(oacc, t8, pa, fa_desc8(sm->v[0], 1024, 1)
                                    + (uint64_t) sp
                                      * (sizeof(sm->v[0]) >> 4));
    } else {
        fa_issue_pv<EB>(oacc, t8, pa, sm->v[sp]);
    }
    sm90_wgmma_commit();
    asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");
    if (sv) {
        fa_fence_u32(sh, 32);
        fa_softmax8(sh, m, a, 8.f * sl2, valid, qd);
    } else {
        fa_fence_regs(sacc, 64);
        fa_softmax(sacc, m, l, a, sl2, valid, qd);
    }
    sm90_wgmma_wait<0>();
    fa_fence_regs(oacc, 32);
    if (lane == 0) {
        sm90_mbar_arrive(&sm->empty[sp]);
    }
    if (sv) {
        /* tile j - 1's sums, in F32 from here on */
        fa_fence_regs(t8, 4);
        l[0] = (l[0] + t8[0]) * a[0];
        l[1] = (l[1] + t8[2]) * a[1];
    }
    if (EB == 1) {
        /* FA_LAZY: the scales are powers of two (vt8.h), their ratio from
           the exponents, exactly; O rescaled only where a row of the warp
           needs it */
        float  ratio = FA_LAZY
                       ? __uint_as_float(__float_as_uint(*vs)
                                         - __float_as_uint(vn) + 0x3f800000u)
                       : *vs / vn;

        ar[0] = a[0] * ratio;
        ar[1] = a[1] * ratio;
        *vs = vn;
        if (!FA_LAZY
            || __any_sync(0xffffffffu, ar[0] != 1.f || ar[1] != 1.f))
        {
            fa_rescale(oacc, ar);
        }
    } else {
        fa_rescale(oacc, a);
    }
    if (sv) {
        fa_pack_p8(pa, sh);
    } else {
        fa_pack_p_bf16(pa, sacc);
    }
}


/*
 * FA_IDLE (-DFA_IDLE=0: the kernel before 2026-12-04): a consumer
 * warpgroup whose 64 query rows all lie past Lq (the last query block of
 * a head: at 4429 tokens its 13 rows are the first warpgroup's, the other
 * two have none) runs no products for that unit: it only keeps the
 * barriers' count, waiting for each of the unit's K/V tiles as the others
 * do (so it never arrives a phase early) and releasing it, and the Q
 * buffer. Its rows were computed from Q's zero padding and never stored,
 * so the output's bits do not change. Session 36 made this an early
 * return inside fa_unit, which moved ptxas's schedule of the main loop
 * (8% slower); here it is a call of its own (noinline) from the unit
 * loop, on the warpgroup's index made warp-uniform for ptxas (a shuffle
 * from lane 0), so fa_unit's code is what it is without it. As a plain
 * branch on wg it cost 224 more SASS instructions (the loop's stage and
 * descriptor arithmetic moved off the uniform datapath): 38 heads 0.459 /
 * 0.470 ms against 0.429 / 0.423 (H200, run.sh s37i at 138c537). With
 * the shuffle, 64 more (about fa_idle's own), in turn on one H200 (run.sh
 * s37i, the same output hashes and image bytes): 38 heads 0.4266 /
 * 0.4220 ms against 0.4306 / 0.4288 (E4M3 out 0.3933 / 0.4049 against
 * 0.3937 / 0.3942; BF16 0.790 / 0.800 against 0.800 / 0.811), 24 heads
 * 0.2576 / 0.2718 against 0.2737 / 0.2686; Large's 28-step step 63.07 /
 * 62.88 ms against 63.27 / 63.27, Medium's 25.20 / 24.96 against 25.04 /
 * 25.16. It cannot shorten the kernel by waves (the 1,748 full units of
 * 38 heads still take 14 of 132 blocks); it spares the card the idle
 * rows' products and softmax, 2 of the 3 warpgroups of 76 of 1,824
 * units, which under the power limit is what a step is made of.
 */
#ifndef FA_IDLE
#define FA_IDLE  1
#endif
/* Not kept (session 38, run.sh g8qkv, fattn_check in turn, the same
   hashes): fa_unit given the warp-uniform index too (-DFA_CWU=1, Q's
   descriptor on the uniform datapath, 16 fewer SASS instructions at
   E4M3): 38 heads 0.4300 / 0.4286 ms against 0.4190 / 0.4205. */

template <int EB>
static __device__ __noinline__ void
fa_idle(fa_smem<EB> *sm, int nkv, int n, unsigned it0, int lane)
{
    int  j;

    sm90_mbar_wait(&sm->qbar[n & 1], (n / 2) & 1);
    for (j = 0; j < nkv; j++) {
        unsigned  it = it0 + (unsigned) j;
        int       s = (int) (it % FA_NST(EB));

        sm90_mbar_wait(&sm->full[s], (int) ((it / FA_NST(EB)) & 1));
        if (lane == 0) {
            sm90_mbar_arrive(&sm->empty[s]);
        }
    }
    if (lane == 0) {
        sm90_mbar_arrive(&sm->qfree[n & 1]);
    }
}


/*
 * One unit of the kernel (query block qb of head h of batch b) by a
 * consumer warpgroup cw (thread t of it): the block's n-th unit, whose
 * K/V tiles follow the block's it0 tiles before it in the stages.
 */
template <int EB>
static __device__ __forceinline__ void
fa_unit(fa_smem<EB> *sm, __nv_bfloat16 *o, int lq, int lk, float sl2,
    const float *vts, const float *vamax, float *osc, int hh, int nkv,
    int qb, int h, int b, int n, unsigned it0, int t, int cw)
{
    const int     box = 64 * FA_D * EB;     /* bytes of a 64-row box */
    const int     sv = EB == 1;         /* F16 scores, sums on tensor
                                           cores */
    int           w = t / 32, lane = t % 32, g = lane / 4, qd = lane % 4;
    int           i, j, s, s0 = (int) (it0 % FA_NST(EB));
    float         oacc[32], sacc[64], m[2], l[2], a[2], vs = 1.f;
    uint32_t      sh[32];
    float         t8[4] = { 0.f, 0.f, 0.f, 0.f };
    float         so = 1.f;
    uint32_t      pa[32];
    uint64_t      dq;
    int64_t       row0, ld;
    const float  *vt = vts;

    if (EB == 1) {
        /* O is kept in units of the scale of the tile whose P V is
           next: each tile's rescale of O also multiplies by the last
           tile's scale over the next one's */
        vt = vts + ((int64_t) b * hh + h) * nkv;
        vs = vt[0];
    }
    if (EB == 1 && osc) {
        /* E4M3 output: its scale (below) loaded here, where the wait
           for Q hides it, not after the loop */
        float  mx = 0.f;

        for (i = lane; i < hh; i += 32) {
            mx = fmaxf(mx, vamax[b * hh + i]);
        }
        for (i = 16; i > 0; i >>= 1) {
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffff, mx, i));
        }
        so = fa8_vscale(mx);
    }
    for (i = 0; i < 32; i++) {
        oacc[i] = 0.f;
    }
    m[0] = m[1] = -INFINITY;
    l[0] = l[1] = 0.f;

    sm90_mbar_wait(&sm->qbar[n & 1], (n / 2) & 1);
    dq = EB == 1 ? fa_desc8(sm->q[n & 1] + cw * box, 512, 2)
                 : fa_desc(sm->q[n & 1] + cw * box, 16);

    /* tile 0's scores and softmax; then each step issues tile j's
       scores and tile j - 1's P V, and runs tile j's softmax while
       the P V product is in flight (E4M3: F16 scores in sh) */
    sm90_mbar_wait(&sm->full[s0], (int) ((it0 / FA_NST(EB)) & 1));
    sm90_wgmma_fence();
    if (sv) {
        fa_issue_qk8(sh, dq, sm->k[s0]);
    } else {
        fa_issue_qk_bf16(sacc, dq, sm->k[s0]);
    }
    sm90_wgmma_commit();
    sm90_wgmma_wait<0>();
    if (sv) {
        fa_fence_u32(sh, 32);
        fa_softmax8(sh, m, a, 8.f * sl2, lk, qd);
        fa_pack_p8(pa, sh);
    } else {
        fa_fence_regs(sacc, 64);
        fa_softmax(sacc, m, l, a, sl2, lk, qd);
        fa_pack_p_bf16(pa, sacc);
    }

    /* every tile but the last has FA_BN keys: its softmax has no
       masking, whose branch made ptxas copy the 32 score registers
       out of the product's accumulators in every tile */
    for (j = 1; j + 1 < nkv; j++) {
        fa_tile<EB, FA_MASK_ALL != 0>(sm, j, it0 + (unsigned) j, lk,
                                      sl2, qd, lane, dq, vt, sh, sacc,
                                      oacc, t8, pa, m, l, a, &vs);
    }
    if (nkv > 1) {
        fa_tile<EB, true>(sm, nkv - 1, it0 + (unsigned) nkv - 1, lk,
                          sl2, qd, lane, dq, vt, sh, sacc, oacc, t8, pa,
                          m, l, a, &vs);
    }
    /* the unit's scores are done: its Q buffer may take the unit
       after the next */
    if (lane == 0) {
        sm90_mbar_arrive(&sm->qfree[n & 1]);
    }

    s = (int) ((it0 + (unsigned) nkv - 1) % FA_NST(EB));
    sm90_wgmma_fence();
    fa_issue_pv<EB>(oacc, t8, pa, sm->v[s]);
    sm90_wgmma_commit();
    sm90_wgmma_wait<0>();
    fa_fence_regs(oacc, 32);
    if (lane == 0) {
        sm90_mbar_arrive(&sm->empty[s]);    /* the last tile's stage */
    }

    if (sv) {
        /* quad lane 0's sums: rows g and g + 8 */
        fa_fence_regs(t8, 4);
        l[0] = __shfl_sync(0xffffffff, l[0] + t8[0], lane & ~3);
        l[1] = __shfl_sync(0xffffffff, l[1] + t8[2], lane & ~3);
    } else {
        l[0] += __shfl_xor_sync(0xffffffff, l[0], 1);
        l[0] += __shfl_xor_sync(0xffffffff, l[0], 2);
        l[1] += __shfl_xor_sync(0xffffffff, l[1], 1);
        l[1] += __shfl_xor_sync(0xffffffff, l[1], 2);
    }
    l[0] = vs / l[0];
    l[1] = vs / l[1];

    /* the lane's rows row0 and row0 + 8 of o, rows ld elements long */
    row0 = (int64_t) (qb * FA_NWG + cw) * 64 + 16 * w + g;
    ld = (int64_t) hh * FA_D;

    if (EB == 1 && osc) {
        /* E4M3 rows for the out projection: one scale for batch b's
           rows, the largest of its heads' V scales, which bounds |O|
           (a convex combination of V's rows), so no code passes 448 */
        uint8_t  *o8 = (uint8_t *) o;

        l[0] /= so;
        l[1] /= so;
        /* a lane holds 2 codes of row row0 and 2 of row0 + 8 in each
           group of 8 columns: lanes qd, qd ^ 1 swap halves so the
           even one stores 4 codes of row0, the odd one 4 of row0 + 8 */
        for (i = 0; i < 32; i += 4) {
            int64_t   col = (int64_t) h * FA_D + 8 * (i / 4)
                            + 2 * (qd & ~1);
            uint32_t  lo = __nv_cvt_float2_to_fp8x2(
                               make_float2(oacc[i] * l[0],
                                           oacc[i + 1] * l[0]),
                               __NV_SATFINITE, __NV_E4M3);
            uint32_t  hi = __nv_cvt_float2_to_fp8x2(
                               make_float2(oacc[i + 2] * l[1],
                                           oacc[i + 3] * l[1]),
                               __NV_SATFINITE, __NV_E4M3);
            uint32_t  got = __shfl_xor_sync(0xffffffff,
                                            qd & 1 ? lo : hi, 1);
            int64_t   row = qd & 1 ? row0 + 8 : row0;

            if (row < lq) {
                *(uint32_t *) &o8[((int64_t) b * lq + row) * ld + col] =
                    qd & 1 ? got | (hi << 16) : lo | (got << 16);
            }
        }
        if (h == 0 && qd == 0) {
            if (row0 < lq) {
                osc[(int64_t) b * lq + row0] = so;
            }
            if (row0 + 8 < lq) {
                osc[(int64_t) b * lq + row0 + 8] = so;
            }
        }
    } else {
        for (i = 0; i < 32; i += 4) {
            int64_t  col = (int64_t) h * FA_D + 8 * (i / 4) + 2 * qd;

            if (row0 < lq) {
                *(uint32_t *) &o[((int64_t) b * lq + row0) * ld + col] =
                    fa_pack_bf16(oacc[i] * l[0], oacc[i + 1] * l[0]);
            }
            if (row0 + 8 < lq) {
                *(uint32_t *) &o[((int64_t) b * lq + row0 + 8) * ld
                                 + col] =
                    fa_pack_bf16(oacc[i + 2] * l[1],
                                 oacc[i + 3] * l[1]);
            }
        }
    }
}

#endif /* __CUDA_ARCH_FEAT_SM90_ALL */


/*
 * Units of ceil(Lq / (64 FA_NWG)) query blocks x H x B (query block
 * fastest), unit u to block u mod grid, each block's in turn (a
 * persistent kernel where the grid is the SMs: the producer loads the
 * next unit's Q, into the other of two buffers, and its first K/V tiles
 * while the consumers finish one; a grid of one block a unit is the
 * kernel before 2026-12-04), 128 (FA_NWG + 1) threads:
 * warpgroup 0 the producer, 1..FA_NWG the consumers of query rows
 * [64 (wg - 1), 64 wg) of the unit. o: (B, Lq, H * 64) BF16. The product
 * of tile j + 1's scores and tile j's P V are in flight while tile
 * j + 1's softmax runs (FlashAttention-3's intra-warpgroup overlap).
 *
 * EB 2: BF16 q, k, v (B, L, H * 64); sl2 = scale * log2(e).
 * EB 1, the E4M3 variant (attention.cu's sd_cuda_attention_fp8, the
 * MMDiT's joint attention under the FP8 policy's "attn" kind; H200, B = 2,
 * 4429 tokens: 38 heads 0.437-0.444 ms, 860-873 TFLOP/s (session 26),
 * where the BF16 kernel takes 0.76-0.80 and cuDNN's BF16 SDPA 0.93; 24
 * heads 801-828; error against F32 5.7e-2, P and V at 3 mantissa bits,
 * BF16 2.3e-3):
 * q, k (B, L, H * 64) E4M3, v = V^T (B, H, 64, Lp) E4M3 with its keys
 * permuted (vt8_key) and zeros past Lk, vts its tiles' scales (vt8.h:
 * one a K/V tile, each a power of two, which FA_LAZY's ratio of two of
 * them from their exponents needs); sl2 = Q's scale times K's times
 * scale log2(e), 8 sl2 a power of two (sd_fp8_attn_scales); O is kept
 * in the units of the scale of the tile whose P V product comes next
 * (each tile's rescale of O by the softmax also multiplies by the ratio
 * of the two tiles' scales), and the last tile's scales the output. P's
 * codes are the linear ramp of FA_NST's comment, P in [0, 448] (FA_LAZY;
 * [0, 256] without), so E4M3's normal range reaches 2^-12.75 of a row's
 * largest just after its maximum moved (2^-14 without FA_LAZY). With
 * osc the output is E4M3 too (o read as bytes) and osc[b Lq + row] its
 * rows' scale, fa8_vscale of batch b's largest vamax (written by head 0).
 */
template <int EB>
__global__ void __launch_bounds__(128 * (FA_NWG + 1), 1)
fattn_kernel(const __grid_constant__ CUtensorMap tq,
    const __grid_constant__ CUtensorMap tk,
    const __grid_constant__ CUtensorMap tv, __nv_bfloat16 *o, int lq,
    int lk, float sl2, const float *vts, const float *vamax, float *osc,
    int hh, int units)
{
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    extern __shared__ unsigned char  fa_raw[];
    fa_smem<EB>  *sm = (fa_smem<EB> *) (((uintptr_t) fa_raw + 1023)
                                        & ~(uintptr_t) 1023);
    int           wg = threadIdx.x / 128, t = threadIdx.x % 128;
    int           nqb = (lq + 64 * FA_NWG - 1) / (64 * FA_NWG);
    int           nkv = (lk + FA_BN - 1) / FA_BN, j, s, u, n;
    const int     box = 64 * FA_D * EB;     /* bytes of a 64-row box */

    if (threadIdx.x == 0) {
        for (s = 0; s < FA_NST(EB); s++) {
            sm90_mbar_init(&sm->full[s], 1);
            sm90_mbar_init(&sm->empty[s], 4 * FA_NWG);
        }
        for (s = 0; s < 2; s++) {
            sm90_mbar_init(&sm->qbar[s], 1);
            sm90_mbar_init(&sm->qfree[s], 4 * FA_NWG);
        }
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    if (FA_VX(EB)) {
        /* V^T's rows 64..71 after each stage's tile (TMA never writes
           them): ones (E4M3 0x38; a row of equal bytes is its own
           swizzle), then zeros; made visible to wgmma's reads */
        const int  nw = FA_VX(EB) ? FA_VX(EB) / 4 : 1;     /* words */

        for (j = threadIdx.x; j < FA_NST(EB) * nw; j += blockDim.x) {
            *(uint32_t *) (sm->v[j / nw] + FA_BN * FA_D * EB + 4 * (j % nw))
                = j % nw < 32 ? 0x38383838u : 0u;
        }
        asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    }
    __syncthreads();

    if (wg == 0) {
        asm volatile("setmaxnreg.dec.sync.aligned.u32 24;\n");
        if (t == 0) {
            unsigned  it = 0;           /* the block's K/V tiles so far */

            for (u = blockIdx.x, n = 0; u < units; u += gridDim.x, n++) {
                int  qb = u % nqb, h = u / nqb % hh, b = u / nqb / hh;
                int  qs = n & 1;

                if (n >= 2) {
                    /* the unit two before read this Q buffer */
                    sm90_mbar_wait(&sm->qfree[qs], (n / 2 - 1) & 1);
                }
                sm90_mbar_expect(&sm->qbar[qs], FA_NWG * box);
                for (j = 0; j < FA_NWG; j++) {
                    fa_tma_load(sm->q[qs] + j * box, &tq, h,
                                (qb * FA_NWG + j) * 64, b, &sm->qbar[qs]);
                }
                for (j = 0; j < nkv; j++, it++) {
                    s = (int) (it % FA_NST(EB));
                    if (it >= FA_NST(EB)) {
                        sm90_mbar_wait(&sm->empty[s],
                                       (int) ((it / FA_NST(EB) - 1) & 1));
                    }
                    sm90_mbar_expect(&sm->full[s], 4 * box);
                    fa_tma_load(sm->k[s], &tk, h, j * FA_BN, b,
                                &sm->full[s]);
                    fa_tma_load(sm->k[s] + box, &tk, h, j * FA_BN + 64, b,
                                &sm->full[s]);
                    if (EB == 1) {
                        /* V^T: (Lp, 64, H, B), a box of 128 keys x 64
                           rows */
                        asm volatile("cp.async.bulk.tensor.4d.shared::"
                                     "cluster.global.mbarrier::complete_tx"
                                     "::bytes [%0], [%1, {%2, %3, %4, %5}],"
                                     " [%6];"
                                     :: "r"(sm90_smem_addr(sm->v[s])),
                                        "l"((uint64_t) &tv), "r"(j * FA_BN),
                                        "r"(0), "r"(h), "r"(b),
                                        "r"(sm90_smem_addr(&sm->full[s]))
                                     : "memory");
                    } else {
                        fa_tma_load(sm->v[s], &tv, h, j * FA_BN, b,
                                    &sm->full[s]);
                        fa_tma_load(sm->v[s] + box, &tv, h, j * FA_BN + 64,
                                    b, &sm->full[s]);
                    }
                }
            }
        }
        return;
    }

    /* 128 x 24 + 3 x 128 x 160 registers of the 64 K (ptxas still
       compiles the consumers for the launch's 128 a thread) */
    asm volatile("setmaxnreg.inc.sync.aligned.u32 160;\n");

    {
        unsigned  it0 = 0;              /* the block's K/V tiles before
                                           the unit's */
        /* the consumer warpgroup's index, warp-uniform to ptxas, so the
           branch on it keeps the loop's values on the uniform datapath */
        int       cwu = sm90_uniform(wg - 1);

        for (u = blockIdx.x, n = 0; u < units;
             u += gridDim.x, n++, it0 += (unsigned) nkv)
        {
            if (FA_IDLE && ((u % nqb) * FA_NWG + cwu) * 64 >= lq) {
                fa_idle<EB>(sm, nkv, n, it0, t % 32);
                continue;
            }
            fa_unit<EB>(sm, o, lq, lk, sl2, vts, vamax, osc, hh, nkv,
                        u % nqb, u / nqb % hh, u / nqb / hh, n, it0, t,
                        wg - 1);
        }
    }
#else
    (void) tq;
    (void) tk;
    (void) tv;
    (void) o;
    (void) lq;
    (void) lk;
    (void) sl2;
    (void) vts;
    (void) vamax;
    (void) osc;
    (void) hh;
    (void) units;
#endif
}


/*
 * x BF16 -> y E4M3: y = x / s, one thread per 8 elements (the check's
 * stand-in for qkv_split_fp8, which quantizes Q and K as it writes them).
 */
__global__ void
fattn_quant_rows(uint8_t *y, const __nv_bfloat16 *x, float s, int64_t n8)
{
    int64_t  i = (int64_t) blockIdx.x * blockDim.x + threadIdx.x;

    if (i < n8) {
        int64_t  e = i * 8;
        float    r = 1.f / s;
        uint4    v = *(const uint4 *) (x + e);
        const __nv_bfloat16  *p = (const __nv_bfloat16 *) &v;
        uint2    o;
        uint32_t  *op = (uint32_t *) &o;

        for (int k = 0; k < 2; k++) {
            uint32_t  lo = __nv_cvt_float2_to_fp8x2(
                              make_float2(__bfloat162float(p[4 * k]) * r,
                                          __bfloat162float(p[4 * k + 1]) * r),
                              __NV_SATFINITE, __NV_E4M3);
            uint32_t  hi2 = __nv_cvt_float2_to_fp8x2(
                              make_float2(__bfloat162float(p[4 * k + 2]) * r,
                                          __bfloat162float(p[4 * k + 3]) * r),
                              __NV_SATFINITE, __NV_E4M3);

            op[k] = lo | (hi2 << 16);
        }
        *(uint2 *) (y + e) = o;
    }
}


/*
 * v (B, L, H * 64) BF16 -> V^T as vt8.h writes it (the check's stand-in
 * for fp8.cu's QKV split, which writes it from the product's rows): a
 * block of VT8_THREADS a tile of VT8_KEYS keys of one (b, h), grid
 * (tiles, H, B); vts (B, H, tiles) the tiles' scales, vamax (B, H) maxed.
 */
__global__ void __launch_bounds__(VT8_THREADS)
fattn_quant_vt(uint8_t *vt, float *vts, float *vamax,
    const __nv_bfloat16 *v, int l, int lp, int h)
{
    int   k0 = blockIdx.x * VT8_KEYS, hi = blockIdx.y, bi = blockIdx.z;
    int   t = threadIdx.x, i;
    uint4 u[VT8_ROWS];

    /* a thread's loads issued together (one at a time ran at 2.3 TB/s) */
    #pragma unroll
    for (i = 0; i < VT8_ROWS; i++) {
        int  r = vt8_row(t, i), d0 = (t % 8) * 8;

        u[i] = make_uint4(0, 0, 0, 0);          /* BF16 zeros */
        if (k0 + r < l) {
            u[i] = *(const uint4 *) (v + ((int64_t) bi * l + k0 + r) * h
                                         * VT8_D + hi * VT8_D + d0);
        }
    }
    vt8_tile(u, vt + ((int64_t) bi * h + hi) * VT8_D * lp, k0, lp,
             vts + ((int64_t) bi * h + hi) * gridDim.x + blockIdx.x,
             vamax + bi * h + hi);
}


/* the (64, H, L, B) view of a (B, L, H * 64) BF16 tensor, 128-row boxes */
static int
fa_map(CUtensorMap *m, const void *p, int64_t b, int64_t l, int64_t h)
{
    cuuint64_t  dims[4] = { FA_D, (cuuint64_t) h, (cuuint64_t) l,
                            (cuuint64_t) b };
    cuuint64_t  strides[3] = { FA_D * 2, (cuuint64_t) (h * FA_D * 2),
                               (cuuint64_t) (l * h * FA_D * 2) };
    cuuint32_t  box[4] = { FA_D, 1, FA_BOX, 1 };

    return sm90_map(m, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 4, p, dims,
                    strides, box, CU_TENSOR_MAP_SWIZZLE_128B);
}


/* 1 where the sm_90a code runs (else the empty kernel was loaded) */
__global__ void
fattn_probe_kernel(int *out)
{
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    *out = 1;
#else
    *out = 0;
#endif
}


/*
 * Whether the kernel runs on this device: sm_90 with the sm_90a code
 * loaded (a probe kernel says which code the driver picked), a driver
 * with TMA. Synchronizes: call it at start-up.
 */
int
sd_cuda_fattn_ok(int device)
{
    cudaFuncAttributes  fa;
    int                 major = 0, minor = 0, *flag = NULL, on = 0;

    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor,
                               device) != cudaSuccess
        || cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor,
                                  device) != cudaSuccess
        || major != 9 || minor != 0 || sm90_tensor_map_encode() == NULL
        || cudaFuncGetAttributes(&fa, (const void *) fattn_kernel<2>)
               != cudaSuccess
        || fa.binaryVersion < 90
        || cudaFuncSetAttribute((const void *) fattn_kernel<2>,
                                cudaFuncAttributeMaxDynamicSharedMemorySize,
                                (int) FA_SMEM_BYTES(2)) != cudaSuccess
        || cudaFuncSetAttribute((const void *) fattn_kernel<1>,
                                cudaFuncAttributeMaxDynamicSharedMemorySize,
                                (int) FA_SMEM_BYTES(1)) != cudaSuccess)
    {
        (void) cudaGetLastError();
        return 0;
    }
    if (cudaMalloc(&flag, sizeof(int)) == cudaSuccess) {
        fattn_probe_kernel<<<1, 1>>>(flag);
        if (cudaMemcpy(&on, flag, sizeof(int), cudaMemcpyDeviceToHost)
            != cudaSuccess)
        {
            on = 0;
        }
        cudaFree(flag);
    }
    (void) cudaGetLastError();
    return on;
}


/*
 * The kernel's units (query blocks x heads x batches) and its grid: one
 * block an SM, each taking its units in turn, or one block a unit where
 * there are fewer units or SD_CUDA_FATTN_UNITS=1 (the kernel before
 * 2026-12-04, each block's launch, Q and first K/V tiles between units).
 * SD_CUDA_FATTN_GRID=N: at most N blocks (test_backend: every unit's
 * output the same bits whatever block takes it, after whichever unit).
 */
static int
fa_units(int b, int lq, int h)
{
    return (lq + 64 * FA_NWG - 1) / (64 * FA_NWG) * h * b;
}

static unsigned
fa_grid(int units)
{
    const char  *e = getenv("SD_CUDA_FATTN_UNITS");
    const char  *g = getenv("SD_CUDA_FATTN_GRID");
    int          dev, sms = 0, cap = g ? atoi(g) : 0;

    if (cap > 0) {
        return (unsigned) (cap < units ? cap : units);
    }
    if ((e && strcmp(e, "1") == 0) || cudaGetDevice(&dev) != cudaSuccess
        || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev)
           != cudaSuccess)
    {
        (void) cudaGetLastError();
        return (unsigned) units;
    }
    return (unsigned) (sms > 0 && sms < units ? sms : units);
}


/*
 * o = softmax(scale q k^T) v per head; q, o: (B, Lq, H * 64), k, v:
 * (B, Lk, H * 64), all BF16, on the stream. sd_cuda_fattn_ok() first.
 */
cudaError_t
sd_cuda_fattn_bf16(void *o, const void *q, const void *k, const void *v,
    int b, int lq, int lk, int h, float scale, cudaStream_t st)
{
    CUtensorMap  mq, mk, mv;

    if (sm90_tensor_map_encode() == NULL || !fa_map(&mq, q, b, lq, h)
        || !fa_map(&mk, k, b, lk, h) || !fa_map(&mv, v, b, lk, h))
    {
        return cudaErrorInvalidValue;
    }
    fattn_kernel<2><<<fa_grid(fa_units(b, lq, h)), 128 * (FA_NWG + 1),
                      FA_SMEM_BYTES(2), st>>>(
        mq, mk, mv, (__nv_bfloat16 *) o, lq, lk,
        scale * 1.4426950408889634f, NULL, NULL, NULL, h,
        fa_units(b, lq, h));
    return cudaGetLastError();
}


/* the (64, H, L, B) view of a (B, L, H * 64) E4M3 tensor, 64-byte rows */
static int
fa_map8(CUtensorMap *m, const void *p, int64_t b, int64_t l, int64_t h)
{
    cuuint64_t  dims[4] = { FA_D, (cuuint64_t) h, (cuuint64_t) l,
                            (cuuint64_t) b };
    cuuint64_t  strides[3] = { FA_D, (cuuint64_t) (h * FA_D),
                               (cuuint64_t) (l * h * FA_D) };
    cuuint32_t  box[4] = { FA_D, 1, FA_BOX, 1 };

    return sm90_map(m, CU_TENSOR_MAP_DATA_TYPE_UINT8, 4, p, dims, strides,
                    box, CU_TENSOR_MAP_SWIZZLE_64B);
}


/* the (Lp, 64, H, B) view of V^T, boxes of 128 keys x 64 rows */
static int
fa_map_vt8(CUtensorMap *m, const void *p, int64_t b, int64_t lp, int64_t h)
{
    cuuint64_t  dims[4] = { (cuuint64_t) lp, FA_D, (cuuint64_t) h,
                            (cuuint64_t) b };
    cuuint64_t  strides[3] = { (cuuint64_t) lp, (cuuint64_t) (lp * FA_D),
                               (cuuint64_t) (h * lp * FA_D) };
    cuuint32_t  box[4] = { FA_BN, FA_D, 1, 1 };

    return sm90_map(m, CU_TENSOR_MAP_DATA_TYPE_UINT8, 4, p, dims, strides,
                    box, CU_TENSOR_MAP_SWIZZLE_128B);
}


/* The E4M3 kernel's scales: s8 = 8 scale log2(e) sq sk a power of two
   (its F16 scores scale by it exactly) from 2^-14 to 1 (the constant of
   its codes' fma stays a half); sd_fp8_attn_scales makes such scales */
int
sd_cuda_fattn_fp8_scales_ok(float sq, float sk, float scale)
{
    double  s8 = 8.0 * scale * 1.4426950408889634 * sq * sk;
    double  p = s8 > 0.0 ? exp2(nearbyint(log2(s8))) : 0.0;

    return s8 > 0.0 && fabs(s8 / p - 1.0) < 0x1p-14 && p >= 0x1p-14
           && p <= 1.0;
}


/*
 * o = softmax(scale q k^T) v per head from E4M3 operands: q8 (B, Lq,
 * H * 64) holding Q / sq, k8 (B, Lk, H * 64) holding K / sk, vt8 and vts
 * V^T's codes and its tiles' scales as vt8.h writes them (B, H, 64,
 * sd_fp8_vt_len(Lk) bytes; B, H, sd_fp8_vt_tiles(Lk) floats), vamax (B H
 * floats on the device: each head's largest |V|). o BF16, or with osc
 * E4M3 (B, Lq, H * 64) and osc (B Lq floats) its rows' scales: one per
 * batch, fa8_vscale of the batch's largest vamax. The scales as
 * sd_cuda_fattn_fp8_scales_ok takes them, and |Q K^T| / (sq sk) < 65504
 * (F16). sd_cuda_fattn_ok() first.
 */
cudaError_t
sd_cuda_fattn_fp8(void *o, const void *q8, const void *k8, const void *vt8,
    const float *vts, float sq, float sk, const float *vamax, int b, int lq,
    int lk, int h, float scale, float *osc, cudaStream_t st)
{
    CUtensorMap  mq, mk, mv;

    if (!sd_cuda_fattn_fp8_scales_ok(sq, sk, scale)
        || sm90_tensor_map_encode() == NULL || !fa_map8(&mq, q8, b, lq, h)
        || !fa_map8(&mk, k8, b, lk, h)
        || !fa_map_vt8(&mv, vt8, b, sd_fp8_vt_len(lk), h))
    {
        return cudaErrorInvalidValue;
    }
    fattn_kernel<1><<<fa_grid(fa_units(b, lq, h)), 128 * (FA_NWG + 1),
                      FA_SMEM_BYTES(1), st>>>(
        mq, mk, mv, (__nv_bfloat16 *) o, lq, lk,
        scale * 1.4426950408889634f * sq * sk, vts, vamax, osc, h,
        fa_units(b, lq, h));
    return cudaGetLastError();
}


/* x (n elements, n a multiple of 8, 16-byte aligned) BF16 -> y = x / s
   in E4M3 */
cudaError_t
sd_cuda_fattn_quant_rows(void *y, const void *x, float s, int64_t n,
    cudaStream_t st)
{
    int64_t  n8 = n / 8;

    fattn_quant_rows<<<(unsigned) ((n8 + 255) / 256), 256, 0, st>>>(
        (uint8_t *) y, (const __nv_bfloat16 *) x, s, n8);
    return cudaGetLastError();
}


/* v (B, L, H * 64) BF16 -> vt8, vts as vt8.h writes them, each head's
   largest |v| maxed into vamax (B H floats, zeroed by the caller) */
cudaError_t
sd_cuda_fattn_quant_vt(void *vt8, float *vts, float *vamax, const void *v,
    int b, int l, int h, cudaStream_t st)
{
    int  lp = (int) sd_fp8_vt_len(l);

    fattn_quant_vt<<<dim3((unsigned) sd_fp8_vt_tiles(l), h, b),
                     VT8_THREADS, 0, st>>>(
        (uint8_t *) vt8, vts, vamax, (const __nv_bfloat16 *) v, l, lp, h);
    return cudaGetLastError();
}
