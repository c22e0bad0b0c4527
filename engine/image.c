/*
 * image.c: PNG encoding to memory (own chunks, zlib), and infotext reading
 * through libpng.
 *
 * The encoder cuts the image into strips of a fixed number of rows and
 * compresses them in parallel, as pigz does: a thread takes a strip, filters
 * its rows one by one (Paeth; the image's first row Sub) and deflates them
 * at level 1 with zlib's run-length strategy (Z_RLE) into a raw deflate
 * stream that a sync flush ends (the last strip: the final block). One after
 * another, behind a zlib header and before the Adler-32 of all the filtered
 * bytes, the strips make one zlib stream; each strip's data is one IDAT
 * chunk, written straight into a place reserved for it in the PNG buffer,
 * and the chunks are moved together at the end. A strip starts with an
 * empty window (no dictionary from the one before): 0.3% larger on a photo,
 * 3% on a smooth gradient, and nothing to hash twice. Paeth and Z_RLE, on
 * one core at 1024x1024 (measured 2026-12-03): a photo 1.51 MB in 30 ms,
 * as small as libpng's defaults (level 6, every filter tried per row: 1.50
 * MB, ~260 ms); Sub with level 1's string matching, as before, made 1.96 MB
 * in ~60 ms; noise (random weights' images) 19 ms against ~57. The strips
 * then use up to SD_PNG_MAX_THREADS cores.
 *
 * The infotext travels as A1111 (through PIL) writes it: a tEXt chunk
 * "parameters" in Latin-1 when every character fits, else an uncompressed
 * iTXt chunk "parameters" in UTF-8. Callers always see UTF-8: the encoder
 * takes UTF-8 and the reader converts tEXt / zTXt Latin-1 back. The reader
 * stops at the image data when the text precedes it (damage further on goes
 * unnoticed: it reads metadata, it does not validate images), and decodes
 * the rows only to reach text chunks placed after IDAT.
 *
 * Invariants: the encoder's bytes depend on the pixels and the text alone
 * (and zlib's version), never on the number of CPUs or threads: the strips
 * are cut by the image's width alone, and a strip's bytes do not depend on
 * which thread compresses it. The compressing threads are joined before
 * sd_png_encode() returns; each writes only the strips it takes and their
 * places in the PNG buffer. libpng reports errors by longjmp: every
 * function that calls setjmp keeps its mutable state in a context struct
 * owned by its caller (never in its own locals), so nothing is
 * indeterminate after the jump, and the caller frees what the context
 * holds on every path.
 */

#include <setjmp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>
#define ZLIB_CONST
#include <zlib.h>

#include "image.h"
#include "sd.h"


#define SD_PNG_KEY          "parameters"
/* libpng's own limits, which a reader applies too */
#define SD_PNG_MAX_SIDE     1000000
/* a chunk's length is below 2^31; the iTXt header takes 15 bytes */
#define SD_PNG_TEXT_MAX     (0x7fffffffu - 15)
#define SD_PNG_ZLEVEL       1
/* a strip holds at least this many filtered bytes (one row at least) */
#ifndef SD_PNG_STRIP_KB
#define SD_PNG_STRIP_KB     128
#endif
#define SD_PNG_STRIP_BYTES  (SD_PNG_STRIP_KB * 1024)
#define SD_PNG_MAX_THREADS  16
/* fewer strips (under 384 to 512 KiB of rows; 512x256 has 3): no threads */
#define SD_PNG_MIN_STRIPS   4


/* The reader's state, kept outside the frame that calls setjmp. */
typedef struct {
    png_structp           png;
    png_infop             info;
    char                  msg[256];

    const unsigned char  *in;
    size_t                in_len;
    size_t                in_pos;
    unsigned char        *row;
    char                 *found;    /* UTF-8, malloc'd */
    int                   nomem;
    int                   w;
    int                   h;
} sd_png_ctx;


/*
 * One strip of rows and its IDAT chunk, whose data deflate writes at its
 * place in the PNG buffer (off: where the chunk would begin; cap bytes of
 * data reserved).
 */
typedef struct {
    int             y0;
    int             rows;
    size_t          off;
    size_t          cap;
    size_t          out_len;
    uint32_t        adler;              /* of the strip's filtered rows */
    uint32_t        crc;                /* of "IDAT" and the data */
} sd_png_strip;


