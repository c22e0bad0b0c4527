/*
 * model.h: an SD3.5 model in the diffusers folder layout, found through
 * model_index.json, with the parts loaded on one backend.
 *
 * Invariant: a loaded sd_model is read-only during generation except for
 * backend scratch memory, so one generation at a time may use it.
 */

#ifndef SD_MODEL_H
#define SD_MODEL_H

#include "backend.h"
#include "mmdit.h"
#include "textenc.h"
#include "tokenizer.h"
#include "vae.h"


enum {
    SD_PART_TEXT = 1,       /* tokenizers and text encoders */
    SD_PART_DIT = 2,        /* transformer and scheduler */
    SD_PART_VAE = 4,
    SD_PART_ALL = 7
};


typedef struct {
    sd_backend     *be;
    char            dir[4096];
    char            name[256];
    char            hash[16];       /* 10 hex chars, as A1111 shows */

    sd_clip_tok    *tok_l, *tok_g;
    sd_t5_tok      *tok_t5;
    sd_clip        *clip_l, *clip_g;
    sd_t5          *t5;             /* NULL: T5 absent, zeros used */
    int             clip_len;       /* 77 */
    int             t5_len;         /* 256 (SD3 max_sequence_length) */
    int             joint_dim;      /* T5 width, or the transformer's */

    sd_mmdit       *dit;
    float           shift;          /* scheduler_config.json */
    int             train_steps;

    sd_vae         *vae;

    /* backend memory each part's weights took at load */
    size_t          bytes_text, bytes_dit, bytes_vae;
} sd_model;


sd_status sd_model_load(sd_err *err, sd_backend *be, const char *dir,
    int parts, sd_model **out);
void sd_model_free(sd_model *m);


/* Text conditioning of one prompt, every intermediate kept for dumps. */
typedef struct {
    int32_t        *ids_l, *ids_g, *ids_t5;     /* host, clip_len / t5_len */
    sd_tensor      *pen_l, *pen_g;              /* (1, 77, d) */
    sd_tensor      *emb_l, *emb_g;              /* (1, proj) */
    sd_tensor      *t5;                         /* (1, 256, d) or NULL */
    sd_tensor      *context;                    /* (1, 77 + 256, joint) */
    sd_tensor      *pooled;                     /* (1, proj_l + proj_g) */
    int             chunks;     /* CLIP chunks of 77 in context (0: one) */
} sd_cond;

sd_status sd_cond_encode(sd_err *err, sd_model *m, const char *prompt,
    sd_cond *c);
/* With A1111's CLIP_stop_at_last_layers (1: sd_cond_encode's). */
sd_status sd_cond_encode_skip(sd_err *err, sd_model *m, const char *prompt,
    int clip_skip, sd_cond *c);
void sd_cond_free(sd_cond *c);

#endif /* SD_MODEL_H */
