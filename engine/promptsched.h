/*
 * promptsched.h: A1111 1.10's prompt editing and alternation
 * (modules/prompt_parser.py: schedule_parser,
 * get_learned_conditioning_prompt_schedules, reconstruct_cond_batch).
 *
 *   [a:b:when]  a until step when, then b;  [a:when]  a added after when;
 *   [a::when]   a removed after when;       [a|b|c]  a, b, c cycling by
 *   step; when with a "." is a fraction of the steps, else a step count;
 *   a prompt the grammar rejects (a "|" outside brackets, a lone "\" at the
 *   end) is one entry of the text as it is.
 *
 * Invariant: entries are sorted by end_at_step, the last one ends at the
 * steps; a prompt without editing or alternation is one entry of itself.
 */

#ifndef SD_PROMPTSCHED_H
#define SD_PROMPTSCHED_H

#include "sd_err.h"


typedef struct {
    int     end_at_step;
    char   *text;
} sd_sched_entry;

typedef struct {
    sd_sched_entry  *e;
    int              n;
} sd_prompt_sched;

/*
 * The schedule of prompt for steps sampling steps; hires_steps > 0: the
 * second pass of hires fix (A1111's offsets: when counts from base_steps,
 * fractions from 1.0), 0 otherwise.
 */
sd_status sd_prompt_schedule(sd_err *err, const char *prompt, int base_steps,
    int hires_steps, sd_prompt_sched *out);
void sd_prompt_sched_free(sd_prompt_sched *s);

/* reconstruct_cond_batch: the entry in use at sampling step (from 0). */
int sd_prompt_sched_at(const sd_prompt_sched *s, int step);

#endif /* SD_PROMPTSCHED_H */