/*
 * One encoding: the image, the strips, the PNG buffer being filled; the
 * compressing threads share it, each writing only the strips it takes
 * (and the places of their chunks).
 */
typedef struct {
    const uint8_t  *rgb;                /* (h, w, 3) */
    int             w;
    int             h;
    size_t          row;                /* 1 + 3w: a filtered row */
    sd_png_strip   *strips;
    int             n;
    unsigned char  *png;                /* malloc'd */
    atomic_int      next;               /* the next strip to take */
    atomic_int      failed;             /* Z_OK, or the first zlib error */
} sd_png_job;


static void sd_png_error(png_structp png, png_const_charp msg);
static void sd_png_warning(png_structp png, png_const_charp msg);
static void sd_png_read_data(png_structp png, png_bytep data, size_t n);
static char *sd_strdup(const char *s);
static int sd_utf8_to_latin1(const char *s, char **out);
static char *sd_latin1_to_utf8(const char *s, size_t n);
static unsigned char *sd_png_put32(unsigned char *p, uint32_t v);
static unsigned char *sd_png_chunk_begin(unsigned char *p, const char *type);
static unsigned char *sd_png_chunk_end(unsigned char *p, size_t n);
static void sd_png_filter(unsigned char *restrict dst,
    const uint8_t *restrict rgb, const uint8_t *restrict up, int w);
static inline void sd_png_paeth(unsigned char *restrict dst,
    const uint8_t *restrict rgb, const uint8_t *restrict up, size_t n);
static size_t sd_png_bound(size_t len);
static int sd_png_strip_deflate(sd_png_job *job, z_stream *zs,
    unsigned char *row, int i);
static void *sd_png_job_run(void *arg);
static int sd_png_job_start(sd_png_job *job);
static size_t sd_png_strips(sd_png_job *job, size_t off);
static unsigned char *sd_png_text_put(unsigned char *p, const char *text,
    size_t tlen, int latin1);
static unsigned char *sd_png_head(unsigned char *p, const sd_png_job *job,
    const char *text, size_t tlen, int latin1);
static unsigned char *sd_png_tail(unsigned char *p, sd_png_job *job);
static int sd_png_find_text(sd_png_ctx *ctx);
static int sd_png_info_run(sd_png_ctx *ctx);


static void
sd_png_error(png_structp png, png_const_charp msg)
{
    sd_png_ctx  *ctx = png_get_error_ptr(png);

    snprintf(ctx->msg, sizeof(ctx->msg), "%s", msg ? msg : "libpng error");
    png_longjmp(png, 1);
}


static void
sd_png_warning(png_structp png, png_const_charp msg)
{
    (void) png;
    (void) msg;                         /* the library never prints */
}


static void
sd_png_read_data(png_structp png, png_bytep data, size_t n)
{
    sd_png_ctx  *ctx = png_get_io_ptr(png);

    if (n > ctx->in_len - ctx->in_pos) {
        png_error(png, "truncated PNG data");
    }
    memcpy(data, ctx->in + ctx->in_pos, n);
    ctx->in_pos += n;
}


static char *
sd_strdup(const char *s)
{
    size_t   n = strlen(s) + 1;
    char    *d;

    d = malloc(n);
    if (d != NULL) {
        memcpy(d, s, n);
    }
    return d;
}


/*
 * If s is valid UTF-8 with every code point below 256, store its Latin-1
 * form in *out (malloc'd) and return 1; return 0 when it does not fit and
 * -1 when out of memory.
 */
static int
sd_utf8_to_latin1(const char *s, char **out)
{
    const unsigned char  *p = (const unsigned char *) s;
    char                 *d;
    size_t                i;

    *out = NULL;
    for (i = 0; p[i]; i++) {
        if (p[i] >= 0x80) {
            if ((p[i] != 0xc2 && p[i] != 0xc3) || (p[i + 1] & 0xc0) != 0x80)
            {
                return 0;
            }
            i++;
        }
    }

    d = malloc(i + 1);
    if (d == NULL) {
        return -1;
    }
    *out = d;

    for (; *p; p++) {
        if (*p >= 0x80) {
            *d++ = (char) (((p[0] & 0x03) << 6) | (p[1] & 0x3f));
            p++;
        } else {
            *d++ = (char) *p;
        }
    }
    *d = '\0';

    return 1;
}


