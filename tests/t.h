/*
 * t.h: a tiny test helper, not a framework. Each tests/test_*.c is its own
 * program; T_CHECK records one assertion, T_SKIP one skipped case with its
 * reason, and T_DONE() prints "N passed, N failed, N skipped" and returns
 * the exit status. tests/run.sh adds the programs' counts together.
 *
 * Golden helpers find the fixtures through SD_FIXTURES (default
 * ../shared/fixtures, relative to the project root).
 */

#ifndef SD_T_H
#define SD_T_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static int  t_passed, t_failed, t_skipped;

#define T_CHECK(cond, ...)                                                  \
    do {                                                                    \
        if (cond) {                                                         \
            t_passed++;                                                     \
        } else {                                                            \
            t_failed++;                                                     \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                     \
            printf(__VA_ARGS__);                                            \
            printf("\n");                                                   \
        }                                                                   \
    } while (0)

#define T_SKIP(...)                                                         \
    do {                                                                    \
        t_skipped++;                                                        \
        printf("skip %s:%d: ", __FILE__, __LINE__);                         \
        printf(__VA_ARGS__);                                                \
        printf("\n");                                                       \
    } while (0)

#define T_DONE()                                                            \
    (printf("%d passed, %d failed, %d skipped\n", t_passed, t_failed,       \
            t_skipped),                                                     \
     t_failed ? 1 : 0)


static inline const char *
t_fixtures(void)
{
    const char  *p = getenv("SD_FIXTURES");

    return (p && *p) ? p : "../shared/fixtures";
}


/* ||a - b|| / ||b||, in double. */
static inline double
t_rel_l2(const float *a, const float *b, size_t n)
{
    double  num = 0, den = 0, d;
    size_t  i;

    for (i = 0; i < n; i++) {
        d = (double) a[i] - (double) b[i];
        num += d * d;
        den += (double) b[i] * (double) b[i];
    }
    if (den == 0) {
        return sqrt(num);
    }
    return sqrt(num / den);
}

#endif /* SD_T_H */
