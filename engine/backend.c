/*
 * backend.c: tensor bookkeeping and the checked op wrappers.
 *
 * Every public op checks shapes here, once, and names the op and both shapes
 * in its error; the backends then trust their arguments.
 */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"


static const char *
shape_str(const sd_tensor *t, char *buf, size_t len)
{
    size_t  n = 0;
    int     i;

    n += snprintf(buf + n, len - n, "(");
    for (i = 0; i < t->ndim && n < len; i++) {
        n += snprintf(buf + n, len - n, "%s%lld", i ? ", " : "",
                      (long long) t->ne[i]);
    }
    if (n < len) {
        snprintf(buf + n, len - n, ")");
    }
    return buf;
}


static sd_status
shape_err(sd_err *err, const char *op, const char *what, const sd_tensor *a,
    const sd_tensor *b)
{
    char  sa[96], sb[96];

    return sd_errorf(err, SD_ERR_INTERNAL, "%s: %s: %s vs %s", op, what,
                     shape_str(a, sa, sizeof(sa)),
                     b ? shape_str(b, sb, sizeof(sb)) : "-");
}


int64_t
sd_numel(const sd_tensor *t)
{
    int64_t  n = 1;
    int      i;

    for (i = 0; i < t->ndim; i++) {
        n *= t->ne[i];
    }
    return n;
}


size_t
sd_tensor_nbytes(const sd_tensor *t)
{
    return (size_t) sd_numel(t) * sd_dtype_size(t->dtype);
}


static int64_t
rows_of(const sd_tensor *t)
{
    return t->ndim ? sd_numel(t) / t->ne[t->ndim - 1] : 1;
}


static int64_t
last_dim(const sd_tensor *t)
{
    return t->ndim ? t->ne[t->ndim - 1] : 1;
}


static sd_status
tensor_new(sd_err *err, sd_backend *be, sd_mem mem, sd_dtype dt, int ndim,
    const int64_t *shape, sd_tensor **out)
{
    sd_tensor  *t;
    sd_status   s;
    int         i;

    *out = NULL;
    if (ndim < 1 || ndim > SD_MAX_DIMS) {
        return sd_errorf(err, SD_ERR_INTERNAL, "tensor of %d dimensions",
                         ndim);
    }
    for (i = 0; i < ndim; i++) {
        if (shape[i] < 0 || shape[i] > ((int64_t) 1 << 40)) {
            return sd_errorf(err, SD_ERR_INTERNAL, "bad tensor dimension "
                             "%lld", (long long) shape[i]);
        }
    }

    t = sd_calloc(err, 1, sizeof(sd_tensor), "tensor");
    if (t == NULL) {
        return SD_ERR_NOMEM;
    }
    t->be = be;
    t->dtype = dt;
    t->mem = mem;
    t->ndim = ndim;
    memcpy(t->ne, shape, ndim * sizeof(int64_t));

    s = be->ops->alloc(err, be, t);
    if (s != SD_OK) {
        free(t);
        return s;
    }
    *out = t;
    return SD_OK;
}


/*
 * be->round_bf16: the F32 values of t rounded to BF16 (sd_round_bf16), as
 * a BF16 tensor would hold them. s passes through.
 */
static sd_status
sd_round_out(sd_status s, sd_tensor *t)
{
    if (s == SD_OK && t != NULL && t->be->round_bf16
        && t->dtype == SD_DT_F32 && t->data != NULL)
    {
        sd_round_bf16(t->data, sd_numel(t));
    }
    return s;
}


void
sd_round_bf16(float *f, int64_t n)
{
    int64_t   i;
    uint32_t  u;

    for (i = 0; i < n; i++) {
        memcpy(&u, &f[i], sizeof(u));
        if ((u & 0x7f800000u) != 0x7f800000u) {     /* not inf or NaN */
            u += 0x7fffu + ((u >> 16) & 1u);        /* to nearest, even */
        }
        u &= 0xffff0000u;
        memcpy(&f[i], &u, sizeof(u));
    }
}


sd_status
sd_tensor_new(sd_err *err, sd_backend *be, int ndim, const int64_t *shape,
    sd_tensor **out)
{
    return tensor_new(err, be, SD_MEM_ACT, be->act_dtype, ndim, shape, out);
}


sd_status
sd_tensor_new_as(sd_err *err, sd_backend *be, sd_mem mem, sd_dtype dt,
    int ndim, const int64_t *shape, sd_tensor **out)
{
    return tensor_new(err, be, mem, dt, ndim, shape, out);
}


sd_status
sd_tensor_new2(sd_err *err, sd_backend *be, int64_t d0, int64_t d1,
    sd_tensor **out)
{
    int64_t  s[2] = { d0, d1 };

    return sd_tensor_new(err, be, 2, s, out);
}


sd_status
sd_tensor_new3(sd_err *err, sd_backend *be, int64_t d0, int64_t d1,
    int64_t d2, sd_tensor **out)
{
    int64_t  s[3] = { d0, d1, d2 };

    return sd_tensor_new(err, be, 3, s, out);
}


sd_status
sd_tensor_new4(sd_err *err, sd_backend *be, int64_t d0, int64_t d1,
    int64_t d2, int64_t d3, sd_tensor **out)
{
    int64_t  s[4] = { d0, d1, d2, d3 };

    return sd_tensor_new(err, be, 4, s, out);
}


void
sd_tensor_free(sd_tensor *t)
{
    if (t == NULL) {
        return;
    }
    if (!t->view && t->data) {
        t->be->ops->release(t->be, t);
    }
    free(t);
}


void
sd_tensors_free(sd_tensor **t, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        sd_tensor_free(t[i]);
    }
}


sd_status
sd_tensor_list_add(sd_err *err, sd_tensor_list *l, sd_tensor *t)
{
    sd_tensor  **p;
    size_t       cap;

    if (l->n == l->cap) {
        cap = l->cap ? 2 * l->cap : 64;
        p = realloc(l->t, cap * sizeof(sd_tensor *));
        if (p == NULL) {
            sd_tensor_free(t);
            return sd_errorf(err, SD_ERR_NOMEM, "out of memory listing %zu "
                             "weights", l->n + 1);
        }
        l->t = p;
        l->cap = cap;
    }
    l->t[l->n++] = t;
    return SD_OK;
}


