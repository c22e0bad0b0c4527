/*
 * textcache.h: an LRU of text conditionings (prompt, clip skip -> the
 * MMDiT's context and pooled vectors), so that a prompt seen again skips
 * the tokenizers, both CLIPs and T5.
 *
 * The entries' tensors stay in the backend's memory (device memory on the
 * GPU, in the backend's activation dtype): a hit costs nothing to upload.
 * Only context and pooled are kept, moved into the weight arena; the
 * encoders' intermediates are freed, so a miss leaves the activation
 * workspace as it found it (the same layout: a transformer step recorded
 * as a CUDA graph replays for the next image, whose prompt is new).
 * The empty prompt (the common negative) is kept apart, once per model,
 * and never evicted.
 *
 * Not thread-safe: the engine calls it under its lock. The counters alone
 * may be read from any thread.
 */
#ifndef SD_TEXTCACHE_H
#define SD_TEXTCACHE_H

#include <stdint.h>

#include "model.h"

typedef struct sd_tcache  sd_tcache;

/* capacity: prompts kept besides the empty one (at least 2); 0: NULL */
sd_tcache *sd_tcache_new(int capacity);
void sd_tcache_free(sd_tcache *tc);

/*
 * The conditioning of prompt: from the cache, or encoded into it. Without
 * a cache (tc NULL) it is encoded into *tmp. *out stays valid until the
 * second call after this one (so a prompt and its negative coexist); the
 * caller frees *tmp (sd_cond_free) and never *out.
 */
sd_status sd_tcache_get(sd_err *err, sd_tcache *tc, sd_model *m,
    const char *prompt, int clip_skip, sd_cond *tmp, const sd_cond **out);

void sd_tcache_stats(const sd_tcache *tc, uint64_t *hits, uint64_t *misses,
    int *entries);

#endif /* SD_TEXTCACHE_H */
