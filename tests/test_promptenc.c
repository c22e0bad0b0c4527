/*
 * test_promptenc.c: A1111 1.10's SD3 conditioning (engine/promptenc.h) on
 * the tiny Large model's tokenizers and text encoders (the real CLIP
 * vocabulary: "cat</w>" 2368, "dog</w>" 1929, ",</w>" 267).
 *
 * Tokens: chunk boundaries and multipliers written out from
 * sd_hijack_clip's rules (75 a chunk, BREAK, the comma backtrack of 20),
 * T5's ids in both layouts. Conditioning: a plain prompt is exactly
 * sd_cond_encode_skip()'s; "(cat:1.5) dog" is "cat dog"'s CLIP rows times
 * the weights, scaled back to the unweighted mean, computed here from the
 * unweighted context; chunks are the encodings of their own texts; padding
 * with empty chunks; the engine's prompt and negative of different chunk
 * counts.
 */

#include <sys/stat.h>

#include "t.h"
#include "golden.h"
#include "promptenc.h"
#include "sd.h"


#define CAT    2368
#define DOG    1929
#define COMMA  267
#define BOS    49406
#define EOS    49407


static float *
host(const sd_tensor *t)
{
    sd_err  err = {0};
    float  *p = malloc(sizeof(float) * (size_t) sd_numel(t));

    if (p && sd_tensor_download(&err, t, p) != SD_OK) {
        free(p);
        p = NULL;
    }
    return p;
}


/* "w w w ..." n times */
static char *
words(const char *w, int n, const char *tail)
{
    size_t  len = (strlen(w) + 1) * n + strlen(tail) + 1;
    char   *s = malloc(len), *p = s;
    int     i;

    for (i = 0; i < n; i++) {
        p += sprintf(p, "%s%s", i ? " " : "", w);
    }
    strcpy(p, tail);
    return s;
}


/* chunk k of t is BOS, exp[0..n), EOS to the end; multipliers m or 1 */
static int
chunk_is(const sd_prompt_tokens *t, int k, const int32_t *exp, int n,
    const float *m)
{
    const int32_t  *ids = t->ids + k * t->chunk_len;
    const float    *mu = t->mult + k * t->chunk_len;
    int             i;

    if (ids[0] != BOS || mu[0] != 1.0f) {
        return 0;
    }
    for (i = 1; i < t->chunk_len; i++) {
        int32_t  want = i - 1 < n ? exp[i - 1] : EOS;
        float    wm = i - 1 < n && m ? m[i - 1] : 1.0f;

        if (ids[i] != want || mu[i] != wm) {
            printf("  chunk %d position %d: %d x %g, want %d x %g\n", k, i,
                   ids[i], mu[i], want, wm);
            return 0;
        }
    }
    return 1;
}


