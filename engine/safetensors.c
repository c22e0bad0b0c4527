/*
 * safetensors.c: mmap-based reader for safetensors checkpoints (single files
 * and shard sets listed by a *.safetensors.index.json), dtype conversions to
 * float32, and a small writer for debugging dumps.
 *
 * Invariant: no tensor is exposed until its whole file header has been
 * validated: dtype known, shape non-negative, data_offsets inside the data
 * section, byte length == numel x dtype size (overflow-checked), and no two
 * tensors of one file overlapping. Tensor data pointers point into read-only
 * mappings owned by the sd_st and stay valid until sd_st_close(). Names are
 * unique across the whole set; lookups use a name-sorted index and bsearch.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cJSON.h>

#include "safetensors.h"
#include "ckpt.h"


#define SD_ST_MAX_HEADER    (100u * 1024 * 1024)
#define SD_ST_MAX_JSON_INT  9007199254740992.0      /* 2^53 */


typedef struct {
    char           *path;
    void           *map;
    size_t          size;
} sd_st_file;


typedef struct {
    char           *key;
    char           *value;
} sd_st_meta;


struct sd_st {
    char           *desc;           /* the path given to open, for errors */
    sd_st_file     *files;
    size_t          nfiles;
    sd_st_tensor   *tensors;
    size_t          ntensors;
    size_t          cap;
    sd_st_tensor  **sorted;         /* by name, for bsearch */
    sd_st_meta     *meta;
    size_t          nmeta;
    void          **held;           /* sd_st_hold() blocks, freed at close */
    size_t          nheld;
};


typedef struct {
    size_t          idx;            /* into st->tensors */
    uint64_t        begin;
    uint64_t        end;
} sd_st_range;


static char *sd_st_strdup(sd_err *err, const char *s);
static sd_status sd_st_parse_dtype(const char *s, sd_dtype *dt);
static sd_status sd_st_json_u64(const cJSON *j, uint64_t *v);
static sd_status sd_st_open_file(sd_err *err, sd_st *st, const char *path,
    int keep_meta);
static sd_status sd_st_parse_header(sd_err *err, sd_st *st, sd_st_file *f,
    const char *json, size_t hlen, int keep_meta);
static sd_status sd_st_add_tensor(sd_err *err, sd_st *st, sd_st_file *f,
    const char *name, const cJSON *desc, uint64_t hlen);
static sd_status sd_st_check_overlap(sd_err *err, sd_st *st, size_t first,
    const void *base, const char *path);
static sd_status sd_st_build_index(sd_err *err, sd_st *st);
static sd_status sd_st_open_index(sd_err *err, sd_st *st, const char *path);
static int sd_st_range_cmp(const void *a, const void *b);
static int sd_st_name_cmp(const void *a, const void *b);
static int sd_st_key_cmp(const void *key, const void *elt);
static int sd_st_ends_with(const char *s, const char *suffix);
static void sd_st_shape_str(char *buf, size_t len, int ndim,
    const int64_t *shape);


static const struct {
    const char     *name;
    size_t          size;
} sd_st_dtypes[] = {
    [SD_DT_F32]     = { "F32",     4 },
    [SD_DT_F16]     = { "F16",     2 },
    [SD_DT_BF16]    = { "BF16",    2 },
    [SD_DT_F8_E4M3] = { "F8_E4M3", 1 },
    [SD_DT_F8_E5M2] = { "F8_E5M2", 1 },
    [SD_DT_I32]     = { "I32",     4 },
    [SD_DT_I64]     = { "I64",     8 },
    [SD_DT_U8]      = { "U8",      1 },
};

#define SD_ST_NDTYPES  (sizeof(sd_st_dtypes) / sizeof(sd_st_dtypes[0]))


size_t
sd_dtype_size(sd_dtype dt)
{
    if ((size_t) dt >= SD_ST_NDTYPES) {
        return 0;
    }
    return sd_st_dtypes[dt].size;
}


const char *
sd_dtype_name(sd_dtype dt)
{
    if ((size_t) dt >= SD_ST_NDTYPES) {
        return "?";
    }
    return sd_st_dtypes[dt].name;
}


static sd_status
sd_st_parse_dtype(const char *s, sd_dtype *dt)
{
    size_t  i;

    for (i = 0; i < SD_ST_NDTYPES; i++) {
        if (strcmp(s, sd_st_dtypes[i].name) == 0) {
            *dt = (sd_dtype) i;
            return SD_OK;
        }
    }
    return SD_ERR_UNSUPPORTED;
}


static char *
sd_st_strdup(sd_err *err, const char *s)
{
    size_t   n;
    char    *p;

    n = strlen(s) + 1;
    p = sd_malloc(err, n, "string copy");
    if (p != NULL) {
        memcpy(p, s, n);
    }
    return p;
}


/* A JSON number that is a non-negative integer no larger than 2^53. */
static sd_status
sd_st_json_u64(const cJSON *j, uint64_t *v)
{
    double  d;

    if (!cJSON_IsNumber(j)) {
        return SD_ERR_FORMAT;
    }
    d = j->valuedouble;
    if (!(d >= 0.0) || d > SD_ST_MAX_JSON_INT || d != (double) (uint64_t) d) {
        return SD_ERR_FORMAT;
    }
    *v = (uint64_t) d;
    return SD_OK;
}


