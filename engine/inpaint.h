/*
 * inpaint.h: A1111 1.10's inpainting around the sampler
 * (StableDiffusionProcessingImg2Img.init, modules/masking.py,
 * apply_overlay / uncrop in modules/processing.py):
 *
 * - the mask made binary (> 128, mask_round), inverted on request, blurred
 *   (cv2.GaussianBlur of a (2 int(2.5 s + 0.5) + 1)-tap kernel, x then y);
 * - "only masked" (inpaint_full_res): the blurred mask's bounding box
 *   grown by the padding and then to the request's aspect, the image and
 *   the mask cropped to it and resized (resize_mode 2) to width x height;
 *   the result resized (resize_mode 1) back into the box of the original
 *   image; a blank mask falls back to img2img;
 * - else the mask resized by resize_mode, the overlay mask twice it;
 * - the image encoded after the fill (inpainting_fill 0: masked pixels
 *   from ever finer blurs of the unmasked ones), the latent mask the mask
 *   resized (bicubic) to the latents and rounded; fill 2 / 3 put the seed's
 *   noise / zeros into the masked latents;
 * - per step the denoised estimate is kept from the init latents outside
 *   the mask (pipeline.h: mask), and so are the final latents;
 * - the image is laid over the original with alpha 255 - overlay mask.
 *
 * Where this is not pixel-exact to A1111: the blur is a float Gaussian
 * rounded once (cv2 uses fixed point), the fill's blurs are Gaussians
 * where PIL runs box blurs, the overlay is blended in float where PIL
 * goes through premultiplied 8-bit alpha (1 level apart at most).
 *
 * Invariant: the mask is processed once per request; each image's
 * overlay and pixels to encode come from its own init image.
 */

#ifndef SD_INPAINT_H
#define SD_INPAINT_H

#include "sd.h"
#include "sd_err.h"


typedef struct {
    int        active;          /* 0: no mask, or a blank "only masked" */
    int        crop;            /* inpaint_full_res with a region */
    int        x1, y1, x2, y2;  /* the region, in the mask's pixels */
    int        mw, mh;          /* the mask's size */
    uint8_t   *overlay;         /* mask_for_overlay: (mh, mw) with crop,
                                   else (height, width) */
    uint8_t   *image_mask;      /* (height, width) */
    float     *latmask;         /* (height / 8, width / 8): 1 inpaint */
    char       comment[160];    /* A1111's comment when it fell back */
} sd_inpaint;

sd_status sd_inpaint_prepare(sd_err *err, const sd_request *r,
    sd_inpaint *ip);
void sd_inpaint_free(sd_inpaint *ip);

/*
 * Image im of the batch: *px (height, width, 3) to encode, filled; *ov the
 * overlay's colours at the output size *ow x *oh (the image's own size
 * with crop, else width x height). Both malloc'd.
 */
sd_status sd_inpaint_image(sd_err *err, const sd_request *r,
    const sd_inpaint *ip, const sd_rgb8 *im, uint8_t **px, uint8_t **ov,
    int *ow, int *oh);

/*
 * The generated image gen (height, width, 3) put back: uncropped into the
 * output size, then the overlay ov over it; *out (oh, ow, 3) malloc'd.
 */
sd_status sd_inpaint_compose(sd_err *err, const sd_request *r,
    const sd_inpaint *ip, const uint8_t *gen, const uint8_t *ov, int ow,
    int oh, uint8_t **out);

#endif /* SD_INPAINT_H */
