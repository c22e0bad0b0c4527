/*
 * test_cli.c: sd-cli from the outside, as the reference checks it: bad
 * arguments give a message and a non-zero exit; "encode --dump" and
 * "txt2img --rng cpu --dump" write tensors equal to the goldens; the PNG
 * carries the A1111 infotext. Run from the project root (tests/run.sh);
 * SD_CLI names another sd-cli (make test-asan: the sanitized one).
 */

#include <sys/wait.h>
#include <unistd.h>

#include "t.h"
#include "image.h"
#include "safetensors.h"


static char         tmp[64];
static const char  *cli = "build/sd-cli";     /* SD_CLI: another build */


/* Run a shell command; returns the exit status, output into out. */
static int
run(const char *cmd, char *out, size_t len)
{
    char    full[8192];
    FILE   *p;
    size_t  n = 0, r;
    int     st;

    snprintf(full, sizeof(full), "%s 2>&1", cmd);
    p = popen(full, "r");
    if (p == NULL) {
        return -1;
    }
    while (n + 1 < len && (r = fread(out + n, 1, len - 1 - n, p)) > 0) {
        n += r;
    }
    out[n] = '\0';
    st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}


static void
bad_args(const char *model)
{
    char  cmd[8192], out[8192];
    int   rc;

    rc = run(cli, out, sizeof(out));
    T_CHECK(rc == 2 && strstr(out, "usage"), "no arguments: %d %s", rc, out);

    snprintf(cmd, sizeof(cmd), "%s txt2img --model %s --prompt x "
             "--width 72 --height 64 --steps 2 --output %s/x.png", cli, model,
             tmp);
    rc = run(cmd, out, sizeof(out));
    T_CHECK(rc == 2 && strstr(out, "width") && strstr(out, "multiple of 16"),
            "width 72: %d %s", rc, out);

    snprintf(cmd, sizeof(cmd), "%s txt2img --model %s --prompt x "
             "--width 64 --height 64 --steps 0 --output %s/x.png", cli,
             model, tmp);
    rc = run(cmd, out, sizeof(out));
    T_CHECK(rc == 2 && strstr(out, "steps"), "steps 0: %d %s", rc, out);

    snprintf(cmd, sizeof(cmd), "%s txt2img --model %s --prompt x "
             "--sampler 'DPM++ 9M' --output %s/x.png", cli, model, tmp);
    rc = run(cmd, out, sizeof(out));
    T_CHECK(rc == 2 && strstr(out, "--sampler: \"DPM++ 9M\" is not "
                              "supported; available: Euler, Euler a"),
            "sampler: %d %s", rc, out);

    snprintf(cmd, sizeof(cmd), "%s txt2img --model /no/such/model "
             "--prompt x --output %s/x.png", cli, tmp);
    rc = run(cmd, out, sizeof(out));
    T_CHECK(rc == 1 && strstr(out, "/no/such/model"), "missing model: %d %s",
            rc, out);

    snprintf(cmd, sizeof(cmd), "%s txt2img --model %s --steps x", cli,
             model);
    rc = run(cmd, out, sizeof(out));
    T_CHECK(rc == 2 && strstr(out, "--steps"), "steps x: %d %s", rc, out);

    snprintf(cmd, sizeof(cmd), "%s txt2img --model %s --prompt x "
             "--rng gpu --output %s/x.png", cli, model, tmp);
    rc = run(cmd, out, sizeof(out));
    T_CHECK(rc == 2 && strstr(out, "--rng"), "rng gpu: %d %s", rc, out);
}


/* Every tensor of the dump against golden "<pfx>.<name>". */
static void
compare_dump(const char *path, const sd_st *g, const char *pfx)
{
    sd_st   *d;
    sd_err   err = {0};
    size_t   i, j;
    char     key[256];

    if (sd_st_open(&err, path, &d) != SD_OK) {
        T_CHECK(0, "dump %s: %s", path, err.msg);
        return;
    }
    T_CHECK(sd_st_count(d) >= 12, "%s holds %zu tensors", path,
            sd_st_count(d));
    for (i = 0; i < sd_st_count(d); i++) {
        const sd_st_tensor  *t = sd_st_at(d, i), *r;
        float               *a, *b;
        double               e, tol;
        int                  same = 1;

        snprintf(key, sizeof(key), "%s.%s", pfx,
                 strcmp(t->name, "noise") == 0 ? "noise_cpu" : t->name);
        r = sd_st_find(g, key);
        if (r == NULL) {
            T_CHECK(0, "no golden %s", key);
            continue;
        }
        for (j = 0; j < (size_t) t->ndim; j++) {
            same &= t->shape[j] == r->shape[j];
        }
        T_CHECK(same && t->ndim == r->ndim && t->dtype == r->dtype,
                "%s: shape or dtype differs from the golden", key);
        if (!same || t->ndim != r->ndim) {
            continue;
        }
        if (t->dtype == SD_DT_I32 || t->dtype == SD_DT_U8) {
            if (strcmp(t->name, "image_u8") == 0) {
                const uint8_t *x = t->data, *y = r->data;
                size_t off = 0;
                for (j = 0; j < (size_t) t->numel; j++) {
                    off += abs((int) x[j] - (int) y[j]) > 1;
                }
                T_CHECK(off <= (size_t) t->numel / 1000, "%s: %zu pixels "
                        "off by more than 1", key, off);
            } else {
                T_CHECK(memcmp(t->data, r->data, t->nbytes) == 0,
                        "%s: ids differ", key);
            }
            continue;
        }
        a = malloc(t->numel * sizeof(float));
        b = malloc(t->numel * sizeof(float));
        sd_st_read_f32(&err, t, a);
        sd_st_read_f32(&err, r, b);
        e = t_rel_l2(a, b, t->numel);
        tol = strcmp(t->name, "final_latents") == 0 ? 1e-3
              : strcmp(t->name, "noise") == 0 ? 0 : 1e-4;
        T_CHECK(tol == 0 ? memcmp(a, b, t->numel * sizeof(float)) == 0
                         : e < tol, "%s: relative L2 %.3g", key, e);
        free(a);
        free(b);
    }
    sd_st_close(d);
}


