/* cmd_run.c - `amc run`. Placeholder until the command lands. */
#include "cli/cli.h"

#include <stdio.h>

int amc_cmd_run(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "amc run: not built yet\n");
  return AMC_EXIT_USAGE;
}
