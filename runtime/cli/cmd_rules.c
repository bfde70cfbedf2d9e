/* cmd_rules.c - `amc rules`. Placeholder until the command lands. */
#include "cli/cli.h"

#include <stdio.h>

int amc_cmd_rules(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "amc rules: not built yet\n");
  return AMC_EXIT_USAGE;
}
