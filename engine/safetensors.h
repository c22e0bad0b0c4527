/*
 * safetensors.h: read-only access to safetensors checkpoints through mmap,
 * single files or shards listed by a *.safetensors.index.json, plus a small
 * writer used for tensor dumps.
 *
 * Invariant: a tensor's data pointer stays valid until the sd_st set that
 * returned it is closed; every header is checked (offsets in bounds and
 * non-overlapping, shape x dtype size == byte length) before any tensor is
 * exposed, so callers may read data without further bounds checks.
 */

#ifndef SD_SAFETENSORS_H
#define SD_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>
#include "sd_err.h"

#define SD_ST_MAX_DIMS  8


typedef enum {
    SD_DT_F32 = 0,
    SD_DT_F16,
    SD_DT_BF16,
    SD_DT_F8_E4M3,
    SD_DT_F8_E5M2,
    SD_DT_I32,
    SD_DT_I64,
    SD_DT_U8
} sd_dtype;

size_t sd_dtype_size(sd_dtype dt);
const char *sd_dtype_name(sd_dtype dt);            /* "F32", "BF16", ... */


typedef struct {
    const char     *name;
    sd_dtype        dtype;
    int             ndim;
    int64_t         shape[SD_ST_MAX_DIMS];
    int64_t         numel;
    const void     *data;           /* into the mapping; read-only */
    size_t          nbytes;
    const char     *file;           /* path of the file holding it */
    /*
     * FP8 weights stored with a scale (ComfyUI scale_weight / weight_scale):
     * F32 host copy of the dequantization scale(s), x = fp8 * scale; 1 or
     * shape[0] values. NULL for plain-cast F8 (scale 1) and other dtypes.
     */
    const float    *scale;
    int64_t         n_scale;
    float           input_scale;    /* scale_input / input_scale, 0: none */
} sd_st_tensor;


typedef struct sd_st  sd_st;

/* Open one .safetensors file, or every shard named by an .index.json. */
sd_status sd_st_open(sd_err *err, const char *path, sd_st **out);

/*
 * Open a diffusers component folder: its *.safetensors.index.json if there
 * is one, else its single *.safetensors file.
 */
sd_status sd_st_open_dir(sd_err *err, const char *dir, sd_st **out);

void sd_st_close(sd_st *st);

const sd_st_tensor *sd_st_find(const sd_st *st, const char *name);
size_t sd_st_count(const sd_st *st);
const sd_st_tensor *sd_st_at(const sd_st *st, size_t i);

/* Value of "__metadata__"[key] of the first file, or NULL. */
const char *sd_st_metadata(const sd_st *st, const char *key);

/*
 * Convert a tensor of any float or integer dtype to float32; dst holds
 * numel floats. Conversions are exact (bf16, f16, fp8 are subsets of f32);
 * F8_E4M3 / F8_E5M2 tensors with a scale are dequantized (x = fp8 * scale).
 */
sd_status sd_st_read_f32(sd_err *err, const sd_st_tensor *t, float *dst);

/* Checked lookup: the tensor must exist and have exactly this shape. */
sd_status sd_st_get(sd_err *err, const sd_st *st, const char *name,
    int ndim, const int64_t *shape, const sd_st_tensor **out);

float sd_bf16_to_f32(uint16_t h);
float sd_f16_to_f32(uint16_t h);
float sd_f8e4m3_to_f32(uint8_t v);
float sd_f8e5m2_to_f32(uint8_t v);
uint16_t sd_f32_to_bf16(float f);                  /* round to nearest even */


/* Writing: tensors are described fully and written in the order given. */
typedef struct {
    const char     *name;
    sd_dtype        dtype;
    int             ndim;
    int64_t         shape[SD_ST_MAX_DIMS];
    const void     *data;           /* numel * dtype size bytes */
} sd_st_out;

sd_status sd_st_write(sd_err *err, const char *path, const sd_st_out *t,
    size_t n);


/*
 * For checkpoint adapters (ckpt.c): memory owned by the set (zeroed, freed
 * at close), mutable records, and views added under new names (a copy of
 * the record t; its data must live as long as the set). Lookups see added
 * views only after sd_st_reindex().
 */
void *sd_st_hold(sd_err *err, sd_st *st, size_t size, const char *what);
sd_st_tensor *sd_st_at_mut(sd_st *st, size_t i);
sd_status sd_st_add_view(sd_err *err, sd_st *st, const sd_st_tensor *t,
    const char *name);
sd_status sd_st_reindex(sd_err *err, sd_st *st);

#endif /* SD_SAFETENSORS_H */
