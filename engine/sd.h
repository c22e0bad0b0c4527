/*
 * sd.h: the engine's public interface, the only engine header that the nginx
 * module includes.
 *
 * An sd_engine owns one loaded model on one device. sd_generate() blocks the
 * calling thread until the images are done, cancelled or failed; it may be
 * called from several threads, and the engine serialises work per device.
 * Every failure is returned as an sd_status with a message; the library never
 * prints, exits or aborts.
 */

#ifndef SD_H
#define SD_H

#include <stddef.h>
#include <stdint.h>


typedef enum {
    SD_OK = 0,
    SD_ERR_INVALID,         /* bad argument or request field */
    SD_ERR_IO,              /* file missing or unreadable */
    SD_ERR_FORMAT,          /* malformed model, config or vocabulary file */
    SD_ERR_NOMEM,           /* host or device allocation failed */
    SD_ERR_UNSUPPORTED,     /* valid but not implemented here */
    SD_ERR_CANCELLED,       /* the cancel flag was raised */
    SD_ERR_BACKEND,         /* a compute backend call failed */
    SD_ERR_INTERNAL,        /* an invariant broke: a bug */
    SD_ERR_DEVICE           /* the device failed (a GPU fault, an
                               uncorrectable memory error): its state is
                               lost and no more work runs in this process
                               (sd_engine_lost); a new process can go on */
} sd_status;

const char *sd_status_str(sd_status s);


/*
 * The engine's numerics: raised whenever the same request can give other
 * pixels or bytes than before (a precision choice, a kernel's rounding, the
 * image encoder). The nginx module's result cache keys on it, so an
 * upgraded server never answers with an image its own engine would not
 * make. 2: CLIP in F32 under BF16, the parallel PNG encoder (2026-12-01).
 * 3: FP8 attention in the FP8 policy, the gated residual updates inside the
 * FP8 products (one rounding instead of two) (2026-12-01). 4: the FP8
 * attention writes E4M3 rows for the out projections (one scale an image,
 * no per-token pass) and sums P's rows from its E4M3 values on the tensor
 * cores (2026-12-02). 5: the FP8 attention's scores in F16 and P's codes
 * from each octave's linear ramp, Q's scale set for them
 * (sd_fp8_attn_scales) (2026-12-02, session 13). 6: the image stream's
 * feed-forward hidden layer written as E4M3 rows by its GELU product, each
 * row's scale a bound of its values (Cauchy-Schwarz), not its maximum
 * (2026-12-02, session 16).
 */
#define SD_NUMERICS  "6"


typedef enum {
    SD_RNG_CUDA = 0,        /* torch CUDA generator (Philox): A1111 default */
    SD_RNG_CPU              /* torch CPU generator (mt19937): ComfyUI */
} sd_rng_source;


typedef enum {
    SD_DEVICE_CPU = 0,
    SD_DEVICE_CUDA
} sd_device;


typedef enum {
    SD_PRECISION_AUTO = 0,  /* the device's best: FP32 on the CPU */
    SD_PRECISION_FP32,
    SD_PRECISION_BF16,
    SD_PRECISION_FP8
} sd_precision;


typedef struct {
    const char     *model_dir;      /* diffusers folder */
    const char     *name;           /* display name; default: folder name */
    sd_device       device;
    int             device_index;   /* GPU ordinal for SD_DEVICE_CUDA */
    sd_precision    precision;
    int             threads;        /* CPU threads for the CPU backend, 0 =
                                       library default */
    /*
     * GPU activation workspace: a fixed size in bytes, or 0 to measure
     * what the largest request needs (ws_width x ws_height, ws_batch
     * images per batch; defaults 1536 x 1536, 4). Requests beyond it
     * answer SD_ERR_NOMEM.
     */
    size_t          ws_bytes;
    int             ws_width, ws_height, ws_batch;
    /*
     * SD_PRECISION_FP8: layer kinds kept in BF16 (comma-separated kind
     * names of precision.h: "img_ff_down,t5_ff_down", groups "t5",
     * "mmdit"); NULL: the default policy.
     */
    const char     *fp8_keep;
    /*
     * Text encoders whose matrices stay in host memory and are copied to
     * the GPU per use (an encode costs their transfer; the text cache
     * skips it for prompts seen before): "t5", "clip", "text" (both),
     * NULL or "none": all on the GPU.
     */
    const char     *offload;
    /* prompts kept encoded (textcache.h), besides the empty one; 0: none */
    int             text_cache;
} sd_engine_config;