sd_status
sd_st_open(sd_err *err, const char *path, sd_st **out)
{
    sd_st      *st;
    sd_status   rc;

    *out = NULL;

    if (path == NULL) {
        return sd_errorf(err, SD_ERR_INVALID, "safetensors: NULL path");
    }

    st = sd_calloc(err, 1, sizeof(sd_st), "safetensors set");
    if (st == NULL) {
        return SD_ERR_NOMEM;
    }

    st->desc = sd_st_strdup(err, path);
    if (st->desc == NULL) {
        rc = SD_ERR_NOMEM;
        goto failed;
    }

    if (sd_st_ends_with(path, ".index.json")) {
        SD_TRY_GOTO(rc, sd_st_open_index(err, st, path), failed);

    } else {
        SD_TRY_GOTO(rc, sd_st_open_file(err, st, path, 1), failed);
        SD_TRY_GOTO(rc, sd_st_build_index(err, st), failed);
    }

    /* FP8 scales (ComfyUI scale_weight / weight_scale) onto their weights */
    SD_TRY_GOTO(rc, sd_ckpt_attach_scales(err, st), failed);

    *out = st;
    return SD_OK;

failed:

    sd_st_close(st);
    return rc;
}


static sd_status
sd_st_open_file(sd_err *err, sd_st *st, const char *path, int keep_meta)
{
    int           fd;
    char         *json;
    void         *map;
    uint64_t      hlen;
    sd_status     rc;
    sd_st_file   *f, *files;
    struct stat   sb;
    const unsigned char  *p;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return sd_errorf(err, SD_ERR_IO, "open(\"%s\") failed: %s", path,
                         strerror(errno));
    }

    if (fstat(fd, &sb) != 0) {
        rc = sd_errorf(err, SD_ERR_IO, "fstat(\"%s\") failed: %s", path,
                       strerror(errno));
        close(fd);
        return rc;
    }

    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return sd_errorf(err, SD_ERR_IO, "\"%s\" is not a regular file",
                         path);
    }

    if (sb.st_size < 8) {
        close(fd);
        return sd_errorf(err, SD_ERR_FORMAT, "\"%s\": truncated safetensors "
                         "file (%lld bytes, need at least 8)", path,
                         (long long) sb.st_size);
    }

    if ((uint64_t) sb.st_size > (uint64_t) SIZE_MAX) {
        close(fd);
        return sd_errorf(err, SD_ERR_IO, "\"%s\": file too large to map",
                         path);
    }

    map = mmap(NULL, (size_t) sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        return sd_errorf(err, SD_ERR_IO, "mmap(\"%s\") failed: %s", path,
                         strerror(errno));
    }

    files = realloc(st->files, (st->nfiles + 1) * sizeof(sd_st_file));
    if (files == NULL) {
        munmap(map, (size_t) sb.st_size);
        return sd_errorf(err, SD_ERR_NOMEM, "out of memory opening \"%s\"",
                         path);
    }
    st->files = files;

    f = &st->files[st->nfiles];
    f->map = map;
    f->size = (size_t) sb.st_size;
    f->path = sd_st_strdup(err, path);
    if (f->path == NULL) {
        munmap(map, f->size);
        return SD_ERR_NOMEM;
    }
    st->nfiles++;

    p = map;
    hlen = (uint64_t) p[0] | (uint64_t) p[1] << 8 | (uint64_t) p[2] << 16
           | (uint64_t) p[3] << 24 | (uint64_t) p[4] << 32
           | (uint64_t) p[5] << 40 | (uint64_t) p[6] << 48
           | (uint64_t) p[7] << 56;

    if (hlen > SD_ST_MAX_HEADER) {
        return sd_errorf(err, SD_ERR_FORMAT, "\"%s\": header length %llu "
                         "is larger than the %u-byte limit", path,
                         (unsigned long long) hlen, SD_ST_MAX_HEADER);
    }

    if (hlen > f->size - 8) {
        return sd_errorf(err, SD_ERR_FORMAT, "\"%s\": truncated file: header "
                         "length %llu but only %zu bytes follow", path,
                         (unsigned long long) hlen, f->size - 8);
    }

    if (hlen < 2) {
        return sd_errorf(err, SD_ERR_FORMAT, "\"%s\": header length %llu is "
                         "too small for a JSON object", path,
                         (unsigned long long) hlen);
    }

    /* a NUL-terminated copy: cJSON never reads past the mapping */
    json = sd_malloc(err, (size_t) hlen + 1, "safetensors header");
    if (json == NULL) {
        return SD_ERR_NOMEM;
    }
    memcpy(json, p + 8, (size_t) hlen);
    json[hlen] = '\0';

    rc = sd_st_parse_header(err, st, f, json, (size_t) hlen, keep_meta);
    free(json);

    return rc;
}