static char *
sd_latin1_to_utf8(const char *s, size_t n)
{
    const unsigned char  *p = (const unsigned char *) s;
    char                 *out, *d;
    size_t                i;

    out = malloc(2 * n + 1);
    if (out == NULL) {
        return NULL;
    }

    d = out;
    for (i = 0; i < n; i++) {
        if (p[i] >= 0x80) {
            *d++ = (char) (0xc0 | (p[i] >> 6));
            *d++ = (char) (0x80 | (p[i] & 0x3f));
        } else {
            *d++ = (char) p[i];
        }
    }
    *d = '\0';

    return out;
}


static unsigned char *
sd_png_put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char) (v >> 24);
    p[1] = (unsigned char) (v >> 16);
    p[2] = (unsigned char) (v >> 8);
    p[3] = (unsigned char) v;
    return p + 4;
}


/* Room for a chunk at p: its type written, the data to follow. */
static unsigned char *
sd_png_chunk_begin(unsigned char *p, const char *type)
{
    memcpy(p + 4, type, 4);
    return p + 8;
}


/*
 * A chunk at p: length, type and the n data bytes already written after
 * them get their CRC; returns the end of the chunk.
 */
static unsigned char *
sd_png_chunk_end(unsigned char *p, size_t n)
{
    uint32_t  crc;

    sd_png_put32(p, (uint32_t) n);
    crc = (uint32_t) crc32(0, p + 4, (uInt) (4 + n));

    return sd_png_put32(p + 8 + n, crc);
}


/*
 * One row of w pixels filtered into dst (1 + 3w bytes, the filter type
 * first): Paeth (type 4) against the row above, up (NULL for the image's
 * first row, where Paeth is Sub: each byte less the same channel of the
 * pixel to its left). The predictor of PNG's specification, in branch-free
 * form: a (left), b (above) or c (above left), whichever is nearest to
 * a + b - c, ties to a then b.
 */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("avx2", "default")))
#endif
static void
sd_png_filter(unsigned char *restrict dst, const uint8_t *restrict rgb,
    const uint8_t *restrict up, int w)
{
    size_t  n, i;

    n = (size_t) w * 3;
    dst[1] = (unsigned char) (rgb[0] - (up ? up[0] : 0));
    dst[2] = (unsigned char) (rgb[1] - (up ? up[1] : 0));
    dst[3] = (unsigned char) (rgb[2] - (up ? up[2] : 0));
    if (up == NULL) {
        dst[0] = 1;
        for (i = 3; i < n; i++) {
            dst[1 + i] = (unsigned char) (rgb[i] - rgb[i - 3]);
        }
        return;
    }
    dst[0] = 4;
    /* blocks of a fixed 48 bytes, which compilers vectorize at -O2 */
    for (i = 3; i + 48 <= n; i += 48) {
        sd_png_paeth(dst + 1 + i, rgb + i, up + i, 48);
    }
    sd_png_paeth(dst + 1 + i, rgb + i, up + i, n - i);
}


/* Paeth on n bytes whose left neighbours lie 3 bytes before (above). */
static inline void
sd_png_paeth(unsigned char *restrict dst, const uint8_t *restrict rgb,
    const uint8_t *restrict up, size_t n)
{
    size_t  k;
    int     a, b, c, pa, pb, pc, pr;

    for (k = 0; k < n; k++) {
        a = rgb[k - 3];
        b = up[k];
        c = up[k - 3];
        pa = abs(b - c);
        pb = abs(a - c);
        pc = abs(a + b - 2 * c);
        pr = (pb < pa && pb <= pc) ? b : a;
        pr = (pc < pa && pc < pb) ? c : pr;
        dst[k] = (unsigned char) (rgb[k] - pr);
    }
}


/*
 * The room a strip's deflate data may take: compressBound(), zlib's bound
 * for compress2() at any level, holds for the same stream with the same
 * window and memory level, raw here (6 bytes less); plus 64 for the sync
 * flush's empty stored block (5 bytes) and the zlib header or Adler-32.
 * Anything beyond would be refused, never written.
 */
static size_t
sd_png_bound(size_t len)
{
    return (size_t) compressBound((uLong) len) + 64;
}


/*
 * Compress strip i into its place in the PNG buffer: the zlib header
 * first for the first strip, then the raw deflate data of its rows,
 * filtered one by one into row, ended by a sync flush (the last strip: by
 * the final block, 4 bytes kept free for the Adler-32). Returns Z_OK or
 * the failing zlib code.
 */
