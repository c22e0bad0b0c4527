/*
 * promptsched.c: A1111's schedule_parser grammar (Lark, Earley) as a
 * backtracking recursive descent:
 *
 *   start: (prompt | /[][():]/+)*
 *   prompt: (emphasized | scheduled | alternate | plain | WHITESPACE)*
 *   emphasized: "(" prompt ")" | "(" prompt ":" prompt ")" | "[" prompt "]"
 *   scheduled: "[" [prompt ":"] prompt ":" [WHITESPACE] NUMBER
 *              [WHITESPACE] "]"
 *   alternate: "[" prompt ("|" [prompt])+ "]"
 *   plain: /([^\\\[\]():|]|\\.)+/
 *
 * Every alternative is told apart by its first character except the three
 * "[" rules, tried in the order scheduled, alternate, emphasized; a rule
 * that fails consumes nothing. Emphasis keeps its brackets as text (the
 * rule is "!emphasized"), so the texts still carry their weights.
 *
 * Invariant: the tree is rendered per step exactly as AtStep does; memory
 * is one node array freed at once.
 */

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "promptsched.h"


enum { N_TEXT, N_SEQ, N_SCHED, N_ALT };

typedef struct sd_snode  sd_snode;

struct sd_snode {
    int          kind;
    const char  *s;             /* N_TEXT: s[0..len) */
    size_t       len;
    sd_snode   **kid;           /* N_SEQ: items; N_SCHED: before (or
                                   NULL), after; N_ALT: options (or NULL) */
    int          nkid, cap;
    char         num[64];       /* N_SCHED: the NUMBER as written */
    int          when;
};

typedef struct {
    const char  *src;
    sd_snode   **all;           /* every node, to free */
    int          nall, capall;
    int          nomem;
} sd_sparse;


static sd_snode *
node_new(sd_sparse *ps, int kind)
{
    sd_snode  *n;

    if (ps->nall == ps->capall) {
        int         cap = ps->capall ? 2 * ps->capall : 32;
        sd_snode  **a = realloc(ps->all, cap * sizeof(*a));

        if (a == NULL) {
            ps->nomem = 1;
            return NULL;
        }
        ps->all = a;
        ps->capall = cap;
    }
    n = calloc(1, sizeof(*n));
    if (n == NULL) {
        ps->nomem = 1;
        return NULL;
    }
    n->kind = kind;
    ps->all[ps->nall++] = n;
    return n;
}


static int
node_add(sd_sparse *ps, sd_snode *p, sd_snode *k)
{
    if (p->nkid == p->cap) {
        int         cap = p->cap ? 2 * p->cap : 4;
        sd_snode  **a = realloc(p->kid, cap * sizeof(*a));

        if (a == NULL) {
            ps->nomem = 1;
            return -1;
        }
        p->kid = a;
        p->cap = cap;
    }
    p->kid[p->nkid++] = k;
    return 0;
}


static int
text_add(sd_sparse *ps, sd_snode *seq, size_t at, size_t len)
{
    sd_snode  *t = node_new(ps, N_TEXT);

    if (t == NULL) {
        return -1;
    }
    t->s = ps->src + at;
    t->len = len;
    return node_add(ps, seq, t);
}


/* plain: ([^\\\[\]():|]|\\.)+ ; "." is any character but a newline */
static size_t
plain_len(const char *s)
{
    size_t  i = 0;

    for ( ;; ) {
        if (s[i] == '\\' && s[i + 1] != '\0' && s[i + 1] != '\n') {
            i += 2;
        } else if (s[i] != '\0' && strchr("\\[]():|", s[i]) == NULL) {
            i++;
        } else {
            return i;
        }
    }
}


