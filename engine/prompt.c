/*
 * prompt.c: A1111 1.10's prompt syntax. The tokenizer follows the
 * alternatives of prompt_parser.re_attention in their order:
 *   \( \) \[ \]  \\  \  (  [  :<number>)  )  ]  <text without \()[]:>  :
 * and the actions of parse_prompt_attention(); extra-network tags follow
 * extra_networks.re_extra_net, <(\w+):([^>]+)>.
 */

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "prompt.h"


typedef struct {
    sd_prompt_run  *runs;
    int             n, cap;
    int            *round, nround, *square, nsquare;
} sd_attn_state;


static int
push_run(sd_attn_state *st, const char *text, size_t len, double w)
{
    sd_prompt_run  *r;

    if (st->n == st->cap) {
        int  cap = st->cap ? 2 * st->cap : 16;

        r = realloc(st->runs, (size_t) cap * sizeof(*r));
        if (r == NULL) {
            return -1;
        }
        st->runs = r;
        st->cap = cap;
    }
    r = &st->runs[st->n];
    r->text = malloc(len + 1);
    if (r->text == NULL) {
        return -1;
    }
    memcpy(r->text, text, len);
    r->text[len] = '\0';
    r->weight = w;
    st->n++;
    return 0;
}


static void
multiply_range(sd_attn_state *st, int start, double m)
{
    int  p;

    for (p = start; p < st->n; p++) {
        st->runs[p].weight *= m;
    }
}


static int
is_word(int c)
{
    return isalnum((unsigned char) c) || c == '_';
}


/*
 * re_break = \s*\bBREAK\b\s*: split plain text on it, pushing "BREAK"
 * runs (weight -1) between the parts, as re.split does (empty parts kept).
 */
static int
push_plain(sd_attn_state *st, const char *s, size_t len)
{
    size_t  i = 0, start = 0;

    while (i + 5 <= len) {
        if (memcmp(s + i, "BREAK", 5) == 0
            && (i == 0 || !is_word(s[i - 1]))
            && (i + 5 == len || !is_word(s[i + 5])))
        {
            size_t  a = i, b = i + 5;

            while (a > start && isspace((unsigned char) s[a - 1])) {
                a--;
            }
            while (b < len && isspace((unsigned char) s[b])) {
                b++;
            }
            if (push_run(st, s + start, a - start, 1.0) != 0
                || push_run(st, "BREAK", 5, -1.0) != 0)
            {
                return -1;
            }
            start = i = b;
            continue;
        }
        i++;
    }
    return push_run(st, s + start, len - start, 1.0);
}


/* ":\s*([+-]?[.\d]+)\s*\)" at s: its length and the number, or 0 */
static size_t
weight_close(const char *s, double *w)
{
    const char  *p = s + 1, *num;
    char         buf[64];
    size_t       n;

    while (isspace((unsigned char) *p)) {
        p++;
    }
    num = p;
    if (*p == '+' || *p == '-') {
        p++;
    }
    if (!(isdigit((unsigned char) *p) || *p == '.')) {
        return 0;
    }
    while (isdigit((unsigned char) *p) || *p == '.') {
        p++;
    }
    n = (size_t) (p - num);
    while (isspace((unsigned char) *p)) {
        p++;
    }
    if (*p != ')' || n >= sizeof(buf)) {
        return 0;
    }
    memcpy(buf, num, n);
    buf[n] = '\0';
    *w = strtod(buf, NULL);     /* Python float() of "1.2.3" raises;
                                   we take what parses */
    return (size_t) (p + 1 - s);
}


static void
attn_state_free(sd_attn_state *st)
{
    int  i;

    for (i = 0; i < st->n; i++) {
        free(st->runs[i].text);
    }
    free(st->runs);
    free(st->round);
    free(st->square);
}


