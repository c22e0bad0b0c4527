/*
 * sampler.h: A1111's samplers and schedulers for flow-matching models
 * (SD3.5), in one place: the name tables and their resolution, the sigma
 * schedules, and the sampling loop on host F32 latents.
 *
 * Invariant: a sampler only ever sees the model through denoise(), which
 * returns the guided denoised estimate x0 = x - sigma * v for latents x at
 * sigma; everything else here is plain host arithmetic, so the loop is the
 * same on every backend and is unit-tested with analytic denoisers.
 */

#ifndef SD_SAMPLER_H
#define SD_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "sd_err.h"


typedef enum {
    SD_SAMPLER_EULER = 0,       /* "Euler": the API's default */
    SD_SAMPLER_EULER_A,
    SD_SAMPLER_HEUN,
    SD_SAMPLER_DPMPP_2M,        /* A1111's samplers[0]: the fallback */
    SD_SAMPLER_DPMPP_2M_SDE,
    SD_SAMPLER_DPMPP_3M_SDE,
    SD_SAMPLER_DDIM,
    SD_SAMPLER_UNIPC,
    SD_SAMPLER_LCM,
    SD_SAMPLER_COUNT
} sd_sampler;

typedef enum {
    SD_SCHED_AUTOMATIC = 0,
    SD_SCHED_UNIFORM,
    SD_SCHED_KARRAS,
    SD_SCHED_EXPONENTIAL,
    SD_SCHED_SGM_UNIFORM,
    SD_SCHED_KL_OPTIMAL,
    SD_SCHED_SIMPLE,
    SD_SCHED_NORMAL,
    SD_SCHED_DDIM,
    SD_SCHED_BETA,
    SD_SCHED_COUNT
} sd_sched;


/* Labels, NULL-terminated, in the enums' order. */
extern const char *const  sd_sampler_labels[SD_SAMPLER_COUNT + 1];
extern const char *const  sd_sched_labels[SD_SCHED_COUNT + 1];
extern const char *const  sd_sched_names[SD_SCHED_COUNT + 1];

/*
 * A1111 1.10 get_sampler_and_scheduler(): a legacy suffix (" Karras",
 * " karras", " SGMUniform", ...) names the scheduler; the rest is looked
 * up by label (then, beyond A1111, by alias and case-insensitively);
 * unknown samplers become "DPM++ 2M", unknown schedulers "Automatic";
 * NULL or "" is "Euler" (the API's sampler_index default). A scheduler
 * equal to the sampler's own default becomes "Automatic". *fell_back is
 * set when a name was not understood.
 */
void sd_sampler_resolve(const char *sampler, const char *scheduler,
    sd_sampler *out_sampler, sd_sched *out_sched, int *fell_back);

/* The scheduler "Automatic" means for a sampler. */
sd_sched sd_sampler_default_sched(sd_sampler s);


/* The model's discrete flow schedule (A1111 DiscreteSchedule of SD3). */
typedef struct {
    float   shift;
    int     train_steps;        /* 1000 */
} sd_flow_model;

/* The most sigmas sd_sched_sigmas() writes for steps (DDIM may give more
   than steps + 1). */
#define SD_SCHED_MAX_SIGMAS(steps)  ((steps) + 2 > 1002 ? (steps) + 2 : 1002)

/*
 * sigmas receives steps + 1 values (the last 0, except KL Optimal whose
 * last is sigma_min, as A1111's kl_optimal gives). Automatic: the
 * sampler's default; for samplers without one, diffusers'
 * FlowMatchEulerDiscreteScheduler schedule (the golden-tested one).
 * Returns the count written (steps + 1; for DDIM, A1111's count of table
 * entries every 1000 / steps, which can differ), or -1 with err set.
 */
int sd_sched_sigmas(sd_err *err, const sd_flow_model *fm, sd_sampler smp,
    sd_sched sch, int steps, float *sigmas);


/*
 * The model as the samplers see it: x (n floats per image, batch images)
 * at sigma = sigmas[j] -> denoised. j indexes the schedule (a second-order
 * sampler's second call at sigmas[i + 1] passes i + 1), so a caller can
 * cache per-sigma work; 0 <= j < n_sigmas - 1 always.
 */
typedef sd_status (*sd_denoise_fn)(void *ctx, const float *x, float sigma,
    int j, float *denoised);

/* Per-step noise for image k of the batch into out (n floats). */
typedef void (*sd_noise_fn)(void *ctx, int k, int step, float *out,
    size_t n);

/* Called after each step; returns nonzero to stop early. */
typedef int (*sd_step_fn)(void *ctx, int step, int steps,
    const float *denoised);

typedef struct {
    sd_sampler      sampler;
    float           eta;            /* ancestral / SDE eta (A1111 1.0) */
    float           s_noise;
    int             batch;
    size_t          n;              /* floats per image */
    sd_denoise_fn   denoise;
    sd_noise_fn     noise;
    sd_step_fn      on_step;
    void           *ctx;
} sd_sample_args;

/*
 * Run the sampler from x (at sigmas[0]) over n_sigmas - 1 steps, in place.
 * denoised (batch * n floats) keeps the latest estimate.
 */
sd_status sd_sample(sd_err *err, const sd_sample_args *a,
    const float *sigmas, int n_sigmas, float *x, float *denoised);

/* Regularized incomplete beta inverse (the Beta scheduler's ppf). */
double sd_beta_ppf(double p, double a, double b);

#endif /* SD_SAMPLER_H */
