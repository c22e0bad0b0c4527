/*
 * image.h: PNG encoding and decoding through libpng, with the A1111 infotext
 * carried in a tEXt chunk named "parameters".
 */

#ifndef SD_IMAGE_H
#define SD_IMAGE_H

#include <stddef.h>
#include <stdint.h>
#include "sd_err.h"


/* rgb: (h, w, 3) uint8. infotext may be NULL. *png is malloc'd. */
sd_status sd_png_encode(sd_err *err, const uint8_t *rgb, int w, int h,
    const char *infotext, unsigned char **png, size_t *png_len);

/*
 * Read the "parameters" text of a PNG (NULL in *text when absent) and its
 * size; *text is malloc'd.
 */
sd_status sd_png_info(sd_err *err, const unsigned char *png, size_t png_len,
    char **text, int *w, int *h);

#endif /* SD_IMAGE_H */
