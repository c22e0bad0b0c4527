/*
 * textenc.h: the three SD3.5 text encoders (CLIP-L, CLIP-G, T5 encoder)
 * and the joint conditioning built from them.
 *
 * Invariant: sizes come from each text encoder folder's config.json and tensor
 * shapes; outputs are new tensors owned by the caller.
 */

#ifndef SD_TEXTENC_H
#define SD_TEXTENC_H

#include "backend.h"


typedef struct sd_clip  sd_clip;

/* dir: a text_encoder folder of CLIPTextModelWithProjection. */
sd_status sd_clip_load(sd_err *err, sd_backend *be, const char *dir,
    sd_clip **out);
void sd_clip_free(sd_clip *c);
int sd_clip_width(const sd_clip *c);
int sd_clip_proj_dim(const sd_clip *c);
int sd_clip_max_len(const sd_clip *c);

/*
 * ids: (B, L) on the host. Outputs, each optional (NULL to skip):
 * penultimate: (B, L, d) hidden state before the last layer;
 * last: (B, L, d) after the final layer norm;
 * embeds: (B, proj) EOS token of last, times text_projection.
 */
sd_status sd_clip_forward(sd_err *err, sd_clip *c, const int32_t *ids,
    int batch, int len, sd_tensor **penultimate, sd_tensor **last,
    sd_tensor **embeds);

/*
 * The same with A1111's clip skip (CLIP_stop_at_last_layers, 1 = the
 * default): *penultimate receives hidden_states[-(skip + 1)] (diffusers'
 * clip_skip = skip - 1); last and embeds are unchanged.
 */
sd_status sd_clip_forward_skip(sd_err *err, sd_clip *c, const int32_t *ids,
    int batch, int len, int skip, sd_tensor **penultimate, sd_tensor **last,
    sd_tensor **embeds);


typedef struct sd_t5  sd_t5;

/* dir: a text_encoder_3 folder of T5EncoderModel. */
sd_status sd_t5_load(sd_err *err, sd_backend *be, const char *dir,
    sd_t5 **out);
void sd_t5_free(sd_t5 *t);
int sd_t5_width(const sd_t5 *t);

/* ids: (B, L) on the host -> *hidden: (B, L, d_model) */
sd_status sd_t5_forward(sd_err *err, sd_t5 *t, const int32_t *ids,
    int batch, int len, sd_tensor **hidden);

#endif /* SD_TEXTENC_H */