/* SIGNED_NUMBER of lark's common grammar: [+-] (INT | DECIMAL) [exp] */
static size_t
number_len(const char *s)
{
    size_t  i = 0, d0, d1 = 0;

    if (s[i] == '+' || s[i] == '-') {
        i++;
    }
    d0 = i;
    while (isdigit((unsigned char) s[i])) {
        i++;
    }
    d0 = i - d0;
    if (s[i] == '.') {
        size_t  k = i + 1;

        while (isdigit((unsigned char) s[k])) {
            k++;
        }
        d1 = k - i - 1;
        if (d0 == 0 && d1 == 0) {
            return 0;
        }
        i = k;
    } else if (d0 == 0) {
        return 0;
    }
    if (s[i] == 'e' || s[i] == 'E') {
        size_t  k = i + 1, e0;

        if (s[k] == '+' || s[k] == '-') {
            k++;
        }
        e0 = k;
        while (isdigit((unsigned char) s[k])) {
            k++;
        }
        if (k > e0) {
            i = k;
        }
    }
    return i;
}


static size_t
ws_len(const char *s)
{
    size_t  i = 0;

    while (s[i] && isspace((unsigned char) s[i])) {
        i++;
    }
    return i;
}


static sd_snode *parse_prompt(sd_sparse *ps, size_t *pos);


/* "(" prompt ")" | "(" prompt ":" prompt ")" */
static sd_snode *
parse_round(sd_sparse *ps, size_t *pos)
{
    size_t     p = *pos + 1;
    sd_snode  *seq = node_new(ps, N_SEQ), *a, *b;

    if (seq == NULL || text_add(ps, seq, *pos, 1) != 0) {
        return NULL;
    }
    if ((a = parse_prompt(ps, &p)) == NULL || node_add(ps, seq, a) != 0) {
        return NULL;
    }
    if (ps->src[p] == ':') {
        if (text_add(ps, seq, p, 1) != 0) {
            return NULL;
        }
        p++;
        if ((b = parse_prompt(ps, &p)) == NULL || node_add(ps, seq, b) != 0)
        {
            return NULL;
        }
    }
    if (ps->src[p] != ')' || text_add(ps, seq, p, 1) != 0) {
        return NULL;
    }
    *pos = p + 1;
    return seq;
}


/* ":" [WHITESPACE] NUMBER [WHITESPACE] "]" at p: the NUMBER into n */
static int
sched_tail(sd_sparse *ps, size_t *p, sd_snode *n)
{
    const char  *s = ps->src;
    size_t       q = *p, k;

    if (s[q] != ':') {
        return 0;
    }
    q++;
    q += ws_len(s + q);
    k = number_len(s + q);
    if (k == 0 || k >= sizeof(n->num)) {
        return 0;
    }
    memcpy(n->num, s + q, k);
    n->num[k] = '\0';
    q += k;
    q += ws_len(s + q);
    if (s[q] != ']') {
        return 0;
    }
    *p = q + 1;
    return 1;
}


/* scheduled: "[" [prompt ":"] prompt ":" [WS] NUMBER [WS] "]" */
static sd_snode *
parse_sched(sd_sparse *ps, size_t *pos)
{
    size_t     p = *pos + 1;
    sd_snode  *n = node_new(ps, N_SCHED), *a, *b;

    if (n == NULL || (a = parse_prompt(ps, &p)) == NULL) {
        return NULL;
    }
    if (sched_tail(ps, &p, n)) {
        if (node_add(ps, n, NULL) != 0 || node_add(ps, n, a) != 0) {
            return NULL;
        }
        *pos = p;
        return n;
    }
    if (ps->src[p] != ':') {
        return NULL;
    }
    p++;
    if ((b = parse_prompt(ps, &p)) == NULL || !sched_tail(ps, &p, n)
        || node_add(ps, n, a) != 0 || node_add(ps, n, b) != 0)
    {
        return NULL;
    }
    *pos = p;
    return n;
}


/* alternate: "[" prompt ("|" [prompt])+ "]" */
static sd_snode *
parse_alt(sd_sparse *ps, size_t *pos)
{
    size_t     p = *pos + 1;
    sd_snode  *n = node_new(ps, N_ALT), *a;

    if (n == NULL || (a = parse_prompt(ps, &p)) == NULL
        || node_add(ps, n, a->nkid ? a : NULL) != 0 || ps->src[p] != '|')
    {
        return NULL;
    }
    while (ps->src[p] == '|') {
        p++;
        if ((a = parse_prompt(ps, &p)) == NULL
            || node_add(ps, n, a->nkid ? a : NULL) != 0)
        {
            return NULL;
        }
    }
    if (ps->src[p] != ']') {
        return NULL;
    }
    *pos = p + 1;
    return n;
}


