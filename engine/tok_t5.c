/*
 * tok_t5.c: the T5 SentencePiece unigram tokenizer, exact to the ids of
 * Hugging Face's T5TokenizerFast as SD3.5 uses it (the tokenizer.json of a
 * tokenizer_3 folder), loaded from spiece.model:
 *
 *   1. the special added tokens "<pad>", "</s>", "<unk>" and "<extra_id_N>"
 *      are split out of the raw text first (they are never normalized);
 *   2. every other segment goes through the model's precompiled charsmap
 *      (a darts-clone trie), grapheme by grapheme as HF's Precompiled
 *      normalizer does it: a grapheme under 6 bytes is replaced whole when a
 *      prefix of it is a key, else each code point is looked up alone;
 *   3. WhitespaceSplit (Unicode White_Space removed), then Metaspace: "\xe2
 *      \x96\x81" (U+2581) is prepended to each word not starting with it and
 *      the word is split before each run of U+2581;
 *   4. each piece is segmented by Viterbi over the vocabulary (the pieces of
 *      spiece.model, then the 100 "<extra_id_N>", score 0), an unknown code
 *      point costing min_score - 10, consecutive unknowns fused into one
 *      "<unk>"; ties keep the first path found, shorter pieces first.
 *
 * Invariant: after sd_t5_tok_load() returns, nothing in an sd_t5_tok is
 * written again; sd_t5_tok_encode() keeps its state in buffers of its own,
 * so one tokenizer may be shared by any number of threads.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tokenizer.h"


#define SD_T5_EXTRA_IDS     100     /* "<extra_id_0>" .. "<extra_id_99>" */
#define SD_T5_UNK_PENALTY   10.0    /* HF Unigram's K_UNK_PENALTY */
#define SD_T5_MAX_PIECES    (1 << 24)

/* protobuf wire types */
#define SD_PB_VARINT        0
#define SD_PB_I64           1
#define SD_PB_LEN           2
#define SD_PB_I32           5

/* sentencepiece.SentencePiece.Type */
#define SD_SP_UNKNOWN       2

/* darts-clone double-array units (the precompiled charsmap) */
#define SD_DA_OFFSET(x)     (((x) >> 10) << (((x) & (1u << 9)) >> 6))
#define SD_DA_LABEL(x)      ((x) & ((1u << 31) | 0xff))
#define SD_DA_HAS_LEAF(x)   (((x) >> 8) & 1)
#define SD_DA_VALUE(x)      ((x) & ((1u << 31) - 1))


typedef struct {
    const uint8_t  *p;
    const uint8_t  *end;
} sd_pb;


/* A vocabulary trie node; the children of a node are contiguous, sorted. */
typedef struct {
    uint32_t        child;          /* index of the first child in nodes[] */
    uint32_t        nchild;
    int32_t         piece;          /* id of the piece ending here, or -1 */
    uint8_t         label;          /* byte on the edge from the parent */
} sd_t5_node;


/* A piece string while the trie is built. */
typedef struct {
    const uint8_t  *p;
    uint32_t        len;
    int32_t         id;
} sd_t5_key;


struct sd_t5_tok {
    int32_t         npieces;        /* spiece.model pieces + extra ids */
    int32_t         nspm;           /* pieces from spiece.model */
    double         *scores;         /* [npieces] */
    sd_t5_node     *nodes;          /* [nnodes], nodes[0] is the root */
    uint32_t        nnodes;
    double          unk_score;      /* min score - SD_T5_UNK_PENALTY */
    int32_t         unk_id;
    int32_t         eos_id;
    int32_t         pad_id;

    uint32_t       *cm_units;       /* charsmap darts-clone units */
    uint32_t        cm_nunits;
    char           *cm_norm;        /* NUL-separated replacement strings */
    uint32_t        cm_norm_len;
};


/* Per-call scratch of sd_t5_tok_encode(). */
typedef struct {
    uint8_t        *norm;           /* normalized segment */
    size_t          norm_len;
    size_t          norm_cap;
    uint8_t        *word;           /* U+2581 + word */
    double         *best;           /* lattice, per byte offset */
    int32_t        *from;
    int32_t        *tid;
    int32_t        *rev;            /* ids of one piece, last first */
    size_t          lat_cap;
} sd_t5_work;


static size_t sd_t5_utf8_dec(const uint8_t *s, size_t n, uint32_t *cp);
static int sd_pb_varint(sd_pb *b, uint64_t *v);
static int sd_pb_next(sd_pb *b, uint32_t *field, uint32_t *wire,
    uint64_t *val, sd_pb *sub);