void
sd_tensor_list_free(sd_tensor_list *l)
{
    sd_tensors_free(l->t, l->n);
    free(l->t);
    l->t = NULL;
    l->n = 0;
    l->cap = 0;
}


sd_status
sd_tensor_view(sd_err *err, const sd_tensor *t, int64_t off, int ndim,
    const int64_t *shape, sd_tensor *view)
{
    int64_t  n = 1;
    int      i;

    if (ndim < 1 || ndim > SD_MAX_DIMS) {
        return sd_errorf(err, SD_ERR_INTERNAL, "view of %d dimensions", ndim);
    }
    for (i = 0; i < ndim; i++) {
        n *= shape[i];
    }
    if (off < 0 || off + n > sd_numel(t)) {
        return sd_errorf(err, SD_ERR_INTERNAL, "view [%lld, %lld) outside a "
                         "tensor of %lld elements", (long long) off,
                         (long long) (off + n), (long long) sd_numel(t));
    }
    memset(view, 0, sizeof(*view));
    view->be = t->be;
    view->dtype = t->dtype;
    view->mem = t->mem;
    view->ndim = ndim;
    memcpy(view->ne, shape, ndim * sizeof(int64_t));
    view->data = (char *) t->data + off * (int64_t) sd_dtype_size(t->dtype);
    view->scale = t->scale;
    view->n_scale = t->n_scale;
    if (t->scale && t->n_scale > 1 && t->ndim == 2 && ndim == 2
        && shape[1] == t->ne[1] && off % t->ne[1] == 0)
    {
        /* a block of rows of a per-row-scaled weight: its rows' scales */
        view->scale = t->scale + off / t->ne[1];
        view->n_scale = shape[0];
    }
    view->view = 1;
    return SD_OK;
}


sd_status
sd_tensor_reshape(sd_err *err, sd_tensor *t, int ndim, const int64_t *shape)
{
    int64_t  n = 1;
    int      i;

    for (i = 0; i < ndim; i++) {
        n *= shape[i];
    }
    if (ndim < 1 || ndim > SD_MAX_DIMS || n != sd_numel(t)) {
        return sd_errorf(err, SD_ERR_INTERNAL, "reshape of %lld elements "
                         "into %lld", (long long) sd_numel(t), (long long) n);
    }
    t->ndim = ndim;
    memcpy(t->ne, shape, ndim * sizeof(int64_t));
    return SD_OK;
}


sd_status
sd_tensor_upload(sd_err *err, sd_tensor *t, const float *src)
{
    return sd_round_out(t->be->ops->upload(err, t, src), t);
}


sd_status
sd_tensor_download(sd_err *err, const sd_tensor *t, float *dst)
{
    return t->be->ops->download(err, t, dst);
}


/* Weights */

static sd_status
dtype_err(sd_err *err, const char *op, const sd_tensor *a, const sd_tensor *b)
{
    return sd_errorf(err, SD_ERR_UNSUPPORTED, "%s: %s with %s is not "
                     "supported on the %s backend", op,
                     sd_dtype_name(a->dtype), sd_dtype_name(b->dtype),
                     a->be->ops->name);
}


/* The checkpoint tensor st_t into the new weight t (same numel). */
static sd_status
weight_fill(sd_err *err, sd_tensor *t, const sd_st_tensor *st_t)
{
    float      *host;
    sd_status   s;

    if (t->dtype == SD_DT_F8_E4M3 || t->dtype == SD_DT_F8_E5M2) {
        /* FP8 weights: quantized (or copied with their scales) on the
           device, from the checkpoint's bytes where the backend takes
           their dtype */
        if (t->be->ops->upload_from == NULL) {
            return sd_errorf(err, SD_ERR_UNSUPPORTED, "%s: the %s backend "
                             "has no FP8 weights", st_t->name,
                             t->be->ops->name);
        }
        if (st_t->dtype == SD_DT_BF16 || st_t->dtype == SD_DT_F32
            || st_t->dtype == t->dtype)
        {
            /* an FP8 checkpoint's scales: 1 or one per row; NULL: 1 */
            return t->be->ops->upload_from(err, t, st_t->data, st_t->dtype,
                                           st_t->dtype == t->dtype
                                           ? st_t->scale : NULL,
                                           st_t->dtype == t->dtype
                                           ? st_t->n_scale : 0);
        }
        host = sd_malloc(err, (size_t) st_t->numel * sizeof(float),
                         st_t->name);
        if (host == NULL) {
            return SD_ERR_NOMEM;
        }
        s = sd_st_read_f32(err, st_t, host);
        if (s == SD_OK) {
            s = t->be->ops->upload_from(err, t, host, SD_DT_F32, NULL, 0);
        }
        free(host);
        return s;
    }
    if (st_t->dtype == t->dtype) {
        return t->be->ops->upload_raw(err, t, st_t->data);
    }
    host = sd_malloc(err, (size_t) st_t->numel * sizeof(float), st_t->name);
    if (host == NULL) {
        return SD_ERR_NOMEM;
    }
    s = sd_st_read_f32(err, st_t, host);
    if (s == SD_OK) {
        s = sd_tensor_upload(err, t, host);
    }
    free(host);
    return s;
}


static sd_status
weight_shape(sd_err *err, const sd_st_tensor *st_t, int64_t *tshape,
    int *tdim)
{
    int  i;

    *tdim = st_t->ndim;
    if (*tdim == 0) {
        *tdim = 1;
        tshape[0] = 1;
    } else if (*tdim > SD_MAX_DIMS) {
        return sd_errorf(err, SD_ERR_FORMAT, "tensor \"%s\" in \"%s\" has %d "
                         "dimensions", st_t->name, st_t->file, st_t->ndim);
    } else {
        for (i = 0; i < *tdim; i++) {
            tshape[i] = st_t->shape[i];
        }
    }
    return SD_OK;
}


/* Matrices go where the loading component asked; vectors stay. */
static sd_mem
weight_mem(const sd_backend *be, int ndim)
{
    return be->load_mem == SD_MEM_HOST && ndim == 2 ? SD_MEM_HOST
                                                    : SD_MEM_WEIGHT;
}


