/*
 * rng.h: noise bit-compatible with torch.randn, in plain C.
 *
 * sd_randn_cpu() reproduces torch.randn(n, generator=torch.Generator("cpu")
 * .manual_seed(seed)) (mt19937, torch's Box-Muller layout for float32);
 * sd_randn_cuda() reproduces the same call with a CUDA generator (Philox4x32-10
 * and the counters and offsets torch's CUDA kernel gives each element).
 * Both produce the exact float32 values torch produces for a fresh generator.
 */

#ifndef SD_RNG_H
#define SD_RNG_H

#include <stddef.h>
#include <stdint.h>


void sd_randn_cpu(uint64_t seed, float *out, size_t n);
void sd_randn_cuda(uint64_t seed, float *out, size_t n);
/* the threads of torch's grid-stride kernel for n values (its grid capped
   at an H100's 132 SMs x 8 blocks of 256), which sd_randn_cuda assumes and
   the CUDA backend's own draw (kernels/elementwise.cu) uses */
uint64_t sd_randn_cuda_threads(size_t n);

#endif /* SD_RNG_H */