static sd_status sd_t5_parse_piece(sd_err *err, const char *path, int32_t i,
    sd_pb *msg, sd_t5_key *key, double *score, int *type);
static sd_status sd_t5_parse_charsmap(sd_err *err, const char *path,
    sd_t5_tok *tok, sd_pb *spec);
static int sd_t5_key_cmp(const void *a, const void *b);
static sd_status sd_t5_build_trie(sd_err *err, sd_t5_tok *tok,
    sd_t5_key *keys, int32_t n);
static int32_t sd_t5_trie_child(const sd_t5_tok *tok, uint32_t node,
    uint8_t c);
static int32_t sd_t5_trie_find(const sd_t5_tok *tok, const char *s);
static int sd_t5_charsmap(const sd_t5_tok *tok, const uint8_t *s, size_t n,
    const uint8_t **out, size_t *out_len);
static sd_status sd_t5_norm_put(sd_err *err, sd_t5_work *w, const uint8_t *s,
    size_t n);
static sd_status sd_t5_normalize(sd_err *err, const sd_t5_tok *tok,
    sd_t5_work *w, const uint8_t *s, size_t n);
static int sd_t5_is_space(uint32_t cp);
static size_t sd_t5_special(const sd_t5_tok *tok, const uint8_t *s,
    int32_t *id);
static void sd_t5_viterbi(const sd_t5_tok *tok, sd_t5_work *w,
    const uint8_t *s, size_t n, int32_t *ids, int *count, int limit);
static sd_status sd_t5_segment(sd_err *err, const sd_t5_tok *tok,
    sd_t5_work *w, const uint8_t *s, size_t n, int32_t *ids, int *count,
    int limit);


/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid. */
static size_t
sd_t5_utf8_dec(const uint8_t *s, size_t n, uint32_t *cp)
{
    uint32_t  c;
    size_t    len, i;

    if (n == 0) {
        return 0;
    }

    c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }

    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        c &= 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        c &= 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        c &= 0x07;
    } else {
        return 0;
    }

    if (n < len) {
        return 0;
    }

    for (i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            return 0;
        }
        c = (c << 6) | (s[i] & 0x3f);
    }

    if ((len == 3 && (c < 0x800 || (c >= 0xd800 && c <= 0xdfff)))
        || (len == 4 && (c < 0x10000 || c > 0x10ffff)))
    {
        return 0;
    }

    *cp = c;
    return len;
}


static int
sd_pb_varint(sd_pb *b, uint64_t *v)
{
    uint64_t  r = 0;
    int       shift;

    for (shift = 0; shift < 64; shift += 7) {
        if (b->p >= b->end) {
            return -1;
        }
        r |= (uint64_t) (*b->p & 0x7f) << shift;
        if ((*b->p++ & 0x80) == 0) {
            *v = r;
            return 0;
        }
    }
    return -1;
}


/*
 * Read one field: a varint or fixed value into *val, or a length-delimited
 * body into *sub (checked against the buffer). Groups are refused.
 */
static int
sd_pb_next(sd_pb *b, uint32_t *field, uint32_t *wire, uint64_t *val,
    sd_pb *sub)
{
    uint64_t  tag, len;
    int       i, nb;

    if (sd_pb_varint(b, &tag) != 0 || (tag >> 3) == 0
        || (tag >> 3) > 0x1fffffff)
    {
        return -1;
    }

    *field = (uint32_t) (tag >> 3);
    *wire = (uint32_t) (tag & 7);
    *val = 0;

    switch (*wire) {

    case SD_PB_VARINT:
        return sd_pb_varint(b, val);

    case SD_PB_I64:
    case SD_PB_I32:
        nb = (*wire == SD_PB_I64) ? 8 : 4;
        if (b->end - b->p < nb) {
            return -1;
        }
        for (i = nb - 1; i >= 0; i--) {
            *val = (*val << 8) | b->p[i];
        }
        b->p += nb;
        return 0;

    case SD_PB_LEN:
        if (sd_pb_varint(b, &len) != 0
            || len > (uint64_t) (b->end - b->p))
        {
            return -1;
        }
        sub->p = b->p;
        sub->end = b->p + len;
        b->p += len;
        return 0;

    default:
        return -1;
    }
}