static sd_status
sd_st_parse_header(sd_err *err, sd_st *st, sd_st_file *f, const char *json,
    size_t hlen, int keep_meta)
{
    size_t         first, n;
    cJSON         *root, *item, *m;
    sd_status      rc;
    sd_st_meta    *meta;
    const char    *end;

    end = NULL;
    root = cJSON_ParseWithLengthOpts(json, hlen + 1, &end, 0);
    if (root == NULL) {
        /* end is the error position; cJSON_GetErrorPtr() is not per-thread */
        return sd_errorf(err, SD_ERR_FORMAT, "\"%s\": header is not valid "
                         "JSON (near byte %td)", f->path,
                         (end && end >= json && end <= json + hlen)
                         ? end - json : (ptrdiff_t) -1);
    }

    for ( /* void */ ; end != NULL && *end != '\0'; end++) {
        if (*end != ' ' && *end != '\t' && *end != '\n' && *end != '\r') {
            cJSON_Delete(root);
            return sd_errorf(err, SD_ERR_FORMAT, "\"%s\": trailing garbage "
                             "after the JSON header at byte %td", f->path,
                             end - json);
        }
    }

    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return sd_errorf(err, SD_ERR_FORMAT, "\"%s\": header is not a JSON "
                         "object", f->path);
    }

    first = st->ntensors;
    rc = SD_OK;

    cJSON_ArrayForEach(item, root) {

        if (item->string == NULL) {
            rc = sd_errorf(err, SD_ERR_FORMAT, "\"%s\": header entry "
                           "without a name", f->path);
            goto done;
        }

        if (strcmp(item->string, "__metadata__") == 0) {
            if (!cJSON_IsObject(item)) {
                rc = sd_errorf(err, SD_ERR_FORMAT, "\"%s\": __metadata__ is "
                               "not an object", f->path);
                goto done;
            }

            n = 0;
            cJSON_ArrayForEach(m, item) {
                if (!cJSON_IsString(m) || m->string == NULL) {
                    rc = sd_errorf(err, SD_ERR_FORMAT, "\"%s\": __metadata__ "
                                   "value \"%s\" is not a string", f->path,
                                   m->string ? m->string : "?");
                    goto done;
                }
                n++;
            }

            if (!keep_meta || st->meta != NULL || n == 0) {
                continue;
            }

            meta = sd_calloc(err, n, sizeof(sd_st_meta), "metadata");
            if (meta == NULL) {
                rc = SD_ERR_NOMEM;
                goto done;
            }
            st->meta = meta;

            cJSON_ArrayForEach(m, item) {
                meta[st->nmeta].key = sd_st_strdup(err, m->string);
                meta[st->nmeta].value = sd_st_strdup(err, m->valuestring);
                st->nmeta++;
                if (meta[st->nmeta - 1].key == NULL
                    || meta[st->nmeta - 1].value == NULL)
                {
                    rc = SD_ERR_NOMEM;
                    goto done;
                }
            }

            continue;
        }

        rc = sd_st_add_tensor(err, st, f, item->string, item, hlen);
        if (rc != SD_OK) {
            goto done;
        }
    }

    rc = sd_st_check_overlap(err, st, first,
                             (const unsigned char *) f->map + 8 + hlen,
                             f->path);

done:

    cJSON_Delete(root);
    return rc;
}


static sd_status
sd_st_add_tensor(sd_err *err, sd_st *st, sd_st_file *f, const char *name,
    const cJSON *desc, uint64_t hlen)
{
    int            ndim;
    size_t         cap;
    uint64_t       dim, numel, begin, end, nbytes, datalen, esize;
    sd_dtype       dt;
    const cJSON   *jdt, *jshape, *joff, *d;
    sd_st_tensor  *t, *tensors;

    if (!cJSON_IsObject(desc)) {
        return sd_errorf(err, SD_ERR_FORMAT, "\"%s\": tensor \"%s\": entry "
                         "is not an object", f->path, name);
    }

    jdt = cJSON_GetObjectItemCaseSensitive(desc, "dtype");
    jshape = cJSON_GetObjectItemCaseSensitive(desc, "shape");
    joff = cJSON_GetObjectItemCaseSensitive(desc, "data_offsets");

    if (!cJSON_IsString(jdt)) {
        return sd_errorf(err, SD_ERR_FORMAT, "\"%s\": tensor \"%s\": missing "
                         "or non-string \"dtype\"", f->path, name);
    }

    if (sd_st_parse_dtype(jdt->valuestring, &dt) != SD_OK) {
        return sd_errorf(err, SD_ERR_UNSUPPORTED, "\"%s\": tensor \"%s\": "
                         "unsupported dtype \"%s\"", f->path, name,
                         jdt->valuestring);
    }

    if (!cJSON_IsArray(jshape)) {
        return sd_errorf(err, SD_ERR_FORMAT, "\"%s\": tensor \"%s\": missing "
                         "or non-array \"shape\"", f->path, name);
    }

    if (cJSON_GetArraySize(jshape) > SD_ST_MAX_DIMS) {
        return sd_errorf(err, SD_ERR_FORMAT, "\"%s\": tensor \"%s\": %d "
                         "dimensions, at most %d supported", f->path, name,
                         cJSON_GetArraySize(jshape), SD_ST_MAX_DIMS);
    }

    if (!cJSON_IsArray(joff) || cJSON_GetArraySize(joff) != 2) {
        return sd_errorf(err, SD_ERR_FORMAT, "\"%s\": tensor \"%s\": "
                         "\"data_offsets\" must be an array [begin, end]",
                         f->path, name);
    }

    if (st->ntensors == st->cap) {
        cap = st->cap ? st->cap * 2 : 64;
        tensors = realloc(st->tensors, cap * sizeof(sd_st_tensor));
        if (tensors == NULL) {
            return sd_errorf(err, SD_ERR_NOMEM, "out of memory reading the "
                             "header of \"%s\"", f->path);
        }
        st->tensors = tensors;
        st->cap = cap;
    }

    t = &st->tensors[st->ntensors];
    memset(t, 0, sizeof(sd_st_tensor));
    t->dtype = dt;
    t->file = f->path;

    ndim = 0;
    numel = 1;
    cJSON_ArrayForEach(d, jshape) {
        if (sd_st_json_u64(d, &dim) != SD_OK || dim > (uint64_t) INT64_MAX) {
            return sd_errorf(err, SD_ERR_FORMAT, "\"%s\": tensor \"%s\": "
                             "shape[%d] is not a non-negative integer",
                             f->path, name, ndim);
        }
        t->shape[ndim++] = (int64_t) dim;
        if (dim != 0 && numel > (uint64_t) INT64_MAX / dim) {
            return sd_errorf(err, SD_ERR_FORMAT, "\"%s\": tensor \"%s\": "
                             "element count overflows", f->path, name);
        }
        numel *= dim;
    }
    t->ndim = ndim;

    esize = sd_dtype_size(dt);
    if (numel > UINT64_MAX / esize) {
        return sd_errorf(err, SD_ERR_FORMAT, "\"%s\": tensor \"%s\": byte "
                         "size overflows", f->path, name);
    }
    nbytes = numel * esize;

    if (sd_st_json_u64(cJSON_GetArrayItem(joff, 0), &begin) != SD_OK
        || sd_st_json_u64(cJSON_GetArrayItem(joff, 1), &end) != SD_OK)
    {
        return sd_errorf(err, SD_ERR_FORMAT, "\"%s\": tensor \"%s\": "
                         "data_offsets are not non-negative integers",
                         f->path, name);
    }

    if (begin > end) {
        return sd_errorf(err, SD_ERR_FORMAT, "\"%s\": tensor \"%s\": "
                         "data_offsets [%llu, %llu] has begin > end",
                         f->path, name, (unsigned long long) begin,
                         (unsigned long long) end);
    }

    datalen = (uint64_t) f->size - 8 - hlen;
    if (end > datalen) {
        return sd_errorf(err, SD_ERR_FORMAT, "\"%s\": tensor \"%s\": "
                         "data_offsets [%llu, %llu] past the end of the "
                         "%llu-byte data section (truncated file?)", f->path,
                         name, (unsigned long long) begin,
                         (unsigned long long) end,
                         (unsigned long long) datalen);
    }

    if (end - begin != nbytes) {
        return sd_errorf(err, SD_ERR_FORMAT, "\"%s\": tensor \"%s\": "
                         "%llu bytes in data_offsets but shape x %s needs "
                         "%llu", f->path, name,
                         (unsigned long long) (end - begin),
                         sd_dtype_name(dt), (unsigned long long) nbytes);
    }

    t->numel = (int64_t) numel;
    t->nbytes = (size_t) nbytes;
    t->data = (const unsigned char *) f->map + 8 + hlen + begin;
    t->name = sd_st_strdup(err, name);
    if (t->name == NULL) {
        return SD_ERR_NOMEM;
    }

    st->ntensors++;
    return SD_OK;
}


