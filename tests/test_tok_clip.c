/*
 * test_tok_clip.c: the CLIP tokenizer against Hugging Face ids: the public
 * goldens (large.p*.clip_{l,g}.ids for cases-public.json), the reference
 * prompts of tests/data/tok_ref.json (Unicode, CJK, emoji, digits,
 * whitespace, literal special tokens, over-long), and properties that follow
 * from the pipeline (truncation, padding, errors).
 *
 * Both tokenizer folders are tested: tokenizer/ pads with <|endoftext|>,
 * tokenizer_2/ pads with "!" (id 0, also an added token in the prompt).
 */

#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include <cJSON.h>

#include "t.h"
#include "safetensors.h"
#include "tokenizer.h"

#define MAX_LEN  77


static const char  *names[2] = { "clip_l", "clip_g" };
static const char  *dirs[2] = { "tokenizer", "tokenizer_2" };


static cJSON *
read_json(const char *path)
{
    sd_err   err;
    char    *data;
    size_t   len;
    cJSON   *root;

    sd_err_clear(&err);
    if (sd_read_file(&err, path, &data, &len) != SD_OK) {
        return NULL;
    }
    root = cJSON_ParseWithLength(data, len);
    free(data);
    return root;
}


static int
ids_equal(const int32_t *a, const int32_t *b, int n, int *at)
{
    int  i;

    for (i = 0; i < n; i++) {
        if (a[i] != b[i]) {
            *at = i;
            return 0;
        }
    }
    return 1;
}


static void
test_goldens(sd_clip_tok **tok)
{
    int                  i, m, at;
    char                 path[4096], key[128];
    cJSON               *cases, *list, *c, *prompt, *name;
    sd_st               *st;
    sd_err               err;
    int32_t              ids[MAX_LEN];
    const sd_st_tensor  *t;

    snprintf(path, sizeof(path), "%s/cases-public.json", t_fixtures());
    cases = read_json(path);
    if (cases == NULL) {
        T_SKIP("no %s", path);
        return;
    }

    snprintf(path, sizeof(path), "%s/golden-public.safetensors",
             t_fixtures());
    sd_err_clear(&err);
    if (sd_st_open(&err, path, &st) != SD_OK) {
        T_SKIP("golden ids: %s", err.msg);
        cJSON_Delete(cases);
        return;
    }

    list = cJSON_GetObjectItemCaseSensitive(cases, "large");
    i = 0;
    cJSON_ArrayForEach(c, list) {
        prompt = cJSON_GetObjectItemCaseSensitive(c, "prompt");
        name = cJSON_GetObjectItemCaseSensitive(c, "name");
        if (!cJSON_IsString(prompt) || !cJSON_IsString(name)) {
            T_CHECK(0, "cases-public.json: case %d lacks name/prompt", i);
            continue;
        }
        for (m = 0; m < 2; m++) {
            snprintf(key, sizeof(key), "large.%s.%s.ids", name->valuestring,
                     names[m]);
            t = sd_st_find(st, key);
            if (t == NULL || t->dtype != SD_DT_I32 || t->numel != MAX_LEN) {
                T_SKIP("golden %s missing or not int32[1,77]", key);
                continue;
            }
            sd_err_clear(&err);
            T_CHECK(sd_clip_tok_encode(&err, tok[m], prompt->valuestring,
                                       ids, MAX_LEN) == SD_OK,
                    "%s: %s", key, err.msg);
            at = 0;
            T_CHECK(ids_equal(ids, t->data, MAX_LEN, &at),
                    "%s: id %d is %d, golden %d", key, at, ids[at],
                    ((const int32_t *) t->data)[at]);
        }
        i++;
    }
    T_CHECK(i >= 4, "cases-public.json: %d large cases", i);

    sd_st_close(st);
    cJSON_Delete(cases);
}


/* one reference list: [77 ids] parallel to "prompts", or {prompt: ids} */
static void
check_ref(sd_clip_tok *tok, const char *name, const char *prompt,
    const cJSON *ref)
{
    int            i, n, at;
    sd_err         err;
    int32_t        ids[MAX_LEN], want[MAX_LEN];
    const cJSON   *v;

    n = cJSON_GetArraySize(ref);
    if (!cJSON_IsArray(ref) || n != MAX_LEN) {
        T_CHECK(0, "tok_ref.json %s: \"%.40s\": not %d ids", name, prompt,
                MAX_LEN);
        return;
    }
    i = 0;
    cJSON_ArrayForEach(v, ref) {
        want[i++] = (int32_t) v->valueint;
    }

    sd_err_clear(&err);
    T_CHECK(sd_clip_tok_encode(&err, tok, prompt, ids, MAX_LEN) == SD_OK,
            "%s: \"%.40s\": %s", name, prompt, err.msg);
    at = 0;
    T_CHECK(ids_equal(ids, want, MAX_LEN, &at),
            "%s: \"%.40s\": id %d is %d, reference %d", name, prompt, at,
            ids[at], want[at]);
}


