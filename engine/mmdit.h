/*
 * mmdit.h: the SD3.5 diffusion transformer, MMDiT (Large, Large Turbo) and
 * MMDiT-X (Medium: layers in dual_attention_layers add an image-only second
 * attention), written once against backend.h.
 *
 * Invariant: every size comes from transformer/config.json and the tensor
 * shapes of the checkpoint; weights are uploaded once at load.
 */

#ifndef SD_MMDIT_H
#define SD_MMDIT_H

#include "backend.h"


typedef struct sd_mmdit  sd_mmdit;

typedef struct {
    int     in_channels;
    int     out_channels;
    int     patch_size;
    int     num_layers;
    int     heads;
    int     head_dim;
    int     width;              /* heads * head_dim */
    int     joint_dim;          /* context width (T5 width) */
    int     pooled_dim;
    int     pos_max;            /* pos_embed_max_size */
} sd_mmdit_info;

/* dir: the transformer/ folder (config.json + safetensors). */
sd_status sd_mmdit_load(sd_err *err, sd_backend *be, const char *dir,
    sd_mmdit **out);
void sd_mmdit_free(sd_mmdit *m);
const sd_mmdit_info *sd_mmdit_get_info(const sd_mmdit *m);

/*
 * One transformer call.
 * x: (B, C, H, W) latent; t: B timesteps in [0, 1000] (host);
 * context: (B, L, joint_dim); pooled: (B, pooled_dim);
 * skip: layer indices whose joint blocks are skipped (skip-layer guidance),
 * or NULL; out: (B, out_channels, H, W).
 */
sd_status sd_mmdit_forward(sd_err *err, sd_mmdit *m, const sd_tensor *x,
    const float *t, const sd_tensor *context, const sd_tensor *pooled,
    const int *skip, int n_skip, sd_tensor *out);

/*
 * Per-image constants for a schedule: the time and text embedding and
 * every block's adaLN modulation for each of the steps timesteps t (the
 * same for every batch row), and the embedded context, computed once;
 * context: (B, L, joint_dim), pooled: (B, pooled_dim). Activations: free
 * it before the end of the request. The modulations are held for up to
 * SD_MMDIT_CACHE_STEPS steps at a time (computed again for the next ones
 * when a step passes them): its memory does not grow with the step count,
 * so a workspace measured with that many steps holds any schedule.
 */
/* 32: the usual schedules (28 steps, 4 for Turbo) make one table and no
   host work between steps; Large at 1536x1536, 4 images with CFG: 0.57 GB */
#define SD_MMDIT_CACHE_STEPS  32

typedef struct sd_mmdit_cache  sd_mmdit_cache;

sd_status sd_mmdit_cache_new(sd_err *err, sd_mmdit *m, const float *t,
    int steps, const sd_tensor *context, const sd_tensor *pooled,
    sd_mmdit_cache **out);
void sd_mmdit_cache_free(sd_mmdit_cache *cache);

/*
 * sd_mmdit_forward at step "step" of a cache (no skip layers). With step
 * caching on (sd_mmdit_cache_set_step_cache) a step may reuse the blocks
 * after the first from the last full step; the cache counts those.
 */
sd_status sd_mmdit_forward_cached(sd_err *err, sd_mmdit *m,
    const sd_tensor *x, sd_mmdit_cache *cache, int step, sd_tensor *out);

/* thr 0: off (the default); see sd_request.step_cache */
void sd_mmdit_cache_set_step_cache(sd_mmdit_cache *cache, float thr);
int sd_mmdit_cache_steps_cached(const sd_mmdit_cache *cache);
/* frees the step cache's tensors (sampling done); the counts stay */
void sd_mmdit_cache_drop_step_cache(sd_mmdit_cache *cache);
/* 0 once the workspace could not hold the step cache's tensors */
int sd_mmdit_cache_step_cache_on(const sd_mmdit_cache *cache);

#endif /* SD_MMDIT_H */