static int
sd_st_range_cmp(const void *a, const void *b)
{
    const sd_st_range  *x = a, *y = b;

    if (x->begin != y->begin) {
        return x->begin < y->begin ? -1 : 1;
    }
    if (x->end != y->end) {
        return x->end < y->end ? -1 : 1;
    }
    return 0;
}


/* Tensors [first, ntensors) come from one file: their ranges must not meet. */
static sd_status
sd_st_check_overlap(sd_err *err, sd_st *st, size_t first, const void *base,
    const char *path)
{
    size_t          i, n;
    sd_st_range    *r;
    sd_st_tensor   *a, *b;

    n = st->ntensors - first;
    if (n < 2) {
        return SD_OK;
    }

    r = sd_malloc(err, n * sizeof(sd_st_range), "tensor ranges");
    if (r == NULL) {
        return SD_ERR_NOMEM;
    }

    for (i = 0; i < n; i++) {
        a = &st->tensors[first + i];
        r[i].idx = first + i;
        r[i].begin = (uint64_t) ((const unsigned char *) a->data
                                 - (const unsigned char *) base);
        r[i].end = r[i].begin + a->nbytes;
    }

    qsort(r, n, sizeof(sd_st_range), sd_st_range_cmp);

    for (i = 1; i < n; i++) {
        if (r[i].begin < r[i - 1].end) {
            a = &st->tensors[r[i - 1].idx];
            b = &st->tensors[r[i].idx];
            free(r);
            return sd_errorf(err, SD_ERR_FORMAT, "\"%s\": tensors \"%s\" and "
                             "\"%s\" have overlapping data_offsets", path,
                             a->name, b->name);
        }
    }

    free(r);
    return SD_OK;
}


static int
sd_st_name_cmp(const void *a, const void *b)
{
    const sd_st_tensor  *x = *(sd_st_tensor * const *) a;
    const sd_st_tensor  *y = *(sd_st_tensor * const *) b;

    return strcmp(x->name, y->name);
}


static int
sd_st_key_cmp(const void *key, const void *elt)
{
    const sd_st_tensor  *t = *(sd_st_tensor * const *) elt;

    return strcmp(key, t->name);
}


static sd_status
sd_st_build_index(sd_err *err, sd_st *st)
{
    size_t  i;

    st->sorted = sd_calloc(err, st->ntensors, sizeof(sd_st_tensor *),
                           "tensor index");
    if (st->sorted == NULL) {
        return SD_ERR_NOMEM;
    }

    for (i = 0; i < st->ntensors; i++) {
        st->sorted[i] = &st->tensors[i];
    }

    qsort(st->sorted, st->ntensors, sizeof(sd_st_tensor *), sd_st_name_cmp);

    for (i = 1; i < st->ntensors; i++) {
        if (strcmp(st->sorted[i]->name, st->sorted[i - 1]->name) == 0) {
            return sd_errorf(err, SD_ERR_FORMAT, "\"%s\": duplicate tensor "
                             "\"%s\" (in \"%s\" and \"%s\")", st->desc,
                             st->sorted[i]->name, st->sorted[i - 1]->file,
                             st->sorted[i]->file);
        }
    }

    return SD_OK;
}


