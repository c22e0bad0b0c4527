/*
 * image.h: PNG encoding (zlib, on several threads) and infotext reading
 * (libpng), with the A1111 infotext carried in a text chunk named
 * "parameters": tEXt, or iTXt when the text does not fit Latin-1.
 */

#ifndef SD_IMAGE_H
#define SD_IMAGE_H

#include <stddef.h>
#include <stdint.h>
#include "sd_err.h"


/*
 * rgb: (h, w, 3) uint8, w and h at most 1000000. infotext may be NULL.
 * *png is malloc'd. The bytes depend on the pixels and the text alone, not
 * on the machine's CPUs; a large image is compressed on up to 16 threads,
 * joined before the call returns.
 */
sd_status sd_png_encode(sd_err *err, const uint8_t *rgb, int w, int h,
    const char *infotext, unsigned char **png, size_t *png_len);

/*
 * Read the "parameters" text of a PNG (NULL in *text when absent) and its
 * size; *text is malloc'd.
 */
sd_status sd_png_info(sd_err *err, const unsigned char *png, size_t png_len,
    char **text, int *w, int *h);

#endif /* SD_IMAGE_H */
