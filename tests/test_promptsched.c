/*
 * test_promptsched.c: prompt editing and alternation schedules
 * (engine/promptsched.h), the expected entries worked out by hand from
 * A1111's get_learned_conditioning_prompt_schedules and
 * reconstruct_cond_batch.
 */

#include "t.h"
#include "promptsched.h"


/* exp: "end:text" entries, NULL-terminated */
static void
check(const char *prompt, int base, int hires, const char **exp)
{
    sd_prompt_sched  s;
    sd_err           err = {0};
    int              i, n = 0, ok;

    while (exp[n]) {
        n++;
    }
    if (sd_prompt_schedule(&err, prompt, base, hires, &s) != SD_OK) {
        T_CHECK(0, "\"%s\": %s", prompt, err.msg);
        return;
    }
    ok = s.n == n;
    for (i = 0; ok && i < n; i++) {
        char  buf[512];

        snprintf(buf, sizeof(buf), "%d:%s", s.e[i].end_at_step,
                 s.e[i].text);
        ok = strcmp(buf, exp[i]) == 0;
    }
    if (!ok) {
        for (i = 0; i < s.n; i++) {
            printf("  got %d:\"%s\"\n", s.e[i].end_at_step, s.e[i].text);
        }
    }
    T_CHECK(ok, "schedule of \"%s\" (%d, %d)", prompt, base, hires);
    sd_prompt_sched_free(&s);
}


#define CHECK(p, b, h, ...)                                                 \
    do {                                                                    \
        const char  *e_[] = { __VA_ARGS__, NULL };                          \
        check(p, b, h, e_);                                                 \
    } while (0)


static void
check_at(void)
{
    sd_prompt_sched  s;
    sd_err           err = {0};
    int              want[10] = { 0, 0, 0, 0, 0, 0, 1, 1, 1, 1 }, i, ok = 1;
    int              alt[4] = { 0, 0, 1, 2 };

    /* [a:b:0.5] over 10 steps: steps 0..5 (step <= 5) use a */
    sd_prompt_schedule(&err, "[a:b:0.5]", 10, 0, &s);
    for (i = 0; i < 10; i++) {
        ok &= sd_prompt_sched_at(&s, i) == want[i];
    }
    T_CHECK(ok && s.n == 2, "[a:b:0.5]: a for steps 0-5, b for 6-9");
    sd_prompt_sched_free(&s);

    /* [a|b] over 4 steps: entries end at 1, 2, 3, 4; step 0 and 1 take
       the first (a), then b, a */
    sd_prompt_schedule(&err, "[a|b]", 4, 0, &s);
    ok = s.n == 4;
    for (i = 0; ok && i < 4; i++) {
        ok &= sd_prompt_sched_at(&s, i) == alt[i];
    }
    T_CHECK(ok, "[a|b]: entries 0, 0, 1, 2 at steps 0-3");
    sd_prompt_sched_free(&s);
}


int
main(void)
{
    CHECK("a [cat:dog:0.5] photo", 10, 0, "5:a cat photo", "10:a dog photo");
    CHECK("[cat:dog:3]", 10, 0, "3:cat", "10:dog");
    CHECK("a [cat:0.25]", 8, 0, "2:a ", "8:a cat");
    CHECK("a [cat::2]", 5, 0, "2:a cat", "5:a ");
    CHECK("[a|b]", 3, 0, "1:a", "2:b", "3:a");
    CHECK("x [a|b|]", 3, 0, "1:x a", "2:x b", "3:x ");
    CHECK("(cat:1.2) [dog:0.5]", 4, 0, "2:(cat:1.2) ", "4:(cat:1.2) dog");
    CHECK("[[a:b:2]:c:4]", 6, 0, "2:a", "4:b", "6:c");
    CHECK("[a: 0.5 ]", 10, 0, "5:", "10:a");
    CHECK("[a:b:20]", 10, 0, "10:a");
    CHECK("[a:b:0]", 10, 0, "10:b");
    CHECK("[a:1:2]", 4, 0, "2:a", "4:1");
    CHECK("[a:b:1e0]", 4, 0, "1:a", "4:b");
    /* hires: a step count from base_steps, a fraction from 1.0 */
    CHECK("[a:b:12]", 10, 5, "2:a", "5:b");
    CHECK("[a:b:1.5]", 10, 4, "2:a", "4:b");
    /* no editing: the prompt itself, literals and all */
    CHECK("a photo of a cat", 20, 0, "20:a photo of a cat");
    CHECK("a (b", 10, 0, "10:a (b");
    CHECK("[a:b:c:0.5]", 10, 0, "10:[a:b:c:0.5]");
    CHECK("((a)) [b] (c:d)", 10, 0, "10:((a)) [b] (c:d)");
    CHECK("\\[a:b:0.5\\]", 10, 0, "10:\\[a:b:0.5\\]");
    CHECK("", 10, 0, "10:");
    /* the grammar rejects "|" outside brackets: the text as it is */
    CHECK("a | [b:c:0.5]", 10, 0, "10:a | [b:c:0.5]");
    check_at();
    return T_DONE();
}