sd_status
sd_weight_load(sd_err *err, sd_backend *be, const sd_st *st,
    const char *name, int ndim, const int64_t *shape, sd_tensor **out)
{
    const sd_st_tensor  *st_t;
    sd_tensor           *t;
    sd_status            s;
    int64_t              tshape[SD_MAX_DIMS];
    int                  tdim;

    *out = NULL;
    SD_TRY(sd_st_get(err, st, name, ndim, ndim ? shape : NULL, &st_t));
    SD_TRY(weight_shape(err, st_t, tshape, &tdim));
    SD_TRY(tensor_new(err, be, weight_mem(be, tdim),
                      sd_backend_weight_dtype(be, name, tdim, tshape), tdim,
                      tshape, &t));
    s = weight_fill(err, t, st_t);
    if (s != SD_OK) {
        sd_tensor_free(t);
        return s;
    }
    *out = t;
    return SD_OK;
}


sd_status
sd_conv_weight_load(sd_err *err, sd_backend *be, const sd_st *st,
    const char *name, const int64_t shape[4], sd_tensor **out)
{
    static const int  perm[4] = { 0, 2, 3, 1 };
    sd_tensor        *raw, *t;
    sd_status         s;
    int64_t           khwc[4] = { shape[0], shape[2], shape[3], shape[1] };

    *out = NULL;
    SD_TRY(sd_weight_load(err, be, st, name, 4, shape, &raw));
    if (shape[2] == 1 && shape[3] == 1) {
        /* 1x1: (Co, Ci, 1, 1) is already (Co, 1, 1, Ci) in memory */
        memcpy(raw->ne, khwc, sizeof(khwc));
        *out = raw;
        return SD_OK;
    }
    s = tensor_new(err, be, SD_MEM_WEIGHT, raw->dtype, 4, khwc, &t);
    if (s == SD_OK) {
        s = sd_permute(err, t, raw, perm);
        if (s != SD_OK) {
            sd_tensor_free(t);
        }
    }
    sd_tensor_free(raw);
    if (s == SD_OK) {
        *out = t;
    }
    return s;
}


/* "<prefix>.<part>.<kind>" into name (256 bytes) */
static sd_status
cat_name(sd_err *err, char *name, const char *prefix, const char *part,
    const char *kind)
{
    if (snprintf(name, 256, "%s.%s.%s", prefix, part, kind) >= 256) {
        return sd_errorf(err, SD_ERR_INTERNAL, "tensor name \"%s.%s.%s\" "
                         "too long", prefix, part, kind);
    }
    return SD_OK;
}


sd_status
sd_weight_load_cat(sd_err *err, sd_backend *be, const sd_st *st,
    const char *prefix, const char *const *parts, int n, int64_t rows,
    int64_t in, int bias, sd_tensor **w, sd_tensor **b)
{
    const sd_st_tensor  *st_t;
    sd_status            s;
    int64_t              shape[2];
    char                 name[256];
    int                  i;

    *w = NULL;
    *b = NULL;
    shape[0] = n * rows;
    shape[1] = in;
    SD_TRY_GOTO(s, cat_name(err, name, prefix, parts[0], "weight"), fail);
    SD_TRY_GOTO(s, tensor_new(err, be, weight_mem(be, 2),
                              sd_backend_weight_dtype(be, name, 2, shape),
                              2, shape, w), fail);
    if (bias) {
        SD_TRY_GOTO(s, cat_name(err, name, prefix, parts[0], "bias"), fail);
        SD_TRY_GOTO(s, tensor_new(err, be, SD_MEM_WEIGHT,
                                  sd_backend_weight_dtype(be, name, 1, shape),
                                  1, shape, b), fail);
    }

    shape[0] = rows;
    for (i = 0; i < n; i++) {
        sd_tensor  v;

        SD_TRY_GOTO(s, cat_name(err, name, prefix, parts[i], "weight"), fail);
        SD_TRY_GOTO(s, sd_st_get(err, st, name, 2, shape, &st_t), fail);
        SD_TRY_GOTO(s, sd_tensor_view(err, *w, i * rows * in, 2, shape, &v),
                    fail);
        SD_TRY_GOTO(s, weight_fill(err, &v, st_t), fail);
        if (*b) {
            SD_TRY_GOTO(s, cat_name(err, name, prefix, parts[i], "bias"),
                        fail);
            SD_TRY_GOTO(s, sd_st_get(err, st, name, 1, shape, &st_t), fail);
            SD_TRY_GOTO(s, sd_tensor_view(err, *b, i * rows, 1, shape, &v),
                        fail);
            SD_TRY_GOTO(s, weight_fill(err, &v, st_t), fail);
        }
    }
    return SD_OK;

fail:
    sd_tensor_free(*w);
    sd_tensor_free(*b);
    *w = NULL;
    *b = NULL;
    return s;
}


/* Ops: check, then dispatch. */

/* Activations of one op share a dtype. */
static int
same_dtype(const sd_tensor *a, const sd_tensor *b)
{
    return b == NULL || a->dtype == b->dtype;
}


/* E4M3 rows with their scales into a product with E4M3 weights: the
   activations a backend with fp8_act writes (norm_modulate, the FP8
   attention) */
static int
e4m3_into(const sd_tensor *x, const sd_tensor *w)
{
    return x->dtype == SD_DT_F8_E4M3 && w->dtype == SD_DT_F8_E4M3
           && x->be->fp8_act;
}


sd_status
sd_linear_act(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *w, const sd_tensor *b, sd_act act)
{
    if (w->ndim != 2 || last_dim(x) != w->ne[1]) {
        return shape_err(err, "linear", "x and weight", x, w);
    }
    if (last_dim(y) != w->ne[0] || rows_of(y) != rows_of(x)) {
        return shape_err(err, "linear", "output", y, w);
    }
    if (b && sd_numel(b) != w->ne[0]) {
        return shape_err(err, "linear", "bias", b, w);
    }
    if (!same_dtype(y, x) && !e4m3_into(x, w)) {
        return dtype_err(err, "linear", x, y);
    }
    if (y->dtype == SD_DT_F8_E4M3
        && !(y->be->fp8_ffh && e4m3_into(x, w) && y->scale
             && (act == SD_ACT_NONE || act == SD_ACT_GELU_TANH)))
    {
        return sd_errorf(err, SD_ERR_UNSUPPORTED, "linear: E4M3 output "
                         "takes E4M3 rows through E4M3 weights, GELU (tanh) "
                         "or no activation, on a backend that writes them "
                         "(fp8_ffh)");
    }
    return sd_round_out(y->be->ops->linear(err, y, x, w, b, act), y);
}


