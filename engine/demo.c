/*
 * demo.c: the random-weight models of demo.h: SD3.5 (MMDiT, and MMDiT-X
 * where dual_attention_layers lists blocks) in the diffusers folder layout
 * with tokenizer files of their own, at the sizes of an sd_demo_config: the
 * tiny embedded demo model, or the real Large and Medium sizes for GPU
 * benchmarks.
 *
 * What is written, folder by folder:
 *   tokenizer, tokenizer_2: a byte-level BPE vocabulary: the 256 GPT-2
 *     byte symbols alone and with "</w>", then the merges that BPE learns
 *     here from a built-in list of common English and prompt words, then
 *     "<|startoftext|>" and "<|endoftext|>" as the last two ids; since every
 *     byte is a symbol, any UTF-8 text tokenizes without unknown tokens;
 *   tokenizer_3: a SentencePiece unigram model (spiece.model, protobuf
 *     written here) over "<pad>", "</s>", "<unk>", U+2581, printable ASCII,
 *     U+2581 + a lower-case letter and the same words, identity normalizer;
 *   text_encoder, text_encoder_2, text_encoder_3, transformer, vae: config
 *     files and bf16 safetensors with exactly the tensor names and shapes
 *     that clip.c, t5.c, mmdit.c and vae.c load, and that transformers'
 *     CLIPTextModelWithProjection and T5EncoderModel and diffusers'
 *     SD3Transformer2DModel and AutoencoderKL expect; the embedding tables
 *     have at least the configured rows (the real vocabulary sizes), the
 *     tokenizers use the first ones; a file over cfg->shard_bytes is split
 *     into shards "<base>-0000i-of-0000n.safetensors" listed by
 *     "<base>.safetensors.index.json", as transformers and diffusers save;
 *   scheduler: FlowMatchEulerDiscreteScheduler, shift 3.
 *
 * Weights are N(0, gain^2 / fan_in); norm weights are 1, norm biases 0,
 * other biases small. The adaLN modulation linears have std 0.02 so that
 * the untrained transformer stays near identity and finite. The
 * transformer's position table is the real 2D sin-cos table of diffusers'
 * get_2d_sincos_pos_embed, not random. Tensors under SD_DEMO_BIG values
 * take a splitmix64 + Box-Muller stream seeded per component from the
 * seed, in file order; larger ones (the full-size matrices) take each
 * 16-bit quarter u of a splitmix64 value to the normal quantile
 * Phi^-1((u + 1/2) / 2^16), through a table of the bf16 values per (mean,
 * std): a normal to 16 bits, within 4.3 std. They are computed in chunks
 * of SD_DEMO_CHUNK values by several threads, each chunk seeded from the
 * seed, the tensor's rank among the large tensors of its component and
 * the chunk's index: so no value depends on the thread count or on the
 * shard size, and the demo preset, whose random tensors are all small,
 * writes the bytes it always has.
 *
 * Invariant: the bytes written depend only on the sizes, the shard size
 * and the seed (no clock, no addresses, no thread count, no locale-
 * dependent formatting), a tensor's bytes only on the sizes and the seed;
 * each file is written to "<name>.tmp" and renamed, so a reader never sees
 * a half-written file. Memory: one component at a time, and at most one
 * shard of it (plus one tensor).
 */

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "demo.h"
#include "safetensors.h"


#define SD_DEMO_T5_EXTRA_IDS    100         /* tokenizer_3's <extra_id_N> */
#define SD_DEMO_CLIP_VOCAB      49408       /* openai/clip-vit-large-patch14 */
#define SD_DEMO_T5_VOCAB        32128       /* google/t5-v1_1-xxl */
#define SD_DEMO_SHARD_BYTES     5000000000LL    /* transformers' "5GB" */

#define SD_DEMO_MOD_STD         0.02f       /* adaLN modulation linears */
#define SD_DEMO_BIAS_STD        0.02f
#define SD_DEMO_BIG             (1 << 18)   /* values: parallel generator */
#define SD_DEMO_CHUNK           (1 << 16)   /* values of one parallel task */
#define SD_DEMO_MAX_THREADS     64
#define SD_DEMO_BPE_MAX_MERGES  4000
#define SD_DEMO_PREFIX_LEN      128
#define SD_DEMO_NAME_LEN        160         /* prefix + ".weight" */
#define SD_DEMO_PATH_LEN        4096
#define SD_DEMO_TWO_PI          6.283185307179586

/* protobuf wire types and sentencepiece.SentencePiece.Type values */
#define SD_DEMO_PB_VARINT       0
#define SD_DEMO_PB_LEN          2
#define SD_DEMO_PB_I32          5
#define SD_DEMO_SP_NORMAL       1
#define SD_DEMO_SP_UNKNOWN      2
#define SD_DEMO_SP_CONTROL      3

#define SD_DEMO_SPACE           "\xe2\x96\x81"      /* U+2581 */


/* A growable byte buffer; failed is set on the first allocation failure. */
typedef struct {
    char           *p;
    size_t          len;
    size_t          cap;
    int             failed;
} sd_demo_buf;


/* The bf16 values of mean + std * Phi^-1((u + 1/2) / 2^16), u < 2^16. */
typedef struct {
    float           mean;
    float           std;
    uint16_t        v[1 << 16];
} sd_demo_lut;


/* A large random tensor waiting for the parallel generator. */
typedef struct {
    uint16_t           *dst;            /* bf16, n values */
    int64_t             n;
    int64_t             first;          /* its first chunk in the job */
    float               mean;
    float               std;
    uint64_t            key;            /* stream of the tensor */
    const sd_demo_lut  *lut;
} sd_demo_big;


/* The parallel generation of every pending large tensor of a file. */
typedef struct {
    const sd_demo_big  *big;
    size_t              nbig;
    int64_t             nchunks;
    atomic_llong        next;           /* the next chunk to take */
} sd_demo_job;


/*
 * The tensors of one component (a safetensors file or a set of shards),
 * bf16, and their random streams.
 */
typedef struct {
    sd_err         *err;
    uint64_t        state;              /* splitmix64, small tensors */
    uint64_t        key;                /* seed ^ salt, large tensors */
    int64_t         nbig_all;           /* large tensors so far */
    double          spare;              /* second Box-Muller value */
    int             has_spare;
    sd_st_out      *t;                  /* the tensors of this shard */
    size_t          n;
    size_t          cap;
    sd_demo_big    *big;                /* those still to generate */
    size_t          nbig;
    size_t          big_cap;
    float          *quant;              /* the 2^16 normal quantiles */
    sd_demo_lut   **lut;                /* one per (mean, std) seen */
    size_t          nlut;
    int             threads;

    const char     *dir;                /* the component's folder */
    const char     *base;               /* "model", ... */
    int64_t         shard_bytes;        /* 0: one file */
    int64_t         bytes;              /* data bytes of t[0..n) */
    int64_t         total;              /* data bytes of every tensor */
    int             nshards;            /* shards written */
    sd_demo_buf     map;                /* "shard name\n" per written tensor */
} sd_demo_st;


/* The CLIP BPE vocabulary while it is learned. */
typedef struct {
    char          **str;                /* id -> UTF-8 symbol string */
    int32_t         n;
    int32_t         cap;
    int32_t        *merge;              /* pairs (left, right), by rank */
    int32_t         nmerges;
    int32_t         byte_id[256];       /* a byte's symbol id */
} sd_demo_bpe;


typedef struct {
    uint64_t        key;                /* left << 32 | right */
    int64_t         count;              /* 0: empty slot */
} sd_demo_pair;


static sd_status sd_demo_check(sd_err *err, const sd_demo_config *cfg);
static void sd_demo_buf_put(sd_demo_buf *b, const void *p, size_t n);
static void sd_demo_buf_printf(sd_demo_buf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static sd_status sd_demo_mkdirs(sd_err *err, const char *path);
static sd_status sd_demo_subdir(sd_err *err, const char *dir,
    const char *name, char *out);
static sd_status sd_demo_file(sd_err *err, const char *dir,
    const char *name, sd_demo_buf *b);
static sd_status sd_demo_rename(sd_err *err, const char *from,
    const char *to);
static uint64_t sd_demo_next(uint64_t *state);
static double sd_demo_normal(sd_demo_st *w);
static uint16_t sd_demo_bf16(float f);
static void sd_demo_st_init(sd_demo_st *w, sd_err *err, uint64_t seed,
    const char *salt, const sd_demo_config *cfg, const char *dir,
    const char *base);
static void sd_demo_st_free(sd_demo_st *w);
static void sd_demo_quantiles(float *q);
static const sd_demo_lut *sd_demo_st_lut(sd_demo_st *w, float mean,
    float std);
static void sd_demo_big_chunk(const sd_demo_big *b, int64_t c);
static void *sd_demo_job_run(void *arg);
static sd_status sd_demo_st_generate(sd_demo_st *w);
static sd_status sd_demo_st_reserve(sd_demo_st *w, int big);
static sd_status sd_demo_add(sd_demo_st *w, const char *name, int ndim,
    const int64_t *shape, float mean, float std, const float *src);
static sd_status sd_demo_vec(sd_demo_st *w, const char *prefix,
    const char *suffix, int64_t n, float value);
static sd_status sd_demo_linear(sd_demo_st *w, const char *prefix,
    int64_t out, int64_t in, float gain, int bias);
static sd_status sd_demo_conv(sd_demo_st *w, const char *prefix,
    int64_t co, int64_t ci, int64_t k, float gain);
static sd_status sd_demo_norm(sd_demo_st *w, const char *prefix, int64_t c);
static sd_status sd_demo_st_write(sd_demo_st *w, const char *name);
static sd_status sd_demo_st_shard(sd_demo_st *w);
static sd_status sd_demo_st_clean(sd_demo_st *w);
static sd_status sd_demo_st_finish(sd_demo_st *w);
static sd_status sd_demo_index(sd_err *err, const char *dir);
static sd_status sd_demo_scheduler(sd_err *err, const char *dir);
static size_t sd_demo_utf8(uint32_t cp, char *out);
static sd_status sd_demo_bpe_add(sd_err *err, sd_demo_bpe *v,
    const char *s);
static sd_status sd_demo_bpe_init(sd_err *err, sd_demo_bpe *v);
static sd_status sd_demo_bpe_train(sd_err *err, sd_demo_bpe *v);
static void sd_demo_bpe_free(sd_demo_bpe *v);
static sd_status sd_demo_clip_tokenizers(sd_err *err, const char *dir,
    int clip_len, int32_t *vocab_size);
static void sd_demo_pb_varint(sd_demo_buf *b, uint64_t v);
static void sd_demo_pb_tag(sd_demo_buf *b, uint32_t field, uint32_t wire);
static void sd_demo_pb_bytes(sd_demo_buf *b, uint32_t field, const void *p,
    size_t n);
static void sd_demo_pb_int(sd_demo_buf *b, uint32_t field, int64_t v);
static void sd_demo_pb_piece(sd_demo_buf *b, const char *piece,
    float score, int type);
static sd_status sd_demo_t5_tokenizer(sd_err *err, const char *dir,
    int32_t *vocab_size);
static sd_status sd_demo_clip(sd_err *err, const char *dir,
    const char *name, const sd_demo_config *cfg,
    const sd_demo_clip_size *sz, const char *act, int32_t ntok,
    uint64_t seed);
static sd_status sd_demo_t5(sd_err *err, const char *dir,
    const sd_demo_config *cfg, int32_t ntok, uint64_t seed);
static void sd_demo_pos_table(float *dst, int width, int grid, int base,
    float *tab);
static sd_status sd_demo_dit_block(sd_demo_st *w, const sd_demo_config *cfg,
    int i, int dual);
static sd_status sd_demo_transformer(sd_err *err, const char *dir,
    const sd_demo_config *cfg, uint64_t seed);
static sd_status sd_demo_vae_resnet(sd_demo_st *w, const char *prefix,
    int64_t cin, int64_t cout);
static sd_status sd_demo_vae_mid(sd_demo_st *w, const char *part,
    int64_t ch);
static sd_status sd_demo_vae(sd_err *err, const char *dir,
    const sd_demo_config *cfg, uint64_t seed);


/*
 * The presets. "demo": the embedded model, at toy widths (its bytes must
 * never change: tests and the server's default model depend on them).
 * "large" and "large-turbo": stabilityai/stable-diffusion-3.5-large(-turbo)
 * (MMDiT, 38 blocks of width 2432); "medium": stable-diffusion-3.5-medium
 * (MMDiT-X, 24 blocks of width 1536, blocks 0-12 with a second attention).
 * All three share CLIP-L, CLIP-G (OpenCLIP bigG), T5-XXL and the VAE.
 */
#define SD_DEMO_SD35_TEXT_VAE                                               \
    .clip_len = 77,                                                         \
    .clip_l = { .width = 768, .ffn = 3072, .layers = 12, .heads = 12 },    \
    .clip_g = { .width = 1280, .ffn = 5120, .layers = 32, .heads = 20 },   \
    .clip_vocab = SD_DEMO_CLIP_VOCAB,                                       \
    .t5_width = 4096, .t5_heads = 64, .t5_kv = 64, .t5_ff = 10240,          \
    .t5_layers = 24, .t5_buckets = 32, .t5_vocab = SD_DEMO_T5_VOCAB,        \
    .latent = 16,                                                           \
    .vae_ch = { 128, 256, 512, 512 }, .vae_layers = 2, .vae_groups = 32,    \
    .shard_bytes = SD_DEMO_SHARD_BYTES

#define SD_DEMO_SD35_LARGE                                                  \
    .dit_layers = 38, .dit_heads = 38, .dit_head_dim = 64,                  \
    .dit_patch = 2, .dit_sample = 128, .dit_pos_max = 192, .dit_mlp = 4,    \
    .dit_t_channels = 256

static const sd_demo_config  sd_demo_presets[] = {

    {
        .name = "demo",
        .clip_len = 77,
        .clip_l = { .width = 32, .ffn = 128, .layers = 2, .heads = 2 },
        .clip_g = { .width = 48, .ffn = 192, .layers = 2, .heads = 2 },
        .t5_width = 96, .t5_heads = 2, .t5_kv = 48, .t5_ff = 192,
        .t5_layers = 2, .t5_buckets = 32,
        .dit_layers = 2, .dit_heads = 2, .dit_head_dim = 32,
        .dit_patch = 2, .dit_sample = 128, .dit_pos_max = 96, .dit_mlp = 4,
        .dit_t_channels = 256,
        .latent = 16,
        .vae_ch = { 16, 16, 32, 32 }, .vae_layers = 1, .vae_groups = 8
    },

    { .name = "large", SD_DEMO_SD35_TEXT_VAE, SD_DEMO_SD35_LARGE },

    { .name = "large-turbo", SD_DEMO_SD35_TEXT_VAE, SD_DEMO_SD35_LARGE },

    {
        .name = "medium",
        SD_DEMO_SD35_TEXT_VAE,
        .dit_layers = 24, .dit_heads = 24, .dit_head_dim = 64,
        .dit_patch = 2, .dit_sample = 128, .dit_pos_max = 384, .dit_mlp = 4,
        .dit_t_channels = 256,
        .dit_ndual = 13,
        .dit_dual = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 }
    }
};

