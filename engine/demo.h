/*
 * demo.h: the embedded demo model: a small random-weight model of the
 * SD3.5 architecture in the diffusers folder layout, with its own small
 * tokenizer files, so that a fresh checkout generates images with no
 * download. It is the server's default model.
 *
 * Invariant: the output depends only on the seed; the same seed writes the
 * same bytes.
 */

#ifndef SD_DEMO_H
#define SD_DEMO_H

#include <stdint.h>
#include "sd_err.h"


/* Write the demo model into dir (created if missing; files overwritten). */
sd_status sd_demo_write(sd_err *err, const char *dir, uint64_t seed);

#endif /* SD_DEMO_H */
