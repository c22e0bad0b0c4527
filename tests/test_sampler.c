/*
 * test_sampler.c: engine/sampler.c. Name resolution as A1111 1.10's
 * get_sampler_and_scheduler(); each schedule against its formula computed
 * here in double; every sampler on an analytic Gaussian denoiser, whose
 * probability-flow ODE is known in closed form; and, when present, the
 * reference latents of tests/gpu/sampler_ref.py (k-diffusion on the tiny
 * models) through the whole pipeline.
 */

#include <unistd.h>

#include "golden.h"
#include "pipeline.h"
#include "rng.h"
#include "safetensors.h"
#include "sampler.h"


#define REF_PATH  "tests/data/sampler_ref.safetensors"


static void
check_resolve(void)
{
    static const struct {
        const char  *smp, *sch, *want_smp, *want_sch;
        int          fell_back;
    } c[] = {
        { "Euler", "Automatic", "Euler", "Automatic", 0 },
        { NULL, NULL, "Euler", "Automatic", 0 },
        { "", "", "Euler", "Automatic", 0 },
        { "DPM++ 2M Karras", NULL, "DPM++ 2M", "Automatic", 0 },
        { "DPM++ 2M", "Karras", "DPM++ 2M", "Automatic", 0 },
        { "DPM++ 2M", "Exponential", "DPM++ 2M", "Exponential", 0 },
        { "DPM++ 2M SDE Karras", NULL, "DPM++ 2M SDE", "Karras", 0 },
        { "Euler karras", NULL, "Euler", "Karras", 0 },
        { "Euler SGMUniform", NULL, "Euler", "SGM Uniform", 0 },
        { "Euler", "sgm_uniform", "Euler", "SGM Uniform", 0 },
        { "Euler", "kl_optimal", "Euler", "KL Optimal", 0 },
        { "DPM++ 3M SDE Exponential", NULL, "DPM++ 3M SDE", "Automatic", 0 },
        { "k_euler", NULL, "Euler", "Automatic", 0 },
        { "k_euler_a", NULL, "Euler a", "Automatic", 0 },
        { "euler A", NULL, "Euler a", "Automatic", 0 },
        { "UniPC", "Beta", "UniPC", "Beta", 0 },
        { "LMS", NULL, "DPM++ 2M", "Automatic", 1 },
        { "no such", "Simple", "DPM++ 2M", "Simple", 1 },
        { "Heun", "no such", "Heun", "Automatic", 1 },
        /* the scheduler field does not take aliases: schedulers_map */
        { "Heun", "SGMUniform", "Heun", "Automatic", 1 },
    };
    sd_sampler  s;
    sd_sched    k;
    size_t      i;
    int         fb;

    for (i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
        sd_sampler_resolve(c[i].smp, c[i].sch, &s, &k, &fb);
        T_CHECK(strcmp(sd_sampler_labels[s], c[i].want_smp) == 0
                && strcmp(sd_sched_labels[k], c[i].want_sch) == 0
                && fb == c[i].fell_back,
                "resolve \"%s\" \"%s\": \"%s\" \"%s\" fell back %d",
                c[i].smp ? c[i].smp : "(null)",
                c[i].sch ? c[i].sch : "(null)", sd_sampler_labels[s],
                sd_sched_labels[k], fb);
    }
}


/* SD3's flow sigma of table index i (t = (i + 1) / 1000), shift 3 */
static double
flow_sigma(double t)
{
    return 3.0 * t / (1.0 + 2.0 * t);
}


/* log-linear interpolation of the table at fractional index t */
static double
table_at(double t)
{
    int     lo = (int) floor(t), hi = (int) ceil(t);
    double  w = t - lo;

    return exp((1 - w) * log(flow_sigma((lo + 1) / 1000.0))
               + w * log(flow_sigma((hi + 1) / 1000.0)));
}