static void
check_tokens(sd_model *m)
{
    sd_prompt_tokens  t;
    sd_err            err = {0};
    int32_t           exp[80], ref[256];
    float             mu[80];
    char             *s;
    int               i;

    /* emphasis: one chunk, the weight on "cat" only */
    T_CHECK(sd_prompt_tokenize(&err, m->tok_l, m->tok_t5, "(cat:1.5) dog",
                               77, 256, &t) == SD_OK, "%s", err.msg);
    exp[0] = CAT; exp[1] = DOG;
    mu[0] = 1.5f; mu[1] = 1.0f;
    T_CHECK(t.n_chunks == 1 && t.token_count == 2
            && chunk_is(&t, 0, exp, 2, mu), "(cat:1.5) dog: %d chunks, "
            "count %d", t.n_chunks, t.token_count);
    /* T5: the runs' tokens as "cat dog" gives them, </s>, pad, 256 */
    sd_t5_tok_encode(&err, m->tok_t5, "cat dog", ref, 256);
    T_CHECK(t.t5_len == 256 && memcmp(t.ids_t5, ref, sizeof(ref)) == 0,
            "T5 ids of (cat:1.5) dog");
    sd_prompt_tokens_free(&t);

    /* a plain prompt: the ids of the reference tokenizer call */
    T_CHECK(sd_prompt_tokenize(&err, m->tok_l, m->tok_t5, "a photo of an "
                               "astronaut riding a horse on mars", 77, 256,
                               &t) == SD_OK, "%s", err.msg);
    sd_clip_tok_encode(&err, m->tok_l, "a photo of an astronaut riding a "
                       "horse on mars", ref, 77);
    T_CHECK(t.n_chunks == 1 && memcmp(t.ids, ref, 77 * 4) == 0,
            "plain prompt: CLIP ids");
    sd_prompt_tokens_free(&t);

    /* BREAK: "cat" alone in chunk 0, "dog" in chunk 1; count 75 + 1 */
    T_CHECK(sd_prompt_tokenize(&err, m->tok_l, m->tok_t5, "cat BREAK dog",
                               77, 0, &t) == SD_OK, "%s", err.msg);
    exp[0] = CAT;
    T_CHECK(t.n_chunks == 2 && t.token_count == 76
            && chunk_is(&t, 0, exp, 1, NULL), "BREAK: chunk 0 (%d chunks, "
            "count %d)", t.n_chunks, t.token_count);
    exp[0] = DOG;
    T_CHECK(t.n_chunks == 2 && chunk_is(&t, 1, exp, 1, NULL),
            "BREAK: chunk 1");
    /* A1111's T5: 77 x chunks, BREAK dropped */
    sd_t5_tok_encode(&err, m->tok_t5, "cat dog", ref, 154);
    T_CHECK(t.t5_len == 154 && memcmp(t.ids_t5, ref, 154 * 4) == 0,
            "BREAK: T5 of 154 ids, the BREAK gone");
    sd_prompt_tokens_free(&t);

    /* 80 tokens: 75 in chunk 0, 5 in chunk 1; T5 cut at 154 (A1111: no
       </s> kept) or at 256 */
    s = words("cat", 80, "");
    T_CHECK(sd_prompt_tokenize(&err, m->tok_l, m->tok_t5, s, 77, 0, &t)
            == SD_OK, "%s", err.msg);
    for (i = 0; i < 75; i++) {
        exp[i] = CAT;
    }
    T_CHECK(t.n_chunks == 2 && t.token_count == 80
            && chunk_is(&t, 0, exp, 75, NULL) && chunk_is(&t, 1, exp, 5,
                                                          NULL),
            "80 tokens: %d chunks, count %d", t.n_chunks, t.token_count);
    sd_t5_tok_encode(&err, m->tok_t5, s, ref, 154);
    T_CHECK(t.t5_len == 154 && memcmp(t.ids_t5, ref, 153 * 4) == 0,
            "80 tokens: T5's first 153 ids");
    sd_prompt_tokens_free(&t);
    free(s);

    /* the comma backtrack: 70 cat, ",", 10 dog. At the 76th token the
       comma is 5 back (<= 20): chunk 0 ends after it, its 4 dogs move on */
    s = words("cat", 70, ", dog dog dog dog dog dog dog dog dog dog");
    T_CHECK(sd_prompt_tokenize(&err, m->tok_l, m->tok_t5, s, 77, 256, &t)
            == SD_OK, "%s", err.msg);
    for (i = 0; i < 70; i++) {
        exp[i] = CAT;
    }
    exp[70] = COMMA;
    T_CHECK(t.n_chunks == 2 && chunk_is(&t, 0, exp, 71, NULL),
            "backtrack: chunk 0 is 70 cat and the comma (%d chunks)",
            t.n_chunks);
    for (i = 0; i < 10; i++) {
        exp[i] = DOG;
    }
    T_CHECK(t.n_chunks == 2 && chunk_is(&t, 1, exp, 10, NULL)
            && t.token_count == 85, "backtrack: chunk 1 is the 10 dogs "
            "(count %d)", t.token_count);
    sd_prompt_tokens_free(&t);
    free(s);

    /* 45 cat, ",", 35 dog: the comma 30 back is too far; chunk 0 is full
       at 75 (29 dogs), chunk 1 holds 6 */
    s = words("cat", 45, ", dog dog dog dog dog dog dog dog dog dog dog dog "
              "dog dog dog dog dog dog dog dog dog dog dog dog dog dog dog "
              "dog dog dog dog dog dog dog dog");
    T_CHECK(sd_prompt_tokenize(&err, m->tok_l, m->tok_t5, s, 77, 256, &t)
            == SD_OK, "%s", err.msg);
    T_CHECK(t.n_chunks == 2 && t.ids[75] == DOG && t.ids[77 + 1] == DOG
            && t.ids[77 + 6] == DOG && t.ids[77 + 7] == EOS,
            "no backtrack past 20: 75 + 6");
    sd_prompt_tokens_free(&t);
    free(s);

    /* 2000 words: 16 chunks kept, the rest dropped */
    s = words("cat", 2000, "");
    T_CHECK(sd_prompt_tokenize(&err, m->tok_l, m->tok_t5, s, 77, 256, &t)
            == SD_OK && t.n_chunks == SD_PROMPT_MAX_CHUNKS
            && t.token_count == 75 * SD_PROMPT_MAX_CHUNKS
            && t.ids[77 * 15 + 75] == CAT, "2000 words: %d chunks",
            t.n_chunks);
    sd_prompt_tokens_free(&t);
    free(s);

    /* the empty prompt: one chunk of BOS and EOS */
    T_CHECK(sd_prompt_tokenize(&err, m->tok_l, NULL, "", 77, 0, &t) == SD_OK
            && t.n_chunks == 1 && t.token_count == 0
            && chunk_is(&t, 0, exp, 0, NULL) && t.ids_t5 == NULL,
            "empty prompt");
    sd_prompt_tokens_free(&t);
}