/* SentencePiece { 1: piece, 2: score (float), 3: type } */
static sd_status
sd_t5_parse_piece(sd_err *err, const char *path, int32_t i, sd_pb *msg,
    sd_t5_key *key, double *score, int *type)
{
    uint32_t  field, wire, bits, cp;
    uint64_t  val;
    size_t    off, len;
    float     f;
    sd_pb     sub;

    key->p = NULL;
    key->len = 0;
    key->id = i;
    *score = 0.0;
    *type = 1;

    while (msg->p < msg->end) {
        if (sd_pb_next(msg, &field, &wire, &val, &sub) != 0) {
            return sd_errorf(err, SD_ERR_FORMAT, "\"%s\": piece %d: "
                             "truncated or malformed field", path, (int) i);
        }

        if (field == 1 && wire == SD_PB_LEN) {
            key->p = sub.p;
            key->len = (uint32_t) (sub.end - sub.p);

        } else if (field == 2 && wire == SD_PB_I32) {
            bits = (uint32_t) val;
            memcpy(&f, &bits, sizeof(f));
            *score = (double) f;

        } else if (field == 3 && wire == SD_PB_VARINT) {
            *type = (int) (val & 0xff);
        }
    }

    if (key->p == NULL || key->len == 0) {
        return sd_errorf(err, SD_ERR_FORMAT, "\"%s\": piece %d has no "
                         "string", path, (int) i);
    }

    for (off = 0; off < key->len; off += len) {
        len = sd_t5_utf8_dec(key->p + off, key->len - off, &cp);
        if (len == 0 || cp == 0) {
            return sd_errorf(err, SD_ERR_FORMAT, "\"%s\": piece %d is not "
                             "valid UTF-8", path, (int) i);
        }
    }

    return SD_OK;
}


/*
 * NormalizerSpec { 2: precompiled_charsmap }: u32 LE trie size in bytes,
 * the darts-clone units, then the replacement strings.
 */
static sd_status
sd_t5_parse_charsmap(sd_err *err, const char *path, sd_t5_tok *tok,
    sd_pb *spec)
{
    const uint8_t  *cm = NULL, *q;
    uint32_t        field, wire, trie_size, i, cp;
    uint64_t        val;
    size_t          cm_len = 0, off, len;
    sd_pb           sub;

    while (spec->p < spec->end) {
        if (sd_pb_next(spec, &field, &wire, &val, &sub) != 0) {
            return sd_errorf(err, SD_ERR_FORMAT, "\"%s\": normalizer_spec: "
                             "truncated or malformed field", path);
        }
        if (field == 2 && wire == SD_PB_LEN) {
            cm = sub.p;
            cm_len = (size_t) (sub.end - sub.p);
        }
    }

    if (cm == NULL || cm_len == 0) {
        return SD_OK;                       /* identity normalization */
    }

    if (cm_len < 4) {
        return sd_errorf(err, SD_ERR_FORMAT, "\"%s\": precompiled_charsmap "
                         "of %zu bytes is truncated", path, cm_len);
    }

    trie_size = (uint32_t) cm[0] | (uint32_t) cm[1] << 8
                | (uint32_t) cm[2] << 16 | (uint32_t) cm[3] << 24;

    if (trie_size < 4 || trie_size % 4 != 0 || trie_size > cm_len - 4) {
        return sd_errorf(err, SD_ERR_FORMAT, "\"%s\": precompiled_charsmap "
                         "trie size %u does not fit its %zu bytes", path,
                         trie_size, cm_len);
    }

    tok->cm_nunits = trie_size / 4;
    tok->cm_units = sd_malloc(err, trie_size, "T5 charsmap trie");
    if (tok->cm_units == NULL) {
        return SD_ERR_NOMEM;
    }

    for (i = 0; i < tok->cm_nunits; i++) {
        q = cm + 4 + 4 * (size_t) i;
        tok->cm_units[i] = (uint32_t) q[0] | (uint32_t) q[1] << 8
                           | (uint32_t) q[2] << 16 | (uint32_t) q[3] << 24;
    }

    tok->cm_norm_len = (uint32_t) (cm_len - 4 - trie_size);
    tok->cm_norm = sd_malloc(err, tok->cm_norm_len, "T5 charsmap strings");
    if (tok->cm_norm == NULL) {
        return SD_ERR_NOMEM;
    }
    memcpy(tok->cm_norm, cm + 4 + trie_size, tok->cm_norm_len);

    /* HF takes the strings blob as a Rust str: it must be UTF-8 */
    for (off = 0; off < tok->cm_norm_len; off += len) {
        len = sd_t5_utf8_dec((const uint8_t *) tok->cm_norm + off,
                             tok->cm_norm_len - off, &cp);
        if (len == 0) {
            return sd_errorf(err, SD_ERR_FORMAT, "\"%s\": precompiled_"
                             "charsmap strings are not valid UTF-8", path);
        }
    }

    return SD_OK;
}


