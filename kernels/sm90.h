/*
 * sm90.h: Hopper's shared-memory barriers (mbarrier) and wgmma fences, as
 * the sm_90a kernels use them (fattn.cu, gemm8.cu). Device code only, and
 * only where the arch-specific features are compiled.
 */

#ifndef SD_KERNELS_SM90_H
#define SD_KERNELS_SM90_H

#include <stdint.h>

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

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
