/*
 * test_textcache.c: the LRU of text conditionings (engine/textcache.h) on
 * the tiny Large model: a hit returns the very entry and equals a fresh
 * encoding, the least recently used prompt is evicted and the newest never
 * is, the empty prompt is pinned, clip skip keys apart; and through the
 * public API, an engine with the cache makes the same PNG bytes as one
 * without, counting its hits.
 */

#include <sys/stat.h>

#include "t.h"
#include "golden.h"
#include "sd.h"
#include "textcache.h"


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


static int
same_tensor(const sd_tensor *a, const sd_tensor *b)
{
    float  *x = host(a), *y = host(b);
    int     ok = x && y && sd_numel(a) == sd_numel(b)
                 && memcmp(x, y, sizeof(float) * (size_t) sd_numel(a)) == 0;

    free(x);
    free(y);
    return ok;
}


static void
check_lru(sd_model *m)
{
    sd_tcache      *tc = sd_tcache_new(2);
    sd_cond         tmp, ref;
    const sd_cond  *a, *a2, *b, *c, *e1, *e2, *out;
    sd_err          err = {0};
    uint64_t        hits, misses;
    int             entries;

    T_CHECK(tc != NULL && sd_tcache_new(0) == NULL, "new");
    T_CHECK(sd_tcache_get(&err, tc, m, "a red cube", 0, &tmp, &a) == SD_OK
            && a != &tmp, "miss: %s", err.msg);
    T_CHECK(sd_tcache_get(&err, tc, m, "a red cube", 0, &tmp, &a2) == SD_OK
            && a2 == a, "hit: the same entry");
    /* kept outside the activation workspace (textcache.h) */
    T_CHECK(a->context->mem == SD_MEM_WEIGHT && a->pooled->mem
            == SD_MEM_WEIGHT, "entry memory: %d %d", a->context->mem,
            a->pooled->mem);

    memset(&ref, 0, sizeof(ref));
    T_CHECK(sd_cond_encode(&err, m, "a red cube", &ref) == SD_OK
            && same_tensor(ref.context, a->context)
            && same_tensor(ref.pooled, a->pooled), "hit equals encoding");
    sd_cond_free(&ref);

    /* the empty prompt is pinned: outside the two places */
    T_CHECK(sd_tcache_get(&err, tc, m, "", 0, &tmp, &e1) == SD_OK, "empty");
    T_CHECK(sd_tcache_get(&err, tc, m, "a blue ball", 0, &tmp, &b) == SD_OK,
            "b");
    /* "a red cube" is now the least recently used: c evicts it */
    T_CHECK(sd_tcache_get(&err, tc, m, "a green cone", 0, &tmp, &c) == SD_OK,
            "c");
    sd_tcache_stats(tc, &hits, &misses, &entries);
    T_CHECK(hits == 1 && misses == 4 && entries == 2,
            "stats %llu %llu %d", (unsigned long long) hits,
            (unsigned long long) misses, entries);
    T_CHECK(sd_tcache_get(&err, tc, m, "a blue ball", 0, &tmp, &out) == SD_OK
            && out == b, "b kept");
    T_CHECK(sd_tcache_get(&err, tc, m, "", 0, &tmp, &e2) == SD_OK
            && e2 == e1, "empty kept");
    sd_tcache_stats(tc, &hits, &misses, &entries);
    T_CHECK(hits == 3 && misses == 4, "hits %llu",
            (unsigned long long) hits);
    T_CHECK(sd_tcache_get(&err, tc, m, "a red cube", 0, &tmp, &out) == SD_OK,
            "a again");
    sd_tcache_stats(tc, &hits, &misses, &entries);
    T_CHECK(misses == 5 && entries == 2, "a was evicted");

    /* clip skip keys apart */
    T_CHECK(sd_tcache_get(&err, tc, m, "a red cube", 2, &tmp, &out) == SD_OK,
            "clip skip 2");
    sd_tcache_stats(tc, &hits, &misses, &entries);
    T_CHECK(misses == 6, "clip skip is in the key");

    /* no cache: encoded into tmp, which the caller frees */
    T_CHECK(sd_tcache_get(&err, NULL, m, "a red cube", 0, &tmp, &out)
            == SD_OK && out == &tmp && tmp.context != NULL, "no cache");
    sd_cond_free(&tmp);
    sd_tcache_free(tc);
}


static int
generate(sd_engine *e, const char *neg, sd_result *res)
{
    sd_request  r;
    char        msg[256];

    sd_request_init(&r);
    r.prompt = "a red cube";
    r.negative_prompt = neg;
    r.width = 64;
    r.height = 64;
    r.steps = 2;
    r.cfg_scale = 4.0f;
    r.seed = 3;
    r.rng = SD_RNG_CPU;
    return sd_generate(e, &r, NULL, NULL, NULL, res, msg, sizeof(msg))
           == SD_OK && res->n_images == 1;
}


static void
check_engine(const char *dir)
{
    sd_engine_config  cfg;
    sd_engine        *plain = NULL, *cached = NULL;
    sd_result         r0, r1, r2;
    char              msg[256];
    uint64_t          hits, misses;
    int               entries;

    sd_engine_config_init(&cfg);
    cfg.model_dir = dir;
    T_CHECK(cfg.text_cache == 0, "off by default");
    T_CHECK(sd_engine_open(&cfg, &plain, msg, sizeof(msg)) == SD_OK,
            "open: %s", msg);
    cfg.text_cache = 8;
    T_CHECK(sd_engine_open(&cfg, &cached, msg, sizeof(msg)) == SD_OK,
            "open cached: %s", msg);
    if (plain == NULL || cached == NULL) {
        sd_engine_close(plain);
        sd_engine_close(cached);
        return;
    }

    memset(&r0, 0, sizeof(r0));
    memset(&r1, 0, sizeof(r1));
    memset(&r2, 0, sizeof(r2));
    T_CHECK(generate(plain, "", &r0) && generate(cached, "", &r1)
            && generate(cached, "", &r2), "generate");
    T_CHECK(r0.n_images == 1 && r1.n_images == 1 && r2.n_images == 1
            && r0.images[0].png_len == r2.images[0].png_len
            && r1.images[0].png_len == r2.images[0].png_len
            && memcmp(r0.images[0].png, r2.images[0].png,
                      r0.images[0].png_len) == 0
            && memcmp(r1.images[0].png, r2.images[0].png,
                      r1.images[0].png_len) == 0,
            "the same bytes with and without the cache, miss and hit");
    sd_engine_text_cache_stats(cached, &hits, &misses, &entries);
    T_CHECK(misses == 2 && hits == 2 && entries == 1,
            "engine stats %llu hits %llu misses %d entries",
            (unsigned long long) hits, (unsigned long long) misses, entries);
    sd_engine_text_cache_stats(plain, &hits, &misses, &entries);
    T_CHECK(hits == 0 && misses == 0 && entries == 0, "no cache, no stats");

    sd_result_free(&r0);
    sd_result_free(&r1);
    sd_result_free(&r2);
    sd_engine_close(plain);
    sd_engine_close(cached);
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
        || sd_model_load(&err, be, dir, SD_PART_ALL, &m) != SD_OK)
    {
        T_CHECK(0, "load: %s", err.msg);
        return T_DONE();
    }
    check_lru(m);
    sd_model_free(m);
    sd_backend_destroy(be);

    check_engine(dir);
    return T_DONE();
}
