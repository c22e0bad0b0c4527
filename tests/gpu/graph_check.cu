/*
 * graph_check.cu: kernels/graph.cu's rewrite of memset nodes as kernel
 * nodes, on the GPU. A graph built node by node:
 *
 *   M0  memset 2-D, 4-byte elements (5 x 3, pitch 32) of X    (a root)
 *   K1  a pass writing Y[i] = i + 1 slowly (a spin a block)
 *   M1  memset 2-byte elements (3) of Z, after K1
 *   P1  a "product" after M1: counts Y's rows not yet written into bad;
 *       its block 0 copies Z to out1, then writes Z over (0x77)
 *   M2  memset 1-byte elements (4) of Z, after P1
 *   P2  after M2: copies Z to out2
 *   K3  a pass after P2 copying V to out3
 *   M4  memset V after K3
 *   P4  after M4: copies V to out4
 *   M3  a 128 KiB memset of W after P4 (stays a memset)
 *
 * rewritten, then launched 50 times (Y zeroed and X, Z, V, W filled
 * before each): X's bytes (the pitch's gaps untouched), out1..out4, W, no
 * row of Y read before K1 wrote it in any launch, the memsets replaced
 * (4), the graph's roots (M0's kernel and K1) and P1's, P2's and P4's
 * dependencies (one each). Prints "graph_check: ok" and exits 0, else the failures.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime.h>

#include "../../kernels/graph.h"


#define NY      (1 << 20)
#define WB      (128 << 10)

static int  fails;

#define CK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { \
    printf("FAIL %s:%d %s: %s\n", __FILE__, __LINE__, #x, \
           cudaGetErrorString(e_)); exit(1); } } while (0)
#define EXPECT(c, ...) do { if (!(c)) { printf("FAIL: " __VA_ARGS__); \
    printf("\n"); fails++; } } while (0)


__global__ void
pass_kernel(unsigned *y, int n)
{
    int        i = blockIdx.x * blockDim.x + threadIdx.x;
    long long  t0 = clock64();

    while (clock64() - t0 < 20000) {
    }
    if (i < n) {
        y[i] = (unsigned) i + 1;
    }
}


__global__ void
product_kernel(unsigned char *z, unsigned char *out, int nz,
    const unsigned *y, int n, unsigned *bad, int over)
{
    int  i = blockIdx.x * blockDim.x + threadIdx.x;

    if (y && i < n && y[i] != (unsigned) i + 1) {
        atomicAdd(bad, 1u);
    }
    if (blockIdx.x == 0) {
        if (threadIdx.x < nz) {
            out[threadIdx.x] = z[threadIdx.x];
        }
        __syncthreads();
        if (over && threadIdx.x < nz) {
            z[threadIdx.x] = 0x77;
        }
    }
}


static cudaGraphNode_t
add_memset(cudaGraph_t g, const cudaGraphNode_t *dep, size_t nd, void *dst,
    size_t pitch, unsigned value, unsigned es, size_t w, size_t h)
{
    cudaMemsetParams  m;
    cudaGraphNode_t   n;

    memset(&m, 0, sizeof(m));
    m.dst = dst;
    m.pitch = pitch;
    m.value = value;
    m.elementSize = es;
    m.width = w;
    m.height = h;
    CK(cudaGraphAddMemsetNode(&n, g, dep, nd, &m));
    return n;
}


static cudaGraphNode_t
add_kernel(cudaGraph_t g, const cudaGraphNode_t *dep, size_t nd, void *f,
    unsigned grid, unsigned block, void **args)
{
    cudaKernelNodeParams  k = cudaKernelNodeParams();
    cudaGraphNode_t       n;

    k.func = f;
    k.gridDim = dim3(grid);
    k.blockDim = dim3(block);
    k.kernelParams = args;
    CK(cudaGraphAddKernelNode(&n, g, dep, nd, &k));
    return n;
}


/* product_kernel's arguments: the addresses of its values */
static void
product_args(void **a, void *z, void *out, void *nz, void *y, void *n,
    void *bad, void *over)
{
    a[0] = z;
    a[1] = out;
    a[2] = nz;
    a[3] = y;
    a[4] = n;
    a[5] = bad;
    a[6] = over;
}


static size_t
deps(cudaGraphNode_t n)
{
    size_t  k = 0;

    CK(cudaGraphNodeGetDependencies(n, NULL, NULL, &k));
    return k;
}