/* rows [r0, r0 + n) of a equal rows [s0, s0 + n) of b (width j), within
   tol relative to b's largest value */
static int
rows_match(const float *a, int64_t r0, const float *b, int64_t s0,
    int64_t n, int64_t j, double tol)
{
    double  d = 0, mx = 1e-30;
    int64_t i;

    for (i = 0; i < n * j; i++) {
        double  x = a[r0 * j + i], y = b[s0 * j + i];

        d = fabs(x - y) > d ? fabs(x - y) : d;
        mx = fabs(y) > mx ? fabs(y) : mx;
    }
    if (d > tol * mx) {
        printf("  max |diff| %g of %g\n", d, mx);
    }
    return d <= tol * mx;
}


static void
check_cond(sd_model *m)
{
    sd_cond   w, u, ref, a, b, p, e;
    sd_err    err = {0};
    int64_t   j = m->joint_dim, r, x, T = m->t5_len;
    float    *hw, *hu, *hr, *ha, *hb, *hp, *he, *exp;
    double    sz = 0, szw = 0;
    char     *s;

    /* a plain prompt: the reference layout, value for value */
    T_CHECK(sd_cond_encode_prompt(&err, m, "a photo of an astronaut riding "
                                  "a horse on mars", 1, T, &a) == SD_OK
            && sd_cond_encode_skip(&err, m, "a photo of an astronaut riding "
                                   "a horse on mars", 1, &ref) == SD_OK,
            "%s", err.msg);
    ha = host(a.context);
    hr = host(ref.context);
    T_CHECK(sd_numel(a.context) == sd_numel(ref.context)
            && memcmp(ha, hr, sizeof(float) * sd_numel(a.context)) == 0,
            "plain prompt: the context of sd_cond_encode_skip");
    free(ha);
    free(hr);
    ha = host(a.pooled);
    hr = host(ref.pooled);
    T_CHECK(memcmp(ha, hr, sizeof(float) * sd_numel(a.pooled)) == 0,
            "plain prompt: pooled");
    free(ha);
    free(hr);
    sd_cond_free(&a);
    sd_cond_free(&ref);

    /* emphasis: z' = z w sum(z) / sum(z w), over the 77 CLIP rows */
    T_CHECK(sd_cond_encode_prompt(&err, m, "(cat:1.5) dog", 1, T, &w)
            == SD_OK && sd_cond_encode_prompt(&err, m, "cat dog", 1, T, &u)
            == SD_OK, "%s", err.msg);
    hw = host(w.context);
    hu = host(u.context);
    exp = malloc(sizeof(float) * sd_numel(u.context));
    for (r = 0; r < 77; r++) {
        for (x = 0; x < j; x++) {
            sz += hu[r * j + x];
            szw += hu[r * j + x] * (r == 1 ? 1.5 : 1.0);
        }
    }
    memcpy(exp, hu, sizeof(float) * sd_numel(u.context));
    for (r = 0; r < 77; r++) {
        for (x = 0; x < j; x++) {
            exp[r * j + x] = (float) (hu[r * j + x] * (r == 1 ? 1.5 : 1.0)
                                      * (sz / szw));
        }
    }
    T_CHECK(sd_numel(w.context) == (77 + T) * j
            && rows_match(hw, 0, exp, 0, 77, j, t_tol(1e-6, 2e-2)),
            "(cat:1.5): the CLIP rows weighted, the mean restored");
    T_CHECK(rows_match(hw, 77, hu, 77, T, j, 0), "(cat:1.5): T5 unweighted");
    T_CHECK(!rows_match(hw, 0, hu, 0, 77, j, 1e-3), "(cat:1.5) differs "
            "from cat");
    free(hw);
    free(exp);
    hw = host(w.pooled);
    free(hu);
    hu = host(u.pooled);
    T_CHECK(memcmp(hw, hu, sizeof(float) * sd_numel(u.pooled)) == 0,
            "(cat:1.5): pooled unweighted");
    free(hw);
    free(hu);
    sd_cond_free(&w);

    /* BREAK: each chunk is its own text's chunk 0 */
    T_CHECK(sd_cond_encode_prompt(&err, m, "a cat BREAK a dog", 1, T, &a)
            == SD_OK && sd_cond_encode_prompt(&err, m, "a cat", 1, T, &b)
            == SD_OK && sd_cond_encode_prompt(&err, m, "a dog", 1, T, &p)
            == SD_OK, "%s", err.msg);
    ha = host(a.context);
    hb = host(b.context);
    hp = host(p.context);
    T_CHECK(a.chunks == 2 && sd_numel(a.context) == (154 + T) * j
            && rows_match(ha, 0, hb, 0, 77, j, t_tol(1e-6, 2e-2))
            && rows_match(ha, 77, hp, 0, 77, j, t_tol(1e-6, 2e-2)),
            "BREAK: (1, 154 + %lld, %lld), chunk by chunk", (long long) T,
            (long long) j);
    free(ha);
    free(hp);
    sd_cond_free(&a);
    sd_cond_free(&p);

    /* padding with the empty prompt's chunk */
    T_CHECK(sd_cond_encode_prompt(&err, m, "", 1, T, &e) == SD_OK
            && sd_cond_pad_chunks(&err, m, &b, &e, 3, &p) == SD_OK,
            "%s", err.msg);
    hp = host(p.context);
    he = host(e.context);
    T_CHECK(sd_cond_chunks(m, &p) == 3
            && sd_numel(p.context) == (231 + T) * j
            && rows_match(hp, 0, hb, 0, 77, j, 0)
            && rows_match(hp, 77, he, 0, 77, j, 0)
            && rows_match(hp, 154, he, 0, 77, j, 0)
            && rows_match(hp, 231, hb, 77, T, j, 0),
            "padded to 3 chunks: the prompt, 2 empty chunks, its T5 rows");
    free(hb);
    free(hp);
    free(he);
    sd_cond_free(&b);
    sd_cond_free(&p);
    sd_cond_free(&e);

    /* 80 words: chunk 0 is 75 words' chunk, chunk 1 is 5 words' */
    s = words("cat", 80, "");
    T_CHECK(sd_cond_encode_prompt(&err, m, s, 1, T, &a) == SD_OK, "%s",
            err.msg);
    free(s);
    s = words("cat", 75, "");
    T_CHECK(sd_cond_encode_prompt(&err, m, s, 1, T, &b) == SD_OK, "%s",
            err.msg);
    free(s);
    s = words("cat", 5, "");
    T_CHECK(sd_cond_encode_prompt(&err, m, s, 1, T, &p) == SD_OK, "%s",
            err.msg);
    free(s);
    ha = host(a.context);
    hb = host(b.context);
    hp = host(p.context);
    T_CHECK(a.chunks == 2 && rows_match(ha, 0, hb, 0, 77, j, t_tol(1e-6, 2e-2))
            && rows_match(ha, 77, hp, 0, 77, j, t_tol(1e-6, 2e-2)),
            "80 tokens: two chunks of 75 and 5");
    free(ha);
    free(hb);
    free(hp);
    ha = host(a.pooled);
    hb = host(b.pooled);
    /* chunk 0's pooled: the same values (the GPU's products over two
       chunks round differently from one chunk's, so not the same bits) */
    T_CHECK(sd_numel(a.pooled) == sd_numel(b.pooled)
            && rows_match(ha, 0, hb, 0, 1, sd_numel(a.pooled),
                          t_tol(1e-6, 2e-2)),
            "80 tokens: pooled from chunk 0");
    free(ha);
    free(hb);
    sd_cond_free(&a);
    sd_cond_free(&b);
    sd_cond_free(&p);

    /* A1111's T5 layout: 77 T5 rows for one chunk */
    T_CHECK(sd_cond_encode_prompt(&err, m, "cat dog", 1, 0, &a) == SD_OK
            && sd_numel(a.context) == 154 * j, "A1111 T5 layout: (1, 154, "
            "%lld)", (long long) j);
    ha = host(a.context);
    hu = host(u.context);
    T_CHECK(rows_match(ha, 0, hu, 0, 77, j, 0), "A1111 T5 layout: the same "
            "CLIP rows");
    free(ha);
    free(hu);
    sd_cond_free(&a);
    sd_cond_free(&u);
}


