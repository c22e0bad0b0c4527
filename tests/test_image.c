/*
 * test_image.c: sd_png_encode / sd_png_info round trips and malformed input.
 *
 * Pixels are checked by decoding with libpng itself; the infotext chunk type
 * (tEXt for Latin-1 text, iTXt otherwise, as A1111 writes them) is checked
 * in the bytes. The encoder's own chunks are walked: every CRC, the IDAT
 * chunks' zlib stream inflated back to the filtered rows, sizes that
 * cut the rows into uneven strips, the same bytes from two encodings.
 * Malformed input must give SD_ERR_FORMAT, never a crash (run under
 * -fsanitize=address,undefined). The time of one 1024x1024 encoding is
 * printed, never checked.
 */

#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <png.h>
#include <zlib.h>

#include "t.h"
#include "image.h"
#include "sd.h"
#include "sd_err.h"


typedef struct {
    unsigned char  *buf;
    size_t          len;
    size_t          cap;
} t_buf;


static uint8_t *
t_make_rgb(int w, int h)
{
    uint8_t  *rgb;
    size_t    i, n = (size_t) w * (size_t) h * 3;

    rgb = malloc(n);
    if (rgb != NULL) {
        for (i = 0; i < n; i++) {
            rgb[i] = (uint8_t) (i * 7 + i / 5);
        }
    }
    return rgb;
}


/* Random pixels (a fixed xorshift stream): what deflate cannot shrink. */
static uint8_t *
t_make_noise(int w, int h, uint32_t seed)
{
    uint8_t   *rgb;
    uint32_t   x = seed | 1;
    size_t     i, n = (size_t) w * (size_t) h * 3;

    rgb = malloc(n);
    if (rgb != NULL) {
        for (i = 0; i < n; i++) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            rgb[i] = (uint8_t) (x >> 24);
        }
    }
    return rgb;
}


static uint32_t
t_get32(const unsigned char *p)
{
    return ((uint32_t) p[0] << 24) | ((uint32_t) p[1] << 16)
           | ((uint32_t) p[2] << 8) | p[3];
}


/* The chunks of this type. Walks the chunk list, not the bytes. */
static int
t_count_chunks(const unsigned char *png, size_t len, const char *type)
{
    size_t    pos = 8;
    uint32_t  n;
    int       k = 0;

    while (pos + 12 <= len) {
        n = t_get32(png + pos);
        k += memcmp(png + pos + 4, type, 4) == 0;
        if (n > len - pos - 12) {
            break;
        }
        pos += 12 + n;
    }
    return k;
}


static int
t_has_chunk(const unsigned char *png, size_t len, const char *type)
{
    return t_count_chunks(png, len, type) > 0;
}


static int
t_decode(const unsigned char *png, size_t len, uint8_t **rgb, int *w, int *h)
{
    png_image  img;

    memset(&img, 0, sizeof(img));
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&img, png, len)) {
        return -1;
    }
    img.format = PNG_FORMAT_RGB;
    *rgb = malloc(PNG_IMAGE_SIZE(img));
    if (*rgb == NULL) {
        png_image_free(&img);
        return -1;
    }
    if (!png_image_finish_read(&img, NULL, *rgb, 0, NULL)) {
        free(*rgb);
        *rgb = NULL;
        return -1;
    }
    *w = (int) img.width;
    *h = (int) img.height;
    return 0;
}


/*
 * The chunks one by one: signature, IHDR (w x h, 8-bit RGB), every CRC,
 * IDAT chunks in one run, IEND last; the IDAT data one zlib stream (its
 * Adler-32 checked by zlib) that inflates to h filtered rows of rgb (the
 * first Sub, the others Paeth).
 * Returns the number of IDAT chunks.
 */