static void
check(void)
{
    unsigned char  *x, *z, *v, *o[5], *w, hx[96], ho[5][8];
    unsigned       *y, *bad, hbad;
    unsigned char  *hw;
    cudaGraph_t     g;
    cudaGraphExec_t ex;
    cudaStream_t    st;
    cudaGraphNode_t k1, m1, p1, m2, p2, k3, m4, p4;
    long            n = 0;
    size_t          nroots = 0, i, zlen = 16;
    int             r, j, ny = NY, nz3 = 6, nz4 = 4, one = 1, zero = 0;
    void           *a1[2], *ap1[7], *ap2[7], *ak3[7], *ap4[7];
    const unsigned *ynull = NULL;
    unsigned       *badnull = NULL;

    CK(cudaStreamCreate(&st));
    CK(cudaMalloc(&x, 96));
    CK(cudaMalloc(&z, zlen));
    CK(cudaMalloc(&v, 16));
    for (j = 0; j < 5; j++) {
        CK(cudaMalloc(&o[j], 16));
    }
    CK(cudaMalloc(&w, WB));
    CK(cudaMalloc(&y, NY * sizeof(unsigned)));
    CK(cudaMalloc(&bad, sizeof(unsigned)));
    hw = (unsigned char *) malloc(WB);

    CK(cudaGraphCreate(&g, 0));
    (void) add_memset(g, NULL, 0, x, 32, 0xdeadbeefu, 4, 5, 3);
    a1[0] = &y;
    a1[1] = &ny;
    k1 = add_kernel(g, NULL, 0, (void *) pass_kernel, NY / 256, 256, a1);
    m1 = add_memset(g, &k1, 1, z, 0, 0xbeefu, 2, 3, 1);
    product_args(ap1, &z, &o[1], &nz3, &y, &ny, &bad, &one);
    p1 = add_kernel(g, &m1, 1, (void *) product_kernel, NY / 256, 256, ap1);
    m2 = add_memset(g, &p1, 1, z, 0, 0x5au, 1, 4, 1);
    product_args(ap2, &z, &o[2], &nz4, &ynull, &zero, &badnull, &zero);
    p2 = add_kernel(g, &m2, 1, (void *) product_kernel, 1, 32, ap2);
    product_args(ak3, &v, &o[3], &nz4, &ynull, &zero, &badnull, &zero);
    k3 = add_kernel(g, &p2, 1, (void *) product_kernel, 1, 32, ak3);
    m4 = add_memset(g, &k3, 1, v, 0, 0x66u, 1, 4, 1);
    product_args(ap4, &v, &o[4], &nz4, &ynull, &zero, &badnull, &zero);
    p4 = add_kernel(g, &m4, 1, (void *) product_kernel, 1, 32, ap4);
    (void) add_memset(g, &p4, 1, w, 0, 0x3cu, 1, WB, 1);

    CK(sd_cuda_graph_memsets_as_kernels(g, &n));
    EXPECT(n == 4, "%ld memsets replaced, not 4", n);
    CK(cudaGraphGetRootNodes(g, NULL, &nroots));
    EXPECT(nroots == 2, "%zu roots, not 2", nroots);
    EXPECT(deps(p1) == 1 && deps(p2) == 1 && deps(p4) == 1, "P1 after %zu, "
           "P2 after %zu, P4 after %zu nodes", deps(p1), deps(p2), deps(p4));
    CK(cudaGraphInstantiate(&ex, g, 0));
    CK(cudaMemsetAsync(bad, 0, sizeof(unsigned), st));
    for (r = 0; r < 50; r++) {
        CK(cudaMemsetAsync(y, 0, NY * sizeof(unsigned), st));
        CK(cudaMemsetAsync(x, 0x11, 96, st));
        CK(cudaMemsetAsync(z, 0x22, zlen, st));
        CK(cudaMemsetAsync(v, 0x44, 16, st));
        CK(cudaMemsetAsync(w, 0, WB, st));
        CK(cudaGraphLaunch(ex, st));
    }
    CK(cudaStreamSynchronize(st));
    CK(cudaMemcpy(hx, x, 96, cudaMemcpyDeviceToHost));
    for (j = 1; j < 5; j++) {
        CK(cudaMemcpy(ho[j], o[j], 8, cudaMemcpyDeviceToHost));
    }
    CK(cudaMemcpy(&hbad, bad, sizeof(hbad), cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(hw, w, WB, cudaMemcpyDeviceToHost));
    for (i = 0; i < 96; i++) {
        /* rows of 32 bytes: the first 20 set, the rest untouched */
        static const unsigned char  b4[4] = { 0xef, 0xbe, 0xad, 0xde };
        unsigned char  want = (i % 32) < 20 ? b4[i % 4] : 0x11;

        EXPECT(hx[i] == want, "X[%zu] %02x, not %02x", i, hx[i], want);
    }
    for (i = 0; i < 6; i++) {
        EXPECT(ho[1][i] == (i % 2 ? 0xbe : 0xef), "out1[%zu] %02x", i,
               ho[1][i]);
    }
    for (i = 0; i < 4; i++) {
        EXPECT(ho[2][i] == 0x5a && ho[3][i] == 0x44 && ho[4][i] == 0x66,
               "out2..4[%zu] %02x %02x %02x", i, ho[2][i], ho[3][i],
               ho[4][i]);
    }
    EXPECT(hbad == 0, "%u rows of Y read before the pass wrote them",
           hbad);
    for (i = 0; i < WB; i++) {
        if (hw[i] != 0x3c) {
            EXPECT(0, "W[%zu] %02x", i, hw[i]);
            break;
        }
    }
    printf("%ld memsets replaced, %zu roots, X/out1-4/W checked, Y read "
           "early %u times in 50 launches\n", n, nroots, hbad);
    CK(cudaGraphExecDestroy(ex));
    CK(cudaGraphDestroy(g));
    cudaFree(x);
    cudaFree(z);
    cudaFree(v);
    for (j = 0; j < 5; j++) {
        cudaFree(o[j]);
    }
    cudaFree(w);
    cudaFree(y);
    cudaFree(bad);
    free(hw);
    cudaStreamDestroy(st);
}


int
main(void)
{
    check();
    if (fails) {
        printf("graph_check: %d failures\n", fails);
        return 1;
    }
    printf("graph_check: ok\n");
    return 0;
}