static int
sd_png_strip_deflate(sd_png_job *job, z_stream *zs, unsigned char *row,
    int i)
{
    sd_png_strip   *st = &job->strips[i];
    const uint8_t  *px;
    unsigned char  *out;
    uLong           adler;
    int             y, rc, flush, last;

    rc = deflateReset(zs);
    if (rc != Z_OK) {
        return rc;
    }

    out = job->png + st->off + 8;       /* the IDAT chunk's data */
    st->out_len = 0;
    if (i == 0) {
        out[0] = 0x78;                  /* deflate, 32 KiB window */
        out[1] = 0x01;                  /* level 1; 0x7801 % 31 == 0 */
        st->out_len = 2;
    }
    zs->next_out = out + st->out_len;
    zs->avail_out = (uInt) (st->cap - st->out_len - 4);

    last = (i == job->n - 1);
    adler = adler32(0, NULL, 0);
    px = job->rgb + (size_t) st->y0 * (job->row - 1);

    for (y = 0; y < st->rows; y++) {
        sd_png_filter(row, px, st->y0 + y > 0 ? px - (job->row - 1) : NULL,
                      job->w);
        px += job->row - 1;
        adler = adler32(adler, row, (uInt) job->row);

        flush = Z_NO_FLUSH;
        if (y == st->rows - 1) {
            flush = last ? Z_FINISH : Z_SYNC_FLUSH;
        }
        zs->next_in = row;
        zs->avail_in = (uInt) job->row;

        rc = deflate(zs, flush);
        if (rc == Z_STREAM_ERROR) {
            return rc;
        }
        if (zs->avail_in > 0 || zs->avail_out == 0) {
            return Z_BUF_ERROR;         /* beyond the bound: never seen */
        }
    }
    if (last && rc != Z_STREAM_END) {
        return Z_BUF_ERROR;
    }

    st->out_len = st->cap - 4 - zs->avail_out;
    st->adler = (uint32_t) adler;
    st->crc = (uint32_t) crc32(crc32(0, (const Bytef *) "IDAT", 4), out,
                               (uInt) st->out_len);
    return Z_OK;
}


/*
 * A compressing thread: strips in the order taken, until none is left or
 * one failed; its own compressor and a filtered row, reused strip to strip
 * (a row is filtered where it is compressed, while in the cache).
 */
static void *
sd_png_job_run(void *arg)
{
    sd_png_job     *job = arg;
    z_stream        zs;
    unsigned char  *row;
    int             i, rc, none;

    memset(&zs, 0, sizeof(zs));
    row = malloc(job->row);
    rc = Z_MEM_ERROR;
    if (row != NULL) {
        rc = deflateInit2(&zs, SD_PNG_ZLEVEL, Z_DEFLATED, -15, 8,
                          Z_RLE);
    }

    while (rc == Z_OK && atomic_load(&job->failed) == Z_OK) {
        i = atomic_fetch_add(&job->next, 1);
        if (i >= job->n) {
            break;
        }
        rc = sd_png_strip_deflate(job, &zs, row, i);
    }

    if (rc != Z_OK) {
        none = Z_OK;
        atomic_compare_exchange_strong(&job->failed, &none, rc);
    }
    deflateEnd(&zs);
    free(row);

    return NULL;
}


/*
 * Compress every strip: up to SD_PNG_MAX_THREADS threads, the calling one
 * among them, take strips from one counter; a thread that cannot be
 * started leaves its share to the others. Returns Z_OK or the first
 * failing zlib code.
 */
static int
sd_png_job_start(sd_png_job *job)
{
    int  nt = 1;

    atomic_init(&job->next, 0);
    atomic_init(&job->failed, Z_OK);

    if (job->n >= SD_PNG_MIN_STRIPS) {
        nt = sd_cpus(SD_PNG_MAX_THREADS);
        nt = nt < job->n ? nt : job->n;
    }
    sd_run_workers(sd_png_job_run, job, nt);

    return atomic_load(&job->failed);
}


/*
 * Cut the rows into strips of a fixed number of rows, taken from the row
 * size alone (at least SD_PNG_STRIP_BYTES filtered bytes, one row at the
 * least; the last strip shorter), so the bytes never depend on the
 * machine; give each strip its place in the PNG buffer, from offset off.
 * Returns the offset past the last strip's place, 0 when out of memory.
 */
