/*
 * test_tok_t5.c: the T5 SentencePiece tokenizer against Hugging Face ids:
 * the golden `<model>.<case>.t5.ids` of golden-public.safetensors for the
 * prompts of cases-public.json, the extra prompts of tests/data/tok_ref.json
 * (reference ids from the real HF tokenizer), a few hand-checked cases,
 * several threads sharing one tokenizer, and malformed spiece.model files
 * (truncated, corrupted) that must fail cleanly or at least never crash.
 *
 * Invariant: every case compares all max_len ids, padding included.
 */

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>

#include "t.h"
#include "safetensors.h"
#include "tokenizer.h"


#define T5_LEN      256
#define T5_THREADS  4


static const char  *t5_thread_prompts[] = {
    "a photo of an astronaut riding a horse on mars",
    "Ünïcödé ｆｕｌｌｗｉｄｔｈ 東京タワー 🚀🚀 <extra_id_7> </s>",
    "  tabs\tand\nnewlines  ,,,!!! 12345  ",
};


typedef struct {
    const sd_t5_tok    *tok;
    int32_t             want[3][T5_LEN];
    int                 bad;
} t5_thread_arg;


/* Index of the first difference, or -1. */
static int
t5_diff(const int32_t *a, const int32_t *b, int n)
{
    int  i;

    for (i = 0; i < n; i++) {
        if (a[i] != b[i]) {
            return i;
        }
    }
    return -1;
}


/* Encode and compare with want[0, n); one T_CHECK. */
static void
t5_expect(const sd_t5_tok *tok, const char *what, const char *text,
    const int32_t *want, int n)
{
    int32_t    got[1024];
    sd_err     err;
    sd_status  st;
    int        d;

    sd_err_clear(&err);
    if (n > 1024) {
        T_CHECK(0, "%s: %d ids is more than the test handles", what, n);
        return;
    }

    st = sd_t5_tok_encode(&err, tok, text, got, n);
    if (st != SD_OK) {
        T_CHECK(0, "%s: encode failed: %s", what, err.msg);
        return;
    }

    d = t5_diff(got, want, n);
    T_CHECK(d < 0, "%s: \"%.60s\": id %d is %d, want %d", what, text, d,
            d < 0 ? 0 : (int) got[d], d < 0 ? 0 : (int) want[d]);
}


static void
t5_test_basic(const sd_t5_tok *tok)
{
    int32_t    want[T5_LEN], got[8];
    sd_err     err;
    sd_status  st;

    memset(want, 0, sizeof(want));
    want[0] = 1;
    t5_expect(tok, "empty", "", want, T5_LEN);
    t5_expect(tok, "white space only", " \t\n  ", want, T5_LEN);

    want[0] = 8774;                         /* "\xe2\x96\x81Hello" */
    want[1] = 296;                          /* "\xe2\x96\x81world" */
    want[2] = 1;
    t5_expect(tok, "hello", "Hello world", want, T5_LEN);
    t5_expect(tok, "extra spaces", "   Hello \t  world\n", want, T5_LEN);

    want[1] = 1;                            /* "</s>" written literally */
    want[2] = 296;
    want[3] = 1;
    t5_expect(tok, "literal </s>", "Hello</s>world", want, T5_LEN);

    want[0] = 32099;                        /* "<extra_id_0>" */
    want[1] = 32000;                        /* "<extra_id_99>" */
    want[2] = 0;                            /* "<pad>" */
    want[3] = 2;                            /* "<unk>" */
    want[4] = 1;
    t5_expect(tok, "specials", "<extra_id_0><extra_id_99><pad><unk>", want,
              T5_LEN);

    want[0] = 8774;                         /* truncation keeps "</s>" */
    want[1] = 1;
    t5_expect(tok, "truncated", "Hello world Hello world", want, 2);
    want[0] = 1;
    t5_expect(tok, "max_len 1", "Hello world", want, 1);

    sd_err_clear(&err);
    st = sd_t5_tok_encode(&err, tok, "bad \xff\xfe utf-8", got, 8);
    T_CHECK(st == SD_ERR_INVALID && err.msg[0] != '\0',
            "invalid UTF-8: status %d", (int) st);

    sd_err_clear(&err);
    st = sd_t5_tok_encode(&err, tok, "x", got, 0);
    T_CHECK(st == SD_ERR_INVALID, "max_len 0: status %d", (int) st);
}


