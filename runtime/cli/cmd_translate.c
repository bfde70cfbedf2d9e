/* cmd_translate.c - `amc translate`. Placeholder until the command lands. */
#include "cli/cli.h"

#include <stdio.h>

int amc_cmd_translate(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "amc translate: not built yet\n");
  return AMC_EXIT_USAGE;
}