#define SD_DEMO_NPRESETS                                                    \
    (sizeof(sd_demo_presets) / sizeof(sd_demo_presets[0]))


/*
 * Words the CLIP merges are learned from and that the T5 vocabulary holds
 * whole, most frequent first (the position is the word's weight in BPE).
 */
static const char *const  sd_demo_words[] = {
    "the", "a", "of", "and", "in", "with", "on", "to", "at", "by", "an",
    "is", "for", "from", "as", "it", "this", "that", "photo", "portrait",
    "painting", "art", "style", "light", "lighting", "detailed",
    "beautiful", "high", "quality", "best", "realistic", "digital",
    "cinematic", "background", "city", "night", "sky", "sun", "sunset",
    "water", "sea", "ocean", "river", "lake", "mountain", "mountains",
    "forest", "tree", "trees", "flower", "flowers", "garden", "field",
    "grass", "snow", "rain", "cloud", "clouds", "fog", "fire", "stone",
    "castle", "house", "street", "road", "bridge", "car", "boat", "ship",
    "train", "space", "planet", "star", "stars", "moon", "galaxy", "robot",
    "dragon", "cat", "dog", "bird", "horse", "fish", "fox", "wolf", "lion",
    "tiger", "bear", "owl", "butterfly", "man", "woman", "girl", "boy",
    "child", "people", "person", "face", "eyes", "hair", "hand", "hands",
    "body", "smile", "king", "queen", "knight", "warrior", "wizard",
    "witch", "astronaut", "soldier", "red", "blue", "green", "yellow",
    "orange", "purple", "pink", "black", "white", "gray", "golden",
    "silver", "dark", "bright", "colorful", "soft", "warm", "cold", "old",
    "new", "small", "big", "large", "tiny", "giant", "little", "young",
    "ancient", "futuristic", "magic", "fantasy", "epic", "dramatic",
    "vintage", "modern", "abstract", "oil", "watercolor", "sketch",
    "drawing", "illustration", "anime", "cartoon", "concept", "render",
    "unreal", "engine", "octane", "photography", "camera", "lens", "sharp",
    "focus", "bokeh", "depth", "view", "wide", "angle", "close", "up",
    "shot", "full", "scene", "landscape", "sunrise", "morning", "evening",
    "summer", "winter", "autumn", "spring", "wearing", "holding",
    "sitting", "standing", "walking", "running", "flying", "looking",
    "under", "over", "inside", "near", "between", "glass", "wood",
    "wooden", "metal", "gold", "crystal", "neon", "cyberpunk", "steampunk",
    "gothic", "trending", "artstation", "masterpiece", "ultra",
    "intricate", "elegant", "smooth", "volumetric", "studio", "room",
    "table", "window", "door", "wall", "book", "cup", "coffee", "food",
    "cake", "apple", "fruit", "beach", "desert", "island", "village",
    "temple", "tower", "ruins", "cave", "jungle", "ice", "very", "two",
    "one", "three", "its", "his", "her", "their", "some", "many", "into",
    "front", "top", "side", "behind", "around"
};

#define SD_DEMO_NWORDS  (sizeof(sd_demo_words) / sizeof(sd_demo_words[0]))


const sd_demo_config *
sd_demo_config_named(const char *name)
{
    size_t  i;

    for (i = 0; name != NULL && i < SD_DEMO_NPRESETS; i++) {
        if (strcmp(name, sd_demo_presets[i].name) == 0) {
            return &sd_demo_presets[i];
        }
    }
    return NULL;
}


sd_status
sd_demo_write(sd_err *err, const char *dir, uint64_t seed)
{
    return sd_demo_write_config(err, dir, &sd_demo_presets[0], seed);
}


sd_status
sd_demo_write_config(sd_err *err, const char *dir, const sd_demo_config *cfg,
    uint64_t seed)
{
    int32_t  clip_vocab, t5_vocab;

    if (dir == NULL || dir[0] == '\0') {
        return sd_errorf(err, SD_ERR_INVALID, "demo model: no folder given");
    }
    if (strlen(dir) > SD_DEMO_PATH_LEN - 64) {
        return sd_errorf(err, SD_ERR_INVALID, "demo model: folder name too "
                         "long");
    }
    SD_TRY(sd_demo_check(err, cfg));

    SD_TRY(sd_demo_mkdirs(err, dir));
    SD_TRY(sd_demo_index(err, dir));
    SD_TRY(sd_demo_scheduler(err, dir));
    SD_TRY(sd_demo_clip_tokenizers(err, dir, cfg->clip_len, &clip_vocab));
    SD_TRY(sd_demo_t5_tokenizer(err, dir, &t5_vocab));
    SD_TRY(sd_demo_clip(err, dir, "text_encoder", cfg, &cfg->clip_l,
                        "quick_gelu", clip_vocab, seed));
    SD_TRY(sd_demo_clip(err, dir, "text_encoder_2", cfg, &cfg->clip_g,
                        "gelu", clip_vocab, seed));
    SD_TRY(sd_demo_t5(err, dir, cfg, t5_vocab, seed));
    SD_TRY(sd_demo_transformer(err, dir, cfg, seed));
    return sd_demo_vae(err, dir, cfg, seed);
}


/* Every size positive and consistent; the limits keep products in range. */
static sd_status
sd_demo_check(sd_err *err, const sd_demo_config *cfg)
{
    const sd_demo_clip_size  *clip[2];
    int                       i, k, width;

    if (cfg == NULL) {
        return sd_errorf(err, SD_ERR_INVALID, "demo model: no sizes given");
    }

#define SD_DEMO_RANGE(field, lo, hi)                                        \
    if (cfg->field < (lo) || cfg->field > (hi)) {                           \
        return sd_errorf(err, SD_ERR_INVALID, "demo model \"%s\": " #field  \
                         " %lld is not in [%lld, %lld]",                    \
                         cfg->name ? cfg->name : "", (long long) cfg->field, \
                         (long long) (lo), (long long) (hi));               \
    }

    SD_DEMO_RANGE(clip_len, 2, 4096);
    SD_DEMO_RANGE(clip_vocab, 0, 1 << 20);
    SD_DEMO_RANGE(t5_width, 1, 1 << 16);
    SD_DEMO_RANGE(t5_heads, 1, 1024);
    SD_DEMO_RANGE(t5_kv, 1, 4096);
    SD_DEMO_RANGE(t5_ff, 1, 1 << 18);
    SD_DEMO_RANGE(t5_layers, 1, 1024);
    SD_DEMO_RANGE(t5_buckets, 1, 1024);
    SD_DEMO_RANGE(t5_vocab, 0, 1 << 20);
    SD_DEMO_RANGE(dit_layers, 1, 1024);
    SD_DEMO_RANGE(dit_heads, 1, 1024);
    SD_DEMO_RANGE(dit_head_dim, 2, 4096);
    SD_DEMO_RANGE(dit_patch, 1, 64);
    SD_DEMO_RANGE(dit_sample, 1, 1 << 16);
    SD_DEMO_RANGE(dit_pos_max, 1, 4096);
    SD_DEMO_RANGE(dit_mlp, 1, 64);
    SD_DEMO_RANGE(dit_t_channels, 2, 1 << 16);
    SD_DEMO_RANGE(dit_ndual, 0, SD_DEMO_MAX_DUAL);
    SD_DEMO_RANGE(latent, 1, 1024);
    SD_DEMO_RANGE(vae_layers, 1, 64);
    SD_DEMO_RANGE(vae_groups, 1, 1 << 16);
    SD_DEMO_RANGE(shard_bytes, 0, INT64_MAX);
    SD_DEMO_RANGE(threads, 0, 1 << 16);
#undef SD_DEMO_RANGE

    clip[0] = &cfg->clip_l;
    clip[1] = &cfg->clip_g;
    for (k = 0; k < 2; k++) {
        if (clip[k]->width < 1 || clip[k]->width > (1 << 16)
            || clip[k]->ffn < 1 || clip[k]->ffn > (1 << 18)
            || clip[k]->layers < 2 || clip[k]->layers > 1024
            || clip[k]->heads < 1 || clip[k]->width % clip[k]->heads != 0)
        {
            return sd_errorf(err, SD_ERR_INVALID, "demo model \"%s\": CLIP-%c "
                             "width %d, ffn %d, %d layers, %d heads",
                             cfg->name ? cfg->name : "", "LG"[k],
                             clip[k]->width, clip[k]->ffn, clip[k]->layers,
                             clip[k]->heads);
        }
    }
    if (cfg->clip_l.width + cfg->clip_g.width > cfg->t5_width) {
        return sd_errorf(err, SD_ERR_INVALID, "demo model \"%s\": the CLIP "
                         "widths %d + %d exceed the T5 width %d",
                         cfg->name ? cfg->name : "", cfg->clip_l.width,
                         cfg->clip_g.width, cfg->t5_width);
    }

    /* the 2D sin-cos table splits the width in quarters */
    width = cfg->dit_heads * cfg->dit_head_dim;
    if (width % 4 != 0 || width > (1 << 16)
        || cfg->dit_sample % cfg->dit_patch != 0)
    {
        return sd_errorf(err, SD_ERR_INVALID, "demo model \"%s\": transformer "
                         "width %d (a multiple of 4 up to 65536) or "
                         "sample_size %d (a multiple of patch_size %d)",
                         cfg->name ? cfg->name : "", width, cfg->dit_sample,
                         cfg->dit_patch);
    }
    for (i = 0; i < cfg->dit_ndual; i++) {
        if (cfg->dit_dual[i] < 0 || cfg->dit_dual[i] >= cfg->dit_layers
            || (i > 0 && cfg->dit_dual[i] <= cfg->dit_dual[i - 1]))
        {
            return sd_errorf(err, SD_ERR_INVALID, "demo model \"%s\": "
                             "dual_attention_layers must be ascending block "
                             "indices below %d", cfg->name ? cfg->name : "",
                             cfg->dit_layers);
        }
    }
    for (i = 0; i < SD_DEMO_VAE_BLOCKS; i++) {
        if (cfg->vae_ch[i] < 1 || cfg->vae_ch[i] > (1 << 14)
            || cfg->vae_ch[i] % cfg->vae_groups != 0)
        {
            return sd_errorf(err, SD_ERR_INVALID, "demo model \"%s\": VAE "
                             "block_out_channels[%d] = %d is not a multiple "
                             "of norm_num_groups %d",
                             cfg->name ? cfg->name : "", i, cfg->vae_ch[i],
                             cfg->vae_groups);
        }
    }
    return SD_OK;
}


