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
    SD_ERR_INTERNAL         /* an invariant broke: a bug */
} sd_status;

const char *sd_status_str(sd_status s);


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
} sd_engine_config;

void sd_engine_config_init(sd_engine_config *cfg);


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
 * The hash A1111 shows as "Model hash", of a model folder without loading
 * it: out receives 10 hex characters and a NUL.
 */
sd_status sd_model_hash_dir(const char *dir, char out[16], char *errbuf,
    size_t errlen);

/* The version string of the infotext ("Version: ..."). */
const char *sd_version(void);

/* NULL-terminated lists of the A1111 names this engine accepts. */
const char *const *sd_sampler_names(void);
const char *const *sd_scheduler_names(void);


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
} sd_request;

/* Fill A1111's txt2img defaults. */
void sd_request_init(sd_request *req);


typedef struct {
    unsigned char  *png;
    size_t          png_len;
    uint64_t        seed;
    uint64_t        subseed;
    char           *infotext;
} sd_image;

typedef struct {
    sd_image       *images;
    int             n_images;
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
 * Progress callback: called from the generating thread after each sampling
 * step (job is the image batch index, step counts from 1).
 */
typedef void (*sd_progress_fn)(void *data, int job, int jobs, int step,
    int steps);

/*
 * The cancel flag, polled before every sampling step: SD_CANCEL_ABORT ends
 * the request with SD_ERR_CANCELLED; SD_CANCEL_STOP ends sampling early and
 * still decodes the latest denoised estimate (A1111's interrupt), so the
 * request succeeds with those images. On failure *res comes back zeroed;
 * sd_result_free accepts a zeroed result. Error messages about a request
 * field start with the field's A1111 name and a colon.
 */
#define SD_CANCEL_ABORT  1
#define SD_CANCEL_STOP   2

sd_status sd_generate(sd_engine *e, const sd_request *req,
    sd_progress_fn progress, void *progress_data, volatile int *cancel,
    sd_result *res, char *errbuf, size_t errlen);

#endif /* SD_H */
