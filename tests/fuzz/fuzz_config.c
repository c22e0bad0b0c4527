/*
 * fuzz_config.c: the model folder's readers, each on a file of arbitrary
 * bytes in a copy of the demo model (its other files linked). The first
 * byte picks the file and the reader:
 *   0 text_encoder/config.json     sd_clip_load
 *   1 text_encoder_3/config.json   sd_t5_load
 *   2 transformer/config.json      sd_mmdit_load, sd_model_hash_dir
 *   3 vae/config.json              sd_vae_load
 *   4 model_index.json             sd_model_hash_dir, sd_model_load
 *   5 scheduler/scheduler_config.json   sd_model_load
 *   6 tokenizer/vocab.json         sd_clip_tok_load
 *   7 tokenizer/merges.txt         sd_clip_tok_load
 *   8 tokenizer/tokenizer_config.json   sd_clip_tok_load
 *   9 tokenizer_3/spiece.model     sd_t5_tok_load
 * A file that a reader accepts must describe what it loaded: the loaders
 * check config sizes against tensor shapes, so nothing is read out of
 * bounds; a refusal must say why.
 */

#include <sys/stat.h>

#include "fuzz.h"
#include "model.h"


static const char  *files[] = {
    "text_encoder/config.json", "text_encoder_3/config.json",
    "transformer/config.json", "vae/config.json", "model_index.json",
    "scheduler/scheduler_config.json", "tokenizer/vocab.json",
    "tokenizer/merges.txt", "tokenizer/tokenizer_config.json",
    "tokenizer_3/spiece.model"
};

#define NFILES  (sizeof(files) / sizeof(files[0]))

static char         root[512];
static sd_backend  *be;


/* root/ mirrors the demo model: a folder per component, files linked */
static void
init(void)
{
    char          model[4096], src[4096], dst[4096];
    size_t        i;
    sd_err        err;
    struct stat   sb;
    const char  **d, **n;

    static const char  *dirs[] = {
        ".", "text_encoder", "text_encoder_2", "text_encoder_3",
        "transformer", "vae", "scheduler", "tokenizer", "tokenizer_2",
        "tokenizer_3", NULL
    };

    static const char  *names[] = {
        "model_index.json", "config.json", "model.safetensors",
        "diffusion_pytorch_model.safetensors", "scheduler_config.json",
        "vocab.json", "merges.txt", "tokenizer_config.json", "spiece.model",
        NULL
    };

    if (realpath(fuzz_model(), model) == NULL) {
        fprintf(stderr, "no demo model at %s (run \"make fuzz\")\n",
                fuzz_model());
        abort();
    }

    snprintf(root, sizeof(root), "%s/model", fuzz_tmpdir());
    mkdir(root, 0700);

    for (d = dirs; *d; d++) {
        snprintf(dst, sizeof(dst), "%s/%s", root, *d);
        mkdir(dst, 0700);

        for (n = names; *n; n++) {
            snprintf(src, sizeof(src), "%s/%s/%s", model, *d, *n);
            if (stat(src, &sb) != 0) {
                continue;
            }

            snprintf(dst, sizeof(dst), "%s/%s/%s", root, *d, *n);
            if (symlink(src, dst) != 0) {
                perror(dst);
                abort();
            }
        }
    }

    for (i = 0; i < NFILES; i++) {
        /* the original beside, to restore after every input */
        snprintf(src, sizeof(src), "%s/%s", model, files[i]);
        snprintf(dst, sizeof(dst), "%s/%s.orig", root, files[i]);
        if (symlink(src, dst) != 0) {
            perror(dst);
            abort();
        }
    }

    memset(&err, 0, sizeof(err));
    if (sd_backend_cpu_create(&err, 1, &be) != SD_OK) {
        fprintf(stderr, "sd_backend_cpu_create: %s\n", err.msg);
        abort();
    }
}


static void
component(int which, char *dir, size_t len)
{
    const char  *slash;

    slash = strchr(files[which], '/');
    snprintf(dir, len, "%s/%.*s", root,
             slash ? (int) (slash - files[which]) : 0, files[which]);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int            which;
    char           path[4096], orig[4096], dir[4096], hash[16];
    sd_err         err;
    sd_status      s;
    sd_clip       *clip;
    sd_t5         *t5;
    sd_mmdit      *dit;
    sd_vae        *vae;
    sd_model      *m;
    sd_clip_tok   *ctok;
    sd_t5_tok     *ttok;
    static int     ready;

    if (!ready) {
        init();
        ready = 1;
    }

    if (size == 0) {
        return 0;
    }

    which = data[0] % NFILES;
    snprintf(path, sizeof(path), "%s/%s", root, files[which]);
    snprintf(orig, sizeof(orig), "%s/%s.orig", root, files[which]);
    component(which, dir, sizeof(dir));

    unlink(path);
    fuzz_write(path, data + 1, size - 1);

    memset(&err, 0, sizeof(err));

    switch (which) {
    case 0:
        s = sd_clip_load(&err, be, dir, &clip);
        if (s == SD_OK) {
            FUZZ_CHECK(sd_clip_width(clip) > 0);
            sd_clip_free(clip);
        }
        break;
    case 1:
        s = sd_t5_load(&err, be, dir, &t5);
        if (s == SD_OK) {
            sd_t5_free(t5);
        }
        break;
    case 2:
        s = sd_mmdit_load(&err, be, dir, &dit);
        if (s == SD_OK) {
            sd_mmdit_free(dit);
        }
        (void) sd_model_hash_dir(root, hash, err.msg, sizeof(err.msg));
        break;
    case 3:
        s = sd_vae_load(&err, be, dir, &vae);
        if (s == SD_OK) {
            sd_vae_free(vae);
        }
        break;
    case 4:
    case 5:
        (void) sd_model_hash_dir(root, hash, err.msg, sizeof(err.msg));
        memset(&err, 0, sizeof(err));
        s = sd_model_load(&err, be, root, SD_PART_DIT, &m);
        if (s == SD_OK) {
            sd_model_free(m);
        }
        break;
    case 6:
    case 7:
    case 8:
        s = sd_clip_tok_load(&err, dir, &ctok);
        if (s == SD_OK) {
            sd_clip_tok_free(ctok);
        }
        break;
    default:
        s = sd_t5_tok_load(&err, dir, &ttok);
        if (s == SD_OK) {
            sd_t5_tok_free(ttok);
        }
    }

    if (s != SD_OK) {
        FUZZ_CHECK(err.msg[0] != '\0');
    }

    unlink(path);
    if (symlink(orig, path) != 0) {
        abort();
    }

    return 0;
}
