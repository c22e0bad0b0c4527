/*
 * demo.c: the embedded demo model of demo.h: a small random-weight model
 * of the SD3.5 Large architecture, written in the diffusers folder layout
 * with tokenizer files of its own, so that a fresh checkout generates
 * images with no download.
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
 *     that clip.c, t5.c, mmdit.c and vae.c load, at toy widths defined once
 *     below (the CLIP widths sum to at most the T5 width, the joint context);
 *   scheduler: FlowMatchEulerDiscreteScheduler, shift 3.
 *
 * Weights are N(0, gain^2 / fan_in) from a splitmix64 + Box-Muller stream
 * seeded per file from the seed; norm weights are 1, norm biases 0, other
 * biases small. The adaLN modulation linears have std 0.02 so that the
 * untrained transformer stays near identity and finite. The transformer's
 * position table is the real 2D sin-cos table of diffusers'
 * get_2d_sincos_pos_embed, not random.
 *
 * Invariant: the bytes written depend only on the seed (no clock, no
 * addresses, no locale-dependent formatting); each file is written to
 * "<name>.tmp" and renamed, so a reader never sees a half-written file.
 */

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "demo.h"
#include "safetensors.h"


/* Every size of the demo model, in one place. */
#define SD_DEMO_CLIP_LEN        77
#define SD_DEMO_CLIP_LAYERS     2
#define SD_DEMO_CLIP_HEADS      2
#define SD_DEMO_CLIP_L_WIDTH    32          /* projection_dim = width */
#define SD_DEMO_CLIP_G_WIDTH    48
#define SD_DEMO_T5_WIDTH        96          /* >= CLIP-L + CLIP-G widths */
#define SD_DEMO_T5_HEADS        2
#define SD_DEMO_T5_KV           48
#define SD_DEMO_T5_FF           192
#define SD_DEMO_T5_LAYERS       2
#define SD_DEMO_T5_BUCKETS      32
#define SD_DEMO_T5_EXTRA_IDS    100
#define SD_DEMO_DIT_LAYERS      2
#define SD_DEMO_DIT_HEADS       2
#define SD_DEMO_DIT_HEAD_DIM    32
#define SD_DEMO_DIT_PATCH       2
#define SD_DEMO_DIT_SAMPLE      128         /* sample_size, as SD3.5 */
#define SD_DEMO_DIT_POS_MAX     96          /* up to 96 * 16 = 1536 px */
#define SD_DEMO_DIT_T_CHANNELS  256         /* Timesteps num_channels */
#define SD_DEMO_DIT_MLP         4           /* feed-forward ratio */
#define SD_DEMO_LATENT          16
#define SD_DEMO_VAE_BLOCKS      4
#define SD_DEMO_VAE_LAYERS      1
#define SD_DEMO_VAE_GROUPS      8

#define SD_DEMO_MOD_STD         0.02f       /* adaLN modulation linears */
#define SD_DEMO_BIAS_STD        0.02f
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


