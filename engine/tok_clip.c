/*
 * tok_clip.c: the CLIP byte-level BPE tokenizer, exact to the ids of
 * Hugging Face tokenizers' CLIPTokenizerFast for a vocab.json + merges.txt
 * folder.
 *
 * One encode call follows the reference pipeline in its order:
 *   1. special added tokens (bos, eos, unk, pad and any other the
 *      tokenizer_config.json names) are split out of the raw text first,
 *      leftmost-longest; so "!" is an added token (id 0) where it is the
 *      pad token, as in SD3.5's tokenizer_2;
 *   2. each remaining segment is normalized: NFC, "\s+" -> " ", lower-case
 *      char by char as Rust's char::to_lowercase (full mapping);
 *   3. split with 's|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+;
 *      the text between matches is whitespace and is dropped (so the "\s+"
 *      replacement and leading/trailing stripping need no extra work);
 *   4. each piece's UTF-8 bytes become GPT-2 bytes_to_unicode symbols, the
 *      last one suffixed "</w>", and are merged lowest rank first (leftmost
 *      on ties), as tokenizers' Word::merge_all does;
 *   5. at most max_len - 2 tokens are kept, then BOS ... EOS and padding.
 *
 * Invariant: a loaded sd_clip_tok is never written again; encode keeps its
 * scratch in per-call allocations, so several threads may share one.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cJSON.h>
#include <utf8proc.h>

#include "tokenizer.h"


#define SD_CLIP_EOW          "</w>"
#define SD_CLIP_EOW_LEN      4
#define SD_CLIP_MAX_ADDED    64
#define SD_CLIP_MAX_TOKEN    1024   /* bytes of one vocabulary string */
#define SD_CLIP_MAX_ENTRIES  (1 << 26)  /* tokens or merges */

/* character classes of the split pattern */
#define SD_CLIP_SPACE        0      /* \s: Unicode White_Space */
#define SD_CLIP_LETTER       1      /* \p{L} */
#define SD_CLIP_NUMBER       2      /* \p{N} */
#define SD_CLIP_OTHER        3      /* [^\s\p{L}\p{N}] */


typedef struct {
    uint32_t        off;            /* into strs */
    uint32_t        len;
    int32_t         id;             /* -1: empty slot */
} sd_clip_vslot;


typedef struct {
    uint64_t        key;            /* left id << 32 | right id */
    int32_t         rank;
    int32_t         id;             /* merged token; -1: empty slot */
} sd_clip_mslot;


typedef struct {
    char           *text;
    size_t          len;
    int32_t         id;
} sd_clip_added;


struct sd_clip_tok {
    char           *strs;           /* vocabulary strings, back to back */
    sd_clip_vslot  *vocab;
    uint32_t        vocab_mask;
    int32_t         vocab_size;     /* max id + 1: where added tokens go */
    sd_clip_mslot  *merges;
    uint32_t        merges_mask;
    int32_t         byte_id[256];   /* a byte's symbol; -1: not in vocab */
    int32_t         byte_eow_id[256];   /* the same with "</w>" */
    sd_clip_added   added[SD_CLIP_MAX_ADDED];
    int             nadded;
    int32_t         bos;
    int32_t         eos;
    int32_t         pad;
    int32_t         unk;            /* -1: none */
};


/* a BPE symbol: a doubly linked list over the piece's bytes */
typedef struct {
    int32_t         id;
    int32_t         prev;
    int32_t         next;           /* -1: last */
    int32_t         alive;
} sd_clip_sym;


typedef struct {
    int32_t         rank;
    int32_t         pos;
    int32_t         id;
} sd_clip_merge;


/* per-call scratch; ids points into the caller's output */
typedef struct {
    int32_t        *ids;
    int             n;
    int             cap;
    unsigned char  *bytes;
    sd_clip_sym    *syms;
    sd_clip_merge  *heap;
    size_t          sym_cap;        /* bytes and syms; heap is 3x */
} sd_clip_work;


static uint32_t sd_clip_hash(const char *s, size_t len);
static uint32_t sd_clip_hash_pair(uint64_t key);
static int32_t sd_clip_vocab_find(const sd_clip_tok *tok, const char *s,
    size_t len);
static int sd_clip_merge_find(const sd_clip_tok *tok, int32_t a, int32_t b,
    int32_t *rank, int32_t *id);