/* Byte order, a prefix before its extensions, equal strings by id. */
static int
sd_t5_key_cmp(const void *a, const void *b)
{
    const sd_t5_key  *x = a, *y = b;
    uint32_t          n;
    int               c;

    n = x->len < y->len ? x->len : y->len;
    c = memcmp(x->p, y->p, n);
    if (c != 0) {
        return c;
    }
    if (x->len != y->len) {
        return x->len < y->len ? -1 : 1;
    }
    return (x->id > y->id) - (x->id < y->id);
}


/*
 * Breadth-first: node k covers the sorted keys [lo, hi) sharing depth[k]
 * bytes; its children are appended together, so they stay contiguous.
 * A duplicated string keeps its last id, as HF's token_to_ids map does.
 */
static sd_status
sd_t5_build_trie(sd_err *err, sd_t5_tok *tok, sd_t5_key *keys, int32_t n)
{
    uint32_t    *lo, *hi, *depth, cap, k, l, h, d, m, nn;
    size_t       total = 1;
    sd_status    st = SD_OK;
    int32_t      i;
    uint8_t      c;

    qsort(keys, (size_t) n, sizeof(sd_t5_key), sd_t5_key_cmp);

    for (i = 0; i < n; i++) {
        total += keys[i].len;
    }
    if (total > UINT32_MAX / 2) {
        return sd_errorf(err, SD_ERR_FORMAT, "T5 vocabulary too large");
    }
    cap = (uint32_t) total;

    tok->nodes = sd_calloc(err, cap, sizeof(sd_t5_node), "T5 trie");
    lo = sd_calloc(err, cap, sizeof(uint32_t), "T5 trie build");
    hi = sd_calloc(err, cap, sizeof(uint32_t), "T5 trie build");
    depth = sd_calloc(err, cap, sizeof(uint32_t), "T5 trie build");
    if (tok->nodes == NULL || lo == NULL || hi == NULL || depth == NULL) {
        st = SD_ERR_NOMEM;
        goto done;
    }

    lo[0] = 0;
    hi[0] = (uint32_t) n;
    depth[0] = 0;
    nn = 1;

    for (k = 0; k < nn; k++) {
        l = lo[k];
        h = hi[k];
        d = depth[k];

        tok->nodes[k].piece = -1;
        while (l < h && keys[l].len == d) {
            tok->nodes[k].piece = keys[l].id;
            l++;
        }

        tok->nodes[k].child = nn;
        while (l < h) {
            c = keys[l].p[d];
            for (m = l; m < h && keys[m].p[d] == c; m++) {
                /* void */
            }
            tok->nodes[nn].label = c;
            lo[nn] = l;
            hi[nn] = m;
            depth[nn] = d + 1;
            nn++;
            l = m;
        }
        tok->nodes[k].nchild = nn - tok->nodes[k].child;
    }

    tok->nnodes = nn;

done:
    free(lo);
    free(hi);
    free(depth);
    return st;
}


/* Index of the child of node labelled c, or -1. */
static int32_t
sd_t5_trie_child(const sd_t5_tok *tok, uint32_t node, uint8_t c)
{
    const sd_t5_node  *ch;
    uint32_t           a, b, mid;

    ch = tok->nodes + tok->nodes[node].child;
    a = 0;
    b = tok->nodes[node].nchild;

    while (a < b) {
        mid = a + (b - a) / 2;
        if (ch[mid].label == c) {
            return (int32_t) (tok->nodes[node].child + mid);
        }
        if (ch[mid].label < c) {
            a = mid + 1;
        } else {
            b = mid;
        }
    }
    return -1;
}


/* Id of the piece spelled exactly s, or -1. */
static int32_t
sd_t5_trie_find(const sd_t5_tok *tok, const char *s)
{
    int32_t  node = 0;

    for ( /* void */ ; *s; s++) {
        node = sd_t5_trie_child(tok, (uint32_t) node, (uint8_t) *s);
        if (node < 0) {
            return -1;
        }
    }
    return tok->nodes[node].piece;
}


