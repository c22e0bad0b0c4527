
/*
 * ngx_http_sd_json.c: a strict JSON reader into cJSON trees, for request
 * bodies, and the JSON of FastAPI's 422 answer. No nginx: the unit test and
 * the fuzz harnesses call it as the module does.
 *
 * Strict where cJSON is lenient: one value and nothing but white space
 * after it (FastAPI: "Extra data"), no raw control characters in strings,
 * valid UTF-8, no NUL (\u0000: a C string would end there), no lone
 * surrogates, nesting at most NGX_HTTP_SD_JSON_DEPTH (the reader recurses
 * once per level). An integer literal keeps its text in the number item's
 * valuestring, which cJSON frees and copies with the item, so that seeds
 * over 2^53 are read and echoed exactly.
 *
 * Invariant: a refusal names the first byte that is wrong, as Python's
 * json module does, so loc is ["body", that offset].
 */

#include "ngx_http_sd_parse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <inttypes.h>


typedef struct {
    const unsigned char       *start;
    const unsigned char       *p;
    const unsigned char       *end;
    ngx_http_sd_verr_t        *e;
    int                        nomem;
} ngx_http_sd_json_t;


static cJSON *ngx_http_sd_json_fail(ngx_http_sd_json_t *j,
    const unsigned char *at, const char *reason);
static void ngx_http_sd_json_ws(ngx_http_sd_json_t *j);
static cJSON *ngx_http_sd_json_value(ngx_http_sd_json_t *j, int depth);
static cJSON *ngx_http_sd_json_object(ngx_http_sd_json_t *j, int depth);
static cJSON *ngx_http_sd_json_array(ngx_http_sd_json_t *j, int depth);
static cJSON *ngx_http_sd_json_literal(ngx_http_sd_json_t *j);
static cJSON *ngx_http_sd_json_number(ngx_http_sd_json_t *j);
static char *ngx_http_sd_json_string(ngx_http_sd_json_t *j);
static int ngx_http_sd_json_hex4(const unsigned char *p,
    const unsigned char *end, unsigned *cp);
static size_t ngx_http_sd_utf8_len(const unsigned char *p,
    const unsigned char *end);


cJSON *
ngx_http_sd_json_parse(const char *p, size_t len, ngx_http_sd_verr_t *e,
    int *nomem)
{
    cJSON               *v;
    ngx_http_sd_json_t   j;

    memset(e, 0, sizeof(ngx_http_sd_verr_t));

    j.start = (const unsigned char *) p;
    j.p = j.start;
    j.end = j.start + len;
    j.e = e;
    j.nomem = 0;

    *nomem = 0;

    ngx_http_sd_json_ws(&j);

    v = ngx_http_sd_json_value(&j, 0);
    if (v == NULL) {
        *nomem = j.nomem;
        return NULL;
    }

    ngx_http_sd_json_ws(&j);

    if (j.p != j.end) {
        /* trailing garbage, or a second value */
        cJSON_Delete(v);
        return ngx_http_sd_json_fail(&j, j.p, "Extra data");
    }

    return v;
}


static cJSON *
ngx_http_sd_json_fail(ngx_http_sd_json_t *j, const unsigned char *at,
    const char *reason)
{
    ngx_http_sd_verr_t  *e;

    e = j->e;

    /* the first failure is the one to report */
    if (e->type == NULL) {
        e->field = NULL;
        e->type = "json_invalid";
        e->offset = (size_t) (at - j->start);
        e->reason = reason;
        snprintf(e->msg, sizeof(e->msg), "JSON decode error");
    }

    return NULL;
}


static void
ngx_http_sd_json_ws(ngx_http_sd_json_t *j)
{
    while (j->p < j->end
           && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n'
               || *j->p == '\r'))
    {
        j->p++;
    }
}


