/*
 * test_prompt.c: engine/prompt.c against A1111 1.10's prompt rules, the
 * expected runs and weights written by hand from prompt_parser.py (its
 * docstring's cases among them) and extra_networks.py.
 */

#include "prompt.h"
#include "t.h"


typedef struct {
    const char  *text;
    double       weight;
} want_run;


static void
check_attn(const char *prompt, const want_run *want, int n)
{
    sd_prompt_attn  a;
    sd_err          err = {0};
    int             i, ok;

    if (sd_prompt_attention(&err, prompt, &a) != SD_OK) {
        T_CHECK(0, "%s: %s", prompt, err.msg);
        return;
    }
    ok = a.n == n;
    for (i = 0; ok && i < n; i++) {
        ok = strcmp(a.runs[i].text, want[i].text) == 0
             && fabs(a.runs[i].weight - want[i].weight) < 1e-12;
    }
    T_CHECK(ok, "\"%s\": %d runs, first \"%s\" %.17g", prompt, a.n,
            a.n ? a.runs[0].text : "", a.n ? a.runs[0].weight : 0.0);
    if (!ok) {
        for (i = 0; i < a.n; i++) {
            printf("    [\"%s\", %.17g]\n", a.runs[i].text, a.runs[i].weight);
        }
    }
    sd_prompt_attention_free(&a);
}


#define CHECK_ATTN(p, ...)                                                  \
    do {                                                                    \
        static const want_run  w_[] = { __VA_ARGS__ };                      \
        check_attn(p, w_, (int) (sizeof(w_) / sizeof(w_[0])));              \
    } while (0)


static void
check_networks(const char *prompt, const char *want, int n,
    const char *first, const char *second)
{
    sd_err   err = {0};
    char    *out, **tags;
    int      nt, i;

    if (sd_prompt_extra_networks(&err, prompt, &out, &tags, &nt) != SD_OK) {
        T_CHECK(0, "%s: %s", prompt, err.msg);
        return;
    }
    T_CHECK(strcmp(out, want) == 0 && nt == n
            && (n < 1 || strcmp(tags[0], first) == 0)
            && (n < 2 || strcmp(tags[1], second) == 0),
            "\"%s\" -> \"%s\", %d tags (%s)", prompt, out, nt,
            nt ? tags[0] : "");
    for (i = 0; i < nt; i++) {
        free(tags[i]);
    }
    free(tags);
    free(out);
}


int
main(void)
{
    sd_prompt_attn  a;
    sd_err          err = {0};
    char           *plain;

    /* prompt_parser.parse_prompt_attention's own examples */
    CHECK_ATTN("normal text", { "normal text", 1.0 });
    CHECK_ATTN("an (important) word", { "an ", 1.0 }, { "important", 1.1 },
               { " word", 1.0 });
    CHECK_ATTN("(unbalanced", { "unbalanced", 1.1 });
    CHECK_ATTN("\\(literal\\]", { "(literal]", 1.0 });
    CHECK_ATTN("(unnecessary)(parens)", { "unnecessaryparens", 1.1 });
    CHECK_ATTN("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
               { "a ", 1.0 }, { "house", 1.3 * 1.1 * 1.1 }, { " ", 1.1 },
               { "on", 1.1 / 1.1 }, { " a ", 1.1 }, { "hill", 0.55 },
               { ", sun, ", 1.1 }, { "sky", 1.1 * 1.1 * 1.1 * 1.1 },
               { ".", 1.1 });

    /* more, from the same rules */
    CHECK_ATTN("", { "", 1.0 });
    CHECK_ATTN("a [[cat]] (dog:0.25) [x", { "a ", 1.0 },
               { "cat", 1 / 1.1 / 1.1 }, { " ", 1.0 }, { "dog", 0.25 },
               { " ", 1.0 }, { "x", 1 / 1.1 });
    CHECK_ATTN("a cat BREAK a dog", { "a cat", 1.0 }, { "BREAK", -1.0 },
               { "a dog", 1.0 });
    CHECK_ATTN("BREAKFAST BREAK", { "BREAKFAST", 1.0 }, { "BREAK", -1.0 },
               { "", 1.0 });
    CHECK_ATTN("(a BREAK b)", { "a", 1.1 }, { "BREAK", -1.1 }, { "b", 1.1 });
    CHECK_ATTN("ratio 16:9 (x :  2 )", { "ratio 16:9 ", 1.0 }, { "x ", 2.0 });
    CHECK_ATTN("no open:1.5) here", { "no open:1.5) here", 1.0 });
    CHECK_ATTN("[a:b:0.5]", { "a:b:0.5", 1 / 1.1 });
    CHECK_ATTN("back\\slash \\\\ end\\", { "backslash \\ end", 1.0 });
    CHECK_ATTN("(a:-1)", { "a", -1.0 });

    /* the text encoded while weights are not applied */
    T_CHECK(sd_prompt_attention(&err, "a (cat:1.3) BREAK [on] mat", &a)
            == SD_OK && sd_prompt_plain(&err, &a, &plain) == SD_OK
            && strcmp(plain, "a cat, on mat") == 0, "plain: %s",
            a.n ? a.runs[0].text : "");
    if (a.runs) {
        free(plain);
        sd_prompt_attention_free(&a);
    }

    /* extra_networks.parse_prompt: <(\w+):([^>]+)> */
    check_networks("a <lora:foo:0.8> cat <hypernet:bar:1>", "a  cat ", 2,
                   "lora:foo:0.8", "hypernet:bar:1");
    check_networks("<lora:>x <:a> <lo ra:b> <lora:c", "<lora:>x <:a> "
                   "<lo ra:b> <lora:c", 0, NULL, NULL);
    check_networks("<lora:x:1<lora:y>", "", 1, "lora:x:1<lora:y", NULL);
    check_networks("plain", "plain", 0, NULL, NULL);

    return T_DONE();
}