static uint32_t sd_clip_table_size(size_t n);
static sd_status sd_clip_load_vocab(sd_err *err, sd_clip_tok *tok,
    const char *path);
static sd_status sd_clip_load_merges(sd_err *err, sd_clip_tok *tok,
    const char *path);
static void sd_clip_init_bytes(sd_clip_tok *tok);
static sd_status sd_clip_load_config(sd_err *err, sd_clip_tok *tok,
    const char *path);
static sd_status sd_clip_config_token(sd_err *err, sd_clip_tok *tok,
    const char *path, const cJSON *v, int32_t id, int32_t *out);
static sd_status sd_clip_add(sd_err *err, sd_clip_tok *tok, const char *text,
    int32_t id, int32_t *out);
static const sd_clip_added *sd_clip_match_added(const sd_clip_tok *tok,
    const char *s, size_t n);
static sd_status sd_clip_segment(sd_err *err, const sd_clip_tok *tok,
    sd_clip_work *w, const char *s, size_t len);
static int sd_clip_class(int32_t c);
static size_t sd_clip_contraction(const int32_t *cps, size_t i, size_t n);
static sd_status sd_clip_piece(sd_err *err, const sd_clip_tok *tok,
    sd_clip_work *w, const int32_t *cps, size_t n);
static sd_status sd_clip_bpe(sd_err *err, const sd_clip_tok *tok,
    sd_clip_work *w, size_t n);
static int sd_clip_merge_less(const sd_clip_merge *a,
    const sd_clip_merge *b);
static void sd_clip_heap_push(sd_clip_merge *heap, size_t *n,
    sd_clip_merge m);
static sd_clip_merge sd_clip_heap_pop(sd_clip_merge *heap, size_t *n);
static sd_status sd_clip_tokens(sd_err *err, const sd_clip_tok *tok,
    const char *text, int32_t *ids, int cap, int *n);


sd_status
sd_clip_tok_load(sd_err *err, const char *dir, sd_clip_tok **out)
{
    char          path[4096];
    sd_status     st;
    sd_clip_tok  *tok;

    *out = NULL;

    tok = sd_calloc(err, 1, sizeof(sd_clip_tok), "clip tokenizer");
    if (tok == NULL) {
        return SD_ERR_NOMEM;
    }
    tok->unk = -1;

    SD_TRY_GOTO(st, sd_path_join(err, path, sizeof(path), dir, "vocab.json"),
                fail);
    SD_TRY_GOTO(st, sd_clip_load_vocab(err, tok, path), fail);

    SD_TRY_GOTO(st, sd_path_join(err, path, sizeof(path), dir, "merges.txt"),
                fail);
    SD_TRY_GOTO(st, sd_clip_load_merges(err, tok, path), fail);

    sd_clip_init_bytes(tok);

    SD_TRY_GOTO(st, sd_path_join(err, path, sizeof(path), dir,
                                 "tokenizer_config.json"), fail);
    SD_TRY_GOTO(st, sd_clip_load_config(err, tok, path), fail);

    *out = tok;
    return SD_OK;

fail:
    sd_clip_tok_free(tok);
    return st;
}


void
sd_clip_tok_free(sd_clip_tok *tok)
{
    int  i;

    if (tok == NULL) {
        return;
    }
    for (i = 0; i < tok->nadded; i++) {
        free(tok->added[i].text);
    }
    free(tok->strs);
    free(tok->vocab);
    free(tok->merges);
    free(tok);
}


int32_t
sd_clip_tok_eos(const sd_clip_tok *tok)
{
    return tok->eos;
}


/* the ids of text, no BOS / EOS: at most cap of them into ids, *n set */
static sd_status
sd_clip_tokens(sd_err *err, const sd_clip_tok *tok, const char *text,
    int32_t *ids, int cap, int *n)
{
    size_t                len, pos, start;
    sd_status             st;
    sd_clip_work          w;
    const sd_clip_added  *a;

    memset(&w, 0, sizeof(w));
    w.ids = ids;
    w.cap = cap;
    st = SD_OK;

    len = strlen(text);
    pos = 0;

    while (pos < len && w.n < w.cap) {

        /* leftmost-longest added token at or after pos */
        a = NULL;
        for (start = pos; start < len; start++) {
            a = sd_clip_match_added(tok, text + start, len - start);
            if (a != NULL) {
                break;
            }
        }

        if (start > pos) {
            st = sd_clip_segment(err, tok, &w, text + pos, start - pos);
            if (st != SD_OK) {
                goto done;
            }
        }

        if (a == NULL) {
            break;
        }
        if (w.n < w.cap) {
            w.ids[w.n++] = a->id;
        }
        pos = start + a->len;
    }

done:
    *n = w.n;
    free(w.bytes);
    free(w.syms);
    free(w.heap);
    return st;
}


