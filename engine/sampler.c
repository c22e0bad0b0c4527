/*
 * sampler.c: A1111 1.10's samplers and schedulers as they run on SD3's
 * discrete flow schedule (modules/sd_samplers.py, sd_schedulers.py,
 * sd_samplers_kdiffusion.py; k-diffusion k_diffusion/sampling.py), written
 * in C on host F32 latents.
 *
 * The model's discrete schedule is A1111's ModelSamplingDiscreteFlow:
 * sigma_i = shift t / (1 + (shift - 1) t), t = i / 1000 for i = 1..1000,
 * wrapped by k-diffusion's DiscreteSchedule (log-linear interpolation
 * between the table's entries). sigma_min = sigma_1, sigma_max = 1.
 *
 * Where we differ from A1111 (on purpose, documented):
 * - "Automatic" for samplers without their own default scheduler is
 *   diffusers' FlowMatchEulerDiscreteScheduler schedule, which the golden
 *   tests check; A1111's own is "Uniform" here.
 * - DDIM: on a flow model, DDIM with eta 0 is exactly the Euler step
 *   (x' = x0 + s1 (x - x0) / s0); A1111's timestep DDIM needs
 *   alphas_cumprod, which SD3 lacks. UniPC: diffusers' UniPC (bh2, order
 *   2, data prediction) with flow alphas (1 - sigma) on our sigmas. LCM:
 *   the flow form of renoising, (1 - s1) x0 + s1 noise.
 * - The SDE samplers' noise: A1111 draws it from a Brownian tree
 *   (torchsde); here it is Gaussian noise per step from the caller's noise
 *   function (the image's generator seeded with seed + ENSD + step), so
 *   SDE images are deterministic but not A1111's.
 */

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sampler.h"


const char *const  sd_sampler_labels[SD_SAMPLER_COUNT + 1] = {
    "Euler", "Euler a", "Heun", "DPM++ 2M", "DPM++ 2M SDE", "DPM++ 3M SDE",
    "DDIM", "UniPC", "LCM", NULL
};

/* A1111 aliases of each sampler, by enum; "" ends a list */
static const char *const  sd_sampler_alias[SD_SAMPLER_COUNT][3] = {
    { "k_euler", "", "" },
    { "k_euler_a", "k_euler_ancestral", "" },
    { "k_heun", "", "" },
    { "k_dpmpp_2m", "", "" },
    { "k_dpmpp_2m_sde", "", "" },
    { "k_dpmpp_3m_sde", "", "" },
    { "ddim", "", "" },
    { "unipc", "", "" },
    { "k_lcm", "", "" },
};

const char *const  sd_sched_labels[SD_SCHED_COUNT + 1] = {
    "Automatic", "Uniform", "Karras", "Exponential", "SGM Uniform",
    "KL Optimal", "Simple", "Normal", "DDIM", "Beta", NULL
};

const char *const  sd_sched_names[SD_SCHED_COUNT + 1] = {
    "automatic", "uniform", "karras", "exponential", "sgm_uniform",
    "kl_optimal", "simple", "normal", "ddim", "beta", NULL
};


sd_sched
sd_sampler_default_sched(sd_sampler s)
{
    switch (s) {
    case SD_SAMPLER_DPMPP_2M:
        return SD_SCHED_KARRAS;
    case SD_SAMPLER_DPMPP_2M_SDE:
    case SD_SAMPLER_DPMPP_3M_SDE:
        return SD_SCHED_EXPONENTIAL;
    default:
        return SD_SCHED_AUTOMATIC;
    }
}


static int
ends_with(const char *s, size_t len, const char *suffix)
{
    size_t  n = strlen(suffix);

    return len > n && s[len - n - 1] == ' '
           && strncmp(s + len - n, suffix, n) == 0;
}


