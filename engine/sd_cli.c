/*
 * sd_cli.c: the sd-cli command-line tool (placeholder main until the
 * subcommands land).
 */

#include <stdio.h>

int
main(void)
{
    fprintf(stderr, "usage: sd-cli encode|txt2img|make-demo ...\n");
    return 2;
}