static int
t_walk(const char *what, const unsigned char *png, size_t len,
    const uint8_t *rgb, int w, int h)
{
    static const unsigned char  sig[8] = { 0x89, 'P', 'N', 'G', '\r', '\n',
                                           0x1a, '\n' };
    unsigned char  *z, *raw, *r;
    const uint8_t  *px, *up;
    size_t          pos, zlen = 0, row, rawlen, got, i;
    uLong           src;
    uint32_t        n;
    int             nidat = 0, ended = 0, bad_crc = 0, runs = 0, last = 0;
    int             y, bad_rows = 0;

    T_CHECK(len > 8 + 25 && memcmp(png, sig, 8) == 0
            && t_get32(png + 8) == 13 && memcmp(png + 12, "IHDR", 4) == 0
            && t_get32(png + 16) == (uint32_t) w
            && t_get32(png + 20) == (uint32_t) h
            && memcmp(png + 24, "\x08\x02\x00\x00\x00", 5) == 0,
            "%s: signature or IHDR", what);

    z = malloc(len);
    if (z == NULL) {
        T_CHECK(0, "out of memory");
        return 0;
    }
    for (pos = 8; pos + 12 <= len && !ended; pos += 12 + n) {
        n = t_get32(png + pos);
        if (n > len - pos - 12) {
            break;
        }
        bad_crc += crc32(0, png + pos + 4, n + 4)
                   != t_get32(png + pos + 8 + n);
        if (memcmp(png + pos + 4, "IDAT", 4) == 0) {
            memcpy(z + zlen, png + pos + 8, n);
            zlen += n;
            nidat++;
            runs += !last;
        }
        last = memcmp(png + pos + 4, "IDAT", 4) == 0;
        ended = memcmp(png + pos + 4, "IEND", 4) == 0 && n == 0;
    }
    T_CHECK(ended && pos == len, "%s: no IEND at the end", what);
    T_CHECK(bad_crc == 0, "%s: %d bad CRCs", what, bad_crc);
    T_CHECK(nidat > 0 && runs == 1, "%s: %d IDAT chunks in %d runs", what,
            nidat, runs);

    row = 1 + (size_t) w * 3;
    rawlen = row * (size_t) h;
    raw = malloc(rawlen + 1);
    if (raw == NULL) {
        T_CHECK(0, "out of memory");
        free(z);
        return nidat;
    }
    got = rawlen + 1;
    src = zlen;
    T_CHECK(uncompress2(raw, &got, z, &src) == Z_OK && got == rawlen
            && src == zlen, "%s: the IDAT data is not one zlib stream of "
            "%zu bytes (%zu, %lu of %zu read)", what, rawlen, got, src, zlen);

    /* the first row Sub-filtered, the others Paeth, as the spec writes
       the predictor */
    for (y = 0; y < h && got == rawlen; y++) {
        r = raw + (size_t) y * row;
        px = rgb + (size_t) y * (row - 1);
        up = y > 0 ? px - (row - 1) : NULL;
        bad_rows += r[0] != (y == 0 ? 1 : 4);
        for (i = 0; i < row - 1; i++) {
            int  a = i >= 3 ? px[i - 3] : 0, b = up ? up[i] : 0;
            int  c = up && i >= 3 ? up[i - 3] : 0, p = a + b - c;
            int  pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
            int  pred = up == NULL ? a
                        : pa <= pb && pa <= pc ? a : pb <= pc ? b : c;

            if ((uint8_t) (r[1 + i] + pred) != px[i]) {
                bad_rows++;
                break;
            }
        }
    }
    T_CHECK(bad_rows == 0, "%s: %d rows not Sub- (first) or Paeth-filtered "
            "pixels", what, bad_rows);

    free(raw);
    free(z);
    return nidat;
}


/*
 * Encode rgb, decode it with libpng and read its text back; the chunks
 * checked by t_walk. Returns the PNG (malloc'd) for more checks, or NULL.
 */
