/*
 * model.c: model discovery (model_index.json, each component's folder and
 * config) and the joint text conditioning of SD3.5.
 *
 * Conditioning follows StableDiffusion3Pipeline.encode_prompt: the CLIP-L
 * and CLIP-G penultimate states side by side, zero-padded to the T5 width,
 * over the first 77 rows, then the T5 rows; pooled = both text_embeds.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "model.h"


static int
is_dir(const char *path)
{
    struct stat  sb;

    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}


/* model_index.json names component -> [library, class]; null = absent */
static int
component_present(const cJSON *index, const char *name)
{
    const cJSON  *c = cJSON_GetObjectItemCaseSensitive(index, name);
    const cJSON  *cls;

    if (c == NULL) {
        return 0;
    }
    if (!cJSON_IsArray(c) || cJSON_GetArraySize(c) != 2) {
        return 0;
    }
    cls = cJSON_GetArrayItem(c, 1);
    return cJSON_IsString(cls);
}


/*
 * A symbolic link checked out by git without link support is a small file
 * holding the target path (the tiny Medium fixture shares its large
 * sibling's folders this way): follow it when it names a folder.
 */
static void
follow_link_file(const char *base, char *path, size_t len)
{
    struct stat  sb;
    char         target[1024], joined[4096];
    FILE        *f;
    size_t       n;

    if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)
        || sb.st_size >= (off_t) sizeof(target))
    {
        return;
    }
    f = fopen(path, "rb");
    if (f == NULL) {
        return;
    }
    n = fread(target, 1, sizeof(target) - 1, f);
    fclose(f);
    target[n] = '\0';
    while (n > 0 && (target[n - 1] == '\n' || target[n - 1] == '\r')) {
        target[--n] = '\0';
    }
    if (n == 0 || memchr(target, '\n', n) != NULL) {
        return;
    }
    if (target[0] == '/') {
        snprintf(joined, sizeof(joined), "%s", target);
    } else if (snprintf(joined, sizeof(joined), "%s/%s", base, target)
               >= (int) sizeof(joined))
    {
        return;
    }
    if (is_dir(joined) && strlen(joined) < len) {
        memcpy(path, joined, strlen(joined) + 1);
    }
}


static sd_status
component_dir(sd_err *err, const sd_model *m, const cJSON *index,
    const char *name, int required, char *dst, size_t len)
{
    SD_TRY(sd_path_join(err, dst, len, m->dir, name));
    follow_link_file(m->dir, dst, len);
    if (!component_present(index, name) || !is_dir(dst)) {
        if (required) {
            return sd_errorf(err, SD_ERR_FORMAT, "model \"%s\": component "
                             "\"%s\" is missing (model_index.json names "
                             "it null or its folder does not exist)",
                             m->dir, name);
        }
        dst[0] = '\0';
    }
    return SD_OK;
}


/*
 * The "Model hash": FNV-1a over model_index.json and the transformer's
 * config.json, 40 bits as 10 hex characters. Cheap (no weights are read)
 * and stable for a folder; it is not A1111's sha256 of a single file.
 */
static void
model_hash(const char *dir, const char *index_text, size_t len, char *out)
{
    uint64_t       h = 1469598103934665603ULL;
    size_t         i, n;
    char           path[4096];
    FILE          *f;
    unsigned char  buf[4096];

    for (i = 0; i < len; i++) {
        h = (h ^ (unsigned char) index_text[i]) * 1099511628211ULL;
    }
    if (snprintf(path, sizeof(path), "%s/transformer/config.json", dir)
        < (int) sizeof(path) && (f = fopen(path, "rb")) != NULL)
    {
        while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
            for (i = 0; i < n; i++) {
                h = (h ^ buf[i]) * 1099511628211ULL;
            }
        }
        fclose(f);
    }
    snprintf(out, 16, "%010llx", (unsigned long long) (h & 0xffffffffffULL));
}