sd_status
sd_clip_tok_encode(sd_err *err, const sd_clip_tok *tok, const char *text,
    int32_t *ids, int max_len)
{
    int        i, n;
    sd_status  st;

    if (tok == NULL || text == NULL || ids == NULL || max_len < 2) {
        return sd_errorf(err, SD_ERR_INVALID, "clip tokenizer: bad "
                         "arguments (max_len %d, at least 2)", max_len);
    }

    st = sd_clip_tokens(err, tok, text, ids + 1, max_len - 2, &n);
    if (st != SD_OK) {
        return st;
    }

    ids[0] = tok->bos;
    ids[1 + n] = tok->eos;
    for (i = 2 + n; i < max_len; i++) {
        ids[i] = tok->pad;
    }
    return SD_OK;
}


sd_status
sd_clip_tok_tokens(sd_err *err, const sd_clip_tok *tok, const char *text,
    int32_t *ids, int cap, int *n)
{
    *n = 0;
    if (tok == NULL || text == NULL || ids == NULL || cap < 0) {
        return sd_errorf(err, SD_ERR_INVALID, "clip tokenizer: bad "
                         "arguments (cap %d)", cap);
    }
    return sd_clip_tokens(err, tok, text, ids, cap, n);
}


int32_t
sd_clip_tok_bos(const sd_clip_tok *tok)
{
    return tok->bos;
}


/* FNV-1a */
static uint32_t
sd_clip_hash(const char *s, size_t len)
{
    uint32_t  h = 2166136261u;
    size_t    i;

    for (i = 0; i < len; i++) {
        h ^= (unsigned char) s[i];
        h *= 16777619u;
    }
    return h;
}


/* the splitmix64 finalizer */
static uint32_t
sd_clip_hash_pair(uint64_t key)
{
    key ^= key >> 30;
    key *= 0xbf58476d1ce4e5b9ull;
    key ^= key >> 27;
    key *= 0x94d049bb133111ebull;
    key ^= key >> 31;
    return (uint32_t) key;
}


static int32_t
sd_clip_vocab_find(const sd_clip_tok *tok, const char *s, size_t len)
{
    uint32_t              i;
    const sd_clip_vslot  *v;

    for (i = sd_clip_hash(s, len) & tok->vocab_mask; ;
         i = (i + 1) & tok->vocab_mask)
    {
        v = &tok->vocab[i];
        if (v->id < 0) {
            return -1;
        }
        if (v->len == len && memcmp(tok->strs + v->off, s, len) == 0) {
            return v->id;
        }
    }
}


static int
sd_clip_merge_find(const sd_clip_tok *tok, int32_t a, int32_t b,
    int32_t *rank, int32_t *id)
{
    uint32_t              i;
    uint64_t              key;
    const sd_clip_mslot  *m;

    key = (uint64_t) (uint32_t) a << 32 | (uint32_t) b;

    for (i = sd_clip_hash_pair(key) & tok->merges_mask; ;
         i = (i + 1) & tok->merges_mask)
    {
        m = &tok->merges[i];
        if (m->id < 0) {
            return 0;
        }
        if (m->key == key) {
            *rank = m->rank;
            *id = m->id;
            return 1;
        }
    }
}


/* a power of two at least 2n: open addressing stays under half full */
static uint32_t
sd_clip_table_size(size_t n)
{
    uint32_t  size = 16;

    while (size < 2 * n) {
        size <<= 1;
    }
    return size;
}