static unsigned char *
t_round_trip_rgb(const char *what, const uint8_t *rgb, int w, int h,
    const char *text, const char *chunk, size_t *png_len)
{
    sd_err          err;
    unsigned char  *png = NULL;
    size_t          len = 0;
    uint8_t        *back = NULL;
    char           *got = NULL;
    int             gw = 0, gh = 0;

    sd_err_clear(&err);
    T_CHECK(sd_png_encode(&err, rgb, w, h, text, &png, &len) == SD_OK,
            "%s: encode: %s", what, err.msg);
    if (png == NULL) {
        return NULL;
    }

    T_CHECK(t_decode(png, len, &back, &gw, &gh) == 0, "%s: libpng decode",
            what);
    T_CHECK(gw == w && gh == h, "%s: decoded %dx%d", what, gw, gh);
    T_CHECK(back != NULL && gw == w && gh == h
            && memcmp(back, rgb, (size_t) w * (size_t) h * 3) == 0,
            "%s: pixels differ", what);

    T_CHECK(sd_png_info(&err, png, len, &got, &gw, &gh) == SD_OK,
            "%s: info: %s", what, err.msg);
    T_CHECK(gw == w && gh == h, "%s: info size %dx%d", what, gw, gh);
    if (text == NULL) {
        T_CHECK(got == NULL, "%s: text where none was stored", what);
    } else {
        T_CHECK(got != NULL && strcmp(got, text) == 0,
                "%s: text differs: \"%.60s\"", what, got ? got : "(null)");
    }
    if (chunk != NULL) {
        T_CHECK(t_has_chunk(png, len, chunk), "%s: no %s chunk", what,
                chunk);
        T_CHECK(!t_has_chunk(png, len, strcmp(chunk, "tEXt") ? "tEXt"
                                                              : "iTXt"),
                "%s: the other text chunk type is present too", what);
    }
    t_walk(what, png, len, rgb, w, h);

    free(got);
    free(back);
    *png_len = len;
    return png;
}


static void
t_round_trip(const char *what, int w, int h, const char *text,
    const char *chunk)
{
    unsigned char  *png;
    uint8_t        *rgb;
    size_t          len;

    rgb = t_make_rgb(w, h);
    if (rgb == NULL) {
        T_CHECK(0, "out of memory");
        return;
    }
    png = t_round_trip_rgb(what, rgb, w, h, text, chunk, &len);
    free(png);
    free(rgb);
}


static void
t_write_fn(png_structp png, png_bytep data, size_t n)
{
    t_buf          *b = png_get_io_ptr(png);
    unsigned char  *p;

    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2;
        p = realloc(b->buf, b->cap);
        if (p == NULL) {
            png_error(png, "out of memory");
        }
        b->buf = p;
    }
    memcpy(b->buf + b->len, data, n);
    b->len += n;
}


static void
t_flush_fn(png_structp png)
{
    (void) png;
}