static sd_status
sd_st_open_index(sd_err *err, sd_st *st, const char *path)
{
    int            found;
    char          *text, *dir, *slash;
    char           shard[4096];
    size_t         i, j, len, nshards;
    cJSON         *root, *wm, *e;
    sd_err         serr;
    sd_status      rc;
    const char   **shards;
    const sd_st_tensor  *t;

    text = NULL;
    dir = NULL;
    root = NULL;
    shards = NULL;

    SD_TRY(sd_read_file(err, path, &text, &len));

    root = cJSON_ParseWithLength(text, len);
    if (root == NULL || !cJSON_IsObject(root)) {
        rc = sd_errorf(err, SD_ERR_FORMAT, "\"%s\": not a JSON object", path);
        goto done;
    }

    wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(wm)) {
        rc = sd_errorf(err, SD_ERR_FORMAT, "\"%s\": missing or non-object "
                       "\"weight_map\"", path);
        goto done;
    }

    dir = sd_st_strdup(err, path);
    if (dir == NULL) {
        rc = SD_ERR_NOMEM;
        goto done;
    }
    slash = strrchr(dir, '/');
    if (slash == NULL) {
        dir[0] = '.';
        dir[1] = '\0';
    } else if (slash == dir) {
        dir[1] = '\0';
    } else {
        *slash = '\0';
    }

    nshards = (size_t) cJSON_GetArraySize(wm);
    shards = sd_calloc(err, nshards, sizeof(char *), "shard list");
    if (shards == NULL) {
        rc = SD_ERR_NOMEM;
        goto done;
    }

    /* distinct shard names, in order of first appearance */
    nshards = 0;
    cJSON_ArrayForEach(e, wm) {
        if (!cJSON_IsString(e) || e->valuestring[0] == '\0'
            || e->valuestring[0] == '/' || e->string == NULL)
        {
            rc = sd_errorf(err, SD_ERR_FORMAT, "\"%s\": weight_map entry "
                           "\"%s\" is not a relative file name", path,
                           e->string ? e->string : "?");
            goto done;
        }

        for (j = 0; j < nshards; j++) {
            if (strcmp(shards[j], e->valuestring) == 0) {
                break;
            }
        }
        if (j == nshards) {
            shards[nshards++] = e->valuestring;
        }
    }

    if (nshards == 0) {
        rc = sd_errorf(err, SD_ERR_FORMAT, "\"%s\": empty weight_map", path);
        goto done;
    }

    for (i = 0; i < nshards; i++) {
        SD_TRY_GOTO(rc, sd_path_join(err, shard, sizeof(shard), dir,
                                     shards[i]), done);
        sd_err_clear(&serr);
        rc = sd_st_open_file(&serr, st, shard, i == 0);
        if (rc != SD_OK) {
            sd_errorf(err, rc, "%s (shard of \"%s\")", serr.msg, path);
            goto done;
        }
    }

    SD_TRY_GOTO(rc, sd_st_build_index(err, st), done);

    /* every tensor the index names must be in the shard it names */
    cJSON_ArrayForEach(e, wm) {
        t = sd_st_find(st, e->string);
        if (t == NULL) {
            rc = sd_errorf(err, SD_ERR_FORMAT, "\"%s\": tensor \"%s\" is "
                           "listed for shard \"%s\" but not found there",
                           path, e->string, e->valuestring);
            goto done;
        }

        found = 0;
        len = strlen(t->file);
        j = strlen(e->valuestring);
        if (len >= j && strcmp(t->file + len - j, e->valuestring) == 0
            && (len == j || t->file[len - j - 1] == '/'))
        {
            found = 1;
        }

        if (!found) {
            rc = sd_errorf(err, SD_ERR_FORMAT, "\"%s\": tensor \"%s\" is "
                           "listed for shard \"%s\" but found in \"%s\"",
                           path, e->string, e->valuestring, t->file);
            goto done;
        }
    }

    rc = SD_OK;

done:

    free(shards);
    free(dir);
    cJSON_Delete(root);
    free(text);
    return rc;
}


static int
sd_st_ends_with(const char *s, const char *suffix)
{
    size_t  n, m;

    n = strlen(s);
    m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}


sd_status
sd_st_open_dir(sd_err *err, const char *dir, sd_st **out)
{
    DIR            *d;
    char            path[4096], pick[256];
    size_t          nindex, nfile;
    int             pref_index, pref_file;
    const char     *name;
    sd_status       s;
    struct dirent  *de;
    char            first_index[256], first_file[256];

    static const char  *preferred[] = {
        "diffusion_pytorch_model.safetensors",
        "model.safetensors",
    };

    *out = NULL;

    if (dir == NULL) {
        return sd_errorf(err, SD_ERR_INVALID, "safetensors: NULL folder");
    }

    d = opendir(dir);
    if (d == NULL) {
        return sd_errorf(err, SD_ERR_IO, "opendir(\"%s\") failed: %s", dir,
                         strerror(errno));
    }

    nindex = 0;
    nfile = 0;
    pref_index = 2;
    pref_file = 2;
    first_index[0] = '\0';
    first_file[0] = '\0';

    while ((de = readdir(d)) != NULL) {
        name = de->d_name;
        if (name[0] == '.' || strlen(name) >= sizeof(first_index)) {
            continue;
        }

        if (sd_st_ends_with(name, ".safetensors.index.json")) {
            nindex++;
            if (nindex == 1) {
                strcpy(first_index, name);
            }
            if (strcmp(name, "diffusion_pytorch_model.safetensors.index.json")
                == 0)
            {
                pref_index = 0;
            } else if (strcmp(name, "model.safetensors.index.json") == 0
                       && pref_index > 1)
            {
                pref_index = 1;
            }

        } else if (sd_st_ends_with(name, ".safetensors")) {
            nfile++;
            if (nfile == 1) {
                strcpy(first_file, name);
            }
            if (strcmp(name, preferred[0]) == 0) {
                pref_file = 0;
            } else if (strcmp(name, preferred[1]) == 0 && pref_file > 1) {
                pref_file = 1;
            }
        }
    }

    closedir(d);

    if (nindex == 1) {
        strcpy(pick, first_index);

    } else if (nindex > 1) {
        if (pref_index == 2) {
            return sd_errorf(err, SD_ERR_FORMAT, "\"%s\": %zu "
                             "*.safetensors.index.json files and none is "
                             "named diffusion_pytorch_model or model", dir,
                             nindex);
        }
        snprintf(pick, sizeof(pick), "%s.index.json", preferred[pref_index]);

    } else if (nfile == 1) {
        strcpy(pick, first_file);

    } else if (nfile > 1) {
        if (pref_file == 2) {
            return sd_errorf(err, SD_ERR_FORMAT, "\"%s\": %zu *.safetensors "
                             "files and none is named %s or %s", dir, nfile,
                             preferred[0], preferred[1]);
        }
        strcpy(pick, preferred[pref_file]);

    } else {
        return sd_errorf(err, SD_ERR_IO, "\"%s\": no *.safetensors or "
                         "*.safetensors.index.json file in the folder", dir);
    }

    SD_TRY(sd_path_join(err, path, sizeof(path), dir, pick));

    SD_TRY(sd_st_open(err, path, out));

    /* a single-file (SAI / ComfyUI) layout answers diffusers names too */
    s = sd_ckpt_map_layout(err, *out, dir);
    if (s != SD_OK) {
        sd_st_close(*out);
        *out = NULL;
    }
    return s;
}