sd_status
sd_t5_tok_load(sd_err *err, const char *dir, sd_t5_tok **out)
{
    char        path[4096], *data = NULL, *extra = NULL;
    uint32_t    field, wire;
    uint64_t    val;
    size_t      len;
    int32_t     n, i;
    double      min_score;
    sd_t5_key  *keys = NULL;
    sd_t5_tok  *tok = NULL;
    sd_status   st;
    sd_pb       b, sub, norm = { NULL, NULL };
    int         type;

    *out = NULL;

    SD_TRY(sd_path_join(err, path, sizeof(path), dir, "spiece.model"));
    SD_TRY(sd_read_file(err, path, &data, &len));

    /* pass 1: count the pieces, find the normalizer_spec */

    n = 0;
    b.p = (const uint8_t *) data;
    b.end = b.p + len;

    while (b.p < b.end) {
        if (sd_pb_next(&b, &field, &wire, &val, &sub) != 0) {
            st = sd_errorf(err, SD_ERR_FORMAT, "\"%s\": truncated or "
                           "malformed protobuf field after %d pieces", path,
                           (int) n);
            goto failed;
        }
        if (field == 1 && wire == SD_PB_LEN) {
            if (++n > SD_T5_MAX_PIECES) {
                st = sd_errorf(err, SD_ERR_FORMAT, "\"%s\": more than %d "
                               "pieces", path, SD_T5_MAX_PIECES);
                goto failed;
            }
        } else if (field == 3 && wire == SD_PB_LEN) {
            norm = sub;
        }
    }

    if (n == 0) {
        st = sd_errorf(err, SD_ERR_FORMAT, "\"%s\": no pieces", path);
        goto failed;
    }

    tok = sd_calloc(err, 1, sizeof(sd_t5_tok), "T5 tokenizer");
    if (tok == NULL) {
        st = SD_ERR_NOMEM;
        goto failed;
    }

    tok->nspm = n;
    tok->npieces = n + SD_T5_EXTRA_IDS;
    tok->unk_id = -1;
    tok->scores = sd_calloc(err, (size_t) tok->npieces, sizeof(double),
                            "T5 scores");
    keys = sd_calloc(err, (size_t) tok->npieces, sizeof(sd_t5_key),
                     "T5 pieces");
    extra = sd_malloc(err, SD_T5_EXTRA_IDS * 16, "T5 extra ids");
    if (tok->scores == NULL || keys == NULL || extra == NULL) {
        st = SD_ERR_NOMEM;
        goto failed;
    }

    /* pass 2: the pieces */

    i = 0;
    b.p = (const uint8_t *) data;

    while (b.p < b.end) {
        if (sd_pb_next(&b, &field, &wire, &val, &sub) != 0) {
            st = sd_errorf(err, SD_ERR_INTERNAL, "\"%s\": reparse failed",
                           path);
            goto failed;
        }
        if (field != 1 || wire != SD_PB_LEN) {
            continue;
        }

        SD_TRY_GOTO(st, sd_t5_parse_piece(err, path, i, &sub, &keys[i],
                                          &tok->scores[i], &type), failed);
        if (type == SD_SP_UNKNOWN && tok->unk_id < 0) {
            tok->unk_id = i;
        }
        i++;
    }

    /* HF's T5 conversion: "<extra_id_99>" first, "<extra_id_0>" last */

    for (i = 0; i < SD_T5_EXTRA_IDS; i++) {
        keys[n + i].p = (const uint8_t *) extra + 16 * i;
        keys[n + i].len = (uint32_t) snprintf(extra + 16 * i, 16,
                                              "<extra_id_%d>",
                                              SD_T5_EXTRA_IDS - 1 - i);
        keys[n + i].id = n + i;
        tok->scores[n + i] = 0.0;
    }

    min_score = tok->scores[0];
    for (i = 1; i < tok->npieces; i++) {
        if (tok->scores[i] < min_score) {
            min_score = tok->scores[i];
        }
    }
    tok->unk_score = min_score - SD_T5_UNK_PENALTY;

    if (norm.p != NULL) {
        SD_TRY_GOTO(st, sd_t5_parse_charsmap(err, path, tok, &norm), failed);
    }

    SD_TRY_GOTO(st, sd_t5_build_trie(err, tok, keys, tok->npieces), failed);

    tok->eos_id = sd_t5_trie_find(tok, "</s>");
    tok->pad_id = sd_t5_trie_find(tok, "<pad>");

    if (tok->unk_id < 0 || tok->eos_id < 0 || tok->pad_id < 0) {
        st = sd_errorf(err, SD_ERR_FORMAT, "\"%s\": no %s piece", path,
                       tok->unk_id < 0 ? "UNKNOWN-type"
                       : tok->eos_id < 0 ? "\"</s>\"" : "\"<pad>\"");
        goto failed;
    }

    free(keys);
    free(extra);
    free(data);
    *out = tok;
    return SD_OK;

failed:

    free(keys);
    free(extra);
    free(data);
    sd_t5_tok_free(tok);
    return st;
}


void
sd_t5_tok_free(sd_t5_tok *tok)
{
    if (tok == NULL) {
        return;
    }
    free(tok->scores);
    free(tok->nodes);
    free(tok->cm_units);
    free(tok->cm_norm);
    free(tok);
}