void sd_engine_config_init(sd_engine_config *cfg);

/*
 * A1111's seeds of image k of a request (counting over all n_iter batches
 * of batch_size) from the first image's: seed + k, or seed itself with
 * variation seeds (subseed_strength > 0); subseed + k. The one home of the
 * rule: the engine's n_iter loop and the module's answers (all_seeds,
 * all_subseeds) use these.
 */
int64_t sd_image_seed(int64_t seed, float subseed_strength, int64_t k);
int64_t sd_image_subseed(int64_t subseed, int64_t k);
/* 1 when s is a value sd_engine_config.offload takes, else 0. */
int sd_engine_offload_valid(const char *s);


typedef struct sd_engine  sd_engine;

sd_status sd_engine_open(const sd_engine_config *cfg, sd_engine **out,
    char *errbuf, size_t errlen);
void sd_engine_close(sd_engine *e);

/* Model facts for API listings; strings live as long as the engine. */
const char *sd_engine_model_name(const sd_engine *e);
/* "cpu, fp32" or "cuda:0 bf16, NVIDIA H200, sm_90, ..." for logs */
const char *sd_engine_device_info(const sd_engine *e);
const char *sd_engine_model_hash(const sd_engine *e);   /* 10 hex chars */
size_t sd_engine_memory_bytes(const sd_engine *e);
/*
 * GPU memory of the engine's device as the driver sees it (all processes):
 * used and total bytes. The CPU backend: zeros and SD_ERR_UNSUPPORTED.
 * Safe beside a running sd_generate().
 */
sd_status sd_engine_gpu_memory(const sd_engine *e, size_t *used,
    size_t *total, char *errbuf, size_t errlen);
/* The text-conditioning cache's counters; any thread may read them. */
void sd_engine_text_cache_stats(const sd_engine *e, uint64_t *hits,
    uint64_t *misses, int *entries);
/*
 * Whether the engine's device failed (a call answered SD_ERR_DEVICE): a
 * GPU fault or an uncorrectable memory error leaves the process's CUDA
 * context unusable until the process ends, so every later call answers
 * SD_ERR_DEVICE at once; a server ends the process and starts another.
 * Any thread may ask.
 */
int sd_engine_lost(const sd_engine *e);
/*
 * Tests only: a device fault as the hardware would raise it. On the GPU a
 * kernel that traps, left for the next call to meet (the context then
 * fails as after a real fault); on the CPU the engine marks itself lost.
 * The next sd_generate() answers SD_ERR_DEVICE.
 */
sd_status sd_engine_inject_fault(sd_engine *e, char *errbuf, size_t errlen);

/*
 * The hash A1111 shows as "Model hash", of a model folder without loading
 * it: out receives 10 hex characters and a NUL.
 */
sd_status sd_model_hash_dir(const char *dir, char out[16], char *errbuf,
    size_t errlen);

/* The version string of the infotext ("Version: ..."). */
const char *sd_version(void);

/*
 * n bytes of src as base64 (RFC 4648: padded, no line breaks) into dst,
 * which holds SD_BASE64_LEN(n) bytes (no NUL is written); an image's
 * megabytes are encoded on up to 8 threads, joined before it returns.
 * Returns SD_BASE64_LEN(n).
 */
#define SD_BASE64_LEN(n)  (((n) + 2) / 3 * 4)
size_t sd_base64_encode(char *dst, const unsigned char *src, size_t n);

/* NULL-terminated lists of the A1111 names this engine accepts. */
const char *const *sd_sampler_names(void);
const char *const *sd_scheduler_names(void);
/* The aliases of sampler i of sd_sampler_names() (NULL-terminated). */
const char *const *sd_sampler_aliases(int i);
/* Scheduler i's A1111 name ("karras") beside its label ("Karras"). */
const char *sd_scheduler_name(int i);

/* An 8-bit RGB image, (height, width, 3) row-major; the caller owns it. */
typedef struct {
    const uint8_t  *rgb;
    int             width, height;
} sd_rgb8;

/* An 8-bit gray image (a mask), (height, width); 255 = inpaint there. */
typedef struct {
    const uint8_t  *gray;
    int             width, height;
} sd_gray8;


