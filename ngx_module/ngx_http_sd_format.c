
/*
 * ngx_http_sd_format.c: the images of an answer in the format the options
 * ask for, as A1111 1.10's API encodes them (modules/api/api.py,
 * encode_pil_to_base64), and input images decoded, without nginx:
 *
 *   samples_format png: the engine's PNG, its "parameters" text chunk kept
 *     only with enable_pnginfo;
 *   jpg / jpeg: JPEG at jpeg_quality, the infotext in an EXIF UserComment
 *     (piexif's "UNICODE" encoding: UTF-16BE after an 8-byte prefix), as
 *     piexif.dump() lays out the TIFF: big-endian, IFD0 holding only the
 *     pointer to the Exif IFD;
 *   webp: WebP at jpeg_quality (lossless with webp_lossless), the same
 *     EXIF in a WebP EXIF chunk (the TIFF without "Exif\0\0", as PIL
 *     writes it).
 *
 * With enable_pnginfo off the infotext is left out (an empty UserComment
 * for JPEG and WebP, as A1111 writes one whatever the option).
 *
 * Invariant: libjpeg reports errors through its error manager, which here
 * longjmps back into the function that set it up; everything those
 * functions must free lives in a context struct owned by the caller.
 */

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>
#include <jpeglib.h>
#include <webp/decode.h>
#include <webp/encode.h>
#include <webp/mux.h>

#include "ngx_http_sd_parse.h"


#define NGX_HTTP_SD_EXIF_MAX  65000     /* one JPEG APP1 segment */


typedef struct {
    struct jpeg_error_mgr      pub;
    jmp_buf                    jmp;
    char                       msg[JMSG_LENGTH_MAX];
} ngx_http_sd_jpeg_err_t;


typedef struct {
    struct jpeg_compress_struct    c;
    struct jpeg_decompress_struct  d;
    ngx_http_sd_jpeg_err_t         err;
    unsigned char                 *out;
    unsigned long                  out_len;
    unsigned char                 *rgb;
    int                            inited;
} ngx_http_sd_jpeg_ctx_t;


static void ngx_http_sd_jpeg_error(j_common_ptr cinfo);
static int ngx_http_sd_png_rgb(const unsigned char *p, size_t len,
    unsigned char **rgb, int *w, int *h);
static int ngx_http_sd_jpeg_encode(const unsigned char *rgb, int w, int h,
    int quality, const unsigned char *exif, size_t exif_len,
    unsigned char **out, size_t *out_len);
static int ngx_http_sd_webp_encode(const unsigned char *rgb, int w, int h,
    int quality, int lossless, const unsigned char *tiff, size_t tiff_len,
    unsigned char **out, size_t *out_len);
static int ngx_http_sd_jpeg_decode(const unsigned char *p, size_t len,
    unsigned char **rgb, int *w, int *h);


static const unsigned char  ngx_http_sd_png_sig[8] = {
    0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'
};


static uint32_t
ngx_http_sd_be32(const unsigned char *p)
{
    return ((uint32_t) p[0] << 24) | ((uint32_t) p[1] << 16)
           | ((uint32_t) p[2] << 8) | p[3];
}


static void
ngx_http_sd_put_be16(unsigned char *p, unsigned v)
{
    p[0] = (unsigned char) (v >> 8);
    p[1] = (unsigned char) v;
}


static void
ngx_http_sd_put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char) (v >> 24);
    p[1] = (unsigned char) (v >> 16);
    p[2] = (unsigned char) (v >> 8);
    p[3] = (unsigned char) v;
}


/*
 * The PNG without its "parameters" text chunks (tEXt, zTXt, iTXt): a copy
 * with those chunks skipped, everything else byte for byte. -1: not a
 * PNG, or no memory.
 */