/*
 * HF's Precompiled::transform(): the first (shortest) key of the charsmap
 * that is a prefix of s; its replacement runs to the next NUL. Returns 0
 * when none matches; a unit index outside the trie counts as no match.
 */
static int
sd_t5_charsmap(const sd_t5_tok *tok, const uint8_t *s, size_t n,
    const uint8_t **out, size_t *out_len)
{
    const uint32_t  *u = tok->cm_units;
    uint32_t         pos, unit, value;
    const char      *end;
    size_t           i;

    if (tok->cm_nunits == 0) {
        return 0;
    }

    pos = SD_DA_OFFSET(u[0]);

    for (i = 0; i < n && s[i] != 0; i++) {
        pos ^= s[i];
        if (pos >= tok->cm_nunits) {
            return 0;
        }
        unit = u[pos];
        if (SD_DA_LABEL(unit) != s[i]) {
            return 0;
        }
        pos ^= SD_DA_OFFSET(unit);
        if (SD_DA_HAS_LEAF(unit)) {
            if (pos >= tok->cm_nunits) {
                return 0;
            }
            value = SD_DA_VALUE(u[pos]);
            if (value >= tok->cm_norm_len
                || (tok->cm_norm[value] & 0xc0) == 0x80)
            {
                return 0;
            }
            end = memchr(tok->cm_norm + value, '\0',
                         tok->cm_norm_len - value);
            *out = (const uint8_t *) tok->cm_norm + value;
            *out_len = end ? (size_t) (end - (tok->cm_norm + value))
                           : tok->cm_norm_len - value;
            return 1;
        }
    }

    return 0;
}


static sd_status
sd_t5_norm_put(sd_err *err, sd_t5_work *w, const uint8_t *s, size_t n)
{
    uint8_t  *p;
    size_t    cap;

    if (w->norm_len + n > w->norm_cap) {
        cap = w->norm_cap * 2 + n;
        p = realloc(w->norm, cap);
        if (p == NULL) {
            return sd_errorf(err, SD_ERR_NOMEM, "out of memory normalizing "
                             "a T5 prompt (%zu bytes)", cap);
        }
        w->norm = p;
        w->norm_cap = cap;
    }

    memcpy(w->norm + w->norm_len, s, n);
    w->norm_len += n;
    return SD_OK;
}


/* HF's Precompiled normalizer over one segment (valid UTF-8) into w->norm. */
static sd_status
sd_t5_normalize(sd_err *err, const sd_t5_tok *tok, sd_t5_work *w,
    const uint8_t *s, size_t n)
{
    const uint8_t  *rep;
    utf8proc_int32_t state;
    uint32_t        cp, next;
    size_t          g, e, len, nlen, rep_len;

    w->norm_len = 0;
    state = 0;

    for (g = 0; g < n; g = e) {

        /* the grapheme [g, e); the break state runs on across graphemes */

        len = sd_t5_utf8_dec(s + g, n - g, &cp);
        for (e = g + len; e < n; e += nlen) {
            nlen = sd_t5_utf8_dec(s + e, n - e, &next);
            if (utf8proc_grapheme_break_stateful((utf8proc_int32_t) cp,
                                                 (utf8proc_int32_t) next,
                                                 &state))
            {
                break;
            }
            cp = next;
        }

        if (e - g < 6 && sd_t5_charsmap(tok, s + g, e - g, &rep, &rep_len)) {
            SD_TRY(sd_t5_norm_put(err, w, rep, rep_len));
            continue;
        }

        for ( /* void */ ; g < e; g += len) {
            len = sd_t5_utf8_dec(s + g, e - g, &cp);
            if (sd_t5_charsmap(tok, s + g, len, &rep, &rep_len)) {
                SD_TRY(sd_t5_norm_put(err, w, rep, rep_len));
            } else {
                SD_TRY(sd_t5_norm_put(err, w, s + g, len));
            }
        }
    }

    return SD_OK;
}


/* Rust's char::is_whitespace (Unicode White_Space), as WhitespaceSplit. */
static int
sd_t5_is_space(uint32_t cp)
{
    return (cp >= 0x09 && cp <= 0x0d) || cp == 0x20 || cp == 0x85
           || cp == 0xa0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a)
           || cp == 0x2028 || cp == 0x2029 || cp == 0x202f || cp == 0x205f
           || cp == 0x3000;
}


/*
 * Length of the special token spelled at s ("<pad>", "</s>", "<unk>",
 * "<extra_id_N>", N in 0..99 without leading zeros), 0 if none. None is a
 * prefix of another, so the leftmost match is also the longest.
 */