/*
 * The built-in upscalers: "None", "Lanczos", "Nearest" (A1111's
 * UpscalerNone / UpscalerLanczos / UpscalerNearest: PIL resizes), and the
 * latent modes used by hires fix ("Latent", "Latent (antialiased)",
 * "Latent (bicubic)", "Latent (bicubic antialiased)", "Latent (nearest)",
 * "Latent (nearest-exact)").
 */
const char *const *sd_upscaler_names(void);
const char *const *sd_latent_upscale_modes(void);

/*
 * Resize an RGB8 image with a built-in upscaler to out_w x out_h ("None"
 * returns a copy at the same size and ignores out_w/out_h). *out is
 * malloc'd, (out_h, out_w, 3); the caller frees it. A latent mode here
 * means its pixel-space counterpart (bilinear, bicubic, nearest).
 */
sd_status sd_upscale_rgb8(const char *upscaler, const sd_rgb8 *in,
    int out_w, int out_h, uint8_t **out, int *w, int *h, char *errbuf,
    size_t errlen);


/*
 * The request contract (A1111 1.10 semantics; the module parses JSON and
 * images, the engine owns every A1111 rule):
 *
 * - sampler / scheduler: any string. The engine resolves A1111 labels,
 *   names and aliases ("k_euler", "DPM++ 2M Karras" = sampler "DPM++ 2M"
 *   with scheduler "Karras", "sgm_uniform"), any case, and falls back as
 *   A1111 1.10's get_sampler_and_scheduler() does: an unknown sampler runs
 *   the default ("Euler" here), an unknown scheduler "Automatic". Nothing
 *   is refused; sd_result.sampler / .scheduler name what ran, and the
 *   infotext too.
 * - seed -1 / subseed -1: the engine picks them. Image k (counting over
 *   n_iter batches of batch_size) gets seed + k and subseed + k; with
 *   subseed_strength > 0 every image keeps seed (A1111's variation seeds).
 *   The engine runs the n_iter loop (one sd_generate() call for the
 *   whole request); progress reports job = iteration. Progress fraction
 *   (A1111 shared.state): (job + step / steps) / jobs, with hires fix
 *   counting both passes in steps.
 * - interrupt and skip (A1111 /sdapi/v1/interrupt, /sdapi/v1/skip): see
 *   the cancel flag below.
 * - eta_noise_seed_delta: the stochastic samplers' per-step noise comes
 *   from a generator seeded with seed + eta_noise_seed_delta (A1111's ENSD).
 * - clip_skip: CLIP_stop_at_last_layers for both CLIP encoders (1 = last).
 * - prompts: A1111 prompt syntax ((x:w), [x], BREAK, [a:b:when], [a|b],
 *   <lora:name:w>); extra-network tags are stripped before encoding and
 *   listed in sd_result.extra_networks; names not installed are reported
 *   in sd_result.comments as A1111 does.
 * - img2img: n_init_images > 0; the images are RGB8 at any size, resized
 *   to width x height by resize_mode; denoising_strength picks the start
 *   step (A1111: t_enc = int(min(strength, 0.999) * steps)). With a mask
 *   (any size; resized like the images): blur, invert, fill, "only masked"
 *   (inpaint_full_res) with its padding, and the result pasted back.
 * - hires fix: enable_hr in txt2img: first pass at width x height, then
 *   hr_upscaler to hr_resize_x x hr_resize_y (0 = from the other by
 *   aspect) or hr_scale, then hr_second_pass_steps at denoising_strength.
 * Fields that are valid but not implemented yet make sd_request_check()
 * answer SD_ERR_UNSUPPORTED with "<field>: not implemented yet".
 */