static void
t5_test_golden(const sd_t5_tok *tok)
{
    char                 path[1024], key[256], *json = NULL;
    const sd_st_tensor  *t;
    const cJSON         *model, *c, *name, *prompt;
    cJSON               *cases = NULL;
    sd_st               *st = NULL;
    sd_err               err;
    int32_t              want[T5_LEN];
    int                  ncases = 0;

    sd_err_clear(&err);
    snprintf(path, sizeof(path), "%s/cases-public.json", t_fixtures());
    if (sd_read_file(&err, path, &json, NULL) != SD_OK) {
        T_SKIP("golden ids: %s", err.msg);
        return;
    }

    snprintf(path, sizeof(path), "%s/golden-public.safetensors",
             t_fixtures());
    if (sd_st_open(&err, path, &st) != SD_OK) {
        T_SKIP("golden ids: %s", err.msg);
        goto done;
    }

    cases = cJSON_Parse(json);
    T_CHECK(cases != NULL, "cases-public.json does not parse");
    if (cases == NULL) {
        goto done;
    }

    cJSON_ArrayForEach(model, cases) {
        cJSON_ArrayForEach(c, model) {
            name = cJSON_GetObjectItemCaseSensitive(c, "name");
            prompt = cJSON_GetObjectItemCaseSensitive(c, "prompt");
            if (!cJSON_IsString(name) || !cJSON_IsString(prompt)) {
                T_CHECK(0, "case of \"%s\" without name or prompt",
                        model->string);
                continue;
            }

            snprintf(key, sizeof(key), "%s.%s.t5.ids", model->string,
                     name->valuestring);
            t = sd_st_find(st, key);
            if (t == NULL || t->dtype != SD_DT_I32 || t->numel != T5_LEN) {
                T_CHECK(0, "%s: missing or not int32 [1,%d]", key, T5_LEN);
                continue;
            }

            memcpy(want, t->data, sizeof(want));
            t5_expect(tok, key, prompt->valuestring, want, T5_LEN);
            ncases++;
        }
    }

    T_CHECK(ncases >= 4, "only %d golden cases found", ncases);

done:
    cJSON_Delete(cases);
    sd_st_close(st);
    free(json);
}


/* One HF reference case: ids is a JSON array of max_len ids. */
static void
t5_ref_case(const sd_t5_tok *tok, const char *path, const char *prompt,
    const cJSON *ids)
{
    const cJSON  *v;
    int32_t       want[1024];
    int           n = 0;

    cJSON_ArrayForEach(v, ids) {
        if (n < 1024) {
            want[n++] = (int32_t) v->valueint;
        }
    }
    if (prompt == NULL || !cJSON_IsArray(ids) || n == 0) {
        T_CHECK(0, "%s: bad case \"%.40s\"", path, prompt ? prompt : "");
        return;
    }
    t5_expect(tok, "tok_ref", prompt, want, n);
}


/*
 * tests/data/tok_ref.json: "t5" is either {prompt: ids} or a list of ids
 * parallel to the list "prompts".
 */