/* "[" prompt "]" */
static sd_snode *
parse_square(sd_sparse *ps, size_t *pos)
{
    size_t     p = *pos + 1;
    sd_snode  *seq = node_new(ps, N_SEQ), *a;

    if (seq == NULL || text_add(ps, seq, *pos, 1) != 0
        || (a = parse_prompt(ps, &p)) == NULL || node_add(ps, seq, a) != 0
        || ps->src[p] != ']' || text_add(ps, seq, p, 1) != 0)
    {
        return NULL;
    }
    *pos = p + 1;
    return seq;
}


/* prompt: the longest run of items at *pos (possibly none); NULL only
   when out of memory */
static sd_snode *
parse_prompt(sd_sparse *ps, size_t *pos)
{
    sd_snode  *seq = node_new(ps, N_SEQ), *k;
    size_t     p = *pos, n;

    if (seq == NULL) {
        return NULL;
    }
    for ( ;; ) {
        char  c = ps->src[p];

        k = NULL;
        if (c == '(') {
            size_t  q = p;

            k = parse_round(ps, &q);
            if (k) {
                p = q;
            }
        } else if (c == '[') {
            size_t  q = p;

            k = parse_sched(ps, &q);
            if (k == NULL && !ps->nomem) {
                q = p;
                k = parse_alt(ps, &q);
            }
            if (k == NULL && !ps->nomem) {
                q = p;
                k = parse_square(ps, &q);
            }
            if (k) {
                p = q;
            }
        } else if ((n = plain_len(ps->src + p)) > 0) {
            if (text_add(ps, seq, p, n) != 0) {
                return NULL;
            }
            p += n;
            continue;
        }
        if (ps->nomem) {
            return NULL;
        }
        if (k == NULL) {
            break;
        }
        if (node_add(ps, seq, k) != 0) {
            return NULL;
        }
    }
    *pos = p;
    return seq;
}


/* start: (prompt | /[][():]/+)* ; NULL with !nomem: a parse error */
static sd_snode *
parse_start(sd_sparse *ps)
{
    sd_snode  *seq = node_new(ps, N_SEQ), *k;
    size_t     p = 0;

    if (seq == NULL) {
        return NULL;
    }
    while (ps->src[p]) {
        size_t  q = p;

        if ((k = parse_prompt(ps, &q)) == NULL) {
            return NULL;
        }
        if (node_add(ps, seq, k) != 0) {
            return NULL;
        }
        p = q;
        if (ps->src[p] && strchr("[]():", ps->src[p])) {
            if (text_add(ps, seq, p, 1) != 0) {
                return NULL;
            }
            p++;
        } else if (ps->src[p]) {
            return NULL;        /* "|" or a lone "\" */
        }
    }
    return seq;
}


/* CollectSteps.scheduled: when from the NUMBER as written */
static void
collect(sd_snode *n, int steps, int int_off, double flt_off, int *mark,
    int *alt)
{
    int  i;

    if (n == NULL) {
        return;
    }
    if (n->kind == N_SCHED) {
        double  v = strtod(n->num, NULL);

        v = strchr(n->num, '.') ? (v - flt_off) * steps : v - int_off;
        if (v > steps) {
            n->when = steps;
        } else {
            n->when = v >= 2147483647.0 ? steps
                      : v <= -2147483647.0 ? -2147483647 : (int) v;
        }
        if (n->when >= 1) {
            mark[n->when] = 1;
        }
    }
    if (n->kind == N_ALT) {
        *alt = 1;               /* CollectSteps.alternate: every step */
    }
    for (i = 0; i < n->nkid; i++) {
        collect(n->kid[i], steps, int_off, flt_off, mark, alt);
    }
}


