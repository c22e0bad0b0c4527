/*
 * promptenc.c: A1111 1.10's SD3 prompt conditioning (promptenc.h says the
 * rules). The chunking follows TextConditionalModel.tokenize_line() and
 * its next_chunk() step by step; the emphasis EmphasisOriginal
 * .after_transformers(); T5 Sd3T5.tokenize_line().
 *
 * The means are sums read back from the backend (a reduction no backend
 * op has), taken in double; the scaling itself is one backend multiply.
 */

#include <stdlib.h>
#include <string.h>

#include "prompt.h"
#include "promptenc.h"


typedef struct {
    sd_prompt_tokens  *out;
    int32_t            cur[512];        /* the open chunk's tokens */
    float              curm[512];
    int                ncur;
    int                last_comma;
    int                cap;             /* chunks allocated */
} sd_chunker;


/* next_chunk(): pad the open chunk with EOS, wrap it in BOS / EOS */
static sd_status
chunk_close(sd_err *err, sd_chunker *ck, int32_t bos, int32_t eos,
    int is_last)
{
    sd_prompt_tokens  *t = ck->out;
    int                L = t->chunk_len, k = t->n_chunks, i;
    int32_t           *ids;
    float             *mult;

    if (k == SD_PROMPT_MAX_CHUNKS) {
        ck->ncur = 0;           /* past the limit: dropped */
        ck->last_comma = -1;
        return SD_OK;
    }
    t->token_count += is_last ? ck->ncur : L - 2;
    if (k == ck->cap) {
        int  cap = ck->cap ? 2 * ck->cap : 4;

        ids = realloc(t->ids, (size_t) cap * L * sizeof(int32_t));
        if (ids == NULL) {
            return sd_errorf(err, SD_ERR_NOMEM, "out of memory for a "
                             "prompt's chunks");
        }
        t->ids = ids;
        mult = realloc(t->mult, (size_t) cap * L * sizeof(float));
        if (mult == NULL) {
            return sd_errorf(err, SD_ERR_NOMEM, "out of memory for a "
                             "prompt's chunks");
        }
        t->mult = mult;
        ck->cap = cap;
    }
    ids = t->ids + (size_t) k * L;
    mult = t->mult + (size_t) k * L;
    ids[0] = bos;
    mult[0] = 1.0f;
    for (i = 0; i < L - 2; i++) {
        ids[1 + i] = i < ck->ncur ? ck->cur[i] : eos;
        mult[1 + i] = i < ck->ncur ? ck->curm[i] : 1.0f;
    }
    ids[L - 1] = eos;
    mult[L - 1] = 1.0f;
    t->n_chunks++;
    ck->ncur = 0;
    ck->last_comma = -1;
    return SD_OK;
}


/* the loop over one run's tokens in tokenize_line() */
static sd_status
chunk_add(sd_err *err, sd_chunker *ck, const int32_t *tok, int n, float w,
    int32_t comma, int32_t bos, int32_t eos)
{
    int  p, full = ck->out->chunk_len - 2;

    for (p = 0; p < n && ck->out->n_chunks < SD_PROMPT_MAX_CHUNKS; p++) {
        if (tok[p] == comma) {
            ck->last_comma = ck->ncur;
        } else if (SD_COMMA_BACKTRACK != 0 && ck->ncur == full
                   && ck->last_comma != -1
                   && ck->ncur - ck->last_comma <= SD_COMMA_BACKTRACK)
        {
            int32_t  rt[512];
            float    rm[512];
            int      at = ck->last_comma + 1, nr = ck->ncur - at;

            memcpy(rt, ck->cur + at, nr * sizeof(int32_t));
            memcpy(rm, ck->curm + at, nr * sizeof(float));
            ck->ncur = at;
            SD_TRY(chunk_close(err, ck, bos, eos, 0));
            memcpy(ck->cur, rt, nr * sizeof(int32_t));
            memcpy(ck->curm, rm, nr * sizeof(float));
            ck->ncur = nr;
        }
        if (ck->ncur == full) {
            SD_TRY(chunk_close(err, ck, bos, eos, 0));
        }
        ck->cur[ck->ncur] = tok[p];
        ck->curm[ck->ncur] = w;
        ck->ncur++;
    }
    return SD_OK;
}


static int
is_break(const sd_prompt_run *r)
{
    return r->weight == -1.0 && strcmp(r->text, "BREAK") == 0;
}