static void
check_one(const char *what, sd_sampler smp, sd_sched sch, int n,
    const double *want, int count)
{
    sd_flow_model  fm = { 3.0f, 1000 };
    sd_err         err = {0};
    float          got[1100];
    double         worst = 0;
    int            i, ns;

    ns = sd_sched_sigmas(&err, &fm, smp, sch, n, got);
    T_CHECK(ns == count, "%s: %d sigmas, want %d", what, ns, count);
    if (ns != count) {
        return;
    }
    for (i = 0; i < count; i++) {
        double d = fabs(got[i] - want[i]) / (want[i] > 1e-3 ? want[i] : 1e-3);

        worst = d > worst ? d : worst;
    }
    T_CHECK(worst < 2e-6, "%s: worst relative error %.3g (%g vs %g ...)",
            what, worst, got[1], want[1]);
}


static void
check_schedules(void)
{
    double  smin = flow_sigma(0.001), smax = 1.0, w[64];
    float   sg[8], ts[8];
    int     i, n = 4;
    sd_flow_model  fm = { 3.0f, 1000 };
    sd_err  err = {0};

    /* Karras, rho 7 */
    for (i = 0; i < n; i++) {
        double mx = pow(smax, 1 / 7.0), mn = pow(smin, 1 / 7.0);

        w[i] = pow(mx + i / (n - 1.0) * (mn - mx), 7.0);
    }
    w[n] = 0;
    check_one("karras", SD_SAMPLER_EULER, SD_SCHED_KARRAS, n, w, n + 1);
    check_one("dpm++ 2m automatic = karras", SD_SAMPLER_DPMPP_2M,
              SD_SCHED_AUTOMATIC, n, w, n + 1);

    /* Exponential */
    for (i = 0; i < 5; i++) {
        w[i] = exp(log(smax) + i / 4.0 * (log(smin) - log(smax)));
    }
    w[5] = 0;
    check_one("exponential", SD_SAMPLER_EULER, SD_SCHED_EXPONENTIAL, 5, w, 6);

    /* Uniform and Normal: t = 999, 666, 333, 0 land on the table */
    for (i = 0; i < n; i++) {
        w[i] = flow_sigma((999 - 333 * i + 1) / 1000.0);
    }
    w[n] = 0;
    check_one("uniform", SD_SAMPLER_EULER, SD_SCHED_UNIFORM, n, w, n + 1);
    check_one("normal", SD_SAMPLER_EULER, SD_SCHED_NORMAL, n, w, n + 1);

    /* SGM Uniform: linspace(999, 0, n + 1) without its last, interpolated */
    for (i = 0; i < n; i++) {
        w[i] = table_at(999.0 - 999.0 * i / n);
    }
    w[n] = 0;
    check_one("sgm uniform", SD_SAMPLER_EULER, SD_SCHED_SGM_UNIFORM, n, w,
              n + 1);

    /* Simple: every 250th table entry from the top */
    for (i = 0; i < n; i++) {
        w[i] = flow_sigma((1000 - 250 * i) / 1000.0);
    }
    w[n] = 0;
    check_one("simple", SD_SAMPLER_EULER, SD_SCHED_SIMPLE, n, w, n + 1);

    /* DDIM: table entries 751, 501, 251, 1 */
    for (i = 0; i < n; i++) {
        w[i] = flow_sigma((751 - 250 * i + 1) / 1000.0);
    }
    w[n] = 0;
    check_one("ddim", SD_SAMPLER_EULER, SD_SCHED_DDIM, n, w, n + 1);

    /* KL Optimal ends at sigma_min, not 0 */
    for (i = 0; i <= n; i++) {
        w[i] = tan((double) i / n * atan(smin) + (1 - (double) i / n)
                   * atan(smax));
    }
    check_one("kl optimal", SD_SAMPLER_EULER, SD_SCHED_KL_OPTIMAL, n, w,
              n + 1);

    /* Beta(0.6, 0.6): symmetric, and U-shaped (quantiles pulled out) */
    T_CHECK(fabs(sd_beta_ppf(0.5, 0.6, 0.6) - 0.5) < 1e-9
            && fabs(sd_beta_ppf(0.2, 0.6, 0.6) + sd_beta_ppf(0.8, 0.6, 0.6)
                    - 1.0) < 1e-9
            && sd_beta_ppf(0.25, 0.6, 0.6) < 0.25
            && fabs(sd_beta_ppf(0.3, 1.0, 1.0) - 0.3) < 1e-9
            && fabs(sd_beta_ppf(0.19, 2.0, 1.0) - 0.435889894) < 1e-8,
            "beta ppf %.9f %.9f", sd_beta_ppf(0.25, 0.6, 0.6),
            sd_beta_ppf(0.19, 2.0, 1.0));
    T_CHECK(sd_sched_sigmas(&err, &fm, SD_SAMPLER_EULER, SD_SCHED_BETA, 5,
                            sg) == 6
            && fabsf(sg[0] - 1.0f) < 1e-6f && fabsf(sg[4] - (float) smin)
            < 1e-6f && fabsf(sg[2] - (float) (smin + 0.5 * (1 - smin)))
            < 1e-6f && sg[5] == 0.0f, "beta %g %g %g", sg[0], sg[2], sg[4]);

    /* Automatic for Euler: diffusers' schedule, as the goldens have it */
    sd_flow_schedule(4, 3.0f, 1000, sg, ts);
    for (i = 0; i <= 4; i++) {
        w[i] = sg[i];
    }
    check_one("euler automatic", SD_SAMPLER_EULER, SD_SCHED_AUTOMATIC, 4, w,
              5);
}