sd_status
sd_linear(sd_err *err, sd_tensor *y, const sd_tensor *x, const sd_tensor *w,
    const sd_tensor *b)
{
    return sd_linear_act(err, y, x, w, b, SD_ACT_NONE);
}


sd_status
sd_linear_rows(sd_err *err, sd_tensor *y, const sd_tensor *x, int64_t r0,
    const sd_tensor *w, const sd_tensor *b)
{
    if (x->ndim != 3 || y->ndim != 3 || w->ndim != 2
        || x->ne[2] != w->ne[1] || y->ne[2] != w->ne[0]
        || y->ne[0] != x->ne[0] || r0 < 0 || r0 + y->ne[1] > x->ne[1])
    {
        return shape_err(err, "linear_rows", "x, y and weight", x, y);
    }
    if (b && sd_numel(b) != w->ne[0]) {
        return shape_err(err, "linear_rows", "bias", b, w);
    }
    if (!same_dtype(y, x) && !e4m3_into(x, w)) {
        return dtype_err(err, "linear_rows", x, y);
    }
    return sd_round_out(y->be->ops->linear_rows(err, y, x, r0, w, b), y);
}


sd_status
sd_linear_gate_add(sd_err *err, sd_tensor *x, const sd_tensor *gate,
    const sd_tensor *h, int64_t r0, const sd_tensor *w, const sd_tensor *b)
{
    sd_tensor  *y = NULL;
    sd_status   s;

    if (h->ndim != 3 || x->ndim != 3 || w->ndim != 2
        || h->ne[2] != w->ne[1] || x->ne[2] != w->ne[0]
        || x->ne[0] != h->ne[0] || r0 < 0 || r0 + x->ne[1] > h->ne[1]
        || sd_numel(gate) != x->ne[0] * x->ne[2])
    {
        return shape_err(err, "linear_gate_add", "x, h and weight", h, x);
    }
    if (b && sd_numel(b) != w->ne[0]) {
        return shape_err(err, "linear_gate_add", "bias", b, w);
    }
    if ((!same_dtype(x, h) && !e4m3_into(h, w)) || !same_dtype(x, gate)) {
        return dtype_err(err, "linear_gate_add", h, x);
    }
    if (x->be->ops->linear_gate_add) {
        return sd_round_out(x->be->ops->linear_gate_add(err, x, gate, h, r0,
                                                        w, b), x);
    }
    SD_TRY(sd_tensor_new(err, x->be, 3, x->ne, &y));
    s = sd_linear_rows(err, y, h, r0, w, b);
    if (s == SD_OK) {
        s = sd_gate_add(err, x, gate, y);
    }
    sd_tensor_free(y);
    return s;
}


sd_status
sd_layer_norm(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *w, const sd_tensor *b, float eps)
{
    if (sd_numel(y) != sd_numel(x) || last_dim(y) != last_dim(x)
        || (w && sd_numel(w) != last_dim(x))
        || (b && sd_numel(b) != last_dim(x)))
    {
        return shape_err(err, "layer_norm", "shapes", x, w ? w : y);
    }
    if (!same_dtype(y, x)) {
        return dtype_err(err, "layer_norm", x, y);
    }
    return sd_round_out(y->be->ops->layer_norm(err, y, x, w, b, eps), y);
}


static sd_status
mod_check(sd_err *err, const char *op, const sd_tensor *y,
    const sd_tensor *x, const sd_tensor *shift, const sd_tensor *scale)
{
    if (x->ndim != 3 || sd_numel(y) != sd_numel(x)
        || sd_numel(shift) != x->ne[0] * x->ne[2]
        || sd_numel(scale) != x->ne[0] * x->ne[2])
    {
        return shape_err(err, op, "shapes", x, shift);
    }
    if ((!same_dtype(y, x)
         && !(y->dtype == SD_DT_F8_E4M3 && y->be->fp8_act))
        || !same_dtype(x, shift) || !same_dtype(x, scale))
    {
        return dtype_err(err, op, x, same_dtype(x, shift) ? scale : shift);
    }
    return SD_OK;
}


sd_status
sd_norm_modulate(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *shift, const sd_tensor *scale, float eps)
{
    SD_TRY(mod_check(err, "norm_modulate", y, x, shift, scale));
    return sd_round_out(y->be->ops->norm_modulate(err, y, x, shift, scale,
                                                   eps), y);
}


sd_status
sd_norm_modulate2(sd_err *err, sd_tensor *y, sd_tensor *y2,
    const sd_tensor *x, const sd_tensor *shift, const sd_tensor *scale,
    const sd_tensor *shift2, const sd_tensor *scale2, float eps)
{
    SD_TRY(mod_check(err, "norm_modulate2", y, x, shift, scale));
    SD_TRY(mod_check(err, "norm_modulate2", y2, x, shift2, scale2));
    if (y->be->ops->norm_modulate2 == NULL) {
        SD_TRY(sd_norm_modulate(err, y, x, shift, scale, eps));
        return sd_norm_modulate(err, y2, x, shift2, scale2, eps);
    }
    SD_TRY(sd_round_out(y->be->ops->norm_modulate2(err, y, y2, x, shift,
                                                    scale, shift2, scale2,
                                                    eps), y));
    return sd_round_out(SD_OK, y2);
}


sd_status
sd_rms_norm(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *w, float eps)
{
    if (sd_numel(y) != sd_numel(x) || last_dim(y) != last_dim(x)
        || (w && sd_numel(w) != last_dim(x)))
    {
        return shape_err(err, "rms_norm", "shapes", x, w ? w : y);
    }
    if (!same_dtype(y, x)) {
        return dtype_err(err, "rms_norm", x, y);
    }
    return sd_round_out(y->be->ops->rms_norm(err, y, x, w, eps), y);
}


/* The shapes of sd_qkv_split and sd_qkv_split_fp8 (norms both or none) */
static sd_status
qkv_split_shapes(sd_err *err, const char *op, const sd_tensor *q,
    const sd_tensor *k, const sd_tensor *v, int64_t r0, const sd_tensor *src,
    const sd_tensor *nq, const sd_tensor *nk, int heads)
{
    int64_t  w;

    if (src->ndim != 3 || q->ndim != 3 || src->ne[2] % 3 != 0) {
        return shape_err(err, op, "src and q", src, q);
    }
    w = src->ne[2] / 3;
    if (heads <= 0 || w % heads != 0 || q->ne[0] != src->ne[0]
        || q->ne[2] != w || r0 < 0 || r0 + src->ne[1] > q->ne[1]
        || sd_numel(k) != sd_numel(q) || sd_numel(v) != sd_numel(q)
        || (nq && sd_numel(nq) != w / heads)
        || (nk && sd_numel(nk) != w / heads) || (nq == NULL) != (nk == NULL))
    {
        return shape_err(err, op, "src and q", src, q);
    }
    return SD_OK;
}


