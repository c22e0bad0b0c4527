/*
 * sd_cli_fp8.c: the sd-cli commands for FP8 checkpoints: "quantize" writes
 * an FP8 file in ComfyUI's naming from a diffusers folder, "fp8-model"
 * makes a model folder the server opens from a diffusers folder (configs,
 * tokenizers, scheduler, VAE) and single-file checkpoints (a ComfyUI /
 * SAI SD3.5 file, a T5 fp8_scaled file) put in place of components,
 * "fp8-check" compares a file with the folder and with quantize-at-load.
 *
 * Invariant: fp8-model only makes folders and symbolic links (absolute
 * targets); nothing is copied, and every replaced component is opened and
 * mapped once before the command reports success.
 *
 * Threads: fp8-check's workers only read the three sd_st of a component
 * (the folder's, the file's, quantize-at-load's), which the command owns
 * and closes after joining them; each owns its buffers and counts, and
 * the job's mutex guards the next tensor's index and the totals.
 */

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt.h"
#include "fp8_policy.h"
#include "sd_cli.h"


/* quantize IN OUT [--scale tensor|channel] [--keep KINDS|default|none] */
int
sd_cli_quantize(int argc, char **argv)
{
    const char  *scale = "tensor", *keep = NULL;
    sd_err       err = {0};
    int          per_row;

    sd_cli_opt  opts[] = {
        { "--scale", &scale, NULL, NULL, 0, 0, NULL },
        { "--keep",  &keep,  NULL, NULL, 0, 0, NULL },
    };

    if (argc < 2 || argv[0][0] == '-' || argv[1][0] == '-') {
        return sd_cli_usage();
    }
    if (sd_cli_parse(argc - 2, argv + 2, opts, 2) != 0) {
        return 2;
    }
    if (strcmp(scale, "tensor") != 0 && strcmp(scale, "channel") != 0) {
        fprintf(stderr, "sd-cli: --scale: \"%s\" is not tensor or channel\n",
                scale);
        return 2;
    }
    per_row = strcmp(scale, "channel") == 0;

    if (sd_ckpt_write_fp8(&err, argv[0], argv[1], per_row, keep) != SD_OK) {
        return sd_cli_fail("quantizing", &err);
    }
    printf("wrote %s (E4M3, %s scales, BF16 kept: %s)\n", argv[1],
           per_row ? "per-channel" : "per-tensor",
           keep ? keep : sd_fp8_default_keep());
    return 0;
}


/* dst = a "/" b; -1 (after a message) if it does not fit */
static int
join(char *dst, size_t len, const char *a, const char *b)
{
    int  n;

    n = snprintf(dst, len, "%s/%s", a, b);
    if (n < 0 || (size_t) n >= len) {
        fprintf(stderr, "sd-cli: path \"%s/%s\" too long\n", a, b);
        return -1;
    }
    return 0;
}


static int
link_abs(const char *target, const char *link)
{
    char  abs[PATH_MAX];

    if (realpath(target, abs) == NULL) {
        fprintf(stderr, "sd-cli: realpath(\"%s\") failed: %s\n", target,
                strerror(errno));
        return -1;
    }
    if (symlink(abs, link) != 0) {
        fprintf(stderr, "sd-cli: symlink(\"%s\", \"%s\") failed: %s\n", abs,
                link, strerror(errno));
        return -1;
    }
    return 0;
}


