/*
 * workspace.c: sizing the GPU activation workspace of a loaded model
 * (pipeline.h, sd_pipe_reserve). The measured run is the request itself in
 * the backend's measuring mode: every op allocates and frees as it would,
 * nothing is computed, and the high-water mark is what to reserve. It
 * runs SD_MMDIT_CACHE_STEPS steps: the per-image cache holds at most that
 * many steps' modulations, so the mark holds for any step count (with one
 * step a 28-step image at 512x512, batch 2, ran out of it).
 */

#ifdef SD_HAVE_CUDA

#include <stdlib.h>
#include <string.h>

#include "pipeline.h"
#include "sd_cuda.h"


#define SD_WS_SLACK  ((size_t) 64 << 20)


/* The conditioning of an empty prompt, or zeros of its shape. */
static sd_status
measure_cond(sd_err *err, sd_model *m, sd_cond *c)
{
    const sd_mmdit_info  *in = sd_mmdit_get_info(m->dit);

    if (m->clip_l) {
        return sd_cond_encode(err, m, "", c);
    }
    memset(c, 0, sizeof(*c));
    SD_TRY(sd_tensor_new3(err, m->be, 1, 77 + 256, in->joint_dim,
                          &c->context));
    return sd_tensor_new2(err, m->be, 1, in->pooled_dim, &c->pooled);
}


sd_status
sd_pipe_reserve(sd_err *err, sd_model *m, size_t ws_bytes, int width,
    int height, int batch)
{
    const sd_mmdit_info  *in;
    sd_pipe_args          a;
    sd_cond               c;
    uint8_t              *rgb = NULL;
    size_t                need;
    sd_status             s;
    int                   i, side;

    SD_TRY(sd_cuda_bind(err, m->be));
    if (ws_bytes) {
        return sd_cuda_reserve(err, m->be, ws_bytes);
    }
    if (m->dit == NULL || m->vae == NULL) {
        return sd_errorf(err, SD_ERR_INTERNAL, "workspace: the transformer "
                         "and the VAE must be loaded");
    }

    /* the request, within what the position table allows */
    in = sd_mmdit_get_info(m->dit);
    side = in->pos_max * in->patch_size * 8;
    memset(&a, 0, sizeof(a));
    a.width = width > 0 ? (width < side ? width : side) : SD_PIPE_WS_SIDE;
    a.height = height > 0 ? (height < side ? height : side)
                          : SD_PIPE_WS_SIDE;
    a.width = a.width > side ? side : a.width;
    a.height = a.height > side ? side : a.height;
    a.batch = batch > 0 ? (batch < 64 ? batch : 64) : SD_PIPE_WS_BATCH;
    /* the transformer's per-image cache holds up to this many steps'
       modulations, whatever the schedule (mmdit.h) */
    a.steps = SD_MMDIT_CACHE_STEPS;
    a.cfg = 4.5f;
    /* Euler: on a GPU its latents stay on the device (pipeline.c's
       sample_device), which takes what the host's samplers take and more */
    a.sampler = SD_SAMPLER_EULER;
    a.jobs = 1;
    for (i = 0; i < a.batch; i++) {
        a.seeds[i] = (uint64_t) i;
        a.subseeds[i] = (uint64_t) i;
    }
    SD_TRY(sd_pipe_validate(err, m, &a));

    sd_cuda_measure_begin(m->be);
    s = measure_cond(err, m, &c);
    if (s == SD_OK) {
        s = sd_pipe_txt2img(err, m, &a, &c, &c, &rgb, NULL);
    }
    sd_cond_free(&c);
    need = sd_cuda_measure_end(m->be);
    free(rgb);
    if (s != SD_OK) {
        return s;
    }
    return sd_cuda_reserve(err, m->be, need + need / 16 + SD_WS_SLACK);
}

#else

/* ISO C wants a translation unit to declare something. */
typedef int sd_workspace_unused;

#endif