/* Sd3T5.tokenize_line(): the runs' tokens, "</s>", padding or a cut */
static sd_status
t5_ids(sd_err *err, const sd_t5_tok *t5, const sd_prompt_attn *a,
    int t5_len, int chunks_len, sd_prompt_tokens *out)
{
    int32_t   *all = NULL, *tmp = NULL;
    int        n = 0, cap = 0, i, k, m, L;
    sd_status  s = SD_OK;

    for (i = 0; i < a->n; i++) {
        cap += 8 * (int) strlen(a->runs[i].text) + 16;
    }
    all = sd_malloc(err, (size_t) (cap + 1) * sizeof(int32_t), "T5 ids");
    if (all == NULL) {
        return SD_ERR_NOMEM;
    }
    for (i = 0; i < a->n && s == SD_OK; i++) {
        if (is_break(&a->runs[i])) {
            continue;
        }
        s = sd_t5_tok_tokens(err, t5, a->runs[i].text, all + n, cap - n, &m);
        n += m;
    }
    if (s != SD_OK) {
        free(all);
        return s;
    }
    all[n++] = sd_t5_tok_eos(t5);

    L = t5_len > 0 ? t5_len : chunks_len;
    tmp = sd_malloc(err, (size_t) L * sizeof(int32_t), "T5 ids");
    if (tmp == NULL) {
        free(all);
        return SD_ERR_NOMEM;
    }
    for (k = 0; k < L; k++) {
        tmp[k] = k < n ? all[k] : sd_t5_tok_pad(t5);
    }
    if (t5_len > 0 && n > L) {
        tmp[L - 1] = sd_t5_tok_eos(t5);     /* the tokenizer's truncation */
    }
    free(all);
    out->ids_t5 = tmp;
    out->t5_len = L;
    return SD_OK;
}


sd_status
sd_prompt_tokenize(sd_err *err, const sd_clip_tok *clip, const sd_t5_tok *t5,
    const char *text, int chunk_len, int t5_len, sd_prompt_tokens *out)
{
    sd_prompt_attn   a = { NULL, 0 };
    sd_chunker      *ck = NULL;
    int32_t         *tok = NULL, comma, bos, eos;
    int              i, n, cap;
    sd_status        s;

    memset(out, 0, sizeof(*out));
    if (chunk_len < 3 || chunk_len > 514) {
        return sd_errorf(err, SD_ERR_INVALID, "prompt: a CLIP context of %d "
                         "tokens", chunk_len);
    }
    out->chunk_len = chunk_len;
    bos = sd_clip_tok_bos(clip);
    eos = sd_clip_tok_eos(clip);
    SD_TRY(sd_clip_tok_tokens(err, clip, ",", &comma, 1, &n));
    if (n != 1) {
        comma = -1;
    }

    SD_TRY(sd_prompt_attention(err, text, &a));
    ck = sd_calloc(err, 1, sizeof(*ck), "prompt chunks");
    cap = (int) strlen(text) + 8;
    tok = sd_malloc(err, (size_t) cap * sizeof(int32_t), "prompt tokens");
    if (ck == NULL || tok == NULL) {
        s = SD_ERR_NOMEM;
        goto out;
    }
    ck->out = out;
    ck->last_comma = -1;

    for (i = 0; i < a.n; i++) {
        if (is_break(&a.runs[i])) {
            SD_TRY_GOTO(s, chunk_close(err, ck, bos, eos, 0), out);
            continue;
        }
        SD_TRY_GOTO(s, sd_clip_tok_tokens(err, clip, a.runs[i].text, tok,
                                          cap, &n), out);
        SD_TRY_GOTO(s, chunk_add(err, ck, tok, n, (float) a.runs[i].weight,
                                 comma, bos, eos), out);
    }
    if ((ck->ncur > 0 && out->n_chunks < SD_PROMPT_MAX_CHUNKS)
        || out->n_chunks == 0)
    {
        SD_TRY_GOTO(s, chunk_close(err, ck, bos, eos, 1), out);
    }
    if (t5) {
        SD_TRY_GOTO(s, t5_ids(err, t5, &a, t5_len,
                              out->n_chunks * chunk_len, out), out);
    }
    s = SD_OK;

out:
    free(tok);
    free(ck);
    sd_prompt_attention_free(&a);
    if (s != SD_OK) {
        sd_prompt_tokens_free(out);
    }
    return s;
}


void
sd_prompt_tokens_free(sd_prompt_tokens *t)
{
    free(t->ids);
    free(t->mult);
    free(t->ids_t5);
    memset(t, 0, sizeof(*t));
}


/*
 * EmphasisOriginal on the CLIP rows of ctx (chunk by chunk):
 * z = z * w; z = z * (mean before / mean after).
 */
