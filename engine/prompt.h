/*
 * prompt.h: A1111 1.10's prompt syntax (modules/prompt_parser.py,
 * modules/extra_networks.py), parsed in C: emphasis weights per text run,
 * BREAK, escapes, and the extra-network tags <name:args>.
 *
 * Invariant: parsing never fails on text (as A1111's never rejects a
 * prompt); only allocation can fail.
 */

#ifndef SD_PROMPT_H
#define SD_PROMPT_H

#include "sd_err.h"


/* One run of text with its weight; weight -1 marks a BREAK. */
typedef struct {
    char    *text;
    double   weight;
} sd_prompt_run;

typedef struct {
    sd_prompt_run  *runs;
    int             n;
} sd_prompt_attn;

/*
 * parse_prompt_attention(): "(a)" x1.1, "[a]" /1.1, "(a:w)" x w, "\(" a
 * literal bracket, unclosed brackets applied to the end, BREAK as its own
 * run (weight -1), neighbouring runs of equal weight merged; an empty
 * prompt is one run ("", 1).
 */
sd_status sd_prompt_attention(sd_err *err, const char *text,
    sd_prompt_attn *out);
void sd_prompt_attention_free(sd_prompt_attn *a);

/*
 * extra_networks.parse_prompt(): every <name:args> tag (name a word, args
 * up to the next '>') removed from the text; *out gets the rest, *tags
 * the tags as "name:args" in order (n_tags of them). All malloc'd.
 */
sd_status sd_prompt_extra_networks(sd_err *err, const char *prompt,
    char **out, char ***tags, int *n_tags);

/*
 * The text to encode while weights are not applied: the runs joined, a
 * BREAK as ", " (malloc'd).
 */
sd_status sd_prompt_plain(sd_err *err, const sd_prompt_attn *a, char **out);

#endif /* SD_PROMPT_H */