void
sd_st_close(sd_st *st)
{
    size_t  i;

    if (st == NULL) {
        return;
    }

    for (i = 0; i < st->ntensors; i++) {
        free((char *) st->tensors[i].name);
    }
    for (i = 0; i < st->nfiles; i++) {
        munmap(st->files[i].map, st->files[i].size);
        free(st->files[i].path);
    }
    for (i = 0; i < st->nmeta; i++) {
        free(st->meta[i].key);
        free(st->meta[i].value);
    }
    for (i = 0; i < st->nheld; i++) {
        free(st->held[i]);
    }

    free(st->held);
    free(st->meta);
    free(st->sorted);
    free(st->tensors);
    free(st->files);
    free(st->desc);
    free(st);
}


const sd_st_tensor *
sd_st_find(const sd_st *st, const char *name)
{
    sd_st_tensor  **p;

    if (st == NULL || name == NULL || st->sorted == NULL) {
        return NULL;
    }

    p = bsearch(name, st->sorted, st->ntensors, sizeof(sd_st_tensor *),
                sd_st_key_cmp);

    return p ? *p : NULL;
}


size_t
sd_st_count(const sd_st *st)
{
    return st ? st->ntensors : 0;
}


const sd_st_tensor *
sd_st_at(const sd_st *st, size_t i)
{
    if (st == NULL || i >= st->ntensors) {
        return NULL;
    }
    return &st->tensors[i];
}


const char *
sd_st_metadata(const sd_st *st, const char *key)
{
    size_t  i;

    if (st == NULL || key == NULL) {
        return NULL;
    }

    for (i = 0; i < st->nmeta; i++) {
        if (strcmp(st->meta[i].key, key) == 0) {
            return st->meta[i].value;
        }
    }
    return NULL;
}


static void
sd_st_shape_str(char *buf, size_t len, int ndim, const int64_t *shape)
{
    int     i;
    size_t  n;

    n = (size_t) snprintf(buf, len, "[");
    for (i = 0; i < ndim && n < len; i++) {
        n += (size_t) snprintf(buf + n, len - n, "%s%lld", i ? ", " : "",
                               (long long) shape[i]);
    }
    if (n < len) {
        snprintf(buf + n, len - n, "]");
    }
}


sd_status
sd_st_get(sd_err *err, const sd_st *st, const char *name, int ndim,
    const int64_t *shape, const sd_st_tensor **out)
{
    int                  i;
    char                 want[160], have[160];
    const sd_st_tensor  *t;

    *out = NULL;

    if (st == NULL || name == NULL) {
        return sd_errorf(err, SD_ERR_INVALID, "sd_st_get: NULL argument");
    }

    t = sd_st_find(st, name);
    if (t == NULL) {
        return sd_errorf(err, SD_ERR_FORMAT, "tensor \"%s\" not found in "
                         "\"%s\"", name, st->desc);
    }

    if (shape != NULL) {
        if (ndim < 0 || ndim > SD_ST_MAX_DIMS) {
            return sd_errorf(err, SD_ERR_INVALID, "sd_st_get(\"%s\"): bad "
                             "ndim %d", name, ndim);
        }

        i = 0;
        if (t->ndim == ndim) {
            for (i = 0; i < ndim; i++) {
                if (t->shape[i] != shape[i]) {
                    break;
                }
            }
        }

        if (t->ndim != ndim || i != ndim) {
            sd_st_shape_str(want, sizeof(want), ndim, shape);
            sd_st_shape_str(have, sizeof(have), t->ndim, t->shape);
            return sd_errorf(err, SD_ERR_FORMAT, "tensor \"%s\" in \"%s\" "
                             "has shape %s, expected %s", name, t->file,
                             have, want);
        }
    }

    *out = t;
    return SD_OK;
}


float
sd_bf16_to_f32(uint16_t h)
{
    float     f;
    uint32_t  u;

    u = (uint32_t) h << 16;
    memcpy(&f, &u, sizeof(f));
    return f;
}


float
sd_f16_to_f32(uint16_t h)
{
    float     f;
    uint32_t  sign, exp, mant, u;

    sign = (uint32_t) (h & 0x8000) << 16;
    exp = (h >> 10) & 0x1f;
    mant = h & 0x3ff;

    if (exp == 0) {
        /* zero or subnormal: mant x 2^-24, exact in float */
        f = (float) mant * 0x1p-24f;
        return sign ? -f : f;
    }

    if (exp == 31) {
        u = sign | 0x7f800000u | (mant << 13);

    } else {
        u = sign | ((exp - 15 + 127) << 23) | (mant << 13);
    }

    memcpy(&f, &u, sizeof(f));
    return f;
}


