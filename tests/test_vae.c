/*
 * test_vae.c: the VAE decoder and encoder against the public goldens (the
 * tiny SD3.5 VAE's decode of a random latent, its posterior of a random
 * image, and a whole pipeline's final latents turned into the image), plus
 * a malformed config.
 *
 * Invariant: everything is read from $SD_FIXTURES; when the fixtures are
 * absent every case is skipped with its reason, never failed.
 */

#include <time.h>
#include <unistd.h>
#include <sys/stat.h>

#include "golden.h"
#include "vae.h"


#define T_TOL_STAGE  t_tol(1e-4, 3e-2)
#define T_TOL_IMAGE  t_tol(1e-3, 3e-2)


/* Upload golden key into a new backend tensor; host copy in *host. */
static sd_status
t_golden(sd_err *err, sd_backend *be, const sd_st *g, const char *key,
    sd_tensor **out, float **host)
{
    const sd_st_tensor  *t;
    int64_t              shape[SD_MAX_DIMS];
    sd_status            s;
    int                  i;

    *out = NULL;
    *host = NULL;
    t = sd_st_find(g, key);
    if (t == NULL || t->ndim < 1 || t->ndim > SD_MAX_DIMS) {
        return sd_errorf(err, SD_ERR_IO, "golden \"%s\" missing", key);
    }
    for (i = 0; i < t->ndim; i++) {
        shape[i] = t->shape[i];
    }
    *host = malloc((size_t) t->numel * sizeof(float));
    if (*host == NULL) {
        return sd_errorf(err, SD_ERR_NOMEM, "golden \"%s\"", key);
    }
    s = sd_st_read_f32(err, t, *host);
    if (s == SD_OK) {
        s = sd_tensor_new(err, be, t->ndim, shape, out);
    }
    if (s == SD_OK) {
        s = sd_tensor_upload(err, *out, *host);
    }
    if (s != SD_OK) {
        sd_tensor_free(*out);
        *out = NULL;
        free(*host);
        *host = NULL;
    }
    return s;
}


/* Compare a backend tensor with golden key: same numel, rel L2 < tol. */
static void
t_compare(const sd_st *g, const char *key, const sd_tensor *y, double tol)
{
    const sd_st_tensor  *t = sd_st_find(g, key);
    float               *ref = NULL, *out = NULL;
    sd_err               err = { SD_OK, "" };
    double               e;
    int                  i, same = 1;

    if (t == NULL) {
        T_CHECK(0, "golden \"%s\" missing", key);
        return;
    }
    for (i = 0; i < t->ndim && i < y->ndim; i++) {
        same &= t->shape[i] == y->ne[i];
    }
    T_CHECK(same && t->ndim == y->ndim, "%s: shape differs", key);
    if (!same || t->ndim != y->ndim) {
        return;
    }
    ref = malloc((size_t) t->numel * sizeof(float));
    out = malloc((size_t) t->numel * sizeof(float));
    if (ref && out && sd_st_read_f32(&err, t, ref) == SD_OK
        && sd_tensor_download(&err, y, out) == SD_OK)
    {
        e = t_rel_l2(out, ref, (size_t) t->numel);
        printf("  %-26s rel L2 %.3g\n", key, e);
        T_CHECK(e < tol, "%s: rel L2 %g >= %g", key, e, tol);
    } else {
        T_CHECK(0, "%s: %s", key, err.msg);
    }
    free(ref);
    free(out);
}


static double
t_now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}


