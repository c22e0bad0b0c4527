/*
 * sd_cli_sweep.c: sd-cli fp8-sweep, the FP8 precision sweep.
 *
 *   sd-cli fp8-sweep --model DIR [--device cuda[:N]] [--prompts FILE]
 *                    [--kinds LIST] [--width W] [--height H] [--steps N]
 *                    [--cfg F]
 *
 * Generates each prompt in BF16 (the baseline), then again with one kind
 * of layer at a time in FP8 (and with the default policy, and with every
 * kind), and prints a table of the error against the baseline: relative
 * L2 of the latents after the first step and after the last, PSNR of the
 * decoded 8-bit image, and the weight memory. Run it on your own trained
 * weights: random weights have other activation statistics.
 */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "pipeline.h"
#include "precision.h"
#include "sd_cli.h"
#ifdef SD_HAVE_CUDA
#include "sd_cuda.h"
#endif


#define SWEEP_MAX_PROMPTS  16

typedef struct {
    float      *step0, *final;
    uint8_t    *rgb;
    size_t      nlat, npix;
} sweep_out;


static const char *const default_prompts[] = {
    "a photograph of an astronaut riding a horse on the moon, detailed",
    "a watercolor painting of a lighthouse on a cliff at dawn, soft light",
};


static void
out_free(sweep_out *o)
{
    free(o->step0);
    free(o->final);
    free(o->rgb);
    memset(o, 0, sizeof(*o));
}


/* Load the model under the policy mask (-1: plain BF16), run every prompt. */
static int
sweep_run(const char *model, const char *device, long mask,
    const sd_pipe_args *a0, const char *const *prompts, int np,
    sweep_out *out, double *weights_gib)
{
    sd_backend    *be = NULL;
    sd_model      *m = NULL;
    sd_err         err = {0};
    sd_cond        c, n;
    sd_pipe_dump   d;
    sd_pipe_args   a = *a0;
    int            i, rc = 1;

    memset(&c, 0, sizeof(c));
    memset(&n, 0, sizeof(n));
    memset(&d, 0, sizeof(d));
    if (sd_cli_backend(device, "bf16", &be, &err) != 0) {
        return 1;
    }
    if (mask >= 0) {
        sd_fp8_apply(be, (unsigned) mask);
    }
    if (sd_model_load(&err, be, model, SD_PART_ALL, &m) != SD_OK) {
        rc = sd_cli_fail("loading the model", &err);
        goto done;
    }
    if (sd_cli_reserve(m, a.width, a.height, 1, &err) != 0) {
        goto done;
    }
    *weights_gib = 0;
#ifdef SD_HAVE_CUDA
    {
        sd_cuda_mem  mem;

        if (sd_cuda_memory(&err, be, &mem) == SD_OK) {
            *weights_gib = mem.weights / 1073741824.0;
        }
    }
#endif
    for (i = 0; i < np; i++) {
        uint8_t  *rgb = NULL;

        if (sd_cond_encode(&err, m, prompts[i], &c) != SD_OK
            || (a.cfg > 1.0f && sd_cond_encode(&err, m, "", &n) != SD_OK)
            || sd_pipe_txt2img(&err, m, &a, &c, &n, &rgb, &d) != SD_OK)
        {
            rc = sd_cli_fail("generating", &err);
            free(rgb);
            goto done;
        }
        out[i].nlat = (size_t) d.latent_c * d.latent_h * d.latent_w;
        out[i].npix = (size_t) a.width * a.height * 3;
        out[i].step0 = d.latents_step0;
        out[i].final = d.final_latents;
        out[i].rgb = rgb;
        d.latents_step0 = NULL;
        d.final_latents = NULL;
        sd_pipe_dump_free(&d);
        sd_cond_free(&c);
        sd_cond_free(&n);
    }
    rc = 0;

done:
    sd_pipe_dump_free(&d);
    sd_cond_free(&c);
    sd_cond_free(&n);
    sd_model_free(m);
    sd_backend_destroy(be);
    return rc;
}