static void
t5_test_ref(const sd_t5_tok *tok)
{
    const char   *path = "tests/data/tok_ref.json";
    const cJSON  *t5, *prompts, *c, *p;
    cJSON        *root;
    sd_err        err;
    char         *json = NULL;
    int           ncases = 0;

    sd_err_clear(&err);
    if (getenv("SD_TOK_REF") != NULL) {
        path = getenv("SD_TOK_REF");
    }
    if (access(path, R_OK) != 0) {
        T_SKIP("HF reference ids: %s not present", path);
        return;
    }
    if (sd_read_file(&err, path, &json, NULL) != SD_OK) {
        T_CHECK(0, "%s", err.msg);
        return;
    }

    root = cJSON_Parse(json);
    t5 = cJSON_GetObjectItemCaseSensitive(root, "t5");
    prompts = cJSON_GetObjectItemCaseSensitive(root, "prompts");

    if (cJSON_IsObject(t5)) {
        cJSON_ArrayForEach(c, t5) {
            t5_ref_case(tok, path, c->string, c);
            ncases++;
        }

    } else if (cJSON_IsArray(t5) && cJSON_IsArray(prompts)
               && cJSON_GetArraySize(t5) == cJSON_GetArraySize(prompts))
    {
        p = prompts->child;
        cJSON_ArrayForEach(c, t5) {
            t5_ref_case(tok, path, cJSON_GetStringValue(p), c);
            p = p->next;
            ncases++;
        }

    } else {
        T_CHECK(0, "%s: no \"t5\" cases", path);
    }

    printf("info: %d HF reference prompts\n", ncases);
    cJSON_Delete(root);
    free(json);
}


static void *
t5_thread(void *data)
{
    t5_thread_arg  *a = data;
    int32_t         got[T5_LEN];
    sd_err          err;
    int             r, k;

    for (r = 0; r < 50; r++) {
        for (k = 0; k < 3; k++) {
            sd_err_clear(&err);
            if (sd_t5_tok_encode(&err, a->tok, t5_thread_prompts[k], got,
                                 T5_LEN) != SD_OK
                || t5_diff(got, a->want[k], T5_LEN) >= 0)
            {
                a->bad++;
            }
        }
    }
    return NULL;
}


static void
t5_test_threads(const sd_t5_tok *tok)
{
    pthread_t      th[T5_THREADS];
    t5_thread_arg  arg[T5_THREADS];
    sd_err         err;
    int            i, k, started;

    for (i = 0; i < T5_THREADS; i++) {
        arg[i].tok = tok;
        arg[i].bad = 0;
        for (k = 0; k < 3; k++) {
            sd_err_clear(&err);
            if (sd_t5_tok_encode(&err, tok, t5_thread_prompts[k],
                                 arg[i].want[k], T5_LEN) != SD_OK)
            {
                T_CHECK(0, "threads: encode failed: %s", err.msg);
                return;
            }
        }
    }

    started = 0;
    for (i = 0; i < T5_THREADS; i++) {
        if (pthread_create(&th[i], NULL, t5_thread, &arg[i]) != 0) {
            break;
        }
        started++;
    }
    for (i = 0; i < started; i++) {
        pthread_join(th[i], NULL);
    }

    for (i = 0; i < started; i++) {
        T_CHECK(arg[i].bad == 0, "thread %d: %d encodes differ", i,
                arg[i].bad);
    }
    T_CHECK(started == T5_THREADS, "only %d threads started", started);
}


/* Write data[0, n) as dir/spiece.model and try to load and use it. */
static sd_status
t5_try_model(const char *dir, const char *data, size_t n, sd_err *err)
{
    char         path[1024];
    int32_t      ids[64];
    sd_t5_tok   *tok;
    sd_status    st;
    FILE        *f;

    snprintf(path, sizeof(path), "%s/spiece.model", dir);
    f = fopen(path, "wb");
    if (f == NULL) {
        return SD_ERR_IO;
    }
    if (n > 0 && fwrite(data, 1, n, f) != n) {
        fclose(f);
        return SD_ERR_IO;
    }
    fclose(f);

    sd_err_clear(err);
    st = sd_t5_tok_load(err, dir, &tok);
    if (st == SD_OK) {
        st = sd_t5_tok_encode(err, tok, "ｆｕｌｌ wïdth ① ™ \xe2\x80\xa8 "
                              "<extra_id_3> 東京 🚀", ids, 64);
        sd_t5_tok_free(tok);
    }
    unlink(path);
    return st;
}


