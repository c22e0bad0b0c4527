/*
 * upscale.h: the engine side of upscale.c: A1111's images.resize_image()
 * for img2img, on RGB8 images.
 */

#ifndef SD_UPSCALE_H
#define SD_UPSCALE_H

#include "sd.h"
#include "sd_err.h"

/*
 * resize_mode 0 (just resize), 1 (crop and resize: cover, centre), 2
 * (resize and fill: fit, centre, the bands from the edge rows or columns
 * as PIL's bicubic resize of a zero-size box gives them), all with PIL's
 * LANCZOS as A1111's resize() with no img2img upscaler. *out is malloc'd,
 * (height, width, 3).
 */
sd_status sd_resize_image(sd_err *err, int mode, const sd_rgb8 *in,
    int width, int height, uint8_t **out);

#endif /* SD_UPSCALE_H */