/*
 * Data x0 ~ N(mu, s^2) per element, x = (1 - sigma) x0 + sigma eps: the
 * ideal denoiser is linear, and the probability-flow ODE carries
 * x(1) = eps to x(0) = mu + s eps exactly.
 */
typedef struct {
    double   mu, s;
    int      calls;
} gauss_ctx;


static sd_status
gauss_denoise(void *ctx, const float *x, float sigma, int j, float *den)
{
    gauss_ctx  *g = ctx;
    double      a = 1.0 - sigma, v = a * a * g->s * g->s + sigma * sigma;
    size_t      k;

    (void) j;
    g->calls++;
    for (k = 0; k < 4096; k++) {
        den[k] = (float) (g->mu + a * g->s * g->s * (x[k] - a * g->mu) / v);
    }
    return SD_OK;
}


static void
gauss_noise(void *ctx, int k, int step, float *out, size_t n)
{
    (void) ctx;
    sd_randn_cpu(1000 + 31 * (uint64_t) step + (uint64_t) k, out, n);
}


/* max |x_final - (mu + s eps)| of a sampler with steps on a schedule */
static double
gauss_error(sd_sampler smp, sd_sched sch, int steps, double *mean,
    double *sd, int *calls)
{
    static float  eps[4096], x[4096], den[4096];
    sd_flow_model   fm = { 3.0f, 1000 };
    gauss_ctx       g = { 0.7, 0.5, 0 };
    sd_sample_args  a;
    sd_err          err = {0};
    float           sig[1100];
    double          worst = 0, m = 0, v = 0;
    int             ns, k;

    ns = sd_sched_sigmas(&err, &fm, smp, sch, steps, sig);
    sd_randn_cpu(7, eps, 4096);
    for (k = 0; k < 4096; k++) {
        x[k] = eps[k] * sig[0];
    }
    memset(&a, 0, sizeof(a));
    a.sampler = smp;
    a.eta = 1.0f;
    a.s_noise = 1.0f;
    a.batch = 1;
    a.n = 4096;
    a.denoise = gauss_denoise;
    a.noise = gauss_noise;
    a.ctx = &g;
    if (ns < 2 || sd_sample(&err, &a, sig, ns, x, den) != SD_OK) {
        return 1e9;
    }
    for (k = 0; k < 4096; k++) {
        double d = fabs(x[k] - (g.mu + g.s * eps[k]));

        worst = d > worst ? d : worst;
        m += x[k];
    }
    m /= 4096;
    for (k = 0; k < 4096; k++) {
        v += (x[k] - m) * (x[k] - m);
    }
    *mean = m;
    *sd = sqrt(v / 4096);
    *calls = g.calls;
    return worst;
}