/* Buffers and files */

static void
sd_demo_buf_put(sd_demo_buf *b, const void *p, size_t n)
{
    char    *q;
    size_t   cap;

    if (b->failed) {
        return;
    }
    if (b->len + n + 1 > b->cap) {
        cap = 2 * b->cap + n + 256;
        q = realloc(b->p, cap);
        if (q == NULL) {
            b->failed = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
}


static void
sd_demo_buf_printf(sd_demo_buf *b, const char *fmt, ...)
{
    char     small[512], *big;
    va_list  ap;
    int      n;

    va_start(ap, fmt);
    n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = 1;
        return;
    }
    if ((size_t) n < sizeof(small)) {
        sd_demo_buf_put(b, small, (size_t) n);
        return;
    }
    big = malloc((size_t) n + 1);
    if (big == NULL) {
        b->failed = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t) n + 1, fmt, ap);
    va_end(ap);
    sd_demo_buf_put(b, big, (size_t) n);
    free(big);
}


/* mkdir -p: every missing folder of path is created. */
static sd_status
sd_demo_mkdirs(sd_err *err, const char *path)
{
    char         buf[SD_DEMO_PATH_LEN];
    struct stat  sb;
    size_t       len, i;

    len = strlen(path);
    if (len >= sizeof(buf)) {
        return sd_errorf(err, SD_ERR_INVALID, "demo model: folder name too "
                         "long");
    }
    memcpy(buf, path, len + 1);

    for (i = 1; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != '\0') {
            continue;
        }
        if (buf[i - 1] == '/') {
            continue;                       /* "//" */
        }
        buf[i] = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
            return sd_errorf(err, SD_ERR_IO, "demo model: mkdir(\"%s\") "
                             "failed: %s", buf, strerror(errno));
        }
        if (stat(buf, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
            return sd_errorf(err, SD_ERR_IO, "demo model: \"%s\" is not a "
                             "folder", buf);
        }
        buf[i] = path[i];
    }
    return SD_OK;
}


/* out (SD_DEMO_PATH_LEN) = dir "/" name, created. */
static sd_status
sd_demo_subdir(sd_err *err, const char *dir, const char *name, char *out)
{
    SD_TRY(sd_path_join(err, out, SD_DEMO_PATH_LEN, dir, name));
    return sd_demo_mkdirs(err, out);
}


/* dir/name = the buffer's bytes, through dir/name.tmp; frees the buffer. */
static sd_status
sd_demo_file(sd_err *err, const char *dir, const char *name,
    sd_demo_buf *b)
{
    char       path[SD_DEMO_PATH_LEN], tmp[SD_DEMO_PATH_LEN + 8];
    FILE      *f;
    sd_status  s = SD_OK;
    int        ok;

    if (b->failed) {
        s = sd_errorf(err, SD_ERR_NOMEM, "demo model: out of memory for "
                      "\"%s/%s\"", dir, name);
        goto done;
    }
    SD_TRY_GOTO(s, sd_path_join(err, path, sizeof(path), dir, name), done);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);

    f = fopen(tmp, "wb");
    if (f == NULL) {
        s = sd_errorf(err, SD_ERR_IO, "demo model: fopen(\"%s\") failed: %s",
                      tmp, strerror(errno));
        goto done;
    }
    ok = b->len == 0 || fwrite(b->p, 1, b->len, f) == b->len;
    if (fclose(f) != 0) {
        ok = 0;
    }
    if (!ok) {
        s = sd_errorf(err, SD_ERR_IO, "demo model: writing \"%s\" failed: "
                      "%s", tmp, strerror(errno));
        remove(tmp);
        goto done;
    }
    if (rename(tmp, path) != 0) {
        s = sd_errorf(err, SD_ERR_IO, "demo model: rename(\"%s\") failed: "
                      "%s", path, strerror(errno));
        remove(tmp);
    }

done:
    free(b->p);
    memset(b, 0, sizeof(*b));
    return s;
}


static sd_status
sd_demo_rename(sd_err *err, const char *from, const char *to)
{
    if (rename(from, to) != 0) {
        sd_errorf(err, SD_ERR_IO, "demo model: rename(\"%s\", \"%s\") "
                  "failed: %s", from, to, strerror(errno));
        remove(from);
        return SD_ERR_IO;
    }
    return SD_OK;
}


/* Random weights */

static uint64_t
sd_demo_next(uint64_t *state)
{
    uint64_t  z = (*state += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}


/* N(0, 1) by Box-Muller, both values used. */
static double
sd_demo_normal(sd_demo_st *w)
{
    double  u1, u2, r;

    if (w->has_spare) {
        w->has_spare = 0;
        return w->spare;
    }
    u1 = ((sd_demo_next(&w->state) >> 11) + 1) * 0x1.0p-53;     /* (0, 1] */
    u2 = (sd_demo_next(&w->state) >> 11) * 0x1.0p-53;
    r = sqrt(-2.0 * log(u1));
    w->spare = r * sin(SD_DEMO_TWO_PI * u2);
    w->has_spare = 1;
    return r * cos(SD_DEMO_TWO_PI * u2);
}


/* f32 -> bf16, round to nearest even, for the finite values made here */
static uint16_t
sd_demo_bf16(float f)
{
    uint32_t  u;

    memcpy(&u, &f, sizeof(u));
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t) (u >> 16);
}


/*
 * The streams of one component: the seed mixed with the component's name
 * (FNV-1a); files are dir/base.safetensors, or shards of it.
 */
static void
sd_demo_st_init(sd_demo_st *w, sd_err *err, uint64_t seed, const char *salt,
    const sd_demo_config *cfg, const char *dir, const char *base)
{
    uint64_t  h = 1469598103934665603ULL;

    while (*salt) {
        h = (h ^ (unsigned char) *salt++) * 1099511628211ULL;
    }
    memset(w, 0, sizeof(*w));
    w->err = err;
    w->state = seed ^ h;
    w->key = seed ^ h;
    w->threads = cfg->threads;
    w->dir = dir;
    w->base = base;
    w->shard_bytes = cfg->shard_bytes;
}


static void
sd_demo_st_free(sd_demo_st *w)
{
    size_t  i;

    for (i = 0; i < w->n; i++) {
        free((void *) w->t[i].name);
        free((void *) w->t[i].data);
    }
    for (i = 0; i < w->nlut; i++) {
        free(w->lut[i]);
    }
    free(w->t);
    free(w->big);
    free(w->quant);
    free(w->lut);
    free(w->map.p);
    w->quant = NULL;
    w->lut = NULL;
    w->nlut = 0;
    w->t = NULL;
    w->n = 0;
    w->cap = 0;
    w->big = NULL;
    w->nbig = 0;
    w->big_cap = 0;
    memset(&w->map, 0, sizeof(w->map));
}


/*
 * q[u] = Phi^-1((u + 1/2) / 2^16): Abramowitz and Stegun 26.2.23 (error
 * under 4.5e-4), then three Newton steps on Phi(x) = erfc(-x / sqrt 2) / 2.
 */
static void
sd_demo_quantiles(float *q)
{
    double  p, t, x;
    int     u, k;

    for (u = 0; u < 1 << 15; u++) {
        p = (u + 0.5) / 65536.0;                    /* < 1/2: x < 0 */
        t = sqrt(-2.0 * log(p));
        x = -(t - (2.515517 + 0.802853 * t + 0.010328 * t * t)
                  / (1.0 + 1.432788 * t + 0.189269 * t * t
                     + 0.001308 * t * t * t));
        for (k = 0; k < 3; k++) {
            x -= (0.5 * erfc(-x / sqrt(2.0)) - p)
                 / (exp(-0.5 * x * x) / sqrt(SD_DEMO_TWO_PI));
        }
        q[u] = (float) x;
        q[65535 - u] = (float) -x;
    }
}


/* The table of (mean, std), made on first use; NULL: out of memory. */
static const sd_demo_lut *
sd_demo_st_lut(sd_demo_st *w, float mean, float std)
{
    sd_demo_lut   *l, **p;
    size_t         i;
    int            u;

    for (i = 0; i < w->nlut; i++) {
        if (w->lut[i]->mean == mean && w->lut[i]->std == std) {
            return w->lut[i];
        }
    }
    if (w->quant == NULL) {
        w->quant = malloc((1 << 16) * sizeof(float));
        if (w->quant == NULL) {
            return NULL;
        }
        sd_demo_quantiles(w->quant);
    }
    p = realloc(w->lut, (w->nlut + 1) * sizeof(sd_demo_lut *));
    if (p == NULL) {
        return NULL;
    }
    w->lut = p;
    l = malloc(sizeof(sd_demo_lut));
    if (l == NULL) {
        return NULL;
    }
    l->mean = mean;
    l->std = std;
    for (u = 0; u < 1 << 16; u++) {
        l->v[u] = sd_demo_bf16(mean + std * w->quant[u]);
    }
    w->lut[w->nlut++] = l;
    return l;
}


/* Chunk c of a large tensor: four values from each splitmix64 value. */
static void
sd_demo_big_chunk(const sd_demo_big *b, int64_t c)
{
    const uint16_t  *v = b->lut->v;
    uint16_t        *d = b->dst;
    uint64_t         s, r;
    int64_t          i, end;
    int              k;

    s = b->key ^ ((uint64_t) c * 0xd1b54a32d192ed03ULL);
    s = sd_demo_next(&s);
    end = (c + 1) * SD_DEMO_CHUNK < b->n ? (c + 1) * SD_DEMO_CHUNK : b->n;

    for (i = c * SD_DEMO_CHUNK; i + 4 <= end; i += 4) {
        r = sd_demo_next(&s);
        d[i] = v[r & 0xffff];
        d[i + 1] = v[(r >> 16) & 0xffff];
        d[i + 2] = v[(r >> 32) & 0xffff];
        d[i + 3] = v[r >> 48];
    }
    r = sd_demo_next(&s);
    for (k = 0; i < end; i++, k++) {
        d[i] = v[(r >> (16 * k)) & 0xffff];
    }
}