sd_status
sd_model_hash_dir(const char *dir, char out[16], char *errbuf, size_t errlen)
{
    sd_err     err = {0};
    char       path[4096], *text;
    size_t     len;
    sd_status  s;

    out[0] = '\0';
    s = sd_path_join(&err, path, sizeof(path), dir, "model_index.json");
    if (s == SD_OK) {
        s = sd_read_file(&err, path, &text, &len);
    }
    if (s != SD_OK) {
        if (errbuf && errlen) {
            snprintf(errbuf, errlen, "%s", err.msg);
        }
        return s;
    }
    model_hash(dir, text, len, out);
    free(text);
    return SD_OK;
}


static sd_status
load_scheduler(sd_err *err, sd_model *m, const char *dir)
{
    cJSON       *cfg;
    char         path[4096];
    sd_status    s;

    m->shift = 1.0f;
    m->train_steps = 1000;
    SD_TRY(sd_config_load(err, dir, "scheduler_config.json", &cfg));
    snprintf(path, sizeof(path), "%.4000s/scheduler_config.json", dir);
    s = sd_config_float_opt(err, cfg, path, "shift", &m->shift);
    if (s == SD_OK) {
        s = sd_config_int_opt(err, cfg, path, "num_train_timesteps",
                              &m->train_steps);
    }
    cJSON_Delete(cfg);
    if (s == SD_OK && (m->shift <= 0 || m->train_steps <= 0)) {
        s = sd_errorf(err, SD_ERR_FORMAT, "\"%s\": shift and "
                      "num_train_timesteps must be positive", path);
    }
    return s;
}


static sd_status
load_text(sd_err *err, sd_backend *be, sd_model *m, const cJSON *index)
{
    char  d[4096];

    SD_TRY(component_dir(err, m, index, "tokenizer", 1, d, sizeof(d)));
    SD_TRY(sd_clip_tok_load(err, d, &m->tok_l));
    SD_TRY(component_dir(err, m, index, "tokenizer_2", 1, d, sizeof(d)));
    SD_TRY(sd_clip_tok_load(err, d, &m->tok_g));
    SD_TRY(component_dir(err, m, index, "text_encoder", 1, d, sizeof(d)));
    SD_TRY(sd_clip_load(err, be, d, &m->clip_l));
    SD_TRY(component_dir(err, m, index, "text_encoder_2", 1, d, sizeof(d)));
    SD_TRY(sd_clip_load(err, be, d, &m->clip_g));

    m->clip_len = sd_clip_max_len(m->clip_l);
    if (sd_clip_max_len(m->clip_g) != m->clip_len) {
        return sd_errorf(err, SD_ERR_FORMAT, "model \"%s\": the two CLIP "
                         "encoders take %d and %d tokens", m->dir,
                         m->clip_len, sd_clip_max_len(m->clip_g));
    }

    /* T5 is optional in SD3 (text_encoder_3 null): zeros replace it */
    SD_TRY(component_dir(err, m, index, "text_encoder_3", 0, d, sizeof(d)));
    if (d[0]) {
        SD_TRY(sd_t5_load(err, be, d, &m->t5));
        SD_TRY(component_dir(err, m, index, "tokenizer_3", 1, d, sizeof(d)));
        SD_TRY(sd_t5_tok_load(err, d, &m->tok_t5));
        m->joint_dim = sd_t5_width(m->t5);
    }
    m->t5_len = 256;
    return SD_OK;
}