static void
test_reference(sd_clip_tok **tok)
{
    int           m, i;
    char          path[] = "tests/data/tok_ref.json";
    cJSON        *root, *prompts, *ref, *p, *r;

    root = read_json(path);
    if (root == NULL) {
        T_SKIP("no %s (run from the project root)", path);
        return;
    }
    prompts = cJSON_GetObjectItemCaseSensitive(root, "prompts");

    for (m = 0; m < 2; m++) {
        ref = cJSON_GetObjectItemCaseSensitive(root, names[m]);
        if (cJSON_IsObject(ref)) {
            cJSON_ArrayForEach(r, ref) {
                check_ref(tok[m], names[m], r->string, r);
            }

        } else if (cJSON_IsArray(ref) && cJSON_IsArray(prompts)
                   && cJSON_GetArraySize(ref) == cJSON_GetArraySize(prompts))
        {
            for (i = 0; i < cJSON_GetArraySize(ref); i++) {
                p = cJSON_GetArrayItem(prompts, i);
                r = cJSON_GetArrayItem(ref, i);
                if (!cJSON_IsString(p)) {
                    T_CHECK(0, "%s: prompt %d is not a string", path, i);
                    continue;
                }
                check_ref(tok[m], names[m], p->valuestring, r);
            }

        } else {
            T_CHECK(0, "%s: no usable \"%s\" list", path, names[m]);
        }
    }

    cJSON_Delete(root);
}


static int
encode(sd_clip_tok *tok, const char *text, int32_t *ids, int max_len)
{
    sd_err  err;

    sd_err_clear(&err);
    return sd_clip_tok_encode(&err, tok, text, ids, max_len) == SD_OK;
}


/* a and b tokenize alike */
static void
check_same(sd_clip_tok *tok, const char *a, const char *b)
{
    int      at;
    int32_t  x[MAX_LEN], y[MAX_LEN];

    T_CHECK(encode(tok, a, x, MAX_LEN) && encode(tok, b, y, MAX_LEN),
            "encode \"%s\" / \"%s\"", a, b);
    at = 0;
    T_CHECK(ids_equal(x, y, MAX_LEN, &at), "\"%s\" vs \"%s\": id %d: %d, %d",
            a, b, at, x[at], y[at]);
}