int
ngx_http_sd_png_strip_info(const unsigned char *p, size_t len,
    unsigned char **out, size_t *out_len)
{
    size_t          pos, n, k;
    uint32_t        clen;
    unsigned char  *o;

    if (len < 8 || memcmp(p, ngx_http_sd_png_sig, 8) != 0) {
        return -1;
    }

    o = malloc(len);
    if (o == NULL) {
        return -1;
    }

    memcpy(o, p, 8);
    n = 8;

    for (pos = 8; pos + 12 <= len; pos += 12 + clen) {
        clen = ngx_http_sd_be32(p + pos);

        if (clen > len - pos - 12) {
            free(o);
            return -1;
        }

        k = sizeof("parameters");   /* the keyword and its NUL */

        if ((memcmp(p + pos + 4, "tEXt", 4) == 0
             || memcmp(p + pos + 4, "zTXt", 4) == 0
             || memcmp(p + pos + 4, "iTXt", 4) == 0)
            && clen >= k && memcmp(p + pos + 8, "parameters", k) == 0)
        {
            continue;
        }

        memcpy(o + n, p + pos, 12 + clen);
        n += 12 + clen;
    }

    *out = o;
    *out_len = n;

    return 0;
}


/*
 * piexif.dump({"Exif": {UserComment: UserComment.dump(text, "unicode")}})
 * without the "Exif\0\0" header: a big-endian TIFF, IFD0 with the Exif
 * IFD pointer (0x8769), the Exif IFD with UserComment (0x9286, UNDEFINED):
 * "UNICODE\0" then the text in UTF-16BE. Returns the malloc'ed TIFF, or
 * NULL without memory or when the text is not UTF-8.
 */

unsigned char *
ngx_http_sd_exif_usercomment(const char *text, size_t *len)
{
    size_t           i, n, u16, tlen;
    uint32_t         c;
    unsigned char   *t, *q;
    const unsigned char  *s;

    s = (const unsigned char *) (text ? text : "");
    tlen = strlen((const char *) s);

    /* the UTF-16 length, and a check of the UTF-8 */
    u16 = 0;
    for (i = 0; i < tlen; i += n) {
        c = s[i];
        n = (c < 0x80) ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3
            : (c >> 3) == 30 ? 4 : 0;

        if (n == 0 || i + n > tlen) {
            return NULL;
        }

        u16 += (n == 4) ? 2 : 1;
    }

    /* header 8, IFD0 18, Exif IFD 18, then the comment */
    n = 8 + 18 + 18 + 8 + 2 * u16;

    t = malloc(n);
    if (t == NULL) {
        return NULL;
    }

    memcpy(t, "MM\0\x2a\0\0\0\x08", 8);

    q = t + 8;
    ngx_http_sd_put_be16(q, 1);                     /* one entry */
    ngx_http_sd_put_be16(q + 2, 0x8769);            /* ExifTag */
    ngx_http_sd_put_be16(q + 4, 4);                 /* LONG */
    ngx_http_sd_put_be32(q + 6, 1);
    ngx_http_sd_put_be32(q + 10, 26);               /* the Exif IFD */
    ngx_http_sd_put_be32(q + 14, 0);                /* no next IFD */

    q = t + 26;
    ngx_http_sd_put_be16(q, 1);
    ngx_http_sd_put_be16(q + 2, 0x9286);            /* UserComment */
    ngx_http_sd_put_be16(q + 4, 7);                 /* UNDEFINED */
    ngx_http_sd_put_be32(q + 6, (uint32_t) (8 + 2 * u16));
    ngx_http_sd_put_be32(q + 10, 44);
    ngx_http_sd_put_be32(q + 14, 0);

    q = t + 44;
    memcpy(q, "UNICODE\0", 8);
    q += 8;

    for (i = 0; i < tlen; i += n) {
        c = s[i];

        if (c < 0x80) {
            n = 1;

        } else if ((c >> 5) == 6) {
            n = 2;
            c = ((c & 0x1f) << 6) | (s[i + 1] & 0x3f);

        } else if ((c >> 4) == 14) {
            n = 3;
            c = ((c & 0x0f) << 12) | ((s[i + 1] & 0x3f) << 6)
                | (s[i + 2] & 0x3f);

        } else {
            n = 4;
            c = ((c & 0x07) << 18) | ((s[i + 1] & 0x3f) << 12)
                | ((s[i + 2] & 0x3f) << 6) | (s[i + 3] & 0x3f);
        }

        if (n == 4) {
            c -= 0x10000;
            ngx_http_sd_put_be16(q, 0xd800 | (c >> 10));
            ngx_http_sd_put_be16(q + 2, 0xdc00 | (c & 0x3ff));
            q += 4;

        } else {
            ngx_http_sd_put_be16(q, c);
            q += 2;
        }
    }

    *len = (size_t) (q - t);

    return t;
}