static sd_status
emphasis_apply(sd_err *err, sd_tensor *ctx, const sd_prompt_tokens *pt)
{
    int64_t     j = ctx->ne[2], rows = (int64_t) pt->n_chunks * pt->chunk_len;
    int64_t     shape[3] = { 1, rows, j }, r, x;
    float      *host = NULL, *f = NULL;
    sd_tensor   lg, *fac = NULL;
    sd_status   s;
    int         k, weighted = 0;

    for (r = 0; r < rows; r++) {
        weighted |= pt->mult[r] != 1.0f;
    }
    if (!weighted) {
        return SD_OK;           /* every factor 1 */
    }

    host = sd_malloc(err, (size_t) (rows * j) * sizeof(float), "emphasis");
    f = sd_malloc(err, (size_t) (rows * j) * sizeof(float), "emphasis");
    if (host == NULL || f == NULL) {
        s = SD_ERR_NOMEM;
        goto out;
    }
    SD_TRY_GOTO(s, sd_tensor_view(err, ctx, 0, 3, shape, &lg), out);
    SD_TRY_GOTO(s, sd_tensor_download(err, &lg, host), out);

    for (k = 0; k < pt->n_chunks; k++) {
        double  before = 0, after = 0, ratio;
        int64_t r0 = (int64_t) k * pt->chunk_len;

        for (r = r0; r < r0 + pt->chunk_len; r++) {
            double  sum = 0;

            for (x = 0; x < j; x++) {
                sum += host[r * j + x];
            }
            before += sum;
            after += sum * pt->mult[r];
        }
        /* the means share their element count: their ratio is the sums' */
        ratio = after != 0 ? before / after : 1.0;
        for (r = r0; r < r0 + pt->chunk_len; r++) {
            float  v = (float) (pt->mult[r] * ratio);

            for (x = 0; x < j; x++) {
                f[r * j + x] = v;
            }
        }
    }
    SD_TRY_GOTO(s, sd_tensor_new3(err, ctx->be, 1, rows, j, &fac), out);
    SD_TRY_GOTO(s, sd_tensor_upload(err, fac, f), out);
    s = sd_mul(err, &lg, &lg, fac);

out:
    sd_tensor_free(fac);
    free(host);
    free(f);
    return s;
}


/* context: (1, chunks x clip_len + T, joint) = [pad(pen_l | pen_g); t5] */
static sd_status
cond_build(sd_err *err, sd_model *m, const sd_prompt_tokens *pt, int t5_len,
    sd_cond *c)
{
    int64_t  dl = sd_clip_width(m->clip_l), dg = sd_clip_width(m->clip_g);
    int64_t  pl = sd_clip_proj_dim(m->clip_l);
    int64_t  pg = sd_clip_proj_dim(m->clip_g);
    int64_t  j = m->joint_dim;
    int64_t  lg = (int64_t) pt->n_chunks * pt->chunk_len;
    int64_t  t5 = m->t5 ? pt->t5_len : (t5_len > 0 ? t5_len : lg);

    if (dl + dg > j) {
        return sd_errorf(err, SD_ERR_FORMAT, "model \"%s\": CLIP widths %lld "
                         "+ %lld exceed the context width %lld", m->dir,
                         (long long) dl, (long long) dg, (long long) j);
    }
    SD_TRY(sd_tensor_new3(err, m->be, 1, lg + t5, j, &c->context));
    SD_TRY(sd_zero(err, c->context));

    /* torch.cat([l_out, g_out], -1), F.pad to 4096; chunks one after the
       other (torch.hstack(zs)); then torch.cat([lg_out, t5_out], -2) */
    SD_TRY(sd_copy2d(err, c->context, 0, j, c->pen_l, 0, dl, lg, dl));
    SD_TRY(sd_copy2d(err, c->context, dl, j, c->pen_g, 0, dg, lg, dg));
    SD_TRY(emphasis_apply(err, c->context, pt));
    if (c->t5) {
        SD_TRY(sd_copy2d(err, c->context, lg * j, j, c->t5, 0, j, t5, j));
    }

    /* zs[0].pooled: chunk 0's */
    SD_TRY(sd_tensor_new2(err, m->be, 1, pl + pg, &c->pooled));
    SD_TRY(sd_copy2d(err, c->pooled, 0, 0, c->emb_l, 0, 0, 1, pl));
    return sd_copy2d(err, c->pooled, pl, 0, c->emb_g, 0, 0, 1, pg);
}


