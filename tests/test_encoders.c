/*
 * test_encoders.c: CLIP-L, CLIP-G, T5 and the joint conditioning against
 * the golden tensors of every public case, for both tiny models, and
 * against reference outputs for prompts that are not in the fixtures
 * (tests/data/enc_ref.safetensors, made by tests/data/make_ref.py).
 */

#include "golden.h"
#include "model.h"
#include "safetensors.h"


static sd_backend  *be;


/* Compare a backend tensor with a golden tensor of the same numel. */
static void
check_tensor(const sd_st *g, const char *key, const sd_tensor *t, double tol)
{
    float   *a;
    sd_err   err = {0};

    if (t == NULL) {
        T_CHECK(0, "%s: no tensor to compare", key);
        return;
    }
    a = malloc(sd_numel(t) * sizeof(float));
    if (a == NULL) {
        T_CHECK(0, "%s: out of memory", key);
        return;
    }
    sd_tensor_download(&err, t, a);
    t_golden_cmp(g, key, a, sd_numel(t), tol);
    free(a);
}


static void
check_ids(const sd_st *g, const char *key, const int32_t *ids, int n)
{
    const sd_st_tensor  *ref = sd_st_find(g, key);
    int32_t              buf[512];

    if (ref == NULL || ref->numel != n || n > 512) {
        T_CHECK(0, "golden ids \"%s\" missing or of another length", key);
        return;
    }
    memcpy(buf, ref->data, n * sizeof(int32_t));
    T_CHECK(memcmp(buf, ids, n * sizeof(int32_t)) == 0, "%s differ", key);
}


/* Direct encoder calls on the golden ids, including last_hidden. */
static void
check_clip_direct(const sd_st *g, sd_clip *c, const char *pfx,
    const char *which)
{
    char                 key[256];
    const sd_st_tensor  *ids;
    sd_tensor           *pen, *last, *emb;
    sd_err               err = {0};
    int32_t              buf[77];

    snprintf(key, sizeof(key), "%s.%s.ids", pfx, which);
    ids = sd_st_find(g, key);
    if (ids == NULL || ids->numel != 77) {
        T_CHECK(0, "golden %s missing", key);
        return;
    }
    memcpy(buf, ids->data, sizeof(buf));
    if (sd_clip_forward(&err, c, buf, 1, 77, &pen, &last, &emb) != SD_OK) {
        T_CHECK(0, "%s: clip forward failed: %s", key, err.msg);
        return;
    }
    snprintf(key, sizeof(key), "%s.%s.last_hidden", pfx, which);
    check_tensor(g, key, last, t_tol(1e-4, 3e-2));
    snprintf(key, sizeof(key), "%s.%s.penultimate", pfx, which);
    check_tensor(g, key, pen, t_tol(1e-4, 3e-2));
    snprintf(key, sizeof(key), "%s.%s.text_embeds", pfx, which);
    check_tensor(g, key, emb, t_tol(1e-4, 3e-2));
    sd_tensor_free(pen);
    sd_tensor_free(last);
    sd_tensor_free(emb);
}


static void
check_case(const sd_st *g, sd_model *m, const char *model, const cJSON *cs)
{
    const char  *name, *prompt, *neg;
    char         pfx[128], key[256];
    sd_cond      c, n;
    sd_err       err = {0};

    name = cJSON_GetObjectItem(cs, "name")->valuestring;
    prompt = cJSON_GetObjectItem(cs, "prompt")->valuestring;
    neg = cJSON_GetObjectItem(cs, "negative_prompt")->valuestring;
    snprintf(pfx, sizeof(pfx), "%s.%s", model, name);

    check_clip_direct(g, m->clip_l, pfx, "clip_l");
    check_clip_direct(g, m->clip_g, pfx, "clip_g");

    if (sd_cond_encode(&err, m, prompt, &c) != SD_OK) {
        T_CHECK(0, "%s: encode failed: %s", pfx, err.msg);
        return;
    }
    snprintf(key, sizeof(key), "%s.clip_l.ids", pfx);
    check_ids(g, key, c.ids_l, m->clip_len);
    snprintf(key, sizeof(key), "%s.clip_g.ids", pfx);
    check_ids(g, key, c.ids_g, m->clip_len);
    snprintf(key, sizeof(key), "%s.t5.ids", pfx);
    check_ids(g, key, c.ids_t5, m->t5_len);
    snprintf(key, sizeof(key), "%s.t5.hidden", pfx);
    check_tensor(g, key, c.t5, t_tol(1e-4, 3e-2));
    snprintf(key, sizeof(key), "%s.prompt_embeds", pfx);
    check_tensor(g, key, c.context, t_tol(1e-4, 3e-2));
    snprintf(key, sizeof(key), "%s.pooled", pfx);
    check_tensor(g, key, c.pooled, t_tol(1e-4, 3e-2));
    sd_cond_free(&c);

    if (sd_cond_encode(&err, m, neg, &n) != SD_OK) {
        T_CHECK(0, "%s: encode negative failed: %s", pfx, err.msg);
        return;
    }
    snprintf(key, sizeof(key), "%s.neg_prompt_embeds", pfx);
    check_tensor(g, key, n.context, t_tol(1e-4, 3e-2));
    snprintf(key, sizeof(key), "%s.neg_pooled", pfx);
    check_tensor(g, key, n.pooled, t_tol(1e-4, 3e-2));
    sd_cond_free(&n);
}