/* out/comp: base/comp's files except its weights, and file as weights. */
static int
link_component(const char *base, const char *out, const char *comp,
    const char *file)
{
    DIR            *d;
    char            src[PATH_MAX], dst[PATH_MAX], p[PATH_MAX], q[PATH_MAX];
    size_t          n;
    struct dirent  *de;

    if (join(src, sizeof(src), base, comp) != 0
        || join(dst, sizeof(dst), out, comp) != 0)
    {
        return -1;
    }
    if (mkdir(dst, 0755) != 0) {
        fprintf(stderr, "sd-cli: mkdir(\"%s\") failed: %s\n", dst,
                strerror(errno));
        return -1;
    }

    d = opendir(src);
    if (d == NULL) {
        fprintf(stderr, "sd-cli: opendir(\"%s\") failed: %s\n", src,
                strerror(errno));
        return -1;
    }
    while ((de = readdir(d)) != NULL) {
        n = strlen(de->d_name);
        if (de->d_name[0] == '.'
            || (n >= 12 && strcmp(de->d_name + n - 12, ".safetensors") == 0)
            || (n >= 23
                && strcmp(de->d_name + n - 23, ".safetensors.index.json")
                   == 0))
        {
            continue;
        }
        if (join(p, sizeof(p), src, de->d_name) != 0
            || join(q, sizeof(q), dst, de->d_name) != 0
            || link_abs(p, q) != 0)
        {
            closedir(d);
            return -1;
        }
    }
    closedir(d);

    if (join(p, sizeof(p), dst, "model.safetensors") != 0) {
        return -1;
    }
    return link_abs(file, p);
}


/* 1 if the file holds tensors for comp (a name with its prefix). */
static int
file_has(const char *file, const char *comp)
{
    int                  has;
    size_t               i, k;
    sd_st               *st;
    sd_err               err = {0};
    const sd_st_tensor  *t;

    static const struct {
        const char  *comp, *prefix;
    } pre[] = {
        { "transformer",    "model.diffusion_model." },
        { "text_encoder",   "text_encoders.clip_l.transformer." },
        { "text_encoder_2", "text_encoders.clip_g.transformer." },
        { "text_encoder_3", "text_encoders.t5xxl.transformer." },
        { "vae",            "first_stage_model." },
    };

    if (sd_st_open(&err, file, &st) != SD_OK) {
        return 0;
    }
    has = 0;
    for (i = 0; i < sizeof(pre) / sizeof(pre[0]) && !has; i++) {
        if (strcmp(pre[i].comp, comp) != 0) {
            continue;
        }
        for (k = 0; k < sd_st_count(st) && !has; k++) {
            t = sd_st_at(st, k);
            has = strncmp(t->name, pre[i].prefix, strlen(pre[i].prefix))
                  == 0;
        }
    }
    sd_st_close(st);
    return has;
}


/*
 * fp8-model OUT --base DIR [--file F] [--transformer F] [--text-encoder F]
 *   [--text-encoder-2 F] [--text-encoder-3 F] [--vae F]
 */
