/*
 * fuzz.h: what the libFuzzer harnesses share (tests/fuzz/fuzz_*.c, built
 * and run by "make fuzz"): the model folder whose tokenizers and configs
 * they start from (SD_FUZZ_MODEL, default build/demo-model: the project's
 * own demo model, "make fuzz" writes it), a private temporary folder, and
 * writing a file whole.
 *
 * Invariant: a harness aborts (and libFuzzer reports) only on a sanitizer
 * report or a broken invariant it checks itself, never on input the code
 * under test refuses: refusing is the expected answer to garbage.
 */

#ifndef SD_FUZZ_H
#define SD_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


#define FUZZ_CHECK(cond)                                                    \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "%s:%d: broken: %s\n", __FILE__, __LINE__,      \
                    #cond);                                                 \
            abort();                                                        \
        }                                                                   \
    } while (0)


static inline const char *
fuzz_model(void)
{
    const char  *p = getenv("SD_FUZZ_MODEL");

    return (p && *p) ? p : "build/demo-model";
}


/* A folder of this process under $TMPDIR, made once. */
static inline const char *
fuzz_tmpdir(void)
{
    static char  dir[256];
    const char  *t;

    if (dir[0] == '\0') {
        t = getenv("TMPDIR");
        snprintf(dir, sizeof(dir), "%s/sd-fuzz.XXXXXX", t ? t : "/tmp");
        if (mkdtemp(dir) == NULL) {
            perror("mkdtemp");
            abort();
        }
    }

    return dir;
}


static inline void
fuzz_write(const char *path, const uint8_t *data, size_t size)
{
    FILE  *f;

    f = fopen(path, "wb");
    if (f == NULL) {
        perror(path);
        abort();
    }
    if (size && fwrite(data, 1, size, f) != size) {
        perror(path);
        abort();
    }
    fclose(f);
}


/* A NUL-terminated copy, for the readers that take C strings. */
static inline char *
fuzz_cstr(const uint8_t *data, size_t size)
{
    char  *s = malloc(size + 1);

    if (s == NULL) {
        abort();
    }
    memcpy(s, data, size);
    s[size] = '\0';

    return s;
}

#endif /* SD_FUZZ_H */
