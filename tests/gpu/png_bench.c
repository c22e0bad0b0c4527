/*
 * png_bench: sd_png_encode's time on 1024x1024 images (the median and the
 * best of N runs): uniform noise, a smooth gradient, and each PNG named on
 * the command line, decoded and encoded again (a txt2img result). Run
 * under taskset to see how it scales with the cores (sd_cpus follows the
 * affinity). Usage: png_bench [-n RUNS] [FILE.png ...]
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>

#include "image.h"
#include "sd.h"


static int
cmp_double(const void *a, const void *b)
{
    double  x = *(const double *) a, y = *(const double *) b;

    return (x > y) - (x < y);
}


static int
bench(const char *name, const uint8_t *rgb, int w, int h, int runs)
{
    double         *t = calloc((size_t) runs, sizeof(double));
    unsigned char  *png;
    size_t          len = 0;
    sd_err          err = {0};
    double          t0;
    int             r;

    if (t == NULL) {
        return 1;
    }
    for (r = 0; r < runs; r++) {
        t0 = sd_seconds();
        if (sd_png_encode(&err, rgb, w, h, "png_bench", &png, &len)
            != SD_OK)
        {
            fprintf(stderr, "png_bench: %s: %s\n", name, err.msg);
            free(t);
            return 1;
        }
        t[r] = sd_seconds() - t0;
        free(png);
    }
    qsort(t, (size_t) runs, sizeof(double), cmp_double);
    printf("png %s %dx%d on %d cpus: %zu bytes, median %.2f ms, best %.2f "
           "ms\n", name, w, h, sd_cpus(1024), len, t[runs / 2] * 1e3,
           t[0] * 1e3);
    free(t);
    return 0;
}


int
main(int argc, char **argv)
{
    int         w = 1024, h = 1024, runs = 21, i, x, y, rc = 0;
    uint8_t    *rgb = malloc((size_t) w * h * 3);
    uint64_t    s = 1;
    png_image   im;

    if (rgb == NULL) {
        return 1;
    }
    i = 1;
    if (argc > 2 && strcmp(argv[1], "-n") == 0) {
        runs = atoi(argv[2]);
        runs = runs > 0 ? runs : 1;
        i = 3;
    }
    for (x = 0; x < w * h * 3; x++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        rgb[x] = (uint8_t) (s >> 56);
    }
    rc |= bench("noise", rgb, w, h, runs);
    for (y = 0; y < h; y++) {
        for (x = 0; x < w; x++) {
            uint8_t  *p = rgb + ((size_t) y * w + x) * 3;

            p[0] = (uint8_t) (x / 4);
            p[1] = (uint8_t) (y / 4);
            p[2] = (uint8_t) ((x + y) / 8);
        }
    }
    rc |= bench("gradient", rgb, w, h, runs);
    free(rgb);

    for (; i < argc; i++) {
        memset(&im, 0, sizeof(im));
        im.version = PNG_IMAGE_VERSION;
        if (!png_image_begin_read_from_file(&im, argv[i])) {
            fprintf(stderr, "png_bench: %s: %s\n", argv[i], im.message);
            rc = 1;
            continue;
        }
        im.format = PNG_FORMAT_RGB;
        rgb = malloc(PNG_IMAGE_SIZE(im));
        if (rgb == NULL || !png_image_finish_read(&im, NULL, rgb, 0, NULL)) {
            fprintf(stderr, "png_bench: %s: %s\n", argv[i], im.message);
            png_image_free(&im);
            free(rgb);
            rc = 1;
            continue;
        }
        rc |= bench(argv[i], rgb, (int) im.width, (int) im.height, runs);
        free(rgb);
    }
    return rc;
}