/* decode(z) vs <m>.vae.decoded; encode(image) vs mean and std. */
static void
t_stages(sd_backend *be, sd_vae *vae, const sd_st *g, const char *m)
{
    sd_err      err = { SD_OK, "" };
    sd_tensor  *z = NULL, *img = NULL, *out = NULL, *mean = NULL, *std = NULL;
    float      *hz = NULL, *hi = NULL;
    char        key[64];
    double      t0;
    sd_status   s;

    snprintf(key, sizeof(key), "%s.vae.z", m);
    s = t_golden(&err, be, g, key, &z, &hz);
    T_CHECK(s == SD_OK, "%s", err.msg);
    if (s == SD_OK) {
        t0 = t_now();
        s = sd_vae_decode(&err, vae, z, &out);
        printf("  %s decode (%lldx%lld latent): %.1f ms\n", m,
               (long long) z->ne[2], (long long) z->ne[3],
               (t_now() - t0) * 1e3);
        T_CHECK(s == SD_OK, "decode: %s", err.msg);
        if (s == SD_OK) {
            snprintf(key, sizeof(key), "%s.vae.decoded", m);
            t_compare(g, key, out, T_TOL_STAGE);
        }
    }

    /* a latent with the wrong channel count is refused */
    if (z != NULL) {
        sd_tensor  *bad = NULL;

        sd_err_clear(&err);
        if (sd_tensor_new4(&err, be, 1, 4, 8, 8, &bad) == SD_OK) {
            sd_tensor  *o = NULL;

            s = sd_vae_decode(&err, vae, bad, &o);
            T_CHECK(s == SD_ERR_INVALID && o == NULL,
                    "4-channel latent: status %d", (int) s);
            sd_tensor_free(bad);
        }
    }

    sd_err_clear(&err);
    snprintf(key, sizeof(key), "%s.vae.image", m);
    s = t_golden(&err, be, g, key, &img, &hi);
    T_CHECK(s == SD_OK, "%s", err.msg);
    if (s == SD_OK) {
        t0 = t_now();
        s = sd_vae_encode(&err, vae, img, &mean, &std);
        printf("  %s encode (%lldx%lld image): %.1f ms\n", m,
               (long long) img->ne[2], (long long) img->ne[3],
               (t_now() - t0) * 1e3);
        T_CHECK(s == SD_OK, "encode: %s", err.msg);
        if (s == SD_OK) {
            snprintf(key, sizeof(key), "%s.vae.encoded_mean", m);
            t_compare(g, key, mean, T_TOL_STAGE);
            snprintf(key, sizeof(key), "%s.vae.encoded_std", m);
            t_compare(g, key, std, T_TOL_STAGE);
        }
    }

    sd_tensor_free(z);
    sd_tensor_free(out);
    sd_tensor_free(img);
    sd_tensor_free(mean);
    sd_tensor_free(std);
    free(hz);
    free(hi);
}


/*
 * The pipeline's last step: decode(final_latents / scaling + shift), then
 * (x / 2 + 0.5).clamp(0, 1) permuted to (1, H, W, 3), vs <m>.p0.image.
 */
static void
t_pipeline_image(sd_backend *be, sd_vae *vae, const sd_st *g, const char *m)
{
    static const int  to_hwc[4] = { 0, 2, 3, 1 };
    sd_err            err = { SD_OK, "" };
    sd_tensor        *lat = NULL, *out = NULL, *hwc = NULL;
    float            *hl = NULL, *px;
    char              key[64];
    int64_t           i, n;
    sd_status         s;

    snprintf(key, sizeof(key), "%s.p0.final_latents", m);
    s = t_golden(&err, be, g, key, &lat, &hl);
    T_CHECK(s == SD_OK, "%s", err.msg);
    if (s != SD_OK) {
        return;
    }
    s = sd_scale(&err, lat, lat, 1.0f / sd_vae_scaling_factor(vae),
                 sd_vae_shift_factor(vae));
    if (s == SD_OK) {
        s = sd_vae_decode(&err, vae, lat, &out);
    }
    if (s == SD_OK) {
        s = sd_scale(&err, out, out, 0.5f, 0.5f);
    }
    if (s == SD_OK) {
        s = sd_tensor_new4(&err, be, out->ne[0], out->ne[2], out->ne[3],
                           out->ne[1], &hwc);
    }
    if (s == SD_OK) {
        s = sd_permute(&err, hwc, out, to_hwc);
    }
    T_CHECK(s == SD_OK, "pipeline image: %s", err.msg);

    if (s == SD_OK) {
        /* clamp(0, 1) is output formatting, done here on the host */
        n = sd_numel(hwc);
        px = malloc((size_t) n * sizeof(float));
        if (px && sd_tensor_download(&err, hwc, px) == SD_OK) {
            for (i = 0; i < n; i++) {
                px[i] = px[i] < 0 ? 0 : (px[i] > 1 ? 1 : px[i]);
            }
            s = sd_tensor_upload(&err, hwc, px);
        }
        free(px);
        snprintf(key, sizeof(key), "%s.p0.image", m);
        t_compare(g, key, hwc, T_TOL_IMAGE);
    }

    sd_tensor_free(lat);
    sd_tensor_free(out);
    sd_tensor_free(hwc);
    free(hl);
}