static void
check_samplers(void)
{
    double  e_eu, e_heun, e_2m, e, m, s;
    int     calls, i;

    /* every deterministic sampler follows the ODE to its end */
    static const sd_sampler  det[] = { SD_SAMPLER_HEUN, SD_SAMPLER_DPMPP_2M,
                                       SD_SAMPLER_UNIPC };

    e_eu = gauss_error(SD_SAMPLER_EULER, SD_SCHED_KARRAS, 60, &m, &s, &calls);
    T_CHECK(e_eu < 0.1 && calls == 60, "Euler, 60 Karras steps: max error "
            "%.3g, %d calls", e_eu, calls);
    e = gauss_error(SD_SAMPLER_EULER, SD_SCHED_KARRAS, 120, &m, &s, &calls);
    T_CHECK(e < e_eu * 0.6, "Euler is first order: %.3g at 60 steps, %.3g "
            "at 120", e_eu, e);
    e = gauss_error(SD_SAMPLER_DDIM, SD_SCHED_KARRAS, 60, &m, &s, &calls);
    T_CHECK(e == e_eu, "DDIM (eta 0) is the Euler step on a flow model");
    for (i = 0; i < (int) (sizeof(det) / sizeof(det[0])); i++) {
        e = gauss_error(det[i], SD_SCHED_KARRAS, 60, &m, &s, &calls);
        T_CHECK(e < e_eu / 10, "%s, 60 Karras steps: max error %.3g "
                "(Euler %.3g)", sd_sampler_labels[det[i]], e, e_eu);
    }

    e_heun = gauss_error(SD_SAMPLER_HEUN, SD_SCHED_UNIFORM, 8, &m, &s,
                         &calls);
    T_CHECK(calls == 15, "Heun: %d model calls for 8 steps (2 a step, 1 "
            "for the last)", calls);
    e_2m = gauss_error(SD_SAMPLER_DPMPP_2M, SD_SCHED_KARRAS, 15, &m, &s,
                       &calls);
    e = gauss_error(SD_SAMPLER_EULER, SD_SCHED_KARRAS, 15, &m, &s, &calls);
    T_CHECK(e_2m < e / 4, "15 Karras steps: Euler %.3g, DPM++ 2M %.3g "
            "(Heun, 8 uniform: %.3g)", e, e_2m, e_heun);

    /* the stochastic ones repeat for their noise, and differ from Euler */
    {
        static const sd_sampler  sto[] = { SD_SAMPLER_EULER_A,
                                           SD_SAMPLER_DPMPP_2M_SDE,
                                           SD_SAMPLER_DPMPP_3M_SDE,
                                           SD_SAMPLER_LCM };
        double  e2, m2, s2;

        for (i = 0; i < 4; i++) {
            e = gauss_error(sto[i], SD_SCHED_AUTOMATIC, 30, &m, &s, &calls);
            e2 = gauss_error(sto[i], SD_SCHED_AUTOMATIC, 30, &m2, &s2,
                             &calls);
            T_CHECK(e == e2 && m == m2 && s == s2 && e > 1e-2
                    && isfinite(m) && isfinite(s), "%s: repeats (%.4g, "
                    "%.4g), error %.3g", sd_sampler_labels[sto[i]], m, s, e);
        }
    }
}


/*
 * tests/data/sampler_gauss.safetensors (make_sampler_gauss.py: k-diffusion
 * and A1111's schedule rules in torch, on the Gaussian denoiser, with the
 * same noise): every schedule table and sampler case.
 */