/* A worker: chunks in the order taken, until none is left. */
static void *
sd_demo_job_run(void *arg)
{
    sd_demo_job  *job = arg;
    int64_t       c;
    size_t        lo, hi, mid;

    for ( ;; ) {
        c = atomic_fetch_add(&job->next, 1);
        if (c >= job->nchunks) {
            return NULL;
        }

        /* the tensor holding chunk c: the last one with first <= c */
        lo = 0;
        hi = job->nbig;
        while (hi - lo > 1) {
            mid = lo + (hi - lo) / 2;
            if (job->big[mid].first <= c) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        sd_demo_big_chunk(&job->big[lo], c - job->big[lo].first);
    }
}


/*
 * Fill the pending large tensors: cfg->threads workers (or one per online
 * CPU) and this thread take chunks from one counter; a worker that cannot
 * be started leaves its share to the others.
 */
static sd_status
sd_demo_st_generate(sd_demo_st *w)
{
    sd_demo_job  job;
    int          nt;
    size_t       i;

    if (w->nbig == 0) {
        return SD_OK;
    }
    job.big = w->big;
    job.nbig = w->nbig;
    job.nchunks = 0;
    for (i = 0; i < w->nbig; i++) {
        w->big[i].lut = sd_demo_st_lut(w, w->big[i].mean, w->big[i].std);
        if (w->big[i].lut == NULL) {
            return sd_errorf(w->err, SD_ERR_NOMEM, "demo model: out of "
                             "memory for the normal tables");
        }
        w->big[i].first = job.nchunks;
        job.nchunks += (w->big[i].n + SD_DEMO_CHUNK - 1) / SD_DEMO_CHUNK;
    }
    atomic_init(&job.next, 0);

    nt = w->threads > 0 ? w->threads : sd_cpus(SD_DEMO_MAX_THREADS);
    nt = nt < SD_DEMO_MAX_THREADS ? nt : SD_DEMO_MAX_THREADS;
    nt = (int64_t) nt < job.nchunks ? nt : (int) job.nchunks;
    sd_run_workers(sd_demo_job_run, &job, nt);
    w->nbig = 0;
    return SD_OK;
}


/* Room for one more tensor, and one more large one if big. */
static sd_status
sd_demo_st_reserve(sd_demo_st *w, int big)
{
    sd_st_out    *t;
    sd_demo_big  *g;
    size_t        cap;

    if (w->n == w->cap) {
        cap = w->cap ? 2 * w->cap : 64;
        t = realloc(w->t, cap * sizeof(sd_st_out));
        if (t == NULL) {
            return sd_errorf(w->err, SD_ERR_NOMEM, "demo model: out of "
                             "memory listing tensors");
        }
        w->t = t;
        w->cap = cap;
    }
    if (big && w->nbig == w->big_cap) {
        cap = w->big_cap ? 2 * w->big_cap : 64;
        g = realloc(w->big, cap * sizeof(sd_demo_big));
        if (g == NULL) {
            return sd_errorf(w->err, SD_ERR_NOMEM, "demo model: out of "
                             "memory listing tensors");
        }
        w->big = g;
        w->big_cap = cap;
    }
    return SD_OK;
}


/*
 * A bf16 tensor: src if given, else mean + std * N(0, 1) per value (from
 * the file's stream if small, else later by sd_demo_st_generate()). A
 * tensor that would take the current shard past shard_bytes starts the
 * next one.
 */
static sd_status
sd_demo_add(sd_demo_st *w, const char *name, int ndim, const int64_t *shape,
    float mean, float std, const float *src)
{
    sd_st_out    *t;
    sd_demo_big  *g;
    uint64_t      key;
    uint16_t     *d;
    char         *nm;
    int64_t       n = 1, i;
    size_t        len;
    float         v;
    int           k, big;

    for (k = 0; k < ndim; k++) {
        n *= shape[k];
    }
    big = (src == NULL && std != 0.0f && n >= SD_DEMO_BIG);
    if (w->shard_bytes > 0 && w->n > 0
        && w->bytes + 2 * n > w->shard_bytes)
    {
        SD_TRY(sd_demo_st_shard(w));
    }
    SD_TRY(sd_demo_st_reserve(w, big));

    len = strlen(name);
    nm = sd_malloc(w->err, len + 1, "demo tensor name");
    if (nm == NULL) {
        return SD_ERR_NOMEM;
    }
    memcpy(nm, name, len + 1);
    d = malloc((size_t) n * sizeof(uint16_t));
    if (d == NULL) {
        free(nm);
        return sd_errorf(w->err, SD_ERR_NOMEM, "demo model: out of memory "
                         "for \"%s\" (%lld values)", name, (long long) n);
    }

    if (big) {
        g = &w->big[w->nbig++];
        g->dst = d;
        g->n = n;
        g->mean = mean;
        g->std = std;
        key = w->key + (uint64_t) ++w->nbig_all * 0x9e3779b97f4a7c15ULL;
        g->key = sd_demo_next(&key);
    } else {
        for (i = 0; i < n; i++) {
            v = src ? src[i]
                    : (std == 0.0f ? mean
                                   : mean + std * (float) sd_demo_normal(w));
            d[i] = sd_f32_to_bf16(v);
        }
    }

    t = &w->t[w->n++];
    memset(t, 0, sizeof(*t));
    t->name = nm;
    t->dtype = SD_DT_BF16;
    t->ndim = ndim;
    for (k = 0; k < ndim; k++) {
        t->shape[k] = shape[k];
    }
    t->data = d;
    w->bytes += 2 * n;
    w->total += 2 * n;
    return SD_OK;
}


/* prefix.suffix: (n) filled with value */
static sd_status
sd_demo_vec(sd_demo_st *w, const char *prefix, const char *suffix,
    int64_t n, float value)
{
    char  name[SD_DEMO_NAME_LEN];

    snprintf(name, sizeof(name), "%s.%s", prefix, suffix);
    return sd_demo_add(w, name, 1, &n, value, 0.0f, NULL);
}


/* prefix.weight (out, in) ~ N(0, gain^2 / in), prefix.bias (out) small */
static sd_status
sd_demo_linear(sd_demo_st *w, const char *prefix, int64_t out, int64_t in,
    float gain, int bias)
{
    char     name[SD_DEMO_NAME_LEN];
    int64_t  shape[2] = { out, in };

    snprintf(name, sizeof(name), "%s.weight", prefix);
    SD_TRY(sd_demo_add(w, name, 2, shape, 0.0f, gain / sqrtf((float) in),
                       NULL));
    if (!bias) {
        return SD_OK;
    }
    snprintf(name, sizeof(name), "%s.bias", prefix);
    return sd_demo_add(w, name, 1, shape, 0.0f, SD_DEMO_BIAS_STD, NULL);
}


/* prefix.weight (co, ci, k, k) ~ N(0, gain^2 / (ci k k)), prefix.bias */
static sd_status
sd_demo_conv(sd_demo_st *w, const char *prefix, int64_t co, int64_t ci,
    int64_t k, float gain)
{
    char     name[SD_DEMO_NAME_LEN];
    int64_t  shape[4] = { co, ci, k, k };

    snprintf(name, sizeof(name), "%s.weight", prefix);
    SD_TRY(sd_demo_add(w, name, 4, shape, 0.0f,
                       gain / sqrtf((float) (ci * k * k)), NULL));
    snprintf(name, sizeof(name), "%s.bias", prefix);
    return sd_demo_add(w, name, 1, shape, 0.0f, SD_DEMO_BIAS_STD, NULL);
}


/* A LayerNorm or GroupNorm: weight 1, bias 0. */
static sd_status
sd_demo_norm(sd_demo_st *w, const char *prefix, int64_t c)
{
    SD_TRY(sd_demo_vec(w, prefix, "weight", c, 1.0f));
    return sd_demo_vec(w, prefix, "bias", c, 0.0f);
}


/*
 * dir/name = the tensors of the current shard, generated now, through
 * dir/name.tmp; the tensors are freed, the streams go on.
 */
static sd_status
sd_demo_st_write(sd_demo_st *w, const char *name)
{
    char       path[SD_DEMO_PATH_LEN], tmp[SD_DEMO_PATH_LEN + 8];
    size_t     i;
    sd_status  s;

    SD_TRY_GOTO(s, sd_demo_st_generate(w), done);
    SD_TRY_GOTO(s, sd_path_join(w->err, path, sizeof(path), w->dir, name),
                done);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    SD_TRY_GOTO(s, sd_st_write(w->err, tmp, w->t, w->n), done);
    s = sd_demo_rename(w->err, tmp, path);

done:
    for (i = 0; i < w->n; i++) {
        free((void *) w->t[i].name);
        free((void *) w->t[i].data);
    }
    w->n = 0;
    w->nbig = 0;
    w->bytes = 0;
    return s;
}


/*
 * The current tensors as shard nshards + 1, "<base>-0000i.part" until
 * sd_demo_st_finish() knows the count; their names go to the map.
 */
static sd_status
sd_demo_st_shard(sd_demo_st *w)
{
    char    name[SD_DEMO_PREFIX_LEN];
    size_t  i;

    w->nshards++;
    for (i = 0; i < w->n; i++) {
        sd_demo_buf_printf(&w->map, "%d %s\n", w->nshards, w->t[i].name);
    }
    if (w->map.failed) {
        return sd_errorf(w->err, SD_ERR_NOMEM, "demo model: out of memory "
                         "for the shard index");
    }
    snprintf(name, sizeof(name), "%s-%05d.part", w->base, w->nshards);
    return sd_demo_st_write(w, name);
}


/*
 * Remove what an earlier write of another layout left: the single file or
 * the index when the other one was written, and shards of other counts.
 */
static sd_status
sd_demo_st_clean(sd_demo_st *w)
{
    DIR            *d;
    struct dirent  *de;
    char            mine[SD_DEMO_PREFIX_LEN], path[SD_DEMO_PATH_LEN];
    size_t          blen = strlen(w->base);
    const char     *nm;
    int             stale;

    d = opendir(w->dir);
    if (d == NULL) {
        return sd_errorf(w->err, SD_ERR_IO, "demo model: opendir(\"%s\") "
                         "failed: %s", w->dir, strerror(errno));
    }
    snprintf(mine, sizeof(mine), "-of-%05d.safetensors", w->nshards);

    while ((de = readdir(d)) != NULL) {
        nm = de->d_name;
        if (strncmp(nm, w->base, blen) != 0) {
            continue;
        }
        nm += blen;
        if (strcmp(nm, ".safetensors") == 0) {
            stale = w->nshards > 0;
        } else if (strcmp(nm, ".safetensors.index.json") == 0) {
            stale = w->nshards == 0;
        } else if (nm[0] == '-' && strlen(nm) == 6 + strlen(mine)
                   && strncmp(nm + 6, "-of-", 4) == 0
                   && strcmp(nm + 15, ".safetensors") == 0)
        {
            /* "-0000i-of-0000n.safetensors" */
            stale = strcmp(nm + 6, mine) != 0;
        } else if (nm[0] == '-' && strlen(nm) == 11
                   && strcmp(nm + 6, ".part") == 0)
        {
            stale = 1;                      /* a failed write's shard */
        } else {
            continue;
        }
        if (stale
            && (sd_path_join(w->err, path, sizeof(path), w->dir,
                             de->d_name) != SD_OK
                || (remove(path) != 0 && errno != ENOENT)))
        {
            sd_errorf(w->err, SD_ERR_IO, "demo model: remove(\"%s/%s\") "
                      "failed: %s", w->dir, de->d_name, strerror(errno));
            closedir(d);
            return SD_ERR_IO;
        }
    }
    closedir(d);
    return SD_OK;
}


/*
 * The last tensors: dir/base.safetensors if nothing was sharded, else the
 * last shard, every shard renamed "<base>-0000i-of-0000n.safetensors" and
 * "<base>.safetensors.index.json" listing them, as transformers and
 * diffusers write; then what an earlier layout left is removed.
 */
static sd_status
sd_demo_st_finish(sd_demo_st *w)
{
    sd_demo_buf  b = { NULL, 0, 0, 0 };
    char         from[SD_DEMO_PATH_LEN], to[SD_DEMO_PATH_LEN];
    char         name[SD_DEMO_PREFIX_LEN], *line, *end;
    int          i, shard;
    sd_status    s;

    if (w->nshards == 0) {
        snprintf(name, sizeof(name), "%s.safetensors", w->base);
        SD_TRY_GOTO(s, sd_demo_st_write(w, name), done);
        s = sd_demo_st_clean(w);
        goto done;
    }
    if (w->n > 0) {
        SD_TRY_GOTO(s, sd_demo_st_shard(w), done);
    }

    for (i = 1; i <= w->nshards; i++) {
        snprintf(name, sizeof(name), "%s-%05d.part", w->base, i);
        SD_TRY_GOTO(s, sd_path_join(w->err, from, sizeof(from), w->dir,
                                    name), done);
        snprintf(name, sizeof(name), "%s-%05d-of-%05d.safetensors", w->base,
                 i, w->nshards);
        SD_TRY_GOTO(s, sd_path_join(w->err, to, sizeof(to), w->dir, name),
                    done);
        SD_TRY_GOTO(s, sd_demo_rename(w->err, from, to), done);
    }

    sd_demo_buf_printf(&b, "{\n  \"metadata\": {\n    \"total_size\": %lld\n"
                       "  },\n  \"weight_map\": {", (long long) w->total);
    for (line = w->map.p; line != NULL && *line != '\0'; line = end + 1) {
        end = strchr(line, '\n');
        shard = atoi(line);
        *end = '\0';
        sd_demo_buf_printf(&b, "%s\n    \"%s\": \"%s-%05d-of-%05d."
                           "safetensors\"", line == w->map.p ? "" : ",",
                           strchr(line, ' ') + 1, w->base, shard,
                           w->nshards);
    }
    sd_demo_buf_printf(&b, "\n  }\n}\n");
    snprintf(name, sizeof(name), "%s.safetensors.index.json", w->base);
    SD_TRY_GOTO(s, sd_demo_file(w->err, w->dir, name, &b), done);
    s = sd_demo_st_clean(w);

done:
    sd_demo_st_free(w);
    return s;
}


/* model_index.json and scheduler */

static sd_status
sd_demo_index(sd_err *err, const char *dir)
{
    sd_demo_buf  b = { NULL, 0, 0, 0 };

    sd_demo_buf_printf(&b,
        "{\n"
        "  \"_class_name\": \"StableDiffusion3Pipeline\",\n"
        "  \"_diffusers_version\": \"0.31.0\",\n"
        "  \"feature_extractor\": [\n    null,\n    null\n  ],\n"
        "  \"image_encoder\": [\n    null,\n    null\n  ],\n"
        "  \"scheduler\": [\n    \"diffusers\",\n"
        "    \"FlowMatchEulerDiscreteScheduler\"\n  ],\n"
        "  \"text_encoder\": [\n    \"transformers\",\n"
        "    \"CLIPTextModelWithProjection\"\n  ],\n"
        "  \"text_encoder_2\": [\n    \"transformers\",\n"
        "    \"CLIPTextModelWithProjection\"\n  ],\n"
        "  \"text_encoder_3\": [\n    \"transformers\",\n"
        "    \"T5EncoderModel\"\n  ],\n"
        "  \"tokenizer\": [\n    \"transformers\",\n"
        "    \"CLIPTokenizer\"\n  ],\n"
        "  \"tokenizer_2\": [\n    \"transformers\",\n"
        "    \"CLIPTokenizer\"\n  ],\n"
        "  \"tokenizer_3\": [\n    \"transformers\",\n"
        "    \"T5Tokenizer\"\n  ],\n"
        "  \"transformer\": [\n    \"diffusers\",\n"
        "    \"SD3Transformer2DModel\"\n  ],\n"
        "  \"vae\": [\n    \"diffusers\",\n    \"AutoencoderKL\"\n  ]\n"
        "}\n");
    return sd_demo_file(err, dir, "model_index.json", &b);
}


static sd_status
sd_demo_scheduler(sd_err *err, const char *dir)
{
    sd_demo_buf  b = { NULL, 0, 0, 0 };
    char         sub[SD_DEMO_PATH_LEN];

    SD_TRY(sd_demo_subdir(err, dir, "scheduler", sub));
    sd_demo_buf_printf(&b,
        "{\n"
        "  \"_class_name\": \"FlowMatchEulerDiscreteScheduler\",\n"
        "  \"_diffusers_version\": \"0.31.0\",\n"
        "  \"num_train_timesteps\": 1000,\n"
        "  \"shift\": 3.0,\n"
        "  \"use_dynamic_shifting\": false\n"
        "}\n");
    return sd_demo_file(err, sub, "scheduler_config.json", &b);
}


/* CLIP tokenizers */

static size_t
sd_demo_utf8(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char) cp;
        return 1;
    }
    /* bytes_to_unicode code points stay below 0x800 */
    out[0] = (char) (0xc0 | (cp >> 6));
    out[1] = (char) (0x80 | (cp & 0x3f));
    return 2;
}