/* PNG (8-bit RGB or anything libpng converts) to RGB8 */

static int
ngx_http_sd_png_rgb(const unsigned char *p, size_t len, unsigned char **rgb,
    int *w, int *h)
{
    png_image       img;
    unsigned char  *buf;

    memset(&img, 0, sizeof(img));
    img.version = PNG_IMAGE_VERSION;

    if (!png_image_begin_read_from_memory(&img, p, len)) {
        return -1;
    }

    img.format = PNG_FORMAT_RGB;

    if (img.width == 0 || img.height == 0
        || (size_t) img.width * img.height > (size_t) 64 * 1024 * 1024)
    {
        png_image_free(&img);
        return -1;
    }

    buf = malloc(PNG_IMAGE_SIZE(img));
    if (buf == NULL) {
        png_image_free(&img);
        return -1;
    }

    if (!png_image_finish_read(&img, NULL, buf, 0, NULL)) {
        free(buf);
        png_image_free(&img);
        return -1;
    }

    *rgb = buf;
    *w = (int) img.width;
    *h = (int) img.height;

    return 0;
}


static void
ngx_http_sd_jpeg_error(j_common_ptr cinfo)
{
    ngx_http_sd_jpeg_err_t  *e = (ngx_http_sd_jpeg_err_t *) cinfo->err;

    (*cinfo->err->format_message)(cinfo, e->msg);
    longjmp(e->jmp, 1);
}


static int
ngx_http_sd_jpeg_encode(const unsigned char *rgb, int w, int h, int quality,
    const unsigned char *exif, size_t exif_len, unsigned char **out,
    size_t *out_len)
{
    int                      y;
    JSAMPROW                 row;
    ngx_http_sd_jpeg_ctx_t  *ctx;

    ctx = calloc(1, sizeof(ngx_http_sd_jpeg_ctx_t));
    if (ctx == NULL) {
        return -1;
    }

    ctx->c.err = jpeg_std_error(&ctx->err.pub);
    ctx->err.pub.error_exit = ngx_http_sd_jpeg_error;

    if (setjmp(ctx->err.jmp)) {
        jpeg_destroy_compress(&ctx->c);
        free(ctx->out);
        free(ctx);
        return -1;
    }

    jpeg_create_compress(&ctx->c);
    jpeg_mem_dest(&ctx->c, &ctx->out, &ctx->out_len);

    ctx->c.image_width = (JDIMENSION) w;
    ctx->c.image_height = (JDIMENSION) h;
    ctx->c.input_components = 3;
    ctx->c.in_color_space = JCS_RGB;

    jpeg_set_defaults(&ctx->c);
    jpeg_set_quality(&ctx->c, quality, TRUE);
    jpeg_start_compress(&ctx->c, TRUE);

    if (exif && exif_len <= NGX_HTTP_SD_EXIF_MAX) {
        jpeg_write_marker(&ctx->c, JPEG_APP0 + 1, exif,
                          (unsigned int) exif_len);
    }

    for (y = 0; y < h; y++) {
        row = (JSAMPROW) (rgb + (size_t) y * w * 3);
        jpeg_write_scanlines(&ctx->c, &row, 1);
    }

    jpeg_finish_compress(&ctx->c);
    jpeg_destroy_compress(&ctx->c);

    /* jpeg_mem_dest's buffer is malloc'ed: the caller frees it */
    *out = ctx->out;
    *out_len = ctx->out_len;
    free(ctx);

    return 0;
}