static void
check_gauss_ref(void)
{
    static const char *const  smp_names[] = {
        "euler", "euler_a", "heun", "dpmpp_2m", "dpmpp_2m_sde",
        "dpmpp_3m_sde", "ddim", "unipc", "lcm"
    };
    static float   x[4096], den[4096], eps[4096];
    sd_flow_model  fm = { 3.0f, 1000 };
    sd_st         *ref;
    sd_err         err = {0};
    float          got[1100];
    size_t         i;
    int            checked = 0;

    if (sd_st_open(&err, "tests/data/sampler_gauss.safetensors", &ref)
        != SD_OK)
    {
        T_CHECK(0, "open: %s", err.msg);
        return;
    }
    sd_randn_cpu(7, eps, 4096);
    for (i = 0; i < sd_st_count(ref); i++) {
        const sd_st_tensor  *t = sd_st_at(ref, i);
        char                 a[64], b[64];
        int                  n, smp, sch, ns, k;

        if (sscanf(t->name, "%63[^.].%63[^.].%d", a, b, &n) != 3) {
            continue;
        }
        for (sch = 0; sch < SD_SCHED_COUNT; sch++) {
            if (strcmp(sd_sched_names[sch], strcmp(a, "sigmas") == 0 ? b : b)
                == 0)
            {
                break;
            }
        }
        T_CHECK(sch < SD_SCHED_COUNT, "%s: scheduler", t->name);
        if (sch == SD_SCHED_COUNT) {
            continue;
        }
        ns = sd_sched_sigmas(&err, &fm, SD_SAMPLER_EULER, (sd_sched) sch, n,
                             got);
        if (strcmp(a, "sigmas") == 0) {
            t_golden_cmp(ref, t->name, got, ns, 1e-6);
            checked++;
            continue;
        }

        for (smp = 0; smp < SD_SAMPLER_COUNT; smp++) {
            if (strcmp(smp_names[smp], a) == 0) {
                break;
            }
        }
        T_CHECK(smp < SD_SAMPLER_COUNT, "%s: sampler", t->name);
        if (smp == SD_SAMPLER_COUNT) {
            continue;
        }
        {
            gauss_ctx       g = { 0.7, 0.5, 0 };
            sd_sample_args  sa;

            for (k = 0; k < 4096; k++) {
                x[k] = eps[k] * got[0];
            }
            memset(&sa, 0, sizeof(sa));
            sa.sampler = (sd_sampler) smp;
            sa.eta = 1.0f;
            sa.s_noise = 1.0f;
            sa.batch = 1;
            sa.n = 4096;
            sa.denoise = gauss_denoise;
            sa.noise = gauss_noise;
            sa.ctx = &g;
            T_CHECK(sd_sample(&err, &sa, got, ns, x, den) == SD_OK, "%s: %s",
                    t->name, err.msg);
            t_golden_cmp(ref, t->name, x, 4096, 1e-5);
            checked++;
        }
    }
    T_CHECK(checked >= 60, "%d reference tensors checked", checked);
    sd_st_close(ref);
}


/* sd_latent_upscale against torch's interpolate (make_latent_ref.py) */
static void
check_latent_upscale(void)
{
    static float  in[2 * 5 * 7], out[2 * 10 * 14];
    sd_err        err = {0};
    cJSON        *ref, *it;
    char         *text, mode[64];
    size_t        len;
    int           c, y, x, oh, ow, i, n = 0;

    for (c = 0; c < 2; c++) {
        for (y = 0; y < 5; y++) {
            for (x = 0; x < 7; x++) {
                in[(c * 5 + y) * 7 + x] = (float) ((((c * 5 + y) * 7 + x)
                                                    * 37 % 23) / 7.0 - 1.5);
            }
        }
    }
    if (sd_read_file(&err, "tests/data/latent_upscale_ref.json", &text, &len)
        != SD_OK)
    {
        T_CHECK(0, "%s", err.msg);
        return;
    }
    ref = cJSON_ParseWithLength(text, len);
    free(text);
    cJSON_ArrayForEach(it, ref) {
        double  worst = 0;

        if (sscanf(it->string, "%63[^|]|%dx%d", mode, &oh, &ow) != 3
            || cJSON_GetArraySize(it) != 2 * oh * ow)
        {
            T_CHECK(0, "%s: reference shape", it->string);
            continue;
        }
        T_CHECK(sd_latent_upscale(&err, mode, in, 1, 2, 5, 7, out, oh, ow)
                == SD_OK, "%s: %s", it->string, err.msg);
        for (i = 0; i < 2 * oh * ow; i++) {
            double d = fabs(out[i] - cJSON_GetArrayItem(it, i)->valuedouble);

            worst = d > worst ? d : worst;
        }
        T_CHECK(worst < 1e-5, "%s: worst difference %.3g", it->string, worst);
        n++;
    }
    T_CHECK(n == 8, "%d latent upscale cases", n);
    cJSON_Delete(ref);
}