static sd_status
sd_clip_load_vocab(sd_err *err, sd_clip_tok *tok, const char *path)
{
    char           *data;
    size_t          len, n, bytes, klen, off;
    uint32_t        size, i;
    cJSON          *root, *item;
    sd_status       st;
    sd_clip_vslot  *v;

    SD_TRY(sd_read_file(err, path, &data, &len));

    root = cJSON_ParseWithLength(data, len);
    free(data);
    if (root == NULL || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return sd_errorf(err, SD_ERR_FORMAT, "%s: not a JSON object", path);
    }

    n = 0;
    bytes = 0;
    cJSON_ArrayForEach(item, root) {
        n++;
        bytes += strlen(item->string);
    }

    if (n == 0 || n > SD_CLIP_MAX_ENTRIES || bytes > UINT32_MAX) {
        st = sd_errorf(err, SD_ERR_FORMAT, "%s: %zu tokens, %zu bytes",
                       path, n, bytes);
        goto done;
    }

    size = sd_clip_table_size(n);
    tok->vocab_mask = size - 1;
    tok->vocab = sd_malloc(err, size * sizeof(sd_clip_vslot), path);
    tok->strs = sd_malloc(err, bytes, path);
    if (tok->vocab == NULL || tok->strs == NULL) {
        st = SD_ERR_NOMEM;
        goto done;
    }
    for (i = 0; i < size; i++) {
        tok->vocab[i].id = -1;
    }

    off = 0;
    cJSON_ArrayForEach(item, root) {
        if (!cJSON_IsNumber(item) || item->valuedouble < 0
            || item->valuedouble >= INT32_MAX / 2
            || item->valuedouble != (double) item->valueint)
        {
            st = sd_errorf(err, SD_ERR_FORMAT, "%s: token \"%.64s\" has no "
                           "valid id", path, item->string);
            goto done;
        }

        klen = strlen(item->string);
        for (i = sd_clip_hash(item->string, klen) & tok->vocab_mask; ;
             i = (i + 1) & tok->vocab_mask)
        {
            v = &tok->vocab[i];
            if (v->id < 0) {
                memcpy(tok->strs + off, item->string, klen);
                v->off = (uint32_t) off;
                v->len = (uint32_t) klen;
                off += klen;
                break;
            }
            if (v->len == klen
                && memcmp(tok->strs + v->off, item->string, klen) == 0)
            {
                break;              /* a repeated key: the last one wins */
            }
        }
        v->id = item->valueint;
        if (v->id >= tok->vocab_size) {
            tok->vocab_size = v->id + 1;
        }
    }

    st = SD_OK;

done:
    cJSON_Delete(root);
    return st;
}


static sd_status
sd_clip_load_merges(sd_err *err, sd_clip_tok *tok, const char *path)
{
    char           *data, *line, *end, *sp, buf[SD_CLIP_MAX_TOKEN];
    size_t          len, n, llen, alen, blen;
    int32_t         a, b, id, rank;
    uint32_t        size, i, lineno;
    uint64_t        key;
    sd_status       st;
    sd_clip_mslot  *m;

    SD_TRY(sd_read_file(err, path, &data, &len));

    n = 1;
    for (line = data; (line = memchr(line, '\n', data + len - line)) != NULL;
         line++)
    {
        n++;
    }
    if (n > SD_CLIP_MAX_ENTRIES) {
        free(data);
        return sd_errorf(err, SD_ERR_FORMAT, "%s: too many lines", path);
    }

    size = sd_clip_table_size(n);
    tok->merges_mask = size - 1;
    tok->merges = sd_malloc(err, size * sizeof(sd_clip_mslot), path);
    if (tok->merges == NULL) {
        free(data);
        return SD_ERR_NOMEM;
    }
    for (i = 0; i < size; i++) {
        tok->merges[i].id = -1;
    }

    rank = 0;
    lineno = 0;
    st = SD_OK;

    for (line = data; line < data + len; line = end + 1) {
        lineno++;
        end = memchr(line, '\n', data + len - line);
        if (end == NULL) {
            end = data + len;
        }
        llen = end - line;
        if (llen > 0 && line[llen - 1] == '\r') {
            llen--;
        }
        line[llen] = '\0';

        if (llen == 0 || strncmp(line, "#version", 8) == 0) {
            continue;
        }

        sp = strchr(line, ' ');
        if (sp == NULL || sp == line || sp[1] == '\0'
            || strchr(sp + 1, ' ') != NULL)
        {
            st = sd_errorf(err, SD_ERR_FORMAT, "%s:%u: not a merge \"a b\"",
                           path, lineno);
            goto done;
        }

        alen = sp - line;
        blen = llen - alen - 1;
        if (alen + blen >= sizeof(buf)) {
            st = sd_errorf(err, SD_ERR_FORMAT, "%s:%u: merge too long",
                           path, lineno);
            goto done;
        }
        memcpy(buf, line, alen);
        memcpy(buf + alen, sp + 1, blen);

        a = sd_clip_vocab_find(tok, line, alen);
        b = sd_clip_vocab_find(tok, sp + 1, blen);
        id = sd_clip_vocab_find(tok, buf, alen + blen);
        if (a < 0 || b < 0 || id < 0) {
            st = sd_errorf(err, SD_ERR_FORMAT, "%s:%u: merge \"%.64s\" uses "
                           "a token not in vocab.json", path, lineno, line);
            goto done;
        }

        /* a repeated pair keeps the later rank, as a hash map collect does */
        key = (uint64_t) (uint32_t) a << 32 | (uint32_t) b;
        for (i = sd_clip_hash_pair(key) & tok->merges_mask; ;
             i = (i + 1) & tok->merges_mask)
        {
            m = &tok->merges[i];
            if (m->id < 0 || m->key == key) {
                break;
            }
        }
        m->key = key;
        m->rank = rank++;
        m->id = id;
    }

done:
    free(data);
    return st;
}


