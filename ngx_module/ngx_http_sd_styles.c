
/*
 * ngx_http_sd_styles.c: A1111's prompt styles without nginx: its styles
 * file (styles.csv: a header line "name,prompt,negative_prompt", then one
 * style a line, RFC 4180 quoting) and how a style joins a prompt
 * (modules/styles.py, merge_prompts): a style holding "{prompt}" takes the
 * prompt in its place, any other is appended after ", ".
 *
 * Invariant: what these functions return is malloc'ed (or a cJSON tree)
 * and owned by the caller; they never keep a pointer into their input.
 */

#include <stdlib.h>
#include <string.h>

#include "ngx_http_sd_parse.h"


static const char *ngx_http_sd_csv_field(const char *p, const char *end,
    char **out, int *eol);


/*
 * One CSV field from p: *out a malloc'ed copy, unquoted; *eol set when the
 * field ended its line (or the text). Returns where the next field starts,
 * or NULL without memory.
 */

static const char *
ngx_http_sd_csv_field(const char *p, const char *end, char **out, int *eol)
{
    char    *buf;
    size_t   n;
    int      quoted;

    buf = malloc(end - p + 1);
    if (buf == NULL) {
        return NULL;
    }

    n = 0;
    quoted = (p < end && *p == '"');
    *eol = 0;

    if (quoted) {
        for (p++; p < end; p++) {
            if (*p == '"') {
                if (p + 1 < end && p[1] == '"') {
                    buf[n++] = '"';
                    p++;
                    continue;
                }

                p++;
                break;
            }

            buf[n++] = *p;
        }
    }

    /* unquoted text, or what follows a closing quote, up to , or EOL */
    for ( /* void */ ; p < end && *p != ',' && *p != '\n'; p++) {
        if (*p != '\r') {
            buf[n++] = *p;
        }
    }

    buf[n] = '\0';
    *out = buf;

    if (p >= end || *p == '\n') {
        *eol = 1;
    }

    return p < end ? p + 1 : p;
}


/*
 * styles.csv into [{"name", "prompt", "negative_prompt"}, ...]: the
 * header names the columns (A1111 reads it with csv.DictReader); rows
 * without a name are skipped. NULL: no memory, or no "name" column.
 */

cJSON *
ngx_http_sd_styles_parse(const char *text, size_t len)
{
    int          eol, col, ncols, c_name, c_prompt, c_neg;
    char        *f;
    cJSON       *a, *o;
    const char  *p, *end;
    char        *row[3];

    p = text;
    end = text + len;

    /* a UTF-8 byte order mark, as Excel writes it */
    if (len >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0) {
        p += 3;
    }

    c_name = -1;
    c_prompt = -1;
    c_neg = -1;
    ncols = 0;

    do {
        p = ngx_http_sd_csv_field(p, end, &f, &eol);
        if (p == NULL) {
            return NULL;
        }

        if (strcmp(f, "name") == 0) {
            c_name = ncols;

        } else if (strcmp(f, "prompt") == 0) {
            c_prompt = ncols;

        } else if (strcmp(f, "negative_prompt") == 0) {
            c_neg = ncols;
        }

        free(f);
        ncols++;

    } while (!eol);

    if (c_name < 0) {
        return NULL;
    }

    a = cJSON_CreateArray();
    if (a == NULL) {
        return NULL;
    }

    while (p < end) {
        row[0] = NULL;
        row[1] = NULL;
        row[2] = NULL;
        col = 0;

        do {
            p = ngx_http_sd_csv_field(p, end, &f, &eol);
            if (p == NULL) {
                goto nomem;
            }

            if (col == c_name) {
                row[0] = f;

            } else if (col == c_prompt) {
                row[1] = f;

            } else if (col == c_neg) {
                row[2] = f;

            } else {
                free(f);
            }

            col++;

        } while (!eol);

        if (row[0] && row[0][0]) {
            o = cJSON_CreateObject();
            if (o == NULL
                || cJSON_AddStringToObject(o, "name", row[0]) == NULL
                || cJSON_AddStringToObject(o, "prompt",
                                           row[1] ? row[1] : "") == NULL
                || cJSON_AddStringToObject(o, "negative_prompt",
                                           row[2] ? row[2] : "") == NULL)
            {
                cJSON_Delete(o);
                free(row[0]);
                free(row[1]);
                free(row[2]);
                goto nomem;
            }

            cJSON_AddItemToArray(a, o);
        }

        free(row[0]);
        free(row[1]);
        free(row[2]);
    }

    return a;

nomem:

    cJSON_Delete(a);
    return NULL;
}