static cJSON *
ngx_http_sd_json_value(ngx_http_sd_json_t *j, int depth)
{
    char   *s;
    cJSON  *v;

    if (j->p == j->end) {
        return ngx_http_sd_json_fail(j, j->p, "Expecting value");
    }

    switch (*j->p) {

    case '{':
        return ngx_http_sd_json_object(j, depth + 1);

    case '[':
        return ngx_http_sd_json_array(j, depth + 1);

    case '"':
        s = ngx_http_sd_json_string(j);
        if (s == NULL) {
            return NULL;
        }

        v = cJSON_CreateString("");
        if (v == NULL) {
            cJSON_free(s);
            j->nomem = 1;
            return ngx_http_sd_json_fail(j, j->p, "out of memory");
        }

        cJSON_free(v->valuestring);
        v->valuestring = s;

        return v;

    case 't':
    case 'f':
    case 'n':
        return ngx_http_sd_json_literal(j);

    default:
        if (*j->p == '-' || (*j->p >= '0' && *j->p <= '9')) {
            return ngx_http_sd_json_number(j);
        }

        return ngx_http_sd_json_fail(j, j->p, "Expecting value");
    }
}


static cJSON *
ngx_http_sd_json_object(ngx_http_sd_json_t *j, int depth)
{
    char   *key;
    cJSON  *o, *v;

    if (depth > NGX_HTTP_SD_JSON_DEPTH) {
        return ngx_http_sd_json_fail(j, j->p, "Nesting too deep");
    }

    o = cJSON_CreateObject();
    if (o == NULL) {
        j->nomem = 1;
        return ngx_http_sd_json_fail(j, j->p, "out of memory");
    }

    j->p++;
    ngx_http_sd_json_ws(j);

    if (j->p < j->end && *j->p == '}') {
        j->p++;
        return o;
    }

    for ( ;; ) {
        ngx_http_sd_json_ws(j);

        if (j->p == j->end || *j->p != '"') {
            ngx_http_sd_json_fail(j, j->p, "Expecting property name "
                                  "enclosed in double quotes");
            goto failed;
        }

        key = ngx_http_sd_json_string(j);
        if (key == NULL) {
            goto failed;
        }

        ngx_http_sd_json_ws(j);

        if (j->p == j->end || *j->p != ':') {
            cJSON_free(key);
            ngx_http_sd_json_fail(j, j->p, "Expecting ':' delimiter");
            goto failed;
        }

        j->p++;
        ngx_http_sd_json_ws(j);

        v = ngx_http_sd_json_value(j, depth);
        if (v == NULL) {
            cJSON_free(key);
            goto failed;
        }

        /* as cJSON's own parser: the member owns its malloc'ed name */
        v->string = key;
        cJSON_AddItemToArray(o, v);

        ngx_http_sd_json_ws(j);

        if (j->p < j->end && *j->p == ',') {
            j->p++;
            continue;
        }

        if (j->p < j->end && *j->p == '}') {
            j->p++;
            return o;
        }

        ngx_http_sd_json_fail(j, j->p, "Expecting ',' delimiter");
        goto failed;
    }

failed:

    cJSON_Delete(o);

    return NULL;
}


static cJSON *
ngx_http_sd_json_array(ngx_http_sd_json_t *j, int depth)
{
    cJSON  *a, *v;

    if (depth > NGX_HTTP_SD_JSON_DEPTH) {
        return ngx_http_sd_json_fail(j, j->p, "Nesting too deep");
    }

    a = cJSON_CreateArray();
    if (a == NULL) {
        j->nomem = 1;
        return ngx_http_sd_json_fail(j, j->p, "out of memory");
    }

    j->p++;
    ngx_http_sd_json_ws(j);

    if (j->p < j->end && *j->p == ']') {
        j->p++;
        return a;
    }

    for ( ;; ) {
        ngx_http_sd_json_ws(j);

        v = ngx_http_sd_json_value(j, depth);
        if (v == NULL) {
            cJSON_Delete(a);
            return NULL;
        }

        cJSON_AddItemToArray(a, v);

        ngx_http_sd_json_ws(j);

        if (j->p < j->end && *j->p == ',') {
            j->p++;
            continue;
        }

        if (j->p < j->end && *j->p == ']') {
            j->p++;
            return a;
        }

        cJSON_Delete(a);
        return ngx_http_sd_json_fail(j, j->p, "Expecting ',' delimiter");
    }
}


