/* main.c - amc's entry point: dispatches to a subcommand (see cli/cli.h). */
#include "cli/cli.h"

#include <stdio.h>
#include <string.h>

static const struct {
  const char *name;
  int (*fn)(int argc, char **argv);
  const char *summary;
} commands[] = {
    {"run", amc_cmd_run, "run the controller (sources -> rules -> AVI)"},
    {"sync", amc_cmd_sync,
     "sync desired AVI objects to a controller once (or --dry-run)"},
    {"translate", amc_cmd_translate,
     "translate Kubernetes/Istio objects from files to AVI objects (JSON)"},
    {"rules", amc_cmd_rules, "rule-author tools: `amc rules test [DIR]`"},
    {"version", amc_cmd_version, "print the version and library versions"},
    {"mcp-dump", amc_cmd_mcp_dump,
     "stream Istio config over MCP and print it (JSON lines)"},
    {"kube-dump", amc_cmd_kube_dump,
     "debug: run the Kubernetes source, print its events as JSON lines"},
};

static void usage(FILE *out) {
  fprintf(out, "amc - AVI Mesh Controller: Istio configuration to AVI load "
               "balancer objects\n\n"
               "usage: amc <command> [options]\n\ncommands:\n");
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
  fprintf(out, "\n`amc <command> --help` describes each command.\n");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return AMC_EXIT_USAGE;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 ||
      strcmp(cmd, "help") == 0) {
    usage(stdout);
    return AMC_EXIT_OK;
  }
  if (strcmp(cmd, "--version") == 0)
    cmd = "version";
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
    if (strcmp(cmd, commands[i].name) == 0)
      return commands[i].fn(argc - 1, argv + 1);
  }
  fprintf(stderr, "amc: unknown command '%s'\n\n", cmd);
  usage(stderr);
  return AMC_EXIT_USAGE;
}