sd_status
sd_model_load(sd_err *err, sd_backend *be, const char *dir, int parts,
    sd_model **out)
{
    sd_model    *m;
    cJSON       *index = NULL;
    char        *text = NULL, d[4096];
    const char  *base;
    size_t       len;
    sd_status    s;

    *out = NULL;
    if (!is_dir(dir)) {
        return sd_errorf(err, SD_ERR_IO, "model folder \"%s\" does not exist",
                         dir);
    }
    m = sd_calloc(err, 1, sizeof(sd_model), "model");
    if (m == NULL) {
        return SD_ERR_NOMEM;
    }
    if (snprintf(m->dir, sizeof(m->dir), "%s", dir) >= (int) sizeof(m->dir)) {
        s = sd_errorf(err, SD_ERR_INVALID, "model path too long");
        goto fail;
    }
    len = strlen(m->dir);
    while (len > 1 && m->dir[len - 1] == '/') {
        m->dir[--len] = '\0';
    }
    m->be = be;
    base = strrchr(m->dir, '/');
    snprintf(m->name, sizeof(m->name), "%.255s", base ? base + 1 : m->dir);

    SD_TRY_GOTO(s, sd_path_join(err, d, sizeof(d), m->dir,
                                "model_index.json"), fail);
    SD_TRY_GOTO(s, sd_read_file(err, d, &text, &len), fail);
    index = cJSON_ParseWithLength(text, len);
    if (index == NULL || !cJSON_IsObject(index)) {
        s = sd_errorf(err, SD_ERR_FORMAT, "\"%s\": not a JSON object", d);
        goto fail;
    }
    model_hash(m->dir, text, len, m->hash);

    if (parts & SD_PART_TEXT) {
        m->bytes_text = be->bytes_in_use;
        SD_TRY_GOTO(s, load_text(err, be, m, index), fail);
        m->bytes_text = be->bytes_in_use - m->bytes_text;
    }
    m->bytes_dit = be->bytes_in_use;
    if (parts & SD_PART_DIT) {
        SD_TRY_GOTO(s, component_dir(err, m, index, "transformer", 1, d,
                                     sizeof(d)), fail);
        SD_TRY_GOTO(s, sd_mmdit_load(err, be, d, &m->dit), fail);
        if (m->joint_dim == 0) {
            m->joint_dim = sd_mmdit_get_info(m->dit)->joint_dim;
        } else if (m->joint_dim != sd_mmdit_get_info(m->dit)->joint_dim) {
            s = sd_errorf(err, SD_ERR_FORMAT, "model \"%s\": T5 width %d but "
                          "the transformer's joint_attention_dim is %d",
                          m->dir, m->joint_dim,
                          sd_mmdit_get_info(m->dit)->joint_dim);
            goto fail;
        }
        SD_TRY_GOTO(s, component_dir(err, m, index, "scheduler", 1, d,
                                     sizeof(d)), fail);
        SD_TRY_GOTO(s, load_scheduler(err, m, d), fail);
    }
    m->bytes_dit = be->bytes_in_use - m->bytes_dit;
    m->bytes_vae = be->bytes_in_use;
    if (parts & SD_PART_VAE) {
        SD_TRY_GOTO(s, component_dir(err, m, index, "vae", 1, d, sizeof(d)),
                    fail);
        SD_TRY_GOTO(s, sd_vae_load(err, be, d, &m->vae), fail);
    }
    m->bytes_vae = be->bytes_in_use - m->bytes_vae;
    if ((parts & SD_PART_TEXT) && m->joint_dim == 0) {
        s = sd_errorf(err, SD_ERR_FORMAT, "model \"%s\": without T5 the "
                      "context width must come from the transformer", dir);
        goto fail;
    }

    cJSON_Delete(index);
    free(text);
    *out = m;
    return SD_OK;

fail:
    cJSON_Delete(index);
    free(text);
    sd_model_free(m);
    return s;
}


void
sd_model_free(sd_model *m)
{
    if (m == NULL) {
        return;
    }
    sd_clip_tok_free(m->tok_l);
    sd_clip_tok_free(m->tok_g);
    sd_t5_tok_free(m->tok_t5);
    sd_clip_free(m->clip_l);
    sd_clip_free(m->clip_g);
    sd_t5_free(m->t5);
    sd_mmdit_free(m->dit);
    sd_vae_free(m->vae);
    free(m);
}


void
sd_cond_free(sd_cond *c)
{
    free(c->ids_l);
    free(c->ids_g);
    free(c->ids_t5);
    sd_tensor_free(c->pen_l);
    sd_tensor_free(c->pen_g);
    sd_tensor_free(c->emb_l);
    sd_tensor_free(c->emb_g);
    sd_tensor_free(c->t5);
    sd_tensor_free(c->context);
    sd_tensor_free(c->pooled);
    memset(c, 0, sizeof(*c));
}