static cJSON *
ngx_http_sd_json_literal(ngx_http_sd_json_t *j)
{
    size_t  left;
    cJSON  *v;

    left = (size_t) (j->end - j->p);

    if (left >= 4 && memcmp(j->p, "true", 4) == 0) {
        j->p += 4;
        v = cJSON_CreateTrue();

    } else if (left >= 5 && memcmp(j->p, "false", 5) == 0) {
        j->p += 5;
        v = cJSON_CreateFalse();

    } else if (left >= 4 && memcmp(j->p, "null", 4) == 0) {
        j->p += 4;
        v = cJSON_CreateNull();

    } else {
        return ngx_http_sd_json_fail(j, j->p, "Expecting value");
    }

    if (v == NULL) {
        j->nomem = 1;
        return ngx_http_sd_json_fail(j, j->p, "out of memory");
    }

    return v;
}


/* -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */

static cJSON *
ngx_http_sd_json_number(ngx_http_sd_json_t *j)
{
    int                   integer;
    char                  small[64], *text;
    cJSON                *v;
    size_t                len;
    double                d;
    const unsigned char  *p, *q, *r;

    p = j->p;
    q = p;
    integer = 1;

    if (*q == '-') {
        q++;
    }

    if (q == j->end || *q < '0' || *q > '9') {
        return ngx_http_sd_json_fail(j, p, "Expecting value");
    }

    if (*q == '0') {
        q++;

    } else {
        while (q < j->end && *q >= '0' && *q <= '9') {
            q++;
        }
    }

    /* "1." or "1e": the number ends before; what follows is refused */
    if (q + 1 < j->end && *q == '.' && q[1] >= '0' && q[1] <= '9') {
        integer = 0;
        q++;
        while (q < j->end && *q >= '0' && *q <= '9') {
            q++;
        }
    }

    if (q < j->end && (*q == 'e' || *q == 'E')) {
        r = q + 1;
        if (r < j->end && (*r == '+' || *r == '-')) {
            r++;
        }

        if (r < j->end && *r >= '0' && *r <= '9') {
            integer = 0;
            q = r;
            while (q < j->end && *q >= '0' && *q <= '9') {
                q++;
            }
        }
    }

    len = (size_t) (q - p);

    text = (len < sizeof(small)) ? small : cJSON_malloc(len + 1);
    if (text == NULL) {
        j->nomem = 1;
        return ngx_http_sd_json_fail(j, p, "out of memory");
    }

    memcpy(text, p, len);
    text[len] = '\0';

    d = strtod(text, NULL);

    v = cJSON_CreateNumber(d);
    if (v == NULL) {
        goto nomem;
    }

    if (integer) {
        /* the exact text, for seeds over 2^53 */
        v->valuestring = cJSON_malloc(len + 1);
        if (v->valuestring == NULL) {
            cJSON_Delete(v);
            goto nomem;
        }

        memcpy(v->valuestring, text, len + 1);
    }

    if (text != small) {
        cJSON_free(text);
    }

    j->p = q;

    return v;

nomem:

    if (text != small) {
        cJSON_free(text);
    }

    j->nomem = 1;

    return ngx_http_sd_json_fail(j, p, "out of memory");
}


/*
 * A string token at j->p, decoded to UTF-8 in a cJSON_malloc'ed buffer;
 * the decoded text is never longer than the token.
 */