sd_status
sd_prompt_attention(sd_err *err, const char *text, sd_prompt_attn *out)
{
    sd_attn_state  st;
    size_t         len = strlen(text), i = 0;
    int            k, rc = 0;

    memset(&st, 0, sizeof(st));
    memset(out, 0, sizeof(*out));
    st.round = malloc((len + 1) * sizeof(int));
    st.square = malloc((len + 1) * sizeof(int));
    if (st.round == NULL || st.square == NULL) {
        goto nomem;
    }

    while (i < len && rc == 0) {
        const char  *s = text + i;
        double       w = 1.0;
        size_t       n = 0;

        if (s[0] == '\\') {
            /* \( \) \[ \] \\ : the character; a lone \ : nothing */
            if (s[1] && strchr("()[]\\", s[1])) {
                rc = push_run(&st, s + 1, 1, 1.0);
                i += 2;
            } else {
                rc = push_run(&st, "", 0, 1.0);
                i += 1;
            }
        } else if (s[0] == '(') {
            st.round[st.nround++] = st.n;
            i++;
        } else if (s[0] == '[') {
            st.square[st.nsquare++] = st.n;
            i++;
        } else if (s[0] == ':' && (n = weight_close(s, &w)) > 0
                   && st.nround > 0)
        {
            multiply_range(&st, st.round[--st.nround], w);
            i += n;
        } else if (s[0] == ':' && n > 0) {
            /* a weight with no open bracket: the text as it is, parsed
               as plain text (the else branch of A1111) */
            rc = push_plain(&st, s, n);
            i += n;
        } else if (s[0] == ')' && st.nround > 0) {
            multiply_range(&st, st.round[--st.nround], 1.1);
            i++;
        } else if (s[0] == ']' && st.nsquare > 0) {
            multiply_range(&st, st.square[--st.nsquare], 1 / 1.1);
            i++;
        } else if (strchr("():[]", s[0])) {
            rc = push_plain(&st, s, 1);
            i++;
        } else {
            n = strcspn(s, "\\()[]:");
            rc = push_plain(&st, s, n);
            i += n;
        }
    }
    if (rc != 0) {
        goto nomem;
    }
    for (k = 0; k < st.nround; k++) {
        multiply_range(&st, st.round[k], 1.1);
    }
    for (k = 0; k < st.nsquare; k++) {
        multiply_range(&st, st.square[k], 1 / 1.1);
    }
    if (st.n == 0 && push_run(&st, "", 0, 1.0) != 0) {
        goto nomem;
    }

    /* merge runs of identical weights */
    k = 0;
    while (k + 1 < st.n) {
        if (st.runs[k].weight == st.runs[k + 1].weight) {
            size_t  a = strlen(st.runs[k].text);
            size_t  b = strlen(st.runs[k + 1].text);
            char   *t = realloc(st.runs[k].text, a + b + 1);

            if (t == NULL) {
                goto nomem;
            }
            memcpy(t + a, st.runs[k + 1].text, b + 1);
            st.runs[k].text = t;
            free(st.runs[k + 1].text);
            memmove(&st.runs[k + 1], &st.runs[k + 2],
                    (size_t) (st.n - k - 2) * sizeof(st.runs[0]));
            st.n--;
        } else {
            k++;
        }
    }

    out->runs = st.runs;
    out->n = st.n;
    free(st.round);
    free(st.square);
    return SD_OK;

nomem:
    attn_state_free(&st);
    return sd_errorf(err, SD_ERR_NOMEM, "out of memory parsing a prompt");
}


void
sd_prompt_attention_free(sd_prompt_attn *a)
{
    int  i;

    for (i = 0; a->runs && i < a->n; i++) {
        free(a->runs[i].text);
    }
    free(a->runs);
    a->runs = NULL;
    a->n = 0;
}


sd_status
sd_prompt_plain(sd_err *err, const sd_prompt_attn *a, char **out)
{
    size_t  len = 1;
    int     i;
    char   *p;

    for (i = 0; i < a->n; i++) {
        len += strlen(a->runs[i].text) + 2;
    }
    p = sd_malloc(err, len, "prompt");
    if (p == NULL) {
        return SD_ERR_NOMEM;
    }
    p[0] = '\0';
    for (i = 0; i < a->n; i++) {
        strcat(p, a->runs[i].weight == -1.0 ? ", " : a->runs[i].text);
    }
    *out = p;
    return SD_OK;
}


sd_status
sd_prompt_extra_networks(sd_err *err, const char *prompt, char **out,
    char ***tags, int *n_tags)
{
    size_t   len = strlen(prompt), i = 0, o = 0;
    char    *res, **list = NULL;
    int      n = 0;

    *out = NULL;
    *tags = NULL;
    *n_tags = 0;
    res = sd_malloc(err, len + 1, "prompt");
    if (res == NULL) {
        return SD_ERR_NOMEM;
    }
    while (i < len) {
        size_t  w = 0, e;

        if (prompt[i] == '<') {
            while (is_word(prompt[i + 1 + w])) {
                w++;
            }
            if (w > 0 && prompt[i + 1 + w] == ':'
                && prompt[i + 2 + w] != '>' && prompt[i + 2 + w] != '\0')
            {
                const char  *end = strchr(prompt + i + 2 + w, '>');

                if (end) {
                    char  **l = realloc(list, (n + 1) * sizeof(char *));

                    if (l == NULL) {
                        goto nomem;
                    }
                    list = l;
                    e = (size_t) (end - (prompt + i + 1));
                    list[n] = malloc(e + 1);
                    if (list[n] == NULL) {
                        goto nomem;
                    }
                    memcpy(list[n], prompt + i + 1, e);
                    list[n][e] = '\0';
                    n++;
                    i = (size_t) (end - prompt) + 1;
                    continue;
                }
            }
        }
        res[o++] = prompt[i++];
    }
    res[o] = '\0';
    *out = res;
    *tags = list;
    *n_tags = n;
    return SD_OK;

nomem:
    while (n > 0) {
        free(list[--n]);
    }
    free(list);
    free(res);
    return sd_errorf(err, SD_ERR_NOMEM, "out of memory parsing a prompt");
}