static sd_status
sd_demo_bpe_add(sd_err *err, sd_demo_bpe *v, const char *s)
{
    char   **p;
    size_t   len = strlen(s);

    if (v->n == v->cap) {
        v->cap = v->cap ? 2 * v->cap : 1024;
        p = realloc(v->str, (size_t) v->cap * sizeof(char *));
        if (p == NULL) {
            return sd_errorf(err, SD_ERR_NOMEM, "demo model: out of memory "
                             "for the BPE vocabulary");
        }
        v->str = p;
    }
    v->str[v->n] = sd_malloc(err, len + 1, "demo BPE symbol");
    if (v->str[v->n] == NULL) {
        return SD_ERR_NOMEM;
    }
    memcpy(v->str[v->n], s, len + 1);
    v->n++;
    return SD_OK;
}


/*
 * ids 0..255: GPT-2's bytes_to_unicode symbols in its order (printable
 * bytes first, keeping their code point, then the others from U+0100);
 * ids 256..511: the same with "</w>", as CLIP's vocabulary starts.
 */
static sd_status
sd_demo_bpe_init(sd_err *err, sd_demo_bpe *v)
{
    uint32_t  cp[256];
    int       order[256], b, n, k, eow;
    char      s[16];
    size_t    len;

    memset(v, 0, sizeof(*v));
    n = 0;
    for (b = 0; b < 256; b++) {
        if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) {
            order[n] = b;
            cp[n++] = (uint32_t) b;
        }
    }
    k = 0;
    for (b = 0; b < 256; b++) {
        if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174)) {
            order[n] = b;
            cp[n++] = 256 + (uint32_t) k++;
        }
    }

    for (eow = 0; eow < 2; eow++) {
        for (k = 0; k < 256; k++) {
            len = sd_demo_utf8(cp[k], s);
            memcpy(s + len, eow ? "</w>" : "", eow ? 5 : 1);
            if (!eow) {
                v->byte_id[order[k]] = v->n;
            }
            SD_TRY(sd_demo_bpe_add(err, v, s));
        }
    }
    return SD_OK;
}


/*
 * Byte-pair encoding learned over sd_demo_words (weight: the number of
 * words after it, plus one): repeatedly the most frequent adjacent pair,
 * ties to the lowest (left, right) ids, is merged, until every word is
 * one symbol. So each listed word, with "</w>", is one token, and the
 * early merges are the frequent English bigrams.
 */
static sd_status
sd_demo_bpe_train(sd_err *err, sd_demo_bpe *v)
{
    int32_t        *sym = NULL, *start = NULL, *len = NULL, a, b, id;
    int64_t        *freq = NULL;
    sd_demo_pair   *tab = NULL, *best, *p;
    size_t          nw = SD_DEMO_NWORDS, total = 0, w, i, j, k, size;
    uint64_t        key, h;
    char           *cat = NULL;
    sd_status       s = SD_OK;

    for (w = 0; w < nw; w++) {
        total += strlen(sd_demo_words[w]);
    }
    size = 16;
    while (size < 2 * total) {
        size <<= 1;
    }
    sym = sd_malloc(err, total * sizeof(int32_t), "demo BPE");
    start = sd_malloc(err, nw * sizeof(int32_t), "demo BPE");
    len = sd_malloc(err, nw * sizeof(int32_t), "demo BPE");
    freq = sd_malloc(err, nw * sizeof(int64_t), "demo BPE");
    tab = sd_malloc(err, size * sizeof(sd_demo_pair), "demo BPE");
    v->merge = sd_malloc(err, 2 * SD_DEMO_BPE_MAX_MERGES * sizeof(int32_t),
                         "demo BPE");
    if (!sym || !start || !len || !freq || !tab || !v->merge) {
        s = SD_ERR_NOMEM;
        goto done;
    }

    /* words as symbol ids; the last byte carries "</w>" (id + 256) */
    k = 0;
    for (w = 0; w < nw; w++) {
        start[w] = (int32_t) k;
        len[w] = (int32_t) strlen(sd_demo_words[w]);
        freq[w] = (int64_t) (nw - w);
        for (i = 0; i < (size_t) len[w]; i++) {
            id = v->byte_id[(unsigned char) sd_demo_words[w][i]];
            sym[k++] = (i + 1 == (size_t) len[w]) ? id + 256 : id;
        }
    }

    while (v->nmerges < SD_DEMO_BPE_MAX_MERGES) {

        /* count the adjacent pairs */
        memset(tab, 0, size * sizeof(sd_demo_pair));
        best = NULL;
        for (w = 0; w < nw; w++) {
            for (i = 0; i + 1 < (size_t) len[w]; i++) {
                key = (uint64_t) (uint32_t) sym[start[w] + i] << 32
                      | (uint32_t) sym[start[w] + i + 1];
                h = key * 0x9e3779b97f4a7c15ULL;
                for (j = (size_t) (h >> 32) & (size - 1); ;
                     j = (j + 1) & (size - 1))
                {
                    p = &tab[j];
                    if (p->count == 0 || p->key == key) {
                        break;
                    }
                }
                p->key = key;
                p->count += freq[w];
            }
        }
        for (j = 0; j < size; j++) {
            p = &tab[j];
            if (p->count > 0
                && (best == NULL || p->count > best->count
                    || (p->count == best->count && p->key < best->key)))
            {
                best = p;
            }
        }
        if (best == NULL) {
            break;                          /* every word is one symbol */
        }

        /* the merged symbol: an existing string or a new id */
        a = (int32_t) (best->key >> 32);
        b = (int32_t) (best->key & 0xffffffffu);
        cat = malloc(strlen(v->str[a]) + strlen(v->str[b]) + 1);
        if (cat == NULL) {
            s = sd_errorf(err, SD_ERR_NOMEM, "demo model: out of memory "
                          "learning merges");
            goto done;
        }
        strcpy(cat, v->str[a]);
        strcat(cat, v->str[b]);
        for (id = 0; id < v->n && strcmp(v->str[id], cat) != 0; id++) {
            /* void */
        }
        if (id == v->n) {
            SD_TRY_GOTO(s, sd_demo_bpe_add(err, v, cat), done);
        }
        free(cat);
        cat = NULL;
        v->merge[2 * v->nmerges] = a;
        v->merge[2 * v->nmerges + 1] = b;
        v->nmerges++;

        /* apply it left to right in every word */
        for (w = 0; w < nw; w++) {
            int32_t  *q = sym + start[w], n = 0;

            for (i = 0; i < (size_t) len[w]; i++) {
                if (i + 1 < (size_t) len[w] && q[i] == a && q[i + 1] == b) {
                    q[n++] = id;
                    i++;
                } else {
                    q[n++] = q[i];
                }
            }
            len[w] = n;
        }
    }

done:
    free(cat);
    free(sym);
    free(start);
    free(len);
    free(freq);
    free(tab);
    return s;
}


static void
sd_demo_bpe_free(sd_demo_bpe *v)
{
    int32_t  i;

    for (i = 0; i < v->n; i++) {
        free(v->str[i]);
    }
    free(v->str);
    free(v->merge);
    memset(v, 0, sizeof(*v));
}


/* vocab.json, merges.txt, tokenizer_config.json in tokenizer, tokenizer_2 */
static sd_status
sd_demo_clip_tokenizers(sd_err *err, const char *dir, int clip_len,
    int32_t *vocab_size)
{
    static const char  *pads[2] = { "<|endoftext|>", "!" };
    static const char  *names[2] = { "tokenizer", "tokenizer_2" };
    sd_demo_bpe         v;
    sd_demo_buf         vb = { NULL, 0, 0, 0 }, mb = { NULL, 0, 0, 0 };
    sd_demo_buf         cb = { NULL, 0, 0, 0 };
    char                sub[SD_DEMO_PATH_LEN];
    const char         *c;
    sd_status           s;
    int32_t             i;
    int                 k;

    SD_TRY_GOTO(s, sd_demo_bpe_init(err, &v), done);
    SD_TRY_GOTO(s, sd_demo_bpe_train(err, &v), done);
    SD_TRY_GOTO(s, sd_demo_bpe_add(err, &v, "<|startoftext|>"), done);
    SD_TRY_GOTO(s, sd_demo_bpe_add(err, &v, "<|endoftext|>"), done);
    *vocab_size = v.n;

    for (k = 0; k < 2; k++) {
        SD_TRY_GOTO(s, sd_demo_subdir(err, dir, names[k], sub), done);

        /* vocab.json: one line, keys JSON-escaped (only '"' and '\\' can
           occur: the byte symbols are printable) */
        sd_demo_buf_put(&vb, "{", 1);
        for (i = 0; i < v.n; i++) {
            sd_demo_buf_put(&vb, i ? ",\"" : "\"", i ? 2 : 1);
            for (c = v.str[i]; *c; c++) {
                if (*c == '"' || *c == '\\') {
                    sd_demo_buf_put(&vb, "\\", 1);
                }
                sd_demo_buf_put(&vb, c, 1);
            }
            sd_demo_buf_printf(&vb, "\":%d", (int) i);
        }
        sd_demo_buf_put(&vb, "}\n", 2);
        SD_TRY_GOTO(s, sd_demo_file(err, sub, "vocab.json", &vb), done);

        sd_demo_buf_printf(&mb, "#version: 0.2\n");
        for (i = 0; i < v.nmerges; i++) {
            sd_demo_buf_printf(&mb, "%s %s\n", v.str[v.merge[2 * i]],
                               v.str[v.merge[2 * i + 1]]);
        }
        SD_TRY_GOTO(s, sd_demo_file(err, sub, "merges.txt", &mb), done);

        sd_demo_buf_printf(&cb,
            "{\n"
            "  \"bos_token\": \"<|startoftext|>\",\n"
            "  \"clean_up_tokenization_spaces\": true,\n"
            "  \"do_lower_case\": true,\n"
            "  \"eos_token\": \"<|endoftext|>\",\n"
            "  \"model_max_length\": %d,\n"
            "  \"pad_token\": \"%s\",\n"
            "  \"tokenizer_class\": \"CLIPTokenizer\",\n"
            "  \"unk_token\": \"<|endoftext|>\"\n"
            "}\n", clip_len, pads[k]);
        SD_TRY_GOTO(s, sd_demo_file(err, sub, "tokenizer_config.json", &cb),
                    done);
    }
    s = SD_OK;

done:
    free(vb.p);
    free(mb.p);
    free(cb.p);
    sd_demo_bpe_free(&v);
    return s;
}


