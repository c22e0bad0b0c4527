/*
 * pipeline.h: SD3.5 text-to-image on a loaded model: flow-matching
 * schedule, noise, Euler sampling with classifier-free guidance and
 * optional skip-layer guidance, VAE decode to 8-bit RGB.
 *
 * Invariant: everything a run needs arrives in sd_pipe_args; the run keeps
 * no state between calls, so the dump of one run describes it completely.
 */

#ifndef SD_PIPELINE_H
#define SD_PIPELINE_H

#include "model.h"
#include "sampler.h"
#include "sd.h"




/*
 * Where sd_pipe_txt2img's time went, in seconds of wall time on the calling
 * thread, added to: setup (schedule, buffers, the per-image embeddings and
 * modulations, the noise), the denoising steps (until the last estimate is
 * back on the host), the VAE decode with the pixels' download. GPU work
 * that setup queues may run on into the steps' time.
 */
typedef struct {
    double              setup, steps, decode;
} sd_pipe_times;

typedef struct {
    int                 width, height, steps, batch;
    sd_sampler          sampler;
    sd_sched            sched;
    float               eta;            /* ancestral / SDE eta */
    uint64_t            ensd;           /* eta_noise_seed_delta */
    /* img2img: the images' latents (batch x (C, h, w), scaled and
       shifted as the sampler sees them), host; NULL for txt2img */
    const float        *init;
    int                 start;          /* with init: the first sigma of
                                           the schedule for steps */
    /* inpainting, with init: (h, w), 1 where to inpaint; the denoised
       estimate of every step and the final latents keep init elsewhere
       (A1111's CFGDenoiser blend, mask_before_denoising off) */
    const float        *mask;
    float              *latents_out;    /* non-NULL: the final latents
                                           (batch x (C, h, w)) go here and
                                           nothing is decoded */
    float               cfg;
    uint64_t            seeds[64];      /* one per image of the batch */
    uint64_t            subseeds[64];
    float               subseed_strength;
    sd_rng_source       rng;
    float               slg_scale, slg_start, slg_stop;
    const int          *slg_layers;
    int                 slg_n_layers;
    sd_progress_fn      progress;
    void               *progress_data;
    int                 job, jobs;
    volatile int       *cancel;
    /* prompt editing (A1111's reconstruct_cond_batch, resolved by the
       caller): n_seg > 0: sampling steps from seg_end[i - 1] (0 for i = 0)
       below seg_end[i] use seg_cond[i] / seg_ncond[i] instead of cond /
       ncond, the last segment to the end; every context of the same rows */
    int                 n_seg;
    const int          *seg_end;
    const sd_cond     **seg_cond, **seg_ncond;
    /* step caching (sd_request.step_cache), 0 off; steps_cached, when not
       NULL, is increased by the steps that reused the residual and
       step_cache_off set when the workspace could not hold the cache */
    float               step_cache;
    int                *steps_cached;
    int                *step_cache_off;
    /* batching across requests (sd_generate_group): image i of the batch
       is conditioned on img_cond[i] / img_ncond[i] and guided with
       img_cfg[i] (NULL: cond / ncond and cfg for every image; every
       context of the same rows, cfg > 1 on all or none); img_stop[i],
       raised by the progress callback after a step, freezes image i at
       that step's denoised estimate (its request interrupted or gone),
       which is what gets decoded for it; once every image is frozen the
       sampling stops as after SD_CANCEL_STOP */
    const sd_cond     **img_cond, **img_ncond;
    const float        *img_cfg;
    volatile int       *img_stop;
    sd_pipe_times      *times;          /* NULL, or added to (above) */
} sd_pipe_args;


/* Host copies of the first image's intermediates, for sd-cli --dump. */
typedef struct {
    float              *noise;          /* (C, h, w) */
    float              *sigmas;         /* steps + 1 */
    float              *timesteps;      /* steps */
    float              *latents_step0;  /* (C, h, w) */
    float              *final_latents;  /* (C, h, w) */
    int                 latent_c, latent_h, latent_w;
} sd_pipe_dump;