/* context: (1, 77 + 256, joint) = [pad(pen_l ‖ pen_g) ; t5] */
static sd_status
cond_join(sd_err *err, sd_model *m, sd_cond *c, sd_backend *be)
{
    int64_t  dl = sd_clip_width(m->clip_l), dg = sd_clip_width(m->clip_g);
    int64_t  pl = sd_clip_proj_dim(m->clip_l);
    int64_t  pg = sd_clip_proj_dim(m->clip_g);
    int64_t  j = m->joint_dim, rows = m->clip_len + m->t5_len;
    float   *zero;

    if (dl + dg > j) {
        return sd_errorf(err, SD_ERR_FORMAT, "model \"%s\": CLIP widths %lld "
                         "+ %lld exceed the context width %lld", m->dir,
                         (long long) dl, (long long) dg, (long long) j);
    }

    SD_TRY(sd_tensor_new3(err, be, 1, rows, j, &c->context));
    zero = sd_calloc(err, (size_t) (rows * j), sizeof(float), "context");
    if (zero == NULL) {
        return SD_ERR_NOMEM;
    }
    if (sd_tensor_upload(err, c->context, zero) != SD_OK) {
        free(zero);
        return err->status;
    }
    free(zero);

    /* torch.cat([clip_l, clip_g], -1), F.pad to T5 width, cat with t5 */
    SD_TRY(sd_copy2d(err, c->context, 0, j, c->pen_l, 0, dl, m->clip_len,
                     dl));
    SD_TRY(sd_copy2d(err, c->context, dl, j, c->pen_g, 0, dg, m->clip_len,
                     dg));
    if (c->t5) {
        SD_TRY(sd_copy2d(err, c->context, m->clip_len * j, j, c->t5, 0, j,
                         m->t5_len, j));
    }

    SD_TRY(sd_tensor_new2(err, be, 1, pl + pg, &c->pooled));
    SD_TRY(sd_copy2d(err, c->pooled, 0, 0, c->emb_l, 0, 0, 1, pl));
    return sd_copy2d(err, c->pooled, pl, 0, c->emb_g, 0, 0, 1, pg);
}


sd_status
sd_cond_encode(sd_err *err, sd_model *m, const char *prompt, sd_cond *c)
{
    return sd_cond_encode_skip(err, m, prompt, 1, c);
}


sd_status
sd_cond_encode_skip(sd_err *err, sd_model *m, const char *prompt,
    int clip_skip, sd_cond *c)
{
    sd_status  s;

    memset(c, 0, sizeof(*c));
    if (m->clip_l == NULL) {
        return sd_errorf(err, SD_ERR_INTERNAL, "text encoders not loaded");
    }

    c->ids_l = sd_calloc(err, m->clip_len, sizeof(int32_t), "ids");
    c->ids_g = sd_calloc(err, m->clip_len, sizeof(int32_t), "ids");
    c->ids_t5 = sd_calloc(err, m->t5_len, sizeof(int32_t), "ids");
    if (c->ids_l == NULL || c->ids_g == NULL || c->ids_t5 == NULL) {
        s = SD_ERR_NOMEM;
        goto fail;
    }

    SD_TRY_GOTO(s, sd_clip_tok_encode(err, m->tok_l, prompt, c->ids_l,
                                      m->clip_len), fail);
    SD_TRY_GOTO(s, sd_clip_tok_encode(err, m->tok_g, prompt, c->ids_g,
                                      m->clip_len), fail);
    SD_TRY_GOTO(s, sd_clip_forward_skip(err, m->clip_l, c->ids_l, 1,
                                        m->clip_len, clip_skip, &c->pen_l,
                                        NULL, &c->emb_l), fail);
    SD_TRY_GOTO(s, sd_clip_forward_skip(err, m->clip_g, c->ids_g, 1,
                                        m->clip_len, clip_skip, &c->pen_g,
                                        NULL, &c->emb_g), fail);
    if (m->t5) {
        SD_TRY_GOTO(s, sd_t5_tok_encode(err, m->tok_t5, prompt, c->ids_t5,
                                        m->t5_len), fail);
        SD_TRY_GOTO(s, sd_t5_forward(err, m->t5, c->ids_t5, 1, m->t5_len,
                                     &c->t5), fail);
    }
    SD_TRY_GOTO(s, cond_join(err, m, c, m->be), fail);
    return SD_OK;

fail:
    sd_cond_free(c);
    return s;
}
