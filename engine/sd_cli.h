/*
 * sd_cli.h: what the files of the sd-cli tool share (sd_cli.c: the
 * commands on models and images; sd_cli_gpu.c: bench and step, the GPU
 * measurements). Not part of the engine library.
 */

#ifndef SD_CLI_H
#define SD_CLI_H

#include <stddef.h>

#include "model.h"


/*
 * Each option takes one value, into the one field it names: a string (s),
 * an int or a long long in lo..hi (i, ll), or a double (d).
 */
typedef struct {
    const char     *name;
    const char    **s;
    int            *i;
    long long      *ll, lo, hi;
    double         *d;
} sd_cli_opt;

int sd_cli_usage(void);
/* Print "sd-cli: what: message"; returns 1. */
int sd_cli_fail(const char *what, const sd_err *err);
/* ||a - b|| / ||b||; PSNR of 8-bit images in dB (99 when equal) */
double sd_cli_rel_l2(const float *a, const float *b, size_t n);
double sd_cli_psnr(const uint8_t *a, const uint8_t *b, size_t n);
int sd_cli_parse_int(const char *name, const char *v, long long lo,
    long long hi, long long *out);
int sd_cli_parse_double(const char *name, const char *v, double *out);
/* Options "--name value" into opts; -1 (after a message) on bad input. */
int sd_cli_parse(int argc, char **argv, const sd_cli_opt *opts,
    size_t nopts);
/* --fp8-keep LIST for --precision fp8 (NULL: the default policy) */
extern const char *sd_cli_fp8_keep;
extern const char *sd_cli_offload;
/* The backend of --device and --precision; 0, or the exit status. */
int sd_cli_backend(const char *device, const char *precision,
    sd_backend **be, sd_err *err);
/* The GPU workspace for requests up to this size; 0, or 1 after a
   message. */
int sd_cli_reserve(sd_model *m, int width, int height, int batch,
    sd_err *err);

int sd_cli_bench(int argc, char **argv);
int sd_cli_step(int argc, char **argv);
int sd_cli_fp8_sweep(int argc, char **argv);
int sd_cli_quantize(int argc, char **argv);         /* sd_cli_fp8.c */
int sd_cli_fp8_model(int argc, char **argv);
int sd_cli_fp8_check(int argc, char **argv);

#endif /* SD_CLI_H */
