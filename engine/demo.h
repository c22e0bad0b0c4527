/*
 * demo.h: random-weight SD3.5 models in the diffusers folder layout, with
 * tokenizer files of their own. The "demo" preset is the embedded demo
 * model: small, so that a fresh checkout generates images with no download
 * (the server's default model); "large", "large-turbo" and "medium" have
 * the real SD3.5 sizes with random bf16 weights, for GPU benchmarks.
 *
 * Invariant: a tensor's bytes depend only on the sizes and the seed (not on
 * the thread count or the shard size); the same seed writes the same files,
 * and the "demo" preset writes the bytes it always has.
 */

#ifndef SD_DEMO_H
#define SD_DEMO_H

#include <stdint.h>
#include "sd_err.h"

#define SD_DEMO_MAX_DUAL    64          /* dual_attention_layers entries */
#define SD_DEMO_VAE_BLOCKS  4           /* block_out_channels entries */


/* One CLIP text encoder (CLIPTextModelWithProjection). */
typedef struct {
    int             width;              /* hidden_size = projection_dim */
    int             ffn;                /* intermediate_size */
    int             layers;
    int             heads;
} sd_demo_clip_size;


/*
 * Every size of a model. pooled_projection_dim is clip_l.width +
 * clip_g.width and joint_attention_dim is t5_width (the CLIP widths must
 * sum to at most the T5 width, the joint context).
 */
typedef struct {
    const char         *name;

    /* text_encoder (CLIP-L, quick_gelu), text_encoder_2 (CLIP-G, gelu) */
    int                 clip_len;       /* max_position_embeddings */
    sd_demo_clip_size   clip_l;
    sd_demo_clip_size   clip_g;
    int                 clip_vocab;     /* least embedding rows, 0: none */

    /* text_encoder_3: T5 v1.1 encoder, gated-gelu */
    int                 t5_width;       /* d_model */
    int                 t5_heads;
    int                 t5_kv;          /* d_kv */
    int                 t5_ff;          /* d_ff */
    int                 t5_layers;
    int                 t5_buckets;     /* relative_attention_num_buckets */
    int                 t5_vocab;       /* least embedding rows, 0: none */

    /* transformer: SD3Transformer2DModel */
    int                 dit_layers;
    int                 dit_heads;
    int                 dit_head_dim;
    int                 dit_patch;
    int                 dit_sample;     /* sample_size */
    int                 dit_pos_max;    /* pos_embed_max_size */
    int                 dit_mlp;        /* feed-forward ratio */
    int                 dit_t_channels; /* Timesteps num_channels */
    int                 dit_ndual;
    int                 dit_dual[SD_DEMO_MAX_DUAL];     /* ascending */

    int                 latent;         /* latent channels */

    /* vae: AutoencoderKL */
    int                 vae_ch[SD_DEMO_VAE_BLOCKS];  /* block_out_channels */
    int                 vae_layers;     /* layers_per_block */
    int                 vae_groups;     /* norm_num_groups */

    /* how it is written; neither changes a tensor's bytes */
    int64_t             shard_bytes;    /* largest weight file, 0: one file */
    int                 threads;        /* 0: one per online CPU */
} sd_demo_config;


/*
 * A preset by name: "demo", "large", "large-turbo" (Large's architecture)
 * or "medium" (MMDiT-X); NULL for any other name.
 */
const sd_demo_config *sd_demo_config_named(const char *name);

/* Write the model of cfg into dir (created if missing; files overwritten). */
sd_status sd_demo_write_config(sd_err *err, const char *dir,
    const sd_demo_config *cfg, uint64_t seed);

/* The "demo" preset. */
sd_status sd_demo_write(sd_err *err, const char *dir, uint64_t seed);

#endif /* SD_DEMO_H */