/* Prompts outside the fixtures, against transformers' outputs. */
static void
check_extra(sd_model *m)
{
    sd_st       *r;
    sd_err       err = {0};
    const char  *meta;
    cJSON       *prompts;
    sd_cond      c;
    char         key[64];
    int          i;

    if (sd_st_open(&err, "tests/data/enc_ref.safetensors", &r) != SD_OK) {
        T_CHECK(0, "tests/data/enc_ref.safetensors: %s", err.msg);
        return;
    }
    meta = sd_st_metadata(r, "prompts");
    prompts = meta ? cJSON_Parse(meta) : NULL;
    T_CHECK(prompts != NULL && cJSON_GetArraySize(prompts) == 2,
            "enc_ref prompts metadata");
    for (i = 0; prompts && i < cJSON_GetArraySize(prompts); i++) {
        const char *p = cJSON_GetArrayItem(prompts, i)->valuestring;

        if (sd_cond_encode(&err, m, p, &c) != SD_OK) {
            T_CHECK(0, "encode \"%s\": %s", p, err.msg);
            continue;
        }
        snprintf(key, sizeof(key), "e%d.clip_l.ids", i);
        check_ids(r, key, c.ids_l, 77);
        snprintf(key, sizeof(key), "e%d.clip_g.ids", i);
        check_ids(r, key, c.ids_g, 77);
        snprintf(key, sizeof(key), "e%d.t5.ids", i);
        check_ids(r, key, c.ids_t5, 256);
        snprintf(key, sizeof(key), "e%d.clip_l.penultimate", i);
        check_tensor(r, key, c.pen_l, t_tol(1e-4, 3e-2));
        snprintf(key, sizeof(key), "e%d.clip_l.text_embeds", i);
        check_tensor(r, key, c.emb_l, t_tol(1e-4, 3e-2));
        snprintf(key, sizeof(key), "e%d.clip_g.penultimate", i);
        check_tensor(r, key, c.pen_g, t_tol(1e-4, 3e-2));
        snprintf(key, sizeof(key), "e%d.clip_g.text_embeds", i);
        check_tensor(r, key, c.emb_g, t_tol(1e-4, 3e-2));
        snprintf(key, sizeof(key), "e%d.t5.hidden", i);
        check_tensor(r, key, c.t5, t_tol(1e-4, 3e-2));
        sd_cond_free(&c);
    }
    cJSON_Delete(prompts);
    sd_st_close(r);
}


int
main(void)
{
    static const char  *models[] = { "large", "medium" };
    char                path[4096];
    cJSON              *cases;
    sd_st              *g;
    sd_model           *m;
    sd_err              err = {0};
    int                 i, k;

    if (t_golden_open(&g, &cases) != 0) {
        return T_DONE();
    }
    if (t_backend(&err, &be) != SD_OK) {
        T_CHECK(0, "backend: %s", err.msg);
        return T_DONE();
    }

    for (k = 0; k < 2; k++) {
        snprintf(path, sizeof(path), "%s/tiny-sd35-%s", t_fixtures(),
                 models[k]);
        sd_err_clear(&err);
        if (sd_model_load(&err, be, path, SD_PART_TEXT, &m) != SD_OK) {
            T_CHECK(0, "load %s: %s", path, err.msg);
            continue;
        }
        T_CHECK(m->joint_dim == 128 && m->clip_len == 77 && m->t5_len == 256,
                "sizes read from the configs");
        for (i = 0; i < cJSON_GetArraySize(cJSON_GetObjectItem(cases,
                                                   models[k])); i++)
        {
            check_case(g, m, models[k],
                       cJSON_GetArrayItem(cJSON_GetObjectItem(cases,
                                                              models[k]), i));
        }
        if (k == 0) {
            check_extra(m);
        }
        sd_model_free(m);
    }

    /* a missing model folder is an error naming it */
    sd_err_clear(&err);
    T_CHECK(sd_model_load(&err, be, "/nonexistent/model", SD_PART_TEXT, &m)
            == SD_ERR_IO && strstr(err.msg, "/nonexistent/model") != NULL,
            "missing folder: %s", err.msg);

    cJSON_Delete(cases);
    sd_st_close(g);
    sd_backend_destroy(be);
    return T_DONE();
}
