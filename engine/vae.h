/*
 * vae.h: the SD3.5 16-channel AutoencoderKL, decoder and encoder, written
 * once against backend.h.
 *
 * Invariant: sizes (block_out_channels, layers_per_block, groups, latent
 * channels) and the scaling and shift factors come from vae/config.json.
 */

#ifndef SD_VAE_H
#define SD_VAE_H

#include "backend.h"


typedef struct sd_vae  sd_vae;

sd_status sd_vae_load(sd_err *err, sd_backend *be, const char *dir,
    sd_vae **out);
void sd_vae_free(sd_vae *v);

/*
 * An Upsample2D conv's weight w3 (Co, 3, 3, Ci) in its sub-pixel form w2
 * (4 Co, 2, 2, Ci), F32 (vae.c: the decoder's upsamplers run as a 2x2 conv
 * with pad 1 into four phases, then sd_subpixel2x).
 */
void sd_vae_subpixel_weights(const float *w3, int64_t co, int64_t ci,
    float *w2);
float sd_vae_scaling_factor(const sd_vae *v);
float sd_vae_shift_factor(const sd_vae *v);
int sd_vae_latent_channels(const sd_vae *v);

/* z: (B, latent, h, w), no scaling applied -> *img: (B, 3, 8h, 8w) */
sd_status sd_vae_decode(sd_err *err, sd_vae *v, const sd_tensor *z,
    sd_tensor **img);

/* img: (B, 3, H, W) in [-1, 1] -> posterior mean and std, (B, latent, H/8, W/8) */
sd_status sd_vae_encode(sd_err *err, sd_vae *v, const sd_tensor *img,
    sd_tensor **mean, sd_tensor **std);

#endif /* SD_VAE_H */
