/*
 * graph.h: rewriting a captured CUDA graph before it is instantiated
 * (graph.cu). C++ linkage: kernels/ and the GPU checks only.
 */

#ifndef SD_KERNELS_GRAPH_H
#define SD_KERNELS_GRAPH_H

#include <cuda_runtime.h>

#define SD_MEMSET_KMAX  65536           /* bytes: larger memsets stay */

/*
 * Every memset node of g of at most SD_MEMSET_KMAX bytes replaced by a
 * kernel node doing the same (each element size, 2-D pitches) with the
 * memset's edges. *n grows by the nodes replaced. On an error g may be
 * half rewritten: the caller discards it.
 */
cudaError_t sd_cuda_graph_memsets_as_kernels(cudaGraph_t g, long *n);

#endif