int
sd_cli_fp8_model(int argc, char **argv)
{
    DIR            *d;
    int             i, nf8, nsc;
    char            src[PATH_MAX], dst[PATH_MAX];
    size_t          k;
    sd_st          *st;
    sd_err          err = {0};
    const char     *out, *base = NULL, *bundle = NULL, *file[5];
    struct dirent  *de;
    const sd_st_tensor  *t;

    static const char  *comps[5] = {
        "transformer", "text_encoder", "text_encoder_2", "text_encoder_3",
        "vae"
    };

    memset(file, 0, sizeof(file));
    sd_cli_opt  opts[] = {
        { "--base",           &base,    NULL, NULL, 0, 0, NULL },
        { "--file",           &bundle,  NULL, NULL, 0, 0, NULL },
        { "--transformer",    &file[0], NULL, NULL, 0, 0, NULL },
        { "--text-encoder",   &file[1], NULL, NULL, 0, 0, NULL },
        { "--text-encoder-2", &file[2], NULL, NULL, 0, 0, NULL },
        { "--text-encoder-3", &file[3], NULL, NULL, 0, 0, NULL },
        { "--vae",            &file[4], NULL, NULL, 0, 0, NULL },
    };

    if (argc < 1 || argv[0][0] == '-') {
        return sd_cli_usage();
    }
    out = argv[0];
    if (sd_cli_parse(argc - 1, argv + 1, opts, 7) != 0) {
        return 2;
    }
    if (base == NULL) {
        fprintf(stderr, "sd-cli: fp8-model needs --base DIR (a diffusers "
                "folder: configs, tokenizers, VAE)\n");
        return 2;
    }
    for (i = 0; i < 5 && bundle != NULL; i++) {
        if (file[i] == NULL && file_has(bundle, comps[i])) {
            file[i] = bundle;
        }
    }
    for (i = 0; i < 5 && file[i] == NULL; i++) {
        /* void */
    }
    if (i == 5) {
        fprintf(stderr, "sd-cli: fp8-model: no component to replace (the "
                "--file has none of model.diffusion_model.*, "
                "text_encoders.*, first_stage_model.*)\n");
        return 2;
    }

    if (mkdir(out, 0755) != 0) {
        fprintf(stderr, "sd-cli: mkdir(\"%s\") failed: %s\n", out,
                strerror(errno));
        return 1;
    }

    d = opendir(base);
    if (d == NULL) {
        fprintf(stderr, "sd-cli: opendir(\"%s\") failed: %s\n", base,
                strerror(errno));
        return 1;
    }
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') {
            continue;
        }
        for (i = 0; i < 5; i++) {
            if (file[i] != NULL && strcmp(de->d_name, comps[i]) == 0) {
                break;
            }
        }
        if (i < 5) {
            continue;
        }
        if (join(src, sizeof(src), base, de->d_name) != 0
            || join(dst, sizeof(dst), out, de->d_name) != 0
            || link_abs(src, dst) != 0)
        {
            closedir(d);
            return 1;
        }
    }
    closedir(d);

    for (i = 0; i < 5; i++) {
        if (file[i] == NULL) {
            continue;
        }
        if (link_component(base, out, comps[i], file[i]) != 0) {
            return 1;
        }
        if (join(dst, sizeof(dst), out, comps[i]) != 0) {
            return 1;
        }
        if (sd_st_open_dir(&err, dst, &st) != SD_OK) {
            return sd_cli_fail(comps[i], &err);
        }
        nf8 = nsc = 0;
        for (k = 0; k < sd_st_count(st); k++) {
            t = sd_st_at(st, k);
            if (strncmp(t->name, "model.diffusion_model.", 22) == 0
                || strncmp(t->name, "text_encoders.", 14) == 0
                || strncmp(t->name, "first_stage_model.", 18) == 0)
            {
                continue;                       /* the file's own names */
            }
            nf8 += t->dtype == SD_DT_F8_E4M3 || t->dtype == SD_DT_F8_E5M2;
            nsc += t->scale != NULL;
        }
        printf("%s: %s (%d FP8 weights, %d with scales)\n", comps[i],
               file[i], nf8, nsc);
        sd_st_close(st);
    }
    return 0;
}


/* 1 if a names one tensor of ref at least (the file holds the component). */
static int
shares_a_name(const sd_st *ref, const sd_st *a)
{
    size_t  k;

    for (k = 0; k < sd_st_count(ref); k++) {
        if (sd_st_find(a, sd_st_at(ref, k)->name) != NULL) {
            return 1;
        }
    }
    return 0;
}


/*
 * The comparison of one component, or of a worker's share of it: counts
 * and worst errors, and the tensors read as F32 into buffers kept from
 * tensor to tensor (fresh ones each time cost as much as the comparison:
 * every page faulted in anew).
 */
typedef struct {
    size_t          n, missing, equal;
    double          worst_ref, worst_q;
    size_t          worst_at;           /* index in ref of worst_ref */
    float          *x, *y, *z;
    size_t          cap;
} sd_cli_fp8_cmp;


/* The tensors of one component shared among the workers. */
typedef struct {
    const sd_st      *ref, *a, *q;
    size_t            next;             /* the next index in ref to take */
    pthread_mutex_t   mu;
    sd_cli_fp8_cmp    total;
} sd_cli_fp8_job;


#define SD_CLI_FP8_THREADS  8