/* The reference cases of sampler_ref.py through the pipeline. */
static void
check_reference(void)
{
    const char  *names[] = { "large", "medium" };
    sd_backend  *be = NULL;
    sd_st       *ref;
    sd_err       err = {0};
    cJSON       *meta, *cases;
    const char  *js;
    char         path[4096];
    int          k, i;

    snprintf(path, sizeof(path), "%s/tiny-sd35-large/model_index.json",
             t_fixtures());
    if (access(path, R_OK) != 0) {
        T_SKIP("no fixtures at %s: the sampler reference is not checked",
               t_fixtures());
        return;
    }
    if (sd_st_open(&err, REF_PATH, &ref) != SD_OK) {
        T_SKIP("%s not there yet (tests/gpu/sampler_ref.sh makes it)",
               REF_PATH);
        return;
    }
    js = sd_st_metadata(ref, "cases");
    meta = js ? cJSON_Parse(js) : NULL;
    cases = meta ? cJSON_GetObjectItem(meta, "cases") : NULL;
    T_CHECK(cJSON_IsArray(cases), "reference metadata");
    if (!cJSON_IsArray(cases) || t_backend(&err, &be) != SD_OK) {
        cJSON_Delete(meta);
        sd_st_close(ref);
        return;
    }

    for (k = 0; k < 2; k++) {
        sd_model  *m;
        sd_cond    c, n;

        snprintf(path, sizeof(path), "%s/tiny-sd35-%s", t_fixtures(),
                 names[k]);
        if (sd_model_load(&err, be, path, SD_PART_ALL, &m) != SD_OK) {
            T_CHECK(0, "load %s: %s", path, err.msg);
            continue;
        }
        if (sd_cond_encode(&err, m, cJSON_GetObjectItem(meta,
                           "prompt")->valuestring, &c) != SD_OK
            || sd_cond_encode(&err, m, cJSON_GetObjectItem(meta,
                              "negative_prompt")->valuestring, &n) != SD_OK)
        {
            T_CHECK(0, "encode: %s", err.msg);
            sd_model_free(m);
            continue;
        }
        for (i = 0; i < cJSON_GetArraySize(cases); i++) {
            const cJSON   *cs = cJSON_GetArrayItem(cases, i);
            const char    *name = cJSON_GetObjectItem(cs, "name")
                                  ->valuestring;
            int            fb, ok;

            /* every case on Large; on Medium (the same sampler code on
               another transformer) three, to keep the suite short */
            if (k == 1 && strcmp(name, "euler.automatic") != 0
                && strcmp(name, "dpmpp_2m.automatic") != 0
                && strcmp(name, "euler_a.automatic") != 0)
            {
                continue;
            }
            sd_pipe_args   a;
            sd_pipe_dump   d;
            uint8_t       *rgb = NULL;
            char           key[256];

            memset(&a, 0, sizeof(a));
            memset(&d, 0, sizeof(d));
            a.width = cJSON_GetObjectItem(meta, "width")->valueint;
            a.height = cJSON_GetObjectItem(meta, "height")->valueint;
            a.steps = cJSON_GetObjectItem(meta, "steps")->valueint;
            a.cfg = (float) cJSON_GetObjectItem(meta, "cfg")->valuedouble;
            a.seeds[0] = (uint64_t) cJSON_GetObjectItem(meta, "seed")
                         ->valuedouble;
            a.batch = 1;
            a.rng = SD_RNG_CPU;
            a.eta = 1.0f;
            sd_sampler_resolve(cJSON_GetObjectItem(cs, "sampler")
                               ->valuestring, cJSON_GetObjectItem(cs,
                               "scheduler")->valuestring, &a.sampler,
                               &a.sched, &fb);
            ok = sd_pipe_txt2img(&err, m, &a, &c, &n, &rgb, &d) == SD_OK;
            T_CHECK(ok, "%s.%s: %s", names[k], name, err.msg);
            if (ok) {
                size_t  per = (size_t) d.latent_c * d.latent_h * d.latent_w;

                snprintf(key, sizeof(key), "%s.%s.sigmas", names[k], name);
                t_golden_cmp(ref, key, d.sigmas, a.steps + 1, 1e-6);
                snprintf(key, sizeof(key), "%s.%s.final", names[k], name);
                t_golden_cmp(ref, key, d.final_latents, per,
                             t_tol(1e-3, 3e-2));
            }
            free(rgb);
            sd_pipe_dump_free(&d);
        }
        sd_cond_free(&c);
        sd_cond_free(&n);
        sd_model_free(m);
    }
    cJSON_Delete(meta);
    sd_st_close(ref);
    sd_backend_destroy(be);
}


int
main(void)
{
    check_resolve();
    check_schedules();
    check_samplers();
    check_gauss_ref();
    check_latent_upscale();
    check_reference();
    return T_DONE();
}