/* A PNG whose zTXt "parameters" chunk follows the image data. */
static int
t_write_text_after_idat(t_buf *b, const uint8_t *rgb, int w, int h,
    const char *latin1)
{
    png_structp  png;
    png_infop    info;
    png_text     t;
    int          y;

    png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    if (png == NULL) {
        return -1;
    }
    info = png_create_info_struct(png);
    if (info == NULL || setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        return -1;
    }

    png_set_write_fn(png, b, t_write_fn, t_flush_fn);
    png_set_IHDR(png, info, (png_uint_32) w, (png_uint_32) h, 8,
                 PNG_COLOR_TYPE_RGB, PNG_INTERLACE_ADAM7,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    png_set_interlace_handling(png);
    for (y = 0; y < 7 * h; y++) {
        png_write_row(png, rgb + (size_t) (y % h) * (size_t) w * 3);
    }

    memset(&t, 0, sizeof(t));
    t.key = (png_charp) "parameters";
    t.text = (png_charp) latin1;
    t.text_length = strlen(latin1);
    t.compression = PNG_TEXT_COMPRESSION_zTXt;
    png_set_text(png, info, &t, 1);
    png_write_end(png, info);

    png_destroy_write_struct(&png, &info);
    return 0;
}


static void
t_text_after_idat(void)
{
    sd_err    err;
    t_buf     b = { NULL, 0, 0 };
    uint8_t  *rgb;
    char     *got = NULL;
    int       w = 0, h = 0;

    sd_err_clear(&err);
    rgb = t_make_rgb(9, 5);
    T_CHECK(rgb != NULL && t_write_text_after_idat(&b, rgb, 9, 5,
                                                   "steps: 20 \xe9t\xe9")
            == 0, "writing the zTXt-after-IDAT PNG");
    if (b.buf != NULL) {
        T_CHECK(sd_png_info(&err, b.buf, b.len, &got, &w, &h) == SD_OK,
                "zTXt after IDAT: %s", err.msg);
        T_CHECK(got != NULL && strcmp(got, "steps: 20 \xc3\xa9t\xc3\xa9") == 0,
                "zTXt after IDAT: text \"%s\"", got ? got : "(null)");
        T_CHECK(w == 9 && h == 5, "zTXt after IDAT: size %dx%d", w, h);
    }
    free(got);
    free(b.buf);
    free(rgb);
}


/* Every truncation and many single-byte corruptions: error or right text. */
static void
t_malformed(const char *text)
{
    sd_err          err;
    unsigned char  *png = NULL, *bad;
    size_t          len = 0, i;
    uint8_t        *rgb;
    char           *got;
    int             w, h, bad_status = 0, bad_text = 0;
    sd_status       s;

    sd_err_clear(&err);
    rgb = t_make_rgb(13, 11);
    if (rgb == NULL
        || sd_png_encode(&err, rgb, 13, 11, text, &png, &len) != SD_OK)
    {
        T_CHECK(0, "encode: %s", err.msg);
        free(rgb);
        return;
    }

    bad = malloc(len);
    if (bad == NULL) {
        T_CHECK(0, "out of memory");
        free(png);
        free(rgb);
        return;
    }

    for (i = 0; i < len; i++) {
        memcpy(bad, png, i);
        sd_err_clear(&err);
        got = NULL;
        s = sd_png_info(&err, bad, i, &got, &w, &h);
        if (s == SD_OK) {
            /* legal only once the text chunk, before IDAT, is complete */
            bad_text += text == NULL || got == NULL || strcmp(got, text) != 0;
        } else {
            bad_status += s != SD_ERR_FORMAT || got != NULL;
        }
        free(got);
    }
    T_CHECK(bad_status == 0 && bad_text == 0,
            "truncations (text %s): %d wrong statuses, %d wrong texts",
            text ? "present" : "absent", bad_status, bad_text);

    bad_status = 0;
    for (i = 8; i < len; i++) {
        memcpy(bad, png, len);
        bad[i] ^= (unsigned char) (0x5a + i);
        sd_err_clear(&err);
        got = NULL;
        s = sd_png_info(&err, bad, len, &got, &w, &h);
        bad_status += s != SD_OK && s != SD_ERR_FORMAT;
        free(got);
    }
    T_CHECK(bad_status == 0, "corruptions: %d unexpected statuses",
            bad_status);

    free(bad);
    free(png);
    free(rgb);
}


/*
 * sd_cpus follows the thread's affinity (taskset, a cpuset), and the PNG
 * encoder's bytes do not depend on how many threads compress them: a
 * 1024x1024 image encoded with every CPU the thread may use and again
 * pinned to one (where sd_cpus says 1 and the strips go to one thread).
 */
static void
t_cpus_affinity(void)
{
    cpu_set_t       all, one;
    sd_err          err;
    uint8_t        *rgb;
    unsigned char  *a = NULL, *b = NULL;
    size_t          la = 0, lb = 0;
    int             i, n;

    if (sched_getaffinity(0, sizeof(all), &all) != 0) {
        T_SKIP("sched_getaffinity: no affinity mask here");
        return;
    }
    n = CPU_COUNT(&all);
    T_CHECK(sd_cpus(1024) == n && sd_cpus(1) == 1,
            "sd_cpus: %d and %d for an affinity of %d CPUs", sd_cpus(1024),
            sd_cpus(1), n);
    rgb = t_make_noise(1024, 1024, 4242);
    T_CHECK(rgb != NULL, "out of memory");
    if (rgb == NULL) {
        return;
    }
    memset(&err, 0, sizeof(err));
    T_CHECK(sd_png_encode(&err, rgb, 1024, 1024, "cpus", &a, &la) == SD_OK,
            "encode on %d CPUs: %s", n, err.msg);

    for (i = 0; i < CPU_SETSIZE && !CPU_ISSET(i, &all); i++) {
    }
    CPU_ZERO(&one);
    CPU_SET(i, &one);
    if (sched_setaffinity(0, sizeof(one), &one) == 0) {
        T_CHECK(sd_cpus(16) == 1, "sd_cpus pinned to CPU %d: %d", i,
                sd_cpus(16));
        T_CHECK(sd_png_encode(&err, rgb, 1024, 1024, "cpus", &b, &lb)
                == SD_OK, "encode on one CPU: %s", err.msg);
        T_CHECK(sched_setaffinity(0, sizeof(all), &all) == 0,
                "affinity restored");
        T_CHECK(a && b && la == lb && memcmp(a, b, la) == 0,
                "the PNG on one CPU differs from the PNG on %d (%zu and %zu "
                "bytes)", n, la, lb);
    } else {
        T_SKIP("sched_setaffinity refused here");
    }
    free(a);
    free(b);
    free(rgb);
}


/*
 * Random pixels at sizes of one strip, of a few uneven strips and of many,
 * with each kind of text: the same pixels, the same text, and the same
 * bytes from a second encoding.
 */
static void
t_noise(void)
{
    static const struct {
        int  w;
        int  h;
    } sizes[] = {
        { 1, 1 }, { 7, 3 }, { 63, 129 }, { 64, 64 }, { 300, 517 },
        { 1024, 1024 }
    };
    static const struct {
        const char  *text;
        const char  *chunk;
    } texts[] = {
        { "a cat\nSteps: 28, Sampler: Euler, caf\xc3\xa9 \xc2\xa9", "tEXt" },
        { "\xe7\x8c\xab \xf0\x9f\x90\xb1\nSteps: 28", "iTXt" },
        { NULL, NULL }
    };
    sd_err          err;
    unsigned char  *png, *again;
    uint8_t        *rgb;
    size_t          len, len2, k, j;
    char            what[64];
    int             w, h;

    for (k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        w = sizes[k].w;
        h = sizes[k].h;
        rgb = t_make_noise(w, h, (uint32_t) (w * 7919 + h));
        if (rgb == NULL) {
            T_CHECK(0, "out of memory");
            return;
        }

        for (j = 0; j < sizeof(texts) / sizeof(texts[0]); j++) {
            snprintf(what, sizeof(what), "noise %dx%d %s", w, h,
                     texts[j].chunk ? texts[j].chunk : "no text");
            png = t_round_trip_rgb(what, rgb, w, h, texts[j].text,
                                   texts[j].chunk, &len);
            if (png == NULL) {
                continue;
            }

            sd_err_clear(&err);
            again = NULL;
            len2 = 0;
            T_CHECK(sd_png_encode(&err, rgb, w, h, texts[j].text, &again,
                                  &len2) == SD_OK
                    && len2 == len && memcmp(again, png, len) == 0,
                    "%s: a second encoding gave other bytes", what);
            if (w == 1024) {
                T_CHECK(t_count_chunks(png, len, "IDAT") > 1,
                        "%s: one IDAT chunk: no strips", what);
            }
            free(again);
            free(png);
        }
        free(rgb);
    }
}


/* A damaged IDAT chunk (its CRC, or a data byte): libpng refuses it. */
static void
t_bad_crc(void)
{
    sd_err          err;
    unsigned char  *png = NULL;
    uint8_t        *rgb, *back;
    size_t          len = 0, pos;
    uint32_t        n = 0;
    int             w, h, k;

    sd_err_clear(&err);
    rgb = t_make_noise(63, 129, 5);
    if (rgb == NULL
        || sd_png_encode(&err, rgb, 63, 129, "Steps: 4", &png, &len) != SD_OK)
    {
        T_CHECK(0, "encode: %s", err.msg);
        free(rgb);
        return;
    }

    for (pos = 8; pos + 12 <= len; pos += 12 + n) {
        n = t_get32(png + pos);
        if (memcmp(png + pos + 4, "IDAT", 4) == 0) {
            break;
        }
    }
    T_CHECK(pos + 12 <= len, "no IDAT chunk");

    for (k = 0; k < 2 && pos + 12 <= len; k++) {
        /* the CRC's last byte, then a byte in the middle of the data */
        png[k == 0 ? pos + 11 + n : pos + 8 + n / 2] ^= 0x20;
        back = NULL;
        T_CHECK(t_decode(png, len, &back, &w, &h) != 0,
                "libpng decoded a PNG with a damaged IDAT %s",
                k == 0 ? "CRC" : "data byte");
        free(back);
        png[k == 0 ? pos + 11 + n : pos + 8 + n / 2] ^= 0x20;
    }

    free(png);
    free(rgb);
}


/* Printed, never checked: the machine's speed is no test result. */
static void
t_encode_time(void)
{
    struct timespec  t0, t1;
    sd_err           err;
    unsigned char   *png;
    uint8_t         *rgb;
    size_t           len = 0;
    double           ms, best = 0;
    int              k;

    rgb = t_make_noise(1024, 1024, 42);
    if (rgb == NULL) {
        return;
    }
    for (k = 0; k < 5; k++) {
        sd_err_clear(&err);
        png = NULL;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        if (sd_png_encode(&err, rgb, 1024, 1024, "Steps: 28", &png, &len)
            != SD_OK)
        {
            break;
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        free(png);
        ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
        best = (k == 0 || ms < best) ? ms : best;
    }
    printf("   sd_png_encode 1024x1024 random pixels: %.1f ms (best of 5), "
           "%zu bytes\n", best, len);
    free(rgb);
}


static void
t_bad_input(void)
{
    static const unsigned char  junk[] = "GIF89a not a png at all";
    static const unsigned char  sig[8] = { 0x89, 'P', 'N', 'G', '\r', '\n',
                                           0x1a, '\n' };
    sd_err          err;
    unsigned char  *png = (unsigned char *) "x";
    size_t          len = 1;
    char           *got = (char *) "x";
    int             w = 1, h = 1;
    uint8_t         px[3] = { 1, 2, 3 };

    sd_err_clear(&err);
    T_CHECK(sd_png_info(&err, junk, sizeof(junk), &got, &w, &h)
            == SD_ERR_FORMAT && got == NULL, "junk accepted");
    sd_err_clear(&err);
    T_CHECK(sd_png_info(&err, sig, sizeof(sig), &got, &w, &h)
            == SD_ERR_FORMAT && got == NULL, "bare signature accepted");
    sd_err_clear(&err);
    T_CHECK(sd_png_info(&err, NULL, 0, &got, &w, &h) == SD_ERR_FORMAT,
            "NULL input accepted");
    T_CHECK(err.msg[0] != '\0', "no error message");

    sd_err_clear(&err);
    T_CHECK(sd_png_encode(&err, px, 0, 1, NULL, &png, &len) == SD_ERR_INVALID
            && png == NULL && len == 0, "zero width accepted");
    sd_err_clear(&err);
    T_CHECK(sd_png_encode(&err, NULL, 1, 1, NULL, &png, &len)
            == SD_ERR_INVALID, "NULL pixels accepted");
    sd_err_clear(&err);
    T_CHECK(sd_png_encode(&err, px, 1000001, 1, NULL, &png, &len)
            == SD_ERR_INVALID && png == NULL && len == 0,
            "a width over libpng's limit accepted");
}


/*
 * sd_base64_encode against a bit-by-bit encoder: every length up to 200
 * (the padding of each), "Man" and RFC 4648's vectors, and 3 MB of noise
 * (the threaded path, chunks meeting inside a group's worth of bytes).
 */
static void
t_base64(void)
{
    static const char  *abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstu"
                              "vwxyz0123456789+/";
    static const char  *rfc[7][2] = {
        { "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" },
        { "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" },
        { "foobar", "Zm9vYmFy" },
    };
    size_t          n, i, k, big = 3 * 1024 * 1024 + 2;
    unsigned char  *src;
    char           *got, *want;
    uint32_t        acc, x = 12345;
    int             bits, bad = 0, j;
    char            buf[16];

    for (j = 0; j < 7; j++) {
        n = strlen(rfc[j][0]);
        memset(buf, 0, sizeof(buf));
        T_CHECK(sd_base64_encode(buf, (const unsigned char *) rfc[j][0], n)
                == strlen(rfc[j][1]) && strcmp(buf, rfc[j][1]) == 0,
                "base64 of \"%s\": \"%s\"", rfc[j][0], buf);
    }

    src = malloc(big);
    got = malloc(SD_BASE64_LEN(big) + 1);
    want = malloc(SD_BASE64_LEN(big) + 1);
    if (src == NULL || got == NULL || want == NULL) {
        T_CHECK(0, "out of memory");
        goto done;
    }
    for (i = 0; i < big; i++) {
        x = x * 1103515245u + 12345u;
        src[i] = (unsigned char) (x >> 16);
    }
    for (n = 0; n <= big; n = n < 200 ? n + 1 : big) {
        /* bit by bit: 6 bits a character, zero bits, then '=' */
        k = 0;
        acc = 0;
        bits = 0;
        for (i = 0; i < n; i++) {
            acc = (acc << 8) | src[i];
            bits += 8;
            while (bits >= 6) {
                want[k++] = abc[(acc >> (bits - 6)) & 63];
                bits -= 6;
            }
        }
        if (bits > 0) {
            want[k++] = abc[(acc << (6 - bits)) & 63];
        }
        while (k % 4) {
            want[k++] = '=';
        }
        memset(got, '#', SD_BASE64_LEN(n) + 1);
        bad += sd_base64_encode(got, src, n) != k
               || memcmp(got, want, k) != 0 || got[k] != '#';
        if (n == big) {
            break;
        }
    }
    T_CHECK(bad == 0, "base64: %d of 201 lengths differ from a bit-by-bit "
            "encoder (or wrote past the end)", bad);

done:
    free(src);
    free(got);
    free(want);
}


int
main(void)
{
    char    *big;
    size_t   i;

    t_round_trip("ascii", 37, 23,
                 "a photo of an astronaut\nSteps: 28, Sampler: Euler, "
                 "CFG scale: 4.5, Seed: 42, Size: 1024x1024", "tEXt");
    t_round_trip("no text", 8, 8, NULL, NULL);
    t_round_trip("empty text", 1, 1, "", "tEXt");
    t_round_trip("latin-1", 16, 3, "caf\xc3\xa9 na\xc3\xafve \xc2\xa9 "
                 "\xc3\xbf", "tEXt");
    t_round_trip("utf-8", 5, 7, "\xe7\x8c\xab \xf0\x9f\x90\xb1 \xce\xa9 "
                 "caf\xc3\xa9", "iTXt");
    t_round_trip("invalid utf-8", 2, 2, "bad \xc3 byte \xff", "iTXt");

    big = malloc(200001);
    if (big != NULL) {
        for (i = 0; i < 200000; i++) {
            big[i] = (char) ('a' + i % 26);
        }
        big[200000] = '\0';
        t_round_trip("200 KB text", 64, 64, big, "tEXt");
        free(big);
    }

    t_noise();
    t_cpus_affinity();
    t_base64();
    t_text_after_idat();
    t_malformed("Steps: 4, Seed: 42");
    t_malformed(NULL);
    t_bad_crc();
    t_bad_input();
    t_encode_time();

    return T_DONE();
}