/* x, y, z of c for n values at least; -1 if out of memory */
static int
cmp_reserve(sd_cli_fp8_cmp *c, size_t n)
{
    float  *p;

    if (n <= c->cap) {
        return 0;
    }
    free(c->x);
    free(c->y);
    free(c->z);
    c->x = malloc(n * sizeof(float));
    c->y = malloc(n * sizeof(float));
    c->z = malloc(n * sizeof(float));
    p = c->x && c->y && c->z ? c->x : NULL;
    c->cap = p ? n : 0;
    return p ? 0 : -1;
}


/* ref[k] against file a's tensor and quantize-at-load's tensor q */
static void
cmp_tensor(size_t k, const sd_st_tensor *r, const sd_st_tensor *a,
    const sd_st_tensor *q, sd_cli_fp8_cmp *c)
{
    float    *x, *y, *z;
    double    dr, dq, nr, nq;
    int64_t   i;
    sd_err    err = {0};

    c->n++;
    if (a == NULL || q == NULL || a->numel != r->numel
        || cmp_reserve(c, (size_t) r->numel) != 0
        || sd_st_read_f32(&err, r, c->x) != SD_OK
        || sd_st_read_f32(&err, a, c->y) != SD_OK
        || sd_st_read_f32(&err, q, c->z) != SD_OK)
    {
        c->missing++;
        return;
    }
    x = c->x;
    y = c->y;
    z = c->z;

    dr = dq = nr = nq = 0;
    for (i = 0; i < r->numel; i++) {
        dr += ((double) y[i] - x[i]) * ((double) y[i] - x[i]);
        dq += ((double) y[i] - z[i]) * ((double) y[i] - z[i]);
        nr += (double) x[i] * x[i];
        nq += (double) z[i] * z[i];
    }
    dr = nr > 0 ? sqrt(dr / nr) : sqrt(dr);
    dq = nq > 0 ? sqrt(dq / nq) : sqrt(dq);
    c->equal += memcmp(y, z, (size_t) r->numel * sizeof(float)) == 0;
    if (dr > c->worst_ref) {
        c->worst_ref = dr;
        c->worst_at = k;
    }
    if (dq > c->worst_q) {
        c->worst_q = dq;
    }
}


/* from's counts into to; the worst of the two (the first one on a tie) */
static void
cmp_merge(sd_cli_fp8_cmp *to, const sd_cli_fp8_cmp *from)
{
    to->n += from->n;
    to->missing += from->missing;
    to->equal += from->equal;
    if (from->worst_ref > to->worst_ref
        || (from->worst_ref == to->worst_ref
            && from->worst_at < to->worst_at))
    {
        to->worst_ref = from->worst_ref;
        to->worst_at = from->worst_at;
    }
    if (from->worst_q > to->worst_q) {
        to->worst_q = from->worst_q;
    }
}


/* A worker: the next tensor of the job until none is left. */
static void *
cmp_worker(void *arg)
{
    size_t                k;
    sd_cli_fp8_job       *job = arg;
    sd_cli_fp8_cmp        c;
    const sd_st_tensor   *r;

    memset(&c, 0, sizeof(c));
    c.worst_at = SIZE_MAX;
    for ( ;; ) {
        pthread_mutex_lock(&job->mu);
        k = job->next++;
        pthread_mutex_unlock(&job->mu);
        if (k >= sd_st_count(job->ref)) {
            break;
        }
        r = sd_st_at(job->ref, k);
        cmp_tensor(k, r, sd_st_find(job->a, r->name),
                   sd_st_find(job->q, r->name), &c);
    }
    free(c.x);
    free(c.y);
    free(c.z);

    pthread_mutex_lock(&job->mu);
    cmp_merge(&job->total, &c);
    pthread_mutex_unlock(&job->mu);
    return NULL;
}


/*
 * Every tensor of ref against a and q, by up to SD_CLI_FP8_THREADS
 * threads (this one among them): the tensors are only read.
 */
static void
cmp_component(const sd_st *ref, const sd_st *a, const sd_st *q,
    sd_cli_fp8_cmp *c)
{
    sd_cli_fp8_job  job;

    memset(&job, 0, sizeof(job));
    job.ref = ref;
    job.a = a;
    job.q = q;
    job.total.worst_at = SIZE_MAX;
    pthread_mutex_init(&job.mu, NULL);

    sd_run_workers(cmp_worker, &job, sd_cpus(SD_CLI_FP8_THREADS));
    pthread_mutex_destroy(&job.mu);
    *c = job.total;
}