/* T5 tokenizer: spiece.model */

static void
sd_demo_pb_varint(sd_demo_buf *b, uint64_t v)
{
    unsigned char  out[10];
    size_t         n = 0;

    do {
        out[n] = (unsigned char) (v & 0x7f);
        v >>= 7;
        if (v) {
            out[n] |= 0x80;
        }
        n++;
    } while (v);
    sd_demo_buf_put(b, out, n);
}


static void
sd_demo_pb_tag(sd_demo_buf *b, uint32_t field, uint32_t wire)
{
    sd_demo_pb_varint(b, (uint64_t) field << 3 | wire);
}


static void
sd_demo_pb_bytes(sd_demo_buf *b, uint32_t field, const void *p, size_t n)
{
    sd_demo_pb_tag(b, field, SD_DEMO_PB_LEN);
    sd_demo_pb_varint(b, n);
    sd_demo_buf_put(b, p, n);
}


/* int32/bool/enum fields: negative values are sign-extended to 64 bits */
static void
sd_demo_pb_int(sd_demo_buf *b, uint32_t field, int64_t v)
{
    sd_demo_pb_tag(b, field, SD_DEMO_PB_VARINT);
    sd_demo_pb_varint(b, (uint64_t) v);
}


/* ModelProto.pieces: SentencePiece { 1: piece, 2: score, 3: type } */
static void
sd_demo_pb_piece(sd_demo_buf *b, const char *piece, float score, int type)
{
    sd_demo_buf    m = { NULL, 0, 0, 0 };
    unsigned char  f[4];
    uint32_t       bits;

    sd_demo_pb_bytes(&m, 1, piece, strlen(piece));
    memcpy(&bits, &score, sizeof(bits));
    f[0] = (unsigned char) bits;
    f[1] = (unsigned char) (bits >> 8);
    f[2] = (unsigned char) (bits >> 16);
    f[3] = (unsigned char) (bits >> 24);
    sd_demo_pb_tag(&m, 2, SD_DEMO_PB_I32);
    sd_demo_buf_put(&m, f, 4);
    if (type != SD_DEMO_SP_NORMAL) {
        sd_demo_pb_int(&m, 3, type);
    }
    if (m.failed) {
        b->failed = 1;
    } else {
        sd_demo_pb_bytes(b, 1, m.p, m.len);
    }
    free(m.p);
}


/*
 * Pieces, as T5's spiece.model orders its specials: "<pad>" 0, "</s>" 1
 * (CONTROL), "<unk>" 2 (UNKNOWN); then U+2581, printable ASCII, U+2581 +
 * a-z and U+2581 + each word of two or more letters. Scores rank whole
 * words above U+2581 + letter above a lone character, so Viterbi keeps a
 * listed word whole. The normalizer is the identity ("identity", no
 * precompiled_charsmap) with sentencepiece's three whitespace flags set.
 */
static sd_status
sd_demo_t5_tokenizer(sd_err *err, const char *dir, int32_t *vocab_size)
{
    sd_demo_buf  b = { NULL, 0, 0, 0 }, spec = { NULL, 0, 0, 0 };
    char         sub[SD_DEMO_PATH_LEN], piece[64];
    int32_t      n;
    size_t       w, k;
    int          c;

    SD_TRY(sd_demo_subdir(err, dir, "tokenizer_3", sub));

    sd_demo_pb_piece(&b, "<pad>", 0.0f, SD_DEMO_SP_CONTROL);
    sd_demo_pb_piece(&b, "</s>", 0.0f, SD_DEMO_SP_CONTROL);
    sd_demo_pb_piece(&b, "<unk>", 0.0f, SD_DEMO_SP_UNKNOWN);
    sd_demo_pb_piece(&b, SD_DEMO_SPACE, -2.0f, SD_DEMO_SP_NORMAL);
    n = 4;
    for (c = 33; c < 127; c++) {
        piece[0] = (char) c;
        piece[1] = '\0';
        sd_demo_pb_piece(&b, piece, -8.0f - 0.01f * (float) (c - 33),
                         SD_DEMO_SP_NORMAL);
        n++;
    }
    for (c = 'a'; c <= 'z'; c++) {
        snprintf(piece, sizeof(piece), SD_DEMO_SPACE "%c", c);
        sd_demo_pb_piece(&b, piece, -6.0f - 0.01f * (float) (c - 'a'),
                         SD_DEMO_SP_NORMAL);
        n++;
    }
    for (w = 0; w < SD_DEMO_NWORDS; w++) {
        if (strlen(sd_demo_words[w]) < 2) {
            continue;
        }
        for (k = 0; k < w && strcmp(sd_demo_words[k], sd_demo_words[w]); k++)
        {
            /* void */
        }
        if (k < w) {
            continue;                       /* listed twice */
        }
        snprintf(piece, sizeof(piece), SD_DEMO_SPACE "%s", sd_demo_words[w]);
        sd_demo_pb_piece(&b, piece, -4.0f - 0.005f * (float) w,
                         SD_DEMO_SP_NORMAL);
        n++;
    }

    /* TrainerSpec: model_type 3, vocab_size 4, unk/bos/eos/pad ids 40-43 */
    sd_demo_pb_int(&spec, 3, 1);                    /* UNIGRAM */
    sd_demo_pb_int(&spec, 4, n);
    sd_demo_pb_int(&spec, 40, 2);
    sd_demo_pb_int(&spec, 41, -1);
    sd_demo_pb_int(&spec, 42, 1);
    sd_demo_pb_int(&spec, 43, 0);
    sd_demo_pb_bytes(&spec, 45, "<unk>", 5);
    sd_demo_pb_bytes(&spec, 47, "</s>", 4);
    sd_demo_pb_bytes(&spec, 48, "<pad>", 5);
    if (spec.failed) {
        b.failed = 1;
    } else {
        sd_demo_pb_bytes(&b, 2, spec.p, spec.len);
    }
    free(spec.p);
    memset(&spec, 0, sizeof(spec));

    /* NormalizerSpec: name 1, add_dummy_prefix 3, remove_extra_whitespaces
       4, escape_whitespaces 5; no precompiled_charsmap (2) */
    sd_demo_pb_bytes(&spec, 1, "identity", 8);
    sd_demo_pb_int(&spec, 3, 1);
    sd_demo_pb_int(&spec, 4, 1);
    sd_demo_pb_int(&spec, 5, 1);
    if (spec.failed) {
        b.failed = 1;
    } else {
        sd_demo_pb_bytes(&b, 3, spec.p, spec.len);
    }
    free(spec.p);
    memset(&spec, 0, sizeof(spec));
    SD_TRY(sd_demo_file(err, sub, "spiece.model", &b));

    /* tok_t5.c appends the 100 "<extra_id_N>" after the pieces; the
       embedding rows are rounded up to 128 as T5's 32128 are */
    *vocab_size = (n + SD_DEMO_T5_EXTRA_IDS + 127) / 128 * 128;

    sd_demo_buf_printf(&b,
        "{\n"
        "  \"eos_token\": \"</s>\",\n"
        "  \"extra_ids\": %d,\n"
        "  \"additional_special_tokens\": [", SD_DEMO_T5_EXTRA_IDS);
    for (c = 0; c < SD_DEMO_T5_EXTRA_IDS; c++) {
        sd_demo_buf_printf(&b, "%s\n    \"<extra_id_%d>\"", c ? "," : "", c);
    }
    sd_demo_buf_printf(&b,
        "\n  ],\n"
        "  \"legacy\": true,\n"
        "  \"model_max_length\": 512,\n"
        "  \"pad_token\": \"<pad>\",\n"
        "  \"tokenizer_class\": \"T5Tokenizer\",\n"
        "  \"unk_token\": \"<unk>\"\n"
        "}\n");
    return sd_demo_file(err, sub, "tokenizer_config.json", &b);
}


/* Text encoders */

/* CLIPTextModelWithProjection (transformers modeling_clip.py) */
static sd_status
sd_demo_clip(sd_err *err, const char *dir, const char *name,
    const sd_demo_config *cfg, const sd_demo_clip_size *sz, const char *act,
    int32_t ntok, uint64_t seed)
{
    sd_demo_st   w;
    sd_demo_buf  b = { NULL, 0, 0, 0 };
    char         sub[SD_DEMO_PATH_LEN], p[SD_DEMO_PREFIX_LEN];
    int64_t      shape[2], d = sz->width, ff = sz->ffn;
    int32_t      vocab = ntok > cfg->clip_vocab ? ntok : cfg->clip_vocab;
    int          i;
    sd_status    s;

    SD_TRY(sd_demo_subdir(err, dir, name, sub));
    sd_demo_buf_printf(&b,
        "{\n"
        "  \"architectures\": [\n    \"CLIPTextModelWithProjection\"\n  ],\n"
        "  \"attention_dropout\": 0.0,\n"
        "  \"bos_token_id\": %d,\n"
        "  \"eos_token_id\": %d,\n"
        "  \"hidden_act\": \"%s\",\n"
        "  \"hidden_size\": %d,\n"
        "  \"initializer_factor\": 1.0,\n"
        "  \"initializer_range\": 0.02,\n"
        "  \"intermediate_size\": %d,\n"
        "  \"layer_norm_eps\": 1e-05,\n"
        "  \"max_position_embeddings\": %d,\n"
        "  \"model_type\": \"clip_text_model\",\n"
        "  \"num_attention_heads\": %d,\n"
        "  \"num_hidden_layers\": %d,\n"
        "  \"pad_token_id\": 1,\n"
        "  \"projection_dim\": %d,\n"
        "  \"torch_dtype\": \"bfloat16\",\n"
        "  \"vocab_size\": %d\n"
        "}\n", (int) ntok - 2, (int) ntok - 1, act, sz->width, (int) ff,
        cfg->clip_len, sz->heads, sz->layers, sz->width, (int) vocab);
    SD_TRY(sd_demo_file(err, sub, "config.json", &b));

    sd_demo_st_init(&w, err, seed, name, cfg, sub, "model");

    /* CLIPTextEmbeddings */
    shape[0] = vocab;
    shape[1] = d;
    SD_TRY_GOTO(s, sd_demo_add(&w, "text_model.embeddings.token_embedding."
                               "weight", 2, shape, 0.0f, 1.0f, NULL), fail);
    shape[0] = cfg->clip_len;
    SD_TRY_GOTO(s, sd_demo_add(&w, "text_model.embeddings.position_"
                               "embedding.weight", 2, shape, 0.0f, 0.5f,
                               NULL), fail);

    /* CLIPEncoderLayer: pre-norm attention and MLP */
    for (i = 0; i < sz->layers; i++) {
#define P(suffix)                                                           \
        snprintf(p, sizeof(p), "text_model.encoder.layers.%d.%s", i, suffix)

        P("layer_norm1");
        SD_TRY_GOTO(s, sd_demo_norm(&w, p, d), fail);
        P("self_attn.q_proj");
        SD_TRY_GOTO(s, sd_demo_linear(&w, p, d, d, 1.0f, 1), fail);
        P("self_attn.k_proj");
        SD_TRY_GOTO(s, sd_demo_linear(&w, p, d, d, 1.0f, 1), fail);
        P("self_attn.v_proj");
        SD_TRY_GOTO(s, sd_demo_linear(&w, p, d, d, 1.0f, 1), fail);
        P("self_attn.out_proj");
        SD_TRY_GOTO(s, sd_demo_linear(&w, p, d, d, 1.0f, 1), fail);
        P("layer_norm2");
        SD_TRY_GOTO(s, sd_demo_norm(&w, p, d), fail);
        P("mlp.fc1");
        SD_TRY_GOTO(s, sd_demo_linear(&w, p, ff, d, 1.0f, 1), fail);
        P("mlp.fc2");
        SD_TRY_GOTO(s, sd_demo_linear(&w, p, d, ff, 1.0f, 1), fail);
#undef P
    }

    SD_TRY_GOTO(s, sd_demo_norm(&w, "text_model.final_layer_norm", d), fail);
    SD_TRY_GOTO(s, sd_demo_linear(&w, "text_projection", d, d, 1.0f, 0),
                fail);
    return sd_demo_st_finish(&w);

fail:
    sd_demo_st_free(&w);
    return s;
}