int
sd_cli_fp8_sweep(int argc, char **argv)
{
    const char     *model = NULL, *device = "cuda", *pfile = NULL;
    const char     *kinds = "all";
    const char     *prompts[SWEEP_MAX_PROMPTS];
    char           *ptext = NULL, kbuf[256], bad[64];
    int             width = 1024, height = 1024, steps = 28, np = 0, i, k;
    double          cfg = 4.5, wbase = 0, w;
    unsigned        kmask, def = sd_fp8_default_kinds();
    sweep_out       base[SWEEP_MAX_PROMPTS], cur[SWEEP_MAX_PROMPTS];
    sd_pipe_args    a;
    sd_cli_opt      opts[] = {
        { "--model",   .s = &model },
        { "--device",  .s = &device },
        { "--prompts", .s = &pfile },
        { "--kinds",   .s = &kinds },
        { "--width",   .i = &width, .lo = 16, .hi = 1 << 14 },
        { "--height",  .i = &height, .lo = 16, .hi = 1 << 14 },
        { "--steps",   .i = &steps, .lo = 1, .hi = 1000 },
        { "--cfg",     .d = &cfg },
    };
    long        configs[SD_FP8_NKINDS + 2];
    const char *names[SD_FP8_NKINDS + 2];
    int         nconf = 0, rc = 1;

    memset(base, 0, sizeof(base));
    memset(cur, 0, sizeof(cur));
    if (sd_cli_parse(argc, argv, opts, sizeof(opts) / sizeof(opts[0])) != 0
        || model == NULL)
    {
        return sd_cli_usage();
    }
    if (sd_fp8_parse_kinds(kinds, &kmask, bad, sizeof(bad)) != 0) {
        fprintf(stderr, "sd-cli: --kinds: unknown layer kind \"%s\"\n", bad);
        return 2;
    }
    if (pfile) {
        FILE  *f = fopen(pfile, "r");
        long   len;
        char  *p, *save = NULL;

        if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0
            || fseek(f, 0, SEEK_SET) != 0
            || (ptext = calloc(1, (size_t) len + 1)) == NULL
            || fread(ptext, 1, (size_t) len, f) != (size_t) len)
        {
            fprintf(stderr, "sd-cli: --prompts: cannot read \"%s\"\n",
                    pfile);
            if (f) {
                fclose(f);
            }
            free(ptext);
            return 2;
        }
        fclose(f);
        for (p = strtok_r(ptext, "\n", &save); p && np < SWEEP_MAX_PROMPTS;
             p = strtok_r(NULL, "\n", &save))
        {
            if (*p && *p != '#') {
                prompts[np++] = p;
            }
        }
    } else {
        for (i = 0; i < 2; i++) {
            prompts[np++] = default_prompts[i];
        }
    }
    if (np == 0) {
        fprintf(stderr, "sd-cli: --prompts: no prompt in \"%s\"\n", pfile);
        free(ptext);
        return 2;
    }

    memset(&a, 0, sizeof(a));
    a.width = width;
    a.height = height;
    a.steps = steps;
    a.batch = 1;
    a.cfg = (float) cfg;
    a.jobs = 1;
    a.seeds[0] = 1;

    /* the default policy, every kind, then one kind at a time */
    configs[nconf] = def;
    names[nconf++] = "default policy";
    if (def != SD_FP8_ALL) {
        configs[nconf] = SD_FP8_ALL;
        names[nconf++] = "all";
    }
    for (k = 0; k < SD_FP8_NKINDS; k++) {
        if (kmask & (1u << k)) {
            configs[nconf] = 1L << k;
            names[nconf++] = sd_fp8_kind_name(k);
        }
    }

    fprintf(stderr, "sd-cli: fp8-sweep: BF16 baseline\n");
    if (sweep_run(model, device, -1, &a, prompts, np, base, &wbase) != 0) {
        goto out;
    }
    printf("\n| FP8 sweep: %s, %dx%d, %d steps, cfg %.1f, %d prompt%s | "
           "weights GiB | rel L2 after step 1 | rel L2 after %d steps | "
           "image PSNR dB |\n| --- | --- | --- | --- | --- |\n",
           model, width, height, steps, cfg, np, np > 1 ? "s" : "", steps);
    printf("| none (BF16) | %.2f | 0 | 0 | inf |\n", wbase);
    fflush(stdout);
    for (i = 0; i < nconf; i++) {
        double  e0 = 0, e1 = 0, ps = 0;
        int     j;

        fprintf(stderr, "sd-cli: fp8-sweep: %s in FP8\n", names[i]);
        if (sweep_run(model, device, configs[i], &a, prompts, np, cur, &w)
            != 0)
        {
            goto out;
        }
        for (j = 0; j < np; j++) {
            e0 += sd_cli_rel_l2(cur[j].step0, base[j].step0, base[j].nlat) / np;
            e1 += sd_cli_rel_l2(cur[j].final, base[j].final, base[j].nlat) / np;
            ps += sd_cli_psnr(cur[j].rgb, base[j].rgb, base[j].npix) / np;
            out_free(&cur[j]);
        }
        printf("| %s%s%s | %.2f | %.2e | %.2e | %.1f |\n", names[i],
               i == 0 ? ": " : "",
               i == 0 ? sd_fp8_kinds_str(def, kbuf, sizeof(kbuf)) : "",
               w, e0, e1, ps);
        fflush(stdout);
    }
    rc = 0;

out:
    for (i = 0; i < SWEEP_MAX_PROMPTS; i++) {
        out_free(&base[i]);
        out_free(&cur[i]);
    }
    free(ptext);
    return rc;
}
