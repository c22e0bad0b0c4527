/*
 * sd_err.h: the engine's internal error record and check macros.
 *
 * Invariant: every fallible engine function returns an sd_status and, on
 * failure, leaves a human-readable message in the sd_err it was given; the
 * first message set wins so the root cause is never overwritten by callers.
 */

#ifndef SD_ERR_H
#define SD_ERR_H

#include <stddef.h>
#include <stdint.h>
#include "sd.h"


typedef struct {
    sd_status   status;
    char        msg[512];
} sd_err;


/* Record an error (printf-style) unless one is already recorded; returns s. */
sd_status sd_errorf(sd_err *err, sd_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

void sd_err_clear(sd_err *err);

/* Return early with the status of a failing call; the callee set the text. */
#define SD_TRY(call)                                                        \
    do {                                                                    \
        sd_status sd_try_s_ = (call);                                       \
        if (sd_try_s_ != SD_OK) {                                           \
            return sd_try_s_;                                               \
        }                                                                   \
    } while (0)

/* Like SD_TRY but jumps to a label (single exit with cleanup). */
#define SD_TRY_GOTO(st, call, label)                                        \
    do {                                                                    \
        (st) = (call);                                                      \
        if ((st) != SD_OK) {                                                \
            goto label;                                                     \
        }                                                                   \
    } while (0)

/* Allocation that reports failure as SD_ERR_NOMEM with file:line. */
void *sd_malloc(sd_err *err, size_t n, const char *what);
void *sd_calloc(sd_err *err, size_t n, size_t size, const char *what);

/* Read a whole file into a NUL-terminated malloc'd buffer. */
sd_status sd_read_file(sd_err *err, const char *path, char **data,
    size_t *len);

/* dst = a "/" b, checked for overflow of dst. */
sd_status sd_path_join(sd_err *err, char *dst, size_t dstlen, const char *a,
    const char *b);

/* The CPUs this thread may run on (its affinity), within [1, max]. */
int sd_cpus(int max);

/* Seconds on the monotonic clock (for durations only). */
double sd_seconds(void);

/* Whether the environment variable name is set to "1" (a knob). */
int sd_env_on(const char *name);

/*
 * fn(arg) on n threads (at most SD_MAX_WORKERS): n - 1 started ones and
 * the calling thread, all joined before it returns; one that cannot be
 * started is left out. fn takes its work from arg until none is left, so
 * fewer threads only take longer.
 */
#define SD_MAX_WORKERS  64
void sd_run_workers(void *(*fn)(void *), void *arg, int n);

/*
 * fn(arg, i0, i1) over [0, n) in chunks of `chunk`, taken in turn by up to
 * max_threads threads (sd_cpus); one chunk runs in the calling thread. fn
 * must not depend on which thread runs a chunk.
 */
void sd_run_chunks(void (*fn)(void *arg, int64_t i0, int64_t i1), void *arg,
    int64_t n, int64_t chunk, int max_threads);

#endif /* SD_ERR_H */