void sd_pipe_dump_free(sd_pipe_dump *d);


/* FlowMatchEulerDiscreteScheduler.set_timesteps without dynamic shift. */
void sd_flow_schedule(int steps, float shift, int train_steps,
    float *sigmas, float *timesteps);

/* A1111's variation noise: slerp over dim 1 of (C, H, W), in place. */
void sd_noise_slerp(float val, float *low, const float *high, int c, int h,
    int w);

/*
 * Check a request against the model (sizes, steps, cfg, batch); the
 * message names the field and the rule.
 */
sd_status sd_pipe_validate(sd_err *err, const sd_model *m,
    const sd_pipe_args *a);

/*
 * rgb receives batch images of (height, width, 3) uint8, malloc'd; it stays
 * NULL (and SD_OK is returned) when SD_CANCEL_STOP or SD_CANCEL_SKIP came
 * before the first step, so there was nothing to decode.
 * cond/ncond: prompt and negative conditioning (ncond unused if cfg <= 1).
 */
sd_status sd_pipe_txt2img(sd_err *err, sd_model *m, const sd_pipe_args *a,
    const sd_cond *cond, const sd_cond *ncond, uint8_t **rgb,
    sd_pipe_dump *dump);

/*
 * A1111's setup_img2img_steps: img2img runs the schedule of *steps from
 * index steps - int(min(strength, 0.999) * steps) - 1; hires fix
 * (requested > 0) the schedule of int(requested / min(strength, 0.999))
 * steps from its requested-th sigma from the end. Returns the start index
 * and sets *steps to the schedule's length.
 */
int sd_img2img_start(int *steps, float strength, int requested);

/*
 * A decoded image (3, hw) in [-1, 1] as 8-bit RGB (hw, 3), as diffusers'
 * VaeImageProcessor makes it: round((x / 2 + 0.5).clamp(0, 1) * 255), half
 * to even. On up to 8 threads.
 */
void sd_image_to_rgb8(const float *px, int64_t hw, uint8_t *rgb);

/*
 * torch.nn.functional.interpolate of (B, C, h, w) latents to (oh, ow) for
 * the latent upscale modes ("Latent" bilinear, "(bicubic)", "(nearest)",
 * "(nearest-exact)"; the antialiased ones equal theirs when enlarging).
 */
sd_status sd_latent_upscale(sd_err *err, const char *mode, const float *in,
    int b, int c, int h, int w, float *out, int oh, int ow);

/*
 * The init latents of one RGB8 image of width x height: VAE encoder
 * (posterior mean), (mean - shift) * scaling; out holds (C, h, w).
 */
sd_status sd_pipe_encode_image(sd_err *err, sd_model *m, const uint8_t *rgb,
    int width, int height, float *out);

/* The GPU workspace's default sizing request. */
#define SD_PIPE_WS_SIDE   1536
#define SD_PIPE_WS_BATCH  4

#ifdef SD_HAVE_CUDA
/*
 * Reserve the GPU activation workspace of m's backend: ws_bytes when not
 * 0, else what a width x height request of batch images needs (sizes
 * above the position table are clamped to it), measured by running it:
 * empty prompts (zero conditioning when the model has no text encoders),
 * SD_MMDIT_CACHE_STEPS CFG steps (the most the transformer cache
 * holds at once), the decode, in the backend's measuring mode.
 */
sd_status sd_pipe_reserve(sd_err *err, sd_model *m, size_t ws_bytes,
    int width, int height, int batch);
#endif

/* An A1111 sampler name (any case; NULL or "": Euler) to the sampler. */
sd_status sd_sampler_parse(sd_err *err, const char *name, sd_sampler *out);

/*
 * The A1111 infotext ("parameters") of one image: prompt, negative prompt,
 * then "Steps: N, Sampler: ..., Seed: S, Size: WxH, Model hash: ...".
 */
sd_status sd_infotext(sd_err *err, const sd_model *m, const sd_request *r,
    uint64_t seed, uint64_t subseed, char **out);

#endif /* SD_PIPELINE_H */