/* The sampler of a name: label exactly, then label or alias in any case. */
static int
sampler_lookup(const char *name, size_t len)
{
    int  i, j;

    for (i = 0; i < SD_SAMPLER_COUNT; i++) {
        if (strlen(sd_sampler_labels[i]) == len
            && strncmp(sd_sampler_labels[i], name, len) == 0)
        {
            return i;
        }
    }
    for (i = 0; i < SD_SAMPLER_COUNT; i++) {
        if (strlen(sd_sampler_labels[i]) == len
            && strncasecmp(sd_sampler_labels[i], name, len) == 0)
        {
            return i;
        }
        for (j = 0; j < 3 && sd_sampler_alias[i][j][0]; j++) {
            if (strlen(sd_sampler_alias[i][j]) == len
                && strncasecmp(sd_sampler_alias[i][j], name, len) == 0)
            {
                return i;
            }
        }
    }
    return -1;
}


void
sd_sampler_resolve(const char *sampler, const char *scheduler,
    sd_sampler *out_sampler, sd_sched *out_sched, int *fell_back)
{
    const char  *name = (sampler && sampler[0]) ? sampler : "Euler";
    size_t       len = strlen(name);
    int          sch = 0, i, smp;

    *fell_back = 0;
    /* schedulers_map: names and labels, exactly */
    if (scheduler && scheduler[0]) {
        sch = -1;
        for (i = 0; i < SD_SCHED_COUNT; i++) {
            if (strcmp(scheduler, sd_sched_labels[i]) == 0
                || strcmp(scheduler, sd_sched_names[i]) == 0)
            {
                sch = i;
                break;
            }
        }
        if (sch < 0) {
            sch = 0;
            *fell_back = 1;
        }
    }

    /* a legacy suffix: each scheduler's label, name and aliases in turn */
    for (i = 0; i < SD_SCHED_COUNT; i++) {
        const char  *opts[3] = { sd_sched_labels[i], sd_sched_names[i],
                                 i == SD_SCHED_SGM_UNIFORM ? "SGMUniform"
                                                           : NULL };
        int          j;

        for (j = 0; j < 3 && opts[j]; j++) {
            if (ends_with(name, len, opts[j])) {
                sch = i;
                len -= strlen(opts[j]) + 1;
                break;
            }
        }
    }

    smp = sampler_lookup(name, len);
    if (smp < 0) {
        smp = SD_SAMPLER_DPMPP_2M;
        *fell_back = 1;
    }
    if (sch != SD_SCHED_AUTOMATIC
        && sd_sampler_default_sched((sd_sampler) smp) == (sd_sched) sch)
    {
        sch = SD_SCHED_AUTOMATIC;
    }
    *out_sampler = (sd_sampler) smp;
    *out_sched = (sd_sched) sch;
}


/* ---- schedules ---- */

#define SD_FLOW_TABLE  1000

typedef struct {
    float   sigmas[SD_FLOW_TABLE];      /* ascending */
    float   log_sigmas[SD_FLOW_TABLE];
    int     n;
} sd_flow_table;


static void
flow_table(const sd_flow_model *fm, sd_flow_table *t)
{
    int  i, n = fm->train_steps > 0 && fm->train_steps <= SD_FLOW_TABLE
                ? fm->train_steps : SD_FLOW_TABLE;

    t->n = n;
    for (i = 0; i < n; i++) {
        /* torch: arange(1, n + 1) / 1000 in float32, then the shift */
        float  x = (float) (i + 1) / (float) n;
        float  s = fm->shift * x / (1.0f + (fm->shift - 1.0f) * x);

        t->sigmas[i] = s;
        t->log_sigmas[i] = logf(s);
    }
}


/* k-diffusion DiscreteSchedule.t_to_sigma */
static float
t_to_sigma(const sd_flow_table *t, float ts)
{
    int    lo = (int) floorf(ts), hi = (int) ceilf(ts);
    float  w = ts - floorf(ts);

    if (lo < 0) {
        lo = 0;
    }
    if (hi > t->n - 1) {
        hi = t->n - 1;
    }
    return expf((1.0f - w) * t->log_sigmas[lo] + w * t->log_sigmas[hi]);
}