/* The tensors of one safetensors file, bf16, and their random stream. */
typedef struct {
    sd_err         *err;
    uint64_t        state;              /* splitmix64 */
    double          spare;              /* second Box-Muller value */
    int             has_spare;
    sd_st_out      *t;
    size_t          n;
    size_t          cap;
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
static uint64_t sd_demo_next(uint64_t *state);
static double sd_demo_normal(sd_demo_st *w);
static void sd_demo_st_init(sd_demo_st *w, sd_err *err, uint64_t seed,
    const char *salt);
static void sd_demo_st_free(sd_demo_st *w);
static sd_status sd_demo_add(sd_demo_st *w, const char *name, int ndim,
    const int64_t *shape, float mean, float std, const float *src);
static sd_status sd_demo_vec(sd_demo_st *w, const char *prefix,
    const char *suffix, int64_t n, float value);
static sd_status sd_demo_linear(sd_demo_st *w, const char *prefix,
    int64_t out, int64_t in, float gain, int bias);
static sd_status sd_demo_conv(sd_demo_st *w, const char *prefix,
    int64_t co, int64_t ci, int64_t k, float gain);
static sd_status sd_demo_norm(sd_demo_st *w, const char *prefix, int64_t c);
static sd_status sd_demo_st_flush(sd_demo_st *w, const char *dir,
    const char *name);
static sd_status sd_demo_index(sd_err *err, const char *dir);
static sd_status sd_demo_scheduler(sd_err *err, const char *dir);
static size_t sd_demo_utf8(uint32_t cp, char *out);
static sd_status sd_demo_bpe_add(sd_err *err, sd_demo_bpe *v,
    const char *s);
static sd_status sd_demo_bpe_init(sd_err *err, sd_demo_bpe *v);
static sd_status sd_demo_bpe_train(sd_err *err, sd_demo_bpe *v);
static void sd_demo_bpe_free(sd_demo_bpe *v);
static sd_status sd_demo_clip_tokenizers(sd_err *err, const char *dir,
    int32_t *vocab_size);
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
    const char *name, int width, const char *act, int32_t vocab,
    uint64_t seed);
static sd_status sd_demo_t5(sd_err *err, const char *dir, int32_t vocab,
    uint64_t seed);
static void sd_demo_pos_table(float *dst, int width, int grid, int base);
static sd_status sd_demo_dit_block(sd_demo_st *w, int i, int64_t width);
static sd_status sd_demo_transformer(sd_err *err, const char *dir,
    uint64_t seed);
static sd_status sd_demo_vae_resnet(sd_demo_st *w, const char *prefix,
    int64_t cin, int64_t cout);
static sd_status sd_demo_vae_mid(sd_demo_st *w, const char *part,
    int64_t ch);
static sd_status sd_demo_vae(sd_err *err, const char *dir, uint64_t seed);


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