sd_status
sd_cond_encode_prompt(sd_err *err, sd_model *m, const char *text,
    int clip_skip, int t5_len, sd_cond *c)
{
    sd_prompt_tokens  pt;
    sd_status         s;
    int               k, i, L, n;

    memset(c, 0, sizeof(*c));
    if (m->clip_l == NULL) {
        return sd_errorf(err, SD_ERR_INTERNAL, "text encoders not loaded");
    }
    SD_TRY(sd_prompt_tokenize(err, m->tok_l, m->t5 ? m->tok_t5 : NULL, text,
                              m->clip_len, t5_len, &pt));
    L = pt.chunk_len;
    n = pt.n_chunks;
    c->chunks = n;

    /* Sd3ClipLG.encode_with_transformers: G's ids after the first EOS 0 */
    c->ids_g = sd_malloc(err, (size_t) n * L * sizeof(int32_t), "ids");
    if (c->ids_g == NULL) {
        s = SD_ERR_NOMEM;
        goto fail;
    }
    memcpy(c->ids_g, pt.ids, (size_t) n * L * sizeof(int32_t));
    for (k = 0; k < n; k++) {
        int32_t  *g = c->ids_g + (size_t) k * L;

        for (i = 0; i < L && g[i] != sd_clip_tok_eos(m->tok_l); i++) {
        }
        for (i++; i < L; i++) {
            g[i] = 0;
        }
    }
    c->ids_l = pt.ids;
    c->ids_t5 = pt.ids_t5;
    pt.ids = NULL;
    pt.ids_t5 = NULL;

    /* T5 on lane 1 beside the two CLIPs: their products of 77 rows, and
       T5's of 256, each leave most of a GPU idle */
    if (m->t5) {
        SD_TRY_GOTO(s, sd_backend_lane(err, m->be, 1), join);
        SD_TRY_GOTO(s, sd_t5_forward(err, m->t5, c->ids_t5, 1, pt.t5_len,
                                     &c->t5), join);
        SD_TRY_GOTO(s, sd_backend_lane(err, m->be, 0), join);
    }
    SD_TRY_GOTO(s, sd_clip_forward_skip(err, m->clip_l, c->ids_l, n, L,
                                        clip_skip, &c->pen_l, NULL,
                                        &c->emb_l), join);
    SD_TRY_GOTO(s, sd_clip_forward_skip(err, m->clip_g, c->ids_g, n, L,
                                        clip_skip, &c->pen_g, NULL,
                                        &c->emb_g), join);
    SD_TRY_GOTO(s, sd_backend_join(err, m->be), fail);
    SD_TRY_GOTO(s, cond_build(err, m, &pt, t5_len, c), fail);
    sd_prompt_tokens_free(&pt);
    return SD_OK;

join:
    /* lane 0 again, the lanes' memory released (the first error stays) */
    (void) sd_backend_join(err, m->be);
fail:
    sd_prompt_tokens_free(&pt);
    sd_cond_free(c);
    return s;
}


int
sd_cond_chunks(const sd_model *m, const sd_cond *c)
{
    (void) m;
    return c->chunks > 0 ? c->chunks : 1;
}


sd_status
sd_cond_pad_chunks(sd_err *err, const sd_model *m, const sd_cond *c,
    const sd_cond *empty, int n_chunks, sd_cond *out)
{
    int64_t  L = m->clip_len, j = c->context->ne[2];
    int64_t  have = (int64_t) sd_cond_chunks(m, c) * L;
    int64_t  t5 = c->context->ne[1] - have, k;

    memset(out, 0, sizeof(*out));
    out->chunks = n_chunks;
    SD_TRY(sd_tensor_new3(err, m->be, 1, n_chunks * L + t5, j,
                          &out->context));
    SD_TRY(sd_copy2d(err, out->context, 0, 0, c->context, 0, 0, 1,
                     have * j));
    for (k = have; k < n_chunks * L; k += L) {
        SD_TRY(sd_copy2d(err, out->context, k * j, 0, empty->context, 0, 0,
                         1, L * j));
    }
    SD_TRY(sd_copy2d(err, out->context, (int64_t) n_chunks * L * j, 0,
                     c->context, have * j, 0, 1, t5 * j));
    SD_TRY(sd_tensor_new2(err, m->be, 1, c->pooled->ne[1], &out->pooled));
    return sd_copy2d(err, out->pooled, 0, 0, c->pooled, 0, 0, 1,
                     c->pooled->ne[1]);
}


sd_status
sd_cond_copy(sd_err *err, const sd_model *m, const sd_cond *c, sd_cond *out)
{
    /* padded to its own chunk count: nothing added */
    return sd_cond_pad_chunks(err, m, c, c, sd_cond_chunks(m, c), out);
}