/* what follows from the pipeline, independent of the reference files */
static void
test_properties(sd_clip_tok **tok)
{
    int      i, n;
    sd_err   err;
    char     buf[400];
    int32_t  ids[MAX_LEN], small[8];

    T_CHECK(sd_clip_tok_eos(tok[0]) == 49407 && sd_clip_tok_eos(tok[1])
            == 49407, "eos ids %d %d", sd_clip_tok_eos(tok[0]),
            sd_clip_tok_eos(tok[1]));

    /* empty: BOS, EOS, then each folder's pad */
    T_CHECK(encode(tok[0], "", ids, MAX_LEN) && ids[0] == 49406
            && ids[1] == 49407 && ids[76] == 49407, "clip_l empty prompt");
    T_CHECK(encode(tok[1], " \t\n", ids, MAX_LEN) && ids[0] == 49406
            && ids[1] == 49407 && ids[2] == 0 && ids[76] == 0,
            "clip_g blank prompt");

    /* whitespace is only a separator; case folds; contractions split */
    check_same(tok[0], "  A\t\tPhoto\r\nOF  a\u3000cat ", "a photo of a cat");
    check_same(tok[0], "IT'S", "it's");
    check_same(tok[0], "it's", "it 's");
    check_same(tok[0], "12", "1 2");
    check_same(tok[0], "cafe\xcc\x81", "caf\xc3\xa9");          /* NFC */

    /* "!" is the pad token of tokenizer_2, so an added token there */
    T_CHECK(encode(tok[0], "!", ids, MAX_LEN) && ids[1] == 256,
            "clip_l \"!\" -> %d, want 256 (\"!</w>\")", ids[1]);
    T_CHECK(encode(tok[1], "!", ids, MAX_LEN) && ids[1] == 0,
            "clip_g \"!\" -> %d, want 0 (added \"!\")", ids[1]);
    T_CHECK(encode(tok[0], "a<|endoftext|>b", ids, MAX_LEN)
            && ids[2] == 49407 && ids[4] == 49407 && ids[5] == 49407,
            "literal <|endoftext|> is the special token");

    /* truncation keeps EOS last, whatever max_len */
    n = 0;
    for (i = 0; i < 100; i++) {
        n += snprintf(buf + n, sizeof(buf) - n, "%d ", i % 10);
    }
    T_CHECK(encode(tok[0], buf, ids, MAX_LEN) && ids[75] == 275
            && ids[76] == 49407, "100 digits: ids[75] %d ids[76] %d",
            ids[75], ids[76]);
    T_CHECK(encode(tok[1], buf, small, 8) && small[0] == 49406
            && small[6] == 276 && small[7] == 49407, "max_len 8");
    T_CHECK(encode(tok[1], "cat", small, 2) && small[0] == 49406
            && small[1] == 49407, "max_len 2 keeps BOS and EOS");

    /* errors carry a message and a status; the output is not trusted */
    sd_err_clear(&err);
    T_CHECK(sd_clip_tok_encode(&err, tok[0], "bad \xff utf-8", ids, MAX_LEN)
            == SD_ERR_INVALID && err.msg[0] != '\0',
            "invalid UTF-8 is SD_ERR_INVALID: %s", err.msg);
    sd_err_clear(&err);
    T_CHECK(sd_clip_tok_encode(&err, tok[0], "x", ids, 1) == SD_ERR_INVALID,
            "max_len 1 is SD_ERR_INVALID");
}


typedef struct {
    sd_clip_tok  *tok;
    int           ok;
} thread_arg;


static void *
thread_main(void *p)
{
    int          i, at;
    int32_t      a[MAX_LEN], b[MAX_LEN];
    thread_arg  *arg = p;

    arg->ok = encode(arg->tok, "a photo of an astronaut riding a horse",
                     a, MAX_LEN);
    for (i = 0; i < 200 && arg->ok; i++) {
        arg->ok = encode(arg->tok, "a photo of an astronaut riding a horse",
                         b, MAX_LEN)
                  && ids_equal(a, b, MAX_LEN, &at);
    }
    return NULL;
}


/* one tokenizer shared by threads gives the same ids in each */
static void
test_threads(sd_clip_tok *tok)
{
    int         i, ok;
    pthread_t   th[4];
    thread_arg  arg[4];

    ok = 1;
    for (i = 0; i < 4; i++) {
        arg[i].tok = tok;
        arg[i].ok = 0;
        if (pthread_create(&th[i], NULL, thread_main, &arg[i]) != 0) {
            T_SKIP("pthread_create() failed");
            return;
        }
    }
    for (i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ok = ok && arg[i].ok;
    }
    T_CHECK(ok, "threads sharing one tokenizer");
}


int
main(void)
{
    int               m;
    char              dir[4096];
    double            ms;
    sd_err            err;
    sd_clip_tok      *tok[2] = { NULL, NULL };
    struct timespec   t0, t1;

    sd_err_clear(&err);
    T_CHECK(sd_clip_tok_load(&err, "/nonexistent", &tok[0]) == SD_ERR_IO
            && tok[0] == NULL && strstr(err.msg, "vocab.json") != NULL,
            "missing folder: %s", err.msg);

    for (m = 0; m < 2; m++) {
        snprintf(dir, sizeof(dir), "%s/tiny-sd35-large/%s", t_fixtures(),
                 dirs[m]);
        sd_err_clear(&err);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        if (sd_clip_tok_load(&err, dir, &tok[m]) != SD_OK) {
            T_SKIP("no CLIP tokenizer at %s: %s", dir, err.msg);
            sd_clip_tok_free(tok[0]);
            return T_DONE();
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
        printf("loaded %s in %.1f ms\n", dirs[m], ms);
    }

    test_goldens(tok);
    test_reference(tok);
    test_properties(tok);
    test_threads(tok[1]);

    sd_clip_tok_free(tok[0]);
    sd_clip_tok_free(tok[1]);
    return T_DONE();
}