/* GPT-2's bytes_to_unicode: printable bytes keep their code point */
static void
sd_clip_init_bytes(sd_clip_tok *tok)
{
    int                b, n, k;
    int32_t            cp;
    utf8proc_uint8_t   buf[8];

    n = 0;
    for (b = 0; b < 256; b++) {
        if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) {
            cp = b;
        } else {
            cp = 256 + n++;
        }
        k = (int) utf8proc_encode_char(cp, buf);
        tok->byte_id[b] = sd_clip_vocab_find(tok, (char *) buf, k);
        memcpy(buf + k, SD_CLIP_EOW, SD_CLIP_EOW_LEN);
        tok->byte_eow_id[b] = sd_clip_vocab_find(tok, (char *) buf,
                                                 k + SD_CLIP_EOW_LEN);
    }
}


/*
 * Special tokens: bos, eos, unk, pad (a string or {"content": ...}), the
 * added_tokens_decoder entries and additional/extra special tokens. All are
 * matched on the raw text; lstrip/rstrip cannot change ids here because
 * whitespace never becomes a token.
 */
static sd_status
sd_clip_load_config(sd_err *err, sd_clip_tok *tok, const char *path)
{
    char          *data, *endp;
    size_t         len;
    long           id;
    cJSON         *root, *item, *list;
    int32_t        unused;
    sd_status      st;
    const cJSON   *v;
    unsigned       k;
    struct {
        const char  *key;
        const char  *dflt;
        int32_t     *out;
    } specials[] = {
        { "bos_token", "<|startoftext|>", &tok->bos },
        { "eos_token", "<|endoftext|>", &tok->eos },
        { "unk_token", "<|endoftext|>", &tok->unk },
        { "pad_token", "<|endoftext|>", &tok->pad },
    };
    static const char  *lists[] = {
        "additional_special_tokens", "extra_special_tokens"
    };

    root = NULL;

    if (access(path, F_OK) == 0) {
        SD_TRY(sd_read_file(err, path, &data, &len));
        root = cJSON_ParseWithLength(data, len);
        free(data);
        if (root == NULL || !cJSON_IsObject(root)) {
            cJSON_Delete(root);
            return sd_errorf(err, SD_ERR_FORMAT, "%s: not a JSON object",
                             path);
        }
    }

    /* explicit ids first, so that they win over vocabulary lookups */
    list = cJSON_GetObjectItemCaseSensitive(root, "added_tokens_decoder");
    cJSON_ArrayForEach(item, list) {
        id = strtol(item->string, &endp, 10);
        if (*endp != '\0' || id < 0 || id >= INT32_MAX / 2) {
            st = sd_errorf(err, SD_ERR_FORMAT, "%s: added token id \"%.32s\" "
                           "is not a number", path, item->string);
            goto done;
        }
        SD_TRY_GOTO(st, sd_clip_config_token(err, tok, path, item,
                                             (int32_t) id, &unused), done);
    }

    /* CLIPTokenizer's defaults stand in for absent or null entries */
    for (k = 0; k < sizeof(specials) / sizeof(specials[0]); k++) {
        v = cJSON_GetObjectItemCaseSensitive(root, specials[k].key);
        if (v == NULL || cJSON_IsNull(v)) {
            SD_TRY_GOTO(st, sd_clip_add(err, tok, specials[k].dflt, -1,
                                        specials[k].out), done);
        } else {
            SD_TRY_GOTO(st, sd_clip_config_token(err, tok, path, v, -1,
                                                 specials[k].out), done);
        }
    }

    for (k = 0; k < sizeof(lists) / sizeof(lists[0]); k++) {
        list = cJSON_GetObjectItemCaseSensitive(root, lists[k]);
        cJSON_ArrayForEach(item, list) {
            SD_TRY_GOTO(st, sd_clip_config_token(err, tok, path, item, -1,
                                                 &unused), done);
        }
    }

    st = SD_OK;

done:
    cJSON_Delete(root);
    return st;
}