/* torch.linspace(start, end, n) in float32 */
static float
linspace_at(float start, float end, int n, int i)
{
    float  step;

    if (n == 1) {
        return start;
    }
    step = (end - start) / (float) (n - 1);
    return i < n / 2 ? start + step * (float) i
                     : end - step * (float) (n - 1 - i);
}


/* The diffusers schedule (pipeline.c's sd_flow_schedule), inlined here. */
static void
diffusers_schedule(const sd_flow_model *fm, int steps, float *sigmas)
{
    float   smax, smin, shift = fm->shift;
    int     ts = fm->train_steps, i;
    double  start, stop, step;

    smax = shift * 1.0f / (1.0f + (shift - 1.0f) * 1.0f);
    smin = shift * (1.0f / ts) / (1.0f + (shift - 1.0f) * (1.0f / ts));
    start = (double) smax * ts;
    stop = (double) smin * ts;
    step = steps > 1 ? (stop - start) / (steps - 1) : 0.0;
    for (i = 0; i < steps; i++) {
        double t = (steps > 1 && i == steps - 1) ? stop : i * step + start;
        double s = t / ts;

        sigmas[i] = (float) (shift * s / (1.0 + (shift - 1.0) * s));
    }
    sigmas[steps] = 0.0f;
}


int
sd_sched_sigmas(sd_err *err, const sd_flow_model *fm, sd_sampler smp,
    sd_sched sch, int steps, float *sigmas)
{
    sd_flow_table  t;
    float          smin, smax;
    int            i, n = steps;

    if (steps < 1) {
        sd_errorf(err, SD_ERR_INVALID, "steps: must be at least 1");
        return -1;
    }
    if (sch == SD_SCHED_AUTOMATIC) {
        sch = sd_sampler_default_sched(smp);
    }
    flow_table(fm, &t);
    smin = t.sigmas[0];
    smax = t.sigmas[t.n - 1];

    switch (sch) {
    case SD_SCHED_AUTOMATIC:
        diffusers_schedule(fm, steps, sigmas);
        break;

    case SD_SCHED_UNIFORM:
    case SD_SCHED_NORMAL:
        /* DiscreteSchedule.get_sigmas / normal_scheduler: linspace over
           t from sigma_to_t(sigma_max) = n - 1 down to 0 */
        for (i = 0; i < n; i++) {
            sigmas[i] = t_to_sigma(&t, linspace_at((float) (t.n - 1), 0.0f,
                                                   n, i));
        }
        sigmas[n] = 0.0f;
        break;

    case SD_SCHED_SGM_UNIFORM:
        for (i = 0; i < n; i++) {
            sigmas[i] = t_to_sigma(&t, linspace_at((float) (t.n - 1), 0.0f,
                                                   n + 1, i));
        }
        sigmas[n] = 0.0f;
        break;

    case SD_SCHED_KARRAS: {
        double  rho = 7.0, mn = pow(smin, 1.0 / rho), mx = pow(smax, 1.0 / rho);

        for (i = 0; i < n; i++) {
            float  ramp = linspace_at(0.0f, 1.0f, n, i);
            float  b = (float) mx + ramp * ((float) mn - (float) mx);

            sigmas[i] = powf(b, (float) rho);
        }
        sigmas[n] = 0.0f;
        break;
    }

    case SD_SCHED_EXPONENTIAL:
        for (i = 0; i < n; i++) {
            sigmas[i] = expf(linspace_at((float) log(smax), (float) log(smin),
                                         n, i));
        }
        sigmas[n] = 0.0f;
        break;

    case SD_SCHED_KL_OPTIMAL: {
        float  amin = atanf(smin), amax = atanf(smax);

        for (i = 0; i <= n; i++) {
            float  f = (float) i / (float) n;

            sigmas[i] = tanf(f * amin + (1.0f - f) * amax);
        }
        break;
    }

    case SD_SCHED_SIMPLE: {
        double  ss = (double) t.n / n;

        for (i = 0; i < n; i++) {
            sigmas[i] = t.sigmas[t.n - 1 - (int) (i * ss)];
        }
        sigmas[n] = 0.0f;
        break;
    }

    case SD_SCHED_DDIM: {
        int  ss = t.n / n > 1 ? t.n / n : 1, k = 0, x;
        int  cnt = 0;

        for (x = 1; x < t.n; x += ss) {
            cnt++;
        }
        /* reversed table entries 1, 1 + ss, ...: A1111 gives len(sigs),
           which may be more or fewer than steps (30 steps: 31) */
        for (x = 1 + (cnt - 1) * ss; x >= 1; x -= ss) {
            sigmas[k++] = t.sigmas[x];
        }
        sigmas[k] = 0.0f;
        return k + 1;
    }

    case SD_SCHED_BETA:
        /* A1111 opts beta_dist_alpha = beta_dist_beta = 0.6 */
        for (i = 0; i < n; i++) {
            double  ts = 1.0 - (n > 1 ? (double) i / (n - 1) : 0.0);
            double  x = sd_beta_ppf(ts, 0.6, 0.6);

            sigmas[i] = (float) (smin + x * (smax - smin));
        }
        sigmas[n] = 0.0f;
        break;

    default:
        sd_errorf(err, SD_ERR_INTERNAL, "scheduler %d unknown", (int) sch);
        return -1;
    }
    return n + 1;
}


