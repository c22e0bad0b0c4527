/*
 * arena.c: the first-fit offset allocator of arena.h. A forward pass holds
 * a few dozen blocks at most, so a sorted list walked linearly is enough.
 */

#include <stdlib.h>

#include "arena.h"


struct sd_arena_block {
    size_t           off;
    size_t           size;
    int              used;
    sd_arena_block  *next;
};


int
sd_arena_init(sd_arena *a, size_t size, size_t align)
{
    sd_arena_block  *b;

    a->size = size;
    a->align = align ? align : 1;
    a->in_use = 0;
    a->high = 0;
    a->head = NULL;
    b = calloc(1, sizeof(*b));
    if (b == NULL) {
        return -1;
    }
    b->size = size;
    a->head = b;
    return 0;
}


void
sd_arena_free_all(sd_arena *a)
{
    sd_arena_block  *b, *next;

    for (b = a->head; b; b = next) {
        next = b->next;
        free(b);
    }
    a->head = NULL;
    a->in_use = 0;
}


int
sd_arena_alloc(sd_arena *a, size_t n, size_t *off)
{
    sd_arena_block  *b, *rest;

    /* round up; a zero-byte request still takes one unit */
    n = n ? n : 1;
    if (n > a->size) {
        return -1;
    }
    n = (n + a->align - 1) & ~(a->align - 1);

    for (b = a->head; b; b = b->next) {
        if (b->used || b->size < n) {
            continue;
        }
        if (b->size > n) {
            rest = calloc(1, sizeof(*rest));
            if (rest == NULL) {
                return -1;
            }
            rest->off = b->off + n;
            rest->size = b->size - n;
            rest->next = b->next;
            b->next = rest;
            b->size = n;
        }
        b->used = 1;
        a->in_use += n;
        if (b->off + n > a->high) {
            a->high = b->off + n;
        }
        *off = b->off;
        return 0;
    }
    return -1;
}


void
sd_arena_release(sd_arena *a, size_t off)
{
    sd_arena_block  *b, *prev = NULL, *next;

    for (b = a->head; b && b->off != off; b = b->next) {
        prev = b;
    }
    if (b == NULL || !b->used) {
        return;
    }
    b->used = 0;
    a->in_use -= b->size;

    next = b->next;
    if (next && !next->used) {
        b->size += next->size;
        b->next = next->next;
        free(next);
    }
    if (prev && !prev->used) {
        prev->size += b->size;
        prev->next = b->next;
        free(b);
    }
}


size_t
sd_arena_largest_free(const sd_arena *a)
{
    const sd_arena_block  *b;
    size_t                 best = 0;

    for (b = a->head; b; b = b->next) {
        if (!b->used && b->size > best) {
            best = b->size;
        }
    }
    return best;
}


uint64_t
sd_arena_signature(const sd_arena *a)
{
    const sd_arena_block  *b;
    uint64_t               h = 0xcbf29ce484222325ULL;

    for (b = a->head; b; b = b->next) {
        h = (h ^ (uint64_t) b->off) * 0x100000001b3ULL;
        h = (h ^ (uint64_t) b->size) * 0x100000001b3ULL;
        h = (h ^ (uint64_t) b->used) * 0x100000001b3ULL;
    }
    return h;
}