sd_status
sd_qkv_split(sd_err *err, sd_tensor *q, sd_tensor *k, sd_tensor *v,
    int64_t r0, const sd_tensor *src, const sd_tensor *nq,
    const sd_tensor *nk, int heads, float eps)
{
    SD_TRY(qkv_split_shapes(err, "qkv_split", q, k, v, r0, src, nq, nk,
                            heads));
    if (!same_dtype(q, src) || !same_dtype(k, src) || !same_dtype(v, src)) {
        return dtype_err(err, "qkv_split", src, q);
    }
    return sd_round_out(sd_round_out(sd_round_out(
               q->be->ops->qkv_split(err, q, k, v, r0, src, nq, nk, heads,
                                     eps), q), k), v);
}


sd_status
sd_group_norm(sd_err *err, sd_tensor *y, const sd_tensor *x, int groups,
    const sd_tensor *w, const sd_tensor *b, float eps, sd_act act)
{
    if (x->ndim != 4 || sd_numel(y) != sd_numel(x) || groups <= 0
        || x->ne[3] % groups != 0
        || (w && sd_numel(w) != x->ne[3]) || (b && sd_numel(b) != x->ne[3]))
    {
        return shape_err(err, "group_norm", "shapes", x, w ? w : y);
    }
    if (!same_dtype(y, x)) {
        return dtype_err(err, "group_norm", x, y);
    }
    return sd_round_out(y->be->ops->group_norm(err, y, x, groups, w, b, eps,
                                                act), y);
}


sd_status
sd_act_apply(sd_err *err, sd_tensor *y, const sd_tensor *x, sd_act kind)
{
    if (sd_numel(y) != sd_numel(x)) {
        return shape_err(err, "act", "shapes", x, y);
    }
    if (!same_dtype(y, x)) {
        return dtype_err(err, "act", x, y);
    }
    if (kind == SD_ACT_NONE) {
        return y->data == x->data ? SD_OK
               : sd_copy2d(err, y, 0, 0, x, 0, 0, 1, sd_numel(x));
    }
    return sd_round_out(y->be->ops->act(err, y, x, kind), y);
}


sd_status
sd_gated_act(sd_err *err, sd_tensor *y, const sd_tensor *x, sd_act act)
{
    sd_tensor  *g = NULL;
    sd_status   s;
    int64_t     f = last_dim(y), rows;

    /* x: (N..., 2F) = [a | g], y: (N..., F) */
    if (f < 1 || last_dim(x) != 2 * f || rows_of(x) != rows_of(y)) {
        return shape_err(err, "gated_act", "x (N, 2F) and y (N, F)", x, y);
    }
    if (!same_dtype(y, x)) {
        return dtype_err(err, "gated_act", x, y);
    }
    if (y->data == x->data) {
        return sd_errorf(err, SD_ERR_INTERNAL, "gated_act: y is x");
    }
    if (y->be->ops->gated_act) {
        return sd_round_out(y->be->ops->gated_act(err, y, x, act), y);
    }
    /* y = act(a), then y *= a copy of g */
    rows = rows_of(y);
    SD_TRY(sd_tensor_new_as(err, y->be, SD_MEM_ACT, y->dtype, y->ndim, y->ne,
                            &g));
    s = sd_copy2d(err, y, 0, f, x, 0, 2 * f, rows, f);
    if (s == SD_OK) {
        s = sd_act_apply(err, y, y, act);
    }
    if (s == SD_OK) {
        s = sd_copy2d(err, g, 0, f, x, f, 2 * f, rows, f);
    }
    if (s == SD_OK) {
        s = sd_mul(err, y, y, g);
    }
    sd_tensor_free(g);
    return s;
}


sd_status
sd_euler_step(sd_err *err, sd_tensor *x, const sd_tensor *den, float s0,
    float ds)
{
    if (sd_numel(x) != sd_numel(den)) {
        return shape_err(err, "euler_step", "x and den", x, den);
    }
    if (x->dtype != SD_DT_F32 || (den->dtype != SD_DT_F32
                                  && den->dtype != x->be->act_dtype))
    {
        return dtype_err(err, "euler_step", den, x);
    }
    if (x->be->ops->euler_step == NULL) {
        return sd_errorf(err, SD_ERR_UNSUPPORTED, "euler_step: not on the "
                         "%s backend", x->be->ops->name);
    }
    return x->be->ops->euler_step(err, x, den, s0, ds);
}


static sd_status
binary(sd_err *err, sd_tensor *y, const sd_tensor *a, const sd_tensor *b,
    int op)
{
    const char  *name = op == SD_BIN_ADD ? "add" : "mul";

    if (sd_numel(y) != sd_numel(a) || sd_numel(a) != sd_numel(b)) {
        return shape_err(err, name, "shapes", a, b);
    }
    if (!same_dtype(y, a) || !same_dtype(a, b)) {
        return dtype_err(err, name, a, same_dtype(y, a) ? b : y);
    }
    return sd_round_out(y->be->ops->binary(err, y, a, b, op), y);
}


sd_status
sd_add(sd_err *err, sd_tensor *y, const sd_tensor *a, const sd_tensor *b)
{
    return binary(err, y, a, b, SD_BIN_ADD);
}


sd_status
sd_mul(sd_err *err, sd_tensor *y, const sd_tensor *a, const sd_tensor *b)
{
    return binary(err, y, a, b, SD_BIN_MUL);
}


sd_status
sd_scale(sd_err *err, sd_tensor *y, const sd_tensor *x, float s, float add)
{
    if (sd_numel(y) != sd_numel(x)) {
        return shape_err(err, "scale", "shapes", x, y);
    }
    if (!same_dtype(y, x)) {
        return dtype_err(err, "scale", x, y);
    }
    return sd_round_out(y->be->ops->scale(err, y, x, s, add), y);
}


