/*
 * condsched.c: which conditioning each sampling step uses (condsched.h):
 * a prompt and its negative evened out in chunks, prompt editing and
 * alternation turned into segments of steps for the pipeline.
 */

#include <stdlib.h>
#include <string.h>

#include "condsched.h"
#include "prompt.h"
#include "promptenc.h"
#include "promptsched.h"


/*
 * A prompt and its negative of different chunk counts: the shorter one
 * gets empty chunks (A1111's empty_chunk(), as for the texts of one batch)
 * so that both go through the transformer in one batch; *pc / *pn then
 * point at the padded copy in *tc / *tn (freed by the caller).
 */
sd_status
sd_cond_pad_pair(sd_err *err, sd_tcache *tcache, sd_model *m, int clip_skip,
    const sd_cond **pc, const sd_cond **pn, sd_cond *tc, sd_cond *tn)
{
    const sd_cond  *empty;
    sd_cond         tmp;
    int             a = sd_cond_chunks(m, *pc);
    int             b = sd_cond_chunks(m, *pn);
    sd_status       s;

    if (a == b) {
        return SD_OK;
    }
    /* the empty prompt is pinned in the cache: it outlives this call */
    SD_TRY(sd_tcache_get(err, tcache, m, "", clip_skip, &tmp,
                         &empty));
    if (a < b) {
        s = sd_cond_pad_chunks(err, m, *pc, empty, b, tc);
        *pc = tc;
    } else {
        s = sd_cond_pad_chunks(err, m, *pn, empty, a, tn);
        *pn = tn;
    }
    sd_cond_free(&tmp);
    return s;
}


void
sd_edit_free(sd_edit *ed)
{
    int  i;

    for (i = 0; i < ed->n_own; i++) {
        sd_cond_free(&ed->own[i]);
    }
    free(ed->own);
    free(ed->end);
    free(ed->c);
    free(ed->u);
    memset(ed, 0, sizeof(*ed));
}


/* *edited: the schedule is more than the prompt itself */
static sd_status
edit_schedule(sd_err *err, const char *prompt, int base, int hires,
    sd_prompt_sched *ps, int *edited)
{
    char     *text, **tags;
    int       n, i;
    sd_status s;

    memset(ps, 0, sizeof(*ps));
    SD_TRY(sd_prompt_extra_networks(err, prompt ? prompt : "", &text, &tags,
                                    &n));
    for (i = 0; i < n; i++) {
        free(tags[i]);
    }
    free(tags);
    s = sd_prompt_schedule(err, text, base, hires, ps);
    if (s == SD_OK && (ps->n > 1 || strcmp(ps->e[0].text, text) != 0)) {
        *edited = 1;
    }
    free(text);
    return s;
}


int
sd_prompt_edited(const char *prompt, int steps)
{
    sd_prompt_sched  ps;
    sd_err           err = {0};
    int              edited = 0;

    if (edit_schedule(&err, prompt, steps, 0, &ps, &edited) != SD_OK) {
        edited = 1;             /* unparsable here: the plain path decides */
    }
    sd_prompt_sched_free(&ps);
    return edited;
}


/* the texts of both schedules into ed->own, padded to one chunk count */
static sd_status
edit_encode(sd_err *err, sd_tcache *tcache, sd_model *m, int clip_skip,
    const sd_prompt_sched *sc, const sd_prompt_sched *su, sd_edit *ed)
{
    sd_cond         tmp, t2;
    const sd_cond  *out, *empty;
    int             i, most = 1, k;

    ed->own = sd_calloc(err, sc->n + su->n, sizeof(sd_cond), "prompts");
    if (ed->own == NULL) {
        return SD_ERR_NOMEM;
    }
    for (i = 0; i < sc->n + su->n; i++) {
        const char  *t = i < sc->n ? sc->e[i].text : su->e[i - sc->n].text;

        SD_TRY(sd_tcache_get(err, tcache, m, t, clip_skip, &tmp,
                             &out));
        k = sd_cond_chunks(m, out);
        most = k > most ? k : most;
        if (sd_cond_copy(err, m, out, &ed->own[i]) != SD_OK)
        {
            sd_cond_free(&tmp);
            return err->status;
        }
        ed->n_own++;
        sd_cond_free(&tmp);
    }
    SD_TRY(sd_tcache_get(err, tcache, m, "", clip_skip, &tmp,
                         &empty));
    for (i = 0; i < ed->n_own; i++) {
        if (sd_cond_chunks(m, &ed->own[i]) == most) {
            continue;
        }
        if (sd_cond_pad_chunks(err, m, &ed->own[i], empty, most, &t2)
            != SD_OK)
        {
            sd_cond_free(&tmp);
            return err->status;
        }
        sd_cond_free(&ed->own[i]);
        ed->own[i] = t2;
    }
    sd_cond_free(&tmp);
    return SD_OK;
}


sd_status
sd_edit_prepare(sd_err *err, sd_tcache *tcache, sd_model *m,
    const char *prompt, const char *negative, int cfg_on, int base,
    int hires, int clip_skip, sd_edit *ed)
{
    sd_prompt_sched  sc, su;
    int              steps = hires > 0 ? hires : base, j, ic, iu, pc = -1;
    int              pu = -1, edited = 0;
    sd_status        s;

    memset(ed, 0, sizeof(*ed));
    memset(&su, 0, sizeof(su));
    SD_TRY(edit_schedule(err, prompt, base, hires, &sc, &edited));
    if (cfg_on) {
        SD_TRY_GOTO(s, edit_schedule(err, negative, base, hires, &su,
                                     &edited), out);
    }
    if (!edited) {
        s = SD_OK;              /* the plain path encodes them */
        goto out;
    }
    SD_TRY_GOTO(s, edit_encode(err, tcache, m, clip_skip, &sc, &su, ed), out);
    ed->end = sd_calloc(err, steps, sizeof(int), "segments");
    ed->c = sd_calloc(err, steps, sizeof(*ed->c), "segments");
    ed->u = sd_calloc(err, steps, sizeof(*ed->u), "segments");
    if (ed->end == NULL || ed->c == NULL || ed->u == NULL) {
        s = SD_ERR_NOMEM;
        goto out;
    }
    /* reconstruct_cond_batch at each step: a new segment where it moves */
    for (j = 0; j < steps; j++) {
        ic = sd_prompt_sched_at(&sc, j);
        iu = cfg_on ? sd_prompt_sched_at(&su, j) : 0;
        if (ic != pc || iu != pu) {
            if (ed->n > 0) {
                ed->end[ed->n - 1] = j;
            }
            ed->c[ed->n] = &ed->own[ic];
            ed->u[ed->n] = cfg_on ? &ed->own[sc.n + iu] : &ed->own[ic];
            ed->n++;
            pc = ic;
            pu = iu;
        }
    }
    ed->end[ed->n - 1] = steps;
    s = SD_OK;

out:
    sd_prompt_sched_free(&sc);
    sd_prompt_sched_free(&su);
    if (s != SD_OK) {
        sd_edit_free(ed);
    }
    return s;
}


void
sd_edit_args(const sd_edit *ed, sd_pipe_args *a, const sd_cond **c,
    const sd_cond **u)
{
    if (ed->n == 0) {
        return;
    }
    a->n_seg = ed->n;
    a->seg_end = ed->end;
    a->seg_cond = ed->c;
    a->seg_ncond = ed->u;
    *c = ed->c[0];
    *u = ed->u[0];
}