/* T5EncoderModel (transformers modeling_t5.py), gated-gelu */
static sd_status
sd_demo_t5(sd_err *err, const char *dir, const sd_demo_config *cfg,
    int32_t ntok, uint64_t seed)
{
    sd_demo_st   w;
    sd_demo_buf  b = { NULL, 0, 0, 0 };
    char         sub[SD_DEMO_PATH_LEN], p[SD_DEMO_PREFIX_LEN];
    int64_t      shape[2], d = cfg->t5_width;
    int64_t      inner = (int64_t) cfg->t5_heads * cfg->t5_kv;
    int64_t      ff = cfg->t5_ff;
    int32_t      vocab = ntok > cfg->t5_vocab ? ntok : cfg->t5_vocab;
    int          i;
    sd_status    s;

    SD_TRY(sd_demo_subdir(err, dir, "text_encoder_3", sub));
    sd_demo_buf_printf(&b,
        "{\n"
        "  \"architectures\": [\n    \"T5EncoderModel\"\n  ],\n"
        "  \"d_ff\": %d,\n"
        "  \"d_kv\": %d,\n"
        "  \"d_model\": %d,\n"
        "  \"dense_act_fn\": \"gelu_new\",\n"
        "  \"dropout_rate\": 0.0,\n"
        "  \"eos_token_id\": 1,\n"
        "  \"feed_forward_proj\": \"gated-gelu\",\n"
        "  \"initializer_factor\": 1.0,\n"
        "  \"is_encoder_decoder\": true,\n"
        "  \"is_gated_act\": true,\n"
        "  \"layer_norm_epsilon\": 1e-06,\n"
        "  \"model_type\": \"t5\",\n"
        "  \"num_decoder_layers\": %d,\n"
        "  \"num_heads\": %d,\n"
        "  \"num_layers\": %d,\n"
        "  \"pad_token_id\": 0,\n"
        "  \"relative_attention_max_distance\": 128,\n"
        "  \"relative_attention_num_buckets\": %d,\n"
        "  \"tie_word_embeddings\": false,\n"
        "  \"torch_dtype\": \"bfloat16\",\n"
        "  \"vocab_size\": %d\n"
        "}\n", cfg->t5_ff, cfg->t5_kv, cfg->t5_width, cfg->t5_layers,
        cfg->t5_heads, cfg->t5_layers, cfg->t5_buckets, (int) vocab);
    SD_TRY(sd_demo_file(err, sub, "config.json", &b));

    sd_demo_st_init(&w, err, seed, "text_encoder_3", cfg, sub, "model");

    shape[0] = vocab;
    shape[1] = d;
    SD_TRY_GOTO(s, sd_demo_add(&w, "shared.weight", 2, shape, 0.0f, 1.0f,
                               NULL), fail);

    for (i = 0; i < cfg->t5_layers; i++) {
#define P(suffix)                                                           \
        snprintf(p, sizeof(p), "encoder.block.%d.layer.%s", i, suffix)

        /* T5 attention has no 1/sqrt(d_kv): q carries it, as T5's init */
        P("0.layer_norm");
        SD_TRY_GOTO(s, sd_demo_vec(&w, p, "weight", d, 1.0f), fail);
        P("0.SelfAttention.q");
        SD_TRY_GOTO(s, sd_demo_linear(&w, p, inner, d,
                                      1.0f / sqrtf((float) cfg->t5_kv), 0),
                    fail);
        P("0.SelfAttention.k");
        SD_TRY_GOTO(s, sd_demo_linear(&w, p, inner, d, 1.0f, 0), fail);
        P("0.SelfAttention.v");
        SD_TRY_GOTO(s, sd_demo_linear(&w, p, inner, d, 1.0f, 0), fail);
        P("0.SelfAttention.o");
        SD_TRY_GOTO(s, sd_demo_linear(&w, p, d, inner, 1.0f, 0), fail);
        if (i == 0) {
            shape[0] = cfg->t5_buckets;
            shape[1] = cfg->t5_heads;
            P("0.SelfAttention.relative_attention_bias.weight");
            SD_TRY_GOTO(s, sd_demo_add(&w, p, 2, shape, 0.0f, 0.5f, NULL),
                        fail);
        }
        P("1.layer_norm");
        SD_TRY_GOTO(s, sd_demo_vec(&w, p, "weight", d, 1.0f), fail);
        P("1.DenseReluDense.wi_0");
        SD_TRY_GOTO(s, sd_demo_linear(&w, p, ff, d, 1.0f, 0), fail);
        P("1.DenseReluDense.wi_1");
        SD_TRY_GOTO(s, sd_demo_linear(&w, p, ff, d, 1.0f, 0), fail);
        P("1.DenseReluDense.wo");
        SD_TRY_GOTO(s, sd_demo_linear(&w, p, d, ff, 1.0f, 0), fail);
#undef P
    }

    SD_TRY_GOTO(s, sd_demo_vec(&w, "encoder.final_layer_norm", "weight", d,
                               1.0f), fail);
    return sd_demo_st_finish(&w);

fail:
    sd_demo_st_free(&w);
    return s;
}


/* Transformer */

/*
 * diffusers get_2d_sincos_pos_embed(width, grid, base_size=base,
 * interpolation_scale=1) (embeddings.py): grid positions are
 * arange(grid) / (grid / base) in float32; meshgrid(w, h, indexing="xy")
 * puts the column coordinate first, so the row of token (i, j) is
 * [sin(j s w_k), cos(j s w_k) ; sin(i s w_k), cos(i s w_k)] with
 * w_k = 10000^(-k / (width / 4)), k < width / 4, in float64; each value is
 * computed once per (position, k) into tab: (grid, 2, width / 4).
 * dst: (grid * grid, width).
 */
static void
sd_demo_pos_table(float *dst, int width, int grid, int base, float *tab)
{
    int     q = width / 4, i, j, k;
    float   step = (float) ((double) grid / base), pi;
    double  omega;
    float  *r, *ti, *tj;

    for (i = 0; i < grid; i++) {
        pi = (float) i / step;
        ti = tab + (size_t) i * 2 * q;
        for (k = 0; k < q; k++) {
            omega = 1.0 / pow(10000.0, (double) k / q);
            ti[k] = (float) sin(pi * omega);
            ti[q + k] = (float) cos(pi * omega);
        }
    }
    for (i = 0; i < grid; i++) {
        ti = tab + (size_t) i * 2 * q;
        for (j = 0; j < grid; j++) {
            tj = tab + (size_t) j * 2 * q;
            r = dst + ((size_t) i * grid + j) * width;
            memcpy(r, tj, 2 * (size_t) q * sizeof(float));
            memcpy(r + 2 * q, ti, 2 * (size_t) q * sizeof(float));
        }
    }
}


/*
 * JointTransformerBlock (attention.py); the last one context_pre_only;
 * dual (use_dual_attention, MMDiT-X): SD35AdaLayerNormZeroX norm1 (9
 * chunks) and the image-only attention attn2.
 */
static sd_status
sd_demo_dit_block(sd_demo_st *w, const sd_demo_config *cfg, int i, int dual)
{
    static const char *const  x_names[4] = {
        "to_q", "to_k", "to_v", "to_out.0"
    };
    static const char *const  c_names[4] = {
        "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out"
    };
    char     p[SD_DEMO_PREFIX_LEN];
    int64_t  width = (int64_t) cfg->dit_heads * cfg->dit_head_dim;
    int64_t  ff = cfg->dit_mlp * width, hd = cfg->dit_head_dim;
    float    mod = SD_DEMO_MOD_STD * sqrtf((float) width);
    int      pre = (i == cfg->dit_layers - 1), j;

#define P(suffix)                                                           \
    snprintf(p, sizeof(p), "transformer_blocks.%d.%s", i, suffix)

    /* AdaLayerNormZero: 6 chunks, SD35AdaLayerNormZeroX: 9;
       context_pre_only: AdaLayerNormContinuous, 2 */
    P("norm1.linear");
    SD_TRY(sd_demo_linear(w, p, (dual ? 9 : 6) * width, width, mod, 1));
    P("norm1_context.linear");
    SD_TRY(sd_demo_linear(w, p, (pre ? 2 : 6) * width, width, mod, 1));

    /* Attention: image stream, context stream, QK RMSNorms */
    for (j = 0; j < 4; j++) {
        snprintf(p, sizeof(p), "transformer_blocks.%d.attn.%s", i,
                 x_names[j]);
        SD_TRY(sd_demo_linear(w, p, width, width, 1.0f, 1));
    }
    for (j = 0; j < 4 - pre; j++) {
        snprintf(p, sizeof(p), "transformer_blocks.%d.attn.%s", i,
                 c_names[j]);
        SD_TRY(sd_demo_linear(w, p, width, width, 1.0f, 1));
    }
    P("attn.norm_q");
    SD_TRY(sd_demo_vec(w, p, "weight", hd, 1.0f));
    P("attn.norm_k");
    SD_TRY(sd_demo_vec(w, p, "weight", hd, 1.0f));
    P("attn.norm_added_q");
    SD_TRY(sd_demo_vec(w, p, "weight", hd, 1.0f));
    P("attn.norm_added_k");
    SD_TRY(sd_demo_vec(w, p, "weight", hd, 1.0f));

    /* attn2: Attention(query_dim=dim, bias=True, qk_norm), no added KV */
    for (j = 0; dual && j < 4; j++) {
        snprintf(p, sizeof(p), "transformer_blocks.%d.attn2.%s", i,
                 x_names[j]);
        SD_TRY(sd_demo_linear(w, p, width, width, 1.0f, 1));
    }
    if (dual) {
        P("attn2.norm_q");
        SD_TRY(sd_demo_vec(w, p, "weight", hd, 1.0f));
        P("attn2.norm_k");
        SD_TRY(sd_demo_vec(w, p, "weight", hd, 1.0f));
    }

    /* FeedForward gelu-approximate: net.0.proj, net.2 */
    P("ff.net.0.proj");
    SD_TRY(sd_demo_linear(w, p, ff, width, 1.0f, 1));
    P("ff.net.2");
    SD_TRY(sd_demo_linear(w, p, width, ff, 1.0f, 1));
    if (!pre) {
        P("ff_context.net.0.proj");
        SD_TRY(sd_demo_linear(w, p, ff, width, 1.0f, 1));
        P("ff_context.net.2");
        SD_TRY(sd_demo_linear(w, p, width, ff, 1.0f, 1));
    }
#undef P
    return SD_OK;
}


