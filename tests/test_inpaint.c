/*
 * test_inpaint.c: inpainting through sd_generate (engine/inpaint.h) on the
 * tiny Large model: what the mask keeps comes back as the original pixels
 * (the overlay, the latents blended per step), a full mask is plain
 * img2img, an inverted mask keeps the other side, "only masked" answers
 * at the init image's size with the pixels outside its box untouched, a
 * blank mask there falls back to img2img with A1111's comment, and the
 * fills change the masked area. And img2img's resize_mode 3 (latent
 * upscale): at the same size it is resize_mode 0's image, from 128 x 128
 * another one.
 */

#include <sys/stat.h>

#include "t.h"
#include "sd.h"


#define W  64
#define H  64

static uint8_t  img[128 * 128 * 3], half[96 * 80], none[96 * 80],
                full[96 * 80], box[96 * 80];


/* the test images for a width: a pattern, the masks (half: x >= 32) */
static void
make(int w, int h)
{
    int  x, y;

    for (y = 0; y < h; y++) {
        for (x = 0; x < w; x++) {
            size_t  k = (size_t) y * w + x;

            img[3 * k] = (uint8_t) (x * 4);
            img[3 * k + 1] = (uint8_t) (y * 3);
            img[3 * k + 2] = (uint8_t) ((x ^ y) * 2);
            half[k] = x >= 32 ? 255 : 0;
            none[k] = 0;
            full[k] = 255;
            box[k] = x >= 60 && x < 76 && y >= 40 && y < 56 ? 255 : 0;
        }
    }
}


static int  resize_mode;


static int
gen(sd_engine *e, int iw, int ih, const uint8_t *mask, int fill,
    int full_res, int invert, sd_result *res)
{
    sd_request  r;
    sd_rgb8     im = { img, iw, ih };
    char        msg[512];

    memset(res, 0, sizeof(*res));
    sd_request_init(&r);
    r.prompt = "a red cube";
    r.negative_prompt = "";
    r.width = W;
    r.height = H;
    r.steps = 4;
    r.seed = 3;
    r.cfg_scale = 1.0f;
    r.init_images = &im;
    r.n_init_images = 1;
    r.denoising_strength = 0.5f;       /* starts below sigma 1 */
    if (mask) {
        r.mask.gray = mask;
        r.mask.width = iw;
        r.mask.height = ih;
    }
    r.mask_blur_x = r.mask_blur_y = 0;
    r.inpainting_fill = fill;
    r.inpaint_full_res = full_res;
    r.inpaint_full_res_padding = 4;
    r.inpainting_mask_invert = invert;
    r.resize_mode = resize_mode;
    if (sd_generate(e, &r, NULL, NULL, NULL, res, msg, sizeof(msg))
        != SD_OK || res->n_images != 1)
    {
        printf("  generate: %s\n", msg);
        return 0;
    }
    return 1;
}


/* pixels of a (w x h) equal to img in columns [x0, x1), rows [y0, y1) */
static int
same_box(const sd_result *a, int x0, int y0, int x1, int y1)
{
    const sd_image  *m = &a->images[0];
    int              x, y;

    for (y = y0; y < y1; y++) {
        for (x = x0; x < x1; x++) {
            if (memcmp(m->rgb + ((size_t) y * m->width + x) * 3,
                       img + ((size_t) y * m->width + x) * 3, 3) != 0)
            {
                return 0;
            }
        }
    }
    return 1;
}