typedef struct {
    const char     *prompt;
    const char     *negative_prompt;
    int             width;
    int             height;
    int             steps;
    float           cfg_scale;
    int64_t         seed;           /* -1: pick one at random */
    int64_t         subseed;        /* -1: random; used when strength > 0 */
    float           subseed_strength;
    int             batch_size;     /* images per forward pass */
    int             n_iter;         /* batches one after another */
    sd_rng_source   rng;
    const char     *sampler;        /* A1111 name, e.g. "Euler" */
    const char     *scheduler;      /* A1111 name, e.g. "Automatic" */
    /* skip-layer guidance (SD3.5 Medium); slg_scale 0 disables it */
    float           slg_scale;
    float           slg_start;      /* fraction of steps */
    float           slg_stop;
    int             slg_layers[16];
    int             slg_n_layers;

    /* ---- issue 11: see "The request contract" above ---- */
    int             clip_skip;      /* CLIP_stop_at_last_layers, 1..12 */
    int64_t         eta_noise_seed_delta;   /* option; 0 = none */
    float           eta;            /* ancestral eta; < 0: option default */

    /* img2img: n_init_images > 0 makes the request an img2img one */
    const sd_rgb8  *init_images;    /* image i of the batch uses
                                       init_images[i % n_init_images] */
    int             n_init_images;
    int             resize_mode;    /* 0 just resize, 1 crop and resize,
                                       2 resize and fill, 3 just resize
                                       (latent upscale) */
    float           denoising_strength;     /* img2img and hires, 0..1 */
    sd_gray8        mask;           /* gray == NULL: no inpainting */
    int             mask_blur_x;    /* px, A1111 mask_blur sets both */
    int             mask_blur_y;
    int             inpainting_fill;        /* 0 fill, 1 original,
                                               2 latent noise, 3 nothing */
    int             inpaint_full_res;       /* "Only masked" */
    int             inpaint_full_res_padding;   /* px */
    int             inpainting_mask_invert;

    /* hires fix (txt2img only) */
    int             enable_hr;
    float           hr_scale;       /* used when hr_resize_x/y are 0 */
    int             hr_resize_x, hr_resize_y;
    const char     *hr_upscaler;    /* sd_upscaler_names() or a latent
                                       mode of sd_latent_upscale_modes() */
    int             hr_second_pass_steps;   /* 0: steps */
    const char     *hr_prompt;      /* NULL or "": prompt */
    const char     *hr_negative_prompt;
    const char     *hr_sampler;     /* NULL or "": the first pass's */
    const char     *hr_scheduler;

    /*
     * Step caching (first-block cache; 0, the default, is off): from the
     * third step on, a step runs the transformer's first block and, when
     * that block's residual has changed by less than step_cache since
     * the last full step (relative L1 against that step's), adds
     * the other blocks' residual of the last full step instead of running
     * them; at most 3 steps in a row, never the last. 0.05-0.15 is the
     * useful range. The infotext says "Step cache: <value>".
     */
    float           step_cache;
} sd_request;

/* Fill A1111's txt2img defaults. */
void sd_request_init(sd_request *req);


typedef struct {
    unsigned char  *png;
    size_t          png_len;
    uint64_t        seed;
    uint64_t        subseed;
    char           *infotext;
    char           *prompt;         /* A1111 all_prompts[i]: as sent, with
                                       its extra-network tags */
    char           *negative_prompt;
    uint8_t        *rgb;            /* (height, width, 3), for formats
                                       other than PNG and for extras */
    int             width, height;
} sd_image;

typedef struct {
    sd_image       *images;
    int             n_images;
    /* what actually ran (static strings, A1111 labels) */
    const char     *sampler;        /* e.g. "DPM++ 2M" */
    const char     *scheduler;      /* e.g. "Karras" or "Automatic" */
    const char     *hr_sampler;     /* NULL without hires fix */
    const char     *hr_scheduler;
    int             width, height;  /* of the images (after hires) */
    int             first_pass_width, first_pass_height;
    int             hr_steps;       /* second-pass steps that ran, or 0 */
    /* A1111 "extra_network_data" names, "lora:foo", "hypernet:bar",
       n_extra_networks of them, malloc'd */
    char          **extra_networks;
    int             n_extra_networks;
    /* A1111 "comments": "Lora not found: foo\n"..., malloc'd or NULL */
    char           *comments;
    /*
     * The iterations that ran, stopped ones included: n_iter, or fewer
     * after an interrupt. images holds them one after another, batch_size
     * images each, except that an iteration stopped before it had
     * anything to decode has none (and so has a hires fix one stopped in
     * its first pass): n_images can be less than iterations * batch_size.
     */
    int             iterations;
    int             steps_cached;   /* steps that reused the residual */
    /*
     * Where the time went, in seconds of wall time on the calling thread,
     * summed over iterations and passes: text encoding (a text cache hit
     * costs next to nothing), per-image setup (schedule, embeddings and
     * modulations, noise), denoising steps, VAE decode with the pixels'
     * download, PNG encoding. GPU work is waited for where a phase needs
     * its results (the last step's estimate, the pixels).
     */
    double          time_text, time_setup, time_steps, time_decode;
    double          time_png;
} sd_result;

void sd_result_free(sd_result *res);