/*
 * A1111's merge_prompts(): the style's text with "{prompt}" replaced by the
 * prompt, or else the two joined by ", ", each stripped, empty ones left
 * out. Returns a malloc'ed string, NULL without memory.
 */

char *
ngx_http_sd_style_apply(const char *style, const char *prompt)
{
    char        *res, *q;
    size_t       n, plen, slen, k;
    const char  *s, *hit, *ps, *ss;

    plen = strlen(prompt);

    if (strstr(style, "{prompt}")) {
        n = 0;
        for (s = style; (hit = strstr(s, "{prompt}")); s = hit + 8) {
            n++;
        }

        res = malloc(strlen(style) + n * plen + 1);
        if (res == NULL) {
            return NULL;
        }

        q = res;
        for (s = style; (hit = strstr(s, "{prompt}")); s = hit + 8) {
            memcpy(q, s, hit - s);
            q += hit - s;
            memcpy(q, prompt, plen);
            q += plen;
        }

        strcpy(q, s);
        return res;
    }

    /* Python's str.strip(): whitespace at both ends */
    ps = prompt;
    ss = style;
    slen = strlen(style);

    while (plen && strchr(" \t\n\r\f\v", *ps)) {
        ps++;
        plen--;
    }

    while (plen && strchr(" \t\n\r\f\v", ps[plen - 1])) {
        plen--;
    }

    while (slen && strchr(" \t\n\r\f\v", *ss)) {
        ss++;
        slen--;
    }

    while (slen && strchr(" \t\n\r\f\v", ss[slen - 1])) {
        slen--;
    }

    res = malloc(plen + slen + 3);
    if (res == NULL) {
        return NULL;
    }

    memcpy(res, ps, plen);
    k = plen;

    if (plen && slen) {
        memcpy(res + k, ", ", 2);
        k += 2;
    }

    memcpy(res + k, ss, slen);
    res[k + slen] = '\0';

    return res;
}


/*
 * The request's "styles", in order, applied to its prompts as A1111's
 * apply_styles_to_prompt() does; names not in the list are ignored.
 * Returns 0, or -1 without memory (the prompts are then unchanged).
 */

int
ngx_http_sd_styles_apply(ngx_http_sd_txt2img_t *t, cJSON *list)
{
    char   *prompt, *negative, *p;
    cJSON  *name, *style, *sp, *sn, *sname;

    if (t->styles == NULL || list == NULL) {
        return 0;
    }

    prompt = strdup(t->prompt);
    negative = strdup(t->negative_prompt);

    if (prompt == NULL || negative == NULL) {
        goto nomem;
    }

    cJSON_ArrayForEach(name, t->styles) {
        if (!cJSON_IsString(name)) {
            continue;
        }

        cJSON_ArrayForEach(style, list) {
            sname = cJSON_GetObjectItemCaseSensitive(style, "name");

            if (cJSON_IsString(sname)
                && strcmp(sname->valuestring, name->valuestring) == 0)
            {
                break;
            }
        }

        if (style == NULL) {
            continue;
        }

        sp = cJSON_GetObjectItemCaseSensitive(style, "prompt");
        sn = cJSON_GetObjectItemCaseSensitive(style, "negative_prompt");

        p = ngx_http_sd_style_apply(cJSON_IsString(sp) ? sp->valuestring
                                                      : "", prompt);
        if (p == NULL) {
            goto nomem;
        }

        free(prompt);
        prompt = p;

        p = ngx_http_sd_style_apply(cJSON_IsString(sn) ? sn->valuestring
                                                      : "", negative);
        if (p == NULL) {
            goto nomem;
        }

        free(negative);
        negative = p;
    }

    free(t->prompt);
    free(t->negative_prompt);
    t->prompt = prompt;
    t->negative_prompt = negative;
    t->req.prompt = prompt;
    t->req.negative_prompt = negative;

    return 0;

nomem:

    free(prompt);
    free(negative);
    return -1;
}