static void
t5_test_malformed(const char *model_dir)
{
    static const size_t  cuts[] = { 0, 1, 3, 7, 50, 0 /* n/2 */, 0 /* n-1 */};
    char                 path[1100], dir[] = "/tmp/sd_test_t5_XXXXXX";
    char                *data = NULL, *copy = NULL;
    size_t               n, i, k, cut, cm;
    uint32_t             x = 2463534242u;
    sd_err               err;
    sd_status            st;
    int                  quiet, loaded;

    sd_err_clear(&err);
    snprintf(path, sizeof(path), "%s/spiece.model", model_dir);
    if (sd_read_file(&err, path, &data, &n) != SD_OK) {
        T_SKIP("malformed models: %s", err.msg);
        return;
    }
    if (mkdtemp(dir) == NULL || (copy = malloc(n)) == NULL) {
        T_CHECK(0, "malformed models: no temp dir or memory");
        free(data);
        return;
    }

    /* truncated inside a field: a clean SD_ERR_FORMAT with a message */

    for (i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        cut = (i == 5) ? n / 2 : (i == 6) ? n - 1 : cuts[i];
        st = t5_try_model(dir, data, cut, &err);
        T_CHECK(st == SD_ERR_FORMAT && strstr(err.msg, "spiece.model"),
                "truncated to %zu bytes: status %d \"%s\"", cut, (int) st,
                err.msg);
    }

    /* every other cut point: any status, but never a crash */

    quiet = 1;
    for (cut = 8; cut < n; cut += (cut < 400) ? 1 : 7919) {
        st = t5_try_model(dir, data, cut, &err);
        if (st != SD_OK && err.msg[0] == '\0') {
            quiet = 0;
        }
    }
    T_CHECK(quiet, "a truncated model failed without a message");

    /* a piece length pointing past the end */

    memcpy(copy, data, n);
    copy[1] = (char) 0xff;
    copy[2] = (char) 0xff;
    copy[3] = (char) 0x7f;
    st = t5_try_model(dir, copy, n, &err);
    T_CHECK(st == SD_ERR_FORMAT, "huge piece length: status %d", (int) st);

    /*
     * random bytes over the charsmap trie (in the standard T5 spiece.model
     * its units span about bytes 554115..731267): loads that still pass
     * must encode without reading outside the trie
     */

    loaded = 0;
    if (n > 200000) {
        cm = n - 200000;
        for (k = 0; k < 20; k++) {
            memcpy(copy, data, n);
            for (i = 0; i < 500; i++) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                copy[cm + x % 120000] ^= (char) (x >> 24);
            }
            loaded += t5_try_model(dir, copy, n, &err) == SD_OK;
        }
    }
    printf("info: %d of 20 corrupted charsmaps loaded and encoded\n", loaded);

    rmdir(dir);
    free(copy);
    free(data);
}


int
main(void)
{
    char              dir[1024];
    struct timespec   t0, t1;
    sd_t5_tok        *tok;
    sd_err            err;
    sd_status         st;

    snprintf(dir, sizeof(dir), "%s/tiny-sd35-large/tokenizer_3",
             t_fixtures());

    sd_err_clear(&err);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    st = sd_t5_tok_load(&err, dir, &tok);
    clock_gettime(CLOCK_MONOTONIC, &t1);

    if (st == SD_ERR_IO) {
        T_SKIP("T5 tokenizer fixtures absent: %s", err.msg);
        return T_DONE();
    }
    T_CHECK(st == SD_OK, "sd_t5_tok_load: %s", err.msg);
    if (st != SD_OK) {
        return T_DONE();
    }
    printf("info: spiece.model loaded in %.1f ms\n",
           (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6);

    t5_test_basic(tok);
    t5_test_golden(tok);
    t5_test_ref(tok);
    t5_test_threads(tok);
    sd_t5_tok_free(tok);

    t5_test_malformed(dir);

    return T_DONE();
}