/* SD3Transformer2DModel (transformer_sd3.py) */
static sd_status
sd_demo_transformer(sd_err *err, const char *dir, const sd_demo_config *cfg,
    uint64_t seed)
{
    sd_demo_st   w;
    sd_demo_buf  b = { NULL, 0, 0, 0 };
    char         sub[SD_DEMO_PATH_LEN];
    int64_t      width = (int64_t) cfg->dit_heads * cfg->dit_head_dim;
    int64_t      pooled = cfg->clip_l.width + cfg->clip_g.width;
    int64_t      pp = (int64_t) cfg->dit_patch * cfg->dit_patch;
    int64_t      shape[3], rows;
    float       *pos, *tab;
    int          i, k, dual;
    sd_status    s;

    SD_TRY(sd_demo_subdir(err, dir, "transformer", sub));
    sd_demo_buf_printf(&b,
        "{\n"
        "  \"_class_name\": \"SD3Transformer2DModel\",\n"
        "  \"_diffusers_version\": \"0.31.0\",\n"
        "  \"attention_head_dim\": %d,\n"
        "  \"caption_projection_dim\": %d,\n"
        "  \"dual_attention_layers\": [", cfg->dit_head_dim, (int) width);
    for (k = 0; k < cfg->dit_ndual; k++) {
        sd_demo_buf_printf(&b, "%s\n    %d", k ? "," : "", cfg->dit_dual[k]);
    }
    sd_demo_buf_printf(&b,
        "%s],\n"
        "  \"in_channels\": %d,\n"
        "  \"joint_attention_dim\": %d,\n"
        "  \"num_attention_heads\": %d,\n"
        "  \"num_layers\": %d,\n"
        "  \"out_channels\": %d,\n"
        "  \"patch_size\": %d,\n"
        "  \"pooled_projection_dim\": %d,\n"
        "  \"pos_embed_max_size\": %d,\n"
        "  \"qk_norm\": \"rms_norm\",\n"
        "  \"sample_size\": %d\n"
        "}\n", cfg->dit_ndual ? "\n  " : "", cfg->latent, cfg->t5_width,
        cfg->dit_heads, cfg->dit_layers, cfg->latent, cfg->dit_patch,
        (int) pooled, cfg->dit_pos_max, cfg->dit_sample);
    SD_TRY(sd_demo_file(err, sub, "config.json", &b));

    /* pos: (pos_max^2, width) f32, tab: (pos_max, width) */
    rows = (int64_t) cfg->dit_pos_max * cfg->dit_pos_max;
    pos = sd_malloc(err, (size_t) (rows * width) * sizeof(float),
                    "demo position table");
    tab = sd_malloc(err, (size_t) (cfg->dit_pos_max * width) * sizeof(float),
                    "demo position table");
    if (pos == NULL || tab == NULL) {
        free(pos);
        free(tab);
        return SD_ERR_NOMEM;
    }
    sd_demo_pos_table(pos, (int) width, cfg->dit_pos_max,
                      cfg->dit_sample / cfg->dit_patch, tab);
    free(tab);

    sd_demo_st_init(&w, err, seed, "transformer", cfg, sub,
                    "diffusion_pytorch_model");

    /* PatchEmbed: proj conv (width, in, p, p), the sin-cos table */
    SD_TRY_GOTO(s, sd_demo_conv(&w, "pos_embed.proj", width, cfg->latent,
                                cfg->dit_patch, 1.0f), fail);
    shape[0] = 1;
    shape[1] = rows;
    shape[2] = width;
    SD_TRY_GOTO(s, sd_demo_add(&w, "pos_embed.pos_embed", 3, shape, 0.0f,
                               0.0f, pos), fail);
    free(pos);
    pos = NULL;

    /* CombinedTimestepTextProjEmbeddings, context_embedder */
    SD_TRY_GOTO(s, sd_demo_linear(&w, "time_text_embed.timestep_embedder."
                                  "linear_1", width, cfg->dit_t_channels,
                                  1.0f, 1), fail);
    SD_TRY_GOTO(s, sd_demo_linear(&w, "time_text_embed.timestep_embedder."
                                  "linear_2", width, width, 1.0f, 1), fail);
    SD_TRY_GOTO(s, sd_demo_linear(&w, "time_text_embed.text_embedder."
                                  "linear_1", width, pooled, 1.0f, 1), fail);
    SD_TRY_GOTO(s, sd_demo_linear(&w, "time_text_embed.text_embedder."
                                  "linear_2", width, width, 1.0f, 1), fail);
    SD_TRY_GOTO(s, sd_demo_linear(&w, "context_embedder", width,
                                  cfg->t5_width, 1.0f, 1), fail);

    for (i = 0, k = 0; i < cfg->dit_layers; i++) {
        dual = (k < cfg->dit_ndual && cfg->dit_dual[k] == i);
        k += dual;
        SD_TRY_GOTO(s, sd_demo_dit_block(&w, cfg, i, dual), fail);
    }

    /* AdaLayerNormContinuous norm_out, proj_out */
    SD_TRY_GOTO(s, sd_demo_linear(&w, "norm_out.linear", 2 * width, width,
                                  SD_DEMO_MOD_STD * sqrtf((float) width), 1),
                fail);
    SD_TRY_GOTO(s, sd_demo_linear(&w, "proj_out", pp * cfg->latent, width,
                                  1.0f, 1), fail);
    return sd_demo_st_finish(&w);

fail:
    free(pos);
    sd_demo_st_free(&w);
    return s;
}


/* VAE */

/* ResnetBlock2D (resnet.py): norm1, conv1, norm2, conv2, 1x1 shortcut */
static sd_status
sd_demo_vae_resnet(sd_demo_st *w, const char *prefix, int64_t cin,
    int64_t cout)
{
    char  p[SD_DEMO_PREFIX_LEN];

    snprintf(p, sizeof(p), "%s.norm1", prefix);
    SD_TRY(sd_demo_norm(w, p, cin));
    snprintf(p, sizeof(p), "%s.conv1", prefix);
    SD_TRY(sd_demo_conv(w, p, cout, cin, 3, 1.0f));
    snprintf(p, sizeof(p), "%s.norm2", prefix);
    SD_TRY(sd_demo_norm(w, p, cout));
    snprintf(p, sizeof(p), "%s.conv2", prefix);
    SD_TRY(sd_demo_conv(w, p, cout, cout, 3, 0.5f));
    if (cin != cout) {
        snprintf(p, sizeof(p), "%s.conv_shortcut", prefix);
        SD_TRY(sd_demo_conv(w, p, cout, cin, 1, 1.0f));
    }
    return SD_OK;
}


/* UNetMidBlock2D: resnets.0, attentions.0, resnets.1 */
static sd_status
sd_demo_vae_mid(sd_demo_st *w, const char *part, int64_t ch)
{
    static const char *const  names[4] = {
        "to_q", "to_k", "to_v", "to_out.0"
    };
    char  p[SD_DEMO_PREFIX_LEN];
    int   j;

    snprintf(p, sizeof(p), "%s.mid_block.resnets.0", part);
    SD_TRY(sd_demo_vae_resnet(w, p, ch, ch));
    snprintf(p, sizeof(p), "%s.mid_block.attentions.0.group_norm", part);
    SD_TRY(sd_demo_norm(w, p, ch));
    for (j = 0; j < 4; j++) {
        snprintf(p, sizeof(p), "%s.mid_block.attentions.0.%s", part,
                 names[j]);
        SD_TRY(sd_demo_linear(w, p, ch, ch, 1.0f, 1));
    }
    snprintf(p, sizeof(p), "%s.mid_block.resnets.1", part);
    return sd_demo_vae_resnet(w, p, ch, ch);
}


/* AutoencoderKL (autoencoder_kl.py): Encoder and Decoder of vae.py */
static sd_status
sd_demo_vae(sd_err *err, const char *dir, const sd_demo_config *cfg,
    uint64_t seed)
{
    const int   *ch = cfg->vae_ch;
    sd_demo_st   w;
    sd_demo_buf  b = { NULL, 0, 0, 0 };
    char         sub[SD_DEMO_PATH_LEN], p[SD_DEMO_PREFIX_LEN];
    int64_t      top = ch[SD_DEMO_VAE_BLOCKS - 1], cin, cout;
    int          i, j, nb = SD_DEMO_VAE_BLOCKS, lat = cfg->latent;
    sd_status    s;

    SD_TRY(sd_demo_subdir(err, dir, "vae", sub));
    sd_demo_buf_printf(&b,
        "{\n"
        "  \"_class_name\": \"AutoencoderKL\",\n"
        "  \"_diffusers_version\": \"0.31.0\",\n"
        "  \"act_fn\": \"silu\",\n"
        "  \"block_out_channels\": [\n    %d,\n    %d,\n    %d,\n    %d\n"
        "  ],\n"
        "  \"down_block_types\": [\n"
        "    \"DownEncoderBlock2D\",\n    \"DownEncoderBlock2D\",\n"
        "    \"DownEncoderBlock2D\",\n    \"DownEncoderBlock2D\"\n  ],\n"
        "  \"force_upcast\": true,\n"
        "  \"in_channels\": 3,\n"
        "  \"latent_channels\": %d,\n"
        "  \"latents_mean\": null,\n"
        "  \"latents_std\": null,\n"
        "  \"layers_per_block\": %d,\n"
        "  \"mid_block_add_attention\": true,\n"
        "  \"norm_num_groups\": %d,\n"
        "  \"out_channels\": 3,\n"
        "  \"sample_size\": 1024,\n"
        "  \"scaling_factor\": 1.5305,\n"
        "  \"shift_factor\": 0.0609,\n"
        "  \"up_block_types\": [\n"
        "    \"UpDecoderBlock2D\",\n    \"UpDecoderBlock2D\",\n"
        "    \"UpDecoderBlock2D\",\n    \"UpDecoderBlock2D\"\n  ],\n"
        "  \"use_post_quant_conv\": false,\n"
        "  \"use_quant_conv\": false\n"
        "}\n", ch[0], ch[1], ch[2], ch[3], lat, cfg->vae_layers,
        cfg->vae_groups);
    SD_TRY(sd_demo_file(err, sub, "config.json", &b));

    sd_demo_st_init(&w, err, seed, "vae", cfg, sub,
                    "diffusion_pytorch_model");

    /* Encoder: conv_in, down_blocks, mid_block, conv_norm_out, conv_out */
    SD_TRY_GOTO(s, sd_demo_conv(&w, "encoder.conv_in", ch[0], 3, 3, 1.0f),
                fail);
    for (i = 0; i < nb; i++) {
        cout = ch[i];
        for (j = 0; j < cfg->vae_layers; j++) {
            cin = j > 0 ? cout : (i == 0 ? ch[0] : ch[i - 1]);
            snprintf(p, sizeof(p), "encoder.down_blocks.%d.resnets.%d", i, j);
            SD_TRY_GOTO(s, sd_demo_vae_resnet(&w, p, cin, cout), fail);
        }
        if (i < nb - 1) {
            snprintf(p, sizeof(p), "encoder.down_blocks.%d.downsamplers.0."
                     "conv", i);
            SD_TRY_GOTO(s, sd_demo_conv(&w, p, cout, cout, 3, 1.0f), fail);
        }
    }
    SD_TRY_GOTO(s, sd_demo_vae_mid(&w, "encoder", top), fail);
    SD_TRY_GOTO(s, sd_demo_norm(&w, "encoder.conv_norm_out", top), fail);
    SD_TRY_GOTO(s, sd_demo_conv(&w, "encoder.conv_out", 2 * lat, top, 3,
                                1.0f), fail);

    /* Decoder: conv_in, mid_block, up_blocks (reversed channels) */
    SD_TRY_GOTO(s, sd_demo_conv(&w, "decoder.conv_in", top, lat, 3, 1.0f),
                fail);
    SD_TRY_GOTO(s, sd_demo_vae_mid(&w, "decoder", top), fail);
    for (i = 0; i < nb; i++) {
        cout = ch[nb - 1 - i];
        for (j = 0; j < cfg->vae_layers + 1; j++) {
            cin = j > 0 ? cout : (i == 0 ? top : ch[nb - i]);
            snprintf(p, sizeof(p), "decoder.up_blocks.%d.resnets.%d", i, j);
            SD_TRY_GOTO(s, sd_demo_vae_resnet(&w, p, cin, cout), fail);
        }
        if (i < nb - 1) {
            snprintf(p, sizeof(p), "decoder.up_blocks.%d.upsamplers.0.conv",
                     i);
            SD_TRY_GOTO(s, sd_demo_conv(&w, p, cout, cout, 3, 1.0f), fail);
        }
    }
    SD_TRY_GOTO(s, sd_demo_norm(&w, "decoder.conv_norm_out", ch[0]), fail);
    SD_TRY_GOTO(s, sd_demo_conv(&w, "decoder.conv_out", 3, ch[0], 3, 1.0f),
                fail);
    return sd_demo_st_finish(&w);

fail:
    sd_demo_st_free(&w);
    return s;
}