/* The shapes of sd_attention and sd_attention_fp8 */
static sd_status
attention_shapes(sd_err *err, const char *op, const sd_tensor *o,
    const sd_tensor *q, const sd_tensor *k, const sd_tensor *v, int heads)
{
    if (q->ndim != 3 || k->ndim != 3 || v->ndim != 3 || o->ndim != 3
        || heads <= 0 || q->ne[2] % heads != 0
        || k->ne[0] != q->ne[0] || v->ne[0] != q->ne[0]
        || k->ne[2] != q->ne[2] || v->ne[2] != q->ne[2]
        || k->ne[1] != v->ne[1]
        || o->ne[0] != q->ne[0] || o->ne[1] != q->ne[1]
        || o->ne[2] != q->ne[2])
    {
        return shape_err(err, op, "q and k/v/o", q, k);
    }
    return SD_OK;
}


sd_status
sd_attention(sd_err *err, sd_tensor *o, const sd_tensor *q,
    const sd_tensor *k, const sd_tensor *v, int heads, int causal,
    const sd_tensor *bias, float scale)
{
    SD_TRY(attention_shapes(err, "attention", o, q, k, v, heads));
    if (bias && (sd_numel(bias) != (int64_t) heads * q->ne[1] * k->ne[1])) {
        return shape_err(err, "attention", "bias", bias, q);
    }
    if (!same_dtype(o, q) || !same_dtype(q, k) || !same_dtype(q, v)
        || !same_dtype(q, bias))
    {
        return dtype_err(err, "attention", q, same_dtype(q, k) ? v : k);
    }
    return sd_round_out(o->be->ops->attention(err, o, q, k, v, heads, causal,
                                              bias, scale), o);
}


static sd_status
fp8_attn_missing(sd_err *err, const sd_backend *be, const char *op)
{
    return sd_errorf(err, SD_ERR_UNSUPPORTED, "%s: the %s backend has no "
                     "FP8 attention", op, be->ops->name);
}


/* What both FP8 attention ops take: E4M3 q8 and k8, F32 V maxima, and
   finite positive scales */
static sd_status
fp8_attn_args(sd_err *err, const char *op, const sd_tensor *q8,
    const sd_tensor *k8, const sd_tensor *vamax, float sq, float sk)
{
    if (q8->dtype != SD_DT_F8_E4M3 || k8->dtype != SD_DT_F8_E4M3) {
        return dtype_err(err, op, q8, k8);
    }
    if (vamax->dtype != SD_DT_F32) {
        return dtype_err(err, op, q8, vamax);
    }
    if (!(sq > 0.0f && sk > 0.0f && !isinf(sq) && !isinf(sk))) {
        return sd_errorf(err, SD_ERR_INVALID, "%s: scales %g and %g", op,
                         (double) sq, (double) sk);
    }
    return SD_OK;
}


int
sd_fp8_attn_scales(float qmax, float kmax, int64_t d, float scale, float *sq,
    float *sk)
{
    double  q, k, s8, e;

    if (!(qmax > 0.0f && kmax > 0.0f && isfinite(qmax) && isfinite(kmax)
          && d > 0 && scale > 0.0f))
    {
        return -1;
    }
    q = sqrt((double) d) * qmax / 112.0;
    k = sqrt((double) d) * kmax / 448.0;
    s8 = 8.0 * scale * 1.4426950408889634 * q * k;
    e = ceil(log2(s8));
    if (e < -14.0) {
        e = -14.0;
    }
    if (e > 0.0) {
        return -1;
    }
    *sq = (float) (q * exp2(e) / s8);
    *sk = (float) k;
    return 0;
}


/* The shapes of V^T and its tiles' scales for B x heads heads of 64 and
   l keys (sd_qkv_split_fp8's comment) */
static sd_status
fp8_vt_shapes(sd_err *err, const char *op, const sd_tensor *vt,
    const sd_tensor *vts, const sd_tensor *vamax, int64_t b, int heads,
    int64_t l)
{
    if (vt->dtype != SD_DT_U8 || vts->dtype != SD_DT_F32) {
        return dtype_err(err, op, vt, vts);
    }
    if (vt->ndim != 4 || vt->ne[0] != b || vt->ne[1] != heads
        || vt->ne[2] != 64 || vt->ne[3] != sd_fp8_vt_len(l)
        || sd_numel(vts) != b * heads * sd_fp8_vt_tiles(l)
        || sd_numel(vamax) != b * heads)
    {
        return shape_err(err, op, "v^t, its scales and v maxima", vt, vts);
    }
    return SD_OK;
}


sd_status
sd_qkv_split_fp8(sd_err *err, sd_tensor *q8, sd_tensor *k8, sd_tensor *vt,
    sd_tensor *vts, sd_tensor *vamax, const sd_tensor *const src[2],
    const sd_tensor *const nq[2], const sd_tensor *const nk[2], int heads,
    float eps, float sq, float sk)
{
    int64_t  n = 0;
    int      i;

    if (q8->be->ops->qkv_split_fp8 == NULL) {
        return fp8_attn_missing(err, q8->be, "qkv_split_fp8");
    }
    for (i = 0; i < 2; i++) {
        if (src[i] == NULL) {
            if (i == 0) {
                return sd_errorf(err, SD_ERR_INVALID, "qkv_split_fp8: no "
                                 "first source");
            }
            continue;
        }
        SD_TRY(qkv_split_shapes(err, "qkv_split_fp8", q8, k8, q8, n, src[i],
                                nq[i], nk[i], heads));
        if (nq[i] == NULL) {
            return shape_err(err, "qkv_split_fp8", "norms", src[i], q8);
        }
        if (src[i]->dtype != src[0]->dtype) {
            return dtype_err(err, "qkv_split_fp8", src[0], src[i]);
        }
        n += src[i]->ne[1];
    }
    if (n != q8->ne[1] || q8->ne[2] != (int64_t) heads * 64) {
        return shape_err(err, "qkv_split_fp8", "sources (not the whole "
                         "sequence, or heads not of 64)", src[0], q8);
    }
    SD_TRY(fp8_attn_args(err, "qkv_split_fp8", q8, k8, vamax, sq, sk));
    SD_TRY(fp8_vt_shapes(err, "qkv_split_fp8", vt, vts, vamax, q8->ne[0],
                         heads, n));
    return q8->be->ops->qkv_split_fp8(err, q8, k8, vt, vts, vamax, src, nq,
                                      nk, heads, eps, sq, sk);
}