static int
ngx_http_sd_webp_encode(const unsigned char *rgb, int w, int h, int quality,
    int lossless, const unsigned char *tiff, size_t tiff_len,
    unsigned char **out, size_t *out_len)
{
    size_t          n;
    uint8_t        *bits;
    WebPMux        *mux;
    WebPData        image, chunk, assembled;
    unsigned char  *o;

    n = lossless
        ? WebPEncodeLosslessRGB(rgb, w, h, w * 3, &bits)
        : WebPEncodeRGB(rgb, w, h, w * 3, (float) quality, &bits);

    if (n == 0) {
        return -1;
    }

    mux = WebPMuxNew();
    if (mux == NULL) {
        WebPFree(bits);
        return -1;
    }

    image.bytes = bits;
    image.size = n;
    chunk.bytes = tiff;
    chunk.size = tiff_len;
    WebPDataInit(&assembled);

    if (WebPMuxSetImage(mux, &image, 0) != WEBP_MUX_OK
        || (tiff && WebPMuxSetChunk(mux, "EXIF", &chunk, 0) != WEBP_MUX_OK)
        || WebPMuxAssemble(mux, &assembled) != WEBP_MUX_OK)
    {
        WebPMuxDelete(mux);
        WebPFree(bits);
        WebPDataClear(&assembled);
        return -1;
    }

    WebPMuxDelete(mux);
    WebPFree(bits);

    /* a malloc'ed copy: the caller frees what it gets with free() */
    o = malloc(assembled.size);
    if (o == NULL) {
        WebPDataClear(&assembled);
        return -1;
    }

    memcpy(o, assembled.bytes, assembled.size);
    *out = o;
    *out_len = assembled.size;
    WebPDataClear(&assembled);

    return 0;
}


/*
 * The engine's PNG (with its "parameters" infotext) in the answer's
 * format. *out is malloc'ed; for PNG with the infotext kept it is a copy.
 * JPEG and WebP are encoded from pix (pw x ph RGB, the PNG's pixels) when
 * given, else from the PNG decoded (a 1024x1024 PNG takes ~20 ms to
 * decode). Returns 0, or -1 with a message in err.
 */

int
ngx_http_sd_image_output(const unsigned char *png, size_t len,
    const unsigned char *pix, int pw, int ph, const char *infotext,
    const ngx_http_sd_output_t *o, unsigned char **out, size_t *out_len,
    char *err, size_t errlen)
{
    int                   rc, w, h;
    size_t                tlen;
    unsigned char        *dec = NULL, *tiff, *exif;
    const unsigned char  *rgb;

    if (o->format == NGX_HTTP_SD_FMT_PNG) {
        if (!o->pnginfo) {
            rc = ngx_http_sd_png_strip_info(png, len, out, out_len);

        } else {
            *out = malloc(len);
            rc = *out ? 0 : -1;
            if (rc == 0) {
                memcpy(*out, png, len);
                *out_len = len;
            }
        }

        if (rc != 0) {
            snprintf(err, errlen, "the engine's PNG could not be copied");
        }

        return rc;
    }

    if (pix) {
        rgb = pix;
        w = pw;
        h = ph;

    } else if (ngx_http_sd_png_rgb(png, len, &dec, &w, &h) == 0) {
        rgb = dec;

    } else {
        snprintf(err, errlen, "the engine's PNG could not be decoded");
        return -1;
    }

    tiff = ngx_http_sd_exif_usercomment(o->pnginfo ? infotext : "", &tlen);
    if (tiff == NULL) {
        free(dec);
        snprintf(err, errlen, "no memory for the EXIF of the image");
        return -1;
    }

    if (o->format == NGX_HTTP_SD_FMT_WEBP) {
        rc = ngx_http_sd_webp_encode(rgb, w, h, o->quality, o->lossless,
                                     tiff, tlen, out, out_len);

    } else {
        exif = malloc(6 + tlen);
        rc = -1;

        if (exif) {
            memcpy(exif, "Exif\0\0", 6);
            memcpy(exif + 6, tiff, tlen);
            rc = ngx_http_sd_jpeg_encode(rgb, w, h, o->quality, exif,
                                         6 + tlen, out, out_len);
            free(exif);
        }
    }

    free(tiff);
    free(dec);

    if (rc != 0) {
        snprintf(err, errlen, "the image could not be encoded as %s",
                 o->format == NGX_HTTP_SD_FMT_WEBP ? "WebP" : "JPEG");
    }

    return rc;
}