/* v: NULL, null, "text" or {"content": "text", ...}; *out left if absent */
static sd_status
sd_clip_config_token(sd_err *err, sd_clip_tok *tok, const char *path,
    const cJSON *v, int32_t id, int32_t *out)
{
    const cJSON  *c;

    if (v == NULL || cJSON_IsNull(v)) {
        return SD_OK;
    }

    c = cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, "content")
                          : v;
    if (!cJSON_IsString(c)) {
        return sd_errorf(err, SD_ERR_FORMAT, "%s: special token \"%.32s\" "
                         "is not a string", path,
                         v->string ? v->string : "?");
    }
    if (c->valuestring[0] == '\0') {
        return SD_OK;
    }

    return sd_clip_add(err, tok, c->valuestring, id, out);
}


/* id < 0: the vocabulary's id, or the next free one past it */
static sd_status
sd_clip_add(sd_err *err, sd_clip_tok *tok, const char *text, int32_t id,
    int32_t *out)
{
    int             i;
    size_t          len;
    sd_clip_added  *a;

    len = strlen(text);

    for (i = 0; i < tok->nadded; i++) {
        if (tok->added[i].len == len
            && memcmp(tok->added[i].text, text, len) == 0)
        {
            *out = tok->added[i].id;
            return SD_OK;
        }
    }

    if (tok->nadded == SD_CLIP_MAX_ADDED) {
        return sd_errorf(err, SD_ERR_UNSUPPORTED, "clip tokenizer: more "
                         "than %d special tokens", SD_CLIP_MAX_ADDED);
    }

    if (id < 0) {
        id = sd_clip_vocab_find(tok, text, len);
    }
    if (id < 0) {
        id = tok->vocab_size;
    }
    if (id >= tok->vocab_size) {
        tok->vocab_size = id + 1;
    }

    a = &tok->added[tok->nadded];
    a->text = sd_malloc(err, len + 1, "clip special token");
    if (a->text == NULL) {
        return SD_ERR_NOMEM;
    }
    memcpy(a->text, text, len + 1);
    a->len = len;
    a->id = id;
    tok->nadded++;

    *out = id;
    return SD_OK;
}


/* the longest added token that s starts with, or NULL */
static const sd_clip_added *
sd_clip_match_added(const sd_clip_tok *tok, const char *s, size_t n)
{
    int                   i;
    const sd_clip_added  *a, *best;

    best = NULL;
    for (i = 0; i < tok->nadded; i++) {
        a = &tok->added[i];
        if (a->len <= n && (best == NULL || a->len > best->len)
            && memcmp(s, a->text, a->len) == 0)
        {
            best = a;
        }
    }
    return best;
}


