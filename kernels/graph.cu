/*
 * graph.cu: a recorded graph's memset nodes as kernel nodes (graph.h).
 * cuBLASLt sets a 4-byte counter in its workspace before each of its
 * products, which a capture records as a memset node; the product then
 * starts 2-4 us after the memset and the memset 1.4 us after the pass
 * before it, where a kernel after a kernel starts 0.3-0.6 us after it
 * (tests/gpu/ktrace.c on the H200, session 33: 159 such memsets a Medium
 * step on the image stream, 190 a Large one). tests/gpu/graph_check.cu
 * checks the rewrite (bytes, 2-D pitches, element sizes, the order kept).
 *
 * Measured (run.sh mskt, 28-step benches in turn, the same image bits):
 * Medium 25.63 / 25.70 ms a step against 25.84 / 25.95 with memset nodes
 * on one card, 25.30 / 25.14 against 25.40 / 25.40 on another; Large
 * within its noise (61.09 / 61.81 against 61.41 / 61.32: it is held by
 * the card's power limit, not by gaps). Traced, Medium's step went from
 * 25.87 to 25.19 ms and its time with no kernel running from 0.44 to 0.16
 * ms. Not kept: each memset's kernel run beside the pass before it (after
 * that pass's predecessors; only for memsets into cuBLASLt's workspaces,
 * which no pass touches): 25.34 / 25.38 in the second call, no gain over
 * the kernels in place for the hazard it would have to rule out.
 */

#include <stdlib.h>
#include <string.h>

#include <cuda_runtime.h>

#include "graph.h"


/* A memset node's work (dst, pitch, value, elementSize, width, height
   as cudaMemsetParams) done by a kernel */
__global__ void
memset_node_kernel(char *dst, size_t pitch, unsigned value, unsigned es,
    size_t width, size_t height)
{
    size_t  i, n = width * height;

    for (i = (size_t) blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t) gridDim.x * blockDim.x)
    {
        char  *p = dst + (i / width) * pitch + (i % width) * es;

        if (es == 4) {
            *(unsigned *) (void *) p = value;
        } else if (es == 2) {
            *(unsigned short *) (void *) p = (unsigned short) value;
        } else {
            *p = (char) value;
        }
    }
}


/* node's dependencies (after 0) or dependents (after 1) with their
   edges' data, in arrays of *n the caller frees */
static cudaError_t
graph_edges(cudaGraphNode_t node, int after, cudaGraphNode_t **nv,
    cudaGraphEdgeData **ev, size_t *n)
{
    cudaError_t  e;

    *nv = NULL;
    *ev = NULL;
    *n = 0;
    e = after ? cudaGraphNodeGetDependentNodes(node, NULL, NULL, n)
              : cudaGraphNodeGetDependencies(node, NULL, NULL, n);
    if (e != cudaSuccess || *n == 0) {
        return e;
    }
    *nv = (cudaGraphNode_t *) malloc(*n * sizeof(**nv));
    *ev = (cudaGraphEdgeData *) calloc(*n, sizeof(**ev));
    if (*nv == NULL || *ev == NULL) {
        return cudaErrorMemoryAllocation;
    }
    return after ? cudaGraphNodeGetDependentNodes(node, *nv, *ev, n)
                 : cudaGraphNodeGetDependencies(node, *nv, *ev, n);
}


/* memset node m (its parameters p) as a kernel node with its edges */
static cudaError_t
memset_as_kernel(cudaGraph_t g, cudaGraphNode_t m, cudaMemsetParams *p)
{
    cudaKernelNodeParams   kp = cudaKernelNodeParams();
    cudaGraphNode_t        kn, *pv = NULL, *sv = NULL;
    cudaGraphEdgeData     *pe = NULL, *se = NULL;
    size_t                 np = 0, ns = 0, j, n = p->width * p->height;
    void                  *args[6];
    cudaError_t            e;

    e = graph_edges(m, 0, &pv, &pe, &np);
    if (e == cudaSuccess) {
        e = graph_edges(m, 1, &sv, &se, &ns);
    }
    args[0] = &p->dst;
    args[1] = &p->pitch;
    args[2] = &p->value;
    args[3] = &p->elementSize;
    args[4] = &p->width;
    args[5] = &p->height;
    kp.func = (void *) memset_node_kernel;
    kp.gridDim = dim3((unsigned) ((n + 255) / 256));
    kp.blockDim = dim3(n < 256 ? (unsigned) ((n + 31) & ~(size_t) 31) : 256);
    kp.kernelParams = args;
    if (e == cudaSuccess) {
        e = cudaGraphAddKernelNode(&kn, g, NULL, 0, &kp);
    }
    /* the memset's edges, their data as they were */
    for (j = 0; j < np && e == cudaSuccess; j++) {
        e = cudaGraphAddDependencies(g, &pv[j], &kn, &pe[j], 1);
    }
    for (j = 0; j < ns && e == cudaSuccess; j++) {
        e = cudaGraphAddDependencies(g, &kn, &sv[j], &se[j], 1);
    }
    if (e == cudaSuccess) {
        e = cudaGraphDestroyNode(m);
    }
    free(pv);
    free(pe);
    free(sv);
    free(se);
    return e;
}


/* graph.h */
cudaError_t
sd_cuda_graph_memsets_as_kernels(cudaGraph_t g, long *n)
{
    cudaGraphNode_t  *nodes;
    size_t            nn = 0, i;
    cudaError_t       e;

    e = cudaGraphGetNodes(g, NULL, &nn);
    if (e != cudaSuccess || nn == 0) {
        return e;
    }
    nodes = (cudaGraphNode_t *) malloc(nn * sizeof(*nodes));
    if (nodes == NULL) {
        return cudaErrorMemoryAllocation;
    }
    e = cudaGraphGetNodes(g, nodes, &nn);
    for (i = 0; i < nn && e == cudaSuccess; i++) {
        cudaGraphNodeType  t;
        cudaMemsetParams   m;
        size_t             bytes;

        e = cudaGraphNodeGetType(nodes[i], &t);
        if (e != cudaSuccess || t != cudaGraphNodeTypeMemset) {
            continue;
        }
        e = cudaGraphMemsetNodeGetParams(nodes[i], &m);
        bytes = m.width * m.height * m.elementSize;
        if (e != cudaSuccess || bytes == 0 || bytes > SD_MEMSET_KMAX) {
            continue;
        }
        e = memset_as_kernel(g, nodes[i], &m);
        if (e == cudaSuccess) {
            (*n)++;
        }
    }
    free(nodes);
    return e;
}
