/*
 * textcache.c: the LRU of text conditionings (textcache.h).
 *
 * A doubly linked list, most recently used first, searched by a 64-bit
 * FNV-1a hash and then the text itself; capacities are tens to hundreds
 * of entries, each worth a T5-XXL forward pass, so a linear search costs
 * nothing beside what it saves. The newest entry is never the one evicted,
 * so a prompt's entry survives the encoding of its negative.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "promptenc.h"
#include "textcache.h"


typedef struct sd_tentry  sd_tentry;

struct sd_tentry {
    sd_tentry         *prev, *next;
    uint64_t           hash;
    int                clip_skip;
    char              *text;
    sd_cond            cond;
};

struct sd_tcache {
    int                capacity;
    atomic_int         count;
    sd_tentry         *head, *tail;
    sd_tentry         *empty[4];        /* "" by clip skip 0..3, pinned */
    atomic_ullong      hits, misses;
};


sd_tcache *
sd_tcache_new(int capacity)
{
    sd_tcache  *tc;

    if (capacity <= 0) {
        return NULL;
    }
    tc = calloc(1, sizeof(*tc));
    if (tc == NULL) {
        return NULL;
    }
    tc->capacity = capacity < 2 ? 2 : capacity;
    atomic_init(&tc->hits, 0);
    atomic_init(&tc->misses, 0);
    atomic_init(&tc->count, 0);
    return tc;
}


static void
entry_free(sd_tentry *en)
{
    if (en) {
        sd_cond_free(&en->cond);
        free(en->text);
        free(en);
    }
}


void
sd_tcache_free(sd_tcache *tc)
{
    sd_tentry  *en, *next;
    size_t      i;

    if (tc == NULL) {
        return;
    }
    for (en = tc->head; en; en = next) {
        next = en->next;
        entry_free(en);
    }
    for (i = 0; i < sizeof(tc->empty) / sizeof(tc->empty[0]); i++) {
        entry_free(tc->empty[i]);
    }
    free(tc);
}


static uint64_t
text_hash(const char *s, int clip_skip)
{
    uint64_t  h = 0xcbf29ce484222325ULL ^ (uint64_t) (unsigned) clip_skip;

    for (; *s; s++) {
        h = (h ^ (unsigned char) *s) * 0x100000001b3ULL;
    }
    return h;
}


static void
list_unlink(sd_tcache *tc, sd_tentry *en)
{
    if (en->prev) {
        en->prev->next = en->next;
    } else {
        tc->head = en->next;
    }
    if (en->next) {
        en->next->prev = en->prev;
    } else {
        tc->tail = en->prev;
    }
    en->prev = en->next = NULL;
}


static void
list_push(sd_tcache *tc, sd_tentry *en)
{
    en->prev = NULL;
    en->next = tc->head;
    if (tc->head) {
        tc->head->prev = en;
    }
    tc->head = en;
    if (tc->tail == NULL) {
        tc->tail = en;
    }
}


/*
 * An entry's tensor moved out of the activation workspace into the weight
 * arena: kept entries in the workspace would change its layout at every
 * miss, so the transformer's recorded step (a CUDA graph recorded for one
 * layout) would be recorded again for the next image, and they would take
 * room the workspace was sized without (sd_pipe_reserve).
 */
static sd_status
cond_keep(sd_err *err, sd_tensor **t)
{
    sd_tensor  *w;

    if (*t == NULL || (*t)->mem != SD_MEM_ACT) {
        return SD_OK;
    }
    SD_TRY(sd_tensor_new_as(err, (*t)->be, SD_MEM_WEIGHT, (*t)->dtype,
                            (*t)->ndim, (*t)->ne, &w));
    if (sd_copy2d(err, w, 0, 0, *t, 0, 0, 1, sd_numel(*t)) != SD_OK) {
        sd_tensor_free(w);
        return err->status;
    }
    sd_tensor_free(*t);
    *t = w;
    return SD_OK;
}


/* keep only what the pipeline reads: context and pooled */
static void
cond_trim(sd_cond *c)
{
    free(c->ids_l);
    free(c->ids_g);
    free(c->ids_t5);
    sd_tensor_free(c->pen_l);
    sd_tensor_free(c->pen_g);
    sd_tensor_free(c->emb_l);
    sd_tensor_free(c->emb_g);
    sd_tensor_free(c->t5);
    c->ids_l = c->ids_g = c->ids_t5 = NULL;
    c->pen_l = c->pen_g = c->emb_l = c->emb_g = c->t5 = NULL;
}


sd_status
sd_tcache_get(sd_err *err, sd_tcache *tc, sd_model *m, const char *prompt,
    int clip_skip, sd_cond *tmp, const sd_cond **out)
{
    sd_tentry  *en, **pin = NULL;
    uint64_t    h;
    size_t      n;

    memset(tmp, 0, sizeof(*tmp));
    *out = NULL;
    if (prompt == NULL) {
        prompt = "";
    }
    if (clip_skip < 1) {
        clip_skip = 1;          /* A1111's default: the last layer */
    }
    if (tc == NULL) {
        SD_TRY(sd_cond_encode_prompt(err, m, prompt, clip_skip, m->t5_len,
                                     tmp));
        *out = tmp;
        return SD_OK;
    }

    h = text_hash(prompt, clip_skip);
    if (prompt[0] == '\0' && clip_skip >= 0 && clip_skip < 4) {
        pin = &tc->empty[clip_skip];
        en = *pin;
    } else {
        for (en = tc->head; en; en = en->next) {
            if (en->hash == h && en->clip_skip == clip_skip
                && strcmp(en->text, prompt) == 0)
            {
                list_unlink(tc, en);
                list_push(tc, en);
                break;
            }
        }
    }
    if (en) {
        atomic_fetch_add(&tc->hits, 1);
        *out = &en->cond;
        return SD_OK;
    }

    atomic_fetch_add(&tc->misses, 1);
    n = strlen(prompt);
    en = sd_calloc(err, 1, sizeof(*en), "text cache entry");
    if (en == NULL) {
        return SD_ERR_NOMEM;
    }
    en->text = sd_calloc(err, n + 1, 1, "text cache entry");
    if (en->text == NULL) {
        free(en);
        return SD_ERR_NOMEM;
    }
    memcpy(en->text, prompt, n + 1);
    en->hash = h;
    en->clip_skip = clip_skip;
    if (sd_cond_encode_prompt(err, m, prompt, clip_skip, m->t5_len,
                              &en->cond) != SD_OK)
    {
        entry_free(en);
        return err->status;
    }
    cond_trim(&en->cond);
    if (cond_keep(err, &en->cond.context) != SD_OK
        || cond_keep(err, &en->cond.pooled) != SD_OK)
    {
        entry_free(en);
        return err->status;
    }

    if (pin) {
        *pin = en;
    } else {
        /* the tail is never the newest entry: capacity >= 2 */
        if (tc->count == tc->capacity) {
            sd_tentry  *old = tc->tail;

            list_unlink(tc, old);
            entry_free(old);
            tc->count--;
        }
        list_push(tc, en);
        tc->count++;
    }
    *out = &en->cond;
    return SD_OK;
}


void
sd_tcache_stats(const sd_tcache *tc, uint64_t *hits, uint64_t *misses,
    int *entries)
{
    *hits = tc ? atomic_load(&((sd_tcache *) tc)->hits) : 0;
    *misses = tc ? atomic_load(&((sd_tcache *) tc)->misses) : 0;
    if (entries) {
        *entries = tc ? atomic_load(&((sd_tcache *) tc)->count) : 0;
    }
}