/* steps 2-4 for text without added tokens */
static sd_status
sd_clip_segment(sd_err *err, const sd_clip_tok *tok, sd_clip_work *w,
    const char *s, size_t len)
{
    size_t              i, m, end, cls;
    int32_t            *cps;
    sd_status           st;
    utf8proc_ssize_t    nn, k;
    utf8proc_int32_t    cp;
    utf8proc_uint8_t   *nfc;
    unsigned char      *cl;

    nn = utf8proc_map((const utf8proc_uint8_t *) s, (utf8proc_ssize_t) len,
                      &nfc, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    if (nn < 0) {
        if (nn == UTF8PROC_ERROR_NOMEM) {
            return sd_errorf(err, SD_ERR_NOMEM, "clip tokenizer: out of "
                             "memory normalizing %zu bytes", len);
        }
        return sd_errorf(err, SD_ERR_INVALID, "clip tokenizer: prompt is "
                         "not valid UTF-8: %s", utf8proc_errmsg(nn));
    }

    /* lower-casing yields at most two code points per code point */
    cps = malloc((2 * (size_t) nn + 1) * sizeof(int32_t));
    cl = malloc(2 * (size_t) nn + 1);
    if (cps == NULL || cl == NULL) {
        st = sd_errorf(err, SD_ERR_NOMEM, "clip tokenizer: out of memory "
                       "for %zd normalized bytes", nn);
        goto done;
    }

    m = 0;
    for (i = 0; i < (size_t) nn; i += k) {
        k = utf8proc_iterate(nfc + i, nn - i, &cp);
        if (k <= 0) {
            st = sd_errorf(err, SD_ERR_INTERNAL, "clip tokenizer: NFC "
                           "output is not UTF-8");
            goto done;
        }
        if (cp == 0x130) {
            /* Rust's full mapping: İ -> i + combining dot above */
            cps[m++] = 'i';
            cps[m++] = 0x307;
        } else {
            cps[m++] = utf8proc_tolower(cp);
        }
    }
    for (i = 0; i < m; i++) {
        cl[i] = (unsigned char) sd_clip_class(cps[i]);
    }

    st = SD_OK;
    i = 0;
    while (i < m && w->n < w->cap) {
        cls = cl[i];
        if (cls == SD_CLIP_SPACE) {
            i++;
            continue;
        }

        end = sd_clip_contraction(cps, i, m);
        if (end == i) {
            end = i + 1;
            if (cls != SD_CLIP_NUMBER) {
                while (end < m && cl[end] == cls) {
                    end++;
                }
            }
        }

        st = sd_clip_piece(err, tok, w, cps + i, end - i);
        if (st != SD_OK) {
            goto done;
        }
        i = end;
    }

done:
    free(nfc);
    free(cps);
    free(cl);
    return st;
}


static int
sd_clip_class(int32_t c)
{
    switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
        return SD_CLIP_LETTER;
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
        return SD_CLIP_NUMBER;
    default:
        break;
    }

    /* White_Space */
    if ((c >= 0x09 && c <= 0x0d) || c == 0x20 || c == 0x85 || c == 0xa0
        || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028
        || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000)
    {
        return SD_CLIP_SPACE;
    }

    return SD_CLIP_OTHER;
}


/* 's|'t|'re|'ve|'m|'ll|'d at i: the end of the match, or i */
static size_t
sd_clip_contraction(const int32_t *cps, size_t i, size_t n)
{
    if (cps[i] != '\'' || i + 1 >= n) {
        return i;
    }

    switch (cps[i + 1]) {
    case 's':
    case 't':
    case 'm':
    case 'd':
        return i + 2;
    case 'r':
    case 'v':
        return (i + 2 < n && cps[i + 2] == 'e') ? i + 3 : i;
    case 'l':
        return (i + 2 < n && cps[i + 2] == 'l') ? i + 3 : i;
    default:
        return i;
    }
}


/* a piece's UTF-8 bytes into the scratch, grown to fit, then BPE */
static sd_status
sd_clip_piece(sd_err *err, const sd_clip_tok *tok, sd_clip_work *w,
    const int32_t *cps, size_t n)
{
    size_t  i, len, need;

    need = 4 * n;
    if (need > w->sym_cap) {
        free(w->bytes);
        free(w->syms);
        free(w->heap);
        w->bytes = malloc(need);
        w->syms = malloc(need * sizeof(sd_clip_sym));
        w->heap = malloc(3 * need * sizeof(sd_clip_merge));
        if (w->bytes == NULL || w->syms == NULL || w->heap == NULL) {
            w->sym_cap = 0;
            return sd_errorf(err, SD_ERR_NOMEM, "clip tokenizer: out of "
                             "memory for a %zu-character word", n);
        }
        w->sym_cap = need;
    }

    len = 0;
    for (i = 0; i < n; i++) {
        len += utf8proc_encode_char(cps[i], w->bytes + len);
    }

    return sd_clip_bpe(err, tok, w, len);
}


