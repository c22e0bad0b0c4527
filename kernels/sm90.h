/*
 * sm90.h: what the sm_90a kernels (fattn.cu, gemm8.cu) share: wgmma's
 * accumulator operand lists, the tensor-map encoder, and (device code,
 * only where the arch-specific features are compiled) shared-memory
 * barriers (mbarrier) and wgmma fences.
 */

#ifndef SD_KERNELS_SM90_H
#define SD_KERNELS_SM90_H

#include <stdint.h>

#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_runtime.h>


/*
 * The F32 accumulator operands of wgmma wrappers: 8 .. 128 floats of d
 * as the asm's first operands, and their list in the asm's text.
 */
#define SM90_ACC8(d, i)                                                     \
    "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]),             \
    "+f"(d[i + 4]), "+f"(d[i + 5]), "+f"(d[i + 6]), "+f"(d[i + 7])
#define SM90_ACC32(d, i)                                                    \
    SM90_ACC8(d, i), SM90_ACC8(d, i + 8), SM90_ACC8(d, i + 16),             \
    SM90_ACC8(d, i + 24)
#define SM90_ACC64(d)   SM90_ACC32(d, 0), SM90_ACC32(d, 32)
#define SM90_ACC128(d)                                                      \
    SM90_ACC32(d, 0), SM90_ACC32(d, 32), SM90_ACC32(d, 64), SM90_ACC32(d, 96)
#define SM90_R0_31                                                          \
    "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
    "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, "     \
    "%29, %30, %31"
#define SM90_R32_63                                                         \
    "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, "     \
    "%45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, "     \
    "%58, %59, %60, %61, %62, %63"
#define SM90_R64_127                                                        \
    "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, "     \
    "%77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, "     \
    "%90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, "  \
    "%103, %104, %105, %106, %107, %108, %109, %110, %111, %112, %113, "    \
    "%114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, "    \
    "%125, %126, %127"
#define SM90_REGS32   "{" SM90_R0_31 "}"
#define SM90_REGS64   "{" SM90_R0_31 ", " SM90_R32_63 "}"
#define SM90_REGS128  "{" SM90_R0_31 ", " SM90_R32_63 ", " SM90_R64_127 "}"


/*
 * cuTensorMapEncodeTiled through the runtime (no link against libcuda),
 * looked up once: NULL where the driver has none.
 */
static inline PFN_cuTensorMapEncodeTiled_v12000
sm90_tensor_map_encode(void)
{
    static PFN_cuTensorMapEncodeTiled_v12000  fn;
    static int                                tried;
    cudaDriverEntryPointQueryResult           q;
    void                                     *p = NULL;

    if (!tried) {
        tried = 1;
        if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p,
                                             12000, cudaEnableDefault, &q)
                == cudaSuccess
            && q == cudaDriverEntryPointSuccess)
        {
            fn = (PFN_cuTensorMapEncodeTiled_v12000) p;
        }
        (void) cudaGetLastError();
    }
    return fn;
}


/*
 * A tiled tensor map of rank dimensions over p (elements of each box
 * contiguous, L2 promotion of 256 bytes, zeros outside): 0 where the
 * driver has no encoder or refuses the layout.
 */
static inline int
sm90_map(CUtensorMap *m, CUtensorMapDataType dt, cuuint32_t rank,
    const void *p, const cuuint64_t *dims, const cuuint64_t *strides,
    const cuuint32_t *box, CUtensorMapSwizzle swizzle)
{
    static const cuuint32_t            es[5] = { 1, 1, 1, 1, 1 };
    PFN_cuTensorMapEncodeTiled_v12000  enc = sm90_tensor_map_encode();

    return enc != NULL
           && enc(m, dt, rank, (void *) p, dims, strides, box, es,
                  CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle,
                  CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                  CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}


#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

/* v, the same in every lane of the warp (a warpgroup's index), as a
   shuffle from lane 0: ptxas then knows it is warp-uniform and keeps
   what is derived from it (loop counters, stages, descriptors) on the
   uniform datapath, where threadIdx.x / 128 put it on the vector one
   (fattn.cu's FA_IDLE, gemm8.cu's G8_WGU: 64 and 112-160 fewer SASS
   instructions) */
static __device__ __forceinline__ int
sm90_uniform(int v)
{
    return __shfl_sync(0xffffffffu, v, 0);
}


static __device__ __forceinline__ uint32_t
sm90_smem_addr(const void *p)
{
    return (uint32_t) __cvta_generic_to_shared(p);
}


static __device__ __forceinline__ void
sm90_mbar_init(uint64_t *bar, int count)
{
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;"
                 :: "r"(sm90_smem_addr(bar)), "r"(count));
}


/* one arrival that also expects `bytes` of asynchronous copies */
static __device__ __forceinline__ void
sm90_mbar_expect(uint64_t *bar, uint32_t bytes)
{
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;"
                 :: "r"(sm90_smem_addr(bar)), "r"(bytes) : "memory");
}


static __device__ __forceinline__ void
sm90_mbar_arrive(uint64_t *bar)
{
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];"
                 :: "r"(sm90_smem_addr(bar)) : "memory");
}


/* until the barrier's phase of this parity has completed */
static __device__ __forceinline__ void
sm90_mbar_wait(uint64_t *bar, int phase)
{
    uint32_t  done;

    do {
        asm volatile("{\n.reg .pred p;\n"
                     "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
                     "selp.u32 %0, 1, 0, p;\n}\n"
                     : "=r"(done) : "r"(sm90_smem_addr(bar)), "r"(phase)
                     : "memory");
    } while (!done);
}


static __device__ __forceinline__ void
sm90_wgmma_fence(void)
{
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}


static __device__ __forceinline__ void
sm90_wgmma_commit(void)
{
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}


/* until at most N of the warpgroup's committed product groups pend */
template <int N>
static __device__ __forceinline__ void
sm90_wgmma_wait(void)
{
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" :: "n"(N)
                 : "memory");
}

#endif /* __CUDA_ARCH_FEAT_SM90_ALL */

#endif /* SD_KERNELS_SM90_H */