static int
generate_neg(sd_engine *e, const char *prompt, const char *negative,
    int steps, sd_result *res)
{
    sd_request  r;
    char        msg[512];

    sd_request_init(&r);
    r.prompt = prompt;
    r.negative_prompt = negative;
    r.width = r.height = 64;
    r.steps = steps;
    r.seed = 7;
    r.cfg_scale = 4.0f;
    if (sd_generate(e, &r, NULL, NULL, NULL, res, msg, sizeof(msg))
        != SD_OK || res->n_images != 1)
    {
        printf("  generate \"%s\": %s\n", prompt, msg);
        return 0;
    }
    return 1;
}


static int
generate(sd_engine *e, const char *prompt, sd_result *res)
{
    return generate_neg(e, prompt, "", 2, res);
}


static int
same_rgb(const sd_result *a, const sd_result *b)
{
    return memcmp(a->images[0].rgb, b->images[0].rgb, 64 * 64 * 3) == 0;
}


/* at most 0.1 % of the values off, by 1: the per-step modulations of a
   segment come from products of other row counts (rounding) */
static int
near_rgb(const sd_result *a, const sd_result *b)
{
    int  i, off = 0;

    for (i = 0; i < 64 * 64 * 3; i++) {
        int  d = abs(a->images[0].rgb[i] - b->images[0].rgb[i]);

        if (d > 1) {
            return 0;
        }
        off += d;
    }
    return off <= 64 * 64 * 3 / 1000;
}