int
main(void)
{
    char              dir[4096], msg[512];
    struct stat       st;
    sd_engine_config  cfg;
    sd_engine        *e = NULL;
    sd_result         plain, r[8];
    int               i, ok;

    snprintf(dir, sizeof(dir), "%s/tiny-sd35-large", t_fixtures());
    if (stat(dir, &st) != 0) {
        T_SKIP("fixtures not found: no tiny model at %s", dir);
        return T_DONE();
    }
    sd_engine_config_init(&cfg);
    cfg.model_dir = dir;
    if (sd_engine_open(&cfg, &e, msg, sizeof(msg)) != SD_OK) {
        T_CHECK(0, "engine: %s", msg);
        return T_DONE();
    }
    make(W, H);
    memset(r, 0, sizeof(r));

    /* 64 x 64 images (no resize); fill 1: the original under the mask */
    ok = gen(e, W, H, NULL, 1, 0, 0, &plain);
    ok &= gen(e, W, H, half, 1, 0, 0, &r[0]);
    ok &= gen(e, W, H, none, 1, 0, 0, &r[1]);
    ok &= gen(e, W, H, full, 1, 0, 0, &r[2]);
    ok &= gen(e, W, H, half, 1, 0, 1, &r[3]);
    T_CHECK(ok, "generate");
    if (ok) {
        T_CHECK(same_box(&r[0], 0, 0, 32, H) && !same_box(&r[0], 32, 0, W, H),
                "half mask: the left half is the original, the right not");
        T_CHECK(same_box(&r[1], 0, 0, W, H), "empty mask: the original");
        T_CHECK(strstr(r[0].images[0].infotext, ", Denoising strength: 0.5, "
                       "Version: ") != NULL, "fill 1: no inpainting fields "
                "(%s)", r[0].images[0].infotext);
        T_CHECK(strstr(r[3].images[0].infotext, ", Mask mode: Inpaint not "
                       "masked, Version: ") != NULL, "inverted: Mask mode");
        T_CHECK(memcmp(r[2].images[0].rgb, plain.images[0].rgb, W * H * 3)
                == 0, "full mask: plain img2img");
        T_CHECK(same_box(&r[3], 32, 0, W, H) && !same_box(&r[3], 0, 0, 32, H),
                "inverted: the right half is the original");
    }

    /* "only masked" on a 96 x 80 image: the answer is 96 x 80, the box
       (the mask's 16 x 16 grown by 4, then to 1:1) alone changes */
    make(96, 80);
    ok = gen(e, 96, 80, box, 1, 1, 0, &r[4]);
    T_CHECK(ok && r[4].images[0].width == 96 && r[4].images[0].height == 80,
            "only masked: the init image's size");
    if (ok) {
        /* box 56..80 x 36..60 */
        T_CHECK(same_box(&r[4], 0, 0, 96, 36) && same_box(&r[4], 0, 60, 96, 80)
                && same_box(&r[4], 0, 0, 56, 80)
                && same_box(&r[4], 80, 0, 96, 80),
                "only masked: untouched outside the box");
        T_CHECK(!same_box(&r[4], 60, 40, 76, 56), "only masked: the masked "
                "square changes");
        T_CHECK(strstr(r[4].images[0].infotext, ", Inpaint area: Only "
                       "masked, Masked area padding: 4, Version: ") != NULL,
                "only masked: the infotext (%s)", r[4].images[0].infotext);
    }
    /* only masked needs the mask at the image's size: a 422 on "mask" */
    {
        sd_request  q;
        sd_rgb8     im = { img, 96, 80 };

        sd_request_init(&q);
        q.init_images = &im;
        q.n_init_images = 1;
        q.width = W;
        q.height = H;
        q.mask.gray = box;
        q.mask.width = 64;
        q.mask.height = 64;
        q.inpaint_full_res = 1;
        T_CHECK(sd_request_check(e, &q, msg, sizeof(msg)) == SD_ERR_INVALID
                && strncmp(msg, "mask: ", 6) == 0, "mask size: %s", msg);
        q.inpaint_full_res = 0;
        T_CHECK(sd_request_check(e, &q, msg, sizeof(msg)) == SD_OK,
                "mask of another size, resized: %s", msg);
    }

    /* a blank mask: img2img, with A1111's comment */
    make(W, H);
    ok = gen(e, W, H, none, 1, 1, 0, &r[5]);
    T_CHECK(ok && memcmp(r[5].images[0].rgb, plain.images[0].rgb,
                         W * H * 3) == 0 && r[5].comments
            && strstr(r[5].comments, "mask is blank"),
            "only masked, blank mask: img2img and the comment");

    /* the fills: the masked half differs from fill 1's, the kept half not */
    ok = gen(e, W, H, half, 0, 0, 0, &r[6]);
    ok &= gen(e, W, H, half, 2, 0, 0, &r[7]);
    T_CHECK(ok, "fills");
    if (ok) {
        T_CHECK(same_box(&r[6], 0, 0, 32, H) && same_box(&r[7], 0, 0, 32, H),
                "fill 0 and 2 keep the unmasked half");
        T_CHECK(strstr(r[6].images[0].infotext, ", Masked content: fill, "
                       "Version") && strstr(r[7].images[0].infotext,
                                            ", Masked content: latent noise"),
                "fills in the infotext");
        T_CHECK(memcmp(r[6].images[0].rgb, r[0].images[0].rgb, W * H * 3)
                != 0, "fill 0 differs from fill 1");
        T_CHECK(memcmp(r[7].images[0].rgb, r[0].images[0].rgb, W * H * 3)
                != 0, "fill 2 differs from fill 1");
        T_CHECK(memcmp(r[6].images[0].rgb, r[7].images[0].rgb, W * H * 3)
                != 0, "fill 2 differs from fill 0");
    }

    /* resize_mode 3 */
    resize_mode = 3;
    make(W, H);
    {
        sd_result  b3, b0, m3;
        int        k, ok2;

        ok2 = gen(e, W, H, NULL, 1, 0, 0, &m3);
        T_CHECK(ok2 && memcmp(m3.images[0].rgb, plain.images[0].rgb,
                              W * H * 3) == 0, "resize_mode 3 at the same "
                "size: resize_mode 0's image");
        sd_result_free(&m3);
        for (k = 0; k < 128 * 128 * 3; k++) {
            img[k] = (uint8_t) (k * 7 / 3);
        }
        ok2 = gen(e, 128, 128, NULL, 1, 0, 0, &b3);
        resize_mode = 0;
        ok2 &= gen(e, 128, 128, NULL, 1, 0, 0, &b0);
        T_CHECK(ok2 && b3.images[0].width == W
                && memcmp(b3.images[0].rgb, b0.images[0].rgb, W * H * 3)
                   != 0, "resize_mode 3 from 128 x 128: encoded, then the "
                "latents resized");
        sd_result_free(&b3);
        sd_result_free(&b0);
    }

    sd_result_free(&plain);
    for (i = 0; i < 8; i++) {
        sd_result_free(&r[i]);
    }
    sd_engine_close(e);
    return T_DONE();
}
