/*
 * arena.h: a first-fit allocator over one address range, for backends that
 * take their device memory once (a weight chunk, the activation workspace)
 * and hand out pieces of it. It touches no memory itself: it deals in
 * offsets, so it also measures what a run would need (an arena of
 * unbounded size records its high-water mark).
 *
 * Invariant: blocks are kept sorted by offset and adjacent free blocks are
 * always merged, so the same sequence of requests gives the same offsets
 * in every arena at least as large as the high-water mark it left.
 */

#ifndef SD_ARENA_H
#define SD_ARENA_H

#include <stddef.h>
#include <stdint.h>


typedef struct sd_arena_block  sd_arena_block;

typedef struct {
    size_t           size;          /* bytes managed */
    size_t           align;         /* every offset a multiple of this */
    size_t           in_use;        /* bytes handed out (rounded) */
    size_t           high;          /* highest end of a block ever taken */
    sd_arena_block  *head;          /* blocks by offset, free and used */
} sd_arena;


/* align: a power of two. Returns 0, or -1 when out of host memory. */
int sd_arena_init(sd_arena *a, size_t size, size_t align);
void sd_arena_free_all(sd_arena *a);

/* A block of n bytes: 0 and *off set, or -1 when no free block fits. */
int sd_arena_alloc(sd_arena *a, size_t n, size_t *off);
/* Return the block at off (an offset sd_arena_alloc gave). */
void sd_arena_release(sd_arena *a, size_t off);
/* The largest free block, for messages. */
size_t sd_arena_largest_free(const sd_arena *a);
/* A hash of the blocks (offsets, sizes, in use): equal for two states
   that lay out the next allocations the same way. */
uint64_t sd_arena_signature(const sd_arena *a);

#endif /* SD_ARENA_H */