/*
 * Word::merge_all of tokenizers: a heap of (rank, pos) candidates, stale
 * entries skipped when the pair at pos no longer merges into the same id.
 */
static sd_status
sd_clip_bpe(sd_err *err, const sd_clip_tok *tok, sd_clip_work *w, size_t n)
{
    size_t          i, nheap;
    int32_t         id, rank, next, prev;
    sd_clip_sym    *s;
    sd_clip_merge   top, m;

    s = w->syms;
    for (i = 0; i < n; i++) {
        id = (i + 1 == n) ? tok->byte_eow_id[w->bytes[i]]
                          : tok->byte_id[w->bytes[i]];
        if (id < 0) {
            id = tok->unk;
        }
        if (id < 0) {
            return sd_errorf(err, SD_ERR_FORMAT, "clip tokenizer: byte "
                             "0x%02x not in vocab and no unk token",
                             w->bytes[i]);
        }
        s[i].id = id;
        s[i].prev = (int32_t) i - 1;
        s[i].next = (i + 1 == n) ? -1 : (int32_t) i + 1;
        s[i].alive = 1;
    }

    nheap = 0;
    for (i = 0; i + 1 < n; i++) {
        if (sd_clip_merge_find(tok, s[i].id, s[i + 1].id, &rank, &id)) {
            m.rank = rank;
            m.pos = (int32_t) i;
            m.id = id;
            sd_clip_heap_push(w->heap, &nheap, m);
        }
    }

    while (nheap > 0) {
        top = sd_clip_heap_pop(w->heap, &nheap);
        if (!s[top.pos].alive || s[top.pos].next < 0) {
            continue;
        }
        next = s[top.pos].next;
        if (!sd_clip_merge_find(tok, s[top.pos].id, s[next].id, &rank, &id)
            || id != top.id)
        {
            continue;
        }

        s[top.pos].id = top.id;
        s[top.pos].next = s[next].next;
        s[next].alive = 0;
        if (s[next].next >= 0) {
            s[s[next].next].prev = top.pos;
        }

        prev = s[top.pos].prev;
        if (prev >= 0
            && sd_clip_merge_find(tok, s[prev].id, s[top.pos].id, &rank, &id))
        {
            m.rank = rank;
            m.pos = prev;
            m.id = id;
            sd_clip_heap_push(w->heap, &nheap, m);
        }

        next = s[top.pos].next;
        if (next >= 0
            && sd_clip_merge_find(tok, s[top.pos].id, s[next].id, &rank, &id))
        {
            m.rank = rank;
            m.pos = top.pos;
            m.id = id;
            sd_clip_heap_push(w->heap, &nheap, m);
        }
    }

    for (i = 0; i < n && w->n < w->cap; i++) {
        if (s[i].alive) {
            w->ids[w->n++] = s[i].id;
        }
    }

    return SD_OK;
}


static int
sd_clip_merge_less(const sd_clip_merge *a, const sd_clip_merge *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}


/* a binary min-heap on (rank, pos); its capacity is 3n: see sd_clip_bpe */
static void
sd_clip_heap_push(sd_clip_merge *heap, size_t *n, sd_clip_merge m)
{
    size_t  i, parent;

    i = (*n)++;
    while (i > 0) {
        parent = (i - 1) / 2;
        if (!sd_clip_merge_less(&m, &heap[parent])) {
            break;
        }
        heap[i] = heap[parent];
        i = parent;
    }
    heap[i] = m;
}


static sd_clip_merge
sd_clip_heap_pop(sd_clip_merge *heap, size_t *n)
{
    size_t         i, child;
    sd_clip_merge  top, last;

    top = heap[0];
    last = heap[--(*n)];
    i = 0;
    for ( ;; ) {
        child = 2 * i + 1;
        if (child >= *n) {
            break;
        }
        if (child + 1 < *n && sd_clip_merge_less(&heap[child + 1],
                                                 &heap[child]))
        {
            child++;
        }
        if (!sd_clip_merge_less(&heap[child], &last)) {
            break;
        }
        heap[i] = heap[child];
        i = child;
    }
    if (*n > 0) {
        heap[i] = last;
    }
    return top;
}