sd_status
sd_attention_fp8(sd_err *err, sd_tensor *o, const sd_tensor *q8,
    const sd_tensor *k8, const sd_tensor *vt, const sd_tensor *vts,
    const sd_tensor *vamax, int heads, float sq, float sk, float scale)
{
    if (o->be->ops->attention_fp8 == NULL) {
        return fp8_attn_missing(err, o->be, "attention_fp8");
    }
    SD_TRY(attention_shapes(err, "attention_fp8", o, q8, k8, k8, heads));
    if (q8->ne[2] != (int64_t) heads * 64) {
        return shape_err(err, "attention_fp8", "heads (not of 64)", q8, o);
    }
    SD_TRY(fp8_vt_shapes(err, "attention_fp8", vt, vts, vamax, q8->ne[0],
                         heads, k8->ne[1]));
    if (o->dtype != o->be->act_dtype
        && !(o->dtype == SD_DT_F8_E4M3 && o->be->fp8_act))
    {
        /* o E4M3: rows with their scales for an FP8 product */
        return dtype_err(err, "attention_fp8", q8, o);
    }
    SD_TRY(fp8_attn_args(err, "attention_fp8", q8, k8, vamax, sq, sk));
    return o->be->ops->attention_fp8(err, o, q8, k8, vt, vts, vamax, heads,
                                     sq, sk, scale);
}


static sd_status
conv2d_check(sd_err *err, const sd_tensor *y, const sd_tensor *x,
    const sd_tensor *w, const sd_tensor *b, int stride, int pad)
{
    int64_t  ho, wo;

    /* x: (B, H, W, Ci), w: (Co, kh, kw, Ci), y: (B, Ho, Wo, Co) */
    if (x->ndim != 4 || w->ndim != 4 || y->ndim != 4 || stride < 1
        || pad < 0 || w->ne[3] != x->ne[3] || y->ne[3] != w->ne[0]
        || y->ne[0] != x->ne[0] || (b && sd_numel(b) != w->ne[0]))
    {
        return shape_err(err, "conv2d", "x and weight", x, w);
    }
    ho = (x->ne[1] + 2 * pad - w->ne[1]) / stride + 1;
    wo = (x->ne[2] + 2 * pad - w->ne[2]) / stride + 1;
    if (ho < 1 || wo < 1 || y->ne[1] != ho || y->ne[2] != wo) {
        return shape_err(err, "conv2d", "output", y, x);
    }
    if (!same_dtype(y, x)) {
        return dtype_err(err, "conv2d", x, y);
    }
    return SD_OK;
}


sd_status
sd_conv2d(sd_err *err, sd_tensor *y, const sd_tensor *x, const sd_tensor *w,
    const sd_tensor *b, int stride, int pad)
{
    SD_TRY(conv2d_check(err, y, x, w, b, stride, pad));
    return sd_round_out(y->be->ops->conv2d(err, y, x, w, b, stride, pad), y);
}


sd_status
sd_conv2d_add(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *w, const sd_tensor *b, int stride, int pad)
{
    sd_tensor  *t = NULL;
    sd_status   s;

    SD_TRY(conv2d_check(err, y, x, w, b, stride, pad));
    if (y->be->ops->conv2d_add) {
        return sd_round_out(y->be->ops->conv2d_add(err, y, x, w, b, stride,
                                                   pad), y);
    }
    SD_TRY(sd_tensor_new_as(err, y->be, SD_MEM_ACT, y->dtype, y->ndim, y->ne,
                            &t));
    s = sd_conv2d(err, t, x, w, b, stride, pad);
    if (s == SD_OK) {
        s = sd_add(err, y, y, t);
    }
    sd_tensor_free(t);
    return s;
}


sd_status
sd_upsample2x(sd_err *err, sd_tensor *y, const sd_tensor *x)
{
    if (x->ndim != 4 || y->ndim != 4 || y->ne[0] != x->ne[0]
        || y->ne[3] != x->ne[3] || y->ne[1] != 2 * x->ne[1]
        || y->ne[2] != 2 * x->ne[2])
    {
        return shape_err(err, "upsample2x", "shapes", x, y);
    }
    if (!same_dtype(y, x)) {
        return dtype_err(err, "upsample2x", x, y);
    }
    return sd_round_out(y->be->ops->upsample2x(err, y, x), y);
}


sd_status
sd_subpixel2x(sd_err *err, sd_tensor *y, const sd_tensor *x)
{
    if (x->ndim != 4 || y->ndim != 4 || y->ne[0] != x->ne[0]
        || x->ne[3] != 4 * y->ne[3] || y->ne[1] != 2 * (x->ne[1] - 1)
        || y->ne[2] != 2 * (x->ne[2] - 1) || x->ne[1] < 2 || x->ne[2] < 2)
    {
        return shape_err(err, "subpixel2x", "shapes", x, y);
    }
    if (!same_dtype(y, x)) {
        return dtype_err(err, "subpixel2x", x, y);
    }
    return sd_round_out(y->be->ops->subpixel2x(err, y, x), y);
}


sd_status
sd_backend_randn_cuda(sd_err *err, sd_backend *be, uint64_t seed, float *out,
    size_t n)
{
    if (be->ops->randn_cuda) {
        return be->ops->randn_cuda(err, be, seed, out, n);
    }
    return sd_errorf(err, SD_ERR_UNSUPPORTED, "%s: the noise is drawn on "
                     "the host", be->ops->name);
}


sd_status
sd_zero(sd_err *err, sd_tensor *t)
{
    float      *z;
    sd_status   s;

    if (t->be->ops->zero) {
        return t->be->ops->zero(err, t);
    }
    z = sd_calloc(err, (size_t) sd_numel(t) + 1, sizeof(float), "zeros");
    if (z == NULL) {
        return SD_ERR_NOMEM;
    }
    s = sd_tensor_upload(err, t, z);
    free(z);
    return s;
}


sd_status
sd_embed(sd_err *err, sd_tensor *y, const sd_tensor *table,
    const int32_t *ids)
{
    int64_t  i, n;

    if (table->ndim != 2 || last_dim(y) != table->ne[1]) {
        return shape_err(err, "embed", "table", table, y);
    }
    n = rows_of(y);
    for (i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= table->ne[0]) {
            return sd_errorf(err, SD_ERR_INVALID, "token id %d outside a "
                             "vocabulary of %lld", ids[i],
                             (long long) table->ne[0]);
        }
    }
    return sd_round_out(y->be->ops->embed(err, y, table, ids), y);
}


