/*
 * test_sampler_names.c: how the module resolves A1111 sampler and
 * scheduler names to the engine's (ngx_module/ngx_http_sd_parse.c,
 * ngx_http_sd_sampler_resolve), by A1111 1.10's get_sampler_and_scheduler
 * rules: unknown names fall back to the first served, a legacy combined
 * name ("DPM++ 2M Karras") is split, a scheduler matches by its label or
 * its name ("sgm_uniform"). Written against whatever the engine lists.
 */

#include <stdio.h>
#include <string.h>

#include "t.h"
#include "ngx_http_sd_parse.h"


static void
t_resolve(const char *sampler, const char *sched, const char *want_sampler,
    const char *want_sched, int want_fixed)
{
    int          fixed;
    const char  *s, *c;

    fixed = ngx_http_sd_sampler_resolve(sampler, sched, &s, &c);

    T_CHECK(strcmp(s, want_sampler) == 0 && strcmp(c, want_sched) == 0
            && fixed == want_fixed,
            "(\"%s\", \"%s\"): (\"%s\", \"%s\", %d), want (\"%s\", \"%s\", "
            "%d)", sampler ? sampler : "(null)", sched ? sched : "(null)",
            s, c, fixed, want_sampler, want_sched, want_fixed);
}


int
main(void)
{
    int                 i, k;
    char                buf[256], name[NGX_HTTP_SD_NAME_LEN];
    const char *const  *samplers, *const *scheds;

    samplers = sd_sampler_names();
    scheds = sd_scheduler_names();

    /* defaults: nothing asked is the first of each */
    t_resolve(NULL, NULL, samplers[0], scheds[0], 0);
    t_resolve("", "", samplers[0], scheds[0], 0);

    /* unknown names fall back, and say so */
    t_resolve("Nope++", "Automatic", samplers[0], scheds[0], 1);
    t_resolve(samplers[0], "nope", samplers[0], scheds[0], 1);

    for (i = 0; samplers[i]; i++) {
        /* exact and without case */
        t_resolve(samplers[i], NULL, samplers[i], scheds[0], 0);
        snprintf(buf, sizeof(buf), "%s", samplers[i]);
        for (k = 0; buf[k]; k++) {
            buf[k] = (char) ((buf[k] >= 'a' && buf[k] <= 'z')
                             ? buf[k] - 32 : buf[k]);
        }
        t_resolve(buf, NULL, samplers[i], scheds[0], 0);

        for (k = 0; scheds[k]; k++) {
            /* "<sampler> <label>" and "<sampler> <name>" */
            snprintf(buf, sizeof(buf), "%s %s", samplers[i], scheds[k]);
            t_resolve(buf, NULL, samplers[i], scheds[k], 0);

            ngx_http_sd_scheduler_name(scheds[k], name, sizeof(name));
            snprintf(buf, sizeof(buf), "%s %s", samplers[i], name);
            t_resolve(buf, "Automatic", samplers[i], scheds[k], 0);

            /* the scheduler by its A1111 name */
            t_resolve(samplers[i], name, samplers[i], scheds[k], 0);
        }
    }

    /* a combined name of an unknown sampler still falls back */
    snprintf(buf, sizeof(buf), "Nope %s", scheds[0]);
    t_resolve(buf, NULL, samplers[0], scheds[0], 1);

    return T_DONE();
}