/* ---- the regularized incomplete beta and its inverse ---- */

/* Continued fraction of I_x(a, b) (modified Lentz). */
static double
beta_cf(double a, double b, double x)
{
    double  qab = a + b, qap = a + 1.0, qam = a - 1.0, c = 1.0, d, h;
    int     m;

    d = 1.0 - qab * x / qap;
    d = fabs(d) < 1e-300 ? 1e-300 : d;
    d = 1.0 / d;
    h = d;
    for (m = 1; m <= 300; m++) {
        int     m2 = 2 * m;
        double  aa = m * (b - m) * x / ((qam + m2) * (a + m2)), del;

        d = 1.0 + aa * d;
        d = fabs(d) < 1e-300 ? 1e-300 : d;
        c = 1.0 + aa / c;
        c = fabs(c) < 1e-300 ? 1e-300 : c;
        d = 1.0 / d;
        h *= d * c;
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        d = fabs(d) < 1e-300 ? 1e-300 : d;
        c = 1.0 + aa / c;
        c = fabs(c) < 1e-300 ? 1e-300 : c;
        d = 1.0 / d;
        del = d * c;
        h *= del;
        if (fabs(del - 1.0) < 1e-15) {
            break;
        }
    }
    return h;
}


static double
beta_inc(double a, double b, double x)
{
    double  bt;

    if (x <= 0.0) {
        return 0.0;
    }
    if (x >= 1.0) {
        return 1.0;
    }
    bt = exp(lgamma(a + b) - lgamma(a) - lgamma(b) + a * log(x)
             + b * log(1.0 - x));
    if (x < (a + 1.0) / (a + b + 2.0)) {
        return bt * beta_cf(a, b, x) / a;
    }
    return 1.0 - bt * beta_cf(b, a, 1.0 - x) / b;
}