float
sd_f8e4m3_to_f32(uint8_t v)
{
    float     f;
    uint32_t  exp, mant, u;

    exp = (v >> 3) & 0xf;
    mant = v & 0x7;

    if ((v & 0x7f) == 0x7f) {
        f = NAN;

    } else if (exp == 0) {
        f = (float) mant * 0x1p-9f;

    } else {
        /* rebiased in place (as sd_f16_to_f32): no libm call per value */
        u = ((exp - 7 + 127) << 23) | (mant << 20);
        memcpy(&f, &u, sizeof(f));
    }

    return (v & 0x80) ? -f : f;
}


float
sd_f8e5m2_to_f32(uint8_t v)
{
    /* E5M2 is the top byte of an IEEE half */
    return sd_f16_to_f32((uint16_t) ((uint16_t) v << 8));
}


uint16_t
sd_f32_to_bf16(float f)
{
    uint32_t  u;

    memcpy(&u, &f, sizeof(u));

    if ((u & 0x7fffffffu) > 0x7f800000u) {
        /* NaN: keep the sign and top payload, force quiet */
        return (uint16_t) ((u >> 16) | 0x0040);
    }

    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t) (u >> 16);
}


/* x = fp8 * scale: one scale, or one per row (shape[0] rows). */
static void
sd_st_apply_scale(const sd_st_tensor *t, float *dst)
{
    int64_t  i, r, cols;

    if (t->scale == NULL || t->n_scale < 1) {
        return;
    }

    if (t->n_scale == 1) {
        for (i = 0; i < t->numel; i++) {
            dst[i] *= t->scale[0];
        }
        return;
    }

    cols = t->numel / t->n_scale;
    for (r = 0; r < t->n_scale; r++) {
        for (i = 0; i < cols; i++) {
            dst[r * cols + i] *= t->scale[r];
        }
    }
}


sd_status
sd_st_read_f32(sd_err *err, const sd_st_tensor *t, float *dst)
{
    size_t                i, n;
    int32_t               i32;
    int64_t               i64;
    uint16_t              h;
    const unsigned char  *p;

    if (t == NULL || (dst == NULL && t->numel > 0)) {
        return sd_errorf(err, SD_ERR_INVALID, "sd_st_read_f32: NULL "
                         "argument");
    }

    n = (size_t) t->numel;
    p = t->data;

    switch (t->dtype) {

    case SD_DT_F32:
        if (n) {
            memcpy(dst, p, n * sizeof(float));
        }
        break;

    case SD_DT_F16:
        for (i = 0; i < n; i++) {
            memcpy(&h, p + 2 * i, 2);
            dst[i] = sd_f16_to_f32(h);
        }
        break;

    case SD_DT_BF16:
        for (i = 0; i < n; i++) {
            memcpy(&h, p + 2 * i, 2);
            dst[i] = sd_bf16_to_f32(h);
        }
        break;

    case SD_DT_F8_E4M3:
        for (i = 0; i < n; i++) {
            dst[i] = sd_f8e4m3_to_f32(p[i]);
        }
        sd_st_apply_scale(t, dst);
        break;

    case SD_DT_F8_E5M2:
        for (i = 0; i < n; i++) {
            dst[i] = sd_f8e5m2_to_f32(p[i]);
        }
        sd_st_apply_scale(t, dst);
        break;

    case SD_DT_I32:
        for (i = 0; i < n; i++) {
            memcpy(&i32, p + 4 * i, 4);
            dst[i] = (float) i32;
        }
        break;

    case SD_DT_I64:
        for (i = 0; i < n; i++) {
            memcpy(&i64, p + 8 * i, 8);
            dst[i] = (float) i64;
        }
        break;

    case SD_DT_U8:
        for (i = 0; i < n; i++) {
            dst[i] = (float) p[i];
        }
        break;

    default:
        return sd_errorf(err, SD_ERR_INTERNAL, "tensor \"%s\": bad dtype %d",
                         t->name, (int) t->dtype);
    }

    return SD_OK;
}