/*
 * Check a request against the engine's model without running it (sizes,
 * steps, sampler, scheduler, seeds...). The message starts with the A1111
 * field name and a colon, e.g. "width: must be a multiple of 16 ...".
 */
sd_status sd_request_check(const sd_engine *e, const sd_request *req,
    char *errbuf, size_t errlen);


/*
 * Progress callback, called from the generating thread: with step 0 when
 * iteration job (0 .. jobs - 1, A1111's job_no) begins, steps then being
 * the request's steps; then after each sampling step, step counting from
 * 1 to the pass's steps (img2img and hires fix run fewer or more than the
 * request's). The cancel flag is read after each call, so a callback may
 * raise it.
 */
typedef void (*sd_progress_fn)(void *data, int job, int jobs, int step,
    int steps);

/*
 * The cancel flag, polled when an iteration begins and before every
 * sampling step (A1111's shared.state.interrupted and .skipped):
 * - SD_CANCEL_ABORT ends the request with SD_ERR_CANCELLED.
 * - SD_CANCEL_STOP (interrupt) ends sampling early and still decodes the
 *   latest denoised estimate, so the iteration keeps its images; no later
 *   iteration begins, and the request succeeds with the images so far.
 * - SD_CANCEL_SKIP (skip) ends the current iteration's sampling as STOP
 *   does; once that iteration is done the engine sets the flag back to 0
 *   and the next iteration runs.
 * The engine writes the flag only to clear a SKIP: a caller that raises
 * ABORT from another thread, where it may meet that write, raises it again
 * from its progress callback (called as each iteration begins).
 *
 * On failure *res comes back zeroed; sd_result_free accepts a zeroed
 * result. Error messages about a request field start with the field's
 * A1111 name and a colon.
 */
#define SD_CANCEL_ABORT  1
#define SD_CANCEL_STOP   2
#define SD_CANCEL_SKIP   3

sd_status sd_generate(sd_engine *e, const sd_request *req,
    sd_progress_fn progress, void *progress_data, volatile int *cancel,
    sd_result *res, char *errbuf, size_t errlen);

/*
 * Batching across requests. Requests that wait together can share every
 * forward pass of the transformer (cond and uncond of each, their images
 * side by side), each with its own prompt, negative prompt, cfg_scale,
 * seeds, progress, cancel flag and result. sd_request_groupable(a, NULL):
 * a can share passes at all (txt2img without hires fix, one iteration,
 * no skip-layer guidance, no step caching, no prompt editing or
 * alternation); sd_request_groupable(a, b): a and b can share them (both
 * can, and the same size, steps, sampler and scheduler as resolved, eta,
 * eta_noise_seed_delta, rng, subseed_strength, and guidance on in both or
 * in neither). Seeds must be resolved (not -1). The caller bounds the
 * images: at most 64 in all, and sd_engine_group_images() for the size.
 */
int sd_request_groupable(const sd_request *a, const sd_request *b);

/*
 * How many images of width x height one shared forward pass may hold: on
 * the GPU what the activation workspace was sized for (ws_width x
 * ws_height x ws_batch pixels, at least 1), on the CPU 64.
 */
int sd_engine_group_images(const sd_engine *e, int width, int height);

/*
 * Runs n requests with shared forward passes. Each request k gets its own
 * answer: status[k], res[k] and, on failure, errbuf[k] (errlen bytes), as
 * sd_generate() would give it; progress(progress_data[k], 0, 1, step,
 * steps) reports its steps and *cancel[k] (NULL: none) is polled after
 * each: ABORT fails only that request (SD_ERR_CANCELLED); STOP and SKIP
 * keep its latest denoised estimate as its image (the others go on; its
 * answer comes with theirs) and SKIP is cleared afterwards. Requests that
 * cannot share passes with the first (sd_request_groupable), or whose
 * prompts encode to another CLIP chunk count than the first's (padding
 * would change their images), run alone after the others, as does
 * everyone when the shared pass did not fit in memory. An image comes out
 * as its request alone makes it, up to the summation order of products
 * over more rows (the libraries pick kernels by the row count): on the CPU
 * a few values one level apart; a pass of one request gives its bytes.
 */
void sd_generate_group(sd_engine *e, int n, const sd_request *const *reqs,
    sd_progress_fn progress, void *const *progress_data,
    volatile int *const *cancel, sd_result *res, sd_status *status,
    char *const *errbuf, size_t errlen);


#endif /* SD_H */