double
sd_beta_ppf(double p, double a, double b)
{
    double  lo = 0.0, hi = 1.0;
    int     i;

    if (p <= 0.0) {
        return 0.0;
    }
    if (p >= 1.0) {
        return 1.0;
    }
    for (i = 0; i < 200; i++) {
        double  mid = 0.5 * (lo + hi);

        if (beta_inc(a, b, mid) < p) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    return 0.5 * (lo + hi);
}


/* ---- the samplers ---- */

typedef struct {
    float   *d, *x2, *old1, *old2, *noise;
} sd_sample_bufs;


/* UniPC's state between steps: its last order and how many it ran. */
typedef struct {
    int     prev_order;
    int     lower_order_nums;
} sd_unipc;


/* lambda = log(alpha / sigma) with the flow alpha = 1 - sigma */
static double
flow_lambda(double s)
{
    return log(1.0 - s) - log(s);
}


/*
 * diffusers UniPCMultistepScheduler.step (predict_x0, bh2, solver_order 2,
 * lower_order_final, flow sigmas): the corrector uni_c with this step's
 * denoised (den) on the latents the last predictor gave, then the
 * predictor uni_p to sig[i + 1]. b->old1 / old2: the denoised of the last
 * two steps; b->x2: the latents before the last predictor.
 */
static void
unipc_step(sd_sample_bufs *b, sd_unipc *u, const float *sig, int steps,
    int i, float *x, const float *den, size_t N)
{
    double  sT = sig[i], aT = 1.0 - sT, lT = flow_lambda(sT);
    size_t  k;
    int     order;

    if (i > 0) {
        double  sS = sig[i - 1], lS = flow_lambda(sS), h = lT - lS;
        double  hh = -h, hp1 = expm1(hh), Bh = expm1(hh);
        double  rc0 = 0.0, rcl = 0.5, rk = 1.0;

        if (u->prev_order == 2) {
            double  hpk = hp1 / hh - 1.0, b1, b2;

            rk = (flow_lambda(sig[i - 2]) - lS) / h;
            b1 = hpk / Bh;
            b2 = (hpk / hh - 0.5) * 2.0 / Bh;
            rc0 = (b1 - b2) / (1.0 - rk);
            rcl = b1 - rc0;
        }
        for (k = 0; k < N; k++) {
            double  xt = sT / sS * b->x2[k] - aT * hp1 * b->old1[k];
            double  corr = u->prev_order == 2
                           ? rc0 * (b->old2[k] - b->old1[k]) / rk : 0.0;

            x[k] = (float) (xt - aT * Bh * (corr + rcl
                                            * (den[k] - b->old1[k])));
        }
    }

    order = steps - i < 2 ? steps - i : 2;
    order = order < u->lower_order_nums + 1 ? order : u->lower_order_nums + 1;
    memcpy(b->x2, x, N * sizeof(float));
    if (sig[i + 1] == 0.0f) {
        memcpy(x, den, N * sizeof(float));
    } else {
        double  sN = sig[i + 1], aN = 1.0 - sN, h = flow_lambda(sN) - lT;
        double  hh = -h, hp1 = expm1(hh), Bh = expm1(hh), rk = 1.0;

        if (order == 2) {
            rk = (flow_lambda(sig[i - 1]) - lT) / h;
        }
        for (k = 0; k < N; k++) {
            double  v = sN / sT * x[k] - aN * hp1 * den[k];

            if (order == 2) {
                v -= aN * Bh * 0.5 * (b->old1[k] - den[k]) / rk;
            }
            x[k] = (float) v;
        }
    }
    memcpy(b->old2, b->old1, N * sizeof(float));
    memcpy(b->old1, den, N * sizeof(float));
    u->prev_order = order;
    if (u->lower_order_nums < 2) {
        u->lower_order_nums++;
    }
}


static sd_status
noise_all(const sd_sample_args *a, int step, float *out)
{
    int  k;

    for (k = 0; k < a->batch; k++) {
        a->noise(a->ctx, k, step, out + (size_t) k * a->n, a->n);
    }
    return SD_OK;
}


/*
 * k-diffusion get_ancestral_step for rectified flow (sample_euler_
 * ancestral_RF): sigma_down = s1^2 / s0 scaled by eta, renoise factor.
 */
static void
euler_a_step(float *x, const float *den, size_t N, double s0, double s1,
    double eta, double s_noise, const float *noise)
{
    double  sd, r, a1, ad, rn;
    size_t  k;

    if (s1 == 0.0) {
        memcpy(x, den, N * sizeof(float));
        return;
    }
    sd = s1 * (1.0 + (s1 / s0 - 1.0) * eta);
    r = sd / s0;
    a1 = 1.0 - s1;
    ad = 1.0 - sd;
    rn = s1 * s1 - sd * sd * a1 * a1 / (ad * ad);
    rn = rn > 0.0 ? sqrt(rn) : 0.0;
    for (k = 0; k < N; k++) {
        double  v = r * x[k] + (1.0 - r) * den[k];

        x[k] = (float) ((a1 / ad) * v + rn * s_noise * noise[k]);
    }
}


sd_status
sd_sample(sd_err *err, const sd_sample_args *a, const float *sig, int ns,
    float *x, float *den)
{
    size_t          N = (size_t) a->batch * a->n, k;
    sd_sample_bufs  b;
    sd_unipc        u = { 0, 0 };
    sd_status       s = SD_OK;
    int             i, steps = ns - 1, have1 = 0, have2 = 0;
    double          h1 = 0, h2 = 0, eta = a->eta, sn = a->s_noise;

    memset(&b, 0, sizeof(b));
    b.d = sd_malloc(err, N * sizeof(float), "sampler");
    b.x2 = sd_malloc(err, N * sizeof(float), "sampler");
    b.old1 = sd_malloc(err, N * sizeof(float), "sampler");
    b.old2 = sd_malloc(err, N * sizeof(float), "sampler");
    b.noise = sd_malloc(err, N * sizeof(float), "sampler");
    if (!b.d || !b.x2 || !b.old1 || !b.old2 || !b.noise) {
        s = SD_ERR_NOMEM;
        goto out;
    }

    for (i = 0; i < steps; i++) {
        double  s0 = sig[i], s1 = sig[i + 1];

        SD_TRY_GOTO(s, a->denoise(a->ctx, x, (float) s0, i, den), out);

        switch (a->sampler) {
        case SD_SAMPLER_EULER:
        case SD_SAMPLER_DDIM:
            /* d = (x - den) / s0; x += d (s1 - s0) */
            for (k = 0; k < N; k++) {
                float  d = (x[k] - den[k]) / (float) s0;

                x[k] = x[k] + d * (float) (s1 - s0);
            }
            break;

        case SD_SAMPLER_EULER_A:
            if (s1 > 0.0) {
                noise_all(a, i, b.noise);
            }
            euler_a_step(x, den, N, s0, s1, eta, sn, b.noise);
            break;

        case SD_SAMPLER_LCM:
            if (s1 > 0.0) {
                noise_all(a, i, b.noise);
                for (k = 0; k < N; k++) {
                    x[k] = (float) ((1.0 - s1) * den[k] + s1 * b.noise[k]);
                }
            } else {
                memcpy(x, den, N * sizeof(float));
            }
            break;

        case SD_SAMPLER_HEUN: {
            /* sample_heun (s_churn 0): Euler to s1, then the trapezoid */
            for (k = 0; k < N; k++) {
                b.d[k] = (x[k] - den[k]) / (float) s0;
            }
            if (s1 == 0.0) {
                for (k = 0; k < N; k++) {
                    x[k] = x[k] + b.d[k] * (float) (s1 - s0);
                }
                break;
            }
            for (k = 0; k < N; k++) {
                b.x2[k] = x[k] + b.d[k] * (float) (s1 - s0);
            }
            SD_TRY_GOTO(s, a->denoise(a->ctx, b.x2, (float) s1, i + 1, den),
                        out);
            for (k = 0; k < N; k++) {
                float  d2 = (b.x2[k] - den[k]) / (float) s1;

                x[k] = x[k] + (b.d[k] + d2) / 2.0f * (float) (s1 - s0);
            }
            break;
        }

        case SD_SAMPLER_DPMPP_2M: {
            /* sample_dpmpp_2m: t = -log sigma */
            double  h = log(s0) - (s1 > 0 ? log(s1) : -INFINITY);
            double  c = -expm1(-h);

            if (!have1 || s1 == 0.0) {
                for (k = 0; k < N; k++) {
                    x[k] = (float) ((s1 / s0) * x[k] + c * den[k]);
                }
            } else {
                double  r = h1 / h;

                for (k = 0; k < N; k++) {
                    double  dd = (1.0 + 1.0 / (2.0 * r)) * den[k]
                                 - (1.0 / (2.0 * r)) * b.old1[k];

                    x[k] = (float) ((s1 / s0) * x[k] + c * dd);
                }
            }
            memcpy(b.old1, den, N * sizeof(float));
            have1 = 1;
            h1 = h;
            break;
        }

        case SD_SAMPLER_DPMPP_2M_SDE: {
            /* sample_dpmpp_2m_sde, midpoint solver */
            double  h, eh, c;

            if (s1 == 0.0) {
                memcpy(x, den, N * sizeof(float));
                break;
            }
            h = log(s0) - log(s1);
            eh = eta * h;
            c = -expm1(-h - eh);
            noise_all(a, i, b.noise);
            for (k = 0; k < N; k++) {
                double  v = s1 / s0 * exp(-eh) * x[k] + c * den[k];

                if (have1) {
                    v += 0.5 * c * (h / h1) * (den[k] - b.old1[k]);
                }
                if (eta != 0.0) {
                    v += b.noise[k] * s1 * sqrt(-expm1(-2.0 * eh)) * sn;
                }
                x[k] = (float) v;
            }
            memcpy(b.old1, den, N * sizeof(float));
            have1 = 1;
            h1 = h;
            break;
        }

        case SD_SAMPLER_DPMPP_3M_SDE: {
            /* sample_dpmpp_3m_sde */
            double  h, he, p2, p3;

            if (s1 == 0.0) {
                memcpy(x, den, N * sizeof(float));
                break;
            }
            h = log(s0) - log(s1);
            he = h * (eta + 1.0);
            p2 = expm1(-he) / he + 1.0;
            p3 = p2 / he - 0.5;
            if (eta != 0.0) {
                noise_all(a, i, b.noise);
            }
            for (k = 0; k < N; k++) {
                double  v = exp(-he) * x[k] - expm1(-he) * den[k];

                if (have2) {
                    double  r0 = h1 / h, r1 = h2 / h;
                    double  d10 = (den[k] - b.old1[k]) / r0;
                    double  d11 = (b.old1[k] - b.old2[k]) / r1;
                    double  d1 = d10 + (d10 - d11) * r0 / (r0 + r1);
                    double  d2 = (d10 - d11) / (r0 + r1);

                    v += p2 * d1 - p3 * d2;
                } else if (have1) {
                    v += p2 * (den[k] - b.old1[k]) / (h1 / h);
                }
                if (eta != 0.0) {
                    v += b.noise[k] * s1 * sqrt(-expm1(-2.0 * h * eta)) * sn;
                }
                x[k] = (float) v;
            }
            memcpy(b.old2, b.old1, N * sizeof(float));
            memcpy(b.old1, den, N * sizeof(float));
            have2 = have1;
            have1 = 1;
            h2 = h1;
            h1 = h;
            break;
        }

        case SD_SAMPLER_UNIPC:
            unipc_step(&b, &u, sig, steps, i, x, den, N);
            break;

        default:
            s = sd_errorf(err, SD_ERR_INTERNAL, "sampler %d unknown",
                          (int) a->sampler);
            goto out;
        }

        if (a->on_step && a->on_step(a->ctx, i, steps, den)) {
            break;
        }
    }

out:
    free(b.d);
    free(b.x2);
    free(b.old1);
    free(b.old2);
    free(b.noise);
    return s;
}