sd_status
sd_modulate(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *shift, const sd_tensor *scale)
{
    SD_TRY(mod_check(err, "modulate", y, x, shift, scale));
    if (!same_dtype(y, x)) {
        return dtype_err(err, "modulate", x, y);
    }
    return sd_round_out(y->be->ops->modulate(err, y, x, shift, scale), y);
}


sd_status
sd_gate_add(sd_err *err, sd_tensor *x, const sd_tensor *g,
    const sd_tensor *y)
{
    if (x->ndim != 3 || sd_numel(y) != sd_numel(x)
        || sd_numel(g) != x->ne[0] * x->ne[2])
    {
        return shape_err(err, "gate_add", "shapes", x, g);
    }
    if (!same_dtype(x, g) || !same_dtype(x, y)) {
        return dtype_err(err, "gate_add", x, same_dtype(x, g) ? y : g);
    }
    return sd_round_out(x->be->ops->gate_add(err, x, g, y), x);
}


sd_status
sd_abs_diff_sum(sd_err *err, sd_tensor *out, const sd_tensor *a,
    const sd_tensor *b)
{
    if (sd_numel(a) != sd_numel(b) || sd_numel(out) != 2) {
        return shape_err(err, "abs_diff_sum", "shapes", a, b);
    }
    if (!same_dtype(a, b) || out->dtype != SD_DT_F32) {
        return dtype_err(err, "abs_diff_sum", a, same_dtype(a, b) ? out : b);
    }
    return a->be->ops->abs_diff_sum(err, out, a, b);
}


sd_status
sd_copy2d(sd_err *err, sd_tensor *dst, int64_t dst_off, int64_t dst_stride,
    const sd_tensor *src, int64_t src_off, int64_t src_stride, int64_t rows,
    int64_t cols)
{
    if (rows < 0 || cols < 0 || dst_off < 0 || src_off < 0
        || (rows > 0
            && (dst_off + (rows - 1) * dst_stride + cols > sd_numel(dst)
                || src_off + (rows - 1) * src_stride + cols
                   > sd_numel(src))))
    {
        return shape_err(err, "copy2d", "range outside", src, dst);
    }
    if (rows == 0 || cols == 0) {
        return SD_OK;
    }
    return sd_round_out(dst->be->ops->copy2d(err, dst, dst_off, dst_stride,
                                             src, src_off, src_stride, rows,
                                             cols), dst);
}


sd_status
sd_permute(sd_err *err, sd_tensor *y, const sd_tensor *x, const int *perm)
{
    int  i, seen = 0;

    if (y->ndim != x->ndim) {
        return shape_err(err, "permute", "ranks", x, y);
    }
    for (i = 0; i < x->ndim; i++) {
        if (perm[i] < 0 || perm[i] >= x->ndim || (seen & (1 << perm[i]))
            || y->ne[i] != x->ne[perm[i]])
        {
            return shape_err(err, "permute", "shapes", x, y);
        }
        seen |= 1 << perm[i];
    }
    return sd_round_out(y->be->ops->permute(err, y, x, perm), y);
}


void
sd_backend_destroy(sd_backend *be)
{
    if (be) {
        be->ops->destroy(be);
    }
}


sd_status
sd_backend_sync(sd_err *err, sd_backend *be)
{
    return be->ops->sync ? be->ops->sync(err, be) : SD_OK;
}


int
sd_backend_queued(const sd_backend *be)
{
    return be->ops->mark != NULL && be->ops->wait_mark != NULL;
}


sd_status
sd_backend_mark(sd_err *err, sd_backend *be, int slot)
{
    if (slot != 0 && slot != 1) {
        return sd_errorf(err, SD_ERR_INTERNAL, "mark slot %d", slot);
    }
    return sd_backend_queued(be) ? be->ops->mark(err, be, slot) : SD_OK;
}


sd_status
sd_backend_wait_mark(sd_err *err, sd_backend *be, int slot)
{
    if (slot != 0 && slot != 1) {
        return sd_errorf(err, SD_ERR_INTERNAL, "mark slot %d", slot);
    }
    return sd_backend_queued(be) ? be->ops->wait_mark(err, be, slot)
                                 : SD_OK;
}


sd_status
sd_backend_lane(sd_err *err, sd_backend *be, int lane)
{
    if (lane != 0 && lane != 1) {
        return sd_errorf(err, SD_ERR_INTERNAL, "lane %d", lane);
    }
    return be->ops->lane ? be->ops->lane(err, be, lane) : SD_OK;
}


sd_status
sd_backend_join(sd_err *err, sd_backend *be)
{
    return be->ops->join ? be->ops->join(err, be) : SD_OK;
}


int
sd_offload_parse(const char *s, unsigned *mask)
{
    const char  *p = s, *e;
    size_t       n;

    *mask = 0;
    while (p && *p) {
        e = strchr(p, ',');
        n = e ? (size_t) (e - p) : strlen(p);
        if (n == 2 && strncmp(p, "t5", 2) == 0) {
            *mask |= SD_OFFLOAD_T5;
        } else if (n == 4 && strncmp(p, "clip", 4) == 0) {
            *mask |= SD_OFFLOAD_CLIP;
        } else if (n == 4 && strncmp(p, "text", 4) == 0) {
            *mask |= SD_OFFLOAD_T5 | SD_OFFLOAD_CLIP;
        } else if (!(n == 4 && strncmp(p, "none", 4) == 0)) {
            return -1;
        }
        p = e ? e + 1 : NULL;
    }
    return 0;
}


sd_status
sd_backend_replay(sd_err *err, sd_backend *be, void **rec, const void *key,
    size_t key_len, sd_status (*fn)(sd_err *err, void *data), void *data)
{
    if (be->ops->replay) {
        return be->ops->replay(err, be, rec, key, key_len, fn, data);
    }
    return fn(err, data);
}


void
sd_backend_replay_free(sd_backend *be, void *rec)
{
    if (be && rec && be->ops->replay_free) {
        be->ops->replay_free(be, rec);
    }
}


sd_dtype
sd_backend_weight_dtype(const sd_backend *be, const char *name, int ndim,
    const int64_t *shape)
{
    if (be->weight_policy) {
        return be->weight_policy(be, name, ndim, shape);
    }
    return be->weight_dtype;
}
