/*
 * backend.c: tensor bookkeeping and the checked op wrappers.
 *
 * Every public op checks shapes here, once, and names the op and both shapes
 * in its error; the backends then trust their arguments.
 */

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


sd_status
sd_tensor_new(sd_err *err, sd_backend *be, int ndim, const int64_t *shape,
    sd_tensor **out)
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
    view->ndim = ndim;
    memcpy(view->ne, shape, ndim * sizeof(int64_t));
    view->data = t->data + off;
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
    return t->be->ops->upload(err, t, src);
}


sd_status
sd_tensor_download(sd_err *err, const sd_tensor *t, float *dst)
{
    return t->be->ops->download(err, t, dst);
}


sd_status
sd_weight_load(sd_err *err, sd_backend *be, const sd_st *st,
    const char *name, int ndim, const int64_t *shape, sd_tensor **out)
{
    const sd_st_tensor  *st_t;
    sd_tensor           *t;
    sd_status            s;
    float               *host;
    int64_t              tshape[SD_MAX_DIMS];
    int                  i, tdim;

    *out = NULL;
    SD_TRY(sd_st_get(err, st, name, ndim, ndim ? shape : NULL, &st_t));

    tdim = st_t->ndim;
    if (tdim == 0) {
        tdim = 1;
        tshape[0] = 1;
    } else if (tdim > SD_MAX_DIMS) {
        return sd_errorf(err, SD_ERR_FORMAT, "tensor \"%s\" in \"%s\" has %d "
                         "dimensions", name, st_t->file, st_t->ndim);
    } else {
        for (i = 0; i < tdim; i++) {
            tshape[i] = st_t->shape[i];
        }
    }

    SD_TRY(sd_tensor_new(err, be, tdim, tshape, &t));

    host = sd_malloc(err, (size_t) st_t->numel * sizeof(float), name);
    if (host == NULL) {
        sd_tensor_free(t);
        return SD_ERR_NOMEM;
    }
    s = sd_st_read_f32(err, st_t, host);
    if (s == SD_OK) {
        s = sd_tensor_upload(err, t, host);
    }
    free(host);
    if (s != SD_OK) {
        sd_tensor_free(t);
        return s;
    }
    *out = t;
    return SD_OK;
}


/* Ops: check, then dispatch. */

sd_status
sd_linear(sd_err *err, sd_tensor *y, const sd_tensor *x, const sd_tensor *w,
    const sd_tensor *b)
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
    return y->be->ops->linear(err, y, x, w, b);
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
    return y->be->ops->layer_norm(err, y, x, w, b, eps);
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
    return y->be->ops->rms_norm(err, y, x, w, eps);
}


sd_status
sd_group_norm(sd_err *err, sd_tensor *y, const sd_tensor *x, int groups,
    const sd_tensor *w, const sd_tensor *b, float eps)
{
    if (x->ndim != 4 || sd_numel(y) != sd_numel(x) || groups <= 0
        || x->ne[1] % groups != 0
        || (w && sd_numel(w) != x->ne[1]) || (b && sd_numel(b) != x->ne[1]))
    {
        return shape_err(err, "group_norm", "shapes", x, w ? w : y);
    }
    return y->be->ops->group_norm(err, y, x, groups, w, b, eps);
}


sd_status
sd_act_apply(sd_err *err, sd_tensor *y, const sd_tensor *x, sd_act kind)
{
    if (sd_numel(y) != sd_numel(x)) {
        return shape_err(err, "act", "shapes", x, y);
    }
    return y->be->ops->act(err, y, x, kind);
}


static sd_status
binary(sd_err *err, sd_tensor *y, const sd_tensor *a, const sd_tensor *b,
    int op)
{
    if (sd_numel(y) != sd_numel(a) || sd_numel(a) != sd_numel(b)) {
        return shape_err(err, op == SD_BIN_ADD ? "add" : "mul", "shapes", a,
                         b);
    }
    return y->be->ops->binary(err, y, a, b, op);
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
    return y->be->ops->scale(err, y, x, s, add);
}


sd_status
sd_attention(sd_err *err, sd_tensor *o, const sd_tensor *q,
    const sd_tensor *k, const sd_tensor *v, int heads, int causal,
    const sd_tensor *bias, float scale)
{
    if (q->ndim != 3 || k->ndim != 3 || v->ndim != 3 || o->ndim != 3
        || heads <= 0 || q->ne[2] % heads != 0
        || k->ne[0] != q->ne[0] || v->ne[0] != q->ne[0]
        || k->ne[2] != q->ne[2] || v->ne[2] != q->ne[2]
        || k->ne[1] != v->ne[1]
        || o->ne[0] != q->ne[0] || o->ne[1] != q->ne[1]
        || o->ne[2] != q->ne[2])
    {
        return shape_err(err, "attention", "q and k/v/o", q, k);
    }
    if (bias && (sd_numel(bias) != (int64_t) heads * q->ne[1] * k->ne[1])) {
        return shape_err(err, "attention", "bias", bias, q);
    }
    return o->be->ops->attention(err, o, q, k, v, heads, causal, bias,
                                 scale);
}


sd_status
sd_conv2d(sd_err *err, sd_tensor *y, const sd_tensor *x, const sd_tensor *w,
    const sd_tensor *b, int stride, int pad)
{
    int64_t  ho, wo;

    if (x->ndim != 4 || w->ndim != 4 || y->ndim != 4 || stride < 1
        || w->ne[1] != x->ne[1] || y->ne[1] != w->ne[0]
        || y->ne[0] != x->ne[0] || (b && sd_numel(b) != w->ne[0]))
    {
        return shape_err(err, "conv2d", "x and weight", x, w);
    }
    ho = (x->ne[2] + 2 * pad - w->ne[2]) / stride + 1;
    wo = (x->ne[3] + 2 * pad - w->ne[3]) / stride + 1;
    if (y->ne[2] != ho || y->ne[3] != wo) {
        return shape_err(err, "conv2d", "output", y, x);
    }
    return y->be->ops->conv2d(err, y, x, w, b, stride, pad);
}


sd_status
sd_upsample2x(sd_err *err, sd_tensor *y, const sd_tensor *x)
{
    if (x->ndim != 4 || y->ndim != 4 || y->ne[0] != x->ne[0]
        || y->ne[1] != x->ne[1] || y->ne[2] != 2 * x->ne[2]
        || y->ne[3] != 2 * x->ne[3])
    {
        return shape_err(err, "upsample2x", "shapes", x, y);
    }
    return y->be->ops->upsample2x(err, y, x);
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
    return y->be->ops->embed(err, y, table, ids);
}


sd_status
sd_modulate(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *shift, const sd_tensor *scale)
{
    if (x->ndim != 3 || sd_numel(y) != sd_numel(x)
        || sd_numel(shift) != x->ne[0] * x->ne[2]
        || sd_numel(scale) != x->ne[0] * x->ne[2])
    {
        return shape_err(err, "modulate", "shapes", x, shift);
    }
    return y->be->ops->modulate(err, y, x, shift, scale);
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
    return x->be->ops->gate_add(err, x, g, y);
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
    return dst->be->ops->copy2d(err, dst, dst_off, dst_stride, src, src_off,
                                src_stride, rows, cols);
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
    return y->be->ops->permute(err, y, x, perm);
}


void
sd_backend_destroy(sd_backend *be)
{
    if (be) {
        be->ops->destroy(be);
    }
}