sd_status
sd_st_write(sd_err *err, const char *path, const sd_st_out *t, size_t n)
{
    int         k;
    FILE       *fp;
    char       *json;
    size_t      i, len, pad, esize;
    uint64_t    off, numel, nbytes;
    cJSON      *root, *obj, *arr;
    sd_status   rc;
    unsigned char  hdr[8];

    static const char  spaces[8] = "        ";

    if (path == NULL || (t == NULL && n > 0)) {
        return sd_errorf(err, SD_ERR_INVALID, "sd_st_write: NULL argument");
    }

    json = NULL;
    fp = NULL;
    rc = SD_OK;

    root = cJSON_CreateObject();
    if (root == NULL) {
        return sd_errorf(err, SD_ERR_NOMEM, "out of memory writing \"%s\"",
                         path);
    }

    off = 0;
    for (i = 0; i < n; i++) {
        esize = sd_dtype_size(t[i].dtype);
        if (t[i].name == NULL || esize == 0 || t[i].ndim < 0
            || t[i].ndim > SD_ST_MAX_DIMS
            || strcmp(t[i].name, "__metadata__") == 0)
        {
            rc = sd_errorf(err, SD_ERR_INVALID, "\"%s\": tensor %zu has a "
                           "bad name, dtype or ndim", path, i);
            goto done;
        }

        if (cJSON_GetObjectItemCaseSensitive(root, t[i].name) != NULL) {
            rc = sd_errorf(err, SD_ERR_INVALID, "\"%s\": duplicate tensor "
                           "\"%s\"", path, t[i].name);
            goto done;
        }

        numel = 1;
        for (k = 0; k < t[i].ndim; k++) {
            if (t[i].shape[k] < 0
                || (t[i].shape[k] != 0
                    && numel > (uint64_t) INT64_MAX
                               / (uint64_t) t[i].shape[k]))
            {
                rc = sd_errorf(err, SD_ERR_INVALID, "\"%s\": tensor \"%s\" "
                               "has a bad shape", path, t[i].name);
                goto done;
            }
            numel *= (uint64_t) t[i].shape[k];
        }
        nbytes = numel * esize;

        if (nbytes > 0 && t[i].data == NULL) {
            rc = sd_errorf(err, SD_ERR_INVALID, "\"%s\": tensor \"%s\" has "
                           "no data", path, t[i].name);
            goto done;
        }

        obj = cJSON_AddObjectToObject(root, t[i].name);
        arr = obj ? cJSON_AddArrayToObject(obj, "shape") : NULL;
        if (arr == NULL
            || cJSON_AddStringToObject(obj, "dtype",
                                       sd_dtype_name(t[i].dtype)) == NULL)
        {
            goto nomem;
        }

        for (k = 0; k < t[i].ndim; k++) {
            if (!cJSON_AddItemToArray(arr,
                          cJSON_CreateNumber((double) t[i].shape[k])))
            {
                goto nomem;
            }
        }

        arr = cJSON_AddArrayToObject(obj, "data_offsets");
        if (arr == NULL
            || !cJSON_AddItemToArray(arr, cJSON_CreateNumber((double) off))
            || !cJSON_AddItemToArray(arr,
                                     cJSON_CreateNumber((double) (off
                                                                  + nbytes))))
        {
            goto nomem;
        }

        off += nbytes;
    }

    json = cJSON_PrintUnformatted(root);
    if (json == NULL) {
        goto nomem;
    }

    len = strlen(json);
    pad = (8 - len % 8) % 8;
    off = len + pad;
    for (k = 0; k < 8; k++) {
        hdr[k] = (unsigned char) (off >> (8 * k));
    }

    fp = fopen(path, "wb");
    if (fp == NULL) {
        rc = sd_errorf(err, SD_ERR_IO, "fopen(\"%s\") failed: %s", path,
                       strerror(errno));
        goto done;
    }

    if (fwrite(hdr, 1, 8, fp) != 8
        || fwrite(json, 1, len, fp) != len
        || fwrite(spaces, 1, pad, fp) != pad)
    {
        goto ioerr;
    }

    for (i = 0; i < n; i++) {
        numel = 1;
        for (k = 0; k < t[i].ndim; k++) {
            numel *= (uint64_t) t[i].shape[k];
        }
        nbytes = numel * sd_dtype_size(t[i].dtype);
        if (nbytes && fwrite(t[i].data, 1, nbytes, fp) != nbytes) {
            goto ioerr;
        }
    }

    k = fclose(fp);
    fp = NULL;
    if (k != 0) {
        goto ioerr;
    }

    goto done;

ioerr:

    rc = sd_errorf(err, SD_ERR_IO, "writing \"%s\" failed: %s", path,
                   strerror(errno));
    if (fp != NULL) {
        fclose(fp);
        fp = NULL;
    }
    remove(path);
    goto done;

nomem:

    rc = sd_errorf(err, SD_ERR_NOMEM, "out of memory writing \"%s\"", path);

done:

    if (fp != NULL) {
        fclose(fp);
    }
    free(json);
    cJSON_Delete(root);
    return rc;
}


/* Checkpoint adapters (ckpt.c): extra tensor records and owned memory. */

void *
sd_st_hold(sd_err *err, sd_st *st, size_t size, const char *what)
{
    void   *p, **held;

    held = realloc(st->held, (st->nheld + 1) * sizeof(void *));
    if (held == NULL) {
        sd_errorf(err, SD_ERR_NOMEM, "out of memory for %s", what);
        return NULL;
    }
    st->held = held;

    p = sd_calloc(err, 1, size ? size : 1, what);
    if (p == NULL) {
        return NULL;
    }
    st->held[st->nheld++] = p;
    return p;
}


sd_st_tensor *
sd_st_at_mut(sd_st *st, size_t i)
{
    if (st == NULL || i >= st->ntensors) {
        return NULL;
    }
    return &st->tensors[i];
}


sd_status
sd_st_add_view(sd_err *err, sd_st *st, const sd_st_tensor *t,
    const char *name)
{
    size_t         cap;
    sd_st_tensor  *tensors;

    if (st->ntensors == st->cap) {
        cap = st->cap ? st->cap * 2 : 64;
        tensors = realloc(st->tensors, cap * sizeof(sd_st_tensor));
        if (tensors == NULL) {
            return sd_errorf(err, SD_ERR_NOMEM, "out of memory for tensor "
                             "\"%s\"", name);
        }
        st->tensors = tensors;
        st->cap = cap;
    }

    st->tensors[st->ntensors] = *t;
    st->tensors[st->ntensors].name = sd_st_strdup(err, name);
    if (st->tensors[st->ntensors].name == NULL) {
        return SD_ERR_NOMEM;
    }
    st->ntensors++;

    /* the index is stale until sd_st_reindex() */
    free(st->sorted);
    st->sorted = NULL;
    return SD_OK;
}


sd_status
sd_st_reindex(sd_err *err, sd_st *st)
{
    free(st->sorted);
    st->sorted = NULL;
    return sd_st_build_index(err, st);
}
