/*
 * lt_common.cuh: what the cuBLASLt tools on the GPU machine share
 * (gemm_probe.cu, gemm_sustain.cu, gemm8_check.cu): the error macros
 * (print, exit), the random operand fillers, and the descriptor of the
 * engine's FP8 products (kernels/gemm.cu, kernels/fp8.cu): row-major Y =
 * X W^T as the column-major W^T X (TRANSA T), E4M3 operands with per-row
 * outer-vector F32 scales, fast accumulation, BF16 bias.
 */
#ifndef SD_LT_COMMON_CUH
#define SD_LT_COMMON_CUH

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cublasLt.h>

#define CK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { \
    printf("cuda error %s at %s:%d\n", cudaGetErrorString(e_), __FILE__, \
           __LINE__); exit(1); } } while (0)
#define LT(x) do { cublasStatus_t s_ = (x); if (s_ != CUBLAS_STATUS_SUCCESS) \
    { printf("cublasLt status %d at %s:%d\n", (int) s_, __FILE__, \
             __LINE__); exit(1); } } while (0)


/* the E4M3 code of element i's value in [-top, top) */
static __device__ __forceinline__ uint8_t
lt_e4m3_uniform(int64_t i, uint32_t seed, float top)
{
    uint32_t  h = (uint32_t) i * 2654435761u ^ seed;

    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    __nv_fp8_e4m3  v(top * ((float) ((int) (h & 0xffff) - 32768) / 32768.f));
    return v.__x;
}

/* E4M3 codes of values in [-1, 1) */
__global__ void
lt_fill_e4m3(uint8_t *p, int64_t n, uint32_t seed)
{
    int64_t  i = (int64_t) blockIdx.x * blockDim.x + threadIdx.x;

    if (i < n) {
        p[i] = lt_e4m3_uniform(i, seed, 1.f);
    }
}

/* values in [lo, hi) */
__global__ void
lt_fill_f32(float *p, int64_t n, float lo, float hi, uint32_t seed)
{
    int64_t  i = (int64_t) blockIdx.x * blockDim.x + threadIdx.x;

    if (i < n) {
        uint32_t  h = (uint32_t) i * 2246822519u ^ seed;

        h ^= h >> 13;
        h *= 2654435761u;
        h ^= h >> 16;
        p[i] = lo + (hi - lo) * (float) (h & 0xffff) / 65536.f;
    }
}

/* values in [-1, 1) */
__global__ void
lt_fill_bf16(__nv_bfloat16 *p, int64_t n, uint32_t seed)
{
    int64_t  i = (int64_t) blockIdx.x * blockDim.x + threadIdx.x;

    if (i < n) {
        uint32_t  h = (uint32_t) i * 2654435761u ^ seed;

        h ^= h >> 16;
        p[i] = __float2bfloat16((float) ((int) (h & 0xfff) - 2048) / 2048.f);
    }
}


/* the engine's FP8 product descriptor with epilogue epi (scale and bias
   pointers are the caller's) */
static void
lt_fp8_desc(cublasLtMatmulDesc_t *d, cublasLtEpilogue_t epi)
{
    cublasOperation_t            ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    cublasLtMatmulMatrixScale_t  mode =
        CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F;
    cudaDataType_t               bt = CUDA_R_16BF;
    int8_t                       fast = 1;

    LT(cublasLtMatmulDescCreate(d, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    LT(cublasLtMatmulDescSetAttribute(*d, CUBLASLT_MATMUL_DESC_TRANSA, &ta,
                                      sizeof(ta)));
    LT(cublasLtMatmulDescSetAttribute(*d, CUBLASLT_MATMUL_DESC_TRANSB, &tb,
                                      sizeof(tb)));
    LT(cublasLtMatmulDescSetAttribute(*d, CUBLASLT_MATMUL_DESC_EPILOGUE,
                                      &epi, sizeof(epi)));
    LT(cublasLtMatmulDescSetAttribute(*d, CUBLASLT_MATMUL_DESC_A_SCALE_MODE,
                                      &mode, sizeof(mode)));
    LT(cublasLtMatmulDescSetAttribute(*d, CUBLASLT_MATMUL_DESC_B_SCALE_MODE,
                                      &mode, sizeof(mode)));
    LT(cublasLtMatmulDescSetAttribute(*d, CUBLASLT_MATMUL_DESC_FAST_ACCUM,
                                      &fast, sizeof(fast)));
    LT(cublasLtMatmulDescSetAttribute(*d,
           CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof(bt)));
}

#endif