static int
ngx_http_sd_jpeg_decode(const unsigned char *p, size_t len,
    unsigned char **rgb, int *w, int *h)
{
    JSAMPROW                 row;
    ngx_http_sd_jpeg_ctx_t  *ctx;

    ctx = calloc(1, sizeof(ngx_http_sd_jpeg_ctx_t));
    if (ctx == NULL) {
        return -1;
    }

    ctx->d.err = jpeg_std_error(&ctx->err.pub);
    ctx->err.pub.error_exit = ngx_http_sd_jpeg_error;

    if (setjmp(ctx->err.jmp)) {
        jpeg_destroy_decompress(&ctx->d);
        free(ctx->rgb);
        free(ctx);
        return -1;
    }

    jpeg_create_decompress(&ctx->d);
    jpeg_mem_src(&ctx->d, p, (unsigned long) len);

    if (jpeg_read_header(&ctx->d, TRUE) != JPEG_HEADER_OK) {
        jpeg_destroy_decompress(&ctx->d);
        free(ctx);
        return -1;
    }

    ctx->d.out_color_space = JCS_RGB;
    jpeg_start_decompress(&ctx->d);

    if ((size_t) ctx->d.output_width * ctx->d.output_height
        > (size_t) 64 * 1024 * 1024)
    {
        jpeg_destroy_decompress(&ctx->d);
        free(ctx);
        return -1;
    }

    ctx->rgb = malloc((size_t) ctx->d.output_width * ctx->d.output_height
                      * 3);
    if (ctx->rgb == NULL) {
        jpeg_destroy_decompress(&ctx->d);
        free(ctx);
        return -1;
    }

    while (ctx->d.output_scanline < ctx->d.output_height) {
        row = ctx->rgb + (size_t) ctx->d.output_scanline
                         * ctx->d.output_width * 3;
        jpeg_read_scanlines(&ctx->d, &row, 1);
    }

    *w = (int) ctx->d.output_width;
    *h = (int) ctx->d.output_height;
    *rgb = ctx->rgb;

    jpeg_finish_decompress(&ctx->d);
    jpeg_destroy_decompress(&ctx->d);
    free(ctx);

    return 0;
}


/*
 * An input image (PNG, JPEG or WebP, told by its first bytes) as RGB8,
 * malloc'ed; transparency is dropped, as A1111 converts to RGB. Returns
 * 0, or -1 with a message in err.
 */

int
ngx_http_sd_image_decode(const unsigned char *p, size_t len,
    unsigned char **rgb, int *w, int *h, char *err, size_t errlen)
{
    int       rc;
    uint8_t  *d;

    *rgb = NULL;

    if (len >= 8 && memcmp(p, ngx_http_sd_png_sig, 8) == 0) {
        rc = ngx_http_sd_png_rgb(p, len, rgb, w, h);

    } else if (len >= 3 && p[0] == 0xff && p[1] == 0xd8 && p[2] == 0xff) {
        rc = ngx_http_sd_jpeg_decode(p, len, rgb, w, h);

    } else if (len >= 12 && memcmp(p, "RIFF", 4) == 0
               && memcmp(p + 8, "WEBP", 4) == 0)
    {
        rc = -1;
        d = WebPDecodeRGB(p, len, w, h);

        if (d) {
            *rgb = malloc((size_t) *w * *h * 3);
            if (*rgb) {
                memcpy(*rgb, d, (size_t) *w * *h * 3);
                rc = 0;
            }

            WebPFree(d);
        }

    } else {
        snprintf(err, errlen, "the image is not a PNG, JPEG or WebP");
        return -1;
    }

    if (rc != 0) {
        snprintf(err, errlen, "the image could not be decoded");
    }

    return rc;
}