static size_t
sd_png_strips(sd_png_job *job, size_t off)
{
    sd_png_strip  *st;
    int            i, rows;

    rows = (int) ((SD_PNG_STRIP_BYTES + job->row - 1) / job->row);
    rows = rows < job->h ? rows : job->h;

    job->n = (job->h + rows - 1) / rows;
    job->strips = calloc((size_t) job->n, sizeof(sd_png_strip));
    if (job->strips == NULL) {
        return 0;
    }

    for (i = 0; i < job->n; i++) {
        st = &job->strips[i];
        st->y0 = i * rows;
        st->rows = job->h - st->y0 < rows ? job->h - st->y0 : rows;
        st->off = off;
        st->cap = sd_png_bound((size_t) st->rows * job->row);
        off += 12 + st->cap;
    }

    return off;
}


/* The text chunk's data at p: tEXt for Latin-1 text, else iTXt. */
static unsigned char *
sd_png_text_put(unsigned char *p, const char *text, size_t tlen, int latin1)
{
    memcpy(p, SD_PNG_KEY, sizeof(SD_PNG_KEY));  /* the key and its NUL */
    p += sizeof(SD_PNG_KEY);
    if (!latin1) {
        /* uncompressed, no language tag, no translated key */
        memset(p, 0, 4);
        p += 4;
    }
    memcpy(p, text, tlen);
    return p + tlen;
}


/* The signature, IHDR and the text chunk if any at p; returns the end. */
static unsigned char *
sd_png_head(unsigned char *p, const sd_png_job *job, const char *text,
    size_t tlen, int latin1)
{
    static const unsigned char  sig[8] = { 0x89, 'P', 'N', 'G', '\r', '\n',
                                           0x1a, '\n' };
    unsigned char  *d;

    memcpy(p, sig, sizeof(sig));
    p += sizeof(sig);

    d = sd_png_chunk_begin(p, "IHDR");
    d = sd_png_put32(d, (uint32_t) job->w);
    d = sd_png_put32(d, (uint32_t) job->h);
    d[0] = 8;                           /* bits per channel */
    d[1] = 2;                           /* RGB */
    d[2] = 0;                           /* deflate */
    d[3] = 0;                           /* adaptive filtering, per row */
    d[4] = 0;                           /* no interlace */
    p = sd_png_chunk_end(p, 13);

    if (text != NULL) {
        d = sd_png_chunk_begin(p, latin1 ? "tEXt" : "iTXt");
        d = sd_png_text_put(d, text, tlen, latin1);
        p = sd_png_chunk_end(p, (size_t) (d - p - 8));
    }

    return p;
}


/*
 * After the compression: the Adler-32 of all filtered bytes ends the last
 * strip; the IDAT chunks move down from their places to follow each other
 * from p, then IEND. Returns the end of the PNG.
 */
static unsigned char *
sd_png_tail(unsigned char *p, sd_png_job *job)
{
    sd_png_strip   *st;
    unsigned char  *out;
    uLong           adler;
    int             i;

    adler = adler32(0, NULL, 0);
    for (i = 0; i < job->n; i++) {
        st = &job->strips[i];
        adler = adler32_combine(adler, st->adler, (z_off_t) st->rows
                                                  * (z_off_t) job->row);
    }
    st = &job->strips[job->n - 1];
    out = job->png + st->off + 8;
    sd_png_put32(out + st->out_len, (uint32_t) adler);
    st->crc = (uint32_t) crc32(st->crc, out + st->out_len, 4);
    st->out_len += 4;

    for (i = 0; i < job->n; i++) {
        st = &job->strips[i];
        sd_png_chunk_begin(p, "IDAT");
        sd_png_put32(p, (uint32_t) st->out_len);
        memmove(p + 8, job->png + st->off + 8, st->out_len);
        p = sd_png_put32(p + 8 + st->out_len, st->crc);
    }

    sd_png_chunk_begin(p, "IEND");
    return sd_png_chunk_end(p, 0);
}