sd_status
sd_demo_write(sd_err *err, const char *dir, uint64_t seed)
{
    int32_t  clip_vocab, t5_vocab;

    if (dir == NULL || dir[0] == '\0') {
        return sd_errorf(err, SD_ERR_INVALID, "demo model: no folder given");
    }
    if (strlen(dir) > SD_DEMO_PATH_LEN - 64) {
        return sd_errorf(err, SD_ERR_INVALID, "demo model: folder name too "
                         "long");
    }

    SD_TRY(sd_demo_mkdirs(err, dir));
    SD_TRY(sd_demo_index(err, dir));
    SD_TRY(sd_demo_scheduler(err, dir));
    SD_TRY(sd_demo_clip_tokenizers(err, dir, &clip_vocab));
    SD_TRY(sd_demo_t5_tokenizer(err, dir, &t5_vocab));
    SD_TRY(sd_demo_clip(err, dir, "text_encoder", SD_DEMO_CLIP_L_WIDTH,
                        "quick_gelu", clip_vocab, seed));
    SD_TRY(sd_demo_clip(err, dir, "text_encoder_2", SD_DEMO_CLIP_G_WIDTH,
                        "gelu", clip_vocab, seed));
    SD_TRY(sd_demo_t5(err, dir, t5_vocab, seed));
    SD_TRY(sd_demo_transformer(err, dir, seed));
    return sd_demo_vae(err, dir, seed);
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


/* The stream of one file: the seed mixed with the file's name (FNV-1a). */
static void
sd_demo_st_init(sd_demo_st *w, sd_err *err, uint64_t seed, const char *salt)
{
    uint64_t  h = 1469598103934665603ULL;

    while (*salt) {
        h = (h ^ (unsigned char) *salt++) * 1099511628211ULL;
    }
    memset(w, 0, sizeof(*w));
    w->err = err;
    w->state = seed ^ h;
}


static void
sd_demo_st_free(sd_demo_st *w)
{
    size_t  i;

    for (i = 0; i < w->n; i++) {
        free((void *) w->t[i].name);
        free((void *) w->t[i].data);
    }
    free(w->t);
    w->t = NULL;
    w->n = 0;
    w->cap = 0;
}


/* A bf16 tensor: src if given, else mean + std * N(0, 1) per value. */
static sd_status
sd_demo_add(sd_demo_st *w, const char *name, int ndim, const int64_t *shape,
    float mean, float std, const float *src)
{
    sd_st_out  *t;
    uint16_t   *d;
    char       *nm;
    int64_t     n = 1, i;
    size_t      len, cap;
    float       v;
    int         k;

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

    for (k = 0; k < ndim; k++) {
        n *= shape[k];
    }
    len = strlen(name);
    nm = sd_malloc(w->err, len + 1, "demo tensor name");
    if (nm == NULL) {
        return SD_ERR_NOMEM;
    }
    memcpy(nm, name, len + 1);
    d = sd_malloc(w->err, (size_t) n * sizeof(uint16_t), "demo tensor");
    if (d == NULL) {
        free(nm);
        return SD_ERR_NOMEM;
    }

    for (i = 0; i < n; i++) {
        v = src ? src[i]
                : (std == 0.0f ? mean
                               : mean + std * (float) sd_demo_normal(w));
        d[i] = sd_f32_to_bf16(v);
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


/* dir/name = the tensors, through dir/name.tmp; frees the tensors. */
static sd_status
sd_demo_st_flush(sd_demo_st *w, const char *dir, const char *name)
{
    char       path[SD_DEMO_PATH_LEN], tmp[SD_DEMO_PATH_LEN + 8];
    sd_status  s;

    SD_TRY_GOTO(s, sd_path_join(w->err, path, sizeof(path), dir, name),
                done);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    SD_TRY_GOTO(s, sd_st_write(w->err, tmp, w->t, w->n), done);
    if (rename(tmp, path) != 0) {
        s = sd_errorf(w->err, SD_ERR_IO, "demo model: rename(\"%s\") "
                      "failed: %s", path, strerror(errno));
        remove(tmp);
    }

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
sd_demo_clip_tokenizers(sd_err *err, const char *dir, int32_t *vocab_size)
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
            "}\n", SD_DEMO_CLIP_LEN, pads[k]);
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
sd_demo_clip(sd_err *err, const char *dir, const char *name, int width,
    const char *act, int32_t vocab, uint64_t seed)
{
    sd_demo_st   w;
    sd_demo_buf  b = { NULL, 0, 0, 0 };
    char         sub[SD_DEMO_PATH_LEN], p[SD_DEMO_PREFIX_LEN];
    int64_t      shape[2], d = width, ff = 4 * (int64_t) width;
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
        "}\n", (int) vocab - 2, (int) vocab - 1, act, width, (int) ff,
        SD_DEMO_CLIP_LEN, SD_DEMO_CLIP_HEADS, SD_DEMO_CLIP_LAYERS, width,
        (int) vocab);
    SD_TRY(sd_demo_file(err, sub, "config.json", &b));

    sd_demo_st_init(&w, err, seed, name);

    /* CLIPTextEmbeddings */
    shape[0] = vocab;
    shape[1] = d;
    SD_TRY_GOTO(s, sd_demo_add(&w, "text_model.embeddings.token_embedding."
                               "weight", 2, shape, 0.0f, 1.0f, NULL), fail);
    shape[0] = SD_DEMO_CLIP_LEN;
    SD_TRY_GOTO(s, sd_demo_add(&w, "text_model.embeddings.position_"
                               "embedding.weight", 2, shape, 0.0f, 0.5f,
                               NULL), fail);

    /* CLIPEncoderLayer: pre-norm attention and MLP */
    for (i = 0; i < SD_DEMO_CLIP_LAYERS; i++) {
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
    return sd_demo_st_flush(&w, sub, "model.safetensors");

fail:
    sd_demo_st_free(&w);
    return s;
}


/* T5EncoderModel (transformers modeling_t5.py), gated-gelu */
static sd_status
sd_demo_t5(sd_err *err, const char *dir, int32_t vocab, uint64_t seed)
{
    sd_demo_st   w;
    sd_demo_buf  b = { NULL, 0, 0, 0 };
    char         sub[SD_DEMO_PATH_LEN], p[SD_DEMO_PREFIX_LEN];
    int64_t      shape[2], d = SD_DEMO_T5_WIDTH;
    int64_t      inner = SD_DEMO_T5_HEADS * SD_DEMO_T5_KV;
    int64_t      ff = SD_DEMO_T5_FF;
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
        "}\n", SD_DEMO_T5_FF, SD_DEMO_T5_KV, SD_DEMO_T5_WIDTH,
        SD_DEMO_T5_LAYERS, SD_DEMO_T5_HEADS, SD_DEMO_T5_LAYERS,
        SD_DEMO_T5_BUCKETS, (int) vocab);
    SD_TRY(sd_demo_file(err, sub, "config.json", &b));

    sd_demo_st_init(&w, err, seed, "text_encoder_3");

    shape[0] = vocab;
    shape[1] = d;
    SD_TRY_GOTO(s, sd_demo_add(&w, "shared.weight", 2, shape, 0.0f, 1.0f,
                               NULL), fail);

    for (i = 0; i < SD_DEMO_T5_LAYERS; i++) {
#define P(suffix)                                                           \
        snprintf(p, sizeof(p), "encoder.block.%d.layer.%s", i, suffix)

        /* T5 attention has no 1/sqrt(d_kv): q carries it, as T5's init */
        P("0.layer_norm");
        SD_TRY_GOTO(s, sd_demo_vec(&w, p, "weight", d, 1.0f), fail);
        P("0.SelfAttention.q");
        SD_TRY_GOTO(s, sd_demo_linear(&w, p, inner, d,
                                      1.0f / sqrtf(SD_DEMO_T5_KV), 0), fail);
        P("0.SelfAttention.k");
        SD_TRY_GOTO(s, sd_demo_linear(&w, p, inner, d, 1.0f, 0), fail);
        P("0.SelfAttention.v");
        SD_TRY_GOTO(s, sd_demo_linear(&w, p, inner, d, 1.0f, 0), fail);
        P("0.SelfAttention.o");
        SD_TRY_GOTO(s, sd_demo_linear(&w, p, d, inner, 1.0f, 0), fail);
        if (i == 0) {
            shape[0] = SD_DEMO_T5_BUCKETS;
            shape[1] = SD_DEMO_T5_HEADS;
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
    return sd_demo_st_flush(&w, sub, "model.safetensors");

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
 * w_k = 10000^(-k / (width / 4)), k < width / 4, in float64.
 * dst: (grid * grid, width).
 */
static void
sd_demo_pos_table(float *dst, int width, int grid, int base)
{
    int     q = width / 4, i, j, k;
    float   step = (float) ((double) grid / base), pi, pj;
    double  omega;
    float  *r;

    for (i = 0; i < grid; i++) {
        pi = (float) i / step;
        for (j = 0; j < grid; j++) {
            pj = (float) j / step;
            r = dst + ((size_t) i * grid + j) * width;
            for (k = 0; k < q; k++) {
                omega = 1.0 / pow(10000.0, (double) k / q);
                r[k] = (float) sin(pj * omega);
                r[q + k] = (float) cos(pj * omega);
                r[2 * q + k] = (float) sin(pi * omega);
                r[3 * q + k] = (float) cos(pi * omega);
            }
        }
    }
}


/* JointTransformerBlock (attention.py); the last one context_pre_only */
static sd_status
sd_demo_dit_block(sd_demo_st *w, int i, int64_t width)
{
    static const char *const  x_names[4] = {
        "to_q", "to_k", "to_v", "to_out.0"
    };
    static const char *const  c_names[4] = {
        "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out"
    };
    char     p[SD_DEMO_PREFIX_LEN];
    int64_t  ff = SD_DEMO_DIT_MLP * width, hd = SD_DEMO_DIT_HEAD_DIM;
    int      pre = (i == SD_DEMO_DIT_LAYERS - 1), j;

#define P(suffix)                                                           \
    snprintf(p, sizeof(p), "transformer_blocks.%d.%s", i, suffix)

    /* AdaLayerNormZero: 6 chunks; context_pre_only: 2 (continuous) */
    P("norm1.linear");
    SD_TRY(sd_demo_linear(w, p, 6 * width, width,
                          SD_DEMO_MOD_STD * sqrtf((float) width), 1));
    P("norm1_context.linear");
    SD_TRY(sd_demo_linear(w, p, (pre ? 2 : 6) * width, width,
                          SD_DEMO_MOD_STD * sqrtf((float) width), 1));

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
sd_demo_transformer(sd_err *err, const char *dir, uint64_t seed)
{
    sd_demo_st   w;
    sd_demo_buf  b = { NULL, 0, 0, 0 };
    char         sub[SD_DEMO_PATH_LEN];
    int64_t      width = SD_DEMO_DIT_HEADS * SD_DEMO_DIT_HEAD_DIM;
    int64_t      pooled = SD_DEMO_CLIP_L_WIDTH + SD_DEMO_CLIP_G_WIDTH;
    int64_t      pp = SD_DEMO_DIT_PATCH * SD_DEMO_DIT_PATCH;
    int64_t      shape[3], rows;
    float       *pos;
    int          i;
    sd_status    s;

    SD_TRY(sd_demo_subdir(err, dir, "transformer", sub));
    sd_demo_buf_printf(&b,
        "{\n"
        "  \"_class_name\": \"SD3Transformer2DModel\",\n"
        "  \"_diffusers_version\": \"0.31.0\",\n"
        "  \"attention_head_dim\": %d,\n"
        "  \"caption_projection_dim\": %d,\n"
        "  \"dual_attention_layers\": [],\n"
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
        "}\n", SD_DEMO_DIT_HEAD_DIM, (int) width, SD_DEMO_LATENT,
        SD_DEMO_T5_WIDTH, SD_DEMO_DIT_HEADS, SD_DEMO_DIT_LAYERS,
        SD_DEMO_LATENT, SD_DEMO_DIT_PATCH, (int) pooled, SD_DEMO_DIT_POS_MAX,
        SD_DEMO_DIT_SAMPLE);
    SD_TRY(sd_demo_file(err, sub, "config.json", &b));

    rows = (int64_t) SD_DEMO_DIT_POS_MAX * SD_DEMO_DIT_POS_MAX;
    pos = sd_malloc(err, (size_t) (rows * width) * sizeof(float),
                    "demo position table");
    if (pos == NULL) {
        return SD_ERR_NOMEM;
    }
    sd_demo_pos_table(pos, (int) width, SD_DEMO_DIT_POS_MAX,
                      SD_DEMO_DIT_SAMPLE / SD_DEMO_DIT_PATCH);

    sd_demo_st_init(&w, err, seed, "transformer");

    /* PatchEmbed: proj conv (width, in, p, p), the sin-cos table */
    SD_TRY_GOTO(s, sd_demo_conv(&w, "pos_embed.proj", width, SD_DEMO_LATENT,
                                SD_DEMO_DIT_PATCH, 1.0f), fail);
    shape[0] = 1;
    shape[1] = rows;
    shape[2] = width;
    SD_TRY_GOTO(s, sd_demo_add(&w, "pos_embed.pos_embed", 3, shape, 0.0f,
                               0.0f, pos), fail);

    /* CombinedTimestepTextProjEmbeddings, context_embedder */
    SD_TRY_GOTO(s, sd_demo_linear(&w, "time_text_embed.timestep_embedder."
                                  "linear_1", width, SD_DEMO_DIT_T_CHANNELS,
                                  1.0f, 1), fail);
    SD_TRY_GOTO(s, sd_demo_linear(&w, "time_text_embed.timestep_embedder."
                                  "linear_2", width, width, 1.0f, 1), fail);
    SD_TRY_GOTO(s, sd_demo_linear(&w, "time_text_embed.text_embedder."
                                  "linear_1", width, pooled, 1.0f, 1), fail);
    SD_TRY_GOTO(s, sd_demo_linear(&w, "time_text_embed.text_embedder."
                                  "linear_2", width, width, 1.0f, 1), fail);
    SD_TRY_GOTO(s, sd_demo_linear(&w, "context_embedder", width,
                                  SD_DEMO_T5_WIDTH, 1.0f, 1), fail);

    for (i = 0; i < SD_DEMO_DIT_LAYERS; i++) {
        SD_TRY_GOTO(s, sd_demo_dit_block(&w, i, width), fail);
    }

    /* AdaLayerNormContinuous norm_out, proj_out */
    SD_TRY_GOTO(s, sd_demo_linear(&w, "norm_out.linear", 2 * width, width,
                                  SD_DEMO_MOD_STD * sqrtf((float) width), 1),
                fail);
    SD_TRY_GOTO(s, sd_demo_linear(&w, "proj_out", pp * SD_DEMO_LATENT, width,
                                  1.0f, 1), fail);
    free(pos);
    return sd_demo_st_flush(&w, sub, "diffusion_pytorch_model.safetensors");

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
sd_demo_vae(sd_err *err, const char *dir, uint64_t seed)
{
    static const int  ch[SD_DEMO_VAE_BLOCKS] = { 16, 16, 32, 32 };
    sd_demo_st        w;
    sd_demo_buf       b = { NULL, 0, 0, 0 };
    char              sub[SD_DEMO_PATH_LEN], p[SD_DEMO_PREFIX_LEN];
    int64_t           top = ch[SD_DEMO_VAE_BLOCKS - 1], cin, cout;
    int               i, j, nb = SD_DEMO_VAE_BLOCKS;
    sd_status         s;

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
        "}\n", ch[0], ch[1], ch[2], ch[3], SD_DEMO_LATENT,
        SD_DEMO_VAE_LAYERS, SD_DEMO_VAE_GROUPS);
    SD_TRY(sd_demo_file(err, sub, "config.json", &b));

    sd_demo_st_init(&w, err, seed, "vae");

    /* Encoder: conv_in, down_blocks, mid_block, conv_norm_out, conv_out */
    SD_TRY_GOTO(s, sd_demo_conv(&w, "encoder.conv_in", ch[0], 3, 3, 1.0f),
                fail);
    for (i = 0; i < nb; i++) {
        cout = ch[i];
        for (j = 0; j < SD_DEMO_VAE_LAYERS; j++) {
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
    SD_TRY_GOTO(s, sd_demo_conv(&w, "encoder.conv_out", 2 * SD_DEMO_LATENT,
                                top, 3, 1.0f), fail);

    /* Decoder: conv_in, mid_block, up_blocks (reversed channels) */
    SD_TRY_GOTO(s, sd_demo_conv(&w, "decoder.conv_in", top, SD_DEMO_LATENT,
                                3, 1.0f), fail);
    SD_TRY_GOTO(s, sd_demo_vae_mid(&w, "decoder", top), fail);
    for (i = 0; i < nb; i++) {
        cout = ch[nb - 1 - i];
        for (j = 0; j < SD_DEMO_VAE_LAYERS + 1; j++) {
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
    return sd_demo_st_flush(&w, sub, "diffusion_pytorch_model.safetensors");

fail:
    sd_demo_st_free(&w);
    return s;
}
