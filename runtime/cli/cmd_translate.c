/* cmd_translate.c - `amc translate`: Kubernetes/Istio objects from files to
 * the AVI objects the rules make of them, as one JSON document. */
#include "cli/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/translate_run.h"
#include "settings.h"

static void usage(FILE *f) {
  fprintf(
      f,
      "usage: amc translate [options] PATH...\n"
      "\n"
      "Reads Kubernetes objects (Gateway, VirtualService, DestinationRule,\n"
      "ServiceEntry, Service, EndpointSlice, Secret, ...) from YAML or JSON\n"
      "files, or from directories of them (recursively; *.yaml, *.yml,\n"
      "*.json), translates every Istio Gateway with the rules and prints\n"
      "one JSON object on stdout: one key per AVI object type (an array\n"
      "sorted by name) plus \"diagnostics\". PATH '-' reads YAML from stdin.\n"
      "Objects of kinds the rules do not use are loaded and ignored;\n"
      "objects without metadata.namespace are put in \"default\".\n"
      "\n"
      "options:\n"
      "  --rules DIR       rule files (default: ./rules if it exists, else\n"
      "                    %s)\n"
      "  --settings FILE   settings (JSON or YAML mapping: cluster, tenant,\n"
      "                    cloud, vrf, se_group, ingress_selector, domain)\n"
      "  --cluster NAME    cluster name used in AVI object names\n"
      "                    (default: \"default\"; overrides --settings)\n"
      "  --show-secrets    print private keys instead of \"<sensitive>\"\n"
      "  --stats           print counts and timings on stderr\n"
      "  -h, --help        this text\n"
      "\n"
      "exit status: 0 success, 1 rule error, 2 usage or input error\n",
      AMC_RULES_DIR);
}

int amc_cmd_translate(int argc, char **argv) {
  static const struct option longopts[] = {
      {"rules", required_argument, NULL, 'r'},
      {"settings", required_argument, NULL, 's'},
      {"cluster", required_argument, NULL, 'c'},
      {"show-secrets", no_argument, NULL, 'S'},
      {"stats", no_argument, NULL, 'T'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  const char *rules = NULL, *settings_file = NULL, *cluster = NULL;
  int show_secrets = 0, stats = 0;
  optind = 1;
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
    switch (c) {
    case 'r':
      rules = optarg;
      break;
    case 's':
      settings_file = optarg;
      break;
    case 'c':
      cluster = optarg;
      break;
    case 'S':
      show_secrets = 1;
      break;
    case 'T':
      stats = 1;
      break;
    case 'h':
      usage(stdout);
      return AMC_EXIT_OK;
    default:
      if (optopt)
        fprintf(stderr,
                "amc translate: option needs a value or is unknown: "
                "-%c\n",
                optopt);
      else
        fprintf(stderr, "amc translate: unknown option '%s'\n",
                argv[optind - 1]);
      fprintf(stderr, "run 'amc translate --help' for usage\n");
      return AMC_EXIT_USAGE;
    }
  }
  if (optind >= argc) {
    fprintf(stderr, "amc translate: no PATH given\n");
    usage(stderr);
    return AMC_EXIT_USAGE;
  }
  amc_settings_t settings;
  amc_settings_init(&settings);
  char err[1024];
  int rc = AMC_EXIT_USAGE;
  if (settings_file &&
      amc_settings_load_file(&settings, settings_file, err, sizeof err) < 0) {
    fprintf(stderr, "amc translate: %s\n", err);
    goto done;
  }
  if (cluster && amc_settings_set(&settings, "cluster", cluster) < 0) {
    fprintf(stderr, "amc translate: --cluster needs a non-empty name\n");
    goto done;
  }
  amc_translate_run_opts_t o = {
      .rules_dir = rules,
      .settings = &settings,
      .show_secrets = show_secrets,
      .stats = stats,
  };
  amc_buf_t out = AMC_BUF_INIT, errs = AMC_BUF_INIT;
  rc = amc_translate_run(argv + optind, (size_t)(argc - optind), &o, &out,
                         &errs);
  if (rc == AMC_EXIT_OK) {
    fwrite(out.data, 1, out.len, stdout);
    if (fflush(stdout) != 0) {
      fprintf(stderr, "amc translate: writing the output failed\n");
      rc = AMC_EXIT_FAIL;
    }
  } else {
    /* Each error line already names its file or key. */
    const char *p = errs.data ? errs.data : "";
    while (*p) {
      const char *nl = strchr(p, '\n');
      size_t n = nl ? (size_t)(nl - p) : strlen(p);
      fprintf(stderr, "amc translate: %.*s\n", (int)n, p);
      p += n + (nl ? 1 : 0);
      /* Keep a traceback's indented lines as they are. */
      while (*p == '\t' || strncmp(p, "stack traceback:", 16) == 0) {
        nl = strchr(p, '\n');
        n = nl ? (size_t)(nl - p) : strlen(p);
        fprintf(stderr, "%.*s\n", (int)n, p);
        p += n + (nl ? 1 : 0);
      }
    }
  }
  amc_buf_free(&out);
  amc_buf_free(&errs);
done:
  amc_settings_free(&settings);
  return rc;
}