/*
 * fp8-check MODEL_DIR FILE [--scale tensor|channel] [--keep KINDS]
 * [--max-error F]: every weight of the diffusers folder's components
 * against FILE's (mapped) and against quantize-at-load of the folder. A
 * component FILE has no weight of is skipped before the folder's is
 * quantized (a transformer file need not wait for T5-XXL's 4.7 G weights);
 * a FILE with no weight of any component fails.
 */
int
sd_cli_fp8_check(int argc, char **argv)
{
    int             i, nq, bad, compared;
    char            dir[PATH_MAX];
    sd_st          *ref, *a, *q;
    sd_err          err = {0};
    double          maxerr = 0.1;
    const char     *scale = "tensor", *keep = NULL;
    sd_cli_fp8_cmp  c;

    static const char  *comps[5] = {
        "transformer", "text_encoder", "text_encoder_2", "text_encoder_3",
        "vae"
    };

    sd_cli_opt  opts[] = {
        { "--scale",     &scale, NULL, NULL, 0, 0, NULL },
        { "--keep",      &keep,  NULL, NULL, 0, 0, NULL },
        { "--max-error", NULL,   NULL, NULL, 0, 0, &maxerr },
    };

    if (argc < 2 || argv[0][0] == '-' || argv[1][0] == '-') {
        return sd_cli_usage();
    }
    if (sd_cli_parse(argc - 2, argv + 2, opts, 3) != 0) {
        return 2;
    }

    if (sd_fp8_keep_check(&err, keep) != SD_OK) {
        return sd_cli_fail("fp8-check", &err);
    }
    bad = compared = 0;
    printf("%-15s %7s %7s %7s %9s %9s  %s\n", "component", "tensors",
           "missing", "=load", "vs bf16", "vs load", "worst tensor");
    for (i = 0; i < 5; i++) {
        if (!file_has(argv[1], comps[i]) && i != 3) {
            continue;                           /* T5 may be bare */
        }
        if (join(dir, sizeof(dir), argv[0], comps[i]) != 0) {
            return 1;
        }
        ref = a = q = NULL;
        if (sd_st_open_dir(&err, dir, &ref) != SD_OK
            || sd_ckpt_open_file(&err, argv[1], comps[i], &a) != SD_OK)
        {
            sd_st_close(ref);
            if (i == 3 && err.status == SD_ERR_IO) {
                continue;                       /* no T5 in the folder */
            }
            return sd_cli_fail(comps[i], &err);
        }
        if (!shares_a_name(ref, a)) {
            sd_st_close(ref);                   /* the file lacks it: */
            sd_st_close(a);                     /* nothing to quantize */
            continue;
        }
        if (sd_st_open_dir(&err, dir, &q) != SD_OK
            || sd_ckpt_quantize(&err, q, strcmp(scale, "channel") == 0,
                                keep, &nq) != SD_OK)
        {
            sd_st_close(ref);
            sd_st_close(q);
            sd_st_close(a);
            return sd_cli_fail(comps[i], &err);
        }

        cmp_component(ref, a, q, &c);
        compared++;
        printf("%-15s %7zu %7zu %7zu %9.4f %9.4f  %s\n", comps[i], c.n,
               c.missing, c.equal, c.worst_ref, c.worst_q,
               c.worst_at < sd_st_count(ref)
               ? sd_st_at(ref, c.worst_at)->name : "");
        bad += c.missing > 0 || c.worst_ref > maxerr;
        sd_st_close(ref);
        sd_st_close(q);
        sd_st_close(a);
    }
    if (compared == 0) {
        fprintf(stderr, "sd-cli: fp8-check: \"%s\" holds no weight of "
                "\"%s\" under a name read here\n", argv[1], argv[0]);
        return 1;
    }
    return bad ? 1 : 0;
}