/*
 * Prompt editing through the engine, 4 steps: [cat:dog:0.5] is cat for
 * steps 0-2 and dog for step 3, unlike either; an edit to the same text
 * (two segments) and an alternation of one text (three segments) give
 * the plain prompt's image (within rounding); [cat:dog:0] is dog
 * throughout, exactly;
 * the negative prompt edited, and a 2-chunk entry beside 1-chunk ones.
 */
static void
check_editing(sd_engine *e)
{
    const char  *p[9] = { "cat", "dog", "[cat:dog:0.5]", "[cat:cat:0.5]",
                          "[cat|cat]", "[cat:dog:0]", "cat", "cat",
                          "[cat:dog BREAK red:0.5]" };
    const char  *n[9] = { "", "", "", "", "", "", "[ugly:blurry:0.5]",
                          "ugly", "" };
    sd_result    res[9];
    int          i, ok = 1;

    memset(res, 0, sizeof(res));
    for (i = 0; i < 9; i++) {
        ok &= generate_neg(e, p[i], n[i], 4, &res[i]);
    }
    T_CHECK(ok, "generate with prompt editing");
    if (ok) {
        T_CHECK(!same_rgb(&res[2], &res[0]) && !same_rgb(&res[2], &res[1]),
                "[cat:dog:0.5] differs from cat and from dog");
        T_CHECK(near_rgb(&res[3], &res[0]), "[cat:cat:0.5] is cat");
        T_CHECK(near_rgb(&res[4], &res[0]), "[cat|cat] is cat");
        T_CHECK(same_rgb(&res[5], &res[1]), "[cat:dog:0] is dog");
        T_CHECK(!same_rgb(&res[6], &res[7]) && !same_rgb(&res[6], &res[0]),
                "an edited negative prompt changes the image");
        T_CHECK(!same_rgb(&res[8], &res[2]), "an entry of 2 chunks");
    }
    for (i = 0; i < 9; i++) {
        sd_result_free(&res[i]);
    }
}