static size_t
sd_t5_special(const sd_t5_tok *tok, const uint8_t *s, int32_t *id)
{
    const char  *p = (const char *) s;
    int          v, k;

    if (*p != '<') {
        return 0;
    }
    if (strncmp(p, "<pad>", 5) == 0) {
        *id = tok->pad_id;
        return 5;
    }
    if (strncmp(p, "</s>", 4) == 0) {
        *id = tok->eos_id;
        return 4;
    }
    if (strncmp(p, "<unk>", 5) == 0) {
        *id = tok->unk_id;
        return 5;
    }
    if (strncmp(p, "<extra_id_", 10) != 0) {
        return 0;
    }

    v = 0;
    for (k = 10; k < 12 && p[k] >= '0' && p[k] <= '9'; k++) {
        v = v * 10 + (p[k] - '0');
    }
    if (k == 10 || p[k] != '>' || (k == 12 && p[10] == '0')) {
        return 0;
    }

    *id = tok->nspm + SD_T5_EXTRA_IDS - 1 - v;
    return (size_t) k + 1;
}


/*
 * HF Unigram::encode_optimized() over one piece s[0, n): best[i] is the
 * best score of a path ending at byte i; then backtrack, fusing unknowns.
 */
static void
sd_t5_viterbi(const sd_t5_tok *tok, sd_t5_work *w, const uint8_t *s,
    size_t n, int32_t *ids, int *count, int limit)
{
    const sd_t5_node  *nd;
    uint32_t           cp;
    int32_t            node, nrev;
    size_t             i, j, mblen;
    double             cand;
    int                single, prev_unk;

    for (i = 0; i <= n; i++) {
        w->from[i] = -1;
        w->best[i] = 0.0;
    }

    for (i = 0; i < n; i += mblen) {
        mblen = sd_t5_utf8_dec(s + i, n - i, &cp);
        single = 0;
        node = 0;

        for (j = i; j < n; j++) {
            node = sd_t5_trie_child(tok, (uint32_t) node, s[j]);
            if (node < 0) {
                break;
            }
            nd = &tok->nodes[node];
            if (nd->piece < 0) {
                continue;
            }
            cand = w->best[i] + tok->scores[nd->piece];
            if (w->from[j + 1] < 0 || cand > w->best[j + 1]) {
                w->best[j + 1] = cand;
                w->from[j + 1] = (int32_t) i;
                w->tid[j + 1] = nd->piece;
            }
            if (j + 1 - i == mblen) {
                single = 1;
            }
        }

        if (!single) {
            cand = w->best[i] + tok->unk_score;
            if (w->from[i + mblen] < 0 || cand > w->best[i + mblen]) {
                w->best[i + mblen] = cand;
                w->from[i + mblen] = (int32_t) i;
                w->tid[i + mblen] = tok->unk_id;
            }
        }
    }

    nrev = 0;
    prev_unk = 0;
    for (i = n; i > 0; i = (size_t) w->from[i]) {
        if (w->tid[i] == tok->unk_id) {
            if (!prev_unk) {
                w->rev[nrev++] = tok->unk_id;
            }
            prev_unk = 1;
        } else {
            w->rev[nrev++] = w->tid[i];
            prev_unk = 0;
        }
    }

    while (nrev > 0 && *count < limit) {
        ids[(*count)++] = w->rev[--nrev];
    }
}