int
main(void)
{
    char          model[4096], path[4096], cmd[8192], out[8192];
    char         *png = NULL, *text = NULL;
    size_t        len;
    int           rc, w, h;
    sd_st        *g;
    sd_err        err = {0};

    if (getenv("SD_CLI")) {
        cli = getenv("SD_CLI");
    }

    if (access(cli, X_OK) != 0) {
        T_CHECK(0, "%s is not built (run from the project root)", cli);
        return T_DONE();
    }
    snprintf(tmp, sizeof(tmp), "/tmp/test_cli.XXXXXX");
    if (mkdtemp(tmp) == NULL) {
        T_CHECK(0, "mkdtemp() failed");
        return T_DONE();
    }
    snprintf(model, sizeof(model), "%s/tiny-sd35-large", t_fixtures());
    snprintf(path, sizeof(path), "%s/golden-public.safetensors",
             t_fixtures());
    if (sd_st_open(&err, path, &g) != SD_OK) {
        T_SKIP("fixtures absent (%s): set SD_FIXTURES", err.msg);
        return T_DONE();
    }
    bad_args(model);

    /* large p1: prompt, negative, 192x128, 6 steps, cfg 3.5, seed 1234 */
    snprintf(cmd, sizeof(cmd), "%s encode --model %s --prompt "
             "'A futuristic cityscape at sunset, cyberpunk style, neon "
             "lights!' --negative 'blurry, low-res, distortion' --dump "
             "%s/enc.safetensors", cli, model, tmp);
    rc = run(cmd, out, sizeof(out));
    T_CHECK(rc == 0, "encode: %d %s", rc, out);
    snprintf(path, sizeof(path), "%s/enc.safetensors", tmp);
    compare_dump(path, g, "large.p1");

    snprintf(cmd, sizeof(cmd), "%s txt2img --model %s --prompt "
             "'A futuristic cityscape at sunset, cyberpunk style, neon "
             "lights!' --negative 'blurry, low-res, distortion' --width 192 "
             "--height 128 --steps 6 --cfg 3.5 --seed 1234 --rng cpu "
             "--output %s/p1.png --dump %s/p1.safetensors", cli, model,
             tmp, tmp);
    rc = run(cmd, out, sizeof(out));
    T_CHECK(rc == 0, "txt2img: %d %s", rc, out);
    snprintf(path, sizeof(path), "%s/p1.safetensors", tmp);
    compare_dump(path, g, "large.p1");

    snprintf(path, sizeof(path), "%s/p1.png", tmp);
    if (sd_read_file(&err, path, &png, &len) == SD_OK
        && sd_png_info(&err, (unsigned char *) png, len, &text, &w, &h)
           == SD_OK && text)
    {
        T_CHECK(w == 192 && h == 128, "png size %dx%d", w, h);
        T_CHECK(strstr(text, "A futuristic cityscape") == text
                && strstr(text, "\nNegative prompt: blurry, low-res, "
                          "distortion\n")
                && strstr(text, "Steps: 6, Sampler: Euler, Schedule type: "
                          "Automatic, CFG scale: 3.5, Seed: 1234, Size: "
                          "192x128, Model hash: ")
                && strstr(text, ", Model: tiny-sd35-large"),
                "infotext: %s", text);
    } else {
        T_CHECK(0, "reading %s: %s", path, err.msg);
    }
    free(png);
    free(text);

    /* "Euler a" is accepted and named in the infotext */
    snprintf(cmd, sizeof(cmd), "%s txt2img --model %s --prompt "
             "x --width 64 --height 64 --steps 2 --sampler 'euler a' "
             "--output %s/a.png", cli, model, tmp);
    rc = run(cmd, out, sizeof(out));
    T_CHECK(rc == 0, "euler a: %d %s", rc, out);
    snprintf(path, sizeof(path), "%s/a.png", tmp);
    png = NULL;
    text = NULL;
    T_CHECK(sd_read_file(&err, path, &png, &len) == SD_OK
            && sd_png_info(&err, (unsigned char *) png, len, &text, &w, &h)
               == SD_OK && text && strstr(text, "Sampler: Euler a,"),
            "euler a infotext: %s", text ? text : err.msg);
    free(png);
    free(text);

    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmp);
    rc = system(cmd);
    (void) rc;
    sd_st_close(g);
    return T_DONE();
}