/* AtStep: the text of the tree at step, appended to out */
static void
render(const sd_snode *n, int step, char *out, size_t *len)
{
    int  i;

    if (n == NULL) {
        return;
    }
    switch (n->kind) {
    case N_TEXT:
        memcpy(out + *len, n->s, n->len);
        *len += n->len;
        break;
    case N_SEQ:
        for (i = 0; i < n->nkid; i++) {
            render(n->kid[i], step, out, len);
        }
        break;
    case N_SCHED:
        render(step <= n->when ? n->kid[0] : n->kid[1], step, out, len);
        break;
    default:
        render(n->kid[(step - 1) % n->nkid], step, out, len);
    }
}


static void
sparse_free(sd_sparse *ps)
{
    int  i;

    for (i = 0; i < ps->nall; i++) {
        free(ps->all[i]->kid);
        free(ps->all[i]);
    }
    free(ps->all);
}


static sd_status
sched_push(sd_err *err, sd_prompt_sched *out, int end, const char *text,
    size_t len)
{
    sd_sched_entry  *e = realloc(out->e, (out->n + 1) * sizeof(*e));

    if (e == NULL) {
        return sd_errorf(err, SD_ERR_NOMEM, "out of memory for a prompt "
                         "schedule");
    }
    out->e = e;
    e[out->n].end_at_step = end;
    e[out->n].text = malloc(len + 1);
    if (e[out->n].text == NULL) {
        return sd_errorf(err, SD_ERR_NOMEM, "out of memory for a prompt "
                         "schedule");
    }
    memcpy(e[out->n].text, text, len);
    e[out->n].text[len] = '\0';
    out->n++;
    return SD_OK;
}


sd_status
sd_prompt_schedule(sd_err *err, const char *prompt, int base_steps,
    int hires_steps, sd_prompt_sched *out)
{
    sd_sparse   ps;
    sd_snode   *tree;
    int        *mark = NULL, steps, t, alt = 0;
    int         int_off = hires_steps > 0 ? base_steps : 0;
    double      flt_off = hires_steps > 0 ? 1.0 : 0.0;
    char       *buf = NULL;
    sd_status   s = SD_OK;

    memset(out, 0, sizeof(*out));
    memset(&ps, 0, sizeof(ps));
    steps = hires_steps > 0 ? hires_steps : base_steps;
    if (steps < 1) {
        steps = 1;
    }
    ps.src = prompt;
    tree = parse_start(&ps);
    if (tree == NULL && ps.nomem) {
        sparse_free(&ps);
        return sd_errorf(err, SD_ERR_NOMEM, "out of memory parsing a "
                         "prompt schedule");
    }
    if (tree == NULL) {
        /* LarkError: the prompt as it is */
        sparse_free(&ps);
        return sched_push(err, out, steps, prompt, strlen(prompt));
    }

    mark = calloc((size_t) steps + 1, sizeof(int));
    buf = malloc(strlen(prompt) + 1);
    if (mark == NULL || buf == NULL) {
        s = sd_errorf(err, SD_ERR_NOMEM, "out of memory for a prompt "
                      "schedule");
        goto out;
    }
    mark[steps] = 1;
    collect(tree, steps, int_off, flt_off, mark, &alt);
    for (t = 1; t <= steps && s == SD_OK; t++) {
        size_t  len = 0;

        if (!mark[t] && !alt) {
            continue;
        }
        render(tree, t, buf, &len);
        s = sched_push(err, out, t, buf, len);
    }

out:
    free(mark);
    free(buf);
    sparse_free(&ps);
    if (s != SD_OK) {
        sd_prompt_sched_free(out);
    }
    return s;
}


void
sd_prompt_sched_free(sd_prompt_sched *s)
{
    int  i;

    for (i = 0; i < s->n; i++) {
        free(s->e[i].text);
    }
    free(s->e);
    s->e = NULL;
    s->n = 0;
}


int
sd_prompt_sched_at(const sd_prompt_sched *s, int step)
{
    int  i;

    for (i = 0; i < s->n; i++) {
        if (step <= s->e[i].end_at_step) {
            return i;
        }
    }
    return 0;                   /* A1111's target_index stays 0 */
}
