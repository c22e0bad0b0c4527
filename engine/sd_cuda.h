/*
 * sd_cuda.h: the CUDA backend as the engine sees it (implemented in
 * kernels/, built only where nvcc exists: SD_HAVE_CUDA). No CUDA type
 * appears here, so the engine stays plain C.
 *
 * Sizing: weights are taken at load; the activation workspace is sized
 * once after load by running the largest request the engine will accept
 * in measuring mode (ops allocate and free as they would, compute nothing),
 * then reserved; a request that needs more answers SD_ERR_NOMEM.
 */

#ifndef SD_CUDA_H
#define SD_CUDA_H

#include <stddef.h>
#include "backend.h"


typedef struct {
    size_t      weights;        /* bytes of the weight arena in use */
    size_t      workspace;      /* bytes reserved for activations */
    size_t      ws_high;        /* the workspace's high-water mark */
    size_t      library;        /* cuBLASLt/cuDNN workspace and scratch */
    size_t      device_used;    /* the whole device, as the driver sees it */
    size_t      device_total;
    size_t      host;           /* weights kept in pinned host memory */
    size_t      host_staged;    /* their bytes copied to the GPU so far */
} sd_cuda_mem;


/* Number of CUDA devices, 0 when none or no driver. */
int sd_cuda_device_count(void);

/* act: SD_DT_F32 (validation, no TF32) or SD_DT_BF16. */
sd_status sd_backend_cuda_create(sd_err *err, int device, sd_dtype act,
    sd_backend **out);

/* Make be's device current in the calling thread. */
sd_status sd_cuda_bind(sd_err *err, sd_backend *be);

/*
 * Whether the process's CUDA context has failed for good (a sticky error:
 * an illegal address, a trap, an uncorrectable ECC error, ...): 1 with the
 * error's text in why, else 0. Asks the runtime; cheap, called on errors.
 */
int sd_cuda_lost(char *why, size_t len);

/* Tests only: a kernel that traps, on be's stream (sd_engine_inject_fault) */
sd_status sd_cuda_inject_fault(sd_err *err, sd_backend *be);

/* Measuring mode on/off; off returns the workspace bytes the run needed. */
void sd_cuda_measure_begin(sd_backend *be);
size_t sd_cuda_measure_end(sd_backend *be);
/* Take the activation workspace (once; again frees the old one). */
sd_status sd_cuda_reserve(sd_err *err, sd_backend *be, size_t bytes);

sd_status sd_cuda_memory(sd_err *err, sd_backend *be, sd_cuda_mem *out);
/* "NVIDIA H200, sm_90, CUDA 13.0, cuBLASLt 13.x, cuDNN 9.19.0" */
const char *sd_cuda_info(const sd_backend *be);
/*
 * Profiling: while on, every op is timed with CUDA events and summed per op
 * and shape; the report (a text table into buf, sorted by time) empties
 * the sums. Adds a little host work per op: not for serving.
 */
void sd_cuda_profile(sd_backend *be, int on);
size_t sd_cuda_profile_report(sd_backend *be, char *buf, size_t len);

/*
 * Recorded steps (sd_backend_replay as CUDA graphs): on by default
 * (SD_CUDA_NO_GRAPHS=1 turns them off); the counts since creation and the
 * last reason a capture failed ("" when none did).
 */
void sd_cuda_set_graphs(sd_backend *be, int on);
void sd_cuda_graph_stats(const sd_backend *be, long *recorded, long *replayed,
    long *failed, const char **why);

/*
 * FP8 products that ran widened to BF16 on a card with FP8 GEMMs (a shape
 * cuBLASLt has no FP8 algorithm for, even padded): should stay 0.
 */
long sd_cuda_fp8_widened(const sd_backend *be);

/*
 * Memset nodes of the recordings replaced by kernel nodes since creation
 * (cuBLASLt's counter before each product: a product starts sooner after
 * a kernel than after a memset node; SD_CUDA_MEMSET_NODES=1 keeps them).
 */
long sd_cuda_graph_memsets(const sd_backend *be);

/*
 * The FP8 products' per-row quantization alone (tests): x (rows, K) BF16 ->
 * q8 (rp >= rows, K) E4M3 activations with their row scales (amax / 448);
 * rows past x's are zeros with scale 1.
 */
sd_status sd_cuda_fp8_quant_rows(sd_err *err, sd_tensor *q8,
    const sd_tensor *x);

/* Route every attention through the GEMM path (tests, comparisons). */
void sd_cuda_set_no_sdpa(sd_backend *be, int on);

/*
 * The own attention kernel (kernels/fattn.cu, Hopper): mode 1 wherever it
 * fits, 0 where it is faster than cuDNN at the shape (the default), -1
 * never (as SD_CUDA_NO_FATTN=1). Returns whether it can run here.
 */
int sd_cuda_set_fattn(sd_backend *be, int mode);

/* The attention shapes seen and which kernel each runs, with the times
   that decided it: one line per shape into buf, "shape | kernel (times)". */
void sd_cuda_attention_info(const sd_backend *be, char *buf, size_t size);

#endif /* SD_CUDA_H */
