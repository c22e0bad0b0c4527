/*
 * sd_err.c: error recording and small checked helpers shared by the engine.
 *
 * Nothing here prints or exits: failures become an sd_status plus text.
 */

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sd_err.h"


sd_status
sd_errorf(sd_err *err, sd_status s, const char *fmt, ...)
{
    va_list  ap;

    if (err == NULL || err->status != SD_OK) {
        return s;
    }

    err->status = s;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);

    return s;
}


void
sd_err_clear(sd_err *err)
{
    err->status = SD_OK;
    err->msg[0] = '\0';
}


void *
sd_malloc(sd_err *err, size_t n, const char *what)
{
    void  *p;

    p = malloc(n ? n : 1);
    if (p == NULL) {
        sd_errorf(err, SD_ERR_NOMEM, "out of memory allocating %zu bytes "
                  "for %s", n, what);
    }
    return p;
}


void *
sd_calloc(sd_err *err, size_t n, size_t size, const char *what)
{
    void  *p;

    p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL) {
        sd_errorf(err, SD_ERR_NOMEM, "out of memory allocating %zu x %zu "
                  "bytes for %s", n, size, what);
    }
    return p;
}


sd_status
sd_read_file(sd_err *err, const char *path, char **data, size_t *len)
{
    FILE    *f;
    char    *buf;
    long     size;
    size_t   got;

    *data = NULL;
    f = fopen(path, "rb");
    if (f == NULL) {
        return sd_errorf(err, SD_ERR_IO, "open(\"%s\") failed: %s", path,
                         strerror(errno));
    }

    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0
        || fseek(f, 0, SEEK_SET) != 0)
    {
        fclose(f);
        return sd_errorf(err, SD_ERR_IO, "seek in \"%s\" failed", path);
    }

    buf = sd_malloc(err, (size_t) size + 1, path);
    if (buf == NULL) {
        fclose(f);
        return SD_ERR_NOMEM;
    }

    got = fread(buf, 1, (size_t) size, f);
    fclose(f);
    if (got != (size_t) size) {
        free(buf);
        return sd_errorf(err, SD_ERR_IO, "read(\"%s\") failed: short read",
                         path);
    }

    buf[size] = '\0';
    *data = buf;
    if (len) {
        *len = (size_t) size;
    }
    return SD_OK;
}


sd_status
sd_path_join(sd_err *err, char *dst, size_t dstlen, const char *a,
    const char *b)
{
    int  n;

    n = snprintf(dst, dstlen, "%s/%s", a, b);
    if (n < 0 || (size_t) n >= dstlen) {
        return sd_errorf(err, SD_ERR_INVALID, "path too long: \"%s/%s\"",
                         a, b);
    }
    return SD_OK;
}


/*
 * The CPUs this thread may run on (its affinity: taskset, a container's
 * cpuset), else those online; at least 1, at most max.
 */
int
sd_cpus(int max)
{
    cpu_set_t  set;
    long       n = 0;

    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
        n = CPU_COUNT(&set);
    }
    if (n < 1) {
        n = sysconf(_SC_NPROCESSORS_ONLN);
    }
    return n < 1 ? 1 : (n > max ? max : (int) n);
}


double
sd_seconds(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}


int
sd_env_on(const char *name)
{
    const char  *v = getenv(name);

    return v != NULL && strcmp(v, "1") == 0;
}


void
sd_run_workers(void *(*fn)(void *), void *arg, int n)
{
    pthread_t  tid[SD_MAX_WORKERS - 1];
    int        started = 0, k;

    n = n < SD_MAX_WORKERS ? n : SD_MAX_WORKERS;
    for (k = 0; k < n - 1; k++) {
        if (pthread_create(&tid[started], NULL, fn, arg) == 0) {
            started++;
        }
    }
    fn(arg);
    for (k = 0; k < started; k++) {
        pthread_join(tid[k], NULL);
    }
}


typedef struct {
    void           (*fn)(void *arg, int64_t i0, int64_t i1);
    void            *arg;
    int64_t          n, chunk;
    atomic_llong     next;              /* the next chunk to take */
} sd_chunks_job;


static void *
sd_chunks_worker(void *arg)
{
    sd_chunks_job  *job = arg;
    int64_t         c, end;

    for (;;) {
        c = atomic_fetch_add(&job->next, 1);
        if (c * job->chunk >= job->n) {
            return NULL;
        }
        end = (c + 1) * job->chunk < job->n ? (c + 1) * job->chunk : job->n;
        job->fn(job->arg, c * job->chunk, end);
    }
}


void
sd_run_chunks(void (*fn)(void *arg, int64_t i0, int64_t i1), void *arg,
    int64_t n, int64_t chunk, int max_threads)
{
    sd_chunks_job  job;
    int64_t        chunks = (n + chunk - 1) / chunk;

    if (n <= 0) {
        return;
    }
    if (chunks < 2) {
        fn(arg, 0, n);
        return;
    }
    job.fn = fn;
    job.arg = arg;
    job.n = n;
    job.chunk = chunk;
    atomic_init(&job.next, 0);
    sd_run_workers(sd_chunks_worker, &job,
                   sd_cpus(chunks < max_threads ? (int) chunks : max_threads));
}