static char *
ngx_http_sd_json_string(ngx_http_sd_json_t *j)
{
    char                 *s, *d;
    size_t                n;
    unsigned              cp, lo;
    const unsigned char  *start, *p, *q;

    start = j->p;

    for (q = start + 1; q < j->end && *q != '"'; q++) {
        if (*q == '\\') {
            if (j->end - q < 2) {
                q = j->end;
                break;
            }

            q++;
        }
    }

    if (q >= j->end) {
        ngx_http_sd_json_fail(j, start, "Unterminated string starting at");
        return NULL;
    }

    s = cJSON_malloc((size_t) (q - start));
    if (s == NULL) {
        j->nomem = 1;
        ngx_http_sd_json_fail(j, start, "out of memory");
        return NULL;
    }

    d = s;

    for (p = start + 1; p < q; /* void */) {

        if (*p < 0x20) {
            ngx_http_sd_json_fail(j, p, "Invalid control character at");
            goto failed;
        }

        if (*p >= 0x80) {
            n = ngx_http_sd_utf8_len(p, q);
            if (n == 0) {
                ngx_http_sd_json_fail(j, p, "Invalid UTF-8");
                goto failed;
            }

            memcpy(d, p, n);
            d += n;
            p += n;
            continue;
        }

        if (*p != '\\') {
            *d++ = (char) *p++;
            continue;
        }

        switch (p[1]) {
        case '"':  *d++ = '"'; break;
        case '\\': *d++ = '\\'; break;
        case '/':  *d++ = '/'; break;
        case 'b':  *d++ = '\b'; break;
        case 'f':  *d++ = '\f'; break;
        case 'n':  *d++ = '\n'; break;
        case 'r':  *d++ = '\r'; break;
        case 't':  *d++ = '\t'; break;

        case 'u':
            if (ngx_http_sd_json_hex4(p + 2, q, &cp) != 0) {
                ngx_http_sd_json_fail(j, p, "Invalid \\uXXXX escape");
                goto failed;
            }

            if (cp == 0) {
                ngx_http_sd_json_fail(j, p, "NUL (\\u0000) in a string "
                                      "is not supported");
                goto failed;
            }

            if (cp >= 0xdc00 && cp <= 0xdfff) {
                ngx_http_sd_json_fail(j, p, "Lone surrogate");
                goto failed;
            }

            if (cp >= 0xd800 && cp <= 0xdbff) {
                if (q - p < 12 || p[6] != '\\' || p[7] != 'u'
                    || ngx_http_sd_json_hex4(p + 8, q, &lo) != 0
                    || lo < 0xdc00 || lo > 0xdfff)
                {
                    ngx_http_sd_json_fail(j, p, "Lone surrogate");
                    goto failed;
                }

                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                p += 6;
            }

            if (cp < 0x80) {
                *d++ = (char) cp;

            } else if (cp < 0x800) {
                *d++ = (char) (0xc0 | (cp >> 6));
                *d++ = (char) (0x80 | (cp & 0x3f));

            } else if (cp < 0x10000) {
                *d++ = (char) (0xe0 | (cp >> 12));
                *d++ = (char) (0x80 | ((cp >> 6) & 0x3f));
                *d++ = (char) (0x80 | (cp & 0x3f));

            } else {
                *d++ = (char) (0xf0 | (cp >> 18));
                *d++ = (char) (0x80 | ((cp >> 12) & 0x3f));
                *d++ = (char) (0x80 | ((cp >> 6) & 0x3f));
                *d++ = (char) (0x80 | (cp & 0x3f));
            }

            p += 6;
            continue;

        default:
            ngx_http_sd_json_fail(j, p, "Invalid \\escape");
            goto failed;
        }

        p += 2;
    }

    *d = '\0';
    j->p = q + 1;

    return s;

failed:

    cJSON_free(s);

    return NULL;
}