/*
 * Through the engine, with and without the text cache: a 2-chunk prompt
 * against a 1-chunk negative (padded), the weight and the chunk change
 * the image.
 */
static void
check_engine(const char *dir)
{
    sd_engine_config  cfg;
    sd_engine        *e = NULL, *ec = NULL;
    sd_result         res[4];
    const char       *prompts[3] = { "cat dog", "(cat:1.5) dog",
                                     "cat dog BREAK a red cube" };
    char              msg[512];
    size_t            n = 64 * 64 * 3;
    int               i, ok = 1;

    memset(res, 0, sizeof(res));
    sd_engine_config_init(&cfg);
    cfg.model_dir = dir;
    if (sd_engine_open(&cfg, &e, msg, sizeof(msg)) != SD_OK) {
        T_CHECK(0, "engine: %s", msg);
        return;
    }
    cfg.text_cache = 4;
    if (sd_engine_open(&cfg, &ec, msg, sizeof(msg)) != SD_OK) {
        T_CHECK(0, "engine: %s", msg);
        sd_engine_close(e);
        return;
    }
    for (i = 0; i < 3; i++) {
        ok &= generate(e, prompts[i], &res[i]);
    }
    ok &= generate(ec, prompts[2], &res[3]);
    T_CHECK(ok, "generate");
    if (ok) {
        T_CHECK(memcmp(res[0].images[0].rgb, res[1].images[0].rgb, n) != 0,
                "the weight changes the image");
        T_CHECK(memcmp(res[0].images[0].rgb, res[2].images[0].rgb, n) != 0,
                "the second chunk changes the image");
        T_CHECK(memcmp(res[2].images[0].rgb, res[3].images[0].rgb, n) == 0,
                "2 chunks and a padded negative: the same with the cache");
    }
    for (i = 0; i < 4; i++) {
        sd_result_free(&res[i]);
    }
    check_editing(ec);          /* 4 entries: texts evicted and encoded
                                   again while a request holds copies */
    sd_engine_close(e);
    sd_engine_close(ec);
}


int
main(void)
{
    char         dir[4096];
    struct stat  st;
    sd_backend  *be = NULL;
    sd_model    *m = NULL;
    sd_err       err = {0};

    snprintf(dir, sizeof(dir), "%s/tiny-sd35-large", t_fixtures());
    if (stat(dir, &st) != 0) {
        T_SKIP("fixtures not found: no tiny model at %s", dir);
        return T_DONE();
    }
    if (t_backend(&err, &be) != SD_OK
        || sd_model_load(&err, be, dir, SD_PART_TEXT, &m) != SD_OK)
    {
        T_CHECK(0, "load: %s", err.msg);
        return T_DONE();
    }
    check_tokens(m);
    check_cond(m);
    sd_model_free(m);
    sd_backend_destroy(be);

    check_engine(dir);
    return T_DONE();
}
