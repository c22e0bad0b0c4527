/*
 * ckpt.h: FP8 and single-file checkpoints: FP8 scales attached to their
 * weights, the SAI / ComfyUI single-file layout answered under diffusers
 * names, quantize-at-load, and the FP8 writer (ComfyUI naming).
 *
 * Formats read (x = fp8 * scale in every form):
 *   ComfyUI "scaled_fp8" (old): <layer>.weight F8, <layer>.scale_weight F32
 *     scalar, optional <layer>.scale_input; a "scaled_fp8" marker tensor.
 *   ComfyUI mixed precision (new, also ours): <layer>.weight F8,
 *     <layer>.weight_scale F32 scalar or per output channel ([N] or [N,1]),
 *     optional <layer>.input_scale, <layer>.comfy_quant = U8 bytes of the
 *     JSON {"format": "float8_e4m3fn"}.
 *   Plain cast: F8 weights with no scale tensor and no comfy_quant: scale 1.
 * A scale that is not F32/BF16/F16, of another shape, or not a positive
 * finite number, and a comfy_quant layer without weight_scale, are errors
 * naming the tensor.
 */

#ifndef SD_CKPT_H
#define SD_CKPT_H

#include "safetensors.h"

/* Fill scale / n_scale / input_scale of every F8 weight (sd_st_open). */
sd_status sd_ckpt_attach_scales(sd_err *err, sd_st *st);

/*
 * If st holds a single-file layout for the component named by the last
 * part of dir ("transformer", "text_encoder", "text_encoder_2",
 * "text_encoder_3", "vae"), add views under the diffusers names: MMDiT keys
 * (model.diffusion_model.joint_blocks.N..., fused qkv split into views,
 * adaLN halves of the final layers swapped into copies), the text
 * encoders' "text_encoders.{clip_l,clip_g,t5xxl}.transformer." prefixes,
 * and the LDM VAE ("first_stage_model.encoder.down.N.block.M...").
 * Other folders and diffusers files are left as they are.
 */
sd_status sd_ckpt_map_layout(sd_err *err, sd_st *st, const char *dir);

/* Open one file for a component (as above) without a folder. */
sd_status sd_ckpt_open_file(sd_err *err, const char *path,
    const char *component, sd_st **out);

/*
 * Quantize at load: every weight that sd_fp8_wanted() picks and that is not
 * FP8 already becomes E4M3 with its scale(s), in place (owned by st), so
 * loaders see what an FP8 file would give them. per_row: one scale per
 * output channel, else one per tensor. *nq: the number quantized.
 */
sd_status sd_ckpt_quantize(sd_err *err, sd_st *st, int per_row,
    const char *keep, int *nq);

/*
 * Write an FP8 checkpoint in ComfyUI's naming from a diffusers model
 * folder: model.diffusion_model.* (original MMDiT keys, fused qkv) and,
 * where present, text_encoders.{clip_l,clip_g,t5xxl}.transformer.*;
 * quantized layers get weight_scale (F32, [] or [N]) and comfy_quant.
 * Other tensors are written as BF16 (F32 ones stay F32). The VAE is not
 * written.
 */
sd_status sd_ckpt_write_fp8(sd_err *err, const char *model_dir,
    const char *out_path, int per_row, const char *keep);

#endif /* SD_CKPT_H */