/*
 * The medium fixture's shared folders are link files: a regular file that
 * holds a relative path ("../tiny-sd35-large/vae"). Follow one such level.
 */
static int
t_resolve_dir(char *dir, size_t len, const char *parent, const char *name)
{
    char         target[512];
    struct stat  sb;
    FILE        *f;
    size_t       n;

    snprintf(dir, len, "%s/%s", parent, name);
    if (stat(dir, &sb) != 0) {
        return -1;
    }
    if (S_ISDIR(sb.st_mode)) {
        return 0;
    }
    if (!S_ISREG(sb.st_mode) || sb.st_size >= (off_t) sizeof(target)) {
        return -1;
    }
    f = fopen(dir, "r");
    if (f == NULL) {
        return -1;
    }
    n = fread(target, 1, sizeof(target) - 1, f);
    fclose(f);
    while (n > 0 && (target[n - 1] == '\n' || target[n - 1] == ' ')) {
        n--;
    }
    target[n] = '\0';
    snprintf(dir, len, "%s/%s", parent, target);
    return (stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode)) ? 0 : -1;
}


/* A config without block_out_channels must fail and say so. */
static void
t_bad_config(sd_backend *be)
{
    char        dir[] = "/tmp/sd_test_vae_XXXXXX", path[128], wpath[160];
    sd_err      err = { SD_OK, "" };
    sd_vae     *vae = NULL;
    sd_status   s;
    FILE       *f;

    if (mkdtemp(dir) == NULL) {
        T_SKIP("mkdtemp() failed");
        return;
    }
    snprintf(path, sizeof(path), "%s/config.json", dir);
    f = fopen(path, "w");
    if (f == NULL) {
        T_SKIP("cannot write \"%s\"", path);
        rmdir(dir);
        return;
    }
    fputs("{\"_class_name\": \"AutoencoderKL\", \"latent_channels\": 16, "
          "\"layers_per_block\": 2, \"scaling_factor\": 1.5}\n", f);
    fclose(f);

    s = sd_vae_load(&err, be, dir, &vae);
    T_CHECK(s == SD_ERR_FORMAT && vae == NULL,
            "missing block_out_channels: status %d", (int) s);
    T_CHECK(strstr(err.msg, "block_out_channels") != NULL
            && strstr(err.msg, path) != NULL,
            "message names key and file: \"%s\"", err.msg);

    /* and a wrong block type */
    f = fopen(path, "w");
    if (f != NULL) {
        fputs("{\"block_out_channels\": [32, 64], \"latent_channels\": 16, "
              "\"scaling_factor\": 1.5, \"down_block_types\": "
              "[\"DownEncoderBlock2D\", \"CrossAttnDownBlock2D\"]}\n", f);
        fclose(f);
        sd_err_clear(&err);
        s = sd_vae_load(&err, be, dir, &vae);
        T_CHECK(s == SD_ERR_UNSUPPORTED && vae == NULL,
                "wrong block type: status %d (%s)", (int) s, err.msg);
    }

    /* a valid config without weights fails on the weights */
    f = fopen(path, "w");
    if (f != NULL) {
        fputs("{\"block_out_channels\": [32, 64], \"latent_channels\": 16, "
              "\"scaling_factor\": 1.5}\n", f);
        fclose(f);
        sd_err_clear(&err);
        s = sd_vae_load(&err, be, dir, &vae);
        T_CHECK(s != SD_OK && vae == NULL, "no weights: status %d",
                (int) s);
    }

    /* weights that stop after conv_in: the partial load is freed */
    f = fopen(path, "w");
    if (f != NULL) {
        static float  zeros[32 * 3 * 3 * 3];
        sd_st_out     t[2] = {
            { "encoder.conv_in.weight", SD_DT_F32, 4, { 32, 3, 3, 3 },
              zeros },
            { "encoder.conv_in.bias", SD_DT_F32, 1, { 32 }, zeros }
        };

        fputs("{\"block_out_channels\": [32], \"latent_channels\": 16, "
              "\"scaling_factor\": 1.5}\n", f);
        fclose(f);
        snprintf(wpath, sizeof(wpath), "%s/diffusion_pytorch_model"
                 ".safetensors", dir);
        sd_err_clear(&err);
        if (sd_st_write(&err, wpath, t, 2) == SD_OK) {
            s = sd_vae_load(&err, be, dir, &vae);
            T_CHECK(s != SD_OK && vae == NULL
                    && strstr(err.msg, "encoder.down_blocks.0.resnets.0")
                       != NULL,
                    "partial weights: status %d (%s)", (int) s, err.msg);
            T_CHECK(be->bytes_in_use == 0, "partial load leaked %zu bytes",
                    be->bytes_in_use);
            unlink(wpath);
        } else {
            T_SKIP("sd_st_write(): %s", err.msg);
        }
    }

    unlink(path);
    rmdir(dir);
}