sd_status
sd_png_encode(sd_err *err, const uint8_t *rgb, int w, int h,
    const char *infotext, unsigned char **png, size_t *png_len)
{
    sd_png_job      job;
    sd_status       s = SD_OK;
    unsigned char  *p;
    char           *text = NULL;
    size_t          tlen = 0, head, size;
    int             latin1 = 0, rc;

    *png = NULL;
    *png_len = 0;

    if (rgb == NULL || w <= 0 || h <= 0 || w > SD_PNG_MAX_SIDE
        || h > SD_PNG_MAX_SIDE)
    {
        return sd_errorf(err, SD_ERR_INVALID, "sd_png_encode(): bad image "
                         "%dx%d", w, h);
    }

    if (infotext != NULL) {
        tlen = strlen(infotext);
        if (tlen > SD_PNG_TEXT_MAX) {
            return sd_errorf(err, SD_ERR_INVALID, "sd_png_encode(): an "
                             "infotext of %zu bytes does not fit a PNG "
                             "chunk", tlen);
        }
        latin1 = sd_utf8_to_latin1(infotext, &text);
        if (latin1 == 0) {
            text = sd_strdup(infotext);
        }
        if (text == NULL) {
            return sd_errorf(err, SD_ERR_NOMEM, "out of memory copying the "
                             "infotext");
        }
        tlen = strlen(text);
    }

    memset(&job, 0, sizeof(job));
    job.rgb = rgb;
    job.w = w;
    job.h = h;
    job.row = 1 + (size_t) w * 3;

    /* the places reserved for the strips, a little over their rows, must
       not wrap around (a 32-bit size_t only) */
    if ((size_t) h > SIZE_MAX / 4 / job.row) {
        s = sd_errorf(err, SD_ERR_NOMEM, "sd_png_encode(): a %dx%d image "
                      "is too large for this machine", w, h);
        goto done;
    }

    /* signature, IHDR, the text chunk; the strips' places; IEND */
    head = 8 + 12 + 13 + (text ? 12 + sizeof(SD_PNG_KEY) + 4 + tlen : 0);
    size = sd_png_strips(&job, head);
    if (size == 0) {
        s = sd_errorf(err, SD_ERR_NOMEM, "out of memory for the PNG's "
                      "strips");
        goto done;
    }
    size += 12;

    job.png = malloc(size);
    if (job.png == NULL) {
        s = sd_errorf(err, SD_ERR_NOMEM, "out of memory for a PNG buffer "
                      "of %zu bytes", size);
        goto done;
    }

    rc = sd_png_job_start(&job);
    if (rc == Z_MEM_ERROR) {
        s = sd_errorf(err, SD_ERR_NOMEM, "out of memory compressing the "
                      "PNG");
        goto done;
    }
    if (rc != Z_OK) {
        s = sd_errorf(err, SD_ERR_INTERNAL, "PNG encoding failed: zlib "
                      "error %d (%s)", rc, zError(rc));
        goto done;
    }

    p = sd_png_head(job.png, &job, text, tlen, latin1);
    p = sd_png_tail(p, &job);

    *png = job.png;
    *png_len = (size_t) (p - job.png);
    job.png = NULL;

done:

    free(job.png);
    free(job.strips);
    free(text);

    return s;
}


/* Copy the "parameters" text, if libpng has seen it, into ctx->found. */
static int
sd_png_find_text(sd_png_ctx *ctx)
{
    png_textp  t;
    int        n, i;

    n = png_get_text(ctx->png, ctx->info, &t, NULL);
    for (i = 0; i < n; i++) {
        if (strcmp(t[i].key, SD_PNG_KEY) != 0) {
            continue;
        }
        if (t[i].compression == PNG_ITXT_COMPRESSION_NONE
            || t[i].compression == PNG_ITXT_COMPRESSION_zTXt)
        {
            ctx->found = sd_strdup(t[i].text ? t[i].text : "");
        } else {
            ctx->found = sd_latin1_to_utf8(t[i].text ? t[i].text : "",
                                           t[i].text ? t[i].text_length : 0);
        }
        if (ctx->found == NULL) {
            ctx->nomem = 1;
            return -1;
        }
        return 1;
    }

    return 0;
}


