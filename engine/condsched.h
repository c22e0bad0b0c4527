/*
 * condsched.h: which conditioning each sampling step uses, for
 * sd_generate(): a prompt and its negative evened out in CLIP chunks (the
 * transformer runs them as one batch), and A1111's prompt editing and
 * alternation (promptsched.h) as segments of steps (pipeline.h: n_seg).
 *
 * Invariant: what these hand out points at conditionings the caller owns
 * (tc / tn, the sd_edit) or at the text cache's pinned empty prompt, never
 * at an LRU entry that a later encoding may evict.
 */

#ifndef SD_CONDSCHED_H
#define SD_CONDSCHED_H

#include "pipeline.h"
#include "textcache.h"


/*
 * Different chunk counts: the shorter of *pc / *pn gets empty chunks
 * (A1111's empty_chunk(), as for the texts of one batch; A1111 runs cond
 * and uncond of different lengths apart); it then points at the copy in
 * *tc / *tn, which the caller frees (sd_cond_free). tcache may be NULL.
 */
sd_status sd_cond_pad_pair(sd_err *err, sd_tcache *tcache, sd_model *m,
    int clip_skip, const sd_cond **pc, const sd_cond **pn, sd_cond *tc,
    sd_cond *tn);


/*
 * 1 when prompt uses prompt editing or alternation at steps (its schedule
 * is more than the prompt itself), or cannot be parsed; no encoding.
 */
int sd_prompt_edited(const char *prompt, int steps);


/*
 * Prompt editing for one pass: the schedules of the prompt and (cfg_on)
 * the negative, each text encoded through the cache and copied, all padded
 * to one chunk count; segment i (n of them) ends before step end[i] and
 * uses c[i] / u[i]. n 0: neither prompt is edited (the plain path).
 */
typedef struct {
    int             n;
    int            *end;
    const sd_cond **c, **u;
    sd_cond        *own;
    int             n_own;
} sd_edit;

/* base / hires steps as sd_prompt_schedule() takes them */
sd_status sd_edit_prepare(sd_err *err, sd_tcache *tcache, sd_model *m,
    const char *prompt, const char *negative, int cfg_on, int base,
    int hires, int clip_skip, sd_edit *ed);
/* n > 0: the segments into a, *c / *u the first segment's */
void sd_edit_args(const sd_edit *ed, sd_pipe_args *a, const sd_cond **c,
    const sd_cond **u);
void sd_edit_free(sd_edit *ed);

#endif /* SD_CONDSCHED_H */