int
main(void)
{
    static const char  *models[] = { "large", "medium" };
    sd_backend         *be = NULL;
    sd_vae             *vae = NULL;
    sd_st              *g = NULL;
    sd_err              err = { SD_OK, "" };
    char                path[1024], dir[2048], parent[512];
    struct stat         sb;
    size_t              i;

    if (t_backend(&err, &be) != SD_OK) {
        T_CHECK(0, "cpu backend: %s", err.msg);
        return T_DONE();
    }

    t_bad_config(be);

    snprintf(path, sizeof(path), "%s/golden-public.safetensors",
             t_fixtures());
    if (stat(path, &sb) != 0) {
        T_SKIP("no fixtures at \"%s\"", path);
        sd_backend_destroy(be);
        return T_DONE();
    }
    sd_err_clear(&err);
    if (sd_st_open(&err, path, &g) != SD_OK) {
        T_CHECK(0, "%s", err.msg);
        sd_backend_destroy(be);
        return T_DONE();
    }

    for (i = 0; i < sizeof(models) / sizeof(models[0]); i++) {
        snprintf(parent, sizeof(parent), "%s/tiny-sd35-%s", t_fixtures(),
                 models[i]);
        if (t_resolve_dir(dir, sizeof(dir), parent, "vae") != 0) {
            T_SKIP("no VAE at \"%s\"", dir);
            continue;
        }
        sd_err_clear(&err);
        if (sd_vae_load(&err, be, dir, &vae) != SD_OK) {
            T_CHECK(0, "load \"%s\": %s", dir, err.msg);
            continue;
        }
        T_CHECK(sd_vae_latent_channels(vae) == 16, "latent channels %d",
                sd_vae_latent_channels(vae));
        T_CHECK(fabsf(sd_vae_scaling_factor(vae) - 1.5305f) < 1e-6f
                && fabsf(sd_vae_shift_factor(vae) - 0.0609f) < 1e-6f,
                "scaling %g shift %g", sd_vae_scaling_factor(vae),
                sd_vae_shift_factor(vae));

        printf("%s:\n", models[i]);
        t_stages(be, vae, g, models[i]);
        t_pipeline_image(be, vae, g, models[i]);
        sd_vae_free(vae);
        vae = NULL;
    }

    sd_st_close(g);
    T_CHECK(be->bytes_in_use == 0, "backend bytes still in use: %zu",
            be->bytes_in_use);
    sd_backend_destroy(be);
    return T_DONE();
}