static int
ngx_http_sd_json_hex4(const unsigned char *p, const unsigned char *end,
    unsigned *cp)
{
    int       i;
    unsigned  v, c;

    if (end - p < 4) {
        return -1;
    }

    v = 0;

    for (i = 0; i < 4; i++) {
        c = p[i];

        if (c >= '0' && c <= '9') {
            c -= '0';

        } else if (c >= 'a' && c <= 'f') {
            c -= 'a' - 10;

        } else if (c >= 'A' && c <= 'F') {
            c -= 'A' - 10;

        } else {
            return -1;
        }

        v = (v << 4) | c;
    }

    *cp = v;

    return 0;
}


/* The length of one well-formed UTF-8 sequence at p, or 0. */

static size_t
ngx_http_sd_utf8_len(const unsigned char *p, const unsigned char *end)
{
    size_t    n, i;
    unsigned  cp, min;

    if (*p >= 0xc2 && *p <= 0xdf) {
        n = 2;
        cp = *p & 0x1f;
        min = 0x80;

    } else if (*p >= 0xe0 && *p <= 0xef) {
        n = 3;
        cp = *p & 0x0f;
        min = 0x800;

    } else if (*p >= 0xf0 && *p <= 0xf4) {
        n = 4;
        cp = *p & 0x07;
        min = 0x10000;

    } else {
        return 0;
    }

    if ((size_t) (end - p) < n) {
        return 0;
    }

    for (i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80) {
            return 0;
        }

        cp = (cp << 6) | (p[i] & 0x3f);
    }

    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        return 0;
    }

    return n;
}


/* Integers as cJSON_Raw: printed exactly, whatever their size. */

cJSON *
ngx_http_sd_json_int(int64_t v)
{
    char  buf[32];

    snprintf(buf, sizeof(buf), "%" PRId64, v);

    return cJSON_CreateRaw(buf);
}


/* Numbers that came as integer literals print as they came. */

void
ngx_http_sd_json_exact(cJSON *item, int depth)
{
    cJSON  *c;

    if (depth > NGX_HTTP_SD_JSON_DEPTH) {
        return;
    }

    if (cJSON_IsNumber(item) && item->valuestring) {
        item->type = cJSON_Raw;
        return;
    }

    for (c = item->child; c; c = c->next) {
        ngx_http_sd_json_exact(c, depth + 1);
    }
}


/*
 * FastAPI's 422: {"detail": [{"type", "loc": ["body", field or byte],
 * "msg", ...}]}.
 */

cJSON *
ngx_http_sd_json_detail(const ngx_http_sd_verr_t *e)
{
    cJSON  *json, *detail, *item, *loc, *ctx;

    json = cJSON_CreateObject();
    detail = cJSON_AddArrayToObject(json, "detail");
    item = cJSON_CreateObject();

    if (json == NULL || detail == NULL || item == NULL) {
        cJSON_Delete(json);
        cJSON_Delete(item);
        return NULL;
    }

    cJSON_AddItemToArray(detail, item);

    cJSON_AddStringToObject(item, "type", e->type ? e->type : "value_error");

    loc = cJSON_AddArrayToObject(item, "loc");
    if (loc == NULL) {
        cJSON_Delete(json);
        return NULL;
    }

    cJSON_AddItemToArray(loc, cJSON_CreateString("body"));

    if (e->type && strcmp(e->type, "json_invalid") == 0) {
        cJSON_AddItemToArray(loc, cJSON_CreateNumber((double) e->offset));
        cJSON_AddStringToObject(item, "msg", e->msg);
        cJSON_AddItemToObject(item, "input", cJSON_CreateObject());

        ctx = cJSON_AddObjectToObject(item, "ctx");
        if (ctx) {
            cJSON_AddStringToObject(ctx, "error",
                                    e->reason ? e->reason : "");
        }

    } else {
        if (e->field) {
            cJSON_AddItemToArray(loc, cJSON_CreateString(e->field));
        }

        cJSON_AddStringToObject(item, "msg", e->msg);
    }

    return json;
}