static int
sd_png_info_run(sd_png_ctx *ctx)
{
    int  passes, pass, y;

    if (setjmp(png_jmpbuf(ctx->png))) {
        return -1;
    }

    png_set_read_fn(ctx->png, ctx, sd_png_read_data);
    png_read_info(ctx->png, ctx->info);

    ctx->w = (int) png_get_image_width(ctx->png, ctx->info);
    ctx->h = (int) png_get_image_height(ctx->png, ctx->info);

    switch (sd_png_find_text(ctx)) {
    case 1:
        return 0;
    case -1:
        return -1;
    }

    /* text chunks may follow the image data: decode it to reach them */
    passes = png_set_interlace_handling(ctx->png);
    png_read_update_info(ctx->png, ctx->info);
    ctx->row = malloc(png_get_rowbytes(ctx->png, ctx->info));
    if (ctx->row == NULL) {
        ctx->nomem = 1;
        return -1;
    }
    for (pass = 0; pass < passes; pass++) {
        for (y = 0; y < ctx->h; y++) {
            png_read_row(ctx->png, ctx->row, NULL);
        }
    }
    png_read_end(ctx->png, ctx->info);

    return sd_png_find_text(ctx) < 0 ? -1 : 0;
}


sd_status
sd_png_info(sd_err *err, const unsigned char *png, size_t png_len,
    char **text, int *w, int *h)
{
    sd_png_ctx  ctx;
    sd_status   s = SD_OK;

    *text = NULL;
    *w = 0;
    *h = 0;

    if (png == NULL || png_len < 8 || png_sig_cmp(png, 0, 8) != 0) {
        return sd_errorf(err, SD_ERR_FORMAT, "not a PNG image");
    }

    memset(&ctx, 0, sizeof(ctx));
    ctx.in = png;
    ctx.in_len = png_len;

    ctx.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx,
                                     sd_png_error, sd_png_warning);
    if (ctx.png != NULL) {
        ctx.info = png_create_info_struct(ctx.png);
    }
    if (ctx.png == NULL || ctx.info == NULL) {
        s = sd_errorf(err, SD_ERR_NOMEM, "png_create_read_struct() failed");
        goto done;
    }

    if (sd_png_info_run(&ctx) != 0) {
        if (ctx.nomem) {
            s = sd_errorf(err, SD_ERR_NOMEM, "out of memory reading a PNG");
        } else {
            s = sd_errorf(err, SD_ERR_FORMAT, "malformed PNG: %s", ctx.msg);
        }
        goto done;
    }

    *text = ctx.found;
    *w = ctx.w;
    *h = ctx.h;
    ctx.found = NULL;

done:

    png_destroy_read_struct(&ctx.png, &ctx.info, NULL);
    free(ctx.row);
    free(ctx.found);

    return s;
}


/* ---- base64 (sd.h) ---- */

#define SD_B64_CHUNK    65536           /* 3-byte groups a chunk */
#define SD_B64_THREADS  8

static const char  sd_b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

typedef struct {
    char                 *dst;
    const unsigned char  *src;
} sd_b64_job;


/* groups [g0, g1) of 3 bytes into 4 characters each */
static void
sd_b64_groups(void *arg, int64_t g0, int64_t g1)
{
    sd_b64_job           *job = arg;
    const unsigned char  *s = job->src + g0 * 3;
    char                 *d = job->dst + g0 * 4;
    int64_t               g;

    for (g = g0; g < g1; g++) {
        d[0] = sd_b64[s[0] >> 2];
        d[1] = sd_b64[((s[0] & 3) << 4) | (s[1] >> 4)];
        d[2] = sd_b64[((s[1] & 15) << 2) | (s[2] >> 6)];
        d[3] = sd_b64[s[2] & 63];
        s += 3;
        d += 4;
    }
}


size_t
sd_base64_encode(char *dst, const unsigned char *src, size_t n)
{
    sd_b64_job            job = { dst, src };
    int64_t               groups = (int64_t) (n / 3);
    const unsigned char  *s = src + groups * 3;
    char                 *d = dst + groups * 4;

    if (groups > 0) {
        sd_run_chunks(sd_b64_groups, &job, groups, SD_B64_CHUNK,
                      SD_B64_THREADS);
    }
    if (n % 3 == 1) {
        d[0] = sd_b64[s[0] >> 2];
        d[1] = sd_b64[(s[0] & 3) << 4];
        d[2] = '=';
        d[3] = '=';
    } else if (n % 3 == 2) {
        d[0] = sd_b64[s[0] >> 2];
        d[1] = sd_b64[((s[0] & 3) << 4) | (s[1] >> 4)];
        d[2] = sd_b64[(s[1] & 15) << 2];
        d[3] = '=';
    }
    return SD_BASE64_LEN(n);
}
