/*
 * test_styles.c: A1111's prompt styles without nginx
 * (ngx_module/ngx_http_sd_styles.c): styles.csv as csv.DictReader reads
 * it, and merge_prompts() of modules/styles.py.
 *
 * Invariant: the expected strings are what A1111 1.10 computes for the
 * same inputs (worked by hand from its rules, never from this code).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "t.h"
#include "ngx_http_sd_parse.h"


static const char *
t_field(cJSON *a, int i, const char *key)
{
    cJSON  *o, *v;

    o = cJSON_GetArrayItem(a, i);
    v = o ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;

    return (v && cJSON_IsString(v)) ? v->valuestring : "(none)";
}


static void
t_check_apply(const char *style, const char *prompt, const char *want)
{
    char  *got;

    got = ngx_http_sd_style_apply(style, prompt);
    T_CHECK(got && strcmp(got, want) == 0, "merge(\"%s\", \"%s\"): \"%s\", "
            "want \"%s\"", style, prompt, got ? got : "(null)", want);
    free(got);
}


static void
t_csv(void)
{
    cJSON       *a;
    const char  *csv;

    /* a BOM, CRLF, quotes with commas and doubled quotes, an extra
       column, a nameless row, a missing last column, no final newline */
    csv = "\xef\xbb\xbfname,prompt,negative_prompt,notes\r\n"
          "Cinematic,\"{prompt}, film grain, \"\"35mm\"\"\",blurry,x\r\n"
          ",orphan,row\r\n"
          "Plain,masterpiece\n"
          "Multi,\"line one\nline two\",\"bad, ugly\"";

    a = ngx_http_sd_styles_parse(csv, strlen(csv));
    T_CHECK(a && cJSON_GetArraySize(a) == 3, "3 named styles, got %d",
            a ? cJSON_GetArraySize(a) : -1);

    T_CHECK(strcmp(t_field(a, 0, "name"), "Cinematic") == 0, "name 0: %s",
            t_field(a, 0, "name"));
    T_CHECK(strcmp(t_field(a, 0, "prompt"),
                   "{prompt}, film grain, \"35mm\"") == 0,
            "prompt 0: %s", t_field(a, 0, "prompt"));
    T_CHECK(strcmp(t_field(a, 0, "negative_prompt"), "blurry") == 0,
            "negative 0: %s", t_field(a, 0, "negative_prompt"));
    T_CHECK(strcmp(t_field(a, 1, "prompt"), "masterpiece") == 0
            && strcmp(t_field(a, 1, "negative_prompt"), "") == 0,
            "row 1: %s / %s", t_field(a, 1, "prompt"),
            t_field(a, 1, "negative_prompt"));
    T_CHECK(strcmp(t_field(a, 2, "prompt"), "line one\nline two") == 0
            && strcmp(t_field(a, 2, "negative_prompt"), "bad, ugly") == 0,
            "row 2: %s / %s", t_field(a, 2, "prompt"),
            t_field(a, 2, "negative_prompt"));
    cJSON_Delete(a);

    /* columns in another order are found by their header */
    csv = "prompt,name\nred,Red\n";
    a = ngx_http_sd_styles_parse(csv, strlen(csv));
    T_CHECK(a && strcmp(t_field(a, 0, "name"), "Red") == 0
            && strcmp(t_field(a, 0, "prompt"), "red") == 0,
            "reordered: %s %s", t_field(a, 0, "name"),
            t_field(a, 0, "prompt"));
    cJSON_Delete(a);

    /* no "name" column: not a styles file */
    csv = "title,prompt\nx,y\n";
    a = ngx_http_sd_styles_parse(csv, strlen(csv));
    T_CHECK(a == NULL, "no name column is refused");
    cJSON_Delete(a);

    /* a header alone: no styles */
    csv = "name,prompt,negative_prompt\n";
    a = ngx_http_sd_styles_parse(csv, strlen(csv));
    T_CHECK(a && cJSON_GetArraySize(a) == 0, "header only: empty list");
    cJSON_Delete(a);
}


int
main(void)
{
    t_csv();

    /* merge_prompts(style_prompt, prompt) */
    t_check_apply("{prompt}, film grain", "a cat", "a cat, film grain");
    t_check_apply("{prompt} and {prompt}", "x", "x and x");
    t_check_apply("masterpiece", "a cat", "a cat, masterpiece");
    t_check_apply("  masterpiece ", "  a cat\n", "a cat, masterpiece");
    t_check_apply("masterpiece", "", "masterpiece");
    t_check_apply("", "a cat", "a cat");
    t_check_apply("   ", "  ", "");
    t_check_apply("{prompt}", "", "");

    return T_DONE();
}