/* One segment between special tokens: normalize, split, segment. */
static sd_status
sd_t5_segment(sd_err *err, const sd_t5_tok *tok, sd_t5_work *w,
    const uint8_t *s, size_t n, int32_t *ids, int *count, int limit)
{
    static const uint8_t  meta[3] = { 0xe2, 0x96, 0x81 };   /* U+2581 */
    uint32_t              cp;
    size_t                i, a, len, wl, p, q, need;

    SD_TRY(sd_t5_normalize(err, tok, w, s, n));

    need = w->norm_len + 4;
    if (need > w->lat_cap) {
        free(w->word);
        free(w->best);
        free(w->from);
        free(w->tid);
        free(w->rev);
        w->word = malloc(need);
        w->best = malloc(need * sizeof(double));
        w->from = malloc(need * sizeof(int32_t));
        w->tid = malloc(need * sizeof(int32_t));
        w->rev = malloc(need * sizeof(int32_t));
        w->lat_cap = need;
        if (w->word == NULL || w->best == NULL || w->from == NULL
            || w->tid == NULL || w->rev == NULL)
        {
            w->lat_cap = 0;
            return sd_errorf(err, SD_ERR_NOMEM, "out of memory for a T5 "
                             "lattice of %zu bytes", need);
        }
    }

    i = 0;
    while (i < w->norm_len && *count < limit) {

        /* the word [a, i): a run of non-white-space */

        len = sd_t5_utf8_dec(w->norm + i, w->norm_len - i, &cp);
        if (len == 0) {
            return sd_errorf(err, SD_ERR_INTERNAL, "T5 normalization "
                             "produced invalid UTF-8");
        }
        if (sd_t5_is_space(cp)) {
            i += len;
            continue;
        }

        for (a = i; i < w->norm_len; i += len) {
            len = sd_t5_utf8_dec(w->norm + i, w->norm_len - i, &cp);
            if (len == 0 || sd_t5_is_space(cp)) {
                break;
            }
        }

        /* Metaspace: prepend U+2581 unless there; split before each run */

        wl = 0;
        if (i - a < 3 || memcmp(w->norm + a, meta, 3) != 0) {
            memcpy(w->word, meta, 3);
            wl = 3;
        }
        memcpy(w->word + wl, w->norm + a, i - a);
        wl += i - a;

        for (p = 0; p < wl && *count < limit; p = q) {
            for (q = p + 3; q < wl; q++) {
                if (q + 3 <= wl && memcmp(w->word + q, meta, 3) == 0
                    && memcmp(w->word + q - 3, meta, 3) != 0)
                {
                    break;
                }
            }
            sd_t5_viterbi(tok, w, w->word + p, q - p, ids, count, limit);
        }
    }

    return SD_OK;
}


/* the ids of text, no "</s>": at most limit of them into ids, *count set */
static sd_status
sd_t5_tokens(sd_err *err, const sd_t5_tok *tok, const char *text,
    int32_t *ids, int limit, int *count)
{
    const uint8_t  *s = (const uint8_t *) text;
    uint32_t        cp;
    size_t          n, i, len, seg;
    int32_t         sid;
    sd_status       st = SD_OK;
    sd_t5_work      w;

    *count = 0;
    n = strlen(text);
    for (i = 0; i < n; i += len) {
        len = sd_t5_utf8_dec(s + i, n - i, &cp);
        if (len == 0) {
            return sd_errorf(err, SD_ERR_INVALID, "T5 prompt is not valid "
                             "UTF-8 at byte %zu", i);
        }
    }

    memset(&w, 0, sizeof(w));
    seg = 0;

    i = 0;

    /* "<" is ASCII, so a byte scan never stops inside a character */

    while (*count < limit) {
        len = 0;
        while (i < n && (len = sd_t5_special(tok, s + i, &sid)) == 0) {
            i++;
        }

        if (i > seg) {
            SD_TRY_GOTO(st, sd_t5_segment(err, tok, &w, s + seg, i - seg,
                                          ids, count, limit), done);
        }

        if (len == 0) {
            break;
        }
        if (*count < limit) {
            ids[(*count)++] = sid;
        }
        i += len;
        seg = i;
    }

done:
    free(w.norm);
    free(w.word);
    free(w.best);
    free(w.from);
    free(w.tid);
    free(w.rev);
    return st;
}


sd_status
sd_t5_tok_encode(sd_err *err, const sd_t5_tok *tok, const char *text,
    int32_t *ids, int max_len)
{
    int        count;
    sd_status  st;

    if (tok == NULL || text == NULL || ids == NULL || max_len < 1) {
        return sd_errorf(err, SD_ERR_INVALID, "sd_t5_tok_encode(): bad "
                         "argument (max_len %d)", max_len);
    }

    st = sd_t5_tokens(err, tok, text, ids, max_len - 1, &count);
    if (st != SD_OK) {
        return st;
    }
    ids[count++] = tok->eos_id;
    while (count < max_len) {
        ids[count++] = tok->pad_id;
    }
    return SD_OK;
}


sd_status
sd_t5_tok_tokens(sd_err *err, const sd_t5_tok *tok, const char *text,
    int32_t *ids, int cap, int *n)
{
    *n = 0;
    if (tok == NULL || text == NULL || ids == NULL || cap < 0) {
        return sd_errorf(err, SD_ERR_INVALID, "sd_t5_tok_tokens(): bad "
                         "argument (cap %d)", cap);
    }
    return sd_t5_tokens(err, tok, text, ids, cap, n);
}


int32_t
sd_t5_tok_eos(const sd_t5_tok *tok)
{
    return tok->eos_id;
}


int32_t
sd_t5_tok_pad(const sd_t5_tok *tok)
{
    return tok->pad_id;
}
